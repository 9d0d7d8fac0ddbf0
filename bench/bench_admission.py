"""Benchmark of admission webhooks in a local cluster (`make bench-admission`, as root).

On a fresh one-cluster local run, a mutating webhook served by a pod of the cluster (the e2e tests' webhook,
tests/e2e/fixtures/webhook_server.py, behind its Service, TLS verified) labels new pods in one namespace.
Measures the latency of a pod create (p50 / p99 over 100 creates, one client, pods bound to a node that does
not exist so nothing starts them):
- baseline, in the same run: the same creates with no webhook configuration at all;
- with the configuration present but not matching (its namespaceSelector excludes the namespace);
- with the webhook called (its JSONPatch applied, the pod decoded and validated again).
The difference to the baseline is what the admission round trip adds; the webhook answering the same review
straight from the host (keep-alive, as the API server calls it) shows how much of that is the webhook itself.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import yaml

from isthmus.local.cluster import pki

CREATES = 100
WARMUP = 10
SERVER = Path(__file__).resolve().parent.parent / "tests" / "e2e" / "fixtures" / "webhook_server.py"
NAMESPACE = "webhook-system"


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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def deploy_webhook(folder: Path) -> str:
    """The webhook Deployment and Service, its certificate in a Secret; returns the caBundle."""
    pki_dir = folder / "webhook-pki"
    pki_dir.mkdir()
    ca, ca_key = pki.ensure_ca(pki_dir, "webhook-ca")
    name = f"webhook.{NAMESPACE}.svc"
    cert, key = pki.ensure_serving_cert(pki_dir, ca, ca_key, name, [name], [])
    kubectl(folder, "create", "namespace", NAMESPACE)
    kubectl(
        folder, "create", "secret", "tls", "webhook-tls", "-n", NAMESPACE, f"--cert={cert}", f"--key={key}"
    )
    labels = {"app": "webhook"}
    container = {
        "name": "webhook",
        "image": "isthmus.dev/host",
        "command": ["python3", str(SERVER), "8443", "/certs/tls.crt", "/certs/tls.key"],
        "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
        "volumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
    }
    objects = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "webhook", "namespace": NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "volumes": [{"name": "certs", "secret": {"secretName": "webhook-tls"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "webhook", "namespace": NAMESPACE},
            "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    ]
    kubectl(folder, "apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
    kubectl(folder, "rollout", "status", "deployment/webhook", "-n", NAMESPACE, "--timeout=90s")
    return base64.b64encode(ca.read_bytes()).decode()


def configuration(ca_bundle: str) -> str:
    hook = {
        "name": "pods.webhook.isthmus.dev",
        "clientConfig": {
            "service": {"namespace": NAMESPACE, "name": "webhook", "path": "/mutate"},
            "caBundle": ca_bundle,
        },
        "rules": [
            {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
        ],
        "namespaceSelector": {"matchLabels": {"bench": "hooked"}},
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    return yaml.safe_dump(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "bench"},
            "webhooks": [hook],
        }
    )


def pod(name: str) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {
                "nodeName": "bench-nowhere",
                "containers": [{"name": "app", "image": "isthmus.dev/host", "command": ["sleep", "60"]}],
            },
        }
    )


class Api:
    def __init__(self, folder: Path) -> None:
        config = yaml.safe_load((folder / "kubeconfig").read_text())
        self.base = config["clusters"][0]["cluster"]["server"]
        token = config["users"][0]["user"]["token"]
        context = ssl.create_default_context(cafile=str(folder / "ca.crt"))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, ssl=context),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        self.count = 0

    async def create(self, namespace: str, labelled: bool | None = None) -> float:
        """One pod create: seconds it took."""
        self.count += 1
        url = f"{self.base}/api/v1/namespaces/{namespace}/pods"
        start = time.perf_counter()
        async with self.session.post(url, data=pod(f"bench-{self.count}")) as response:
            body = await response.read()
        elapsed = time.perf_counter() - start
        if response.status != 201:
            raise RuntimeError(f"create answered {response.status}: {body[:300]!r}")
        if labelled is not None:
            got = "webhook.isthmus.dev/patched" in orjson.loads(body)["metadata"].get("labels", {})
            if got != labelled:
                raise RuntimeError(
                    f"the webhook {'did not label' if labelled else 'labelled'} a pod in {namespace}"
                )
        return elapsed

    async def creates(self, namespace: str, labelled: bool | None) -> list[float]:
        for _ in range(WARMUP):
            await self.create(namespace, labelled)
        return [await self.create(namespace, labelled) for _ in range(CREATES)]


async def webhook_alone(pod_ip: str, ca_bundle: str) -> list[float]:
    """The same review posted straight to the webhook pod from the host, on one kept-alive connection."""
    context = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
    obj = orjson.loads(pod("direct"))
    latencies = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(WARMUP + CREATES):
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {"uid": str(uuid.uuid4()), "operation": "CREATE", "object": obj},
            }
            start = time.perf_counter()
            async with session.post(
                f"https://{pod_ip}:8443/mutate?timeout=10s",
                data=orjson.dumps(review),
                ssl=context,
                server_hostname=f"webhook.{NAMESPACE}.svc",
            ) as response:
                await response.read()
            if i >= WARMUP:
                latencies.append(time.perf_counter() - start)
    return latencies


async def measure(folder: Path, ca_bundle: str) -> dict[str, list[float]]:
    api = Api(folder)
    try:
        results = {"baseline": await api.creates("bench-hooked", None)}
        kubectl(folder, "apply", "-f", "-", stdin=configuration(ca_bundle))
        results["not matching"] = await api.creates("bench-plain", False)
        results["webhook"] = await api.creates("bench-hooked", True)
        pod_ip = kubectl(
            folder,
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app=webhook",
            "-o",
            "jsonpath={.items[0].status.podIP}",
        )
        results["webhook alone"] = await webhook_alone(pod_ip, ca_bundle)
        return results
    finally:
        await api.session.close()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench-admission starts a local cluster: run it as root")
    folder = Path(tempfile.mkdtemp(prefix="isthmus-bench-admission-"))
    try:
        isthmus("local", "up", "--clusters", "1", "--dir", str(folder))
        ca_bundle = deploy_webhook(folder)
        kubectl(folder, "create", "namespace", "bench-plain")
        kubectl(folder, "create", "namespace", "bench-hooked")
        kubectl(folder, "label", "namespace", "bench-hooked", "bench=hooked")
        for namespace in ("bench-plain", "bench-hooked"):  # pods need the namespace's default ServiceAccount
            while "default" not in kubectl(folder, "get", "sa", "-n", namespace, "-o", "name"):
                time.sleep(0.1)
        results = asyncio.run(measure(folder, ca_bundle))
    finally:
        isthmus("local", "down", "--purge", "--dir", str(folder))

    base50, base99 = percentile(results["baseline"], 50), percentile(results["baseline"], 99)
    print(
        f"admission benchmark ({os.cpu_count()} cores), {CREATES} pod creates each, one client; baseline: the "
        "same creates with no webhook configuration, same run"
    )
    for label, key in (
        ("pod create, no webhook (baseline)", "baseline"),
        ("pod create, webhook not matching", "not matching"),
        ("pod create, mutating webhook called", "webhook"),
    ):
        p50, p99 = percentile(results[key], 50), percentile(results[key], 99)
        print(
            f"{label:<38} p50 {p50 * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms   ratio p50 {p50 / base50:5.2f}  "
            f"p99 {p99 / base99:5.2f}"
        )
    alone50, alone99 = percentile(results["webhook alone"], 50), percentile(results["webhook alone"], 99)
    print(
        f"{'the webhook alone, host -> pod':<38} p50 {alone50 * 1000:7.2f} ms  p99 {alone99 * 1000:7.2f} ms"
    )
    hook50, hook99 = percentile(results["webhook"], 50), percentile(results["webhook"], 99)
    print(
        f"{'admission round trip added':<38} p50 {(hook50 - base50) * 1000:+7.2f} ms  "
        f"p99 {(hook99 - base99) * 1000:+7.2f} ms"
    )
    print(
        f"admission-bench base_p50_ms={base50 * 1000:.2f} base_p99_ms={base99 * 1000:.2f} "
        f"webhook_p50_ms={hook50 * 1000:.2f} webhook_p99_ms={hook99 * 1000:.2f} "
        f"added_p50_ms={(hook50 - base50) * 1000:.2f}"
    )


if __name__ == "__main__":
    main()
