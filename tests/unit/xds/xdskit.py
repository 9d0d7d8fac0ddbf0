"""Helpers of the xDS unit tests: a mesh built through the aggregate's own sink methods (as the registries
feed it), an XdsServer on a loopback port, and ADS clients over real gRPC streams (state of the world and
delta) that send what Envoy sends."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from isthmus.agent.envoy import bundled_binary
from isthmus.config.mesh import MeshConfig
from isthmus.config.store import ConfigStore
from isthmus.model import ClusterId, Endpoint, FrozenMap, Locality, Protocol, ServicePort, TlsMode
from isthmus.registry.aggregate import Aggregate
from isthmus.registry.projections import KPod, KService
from isthmus.xds.resources import TypeUrl
from isthmus.xds.server import ADS_SERVICE, XdsServer
from isthmus.xds.view import MeshSources

C1, C2 = ClusterId("cluster1"), ClusterId("cluster2")
ZONES = {C1: Locality("region1", "zone1"), C2: Locality("region1", "zone2")}
NS = "sample"


def assert_envoy_accepts(config: dict[str, Any], folder: Path) -> None:
    """Envoy itself (`--mode validate`) accepts this bootstrap."""
    path = folder / "bootstrap.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [bundled_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(port: int = 5000, name: str = "http") -> ServicePort:
    return ServicePort(name, port, Protocol.HTTP, port)


def tcp(port: int, name: str = "tcp") -> ServicePort:
    return ServicePort(name, port, Protocol.TCP, port)


@dataclass
class MeshBuilder:
    """A mesh of two clusters, written through the aggregate's sink methods."""

    aggregate: Aggregate = field(default_factory=lambda: Aggregate(C1))
    config: ConfigStore = field(default_factory=lambda: ConfigStore(None, lambda: "istio-system"))
    mesh_config: MeshConfig = field(default_factory=MeshConfig)

    @property
    def sources(self) -> MeshSources:
        return MeshSources(self.aggregate, self.config, lambda: self.mesh_config)

    def service(
        self,
        name: str,
        ports: Iterable[ServicePort] = (),
        *,
        namespace: str = NS,
        vips: dict[ClusterId, str | None] | None = None,
        export_to: tuple[str, ...] = ("*",),
    ) -> None:
        for cluster, vip in (vips or {C1: f"10.96.0.{len(self.aggregate.services) + 10}"}).items():
            self.aggregate.service_changed(
                cluster,
                (namespace, name),
                KService(namespace, name, vip, tuple(ports) or (http(),), FrozenMap(), True, "", export_to),
            )

    def endpoints(
        self,
        cluster: ClusterId,
        name: str,
        addresses: Iterable[str],
        *,
        port: int = 5000,
        port_name: str = "http",
        namespace: str = NS,
        labels: dict[str, str] | None = None,
        ready: bool = True,
        sidecar: bool = False,
        service_account: str = "",
    ) -> None:
        self.aggregate.endpoints_changed(
            cluster,
            (namespace, name),
            tuple(
                Endpoint(
                    address,
                    port,
                    port_name,
                    cluster,
                    locality=ZONES[cluster],
                    labels=FrozenMap({**(labels or {}), "topology.istio.io/cluster": cluster}),
                    ready=ready,
                    tls_mode=TlsMode.ISTIO if sidecar else TlsMode.DISABLED,
                    namespace=namespace,
                    identity=f"spiffe://cluster.local/ns/{namespace}/sa/{service_account}"
                    if service_account
                    else "",
                )
                for address in addresses
            ),
        )

    def pod(
        self,
        cluster: ClusterId,
        name: str,
        ip: str,
        labels: dict[str, str] | None = None,
        namespace: str = NS,
        service_account: str = "default",
    ) -> None:
        self.aggregate.workload_changed(
            cluster,
            None,
            KPod(
                namespace,
                name,
                f"uid-{name}",
                ip,
                service_account,
                FrozenMap(labels or {}),
                "",
                True,
                True,
                "",
                "",
            ),
        )

    def apply(
        self, kind: str, name: str, spec: dict[str, Any], namespace: str = NS, created: str = ""
    ) -> None:
        group = (
            "security.istio.io/v1beta1" if kind == "PeerAuthentication" else "networking.istio.io/v1alpha3"
        )
        meta = {"namespace": namespace, "name": name, "creationTimestamp": created or "2026-11-27T00:00:00Z"}
        self.config.apply({"apiVersion": group, "kind": kind, "metadata": meta, "spec": spec})


def node(
    ip: str = "10.44.0.5",
    pod: str = "client-1",
    namespace: str = NS,
    *,
    cluster_id: str = "",
    grpc_client: bool = False,
    sds: bool = False,
) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update(
        {
            "NAMESPACE": namespace,
            "ISTIO_VERSION": "test",
            **({"CLUSTER_ID": cluster_id} if cluster_id else {}),
        }
    )
    if grpc_client:
        metadata.update({"GENERATOR": "grpc"})
    if sds:
        metadata.update({"SDS": "true"})
    return base_pb2.Node(
        id=f"sidecar~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local", metadata=metadata
    )


class Stream:
    """One ADS stream, as a proxy opens it."""

    def __init__(self, channel: grpc.aio.Channel, delta: bool) -> None:
        self.delta = delta
        method = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        request_type: Any = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
        response_type: Any = (
            discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        )
        self.call = channel.stream_stream(
            f"/{ADS_SERVICE}/{method}",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )()
        self.sent_node = False
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        """Responses into a queue (cancelling a pending read would cancel the whole call)."""
        try:
            while True:
                response = await self.call.read()
                await self.responses.put(response)
                if response is grpc.aio.EOF:
                    return
        except grpc.aio.AioRpcError as exc:
            await self.responses.put(exc)

    async def send(self, request: Any, the_node: base_pb2.Node | None = None) -> None:
        if not self.sent_node and the_node is not None:
            request.node.CopyFrom(the_node)
            self.sent_node = True
        await self.call.write(request)

    async def recv(self, timeout: float = 5.0) -> Any:
        response = await asyncio.wait_for(self.responses.get(), timeout)
        if isinstance(response, grpc.aio.AioRpcError):
            raise response
        assert response is not grpc.aio.EOF, "the server ended the stream"
        return response

    async def nothing(self, wait: float = 0.3) -> None:
        """Assert that no response arrives for `wait` seconds."""
        try:
            response = await asyncio.wait_for(self.responses.get(), wait)
        except TimeoutError:
            return
        raise AssertionError(f"an unexpected response: {response}")

    # -- state of the world

    async def sotw(
        self,
        type_url: TypeUrl,
        names: Iterable[str] = (),
        *,
        nonce: str = "",
        version: str = "",
        error: str = "",
        the_node: base_pb2.Node | None = None,
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), response_nonce=nonce, version_info=version
        )
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.send(request, the_node)

    # -- delta

    async def subscribe(
        self,
        type_url: TypeUrl,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        nonce: str = "",
        error: str = "",
        initial: dict[str, str] | None = None,
        the_node: base_pb2.Node | None = None,
    ) -> None:
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=initial or {},
        )
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.send(request, the_node)

    async def ack(self, response: Any) -> None:
        if self.delta:
            await self.subscribe(TypeUrl(response.type_url), nonce=response.nonce)
        else:
            await self.sotw(TypeUrl(response.type_url), nonce=response.nonce, version=response.version_info)

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()


def names_in(response: Any) -> list[str]:
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return sorted(r.name for r in response.resources)
    out = []
    for packed in response.resources:
        message = _decode(response.type_url, packed.value)
        out.append(message.name if hasattr(message, "name") and message.name else message.cluster_name)
    return sorted(out)


def decoded(response: Any) -> dict[str, Any]:
    """The resources of a response by name, decoded."""
    out: dict[str, Any] = {}
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        for resource in response.resources:
            out[resource.name] = _decode(response.type_url, resource.resource.value)
        return out
    for packed in response.resources:
        message = _decode(response.type_url, packed.value)
        out[getattr(message, "name", "") or message.cluster_name] = message
    return out


def _decode(type_url: str, body: bytes) -> Any:
    from isthmus.xds.server import MESSAGES

    return MESSAGES[TypeUrl(type_url)].FromString(body)


class XdsHarness:
    def __init__(self, mesh: MeshBuilder) -> None:
        self.mesh = mesh
        self.server = XdsServer(mesh.sources)
        mesh.aggregate.listeners.append(self.server.on_event)
        mesh.config.listeners.append(self.server.on_event)
        self.address = f"127.0.0.1:{free_port()}"
        self.channels: list[grpc.aio.Channel] = []

    async def start(self) -> None:
        await self.server.start(self.address)

    def stream(self, delta: bool = True) -> Stream:
        channel = grpc.aio.insecure_channel(self.address)
        self.channels.append(channel)
        return Stream(channel, delta)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.server.stop(0)
