"""The workload and endpoint controllers running in-process on a store, as in the API server: Deployments,
ReplicaSets, the scheduler, Endpoints, EndpointSlices (selected and mirrored) and Events. The test plays the
kubelet: it registers a Node, sets pod status (IP, Ready) and finishes the deletion of terminating pods."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from isthmus.local.apiserver.admission import AdmissionChain
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.controllers.base import Controller, ControllerContext, Reconciler, SharedWorkers
from isthmus.local.apiserver.controllers.bootstrap import Bootstrap
from isthmus.local.apiserver.controllers.deployments import (
    HASH_LABEL,
    REVISION,
    REVISION_HISTORY,
    DeploymentController,
    compute_hash,
)
from isthmus.local.apiserver.controllers.endpoints import EndpointsController
from isthmus.local.apiserver.controllers.endpointslices import EndpointSliceController
from isthmus.local.apiserver.controllers.garbage import GarbageCollector
from isthmus.local.apiserver.controllers.mirroring import EndpointSliceMirroringController
from isthmus.local.apiserver.controllers.replicasets import ReplicaSetController
from isthmus.local.apiserver.controllers.scheduler import Scheduler
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import PATCH_MERGE, Objects, Target, WriteOptions
from isthmus.local.apiserver.resources import ResourceRegistry
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.store import Store
from isthmus.local.apiserver.strategies import Strategies

JsonObject = dict[str, Any]
CATALOG = SchemaCatalog.load()
ADMIN = WriteOptions(user=UserInfo("admin", groups=("system:masters",)), field_manager="test")
NODE = "node-a"
CONTROLLERS: list[type[Controller]] = [
    SharedWorkers,
    Bootstrap,
    GarbageCollector,
    DeploymentController,
    ReplicaSetController,
    Scheduler,
    EndpointsController,
    EndpointSliceController,
    EndpointSliceMirroringController,
]


class Cluster:
    """A store with the controllers running, and a fake kubelet."""

    def __init__(self, folder: Path) -> None:
        self.store = Store(None)
        strategies = Strategies(self.store, "10.96.0.0/24")
        self.objects = Objects(self.store, ResourceRegistry(), CATALOG, strategies, AdmissionChain())
        config = ApiServerConfig(
            "cluster1",
            str(folder),
            "127.0.0.1",
            6443,
            "localhost",
            "10.96.0.0/24",
            "10.244.0.0/20",
            "",
            "",
            "",
            "",
        )
        self.ctx = ControllerContext(self.objects, config)
        self.controllers = [kind(self.ctx) for kind in CONTROLLERS]
        self.tasks: list[asyncio.Task[None]] = []
        self.next_ip = 10

    async def start(self) -> None:
        for controller in self.controllers:
            await controller.prepare()
        self.store.start_history()
        self.tasks = [asyncio.create_task(c.run()) for c in self.controllers]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def t(self, group: str, plural: str, namespace: str = "", name: str = "", sub: str = "") -> Target:
        return self.ctx.target(group, plural, namespace, name, sub)

    def get(self, group: str, plural: str, namespace: str, name: str) -> JsonObject | None:
        stored = self.store.get((group, plural), namespace, name)
        return stored.obj if stored is not None else None

    def objs(self, group: str, plural: str, namespace: str = "default") -> list[JsonObject]:
        return [s.obj for s in self.store.iter_objects((group, plural), namespace)]

    def pods(self, namespace: str = "default", live: bool = True) -> list[JsonObject]:
        return [
            p
            for p in self.objs("", "pods", namespace)
            if not (live and p["metadata"].get("deletionTimestamp"))
        ]

    async def create(
        self, group: str, plural: str, body: JsonObject, namespace: str = "default"
    ) -> JsonObject:
        return (await self.objects.create(self.t(group, plural, namespace), body, ADMIN)).obj

    async def merge(
        self, group: str, plural: str, namespace: str, name: str, patch: JsonObject, sub: str = ""
    ) -> None:
        await self.objects.patch(
            self.t(group, plural, namespace, name, sub), PATCH_MERGE, orjson.dumps(patch), ADMIN
        )

    async def until(self, what: str, check: Callable[[], bool], seconds: float = 5.0) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    async def add_node(
        self, name: str = NODE, ready: bool = True, labels: dict[str, str] | None = None
    ) -> None:
        await self.create("", "nodes", {"metadata": {"name": name, "labels": labels or {}}}, namespace="")
        await self.set_node_ready(name, ready)

    async def set_node_ready(self, name: str, ready: bool) -> None:
        status = {
            "conditions": [
                {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"}
            ]
        }
        await self.merge("", "nodes", "", name, {"status": status}, "status")

    async def run_pod(self, pod: JsonObject, ready: bool = True) -> None:
        """What a kubelet does for a pod it started: phase Running, an IP, the Ready condition."""
        meta = pod["metadata"]
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            ip = f"10.244.0.{self.next_ip}"
            self.next_ip += 1
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": timestamp()},
            ],
        }
        await self.merge("", "pods", meta["namespace"], meta["name"], {"status": status}, "status")

    async def kubelet(self, ready: bool = True, namespace: str = "default") -> None:
        """Run every pod bound to the node that has no IP yet; finish deleting terminating pods."""
        for pod in self.objs("", "pods", namespace):
            if pod["spec"].get("nodeName") != NODE:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(StatusError):
                    await self.objects.delete(
                        self.t("", "pods", namespace, pod["metadata"]["name"]),
                        {"gracePeriodSeconds": 0},
                        ADMIN,
                    )
            elif not (pod.get("status") or {}).get("podIP"):
                await self.run_pod(pod, ready)

    async def converge(self, what: str, check: Callable[[], bool], seconds: float = 5.0) -> None:
        """Play the kubelet until `check` holds."""
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await self.kubelet()
            await asyncio.sleep(0.01)

    def events(self, kind: str, name: str) -> list[tuple[str, str, str, int]]:
        return [
            (e["type"], e["reason"], e["message"], e["count"])
            for e in self.objs("", "events")
            if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name
        ]


def deployment(name: str = "web", replicas: int = 3, image: str = "app:v1", **spec: Any) -> JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}
                    ]
                },
            },
            **spec,
        },
    }


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def only(items: list[JsonObject]) -> JsonObject:
    assert len(items) == 1, [i["metadata"]["name"] for i in items]
    return items[0]


def ready_replicas(c: Cluster, name: str = "web") -> int:
    d = c.get("apps", "deployments", "default", name)
    return int(((d or {}).get("status") or {}).get("readyReplicas") or 0)


def rollout_complete(c: Cluster, name: str = "web") -> bool:
    """What `kubectl rollout status` waits for."""
    d = c.get("apps", "deployments", "default", name)
    assert d is not None
    status, want = d.get("status") or {}, d["spec"]["replicas"]
    return bool(
        status.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("availableReplicas", 0) == want
    )


async def test_a_deployment_makes_a_replica_set_and_pods_bound_to_the_node(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    d = await c.create("apps", "deployments", deployment())
    await c.until("3 pods", lambda: len(c.pods()) == 3)
    rs = only(c.objs("apps", "replicasets"))
    template_hash = compute_hash(d["spec"]["template"], None)
    assert rs["metadata"]["name"] == f"web-{template_hash}"
    assert rs["metadata"]["labels"] == {"app": "web", HASH_LABEL: template_hash}
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: template_hash}
    assert rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == template_hash
    [ref] = rs["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": d["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert rs["metadata"]["annotations"][REVISION] == "1"
    await c.until("scheduled", lambda: all(p["spec"].get("nodeName") == NODE for p in c.pods()))
    for pod in c.pods():
        assert pod["metadata"]["name"].startswith(f"web-{template_hash}-")
        assert len(pod["metadata"]["name"]) == len(f"web-{template_hash}-") + 5
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert pod["metadata"]["labels"][HASH_LABEL] == template_hash
    await c.converge("2/2 ready... 3/3", lambda: ready_replicas(c) == 3)
    await c.until("complete", lambda: rollout_complete(c))
    status = c.get("apps", "deployments", "default", "web")["status"]  # type: ignore[index]
    conditions = {cond["type"]: cond for cond in status["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert c.get("apps", "deployments", "default", "web")["metadata"]["annotations"][REVISION] == "1"  # type: ignore[index]
    await c.ctx.events.flush()
    assert (
        "Normal",
        "ScalingReplicaSet",
        f"Scaled up replica set web-{template_hash} from 0 to 3",
        1,
    ) in c.events("Deployment", "web")
    rs_events = c.events("ReplicaSet", rs["metadata"]["name"])
    assert sorted(e[1] for e in rs_events) == ["SuccessfulCreate"] * 3
    pod_events = c.events("Pod", c.pods()[0]["metadata"]["name"])
    assert pod_events[0][1] == "Scheduled" and pod_events[0][2].endswith(f"to {NODE}")


async def test_scaling_down_deletes_not_ready_pods_first_then_the_newest(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=3))
    await c.converge("3 ready", lambda: ready_replicas(c) == 3)
    await c.merge("apps", "deployments", "default", "web", {"spec": {"replicas": 5}})
    await c.until("5 pods", lambda: len(c.pods()) == 5)
    await c.converge("5 ready", lambda: ready_replicas(c) == 5)
    # one of the first three stops being ready: it goes first, then the newest ready ones
    first = sorted(c.pods(), key=lambda p: p["metadata"]["creationTimestamp"])[0]
    await c.run_pod(first, ready=False)
    await c.until("4 ready", lambda: ready_replicas(c) == 4)
    newest = {p["metadata"]["name"] for p in c.pods()} - {first["metadata"]["name"]}
    await c.merge("apps", "deployments", "default", "web", {"spec": {"replicas": 4}})
    await c.converge("4 pods", lambda: len(c.pods()) == 4)
    assert first["metadata"]["name"] not in {p["metadata"]["name"] for p in c.pods()}
    assert {p["metadata"]["name"] for p in c.pods()} == newest
    await c.merge("apps", "deployments", "default", "web", {"spec": {"replicas": 1}})
    await c.converge("1 pod", lambda: len(c.objs("", "pods")) == 1)
    await c.until("1/1", lambda: rollout_complete(c))
    rs = only(c.objs("apps", "replicasets"))
    assert rs["spec"]["replicas"] == 1 and rs["status"]["replicas"] == 1
    await c.ctx.events.flush()
    deletes = [e for e in c.events("ReplicaSet", rs["metadata"]["name"]) if e[1] == "SuccessfulDelete"]
    assert len(deletes) == 4


async def test_a_template_change_rolls_out_a_new_replica_set_and_undo_brings_the_old_one_back(
    cluster: Cluster,
) -> None:
    c = cluster
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=4))
    await c.converge("v1 complete", lambda: rollout_complete(c))
    [v1] = c.objs("apps", "replicasets")
    surge_seen = 0

    def progress() -> bool:
        nonlocal surge_seen
        surge_seen = max(surge_seen, len(c.pods()))
        return rollout_complete(c) and len(c.objs("apps", "replicasets")) == 2

    await c.merge(
        "apps",
        "deployments",
        "default",
        "web",
        {
            "metadata": {"annotations": {"kubernetes.io/change-cause": "v2"}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}},
        },
    )
    await c.converge("v2 complete", progress, seconds=10)
    assert surge_seen <= 5  # 4 replicas + 25% surge
    v2 = next(rs for rs in c.objs("apps", "replicasets") if rs["metadata"]["uid"] != v1["metadata"]["uid"])
    old = c.get("apps", "replicasets", "default", v1["metadata"]["name"])
    assert old is not None and old["spec"]["replicas"] == 0
    assert v2["spec"]["replicas"] == 4 and v2["metadata"]["annotations"][REVISION] == "2"
    assert v2["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v2"
    assert all(p["spec"]["containers"][0]["image"] == "app:v2" for p in c.pods())
    # undo: the template of revision 1 again (what `kubectl rollout undo` writes)
    template = copy_template(old)
    await c.merge("apps", "deployments", "default", "web", {"spec": {"template": template}})
    await c.converge(
        "v1 again",
        lambda: (
            rollout_complete(c)
            and all(p["spec"]["containers"][0]["image"] == "app:v1" for p in c.objs("", "pods"))
        ),
        seconds=10,
    )
    back = c.get("apps", "replicasets", "default", v1["metadata"]["name"])
    assert back is not None and back["spec"]["replicas"] == 4
    assert back["metadata"]["annotations"][REVISION] == "3"
    assert back["metadata"]["annotations"][REVISION_HISTORY] == "1"
    assert len(c.objs("apps", "replicasets")) == 2


def copy_template(rs: JsonObject) -> JsonObject:
    template: JsonObject = orjson.loads(orjson.dumps(rs["spec"]["template"]))
    del template["metadata"]["labels"][HASH_LABEL]
    return template


async def test_recreate_stops_all_old_pods_before_starting_new_ones(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=2, strategy={"type": "Recreate"}))
    await c.converge("v1", lambda: rollout_complete(c))
    await c.merge(
        "apps",
        "deployments",
        "default",
        "web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}},
    )
    # the old pods are being deleted, and no new pod exists while they are there
    await c.until(
        "old pods terminating",
        lambda: all(p["metadata"].get("deletionTimestamp") for p in c.objs("", "pods")),
    )
    await asyncio.sleep(0.1)
    assert len(c.objs("apps", "replicasets")) == 1
    assert all(p["spec"]["containers"][0]["image"] == "app:v1" for p in c.objs("", "pods"))
    await c.converge("v2", lambda: rollout_complete(c) and len(c.objs("apps", "replicasets")) == 2)
    assert all(p["spec"]["containers"][0]["image"] == "app:v2" for p in c.objs("", "pods"))


async def test_a_pod_that_names_a_node_is_left_as_written_and_unschedulable_pods_wait(
    cluster: Cluster,
) -> None:
    c = cluster
    kwok = {
        "metadata": {"name": "kwok-pod", "labels": {"app": "kwok"}},
        "spec": {"nodeName": "fake-node-7", "containers": [{"name": "c", "image": "x"}]},
    }
    written = await c.create("", "pods", kwok)
    await c.create(
        "", "pods", {"metadata": {"name": "waiting"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    )
    await c.until(
        "unschedulable",
        lambda: any(
            cond.get("reason") == "Unschedulable"
            for cond in (c.get("", "pods", "default", "waiting") or {})
            .get("status", {})
            .get("conditions", [])
        ),
    )
    waiting = c.get("", "pods", "default", "waiting")
    assert waiting is not None
    [cond] = [x for x in waiting["status"]["conditions"] if x["type"] == "PodScheduled"]
    assert cond["status"] == "False" and cond["message"] == "no nodes available to schedule pods"
    await c.add_node(ready=False)
    await c.until(
        "a not-ready node's taint in the message",
        lambda: (
            "untolerated taint {node.kubernetes.io/not-ready: }"
            in str((c.get("", "pods", "default", "waiting") or {}).get("status"))
        ),
    )
    await c.set_node_ready(NODE, True)
    await c.until(
        "bound", lambda: (c.get("", "pods", "default", "waiting") or {})["spec"].get("nodeName") == NODE
    )
    bound = c.get("", "pods", "default", "waiting")
    assert bound is not None
    [cond] = [x for x in bound["status"]["conditions"] if x["type"] == "PodScheduled"]
    assert cond["status"] == "True"
    kwok_now = c.get("", "pods", "default", "kwok-pod")
    assert kwok_now is not None and kwok_now["spec"]["nodeName"] == "fake-node-7"
    assert kwok_now["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    assert "conditions" not in kwok_now["status"]
    await c.ctx.events.flush()
    reasons = [e[1] for e in c.events("Pod", "waiting")]
    assert "FailedScheduling" in reasons and "Scheduled" in reasons


SERVICE: JsonObject = {
    "metadata": {"name": "web", "labels": {"team": "a"}},
    "spec": {
        "selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "admin", "port": 9000}],
    },
}


def slices_of(c: Cluster, service: str) -> list[JsonObject]:
    return [
        s
        for s in c.objs("discovery.k8s.io", "endpointslices")
        if s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == service
    ]


async def test_endpoints_and_slices_follow_pod_readiness(cluster: Cluster) -> None:
    c = cluster
    await c.add_node(labels={"topology.kubernetes.io/zone": "zone-a"})
    service = await c.create("", "services", SERVICE)
    await c.until("placeholder slice", lambda: len(slices_of(c, "web")) == 1)
    placeholder = only(slices_of(c, "web"))
    assert placeholder["endpoints"] == [] and placeholder["ports"] == []
    await c.create("apps", "deployments", deployment(replicas=2))
    await c.converge("2 ready", lambda: ready_replicas(c) == 2)

    def addresses(kind: str) -> set[str]:
        ep = c.get("", "endpoints", "default", "web") or {}
        return {a["ip"] for s in ep.get("subsets", []) for a in s.get(kind, [])}

    await c.until("2 ready addresses", lambda: len(addresses("addresses")) == 2)
    ep = c.get("", "endpoints", "default", "web")
    assert ep is not None and ep["metadata"]["labels"] == {"team": "a"}
    [subset] = ep["subsets"]
    assert subset["ports"] == [
        {"name": "admin", "port": 9000, "protocol": "TCP"},
        {"name": "http", "port": 8080, "protocol": "TCP"},
    ]
    [ours] = slices_of(c, "web")
    assert ours["metadata"]["name"] == placeholder["metadata"]["name"]  # the placeholder was reused
    assert ours["metadata"]["labels"] == {
        "team": "a",
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
    }
    assert ours["metadata"]["ownerReferences"][0]["uid"] == service["metadata"]["uid"]
    assert ours["addressType"] == "IPv4"
    assert {p["port"] for p in ours["ports"]} == {8080, 9000}
    for endpoint in ours["endpoints"]:
        assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert endpoint["nodeName"] == NODE and endpoint["zone"] == "zone-a"
        assert endpoint["targetRef"]["kind"] == "Pod"
    pod = c.pods()[0]
    ip = pod["status"]["podIP"]
    await c.run_pod(pod, ready=False)
    await c.until("not ready address", lambda: addresses("notReadyAddresses") == {ip})
    [ours] = slices_of(c, "web")
    [endpoint] = [e for e in ours["endpoints"] if e["addresses"] == [ip]]
    assert endpoint["conditions"] == {"ready": False, "serving": False, "terminating": False}
    await c.run_pod(c.get("", "pods", "default", pod["metadata"]["name"]) or {}, ready=True)
    await c.until("ready again", lambda: ip in addresses("addresses") and not addresses("notReadyAddresses"))
    # nothing changes any more: a resync of everything rewrites nothing
    await asyncio.sleep(0.2)
    version = c.store.rv
    for controller in c.controllers:
        if isinstance(controller, Reconciler):
            for key in controller.all_keys():
                controller.enqueue(key)
    await asyncio.sleep(0.3)
    assert c.store.rv == version


async def test_a_pod_readiness_change_reaches_the_slice_in_milliseconds(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    await c.create("", "services", SERVICE)
    await c.create("apps", "deployments", deployment(replicas=1))
    await c.converge("ready", lambda: ready_replicas(c) == 1)
    await c.until("slice", lambda: any(s["endpoints"] for s in slices_of(c, "web")))
    pod = c.pods()[0]
    watcher = c.store.watch(("discovery.k8s.io", "endpointslices"), c.store.rv, lambda obj: True)
    started = time.perf_counter()
    await c.run_pod(pod, ready=False)
    event = await asyncio.wait_for(watcher.queue.get(), 1.0)
    elapsed = time.perf_counter() - started
    assert event is not None and event.obj["endpoints"][0]["conditions"]["ready"] is False
    assert elapsed < 0.05, f"{elapsed * 1000:.1f} ms"


async def test_publish_not_ready_addresses_and_headless_services(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    await c.create(
        "",
        "services",
        {
            "metadata": {"name": "db"},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {"app": "db"},
                "ports": [{"port": 5432}],
            },
        },
    )
    await c.create("apps", "deployments", deployment("db", replicas=1))
    await c.until("scheduled", lambda: any(p["spec"].get("nodeName") for p in c.pods()))
    await c.run_pod(c.pods()[0], ready=False)
    await c.until("published", lambda: bool((c.get("", "endpoints", "default", "db") or {}).get("subsets")))
    ep = c.get("", "endpoints", "default", "db")
    assert ep is not None
    assert ep["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}
    [subset] = ep["subsets"]
    assert len(subset["addresses"]) == 1 and "notReadyAddresses" not in subset
    await c.until("slice", lambda: any(s["endpoints"] for s in slices_of(c, "db")))
    [endpoint] = only(slices_of(c, "db"))["endpoints"]
    assert endpoint["conditions"] == {"ready": True, "serving": False, "terminating": False}


ISTIO_PILOT_SERVICE: JsonObject = {
    "metadata": {"name": "istio-pilot", "namespace": "istio-system"},
    "spec": {
        "clusterIP": "None",
        "ports": [
            {"name": "grpc-xds", "port": 15010},
            {"name": "https-xds", "port": 15011},
            {"name": "http-legacy-discovery", "port": 8080},
            {"name": "http-monitoring", "port": 15014},
        ],
    },
}
ISTIO_PILOT_ENDPOINTS: JsonObject = {
    "metadata": {"name": "istio-pilot", "namespace": "istio-system", "labels": {"app": "pilot"}},
    "subsets": [
        {
            "addresses": [{"ip": "10.1.16.5"}],
            "ports": [
                {"name": "grpc-xds", "port": 15010},
                {"name": "https-xds", "port": 15011},
                {"name": "http-legacy-discovery", "port": 8080},
                {"name": "http-monitoring", "port": 15014},
            ],
        }
    ],
}


async def test_hand_written_endpoints_of_a_selectorless_service_are_mirrored(cluster: Cluster) -> None:
    c = cluster
    await c.create("", "namespaces", {"metadata": {"name": "istio-system"}}, namespace="")
    await c.create("", "services", ISTIO_PILOT_SERVICE, namespace="istio-system")
    endpoints = await c.create("", "endpoints", ISTIO_PILOT_ENDPOINTS, namespace="istio-system")
    await c.until(
        "mirrored",
        lambda: len([s for s in c.objs("discovery.k8s.io", "endpointslices", "istio-system")]) == 1,
    )
    mirrored = only(c.objs("discovery.k8s.io", "endpointslices", "istio-system"))
    assert mirrored["metadata"]["name"].startswith("istio-pilot-")
    assert mirrored["metadata"]["labels"] == {
        "app": "pilot",
        "kubernetes.io/service-name": "istio-pilot",
        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io",
    }
    assert mirrored["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
    assert mirrored["metadata"]["ownerReferences"][0]["uid"] == endpoints["metadata"]["uid"]
    assert mirrored["endpoints"] == [{"addresses": ["10.1.16.5"], "conditions": {"ready": True}}]
    assert sorted(p["port"] for p in mirrored["ports"]) == [8080, 15010, 15011, 15014]
    # the hand-written Endpoints are left alone, and the `kubernetes` Endpoints are not mirrored
    assert c.get("", "endpoints", "istio-system", "istio-pilot")["subsets"] == endpoints["subsets"]  # type: ignore[index]
    assert [s["metadata"]["name"] for s in slices_of(c, "kubernetes")] == ["kubernetes"]
    # a new address is mirrored; skip-mirror removes the mirror
    await c.merge(
        "",
        "endpoints",
        "istio-system",
        "istio-pilot",
        {"subsets": [{**ISTIO_PILOT_ENDPOINTS["subsets"][0], "notReadyAddresses": [{"ip": "10.1.16.6"}]}]},
    )
    await c.until(
        "2 endpoints",
        lambda: len(only(c.objs("discovery.k8s.io", "endpointslices", "istio-system"))["endpoints"]) == 2,
    )
    await c.merge(
        "",
        "endpoints",
        "istio-system",
        "istio-pilot",
        {"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}},
    )
    await c.until("unmirrored", lambda: not c.objs("discovery.k8s.io", "endpointslices", "istio-system"))


async def test_deleting_a_deployment_collects_its_replica_sets_and_pods(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=2))
    await c.converge("ready", lambda: ready_replicas(c) == 2)
    await c.objects.delete(
        c.t("apps", "deployments", "default", "web"), {"propagationPolicy": "Background"}, ADMIN
    )
    await c.converge("collected", lambda: not c.objs("apps", "replicasets") and not c.objs("", "pods"))


async def test_a_paused_deployment_scales_but_does_not_roll_out_until_resumed(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=2))
    await c.converge("v1", lambda: rollout_complete(c))
    await c.merge("apps", "deployments", "default", "web", {"spec": {"paused": True}})

    def progressing_reason() -> str:
        d = c.get("apps", "deployments", "default", "web") or {}
        cond = next(x for x in d["status"]["conditions"] if x["type"] == "Progressing")
        return str(cond["reason"])

    await c.until("paused", lambda: progressing_reason() == "DeploymentPaused")
    await c.merge(
        "apps",
        "deployments",
        "default",
        "web",
        {"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}},
    )
    await c.converge("scaled while paused", lambda: len(c.pods()) == 3 and ready_replicas(c) == 3)
    await asyncio.sleep(0.1)
    assert len(c.objs("apps", "replicasets")) == 1
    await c.merge("apps", "deployments", "default", "web", {"spec": {"paused": False}})
    await c.converge(
        "rolled out after resume",
        lambda: rollout_complete(c) and {p["spec"]["containers"][0]["image"] for p in c.pods()} == {"app:v2"},
    )
    assert progressing_reason() == "NewReplicaSetAvailable"


async def test_a_rollout_that_makes_no_progress_times_out(cluster: Cluster) -> None:
    c = cluster
    await c.add_node()
    await c.create("apps", "deployments", deployment(replicas=1, progressDeadlineSeconds=1))
    await c.until("scheduled", lambda: any(p["spec"].get("nodeName") for p in c.pods()))
    await c.run_pod(c.pods()[0], ready=False)  # never becomes ready

    def progressing() -> JsonObject:
        d = c.get("apps", "deployments", "default", "web") or {}
        return next((x for x in d.get("status", {}).get("conditions", []) if x["type"] == "Progressing"), {})

    await c.until("timed out", lambda: progressing().get("reason") == "ProgressDeadlineExceeded", seconds=6)
    assert progressing()["status"] == "False"
    assert progressing()["message"].endswith("has timed out progressing.")


class Busy(Reconciler):
    """2,000 keys that each take 20 µs to reconcile; resyncs every 50 ms."""

    resync = 0.05

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.order: list[Any] = []
        self.resyncing = False

    def all_keys(self) -> list[Any]:
        return list(range(2000))

    async def reconcile(self, key: Any) -> None:
        self.order.append(key)
        if key == 0 and len(self.order) > 1 and not self.resyncing:  # the first resync has begun
            self.resyncing = True
            asyncio.get_running_loop().call_soon(self.enqueue, "change")
        deadline = time.perf_counter() + 20e-6
        while time.perf_counter() < deadline:
            pass


async def test_a_change_does_not_wait_for_a_resync_of_every_key(cluster: Cluster) -> None:
    busy = Busy(cluster.ctx)
    task = asyncio.create_task(busy.run())
    try:
        await cluster.until("the change", lambda: "change" in busy.order)
        resync = busy.order[2000:]
        assert resync.index("change") < 500, f"the change came after {resync.index('change')} resync keys"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
