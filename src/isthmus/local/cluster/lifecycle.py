"""One local run: the clusters of a state folder, their API server processes, certificates, kubeconfig and
network. `up` recovers from a stale or crashed run; `down` removes everything it made and keeps the objects.

Layout of the state folder:
    run.json            run id, address block, cluster names
    ca.crt, ca.key      the run's CA
    kubeconfig          contexts cluster1..clusterN (cluster and user entries named the same)
    <cluster>/          config.json, state.db, serving.crt/key, admin-token, apiserver.pid, apiserver.log
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import ipaddress
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.cluster import network, pki
from isthmus.local.node.config import NodeConfig

DEFAULT_DIR = Path.home() / ".isthmus" / "local"
APISERVER = "apiserver"
NODE = "node"
# process kind -> (module run with `python -m`, its config file in the cluster folder)
PROCESSES = {
    APISERVER: ("isthmus.local.apiserver.server", "config.json"),
    NODE: ("isthmus.local.node.main", "node.json"),
}
RUNS = network.LOCK_DIR / "runs"  # one file per run that is up: its state folder (pods must not see them)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
NODE_STOP_TIMEOUT = 45.0  # pods get their grace period (30 s by default) when the node stops


class LocalClusterError(RuntimeError):
    """Something about the local run a user must fix; the message says what."""


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    server: str
    pid: int | None
    ready: bool


def run_id_for(folder: Path) -> str:
    return hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:6]


def _pid_alive(pid: int, marker: str) -> bool:
    """Whether `pid` is our process (its command line names `marker`)."""
    for _ in range(50):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
        if cmdline:
            return marker.encode() in cmdline and b"isthmus" in cmdline
        time.sleep(0.01)  # a process that has just been started may not show its command line yet
    return False


class LocalRun:
    """The local clusters of one state folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.expanduser().resolve()
        self.run_id = run_id_for(self.folder)
        self.state_file = self.folder / "run.json"
        self.kubeconfig = self.folder / "kubeconfig"

    # -- state --------------------------------------------------------------------------------------------

    def _state(self) -> dict[str, object] | None:
        if not self.state_file.exists():
            return None
        state: dict[str, object] = orjson.loads(self.state_file.read_bytes())
        return state

    def clusters(self) -> list[str]:
        names = (self._state() or {}).get("clusters")
        return [str(c) for c in names] if isinstance(names, list) else []

    def _plan(self) -> network.AddressPlan:
        state = self._state()
        if not state or not isinstance(state.get("block"), str):
            raise LocalClusterError(f"no local clusters in {self.folder}: run `isthmus local up` first")
        return network.AddressPlan(ipaddress.IPv4Network(state["block"]))

    def _cluster_dir(self, cluster: str) -> Path:
        return self.folder / cluster

    def _config_path(self, cluster: str, process: str = APISERVER) -> Path:
        return self._cluster_dir(cluster) / PROCESSES[process][1]

    def _pid(self, cluster: str, process: str = APISERVER) -> int | None:
        pid_file = self._cluster_dir(cluster) / f"{process}.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid, str(self._config_path(cluster, process))) else None

    # -- up / down ----------------------------------------------------------------------------------------

    def up(
        self,
        clusters: int | None = None,
        block: str | None = None,
        legacy_sa_tokens: bool | None = None,
        topology: dict[str, str] | None = None,
    ) -> None:
        """Start the run. `legacy_sa_tokens` switches token Secrets for ServiceAccounts on or off (None: as
        the run had it, on at first); a running API server is restarted when it changes. `topology` gives
        clusters a `REGION/ZONE` for their node's labels (default: region `local`, zone `local-CLUSTER`); a
        node whose topology changes is restarted."""
        _require_root()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        state = self._state() or {}
        names = self.clusters()
        wanted = clusters if clusters is not None else (len(names) or 2)
        if not 1 <= wanted <= network.MAX_CLUSTERS:
            raise LocalClusterError(f"--clusters must be between 1 and {network.MAX_CLUSTERS}, not {wanted}")
        if wanted < len(names):
            raise LocalClusterError(
                f"{self.folder} already holds {len(names)} clusters ({', '.join(names)}); "
                "`isthmus local down --purge` first to start over with fewer"
            )
        names += [f"cluster{i}" for i in range(len(names) + 1, wanted + 1)]
        saved = state.get("topology")
        zones_before = {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}
        zones = {**zones_before, **(topology or {})}
        for cluster, where in zones.items():
            if cluster not in names:
                raise LocalClusterError(
                    f"--topology names {cluster!r}, which is not a cluster of this run ({', '.join(names)})"
                )
            region, _, zone = where.partition("/")
            if not region or not zone or "/" in zone:
                raise LocalClusterError(
                    f"--topology {cluster}={where}: give REGION/ZONE, e.g. us-east1/us-east1-b"
                )
        legacy_before = state.get("legacy_sa_tokens", True) is not False
        legacy = legacy_before if legacy_sa_tokens is None else legacy_sa_tokens
        with network.host_lock("network"):
            if block:
                chosen = ipaddress.IPv4Network(block)
                if chosen.prefixlen != 16:
                    raise LocalClusterError(
                        f"--block must be a /16 network such as 10.42.0.0/16, not {block}"
                    )
                current = state.get("block")
                fabric_up = (
                    current == str(chosen)
                    and network.Fabric(self.run_id, network.AddressPlan(chosen)).exists()
                )
                if not fabric_up:
                    network.check_block(chosen)
            else:
                previous = state.get("block") if isinstance(state.get("block"), str) else None
                fabric = (
                    network.Fabric(self.run_id, network.AddressPlan(ipaddress.IPv4Network(previous)))
                    if previous
                    else None
                )
                chosen = (
                    ipaddress.IPv4Network(previous)
                    if fabric is not None and fabric.exists()
                    else network.choose_block(self.run_id, str(previous) if previous else None)
                )
            plan = network.AddressPlan(chosen)
            self.state_file.write_bytes(
                orjson.dumps(
                    {
                        "id": self.run_id,
                        "block": str(chosen),
                        "clusters": names,
                        "legacy_sa_tokens": legacy,
                        "topology": zones,
                    },
                    option=orjson.OPT_INDENT_2,
                )
            )
            fabric = network.Fabric(self.run_id, plan)
            fabric.create(len(names))
        network.set_hosts_entries(
            self.run_id,
            {network.api_hostname(n, self.run_id): plan.api_address(i) for i, n in enumerate(names, 1)},
        )
        ca_cert, ca_key = pki.ensure_ca(self.folder, f"isthmus-local-{self.run_id}")
        RUNS.mkdir(parents=True, exist_ok=True)
        (RUNS / self.run_id).write_text(str(self.folder))
        for index, name in enumerate(names, 1):
            self._prepare_cluster(name, index, plan, ca_cert, ca_key)
        self._write_kubeconfig(names, ca_cert)
        for index, name in enumerate(names, 1):
            self._prepare_node(name, index, plan, names, zones.get(name, f"local/local-{name}"))
        for name in names:
            if legacy != legacy_before:
                self._stop_process(name)  # its config changed
            if self._pid(name) is None:
                self._spawn(name)
        for name in names:
            self._wait_ready(name)
        for name in names:
            if zones.get(name) != zones_before.get(name):
                self._stop_process(name, NODE, NODE_STOP_TIMEOUT)  # its Node's labels change
            if self._pid(name, NODE) is None:
                self._spawn(name, NODE)
        for name in names:
            self._wait_node(name)

    def _prepare_cluster(
        self, name: str, index: int, plan: network.AddressPlan, ca_cert: Path, ca_key: Path
    ) -> None:
        folder = self._cluster_dir(name)
        folder.mkdir(exist_ok=True)
        folder.chmod(0o700)
        token_file = folder / "admin-token"
        if not token_file.exists():
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        hostname = network.api_hostname(name, self.run_id)
        config = ApiServerConfig(
            cluster=name,
            state_dir=str(folder),
            listen_host=plan.api_address(index),
            listen_port=network.API_PORT,
            advertise_host=hostname,
            service_cidr=plan.service_cidr(index),
            pod_cidr=plan.pod_cidr(index),
            admin_token_file=str(token_file),
            cert_file=str(folder / "serving.crt"),
            key_file=str(folder / "serving.key"),
            ca_file=str(ca_cert),
            legacy_service_account_tokens=(self._state() or {}).get("legacy_sa_tokens", True) is not False,
            service_account_key_file=str(pki.ensure_service_account_key(folder)),
        )
        dns_names = [
            hostname,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
        ]
        pki.ensure_serving_cert(
            folder,
            ca_cert,
            ca_key,
            f"kube-apiserver-{name}",
            dns_names,
            [config.listen_host, config.kubernetes_service_ip, "127.0.0.1"],
        )
        config.save(self._config_path(name))

    def _write_kubeconfig(self, names: list[str], ca_cert: Path) -> None:
        ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
        clusters, users, contexts = [], [], []
        for name in names:
            config = ApiServerConfig.load(self._config_path(name))
            token = Path(config.admin_token_file).read_text().strip()
            clusters.append(
                {
                    "name": name,
                    "cluster": {
                        "server": f"https://{config.advertise_host}:{config.listen_port}",
                        "certificate-authority-data": ca_data,
                    },
                }
            )
            users.append({"name": name, "user": {"token": token}})
            contexts.append({"name": name, "context": {"cluster": name, "user": name}})
        current = names[0]
        if self.kubeconfig.exists():
            with contextlib.suppress(yaml.YAMLError, AttributeError):
                previous = yaml.safe_load(self.kubeconfig.read_text()) or {}
                if previous.get("current-context") in names:
                    current = previous["current-context"]
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": clusters,
            "users": users,
            "contexts": contexts,
            "current-context": current,
            "preferences": {},
        }
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(document, out, sort_keys=False)

    def _prepare_node(
        self, name: str, index: int, plan: network.AddressPlan, names: list[str], where: str
    ) -> None:
        folder = self._cluster_dir(name)
        api = ApiServerConfig.load(self._config_path(name))
        kubeconfig = folder / "node.kubeconfig"
        whole = yaml.safe_load(self.kubeconfig.read_text())
        mine = {
            **whole,
            "clusters": [c for c in whole["clusters"] if c["name"] == name],
            "users": [u for u in whole["users"] if u["name"] == name],
            "contexts": [c for c in whole["contexts"] if c["name"] == name],
            "current-context": name,
        }
        fd = os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(mine, out, sort_keys=False)
        node_name = f"{name}-node"
        runs = (
            sorted({p.read_text().strip() for p in RUNS.iterdir()} | {str(self.folder)})
            if RUNS.exists()
            else [str(self.folder)]
        )
        NodeConfig(
            cluster=name,
            cluster_index=index,
            node_name=node_name,
            run_id=self.run_id,
            state_dir=str(folder),
            kubeconfig=str(kubeconfig),
            fabric_namespace=network.Fabric(self.run_id, plan).namespace,
            host_address=plan.host_address,
            pod_cidr=plan.pod_cidr(index),
            service_cidr=plan.service_cidr(index),
            dns_address=plan.dns_address(index),
            dns_service_ip=str(ipaddress.IPv4Network(plan.service_cidr(index)).network_address + 10),
            api_hostnames={
                network.api_hostname(n, self.run_id): plan.api_address(i) for i, n in enumerate(names, 1)
            },
            region=where.partition("/")[0],
            zone=where.partition("/")[2],
            hidden_paths=runs,
            kubelet_socket=str(folder / "kubelet.sock"),
            portforward_socket=str(folder / "portforward.sock"),
        ).save(self._config_path(name, NODE))
        api_config = dataclasses.replace(
            api,
            kubelet_socket=str(folder / "kubelet.sock"),
            portforward_socket=str(folder / "portforward.sock"),
            node_name=node_name,
        )
        api_config.save(self._config_path(name))

    def _wait_node(self, name: str) -> None:
        """The node process is up once its Unix socket answers."""
        socket_path = self._cluster_dir(name) / "kubelet.sock"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._pid(name, NODE) is None:
                raise LocalClusterError(
                    f"the node process of {name} exited at start: see {self._cluster_dir(name) / 'node.log'}"
                )
            if _socket_answers(socket_path):
                return
            time.sleep(0.1)
        raise LocalClusterError(
            f"the node process of {name} was not ready within {START_TIMEOUT:.0f} s: see "
            f"{self._cluster_dir(name) / 'node.log'}"
        )

    def _spawn(self, name: str, kind: str = APISERVER) -> None:
        folder = self._cluster_dir(name)
        log = open(folder / f"{kind}.log", "ab")  # noqa: SIM115 (the child keeps it)
        process = subprocess.Popen(
            [sys.executable, "-m", PROCESSES[kind][0], str(self._config_path(name, kind))],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            cwd=folder,
        )
        log.close()
        (folder / f"{kind}.pid").write_text(f"{process.pid}\n")

    def _wait_ready(self, name: str) -> None:
        config = ApiServerConfig.load(self._config_path(name))
        context = ssl.create_default_context(cafile=config.ca_file)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._pid(name) is None:
                raise LocalClusterError(
                    f"the API server of {name} exited at start: see "
                    f"{self._cluster_dir(name) / 'apiserver.log'}"
                )
            if _ready(config.listen_host, config.listen_port, context):
                return
            time.sleep(0.1)
        raise LocalClusterError(
            f"the API server of {name} was not ready within {START_TIMEOUT:.0f} s: see "
            f"{self._cluster_dir(name) / 'apiserver.log'}"
        )

    def down(self, purge: bool = False) -> None:
        _require_root()
        names = self.clusters()
        for name in names:
            self._stop_process(name, NODE, NODE_STOP_TIMEOUT)
        for name in names:
            self._stop_process(name)
        for ns in network.run_namespaces(self.run_id):  # pods a crashed node process left behind
            network.remove_namespace(ns)
        (RUNS / self.run_id).unlink(missing_ok=True)
        state = self._state()
        if state and isinstance(state.get("block"), str):
            with network.host_lock("network"):
                network.Fabric(
                    self.run_id, network.AddressPlan(ipaddress.IPv4Network(state["block"]))
                ).destroy()
        network.remove_hosts_entries(self.run_id)
        if purge and self.folder.exists():
            shutil.rmtree(self.folder)

    # -- one cluster --------------------------------------------------------------------------------------

    def _check_cluster(self, name: str) -> None:
        if name not in self.clusters():
            known = ", ".join(self.clusters()) or "none"
            raise LocalClusterError(f"no cluster named {name!r} in {self.folder} (clusters: {known})")

    def stop(self, name: str) -> None:
        self._check_cluster(name)
        self._stop_process(name)

    def start(self, name: str) -> None:
        _require_root()
        self._check_cluster(name)
        plan = self._plan()
        if not network.Fabric(self.run_id, plan).exists():
            raise LocalClusterError(f"the local run in {self.folder} is down: run `isthmus local up` first")
        if self._pid(name) is None:
            self._spawn(name)
        self._wait_ready(name)

    def _stop_process(self, name: str, kind: str = APISERVER, timeout: float = STOP_TIMEOUT) -> None:
        pid = self._pid(name, kind)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self._pid(name, kind) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._pid(name, kind) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while self._pid(name, kind) is not None:
                    time.sleep(0.05)
        (self._cluster_dir(name) / f"{kind}.pid").unlink(missing_ok=True)

    def status(self) -> list[ClusterStatus]:
        out = []
        for name in self.clusters():
            config_path = self._config_path(name)
            if not config_path.exists():
                continue
            config = ApiServerConfig.load(config_path)
            pid = self._pid(name)
            ready = pid is not None and _ready(
                config.listen_host, config.listen_port, ssl.create_default_context(cafile=config.ca_file)
            )
            out.append(
                ClusterStatus(name, f"https://{config.advertise_host}:{config.listen_port}", pid, ready)
            )
        return out


def _ready(host: str, port: int, context: ssl.SSLContext) -> bool:
    connection = http.client.HTTPSConnection(host, port, timeout=2, context=context)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _socket_answers(path: Path) -> bool:
    import socket

    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        try:
            client.connect(str(path))
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: kubelet\r\nConnection: close\r\n\r\n")
            return client.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LocalClusterError(
            "isthmus local needs root: it creates network namespaces, routes and /etc/hosts "
            "entries for the clusters' flat network (run it with sudo)"
        )
