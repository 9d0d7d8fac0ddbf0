"""The mesh in local clusters, written by hand as the install and injection issues will later write it: the
control plane (`isthmus discovery` as the istio-pilot Deployment in the primary, with Istio's CRDs and its
RBAC), the seed's remote side (reader account, selector-less istio-pilot Service and Endpoints), and workloads
with a sidecar: an init container that sets the capture rules with plain iptables commands, the app, and
`isthmus agent` as uid 1337."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isthmus.config.crds import definitions
from tests.e2e.localkit import Kubectl
from tests.e2e.seedkit import NAMESPACE, PILOT_PORTS, READ, READER_RBAC, service_account_rbac, wait_until

JsonObject = dict[str, Any]
ISTHMUS_IMAGE = "docker.io/isthmus/isthmus:0.1.0"
GENERIC_IMAGE = "isthmus.dev/host"
PROXY_UID = 1337

# Istio 1.4's istio-iptables in REDIRECT mode, as plain commands (`isthmus iptables` comes with injection).
CAPTURE = """
set -e
iptables -t nat -N ISTIO_REDIRECT
iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
iptables -t nat -N ISTIO_IN_REDIRECT
iptables -t nat -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
iptables -t nat -N ISTIO_INBOUND
iptables -t nat -A PREROUTING -p tcp -j ISTIO_INBOUND
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
iptables -t nat -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
iptables -t nat -N ISTIO_OUTPUT
iptables -t nat -A OUTPUT -p tcp -j ISTIO_OUTPUT
iptables -t nat -A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
iptables -t nat -A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
iptables -t nat -A ISTIO_OUTPUT -j ISTIO_REDIRECT
"""

PILOT_RBAC = service_account_rbac(
    "istio-pilot-service-account",
    f"istio-pilot-{NAMESPACE}",
    [
        {"apiGroups": ["networking.istio.io", "security.istio.io"], "resources": ["*"], "verbs": READ},
        {
            "apiGroups": [""],
            "resources": ["endpoints", "pods", "services", "nodes", "namespaces", "configmaps", "secrets"],
            "verbs": READ,
        },
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    ],
)
CA_RBAC = service_account_rbac(
    "istio-citadel-service-account",
    f"istio-citadel-{NAMESPACE}",
    [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": [*READ, "create", "update", "patch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
    ],
)
CA_ADDRESS = f"istio-citadel.{NAMESPACE}.svc:8060"


def _field(path: str) -> JsonObject:
    return {"valueFrom": {"fieldRef": {"fieldPath": path}}}


def pilot_deployment(cluster_id: str, env: dict[str, str] | None = None, secure: bool = False) -> JsonObject:
    """istio-pilot; `secure`: also xDS over mTLS on 15011 with a certificate from the cluster's CA."""
    env_list = [
        {"name": "POD_NAME", **_field("metadata.name")},
        {"name": "POD_IP", **_field("status.podIP")},
        *({"name": k, "value": v} for k, v in (env or {}).items()),
    ]
    secure_args = ["--secure-grpc-address", "$(POD_IP):15011", "--ca-address", CA_ADDRESS] if secure else []
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "istio-pilot",
            "namespace": NAMESPACE,
            "labels": {"app": "pilot", "istio": "pilot"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"istio": "pilot"}},
            "template": {
                "metadata": {"labels": {"app": "pilot", "istio": "pilot"}},
                "spec": {
                    "serviceAccountName": "istio-pilot-service-account",
                    "containers": [
                        {
                            "name": "discovery",
                            "image": ISTHMUS_IMAGE,
                            "args": [
                                "discovery",
                                "--cluster-id",
                                cluster_id,
                                "--http-address",
                                "$(POD_IP):8080",
                                "--monitoring-address",
                                "$(POD_IP):15014",
                                "--grpc-address",
                                "$(POD_IP):15010",
                                *secure_args,
                            ],
                            "env": env_list,
                            "ports": [{"containerPort": p} for p in (8080, 15010, 15011, 15014)],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8080},
                                "periodSeconds": 1,
                            },
                            "volumeMounts": [
                                {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"}
                            ]
                            if secure
                            else [],
                        }
                    ],
                    "volumes": [{"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}]
                    if secure
                    else [],
                },
            },
        },
    }


def pilot_service() -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "istio-pilot",
            "namespace": NAMESPACE,
            "labels": {"app": "pilot", "istio": "pilot"},
        },
        "spec": {
            "selector": {"istio": "pilot"},
            "ports": [
                {"name": name, "port": port}
                for name, port in PILOT_PORTS.items()
                if port in (15010, 15011, 8080, 15014)
            ],
        },
    }


def remote_pilot(pilot_ip: str) -> list[JsonObject]:
    """The seed's selector-less istio-pilot Service and its Endpoints in a remote (remotePilotCreateSvcEndpoint)."""
    ports = [{"name": name, "port": port} for name, port in PILOT_PORTS.items()]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-pilot", "namespace": NAMESPACE},
            "spec": {"clusterIP": "None", "ports": ports},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "istio-pilot", "namespace": NAMESPACE},
            "subsets": [{"addresses": [{"ip": pilot_ip}], "ports": ports}],
        },
    ]


def apply(kc: Kubectl, objects: list[JsonObject], context: str = "cluster1") -> None:
    kc(
        "apply",
        "-f",
        "-",
        context=context,
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )


def ensure_namespace(kc: Kubectl, context: str = "cluster1") -> None:
    kc(
        "apply",
        "-f",
        "-",
        context=context,
        stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
    )


def install_primary(
    kc: Kubectl, cluster_id: str = "cluster1", env: dict[str, str] | None = None, secure: bool = False
) -> str:
    """CRDs, RBAC, istio-pilot in cluster1; returns the pilot pod's IP once it is ready."""
    ensure_namespace(kc)
    for crd in definitions():
        kc("apply", "-f", "-", stdin=json.dumps(crd))
    kc("apply", "-f", "-", stdin=PILOT_RBAC)
    kc("apply", "-f", "-", stdin=json.dumps(pilot_service()))
    kc("apply", "-f", "-", stdin=json.dumps(pilot_deployment(cluster_id, env, secure)))
    kc("rollout", "status", "deployment/istio-pilot", "-n", NAMESPACE, "--timeout=120s")
    return pilot_ip(kc)


def pilot_ip(kc: Kubectl) -> str:
    return wait_until(
        "the istio-pilot pod's IP",
        lambda: kc(
            "get", "pod", "-n", NAMESPACE, "-l", "istio=pilot", "-o", "jsonpath={.items[0].status.podIP}"
        ),
        60,
    )


def ca_objects(
    name: str = "istio-citadel", secret: str = "cacerts", env: dict[str, str] | None = None
) -> list[JsonObject]:
    """The cluster's CA (`isthmus ca` with the plug-in certificates of Secret `secret`) and its Service."""
    labels = {"app": name, "istio": "citadel" if name == "istio-citadel" else name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "istio-citadel-service-account",
                    "containers": [
                        {
                            "name": "citadel",
                            "image": ISTHMUS_IMAGE,
                            "args": [
                                "ca",
                                "--plugin-ca",
                                "--cacerts",
                                "/etc/cacerts",
                                "--grpc-address",
                                "$(POD_IP):8060",
                                "--http-address",
                                "$(POD_IP):15014",
                                *(["--no-publish-roots"] if name != "istio-citadel" else []),
                                "--service-name",
                                name,
                            ],
                            "env": [
                                {"name": "POD_IP", **_field("status.podIP")},
                                *({"name": k, "value": v} for k, v in (env or {}).items()),
                            ],
                            "ports": [{"containerPort": 8060}, {"containerPort": 15014}],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 15014},
                                "periodSeconds": 1,
                            },
                            "volumeMounts": [
                                {"name": "cacerts", "mountPath": "/etc/cacerts", "readOnly": True}
                            ],
                        }
                    ],
                    "volumes": [{"name": "cacerts", "secret": {"secretName": secret, "optional": True}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "grpc-citadel", "port": 8060}]},
    }
    return [deployment, service]


def install_ca(
    kc: Kubectl,
    context: str,
    cacerts: Path,
    *,
    name: str = "istio-citadel",
    secret: str = "cacerts",
    env: dict[str, str] | None = None,
) -> None:
    """As the seed: `kubectl create secret generic cacerts -n istio-system --from-file=...`, then the CA."""
    ensure_namespace(kc, context)
    kc(
        "create",
        "secret",
        "generic",
        secret,
        "-n",
        NAMESPACE,
        *(
            f"--from-file={cacerts / f}"
            for f in ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
        ),
        context=context,
    )
    kc("apply", "-f", "-", stdin=CA_RBAC, context=context)
    for obj in ca_objects(name, secret, env):
        kc("apply", "-f", "-", stdin=json.dumps(obj), context=context)
    kc("rollout", "status", f"deployment/{name}", "-n", NAMESPACE, "--timeout=120s", context=context)


def install_remote(kc: Kubectl, context: str, pilot: str) -> None:
    ensure_namespace(kc, context)
    kc("apply", "-f", "-", stdin=READER_RBAC, context=context)
    for obj in remote_pilot(pilot):
        kc("apply", "-f", "-", stdin=json.dumps(obj), context=context)


def sidecar_containers(
    app: str,
    *,
    discovery: str = "istio-pilot.istio-system:15010",
    xds: str = "delta",
    ca: str = "",
    secure_control_plane: bool = False,
) -> tuple[JsonObject, JsonObject]:
    """The init container (capture rules) and the istio-proxy container, as injection will write them."""
    init = {
        "name": "istio-init",
        "image": GENERIC_IMAGE,
        "command": ["sh", "-c", CAPTURE],
        "securityContext": {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
    }
    proxy = {
        "name": "istio-proxy",
        "image": ISTHMUS_IMAGE,
        "args": [
            "agent",
            "proxy",
            "sidecar",
            "--domain",
            "$(POD_NAMESPACE).svc.cluster.local",
            "--configPath",
            "/etc/istio/proxy",
            "--serviceCluster",
            f"{app}.$(POD_NAMESPACE)",
            "--discoveryAddress",
            discovery.replace(":15010", ":15011") if secure_control_plane else discovery,
            "--proxyAdminPort",
            "15000",
            "--statusPort",
            "15020",
            "--controlPlaneAuthPolicy",
            "MUTUAL_TLS" if secure_control_plane else "NONE",
            "--xdsProtocol",
            xds,
            *(["--caAddress", ca] if ca else []),
        ],
        "env": [
            {"name": "POD_NAME", **_field("metadata.name")},
            {"name": "POD_NAMESPACE", **_field("metadata.namespace")},
            {"name": "INSTANCE_IP", **_field("status.podIP")},
            {"name": "SERVICE_ACCOUNT", **_field("spec.serviceAccountName")},
            {
                "name": "ISTIO_META_CLUSTER_ID",
                "value": "Kubernetes",
            },  # as the seed's remotes do: the registry decides
            {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
        ],
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15020}, "periodSeconds": 1},
        "securityContext": {"runAsUser": PROXY_UID, "runAsGroup": PROXY_UID},
        "volumeMounts": [
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            *([{"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"}] if ca else []),
        ],
    }
    return init, proxy


def with_sidecar(
    deployment: JsonObject,
    *,
    xds: str = "delta",
    ca: str = "",
    roots: str = "istio-ca-root-cert",
    secure_control_plane: bool = False,
) -> JsonObject:
    """A Deployment with the sidecar added to its pod template; with `ca`, certificates from that CA and the
    roots of ConfigMap `roots`."""
    spec = deployment["spec"]["template"]["spec"]
    app = deployment["spec"]["template"]["metadata"]["labels"].get("app", deployment["metadata"]["name"])
    init, proxy = sidecar_containers(app, xds=xds, ca=ca, secure_control_plane=secure_control_plane)
    spec["initContainers"] = [init, *spec.get("initContainers", [])]
    spec["containers"] = [*spec["containers"], proxy]
    spec.setdefault("volumes", []).append({"name": "istio-envoy", "emptyDir": {"medium": "Memory"}})
    if ca:
        spec["volumes"].append({"name": "istiod-ca-cert", "configMap": {"name": roots}})
    deployment["spec"]["template"]["metadata"].setdefault("annotations", {})["sidecar.istio.io/status"] = (
        json.dumps(
            {"initContainers": ["istio-init"], "containers": ["istio-proxy"], "volumes": ["istio-envoy"]}
        )
    )
    return deployment


def deployment(
    name: str, labels: dict[str, str], container: JsonObject, namespace: str = "sample", replicas: int = 1
) -> JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def service(
    name: str, port: int, port_name: str, selector: dict[str, str], namespace: str = "sample"
) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"selector": selector, "ports": [{"name": port_name, "port": port}]},
    }
