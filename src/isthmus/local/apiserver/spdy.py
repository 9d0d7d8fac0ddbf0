"""SPDY/3.1 framing, as kubectl's port-forward tunnel speaks it: frames to bytes and back, and header blocks
compressed with zlib and the SPDY/3 dictionary (one zlib stream per direction per connection).

`FrameDecoder.feed` takes bytes as they come (any boundaries) and returns the complete frames; `FrameEncoder`
turns frames into bytes. Flow control is not enforced (WINDOW_UPDATE is decoded and left to the caller to
ignore), as in moby/spdystream, kubectl's side.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

VERSION: Final = 3
MAX_FRAME_LENGTH: Final = 0xFFFFFF
MAX_HEADER_BLOCK: Final = 1 << 20  # decompressed; far above what a port-forward client sends

FLAG_FIN: Final = 0x01
FLAG_UNIDIRECTIONAL: Final = 0x02
FLAG_SETTINGS_CLEAR: Final = 0x01

SYN_STREAM: Final = 1
SYN_REPLY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PING: Final = 6
GOAWAY: Final = 7
HEADERS: Final = 8
WINDOW_UPDATE: Final = 9

# RST_STREAM status codes
PROTOCOL_ERROR: Final = 1
INVALID_STREAM: Final = 2
REFUSED_STREAM: Final = 3
CANCEL: Final = 5
INTERNAL_ERROR: Final = 6
# GOAWAY status codes
GOAWAY_OK: Final = 0
GOAWAY_PROTOCOL_ERROR: Final = 1

_WORDS = (
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
)
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# The SPDY/3 draft's zlib dictionary (section 2.6.10.1): length-prefixed header words, then common values.
DICTIONARY: Final = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()

_HEAD = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U32x2 = struct.Struct(">II")


class SpdyError(Exception):
    """The peer broke the protocol; the connection cannot go on."""


# A header block: lowercase names; several values of one name are joined by NUL, as on the wire.
Headers = Mapping[str, str]


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class UnknownControl:
    """A control frame of a type this module does not know (SPDY says: ignore it)."""

    type: int
    flags: int
    payload: bytes


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


Frame = (
    SynStream
    | SynReply
    | HeadersFrame
    | RstStream
    | Settings
    | Ping
    | GoAway
    | WindowUpdate
    | UnknownControl
    | Data
)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block."""
    parts = [_U32.pack(len(headers))]
    for name, value in headers.items():
        raw_name, raw_value = name.lower().encode(), value.encode()
        parts += [_U32.pack(len(raw_name)), raw_name, _U32.pack(len(raw_value)), raw_value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> dict[str, str]:
    def take(offset: int) -> tuple[bytes, int]:
        if offset + 4 > len(block):
            raise SpdyError("truncated header block")
        (length,) = _U32.unpack_from(block, offset)
        end = offset + 4 + length
        if end > len(block):
            raise SpdyError("truncated header block")
        return block[offset + 4 : end], end

    if len(block) < 4:
        raise SpdyError("truncated header block")
    (count,) = _U32.unpack_from(block, 0)
    headers: dict[str, str] = {}
    offset = 4
    for _ in range(count):
        name, offset = take(offset)
        value, offset = take(offset)
        if not name:
            raise SpdyError("empty header name")
        key = name.decode(errors="replace").lower()
        if key in headers:
            raise SpdyError(f"duplicate header {key!r}")
        headers[key] = value.decode(errors="replace")
    if offset != len(block):
        raise SpdyError("trailing bytes after the header block")
    return headers


class HeaderCompressor:
    """One direction's header compression context: each block is a zlib sync-flushed piece of one stream."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        raw = encode_header_block(headers)
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def decompress(self, compressed: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(compressed, MAX_HEADER_BLOCK + 1)
        except zlib.error as exc:
            raise SpdyError(f"bad compressed header block: {exc}") from None
        if len(raw) > MAX_HEADER_BLOCK or self._inflate.unconsumed_tail:
            raise SpdyError("header block too large")
        return decode_header_block(raw)


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_LENGTH:
        raise ValueError("control frame too large")
    return _HEAD.pack(0x80000000 | VERSION << 16 | frame_type, flags << 24 | len(payload)) + payload


def _stream_id(value: int) -> int:
    if not 0 <= value <= 0x7FFFFFFF:
        raise ValueError(f"stream id out of range: {value}")
    return value


class FrameEncoder:
    """Frames to bytes, with this direction's header compression context."""

    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            if len(frame.data) > MAX_FRAME_LENGTH:
                raise ValueError("data frame too large")
            flags = FLAG_FIN if frame.fin else 0
            return _HEAD.pack(_stream_id(frame.stream_id), flags << 24 | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            payload = (
                _U32x2.pack(_stream_id(frame.stream_id), _stream_id(frame.associated_id))
                + bytes([(frame.priority & 0x7) << 5, 0])
                + self._headers.compress(frame.headers)
            )
            return _control(SYN_STREAM, flags, payload)
        if isinstance(frame, SynReply | HeadersFrame):
            kind = SYN_REPLY if isinstance(frame, SynReply) else HEADERS
            payload = _U32.pack(_stream_id(frame.stream_id)) + self._headers.compress(frame.headers)
            return _control(kind, FLAG_FIN if frame.fin else 0, payload)
        if isinstance(frame, RstStream):
            return _control(RST_STREAM, 0, _U32x2.pack(_stream_id(frame.stream_id), frame.status))
        if isinstance(frame, Settings):
            body = b"".join(
                _U32x2.pack((flags & 0xFF) << 24 | (key & 0xFFFFFF), value)
                for flags, key, value in frame.entries
            )
            return _control(
                SETTINGS, FLAG_SETTINGS_CLEAR if frame.clear else 0, _U32.pack(len(frame.entries)) + body
            )
        if isinstance(frame, Ping):
            return _control(PING, 0, _U32.pack(frame.ping_id))
        if isinstance(frame, GoAway):
            return _control(GOAWAY, 0, _U32x2.pack(_stream_id(frame.last_good_stream_id), frame.status))
        if isinstance(frame, WindowUpdate):
            return _control(
                WINDOW_UPDATE, 0, _U32x2.pack(_stream_id(frame.stream_id), frame.delta & 0x7FFFFFFF)
            )
        return _control(frame.type, frame.flags, frame.payload)


class FrameDecoder:
    """Bytes to frames, with the peer's header compression context. Partial frames wait for more bytes."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._headers = HeaderDecompressor()

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        offset = 0
        while len(buffer) - offset >= 8:
            first, second = _HEAD.unpack_from(buffer, offset)
            end = offset + 8 + (second & 0xFFFFFF)
            if end > len(buffer):
                break
            payload = bytes(buffer[offset + 8 : end])
            offset = end
            flags = second >> 24
            if first & 0x80000000:
                frames.append(self._control(first, flags, payload))
            else:
                frames.append(Data(first & 0x7FFFFFFF, payload, bool(flags & FLAG_FIN)))
        del buffer[:offset]
        return frames

    def _control(self, first: int, flags: int, payload: bytes) -> Frame:
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)
        if kind == SYN_STREAM:
            self._need(payload, 10, "SYN_STREAM")
            stream_id, associated = _U32x2.unpack_from(payload)
            return SynStream(
                stream_id & 0x7FFFFFFF,
                self._headers.decompress(payload[10:]),
                associated & 0x7FFFFFFF,
                payload[8] >> 5,
                fin,
                bool(flags & FLAG_UNIDIRECTIONAL),
            )
        if kind in (SYN_REPLY, HEADERS):
            self._need(payload, 4, "SYN_REPLY" if kind == SYN_REPLY else "HEADERS")
            (stream_id,) = _U32.unpack_from(payload)
            headers = self._headers.decompress(payload[4:])
            if kind == SYN_REPLY:
                return SynReply(stream_id & 0x7FFFFFFF, headers, fin)
            return HeadersFrame(stream_id & 0x7FFFFFFF, headers, fin)
        if kind == RST_STREAM:
            self._exact(payload, 8, "RST_STREAM")
            stream_id, status = _U32x2.unpack(payload)
            return RstStream(stream_id & 0x7FFFFFFF, status)
        if kind == SETTINGS:
            self._need(payload, 4, "SETTINGS")
            (count,) = _U32.unpack_from(payload)
            self._exact(payload, 4 + 8 * count, "SETTINGS")
            entries = tuple(
                (key >> 24, key & 0xFFFFFF, value)
                for key, value in (_U32x2.unpack_from(payload, 4 + 8 * i) for i in range(count))
            )
            return Settings(entries, bool(flags & FLAG_SETTINGS_CLEAR))
        if kind == PING:
            self._exact(payload, 4, "PING")
            return Ping(_U32.unpack(payload)[0])
        if kind == GOAWAY:
            self._exact(payload, 8, "GOAWAY")
            last, status = _U32x2.unpack(payload)
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == WINDOW_UPDATE:
            self._exact(payload, 8, "WINDOW_UPDATE")
            stream_id, delta = _U32x2.unpack(payload)
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return UnknownControl(kind, flags, payload)

    @staticmethod
    def _need(payload: bytes, size: int, name: str) -> None:
        if len(payload) < size:
            raise SpdyError(f"{name} frame too short ({len(payload)} bytes)")

    @staticmethod
    def _exact(payload: bytes, size: int, name: str) -> None:
        if len(payload) != size:
            raise SpdyError(f"{name} frame of {len(payload)} bytes, expected {size}")
