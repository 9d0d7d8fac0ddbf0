"""What every in-process controller shares: access to the objects, a system identity, and a reconcile loop.

Contract: controllers run as asyncio tasks on the API server's event loop and change objects only through
`Objects` (so client-visible rules apply to them too). A `Reconciler` watches resources from the moment it
starts, turns each event into keys, and calls `reconcile(key)` once per key however many events name it;
keys are retried after an error (with a delay) and all keys are reconciled again every `resync` seconds.
Keys from events go before resync keys. Controllers that follow shared informers (`ctx.informers`) queue
keys with `enqueue` from their handlers; the loop brings every informer up to date before each reconcile.
`ctx.events` records Events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from isthmus.local.apiserver.auth import SYSTEM_MASTERS, UserInfo
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.controllers.informers import Informers
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import PATCH_MERGE, Objects, Target, WriteOptions
from isthmus.local.apiserver.store import Stored, Watcher, WatchEvent
from isthmus.local.events import EventBroadcaster, SinkError

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
ResourceKey = tuple[str, str]
SYSTEM_USER = UserInfo("system:kube-controller-manager", groups=(SYSTEM_MASTERS,))
YIELD_EVERY = 0.002  # seconds a reconcile loop runs before it lets the event loop run other tasks


@dataclass
class ControllerContext:
    """What a controller may use. One per API server; shared by its controllers."""

    objects: Objects
    config: ApiServerConfig
    informers: Informers = field(init=False)
    events: EventBroadcaster = field(init=False)

    def __post_init__(self) -> None:
        self.informers = Informers(self.objects.store)
        self.events = EventBroadcaster(ObjectsEventSink(self))

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


class ObjectsEventSink:
    """Events written in-process, as the API server's own controllers write them."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx

    async def create(self, namespace: str, event: JsonObject) -> JsonObject:
        try:
            result = await self.ctx.objects.create(
                self.ctx.target("", "events", namespace), event, self.ctx.options("event-recorder")
            )
        except StatusError as exc:
            raise SinkError(exc.code, exc.message) from exc
        return result.obj

    async def patch(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        try:
            result = await self.ctx.objects.patch(
                self.ctx.target("", "events", namespace, name),
                PATCH_MERGE,
                orjson.dumps(patch),
                self.ctx.options("event-recorder"),
            )
        except StatusError as exc:
            raise SinkError(exc.code, exc.message) from exc
        return result.obj


class Controller:
    """A long-running task of the API server. `prepare` runs before the server serves, `run` afterwards."""

    name = "controller"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx

    async def prepare(self) -> None:
        """Work that must be done before the first request is served (bootstrap objects)."""

    async def run(self) -> None:
        """The controller's loop; cancelled when the server stops."""


class SharedWorkers(Controller):
    """Runs what the controllers share: the informers' watches and the Event writer."""

    name = "shared-workers"

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.ctx.informers.run())
            group.create_task(self.ctx.events.run())


class Reconciler(Controller):
    """A controller that reconciles keys derived from the events of the resources it watches."""

    watches: tuple[ResourceKey, ...] = ()
    resync = 30.0
    retry_delay = 1.0

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self._pending: dict[Hashable, None] = {}
        self._has_pending = asyncio.Event()

    def enqueue(self, key: Hashable) -> None:
        """Reconcile `key` soon (once, however often it is queued before that)."""
        self._pending[key] = None
        self._has_pending.set()

    def enqueue_all(self) -> None:
        """Reconcile every key soon (after an informer relisted)."""
        for key in self.all_keys():
            self.enqueue(key)

    def enqueue_after(self, key: Hashable, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.enqueue, key)

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
        wakeup, pending = self._has_pending, self._pending
        # Watch first, then list: no event between the two can be missed.
        watchers = {resource: self.ctx.watch(resource) for resource in self.watches}
        pending.update(dict.fromkeys(self.all_keys()))
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

        followers = [loop.create_task(follow(resource)) for resource in self.watches]
        resync: dict[Hashable, None] = {}
        next_resync = loop.time() + self.resync
        try:
            while True:
                # asyncio.timeout, not wait_for: wait_for (before 3.12) loses a cancellation that arrives
                # as the wakeup does, and the server's shutdown would then wait for the next resync.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_resync - loop.time())):
                        await wakeup.wait()
                wakeup.clear()
                if loop.time() >= next_resync:
                    resync.update(dict.fromkeys(self.all_keys()))
                    next_resync = loop.time() + self.resync
                yielded = loop.time()
                while pending or resync:
                    # Keys from events go before resync keys; and the loop is let go of every few
                    # milliseconds, so a change is not stuck behind a resync of thousands of keys.
                    if loop.time() - yielded > YIELD_EVERY:
                        await asyncio.sleep(0)
                        yielded = loop.time()
                    if pending:
                        key = next(iter(pending))
                        del pending[key]
                        resync.pop(key, None)
                    elif resync:
                        key = next(iter(resync))
                        del resync[key]
                    else:
                        break
                    self.ctx.informers.sync()
                    try:
                        await self.reconcile(key)
                    except StatusError as exc:
                        if exc.code == 409:  # raced with another writer: look again at once
                            pending[key] = None
                            continue
                        log.warning("%s: %s: %s", self.name, key, exc)
                        loop.call_later(self.retry_delay, self.enqueue, key)
                    except Exception:
                        log.exception("%s: reconciling %s failed", self.name, key)
                        loop.call_later(self.retry_delay, self.enqueue, key)
        finally:
            for task in followers:
                task.cancel()
