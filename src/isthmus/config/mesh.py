"""Mesh configuration: the `mesh` key of ConfigMap `istio` in the control plane's namespace, as Istio's
MeshConfig, with Istio's defaults where it is absent, followed live.

A bad value is reported with its field (and the last good configuration is kept); fields Isthmus does not use
are kept as they are and listed once in the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from lightkube import AsyncClient

from isthmus.kube.informer import Informer, Key
from isthmus.kube.resources import ConfigMaps
from isthmus.model import FrozenMap

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]

CONFIGMAP = "istio"
KEY = "mesh"
_DOMAIN = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms))+$")
KNOWN = {
    "trustDomain",
    "trustDomainAliases",
    "rootNamespace",
    "outboundTrafficPolicy",
    "enableAutoMtls",
    "defaultConfig",
    "localityLbSetting",
    "connectTimeout",
    "accessLogFile",
    "accessLogEncoding",
    "ingressClass",
    "ingressService",
    "ingressControllerMode",
    "enableTracing",
    "mixerCheckServer",
    "mixerReportServer",
    "policyCheckFailOpen",
    "disablePolicyChecks",
    "sdsUdsPath",
    "protocolDetectionTimeout",
    "enablePrometheusMerge",
    "defaultServiceExportTo",
    "defaultVirtualServiceExportTo",
    "defaultDestinationRuleExportTo",
    "controlPlaneAuthPolicy",
    "authPolicy",
    "reportBatchMaxEntries",
    "reportBatchMaxTime",
    "proxyHttpPort",
    "proxyListenPort",
    "dnsRefreshRate",
}


class MeshConfigError(ValueError):
    """A mesh config that cannot be used; the message names the field."""


@dataclass(frozen=True)
class MeshConfig:
    trust_domain: str = "cluster.local"
    trust_domain_aliases: tuple[str, ...] = ()
    root_namespace: str = "istio-system"
    outbound_traffic_policy: str = "ALLOW_ANY"  # or REGISTRY_ONLY
    enable_auto_mtls: bool = True
    discovery_address: str = "istio-pilot.istio-system:15010"
    control_plane_auth_policy: str = "NONE"  # or MUTUAL_TLS
    connect_timeout: str = "10s"
    access_log_file: str = ""
    locality_lb: FrozenMap[str, Any] = field(default_factory=FrozenMap)
    raw: FrozenMap[str, Any] = field(default_factory=FrozenMap)


def _expect(value: Any, kinds: type | tuple[type, ...], path: str, what: str) -> Any:
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds in (int, (int, float))):
        raise MeshConfigError(f"{path}: must be {what}, not {value!r}")
    return value


def parse(text: str, namespace: str = "istio-system") -> MeshConfig:
    """Parse a mesh config document (defaults as Istio's; the root namespace defaults to the control plane's
    `namespace`); MeshConfigError names the first bad field."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise MeshConfigError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MeshConfigError("must be a YAML mapping of MeshConfig fields")
    out: dict[str, Any] = {"root_namespace": namespace}
    if "trustDomain" in data:
        trust_domain = _expect(data["trustDomain"], str, "trustDomain", "a domain name")
        if not _DOMAIN.match(trust_domain):
            raise MeshConfigError(f"trustDomain: {trust_domain!r} is not a valid domain name")
        out["trust_domain"] = trust_domain
    if "trustDomainAliases" in data:
        aliases = _expect(data["trustDomainAliases"], list, "trustDomainAliases", "a list of domain names")
        for i, alias in enumerate(aliases):
            if not isinstance(alias, str) or not _DOMAIN.match(alias):
                raise MeshConfigError(f"trustDomainAliases[{i}]: {alias!r} is not a valid domain name")
        out["trust_domain_aliases"] = tuple(aliases)
    if "rootNamespace" in data:
        out["root_namespace"] = _expect(data["rootNamespace"], str, "rootNamespace", "a namespace name")
    if "outboundTrafficPolicy" in data:
        policy = _expect(data["outboundTrafficPolicy"] or {}, dict, "outboundTrafficPolicy", "a mapping")
        mode = policy.get("mode", "ALLOW_ANY")
        if mode not in ("ALLOW_ANY", "REGISTRY_ONLY"):
            raise MeshConfigError(
                f"outboundTrafficPolicy.mode: must be ALLOW_ANY or REGISTRY_ONLY, not {mode!r}"
            )
        out["outbound_traffic_policy"] = mode
    if "enableAutoMtls" in data:
        out["enable_auto_mtls"] = _expect(data["enableAutoMtls"], bool, "enableAutoMtls", "true or false")
    if "connectTimeout" in data:
        timeout = str(_expect(data["connectTimeout"], str, "connectTimeout", "a duration such as 10s"))
        if not _DURATION.match(timeout):
            raise MeshConfigError(f"connectTimeout: {timeout!r} is not a duration such as 10s or 1m30s")
        if not re.search(r"[1-9]", timeout):
            raise MeshConfigError(
                f"connectTimeout: {timeout!r} must be at least 1ms (Envoy refuses a zero timeout)"
            )
        out["connect_timeout"] = timeout
    if "accessLogFile" in data:
        out["access_log_file"] = _expect(data["accessLogFile"], str, "accessLogFile", "a file path")
    policy_key = "controlPlaneAuthPolicy"
    defaults = data.get("defaultConfig") or {}
    _expect(defaults, dict, "defaultConfig", "a mapping (ProxyConfig)")
    for source, path in ((data, policy_key), (defaults, f"defaultConfig.{policy_key}")):
        if policy_key in source:
            value = source[policy_key]
            if value not in ("NONE", "MUTUAL_TLS"):
                raise MeshConfigError(f"{path}: must be NONE or MUTUAL_TLS, not {value!r}")
            out["control_plane_auth_policy"] = value
    if "discoveryAddress" in defaults:
        address = str(
            _expect(defaults["discoveryAddress"], str, "defaultConfig.discoveryAddress", "host:port")
        )
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise MeshConfigError(f"defaultConfig.discoveryAddress: {address!r} is not host:port")
        out["discovery_address"] = address
    if "localityLbSetting" in data:
        out["locality_lb"] = FrozenMap(
            _expect(data["localityLbSetting"] or {}, dict, "localityLbSetting", "a mapping")
        )
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        log.info("mesh config fields kept but not used by Isthmus: %s", ", ".join(unknown))
    return MeshConfig(**out, raw=FrozenMap(data))


class MeshWatcher:
    """Follows ConfigMap `istio` (key `mesh`) in the control plane's namespace."""

    def __init__(self, client: AsyncClient, namespace: str, on_change: Callable[[MeshConfig], None]) -> None:
        self.namespace = namespace
        self.config = MeshConfig(root_namespace=namespace)
        self.error = ""
        self.on_change = on_change
        self.informer: Informer[str] = Informer(
            client,
            ConfigMaps,
            self._project,
            self._changed,
            namespace=namespace,
            fields={"metadata.name": CONFIGMAP},
            name=f"{namespace}/{CONFIGMAP}: mesh config",
        )

    @staticmethod
    def _project(obj: JsonObject) -> str | None:
        return str((obj.get("data") or {}).get(KEY, ""))

    def _changed(self, key: Key, old: str | None, new: str | None) -> None:
        where = f"mesh config (ConfigMap {self.namespace}/{CONFIGMAP}, key {KEY})"
        try:
            config = parse(new or "", self.namespace)
        except MeshConfigError as exc:
            self.error = f"{where}: {exc}; keeping the last good configuration"
            log.error("%s", self.error)
            return
        self.error = ""
        if config != self.config:
            self.config = config
            self.on_change(config)

    async def run(self) -> None:
        await self.informer.run()
