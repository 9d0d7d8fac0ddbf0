"""What kube-controller-manager does for service accounts:

- `NamespaceDefaults`: every namespace has the ServiceAccount `default` (serviceaccount controller) and the
  ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA (root-ca-cert-publisher); both come back
  when deleted, and the ConfigMap's data when changed.
- `TokenSecrets` (the token controller): with `legacy_service_account_tokens` on, as before Kubernetes 1.24,
  each ServiceAccount gets a Secret `<sa>-token-<5 chars>` of type `kubernetes.io/service-account-token`
  (annotations naming the account and its uid; data `token`, `ca.crt`, `namespace`), listed in its
  `.secrets[]`. Whatever the switch, a token Secret a user creates with only the name annotation gets its
  token filled in; token Secrets of ServiceAccounts that are gone (or were recreated) are deleted, and a
  deleted token Secret leaves its ServiceAccount's `.secrets[]`.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

from isthmus.local.apiserver.clock import parse
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler, ResourceKey
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object
from isthmus.local.apiserver.tokens import (
    SA_NAME_ANNOTATION,
    SA_TOKEN_TYPE,
    SA_UID_ANNOTATION,
    ServiceAccountTokens,
    load_signing_key,
)

NAMESPACES = ("", "namespaces")
SERVICE_ACCOUNTS = ("", "serviceaccounts")
CONFIG_MAPS = ("", "configmaps")
SECRETS = ("", "secrets")
ROOT_CA = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as "
    "the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters."
)
_NAME_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what generateName draws from
# A token Secret whose ServiceAccount is missing is kept this long (the account may be created next).
ORPHAN_GRACE = 5.0


def read_ca(ctx: ControllerContext) -> str:
    try:
        return Path(ctx.config.ca_file).read_text()
    except OSError as exc:
        raise RuntimeError(f"the cluster CA {ctx.config.ca_file} cannot be read: {exc.strerror}") from None


def _namespace_open(ctx: ControllerContext, namespace: str) -> bool:
    stored = ctx.get(NAMESPACES, "", namespace)
    return stored is not None and not stored.obj["metadata"].get("deletionTimestamp")


class NamespaceDefaults(Reconciler):
    name = "namespace-defaults"
    watches = (NAMESPACES, SERVICE_ACCOUNTS, CONFIG_MAPS)
    manager = "kube-controller-manager"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self._ca = ""

    def keys_for(self, resource: ResourceKey, event: WatchEvent) -> Iterable[Hashable]:
        meta = event.obj["metadata"]
        if resource == NAMESPACES:
            return [meta["name"]]
        if resource == SERVICE_ACCOUNTS and meta["name"] == "default" and event.type == DELETED:
            return [meta["namespace"]]
        if resource == CONFIG_MAPS and meta["name"] == ROOT_CA:
            return [meta["namespace"]]
        return []

    def all_keys(self) -> Iterable[Hashable]:
        return [s.obj["metadata"]["name"] for s in self.ctx.list(NAMESPACES)]

    async def prepare(self) -> None:
        self._ca = read_ca(self.ctx)

    async def reconcile(self, key: Any) -> None:
        namespace: str = key
        ctx = self.ctx
        if not _namespace_open(ctx, namespace):
            return
        if ctx.get(SERVICE_ACCOUNTS, namespace, "default") is None:
            await ctx.objects.create(
                ctx.target(*SERVICE_ACCOUNTS, namespace),
                {"metadata": {"name": "default", "namespace": namespace}},
                ctx.options(self.manager),
            )
        data = {"ca.crt": self._ca}
        current = ctx.get(CONFIG_MAPS, namespace, ROOT_CA)
        if current is None:
            await ctx.objects.create(
                ctx.target(*CONFIG_MAPS, namespace),
                {
                    "metadata": {
                        "name": ROOT_CA,
                        "namespace": namespace,
                        "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION},
                    },
                    "data": data,
                },
                ctx.options(self.manager),
            )
        elif current.obj.get("data") != data or current.obj.get("binaryData"):
            obj = copy_object(current.obj)
            obj["data"] = data
            obj.pop("binaryData", None)
            await ctx.objects.update(
                ctx.target(*CONFIG_MAPS, namespace, ROOT_CA), obj, ctx.options(self.manager)
            )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _token_secret_of(secret: JsonObject, account: JsonObject) -> bool:
    """Whether a Secret is a token Secret of exactly this ServiceAccount (same name, and uid if it says)."""
    if secret.get("type") != SA_TOKEN_TYPE or secret["metadata"].get("deletionTimestamp"):
        return False
    annotations = secret["metadata"].get("annotations") or {}
    meta = account["metadata"]
    return annotations.get(SA_NAME_ANNOTATION) == meta["name"] and annotations.get(SA_UID_ANNOTATION) in (
        None,
        "",
        meta.get("uid"),
    )


class TokenSecrets(Reconciler):
    name = "serviceaccount-tokens"
    watches = (SERVICE_ACCOUNTS, SECRETS)
    manager = "kube-controller-manager"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self._ca = ""
        self._tokens: ServiceAccountTokens | None = None

    async def prepare(self) -> None:
        self._ca = read_ca(self.ctx)

        def lookup(plural: str, namespace: str, name: str) -> JsonObject | None:
            stored = self.ctx.get(("", plural), namespace, name)
            return stored.obj if stored is not None else None

        key = load_signing_key(self.ctx.config.service_account_key_path)
        self._tokens = ServiceAccountTokens(key, lookup)

    @property
    def tokens(self) -> ServiceAccountTokens:
        if self._tokens is None:
            raise RuntimeError("the token controller signs tokens only once prepared")
        return self._tokens

    def keys_for(self, resource: ResourceKey, event: WatchEvent) -> Iterable[Hashable]:
        meta = event.obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        if resource == SERVICE_ACCOUNTS:
            return [("sa", namespace, name)]
        if event.obj.get("type") != SA_TOKEN_TYPE:
            return []
        keys: list[Hashable] = [("secret", namespace, name)]
        account = (meta.get("annotations") or {}).get(SA_NAME_ANNOTATION)
        if event.type == DELETED and account:
            keys.append(("unref", namespace, account, name))
        return keys

    def all_keys(self) -> Iterable[Hashable]:
        keys: list[Hashable] = []
        for stored in self.ctx.list(SERVICE_ACCOUNTS):
            meta = stored.obj["metadata"]
            keys.append(("sa", meta["namespace"], meta["name"]))
        for stored in self.ctx.list(SECRETS):
            if stored.obj.get("type") == SA_TOKEN_TYPE:
                meta = stored.obj["metadata"]
                keys.append(("secret", meta["namespace"], meta["name"]))
        return keys

    async def reconcile(self, key: Any) -> None:
        if key[0] == "sa":
            await self._service_account(key[1], key[2])
        elif key[0] == "secret":
            await self._secret(key[1], key[2])
        else:
            await self._unreference(key[1], key[2], key[3])

    async def _delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self.ctx.objects.delete(
                self.ctx.target(*SECRETS, namespace, name), {}, self.ctx.options(self.manager)
            )
        except StatusError as exc:
            if exc.code != 404:
                raise

    async def _service_account(self, namespace: str, name: str) -> None:
        ctx = self.ctx
        current = ctx.get(SERVICE_ACCOUNTS, namespace, name)
        if current is None:
            for stored in ctx.list(SECRETS, namespace):
                secret = stored.obj
                annotations = secret["metadata"].get("annotations") or {}
                if secret.get("type") == SA_TOKEN_TYPE and annotations.get(SA_NAME_ANNOTATION) == name:
                    await self._delete_secret(namespace, secret["metadata"]["name"])
            return
        account = current.obj
        if (
            not ctx.config.legacy_service_account_tokens
            or account["metadata"].get("deletionTimestamp")
            or not _namespace_open(ctx, namespace)
        ):
            return
        references = [r for r in account.get("secrets") or [] if isinstance(r, dict)]
        for ref in references:
            referenced = ctx.get(SECRETS, namespace, str(ref.get("name", "")))
            if referenced is not None and _token_secret_of(referenced.obj, account):
                return
        base = f"{name}-token-"[:58]
        secret_name = base + "".join(secrets.choice(_NAME_SUFFIX_CHARS) for _ in range(5))
        await ctx.objects.create(
            ctx.target(*SECRETS, namespace),
            {
                "metadata": {
                    "name": secret_name,
                    "namespace": namespace,
                    "annotations": {
                        SA_NAME_ANNOTATION: name,
                        SA_UID_ANNOTATION: account["metadata"]["uid"],
                    },
                },
                "type": SA_TOKEN_TYPE,
                "data": {
                    "token": _b64(self.tokens.issue_legacy(account, secret_name)),
                    "ca.crt": _b64(self._ca),
                    "namespace": _b64(namespace),
                },
            },
            ctx.options(self.manager),
        )
        obj = copy_object(account)
        obj["secrets"] = [*references, {"name": secret_name}]
        try:
            await ctx.objects.update(
                ctx.target(*SERVICE_ACCOUNTS, namespace, name), obj, ctx.options(self.manager)
            )
        except StatusError:
            await self._delete_secret(namespace, secret_name)  # as Kubernetes does; the retry makes another
            raise

    async def _secret(self, namespace: str, name: str) -> None:
        ctx = self.ctx
        current = ctx.get(SECRETS, namespace, name)
        if current is None or current.obj.get("type") != SA_TOKEN_TYPE:
            return
        secret = current.obj
        meta = secret["metadata"]
        if meta.get("deletionTimestamp"):
            return
        annotations = meta.get("annotations") or {}
        account_name = annotations.get(SA_NAME_ANNOTATION)
        if not account_name:
            return
        account = ctx.get(SERVICE_ACCOUNTS, namespace, account_name)
        uid = annotations.get(SA_UID_ANNOTATION)
        if account is None or (uid and uid != account.obj["metadata"].get("uid")):
            created = parse(meta["creationTimestamp"]).timestamp()
            if account is None and time.time() - created < ORPHAN_GRACE:
                raise StatusError(
                    503, "", f"secret {namespace}/{name}: waiting for serviceaccount {account_name}"
                )
            await self._delete_secret(namespace, name)
            return
        data = dict(secret.get("data") or {})
        wanted = {"ca.crt": _b64(self._ca), "namespace": _b64(namespace)}
        if not data.get("token"):
            wanted["token"] = _b64(self.tokens.issue_legacy(account.obj, name))
        if all(data.get(k) == v for k, v in wanted.items()) and uid:
            return
        obj = copy_object(secret)
        obj["data"] = {**data, **wanted}
        obj["metadata"].setdefault("annotations", {})[SA_UID_ANNOTATION] = account.obj["metadata"]["uid"]
        await ctx.objects.update(ctx.target(*SECRETS, namespace, name), obj, ctx.options(self.manager))

    async def _unreference(self, namespace: str, account_name: str, secret_name: str) -> None:
        ctx = self.ctx
        current = ctx.get(SERVICE_ACCOUNTS, namespace, account_name)
        if current is None or ctx.get(SECRETS, namespace, secret_name) is not None:
            return
        references = current.obj.get("secrets") or []
        kept = [r for r in references if not (isinstance(r, dict) and r.get("name") == secret_name)]
        if len(kept) == len(references):
            return
        obj = copy_object(current.obj)
        if kept:
            obj["secrets"] = kept
        else:
            obj.pop("secrets", None)
        await ctx.objects.update(
            ctx.target(*SERVICE_ACCOUNTS, namespace, account_name), obj, ctx.options(self.manager)
        )
