"""Pod networking on the fabric: a network namespace per pod with one veth into the fabric, addresses from the
cluster's pod CIDR (kept per pod uid, so a pod comes back with the same IP after `local down` and `up`).

Layout (as Calico's): the pod holds `POD_IP/32`, a route to the link-local gateway 169.254.1.1 and a default
route through it; the fabric end holds 169.254.1.1/32 with proxy ARP, and the fabric routes `POD_IP/32` to
that veth. No bridge, no NAT: a server sees its client pod's own address.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import subprocess
from pathlib import Path

import orjson

GATEWAY = "169.254.1.1"


class PodNetworkError(RuntimeError):
    pass


def _run(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise PodNetworkError(f"`{' '.join(args)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


class AddressBook:
    """Pod IPs by pod uid, persisted so pods keep their address across node restarts."""

    def __init__(self, path: Path, cidr: str) -> None:
        self.path = path
        self.network = ipaddress.ip_network(cidr)
        self._by_uid: dict[str, str] = orjson.loads(path.read_bytes()) if path.exists() else {}

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self._by_uid))
        tmp.replace(self.path)

    def address(self, uid: str) -> str:
        known = self._by_uid.get(uid)
        if known is not None:
            return known
        used = set(self._by_uid.values())
        for host in self.network.hosts():
            candidate = str(host)
            if candidate not in used:
                self._by_uid[uid] = candidate
                self._save()
                return candidate
        raise PodNetworkError(f"the pod CIDR {self.network} has no free address left")

    def release(self, uid: str) -> None:
        if self._by_uid.pop(uid, None) is not None:
            self._save()

    def known(self) -> dict[str, str]:
        return dict(self._by_uid)


class PodNetwork:
    """Creates and removes pod namespaces on one run's fabric."""

    def __init__(self, run_id: str, cluster_index: int, fabric_namespace: str) -> None:
        self.prefix = f"isthmus-{run_id}-c{cluster_index}-"
        self.fabric = fabric_namespace
        self.cluster_index = cluster_index

    def namespace_of(self, uid: str) -> str:
        return self.prefix + uid.replace("-", "")[:12]

    def _fabric_link(self, uid: str) -> str:
        digest = hashlib.sha256(uid.encode()).hexdigest()[:10]
        return f"p{self.cluster_index}{digest}"[:15]

    def exists(self, uid: str) -> bool:
        return Path("/run/netns", self.namespace_of(uid)).exists()

    def create(self, uid: str, address: str) -> str:
        """Make (or finish making) the namespace of pod `uid` with `address`; returns the namespace name."""
        ns = self.namespace_of(uid)
        link = self._fabric_link(uid)
        if not Path("/run/netns", ns).exists():
            _run("ip", "netns", "add", ns)
        if not _link_exists(self.fabric, link):
            _run(
                "ip",
                "-n",
                self.fabric,
                "link",
                "add",
                link,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
        _run(
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.ip_unprivileged_port_start=0",
        )
        _run(
            "ip",
            "netns",
            "exec",
            self.fabric,
            "sysctl",
            "-qw",
            f"net.ipv4.conf.{link}.proxy_arp=1",
            f"net.ipv4.conf.{link}.rp_filter=0",
        )
        _run(
            "ip",
            "-n",
            self.fabric,
            "-batch",
            "-",
            stdin="\n".join(
                [
                    f"addr replace {GATEWAY}/32 dev {link}",
                    f"link set {link} up",
                    f"route replace {address}/32 dev {link} src {GATEWAY}",
                ]
            )
            + "\n",
        )
        _run(
            "ip",
            "-n",
            ns,
            "-batch",
            "-",
            stdin="\n".join(
                [
                    "link set lo up",
                    f"addr replace {address}/32 dev eth0",
                    "link set eth0 up",
                    f"route replace {GATEWAY} dev eth0 scope link",
                    f"route replace default via {GATEWAY} dev eth0 src {address}",
                ]
            )
            + "\n",
        )
        _run(
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            "net.ipv4.conf.eth0.accept_local=1",
            "net.ipv4.conf.eth0.rp_filter=0",
        )
        return ns

    def delete(self, uid: str) -> None:
        """Remove pod `uid`'s namespace, link and route; every process still inside is killed first."""
        ns = self.namespace_of(uid)
        kill_namespace_processes(ns)
        _run("ip", "-n", self.fabric, "link", "del", self._fabric_link(uid), check=False)
        if Path("/run/netns", ns).exists():
            _run("ip", "netns", "del", ns, check=False)

    def leftovers(self) -> list[str]:
        """This node's pod namespaces that exist on the host (to clean up after a crash)."""
        try:
            return sorted(n.name for n in Path("/run/netns").iterdir() if n.name.startswith(self.prefix))
        except FileNotFoundError:
            return []

    def delete_namespace(self, ns: str) -> None:
        kill_namespace_processes(ns)
        _run("ip", "netns", "del", ns, check=False)


def _link_exists(namespace: str, link: str) -> bool:
    return (
        subprocess.run(
            ["ip", "-n", namespace, "link", "show", link], capture_output=True, check=False
        ).returncode
        == 0
    )


def kill_namespace_processes(ns: str) -> None:
    """SIGKILL every process whose network namespace is `ns` (nothing a pod started may outlive it)."""
    for pid in _run("ip", "netns", "pids", ns, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
