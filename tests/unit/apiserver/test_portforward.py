"""The port-forward session over a real WebSocket on loopback, driven frame by frame as kubectl drives it:
stream pairs, relaying both ways, half-close, errors on the error stream, resets, pings and protocol errors."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import test_utils, web

from isthmus.local.apiserver import portforward, spdy
from isthmus.local.apiserver.portforward import PodTarget, Session
from isthmus.local.node.portforward import DialError, go_wording


async def loopback(port: int) -> socket.socket:
    """The dialer of a pod whose network is this host's loopback (the node's part is tested on its own)."""
    connected = socket.socket()
    connected.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(connected, ("127.0.0.1", port))
    except OSError as exc:
        connected.close()
        raise DialError(f"dial tcp 127.0.0.1:{port}: {go_wording(exc)}") from None
    return connected


@dataclass
class Echo:
    """A TCP echo server on loopback (the pod); records what each connection saw."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = b""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                seen += data
                writer.write(data)
                await writer.drain()
        self.received.append(seen)
        writer.close()
        self.ended.set()


class Client:
    """kubectl's side: SPDY frames in WebSocket messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.encoder = spdy.FrameEncoder()
        self.decoder = spdy.FrameDecoder()
        self.frames: list[spdy.Frame] = []

    async def send(self, *frames: spdy.Frame, piece: int = 0) -> None:
        wire = b"".join(self.encoder.encode(frame) for frame in frames)
        if not piece:
            await self.ws.send_bytes(wire)
            return
        for offset in range(0, len(wire), piece):
            await self.ws.send_bytes(wire[offset : offset + piece])

    async def next(self) -> spdy.Frame:
        while not self.frames:
            message = await asyncio.wait_for(self.ws.receive(), 5)
            if message.type != aiohttp.WSMsgType.BINARY:
                raise EOFError(f"the WebSocket ended: {message.type}")
            self.frames += self.decoder.feed(message.data)
        return self.frames.pop(0)

    async def open_pair(self, request: int, port: int | str, piece: int = 0) -> tuple[int, int]:
        error, data = 4 * request + 1, 4 * request + 3
        headers = {"port": str(port), "requestid": str(request)}
        await self.send(
            spdy.SynStream(error, {"streamtype": "error", **headers}),
            spdy.Data(error, b"", fin=True),
            spdy.SynStream(data, {"streamtype": "data", **headers}),
            piece=piece,
        )
        assert [await self.next(), await self.next()] == [spdy.SynReply(error), spdy.SynReply(data)]
        return error, data

    async def until_fins(self, *streams: int) -> dict[int, bytes]:
        """What each stream carried until all of them ended."""
        got = dict.fromkeys(streams, b"")
        open_streams = set(streams)
        while open_streams:
            frame = await self.next()
            assert isinstance(frame, spdy.Data), frame
            got[frame.stream_id] += frame.data
            if frame.fin:
                open_streams.discard(frame.stream_id)
        return got


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    pod = Echo()
    server = await asyncio.start_server(pod.serve, "127.0.0.1", 0)
    pod.port = server.sockets[0].getsockname()[1]
    async with server:
        yield pod


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(portforward.PROTOCOL,))
        await ws.prepare(request)
        await Session(ws, PodTarget("sample", "pod-1", "uid-1", loopback)).run()
        return ws

    app = web.Application()
    app.router.add_get("/portforward", handler)
    server = test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(server.make_url("/portforward"), protocols=(portforward.PROTOCOL,)) as ws,
        ):
            assert ws.protocol == portforward.PROTOCOL
            yield Client(ws)
    finally:
        await server.close()


async def test_data_both_ways_then_fin_on_both_streams(client: Client, echo: Echo) -> None:
    error, data = await client.open_pair(0, echo.port)
    await client.send(spdy.Data(data, b"hello "), spdy.Data(data, b"pod", fin=True))
    got = await client.until_fins(data, error)
    assert got == {data: b"hello pod", error: b""}
    assert echo.received == [b"hello pod"], "kubectl's FIN half-closed the pod connection"


async def test_frames_in_one_byte_messages_and_several_connections(client: Client, echo: Echo) -> None:
    pairs = [await client.open_pair(n, echo.port, piece=1) for n in range(3)]
    payloads = {data: bytes([n]) * (100_000 + n) for n, (_, data) in enumerate(pairs)}
    for data, payload in payloads.items():
        await client.send(spdy.Data(data, payload, fin=True), piece=7)
    got = await client.until_fins(*(stream for pair in pairs for stream in pair))
    for error, data in pairs:
        assert got[data] == payloads[data] and got[error] == b""


async def test_refused_connection_is_reported_on_the_error_stream(client: Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # bound, never listening: refused
        error, data = await client.open_pair(0, closed)
        got = await client.until_fins(data, error)
    assert got[data] == b""
    assert got[error].decode() == (
        f"error forwarding port {closed} to pod pod-1, uid uid-1: dial tcp 127.0.0.1:{closed}: "
        "connect: connection refused"
    )


async def test_invalid_port(client: Client) -> None:
    error, data = await client.open_pair(0, "http")
    got = await client.until_fins(data, error)
    assert got[error] == b'invalid port "http" for pod pod-1'


async def test_data_sent_before_the_connect_finishes_is_kept(client: Client, echo: Echo) -> None:
    error, data = 1, 3
    headers = {"port": str(echo.port), "requestid": "9"}
    await client.send(
        spdy.SynStream(error, {"streamtype": "error", **headers}),
        spdy.SynStream(data, {"streamtype": "data", **headers}),
        spdy.Data(data, b"early", fin=True),
    )
    assert [await client.next(), await client.next()] == [spdy.SynReply(error), spdy.SynReply(data)]
    assert (await client.until_fins(data, error))[data] == b"early"


async def test_reset_closes_the_pod_connection(client: Client, echo: Echo) -> None:
    _, data = await client.open_pair(0, echo.port)
    await client.send(spdy.Data(data, b"partial"))
    assert await client.next() == spdy.Data(data, b"partial")
    await client.send(spdy.RstStream(data, spdy.CANCEL))
    await asyncio.wait_for(echo.ended.wait(), 5)
    assert echo.received == [b"partial"]
    await client.send(spdy.Ping(3))
    assert await client.next() == spdy.Ping(3), "nothing else was sent for the reset stream"


async def test_pings_are_echoed_and_other_control_frames_ignored(client: Client) -> None:
    await client.send(
        spdy.Settings(((0, 4, 1000),)),
        spdy.WindowUpdate(1, 1000),
        spdy.UnknownControl(10, 0, b""),
        spdy.Ping(1),
        spdy.Ping(5),
    )
    assert [await client.next(), await client.next()] == [spdy.Ping(1), spdy.Ping(5)]


async def test_streams_without_a_partner_time_out(
    client: Client, echo: Echo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portforward, "STREAM_PAIR_TIMEOUT", 0.2)
    await client.send(spdy.SynStream(1, {"streamtype": "error", "port": str(echo.port), "requestid": "0"}))
    assert await client.next() == spdy.SynReply(1)
    got = await client.until_fins(1)
    assert got[1] == b"timed out waiting for the other stream"


async def test_unknown_stream_type_and_reused_ids_are_reset(client: Client) -> None:
    await client.send(spdy.SynStream(1, {"streamtype": "bogus", "port": "1"}))
    assert await client.next() == spdy.RstStream(1, spdy.PROTOCOL_ERROR)
    await client.send(spdy.SynStream(1, {"streamtype": "error", "port": "1"}))
    assert await client.next() == spdy.RstStream(1, spdy.PROTOCOL_ERROR)


async def test_protocol_error_ends_the_session_with_goaway(client: Client) -> None:
    await client.send(spdy.Ping(1))
    assert await client.next() == spdy.Ping(1)
    await client.ws.send_bytes(bytes.fromhex("80020006 00000004 00000001"))  # SPDY/2
    assert await client.next() == spdy.GoAway(0, spdy.GOAWAY_PROTOCOL_ERROR)
    with pytest.raises(EOFError):
        await client.next()


async def test_goaway_ends_the_session_and_its_connections(client: Client, echo: Echo) -> None:
    _, data = await client.open_pair(0, echo.port)
    await client.send(spdy.Data(data, b"x"))
    assert await client.next() == spdy.Data(data, b"x")
    await client.send(spdy.GoAway(0))
    with pytest.raises(EOFError):
        await client.next()
    await asyncio.wait_for(echo.ended.wait(), 5)
