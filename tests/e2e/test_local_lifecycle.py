"""`isthmus local`: state across down/up, one cluster stopped and started, two runs side by side, recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.localkit import Kubectl, LocalClusters, isthmus_command


def _hosts_lines(run_marker: str) -> list[str]:
    return [line for line in Path("/etc/hosts").read_text().splitlines() if run_marker in line]


def _run_id(clusters: LocalClusters) -> str:
    return str(json.loads((clusters.folder / "run.json").read_text())["id"])


def test_state_survives_down_and_up(clusters: LocalClusters, kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "keep")
    kubectl("create", "configmap", "kept", "-n", "keep", "--from-literal", "k=v")
    uid = kubectl("get", "configmap", "kept", "-n", "keep", "-o", "jsonpath={.metadata.uid}")
    run_id = _run_id(clusters)
    clusters.down()
    assert not _hosts_lines(f"isthmus-local {run_id}"), "down removes the run's /etc/hosts lines"
    assert (
        f"isthmus-{run_id}-fabric"
        not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    )
    gone = kubectl.run("get", "ns", check=False, timeout=20)
    assert gone.code != 0, "with the run down, its API server name does not resolve"
    clusters.up()
    assert kubectl("get", "configmap", "kept", "-n", "keep", "-o", "jsonpath={.metadata.uid}") == uid
    assert kubectl("get", "configmap", "kept", "-n", "keep", "-o", "jsonpath={.data.k}") == "v"


def test_stop_one_cluster_leaves_the_other_serving(clusters: LocalClusters, kubectl: Kubectl) -> None:
    kubectl(
        "create", "configmap", "before-stop", "-n", "default", "--from-literal", "a=1", context="cluster2"
    )
    clusters.cli("stop", "cluster2")
    status = clusters.cli("status").stdout
    assert "cluster1   ready" in status and "cluster2   stopped" in status
    assert "kube-system" in kubectl("get", "ns", context="cluster1")
    refused = kubectl.run("get", "ns", context="cluster2", check=False, timeout=20)
    assert refused.code != 0 and "connection refused" in refused.err
    clusters.cli("start", "cluster2")
    value = kubectl(
        "get", "configmap", "before-stop", "-n", "default", "-o", "jsonpath={.data.a}", context="cluster2"
    )
    assert value == "1"


def test_two_runs_side_by_side(
    clusters: LocalClusters, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = LocalClusters(tmp_path_factory.mktemp("other-run"))
    try:
        other.up(1)
        other_kubectl = Kubectl(other.kubeconfig, tmp_path_factory.mktemp("other-cache"))
        other_kubectl("create", "namespace", "only-in-other")
        assert "only-in-other" not in kubectl("get", "ns")
        assert "only-in-other" in other_kubectl("get", "ns")
        assert other.server("cluster1") != clusters.server("cluster1")
        mine = json.loads((clusters.folder / "run.json").read_text())["block"]
        theirs = json.loads((other.folder / "run.json").read_text())["block"]
        assert mine != theirs, "each run gets its own address block"
        refused = other.cli("up", "--clusters", "1", "--block", mine, check=False)
        assert refused.returncode != 0
    finally:
        other.down(purge=True)
    assert "kube-system" in kubectl("get", "ns"), "removing one run leaves the other serving"


def test_explicit_block_overlapping_the_host_is_refused(tmp_path: Path) -> None:
    run = LocalClusters(tmp_path / "refused")
    route = subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True, check=True).stdout
    taken = next(r["dst"] for r in json.loads(route) if r.get("dst", "default") != "default")
    network = taken.split("/")[0].rsplit(".", 2)[0] + ".0.0/16"
    result = run.cli("up", "--clusters", "1", "--block", network, check=False)
    assert result.returncode != 0 and "overlaps" in result.stderr
    assert not (tmp_path / "refused" / "kubeconfig").exists()


def test_up_recovers_after_the_api_server_is_killed(clusters: LocalClusters, kubectl: Kubectl) -> None:
    pid = int((clusters.folder / "cluster1" / "apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    clusters.up()
    assert "kube-system" in kubectl("get", "ns")
    assert "cluster1   ready" in clusters.cli("status").stdout


def test_unknown_cluster_name_is_a_clear_error(clusters: LocalClusters) -> None:
    result = clusters.cli("stop", "cluster9", check=False)
    assert result.returncode == 1
    assert "no cluster named 'cluster9'" in result.stderr and "cluster1, cluster2" in result.stderr


def test_topology_labels_of_the_nodes(clusters: LocalClusters, kubectl: Kubectl) -> None:
    labels = json.loads(kubectl("get", "node", "cluster1-node", "-o", "jsonpath={.metadata.labels}"))
    assert labels["topology.kubernetes.io/region"] == "local"
    assert labels["topology.kubernetes.io/zone"] == "local-cluster1", (
        "each cluster is its own zone by default"
    )
    clusters.cli("up", "--topology", "cluster2=us-east1/us-east1-b")
    labels = json.loads(
        kubectl("get", "node", "cluster2-node", "-o", "jsonpath={.metadata.labels}", context="cluster2")
    )
    assert (labels["topology.kubernetes.io/region"], labels["topology.kubernetes.io/zone"]) == (
        "us-east1",
        "us-east1-b",
    )
    wrong = clusters.cli("up", "--topology", "cluster7=a/b", check=False)
    assert wrong.returncode == 1 and "cluster7" in wrong.stderr


def test_nothing_is_left_after_a_killed_up(tmp_path: Path) -> None:
    run = LocalClusters(tmp_path / "killed")
    process = subprocess.Popen(
        [isthmus_command(), "local", "up", "--clusters", "1", "--dir", str(run.folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (run.folder / "cluster1" / "apiserver.pid").exists():
        time.sleep(0.05)
    process.kill()
    process.wait()
    run_id = _run_id(run)
    run.down(purge=True)
    assert not run.folder.exists()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert run_id not in namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert f"ism{run_id}" not in links
    assert not _hosts_lines(f"isthmus-local {run_id}")
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(run.folder) not in processes
