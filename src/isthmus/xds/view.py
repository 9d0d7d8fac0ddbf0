"""What a proxy sees of the mesh, and which proxies see the same.

- `MeshSources`: the state the generators read (the aggregate, the traffic config, the mesh config).
- `Proxy`: one connected proxy: its node, the cluster it belongs to (the one whose registry knows its pod IP;
  its CLUSTER_ID only as a fallback), its pod, locality and the Sidecar resource that applies to it.
- `View`: everything outbound that proxies with the same `ViewKey` receive alike: the services visible to
  them, the VirtualService per host, and the outbound resources the generators built for them. Proxies share
  a view (and the resources in it); what is private to a proxy (its inbound side) is built per proxy.

Contract: all on the control plane's event loop. A view's caches are cleared by `invalidate` when the mesh
changes; readers get immutable values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from isthmus.config.mesh import MeshConfig
from isthmus.config.networking import Sidecar, VirtualService, host_matches
from isthmus.config.store import ConfigStore
from isthmus.model import ClusterId, FrozenMap, Locality, Protocol, Service, ServicePort, Workload
from isthmus.registry.aggregate import Aggregate
from isthmus.xds.node import ProxyNode
from isthmus.xds.resources import Resource, TypeUrl


@dataclass
class MeshSources:
    aggregate: Aggregate
    config: ConfigStore | None
    mesh: Callable[[], MeshConfig]
    # host -> the identities its mTLS clusters were last built with (a change rebuilds them)
    identities_used: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def identities(self, hostname: str) -> tuple[str, ...]:
        """The SPIFFE ids of a service's endpoints in every cluster: who may answer for it."""
        found = {
            e.identity
            for endpoints in self.aggregate.endpoints.get(hostname, {}).values()
            for e in endpoints
            if e.identity
        }
        return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class ViewKey:
    cluster: ClusterId
    namespace: str
    sidecar: tuple[str, str] | None  # the Sidecar resource (namespace, name) that scopes it
    proxyless: bool
    source_matches: frozenset[tuple[str, str, int]] = frozenset()  # VirtualService matches by source labels
    mtls: bool = False  # the proxies have certificates (SDS): mesh mTLS in their config


@dataclass
class Proxy:
    node: ProxyNode
    cluster: ClusterId
    workload: Workload | None
    locality: Locality
    sidecar: Sidecar | None = None
    labels: FrozenMap[str, str] = field(default_factory=FrozenMap)

    @property
    def namespace(self) -> str:
        return self.node.namespace

    @property
    def ip(self) -> str:
        return self.node.ip

    @property
    def proxyless(self) -> bool:
        return self.node.proxyless


def resolve(node: ProxyNode, sources: MeshSources) -> Proxy:
    """Who the proxy is: the cluster whose registry knows its IP, else the CLUSTER_ID it claims, else the
    primary's."""
    aggregate = sources.aggregate
    workload = aggregate.workload(node.ip)
    if workload is not None and workload.namespace != node.namespace:
        workload = None  # an IP reused by another namespace's pod: do not take its identity
    cluster = workload.cluster if workload else ClusterId(node.cluster_id or aggregate.primary)
    labels = workload.labels if workload and workload.labels else node.labels
    locality = workload.locality if workload and workload.locality.region else node.locality
    sidecar = sources.config.sidecar_for(node.namespace, labels) if sources.config else None
    return Proxy(node, cluster, workload, locality, sidecar, labels)


def view_key(proxy: Proxy, sources: MeshSources) -> ViewKey:
    matches: set[tuple[str, str, int]] = set()
    if sources.config is not None:
        for vs in sources.config.virtual_services_for(proxy.namespace):
            for i, route in enumerate(vs.http):
                for match in route.matches:
                    if match.source_labels and all(
                        proxy.labels.get(k) == v for k, v in match.source_labels.items()
                    ):
                        matches.add((vs.namespace, vs.name, i))
    sidecar = (proxy.sidecar.namespace, proxy.sidecar.name) if proxy.sidecar else None
    return ViewKey(
        proxy.cluster, proxy.namespace, sidecar, proxy.proxyless, frozenset(matches), mtls=proxy.node.sds
    )


class View:
    def __init__(self, key: ViewKey, sources: MeshSources, sidecar: Sidecar | None) -> None:
        self.key = key
        self.sources = sources
        self.sidecar = sidecar
        self._services: list[Service] | None = None
        self._visible: set[str] = set()
        self._virtual_services: dict[str, VirtualService | None] | None = None
        self.outputs: dict[TypeUrl, Mapping[str, Resource]] = {}
        self.memo: dict[
            TypeUrl, dict[object, Resource]
        ] = {}  # resources by their inputs, from the last build
        self.proxies = 0

    def invalidate(self, types: set[TypeUrl] | None = None) -> None:
        """Forget what was built for these types (None: everything, the visible services too)."""
        if types is None:
            self._services = None
            self._virtual_services = None
            self.outputs.clear()
            return
        for type_url in types:
            self.outputs.pop(type_url, None)

    @property
    def mesh(self) -> MeshConfig:
        return self.sources.mesh()

    def services(self) -> list[Service]:
        """The services proxies of this view may call, by hostname."""
        if self._services is None:
            namespace = self.key.namespace
            self._services = [
                s
                for _, s in sorted(self.sources.aggregate.services.items())
                if s.visible_from(namespace)
                and (self.sidecar is None or self.sidecar.admits(s.namespace, s.hostname))
            ]
            self._visible = {s.hostname for s in self._services}
        return self._services

    def sees(self, hostname: str) -> bool:
        self.services()
        return hostname in self._visible

    def virtual_service(self, host: str) -> VirtualService | None:
        """The VirtualService for a host (the oldest one that names it; an exact host before a wildcard)."""
        if self._virtual_services is None:
            self._virtual_services = {}
        if host not in self._virtual_services:
            found: VirtualService | None = None
            config = self.sources.config
            if config is not None:
                candidates = config.virtual_services_for(self.key.namespace)
                found = next((vs for vs in candidates if host in vs.hosts), None) or next(
                    (vs for vs in candidates if any(host_matches(h, host) for h in vs.hosts)), None
                )
            self._virtual_services[host] = found
        return self._virtual_services[host]

    def outbound_policy(self) -> str:
        if self.sidecar is not None and self.sidecar.outbound_traffic_policy:
            return self.sidecar.outbound_traffic_policy
        return self.mesh.outbound_traffic_policy


@dataclass(frozen=True, slots=True)
class InboundPort:
    """One port this proxy's pod serves for a service: `target` is the container port."""

    service: Service
    port: ServicePort
    target: int


def inbound_ports(proxy: Proxy, sources: MeshSources) -> list[InboundPort]:
    """The ports of services that have this proxy's pod as an endpoint, one per container port (the first
    service by hostname names it, as Istio)."""
    aggregate = sources.aggregate
    found: dict[int, InboundPort] = {}
    for host in sorted(aggregate.hosts_at(proxy.ip)):
        service = aggregate.service(host)
        if service is None:
            continue
        for endpoint in aggregate.endpoints.get(host, {}).get(proxy.cluster, ()):
            if endpoint.address != proxy.ip or endpoint.port in found:
                continue
            port = service.port_named(endpoint.service_port_name) or (
                service.ports[0] if len(service.ports) == 1 else None
            )
            if port is not None and port.protocol is not Protocol.UDP:
                found[endpoint.port] = InboundPort(service, port, endpoint.port)
    return [found[p] for p in sorted(found)]
