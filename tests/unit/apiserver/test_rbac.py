"""RBAC as Kubernetes evaluates it, in memory: rule matching (verbs, groups, resources with subresources and
`*/scale`, resourceNames, non-resource URLs), subjects (users, groups, service accounts), the scope of
bindings, the index kept up to date as roles and bindings change, the default roles the server bootstraps,
clusterrole aggregation, and the escalation check on roles and bindings."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from isthmus.local.apiserver.admission import AdmissionChain
from isthmus.local.apiserver.auth import Attributes, AuthChain, Decision, SuperuserAuthorizer, UserInfo
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.controllers.base import ControllerContext
from isthmus.local.apiserver.controllers.rbac import ClusterRoleAggregation, RbacBootstrap
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import Objects, Target, WriteOptions
from isthmus.local.apiserver.rbac import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    ROLES,
    EscalationCheck,
    RbacAuthorizer,
    Rule,
    breakdown,
    uncovered,
)
from isthmus.local.apiserver.resources import ResourceRegistry
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.store import Store
from isthmus.local.apiserver.strategies import Strategies

JsonObject = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
JANE = UserInfo("jane", groups=("devs", "system:authenticated"))
READER = UserInfo(
    "system:serviceaccount:team:reader",
    groups=("system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"),
)
ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


def request(
    verb: str,
    resource: str = "",
    group: str = "",
    namespace: str = "",
    name: str = "",
    subresource: str = "",
    path: str = "",
    user: UserInfo = JANE,
) -> Attributes:
    return Attributes(user, verb, group, resource, subresource, namespace, name, path)


# --- rules ----------------------------------------------------------------------------------------------


def test_verbs_groups_and_resources() -> None:
    rule = Rule(["get", "list"], ["apps"], ["deployments"])
    assert rule.allows(request("get", "deployments", "apps", "ns", "web"))
    assert rule.allows(request("list", "deployments", "apps", "ns"))
    assert not rule.allows(request("delete", "deployments", "apps", "ns", "web"))
    assert not rule.allows(request("get", "deployments", "extensions", "ns", "web"))
    assert not rule.allows(request("get", "replicasets", "apps", "ns", "web"))
    anything = Rule(["*"], ["*"], ["*"])
    assert anything.allows(request("escalate", "clusterroles", RBAC, name="x"))


def test_subresources_need_their_own_rule() -> None:
    pods = Rule(["get"], [""], ["pods"])
    assert not pods.allows(request("get", "pods", namespace="ns", name="p", subresource="log"))
    logs = Rule(["get"], [""], ["pods/log"])
    assert logs.allows(request("get", "pods", namespace="ns", name="p", subresource="log"))
    assert not logs.allows(request("get", "pods", namespace="ns", name="p"))
    everything = Rule(["get"], [""], ["*"])
    assert everything.allows(request("get", "pods", namespace="ns", name="p", subresource="log"))


def test_star_slash_subresource() -> None:
    scale = Rule(["update"], ["apps"], ["*/scale"])
    assert scale.allows(request("update", "deployments", "apps", "ns", "web", "scale"))
    assert scale.allows(request("update", "statefulsets", "apps", "ns", "db", "scale"))
    assert not scale.allows(request("update", "deployments", "apps", "ns", "web"))
    assert not scale.allows(request("update", "deployments", "apps", "ns", "web", "status"))


def test_resource_names_limit_named_requests_only() -> None:
    rule = Rule(["get", "list", "update"], [""], ["configmaps"], ["settings"])
    assert rule.allows(request("get", "configmaps", namespace="ns", name="settings"))
    assert not rule.allows(request("get", "configmaps", namespace="ns", name="other"))
    assert not rule.allows(request("list", "configmaps", namespace="ns")), "a list names nothing"


def test_non_resource_urls() -> None:
    rule = Rule(["get"], non_resource_urls=["/healthz", "/apis/*"])
    assert rule.allows(request("get", path="/healthz"))
    assert not rule.allows(request("get", path="/healthz/etcd"))
    assert rule.allows(request("get", path="/apis/apps/v1"))
    assert rule.allows(request("get", path="/apis/"))
    assert not rule.allows(request("get", path="/apis")), "the * covers what follows /apis/ only"
    assert not rule.allows(request("post", path="/healthz"))
    assert not rule.allows(request("get", "healthz", namespace="ns")), "not for resource requests"
    assert Rule(["*"], non_resource_urls=["*"]).allows(request("delete", path="/anything"))
    assert not Rule(["get"], [""], ["*"]).allows(request("get", path="/version")), "nor resource rules"


def test_rule_json_round_trip() -> None:
    raw = {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}
    assert Rule.from_json(raw).to_json() == raw
    assert Rule.from_json({"verbs": ["get"], "nonResourceURLs": ["/x"]}).to_json() == {
        "verbs": ["get"],
        "nonResourceURLs": ["/x"],
    }


# --- bindings -------------------------------------------------------------------------------------------


def put(store: Store, resource: tuple[str, str], obj: JsonObject) -> None:
    obj["metadata"].setdefault("uid", str(uuid.uuid4()))
    store.put(resource, obj)


def cluster_role(store: Store, name: str, *rules: JsonObject) -> None:
    put(store, CLUSTER_ROLES, {"metadata": {"name": name}, "rules": list(rules)})


def role(store: Store, namespace: str, name: str, *rules: JsonObject) -> None:
    put(store, ROLES, {"metadata": {"name": name, "namespace": namespace}, "rules": list(rules)})


def binding(
    store: Store, name: str, role_kind: str, role_name: str, *subjects: JsonObject, namespace: str = ""
) -> None:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    put(
        store,
        ROLE_BINDINGS if namespace else CLUSTER_ROLE_BINDINGS,
        {
            "metadata": meta,
            "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role_name},
            "subjects": list(subjects),
        },
    )


def user(name: str) -> JsonObject:
    return {"apiGroup": RBAC, "kind": "User", "name": name}


def group(name: str) -> JsonObject:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


def service_account(name: str, namespace: str = "") -> JsonObject:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


READ_PODS = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}
READ_SECRETS = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"]}


def test_cluster_role_binding_applies_everywhere_role_binding_in_its_namespace() -> None:
    store = Store(None)
    authorizer = RbacAuthorizer(store)
    cluster_role(store, "pod-reader", READ_PODS)
    binding(store, "devs-read-pods", "ClusterRole", "pod-reader", group("devs"))
    cluster_role(store, "secret-reader", READ_SECRETS)
    binding(store, "jane-secrets", "ClusterRole", "secret-reader", user("jane"), namespace="team")
    decision, reason = authorizer.authorize(request("list", "pods", namespace="anywhere"))
    assert decision is Decision.ALLOW
    assert (
        reason
        == 'RBAC: allowed by ClusterRoleBinding "devs-read-pods" of ClusterRole "pod-reader" to Group "devs"'
    )
    assert authorizer.authorize(request("list", "pods"))[0] is Decision.ALLOW, "cluster-wide lists too"
    decision, reason = authorizer.authorize(request("get", "secrets", namespace="team", name="s"))
    assert decision is Decision.ALLOW
    assert (
        reason
        == 'RBAC: allowed by RoleBinding "jane-secrets/team" of ClusterRole "secret-reader" to User "jane"'
    )
    assert authorizer.authorize(request("get", "secrets", namespace="other", name="s")) == (
        Decision.NO_OPINION,
        "",
    )
    assert authorizer.authorize(request("list", "secrets"))[0] is Decision.NO_OPINION
    other = UserInfo("john", groups=("system:authenticated",))
    assert authorizer.authorize(request("list", "pods", namespace="x", user=other))[0] is Decision.NO_OPINION


def test_service_account_subjects() -> None:
    store = Store(None)
    authorizer = RbacAuthorizer(store)
    role(store, "team", "pods", READ_PODS)
    binding(store, "local", "Role", "pods", service_account("reader"), namespace="team")  # the binding's ns
    assert authorizer.authorize(request("get", "pods", namespace="team", name="p", user=READER))[0] is (
        Decision.ALLOW
    )
    cluster_role(store, "secret-reader", READ_SECRETS)
    binding(store, "no-namespace", "ClusterRole", "secret-reader", service_account("reader"))
    assert authorizer.authorize(request("get", "secrets", namespace="team", name="s", user=READER))[0] is (
        Decision.NO_OPINION
    ), "a ClusterRoleBinding's ServiceAccount subject needs its namespace"
    binding(store, "qualified", "ClusterRole", "secret-reader", service_account("reader", "team"))
    decision, reason = authorizer.authorize(request("get", "secrets", namespace="x", name="s", user=READER))
    assert decision is Decision.ALLOW and reason.endswith('to ServiceAccount "reader/team"')
    group_binding = UserInfo("system:serviceaccount:team:other", groups=("system:serviceaccounts:team",))
    binding(store, "whole-ns", "ClusterRole", "secret-reader", group("system:serviceaccounts:team"))
    assert authorizer.authorize(request("list", "secrets", namespace="y", user=group_binding))[0] is (
        Decision.ALLOW
    )


def test_missing_roles_are_reported() -> None:
    store = Store(None)
    authorizer = RbacAuthorizer(store)
    binding(store, "dangling", "ClusterRole", "nope", user("jane"))
    binding(store, "dangling-role", "Role", "gone", user("jane"), namespace="team")
    decision, reason = authorizer.authorize(request("get", "pods", namespace="team", name="p"))
    assert decision is Decision.NO_OPINION
    assert reason == (
        'RBAC: [clusterrole.rbac.authorization.k8s.io "nope" not found, '
        'role.rbac.authorization.k8s.io "gone" not found]'
    )
    decision, reason = authorizer.authorize(request("list", "nodes"))
    assert reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "nope" not found'


def test_changes_are_seen_at_once() -> None:
    store = Store(None)
    authorizer = RbacAuthorizer(store)
    ask = request("get", "pods", namespace="team", name="p")
    assert authorizer.authorize(ask)[0] is Decision.NO_OPINION
    binding(store, "b", "ClusterRole", "reader", user("jane"))
    assert authorizer.authorize(ask)[0] is Decision.NO_OPINION, "the role does not exist yet"
    cluster_role(store, "reader", READ_PODS)
    assert authorizer.authorize(ask)[0] is Decision.ALLOW
    cluster_role(store, "reader", READ_SECRETS)  # replaced
    assert authorizer.authorize(ask)[0] is Decision.NO_OPINION
    cluster_role(store, "reader", READ_PODS)
    store.remove(CLUSTER_ROLE_BINDINGS, "", "b")
    assert authorizer.authorize(ask)[0] is Decision.NO_OPINION


def test_resolved_rules_for_rules_reviews() -> None:
    store = Store(None)
    authorizer = RbacAuthorizer(store)
    cluster_role(store, "pod-reader", READ_PODS)
    role(store, "team", "secrets", READ_SECRETS)
    binding(store, "a", "ClusterRole", "pod-reader", user("jane"))
    binding(store, "b", "Role", "secrets", user("jane"), namespace="team")
    assert [r.to_json() for r in authorizer.resolve(JANE, "team").rules()] == [READ_PODS, READ_SECRETS]
    assert [r.to_json() for r in authorizer.resolve(JANE, "other").rules()] == [READ_PODS]


# --- the default roles and aggregation ------------------------------------------------------------------

CATALOG = SchemaCatalog.load()


def controller_context() -> ControllerContext:
    store = Store(None)
    objects = Objects(store, ResourceRegistry(), CATALOG, Strategies(store, "10.96.0.0/24"), AdmissionChain())
    config = ApiServerConfig(
        cluster="c",
        state_dir="/nonexistent",
        listen_host="127.0.0.1",
        listen_port=6443,
        advertise_host="localhost",
        service_cidr="10.96.0.0/24",
        pod_cidr="10.0.0.0/20",
        admin_token_file="/nonexistent/token",
        cert_file="",
        key_file="",
        ca_file="",
    )
    return ControllerContext(objects, config)


@pytest.fixture
async def defaults() -> tuple[ControllerContext, RbacAuthorizer]:
    ctx = controller_context()
    authorizer = RbacAuthorizer(ctx.objects.store)
    await RbacBootstrap(ctx).prepare()
    await ClusterRoleAggregation(ctx).prepare()
    return ctx, authorizer


def allowed(authorizer: RbacAuthorizer, attrs: Attributes) -> bool:
    return authorizer.authorize(attrs)[0] is Decision.ALLOW


async def test_defaults_everyone_relies_on(defaults: tuple[ControllerContext, RbacAuthorizer]) -> None:
    _, authorizer = defaults
    assert allowed(authorizer, request("get", path="/version", user=ANONYMOUS))
    assert allowed(authorizer, request("get", path="/healthz", user=ANONYMOUS))
    assert not allowed(authorizer, request("get", path="/api", user=ANONYMOUS))
    assert allowed(authorizer, request("get", path="/apis/apps/v1", user=JANE))
    assert allowed(authorizer, request("get", path="/openapi/v3", user=JANE))
    assert allowed(authorizer, request("create", "selfsubjectaccessreviews", "authorization.k8s.io"))
    assert allowed(authorizer, request("create", "selfsubjectreviews", "authentication.k8s.io"))
    assert not allowed(authorizer, request("create", "tokenreviews", "authentication.k8s.io"))
    assert not allowed(authorizer, request("get", path="/openid/v1/jwks", user=JANE))
    assert allowed(authorizer, request("get", path="/openid/v1/jwks", user=READER))
    admin = UserInfo("root", groups=("system:masters",))
    assert allowed(authorizer, request("delete", "nodes", name="n", user=admin))


async def test_view_edit_admin_are_aggregated(defaults: tuple[ControllerContext, RbacAuthorizer]) -> None:
    ctx, authorizer = defaults
    store = ctx.objects.store
    binding(store, "v", "ClusterRole", "view", service_account("reader"), namespace="team")
    binding(store, "e", "ClusterRole", "edit", user("jane"), namespace="team")
    binding(store, "a", "ClusterRole", "admin", user("ann"), namespace="team")
    ann = UserInfo("ann", groups=("system:authenticated",))
    assert allowed(authorizer, request("list", "pods", namespace="team", user=READER))
    assert allowed(authorizer, request("get", "deployments", "apps", "team", "web", "scale", user=READER))
    assert not allowed(authorizer, request("get", "secrets", namespace="team", name="s", user=READER))
    assert not allowed(authorizer, request("create", "configmaps", namespace="team", user=READER))
    assert not allowed(authorizer, request("list", "pods", namespace="other", user=READER))
    assert allowed(authorizer, request("create", "deployments", "apps", "team"))
    assert allowed(authorizer, request("get", "secrets", namespace="team", name="s"))
    assert allowed(authorizer, request("list", "pods", namespace="team")), "edit includes view"
    assert not allowed(authorizer, request("create", "rolebindings", RBAC, "team"))
    assert allowed(authorizer, request("create", "rolebindings", RBAC, "team", user=ann))
    assert allowed(authorizer, request("delete", "pods", namespace="team", name="p", user=ann))


async def test_aggregation_follows_new_roles(defaults: tuple[ControllerContext, RbacAuthorizer]) -> None:
    ctx, authorizer = defaults
    widgets = {"verbs": ["get"], "apiGroups": ["example.dev"], "resources": ["widgets"]}
    rt = ctx.objects.registry.get(RBAC, "clusterroles")
    assert rt is not None
    await ctx.objects.create(
        Target(rt, "v1"),
        {
            "metadata": {
                "name": "widget-viewer",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [widgets],
        },
        WriteOptions(UserInfo("root", groups=("system:masters",))),
    )
    aggregation = ClusterRoleAggregation(ctx)
    for _ in range(3):  # as the controller's events do: view changes, then edit, then admin
        for key in aggregation.all_keys():
            await aggregation.reconcile(key)
    for name in ("view", "edit", "admin"):
        stored = ctx.get(CLUSTER_ROLES, "", name)
        assert stored is not None and widgets in stored.obj["rules"], name
    binding(ctx.objects.store, "a", "ClusterRole", "admin", user("jane"), namespace="team")
    assert allowed(authorizer, request("get", "widgets", "example.dev", "team", "w"))


# --- escalation -----------------------------------------------------------------------------------------


def test_rule_covers() -> None:
    everything = Rule(["*"], ["*"], ["*"])
    assert not uncovered([everything], [Rule(["get", "delete"], ["", "apps"], ["pods", "pods/log", "x/y"])])
    assert uncovered([everything], [Rule(["get"], non_resource_urls=["/healthz"])]), "resources only"
    pods = Rule(["get", "list"], [""], ["pods"])
    assert uncovered([pods], [Rule(["get"], [""], ["pods/log"])]) == [Rule(["get"], [""], ["pods/log"])]
    assert not uncovered(
        [Rule(["update"], ["apps"], ["*/scale"])], [Rule(["update"], ["apps"], ["deployments/scale"])]
    )
    assert not uncovered([pods], [Rule(["get"], [""], ["pods"], ["web-0"])]), "names narrow"
    assert uncovered([Rule(["get"], [""], ["pods"], ["web-0"])], [pods]), "a named rule does not cover all"
    assert not uncovered(
        [Rule(["get"], non_resource_urls=["/apis/*"])], [Rule(["get"], non_resource_urls=["/apis/x"])]
    )
    assert breakdown(Rule(["get", "list"], ["", "apps"], ["a"])) == [
        Rule(["get"], [""], ["a"]),
        Rule(["list"], [""], ["a"]),
        Rule(["get"], ["apps"], ["a"]),
        Rule(["list"], ["apps"], ["a"]),
    ]


ROOT = UserInfo("root", groups=("system:masters",))


@pytest.fixture
async def guarded() -> tuple[ControllerContext, RbacAuthorizer]:
    """The default roles, RBAC and its escalation check in front of every write."""
    ctx = controller_context()
    authorizer = RbacAuthorizer(ctx.objects.store)
    chain = AuthChain([], [SuperuserAuthorizer(), authorizer])
    ctx.objects.admission.plugins.append(EscalationCheck(authorizer, chain.authorize))
    await RbacBootstrap(ctx).prepare()
    await ClusterRoleAggregation(ctx).prepare()
    for namespace in ("team", "other"):
        await ctx.objects.create(
            ctx.target("", "namespaces"), {"metadata": {"name": namespace}}, WriteOptions(ROOT)
        )
    return ctx, authorizer


async def write(
    ctx: ControllerContext, who: UserInfo, plural: str, body: JsonObject, namespace: str = ""
) -> None:
    rt = ctx.objects.registry.get(RBAC, plural)
    assert rt is not None
    await ctx.objects.create(Target(rt, "v1", namespace), body, WriteOptions(who))


def role_body(name: str, *rules: JsonObject, **extra: Any) -> JsonObject:
    return {"metadata": {"name": name}, "rules": list(rules), **extra}


def binding_body(name: str, kind: str, role_name: str, subject: JsonObject) -> JsonObject:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role_name},
        "subjects": [subject],
    }


async def test_a_namespace_admin_cannot_grant_more_than_it_holds(
    guarded: tuple[ControllerContext, RbacAuthorizer],
) -> None:
    ctx, _ = guarded
    await write(
        ctx, ROOT, "rolebindings", binding_body("jane-admin", "ClusterRole", "admin", user("jane")), "team"
    )
    await write(ctx, JANE, "roles", role_body("pod-reader", READ_PODS), "team")
    await write(
        ctx, JANE, "rolebindings", binding_body("bob-view", "ClusterRole", "view", user("bob")), "team"
    )
    nodes = {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["nodes"]}
    with pytest.raises(StatusError) as refused:
        await write(ctx, JANE, "roles", role_body("node-reader", nodes), "team")
    assert refused.value.code == 403
    assert refused.value.message == (
        'roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "jane" (groups=["devs" '
        '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}'
    )
    with pytest.raises(StatusError) as bound:
        await write(
            ctx,
            JANE,
            "rolebindings",
            binding_body("bob-root", "ClusterRole", "cluster-admin", user("bob")),
            "team",
        )
    assert (
        bound.value.code == 403
        and "is attempting to grant RBAC permissions not currently held" in bound.value.message
    )
    with pytest.raises(StatusError) as elsewhere:
        await write(ctx, JANE, "roles", role_body("pod-reader", READ_PODS), "other")
    assert elsewhere.value.code == 403, "admin in team only"


async def test_escalate_and_bind_verbs_and_aggregation(
    guarded: tuple[ControllerContext, RbacAuthorizer],
) -> None:
    ctx, _ = guarded
    writer = {"verbs": ["create"], "apiGroups": [RBAC], "resources": ["clusterroles", "clusterrolebindings"]}
    await write(ctx, ROOT, "clusterroles", role_body("rbac-writer", writer))
    await write(
        ctx,
        ROOT,
        "clusterrolebindings",
        binding_body("jane-writes", "ClusterRole", "rbac-writer", user("jane")),
    )
    with pytest.raises(StatusError):
        await write(ctx, JANE, "clusterroles", role_body("secrets", READ_SECRETS))
    aggregated = role_body("mine", aggregationRule={"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]})
    with pytest.raises(StatusError) as aggregation:
        await write(ctx, JANE, "clusterroles", aggregated)
    assert aggregation.value.message == (
        'clusterroles.rbac.authorization.k8s.io "mine" is forbidden: must have cluster-admin privileges to use '
        "the aggregationRule"
    )
    with pytest.raises(StatusError):
        await write(
            ctx,
            JANE,
            "clusterrolebindings",
            binding_body("jane-root", "ClusterRole", "cluster-admin", user("jane")),
        )
    special = [
        {"verbs": ["escalate"], "apiGroups": [RBAC], "resources": ["clusterroles"]},
        {"verbs": ["bind"], "apiGroups": [RBAC], "resources": ["clusterroles"], "resourceNames": ["view"]},
    ]
    await write(ctx, ROOT, "clusterroles", role_body("special", *special))
    await write(
        ctx, ROOT, "clusterrolebindings", binding_body("jane-special", "ClusterRole", "special", user("jane"))
    )
    await write(ctx, JANE, "clusterroles", role_body("secrets", READ_SECRETS))
    await write(
        ctx, JANE, "clusterrolebindings", binding_body("all-view", "ClusterRole", "view", group("devs"))
    )
    with pytest.raises(StatusError):
        await write(
            ctx,
            JANE,
            "clusterrolebindings",
            binding_body("jane-root", "ClusterRole", "cluster-admin", user("jane")),
        )
