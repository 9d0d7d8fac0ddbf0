"""Validation as kube-apiserver does it: decoding against the published schemas (unknown fields, wrong types),
object names per resource, labels, annotations and finalizers, and custom resources against their CRD's
openAPIV3Schema. Messages are compared with Kubernetes' own wording, since users compare them with what a real
cluster says."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from isthmus.local.apiserver.errors import Cause
from isthmus.local.apiserver.schema import Schema, SchemaCatalog, crd_schema
from isthmus.local.apiserver.validation import (
    CrdValidator,
    Decoder,
    qualified_name,
    required_fields,
    strict_decoding_error,
    validate_metadata,
    validate_name,
)

JsonObject = dict[str, Any]

CATALOG = SchemaCatalog.load()
DECODER = Decoder(CATALOG)

# Kubernetes' messages (k8s.io/apimachinery/pkg/util/validation), written out to compare against.
RFC1123_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
RFC1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_LABEL = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
QUALIFIED_NAME_PART = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def kind_schema(group: str, version: str, kind: str) -> Schema:
    schema = CATALOG.for_kind(group, version, kind)
    assert schema is not None
    return schema


DEPLOYMENT = kind_schema("apps", "v1", "Deployment")
CONFIGMAP = kind_schema("", "v1", "ConfigMap")


def messages(causes: list[Cause]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


def deployment(**spec: Any) -> JsonObject:
    base: JsonObject = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
        },
    }
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": base}


# -- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "plural", "name"),
    [
        ("", "namespaces", "team-a"),
        ("", "namespaces", "1st"),  # a DNS-1123 label may start with a digit
        ("", "services", "web"),
        ("", "configmaps", "app.config-v1"),  # subdomains may have dots
        ("", "pods", "1st.pod"),
        ("rbac.authorization.k8s.io", "clusterroles", "system:controller:job-controller"),
        ("rbac.authorization.k8s.io", "roles", "Anything Goes:Here"),
        ("rbac.authorization.k8s.io", "clusterrolebindings", "cluster-admin"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "widgets.example.com"),
    ],
)
def test_valid_names(group: str, plural: str, name: str) -> None:
    assert validate_name(group, plural, name) == []


@pytest.mark.parametrize(
    ("group", "plural", "name", "expected"),
    [
        # Namespaces are DNS-1123 labels (ValidateNamespaceName): no dots, no capitals.
        ("", "namespaces", "team.a", [RFC1123_LABEL]),
        ("", "namespaces", "Team", [RFC1123_LABEL]),
        ("", "namespaces", "a" * 64, ["must be no more than 63 characters"]),
        # Services are DNS-1035 labels (ValidateServiceName): they must start with a letter.
        ("", "services", "1web", [DNS1035_LABEL]),
        ("", "services", "web.front", [DNS1035_LABEL]),
        ("", "services", "s" * 64, ["must be no more than 63 characters"]),
        # Most kinds are DNS-1123 subdomains (NameIsDNSSubdomain).
        ("", "configmaps", "My_Config", [RFC1123_SUBDOMAIN]),
        ("apps", "deployments", "web-", [RFC1123_SUBDOMAIN]),
        ("", "pods", "p" * 254, ["must be no more than 253 characters"]),
        # RBAC names are path segments (ValidateRBACName = path.IsValidPathSegmentName).
        ("rbac.authorization.k8s.io", "roles", "a/b", ["may not contain '/'"]),
        ("rbac.authorization.k8s.io", "clusterroles", "100%", ["may not contain '%'"]),
        ("rbac.authorization.k8s.io", "rolebindings", "..", ["may not be '..'"]),
        ("rbac.authorization.k8s.io", "clusterrolebindings", ".", ["may not be '.'"]),
    ],
)
def test_invalid_names_with_kubernetes_messages(
    group: str, plural: str, name: str, expected: list[str]
) -> None:
    causes = validate_name(group, plural, name)
    assert [(c.reason, c.field) for c in causes] == [("FieldValueInvalid", "metadata.name")] * len(expected)
    assert [c.message for c in causes] == [f'Invalid value: "{name}": {detail}' for detail in expected]


# -- labels, annotations, finalizers -------------------------------------------------------------------------


def test_valid_metadata_has_no_causes() -> None:
    meta = {
        "name": "x",
        "labels": {"app": "web", "example.com/team": "a", "empty": "", "v": "1.2_3-x"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "Note": "any text at all"},
        "finalizers": ["example.com/cleanup", "kubernetes", "foregroundDeletion"],
    }
    assert validate_metadata(meta) == []


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "bad value"}, [f'metadata.labels: Invalid value: "bad value": {LABEL_VALUE}']),
        ({"app": "-web"}, [f'metadata.labels: Invalid value: "-web": {LABEL_VALUE}']),
        ({"bad key": "v"}, [f'metadata.labels: Invalid value: "bad key": {QUALIFIED_NAME_PART}']),
        (
            {"Example.com/app": "v"},
            [f'metadata.labels: Invalid value: "Example.com/app": prefix part {RFC1123_SUBDOMAIN}'],
        ),
        ({"/app": "v"}, ['metadata.labels: Invalid value: "/app": prefix part must be non-empty']),
        (
            {"example.com/": "v"},
            ['metadata.labels: Invalid value: "example.com/": name part must be non-empty'],
        ),
        (
            {"k" * 64: "v"},
            [f'metadata.labels: Invalid value: "{"k" * 64}": name part must be no more than 63 characters'],
        ),
        (
            {"app": "v" * 64},
            [f'metadata.labels: Invalid value: "{"v" * 64}": must be no more than 63 characters'],
        ),
    ],
)
def test_invalid_labels_with_kubernetes_messages(labels: dict[str, str], expected: list[str]) -> None:
    """ValidateLabels: keys are qualified names, values valid label values, both at `metadata.labels`."""
    assert messages(validate_metadata({"name": "x", "labels": labels})) == expected


def test_annotation_keys_are_qualified_names_checked_lowercased() -> None:
    """ValidateAnnotations checks `strings.ToLower(key)`: capitals in a prefix are fine, spaces are not."""
    assert validate_metadata({"name": "x", "annotations": {"Example.COM/Note": "v"}}) == []
    assert messages(validate_metadata({"name": "x", "annotations": {"my note": "v"}})) == [
        f'metadata.annotations: Invalid value: "my note": {QUALIFIED_NAME_PART}'
    ]


def test_annotations_may_total_at_most_256_kib() -> None:
    fits = {"a": "x" * (256 * 1024 - 1)}
    assert validate_metadata({"name": "x", "annotations": fits}) == []
    too_big = {"a": "x" * (256 * 1024)}
    causes = validate_metadata({"name": "x", "annotations": too_big})
    assert [(c.reason, c.field) for c in causes] == [("FieldValueTooLong", "metadata.annotations")]


def test_invalid_finalizer_names_with_kubernetes_messages() -> None:
    """apimachinery's ValidateFinalizers checks each finalizer with IsQualifiedName and reports it at
    `metadata.finalizers` (the list's path, no index) with IsQualifiedName's message."""
    causes = validate_metadata({"name": "x", "finalizers": ["example.com/ok", "bad finalizer!"]})
    assert messages(causes) == [
        f'metadata.finalizers: Invalid value: "bad finalizer!": {QUALIFIED_NAME_PART}'
    ]


def test_qualified_name_rules() -> None:
    assert qualified_name("app") == []
    assert qualified_name("app.kubernetes.io/name") == []
    assert qualified_name("a/b/c") == [f"prefix part {RFC1123_SUBDOMAIN}"]
    assert qualified_name("") == ["name part must be non-empty"]


# -- decoding: unknown fields --------------------------------------------------------------------------------


def test_unknown_fields_are_reported_with_kubernetes_paths() -> None:
    """The paths of kube-apiserver's `strict decoding error: unknown field "..."`: dotted fields, `[i]` for
    list items, `metadata` of the embedded ObjectMeta included."""
    obj = deployment(replica=3)
    obj["metadata"]["labelz"] = {"a": "b"}
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    obj["spec"]["template"]["spec"]["containers"].append({"name": "d", "image": "x", "portz": []})
    obj["extra"] = True

    report = DECODER.decode(obj, DEPLOYMENT, prune=False)

    assert report.unknown == [
        "metadata.labelz",
        "spec.template.spec.containers[0].imagee",
        "spec.template.spec.containers[1].portz",
        "spec.replica",
        "extra",
    ]
    assert report.type_errors == []
    assert obj["spec"]["replica"] == 3  # reported, not removed


def test_unknown_fields_are_pruned_when_asked_and_known_ones_kept() -> None:
    """fieldValidation=Ignore/Warn: the unknown fields are dropped, as kube-apiserver's decoder drops them."""
    obj = deployment(replica=3)
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    expected = deployment()

    report = DECODER.decode(obj, DEPLOYMENT, prune=True)

    assert report.unknown == ["spec.template.spec.containers[0].imagee", "spec.replica"]
    assert obj == expected


def test_map_values_and_free_form_fields_are_not_unknown() -> None:
    obj = deployment()
    obj["metadata"]["labels"] = {"any-key": "v"}
    obj["metadata"]["annotations"] = {"any/key": "v"}
    obj["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    obj["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "1Gi"}}
    obj["metadata"]["managedFields"] = [
        {"manager": "m", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"x": {}}}}
    ]

    report = DECODER.decode(obj, DEPLOYMENT, prune=False)

    assert report.unknown == []
    assert report.type_errors == []


def test_configmap_top_level_fields_are_checked() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}, "dta": {}}
    assert DECODER.decode(obj, CONFIGMAP, prune=False).unknown == ["dta"]


def test_strict_decoding_error_lists_every_unknown_field() -> None:
    """kube-apiserver (400): `Deployment in version "v1" cannot be handled as a Deployment: strict decoding
    error: unknown field "spec.replica", unknown field "spec.template.spec.containers[0].imagee"`."""
    obj = deployment(replica=3)
    obj["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    report = DECODER.decode(obj, DEPLOYMENT, prune=False)

    error = strict_decoding_error("Deployment", "v1", report)

    assert (error.code, error.reason) == (400, "BadRequest")
    assert error.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagee", unknown field "spec.replica"'
    )


# -- decoding: types -----------------------------------------------------------------------------------------


def test_values_of_the_right_types_decode() -> None:
    obj = deployment(replicas=3, strategy={"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}})
    obj["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    obj["spec"]["paused"] = False
    assert DECODER.decode(obj, DEPLOYMENT, prune=False).type_errors == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), "3"),
        (("spec", "paused"), "yes"),
        (("spec", "template", "spec", "containers"), {"name": "c"}),
        (("metadata", "labels"), ["a"]),
        (("spec", "strategy", "rollingUpdate", "maxSurge"), True),
    ],
)
def test_values_of_the_wrong_type_are_type_errors(path: tuple[str, ...], value: Any) -> None:
    obj = deployment(strategy={"rollingUpdate": {}})
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value

    report = DECODER.decode(obj, DEPLOYMENT, prune=False)

    assert len(report.type_errors) == 1
    assert report.type_errors[0].startswith("json: cannot unmarshal ")


def test_a_type_error_is_reported_as_kubernetes_reports_it() -> None:
    """The message kube-apiserver gives (Go's json.UnmarshalTypeError, as `kubectl apply` users see it when a
    Helm value renders `replicas: "3"`): `Deployment in version "v1" cannot be handled as a Deployment: json:
    cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`."""
    obj = deployment(replicas="3")
    report = DECODER.decode(obj, DEPLOYMENT, prune=False)

    error = strict_decoding_error("Deployment", "v1", report)

    assert error.code == 400
    assert error.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go '
        "struct field DeploymentSpec.spec.replicas of type int32"
    )


# -- required fields -----------------------------------------------------------------------------------------


def test_required_fields_are_reported_at_their_paths() -> None:
    obj = deployment()
    del obj["spec"]["selector"]
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]

    assert messages(required_fields(obj, DEPLOYMENT)) == [
        "spec.selector: Required value",
        "spec.template.spec.containers[0].name: Required value",
    ]
    assert required_fields(deployment(), DEPLOYMENT) == []


# -- custom resources ----------------------------------------------------------------------------------------

WIDGET_SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "tags": {"type": "array", "items": {"type": "string"}},
                "name": {"type": "string", "pattern": "^[a-z]+$"},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def widget(**spec: Any) -> JsonObject:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {"size": 3, **spec},
    }


def test_a_valid_custom_resource_has_no_causes() -> None:
    validator = CrdValidator(WIDGET_SCHEMA)
    assert validator.validate(widget(mode="fast", port="http", note=None, tags=["a"], name="abc")) == []
    assert validator.validate(widget(port=8080, extra={"anything": {"goes": [1]}})) == []


def test_custom_resource_required_and_enum_messages() -> None:
    """apiextensions-apiserver: `spec.size: Required value`, `spec.mode: Unsupported value: "medium":
    supported values: "fast", "slow"`."""
    validator = CrdValidator(WIDGET_SCHEMA)
    obj = widget(mode="medium")
    del obj["spec"]["size"]

    causes = validator.validate(obj)

    assert sorted(messages(causes)) == [
        'spec.mode: Unsupported value: "medium": supported values: "fast", "slow"',
        "spec.size: Required value",
    ]
    assert sorted(c.reason for c in causes) == ["FieldValueNotSupported", "FieldValueRequired"]


def test_custom_resource_type_errors_quote_the_type_found() -> None:
    """apiextensions-apiserver reports kube-openapi's InvalidType with the JSON type found as the value:
    `spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"`, whatever the
    string was (here "three")."""
    validator = CrdValidator(WIDGET_SCHEMA)

    assert messages(validator.validate(widget(size="three"))) == [
        'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"'
    ]
    assert messages(validator.validate(widget(tags="a"))) == [
        'spec.tags: Invalid value: "string": spec.tags in body must be of type array: "string"'
    ]


def test_custom_resource_type_error_for_a_non_string_value() -> None:
    validator = CrdValidator(WIDGET_SCHEMA)
    assert messages(validator.validate(widget(note=3))) == [
        'spec.note: Invalid value: "integer": spec.note in body must be of type string: "integer"'
    ]


def test_custom_resource_value_constraint_messages() -> None:
    """kube-openapi's wording, as apiextensions-apiserver reports it: `spec.size: Invalid value: 0: spec.size
    in body should be greater than or equal to 1`, `... should be less than or equal to 10`, `spec.name:
    Invalid value: "ABC": spec.name in body should match '^[a-z]+$'`."""
    validator = CrdValidator(WIDGET_SCHEMA)

    assert messages(validator.validate(widget(size=0))) == [
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    ]
    assert messages(validator.validate(widget(size=11))) == [
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
    ]
    assert messages(validator.validate(widget(name="ABC"))) == [
        "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"
    ]


def test_custom_resource_errors_are_reported_in_path_order_with_list_indexes() -> None:
    validator = CrdValidator(WIDGET_SCHEMA)
    causes = validator.validate(widget(size=0, tags=["a", 2]))
    assert [c.field for c in causes] == ["spec.size", "spec.tags[1]"]


def test_a_nullable_field_accepts_null() -> None:
    validator = CrdValidator(WIDGET_SCHEMA)
    assert validator.validate(widget(note=None)) == []
    assert [c.field for c in validator.validate(widget(note=["x"]))] == ["spec.note"]


def test_the_crd_schema_drives_unknown_field_decoding() -> None:
    """CRs are pruned by their structural schema; `x-kubernetes-preserve-unknown-fields` keeps a subtree."""
    schema = crd_schema(WIDGET_SCHEMA)
    obj = widget(colour="red", extra={"free": {"form": 1}})
    obj["status"] = {"ready": True, "phase": "x"}
    original = copy.deepcopy(obj)

    report = DECODER.decode(obj, schema, prune=True)

    assert report.unknown == ["spec.colour", "status.phase"]
    del original["spec"]["colour"]
    del original["status"]["phase"]
    assert obj == original
