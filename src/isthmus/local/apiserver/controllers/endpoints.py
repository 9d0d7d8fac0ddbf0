"""Endpoints of Services with a selector, as kube-controller-manager's endpoints controller writes them: one
Endpoints object per Service (same name, the Service's labels), with the address of every selected pod of its
namespace that has an IP, under `addresses` when the pod is Ready (or the Service publishes not-ready
addresses) and `notReadyAddresses` otherwise, ports resolved from each Service port's targetPort (a number, or
a container port's name), at most 1000 addresses (then annotated over-capacity). A Service's Endpoints are
deleted with it; Services without a selector keep the Endpoints their users write. `ServiceSelection` (which
pods a Service selects, which Services select a pod) is shared with the EndpointSlice controller: pods are
indexed by namespace and label, Services by selector label, so a pod change costs only the Services that
select it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from isthmus.local.apiserver.controllers import endpointutil as eu
from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.informers import (
    ENDPOINTS,
    LABELS,
    NODE_NAME,
    PODS,
    SERVICES,
    Informer,
    Informers,
    ObjectKey,
    object_key,
)
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import ADDED, DELETED, MODIFIED, WatchEvent, copy_object
from isthmus.local.events import WARNING

MANAGER = "endpoint-controller"
SELECTOR = "serviceSelector"  # services by (namespace, selector key, selector value)


def _by_selector(service: JsonObject) -> Iterable[Hashable]:
    namespace = service["metadata"].get("namespace", "")
    return [(namespace, k, v) for k, v in (eu.selector_of(service) or {}).items()]


class ServiceSelection:
    """Which pods a Service selects and which Services select a pod, from shared indexes."""

    def __init__(self, informers: Informers) -> None:
        self.services: Informer = informers.get(SERVICES)
        self.pods: Informer = informers.get(PODS)
        self.services.index_by(SELECTOR, _by_selector)
        self.pods.index_by(LABELS)
        self.pods.index_by(NODE_NAME)

    def pods_of(self, service: JsonObject) -> list[JsonObject]:
        selector = eu.selector_of(service)
        if not selector:
            return []
        namespace = service["metadata"].get("namespace", "")
        candidates = min((self.pods.indexed(LABELS, (namespace, k, v)) for k, v in selector.items()), key=len)
        return [pod for pod in candidates.values() if eu.selects(selector, pod)]

    def services_of(self, pod: JsonObject) -> set[ObjectKey]:
        namespace = pod["metadata"].get("namespace", "")
        found: set[ObjectKey] = set()
        for key, value in podutil.labels(pod).items():
            for service_key, service in self.services.indexed(SELECTOR, (namespace, key, value)).items():
                if service_key not in found and eu.selects(eu.selector_of(service) or {}, pod):
                    found.add(service_key)
        return found

    def affected_by(self, event: WatchEvent) -> set[ObjectKey]:
        """The Services whose endpoints a pod event may change."""
        old = event.old
        labels_changed = old is None or podutil.labels(old) != podutil.labels(event.obj)
        if (
            event.type == MODIFIED
            and not labels_changed
            and eu.endpoint_signature(old) == eu.endpoint_signature(event.obj)
        ):
            return set()
        keys = self.services_of(event.obj)
        if old is not None and labels_changed:
            keys |= self.services_of(old)
        return keys

    def services_on_node(self, node_name: str) -> set[ObjectKey]:
        keys: set[ObjectKey] = set()
        for pod in list(self.pods.indexed(NODE_NAME, node_name).values()):
            keys |= self.services_of(pod)
        return keys


class EndpointsController(Reconciler):
    name = "endpoint-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(self.name)
        self.selection = ServiceSelection(ctx.informers)
        self.services = self.selection.services
        self.endpoints: Informer = ctx.informers.get(ENDPOINTS)
        self._deleted: set[ObjectKey] = set()  # Services gone whose Endpoints go too
        self.services.add_handler(self._on_service, self.enqueue_all)
        self.selection.pods.add_handler(self._on_pod, self.enqueue_all)
        self.endpoints.add_handler(self._on_endpoints)

    def all_keys(self) -> Iterable[Hashable]:
        return self.services.keys()

    def _on_service(self, event: WatchEvent) -> None:
        key = object_key(event.obj)
        if event.type == DELETED:
            self._deleted.add(key)
        else:
            self._deleted.discard(key)
        self.enqueue(key)

    def _on_pod(self, event: WatchEvent) -> None:
        for key in self.selection.affected_by(event):
            self.enqueue(key)

    def _on_endpoints(self, event: WatchEvent) -> None:
        """Endpoints of a selector Service that someone else changed or deleted are written again."""
        key = object_key(event.obj)
        service = self.services.get(*key)
        if (
            service is not None
            and eu.selector_of(service) is not None
            and event.type in (ADDED, MODIFIED, DELETED)
        ):
            self.enqueue(key)

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        service = self.services.get(namespace, name)
        current = self.endpoints.get(namespace, name)
        if service is None:
            if key in self._deleted:
                self._deleted.discard(key)
                if current is not None:
                    await self._delete(namespace, name)
            return
        if eu.selector_of(service) is None:
            return
        subsets, truncated = eu.truncate_subsets(
            eu.endpoints_subsets(service, self.selection.pods_of(service))
        )
        labels = dict(podutil.labels(service))
        if eu.is_headless(service):
            labels[eu.HEADLESS_LABEL] = ""
        else:
            labels.pop(eu.HEADLESS_LABEL, None)
        annotations = dict((current or {}).get("metadata", {}).get("annotations") or {})
        if truncated:
            annotations[eu.OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(eu.OVER_CAPACITY, None)
        try:
            if current is None:
                meta: JsonObject = {"name": name, "namespace": namespace}
                if labels:
                    meta["labels"] = labels
                if annotations:
                    meta["annotations"] = annotations
                body: JsonObject = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta}
                if subsets:
                    body["subsets"] = subsets
                await self.ctx.objects.create(
                    self.ctx.target("", "endpoints", namespace), body, self.ctx.options(MANAGER)
                )
                return
            current_meta = current["metadata"]
            if (
                (current.get("subsets") or []) == subsets
                and (current_meta.get("labels") or {}) == labels
                and (current_meta.get("annotations") or {}) == annotations
            ):
                return
            obj = copy_object(current)
            for field, value in (("labels", labels), ("annotations", annotations)):
                if value:
                    obj["metadata"][field] = value
                else:
                    obj["metadata"].pop(field, None)
            if subsets:
                obj["subsets"] = subsets
            else:
                obj.pop("subsets", None)
            await self.ctx.objects.update(
                self.ctx.target("", "endpoints", namespace, name), obj, self.ctx.options(MANAGER)
            )
        except StatusError as exc:
            if exc.code not in (409, 404) and not (exc.code == 403 and "being terminated" in exc.message):
                self.events.event(
                    service,
                    WARNING,
                    "FailedToUpdateEndpoint",
                    f"Failed to update endpoint {namespace}/{name}: {exc}",
                )
            raise

    async def _delete(self, namespace: str, name: str) -> None:
        try:
            await self.ctx.objects.delete(
                self.ctx.target("", "endpoints", namespace, name), {}, self.ctx.options(MANAGER)
            )
        except StatusError as exc:
            if exc.code != 404:
                raise
