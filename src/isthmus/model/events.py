"""Change events: what changed, named precisely (which service, which cluster), never "everything".

Registries emit them; the push logic decides from them which proxies and which resources to rebuild.
Events are immutable values and compare equal when they name the same thing, so a queue can merge them.
"""

from __future__ import annotations

from dataclasses import dataclass

from isthmus.model.service import ClusterId


@dataclass(frozen=True, slots=True)
class ServiceChanged:
    """A service's definition (ports, VIP, existence) changed in one cluster."""

    hostname: str
    cluster: ClusterId


@dataclass(frozen=True, slots=True)
class EndpointsChanged:
    """A service's endpoints changed in one cluster."""

    hostname: str
    cluster: ClusterId


@dataclass(frozen=True, slots=True)
class WorkloadChanged:
    """A pod appeared, changed (labels, service account, IP, sidecar) or went away."""

    cluster: ClusterId
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class ClusterAdded:
    cluster: ClusterId


@dataclass(frozen=True, slots=True)
class ClusterRemoved:
    """A cluster left the mesh: all its services and endpoints are gone from the aggregate."""

    cluster: ClusterId


@dataclass(frozen=True, slots=True)
class ClusterStateChanged:
    """A cluster became synced, stale (unreachable, last-known state kept) or failed."""

    cluster: ClusterId
    state: str


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    """A configuration object (VirtualService, DestinationRule, ...) changed."""

    kind: str
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class MeshChanged:
    """The mesh configuration (ConfigMap `istio`, key `mesh`) changed."""


Event = (
    ServiceChanged
    | EndpointsChanged
    | WorkloadChanged
    | ClusterAdded
    | ClusterRemoved
    | ClusterStateChanged
    | ConfigChanged
    | MeshChanged
)
