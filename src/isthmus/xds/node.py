"""Who is asking: the Envoy `Node` a proxy sends, parsed into what the generators need.

Node ids have Istio's form `TYPE~IP~POD.NAMESPACE~DOMAIN` (`sidecar~10.44.1.5~reviews-v1-abc.default~default.
svc.cluster.local`); metadata carries `CLUSTER_ID`, `NAMESPACE`, `LABELS`, `INTERCEPTION_MODE`,
`ISTIO_VERSION`, ... as Istio's agent fills them from `ISTIO_META_*` variables. Proxyless gRPC clients say so
with metadata `GENERATOR: grpc` (or by being gRPC, in the user agent).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from isthmus.model import FrozenMap, Locality

NODE_TYPES = ("sidecar", "router")
EXAMPLE = "sidecar~10.0.0.1~app-1.default~default.svc.cluster.local"


class NodeError(ValueError):
    """A node the server cannot serve; the message says what is wrong and what is expected."""


@dataclass(frozen=True, slots=True)
class ProxyNode:
    id: str
    type: str
    ip: str
    pod_name: str
    namespace: str
    domain: str
    cluster_id: str = ""  # what the proxy claims (CLUSTER_ID); the registry's answer comes first
    labels: FrozenMap[str, str] = field(default_factory=FrozenMap)
    interception_mode: str = "REDIRECT"
    istio_version: str = ""
    service_cluster: str = ""
    locality: Locality = field(default_factory=Locality)
    proxyless: bool = False
    sds: bool = False  # its agent serves certificates over SDS (metadata SDS "true"): it can do mesh mTLS
    metadata: FrozenMap[str, Any] = field(default_factory=FrozenMap)

    @property
    def pod(self) -> str:
        return f"{self.pod_name}.{self.namespace}" if self.pod_name else ""


def _labels(value: Any) -> FrozenMap[str, str]:
    if isinstance(value, dict):
        return FrozenMap({str(k): str(v) for k, v in value.items()})
    return FrozenMap()


def parse(node: base_pb2.Node) -> ProxyNode:
    """Parse a node; NodeError says what is wrong."""
    if not node.id:
        raise NodeError(f"the node has no id: expected TYPE~IP~POD.NAMESPACE~DOMAIN, e.g. {EXAMPLE}")
    parts = node.id.split("~")
    if len(parts) != 4:
        raise NodeError(f"node id {node.id!r} is not TYPE~IP~POD.NAMESPACE~DOMAIN (e.g. {EXAMPLE})")
    kind, ip, pod_id, domain = parts
    if kind not in NODE_TYPES:
        raise NodeError(f"node id {node.id!r}: type {kind!r} is not one of {', '.join(NODE_TYPES)}")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise NodeError(f"node id {node.id!r}: {ip!r} is not an IP address") from None
    metadata: dict[str, Any] = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
    pod_name, _, namespace = pod_id.partition(".")
    namespace = str(metadata.get("NAMESPACE") or namespace or domain.split(".", 1)[0])
    if not namespace:
        raise NodeError(f"node id {node.id!r}: no namespace (POD.NAMESPACE, or metadata NAMESPACE)")
    generator = str(metadata.get("GENERATOR", ""))
    proxyless = generator == "grpc" or node.user_agent_name.lower().startswith("grpc")
    locality = Locality(node.locality.region, node.locality.zone, node.locality.sub_zone)
    return ProxyNode(
        id=node.id,
        type=kind,
        ip=ip,
        pod_name=pod_name,
        namespace=namespace,
        domain=domain,
        cluster_id=str(metadata.get("CLUSTER_ID", "")),
        labels=_labels(metadata.get("LABELS")),
        interception_mode=str(metadata.get("INTERCEPTION_MODE", "REDIRECT")),
        istio_version=str(metadata.get("ISTIO_VERSION", "")),
        service_cluster=node.cluster,
        locality=locality,
        proxyless=proxyless,
        sds=str(metadata.get("SDS", "")).lower() == "true" and not proxyless,
        metadata=FrozenMap(metadata),
    )
