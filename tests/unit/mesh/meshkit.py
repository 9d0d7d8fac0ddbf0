"""Helpers for the mesh's unit tests: the project's own Kubernetes API server run in-process on 127.0.0.1
(no root, no network namespaces, no child processes), clients to it, a TCP proxy that can cut a client off
from a server that keeps running, builders of the objects the registries read, and a way to wait for the
control plane to catch up.

The fixtures that start and clean up these servers live in conftest.py; this module holds what tests also
need by name (types and helpers)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import AsyncClient, codecs
from lightkube.core import resource as res
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod, ServiceAccount
from lightkube.types import PatchType

from isthmus.kube.client import from_kubeconfig_data
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.server import ApiServer
from isthmus.local.cluster import pki
from isthmus.model import ClusterId, Event
from isthmus.registry.aggregate import Aggregate
from isthmus.registry.cluster import ClusterRegistry

JsonObject = dict[str, Any]
StartServer = Callable[..., Awaitable["LocalApi"]]
MakeMesh = Callable[..., "Mesh"]
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]
HOST = "127.0.0.1"
_CATALOG: SchemaCatalog | None = None


def catalog() -> SchemaCatalog:
    """The schema catalog every in-process server of the run shares (loading it is the slow part of a start)."""
    global _CATALOG
    if _CATALOG is None:
        _CATALOG = SchemaCatalog.load()
    return _CATALOG


@dataclass(frozen=True)
class Pki:
    """One CA, one serving certificate for 127.0.0.1 and one service-account key, shared by every server."""

    ca_cert: Path
    cert: Path
    key: Path
    sa_key: Path

    @classmethod
    def create(cls, folder: Path) -> Pki:
        ca_cert, ca_key = pki.ensure_ca(folder, "isthmus-mesh-tests-ca")
        cert, key = pki.ensure_serving_cert(folder, ca_cert, ca_key, "kube-apiserver", ["localhost"], [HOST])
        return cls(ca_cert, cert, key, pki.ensure_service_account_key(folder))

    @property
    def ca_data(self) -> str:
        return base64.b64encode(self.ca_cert.read_bytes()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def kubeconfig(
    server: str, ca_data: str, token: str, *, name: str = "cluster", user: str = "admin"
) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


async def stop_quickly(server: ApiServer) -> None:
    """Stop a server without waiting a minute for watches that clients reopened while it stopped.

    `ApiServer.stop` ends the open watches before the HTTP runner stops, so a client that re-watches at once
    (as the mesh's informers do) starts a new watch on its kept-alive connection, and aiohttp then waits its
    default shutdown timeout (60 s, twice) for that handler. A short timeout cancels such handlers instead."""
    runner = server._runner
    if runner is not None:
        runner._shutdown_timeout = 0.1
    await server.stop()


class LocalApi:
    """One cluster's API server, in-process on 127.0.0.1, with its state in a folder: `stop` and `start` (or
    `restart`) keep the objects and start the watch history over, as a restarted kube-apiserver does."""

    def __init__(self, name: str, folder: Path, certs: Pki, index: int) -> None:
        self.name = name
        self.certs = certs
        self.token = secrets.token_hex(16)
        folder.mkdir(parents=True, exist_ok=True)
        token_file = folder / "admin.token"
        token_file.write_text(self.token + "\n")
        self.config = ApiServerConfig(
            cluster=name,
            state_dir=str(folder),
            listen_host=HOST,
            listen_port=free_port(),
            advertise_host=HOST,
            service_cidr=f"10.{96 + index}.0.0/24",
            pod_cidr=f"10.{244 + index}.0.0/20",
            admin_token_file=str(token_file),
            cert_file=str(certs.cert),
            key_file=str(certs.key),
            ca_file=str(certs.ca_cert),
            service_account_key_file=str(certs.sa_key),
            namespace_cleanup_delay=0.0,
        )
        self.server: ApiServer | None = None
        self._clients: list[AsyncClient] = []

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.config.listen_port}"

    @property
    def running(self) -> bool:
        return self.server is not None

    def kubeconfig(
        self, *, token: str | None = None, server: str | None = None, user: str = "admin"
    ) -> JsonObject:
        return kubeconfig(
            server or self.url,
            self.certs.ca_data,
            self.token if token is None else token,
            name=self.name,
            user=user,
        )

    def kubeconfig_yaml(
        self, *, token: str | None = None, server: str | None = None, user: str = "admin"
    ) -> str:
        return yaml.safe_dump(self.kubeconfig(token=token, server=server, user=user))

    def client(self, *, token: str | None = None, server: str | None = None) -> AsyncClient:
        """A client built the way the mesh builds them (`from_kubeconfig_data`); closed when the test ends."""
        client = from_kubeconfig_data(self.kubeconfig_yaml(token=token, server=server))
        self._clients.append(client)
        return client

    async def start(self) -> None:
        assert self.server is None, f"{self.name} is already running"
        server = ApiServer(self.config, catalog=catalog())
        await server.start()
        self.server = server

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await stop_quickly(server)

    async def restart(self, while_down: Callable[[Kube], Awaitable[None]] | None = None) -> None:
        """Stop and start again on the same port. `while_down` runs against the same state served on another
        port, so whatever it changes happens while clients of the real address cannot see it."""
        await self.stop()
        if while_down is not None:
            side = ApiServer(dataclasses.replace(self.config, listen_port=free_port()), catalog=catalog())
            await side.start()
            client = from_kubeconfig_data(
                yaml.safe_dump(
                    kubeconfig(f"https://{HOST}:{side.config.listen_port}", self.certs.ca_data, self.token)
                )
            )
            try:
                await while_down(Kube(client))
            finally:
                await client.close()
                await stop_quickly(side)
        await self.start()

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
        self._clients.clear()
        await self.stop()


class Kube:
    """Writes through the API, with the objects given as plain dicts."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        # lightkube's overloads do not take a resource class chosen at run time
        self._api: Any = client

    async def create(self, *objs: JsonObject) -> None:
        for obj in objs:
            await self._api.create(codecs.from_dict(obj))

    async def update(self, obj: JsonObject) -> None:
        """Merge `obj` (a whole object, or its metadata and the fields that change) into the stored object."""
        meta = obj["metadata"]
        await self.patch(type(codecs.from_dict(obj)), meta["name"], obj, meta.get("namespace"))

    async def patch(
        self, kind: type[res.Resource], name: str, patch: JsonObject, namespace: str | None = None
    ) -> None:
        await self._api.patch(kind, name, patch, namespace=namespace, patch_type=PatchType.MERGE)

    async def delete(self, kind: type[res.Resource], name: str, namespace: str | None = None) -> None:
        await self._api.delete(kind, name, namespace=namespace, grace_period=0)

    async def token(self, namespace: str, service_account: str) -> str:
        """A bound token of a ServiceAccount (TokenRequest), as a pod would get."""
        request = ServiceAccount.Token(
            metadata=ObjectMeta(name=service_account, namespace=namespace),
            spec=TokenRequestSpec(audiences=[]),
        )
        created = await self._api.create(request, service_account, namespace=namespace)
        token: str = created.status.token
        return token

    async def pod_status(self, namespace: str, name: str, ip: str, *, ready: bool = True) -> None:
        """Play the kubelet: the pod runs with this IP, Ready or not."""
        condition = "True" if ready else "False"
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": HOST,
            "conditions": [
                {"type": "Ready", "status": condition},
                {"type": "ContainersReady", "status": condition},
            ],
        }
        await self._api.patch(
            Pod.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
        )


# -- the objects ----------------------------------------------------------------------------------------------


def namespace(name: str) -> JsonObject:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service_account(ns: str, name: str) -> JsonObject:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": ns, "name": name}}


def node(name: str, region: str = "", zone: str = "", subzone: str = "") -> JsonObject:
    labels = {"kubernetes.io/hostname": name}
    if region:
        labels["topology.kubernetes.io/region"] = region
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    if subzone:
        labels["topology.istio.io/subzone"] = subzone
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def service(
    ns: str,
    name: str,
    ports: Iterable[tuple[str, int]] = (("http", 9080),),
    *,
    selector: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> JsonObject:
    spec: JsonObject = {
        "ports": [{"name": n, "port": p, "protocol": "TCP", "targetPort": p} for n, p in ports]
    }
    if selector:
        spec["selector"] = selector
    meta: JsonObject = {
        "namespace": ns,
        "name": name,
        "labels": labels or {},
        "annotations": annotations or {},
    }
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint(
    ip: str, *, pod: str = "", node: str = "", ready: bool = True, terminating: bool = False, zone: str = ""
) -> JsonObject:
    out: JsonObject = {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
    }
    if pod:
        out["targetRef"] = {"kind": "Pod", "name": pod}
    if node:
        out["nodeName"] = node
    if zone:
        out["zone"] = zone
    return out


def endpoint_slice(
    ns: str,
    name: str,
    service_name: str | None,
    endpoints: Iterable[JsonObject],
    ports: Iterable[tuple[str, int]] = (("http", 9080),),
) -> JsonObject:
    labels = {"endpointslice.kubernetes.io/managed-by": "isthmus-tests"}
    if service_name is not None:
        labels["kubernetes.io/service-name"] = service_name
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "addressType": "IPv4",
        "endpoints": list(endpoints),
        "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
    }


def pod(
    ns: str,
    name: str,
    *,
    node: str = "node-a",
    service_account: str = "default",
    labels: dict[str, str] | None = None,
    sidecar: bool = False,
    annotations: dict[str, str] | None = None,
) -> JsonObject:
    containers: list[JsonObject] = [{"name": "app", "image": "docker.io/istio/examples-helloworld-v1"}]
    if sidecar:
        containers.append({"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.4.0"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "containers": containers,
        },
    }


# -- waiting ------------------------------------------------------------------------------------------------


async def eventually(check: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Wait until `check()` is truthy (or stops raising AssertionError); fail with what was last seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
            if last:
                return
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or check}; last: {last!r}")
        await asyncio.sleep(0.01)


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Wait until the coroutine `check()` returns True."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def settle(seconds: float = 0.3) -> None:
    """Give informers time to deliver whatever is on its way (used before asserting that nothing happened)."""
    await asyncio.sleep(seconds)


class Events:
    """A listener that records the aggregate's events."""

    def __init__(self) -> None:
        self.seen: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.seen.append(event)

    def clear(self) -> None:
        self.seen.clear()

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]


# -- network misbehaviour -------------------------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to a server; `cut()` drops every connection and refuses new ones (the server
    keeps running with its watch history), `restore()` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.connections = 0  # accepted so far
        self.live = 0  # open now
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._handle, HOST, self.port, reuse_address=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        self.live += 1
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)
        self.live -= 1

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._tasks.clear()
        await asyncio.sleep(0)

    async def close(self) -> None:
        await self.cut()


class SilentListener:
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []
        self.accepted = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._hold, HOST, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._held.append(writer)  # never answered; closed by close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._held:
            writer.transport.abort()
        self._held.clear()


# -- the control plane's side -------------------------------------------------------------------------------


class Mesh:
    """An aggregate with its event recorder, and the cluster registries added to it (stopped by `close`)."""

    def __init__(self, primary: str = "primary") -> None:
        self.aggregate = Aggregate(ClusterId(primary))
        self.events = Events()
        self.aggregate.listeners.append(self.events)

    def add(self, cluster: str, client: AsyncClient) -> ClusterRegistry:
        registry = ClusterRegistry(
            ClusterId(cluster), client, self.aggregate, lambda: self.aggregate.trust_domain
        )
        self.aggregate.add_cluster(registry)
        return registry

    async def add_synced(self, cluster: str, client: AsyncClient, timeout: float = 5.0) -> ClusterRegistry:
        registry = self.add(cluster, client)
        await asyncio.wait_for(registry.synced.wait(), timeout)
        return registry

    async def close(self) -> None:
        for registry in list(self.aggregate.clusters.values()):
            await registry.stop()
