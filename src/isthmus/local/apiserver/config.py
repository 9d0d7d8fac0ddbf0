"""One local cluster's API server settings, written by `isthmus local up` and read by the server process."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class ApiServerConfig:
    """Everything the API server process of one cluster needs; stored as JSON in the cluster's folder."""

    cluster: str  # e.g. "cluster1"
    state_dir: str  # the cluster's folder: database, serving certificate, logs
    listen_host: str  # the address the server binds (the cluster's address on the host's fabric link)
    listen_port: int
    advertise_host: str  # the name in the kubeconfig (resolves to listen_host)
    service_cidr: str
    pod_cidr: str
    admin_token_file: str
    cert_file: str
    key_file: str
    ca_file: str
    kubernetes_minor: int = 32
    max_request_bytes: int = 3 * 1024 * 1024  # kube-apiserver's limit for a request body
    watch_history: int = 10_000  # events kept per resource for watches resuming from a resourceVersion
    legacy_service_account_tokens: bool = True  # token Secrets listed in ServiceAccounts (as before 1.24)
    service_account_key_file: str = ""  # RSA key signing service-account tokens; "" means state_dir/sa.key
    # Seconds between a namespace's deletion and the removal of its objects.
    namespace_cleanup_delay: float = 1.0
    # The node process's API (logs, exec, port-forward) for pods on this cluster's node, and that node's name.
    kubelet_socket: str = ""
    portforward_socket: str = ""
    node_name: str = ""

    @property
    def db_path(self) -> Path:
        return Path(self.state_dir) / "state.db"

    @property
    def service_account_key_path(self) -> Path:
        return Path(self.service_account_key_file or Path(self.state_dir) / "sa.key")

    @property
    def kubernetes_service_ip(self) -> str:
        """The ClusterIP of `kubernetes.default`: the first address of the service CIDR, as Kubernetes does."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    def save(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))

    @classmethod
    def load(cls, path: Path) -> ApiServerConfig:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
        return cls(**data)
