"""Garbage collection by ownerReferences: dependents of a deleted owner are deleted (background), or deleted
before their owner (foreground); a dependent with another live owner only loses the dead reference."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import Any

from isthmus.local.apiserver.controllers.base import ControllerContext, Reconciler, ResourceKey
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import FOREGROUND_FINALIZER, Target
from isthmus.local.apiserver.store import WatchEvent, copy_object

log = logging.getLogger(__name__)
MANAGER = "garbage-collector"


class GarbageCollector(Reconciler):
    """Reconciles owner uids that `Objects` queues (owner gone, or deleting in the foreground)."""

    name = "garbage-collector"
    retry_delay = 0.5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self._wakeup = ctx.objects.gc_wakeup

    def keys_for(self, resource: ResourceKey, event: WatchEvent) -> Iterable[Hashable]:
        return []

    def all_keys(self) -> list[Any]:
        queue, self.ctx.objects.gc_queue = self.ctx.objects.gc_queue, []
        return list(dict.fromkeys(queue))

    async def run(self) -> None:
        while True:
            for owner in self.all_keys():
                try:
                    await self.reconcile(owner)
                except StatusError as exc:
                    if exc.code != 503:
                        log.warning("garbage collection for owner %s: %s", owner, exc)
                    self.ctx.objects.queue_gc_later(owner, self.retry_delay)
            await self._wakeup.wait()
            self._wakeup.clear()

    async def reconcile(self, key: Any) -> None:
        owner_uid: str = key
        objects = self.ctx.objects
        owner_at = objects.by_uid.get(owner_uid)
        owner = objects.store.get(*owner_at) if owner_at else None
        foreground = owner is not None and FOREGROUND_FINALIZER in (
            owner.obj["metadata"].get("finalizers") or []
        )
        if owner is not None and not foreground:
            return
        for resource, namespace, name in objects.dependents_of(owner_uid):
            stored = objects.store.get(resource, namespace, name)
            rt = objects.registry.get(*resource)
            if stored is None or rt is None or stored.obj["metadata"].get("deletionTimestamp"):
                continue
            refs = stored.obj["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") != owner_uid and r.get("uid") in objects.by_uid]
            target = Target(rt, rt.storage_version, namespace, name)
            if alive:
                obj = copy_object(stored.obj)
                obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                await objects.update(target, obj, self.ctx.options(MANAGER))
            else:
                policy = "Foreground" if foreground else "Background"
                await objects.delete(target, {"propagationPolicy": policy}, self.ctx.options(MANAGER))
        if not foreground or owner_at is None:
            return
        if objects.dependents_of(owner_uid):
            raise StatusError(
                503, "", f"owner {owner_uid}: dependents with finalizers of their own still deleting"
            )
        current = objects.store.get(*owner_at)
        if current is not None and FOREGROUND_FINALIZER in (current.obj["metadata"].get("finalizers") or []):
            obj = copy_object(current.obj)
            obj["metadata"]["finalizers"] = [
                f for f in obj["metadata"]["finalizers"] if f != FOREGROUND_FINALIZER
            ]
            rt = objects.registry.get(*owner_at[0])
            if rt is not None:
                await objects.update(
                    Target(rt, rt.storage_version, owner_at[1], owner_at[2]), obj, self.ctx.options(MANAGER)
                )
