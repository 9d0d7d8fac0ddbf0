"""Mutual TLS across two local clusters, as the seed's secure deployment has it: one root made with
`isthmus x ca root`, an intermediate per cluster (`isthmus x ca intermediate`) given to each cluster's CA as
Secret `cacerts` exactly as the seed creates it, `isthmus ca` (istio-citadel) in both clusters, and sidecars
whose agents get their certificates from their own cluster's CA and hand them to Envoy over SDS. Workload
certificates live 20 s here, so they rotate all through the module.

Observed from inside pods (curl), from Envoy's own counters (port 15090), and through PeerAuthentication
changes applied with kubectl in the primary cluster.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import meshkit
from tests.e2e.localkit import Kubectl, KubectlResult, isthmus_command
from tests.e2e.seedkit import (
    NAMESPACE,
    SAMPLES,
    generate_remote_kubeconfig,
    instantiate_credentials,
    wait_until,
)

pytestmark = pytest.mark.e2e

HELLO_URL = "http://helloworld.sample:5000/hello"
CERT_TTL = "20"
JsonObject = dict[str, Any]


@pytest.fixture(scope="module")
def kc(kubectl: Kubectl) -> Kubectl:
    """kubectl on the module's two clusters (conftest's `clusters`)."""
    return kubectl


def isthmus(*args: str) -> None:
    result = subprocess.run([isthmus_command(), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def sleep_container() -> JsonObject:
    return {"name": "sleep", "image": "curlimages/curl", "command": ["sleep", "3650d"]}


@pytest.fixture(scope="module")
def mesh(kc: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates from one root, a CA per cluster, the control plane in cluster1 (xDS over mTLS on 15011 too),
    helloworld v1 (cluster1) and v2 (cluster2) and sleep (cluster1) with sidecars, certificates and their xDS
    over mTLS, `plain` (cluster1) without a sidecar, and `impostor` (cluster1): a sidecar whose certificate comes
    from a CA of an unrelated root (its xDS is plaintext)."""
    certs = tmp_path_factory.mktemp("certs")
    isthmus("x", "ca", "root", "--out", str(certs / "root"))
    for cluster in ("cluster1", "cluster2"):
        isthmus(
            "x",
            "ca",
            "intermediate",
            "--root",
            str(certs / "root"),
            "--cluster",
            cluster,
            "--out",
            str(certs / cluster),
        )
    isthmus("x", "ca", "root", "--out", str(certs / "rogue-root"))
    isthmus(
        "x",
        "ca",
        "intermediate",
        "--root",
        str(certs / "rogue-root"),
        "--cluster",
        "rogue",
        "--out",
        str(certs / "rogue"),
    )

    ttl = {"ISTHMUS_CA_WORKLOAD_CERT_TTL": CERT_TTL}
    for cluster in ("cluster1", "cluster2"):
        meshkit.install_ca(kc, cluster, certs / cluster, env=ttl)
    meshkit.install_ca(kc, "cluster1", certs / "rogue", name="rogue-citadel", secret="rogue-cacerts")
    pilot = meshkit.install_primary(kc, secure=True)
    meshkit.install_remote(kc, "cluster2", pilot)
    remote = generate_remote_kubeconfig(kc, "cluster2", tmp_path_factory.mktemp("seed-work"))
    instantiate_credentials(kc, remote.path)

    docs = list(yaml.safe_load_all((SAMPLES / "helloworld.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    versions = {d["metadata"]["labels"]["version"]: d for d in docs if d["kind"] == "Deployment"}
    ca = meshkit.CA_ADDRESS
    for context, version in (("cluster1", "v1"), ("cluster2", "v2")):
        kc("create", "namespace", "sample", context=context)
        objects = [service, meshkit.with_sidecar(versions[version], ca=ca, secure_control_plane=True)]
        if context == "cluster1":
            rogue_roots = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "rogue-root", "namespace": "sample"},
                "data": {"root-cert.pem": (certs / "rogue-root" / "root-cert.pem").read_text()},
            }
            objects += [
                meshkit.with_sidecar(
                    meshkit.deployment("sleep", {"app": "sleep"}, sleep_container()),
                    ca=ca,
                    secure_control_plane=True,
                ),
                meshkit.deployment("plain", {"app": "plain"}, sleep_container()),
                rogue_roots,
                meshkit.with_sidecar(
                    meshkit.deployment("impostor", {"app": "impostor"}, sleep_container()),
                    ca=f"rogue-citadel.{NAMESPACE}.svc:8060",
                    roots="rogue-root",
                ),
            ]
        for obj in objects:
            kc("apply", "-n", "sample", "-f", "-", stdin=json.dumps(obj), context=context)
    for context, names in (
        ("cluster1", ("helloworld-v1", "sleep", "plain", "impostor")),
        ("cluster2", ("helloworld-v2",)),
    ):
        for name in names:
            kc("rollout", "status", f"deployment/{name}", "-n", "sample", "--timeout=120s", context=context)
    return certs


def curl(kc: Kubectl, app: str, *args: str) -> str:
    return kc("exec", "-n", "sample", f"deploy/{app}", "-c", "sleep", "--", "curl", "-sS", *args)


def hello_counts(kc: Kubectl, app: str, n: int, url: str = HELLO_URL, rate: str = "") -> Counter[str]:
    """`n` requests from `app`'s pod; counts of "v1" / "v2" / "HTTP <code>" / "failed" answers."""
    extra = ["--rate", rate] if rate else []
    out = kc.run(
        "exec",
        "-n",
        "sample",
        f"deploy/{app}",
        "-c",
        "sleep",
        "--",
        "curl",
        "-s",
        "--max-time",
        "5",
        *extra,
        "-w",
        "<<%{http_code}>>\n",
        f"{url}?[1-{n}]",
        check=False,
    ).out
    counts: Counter[str] = Counter()
    for body, code in re.findall(r"(.*?)<<(\d+)>>\n", out, re.DOTALL):
        version = re.search(r"Hello version: (v\d)", body)
        if code == "000":
            counts["failed"] += 1
        elif code != "200":
            counts[f"HTTP {code}"] += 1
        elif version:
            counts[version.group(1)] += 1
    return counts


def pod_ip(kc: Kubectl, app: str, context: str = "cluster1") -> str:
    return kc(
        "get",
        "pod",
        "-n",
        "sample",
        "-l",
        f"app={app}",
        "-o",
        "jsonpath={.items[0].status.podIP}",
        context=context,
    )


def envoy_stats(ip: str, fragment: str = "") -> list[str]:
    """The sidecar's Envoy counters (its Prometheus endpoint on 15090, reached at the pod's IP)."""
    with urllib.request.urlopen(f"http://{ip}:15090/stats/prometheus", timeout=5) as response:
        text = response.read().decode()
    return [line for line in text.splitlines() if not line.startswith("#") and fragment in line]


def envoy_stat(ip: str, pattern: str, **labels: str) -> float:
    """The sum of the sidecar's Envoy counters whose name matches `pattern` (a regex) and carry `labels`."""
    total = 0.0
    for line in envoy_stats(ip):
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if re.fullmatch(pattern, name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def peer_authentication(kc: Kubectl, mode: str) -> None:
    policy = {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "sample"},
        "spec": {"mtls": {"mode": mode}},
    }
    kc("apply", "-f", "-", stdin=json.dumps(policy))


def plaintext_answers(kc: Kubectl, ip: str) -> bool:
    """Whether helloworld-v1 answers plaintext from the pod without a sidecar."""
    result = kc.run(
        "exec",
        "-n",
        "sample",
        "deploy/plain",
        "-c",
        "sleep",
        "--",
        "curl",
        "-s",
        "--max-time",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        f"http://{ip}:5000/hello",
        check=False,
    )
    return result.out.strip() == "200"


# -- tests ----------------------------------------------------------------------------------------------------


def test_sidecars_in_both_clusters_talk_mtls_with_certificates_from_one_root(kc: Kubectl, mesh: Path) -> None:
    counts = hello_counts(kc, "sleep", 40)
    assert set(counts) == {"v1", "v2"} and sum(counts.values()) == 40, counts
    v2 = pod_ip(kc, "helloworld", "cluster2")
    assert envoy_stat(v2, "envoy_listener_ssl_handshake", envoy_listener_address="0.0.0.0_15006") > 0
    sleep = pod_ip(kc, "sleep")
    # Envoy's default tags cut a cluster's name at its first dot (the rest goes into the counter's name)
    cluster = "outbound|5000||helloworld"
    assert envoy_stat(sleep, r"envoy_cluster_.*ssl_handshake", envoy_cluster_name=cluster) > 0, envoy_stats(
        sleep, "ssl"
    )
    assert envoy_stat(sleep, r"envoy_cluster_.*ssl_connection_error", envoy_cluster_name=cluster) == 0


def test_plaintext_is_refused_by_strict_and_accepted_by_permissive(kc: Kubectl, mesh: Path) -> None:
    v1 = pod_ip(kc, "helloworld")
    try:
        peer_authentication(kc, "STRICT")
        wait_until("STRICT applied", lambda: not plaintext_answers(kc, v1) or None, 30)
        counts = hello_counts(kc, "sleep", 20)
        assert set(counts) == {"v1", "v2"}, counts  # mTLS from a sidecar still works
        peer_authentication(kc, "PERMISSIVE")
        wait_until("PERMISSIVE applied", lambda: plaintext_answers(kc, v1) or None, 30)
    finally:
        kc("delete", "peerauthentication", "default", "-n", "sample", "--ignore-not-found")


def test_a_workload_with_a_certificate_from_an_unrelated_root_is_refused(kc: Kubectl, mesh: Path) -> None:
    peer_authentication(kc, "STRICT")
    try:
        impostor = hello_counts(kc, "impostor", 10)
        assert not (impostor["v1"] or impostor["v2"]), impostor
        ip = pod_ip(kc, "impostor")
        assert envoy_stat(ip, r"envoy_sds_.*update_success") >= 2, envoy_stats(
            ip, "sds"
        )  # it has a certificate
        verify_errors = envoy_stat(
            ip, r"envoy_cluster_.*ssl_fail_verify_error", envoy_cluster_name="outbound|5000||helloworld"
        )
        assert verify_errors > 0, envoy_stats(ip, "ssl")  # and the peers' does not chain to its root
        good = hello_counts(kc, "sleep", 10)
        assert good["v1"] + good["v2"] == 10, good
    finally:
        kc("delete", "peerauthentication", "default", "-n", "sample", "--ignore-not-found")


def test_certificate_rotation_under_load_drops_no_request(kc: Kubectl, mesh: Path) -> None:
    sleep, v2 = pod_ip(kc, "sleep"), pod_ip(kc, "helloworld", "cluster2")
    before = envoy_stat(sleep, r"envoy_sds_.*update_success") + envoy_stat(v2, r"envoy_sds_.*update_success")
    started = time.monotonic()
    counts = hello_counts(kc, "sleep", 500, rate="20/s")  # 25 s: each 20 s certificate renews at least once
    assert time.monotonic() - started >= 20
    assert set(counts) <= {"v1", "v2"} and sum(counts.values()) == 500, counts
    after = envoy_stat(sleep, r"envoy_sds_.*update_success") + envoy_stat(v2, r"envoy_sds_.*update_success")
    assert after >= before + 2, (before, after)


def published_root(kc: Kubectl, namespace: str, context: str) -> str | None:
    result = kc.run(
        "get",
        "configmap",
        "istio-ca-root-cert",
        "-n",
        namespace,
        "-o",
        "jsonpath={.data.root-cert\\.pem}",
        context=context,
        check=False,
    )
    return result.out if result.code == 0 and result.out else None


def test_the_roots_are_published_in_every_namespace(kc: Kubectl, mesh: Path) -> None:
    root = (mesh / "root" / "root-cert.pem").read_text()
    for context in ("cluster1", "cluster2"):
        kc("create", "namespace", "late", context=context)
        published = wait_until(
            f"istio-ca-root-cert in a new namespace of {context}",
            functools.partial(published_root, kc, "late", context),
            30,
        )
        assert published.strip() == root.strip()


def in_sidecar(kc: Kubectl, *command: str) -> KubectlResult:
    """Run a command in the sleep pod's sidecar container (its token and roots are mounted there)."""
    return kc.run("exec", "-n", "sample", "deploy/sleep", "-c", "istio-proxy", "--", *command, check=False)


def test_a_csr_for_another_identity_is_refused_in_the_cluster(kc: Kubectl, mesh: Path) -> None:
    """From inside the sleep pod, with its own token, ask the CA for helloworld's identity."""
    script = (
        "import asyncio,sys;"
        "from pathlib import Path;"
        "from isthmus.security import pki;"
        "from isthmus.security.client import request_certificate, CaClientError;"
        "key=pki.KeyType.EC_P256.generate();"
        "csr=pki.new_csr(key,['spiffe://cluster.local/ns/sample/sa/helloworld']);"
        "token=Path('/var/run/secrets/kubernetes.io/serviceaccount/token').read_text();"
        "roots=Path('/var/run/secrets/istio/root-cert.pem').read_bytes();"
        "\ntry:\n asyncio.run(request_certificate('istio-citadel.istio-system.svc:8060',roots,token,csr))\n"
        "except CaClientError as e:\n print(e)"
    )
    result = in_sidecar(kc, sys.executable, "-c", script)
    assert "PERMISSION_DENIED" in result.out and "sa/helloworld" in result.out, result.out + result.err


FIXTURES = Path(__file__).parent / "fixtures"
PILOT_MTLS = f"istio-pilot.{NAMESPACE}.svc:15011"


def probe(kc: Kubectl, *args: str) -> str:
    """Run fixtures/xds_probe.py in the sleep pod's sidecar container (its certificate, token and roots)."""
    result = in_sidecar(kc, sys.executable, str(FIXTURES / "xds_probe.py"), PILOT_MTLS, *args)
    return result.out.strip() + result.err.strip()


def test_xds_over_mtls_refuses_no_certificate_and_another_pods_identity(kc: Kubectl, mesh: Path) -> None:
    sleep_pod = kc(
        "get", "pod", "-n", "sample", "-l", "app=sleep", "-o", "jsonpath={.items[0].metadata.name}"
    )
    assert probe(kc, "own", sleep_pod, "sample").startswith("OK "), "the pod itself must be served"
    assert probe(kc, "none").startswith("UNAVAILABLE")
    hello_pod = kc(
        "get", "pod", "-n", "sample", "-l", "app=helloworld", "-o", "jsonpath={.items[0].metadata.name}"
    )
    refused = probe(kc, "own", hello_pod, "sample")
    assert refused.startswith("PERMISSION_DENIED") and f"claims pod {hello_pod}.sample" in refused, refused


def test_only_the_control_plane_may_read_the_ca_keys(kc: Kubectl, mesh: Path) -> None:
    accounts = {
        "system:serviceaccount:istio-system:istio-citadel-service-account": "yes",
        "system:serviceaccount:istio-system:istio-reader-service-account": "no",
        "system:serviceaccount:sample:default": "no",
        "system:serviceaccount:sample:sleep": "no",
    }
    for context in ("cluster1", "cluster2"):
        for account, expected in accounts.items():
            answer = kc.run(
                "auth",
                "can-i",
                "get",
                "secret/cacerts",
                "-n",
                NAMESPACE,
                "--as",
                account,
                context=context,
                check=False,
            ).out.strip()
            assert answer == expected, (context, account, answer)
