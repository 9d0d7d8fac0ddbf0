"""EndpointSlices mirrored from Endpoints that users write for Services without a selector, as
kube-controller-manager's endpointslicemirroring controller mirrors them: each subset's addresses (ready) and
notReadyAddresses (not ready) with their hostname, nodeName and targetRef, in slices per address family and
port set, labelled with the Endpoints' labels plus `kubernetes.io/service-name` and
`endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io`, carrying the Endpoints'
annotations (but last-applied-configuration and the trigger time), owned by the Endpoints. At most 1000
addresses per subset are mirrored. Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` (such
as the `kubernetes` Service's), leader-election records, and Endpoints of Services that have a selector or do
not exist are not mirrored; their mirrored slices are deleted.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from isthmus.local.apiserver.controllers import endpointutil as eu
from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.endpointslices import (
    SLICES_OF,
    SliceWriter,
    slice_prefix,
    slices_of_service,
)
from isthmus.local.apiserver.controllers.informers import (
    ENDPOINT_SLICES,
    ENDPOINTS,
    SERVICES,
    Informer,
    object_key,
)
from isthmus.local.apiserver.store import WatchEvent

MANAGED_BY = "endpointslicemirroring-controller.k8s.io"
MANAGER = "endpointslicemirroring-controller"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_PER_SUBSET = 1000


def should_mirror(endpoints: JsonObject | None, service: JsonObject | None) -> bool:
    if endpoints is None or service is None or eu.selector_of(service) is not None:
        return False
    meta = endpoints["metadata"]
    if (meta.get("labels") or {}).get(eu.SKIP_MIRROR_LABEL) == "true":
        return False
    return LEADER_ANNOTATION not in (meta.get("annotations") or {})


def mirrored_groups(
    endpoints: JsonObject,
) -> dict[str, dict[bytes, tuple[list[JsonObject], list[JsonObject]]]]:
    """The endpoints to mirror: address family -> ports key -> (ports, endpoints sorted by address)."""
    families: dict[str, dict[bytes, tuple[list[JsonObject], list[JsonObject]]]] = {}
    for subset in endpoints.get("subsets") or ():
        ports = sorted(
            (
                {
                    "name": p.get("name") or "",
                    "port": p.get("port"),
                    "protocol": p.get("protocol") or "TCP",
                    **({"appProtocol": p["appProtocol"]} if p.get("appProtocol") else {}),
                }
                for p in subset.get("ports") or ()
            ),
            key=lambda p: (p["name"], p["port"] or 0, p["protocol"]),
        )
        key = eu.ports_key(ports)
        budget = MAX_PER_SUBSET
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in subset.get(field) or ():
                ip = str(address.get("ip") or "")
                family = eu.family_of(ip)
                if family is None or budget <= 0:
                    continue
                budget -= 1
                endpoint: JsonObject = {"addresses": [ip], "conditions": {"ready": ready}}
                if address.get("hostname"):
                    endpoint["hostname"] = address["hostname"]
                if address.get("targetRef"):
                    endpoint["targetRef"] = address["targetRef"]
                if address.get("nodeName"):
                    endpoint["nodeName"] = address["nodeName"]
                group = families.setdefault(family, {}).setdefault(key, (ports, []))[1]
                if all(e["addresses"] != endpoint["addresses"] for e in group):
                    group.append(endpoint)
    for groups in families.values():
        for _, group in groups.values():
            group.sort(key=lambda e: e["addresses"][0])
    return families


class EndpointSliceMirroringController(Reconciler):
    name = "endpointslicemirroring-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.endpoints: Informer = ctx.informers.get(ENDPOINTS)
        self.services: Informer = ctx.informers.get(SERVICES)
        self.slices: Informer = ctx.informers.get(ENDPOINT_SLICES)
        self.slices.index_by(SLICES_OF, slices_of_service)
        self.writer = SliceWriter(ctx, MANAGER)
        for informer in (self.endpoints, self.services):
            informer.add_handler(self._on_object, self.enqueue_all)
        self.slices.add_handler(self._on_slice)

    def all_keys(self) -> Iterable[Hashable]:
        keys = set(self.endpoints.keys())
        for s in self.slices.all():
            labels = podutil.labels(s)
            if labels.get(eu.MANAGED_BY_LABEL) == MANAGED_BY and labels.get(eu.SERVICE_NAME_LABEL):
                keys.add((s["metadata"].get("namespace", ""), labels[eu.SERVICE_NAME_LABEL]))
        return keys

    def _on_object(self, event: WatchEvent) -> None:
        self.enqueue(object_key(event.obj))

    def _on_slice(self, event: WatchEvent) -> None:
        labels = podutil.labels(event.obj)
        if labels.get(eu.MANAGED_BY_LABEL) == MANAGED_BY and labels.get(eu.SERVICE_NAME_LABEL):
            self.enqueue((event.obj["metadata"].get("namespace", ""), labels[eu.SERVICE_NAME_LABEL]))

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        endpoints = self.endpoints.get(namespace, name)
        mirrored = [
            s
            for s in self.slices.indexed(SLICES_OF, key).values()
            if podutil.labels(s).get(eu.MANAGED_BY_LABEL) == MANAGED_BY
        ]
        if endpoints is None or not should_mirror(endpoints, self.services.get(namespace, name)):
            await self.writer.write(namespace, "", "", {}, [], mirrored)
            return
        uid = endpoints["metadata"]["uid"]
        owned = [s for s in mirrored if podutil.controlled_by(s, uid)]
        obsolete = [s for s in mirrored if not podutil.controlled_by(s, uid)]
        meta_in = endpoints["metadata"]
        labels = {
            **(meta_in.get("labels") or {}),
            eu.SERVICE_NAME_LABEL: name,
            eu.MANAGED_BY_LABEL: MANAGED_BY,
        }
        annotations = {
            k: v
            for k, v in (meta_in.get("annotations") or {}).items()
            if k not in (TRIGGER_TIME, LAST_APPLIED)
        }
        meta: JsonObject = {"labels": labels, "ownerReferences": [podutil.controller_reference(endpoints)]}
        if annotations:
            meta["annotations"] = annotations
        families = mirrored_groups(endpoints)
        obsolete += [s for s in owned if s.get("addressType") not in families]
        for family, groups in families.items():
            planned, spare = eu.plan_slices(
                groups, [s for s in owned if s.get("addressType") == family], placeholder=False
            )
            await self.writer.write(namespace, slice_prefix(name), family, meta, planned, spare)
        await self.writer.write(namespace, "", "", {}, [], obsolete)
