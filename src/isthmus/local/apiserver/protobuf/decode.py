"""Decoding Kubernetes protobuf request bodies into the JSON-form objects the server handles.

A body of Content-Type `application/vnd.kubernetes.protobuf` is the 4-byte magic `k8s\\x00` followed by one
serialized `runtime.Unknown`: `typeMeta` (apiVersion, kind), `raw` (the serialized object), `contentEncoding`
and `contentType` (kubectl leaves both empty). `decode_object` checks the envelope, decodes `raw` as the
message of that kind and returns what the object's JSON would have been:

- Go writes its non-pointer fields even when unset, so "" strings, 0 numbers and empty structs, maps and
  lists mean unset and are omitted. Pointer fields (`immutable`, `automountServiceAccountToken`,
  `expirationSeconds`, `deletionGracePeriodSeconds`, `boundObjectRef`, ...) count when present, even as
  false, 0 or {}.
- `bytes` values (Secret `data`, ConfigMap `binaryData`) become base64, as in JSON.
- Times become RFC 3339 in UTC with second precision (`2024-01-02T03:04:05Z`), as `metav1.Time` marshals;
  an empty Time message is Go's zero time, i.e. unset.
- Map keys come out sorted, as Go's JSON encoder writes them.

Only the kinds of `SUPPORTED_KINDS` are decoded. Another kind, a field this decoder does not know (rather
than dropping it silently), or a `contentEncoding`/`contentType` other than none/protobuf raise 415
UnsupportedMediaType: the client can send the object as JSON instead. A body that is not a well-formed
message, or holds a string that is not UTF-8 or a time outside years 1-9999, raises 400 BadRequest.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from isthmus.local.apiserver.errors import StatusError, bad_request
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.authentication.v1 import (
    generated_pb2 as authnv1,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.api.core.v1 import generated_pb2 as corev1
from isthmus.local.apiserver.protobuf.generated.k8s.io.apimachinery.pkg.apis.meta.v1 import (
    generated_pb2 as metav1,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.apimachinery.pkg.runtime import (
    generated_pb2 as runtime,
)

JsonObject = dict[str, Any]
_M = TypeVar("_M", bound=Message)

PROTOBUF_CONTENT_TYPE: Final = "application/vnd.kubernetes.protobuf"
# What every protobuf body starts with, before the serialized runtime.Unknown.
MAGIC: Final = b"k8s\x00"

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def decode_object(body: bytes) -> JsonObject:
    """The JSON form of the object in a Kubernetes protobuf body: apiVersion and kind, then its fields.

    Raises `StatusError` 400 for a body that is not a well-formed protobuf object, 415 for one this server
    cannot decode (see the module docstring).
    """
    if not body.startswith(MAGIC):
        raise bad_request(
            f"the request body is not {PROTOBUF_CONTENT_TYPE}: it must start with the 4-byte prefix "
            f"{MAGIC!r}, got {_preview(body)}"
        )
    envelope = runtime.Unknown()
    try:
        envelope.ParseFromString(body[len(MAGIC) :])
    except DecodeError as err:
        raise bad_request(
            f"the {PROTOBUF_CONTENT_TYPE} request body is not a well-formed runtime.Unknown envelope "
            f"({err}): got {_preview(body)}"
        ) from None
    api_version = _printable(envelope.typeMeta.apiVersion)
    kind = _printable(envelope.typeMeta.kind)
    if not api_version or not kind:
        raise bad_request(
            f"the {PROTOBUF_CONTENT_TYPE} request body does not say what it holds: its envelope has "
            f'apiVersion "{api_version}" and kind "{kind}"; got {_preview(body)}'
        )
    what = f"{api_version} {kind}"
    encoding = _printable(envelope.contentEncoding)
    if encoding:
        raise _unsupported(
            f'the {what} in the {PROTOBUF_CONTENT_TYPE} request body has contentEncoding "{encoding}"'
        )
    content_type = _printable(envelope.contentType)
    if content_type not in ("", PROTOBUF_CONTENT_TYPE):
        raise _unsupported(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body says it is encoded as "
            f'"{content_type}", not protobuf'
        )
    decode = _KINDS.get((api_version, kind))
    if decode is None:
        supported = ", ".join(f"{v} {k}" for v, k in sorted(_KINDS))
        raise _unsupported(
            f"this server cannot decode {what} from {PROTOBUF_CONTENT_TYPE}; it decodes only {supported}"
        )
    try:
        obj = decode(envelope.raw)
    except DecodeError as err:
        raise bad_request(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body is not a well-formed protobuf message "
            f"({err}): got {len(envelope.raw)} bytes starting {envelope.raw[:24]!r}"
        ) from None
    except _UnknownFieldsError as err:
        numbers = ", ".join(str(n) for n in err.numbers)
        raise _unsupported(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body has field number(s) {numbers} in "
            f"{err.path or 'the object'}, which this server does not know"
        ) from None
    except _BadFieldError as err:
        raise bad_request(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body is invalid: {err.path} {err.problem}"
        ) from None
    except UnicodeDecodeError:
        raise bad_request(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body has a string that is not valid UTF-8"
        ) from None
    return {"apiVersion": api_version, "kind": kind, **obj}


# --- errors -------------------------------------------------------------------------------------------


class _UnknownFieldsError(Exception):
    def __init__(self, path: str, numbers: list[int]) -> None:
        super().__init__(path, numbers)
        self.path = path
        self.numbers = numbers


class _BadFieldError(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


def _unsupported(why: str) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"{why}; send the object as application/json instead (kubectl create -f sends JSON)",
    )


def _preview(body: bytes) -> str:
    return f"{len(body)} bytes starting {body[:24]!r}"


def _printable(value: object) -> str:
    """An envelope string for an error message; upb returns bytes for a proto2 string that is not UTF-8."""
    return value if isinstance(value, str) else repr(value)


# --- parsing ------------------------------------------------------------------------------------------


def _decoder(message: type[_M], convert: Callable[[_M], JsonObject]) -> Callable[[bytes], JsonObject]:
    def decode(raw: bytes) -> JsonObject:
        msg = message()
        msg.ParseFromString(raw)
        _reject_unknown_fields(msg, "")
        return convert(msg)

    return decode


def _reject_unknown_fields(msg: Message, path: str) -> None:
    """Raise `_UnknownFieldsError` for the first message, depth first, with fields our .proto subset lacks."""
    unknown = UnknownFieldSet(msg)
    if len(unknown):
        raise _UnknownFieldsError(path, sorted({unknown[i].field_number for i in range(len(unknown))}))
    for field, value in msg.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type is None:
            continue
        where = _join(path, field.name)
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    _reject_unknown_fields(item, f"{where}[{key!r}]")
        elif field.is_repeated:
            for index, item in enumerate(value):
                _reject_unknown_fields(item, f"{where}[{index}]")
        else:
            _reject_unknown_fields(value, where)


# --- field helpers ------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _text(value: object, path: str) -> str:
    # upb hands back bytes, not str, for a proto2 string field that is not valid UTF-8.
    if isinstance(value, str):
        return value
    raise _BadFieldError(path, "is not valid UTF-8")


def _put_str(out: JsonObject, key: str, value: object, path: str) -> None:
    """Set out[key] unless the string is "" (Go's unset)."""
    text = _text(value, _join(path, key))
    if text:
        out[key] = text


def _put(out: JsonObject, key: str, value: JsonObject | list[Any]) -> None:
    """Set out[key] unless the struct, map or list is empty."""
    if value:
        out[key] = value


def _strings(values: Iterable[object], path: str) -> list[str]:
    return [_text(value, f"{path}[{index}]") for index, value in enumerate(values)]


def _string_map(values: Mapping[str, str], path: str) -> dict[str, str]:
    items = [(_text(key, path), _text(value, f"{path}[{key!r}]")) for key, value in values.items()]
    return dict(sorted(items))


def _bytes_map(values: Mapping[str, bytes], path: str) -> dict[str, str]:
    items = [(_text(key, path), base64.b64encode(value).decode("ascii")) for key, value in values.items()]
    return dict(sorted(items))


def _put_time(out: JsonObject, key: str, value: metav1.Time, path: str) -> None:
    """Set out[key] to the RFC 3339 form of a Time, unless it is empty (Go's zero time)."""
    if not (value.HasField("seconds") or value.HasField("nanos")):
        return
    try:
        # Go's time.Unix normalizes nanos outside [0, 1e9) into the seconds, flooring; so does this.
        moment = _EPOCH + dt.timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
    except OverflowError:
        raise _BadFieldError(
            _join(path, key), f"is {value.seconds}s from 1970, outside the years 1 to 9999"
        ) from None
    out[key] = moment.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


# --- meta/v1 ------------------------------------------------------------------------------------------


def _object_meta(meta: metav1.ObjectMeta, path: str) -> JsonObject:
    out: JsonObject = {}
    _put_str(out, "name", meta.name, path)
    _put_str(out, "generateName", meta.generateName, path)
    _put_str(out, "namespace", meta.namespace, path)
    _put_str(out, "selfLink", meta.selfLink, path)
    _put_str(out, "uid", meta.uid, path)
    _put_str(out, "resourceVersion", meta.resourceVersion, path)
    if meta.generation:
        out["generation"] = meta.generation
    _put_time(out, "creationTimestamp", meta.creationTimestamp, path)
    _put_time(out, "deletionTimestamp", meta.deletionTimestamp, path)
    if meta.HasField("deletionGracePeriodSeconds"):
        out["deletionGracePeriodSeconds"] = meta.deletionGracePeriodSeconds
    _put(out, "labels", _string_map(meta.labels, _join(path, "labels")))
    _put(out, "annotations", _string_map(meta.annotations, _join(path, "annotations")))
    owners = _join(path, "ownerReferences")
    _put(
        out,
        "ownerReferences",
        [_owner_reference(o, f"{owners}[{i}]") for i, o in enumerate(meta.ownerReferences)],
    )
    _put(out, "finalizers", _strings(meta.finalizers, _join(path, "finalizers")))
    managed = _join(path, "managedFields")
    _put(
        out,
        "managedFields",
        [_managed_fields(e, f"{managed}[{i}]") for i, e in enumerate(meta.managedFields)],
    )
    return out


def _owner_reference(ref: metav1.OwnerReference, path: str) -> JsonObject:
    out: JsonObject = {}
    _put_str(out, "apiVersion", ref.apiVersion, path)
    _put_str(out, "kind", ref.kind, path)
    _put_str(out, "name", ref.name, path)
    _put_str(out, "uid", ref.uid, path)
    if ref.HasField("controller"):
        out["controller"] = ref.controller
    if ref.HasField("blockOwnerDeletion"):
        out["blockOwnerDeletion"] = ref.blockOwnerDeletion
    return out


def _managed_fields(entry: metav1.ManagedFieldsEntry, path: str) -> JsonObject:
    out: JsonObject = {}
    _put_str(out, "manager", entry.manager, path)
    _put_str(out, "operation", entry.operation, path)
    _put_str(out, "apiVersion", entry.apiVersion, path)
    _put_time(out, "time", entry.time, path)
    _put_str(out, "fieldsType", entry.fieldsType, path)
    if entry.fieldsV1.Raw:
        try:
            out["fieldsV1"] = json.loads(entry.fieldsV1.Raw)
        except ValueError:
            raise _BadFieldError(_join(path, "fieldsV1"), "is not JSON") from None
    _put_str(out, "subresource", entry.subresource, path)
    return out


def _with_metadata(meta: metav1.ObjectMeta) -> JsonObject:
    out: JsonObject = {}
    _put(out, "metadata", _object_meta(meta, "metadata"))
    return out


# --- core/v1 ------------------------------------------------------------------------------------------


def _namespace(ns: corev1.Namespace) -> JsonObject:
    out = _with_metadata(ns.metadata)
    spec: JsonObject = {}
    _put(spec, "finalizers", _strings(ns.spec.finalizers, "spec.finalizers"))
    _put(out, "spec", spec)
    status: JsonObject = {}
    _put_str(status, "phase", ns.status.phase, "status")
    conditions = [
        _namespace_condition(c, f"status.conditions[{i}]") for i, c in enumerate(ns.status.conditions)
    ]
    _put(status, "conditions", conditions)
    _put(out, "status", status)
    return out


def _namespace_condition(condition: corev1.NamespaceCondition, path: str) -> JsonObject:
    out: JsonObject = {}
    _put_str(out, "type", condition.type, path)
    _put_str(out, "status", condition.status, path)
    _put_time(out, "lastTransitionTime", condition.lastTransitionTime, path)
    _put_str(out, "reason", condition.reason, path)
    _put_str(out, "message", condition.message, path)
    return out


def _secret(secret: corev1.Secret) -> JsonObject:
    out = _with_metadata(secret.metadata)
    if secret.HasField("immutable"):
        out["immutable"] = secret.immutable
    _put(out, "data", _bytes_map(secret.data, "data"))
    _put(out, "stringData", _string_map(secret.stringData, "stringData"))
    _put_str(out, "type", secret.type, "")
    return out


def _config_map(config_map: corev1.ConfigMap) -> JsonObject:
    out = _with_metadata(config_map.metadata)
    if config_map.HasField("immutable"):
        out["immutable"] = config_map.immutable
    _put(out, "data", _string_map(config_map.data, "data"))
    _put(out, "binaryData", _bytes_map(config_map.binaryData, "binaryData"))
    return out


def _service_account(account: corev1.ServiceAccount) -> JsonObject:
    out = _with_metadata(account.metadata)
    _put(out, "secrets", [_object_reference(r, f"secrets[{i}]") for i, r in enumerate(account.secrets)])
    pull_secrets = [
        _local_object_reference(r, f"imagePullSecrets[{i}]") for i, r in enumerate(account.imagePullSecrets)
    ]
    _put(out, "imagePullSecrets", pull_secrets)
    if account.HasField("automountServiceAccountToken"):
        out["automountServiceAccountToken"] = account.automountServiceAccountToken
    return out


def _object_reference(ref: corev1.ObjectReference, path: str) -> JsonObject:
    out: JsonObject = {}
    _put_str(out, "kind", ref.kind, path)
    _put_str(out, "namespace", ref.namespace, path)
    _put_str(out, "name", ref.name, path)
    _put_str(out, "uid", ref.uid, path)
    _put_str(out, "apiVersion", ref.apiVersion, path)
    _put_str(out, "resourceVersion", ref.resourceVersion, path)
    _put_str(out, "fieldPath", ref.fieldPath, path)
    return out


def _local_object_reference(ref: corev1.LocalObjectReference, path: str) -> JsonObject:
    out: JsonObject = {}
    _put_str(out, "name", ref.name, path)
    return out


# --- authentication/v1 --------------------------------------------------------------------------------


def _token_request(request: authnv1.TokenRequest) -> JsonObject:
    out = _with_metadata(request.metadata)
    spec: JsonObject = {}
    _put(spec, "audiences", _strings(request.spec.audiences, "spec.audiences"))
    if request.spec.HasField("expirationSeconds"):
        spec["expirationSeconds"] = request.spec.expirationSeconds
    if request.spec.HasField("boundObjectRef"):
        ref = request.spec.boundObjectRef
        bound: JsonObject = {}
        _put_str(bound, "kind", ref.kind, "spec.boundObjectRef")
        _put_str(bound, "apiVersion", ref.apiVersion, "spec.boundObjectRef")
        _put_str(bound, "name", ref.name, "spec.boundObjectRef")
        _put_str(bound, "uid", ref.uID, "spec.boundObjectRef")
        spec["boundObjectRef"] = bound
    _put(out, "spec", spec)
    status: JsonObject = {}
    _put_str(status, "token", request.status.token, "status")
    _put_time(status, "expirationTimestamp", request.status.expirationTimestamp, "status")
    _put(out, "status", status)
    return out


_KINDS: Final[Mapping[tuple[str, str], Callable[[bytes], JsonObject]]] = {
    ("v1", "Namespace"): _decoder(corev1.Namespace, _namespace),
    ("v1", "Secret"): _decoder(corev1.Secret, _secret),
    ("v1", "ConfigMap"): _decoder(corev1.ConfigMap, _config_map),
    ("v1", "ServiceAccount"): _decoder(corev1.ServiceAccount, _service_account),
    ("authentication.k8s.io/v1", "TokenRequest"): _decoder(authnv1.TokenRequest, _token_request),
}

# The (apiVersion, kind) pairs decode_object decodes.
SUPPORTED_KINDS: Final[frozenset[tuple[str, str]]] = frozenset(_KINDS)
