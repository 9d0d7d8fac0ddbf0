"""The mesh's own data types and change events, independent of Kubernetes and of xDS.

Contract: every value here is immutable (frozen dataclasses, tuples, frozensets, `FrozenMap`), so registries
can hand them to generators and generators can share them between proxies without copying or locking. A value
is replaced, never changed; identity of the new value tells consumers that something changed.
"""

from isthmus.model.events import (
    ClusterAdded,
    ClusterRemoved,
    ClusterStateChanged,
    ConfigChanged,
    EndpointsChanged,
    Event,
    MeshChanged,
    ServiceChanged,
    WorkloadChanged,
)
from isthmus.model.service import (
    ClusterId,
    Endpoint,
    FrozenMap,
    Locality,
    Protocol,
    Service,
    ServicePort,
    TlsMode,
    Workload,
    protocol_of,
)

__all__ = [
    "ClusterAdded",
    "ClusterId",
    "ClusterRemoved",
    "ClusterStateChanged",
    "ConfigChanged",
    "Endpoint",
    "EndpointsChanged",
    "Event",
    "FrozenMap",
    "Locality",
    "MeshChanged",
    "Protocol",
    "Service",
    "ServiceChanged",
    "ServicePort",
    "TlsMode",
    "Workload",
    "WorkloadChanged",
    "protocol_of",
]
