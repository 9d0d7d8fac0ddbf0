"""Tests of JSON Patch, JSON merge patch and strategic merge patch.

The patches in the "what kubectl sends" sections are bodies kubectl 1.32 sent to a recording server for
`kubectl apply`, `kubectl set`, `kubectl rollout restart`, `kubectl label` and `kubectl patch --type json`,
some trimmed to the part under test and the last-applied-configuration annotation shortened.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.patch import json_patch, merge_patch, strategic_merge_patch
from isthmus.local.apiserver.schema import Schema, SchemaCatalog

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
GENERIC_INVALID = "the server rejected our request due to an error in our request"


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="module")
def deployment(catalog: SchemaCatalog) -> Schema:
    schema = catalog.for_kind("apps", "v1", "Deployment")
    assert schema is not None
    return schema


@pytest.fixture(scope="module")
def service(catalog: SchemaCatalog) -> Schema:
    schema = catalog.for_kind("", "v1", "Service")
    assert schema is not None
    return schema


@pytest.fixture(scope="module")
def configmap(catalog: SchemaCatalog) -> Schema:
    schema = catalog.for_kind("", "v1", "ConfigMap")
    assert schema is not None
    return schema


def status_error(action: Callable[[], object]) -> StatusError:
    with pytest.raises(StatusError) as info:
        action()
    return info.value


def web_deployment(image: str = "nginx:1.25") -> dict[str, Any]:
    """A Deployment as stored after `kubectl apply`, with the fields the server fills in."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "0b7e4c52-2a43-4f5e-9d57-6f1d9c1f6a10",
            "resourceVersion": "7",
            "generation": 1,
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {LAST_APPLIED: '{"kind":"Deployment"}\n'},
        },
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [
                                {"containerPort": 80, "name": "http", "protocol": "TCP"},
                                {"containerPort": 443, "name": "https", "protocol": "TCP"},
                            ],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "terminationMessagePath": "/dev/termination-log",
                        },
                        {
                            "name": "sidecar",
                            "image": "busybox:1.36",
                            "command": ["sleep", "infinity"],
                            "imagePullPolicy": "IfNotPresent",
                        },
                    ],
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"replicas": 2, "readyReplicas": 2},
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return result


# --- Strategic merge patch: what kubectl sends --------------------------------------------------------------


def test_apply_changing_an_image_touches_only_that_container(deployment: Schema) -> None:
    live = web_deployment()
    patch = {
        "metadata": {"annotations": {LAST_APPLIED: '{"kind":"Deployment","v":2}\n'}},
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"image": "nginx:1.27", "name": "web"}],
                }
            }
        },
    }
    expected = web_deployment(image="nginx:1.27")
    expected["metadata"]["annotations"][LAST_APPLIED] = '{"kind":"Deployment","v":2}\n'

    assert strategic_merge_patch(live, patch, deployment) == expected


def test_apply_adding_and_removing_containers_ports_env_labels_and_strategy(deployment: Schema) -> None:
    live = web_deployment(image="nginx:1.27")
    patch = {
        "metadata": {"annotations": {LAST_APPLIED: "{}"}, "labels": {"tier": None}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "metrics"}, {"name": "web"}],
                    "containers": [
                        {"image": "prom/exporter:1", "name": "metrics"},
                        {
                            "$setElementOrder/env": [{"name": "A"}],
                            "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 80}],
                            "env": [{"$patch": "delete", "name": "B"}],
                            "name": "web",
                            "ports": [
                                {"containerPort": 8080, "name": "alt"},
                                {"$patch": "delete", "containerPort": 443},
                            ],
                        },
                        {"$patch": "delete", "name": "sidecar"},
                    ],
                }
            },
        },
    }

    result = strategic_merge_patch(live, patch, deployment)

    assert result["metadata"]["labels"] == {"app": "web"}
    assert result["spec"]["strategy"] == {"type": "Recreate"}
    assert containers(result) == [
        {"image": "prom/exporter:1", "name": "metrics"},
        {
            "name": "web",
            "image": "nginx:1.27",
            "imagePullPolicy": "IfNotPresent",
            "ports": [
                {"containerPort": 8080, "name": "alt"},
                {"containerPort": 80, "name": "http", "protocol": "TCP"},
            ],
            "env": [{"name": "A", "value": "1"}],
            "terminationMessagePath": "/dev/termination-log",
        },
    ]


def test_apply_putting_back_a_deleted_container_appends_it_where_the_order_says(deployment: Schema) -> None:
    live = web_deployment()
    containers(live)[1:] = [{"name": "metrics", "image": "prom/exporter:1"}]
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [
                        {"command": ["sleep", "infinity"], "image": "busybox:1.36", "name": "sidecar"},
                        {"$patch": "delete", "name": "metrics"},
                    ],
                }
            }
        }
    }

    result = strategic_merge_patch(live, patch, deployment)

    assert [c["name"] for c in containers(result)] == ["web", "sidecar"]
    assert containers(result)[1] == {
        "command": ["sleep", "infinity"],
        "image": "busybox:1.36",
        "name": "sidecar",
    }


def test_apply_keeps_a_container_the_server_injected_in_its_live_position(deployment: Schema) -> None:
    live = web_deployment()
    pod_spec = live["spec"]["template"]["spec"]
    pod_spec["containers"] = [
        {"name": "api", "image": "api:1", "terminationMessagePath": "/dev/termination-log"},
        {"name": "proxy", "image": "envoy:1"},
        {"name": "worker", "image": "worker:1"},
    ]
    pod_spec["volumes"] = [
        {"name": "cfg", "configMap": {"name": "api-config", "defaultMode": 420}},
        {"name": "cache", "emptyDir": {}},
    ]
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "worker"}, {"name": "api"}],
                    "$setElementOrder/volumes": [{"name": "cfg"}, {"name": "cache"}],
                    "containers": [{"image": "worker:2", "name": "worker"}],
                    "volumes": [
                        {
                            "$retainKeys": ["name", "secret"],
                            "configMap": None,
                            "name": "cfg",
                            "secret": {"secretName": "api-secret"},
                        }
                    ],
                }
            }
        }
    }

    result = strategic_merge_patch(live, patch, deployment)["spec"]["template"]["spec"]

    assert result["containers"] == [
        {"name": "proxy", "image": "envoy:1"},
        {"name": "worker", "image": "worker:2"},
        {"name": "api", "image": "api:1", "terminationMessagePath": "/dev/termination-log"},
    ]
    assert result["volumes"] == [
        {"name": "cfg", "secret": {"secretName": "api-secret"}},
        {"name": "cache", "emptyDir": {}},
    ]


def test_apply_merges_service_ports_by_port(service: Schema) -> None:
    live = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "clusterIP": "10.96.0.10",
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
            ],
        },
    }
    patch = {
        "metadata": {"annotations": {}},
        "spec": {
            "$setElementOrder/ports": [{"port": 443}, {"port": 9090}],
            "ports": [
                {"port": 443, "targetPort": 9443},
                {"name": "metrics", "port": 9090, "targetPort": 9090},
                {"$patch": "delete", "port": 80},
            ],
        },
    }

    result = strategic_merge_patch(live, patch, service)

    assert result["metadata"] == {"name": "web", "namespace": "default", "annotations": {}}
    assert result["spec"] == {
        "clusterIP": "10.96.0.10",
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "selector": {"app": "web"},
        "ports": [
            {"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": 9090},
        ],
    }


def test_apply_merges_finalizers_as_a_set_and_deletes_from_it(configmap: Schema) -> None:
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "finalizers": ["example.com/a", "example.com/b", "example.com/server"]},
        "data": {"k1": "v1", "k2": "v2"},
    }
    patch = {
        "data": {"k1": "v1-new", "k2": None},
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["example.com/a"],
            "$setElementOrder/finalizers": ["example.com/b", "example.com/c"],
            "annotations": {},
            "finalizers": ["example.com/c"],
        },
    }

    result = strategic_merge_patch(live, patch, configmap)

    assert result["metadata"]["finalizers"] == ["example.com/b", "example.com/c", "example.com/server"]
    assert result["data"] == {"k1": "v1-new"}


def test_set_env_removing_a_variable(deployment: Schema) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [
                        {
                            "$setElementOrder/env": [{"name": "B"}],
                            "env": [{"$patch": "delete", "name": "A"}],
                            "name": "web",
                        }
                    ],
                }
            }
        }
    }

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert containers(result)[0]["env"] == [{"name": "B", "value": "2"}]
    assert containers(result)[1] == containers(web_deployment())[1]


def test_apply_reordering_containers_only(deployment: Schema) -> None:
    patch = {
        "spec": {
            "template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]}}
        }
    }

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert containers(result) == list(reversed(containers(web_deployment())))


def test_rollout_restart_adds_an_annotations_map(deployment: Schema) -> None:
    patch = {
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}
    }

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert result["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "now"},
    }


# --- Strategic merge patch: semantics -----------------------------------------------------------------------


def test_merge_list_item_without_order_directive_is_merged_in_place(deployment: Schema) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.37"}]}}}}

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert [(c["name"], c["image"]) for c in containers(result)] == [
        ("web", "nginx:1.25"),
        ("sidecar", "busybox:1.37"),
    ]


def test_new_merge_list_items_follow_the_patch_order_among_live_items(deployment: Schema) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "new", "image": "n:1"}, {"name": "web", "image": "w:2"}]}
            }
        }
    }

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert [c["name"] for c in containers(result)] == ["new", "web", "sidecar"]


def test_primitive_merge_list_adds_missing_values_once(deployment: Schema) -> None:
    live = web_deployment()
    live["metadata"]["finalizers"] = ["a", "b"]

    result = strategic_merge_patch(live, {"metadata": {"finalizers": ["c", "a"]}}, deployment)

    assert result["metadata"]["finalizers"] == ["c", "a", "b"]


def test_empty_merge_list_in_patch_changes_nothing(deployment: Schema) -> None:
    result = strategic_merge_patch(
        web_deployment(), {"spec": {"template": {"spec": {"containers": []}}}}, deployment
    )

    assert containers(result) == containers(web_deployment())


def test_list_without_merge_strategy_is_replaced(deployment: Schema) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "sidecar", "command": ["sleep", "60"]}],
                    "tolerations": [{"key": "k", "operator": "Exists"}],
                }
            }
        }
    }

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert containers(result)[1]["command"] == ["sleep", "60"]
    assert result["spec"]["template"]["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]


def test_patch_replace_on_a_map_replaces_it(deployment: Schema) -> None:
    live = web_deployment()
    live["spec"]["selector"]["matchExpressions"] = [{"key": "app", "operator": "Exists"}]
    patch = {"spec": {"selector": {"$patch": "replace", "matchLabels": {"app": "api"}}}}

    result = strategic_merge_patch(live, patch, deployment)

    assert result["spec"]["selector"] == {"matchLabels": {"app": "api"}}


def test_map_with_replace_strategy_is_replaced(catalog: SchemaCatalog) -> None:
    schema = catalog.for_kind("policy", "v1", "PodDisruptionBudget")
    live = {"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web", "tier": "frontend"}}}}

    result = strategic_merge_patch(live, {"spec": {"selector": {"matchLabels": {"app": "api"}}}}, schema)

    assert result["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}}


def test_list_deleted_with_null_ignores_its_order_directive(deployment: Schema) -> None:
    live = web_deployment()
    live["metadata"]["finalizers"] = ["a", "b"]
    patch = {"metadata": {"$setElementOrder/finalizers": ["b", "a"], "finalizers": None}}

    result = strategic_merge_patch(live, patch, deployment)

    assert "finalizers" not in result["metadata"]


def test_patch_replace_in_a_list_replaces_the_list(deployment: Schema) -> None:
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "only:1"}]}}
        }
    }

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert containers(result) == [{"name": "only", "image": "only:1"}]


def test_patch_delete_on_a_map_removes_it(deployment: Schema) -> None:
    patch = {"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}}

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert result["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_patch_merge_on_a_map_merges(deployment: Schema) -> None:
    patch = {"metadata": {"labels": {"$patch": "merge", "team": "core"}}}

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert result["metadata"]["labels"] == {"app": "web", "tier": "frontend", "team": "core"}


def test_retain_keys_clears_fields_not_listed(deployment: Schema) -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}

    result = strategic_merge_patch(web_deployment(), patch, deployment)

    assert result["spec"]["strategy"] == {"type": "Recreate"}


def test_content_for_a_field_the_object_lacks_is_stored_clean(deployment: Schema) -> None:
    live = web_deployment()
    del live["spec"]["strategy"]
    patch = {
        "spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
            "template": {
                "spec": {
                    "volumes": [{"name": "v", "emptyDir": {}}, {"$patch": "delete", "name": "gone"}],
                    "securityContext": {"runAsUser": 1000, "runAsGroup": None},
                }
            },
        }
    }

    result = strategic_merge_patch(live, patch, deployment)

    assert result["spec"]["strategy"] == {"type": "Recreate"}
    assert result["spec"]["template"]["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]
    assert result["spec"]["template"]["spec"]["securityContext"] == {"runAsUser": 1000}


def test_without_a_schema_maps_merge_and_lists_are_replaced() -> None:
    patch = {
        "metadata": {"labels": {"tier": None, "team": "core"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}},
    }

    result = strategic_merge_patch(web_deployment(), patch, None)

    assert result["metadata"]["labels"] == {"app": "web", "team": "core"}
    assert containers(result) == [{"name": "web", "image": "nginx:2"}]
    assert result["spec"]["replicas"] == 2


def test_free_form_fields_take_any_json(catalog: SchemaCatalog) -> None:
    schema = catalog.for_kind("apps", "v1", "ControllerRevision")
    live = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 1}

    result = strategic_merge_patch(live, {"data": {"$schema": "x", "spec": {"a": 1}}}, schema)
    replaced = strategic_merge_patch(result, {"data": ["any", "JSON"]}, schema)

    assert result["data"] == {"$schema": "x", "spec": {"a": 1}}
    assert replaced["data"] == ["any", "JSON"]


def test_strategic_merge_patch_leaves_its_inputs_alone(deployment: Schema) -> None:
    live = web_deployment()
    patch: dict[str, Any] = {
        "metadata": {"labels": {"tier": None}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"},
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "metrics"}, {"name": "web"}],
                    "containers": [
                        {"image": "prom/exporter:1", "name": "metrics", "args": ["--port", "9100"]},
                        {"$patch": "delete", "name": "sidecar"},
                    ],
                }
            },
        },
    }
    live_before, patch_before = copy.deepcopy(live), copy.deepcopy(patch)

    result = strategic_merge_patch(live, patch, deployment)
    containers(result)[0]["args"].append("--verbose")
    containers(result).append({"name": "extra"})
    result["metadata"]["labels"]["team"] = "core"
    result["spec"]["strategy"]["type"] = "Other"

    assert live == live_before
    assert patch == patch_before
    assert containers(result)[1] is containers(live)[0]
    assert result["status"] is live["status"]


# --- Strategic merge patch: errors --------------------------------------------------------------------------


def test_merge_list_item_without_its_merge_key_is_rejected(deployment: Schema) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"image": "x", "stdin": True, "args": None}]}}}}

    error = status_error(lambda: strategic_merge_patch(web_deployment(), patch, deployment))

    assert (error.code, error.reason) == (500, "")
    assert (
        error.message == "map: map[args:<nil> image:x stdin:true] does not contain declared merge key: name"
    )


def test_delete_directive_without_merge_key_is_rejected(service: Schema) -> None:
    live = {"spec": {"ports": [{"port": 80}]}}
    patch = {"spec": {"ports": [{"$patch": "delete", "name": "http", "weight": 1000000.0, "ratio": 0.25}]}}

    error = status_error(lambda: strategic_merge_patch(live, patch, service))

    assert error.code == 500
    assert error.message == (
        "map: map[$patch:delete name:http ratio:0.25 weight:1e+06] does not contain declared merge key: port"
    )


def test_a_map_where_a_list_is_expected_is_invalid(deployment: Schema) -> None:
    patch = {"spec": {"template": {"spec": {"containers": {"name": "x"}}}}}

    error = status_error(lambda: strategic_merge_patch(web_deployment(), patch, deployment))

    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        ' "" is invalid: patch: Invalid value: '
        '"map[spec:map[template:map[spec:map[containers:map[name:x]]]]]": cannot restore slice from map'
    )
    assert [(c.reason, c.field) for c in error.causes] == [("FieldValueInvalid", "patch")]


@pytest.mark.parametrize(
    ("patch", "detail"),
    [
        ({"spec": {"strategy": ["Recreate"]}}, "cannot restore struct from: slice"),
        ({"metadata": {"labels": ["a"]}}, "cannot restore map from slice"),
        ({"spec": {"template": {"spec": {"volumes": "none"}}}}, "cannot restore slice from string"),
        ({"spec": {"template": {"spec": {"containers": ["web"]}}}}, "cannot restore struct from: string"),
    ],
)
def test_values_of_the_wrong_kind_are_invalid(deployment: Schema, patch: dict[str, Any], detail: str) -> None:
    live = web_deployment()
    live["spec"]["template"]["spec"]["containers"] = []

    error = status_error(lambda: strategic_merge_patch(live, patch, deployment))

    assert error.code == 422
    assert error.message.endswith(f": {detail}")


def test_unknown_directive_is_rejected(deployment: Schema) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "$replace": True}]}}}}

    error = status_error(lambda: strategic_merge_patch(web_deployment(), patch, deployment))

    assert error.code == 422
    assert error.message.endswith(
        ': strict decoding error: unknown field "spec.template.spec.containers[0].$replace"'
    )


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spec": {"strategy": {"$patch": "bogus"}}}, "unknown patch type: bogus in map: map[$patch:bogus]"),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "remove"}]}}}},
            "unknown patch type: remove in map: map[$patch:remove name:web]",
        ),
    ],
)
def test_unknown_patch_type_is_rejected(deployment: Schema, patch: dict[str, Any], message: str) -> None:
    error = status_error(lambda: strategic_merge_patch(web_deployment(), patch, deployment))

    assert (error.code, error.message) == (500, message)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"spec": {"strategy": {"$retainKeys": "type"}}}, "invalid patch format of retainKeys"),
        (
            {"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {}}}},
            "invalid patch format of retainKeys",
        ),
        (
            {"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "web"}}}}},
            "invalid patch format of setElementOrder list",
        ),
        ({"spec": {"$setElementOrder": []}}, "invalid patch format of setElementOrder list"),
        (
            {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
            "invalid patch format of primitive list",
        ),
        (
            {"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}},
            "invalid patch format of primitive list",
        ),
    ],
)
def test_malformed_directives_are_bad_requests(
    deployment: Schema, patch: dict[str, Any], message: str
) -> None:
    error = status_error(lambda: strategic_merge_patch(web_deployment(), patch, deployment))

    assert (error.code, error.reason, error.message) == (400, "BadRequest", message)


def test_patch_list_out_of_the_set_element_order_is_rejected(deployment: Schema) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"name": "sidecar", "image": "s"}, {"name": "web", "image": "w"}],
                }
            }
        }
    }

    error = status_error(lambda: strategic_merge_patch(web_deployment(), patch, deployment))

    assert error.code == 500
    assert error.message == (
        "The order in patch list:\n[map[image:s name:sidecar] map[image:w name:web]]\n"
        " doesn't match $setElementOrder list:\n[map[name:web] map[name:sidecar]]\n"
    )


def test_mixed_element_types_in_a_merge_list_are_rejected(deployment: Schema) -> None:
    live = web_deployment()
    live["metadata"]["finalizers"] = ["a"]

    error = status_error(lambda: strategic_merge_patch(live, {"metadata": {"finalizers": [1]}}, deployment))

    assert (error.code, error.message) == (500, "list element types are not identical: [[a] [1]]")


def test_strategic_patch_that_is_not_an_object_is_a_bad_request(deployment: Schema) -> None:
    error = status_error(lambda: strategic_merge_patch(web_deployment(), ["spec"], deployment))  # type: ignore[arg-type]

    assert (error.code, error.message) == (
        400,
        "json: cannot unmarshal array into Go value of type map[string]interface {}",
    )


# --- JSON merge patch: what kubectl sends, and RFC 7386 -----------------------------------------------------


@pytest.mark.parametrize(
    ("document", "patch", "expected"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(document: dict[str, Any], patch: dict[str, Any], expected: Any) -> None:
    assert merge_patch(document, patch) == expected


def test_merge_patch_as_kubectl_label_sends_it() -> None:
    result = merge_patch(web_deployment(), {"metadata": {"labels": {"team": "core", "tier": None}}})

    assert result["metadata"]["labels"] == {"app": "web", "team": "core"}
    assert result["spec"] == web_deployment()["spec"]


def test_merge_patch_drops_nulls_from_objects_inside_added_lists() -> None:
    result = merge_patch({"spec": {}}, {"spec": {"items": [{"a": 1, "b": None}, None]}})

    assert result == {"spec": {"items": [{"a": 1}, None]}}


def test_merge_patch_does_not_mutate_its_inputs() -> None:
    document = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    patch: dict[str, Any] = {"a": {"b": None, "e": {"f": [1]}}, "d": None}
    document_before, patch_before = copy.deepcopy(document), copy.deepcopy(patch)

    result = merge_patch(document, patch)
    result["a"]["e"]["f"].append(2)

    assert result == {"a": {"c": [1, 2], "e": {"f": [1, 2]}}}
    assert (document, patch) == (document_before, patch_before)


@pytest.mark.parametrize("patch", [None, "x", 1, True])
def test_merge_patch_that_is_not_an_object_is_a_bad_request(patch: Any) -> None:
    error = status_error(lambda: merge_patch({"a": 1}, patch))

    assert (error.code, error.reason, error.message) == (400, "BadRequest", "Invalid JSON Patch")


def test_merge_patch_that_is_a_list_is_invalid() -> None:
    error = status_error(lambda: merge_patch({"a": 1}, [1]))

    assert error.code == 422
    assert error.message == (
        ' "" is invalid: patch: Invalid value: "[1]": '
        "json: cannot unmarshal array into Go value of type map[string]interface {}"
    )


# --- JSON Patch: what kubectl sends, and RFC 6902 -----------------------------------------------------------


def test_json_patch_as_kubectl_sends_it() -> None:
    live = web_deployment()
    live["spec"]["replicas"] = 3
    patch = [
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/labels/team", "value": "core"},
        {"op": "remove", "path": "/metadata/labels/tier"},
        {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "C", "value": "3"}},
        {"op": "move", "from": "/spec/revisionHistoryLimit", "path": "/spec/minReadySeconds"},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec/template/metadata/annotations"},
    ]

    result = json_patch(live, patch)

    assert result["spec"]["replicas"] == 4
    assert result["metadata"]["labels"] == {"app": "web", "team": "core"}
    assert containers(result)[0]["env"][-1] == {"name": "C", "value": "3"}
    assert "revisionHistoryLimit" not in result["spec"]
    assert result["spec"]["minReadySeconds"] == 10
    assert result["spec"]["template"]["metadata"]["annotations"] == {"app": "web", "team": "core"}


def test_json_patch_does_not_mutate_its_inputs() -> None:
    document = {"a": {"b": [1]}}
    patch = [{"op": "add", "path": "/c", "value": {"d": []}}, {"op": "add", "path": "/c/d/-", "value": 1}]
    document_before, patch_before = copy.deepcopy(document), copy.deepcopy(patch)

    result = json_patch(document, patch)
    result["a"]["b"].append(2)

    assert result == {"a": {"b": [1, 2]}, "c": {"d": [1]}}
    assert (document, patch) == (document_before, patch_before)


def test_json_patch_null_changes_nothing() -> None:
    assert json_patch({"a": 1}, None) == {"a": 1}


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "test", "path": "/spec/replicas", "value": 3}],
        [{"op": "remove", "path": "/spec/paused"}],
        [{"op": "replace", "path": "/spec/missing/field", "value": 1}],
        [{"op": "add", "path": "/spec/template/spec/containers/7", "value": {}}],
        [{"op": "frobnicate", "path": "/spec"}],
        [{"op": "add", "value": 1}],
        [{"op": "add", "path": "spec", "value": 1}],
        [{"op": "move", "path": "/spec/x"}],
        [None],
    ],
)
def test_json_patch_that_fails_to_apply_is_invalid(patch: list[Any]) -> None:
    error = status_error(lambda: json_patch(web_deployment(), patch))

    assert (error.code, error.reason, error.message) == (422, "Invalid", GENERIC_INVALID)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"op": "add"}, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
        ("[]", "json: cannot unmarshal string into Go value of type jsonpatch.Patch"),
        (["add"], "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
        ([[{"op": "add"}]], "json: cannot unmarshal array into Go value of type jsonpatch.Operation"),
    ],
)
def test_json_patch_that_is_not_a_list_of_operations_is_a_bad_request(patch: Any, message: str) -> None:
    error = status_error(lambda: json_patch({"a": 1}, patch))

    assert (error.code, error.reason, error.message) == (400, "BadRequest", message)


def test_json_patch_with_too_many_operations_is_too_large() -> None:
    patch = [{"op": "test", "path": "/a", "value": 1}] * 10001

    error = status_error(lambda: json_patch({"a": 1}, patch))

    assert (error.code, error.reason) == (413, "RequestEntityTooLarge")
    assert error.message == (
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    )


def test_json_patch_replacing_the_object_with_a_non_object_is_invalid() -> None:
    error = status_error(lambda: json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]))

    assert (error.code, error.reason) == (422, "Invalid")
    assert error.causes[0].field == "patch"
