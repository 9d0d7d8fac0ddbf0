"""CustomResourceDefinitions: serve each established CRD's resource, report its conditions, and on deletion
remove its objects before the resource goes away (the `customresourcecleanup` finalizer)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import Target
from isthmus.local.apiserver.resources import ResourceType, crd_resource_type
from isthmus.local.apiserver.store import copy_object
from isthmus.local.apiserver.strategies import CRD_CLEANUP_FINALIZER

log = logging.getLogger(__name__)
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
MANAGER = "apiextensions-apiserver"


class CrdController(Reconciler):
    name = "crds"
    watches = (CRDS,)

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self._served: dict[str, tuple[str, str]] = {}  # CRD name -> the resource it serves

    async def prepare(self) -> None:
        """Serve every stored CRD before the first request (their objects are already in storage)."""
        for stored in self.ctx.list(CRDS):
            if self._register(stored.obj) is not None:
                self._served[stored.obj["metadata"]["name"]] = (
                    stored.obj["spec"]["group"],
                    stored.obj["spec"]["names"]["plural"],
                )

    def _register(self, crd: JsonObject) -> ResourceType | None:
        registry = self.ctx.objects.registry
        try:
            rt = crd_resource_type(crd)
        except (KeyError, TypeError) as exc:
            log.warning("CRD %s cannot be served: %s", crd["metadata"]["name"], exc)
            return None
        current = registry.get(rt.group, rt.plural)
        if current is not None and not current.is_custom:
            return None
        if not rt.versions:
            registry.unregister(rt.group, rt.plural)
            return None
        registry.register(rt)
        return rt

    async def reconcile(self, key: Any) -> None:
        _, name = key
        current = self.ctx.get(CRDS, "", name)
        if current is None:
            self._forget(name)
            return
        crd = current.obj
        if crd["metadata"].get("deletionTimestamp"):
            await self._cleanup(crd)
            return
        rt = self._register(crd)
        if rt is None:
            return
        self._served[name] = (rt.group, rt.plural)
        status = copy_object(crd.get("status") or {})
        names = crd["spec"]["names"]
        accepted = {
            k: v
            for k, v in names.items()
            if k in ("kind", "listKind", "plural", "singular", "shortNames", "categories")
        }
        accepted.setdefault("singular", names["kind"].lower())
        accepted.setdefault("listKind", names["kind"] + "List")
        conditions = []
        for kind, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ):
            previous = next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)
            since = (
                previous["lastTransitionTime"]
                if previous and previous.get("status") == "True"
                else timestamp()
            )
            conditions.append(
                {
                    "type": kind,
                    "status": "True",
                    "lastTransitionTime": since,
                    "reason": reason,
                    "message": message,
                }
            )
        stored_versions = list(status.get("storedVersions") or [])
        if rt.storage_version not in stored_versions:
            stored_versions.append(rt.storage_version)
        desired = {"acceptedNames": accepted, "conditions": conditions, "storedVersions": stored_versions}
        if desired != status:
            obj = copy_object(crd)
            obj["status"] = desired
            await self.ctx.objects.update(
                self.ctx.target(*CRDS, name=name, subresource="status"), obj, self.ctx.options(MANAGER)
            )

    def _forget(self, name: str) -> None:
        served = self._served.pop(name, None)
        if served is not None:
            self.ctx.objects.registry.unregister(*served)
            self.ctx.objects.store.close_watchers(served)

    async def _cleanup(self, crd: JsonObject) -> None:
        spec = crd.get("spec", {})
        objects = self.ctx.objects
        rt = objects.registry.get(spec.get("group", ""), spec.get("names", {}).get("plural", ""))
        if rt is not None and rt.is_custom:
            for stored in self.ctx.list(rt.key):
                meta = stored.obj["metadata"]
                target = Target(rt, rt.storage_version, meta.get("namespace", ""), meta["name"])
                with contextlib.suppress(StatusError):
                    await objects.delete(target, {}, self.ctx.options(MANAGER))
            if objects.store.count(rt.key):
                raise StatusError(
                    503, "", f"{rt.plural}.{rt.group} objects with finalizers are still deleting"
                )
            objects.registry.unregister(rt.group, rt.plural)
            objects.store.close_watchers(rt.key)
        current = self.ctx.get(CRDS, "", crd["metadata"]["name"])
        if current is None or CRD_CLEANUP_FINALIZER not in (current.obj["metadata"].get("finalizers") or []):
            return
        obj = copy_object(current.obj)
        obj["metadata"]["finalizers"] = [
            f for f in obj["metadata"]["finalizers"] if f != CRD_CLEANUP_FINALIZER
        ]
        await objects.update(
            self.ctx.target(*CRDS, name=crd["metadata"]["name"]), obj, self.ctx.options(MANAGER)
        )
