"""The controllers' pure computations, against Kubernetes' definitions: the pod-template-hash, which pods a
ReplicaSet deletes first, rollout arithmetic, the scheduler's filters and messages, Endpoints subsets and
EndpointSlice endpoints and their placement in slices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.controllers import endpointutil as eu
from isthmus.local.apiserver.controllers.deployments import (
    REVISION,
    REVISION_HISTORY,
    calculate_status,
    compute_hash,
    equal_ignore_hash,
    fnv32a,
    new_rs_new_replicas,
    proportion,
    resolve_fenceposts,
    safe_encode,
    set_new_rs_annotations,
)
from isthmus.local.apiserver.controllers.mirroring import mirrored_groups, should_mirror
from isthmus.local.apiserver.controllers.replicasets import pods_to_delete, replica_set_status
from isthmus.local.apiserver.controllers.scheduler import (
    node_rejects,
    tolerates,
    unschedulable_message,
    waits_for_scheduling,
)

JsonObject = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


# -- the pod-template-hash --------------------------------------------------------------------------------


def test_fnv32a_is_the_standard_hash() -> None:
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C
    assert fnv32a(b"foobar") == 0xBF9CF968
    assert fnv32a(b"bar", fnv32a(b"foo")) == fnv32a(b"foobar")  # it continues over more data


def test_safe_encoding_uses_kubernetes_alphabet() -> None:
    assert safe_encode("0123456789") == "456789bcdf"
    assert set(safe_encode("3458871093")) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_the_hash_covers_the_template_and_the_collision_count() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}}
    reordered = {
        "spec": {"containers": [{"image": "x", "name": "a"}]},
        "metadata": {"labels": {"app": "web"}},
    }
    value = compute_hash(template, None)
    canonical = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    assert value == safe_encode(str(fnv32a(canonical)))
    assert compute_hash(reordered, None) == value  # key order does not matter
    with_count = safe_encode(str(fnv32a(b"\x01\x00\x00\x00\x00\x00\x00\x00", fnv32a(canonical))))
    assert compute_hash(template, 1) == with_count
    assert len({value, compute_hash(template, 0), compute_hash(template, 1)}) == 3
    changed = {**template, "spec": {"containers": [{"name": "a", "image": "y"}]}}
    assert compute_hash(changed, None) != value


def test_templates_compare_without_the_hash_label() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a"}]}}
    hashed = {
        "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
        "spec": {"containers": [{"name": "a"}]},
    }
    assert equal_ignore_hash(template, hashed)
    assert not equal_ignore_hash(template, {**hashed, "spec": {"containers": [{"name": "b"}]}})
    assert equal_ignore_hash({"spec": {}}, {"metadata": {"labels": {"pod-template-hash": "x"}}, "spec": {}})


# -- which pods go first ----------------------------------------------------------------------------------


def pod(name: str, **kw: Any) -> JsonObject:
    """A pod: node, phase, ready (with `ready_for` seconds), created `age` seconds ago, restarts, cost, uid."""
    created = NOW - timedelta(seconds=kw.get("age", 100))
    status: JsonObject = {"phase": kw.get("phase", "Running")}
    if kw.get("ready", True):
        since = NOW - timedelta(seconds=kw.get("ready_for", 50))
        status["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": timestamp(since)}]
    if kw.get("restarts"):
        status["containerStatuses"] = [{"name": "a", "restartCount": kw["restarts"]}]
    meta: JsonObject = {"name": name, "uid": kw.get("uid", name), "creationTimestamp": timestamp(created)}
    if "cost" in kw:
        meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(kw["cost"])}
    return {"metadata": meta, "spec": {"nodeName": kw.get("node", "n1")}, "status": status}


def first_deleted(*pods: JsonObject, related: list[JsonObject] | None = None) -> str:
    chosen = pods_to_delete(list(pods), related if related is not None else list(pods), 1, NOW)
    return str(chosen[0]["metadata"]["name"])


def test_deletion_order_follows_kubernetes_ranking() -> None:
    assert first_deleted(pod("assigned"), pod("unassigned", node="")) == "unassigned"
    assert first_deleted(pod("running"), pod("pending", phase="Pending", ready=False)) == "pending"
    assert first_deleted(pod("unknown", phase="Unknown"), pod("pending", phase="Pending")) == "pending"
    assert first_deleted(pod("ready"), pod("not-ready", ready=False)) == "not-ready"
    assert first_deleted(pod("dear", cost=10), pod("cheap", cost=-5)) == "cheap"
    # more pods of the owner on the same node first
    crowded = [pod("a1", node="a"), pod("a2", node="a"), pod("b1", node="b")]
    assert first_deleted(crowded[0], crowded[2], related=crowded) == "a1"
    # ready for a shorter time first (logarithmic buckets: 10 s vs 1000 s differ)
    assert first_deleted(pod("long", ready_for=1000), pod("short", ready_for=10)) == "short"
    assert first_deleted(pod("calm"), pod("crashy", restarts=5)) == "crashy"
    # newest first, when everything else is equal
    assert first_deleted(pod("old", age=5000, ready_for=5), pod("new", age=10, ready_for=5)) == "new"


def test_within_one_logarithmic_bucket_the_uid_decides() -> None:
    a = pod("a", age=100, ready_for=5, uid="bbb")
    b = pod("b", age=101, ready_for=5, uid="aaa")
    assert first_deleted(a, b) == "b"


def test_pods_to_delete_returns_the_count_asked_for() -> None:
    pods = [pod(f"p{i}", age=10 * (i + 1) ** 2, ready_for=1) for i in range(5)]
    chosen = pods_to_delete(pods, pods, 2, NOW)
    assert [p["metadata"]["name"] for p in chosen] == ["p0", "p1"]
    assert len(pods_to_delete(pods, pods, 9, NOW)) == 5


def test_replica_set_status_counts_available_after_min_ready_seconds() -> None:
    rs = {"spec": {"minReadySeconds": 30, "template": {"metadata": {"labels": {"app": "a"}}}}}
    pods = [pod("young", ready_for=10), pod("old", ready_for=60), pod("not-ready", ready=False)]
    for p in pods:
        p["metadata"]["labels"] = {"app": "a"}
    pods[0]["metadata"]["labels"] = {}
    assert replica_set_status(rs, pods, NOW) == {
        "replicas": 3,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 1,
    }


# -- rollout arithmetic -----------------------------------------------------------------------------------


def test_fenceposts_round_surge_up_and_unavailable_down() -> None:
    assert resolve_fenceposts("25%", "25%", 10) == (3, 2)
    assert resolve_fenceposts("25%", "25%", 1) == (1, 0)
    assert resolve_fenceposts(0, 0, 5) == (0, 1)  # never both zero
    assert resolve_fenceposts(2, "50%", 5) == (2, 2)
    with pytest.raises(ValueError):
        resolve_fenceposts("two", 0, 5)


def deployment(replicas: int, **rolling: Any) -> JsonObject:
    strategy = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%", **rolling},
    }
    return {
        "metadata": {"name": "d", "generation": 2, "annotations": {}},
        "spec": {"replicas": replicas, "strategy": strategy},
    }


def rs(name: str, replicas: int, available: int = 0, annotations: dict[str, str] | None = None) -> JsonObject:
    return {
        "metadata": {"name": name, "uid": name, "annotations": dict(annotations or {})},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available},
    }


def test_the_new_replica_set_grows_within_max_surge() -> None:
    d = deployment(4)  # surge 1
    old, new = rs("old", 4, 4), rs("new", 0)
    assert new_rs_new_replicas(d, [old, new], new) == 1
    assert new_rs_new_replicas(d, [rs("old", 3, 3), rs("new", 1)], rs("new", 1)) == 2
    assert new_rs_new_replicas(d, [rs("old", 4), rs("new", 1)], rs("new", 1)) == 1  # at 5 already
    recreate = {**d, "spec": {"replicas": 4, "strategy": {"type": "Recreate"}}}
    assert new_rs_new_replicas(recreate, [old, new], new) == 4


def test_revisions_move_to_the_new_replica_set_with_history() -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    d: JsonObject = {
        "metadata": {"annotations": {"kubernetes.io/change-cause": "v3", REVISION: "2"}},
        "spec": {"replicas": 2, "strategy": strategy},
    }
    created: JsonObject = {"metadata": {"name": "n"}}
    assert set_new_rs_annotations(d, created, 3, exists=False)
    assert created["metadata"]["annotations"] == {
        "kubernetes.io/change-cause": "v3",
        REVISION: "3",
        "deployment.kubernetes.io/desired-replicas": "2",
        "deployment.kubernetes.io/max-replicas": "3",
    }
    rolled_back: JsonObject = {
        "metadata": {"name": "o", "annotations": {REVISION: "1", REVISION_HISTORY: "0"}}
    }
    assert set_new_rs_annotations(d, rolled_back, 4, exists=True)
    assert rolled_back["metadata"]["annotations"][REVISION] == "4"
    assert rolled_back["metadata"]["annotations"][REVISION_HISTORY] == "0,1"
    assert not set_new_rs_annotations(d, rolled_back, 4, exists=True)  # nothing more to change


def test_proportional_scaling_shares_new_replicas_by_size() -> None:
    d = deployment(15, maxSurge=3, maxUnavailable=0)  # 15 + 3 = 18 allowed; the sets were made for 13
    made_for = {"deployment.kubernetes.io/max-replicas": "13"}
    big, small = rs("big", 8, annotations=made_for), rs("small", 5, annotations=made_for)
    to_add = 18 - 13
    first = proportion(big, d, to_add, 0)
    second = proportion(small, d, to_add, first)
    assert (first, second) == (3, 2)


def test_status_counts_replica_sets_and_reports_availability() -> None:
    d = deployment(4)
    status = calculate_status([rs("old", 1, 1), rs("new", 3, 2)], rs("new", 3, 2), d, "2026-01-01T00:00:00Z")
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 2,
        "replicas": 4,
        "updatedReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "unavailableReplicas": 1,
    }
    [available] = status["conditions"]
    assert (available["type"], available["status"], available["reason"]) == (
        "Available",
        "True",
        "MinimumReplicasAvailable",
    )
    low = calculate_status([rs("new", 4, 1)], rs("new", 4, 1), d, "2026-01-01T00:00:00Z")
    assert low["conditions"][0]["reason"] == "MinimumReplicasUnavailable"


# -- the scheduler ----------------------------------------------------------------------------------------


def node(name: str = "n1", ready: str = "True", **spec: Any) -> JsonObject:
    return {
        "metadata": {"name": name, "labels": spec.pop("labels", {})},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def test_the_scheduler_filters_nodes_as_kube_scheduler_does() -> None:
    p: JsonObject = {"metadata": {"name": "p"}, "spec": {}}
    assert node_rejects(p, node()) is None
    assert (
        node_rejects(p, node(ready="False"))
        == "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    )
    assert node_rejects(p, node(ready="Unknown")) == (
        "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
    )
    assert node_rejects(p, node(unschedulable=True)) == "node(s) were unschedulable"
    tainted = node(taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    assert node_rejects(p, tainted) == "node(s) had untolerated taint {dedicated: gpu}"
    tolerant = {
        "metadata": {"name": "t"},
        "spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]},
    }
    assert node_rejects(tolerant, tainted) is None
    picky = {"metadata": {"name": "s"}, "spec": {"nodeSelector": {"disk": "ssd"}}}
    assert node_rejects(picky, node()) == "node(s) didn't match Pod's node affinity/selector"
    assert node_rejects(picky, node(labels={"disk": "ssd"})) is None
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    with_affinity = {"metadata": {"name": "a"}, "spec": {"affinity": affinity}}
    assert node_rejects(with_affinity, node(labels={"zone": "b"})) is not None
    assert node_rejects(with_affinity, node(labels={"zone": "a"})) is None


def test_tolerations_match_by_key_effect_operator_and_value() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates([{"key": "k", "value": "v"}], taint)
    assert not tolerates([{"key": "k", "value": "w"}], taint)
    assert tolerates([{"operator": "Exists"}], taint)
    assert not tolerates([{"key": "k", "operator": "Exists", "effect": "NoExecute"}], taint)


def test_unschedulable_messages() -> None:
    assert unschedulable_message(0, {}) == "no nodes available to schedule pods"
    assert unschedulable_message(
        2, {"node(s) were unschedulable": 1, "node(s) had untolerated taint {a: }": 1}
    ) == (
        "0/2 nodes are available: 1 node(s) had untolerated taint {a: }, 1 node(s) were unschedulable. "
        "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    )


def test_only_unbound_default_scheduler_pods_are_scheduled() -> None:
    assert waits_for_scheduling({"metadata": {}, "spec": {"schedulerName": "default-scheduler"}})
    assert not waits_for_scheduling({"metadata": {}, "spec": {"nodeName": "ghost"}})
    assert not waits_for_scheduling({"metadata": {}, "spec": {"schedulerName": "other"}})
    assert not waits_for_scheduling({"metadata": {"deletionTimestamp": "x"}, "spec": {}})


# -- endpoints ----------------------------------------------------------------------------------------------


def service(**spec: Any) -> JsonObject:
    return {
        "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "a"}},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, **spec},
    }


def web_pod(name: str, ip: str, ready: bool = True, http_port: int = 8080, **extra: Any) -> JsonObject:
    status: JsonObject = {"phase": "Running", "podIP": ip}
    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"app": "web"},
            **extra,
        },
        "spec": {
            "nodeName": "n1",
            "containers": [
                {"name": "c", "ports": [{"name": "http", "containerPort": http_port, "protocol": "TCP"}]}
            ],
        },
        "status": status,
    }


def test_target_ports_resolve_by_number_and_by_name() -> None:
    p = web_pod("a", "10.0.0.1", http_port=8081)
    assert eu.find_port(p, {"port": 80, "targetPort": 9090}) == 9090
    assert eu.find_port(p, {"port": 80}) == 80
    assert eu.find_port(p, {"port": 80, "targetPort": "http", "protocol": "TCP"}) == 8081
    assert eu.find_port(p, {"port": 80, "targetPort": "http", "protocol": "UDP"}) is None
    assert eu.find_port(p, {"port": 80, "targetPort": "metrics"}) is None
    sidecar = {
        **p,
        "spec": {
            **p["spec"],
            "initContainers": [
                {"restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 15090}]}
            ],
        },
    }
    assert eu.find_port(sidecar, {"port": 80, "targetPort": "metrics"}) == 15090


def test_endpoints_subsets_split_ready_and_not_ready_and_repack_by_ports() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    pods = [
        web_pod("a", "10.0.0.2"),
        web_pod("b", "10.0.0.1", ready=False),
        web_pod("c", "10.0.0.3", http_port=9000),
        {**web_pod("d", "10.0.0.4"), "status": {"phase": "Pending"}},  # no IP yet
        {**web_pod("e", "10.0.0.5"), "status": {"phase": "Succeeded", "podIP": "10.0.0.5"}},
        web_pod("f", "10.0.0.6", deletionTimestamp="2026-01-01T00:00:00Z"),
    ]
    subsets = eu.endpoints_subsets(svc, pods)
    assert len(subsets) == 2
    by_port = {s["ports"][0]["port"]: s for s in subsets}
    assert [a["ip"] for a in by_port[8080]["addresses"]] == ["10.0.0.2"]
    assert [a["ip"] for a in by_port[8080]["notReadyAddresses"]] == ["10.0.0.1"]
    assert [a["ip"] for a in by_port[9000]["addresses"]] == ["10.0.0.3"]
    address = by_port[8080]["addresses"][0]
    assert address == {
        "ip": "10.0.0.2",
        "nodeName": "n1",
        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
    }
    assert by_port[8080]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    published = eu.endpoints_subsets({**svc, "spec": {**svc["spec"], "publishNotReadyAddresses": True}}, pods)
    assert sorted(a["ip"] for s in published for a in s.get("addresses", [])) == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.6",
    ]


def test_headless_services_without_ports_list_addresses_alone() -> None:
    svc = service(clusterIP="None", ports=[])
    [subset] = eu.endpoints_subsets(svc, [web_pod("a", "10.0.0.1"), web_pod("b", "10.0.0.2", ready=False)])
    assert "ports" not in subset
    assert [a["ip"] for a in subset["addresses"]] == ["10.0.0.1"]
    assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.0.0.2"]


def test_endpoints_are_truncated_at_1000_addresses_ready_first() -> None:
    ports = [{"port": 80, "protocol": "TCP"}]
    ready = [{"ip": f"10.0.{i // 250}.{i % 250}"} for i in range(900)]
    not_ready = [{"ip": f"10.1.{i // 250}.{i % 250}"} for i in range(200)]
    subsets, truncated = eu.truncate_subsets(
        [{"addresses": ready, "notReadyAddresses": not_ready, "ports": ports}]
    )
    assert truncated
    [subset] = subsets
    assert len(subset["addresses"]) == 900 and len(subset["notReadyAddresses"]) == 100
    assert eu.truncate_subsets([{"addresses": ready[:3], "ports": ports}]) == (
        [{"addresses": ready[:3], "ports": ports}],
        False,
    )


def test_slice_endpoints_carry_conditions_zone_and_hostname() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    terminating = web_pod("t", "10.0.0.9", deletionTimestamp="2026-01-01T00:00:00Z")
    named = web_pod("h", "10.0.0.8")
    named["spec"].update(hostname="h0", subdomain="web")
    groups = eu.desired_slice_groups(
        svc, [web_pod("a", "10.0.0.1"), terminating, named], "IPv4", {"n1": "zone-a"}
    )
    [(ports, endpoints)] = groups.values()
    assert ports == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_ip = {e["addresses"][0]: e for e in endpoints}
    assert by_ip["10.0.0.1"] == {
        "addresses": ["10.0.0.1"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "uid-a"},
        "nodeName": "n1",
        "zone": "zone-a",
    }
    assert by_ip["10.0.0.9"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert by_ip["10.0.0.8"]["hostname"] == "h0"
    assert eu.desired_slice_groups(svc, [web_pod("a", "10.0.0.1")], "IPv6", {}) == {}
    assert eu.slice_labels(service(clusterIP="None"), "m") == {
        "team": "a",
        "service.kubernetes.io/headless": "",
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "m",
    }


def endpoint(ip: str) -> JsonObject:
    return {"addresses": [ip], "conditions": {"ready": True}, "targetRef": {"uid": ip}}


def existing_slice(name: str, ports: list[JsonObject], ips: list[str]) -> JsonObject:
    return {"metadata": {"name": name}, "ports": ports, "endpoints": [endpoint(ip) for ip in ips]}


def test_slices_keep_their_endpoints_and_fill_up_before_new_ones_are_made() -> None:
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    key = eu.ports_key(ports)
    current = [
        existing_slice("s-1", ports, ["10.0.0.1", "10.0.0.2"]),
        existing_slice("s-2", ports, ["10.0.0.3"]),
    ]
    wanted = {key: (ports, [endpoint(ip) for ip in ("10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5")])}
    planned, delete = eu.plan_slices(wanted, current, capacity=2)
    contents = {
        s["metadata"]["name"] if s else None: [e["addresses"][0] for e in eps] for s, _, eps in planned
    }
    assert contents == {"s-1": ["10.0.0.1", "10.0.0.4"], "s-2": ["10.0.0.3", "10.0.0.5"]}
    assert delete == []
    # a third slice is needed when the two are full; an emptied one is reused for other ports
    other = [{"name": "http", "port": 9090, "protocol": "TCP"}]
    wanted = {eu.ports_key(other): (other, [endpoint("10.0.1.1")])}
    planned, delete = eu.plan_slices(wanted, current, capacity=2)
    assert [(s["metadata"]["name"] if s else None, p) for s, p, _ in planned] == [("s-1", other)]
    assert [s["metadata"]["name"] for s in delete] == ["s-2"]


def test_a_service_without_endpoints_keeps_one_empty_slice() -> None:
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    current = [existing_slice("s-1", ports, ["10.0.0.1"]), existing_slice("s-2", ports, ["10.0.0.2"])]
    planned, delete = eu.plan_slices({}, current)
    assert [(s["metadata"]["name"] if s else None, p, e) for s, p, e in planned] == [("s-1", [], [])]
    assert [s["metadata"]["name"] for s in delete] == ["s-2"]
    assert eu.plan_slices({}, []) == ([(None, [], [])], [])
    assert eu.plan_slices({}, current, placeholder=False)[0] == []


def test_what_the_mirroring_controller_mirrors() -> None:
    endpoints = {
        "metadata": {"name": "istio-pilot", "labels": {}},
        "subsets": [
            {
                "addresses": [{"ip": "10.1.16.5", "nodeName": "n1"}, {"ip": "fd00::5"}, {"ip": "bogus"}],
                "notReadyAddresses": [{"ip": "10.1.16.6"}],
                "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "https-xds", "port": 15011}],
            }
        ],
    }
    groups = mirrored_groups(endpoints)
    assert set(groups) == {"IPv4", "IPv6"}
    [(ports, v4)] = groups["IPv4"].values()
    assert ports == [
        {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
        {"name": "https-xds", "port": 15011, "protocol": "TCP"},
    ]
    assert v4 == [
        {"addresses": ["10.1.16.5"], "conditions": {"ready": True}, "nodeName": "n1"},
        {"addresses": ["10.1.16.6"], "conditions": {"ready": False}},
    ]
    selectorless = {"metadata": {"name": "istio-pilot"}, "spec": {"clusterIP": "None"}}
    assert should_mirror(endpoints, selectorless)
    assert not should_mirror(endpoints, None)
    assert not should_mirror(endpoints, {**selectorless, "spec": {"selector": {"app": "x"}}})
    skipped = {
        **endpoints,
        "metadata": {"name": "k", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
    }
    assert not should_mirror(skipped, selectorless)
