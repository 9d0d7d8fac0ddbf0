"""Slim projections of the Kubernetes objects a registry reads, parsed from the raw JSON: only what service
discovery needs is kept (a pod is a few hundred bytes here, not a client model object of several kilobytes).
Each projection is immutable and compares by value, so an informer can drop updates that change nothing the
mesh uses (a pod's status heartbeat, a slice's resourceVersion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isthmus.model import FrozenMap, Locality, ServicePort, protocol_of

JsonObject = dict[str, Any]
EXPORT_TO = "networking.istio.io/exportTo"
SIDECAR_STATUS = "sidecar.istio.io/status"
LOCALITY_LABEL = "istio-locality"
NETWORK_LABEL = "topology.istio.io/network"


@dataclass(frozen=True, slots=True)
class KService:
    namespace: str
    name: str
    cluster_ip: str | None  # None: headless (or ExternalName)
    ports: tuple[ServicePort, ...]
    labels: FrozenMap[str, str]
    has_selector: bool
    external_name: str
    export_to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KSliceEndpoint:
    addresses: tuple[str, ...]
    ready: bool
    serving: bool
    terminating: bool
    node: str
    pod: str  # the targetRef's name when it is a Pod
    zone: str


@dataclass(frozen=True, slots=True)
class KSlice:
    namespace: str
    name: str
    service: str
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol)
    endpoints: tuple[KSliceEndpoint, ...]


@dataclass(frozen=True, slots=True)
class KPod:
    namespace: str
    name: str
    uid: str
    ip: str
    service_account: str
    labels: FrozenMap[str, str]
    node: str
    has_sidecar: bool
    ready: bool
    locality_label: str  # the pod's istio-locality label, which overrides its node's
    network: str


@dataclass(frozen=True, slots=True)
class KNode:
    name: str
    locality: Locality


def _labels(meta: JsonObject) -> FrozenMap[str, str]:
    return FrozenMap({str(k): str(v) for k, v in (meta.get("labels") or {}).items()})


def service(obj: JsonObject) -> KService | None:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ip = spec.get("clusterIP")
    ports = tuple(
        ServicePort(
            name=str(p.get("name") or ""),
            port=int(p["port"]),
            protocol=protocol_of(
                str(p.get("name") or ""), p.get("appProtocol"), str(p.get("protocol") or "TCP")
            ),
            target_port=p.get("targetPort"),
        )
        for p in spec.get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("port"), int)
    )
    export = str((meta.get("annotations") or {}).get(EXPORT_TO, "*"))
    return KService(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        cluster_ip=None if not ip or ip == "None" else str(ip),
        ports=ports,
        labels=_labels(meta),
        has_selector=bool(spec.get("selector")),
        external_name=str(spec.get("externalName") or "") if spec.get("type") == "ExternalName" else "",
        export_to=tuple(e.strip() for e in export.split(",") if e.strip()) or ("*",),
    )


def endpoint_slice(obj: JsonObject) -> KSlice | None:
    meta = obj.get("metadata") or {}
    if obj.get("addressType", "IPv4") != "IPv4":
        return None
    service_name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
    if not service_name:
        return None
    endpoints = []
    for e in obj.get("endpoints") or []:
        conditions = e.get("conditions") or {}
        ref = e.get("targetRef") or {}
        endpoints.append(
            KSliceEndpoint(
                addresses=tuple(str(a) for a in e.get("addresses") or []),
                ready=conditions.get("ready") is not False,
                serving=conditions.get("serving", conditions.get("ready")) is not False,
                terminating=bool(conditions.get("terminating")),
                node=str(e.get("nodeName") or ""),
                pod=str(ref.get("name") or "") if ref.get("kind") == "Pod" else "",
                zone=str(e.get("zone") or ""),
            )
        )
    return KSlice(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        service=str(service_name),
        ports=tuple(
            (str(p.get("name") or ""), int(p["port"]), str(p.get("protocol") or "TCP"))
            for p in obj.get("ports") or []
            if isinstance(p, dict) and isinstance(p.get("port"), int)
        ),
        endpoints=tuple(endpoints),
    )


def pod(obj: JsonObject) -> KPod | None:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ip = status.get("podIP") or ""
    if not ip or spec.get("hostNetwork"):
        return None  # no address of its own: never an endpoint, never a proxy the mesh must tell apart
    annotations = meta.get("annotations") or {}
    containers = [c.get("name") for c in spec.get("containers") or [] if isinstance(c, dict)]
    conditions = {
        c.get("type"): c.get("status") for c in status.get("conditions") or [] if isinstance(c, dict)
    }
    labels = _labels(meta)
    return KPod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        ip=str(ip),
        service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
        labels=labels,
        node=str(spec.get("nodeName") or ""),
        has_sidecar=SIDECAR_STATUS in annotations or "istio-proxy" in containers,
        ready=conditions.get("Ready") == "True",
        locality_label=labels.get(LOCALITY_LABEL, ""),
        network=labels.get(NETWORK_LABEL, ""),
    )


def node(obj: JsonObject) -> KNode | None:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    region = labels.get("topology.kubernetes.io/region") or labels.get(
        "failure-domain.beta.kubernetes.io/region"
    )
    zone = labels.get("topology.kubernetes.io/zone") or labels.get("failure-domain.beta.kubernetes.io/zone")
    subzone = labels.get("topology.istio.io/subzone", "")
    return KNode(str(meta.get("name", "")), Locality(str(region or ""), str(zone or ""), str(subzone)))
