"""xDS over mutual TLS (15011): a proxy gets configuration only with a certificate of the mesh's roots whose
identity is the pod at the connection's address, and only for that pod. Real gRPC with TLS on loopback (the
pod's IP is 127.0.0.1 here)."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import grpc
import pytest

from isthmus.security import pki
from isthmus.security.credentials import RotatingServerCredentials
from isthmus.xds.resources import TypeUrl
from isthmus.xds.server import XdsServer
from tests.unit.xds.xdskit import C1, MeshBuilder, Stream, free_port, http, node

PILOT = "spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account"
SLEEP = "spiffe://cluster.local/ns/sample/sa/sleep"
SERVER_NAME = "istio-pilot.istio-system.svc"
DAY = datetime.timedelta(days=1)


class Pki:
    def __init__(self) -> None:
        key = pki.KeyType.EC_P256.generate()
        self.signer = pki.Signer(pki.new_root("test root", key), key, ())
        self.roots = pki.cert_pem(self.signer.cert)

    def pair(self, identity: str, dns: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
        key = pki.KeyType.EC_P256.generate()
        leaf = self.signer.workload(key.public_key(), [identity], DAY, dns)
        return pki.key_pem(key), pki.cert_pem(leaf)


@pytest.fixture
async def secure(mesh: MeshBuilder) -> AsyncIterator[tuple[str, Pki]]:
    mesh.service("helloworld", [http()])
    mesh.pod(C1, "sleep-1", "127.0.0.1", {"app": "sleep"}, service_account="sleep")
    authority = Pki()
    key, chain = authority.pair(PILOT, (SERVER_NAME,))
    server = XdsServer(mesh.sources)
    address = f"127.0.0.1:{free_port()}"
    await server.start(f"127.0.0.1:{free_port()}")
    await server.start_secure(
        address,
        RotatingServerCredentials(key, chain, authority.roots, require_client_auth=True).credentials(),
    )
    yield address, authority
    await server.stop(0)


async def first_response(
    address: str, roots: bytes, pair: tuple[bytes, bytes] | None, pod: str = "sleep-1"
) -> object:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=pair[0] if pair else None,
        certificate_chain=pair[1] if pair else None,
    )
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        stream = Stream(channel, delta=True)
        await stream.subscribe(TypeUrl.CLUSTER, the_node=node("127.0.0.1", pod))
        return await stream.recv(timeout=5)


async def test_the_pod_with_its_own_certificate_gets_its_configuration(secure: tuple[str, Pki]) -> None:
    address, authority = secure
    response = await first_response(address, authority.roots, authority.pair(SLEEP))
    assert response.type_url == TypeUrl.CLUSTER  # type: ignore[attr-defined]


async def test_a_certificate_of_another_service_account_is_refused(secure: tuple[str, Pki]) -> None:
    address, authority = secure
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(
            address, authority.roots, authority.pair("spiffe://cluster.local/ns/sample/sa/helloworld")
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "sa/helloworld but 127.0.0.1 is pod sample/sleep-1" in (refused.value.details() or "")


async def test_a_node_claiming_another_pod_is_refused(secure: tuple[str, Pki]) -> None:
    address, authority = secure
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await first_response(address, authority.roots, authority.pair(SLEEP), pod="helloworld-1")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "claims pod helloworld-1.sample" in (refused.value.details() or "")


async def test_no_certificate_or_one_from_another_root_cannot_connect(secure: tuple[str, Pki]) -> None:
    address, authority = secure
    with pytest.raises(grpc.aio.AioRpcError) as no_cert:
        await first_response(address, authority.roots, None)
    assert no_cert.value.code() == grpc.StatusCode.UNAVAILABLE
    stranger = Pki()
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await first_response(address, authority.roots, stranger.pair(SLEEP))
    assert foreign.value.code() == grpc.StatusCode.UNAVAILABLE
