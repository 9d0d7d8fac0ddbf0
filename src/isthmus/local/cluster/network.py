"""The local clusters' flat network, host side: the fabric namespace, the host's link into it, the host route
for the run's address block, and the /etc/hosts names of the API servers.

Address plan of one run (one state folder), inside a /16 block `10.N.0.0/16` the host does not use:
- `10.N.0.1`: the host's end of its link into the fabric; `10.N.0.2`: the fabric's end.
- `10.N.0.(10+i)`: cluster i's API server, on the host's end of the link (so pods reach it too);
  `10.N.0.(30+i)`: cluster i's DNS server, likewise.
- `10.N.(16*i).0/20`: cluster i's pod CIDR (4,094 pods); `10.N.(168+8*i).0/21`: its service CIDR (2,046
  Services), for up to 10 clusters.
The host routes the whole block into the fabric and nothing else; the fabric has no default route, so no pod or
service address can leave the machine. Every name, interface and namespace carries the run id, so several runs
coexist; `destroy` removes all of it and is safe to call on a half-made or already-removed fabric.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOSTS_FILE = Path("/etc/hosts")
LOCK_DIR = Path("/run/isthmus")
MAX_CLUSTERS = 10
API_PORT = 6443
DOMAIN = "isthmus.internal"


class NetworkError(RuntimeError):
    """A network change failed; the message says which command and why."""


def run(*args: str, check: bool = True) -> str:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"`{' '.join(args)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


@contextlib.contextmanager
def host_lock(name: str) -> Iterator[None]:
    """A machine-wide lock (flock), so concurrent `up`/`down` of several runs do not collide."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class AddressPlan:
    """Where everything of one run lives, derived from its /16 block."""

    block: ipaddress.IPv4Network

    def _at(self, third: int, fourth: int) -> str:
        base = int(self.block.network_address)
        return str(ipaddress.IPv4Address(base + third * 256 + fourth))

    @property
    def host_address(self) -> str:
        return self._at(0, 1)

    @property
    def fabric_address(self) -> str:
        return self._at(0, 2)

    def api_address(self, index: int) -> str:
        return self._at(0, 10 + index)

    def dns_address(self, index: int) -> str:
        """Where cluster i's DNS server listens (its kube-dns Service's endpoint)."""
        return self._at(0, 30 + index)

    def pod_cidr(self, index: int) -> str:
        return f"{self._at(16 * index, 0)}/20"

    def service_cidr(self, index: int) -> str:
        return f"{self._at(168 + 8 * index, 0)}/21"


def api_hostname(cluster: str, run_id: str) -> str:
    return f"{cluster}.{run_id}.{DOMAIN}"


# -- choosing a block --------------------------------------------------------------------------------------


def host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host already uses: its addresses, its routes (all tables) and its resolvers."""
    used: list[ipaddress.IPv4Network] = []
    for entry in json.loads(run("ip", "-j", "-4", "addr") or "[]"):
        for info in entry.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{info['local']}/{info.get('prefixlen', 32)}", strict=False))
    for entry in json.loads(run("ip", "-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = entry.get("dst", "")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
    with contextlib.suppress(OSError):
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    used.append(ipaddress.IPv4Network(f"{parts[1]}/32"))
    return [n for n in used if not n.is_loopback]


def choose_block(run_id: str, preferred: str | None) -> ipaddress.IPv4Network:
    """A 10.N.0.0/16 overlapping nothing the host uses; `preferred` (the run's last block) when it is free."""
    used = host_networks()

    def free(block: ipaddress.IPv4Network) -> bool:
        return not any(block.overlaps(net) for net in used)

    if preferred:
        block = ipaddress.ip_network(preferred)
        if isinstance(block, ipaddress.IPv4Network) and free(block):
            return block
    start = int(run_id[:4], 16) % 200 + 20
    for offset in range(256):
        n = (start + offset) % 256
        block = ipaddress.IPv4Network(f"10.{n}.0.0/16")
        if n not in (0, 255) and free(block):
            return block
    raise NetworkError(
        "no free 10.N.0.0/16 block: every one overlaps an address, route or resolver of this host"
    )


def check_block(block: ipaddress.IPv4Network) -> None:
    """Refuse an explicit block that overlaps what the host (or another local run) uses."""
    for net in host_networks():
        if block.overlaps(net):
            raise NetworkError(
                f"the address block {block} overlaps {net}, which this host already uses "
                "(an address, a route, a resolver or another local cluster run): choose another"
            )


# -- the fabric --------------------------------------------------------------------------------------------


class Fabric:
    """The fabric namespace of one run and the host's link into it."""

    def __init__(self, run_id: str, plan: AddressPlan) -> None:
        self.run_id = run_id
        self.plan = plan
        self.namespace = f"isthmus-{run_id}-fabric"
        self.host_link = f"ism{run_id}"
        self.fabric_link = "host0"

    def exists(self) -> bool:
        return self.namespace in run("ip", "netns", "list", check=False).split()

    def create(self, clusters: int) -> None:
        """Make the namespace, the link and the route (idempotent: a half-made fabric is finished)."""
        plan = self.plan
        if not self.exists():
            run("ip", "netns", "add", self.namespace)
        ns = ("ip", "netns", "exec", self.namespace)
        run(*ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run(*ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        run("ip", "-n", self.namespace, "link", "set", "lo", "up")
        if not Path(f"/sys/class/net/{self.host_link}").exists():
            run(
                "ip",
                "link",
                "add",
                self.host_link,
                "type",
                "veth",
                "peer",
                "name",
                self.fabric_link,
                "netns",
                self.namespace,
            )
        run("sysctl", "-qw", f"net.ipv6.conf.{self.host_link}.disable_ipv6=1", check=False)
        wanted = [plan.host_address]
        for i in range(1, clusters + 1):
            wanted += [plan.api_address(i), plan.dns_address(i)]
        have = self._addresses()
        for address in wanted:
            if address not in have:
                run("ip", "addr", "add", f"{address}/32", "dev", self.host_link)
        run("ip", "link", "set", self.host_link, "up")
        if plan.fabric_address not in self._addresses(in_fabric=True):
            run(
                "ip",
                "-n",
                self.namespace,
                "addr",
                "add",
                f"{plan.fabric_address}/32",
                "dev",
                self.fabric_link,
            )
        run("ip", "-n", self.namespace, "link", "set", self.fabric_link, "up")
        run(
            "ip",
            "-n",
            self.namespace,
            "route",
            "replace",
            f"{plan.block.network_address}/24",
            "dev",
            self.fabric_link,
            "src",
            plan.fabric_address,
        )
        run(
            "ip",
            "route",
            "replace",
            str(plan.block),
            "via",
            plan.fabric_address,
            "dev",
            self.host_link,
            "onlink",
            "src",
            plan.host_address,
        )

    def _addresses(self, in_fabric: bool = False) -> set[str]:
        cmd = ["ip", "-j", "-4", "addr", "show", "dev", self.fabric_link if in_fabric else self.host_link]
        if in_fabric:
            cmd[1:1] = ["-n", self.namespace]
        out = run(*cmd, check=False) or "[]"
        return {a["local"] for e in json.loads(out) for a in e.get("addr_info", [])}

    def destroy(self) -> None:
        run("ip", "route", "del", str(self.plan.block), check=False)
        run("ip", "link", "del", self.host_link, check=False)
        if self.exists():
            run("ip", "netns", "del", self.namespace)


def run_namespaces(run_id: str) -> list[str]:
    """The pod namespaces of a run (everything named after it but its fabric)."""
    prefix = f"isthmus-{run_id}-"
    try:
        names = [entry.name for entry in Path("/run/netns").iterdir()]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix) and n != f"{prefix}fabric")


def remove_namespace(name: str) -> None:
    """Kill what runs in a network namespace, then remove it."""
    for pid in run("ip", "netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    run("ip", "netns", "del", name, check=False)


# -- /etc/hosts --------------------------------------------------------------------------------------------


def _marker(run_id: str) -> str:
    return f"# isthmus-local {run_id}"


def set_hosts_entries(run_id: str, entries: dict[str, str]) -> None:
    """Make /etc/hosts hold exactly `entries` (name -> address) for this run; edited atomically under a lock."""
    marker = _marker(run_id)
    with host_lock("hosts"):
        lines = [line for line in HOSTS_FILE.read_text().splitlines() if not line.endswith(marker)]
        lines += [f"{address}\t{name}\t{marker}" for name, address in sorted(entries.items())]
        _replace_hosts("\n".join(lines) + "\n")


def remove_hosts_entries(run_id: str) -> None:
    set_hosts_entries(run_id, {})


def _replace_hosts(content: str) -> None:
    tmp = HOSTS_FILE.with_name(".hosts.isthmus.tmp")
    mode = HOSTS_FILE.stat().st_mode & 0o777
    tmp.write_text(content)
    tmp.chmod(mode)
    try:
        tmp.replace(HOSTS_FILE)
    except OSError:
        # /etc/hosts bind-mounted (containers): rewrite in place instead.
        tmp.unlink(missing_ok=True)
        HOSTS_FILE.write_text(content)
