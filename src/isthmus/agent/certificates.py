"""The workload's certificate: a key made in the pod (it never leaves it), a CSR for the pod's own identity,
signed by its cluster's CA with the pod's service-account token; renewed at half-life (with jitter), and the
trusted roots followed as the mounted `istio-ca-root-cert` ConfigMap changes.

Contract: `run` keeps `current` fresh and calls `on_change` (on the agent's event loop) after the certificate
or the roots changed; whoever serves them sets `on_change` before `run` or while `ready` is awaited. A failure
to renew is retried with backoff while the old certificate stays in use.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from isthmus import tunables
from isthmus.model.identity import SpiffeId
from isthmus.security import pki
from isthmus.security.client import CaClientError, request_certificate

log = logging.getLogger(__name__)

ROOT_POLL = 5.0  # seconds between checks of the mounted roots file (kubelet updates it within a minute)
RETRY_FIRST, RETRY_MAX = 0.5, 30.0


@dataclass(frozen=True)
class CertificateOptions:
    ca_address: str  # host:port of the cluster's CA (istio-citadel.istio-system.svc:8060)
    root_path: Path  # the mounted roots (ConfigMap istio-ca-root-cert)
    token_path: Path  # the pod's service-account token
    identity: SpiffeId
    cluster_id: str = ""
    validity_seconds: int = 0  # 0: the CA's default
    server_name: str = ""  # the name the CA's certificate is checked for; default: the host of ca_address
    dns_names: tuple[str, ...] = ()  # besides the SPIFFE id (the control plane's Service names)


@dataclass(frozen=True)
class Issued:
    key_pem: bytes
    chain_pem: bytes  # leaf and intermediates, as Envoy serves them
    expires: datetime.datetime
    renew_at: datetime.datetime


class WorkloadCertificates:
    def __init__(self, options: CertificateOptions) -> None:
        self.options = options
        self.on_change: Callable[[], None] = lambda: None
        self.current: Issued | None = None
        self.roots_pem = b""
        self.renewals = 0
        self.error = ""
        self.ready = asyncio.Event()

    def _read_roots(self) -> bytes:
        data = self.options.root_path.read_bytes()
        pki.load_certs(data, str(self.options.root_path))
        return data

    async def _issue(self) -> Issued:
        key = pki.KeyType.EC_P256.generate()
        csr = pki.new_csr(key, [str(self.options.identity)], self.options.dns_names)
        token = self.options.token_path.read_text().strip()
        chain = await request_certificate(
            self.options.ca_address,
            self.roots_pem,
            token,
            csr,
            validity_seconds=self.options.validity_seconds,
            cluster_id=self.options.cluster_id,
            server_name=self.options.server_name,
        )
        leaf = x509.load_pem_x509_certificate(chain[0].encode())
        start = max(leaf.not_valid_before_utc, datetime.datetime.now(datetime.UTC))  # CAs backdate for skew
        fraction = tunables.AGENT_CERT_ROTATE_AT.get() * random.uniform(0.9, 1.0)
        return Issued(
            key_pem=pki.key_pem(key),
            chain_pem="".join(chain[:-1]).encode(),
            expires=leaf.not_valid_after_utc,
            renew_at=start + (leaf.not_valid_after_utc - start) * fraction,
        )

    async def _until_done(self, attempt: Callable[[], Awaitable[None]], failing: str) -> None:
        """Run `attempt` until it succeeds, with backoff; `error` says why it fails meanwhile."""
        delay = RETRY_FIRST
        while True:
            try:
                await attempt()
                if self.error:
                    log.info("%s: working again", failing)
                self.error = ""
                return
            except (CaClientError, OSError, pki.PkiError) as exc:
                message = f"{failing}: {exc}"
                if message != self.error:
                    log.warning("%s (retrying)", message)
                self.error = message
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RETRY_MAX)

    async def _renew(self) -> None:
        async def issue() -> None:
            self.current = await self._issue()

        await self._until_done(issue, f"cannot get a certificate from {self.options.ca_address}")
        assert self.current is not None
        self.renewals += 1
        log.info("certificate for %s, valid until %s", self.options.identity, self.current.expires)
        self.ready.set()
        self.on_change()

    async def _follow_roots(self) -> None:
        while True:
            await asyncio.sleep(ROOT_POLL)
            try:
                roots = self._read_roots()
            except (OSError, pki.PkiError) as exc:
                log.warning(
                    "the roots at %s cannot be read, keeping the previous ones: %s",
                    self.options.root_path,
                    exc,
                )
                continue
            if roots != self.roots_pem:
                self.roots_pem = roots
                log.info("the trusted roots changed")
                self.on_change()

    async def _load_roots(self) -> None:
        self.roots_pem = self._read_roots()

    async def run(self) -> None:
        await self._until_done(self._load_roots, f"no trusted roots at {self.options.root_path} yet")
        roots = asyncio.create_task(self._follow_roots())
        try:
            while True:
                await self._renew()
                assert self.current is not None
                wait = (self.current.renew_at - datetime.datetime.now(datetime.UTC)).total_seconds()
                await asyncio.sleep(max(wait, 1.0))
        finally:
            roots.cancel()
