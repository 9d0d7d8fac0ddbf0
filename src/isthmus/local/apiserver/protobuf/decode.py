"""Decoding Kubernetes protobuf request bodies into the JSON-form objects the server handles.

A body of Content-Type `application/vnd.kubernetes.protobuf` is the 4-byte magic `k8s\\x00` followed by one
serialized `runtime.Unknown`: `typeMeta` (apiVersion, kind), `raw` (the serialized object), `contentEncoding`
and `contentType` (kubectl leaves both empty). `decode_object` checks the envelope, decodes `raw` as the
message of that kind and returns what the object's JSON would have been:

- Go writes its non-pointer fields even when unset, so "" strings, 0 numbers and empty structs, maps and
  lists mean unset and are omitted (`creationTimestamp: null`, `status: {}`, `resources: {}`,
  `strategy: {}`, `"allowed": false` in a review's status, ... are left out). Pointer fields (`immutable`,
  `replicas`, `suspend`, `enableServiceLinks`, `preemptionPolicy`, `boundObjectRef`, `rollingUpdate`, ...)
  count when present, even as false, 0, "" or {}. One exception: PriorityClass `value`, required, is
  written even when 0, as Go's JSON writes it.
- `bytes` values (Secret `data`, ConfigMap `binaryData`) become base64, as in JSON.
- Times become RFC 3339 in UTC with second precision (`2024-01-02T03:04:05Z`), as `metav1.Time` marshals;
  an empty Time message is Go's zero time, i.e. unset.
- A Quantity (`resource.Quantity`, quota `hard`, container `limits`) is its string (`"500m"`); an
  IntOrString (`targetPort`, `minAvailable`, `maxSurge`) is the bare int or string; an `extra` value
  (`ExtraValue`) is a bare list of strings; an IngressRule's `ingressRuleValue` is inline (`http`).
- Map keys come out sorted, as Go's JSON encoder writes them.

`kinds.py` declares, field by field, the JSON form of every message of the `.proto` subset (with the
rules of `convert.py`). The subset holds every field kubectl's create generators and auth commands can
set, and the usual fields of a pod template; `kubectl create job --from=cronjob/NAME` copies the cron job's
whole job spec, so a cron job using a field left out (volumes, probes, ...) gets a 415.

Only the kinds of `SUPPORTED_KINDS` are decoded. Another kind, a field this decoder does not know (rather
than dropping it silently), or a `contentEncoding`/`contentType` other than none/protobuf raise 415
UnsupportedMediaType: the client can send the object as JSON instead. A body that is not a well-formed
message, or holds a string that is not UTF-8, a time outside years 1-9999, an IntOrString of another type
or an empty Quantity, raises 400 BadRequest.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.message import DecodeError

from isthmus.local.apiserver.errors import StatusError, bad_request
from isthmus.local.apiserver.protobuf.convert import (
    BadFieldError,
    Converter,
    JsonObject,
    UnknownFieldsError,
    reject_unknown_fields,
)
from isthmus.local.apiserver.protobuf.generated.k8s.io.apimachinery.pkg.runtime import (
    generated_pb2 as runtime,
)
from isthmus.local.apiserver.protobuf.kinds import KINDS

PROTOBUF_CONTENT_TYPE: Final = "application/vnd.kubernetes.protobuf"
# What every protobuf body starts with, before the serialized runtime.Unknown.
MAGIC: Final = b"k8s\x00"


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
    converter = KINDS.get((api_version, kind))
    if converter is None:
        supported = ", ".join(f"{v} {k}" for v, k in sorted(KINDS))
        raise _unsupported(
            f"this server cannot decode {what} from {PROTOBUF_CONTENT_TYPE}; it decodes only {supported}"
        )
    try:
        obj = _decode(converter, envelope.raw)
    except DecodeError as err:
        raise bad_request(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body is not a well-formed protobuf message "
            f"({err}): got {len(envelope.raw)} bytes starting {envelope.raw[:24]!r}"
        ) from None
    except UnknownFieldsError as err:
        numbers = ", ".join(str(n) for n in err.numbers)
        raise _unsupported(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body has field number(s) {numbers} in "
            f"{err.path or 'the object'}, which this server does not know"
        ) from None
    except BadFieldError as err:
        raise bad_request(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body is invalid: {err.path} {err.problem}"
        ) from None
    except UnicodeDecodeError:
        raise bad_request(
            f"the {what} in the {PROTOBUF_CONTENT_TYPE} request body has a string that is not valid UTF-8"
        ) from None
    return {"apiVersion": api_version, "kind": kind, **obj}


# --- errors -------------------------------------------------------------------------------------------


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


def _decode(converter: Converter[Any, JsonObject], raw: bytes) -> JsonObject:
    msg = converter.message()
    msg.ParseFromString(raw)
    reject_unknown_fields(msg, "")
    return converter(msg, "")


# The (apiVersion, kind) pairs decode_object decodes.
SUPPORTED_KINDS: Final[frozenset[tuple[str, str]]] = frozenset(KINDS)
