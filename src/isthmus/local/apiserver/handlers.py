"""The HTTP face of the API server: paths, verbs, content negotiation, auth, watch streams and errors.

Everything about objects is delegated to `Objects`; this module only translates between HTTP and it, as
kube-apiserver's endpoint handlers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from isthmus.local.apiserver import tables
from isthmus.local.apiserver.admission import CONNECT_KINDS, AdmissionRequest, connect_options
from isthmus.local.apiserver.auth import AUTHENTICATED, Attributes, AuthChain, UserInfo
from isthmus.local.apiserver.clock import now
from isthmus.local.apiserver.discovery import AGGREGATED_V2, AGGREGATED_V2BETA1, Discovery
from isthmus.local.apiserver.errors import (
    StatusError,
    bad_request,
    forbidden,
    internal_error,
    method_not_allowed,
    not_found,
    request_entity_too_large,
    unauthorized,
    unsupported_media_type,
)
from isthmus.local.apiserver.objects import (
    PATCH_APPLY_CBOR,
    PATCH_APPLY_YAML,
    PATCH_JSON,
    PATCH_MERGE,
    PATCH_STRATEGIC,
    ListResult,
    Objects,
    Target,
    WriteOptions,
    WriteResult,
)
from isthmus.local.apiserver.openapi import OpenApi
from isthmus.local.apiserver.protobuf.decode import PROTOBUF_CONTENT_TYPE, decode_object
from isthmus.local.apiserver.resources import ResourceType
from isthmus.local.apiserver.store import DELETED, Stored, WatchEvent

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)

JsonObject = dict[str, Any]
PATCH_TYPES = (PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC, PATCH_APPLY_YAML, PATCH_APPLY_CBOR)
NAMESPACE_SUBRESOURCES = ("status", "finalize")
JSON = "application/json"

# A handler for a subresource or virtual resource another module provides (exec, logs, token, reviews...).
SubresourceHandler = Callable[[web.Request, "RequestInfo", UserInfo], Awaitable[web.StreamResponse]]
# A handler for a GET of a non-resource path another module serves (the OIDC discovery documents).
NonResourceHandler = Callable[[web.Request], web.StreamResponse]


@dataclass
class RequestInfo:
    """A resource request's parts, as kube-apiserver's RequestInfoFactory splits them."""

    verb: str
    group: str
    version: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    subpath: str = ""

    def attributes(self, user: UserInfo) -> Attributes:
        return Attributes(
            user, self.verb, self.group, self.resource, self.subresource, self.namespace, self.name
        )


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def parse_resource_path(method: str, parts: list[str], watch: bool) -> RequestInfo | None:
    """Split `/api/v1/...` or `/apis/g/v/...` (already split, prefix included) into a RequestInfo."""
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return None
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        return None
    info = RequestInfo("", group, version, rest[0], namespace, *[*rest[1:3], "", ""][:2])
    info.subpath = "/".join(rest[3:])
    if method == "GET" or method == "HEAD":
        info.verb = "get" if info.name else ("watch" if watch else "list")
    elif method == "DELETE" and not info.name:
        info.verb = "deletecollection"
    else:
        info.verb = _VERBS.get(method, method.lower())
    return info


def go_json_error(error: orjson.JSONDecodeError, body: bytes) -> str:
    """Go's encoding/json wording for the two common malformed bodies (what kubectl users recognize)."""
    if "unexpected end of data" in str(error) or not body.strip():
        return "unexpected end of JSON input"
    position = getattr(error, "pos", None)
    if isinstance(position, int) and position < len(body):
        char = body[position : position + 1].decode(errors="replace")
        return f"invalid character '{char}' looking for beginning of value"
    return str(error)


def go_bool(value: str, name: str) -> bool:
    """Parse a boolean query parameter as Go's strconv.ParseBool does."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False", ""):
        return False
    raise bad_request(f'invalid value for {name}: strconv.ParseBool: parsing "{value}": invalid syntax')


def _wants(accept: str, as_kind: str) -> bool:
    return any(f"as={as_kind}" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def json_response(
    body: bytes | JsonObject, status: int = 200, warnings: list[str] | None = None, content_type: str = JSON
) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = web.Response(body=data, status=status, content_type=content_type.split(";")[0])
    if ";" in content_type:
        response.headers["Content-Type"] = content_type
    for warning in warnings or ():
        response.headers.add("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
    return response


def status_response(error: StatusError) -> web.Response:
    return json_response(error.to_status(), error.code)


class ApiHandlers:
    """aiohttp request handling for one API server."""

    def __init__(
        self,
        objects: Objects,
        auth: AuthChain,
        discovery: Discovery,
        openapi: OpenApi,
        version_info: JsonObject,
        bookmark_interval: float = 10.0,
    ) -> None:
        self.objects = objects
        self.auth = auth
        self.discovery = discovery
        self.openapi = openapi
        self.version_info = version_info
        self.bookmark_interval = bookmark_interval
        self.subresource_handlers: dict[tuple[str, str, str], SubresourceHandler] = {}
        self.virtual_handlers: dict[tuple[str, str], SubresourceHandler] = {}
        self.non_resource_handlers: dict[str, NonResourceHandler] = {}
        # Subresources whose WebSocket GET is authorized as `create`, what their SPDY POST needs (Kubernetes'
        # AuthorizePodWebsocketUpgradeCreatePermission).
        self.create_on_upgrade: set[tuple[str, str, str]] = set()
        self.ready = False
        self.stopping = False

    # -- entry point --------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.stopping:
            return status_response(StatusError(503, "ServiceUnavailable", "the API server is shutting down"))
        try:
            return await self._handle(request)
        except StatusError as exc:
            return status_response(exc)
        except ConnectionResetError:
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            return status_response(internal_error(str(exc)))

    def _user(self, request: web.Request) -> UserInfo:
        header = request.headers.get("Authorization", "")
        # Anything but a bearer token is not ours to judge: the request is anonymous, as in Kubernetes.
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        user = self.auth.authenticate(token)
        if user is None:
            raise unauthorized()
        if "Impersonate-User" in request.headers or "Impersonate-Group" in request.headers:
            return self._impersonate(request, user)
        return user

    def _impersonate(self, request: web.Request, user: UserInfo) -> UserInfo:
        """Act as another user (`kubectl --as`), if the caller may impersonate them, as Kubernetes does."""
        name = request.headers.get("Impersonate-User", "")
        groups = request.headers.getall("Impersonate-Group", [])
        if not name:
            raise bad_request("requested impersonation of groups without impersonating a user")
        checks: list[tuple[str, str, str]] = []
        if name.startswith("system:serviceaccount:") and name.count(":") == 3:
            _, _, namespace, sa = name.split(":")
            checks.append(("serviceaccounts", namespace, sa))
        else:
            checks.append(("users", "", name))
        checks += [("groups", "", group) for group in groups]
        for resource, namespace, target in checks:
            allowed, _ = self.auth.authorize(
                Attributes(user, "impersonate", "", resource, "", namespace, target)
            )
            if not allowed:
                kind = {"users": "user", "groups": "group", "serviceaccounts": "serviceaccount"}[resource]
                raise StatusError(
                    403,
                    "Forbidden",
                    f'{resource} "{target}" is forbidden: User "{user.name}" cannot impersonate resource '
                    f'"{resource}" in API group "" '
                    + (f'in the namespace "{namespace}"' if namespace else "at the cluster scope"),
                    name=target,
                    kind=kind,
                )
        implied = (
            ("system:serviceaccounts", f"system:serviceaccounts:{name.split(':')[2]}")
            if (name.startswith("system:serviceaccount:"))
            else ()
        )
        return UserInfo(
            name,
            request.headers.get("Impersonate-Uid", ""),
            tuple(dict.fromkeys([*groups, *implied, AUTHENTICATED])),
        )

    def _authorize_path(self, user: UserInfo, path: str) -> None:
        allowed, reason = self.auth.authorize(Attributes(user, "get", path=path))
        if not allowed:
            raise StatusError(
                403,
                "Forbidden",
                f'forbidden: User "{user.name}" cannot get path "{path}"' + (f": {reason}" if reason else ""),
            )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        user = self._user(request)
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            self._authorize_path(user, path)
            return self._non_resource(request, parts)
        if (parts[0] == "api" and len(parts) <= 2) or (parts[0] == "apis" and len(parts) <= 3):
            self._authorize_path(user, path)
            return self._discovery(request, parts)
        info = parse_resource_path(
            request.method, parts, request.query.get("watch", "") not in ("", "0", "false", "False")
        )
        if info is None:
            raise not_found("", "", "")
        if info.verb == "get" and (info.group, info.resource, info.subresource) in self.create_on_upgrade:
            info.verb = "create"
        allowed, reason = self.auth.authorize(info.attributes(user))
        if not allowed:
            raise forbidden(
                user.name,
                info.verb,
                info.resource + (f"/{info.subresource}" if info.subresource else ""),
                info.group,
                info.name,
                info.namespace,
                reason,
            )
        rt = self.objects.registry.lookup(info.group, info.version, info.resource)
        if rt is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        if rt.virtual:
            handler = self.virtual_handlers.get(rt.key)
            if handler is None or info.verb != "create":
                raise method_not_allowed()
            return await handler(request, info, user)
        if (
            info.subresource
            and info.subresource not in ("status",)
            and not (rt.key == ("", "namespaces") and info.subresource == "finalize")
        ):
            sub = self.subresource_handlers.get((rt.group, rt.plural, info.subresource))
            if sub is None or info.subresource not in rt.subresources:
                raise StatusError(404, "NotFound", "the server could not find the requested resource")
            if not rt.group and (rt.plural, info.subresource) in CONNECT_KINDS:
                await self._admit_connect(request, info, rt, user)
            return await sub(request, info, user)
        return await self._resource(request, info, rt, user)

    async def _admit_connect(
        self, request: web.Request, info: RequestInfo, rt: ResourceType, user: UserInfo
    ) -> None:
        """Admission of a CONNECT (exec, attach, port-forward, proxy): webhooks may refuse it."""
        options = connect_options(rt.plural, info.subresource, request.query.items())
        name = info.name.partition(":")[0]  # proxy names carry a port
        admit = AdmissionRequest(
            "CONNECT", rt, info.version, info.subresource, info.namespace, name, options, None, user, False
        )
        await self.objects.admission.run(admit)

    # -- non-resource and discovery -----------------------------------------------------------------------

    def _non_resource(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        head = parts[0] if parts else ""
        extra = self.non_resource_handlers.get(request.path)
        if extra is not None and request.method in ("GET", "HEAD"):
            return extra(request)
        if head == "version":
            return json_response(self.version_info)
        if head in ("healthz", "livez"):
            return web.Response(text="ok")
        if head == "readyz":
            return web.Response(text="ok") if self.ready else web.Response(text="not ready", status=500)
        if head == "openapi" and len(parts) >= 2 and parts[1] == "v3":
            if len(parts) == 2:
                return json_response(self.openapi.index())
            found = self.openapi.document("/".join(parts[2:]))
            if found is None:
                raise StatusError(404, "NotFound", "the server could not find the requested resource")
            body, digest = found
            response = json_response(body)
            if request.query.get("hash") == digest:
                response.headers["Cache-Control"] = "public, immutable"
            response.headers["Etag"] = f'"{digest}"'
            return response
        raise StatusError(404, "NotFound", "the server could not find the requested resource")

    def _discovery(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        if len(parts) == 1:
            for media, api_version in (
                (AGGREGATED_V2, "apidiscovery.k8s.io/v2"),
                (AGGREGATED_V2BETA1, "apidiscovery.k8s.io/v2beta1"),
            ):
                if media.split(";", 1)[1] in accept.replace(" ", ""):
                    return json_response(
                        self.discovery.aggregated(parts[0] == "api", api_version), content_type=media
                    )
            return json_response(
                self.discovery.core_versions() if parts[0] == "api" else self.discovery.groups()
            )
        if parts[0] == "api":
            doc = self.discovery.resources("", parts[1])
        elif len(parts) == 2:
            doc = self.discovery.group(parts[1])
        else:
            doc = self.discovery.resources(parts[1], parts[2])
        if doc is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        return json_response(doc)

    # -- resources ----------------------------------------------------------------------------------------

    def _target(self, info: RequestInfo, rt: ResourceType) -> Target:
        if not rt.namespaced:
            namespace = ""
            name = info.name or (info.namespace if rt.key == ("", "namespaces") else "")
        else:
            namespace, name = info.namespace, info.name
        subresource = info.subresource
        if rt.key == ("", "namespaces") and info.namespace and not info.name:
            name = info.namespace
        return Target(rt, info.version, namespace, name, subresource)

    async def _read_body(self, request: web.Request) -> tuple[bytes, str]:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise request_entity_too_large(request.app[MAX_REQUEST_BYTES]) from None
        content_type = request.headers.get("Content-Type", JSON).split(";")[0].strip().lower()
        return body, content_type

    def _decode_body(self, body: bytes, content_type: str, kind: str) -> Any:
        unrecognized = f"the object provided is unrecognized (must be of type {kind}): "
        preview = body[:30].decode(errors="replace") + (" ..." if len(body) > 30 else "")
        if not body:
            raise bad_request(
                unrecognized + "couldn't get version/kind; json parse error: unexpected end of JSON input"
            )
        if content_type in (JSON, "", "*/*"):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise bad_request(
                    f"{unrecognized}couldn't get version/kind; json parse error: {go_json_error(exc, body)} "
                    f"({preview})"
                ) from None
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            try:
                return yaml.safe_load(body)
            except yaml.YAMLError as exc:
                problem = str(getattr(exc, "problem", "") or exc).strip()
                raise bad_request(
                    f"{unrecognized}couldn't get version/kind; yaml parse error: {problem} ({preview})"
                ) from None
        if content_type == PROTOBUF_CONTENT_TYPE:
            return decode_object(body)
        raise unsupported_media_type(content_type)

    def _write_options(self, request: web.Request, user: UserInfo, default_validation: str) -> WriteOptions:
        query = request.query
        dry_run = query.getall("dryRun", [])
        for value in dry_run:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        validation = query.get("fieldValidation", default_validation)
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(
                f'fieldValidation: Unsupported value: "{validation}": supported values: "Ignore", '
                '"Strict", "Warn"'
            )
        return WriteOptions(
            user=user,
            dry_run=bool(dry_run),
            field_manager=query.get("fieldManager", ""),
            user_agent=request.headers.get("User-Agent", ""),
            field_validation=validation,
            force=go_bool(query.get("force", ""), "force"),
        )

    async def _resource(
        self, request: web.Request, info: RequestInfo, rt: ResourceType, user: UserInfo
    ) -> web.StreamResponse:
        if info.verb not in rt.verbs and not info.subresource:
            raise method_not_allowed()
        t = self._target(info, rt)
        verb = info.verb
        if verb == "get":
            return self._respond_object(request, t, self.objects.get(t))
        if verb == "list":
            return self._list(request, t)
        if verb == "watch":
            return await self._watch(request, t)
        if verb == "deletecollection":
            return await self._delete_collection(request, t, user)
        body, content_type = await self._read_body(request)
        if verb == "create":
            if info.name and info.subresource:
                raise method_not_allowed()
            opts = self._write_options(request, user, "Warn")
            result = await self.objects.create(t, self._decode_body(body, content_type, rt.kind), opts)
        elif verb == "update":
            opts = self._write_options(request, user, "Warn")
            result = await self.objects.update(t, self._decode_body(body, content_type, rt.kind), opts)
        elif verb == "patch":
            if content_type not in PATCH_TYPES:
                raise StatusError(
                    415,
                    "UnsupportedMediaType",
                    f"the server does not support the patch type "
                    f'"{content_type}": use one of {", ".join(PATCH_TYPES[:4])}',
                )
            opts = self._write_options(request, user, "Warn")
            result = await self.objects.patch(t, content_type, body, opts)
        elif verb == "delete":
            result = await self.objects.delete(
                t,
                self._delete_options(request, body, content_type),
                self._write_options(request, user, "Ignore"),
            )
        else:
            raise method_not_allowed()
        return self._write_response(request, t, result)

    def _delete_options(self, request: web.Request, body: bytes, content_type: str) -> JsonObject:
        options: JsonObject = {}
        if body:
            decoded = self._decode_body(body, content_type, "DeleteOptions")
            if isinstance(decoded, dict):
                options = decoded
        query = request.query
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "orphanDependents" in query:
            options["orphanDependents"] = go_bool(query["orphanDependents"], "orphanDependents")
        if "gracePeriodSeconds" in query:
            try:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            except ValueError:
                raise bad_request("gracePeriodSeconds must be an integer") from None
        return options

    def _write_response(self, request: web.Request, t: Target, result: WriteResult) -> web.Response:
        accept = request.headers.get("Accept", "")
        if _wants(accept, "Table"):
            body = tables.table(
                t.rt, t.version, [result.obj], request.query.get("includeObject", "Metadata"), now()
            )
            return json_response(body, result.code, result.warnings)
        return json_response(result.obj, result.code, result.warnings)

    def _respond_object(self, request: web.Request, t: Target, stored: Stored) -> web.Response:
        accept = request.headers.get("Accept", "")
        if _wants(accept, "Table"):
            return json_response(
                tables.table(
                    t.rt,
                    t.version,
                    [self.objects.present_obj(t, stored.obj)],
                    request.query.get("includeObject", "Metadata"),
                    now(),
                )
            )
        if _wants(accept, "PartialObjectMetadata"):
            return json_response(
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": stored.obj["metadata"],
                }
            )
        return json_response(self.objects.present(t, stored))

    def _list_kind(self, rt: ResourceType) -> str:
        if rt.is_custom:
            crd = self.objects.store.get(
                ("apiextensions.k8s.io", "customresourcedefinitions"), "", rt.crd_name
            )
            if crd is not None:
                list_kind = crd.obj["spec"]["names"].get("listKind")
                if list_kind:
                    return str(list_kind)
        return rt.kind + "List"

    def _list(self, request: web.Request, t: Target) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "0") or 0)
        except ValueError:
            raise bad_request(f"limit must be an integer, not {query.get('limit')!r}") from None
        result: ListResult = self.objects.list_objects(
            t,
            query.get("labelSelector", ""),
            query.get("fieldSelector", ""),
            limit,
            query.get("continue", ""),
        )
        list_meta: JsonObject = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            list_meta["continue"] = result.continue_token
        accept = request.headers.get("Accept", "")
        if _wants(accept, "Table"):
            return json_response(
                tables.table(
                    t.rt,
                    t.version,
                    [self.objects.present_obj(t, s.obj) for s in result.items],
                    query.get("includeObject", "Metadata"),
                    now(),
                    list_meta=list_meta,
                )
            )
        if _wants(accept, "PartialObjectMetadataList"):
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta,
                    "items": [
                        {
                            "kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1",
                            "metadata": s.obj["metadata"],
                        }
                        for s in result.items
                    ],
                }
            )
        head = orjson.dumps(
            {"kind": self._list_kind(t.rt), "apiVersion": t.api_version, "metadata": list_meta}
        )
        items = b",".join(self.objects.present(t, s) for s in result.items)
        return json_response(head[:-1] + b',"items":[' + items + b"]}")

    async def _delete_collection(self, request: web.Request, t: Target, user: UserInfo) -> web.Response:
        body, content_type = await self._read_body(request)
        options = self._delete_options(request, body, content_type)
        deleted = await self.objects.delete_collection(
            t,
            request.query.get("labelSelector", ""),
            request.query.get("fieldSelector", ""),
            options,
            self._write_options(request, user, "Ignore"),
        )
        items = b",".join(self.objects.present(t, s) for s in deleted)
        head = orjson.dumps(
            {
                "kind": self._list_kind(t.rt),
                "apiVersion": t.api_version,
                "metadata": {"resourceVersion": str(self.objects.store.rv)},
            }
        )
        return json_response(head[:-1] + b',"items":[' + items + b"]}")

    # -- watch --------------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        query = request.query
        rv_param = query.get("resourceVersion", "")
        bookmarks = go_bool(query.get("allowWatchBookmarks", ""), "allowWatchBookmarks")
        initial_events = query.get("sendInitialEvents")
        try:
            timeout = (
                float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else random.uniform(1800, 3600)
            )
        except ValueError:
            raise bad_request(
                f"timeoutSeconds must be a number, not {query.get('timeoutSeconds')!r}"
            ) from None
        label_selector, field_selector = query.get("labelSelector", ""), query.get("fieldSelector", "")
        as_table = _wants(request.headers.get("Accept", ""), "Table")
        include_object = query.get("includeObject", "Metadata")
        send_initial = (
            rv_param in ("", "0") if initial_events is None else go_bool(initial_events, "sendInitialEvents")
        )
        if rv_param in ("", "0"):
            since = self.objects.store.rv
        else:
            try:
                since = int(rv_param)
            except ValueError:
                # kube-apiserver's watch cache answers a version it cannot parse with a bare 500.
                raise StatusError(
                    500,
                    "",
                    f'resourceVersion: Invalid value: "{rv_param}": strconv.ParseUint: parsing "{rv_param}": '
                    "invalid syntax",
                ) from None
        matcher = self.objects.matcher(t, label_selector, field_selector)  # validates selectors before 200
        response = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            watcher = self.objects.watch(t, since, label_selector, field_selector)
        except StatusError as exc:
            await response.write(orjson.dumps({"type": "ERROR", "object": exc.to_status()}) + b"\n")
            await response.write_eof()
            return response

        headers_sent = False

        def encode(event_type: str, obj: JsonObject, raw: bytes) -> bytes:
            nonlocal headers_sent
            if as_table:
                obj = self.objects.present_obj(t, obj)
                body = orjson.dumps(
                    tables.table(t.rt, t.version, [obj], include_object, now(), no_headers=headers_sent)
                )
                headers_sent = True
            elif obj.get("apiVersion") == t.api_version:
                body = raw
            else:
                body = orjson.dumps({**obj, "apiVersion": t.api_version})
            return b'{"type":"' + event_type.encode() + b'","object":' + body + b"}\n"

        def bookmark(annotations: JsonObject | None = None) -> bytes:
            meta: JsonObject = {"resourceVersion": str(self.objects.store.rv)}
            if annotations:
                meta["annotations"] = annotations
            return (
                orjson.dumps(
                    {
                        "type": "BOOKMARK",
                        "object": {"kind": t.rt.kind, "apiVersion": t.api_version, "metadata": meta},
                    }
                )
                + b"\n"
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if send_initial:
                chunk = [
                    encode("ADDED", s.obj, s.raw)
                    for s in self.objects.store.iter_objects(t.rt.key)
                    if matcher(s.obj)
                ]
                if initial_events is not None and bookmarks:
                    chunk.append(bookmark({"k8s.io/initial-events-end": "true"}))
                if chunk:
                    await response.write(b"".join(chunk))
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    event: WatchEvent | None = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and deadline - loop.time() > 0:
                        await response.write(bookmark())
                    continue
                if event is None:
                    break
                lines = [encode(event.type, event.obj, event.raw)]
                while not watcher.queue.empty():
                    more = watcher.queue.get_nowait()
                    if more is None:
                        break
                    lines.append(encode(more.type, more.obj, more.raw))
                await response.write(b"".join(lines))
        except ConnectionResetError:
            return response
        finally:
            self.objects.store.stop_watch(t.rt.key, watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


__all__ = [
    "DELETED",
    "ApiHandlers",
    "NonResourceHandler",
    "RequestInfo",
    "SubresourceHandler",
    "go_bool",
    "parse_resource_path",
]
