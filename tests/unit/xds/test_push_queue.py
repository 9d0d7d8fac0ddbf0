"""The push queue: a burst is merged into one push, and a failing push does not stop the ones after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from isthmus.model import ClusterId, EndpointsChanged
from isthmus.xds.push import PushQueue, PushRequest


@pytest.fixture(autouse=True)
def debounce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_DEBOUNCE_AFTER", "0.2")
    monkeypatch.setenv("ISTHMUS_DEBOUNCE_MAX", "1.0")


class Recorder:
    """The pusher: records each request and when it came; the first one may fail."""

    def __init__(self, fail_first: bool = False) -> None:
        self.pushes: list[tuple[float, PushRequest]] = []
        self.fail_first = fail_first
        self.changed = asyncio.Condition()
        self.queue = PushQueue(self.push)

    def push(self, request: PushRequest) -> None:
        self.pushes.append((time.monotonic(), request))
        asyncio.get_running_loop().create_task(self._notify())
        if self.fail_first and len(self.pushes) == 1:
            raise RuntimeError("boom")

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def count(self, n: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: len(self.pushes) >= n), 5)


@pytest.fixture
async def recorder(request: pytest.FixtureRequest) -> AsyncIterator[Recorder]:
    recorder = Recorder(fail_first=getattr(request, "param", False))
    task = asyncio.create_task(recorder.queue.run())
    yield recorder
    task.cancel()


def change(host: str) -> EndpointsChanged:
    return EndpointsChanged(host, ClusterId("c1"))


async def test_a_burst_after_a_push_is_merged(recorder: Recorder) -> None:
    recorder.queue.add(change("first"))
    await recorder.count(1)
    for i in range(10):  # one every 10 ms, within debounce_after of each other
        recorder.queue.add(change(f"h{i}"))
        await asyncio.sleep(0.01)
    await recorder.count(2)
    await asyncio.sleep(0.3)
    assert len(recorder.pushes) == 2
    assert recorder.pushes[1][1].endpoints == {f"h{i}" for i in range(10)}


@pytest.mark.parametrize("recorder", [True], indirect=True)
async def test_a_failing_push_does_not_stop_the_next(recorder: Recorder) -> None:
    recorder.queue.add(change("a"))
    await recorder.count(1)
    recorder.queue.add(change("b"))
    await recorder.count(2)
    assert recorder.pushes[1][1].endpoints == {"b"}
