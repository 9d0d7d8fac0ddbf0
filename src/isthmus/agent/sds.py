"""The agent's SDS server: Envoy's secrets `default` (the workload's key and chain) and `ROOTCA` (the trusted
roots), over gRPC on a Unix socket only Envoy in the same pod can reach (cluster `sds-grpc` in the bootstrap).

Contract: one stream per Envoy subscription (state of the world, `StreamSecrets`); a stream is answered once its
secrets exist and again, on every stream that asked for them, after `changed()`. Runs on the agent's loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from isthmus.agent.certificates import WorkloadCertificates

log = logging.getLogger(__name__)

SERVICE = "envoy.service.secret.v3.SecretDiscoveryService"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
CERTIFICATE, ROOTS = "default", "ROOTCA"
_nonces = itertools.count(1)


class SdsServer:
    def __init__(self, certificates: WorkloadCertificates, socket_path: Path) -> None:
        self.certificates = certificates
        self.socket_path = socket_path
        self.version = 0
        self.pushes = 0
        self._streams: set[asyncio.Event] = set()
        self._server: grpc.aio.Server | None = None

    def changed(self) -> None:
        """The certificate or the roots changed: every stream sends its secrets again."""
        self.version += 1
        for wake in self._streams:
            wake.set()

    def _secret(self, name: str) -> secret_pb2.Secret | None:
        issued = self.certificates.current
        if name == CERTIFICATE and issued is not None:
            return secret_pb2.Secret(
                name=name,
                tls_certificate=common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_bytes=issued.chain_pem),
                    private_key=base_pb2.DataSource(inline_bytes=issued.key_pem),
                ),
            )
        if name == ROOTS and self.certificates.roots_pem:
            return secret_pb2.Secret(
                name=name,
                validation_context=common_pb2.CertificateValidationContext(
                    trusted_ca=base_pb2.DataSource(inline_bytes=self.certificates.roots_pem)
                ),
            )
        return None

    def _response(self, names: list[str]) -> discovery_pb2.DiscoveryResponse | None:
        found = [self._secret(n) for n in names]
        secrets = [s for s in found if s is not None]
        if not names or len(secrets) < len(found):
            return None  # answered once all it asks for exists
        resources = []
        for secret in secrets:
            packed = any_pb2.Any()
            packed.Pack(secret)
            resources.append(packed)
        return discovery_pb2.DiscoveryResponse(
            version_info=str(self.version),
            resources=resources,
            type_url=SECRET_TYPE,
            nonce=str(next(_nonces)),
        )

    async def stream(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        wake = asyncio.Event()
        self._streams.add(wake)
        names: list[str] = []
        sent: tuple[bytes, ...] | None = None  # the resources last sent: an unchanged secret is not resent

        async def read() -> None:
            nonlocal names
            async for request in requests:
                if request.error_detail.message:
                    log.warning(
                        "Envoy rejected secrets %s: %s",
                        list(request.resource_names),
                        request.error_detail.message,
                    )
                if list(request.resource_names) != names:
                    names = list(request.resource_names)
                    wake.set()

        reader = asyncio.create_task(read())
        try:
            while not reader.done():
                waiter = asyncio.create_task(wake.wait())
                await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                wake.clear()
                if reader.done():
                    break
                response = self._response(names)
                if response is None:
                    continue
                content = tuple(r.value for r in response.resources)
                if content == sent:
                    continue
                await context.write(response)
                self.pushes += 1
                sent = content
        finally:
            self._streams.discard(wake)
            reader.cancel()

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "StreamSecrets": grpc.stream_stream_rpc_method_handler(
                    self.stream,
                    request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                    response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"unix:{self.socket_path}")
        await server.start()
        self.socket_path.chmod(0o600)
        self._server = server
        log.info("SDS on %s", self.socket_path)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)
        self.socket_path.unlink(missing_ok=True)
