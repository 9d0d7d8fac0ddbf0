"""Validation of incoming objects as kube-apiserver does it: decoding against the schema (unknown fields per
`fieldValidation`, wrong types), names, labels, annotations, and CRD schemas (OpenAPI v3, via jsonschema).

Messages follow Kubernetes' wording, since users compare them with what a real cluster says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from isthmus.local.apiserver.errors import Cause, StatusError, bad_request, field_invalid, field_required
from isthmus.local.apiserver.schema import Schema, SchemaCatalog

JsonObject = dict[str, Any]

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


# -- names ------------------------------------------------------------------------------------------------


def dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not DNS1123_SUBDOMAIN.match(value):
        errors.append(SUBDOMAIN_MSG)
    return errors


def dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not DNS1123_LABEL.match(value):
        errors.append(LABEL_MSG)
    return errors


def dns1035_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not DNS1035_LABEL.match(value):
        errors.append(DNS1035_MSG)
    return errors


def path_segment_name(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


NameValidator = Callable[[str], list[str]]

# Which name rule each resource uses (kube-apiserver's ValidateObjectMeta callers); the default is a subdomain.
NAME_RULES: dict[tuple[str, str], NameValidator] = {
    ("", "namespaces"): dns1123_label,
    ("", "services"): dns1035_label,
    ("rbac.authorization.k8s.io", "roles"): path_segment_name,
    ("rbac.authorization.k8s.io", "rolebindings"): path_segment_name,
    ("rbac.authorization.k8s.io", "clusterroles"): path_segment_name,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): path_segment_name,
}


def validate_name(group: str, plural: str, name: str) -> list[Cause]:
    rule = NAME_RULES.get((group, plural), dns1123_subdomain)
    return [field_invalid("metadata.name", name, msg) for msg in rule(name)]


def qualified_name(value: str) -> list[str]:
    """Kubernetes' IsQualifiedName: an optional DNS subdomain prefix and a name part of <= 63 characters."""
    prefix, _, name = value.rpartition("/")
    errors = []
    if prefix or "/" in value:
        if not prefix:
            errors.append("prefix part must be non-empty")
        elif dns1123_subdomain(prefix):
            errors.extend("prefix part " + e for e in dns1123_subdomain(prefix))
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.match(name):
        errors.append(QUALIFIED_NAME_MSG)
    return errors


def validate_metadata(meta: Mapping[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        causes += [field_invalid("metadata.labels", key, msg) for msg in qualified_name(key)]
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            detail = (
                "must be no more than 63 characters"
                if isinstance(value, str) and len(value) > 63
                else (LABEL_VALUE_MSG)
            )
            causes.append(field_invalid("metadata.labels", value, detail))
    annotations = meta.get("annotations") or {}
    total = 0
    for key, value in annotations.items():
        causes += [field_invalid("metadata.annotations", key, msg) for msg in qualified_name(key.lower())]
        total += len(key) + len(value or "")
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(
            Cause(
                "FieldValueTooLong",
                f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
                "metadata.annotations",
            )
        )
    for finalizer in meta.get("finalizers") or []:
        problems = qualified_name(finalizer) if isinstance(finalizer, str) else ["must be a string"]
        causes += [field_invalid("metadata.finalizers", finalizer, msg) for msg in problems]
    return causes


# -- decoding against the schema --------------------------------------------------------------------------


@dataclass
class DecodeReport:
    """What decoding found: unknown field paths (kubectl's `strict decoding error`) and type mismatches."""

    unknown: list[str] = field(default_factory=list)
    type_errors: list[str] = field(default_factory=list)


_JSON_TYPE = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}


def _type_of(value: Any) -> str:
    return _JSON_TYPE.get(type(value), "unknown")


def _fits(value: Any, types: frozenset[str]) -> bool:
    kind = _type_of(value)
    if kind in types:
        return True
    if kind == "integer" and "number" in types:
        return True
    return kind == "number" and "integer" in types and float(value).is_integer()


class Decoder:
    """Walks an object against its schema, collecting (and with `prune`, removing) unknown fields."""

    def __init__(self, catalog: SchemaCatalog) -> None:
        self.object_meta = catalog.named("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")

    def decode(
        self,
        obj: JsonObject,
        schema: Schema,
        prune: bool,
        report_types: bool = True,
        drop_nulls: bool = False,
    ) -> DecodeReport:
        """Walk `obj`; `drop_nulls` removes nulls the schema does not declare nullable (custom resources)."""
        report = DecodeReport()
        self._walk(obj, schema, "", report, prune, report_types, root=True, drop_nulls=drop_nulls)
        return report

    def _walk(
        self,
        value: Any,
        schema: Schema,
        path: str,
        report: DecodeReport,
        prune: bool,
        types: bool,
        root: bool = False,
        parent: str = "",
        drop_nulls: bool = False,
    ) -> None:
        if value is None:
            return
        if types and schema.types and not _fits(value, schema.types):
            go_kind = {"integer": "number", "boolean": "bool"}.get(_type_of(value), _type_of(value))
            report.type_errors.append(
                f"json: cannot unmarshal {go_kind} into Go struct field {parent}.{path or '.'} of type "
                f"{schema.go_type}"
            )
            return
        if isinstance(value, dict):
            if (
                schema.preserves_unknown_fields
                and not schema.properties
                and schema.additional_properties is None
            ):
                return
            embedded = root or schema.embedded_resource
            for key in list(value):
                child = schema.properties.get(key)
                if child is None and embedded and key == "metadata":
                    child = self.object_meta
                if child is None and embedded and key in ("apiVersion", "kind"):
                    continue
                if child is None:
                    child = schema.additional_properties
                sub = f"{path}.{key}" if path else key
                if child is None:
                    if not schema.preserves_unknown_fields:
                        report.unknown.append(sub)
                        if prune:
                            del value[key]
                    continue
                if drop_nulls and value[key] is None and not child.raw.get("nullable"):
                    del value[key]
                    continue
                struct = schema.go_type if schema.properties else parent
                self._walk(value[key], child, sub, report, prune, types, parent=struct, drop_nulls=drop_nulls)
        elif isinstance(value, list) and schema.items is not None:
            for i, item in enumerate(value):
                self._walk(
                    item,
                    schema.items,
                    f"{path}[{i}]",
                    report,
                    prune,
                    types,
                    parent=parent,
                    drop_nulls=drop_nulls,
                )


def required_fields(obj: Any, schema: Schema, path: str = "") -> list[Cause]:
    """Fields the schema marks required but the object lacks, as `Required value` causes."""
    causes: list[Cause] = []
    if isinstance(obj, dict):
        for name in schema.required:
            if obj.get(name) in (None, ""):
                causes.append(field_required(f"{path}.{name}" if path else name))
        for key, value in obj.items():
            child = schema.properties.get(key)
            if child is not None and not (not path and key in ("metadata", "status")):
                causes += required_fields(value, child, f"{path}.{key}" if path else key)
    elif isinstance(obj, list) and schema.items is not None:
        for i, item in enumerate(obj):
            causes += required_fields(item, schema.items, f"{path}[{i}]")
    return causes


def strict_decoding_error(kind: str, version: str, report: DecodeReport) -> StatusError:
    """The 400 kube-apiserver answers when decoding fails (types) or, under Strict, finds unknown fields."""
    if report.type_errors:
        detail = report.type_errors[0]
    else:
        detail = "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in report.unknown)
    return bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: {detail}')


# -- CRD schemas ------------------------------------------------------------------------------------------


def _openapi_types(validator: Any, types: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
    if instance is None and schema.get("nullable"):
        return
    yield from jsonschema.Draft4Validator.VALIDATORS["type"](validator, types, instance, schema)


_CrdValidatorClass = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft4Validator, {"type": _openapi_types}
)


class CrdValidator:
    """Validates custom resources against a CRD version's openAPIV3Schema (types, enums, ranges, required).

    CEL rules (`x-kubernetes-validations`) are not evaluated.
    """

    def __init__(self, open_api_v3_schema: Mapping[str, Any]) -> None:
        self._validator = _CrdValidatorClass(self._strip(open_api_v3_schema))

    @classmethod
    def _strip(cls, node: Any) -> Any:
        if isinstance(node, Mapping):
            out = {k: cls._strip(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
            if node.get("x-kubernetes-int-or-string"):
                out.pop("type", None)
                out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            return out
        if isinstance(node, list):
            return [cls._strip(v) for v in node]
        return node

    def validate(self, obj: JsonObject) -> list[Cause]:
        causes = []
        body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
        for error in sorted(self._validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            path = ""
            for part in error.absolute_path:
                path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
            if error.validator == "required":
                missing = re.search(r"'([^']+)' is a required property", error.message)
                sub = missing.group(1) if missing else ""
                causes.append(field_required(f"{path}.{sub}" if path else sub))
            elif error.validator == "type":
                found = _type_of(error.instance)
                causes.append(
                    field_invalid(
                        path, found, f'{path} in body must be of type {error.validator_value}: "{found}"'
                    )
                )
            elif error.validator == "enum":
                allowed = ", ".join(f'"{v}"' for v in error.validator_value)
                causes.append(
                    Cause(
                        "FieldValueNotSupported",
                        f'Unsupported value: "{error.instance}": supported values: {allowed}',
                        path,
                    )
                )
            elif error.validator in _BOUND_WORDING:
                wording = _BOUND_WORDING[error.validator].format(v=error.validator_value)
                causes.append(field_invalid(path, error.instance, f"{path} in body {wording}"))
            else:
                causes.append(field_invalid(path, error.instance, error.message))
        return causes


# How kube-apiserver words a CRD schema's value constraints (k8s.io/kube-openapi validate errors).
_BOUND_WORDING = {
    "minimum": "should be greater than or equal to {v}",
    "maximum": "should be less than or equal to {v}",
    "exclusiveMinimum": "should be greater than {v}",
    "exclusiveMaximum": "should be less than {v}",
    "pattern": "should match '{v}'",
    "minLength": "should be at least {v} chars long",
    "maxLength": "should be at most {v} chars long",
    "minItems": "should have at least {v} items",
    "maxItems": "must have at most {v} items",
    "multipleOf": "should be a multiple of {v}",
    "uniqueItems": "shouldn't contain duplicates",
}
