"""xDS resource names, as Istio names them (a proxy's config dump reads the same as Istio's).

- clusters `outbound|9080||reviews.default.svc.cluster.local`, `outbound|9080|v1|reviews...` (a subset),
  `inbound|9080|http|reviews.default.svc.cluster.local` (the port's name in the subset slot, as 1.4/1.5);
- listeners `virtualOutbound` (15001), `virtualInbound` (15006), `0.0.0.0_9080` (HTTP), `10.96.0.5_3306` (TCP);
- route configurations by port (`"9080"`); proxyless gRPC listeners and routes by `host:port`.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTBOUND, INBOUND = "outbound", "inbound"
VIRTUAL_OUTBOUND, VIRTUAL_INBOUND = "virtualOutbound", "virtualInbound"
PASSTHROUGH, BLACKHOLE, INBOUND_PASSTHROUGH = (
    "PassthroughCluster",
    "BlackHoleCluster",
    "InboundPassthroughClusterIpv4",
)
OUTBOUND_PORT, INBOUND_PORT = 15001, 15006
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"  # iptables lets this source through on lo (Istio's rule)
SDS_CLUSTER = "sds-grpc"  # the agent's SDS server, in the bootstrap
SECRET_CERTIFICATE, SECRET_ROOT = "default", "ROOTCA"  # the workload's key and chain; the trusted roots
MESH_ALPN = (
    "istio-peer-exchange",
    "istio",
)  # what a sidecar offers on mesh mTLS, so a peer tells it from app TLS
TLS_MODE_ISTIO = "istio"  # endpoint metadata: the endpoint has a sidecar (auto mTLS)


@dataclass(frozen=True, slots=True)
class ClusterName:
    direction: str
    port: int
    subset: str
    host: str

    def __str__(self) -> str:
        return f"{self.direction}|{self.port}|{self.subset}|{self.host}"


def outbound(port: int, host: str, subset: str = "") -> str:
    return f"{OUTBOUND}|{port}|{subset}|{host}"


def inbound(port: int, port_name: str, host: str) -> str:
    return f"{INBOUND}|{port}|{port_name}|{host}"


def parse_cluster(name: str) -> ClusterName | None:
    """`outbound|9080|v1|reviews...` -> its parts; None for other names."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in (OUTBOUND, INBOUND) or not parts[1].isdigit():
        return None
    return ClusterName(parts[0], int(parts[1]), parts[2], parts[3])


def host_of_cluster(name: str) -> str:
    """The service host a cluster name is about ("" for fixed clusters)."""
    _, _, host = name.rpartition("|")
    return host if "|" in name else ""


def listener(address: str, port: int) -> str:
    return f"{address}_{port}"


def sni(port: int, host: str, subset: str = "") -> str:
    """The SNI a sidecar sends on mesh mTLS to a service (Istio's `outbound_.PORT_.SUBSET_.HOST`)."""
    return f"outbound_.{port}_.{subset}_.{host}"


def route(port: int) -> str:
    return str(port)


def split_host_port(name: str) -> tuple[str, int] | None:
    """A proxyless gRPC client's `host:port` listener name."""
    host, _, port = name.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host, int(port)
