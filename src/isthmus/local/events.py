"""Kubernetes Events (core/v1) recorded as client-go's event recorder records them, for any component of a
local cluster: the API server's controllers write them in-process (`ObjectsEventSink` in the controllers'
base), other processes such as the node through the Kubernetes API (`LightkubeEventSink`).

`EventBroadcaster(sink)` owns one write queue; `broadcaster.recorder("component", host)` gives a recorder
whose `event(obj, type, reason, message)` returns at once (the write happens in `broadcaster.run()`, which its
owner runs as a task). As client-go does, an event repeated for the same object (same source, type, reason
and message) is written once and then patched (`count` + 1, `lastTimestamp`); after 10 distinct messages of
the same reason for one object within 10 minutes they are combined into one event
("(combined from similar events): ..."); and each source may write at most 25 events per object in a burst,
then one every 5 minutes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]

NORMAL = "Normal"
WARNING = "Warning"

CACHE_SIZE = 4096  # remembered events and aggregation records (client-go's maxLruCacheEntries)
SIMILAR_EVENTS = 10  # distinct messages of one reason before they are combined
SIMILAR_INTERVAL = 600.0  # seconds within which similar events are combined
SPAM_BURST = 25  # events per source and object in a burst
SPAM_REFILL = 300.0  # seconds per further event once the burst is spent
QUEUE_LIMIT = 1000  # events waiting to be written; more are dropped (as client-go's broadcaster does)
WRITE_ATTEMPTS = 3  # tries of a write that failed to reach the server
RETRY_DELAY = 1.0


class SinkError(Exception):
    """A write the sink could not make. `code` is the HTTP status, 0 when the server was not reached."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class EventSink(Protocol):
    """Where events go: the API server's objects, or the Kubernetes API over HTTP."""

    async def create(self, namespace: str, event: JsonObject) -> JsonObject: ...

    async def patch(self, namespace: str, name: str, patch: JsonObject) -> JsonObject: ...


class LightkubeEventSink:
    """Events written through the Kubernetes API with a lightkube `AsyncClient` (the node process's client)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create(self, namespace: str, event: JsonObject) -> JsonObject:
        try:
            body = cast(
                Event, Event.from_dict(dict(event, metadata={**event["metadata"], "namespace": namespace}))
            )
            created = await self.client.create(body)
        except ApiError as exc:
            raise SinkError(exc.status.code or 500, exc.status.message or str(exc)) from exc
        except (httpx2.HTTPError, OSError) as exc:
            raise SinkError(0, str(exc)) from exc
        result: JsonObject = created.to_dict()
        return result

    async def patch(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        try:
            patched = await self.client.patch(
                Event, name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )
        except ApiError as exc:
            raise SinkError(exc.status.code or 500, exc.status.message or str(exc)) from exc
        except (httpx2.HTTPError, OSError) as exc:
            raise SinkError(0, str(exc)) from exc
        result: JsonObject = patched.to_dict()
        return result


def object_reference(obj: Mapping[str, Any], field_path: str = "") -> JsonObject:
    """The `involvedObject` of an event about `obj` (as client-go's `reference.GetReference`)."""
    meta = obj.get("metadata") or {}
    ref: JsonObject = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", "")}
    for key in ("namespace", "name", "uid", "resourceVersion"):
        if meta.get(key):
            ref[key] = meta[key]
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def _timestamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Observation:
    """The last write of one event: what a repeat patches."""

    name: str
    namespace: str
    count: int
    first_timestamp: str


@dataclass
class _Similar:
    """Distinct messages seen for one (source, object, type, reason) lately."""

    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _Lru(OrderedDict[tuple[str, ...], Any]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def remember(self, key: tuple[str, ...], value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class EventRecorder:
    """Records events of one component (`source.component`) on one host (`source.host`)."""

    def __init__(self, broadcaster: EventBroadcaster, component: str, host: str = "") -> None:
        self.broadcaster = broadcaster
        self.component = component
        self.host = host

    def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event about `obj` (any object with kind, apiVersion and metadata); returns at once."""
        self.broadcaster.submit(self._make(object_reference(obj), type_, reason, message))

    def event_for(self, involved: JsonObject, type_: str, reason: str, message: str) -> None:
        """Record an event about an object given by its reference (`object_reference`)."""
        self.broadcaster.submit(self._make(dict(involved), type_, reason, message))

    def _make(self, involved: JsonObject, type_: str, reason: str, message: str) -> JsonObject:
        if type_ not in (NORMAL, WARNING):
            raise ValueError(f"event type must be {NORMAL} or {WARNING}, not {type_!r}")
        source: JsonObject = {"component": self.component}
        if self.host:
            source["host"] = self.host
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": involved.get("namespace") or "default"},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "type": type_,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }


class EventBroadcaster:
    """The write queue and correlation state shared by the recorders of one process."""

    def __init__(self, sink: EventSink, clock: Callable[[], float] = time.time) -> None:
        self.sink = sink
        self.clock = clock
        self._queue: asyncio.Queue[JsonObject] = asyncio.Queue(QUEUE_LIMIT)
        self._observed: _Lru = _Lru(CACHE_SIZE)
        self._similar: _Lru = _Lru(CACHE_SIZE)
        self._buckets: _Lru = _Lru(CACHE_SIZE)
        self.dropped = 0

    def recorder(self, component: str, host: str = "") -> EventRecorder:
        return EventRecorder(self, component, host)

    def submit(self, event: JsonObject) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        """Write queued events until cancelled."""
        while True:
            event = await self._queue.get()
            try:
                await self._record(event)
            except Exception:
                log.exception(
                    "recording event %s/%s failed", event["involvedObject"].get("name"), event["reason"]
                )
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every event submitted so far is written (needs `run` running)."""
        await self._queue.join()

    # -- correlation (client-go's EventCorrelator) --------------------------------------------------------

    @staticmethod
    def _object_key(event: JsonObject) -> tuple[str, ...]:
        ref, source = event["involvedObject"], event["source"]
        return (
            source.get("component", ""),
            source.get("host", ""),
            ref.get("kind", ""),
            ref.get("namespace", ""),
            ref.get("name", ""),
            ref.get("uid", ""),
            ref.get("apiVersion", ""),
        )

    def _allowed(self, event: JsonObject, now: float) -> bool:
        """The spam filter: a token bucket per source and object."""
        key = self._object_key(event)
        bucket: _Bucket | None = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(SPAM_BURST), now)
        else:
            bucket.tokens = min(float(SPAM_BURST), bucket.tokens + (now - bucket.updated) / SPAM_REFILL)
            bucket.updated = now
        self._buckets.remember(key, bucket)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _aggregate(self, event: JsonObject, now: float) -> tuple[JsonObject, tuple[str, ...]]:
        """The event to write and its cache key: itself, or the combined event of similar ones."""
        similar_key = (*self._object_key(event), event["type"], event["reason"])
        record: _Similar | None = self._similar.get(similar_key)
        if record is None or now - record.last > SIMILAR_INTERVAL:
            record = _Similar()
        record.messages.add(event["message"])
        record.last = now
        self._similar.remember(similar_key, record)
        event_key = (*similar_key, event["involvedObject"].get("fieldPath", ""), event["message"])
        if len(record.messages) < SIMILAR_EVENTS:
            return event, event_key
        record.messages.pop()
        combined = dict(event, message="(combined from similar events): " + event["message"])
        return combined, similar_key

    async def _record(self, event: JsonObject) -> None:
        now = self.clock()
        if not self._allowed(event, now):
            return
        event, key = self._aggregate(event, now)
        stamp = _timestamp(now)
        seen: _Observation | None = self._observed.get(key)
        if seen is not None:
            patch = {"count": seen.count + 1, "lastTimestamp": stamp, "message": event["message"]}
            try:
                await self._write(lambda: self.sink.patch(seen.namespace, seen.name, patch))
                seen.count += 1
                self._observed.remember(key, seen)
                return
            except SinkError as exc:
                if exc.code != 404:
                    log.warning("event %s/%s not updated: %s", seen.namespace, seen.name, exc)
                    return
            # the event is gone (expired or deleted): write it anew, with its history
            count, first = seen.count + 1, seen.first_timestamp
        else:
            count, first = 1, stamp
        ref = event["involvedObject"]
        body = dict(event)
        body["metadata"] = {
            "name": f"{ref.get('name', 'event')}.{int(now * 1e9):x}",
            "namespace": event["metadata"]["namespace"],
        }
        body.update(count=count, firstTimestamp=first, lastTimestamp=stamp)
        try:
            await self._write(lambda: self.sink.create(body["metadata"]["namespace"], body))
        except SinkError as exc:
            if exc.code not in (403, 409):  # namespace terminating, or already written
                log.warning(
                    "event %s about %s/%s not written: %s",
                    event["reason"],
                    ref.get("kind"),
                    ref.get("name"),
                    exc,
                )
            return
        self._observed.remember(
            key, _Observation(body["metadata"]["name"], body["metadata"]["namespace"], count, first)
        )

    async def _write(self, send: Callable[[], Awaitable[JsonObject]]) -> None:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                await send()
                return
            except SinkError as exc:
                if exc.code != 0 or attempt == WRITE_ATTEMPTS - 1:
                    raise
            await asyncio.sleep(RETRY_DELAY)
