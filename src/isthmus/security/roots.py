"""Where the CA's signer comes from, and how its root reaches every namespace.

- Plug-in CA (`values.security.selfSigned=false`): the files of Secret `cacerts` mounted at `/etc/cacerts`,
  checked at start and re-read when they change (a bad new version is reported and the old one kept).
- Self-signed: a root kept in Secret `istio-ca-secret` in the CA's namespace (so restarts and replicas share
  it), replaced when little of its life remains; the old root stays in the trust bundle until it expires.
- `RootPublisher` keeps ConfigMap `istio-ca-root-cert` (key `root-cert.pem`: every trusted root) in every
  namespace, and puts it back when it is changed or deleted.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret

from isthmus import tunables
from isthmus.kube.informer import Informer, JsonObject, describe
from isthmus.kube.resources import ConfigMaps, Namespaces
from isthmus.security import pki
from isthmus.security.pki import CA_CERT, CA_KEY, ROOT_CERT, PkiError, Signer

log = logging.getLogger(__name__)

ROOT_CONFIGMAP = "istio-ca-root-cert"
SELF_SIGNED_SECRET = "istio-ca-secret"
MANAGER = "isthmus-ca"


def bundle_pem(roots: list[x509.Certificate]) -> str:
    return "".join(pki.cert_pem(r).decode() for r in roots)


class PluginSource:
    """The plug-in CA of a mounted `cacerts` folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fingerprint = ""

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(p.name for p in self.folder.glob("*.pem")):
            digest.update(name.encode() + b"\0" + (self.folder / name).read_bytes())
        return digest.hexdigest()

    def load(self) -> Signer:
        fingerprint = self._fingerprint()
        signer = pki.load_plugin_ca(self.folder)
        self.fingerprint = fingerprint
        return signer

    def changed(self) -> Signer | None:
        """A new signer when the files changed and are good; None otherwise (a bad change is logged)."""
        try:
            if self._fingerprint() == self.fingerprint:
                return None
            return self.load()
        except (PkiError, OSError) as exc:
            log.error("cacerts changed but cannot be used, keeping the previous CA: %s", exc)
            return None


class SelfSignedSource:
    """A self-signed root in Secret `istio-ca-secret`, shared by restarts and replicas, rotated before expiry."""

    def __init__(self, client: AsyncClient, namespace: str, trust_domain: str) -> None:
        self.client = client
        self.namespace = namespace
        self.trust_domain = trust_domain
        self.trusted: list[x509.Certificate] = []

    def _decode(self, data: dict[str, str]) -> tuple[Signer, list[x509.Certificate]]:
        where = f"Secret {self.namespace}/{SELF_SIGNED_SECRET}"
        cert = pki.load_certs(base64.b64decode(data[CA_CERT]), f"{where} {CA_CERT}")[0]
        key = pki.load_key(base64.b64decode(data[CA_KEY]), f"{where} {CA_KEY}")
        signer = pki.check_signer(cert, key, [cert], cert, where)
        roots = (
            pki.load_certs(base64.b64decode(data[ROOT_CERT]), f"{where} {ROOT_CERT}")
            if ROOT_CERT in data
            else [cert]
        )
        now = datetime.datetime.now(datetime.UTC)
        return signer, [r for r in roots if r.not_valid_after_utc > now] or [cert]

    def _new(self, previous: list[x509.Certificate]) -> tuple[Signer, list[x509.Certificate], dict[str, str]]:
        key = pki.KeyType.EC_P256.generate()
        lifetime = datetime.timedelta(seconds=tunables.CA_SELF_SIGNED_ROOT_TTL.get())
        cert = pki.new_root(f"Isthmus root CA ({self.trust_domain})", key, lifetime)
        roots = [cert, *previous]
        data = {
            CA_CERT: base64.b64encode(pki.cert_pem(cert)).decode(),
            CA_KEY: base64.b64encode(pki.key_pem(key)).decode(),
            ROOT_CERT: base64.b64encode(bundle_pem(roots).encode()).decode(),
        }
        return Signer(cert, key, ()), roots, data

    async def load(self) -> Signer:
        """The shared root: read it, or create it (a replica that loses the race reads the winner's)."""
        for _ in range(3):
            try:
                secret = await self.client.get(Secret, SELF_SIGNED_SECRET, namespace=self.namespace)
                signer, self.trusted = self._decode(dict(secret.data or {}))
                return signer
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
            signer, roots, data = self._new([])
            secret = Secret(
                metadata=ObjectMeta(name=SELF_SIGNED_SECRET, namespace=self.namespace),
                type="istio.io/ca-root",
                data=data,
            )
            try:
                await self.client.create(secret)
            except ApiError as exc:
                if exc.status.code == 409:
                    continue
                raise
            log.info("created a self-signed root in Secret %s/%s", self.namespace, SELF_SIGNED_SECRET)
            self.trusted = roots
            return signer
        raise PkiError(
            f"Secret {self.namespace}/{SELF_SIGNED_SECRET} keeps changing; is another CA rotating it?"
        )

    async def rotate_if_due(self, current: Signer) -> Signer | None:
        """A new root when less than CA_ROOT_ROTATE_REMAINING of the current one's life is left."""
        cert = current.cert
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
        if left > life * tunables.CA_ROOT_ROTATE_REMAINING.get():
            try:  # another replica may have rotated already
                secret = await self.client.get(Secret, SELF_SIGNED_SECRET, namespace=self.namespace)
                signer, trusted = self._decode(dict(secret.data or {}))
            except (ApiError, PkiError, KeyError) as exc:
                log.warning("cannot re-read Secret %s/%s: %s", self.namespace, SELF_SIGNED_SECRET, exc)
                return None
            if signer.cert != cert:
                self.trusted = trusted
                return signer
            return None
        signer, roots, data = self._new(
            [r for r in self.trusted if r.not_valid_after_utc > datetime.datetime.now(datetime.UTC)]
        )
        patch = {"data": data}
        await self.client.patch(Secret, SELF_SIGNED_SECRET, patch, namespace=self.namespace)
        self.trusted = roots
        log.info("rotated the self-signed root (the previous one stays trusted until it expires)")
        return signer


class RootPublisher:
    """ConfigMap `istio-ca-root-cert` with the trusted roots in every namespace, repaired when changed."""

    def __init__(self, client: AsyncClient, roots: Callable[[], str]) -> None:
        self.client = client
        self.roots = roots
        self.namespaces: Informer[str] = Informer(
            client, Namespaces, self._namespace, self._namespace_changed, name="Namespace (root publisher)"
        )
        self.configmaps: Informer[str] = Informer(
            client,
            ConfigMaps,
            self._root_of,
            self._configmap_changed,
            fields={"metadata.name": ROOT_CONFIGMAP},
            name=f"ConfigMap {ROOT_CONFIGMAP}",
        )
        self._wanted: asyncio.Queue[str] = asyncio.Queue()
        self.published = 0
        self.errors: dict[str, str] = {}

    @staticmethod
    def _namespace(obj: JsonObject) -> str | None:
        phase = (obj.get("status") or {}).get("phase")
        return None if phase == "Terminating" else str(obj["metadata"]["name"])

    @staticmethod
    def _root_of(obj: JsonObject) -> str:
        return str((obj.get("data") or {}).get(ROOT_CERT, ""))

    def _namespace_changed(self, key: tuple[str, str], old: str | None, new: str | None) -> None:
        if new is not None and old is None:
            self._wanted.put_nowait(new)

    def _configmap_changed(self, key: tuple[str, str], old: str | None, new: str | None) -> None:
        if new != self.roots():  # changed or deleted by someone else: put it back
            self._wanted.put_nowait(key[0])

    def _names(self) -> set[str]:
        return {name for (_, name) in self.namespaces.items}

    def republish(self) -> None:
        """The roots changed: publish them everywhere."""
        for name in self._names():
            self._wanted.put_nowait(name)

    async def _publish(self, namespace: str) -> None:
        if namespace not in self._names():
            return
        body = ConfigMap(
            metadata=ObjectMeta(name=ROOT_CONFIGMAP, namespace=namespace, labels={"istio.io/config": "true"}),
            data={ROOT_CERT: self.roots()},
        )
        try:
            await self.client.apply(body, field_manager=MANAGER, force=True)
            self.published += 1
            self.errors.pop(namespace, None)
        except ApiError as exc:
            if exc.status.code == 404 or "terminat" in (exc.status.message or "").lower():
                return  # the namespace is going away
            self._failed(namespace, exc)
        except Exception as exc:
            self._failed(namespace, exc)

    def _failed(self, namespace: str, exc: BaseException) -> None:
        message = f"cannot publish ConfigMap {namespace}/{ROOT_CONFIGMAP}: {describe(exc)}"
        if self.errors.get(namespace) != message:
            log.warning("%s", message)
        self.errors[namespace] = message
        loop = asyncio.get_running_loop()
        loop.call_later(tunables.KUBE_BACKOFF_MAX.get(), self._wanted.put_nowait, namespace)

    async def run(self) -> None:
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.namespaces.run()),
            asyncio.create_task(self.configmaps.run()),
        ]
        try:
            while True:
                await self._publish(await self._wanted.get())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
