"""API errors as Kubernetes reports them: `Status` objects with reason, code, details and causes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Cause:
    """One item of `details.causes`: what was wrong (reason), where (field) and a message."""

    reason: str
    message: str
    field: str = ""

    def to_json(self) -> JsonObject:
        out: JsonObject = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass
class StatusError(Exception):
    """An error answered to the client as a `Status` object."""

    code: int
    reason: str
    message: str
    name: str = ""
    group: str = ""
    kind: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int = 0

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> JsonObject:
        status: JsonObject = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:
            status["reason"] = self.reason
        details: JsonObject = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_json() for c in self.causes]
        if self.retry_after_seconds:
            details["retryAfterSeconds"] = self.retry_after_seconds
        if details:
            status["details"] = details
        return status


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        name=name,
        group=group,
        kind=resource,
    )


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        name=name,
        group=group,
        kind=resource,
    )


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        name=name,
        group=group,
        kind=resource,
    )


STALE_WRITE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> StatusError:
    """422 Invalid, with Kubernetes' message: `Kind "name" is invalid: field: Reason: detail`."""
    qualified_kind = f"{kind}.{group}" if group else kind
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    if len(parts) == 1:
        message = f'{qualified_kind} "{name}" is invalid: {parts[0]}'
    else:
        message = f'{qualified_kind} "{name}" is invalid: [{", ".join(parts)}]'
    return StatusError(422, "Invalid", message, name=name, group=group, kind=kind, causes=causes)


def go_value(value: Any) -> str:
    """A value as Go's `%#v` prints it in Kubernetes' field errors (`[]string{"a"}`, `map[string]string{...}`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        kind = "string" if all(isinstance(v, str) for v in value) else "interface {}"
        return f"[]{kind}{{" + ", ".join(go_value(v) for v in value) + "}"
    if isinstance(value, dict):
        kind = "string]string" if all(isinstance(v, str) for v in value.values()) else "string]interface {}"
        return f"map[{kind}{{" + ", ".join(f'"{k}":{go_value(v)}' for k, v in value.items()) + "}"
    return repr(value)


def field_invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {go_value(value)}: {detail}", path)


def field_required(path: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), path)


def field_forbidden(path: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", path)


def field_unsupported(path: str, value: Any, supported: list[str]) -> Cause:
    choices = ", ".join(f'"{s}"' for s in supported)
    return Cause("FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {choices}', path)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json, "
        f'application/yaml, application/vnd.kubernetes.protobuf (got "{content_type}")',
    )


def forbidden(
    user: str, verb: str, resource: str, group: str, name: str, namespace: str, why: str = ""
) -> StatusError:
    base = resource.split("/", 1)[0]  # `pods "p" is forbidden: ... cannot get resource "pods/log"`
    target = _qualified(base, group)
    subject = f'User "{user}" cannot {verb} resource "{resource}" in API group "{group}"'
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    named = f'{target} "{name}" is forbidden: ' if name else f"{target} is forbidden: "
    message = named + subject + scope + (f": {why}" if why else "")
    return StatusError(403, "Forbidden", message, name=name, group=group, kind=base)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def request_entity_too_large(limit: int) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")
