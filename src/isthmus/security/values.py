"""The seed's security install values and the runtime settings they mean: the one place that says so (the
installer renders these; nothing else reads the values).

- `values.global.mtls.enabled=true` -> mesh-wide STRICT: PeerAuthentication `default` in the root namespace.
- `values.global.controlPlaneSecurityEnabled=true` -> mesh config `controlPlaneAuthPolicy: MUTUAL_TLS` and the
  discovery address on 15011 (sidecars' `--controlPlaneAuthPolicy`, `--discoveryAddress`), the pilot serving
  xDS over mTLS there.
- `values.security.selfSigned=false` -> the CA requires the plug-in `cacerts` (`isthmus ca --plugin-ca`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]
PLAINTEXT_PORT, MTLS_PORT = 15010, 15011
CACERTS_MOUNT = "/etc/cacerts"


class ValuesError(ValueError):
    """A value of the wrong type; the message names it as `--set` would."""


def _flag(values: Mapping[str, Any], path: str, default: bool) -> bool:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    if isinstance(node, bool):
        return node
    if isinstance(node, str) and node.lower() in ("true", "false"):
        return node.lower() == "true"
    raise ValuesError(f"values.{path}: must be true or false, not {node!r}")


@dataclass(frozen=True)
class SecuritySettings:
    mtls_strict: bool
    control_plane_mtls: bool
    plugin_ca: bool
    namespace: str = "istio-system"

    @property
    def discovery_address(self) -> str:
        port = MTLS_PORT if self.control_plane_mtls else PLAINTEXT_PORT
        return f"istio-pilot.{self.namespace}:{port}"

    @property
    def control_plane_auth_policy(self) -> str:
        return "MUTUAL_TLS" if self.control_plane_mtls else "NONE"

    def mesh_config(self) -> JsonObject:
        """The mesh config fields these values set (ConfigMap istio, key mesh)."""
        return {
            "controlPlaneAuthPolicy": self.control_plane_auth_policy,
            "defaultConfig": {
                "controlPlaneAuthPolicy": self.control_plane_auth_policy,
                "discoveryAddress": self.discovery_address,
            },
        }

    def mesh_policy(self) -> JsonObject | None:
        """The root-namespace PeerAuthentication of `mtls.enabled=true` (None: PERMISSIVE, no object)."""
        if not self.mtls_strict:
            return None
        return {
            "apiVersion": "security.istio.io/v1beta1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": self.namespace},
            "spec": {"mtls": {"mode": "STRICT"}},
        }

    def ca_args(self) -> list[str]:
        return ["--plugin-ca", "--cacerts", CACERTS_MOUNT] if self.plugin_ca else ["--self-signed-ca"]

    def discovery_args(self, ca_address: str) -> list[str]:
        if not self.control_plane_mtls:
            return []
        return ["--secure-grpc-address", f"$(POD_IP):{MTLS_PORT}", "--ca-address", ca_address]

    def sidecar_args(self) -> list[str]:
        return [
            "--discoveryAddress",
            self.discovery_address,
            "--controlPlaneAuthPolicy",
            self.control_plane_auth_policy,
        ]


def from_values(values: Mapping[str, Any], namespace: str = "istio-system") -> SecuritySettings:
    """Read the three security values (Istio 1.4's defaults when absent)."""
    return SecuritySettings(
        mtls_strict=_flag(values, "global.mtls.enabled", False),
        control_plane_mtls=_flag(values, "global.controlPlaneSecurityEnabled", False),
        plugin_ca=not _flag(values, "security.selfSigned", True),
        namespace=namespace,
    )
