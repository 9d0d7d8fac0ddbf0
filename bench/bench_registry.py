"""Benchmark of service discovery across clusters (`make bench-registry`, as root).

Three local clusters, each with 1,000 Services of 5 endpoints: 5,000 pods on a node no process serves, their
status (IP, Ready) set by the benchmark as KWOK does, and the EndpointSlices the clusters' controllers build.
`isthmus discovery` runs for cluster1 with cluster2 registered by its Secret; then measured:
- initial sync: the process start until /ready, both clusters' endpoints known;
- a remote Secret's creation (cluster3) until all its 5,000 endpoints are served;
- resident memory of the discovery process with all three clusters;
- an EndpointSlice change until the aggregate's change event (/debug/events), p50/p99 over 100 changes.
Baselines measured in the same run: a plain lightkube list of the same objects from the three API servers
(the floor of initial sync), a plain watcher of the EndpointSlices (the floor of the change latency), and the
memory of the discovery process's imports alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

SERVICES = 1000
ENDPOINTS = 5
CLUSTERS = ("cluster1", "cluster2", "cluster3")
CHANGES = 100


def isthmus(*args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).with_name("isthmus")), *args], check=True, stdout=subprocess.DEVNULL
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """Writes to one cluster's API server with its admin token."""

    def __init__(self, kubeconfig: dict[str, Any], cluster: str, ca: Path) -> None:
        server = next(c["cluster"]["server"] for c in kubeconfig["clusters"] if c["name"] == cluster)
        token = next(u["user"]["token"] for u in kubeconfig["users"] if u["name"] == cluster)
        self.base = server
        self.context = ssl.create_default_context(cafile=str(ca))
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8, ssl=self.context), headers=self.headers
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        assert self.session is not None
        async with self.session.request(
            method,
            self.base + path,
            data=orjson.dumps(body) if body is not None else None,
            headers={"Content-Type": content_type},
        ) as response:
            data = await response.read()
            if response.status >= 400 and response.status != 409:
                raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
            return orjson.loads(data) if data else None


async def populate(api: Api, index: int) -> None:
    """1,000 Services x 5 pods on a node nobody serves, statuses set, and a Node with its zone."""
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
    await api.call(
        "POST",
        "/api/v1/nodes",
        {
            "metadata": {
                "name": "bench-node",
                "labels": {
                    "topology.kubernetes.io/region": "bench",
                    "topology.kubernetes.io/zone": f"bench-{index}",
                },
            }
        },
    )
    semaphore = asyncio.Semaphore(8)

    async def service(i: int) -> None:
        async with semaphore:
            await api.call(
                "POST",
                "/api/v1/namespaces/bench/services",
                {
                    "metadata": {"name": f"svc-{i}"},
                    "spec": {"selector": {"app": f"svc-{i}"}, "ports": [{"name": "http", "port": 80}]},
                },
            )
            for j in range(ENDPOINTS):
                name = f"svc-{i}-{j}"
                await api.call(
                    "POST",
                    "/api/v1/namespaces/bench/pods",
                    {
                        "metadata": {"name": name, "labels": {"app": f"svc-{i}"}},
                        "spec": {
                            "nodeName": "bench-node",
                            "containers": [{"name": "c", "image": "isthmus.dev/host"}],
                        },
                    },
                )
                address = f"172.{16 + index}.{(i * ENDPOINTS + j) // 250}.{(i * ENDPOINTS + j) % 250 + 1}"
                await api.call(
                    "PATCH",
                    f"/api/v1/namespaces/bench/pods/{name}/status",
                    {
                        "status": {
                            "phase": "Running",
                            "podIP": address,
                            "podIPs": [{"ip": address}],
                            "conditions": [{"type": "Ready", "status": "True"}],
                        }
                    },
                    content_type="application/merge-patch+json",
                )

    await asyncio.gather(*(service(i) for i in range(SERVICES)))
    while True:  # the cluster's endpointslice controller catches up
        slices = await api.call("GET", "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices")
        ready = sum(len(s.get("endpoints") or []) for s in slices["items"])
        if ready >= SERVICES * ENDPOINTS:
            return
        await asyncio.sleep(0.5)


def reader_kubeconfig(folder: Path, cluster: str) -> bytes:
    """The seed's remote-secret kubeconfig, with the admin credentials of the local cluster for brevity."""
    whole = yaml.safe_load((folder / "kubeconfig").read_text())
    mine = {
        **whole,
        "clusters": [c for c in whole["clusters"] if c["name"] == cluster],
        "users": [u for u in whole["users"] if u["name"] == cluster],
        "contexts": [c for c in whole["contexts"] if c["name"] == cluster],
        "current-context": cluster,
    }
    return yaml.safe_dump(mine).encode()


async def register(primary: Api, folder: Path, cluster: str) -> None:
    await primary.call("POST", "/api/v1/namespaces", {"metadata": {"name": "istio-system"}})
    await primary.call(
        "POST",
        "/api/v1/namespaces/istio-system/secrets",
        {
            "metadata": {"name": cluster, "labels": {"istio/multiCluster": "true"}},
            "data": {cluster: base64.b64encode(reader_kubeconfig(folder, cluster)).decode()},
        },
    )


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return orjson.loads(await response.read()) if response.status == 200 else None


async def wait_endpoints(metrics: str, cluster: str, count: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        async with aiohttp.ClientSession() as session, session.get(metrics) as response:
            text = await response.text()
        for line in text.splitlines():
            if (
                line.startswith(f'isthmus_endpoints{{cluster="{cluster}"}}')
                and float(line.split()[-1]) >= count
            ):
                return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{cluster}'s endpoints were not all served in time")


def start_discovery(
    folder: Path, http: int, monitoring: int, *extra: str, env: dict[str, str], stderr: Any
) -> subprocess.Popen[bytes]:
    """`isthmus discovery` on the run's cluster1, with its debug and metrics ports on loopback."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("isthmus")),
            "discovery",
            "--kubeconfig",
            str(folder / "kubeconfig"),
            "--context",
            "cluster1",
            "--cluster-id",
            "cluster1",
            "--http-address",
            f"127.0.0.1:{http}",
            "--monitoring-address",
            f"127.0.0.1:{monitoring}",
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


async def wait_discovery_ready(process: subprocess.Popen[bytes], http: int, log: Path | None = None) -> None:
    """Until /ready answers 200; RuntimeError with its errors (or where its log is) if it exits."""
    while True:
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{http}/ready") as r:
                if r.status == 200:
                    return
        if process.poll() is not None:
            detail = f"see {log}" if log else (process.stderr.read().decode() if process.stderr else "")
            raise RuntimeError(f"discovery exited: {detail}")
        await asyncio.sleep(0.02)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def slice_latencies(api: Api, events_url: str, via_events: bool) -> list[float]:
    """Flip an endpoint's readiness in a hand-written slice CHANGES times; seconds until the event arrives."""
    name = "bench-latency"
    await api.call(
        "POST",
        "/api/v1/namespaces/bench/services",
        {"metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80}]}},
    )
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "bench"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["172.31.0.1"], "conditions": {"ready": True}}],
    }
    await api.call("POST", "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices", body)
    arrived: asyncio.Queue[float] = asyncio.Queue()
    if via_events:
        url = events_url
        match = f"{name}.bench.svc.cluster.local".encode()
    else:
        url = (
            api.base + "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices?watch=true"
            f"&fieldSelector=metadata.name%3D{name}&resourceVersion=0"
        )
        match = b'"MODIFIED"'
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=api.context), headers=api.headers)

    async def follow() -> None:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            async for line in response.content:
                if match in line and (via_events is False or b"EndpointsChanged" in line):
                    arrived.put_nowait(time.time())

    task = asyncio.create_task(follow())
    await asyncio.sleep(1.0)
    while not arrived.empty():
        arrived.get_nowait()
    latencies = []
    for i in range(CHANGES):
        body["endpoints"][0]["conditions"]["ready"] = i % 2 == 1  # type: ignore[index]
        start = time.time()
        await api.call(
            "PATCH",
            f"/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/{name}",
            {"endpoints": body["endpoints"]},
            content_type="application/merge-patch+json",
        )
        latencies.append(await asyncio.wait_for(arrived.get(), 10) - start)
        await asyncio.sleep(0.02)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await session.close()
    await api.call("DELETE", f"/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/{name}")
    await api.call("DELETE", f"/api/v1/namespaces/bench/services/{name}")
    return latencies


async def baseline_list(apis: list[Api]) -> float:
    """The floor of initial sync: list every object the registry reads, raw, from the three clusters."""
    start = time.perf_counter()
    for api in apis:
        for path in (
            "/api/v1/pods",
            "/api/v1/services",
            "/apis/discovery.k8s.io/v1/endpointslices",
            "/api/v1/nodes",
        ):
            await api.call("GET", path)
    return time.perf_counter() - start


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(folder: Path) -> dict[str, float]:
    kubeconfig = yaml.safe_load((folder / "kubeconfig").read_text())
    ca = folder / "ca.crt"
    results: dict[str, float] = {}
    async with (
        Api(kubeconfig, "cluster1", ca) as a1,
        Api(kubeconfig, "cluster2", ca) as a2,
        Api(kubeconfig, "cluster3", ca) as a3,
    ):
        start = time.perf_counter()
        await asyncio.gather(*(populate(api, i) for i, api in enumerate((a1, a2, a3), 1)))
        results["populate_s"] = time.perf_counter() - start
        await register(a1, folder, "cluster2")
        http, monitoring = free_port(), free_port()
        debug = f"http://127.0.0.1:{http}/debug"
        env = {**os.environ, "ISTHMUS_REMOTE_CLUSTER_TIMEOUT": "60"}
        started = time.perf_counter()
        process = start_discovery(folder, http, monitoring, env=env, stderr=subprocess.PIPE)
        try:
            await wait_discovery_ready(process, http)
            results["initial_sync_s"] = time.perf_counter() - started
            await wait_endpoints(
                f"http://127.0.0.1:{monitoring}/metrics",
                "cluster2",
                SERVICES * ENDPOINTS,
                time.monotonic() + 60,
            )
            secret_start = time.perf_counter()
            await register(a1, folder, "cluster3")
            await wait_endpoints(
                f"http://127.0.0.1:{monitoring}/metrics",
                "cluster3",
                SERVICES * ENDPOINTS,
                time.monotonic() + 120,
            )
            results["secret_to_endpoints_s"] = time.perf_counter() - secret_start
            await asyncio.sleep(2)
            results["rss_mib"] = rss_mib(process.pid)
            latencies = await slice_latencies(a2, f"{debug}/events", via_events=True)
            results["p50_ms"] = percentile(latencies, 50) * 1000
            results["p99_ms"] = percentile(latencies, 99) * 1000
            floor = await slice_latencies(a2, "", via_events=False)
            results["floor_p50_ms"] = percentile(floor, 50) * 1000
            results["floor_p99_ms"] = percentile(floor, 99) * 1000
            results["list_floor_s"] = await baseline_list([a1, a2, a3])
        finally:
            process.terminate()
            process.wait()
    imports = subprocess.run(  # noqa: ASYNC221 (after the measurements)
        [
            sys.executable,
            "-c",
            # VmRSS, not ru_maxrss: the latter is inherited from this (large) process through fork and exec.
            "import isthmus.discovery.server; "
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    results["import_rss_mib"] = int(imports.stdout.strip()) / 1024
    return results


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench-registry starts local clusters: run it as root")
    folder = Path(tempfile.mkdtemp(prefix="isthmus-bench-registry-"))
    try:
        isthmus("local", "up", "--clusters", "3", "--dir", str(folder))
        r = asyncio.run(run(folder))
    finally:
        isthmus("local", "down", "--purge", "--dir", str(folder))
    print(
        f"registry benchmark: {len(CLUSTERS)} clusters x {SERVICES} services x {ENDPOINTS} endpoints "
        f"(objects written in {r['populate_s']:.0f} s)"
    )
    print(
        f"initial sync (2 clusters, 10,000 endpoints)  {r['initial_sync_s']:7.2f} s    floor (raw list of all "
        f"3 clusters) {r['list_floor_s']:5.2f} s  ratio {r['initial_sync_s'] / r['list_floor_s']:5.2f}  target <= 5 s"
    )
    print(f"remote Secret -> its 5,000 endpoints served  {r['secret_to_endpoints_s']:7.2f} s")
    print(
        f"resident memory, 3 clusters                  {r['rss_mib']:7.1f} MiB  baseline (imports only) "
        f"{r['import_rss_mib']:5.1f} MiB  ratio {r['rss_mib'] / r['import_rss_mib']:5.2f}  target <= 200 MB"
    )
    print(
        f"EndpointSlice change -> aggregate event      p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms   "
        f"floor (raw watch) p50 {r['floor_p50_ms']:5.1f} p99 {r['floor_p99_ms']:5.1f} ms  "
        f"ratio p99 {r['p99_ms'] / r['floor_p99_ms']:5.2f}  target p99 <= 50 ms"
    )
    ok = r["initial_sync_s"] <= 5 and r["rss_mib"] <= 200 and r["p99_ms"] <= 50
    print(
        f"registry-bench initial_sync_s={r['initial_sync_s']:.2f} secret_s={r['secret_to_endpoints_s']:.2f} "
        f"rss_mb={r['rss_mib']:.0f} p50_ms={r['p50_ms']:.1f} p99_ms={r['p99_ms']:.1f} "
        f"targets={'met' if ok else 'missed'}"
    )


if __name__ == "__main__":
    main()
