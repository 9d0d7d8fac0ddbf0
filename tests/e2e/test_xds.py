"""Envoy sidecars and proxyless gRPC clients in two local clusters, configured by `isthmus discovery` running as
the istio-pilot Deployment in cluster1 (cluster2 registered by the seed's Secret, reaching the pilot through its
selector-less istio-pilot Service). Pods carry the sidecar as injection will write it: iptables capture in an
init container, the app, `isthmus agent` as uid 1337 running the real Envoy.

Traffic is observed from inside the client pods (curl through their sidecars); the control plane through
`isthmus proxy-status` and its debug and metrics endpoints read through the API server's pod proxy. The tests
share one run and leave the mesh as they found it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import meshkit
from tests.e2e.localkit import Kubectl, LocalClusters, isthmus_command
from tests.e2e.seedkit import (
    NAMESPACE,
    SAMPLES,
    generate_remote_kubeconfig,
    instantiate_credentials,
    wait_until,
)

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "fixtures"
HELLO_URL = "http://helloworld.sample:5000/hello"
ECHO_URL = "http://echo.sample:8000/"
JsonObject = dict[str, Any]


@pytest.fixture(scope="module")
def kc(kubectl: Kubectl) -> Kubectl:
    """kubectl on the module's two clusters (conftest's `clusters`)."""
    return kubectl


def python_container(name: str, script: str, *args: str, env: dict[str, str] | None = None) -> JsonObject:
    """A container of the generic image running one of this folder's scripts with this Python."""
    return {
        "name": name,
        "image": meshkit.GENERIC_IMAGE,
        "command": [sys.executable, str(FIXTURES / script), *args],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }


@pytest.fixture(scope="module")
def mesh(kc: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The control plane in cluster1, cluster2 registered; helloworld v1 (cluster1) and v2 (cluster2), echo in
    both, and sleep in both, all with sidecars. Returns the pilot pod's name."""
    pilot = meshkit.install_primary(kc)
    meshkit.install_remote(kc, "cluster2", pilot)
    remote = generate_remote_kubeconfig(kc, "cluster2", tmp_path_factory.mktemp("seed-work"))
    instantiate_credentials(kc, remote.path)
    docs = list(yaml.safe_load_all((SAMPLES / "helloworld.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    versions = {d["metadata"]["labels"]["version"]: d for d in docs if d["kind"] == "Deployment"}
    for context, version in (("cluster1", "v1"), ("cluster2", "v2")):
        kc("create", "namespace", "sample", context=context)
        echo = meshkit.deployment(
            "echo", {"app": "echo"}, python_container("echo", "flaky_echo.py", "8000", env={"NAME": context})
        )
        sleep = meshkit.deployment(
            "sleep",
            {"app": "sleep"},
            {"name": "sleep", "image": "curlimages/curl", "command": ["sleep", "3650d"]},
        )
        objects = [
            service,
            meshkit.service("echo", 8000, "http", {"app": "echo"}),
            meshkit.with_sidecar(versions[version]),
            meshkit.with_sidecar(echo),
            meshkit.with_sidecar(sleep),
        ]
        for obj in objects:
            kc("apply", "-n", "sample", "-f", "-", stdin=json.dumps(obj), context=context)
    for context, names in (
        ("cluster1", ("helloworld-v1", "echo", "sleep")),
        ("cluster2", ("helloworld-v2", "echo", "sleep")),
    ):
        for name in names:
            kc("rollout", "status", f"deployment/{name}", "-n", "sample", "--timeout=120s", context=context)
    return kc("get", "pod", "-n", NAMESPACE, "-l", "istio=pilot", "-o", "jsonpath={.items[0].metadata.name}")


# -- observing ------------------------------------------------------------------------------------------------


def curl(kc: Kubectl, *args: str, context: str = "cluster1") -> str:
    return kc(
        "exec", "-n", "sample", "deploy/sleep", "-c", "sleep", "--", "curl", "-sS", *args, context=context
    )


def envoy_admin(kc: Kubectl, path: str) -> str:
    """A page of the sleep pod's Envoy admin (127.0.0.1:15000, from inside its sidecar container)."""
    return kc(
        "exec",
        "-n",
        "sample",
        "deploy/sleep",
        "-c",
        "istio-proxy",
        "--",
        "curl",
        "-s",
        f"localhost:15000/{path}",
    )


def answers(out: str) -> list[tuple[str, str]]:
    """(body, status) of each response printed by `curl -w "<<%{http_code}>>"`."""
    return [(body.strip(), code) for body, code in re.findall(r"(.*?)<<(\d+)>>", out, re.DOTALL)]


def hello_counts(kc: Kubectl, n: int, context: str = "cluster1", rate: str = "") -> Counter[str]:
    """`n` requests to helloworld from the sleep pod; counts of "v1" / "v2" / "HTTP <code>" answers."""
    extra = ["--rate", rate] if rate else []
    out = curl(kc, *extra, "-w", "<<%{http_code}>>", f"{HELLO_URL}?[1-{n}]", context=context)
    counts: Counter[str] = Counter()
    for body, code in answers(out):
        version = re.search(r"Hello version: (v\d)", body)
        if code != "200":
            counts[f"HTTP {code}"] += 1
        elif version:
            counts[version.group(1)] += 1
        else:
            counts[f"unexpected: {body!r}"] += 1
    return counts


def echo_answers(kc: Kubectl, n: int) -> list[str]:
    """`n` requests to echo from cluster1's sleep pod: "<cluster> [<status>]" each."""
    out = curl(kc, "-w", "<<%{http_code}>>", f"{ECHO_URL}?[1-{n}]")
    return [f"{body.split()[0] if body else ''} [{code}]" for body, code in answers(out)]


def pilot_get(kc: Kubectl, pilot: str, port: int, path: str) -> str:
    return kc("get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{pilot}:{port}/proxy/{path.lstrip('/')}")


def syncz(kc: Kubectl, pilot: str) -> list[JsonObject]:
    proxies: list[JsonObject] = json.loads(pilot_get(kc, pilot, 8080, "debug/syncz"))["proxies"]
    return proxies


def proxy_of(kc: Kubectl, pilot: str, app: str, cluster: str) -> JsonObject:
    return next(p for p in syncz(kc, pilot) if p["pod"].startswith(f"{app}-") and p["cluster"] == cluster)


def metric(kc: Kubectl, pilot: str, name: str) -> float:
    text = pilot_get(kc, pilot, 15014, "metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def proxy_status(clusters: LocalClusters) -> list[list[str]]:
    result = subprocess.run(
        [
            isthmus_command(),
            "proxy-status",
            "--kubeconfig",
            str(clusters.kubeconfig),
            "--context",
            "cluster1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.splitlines()]


def all_synced(clusters: LocalClusters, expected: int) -> bool:
    """Whether proxy-status lists `expected` proxies, all SYNCED (else AssertionError shows the table)."""
    rows = proxy_status(clusters)[1:]
    assert len(rows) >= expected and all(row[2:6] == ["SYNCED"] * 4 for row in rows), rows
    return True


def apply(kc: Kubectl, obj: JsonObject) -> None:
    kc("apply", "-f", "-", stdin=json.dumps(obj))


def istio(kind: str, name: str, spec: JsonObject) -> JsonObject:
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": kind,
        "metadata": {"name": name, "namespace": "sample"},
        "spec": spec,
    }


class Load(threading.Thread):
    """helloworld requests at a steady rate from the sleep pod, in the background."""

    def __init__(self, kc: Kubectl, n: int, rate: str = "50/s") -> None:
        super().__init__(daemon=True)
        self.kc, self.n, self.rate = kc, n, rate
        self.counts: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.counts = hello_counts(self.kc, self.n, rate=self.rate)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def result(self) -> Counter[str]:
        self.join(120)
        if self.error is not None:
            raise self.error
        return self.counts


# -- tests ----------------------------------------------------------------------------------------------------


def test_sidecars_route_to_endpoints_in_both_clusters(
    kc: Kubectl, mesh: str, clusters: LocalClusters
) -> None:
    counts = hello_counts(kc, 40)
    assert set(counts) == {"v1", "v2"}, counts  # cluster1's v1 and cluster2's v2, through the client's Envoy
    from_remote = hello_counts(kc, 40, context="cluster2")
    assert set(from_remote) == {"v1", "v2"}, from_remote
    wait_until("every proxy SYNCED in proxy-status", lambda: all_synced(clusters, 6), 30)
    header, *proxies = proxy_status(clusters)
    assert header[:6] == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS"]
    # cluster2's sidecars claim the primary's CLUSTER_ID, as the seed's remotes do: the registry decides
    assert {row[1] for row in proxies if row[0].startswith("helloworld-v2")} == {"cluster2"}, proxies
    assert {row[1] for row in proxies if row[0].startswith("helloworld-v1")} == {"cluster1"}, proxies
    stats = envoy_admin(kc, "stats")
    assert re.search(
        r"cluster\.outbound\|5000\|\|helloworld\.sample\.svc\.cluster\.local\.upstream_rq_total: [1-9]", stats
    )


def test_removing_one_clusters_endpoints_under_load_fails_no_request(kc: Kubectl, mesh: str) -> None:
    load = Load(kc, 400)
    load.start()
    try:
        time.sleep(2)
        kc("scale", "deployment", "helloworld-v2", "-n", "sample", "--replicas=0", context="cluster2")
        counts = load.result()
        assert counts["v1"] + counts["v2"] == 400, f"failed requests: {counts}"
        assert counts["v2"] > 0, counts
        after = hello_counts(kc, 20)
        assert after == Counter({"v1": 20}), after
    finally:
        kc("scale", "deployment", "helloworld-v2", "-n", "sample", "--replicas=1", context="cluster2")
        kc(
            "rollout",
            "status",
            "deployment/helloworld-v2",
            "-n",
            "sample",
            "--timeout=120s",
            context="cluster2",
        )
    wait_until("v2 answering again", lambda: "v2" in hello_counts(kc, 10), 30)


def test_virtual_service_weights_split_1000_requests(kc: Kubectl, mesh: str) -> None:
    subsets = [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]
    route = [
        {"destination": {"host": "helloworld", "subset": "v1"}, "weight": 80},
        {"destination": {"host": "helloworld", "subset": "v2"}, "weight": 20},
    ]
    apply(kc, istio("DestinationRule", "helloworld", {"host": "helloworld", "subsets": subsets}))
    apply(kc, istio("VirtualService", "helloworld", {"hosts": ["helloworld"], "http": [{"route": route}]}))
    try:
        wait_until("the split in effect", lambda: hello_counts(kc, 30)["v1"] >= 18, 30)
        counts = hello_counts(kc, 1000)
        assert counts["v1"] + counts["v2"] == 1000, counts
        assert 750 <= counts["v1"] <= 850, counts  # 80 % within +-5 %
        print(f"\n[weights] 80/20 over 1,000 requests: {dict(counts)}")
    finally:
        kc("delete", "virtualservice", "helloworld", "-n", "sample")
        kc("delete", "destinationrule", "helloworld", "-n", "sample")


def test_a_config_envoy_rejects_is_counted_and_the_rest_keeps_working(
    kc: Kubectl, mesh: str, clusters: LocalClusters
) -> None:
    """A regex Python accepts but Envoy's RE2 does not: the route is NACKed; traffic keeps its last config."""
    before = metric(kc, mesh, "isthmus_xds_rejects_total")
    bad_match = [{"uri": {"regex": "/hello(?=x)"}}]
    vs = {
        "hosts": ["helloworld"],
        "http": [{"match": bad_match, "route": [{"destination": {"host": "helloworld"}}]}],
    }
    apply(kc, istio("VirtualService", "helloworld-bad", vs))
    try:
        sleep = wait_until(
            "the sleep proxy's NACK of RDS",
            lambda: (p := proxy_of(kc, mesh, "sleep", "cluster1"))["types"]["RDS"]["nacks"] and p,
            30,
        )
        assert (
            "(?=" in sleep["types"]["RDS"]["last_error"]
            or "regex" in sleep["types"]["RDS"]["last_error"].lower()
        )
        assert metric(kc, mesh, "isthmus_xds_rejects_total") > before
        counts = hello_counts(kc, 40)
        assert set(counts) == {"v1", "v2"}, counts  # the last accepted routes still serve
        assert {"v1", "v2"} == set(hello_counts(kc, 40, context="cluster2"))
        rows = {row[0]: row for row in proxy_status(clusters)[1:]}
        sleep_row = next(
            row for name, row in rows.items() if name.startswith("sleep") and row[1] == "cluster1"
        )
        assert sleep_row[5] == "STALE" and sleep_row[2] == "SYNCED", sleep_row
    finally:
        kc("delete", "virtualservice", "helloworld-bad", "-n", "sample")
    wait_until("RDS accepted again", lambda: all_synced(clusters, 6), 30)


def test_locality_failover_prefers_the_own_cluster_and_comes_back(kc: Kubectl, mesh: str) -> None:
    policy = {
        "loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"enabled": True}},
        "outlierDetection": {
            "consecutive5xxErrors": 1,
            "interval": "1s",
            "baseEjectionTime": "5s",
            "maxEjectionPercent": 100,
        },
    }
    apply(kc, istio("DestinationRule", "echo", {"host": "echo", "trafficPolicy": policy}))
    pod_ip = kc("get", "pod", "-n", "sample", "-l", "app=echo", "-o", "jsonpath={.items[0].status.podIP}")
    try:
        wait_until(
            "only cluster1's echo answering", lambda: set(echo_answers(kc, 20)) == {"cluster1 [200]"}, 30
        )
        curl(kc, "-X", "POST", f"http://{pod_ip}:8000/fail")
        answers = echo_answers(kc, 30)
        assert answers[-10:] == ["cluster2 [200]"] * 10, answers  # ejected: over to the other cluster
        print(f"\n[failover] while cluster1's echo fails: {Counter(answers)}")
        curl(kc, "-X", "POST", f"http://{pod_ip}:8000/heal")
        back = wait_until("cluster1's echo back", lambda: set(echo_answers(kc, 10)) == {"cluster1 [200]"}, 30)
        assert back
    finally:
        curl(kc, "-X", "POST", f"http://{pod_ip}:8000/heal")
        kc("delete", "destinationrule", "echo", "-n", "sample")


def test_a_grpc_client_reaches_servers_in_both_clusters(kc: Kubectl, mesh: str) -> None:
    pilot_ip = meshkit.pilot_ip(kc)
    for context in ("cluster1", "cluster2"):
        server = meshkit.deployment(
            "grpc-echo",
            {"app": "grpc-echo"},
            python_container("server", "grpc_echo.py", "server", "7070", env={"NAME": context}),
        )
        kc("apply", "-f", "-", stdin=json.dumps(server), context=context)
        kc(
            "apply",
            "-f",
            "-",
            stdin=json.dumps(meshkit.service("grpc-echo", 7070, "grpc", {"app": "grpc-echo"})),
            context=context,
        )
    client = python_container(
        "client", "grpc_echo.py", "server", "7071", env={"NAME": "client", "XDS_ADDRESS": f"{pilot_ip}:15010"}
    )
    client["env"] += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    kc(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(meshkit.deployment("grpc-client", {"app": "grpc-client"}, client)),
    )
    try:
        for context in ("cluster1", "cluster2"):
            kc("rollout", "status", "deployment/grpc-echo", "-n", "sample", "--timeout=120s", context=context)
        kc("rollout", "status", "deployment/grpc-client", "-n", "sample", "--timeout=120s")
        out = kc(
            "exec",
            "-n",
            "sample",
            "deploy/grpc-client",
            "--",
            sys.executable,
            str(FIXTURES / "grpc_echo.py"),
            "client",
            "xds:///grpc-echo.sample.svc.cluster.local:7070",
            "40",
        )
        result = json.loads(out.strip().splitlines()[-1])
        assert set(result["seen"]) == {"cluster1", "cluster2"}, result
        assert sum(result["seen"].values()) == 40
        print(f"\n[proxyless] 40 calls over xds:///: {result}")
    finally:
        kc("delete", "deployment", "grpc-client", "-n", "sample")
        for context in ("cluster1", "cluster2"):
            kc("delete", "deployment,service", "grpc-echo", "-n", "sample", context=context)


def test_a_restarted_discovery_process_leaves_traffic_flowing(
    kc: Kubectl, mesh: str, clusters: LocalClusters
) -> None:
    """The discovery container restarts in place (same pod, same address); Envoys keep their config, reconnect
    and resync; a change made afterwards reaches them."""
    load = Load(kc, 300)
    load.start()
    time.sleep(1)
    kc("exec", "-n", NAMESPACE, mesh, "--", "sh", "-c", "kill $(pgrep -f '[p]ython.*isthmus discovery')")
    counts = load.result()
    assert counts["v1"] + counts["v2"] == 300, f"failed requests during the restart: {counts}"
    restarts = kc(
        "get", "pod", mesh, "-n", NAMESPACE, "-o", "jsonpath={.status.containerStatuses[0].restartCount}"
    )
    assert int(restarts) >= 1
    wait_until("every proxy SYNCED with the restarted pilot", lambda: all_synced(clusters, 6), 60)
    kc("scale", "deployment", "helloworld-v2", "-n", "sample", "--replicas=2", context="cluster2")
    try:
        kc(
            "rollout",
            "status",
            "deployment/helloworld-v2",
            "-n",
            "sample",
            "--timeout=120s",
            context="cluster2",
        )
        wanted = set(
            kc(
                "get",
                "pods",
                "-n",
                "sample",
                "-l",
                "app=helloworld,version=v2",
                "-o",
                "jsonpath={.items[*].status.podIP}",
                context="cluster2",
            ).split()
        )

        def envoy_knows_both() -> bool:
            clusters = envoy_admin(kc, "clusters")
            return all(
                f"outbound|5000||helloworld.sample.svc.cluster.local::{ip}:5000::" in clusters
                for ip in wanted
            )

        wait_until("the new v2 endpoint in the client's Envoy", envoy_knows_both, 30)
    finally:
        kc("scale", "deployment", "helloworld-v2", "-n", "sample", "--replicas=1", context="cluster2")
