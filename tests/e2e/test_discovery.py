"""`isthmus discovery` against three local clusters: cluster1 is the primary (the control plane runs on the host
with cluster1's kubeconfig), cluster2 and cluster3 are remotes registered exactly as the seed's guide does it
("Generate configuration files for remote clusters", "Instantiate the credentials"). Everything is observed
from the outside, over the process's HTTP endpoints (/ready, /debug/clusterz, /debug/endpointz,
/debug/registryz, /metrics) and the operating system's view of its connections.

The tests share one run and one discovery process (module-scoped), in the order an operator would meet these
situations: the remotes are registered, re-applied, changed, joined by bad Secrets, removed and restored, and
finally one remote's API server is stopped. Each test gets what it needs through fixtures and leaves the remotes
registered as it found them, so any one of them can also run alone (`-k`).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import urlparse

import pytest
import yaml

from tests.e2e.localkit import Kubectl, LocalClusters, isthmus_command
from tests.e2e.seedkit import (
    MULTICLUSTER_LABEL,
    NAMESPACE,
    PILOT_PORTS,
    READER,
    READER_RBAC,
    SAMPLES,
    RemoteKubeconfig,
    generate_remote_kubeconfig,
    instantiate_credentials,
    kubeconfig_text,
    pod_ips,
    reapply_credentials,
    wait_until,
)

T = TypeVar("T")
JsonObject = dict[str, Any]

HELLOWORLD = "helloworld.sample.svc.cluster.local"
PILOT = "istio-pilot.istio-system.svc.cluster.local"
GOOD_CLUSTERS = ("cluster1", "cluster2", "cluster3")
# The environment of the discovery process. REMOTE_CLUSTER_TIMEOUT is small so that readiness with an
# unreachable remote is quick; KUBE_BACKOFF_MAX bounds the retry delay of a failing watch (default 30 s), so
# that a restarted API server is picked up in seconds, not half a minute, and the module stays short.
REMOTE_CLUSTER_TIMEOUT = 4.0
KUBE_BACKOFF_MAX = 3.0
KUBE_REQUEST_TIMEOUT = 10.0  # the default: how long a listener that never answers holds a request
CLUSTER_STALE_AFTER = 15.0  # the default: when a cluster whose watches fail is reported stale
API_SERVER_DOWN = 30.0  # how long the remote's API server is stopped


class Sampler(threading.Thread, Generic[T]):
    """Calls `probe` every `interval` seconds in the background and keeps every answer (or the error), so a
    test can check what was seen *during* an operation, not only after it."""

    def __init__(self, probe: Callable[[], T], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.interval = interval
        self.samples: list[tuple[float, T]] = []
        self.errors: list[tuple[float, str]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            try:
                self.samples.append((now, self.probe()))
            except Exception as exc:
                self.errors.append((now, f"{type(exc).__name__}: {exc}"))
            self._halt.wait(self.interval)

    def __enter__(self) -> Sampler[T]:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=10)


# -- the discovery process --------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Loopback ports nobody listens on (all bound at once, so they differ, then released)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format: `name{labels} value` -> value."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@dataclass
class Startup:
    """What the process showed while it started."""

    spawned: float = 0.0
    first_answer: float = 0.0  # its HTTP server answered /ready (with anything)
    ready: float = 0.0  # /ready answered 200
    not_ready_answers: int = 0
    clusterz_at_ready: list[JsonObject] = field(default_factory=list)
    helloworld_at_ready: list[JsonObject] = field(default_factory=list)


class DiscoveryProcess:
    """`isthmus discovery` for the primary cluster1, run on the host as a subprocess."""

    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        http, monitoring, grpc = free_ports(3)
        self.http = f"127.0.0.1:{http}"
        self.monitoring = f"127.0.0.1:{monitoring}"
        self.grpc = f"127.0.0.1:{grpc}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup = Startup()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {
            **os.environ,
            "ISTHMUS_REMOTE_CLUSTER_TIMEOUT": str(REMOTE_CLUSTER_TIMEOUT),
            "ISTHMUS_KUBE_BACKOFF_MAX": str(KUBE_BACKOFF_MAX),
        }
        command = [
            isthmus_command(),
            "discovery",
            "--kubeconfig",
            str(self.kubeconfig),
            "--context",
            "cluster1",
            "--cluster-id",
            "cluster1",
            "--namespace",
            NAMESPACE,
            "--http-address",
            self.http,
            "--monitoring-address",
            self.monitoring,
            # not in use yet, but never the default 15010 of a user's own control plane
            "--grpc-address",
            self.grpc,
        ]
        with self.log_path.open("wb") as log:
            self.startup.spawned = time.monotonic()
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, (
            f"isthmus discovery exited ({self.proc and self.proc.returncode}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @staticmethod
    def _get(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def get(self, path: str) -> tuple[int, str]:
        return self._get(f"http://{self.http}{path}")

    def json(self, path: str) -> Any:
        code, body = self.get(path)
        assert code == 200, f"GET {path}: {code} {body}"
        return json.loads(body)

    def ready(self) -> int:
        return self.get("/ready")[0]

    def clusterz(self) -> list[JsonObject]:
        entries: list[JsonObject] = self.json("/debug/clusterz")
        return entries

    def cluster(self, cluster: str, secret: str | None = None) -> JsonObject | None:
        """The clusterz entry of a cluster id (and Secret, when given)."""
        for entry in self.clusterz():
            if entry["id"] == cluster and (secret is None or entry["secret"] == f"{NAMESPACE}/{secret}"):
                return entry
        return None

    def endpoints(self, host: str) -> list[JsonObject]:
        by_host: dict[str, list[JsonObject]] = self.json(f"/debug/endpointz?service={host}")
        return by_host.get(host, [])

    def all_endpoints(self) -> dict[str, list[JsonObject]]:
        by_host: dict[str, list[JsonObject]] = self.json("/debug/endpointz")
        return by_host

    def endpoint_counts(self) -> Counter[str]:
        """How many endpoints each cluster has, over every service."""
        return Counter(e["cluster"] for endpoints in self.all_endpoints().values() for e in endpoints)

    def registryz(self) -> dict[str, list[JsonObject]]:
        by_cluster: dict[str, list[JsonObject]] = self.json("/debug/registryz")
        return by_cluster

    def metrics(self) -> dict[str, float]:
        code, body = self._get(f"http://{self.monitoring}/metrics")
        assert code == 200, f"GET /metrics: {code}"
        return parse_metrics(body)

    def api_connections(self, server: str) -> set[int]:
        """Local ports of this process's established connections to an API server (what `ss` shows)."""
        url = urlparse(server)
        peer = f"{socket.gethostbyname(url.hostname or '')}:{url.port or 443}"
        out = subprocess.run(
            ["ss", "-Htnp", "state", "established"], capture_output=True, text=True, check=True
        ).stdout
        ports = set()
        for line in out.splitlines():
            columns = line.split()
            if len(columns) >= 5 and columns[3] == peer and f"pid={self.pid}," in line:
                ports.add(int(columns[2].rpartition(":")[2]))
        return ports


class SilentListener:
    """A loopback TCP listener that accepts connections and never answers: an API server that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._halt.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # kept open, never read from, never written to

    def close(self) -> None:
        self._halt.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def addresses(endpoints: list[JsonObject], cluster: str | None = None) -> set[str]:
    return {e["address"] for e in endpoints if cluster is None or e["cluster"] == cluster}


def never_fewer(sampler: Sampler[Counter[str]], baseline: Counter[str], clusters: tuple[str, ...]) -> None:
    """Every sample had at least the baseline's endpoints in each of `clusters`."""
    assert not sampler.errors, f"endpointz did not answer: {sampler.errors[:3]}"
    assert sampler.samples, "no sample of endpointz was taken"
    start = sampler.samples[0][0]
    for when, counts in sampler.samples:
        for cluster in clusters:
            assert counts[cluster] >= baseline[cluster], (
                f"{when - start:.2f} s in: {cluster} had {counts[cluster]} endpoints, fewer than the "
                f"{baseline[cluster]} before ({len(sampler.samples)} samples)"
            )


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalClusters]:
    """Three local clusters for this module, removed afterwards (also on failure)."""
    run = LocalClusters(tmp_path_factory.mktemp("local"))
    try:
        run.up(3)
        yield run
    finally:
        run.down(purge=True)


@pytest.fixture(scope="module")
def kc(local_run: LocalClusters, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(local_run.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's WORK_DIR."""
    return tmp_path_factory.mktemp("seed-work")


@pytest.fixture(scope="module")
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


@pytest.fixture(scope="module")
def prepared(kc: Kubectl) -> str:
    """The clusters as the seed leaves them before the credentials: istio-system and the pilot pod in the
    primary, the reader account in each remote, helloworld v1 in cluster1 and v2 in cluster2 (the Service in
    both). Returns the pilot pod's IP (the seed's PILOT_POD_IP)."""
    kc("create", "namespace", NAMESPACE)
    pilot = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "istio-pilot", "namespace": NAMESPACE, "labels": {"istio": "pilot"}},
        "spec": {
            "containers": [{"name": "discovery", "image": "isthmus.dev/host", "command": ["sleep", "inf"]}]
        },
    }
    kc("apply", "-f", "-", stdin=json.dumps(pilot))
    for remote in ("cluster2", "cluster3"):
        kc("create", "namespace", NAMESPACE, context=remote)
        kc("apply", "-f", "-", stdin=READER_RBAC, context=remote)
    helloworld = str(SAMPLES / "helloworld.yaml")
    for context in ("cluster1", "cluster2"):
        kc("create", "namespace", "sample", context=context)
        kc("apply", "-n", "sample", "-f", helloworld, "-l", "service=helloworld", context=context)
    kc("apply", "-n", "sample", "-f", helloworld, "-l", "version=v1", context="cluster1")
    kc("apply", "-n", "sample", "-f", helloworld, "-l", "version=v2", context="cluster2")
    kc("rollout", "status", "deployment/helloworld-v1", "-n", "sample", "--timeout=90s", context="cluster1")
    kc("rollout", "status", "deployment/helloworld-v2", "-n", "sample", "--timeout=90s", context="cluster2")
    kc("wait", "--for=condition=Ready", "pod/istio-pilot", "-n", NAMESPACE, "--timeout=60s")
    # PILOT_POD_IP=$(kubectl -n istio-system get pod -l istio=pilot -o jsonpath='{.items[0].status.podIP}')
    pilot_ip = kc(
        "get", "pod", "-n", NAMESPACE, "-l", "istio=pilot", "-o", "jsonpath={.items[0].status.podIP}"
    )
    assert pilot_ip
    return pilot_ip


@pytest.fixture(scope="module")
def discovery(
    local_run: LocalClusters,
    kc: Kubectl,
    prepared: str,
    work: Path,
    silent_listener: SilentListener,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DiscoveryProcess]:
    """`isthmus discovery` for cluster1, started while two remotes registered in istio-system cannot be reached
    (a loopback port nobody listens on, a listener that never answers); stopped at the end (also on failure)."""
    reader = generate_remote_kubeconfig(kc, "cluster2", work / "unreachable")
    closed_port = free_ports(1)[0]
    for name, server in (
        ("closed-port", f"https://127.0.0.1:{closed_port}"),
        ("silent-listener", f"https://127.0.0.1:{silent_listener.port}"),
    ):
        path = work / "unreachable" / name
        path.write_text(kubeconfig_text(name, server, reader.ca_data, reader.token))
        instantiate_credentials(kc, path)
    process = DiscoveryProcess(local_run.kubeconfig, tmp_path_factory.mktemp("discovery") / "discovery.log")
    try:
        process.start()
        startup = process.startup
        deadline = startup.spawned + REMOTE_CLUSTER_TIMEOUT + 30
        while time.monotonic() < deadline:
            process.alive()
            try:
                code = process.ready()
            except OSError:
                time.sleep(0.02)
                continue
            now = time.monotonic()
            startup.first_answer = startup.first_answer or now
            if code == 200:
                startup.ready = now
                startup.clusterz_at_ready = process.clusterz()
                startup.helloworld_at_ready = process.endpoints(HELLOWORLD)
                break
            startup.not_ready_answers += 1
            time.sleep(0.05)
        yield process
    finally:
        process.stop()
        print(f"\n[discovery] log: {process.log_path}")


@dataclass
class Registration:
    kubeconfig: RemoteKubeconfig  # what the remote's Secret holds now
    after_create: float  # seconds from `kubectl create secret` to the endpoints in endpointz
    after_label: float  # ... from `kubectl label secret` (the Secret is only selected once labelled)


def register(kc: Kubectl, discovery: DiscoveryProcess, work: Path, remote: str, host: str) -> Registration:
    """Generate the remote's kubeconfig and instantiate its credentials; measure how soon endpointz lists an
    endpoint of `host` in that cluster."""
    kubeconfig = generate_remote_kubeconfig(kc, remote, work)
    assert kubeconfig.path.name == remote
    created = time.monotonic()
    kc("create", "secret", "generic", remote, "--from-file", str(kubeconfig.path), "-n", NAMESPACE)
    labelled = time.monotonic()
    kc("label", "secret", remote, MULTICLUSTER_LABEL, "-n", NAMESPACE)
    wait_until(
        f"{remote}'s endpoints of {host} in endpointz",
        lambda: addresses(discovery.endpoints(host), remote),
        15,
        interval=0.01,
    )
    seen = time.monotonic()
    return Registration(kubeconfig, seen - created, seen - labelled)


@pytest.fixture(scope="module")
def cluster2(kc: Kubectl, discovery: DiscoveryProcess, work: Path) -> Registration:
    """cluster2 registered by the seed's steps."""
    return register(kc, discovery, work, "cluster2", HELLOWORLD)


@pytest.fixture(scope="module")
def cluster3(kc: Kubectl, discovery: DiscoveryProcess, work: Path) -> Registration:
    """cluster3 registered by the seed's steps (it has no helloworld: its own kubernetes Service is waited for)."""
    return register(kc, discovery, work, "cluster3", "kubernetes.default.svc.cluster.local")


# -- tests ------------------------------------------------------------------------------------------------


def test_a_remote_unreachable_at_start_does_not_hold_back_readiness(
    discovery: DiscoveryProcess, silent_listener: SilentListener
) -> None:
    startup = discovery.startup
    assert startup.ready, f"/ready never answered 200:\n{discovery.log_tail()}"
    assert silent_listener.accepted, "the control plane never tried the remote that does not answer"
    serving = startup.first_answer - startup.spawned
    waited = startup.ready - startup.first_answer
    print(
        f"\n[readiness] HTTP up {serving:.2f} s after spawn; ready {waited:.2f} s later "
        f"({startup.not_ready_answers} answers 503 before), ISTHMUS_REMOTE_CLUSTER_TIMEOUT={REMOTE_CLUSTER_TIMEOUT}"
    )
    assert waited <= REMOTE_CLUSTER_TIMEOUT + 1.5, (
        f"ready {waited:.2f} s after the server came up: the unreachable remotes held it back beyond "
        f"ISTHMUS_REMOTE_CLUSTER_TIMEOUT={REMOTE_CLUSTER_TIMEOUT}"
    )
    assert startup.ready - startup.spawned <= REMOTE_CLUSTER_TIMEOUT + 10
    at_ready = {(e["id"], e["secret"]): e for e in startup.clusterz_at_ready}
    primary = at_ready[("cluster1", "")]
    assert primary["synced"] and primary["primary"], primary
    for name in ("closed-port", "silent-listener"):
        entry = at_ready.get((name, f"{NAMESPACE}/{name}"))
        assert entry is not None, (
            f"the remote {name} is not in clusterz at readiness: {startup.clusterz_at_ready}"
        )
        assert not entry["synced"], entry
    assert "cluster1" in {e["cluster"] for e in startup.helloworld_at_ready}, (
        "ready before the primary's endpoints were known"
    )
    assert discovery.ready() == 200


def test_a_service_in_two_clusters_merges_into_one(
    kc: Kubectl, discovery: DiscoveryProcess, cluster2: Registration
) -> None:
    print(
        f"\n[registration] cluster2's helloworld endpoint in endpointz {cluster2.after_create:.3f} s after "
        f"`kubectl create secret`, {cluster2.after_label:.3f} s after `kubectl label secret`"
    )
    assert cluster2.after_label <= 5, "endpointz should list the remote's endpoints soon after the Secret"
    v1 = pod_ips(kc, "app=helloworld,version=v1", "cluster1")
    v2 = pod_ips(kc, "app=helloworld,version=v2", "cluster2")
    expected = {(ip, name, "cluster1") for name, ip in v1.items()} | {
        (ip, name, "cluster2") for name, ip in v2.items()
    }
    endpoints = discovery.endpoints(HELLOWORLD)
    assert {(e["address"], e["workload"], e["cluster"]) for e in endpoints} == expected, endpoints
    for e in endpoints:
        assert (e["port"], e["portName"]) == (5000, "http"), e
        assert e["labels"]["topology.istio.io/cluster"] == e["cluster"], e
        assert e["labels"]["app"] == "helloworld", e
        assert e["identity"] == "spiffe://cluster.local/ns/sample/sa/default", e
    registry = discovery.registryz()
    for context in ("cluster1", "cluster2"):
        vip = kc(
            "get", "svc", "helloworld", "-n", "sample", "-o", "jsonpath={.spec.clusterIP}", context=context
        )
        service = next(s for s in registry[context] if s["hostname"] == HELLOWORLD)
        assert service["vip"] == vip, (context, service)
    entry = good_entry(discovery, "cluster2")
    assert (entry["secret"], entry["key"], entry["state"], entry["error"]) == (
        f"{NAMESPACE}/cluster2",
        "cluster2",
        "synced",
        "",
    ), entry


def test_the_seeds_selectorless_istio_pilot_in_a_remote(
    kc: Kubectl, discovery: DiscoveryProcess, prepared: str, cluster3: Registration
) -> None:
    pilot_ip = prepared
    ports = [{"port": port, "name": name} for name, port in PILOT_PORTS.items()]
    manifest = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-pilot", "namespace": NAMESPACE},
            "spec": {"clusterIP": "None", "ports": ports},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "istio-pilot", "namespace": NAMESPACE},
            "subsets": [{"addresses": [{"ip": pilot_ip}], "ports": ports}],
        },
    ]
    started = time.monotonic()
    kc("apply", "-f", "-", stdin=yaml.safe_dump_all(manifest), context="cluster3")
    endpoints = wait_until(
        "istio-pilot's address on every port in endpointz",
        lambda: found if len(found := discovery.endpoints(PILOT)) == len(PILOT_PORTS) else None,
        10,
        interval=0.02,
    )
    took = time.monotonic() - started
    print(f"\n[istio-pilot] {pilot_ip} in endpointz {took:.2f} s after `kubectl apply` started")
    assert {(e["address"], e["cluster"]) for e in endpoints} == {(pilot_ip, "cluster3")}, endpoints
    assert {e["portName"]: e["port"] for e in endpoints} == PILOT_PORTS, endpoints
    assert all(e["labels"]["topology.istio.io/cluster"] == "cluster3" for e in endpoints), endpoints
    service = next(s for s in discovery.registryz()["cluster3"] if s["hostname"] == PILOT)
    assert service["headless"] and service["vip"] is None, service


def test_reapplying_the_identical_secret_drops_no_endpoint(
    kc: Kubectl, discovery: DiscoveryProcess, cluster2: Registration
) -> None:
    baseline = discovery.endpoint_counts()
    connections = discovery.api_connections(cluster2.kubeconfig.server)
    assert connections, "no connection to cluster2's API server"
    with Sampler(discovery.endpoint_counts) as sampler:
        reapply_credentials(kc, cluster2.kubeconfig.path)  # adds kubectl's last-applied annotation
        reapply_credentials(kc, cluster2.kubeconfig.path)  # changes nothing at all
        kc("annotate", "secret", "cluster2", "-n", NAMESPACE, "touched=1", "--overwrite")
        time.sleep(2)  # keep watching after the last write
    never_fewer(sampler, baseline, GOOD_CLUSTERS)
    print(f"\n[re-apply] {len(sampler.samples)} samples of endpointz, none with fewer endpoints")
    still = discovery.api_connections(cluster2.kubeconfig.server)
    assert connections <= still, (
        f"the identical kubeconfig made the control plane reconnect: connections {sorted(connections)} "
        f"-> {sorted(still)}"
    )
    entry = discovery.cluster("cluster2")
    assert entry is not None and entry["state"] == "synced" and not entry["error"], entry


def _reconnected(discovery: DiscoveryProcess, server: str, before: set[int]) -> set[int]:
    now = discovery.api_connections(server)
    return now if now and not now & before else set()


def test_a_changed_kubeconfig_reconnects_and_keeps_endpoints(
    kc: Kubectl, discovery: DiscoveryProcess, cluster2: Registration, work: Path
) -> None:
    original = cluster2.kubeconfig
    server = original.server
    baseline = discovery.endpoint_counts()

    # The same credentials with another cluster name inside.
    renamed = generate_remote_kubeconfig(kc, "cluster2", work / "renamed", cluster_name="remote-two")
    renamed.path.rename(renamed.path.with_name("cluster2"))  # the file name is the data key: still cluster2
    before = discovery.api_connections(server)
    started = time.monotonic()
    with Sampler(discovery.endpoint_counts) as sampler:
        reapply_credentials(kc, work / "renamed" / "cluster2")
        after = wait_until(
            "new connections to cluster2's API server", lambda: _reconnected(discovery, server, before), 15
        )
        took = time.monotonic() - started
        time.sleep(1)
    never_fewer(sampler, baseline, GOOD_CLUSTERS)
    print(f"\n[reconnect] renamed cluster: connections {sorted(before)} -> {sorted(after)} in {took:.2f} s")

    # A new token of the same account; then the old token is revoked.
    old_token_secret = kc(
        "get", "sa", READER, "-n", NAMESPACE, "-o", "jsonpath={.secrets[0].name}", context="cluster2"
    )
    rotated = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": f"{READER}-token-rotated",
            "namespace": NAMESPACE,
            "annotations": {"kubernetes.io/service-account.name": READER},
        },
    }
    kc("apply", "-f", "-", stdin=json.dumps(rotated), context="cluster2")
    fresh = generate_remote_kubeconfig(
        kc, "cluster2", work / "rotated", secret_name=f"{READER}-token-rotated"
    )
    assert fresh.token != original.token
    before = discovery.api_connections(server)
    started = time.monotonic()
    with Sampler(discovery.endpoint_counts) as sampler:
        reapply_credentials(kc, fresh.path)
        cluster2.kubeconfig = fresh  # what the Secret holds now (the old token is revoked below)
        after = wait_until(
            "new connections to cluster2's API server", lambda: _reconnected(discovery, server, before), 15
        )
        took = time.monotonic() - started
        kc("delete", "secret", old_token_secret, "-n", NAMESPACE, context="cluster2")
        time.sleep(1)
    never_fewer(sampler, baseline, GOOD_CLUSTERS)
    print(f"[reconnect] new token: connections {sorted(before)} -> {sorted(after)} in {took:.2f} s")
    reader = Kubectl(work / "old-token", work / "old-token-cache")
    reader.kubeconfig.write_text(
        kubeconfig_text("cluster2", original.server, original.ca_data, original.token)
    )
    wait_until(
        "the old token to be refused",
        lambda: reader.run("get", "pods", "-A", context="cluster2", check=False).code != 0,
        10,
    )

    # The cluster works through the new credentials: a change made now shows up.
    kc(
        "create",
        "service",
        "clusterip",
        "reconnect-probe",
        "--tcp=5000:5000",
        "-n",
        "sample",
        context="cluster2",
    )
    kc("set", "selector", "service", "reconnect-probe", "app=helloworld", "-n", "sample", context="cluster2")
    v2 = set(pod_ips(kc, "app=helloworld,version=v2", "cluster2").values())
    wait_until(
        "the new Service's endpoints in endpointz",
        lambda: addresses(discovery.endpoints("reconnect-probe.sample.svc.cluster.local"), "cluster2") == v2,
        10,
    )
    kc("delete", "service", "reconnect-probe", "-n", "sample", context="cluster2")
    entry = discovery.cluster("cluster2")
    assert entry is not None and entry["state"] == "synced" and not entry["error"], entry


@dataclass(frozen=True)
class BadSecret:
    secret: str
    key: str
    state: str  # refused: never connected; failed: connects and fails
    says: tuple[str, ...]  # what the error must say (case-insensitive): every phrase; "a|b": a or b


BAD_SECRETS = {
    "underscore-key": BadSecret("cluster-3", "cluster_3", "refused", ("cluster_3", "dns-1123")),
    "malformed-kubeconfig": BadSecret("malformed", "malformed", "refused", ("kubeconfig", "yaml")),
    "closed-port": BadSecret("closed-port", "closed-port", "failed", ("could not connect", "refused")),
    "silent-listener": BadSecret(
        "silent-listener", "silent-listener", "failed", ("accepted the connection", "did not answer")
    ),
    "reader-without-rbac": BadSecret(
        "no-rbac", "no-rbac", "failed", ("403|forbidden", "system:serviceaccount:istio-system:no-rbac-reader")
    ),
    "primary-id": BadSecret("impostor", "cluster1", "refused", ("primary",)),
}


@dataclass
class BadState:
    before: list[JsonObject]  # helloworld's endpoints before the bad Secrets
    sampler: Sampler[Counter[str]]
    baseline: Counter[str]


@pytest.fixture(scope="module")
def bad_secrets(
    kc: Kubectl, discovery: DiscoveryProcess, cluster2: Registration, cluster3: Registration, work: Path
) -> Iterator[BadState]:
    """The bad Secrets next to the good ones (closed-port and silent-listener exist since the start)."""
    state = BadState(discovery.endpoints(HELLOWORLD), Sampler(discovery.endpoint_counts), Counter())
    state.baseline = discovery.endpoint_counts()
    state.sampler.start()
    try:
        _create_bad_secrets(kc, work / "bad", cluster2, cluster3)
        yield state
    finally:
        state.sampler.stop()
        for case in BAD_SECRETS.values():
            kc.run("delete", "secret", case.secret, "-n", NAMESPACE, "--ignore-not-found", check=False)


def _create_bad_secrets(kc: Kubectl, bad: Path, cluster2: Registration, cluster3: Registration) -> None:
    # A cluster whose file name has an underscore: the Secret is named validly, the key is the file's name.
    underscore = generate_remote_kubeconfig(kc, "cluster3", bad, cluster_name="cluster_3")
    instantiate_credentials(kc, underscore.path, secret="cluster-3")
    # A kubeconfig mangled on its way (an unclosed flow sequence).
    malformed = bad / "malformed"
    malformed.write_text(kubeconfig_text("malformed", cluster3.kubeconfig.server, "x", "y") + "extra: [\n")
    instantiate_credentials(kc, malformed)
    # A reader account with no RBAC at all.
    kc("create", "serviceaccount", "no-rbac-reader", "-n", NAMESPACE, context="cluster3")
    no_rbac = generate_remote_kubeconfig(kc, "cluster3", bad / "no-rbac", service_account="no-rbac-reader")
    no_rbac.path.rename(bad / "no-rbac" / "no-rbac")
    instantiate_credentials(kc, bad / "no-rbac" / "no-rbac")
    # A remote that claims the primary's id.
    (bad / "impostor").mkdir()
    impostor = bad / "impostor" / "cluster1"
    impostor.write_text(cluster2.kubeconfig.path.read_text())
    instantiate_credentials(kc, impostor, secret="impostor")


def _says(error: str, phrases: tuple[str, ...]) -> bool:
    return all(any(p in error.lower() for p in phrase.split("|")) for phrase in phrases)


@pytest.mark.parametrize("case", list(BAD_SECRETS), ids=list(BAD_SECRETS))
def test_a_bad_secret_is_reported_with_its_secret_and_key(
    case: str, discovery: DiscoveryProcess, bad_secrets: BadState
) -> None:
    bad = BAD_SECRETS[case]

    def reported() -> JsonObject | None:
        entry = discovery.cluster(bad.key, bad.secret)
        return entry if entry and entry["error"] else None

    entry = wait_until(f"clusterz to report {case}", reported, KUBE_REQUEST_TIMEOUT + 10)
    print(f"\n[{case}] {entry['state']}: {entry['error']}")
    assert (entry["secret"], entry["key"], entry["primary"]) == (f"{NAMESPACE}/{bad.secret}", bad.key, False)
    assert entry["state"] == bad.state and not entry["synced"], entry
    assert _says(entry["error"], bad.says), f"the error should say {bad.says}: {entry['error']}"
    if bad.key != "cluster1":
        assert not any(
            e["cluster"] == bad.key for endpoints in discovery.all_endpoints().values() for e in endpoints
        )


def good_entry(discovery: DiscoveryProcess, cluster: str) -> JsonObject:
    """The clusterz entry of a good cluster: the primary's own, or the one from the seed's Secret."""
    secret = "" if cluster == "cluster1" else f"{NAMESPACE}/{cluster}"
    return next(e for e in discovery.clusterz() if e["id"] == cluster and e["secret"] == secret)


def remote_gauges(discovery: DiscoveryProcess) -> dict[str, float]:
    metrics = discovery.metrics()
    return {
        s: metrics.get(f'isthmus_remote_clusters{{state="{s}"}}', -1) for s in ("synced", "failed", "refused")
    }


def test_the_good_clusters_keep_serving_beside_bad_secrets(
    discovery: DiscoveryProcess, bad_secrets: BadState
) -> None:
    wait_until(
        "every bad Secret in clusterz",
        lambda: all((discovery.cluster(b.key, b.secret) or {}).get("error") for b in BAD_SECRETS.values()),
        KUBE_REQUEST_TIMEOUT + 10,
    )
    for cluster in GOOD_CLUSTERS:
        entry = good_entry(discovery, cluster)
        assert (entry["state"], entry["synced"], entry["stale"], entry["error"]) == (
            "synced",
            True,
            False,
            "",
        ), entry
    assert discovery.endpoints(HELLOWORLD) == bad_secrets.before, "helloworld's endpoints changed"
    never_fewer(bad_secrets.sampler, bad_secrets.baseline, GOOD_CLUSTERS)
    assert discovery.ready() == 200
    expected = {"synced": 2, "failed": 3, "refused": 3}
    gauges = wait_until(
        "the remote cluster gauges", lambda: (g := remote_gauges(discovery)) == expected and g, 5
    )
    assert gauges == expected


def test_deleting_bad_secrets_clears_their_entries(
    kc: Kubectl, discovery: DiscoveryProcess, bad_secrets: BadState
) -> None:
    for case in BAD_SECRETS.values():
        kc("delete", "secret", case.secret, "-n", NAMESPACE, "--ignore-not-found")
    wait_until(
        "only the good clusters in clusterz",
        lambda: sorted(e["id"] for e in discovery.clusterz()) == list(GOOD_CLUSTERS),
        10,
    )
    expected = {"synced": 2, "failed": 0, "refused": 0}
    wait_until("the gauges to count only the good remotes", lambda: remote_gauges(discovery) == expected, 5)


def _gone(discovery: DiscoveryProcess, cluster: str) -> bool:
    return (
        discovery.cluster(cluster) is None
        and discovery.endpoint_counts()[cluster] == 0
        and cluster not in discovery.registryz()
    )


def _cluster_metrics(discovery: DiscoveryProcess, cluster: str) -> dict[str, float]:
    """Non-zero series of /metrics about one cluster."""
    return {k: v for k, v in discovery.metrics().items() if f'cluster="{cluster}"' in k and v != 0}


def test_deleting_the_key_or_the_secret_removes_the_cluster(
    kc: Kubectl, discovery: DiscoveryProcess, cluster3: Registration
) -> None:
    path = cluster3.kubeconfig.path
    lingering: list[str] = []
    initial = wait_until("cluster3's endpoints", lambda: discovery.endpoint_counts()["cluster3"], 15)
    try:
        for how in ("key", "secret"):
            wait_until("cluster3's endpoints", lambda: discovery.endpoint_counts()["cluster3"] > 0, 15)
            baseline = discovery.endpoint_counts()
            with Sampler(discovery.endpoint_counts) as sampler:
                started = time.monotonic()
                if how == "key":
                    remove_key = '[{"op": "remove", "path": "/data/cluster3"}]'
                    kc("patch", "secret", "cluster3", "-n", NAMESPACE, "--type=json", "-p", remove_key)
                else:
                    kc("delete", "secret", "cluster3", "-n", NAMESPACE)
                wait_until(
                    f"cluster3 gone after deleting the {how}", lambda: _gone(discovery, "cluster3"), 10
                )
                took = time.monotonic() - started
            never_fewer(sampler, baseline, ("cluster1", "cluster2"))
            print(
                f"\n[remove] deleting the {how}: cluster3 and its {baseline['cluster3']} endpoints gone "
                f"in {took:.2f} s"
            )
            assert PILOT not in discovery.all_endpoints(), "istio-pilot's only endpoint was cluster3's"
            try:  # the gauges may be refreshed only every second
                wait_until("no cluster3 in /metrics", lambda: not _cluster_metrics(discovery, "cluster3"), 3)
            except AssertionError:
                lingering.append(f"after deleting the {how}: {_cluster_metrics(discovery, 'cluster3')}")
            if how == "key":
                data = json.dumps({"data": {"cluster3": base64.b64encode(path.read_bytes()).decode()}})
                kc("patch", "secret", "cluster3", "-n", NAMESPACE, "-p", data)
            else:
                instantiate_credentials(kc, path)
            wait_until(
                "cluster3 back", lambda: (discovery.cluster("cluster3") or {}).get("state") == "synced", 15
            )
    finally:
        key = kc.run(
            "get", "secret", "cluster3", "-n", NAMESPACE, "-o", "jsonpath={.data.cluster3}", check=False
        )
        if key.code != 0 or not key.out:
            kc.run("delete", "secret", "cluster3", "-n", NAMESPACE, "--ignore-not-found", check=False)
            instantiate_credentials(kc, path)
    wait_until(
        "all of cluster3's endpoints back",
        lambda: discovery.endpoint_counts()["cluster3"] == initial,
        10,
    )
    assert not lingering, f"/metrics still reports the removed cluster3: {lingering}"


def new_v2_pod(kc: Kubectl, known: set[str]) -> dict[str, str]:
    return {
        n: ip for n, ip in pod_ips(kc, "app=helloworld,version=v2", "cluster2").items() if ip not in known
    }


def endpoint_of(discovery: DiscoveryProcess, address: str) -> JsonObject | None:
    return next((e for e in discovery.endpoints(HELLOWORLD) if e["address"] == address), None)


def cluster2_synced(discovery: DiscoveryProcess) -> bool:
    entry = good_entry(discovery, "cluster2")
    return bool(entry["state"] == "synced" and not entry["error"] and not entry["stale"])


def test_a_stopped_remote_api_server_keeps_endpoints_and_resyncs(
    kc: Kubectl, local_run: LocalClusters, discovery: DiscoveryProcess, cluster2: Registration
) -> None:
    baseline = discovery.endpoint_counts()
    known = [e for e in discovery.endpoints(HELLOWORLD) if e["cluster"] == "cluster2"]
    assert known
    stale = 'isthmus_cluster_stale{cluster="cluster2"}'
    readiness = Sampler(discovery.ready, interval=0.1)
    counts = Sampler(discovery.endpoint_counts)
    scaled = False
    try:
        with readiness, counts:
            local_run.cli("stop", "cluster2")
            try:
                down_at = time.monotonic()
                wait_until(
                    "cluster2 stale in clusterz",
                    lambda: good_entry(discovery, "cluster2")["stale"],
                    CLUSTER_STALE_AFTER + 10,
                )
                stale_after = time.monotonic() - down_at
                wait_until("cluster2 stale in /metrics", lambda: discovery.metrics().get(stale) == 1, 5)
                entry = good_entry(discovery, "cluster2")
                assert entry["state"] == "stale" and entry["error"], entry
                metrics = discovery.metrics()
                for other in ("cluster1", "cluster3"):
                    assert metrics[f'isthmus_cluster_stale{{cluster="{other}"}}'] == 0, other
                print(
                    f"\n[outage] cluster2 stale {stale_after:.1f} s after its API server stopped: {entry['error']}"
                )
                time.sleep(max(0.0, down_at + API_SERVER_DOWN - time.monotonic()))
                still = [e for e in discovery.endpoints(HELLOWORLD) if e["cluster"] == "cluster2"]
                assert still == known, "cluster2's last-known endpoints changed while it was down"
            finally:
                local_run.cli("start", "cluster2")
            up_at = time.monotonic()
            kc("scale", "deployment", "helloworld-v2", "-n", "sample", "--replicas=2", context="cluster2")
            scaled = True
            new_pods = wait_until("the new helloworld-v2 pod", lambda: new_v2_pod(kc, addresses(known)), 30)
            ((new_pod, new_ip),) = new_pods.items()
            wait_until(
                "the new pod's endpoint in endpointz",
                lambda: new_ip in addresses(discovery.endpoints(HELLOWORLD), "cluster2"),
                KUBE_BACKOFF_MAX + 20,
            )
            seen = time.monotonic() - up_at
            wait_until("cluster2 synced again", lambda: cluster2_synced(discovery), KUBE_BACKOFF_MAX + 20)
            resynced = time.monotonic() - up_at
            wait_until("cluster2 not stale in /metrics", lambda: discovery.metrics().get(stale) == 0, 5)
            print(
                f"[outage] after the restart: the new pod's endpoint in endpointz after {seen:.1f} s, "
                f"cluster2 synced after {resynced:.1f} s"
            )
        assert not readiness.errors and {code for _, code in readiness.samples} == {200}, (
            f"not ready at times: {Counter(code for _, code in readiness.samples)}, {readiness.errors[:3]}"
        )
        print(f"[outage] /ready answered 200 to all {len(readiness.samples)} probes")
        never_fewer(counts, baseline, GOOD_CLUSTERS)
        try:
            wait_until(
                "the new endpoint with its pod",
                lambda: (endpoint_of(discovery, new_ip) or {}).get("workload"),
                5,
            )
        except AssertionError:
            raise AssertionError(
                f"the endpoint of the pod {new_pod} ({new_ip}), created right after cluster2's API server came "
                f"back, is served without its pod (workload, identity, labels), still "
                f"{time.monotonic() - up_at:.0f} s after the restart: {endpoint_of(discovery, new_ip)}"
            ) from None
        endpoint = endpoint_of(discovery, new_ip)
        assert endpoint is not None
        assert endpoint["workload"] == new_pod and endpoint["cluster"] == "cluster2", endpoint
        assert endpoint["identity"] == "spiffe://cluster.local/ns/sample/sa/default", endpoint
        assert endpoint["labels"].get("version") == "v2", endpoint
    finally:
        if scaled:
            kc("scale", "deployment", "helloworld-v2", "-n", "sample", "--replicas=1", context="cluster2")
