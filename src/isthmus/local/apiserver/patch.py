"""PATCH bodies applied to stored objects: JSON Patch, JSON merge patch and Kubernetes' strategic merge patch.

Each function takes the current object and the decoded request body and returns the patched object, never
changing its arguments; failures raise `StatusError`s with the codes and messages kube-apiserver answers.

`strategic_merge_patch` applies a patch as kube-apiserver does (`strategicpatch.StrategicMergeMapPatch`), with
each field's strategy and merge key from the published schemas. It departs from Kubernetes where Kubernetes
would store patch content raw (a value for a field the object lacks, a map or list replaced with
`$patch: replace`): that content is merged into an empty value, so no directive or null is ever stored. And
`$patch: delete` on a map removes the field rather than leaving an empty map; `$patch: merge`, which
Kubernetes rejects, is accepted as the default it names.

The results of `merge_patch` and `strategic_merge_patch` share the subtrees the patch leaves alone with
`document`: treat both as read-only, or copy before changing either in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import jsonpatch
import jsonpointer
import orjson

from isthmus.local.apiserver.errors import JsonObject, StatusError, bad_request, field_invalid, invalid
from isthmus.local.apiserver.schema import Schema

MAX_JSON_PATCH_OPERATIONS: Final = 10000

_DIRECTIVE: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_SET_ELEMENT_ORDER: Final = "$setElementOrder"
_DELETE_FROM_PRIMITIVE_LIST: Final = "$deleteFromPrimitiveList"

_BAD_ORDER_FORMAT: Final = "invalid patch format of setElementOrder list"
_BAD_PRIMITIVE_LIST_FORMAT: Final = "invalid patch format of primitive list"
_BAD_RETAIN_KEYS_FORMAT: Final = "invalid patch format of retainKeys"
# kube-apiserver answers some patch failures with a generic 422 that drops the underlying error.
_GENERIC_INVALID: Final = "the server rejected our request due to an error in our request"


def json_patch(document: JsonObject, patch_body: Any) -> JsonObject:
    """Apply an RFC 6902 JSON Patch (a list of operations) to a copy of `document`."""
    if patch_body is None:  # Go decodes `null` as an empty patch.
        patch_body = []
    if not isinstance(patch_body, list):
        kind = _json_kind(patch_body)
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    for operation in patch_body:
        if operation is None:
            raise _generic_invalid()
        if not isinstance(operation, dict):
            raise bad_request(
                f"json: cannot unmarshal {_json_kind(operation)} into Go value of type jsonpatch.Operation"
            )
    if len(patch_body) > MAX_JSON_PATCH_OPERATIONS:
        raise StatusError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(patch_body)}",
        )
    try:
        # Both copied: operations insert their values into the document, and later ones may change them.
        result = jsonpatch.JsonPatch(_copy(patch_body)).apply(_copy(document), in_place=True)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise _generic_invalid() from exc
    if not isinstance(result, dict):
        raise _not_an_object(result)
    return result


def merge_patch(document: JsonObject, patch_body: Any) -> JsonObject:
    """Apply an RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces.

    As in Kubernetes, nulls are also dropped from objects the patch adds, including objects inside lists.
    """
    if isinstance(patch_body, dict):
        return _merge_objects(document, patch_body)
    if isinstance(patch_body, list):
        raise _not_an_object(_without_nulls(patch_body))
    raise bad_request("Invalid JSON Patch")


def strategic_merge_patch(document: JsonObject, patch_body: JsonObject, schema: Schema | None) -> JsonObject:
    """Apply a Kubernetes strategic merge patch, with list strategies and merge keys from `schema`.

    Without a schema, or below a field it does not describe, maps merge as in a JSON merge patch and lists
    are replaced; the `$patch`, `$retainKeys`, `$setElementOrder/` and `$deleteFromPrimitiveList/` directives
    still apply.
    """
    if patch_body is None:  # Go decodes `null` as an empty patch.
        return dict(document)
    if not isinstance(patch_body, dict):
        raise bad_request(
            f"json: cannot unmarshal {_json_kind(patch_body)} into Go value of type map[string]interface {{}}"
        )
    merged = _StrategicMerge(patch_body).merge_map(document, patch_body, schema, "")
    return {} if merged is None else merged


# --- JSON merge patch ---------------------------------------------------------------------------------------


def _merge_objects(target: Mapping[str, Any], patch: Mapping[str, Any]) -> JsonObject:
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
            continue
        current = result.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            result[key] = _merge_objects(current, value)
        else:
            result[key] = _without_nulls(value)
    return result


def _without_nulls(value: Any) -> Any:
    """A copy of `value` with null members dropped from every object in it (list elements are kept)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


# --- Strategic merge patch ----------------------------------------------------------------------------------


class _StrategicMerge:
    """One strategic merge patch application; `root` is the whole patch, which Kubernetes quotes in errors."""

    def __init__(self, root: JsonObject) -> None:
        self.root = root

    def merge_map(
        self, original: Mapping[str, Any] | None, patch: Mapping[str, Any], schema: Schema | None, path: str
    ) -> JsonObject | None:
        """`patch` merged into `original` (None: absent); None when the patch deletes the map."""
        if _DIRECTIVE in patch:
            directive = patch[_DIRECTIVE]
            if directive == "delete":
                return None
            if directive == "replace":
                original = None
            elif directive != "merge":
                raise _unknown_patch_type(directive, patch)
            patch = {k: v for k, v in patch.items() if k != _DIRECTIVE}

        result: JsonObject = {} if original is None else dict(original)
        if _RETAIN_KEYS in patch:
            result = _retain_keys(result, patch)

        ordered: set[str] = set()
        for key, value in patch.items():
            if not key.startswith(_SET_ELEMENT_ORDER):
                continue
            name = _directive_field(key, _SET_ELEMENT_ORDER, _BAD_ORDER_FORMAT)
            if not isinstance(value, list):
                raise bad_request(_BAD_ORDER_FORMAT)
            field_schema = schema.field(name) if schema is not None else None
            # The order only matters to merge lists; a list the patch deletes (null) has none.
            if field_schema is None or "merge" not in field_schema.patch_strategies:
                continue
            if name in patch and patch[name] is None:
                continue
            ordered.add(name)
            child_path = f"{path}.{name}" if path else name
            merged_list = self.ordered_list(
                result.get(name), patch.get(name), value, field_schema, child_path
            )
            if merged_list is not None:
                result[name] = merged_list

        deletions: list[tuple[str, list[Any]]] = []
        for key, value in patch.items():
            if key in ordered or key == _RETAIN_KEYS or key.startswith(_SET_ELEMENT_ORDER):
                continue
            if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
                name = _directive_field(key, _DELETE_FROM_PRIMITIVE_LIST, _BAD_PRIMITIVE_LIST_FORMAT)
                if not isinstance(value, list) or any(isinstance(v, (dict, list)) for v in value):
                    raise bad_request(_BAD_PRIMITIVE_LIST_FORMAT)
                deletions.append((name, value))
                continue
            child_path = f"{path}.{key}" if path else key
            if (
                key.startswith("$")
                and schema is not None
                and not schema.preserves_unknown_fields
                and key not in schema.properties
            ):
                raise self.invalid(f'strict decoding error: unknown field "{child_path}"')
            if value is None:
                result.pop(key, None)
                continue
            field_schema = schema.field(key) if schema is not None else None
            merged = self.merge_value(result.get(key), value, field_schema, child_path)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged

        for name, values in deletions:
            current = result.get(name)
            if isinstance(current, list):
                dropped = {_identity(v) for v in values}
                result[name] = [v for v in current if _identity(v) not in dropped]
        return result

    def merge_value(self, current: Any, value: Any, schema: Schema | None, path: str) -> Any:
        """The new value of a field: `value` (not null) applied to `current`; None when it is deleted."""
        self.check_kind(value, schema)
        if isinstance(value, dict):
            replaced = schema is not None and "replace" in schema.patch_strategies
            return self.merge_map(
                current if isinstance(current, dict) and not replaced else None, value, schema, path
            )
        if isinstance(value, list):
            if _is_merge_list(schema):
                assert schema is not None
                return self.merge_list(current if isinstance(current, list) else [], value, schema, path)
            return _copy(value)
        return value

    def merge_list(self, original: list[Any], patch: list[Any], schema: Schema, path: str) -> list[Any]:
        """A list with the "merge" strategy: maps merge by the merge key, primitives form a set."""
        if not original and not patch:
            return []
        _element_type(original, patch)
        merge_key = schema.patch_merge_key
        if not any(isinstance(v, dict) for v in (*original, *patch)):
            for item in patch:
                self.check_kind(item, schema.items)
            merged = list({_identity(v): v for v in (*original, *patch)}.values())
            return _interleave(merged, patch, original, _identity)
        if merge_key is None:
            raise _unknown_error("cannot merge lists without merge key for type struct")

        key_of = _merge_key_reader(merge_key)
        working = list(original)
        plain: list[JsonObject] = []
        replace = False
        for item in patch:
            directive = item.get(_DIRECTIVE) if _DIRECTIVE in item else None
            if directive is None or (directive == "merge" and len(item) > 1):
                plain.append(item)
            elif directive == "delete":
                deleted = key_of(item)
                working = [v for v in working if not (merge_key in v and _identity(v[merge_key]) == deleted)]
            elif directive == "replace":
                replace = True
            elif directive != "merge":
                raise _unknown_patch_type(directive, item)

        item_schema = schema.items
        if replace:
            built = (self.merge_map(None, item, item_schema, f"{path}[{i}]") for i, item in enumerate(plain))
            return [v for v in built if v is not None]

        server_order = list(working)
        for index, item in enumerate(plain):
            wanted = key_of(item)
            matches = (
                i for i, v in enumerate(working) if merge_key in v and _identity(v[merge_key]) == wanted
            )
            position = next(matches, None)
            merged_item = self.merge_map(
                None if position is None else working[position], item, item_schema, f"{path}[{index}]"
            )
            assert merged_item is not None  # Only a delete directive yields None, and those are not plain.
            if position is None:
                working.append(merged_item)
            else:
                working[position] = merged_item
        return _interleave(working, plain, server_order, key_of)

    def ordered_list(
        self, current: Any, patch: Any, order: list[Any], schema: Schema, path: str
    ) -> list[Any] | None:
        """A merge list with a `$setElementOrder` directive; None when neither object nor patch has it.

        `patch` is the patch's value for the list, None when the patch only reorders it.
        """
        merge_key = schema.patch_merge_key
        key_of = _identity if merge_key is None else _merge_key_reader(merge_key)
        live: list[Any] = current if isinstance(current, list) else []
        if patch is not None:
            self.check_kind(patch, schema)
            if not isinstance(patch, list):
                raise _unknown_error(f"expected a []interface {{}}, but received a {_go_type(patch)}")
            _check_order(patch, order, merge_key)
            merged = self.merge_list(live, patch, schema, path)
        elif isinstance(current, list):
            merged = live
        else:
            return None
        return _interleave(merged, order, live, key_of, partition={key_of(v) for v in order})

    def check_kind(self, value: Any, schema: Schema | None) -> None:
        """Reject a list where the schema wants an object and the like, as Kubernetes' decoding does."""
        if schema is None or value is None or schema.preserves_unknown_fields:
            return
        types = schema.types
        wants_object, wants_array = "object" in types, "array" in types
        if (isinstance(value, dict) and (wants_object or not wants_array)) or (
            isinstance(value, list) and (wants_array or not wants_object)
        ):
            return
        if not isinstance(value, (dict, list)) and not (wants_object or wants_array):
            return
        kind = _go_kind(value)
        if wants_array:
            detail = f"cannot restore slice from {kind}"
        elif schema.properties:
            detail = f"cannot restore struct from: {kind}"
        else:
            detail = f"cannot restore map from {kind}"
        raise self.invalid(detail)

    def invalid(self, detail: str) -> StatusError:
        """Kubernetes' answer when the patched object does not decode: the whole patch, quoted."""
        return invalid("", "", "", [field_invalid("patch", _go_format(self.root), detail)])


def _retain_keys(original: JsonObject, patch: Mapping[str, Any]) -> JsonObject:
    retained = patch[_RETAIN_KEYS]
    if not isinstance(retained, list):
        raise bad_request(_BAD_RETAIN_KEYS_FORMAT)
    keep = {k for k in retained if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key == _RETAIN_KEYS:
            continue
        if key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
            continue
        if key not in keep:
            raise bad_request(_BAD_RETAIN_KEYS_FORMAT)
    return {k: v for k, v in original.items() if k in keep}


def _directive_field(key: str, prefix: str, error: str) -> str:
    head, slash, name = key.partition("/")
    if head != prefix or not slash:
        raise bad_request(error)
    return name


def _is_merge_list(schema: Schema | None) -> bool:
    return schema is not None and "merge" in schema.patch_strategies


def _element_type(original: Sequence[Any], patch: Sequence[Any]) -> None:
    """Kubernetes' check that all elements of both lists have one type, and that none is a list."""
    first: str | None = None
    for value in (*original, *patch):
        kind = _go_type(value)
        if first is None:
            if isinstance(value, list):
                raise StatusError(422, "Invalid", _GENERIC_INVALID)
            first = kind
        elif kind != first:
            both = _go_format([list(original), list(patch)])
            raise _unknown_error(f"list element types are not identical: {both}")


def _merge_key_reader(merge_key: str) -> Callable[[Any], Hashable]:
    def key_of(item: Any) -> Hashable:
        if not isinstance(item, dict):
            raise _unknown_error(f"expected a map[string]interface {{}}, but received a {_go_type(item)}")
        if merge_key not in item:
            raise _unknown_error(f"map: {_go_format(item)} does not contain declared merge key: {merge_key}")
        return _identity(item[merge_key])

    return key_of


def _check_order(patch: list[Any], order: list[Any], merge_key: str | None) -> None:
    """The patch list's items (deletions and directives aside) must appear in `$setElementOrder` order."""
    if not patch or not order:
        return
    key_of = _identity if merge_key is None else _merge_key_reader(merge_key)
    items = patch
    if merge_key is not None:
        for item in patch:
            if not isinstance(item, dict):
                raise _unknown_error(f"expected a map[string]interface {{}}, but received a {_go_type(item)}")
        items = [v for v in patch if v.get(_DIRECTIVE) != "delete"]
    position = 0
    for item in items:
        if isinstance(item, dict) and _DIRECTIVE in item:
            continue
        wanted = key_of(item)
        while position < len(order) and key_of(order[position]) != wanted:
            position += 1
        if position == len(order):
            raise _unknown_error(
                f"The order in patch list:\n{_go_format(patch)}\n doesn't match {_SET_ELEMENT_ORDER} list:\n"
                f"{_go_format(order)}\n"
            )
        position += 1


def _interleave(
    merged: list[Any],
    patch_order: Iterable[Any],
    server_order: list[Any],
    key_of: Callable[[Any], Hashable],
    partition: set[Hashable] | None = None,
) -> list[Any]:
    """Kubernetes' element order after a list merge.

    Items named by the patch (or `partition`) are sorted by `patch_order`, the others by their position in the
    live list; then the two runs are merged, taking a server-only item first only while it stood before the
    next patch item in the live list.
    """
    patch_keys = [key_of(v) for v in patch_order]
    named = set(patch_keys) if partition is None else partition
    from_patch = [v for v in merged if key_of(v) in named]
    server_only = [v for v in merged if key_of(v) not in named]
    patch_rank = _ranks(patch_keys)
    server_rank = _ranks(key_of(v) for v in server_order)
    from_patch.sort(key=lambda v: patch_rank.get(key_of(v), len(patch_rank)))
    server_only.sort(key=lambda v: server_rank.get(key_of(v), len(server_rank)))

    result: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(from_patch):
        left = server_rank.get(key_of(server_only[i]))
        right = server_rank.get(key_of(from_patch[j]))
        if left is not None and right is not None and left < right:
            result.append(server_only[i])
            i += 1
        else:
            result.append(from_patch[j])
            j += 1
    result.extend(server_only[i:])
    result.extend(from_patch[j:])
    return result


def _ranks(keys: Iterable[Hashable]) -> dict[Hashable, int]:
    ranks: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        ranks.setdefault(key, index)
    return ranks


def _identity(value: Any) -> Hashable:
    """A key under which two JSON values are equal exactly when Go's `==` on decoded values would say so."""
    if isinstance(value, (dict, list)):
        return ("json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    return (type(value).__name__, value)


# --- Errors and Go-style formatting -------------------------------------------------------------------------


def _generic_invalid() -> StatusError:
    return StatusError(422, "Invalid", _GENERIC_INVALID)


def _unknown_error(message: str) -> StatusError:
    """How kube-apiserver answers an error that is not an API status: 500 with no reason."""
    return StatusError(500, "", message)


def _unknown_patch_type(directive: Any, patch: Mapping[str, Any]) -> StatusError:
    shown = directive if isinstance(directive, str) else _go_format(directive)
    return _unknown_error(f"unknown patch type: {shown} in map: {_go_format(dict(patch))}")


def _not_an_object(value: Any) -> StatusError:
    detail = f"json: cannot unmarshal {_json_kind(value)} into Go value of type map[string]interface {{}}"
    return invalid("", "", "", [field_invalid("patch", orjson.dumps(value).decode(), detail)])


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "null"


def _go_kind(value: Any) -> str:
    """The reflect.Kind of a decoded JSON value, as Go names it."""
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    return _go_type(value)


def _go_type(value: Any) -> str:
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    return "%!s(<nil>)"


def _go_format(value: Any) -> str:
    """`value` as Go's `%v` prints a decoded JSON value (maps with sorted keys)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_format(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_format(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(value: float) -> str:
    """Go's `%v` of a float64: shortest digits, exponent form below 1e-4 and from 1e6 up."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    magnitude = len(digits) + exponent - 1
    if -4 <= magnitude < 6:
        text = repr(abs(value))
        return sign + (text[:-2] if text.endswith(".0") else text)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'+' if magnitude >= 0 else '-'}{abs(magnitude):02d}"


def _copy(value: Any) -> Any:
    """A deep copy of a JSON value (much faster than `copy.deepcopy`)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
