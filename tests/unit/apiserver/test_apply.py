"""Server-side apply and managedFields against Kubernetes' published schemas."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from isthmus.local.apiserver import apply as ssa
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.schema import Schema, SchemaCatalog, crd_schema

CATALOG = SchemaCatalog.load()


def kind_schema(group: str, version: str, kind: str) -> Schema:
    schema = CATALOG.for_kind(group, version, kind)
    assert schema is not None
    return schema


DEPLOYMENT = kind_schema("apps", "v1", "Deployment")
SERVICE = kind_schema("", "v1", "Service")
CONFIGMAP = kind_schema("", "v1", "ConfigMap")
T0, T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z"
NAME = 'k:{"name":"c"}'

Obj = dict[str, Any]


def deployment(replicas: int | None = 3, image: str = "nginx:1", **extra: Any) -> Obj:
    containers: list[Obj] = [{"name": "c", "image": image}, *extra.pop("more_containers", [])]
    spec: Obj = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    metadata: Obj = {"name": "web", "namespace": "default", **extra.pop("metadata", {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec, **extra}


def service(*ports: Obj) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": "default"},
        "spec": {"ports": list(ports)},
    }


def configmap(data: dict[str, str], **metadata: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": "default", **metadata},
        "data": data,
    }


def stored(obj: Obj, uid: str = "u-1") -> Obj:
    """`obj` as the server stores it: with the system metadata apply must leave alone."""
    out = copy.deepcopy(obj)
    out["metadata"].update(uid=uid, resourceVersion="7", creationTimestamp=T0)
    return out


def apply(live: Obj | None, config: Obj, manager: str, now: str = T0, force: bool = False, **kw: Any) -> Obj:
    schema = kw.pop("schema", DEPLOYMENT if config.get("kind") == "Deployment" else None)
    result = ssa.server_side_apply(live, config, manager, force, schema, now, **kw)
    return stored(result) if live is None else result


def entry(obj: Obj, manager: str, operation: str = "Apply") -> Obj:
    found = [
        e
        for e in obj["metadata"].get("managedFields", [])
        if (e.get("manager"), e["operation"]) == (manager, operation)
    ]
    assert len(found) == 1, obj["metadata"].get("managedFields")
    result: Obj = found[0]
    return result


def managers(obj: Obj) -> list[tuple[str, str]]:
    return [(e.get("manager", ""), e["operation"]) for e in obj["metadata"].get("managedFields", [])]


def conflict_of(excinfo: pytest.ExceptionInfo[StatusError]) -> tuple[int, str, str, list[Obj]]:
    err = excinfo.value
    return err.code, err.reason, err.message, [c.to_json() for c in err.causes]


# -- apply ---------------------------------------------------------------------------------------------------


def test_create_by_apply_records_the_applied_fields_exactly() -> None:
    obj = ssa.server_side_apply(
        None, deployment(metadata={"labels": {"app": "web"}}), "tool", False, DEPLOYMENT, T0
    )

    assert obj["spec"]["replicas"] == 3
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "tool",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {NAME: {".": {}, "f:image": {}, "f:name": {}}}},
                    },
                },
            },
        }
    ]
    encoded = json.dumps(obj["metadata"]["managedFields"][0]["fieldsV1"], separators=(",", ":"))
    assert '"k:{\\"name\\":\\"c\\"}":{".":{},"f:image":{},"f:name":{}}' in encoded


def test_apply_does_not_share_structure_with_its_inputs() -> None:
    live = apply(None, deployment(), "tool")
    config = deployment(replicas=4)
    result = ssa.server_side_apply(live, config, "tool", False, DEPLOYMENT, T1)
    result["spec"]["template"]["spec"]["containers"][0]["image"] = "changed"
    result["spec"]["selector"]["matchLabels"]["app"] = "changed"

    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert config["spec"]["selector"]["matchLabels"]["app"] == "web"


def test_reapply_removes_what_the_manager_no_longer_applies() -> None:
    first = deployment(
        metadata={"labels": {"app": "web", "tier": "front"}}, more_containers=[{"name": "side", "image": "b"}]
    )
    live = apply(None, first, "tool")

    result = apply(live, deployment(replicas=None, metadata={"labels": {"app": "web"}}), "tool", T1)

    assert result["metadata"]["labels"] == {"app": "web"}
    assert "replicas" not in result["spec"]
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["c"]
    assert result["metadata"]["uid"] == "u-1"  # unowned fields stay
    spec_fields = entry(result, "tool")["fieldsV1"]["f:spec"]
    assert "f:replicas" not in spec_fields
    assert list(spec_fields["f:template"]["f:spec"]["f:containers"]) == [NAME]


def test_a_field_two_managers_apply_stays_until_both_drop_it() -> None:
    live = apply(None, deployment(metadata={"labels": {"app": "web", "team": "a"}}), "alice")
    live = apply(live, deployment(metadata={"labels": {"team": "a"}}), "bob", T1)
    assert entry(live, "bob")["fieldsV1"]["f:metadata"] == {"f:labels": {"f:team": {}}}

    live = apply(live, deployment(metadata={"labels": {"app": "web"}}), "alice", T2)
    assert live["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert entry(live, "alice")["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}}}

    live = apply(live, deployment(), "bob", T2)
    assert live["metadata"]["labels"] == {"app": "web"}


def test_applying_the_same_value_shares_ownership_without_conflict() -> None:
    live = apply(None, deployment(replicas=3), "alice")
    live = apply(live, deployment(replicas=3), "bob", T1)

    assert "f:replicas" in entry(live, "alice")["fieldsV1"]["f:spec"]
    assert "f:replicas" in entry(live, "bob")["fieldsV1"]["f:spec"]


def test_changing_a_field_another_applier_owns_is_a_conflict() -> None:
    live = apply(None, deployment(replicas=3), "alice")

    with pytest.raises(StatusError) as excinfo:
        apply(live, deployment(replicas=5), "bob", T1)

    assert conflict_of(excinfo) == (
        409,
        "Conflict",
        'Apply failed with 1 conflict: conflict with "alice": .spec.replicas',
        [{"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".spec.replicas"}],
    )
    assert live["spec"]["replicas"] == 3


def test_several_conflicts_are_listed_per_manager() -> None:
    live = apply(None, deployment(replicas=3, image="nginx:1"), "alice")

    with pytest.raises(StatusError) as excinfo:
        apply(live, deployment(replicas=5, image="nginx:2"), "bob", T1)

    _, _, message, causes = conflict_of(excinfo)
    assert message == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="c"].image'
    )
    assert [c["field"] for c in causes] == [
        ".spec.replicas",
        '.spec.template.spec.containers[name="c"].image',
    ]


def test_force_moves_ownership_to_the_applier() -> None:
    live = apply(None, deployment(replicas=3), "alice")

    result = apply(live, deployment(replicas=5), "bob", T1, force=True)

    assert result["spec"]["replicas"] == 5
    assert "f:replicas" not in entry(result, "alice")["fieldsV1"]["f:spec"]
    assert "f:replicas" in entry(result, "bob")["fieldsV1"]["f:spec"]
    # Now alice dropping replicas leaves it alone: she no longer owns it.
    result = apply(result, deployment(replicas=None), "alice", T2)
    assert result["spec"]["replicas"] == 5


def test_containers_merge_by_name() -> None:
    live = apply(None, deployment(), "alice")

    result = apply(
        live, deployment(image="nginx:1", more_containers=[{"name": "side", "image": "busybox"}]), "bob", T1
    )

    containers = result["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "c", "image": "nginx:1"}, {"name": "side", "image": "busybox"}]
    bob = entry(result, "bob")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert list(bob) == [NAME, 'k:{"name":"side"}']
    assert bob['k:{"name":"side"}'] == {".": {}, "f:image": {}, "f:name": {}}


def test_list_map_merge_keeps_live_order_and_appends_new_items() -> None:
    config = deployment(more_containers=[{"name": "x", "image": "x"}, {"name": "y", "image": "y"}])
    live = apply(None, config, "alice")
    applied = deployment(replicas=None)
    applied["spec"]["template"]["spec"]["containers"] = [
        {"name": "y", "image": "y"},
        {"name": "n", "image": "n"},
    ]

    result = apply(live, applied, "bob", T1)

    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["c", "x", "y", "n"]


def test_list_map_items_on_both_sides_take_the_configured_order() -> None:
    config = deployment(more_containers=[{"name": "x", "image": "x"}, {"name": "y", "image": "y"}])
    live = apply(None, config, "alice")
    applied = deployment(replicas=None)
    applied["spec"]["template"]["spec"]["containers"] = [
        {"name": "y", "image": "y"},
        {"name": "c", "image": "nginx:1"},
    ]

    result = apply(live, applied, "bob", T1)

    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["x", "y", "c"]


def test_service_ports_are_keyed_by_port_and_defaulted_protocol() -> None:
    live = stored(
        ssa.server_side_apply(None, service({"port": 80, "targetPort": 8080}), "alice", False, SERVICE, T0)
    )
    ports = entry(live, "alice")["fieldsV1"]["f:spec"]["f:ports"]
    assert ports == {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}}

    udp = service({"port": 80, "protocol": "UDP", "targetPort": 53})
    live = ssa.server_side_apply(live, udp, "bob", False, SERVICE, T1)
    assert [(p["port"], p.get("protocol")) for p in live["spec"]["ports"]] == [(80, None), (80, "UDP")]

    with pytest.raises(StatusError) as excinfo:
        ssa.server_side_apply(
            live, service({"port": 80, "protocol": "TCP", "targetPort": 9090}), "bob", False, SERVICE, T2
        )
    assert conflict_of(excinfo)[3] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "alice"',
            "field": '.spec.ports[port=80,protocol="TCP"].targetPort',
        }
    ]


def test_list_map_keys_are_ordered_by_value() -> None:
    obj = ssa.server_side_apply(
        None, service({"port": 8080}, {"port": 443}, {"port": 80}), "a", False, SERVICE, T0
    )

    assert list(entry(obj, "a")["fieldsV1"]["f:spec"]["f:ports"]) == [
        'k:{"port":80,"protocol":"TCP"}',
        'k:{"port":443,"protocol":"TCP"}',
        'k:{"port":8080,"protocol":"TCP"}',
    ]


def test_items_duplicated_in_the_live_object_merge_into_the_configured_one() -> None:
    live = stored(deployment(more_containers=[{"name": "c", "image": "twice"}]))
    live["metadata"]["managedFields"] = [
        {
            "manager": "m",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }
    ]

    result = apply(live, deployment(image="nginx:3"), "tool", T1)

    assert result["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "nginx:3"}]


def test_set_lists_merge_by_value() -> None:
    live = apply(None, deployment(metadata={"finalizers": ["a.io/one"]}), "alice")
    live = apply(live, deployment(metadata={"finalizers": ["b.io/two"]}), "bob", T1)
    assert live["metadata"]["finalizers"] == ["a.io/one", "b.io/two"]
    assert entry(live, "bob")["fieldsV1"]["f:metadata"] == {"f:finalizers": {'v:"b.io/two"': {}}}

    live = apply(live, deployment(), "alice", T2)
    assert live["metadata"]["finalizers"] == ["b.io/two"]


def test_atomic_lists_and_maps_are_replaced_whole() -> None:
    first = deployment()
    first["spec"]["template"]["spec"]["containers"][0]["args"] = ["--a", "--b"]
    first["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a", "disk": "ssd"}
    live = apply(None, first, "alice")
    c_fields = entry(live, "alice")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]
    assert c_fields["f:containers"][NAME]["f:args"] == {}
    assert c_fields["f:nodeSelector"] == {}

    second = deployment()
    second["spec"]["template"]["spec"]["containers"][0]["args"] = ["--c"]
    second["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "b"}
    with pytest.raises(StatusError) as excinfo:
        apply(live, second, "bob", T1)
    assert [c["field"] for c in conflict_of(excinfo)[3]] == [
        ".spec.template.spec.nodeSelector",
        '.spec.template.spec.containers[name="c"].args',
    ]

    result = apply(live, second, "bob", T1, force=True)
    pod = result["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["--c"]
    assert pod["nodeSelector"] == {"zone": "b"}


def test_null_in_the_configuration_clears_a_field() -> None:
    live = apply(None, deployment(replicas=3), "alice")
    config = deployment()
    config["spec"]["replicas"] = None

    result = apply(live, config, "alice", T1)

    assert "replicas" not in result["spec"]


def test_null_for_a_map_leaves_its_entries() -> None:
    live = apply(None, deployment(metadata={"labels": {"app": "web"}}), "alice")
    config = deployment(metadata={"labels": None})

    result = apply(live, config, "bob", T1)

    assert result["metadata"]["labels"] == {"app": "web"}
    assert entry(result, "bob")["fieldsV1"]["f:metadata"] == {"f:labels": {}}


def test_a_noop_apply_keeps_the_time() -> None:
    live = apply(None, deployment(), "alice")

    result = apply(live, deployment(), "alice", T2)

    assert entry(result, "alice")["time"] == T0
    assert apply(result, deployment(replicas=9), "alice", T2)["metadata"]["managedFields"][0]["time"] == T2


def test_status_is_not_owned_on_the_main_resource_of_types_with_a_status_subresource() -> None:
    config = deployment(status={"replicas": 1})

    with_status = ssa.server_side_apply(None, config, "alice", False, DEPLOYMENT, T0, has_status=True)
    without = ssa.server_side_apply(None, config, "alice", False, DEPLOYMENT, T0)

    assert "f:status" not in entry(with_status, "alice")["fieldsV1"]
    assert entry(without, "alice")["fieldsV1"]["f:status"] == {"f:replicas": {}}


def test_apply_to_the_status_subresource_owns_status_only() -> None:
    live = apply(None, deployment(), "alice")

    result = apply(live, deployment(replicas=7, status={"replicas": 2}), "ctl", T1, subresource="status")

    status_entry = entry(result, "ctl")
    assert status_entry["subresource"] == "status"
    assert status_entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_crd_objects_get_typed_metadata() -> None:
    schema = crd_schema(
        {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
            },
        }
    )
    config = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"app": "w"}},
        "spec": {"size": 3, "tags": ["a", "b"], "nested": {"x": 1}},
    }

    obj = ssa.server_side_apply(None, config, "tool", False, schema, T0)

    assert entry(obj, "tool")["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:nested": {".": {}, "f:x": {}}, "f:size": {}, "f:tags": {}},
    }


# -- record_update ------------------------------------------------------------------------------------------


def test_create_owns_every_field_it_sets() -> None:
    obj = ssa.record_update(
        None, stored(configmap({"a": "1"}, labels={"app": "x"})), "kubectl-create", "", CONFIGMAP, T0
    )

    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
        }
    ]


def test_an_update_takes_the_fields_it_changes() -> None:
    old = ssa.record_update(
        None, stored(configmap({"a": "1", "b": "2", "c": "3"})), "kubectl-create", "", CONFIGMAP, T0
    )
    new = copy.deepcopy(old)
    new["data"] = {"a": "changed", "b": "2", "d": "4"}
    new["metadata"]["resourceVersion"] = "8"

    obj = ssa.record_update(old, new, "kubectl-edit", "", CONFIGMAP, T1)

    assert entry(obj, "kubectl-create", "Update")["fieldsV1"] == {"f:data": {".": {}, "f:b": {}}}
    assert entry(obj, "kubectl-edit", "Update") == {
        "manager": "kubectl-edit",
        "operation": "Update",
        "apiVersion": "v1",
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:a": {}, "f:d": {}}},
    }
    assert (
        "managedFields" not in new["metadata"]
        or new["metadata"]["managedFields"] == old["metadata"]["managedFields"]
    )


def test_an_update_that_changes_nothing_keeps_managed_fields() -> None:
    old = ssa.record_update(None, stored(configmap({"a": "1"})), "kubectl-create", "", CONFIGMAP, T0)
    new = copy.deepcopy(old)
    new["metadata"]["resourceVersion"] = "9"

    del new["metadata"]["managedFields"]  # as clients that know nothing of them send it

    obj = ssa.record_update(old, new, "kubectl-edit", "", CONFIGMAP, T1)

    assert obj["metadata"]["managedFields"] == old["metadata"]["managedFields"]
    assert obj["metadata"]["managedFields"] is not old["metadata"]["managedFields"]


def test_managers_left_with_nothing_are_dropped() -> None:
    old = ssa.record_update(None, stored(configmap({"a": "1"})), "kubectl-create", "", CONFIGMAP, T0)
    changed_value = copy.deepcopy(old)
    changed_value["data"] = {"a": "2"}
    no_data = copy.deepcopy(old)
    del no_data["data"]
    no_data["metadata"]["labels"] = {"x": "y"}

    # The creator still owns the map itself after losing its only key...
    assert managers(ssa.record_update(old, changed_value, "kubectl-edit", "", CONFIGMAP, T1)) == [
        ("kubectl-create", "Update"),
        ("kubectl-edit", "Update"),
    ]
    # ...and nothing once the map is gone.
    assert managers(ssa.record_update(old, no_data, "kubectl-edit", "", CONFIGMAP, T1)) == [
        ("kubectl-edit", "Update")
    ]


def test_one_entry_per_manager_operation_version_and_subresource() -> None:
    old = ssa.record_update(None, stored(configmap({"a": "1"})), "ctl", "", CONFIGMAP, T0)
    new = copy.deepcopy(old)
    new["data"]["b"] = "2"

    obj = ssa.record_update(old, new, "ctl", "", CONFIGMAP, T1)

    assert managers(obj) == [("ctl", "Update")]
    assert entry(obj, "ctl", "Update")["fieldsV1"]["f:data"] == {".": {}, "f:a": {}, "f:b": {}}
    assert entry(obj, "ctl", "Update")["time"] == T1


def test_status_updates_are_recorded_for_the_subresource() -> None:
    old = stored(ssa.record_update(None, deployment(), "kubectl-create", "", DEPLOYMENT, T0))
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 3}

    obj = ssa.record_update(old, new, "kube-controller-manager", "status", DEPLOYMENT, T1)

    ctl = entry(obj, "kube-controller-manager", "Update")
    assert ctl["subresource"] == "status"
    assert ctl["fieldsV1"] == {"f:status": {".": {}, "f:replicas": {}}}


def test_objects_created_untracked_stay_untracked_until_applied() -> None:
    old = stored(configmap({"a": "1"}))
    new = copy.deepcopy(old)
    new["data"]["a"] = "2"

    assert "managedFields" not in ssa.record_update(old, new, "ctl", "", CONFIGMAP, T1)["metadata"]


def test_a_client_can_reset_managed_fields() -> None:
    old = ssa.record_update(None, stored(configmap({"a": "1"})), "ctl", "", CONFIGMAP, T0)
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [{}]

    assert "managedFields" not in ssa.record_update(old, new, "ctl", "", CONFIGMAP, T1)["metadata"]


def test_managed_fields_a_client_sends_are_canonicalized() -> None:
    old = ssa.record_update(None, stored(service({"port": 80})), "ctl", "", SERVICE, T0)
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [
        {
            "manager": "someone",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2025-01-01T01:00:00+01:00",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:ports": {'k:{"protocol": "TCP", "port": 80}': {"f:port": {}}}}},
        }
    ]

    obj = ssa.record_update(old, new, "ctl", "", SERVICE, T1)

    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "someone",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {"f:port": {}}}}},
        }
    ]


def test_update_managers_beyond_ten_are_merged_into_ancient_changes() -> None:
    obj = ssa.record_update(None, stored(configmap({"k0": "v"})), "m0", "", CONFIGMAP, "2025-01-01T00:00:00Z")
    for i in range(1, 12):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        obj = ssa.record_update(obj, new, f"m{i}", "", CONFIGMAP, f"2025-01-01T00:00:{i:02d}Z")

    names = [m for m, _ in managers(obj)]
    assert len(names) == 10
    assert "ancient-changes" in names
    assert {"m0", "m1", "m2"}.isdisjoint(names)
    ancient = entry(obj, "ancient-changes", "Update")
    assert ancient["fieldsV1"] == {"f:data": {".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}}}


def test_entries_are_sorted_apply_first_then_by_time() -> None:
    live = ssa.record_update(None, stored(deployment()), "creator", "", DEPLOYMENT, T0)
    live = apply(live, deployment(image="nginx:2"), "late", T2, force=True)
    live = apply(live, deployment(image="nginx:2", metadata={"labels": {"x": "y"}}), "early", T1)

    assert managers(live) == [("early", "Apply"), ("late", "Apply"), ("creator", "Update")]


# -- client-side apply, then server-side apply --------------------------------------------------------------


def test_fields_set_by_client_side_apply_conflict_with_server_side_apply() -> None:
    live = stored(
        ssa.record_update(None, deployment(replicas=3), "kubectl-client-side-apply", "", DEPLOYMENT, T0)
    )

    with pytest.raises(StatusError) as excinfo:
        apply(live, deployment(replicas=5), "other-tool", T1)

    code, _, message, causes = conflict_of(excinfo)
    assert code == 409
    assert message == (
        "Apply failed with 1 conflict: "
        'conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert causes[0]["message"] == 'conflict with "kubectl-client-side-apply" using apps/v1'


def test_kubectl_takes_over_fields_whose_last_applied_value_is_live() -> None:
    last = json.dumps(deployment(replicas=3))
    created = deployment(replicas=3, metadata={"annotations": {ssa.LAST_APPLIED_ANNOTATION: last}})
    live = stored(ssa.record_update(None, created, "kubectl-client-side-apply", "", DEPLOYMENT, T0))
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "edited-by-hand"

    with pytest.raises(StatusError) as excinfo:  # the image no longer is what was last applied
        apply(live, deployment(replicas=5, image="nginx:2"), "kubectl", T1)
    assert [c["field"] for c in conflict_of(excinfo)[3]] == ['.spec.template.spec.containers[name="c"].image']

    result = apply(live, deployment(replicas=5, image="edited-by-hand"), "kubectl", T1)
    assert result["spec"]["replicas"] == 5
    assert "f:replicas" in entry(result, "kubectl")["fieldsV1"]["f:spec"]
    annotation = result["metadata"]["annotations"][ssa.LAST_APPLIED_ANNOTATION]
    assert annotation.endswith("\n")
    assert json.loads(annotation)["spec"]["replicas"] == 5


def test_applying_to_an_untracked_object_starts_with_before_first_apply() -> None:
    live = stored(deployment(replicas=3))

    with pytest.raises(StatusError) as excinfo:
        apply(live, deployment(replicas=5), "tool", T1)
    assert conflict_of(excinfo)[2] == (
        'Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas'
    )

    result = apply(live, deployment(replicas=3), "tool", T1)
    assert managers(result) == [("tool", "Apply"), ("before-first-apply", "Update")]


# -- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**deployment(), "kind": "ReplicaSet"}, "invalid object type: apps/v1, Kind=ReplicaSet"),
        (
            {**deployment(), "apiVersion": "apps/v1beta1"},
            "invalid object type: apps/v1beta1, Kind=Deployment",
        ),
        (
            [deployment()],
            "error decoding YAML: json: cannot unmarshal array into Go value of type map[string]interface {}",
        ),
        (deployment(metadata={"managedFields": []}), "metadata.managedFields must be nil"),
    ],
)
def test_configurations_of_another_type_are_rejected(config: Any, message: str) -> None:
    live = apply(None, deployment(), "tool")

    with pytest.raises(StatusError) as excinfo:
        ssa.server_side_apply(live, config, "tool", False, DEPLOYMENT, T1)

    assert (excinfo.value.code, excinfo.value.reason, excinfo.value.message) == (400, "BadRequest", message)


def test_the_type_is_checked_on_create_when_given() -> None:
    with pytest.raises(StatusError) as excinfo:
        ssa.server_side_apply(
            None, deployment(), "tool", False, DEPLOYMENT, T0, api_version="apps/v1", kind="DaemonSet"
        )
    assert excinfo.value.message == "invalid object type: apps/v1, Kind=Deployment"

    with pytest.raises(StatusError) as excinfo:
        ssa.server_side_apply(None, {"kind": "ConfigMap"}, "tool", False, CONFIGMAP, T0)
    assert excinfo.value.message == "invalid object type: /, Kind=ConfigMap"


def test_configurations_that_do_not_fit_the_schema_are_rejected() -> None:
    undeclared = deployment()
    undeclared["spec"]["replicaz"] = 3
    unkeyed = deployment()
    unkeyed["spec"]["template"]["spec"]["containers"].append({"image": "x"})
    duplicated = deployment(more_containers=[{"name": "c", "image": "again"}])

    messages = []
    for config in (undeclared, unkeyed, duplicated):
        with pytest.raises(StatusError) as excinfo:
            ssa.server_side_apply(None, config, "tool", False, DEPLOYMENT, T0)
        assert excinfo.value.code == 400
        messages.append(excinfo.value.message)

    prefix = "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): "
    assert messages == [
        prefix + ".spec.replicaz: field not declared in schema",
        prefix + ".spec.template.spec.containers: element 1: associative list with keys has an element that "
        'omits key field "name" (and doesn\'t have default value)',
        prefix + '.spec.template.spec.containers: duplicate entries for key [name="c"]',
    ]


def test_apply_needs_a_field_manager() -> None:
    with pytest.raises(StatusError) as excinfo:
        ssa.server_side_apply(None, deployment(), "", False, DEPLOYMENT, T0)

    assert excinfo.value.code == 422
    assert excinfo.value.message == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )


def test_field_manager_validation() -> None:
    ssa.validate_field_manager("", options_kind="UpdateOptions", apply=False)
    with pytest.raises(StatusError) as excinfo:
        ssa.validate_field_manager("x" * 129, options_kind="UpdateOptions", apply=False)
    assert excinfo.value.message == (
        'UpdateOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes'
    )
    with pytest.raises(StatusError) as excinfo:
        ssa.validate_field_manager("a\tb", options_kind="CreateOptions", apply=False)
    assert (
        excinfo.value.causes[0].message == 'Invalid value: "a\tb": invalid character U+0009 (at position 1)'
    )


def test_manager_names_default_to_the_user_agent_product() -> None:
    assert (
        ssa.manager_name("kubectl-create", "kubectl/v1.32.0 (linux/amd64) kubernetes/abc") == "kubectl-create"
    )
    assert ssa.manager_name("", "kubectl/v1.32.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert ssa.manager_name(None, "python-httpx/0.28.1") == "python-httpx"
    assert ssa.manager_name("", "a\x00b\tc/1") == "abc"
    assert ssa.manager_name("", "é" * 100) == "é" * 64
    assert ssa.manager_name("", None) == ""


def test_parse_applied_reads_yaml_and_json() -> None:
    yaml_body = (
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  when: 2024-01-01\n  enabled: yes\n"
    )
    assert ssa.parse_applied(yaml_body)["data"] == {"when": "2024-01-01", "enabled": True}
    assert ssa.parse_applied(b' {"kind": "ConfigMap"}') == {"kind": "ConfigMap"}
    assert ssa.parse_applied(b"") == {}
    for body, message in (
        (b"a: [", "error decoding YAML: "),
        (b"- a\n- b\n", "error decoding YAML: json: cannot"),
    ):
        with pytest.raises(StatusError) as excinfo:
            ssa.parse_applied(body)
        assert excinfo.value.code == 400
        assert excinfo.value.message.startswith(message)


# -- cost ----------------------------------------------------------------------------------------------------


def test_a_thousand_key_configmap_is_cheap() -> None:
    obj = stored(configmap({f"key-{i}": f"value-{i}" for i in range(1000)}))
    start = time.perf_counter()
    for _ in range(20):
        created = ssa.record_update(None, obj, "kubectl-create", "", CONFIGMAP, T0)
    per_create = (time.perf_counter() - start) / 20

    assert len(entry(created, "kubectl-create", "Update")["fieldsV1"]["f:data"]) == 1001
    assert per_create < 0.05, f"{per_create * 1000:.1f} ms per create"
