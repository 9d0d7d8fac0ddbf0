"""The push queue: registry and config events in, debounced and merged into one `PushRequest` out.

A request says what changed (endpoints of these hosts, these services, config, the mesh, these workloads),
never "everything" unless the mesh config changed. The queue waits for `ISTHMUS_DEBOUNCE_AFTER` seconds of
quiet, at most `ISTHMUS_DEBOUNCE_MAX` after the first event, then hands the merged request to the pusher.

Contract: `add` is called on the control plane's event loop (by the aggregate and the config store's
listeners); `run` is one task on that loop; the pusher is called with no other push in progress.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from isthmus import tunables
from isthmus.model import (
    ClusterAdded,
    ClusterRemoved,
    ClusterStateChanged,
    ConfigChanged,
    EndpointsChanged,
    Event,
    MeshChanged,
    ServiceChanged,
    WorkloadChanged,
)

log = logging.getLogger(__name__)


@dataclass
class PushRequest:
    endpoints: set[str] = field(default_factory=set)  # hosts whose endpoints changed
    services: set[str] = field(default_factory=set)  # hosts whose definition changed
    config: set[tuple[str, str, str]] = field(default_factory=set)  # (kind, namespace, name)
    workloads: set[tuple[str, str, str]] = field(default_factory=set)  # (cluster, namespace, name)
    mesh: bool = False
    first_event: float = 0.0  # monotonic time of the oldest event merged in
    events: int = 0

    @property
    def outbound(self) -> bool:
        """Whether views (the shared outbound resources) must be rebuilt."""
        return bool(self.services or self.config or self.mesh)

    def merge(self, other: PushRequest) -> None:
        self.endpoints |= other.endpoints
        self.services |= other.services
        self.config |= other.config
        self.workloads |= other.workloads
        self.mesh = self.mesh or other.mesh
        self.first_event = min(self.first_event or other.first_event, other.first_event or self.first_event)
        self.events += other.events

    def add(self, event: Event) -> None:
        if not self.first_event:
            self.first_event = time.monotonic()
        self.events += 1
        if isinstance(event, EndpointsChanged):
            self.endpoints.add(event.hostname)
        elif isinstance(event, ServiceChanged):
            self.services.add(event.hostname)
        elif isinstance(event, ConfigChanged):
            self.config.add((event.kind, event.namespace, event.name))
        elif isinstance(event, WorkloadChanged):
            self.workloads.add((event.cluster, event.namespace, event.name))
        elif isinstance(event, MeshChanged):
            self.mesh = True
        elif isinstance(event, (ClusterAdded, ClusterRemoved, ClusterStateChanged)):
            pass  # a cluster's services and endpoints arrive (or leave) as their own events


class PushQueue:
    def __init__(self, pusher: Callable[[PushRequest], None]) -> None:
        self.pusher = pusher
        self.pending = PushRequest()
        self._arrived = asyncio.Event()
        self.pushes = 0

    def add(self, event: Event) -> None:
        if isinstance(event, (ClusterAdded, ClusterRemoved, ClusterStateChanged)):
            return
        self.pending.add(event)
        self._arrived.set()

    async def run(self) -> None:
        after = tunables.DEBOUNCE_AFTER.get()
        longest = tunables.DEBOUNCE_MAX.get()
        while True:
            await self._arrived.wait()
            first = time.monotonic()
            while True:
                self._arrived.clear()
                remaining = first + longest - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), min(after, remaining))
                except TimeoutError:
                    break  # quiet for `after`
            request, self.pending = self.pending, PushRequest()
            self._arrived.clear()
            self.pushes += 1
            try:
                self.pusher(request)
            except Exception:  # one bad push must not stop the pushes after it
                log.exception("a push of %d events failed", request.events)
