"""Container probes as kubelet runs them: httpGet, tcpSocket and exec, with initial delay, period, timeout and
success/failure thresholds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

JsonObject = dict[str, Any]
# Runs a command in the container: argv -> (exit code, output).
ExecInContainer = Callable[[Sequence[str], float], Awaitable[tuple[int, bytes]]]


def resolve_port(port: Any, container: JsonObject) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(
        f"port {port!r} is not a number nor the name of a port of container {container.get('name')}"
    )


async def run_probe(
    probe: JsonObject, pod_ip: str, container: JsonObject, exec_in: ExecInContainer
) -> tuple[bool, str]:
    """One probe attempt: (succeeded, why not)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            action = probe["httpGet"]
            port = resolve_port(action.get("port"), container)
            scheme = str(action.get("scheme", "HTTP")).lower()
            host = action.get("host") or pod_ip
            path = action.get("path") or "/"
            headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.32")
            url = f"{scheme}://{host}:{port}{path}"
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.get(url, headers=headers, ssl=False, allow_redirects=False) as response,
            ):
                await response.read()
                if 200 <= response.status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {response.status}"
        if "tcpSocket" in probe:
            port = resolve_port(probe["tcpSocket"].get("port"), container)
            host = probe["tcpSocket"].get("host") or pod_ip
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, ""
        if "exec" in probe:
            code, output = await exec_in(probe["exec"].get("command") or [], timeout)
            if code == 0:
                return True, ""
            return False, f"command exited with {code}: {output.decode(errors='replace').strip()[:200]}"
        return False, "the probe has no httpGet, tcpSocket or exec action"
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return False, f"probe failed: {exc}"


class ProbeState:
    """Thresholds over consecutive results; `result` is the probe's verdict so far (None before any)."""

    def __init__(self, probe: JsonObject) -> None:
        self.probe = probe
        self.success_threshold = int(probe.get("successThreshold") or 1)
        self.failure_threshold = int(probe.get("failureThreshold") or 3)
        self.successes = 0
        self.failures = 0
        self.result: bool | None = None
        self.last_error = ""

    def record(self, ok: bool, why: str) -> bool:
        """Add one attempt; True when the verdict changed."""
        before = self.result
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            self.last_error = why
            if self.failures >= self.failure_threshold:
                self.result = False
        return self.result != before
