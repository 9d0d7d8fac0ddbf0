"""The service-account controllers, reconciled by hand in memory: each namespace's `default` ServiceAccount and
`kube-root-ca.crt`, legacy token Secrets (on and off), user-made token Secrets, and the clean-up when a
ServiceAccount or a token Secret goes."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from isthmus.local.apiserver.admission import AdmissionChain
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.controllers.base import ControllerContext
from isthmus.local.apiserver.controllers.serviceaccounts import NamespaceDefaults, TokenSecrets
from isthmus.local.apiserver.objects import Objects, WriteOptions
from isthmus.local.apiserver.resources import ResourceRegistry
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.store import Store
from isthmus.local.apiserver.strategies import Strategies
from isthmus.local.apiserver.tokens import ServiceAccountTokens, ensure_signing_key, load_signing_key

JsonObject = dict[str, Any]
CATALOG = SchemaCatalog.load()
ROOT = WriteOptions(UserInfo("root", groups=("system:masters",)))
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
TOKEN_TYPE = "kubernetes.io/service-account-token"


def context(tmp_path: Path, legacy: bool = True) -> ControllerContext:
    (tmp_path / "ca.crt").write_text(CA)
    ensure_signing_key(tmp_path / "sa.key")
    store = Store(None)
    objects = Objects(store, ResourceRegistry(), CATALOG, Strategies(store, "10.96.0.0/24"), AdmissionChain())
    config = ApiServerConfig(
        cluster="c",
        state_dir=str(tmp_path),
        listen_host="127.0.0.1",
        listen_port=6443,
        advertise_host="localhost",
        service_cidr="10.96.0.0/24",
        pod_cidr="10.0.0.0/20",
        admin_token_file="",
        cert_file="",
        key_file="",
        ca_file=str(tmp_path / "ca.crt"),
        legacy_service_account_tokens=legacy,
    )
    return ControllerContext(objects, config)


async def create(ctx: ControllerContext, plural: str, namespace: str, body: JsonObject) -> None:
    await ctx.objects.create(ctx.target("", plural, namespace), body, ROOT)


def get(ctx: ControllerContext, plural: str, namespace: str, name: str) -> JsonObject | None:
    stored = ctx.get(("", plural), namespace, name)
    return stored.obj if stored is not None else None


def token_secrets(ctx: ControllerContext, namespace: str) -> list[JsonObject]:
    return [s.obj for s in ctx.list(("", "secrets"), namespace) if s.obj.get("type") == TOKEN_TYPE]


def decoded(secret: JsonObject, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


@pytest.fixture
async def ctx(tmp_path: Path) -> ControllerContext:
    ctx = context(tmp_path)
    await create(ctx, "namespaces", "", {"metadata": {"name": "team"}})
    return ctx


async def test_every_namespace_gets_its_defaults_back(ctx: ControllerContext) -> None:
    defaults = NamespaceDefaults(ctx)
    await defaults.prepare()
    await defaults.reconcile("team")
    assert get(ctx, "serviceaccounts", "team", "default") is not None
    root_ca = get(ctx, "configmaps", "team", "kube-root-ca.crt")
    assert root_ca is not None and root_ca["data"] == {"ca.crt": CA}
    ctx.objects.store.remove(("", "serviceaccounts"), "team", "default")
    changed = dict(root_ca, data={"ca.crt": "tampered"})
    await ctx.objects.update(ctx.target("", "configmaps", "team", "kube-root-ca.crt"), changed, ROOT)
    await defaults.reconcile("team")
    assert get(ctx, "serviceaccounts", "team", "default") is not None
    repaired = get(ctx, "configmaps", "team", "kube-root-ca.crt")
    assert repaired is not None and repaired["data"] == {"ca.crt": CA}
    await defaults.reconcile("missing")  # a namespace that is gone: nothing to do, no error


async def test_legacy_token_secret_per_service_account(ctx: ControllerContext, tmp_path: Path) -> None:
    await create(ctx, "serviceaccounts", "team", {"metadata": {"name": "reader"}})
    controller = TokenSecrets(ctx)
    await controller.prepare()
    await controller.reconcile(("sa", "team", "reader"))
    await controller.reconcile(("sa", "team", "reader"))  # once is enough
    (secret,) = token_secrets(ctx, "team")
    account = get(ctx, "serviceaccounts", "team", "reader")
    assert account is not None
    name = secret["metadata"]["name"]
    assert name.startswith("reader-token-") and len(name) == len("reader-token-") + 5
    assert account["secrets"] == [{"name": name}]
    assert secret["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "reader",
        "kubernetes.io/service-account.uid": account["metadata"]["uid"],
    }
    assert decoded(secret, "ca.crt") == CA and decoded(secret, "namespace") == "team"
    tokens = ServiceAccountTokens(load_signing_key(tmp_path / "sa.key"), lambda p, ns, n: get(ctx, p, ns, n))
    user = tokens.authenticate(decoded(secret, "token"))
    assert user is not None and user.name == "system:serviceaccount:team:reader"

    ctx.objects.store.remove(("", "secrets"), "team", name)
    await controller.reconcile(("unref", "team", "reader", name))
    account = get(ctx, "serviceaccounts", "team", "reader")
    assert account is not None and "secrets" not in account
    await controller.reconcile(("sa", "team", "reader"))
    (again,) = token_secrets(ctx, "team")
    assert again["metadata"]["name"] != name, "a new token Secret replaces the deleted one"

    ctx.objects.store.remove(("", "serviceaccounts"), "team", "reader")
    await controller.reconcile(("sa", "team", "reader"))
    assert token_secrets(ctx, "team") == [], "the tokens of a deleted account go with it"


async def test_switched_off_no_token_secrets(tmp_path: Path) -> None:
    ctx = context(tmp_path, legacy=False)
    await create(ctx, "namespaces", "", {"metadata": {"name": "team"}})
    await create(ctx, "serviceaccounts", "team", {"metadata": {"name": "reader"}})
    controller = TokenSecrets(ctx)
    await controller.prepare()
    await controller.reconcile(("sa", "team", "reader"))
    assert token_secrets(ctx, "team") == []
    account = get(ctx, "serviceaccounts", "team", "reader")
    assert account is not None and "secrets" not in account


@pytest.mark.parametrize("legacy", [True, False])
async def test_user_made_token_secret_is_filled(tmp_path: Path, legacy: bool) -> None:
    ctx = context(tmp_path, legacy)
    await create(ctx, "namespaces", "", {"metadata": {"name": "team"}})
    await create(ctx, "serviceaccounts", "team", {"metadata": {"name": "robot"}})
    annotations = {"kubernetes.io/service-account.name": "robot"}
    await create(
        ctx, "secrets", "team", {"metadata": {"name": "mine", "annotations": annotations}, "type": TOKEN_TYPE}
    )
    controller = TokenSecrets(ctx)
    await controller.prepare()
    await controller.reconcile(("secret", "team", "mine"))
    secret = get(ctx, "secrets", "team", "mine")
    account = get(ctx, "serviceaccounts", "team", "robot")
    assert secret is not None and account is not None
    assert (
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == account["metadata"]["uid"]
    )
    assert set(secret["data"]) == {"token", "ca.crt", "namespace"}
    token = decoded(secret, "token")
    await controller.reconcile(("secret", "team", "mine"))
    refreshed = get(ctx, "secrets", "team", "mine")
    assert refreshed is not None and decoded(refreshed, "token") == token, "a token is never replaced"


async def test_token_secret_of_a_recreated_account_is_deleted(ctx: ControllerContext) -> None:
    await create(ctx, "serviceaccounts", "team", {"metadata": {"name": "robot"}})
    annotations = {"kubernetes.io/service-account.name": "robot", "kubernetes.io/service-account.uid": "old"}
    await create(
        ctx,
        "secrets",
        "team",
        {"metadata": {"name": "stale", "annotations": annotations}, "type": TOKEN_TYPE},
    )
    controller = TokenSecrets(ctx)
    await controller.prepare()
    await controller.reconcile(("secret", "team", "stale"))
    assert get(ctx, "secrets", "team", "stale") is None
