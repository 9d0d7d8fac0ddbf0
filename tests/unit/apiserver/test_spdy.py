"""SPDY/3.1 framing: the dictionary, header blocks, every frame type both ways, and bytes in arbitrary pieces."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from isthmus.local.apiserver import spdy

FRAMES: list[spdy.Frame] = [
    spdy.SynStream(1, {"streamtype": "error", "port": "5000", "requestid": "0"}, priority=2),
    spdy.SynStream(3, {"streamtype": "data", "port": "5000", "requestid": "0"}, associated_id=1, fin=True),
    spdy.SynStream(5, {}, unidirectional=True),
    spdy.SynReply(1),
    spdy.SynReply(3, {"x-multi": "a\x00b"}, fin=True),
    spdy.HeadersFrame(3, {"name": "value"}),
    spdy.Data(3, b"GET / HTTP/1.1\r\n\r\n"),
    spdy.Data(1, b"", fin=True),
    spdy.Data(0x7FFFFFFF, bytes(range(256)) * 300),
    spdy.RstStream(3, spdy.CANCEL),
    spdy.Settings(((0, 4, 100), (1, 7, 65536))),
    spdy.Settings((), clear=True),
    spdy.Ping(1),
    spdy.Ping(0xFFFFFFFF),
    spdy.GoAway(7, spdy.GOAWAY_OK),
    spdy.WindowUpdate(3, 65536),
    spdy.UnknownControl(10, 0, b"\x00\x01"),
]


def encode_all(frames: list[spdy.Frame]) -> bytes:
    encoder = spdy.FrameEncoder()
    return b"".join(encoder.encode(frame) for frame in frames)


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_every_frame_round_trips() -> None:
    wire = encode_all(FRAMES)
    assert spdy.FrameDecoder().feed(wire) == FRAMES


def test_frames_split_at_every_boundary_and_in_random_pieces() -> None:
    wire = encode_all(FRAMES)
    one_by_one = spdy.FrameDecoder()
    got = [frame for i in range(len(wire)) for frame in one_by_one.feed(wire[i : i + 1])]
    assert got == FRAMES and one_by_one.pending == 0
    rng = random.Random(7)
    for _ in range(20):
        decoder, got, offset = spdy.FrameDecoder(), [], 0
        while offset < len(wire):
            size = rng.choice([0, 0, 1, 3, 4, 7, 8, 9, 100, 5000])
            got += decoder.feed(wire[offset : offset + size])
            offset += size
        assert got == FRAMES


def test_data_frame_layout() -> None:
    assert (
        spdy.FrameEncoder().encode(spdy.Data(3, b"hi", fin=True))
        == bytes.fromhex("00000003 01000002") + b"hi"
    )


def test_control_frame_layout() -> None:
    assert spdy.FrameEncoder().encode(spdy.Ping(5)) == bytes.fromhex("80030006 00000004 00000005")
    assert spdy.FrameEncoder().encode(spdy.RstStream(3, 5)) == bytes.fromhex(
        "80030003 00000008 00000003 00000005"
    )
    assert spdy.FrameEncoder().encode(spdy.GoAway(7)) == bytes.fromhex("80030007 00000008 00000007 00000000")


def test_header_block_is_zlib_with_the_spdy_dictionary() -> None:
    encoded = spdy.FrameEncoder().encode(spdy.SynReply(1, {"port": "80"}))
    block = encoded[12:]
    assert block[:2] == b"\x78\xbb", "a zlib header announcing a preset dictionary"
    assert struct.unpack(">I", block[2:6])[0] == 0xE3C6A7C2, "the dictionary id"
    inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
    raw = inflate.decompress(block)
    assert raw == spdy.encode_header_block({"port": "80"})
    assert raw == b"\x00\x00\x00\x01\x00\x00\x00\x04port\x00\x00\x00\x0280"
    assert block.endswith(b"\x00\x00\xff\xff"), "each block ends with a sync flush"


def test_one_compression_context_per_direction() -> None:
    """Later blocks refer back to earlier ones: they decode only with the same context, in order."""
    encoder, decoder = spdy.FrameEncoder(), spdy.FrameDecoder()
    headers = {"streamtype": "data", "port": "5000", "requestid": "12"}
    first, second = (encoder.encode(spdy.SynStream(n, headers)) for n in (1, 3))
    assert len(second) < len(first), "the second block reuses the first one's strings"
    assert decoder.feed(first) == [spdy.SynStream(1, headers)]
    assert decoder.feed(second) == [spdy.SynStream(3, headers)]
    with pytest.raises(spdy.SpdyError, match="compressed header block"):
        spdy.FrameDecoder().feed(second)


def test_headers_compressed_by_another_deflater_decode() -> None:
    """A block as Go's compress/zlib writes it (level 9 here, sync-flushed) decodes the same."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=spdy.DICTIONARY)
    raw = spdy.encode_header_block({"streamtype": "error", "port": "80", "requestid": "0"})
    block = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
    payload = struct.pack(">IIBB", 1, 0, 0, 0) + block
    wire = struct.pack(">II", 0x80030001, len(payload)) + payload
    (frame,) = spdy.FrameDecoder().feed(wire)
    assert frame == spdy.SynStream(1, {"streamtype": "error", "port": "80", "requestid": "0"})


def test_names_are_lowercased_and_multiple_values_kept() -> None:
    (frame,) = spdy.FrameDecoder().feed(spdy.FrameEncoder().encode(spdy.SynReply(1, {"Port": "1\x002"})))
    assert isinstance(frame, spdy.SynReply) and frame.headers == {"port": "1\x002"}


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (bytes.fromhex("80020006 00000004 00000001"), "unsupported SPDY version 2"),
        (bytes.fromhex("80030006 00000003 000000"), "PING frame of 3 bytes"),
        (bytes.fromhex("80030003 00000004 00000001"), "RST_STREAM frame of 4 bytes"),
        (bytes.fromhex("80030001 00000004 00000001"), "SYN_STREAM frame too short"),
        (bytes.fromhex("80030002 00000006 00000001 0000"), "bad compressed header block"),
        (bytes.fromhex("80030004 00000004 00000002"), "SETTINGS frame of 4 bytes"),
    ],
)
def test_malformed_frames_are_protocol_errors(wire: bytes, message: str) -> None:
    with pytest.raises(spdy.SpdyError, match=message):
        spdy.FrameDecoder().feed(wire)


def test_truncated_and_duplicate_header_blocks_are_refused() -> None:
    with pytest.raises(spdy.SpdyError, match="truncated"):
        spdy.decode_header_block(b"\x00\x00\x00\x01\x00\x00\x00\x09port")
    duplicate = b"\x00\x00\x00\x02" + (b"\x00\x00\x00\x01a\x00\x00\x00\x01b") * 2
    with pytest.raises(spdy.SpdyError, match="duplicate"):
        spdy.decode_header_block(duplicate)


def test_oversized_header_block_is_refused() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=spdy.DICTIONARY)
    raw = spdy.encode_header_block({"big": "x" * (spdy.MAX_HEADER_BLOCK + 10)})
    block = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
    payload = struct.pack(">I", 1) + block
    with pytest.raises(spdy.SpdyError, match="too large"):
        spdy.FrameDecoder().feed(struct.pack(">II", 0x80030002, len(payload)) + payload)


def test_a_partial_frame_waits_for_the_rest() -> None:
    decoder = spdy.FrameDecoder()
    wire = spdy.FrameEncoder().encode(spdy.Data(1, b"x" * 100))
    assert decoder.feed(wire[:50]) == [] and decoder.pending == 50
    assert decoder.feed(wire[50:] + wire[:8]) == [spdy.Data(1, b"x" * 100)]
    assert decoder.pending == 8
