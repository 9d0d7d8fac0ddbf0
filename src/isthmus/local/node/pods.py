"""The pods of this node, as kubelet runs them: sandbox (network namespace, /etc/hosts, resolv.conf), volumes,
init containers in order, then the containers with restarts and backoff, probes, status reported to the API
server, and graceful termination followed by the final deletion.

Contract: one `PodWorker` task per pod uid owns everything of that pod; the `PodManager` only routes watch
events to workers. Workers run on the node's event loop; they read the pod they were last given and never
mutate it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightkube import ApiError
from lightkube.resources.core_v1 import Pod

from isthmus.local.node import containers, images
from isthmus.local.node.api import NodeApi
from isthmus.local.node.config import NodeConfig
from isthmus.local.node.containerinit import CAPABILITIES, DEFAULT_CAPABILITIES
from isthmus.local.node.containers import ContainerSpec, RunningContainer
from isthmus.local.node.podnet import AddressBook, PodNetwork
from isthmus.local.node.probes import ProbeState, run_probe
from isthmus.local.node.volumes import PodVolumes, VolumeError, field_value

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET = 600.0  # a container that ran this long restarts without backoff
DRAIN_MAX = 10.0  # seconds a deleted pod waits at most for its Services to stop sending it connections
DRAIN_SETTLE = 1.0  # then, for a pod that was in a Service, seconds for requests in flight to finish
MIN_GRACE_AFTER_HOOKS = 2.0  # kubelet's minimum grace left for SIGTERM after preStop hooks


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command, args and env values (`$$` escapes, unknown stays)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(replace, value)


@dataclass
class ContainerState:
    """What kubelet knows of one container of a pod."""

    spec: JsonObject
    init: bool = False
    restart_count: int = 0
    running: RunningContainer | None = None
    phase: str = "waiting"  # waiting, running, terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    last_terminated: JsonObject | None = None
    ready: bool = False
    started: bool = False
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    container_id: str = ""
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    probes: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> JsonObject:
        state: JsonObject
        if self.phase == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.phase == "terminated":
            state = {
                "terminated": {
                    "exitCode": self.exit_code,
                    "reason": self.reason,
                    "startedAt": self.started_at,
                    "finishedAt": self.finished_at,
                    "containerID": self.container_id,
                }
            }
            if self.message:
                state["terminated"]["message"] = self.message
        else:
            state = {"waiting": {"reason": self.reason}}
            if self.message:
                state["waiting"]["message"] = self.message
        status: JsonObject = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if not self.init:
            status["started"] = self.started
        if self.container_id:
            status["containerID"] = self.container_id
            status["imageID"] = f"isthmus://{self.spec.get('image', '')}"
        return status


class Node:
    """What every pod worker of this node shares."""

    def __init__(
        self,
        config: NodeConfig,
        api: NodeApi,
        services: Callable[[str], list[JsonObject]],
        drained: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.config = config
        self.api = api
        self.services_in = services
        self.drained = drained  # waits until no Service sends new connections to a pod IP (the proxy's)
        config.node_dir.mkdir(parents=True, exist_ok=True)
        self.network = PodNetwork(config.run_id, config.cluster_index, config.fabric_namespace)
        self.addresses = AddressBook(config.node_dir / "addresses.json", config.pod_cidr)
        self.traverse = traversal_dirs()
        self.program_mounts = program_mounts()

    def pod_dir(self, uid: str) -> Path:
        return self.config.node_dir / "pods" / uid

    def log_path(self, uid: str, container: str, restart: int) -> Path:
        return self.pod_dir(uid) / "logs" / container / f"{restart}.log"


def _program_paths() -> list[str]:
    return [
        sys.prefix,
        sys.base_prefix,
        str(Path(sys.executable).resolve().parent),
        str(Path(__file__).resolve().parents[3]),
    ]


def program_mounts() -> list[str]:
    """Where the installed programs live, when that is not on the root filesystem (a venv in a /tmp that is
    its own tmpfs...): containers see the root filesystem only, so these are mounted in, read-only."""
    root = Path("/").stat().st_dev
    found: set[str] = set()
    for path in _program_paths():
        current = Path(path)
        with contextlib.suppress(OSError):
            if current.stat().st_dev != root:
                # mount the top of that filesystem's part of the path (the mount point under which it lies)
                top = current
                while top.parent != top and top.parent.stat().st_dev == current.stat().st_dev:
                    top = top.parent
                found.add(str(top))
    return sorted(found)


def traversal_dirs() -> list[str]:
    """Directories on the way to the installed programs that others may not enter (a mode-0700 home): inside
    containers they are opened, so programs run as any uid (the sidecar's 1337)."""
    wanted: set[str] = set()
    paths = [
        sys.executable,
        str(Path(sys.executable).resolve()),
        sys.prefix,
        sys.base_prefix,
        str(Path(__file__).resolve().parents[2]),
        containers.TINI,
    ]
    for path in paths:
        current = Path(path)
        for parent in [current, *current.parents]:
            with contextlib.suppress(OSError):
                if parent.is_dir() and parent.stat().st_mode & 0o001 == 0:
                    wanted.add(str(parent))
    return sorted(wanted)


class PodWorker:
    """Runs one pod until it is deleted or leaves this node."""

    def __init__(self, node: Node, pod: JsonObject) -> None:
        self.node = node
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        self.wakeup = asyncio.Event()
        self.gone = False  # the pod left the API (deleted elsewhere) or this node
        self.shutting_down = False  # the node stops: stop the pod but keep its address for the next start
        self.ip = ""
        self.netns = ""
        self.started_at = ""
        spec = pod.get("spec", {})
        self.init_containers = [ContainerState(c, init=True) for c in spec.get("initContainers") or []]
        self.containers = [ContainerState(c) for c in spec.get("containers") or []]
        self.initialized = not self.init_containers
        self.volumes: PodVolumes | None = None
        self.published: JsonObject | None = None
        self.sandbox_message = ""
        self.task: asyncio.Task[None] | None = None

    # -- inputs -------------------------------------------------------------------------------------------

    def update(self, pod: JsonObject) -> None:
        self.pod = pod
        self.wakeup.set()

    def forget(self) -> None:
        self.gone = True
        self.wakeup.set()

    @property
    def deleting(self) -> bool:
        return self.gone or self.shutting_down or bool(self.pod["metadata"].get("deletionTimestamp"))

    def all_containers(self) -> list[ContainerState]:
        return [*self.init_containers, *self.containers]

    def find(self, name: str) -> ContainerState | None:
        return next((c for c in self.all_containers() if c.name == name), None)

    # -- main loop ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._main()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s failed", self.name)
        finally:
            await self._terminate()

    async def _main(self) -> None:
        self.started_at = now_rfc3339()
        while not self.deleting:
            try:
                await self._setup_sandbox()
                break
            except (VolumeError, OSError, ApiError) as exc:
                message = str(exc.status.message if isinstance(exc, ApiError) else exc)
                if message != self.sandbox_message:
                    self.sandbox_message = message
                    await self.node.api.event(
                        self.pod,
                        "Pod",
                        "FailedMount",
                        f"MountVolume.SetUp failed: {message}",
                        "Warning",
                        "kubelet",
                    )
                await self._publish()
                await self._sleep(2.0)
        self.sandbox_message = ""
        while not self.deleting:
            if not self.initialized:
                await self._run_init_step()
            else:
                for container in self.containers:
                    await self._maybe_start(container)
            await self._refresh_volumes()
            await self._publish()
            if self._pod_done():
                await self._sleep(3600)
            else:
                await self._sleep(self._next_timer())

    def _pod_done(self) -> bool:
        policy = self.pod.get("spec", {}).get("restartPolicy", "Always")
        if policy == "Always" or not self.initialized:
            return False
        return all(c.phase == "terminated" and not self._will_restart(c) for c in self.containers)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wakeup.wait(), max(0.05, seconds))
        self.wakeup.clear()

    def _next_timer(self) -> float:
        waits = [
            c.next_start - time.monotonic()
            for c in self.all_containers()
            if c.phase != "running" and c.next_start
        ]
        return min([1.0, *[w for w in waits if w > 0]])

    # -- sandbox ------------------------------------------------------------------------------------------

    async def _setup_sandbox(self) -> None:
        node = self.node
        pod_dir = node.pod_dir(self.uid)
        (pod_dir / "etc").mkdir(parents=True, exist_ok=True)
        self.ip = node.addresses.address(self.uid)
        self.netns = await asyncio.to_thread(node.network.create, self.uid, self.ip)
        meta, spec = self.pod["metadata"], self.pod.get("spec", {})
        hostname = spec.get("hostname") or meta["name"]
        fqdn = ""
        if spec.get("subdomain"):
            fqdn = f"{hostname}.{spec['subdomain']}.{meta['namespace']}.svc.{node.config.cluster_domain}"
        hosts = [
            "# Kubernetes-managed hosts file.",
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost",
            f"{self.ip}\t{fqdn + chr(9) if fqdn else ''}{hostname}",
        ]
        for alias in spec.get("hostAliases") or []:
            hosts.append(f"{alias.get('ip')}\t{' '.join(alias.get('hostnames') or [])}")
        (pod_dir / "etc" / "hosts").write_text("\n".join(hosts) + "\n")
        domain = node.config.cluster_domain
        search = f"{meta['namespace']}.svc.{domain} svc.{domain} {domain}"
        dns = spec.get("dnsConfig") or {}
        resolv = [f"search {search}", f"nameserver {node.config.dns_service_ip}", "options ndots:5"]
        if spec.get("dnsPolicy") == "None":
            resolv = [f"nameserver {n}" for n in dns.get("nameservers") or []]
            if dns.get("searches"):
                resolv.insert(0, "search " + " ".join(dns["searches"]))
        (pod_dir / "etc" / "resolv.conf").write_text("\n".join(resolv) + "\n")
        (pod_dir / "etc" / "hostname").write_text(hostname + "\n")
        self.volumes = PodVolumes(pod_dir / "volumes", self.pod, node.api.get, node.api.request_token)
        await self.volumes.sync()

    async def _refresh_volumes(self) -> None:
        if self.volumes is not None and self.volumes.token_refresh_due():
            with contextlib.suppress(VolumeError, ApiError, OSError):
                await self.volumes.sync()

    async def refresh_sources(self, kind: str, name: str) -> None:
        """A Secret or ConfigMap this pod mounts changed: rewrite the volumes (programs see it atomically)."""
        if self.volumes is not None and (kind, name) in self.volumes.references:
            with contextlib.suppress(VolumeError, ApiError, OSError):
                self.volumes.pod = self.pod
                await self.volumes.sync()

    # -- containers ---------------------------------------------------------------------------------------

    async def _run_init_step(self) -> None:
        for container in self.init_containers:
            if container.phase == "terminated" and container.exit_code == 0:
                continue
            if container.phase != "running":
                await self._maybe_start(container)
            return
        self.initialized = True

    def _will_restart(self, container: ContainerState) -> bool:
        policy = self.pod.get("spec", {}).get("restartPolicy", "Always")
        if container.init:
            return policy != "Never" and container.exit_code != 0
        return policy == "Always" or (policy == "OnFailure" and container.exit_code != 0)

    async def _maybe_start(self, container: ContainerState) -> None:
        if container.phase == "running" or self.deleting:
            return
        if container.phase == "terminated" and not self._will_restart(container):
            return
        if container.next_start and time.monotonic() < container.next_start:
            if container.phase == "terminated" or container.reason in ("ErrImagePull", "ImagePullBackOff"):
                if container.reason == "ErrImagePull":
                    container.reason = "ImagePullBackOff"
                elif container.phase == "terminated":
                    self._to_waiting(
                        container,
                        "CrashLoopBackOff",
                        f"back-off {container.backoff:.0f}s restarting failed container="
                        f"{container.name} pod={self.pod['metadata']['name']}_"
                        f"{self.pod['metadata']['namespace']}({self.uid})",
                    )
            return
        try:
            await self._start(container)
        except images.ImageNotFoundError as exc:
            first = container.reason not in ("ErrImagePull", "ImagePullBackOff")
            container.phase, container.reason, container.message = "waiting", "ErrImagePull", str(exc)
            container.next_start = time.monotonic() + container.backoff
            container.backoff = min(container.backoff * 2, BACKOFF_MAX)
            if first:
                await self.node.api.event(self.pod, "Pod", "Failed", str(exc), "Warning", "kubelet")
        except (OSError, ValueError, ApiError) as exc:
            container.phase, container.reason = "waiting", "CreateContainerError"
            container.message = str(exc.status.message if isinstance(exc, ApiError) else exc)
            container.next_start = time.monotonic() + container.backoff
            container.backoff = min(container.backoff * 2, BACKOFF_MAX)
            await self.node.api.event(
                self.pod, "Pod", "Failed", f"Error: {container.message}", "Warning", "kubelet"
            )

    def _to_waiting(self, container: ContainerState, reason: str, message: str) -> None:
        if container.phase == "terminated":
            container.last_terminated = {
                "exitCode": container.exit_code,
                "reason": container.reason,
                "startedAt": container.started_at,
                "finishedAt": container.finished_at,
                "containerID": container.container_id,
            }
        container.phase, container.reason, container.message = "waiting", reason, message

    async def _start(self, container: ContainerState) -> None:
        spec = container.spec
        env = await self._environment(spec)
        command = [expand(str(a), env) for a in spec.get("command") or []]
        args = [expand(str(a), env) for a in spec.get("args") or []]
        program = images.resolve(str(spec.get("image", "")), command, args, env)
        env = {**program.env, **env}
        pod_security = self.pod.get("spec", {}).get("securityContext") or {}
        security = spec.get("securityContext") or {}
        uid = int(security.get("runAsUser", pod_security.get("runAsUser", 0)))
        gid = int(security.get("runAsGroup", pod_security.get("runAsGroup", 0 if uid == 0 else uid)))
        groups = [int(g) for g in pod_security.get("supplementalGroups") or []]
        if pod_security.get("fsGroup") is not None:
            groups.append(int(pod_security["fsGroup"]))
        if security.get("privileged"):
            capabilities = set(CAPABILITIES)
        else:
            caps = security.get("capabilities") or {}
            added = {str(c).upper().removeprefix("CAP_") for c in caps.get("add") or []}
            dropped = {str(c).upper().removeprefix("CAP_") for c in caps.get("drop") or []}
            capabilities = (set() if "ALL" in dropped else set(DEFAULT_CAPABILITIES) - dropped) | added
        mounts = [{"source": path, "target": path, "readonly": True} for path in self.node.program_mounts]
        pod_dir = self.node.pod_dir(self.uid)
        volumes = {v["name"]: v for v in self.pod.get("spec", {}).get("volumes") or []}
        for mount in spec.get("volumeMounts") or []:
            volume = volumes.get(mount.get("name", ""))
            if volume is None or self.volumes is None:
                raise ValueError(f'volumeMount "{mount.get("name")}" names no volume of the pod')
            host = self.volumes.host_path(volume)
            source = Path(host) if host else self.volumes.path(volume["name"])
            if mount.get("subPath"):
                source = source / str(mount["subPath"])
                if not host:
                    source.mkdir(parents=True, exist_ok=True) if not source.exists() else None
            mounts.append(
                {"source": str(source), "target": mount["mountPath"], "readonly": bool(mount.get("readOnly"))}
            )
        for name in ("hosts", "resolv.conf", "hostname"):
            mounts.append(
                {"source": str(pod_dir / "etc" / name), "target": f"/etc/{name}", "readonly": False}
            )
        container.restart_count += 0 if container.phase == "waiting" and not container.container_id else 1
        run = container.restart_count
        container_id = f"isthmus://{self.uid[:8]}-{container.name}-{run}"
        run_dir = pod_dir / "containers" / container.name
        shutil.rmtree(run_dir, ignore_errors=True)
        hostname = (self.pod.get("spec", {}).get("hostname") or self.pod["metadata"]["name"])[:63]
        container_spec = ContainerSpec(
            name=container.name,
            hostname=hostname,
            argv=program.argv,
            env=containers.container_env(env, uid),
            workdir=str(spec.get("workingDir") or "/"),
            uid=uid,
            gid=gid,
            groups=groups,
            capabilities=sorted(capabilities),
            no_new_privs=security.get("allowPrivilegeEscalation") is False,
            read_only_root=bool(security.get("readOnlyRootFilesystem")),
            mounts=mounts,
            hide=list(self.node.config.hidden_paths),
            traverse=self.node.traverse,
            run_dir=run_dir,
        )
        running = await containers.start(
            container_spec, self.netns, self.node.log_path(self.uid, container.name, run)
        )
        if container.phase == "terminated":
            self._to_waiting(container, "", "")
        container.running = running
        container.phase, container.reason, container.message = "running", "", ""
        container.started_at = now_rfc3339()
        container.container_id = container_id
        container.uid, container.gid, container.groups = uid, gid, groups
        container.capabilities, container.env = sorted(capabilities), containers.container_env(env, uid)
        container.ready = False
        container.started = "startupProbe" not in spec
        asyncio.get_running_loop().create_task(self._watch_exit(container, running))
        self._start_probes(container)
        await self.node.api.event(
            self.pod, "Pod", "Started", f"Started container {container.name}", "Normal", "kubelet"
        )

    async def _watch_exit(self, container: ContainerState, running: RunningContainer) -> None:
        code = await running.wait()
        if container.running is not running:
            return
        for task in container.probes:
            task.cancel()
        container.probes = []
        container.running = None
        container.phase, container.exit_code = "terminated", code
        container.reason = "Completed" if code == 0 else "Error"
        container.finished_at = now_rfc3339()
        container.ready = False
        ran = running.started_at
        if time.time() - ran > BACKOFF_RESET:
            container.backoff = BACKOFF_START
        if self._will_restart(container) and not self.deleting:
            # The first restart is immediate, later ones back off 10 s, 20 s, ... up to 5 minutes.
            delay = container.backoff if container.restart_count else 0.0
            container.next_start = time.monotonic() + delay
            if container.restart_count:
                container.backoff = min(container.backoff * 2, BACKOFF_MAX)
        self.wakeup.set()

    async def _environment(self, spec: JsonObject) -> dict[str, str]:
        env: dict[str, str] = {
            "HOSTNAME": (self.pod.get("spec", {}).get("hostname") or self.pod["metadata"]["name"])[:63]
        }
        namespace = self.pod["metadata"]["namespace"]
        if self.pod.get("spec", {}).get("enableServiceLinks", True):
            env.update(service_link_env(self.node.services_in(namespace)))
        env.update(
            service_link_env(
                [s for s in self.node.services_in("default") if s["metadata"]["name"] == "kubernetes"]
            )
        )
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(key)
                if ref is None:
                    continue
                obj = await self.node.api.get(kind, namespace, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        continue
                    raise ValueError(f'{kind.lower()} "{ref.get("name")}" not found')
                for k, v in _object_data(obj, kind).items():
                    env[prefix + k] = v
        for item in spec.get("env") or []:
            name = item["name"]
            if "value" in item:
                env[name] = expand(str(item.get("value") or ""), env)
                continue
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                pod = dict(self.pod)
                pod["status"] = {
                    **(pod.get("status") or {}),
                    "podIP": self.ip,
                    "podIPs": [{"ip": self.ip}],
                    "hostIP": self.node.config.host_address,
                    "hostIPs": [{"ip": self.node.config.host_address}],
                }
                env[name] = field_value(pod, source["fieldRef"].get("fieldPath", ""))
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
                ref = source["secretKeyRef" if kind == "Secret" else "configMapKeyRef"]
                obj = await self.node.api.get(kind, namespace, ref.get("name", ""))
                data = _object_data(obj, kind) if obj else None
                if data is None or ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    what = f'{kind.lower()} "{ref.get("name")}"'
                    raise ValueError(
                        f"{what} not found"
                        if data is None
                        else f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name')}"
                    )
                env[name] = data[ref["key"]]
            elif "resourceFieldRef" in source:
                env[name] = "0"
        return env

    # -- probes -------------------------------------------------------------------------------------------

    def _start_probes(self, container: ContainerState) -> None:
        if container.init:
            return
        loop = asyncio.get_running_loop()
        spec = container.spec
        if "readinessProbe" not in spec:
            container.ready = container.started  # ready once started (at once without a startup probe)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in spec:
                container.probes.append(loop.create_task(self._probe_loop(container, kind, spec[kind])))

    async def exec_in(
        self, container: ContainerState, command: Sequence[str], timeout: float
    ) -> tuple[int, bytes]:
        running = container.running
        if running is None or running.pid1 is None:
            return 126, b"container is not running"
        argv = containers.exec_argv(
            running.pid1, container.uid, container.gid, container.groups, container.capabilities, command
        )
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=container.env,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return 124, b"timed out"
        return process.returncode or 0, output

    async def _probe_loop(self, container: ContainerState, kind: str, probe: JsonObject) -> None:
        state = ProbeState(probe)
        await asyncio.sleep(float(probe.get("initialDelaySeconds") or 0))
        period = float(probe.get("periodSeconds") or 10)
        while container.running is not None:
            if kind != "startupProbe" and not container.started:
                await asyncio.sleep(0.2)
                continue
            ok, why = await run_probe(
                probe, self.ip, container.spec, lambda argv, timeout: self.exec_in(container, argv, timeout)
            )
            changed = state.record(ok, why)
            if kind == "startupProbe":
                if state.result:
                    container.started = True
                    if "readinessProbe" not in container.spec:
                        container.ready = True
                    self.wakeup.set()
                    return
                if state.result is False:
                    await self._kill_for_probe(container, kind, state)
                    return
            elif kind == "readinessProbe":
                if changed or (state.result is not None and container.ready != state.result):
                    container.ready = bool(state.result)
                    self.wakeup.set()
                    if state.result is False:
                        await self.node.api.event(
                            self.pod,
                            "Pod",
                            "Unhealthy",
                            f"Readiness probe failed: {state.last_error}",
                            "Warning",
                            "kubelet",
                        )
            elif state.result is False:
                await self._kill_for_probe(container, kind, state)
                return
            await asyncio.sleep(period)

    async def _kill_for_probe(self, container: ContainerState, kind: str, state: ProbeState) -> None:
        label = "Liveness" if kind == "livenessProbe" else "Startup"
        await self.node.api.event(
            self.pod, "Pod", "Unhealthy", f"{label} probe failed: {state.last_error}", "Warning", "kubelet"
        )
        await self.node.api.event(
            self.pod,
            "Pod",
            "Killing",
            f"Container {container.name} failed {label.lower()} probe, will be restarted",
            "Normal",
            "kubelet",
        )
        running = container.running
        if running is not None:
            await running.stop(float(self.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)))

    # -- status -------------------------------------------------------------------------------------------

    def status(self) -> JsonObject:
        previous = {c.get("type"): c for c in (self.pod.get("status") or {}).get("conditions") or []}

        def condition(kind: str, ok: bool, reason: str = "") -> JsonObject:
            value = "True" if ok else "False"
            before = previous.get(kind)
            since = (
                before.get("lastTransitionTime")
                if before and before.get("status") == value
                else now_rfc3339()
            )
            out: JsonObject = {
                "type": kind,
                "status": value,
                "lastProbeTime": None,
                "lastTransitionTime": since,
            }
            if reason:
                out["reason"] = reason
            return out

        ready_all = bool(self.containers) and all(c.ready for c in self.containers)
        not_ready = [c.name for c in self.containers if not c.ready]
        phase = self._phase()
        conditions = [
            condition("PodReadyToStartContainers", bool(self.netns)),
            condition(
                "Initialized", self.initialized, "" if self.initialized else "ContainersNotInitialized"
            ),
            condition(
                "Ready",
                ready_all and phase == "Running",
                ""
                if ready_all
                else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"),
            ),
            condition(
                "ContainersReady",
                ready_all,
                ""
                if ready_all
                else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"),
            ),
            condition("PodScheduled", True),
        ]
        for c in conditions:
            if (
                c["type"] in ("Ready", "ContainersReady")
                and c["status"] == "False"
                and not_ready
                and c.get("reason") == "ContainersNotReady"
            ):
                c["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
        status: JsonObject = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.node.config.host_address,
            "hostIPs": [{"ip": self.node.config.host_address}],
            "startTime": self.started_at,
            "containerStatuses": [c.status() for c in self.containers],
            "qosClass": (self.pod.get("status") or {}).get("qosClass", "BestEffort"),
        }
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.init_containers:
            status["initContainerStatuses"] = [c.status() for c in self.init_containers]
        if self.sandbox_message:
            for c in status["containerStatuses"]:
                c["state"] = {"waiting": {"reason": "ContainerCreating"}}
        return status

    def _phase(self) -> str:
        if not self.initialized:
            failed = any(
                c.phase == "terminated" and c.exit_code != 0 and not self._will_restart(c)
                for c in self.init_containers
            )
            return "Failed" if failed else "Pending"
        if any(c.phase == "running" for c in self.containers):
            return "Running"
        if all(c.phase == "terminated" for c in self.containers) and self.containers:
            if any(self._will_restart(c) for c in self.containers):
                return "Running"
            return "Succeeded" if all(c.exit_code == 0 for c in self.containers) else "Failed"
        if any(c.restart_count for c in self.containers):
            return "Running"
        return "Pending"

    async def _publish(self) -> None:
        status = self.status()
        if status == self.published or self.gone:
            return
        meta = self.pod["metadata"]
        try:
            await self.node.api.patch_pod_status(meta["namespace"], meta["name"], status)
            self.published = status
        except ApiError as exc:
            if exc.status.code == 404:
                self.forget()
        except Exception as exc:  # the API server may be away: try again on the next turn
            log.debug("pod %s: status not written: %s", self.name, exc)

    # -- termination --------------------------------------------------------------------------------------

    async def _terminate(self) -> None:
        grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        running = [c for c in self.all_containers() if c.running is not None]
        if running and not self.gone:
            for c in running:
                await self.node.api.event(
                    self.pod, "Pod", "Killing", f"Stopping container {c.name}", "Normal", "kubelet"
                )
        for c in self.all_containers():
            for task in c.probes:
                task.cancel()
        if (
            running
            and self.pod["metadata"].get("deletionTimestamp")
            and not self.gone
            and not self.shutting_down
        ):
            grace = await self._before_stop(running, float(grace))
        await asyncio.gather(
            *(c.running.stop(float(grace)) for c in running if c.running is not None), return_exceptions=True
        )
        await asyncio.to_thread(self.node.network.delete, self.uid)
        deleted = (
            bool(self.pod["metadata"].get("deletionTimestamp")) or self.gone
        ) and not self.shutting_down
        if self.volumes is not None and deleted:
            self.volumes.remove()
        if deleted:
            self.node.addresses.release(self.uid)
            shutil.rmtree(self.node.pod_dir(self.uid), ignore_errors=True)
        if self.pod["metadata"].get("deletionTimestamp") and not self.gone and not self.shutting_down:
            meta = self.pod["metadata"]
            with contextlib.suppress(Exception):
                await self.node.api.delete_pod(meta["namespace"], meta["name"], self.uid)

    async def _before_stop(self, running: list[ContainerState], grace: float) -> float:
        """What happens between a pod's deletion and SIGTERM, within its grace period: the preStop hooks run
        while the pod leaves its Services' rules (and requests in flight get a moment to finish), so no new
        connection reaches a stopping container. Returns the grace left for SIGTERM."""
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def drain() -> None:
            if self.node.drained is None or not self.ip:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_MAX):
                    if await self.node.drained(self.ip):
                        await asyncio.sleep(DRAIN_SETTLE)

        hooks = [c for c in running if (c.spec.get("lifecycle") or {}).get("preStop")]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(drain(), *(self._pre_stop(c) for c in hooks))
        left = grace - (loop.time() - started)
        return max(left, MIN_GRACE_AFTER_HOOKS) if hooks else max(left, 0.0)

    async def _pre_stop(self, container: ContainerState) -> None:
        """A container's preStop hook: exec, httpGet or sleep, as kubelet runs it."""
        hook = (container.spec.get("lifecycle") or {}).get("preStop") or {}
        failure = ""
        if "sleep" in hook:
            await asyncio.sleep(float((hook["sleep"] or {}).get("seconds") or 0))
        elif "exec" in hook:
            code, output = await self.exec_in(container, (hook["exec"] or {}).get("command") or [], 3600.0)
            if code != 0:
                failure = (
                    f"command {(hook['exec'] or {}).get('command')} exited with {code}: "
                    + output.decode(errors="replace").strip()[:200]
                )
        elif "httpGet" in hook:
            ok, why = await run_probe(
                {"httpGet": hook["httpGet"], "timeoutSeconds": 3600},
                self.ip,
                container.spec,
                lambda argv, timeout: self.exec_in(container, argv, timeout),
            )
            failure = "" if ok else why
        if failure:
            await self.node.api.event(
                self.pod,
                "Pod",
                "FailedPreStopHook",
                f"PreStopHook failed: {failure}",
                "Warning",
                "kubelet",
            )


def _object_data(obj: JsonObject, kind: str) -> dict[str, str]:
    if kind == "Secret":
        return {
            k: base64.b64decode(v or "").decode(errors="replace") for k, v in (obj.get("data") or {}).items()
        }
    return {k: str(v) for k, v in (obj.get("data") or {}).items()}


def service_link_env(services: list[JsonObject]) -> dict[str, str]:
    """Docker-link-style variables for Services (`FOO_SERVICE_HOST`, `FOO_PORT_80_TCP`, ...), as kubelet sets."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec", {})
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        ports = spec.get("ports") or []
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        first = ports[0]
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            base = f"{prefix}_PORT_{port['port']}_{protocol}"
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
            env[base] = f"{protocol.lower()}://{ip}:{port['port']}"
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = ip
    return env


class PodManager:
    """Routes the watch of this node's pods to one worker per pod uid."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.workers: dict[str, PodWorker] = {}
        self.synced = asyncio.Event()

    async def run(self) -> None:
        listed: set[str] = set()
        async for kind, pod in self.node.api.watch(Pod, fields={"spec.nodeName": self.node.config.node_name}):
            if kind == "SYNC":
                for uid in set(self.workers) - listed:
                    self.workers[uid].forget()
                listed = set()
                if not self.synced.is_set():
                    await asyncio.to_thread(self._clean_leftovers)
                    self.synced.set()
                continue
            uid = pod["metadata"]["uid"]
            if kind == "LISTED":
                listed.add(uid)
            if kind == "DELETED":
                worker = self.workers.get(uid)
                if worker is not None:
                    worker.pod = pod
                    worker.forget()
                continue
            worker = self.workers.get(uid)
            if worker is None:
                if pod["metadata"].get("deletionTimestamp") and not (pod.get("status") or {}).get("podIP"):
                    # never ran here: nothing to stop, just let the API forget it
                    meta = pod["metadata"]
                    with contextlib.suppress(Exception):
                        await self.node.api.delete_pod(meta["namespace"], meta["name"], uid)
                    continue
                worker = self.workers[uid] = PodWorker(self.node, pod)
                worker.task = asyncio.get_running_loop().create_task(
                    self._run(worker), name=f"pod {worker.name}"
                )
            else:
                worker.update(pod)

    async def _run(self, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            self.workers.pop(worker.uid, None)

    def _clean_leftovers(self) -> None:
        """Pod namespaces of pods this node no longer runs (a crash, a killed `local up`)."""
        keep = {self.node.network.namespace_of(uid) for uid in self.workers}
        for ns in self.node.network.leftovers():
            if ns not in keep:
                self.node.network.delete_namespace(ns)

    def worker(self, namespace: str, name: str) -> PodWorker | None:
        for worker in self.workers.values():
            meta = worker.pod["metadata"]
            if meta["namespace"] == namespace and meta["name"] == name:
                return worker
        return None

    def netns_of(self, namespace: str, name: str, uid: str) -> str:
        """The path of the pod's network namespace, "" unless it runs here with its sandbox set up."""
        worker = self.workers.get(uid)
        if worker is None or worker.deleting or not worker.netns:
            return ""
        meta = worker.pod["metadata"]
        return f"/run/netns/{worker.netns}" if (meta["namespace"], meta["name"]) == (namespace, name) else ""

    async def source_changed(self, kind: str, namespace: str, name: str) -> None:
        for worker in list(self.workers.values()):
            if worker.pod["metadata"]["namespace"] == namespace:
                await worker.refresh_sources(kind, name)

    async def stop(self) -> None:
        """Stop every pod (node shutdown): containers get their grace period, namespaces are removed."""
        workers = list(self.workers.values())
        for worker in workers:
            worker.shutting_down = True
            worker.wakeup.set()
        await asyncio.gather(*(w.task for w in workers if w.task is not None), return_exceptions=True)
