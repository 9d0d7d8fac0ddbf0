"""The node's view of its API server, through lightkube: watches that survive the API server's absence, and
the writes a kubelet makes (pod status, final pod deletion, tokens, events, its Node and Lease).

Objects are handled as plain JSON dicts (`to_dict()`), the form the rest of the node works with.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar, cast

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.core.resource import NamespacedResource, Resource
from lightkube.models.authentication_v1 import BoundObjectReference, TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import (
    ConfigMap,
    Pod,
    PodStatus,
    Secret,
    ServiceAccountToken,
)
from lightkube.types import PatchType

from isthmus.local.events import EventBroadcaster, LightkubeEventSink

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
MANAGER = "kubelet"
R = TypeVar("R", bound=Resource)


def to_dict(obj: Any) -> JsonObject:
    data: JsonObject = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return data


class NodeApi:
    """A kubelet's API calls. Every call may raise lightkube's ApiError or an httpx2 transport error."""

    def __init__(self, kubeconfig: str, host: str = "") -> None:
        config = KubeConfig.from_file(kubeconfig)
        self.client = AsyncClient(config=config, field_manager=MANAGER, timeout=httpx2.Timeout(10.0))
        self.host = host
        self.events = EventBroadcaster(LightkubeEventSink(self.client))  # its `run()` is the node's to start

    async def close(self) -> None:
        await self.client.close()

    async def watch(
        self, resource: type[NamespacedResource], **selectors: Any
    ) -> AsyncIterator[tuple[str, JsonObject]]:
        """List then watch, forever: ("SYNC", {}) after each full list, then ("ADDED"|"MODIFIED"|"DELETED", obj).

        When the API server is away the last state stays valid; the watch retries with backoff and relists.
        """
        delay = 0.2
        while True:
            try:
                listing = self.client.list(resource, namespace="*", **selectors)
                items = [to_dict(item) async for item in listing]
                version = listing.resourceVersion
                for item in items:
                    yield "LISTED", item
                yield "SYNC", {}
                delay = 0.2
                async for kind, obj in self.client.watch(
                    resource, namespace="*", resource_version=version, **selectors
                ):
                    yield kind, to_dict(obj)
            except (ApiError, httpx2.HTTPError, OSError) as exc:
                log.debug("watch of %s interrupted: %s", resource.__name__, exc)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 5.0)

    async def get(self, kind: str, namespace: str, name: str) -> JsonObject | None:
        resource: type[Secret] | type[ConfigMap] = Secret if kind == "Secret" else ConfigMap
        try:
            return to_dict(await self.client.get(resource, name, namespace=namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def patch_pod_status(self, namespace: str, name: str, status: JsonObject) -> None:
        await self.client.patch(
            PodStatus,
            name,
            {"status": status},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's final deletion of a pod it has stopped (grace 0), unless the name now holds another pod."""
        try:
            current = await self.client.get(Pod, name, namespace=namespace)
            if current.metadata is None or current.metadata.uid != uid:
                return
            await self.client.delete(Pod, name, namespace=namespace, grace_period=0)
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    async def request_token(
        self, namespace: str, account: str, audience: str, seconds: int, pod: JsonObject
    ) -> tuple[str, float]:
        """A service-account token bound to `pod` (TokenRequest), and when it expires (epoch seconds)."""
        spec = TokenRequestSpec(
            audiences=[audience] if audience else [],
            expirationSeconds=seconds,
            boundObjectRef=BoundObjectReference(
                kind="Pod", apiVersion="v1", name=pod["metadata"]["name"], uid=pod["metadata"]["uid"]
            ),
        )
        created = await self.client.create(
            ServiceAccountToken(metadata=ObjectMeta(name=account, namespace=namespace), spec=spec),
            account,
            namespace=namespace,
        )
        data = to_dict(created)
        token = str(data["status"]["token"])
        expires = data["status"].get("expirationTimestamp")
        if isinstance(expires, str):
            return token, datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
        return token, time.time() + seconds

    async def event(
        self, involved: JsonObject, kind: str, reason: str, message: str, event_type: str, source: str
    ) -> None:
        """Record an Event about an object; returns at once (writes are queued, repeats counted, bursts capped)."""
        meta = involved["metadata"]
        reference = {
            "kind": kind,
            "apiVersion": involved.get("apiVersion") or "v1",
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
        }
        self.events.recorder(source, self.host).event_for(reference, event_type, reason, message)

    async def apply(self, resource: type[R], obj: JsonObject) -> None:
        """Server-side apply of an object the node owns (its Node, Lease, the kube-dns Service...)."""
        typed = cast(R, resource.from_dict(obj))  # type: ignore[attr-defined]
        await self.client.apply(typed, force=True)  # type: ignore[call-overload]
