"""security.istio.io config, validated: PeerAuthentication (what a workload's sidecar accepts inbound).

Istio's semantics: a policy with a selector applies to the workloads it selects (the oldest one wins), else
the namespace's selector-less policy, else the root namespace's (mesh-wide); UNSET inherits from the level
above; port-level modes (only with a selector) override for that container port. No policy: PERMISSIVE.
`values.global.mtls.enabled=true` is a root-namespace `default` policy with STRICT, written by the install.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from isthmus.config.networking import ConfigError, JsonObject, _labels, _mapping, _port_number
from isthmus.model import FrozenMap


class MtlsMode(enum.Enum):
    UNSET = "UNSET"
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


def _mode(data: Mapping[str, object], path: str) -> MtlsMode:
    raw = data.get("mode", "UNSET")
    try:
        return MtlsMode(raw)
    except ValueError:
        raise ConfigError(
            f"{path}.mode: must be one of {', '.join(m.value for m in MtlsMode)}, not {raw!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    namespace: str
    name: str
    selector: FrozenMap[str, str] | None
    mode: MtlsMode
    port_modes: FrozenMap[int, MtlsMode]
    created: str = ""

    def selects(self, labels: Mapping[str, str]) -> bool:
        return self.selector is not None and all(labels.get(k) == v for k, v in self.selector.items())


def peer_authentication(namespace: str, name: str, spec: JsonObject, created: str = "") -> PeerAuthentication:
    selector_data = spec.get("selector")
    selector = None
    if selector_data is not None:
        if not isinstance(selector_data, dict):
            raise ConfigError(f"spec.selector: must be a mapping with matchLabels, not {selector_data!r}")
        selector = _labels(selector_data, "matchLabels", "spec.selector")
        if not selector:
            selector = None
    mode = _mode(_mapping(spec, "mtls", "spec"), "spec.mtls")
    ports: dict[int, MtlsMode] = {}
    raw_ports = _mapping(spec, "portLevelMtls", "spec")
    if raw_ports and selector is None:
        raise ConfigError(
            "spec.portLevelMtls: needs spec.selector (port-level modes apply to selected workloads)"
        )
    for key, value in raw_ports.items():
        where = f"spec.portLevelMtls.{key}"
        try:
            number = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {key!r} is not a port number") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: must be a mapping with mode, not {value!r}")
        ports[_port_number(number, where)] = _mode(value, where)
    return PeerAuthentication(namespace, name, selector, mode, FrozenMap(ports), created)


def effective_mode(
    policies: Iterable[PeerAuthentication],
    root_namespace: str,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
) -> MtlsMode:
    """The mode a workload's sidecar applies to inbound traffic on a container port."""
    ordered = sorted(policies, key=lambda p: (p.created, p.name))
    workload = next((p for p in ordered if p.namespace == namespace and p.selects(labels)), None)
    in_namespace = next((p for p in ordered if p.namespace == namespace and p.selector is None), None)
    mesh = next((p for p in ordered if p.namespace == root_namespace and p.selector is None), None)
    if workload is not None:
        port_mode = workload.port_modes.get(port, MtlsMode.UNSET)
        if port_mode is not MtlsMode.UNSET:
            return port_mode
    for level in (workload, in_namespace, mesh):
        if level is not None and level.mode is not MtlsMode.UNSET:
            return level.mode
    return MtlsMode.PERMISSIVE
