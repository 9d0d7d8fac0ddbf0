"""MutatingWebhookConfiguration and ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1):
Kubernetes' defaults and validation when one is written, and the compiled `Webhook`s the admission plug-in
(`webhooks`) matches requests against.

Validation follows kube-apiserver's (`ValidateMutatingWebhookConfiguration`), with its field paths and
messages; the fields the published schema marks required are checked by the generic validation. CEL
`matchConditions` are refused: this server cannot evaluate them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from isthmus.local.apiserver.errors import (
    Cause,
    field_forbidden,
    field_invalid,
    field_required,
    field_unsupported,
)
from isthmus.local.apiserver.selectors import selector_from_label_selector
from isthmus.local.apiserver.validation import (
    LABEL_VALUE_MSG,
    dns1035_label,
    dns1123_subdomain,
    qualified_name,
)

JsonObject = dict[str, Any]
LabelPredicate = Callable[[Mapping[str, str]], bool]

GROUP = "admissionregistration.k8s.io"
MUTATING = (GROUP, "mutatingwebhookconfigurations")
VALIDATING = (GROUP, "validatingwebhookconfigurations")
REVIEW_VERSIONS = ("v1", "v1beta1")  # the AdmissionReview versions this server speaks, preferred first
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 30

OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
SCOPES = ["*", "Cluster", "Namespaced"]
FAILURE_POLICIES = ["Fail", "Ignore"]
MATCH_POLICIES = ["Equivalent", "Exact"]
SIDE_EFFECTS = ["None", "NoneOnDryRun"]
LEGACY_SIDE_EFFECTS = ["Unknown", "Some"]  # v1beta1's: still honoured in stored configurations
REINVOCATION_POLICIES = ["IfNeeded", "Never"]
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


# -- defaults -------------------------------------------------------------------------------------------------


def default_configuration(obj: JsonObject, mutating: bool) -> None:
    """Kubernetes' v1 defaults, set where the field is absent (as `kubectl get -o yaml` shows them)."""
    for hook in obj.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", DEFAULT_TIMEOUT)
        if mutating:
            hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")
        service = (hook.get("clientConfig") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", 443)


# -- validation -----------------------------------------------------------------------------------------------


def validate_configuration(obj: JsonObject, mutating: bool, stored: bool = False) -> list[Cause]:
    """What is wrong with a webhook configuration, as kube-apiserver words it (empty when it is valid).

    `stored`: judging a configuration already stored, which may keep v1beta1's side-effect classes."""
    causes: list[Cause] = []
    hooks = obj.get("webhooks") or []
    if not isinstance(hooks, list):
        return [field_invalid("webhooks", hooks, "must be a list")]
    names: set[str] = set()
    for i, hook in enumerate(hooks):
        path = f"webhooks[{i}]"
        if not isinstance(hook, dict):
            causes.append(field_invalid(path, hook, "must be an object"))
            continue
        causes += _validate_webhook(hook, mutating, stored, path)
        name = hook.get("name")
        if isinstance(name, str) and name:
            if name in names:
                causes.append(Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', f"{path}.name"))
            names.add(name)
    return causes


def _validate_webhook(hook: JsonObject, mutating: bool, stored: bool, path: str) -> list[Cause]:
    causes: list[Cause] = []
    name = hook.get("name")
    if isinstance(name, str) and name:
        problems = dns1123_subdomain(name)
        if problems:
            causes.append(field_invalid(f"{path}.name", name, ",".join(problems)))
        elif len(name.split(".")) < 3:
            causes.append(
                field_invalid(
                    f"{path}.name", name, "should be a domain with at least three segments separated by dots"
                )
            )
    for i, rule in enumerate(hook.get("rules") or []):
        causes += _validate_rule(rule, f"{path}.rules[{i}]")
    for key, supported in (
        ("failurePolicy", FAILURE_POLICIES),
        ("matchPolicy", MATCH_POLICIES),
        *((("reinvocationPolicy", REINVOCATION_POLICIES),) if mutating else ()),
    ):
        value = hook.get(key)
        if value is not None and value not in supported:
            causes.append(field_unsupported(f"{path}.{key}", value, supported))
    side_effects = hook.get("sideEffects")
    accepted = [*SIDE_EFFECTS, *LEGACY_SIDE_EFFECTS] if stored else SIDE_EFFECTS
    if side_effects not in (None, "") and side_effects not in accepted:
        causes.append(field_unsupported(f"{path}.sideEffects", side_effects, SIDE_EFFECTS))
    timeout = hook.get("timeoutSeconds")
    if timeout is not None and (not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT):
        causes.append(
            field_invalid(
                f"{path}.timeoutSeconds", timeout, "the timeout value must be between 1 and 30 seconds"
            )
        )
    for key in ("namespaceSelector", "objectSelector"):
        if hook.get(key) is not None:
            causes += validate_label_selector(hook[key], f"{path}.{key}")
    if hook.get("matchConditions"):
        causes.append(
            field_forbidden(
                f"{path}.matchConditions",
                "CEL match conditions are not evaluated by the local cluster: remove them and match with "
                "rules and selectors",
            )
        )
    causes += _validate_review_versions(
        hook.get("admissionReviewVersions"), f"{path}.admissionReviewVersions"
    )
    client = hook.get("clientConfig")
    if isinstance(client, dict):
        causes += _validate_client(client, f"{path}.clientConfig")
    return causes


def _validate_rule(rule: Any, path: str) -> list[Cause]:
    if not isinstance(rule, dict):
        return [field_invalid(path, rule, "must be an object")]
    causes: list[Cause] = []
    operations = rule.get("operations") or []
    if not operations:
        causes.append(field_required(f"{path}.operations"))
    if len(operations) > 1 and "*" in operations:
        causes.append(
            field_invalid(
                f"{path}.operations", operations, "if '*' is present, must not specify other operations"
            )
        )
    for i, operation in enumerate(operations):
        if operation not in OPERATIONS:
            causes.append(field_unsupported(f"{path}.operations[{i}]", operation, OPERATIONS))
    groups = rule.get("apiGroups") or []
    if not groups:
        causes.append(field_required(f"{path}.apiGroups"))
    if len(groups) > 1 and "*" in groups:
        causes.append(
            field_invalid(f"{path}.apiGroups", groups, "if '*' is present, must not specify other API groups")
        )
    versions = rule.get("apiVersions") or []
    if not versions:
        causes.append(field_required(f"{path}.apiVersions"))
    if len(versions) > 1 and "*" in versions:
        causes.append(
            field_invalid(
                f"{path}.apiVersions", versions, "if '*' is present, must not specify other API versions"
            )
        )
    for i, version in enumerate(versions):
        if not version:
            causes.append(field_required(f"{path}.apiVersions[{i}]"))
    causes += _validate_resources(rule.get("resources") or [], f"{path}.resources")
    scope = rule.get("scope")
    if scope is not None and scope not in SCOPES:
        causes.append(field_unsupported(f"{path}.scope", scope, SCOPES))
    return causes


def _validate_resources(resources: list[str], path: str) -> list[Cause]:
    causes: list[Cause] = []
    if not resources:
        causes.append(field_required(path))
    wildcard_subresources: set[str] = set()  # x/*
    wildcard_resources: set[str] = set()  # */x
    double_wildcard = single_wildcard = plain_resource = False
    for i, entry in enumerate(resources):
        if not entry:
            causes.append(field_required(f"{path}[{i}]"))
            continue
        double_wildcard |= entry == "*/*"
        single_wildcard |= entry == "*"
        resource, slash, sub = entry.partition("/")
        if not slash:
            plain_resource = entry != "*"
            continue
        if resource in wildcard_subresources:
            causes.append(
                field_invalid(
                    f"{path}[{i}]", entry, f"if '{resource}/*' is present, must not specify {entry}"
                )
            )
        if sub in wildcard_resources:
            causes.append(
                field_invalid(f"{path}[{i}]", entry, f"if '*/{sub}' is present, must not specify {entry}")
            )
        if sub == "*":
            wildcard_subresources.add(resource)
        if resource == "*":
            wildcard_resources.add(sub)
    if len(resources) > 1 and double_wildcard:
        causes.append(field_invalid(path, resources, "if '*/*' is present, must not specify other resources"))
    if single_wildcard and plain_resource:
        causes.append(
            field_invalid(
                path, resources, "if '*' is present, must not specify other resources without subresources"
            )
        )
    return causes


def _validate_review_versions(versions: Any, path: str) -> list[Cause]:
    if not versions:
        return []  # a required field: the generic validation reports it
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            causes.append(field_invalid(f"{path}[{i}]", version, "duplicate version"))
            continue
        seen.add(version)
        causes += [field_invalid(f"{path}[{i}]", version, problem) for problem in dns1035_label(version)]
    if not seen & set(REVIEW_VERSIONS):
        causes.append(field_invalid(path, list(versions), "must include at least one of v1, v1beta1"))
    return causes


def _validate_client(client: JsonObject, path: str) -> list[Cause]:
    url, service = client.get("url"), client.get("service")
    if (url is None) == (service is None):
        return [field_required(path, "exactly one of url or service is required")]
    causes: list[Cause] = []
    if _pem(client.get("caBundle")) is None:
        causes.append(
            field_invalid(
                f"{path}.caBundle", "...", "must be base64-encoded PEM certificates (illegal base64 data)"
            )
        )
    if url is not None:
        return causes + _validate_url(str(url), f"{path}.url")
    if not isinstance(service, dict):
        return [*causes, field_invalid(f"{path}.service", service, "must be an object")]
    port = service.get("port", 443)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        causes.append(
            field_invalid(
                f"{path}.service.port", port, "port is not valid: must be between 1 and 65535, inclusive"
            )
        )
    causes += _validate_service_path(service.get("path"), f"{path}.service.path")
    return causes


def _validate_url(url: str, path: str) -> list[Cause]:
    form = "; desired format: https://host[/path]"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return [field_required(path, f"url must be a valid URL: {exc}{form}")]
    causes: list[Cause] = []
    if parts.scheme != "https":
        causes.append(field_invalid(path, parts.scheme, "'https' is the only allowed URL scheme" + form))
    if not parts.hostname:
        causes.append(field_invalid(path, parts.netloc, "host must be specified" + form))
    if parts.username is not None:
        causes.append(
            field_invalid(
                path, parts.netloc.rpartition("@")[0], "user information is not permitted in the URL"
            )
        )
    if parts.fragment:
        causes.append(field_invalid(path, parts.fragment, "fragments are not permitted in the URL"))
    if parts.query:
        causes.append(field_invalid(path, parts.query, "query parameters are not permitted in the URL"))
    return causes


def _validate_service_path(value: Any, path: str) -> list[Cause]:
    if value is None or value in ("", "/"):
        return []
    text = str(value)
    if text == "//":
        return [field_invalid(path, text, "segment[0] may not be empty")]
    causes: list[Cause] = []
    if not text.startswith("/"):
        causes.append(field_invalid(path, text, "must start with a '/'"))
    steps = text[1:].removesuffix("/").split("/")
    for i, step in enumerate(steps):
        if not step:
            causes.append(field_invalid(path, text, f"segment[{i}] may not be empty"))
            continue
        causes += [
            field_invalid(path, text, f"segment[{i}]: {problem}") for problem in dns1123_subdomain(step)
        ]
    return causes


def validate_label_selector(selector: Any, path: str) -> list[Cause]:
    """`metav1validation.ValidateLabelSelector`: label keys and values, operators and their values."""
    if not isinstance(selector, dict):
        return [field_invalid(path, selector, "must be a label selector object")]
    causes: list[Cause] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        causes += [field_invalid(f"{path}.matchLabels", key, problem) for problem in qualified_name(key)]
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(field_invalid(f"{path}.matchLabels", value, LABEL_VALUE_MSG))
    for i, expression in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{i}]"
        if not isinstance(expression, dict):
            causes.append(field_invalid(where, expression, "must be a label selector requirement"))
            continue
        operator, values = expression.get("operator"), expression.get("values") or []
        if operator in ("In", "NotIn") and not values:
            causes.append(
                field_required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'")
            )
        elif operator in ("Exists", "DoesNotExist") and values:
            causes.append(
                field_forbidden(
                    f"{where}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                )
            )
        elif operator not in _SELECTOR_OPERATORS and operator is not None:
            causes.append(field_invalid(f"{where}.operator", operator, "not a valid selector operator"))
        key = expression.get("key")
        if isinstance(key, str) and key:
            causes += [field_invalid(f"{where}.key", key, problem) for problem in qualified_name(key)]
        for j, value in enumerate(values):
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                causes.append(field_invalid(f"{where}.values[{j}]", value, LABEL_VALUE_MSG))
    return causes


# -- the compiled form ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    operations: frozenset[str]
    groups: frozenset[str]
    versions: frozenset[str]
    resources: tuple[tuple[str, str], ...]  # (resource, subresource); "*" matches any
    scope: str

    def matches(
        self, operation: str, group: str, version: str, resource: str, subresource: str, cluster_scoped: bool
    ) -> bool:
        """`rules.Matcher.Matches` of Kubernetes: scope, operation, group, version and resource/subresource."""
        if (self.scope == "Namespaced" and cluster_scoped) or (
            self.scope == "Cluster" and not cluster_scoped
        ):
            return False
        if "*" not in self.operations and operation not in self.operations:
            return False
        if "*" not in self.groups and group not in self.groups:
            return False
        if "*" not in self.versions and version not in self.versions:
            return False
        return any(
            (res == "*" or res == resource) and (sub == "*" or sub == subresource)
            for res, sub in self.resources
        )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Where a webhook is served: a URL, or a Service (namespace, name, port, path); and the CA to trust."""

    url: str = ""
    service_namespace: str = ""
    service_name: str = ""
    service_port: int = 443
    service_path: str = ""
    ca_bundle: str = ""  # PEM; "" trusts the system's roots

    @property
    def server_name(self) -> str:
        """The name the webhook's certificate must carry."""
        if self.url:
            return urlsplit(self.url).hostname or ""
        return f"{self.service_name}.{self.service_namespace}.svc"


@dataclass(frozen=True, slots=True)
class Webhook:
    uid: str  # "<configuration>/<index>": the webhook's identity across reinvocation rounds
    name: str
    configuration: str
    mutating: bool
    rules: tuple[Rule, ...]
    match_policy: str
    namespace_selector: LabelPredicate | None  # None: every namespace
    object_selector: LabelPredicate | None  # None: every object
    failure_policy: str
    side_effects: str
    timeout: float
    reinvoke_if_needed: bool
    review_version: str  # the AdmissionReview version sent: the first of admissionReviewVersions known here
    client: ClientConfig
    problem: str = ""  # why a stored configuration cannot be used: calls fail with it (per failurePolicy)


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _object(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _pem(ca_bundle: Any) -> str | None:
    """The PEM text of a `caBundle` (base64 in JSON, as every []byte field); None when it is not base64."""
    if not ca_bundle:
        return ""
    try:
        return base64.b64decode(str(ca_bundle), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _selector(value: Any) -> LabelPredicate | None:
    if not isinstance(value, dict) or not (value.get("matchLabels") or value.get("matchExpressions")):
        return None  # absent or empty: everything
    try:
        return selector_from_label_selector(value)
    except (KeyError, TypeError, AttributeError):
        return lambda labels: False


def compile_configuration(obj: Mapping[str, Any], mutating: bool) -> tuple[Webhook, ...]:
    """The webhooks of a stored configuration, in order. A configuration this server's validation would
    refuse (stored by an older server, or written around the API) still compiles: its webhooks carry the
    problem, named by object and field, and fail when called."""
    config_name = str((obj.get("metadata") or {}).get("name", ""))
    kind = "MutatingWebhookConfiguration" if mutating else "ValidatingWebhookConfiguration"
    copy: JsonObject = {
        "webhooks": [dict(h) if isinstance(h, dict) else h for h in obj.get("webhooks") or []]
    }
    default_configuration(copy, mutating)
    problems: dict[str, str] = {}
    for cause in validate_configuration(copy, mutating, stored=True):
        index = cause.field.partition("]")[0] + "]"
        problems.setdefault(index, f'{kind} "{config_name}" is invalid: {cause.field}: {cause.message}')
    webhooks: list[Webhook] = []
    for i, hook in enumerate(copy["webhooks"]):
        if not isinstance(hook, dict):
            continue
        problem = problems.get(f"webhooks[{i}]", "")
        rules = []
        for rule in hook.get("rules") or []:
            if not isinstance(rule, dict):
                continue
            resources = tuple(
                (res, sub) for res, _, sub in (str(r).partition("/") for r in _strings(rule.get("resources")))
            )
            rules.append(
                Rule(
                    frozenset(_strings(rule.get("operations"))),
                    frozenset(_strings(rule.get("apiGroups"))),
                    frozenset(_strings(rule.get("apiVersions"))),
                    resources,
                    str(rule.get("scope") or "*"),
                )
            )
        client_json = _object(hook.get("clientConfig"))
        service = _object(client_json.get("service"))
        port = service.get("port")
        client = ClientConfig(
            url=str(client_json.get("url") or ""),
            service_namespace=str(service.get("namespace") or ""),
            service_name=str(service.get("name") or ""),
            service_port=port if isinstance(port, int) else 443,
            service_path=str(service.get("path") or ""),
            ca_bundle=_pem(client_json.get("caBundle")) or "",
        )
        if not problem and not client.url and not (client.service_name and client.service_namespace):
            problem = f'{kind} "{config_name}" is invalid: webhooks[{i}].clientConfig: Required value'
        versions = [v for v in _strings(hook.get("admissionReviewVersions")) if v in REVIEW_VERSIONS]
        timeout = hook.get("timeoutSeconds")
        webhooks.append(
            Webhook(
                uid=f"{config_name}/{i}",
                name=str(hook.get("name") or ""),
                configuration=config_name,
                mutating=mutating,
                rules=tuple(rules),
                match_policy=str(hook.get("matchPolicy") or "Equivalent"),
                namespace_selector=_selector(hook.get("namespaceSelector")),
                object_selector=_selector(hook.get("objectSelector")),
                failure_policy=str(hook.get("failurePolicy") or "Fail"),
                side_effects=str(hook.get("sideEffects") or ""),
                timeout=float(timeout)
                if isinstance(timeout, int) and 1 <= timeout <= MAX_TIMEOUT
                else DEFAULT_TIMEOUT,
                reinvoke_if_needed=hook.get("reinvocationPolicy") == "IfNeeded",
                review_version=versions[0] if versions else "",
                client=client,
                problem=problem,
            )
        )
    return tuple(webhooks)


def compile_all(objs: Iterable[Mapping[str, Any]], mutating: bool) -> tuple[Webhook, ...]:
    return tuple(hook for obj in objs for hook in compile_configuration(obj, mutating))
