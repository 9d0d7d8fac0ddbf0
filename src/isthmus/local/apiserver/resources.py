"""The API's resource types: the built-in ones and those CustomResourceDefinitions register while serving.

A `ResourceType` says how one resource is named and served (group, versions, kind, plural, scope, verbs,
subresources); its schemas come from the schema catalog or the CRD. The `ResourceRegistry` is mutated only on
the server's event loop (CRD establishment and removal); readers on that loop may hold the types they get,
which are immutable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from isthmus.local.apiserver.schema import Schema, SchemaCatalog, crd_schema

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_CREATE = ("create", "get", "list", "watch")


@dataclass(frozen=True)
class ResourceType:
    """How one resource is served. For CRDs, `versions` are the served versions, storage version first."""

    group: str
    versions: tuple[str, ...]
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    # For CRDs: per-version schema and printer columns; empty for built-ins (the catalog has those).
    crd_schemas: Mapping[str, Schema] = field(default_factory=dict)
    printer_columns: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    crd_name: str = ""
    # Kinds whose objects are only computed (reviews): never stored.
    virtual: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """Identity in storage: objects are stored once per group and plural, whatever the version."""
        return (self.group, self.plural)

    @property
    def is_custom(self) -> bool:
        return bool(self.crd_name)

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def schema(self, catalog: SchemaCatalog, version: str) -> Schema | None:
        if self.is_custom:
            return self.crd_schemas.get(version)
        return catalog.for_kind(self.group, version, self.kind)


def _builtin(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool,
    short: Iterable[str] = (),
    sub: Iterable[str] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
    categories: Iterable[str] = (),
    virtual: bool = False,
) -> ResourceType:
    return ResourceType(
        group=group,
        versions=(version,),
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=tuple(short),
        subresources=tuple(sub),
        verbs=verbs,
        categories=tuple(categories),
        virtual=virtual,
    )


ALL = ("all",)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ["ns"],
        ["status", "finalize"],
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    _builtin(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        ["po"],
        ["status", "log", "exec", "portforward", "proxy", "binding", "eviction", "ephemeralcontainers"],
        categories=ALL,
    ),
    _builtin("", "v1", "Service", "services", True, ["svc"], ["status", "proxy"], categories=ALL),
    _builtin("", "v1", "Endpoints", "endpoints", True, ["ep"]),
    _builtin("", "v1", "Secret", "secrets", True),
    _builtin("", "v1", "ConfigMap", "configmaps", True, ["cm"]),
    _builtin("", "v1", "ServiceAccount", "serviceaccounts", True, ["sa"], ["token"]),
    _builtin("", "v1", "Node", "nodes", False, ["no"], ["status", "proxy"]),
    _builtin("", "v1", "Event", "events", True, ["ev"]),
    _builtin("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ["pvc"], ["status"]),
    _builtin("", "v1", "ResourceQuota", "resourcequotas", True, ["quota"], ["status"]),
    _builtin("", "v1", "LimitRange", "limitranges", True, ["limits"]),
    _builtin(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        True,
        ["rc"],
        ["status", "scale"],
        categories=ALL,
    ),
    _builtin(
        "apps", "v1", "Deployment", "deployments", True, ["deploy"], ["status", "scale"], categories=ALL
    ),
    _builtin("apps", "v1", "ReplicaSet", "replicasets", True, ["rs"], ["status", "scale"], categories=ALL),
    _builtin("apps", "v1", "DaemonSet", "daemonsets", True, ["ds"], ["status"], categories=ALL),
    _builtin("apps", "v1", "StatefulSet", "statefulsets", True, ["sts"], ["status", "scale"], categories=ALL),
    _builtin("apps", "v1", "ControllerRevision", "controllerrevisions", True),
    _builtin("batch", "v1", "Job", "jobs", True, (), ["status"], categories=ALL),
    _builtin("batch", "v1", "CronJob", "cronjobs", True, ["cj"], ["status"], categories=ALL),
    _builtin(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        ["hpa"],
        ["status"],
        categories=ALL,
    ),
    _builtin("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ["pdb"], ["status"]),
    _builtin("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    _builtin("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, ["netpol"]),
    _builtin("networking.k8s.io", "v1", "Ingress", "ingresses", True, ["ing"], ["status"]),
    _builtin("coordination.k8s.io", "v1", "Lease", "leases", True),
    _builtin(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
    ),
    _builtin(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
    ),
    _builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _builtin("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ["crd", "crds"],
        ["status"],
    ),
    _builtin("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, ["pc"]),
    _builtin("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ["sc"]),
    _builtin(
        "authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=("create",), virtual=True
    ),
    _builtin(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        False,
        verbs=("create",),
        virtual=True,
    ),
    _builtin(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        True,
        verbs=("create",),
        virtual=True,
    ),
    _builtin(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=("create",),
        virtual=True,
    ),
    _builtin(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        False,
        verbs=("create",),
        virtual=True,
    ),
    _builtin(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        True,
        verbs=("create",),
        virtual=True,
    ),
)

# Discovery lists groups in this order (as kube-apiserver does), custom groups after.
GROUP_ORDER = (
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
)


def crd_resource_type(crd: Mapping[str, Any]) -> ResourceType:
    """The ResourceType a CustomResourceDefinition object defines (served versions only)."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec.get("versions", []) if v.get("served")]
    served.sort(key=lambda v: not v.get("storage"))
    schemas: dict[str, Schema] = {}
    columns: dict[str, tuple[Mapping[str, Any], ...]] = {}
    subresources: set[str] = set()
    for v in served:
        raw = (v.get("schema") or {}).get("openAPIV3Schema")
        if isinstance(raw, Mapping):
            schemas[v["name"]] = crd_schema(raw)
        columns[v["name"]] = tuple(v.get("additionalPrinterColumns") or ())
        for sub in v.get("subresources") or {}:
            subresources.add(sub)
    return ResourceType(
        group=spec["group"],
        versions=tuple(v["name"] for v in served),
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=tuple(sorted(subresources)),
        crd_schemas=schemas,
        printer_columns=columns,
        crd_name=crd["metadata"]["name"],
    )


class ResourceRegistry:
    """All resource types served right now, looked up by (group, version, plural) or by kind."""

    def __init__(self, builtins: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        for rt in builtins:
            self._types[rt.key] = rt
        self.generation = 0  # bumped on every change, so discovery documents can be cached

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self._types.get((group, plural))
        return rt if rt is not None and version in rt.versions else None

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind and version in rt.versions:
                return rt
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group, preferred first, groups in discovery order."""
        found: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = found.setdefault(rt.group, [])
            for v in rt.versions:
                if v not in versions:
                    versions.append(v)
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    def types_in(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and version in rt.versions]

    def register(self, rt: ResourceType) -> None:
        current = self._types.get(rt.key)
        if current is not None and not current.is_custom:
            raise ValueError(f"{rt.plural}.{rt.group} is a built-in resource")
        self._types[rt.key] = rt
        self.generation += 1

    def unregister(self, group: str, plural: str) -> None:
        if self._types.pop((group, plural), None) is not None:
            self.generation += 1
