"""The node's own objects: its Node (labels with region and zone, addresses, capacity, Ready heartbeat), its
Lease in kube-node-lease, and the cluster DNS Service (`kube-system/kube-dns`) pointing at this node's DNS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import time
from datetime import UTC, datetime
from typing import Any

import httpx2
from lightkube import ApiError
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Endpoints, Node, NodeStatus, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from isthmus import __version__
from isthmus.local.node.api import NodeApi
from isthmus.local.node.config import NodeConfig

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
HEARTBEAT = 10.0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_labels(config: NodeConfig) -> dict[str, str]:
    labels = {
        "kubernetes.io/hostname": config.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
            platform.machine(), platform.machine()
        ),
        "beta.kubernetes.io/os": "linux",
        "node-role.kubernetes.io/control-plane": "",
        "topology.kubernetes.io/region": config.region,
        "failure-domain.beta.kubernetes.io/region": config.region,
    }
    if config.zone:
        labels["topology.kubernetes.io/zone"] = config.zone
        labels["failure-domain.beta.kubernetes.io/zone"] = config.zone
    return labels


class Registration:
    def __init__(self, config: NodeConfig, api: NodeApi) -> None:
        self.config = config
        self.api = api

    def _status(self, ready: bool) -> JsonObject:
        now = _now()
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{memory}Ki",
            "pods": "110",
            "ephemeral-storage": "10Gi",
        }
        conditions = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHas{reason}",
                "message": f"kubelet has {message}",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind, reason, message in (
                ("MemoryPressure", "SufficientMemory", "sufficient memory available"),
                ("DiskPressure", "NoDiskPressure", "no disk pressure"),
                ("PIDPressure", "SufficientPID", "sufficient PID available"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": self.config.host_address},
                {"type": "Hostname", "address": self.config.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "Isthmus local node",
                "containerRuntimeVersion": f"isthmus://{__version__}",
                "kubeletVersion": "v1.32.0",
                "kubeProxyVersion": "v1.32.0",
                "operatingSystem": "linux",
                "architecture": node_labels(self.config)["kubernetes.io/arch"],
            },
        }

    async def register(self) -> None:
        config = self.config
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": config.node_name, "labels": node_labels(config)},
            "spec": {"podCIDR": config.pod_cidr, "podCIDRs": [config.pod_cidr]},
        }
        await self.api.apply(Node, node)
        await self._heartbeat(previous_ready=None)
        await self._dns_service()

    async def _heartbeat(self, previous_ready: JsonObject | None) -> None:
        status = self._status(True)
        await self.api.client.patch(
            NodeStatus, self.config.node_name, {"status": status}, patch_type=PatchType.MERGE
        )
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.config.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.config.node_name,
                "leaseDurationSeconds": 40,
                "renewTime": _micro_now(),
            },
        }
        await self.api.apply(Lease, lease)

    async def _dns_service(self) -> None:
        """kube-system/kube-dns: a selector-less Service whose endpoints are this node's DNS server."""
        ports = [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
        ]
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
            },
            "spec": {"clusterIP": self.config.dns_service_ip, "ports": ports},
        }
        await self.api.apply(Service, service)
        endpoints = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": self.config.dns_address}],
                    "ports": [{"name": p["name"], "port": 53, "protocol": p["protocol"]} for p in ports],
                }
            ],
        }
        await self.api.apply(Endpoints, endpoints)
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {
                    "kubernetes.io/service-name": "kube-dns",
                    "endpointslice.kubernetes.io/managed-by": "isthmus-node",
                },
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [self.config.dns_address],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                }
            ],
            "ports": [{"name": p["name"], "port": 53, "protocol": p["protocol"]} for p in ports],
        }
        await self.api.apply(EndpointSlice, slice_)

    async def run(self) -> None:
        """Register, then heartbeat; while the API server is away, retry."""
        registered = False
        while True:
            try:
                if not registered:
                    await self.register()
                    registered = True
                else:
                    await self._heartbeat(None)
            except (ApiError, httpx2.HTTPError, OSError) as exc:
                log.debug("node status not written: %s", exc)
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(HEARTBEAT)

    async def mark_not_ready(self) -> None:
        with contextlib.suppress(ApiError, httpx2.HTTPError, OSError):
            await self.api.client.patch(
                NodeStatus,
                self.config.node_name,
                {"status": self._status(False)},
                patch_type=PatchType.MERGE,
            )
