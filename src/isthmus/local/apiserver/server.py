"""The API server process of one local cluster: wires storage, objects, controllers and HTTP, serves https.

Run as `python -m isthmus.local.apiserver.server CONFIG.json` (the `local up` command starts it in the
background). SIGTERM or SIGINT stops it cleanly: open watches end, pending writes are committed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from isthmus.local.apiserver.admission import AdmissionChain
from isthmus.local.apiserver.auth import (
    AUTHENTICATED,
    SYSTEM_MASTERS,
    AuthChain,
    StaticTokenAuthenticator,
    SuperuserAuthorizer,
    UserInfo,
)
from isthmus.local.apiserver.binding import Bindings
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.controllers import ControllerContext, ControllerManager
from isthmus.local.apiserver.discovery import Discovery
from isthmus.local.apiserver.handlers import MAX_REQUEST_BYTES, ApiHandlers
from isthmus.local.apiserver.identity import Identity
from isthmus.local.apiserver.objects import Objects
from isthmus.local.apiserver.openapi import OpenApi
from isthmus.local.apiserver.podproxy import PodProxy
from isthmus.local.apiserver.portforward import PortForward
from isthmus.local.apiserver.rbac import RbacAuthorizer
from isthmus.local.apiserver.resources import ResourceRegistry
from isthmus.local.apiserver.reviews import AccessReviews
from isthmus.local.apiserver.scale import ScaleSubresource
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.serviceaccount_admission import ServiceAccountAdmission
from isthmus.local.apiserver.store import Store
from isthmus.local.apiserver.strategies import Strategies
from isthmus.local.apiserver.tokens import ServiceAccountTokens, load_signing_key
from isthmus.local.apiserver.webhooks import WebhookAdmission

log = logging.getLogger("isthmus.apiserver")

SHUTDOWN_GRACE = 2.0  # seconds requests in flight (exec, logs, proxies) get when the server stops

ADMIN_USER = UserInfo("kubernetes-admin", groups=(SYSTEM_MASTERS, AUTHENTICATED))


def version_info(minor: int) -> dict[str, Any]:
    from isthmus import __version__

    return {
        "major": "1",
        "minor": str(minor),
        "gitVersion": f"v1.{minor}.0",
        "gitCommit": f"isthmus-{__version__}",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "compiler": "isthmus",
        "platform": "linux/amd64",
    }


class ApiServer:
    """One cluster's API server, assembled from its parts. `start` serves, `stop` shuts down."""

    def __init__(self, config: ApiServerConfig, catalog: SchemaCatalog | None = None) -> None:
        self.config = config
        self.catalog = catalog or SchemaCatalog.load()
        self.store = Store(config.db_path, history_size=config.watch_history)
        self.registry = ResourceRegistry()
        self.strategies = Strategies(self.store, config.service_cidr)
        self.admission = AdmissionChain()
        self.admission.plugins.append(ServiceAccountAdmission(self.store))
        self.webhooks = WebhookAdmission(self.store, self.catalog)
        self.admission.plugins.append(self.webhooks)
        self.objects = Objects(self.store, self.registry, self.catalog, self.strategies, self.admission)
        self.controllers = ControllerManager(ControllerContext(self.objects, config))
        admin_token = Path(config.admin_token_file).read_text().strip()
        self.tokens = ServiceAccountTokens(
            load_signing_key(config.service_account_key_path), self._core_object
        )
        self.rbac = RbacAuthorizer(self.store)
        self.auth = AuthChain(
            [StaticTokenAuthenticator({admin_token: ADMIN_USER}), self.tokens],
            [SuperuserAuthorizer(), self.rbac],
        )
        address = f"{config.advertise_host}:{config.listen_port}"
        self.handlers = ApiHandlers(
            self.objects,
            self.auth,
            Discovery(self.registry, address),
            OpenApi(self.catalog, self.registry),
            version_info(config.kubernetes_minor),
        )
        AccessReviews(self.auth).install(self.handlers)
        ScaleSubresource(self.objects).install(self.handlers)
        Bindings(self.objects).install(self.handlers)
        PodProxy(self.objects, config).install(self.handlers)
        PortForward(self.objects, config).install(self.handlers)
        jwks_uri = f"https://{address}/openid/v1/jwks"
        Identity(self.auth, self.tokens, self.rbac, self.objects, jwks_uri).install(self.handlers)
        self._runner: web.AppRunner | None = None

    def _core_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        stored = self.store.get(("", plural), namespace, name)
        return stored.obj if stored is not None else None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_request_bytes)
        app[MAX_REQUEST_BYTES] = self.config.max_request_bytes
        app.router.add_route("*", "/{tail:.*}", self.handlers.handle)
        return app

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.cert_file, self.config.key_file)
        context.set_alpn_protocols(["http/1.1"])
        return context

    async def start(self) -> None:
        await self.controllers.prepare()
        self.store.start_history()
        self.controllers.start()
        self._runner = web.AppRunner(
            self.app(), handler_cancellation=True, access_log=None, shutdown_timeout=SHUTDOWN_GRACE
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.config.listen_host,
            self.config.listen_port,
            ssl_context=self.ssl_context(),
            reuse_address=True,
            backlog=1024,
        )
        await site.start()
        self.handlers.ready = True
        log.info(
            "serving %s on https://%s:%d",
            self.config.cluster,
            self.config.listen_host,
            self.config.listen_port,
        )

    async def stop(self) -> None:
        """New requests are refused (503) from here on; open watches end, requests in flight get
        SHUTDOWN_GRACE seconds, then the store is flushed and closed."""
        self.handlers.ready = False
        self.handlers.stopping = True
        for resource in list(self.store.resources()):
            self.store.close_watchers(resource)
        await self.controllers.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.webhooks.close()
        await self.store.persisted()
        self.store.close()


async def serve(config: ApiServerConfig) -> None:
    server = ApiServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("stopping")
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m isthmus.local.apiserver.server CONFIG.json", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ApiServerConfig.load(Path(args[0]))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config))


if __name__ == "__main__":
    main()
