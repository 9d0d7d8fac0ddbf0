"""Mutual TLS in generated config: the sidecar's certificate and roots come from the agent's SDS (`default`,
`ROOTCA` on cluster `sds-grpc`); the control plane never sees a key.

- Outbound (client side): auto mTLS, Istio's: TLS to endpoints whose metadata says `tlsMode: istio` (they
  have a sidecar), plaintext to the others; a DestinationRule's `tls.mode` ISTIO_MUTUAL forces TLS, DISABLE
  turns it off. The server's certificate must carry one of the service's identities (its endpoints' SPIFFE ids).
- Inbound (server side): by the PeerAuthentication mode of the port: STRICT only mTLS, PERMISSIVE mTLS and
  plaintext (told apart by the TLS inspector and the mesh's ALPN), DISABLE only plaintext.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, duration_pb2, message, struct_pb2, wrappers_pb2

from isthmus.xds import names

TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_SOCKET = "envoy.transport_sockets.raw_buffer"


def _packed(value: message.Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(value)
    return out


def sds_secret(name: str) -> secret_pb2.SdsSecretConfig:
    source = config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=names.SDS_CLUSTER)
                )
            ],
            set_node_on_first_message_only=True,
        ),
        resource_api_version=config_source_pb2.V3,
        initial_fetch_timeout=duration_pb2.Duration(),
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _common(identities: Iterable[str], alpn: Iterable[str]) -> tls_pb2.CommonTlsContext:
    validation = common_pb2.CertificateValidationContext(
        match_typed_subject_alt_names=[
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.URI,
                matcher=string_pb2.StringMatcher(exact=identity),
            )
            for identity in sorted(identities)
        ]
    )
    return tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[sds_secret(names.SECRET_CERTIFICATE)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=validation,
            validation_context_sds_secret_config=sds_secret(names.SECRET_ROOT),
        ),
        alpn_protocols=list(alpn),
    )


def upstream_socket(identities: Iterable[str], sni: str) -> base_pb2.TransportSocket:
    context = tls_pb2.UpstreamTlsContext(common_tls_context=_common(identities, names.MESH_ALPN), sni=sni)
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=_packed(context))


def _raw() -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=RAW_SOCKET, typed_config=_packed(raw_buffer_pb2.RawBuffer()))


def apply_outbound(cluster: cluster_pb2.Cluster, mode: str, identities: Iterable[str], sni: str) -> None:
    """Set a cluster's transport: `mode` is the DestinationRule's tls.mode ("" auto, ISTIO_MUTUAL, DISABLE)."""
    if mode == "DISABLE":
        return
    socket = upstream_socket(identities, sni)
    if mode == "ISTIO_MUTUAL":
        cluster.transport_socket.CopyFrom(socket)
        return
    match = struct_pb2.Struct()
    match.update({"tlsMode": names.TLS_MODE_ISTIO})
    cluster.transport_socket_matches.extend(
        [
            cluster_pb2.Cluster.TransportSocketMatch(
                name="tlsMode-istio", match=match, transport_socket=socket
            ),
            cluster_pb2.Cluster.TransportSocketMatch(
                name="tlsMode-disabled", match=struct_pb2.Struct(), transport_socket=_raw()
            ),
        ]
    )


@functools.cache
def downstream_socket() -> base_pb2.TransportSocket:
    """The inbound side: the workload's certificate, a client certificate from the mesh's roots required.
    The same for every proxy, so built once (callers copy it into their chains; never mutate it)."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=_common((), ()),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=_packed(context))
