"""Benchmark of the local cluster's pods (`make bench-pods`, as root).

Measures, on a fresh one-cluster local run:
- the time from `kubectl apply` of a 10-replica helloworld Deployment to all 10 pods Ready, and pods started
  per second;
- the memory of one running helloworld pod: the PSS of every process of the pod (the runtime's `unshare`
  and `tini`, and the program).
The baseline, measured in the same run: the same helloworld program started directly on the host, without a
pod (time until it answers, and its PSS), so the ratio is what the pod runtime adds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPLICAS = 10
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "helloworld", "namespace": "default"},
    "spec": {
        "replicas": REPLICAS,
        "selector": {"matchLabels": {"app": "helloworld"}},
        "template": {
            "metadata": {"labels": {"app": "helloworld"}},
            "spec": {
                "containers": [
                    {
                        "name": "helloworld",
                        "image": "docker.io/istio/examples-helloworld-v1",
                        "ports": [{"containerPort": 5000}],
                        "readinessProbe": {"httpGet": {"path": "/hello", "port": 5000}, "periodSeconds": 1},
                    }
                ]
            },
        },
    },
}


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        out += tree(int(child))
    return out


def isthmus(*args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).with_name("isthmus")), *args], check=True, stdout=subprocess.DEVNULL
    )


def kubectl(folder: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(folder / "kubeconfig"), "--cache-dir", str(folder / "cache"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def measure_pods(folder: Path) -> tuple[float, float, float]:
    """(seconds to 10 Ready, pods per second, PSS MiB per pod)."""
    start = time.perf_counter()
    kubectl(folder, "apply", "-f", "-", stdin=json.dumps(DEPLOYMENT))
    while True:
        ready = kubectl(folder, "get", "deploy", "helloworld", "-o", "jsonpath={.status.readyReplicas}")
        if ready == str(REPLICAS):
            break
        if time.perf_counter() - start > 120:
            raise RuntimeError(f"only {ready or 0} of {REPLICAS} pods Ready after 120 s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    time.sleep(2)  # let the programs settle before measuring memory
    node_pid = int((folder / "cluster1" / "node.pid").read_text())
    pods = [
        p for p in tree(node_pid) if p != node_pid and b"unshare" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    per_pod = [sum(pss_kib(p) for p in tree(pid)) for pid in pods]
    return elapsed, REPLICAS / elapsed, sum(per_pod) / len(per_pod) / 1024


def measure_baseline() -> tuple[float, float]:
    """The helloworld program on the host: (seconds until it answers, PSS MiB)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "isthmus.local.node.samples.helloworld", "--port", "18500"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:18500/hello", timeout=1).read()
                break
            except OSError:
                time.sleep(0.01)
        elapsed = time.perf_counter() - start
        time.sleep(2)
        return elapsed, pss_kib(process.pid) / 1024
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench-pods starts a local cluster: run it as root")
    folder = Path(tempfile.mkdtemp(prefix="isthmus-bench-pods-"))
    try:
        isthmus("local", "up", "--clusters", "1", "--dir", str(folder))
        ready_s, rate, pss = measure_pods(folder)
    finally:
        isthmus("local", "down", "--purge", "--dir", str(folder))
    base_s, base_pss = measure_baseline()
    print("pod benchmark; baseline: the same helloworld program started on the host, without a pod")
    print(f"{REPLICAS} pods Ready after apply       {ready_s:8.2f} s   target <= 10 s")
    print(f"pods started per second            {rate:8.2f} /s")
    print(
        f"one program started (baseline)     {base_s:8.2f} s   ratio (per pod, sequential-equivalent) "
        f"{ready_s / REPLICAS / base_s:5.2f}"
    )
    print(
        f"PSS per helloworld pod             {pss:8.1f} MiB  baseline {base_pss:6.1f} MiB  ratio "
        f"{pss / base_pss:5.2f}  target <= 40 MiB"
    )
    ok = ready_s <= 10 and pss <= 40
    print(
        f"pods-bench ready_s={ready_s:.2f} pods_per_s={rate:.2f} pss_mib={pss:.1f} targets={'met' if ok else 'missed'}"
    )


if __name__ == "__main__":
    main()
