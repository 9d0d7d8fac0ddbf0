"""The traffic configuration of the mesh: VirtualServices, DestinationRules and Sidecars in the primary cluster,
followed by informers, validated, and looked up with Istio's precedence.

Contract: runs on the control plane's event loop. An invalid object is reported (log, `errors`, the debug
endpoint) naming the object and field, and is never pushed: a new one is ignored, a changed one keeps its last
valid version. Listeners hear a `ConfigChanged` naming the object after the store is updated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from lightkube import AsyncClient

from isthmus.config import crds
from isthmus.config.networking import (
    ConfigError,
    DestinationRule,
    Sidecar,
    VirtualService,
    destination_rule,
    host_matches,
    sidecar,
    virtual_service,
    visible,
)
from isthmus.config.security import MtlsMode, PeerAuthentication, effective_mode, peer_authentication
from isthmus.kube.informer import Informer, Key
from isthmus.kube.resources import custom
from isthmus.model import ConfigChanged

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
C = TypeVar("C", VirtualService, DestinationRule, Sidecar, PeerAuthentication)


class _Kind(Generic[C]):
    """One config kind: its informer, its valid objects, its errors."""

    def __init__(
        self,
        store: ConfigStore,
        client: AsyncClient | None,
        kind: crds.Kind,
        parse: Callable[[str, str, JsonObject, str], C],
    ) -> None:
        self.store = store
        self.kind = kind
        self.parse: Callable[[str, str, JsonObject, str], C] = parse
        self.objects: dict[Key, C] = {}
        version = kind.storage
        resource = custom(kind.group, version, kind.kind, kind.plural)
        self.informer: Informer[C] | None = (
            Informer(client, resource, self._project, self._changed, name=f"{kind.kind} ({kind.name})")
            if client is not None
            else None
        )

    def apply(self, obj: JsonObject) -> None:
        """Take an object as the informer would (validated; an invalid one reported and not used)."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        new = self._project(obj)
        old = self.objects.get(key)
        if new != old:
            self._changed(key, old, new)

    def _project(self, obj: JsonObject) -> C | None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        where = f"{self.kind.kind} {namespace}/{name}"
        spec = obj.get("spec")
        try:
            if not isinstance(spec, dict):
                raise ConfigError("spec: required, a mapping")
            parsed = self.parse(namespace, name, spec, str(meta.get("creationTimestamp") or ""))
        except ConfigError as exc:
            last = self.objects.get((namespace, name))
            keeping = "keeping its last valid version" if last is not None else "ignored until it is fixed"
            message = f"{where}: {exc} ({keeping})"
            if self.store.errors.get((self.kind.kind, namespace, name)) != message:
                log.error("%s", message)
            self.store.errors[(self.kind.kind, namespace, name)] = message
            return last
        self.store.errors.pop((self.kind.kind, namespace, name), None)
        return parsed

    def _changed(self, key: Key, old: C | None, new: C | None) -> None:
        if new is None:
            self.objects.pop(key, None)
            self.store.errors.pop((self.kind.kind, *key), None)
        else:
            self.objects[key] = new
        self.store.changed(ConfigChanged(self.kind.kind, *key))


class ConfigStore:
    """`client` None: no informers; objects come through `apply` (tests, config from files)."""

    def __init__(self, client: AsyncClient | None, root_namespace: Callable[[], str]) -> None:
        self.root_namespace = root_namespace
        self.errors: dict[tuple[str, str, str], str] = {}
        self.listeners: list[Callable[[ConfigChanged], None]] = []
        self.virtual_services: _Kind[VirtualService] = _Kind(
            self, client, crds.kind("VirtualService"), virtual_service
        )
        self.destination_rules: _Kind[DestinationRule] = _Kind(
            self, client, crds.kind("DestinationRule"), destination_rule
        )
        self.sidecars: _Kind[Sidecar] = _Kind(self, client, crds.kind("Sidecar"), sidecar)
        self.peer_authentications: _Kind[PeerAuthentication] = _Kind(
            self, client, crds.kind("PeerAuthentication"), peer_authentication
        )
        self._dr_by_host: dict[str, list[DestinationRule]] | None = None

    @property
    def informers(self) -> list[Informer[Any]]:
        kinds: list[_Kind[Any]] = [
            self.virtual_services,
            self.destination_rules,
            self.sidecars,
            self.peer_authentications,
        ]
        return [k.informer for k in kinds if k.informer is not None]

    def apply(self, obj: JsonObject) -> None:
        """Add or change a config object (by its kind), as if it came from the cluster."""
        kinds: dict[str, _Kind[Any]] = {
            "VirtualService": self.virtual_services,
            "DestinationRule": self.destination_rules,
            "Sidecar": self.sidecars,
            "PeerAuthentication": self.peer_authentications,
        }
        kind = kinds.get(str(obj.get("kind")))
        if kind is None:
            raise ValueError(f"{obj.get('kind')!r} is not a config kind the store keeps ({', '.join(kinds)})")
        kind.apply(obj)

    def changed(self, event: ConfigChanged) -> None:
        if event.kind == "DestinationRule":
            self._dr_by_host = None
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a config listener failed on %s", event)

    # -- lookups, with Istio's precedence -------------------------------------------------------------------

    def destination_rule(
        self, host: str, proxy_namespace: str, service_namespace: str
    ) -> DestinationRule | None:
        """The rule for `host` as a proxy in `proxy_namespace` sees it: its own namespace's first, then the
        service's namespace's (if exported to it), then the root namespace's; exact hosts before wildcards,
        older rules first."""
        if self._dr_by_host is None:
            index: dict[str, list[DestinationRule]] = {}
            for rule in sorted(
                self.destination_rules.objects.values(), key=lambda r: (r.created, r.namespace, r.name)
            ):
                index.setdefault(rule.host, []).append(rule)
            self._dr_by_host = index
        candidates = self._dr_by_host.get(host, [])
        if not candidates:
            wildcards = [
                r
                for h, rules in self._dr_by_host.items()
                if "*" in h and host_matches(h, host)
                for r in rules
            ]
            candidates = sorted(wildcards, key=lambda r: -len(r.host))
        for namespace in (proxy_namespace, service_namespace, self.root_namespace()):
            for rule in candidates:
                if rule.namespace == namespace and (
                    namespace == proxy_namespace or visible(rule.export_to, rule.namespace, proxy_namespace)
                ):
                    return rule
        return None

    def virtual_services_for(self, proxy_namespace: str) -> list[VirtualService]:
        """The VirtualServices that apply to sidecars in `proxy_namespace`, oldest first."""
        return sorted(
            (
                vs
                for vs in self.virtual_services.objects.values()
                if vs.applies_to_sidecars and visible(vs.export_to, vs.namespace, proxy_namespace)
            ),
            key=lambda vs: (vs.created, vs.namespace, vs.name),
        )

    def mtls_mode(self, namespace: str, labels: Mapping[str, str], port: int) -> MtlsMode:
        """What a workload's sidecar accepts on a container port (PeerAuthentication, Istio's precedence)."""
        return effective_mode(
            self.peer_authentications.objects.values(), self.root_namespace(), namespace, labels, port
        )

    def sidecar_for(self, namespace: str, labels: Mapping[str, str]) -> Sidecar | None:
        """The Sidecar that applies to a workload: one with a matching selector, else the namespace's
        selector-less one, else the root namespace's selector-less one."""
        in_namespace = sorted(
            (s for s in self.sidecars.objects.values() if s.namespace == namespace),
            key=lambda s: (s.created, s.name),
        )
        for candidate in in_namespace:
            if candidate.workload_selector is not None and candidate.selects(labels):
                return candidate
        for candidate in in_namespace:
            if candidate.workload_selector is None:
                return candidate
        root = self.root_namespace()
        return next(
            (
                s
                for s in self.sidecars.objects.values()
                if s.namespace == root and s.workload_selector is None
            ),
            None,
        )
