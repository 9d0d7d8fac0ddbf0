"""One proxy's ADS stream: what it subscribed to, what it was sent, what it acknowledged or rejected, and the
single writer that pushes to it, in warming order.

Protocol rules kept here (state-of-the-world and delta):
- "sent" and "acknowledged" are kept apart per type; a NACK records the rejected versions, which are never
  sent again (a later, different version is); a request with a stale nonce is ignored;
- a changed cluster's endpoints are sent right after it (Envoy re-warms it and waits for them);
- pushes are coalesced per connection: while a response is being written, further changes merge into one;
- in delta, removed clusters go out last, after the listeners and routes that stopped using them.

Contract: everything runs on the control plane's event loop. `handle` (the reader) and `enqueue` (the
pusher) only change state and wake the writer; only the writer builds and writes responses. The mappings
handed out by the `Source` are never mutated, so connections may hold them as what they were sent.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from envoy.service.discovery.v3 import discovery_pb2

from isthmus.xds import metrics, wire
from isthmus.xds.resources import PUSH_ORDER, Resource, TypeUrl, content_version
from isthmus.xds.view import Proxy, View

log = logging.getLogger(__name__)

_NONCES = itertools.count(1)
_RUN = secrets.token_hex(3)
WILDCARD = "*"


WriteFn = Callable[[bytes], Awaitable[None]]
_PUSHES = {t.short: metrics.PUSHES.labels(t.short) for t in TypeUrl}


def next_nonce() -> str:
    return f"{_RUN}-{next(_NONCES)}"


class Snapshot(dict[str, Resource]):
    """An immutable mapping that knows what it was derived from, so a connection sent `parent` plus the
    `changed` names holds this one without a copy."""

    __slots__ = ("changed", "parent")

    def __init__(
        self,
        data: Mapping[str, Resource],
        parent: Mapping[str, Resource] | None = None,
        changed: Iterable[str] = (),
    ) -> None:
        super().__init__(data)
        self.parent = parent
        self.changed = frozenset(changed)


class Layered(Mapping[str, Resource]):
    """A view's shared resources with a proxy's own on top."""

    __slots__ = ("base", "top")

    def __init__(self, base: Mapping[str, Resource], top: Mapping[str, Resource]) -> None:
        self.base = base
        self.top = top

    def __getitem__(self, name: str) -> Resource:
        found = self.top.get(name)
        return found if found is not None else self.base[name]

    def __iter__(self) -> Iterator[str]:
        yield from self.top
        yield from (n for n in self.base if n not in self.top)

    def __len__(self) -> int:
        return len(self.base) + sum(1 for n in self.top if n not in self.base)


EMPTY: Mapping[str, Resource] = Snapshot({})


class Source(Protocol):
    """What a connection needs from the server: the resources it should have, and its turn for an initial
    sync."""

    def desired(self, connection: Connection, type_url: TypeUrl) -> Mapping[str, Resource]: ...

    def subscribed(self, connection: Connection, type_url: TypeUrl, names: frozenset[str]) -> frozenset[str]:
        """Note a changed subscription; returns the set to keep, equal to `names` (possibly one shared by many
        connections: a thousand proxies subscribed to the same thousand clusters hold one set)."""
        ...

    def initial_sync_slot(self) -> asyncio.Semaphore: ...

    def synced(self, connection: Connection) -> None: ...


class InFlight(NamedTuple):
    """A response awaiting its ACK: what the proxy has once it accepts it, the resources in it, and when the
    oldest change it carries entered the control plane (0: it carries none, e.g. an initial sync)."""

    now_has: Mapping[str, Resource]
    entries: list[Resource]
    since: float = 0.0


NOT_IN_FLIGHT = InFlight(EMPTY, [])


@dataclass
class TypeState:
    type_url: TypeUrl
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    sent: Mapping[str, Resource] = field(default_factory=lambda: EMPTY)
    sent_nonce: str = ""
    acked_nonce: str = ""
    acked: Mapping[str, Resource] = field(default_factory=lambda: EMPTY)
    version_info: str = ""  # state of the world: what the last response said
    acked_version: str = ""
    inflight: dict[str, InFlight] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    nacks: int = 0
    last_error: str = ""
    responses: int = 0
    subscribed_once: bool = False

    @property
    def status(self) -> str:
        """SYNCED (the last response was acknowledged), STALE (it was not, yet), NOT SENT."""
        if not self.sent_nonce:
            return "NOT SENT"
        return "SYNCED" if self.acked_nonce == self.sent_nonce else "STALE"


@dataclass
class Pending:
    """What the writer should look at next: per type, None (everything) or only these names."""

    types: dict[TypeUrl, set[str] | None] = field(default_factory=dict)
    force: dict[TypeUrl, set[str]] = field(default_factory=dict)
    respond: set[TypeUrl] = field(default_factory=set)
    private: bool = False
    since: float = 0.0

    def want(self, type_url: TypeUrl, names: Iterable[str] | None) -> None:
        if names is None:
            self.types[type_url] = None
            return
        current = self.types.get(type_url, set())
        if current is not None:
            self.types[type_url] = current | set(names)
        elif type_url not in self.types:
            self.types[type_url] = set(names)

    def empty(self) -> bool:
        return not (self.types or self.force or self.respond or self.private)


class Connection:
    def __init__(self, source: Source, proxy: Proxy, view: View, delta: bool, peer: str) -> None:
        self.source = source
        self.proxy = proxy
        self.view = view
        self.delta = delta
        self.peer = peer
        self.id = f"{proxy.node.id}-{next(_NONCES)}"
        self.connected = time.time()
        self.states: dict[TypeUrl, TypeState] = {}
        self.pending = Pending()
        self.wake = asyncio.Event()
        self.private: dict[TypeUrl, Mapping[str, Resource]] = {}
        self.synced_once = False
        self.eds_group: object = None
        self.prepared: collections.deque[tuple[bytes, str]] = collections.deque()
        self.busy = False
        self.write: WriteFn | None = None  # the stream's writer, set by the server
        self.writing = asyncio.Lock()  # one write at a time on a stream

    # -- the reader -------------------------------------------------------------------------------------------

    def enqueue(
        self,
        type_url: TypeUrl,
        names: Iterable[str] | None = None,
        *,
        force: Iterable[str] = (),
        private: bool = False,
        since: float = 0.0,
    ) -> None:
        self.pending.want(type_url, names)
        forced = set(force)
        if forced:
            self.pending.force.setdefault(type_url, set()).update(forced)
        self.pending.private = self.pending.private or private
        if since and (not self.pending.since or since < self.pending.since):
            self.pending.since = since
        self.wake.set()

    def _state(self, type_url: str) -> TypeState | None:
        try:
            known = TypeUrl(type_url)
        except ValueError:
            log.warning("%s: asked for an unknown type %s", self.id, type_url)
            return None
        state = self.states.get(known)
        if state is None:
            state = self.states[known] = TypeState(known)
        return state

    def handle_sotw(self, request: discovery_pb2.DiscoveryRequest) -> None:
        state = self._state(request.type_url)
        if state is None:
            return
        nonce = request.response_nonce
        if nonce and nonce != state.sent_nonce:
            return  # a stale nonce: the proxy has not seen our latest response yet
        if nonce:
            if request.HasField("error_detail"):
                self._rejected(
                    state, request.error_detail.message, state.inflight.pop(nonce, NOT_IN_FLIGHT).entries
                )
            else:
                flight = state.inflight.pop(nonce, None)
                state.acked_nonce = nonce
                state.acked = flight.now_has if flight is not None else state.sent
                state.acked_version = request.version_info
                if flight is not None and flight.since:
                    metrics.CONVERGE.observe(time.monotonic() - flight.since)
        names = frozenset(request.resource_names)
        first = not state.subscribed_once
        state.subscribed_once = True
        wildcard = state.type_url.wildcard and (not names or WILDCARD in names)
        added = names - state.names
        if first or names != state.names or wildcard != state.wildcard:
            state.wildcard = wildcard
            state.names = self.source.subscribed(self, state.type_url, names)
        if first:
            self.pending.want(state.type_url, None)
            self.pending.respond.add(state.type_url)
            self.wake.set()
        elif added and not wildcard:
            self.pending.want(state.type_url, added)
            self.pending.respond.add(state.type_url)
            self.wake.set()

    def handle_delta(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        state = self._state(request.type_url)
        if state is None:
            return
        nonce = request.response_nonce
        if nonce and nonce in state.inflight:
            flight = state.inflight.pop(nonce)
            if request.HasField("error_detail"):
                self._rejected(state, request.error_detail.message, flight.entries)
            else:
                state.acked_nonce = nonce  # one stream: ACKs come in the order of the responses
                state.acked = flight.now_has
                if flight.since:
                    metrics.CONVERGE.observe(time.monotonic() - flight.since)
        first = not state.subscribed_once
        if not first and not request.resource_names_subscribe and not request.resource_names_unsubscribe:
            return  # an ACK or NACK only: the common case, kept cheap
        state.subscribed_once = True
        subscribe = set(request.resource_names_subscribe)
        unsubscribe = set(request.resource_names_unsubscribe)
        if first and state.type_url.wildcard and not subscribe:
            state.wildcard = True  # the legacy wildcard: an empty first subscription means "all"
        if WILDCARD in subscribe:
            state.wildcard = True
            subscribe.discard(WILDCARD)
        if WILDCARD in unsubscribe:
            state.wildcard = False
            unsubscribe.discard(WILDCARD)
        names = (state.names | subscribe) - unsubscribe
        if first and request.initial_resource_versions:
            state.sent = Snapshot(
                {
                    n: Resource.placeholder(state.type_url, n, v)
                    for n, v in request.initial_resource_versions.items()
                }
            )
        changed = names != state.names
        if changed:
            state.names = self.source.subscribed(self, state.type_url, frozenset(names))
            if unsubscribe:
                state.sent = Snapshot(
                    {n: r for n, r in state.sent.items() if n not in unsubscribe or state.wildcard}
                )
        if first:
            self.pending.want(state.type_url, None)
            self.pending.respond.add(state.type_url)
            self.wake.set()
        elif subscribe:
            self.pending.want(state.type_url, subscribe)
            self.pending.respond.add(state.type_url)
            self.wake.set()

    def _rejected(self, state: TypeState, message: str, entries: list[Resource]) -> None:
        state.nacks += 1
        state.last_error = message
        for resource in entries:
            state.rejected[resource.name] = resource.version
        metrics.REJECTS.labels(state.type_url.short).inc()
        log.warning(
            "%s (%s) rejected %s %s: %s",
            self.proxy.node.id,
            self.peer,
            state.type_url.short,
            ", ".join(sorted(r.name for r in entries)[:5]) or "a response",
            message,
        )

    # -- the writer -------------------------------------------------------------------------------------------

    def ready_for(self, type_url: TypeUrl, parent: Mapping[str, Resource] | None) -> bool:
        """Whether a response prepared for many connections alike can go to this one as is: nothing else is
        pending or being written, and it has exactly `parent` of this type, with nothing rejected."""
        state = self.states.get(type_url)
        return (
            state is not None
            and not self.busy
            and self.synced_once
            and self.pending.empty()
            and state.sent is parent
            and not state.rejected
        )

    def send_prepared(
        self,
        type_url: TypeUrl,
        payload: bytes,
        nonce: str,
        now_has: Mapping[str, Resource],
        entries: list[Resource],
        version_info: str = "",
        since: float = 0.0,
    ) -> None:
        """Queue a response built once for many connections (see `ready_for`); its bookkeeping is done here."""
        state = self.states[type_url]
        state.sent = now_has
        state.sent_nonce = nonce
        state.inflight[nonce] = InFlight(now_has, entries, since)
        if not self.delta:
            state.version_info = version_info
            for old in [n for n in state.inflight if n != nonce]:
                del state.inflight[old]
        state.responses += 1
        self.prepared.append((payload, type_url.short))

    async def write_prepared(self) -> None:
        """Write the prepared responses (in the order they were prepared; the writer may have done it)."""
        assert self.write is not None
        async with self.writing:
            await self._drain(self.write)

    async def _drain(self, write: WriteFn) -> None:
        while self.prepared:
            payload, short = self.prepared.popleft()
            await write(payload)
            _PUSHES[short].inc()

    async def write_loop(self, write: WriteFn) -> None:
        """The connection's writer: prepared responses first, then what is pending, one write at a time."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            async with self.writing:
                await self._drain(write)
                if self.pending.empty():
                    continue
                pending, self.pending = self.pending, Pending()
                self.busy = True
                try:
                    if not self.synced_once:
                        async with self.source.initial_sync_slot():
                            await self._push(pending, write)
                        self.synced_once = any(s.sent_nonce for s in self.states.values())
                        if self.synced_once:
                            self.source.synced(self)
                    else:
                        await self._push(pending, write)
                finally:
                    self.busy = False

    async def _push(self, pending: Pending, write: WriteFn) -> None:
        deferred: tuple[TypeState, Mapping[str, Resource], list[str]] | None = None
        for type_url in PUSH_ORDER:
            state = self.states.get(type_url)
            force = pending.force.get(type_url, set())
            if state is None or not (type_url in pending.types or force or type_url in pending.respond):
                continue
            if not state.wildcard and not state.names:
                if type_url in pending.respond and not self.delta:
                    await self._send(state, EMPTY, [], [], write, pending.since)
                continue
            desired = self.source.desired(self, type_url)
            hint = pending.types.get(type_url, set()) if type_url in pending.types else set()
            changed, removed = _diff(state, desired, hint, force)
            if type_url is TypeUrl.CLUSTER:
                eds = self.states.get(TypeUrl.ENDPOINT)
                refresh = {r.name for r in changed} & eds.names if eds is not None else set()
                if refresh:
                    pending.force.setdefault(TypeUrl.ENDPOINT, set()).update(refresh)
                if self.delta and removed:
                    deferred = (state, desired, removed)
                    removed = []
            complete = hint is None and not (type_url is TypeUrl.CLUSTER and deferred is not None)
            if changed or removed or type_url in pending.respond:
                await self._send(state, desired, changed, removed, write, pending.since, complete)
            elif hint is None:
                state.sent = desired
        if deferred is not None:
            state, desired, removed = deferred
            await self._send(state, desired, [], removed, write, pending.since, True)

    async def _send(
        self,
        state: TypeState,
        desired: Mapping[str, Resource],
        changed: list[Resource],
        removed: list[str],
        write: WriteFn,
        since: float,
        complete: bool = False,
    ) -> None:
        nonce = next_nonce()
        for resource in changed:
            state.rejected.pop(resource.name, None)
        if self.delta:
            payload = wire.delta_response(
                "", state.type_url, nonce, [r.delta_entry for r in changed], removed
            )
            entries = changed
        else:
            entries = self._full_state(state, desired) if state.type_url.wildcard else changed
            version = content_version(b"\0".join(f"{r.name}\0{r.version}".encode() for r in entries))
            state.version_info = version
            payload = wire.sotw_response(version, state.type_url, nonce, [r.sotw_entry for r in entries])
        state.sent = _after(state.sent, desired, changed, removed, complete)
        state.sent_nonce = nonce
        state.inflight[nonce] = InFlight(state.sent, entries, since)
        if not self.delta:
            for old in [n for n in state.inflight if n != nonce]:
                del state.inflight[old]  # state of the world: only the latest nonce can be answered
        state.responses += 1
        await write(payload)
        _PUSHES[state.type_url.short].inc()

    def _full_state(self, state: TypeState, desired: Mapping[str, Resource]) -> list[Resource]:
        """Every resource, with a rejected version replaced by the one the proxy accepted (or left out)."""
        out = []
        for name, resource in desired.items():
            if state.rejected.get(name) == resource.version:
                accepted = state.acked.get(name)
                if accepted is not None and accepted.version != resource.version:
                    out.append(accepted)
                continue
            out.append(resource)
        return out


def _diff(
    state: TypeState, desired: Mapping[str, Resource], hint: set[str] | None, force: set[str]
) -> tuple[list[Resource], list[str]]:
    """What to send: resources whose version differs from what the proxy was sent (or forced), and names it
    has that are gone. `hint` limits the comparison to those names (None: all)."""
    sent = state.sent
    candidates: Iterable[str] = desired.keys() if hint is None else (hint | force)
    changed: list[Resource] = []
    for name in candidates:
        resource = desired.get(name)
        if resource is None:
            continue
        if name not in force:
            old = sent.get(name)
            if old is resource or (old is not None and old.version == resource.version):
                continue
        if not state.wildcard and name not in state.names:
            continue
        changed.append(resource)
    if hint is None:
        removed = [n for n in sent if n not in desired]
    else:
        removed = [n for n in hint if n in sent and n not in desired]
    return changed, removed


def _after(
    sent: Mapping[str, Resource],
    desired: Mapping[str, Resource],
    changed: list[Resource],
    removed: list[str],
    complete: bool,
) -> Mapping[str, Resource]:
    """What the proxy has after a response: `desired` itself when it is all sent (shared, no copy)."""
    if complete:
        return desired
    if (
        isinstance(desired, Snapshot)
        and desired.parent is sent
        and {r.name for r in changed} >= desired.changed
    ):
        return desired
    updated = dict(sent)
    for resource in changed:
        updated[resource.name] = resource
    for name in removed:
        updated.pop(name, None)
    return Snapshot(updated)
