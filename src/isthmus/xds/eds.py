"""EDS: the endpoints of each outbound cluster, from every cluster of the mesh, grouped by locality.

Endpoints that are not ready (or are terminating) are left out, as Istio 1.4/1.5 did: Envoy's panic mode would
otherwise send traffic to them. With locality failover in effect (a locality setting and outlier detection, as
in Istio) each locality gets a priority by how much of it matches the proxy's own (subzone, zone, region, the
failover region, the rest), so a proxy prefers its own zone -- its own cluster, with the local clusters'
defaults -- and moves to the next when those are ejected. With `distribute`, localities get its weights.

Assignments are cached by their inputs (cluster name, subset labels, the proxy's locality when it matters),
so proxies that see the same share one; a host's entries are dropped when its endpoints or service change.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from isthmus.config.networking import LocalityLbSetting
from isthmus.model import Endpoint, FrozenMap, Locality
from isthmus.xds import names
from isthmus.xds.resources import Resource, TypeUrl
from isthmus.xds.traffic import cluster_policy
from isthmus.xds.view import View

TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"


def _failover_priority(proxy: Locality, endpoint: Locality, setting: LocalityLbSetting) -> int:
    if endpoint.region == proxy.region:
        if endpoint.zone == proxy.zone:
            return 0 if endpoint.subzone == proxy.subzone else 1
        return 2
    if any(source == proxy.region and target == endpoint.region for source, target in setting.failover):
        return 3
    return 4


def _matches(pattern: str, locality: Locality) -> bool:
    label = locality.label
    return fnmatch.fnmatchcase(label, pattern) or fnmatch.fnmatchcase(label + "/", pattern.rstrip("*") + "*")


def _distribution(
    proxy: Locality, groups: list[Locality], setting: LocalityLbSetting
) -> dict[Locality, int] | None:
    rule = next((to for source, to in setting.distribute if _matches(source, proxy)), None)
    if rule is None:
        return None
    weights: dict[Locality, float] = defaultdict(float)
    for pattern, weight in rule.items():
        matching = [g for g in groups if _matches(pattern, g)]
        for group in matching:
            weights[group] += weight / len(matching)
    return {g: max(1, round(w)) for g, w in weights.items() if w > 0}


def _lb_endpoint(endpoint: Endpoint) -> endpoint_components_pb2.LbEndpoint:
    metadata = base_pb2.Metadata()
    metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].CopyFrom(
        struct_pb2.Struct(fields={"tlsMode": struct_pb2.Value(string_value=endpoint.tls_mode.value)})
    )
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=endpoint.address, port_value=endpoint.port)
            )
        ),
        health_status=health_check_pb2.HEALTHY,
        metadata=metadata,
        load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
    )


def assignment(
    name: str, endpoints: list[Endpoint], proxy: Locality | None, setting: LocalityLbSetting | None
) -> Resource:
    """The ClusterLoadAssignment of `endpoints`; `proxy` set: priorities (or weights) by locality."""
    groups: dict[Locality, list[Endpoint]] = defaultdict(list)
    for endpoint in endpoints:
        groups[endpoint.locality].append(endpoint)
    ordered = sorted(groups, key=lambda loc: (loc.region, loc.zone, loc.subzone))
    priorities: dict[Locality, int] = {}
    weights: dict[Locality, int] | None = None
    if proxy is not None and setting is not None:
        if setting.distribute:
            weights = _distribution(proxy, ordered, setting)
        else:
            raw = {loc: _failover_priority(proxy, loc, setting) for loc in ordered}
            compact = {p: i for i, p in enumerate(sorted(set(raw.values())))}
            priorities = {loc: compact[p] for loc, p in raw.items()}
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for locality in ordered:
        weight = len(groups[locality]) if weights is None else weights.get(locality, 0)
        if weight <= 0:
            continue
        cla.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(
                    region=locality.region, zone=locality.zone, sub_zone=locality.subzone
                ),
                lb_endpoints=[
                    _lb_endpoint(e) for e in sorted(groups[locality], key=lambda e: (e.address, e.port))
                ],
                load_balancing_weight=wrappers_pb2.UInt32Value(value=weight),
                priority=priorities.get(locality, 0),
            )
        )
    return Resource.of(TypeUrl.ENDPOINT, name, cla)


class EndpointCache:
    """Assignments by their inputs, per service host."""

    def __init__(self) -> None:
        self._by_host: dict[str, dict[object, Resource]] = {}

    def invalidate(self, host: str) -> None:
        self._by_host.pop(host, None)

    def clear(self) -> None:
        self._by_host.clear()

    def assignment(self, view: View, locality: Locality, name: str) -> Resource:
        """The assignment of cluster `name` for a proxy of `view` at `locality` (empty when the service or its
        port is gone: the proxy keeps the cluster until CDS removes it, with nothing to send to)."""
        parsed = names.parse_cluster(name)
        host = parsed.host if parsed is not None else ""
        service = view.sources.aggregate.service(host) if parsed is not None else None
        port = service.port(parsed.port) if service is not None and parsed is not None else None
        policy = (
            cluster_policy(view, host, service.namespace, port.port, parsed.subset)
            if service is not None and port is not None and parsed is not None
            else None
        )
        if service is None or port is None or policy is None or parsed is None:
            key: object = (name, None)
        else:
            by_locality = policy.locality is not None and (
                policy.failover or bool(policy.locality.distribute)
            )
            setting = policy.locality if by_locality else None
            key = (name, policy.subset_labels, locality if by_locality else None, setting)
        cache = self._by_host.setdefault(host, {})
        found = cache.get(key)
        if found is not None:
            return found
        if service is None or port is None or policy is None or parsed is None:
            built = assignment(name, [], None, None)
        else:
            labels: FrozenMap[str, str] | None = policy.subset_labels
            single = len(service.ports) == 1
            chosen = [
                e
                for e in view.sources.aggregate.endpoints_of(host)
                if e.healthy
                and (e.service_port_name == port.name or (single and not e.service_port_name))
                and (labels is None or all(e.labels.get(k) == v for k, v in labels.items()))
            ]
            built = assignment(name, chosen, locality if setting else None, setting)
        cache[key] = built
        return built
