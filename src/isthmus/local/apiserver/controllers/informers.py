"""Shared informers: one watch per resource for all the controllers of an API server, with indexes (by
namespace, labels, controller, node...) so a controller finds related objects without scanning everything.

Contract: an informer starts from the store's objects and applies every later event in order. Handlers run
synchronously for each event (they should only queue keys). `Informers.sync()` applies the events waiting
in every informer's queue at once, so a reconcile that calls it first (the Reconciler loop does) reads
indexes that agree with the store; between syncs, indexes may lag the store by the events not yet applied.
Stored objects are shared, never copied: callers must not mutate them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any

from isthmus.local.apiserver.store import DELETED, Store, Watcher, WatchEvent

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
ResourceKey = tuple[str, str]
ObjectKey = tuple[str, str]
Handler = Callable[[WatchEvent], None]
IndexFunc = Callable[[JsonObject], Iterable[Hashable]]

PODS = ("", "pods")
NODES = ("", "nodes")
SERVICES = ("", "services")
ENDPOINTS = ("", "endpoints")
ENDPOINT_SLICES = ("discovery.k8s.io", "endpointslices")
REPLICA_SETS = ("apps", "replicasets")
DEPLOYMENTS = ("apps", "deployments")

# Index names every controller may ask for (`Informer.index_by`), each with its function below.
NAMESPACE = "namespace"
LABELS = "labels"  # (namespace, label key, label value)
CONTROLLER = "controller"  # the uid of the object's controller (ownerReferences with controller: true)
NODE_NAME = "nodeName"  # pods by spec.nodeName ("" for unscheduled pods)

_EMPTY: Mapping[ObjectKey, JsonObject] = {}


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def controller_of(obj: Mapping[str, Any]) -> JsonObject | None:
    """The ownerReference with `controller: true`, if any."""
    for ref in obj["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            result: JsonObject = ref
            return result
    return None


def controllers_of(event: WatchEvent, kind: str) -> list[tuple[str, str]]:
    """(namespace, name) of the `kind` controllers of an event's object, as it is and as it was."""
    namespace = event.obj["metadata"].get("namespace", "")
    out = []
    for obj in (event.obj, event.old):
        ref = controller_of(obj) if obj is not None else None
        if ref is not None and ref.get("kind") == kind:
            out.append((namespace, str(ref["name"])))
    return out


def _by_namespace(obj: JsonObject) -> Iterable[Hashable]:
    return (obj["metadata"].get("namespace", ""),)


def _by_labels(obj: JsonObject) -> Iterable[Hashable]:
    meta = obj["metadata"]
    namespace = meta.get("namespace", "")
    return [(namespace, k, v) for k, v in (meta.get("labels") or {}).items()]


def _by_controller(obj: JsonObject) -> Iterable[Hashable]:
    ref = controller_of(obj)
    return (ref["uid"],) if ref and ref.get("uid") else ()


def _by_node_name(obj: JsonObject) -> Iterable[Hashable]:
    return ((obj.get("spec") or {}).get("nodeName") or "",)


STANDARD_INDEXES: dict[str, IndexFunc] = {
    NAMESPACE: _by_namespace,
    LABELS: _by_labels,
    CONTROLLER: _by_controller,
    NODE_NAME: _by_node_name,
}


class Informer:
    """The objects of one resource, kept current from a store watch, with indexes and event handlers."""

    def __init__(self, store: Store, resource: ResourceKey) -> None:
        self.resource = resource
        self._store = store
        self._handlers: list[Handler] = []
        self._relist_handlers: list[Callable[[], None]] = []
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[Hashable, dict[ObjectKey, JsonObject]]] = {}
        self._watcher = self._watch()
        self.index_by(NAMESPACE)

    def _watch(self) -> Watcher:
        return self._store.watch(self.resource, self._store.rv, lambda obj: True)

    # -- reads --------------------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> JsonObject | None:
        stored = self._store.get(self.resource, namespace, name)
        return stored.obj if stored is not None else None

    def indexed(self, index: str, value: Hashable) -> Mapping[ObjectKey, JsonObject]:
        """The objects whose `index` function gave `value` (a live view: copy it before awaiting)."""
        return self._indexes[index].get(value, _EMPTY)

    def in_namespace(self, namespace: str) -> Mapping[ObjectKey, JsonObject]:
        return self.indexed(NAMESPACE, namespace)

    def all(self) -> Iterator[JsonObject]:
        for objects in list(self._indexes[NAMESPACE].values()):
            yield from list(objects.values())

    def keys(self) -> list[ObjectKey]:
        return [key for objects in self._indexes[NAMESPACE].values() for key in objects]

    def count(self, index: str, value: Hashable) -> int:
        return len(self._indexes[index].get(value, _EMPTY))

    # -- setup --------------------------------------------------------------------------------------------

    def index_by(self, name: str, func: IndexFunc | None = None) -> None:
        """Maintain index `name` (a standard one unless `func` is given); asking twice is harmless."""
        if name in self._index_funcs:
            return
        func = func or STANDARD_INDEXES[name]
        self.sync()
        self._index_funcs[name] = func
        index: dict[Hashable, dict[ObjectKey, JsonObject]] = {}
        self._indexes[name] = index
        for stored in self._store.iter_objects(self.resource):
            key = object_key(stored.obj)
            for value in func(stored.obj):
                index.setdefault(value, {})[key] = stored.obj

    def add_handler(self, handler: Handler, relist: Callable[[], None] | None = None) -> None:
        """Call `handler` for each event from now on, and `relist` when events were lost (look at all)."""
        self._handlers.append(handler)
        if relist is not None:
            self._relist_handlers.append(relist)

    # -- events -------------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Apply every event already queued."""
        queue = self._watcher.queue
        while not queue.empty():
            self._apply(queue.get_nowait())

    async def follow(self) -> None:
        """Apply events as they come, until cancelled."""
        try:
            while True:
                event = await self._watcher.queue.get()
                self._apply(event)
                self.sync()
        finally:
            self._store.stop_watch(self.resource, self._watcher)

    def _apply(self, event: WatchEvent | None) -> None:
        if event is None:  # the watch ended (its queue overflowed): start again from the store
            self._store.stop_watch(self.resource, self._watcher)
            self._watcher = self._watch()
            for name, func in list(self._index_funcs.items()):
                del self._index_funcs[name]
                self.index_by(name, func)
            for relist in self._relist_handlers:
                relist()
            return
        key = object_key(event.obj)
        for name, func in self._index_funcs.items():
            index = self._indexes[name]
            if event.old is not None:
                for value in func(event.old):
                    objects = index.get(value)
                    if objects is not None:
                        objects.pop(key, None)
                        if not objects:
                            del index[value]
            if event.type != DELETED:
                for value in func(event.obj):
                    index.setdefault(value, {})[key] = event.obj
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:  # one controller's bug must not stop the others' events
                log.exception("handling %s of %s/%s failed", event.type, self.resource[1], key[1])


class Informers:
    """The informers of one API server, created on first use and followed while `run` runs."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._informers: dict[ResourceKey, Informer] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False

    def get(self, resource: ResourceKey) -> Informer:
        informer = self._informers.get(resource)
        if informer is None:
            informer = self._informers[resource] = Informer(self._store, resource)
            if self._running:
                self._tasks.append(asyncio.get_running_loop().create_task(informer.follow()))
        return informer

    def sync(self) -> None:
        for informer in self._informers.values():
            informer.sync()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._running = True
        self._tasks = [loop.create_task(informer.follow()) for informer in self._informers.values()]
        try:
            await loop.create_future()
        finally:
            self._running = False
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks.clear()
