"""The sidecar's agent (`isthmus agent proxy sidecar ...`): writes Envoy's bootstrap, runs Envoy, and serves
the sidecar's health on the status port (15020): `/healthz/ready` is 200 once Envoy is live with its initial
configuration from the control plane."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path

from aiohttp import web

from isthmus.agent.bootstrap import AgentOptions, BootstrapError, ProxyIdentity, bootstrap, sds_socket
from isthmus.agent.certificates import CertificateOptions, WorkloadCertificates
from isthmus.agent.envoy import EnvoyProcess, bundled_binary
from isthmus.agent.sds import SdsServer
from isthmus.model.identity import IdentityError, SpiffeId

log = logging.getLogger(__name__)
BOOTSTRAP_FILE = "envoy-rev0.json"
TERMINATION_DRAIN = 5.0  # seconds open connections get when the pod stops


def write_bootstrap(options: AgentOptions, proxy: ProxyIdentity, version: str) -> Path:
    directory = Path(options.config_path)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / BOOTSTRAP_FILE
    path.write_text(json.dumps(bootstrap(options, proxy, version), indent=2))
    return path


def health_app(envoy: EnvoyProcess) -> web.Application:
    async def ready(request: web.Request) -> web.Response:
        ok, detail = await envoy.ready()
        return web.Response(text=f"{detail}\n", status=200 if ok else 503)

    async def quit_(request: web.Request) -> web.Response:
        asyncio.get_running_loop().call_soon(signal.raise_signal, signal.SIGTERM)
        return web.Response(text="stopping\n")

    app = web.Application()
    app.router.add_get("/healthz/ready", ready)
    app.router.add_post("/quitquitquit", quit_)
    return app


def envoy_binary(options: AgentOptions) -> str:
    """--binaryPath when it exists (Istio's template names /usr/local/bin/envoy), else the bundled Envoy."""
    if options.binary_path and Path(options.binary_path).exists():
        return options.binary_path
    return bundled_binary()


class Secrets:
    """The workload's certificates and the SDS server that hands them to Envoy."""

    def __init__(self, certificates: WorkloadCertificates, sds: SdsServer) -> None:
        self.certificates = certificates
        self.sds = sds
        self.task = asyncio.get_running_loop().create_task(certificates.run(), name="certificates")

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.sds.stop()


async def start_certificates(options: AgentOptions, proxy: ProxyIdentity) -> Secrets | None:
    """With a CA (--caAddress): key, CSR, certificate and SDS; without one the proxy has no certificates."""
    if not options.ca_address:
        return None
    if not proxy.service_account:
        raise BootstrapError(
            "SERVICE_ACCOUNT is not set: the sidecar needs it (spec.serviceAccountName) for its identity"
        )
    try:
        identity = SpiffeId(options.trust_domain, proxy.namespace, proxy.service_account)
    except IdentityError as exc:
        raise BootstrapError(f"the workload's identity: {exc}") from None
    certificates = WorkloadCertificates(
        CertificateOptions(
            ca_address=options.ca_address,
            root_path=Path(options.root_cert_path),
            token_path=Path(options.token_path),
            identity=identity,
            cluster_id=str(proxy.metadata.get("CLUSTER_ID", "")),
        )
    )
    sds = SdsServer(certificates, Path(sds_socket(options)))
    certificates.on_change = sds.changed
    await sds.start()
    return Secrets(certificates, sds)


async def run(options: AgentOptions, proxy: ProxyIdentity, version: str) -> None:
    path = write_bootstrap(options, proxy, version)
    binary = envoy_binary(options)
    envoy = EnvoyProcess(
        binary,
        path,
        options.proxy_admin_port,
        options.concurrency,
        options.drain_duration,
        options.parent_shutdown_duration,
        options.log_level,
    )
    secrets = await start_certificates(options, proxy)
    runner = web.AppRunner(health_app(envoy), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", options.status_port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "proxy %s: discovery %s, health on :%d, bootstrap %s",
        proxy.node_id(options.domain),
        options.discovery_address,
        options.status_port,
        path,
    )
    supervisor = loop.create_task(envoy.run(), name="envoy")
    stopped = loop.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait({supervisor, stopped}, return_when=asyncio.FIRST_COMPLETED)
    try:
        if supervisor in done:
            stopped.cancel()
            supervisor.result()  # raises what stopped it
            return
        await envoy.stop(TERMINATION_DRAIN)
        supervisor.cancel()
    finally:
        await runner.cleanup()
        if secrets is not None:
            await secrets.stop()
