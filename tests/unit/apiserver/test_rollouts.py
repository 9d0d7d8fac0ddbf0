"""Rollouts and the DaemonSet, StatefulSet and Job controllers, running in-process on a store as in the API
server (with the scheduler, the ReplicaSet and Deployment controllers and the garbage collector). The test
plays the kubelet of every node: it runs bound pods (an IP, phase Running, Ready unless told otherwise),
finishes Job pods with an exit code, and completes the deletion of terminating pods."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.controllers import history
from isthmus.local.apiserver.controllers.daemonsets import DaemonSetController
from isthmus.local.apiserver.controllers.jobs import TRACKING_FINALIZER, JobController
from isthmus.local.apiserver.controllers.statefulsets import StatefulSetController
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import PATCH_STRATEGIC
from tests.unit.apiserver.test_workload_controllers import ADMIN, Cluster, JsonObject, deployment


class Nodes(Cluster):
    """The in-process cluster with the rollout controllers, and a kubelet for every node."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.controllers += [DaemonSetController(self.ctx), StatefulSetController(self.ctx)]
        self.jobs = JobController(self.ctx)
        self.jobs.backoff_base = 0.2
        self.controllers.append(self.jobs)
        self.not_ready: set[str] = set()
        self.exit_codes: dict[str, int] = {}  # pod name -> the exit code its (only) container ends with

    async def kubelet(self, ready: bool = True, namespace: str = "default") -> None:
        for pod in self.objs("", "pods", namespace):
            meta, status = pod["metadata"], pod.get("status") or {}
            if not pod["spec"].get("nodeName"):
                continue
            if meta.get("deletionTimestamp"):
                if status.get("phase") not in ("Succeeded", "Failed"):
                    await self.finish(pod, 137)
                with contextlib.suppress(StatusError):
                    await self.objects.delete(
                        self.t("", "pods", namespace, meta["name"]), {"gracePeriodSeconds": 0}, ADMIN
                    )
            elif status.get("phase") in ("Succeeded", "Failed"):
                continue
            elif meta["name"] in self.exit_codes:
                await self.finish(pod, self.exit_codes[meta["name"]])
            elif not status.get("podIP"):
                await self.run_pod(pod, ready=ready and meta["name"] not in self.not_ready)

    async def finish(self, pod: JsonObject, code: int) -> None:
        """The pod's container exited with `code` (and restartPolicy does not restart it)."""
        now = timestamp()
        phase = "Succeeded" if code == 0 else "Failed"
        status = {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "finishedAt": now, "startedAt": now}},
                }
            ],
        }
        meta = pod["metadata"]
        with contextlib.suppress(StatusError):
            await self.merge("", "pods", meta["namespace"], meta["name"], {"status": status}, "status")

    async def set_ready(self, name: str, ready: bool) -> None:
        (self.not_ready.discard if ready else self.not_ready.add)(name)
        pod = self.get("", "pods", "default", name)
        assert pod is not None
        await self.run_pod(pod, ready=ready)

    async def strategic(self, group: str, plural: str, name: str, patch: JsonObject) -> None:
        await self.objects.patch(
            self.t(group, plural, "default", name), PATCH_STRATEGIC, orjson.dumps(patch), ADMIN
        )


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Nodes]:
    c = Nodes(tmp_path)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def names(pods: list[JsonObject]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods)


def status_of(c: Cluster, group: str, plural: str, name: str) -> JsonObject:
    obj = c.get(group, plural, "default", name)
    assert obj is not None, f"{plural}/{name} is gone"
    result: JsonObject = obj.get("status") or {}
    return result


def image_of(pod: JsonObject) -> str:
    return str(pod["spec"]["containers"][0]["image"])


def workload(kind: str, name: str, image: str = "app:v1", **spec: Any) -> JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }


def job(name: str = "work", restart: str = "Never", **spec: Any) -> JsonObject:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"restartPolicy": restart, "containers": [{"name": "app", "image": "app:v1"}]},
            },
            **spec,
        },
    }


async def watch_while(
    c: Nodes, what: str, done: Callable[[], bool], probe: Callable[[], None], seconds: float = 10
) -> None:
    """Play the kubelet until `done`, calling `probe` after every step."""
    deadline = time.monotonic() + seconds
    while not done():
        probe()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await c.kubelet()
        await asyncio.sleep(0.01)
    probe()


# -- Deployments: strategies in numbers --------------------------------------------------------------------


async def test_a_rolling_update_stays_within_max_surge_and_max_unavailable(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    d = deployment(
        replicas=4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 2}}
    )
    await c.create("apps", "deployments", d)
    await c.converge(
        "v1",
        lambda: (
            len(c.pods()) == 4 and status_of(c, "apps", "deployments", "web").get("availableReplicas") == 4
        ),
    )
    await c.merge(
        "apps",
        "deployments",
        "default",
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}},
    )
    most, fewest_ready = 0, 4

    def probe() -> None:
        nonlocal most, fewest_ready
        pods = c.pods()  # terminating pods count for neither, as in Kubernetes
        most = max(most, len(pods))
        fewest_ready = min(fewest_ready, sum(1 for p in pods if _ready(p)))

    def done() -> bool:
        pods = c.pods()
        return (
            len(pods) == 4
            and {image_of(p) for p in pods} == {"app:v2"}
            and status_of(c, "apps", "deployments", "web").get("availableReplicas") == 4
        )

    await watch_while(c, "v2", done, probe)
    assert most <= 4, "maxSurge 0: never more pods than replicas"
    assert fewest_ready >= 2, "maxUnavailable 2 of 4"


def _ready(pod: JsonObject) -> bool:
    return any(
        cond["type"] == "Ready" and cond["status"] == "True"
        for cond in (pod.get("status") or {}).get("conditions") or ()
    )


async def test_pods_count_as_available_only_after_min_ready_seconds(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=2, minReadySeconds=2))
    await c.converge("2 ready", lambda: status_of(c, "apps", "deployments", "web").get("readyReplicas") == 2)
    ready_at = time.monotonic()
    assert "availableReplicas" not in status_of(c, "apps", "deployments", "web")
    [rs] = c.objs("apps", "replicasets")
    assert rs["spec"]["minReadySeconds"] == 2
    await c.until(
        "available",
        lambda: status_of(c, "apps", "deployments", "web").get("availableReplicas") == 2,
        seconds=6,
    )
    assert time.monotonic() - ready_at >= 1.0  # timestamps have a one-second precision
    conditions = {x["type"]: x["status"] for x in status_of(c, "apps", "deployments", "web")["conditions"]}
    assert conditions == {"Available": "True", "Progressing": "True"}


async def test_revision_history_limit_keeps_that_many_old_replica_sets(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=1, revisionHistoryLimit=1))
    await c.converge("v1", lambda: status_of(c, "apps", "deployments", "web").get("availableReplicas") == 1)
    for version in ("v2", "v3", "v4"):
        await c.merge(
            "apps",
            "deployments",
            "default",
            "web",
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"app:{version}"}]}}}},
        )
        await c.converge(
            version,
            lambda v=version: (
                {image_of(p) for p in c.objs("", "pods")} == {f"app:{v}"}  # type: ignore[misc]
                and status_of(c, "apps", "deployments", "web").get("updatedReplicas") == 1
                and status_of(c, "apps", "deployments", "web").get("availableReplicas") == 1
            ),
        )
    await c.until("the oldest revisions cleaned", lambda: len(c.objs("apps", "replicasets")) == 2, seconds=5)
    revisions = sorted(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        for rs in c.objs("apps", "replicasets")
    )
    assert revisions == ["3", "4"]


# -- DaemonSets -------------------------------------------------------------------------------------------


async def test_a_daemon_set_runs_one_pod_per_eligible_node(nodes: Nodes) -> None:
    c = nodes
    await c.add_node("node-a")
    await c.add_node("node-b")
    await c.create(
        "",
        "nodes",
        {
            "metadata": {"name": "node-c"},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
        },
        namespace="",
    )
    await c.set_node_ready("node-c", True)
    ds = await c.create("apps", "daemonsets", workload("DaemonSet", "agent"))
    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    await c.converge("2 pods", lambda: status_of(c, "apps", "daemonsets", "agent").get("numberReady") == 2)
    pods = c.pods()
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-a", "node-b"]
    pod = pods[0]
    assert pod["metadata"]["name"].startswith("agent-")
    affinity = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [pod["spec"]["nodeName"]]}]}
        ]
    }
    assert {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "spec"
    ]["tolerations"]
    [revision] = c.objs("apps", "controllerrevisions")
    hash_ = revision["metadata"]["labels"][history.HASH_LABEL]
    assert revision["metadata"]["name"] == f"agent-{hash_}" and revision["revision"] == 1
    assert pod["metadata"]["labels"] == {
        "app": "agent",
        "controller-revision-hash": hash_,
        "pod-template-generation": "1",
    }
    status = status_of(c, "apps", "daemonsets", "agent")
    assert status == {
        "currentNumberScheduled": 2,
        "desiredNumberScheduled": 2,
        "numberMisscheduled": 0,
        "numberReady": 2,
        "numberAvailable": 2,
        "updatedNumberScheduled": 2,
        "observedGeneration": 1,
    }
    # tolerating the taint brings the third node in; a node selector then keeps only the labelled node
    await c.strategic(
        "apps",
        "daemonsets",
        "agent",
        {"spec": {"template": {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}},
    )
    await c.converge(
        "3 nodes",
        lambda: (
            sorted(p["spec"].get("nodeName", "") for p in c.pods()) == ["node-a", "node-b", "node-c"]
            and status_of(c, "apps", "daemonsets", "agent").get("numberAvailable") == 3
        ),
    )
    await c.merge("", "nodes", "", "node-b", {"metadata": {"labels": {"tier": "edge"}}})
    await c.strategic(
        "apps", "daemonsets", "agent", {"spec": {"template": {"spec": {"nodeSelector": {"tier": "edge"}}}}}
    )
    await c.converge(
        "only node-b",
        lambda: (
            [p["spec"].get("nodeName") for p in c.objs("", "pods")] == ["node-b"]
            and status_of(c, "apps", "daemonsets", "agent").get("desiredNumberScheduled") == 1
        ),
        seconds=10,
    )
    updated = c.get("apps", "daemonsets", "default", "agent")
    assert (
        updated is not None
        and updated["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "3"
    )


async def test_a_daemon_set_rolls_out_node_by_node_and_keeps_revisions(nodes: Nodes) -> None:
    c = nodes
    for name in ("node-a", "node-b", "node-c"):
        await c.add_node(name)
    await c.create("apps", "daemonsets", workload("DaemonSet", "agent"))
    await c.converge(
        "3 ready", lambda: status_of(c, "apps", "daemonsets", "agent").get("numberAvailable") == 3
    )
    await c.strategic(
        "apps",
        "daemonsets",
        "agent",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}},
    )
    fewest = 3

    def probe() -> None:
        nonlocal fewest
        live = [p for p in c.objs("", "pods") if _ready(p) and not p["metadata"].get("deletionTimestamp")]
        fewest = min(fewest, len(live))

    def done() -> bool:
        status = status_of(c, "apps", "daemonsets", "agent")
        return (
            status.get("updatedNumberScheduled") == 3
            and status.get("numberAvailable") == 3
            and {image_of(p) for p in c.objs("", "pods")} == {"app:v2"}
        )

    await watch_while(c, "v2 everywhere", done, probe)
    assert fewest >= 2, "maxUnavailable 1: at most one node without a ready daemon pod"
    revisions = sorted((r["revision"], r["metadata"]["name"]) for r in c.objs("apps", "controllerrevisions"))
    assert [number for number, _ in revisions] == [1, 2]
    # `kubectl rollout undo` applies revision 1's data as a strategic merge patch
    first = next(r for r in c.objs("apps", "controllerrevisions") if r["revision"] == 1)
    await c.strategic("apps", "daemonsets", "agent", first["data"])
    await c.converge(
        "v1 again",
        lambda: (
            status_of(c, "apps", "daemonsets", "agent").get("updatedNumberScheduled") == 3
            and {image_of(p) for p in c.objs("", "pods")} == {"app:v1"}
            and status_of(c, "apps", "daemonsets", "agent").get("numberAvailable") == 3
        ),
    )
    renumbered = c.get("apps", "controllerrevisions", "default", first["metadata"]["name"])
    assert renumbered is not None and renumbered["revision"] == 3


async def test_a_daemon_set_with_max_surge_starts_the_new_pod_before_stopping_the_old(nodes: Nodes) -> None:
    c = nodes
    await c.add_node("node-a")
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    await c.create("apps", "daemonsets", workload("DaemonSet", "agent", updateStrategy=rolling))
    await c.converge("ready", lambda: status_of(c, "apps", "daemonsets", "agent").get("numberAvailable") == 1)
    await c.strategic(
        "apps",
        "daemonsets",
        "agent",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}},
    )
    always_ready = True

    def probe() -> None:
        nonlocal always_ready
        always_ready = always_ready and any(
            _ready(p) and not p["metadata"].get("deletionTimestamp") for p in c.objs("", "pods")
        )

    await watch_while(c, "v2", lambda: [image_of(p) for p in c.objs("", "pods")] == ["app:v2"], probe)
    assert always_ready


# -- StatefulSets -----------------------------------------------------------------------------------------


async def test_a_stateful_set_starts_pods_in_order_each_once_the_previous_is_ready(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("apps", "statefulsets", workload("StatefulSet", "db", replicas=3, serviceName="db"))
    await c.until("db-0", lambda: names(c.pods()) == ["db-0"])
    c.not_ready.add("db-0")
    await c.kubelet()
    await asyncio.sleep(0.2)
    assert names(c.pods()) == ["db-0"], "db-1 waits for db-0 to be Running and Ready"
    await c.set_ready("db-0", True)
    await c.until("db-1", lambda: names(c.pods()) == ["db-0", "db-1"])
    await c.converge("3 ready", lambda: status_of(c, "apps", "statefulsets", "db").get("readyReplicas") == 3)
    created = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in c.pods()}
    assert created["db-0"] <= created["db-1"] <= created["db-2"]
    pod = c.get("", "pods", "default", "db-1")
    assert pod is not None
    assert pod["spec"]["hostname"] == "db-1" and pod["spec"]["subdomain"] == "db"
    labels = pod["metadata"]["labels"]
    assert (
        labels["statefulset.kubernetes.io/pod-name"] == "db-1"
        and labels["apps.kubernetes.io/pod-index"] == "1"
    )
    status = status_of(c, "apps", "statefulsets", "db")
    [revision] = c.objs("apps", "controllerrevisions")
    assert labels["controller-revision-hash"] == revision["metadata"]["name"]
    assert status == {
        "replicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "currentReplicas": 3,
        "updatedReplicas": 3,
        "currentRevision": revision["metadata"]["name"],
        "updateRevision": revision["metadata"]["name"],
        "collisionCount": 0,
        "observedGeneration": 1,
    }
    await c.ctx.events.flush()
    assert ("Normal", "SuccessfulCreate", "create Pod db-0 in StatefulSet db successful", 1) in c.events(
        "StatefulSet", "db"
    )


async def test_a_stateful_set_scales_down_from_the_highest_ordinal_one_at_a_time(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("apps", "statefulsets", workload("StatefulSet", "db", replicas=3, serviceName="db"))
    await c.converge("3 ready", lambda: status_of(c, "apps", "statefulsets", "db").get("readyReplicas") == 3)
    await c.merge("apps", "statefulsets", "default", "db", {"spec": {"replicas": 1}})
    await c.until(
        "db-2 terminating",
        lambda: bool(
            (c.get("", "pods", "default", "db-2") or {}).get("metadata", {}).get("deletionTimestamp")
        ),
    )
    await asyncio.sleep(0.1)
    db1 = c.get("", "pods", "default", "db-1")
    assert db1 is not None and not db1["metadata"].get("deletionTimestamp"), "db-1 waits until db-2 is gone"
    await c.converge("1 left", lambda: names(c.objs("", "pods")) == ["db-0"])
    await c.ctx.events.flush()
    deletes = [e[2] for e in c.events("StatefulSet", "db") if e[1] == "SuccessfulDelete"]
    assert deletes == [
        "delete Pod db-2 in StatefulSet db successful",
        "delete Pod db-1 in StatefulSet db successful",
    ]


async def test_a_stateful_set_updates_from_the_highest_ordinal_down_to_the_partition(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("apps", "statefulsets", workload("StatefulSet", "db", replicas=3, serviceName="db"))
    await c.converge("3 ready", lambda: status_of(c, "apps", "statefulsets", "db").get("readyReplicas") == 3)
    replaced: list[str] = []
    first_uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in c.pods()}

    def probe() -> None:
        for pod in c.objs("", "pods"):
            name = pod["metadata"]["name"]
            if pod["metadata"]["uid"] != first_uids.get(name) and name not in replaced:
                replaced.append(name)

    await c.strategic(
        "apps",
        "statefulsets",
        "db",
        {
            "spec": {
                "updateStrategy": {"rollingUpdate": {"partition": 1}},
                "template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}},
            }
        },
    )
    await watch_while(
        c,
        "partitioned rollout",
        lambda: (
            status_of(c, "apps", "statefulsets", "db").get("updatedReplicas") == 2
            and status_of(c, "apps", "statefulsets", "db").get("readyReplicas") == 3
        ),
        probe,
    )
    assert replaced == ["db-2", "db-1"]
    images = {p["metadata"]["name"]: image_of(p) for p in c.pods()}
    assert images == {"db-0": "app:v1", "db-1": "app:v2", "db-2": "app:v2"}
    status = status_of(c, "apps", "statefulsets", "db")
    assert status["currentRevision"] != status["updateRevision"] and status["currentReplicas"] == 1
    await c.strategic(
        "apps", "statefulsets", "db", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}
    )
    await watch_while(
        c,
        "complete",
        lambda: (
            status_of(c, "apps", "statefulsets", "db").get("currentRevision") == status["updateRevision"]
            and status_of(c, "apps", "statefulsets", "db").get("readyReplicas") == 3
        ),
        probe,
    )
    assert replaced == ["db-2", "db-1", "db-0"]
    assert status_of(c, "apps", "statefulsets", "db")["currentReplicas"] == 3


async def test_undoing_a_stateful_set_rolls_back_to_the_earlier_revision(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("apps", "statefulsets", workload("StatefulSet", "db", replicas=2, serviceName="db"))
    await c.converge("v1", lambda: status_of(c, "apps", "statefulsets", "db").get("readyReplicas") == 2)
    [first] = c.objs("apps", "controllerrevisions")
    await c.strategic(
        "apps",
        "statefulsets",
        "db",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}},
    )

    def at(image: str) -> bool:
        status = status_of(c, "apps", "statefulsets", "db")
        return (
            {image_of(p) for p in c.pods()} == {image}
            and status.get("readyReplicas") == 2
            and status.get("currentRevision") == status.get("updateRevision")
        )

    await c.converge("v2", lambda: at("app:v2"))
    await c.strategic("apps", "statefulsets", "db", first["data"])  # what `kubectl rollout undo` sends
    await c.converge("v1 again", lambda: at("app:v1"))
    revisions = {r["metadata"]["name"]: r["revision"] for r in c.objs("apps", "controllerrevisions")}
    assert revisions[first["metadata"]["name"]] == 3 and sorted(revisions.values()) == [2, 3]
    assert status_of(c, "apps", "statefulsets", "db")["updateRevision"] == first["metadata"]["name"]


async def test_a_parallel_stateful_set_starts_every_pod_at_once(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    c.not_ready.update({"db-0", "db-1", "db-2"})
    await c.create(
        "apps",
        "statefulsets",
        workload("StatefulSet", "db", replicas=3, serviceName="db", podManagementPolicy="Parallel"),
    )
    await c.until("3 pods", lambda: names(c.pods()) == ["db-0", "db-1", "db-2"])


async def test_volume_claim_templates_are_refused_with_a_clear_message(nodes: Nodes) -> None:
    sts = workload(
        "StatefulSet",
        "db",
        serviceName="db",
        volumeClaimTemplates=[
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ],
    )
    with pytest.raises(StatusError) as refused:
        await nodes.create("apps", "statefulsets", sts)
    assert refused.value.code == 422
    assert (
        "spec.volumeClaimTemplates: Forbidden: the local cluster has no PersistentVolumes"
        in refused.value.message
    )


# -- Jobs -------------------------------------------------------------------------------------------------


async def test_a_job_runs_parallelism_pods_until_completions_succeed(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    created = await c.create("batch", "jobs", job(completions=3, parallelism=2))
    uid = created["metadata"]["uid"]
    assert created["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert created["spec"]["template"]["metadata"]["labels"] == {
        "app": "work",
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "work",
        "controller-uid": uid,
        "job-name": "work",
    }
    most = 0
    done: set[str] = set()

    def probe() -> None:
        nonlocal most
        active = [
            p for p in c.objs("", "pods") if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        ]
        most = max(most, len(active))
        for pod in c.objs("", "pods"):
            assert (
                TRACKING_FINALIZER in pod["metadata"].get("finalizers", [])
                or pod["status"].get("phase") == "Succeeded"
            )
            if pod["status"].get("podIP") and pod["metadata"]["name"] not in done:
                done.add(pod["metadata"]["name"])
                c.exit_codes[pod["metadata"]["name"]] = 0

    def complete() -> bool:
        return any(
            cond["type"] == "Complete" for cond in status_of(c, "batch", "jobs", "work").get("conditions", [])
        )

    await watch_while(c, "complete", complete, probe)
    assert most <= 2
    status = status_of(c, "batch", "jobs", "work")
    assert status["succeeded"] == 3 and "failed" not in status and "active" not in status
    assert status["ready"] == 0 and status["terminating"] == 0 and status["uncountedTerminatedPods"] == {}
    assert [(x["type"], x["reason"], x["message"]) for x in status["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
        ("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
    ]
    assert status["completionTime"] and status["startTime"]
    pods = c.objs("", "pods")
    assert len(pods) == 3 and all(not p["metadata"].get("finalizers") for p in pods)
    await c.ctx.events.flush()
    reasons = [e[1] for e in c.events("Job", "work")]
    assert reasons.count("SuccessfulCreate") == 3 and "Completed" in reasons


async def test_a_job_fails_after_backoff_limit_failures(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("batch", "jobs", job(backoffLimit=1))

    def fail_every_pod() -> None:
        for pod in c.objs("", "pods"):
            c.exit_codes[pod["metadata"]["name"]] = 1

    def failed() -> bool:
        return any(
            cond["type"] == "Failed" for cond in status_of(c, "batch", "jobs", "work").get("conditions", [])
        )

    await watch_while(c, "failed", failed, fail_every_pod)
    status = status_of(c, "batch", "jobs", "work")
    assert status["failed"] == 2 and "succeeded" not in status
    assert [(x["type"], x["reason"]) for x in status["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded"),
        ("Failed", "BackoffLimitExceeded"),
    ]
    assert len(c.objs("", "pods")) == 2, "restartPolicy Never: a new pod per failure, the failed ones kept"
    await c.ctx.events.flush()
    assert ("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit", 1) in c.events(
        "Job", "work"
    )


async def test_an_on_failure_job_fails_when_restarts_reach_the_backoff_limit(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("batch", "jobs", job(restart="OnFailure", backoffLimit=2))
    await c.converge("running", lambda: any(p.get("status", {}).get("phase") == "Running" for p in c.pods()))
    [pod] = c.pods()
    status = {
        "containerStatuses": [
            {
                "name": "app",
                "ready": False,
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            }
        ]
    }
    await c.merge("", "pods", "default", pod["metadata"]["name"], {"status": status}, "status")

    def failed() -> bool:
        return any(
            cond["type"] == "Failed" for cond in status_of(c, "batch", "jobs", "work").get("conditions", [])
        )

    await c.converge("failed", failed)
    assert not c.objs("", "pods"), "the running pod was deleted"
    assert status_of(c, "batch", "jobs", "work")["failed"] == 1


async def test_an_indexed_job_gives_each_pod_its_completion_index(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("batch", "jobs", job(completions=3, parallelism=3, completionMode="Indexed"))
    await c.until("3 pods", lambda: len(c.pods()) == 3)
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in c.pods()}
    assert sorted(by_index) == ["0", "1", "2"]
    pod = by_index["1"]
    assert pod["metadata"]["name"].startswith("work-1-") and pod["spec"]["hostname"] == "work-1"
    assert pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
    env = pod["spec"]["containers"][0]["env"]
    assert (
        env
        == [
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {
                    "fieldRef": {
                        "apiVersion": "v1",
                        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']",
                    }
                },
            }
        ]
        or env[0]["name"] == "JOB_COMPLETION_INDEX"
    )
    for p in c.pods():
        c.exit_codes[p["metadata"]["name"]] = 0

    def complete() -> bool:
        return any(
            cond["type"] == "Complete" for cond in status_of(c, "batch", "jobs", "work").get("conditions", [])
        )

    await c.converge("complete", complete)
    status = status_of(c, "batch", "jobs", "work")
    assert status["completedIndexes"] == "0-2" and status["succeeded"] == 3


async def test_deleting_a_job_releases_its_pods(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("batch", "jobs", job(parallelism=2, completions=4))
    await c.converge("running", lambda: len([p for p in c.pods() if p.get("status", {}).get("podIP")]) == 2)
    await c.objects.delete(
        c.t("batch", "jobs", "default", "work"), {"propagationPolicy": "Background"}, ADMIN
    )
    await c.converge("pods gone", lambda: not c.objs("", "pods") and not c.objs("batch", "jobs"))


async def test_a_suspended_job_stops_its_pods_and_resumes(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("batch", "jobs", job(parallelism=2, completions=2))
    await c.converge("running", lambda: len(c.pods()) == 2)
    await c.merge("batch", "jobs", "default", "work", {"spec": {"suspend": True}})

    def suspended() -> str:
        conds = status_of(c, "batch", "jobs", "work").get("conditions", [])
        return next((x["status"] for x in conds if x["type"] == "Suspended"), "")

    await c.converge("suspended", lambda: suspended() == "True" and not c.pods())
    await c.merge("batch", "jobs", "default", "work", {"spec": {"suspend": False}})
    await c.converge("resumed", lambda: suspended() == "False" and len(c.pods()) == 2)


async def test_a_finished_job_is_deleted_after_its_ttl(nodes: Nodes) -> None:
    c = nodes
    await c.add_node()
    await c.create("batch", "jobs", job(ttlSecondsAfterFinished=0))

    def succeed_all() -> None:
        for pod in c.objs("", "pods"):
            c.exit_codes[pod["metadata"]["name"]] = 0

    await watch_while(c, "deleted", lambda: not c.objs("batch", "jobs"), succeed_all)
