"""The node's own API for its API server (what kubelet serves on port 10250), on a Unix socket:
`/containerLogs/NS/POD/CONTAINER` (follow, tailLines, previous, timestamps, sinceSeconds, limitBytes) and
`/exec/NS/POD/CONTAINER` over WebSocket with Kubernetes' channel protocol (v5 and v4): stdin 0, stdout 1,
stderr 2, status 3, resize 4; in v5 a `ff 00` message closes stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from isthmus.local.node import containers
from isthmus.local.node.pods import ContainerState, PodManager, PodWorker

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


def _error(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.Response(body=orjson.dumps(body), status=code, content_type="application/json")


def exec_status(code: int) -> bytes:
    if code == 0:
        return orjson.dumps({"metadata": {}, "status": "Success"})
    return orjson.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    )


class KubeletApi:
    def __init__(self, pods: PodManager, socket_path: str) -> None:
        self.pods = pods
        self.socket_path = socket_path
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.logs)
        app.router.add_route("*", "/exec/{namespace}/{pod}/{container}", self.exec)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        socket_path = Path(self.socket_path)
        socket_path.unlink(missing_ok=True)  # noqa: ASYNC240 (once, at start)
        await web.UnixSite(self._runner, self.socket_path).start()
        socket_path.chmod(0o600)  # noqa: ASYNC240

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _target(self, request: web.Request) -> tuple[PodWorker, ContainerState] | web.Response:
        namespace, pod, name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        worker = self.pods.worker(namespace, pod)
        if worker is None:
            return _error(404, "NotFound", f'pod "{pod}" is not running on this node')
        container = worker.find(name)
        if container is None:
            return _error(400, "BadRequest", f"container {name} is not valid for pod {pod}")
        return worker, container

    # -- logs ---------------------------------------------------------------------------------------------

    async def logs(self, request: web.Request) -> web.StreamResponse:
        found = self._target(request)
        if isinstance(found, web.Response):
            return found
        worker, container = found
        query = request.query
        previous = query.get("previous") in ("true", "1")
        run = container.restart_count - (1 if previous else 0)
        if run < 0 or (previous and not container.last_terminated):
            return _error(
                400,
                "BadRequest",
                f'previous terminated container "{container.name}" in pod "{worker.pod["metadata"]["name"]}"'
                " not found",
            )
        path = worker.node.log_path(worker.uid, container.name, run)
        if not path.exists():
            waiting = container.reason or "ContainerCreating"
            return _error(
                400,
                "BadRequest",
                f'container "{container.name}" in pod "{worker.pod["metadata"]["name"]}" '
                f"is waiting to start: {waiting}",
            )
        timestamps = query.get("timestamps") in ("true", "1")
        tail = int(query["tailLines"]) if query.get("tailLines", "").lstrip("-").isdigit() else -1
        since = time.time() - int(query["sinceSeconds"]) if query.get("sinceSeconds", "").isdigit() else None
        limit = int(query["limitBytes"]) if query.get("limitBytes", "").isdigit() else None
        follow = query.get("follow") in ("true", "1") and not previous
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = 0
        async for line in self._lines(
            path, tail, follow, lambda: container.running is None or container.restart_count != run
        ):
            stamp, _, rest = line.partition(b" ")
            _, _, rest = rest.partition(b" ")  # stream
            _, _, message = rest.partition(b" ")  # P/F tag
            if since is not None:
                with contextlib.suppress(ValueError):
                    if datetime.fromisoformat(stamp[:26].decode() + "+00:00").timestamp() < since:
                        continue
            out = (stamp + b" " + message if timestamps else message) + b"\n"
            if limit is not None:
                out = out[: max(0, limit - sent)]
            await response.write(out)
            sent += len(out)
            if limit is not None and sent >= limit:
                break
        return response

    async def _lines(self, path: Path, tail: int, follow: bool, finished: Any) -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            lines = handle.read().splitlines()
            for line in lines[-tail:] if tail >= 0 else lines:
                yield line
            if tail == 0:
                lines = []
            pending = b""
            while follow:
                chunk = handle.read()
                if chunk:
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for line in complete:
                        yield line
                    continue
                if finished():
                    break
                await asyncio.sleep(0.1)

    # -- exec ---------------------------------------------------------------------------------------------

    async def exec(self, request: web.Request) -> web.StreamResponse:
        found = self._target(request)
        if isinstance(found, web.Response):
            return found
        _, container = found
        running = container.running
        if running is None or running.pid1 is None:
            return _error(400, "BadRequest", f'container "{container.name}" is not running')
        query = request.query
        command = query.getall("command", [])
        if not command:
            return _error(400, "BadRequest", "you must specify at least one command for the container")
        tty = query.get("tty") in ("true", "1")
        want_stdin = query.get("stdin") in ("true", "1")
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, heartbeat=30)
        await ws.prepare(request)
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        if tty:
            command = [sys.executable, "-m", "isthmus.local.node.ptyrelay", "--", *command]
        argv = containers.exec_argv(
            running.pid1, container.uid, container.gid, container.groups, container.capabilities, command
        )
        env = dict(container.env)
        if tty:
            env.setdefault("TERM", "xterm")
        code = await self._run(ws, argv, env, tty, want_stdin, v5)
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(b"\x03" + exec_status(code))
            await ws.close()
        return ws

    async def _run(
        self,
        ws: web.WebSocketResponse,
        argv: list[str],
        env: dict[str, str],
        tty: bool,
        want_stdin: bool,
        v5: bool,
    ) -> int:
        control_read = control_write = -1
        if tty:
            # The terminal is made inside the container (ptyrelay), so the command sees its own /dev/pts.
            control_read, control_write = os.pipe()
            env = {**env, "ISTHMUS_PTY_CONTROL": str(control_read)}
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(control_read,),
            )
            os.close(control_read)
        else:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
            )

        async def pump(reader: asyncio.StreamReader, channel: int) -> None:
            while chunk := await reader.read(65536):
                await ws.send_bytes(bytes([channel]) + chunk)

        async def from_client() -> None:
            async for message in ws:
                if message.type != WSMsgType.BINARY or not message.data:
                    continue
                data: bytes = message.data
                channel, payload = data[0], data[1:]
                if channel == 0 and process.stdin is not None:
                    process.stdin.write(payload)
                    with contextlib.suppress(ConnectionError):
                        await process.stdin.drain()
                elif channel == 255 and v5 and payload[:1] == b"\x00" and process.stdin is not None:
                    process.stdin.close()
                elif channel == 4 and tty:
                    with contextlib.suppress(ValueError, OSError):
                        size = orjson.loads(payload)
                        os.write(
                            control_write,
                            f"{int(size.get('Height', 24))} {int(size.get('Width', 80))}\n".encode(),
                        )
            # the client went away: nothing will read the command's output any more
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()

        assert process.stdout is not None
        readers = [asyncio.create_task(pump(process.stdout, 1))]
        if process.stderr is not None:
            readers.append(asyncio.create_task(pump(process.stderr, 2)))
        client = asyncio.create_task(from_client())
        code = await process.wait()
        await asyncio.gather(*readers, return_exceptions=True)
        client.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client
        if tty:
            os.close(control_write)
        return code
