"""The mesh config parser (ConfigMap `istio`, key `mesh`): Istio's defaults, errors that name the field, fields
Isthmus does not use kept as they are; and the watcher that follows the ConfigMap through the API."""

from __future__ import annotations

import logging

import pytest
from lightkube.resources.core_v1 import ConfigMap

from isthmus.config.mesh import MeshConfig, MeshConfigError, MeshWatcher, parse
from isthmus.model import FrozenMap
from tests.unit.mesh.meshkit import Kube, LocalApi, Spawn, eventually, namespace, settle


@pytest.mark.parametrize("text", ["", "   \n", "# nothing set\n", "{}", "null"])
def test_an_empty_mesh_config_has_istios_defaults(text: str) -> None:
    config = parse(text)
    assert config.trust_domain == "cluster.local"
    assert config.trust_domain_aliases == ()
    assert config.root_namespace == "istio-system"
    assert config.outbound_traffic_policy == "ALLOW_ANY"
    assert config.enable_auto_mtls is True
    assert config.discovery_address == "istio-pilot.istio-system:15010"
    assert config.control_plane_auth_policy == "NONE"
    assert config.connect_timeout == "10s"
    assert config.access_log_file == ""
    assert config.locality_lb == {}
    assert config == MeshConfig()


def test_the_root_namespace_defaults_to_the_control_planes() -> None:
    assert parse("", namespace="istio-control").root_namespace == "istio-control"
    assert parse("rootNamespace: mesh-root", namespace="istio-control").root_namespace == "mesh-root"


def test_the_fields_isthmus_uses_are_read() -> None:
    config = parse(
        """
trustDomain: example.org
trustDomainAliases: [old.example.org]
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
enableAutoMtls: false
connectTimeout: 1.5s
accessLogFile: /dev/stdout
controlPlaneAuthPolicy: MUTUAL_TLS
defaultConfig:
  discoveryAddress: istio-pilot.istio-system:15011
localityLbSetting:
  enabled: true
"""
    )
    assert config.trust_domain == "example.org"
    assert config.trust_domain_aliases == ("old.example.org",)
    assert config.outbound_traffic_policy == "REGISTRY_ONLY"
    assert config.enable_auto_mtls is False
    assert config.connect_timeout == "1.5s"
    assert config.access_log_file == "/dev/stdout"
    assert config.control_plane_auth_policy == "MUTUAL_TLS"
    assert config.discovery_address == "istio-pilot.istio-system:15011"
    assert config.locality_lb == {"enabled": True}


def test_the_proxy_defaults_control_plane_auth_policy_is_read() -> None:
    assert (
        parse("defaultConfig: {controlPlaneAuthPolicy: MUTUAL_TLS}").control_plane_auth_policy == "MUTUAL_TLS"
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("trustDomain: 5", "trustDomain"),
        ("trustDomain: 'not a domain'", "trustDomain"),
        ("trustDomain: ''", "trustDomain"),
        ("trustDomainAliases: old.example.org", "trustDomainAliases"),
        ("rootNamespace: [a]", "rootNamespace"),
        ("outboundTrafficPolicy: ALLOW_ANY", "outboundTrafficPolicy"),
        ("outboundTrafficPolicy: {mode: SOMETIMES}", "outboundTrafficPolicy.mode"),
        ("enableAutoMtls: 'yes'", "enableAutoMtls"),
        ("enableAutoMtls: 1", "enableAutoMtls"),
        ("connectTimeout: 10", "connectTimeout"),
        ("connectTimeout: ten seconds", "connectTimeout"),
        ("accessLogFile: 3", "accessLogFile"),
        ("defaultConfig: proxy", "defaultConfig"),
        ("controlPlaneAuthPolicy: SOMETIMES", "controlPlaneAuthPolicy"),
        ("defaultConfig: {controlPlaneAuthPolicy: SOMETIMES}", "defaultConfig.controlPlaneAuthPolicy"),
        ("defaultConfig: {discoveryAddress: istio-pilot}", "defaultConfig.discoveryAddress"),
        ("defaultConfig: {discoveryAddress: 'istio-pilot:port'}", "defaultConfig.discoveryAddress"),
        ("defaultConfig: {discoveryAddress: 15010}", "defaultConfig.discoveryAddress"),
        ("localityLbSetting: [enabled]", "localityLbSetting"),
    ],
)
def test_a_bad_field_is_named_in_the_error(text: str, field: str) -> None:
    with pytest.raises(MeshConfigError) as caught:
        parse(text)
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)


def test_a_bad_trust_domain_alias_is_named_in_the_error() -> None:
    """Istio validates every alias as a trust domain (validateTrustDomainConfig), as it does trustDomain."""
    with pytest.raises(MeshConfigError, match=r"trustDomainAliases"):
        parse("trustDomainAliases: [old.example.org, 'not a domain']")


def test_a_zero_connect_timeout_is_refused() -> None:
    """Istio's ValidateConnectTimeout wants at least 1ms, and Envoy refuses a Cluster whose connect_timeout is
    not greater than zero: every pushed Cluster would be NACKed."""
    with pytest.raises(MeshConfigError, match=r"^connectTimeout"):
        parse("connectTimeout: 0s")


def test_the_first_of_several_bad_fields_is_named() -> None:
    with pytest.raises(MeshConfigError, match=r"^trustDomain:"):
        parse("trustDomain: 5\nenableAutoMtls: maybe\n")


@pytest.mark.parametrize(
    ("text", "message"), [("- a\n- b\n", "mapping"), ("{trustDomain: [", "not valid YAML")]
)
def test_a_document_that_is_not_a_mapping_is_refused(text: str, message: str) -> None:
    with pytest.raises(MeshConfigError, match=message):
        parse(text)


def test_unknown_fields_are_kept_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    text = """
trustDomain: example.org
someFutureField: {nested: [1, 2]}
enableTracing: true
defaultConfig:
  proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true"}
"""
    with caplog.at_level(logging.INFO, logger="isthmus.config.mesh"):
        config = parse(text)
    assert config.raw["someFutureField"] == {"nested": [1, 2]}
    assert config.raw["enableTracing"] is True
    assert config.raw["defaultConfig"] == {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}}
    assert config.raw["trustDomain"] == "example.org"
    assert config.trust_domain == "example.org"
    assert "someFutureField" in caplog.text
    assert "enableTracing" not in caplog.text  # an Istio field Isthmus knows, though it does not use it


def test_equal_documents_give_equal_configs() -> None:
    assert parse("trustDomain: a.org\nfoo: 1\n") == parse("foo: 1\ntrustDomain: a.org\n")
    assert parse("trustDomain: a.org") != parse("trustDomain: b.org")
    assert parse("foo: 1") != parse("foo: 2")  # kept fields count
    assert isinstance(parse("").raw, FrozenMap)


# -- the watcher ----------------------------------------------------------------------------------------------


def mesh_configmap(mesh: str, ns: str = "istio-system") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": ns, "name": "istio"},
        "data": {"mesh": mesh},
    }


async def test_the_watcher_follows_the_configmap_and_keeps_the_last_good_config(
    apiserver: LocalApi, spawn: Spawn
) -> None:
    kube = Kube(apiserver.client())
    await kube.create(namespace("istio-system"), mesh_configmap("trustDomain: first.example"))
    seen: list[MeshConfig] = []
    watcher = MeshWatcher(apiserver.client(), "istio-system", seen.append)
    spawn(watcher.run())
    await eventually(lambda: watcher.config.trust_domain == "first.example", what="the first config")

    await kube.update(mesh_configmap("trustDomain: 'bad domain'\n"))
    await eventually(lambda: watcher.error, what="the error of a bad config")
    assert "ConfigMap istio-system/istio" in watcher.error
    assert "trustDomain" in watcher.error
    assert watcher.config.trust_domain == "first.example"

    await kube.update(mesh_configmap("trustDomain: second.example\n"))
    await eventually(lambda: watcher.config.trust_domain == "second.example", what="the fixed config")
    assert watcher.error == ""
    assert [c.trust_domain for c in seen] == ["first.example", "second.example"]

    other = mesh_configmap("trustDomain: third.example")
    other["metadata"] = {"namespace": "istio-system", "name": "istio-sidecar-injector"}
    await kube.create(other)
    await settle()
    assert watcher.config.trust_domain == "second.example"

    await kube.delete(ConfigMap, "istio", "istio-system")
    await eventually(
        lambda: watcher.config.trust_domain == "cluster.local", what="the defaults after deletion"
    )
