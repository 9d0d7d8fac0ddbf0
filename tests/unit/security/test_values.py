"""The seed's security values map to runtime settings the components accept: the mesh config parses to the
same policy and address, the PeerAuthentication makes every port STRICT, the CA arguments are the CLI's."""

from __future__ import annotations

import pytest
import yaml

from isthmus.config.mesh import parse
from isthmus.config.security import MtlsMode, effective_mode, peer_authentication
from isthmus.security.values import ValuesError, from_values

SEED_SECURE = {
    "global": {"mtls": {"enabled": True}, "controlPlaneSecurityEnabled": True},
    "security": {"selfSigned": False},
}


def test_the_seeds_secure_values() -> None:
    settings = from_values(SEED_SECURE)
    mesh = parse(yaml.safe_dump(settings.mesh_config()))
    assert mesh.control_plane_auth_policy == "MUTUAL_TLS"
    assert mesh.discovery_address == "istio-pilot.istio-system:15011"
    policy = settings.mesh_policy()
    assert policy is not None
    parsed = peer_authentication("istio-system", "default", policy["spec"])
    assert effective_mode([parsed], "istio-system", "sample", {"app": "x"}, 5000) is MtlsMode.STRICT
    assert settings.ca_args() == ["--plugin-ca", "--cacerts", "/etc/cacerts"]
    assert settings.sidecar_args() == [
        "--discoveryAddress",
        "istio-pilot.istio-system:15011",
        "--controlPlaneAuthPolicy",
        "MUTUAL_TLS",
    ]
    assert "--secure-grpc-address" in settings.discovery_args("istio-citadel.istio-system.svc:8060")


def test_the_defaults_are_istio_1_4s() -> None:
    settings = from_values({})
    assert settings.mesh_policy() is None  # PERMISSIVE: no object
    assert parse(yaml.safe_dump(settings.mesh_config())).discovery_address == "istio-pilot.istio-system:15010"
    assert settings.ca_args() == ["--self-signed-ca"]
    assert settings.discovery_args("x:8060") == []


def test_set_strings_are_accepted_and_bad_values_named() -> None:
    assert from_values({"global": {"mtls": {"enabled": "true"}}}).mtls_strict
    with pytest.raises(ValuesError, match=r"values.security.selfSigned: must be true or false, not 'no'"):
        from_values({"security": {"selfSigned": "no"}})
