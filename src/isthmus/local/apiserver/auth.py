"""Who is calling and what they may do: authenticators turn a bearer token into a user, authorizers decide.

Contract: both are called on the server's event loop for every request and must not block. An authenticator
returns None when the token is not one it knows (the next one is asked); the request is anonymous when none
knows it. Authorizers answer ALLOW, DENY or NO_OPINION; the first non-NO_OPINION answer wins, and no answer
at all is a denial. As in kube-apiserver, the chain is the superuser group (system:masters) then RBAC
(rbac.py), whose default roles grant what everyone may do (health, version, discovery, self reviews).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

SYSTEM_MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.name == ANONYMOUS


ANONYMOUS_USER = UserInfo(ANONYMOUS, groups=(UNAUTHENTICATED,))


@dataclass(frozen=True)
class Attributes:
    """What a request does, in RBAC's terms."""

    user: UserInfo
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # for non-resource requests (/version, /healthz, ...)

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)


class Decision(Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


class Authenticator(Protocol):
    def authenticate(self, token: str) -> UserInfo | None: ...


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> tuple[Decision, str]: ...


class StaticTokenAuthenticator:
    """Fixed tokens (the local cluster's admin token) mapped to users."""

    def __init__(self, tokens: dict[str, UserInfo]) -> None:
        self._tokens = tokens

    def authenticate(self, token: str) -> UserInfo | None:
        for known, user in self._tokens.items():
            if hmac.compare_digest(known, token):
                return user
        return None


class SuperuserAuthorizer:
    """Members of system:masters may do anything (as in Kubernetes, where this group bypasses RBAC)."""

    def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        if SYSTEM_MASTERS in attrs.user.groups:
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""


class AuthChain:
    """The server's authenticators and authorizers, asked in order."""

    def __init__(self, authenticators: Sequence[Authenticator], authorizers: Sequence[Authorizer]) -> None:
        self.authenticators = list(authenticators)
        self.authorizers = list(authorizers)

    def authenticate(self, token: str | None) -> UserInfo | None:
        """The user for a bearer token; ANONYMOUS_USER without a token; None for a token nobody knows."""
        if not token:
            return ANONYMOUS_USER
        for authenticator in self.authenticators:
            user = authenticator.authenticate(token)
            if user is not None:
                return user
        return None

    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        for authorizer in self.authorizers:
            decision, reason = authorizer.authorize(attrs)
            if decision is Decision.ALLOW:
                return True, reason
            if decision is Decision.DENY:
                return False, reason
        return False, ""
