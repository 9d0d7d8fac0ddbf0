"""The object store: one resourceVersion counter, SQLite persistence, watch history and watchers.

The semantics pinned here are those of etcd and kube-apiserver's watch cache: every write gets the next
cluster-wide revision, a watch resumes after a resourceVersion and replays only later events, a watch from a
resourceVersion the server no longer has history for is `410 Gone`, and a label-selector watch sees objects
entering and leaving the selector as ADDED and DELETED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import ADDED, DELETED, MODIFIED, Store, Watcher, WatchEvent

JsonObject = dict[str, Any]

CONFIGMAPS = ("", "configmaps")
SECRETS = ("", "secrets")
DEPLOYMENTS = ("apps", "deployments")


def obj(
    name: str, namespace: str = "default", labels: dict[str, str] | None = None, **extra: Any
) -> JsonObject:
    meta: JsonObject = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, **extra}


def everything(_: JsonObject) -> bool:
    return True


def label_is(key: str, value: str) -> Callable[[JsonObject], bool]:
    def matches(o: JsonObject) -> bool:
        return bool((o["metadata"].get("labels") or {}).get(key) == value)

    return matches


def drain(watcher: Watcher) -> list[WatchEvent | None]:
    """Everything queued for a watcher right now (None marks the end of the watch)."""
    events: list[WatchEvent | None] = []
    while not watcher.queue.empty():
        events.append(watcher.queue.get_nowait())
    return events


def summary(events: list[WatchEvent | None]) -> list[tuple[str, str, int] | None]:
    return [None if e is None else (e.type, e.obj["metadata"]["name"], e.rv) for e in events]


def status_error(action: Callable[[], object]) -> StatusError:
    with pytest.raises(StatusError) as excinfo:
        action()
    return excinfo.value


# -- resourceVersion -----------------------------------------------------------------------------------------


def test_resource_version_is_one_cluster_wide_counter_across_resources() -> None:
    """etcd's revision: every write of any resource gets the next value, which is the object's rv."""
    store = Store(None)
    a = store.put(CONFIGMAPS, obj("a"))
    s = store.put(SECRETS, obj("s"))
    d = store.put(DEPLOYMENTS, obj("d"))
    a2 = store.put(CONFIGMAPS, obj("a", data={"k": "v"}))

    assert [a.rv, s.rv, d.rv, a2.rv] == [1, 2, 3, 4]
    assert store.rv == 4
    assert a2.obj["metadata"]["resourceVersion"] == "4"  # a string, as Kubernetes serves it
    stored = store.get(CONFIGMAPS, "default", "a")
    assert stored is not None and stored.rv == 4 and stored.obj["data"] == {"k": "v"}


def test_delete_takes_the_next_resource_version_and_deleting_nothing_writes_nothing() -> None:
    """The DELETED event and the returned object carry the deletion's resourceVersion (as etcd's delete)."""
    store = Store(None)
    store.put(CONFIGMAPS, obj("a", data={"k": "v"}))
    watcher = store.watch(CONFIGMAPS, store.rv, everything)

    removed = store.remove(CONFIGMAPS, "default", "a")

    assert removed is not None and removed.rv == 2
    assert removed.obj["metadata"]["resourceVersion"] == "2"
    assert removed.obj["data"] == {"k": "v"}  # the last state
    assert store.get(CONFIGMAPS, "default", "a") is None
    assert summary(drain(watcher)) == [(DELETED, "a", 2)]
    assert store.remove(CONFIGMAPS, "default", "a") is None
    assert store.remove(SECRETS, "default", "never") is None
    assert store.rv == 2


def test_stored_objects_are_a_snapshot_of_the_write() -> None:
    """What a get returns is what was written: callers copy before changing (the store's contract)."""
    store = Store(None)
    first = store.put(CONFIGMAPS, obj("a", data={"k": "1"}))
    store.put(CONFIGMAPS, obj("a", data={"k": "2"}))

    assert first.obj["data"] == {"k": "1"} and first.obj["metadata"]["resourceVersion"] == "1"
    current = store.get(CONFIGMAPS, "default", "a")
    assert current is not None and current.obj["data"] == {"k": "2"}


# -- reads ---------------------------------------------------------------------------------------------------


def test_objects_iterate_in_key_order_namespace_then_name() -> None:
    store = Store(None)
    for namespace, name in [("b", "x"), ("a", "z"), ("a", "b"), ("b", "a"), ("a", "m")]:
        store.put(CONFIGMAPS, obj(name, namespace))
    store.put(SECRETS, obj("other", "a"))

    def keys(namespace: str | None) -> list[tuple[str, str]]:
        return [
            (s.obj["metadata"]["namespace"], s.obj["metadata"]["name"])
            for s in store.iter_objects(CONFIGMAPS, namespace)
        ]

    assert keys(None) == [("a", "b"), ("a", "m"), ("a", "z"), ("b", "a"), ("b", "x")]
    assert keys("b") == [("b", "a"), ("b", "x")]
    assert keys("c") == []
    assert store.count(CONFIGMAPS) == 5
    assert list(store.iter_objects(("", "pods"))) == []
    store.put(CONFIGMAPS, obj("c", "a"))  # a new key after a sorted read
    assert keys("a") == [("a", "b"), ("a", "c"), ("a", "m"), ("a", "z")]


def test_cluster_scoped_objects_are_keyed_without_namespace() -> None:
    store = Store(None)
    store.put(("", "namespaces"), obj("kube-system", namespace=""))

    stored = store.get(("", "namespaces"), "", "kube-system")
    assert stored is not None and "namespace" not in stored.obj["metadata"]
    assert set(store.resources()) == {("", "namespaces")}


def test_resources_lists_only_resources_with_objects() -> None:
    store = Store(None)
    store.put(CONFIGMAPS, obj("a"))
    store.put(SECRETS, obj("s"))
    store.remove(SECRETS, "default", "s")
    store.watch(DEPLOYMENTS, store.rv, everything)  # watching creates no objects

    assert store.resources() == [CONFIGMAPS]


# -- watch ---------------------------------------------------------------------------------------------------


def test_watch_resumes_after_the_given_resource_version() -> None:
    """A watch from resourceVersion N replays exactly the events after N, then live ones, in order."""
    store = Store(None)
    store.put(CONFIGMAPS, obj("a"))  # 1
    store.put(CONFIGMAPS, obj("b"))  # 2
    store.put(SECRETS, obj("s"))  # 3: another resource
    store.put(CONFIGMAPS, obj("a", data={"k": "v"}))  # 4

    watcher = store.watch(CONFIGMAPS, 2, everything)
    assert summary(drain(watcher)) == [(MODIFIED, "a", 4)]

    store.remove(CONFIGMAPS, "default", "b")  # 5
    store.put(SECRETS, obj("s", data={}))  # 6: not this watch's resource
    store.put(CONFIGMAPS, obj("c"))  # 7
    assert summary(drain(watcher)) == [(DELETED, "b", 5), (ADDED, "c", 7)]


def test_a_watch_from_before_the_first_event_of_a_resource_gets_that_event() -> None:
    """An informer lists an empty resource at the cluster's resourceVersion R, then the first object of that
    resource is created (R+1), then the informer watches from R. Nothing was missed, so kube-apiserver's watch
    cache (which starts at the revision it was initialized at, for every resource) replays the ADDED event; a
    410 here would only force a needless relist."""
    store = Store(None)
    store.put(SECRETS, obj("s"))  # 1: the cluster has history
    listed_at = store.rv  # the list of configmaps, empty, at resourceVersion 1

    store.put(CONFIGMAPS, obj("a"))  # 2: the first configmap ever
    watcher = store.watch(CONFIGMAPS, listed_at, everything)

    assert summary(drain(watcher)) == [(ADDED, "a", 2)]


def test_a_watch_of_a_resource_without_any_write_yet_is_not_gone() -> None:
    """Listing a resource that has no objects, then watching it from the list's resourceVersion after other
    resources were written, is a valid watch: no event of this resource happened in between."""
    store = Store(None)
    listed_at = store.rv  # an empty list of widgets at resourceVersion 0
    store.put(CONFIGMAPS, obj("a"))  # 1: other resources change meanwhile
    store.put(SECRETS, obj("s"))  # 2

    watcher = store.watch(("example.com", "widgets"), listed_at, everything)
    store.put(("example.com", "widgets"), obj("w"))  # 3

    assert summary(drain(watcher)) == [(ADDED, "w", 3)]


def test_watch_events_carry_the_state_before_the_change() -> None:
    store = Store(None)
    watcher = store.watch(CONFIGMAPS, 0, everything)
    store.put(CONFIGMAPS, obj("a", data={"k": "1"}))
    store.put(CONFIGMAPS, obj("a", data={"k": "2"}))

    added, modified = drain(watcher)
    assert added is not None and added.old is None
    assert modified is not None and modified.old is not None
    assert modified.old["data"] == {"k": "1"} and modified.obj["data"] == {"k": "2"}


def test_watch_from_before_the_kept_history_is_410_gone() -> None:
    """kube-apiserver's watch cache: `too old resource version` (410, reason Expired) once history is gone."""
    store = Store(None, history_size=2)
    for i in range(4):
        store.put(CONFIGMAPS, obj(f"o{i}"))  # rvs 1..4; history keeps 3 and 4

    error = status_error(lambda: store.watch(CONFIGMAPS, 1, everything))
    assert (error.code, error.reason) == (410, "Expired")
    assert "too old resource version: 1" in error.message

    watcher = store.watch(CONFIGMAPS, 2, everything)  # every event after 2 is still known
    assert summary(drain(watcher)) == [(ADDED, "o2", 3), (ADDED, "o3", 4)]


def test_history_is_kept_per_resource() -> None:
    """Writes to other resources do not push a resource's own events out of its history."""
    store = Store(None, history_size=2)
    store.put(CONFIGMAPS, obj("a"))  # 1
    store.put(CONFIGMAPS, obj("a", data={}))  # 2
    for i in range(5):
        store.put(SECRETS, obj(f"s{i}"))  # 3..7

    watcher = store.watch(CONFIGMAPS, 1, everything)
    assert summary(drain(watcher)) == [(MODIFIED, "a", 2)]
    assert status_error(lambda: store.watch(SECRETS, 4, everything)).code == 410
    assert summary(drain(store.watch(SECRETS, 5, everything))) == [(ADDED, "s3", 6), (ADDED, "s4", 7)]


def test_watch_with_a_selector_sees_objects_enter_and_leave_it() -> None:
    """The watch cache's selector transitions: entering the selector is ADDED, leaving it is DELETED, changes
    outside it are not sent at all (kube-apiserver `cacheWatcher.convertToWatchEvent`)."""
    store = Store(None)
    watcher = store.watch(CONFIGMAPS, 0, label_is("app", "web"))

    store.put(CONFIGMAPS, obj("a", labels={"app": "db"}))  # 1: outside
    store.put(CONFIGMAPS, obj("a", labels={"app": "web"}))  # 2: enters
    store.put(CONFIGMAPS, obj("a", labels={"app": "web"}, data={"k": "v"}))  # 3: changes inside
    store.put(CONFIGMAPS, obj("a", labels={"app": "db"}, data={"k": "v"}))  # 4: leaves
    store.put(CONFIGMAPS, obj("a", labels={"app": "db"}, data={"k": "w"}))  # 5: changes outside
    store.remove(CONFIGMAPS, "default", "a")  # 6: deleted while outside
    store.put(CONFIGMAPS, obj("b", labels={"app": "web"}))  # 7: created inside
    store.remove(CONFIGMAPS, "default", "b")  # 8: deleted inside

    assert summary(drain(watcher)) == [
        (ADDED, "a", 2),
        (MODIFIED, "a", 3),
        (DELETED, "a", 4),
        (ADDED, "b", 7),
        (DELETED, "b", 8),
    ]


def test_an_object_leaving_the_selector_is_deleted_with_its_last_matching_state() -> None:
    """kube-apiserver sends the DELETED event of an object leaving a selector with the *previous* object
    content (the state that matched) stamped with the event's resourceVersion, so a client keyed on the
    selector sees the labels it selected on (`cacheWatcher.convertToWatchEvent`: "return a delete event with
    the previous object content, but with the event's resource version")."""
    store = Store(None)
    store.put(CONFIGMAPS, obj("a", labels={"app": "web"}))
    watcher = store.watch(CONFIGMAPS, store.rv, label_is("app", "web"))

    store.put(CONFIGMAPS, obj("a", labels={"app": "db"}))

    (event,) = drain(watcher)
    assert event is not None and event.type == DELETED and event.rv == 2
    assert event.obj["metadata"]["labels"] == {"app": "web"}
    assert event.obj["metadata"]["resourceVersion"] == "2"
    assert b'"app":"web"' in event.raw and b'"resourceVersion":"2"' in event.raw


def test_replayed_history_is_filtered_by_the_selector_too() -> None:
    store = Store(None)
    store.put(CONFIGMAPS, obj("a", labels={"app": "web"}))  # 1
    store.put(CONFIGMAPS, obj("b", labels={"app": "db"}))  # 2
    store.put(CONFIGMAPS, obj("b", labels={"app": "web"}))  # 3

    watcher = store.watch(CONFIGMAPS, 1, label_is("app", "web"))

    assert summary(drain(watcher)) == [(ADDED, "b", 3)]


def test_a_watcher_that_falls_too_far_behind_is_ended() -> None:
    """A watcher whose queue is full gets the end of its watch (the client relists), not unbounded memory."""
    store = Store(None, watcher_capacity=2)
    slow = store.watch(CONFIGMAPS, 0, everything)
    fast = store.watch(CONFIGMAPS, 0, everything)

    store.put(CONFIGMAPS, obj("a"))
    store.put(CONFIGMAPS, obj("b"))
    assert summary(drain(fast)) == [(ADDED, "a", 1), (ADDED, "b", 2)]
    store.put(CONFIGMAPS, obj("c"))  # slow's queue is full
    store.put(CONFIGMAPS, obj("d"))

    assert slow.overflowed
    assert summary(drain(slow)) == [(ADDED, "a", 1), (ADDED, "b", 2), None]
    assert not fast.overflowed
    assert summary(drain(fast)) == [(ADDED, "c", 3), (ADDED, "d", 4)]


def test_stopped_watches_get_nothing_more() -> None:
    store = Store(None)
    watcher = store.watch(CONFIGMAPS, 0, everything)
    store.stop_watch(CONFIGMAPS, watcher)
    store.put(CONFIGMAPS, obj("a"))

    assert drain(watcher) == []


def test_closing_the_watchers_of_a_resource_ends_their_watches() -> None:
    """When a CRD goes away its watches end (the stream closes), and later events are not delivered."""
    store = Store(None)
    crs = ("example.com", "widgets")
    watcher = store.watch(crs, 0, everything)
    other = store.watch(CONFIGMAPS, 0, everything)

    store.close_watchers(crs)
    store.put(crs, obj("w"))

    assert drain(watcher) == [None]
    store.put(CONFIGMAPS, obj("a"))
    assert summary(drain(other)) == [(ADDED, "a", 2)]


# -- persistence ---------------------------------------------------------------------------------------------


async def test_objects_and_the_counter_survive_a_reopen(tmp_path: Path) -> None:
    """Like etcd: what was written is there after a restart, and the revision continues, never reused."""
    db = tmp_path / "state.db"
    store = Store(db)
    store.put(CONFIGMAPS, obj("a", data={"k": "v"}))  # 1
    store.put(SECRETS, obj("s"))  # 2
    store.put(CONFIGMAPS, obj("gone"))  # 3
    store.remove(CONFIGMAPS, "default", "gone")  # 4
    store.put(("", "namespaces"), obj("team", namespace=""))  # 5
    await store.persisted()
    store.close()

    reopened = Store(db)
    try:
        assert reopened.rv == 5
        a = reopened.get(CONFIGMAPS, "default", "a")
        assert a is not None and a.rv == 1 and a.obj["data"] == {"k": "v"}
        assert a.obj["metadata"]["resourceVersion"] == "1"
        assert reopened.get(CONFIGMAPS, "default", "gone") is None
        assert reopened.get(("", "namespaces"), "", "team") is not None
        assert [s.obj["metadata"]["name"] for s in reopened.iter_objects(CONFIGMAPS)] == ["a"]
        assert sorted(reopened.resources()) == sorted([CONFIGMAPS, SECRETS, ("", "namespaces")])
        assert reopened.put(CONFIGMAPS, obj("b")).rv == 6  # the counter continues
    finally:
        reopened.close()


async def test_watch_history_does_not_survive_a_reopen(tmp_path: Path) -> None:
    """After a restart kube-apiserver's watch cache starts at the current revision: a watch from an older
    resourceVersion is 410 Gone (the client relists); a watch from the current one works."""
    db = tmp_path / "state.db"
    store = Store(db)
    store.put(CONFIGMAPS, obj("a"))
    store.put(CONFIGMAPS, obj("b"))
    await store.persisted()
    store.close()

    reopened = Store(db)
    try:
        for since in (0, 1):
            with pytest.raises(StatusError) as excinfo:
                reopened.watch(CONFIGMAPS, since, everything)
            assert (excinfo.value.code, excinfo.value.reason) == (410, "Expired")
        # Every resource's cache starts at the current revision, also one without objects.
        assert status_error(lambda: reopened.watch(("", "pods"), 1, everything)).code == 410
        watcher = reopened.watch(CONFIGMAPS, 2, everything)
        assert drain(watcher) == []
        reopened.put(CONFIGMAPS, obj("c"))
        assert summary(drain(watcher)) == [(ADDED, "c", 3)]
    finally:
        reopened.close()


async def test_a_write_is_durable_once_persisted_returns(tmp_path: Path) -> None:
    """`await persisted()` means committed: another connection to the database sees the write."""
    db = tmp_path / "state.db"
    store = Store(db)
    try:
        store.put(CONFIGMAPS, obj("a"))
        store.put(CONFIGMAPS, obj("b"))
        await store.persisted()

        reader = Store(db)
        try:
            assert reader.rv == 2
            assert [s.obj["metadata"]["name"] for s in reader.iter_objects(CONFIGMAPS)] == ["a", "b"]
        finally:
            reader.close()
    finally:
        store.close()


async def test_writes_pending_at_close_are_committed(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store(db)
    store.put(CONFIGMAPS, obj("a"))
    store.close()  # no await: close commits what is pending
    await asyncio.sleep(0)

    reopened = Store(db)
    try:
        assert reopened.get(CONFIGMAPS, "default", "a") is not None
        assert reopened.rv == 1
    finally:
        reopened.close()


def test_an_in_memory_store_needs_no_database_nor_event_loop() -> None:
    """`Store(None)`: writes are synchronous and need nothing to be committed to."""
    store = Store(None)
    store.put(CONFIGMAPS, obj("a"))
    store.remove(CONFIGMAPS, "default", "a")
    store.close()
    assert store.rv == 2


async def test_persisted_returns_at_once_without_a_database() -> None:
    store = Store(None)
    store.put(CONFIGMAPS, obj("a"))
    await asyncio.wait_for(store.persisted(), timeout=1)
