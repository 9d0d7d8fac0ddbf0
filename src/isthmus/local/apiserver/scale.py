"""The `scale` subresource (autoscaling/v1 Scale) of Deployments, ReplicaSets, StatefulSets and
ReplicationControllers: `kubectl scale` reads it and patches `spec.replicas` through it."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from isthmus.local.apiserver import patch as patches
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.errors import (
    StatusError,
    bad_request,
    field_invalid,
    invalid,
    method_not_allowed,
    not_found,
)
from isthmus.local.apiserver.handlers import ApiHandlers, RequestInfo, json_response
from isthmus.local.apiserver.objects import (
    PATCH_JSON,
    PATCH_MERGE,
    PATCH_STRATEGIC,
    Objects,
    Target,
    WriteOptions,
)
from isthmus.local.apiserver.selectors import label_selector_string
from isthmus.local.apiserver.store import copy_object

JsonObject = dict[str, Any]
SCALABLE = (
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("", "replicationcontrollers"),
)


def scale_of(obj: JsonObject) -> JsonObject:
    """The Scale view of a scalable object."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if obj.get("kind") == "ReplicationController":
        text = ",".join(f"{k}={v}" for k, v in sorted((selector or {}).items()))
    else:
        text = label_selector_string(selector)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {"replicas": int(spec.get("replicas") or 0)},
        "status": {"replicas": int((obj.get("status") or {}).get("replicas") or 0), "selector": text},
    }


class ScaleSubresource:
    """GET, PUT and PATCH of `<workload>/scale`."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def install(self, handlers: ApiHandlers) -> None:
        for group, plural in SCALABLE:
            handlers.subresource_handlers[(group, plural, "scale")] = self.handle

    async def handle(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        rt = self.objects.registry.lookup(info.group, info.version, info.resource)
        if rt is None:
            raise not_found(info.resource, info.group, info.name)
        t = Target(rt, info.version, info.namespace, info.name)
        current = self.objects.get(t).obj
        if request.method == "GET":
            return json_response(scale_of(current))
        if request.method not in ("PUT", "PATCH"):
            raise method_not_allowed()
        raw = await request.read()
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"the body of the request is not JSON: {exc}") from None
        scale = scale_of(current)
        if request.method == "PUT":
            if content_type != "application/json":
                raise StatusError(
                    415, "UnsupportedMediaType", f"a Scale must be sent as JSON, not {content_type}"
                )
            wanted = body
        elif content_type == PATCH_JSON:
            wanted = patches.json_patch(copy_object(scale), body)
        elif content_type in (PATCH_MERGE, PATCH_STRATEGIC):
            wanted = patches.merge_patch(copy_object(scale), body)
        else:
            raise StatusError(
                415,
                "UnsupportedMediaType",
                f"the server does not support the patch type {content_type!r} on scale",
            )
        if not isinstance(wanted, dict):
            raise bad_request("the object provided is unrecognized (must be of type Scale)")
        count = (wanted.get("spec") or {}).get("replicas", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise invalid(
                "Scale",
                "autoscaling",
                info.name,
                [field_invalid("spec.replicas", count, "must be greater than or equal to 0")],
            )
        obj = copy_object(current)
        obj.setdefault("spec", {})["replicas"] = count
        version = (wanted.get("metadata") or {}).get("resourceVersion")
        if request.method == "PUT" and version:
            obj["metadata"]["resourceVersion"] = version
        opts = WriteOptions(
            user=user,
            dry_run=bool(request.query.getall("dryRun", [])),
            field_manager=request.query.get("fieldManager", ""),
            user_agent=request.headers.get("User-Agent", ""),
            field_validation="Ignore",
        )
        result = await self.objects.update(t, obj, opts)
        return json_response(scale_of(result.obj))
