"""Service-account tokens, issued and checked in memory: claims as Kubernetes writes them, signature, expiry
(with go-jose's minute of leeway), audiences, and the objects a token depends on (ServiceAccount, bound Pod or
Secret, the legacy token's Secret), each with its uid."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest

from isthmus.local.apiserver.tokens import (
    API_AUDIENCES,
    EXTRA_CREDENTIAL_ID,
    EXTRA_POD_NAME,
    EXTRA_POD_UID,
    ISSUER,
    LEGACY_ISSUER,
    ServiceAccountTokens,
    ensure_signing_key,
    generate_signing_key,
    load_signing_key,
    split_username,
)

JsonObject = dict[str, Any]
KEY = generate_signing_key()
OTHER_KEY = generate_signing_key()
T0 = 1_900_000_000.0


class Cluster:
    """The objects tokens are checked against, and a clock the test moves."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], JsonObject] = {}
        self.now = T0

    def add(self, plural: str, namespace: str, name: str, **fields: Any) -> JsonObject:
        meta: JsonObject = {"name": name, "uid": str(uuid.uuid4())}
        if namespace:
            meta["namespace"] = namespace
        obj = {"metadata": meta, **fields}
        self.objects[(plural, namespace, name)] = obj
        return obj

    def remove(self, plural: str, namespace: str, name: str) -> None:
        del self.objects[(plural, namespace, name)]

    def lookup(self, plural: str, namespace: str, name: str) -> JsonObject | None:
        return self.objects.get((plural, namespace, name))

    def tokens(self, key: Any = KEY) -> ServiceAccountTokens:
        return ServiceAccountTokens(key, self.lookup, clock=lambda: self.now)


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


def claims_of(token: str) -> JsonObject:
    payload = token.split(".")[1]
    claims: JsonObject = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def header_of(token: str) -> JsonObject:
    header: JsonObject = jwt.get_unverified_header(token)
    return header


def test_bound_token_claims_are_kubernetes_own(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    token, expires = cluster.tokens().issue(account, ["vault"], 3600)
    claims = claims_of(token)
    assert expires == int(T0) + 3600
    assert claims["iss"] == ISSUER == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == "system:serviceaccount:team:builder"
    assert claims["aud"] == ["vault"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (int(T0), int(T0), int(T0) + 3600)
    assert uuid.UUID(claims["jti"])
    assert claims["kubernetes.io"] == {
        "namespace": "team",
        "serviceaccount": {"name": "builder", "uid": account["metadata"]["uid"]},
    }
    assert header_of(token) == {"alg": "RS256", "kid": cluster.tokens().kid}
    assert list(claims) == sorted(claims), "claims in key order, as go-jose writes them"


def test_bound_token_authenticates_its_service_account(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, API_AUDIENCES, 3600)
    result = tokens.review(token)
    assert result is not None and result.error == "" and result.user is not None
    assert result.audiences == API_AUDIENCES
    user = result.user
    assert user.name == "system:serviceaccount:team:builder"
    assert user.uid == account["metadata"]["uid"]
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated")
    assert user.extra == {EXTRA_CREDENTIAL_ID: (f"JTI={claims_of(token)['jti']}",)}
    assert tokens.authenticate(token) == user


def test_audiences_a_token_is_for_and_the_ones_it_is_not(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, ["vault", "api"], 3600)
    matched = tokens.review(token, ["api", "other"])
    assert matched is not None and matched.authenticated and matched.audiences == ("api",)
    both = tokens.review(token, ["api", "vault"])
    assert both is not None and both.audiences == ("vault", "api"), "in the token's order"
    refused = tokens.review(token)  # the API server's own audience
    assert refused is not None and not refused.authenticated
    assert refused.error == (
        'token audiences ["vault" "api"] is invalid for the target audiences '
        '["https://kubernetes.default.svc.cluster.local"]'
    )
    assert tokens.authenticate(token) is None, "a token for another audience does not open the API"


def test_expiry_with_a_minute_of_leeway(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    tokens = cluster.tokens()
    token, expires = tokens.issue(account, API_AUDIENCES, 600)
    cluster.now = expires + 59
    assert tokens.authenticate(token) is not None
    cluster.now = expires + 61
    result = tokens.review(token)
    assert result is not None and result.error == "service account token has expired"
    cluster.now = T0 - 120
    early = tokens.review(token)
    assert early is not None and early.error == "service account token is not valid yet"


def test_a_token_signed_by_another_key_is_refused(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    forged, _ = cluster.tokens(OTHER_KEY).issue(account, API_AUDIENCES, 3600)
    result = cluster.tokens().review(forged)
    assert result is not None and not result.authenticated
    assert "signature does not verify with this cluster's service-account key" in result.error
    assert cluster.tokens().authenticate(forged) is None


def test_a_tampered_token_is_refused(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, API_AUDIENCES, 3600)
    header, _, signature = token.split(".")
    claims = {**claims_of(token), "exp": int(T0) + 10**8}
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    result = tokens.review(f"{header}.{payload}.{signature}")
    assert result is not None and "signature does not verify" in result.error


def test_tokens_of_other_issuers_are_not_service_account_tokens(cluster: Cluster) -> None:
    tokens = cluster.tokens()
    foreign = jwt.encode({"iss": "https://accounts.example.com", "sub": "x"}, OTHER_KEY, algorithm="RS256")
    assert tokens.review(foreign) is None
    assert tokens.review("not-a-jwt") is None
    assert tokens.review("a.b.c") is None


def test_a_deleted_or_recreated_service_account_invalidates_its_tokens(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, API_AUDIENCES, 3600)
    cluster.remove("serviceaccounts", "team", "builder")
    gone = tokens.review(token)
    assert gone is not None and gone.error == 'serviceaccount "builder" not found'
    again = cluster.add("serviceaccounts", "team", "builder")
    recreated = tokens.review(token)
    assert recreated is not None and recreated.error == (
        f"service account UID ({again['metadata']['uid']}) does not match claim ({account['metadata']['uid']})"
    )


def test_pod_bound_token_lives_with_its_pod(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    pod = cluster.add("pods", "team", "web-0", spec={"serviceAccountName": "builder"})
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, API_AUDIENCES, 3600, pod=pod)
    assert claims_of(token)["kubernetes.io"]["pod"] == {"name": "web-0", "uid": pod["metadata"]["uid"]}
    result = tokens.review(token)
    assert result is not None and result.user is not None
    assert result.user.extra[EXTRA_POD_NAME] == ("web-0",)
    assert result.user.extra[EXTRA_POD_UID] == (pod["metadata"]["uid"],)
    cluster.remove("pods", "team", "web-0")
    gone = tokens.review(token)
    assert gone is not None and gone.error == 'pod "web-0" not found'
    again = cluster.add("pods", "team", "web-0")
    recreated = tokens.review(token)
    assert recreated is not None and recreated.error == (
        f"pod UID ({again['metadata']['uid']}) does not match service account pod ref claim "
        f"({pod['metadata']['uid']})"
    )


def test_a_pod_deleted_over_a_minute_ago_invalidates_its_tokens(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    pod = cluster.add("pods", "team", "web-0")
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, API_AUDIENCES, 3600, pod=pod)
    pod["metadata"]["deletionTimestamp"] = "2030-03-17T17:46:40Z"  # T0
    cluster.now = T0 + 30
    assert tokens.authenticate(token) is not None, "still terminating: its containers still run"
    cluster.now = T0 + 90
    result = tokens.review(token)
    assert result is not None and result.error == "service account token has been invalidated"


def test_secret_bound_token_lives_with_its_secret(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    secret = cluster.add("secrets", "team", "anchor")
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, API_AUDIENCES, 3600, secret=secret)
    assert tokens.authenticate(token) is not None
    cluster.remove("secrets", "team", "anchor")
    result = tokens.review(token)
    assert result is not None and result.error == 'secret "anchor" not found'


def legacy_secret(cluster: Cluster, tokens: ServiceAccountTokens, account: JsonObject, name: str) -> str:
    token = tokens.issue_legacy(account, name)
    cluster.add(
        "secrets",
        account["metadata"]["namespace"],
        name,
        type="kubernetes.io/service-account-token",
        data={"token": base64.b64encode(token.encode()).decode()},
    )
    return token


def test_legacy_token_claims(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "istio-system", "reader")
    token = cluster.tokens().issue_legacy(account, "reader-token-abcde")
    assert claims_of(token) == {
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": "istio-system",
        "kubernetes.io/serviceaccount/secret.name": "reader-token-abcde",
        "kubernetes.io/serviceaccount/service-account.name": "reader",
        "kubernetes.io/serviceaccount/service-account.uid": account["metadata"]["uid"],
        "sub": "system:serviceaccount:istio-system:reader",
    }


def test_legacy_token_is_valid_while_its_secret_holds_it(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "istio-system", "reader")
    tokens = cluster.tokens()
    token = legacy_secret(cluster, tokens, account, "reader-token-abcde")
    cluster.now = T0 + 10 * 365 * 86400  # legacy tokens do not expire
    user = tokens.authenticate(token)
    assert user is not None and user.name == "system:serviceaccount:istio-system:reader"
    assert user.groups == (
        "system:serviceaccounts",
        "system:serviceaccounts:istio-system",
        "system:authenticated",
    )
    other = tokens.review(token, ["vault"])
    assert other is not None and not other.authenticated, "legacy tokens are for the API server only"
    secret = cluster.lookup("secrets", "istio-system", "reader-token-abcde")
    assert secret is not None
    secret["data"]["token"] = base64.b64encode(b"rotated").decode()
    changed = tokens.review(token)
    assert changed is not None and changed.error == "token does not match server's copy"
    cluster.remove("secrets", "istio-system", "reader-token-abcde")
    deleted = tokens.review(token)
    assert deleted is not None and deleted.error == "token has been invalidated"


def test_legacy_token_of_a_deleted_service_account(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "istio-system", "reader")
    tokens = cluster.tokens()
    token = legacy_secret(cluster, tokens, account, "reader-token-abcde")
    cluster.remove("serviceaccounts", "istio-system", "reader")
    result = tokens.review(token)
    assert result is not None and result.error == 'serviceaccount "reader" not found'


def test_jwks_verifies_the_tokens(cluster: Cluster) -> None:
    account = cluster.add("serviceaccounts", "team", "builder")
    tokens = cluster.tokens()
    token, _ = tokens.issue(account, ["vault"], 3600)
    (jwk,) = tokens.jwks()["keys"]
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["kid"]) == ("RSA", "RS256", "sig", tokens.kid)
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience="vault",
        options={"verify_iat": False, "verify_nbf": False},
    )
    assert claims["sub"] == "system:serviceaccount:team:builder"
    discovery = tokens.openid_configuration("https://api.example:6443/openid/v1/jwks")
    assert discovery == {
        "issuer": ISSUER,
        "jwks_uri": "https://api.example:6443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def test_signing_key_files(tmp_path: Path) -> None:
    path = ensure_signing_key(tmp_path / "sa.key")
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_bytes()
    assert ensure_signing_key(path).read_bytes() == first, "kept once made"
    assert load_signing_key(path).key_size == 2048
    with pytest.raises(ValueError, match=r"missing\.key cannot be read .*`isthmus local up` creates it"):
        load_signing_key(tmp_path / "missing.key")
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(ValueError, match=r"bad\.key is not a PEM private key"):
        load_signing_key(tmp_path / "bad.key")


def test_split_username() -> None:
    assert split_username("system:serviceaccount:ns:sa") == ("ns", "sa")
    assert split_username("system:serviceaccount:ns") is None
    assert split_username("jane") is None
