"""The traffic policy in effect for one cluster as one view sees it: the DestinationRule Istio would pick, its
subset, port-level settings and the mesh-wide locality load balancing setting, merged."""

from __future__ import annotations

from dataclasses import dataclass

from isthmus.config.networking import (
    ConfigError,
    DestinationRule,
    LocalityLbSetting,
    TrafficPolicy,
    locality_lb_setting,
)
from isthmus.model import FrozenMap
from isthmus.xds.view import View


@dataclass(frozen=True, slots=True)
class ClusterPolicy:
    rule: DestinationRule | None
    policy: TrafficPolicy
    subset_labels: FrozenMap[str, str] | None  # None: the whole service
    locality: LocalityLbSetting | None  # in effect only with outlier detection (Istio's rule)

    @property
    def failover(self) -> bool:
        """Whether endpoints get priorities by locality (prefer the proxy's own, fail over to the next)."""
        return (
            self.locality is not None
            and self.locality.enabled
            and not self.locality.distribute
            and self.policy.outlier is not None
        )


def _mesh_locality(view: View) -> LocalityLbSetting | None:
    raw = view.mesh.locality_lb
    if not raw:
        return LocalityLbSetting()  # Istio's default: enabled
    try:
        return locality_lb_setting(dict(raw), "localityLbSetting")
    except ConfigError:
        return LocalityLbSetting()


def cluster_policy(
    view: View, host: str, service_namespace: str, port: int, subset: str
) -> ClusterPolicy | None:
    """None when the subset is not defined (the cluster does not exist)."""
    config = view.sources.config
    rule = config.destination_rule(host, view.key.namespace, service_namespace) if config else None
    policy = rule.policy if rule and rule.policy else TrafficPolicy()
    labels: FrozenMap[str, str] | None = None
    if subset:
        found = rule.subset(subset) if rule else None
        if found is None:
            return None
        labels = found.labels
        if found.policy is not None:
            policy = _overlay(policy, found.policy)
    policy = policy.for_port(port)
    locality = policy.locality or _mesh_locality(view)
    return ClusterPolicy(rule, policy, labels, locality)


def _overlay(base: TrafficPolicy, top: TrafficPolicy) -> TrafficPolicy:
    return TrafficPolicy(
        lb_simple=top.lb_simple or base.lb_simple,
        consistent_hash_header=top.consistent_hash_header or base.consistent_hash_header,
        locality=top.locality or base.locality,
        outlier=top.outlier or base.outlier,
        pool=top.pool or base.pool,
        port_level=top.port_level or base.port_level,
    )
