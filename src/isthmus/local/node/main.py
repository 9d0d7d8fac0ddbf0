"""The node process of one local cluster: `python -m isthmus.local.node.main CONFIG.json`.

SIGTERM or SIGINT stops it cleanly: pods get their grace period, their namespaces and this cluster's service
rules are removed, the Node is marked NotReady.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import uvloop
from lightkube.resources.core_v1 import ConfigMap, Secret

from isthmus.local.node.api import NodeApi
from isthmus.local.node.config import NodeConfig
from isthmus.local.node.dns import ClusterDns
from isthmus.local.node.kubelet import KubeletApi
from isthmus.local.node.pods import Node, PodManager
from isthmus.local.node.portforward import PortForwardServer
from isthmus.local.node.registration import Registration
from isthmus.local.node.services import ServiceCache, ServiceProxy

log = logging.getLogger("isthmus.node")


async def _follow_sources(api: NodeApi, pods: PodManager) -> None:
    """Secrets and ConfigMaps mounted by pods: a change rewrites the volumes that use them."""

    async def follow(resource: type[Secret] | type[ConfigMap], kind: str) -> None:
        async for event, obj in api.watch(resource):
            if event in ("MODIFIED", "ADDED", "DELETED"):
                await pods.source_changed(kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    await asyncio.gather(follow(Secret, "Secret"), follow(ConfigMap, "ConfigMap"))


async def serve(config: NodeConfig) -> None:
    api = NodeApi(config.kubeconfig, config.node_name)
    cache = ServiceCache(api)
    proxy = ServiceProxy(config, cache)
    dns = ClusterDns(config, cache)
    node = Node(config, api, cache.services_in, proxy.drained)
    pods = PodManager(node)
    kubelet = KubeletApi(pods, config.kubelet_socket)
    forwarder = PortForwardServer(pods.netns_of, config.portforward_socket)
    registration = Registration(config, api)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await dns.start()
    await kubelet.start()
    if config.portforward_socket:
        await forwarder.start()
    tasks = [
        loop.create_task(coro, name=name)
        for name, coro in (
            ("services", cache.run()),
            ("proxy", proxy.run()),
            ("registration", registration.run()),
            ("sources", _follow_sources(api, pods)),
            ("events", api.events.run()),
        )
    ]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(cache.synced.wait(), 30)
    tasks.append(loop.create_task(pods.run(), name="pods"))
    log.info("node %s serving pods of %s", config.node_name, config.cluster)
    await stop.wait()
    log.info("stopping")
    await pods.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(proxy.remove_hooks)
    dns.stop()
    await kubelet.stop()
    await forwarder.stop()
    await registration.mark_not_ready()
    await api.close()


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m isthmus.local.node.main CONFIG.json", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    config = NodeConfig.load(Path(args[0]))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config))


if __name__ == "__main__":
    main()
