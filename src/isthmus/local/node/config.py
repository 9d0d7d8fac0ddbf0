"""One node process's settings, written by `isthmus local up` next to the API server's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson


@dataclass(frozen=True)
class NodeConfig:
    cluster: str
    cluster_index: int  # 1-based position of the cluster in its run (chain and interface names use it)
    node_name: str
    run_id: str
    state_dir: str  # the cluster's folder; the node keeps its own state under state_dir/node
    kubeconfig: str  # how the node reaches its API server
    fabric_namespace: str
    host_address: str  # the host's end of the fabric link (the node's InternalIP)
    pod_cidr: str
    service_cidr: str
    dns_address: str  # where the cluster DNS listens (on the host's end of the link)
    dns_service_ip: str  # the kube-dns Service's ClusterIP, in pods' resolv.conf
    api_hostnames: dict[str, str] = field(default_factory=dict)  # *.isthmus.internal names of the run
    region: str = "local"
    zone: str = ""
    cluster_domain: str = "cluster.local"
    hidden_paths: list[str] = field(default_factory=list)  # host paths pods must not see (the runs' state)
    kubelet_socket: str = ""
    portforward_socket: str = ""  # connections into pods for the API server (see node/portforward.py)

    @property
    def node_dir(self) -> Path:
        return Path(self.state_dir) / "node"

    def save(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
        return cls(**data)
