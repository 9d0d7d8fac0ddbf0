"""Running one container: its process tree, its log, its end; and running a command inside it (exec).

A container is `nsenter --net=POD unshare --pid --fork ... containerinit SPEC` (see containerinit): the node's
child is the `unshare` process; its only child is the container's PID 1 (tini), whose host pid is found from
/proc. Stopping sends SIGTERM to PID 1 (tini forwards it to the program), then SIGKILL after the grace period;
killing PID 1 ends its PID namespace, so nothing the container started survives. Output goes through pipes
into a log file in the CRI format (`<RFC3339Nano> <stream> F <line>`), so logs can be followed and timestamped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

TINI = "/usr/bin/tini"


def cri_timestamp() -> str:
    now = time.time()
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(now % 1 * 1e9):09d}Z"


@dataclass
class ContainerSpec:
    """Everything containerinit needs, plus where the node keeps this run's files."""

    name: str
    hostname: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    uid: int
    gid: int
    groups: list[int]
    capabilities: list[str]
    no_new_privs: bool
    read_only_root: bool
    mounts: list[dict[str, Any]]
    hide: list[str]
    traverse: list[str]
    run_dir: Path  # this run of the container: overlay layers, spec

    def write(self) -> Path:
        for sub in ("upper", "work", "merged"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "spec.json"
        path.write_bytes(
            orjson.dumps(
                {
                    "hostname": self.hostname,
                    "argv": self.argv,
                    "env": self.env,
                    "workdir": self.workdir,
                    "uid": self.uid,
                    "gid": self.gid,
                    "groups": self.groups,
                    "capabilities": self.capabilities,
                    "no_new_privs": self.no_new_privs,
                    "read_only_root": self.read_only_root,
                    "mounts": self.mounts,
                    "hide": self.hide,
                    "traverse": self.traverse,
                    "tini": TINI,
                    "root": {
                        "upper": str(self.run_dir / "upper"),
                        "work": str(self.run_dir / "work"),
                        "merged": str(self.run_dir / "merged"),
                    },
                }
            )
        )
        return path


@dataclass
class RunningContainer:
    """A started container process and its log."""

    process: asyncio.subprocess.Process
    log_path: Path
    started_at: float = field(default_factory=time.time)
    pid1: int | None = None
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)

    async def find_pid1(self, timeout: float = 5.0) -> int | None:
        """The host pid of the container's PID 1 (the `unshare` process's child)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.returncode is None:
            children = _children(self.process.pid)
            if children:
                self.pid1 = int(children[0])
                return self.pid1
            await asyncio.sleep(0.01)
        return None

    async def wait(self) -> int:
        """The container's exit code, as Kubernetes reports it (128+N when killed by signal N)."""
        code = await self.process.wait()
        for pump in self._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        return 128 - code if code < 0 else code

    async def stop(self, grace: float) -> None:
        """SIGTERM to PID 1, SIGKILL after `grace` seconds."""
        if self.process.returncode is not None:
            return
        target = self.pid1 or await self.find_pid1(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(target or self.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), grace)
        except TimeoutError:
            for pid in (target, self.process.pid):
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            await self.process.wait()


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


async def _pump(reader: asyncio.StreamReader, stream: str, log: Any) -> None:
    while True:
        line = await reader.readline()
        if not line:
            return
        text = line.rstrip(b"\n")
        log.write(f"{cri_timestamp()} {stream} F ".encode() + text + b"\n")
        log.flush()


async def start(spec: ContainerSpec, netns: str, log_path: Path) -> RunningContainer:
    """Start a container; it runs until its program exits or `stop` is called."""
    spec_path = spec.write()
    argv = [
        "nsenter",
        f"--net=/run/netns/{netns}",
        "--",
        "unshare",
        "--mount",
        "--uts",
        "--ipc",
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "--propagation",
        "private",
        "--",
        sys.executable,
        "-m",
        "isthmus.local.node.containerinit",
        str(spec_path),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=1 << 20,
    )
    assert process.stdout is not None and process.stderr is not None
    running = RunningContainer(process, log_path)
    running._pumps = [
        asyncio.create_task(_pump(process.stdout, "stdout", log)),
        asyncio.create_task(_pump(process.stderr, "stderr", log)),
    ]
    asyncio.get_running_loop().create_task(_close_when_done(running, log))
    await running.find_pid1()
    return running


async def _close_when_done(running: RunningContainer, log: Any) -> None:
    with contextlib.suppress(Exception):
        await running.process.wait()
        for pump in running._pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await pump
    log.close()


def exec_argv(
    pid1: int, uid: int, gid: int, groups: Sequence[int], capabilities: Sequence[str], command: Sequence[str]
) -> list[str]:
    """The argv that runs `command` inside a running container, as its user with its capabilities."""
    caps = ",".join(["-all", *(f"+{c.lower()}" for c in capabilities)])
    group_flag = f"--groups={','.join(str(g) for g in groups)}" if groups else "--clear-groups"
    return [
        "nsenter",
        "-t",
        str(pid1),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "-r",
        "-w",
        "--",
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        group_flag,
        f"--bounding-set={caps}",
        "--",
        *command,
    ]


def container_env(env: Mapping[str, str], uid: int) -> dict[str, str]:
    """The container's environment: PATH and HOME as a container runtime sets them, then the pod's."""
    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        home = "/"
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home}
    base.update(env)
    return base
