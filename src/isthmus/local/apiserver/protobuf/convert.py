"""Turning decoded protobuf messages into the JSON form of Kubernetes objects, declared field by field.

Each message type has a `Converter`, most built by `fields(MessageClass, {"field": Rule, ...})` with one
rule for every field the `.proto` subset defines, keyed by the proto name (JSON uses the same name unless
the rule gives `json_name`). `fields` checks the rules against the message descriptor when the module is
imported: a field without a rule, a rule for a field the message lacks, or a rule that does not fit the
field's type raises `TypeError`, so no field can be defined and then silently dropped.

The rules follow Go's encodings (see `decode`'s module docstring for the whole picture):

- `Value()` is a non-pointer scalar: "", 0 and false are Go's zero values, i.e. unset, and are omitted.
  `Value(pointer=True)` is a pointer scalar: present means set, even as "", 0 or false.
  `Value(always=True)` is a non-pointer scalar whose zero is a real value the server needs (Go's JSON writes
  it, having no omitempty): `PriorityClass.value`, a required field that may be 0.
- `Object(converter)` is a non-pointer struct, omitted when it converts to {} (Go writes every non-pointer
  struct); `Object(converter, pointer=True)` is a pointer, kept as {} when present but empty. A converter
  returning None (a zero `Time`, an empty `FieldsV1`) omits the field either way.
- `Values()`, `Objects(converter)` and `Map()` / `Map(converter)` are lists and maps, omitted when empty;
  their items are always kept. Map keys come out sorted, as Go's JSON encoder writes them.
- `IntOrStr()` is an IntOrString: the bare int or string, omitted when it is Go's zero value unless it is a
  pointer. `Inline(converter)` is an embedded struct whose fields JSON writes in the parent's object.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Generic, TypeVar, cast

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from isthmus.local.apiserver.protobuf.generated.k8s.io.apimachinery.pkg.api.resource import (
    generated_pb2 as resource,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.apimachinery.pkg.apis.meta.v1 import (
    generated_pb2 as metav1,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.apimachinery.pkg.util.intstr import (
    generated_pb2 as intstr,
)

JsonObject = dict[str, Any]
_M = TypeVar("_M", bound=Message)
_T = TypeVar("_T")

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SCALARS: Final = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
    }
)


class UnknownFieldsError(Exception):
    """A message, at `path`, holds field numbers the `.proto` subset does not define."""

    def __init__(self, path: str, numbers: list[int]) -> None:
        super().__init__(path, numbers)
        self.path = path
        self.numbers = numbers


class BadFieldError(Exception):
    """The value at `path` cannot be the field it claims to be (not UTF-8, a time out of range, ...)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


def reject_unknown_fields(msg: Message, path: str) -> None:
    """Raise `UnknownFieldsError` for the first message, depth first, with fields our .proto subset lacks."""
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        raise UnknownFieldsError(path, sorted({unknown[i].field_number for i in range(len(unknown))}))
    for field, value in msg.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type is None:
            continue
        where = join(path, field.name)
        if _is_map(field):
            if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    reject_unknown_fields(item, f"{where}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                reject_unknown_fields(item, f"{where}[{index}]")
        else:
            reject_unknown_fields(value, where)


# --- values -------------------------------------------------------------------------------------------


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def text(value: object, path: str) -> str:
    # upb hands back bytes, not str, for a proto2 string field that is not valid UTF-8.
    if isinstance(value, str):
        return value
    raise BadFieldError(path, "is not valid UTF-8")


def strings(values: Iterable[object], path: str) -> list[str]:
    return [text(value, f"{path}[{index}]") for index, value in enumerate(values)]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _map_value(field: FieldDescriptor) -> FieldDescriptor:
    """The value field of a map field's entry message."""
    entry = field.message_type
    assert entry is not None
    value: FieldDescriptor = entry.fields_by_name["value"]
    return value


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


# --- converters ---------------------------------------------------------------------------------------


class Converter(Generic[_M, _T]):
    """Turns a message of one type into its JSON form; `path` (JSON keys) names it in errors."""

    def __init__(self, message: type[_M], convert: Callable[[_M, str], _T]) -> None:
        self.message = message
        self.descriptor = message.DESCRIPTOR
        self._convert = convert

    def __call__(self, msg: _M, path: str) -> _T:
        return self._convert(msg, path)


class Rule(ABC):
    """How one field of a message becomes a key of its JSON object."""

    def __init__(self, json_name: str | None = None) -> None:
        self.json_name = json_name

    @abstractmethod
    def misfit(self, field: FieldDescriptor) -> str | None:
        """Why this rule cannot convert the field, or None when it can."""

    @abstractmethod
    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        """Set out[key] from msg's field, unless the field is unset."""


def fields(message: type[_M], rules: Mapping[str, Rule]) -> Converter[_M, JsonObject]:
    """The converter of a message type from one rule per field (see the module docstring)."""
    descriptor = message.DESCRIPTOR
    defined = set(descriptor.fields_by_name)
    if set(rules) != defined:
        raise TypeError(
            f"{descriptor.full_name}: rules for fields it lacks {sorted(set(rules) - defined)}, "
            f"no rule for its fields {sorted(defined - set(rules))}"
        )
    plan: list[tuple[str, FieldDescriptor, Rule]] = []
    for name, rule in rules.items():
        # Under upb the descriptor is the C extension's; it behaves as a FieldDescriptor.
        field = cast(FieldDescriptor, descriptor.fields_by_name[name])
        misfit = rule.misfit(field)
        if misfit is not None:
            raise TypeError(f"{descriptor.full_name}.{name}: {misfit}")
        plan.append((rule.json_name or name, field, rule))

    def convert(msg: _M, path: str) -> JsonObject:
        out: JsonObject = {}
        for key, field, rule in plan:
            rule.put(out, key, msg, field, path)
        return out

    return Converter(message, convert)


def _misfit_message(field: FieldDescriptor, converter: Converter[Any, Any], repeated: bool) -> str | None:
    if _is_map(field) or _is_repeated(field) != repeated:
        return f"is not {'a repeated' if repeated else 'a singular'} message field"
    if field.message_type is None or field.message_type is not converter.descriptor:
        return f"is not a {converter.descriptor.full_name} field"
    return None


class Value(Rule):
    """A singular string, bool or integer; `pointer` and `always` as in the module docstring."""

    def __init__(self, *, pointer: bool = False, always: bool = False, json_name: str | None = None) -> None:
        super().__init__(json_name)
        self.pointer = pointer
        self.always = always

    def misfit(self, field: FieldDescriptor) -> str | None:
        if _is_repeated(field) or field.type not in _SCALARS:
            return "is not a singular string, bool or integer"
        return None

    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        if self.pointer and not msg.HasField(field.name):
            return
        value = getattr(msg, field.name)
        if not (self.pointer or self.always or value):
            return
        out[key] = text(value, join(path, key)) if field.type == FieldDescriptor.TYPE_STRING else value


class Values(Rule):
    """A list of strings or integers."""

    def misfit(self, field: FieldDescriptor) -> str | None:
        if not _is_repeated(field) or field.type not in _SCALARS:
            return "is not a repeated string or integer"
        return None

    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        values = getattr(msg, field.name)
        if not values:
            return
        if field.type == FieldDescriptor.TYPE_STRING:
            out[key] = strings(values, join(path, key))
        else:
            out[key] = list(values)


class Map(Rule):
    """A map with string keys: of strings, of bytes (base64, as in JSON), or of messages via `converter`."""

    def __init__(self, converter: Converter[Any, Any] | None = None, *, json_name: str | None = None) -> None:
        super().__init__(json_name)
        self.converter = converter

    def misfit(self, field: FieldDescriptor) -> str | None:
        if not _is_map(field):
            return "is not a map"
        value = _map_value(field)
        if self.converter is None:
            if value.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
                return None
            return "is not a map of strings or bytes"
        if value.message_type is not self.converter.descriptor:
            return f"is not a map of {self.converter.descriptor.full_name}"
        return None

    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        values = getattr(msg, field.name)
        if not values:
            return
        where = join(path, key)
        value_type = _map_value(field).type
        items: list[tuple[str, Any]] = []
        for raw_name, value in values.items():
            name = text(raw_name, where)
            at = f"{where}[{name!r}]"
            if self.converter is not None:
                items.append((name, self.converter(value, at)))
            elif value_type == FieldDescriptor.TYPE_BYTES:
                items.append((name, base64.b64encode(value).decode("ascii")))
            else:
                items.append((name, text(value, at)))
        out[key] = dict(sorted(items))


class Object(Rule):
    """A singular message; `pointer` as in the module docstring."""

    def __init__(
        self, converter: Converter[Any, Any], *, pointer: bool = False, json_name: str | None = None
    ) -> None:
        super().__init__(json_name)
        self.converter = converter
        self.pointer = pointer

    def misfit(self, field: FieldDescriptor) -> str | None:
        return _misfit_message(field, self.converter, repeated=False)

    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        if not msg.HasField(field.name):
            return
        value = self.converter(getattr(msg, field.name), join(path, key))
        if value is None or (not self.pointer and value == {}):
            return
        out[key] = value


class Objects(Rule):
    """A list of messages."""

    def __init__(self, converter: Converter[Any, Any], *, json_name: str | None = None) -> None:
        super().__init__(json_name)
        self.converter = converter

    def misfit(self, field: FieldDescriptor) -> str | None:
        return _misfit_message(field, self.converter, repeated=True)

    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        values = getattr(msg, field.name)
        if values:
            where = join(path, key)
            out[key] = [self.converter(value, f"{where}[{index}]") for index, value in enumerate(values)]


class Inline(Rule):
    """An embedded struct (`json:",inline"`): its fields go into the parent's object."""

    def __init__(self, converter: Converter[Any, JsonObject]) -> None:
        super().__init__()
        self.converter = converter

    def misfit(self, field: FieldDescriptor) -> str | None:
        return _misfit_message(field, self.converter, repeated=False)

    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        if msg.HasField(field.name):
            out.update(self.converter(getattr(msg, field.name), path))


# --- apimachinery value types -------------------------------------------------------------------------


def _time(value: metav1.Time, path: str) -> str | None:
    """RFC 3339 in UTC with second precision, as metav1.Time marshals; None for Go's zero time."""
    if not (value.HasField("seconds") or value.HasField("nanos")):
        return None
    try:
        # Go's time.Unix normalizes nanos outside [0, 1e9) into the seconds, flooring; so does this.
        moment = _EPOCH + dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
    except OverflowError:
        raise BadFieldError(path, f"is {value.seconds}s from 1970, outside the years 1 to 9999") from None
    return moment.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


TIME: Final = Converter(metav1.Time, _time)


def _fields_v1(value: metav1.FieldsV1, path: str) -> Any:
    """The managed-fields set, JSON held as bytes; None when empty."""
    if not value.Raw:
        return None
    try:
        return json.loads(value.Raw)
    except ValueError:
        raise BadFieldError(path, "is not JSON") from None


FIELDS_V1: Final = Converter(metav1.FieldsV1, _fields_v1)


def _quantity(value: resource.Quantity, path: str) -> str:
    """A Quantity is its canonical string in protobuf as in JSON; Go rejects an empty one."""
    quantity = text(value.string, path)
    if not quantity:
        raise BadFieldError(path, "is an empty quantity")
    return quantity


QUANTITY: Final = Converter(resource.Quantity, _quantity)


def _int_or_string(value: intstr.IntOrString, path: str) -> int | str:
    """The bare int (type 0) or string (type 1), as IntOrString marshals to JSON."""
    if value.type == 0:
        return value.intVal
    if value.type == 1:
        return text(value.strVal, join(path, "strVal"))
    raise BadFieldError(path, f"has type {value.type}, neither 0 (int) nor 1 (string)")


INT_OR_STRING: Final = Converter(intstr.IntOrString, _int_or_string)


class IntOrStr(Rule):
    """An IntOrString; when not a pointer, Go's zero value (type 0, intVal 0, strVal "") is unset."""

    def __init__(self, *, pointer: bool = False) -> None:
        super().__init__()
        self.pointer = pointer

    def misfit(self, field: FieldDescriptor) -> str | None:
        return _misfit_message(field, INT_OR_STRING, repeated=False)

    def put(self, out: JsonObject, key: str, msg: Message, field: FieldDescriptor, path: str) -> None:
        if not msg.HasField(field.name):
            return
        value: intstr.IntOrString = getattr(msg, field.name)
        if not self.pointer and (value.type, value.intVal, value.strVal) == (0, 0, ""):
            return
        out[key] = INT_OR_STRING(value, join(path, key))
