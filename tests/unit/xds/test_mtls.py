"""Mutual TLS in generated config: auto mTLS towards endpoints with a sidecar, the service's identities
verified, DestinationRule tls modes, PeerAuthentication modes on the inbound side (mesh, namespace, workload,
port), proxies without certificates, and Envoy accepting all of it with the agent's SDS cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from isthmus.agent.bootstrap import AgentOptions, sds_cluster
from isthmus.config.security import MtlsMode
from isthmus.xds import cds, lds
from isthmus.xds.node import parse
from isthmus.xds.view import View, inbound_ports, resolve, view_key
from tests.unit.xds.xdskit import C1, C2, MeshBuilder, assert_envoy_accepts, http, node

HOST = "helloworld.sample.svc.cluster.local"
CLUSTER = f"outbound|5000||{HOST}"
HELLO_SA = "spiffe://cluster.local/ns/sample/sa/helloworld"


@pytest.fixture
def mesh() -> MeshBuilder:
    mesh = MeshBuilder()
    mesh.service("helloworld", [http()], vips={C1: "10.96.0.10", C2: "10.97.0.10"})
    mesh.endpoints(C1, "helloworld", ["10.44.1.1"], sidecar=True, service_account="helloworld")
    mesh.endpoints(C2, "helloworld", ["10.45.1.1"], sidecar=True, service_account="helloworld")
    mesh.pod(C1, "helloworld-v1", "10.44.1.1", {"app": "helloworld", "version": "v1"})
    return mesh


def view_for(
    mesh: MeshBuilder, *, sds: bool = True, ip: str = "10.44.0.5", pod: str = "client-1"
) -> tuple[View, Any]:
    proxy = resolve(parse(node(ip, pod, sds=sds)), mesh.sources)
    return View(view_key(proxy, mesh.sources), mesh.sources, proxy.sidecar), proxy


def cluster_of(view: View, name: str = CLUSTER) -> Any:
    return cluster_pb2.Cluster.FromString(cds.view_clusters(view)[name].body)


def upstream(socket: Any) -> tls_pb2.UpstreamTlsContext:
    context = tls_pb2.UpstreamTlsContext()
    socket.typed_config.Unpack(context)
    return context


def test_auto_mtls_to_endpoints_with_a_sidecar_checks_the_services_identities(mesh: MeshBuilder) -> None:
    view, _ = view_for(mesh)
    cluster = cluster_of(view)
    assert not cluster.HasField("transport_socket")
    by_name = {m.name: m for m in cluster.transport_socket_matches}
    assert set(by_name) == {"tlsMode-istio", "tlsMode-disabled"}
    assert dict(by_name["tlsMode-istio"].match) == {"tlsMode": "istio"}
    context = upstream(by_name["tlsMode-istio"].transport_socket)
    assert context.sni == f"outbound_.5000_._.{HOST}"
    common = context.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    validation = common.combined_validation_context
    assert validation.validation_context_sds_secret_config.name == "ROOTCA"
    sans = [m.matcher.exact for m in validation.default_validation_context.match_typed_subject_alt_names]
    assert sans == [HELLO_SA]
    assert list(common.alpn_protocols) == ["istio-peer-exchange", "istio"]


def test_a_proxy_without_certificates_gets_plaintext_clusters(mesh: MeshBuilder) -> None:
    view, _ = view_for(mesh, sds=False)
    cluster = cluster_of(view)
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")


@pytest.mark.parametrize(
    ("mode", "tls_always", "tls_never"), [("ISTIO_MUTUAL", True, False), ("DISABLE", False, True)]
)
def test_destination_rule_tls_modes(mesh: MeshBuilder, mode: str, tls_always: bool, tls_never: bool) -> None:
    mesh.apply(
        "DestinationRule", "helloworld", {"host": "helloworld", "trafficPolicy": {"tls": {"mode": mode}}}
    )
    view, _ = view_for(mesh)
    cluster = cluster_of(view)
    assert cluster.HasField("transport_socket") is tls_always
    assert (not cluster.transport_socket_matches and not cluster.HasField("transport_socket")) is tls_never


def test_unsupported_tls_origination_is_reported_and_not_used(mesh: MeshBuilder) -> None:
    mesh.apply(
        "DestinationRule", "helloworld", {"host": "helloworld", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}
    )
    errors = list(mesh.config.errors.values())
    assert any("spec.trafficPolicy.tls.mode: SIMPLE" in e and "not supported yet" in e for e in errors), (
        errors
    )
    assert mesh.config.destination_rule(HOST, "sample", "sample") is None


def chains(mesh: MeshBuilder, *, sds: bool = True) -> dict[str, Any]:
    view, proxy = view_for(mesh, sds=sds, ip="10.44.1.1", pod="helloworld-v1")
    ports = inbound_ports(proxy, mesh.sources)
    modes = {p.target: mesh.config.mtls_mode(proxy.namespace, proxy.labels, p.target) for p in ports}
    listener = listener_pb2.Listener.FromString(lds.virtual_inbound(view, ports, modes).body)
    assert any(f.name == "envoy.filters.listener.tls_inspector" for f in listener.listener_filters) is sds
    return {c.name: c for c in listener.filter_chains}


INBOUND = f"inbound|5000|http|{HOST}"


def test_permissive_by_default_accepts_mtls_and_plaintext(mesh: MeshBuilder) -> None:
    found = chains(mesh)
    assert set(found) == {
        f"{INBOUND}-mtls",
        f"{INBOUND}-app-tls",
        f"{INBOUND}-plaintext",
        "virtualInbound-catchall-tcp",
    }
    mtls = found[f"{INBOUND}-mtls"]
    assert mtls.filter_chain_match.transport_protocol == "tls"
    assert list(mtls.filter_chain_match.application_protocols) == ["istio-peer-exchange", "istio"]
    context = tls_pb2.DownstreamTlsContext()
    mtls.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value
    assert found[f"{INBOUND}-plaintext"].filter_chain_match.transport_protocol == "raw_buffer"


def peer_authentication(
    mesh: MeshBuilder, name: str, spec: dict[str, Any], namespace: str = "sample", created: str = ""
) -> None:
    mesh.apply("PeerAuthentication", name, spec, namespace=namespace, created=created)


def test_strict_mesh_wide_accepts_only_mtls(mesh: MeshBuilder) -> None:
    peer_authentication(mesh, "default", {"mtls": {"mode": "STRICT"}}, namespace="istio-system")
    assert set(chains(mesh)) == {f"{INBOUND}-mtls", "virtualInbound-catchall-tcp"}


def test_namespace_overrides_mesh_and_workload_port_overrides_both(mesh: MeshBuilder) -> None:
    peer_authentication(mesh, "default", {"mtls": {"mode": "STRICT"}}, namespace="istio-system")
    peer_authentication(mesh, "default", {"mtls": {"mode": "DISABLE"}})
    assert set(chains(mesh)) == {f"{INBOUND}-plaintext", "virtualInbound-catchall-tcp"}
    peer_authentication(
        mesh,
        "hello",
        {"selector": {"matchLabels": {"app": "helloworld"}}, "portLevelMtls": {"5000": {"mode": "STRICT"}}},
    )
    assert set(chains(mesh)) == {f"{INBOUND}-mtls", "virtualInbound-catchall-tcp"}
    assert mesh.config.mtls_mode("sample", {"app": "other"}, 5000) is MtlsMode.DISABLE


def test_strict_without_certificates_accepts_nothing_on_the_port(mesh: MeshBuilder) -> None:
    peer_authentication(mesh, "default", {"mtls": {"mode": "STRICT"}})
    found = chains(mesh, sds=False)
    assert set(found) == {f"{INBOUND}-strict", "virtualInbound-catchall-tcp"}
    proxy = found[f"{INBOUND}-strict"].filters[0]
    assert "BlackHoleCluster" in proxy.typed_config.value.decode(errors="replace")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"mtls": {"mode": "STRICTLY"}}, "spec.mtls.mode: must be one of"),
        ({"portLevelMtls": {"5000": {"mode": "STRICT"}}}, "spec.portLevelMtls: needs spec.selector"),
        (
            {"selector": {"matchLabels": {"app": "x"}}, "portLevelMtls": {"http": {"mode": "STRICT"}}},
            "is not a port number",
        ),
    ],
)
def test_bad_peer_authentications_are_reported_by_field(
    mesh: MeshBuilder, spec: dict[str, Any], words: str
) -> None:
    peer_authentication(mesh, "bad", spec)
    errors = list(mesh.config.errors.values())
    assert any(e.startswith("PeerAuthentication sample/bad: ") and words in e for e in errors), errors
    assert mesh.config.mtls_mode("sample", {"app": "x"}, 5000) is MtlsMode.PERMISSIVE


def test_envoy_accepts_the_mtls_config_with_the_agents_sds_cluster(mesh: MeshBuilder, tmp_path: Path) -> None:
    peer_authentication(
        mesh, "hello", {"selector": {"matchLabels": {"app": "helloworld"}}, "mtls": {"mode": "PERMISSIVE"}}
    )
    view, proxy = view_for(mesh, ip="10.44.1.1", pod="helloworld-v1")
    ports = inbound_ports(proxy, mesh.sources)
    modes = {p.target: MtlsMode.PERMISSIVE for p in ports}

    def as_dict(message: Any) -> dict[str, Any]:
        return json_format.MessageToDict(message, preserving_proto_field_name=True)

    clusters = []
    for resource in [*cds.view_clusters(view).values(), *cds.inbound_clusters(view, ports).values()]:
        cluster = cluster_pb2.Cluster.FromString(resource.body)
        if cluster.HasField("eds_cluster_config"):
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster.STATIC
        clusters.append(as_dict(cluster))
    clusters.append(sds_cluster(AgentOptions(config_path=str(tmp_path))))
    inbound = as_dict(listener_pb2.Listener.FromString(lds.virtual_inbound(view, ports, modes).body))
    bootstrap = {
        "node": {"id": "sidecar~10.44.1.1~helloworld-v1.sample~sample.svc.cluster.local", "cluster": "hello"},
        "static_resources": {"clusters": clusters, "listeners": [inbound]},
    }
    assert_envoy_accepts(bootstrap, tmp_path)
