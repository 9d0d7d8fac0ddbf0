"""The node's half of `kubectl port-forward`: a TCP connection to a port on the pod's own loopback, made inside
the pod's network namespace (as a kubelet's container runtime does, so ports bound to 127.0.0.1 in the pod, such
as Envoy's admin port, can be forwarded), handed to the API server as an open file descriptor.

Protocol, on a Unix socket of mode 0600: the API server sends one JSON line `{"namespace", "name", "uid",
"port"}`; the node answers with one message, `ok` with the connected socket attached (SCM_RIGHTS), or
`error: TEXT`.

Each connection is made by a thread of its own that enters the pod's network namespace and then ends, so no
other thread ever runs in a pod's namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 5.0  # seconds for the connect inside the pod (the API server waits longer)
REQUEST_LIMIT: Final = 4096  # bytes of a request line
_CLONE_NEWNET: Final = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class DialError(Exception):
    """What went wrong, worded as the kubelet words it after "error forwarding port P to pod NAME, uid UID: "."""


class NamespaceError(OSError):
    """The pod's network namespace could not be entered."""


def go_wording(exc: OSError) -> str:
    """Go's wording for a failed dial (what Kubernetes puts on the error stream)."""
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return "i/o timeout"
    if exc.errno is not None and exc.errno in errno.errorcode:
        return f"connect: {os.strerror(exc.errno).lower()}"
    return str(exc)


def connect_in_namespace(netns_path: str, port: int, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A connected socket to 127.0.0.1:`port` inside the network namespace at `netns_path` (blocking; runs a
    thread that enters the namespace and ends)."""
    outcome: list[socket.socket | BaseException] = []

    def run() -> None:
        try:
            try:
                with open(netns_path, "rb") as namespace:
                    if _libc.setns(namespace.fileno(), _CLONE_NEWNET) != 0:
                        code = ctypes.get_errno()
                        raise NamespaceError(code, os.strerror(code))
            except OSError as exc:
                raise NamespaceError(exc.errno, exc.strerror) from None
            outcome.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, name=f"port-forward :{port}", daemon=True)
    worker.start()
    worker.join()
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    result.settimeout(None)
    return result


class PortForwardServer:
    """Serves connections into pods of this node (see the module's protocol). `netns_of(namespace, name, uid)`:
    the path of that pod's network namespace, "" when it has none on this node."""

    def __init__(self, netns_of: Callable[[str, str, str], str], socket_path: str) -> None:
        self.netns_of = netns_of
        self.socket_path = socket_path
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        path = Path(self.socket_path)
        path.unlink(missing_ok=True)  # noqa: ASYNC240 (once, at start)
        self._server = await asyncio.start_unix_server(self._serve, self.socket_path, limit=REQUEST_LIMIT)
        path.chmod(0o600)  # noqa: ASYNC240

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        Path(self.socket_path).unlink(missing_ok=True)  # noqa: ASYNC240

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected: socket.socket | None = None
        try:
            try:
                connected = await self._connect(await reader.readline())
                reply, fds = b"ok\n", [connected.fileno()]
            except DialError as exc:
                reply, fds = f"error: {exc}\n".encode(), []
            raw = writer.get_extra_info("socket")
            with socket.socket(fileno=os.dup(raw.fileno())) as channel:  # shares the loop's non-blocking mode
                if socket.send_fds(channel, [reply], fds) != len(reply):
                    raise OSError(errno.EMSGSIZE, "the reply did not fit the socket's buffer")
        except (OSError, ValueError) as exc:
            log.info("port-forward request failed: %s", exc)
        finally:
            if connected is not None:
                connected.close()  # the API server holds its own copy now
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _connect(self, line: bytes) -> socket.socket:
        try:
            request = json.loads(line)
            namespace, name, uid = str(request["namespace"]), str(request["name"]), str(request["uid"])
            port = int(request["port"])
            if not 0 < port < 65536:
                raise ValueError(f"port {port} out of range")
        except (ValueError, KeyError, TypeError) as exc:
            raise DialError(f"malformed request to the node: {exc}") from None
        netns = self.netns_of(namespace, name, uid)
        if not netns:
            raise DialError(f"pod {namespace}/{name} (uid {uid}) has no network namespace on this node")
        try:
            return await asyncio.to_thread(connect_in_namespace, netns, port)
        except NamespaceError as exc:
            raise DialError(
                f'failed to execute portforward in network namespace "{netns}": {exc.strerror or exc}'
            ) from None
        except OSError as exc:
            raise DialError(
                f"failed to connect to localhost:{port} inside the pod's network namespace: "
                f"dial tcp4 127.0.0.1:{port}: {go_wording(exc)}"
            ) from None


async def dial(socket_path: str, namespace: str, name: str, uid: str, port: int) -> socket.socket:
    """The API server's half: ask the node at `socket_path` for a connection to `port` in the pod; raises
    DialError with the node's words, or OSError when the node cannot be reached."""
    loop = asyncio.get_running_loop()
    channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        channel.setblocking(False)
        await loop.sock_connect(channel, socket_path)
        request = json.dumps({"namespace": namespace, "name": name, "uid": uid, "port": port}) + "\n"
        await loop.sock_sendall(channel, request.encode())
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(channel.fileno(), ready)
        try:
            await readable
        finally:
            loop.remove_reader(channel.fileno())
        message, fds, _, _ = socket.recv_fds(channel, REQUEST_LIMIT, 1)
    finally:
        channel.close()
    if fds:
        connected = socket.socket(fileno=fds[0])
        connected.setblocking(False)
        return connected
    text = message.decode(errors="replace").strip()
    raise DialError(text.removeprefix("error: ") if text else "the node closed the connection")
