"""What every in-process controller shares: access to the objects, a system identity, and a reconcile loop.

Contract: controllers run as asyncio tasks on the API server's event loop and change objects only through
`Objects` (so client-visible rules apply to them too). A `Reconciler` watches resources from the moment it
starts, turns each event into keys, and calls `reconcile(key)` once per key however many events name it;
keys are retried after an error (with a delay) and all keys are reconciled again every `resync` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from isthmus.local.apiserver.auth import SYSTEM_MASTERS, UserInfo
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import Objects, Target, WriteOptions
from isthmus.local.apiserver.store import Stored, Watcher, WatchEvent

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
ResourceKey = tuple[str, str]
SYSTEM_USER = UserInfo("system:kube-controller-manager", groups=(SYSTEM_MASTERS,))


@dataclass
class ControllerContext:
    """What a controller may use. One per API server; shared by its controllers."""

    objects: Objects
    config: ApiServerConfig

    def target(
        self, group: str, plural: str, namespace: str = "", name: str = "", subresource: str = ""
    ) -> Target:
        rt = self.objects.registry.get(group, plural)
        if rt is None:
            raise LookupError(f"{plural}.{group} is not served")
        return Target(rt, rt.storage_version, namespace, name, subresource)

    def options(self, manager: str) -> WriteOptions:
        return WriteOptions(user=SYSTEM_USER, field_manager=manager, field_validation="Ignore")

    def watch(self, resource: ResourceKey) -> Watcher:
        """Every event of a resource from now on."""
        return self.objects.store.watch(resource, self.objects.store.rv, lambda obj: True)

    def get(self, resource: ResourceKey, namespace: str, name: str) -> Stored | None:
        return self.objects.store.get(resource, namespace, name)

    def list(self, resource: ResourceKey, namespace: str | None = None) -> list[Stored]:
        return list(self.objects.store.iter_objects(resource, namespace))


class Controller:
    """A long-running task of the API server. `prepare` runs before the server serves, `run` afterwards."""

    name = "controller"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx

    async def prepare(self) -> None:
        """Work that must be done before the first request is served (bootstrap objects)."""

    async def run(self) -> None:
        """The controller's loop; cancelled when the server stops."""


class Reconciler(Controller):
    """A controller that reconciles keys derived from the events of the resources it watches."""

    watches: tuple[ResourceKey, ...] = ()
    resync = 30.0
    retry_delay = 1.0

    def keys_for(self, resource: ResourceKey, event: WatchEvent) -> Iterable[Hashable]:
        """The keys an event concerns; by default the object's own (namespace, name)."""
        meta = event.obj["metadata"]
        return [(meta.get("namespace", ""), meta["name"])]

    def all_keys(self) -> Iterable[Hashable]:
        """Every key, for the start and for resyncs; by default the objects of the first watched resource."""
        if not self.watches:
            return []
        return [
            (s.obj["metadata"].get("namespace", ""), s.obj["metadata"]["name"])
            for s in self.ctx.list(self.watches[0])
        ]

    async def reconcile(self, key: Any) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup = asyncio.Event()
        # Watch first, then list: no event between the two can be missed.
        watchers = {resource: self.ctx.watch(resource) for resource in self.watches}
        pending: dict[Hashable, None] = dict.fromkeys(self.all_keys())
        wakeup.set()

        async def follow(resource: ResourceKey) -> None:
            watcher = watchers[resource]
            while True:
                try:
                    while (event := await watcher.queue.get()) is not None:
                        for key in self.keys_for(resource, event):
                            pending[key] = None
                        wakeup.set()
                finally:
                    self.ctx.objects.store.stop_watch(resource, watcher)
                watcher = self.ctx.watch(resource)  # the watch ended (overflow): look at everything again
                pending.update(dict.fromkeys(self.all_keys()))
                wakeup.set()

        def retry(key: Hashable) -> None:
            pending[key] = None
            wakeup.set()

        followers = [loop.create_task(follow(resource)) for resource in self.watches]
        next_resync = loop.time() + self.resync
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), max(0.0, next_resync - loop.time()))
                wakeup.clear()
                if loop.time() >= next_resync:
                    pending.update(dict.fromkeys(self.all_keys()))
                    next_resync = loop.time() + self.resync
                while pending:
                    key = next(iter(pending))
                    del pending[key]
                    try:
                        await self.reconcile(key)
                    except StatusError as exc:
                        if exc.code == 409:  # raced with another writer: look again at once
                            pending[key] = None
                            continue
                        log.warning("%s: %s: %s", self.name, key, exc)
                        loop.call_later(self.retry_delay, retry, key)
                    except Exception:
                        log.exception("%s: reconciling %s failed", self.name, key)
                        loop.call_later(self.retry_delay, retry, key)
        finally:
            for task in followers:
                task.cancel()
