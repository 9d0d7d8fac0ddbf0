"""The sidecar agent's Envoy bootstrap from the injected container's environment and arguments, checked by
Envoy itself; and the errors when the environment is incomplete."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.agent.bootstrap import AgentOptions, BootstrapError, bootstrap, identity
from tests.unit.xds.xdskit import assert_envoy_accepts

ENV = {
    "POD_NAME": "helloworld-v1-abc",
    "POD_NAMESPACE": "sample",
    "INSTANCE_IP": "10.44.1.7",
    "SERVICE_ACCOUNT": "default",
    "ISTIO_META_CLUSTER_ID": "Kubernetes",
    "ISTIO_META_INTERCEPTION_MODE": "REDIRECT",
    "ISTIO_METAJSON_LABELS": '{"app": "helloworld", "version": "v1"}',
}


def test_the_node_is_istios() -> None:
    config = bootstrap(AgentOptions(service_cluster="helloworld.sample"), identity(ENV), "0.1.0")
    assert config["node"]["id"] == "sidecar~10.44.1.7~helloworld-v1-abc.sample~sample.svc.cluster.local"
    assert config["node"]["cluster"] == "helloworld.sample"
    metadata = config["node"]["metadata"]
    assert metadata["CLUSTER_ID"] == "Kubernetes" and metadata["LABELS"] == {
        "app": "helloworld",
        "version": "v1",
    }
    assert metadata["NAMESPACE"] == "sample" and metadata["ISTIO_VERSION"] == "0.1.0"
    xds = config["static_resources"]["clusters"][0]
    assert (
        xds["name"] == "xds-grpc" and xds["type"] == "STRICT_DNS"
    )  # a changed control-plane address is followed
    address = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]
    assert (address["address"], address["port_value"]) == ("istio-pilot.istio-system", 15010)
    assert config["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_an_ip_discovery_address_is_static() -> None:
    config = bootstrap(AgentOptions(discovery_address="10.44.0.9:15010", delta=False), identity(ENV), "x")
    assert config["static_resources"]["clusters"][0]["type"] == "STATIC"
    assert config["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"


def test_envoy_accepts_the_bootstrap(tmp_path: Path) -> None:
    assert_envoy_accepts(bootstrap(AgentOptions(), identity(ENV), "0.1.0"), tmp_path)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({k: v for k, v in ENV.items() if k != "INSTANCE_IP"}, "INSTANCE_IP not set"),
        ({**ENV, "INSTANCE_IP": "pod-ip"}, "INSTANCE_IP='pod-ip' is not an IP address"),
        ({**ENV, "ISTIO_METAJSON_LABELS": "{app"}, "ISTIO_METAJSON_LABELS is not JSON"),
    ],
)
def test_an_incomplete_environment_is_explained(env: dict[str, str], says: str) -> None:
    with pytest.raises(BootstrapError) as caught:
        identity(env)
    assert says in str(caught.value)


def test_a_bad_discovery_address_is_explained() -> None:
    with pytest.raises(BootstrapError, match="--discoveryAddress 'istio-pilot' is not HOST:PORT"):
        bootstrap(AgentOptions(discovery_address="istio-pilot"), identity(ENV), "x")


SECURE = AgentOptions(
    discovery_address="istio-pilot.istio-system:15011",
    control_plane_auth_policy="MUTUAL_TLS",
    ca_address="istio-citadel.istio-system.svc:8060",
)


def test_mutual_tls_to_the_control_plane_checks_the_pilot_identity(tmp_path: Path) -> None:
    config = bootstrap(SECURE, identity(ENV), "0.1.0")
    assert config["node"]["metadata"]["SDS"] == "true"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert clusters["sds-grpc"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"
    ] == {"pipe": {"path": "/etc/istio/proxy/SDS"}}
    tls = clusters["xds-grpc"]["transport_socket"]["typed_config"]["common_tls_context"]
    san = tls["combined_validation_context"]["default_validation_context"]["match_typed_subject_alt_names"][0]
    assert san["matcher"]["exact"] == "spiffe://cluster.local/ns/istio-system/sa/istio-pilot-service-account"
    assert tls["tls_certificate_sds_secret_configs"][0]["name"] == "default"
    assert_envoy_accepts(config, tmp_path)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            AgentOptions(control_plane_auth_policy="MUTUAL_TLS"),
            "needs the workload's certificate: pass --caAddress",
        ),
        (AgentOptions(control_plane_auth_policy="TLS"), "use NONE (port 15010) or MUTUAL_TLS (port 15011)"),
    ],
)
def test_bad_control_plane_auth_settings_are_explained(options: AgentOptions, says: str) -> None:
    with pytest.raises(BootstrapError) as caught:
        bootstrap(options, identity(ENV), "x")
    assert says in str(caught.value)
