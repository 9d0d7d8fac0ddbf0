"""The discovery process: the primary cluster's registry, the remote clusters registered by Secrets, the mesh
config, and the HTTP endpoints to watch them.

- `--http-address` (default 127.0.0.1:8080): `/ready`, `/debug/registryz` (services per cluster),
  `/debug/endpointz` (endpoints per service; `?service=HOSTNAME` for one), `/debug/clusterz` (every cluster:
  id, Secret, synced, stale, last error), `/debug/meshz` (the mesh config in use and its last error),
  `/debug/events` (a stream of the aggregate's change events as JSON lines, with their wall-clock time);
  `/debug/syncz` (every connected proxy, per xDS type SYNCED / STALE / NOT SENT), `/debug/config_dump?proxy=`
  (what one proxy was sent), `/debug/configz` (the traffic config in use and the objects rejected, with why);
- `--monitoring-address` (default 127.0.0.1:15014): `/metrics` in Prometheus' format;
- `--grpc-address` (default 127.0.0.1:15010): xDS (ADS, state of the world and delta), plaintext.
The control plane is ready once the primary cluster synced and the remote clusters synced, or
`ISTHMUS_REMOTE_CLUSTER_TIMEOUT` seconds passed (an unreachable remote does not hold it back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from lightkube import AsyncClient
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from isthmus import tunables
from isthmus.agent.certificates import CertificateOptions, WorkloadCertificates
from isthmus.aio import cancel_all
from isthmus.config.mesh import MeshConfig, MeshWatcher
from isthmus.config.store import ConfigStore
from isthmus.discovery import memory, metrics
from isthmus.model import ClusterId, Event, MeshChanged
from isthmus.model.identity import SpiffeId
from isthmus.registry.aggregate import Aggregate
from isthmus.registry.cluster import ClusterRegistry
from isthmus.registry.remotes import RemoteSecrets
from isthmus.security.credentials import RotatingServerCredentials
from isthmus.security.server import PILOT_SERVICE, service_dns_names
from isthmus.xds import metrics as xds_metrics
from isthmus.xds.server import XdsServer
from isthmus.xds.view import MeshSources

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]


@dataclass(frozen=True)
class DiscoveryOptions:
    cluster_id: str = "Kubernetes"
    namespace: str = "istio-system"
    http_address: str = "127.0.0.1:8080"
    monitoring_address: str = "127.0.0.1:15014"
    grpc_address: str = "127.0.0.1:15010"
    pod_name: str = ""  # this process's pod (POD_NAME), shown by proxy-status
    secure_grpc_address: str = ""  # xDS over mTLS (15011); needs a CA
    ca_address: str = ""  # the cluster's CA, for this process's own certificate
    service_account: str = "istio-pilot-service-account"
    root_cert_path: str = "/var/run/secrets/istio/root-cert.pem"
    token_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class Discovery:
    """Everything `isthmus discovery` runs, on one event loop."""

    def __init__(self, client: AsyncClient, options: DiscoveryOptions) -> None:
        self.options = options
        self.client = client
        self.aggregate = Aggregate(ClusterId(options.cluster_id))
        self.mesh = MeshWatcher(client, options.namespace, self._mesh_changed)
        self.primary = ClusterRegistry(
            ClusterId(options.cluster_id),
            client,
            self.aggregate,
            lambda: self.mesh.config.trust_domain,
            description=f"cluster {options.cluster_id} (primary)",
        )
        self.remotes = RemoteSecrets(
            client, options.namespace, self.aggregate, lambda: self.mesh.config.trust_domain
        )
        self.config = ConfigStore(client, lambda: self.mesh.config.root_namespace)
        self.xds = XdsServer(MeshSources(self.aggregate, self.config, lambda: self.mesh.config))
        self.ready = asyncio.Event()
        self.aggregate.listeners.append(self._count)
        self.aggregate.listeners.append(self.xds.on_event)
        self.config.listeners.append(self.xds.on_event)
        self._tasks: list[asyncio.Task[Any]] = []
        self._runners: list[web.AppRunner] = []

    def _mesh_changed(self, config: MeshConfig) -> None:
        self.aggregate.set_trust_domain(config.trust_domain)
        self.aggregate.emit(MeshChanged())

    def _count(self, event: Event) -> None:
        metrics.REGISTRY_EVENTS.labels(type(event).__name__).inc()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.aggregate.add_cluster(self.primary)
        self._tasks = [
            loop.create_task(self.mesh.run(), name="mesh config"),
            loop.create_task(self.remotes.run(), name="remote clusters"),
            loop.create_task(self._become_ready(), name="readiness"),
            *(loop.create_task(i.run(), name=i.name) for i in self.config.informers),
            loop.create_task(memory.maintain(lambda: self.xds.initial_syncs), name="gc maintenance"),
        ]
        memory.configure()
        await self.xds.start(self.options.grpc_address)
        if self.options.secure_grpc_address:
            self._tasks.append(loop.create_task(self._serve_secure(), name="xds over mTLS"))
        for address, app in (
            (self.options.http_address, self._debug_app()),
            (self.options.monitoring_address, self._monitoring_app()),
        ):
            host, port = _split(address)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port, reuse_address=True).start()
            self._runners.append(runner)
        log.info(
            "discovery for cluster %s: debug on %s, metrics on %s",
            self.options.cluster_id,
            self.options.http_address,
            self.options.monitoring_address,
        )

    async def _serve_secure(self) -> None:
        """The control plane's own certificate (identity istio-pilot-service-account) from its cluster's CA,
        then xDS over mTLS with it, the certificate renewed as sidecars' are."""
        await self.ready.wait()  # the mesh config (trust domain) is known
        options = self.options
        identity = SpiffeId(self.mesh.config.trust_domain, options.namespace, options.service_account)
        certificates = WorkloadCertificates(
            CertificateOptions(
                ca_address=options.ca_address,
                root_path=Path(options.root_cert_path),
                token_path=Path(options.token_path),
                identity=identity,
                cluster_id=options.cluster_id,
                dns_names=tuple(service_dns_names(PILOT_SERVICE, options.namespace)),
            )
        )
        renewals = asyncio.get_running_loop().create_task(
            certificates.run(), name="control plane certificate"
        )
        try:
            await certificates.ready.wait()
            issued = certificates.current
            assert issued is not None
            rotating = RotatingServerCredentials(
                issued.key_pem, issued.chain_pem, certificates.roots_pem, require_client_auth=True
            )

            def renewed() -> None:  # a certificate, once issued, is only ever replaced
                current = certificates.current or issued
                rotating.update(current.key_pem, current.chain_pem, certificates.roots_pem)

            certificates.on_change = renewed
            await self.xds.start_secure(options.secure_grpc_address, rotating.credentials())
            await renewals
        finally:
            renewals.cancel()

    async def stop(self) -> None:
        await self.xds.stop()
        await cancel_all(self._tasks)
        for registry in list(self.aggregate.clusters.values()):
            await registry.stop()
        for runner in self._runners:
            await runner.cleanup()
        await self.client.close()

    async def _become_ready(self) -> None:
        await self.primary.synced.wait()
        await self.mesh.informer.synced.wait()
        await self.remotes.informer.synced.wait()
        await asyncio.sleep(0)  # let the controller register the clusters the Secrets name
        await self.remotes.wait_synced(tunables.REMOTE_CLUSTER_TIMEOUT.get())
        self.ready.set()
        memory.freeze()  # what start-up built stays: later collections skip it
        log.info(
            "ready: %d services in %d clusters", len(self.aggregate.services), len(self.aggregate.clusters)
        )

    def _update_gauges(self) -> None:
        """Gauges are computed when scraped: exact at that moment, and free in between."""
        states: dict[str, int] = {}
        for entry in self.remotes.status():
            states[entry["state"]] = states.get(entry["state"], 0) + 1
        for state in ("synced", "syncing", "stale", "failed", "refused"):
            metrics.REMOTE_CLUSTERS.labels(state).set(states.get(state, 0))
        metrics.CLUSTER_STALE.clear()  # clusters that left the mesh have no series any more
        metrics.ENDPOINTS.clear()
        for cluster, registry in self.aggregate.clusters.items():
            metrics.CLUSTER_STALE.labels(cluster).set(1 if registry.state == "stale" else 0)
            metrics.ENDPOINTS.labels(cluster).set(sum(len(e) for e in registry.endpoints.values()))
        metrics.SERVICES.set(len(self.aggregate.services))

    # -- HTTP ---------------------------------------------------------------------------------------------

    def _debug_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ready", self.handle_ready)
        app.router.add_get("/debug/registryz", self.registryz)
        app.router.add_get("/debug/endpointz", self.endpointz)
        app.router.add_get("/debug/clusterz", self.clusterz)
        app.router.add_get("/debug/meshz", self.meshz)
        app.router.add_get("/debug/events", self.events)
        app.router.add_get("/debug/syncz", self.syncz)
        app.router.add_get("/debug/config_dump", self.config_dump)
        app.router.add_get("/debug/configz", self.configz)
        return app

    def _monitoring_app(self) -> web.Application:
        app = web.Application()

        async def handle(request: web.Request) -> web.Response:
            self._update_gauges()
            body = generate_latest(metrics.REGISTRY) + generate_latest(xds_metrics.REGISTRY)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", handle)
        return app

    @staticmethod
    def _json(body: Any, status: int = 200) -> web.Response:
        return web.Response(
            body=orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS),
            status=status,
            content_type="application/json",
        )

    async def handle_ready(self, request: web.Request) -> web.Response:
        if self.ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(text="not ready: clusters are still syncing\n", status=503)

    async def registryz(self, request: web.Request) -> web.Response:
        by_cluster: dict[str, list[JsonObject]] = {}
        for cluster, registry in self.aggregate.clusters.items():
            entries = []
            for (namespace, name), service in sorted(registry.services.items.items()):
                entries.append(
                    {
                        "hostname": f"{name}.{namespace}.svc.cluster.local",
                        "namespace": namespace,
                        "name": name,
                        "vip": service.cluster_ip,
                        "headless": service.cluster_ip is None,
                        "ports": [
                            {"name": p.name, "port": p.port, "protocol": p.protocol.value}
                            for p in service.ports
                        ],
                    }
                )
            by_cluster[cluster] = entries
        return self._json(by_cluster)

    async def endpointz(self, request: web.Request) -> web.Response:
        wanted = request.query.get("service")
        hosts = [wanted] if wanted else sorted(self.aggregate.endpoints)
        out: dict[str, list[JsonObject]] = {}
        for host in hosts:
            out[host] = [
                {
                    "address": e.address,
                    "port": e.port,
                    "portName": e.service_port_name,
                    "cluster": e.cluster,
                    "locality": e.locality.label,
                    "healthy": e.healthy,
                    "ready": e.ready,
                    "terminating": e.terminating,
                    "identity": e.identity,
                    "tlsMode": e.tls_mode.value,
                    "workload": e.workload,
                    "network": e.network,
                    "labels": dict(e.labels),
                }
                for e in self.aggregate.endpoints_of(host)
            ]
        return self._json(out)

    async def clusterz(self, request: web.Request) -> web.Response:
        primary = self.primary
        entries = [
            {
                "id": primary.cluster,
                "secret": "",
                "key": "",
                "state": primary.state,
                "synced": primary.ever_synced,
                "stale": primary.state == "stale",
                "error": primary.error,
                "primary": True,
            }
        ]
        entries += [{**entry, "primary": False} for entry in self.remotes.status()]
        return self._json(entries)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Follow the aggregate's change events (one JSON line each: time, type and fields) until disconnected."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=100_000)

        def listen(event: Event) -> None:
            line = orjson.dumps({"time": time.time(), "type": type(event).__name__, **asdict(event)}) + b"\n"
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(line)

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.aggregate.listeners.append(listen)
        try:
            while True:
                lines = [await queue.get()]
                while not queue.empty():
                    lines.append(queue.get_nowait())
                await response.write(b"".join(lines))
        except ConnectionResetError:
            pass
        finally:
            self.aggregate.listeners.remove(listen)
        return response

    async def meshz(self, request: web.Request) -> web.Response:
        config = asdict(self.mesh.config)
        config["raw"] = dict(self.mesh.config.raw)
        config["locality_lb"] = dict(self.mesh.config.locality_lb)
        return self._json({"config": config, "error": self.mesh.error})

    async def syncz(self, request: web.Request) -> web.Response:
        return self._json({"proxies": self.xds.syncz(), "pilot": self.options.pod_name})

    async def config_dump(self, request: web.Request) -> web.Response:
        proxy = request.query.get("proxy", "")
        if not proxy:
            return self._json({"error": "say which proxy: ?proxy=POD.NAMESPACE (or its node id or IP)"}, 400)
        dump = self.xds.config_dump(proxy)
        if dump is None:
            return self._json({"error": f"no proxy {proxy!r} is connected (see /debug/syncz)"}, 404)
        return self._json(dump)

    async def configz(self, request: web.Request) -> web.Response:
        config = self.config
        return self._json(
            {
                "virtualServices": sorted(f"{n}/{m}" for n, m in config.virtual_services.objects),
                "destinationRules": sorted(f"{n}/{m}" for n, m in config.destination_rules.objects),
                "sidecars": sorted(f"{n}/{m}" for n, m in config.sidecars.objects),
                "peerAuthentications": sorted(f"{n}/{m}" for n, m in config.peer_authentications.objects),
                "errors": [
                    {"kind": kind, "namespace": namespace, "name": name, "error": error}
                    for (kind, namespace, name), error in sorted(config.errors.items())
                ],
                "informers": {
                    i.name: {"synced": i.synced.is_set(), "error": i.error} for i in config.informers
                },
            }
        )


async def serve(client: AsyncClient, options: DiscoveryOptions) -> None:
    discovery = Discovery(client, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await discovery.start()
    await stop.wait()
    await discovery.stop()
