"""`pods/portforward`: kubectl's WebSocket tunnel (subprotocol `SPDY/3.1+portforward.k8s.io`, a SPDY/3.1 byte
stream in binary messages) relayed to TCP connections to the pod's own loopback, which the node process makes
inside the pod's network namespace and hands over (`isthmus.local.node.portforward`), as a kubelet does.

Per forwarded connection kubectl opens an error stream and a data stream with the same `requestid`; once both
are there the server connects to the pod, relays DATA both ways, half-closes on FIN, and ends both streams when
the pod closes. A failed connect is reported as text on the error stream (kubectl prints it). Only the
WebSocket form is served: kubectl's SPDY fallback (`POST`, `Upgrade: SPDY/3.1`) is refused with 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import WSMsgType, web

from isthmus.local.apiserver import spdy
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.errors import StatusError, bad_request, not_found
from isthmus.local.apiserver.handlers import ApiHandlers, RequestInfo
from isthmus.local.apiserver.objects import Objects
from isthmus.local.node.portforward import DialError, dial, go_wording

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]

PROTOCOL: Final = "SPDY/3.1+portforward.k8s.io"
CONNECT_TIMEOUT: Final = (
    10.0  # seconds for the node to hand over a connection to the pod (it gives up after 5)
)
STREAM_PAIR_TIMEOUT: Final = 30.0  # seconds a stream waits for its partner (the kubelet's stream timeout)
CHUNK: Final = 256 * 1024  # bytes read from the pod per DATA frame
READ_LIMIT: Final = 1024 * 1024
MAX_MESSAGE: Final = 2 * spdy.MAX_FRAME_LENGTH  # kubectl sends a few KiB per WebSocket message


Dialer = Callable[[int], Awaitable[socket.socket]]  # a connected socket to a port of the pod, or DialError


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    name: str
    uid: str
    dial: Dialer


class PortForward:
    def __init__(self, objects: Objects, config: ApiServerConfig) -> None:
        self.objects = objects
        self.config = config

    def install(self, handlers: ApiHandlers) -> None:
        handlers.subresource_handlers[("", "pods", "portforward")] = self.portforward
        handlers.create_on_upgrade.add(("", "pods", "portforward"))

    def target(self, info: RequestInfo) -> PodTarget:
        """The pod to forward to, or the Status error kubectl shows (before any upgrade)."""
        stored = self.objects.store.get(("", "pods"), info.namespace, info.name)
        if stored is None:
            raise not_found("pods", "", info.name)
        pod = stored.obj
        status = pod.get("status") or {}
        phase = status.get("phase") or "Pending"
        if phase != "Running" or pod["metadata"].get("deletionTimestamp"):
            state = "Terminating" if phase == "Running" else phase
            raise bad_request(
                f"unable to forward port because pod {info.name} is not running. Current status={state}"
            )
        node = pod.get("spec", {}).get("nodeName") or ""
        socket_path = self.config.portforward_socket
        if node != self.config.node_name or not socket_path:
            raise StatusError(
                500,
                "InternalError",
                f'Internal error occurred: no node process serves node "{node}" of pod {info.name}',
            )

        uid = str(pod["metadata"].get("uid", ""))

        async def through_node(port: int) -> socket.socket:
            return await dial(socket_path, info.namespace, info.name, uid, port)

        return PodTarget(info.namespace, info.name, uid, through_node)

    async def portforward(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        target = self.target(info)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise bad_request(
                "Upgrade request required: this server forwards ports over WebSocket only (subprotocol "
                f"{PROTOCOL}: kubectl 1.31 or newer, or 1.30 with KUBECTL_PORT_FORWARD_WEBSOCKETS=true), "
                "not over SPDY"
            )
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        if PROTOCOL not in offered:
            raise bad_request(
                f"unsupported port-forward protocol {', '.join(offered) or '(none)'}: "
                f"this server speaks {PROTOCOL}"
            )
        ws = web.WebSocketResponse(protocols=(PROTOCOL,), max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        await Session(ws, target).run()
        return ws


@dataclass(eq=False)
class Forward:
    """One forwarded connection: kubectl's stream pair for one request id, and the TCP connection to the pod."""

    request_id: str
    error_stream: int = 0
    data_stream: int = 0
    pending: list[bytes] = field(default_factory=list)  # client data that came before the connect finished
    client_done: bool = False  # kubectl half-closed the data stream
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None  # connecting and relaying, or ending it
    timer: asyncio.TimerHandle | None = None


class Session:
    """One port-forward WebSocket: the SPDY connection and its forwarded connections."""

    def __init__(self, ws: web.WebSocketResponse, target: PodTarget) -> None:
        self.ws = ws
        self.target = target
        self.decoder = spdy.FrameDecoder()
        self.encoder = spdy.FrameEncoder()
        self.send_lock = asyncio.Lock()
        self.forwards: dict[str, Forward] = {}
        self.streams: dict[int, Forward] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_stream = 0

    async def run(self) -> None:
        try:
            async for message in self.ws:
                if message.type != WSMsgType.BINARY:
                    continue
                for frame in self.decoder.feed(message.data):
                    if not await self.on_frame(frame):
                        return
        except spdy.SpdyError as exc:
            log.info("port-forward to %s/%s: %s", self.target.namespace, self.target.name, exc)
            await self.send(spdy.GoAway(self.last_stream, spdy.GOAWAY_PROTOCOL_ERROR))
        finally:
            await self.close()

    async def close(self) -> None:
        for forward in list(self.forwards.values()):
            self.drop(forward)
        self.forwards.clear()
        self.streams.clear()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.ws.close()

    def start(self, forward: Forward, work: Coroutine[Any, Any, None]) -> None:
        forward.task = task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def send(self, frame: spdy.Frame) -> bool:
        """Send one frame; False once the WebSocket is gone."""
        async with self.send_lock:
            if self.ws.closed:
                return False
            try:
                await self.ws.send_bytes(self.encoder.encode(frame))
            except ConnectionError:
                return False
            return True

    async def on_frame(self, frame: spdy.Frame) -> bool:
        """Handle one frame from kubectl; False ends the session."""
        if isinstance(frame, spdy.Data):
            await self.on_data(frame)
        elif isinstance(frame, spdy.SynStream):
            await self.on_syn_stream(frame)
        elif isinstance(frame, spdy.RstStream):
            forward = self.streams.get(frame.stream_id)
            if forward is not None:
                self.forget(forward)
                self.drop(forward)
                if forward.task is not None:
                    forward.task.cancel()
        elif isinstance(frame, spdy.Ping):
            await self.send(frame)
        elif isinstance(frame, spdy.GoAway):
            return False
        return True  # SETTINGS, WINDOW_UPDATE, HEADERS and unknown control frames are ignored

    async def on_syn_stream(self, frame: spdy.SynStream) -> None:
        stream_id = frame.stream_id
        if stream_id <= self.last_stream or stream_id % 2 == 0:
            await self.send(spdy.RstStream(stream_id, spdy.PROTOCOL_ERROR))
            return
        self.last_stream = stream_id
        kind = frame.headers.get("streamtype", "")
        if kind not in ("error", "data"):
            await self.send(spdy.RstStream(stream_id, spdy.PROTOCOL_ERROR))
            return
        await self.send(spdy.SynReply(stream_id))
        # Clients older than the requestid header pair streams by id, as the kubelet does.
        request_id = frame.headers.get("requestid") or str(stream_id if kind == "error" else stream_id - 2)
        forward = self.forwards.get(request_id)
        if forward is None:
            forward = self.forwards[request_id] = Forward(request_id)
            forward.timer = asyncio.get_running_loop().call_later(
                STREAM_PAIR_TIMEOUT, self.pair_timed_out, forward
            )
        if (forward.error_stream if kind == "error" else forward.data_stream) != 0:
            await self.send(spdy.RstStream(stream_id, spdy.PROTOCOL_ERROR))
            return
        if kind == "error":
            forward.error_stream = stream_id
        else:
            forward.data_stream = stream_id
        self.streams[stream_id] = forward
        if frame.fin and kind == "data":
            forward.client_done = True
        if forward.error_stream and forward.data_stream:
            if forward.timer is not None:
                forward.timer.cancel()
            self.start(forward, self.forward(forward, frame.headers.get("port", "")))

    async def on_data(self, frame: spdy.Data) -> None:
        forward = self.streams.get(frame.stream_id)
        if forward is None or frame.stream_id != forward.data_stream or forward.client_done:
            return  # the error stream carries nothing from kubectl; late frames of ended streams are dropped
        if frame.data:
            if forward.writer is None:
                forward.pending.append(frame.data)
            elif not forward.writer.is_closing():  # the pod reset it: the forward is ending
                forward.writer.write(frame.data)
                with contextlib.suppress(ConnectionError):
                    await forward.writer.drain()
        if frame.fin:
            forward.client_done = True
            if (
                forward.writer is not None
                and forward.writer.can_write_eof()
                and not forward.writer.is_closing()
            ):
                with contextlib.suppress(OSError):
                    forward.writer.write_eof()

    def pair_timed_out(self, forward: Forward) -> None:
        if forward.task is None and self.forwards.get(forward.request_id) is forward:
            self.start(forward, self.finish(forward, "timed out waiting for the other stream"))

    async def forward(self, forward: Forward, port_header: str) -> None:
        target = self.target
        try:
            port = int(port_header)
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            await self.finish(forward, f'invalid port "{port_header}" for pod {target.name}')
            return
        connected: socket.socket | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                connected = await target.dial(port)
            reader, writer = await asyncio.open_connection(sock=connected, limit=READ_LIMIT)
        except (DialError, OSError) as exc:
            if connected is not None:
                connected.close()
            reason = str(exc) if isinstance(exc, DialError) else f"reaching the node: {go_wording(exc)}"
            await self.finish(
                forward, f"error forwarding port {port} to pod {target.name}, uid {target.uid}: {reason}"
            )
            return
        forward.writer = writer
        if forward.pending:
            writer.write(b"".join(forward.pending))
            forward.pending.clear()
        if forward.client_done and writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        try:
            while chunk := await reader.read(CHUNK):
                if not await self.send(spdy.Data(forward.data_stream, chunk)):
                    break
        except OSError as exc:
            log.debug("port-forward to %s/%s:%d ended: %s", target.namespace, target.name, port, exc)
        await self.finish(forward)

    async def finish(self, forward: Forward, error: str = "") -> None:
        """End a forwarded connection: the error (if any) on the error stream, then FIN on both streams."""
        self.forget(forward)
        self.drop(forward)
        if error:
            log.info("port-forward to %s/%s: %s", self.target.namespace, self.target.name, error)
            if forward.error_stream:
                await self.send(spdy.Data(forward.error_stream, error.encode()))
        for stream_id in (forward.data_stream, forward.error_stream):
            if stream_id:
                await self.send(spdy.Data(stream_id, b"", fin=True))

    def forget(self, forward: Forward) -> None:
        if self.forwards.get(forward.request_id) is forward:
            del self.forwards[forward.request_id]
        for stream_id in (forward.error_stream, forward.data_stream):
            if self.streams.get(stream_id) is forward:
                del self.streams[stream_id]

    @staticmethod
    def drop(forward: Forward) -> None:
        if forward.timer is not None:
            forward.timer.cancel()
        if forward.writer is not None:
            forward.writer.close()
        forward.pending.clear()
