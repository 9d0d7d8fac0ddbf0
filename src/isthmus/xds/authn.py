"""Who may open an xDS stream on the secure port (15011): a proxy whose certificate identity is the pod it
claims to be, so no proxy can get another workload's configuration.

The pod is found by the connection's peer IP in the cluster that owns that IP (pods talk without address
translation on the single network); its namespace and service account must be the certificate's SPIFFE id,
and the node id must name that pod at that IP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cryptography import x509

from isthmus.model.identity import SpiffeId
from isthmus.security import pki
from isthmus.xds.node import ProxyNode
from isthmus.xds.view import MeshSources


class AuthenticationError(Exception):
    """Why a stream is refused; the message names the identity, the pod and the IP."""


def peer_ip(peer: str) -> str:
    """`ipv4:10.44.1.5:51234` / `ipv6:[fd00::5]:51234` -> the address."""
    _, _, rest = peer.partition(":")
    host, _, _ = rest.rpartition(":")
    return host.strip("[]")


def certificate_identity(auth_context: Mapping[str, Iterable[bytes]]) -> SpiffeId:
    pems = list(auth_context.get("x509_pem_cert") or [])
    if not pems:
        raise AuthenticationError(
            "no client certificate: connect with the workload's certificate (the agent's SDS `default`)"
        )
    cert = x509.load_pem_x509_certificate(pems[0])
    identities = pki.spiffe_ids_of(cert)
    if not identities:
        raise AuthenticationError("the client certificate carries no SPIFFE id (spiffe://TD/ns/NS/sa/SA)")
    return identities[0]


def authenticate(
    sources: MeshSources, node: ProxyNode, peer: str, auth_context: Mapping[str, Iterable[bytes]]
) -> SpiffeId:
    """The proxy's identity, checked against the pod at the connection's address; AuthenticationError if not."""
    identity = certificate_identity(auth_context)
    trust_domain = sources.mesh().trust_domain
    if identity.trust_domain != trust_domain:
        raise AuthenticationError(f"{identity} is not of this mesh's trust domain {trust_domain}")
    ip = peer_ip(peer)
    workload = sources.aggregate.workload(ip)
    if workload is None:
        raise AuthenticationError(
            f"{identity} connects from {ip}, which is no pod of any cluster of the mesh"
        )
    if (workload.namespace, workload.service_account) != (identity.namespace, identity.service_account):
        raise AuthenticationError(
            f"the certificate is for {identity} but {ip} is pod {workload.namespace}/{workload.name} of cluster "
            f"{workload.cluster} (service account {workload.service_account})"
        )
    if (
        node.ip != ip
        or node.namespace != workload.namespace
        or (node.pod_name and node.pod_name != workload.name)
    ):
        raise AuthenticationError(
            f"node {node.id} claims pod {node.pod or node.namespace} at {node.ip}, but the connection is pod "
            f"{workload.namespace}/{workload.name} at {ip}"
        )
    return identity
