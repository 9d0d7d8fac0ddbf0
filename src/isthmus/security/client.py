"""The CA's client (used by the agent): send a CSR with the pod's token, get the chain back, checked."""

from __future__ import annotations

import grpc
from cryptography import x509

from isthmus.security import pki
from isthmus.security.protocol import METHOD, CertificateRequest, CertificateResponse


class CaClientError(Exception):
    """The CA refused or could not be reached; `code` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.details = message


async def request_certificate(
    address: str,
    root_pem: bytes,
    token: str,
    csr_pem: bytes,
    *,
    validity_seconds: int = 0,
    server_name: str = "",
    cluster_id: str = "",
    timeout: float = 10.0,
) -> list[str]:
    """Ask the CA at `address` (verified against `root_pem`, by `server_name` when given) to sign `csr_pem`.

    Returns the chain leaf first, root last; a chain of one element, or one whose leaf is not for the CSR's key,
    is refused (as Istio's client does)."""
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    credentials = grpc.ssl_channel_credentials(root_certificates=root_pem)
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        request = CertificateRequest(csr_pem.decode(), validity_seconds, cluster_id).encode()
        try:
            data = await call(request, metadata=(("authorization", f"Bearer {token}"),), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise CaClientError(exc.code(), exc.details() or "") from None
    chain = list(CertificateResponse.decode(data).cert_chain)
    if len(chain) < 2:
        raise CaClientError(
            grpc.StatusCode.INTERNAL, f"the CA answered a chain of {len(chain)} certificate(s)"
        )
    leaf = pki.load_certs(chain[0].encode(), "the CA's answer")[0]
    wanted = x509.load_pem_x509_csr(csr_pem).public_key()
    if not pki.same_public_key(leaf.public_key(), wanted):
        raise CaClientError(grpc.StatusCode.INTERNAL, "the CA's certificate is not for the key of the CSR")
    return chain
