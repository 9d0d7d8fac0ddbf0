"""The agent's half of identity: a key made in the process, a certificate from the CA for the pod's own
service account, served to Envoy over SDS on a Unix socket (`default`, `ROOTCA`), renewed at half-life and
pushed again on the same stream, roots followed as the mounted file changes. Real CA, real gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2

from isthmus.agent import certificates as agent_certificates
from isthmus.agent.certificates import CertificateOptions, WorkloadCertificates
from isthmus.agent.sds import SECRET_TYPE, SdsServer
from isthmus.model.identity import SpiffeId
from isthmus.security import pki
from tests.unit.mesh.cakit import SERVER_NAME, Ca

pytestmark = pytest.mark.asyncio


class Workload:
    def __init__(self, ca: Ca, folder: Path, token: str) -> None:
        self.root = folder / "root-cert.pem"
        self.root.write_bytes(ca.root_pem)
        token_file = folder / "token"
        token_file.write_text(token)
        self.sds_socket = folder / "SDS"
        self.options = CertificateOptions(
            ca_address=ca.address,
            root_path=self.root,
            token_path=token_file,
            identity=SpiffeId("cluster.local", "sample", "sleep"),
            server_name=SERVER_NAME,
        )


@pytest.fixture
async def workload(ca: Ca, tmp_path: Path) -> Workload:
    return Workload(ca, tmp_path, await ca.kube.token("sample", "sleep"))


@pytest.fixture
async def agent(workload: Workload) -> AsyncIterator[tuple[WorkloadCertificates, SdsServer]]:
    certs = WorkloadCertificates(workload.options)
    sds = SdsServer(certs, workload.sds_socket)
    certs.on_change = sds.changed
    await sds.start()
    task = asyncio.create_task(certs.run())
    yield certs, sds
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await sds.stop()


class SecretStream:
    """What Envoy does: one StreamSecrets stream per secret name, ACKing each response."""

    def __init__(self, socket: Path, name: str) -> None:
        self.channel = grpc.aio.insecure_channel(f"unix:{socket}")
        self.name = name
        self.requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        self.call = self.channel.stream_stream(
            "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )(self._requests())
        self.requests.put_nowait(discovery_pb2.DiscoveryRequest(resource_names=[name], type_url=SECRET_TYPE))

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    async def next(self, timeout: float = 10.0) -> secret_pb2.Secret:
        response = await asyncio.wait_for(self.call.read(), timeout)
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        self.requests.put_nowait(
            discovery_pb2.DiscoveryRequest(
                resource_names=[self.name],
                type_url=SECRET_TYPE,
                version_info=response.version_info,
                response_nonce=response.nonce,
            )
        )
        secret = secret_pb2.Secret()
        response.resources[0].Unpack(secret)
        return secret

    async def close(self) -> None:
        self.requests.put_nowait(None)
        self.call.cancel()
        await self.channel.close()


async def test_envoy_gets_its_own_certificate_and_the_roots_over_sds(
    agent: tuple[WorkloadCertificates, SdsServer], workload: Workload, ca: Ca
) -> None:
    certs, _ = agent
    default, roots = SecretStream(workload.sds_socket, "default"), SecretStream(workload.sds_socket, "ROOTCA")
    try:
        secret = await default.next()
        chain = pki.load_certs(secret.tls_certificate.certificate_chain.inline_bytes, "chain")
        key = pki.load_key(secret.tls_certificate.private_key.inline_bytes, "key")
        assert pki.same_public_key(chain[0].public_key(), key.public_key())
        assert pki.spiffe_ids_of(chain[0]) == [SpiffeId("cluster.local", "sample", "sleep")]
        root = x509.load_pem_x509_certificate(ca.root_pem)
        assert root not in chain  # Envoy gets leaf and intermediates; the root comes as ROOTCA
        assert pki.verify_signed_by(chain[-1], root)
        trusted = await roots.next()
        assert trusted.validation_context.trusted_ca.inline_bytes == ca.root_pem
        assert certs.renewals == 1
    finally:
        await default.close()
        await roots.close()
    assert not (workload.sds_socket.stat().st_mode & 0o077)  # only the agent's user may connect


async def test_the_certificate_is_renewed_at_half_life_and_pushed_on_the_same_stream(
    ca: Ca, workload: Workload
) -> None:
    short = dataclasses.replace(workload.options, validity_seconds=8)  # renewed after about 4 s
    certs = WorkloadCertificates(short)
    sds = SdsServer(certs, workload.sds_socket)
    certs.on_change = sds.changed
    await sds.start()
    task = asyncio.create_task(certs.run())
    stream = SecretStream(workload.sds_socket, "default")
    try:
        first = await stream.next()
        second = await stream.next(timeout=20)
        assert second.tls_certificate.certificate_chain != first.tls_certificate.certificate_chain
        assert second.tls_certificate.private_key != first.tls_certificate.private_key  # a new key each time
        assert certs.renewals == 2
    finally:
        await stream.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sds.stop()


async def test_a_changed_roots_file_is_pushed_as_rootca(
    agent: tuple[WorkloadCertificates, SdsServer],
    workload: Workload,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(agent_certificates, "ROOT_POLL", 0.1)
    stream = SecretStream(workload.sds_socket, "ROOTCA")
    try:
        await stream.next()
        key = pki.KeyType.EC_P256.generate()
        extra = pki.cert_pem(pki.new_root("another root", key))
        workload.root.write_bytes(workload.root.read_bytes() + extra)
        # the poll interval was read when the agent started: the change shows within its 5 s
        updated = await stream.next(timeout=10)
        assert updated.validation_context.trusted_ca.inline_bytes.endswith(extra)
    finally:
        await stream.close()


async def test_a_refused_request_is_retried_and_reported(ca: Ca, tmp_path: Path) -> None:
    workload = Workload(ca, tmp_path, "not-a-token")
    certs = WorkloadCertificates(workload.options)
    task = asyncio.create_task(certs.run())
    try:
        for _ in range(100):
            if certs.error:
                break
            await asyncio.sleep(0.05)
        assert "UNAUTHENTICATED" in certs.error and ca.address in certs.error
        assert certs.current is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
