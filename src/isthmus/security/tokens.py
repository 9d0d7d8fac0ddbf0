"""Who is calling: a bearer service-account token, reviewed by the CA's own cluster (TokenReview).

Contract: `review` returns the caller's SPIFFE id or raises `SigningError` (UNAUTHENTICATED for a missing,
forged, expired or non-service-account token; UNAVAILABLE when the API server cannot answer). Nothing is
cached: a deleted service account or pod stops getting certificates at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lightkube import ApiError, AsyncClient
from lightkube.models.authentication_v1 import TokenReviewSpec
from lightkube.resources.authentication_v1 import TokenReview

from isthmus.kube.informer import describe
from isthmus.model.identity import IdentityError, SpiffeId
from isthmus.security.authority import Refusal, SigningError

log = logging.getLogger(__name__)

SA_PREFIX = "system:serviceaccount:"


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    """The token of gRPC metadata `authorization: Bearer TOKEN`."""
    for key, value in metadata:
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    raise SigningError(
        Refusal.UNAUTHENTICATED,
        "no service-account token: send gRPC metadata 'authorization: Bearer <token>' (the pod's token at "
        "/var/run/secrets/kubernetes.io/serviceaccount/token)",
    )


class TokenReviewer:
    def __init__(self, client: AsyncClient, trust_domain: str, audiences: Sequence[str] = ()) -> None:
        self.client = client
        self.trust_domain = trust_domain
        self.audiences = list(audiences)

    async def review(self, token: str) -> SpiffeId:
        spec = TokenReviewSpec(token=token, audiences=self.audiences or None)
        try:
            result = await self.client.create(TokenReview(spec=spec))
        except ApiError as exc:
            log.warning("TokenReview failed: %s", describe(exc))
            raise SigningError(
                Refusal.UNAVAILABLE,
                f"the CA could not review the token ({exc.status.code} {exc.status.message}): check that its "
                "service account may create tokenreviews",
            ) from None
        except Exception as exc:
            raise SigningError(
                Refusal.UNAVAILABLE, f"the CA could not review the token: {describe(exc)}"
            ) from None
        status = result.status
        if status is None or not status.authenticated:
            why = (status.error if status is not None else "") or "not authenticated"
            raise SigningError(Refusal.UNAUTHENTICATED, f"the token was refused by the cluster: {why}")
        username = (status.user.username if status.user else "") or ""
        if not username.startswith(SA_PREFIX):
            raise SigningError(
                Refusal.UNAUTHENTICATED,
                f"the token is for {username!r}, not a service account: use the pod's service-account token",
            )
        namespace, _, account = username.removeprefix(SA_PREFIX).partition(":")
        try:
            return SpiffeId(self.trust_domain, namespace, account)
        except IdentityError as exc:
            raise SigningError(Refusal.UNAUTHENTICATED, f"the token's user {username!r}: {exc}") from None
