"""The certificate authority's decisions: what a caller may get signed, for how long, by which CA.

Contract: `CertificateAuthority.sign` is called with the identity the caller proved (its service-account token,
reviewed by the server); it refuses a CSR that asks for any other identity, for DNS names, with an unsupported
key or an absurd validity, raising `SigningError` with a gRPC-style code and a message that says what to do.
The signer may be replaced at any time (`rotate`); a signature uses the signer current at its start.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from isthmus.model.identity import SpiffeId
from isthmus.security.pki import WORKLOAD_LIFETIME, KeyType, PkiError, Signer, parse_csr

MAX_WORKLOAD_LIFETIME = datetime.timedelta(days=90)


class Refusal(enum.Enum):
    """Why a request is refused, as the gRPC status the server answers with."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"


class SigningError(Exception):
    def __init__(self, code: Refusal, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SigningPolicy:
    default_lifetime: datetime.timedelta = WORKLOAD_LIFETIME
    max_lifetime: datetime.timedelta = MAX_WORKLOAD_LIFETIME
    key_types: frozenset[KeyType] = frozenset(KeyType)
    # DNS names an identity may have besides its SPIFFE id (the control plane's Service names)
    dns_names: Mapping[str, frozenset[str]] = field(default_factory=dict)


class CertificateAuthority:
    """Signs workload CSRs with the current signer under a policy."""

    def __init__(self, signer: Signer, policy: SigningPolicy = SigningPolicy()) -> None:
        self.signer = signer
        self.policy = policy
        self.issued = 0

    def rotate(self, signer: Signer) -> None:
        self.signer = signer

    def lifetime(self, validity_seconds: int) -> datetime.timedelta:
        if validity_seconds < 0:
            raise SigningError(
                Refusal.INVALID_ARGUMENT, f"validity_duration {validity_seconds}: must not be negative"
            )
        if validity_seconds == 0:
            return self.policy.default_lifetime
        requested = datetime.timedelta(seconds=validity_seconds)
        if requested > self.policy.max_lifetime:
            raise SigningError(
                Refusal.INVALID_ARGUMENT,
                f"validity_duration {validity_seconds}s is longer than this CA's maximum "
                f"{int(self.policy.max_lifetime.total_seconds())}s (ask for less, or 0 for the default "
                f"{int(self.policy.default_lifetime.total_seconds())}s)",
            )
        return requested

    def sign(self, csr_pem: str, identity: SpiffeId, validity_seconds: int = 0) -> list[str]:
        """The certificate chain (PEM, leaf first, root last) for a CSR from `identity`."""
        lifetime = self.lifetime(validity_seconds)
        try:
            request = parse_csr(csr_pem)
        except PkiError as exc:
            raise SigningError(Refusal.INVALID_ARGUMENT, str(exc)) from None
        if request.key_type not in self.policy.key_types:
            allowed = ", ".join(sorted(k.value for k in self.policy.key_types))
            raise SigningError(
                Refusal.INVALID_ARGUMENT, f"key type {request.key_type.value} is not allowed: use {allowed}"
            )
        may_have = self.policy.dns_names.get(str(identity), frozenset())
        refused = [d for d in request.dns_names if d not in may_have]
        if refused:
            raise SigningError(
                Refusal.PERMISSION_DENIED,
                f"the CSR asks for DNS names {', '.join(refused)}: workload certificates carry only "
                "the caller's SPIFFE id (and the control plane its Service's names)",
            )
        others = [u for u in request.uris if u != str(identity)]
        if others:
            raise SigningError(
                Refusal.PERMISSION_DENIED,
                f"the CSR asks for {', '.join(others)} but the caller's token is for {identity}: a workload may "
                "only get its own service account's identity",
            )
        signer = self.signer
        leaf = signer.workload(request.public_key, [str(identity)], lifetime, request.dns_names)
        self.issued += 1
        return signer.chain_pem(leaf)
