"""The rollout arithmetic and rules, against Kubernetes' definitions: maxSurge/maxUnavailable rounding, which
nodes run a daemon pod and what a DaemonSet rolling update step does, StatefulSet status and revision names,
Job counting helpers, and the API server's defaults and validation of workload strategies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.controllers import history
from isthmus.local.apiserver.controllers.daemonsets import (
    daemon_pod,
    daemon_set_status,
    rolling_limits,
    rolling_update_plan,
    should_run,
    target_node,
)
from isthmus.local.apiserver.controllers.deployments import max_surge, max_unavailable, resolve_fenceposts
from isthmus.local.apiserver.controllers.jobs import (
    Backoff,
    ensure_condition,
    format_indexes,
    indexed_template,
    is_pod_failed,
    parse_indexes,
    restarts_on_failure,
)
from isthmus.local.apiserver.controllers.statefulsets import (
    identity_matches,
    new_pod,
    parent_and_ordinal,
    revision_hash,
    statefulset_status,
)
from isthmus.local.apiserver.errors import Cause
from isthmus.local.apiserver.strategies import WorkloadStrategy

JsonObject = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


# -- maxSurge and maxUnavailable -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("25%", "25%", 10, (3, 2)),  # surge rounds up, unavailable down
        ("25%", "25%", 1, (1, 0)),
        ("25%", "25%", 3, (1, 0)),
        ("50%", "50%", 5, (3, 2)),
        (0, "0%", 4, (0, 1)),  # never both zero: one may be unavailable
        (2, 1, 4, (2, 1)),
        ("100%", "100%", 4, (4, 4)),
    ],
)
def test_deployment_fenceposts_round_as_kubernetes(
    surge: Any, unavailable: Any, replicas: int, expected: tuple[int, int]
) -> None:
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


def test_max_unavailable_never_exceeds_replicas_and_recreate_has_neither() -> None:
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 5}}
    d = {"spec": {"replicas": 3, "strategy": rolling}}
    assert (max_surge(d), max_unavailable(d)) == (0, 3)
    recreate = {"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}
    assert (max_surge(recreate), max_unavailable(recreate)) == (0, 0)


def test_daemon_set_limits_round_both_up() -> None:
    ds = {"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}}}
    assert rolling_limits(ds, 5) == (0, 1)
    ds = {"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "30%"}}}}
    assert rolling_limits(ds, 5) == (2, 0)


# -- DaemonSets -------------------------------------------------------------------------------------------


def node(name: str, ready: str = "True", labels: dict[str, str] | None = None, **spec: Any) -> JsonObject:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def ds(**pod_spec: Any) -> JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": "u1", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "x"}], **pod_spec},
            },
        },
    }


def test_which_nodes_run_a_daemon_pod() -> None:
    assert should_run(ds(), node("a")) == (True, True)
    assert should_run(ds(nodeSelector={"tier": "edge"}), node("a")) == (False, False)
    assert should_run(ds(nodeSelector={"tier": "edge"}), node("a", labels={"tier": "edge"})) == (True, True)
    tainted = node("a", taints=[{"key": "dedicated", "effect": "NoSchedule"}])
    assert should_run(ds(), tainted) == (False, True), "NoSchedule: no new pod, the running one stays"
    evicting = node("a", taints=[{"key": "dedicated", "effect": "NoExecute"}])
    assert should_run(ds(), evicting) == (False, False)
    tolerated = ds(tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert should_run(tolerated, evicting) == (True, True)
    assert should_run(ds(), node("a", ready="False")) == (False, True), (
        "not ready: tainted not-ready:NoSchedule"
    )
    assert should_run(ds(), node("a", unschedulable=True)) == (True, True), "daemon pods tolerate cordons"
    assert should_run(ds(nodeName="b"), node("a")) == (False, False)


def test_a_daemon_pod_is_pinned_to_its_node_by_affinity() -> None:
    template = ds(
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]
                },
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}],
            }
        }
    )
    pod = daemon_pod(template, "node-a", "h4sh")
    affinity = pod["spec"]["affinity"]["nodeAffinity"]
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
        ]
    }
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"], "preferences are kept"
    assert "nodeName" not in pod["spec"] and target_node(pod) == "node-a"
    assert pod["metadata"]["generateName"] == "agent-"
    assert pod["metadata"]["labels"] == {
        "app": "agent",
        "pod-template-generation": "2",
        "controller-revision-hash": "h4sh",
    }
    keys = [(t["key"], t["effect"]) for t in pod["spec"]["tolerations"]]
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys and (
        "node.kubernetes.io/unschedulable",
        "NoSchedule",
    ) in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys
    host = daemon_pod(ds(hostNetwork=True), "node-a", "h")
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in [
        (t["key"], t["effect"]) for t in host["spec"]["tolerations"]
    ]


def pod(
    name: str, node_name: str, hash_: str, ready: bool = True, deleting: bool = False, age: int = 60
) -> JsonObject:
    since = timestamp(NOW - timedelta(seconds=age))
    meta: JsonObject = {
        "name": name,
        "uid": name,
        "creationTimestamp": since,
        "labels": {history.HASH_LABEL: hash_},
    }
    if deleting:
        meta["deletionTimestamp"] = timestamp(NOW)
    return {
        "metadata": meta,
        "spec": {"nodeName": node_name},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": since}
            ],
        },
    }


def test_a_rolling_update_step_deletes_old_pods_within_max_unavailable() -> None:
    d = ds()
    d["spec"]["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    eligible = {"a": True, "b": True, "c": True}
    node_pods = {"a": [pod("pa", "a", "old")], "b": [pod("pb", "b", "old")], "c": [pod("pc", "c", "old")]}
    to_delete, to_create = rolling_update_plan(d, node_pods, eligible, "new", NOW)
    assert [p["metadata"]["name"] for p in to_delete] == ["pa"] and to_create == []
    # a new pod not ready yet on node a: nothing more may go
    node_pods["a"] = [pod("na", "a", "new", ready=False)]
    assert rolling_update_plan(d, node_pods, eligible, "new", NOW) == ([], [])
    # an old pod that is not available is replaced regardless
    node_pods["b"] = [pod("pb", "b", "old", ready=False)]
    to_delete, _ = rolling_update_plan(d, node_pods, eligible, "new", NOW)
    assert [p["metadata"]["name"] for p in to_delete] == ["pb"]


def test_a_surge_step_starts_new_pods_first_then_deletes_the_old() -> None:
    d = ds()
    d["spec"]["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    eligible = {"a": True, "b": True}
    node_pods = {"a": [pod("pa", "a", "old")], "b": [pod("pb", "b", "old")]}
    assert rolling_update_plan(d, node_pods, eligible, "new", NOW) == ([], ["a"])
    node_pods["a"].append(pod("na", "a", "new", ready=False, age=1))
    assert rolling_update_plan(d, node_pods, eligible, "new", NOW) == ([], [])
    node_pods["a"][1] = pod("na", "a", "new")
    to_delete, to_create = rolling_update_plan(d, node_pods, eligible, "new", NOW)
    assert [p["metadata"]["name"] for p in to_delete] == ["pa"] and to_create == ["b"]


def test_daemon_set_status_counts_nodes() -> None:
    d = ds()
    nodes = [node("a"), node("b"), node("c", labels={}, taints=[{"key": "k", "effect": "NoSchedule"}])]
    node_pods = {
        "a": [pod("pa", "a", "new")],
        "b": [pod("pb", "b", "old", ready=False)],
        "c": [pod("pc", "c", "new")],
    }
    status = daemon_set_status(d, nodes, node_pods, "new", NOW)
    assert status == {
        "currentNumberScheduled": 2,
        "numberMisscheduled": 1,
        "desiredNumberScheduled": 2,
        "numberReady": 1,
        "observedGeneration": 2,
        "updatedNumberScheduled": 1,
        "numberAvailable": 1,
        "numberUnavailable": 1,
    }


# -- StatefulSets -----------------------------------------------------------------------------------------


def sts(**spec: Any) -> JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default", "uid": "u2", "generation": 3},
        "spec": {
            "serviceName": "web",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
            **spec,
        },
    }


def test_stateful_pods_have_stable_identities() -> None:
    s = sts()
    p = new_pod(s, s["spec"]["template"], "web-abc", 2)
    assert p["metadata"]["name"] == "web-2" and "generateName" not in p["metadata"]
    assert p["metadata"]["labels"] == {
        "app": "web",
        "statefulset.kubernetes.io/pod-name": "web-2",
        "apps.kubernetes.io/pod-index": "2",
        "controller-revision-hash": "web-abc",
    }
    assert p["spec"]["hostname"] == "web-2" and p["spec"]["subdomain"] == "web"
    assert identity_matches(s, dict(p, metadata=dict(p["metadata"], namespace="default")))
    assert parent_and_ordinal({"metadata": {"name": "web-db-12"}}) == ("web-db", 12)
    assert parent_and_ordinal({"metadata": {"name": "web"}}) == ("", -1)


def running(name: str, revision: str, ready: bool = True) -> JsonObject:
    return pod(name, "n", revision, ready=ready) | {
        "metadata": {"name": name, "labels": {history.HASH_LABEL: revision}}
    }


def test_stateful_set_status_completes_a_rolling_update() -> None:
    s = sts()
    mid = statefulset_status(
        s, [running("web-0", "r1"), running("web-1", "r2"), running("web-2", "r2")], "r1", "r2", 0, NOW
    )
    assert mid == {
        "replicas": 3,
        "observedGeneration": 3,
        "readyReplicas": 3,
        "currentReplicas": 1,
        "updatedReplicas": 2,
        "currentRevision": "r1",
        "updateRevision": "r2",
        "collisionCount": 0,
        "availableReplicas": 3,
    }
    done = statefulset_status(s, [running(f"web-{i}", "r2") for i in range(3)], "r1", "r2", 0, NOW)
    assert (done["currentRevision"], done["currentReplicas"]) == ("r2", 3)
    not_ready = statefulset_status(s, [running("web-0", "r2", ready=False)], "r1", "r2", 0, NOW)
    assert not_ready["currentRevision"] == "r1" and "readyReplicas" not in not_ready


def test_revision_hashes_are_fnv1_over_the_data_and_the_collision_count() -> None:
    assert history.fnv32(b"") == 0x811C9DC5
    assert history.fnv32(b"a") == 0x050C5D7E  # FNV-1, not FNV-1a (0xE40C292C)
    data = history.template_patch(sts())
    assert data["spec"]["template"]["$patch"] == "replace"
    assert history.template_of({"data": data}) == sts()["spec"]["template"]
    assert revision_hash(data, 0) == revision_hash(data, 0) != revision_hash(data, 1)
    assert set(revision_hash(data, 0)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_revisions_sort_by_number_and_truncate_names() -> None:
    revisions = [
        {"metadata": {"name": n, "creationTimestamp": "t"}, "revision": r}
        for n, r in (("b", 2), ("a", 1), ("c", 3))
    ]
    assert [r["metadata"]["name"] for r in history.sort_revisions(revisions)] == ["a", "b", "c"]
    assert history.next_revision(revisions) == 4
    assert history.revision_name("x" * 300, "h") == "x" * 223 + "-h"


# -- Jobs -------------------------------------------------------------------------------------------------


def test_completed_indexes_use_kubernetes_interval_notation() -> None:
    assert format_indexes([0, 1, 2, 4, 6, 7]) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert format_indexes([]) == "" and parse_indexes("") == set()


def test_an_indexed_pod_template_carries_its_index() -> None:
    template = {"metadata": {}, "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]}}
    result = indexed_template(template, "work", 4)
    assert result["metadata"]["annotations"] == {"batch.kubernetes.io/job-completion-index": "4"}
    assert result["spec"]["hostname"] == "work-4"
    assert [e["name"] for e in result["spec"]["containers"][0]["env"]] == ["A", "JOB_COMPLETION_INDEX"]


def test_failed_pods_and_restarts_count_toward_the_backoff_limit() -> None:
    failed = {"metadata": {}, "status": {"phase": "Failed"}}
    deleted = {"metadata": {"deletionTimestamp": "t"}, "status": {"phase": "Running"}}
    succeeded_then_deleted = {"metadata": {"deletionTimestamp": "t"}, "status": {"phase": "Succeeded"}}
    assert is_pod_failed(failed) and is_pod_failed(deleted) and not is_pod_failed(succeeded_then_deleted)
    job = {"spec": {"backoffLimit": 3, "template": {"spec": {"restartPolicy": "OnFailure"}}}}
    restarted = {
        "status": {
            "phase": "Running",
            "containerStatuses": [{"restartCount": 2}],
            "initContainerStatuses": [{"restartCount": 1}],
        }
    }
    assert restarts_on_failure(job, [restarted])
    assert not restarts_on_failure(job | {"spec": {**job["spec"], "backoffLimit": 4}}, [restarted])
    never = {"spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never"}}}}
    assert not restarts_on_failure(never, [restarted])


def test_pod_creation_backs_off_exponentially_after_failures() -> None:
    backoff = Backoff(failures=3, last_failure=NOW)
    assert backoff.remaining(10.0, NOW + timedelta(seconds=5)) == 35.0  # 10 s * 2^2 - 5 s
    assert Backoff(failures=20, last_failure=NOW).remaining(10.0, NOW) == 600.0
    assert Backoff().remaining(10.0, NOW) == 0.0


def test_job_conditions_are_never_added_false() -> None:
    status: JsonObject = {}
    assert not ensure_condition(status, "Suspended", "False", "JobResumed", "Job resumed", "t1")
    assert status == {}
    assert ensure_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", "t1")
    assert ensure_condition(status, "Suspended", "False", "JobResumed", "Job resumed", "t2")
    [cond] = status["conditions"]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == ("False", "JobResumed", "t2")


# -- defaults and validation ------------------------------------------------------------------------------


def messages(causes: list[Cause]) -> list[str]:
    return [f"{c.field}: {c.message}" for c in causes]


def deployment_with(**rolling: Any) -> JsonObject:
    return {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def test_rolling_update_values_are_validated_as_kubernetes_does() -> None:
    strategy = WorkloadStrategy("Deployment")
    assert strategy.prepare_create(deployment_with(maxSurge="50%", maxUnavailable=1)) == []
    assert messages(strategy.prepare_create(deployment_with(maxSurge=0, maxUnavailable=0))) == [
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
    ]
    assert messages(strategy.prepare_create(deployment_with(maxSurge="ten", maxUnavailable="110%"))) == [
        'spec.strategy.rollingUpdate.maxSurge: Invalid value: "ten": a valid percent string must be a numeric '
        "string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "110%": must not be greater than 100%',
    ]
    assert messages(strategy.prepare_create(deployment_with(maxSurge=-1))) == [
        "spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0"
    ]
    recreate = deployment_with()
    recreate["spec"]["strategy"] = {"type": "Recreate", "rollingUpdate": {}}
    assert messages(strategy.prepare_create(recreate)) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
    ]
    always = deployment_with()
    always["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert messages(strategy.prepare_create(always)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'
    ]


def test_daemon_set_defaults_and_surge_rules() -> None:
    strategy = WorkloadStrategy("DaemonSet")
    d = ds()
    d["metadata"] = {"name": "agent"}
    assert strategy.prepare_create(d) == []
    assert d["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert d["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}
    both = ds()
    both["metadata"] = {"name": "agent"}
    both["spec"]["updateStrategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1},
    }
    assert messages(strategy.prepare_create(both)) == [
        "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"
    ]
    changed = ds(hostNetwork=True)
    changed["metadata"] = {"name": "agent"}
    assert strategy.prepare_update(changed, d) == []
    assert changed["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "2"


def test_stateful_set_defaults_and_forbidden_updates() -> None:
    strategy = WorkloadStrategy("StatefulSet")
    s = sts()
    del s["spec"]["replicas"]
    assert strategy.prepare_create(s) == []
    spec = s["spec"]
    assert spec["replicas"] == 1 and spec["podManagementPolicy"] == "OrderedReady"
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    renamed = sts(serviceName="other")
    assert messages(strategy.prepare_update(renamed, s))[0].startswith(
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"
    )
    claims = sts(volumeClaimTemplates=[{"metadata": {"name": "data"}}])
    assert messages(strategy.prepare_create(claims)) == [
        "spec.volumeClaimTemplates: Forbidden: the local cluster has no PersistentVolumes to bind claims to: "
        "use emptyDir or hostPath volumes in the pod template"
    ]


def test_job_defaults_selector_and_immutable_template() -> None:
    strategy = WorkloadStrategy("Job")
    job: JsonObject = {
        "metadata": {"name": "pi"},
        "spec": {
            "parallelism": 2,
            "template": {
                "metadata": {"labels": {"team": "a"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    assert strategy.prepare_create(job) == []
    uid = job["metadata"]["uid"]
    spec = job["spec"]
    assert "completions" not in spec, "completions stays unset when parallelism is given"
    assert (spec["backoffLimit"], spec["completionMode"], spec["suspend"], spec["manualSelector"]) == (
        6,
        "NonIndexed",
        False,
        False,
    )
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["metadata"]["labels"] == spec["template"]["metadata"]["labels"]
    assert job["status"] == {}
    changed = {
        **job,
        "spec": {
            **spec,
            "template": {
                **spec["template"],
                "metadata": {"labels": {**spec["template"]["metadata"]["labels"], "x": "y"}},
            },
        },
    }
    assert [c.field for c in strategy.prepare_update(changed, job)] == ["spec.template"]
    bad = {
        "metadata": {"name": "pi"},
        "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": []}}},
    }
    assert messages(strategy.prepare_create(bad)) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"'
    ]
