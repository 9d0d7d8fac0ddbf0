"""RBAC authorization (rbac.authorization.k8s.io/v1) as kube-apiserver evaluates it.

A request is allowed when a rule of a role bound to its user allows it: ClusterRoleBindings grant their
ClusterRole's rules everywhere, RoleBindings grant their Role's (or ClusterRole's) rules in their namespace.
Subjects are Users, Groups and ServiceAccounts (`system:serviceaccount:NS:NAME`; a RoleBinding's subject
without a namespace means the binding's). A rule matches on verbs, API groups, resources (`*`, `pods/log`,
`*/scale`) and resourceNames, or on non-resource URLs (`/healthz`, `/apis/*`). RBAC never denies: without a
matching rule it has no opinion, and its reason names the roles it could not find (`RBAC: role... not found`).
`EscalationCheck` refuses roles and bindings that grant more than their author holds, as Kubernetes does.

Contract: runs on the server's event loop, on every request. Bindings are indexed by subject; the index and
the rules resolved per (user, groups, namespace) are rebuilt lazily after any change to a Role, ClusterRole or
binding (the store tells through a watch). Objects are read straight from the store, never copied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isthmus.local.apiserver.admission import AdmissionRequest
from isthmus.local.apiserver.auth import SYSTEM_MASTERS, Attributes, Decision, UserInfo
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import Store
from isthmus.local.apiserver.tokens import go_strings, service_account_username

JsonObject = dict[str, Any]
GROUP = "rbac.authorization.k8s.io"
ROLES = (GROUP, "roles")
CLUSTER_ROLES = (GROUP, "clusterroles")
ROLE_BINDINGS = (GROUP, "rolebindings")
CLUSTER_ROLE_BINDINGS = (GROUP, "clusterrolebindings")
RBAC_RESOURCES = (ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS)
ALL = "*"
_CACHE_LIMIT = 10_000


def _strings(rule: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = rule.get(key)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


class Rule:
    """One PolicyRule, prepared for matching."""

    __slots__ = (
        "_all_groups",
        "_all_resources",
        "_all_verbs",
        "_group_set",
        "_name_set",
        "_resource_set",
        "_verb_set",
        "api_groups",
        "non_resource_urls",
        "resource_names",
        "resources",
        "verbs",
    )

    def __init__(
        self,
        verbs: Sequence[str],
        api_groups: Sequence[str] = (),
        resources: Sequence[str] = (),
        resource_names: Sequence[str] = (),
        non_resource_urls: Sequence[str] = (),
    ) -> None:
        self.verbs = tuple(verbs)
        self.api_groups = tuple(api_groups)
        self.resources = tuple(resources)
        self.resource_names = tuple(resource_names)
        self.non_resource_urls = tuple(non_resource_urls)
        self._verb_set = frozenset(self.verbs)
        self._group_set = frozenset(self.api_groups)
        self._resource_set = frozenset(self.resources)
        self._name_set = frozenset(self.resource_names)
        self._all_verbs = ALL in self._verb_set
        self._all_groups = ALL in self._group_set
        self._all_resources = ALL in self._resource_set

    @classmethod
    def from_json(cls, rule: Mapping[str, Any]) -> Rule:
        return cls(
            _strings(rule, "verbs"),
            _strings(rule, "apiGroups"),
            _strings(rule, "resources"),
            _strings(rule, "resourceNames"),
            _strings(rule, "nonResourceURLs"),
        )

    def to_json(self) -> JsonObject:
        """The PolicyRule's JSON (empty lists left out, as Kubernetes writes them)."""
        out: JsonObject = {"verbs": list(self.verbs)}
        for key, values in (
            ("apiGroups", self.api_groups),
            ("resources", self.resources),
            ("resourceNames", self.resource_names),
            ("nonResourceURLs", self.non_resource_urls),
        ):
            if values:
                out[key] = list(values)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Rule({self.to_json()})"

    def _key(self) -> tuple[tuple[str, ...], ...]:
        return (self.verbs, self.api_groups, self.resources, self.resource_names, self.non_resource_urls)

    def allows(self, attrs: Attributes) -> bool:
        """Kubernetes' RuleAllows: verbs, then groups, resources and names, or non-resource URLs."""
        if not (self._all_verbs or attrs.verb in self._verb_set):
            return False
        if attrs.is_resource_request:
            if not (self._all_groups or attrs.api_group in self._group_set):
                return False
            resources = self._resource_set
            if not self._all_resources:
                if attrs.subresource:
                    combined = f"{attrs.resource}/{attrs.subresource}"
                    if combined not in resources and f"*/{attrs.subresource}" not in resources:
                        return False
                elif attrs.resource not in resources:
                    return False
            return not self._name_set or attrs.name in self._name_set
        path = attrs.path
        for url in self.non_resource_urls:
            if url in (ALL, path) or (url.endswith("*") and path.startswith(url.rstrip("*"))):
                return True
        return False


@dataclass(frozen=True, slots=True)
class _Binding:
    """One subject of one binding: which role it grants, and how to describe the grant."""

    uid: str  # the binding's identity (one binding may name a user several ways)
    role_kind: str  # Role or ClusterRole
    role_name: str
    namespace: str  # the binding's namespace ("" for ClusterRoleBindings)
    describe: str  # `ClusterRoleBinding "x" of ClusterRole "y" to User "z"`


@dataclass(frozen=True, slots=True)
class Resolved:
    """Everything one user may do in one namespace: (description, rules) per binding, and lookup errors."""

    grants: tuple[tuple[str, tuple[Rule, ...]], ...]
    errors: tuple[str, ...]

    def rules(self) -> list[Rule]:
        return [rule for _, rules in self.grants for rule in rules]


def _describe_subject(subject: Mapping[str, Any], namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        return f'{kind} "{name}/{subject.get("namespace") or namespace}"'
    return f'{kind} "{name}"'


def subject_key(subject: Mapping[str, Any], namespace: str) -> tuple[str, str] | None:
    """The index key a subject matches users by: ("user", name) or ("group", name); None if it matches
    nobody (a ServiceAccount without a namespace in a ClusterRoleBinding, an unknown kind)."""
    kind, name = subject.get("kind"), subject.get("name")
    if not isinstance(name, str) or not name:
        return None
    if kind == "User":
        return ("user", name)
    if kind == "Group":
        return ("group", name)
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return ("user", service_account_username(str(sa_namespace), name)) if sa_namespace else None
    return None


def _aggregate(errors: Sequence[str]) -> str:
    """Go's utilerrors aggregate message: one error as is, several as `[a, b]`."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


class RbacAuthorizer:
    """The RBAC authorizer of one cluster (an `Authorizer`, see auth.py), also the rule resolver behind
    SelfSubjectRulesReview."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._dirty = True
        self._cluster_roles: dict[str, tuple[Rule, ...]] = {}
        self._roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self._cluster_bindings: dict[tuple[str, str], list[_Binding]] = {}
        self._role_bindings: dict[tuple[str, tuple[str, str]], list[_Binding]] = {}
        self._resolved: dict[tuple[str, tuple[str, ...], str], Resolved] = {}
        for resource in RBAC_RESOURCES:
            # A watch whose filter never lets anything through: it only tells that something changed.
            store.watch(resource, store.rv, self._changed)

    def _changed(self, obj: JsonObject) -> bool:
        self._dirty = True
        return False

    def _rebuild(self) -> None:
        store = self.store
        self._cluster_roles = {
            s.obj["metadata"]["name"]: _rules(s.obj) for s in store.iter_objects(CLUSTER_ROLES)
        }
        self._roles = {
            (s.obj["metadata"]["namespace"], s.obj["metadata"]["name"]): _rules(s.obj)
            for s in store.iter_objects(ROLES)
        }
        cluster_bindings: dict[tuple[str, str], list[_Binding]] = {}
        for stored in store.iter_objects(CLUSTER_ROLE_BINDINGS):
            for key, binding in _bindings(stored.obj, ""):
                cluster_bindings.setdefault(key, []).append(binding)
        role_bindings: dict[tuple[str, tuple[str, str]], list[_Binding]] = {}
        for stored in store.iter_objects(ROLE_BINDINGS):
            namespace = stored.obj["metadata"]["namespace"]
            for key, binding in _bindings(stored.obj, namespace):
                role_bindings.setdefault((namespace, key), []).append(binding)
        self._cluster_bindings, self._role_bindings = cluster_bindings, role_bindings
        self._resolved = {}
        self._dirty = False

    def resolve(self, user: UserInfo, namespace: str) -> Resolved:
        """The grants of a user in a namespace ("" for cluster-wide only), ClusterRoleBindings first."""
        if self._dirty:
            self._rebuild()
        cache_key = (user.name, user.groups, namespace)
        found = self._resolved.get(cache_key)
        if found is not None:
            return found
        keys = [("user", user.name), *(("group", g) for g in user.groups)]
        matched: dict[str, _Binding] = {}
        for key in keys:
            for binding in self._cluster_bindings.get(key, ()):
                matched.setdefault(binding.uid, binding)
        if namespace:
            for key in keys:
                for binding in self._role_bindings.get((namespace, key), ()):
                    matched.setdefault(binding.uid, binding)
        grants: list[tuple[str, tuple[Rule, ...]]] = []
        errors: list[str] = []
        for binding in matched.values():
            if binding.role_kind == "ClusterRole":
                rules = self._cluster_roles.get(binding.role_name)
                missing = f'clusterrole.{GROUP} "{binding.role_name}" not found'
            elif binding.role_kind == "Role" and binding.namespace:
                rules = self._roles.get((binding.namespace, binding.role_name))
                missing = f'role.{GROUP} "{binding.role_name}" not found'
            else:
                rules, missing = None, f'unsupported role reference kind: "{binding.role_kind}"'
            if rules is None:
                errors.append(missing)
            else:
                grants.append((binding.describe, rules))
        resolved = Resolved(tuple(grants), tuple(errors))
        if len(self._resolved) >= _CACHE_LIMIT:
            self._resolved.clear()
        self._resolved[cache_key] = resolved
        return resolved

    def authorize(self, attrs: Attributes) -> tuple[Decision, str]:
        resolved = self.resolve(attrs.user, attrs.namespace)
        for describe, rules in resolved.grants:
            for rule in rules:
                if rule.allows(attrs):
                    return Decision.ALLOW, f"RBAC: allowed by {describe}"
        return Decision.NO_OPINION, ("RBAC: " + _aggregate(resolved.errors)) if resolved.errors else ""


def _rules(obj: JsonObject) -> tuple[Rule, ...]:
    return tuple(Rule.from_json(r) for r in obj.get("rules") or () if isinstance(r, dict))


def _bindings(obj: JsonObject, namespace: str) -> Iterable[tuple[tuple[str, str], _Binding]]:
    meta = obj["metadata"]
    ref = obj.get("roleRef") or {}
    role_kind, role_name = str(ref.get("kind", "")), str(ref.get("name", ""))
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    name = f"{meta['name']}/{namespace}" if namespace else meta["name"]
    for subject in obj.get("subjects") or ():
        if not isinstance(subject, dict):
            continue
        key = subject_key(subject, namespace)
        if key is None:
            continue
        describe = f'{kind} "{name}" of {role_kind} "{role_name}" to {_describe_subject(subject, namespace)}'
        yield key, _Binding(meta.get("uid", name), role_kind, role_name, namespace, describe)


# --- escalation ---------------------------------------------------------------------------------------


def breakdown(rule: Rule) -> list[Rule]:
    """A rule as one rule per (group, resource, verb[, name]) and per (URL, verb): Kubernetes' BreakdownRule."""
    atoms = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    atoms += [Rule([verb], [group], [resource], [name]) for name in rule.resource_names]
                else:
                    atoms.append(Rule([verb], [group], [resource]))
    for url in rule.non_resource_urls:
        atoms += [Rule([verb], non_resource_urls=[url]) for verb in rule.verbs]
    return atoms


def _resource_covers(owned: Sequence[str], requested: Sequence[str]) -> bool:
    if ALL in owned:
        return True
    for resource in requested:
        if resource in owned:
            continue
        if "/" in resource and f"*/{resource.split('/', 1)[1]}" in owned:
            continue
        return False
    return True


def _url_covers(owned: Sequence[str], requested: Sequence[str]) -> bool:
    return all(
        any(o == url or (o.endswith("*") and url.startswith(o.rstrip("*"))) for o in owned)
        for url in requested
    )


def rule_covers(owner: Rule, atom: Rule) -> bool:
    """Whether `owner` grants all of `atom` (Kubernetes' ruleCovers: wildcards cover, names narrow)."""
    if not (ALL in owner.verbs or all(v in owner.verbs for v in atom.verbs)):
        return False
    if not (ALL in owner.api_groups or all(g in owner.api_groups for g in atom.api_groups)):
        return False
    if not _resource_covers(owner.resources, atom.resources):
        return False
    if not _url_covers(owner.non_resource_urls, atom.non_resource_urls):
        return False
    if not atom.resource_names:
        return not owner.resource_names
    return not owner.resource_names or all(n in owner.resource_names for n in atom.resource_names)


def uncovered(owner: Sequence[Rule], requested: Iterable[Rule]) -> list[Rule]:
    """The atoms of `requested` that no rule of `owner` grants (empty: the owner holds all of them)."""
    return [
        atom for rule in requested for atom in breakdown(rule) if not any(rule_covers(o, atom) for o in owner)
    ]


def compact_string(rule: Rule) -> str:
    """A rule as Kubernetes prints it in escalation errors: `{APIGroups:["apps"], Resources:[...], Verbs:[...]}`."""
    parts = [
        f"{label}:{go_strings(values)}"
        for label, values in (
            ("APIGroups", rule.api_groups),
            ("Resources", rule.resources),
            ("NonResourceURLs", rule.non_resource_urls),
            ("ResourceNames", rule.resource_names),
            ("Verbs", rule.verbs),
        )
        if values
    ]
    return "{" + ", ".join(parts) + "}"


def _compact(atoms: Sequence[Rule]) -> list[Rule]:
    """Merge the verbs of atoms about the same single group and resource (Kubernetes' CompactRules)."""
    merged: dict[tuple[str, str], list[str]] = {}
    others: list[Rule] = []
    for atom in atoms:
        if atom.resources and not atom.resource_names and not atom.non_resource_urls:
            verbs = merged.setdefault((atom.api_groups[0], atom.resources[0]), [])
            verbs += [v for v in atom.verbs if v not in verbs]
        else:
            others.append(atom)
    return [Rule(verbs, [group], [resource]) for (group, resource), verbs in merged.items()] + others


class EscalationCheck:
    """Admission for RBAC objects, as Kubernetes' RBAC storage checks them: a role may only grant what its
    author holds (unless they may `escalate` it), a binding may only grant a role whose rules its author
    holds (unless they may `bind` it), and only cluster admins may write an aggregationRule. Members of
    system:masters may do anything."""

    def __init__(self, rbac: RbacAuthorizer, authorize: Callable[[Attributes], tuple[bool, str]]) -> None:
        self.rbac = rbac
        self.authorize = authorize

    async def mutate(self, request: AdmissionRequest) -> list[str]:
        return []

    async def validate(self, request: AdmissionRequest) -> list[str]:
        key, obj, user = request.rt.key, request.obj, request.user
        if key not in RBAC_RESOURCES or obj is None or SYSTEM_MASTERS in user.groups:
            return []
        if request.operation not in ("CREATE", "UPDATE"):
            return []
        namespace = request.namespace if key in (ROLES, ROLE_BINDINGS) else ""
        if key in (ROLES, CLUSTER_ROLES):
            if key == CLUSTER_ROLES and obj.get("aggregationRule"):
                old = (request.old or {}).get("aggregationRule")
                if obj["aggregationRule"] != old and uncovered(self._held(user, ""), FULL_AUTHORITY):
                    raise self._forbidden(
                        request, "must have cluster-admin privileges to use the aggregationRule"
                    )
            if self._may(user, "escalate", key[1], namespace, request.name):
                return []
            self._confirm(request, namespace, _rules(obj))
            return []
        ref = obj.get("roleRef") or {}
        role_kind, role_name = str(ref.get("kind", "")), str(ref.get("name", ""))
        plural = "roles" if role_kind == "Role" else "clusterroles"
        if self._may(user, "bind", plural, namespace, role_name):
            return []
        if role_kind == "Role":
            stored = self.rbac.store.get(ROLES, namespace, role_name)
            missing = f'roles.{GROUP} "{role_name}" not found'
        else:
            stored = self.rbac.store.get(CLUSTER_ROLES, "", role_name)
            missing = f'clusterroles.{GROUP} "{role_name}" not found'
        if stored is None:
            raise self._forbidden(request, missing)
        self._confirm(request, namespace, _rules(stored.obj))
        return []

    def _may(self, user: UserInfo, verb: str, plural: str, namespace: str, name: str) -> bool:
        return self.authorize(Attributes(user, verb, GROUP, plural, "", namespace, name))[0]

    def _held(self, user: UserInfo, namespace: str) -> list[Rule]:
        return self.rbac.resolve(user, namespace).rules()

    def _confirm(self, request: AdmissionRequest, namespace: str, rules: Sequence[Rule]) -> None:
        user = request.user
        resolved = self.rbac.resolve(user, namespace)
        missing = uncovered(resolved.rules(), rules)
        if not missing:
            return
        lines = sorted({compact_string(rule) for rule in _compact(missing)})
        message = (
            f"user {_go_quote(user.name)} (groups={go_strings(user.groups)}) is attempting to grant RBAC "
            "permissions not currently held:\n" + "\n".join(lines)
        )
        if resolved.errors:
            message += f"; resolution errors: {_aggregate(resolved.errors)}"
        raise self._forbidden(request, message)

    @staticmethod
    def _forbidden(request: AdmissionRequest, why: str) -> StatusError:
        return StatusError(
            403,
            "Forbidden",
            f'{request.rt.plural}.{GROUP} "{request.name}" is forbidden: {why}',
            name=request.name,
            group=GROUP,
            kind=request.rt.plural,
        )


FULL_AUTHORITY = (Rule([ALL], [ALL], [ALL]), Rule([ALL], non_resource_urls=[ALL]))


def _go_quote(value: str) -> str:
    """A string as Go's `%q` prints it."""
    return go_strings([value])[1:-1]
