"""EndpointSlices of Services with a selector, as kube-controller-manager's endpointslice controller writes
them: per address family, the selected pods that have an IP (terminating ones included) as endpoints with
ready / serving / terminating conditions, nodeName, zone (the node's `topology.kubernetes.io/zone`), targetRef
and hostname, grouped by their resolved port set in slices of at most 100 endpoints named
`<service>-<random>`, labelled `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io` (plus the Service's labels), owned by the Service (so they go with it). A
Service without endpoints keeps one empty slice. Endpoints stay in the slice that has them, and a slice is
written only when its content changes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from isthmus.local.apiserver.controllers import endpointutil as eu
from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.endpoints import ServiceSelection
from isthmus.local.apiserver.controllers.informers import (
    ENDPOINT_SLICES,
    NODES,
    Informer,
    ObjectKey,
    object_key,
)
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object
from isthmus.local.events import WARNING

MANAGED_BY = "endpointslice-controller.k8s.io"
MANAGER = "endpointslice-controller"
SLICES_OF = "sliceService"  # EndpointSlices by (namespace, kubernetes.io/service-name)
_OWN_META = ("labels", "annotations", "ownerReferences")  # what a slice's writer decides of its metadata


def slices_of_service(obj: JsonObject) -> Iterable[Hashable]:
    service = podutil.labels(obj).get(eu.SERVICE_NAME_LABEL)
    return [(obj["metadata"].get("namespace", ""), service)] if service else []


class SliceWriter:
    """Writes the slices a controller planned: creates, updates the ones whose content changed, deletes."""

    def __init__(self, ctx: ControllerContext, manager: str) -> None:
        self.ctx = ctx
        self.manager = manager

    async def write(
        self,
        namespace: str,
        prefix: str,
        address_type: str,
        meta: JsonObject,
        planned: list[tuple[JsonObject | None, list[JsonObject], list[JsonObject]]],
        obsolete: Iterable[JsonObject],
    ) -> None:
        """`meta` holds the labels, annotations and ownerReferences every slice must carry."""
        options = self.ctx.options(self.manager)
        for current, ports, endpoints in planned:
            if current is None:
                body = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {"generateName": prefix, "namespace": namespace, **copy_object(meta)},
                    "addressType": address_type,
                    "ports": ports,
                    "endpoints": endpoints,
                }
                await self.ctx.objects.create(
                    self.ctx.target("discovery.k8s.io", "endpointslices", namespace), body, options
                )
                continue
            current_meta = current["metadata"]
            if (
                current.get("addressType") == address_type
                and (current.get("ports") or []) == ports
                and (current.get("endpoints") or []) == endpoints
                and all((current_meta.get(k) or None) == (meta.get(k) or None) for k in _OWN_META)
            ):
                continue
            obj = copy_object(current)
            for key in _OWN_META:
                obj["metadata"].pop(key, None)
            obj["metadata"].update(copy_object(meta))
            obj.update(addressType=address_type, ports=ports, endpoints=endpoints)
            await self.ctx.objects.update(
                self.ctx.target("discovery.k8s.io", "endpointslices", namespace, current_meta["name"]),
                obj,
                options,
            )
        for stale in obsolete:
            try:
                await self.ctx.objects.delete(
                    self.ctx.target(
                        "discovery.k8s.io", "endpointslices", namespace, stale["metadata"]["name"]
                    ),
                    {"preconditions": {"uid": stale["metadata"]["uid"]}},
                    options,
                )
            except StatusError as exc:
                if exc.code != 404:
                    raise


def slice_prefix(name: str) -> str:
    prefix = f"{name}-"
    return prefix if len(prefix) <= 63 else "slice-"


class EndpointSliceController(Reconciler):
    name = "endpointslice-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(self.name)
        self.selection = ServiceSelection(ctx.informers)
        self.services = self.selection.services
        self.nodes: Informer = ctx.informers.get(NODES)
        self.slices: Informer = ctx.informers.get(ENDPOINT_SLICES)
        self.slices.index_by(SLICES_OF, slices_of_service)
        self.writer = SliceWriter(ctx, MANAGER)
        self.services.add_handler(self._on_service, self.enqueue_all)
        self.selection.pods.add_handler(self._on_pod, self.enqueue_all)
        self.slices.add_handler(self._on_slice)
        self.nodes.add_handler(self._on_node)

    def all_keys(self) -> Iterable[Hashable]:
        return self.services.keys()

    def _on_service(self, event: WatchEvent) -> None:
        if event.type != DELETED:
            self.enqueue(object_key(event.obj))

    def _on_pod(self, event: WatchEvent) -> None:
        for key in self.selection.affected_by(event):
            self.enqueue(key)

    def _on_slice(self, event: WatchEvent) -> None:
        """Slices of ours that someone else changed or deleted are written again."""
        labels = podutil.labels(event.obj)
        service = labels.get(eu.SERVICE_NAME_LABEL)
        if service and labels.get(eu.MANAGED_BY_LABEL) == MANAGED_BY:
            self.enqueue((event.obj["metadata"].get("namespace", ""), service))

    def _on_node(self, event: WatchEvent) -> None:
        """A node's zone is in its endpoints."""
        old_zone = podutil.labels(event.old).get(eu.ZONE_LABEL) if event.old is not None else None
        if event.type != DELETED and podutil.labels(event.obj).get(eu.ZONE_LABEL) != old_zone:
            for key in self.selection.services_on_node(event.obj["metadata"]["name"]):
                self.enqueue(key)

    def _zones(self, pods: list[JsonObject]) -> dict[str, str]:
        zones: dict[str, str] = {}
        for node_name in {podutil.node_name(pod) for pod in pods}:
            node = self.nodes.get("", node_name) if node_name else None
            zone = podutil.labels(node).get(eu.ZONE_LABEL) if node is not None else None
            if zone:
                zones[node_name] = zone
        return zones

    def _ours(self, service_key: ObjectKey) -> list[JsonObject]:
        return [
            s
            for s in self.slices.indexed(SLICES_OF, service_key).values()
            if podutil.labels(s).get(eu.MANAGED_BY_LABEL) == MANAGED_BY
        ]

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        service = self.services.get(namespace, name)
        if service is None:
            return  # its slices are garbage-collected with it
        existing = self._ours(key)
        service_type = (service.get("spec") or {}).get("type")
        if eu.selector_of(service) is None or service_type == "ExternalName":
            await self.writer.write(namespace, "", "", {}, [], existing)
            return
        uid = service["metadata"]["uid"]
        owned = [s for s in existing if podutil.controlled_by(s, uid)]
        obsolete = [s for s in existing if not podutil.controlled_by(s, uid)]
        pods = self.selection.pods_of(service)
        zones = self._zones(pods)
        meta: JsonObject = {
            "labels": eu.slice_labels(service, MANAGED_BY),
            "ownerReferences": [podutil.controller_reference(service)],
        }
        families = eu.ip_families(service)
        obsolete += [s for s in owned if s.get("addressType") not in families]
        try:
            for family in families:
                groups = eu.desired_slice_groups(service, pods, family, zones)
                planned, spare = eu.plan_slices(groups, [s for s in owned if s.get("addressType") == family])
                await self.writer.write(namespace, slice_prefix(name), family, meta, planned, spare)
            await self.writer.write(namespace, "", "", {}, [], obsolete)
        except StatusError as exc:
            if exc.code not in (404, 409) and not (exc.code == 403 and "being terminated" in exc.message):
                self.events.event(
                    service,
                    WARNING,
                    "FailedToUpdateEndpointSlices",
                    f"Error updating Endpoint Slices for Service {namespace}/{name}: {exc}",
                )
            raise
