"""The Istio CRDs Isthmus ships (the install applies them): networking.istio.io kinds served as v1alpha3,
v1beta1 and v1, security.istio.io kinds as v1beta1 and v1, with Istio's names, short names, categories and
printer columns. Their schemas keep `spec` open: the control plane validates each object and reports the field
that is wrong (a schema here would only repeat that check, less clearly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonObject = dict[str, Any]

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"


@dataclass(frozen=True)
class Kind:
    group: str
    kind: str
    plural: str
    short_names: tuple[str, ...]
    versions: tuple[str, ...]
    storage: str
    columns: tuple[tuple[str, str, str, str], ...] = ()  # name, type, jsonPath, description

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.group}"


_AGE = ("Age", "date", ".metadata.creationTimestamp", "")
_NETWORKING_VERSIONS = ("v1alpha3", "v1beta1", "v1")
_SECURITY_VERSIONS = ("v1beta1", "v1")

KINDS = (
    Kind(
        NETWORKING,
        "VirtualService",
        "virtualservices",
        ("vs",),
        _NETWORKING_VERSIONS,
        "v1alpha3",
        (
            (
                "Gateways",
                "string",
                ".spec.gateways",
                "The names of gateways and sidecars that should apply these routes",
            ),
            ("Hosts", "string", ".spec.hosts", "The destination hosts to which traffic is being sent"),
            _AGE,
        ),
    ),
    Kind(
        NETWORKING,
        "DestinationRule",
        "destinationrules",
        ("dr",),
        _NETWORKING_VERSIONS,
        "v1alpha3",
        (("Host", "string", ".spec.host", "The name of a service from the service registry"), _AGE),
    ),
    Kind(NETWORKING, "Gateway", "gateways", ("gw",), _NETWORKING_VERSIONS, "v1alpha3", (_AGE,)),
    Kind(
        NETWORKING,
        "ServiceEntry",
        "serviceentries",
        ("se",),
        _NETWORKING_VERSIONS,
        "v1alpha3",
        (
            ("Hosts", "string", ".spec.hosts", "The hosts associated with the ServiceEntry"),
            (
                "Location",
                "string",
                ".spec.location",
                "Whether the service is external to the mesh or part of it",
            ),
            ("Resolution", "string", ".spec.resolution", "Service resolution mode for the hosts"),
            _AGE,
        ),
    ),
    Kind(NETWORKING, "Sidecar", "sidecars", (), _NETWORKING_VERSIONS, "v1alpha3", (_AGE,)),
    Kind(NETWORKING, "WorkloadEntry", "workloadentries", ("we",), _NETWORKING_VERSIONS, "v1alpha3", (_AGE,)),
    Kind(NETWORKING, "WorkloadGroup", "workloadgroups", ("wg",), _NETWORKING_VERSIONS, "v1alpha3", (_AGE,)),
    Kind(NETWORKING, "EnvoyFilter", "envoyfilters", (), ("v1alpha3",), "v1alpha3", (_AGE,)),
    Kind(
        SECURITY,
        "PeerAuthentication",
        "peerauthentications",
        ("pa",),
        _SECURITY_VERSIONS,
        "v1beta1",
        (("Mode", "string", ".spec.mtls.mode", "Defines the mTLS mode used for peer authentication."), _AGE),
    ),
    Kind(
        SECURITY,
        "AuthorizationPolicy",
        "authorizationpolicies",
        ("ap",),
        _SECURITY_VERSIONS,
        "v1beta1",
        (("Action", "string", ".spec.action", "The operation to take."), _AGE),
    ),
    Kind(
        SECURITY,
        "RequestAuthentication",
        "requestauthentications",
        ("ra",),
        _SECURITY_VERSIONS,
        "v1beta1",
        (_AGE,),
    ),
)


def kind(name: str) -> Kind:
    return next(k for k in KINDS if k.kind == name)


_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def definition(k: Kind) -> JsonObject:
    """The CustomResourceDefinition of one kind."""
    categories = ["istio-io", f"{k.group.split('.')[0]}-istio-io"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": k.name,
            "labels": {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": "istio"},
        },
        "spec": {
            "group": k.group,
            "names": {
                "kind": k.kind,
                "listKind": f"{k.kind}List",
                "plural": k.plural,
                "singular": k.kind.lower(),
                "shortNames": list(k.short_names),
                "categories": categories,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": version == k.storage,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": n, "type": t, "jsonPath": p, **({"description": d} if d else {})}
                        for n, t, p, d in k.columns
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": _OPEN, "status": _OPEN},
                        }
                    },
                }
                for version in k.versions
            ],
        },
    }


def definitions() -> list[JsonObject]:
    return [definition(k) for k in KINDS]
