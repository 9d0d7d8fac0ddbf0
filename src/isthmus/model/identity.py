"""Workload identities: SPIFFE ids `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SA_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class IdentityError(ValueError):
    """A SPIFFE id that is not `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`."""


@dataclass(frozen=True, order=True)
class SpiffeId:
    """An Istio workload identity: a service account of a namespace, in a trust domain."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        if not _TRUST_DOMAIN.match(self.trust_domain):
            raise IdentityError(f"trust domain {self.trust_domain!r} is not a DNS name (e.g. cluster.local)")
        if not _DNS_LABEL.match(self.namespace):
            raise IdentityError(f"namespace {self.namespace!r} is not a DNS label")
        if not _SA_NAME.match(self.service_account):
            raise IdentityError(f"service account {self.service_account!r} is not a DNS subdomain")

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """`spiffe://td/ns/NS/sa/SA` -> SpiffeId; IdentityError says what is wrong."""
        scheme, sep, rest = uri.partition("://")
        if scheme != "spiffe" or not sep:
            raise IdentityError(f"{uri!r} is not a spiffe:// URI")
        parts = rest.split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise IdentityError(f"{uri!r} is not spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT")
        return cls(parts[0], parts[2], parts[4])
