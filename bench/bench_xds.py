"""Benchmark of the xDS server (`make bench-xds`, as root).

Two local clusters, each with the same 1,000 Services (one endpoint each, pods on a node no process serves, their
status set by the benchmark); `isthmus discovery` for cluster1 on the host, cluster2 registered by its Secret,
xDS on the host's own end of the local network (so sidecars in pods reach it too). Then:
- 1,000 simulated sidecars (delta ADS, separate client processes) connect: full initial sync time;
- 100 endpoint changes, each a write of an EndpointSlice: from the change entering the control plane (the
  registry's change event, debounce included) to the last of the 1,000 ACKs, and from the EndpointSlice write to
  the last ACK; the server's CPU per proxy per push;
- resident memory at 1,000 and at 2,000 proxies;
- two real Envoys in pods (cluster1 and cluster2), which must be SYNCED at the end;
- the floor, in the same run: one pre-serialized response fanned out to 1,000 streams of the same client
  processes by a bare grpc.aio server, until the last ACK.
The last line is `xds-bench proxies=N services=N p50_ms=X p99_ms=X floor_p99_ms=X cpu_ms_per_proxy=X rss_mb=X`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import yaml
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the e2e kit's sidecar template

from bench_registry import Api, free_port, isthmus, percentile, rss_mib, start_discovery, wait_discovery_ready
from isthmus.config.crds import definitions
from tests.e2e import meshkit

SERVICES = 1000
PROXIES = 1000
CHANGES = 100
PROCESSES = 4
CLIENTS = Path(__file__).with_name("xds_clients.py")
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def host_address(folder: Path) -> str:
    """The host's end of the local clusters' network (10.N.0.1), from an API server's address."""
    kubeconfig = yaml.safe_load((folder / "kubeconfig").read_text())
    server = kubeconfig["clusters"][0]["cluster"]["server"]
    name = server.split("//", 1)[1].rsplit(":", 1)[0]
    parts = socket.gethostbyname(name).split(".")
    return f"{parts[0]}.{parts[1]}.0.1"


async def populate(api: Api, index: int) -> None:
    """The 1,000 Services with one endpoint each (a pod on a phantom node), and cluster-specific zones."""
    await api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
    labels = {"topology.kubernetes.io/region": "bench", "topology.kubernetes.io/zone": f"bench-{index}"}
    await api.call("POST", "/api/v1/nodes", {"metadata": {"name": "bench-node", "labels": labels}})
    semaphore = asyncio.Semaphore(8)

    async def service(i: int) -> None:
        async with semaphore:
            spec = {"selector": {"app": f"svc-{i}"}, "ports": [{"name": "http", "port": 80}]}
            await api.call(
                "POST", "/api/v1/namespaces/bench/services", {"metadata": {"name": f"svc-{i}"}, "spec": spec}
            )
            name = f"svc-{i}-0"
            pod = {
                "metadata": {"name": name, "labels": {"app": f"svc-{i}"}},
                "spec": {
                    "nodeName": "bench-node",
                    "containers": [{"name": "c", "image": "isthmus.dev/host"}],
                },
            }
            await api.call("POST", "/api/v1/namespaces/bench/pods", pod)
            address = f"172.{16 + index}.{i // 250}.{i % 250 + 1}"
            status = {
                "phase": "Running",
                "podIP": address,
                "podIPs": [{"ip": address}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
            await api.call(
                "PATCH",
                f"/api/v1/namespaces/bench/pods/{name}/status",
                {"status": status},
                content_type="application/merge-patch+json",
            )

    await asyncio.gather(*(service(i) for i in range(SERVICES)))
    while True:
        slices = await api.call("GET", "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices")
        if sum(len(s.get("endpoints") or []) for s in slices["items"]) >= SERVICES:
            return
        await asyncio.sleep(0.5)


def bench_slice(k: int, address: str) -> dict[str, Any]:
    """A hand-written EndpointSlice of svc-k (the registry reads every slice of a service)."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"bench-{k}",
            "labels": {
                "kubernetes.io/service-name": f"svc-{k}",
                "endpointslice.kubernetes.io/managed-by": "bench",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clients:
    """Client processes and what they report, gathered as it arrives."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []
        self.synced: dict[int, float] = {}
        self.acks: dict[str, dict[int, float]] = {}  # cluster name -> client -> when it first ACKed an update
        self.duplicates = 0  # updates of a name a client had already acknowledged
        self.readers: list[asyncio.Task[None]] = []
        self.changed = asyncio.Event()

    async def start(self, address: str, first: int, count: int, cluster_id: str = "cluster1") -> None:
        per = count // PROCESSES
        for p in range(PROCESSES):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CLIENTS),
                address,
                str(first + p * per),
                str(per),
                cluster_id,
                stdout=asyncio.subprocess.PIPE,
            )
            self.processes.append(process)
            self.readers.append(asyncio.create_task(self._read(process)))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            record = orjson.loads(line)
            if record["ev"] == "synced":
                self.synced[record["i"]] = record["t"]
            else:
                for name in record["names"]:
                    acked = self.acks.setdefault(name, {})
                    if record["i"] in acked:
                        self.duplicates += 1
                    else:
                        acked[record["i"]] = record["t"]
            self.changed.set()

    async def until(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"timed out waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))

    async def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        for reader in self.readers:
            reader.cancel()
        self.processes.clear()


class Events:
    """The discovery process's change events (/debug/events), with their wall-clock times."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: dict[str, list[float]] = {}
        self.task: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url, timeout=aiohttp.ClientTimeout(total=None)) as response,
        ):
            async for line in response.content:
                event = orjson.loads(line)
                if event["type"] == "EndpointsChanged":
                    self.times.setdefault(event["hostname"], []).append(event["time"])


@contextlib.asynccontextmanager
async def floor_server() -> AsyncIterator[tuple[str, Any]]:
    """A bare ADS server: answers each client's first requests with empty responses, and fans out one
    pre-serialized response to every stream on demand."""
    streams: list[Any] = []

    async def handle(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        streams.append(context)
        async for request in requests:
            if not request.response_nonce:
                await context.write(
                    discovery_pb2.DeltaDiscoveryResponse(
                        type_url=request.type_url, nonce="initial"
                    ).SerializeToString()
                )

    handler = grpc.method_handlers_generic_handler(
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        {
            "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                handle,
                request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                response_serializer=lambda b: b,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    await server.start()

    async def fanout(payload: bytes) -> None:
        await asyncio.gather(*(s.write(payload) for s in streams), return_exceptions=True)

    try:
        yield address, fanout
    finally:
        await server.stop(0)


def floor_payload(k: int) -> bytes:
    name = f"outbound|80||floor-{k}.bench.svc.cluster.local"
    cla = endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(
                                    address=f"10.251.0.{i}", port_value=80
                                )
                            )
                        )
                    )
                    for i in range(1, 3)
                ]
            )
        ],
    )
    response = discovery_pb2.DeltaDiscoveryResponse(type_url=EDS, nonce=f"floor-{k}")
    response.resources.append(
        discovery_pb2.Resource(
            name=name, version=str(k), resource=any_pb2.Any(type_url=EDS, value=cla.SerializeToString())
        )
    )
    return response.SerializeToString()


async def measure_floor() -> list[float]:
    clients = Clients()
    async with floor_server() as (address, fanout):
        try:
            await clients.start(address, 0, PROXIES)
            await clients.until(lambda: len(clients.synced) >= PROXIES, 120, "floor clients")
            latencies = []
            for k in range(CHANGES):
                payload = floor_payload(k)
                name = f"outbound|80||floor-{k}.bench.svc.cluster.local"
                start = time.time()
                await fanout(payload)
                await clients.until(
                    lambda n=name: len(clients.acks.get(n, ())) >= PROXIES, 30, f"floor fan-out {k}"
                )
                latencies.append(max(clients.acks[name].values()) - start)
            return latencies
        finally:
            await clients.stop()


async def envoys(kc_env: dict[str, str], folder: Path, xds: str) -> None:
    """Two real sidecars in pods (cluster1 and cluster2) with the discovery address given."""
    for context in ("cluster1", "cluster2"):
        sleep = meshkit.deployment(
            "sleep",
            {"app": "sleep"},
            {"name": "sleep", "image": "curlimages/curl", "command": ["sleep", "3650d"]},
            namespace="bench",
        )
        pod = meshkit.with_sidecar(sleep)
        for container in pod["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "istio-proxy":
                container["args"][container["args"].index("--discoveryAddress") + 1] = xds
        subprocess.run(  # noqa: ASYNC221 (two objects, before the measurements)
            ["kubectl", "--kubeconfig", str(folder / "kubeconfig"), "--context", context, "apply", "-f", "-"],
            input=json.dumps(pod),
            text=True,
            check=True,
            capture_output=True,
            env=kc_env,
        )


async def run(folder: Path) -> dict[str, float]:
    kubeconfig = yaml.safe_load((folder / "kubeconfig").read_text())
    ca = folder / "ca.crt"
    results: dict[str, float] = {}
    host = host_address(folder)
    async with Api(kubeconfig, "cluster1", ca) as a1, Api(kubeconfig, "cluster2", ca) as a2:
        started = time.perf_counter()
        await asyncio.gather(populate(a1, 0), populate(a2, 1))
        for crd in definitions():
            await a1.call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        for k in range(CHANGES):
            await a2.call(
                "POST",
                "/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices",
                bench_slice(k, f"10.251.{k}.1"),
            )
        await a1.call("POST", "/api/v1/namespaces", {"metadata": {"name": "istio-system"}})
        whole = kubeconfig
        mine = {
            **whole,
            "clusters": [c for c in whole["clusters"] if c["name"] == "cluster2"],
            "users": [u for u in whole["users"] if u["name"] == "cluster2"],
            "contexts": [c for c in whole["contexts"] if c["name"] == "cluster2"],
            "current-context": "cluster2",
        }
        await a1.call(
            "POST",
            "/api/v1/namespaces/istio-system/secrets",
            {
                "metadata": {"name": "cluster2", "labels": {"istio/multiCluster": "true"}},
                "data": {"cluster2": base64.b64encode(yaml.safe_dump(mine).encode()).decode()},
            },
        )
        results["populate_s"] = time.perf_counter() - started
        http, monitoring, grpc_port = free_port(), free_port(), free_port()
        xds = f"{host}:{grpc_port}"
        log = folder / "discovery.log"
        process = start_discovery(
            folder,
            http,
            monitoring,
            "--grpc-address",
            xds,
            env={**os.environ, "ISTHMUS_REMOTE_CLUSTER_TIMEOUT": "60"},
            stderr=log.open("w"),
        )
        clients = Clients()
        events = Events(f"http://127.0.0.1:{http}/debug/events")
        try:
            await wait_discovery_ready(process, http, log)
            await asyncio.sleep(2)  # both clusters' endpoints in
            await envoys(dict(os.environ), folder, xds)
            events.task = asyncio.create_task(events.follow())
            t0 = time.time()
            await clients.start(xds, 0, PROXIES)
            await clients.until(lambda: len(clients.synced) >= PROXIES, 300, "1,000 proxies in sync")
            results["initial_sync_s"] = max(clients.synced.values()) - t0
            await asyncio.sleep(1)
            results["rss_1000_mib"] = rss_mib(process.pid)
            cpu_before = cpu_seconds(process.pid)
            from_event, from_write = [], []
            for k in range(CHANGES):
                name = f"outbound|80||svc-{k}.bench.svc.cluster.local"
                host_name = f"svc-{k}.bench.svc.cluster.local"
                before = len(events.times.get(host_name, []))
                clients.acks.pop(name, None)  # only ACKs of this change count
                written = time.time()
                await a2.call(
                    "PUT",
                    f"/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices/bench-{k}",
                    bench_slice(k, f"10.251.{k}.2"),
                )
                await clients.until(
                    lambda n=name: len(clients.acks.get(n, ())) >= PROXIES, 30, f"change {k} acknowledged"
                )
                for _ in range(100):
                    if len(events.times.get(host_name, [])) > before:
                        break
                    await asyncio.sleep(0.01)
                last = max(clients.acks[name].values())
                from_event.append(last - events.times[host_name][before])
                from_write.append(last - written)
            cpu = cpu_seconds(process.pid) - cpu_before
            results["duplicates"] = clients.duplicates
            results["cpu_ms_per_proxy"] = cpu * 1000 / (CHANGES * PROXIES)
            results["p50_ms"] = percentile(from_event, 50) * 1000
            results["p99_ms"] = percentile(from_event, 99) * 1000
            results["write_p50_ms"] = percentile(from_write, 50) * 1000
            results["write_p99_ms"] = percentile(from_write, 99) * 1000
            await clients.start(xds, PROXIES, PROXIES)
            await clients.until(lambda: len(clients.synced) >= 2 * PROXIES, 300, "2,000 proxies in sync")
            await asyncio.sleep(1)
            results["rss_2000_mib"] = rss_mib(process.pid)
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{http}/debug/syncz") as r:
                proxies = (await r.json())["proxies"]
            real = [p for p in proxies if p["pod"].startswith("sleep-")]
            results["envoys"] = len(real)
            results["envoys_synced"] = sum(
                1 for p in real if {t["status"] for t in p["types"].values()} == {"SYNCED"}
            )
            results["envoy_clusters"] = min((p["types"]["CDS"]["resources"] for p in real), default=0)
        finally:
            await clients.stop()
            if events.task is not None:
                events.task.cancel()
            process.terminate()
            process.wait()
    floor = await measure_floor()
    results["floor_p50_ms"] = percentile(floor, 50) * 1000
    results["floor_p99_ms"] = percentile(floor, 99) * 1000
    return results


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench-xds starts local clusters: run it as root")
    folder = Path(tempfile.mkdtemp(prefix="isthmus-bench-xds-"))
    try:
        isthmus("local", "up", "--clusters", "2", "--dir", str(folder))
        r = asyncio.run(run(folder))
    finally:
        isthmus("local", "down", "--purge", "--dir", str(folder))
    lines = [
        f"xDS benchmark: {SERVICES} services in 2 clusters, {PROXIES} simulated delta proxies in "
        f"{PROCESSES} processes (objects written in {r['populate_s']:.0f} s)",
        f"full initial sync of 1,000 proxies   {r['initial_sync_s']:7.2f} s",
        f"change event -> last of 1,000 ACKs   p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms   floor (one "
        f"pre-serialized response fanned out) p50 {r['floor_p50_ms']:5.1f} p99 {r['floor_p99_ms']:5.1f} ms  "
        f"ratio p99 {r['p99_ms'] / r['floor_p99_ms']:5.2f}  target p99 <= 150 ms",
        f"EndpointSlice write -> last ACK      p50 {r['write_p50_ms']:6.1f} ms  p99 {r['write_p99_ms']:6.1f} ms   "
        f"(an update received twice: {r['duplicates']:.0f} times)",
        f"server CPU per proxy per push        {r['cpu_ms_per_proxy']:7.3f} ms   target <= 0.3 ms",
        f"resident memory   1,000 proxies {r['rss_1000_mib']:7.1f} MiB   2,000 proxies "
        f"{r['rss_2000_mib']:7.1f} MiB   target <= 500 MB",
        f"real Envoys in pods: {r['envoys_synced']:.0f} of {r['envoys']:.0f} SYNCED, "
        f"{r['envoy_clusters']:.0f} clusters each",
        f"xds-bench proxies={PROXIES} services={SERVICES} p50_ms={r['p50_ms']:.1f} p99_ms={r['p99_ms']:.1f} "
        f"floor_p99_ms={r['floor_p99_ms']:.1f} cpu_ms_per_proxy={r['cpu_ms_per_proxy']:.3f} "
        f"rss_mb={r['rss_2000_mib']:.0f}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
