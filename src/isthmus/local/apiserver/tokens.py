"""Service-account tokens as kube-apiserver issues and checks them: JWTs signed (RS256) with the cluster's key.

- Bound tokens (TokenRequest, `kubectl create token`): `iss` ISSUER, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`
  and the `kubernetes.io` claim naming the namespace, the ServiceAccount and the Pod, Secret or Node the token
  is bound to, each with its uid. Valid until `exp`, for their audiences only, while the ServiceAccount and the
  bound object exist with the same uids.
- Legacy tokens (the token Secrets of Kubernetes before 1.24): `iss` `kubernetes/serviceaccount`, no expiry,
  no audience (they are for the API server's own), the `kubernetes.io/serviceaccount/...` claims. Valid while
  their Secret holds exactly that token and the ServiceAccount exists with the same uid.

The key is RSA 2048 (`DIR/<cluster>/sa.key`, made by `isthmus local up`): RS256 is what kubeadm clusters sign
with and what every OIDC relying party accepts (some accept nothing else), and an RSA signature check, done
for every request that carries a token, costs a fraction of an ECDSA one.

Contract: runs on the server's event loop and never blocks; `lookup` reads objects from memory. Signature
checks are cached per token; everything that can change (expiry, the objects) is checked on every use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt import InvalidTokenError
from jwt.api_jws import PyJWS

from isthmus.local.apiserver.auth import AUTHENTICATED, UserInfo
from isthmus.local.apiserver.clock import parse

JsonObject = dict[str, Any]
# Reads one core/v1 object from the cluster: (plural, namespace, name) -> the object, or None.
Lookup = Callable[[str, str, str], JsonObject | None]

ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"
# kube-apiserver's --api-audiences defaults to its --service-account-issuer.
API_AUDIENCES: tuple[str, ...] = (ISSUER,)
ALGORITHM = "RS256"
KEY_BITS = 2048

SA_USER_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 1 << 32
LEEWAY = 60  # seconds of clock skew allowed on exp, nbf and iat (go-jose's default, which Kubernetes keeps)
DELETION_GRACE = 60  # a deleting object's tokens stay valid this long (as Kubernetes' validator allows)

EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"

SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"

LEGACY_NAMESPACE = "kubernetes.io/serviceaccount/namespace"
LEGACY_SECRET_NAME = "kubernetes.io/serviceaccount/secret.name"
LEGACY_SA_NAME = "kubernetes.io/serviceaccount/service-account.name"
LEGACY_SA_UID = "kubernetes.io/serviceaccount/service-account.uid"

_CACHE_SIZE = 4096


# --- keys -----------------------------------------------------------------------------------------------


def generate_signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def ensure_signing_key(path: Path) -> Path:
    """The PEM (PKCS#8) RSA key at `path`, created (mode 0600) on first use."""
    if not path.exists():
        pem = generate_signing_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    return path


def load_signing_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM file, with an error naming the file when it is missing or not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(
            f"the service-account signing key {path} cannot be read ({exc.strerror}): "
            "`isthmus local up` creates it"
        ) from None
    try:
        key = serialization.load_pem_private_key(data, None)
    except ValueError as exc:
        raise ValueError(f"the service-account signing key {path} is not a PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(
            f"the service-account signing key {path} is a {type(key).__name__}, not an RSA key (RS256)"
        )
    return key


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """The `kid` Kubernetes gives a key: base64url of the SHA-256 of its DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64url(hashlib.sha256(der).digest())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


# --- names ----------------------------------------------------------------------------------------------


def service_account_username(namespace: str, name: str) -> str:
    return f"{SA_USER_PREFIX}{namespace}:{name}"


def split_username(username: str) -> tuple[str, str] | None:
    """(namespace, name) of `system:serviceaccount:NS:NAME`; None for any other user name."""
    if not username.startswith(SA_USER_PREFIX):
        return None
    parts = username[len(SA_USER_PREFIX) :].split(":")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return (SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED)


def go_strings(values: Sequence[str]) -> str:
    """A list of strings as Go's `%q` prints a []string: `["a" "b"]`."""
    return "[" + " ".join(orjson.dumps(v).decode() for v in values) + "]"


# --- review results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenReviewResult:
    """What a token proves: the user and the audiences it was accepted for, or why it was refused."""

    user: UserInfo | None
    audiences: tuple[str, ...] = ()
    error: str = ""

    @property
    def authenticated(self) -> bool:
        return self.user is not None


class TokenError(Exception):
    """Why a service-account token is refused (reported in TokenReview's status.error)."""


# --- the issuer and authenticator -----------------------------------------------------------------------


class ServiceAccountTokens:
    """Issues and checks the tokens of one cluster. An `Authenticator` (auth.py) for the request path."""

    def __init__(
        self,
        key: rsa.RSAPrivateKey,
        lookup: Lookup,
        *,
        issuer: str = ISSUER,
        api_audiences: Sequence[str] = API_AUDIENCES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._public_key = key.public_key()
        self.kid = key_id(self._public_key)
        self.lookup = lookup
        self.issuer = issuer
        self.api_audiences = tuple(api_audiences)
        self.clock = clock
        self._jws = PyJWS()
        self._verified: dict[str, JsonObject] = {}

    # -- issuing ------------------------------------------------------------------------------------------

    def _sign(self, claims: JsonObject) -> str:
        payload = orjson.dumps(claims, option=orjson.OPT_SORT_KEYS)
        return self._jws.encode(payload, self._key, ALGORITHM, headers={"kid": self.kid, "typ": None})

    def issue(
        self,
        service_account: JsonObject,
        audiences: Sequence[str],
        expiration_seconds: int,
        *,
        pod: JsonObject | None = None,
        secret: JsonObject | None = None,
        node: JsonObject | None = None,
    ) -> tuple[str, int]:
        """A bound token for a ServiceAccount object (and the Pod, Secret or Node it is bound to) and the time
        it expires (seconds since the epoch)."""
        meta = service_account["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        now = int(self.clock())
        expires = now + expiration_seconds
        private: JsonObject = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": meta.get("uid", "")},
        }
        for key, obj in (("pod", pod), ("secret", secret), ("node", node)):
            if obj is not None:
                private[key] = {"name": obj["metadata"]["name"], "uid": obj["metadata"].get("uid", "")}
        claims = {
            "aud": list(audiences),
            "exp": expires,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "sub": service_account_username(namespace, name),
            "kubernetes.io": private,
        }
        return self._sign(claims), expires

    def issue_legacy(self, service_account: JsonObject, secret_name: str) -> str:
        """The token of a `kubernetes.io/service-account-token` Secret, as Kubernetes before 1.24 made it."""
        meta = service_account["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        return self._sign(
            {
                "iss": LEGACY_ISSUER,
                "sub": service_account_username(namespace, name),
                LEGACY_NAMESPACE: namespace,
                LEGACY_SECRET_NAME: secret_name,
                LEGACY_SA_NAME: name,
                LEGACY_SA_UID: meta.get("uid", ""),
            }
        )

    # -- discovery ----------------------------------------------------------------------------------------

    def openid_configuration(self, jwks_uri: str) -> JsonObject:
        """`/.well-known/openid-configuration`, as kube-apiserver publishes it."""
        return {
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
        }

    def jwks(self) -> JsonObject:
        """`/openid/v1/jwks`: the public key that verifies this cluster's tokens."""
        numbers = self._public_key.public_numbers()
        return {
            "keys": [
                {
                    "use": "sig",
                    "kty": "RSA",
                    "kid": self.kid,
                    "alg": ALGORITHM,
                    "n": _int_b64url(numbers.n),
                    "e": _int_b64url(numbers.e),
                }
            ]
        }

    # -- checking -----------------------------------------------------------------------------------------

    def authenticate(self, token: str) -> UserInfo | None:
        """The user of a valid token presented to the API server (its own audiences); None otherwise."""
        result = self.review(token)
        return result.user if result is not None else None

    def review(self, token: str, audiences: Sequence[str] | None = None) -> TokenReviewResult | None:
        """Check a token for `audiences` (default: the API server's). None when it is not a service-account
        token of this cluster's issuers at all (another authenticator may know it)."""
        claims = self._verified.get(token)
        if claims is None:
            peeked = _peek(token)
            if peeked is None or peeked.get("iss") not in (self.issuer, LEGACY_ISSUER):
                return None
            try:
                claims = self._verify(token)
            except TokenError as exc:
                return TokenReviewResult(None, error=str(exc))
        legacy = claims.get("iss") == LEGACY_ISSUER
        token_audiences = _audiences(claims.get("aud")) or self.api_audiences
        requested = tuple(audiences) if audiences else self.api_audiences
        matched = tuple(a for a in token_audiences if a in requested)
        if not matched:
            return TokenReviewResult(
                None,
                error=f"token audiences {go_strings(token_audiences)} is invalid for the target audiences "
                f"{go_strings(requested)}",
            )
        try:
            user = self._check_legacy(token, claims) if legacy else self._check_bound(claims)
        except TokenError as exc:
            return TokenReviewResult(None, error=str(exc))
        return TokenReviewResult(user, matched)

    def _verify(self, token: str) -> JsonObject:
        try:
            decoded = self._jws.decode_complete(token, self._public_key, algorithms=[ALGORITHM])
        except InvalidTokenError as exc:
            raise TokenError(
                f"the token's signature does not verify with this cluster's service-account key ({exc})"
            ) from None
        try:
            claims = orjson.loads(decoded["payload"])
        except orjson.JSONDecodeError:
            raise TokenError("the token's claims are not a JSON object") from None
        if not isinstance(claims, dict):
            raise TokenError("the token's claims are not a JSON object")
        if len(self._verified) >= _CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    def _check_times(self, claims: JsonObject) -> None:
        now = self.clock()
        expires, not_before, issued = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if isinstance(expires, int | float) and now > expires + LEEWAY:
            raise TokenError("service account token has expired")
        if isinstance(not_before, int | float) and now + LEEWAY < not_before:
            raise TokenError("service account token is not valid yet")
        if isinstance(issued, int | float) and now + LEEWAY < issued:
            raise TokenError("service account token is issued in the future")

    def _deleted_long_ago(self, obj: JsonObject) -> bool:
        deleted = obj["metadata"].get("deletionTimestamp")
        return bool(deleted) and parse(str(deleted)).timestamp() < self.clock() - DELETION_GRACE

    def _service_account(self, namespace: str, name: str, uid: str) -> JsonObject:
        account = self.lookup("serviceaccounts", namespace, name)
        if account is None:
            raise TokenError(f'serviceaccount "{name}" not found')
        actual = account["metadata"].get("uid", "")
        if actual != uid:
            raise TokenError(f"service account UID ({actual}) does not match claim ({uid})")
        if self._deleted_long_ago(account):
            raise TokenError(f"service account {namespace}/{name} has been deleted")
        return account

    def _check_bound(self, claims: JsonObject) -> UserInfo:
        self._check_times(claims)
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict):
            raise TokenError('the token has no "kubernetes.io" claim')
        namespace = private.get("namespace")
        account_ref = private.get("serviceaccount")
        if not isinstance(namespace, str) or not namespace:
            raise TokenError('the token\'s "kubernetes.io" claim has no namespace')
        if not isinstance(account_ref, dict) or not account_ref.get("name"):
            raise TokenError('the token\'s "kubernetes.io" claim has no serviceaccount')
        name, uid = str(account_ref["name"]), str(account_ref.get("uid", ""))
        if claims.get("sub") != service_account_username(namespace, name):
            raise TokenError("sub claim is invalid")
        self._service_account(namespace, name, uid)
        extra: dict[str, tuple[str, ...]] = {}
        if claims.get("jti"):
            extra[EXTRA_CREDENTIAL_ID] = (f"JTI={claims['jti']}",)
        for kind, plural in (("secret", "secrets"), ("pod", "pods"), ("node", "nodes")):
            ref = private.get(kind)
            if not isinstance(ref, dict):
                continue
            ref_name, ref_uid = str(ref.get("name", "")), str(ref.get("uid", ""))
            if kind == "node" and isinstance(private.get("pod"), dict):
                # A pod-bound token only names its pod's node; only node-bound tokens depend on the node.
                extra[EXTRA_NODE_NAME] = (ref_name,)
                if ref_uid:
                    extra[EXTRA_NODE_UID] = (ref_uid,)
                continue
            bound = self.lookup(plural, "" if kind == "node" else namespace, ref_name)
            if bound is None:
                raise TokenError(f'{kind} "{ref_name}" not found')
            if self._deleted_long_ago(bound):
                raise TokenError("service account token has been invalidated")
            actual = bound["metadata"].get("uid", "")
            if actual != ref_uid:
                raise TokenError(
                    f"{kind} UID ({actual}) does not match service account {kind} ref claim ({ref_uid})"
                )
            if kind == "pod":
                extra[EXTRA_POD_NAME], extra[EXTRA_POD_UID] = (ref_name,), (ref_uid,)
            elif kind == "node":
                extra[EXTRA_NODE_NAME], extra[EXTRA_NODE_UID] = (ref_name,), (ref_uid,)
        return UserInfo(
            service_account_username(namespace, name), uid, service_account_groups(namespace), extra
        )

    def _check_legacy(self, token: str, claims: JsonObject) -> UserInfo:
        subject = claims.get("sub")
        if not subject:
            raise TokenError("sub claim is missing")
        fields = {}
        for claim, what in (
            (LEGACY_NAMESPACE, "namespace"),
            (LEGACY_SECRET_NAME, "secretName"),
            (LEGACY_SA_NAME, "serviceAccountName"),
            (LEGACY_SA_UID, "serviceAccountUID"),
        ):
            value = claims.get(claim)
            if not isinstance(value, str) or not value:
                raise TokenError(f"{what} claim is missing")
            fields[what] = value
        namespace, name = fields["namespace"], fields["serviceAccountName"]
        if split_username(str(subject)) != (namespace, name):
            raise TokenError("sub claim is invalid")
        secret = self.lookup("secrets", namespace, fields["secretName"])
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            raise TokenError("token has been invalidated")
        stored = (secret.get("data") or {}).get("token", "")
        try:
            stored_token = base64.b64decode(stored, validate=True)
        except ValueError:
            stored_token = b""
        if not hmac.compare_digest(stored_token, token.encode()):
            raise TokenError("token does not match server's copy")
        account = self.lookup("serviceaccounts", namespace, name)
        if account is None:
            raise TokenError(f'serviceaccount "{name}" not found')
        if account["metadata"].get("deletionTimestamp"):
            raise TokenError(f"service account {namespace}/{name} has been deleted")
        uid = account["metadata"].get("uid", "")
        if uid != fields["serviceAccountUID"]:
            raise TokenError(
                f"service account UID ({uid}) does not match claim ({fields['serviceAccountUID']})"
            )
        return UserInfo(service_account_username(namespace, name), uid, service_account_groups(namespace))


def _peek(token: str) -> JsonObject | None:
    """The claims of a compact JWS without checking anything; None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = orjson.loads(payload)
    except (ValueError, orjson.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _audiences(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()
