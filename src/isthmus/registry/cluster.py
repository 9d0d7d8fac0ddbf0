"""One cluster's registry: its Services, EndpointSlices, Pods and Nodes, kept by informers, turned into the
mesh's services and endpoints.

Contract: runs on the control plane's event loop. Every change is reported to the `sink` as it happens,
naming the service (or pod) it concerns; a service's endpoints are rebuilt only when one of its slices, one
of its pods or the node of one of its pods changed. When the cluster cannot be reached its last-known state
stays and `state` says `stale`; informers resume or relist on their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from lightkube import AsyncClient

from isthmus import tunables
from isthmus.aio import cancel_all
from isthmus.kube.informer import Informer, Key
from isthmus.kube.resources import EndpointSlices, Nodes, Pods, Services
from isthmus.model import ClusterId, Endpoint, FrozenMap, Locality, TlsMode
from isthmus.model.service import CLUSTER_LABEL
from isthmus.registry import projections
from isthmus.registry.projections import KNode, KPod, KService, KSlice

SYNCING, SYNCED, STALE, FAILED = "syncing", "synced", "stale", "failed"


class RegistrySink(Protocol):
    """Where a cluster registry reports changes (the aggregate)."""

    def service_changed(self, cluster: ClusterId, key: Key, service: KService | None) -> None: ...

    def endpoints_changed(self, cluster: ClusterId, key: Key, endpoints: tuple[Endpoint, ...]) -> None: ...

    def workload_changed(self, cluster: ClusterId, old: KPod | None, new: KPod | None) -> None: ...

    def cluster_state_changed(self, cluster: ClusterId, state: str) -> None: ...


class ClusterRegistry:
    def __init__(
        self,
        cluster: ClusterId,
        client: AsyncClient,
        sink: RegistrySink,
        trust_domain: Callable[[], str],
        network: str = "",
        description: str = "",
    ) -> None:
        self.cluster = cluster
        self.client = client
        self.sink = sink
        self.trust_domain = trust_domain
        self.network = network
        self.description = description or str(cluster)
        self.slices_of: dict[Key, set[Key]] = {}  # service -> its slices
        self.pods_by_ip: dict[str, KPod] = {}
        self.endpoints: dict[Key, tuple[Endpoint, ...]] = {}
        self.services_of_node: dict[str, set[Key]] = {}
        self.services_of_address: dict[str, set[Key]] = {}  # endpoint IP -> services (its pod may come later)
        name = self.description
        self.nodes: Informer[KNode] = Informer(
            client, Nodes, projections.node, self._node_changed, name=f"{name}: nodes"
        )
        self.pods: Informer[KPod] = Informer(
            client, Pods, projections.pod, self._pod_changed, name=f"{name}: pods"
        )
        self.services: Informer[KService] = Informer(
            client, Services, projections.service, self._service_changed, name=f"{name}: services"
        )
        self.slices: Informer[KSlice] = Informer(
            client,
            EndpointSlices,
            projections.endpoint_slice,
            self._slice_changed,
            name=f"{name}: endpointslices",
        )
        self.synced = asyncio.Event()
        self.ever_synced = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def informers(self) -> list[Informer[KNode] | Informer[KPod] | Informer[KService] | Informer[KSlice]]:
        return [self.nodes, self.pods, self.services, self.slices]

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(), name=f"registry {self.cluster}"),
            loop.create_task(self._watch_state(), name=f"registry {self.cluster}: state"),
        ]

    async def _watch_state(self) -> None:
        """Report each change of `state` (syncing, synced, stale, failed) to the sink."""
        reported = ""
        while True:
            state = self.state
            if state != reported:
                reported = state
                self.sink.cluster_state_changed(self.cluster, state)
            await asyncio.sleep(tunables.CLUSTER_STATE_CHECK.get())

    async def _run(self) -> None:
        """Start the informers in dependency order (pods before slices: endpoints are built once, with their
        pods' identities), then keep them running."""
        loop = asyncio.get_running_loop()
        for informer in self.informers:
            self._tasks.append(loop.create_task(informer.run(), name=informer.name))
            await informer.synced.wait()
        self.ever_synced = True
        self.synced.set()

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    async def reconnect(self, client: AsyncClient) -> None:
        """Use a new client (changed kubeconfig): informers relist through it; only real differences are
        reported, so no endpoint is dropped that the cluster still has."""
        await self.stop()
        self.client = client
        for informer in self.informers:
            informer.client = client
            informer.synced.clear()
        self.synced.clear()
        self.start()

    @property
    def error(self) -> str:
        return next((i.error for i in self.informers if i.error), "")

    @property
    def state(self) -> str:
        failing = [i.failing_since for i in self.informers if i.failing_since is not None]
        if not self.ever_synced:
            return FAILED if failing else SYNCING
        if failing and time.monotonic() - min(failing) >= tunables.CLUSTER_STALE_AFTER.get():
            return STALE
        return SYNCED

    def hostname(self, key: Key) -> str:
        return f"{key[1]}.{key[0]}.svc.cluster.local"

    # -- changes ------------------------------------------------------------------------------------------

    def _service_changed(self, key: Key, old: KService | None, new: KService | None) -> None:
        self.sink.service_changed(self.cluster, key, new)

    def _slice_changed(self, key: Key, old: KSlice | None, new: KSlice | None) -> None:
        services: set[Key] = set()
        if old is not None:
            services.add((old.namespace, old.service))
            self.slices_of.get((old.namespace, old.service), set()).discard(key)
        if new is not None:
            services.add((new.namespace, new.service))
            self.slices_of.setdefault((new.namespace, new.service), set()).add(key)
        for service in services:
            if not self.slices_of.get(service):
                self.slices_of.pop(service, None)
            self._rebuild(service)

    def _pod_changed(self, key: Key, old: KPod | None, new: KPod | None) -> None:
        if old is not None and self.pods_by_ip.get(old.ip) is old:
            del self.pods_by_ip[old.ip]
        if new is not None:
            self.pods_by_ip[new.ip] = new
        self.sink.workload_changed(self.cluster, old, new)
        # Services with an endpoint at the pod's address, whether it was built with the pod or before it came.
        affected: set[Key] = set()
        for pod in (old, new):
            if pod is not None:
                affected |= self.services_of_address.get(pod.ip, set())
        for service in affected:
            self._rebuild(service)

    def _node_changed(self, key: Key, old: KNode | None, new: KNode | None) -> None:
        if old is not None and new is not None and old.locality == new.locality:
            return
        for service in list(self.services_of_node.get(key[1], ())):
            self._rebuild(service)

    def rebuild_all(self) -> None:
        """Recompute every service's endpoints (the trust domain changed)."""
        for service in list(self.slices_of):
            self._rebuild(service)

    def _rebuild(self, service: Key) -> None:
        previous = self.endpoints.get(service, ())
        for endpoint in previous:
            if endpoint.node:
                on_node = self.services_of_node.get(endpoint.node)
                if on_node is not None:
                    on_node.discard(service)
            at_address = self.services_of_address.get(endpoint.address)
            if at_address is not None:
                at_address.discard(service)
                if not at_address:
                    del self.services_of_address[endpoint.address]
        endpoints = self._build(service)
        for endpoint in endpoints:
            if endpoint.node:
                self.services_of_node.setdefault(endpoint.node, set()).add(service)
            self.services_of_address.setdefault(endpoint.address, set()).add(service)
        if endpoints:
            self.endpoints[service] = endpoints
        else:
            self.endpoints.pop(service, None)
        if endpoints != previous:
            self.sink.endpoints_changed(self.cluster, service, endpoints)

    def _build(self, service: Key) -> tuple[Endpoint, ...]:
        namespace = service[0]
        trust_domain = self.trust_domain()
        out: list[Endpoint] = []
        for slice_key in sorted(self.slices_of.get(service, ())):
            item = self.slices.items.get(slice_key)
            if item is None:
                continue
            for entry in item.endpoints:
                for address in entry.addresses:
                    pod = self.pods_by_ip.get(address)
                    if pod is not None and (
                        pod.namespace != namespace or (entry.pod and entry.pod != pod.name)
                    ):
                        pod = None
                    node_name = entry.node or (pod.node if pod else "")
                    locality = self.locality(pod, node_name, entry.zone)
                    labels: dict[str, str] = dict(pod.labels) if pod else {}
                    labels[CLUSTER_LABEL] = str(self.cluster)
                    network = (pod.network if pod else "") or self.network
                    identity = (
                        f"spiffe://{trust_domain}/ns/{pod.namespace}/sa/{pod.service_account}" if pod else ""
                    )
                    for port_name, port, _ in item.ports:
                        out.append(
                            Endpoint(
                                address=address,
                                port=port,
                                service_port_name=port_name,
                                cluster=self.cluster,
                                network=network,
                                locality=locality,
                                identity=identity,
                                labels=FrozenMap(labels),
                                ready=entry.ready,
                                serving=entry.serving,
                                terminating=entry.terminating,
                                tls_mode=TlsMode.ISTIO
                                if pod is not None and pod.has_sidecar
                                else TlsMode.DISABLED,
                                workload=pod.name if pod else "",
                                namespace=namespace,
                                node=node_name,
                            )
                        )
        return tuple(out)

    def locality(self, pod: KPod | None, node_name: str, zone: str) -> Locality:
        if pod is not None and pod.locality_label:
            return Locality.parse(pod.locality_label)
        node = self.nodes.items.get(("", node_name)) if node_name else None
        if node is not None and node.locality.region:
            return node.locality
        return Locality(zone=zone) if zone else Locality()
