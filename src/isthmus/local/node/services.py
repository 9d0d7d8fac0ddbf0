"""The node's view of Services and EndpointSlices (what kube-proxy and cluster DNS watch), and kube-proxy
itself: ClusterIP translation with iptables DNAT in the fabric namespace.

Only this cluster's pods and the host get this cluster's ClusterIPs translated (rules match the source), as
kube-proxy on this cluster's nodes would; a ClusterIP that is not translated is rejected in the fabric.
Rules are written with one `iptables-restore --noflush` per change batch, into chains of this cluster only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import subprocess
from collections.abc import Callable
from typing import Any

from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from isthmus.local.node.api import NodeApi
from isthmus.local.node.config import NodeConfig

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class ServiceCache:
    """Services and EndpointSlices of the cluster, kept current by watches; listeners hear of every change."""

    def __init__(self, api: NodeApi) -> None:
        self.api = api
        self.services: dict[tuple[str, str], JsonObject] = {}
        self.slices: dict[tuple[str, str], JsonObject] = {}
        self.listeners: list[Callable[[], None]] = []
        self.synced = asyncio.Event()
        self.version = 0  # counts changes, so the proxy can tell which state its rules reflect

    def services_in(self, namespace: str) -> list[JsonObject]:
        return [s for (ns, _), s in self.services.items() if ns == namespace]

    def endpoints_of(self, namespace: str, service: str) -> list[tuple[JsonObject, JsonObject]]:
        """(slice, endpoint) pairs of a Service."""
        out: list[tuple[JsonObject, JsonObject]] = []
        for (ns, _), slice_ in self.slices.items():
            if (
                ns == namespace
                and (slice_["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == service
            ):
                out.extend((slice_, endpoint) for endpoint in slice_.get("endpoints") or [])
        return out

    def serves(self, ip: str) -> bool:
        """Some EndpointSlice lists `ip` in an endpoint that is not terminating."""
        for slice_ in self.slices.values():
            for endpoint in slice_.get("endpoints") or ():
                if ip in (endpoint.get("addresses") or ()) and not (endpoint.get("conditions") or {}).get(
                    "terminating"
                ):
                    return True
        return False

    def _changed(self) -> None:
        self.version += 1
        for listener in self.listeners:
            listener()

    async def _follow(
        self, resource: Any, store: dict[tuple[str, str], JsonObject], ready: asyncio.Event
    ) -> None:
        seen: set[tuple[str, str]] = set()
        async for kind, obj in self.api.watch(resource):
            if kind == "SYNC":
                for key in set(store) - seen:
                    del store[key]
                seen = set()
                ready.set()
                self._changed()
                continue
            key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if kind == "DELETED":
                store.pop(key, None)
            else:
                store[key] = obj
                if kind == "LISTED":
                    seen.add(key)
            if kind != "LISTED":
                self._changed()

    async def run(self) -> None:
        services_ready, slices_ready = asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(self._follow(Service, self.services, services_ready)),
            asyncio.create_task(self._follow(EndpointSlice, self.slices, slices_ready)),
        ]
        await services_ready.wait()
        await slices_ready.wait()
        self.synced.set()
        await asyncio.gather(*tasks)


def _chain(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()[:12].upper()
    return f"{prefix}-{digest}"[:28]


class ServiceProxy:
    """kube-proxy for one cluster, in the run's fabric namespace."""

    def __init__(self, config: NodeConfig, cache: ServiceCache) -> None:
        self.config = config
        self.cache = cache
        index = config.cluster_index
        self.top = f"ISM-C{index}-SVC"
        self.prefix = f"ISM-C{index}"
        self.reject = f"ISM-C{index}-REJECT"
        self._chains: set[str] = set()
        self._dirty = asyncio.Event()
        cache.listeners.append(self._dirty.set)
        self.last_rules = ""
        self.routed: set[str] = set()  # the endpoint addresses the applied rules send connections to
        self.applied_version = -1  # the cache version the applied rules were rendered from
        self._applied = asyncio.Condition()

    def _iptables(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.config.fabric_namespace, "iptables", "-w", *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def install_hooks(self) -> None:
        """Jump rules from PREROUTING (for this cluster's pods and the host) and the reject of untranslated IPs."""
        self._restore(
            f"*nat\n:{self.top} - [0:0]\nCOMMIT\n*filter\n:{self.reject} - [0:0]\n"
            f"-A {self.reject} -d {self.config.service_cidr} -p tcp -j REJECT --reject-with tcp-reset\n"
            f"-A {self.reject} -d {self.config.service_cidr} -j REJECT --reject-with icmp-port-unreachable\n"
            "COMMIT\n"
        )
        for source in (self.config.pod_cidr, f"{self.config.host_address}/32"):
            rule = ["PREROUTING", "-s", source, "-j", self.top]
            if self._iptables("-t", "nat", "-C", *rule, check=False).returncode != 0:
                self._iptables("-t", "nat", "-A", *rule)
        if self._iptables("-t", "filter", "-C", "FORWARD", "-j", self.reject, check=False).returncode != 0:
            self._iptables("-t", "filter", "-A", "FORWARD", "-j", self.reject)

    def remove_hooks(self) -> None:
        """Take this cluster's rules out of the fabric (node shutdown)."""
        for source in (self.config.pod_cidr, f"{self.config.host_address}/32"):
            self._iptables("-t", "nat", "-D", "PREROUTING", "-s", source, "-j", self.top, check=False)
        self._iptables("-t", "filter", "-D", "FORWARD", "-j", self.reject, check=False)
        chains = [self.top, *self._chains]
        lines = [
            "*nat",
            *(f":{c} - [0:0]" for c in chains),
            *(f"-X {c}" for c in chains),
            "COMMIT",
            "*filter",
            f":{self.reject} - [0:0]",
            f"-X {self.reject}",
            "COMMIT",
            "",
        ]
        with contextlib.suppress(subprocess.CalledProcessError):
            self._restore("\n".join(lines))
        self._chains.clear()

    def _restore(self, rules: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.config.fabric_namespace, "iptables-restore", "-w", "--noflush"],
            input=rules,
            capture_output=True,
            text=True,
            check=True,
        )

    def render(self) -> tuple[str, set[str]]:
        """The nat table rules of every Service of the cluster (an `iptables-restore` document)."""
        rules, chains, _ = self._render()
        return rules, chains

    def _render(self) -> tuple[str, set[str], set[str]]:
        rules: list[str] = []
        chains: set[str] = set()
        routed: set[str] = set()
        for (namespace, name), service in sorted(self.cache.services.items()):
            spec = service.get("spec", {})
            ip = spec.get("clusterIP")
            if not ip or ip == "None" or spec.get("type") == "ExternalName":
                continue
            endpoints = [
                (s, e)
                for s, e in self.cache.endpoints_of(namespace, name)
                if (e.get("conditions") or {}).get("ready", True) is not False
            ]
            for port in spec.get("ports") or []:
                protocol = str(port.get("protocol", "TCP")).lower()
                targets: list[str] = []
                for slice_, endpoint in endpoints:
                    number = next(
                        (
                            p.get("port")
                            for p in slice_.get("ports") or []
                            if p.get("name", "") == port.get("name", "")
                            and str(p.get("protocol", "TCP")).lower() == protocol
                        ),
                        None,
                    )
                    if number is None:
                        continue
                    targets.extend(f"{address}:{number}" for address in endpoint.get("addresses") or [])
                    routed.update(endpoint.get("addresses") or [])
                if not targets:
                    continue
                chain = _chain(self.prefix, namespace, name, str(port.get("port")), protocol)
                chains.add(chain)
                rules.append(
                    f"-A {self.top} -d {ip}/32 -p {protocol} -m {protocol} --dport {port['port']} -j {chain}"
                )
                for i, target in enumerate(sorted(targets)):
                    remaining = len(targets) - i
                    chance = (
                        f"-m statistic --mode random --probability {1 / remaining:.10f} "
                        if remaining > 1
                        else ""
                    )
                    rules.append(f"-A {chain} -p {protocol} {chance}-j DNAT --to-destination {target}")
        return "\n".join(rules), chains, routed

    def sync(self) -> None:
        body, chains, routed = self._render()
        if body == self.last_rules and chains == self._chains:
            self.routed = routed
            return
        stale = self._chains - chains
        document = [
            "*nat",
            f":{self.top} - [0:0]",
            *(f":{c} - [0:0]" for c in sorted(chains | stale)),
            body,
            *(f"-X {c}" for c in sorted(stale)),
            "COMMIT",
            "",
        ]
        self._restore("\n".join(line for line in document if line) + "\n")
        self._chains = chains
        self.last_rules = body
        self.routed = routed

    async def drained(self, ip: str) -> bool:
        """Wait until the rules send no new connection to `ip` for an endpoint that is not terminating: the
        pod has left its Services, or stays in them only by `publishNotReadyAddresses`. True if it was in a
        Service's rules or endpoints when asked."""
        was_in = ip in self.routed or self.cache.serves(ip)
        async with self._applied:
            await self._applied.wait_for(
                lambda: (
                    not self.cache.serves(ip)
                    and (ip not in self.routed or self.applied_version >= self.cache.version)
                )
            )
        return was_in

    async def run(self) -> None:
        await asyncio.to_thread(self.install_hooks)
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.02)  # batch a burst of changes into one restore
            self._dirty.clear()
            version = self.cache.version
            try:
                await asyncio.to_thread(self.sync)
            except subprocess.CalledProcessError as exc:
                log.error("service rules not applied: %s", exc.stderr)
                await asyncio.sleep(1)
                self._dirty.set()
                continue
            async with self._applied:
                self.applied_version = version
                self._applied.notify_all()
