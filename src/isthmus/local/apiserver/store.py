"""Object storage for one local cluster: the live objects in memory, persisted to SQLite, with watch history.

Contract:
- Every method runs on the server's event loop; none is thread-safe. Mutations are synchronous, so a read, a
  decision and a write with no `await` between them are atomic.
- Stored objects (`Stored.obj`) are never mutated after they are stored: callers copy before changing (the
  `copy_object` helper is the fast way).
- The resourceVersion is one counter for the whole cluster (as etcd's revision): every write gets the next
  value; `metadata.resourceVersion` of the stored object is that value.
- A write is durable once `await store.persisted()` returns: writes of one event-loop turn are committed in
  one SQLite transaction (group commit).
- Watch history is kept per resource (group, plural) for the last `history_size` events; a watch from an older
  resourceVersion, or from before this process started, is refused (410 Gone), as kube-apiserver's watch cache
  does.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from isthmus.local.apiserver.errors import gone

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
ResourceKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


def storage_key(key: ObjectKey) -> str:
    """The order lists come in, as etcd keys `<namespace>/<name>` sort."""
    return f"{key[0]}/{key[1]}"


def copy_object(obj: JsonObject) -> JsonObject:
    """A deep copy of a JSON object (round trip through orjson: faster than copy.deepcopy)."""
    result: JsonObject = orjson.loads(orjson.dumps(obj))
    return result


@dataclass(slots=True)
class Stored:
    """One stored object: the object, its JSON encoding, and its resourceVersion."""

    obj: JsonObject
    raw: bytes
    rv: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change of one object. `old` is the state before (None for ADDED), used for selector transitions."""

    rv: int
    type: str
    obj: JsonObject
    raw: bytes
    old: JsonObject | None


class Watcher:
    """One watch stream's queue. `matches` decides which objects the stream sees."""

    def __init__(self, matches: Callable[[JsonObject], bool], capacity: int) -> None:
        self.matches = matches
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.capacity = capacity
        self.overflowed = False

    def offer(self, event: WatchEvent) -> None:
        """Translate `event` for this watcher's selector and enqueue it; objects leaving it are DELETED."""
        now = self.matches(event.obj)
        before = event.old is not None and self.matches(event.old)
        if event.type == DELETED:
            out = event if now else None
        elif now and before:
            out = event
        elif now:
            out = WatchEvent(event.rv, ADDED, event.obj, event.raw, event.old)
        elif before and event.old is not None:
            # Kubernetes sends the last state the watcher could see, stamped with this event's version.
            last = {**event.old, "metadata": {**event.old["metadata"], "resourceVersion": str(event.rv)}}
            out = WatchEvent(event.rv, DELETED, last, orjson.dumps(last), event.old)
        else:
            out = None
        if out is None:
            return
        if self.queue.qsize() >= self.capacity:
            # A client this far behind would only fall further behind; end its watch so it relists.
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(out)

    def close(self) -> None:
        self.queue.put_nowait(None)


@dataclass
class _Bucket:
    objects: dict[ObjectKey, Stored] = field(default_factory=dict)
    sorted_keys: list[ObjectKey] | None = None
    history: deque[WatchEvent] = field(default_factory=deque)
    # Every event after this resourceVersion is still in `history`.
    history_from: int = 0
    watchers: set[Watcher] = field(default_factory=set)

    def ordered_keys(self) -> list[ObjectKey]:
        """Keys in etcd's order: the bytes of `namespace/name`."""
        if self.sorted_keys is None:
            self.sorted_keys = sorted(self.objects, key=storage_key)
        return self.sorted_keys


_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    grp TEXT NOT NULL, resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (grp, resource, namespace, name)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store:
    """The cluster's objects. See the module docstring for the contract."""

    def __init__(
        self, db_path: Path | None, history_size: int = 10_000, watcher_capacity: int = 50_000
    ) -> None:
        self._buckets: dict[ResourceKey, _Bucket] = {}
        self._history_size = history_size
        self._watcher_capacity = watcher_capacity
        self.rv = 0
        self.opened_at = (
            0  # the resourceVersion when this process opened the store: watch history starts here
        )
        self._db: sqlite3.Connection | None = None
        self._pending: dict[tuple[str, str, str, str], bytes | None] = {}
        self._flush_done: asyncio.Future[None] | None = None
        if db_path is not None:
            self._open(db_path)

    # -- persistence --------------------------------------------------------------------------------------

    def _open(self, db_path: Path) -> None:
        db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        self.rv = int(row[0]) if row else 0
        for grp, resource, namespace, name, data in db.execute(
            "SELECT grp, resource, namespace, name, data FROM objects"
        ):
            obj = orjson.loads(data)
            rv = int(obj.get("metadata", {}).get("resourceVersion") or 0)
            self._bucket((grp, resource)).objects[(namespace, name)] = Stored(obj, bytes(data), rv)
        self._db = db
        self.opened_at = self.rv
        for bucket in self._buckets.values():
            bucket.history_from = self.rv

    def start_history(self) -> None:
        """Start every resource's watch history now, as kube-apiserver's watch cache starts from a list when it
        starts serving: watches from an earlier resourceVersion get 410 and relist."""
        self.opened_at = self.rv
        for bucket in self._buckets.values():
            bucket.history.clear()
            bucket.history_from = self.rv

    def close(self) -> None:
        self._flush()
        if self._db is not None:
            self._db.close()
            self._db = None
        for bucket in self._buckets.values():
            for watcher in bucket.watchers:
                watcher.close()

    async def persisted(self) -> None:
        """Wait until every write made so far is committed."""
        if self._flush_done is not None:
            await asyncio.shield(self._flush_done)

    def _schedule_flush(self) -> None:
        if self._flush_done is None and self._db is not None:
            loop = asyncio.get_running_loop()
            self._flush_done = loop.create_future()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        done, self._flush_done = self._flush_done, None
        pending, self._pending = self._pending, {}
        error: BaseException | None = None
        if pending and self._db is not None:
            try:
                db = self._db
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                    [(*k, v) for k, v in pending.items() if v is not None],
                )
                db.executemany(
                    "DELETE FROM objects WHERE grp=? AND resource=? AND namespace=? AND name=?",
                    [k for k, v in pending.items() if v is None],
                )
                db.execute("INSERT OR REPLACE INTO meta VALUES ('rv', ?)", (str(self.rv),))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                log.exception("committing %d writes failed", len(pending))
                error = exc
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    # -- reads --------------------------------------------------------------------------------------------

    def _bucket(self, resource: ResourceKey) -> _Bucket:
        bucket = self._buckets.get(resource)
        if bucket is None:
            bucket = self._buckets[resource] = _Bucket(history_from=self.opened_at)
        return bucket

    def get(self, resource: ResourceKey, namespace: str, name: str) -> Stored | None:
        bucket = self._buckets.get(resource)
        return bucket.objects.get((namespace, name)) if bucket else None

    def iter_objects(self, resource: ResourceKey, namespace: str | None = None) -> Iterator[Stored]:
        """Objects in key order (namespace, then name); `namespace=None` means all namespaces."""
        bucket = self._buckets.get(resource)
        if bucket is None:
            return
        objects = bucket.objects
        for key in bucket.ordered_keys():
            if namespace is None or key[0] == namespace:
                yield objects[key]

    def snapshot(self, resource: ResourceKey, rv: int, namespace: str | None = None) -> list[Stored] | None:
        """The objects as they were at resourceVersion `rv`, in key order; None when history no longer covers it.

        Rebuilt from the current objects and the watch history: the state before the first later event of
        each changed object is its state at `rv`.
        """
        bucket = self._buckets.get(resource)
        if bucket is None:
            return [] if rv >= self.opened_at else None
        if rv < bucket.history_from:
            return None
        then: dict[ObjectKey, Stored | None] = {}
        for event in bucket.history:
            if event.rv <= rv:
                continue
            meta = event.obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            if key not in then:
                old = event.old if event.type != ADDED else None
                then[key] = (
                    None
                    if old is None
                    else Stored(old, orjson.dumps(old), int(old["metadata"]["resourceVersion"]))
                )
        keys = set(bucket.objects) | {k for k, v in then.items() if v is not None}
        out = []
        for key in sorted(keys, key=storage_key):
            if namespace is not None and key[0] != namespace:
                continue
            stored = then[key] if key in then else bucket.objects[key]
            if stored is not None:
                out.append(stored)
        return out

    def count(self, resource: ResourceKey) -> int:
        bucket = self._buckets.get(resource)
        return len(bucket.objects) if bucket else 0

    def resources(self) -> list[ResourceKey]:
        return [k for k, b in self._buckets.items() if b.objects]

    # -- writes -------------------------------------------------------------------------------------------

    def put(self, resource: ResourceKey, obj: JsonObject) -> Stored:
        """Create or replace `obj` (keyed by its namespace and name), stamping the next resourceVersion."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        bucket = self._bucket(resource)  # before the next version: a new bucket's history starts before it
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        raw = orjson.dumps(obj)
        stored = Stored(obj, raw, self.rv)
        old = bucket.objects.get(key)
        if old is None:
            bucket.sorted_keys = None
        bucket.objects[key] = stored
        self._record(resource, key, raw)
        self._publish(
            bucket, WatchEvent(self.rv, MODIFIED if old else ADDED, obj, raw, old.obj if old else None)
        )
        return stored

    def remove(self, resource: ResourceKey, namespace: str, name: str) -> Stored | None:
        """Delete an object; the DELETED event carries its last state with the deletion's resourceVersion."""
        bucket = self._buckets.get(resource)
        old = bucket.objects.pop((namespace, name), None) if bucket else None
        if bucket is None or old is None:
            return None
        bucket.sorted_keys = None
        self.rv += 1
        obj = dict(old.obj)
        obj["metadata"] = {**old.obj["metadata"], "resourceVersion": str(self.rv)}
        raw = orjson.dumps(obj)
        self._record(resource, (namespace, name), None)
        self._publish(bucket, WatchEvent(self.rv, DELETED, obj, raw, old.obj))
        return Stored(obj, raw, self.rv)

    def _record(self, resource: ResourceKey, key: ObjectKey, raw: bytes | None) -> None:
        if self._db is not None:
            self._pending[(resource[0], resource[1], key[0], key[1])] = raw
            self._schedule_flush()

    def _publish(self, bucket: _Bucket, event: WatchEvent) -> None:
        bucket.history.append(event)
        if len(bucket.history) > self._history_size:
            bucket.history_from = bucket.history.popleft().rv
        for watcher in list(bucket.watchers):
            watcher.offer(event)
            if watcher.overflowed:
                bucket.watchers.discard(watcher)

    # -- watch --------------------------------------------------------------------------------------------

    def watch(self, resource: ResourceKey, since: int, matches: Callable[[JsonObject], bool]) -> Watcher:
        """A watcher that first gets every matching event after `since`, then live ones.

        Raises 410 Gone when events after `since` are no longer all in the history.
        """
        bucket = self._bucket(resource)
        if since < bucket.history_from:
            raise gone(f"too old resource version: {since} ({bucket.history_from})")
        watcher = Watcher(matches, self._watcher_capacity)
        for event in bucket.history:
            if event.rv > since:
                watcher.offer(event)
        bucket.watchers.add(watcher)
        return watcher

    def stop_watch(self, resource: ResourceKey, watcher: Watcher) -> None:
        bucket = self._buckets.get(resource)
        if bucket is not None:
            bucket.watchers.discard(watcher)

    def close_watchers(self, resource: ResourceKey) -> None:
        """End every watch of a resource (its CRD was removed)."""
        bucket = self._buckets.get(resource)
        if bucket is not None:
            for watcher in bucket.watchers:
                watcher.close()
            bucket.watchers.clear()
