"""API discovery documents: the legacy per-group-version lists and the aggregated form
(apidiscovery.k8s.io/v2) that kubectl 1.26+ asks for first. Built from the resource registry; cached until it changes.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from isthmus.local.apiserver.resources import ResourceRegistry, ResourceType

JsonObject = dict[str, Any]

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

SUBRESOURCE_VERBS: dict[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "proxy": ("create", "delete", "get", "patch", "update"),
    "token": ("create",),
    "binding": ("create",),
    "eviction": ("create",),
    "finalize": ("update",),
    "ephemeralcontainers": ("get", "patch", "update"),
}

_SUBRESOURCE_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
}


def _storage_hash(rt: ResourceType) -> str:
    digest = hashlib.sha256(f"{rt.group}/{rt.storage_version}/{rt.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _resource_entry(rt: ResourceType) -> JsonObject:
    entry: JsonObject = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if not rt.virtual:
        entry["storageVersionHash"] = _storage_hash(rt)
    return entry


class Discovery:
    """Discovery documents, rebuilt when the registry's generation changes."""

    def __init__(self, registry: ResourceRegistry, server_address: str) -> None:
        self.registry = registry
        self.server_address = server_address
        self._generation = -1
        self._cache: dict[str, bytes] = {}

    def _cached(self, key: str, build: Any) -> bytes:
        if self._generation != self.registry.generation:
            self._cache.clear()
            self._generation = self.registry.generation
        doc = self._cache.get(key)
        if doc is None:
            doc = self._cache[key] = orjson.dumps(build())
        return doc

    def core_versions(self) -> bytes:
        return self._cached(
            "/api",
            lambda: {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}
                ],
            },
        )

    def _group(self, group: str, versions: list[str]) -> JsonObject:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def groups(self) -> bytes:
        def build() -> JsonObject:
            groups = [self._group(g, vs) for g, vs in self.registry.group_versions().items() if g]
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

        return self._cached("/apis", build)

    def group(self, group: str) -> bytes | None:
        versions = self.registry.group_versions().get(group)
        if not group or not versions:
            return None
        return self._cached(
            f"/apis/{group}", lambda: {"kind": "APIGroup", "apiVersion": "v1", **self._group(group, versions)}
        )

    def resources(self, group: str, version: str) -> bytes | None:
        types = self.registry.types_in(group, version)
        if not types:
            return None

        def build() -> JsonObject:
            resources: list[JsonObject] = []
            for rt in sorted(types, key=lambda r: r.plural):
                resources.append(_resource_entry(rt))
                for sub in rt.subresources:
                    kind = _SUBRESOURCE_KIND.get(sub, (rt.group, version, rt.kind))[2]
                    resources.append(
                        {
                            "name": f"{rt.plural}/{sub}",
                            "singularName": "",
                            "namespaced": rt.namespaced,
                            "kind": kind,
                            "verbs": list(SUBRESOURCE_VERBS.get(sub, ("get",))),
                        }
                    )
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": rt_gv(group, version),
                "resources": resources,
            }

        return self._cached(f"/{group}/{version}", build)

    def aggregated(self, core: bool, api_version: str) -> bytes:
        """The APIGroupDiscoveryList of /api (core) or /apis (every other group)."""

        def build() -> JsonObject:
            items = []
            for group, versions in self.registry.group_versions().items():
                if bool(group) == core:
                    continue
                items.append(
                    {
                        "metadata": {"name": group, "creationTimestamp": None},
                        "versions": [
                            {
                                "version": v,
                                "resources": self._aggregated_resources(group, v),
                                "freshness": "Current",
                            }
                            for v in versions
                        ],
                    }
                )
            return {
                "kind": "APIGroupDiscoveryList",
                "apiVersion": api_version,
                "metadata": {},
                "items": items,
            }

        return self._cached(f"aggregated/{core}/{api_version}", build)

    def _aggregated_resources(self, group: str, version: str) -> list[JsonObject]:
        out = []
        for rt in sorted(self.registry.types_in(group, version), key=lambda r: r.plural):
            entry: JsonObject = {
                "resource": rt.plural,
                "responseKind": {"group": group, "version": version, "kind": rt.kind},
                "scope": "Namespaced" if rt.namespaced else "Cluster",
                "singularResource": rt.singular,
                "verbs": list(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            if rt.subresources:
                entry["subresources"] = [
                    {
                        "subresource": sub,
                        "responseKind": dict(
                            zip(
                                ("group", "version", "kind"),
                                _SUBRESOURCE_KIND.get(sub, (group, version, rt.kind)),
                                strict=True,
                            )
                        ),
                        "verbs": list(SUBRESOURCE_VERBS.get(sub, ("get",))),
                    }
                    for sub in rt.subresources
                ]
            out.append(entry)
        return out


def rt_gv(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version
