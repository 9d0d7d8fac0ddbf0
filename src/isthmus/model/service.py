"""Services, their ports and endpoints, and workloads: what the mesh knows of each cluster, merged.

- `Service` is one hostname (`name.namespace.svc.cluster.local`) across every cluster that defines it. Each
  cluster keeps its own VIP (`vips`): a client's proxy uses its own cluster's, and a cluster without the
  Service object has none there (its clients still get the service's clusters and endpoints).
- `Endpoint` is one address of a service port in one cluster, with what load balancing and security need:
  the cluster, network, locality, SPIFFE identity, labels (incl. `topology.istio.io/cluster`), health and
  whether the workload runs a sidecar (TLS mode).
- `Workload` is a pod as the mesh sees it: for finding which proxy is which, and what identity it has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType, TypeVar

ClusterId = NewType("ClusterId", str)

K = TypeVar("K")
V = TypeVar("V")

CLUSTER_LABEL = "topology.istio.io/cluster"


class FrozenMap(Mapping[K, V]):
    """An immutable, hashable mapping."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[K, V] | None = None) -> None:
        self._data: dict[K, V] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == dict(other)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def updated(self, changes: Mapping[K, V]) -> FrozenMap[K, V]:
        return FrozenMap({**self._data, **changes})

    def without(self, key: K) -> FrozenMap[K, V]:
        return FrozenMap({k: v for k, v in self._data.items() if k != key})


EMPTY: FrozenMap[Any, Any] = FrozenMap()


class Protocol(StrEnum):
    """A port's application protocol, as Istio selects it (port name prefix or appProtocol)."""

    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTPS = "HTTPS"
    TLS = "TLS"
    TCP = "TCP"
    UDP = "UDP"
    MONGO = "Mongo"
    REDIS = "Redis"
    MYSQL = "MySQL"
    UNSUPPORTED = "UnsupportedProtocol"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)


_TOKENS = {
    "http": Protocol.HTTP,
    "http2": Protocol.HTTP2,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC_WEB,
    "https": Protocol.HTTPS,
    "tls": Protocol.TLS,
    "tcp": Protocol.TCP,
    "udp": Protocol.UDP,
    "mongo": Protocol.MONGO,
    "redis": Protocol.REDIS,
    "mysql": Protocol.MYSQL,
    "h2c": Protocol.HTTP2,
    "ws": Protocol.HTTP,
    "wss": Protocol.HTTPS,
}


def protocol_of(name: str, app_protocol: str | None, transport: str = "TCP") -> Protocol:
    """Istio's protocol selection: `appProtocol` first, else the port name's prefix (`http`, `http-web`,
    `grpc-x`); a UDP port is UDP; anything else is plain TCP."""
    if transport.upper() == "UDP":
        return Protocol.UDP
    if app_protocol:  # when set it decides, even when Istio does not know it (then: plain TCP)
        return _TOKENS.get(app_protocol.lower().removeprefix("kubernetes.io/"), Protocol.TCP)
    lowered = name.lower()
    if lowered.startswith("grpc-web"):
        return Protocol.GRPC_WEB
    return _TOKENS.get(lowered.split("-", 1)[0], Protocol.TCP)


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    protocol: Protocol
    target_port: int | str | None = None


@dataclass(frozen=True, slots=True)
class Locality:
    """Region, zone and subzone; `label` is Istio's `region/zone/subzone` form."""

    region: str = ""
    zone: str = ""
    subzone: str = ""

    @property
    def label(self) -> str:
        """`region/zone/subzone`, stopping at the first missing part (as Istio's LocalityToString)."""
        parts = []
        for part in (self.region, self.zone, self.subzone):
            if not part:
                break
            parts.append(part)
        return "/".join(parts)

    @classmethod
    def parse(cls, label: str) -> Locality:
        """From Istio's `istio-locality` label: `/`-separated, or `.`-separated when it has no `/` at all."""
        separator = "/" if "/" in label else "."
        parts = [*label.split(separator, 2), "", "", ""][:3] if label else ["", "", ""]
        return cls(parts[0], parts[1], parts[2])


class TlsMode(StrEnum):
    """Whether an endpoint's workload terminates Istio mTLS (has a sidecar): Istio's `tlsMode` label."""

    ISTIO = "istio"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One address serving one port of a service, in one cluster."""

    address: str
    port: int
    service_port_name: str
    cluster: ClusterId
    network: str = ""
    locality: Locality = field(default_factory=Locality)
    identity: str = ""  # spiffe://<trust domain>/ns/<ns>/sa/<service account>, empty when unknown
    labels: FrozenMap[str, str] = field(default_factory=FrozenMap)
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    tls_mode: TlsMode = TlsMode.DISABLED
    workload: str = ""  # the pod's name when the endpoint is a pod
    namespace: str = ""
    node: str = ""

    @property
    def healthy(self) -> bool:
        return self.ready and not self.terminating


@dataclass(frozen=True, slots=True)
class Service:
    """One service hostname, merged across the clusters that define it."""

    hostname: str
    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    vips: FrozenMap[ClusterId, str] = field(default_factory=FrozenMap)  # cluster -> ClusterIP
    clusters: frozenset[ClusterId] = frozenset()  # clusters whose API defines the Service
    headless: bool = False
    external_name: str = ""
    labels: FrozenMap[str, str] = field(default_factory=FrozenMap)
    export_to: tuple[str, ...] = ("*",)  # networking.istio.io/exportTo: "*", "." or namespaces

    def vip_for(self, cluster: ClusterId) -> str | None:
        """The VIP a client in `cluster` uses; None where that cluster has no Service object (or it is headless)."""
        return self.vips.get(cluster)

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    def port_named(self, name: str) -> ServicePort | None:
        return next((p for p in self.ports if p.name == name), None)

    def visible_from(self, namespace: str) -> bool:
        return any(
            e == "*" or e == namespace or (e == "." and namespace == self.namespace) for e in self.export_to
        )


@dataclass(frozen=True, slots=True)
class Workload:
    """A pod as the mesh sees it."""

    cluster: ClusterId
    namespace: str
    name: str
    ip: str
    service_account: str
    labels: FrozenMap[str, str]
    node: str = ""
    locality: Locality = field(default_factory=Locality)
    has_sidecar: bool = False
    uid: str = ""
    ready: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


__all__ = ["CLUSTER_LABEL", "EMPTY"]
