"""The identity endpoints of the API server: TokenReview, TokenRequest (`serviceaccounts/NAME/token`),
SelfSubjectRulesReview (`kubectl auth can-i --list`) and the service-account issuer's OIDC discovery
(`/.well-known/openid-configuration`, `/openid/v1/jwks`), answered as kube-apiserver answers them; and the
admission checks that a `kubernetes.io/service-account-token` Secret names its ServiceAccount and that RBAC
objects grant no more than their author holds.

Bodies are JSON or Kubernetes protobuf (kubectl's typed clients send protobuf). Reviews and token requests
are computed, never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from isthmus.local.apiserver.admission import AdmissionRequest
from isthmus.local.apiserver.auth import AUTHENTICATED, SYSTEM_MASTERS, AuthChain, UserInfo
from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.errors import (
    bad_request,
    conflict,
    field_invalid,
    field_required,
    invalid,
    method_not_allowed,
    not_found,
)
from isthmus.local.apiserver.handlers import ApiHandlers, RequestInfo, json_response
from isthmus.local.apiserver.objects import Objects
from isthmus.local.apiserver.protobuf.decode import PROTOBUF_CONTENT_TYPE, decode_object
from isthmus.local.apiserver.rbac import EscalationCheck, RbacAuthorizer, Rule
from isthmus.local.apiserver.tokens import (
    DEFAULT_EXPIRATION,
    MAX_EXPIRATION,
    MIN_EXPIRATION,
    SA_NAME_ANNOTATION,
    SA_TOKEN_TYPE,
    ServiceAccountTokens,
    TokenReviewResult,
)

JsonObject = dict[str, Any]
AUTHENTICATION = "authentication.k8s.io"
AUTHORIZATION = "authorization.k8s.io"
OPENID_CONFIGURATION = "/.well-known/openid-configuration"
JWKS = "/openid/v1/jwks"
SUPERUSER_RULES = (Rule(["*"], ["*"], ["*"]), Rule(["*"], non_resource_urls=["*"]))


async def read_object(request: web.Request, kind: str) -> JsonObject:
    """A request's body as a JSON object, decoded from JSON or Kubernetes protobuf."""
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    raw = await request.read()
    if content_type == PROTOBUF_CONTENT_TYPE:
        body: Any = decode_object(raw)
    else:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_request(
                f"the object provided is unrecognized (must be of type {kind}): couldn't get version/kind; "
                f"json parse error: {exc}"
            ) from None
    if not isinstance(body, dict):
        raise bad_request(f"the object provided is unrecognized (must be of type {kind}): not a JSON object")
    if body.get("kind") not in (None, "", kind):
        raise bad_request(f"the kind in the data ({body['kind']}) does not match the expected kind ({kind})")
    spec = body.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise bad_request(f"{kind}.spec must be an object, not {type(spec).__name__}")
    return body


def _user_json(user: UserInfo) -> JsonObject:
    out: JsonObject = {"username": user.name}
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


class Identity:
    """Handlers for TokenReview, TokenRequest, SelfSubjectRulesReview and the issuer's discovery documents."""

    def __init__(
        self,
        auth: AuthChain,
        tokens: ServiceAccountTokens,
        rbac: RbacAuthorizer,
        objects: Objects,
        jwks_uri: str,
    ) -> None:
        self.auth = auth
        self.tokens = tokens
        self.rbac = rbac
        self.objects = objects
        self.jwks_uri = jwks_uri

    def install(self, handlers: ApiHandlers) -> None:
        handlers.virtual_handlers[(AUTHENTICATION, "tokenreviews")] = self.token_review
        handlers.virtual_handlers[(AUTHORIZATION, "selfsubjectrulesreviews")] = self.rules_review
        handlers.subresource_handlers[("", "serviceaccounts", "token")] = self.token_request
        handlers.non_resource_handlers[OPENID_CONFIGURATION] = self.openid_configuration
        handlers.non_resource_handlers[JWKS] = self.jwks
        self.objects.admission.plugins.append(TokenSecretAdmission())
        self.objects.admission.plugins.append(EscalationCheck(self.rbac, self.auth.authorize))

    def _get(self, plural: str, namespace: str, name: str) -> JsonObject | None:
        stored = self.objects.store.get(("", plural), namespace, name)
        return stored.obj if stored is not None else None

    # -- TokenReview --------------------------------------------------------------------------------------

    def review(self, token: str, audiences: Sequence[str]) -> TokenReviewResult:
        """What the API server's authenticators make of a token for `audiences` (default: its own)."""
        result = self.tokens.review(token, audiences or None)
        if result is not None:
            return result
        # Other tokens (the admin token) are for the API server only, whatever audience is asked.
        requested = tuple(audiences) or self.tokens.api_audiences
        matched = tuple(a for a in self.tokens.api_audiences if a in requested)
        for authenticator in self.auth.authenticators:
            if authenticator is self.tokens:
                continue
            user = authenticator.authenticate(token)
            if user is not None:
                if not matched:
                    return TokenReviewResult(None)
                groups = user.groups if AUTHENTICATED in user.groups else (*user.groups, AUTHENTICATED)
                return TokenReviewResult(UserInfo(user.name, user.uid, groups, user.extra), matched)
        return TokenReviewResult(None, error="invalid bearer token")

    async def token_review(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        body = await read_object(request, "TokenReview")
        spec = body.get("spec") or {}
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise bad_request("token is required for TokenReview in authentication")
        audiences = [str(a) for a in spec.get("audiences") or [] if a]
        result = self.review(token, audiences)
        status: JsonObject = {"user": {}}
        if result.user is not None:
            status = {
                "authenticated": True,
                "user": _user_json(result.user),
                "audiences": list(result.audiences),
            }
        if result.error:
            status["error"] = result.error
        return json_response(
            {
                "kind": "TokenReview",
                "apiVersion": f"{AUTHENTICATION}/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": status,
            },
            201,
        )

    # -- TokenRequest -------------------------------------------------------------------------------------

    async def token_request(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        if info.verb != "create" or info.subpath:
            raise method_not_allowed()
        body = await read_object(request, "TokenRequest")
        meta = body.get("metadata") or {}
        for field, value in (("name", info.name), ("namespace", info.namespace)):
            if meta.get(field) and meta[field] != value:
                cause = field_invalid(
                    f"metadata.{field}", meta[field], f"must match the service account {field} if specified"
                )
                raise invalid("TokenRequest", AUTHENTICATION, info.name, [cause])
        account = self._get("serviceaccounts", info.namespace, info.name)
        if account is None:
            raise not_found("serviceaccounts", "", info.name)
        spec = body.get("spec") or {}
        audiences = [str(a) for a in spec.get("audiences") or [] if a] or list(self.tokens.api_audiences)
        expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
        if isinstance(expiration, bool) or not isinstance(expiration, int):
            raise invalid(
                "TokenRequest",
                AUTHENTICATION,
                "",
                [field_invalid("spec.expirationSeconds", expiration, "must be an integer number of seconds")],
            )
        causes = []
        if expiration < MIN_EXPIRATION:
            causes.append(
                field_invalid(
                    "spec.expirationSeconds", expiration, "may not specify a duration less than 10 minutes"
                )
            )
        if expiration > MAX_EXPIRATION:
            causes.append(
                field_invalid(
                    "spec.expirationSeconds",
                    expiration,
                    "may not specify a duration larger than 2^32 seconds",
                )
            )
        if causes:
            raise invalid("TokenRequest", AUTHENTICATION, "", causes)
        bound: JsonObject | None = spec.get("boundObjectRef")
        pod = secret = node = None
        if bound is not None:
            pod, secret, node = self._bound_object(info, bound)
        token, expires = self.tokens.issue(account, audiences, expiration, pod=pod, secret=secret, node=node)
        out_spec: JsonObject = {"audiences": audiences, "expirationSeconds": expiration}
        if bound is not None:
            out_spec["boundObjectRef"] = bound
        return json_response(
            {
                "kind": "TokenRequest",
                "apiVersion": f"{AUTHENTICATION}/v1",
                "metadata": {
                    "name": info.name,
                    "namespace": info.namespace,
                    "creationTimestamp": timestamp(),
                },
                "spec": out_spec,
                "status": {
                    "token": token,
                    "expirationTimestamp": timestamp(datetime.fromtimestamp(expires, UTC)),
                },
            },
            201,
        )

    def _bound_object(
        self, info: RequestInfo, ref: JsonObject
    ) -> tuple[JsonObject | None, JsonObject | None, JsonObject | None]:
        """The (pod, secret, node) a token is to be bound to, checked as kube-apiserver checks them."""
        if not isinstance(ref, dict):
            raise bad_request("spec.boundObjectRef must be an object")
        api_version, kind = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
        name, uid = str(ref.get("name", "")), str(ref.get("uid", ""))
        group, _, version = api_version.rpartition("/")
        pod = secret = node = None
        if group == "" and kind == "Pod":
            pod = self._get("pods", info.namespace, name)
            if pod is None:
                raise not_found("pods", "", name)
            running_as = (pod.get("spec") or {}).get("serviceAccountName", "")
            if running_as != info.name:
                raise bad_request(
                    f'cannot bind token for serviceaccount "{info.name}" to pod running with serviceaccount '
                    f'"{running_as}"'
                )
            node_name = (pod.get("spec") or {}).get("nodeName")
            node = self._get("nodes", "", node_name) if node_name else None
            actual = pod["metadata"].get("uid", "")
        elif group == "" and kind == "Secret":
            secret = self._get("secrets", info.namespace, name)
            if secret is None:
                raise not_found("secrets", "", name)
            actual = secret["metadata"].get("uid", "")
        elif group == "" and kind == "Node":
            node = self._get("nodes", "", name)
            if node is None:
                raise not_found("nodes", "", name)
            actual = node["metadata"].get("uid", "")
        else:
            raise bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
        if uid and uid != actual:
            raise conflict(
                kind,
                group,
                name,
                f"the UID in the bound object reference ({uid}) does not match the UID in record. The object "
                "might have been deleted and then recreated",
            )
        return pod, secret, node

    # -- SelfSubjectRulesReview ---------------------------------------------------------------------------

    async def rules_review(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        body = await read_object(request, "SelfSubjectRulesReview")
        spec = body.get("spec") or {}
        namespace = spec.get("namespace")
        if not isinstance(namespace, str) or not namespace:
            raise bad_request("no namespace on request")
        rules: list[Rule] = list(SUPERUSER_RULES) if SYSTEM_MASTERS in user.groups else []
        resolved = self.rbac.resolve(user, namespace)
        rules += resolved.rules()
        resource_rules, non_resource_rules = [], []
        for rule in rules:
            if rule.resources:
                out: JsonObject = {"verbs": list(rule.verbs)}
                for key, values in (
                    ("apiGroups", rule.api_groups),
                    ("resources", rule.resources),
                    ("resourceNames", rule.resource_names),
                ):
                    if values:
                        out[key] = list(values)
                resource_rules.append(out)
            if rule.non_resource_urls:
                non_resource_rules.append(
                    {"verbs": list(rule.verbs), "nonResourceURLs": list(rule.non_resource_urls)}
                )
        status: JsonObject = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": False,
        }
        if resolved.errors:
            status["evaluationError"] = ", ".join(resolved.errors)
        return json_response(
            {
                "kind": "SelfSubjectRulesReview",
                "apiVersion": f"{AUTHORIZATION}/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": status,
            },
            201,
        )

    # -- OIDC discovery -----------------------------------------------------------------------------------

    def openid_configuration(self, request: web.Request) -> web.StreamResponse:
        response = json_response(self.tokens.openid_configuration(self.jwks_uri))
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    def jwks(self, request: web.Request) -> web.StreamResponse:
        response = json_response(self.tokens.jwks(), content_type="application/jwk-set+json")
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


class TokenSecretAdmission:
    """A `kubernetes.io/service-account-token` Secret must name its ServiceAccount (Kubernetes' ValidateSecret);
    its token, uid annotation, ca.crt and namespace are filled in by the token controller."""

    async def mutate(self, request: AdmissionRequest) -> list[str]:
        return []

    async def validate(self, request: AdmissionRequest) -> list[str]:
        obj = request.obj
        if request.rt.key != ("", "secrets") or obj is None or obj.get("type") != SA_TOKEN_TYPE:
            return []
        if not (obj["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION):
            raise invalid(
                "Secret", "", request.name, [field_required(f"metadata.annotations[{SA_NAME_ANNOTATION}]")]
            )
        return []
