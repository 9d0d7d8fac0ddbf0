"""The aggregate of every cluster's registry: services merged by hostname across clusters (each cluster's VIP
kept), endpoints sharded by cluster, and which cluster owns a pod IP.

Contract: runs on the control plane's event loop; readers may hold the values they get (they are immutable).
Every change is announced to the listeners as one event naming the service or workload and the cluster, after
the aggregate's own state is updated, so a listener reading the aggregate sees the change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from isthmus.kube.informer import Key
from isthmus.model import (
    ClusterAdded,
    ClusterId,
    ClusterRemoved,
    ClusterStateChanged,
    Endpoint,
    EndpointsChanged,
    Event,
    FrozenMap,
    Locality,
    Service,
    ServiceChanged,
    ServicePort,
    Workload,
    WorkloadChanged,
)
from isthmus.registry.cluster import ClusterRegistry
from isthmus.registry.projections import KPod, KService

log = logging.getLogger(__name__)

DOMAIN = "cluster.local"


def hostname(namespace: str, name: str) -> str:
    return f"{name}.{namespace}.svc.{DOMAIN}"


class Aggregate:
    """Everything the mesh knows of all clusters. `primary` is the control plane's own cluster (listed first
    when services merge: its definition of a port wins, as in Istio)."""

    def __init__(self, primary: ClusterId) -> None:
        self.primary = primary
        self.clusters: dict[ClusterId, ClusterRegistry] = {}
        self._defined: dict[str, dict[ClusterId, KService]] = {}  # hostname -> cluster -> its Service object
        self.services: dict[str, Service] = {}
        self.endpoints: dict[str, dict[ClusterId, tuple[Endpoint, ...]]] = {}
        self.workloads_by_ip: dict[str, Workload] = {}
        self.hosts_by_ip: dict[str, set[str]] = {}  # endpoint address -> the services it serves
        self.listeners: list[Callable[[Event], None]] = []
        self.trust_domain = "cluster.local"

    # -- reading ------------------------------------------------------------------------------------------

    def service(self, host: str) -> Service | None:
        return self.services.get(host)

    def endpoints_of(self, host: str) -> list[Endpoint]:
        """Every cluster's endpoints of a service (primary first, then by cluster id)."""
        shards = self.endpoints.get(host, {})
        return [e for cluster in self._ordered(shards) for e in shards[cluster]]

    def cluster_of_ip(self, ip: str) -> ClusterId | None:
        """The cluster whose registry knows a pod with this IP (pod CIDRs are unique on a single network)."""
        workload = self.workloads_by_ip.get(ip)
        return workload.cluster if workload else None

    def workload(self, ip: str) -> Workload | None:
        return self.workloads_by_ip.get(ip)

    def _ordered(self, clusters: Iterable[ClusterId]) -> list[ClusterId]:
        return sorted(clusters, key=lambda c: (c != self.primary, c))

    # -- clusters -----------------------------------------------------------------------------------------

    def add_cluster(self, registry: ClusterRegistry) -> None:
        self.clusters[registry.cluster] = registry
        registry.start()
        self.emit(ClusterAdded(registry.cluster))

    async def remove_cluster(self, cluster: ClusterId) -> None:
        """The cluster leaves the mesh with all its services, endpoints and workloads."""
        registry = self.clusters.pop(cluster, None)
        if registry is None:
            return
        await registry.stop()
        for host in [h for h, shards in self.endpoints.items() if cluster in shards]:
            self._index(host, self.endpoints[host][cluster], ())
            del self.endpoints[host][cluster]
            if not self.endpoints[host]:
                del self.endpoints[host]
            self.emit(EndpointsChanged(host, cluster))
        for host in [h for h, defined in self._defined.items() if cluster in defined]:
            del self._defined[host][cluster]
            self._merge(host, cluster)
        for ip in [ip for ip, w in self.workloads_by_ip.items() if w.cluster == cluster]:
            workload = self.workloads_by_ip.pop(ip)
            self.emit(WorkloadChanged(cluster, workload.namespace, workload.name))
        self.emit(ClusterRemoved(cluster))

    def cluster_state_changed(self, cluster: ClusterId, state: str) -> None:
        self.emit(ClusterStateChanged(cluster, state))

    def set_trust_domain(self, trust_domain: str) -> None:
        if trust_domain != self.trust_domain:
            self.trust_domain = trust_domain
            for registry in self.clusters.values():
                registry.rebuild_all()

    # -- RegistrySink -------------------------------------------------------------------------------------

    def service_changed(self, cluster: ClusterId, key: Key, service: KService | None) -> None:
        host = hostname(*key)
        defined = self._defined.setdefault(host, {})
        if service is None:
            defined.pop(cluster, None)
        else:
            defined[cluster] = service
        if not defined:
            del self._defined[host]
        self._merge(host, cluster)

    def _merge(self, host: str, cluster: ClusterId) -> None:
        defined = self._defined.get(host, {})
        previous = self.services.get(host)
        if not defined:
            if previous is not None:
                del self.services[host]
                self.emit(ServiceChanged(host, cluster))
            return
        order = self._ordered(defined)
        first = defined[order[0]]
        ports: dict[int, ServicePort] = {}
        for c in order:
            for port in defined[c].ports:
                ports.setdefault(port.port, port)
        merged = Service(
            hostname=host,
            name=first.name,
            namespace=first.namespace,
            ports=tuple(ports[p] for p in sorted(ports)),
            vips=FrozenMap({c: ip for c in order if (ip := defined[c].cluster_ip)}),
            clusters=frozenset(defined),
            headless=all(defined[c].cluster_ip is None and not defined[c].external_name for c in order),
            external_name=first.external_name,
            labels=first.labels,
            export_to=first.export_to,
        )
        if merged != previous:
            self.services[host] = merged
            self.emit(ServiceChanged(host, cluster))

    def hosts_at(self, ip: str) -> set[str]:
        """The services with an endpoint at this address (a proxy's inbound side)."""
        return self.hosts_by_ip.get(ip, set())

    def _index(self, host: str, old: tuple[Endpoint, ...], new: tuple[Endpoint, ...]) -> None:
        for endpoint in old:
            hosts = self.hosts_by_ip.get(endpoint.address)
            if hosts is not None:
                hosts.discard(host)
                if not hosts:
                    del self.hosts_by_ip[endpoint.address]
        for endpoint in new:
            self.hosts_by_ip.setdefault(endpoint.address, set()).add(host)

    def endpoints_changed(self, cluster: ClusterId, key: Key, endpoints: tuple[Endpoint, ...]) -> None:
        host = hostname(*key)
        shards = self.endpoints.setdefault(host, {})
        self._index(host, shards.get(cluster, ()), endpoints)
        if endpoints:
            shards[cluster] = endpoints
        else:
            shards.pop(cluster, None)
            if not shards:
                del self.endpoints[host]
        self.emit(EndpointsChanged(host, cluster))

    def workload_changed(self, cluster: ClusterId, old: KPod | None, new: KPod | None) -> None:
        if old is not None:
            current = self.workloads_by_ip.get(old.ip)
            if current is not None and current.cluster == cluster and current.name == old.name:
                del self.workloads_by_ip[old.ip]
        if new is not None:
            registry = self.clusters.get(cluster)
            self.workloads_by_ip[new.ip] = Workload(
                cluster=cluster,
                namespace=new.namespace,
                name=new.name,
                ip=new.ip,
                service_account=new.service_account,
                labels=new.labels,
                node=new.node,
                locality=registry.locality(new, new.node, "") if registry else Locality(),
                has_sidecar=new.has_sidecar,
                uid=new.uid,
                ready=new.ready,
            )
        pod = new or old
        if pod is not None:
            self.emit(WorkloadChanged(cluster, pod.namespace, pod.name))

    def emit(self, event: Event) -> None:
        """Announce an event to every listener (a failing listener is logged, the others still hear it)."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed on %s", event)
