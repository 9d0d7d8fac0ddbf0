"""The CA (`isthmus ca`) against an in-process API server: CSRs signed for the caller's own identity only,
refusals with clear errors, plug-in `cacerts` from `isthmus x ca`, self-signed root rotation, and the root
published in every namespace. Real gRPC over TLS, real TokenReview."""

from __future__ import annotations

import functools
import itertools
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from lightkube import ApiError
from lightkube.resources.core_v1 import ConfigMap, Secret

from isthmus.local.apiserver.tokens import API_AUDIENCES, ServiceAccountTokens, load_signing_key
from isthmus.model.identity import SpiffeId
from isthmus.security import pki
from isthmus.security.client import CaClientError, request_certificate
from isthmus.security.roots import ROOT_CONFIGMAP
from isthmus.security.server import CaServer
from tests.unit.mesh.cakit import SERVER_NAME, Ca, ca_options, make_ca, start_ca
from tests.unit.mesh.meshkit import Kube, LocalApi, eventually, wait_until

pytestmark = pytest.mark.asyncio


def workload_csr(identity: str, key: pki.PrivateKey | None = None) -> tuple[pki.PrivateKey, bytes]:
    key = key or pki.KeyType.EC_P256.generate()
    return key, pki.new_csr(key, [identity])


async def test_a_workload_gets_its_own_identity_chained_to_the_root(ca: Ca) -> None:
    token = await ca.kube.token("sample", "sleep")
    _, csr = workload_csr("spiffe://cluster.local/ns/sample/sa/sleep")
    chain = await ca.sign(token, csr)
    certs = [x509.load_pem_x509_certificate(c.encode()) for c in chain]
    assert pki.spiffe_ids_of(certs[0]) == [SpiffeId("cluster.local", "sample", "sleep")]
    assert certs[-1] == x509.load_pem_x509_certificate(ca.root_pem)
    assert all(pki.verify_signed_by(child, parent) for child, parent in itertools.pairwise(certs))
    lifetime = certs[0].not_valid_after_utc - certs[0].not_valid_before_utc
    assert 23.9 * 3600 < lifetime.total_seconds() <= 24 * 3600 + 301  # default 24 h (+ clock-skew start)


async def test_a_csr_without_sans_gets_the_callers_identity(ca: Ca) -> None:
    token = await ca.kube.token("sample", "helloworld")
    key = pki.KeyType.RSA_2048.generate()
    chain = await ca.sign(token, pki.new_csr(key, []), validity=3600)
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    assert pki.spiffe_ids_of(leaf) == [SpiffeId("cluster.local", "sample", "helloworld")]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() <= 3600 + 301


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        (
            "another service account",
            grpc.StatusCode.PERMISSION_DENIED,
            "sa/helloworld but the caller's token is for",
        ),
        ("dns names", grpc.StatusCode.PERMISSION_DENIED, "DNS names"),
        ("forged token", grpc.StatusCode.UNAUTHENTICATED, "refused by the cluster"),
        ("expired token", grpc.StatusCode.UNAUTHENTICATED, "expired"),
        ("no token", grpc.StatusCode.UNAUTHENTICATED, "no service-account token"),
        ("malformed csr", grpc.StatusCode.INVALID_ARGUMENT, "not a PEM certificate request"),
        ("unsupported key", grpc.StatusCode.INVALID_ARGUMENT, "unsupported key type"),
        ("absurd validity", grpc.StatusCode.INVALID_ARGUMENT, "longer than this CA's maximum"),
        ("negative validity", grpc.StatusCode.INVALID_ARGUMENT, "must not be negative"),
    ],
)
async def test_bad_requests_are_refused_clearly_and_the_ca_keeps_serving(
    ca: Ca, apiserver: LocalApi, case: str, code: grpc.StatusCode, words: str
) -> None:
    token = await ca.kube.token("sample", "sleep")
    _, csr = workload_csr("spiffe://cluster.local/ns/sample/sa/sleep")
    validity = 0
    if case == "another service account":
        _, csr = workload_csr("spiffe://cluster.local/ns/sample/sa/helloworld")
    elif case == "dns names":
        key = pki.KeyType.EC_P256.generate()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName("helloworld.sample.svc")]), critical=False
            )
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
    elif case == "forged token":
        head, body, signature = token.split(".")
        token = f"{head}.{body}.{signature[:-6]}AAAAAA"
    elif case == "expired token":
        tokens = ServiceAccountTokens(
            load_signing_key(apiserver.certs.sa_key), lambda *_: None, clock=lambda: time.time() - 7200
        )
        sa = {"metadata": {"name": "sleep", "namespace": "sample", "uid": ""}}
        token, _ = tokens.issue(sa, API_AUDIENCES, 600)
    elif case == "no token":
        token = ""
    elif case == "malformed csr":
        csr = b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64 at all\n-----END CERTIFICATE REQUEST-----\n"
    elif case == "unsupported key":
        key25519 = ed25519.Ed25519PrivateKey.generate()
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key25519, None)
            .public_bytes(serialization.Encoding.PEM)
        )
    elif case == "absurd validity":
        validity = 100 * 365 * 24 * 3600
    elif case == "negative validity":
        validity = -5
    with pytest.raises(CaClientError) as refused:
        if case == "no token":
            await _call_without_token(ca, csr)
        else:
            await ca.sign(token, csr, validity)
    assert refused.value.code == code, refused.value
    assert words in refused.value.details, refused.value.details
    # nothing else is harmed: a good request right after is signed
    good_token = await ca.kube.token("sample", "sleep")
    _, good = workload_csr("spiffe://cluster.local/ns/sample/sa/sleep")
    assert len(await ca.sign(good_token, good)) == 2


async def _call_without_token(ca: Ca, csr: bytes) -> None:
    from isthmus.security.protocol import METHOD, CertificateRequest

    credentials = grpc.ssl_channel_credentials(root_certificates=ca.root_pem)
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    async with grpc.aio.secure_channel(ca.address, credentials, options=options) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        try:
            await call(CertificateRequest(csr.decode()).encode(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            raise CaClientError(exc.code(), exc.details() or "") from None


async def test_the_control_plane_may_have_its_services_dns_names(ca: Ca) -> None:
    token = await ca.kube.token("istio-system", "istio-pilot-service-account")
    key = pki.KeyType.EC_P256.generate()
    pilot = "spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account"
    chain = await ca.sign(token, pki.new_csr(key, [pilot], ["istio-pilot.istio-system.svc"]))
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["istio-pilot.istio-system.svc"]
    with pytest.raises(CaClientError) as refused:
        await ca.sign(token, pki.new_csr(key, [pilot], ["helloworld.sample.svc"]))
    assert "helloworld.sample.svc" in refused.value.details


async def test_a_client_that_does_not_trust_the_ca_root_cannot_talk_to_it(ca: Ca, tmp_path: Path) -> None:
    other = make_ca(tmp_path)
    token = await ca.kube.token("sample", "sleep")
    _, csr = workload_csr("spiffe://cluster.local/ns/sample/sa/sleep")
    with pytest.raises(CaClientError) as refused:
        await request_certificate(
            ca.address, (other / "root-cert.pem").read_bytes(), token, csr, server_name=SERVER_NAME, timeout=3
        )
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE


async def test_the_root_is_published_in_every_namespace_and_repaired(ca: Ca) -> None:
    api: Any = ca.kube.client
    root = ca.server.roots_pem()

    async def published(namespace: str) -> bool:
        try:
            cm = await api.get(ConfigMap, ROOT_CONFIGMAP, namespace=namespace)
        except ApiError:
            return False
        return bool((cm.data or {}).get("root-cert.pem") == root)

    for ns in ("default", "sample", "istio-system"):
        await wait_until(functools.partial(published, ns), f"{ROOT_CONFIGMAP} in {ns}")
    await ca.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late"}})
    await wait_until(lambda: published("late"), f"{ROOT_CONFIGMAP} in a new namespace")
    await ca.kube.delete(ConfigMap, ROOT_CONFIGMAP, "sample")
    await wait_until(lambda: published("sample"), f"{ROOT_CONFIGMAP} put back after a delete")
    await ca.kube.patch(ConfigMap, ROOT_CONFIGMAP, {"data": {"root-cert.pem": "tampered"}}, "sample")
    await wait_until(lambda: published("sample"), f"{ROOT_CONFIGMAP} put back after an edit")


async def test_plugin_cacerts_sign_with_the_clusters_intermediate(
    apiserver: LocalApi, tmp_path: Path
) -> None:
    cacerts = make_ca(tmp_path)
    server = await start_ca(apiserver, self_signed=False, cacerts=cacerts)
    try:
        ca = Ca(server, Kube(apiserver.client()))
        assert ca.root_pem == (cacerts / "root-cert.pem").read_bytes()
        token = await ca.kube.token("sample", "sleep")
        _, csr = workload_csr("spiffe://cluster.local/ns/sample/sa/sleep")
        chain = await ca.sign(token, csr)
        assert len(chain) == 3
        assert chain[1].encode() == (cacerts / "ca-cert.pem").read_bytes()
        assert chain[2].encode() == (cacerts / "root-cert.pem").read_bytes()
    finally:
        await server.stop()


def _write(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("not a ca", "ca-cert.pem is not a CA certificate"),
        ("wrong key", "ca-key.pem is not the key of ca-cert.pem"),
        ("unrelated root", "must chain to root-cert.pem"),
        ("missing key", "missing ca-key.pem"),
        ("garbage", "not PEM certificates"),
    ],
)
async def test_bad_cacerts_stop_the_ca_at_start_naming_the_file(
    apiserver: LocalApi, tmp_path: Path, case: str, words: str
) -> None:
    cacerts = make_ca(tmp_path)
    other = make_ca(tmp_path / "other", "cluster9")
    if case == "not a ca":  # a workload certificate of the same root (Istio #16337)
        root_cert = pki.load_certs((tmp_path / "root" / "root-cert.pem").read_bytes(), "root")[0]
        root_key = pki.load_key((tmp_path / "root" / "root-key.pem").read_bytes(), "root")
        key = pki.KeyType.EC_P256.generate()
        leaf = pki.Signer(root_cert, root_key, ()).workload(
            key.public_key(), ["spiffe://x/ns/a/sa/b"], pki.WORKLOAD_LIFETIME
        )
        _write(cacerts, "ca-cert.pem", pki.cert_pem(leaf))
        _write(cacerts, "ca-key.pem", pki.key_pem(key))
    elif case == "wrong key":
        _write(cacerts, "ca-key.pem", (other / "ca-key.pem").read_bytes())
    elif case == "unrelated root":
        _write(cacerts, "root-cert.pem", (other / "root-cert.pem").read_bytes())
    elif case == "missing key":
        (cacerts / "ca-key.pem").unlink()
    elif case == "garbage":
        _write(cacerts, "ca-cert.pem", b"hello")
    with pytest.raises(pki.PkiError) as failed:
        await start_ca(apiserver, self_signed=False, cacerts=cacerts)
    assert words in str(failed.value)
    assert str(cacerts) in str(failed.value)


async def test_a_self_signed_root_survives_a_restart_and_rotates_before_expiry(
    apiserver: LocalApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await start_ca(apiserver)
    root = first.roots_pem()
    await first.stop()
    second = CaServer(apiserver.client(), ca_options())
    await second.start()
    try:
        assert second.roots_pem() == root  # the same root, from Secret istio-ca-secret
    finally:
        await second.stop()

    monkeypatch.setenv("ISTHMUS_CA_SELF_SIGNED_ROOT_TTL", "6")
    monkeypatch.setenv("ISTHMUS_CA_ROOT_ROTATE_REMAINING", "0.99")
    monkeypatch.setenv("ISTHMUS_CA_CHECK_INTERVAL", "0.1")
    await Kube(apiserver.client()).delete(Secret, "istio-ca-secret", "istio-system")
    third = CaServer(apiserver.client(), ca_options())
    await third.start()
    try:
        assert third.authority is not None
        before = third.authority.signer.cert
        authority = third.authority
        await eventually(lambda: authority.signer.cert != before, timeout=10, what="root rotation")
        trusted = pki.load_certs(third.roots_pem().encode(), "bundle")
        assert before in trusted and third.authority.signer.cert in trusted  # the old root stays trusted
        ca = Ca(third, Kube(apiserver.client()))
        token = await ca.kube.token("sample", "sleep")
        _, csr = workload_csr("spiffe://cluster.local/ns/sample/sa/sleep")
        chain = await ca.sign(token, csr)
        assert chain[-1].encode() == pki.cert_pem(third.authority.signer.cert)
    finally:
        await third.stop()
