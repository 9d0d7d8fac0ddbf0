"""xDS resources as the server keeps them: immutable, serialized once, versioned by a hash of their content.

A `Resource` is built once per distinct content and shared by every proxy that receives it; its two response
encodings (an `Any` in a state-of-the-world response, a `Resource` in a delta response) are made when it is
built, so a push to a thousand proxies concatenates bytes and builds no message (`wire`).
The version is stable across control-plane restarts: a reconnecting delta client's `initial_resource_versions`
match what did not change, and it is not sent again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from google.protobuf.message import Message

from isthmus.xds import wire


class TypeUrl(StrEnum):
    """The resource types, in the order a push sends them (make before break: clusters and their endpoints
    before the listeners and routes that use them)."""

    CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
    ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

    @property
    def short(self) -> str:
        """Istio's short names: CDS, EDS, LDS, RDS."""
        return _SHORT[self]

    @property
    def wildcard(self) -> bool:
        """Whether a client's empty subscription means "all" (listeners and clusters, for Envoy)."""
        return self in (TypeUrl.LISTENER, TypeUrl.CLUSTER)


_SHORT = {TypeUrl.CLUSTER: "CDS", TypeUrl.ENDPOINT: "EDS", TypeUrl.LISTENER: "LDS", TypeUrl.ROUTE: "RDS"}
PUSH_ORDER = (TypeUrl.CLUSTER, TypeUrl.ENDPOINT, TypeUrl.LISTENER, TypeUrl.ROUTE)


def content_version(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True, eq=False)
class Resource:
    """One named resource of one type, with its encodings. Compare versions, not objects."""

    type_url: TypeUrl
    name: str
    version: str
    body: bytes  # the message, serialized deterministically
    sotw_entry: bytes  # DiscoveryResponse.resources entry (an Any)
    delta_entry: bytes  # DeltaDiscoveryResponse.resources entry (a Resource)

    @classmethod
    def of(cls, type_url: TypeUrl, name: str, message: Message) -> Resource:
        body = message.SerializeToString(deterministic=True)
        version = content_version(body)
        return cls(
            type_url,
            name,
            version,
            body,
            wire.sotw_entry(type_url, body),
            wire.delta_entry(type_url, name, version, body),
        )

    @classmethod
    def placeholder(cls, type_url: TypeUrl, name: str, version: str) -> Resource:
        """What a reconnecting delta client says it has (`initial_resource_versions`): a version, no body."""
        return cls(type_url, name, version, b"", b"", b"")

    def __repr__(self) -> str:
        return f"Resource({self.type_url.short} {self.name!r} {self.version})"
