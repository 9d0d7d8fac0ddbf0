"""`isthmus ca`: the cluster's certificate authority (the seed's istio-citadel).

- gRPC over TLS on `--grpc-address` (8060): `istio.v1.auth.IstioCertificateService/CreateCertificate`. The
  caller's bearer service-account token is reviewed by this cluster (TokenReview); it gets a certificate for
  its own identity only, `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
- Signs with the plug-in `cacerts` intermediate (`--self-signed-ca=false`), else with a self-signed root kept
  in Secret `istio-ca-secret` and rotated before it expires.
- Publishes the trusted roots as ConfigMap `istio-ca-root-cert` in every namespace.
- `--http-address`: `/ready` (200 once it signs), `/metrics`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from cryptography import x509
from lightkube import AsyncClient
from prometheus_client import CollectorRegistry, Counter, generate_latest

from isthmus import tunables
from isthmus.aio import cancel_all
from isthmus.model.identity import SpiffeId
from isthmus.security import pki
from isthmus.security.authority import CertificateAuthority, Refusal, SigningError, SigningPolicy
from isthmus.security.credentials import RotatingServerCredentials
from isthmus.security.protocol import METHOD, SERVICE, CertificateRequest, CertificateResponse, ProtocolError
from isthmus.security.roots import PluginSource, RootPublisher, SelfSignedSource, bundle_pem
from isthmus.security.tokens import TokenReviewer, bearer_token

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
ISSUED = Counter("isthmus_ca_certificates_issued_total", "Workload certificates signed", registry=REGISTRY)
REFUSED = Counter("isthmus_ca_requests_refused_total", "CSRs refused", ["reason"], registry=REGISTRY)
SERVING_CERT_LIFETIME = datetime.timedelta(days=30)
PILOT_SERVICE, PILOT_SERVICE_ACCOUNT = "istio-pilot", "istio-pilot-service-account"


def service_dns_names(name: str, namespace: str) -> list[str]:
    """The names a Service is reached by in its cluster."""
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


@dataclass
class CaOptions:
    namespace: str = "istio-system"
    trust_domain: str = "cluster.local"
    self_signed: bool = True
    cacerts: Path = Path("/etc/cacerts")
    grpc_address: str = "127.0.0.1:8060"
    http_address: str = "127.0.0.1:15014"
    service_name: str = "istio-citadel"  # the Service the CA is reached by (its serving certificate's names)
    service_account: str = "istio-citadel-service-account"
    audiences: tuple[str, ...] = ()
    publish_roots: bool = True


class ServingCertificate:
    """The CA's own TLS certificate, issued by its signer and re-issued at half-life."""

    def __init__(self, options: CaOptions) -> None:
        self.options = options
        self._renew_at = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        self.rotating: RotatingServerCredentials | None = None

    def issue(self, signer: pki.Signer) -> None:
        key = pki.KeyType.EC_P256.generate()
        identity = SpiffeId(self.options.trust_domain, self.options.namespace, self.options.service_account)
        names = service_dns_names(self.options.service_name, self.options.namespace)
        leaf = signer.workload(key.public_key(), [str(identity)], SERVING_CERT_LIFETIME, names)
        chain = "".join(signer.chain_pem(leaf)[:-1]).encode()  # the root is not sent
        if self.rotating is None:
            self.rotating = RotatingServerCredentials(
                pki.key_pem(key), chain, None, require_client_auth=False
            )
        else:
            self.rotating.update(pki.key_pem(key), chain, None)
        self._renew_at = (
            leaf.not_valid_before_utc + (leaf.not_valid_after_utc - leaf.not_valid_before_utc) / 2
        )

    def due(self) -> bool:
        return datetime.datetime.now(datetime.UTC) >= self._renew_at


class CaServer:
    def __init__(self, client: AsyncClient, options: CaOptions) -> None:
        self.client = client
        self.options = options
        pilot = SpiffeId(options.trust_domain, options.namespace, PILOT_SERVICE_ACCOUNT)
        self.policy = SigningPolicy(
            default_lifetime=datetime.timedelta(seconds=tunables.CA_WORKLOAD_CERT_TTL.get()),
            max_lifetime=datetime.timedelta(seconds=tunables.CA_MAX_WORKLOAD_CERT_TTL.get()),
            dns_names={str(pilot): frozenset(service_dns_names(PILOT_SERVICE, options.namespace))},
        )
        self.plugin = PluginSource(options.cacerts) if not options.self_signed else None
        self.self_signed = (
            SelfSignedSource(client, options.namespace, options.trust_domain) if options.self_signed else None
        )
        self.authority: CertificateAuthority | None = None
        self.reviewer = TokenReviewer(client, options.trust_domain, options.audiences)
        self.serving = ServingCertificate(options)
        self.publisher = RootPublisher(client, self.roots_pem)
        self.grpc_server: grpc.aio.Server | None = None
        self.port = 0
        self.ready = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None

    # -- the signer --------------------------------------------------------------------------------------

    def trusted_roots(self) -> list[x509.Certificate]:
        assert self.authority is not None
        if self.self_signed is not None and self.self_signed.trusted:
            return self.self_signed.trusted
        return [self.authority.signer.root]

    def roots_pem(self) -> str:
        return bundle_pem(self.trusted_roots())

    async def _load_signer(self) -> pki.Signer:
        if self.plugin is not None:
            return self.plugin.load()  # PkiError names the file: the CA does not start with a bad cacerts
        assert self.self_signed is not None
        return await self.self_signed.load()

    async def _check(self) -> None:
        """Follow cacerts changes, rotate a self-signed root, renew the serving certificate."""
        assert self.authority is not None
        while True:
            await asyncio.sleep(tunables.CA_CHECK_INTERVAL.get())
            try:
                new: pki.Signer | None = None
                if self.plugin is not None:
                    new = self.plugin.changed()
                elif self.self_signed is not None:
                    new = await self.self_signed.rotate_if_due(self.authority.signer)
                if new is not None:
                    self.authority.rotate(new)
                    self.serving.issue(new)
                    self.publisher.republish()
                    log.info("now signing with %s", new.cert.subject.rfc4514_string())
                elif self.serving.due():
                    self.serving.issue(self.authority.signer)
            except Exception:
                log.exception("the CA's periodic check failed; it keeps signing with its current CA")

    # -- the gRPC service --------------------------------------------------------------------------------

    async def create_certificate(
        self, request_bytes: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        peer = context.peer()
        try:
            try:
                request = CertificateRequest.decode(request_bytes)
            except ProtocolError as exc:
                raise SigningError(Refusal.INVALID_ARGUMENT, str(exc)) from None
            token = bearer_token(list(context.invocation_metadata() or ()))
            identity = await self.reviewer.review(token)
            assert self.authority is not None
            chain = self.authority.sign(request.csr, identity, request.validity_seconds)
        except SigningError as exc:
            REFUSED.labels(exc.code.value.lower()).inc()
            log.info("refused a CSR from %s: %s", peer, exc)
            await context.abort(getattr(grpc.StatusCode, exc.code.value), str(exc))
            raise AssertionError("unreachable") from None
        ISSUED.inc()
        log.debug("issued a certificate for %s to %s", identity, peer)
        return CertificateResponse(tuple(chain)).encode()

    def _handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                METHOD.rsplit("/", 1)[1]: grpc.unary_unary_rpc_method_handler(
                    self.create_certificate, request_deserializer=None, response_serializer=None
                )
            },
        )

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        signer = await self._load_signer()
        self.authority = CertificateAuthority(signer, self.policy)
        self.serving.issue(signer)
        log.info(
            "signing as %s (root %s)",
            signer.cert.subject.rfc4514_string(),
            signer.root.subject.rfc4514_string(),
        )

        server = grpc.aio.server()
        server.add_generic_rpc_handlers((self._handler(),))
        assert self.serving.rotating is not None
        self.port = server.add_secure_port(self.options.grpc_address, self.serving.rotating.credentials())
        if not self.port:
            raise OSError(f"cannot listen on {self.options.grpc_address} (--grpc-address)")
        await server.start()
        self.grpc_server = server
        self._tasks.append(asyncio.create_task(self._check()))
        if self.options.publish_roots:
            self._tasks.append(asyncio.create_task(self.publisher.run()))
        await self._start_http()
        self.ready.set()
        log.info("CA serving on %s", self.options.grpc_address)

    async def _start_http(self) -> None:
        app = web.Application()

        async def ready(_: web.Request) -> web.Response:
            return web.Response(status=200 if self.ready.is_set() else 503, text="ok\n")

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(REGISTRY), content_type="text/plain")

        async def roots(_: web.Request) -> web.Response:
            return web.Response(text=self.roots_pem(), content_type="application/x-pem-file")

        app.router.add_get("/ready", ready)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/roots", roots)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, _, port = self.options.http_address.rpartition(":")
        await web.TCPSite(self._runner, host, int(port)).start()

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.client.close()


async def serve(client: AsyncClient, options: CaOptions, stop: asyncio.Event | None = None) -> None:
    server = CaServer(client, options)
    try:
        await server.start()
        await (stop or asyncio.Event()).wait()
    finally:
        await server.stop()
