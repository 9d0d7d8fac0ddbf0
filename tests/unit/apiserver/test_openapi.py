"""The /openapi/v3 index and group-version documents (isthmus.local.apiserver.openapi), built from the real
schema catalog and a registry holding a sample CRD served in two versions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from isthmus.local.apiserver.openapi import OpenApi, crd_definition_name, gv_path, to_openapi_schema
from isthmus.local.apiserver.resources import ResourceRegistry, crd_resource_type
from isthmus.local.apiserver.schema import SchemaCatalog

REF = "#/components/schemas/"
DEPLOYMENT_ITEM = "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
WIDGETS = "/apis/example.com/{version}/namespaces/{{namespace}}/widgets"


def widget_crd(v1_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    spec_v1 = {
        "type": "object",
        "description": "What the widget should be.",
        "properties": v1_fields
        or {
            "size": {"type": "integer", "description": "How big."},
            "port": {"x-kubernetes-int-or-string": True, "description": "A port."},
            "template": {
                "type": "object",
                "x-kubernetes-embedded-resource": True,
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
    }
    spec_v1beta1 = {"type": "object", "properties": {"oldSize": {"type": "string"}}}

    def version(name: str, spec: dict[str, Any], served: bool = True) -> dict[str, Any]:
        return {
            "name": name,
            "served": served,
            "storage": name == "v1",
            "subresources": {
                "status": {},
                "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"},
            },
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
        }

    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                version("v1", spec_v1),
                version("v1beta1", spec_v1beta1),
                version("v1alpha1", spec_v1beta1, served=False),
            ],
        },
    }


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture
def registry() -> ResourceRegistry:
    registry = ResourceRegistry()
    registry.register(crd_resource_type(widget_crd()))
    return registry


@pytest.fixture
def api(catalog: SchemaCatalog, registry: ResourceRegistry) -> OpenApi:
    return OpenApi(catalog, registry)


def body(api: OpenApi, path: str) -> bytes:
    found = api.document(path)
    assert found is not None, path
    return found[0]


def doc(api: OpenApi, path: str) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(body(api, path))
    return parsed


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in `node`; the names in a `properties` map are field names, not schema keywords."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for child in value.values():
                    yield from walk(child)
            else:
                yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method != "parameters":
                yield path, method, op


def query_params(op: dict[str, Any]) -> set[str]:
    return {p["name"] for p in op.get("parameters", ()) if p["in"] == "query"}


# -- index and caching --------------------------------------------------------------------------------------


def test_index_lists_every_served_group_version_with_its_hash(
    api: OpenApi, registry: ResourceRegistry
) -> None:
    paths = api.index()["paths"]

    expected = {gv_path(g, v) for g, versions in registry.group_versions().items() for v in versions}
    assert set(paths) == expected
    assert {"api/v1", "apis/apps/v1", "apis/example.com/v1", "apis/example.com/v1beta1"} <= set(paths)
    assert "apis/example.com/v1alpha1" not in paths
    for path, entry in paths.items():
        found = api.document(path)
        assert found is not None
        assert entry == {"serverRelativeURL": f"/openapi/v3/{path}?hash={found[1]}"}
        assert len(found[1]) == 128 and found[1] == found[1].upper()


def test_unknown_paths_have_no_document(api: OpenApi) -> None:
    for path in ("apis/nope.example.com/v1", "api/v2", "apis/apps", "apis/example.com/v1alpha1", ""):
        assert api.document(path) is None
    assert api.document("/apis/apps/v1") is not None


def test_hashes_are_stable_and_change_with_crds(catalog: SchemaCatalog) -> None:
    registry = ResourceRegistry()
    api = OpenApi(catalog, registry)
    before = api.index()["paths"]
    assert OpenApi(catalog, ResourceRegistry()).index()["paths"] == before

    registry.register(crd_resource_type(widget_crd()))
    added = api.index()["paths"]
    assert {"apis/example.com/v1", "apis/example.com/v1beta1"} <= set(added)
    assert all(added[path] == entry for path, entry in before.items())

    registry.register(crd_resource_type(widget_crd({"size": {"type": "string"}})))
    changed = api.index()["paths"]
    assert changed["apis/example.com/v1"] != added["apis/example.com/v1"]
    assert changed["apis/example.com/v1beta1"] == added["apis/example.com/v1beta1"]

    registry.unregister("example.com", "widgets")
    assert api.index()["paths"] == before
    assert api.document("apis/example.com/v1") is None


def test_documents_are_cached_until_their_types_change(api: OpenApi, registry: ResourceRegistry) -> None:
    apps = body(api, "apis/apps/v1")
    widgets = body(api, "apis/example.com/v1")
    assert body(api, "apis/apps/v1") is apps

    registry.register(crd_resource_type(widget_crd({"size": {"type": "string"}})))
    assert body(api, "apis/apps/v1") is apps
    rebuilt = body(api, "apis/example.com/v1")
    assert rebuilt != widgets
    assert b'"size":{"type":"string"}' in rebuilt


def test_building_every_builtin_document_is_cheap(catalog: SchemaCatalog) -> None:
    api = OpenApi(catalog, ResourceRegistry())
    started = time.perf_counter()
    api.index()
    assert time.perf_counter() - started < 1.0


# -- paths and operations -----------------------------------------------------------------------------------


def test_document_header(api: OpenApi) -> None:
    document = doc(api, "apis/apps/v1")
    assert document["openapi"] == "3.0.0"
    assert document["info"] == {"title": "Kubernetes", "version": "v1.32.0"}


def test_deployment_patch_lets_kubectl_find_field_validation(api: OpenApi) -> None:
    patch = doc(api, "apis/apps/v1")["paths"][DEPLOYMENT_ITEM]["patch"]

    assert patch["x-kubernetes-action"] == "patch"
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    assert patch["operationId"] == "patchAppsV1NamespacedDeployment"
    assert {"dryRun", "fieldManager", "fieldValidation", "force"} <= query_params(patch)
    assert set(patch["requestBody"]["content"]) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    }
    assert patch["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": REF + "io.k8s.api.apps.v1.Deployment"
    }


def test_every_write_operation_declares_the_write_parameters(api: OpenApi) -> None:
    # kubectl checks the PATCH operations carrying a GVK, in map order: every one of them must qualify.
    for path in api.index()["paths"]:
        for route, method, op in operations(doc(api, path)):
            if method in ("put", "patch", "post") and op["x-kubernetes-action"] != "connect":
                assert {"dryRun", "fieldManager", "fieldValidation"} <= query_params(op), (route, method)
                assert "x-kubernetes-group-version-kind" in op and op["operationId"], (route, method)


def test_paths_follow_scope_subresources_and_verbs(api: OpenApi) -> None:
    core = doc(api, "api/v1")["paths"]
    pods = "/api/v1/namespaces/{namespace}/pods"
    assert set(core[pods]) == {"get", "post", "delete", "parameters"}
    assert set(core[pods + "/{name}"]) == {"get", "put", "patch", "delete", "parameters"}
    assert set(core[pods + "/{name}/status"]) == {"get", "put", "patch", "parameters"}
    assert set(core["/api/v1/pods"]) == {"get", "parameters"}
    assert core["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    assert core[pods + "/{name}/eviction"]["post"]["x-kubernetes-group-version-kind"]["kind"] == "Eviction"
    assert core[pods + "/{name}/exec"]["get"]["x-kubernetes-action"] == "connect"
    assert "/api/v1/nodes/{name}" in core and "/api/v1/namespaces/{namespace}/nodes" not in core
    # Namespaces allow no deletecollection; finalize is replace-only.
    assert set(core["/api/v1/namespaces"]) == {"get", "post", "parameters"}
    assert set(core["/api/v1/namespaces/{name}/finalize"]) == {"put", "parameters"}
    names = [p["name"] for p in core[pods + "/{name}"]["parameters"]]
    assert names == ["name", "namespace", "pretty"]

    reviews = doc(api, "apis/authentication.k8s.io/v1")["paths"]
    assert set(reviews["/apis/authentication.k8s.io/v1/tokenreviews"]) == {"post", "parameters"}
    assert "/apis/authentication.k8s.io/v1/tokenreviews/{name}" not in reviews

    apps = doc(api, "apis/apps/v1")["paths"]
    scale = apps[DEPLOYMENT_ITEM + "/scale"]["put"]
    assert scale["operationId"] == "replaceAppsV1NamespacedDeploymentScale"
    assert scale["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling",
        "kind": "Scale",
        "version": "v1",
    }
    rbac = doc(api, "apis/rbac.authorization.k8s.io/v1")["paths"]
    cluster_roles = rbac["/apis/rbac.authorization.k8s.io/v1/clusterroles"]
    assert cluster_roles["delete"]["operationId"] == "deleteRbacAuthorizationV1CollectionClusterRole"
    assert cluster_roles["delete"]["x-kubernetes-action"] == "deletecollection"


def test_operation_ids_are_unique(api: OpenApi) -> None:
    for path in api.index()["paths"]:
        ids = [op["operationId"] for _, _, op in operations(doc(api, path))]
        assert len(ids) == len(set(ids)), path


# -- schemas ------------------------------------------------------------------------------------------------


def test_every_reference_resolves_within_its_document(api: OpenApi) -> None:
    for path in api.index()["paths"]:
        document = doc(api, path)
        schemas = document["components"]["schemas"]
        for node in walk(document):
            if "$ref" in node:
                assert node["$ref"].startswith(REF), (path, node)
                assert node["$ref"].removeprefix(REF) in schemas, (path, node)
                assert set(node) == {"$ref"}, (path, node)


def test_builtin_schemas_are_in_openapi_form(api: OpenApi) -> None:
    schemas = doc(api, "api/v1")["components"]["schemas"]
    assert "io.k8s.api.core.v1.Pod" in schemas and "io.k8s.api.core.v1.PodList" in schemas
    for node in walk(schemas):
        assert "$schema" not in node and "$id" not in node
        if "type" in node:
            assert isinstance(node["type"], str) and node["type"] != "null", node
        assert node.get("additionalProperties") is not False
    # Field names are not keywords: JSONSchemaProps keeps its `$ref` and `$schema` fields.
    crd_schemas = doc(api, "apis/apiextensions.k8s.io/v1")["components"]["schemas"]
    props = crd_schemas["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"][
        "properties"
    ]
    assert props["$ref"]["type"] == "string" and props["$schema"]["type"] == "string"


def test_deployment_schema_with_converted_refs(api: OpenApi) -> None:
    schemas = doc(api, "apis/apps/v1")["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]

    assert deployment["type"] == "object"
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert deployment["properties"]["spec"] == {
        "allOf": [{"$ref": REF + "io.k8s.api.apps.v1.DeploymentSpec"}],
        "description": "Specification of the desired behavior of the Deployment.",
    }
    assert deployment["properties"]["apiVersion"]["type"] == "string"
    assert "enum" not in deployment["properties"]["apiVersion"]
    assert "enum" not in deployment["properties"]["kind"]
    assert "additionalProperties" not in deployment
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["required"] == ["selector", "template"]
    assert spec["properties"]["replicas"] == {
        "description": spec["properties"]["replicas"]["description"],
        "format": "int32",
        "type": "integer",
    }
    for name in ("io.k8s.api.core.v1.PodSpec", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"):
        assert name in schemas
    assert "io.k8s.api.batch.v1.Job" not in schemas


def test_patch_and_apply_extensions_are_kept(api: OpenApi) -> None:
    schemas = doc(api, "apis/apps/v1")["components"]["schemas"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["items"] == {"$ref": REF + "io.k8s.api.core.v1.Container"}
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    strategy = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["allOf"] == [{"$ref": REF + "io.k8s.api.apps.v1.DeploymentStrategy"}]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    owner_reference = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"]
    assert owner_reference["x-kubernetes-map-type"] == "atomic"


def test_int_or_string_and_quantity_as_kube_apiserver_publishes_them(api: OpenApi) -> None:
    schemas = doc(api, "api/v1")["components"]["schemas"]
    int_or_string = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert int_or_string["format"] == "int-or-string"
    assert int_or_string["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    assert schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"] == {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    }


def test_json_schema_nodes_become_openapi_nodes() -> None:
    refs: set[str] = set()
    node = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "bare": {"$ref": "#/$defs/A"},
            "described": {"$ref": "#/$defs/B", "description": "b", "x-kubernetes-patch-strategy": "merge"},
            "map": {"type": ["object", "null"], "additionalProperties": {"$ref": "#/$defs/C"}},
            "free": {"type": "object", "additionalProperties": True},
            "choice": {"type": ["string", "null"], "enum": ["x", None]},
        },
    }

    assert to_openapi_schema(node, refs) == {
        "type": "object",
        "properties": {
            "bare": {"$ref": REF + "A"},
            "described": {
                "allOf": [{"$ref": REF + "B"}],
                "description": "b",
                "x-kubernetes-patch-strategy": "merge",
            },
            "map": {"type": "object", "additionalProperties": {"$ref": REF + "C"}},
            "free": {"type": "object", "additionalProperties": True},
            "choice": {"type": "string", "enum": ["x"]},
        },
    }
    assert refs == {"A", "B", "C"}


# -- custom resources ---------------------------------------------------------------------------------------


def test_crd_definition_names_reverse_the_group() -> None:
    name = crd_definition_name("networking.istio.io", "v1alpha3", "VirtualService")
    assert name == "io.istio.networking.v1alpha3.VirtualService"


def test_crd_version_documents_carry_the_version_schema(api: OpenApi) -> None:
    v1 = doc(api, "apis/example.com/v1")["components"]["schemas"]
    widget = v1["com.example.v1.Widget"]

    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Widget", "version": "v1"}
    ]
    assert widget["properties"]["metadata"]["allOf"] == [
        {"$ref": REF + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    ]
    assert widget["properties"]["apiVersion"]["type"] == "string"
    assert widget["properties"]["kind"]["type"] == "string"
    spec = widget["properties"]["spec"]
    assert spec["description"] == "What the widget should be."
    assert spec["properties"]["size"] == {"type": "integer", "description": "How big."}
    assert spec["properties"]["port"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    template = spec["properties"]["template"]
    assert {"apiVersion", "kind", "metadata"} <= set(template["properties"])
    assert set(template["required"]) == {"apiVersion", "kind"}

    widget_list = v1["com.example.v1.WidgetList"]
    assert widget_list["properties"]["items"]["items"] == {"$ref": REF + "com.example.v1.Widget"}
    assert set(widget_list["properties"]) == {"apiVersion", "items", "kind", "metadata"}
    assert widget_list["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "WidgetList", "version": "v1"}
    ]
    for name in ("ObjectMeta", "ListMeta", "ManagedFieldsEntry", "Time", "Status", "DeleteOptions", "Patch"):
        assert "io.k8s.apimachinery.pkg.apis.meta.v1." + name in v1
    assert "io.k8s.api.autoscaling.v1.Scale" in v1

    v1beta1 = doc(api, "apis/example.com/v1beta1")["components"]["schemas"]
    assert "com.example.v1.Widget" not in v1beta1
    older = v1beta1["com.example.v1beta1.Widget"]
    assert set(older["properties"]["spec"]["properties"]) == {"oldSize"}
    assert older["x-kubernetes-group-version-kind"][0]["version"] == "v1beta1"


def test_crd_paths_and_patch_types(api: OpenApi) -> None:
    paths = doc(api, "apis/example.com/v1beta1")["paths"]
    collection = WIDGETS.format(version="v1beta1")

    assert set(paths[collection]) == {"get", "post", "delete", "parameters"}
    assert paths["/apis/example.com/v1beta1/widgets"]["get"]["x-kubernetes-action"] == "list"
    patch = paths[collection + "/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "example.com",
        "kind": "Widget",
        "version": "v1beta1",
    }
    assert "fieldValidation" in query_params(patch)
    assert set(patch["requestBody"]["content"]) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    }
    assert patch["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": REF + "com.example.v1beta1.Widget"
    }
    assert set(paths[collection + "/{name}/status"]) == {"get", "put", "patch", "parameters"}
    scale = paths[collection + "/{name}/scale"]["get"]["responses"]["200"]["content"]["application/json"]
    assert scale["schema"] == {"$ref": REF + "io.k8s.api.autoscaling.v1.Scale"}
