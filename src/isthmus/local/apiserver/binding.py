"""Pod binding, the `pods/binding` subresource (`POST .../pods/NAME/binding` with a Binding): assigns a pod that
names no node to a node, as kube-apiserver's BindingREST does (`spec.nodeName`, the Binding's annotations, and
the PodScheduled=True condition). The scheduler binds through `bind_pod` in-process; other schedulers use the
API."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.errors import StatusError, bad_request, conflict, field_required, invalid
from isthmus.local.apiserver.handlers import ApiHandlers, RequestInfo, json_response
from isthmus.local.apiserver.objects import Objects, Target, WriteOptions
from isthmus.local.apiserver.store import copy_object

JsonObject = dict[str, Any]
STATUS_ATTEMPTS = 5


def _pods(objects: Objects, namespace: str, name: str, subresource: str = "") -> Target:
    rt = objects.registry.get("", "pods")
    if rt is None:
        raise LookupError("pods are not served")
    return Target(rt, rt.storage_version, namespace, name, subresource)


def _binding_conflict(name: str, why: str) -> StatusError:
    return conflict("pods/binding", "", name, why)


async def bind_pod(
    objects: Objects,
    namespace: str,
    name: str,
    node: str,
    opts: WriteOptions,
    uid: str = "",
    annotations: dict[str, str] | None = None,
) -> JsonObject:
    """Assign pod `namespace/name` to `node`; 409 if it is assigned already, being deleted, or not `uid`."""
    if not node:
        raise invalid("Binding", "", name, [field_required("target.name")])
    current = objects.get(_pods(objects, namespace, name)).obj
    meta = current["metadata"]
    if uid and meta.get("uid") != uid:
        raise _binding_conflict(
            name, f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta.get('uid')}"
        )
    if meta.get("deletionTimestamp"):
        raise _binding_conflict(name, f"pod {name} is being deleted, cannot be assigned to a host")
    assigned = (current.get("spec") or {}).get("nodeName")
    if assigned:
        raise _binding_conflict(name, f'pod {name} is already assigned to node "{assigned}"')
    obj = copy_object(current)
    obj.setdefault("spec", {})["nodeName"] = node
    if annotations:
        obj["metadata"]["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    bound = (await objects.update(_pods(objects, namespace, name), obj, opts)).obj
    for _ in range(STATUS_ATTEMPTS):
        status = copy_object(bound)
        conditions = [
            c
            for c in status.setdefault("status", {}).get("conditions") or ()
            if c.get("type") != "PodScheduled"
        ]
        previous = next(
            (
                c
                for c in (bound.get("status") or {}).get("conditions") or ()
                if c.get("type") == "PodScheduled"
            ),
            None,
        )
        scheduled: JsonObject = {"type": "PodScheduled", "status": "True", "lastProbeTime": None}
        if previous is not None and previous.get("status") == "True":
            scheduled["lastTransitionTime"] = previous.get("lastTransitionTime")
        else:
            scheduled["lastTransitionTime"] = timestamp()
        status["status"]["conditions"] = [*conditions, scheduled]
        try:
            return (await objects.update(_pods(objects, namespace, name, "status"), status, opts)).obj
        except StatusError as exc:
            if exc.code != 409:
                raise
            bound = objects.get(_pods(objects, namespace, name)).obj
            if (bound.get("spec") or {}).get("nodeName") != node:
                raise
    return bound


class Bindings:
    """The HTTP handler of `pods/binding`."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def install(self, handlers: ApiHandlers) -> None:
        handlers.subresource_handlers[("", "pods", "binding")] = self.handle

    async def handle(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        if request.method != "POST":
            raise StatusError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise StatusError(
                415, "UnsupportedMediaType", f"the body of a Binding must be JSON, not {content_type}"
            )
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise bad_request(
                f"the object provided is unrecognized (must be of type Binding): {exc}"
            ) from None
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized (must be of type Binding)")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, info.name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({info.name})"
            )
        target = body.get("target") or {}
        if target.get("kind") not in (None, "", "Node"):
            raise invalid("Binding", "", info.name, [field_required("target.kind", "must be Node")])
        opts = WriteOptions(
            user=user,
            dry_run=bool(request.query.getall("dryRun", [])),
            field_manager=request.query.get("fieldManager", ""),
            user_agent=request.headers.get("User-Agent", ""),
            field_validation="Ignore",
        )
        if not opts.dry_run:
            await bind_pod(
                self.objects,
                info.namespace,
                info.name,
                str(target.get("name") or ""),
                opts,
                uid=str(meta.get("uid") or ""),
                annotations=meta.get("annotations") or None,
            )
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )
