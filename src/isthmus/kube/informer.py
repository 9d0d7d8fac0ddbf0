"""Informers: list, then watch from the list's resourceVersion, resume a broken watch from the last version
seen, relist on 410 Gone, retry failures with exponential backoff and jitter. What is kept is the projection of
each object (the mesh's own slim type), never the client's objects.

Contract: one informer task per (cluster, resource); `on_change(key, old, new)` is called on the informer's
event loop for every change of a projection (old None: added; new None: removed), after a relist too (objects
gone meanwhile are reported removed). A projection that compares equal to the previous one is not reported.
While the API server cannot be reached the last-known objects stay, `error` says why and `failing_since` when
it started; they clear once a list or watch works again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.core import resource as res
from lightkube.types import on_error_raise

from isthmus import tunables

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, str]
JsonObject = dict[str, Any]


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def describe(exc: BaseException) -> str:
    """A failure as a user can act on it."""
    if isinstance(exc, ApiError):
        code = exc.status.code
        message = exc.status.message or str(exc)
        if code == 401:
            return f"the API server refused the credentials (401 Unauthorized): {message}"
        if code == 403:
            return f"the credentials lack permission (403 Forbidden): {message}"
        return f"the API server answered {code}: {message}"
    chain = _chain(exc)
    if isinstance(exc, httpx2.ConnectTimeout) and any(isinstance(e, ssl.SSLError) for e in chain):
        return "the API server accepted the connection but did not answer in time (no TLS handshake)"
    if isinstance(exc, httpx2.ConnectTimeout):
        return "could not connect to the API server: connection timed out"
    if isinstance(exc, httpx2.TimeoutException):
        return "the API server accepted the connection but did not answer in time"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "could not connect to the API server: connection refused (nothing listens at its address)"
    if isinstance(exc, httpx2.ConnectError):
        return f"could not connect to the API server: {chain[-1]}"
    if isinstance(exc, (ValueError, json.JSONDecodeError)) or type(exc).__name__ == "DecodeError":
        return f"the API server answered something that is not Kubernetes JSON: {exc}"
    if isinstance(exc, httpx2.HTTPError):
        return f"the connection to the API server failed: {exc}"
    return f"{type(exc).__name__}: {exc}"


class Informer(Generic[T]):
    def __init__(
        self,
        client: AsyncClient,
        resource: type[res.Resource],
        project: Callable[[JsonObject], T | None],
        on_change: Callable[[Key, T | None, T | None], None],
        *,
        namespace: str = "*",
        labels: dict[str, str] | None = None,
        fields: dict[str, str] | None = None,
        name: str = "",
    ) -> None:
        self.client = client
        self.resource = resource
        self.project = project
        self.on_change = on_change
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.name = name or resource.__name__
        self.items: dict[Key, T] = {}
        self.synced = asyncio.Event()
        self.error = ""
        self.failing_since: float | None = None
        self.resource_version = ""
        self.events = 0

    @staticmethod
    def key(obj: JsonObject) -> Key:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))

    def _apply(self, key: Key, new: T | None) -> None:
        old = self.items.get(key)
        if new is None:
            if key in self.items:
                del self.items[key]
                self.on_change(key, old, None)
            return
        if old == new:
            return
        self.items[key] = new
        self.on_change(key, old, new)

    async def _list(self) -> None:
        kwargs: dict[str, Any] = {"chunk_size": tunables.KUBE_LIST_PAGE.get(), **self._scope()}
        if self.labels:
            kwargs["labels"] = self.labels
        if self.fields:
            kwargs["fields"] = self.fields
        client: Any = self.client  # lightkube's overloads do not know generic resources by their base class
        listing = client.list(self.resource, **kwargs)
        fresh: dict[Key, T] = {}
        async for obj in listing:
            projected = self.project(obj)
            if projected is not None:
                fresh[self.key(obj)] = projected
        self.resource_version = listing.resourceVersion
        for key in [k for k in self.items if k not in fresh]:
            self._apply(key, None)
        for key, value in fresh.items():
            self._apply(key, value)

    async def _watch(self) -> None:
        kwargs: dict[str, Any] = {
            "resource_version": self.resource_version,
            "server_timeout": tunables.KUBE_WATCH_TIMEOUT.get(),
            **self._scope(),
        }
        if self.labels:
            kwargs["labels"] = self.labels
        if self.fields:
            kwargs["fields"] = self.fields
        client: Any = self.client
        async for kind, obj in client.watch(self.resource, on_error=on_error_raise, **kwargs):
            meta = obj.get("metadata") or {}
            if meta.get("resourceVersion"):
                self.resource_version = str(meta["resourceVersion"])
            self._recovered()
            self.events += 1
            key = self.key(obj)
            self._apply(key, None if kind == "DELETED" else self.project(obj))

    async def _probe(self) -> None:
        """The cheapest read of this resource (one object)."""
        client: Any = self.client
        async for _ in client.list(self.resource, chunk_size=1, **self._scope()):
            break

    def _scope(self) -> dict[str, str]:
        """Namespaced resources are read in `namespace` ("*": all); cluster-scoped ones have none."""
        return {"namespace": self.namespace} if issubclass(self.resource, res.NamespacedResource) else {}

    def _recovered(self) -> None:
        if self.error:
            log.info("%s: working again", self.name)
        self.error = ""
        self.failing_since = None

    async def run(self) -> None:
        delay = tunables.KUBE_BACKOFF_INITIAL.get()
        maximum = tunables.KUBE_BACKOFF_MAX.get()
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    self._recovered()
                    self.synced.set()
                elif self.error:
                    await self._probe()  # a resumed watch may see no events: prove the server answers
                    self._recovered()
                await self._watch()
                delay = tunables.KUBE_BACKOFF_INITIAL.get()
                continue  # the server ended the watch (timeout): renew it from the last version
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status.code == 410:
                    need_list = True  # our version is too old: relist (removals meanwhile are found)
                    continue
                self._failed(exc)
            except Exception as exc:  # any failure of a remote server must not stop the control plane
                self._failed(exc)
                need_list = need_list or not self.resource_version
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, maximum)

    def _failed(self, exc: BaseException) -> None:
        message = describe(exc)
        if message != self.error:
            log.warning("%s: %s", self.name, message)
        self.error = message
        if self.failing_since is None:
            self.failing_since = time.monotonic()
