"""Events recorded as client-go records them: one object per repeated event (count and lastTimestamp), similar
events combined, a spam limit per source and object, and a new event when the old one is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from isthmus.local.events import NORMAL, WARNING, EventBroadcaster, SinkError, object_reference

JsonObject = dict[str, Any]
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "7"},
}


class FakeSink:
    """Keeps events like the API would; `lose` forgets them (as their expiry does)."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], JsonObject] = {}
        self.calls: list[str] = []

    async def create(self, namespace: str, event: JsonObject) -> JsonObject:
        self.calls.append("create")
        key = (namespace, event["metadata"]["name"])
        if key in self.events:
            raise SinkError(409, "already exists")
        self.events[key] = dict(event)
        return event

    async def patch(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        self.calls.append("patch")
        if (namespace, name) not in self.events:
            raise SinkError(404, "not found")
        self.events[(namespace, name)].update(patch)
        return self.events[(namespace, name)]

    def lose(self) -> None:
        self.events.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@pytest.fixture
async def recorded() -> Any:
    sink, clock = FakeSink(), Clock()
    broadcaster = EventBroadcaster(sink, clock)
    task = asyncio.create_task(broadcaster.run())
    yield sink, clock, broadcaster
    task.cancel()


async def test_an_event_names_its_object_and_source(recorded: Any) -> None:
    sink, _, broadcaster = recorded
    broadcaster.recorder("kubelet", "node-a").event(
        POD, WARNING, "BackOff", "Back-off restarting failed container"
    )
    await broadcaster.flush()
    [event] = sink.events.values()
    assert event["metadata"]["namespace"] == "shop"
    assert event["metadata"]["name"].startswith("web-1.")
    assert event["involvedObject"] == object_reference(POD)
    assert event["involvedObject"] == {
        "kind": "Pod",
        "apiVersion": "v1",
        "namespace": "shop",
        "name": "web-1",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (event["type"], event["reason"], event["count"]) == (WARNING, "BackOff", 1)
    assert event["source"] == {"component": "kubelet", "host": "node-a"}
    assert event["reportingComponent"] == "kubelet" and event["reportingInstance"] == "node-a"
    assert event["firstTimestamp"] == event["lastTimestamp"]
    with pytest.raises(ValueError):
        broadcaster.recorder("x").event(POD, "Error", "Bad", "no such type")


async def test_a_repeated_event_is_counted_on_one_object(recorded: Any) -> None:
    sink, clock, broadcaster = recorded
    recorder = broadcaster.recorder("default-scheduler")
    recorder.event(POD, WARNING, "FailedScheduling", "0/1 nodes are available")
    await broadcaster.flush()
    clock.now += 5
    recorder.event(POD, WARNING, "FailedScheduling", "0/1 nodes are available")
    recorder.event(POD, WARNING, "FailedScheduling", "0/1 nodes are available")
    await broadcaster.flush()
    [event] = sink.events.values()
    assert event["count"] == 3
    assert event["lastTimestamp"] > event["firstTimestamp"]
    assert sink.calls == ["create", "patch", "patch"]
    # the event expired: the next one is written anew, still counting
    sink.lose()
    recorder.event(POD, WARNING, "FailedScheduling", "0/1 nodes are available")
    await broadcaster.flush()
    [event] = sink.events.values()
    assert event["count"] == 4 and sink.calls[-2:] == ["patch", "create"]


async def test_similar_events_are_combined_after_ten(recorded: Any) -> None:
    sink, _, broadcaster = recorded
    recorder = broadcaster.recorder("replicaset-controller")
    for i in range(14):
        recorder.event(POD, NORMAL, "SuccessfulCreate", f"Created pod: web-{i}")
    await broadcaster.flush()
    messages = sorted(e["message"] for e in sink.events.values())
    assert len(messages) == 10
    combined = [
        e for e in sink.events.values() if e["message"].startswith("(combined from similar events): ")
    ]
    assert len(combined) == 1 and combined[0]["count"] == 5
    assert combined[0]["message"] == "(combined from similar events): Created pod: web-13"


async def test_each_source_writes_at_most_25_events_per_object_in_a_burst(recorded: Any) -> None:
    sink, clock, broadcaster = recorded
    recorder = broadcaster.recorder("kubelet")
    for i in range(30):
        recorder.event(POD, NORMAL, f"Reason{i}", "message")
    await broadcaster.flush()
    assert len(sink.events) == 25
    clock.now += 300  # one more token after five minutes
    recorder.event(POD, NORMAL, "Later", "message")
    recorder.event(POD, NORMAL, "TooSoon", "message")
    await broadcaster.flush()
    assert any(e["reason"] == "Later" for e in sink.events.values())
    assert not any(e["reason"] == "TooSoon" for e in sink.events.values())
    # another source has its own budget
    broadcaster.recorder("default-scheduler").event(POD, NORMAL, "Scheduled", "assigned")
    await broadcaster.flush()
    assert any(e["reason"] == "Scheduled" for e in sink.events.values())
