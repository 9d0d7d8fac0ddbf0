"""The remote-cluster controller: Secrets labelled `istio/multiCluster=true` in the control plane's namespace
register remote clusters. Each data key is a cluster id, its value a kubeconfig.

- A new key connects its cluster and syncs it; a changed kubeconfig (another sha256) reconnects the same
  registry, so endpoints the cluster still has are never dropped; the same content re-applied changes nothing.
- A deleted Secret or key removes its cluster and all its endpoints.
- Bad input never stops the other clusters; each is an error naming the Secret and key (see `status()`): a key
  that is not a DNS-1123 subdomain, a kubeconfig that does not parse, an id claimed by two Secrets (reported on
  both; the cluster that already runs keeps running), the primary's own id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient

from isthmus.kube import client as kube_client
from isthmus.kube.informer import Informer, Key
from isthmus.kube.resources import Secrets
from isthmus.model import ClusterId, FrozenMap
from isthmus.registry.aggregate import Aggregate
from isthmus.registry.cluster import ClusterRegistry

log = logging.getLogger(__name__)

MULTICLUSTER_LABEL = "istio/multiCluster"
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
JsonObject = dict[str, Any]
ClientFactory = Callable[[bytes], AsyncClient]


@dataclass(frozen=True, slots=True)
class ClusterSecret:
    """A multicluster Secret: kubeconfigs by cluster id, with their sha256."""

    namespace: str
    name: str
    created: str
    kubeconfigs: FrozenMap[str, bytes]

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def project_secret(obj: JsonObject) -> ClusterSecret | None:
    meta = obj.get("metadata") or {}
    data = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(value or "")
        except (ValueError, TypeError):
            data[str(key)] = b""
    return ClusterSecret(
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(meta.get("creationTimestamp", "")),
        FrozenMap(data),
    )


@dataclass
class RemoteCluster:
    """A remote cluster the controller runs, or a key it refused."""

    cluster: str
    secret: str
    key: str
    sha: str = ""
    registry: ClusterRegistry | None = None
    error: str = ""
    conflict: str = ""  # another Secret claims the same id (this one keeps it)

    def describe(self) -> JsonObject:
        registry = self.registry
        error = self.error or self.conflict or (registry.error if registry else "")
        return {
            "id": self.cluster,
            "secret": self.secret,
            "key": self.key,
            "state": registry.state if registry else "refused",
            "synced": bool(registry and registry.ever_synced),
            "stale": bool(registry and registry.state == "stale"),
            "error": error,
        }


class RemoteSecrets:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        aggregate: Aggregate,
        trust_domain: Callable[[], str],
        client_factory: ClientFactory = kube_client.from_kubeconfig_data,
    ) -> None:
        self.aggregate = aggregate
        self.trust_domain = trust_domain
        self.client_factory = client_factory
        self.running: dict[str, RemoteCluster] = {}  # cluster id -> what runs it
        self.refused: list[RemoteCluster] = []
        self._dirty = asyncio.Event()
        self.informer: Informer[ClusterSecret] = Informer(
            client,
            Secrets,
            project_secret,
            self._secret_changed,
            namespace=namespace,
            labels={MULTICLUSTER_LABEL: "true"},
            name=f"{namespace}: multicluster secrets",
        )

    def _secret_changed(self, key: Key, old: ClusterSecret | None, new: ClusterSecret | None) -> None:
        self._dirty.set()

    async def run(self) -> None:
        task = asyncio.get_running_loop().create_task(self.informer.run())
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                await self.reconcile()
        finally:
            task.cancel()

    def _refuse(self, cluster: str, secret: str, key: str, error: str) -> None:
        log.error("Secret %s, key %s: %s", secret, key, error)
        self.refused.append(RemoteCluster(cluster, secret, key, error=error))

    async def reconcile(self) -> None:
        """Bring the running clusters in line with the Secrets (see the module docstring)."""
        self.refused = []
        claims: dict[str, list[tuple[ClusterSecret, str, bytes]]] = {}
        secrets = sorted(self.informer.items.values(), key=lambda s: (s.created, s.ref))
        primary = str(self.aggregate.primary)
        for secret in secrets:
            for key, data in secret.kubeconfigs.items():
                if not DNS1123_SUBDOMAIN.match(key) or len(key) > 253:
                    self._refuse(
                        key,
                        secret.ref,
                        key,
                        f'the data key "{key}" is not a valid cluster id: a cluster '
                        "id must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.'); rename "
                        "the key (the file name given to --from-file)",
                    )
                    continue
                if key == primary:
                    self._refuse(
                        key,
                        secret.ref,
                        key,
                        f'"{key}" is the primary cluster\'s own id: the control '
                        "plane already knows its own cluster; register remote clusters under other ids",
                    )
                    continue
                claims.setdefault(key, []).append((secret, key, data))
        wanted: dict[str, tuple[ClusterSecret, str, bytes]] = {}
        conflicts: dict[str, str] = {}
        for cluster, claimants in claims.items():
            chosen = claimants[0]
            if len(claimants) > 1:
                refs = [c[0].ref for c in claimants]
                current = self.running.get(cluster)
                if current is not None:
                    chosen = next((c for c in claimants if c[0].ref == current.secret), chosen)
                message = (
                    f'the cluster id "{cluster}" is claimed by several Secrets ({", ".join(refs)}): each '
                    f"cluster id must appear once; {chosen[0].ref} keeps it, remove it from the others"
                )
                for secret, key, _ in claimants:
                    if secret.ref != chosen[0].ref:
                        self._refuse(cluster, secret.ref, key, message)
                conflicts[cluster] = message
            wanted[cluster] = chosen
        for cluster in [c for c in self.running if c not in wanted]:
            await self._remove(cluster)
        for cluster, (secret, key, data) in wanted.items():
            await self._ensure(cluster, secret, key, data)
        for cluster, remote in self.running.items():
            remote.conflict = conflicts.get(cluster, "")

    async def _ensure(self, cluster: str, secret: ClusterSecret, key: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        current = self.running.get(cluster)
        if current is not None and current.sha == sha and current.secret == secret.ref:
            return  # the same kubeconfig: nothing to do, nothing dropped
        try:
            client = self.client_factory(data)
        except kube_client.KubeconfigError as exc:
            message = f"the kubeconfig in Secret {secret.ref}, key {key}, {exc}"
            if current is not None:
                current.error = message
                current.sha = sha
                log.error("%s: the cluster keeps running with its previous kubeconfig", message)
            else:
                self._refuse(cluster, secret.ref, key, message)
            return
        description = f"cluster {cluster} (Secret {secret.ref}, key {key})"
        if current is not None and current.registry is not None:
            log.info("%s: kubeconfig changed, reconnecting", description)
            current.sha, current.secret, current.key, current.error = sha, secret.ref, key, ""
            current.registry.description = description
            await current.registry.reconnect(client)
            return
        registry = ClusterRegistry(
            ClusterId(cluster), client, self.aggregate, self.trust_domain, description=description
        )
        self.running[cluster] = RemoteCluster(cluster, secret.ref, key, sha, registry)
        log.info("%s: added", description)
        self.aggregate.add_cluster(registry)

    async def _remove(self, cluster: str) -> None:
        remote = self.running.pop(cluster)
        log.info("cluster %s (Secret %s, key %s): removed", cluster, remote.secret, remote.key)
        await self.aggregate.remove_cluster(ClusterId(cluster))

    def status(self) -> list[JsonObject]:
        out = [remote.describe() for remote in [*self.running.values(), *self.refused]]
        return sorted(out, key=lambda e: (e["id"], e["secret"]))

    async def wait_synced(self, timeout: float) -> None:
        """Wait until every running remote cluster synced, at most `timeout` seconds."""
        registries = [r.registry for r in self.running.values() if r.registry is not None]
        if not registries:
            return
        waits = [asyncio.ensure_future(r.synced.wait()) for r in registries]
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
