"""RBAC's defaults and aggregation: the roles and bindings kube-apiserver bootstraps (cluster-admin, admin,
edit, view, system:discovery, ...), and kube-controller-manager's clusterrole-aggregation controller, which
fills a ClusterRole with an `aggregationRule` with the rules of the ClusterRoles its selectors match.

Like kube-apiserver, the defaults are reconciled at every start: missing ones are created, and those still
annotated `rbac.authorization.kubernetes.io/autoupdate: "true"` get back the rules, labels and subjects they
lack (what users added is kept).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from isthmus.local.apiserver.controllers.base import Controller, JsonObject, Reconciler, ResourceKey
from isthmus.local.apiserver.rbac import CLUSTER_ROLE_BINDINGS, CLUSTER_ROLES
from isthmus.local.apiserver.rbac import GROUP as RBAC_GROUP
from isthmus.local.apiserver.selectors import selector_from_label_selector
from isthmus.local.apiserver.store import WatchEvent, copy_object

BOOTSTRAP_MANAGER = "kube-apiserver"
AGGREGATION_MANAGER = "clusterrole-aggregation-controller"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
READ_WRITE = READ + WRITE


def _rule(verbs: Iterable[str], groups: Iterable[str], *resources: str) -> JsonObject:
    return {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}


def _urls(*urls: str) -> JsonObject:
    return {"verbs": ["get"], "nonResourceURLs": list(urls)}


def _role(name: str, rules: list[JsonObject], labels: dict[str, str] | None = None) -> JsonObject:
    return {
        "metadata": {
            "name": name,
            "labels": {**BOOTSTRAPPING, **(labels or {})},
            "annotations": {AUTOUPDATE: "true"},
        },
        "rules": rules,
    }


def _aggregated(name: str, labels: dict[str, str] | None = None) -> JsonObject:
    role = _role(name, [], labels)
    role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {f"{AGGREGATE_TO}{name}": "true"}}]}
    return role


def _binding(name: str, *groups: str) -> JsonObject:
    return {
        "metadata": {"name": name, "labels": dict(BOOTSTRAPPING), "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g} for g in groups],
    }


CLUSTER_ROLE_DEFAULTS: tuple[JsonObject, ...] = (
    _role(
        "cluster-admin",
        [
            {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
            {"verbs": ["*"], "nonResourceURLs": ["*"]},
        ],
    ),
    _role(
        "system:discovery",
        [
            _urls(
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            )
        ],
    ),
    _role(
        "system:monitoring",
        [
            _urls(
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            )
        ],
    ),
    _role(
        "system:basic-user",
        [
            _rule(
                ["create"], ["authorization.k8s.io"], "selfsubjectaccessreviews", "selfsubjectrulesreviews"
            ),
            _rule(["create"], ["authentication.k8s.io"], "selfsubjectreviews"),
        ],
    ),
    _role("system:public-info-viewer", [_urls("/healthz", "/livez", "/readyz", "/version", "/version/")]),
    _role(
        "system:auth-delegator",
        [
            _rule(["create"], ["authentication.k8s.io"], "tokenreviews"),
            _rule(["create"], ["authorization.k8s.io"], "subjectaccessreviews"),
        ],
    ),
    _role(
        "system:service-account-issuer-discovery",
        [
            _urls(
                "/.well-known/openid-configuration",
                "/.well-known/openid-configuration/",
                "/openid/v1/jwks",
                "/openid/v1/jwks/",
            )
        ],
    ),
    _aggregated("admin"),
    _aggregated("edit", {f"{AGGREGATE_TO}admin": "true"}),
    _aggregated("view", {f"{AGGREGATE_TO}edit": "true"}),
    _role(
        "system:aggregate-to-admin",
        [
            _rule(["create"], ["authorization.k8s.io"], "localsubjectaccessreviews"),
            _rule(READ_WRITE, [RBAC_GROUP], "roles", "rolebindings"),
        ],
        {f"{AGGREGATE_TO}admin": "true"},
    ),
    _role(
        "system:aggregate-to-edit",
        [
            _rule(
                READ,
                [""],
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
                "secrets",
                "services/proxy",
            ),
            _rule(["impersonate"], [""], "serviceaccounts"),
            _rule(WRITE, [""], "pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"),
            _rule(["create"], [""], "pods/eviction"),
            _rule(
                WRITE,
                [""],
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ),
            _rule(["create"], [""], "serviceaccounts/token"),
            _rule(
                WRITE,
                ["apps"],
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ),
            _rule(WRITE, ["autoscaling"], "horizontalpodautoscalers"),
            _rule(WRITE, ["batch"], "jobs", "cronjobs"),
            _rule(WRITE, ["policy"], "poddisruptionbudgets"),
            _rule(WRITE, ["networking.k8s.io"], "networkpolicies", "ingresses"),
            _rule(READ_WRITE, ["coordination.k8s.io"], "leases"),
        ],
        {f"{AGGREGATE_TO}edit": "true"},
    ),
    _role(
        "system:aggregate-to-view",
        [
            _rule(
                READ,
                [""],
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ),
            _rule(
                READ,
                [""],
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ),
            _rule(READ, [""], "namespaces"),
            _rule(READ, ["discovery.k8s.io"], "endpointslices"),
            _rule(
                READ,
                ["apps"],
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ),
            _rule(READ, ["autoscaling"], "horizontalpodautoscalers", "horizontalpodautoscalers/status"),
            _rule(READ, ["batch"], "jobs", "cronjobs", "cronjobs/status", "jobs/status"),
            _rule(READ, ["policy"], "poddisruptionbudgets", "poddisruptionbudgets/status"),
            _rule(READ, ["networking.k8s.io"], "networkpolicies", "ingresses", "ingresses/status"),
        ],
        {f"{AGGREGATE_TO}view": "true"},
    ),
)

CLUSTER_ROLE_BINDING_DEFAULTS: tuple[JsonObject, ...] = (
    _binding("cluster-admin", "system:masters"),
    _binding("system:basic-user", "system:authenticated"),
    _binding("system:discovery", "system:authenticated"),
    _binding("system:public-info-viewer", "system:authenticated", "system:unauthenticated"),
    _binding("system:monitoring", "system:monitoring"),
    _binding("system:service-account-issuer-discovery", "system:serviceaccounts"),
)


def _merge_metadata(obj: JsonObject, desired: JsonObject) -> None:
    meta = obj["metadata"]
    for key in ("labels", "annotations"):
        wanted = desired["metadata"].get(key) or {}
        current = meta.setdefault(key, {})
        for name, value in wanted.items():
            current.setdefault(name, value)


def _missing(current: list[Any], wanted: list[Any]) -> list[Any]:
    return [item for item in wanted if item not in current]


class RbacBootstrap(Controller):
    """Creates or repairs the default ClusterRoles and ClusterRoleBindings before the server serves."""

    name = "rbac-bootstrap"

    async def prepare(self) -> None:
        for desired in CLUSTER_ROLE_DEFAULTS:
            await self._reconcile(CLUSTER_ROLES, desired, "rules")
        for desired in CLUSTER_ROLE_BINDING_DEFAULTS:
            await self._reconcile(CLUSTER_ROLE_BINDINGS, desired, "subjects")

    async def _reconcile(self, resource: ResourceKey, desired: JsonObject, items: str) -> None:
        ctx = self.ctx
        name = desired["metadata"]["name"]
        current = ctx.get(resource, "", name)
        if current is None:
            await ctx.objects.create(
                ctx.target(*resource), copy_object(desired), ctx.options(BOOTSTRAP_MANAGER)
            )
            return
        if (current.obj["metadata"].get("annotations") or {}).get(AUTOUPDATE) != "true":
            return  # the user took it over, as Kubernetes allows
        obj = copy_object(current.obj)
        _merge_metadata(obj, desired)
        if "aggregationRule" in desired:
            obj["aggregationRule"] = desired["aggregationRule"]  # its rules are the aggregator's
        else:
            present = obj.get(items) or []
            obj[items] = present + _missing(present, desired.get(items) or [])
        if obj != current.obj:
            await ctx.objects.update(ctx.target(*resource, name=name), obj, ctx.options(BOOTSTRAP_MANAGER))


class ClusterRoleAggregation(Reconciler):
    """Keeps each aggregated ClusterRole's rules the union (in role-name order, without duplicates) of the
    rules of the other ClusterRoles its `aggregationRule.clusterRoleSelectors` match."""

    name = "clusterrole-aggregation"
    watches = (CLUSTER_ROLES,)

    def _aggregated_names(self) -> list[Hashable]:
        return [
            ("", s.obj["metadata"]["name"])
            for s in self.ctx.list(CLUSTER_ROLES)
            if (s.obj.get("aggregationRule") or {}).get("clusterRoleSelectors")
        ]

    def keys_for(self, resource: ResourceKey, event: WatchEvent) -> Iterable[Hashable]:
        return self._aggregated_names()  # any ClusterRole may be selected by any aggregated one

    def all_keys(self) -> Iterable[Hashable]:
        return self._aggregated_names()

    async def prepare(self) -> None:
        """Aggregate before serving (edit feeds admin, view feeds edit: repeat until nothing changes)."""
        for _ in range(8):
            changed = False
            for key in self._aggregated_names():
                changed |= await self._aggregate(key)
            if not changed:
                return

    async def reconcile(self, key: Any) -> None:
        await self._aggregate(key)

    async def _aggregate(self, key: Any) -> bool:
        _, name = key
        current = self.ctx.get(CLUSTER_ROLES, "", name)
        if current is None:
            return False
        selectors = (current.obj.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        matchers = [selector_from_label_selector(s) for s in selectors if isinstance(s, dict)]
        if not matchers:
            return False
        rules: list[JsonObject] = []
        for stored in self.ctx.list(CLUSTER_ROLES):  # in name order
            meta = stored.obj["metadata"]
            labels = meta.get("labels") or {}
            if meta["name"] == name or not any(match(labels) for match in matchers):
                continue
            for rule in stored.obj.get("rules") or []:
                if rule not in rules:
                    rules.append(rule)
        if rules == (current.obj.get("rules") or []):
            return False
        obj = copy_object(current.obj)
        obj["rules"] = rules
        await self.ctx.objects.update(
            self.ctx.target(*CLUSTER_ROLES, name=name), obj, self.ctx.options(AGGREGATION_MANAGER)
        )
        return True
