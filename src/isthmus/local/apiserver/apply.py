"""Server-side apply and `metadata.managedFields`, as Kubernetes' structured-merge-diff does them.

Contract (pure functions: inputs are never mutated; `now` is RFC 3339 UTC with second precision):

- `parse_applied(body)`: the configuration an `application/apply-patch+yaml` request sends (YAML or JSON);
  `{}` for an empty body; 400 when it does not parse or is not an object.
- `server_side_apply(live, applied, manager, force, schema, now, *, api_version=None, kind=None,
  subresource="", has_status=False)`: the object to store once `manager` applied `applied` to `live` (None
  on create), `metadata.managedFields` included. It shares nothing with the inputs and goes through the
  update path like an update body (preconditions, server-set metadata, status reset, validation), never
  through `record_update`. The type expected (`api_version`, `kind`) defaults to `live`'s. 400 when
  `applied` is not an object of that type, sets `metadata.managedFields`, or does not fit `schema`
  (undeclared field, list-map item without its keys, duplicate keys); 409 `Conflict`, one
  `FieldManagerConflict` cause per field, when it changes fields other managers own and `force` is false;
  422 when `manager` is not a valid field manager.
- `record_update(old, new, manager, subresource, schema, now, *, api_version=None, has_status=False)`: `new`
  (what a create, update or patch stores, `old` None on create) with `metadata.managedFields` giving
  `manager` ("unknown" when empty) the fields it changed, operation `Update`. Call it with the object as it
  will be stored. `api_version` (the request's) defaults to `new["apiVersion"]`. Objects stored without
  managedFields stay without until applied to; managedFields in `new` replace the stored ones (`[]` or `[{}]`
  clear them), except on subresources.
- `manager_name(field_manager, user_agent)`: the manager of a write that names none: the user agent's product.
- `validate_field_manager(manager, options_kind=..., apply=...)`: 422 as Kubernetes validates `fieldManager`.

Internally a field set is a set of paths, tuples of fieldsV1 path elements: `f:<field>`, `k:<json>` (a
list-map item by its keys), `v:<json>` (a set item). Lists typed `map` (or untyped with a strategic-merge key)
and `set` merge by item, maps by key unless `x-kubernetes-map-type: atomic`; anything else is a leaf the
applier replaces. Nobody owns apiVersion, kind, metadata name, namespace and server-set fields; `status` on
the main resource of a type with a status subresource, and all but `status` and `metadata` on the status
subresource, are not owned either. Differences from Kubernetes: sets recorded at another API version are
compared as if written at this one (no conversion); the scale subresource's field mapping and unions are not
done; a create owns the object fields it sets, `spec` included (Kubernetes compares with the typed empty
object, in which value structs already exist).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any, Final

import orjson
import yaml

from isthmus.local.apiserver.errors import (
    Cause,
    StatusError,
    bad_request,
    field_invalid,
    field_required,
    invalid,
)
from isthmus.local.apiserver.schema import Schema

JsonObject = dict[str, Any]
Path = tuple[str, ...]
# Manager identity: (manager, operation, apiVersion for updaters only, subresource).
_Key = tuple[str, str, str, str]
_Tree = dict[str, "_Tree"]

APPLY: Final = "Apply"
UPDATE: Final = "Update"
LAST_APPLIED_ANNOTATION: Final = "kubectl.kubernetes.io/last-applied-configuration"
BEFORE_FIRST_APPLY: Final = "before-first-apply"
MAX_UPDATE_MANAGERS: Final = 10
_ANCIENT_CHANGES = "ancient-changes"
_FIELD_MANAGER_MAX_BYTES = 128
_ANNOTATIONS_MAX_BYTES = 256 * 1024
_MEMBER = "."
_MISSING: Final[Any] = object()

# Never owned (Kubernetes strips them from the current manager's set; a plain difference, not recursive).
_STRIPPED: Final = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in (
            "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
            "managedFields", "resourceVersion",
        )
    }
)  # fmt: skip
# Key fields Kubernetes' OpenAPI defaults but the published JSON schemas do not say so.
_KEY_DEFAULTS: Final[Mapping[str, Any]] = {"protocol": "TCP"}
_GO_ESCAPES: Final = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# -- schemas ------------------------------------------------------------------------------------------------

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META_STRINGS = (
    "creationTimestamp", "deletionTimestamp", "generateName", "name", "namespace", "resourceVersion",
    "selfLink", "uid",
)  # fmt: skip
_OBJECT_META = Schema(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{name: {"type": "string"} for name in _META_STRINGS},
            "annotations": _STRING_MAP,
            "labels": _STRING_MAP,
            "deletionGracePeriodSeconds": {"type": "integer"},
            "generation": {"type": "integer"},
            "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "managedFields": {
                "type": "array",
                "items": {"type": "object"},
                "x-kubernetes-list-type": "atomic",
            },
            "ownerReferences": {
                "type": "array",
                "items": {"type": "object", "x-kubernetes-map-type": "atomic"},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["uid"],
            },
        },
    },
    {},
)
_STRING = Schema({"type": "string"}, {})


class _TypedObject(Schema):
    """An object schema with `apiVersion`, `kind` and a typed `metadata`, as Kubernetes types every object
    (CRD schemas and objects without a schema may leave them out or free-form)."""

    def __init__(self, inner: Schema | None) -> None:
        super().__init__(
            inner.raw if inner is not None else {"x-kubernetes-preserve-unknown-fields": True}, {}
        )
        self.inner = inner

    @cached_property
    def properties(self) -> Mapping[str, Schema]:
        props = dict(self.inner.properties) if self.inner is not None else {}
        props.setdefault("apiVersion", _STRING)
        props.setdefault("kind", _STRING)
        if not _is_object_meta(props.get("metadata")):
            props["metadata"] = _OBJECT_META
        return props


def _is_object_meta(schema: Schema | None) -> bool:
    """Kubernetes' own ObjectMeta schema (a CRD's may only say something of name and generateName)."""
    return schema is not None and "managedFields" in schema.properties


def _root_schema(schema: Schema | None) -> Schema:
    if schema is not None:
        props = schema.properties
        if "apiVersion" in props and "kind" in props and _is_object_meta(props.get("metadata")):
            return schema
    return _TypedObject(schema)


def _child(schema: Schema | None, name: str) -> tuple[Schema | None, bool] | None:
    """The schema of field or key `name` (None: untyped) and whether it is a declared field; None when the
    schema does not allow it."""
    if schema is None:
        return None, False
    prop = schema.properties.get(name)
    if prop is not None:
        return prop, True
    extra = schema.additional_properties
    if extra is not None:
        return extra, False
    if schema.preserves_unknown_fields:
        return None, False
    return None


def _child_schema(schema: Schema | None, name: str) -> Schema | None:
    if schema is None:
        return None
    return schema.properties.get(name) or schema.additional_properties


def _granular(schema: Schema | None) -> bool:
    return schema is None or schema.map_type != "atomic"


def _list_keys(schema: Schema | None) -> tuple[str, ...] | None:
    """The keys of an associative list (`()` for a set), None for an atomic one."""
    if schema is None:
        return None
    list_type = schema.list_type
    if list_type == "map":
        return schema.list_map_keys
    if list_type == "set":
        return ()
    merge_key = schema.patch_merge_key
    if list_type is None and merge_key and "merge" in schema.patch_strategies:
        return (merge_key,)
    return None


# -- path elements ------------------------------------------------------------------------------------------


def _go_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_numbers(v) for v in value]
    return value


def _go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, keys sorted, HTML characters escaped."""
    return orjson.dumps(_go_numbers(value), option=orjson.OPT_SORT_KEYS).decode().translate(_GO_ESCAPES)


def _go_string(value: Any) -> str:
    """A value as structured-merge-diff prints it in paths."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(_go_string(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ";".join(f"{k}={_go_string(v)}" for k, v in value.items()) + "}"
    return orjson.dumps(str(value)).decode()


def _pe_string(pe: str) -> str:
    tag, body = pe[0], pe[2:]
    if tag == "f":
        return "." + body
    if tag == "i":
        return f"[{body}]"
    value = orjson.loads(body)
    if tag == "v":
        return f"[={_go_string(value)}]"
    return "[" + ",".join(f"{k}={_go_string(v)}" for k, v in value.items()) + "]"


def _path_string(path: Path) -> str:
    """A path as Kubernetes prints it: `.spec.containers[name="c"].image`."""
    return "".join(_pe_string(pe) for pe in path)


def _value_order(value: Any) -> tuple[Any, ...]:
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    if isinstance(value, list):
        return (3, tuple(_value_order(v) for v in value))
    if isinstance(value, dict):
        return (4, tuple((k, _value_order(v)) for k, v in sorted(value.items())))
    return (5,)


@lru_cache(maxsize=8192)
def _tagged_order(pe: str) -> tuple[Any, ...]:
    tag, body = pe[0], pe[2:]
    if tag == "i":
        return (3, int(body))
    value = orjson.loads(body)
    if tag == "v":
        return (2, _value_order(value))
    return (1, tuple((k, _value_order(v)) for k, v in value.items()))


def _pe_order(pe: str) -> tuple[Any, ...]:
    """structured-merge-diff's order: fields by name, then list-map keys, set values, indexes."""
    return (0, pe[2:]) if pe[0] == "f" else _tagged_order(pe)


@lru_cache(maxsize=8192)
def _canonical_tagged(key: str) -> str:
    tag, body = key[:2], key[2:]
    if tag == "i:":
        return f"i:{int(body)}"
    if tag in ("k:", "v:"):
        value = orjson.loads(body)
        if tag == "k:" and not isinstance(value, dict):
            raise ValueError(f"expected key value pairs in {key!r}")
        return tag + _go_json(value)
    raise ValueError(f"unknown path element {key!r}")


def _canonical_pe(key: str) -> str:
    return key if key[:2] == "f:" else _canonical_tagged(key)


# -- field sets and fieldsV1 --------------------------------------------------------------------------------


def _tree(paths: Iterable[Path]) -> _Tree:
    """Paths as nested dicts, `.` marking members (fieldsV1's shape, with `.` on leaves too)."""
    root: _Tree = {}
    for path in paths:
        node = root
        for pe in path:
            child = node.get(pe)
            if child is None:
                child = node[pe] = {}
            node = child
        node[_MEMBER] = {}
    return root


def _emit(node: _Tree) -> JsonObject:
    out: JsonObject = {}
    if len(node) == 1 and _MEMBER in node:
        return out
    if _MEMBER in node:
        out[_MEMBER] = {}
    for pe in sorted(k for k in node if k[0] == "f"):  # same prefix: the names' order
        out[pe] = _emit(node[pe])
    for pe in sorted((k for k in node if k[0] not in "f."), key=_pe_order):
        out[pe] = _emit(node[pe])
    return out


def _encode_fields(paths: Iterable[Path]) -> JsonObject:
    return _emit(_tree(paths))


def _decode_fields(fields: Any) -> set[Path]:
    """The paths of a fieldsV1 object; ValueError when it is not one."""
    if fields is None:
        return set()
    if not isinstance(fields, dict):
        raise ValueError("fieldsV1 must be an object")
    out: set[Path] = set()
    stack: list[tuple[Path, JsonObject]] = [((), fields)]
    while stack:
        prefix, node = stack.pop()
        for key, child in node.items():
            if key == _MEMBER:
                if prefix:
                    out.add(prefix)
                continue
            if not isinstance(key, str) or len(key) < 2 or not isinstance(child, dict):
                raise ValueError(f"invalid fieldsV1 entry {key!r}")
            path = (*prefix, _canonical_pe(key))
            if child:
                stack.append((path, child))
            else:
                out.add(path)
    return out


def _iterate(paths: Iterable[Path]) -> list[Path]:
    """Paths in structured-merge-diff's iteration order (each level's members, then its children)."""
    out: list[Path] = []

    def walk(node: _Tree, prefix: Path) -> None:
        children = sorted((k for k in node if k != _MEMBER), key=_pe_order)
        out.extend((*prefix, pe) for pe in children if _MEMBER in node[pe])
        for pe in children:
            if len(node[pe]) > (_MEMBER in node[pe]):
                walk(node[pe], (*prefix, pe))

    walk(_tree(paths), ())
    return out


class _ItemError(Exception):
    pass


def _key_default(item_schema: Schema | None, name: str) -> Any:
    prop = item_schema.properties.get(name) if item_schema is not None else None
    if prop is not None and "default" in prop.raw:
        return prop.raw["default"]
    return _KEY_DEFAULTS.get(name, _MISSING)


def _item_pe(item: Any, keys: tuple[str, ...], item_schema: Schema | None) -> str:
    if not keys:
        if isinstance(item, dict):
            raise _ItemError("associative list without keys has an element that's a map type")
        if isinstance(item, list):
            raise _ItemError("not supported: associative list with lists as elements")
        if item is None:
            raise _ItemError("associative list without keys has an element that's an explicit null")
        return "v:" + _go_json(item)
    if item is None:
        raise _ItemError("associative list with keys may not have a null element")
    if not isinstance(item, dict):
        raise _ItemError("associative list with keys may not have non-map elements")
    key: JsonObject = {}
    for name in keys:
        value = item.get(name, _MISSING)
        if value is _MISSING:
            value = _key_default(item_schema, name)
            if value is _MISSING:
                raise _ItemError(
                    f'associative list with keys has an element that omits key field "{name}" '
                    "(and doesn't have default value)"
                )
        key[name] = value
    return "k:" + _go_json(key)


def _keyed(
    items: list[Any], schema: Schema | None, errors: list[str] | None = None, path: Path = ()
) -> tuple[list[str], Schema | None] | None:
    """The path element of each item and the item schema; None for an atomic list, or (lenient, `errors`
    None) one with an item that has no key, or (strict) after reporting why to `errors`."""
    keys = _list_keys(schema)
    if keys is None or schema is None:
        return None
    item_schema = schema.items
    pes: list[str] = []
    for i, item in enumerate(items):
        try:
            pes.append(_item_pe(item, keys, item_schema))
        except _ItemError as exc:
            if errors is not None:
                errors.append(f"{_path_string(path)}: element {i}: {exc}")
            return None
    return pes, item_schema


def _field_set(
    value: Any, schema: Schema | None, path: Path, out: set[Path], errors: list[str] | None, named: bool
) -> None:
    """Add the fields `value` sets to `out`, as structured-merge-diff's ToFieldSet; `named` adds declared
    fields with members below them too (EnsureNamedFieldsAreMembers). With `errors`, what does not fit the
    schema is reported there instead of being taken as untyped."""
    if isinstance(value, dict) and _granular(schema):
        for key, child in value.items():
            p = (*path, "f:" + key)
            resolved = _child(schema, key)
            if resolved is None:
                if errors is not None:
                    errors.append(f"{_path_string(p)}: field not declared in schema")
                    continue
                resolved = (None, False)
            child_schema, declared = resolved
            size = len(out)
            _field_set(child, child_schema, p, out, errors, named)
            if not declared or child is None or child == {} or (named and len(out) > size):
                out.add(p)
        return
    if isinstance(value, list):
        keyed = _keyed(value, schema, errors, path)
        if keyed is None and errors is not None and _list_keys(schema) is not None:
            return  # an item without its keys, reported
        if keyed is not None:
            pes, item_schema = keyed
            seen: set[str] = set()
            duplicates: set[str] = set()
            for pe in pes:
                (duplicates if pe in seen else seen).add(pe)
            if duplicates and errors is not None:
                errors.extend(
                    f"{_path_string(path)}: duplicate entries for key {_pe_string(pe)}" for pe in duplicates
                )
                return
            for item, pe in zip(value, pes, strict=True):
                p = (*path, pe)
                if pe not in duplicates:  # duplicated items are owned whole
                    _field_set(item, item_schema, p, out, errors, named)
                out.add(p)
            return
    out.add(path)


def _full_set(obj: Any, root: Schema) -> set[Path]:
    out: set[Path] = set()
    if obj is not _MISSING:
        _field_set(obj, root, (), out, None, True)
    return out


def _with_named(paths: set[Path], root: Schema) -> set[Path]:
    """`paths` plus the declared fields above them (EnsureNamedFieldsAreMembers)."""
    out = set(paths)
    schemas: dict[Path, Schema | None] = {(): root}

    def schema_at(path: Path) -> Schema | None:
        if path not in schemas:
            parent, pe = schema_at(path[:-1]), path[-1]
            if parent is None:
                schemas[path] = None
            else:
                schemas[path] = _child_schema(parent, pe[2:]) if pe[0] == "f" else parent.items
        return schemas[path]

    for path in paths:
        for end in range(1, len(path)):
            prefix = path[:end]
            if prefix in out or prefix[-1][0] != "f":
                continue
            parent = schema_at(prefix[:-1])
            if parent is not None and prefix[-1][2:] in parent.properties:
                out.add(prefix)
    return out


# -- comparing, merging and removing ------------------------------------------------------------------------


@dataclass
class _Diff:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    def without(self, ignored: Callable[[str], bool] | None) -> _Diff:
        if ignored is None:
            return self
        return _Diff(
            *({p for p in s if not ignored(p[0])} for s in (self.added, self.modified, self.removed))
        )


def _nodes(value: Any, schema: Schema | None, path: Path, out: set[Path]) -> None:
    """Every node of a value as a comparison sees them: granular maps and associative lists are not leaves."""
    out.add(path)
    if isinstance(value, dict) and _granular(schema):
        for key, child in value.items():
            if isinstance(child, dict | list):
                _nodes(child, _child_schema(schema, key), (*path, "f:" + key), out)
            else:
                out.add((*path, "f:" + key))
    elif isinstance(value, list) and value:
        keyed = _keyed(value, schema)
        if keyed is not None:
            pes, item_schema = keyed
            seen: set[str] = set()
            for item, pe in zip(value, pes, strict=True):
                if pe not in seen:
                    seen.add(pe)
                    _nodes(item, item_schema, (*path, pe), out)


def _first_items(items: list[Any], pes: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item, pe in zip(items, pes, strict=True):
        found.setdefault(pe, item)
    return found


def _compare(lhs: Any, rhs: Any, schema: Schema | None, path: Path, diff: _Diff) -> None:
    """Record in `diff` what changed from `lhs` to `rhs` (both present; null counts as an empty container)."""
    if lhs == rhs:
        return
    if (
        (isinstance(lhs, dict) or lhs is None)
        and (isinstance(rhs, dict) or rhs is None)
        and (lhs or rhs)
        and _granular(schema)
    ):
        left: JsonObject = lhs or {}
        right: JsonObject = rhs or {}
        for key, value in left.items():
            p = (*path, "f:" + key)
            other = right.get(key, _MISSING)
            if other is _MISSING:
                _nodes(value, _child_schema(schema, key), p, diff.removed)
            else:
                _compare(value, other, _child_schema(schema, key), p, diff)
        for key, value in right.items():
            if key not in left:
                _nodes(value, _child_schema(schema, key), (*path, "f:" + key), diff.added)
        return
    if (isinstance(lhs, list) or lhs is None) and (isinstance(rhs, list) or rhs is None) and (lhs or rhs):
        left_keyed, right_keyed = _keyed(lhs or [], schema), _keyed(rhs or [], schema)
        if left_keyed is not None and right_keyed is not None:
            item_schema = right_keyed[1]
            left_items = _first_items(lhs or [], left_keyed[0])
            right_items = _first_items(rhs or [], right_keyed[0])
            for pe, value in right_items.items():
                other = left_items.get(pe, _MISSING)
                if other is _MISSING:
                    _nodes(value, item_schema, (*path, pe), diff.added)
                else:
                    _compare(other, value, item_schema, (*path, pe), diff)
            for pe, value in left_items.items():
                if pe not in right_items:
                    _nodes(value, item_schema, (*path, pe), diff.removed)
            return
    diff.modified.add(path)
    for value, target in ((lhs, diff.removed), (rhs, diff.added)):
        if isinstance(value, dict | list) and value:
            below: set[Path] = set()
            _nodes(value, schema, path, below)
            below.discard(path)
            target |= below


def _diff(lhs: JsonObject, rhs: JsonObject, root: Schema) -> _Diff:
    """What changed, leaving out the fields nobody owns."""
    diff = _Diff()
    _compare(lhs, rhs, root, (), diff)
    for paths in (diff.added, diff.modified, diff.removed):
        paths -= _STRIPPED
    return diff


def _nonempty_container(value: Any, schema: Schema | None) -> bool:
    if isinstance(value, dict):
        return bool(value) and _granular(schema)
    return isinstance(value, list) and bool(value) and _list_keys(schema) is not None


def _merge(lhs: Any, rhs: Any, schema: Schema | None) -> Any:
    """`rhs` (the configuration) merged into `lhs` (may be _MISSING); _MISSING when the field goes."""
    if rhs is None:
        return lhs if lhs is not _MISSING and _nonempty_container(lhs, schema) else _MISSING
    if isinstance(rhs, dict) and _granular(schema):
        out: JsonObject = dict(lhs) if isinstance(lhs, dict) else {}
        for key, value in rhs.items():
            merged = _merge(out.get(key, _MISSING), value, _child_schema(schema, key))
            if merged is _MISSING:
                out.pop(key, None)
            else:
                out[key] = merged
        return out
    if isinstance(rhs, list) and isinstance(lhs, list) and (rhs or lhs):
        right = _keyed(rhs, schema)
        left = _keyed(lhs, schema)
        if right is not None and left is not None:
            return _merge_list(lhs, left[0], rhs, right[0], right[1])
    return rhs


def _merge_list(
    lhs: list[Any], lhs_pes: list[str], rhs: list[Any], rhs_pes: list[str], item_schema: Schema | None
) -> list[Any]:
    """structured-merge-diff's associative list merge: live items keep their place, configured items come in
    the configuration's order. A live key seen twice merges as absent (the configuration's item wins)."""
    right = dict(zip(rhs_pes, rhs, strict=True))
    left: dict[str, Any] = {}
    for pe, item in zip(lhs_pes, lhs, strict=True):
        left[pe] = _MISSING if pe in left else item
    shared = iter([pe for pe in rhs_pes if pe in left])
    next_shared = next(shared, None)
    out: list[Any] = []
    merged_right: set[str] = set()

    def take(pe: str) -> None:
        merged_right.add(pe)
        value = _merge(left.get(pe, _MISSING), right[pe], item_schema)
        if value is not _MISSING:
            out.append(value)

    li = ri = 0
    while li < len(lhs_pes) or ri < len(rhs_pes):
        if li < len(lhs_pes) and ri < len(rhs_pes):
            pe = lhs_pes[li]
            if pe == rhs_pes[ri]:
                take(pe)
                li, ri = li + 1, ri + 1
                next_shared = next(shared, None)
                continue
            if pe in right and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < len(lhs_pes):
            pe = lhs_pes[li]
            if pe not in right:
                out.append(lhs[li])
                li += 1
                continue
            if pe in merged_right:
                li += 1
                continue
        if ri < len(rhs_pes):
            pe = rhs_pes[ri]
            take(pe)
            ri += 1
            if next_shared == pe:
                next_shared = next(shared, None)
    return out


def _remove(value: Any, tree: _Tree, schema: Schema | None) -> Any:
    """`value` without the members of `tree`; _MISSING when that empties a map or list."""
    if not tree:
        return value
    if isinstance(value, dict) and value and _granular(schema):
        out: JsonObject = {}
        for key, child in value.items():
            sub = tree.get("f:" + key)
            if sub is None:
                out[key] = child
            elif _MEMBER not in sub:
                kept = _remove(child, sub, _child_schema(schema, key))
                if kept is not _MISSING:
                    out[key] = kept
        return out or _MISSING
    if isinstance(value, list) and value:
        keyed = _keyed(value, schema)
        if keyed is not None:
            pes, item_schema = keyed
            items: list[Any] = []
            for item, pe in zip(value, pes, strict=True):
                sub = tree.get(pe)
                if sub is None:
                    items.append(item)
                elif _MEMBER not in sub:
                    kept = _remove(item, sub, item_schema)
                    if kept is not _MISSING:
                        items.append(kept)
            return items or _MISSING
    return value


def _remove_paths(obj: JsonObject, paths: set[Path], root: Schema) -> Any:
    return _remove(obj, _tree(paths), root) if paths else obj


# -- managed fields -----------------------------------------------------------------------------------------


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: set[Path]

    @property
    def key(self) -> _Key:
        return (
            self.manager,
            self.operation,
            "" if self.operation == APPLY else self.api_version,
            self.subresource,
        )

    def to_json(self) -> JsonObject:
        out: JsonObject = {}
        if self.manager:
            out["manager"] = self.manager
        out["operation"] = self.operation
        out["apiVersion"] = self.api_version
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = _encode_fields(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


_Managed = dict[_Key, _Entry]


def _normalize_time(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("time must be a string")
    if _TIME.fullmatch(value):
        return value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("time must have a zone")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode_managed(entries: Any) -> _Managed:
    """managedFields as Kubernetes decodes them; ValueError where it would fail."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    managed: _Managed = {}
    for i, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise ValueError(f"managed fields entry {i} is not an object")
        operation = raw.get("operation")
        if operation not in (APPLY, UPDATE):
            raise ValueError("operation must be `Apply` or `Update`")
        api_version = raw.get("apiVersion")
        if not isinstance(api_version, str) or not api_version:
            raise ValueError("apiVersion must not be empty")
        if raw.get("fieldsType") != "FieldsV1":
            raise ValueError(f"invalid fieldsType in managed fields entry {i}")
        manager, subresource = raw.get("manager") or "", raw.get("subresource") or ""
        if not isinstance(manager, str) or not isinstance(subresource, str):
            raise ValueError(f"invalid managed fields entry {i}")
        entry = _Entry(
            manager,
            operation,
            api_version,
            subresource,
            _normalize_time(raw.get("time")),
            _decode_fields(raw.get("fieldsV1")),
        )
        managed[entry.key] = entry
    return managed


def _decode_lenient(entries: Any) -> _Managed:
    try:
        return _decode_managed(entries)
    except ValueError:
        return {}


def _is_reset(entries: Any) -> bool:
    """Whether a write asks to clear managedFields: `[]`, or one empty entry."""
    if not isinstance(entries, list) or len(entries) > 1:
        return False
    return not entries or (isinstance(entries[0], dict) and all(v in (None, "") for v in entries[0].values()))


def _store(meta: JsonObject, managed: _Managed) -> None:
    if not managed:
        meta.pop("managedFields", None)
        return
    entries = sorted(
        managed.values(), key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource)
    )
    meta["managedFields"] = [e.to_json() for e in entries]


def _disown(managed: _Managed, diff: _Diff, skip: _Key | None) -> None:
    """Take what changed (or went) away from every manager but `skip`; drop managers left with nothing."""
    changed = diff.added | diff.modified
    for key in list(managed):
        if key == skip:
            continue
        entry = managed[key]
        entry.fields -= changed
        entry.fields -= diff.removed
        if not entry.fields:
            del managed[key]


def _record(managed: _Managed, diff: _Diff, key: _Key, api_version: str, now: str) -> None:
    """An update by `key`: it takes the fields that changed (Kubernetes' "current-operation" updater)."""
    _disown(managed, diff, None)
    owned = (diff.added | diff.modified) - _STRIPPED
    if owned:
        previous = managed.get(key)
        if previous is not None:
            owned |= previous.fields
        managed[key] = _Entry(key[0], UPDATE, api_version, key[3], now, owned)


def _cap_updaters(managed: _Managed) -> None:
    """Merge the oldest update entries into per-version `ancient-changes` ones beyond MAX_UPDATE_MANAGERS."""
    updaters = [key for key, entry in managed.items() if entry.operation == UPDATE]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return
    updaters.sort(key=lambda k: (managed[k].time or "", _identifier(k)))
    first_of_version: dict[str, _Key] = {}
    count = len(updaters)
    for key in updaters:
        if count <= MAX_UPDATE_MANAGERS:
            break
        entry = managed[key]
        bucket: _Key = (_ANCIENT_CHANGES, UPDATE, entry.api_version, "")
        first = first_of_version.get(entry.api_version)
        if first is None or key == bucket:
            first_of_version.setdefault(entry.api_version, key)
            continue
        if bucket not in managed:
            moved = managed.pop(first)
            managed[bucket] = _Entry(
                _ANCIENT_CHANGES, UPDATE, moved.api_version, "", moved.time, moved.fields
            )
        target = managed[bucket]
        target.fields = target.fields | entry.fields
        target.time = entry.time
        del managed[key]
        count -= 1


def _ignored(subresource: str, has_status: bool) -> Callable[[str], bool] | None:
    """Which top-level fields a write cannot own (Kubernetes' reset fields)."""
    if subresource == "status":
        return lambda pe: pe not in ("f:status", "f:metadata", "f:apiVersion", "f:kind")
    if not subresource and has_status:
        return lambda pe: pe == "f:status"
    return None


def _without_managed(obj: Mapping[str, Any]) -> JsonObject:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return dict(obj)
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


# -- conflicts ----------------------------------------------------------------------------------------------


def _go_quote(text: str) -> str:
    return orjson.dumps(text).decode()


def _identifier(key: _Key) -> str:
    """Kubernetes' manager identifier: the entry's JSON without fields and time (apiVersion for updaters)."""
    manager, operation, api_version, subresource = key
    parts = [f'"manager":{_go_quote(manager)}'] if manager else []
    parts.append(f'"operation":"{operation}"')
    if api_version:
        parts.append(f'"apiVersion":{_go_quote(api_version)}')
    if subresource:
        parts.append(f'"subresource":{_go_quote(subresource)}')
    return "{" + ",".join(parts) + "}"


def _print_manager(key: _Key) -> str:
    manager, operation, api_version, subresource = key
    text = _go_quote(manager)
    if subresource:
        text += f" with subresource {_go_quote(subresource)}"
    if operation == UPDATE:
        text += f" using {api_version}"
    return text


def _conflict_error(conflicts: Mapping[_Key, set[Path]]) -> StatusError:
    by_manager = sorted(
        ((key, _iterate(paths)) for key, paths in conflicts.items()), key=lambda kv: _identifier(kv[0])
    )
    causes = [
        Cause("FieldManagerConflict", f"conflict with {_print_manager(key)}", _path_string(path))
        for key, paths in by_manager
        for path in paths
    ]
    if len(causes) == 1:
        key, paths = by_manager[0]
        message = (
            f"Apply failed with 1 conflict: conflict with {_print_manager(key)}: {_path_string(paths[0])}"
        )
    else:
        lines: list[str] = []
        for key, paths in by_manager:
            lines.append(f"conflicts with {_print_manager(key)}:")
            lines.extend(f"- {_path_string(path)}" for path in paths)
        message = f"Apply failed with {len(causes)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, causes=causes)


def _conflicts(managed: _Managed, diff: _Diff, applier: _Key) -> dict[_Key, set[Path]]:
    changed = diff.added | diff.modified
    found: dict[_Key, set[Path]] = {}
    for key, entry in managed.items():
        if key != applier and (clash := entry.fields & changed):
            found[key] = clash
    return found


def _allowed_by_last_applied(live: JsonObject, root: Schema, api_version: str) -> set[Path]:
    """Fields `kubectl apply --server-side` may take over from client-side apply: those whose value in the
    last-applied annotation is still the live one."""
    meta = live.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    text = annotations.get(LAST_APPLIED_ANNOTATION) if isinstance(annotations, dict) else None
    if not isinstance(text, str) or not text:
        return set()
    try:
        last = orjson.loads(text)
    except orjson.JSONDecodeError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return set()
    errors: list[str] = []
    fields: set[Path] = set()
    _field_set(last, root, (), fields, errors, False)
    if errors:
        return set()
    diff = _diff(last, live, root)
    return fields - diff.modified - diff.added - diff.removed


def _sync_last_applied(obj: JsonObject, config: JsonObject) -> None:
    """Keep client-side apply's annotation, when there is one, in step with what kubectl applied."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if (
        not isinstance(meta, dict)
        or not isinstance(annotations, dict)
        or not annotations.get(LAST_APPLIED_ANNOTATION)
    ):
        return
    source = dict(config)
    config_meta = source.get("metadata")
    if isinstance(config_meta, dict) and isinstance(config_meta.get("annotations"), dict):
        kept = {k: v for k, v in config_meta["annotations"].items() if k != LAST_APPLIED_ANNOTATION}
        source["metadata"] = {**config_meta, "annotations": kept}
    updated = {**annotations, LAST_APPLIED_ANNOTATION: _go_json(source) + "\n"}
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in updated.items())
    if size > _ANNOTATIONS_MAX_BYTES:
        del updated[LAST_APPLIED_ANNOTATION]
    obj["metadata"] = {**meta, "annotations": updated}


# -- the API ------------------------------------------------------------------------------------------------


class _ApplyLoader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """YAML as Kubernetes reads it into JSON: timestamps stay strings."""


_ApplyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _json_keys(value: Any) -> Any:
    """YAML mappings may have keys of any type; JSON's are strings."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else _go_string(k)): _json_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def _not_an_object(value: Any) -> StatusError:
    return bad_request(
        f"error decoding YAML: json: cannot unmarshal {_json_type(value)} into Go value of type "
        "map[string]interface {}"
    )


def parse_applied(body: bytes) -> JsonObject:
    """The configuration an apply request sends (YAML, of which JSON is a part). See the module docstring."""
    value: Any
    if body.lstrip()[:1] == b"{":
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = _MISSING
    else:
        value = _MISSING
    if value is _MISSING:
        try:
            value = _json_keys(yaml.load(body, Loader=_ApplyLoader))
        except yaml.YAMLError as exc:
            raise bad_request(f"error decoding YAML: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _not_an_object(value)
    return value


def _gvk_string(api_version: str, kind: str) -> str:
    """As Go prints a GroupVersionKind: `apps/v1, Kind=Deployment`, `/v1, Kind=Pod`."""
    parts = api_version.split("/")
    if len(parts) > 2:
        parts = ["", ""]
    group, version = parts if len(parts) == 2 else ("", parts[0])
    return f"{group}/{version}, Kind={kind}"


def _check_applied(applied: object, api_version: str | None, kind: str | None) -> JsonObject:
    if applied is None:
        applied = {}
    if not isinstance(applied, dict):
        raise _not_an_object(applied)
    found_version, found_kind = applied.get("apiVersion"), applied.get("kind")
    found_version = found_version if isinstance(found_version, str) else ""
    found_kind = found_kind if isinstance(found_kind, str) else ""
    if (
        not found_version
        or not found_kind
        or found_version != (api_version or found_version)
        or found_kind != (kind or found_kind)
    ):
        raise bad_request(f"invalid object type: {_gvk_string(found_version, found_kind)}")
    meta = applied.get("metadata")
    if isinstance(meta, dict) and meta.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    return applied


def _gvknn(config: JsonObject) -> str:
    meta = config.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return (
        f"{meta.get('namespace') or ''}/{meta.get('name') or ''}; "
        f"{_gvk_string(config['apiVersion'], config['kind'])}"
    )


def _prune(merged: JsonObject, managed: _Managed, last: set[Path], root: Schema) -> JsonObject:
    """Remove what the applier applied last time but not now, unless another manager owns it
    (structured-merge-diff's prune, addBackOwnedItems and addBackDanglingItems)."""
    last = _with_named(last, root)
    pruned = _remove_paths(merged, last, root)
    owned = _with_named(set().union(*(entry.fields for entry in managed.values())), root)
    merged_set = _full_set(merged, root)
    pruned = _remove_paths(merged, merged_set - (_full_set(pruned, root) | owned), root)
    result = _remove_paths(merged, (merged_set - _full_set(pruned, root)) & last, root)
    return {} if result is _MISSING else result


def server_side_apply(
    live: Mapping[str, Any] | None,
    applied: object,
    manager: str,
    force: bool,
    schema: Schema | None,
    now: str,
    *,
    api_version: str | None = None,
    kind: str | None = None,
    subresource: str = "",
    has_status: bool = False,
) -> JsonObject:
    """The object after `manager` applies `applied` to `live`. See the module docstring for the contract."""
    validate_field_manager(manager, options_kind="PatchOptions", apply=True)
    if live is not None:
        api_version = api_version or live.get("apiVersion")
        kind = kind or live.get("kind")
    config = _check_applied(applied, api_version, kind)
    version: str = config["apiVersion"]
    root = _root_schema(schema)
    ignored = _ignored(subresource, has_status)
    live_obj = _without_managed(live) if live is not None else {}
    live_meta = live.get("metadata") if live is not None else None
    managed = _decode_lenient(live_meta.get("managedFields")) if isinstance(live_meta, dict) else {}
    if live is not None and not managed:
        before: _Key = (BEFORE_FIRST_APPLY, UPDATE, version, subresource)
        _record(managed, _diff({}, live_obj, root).without(ignored), before, version, now)

    errors: list[str] = []
    config_set: set[Path] = set()
    _field_set(config, root, (), config_set, errors, False)
    if errors:
        raise bad_request(f"failed to create typed patch object ({_gvknn(config)}): " + "\n".join(errors))
    if ignored is not None:
        config_set = {p for p in config_set if not ignored(p[0])}

    merged: JsonObject = _merge(live_obj, config, root)
    key: _Key = (manager, APPLY, "", subresource)
    previous = managed.get(key)
    managed[key] = _Entry(
        manager, APPLY, version, subresource, previous.time if previous else None, config_set
    )
    if previous is not None and previous.fields:
        merged = _prune(merged, managed, previous.fields, root)

    diff = _diff(live_obj, merged, root).without(ignored)
    conflicts = _conflicts(managed, diff, key)
    if conflicts and not force:
        if manager == "kubectl":
            allowed = _allowed_by_last_applied(live_obj, root, version)
            conflicts = {k: rest for k, paths in conflicts.items() if (rest := paths - allowed)}
        if conflicts:
            raise _conflict_error(conflicts)
    _disown(managed, diff, key)
    entry = managed.get(key)
    if entry is not None:
        entry.fields -= _STRIPPED
        if not entry.fields:
            del managed[key]
        elif merged != live_obj:
            entry.time = now
    if manager == "kubectl":
        _sync_last_applied(merged, config)

    result: JsonObject = orjson.loads(orjson.dumps(merged))
    meta = result.get("metadata")
    if not isinstance(meta, dict):
        meta = result["metadata"] = {}
    _store(meta, managed)
    return result


def record_update(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    manager: str,
    subresource: str,
    schema: Schema | None,
    now: str,
    *,
    api_version: str | None = None,
    has_status: bool = False,
) -> JsonObject:
    """`new` with managedFields recording a create or update by `manager`. See the module docstring."""
    new_meta = new.get("metadata")
    meta: JsonObject = dict(new_meta) if isinstance(new_meta, dict) else {}
    requested = meta.pop("managedFields", None)
    result: JsonObject = {**new, "metadata": meta}
    old_meta = old.get("metadata") if old is not None else None
    old_meta = old_meta if isinstance(old_meta, dict) else {}
    old_entries = old_meta.get("managedFields")
    version = api_version or new.get("apiVersion")
    if not isinstance(version, str) or not version:
        return result
    root = _root_schema(schema)
    diff = _diff(_without_managed(old) if old is not None else {}, result, root).without(
        _ignored(subresource, has_status)
    )
    if subresource or requested is None or requested == old_entries:
        if not diff and isinstance(old_entries, list) and old_entries:
            unchanged = requested if requested is not None else orjson.loads(orjson.dumps(old_entries))
            meta["managedFields"] = unchanged
            return result
        managed = _decode_lenient(old_entries)
    elif _is_reset(requested):
        managed = {}
    else:
        managed = _decode_lenient(requested) or _decode_lenient(old_entries)
    if not managed and old_meta.get("uid"):
        return result  # an object not tracked so far stays so until applied to
    _record(managed, diff, (manager or "unknown", UPDATE, version, subresource), version, now)
    _cap_updaters(managed)
    _store(meta, managed)
    return result


def _printable(char: str) -> bool:
    return char == " " or unicodedata.category(char)[0] in "LMNPS"


def manager_name(field_manager: str | None, user_agent: str | None) -> str:
    """`field_manager`, else the user agent's product (before the first "/"): printable, 128 bytes at most."""
    if field_manager:
        return field_manager
    out: list[str] = []
    size = 0
    for char in (user_agent or "").split("/", 1)[0]:
        if not _printable(char):
            continue
        size += len(char.encode())
        if size > _FIELD_MANAGER_MAX_BYTES:
            break
        out.append(char)
    return "".join(out)


def validate_field_manager(manager: str, *, options_kind: str, apply: bool) -> None:
    """422 on the `<options_kind>.meta.k8s.io` options when `manager` is not a valid fieldManager (required
    for apply, at most 128 bytes, printable)."""
    causes: list[Cause] = []
    if apply and not manager:
        causes.append(field_required("fieldManager", "is required for apply patch"))
    if len(manager.encode()) > _FIELD_MANAGER_MAX_BYTES:
        causes.append(
            Cause(
                "FieldValueTooLong",
                f"Too long: may not be more than {_FIELD_MANAGER_MAX_BYTES} bytes",
                "fieldManager",
            )
        )
    offset = 0
    for char in manager:
        if not _printable(char):
            causes.append(
                field_invalid(
                    "fieldManager", manager, f"invalid character U+{ord(char):04X} (at position {offset})"
                )
            )
        offset += len(char.encode())
    if causes:
        raise invalid(options_kind, "meta.k8s.io", "", causes)
