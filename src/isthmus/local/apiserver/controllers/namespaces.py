"""Namespace termination: a deleted namespace's objects are deleted, then the namespace itself.

Like kube-controller-manager, cleanup starts a moment after the deletion (`namespace_cleanup_delay`), so
`kubectl delete -f` of a file that lists the namespace first still deletes the namespace's objects itself, as
on a real cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from isthmus.local.apiserver.controllers.base import ControllerContext, Reconciler
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import Target

NAMESPACES = ("", "namespaces")
MANAGER = "namespace-controller"


class NamespaceController(Reconciler):
    name = "namespaces"
    watches = (NAMESPACES,)
    retry_delay = 0.25

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self._first_seen: dict[str, float] = {}

    def all_keys(self) -> list[Any]:
        return [
            ("", s.obj["metadata"]["name"])
            for s in self.ctx.list(NAMESPACES)
            if s.obj["metadata"].get("deletionTimestamp")
        ]

    async def reconcile(self, key: Any) -> None:
        _, name = key
        current = self.ctx.get(NAMESPACES, "", name)
        if current is None or not current.obj["metadata"].get("deletionTimestamp"):
            self._first_seen.pop(name, None)
            return
        loop = asyncio.get_running_loop()
        waited = loop.time() - self._first_seen.setdefault(name, loop.time())
        if waited < self.ctx.config.namespace_cleanup_delay:
            raise StatusError(503, "", f"namespace {name}: cleanup starts shortly")
        objects = self.ctx.objects
        remaining = 0
        for rt in objects.registry.all():
            if not rt.namespaced or rt.virtual:
                continue
            for stored in self.ctx.list(rt.key, name):
                remaining += 1
                if stored.obj["metadata"].get("deletionTimestamp"):
                    continue
                target = Target(rt, rt.storage_version, name, stored.obj["metadata"]["name"])
                with contextlib.suppress(StatusError):
                    await objects.delete(
                        target, {"propagationPolicy": "Background"}, self.ctx.options(MANAGER)
                    )
        if remaining:
            raise StatusError(503, "", f"namespace {name}: {remaining} objects still deleting")
        await objects.finalize_namespace(name)
        self._first_seen.pop(name, None)
