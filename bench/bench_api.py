"""Benchmark of the local cluster's API server (`make bench-api`, as root).

Measures, against a fresh one-cluster local run:
- creates per second with 1 client and with 8 concurrent clients (ConfigMaps, kubectl-sized bodies);
- the latency of listing 10,000 ConfigMaps;
- the time from a write to its event at the last of 100 watchers (p50 / p99 over 100 writes).
Each figure is printed with a baseline measured in the same run on the same machine: a minimal aiohttp https
server that answers the same requests without doing anything (the floor of Python HTTP + TLS here).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web

CREATES = 3000
LIST_SIZE = 10_000
WATCHERS = 100
WATCH_WRITES = 100


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"bench": "api"}},
        "data": {"key": "value" * 8, "other": "x" * 64},
    }


class Target:
    """Where requests go: the API server of the run, or the baseline server."""

    def __init__(self, base: str, token: str, context: ssl.SSLContext) -> None:
        self.base = base
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.ssl = context

    def session(self, connections: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=connections, ssl=self.ssl)
        return aiohttp.ClientSession(connector=connector, headers=self.headers)


async def create_rate(target: Target, namespace: str, prefix: str, total: int, clients: int) -> float:
    """Creates per second with `clients` concurrent clients, each on its own connection."""
    async with target.session(clients) as session:
        url = f"{target.base}/api/v1/namespaces/{namespace}/configmaps"
        names = iter(range(total))

        async def client() -> None:
            for i in names:
                async with session.post(url, data=orjson.dumps(configmap(f"{prefix}-{i}"))) as response:
                    await response.read()
                    if response.status != 201:
                        raise RuntimeError(f"create answered {response.status}: {await response.text()}")

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return total / (time.perf_counter() - start)


async def list_latency(target: Target, namespace: str, rounds: int = 5) -> tuple[float, int]:
    """Median seconds to list every ConfigMap of the namespace (full JSON body read), and how many there were."""
    async with target.session(1) as session:
        times, count = [], 0
        for _ in range(rounds):
            start = time.perf_counter()
            async with session.get(f"{target.base}/api/v1/namespaces/{namespace}/configmaps") as response:
                body = await response.read()
            times.append(time.perf_counter() - start)
            count = len(orjson.loads(body)["items"])
        return statistics.median(times), count


async def watch_latency(target: Target, namespace: str) -> list[float]:
    """For each of WATCH_WRITES writes: seconds from sending it until the last of WATCHERS watchers saw it."""
    seen: dict[str, list[float]] = {}
    complete: dict[str, asyncio.Event] = {}
    ready = 0
    all_ready = asyncio.Event()

    async with target.session(WATCHERS + 1) as session:
        url = f"{target.base}/api/v1/namespaces/{namespace}/configmaps"

        async def watcher() -> None:
            nonlocal ready
            params = {"watch": "true", "labelSelector": "bench=watch", "allowWatchBookmarks": "false"}
            async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=None)) as response:
                ready += 1
                if ready == WATCHERS:
                    all_ready.set()
                async for line in response.content:
                    event = orjson.loads(line)
                    name = event["object"]["metadata"]["name"]
                    arrivals = seen.setdefault(name, [])
                    arrivals.append(time.perf_counter())
                    if len(arrivals) == WATCHERS:
                        complete.setdefault(name, asyncio.Event()).set()

        tasks = [asyncio.create_task(watcher()) for _ in range(WATCHERS)]
        await asyncio.wait_for(all_ready.wait(), 30)
        await asyncio.sleep(0.5)
        latencies = []
        for i in range(WATCH_WRITES):
            name = f"watched-{i}"
            body = configmap(name)
            body["metadata"]["labels"] = {"bench": "watch"}
            start = time.perf_counter()
            async with session.post(url, data=orjson.dumps(body)) as response:
                await response.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(complete.setdefault(name, asyncio.Event()).wait(), 10)
            arrivals = seen.get(name, [])
            if len(arrivals) < WATCHERS:
                raise RuntimeError(f"only {len(arrivals)} of {WATCHERS} watchers saw {name}")
            latencies.append(max(arrivals) - start)
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- the baseline: an https server that does nothing --------------------------------------------------------


def _baseline_server(port: int, cert: str, key: str) -> None:
    import uvloop

    subscribers: list[web.StreamResponse] = []
    listing = orjson.dumps(
        {
            "kind": "ConfigMapList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": "1"},
            "items": [configmap(f"cm-{i}") for i in range(LIST_SIZE)],
        }
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            body = await request.read()
            for subscriber in list(subscribers):
                await subscriber.write(b'{"type":"ADDED","object":' + body + b"}\n")
            return web.Response(body=body, status=201, content_type="application/json")
        if request.query.get("watch"):
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            subscribers.append(response)
            try:
                await asyncio.sleep(3600)
            finally:
                subscribers.remove(response)
            return response
        return web.Response(body=listing, content_type="application/json")

    async def main() -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        await asyncio.Event().wait()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


# -- driver -------------------------------------------------------------------------------------------------


def isthmus(*args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).with_name("isthmus")), *args], check=True, stdout=subprocess.DEVNULL
    )


async def measure(target: Target, namespace: str) -> dict[str, Any]:
    one = await create_rate(target, namespace, "one", CREATES // 3, 1)
    eight = await create_rate(target, namespace, "eight", CREATES, 8)
    missing = LIST_SIZE - CREATES - CREATES // 3
    if missing > 0:
        await create_rate(target, namespace, "fill", missing, 8)
    list_s, count = await list_latency(target, namespace)
    latencies = await watch_latency(target, namespace)
    return {
        "one": one,
        "eight": eight,
        "list_s": list_s,
        "count": count,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


async def run_benchmarks(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    kubeconfig = yaml.safe_load((folder / "kubeconfig").read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    token = kubeconfig["users"][0]["user"]["token"]
    ca = folder / "ca.crt"
    context = ssl.create_default_context(cafile=str(ca))
    target = Target(cluster["server"], token, context)
    async with target.session(1) as session:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}
        async with session.post(f"{target.base}/api/v1/namespaces", data=orjson.dumps(body)) as response:
            await response.read()
    ours = await measure(target, "bench")

    port = 18443
    cluster_dir = folder / "cluster1"
    process = multiprocessing.Process(
        target=_baseline_server,
        daemon=True,
        args=(port, str(cluster_dir / "serving.crt"), str(cluster_dir / "serving.key")),
    )
    process.start()
    try:
        baseline_context = ssl.create_default_context(cafile=str(ca))
        baseline_context.check_hostname = False
        baseline = Target(f"https://127.0.0.1:{port}", token, baseline_context)
        for _ in range(100):
            try:
                async with baseline.session(1) as session, session.get(f"{baseline.base}/ready") as response:
                    await response.read()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        floor = await measure(baseline, "bench")
    finally:
        process.kill()
        process.join()
    return ours, floor


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench-api starts a local cluster: run it as root")
    folder = Path(tempfile.mkdtemp(prefix="isthmus-bench-api-"))
    try:
        isthmus("local", "up", "--clusters", "1", "--dir", str(folder))
        ours, floor = asyncio.run(run_benchmarks(folder))
    finally:
        isthmus("local", "down", "--purge", "--dir", str(folder))

    def row(label: str, value: float, base: float, unit: str, target: str) -> None:
        ratio = value / base if base else float("nan")
        print(
            f"{label:<38} {value:10.1f} {unit:<6} baseline {base:10.1f} {unit:<6} ratio {ratio:5.2f}  "
            f"target {target}"
        )

    print(f"API server benchmark ({os.cpu_count()} cores); baseline: an https aiohttp server doing nothing")
    row("creates/s, 1 client", ours["one"], floor["one"], "/s", "-")
    row("creates/s, 8 clients", ours["eight"], floor["eight"], "/s", ">= 1000")
    row(f"list {ours['count']} ConfigMaps", ours["list_s"] * 1000, floor["list_s"] * 1000, "ms", "<= 500")
    row(f"write -> last of {WATCHERS} watchers, p50", ours["p50"] * 1000, floor["p50"] * 1000, "ms", "-")
    row(f"write -> last of {WATCHERS} watchers, p99", ours["p99"] * 1000, floor["p99"] * 1000, "ms", "<= 50")
    ok = ours["eight"] >= 1000 and ours["list_s"] <= 0.5 and ours["p99"] <= 0.05
    print(
        f"api-bench creates_8={ours['eight']:.0f} list_ms={ours['list_s'] * 1000:.0f} "
        f"watch_p50_ms={ours['p50'] * 1000:.1f} watch_p99_ms={ours['p99'] * 1000:.1f} "
        f"targets={'met' if ok else 'missed'}"
    )


if __name__ == "__main__":
    main()
