"""OpenAPI v3 as kube-apiserver serves it: the `/openapi/v3` index and one document per group-version.

Built-in schemas come from the schema catalog, converted once from the package's JSON-schema form to the
OpenAPI 3.0 form kube-apiserver publishes; each CRD version's `openAPIV3Schema` is wrapped the way
kube-apiserver's CRD builder wraps it. Documents are built on first request and rebuilt only when the
resource types behind them change. kubectl reads them for `explain`, for the patch strategies of client-side
apply, and to learn whether the server validates fields (the `fieldValidation` parameter of PATCH).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from isthmus.local.apiserver.resources import ResourceRegistry, ResourceType
from isthmus.local.apiserver.schema import KUBERNETES_SCHEMA_VERSION, SchemaCatalog

JsonObject = dict[str, Any]

_SCHEMAS = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
OBJECT_META = _META + "ObjectMeta"
LIST_META = _META + "ListMeta"
STATUS = _META + "Status"
DELETE_OPTIONS = _META + "DeleteOptions"
PATCH = _META + "Patch"
API_RESOURCE_LIST = _META + "APIResourceList"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

# What kube-apiserver publishes for the two scalar unions (the package has nullable oneOfs instead).
_OVERRIDES: Mapping[str, JsonObject] = {
    INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or "
        "YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to "
        "have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
    QUANTITY: {"oneOf": [{"type": "string"}, {"type": "number"}]},
}
_JSON_SCHEMA_ONLY = frozenset({"$schema", "$id"})
_SUBSCHEMA = frozenset({"items", "additionalProperties", "not"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})

_CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
_API_VERSION: JsonObject = {
    "description": "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject unrecognized values. "
    f"More info: {_CONVENTIONS}#resources",
    "type": "string",
}
_KIND: JsonObject = {
    "description": "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More "
    f"info: {_CONVENTIONS}#types-kinds",
    "type": "string",
}
_OBJECT_METADATA = f"Standard object's metadata. More info: {_CONVENTIONS}#metadata"
_LIST_METADATA = f"Standard list metadata. More info: {_CONVENTIONS}#metadata"

_MEDIA = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_WATCH_MEDIA = (*_MEDIA, "application/json;stream=watch", "application/vnd.kubernetes.protobuf;stream=watch")
_CRD_MEDIA = ("application/json", "application/yaml")
_CRD_WATCH_MEDIA = (*_CRD_MEDIA, "application/json;stream=watch")
_PATCH_MEDIA = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_STATUS_TEXT = {"200": "OK", "201": "Created", "202": "Accepted"}
_CONNECT_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def _query(name: str, type_: str, description: str) -> JsonObject:
    return {
        "description": description,
        "in": "query",
        "name": name,
        "schema": {"type": type_, "uniqueItems": True},
    }


def _path_param(name: str, description: str) -> JsonObject:
    return {
        "description": description,
        "in": "path",
        "name": name,
        "required": True,
        "schema": {"type": "string", "uniqueItems": True},
    }


_P = {
    p["name"]: p
    for p in (
        _query(
            "allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type BOOKMARK."
        ),
        _query("container", "string", "The container for which to stream logs or run the command."),
        _query("continue", "string", "The continue option, from a previous paginated list."),
        _query("dryRun", "string", "When present, modifications are not persisted. Valid values: All."),
        _query("fieldManager", "string", "A name for the actor or entity making these changes."),
        _query("fieldSelector", "string", "A selector restricting the returned objects by their fields."),
        _query(
            "fieldValidation",
            "string",
            "How to handle unknown or duplicate fields in the request: Ignore, Warn (default) or Strict.",
        ),
        _query("follow", "boolean", "Follow the log stream of the pod."),
        _query("force", "boolean", "Force Apply requests: re-acquire fields owned by other managers."),
        _query(
            "gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."
        ),
        _query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "Delete a corrupt object that cannot be read from storage (unsafe).",
        ),
        _query("labelSelector", "string", "A selector restricting the returned objects by their labels."),
        _query("limit", "integer", "The maximum number of responses to return for a list call."),
        _query("limitBytes", "integer", "The number of bytes to read from the server before ending the log."),
        _query("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
        _query("previous", "boolean", "Return the logs of the previous terminated container."),
        _query("propagationPolicy", "string", "Whether and how garbage collection is performed."),
        _query(
            "resourceVersion", "string", "Constrains which resource versions the request may be served from."
        ),
        _query("resourceVersionMatch", "string", "How resourceVersion is applied to list calls."),
        _query(
            "sendInitialEvents", "boolean", "Start a watch stream with synthetic events for existing objects."
        ),
        _query("sinceSeconds", "integer", "Only return logs newer than this many seconds."),
        _query("tailLines", "integer", "The number of lines from the end of the log to show."),
        _query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        _query("timestamps", "boolean", "Prefix every line of log output with a timestamp."),
        _query("watch", "boolean", "Watch for changes to the described resources."),
        _query("command", "string", "The command to execute."),
        _query("stderr", "boolean", "Redirect the standard error stream of the container."),
        _query("stdin", "boolean", "Redirect the standard input stream of the container."),
        _query("stdout", "boolean", "Redirect the standard output stream of the container."),
        _query("tty", "boolean", "Allocate a terminal for the exec call."),
        _query("ports", "integer", "List of ports to forward."),
        _query("path", "string", "Path is the URL path to use for the current proxy request."),
    )
}


def _params(*names: str) -> list[JsonObject]:
    return [_P[n] for n in names]


_WRITE_PARAMS = _params("dryRun", "fieldManager", "fieldValidation")
_PATCH_PARAMS = _params("dryRun", "fieldManager", "fieldValidation", "force")
_DELETE_PARAMS = _params(
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
)
_LIST_PARAMS = _params(
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
_DELETE_COLLECTION_PARAMS = _params(
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
)
_SUBRESOURCE_PARAMS = {
    "log": _params(
        "container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines", "timestamps"
    ),
    "attach": _params("container", "stderr", "stdin", "stdout", "tty"),
    "exec": _params("command", "container", "stderr", "stdin", "stdout", "tty"),
    "portforward": _params("ports"),
}
_PRETTY = _query("pretty", "string", "If 'true', then the output is pretty printed.")
_NAMESPACE = _path_param("namespace", "object name and auth scope, such as for teams and projects")
_SECURITY = {
    "BearerToken": {
        "description": "Bearer Token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey",
    }
}

# Subresources served with the object's own schema, and the ones with a schema of their own:
# name -> (actions, (group, version, kind) of the body).
_SAME_KIND = {
    "status": ("read", "replace", "patch"),
    "ephemeralcontainers": ("read", "replace", "patch"),
    "finalize": ("replace",),
}
_OTHER_KIND = {
    "scale": (("read", "replace", "patch"), ("autoscaling", "v1", "Scale")),
    "binding": (("create",), ("", "v1", "Binding")),
    "eviction": (("create",), ("policy", "v1", "Eviction")),
    "token": (("create",), ("authentication.k8s.io", "v1", "TokenRequest")),
}
_CONNECT_OPTIONS = {
    "attach": "AttachOptions",
    "exec": "ExecOptions",
    "portforward": "PortForwardOptions",
    "proxy": "ProxyOptions",
}


def to_openapi_schema(node: Mapping[str, Any], refs: set[str]) -> JsonObject:
    """One JSON-schema node in OpenAPI 3.0 form; the names of the definitions it references go into `refs`."""
    out: JsonObject = {}
    ref: str | None = None
    for key, value in node.items():
        if key in _JSON_SCHEMA_ONLY:
            continue
        if key == "$ref":
            ref = str(value).rsplit("/", 1)[-1]
        elif key == "type":
            types = [t for t in value if t != "null"] if isinstance(value, list) else [value]
            if len(types) == 1:
                out["type"] = types[0]
            elif len(types) > 1:
                out.setdefault("anyOf", [{"type": t} for t in types])
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {name: to_openapi_schema(child, refs) for name, child in value.items()}
        elif key in _SUBSCHEMA and isinstance(value, Mapping):
            out[key] = to_openapi_schema(value, refs)
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [to_openapi_schema(v, refs) if isinstance(v, Mapping) else v for v in value]
        elif key == "additionalProperties" and value is False:
            continue
        elif key == "enum" and isinstance(value, list):
            if values := [v for v in value if v is not None]:
                out[key] = values
        else:
            out[key] = value
    if ref is None:
        return out
    refs.add(ref)
    target = {"$ref": _SCHEMAS + ref}
    return {"allOf": [target], **out} if out else target


def _ref(name: str) -> JsonObject:
    return {"$ref": _SCHEMAS + name}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """The name kube-apiserver gives a CRD kind's schema: reversed group, version, kind."""
    return ".".join([*reversed(group.split(".")), version, kind])


def gv_path(group: str, version: str) -> str:
    """The group-version's path under /openapi/v3."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _camel(text: str, capitalize: bool) -> str:
    """kube-apiserver's operation-id casing: drop punctuation, capitalizing the letter after it."""
    out = []
    for i, ch in enumerate(text):
        if ch.isalpha() or ch == "_" or (i and ch.isdigit()):
            out.append(ch.upper() if capitalize else ch)
            capitalize = False
        else:
            capitalize = True
    return "".join(out)


def _responses(schema: JsonObject, codes: Iterable[str], media: Iterable[str]) -> JsonObject:
    content = {m: {"schema": schema} for m in media}
    responses: JsonObject = {code: {"content": content, "description": _STATUS_TEXT[code]} for code in codes}
    responses["401"] = {"description": "Unauthorized"}
    return responses


def _article(kind: str) -> str:
    return "an" if kind[:1].lower() in "aeiou" else "a"


def _crd_extensions(node: JsonObject) -> None:
    """Add in place what kube-apiserver's CRD builder adds: int-or-string alternatives, embedded TypeMeta."""
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    props = node.get("properties")
    if isinstance(props, dict):
        for child in props.values():
            _crd_extensions(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _crd_extensions(node[key])
    if node.get("x-kubernetes-embedded-resource"):
        props = node["properties"] = dict(props or {})
        props["apiVersion"] = _API_VERSION
        props["kind"] = _KIND
        props["metadata"] = {"allOf": [_ref(OBJECT_META)], "description": _OBJECT_METADATA}
        required = list(node.get("required") or ())
        node["required"] = required + [k for k in ("kind", "apiVersion") if k not in required]


@dataclass
class _Document:
    types: tuple[ResourceType, ...]
    generation: int
    body: bytes
    hash: str


class OpenApi:
    """Serves `GET /openapi/v3` (`index`) and `GET /openapi/v3/<path>` (`document`)."""

    def __init__(self, catalog: SchemaCatalog, registry: ResourceRegistry) -> None:
        self._catalog = catalog
        self._registry = registry
        self._definitions: dict[str, tuple[JsonObject, frozenset[str]]] = {}
        self._generation = -1
        self._served: dict[str, tuple[str, str]] = {}
        self._documents: dict[str, _Document] = {}
        self._index: JsonObject | None = None

    def index(self) -> JsonObject:
        self._sync()
        if self._index is None:
            paths = {
                path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={self._document(path, gv).hash}"}
                for path, gv in self._served.items()
            }
            self._index = {"paths": paths}
        return self._index

    def document(self, path: str) -> tuple[bytes, str] | None:
        """The document at `path` ("api/v1", "apis/apps/v1") and its hash; None for a GV not served."""
        self._sync()
        path = path.strip("/")
        gv = self._served.get(path)
        if gv is None:
            return None
        document = self._document(path, gv)
        return document.body, document.hash

    def _sync(self) -> None:
        generation = self._registry.generation
        if generation == self._generation:
            return
        self._generation = generation
        self._index = None
        self._served = {
            gv_path(group, version): (group, version)
            for group, versions in self._registry.group_versions().items()
            for version in versions
        }
        self._documents = {p: d for p, d in self._documents.items() if p in self._served}

    def _document(self, path: str, gv: tuple[str, str]) -> _Document:
        cached = self._documents.get(path)
        if cached is not None and cached.generation == self._generation:
            return cached
        types = tuple(self._registry.types_in(*gv))
        if (
            cached is not None
            and len(cached.types) == len(types)
            and all(a is b for a, b in zip(cached.types, types, strict=True))
        ):
            cached.generation = self._generation
            return cached
        body = orjson.dumps(self._build(gv[0], gv[1], types), option=orjson.OPT_SORT_KEYS)
        document = _Document(types, self._generation, body, hashlib.sha512(body).hexdigest().upper())
        self._documents[path] = document
        return document

    def _definition(self, name: str) -> tuple[JsonObject, frozenset[str]] | None:
        converted = self._definitions.get(name)
        if converted is None:
            raw = self._catalog.definitions.get(name)
            if raw is None:
                return None
            refs: set[str] = set()
            schema = _OVERRIDES.get(name) or to_openapi_schema(raw, refs)
            if "x-kubernetes-group-version-kind" in schema:
                # The package pins apiVersion and kind with enums; kube-apiserver does not.
                for prop in ("apiVersion", "kind"):
                    schema.get("properties", {}).get(prop, {}).pop("enum", None)
            converted = self._definitions[name] = (schema, frozenset(refs))
        return converted

    def _closure(self, schemas: JsonObject, roots: Iterable[str]) -> None:
        pending = [name for name in roots if name not in schemas]
        while pending:
            name = pending.pop()
            if name in schemas:
                continue
            converted = self._definition(name)
            if converted is not None:
                schemas[name] = converted[0]
                pending.extend(converted[1])

    def _build(self, group: str, version: str, types: Iterable[ResourceType]) -> JsonObject:
        builder = _PathBuilder(self._catalog, group, version)
        schemas: JsonObject = {}
        roots: set[str] = {STATUS, DELETE_OPTIONS, PATCH, API_RESOURCE_LIST}
        for rt in types:
            kind: str | None
            list_kind: str | None
            if rt.is_custom:
                kind, list_kind = self._crd_schemas(rt, version, schemas)
                roots.update((OBJECT_META, LIST_META))
            else:
                kind = self._catalog.definition_name(group, version, rt.kind)
                list_kind = self._catalog.definition_name(group, version, rt.kind + "List")
            roots.update(name for name in (kind, list_kind) if name)
            roots.update(builder.add(rt, kind, list_kind))
        self._closure(schemas, roots)
        return {
            "components": {"schemas": schemas, "securitySchemes": _SECURITY},
            "info": {"title": "Kubernetes", "version": KUBERNETES_SCHEMA_VERSION},
            "openapi": "3.0.0",
            "paths": builder.paths,
        }

    def _crd_schemas(self, rt: ResourceType, version: str, schemas: JsonObject) -> tuple[str, str]:
        """Add the CRD kind's schema and its list's to `schemas`; return their names."""
        name = crd_definition_name(rt.group, version, rt.kind)
        list_name = crd_definition_name(rt.group, version, rt.kind + "List")
        source = rt.crd_schemas.get(version)
        if source is None:
            kind: JsonObject = {"type": "object"}
        else:
            kind = to_openapi_schema(source.raw, set())
            _crd_extensions(kind)
            props = kind["properties"] = dict(kind.get("properties") or {})
            props["apiVersion"] = _API_VERSION
            props["kind"] = _KIND
            props["metadata"] = {"allOf": [_ref(OBJECT_META)], "description": _OBJECT_METADATA}
        kind["x-kubernetes-group-version-kind"] = [_gvk(rt.group, version, rt.kind)]
        schemas[name] = kind
        schemas[list_name] = {
            "description": f"{rt.kind}List is a list of {rt.kind}",
            "properties": {
                "apiVersion": _API_VERSION,
                "items": {
                    "description": f"List of {rt.plural}. More info: {_CONVENTIONS}",
                    "items": _ref(name),
                    "type": "array",
                },
                "kind": _KIND,
                "metadata": {"allOf": [_ref(LIST_META)], "description": _LIST_METADATA},
            },
            "required": ["items"],
            "x-kubernetes-group-version-kind": [_gvk(rt.group, version, rt.kind + "List")],
        }
        return name, list_name


class _PathBuilder:
    """The `paths` of one group-version's document, as kube-apiserver's route installer lays them out."""

    def __init__(self, catalog: SchemaCatalog, group: str, version: str) -> None:
        self._catalog = catalog
        self.group = group
        self.version = version
        self.prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        trimmed = (group or "core").removesuffix(".k8s.io")
        self.id_prefix = _camel(trimmed, True) + _camel(version, True)
        self.tags = [f"{_camel(trimmed, False)}_{_camel(version, False)}"]
        self.paths: JsonObject = {
            self.prefix + "/": {
                "get": {
                    "description": "get available resources",
                    "operationId": f"get{self.id_prefix}APIResources",
                    "responses": _responses(_ref(API_RESOURCE_LIST), ("200",), _MEDIA),
                    "tags": self.tags,
                }
            }
        }

    def add(self, rt: ResourceType, kind: str | None, list_kind: str | None) -> set[str]:
        """Add the paths serving `rt`; return the names of the other schemas they reference."""
        custom = rt.is_custom
        media, watch_media = (_CRD_MEDIA, _CRD_WATCH_MEDIA) if custom else (_MEDIA, _WATCH_MEDIA)
        scope = "Namespaced" if rt.namespaced else ""
        gvk = _gvk(self.group, self.version, rt.kind)
        obj = _ref(kind) if kind else {"type": "object"}
        collection = (
            f"{self.prefix}/namespaces/{{namespace}}/{rt.plural}"
            if rt.namespaced
            else f"{self.prefix}/{rt.plural}"
        )
        item = collection + "/{name}"
        ops = _Ops(self, rt, gvk, media, custom)
        referenced: set[str] = set()

        if rt.namespaced and "list" in rt.verbs:
            self._put(
                f"{self.prefix}/{rt.plural}",
                [],
                {
                    "get": ops.listing(
                        f"list{self.id_prefix}{rt.kind}ForAllNamespaces", list_kind, watch_media
                    ),
                },
            )
        collection_ops: JsonObject = {}
        if "list" in rt.verbs:
            collection_ops["get"] = ops.listing(
                f"list{self.id_prefix}{scope}{rt.kind}", list_kind, watch_media
            )
        if "create" in rt.verbs:
            collection_ops["post"] = ops.create(f"create{self.id_prefix}{scope}{rt.kind}", obj, "")
        if "deletecollection" in rt.verbs:
            collection_ops["delete"] = ops.delete_collection(
                f"delete{self.id_prefix}Collection{scope}{rt.kind}"
            )
        self._put(collection, self._scope_params(rt, named=False), collection_ops)

        item_ops: JsonObject = {}
        if "get" in rt.verbs:
            item_ops["get"] = ops.read(f"read{self.id_prefix}{scope}{rt.kind}", obj, "")
        if "update" in rt.verbs:
            item_ops["put"] = ops.replace(f"replace{self.id_prefix}{scope}{rt.kind}", obj, "")
        if "patch" in rt.verbs:
            item_ops["patch"] = ops.patch(f"patch{self.id_prefix}{scope}{rt.kind}", obj, "")
        if "delete" in rt.verbs:
            item_ops["delete"] = ops.delete(f"delete{self.id_prefix}{scope}{rt.kind}")
        self._put(item, self._scope_params(rt, named=True), item_ops)

        for sub in rt.subresources:
            path = f"{item}/{sub}"
            suffix = f"{scope}{rt.kind}{_camel(sub, True)}"
            if sub in _SAME_KIND:
                self._put(
                    path, self._scope_params(rt, named=True), ops.actions(_SAME_KIND[sub], suffix, obj, sub)
                )
            elif sub in _OTHER_KIND:
                actions, (group, version, other) = _OTHER_KIND[sub]
                name = self._catalog.definition_name(group, version, other)
                if name is None:
                    continue
                referenced.add(name)
                sub_ops = _Ops(self, rt, _gvk(group, version, other), media, custom)
                self._put(
                    path,
                    self._scope_params(rt, named=True),
                    sub_ops.actions(actions, suffix, _ref(name), sub),
                )
            elif sub == "log":
                self._put(
                    path,
                    self._scope_params(rt, named=True),
                    {
                        "get": ops.operation(
                            "get",
                            f"read{self.id_prefix}{suffix}",
                            f"read log of the specified {rt.kind}",
                            {"type": "string"},
                            ("200",),
                            ("text/plain", *media),
                            _SUBRESOURCE_PARAMS["log"],
                        ),
                    },
                )
            elif sub in _CONNECT_OPTIONS:
                self._connect(rt, item, sub, scope)
        return referenced

    def _connect(self, rt: ResourceType, item: str, sub: str, scope: str) -> None:
        gvk = _gvk(self.group, self.version, rt.kind + _CONNECT_OPTIONS[sub])
        ops = _Ops(self, rt, gvk, ("*/*",), rt.is_custom)
        methods = _CONNECT_METHODS if sub == "proxy" else ("get", "post")
        variants = [("", self._scope_params(rt, named=True))]
        if sub == "proxy":
            variants.append(("WithPath", [*variants[0][1], _path_param("path", "path to the resource")]))
        for with_path, params in variants:
            operations = {
                method: ops.operation(
                    "connect",
                    f"connect{self.id_prefix}{method.title()}{scope}{rt.kind}{_camel(sub, True)}{with_path}",
                    f"connect {method.upper()} requests to {sub} of {rt.kind}",
                    {"type": "string"},
                    ("200",),
                    ("*/*",),
                    _params("path") if sub == "proxy" and not with_path else _SUBRESOURCE_PARAMS.get(sub, []),
                )
                for method in methods
            }
            self._put(f"{item}/{sub}" + ("/{path}" if with_path else ""), params, operations)

    def _scope_params(self, rt: ResourceType, named: bool) -> list[JsonObject]:
        params = [_path_param("name", f"name of the {rt.kind}")] if named else []
        if rt.namespaced:
            params.append(_NAMESPACE)
        return params

    def _put(self, path: str, params: list[JsonObject], operations: JsonObject) -> None:
        if operations:
            self.paths[path] = {**operations, "parameters": [*params, _PRETTY]}


class _Ops:
    """The operations of one resource (or subresource) whose body and responses share a GVK."""

    def __init__(
        self, paths: _PathBuilder, rt: ResourceType, gvk: dict[str, str], media: tuple[str, ...], custom: bool
    ) -> None:
        self._paths = paths
        self._rt = rt
        self._gvk = gvk
        self._media = media
        self._custom = custom

    def operation(
        self,
        action: str,
        operation_id: str,
        description: str,
        response: JsonObject,
        codes: Iterable[str],
        media: Iterable[str],
        params: list[JsonObject],
        body: JsonObject | None = None,
    ) -> JsonObject:
        op: JsonObject = {
            "description": description,
            "operationId": operation_id,
            "responses": _responses(response, codes, media),
            "tags": self._paths.tags,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": self._gvk,
        }
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = body
        return op

    def _body(self, schema: JsonObject, required: bool = True) -> JsonObject:
        media = _CRD_MEDIA if self._custom else ("*/*",)
        body: JsonObject = {"content": {m: {"schema": schema} for m in media}}
        if required:
            body["required"] = True
        return body

    def _of(self, sub: str) -> str:
        return f" {sub} of" if sub else ""

    def listing(self, operation_id: str, list_kind: str | None, media: tuple[str, ...]) -> JsonObject:
        schema = _ref(list_kind) if list_kind else {"type": "object"}
        return self.operation(
            "list",
            operation_id,
            f"list or watch objects of kind {self._rt.kind}",
            schema,
            ("200",),
            media,
            _LIST_PARAMS,
        )

    def create(self, operation_id: str, schema: JsonObject, sub: str) -> JsonObject:
        return self.operation(
            "post",
            operation_id,
            f"create{self._of(sub)} {_article(self._rt.kind)} {self._rt.kind}",
            schema,
            ("200", "201", "202"),
            self._media,
            _WRITE_PARAMS,
            self._body(schema),
        )

    def read(self, operation_id: str, schema: JsonObject, sub: str) -> JsonObject:
        return self.operation(
            "get",
            operation_id,
            f"read{self._of(sub)} the specified {self._rt.kind}",
            schema,
            ("200",),
            self._media,
            [],
        )

    def replace(self, operation_id: str, schema: JsonObject, sub: str) -> JsonObject:
        return self.operation(
            "put",
            operation_id,
            f"replace{self._of(sub)} the specified {self._rt.kind}",
            schema,
            ("200", "201"),
            self._media,
            _WRITE_PARAMS,
            self._body(schema),
        )

    def patch(self, operation_id: str, schema: JsonObject, sub: str) -> JsonObject:
        kinds = _PATCH_MEDIA[:-1] if self._custom else _PATCH_MEDIA
        body = {"content": {m: {"schema": _ref(PATCH)} for m in kinds}, "required": True}
        return self.operation(
            "patch",
            operation_id,
            f"partially update{self._of(sub)} the specified {self._rt.kind}",
            schema,
            ("200", "201"),
            self._media,
            _PATCH_PARAMS,
            body,
        )

    def delete(self, operation_id: str) -> JsonObject:
        return self.operation(
            "delete",
            operation_id,
            f"delete {_article(self._rt.kind)} {self._rt.kind}",
            _ref(STATUS),
            ("200", "202"),
            self._media,
            _DELETE_PARAMS,
            self._body(_ref(DELETE_OPTIONS), required=False),
        )

    def delete_collection(self, operation_id: str) -> JsonObject:
        return self.operation(
            "deletecollection",
            operation_id,
            f"delete collection of {self._rt.kind}",
            _ref(STATUS),
            ("200",),
            self._media,
            _DELETE_COLLECTION_PARAMS,
            self._body(_ref(DELETE_OPTIONS), required=False),
        )

    def actions(self, actions: Iterable[str], suffix: str, schema: JsonObject, sub: str) -> JsonObject:
        """Operations of a subresource: `actions` among read, replace, patch and create."""
        prefix = self._paths.id_prefix
        method = {
            "read": ("get", self.read),
            "replace": ("put", self.replace),
            "patch": ("patch", self.patch),
            "create": ("post", self.create),
        }
        return {method[a][0]: method[a][1](f"{a}{prefix}{suffix}", schema, sub) for a in actions}
