"""The seed's steps and the objects it writes, shared by the end-to-end tests that follow it: the reader account
and its RBAC in a remote, the selector-less istio-pilot Service, "Generate configuration files for remote
clusters" and "Instantiate the credentials", and waiting for what they bring about."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.e2e.localkit import Kubectl

T = TypeVar("T")
JsonObject = dict[str, Any]

SAMPLES = Path(__file__).parent / "fixtures" / "istio-samples"
NAMESPACE = "istio-system"
READER = "istio-reader-service-account"
MULTICLUSTER_LABEL = "istio/multiCluster=true"
# The seed's ClusterRole for the reader (istio-reader-<namespace> of the 1.4 base chart), with what a reader of
# EndpointSlices and Namespaces needs on top.
READ = ["get", "list", "watch"]


def service_account_rbac(
    account: str, role: str, rules: list[JsonObject], labels: dict[str, str] | None = None
) -> str:
    """A ServiceAccount in the control plane's namespace with a ClusterRole of `rules` bound to it (YAML)."""
    meta = {"labels": labels} if labels else {}
    documents = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": NAMESPACE, **meta},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role, **meta},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role, **meta},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
        },
    ]
    return yaml.safe_dump_all(documents)


READER_RBAC = service_account_rbac(
    READER,
    f"istio-reader-{NAMESPACE}",
    [
        {
            "apiGroups": [
                "config.istio.io",
                "rbac.istio.io",
                "security.istio.io",
                "networking.istio.io",
                "authentication.istio.io",
            ],
            "resources": ["*"],
            "verbs": READ,
        },
        {
            "apiGroups": [""],
            "resources": ["endpoints", "pods", "services", "nodes", "namespaces", "replicationcontrollers"],
            "verbs": READ,
        },
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": READ},
    ],
    labels={"app": "istio-reader"},
)

# The seed's remote install with remotePilotCreateSvcEndpoint: a selector-less istio-pilot Service and its
# hand-written Endpoints holding the primary's pilot pod IP (ports of the 1.4 base chart).
PILOT_PORTS = {
    "http-old-discovery": 15003,
    "https-discovery": 15005,
    "http-discovery": 15007,
    "grpc-xds": 15010,
    "https-xds": 15011,
    "http-legacy-discovery": 8080,
    "http-monitoring": 15014,
}


# -- waiting ----------------------------------------------------------------------------------------------


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds showing its last value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except (OSError, AssertionError, KeyError, ValueError, StopIteration) as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


# -- the seed's steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteKubeconfig:
    """The kubeconfig file the seed writes for a remote cluster, and what went into it."""

    path: Path
    cluster_name: str
    server: str
    ca_data: str
    token: str


def kubeconfig_text(cluster_name: str, server: str, ca_data: str, token: str) -> str:
    """The seed's here-document, as it writes it."""
    return f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca_data}
    server: {server}
  name: {cluster_name}
contexts:
- context:
    cluster: {cluster_name}
    user: {cluster_name}
  name: {cluster_name}
current-context: {cluster_name}
kind: Config
preferences: {{}}
users:
- name: {cluster_name}
  user:
    token: {token}
"""


def generate_remote_kubeconfig(
    kubectl: Kubectl,
    context: str,
    work_dir: Path,
    *,
    service_account: str = READER,
    secret_name: str | None = None,
    cluster_name: str | None = None,
) -> RemoteKubeconfig:
    """The seed's "Generate configuration files for remote clusters", run against the remote `context`
    (`secret_name`: another token Secret of the account; `cluster_name`: another name inside the file)."""
    # CLUSTER_NAME=$(kubectl config view --minify=true -o jsonpath='{.clusters[].name}')
    name = kubectl("config", "view", "--minify=true", "-o", "jsonpath={.clusters[].name}", context=context)
    name = cluster_name or name
    # SERVER=$(kubectl config view --minify=true -o jsonpath='{.clusters[].cluster.server}')
    server = kubectl(
        "config", "view", "--minify=true", "-o", "jsonpath={.clusters[].cluster.server}", context=context
    )
    # SECRET_NAME=$(kubectl get sa ${SERVICE_ACCOUNT} -n ${NAMESPACE} -o jsonpath='{.secrets[].name}')
    secret = secret_name or wait_until(
        f"the token Secret of {service_account} in {context}",
        lambda: kubectl(
            "get", "sa", service_account, "-n", NAMESPACE, "-o", "jsonpath={.secrets[].name}", context=context
        ),
        30,
    )
    # CA_DATA=$(kubectl get secret ${SECRET_NAME} -n ${NAMESPACE} -o jsonpath="{.data['ca\.crt']}")
    ca_data = wait_until(
        f"ca.crt in {secret}",
        lambda: kubectl(
            "get", "secret", secret, "-n", NAMESPACE, "-o", r"jsonpath={.data['ca\.crt']}", context=context
        ),
        30,
    )
    # TOKEN=$(kubectl get secret ${SECRET_NAME} -n ${NAMESPACE} -o jsonpath="{.data['token']}" | base64 --decode)
    token_b64 = wait_until(
        f"the token in {secret}",
        lambda: kubectl(
            "get", "secret", secret, "-n", NAMESPACE, "-o", "jsonpath={.data['token']}", context=context
        ),
        30,
    )
    token = base64.b64decode(token_b64).decode()
    # KUBECFG_FILE=${WORK_DIR}/${CLUSTER_NAME}; cat <<EOF > ${KUBECFG_FILE} ...
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / name
    path.write_text(kubeconfig_text(name, server, ca_data, token))
    return RemoteKubeconfig(path, name, server, ca_data, token)


def instantiate_credentials(kubectl: Kubectl, kubeconfig: Path, secret: str | None = None) -> None:
    """The seed's "Instantiate the credentials", in the primary cluster1: the data key is the file's name."""
    name = secret or kubeconfig.name
    kubectl("create", "secret", "generic", name, "--from-file", str(kubeconfig), "-n", NAMESPACE)
    kubectl("label", "secret", name, MULTICLUSTER_LABEL, "-n", NAMESPACE)


def reapply_credentials(kubectl: Kubectl, kubeconfig: Path, secret: str | None = None) -> None:
    """The same Secret written again from a (maybe changed) file, as an operator re-runs the steps:
    `kubectl create secret ... --dry-run=client -o yaml | kubectl apply -f -`, then the label."""
    name = secret or kubeconfig.name
    manifest = kubectl(
        "create",
        "secret",
        "generic",
        name,
        "--from-file",
        str(kubeconfig),
        "-n",
        NAMESPACE,
        "--dry-run=client",
        "-o",
        "yaml",
    )
    kubectl("apply", "-f", "-", stdin=manifest)
    kubectl("label", "secret", name, MULTICLUSTER_LABEL, "--overwrite", "-n", NAMESPACE)


def pod_ips(kubectl: Kubectl, selector: str, context: str, namespace: str = "sample") -> dict[str, str]:
    """Pod name -> IP of the running pods that match."""
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json", context=context))
    return {
        p["metadata"]["name"]: p["status"]["podIP"]
        for p in pods["items"]
        if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")
    }
