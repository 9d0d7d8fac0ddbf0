"""The controllers of a local cluster driven by the real kubectl: Deployments, ReplicaSets, the scheduler,
Endpoints, EndpointSlices (selected and mirrored) and Events.

No kubelet serves these pods: the test plays one, as KWOK-style benchmarks do. It registers a Node of its own
(`fake-node`, which the test's pods select), and for each pod bound to it sets the status a kubelet would (phase
Running, an IP from the cluster's pod CIDR, the Ready condition) and finishes the deletion of terminating ones.
The cluster's own node process, if any, never sees these pods.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from lightkube import ALL_NS, ApiError, Client, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from isthmus.local.apiserver.config import ApiServerConfig
from tests.e2e.localkit import Kubectl, LocalClusters

NS = "shop"
NODE = "fake-node"
ZONE = "zone-a"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      nodeSelector: {isthmus.test/fake-node: "true"}
      containers:
      - name: app
        image: registry.example/web:v1
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
"""

ISTIO_PILOT = """\
apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
---
apiVersion: v1
kind: Service
metadata:
  name: istio-pilot
  namespace: istio-system
spec:
  ports:
  - port: 15010
    name: grpc-xds # direct
  - port: 15011
    name: https-xds # mTLS
  - port: 8080
    name: http-legacy-discovery # direct
  - port: 15014
    name: http-monitoring
  clusterIP: None
---
apiVersion: v1
kind: Endpoints
metadata:
  name: istio-pilot
  namespace: istio-system
subsets:
- addresses:
  - ip: {address}
  ports:
  - port: 15010
    name: grpc-xds # direct
  - port: 15011
    name: https-xds # mTLS
  - port: 8080
    name: http-legacy-discovery # direct
  - port: 15014
    name: http-monitoring
"""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(what: str, check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.1)


class FakeKubelet:
    """What a kubelet would write for the pods bound to `fake-node`, done from the test."""

    def __init__(self, kubeconfig: str, pod_cidr: str) -> None:
        self.client = Client(config=KubeConfig.from_file(kubeconfig), field_manager="fake-kubelet")
        network = ipaddress.ip_network(pod_cidr)
        # from the top of the CIDR down: the cluster's own node allocates from the bottom
        self._free = (str(network[-2 - i]) for i in range(network.num_addresses - 2))
        self._ips: dict[str, str] = {}
        self._not_ready: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def register(self) -> None:
        labels = {"isthmus.test/fake-node": "true", "topology.kubernetes.io/zone": ZONE}
        self.client.create(Node(metadata=ObjectMeta(name=NODE, labels=labels)))
        status = {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake"}]
        }
        self.client.patch(Node.Status, NODE, {"status": status}, patch_type=PatchType.MERGE)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(ApiError, OSError):
                self.step()
            self._stop.wait(0.1)

    def status(self, name: str, ip: str) -> dict[str, Any]:
        ready = "False" if name in self._not_ready else "True"
        return {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "10.0.0.1",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now()},
                {"type": "Ready", "status": ready, "lastTransitionTime": now()},
            ],
        }

    def step(self) -> None:
        with self._lock:
            for pod in self.client.list(Pod, namespace=ALL_NS, fields={"spec.nodeName": NODE}):
                meta = pod.metadata
                assert meta is not None and meta.name is not None and meta.namespace is not None
                if meta.deletionTimestamp is not None:
                    self.client.delete(Pod, meta.name, namespace=meta.namespace, grace_period=0)
                    continue
                if pod.status is not None and pod.status.podIP:
                    continue
                ip = self._ips.setdefault(f"{meta.namespace}/{meta.name}", next(self._free))
                self.client.patch(
                    Pod.Status,
                    meta.name,
                    {"status": self.status(meta.name, ip)},
                    namespace=meta.namespace,
                    patch_type=PatchType.MERGE,
                )

    def set_ready(self, namespace: str, name: str, ready: bool) -> None:
        with self._lock:
            (self._not_ready.discard if ready else self._not_ready.add)(name)
            ip = self._ips[f"{namespace}/{name}"]
            self.client.patch(
                Pod.Status,
                name,
                {"status": self.status(name, ip)},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )


@pytest.fixture(scope="module")
def kubelet(clusters: LocalClusters) -> Iterator[FakeKubelet]:
    config = ApiServerConfig.load(clusters.folder / "cluster1" / "config.json")
    fake = FakeKubelet(str(clusters.kubeconfig), config.pod_cidr)
    fake.register()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def web(kubectl: Kubectl, kubelet: FakeKubelet) -> str:
    """The `web` Deployment and Service, applied once for the module."""
    kubectl("create", "namespace", NS)
    kubectl("apply", "-f", "-", stdin=DEPLOYMENT)
    return "web"


def get_json(kubectl: Kubectl, *args: str, context: str = "cluster1") -> Any:
    return json.loads(kubectl("get", *args, "-o", "json", context=context))


def pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(kubectl, "pods", "-n", NS, "-l", "app=web")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def rollout_status(kubectl: Kubectl) -> None:
    kubectl.run("rollout", "status", "deployment/web", "-n", NS, "--timeout=60s", timeout=90)


def test_apply_makes_one_replica_set_and_three_pods_bound_to_the_node(kubectl: Kubectl, web: str) -> None:
    wait_for("3 pods on the node", lambda: [p["spec"].get("nodeName") for p in pods(kubectl)] == [NODE] * 3)
    [rs] = get_json(kubectl, "replicasets", "-n", NS)["items"]
    template_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{template_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": template_hash}
    [owner] = rs["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "Deployment",
        "web",
        True,
        True,
    )
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    for pod in pods(kubectl):
        assert pod["metadata"]["name"].startswith(f"web-{template_hash}-")
        assert len(pod["metadata"]["name"]) == len(f"web-{template_hash}-") + 5
        scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert scheduled and scheduled[0]["status"] == "True"
    rollout_status(kubectl)
    table = kubectl("get", "deploy", "web", "-n", NS, "--no-headers")
    assert table.split()[1] == "3/3", table


def test_scale_to_five_then_to_one(kubectl: Kubectl, web: str) -> None:
    kubectl("scale", "deployment/web", "-n", NS, "--replicas=5")
    wait_for("5 pods", lambda: len(pods(kubectl)) == 5)
    rollout_status(kubectl)
    assert kubectl("get", "deploy", "web", "-n", NS, "--no-headers").split()[1] == "5/5"
    kubectl("scale", "deployment/web", "-n", NS, "--replicas=1")
    wait_for("1 pod", lambda: len(get_json(kubectl, "pods", "-n", NS, "-l", "app=web")["items"]) == 1)
    rollout_status(kubectl)
    [rs] = get_json(kubectl, "replicasets", "-n", NS)["items"]
    assert rs["spec"]["replicas"] == 1 and rs["status"]["replicas"] == 1
    kubectl("scale", "deployment/web", "-n", NS, "--replicas=3")
    rollout_status(kubectl)


def test_rollout_status_history_and_undo(kubectl: Kubectl, web: str) -> None:
    kubectl("set", "image", "deployment/web", "-n", NS, "app=registry.example/web:v2")
    rollout_status(kubectl)
    images = {p["spec"]["containers"][0]["image"] for p in pods(kubectl)}
    assert images == {"registry.example/web:v2"}
    history = kubectl("rollout", "history", "deployment/web", "-n", NS)
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"], history
    kubectl("rollout", "undo", "deployment/web", "-n", NS)
    rollout_status(kubectl)
    assert {p["spec"]["containers"][0]["image"] for p in pods(kubectl)} == {"registry.example/web:v1"}
    history = kubectl("rollout", "history", "deployment/web", "-n", NS)
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"], history
    replica_sets = get_json(kubectl, "replicasets", "-n", NS)["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replica_sets) == [0, 3]


def test_readiness_moves_addresses_and_flips_slice_conditions(
    kubectl: Kubectl, web: str, kubelet: FakeKubelet, clusters: LocalClusters
) -> None:
    rollout_status(kubectl)
    target = pods(kubectl)[0]
    name, ip = target["metadata"]["name"], target["status"]["podIP"]

    def endpoints() -> dict[str, set[str]]:
        ep = get_json(kubectl, "endpoints", "web", "-n", NS)
        return {
            kind: {
                f"{a['ip']}:{s['ports'][0]['port']}" for s in ep.get("subsets", []) for a in s.get(kind, [])
            }
            for kind in ("addresses", "notReadyAddresses")
        }

    wait_for("3 ready addresses", lambda: len(endpoints()["addresses"]) == 3)
    assert f"{ip}:8080" in endpoints()["addresses"]  # targetPort "http" is the container's port 8080
    [ours] = get_json(kubectl, "endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=web")["items"]
    labels = ours["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert ours["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    [endpoint] = [e for e in ours["endpoints"] if e["addresses"] == [ip]]
    assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert (endpoint["nodeName"], endpoint["zone"], endpoint["targetRef"]["name"]) == (NODE, ZONE, name)

    latencies = measure_slice_latency(clusters, kubelet, name, ip)
    print(
        f"\npod readiness -> EndpointSlice: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} changes (patch sent -> watch event)"
    )
    assert statistics.median(latencies) < 0.25

    kubelet.set_ready(NS, name, False)
    wait_for("not ready", lambda: endpoints()["notReadyAddresses"] == {f"{ip}:8080"})
    assert f"{ip}:8080" not in endpoints()["addresses"]
    [ours] = get_json(kubectl, "endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=web")["items"]
    [endpoint] = [e for e in ours["endpoints"] if e["addresses"] == [ip]]
    assert endpoint["conditions"] == {"ready": False, "serving": False, "terminating": False}
    kubelet.set_ready(NS, name, True)
    wait_for("ready again", lambda: f"{ip}:8080" in endpoints()["addresses"])


def measure_slice_latency(clusters: LocalClusters, kubelet: FakeKubelet, name: str, ip: str) -> list[float]:
    """Flip the pod's readiness 10 times; each time, how long from sending the status until a watch of the
    Service's EndpointSlices shows it."""
    client = Client(config=KubeConfig.from_file(str(clusters.kubeconfig)))
    watching, done = threading.Event(), threading.Event()
    expected: list[tuple[bool, threading.Event]] = []

    def watch() -> None:
        selector: dict[str, Any] = {"kubernetes.io/service-name": "web"}
        for _, obj in client.watch(EndpointSlice, namespace=NS, labels=selector, server_timeout=60):
            watching.set()
            if done.is_set():
                return
            if not expected:
                continue
            ready, seen = expected[-1]
            for endpoint in obj.endpoints or []:
                conditions = endpoint.conditions
                if endpoint.addresses == [ip] and conditions is not None and conditions.ready == ready:
                    seen.set()

    threading.Thread(target=watch, daemon=True).start()
    assert watching.wait(10), "the slice watch did not start"
    latencies = []
    for i in range(10):
        ready = i % 2 == 1
        seen = threading.Event()
        expected.append((ready, seen))
        started = time.monotonic()
        kubelet.set_ready(NS, name, ready)
        assert seen.wait(5), f"the slice did not show ready={ready}"
        latencies.append(time.monotonic() - started)
    done.set()
    return latencies


def test_selectorless_istio_pilot_endpoints_are_mirrored(kubectl: Kubectl, clusters: LocalClusters) -> None:
    # as the seed's remote install does: the primary's pilot pod address, in the other cluster's pod CIDR
    primary = ApiServerConfig.load(clusters.folder / "cluster2" / "config.json")
    address = str(ipaddress.ip_network(primary.pod_cidr)[7])
    kubectl("apply", "-f", "-", stdin=ISTIO_PILOT.replace("{address}", address))

    def mirrored() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = get_json(
            kubectl, "endpointslices", "-n", "istio-system", "-l", "kubernetes.io/service-name=istio-pilot"
        )["items"]
        return items

    wait_for("the mirrored slice", lambda: len(mirrored()) == 1)
    [mirror] = mirrored()
    assert mirror["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        "endpointslicemirroring-controller.k8s.io"
    )
    assert mirror["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
    assert mirror["addressType"] == "IPv4"
    assert mirror["endpoints"] == [{"addresses": [address], "conditions": {"ready": True}}]
    assert sorted((p["name"], p["port"]) for p in mirror["ports"]) == [
        ("grpc-xds", 15010),
        ("http-legacy-discovery", 8080),
        ("http-monitoring", 15014),
        ("https-xds", 15011),
    ]
    # the hand-written Endpoints stay as written
    endpoints = get_json(kubectl, "endpoints", "istio-pilot", "-n", "istio-system")
    assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == [address]
    # the `kubernetes` Service's Endpoints carry skip-mirror: only the API server's own slice exists for it
    kubernetes = get_json(
        kubectl, "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes"
    )
    assert [s["metadata"]["name"] for s in kubernetes["items"]] == ["kubernetes"]


def test_pods_naming_a_node_are_left_alone_and_unschedulable_pods_say_why(
    kubectl: Kubectl, kubelet: FakeKubelet
) -> None:
    kwok = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kwok-0", "namespace": NS},
        "spec": {"nodeName": "kwok-node-0", "containers": [{"name": "c", "image": "registry.example/c"}]},
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(kwok))
    status = {"phase": "Running", "podIP": "10.99.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
    kubectl(
        "patch",
        "pod",
        "kwok-0",
        "-n",
        NS,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    written = get_json(kubectl, "pod", "kwok-0", "-n", NS)
    lonely = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "lonely", "namespace": NS},
        "spec": {
            "nodeSelector": {"no": "such-node"},
            "containers": [{"name": "c", "image": "registry.example/c"}],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(lonely))

    def scheduled_condition() -> dict[str, Any]:
        pod = get_json(kubectl, "pod", "lonely", "-n", NS)
        return next((c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled"), {})

    wait_for("Unschedulable", lambda: scheduled_condition().get("reason") == "Unschedulable")
    message = scheduled_condition()["message"]
    assert message.startswith("0/") and "node(s) didn't match Pod's node affinity/selector" in message, (
        message
    )
    wait_for("FailedScheduling", lambda: "FailedScheduling" in kubectl("describe", "pod", "lonely", "-n", NS))
    assert not get_json(kubectl, "pod", "lonely", "-n", NS)["spec"].get("nodeName")
    now_kwok = get_json(kubectl, "pod", "kwok-0", "-n", NS)
    assert now_kwok["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    assert now_kwok["spec"]["nodeName"] == "kwok-node-0" and now_kwok["status"] == written["status"]
    kubectl("delete", "pod", "lonely", "kwok-0", "-n", NS, "--grace-period=0", "--force")


def test_describe_shows_the_controllers_events(kubectl: Kubectl, web: str) -> None:
    deploy = kubectl("describe", "deployment", "web", "-n", NS)
    assert "ScalingReplicaSet" in deploy and "deployment-controller" in deploy, deploy
    assert "Scaled up replica set web-" in deploy and "Scaled down replica set web-" in deploy, deploy
    rs_name = next(
        rs["metadata"]["name"]
        for rs in get_json(kubectl, "replicasets", "-n", NS)["items"]
        if rs["spec"]["replicas"]
    )
    described = kubectl("describe", "replicaset", rs_name, "-n", NS)
    assert "SuccessfulCreate" in described and "replicaset-controller" in described, described
    pod_name = pods(kubectl)[0]["metadata"]["name"]
    described = kubectl("describe", "pod", pod_name, "-n", NS)
    assert "Scheduled" in described and f"Successfully assigned {NS}/{pod_name} to {NODE}" in described, (
        described
    )
    events = kubectl("get", "events", "-n", NS)
    assert "SuccessfulDelete" in events, events


def test_deleting_the_deployment_removes_its_replica_sets_and_pods(kubectl: Kubectl, web: str) -> None:
    kubectl("delete", "deployment", "web", "-n", NS)
    wait_for(
        "replica sets and pods gone",
        lambda: (
            not get_json(kubectl, "replicasets", "-n", NS)["items"]
            and not get_json(kubectl, "pods", "-n", NS, "-l", "app=web")["items"]
        ),
    )
    # the Service stays, with no endpoints now
    ep = get_json(kubectl, "endpoints", "web", "-n", NS)
    assert not ep.get("subsets")
