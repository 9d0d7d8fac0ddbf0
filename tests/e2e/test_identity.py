"""Identity and access on real local clusters, driven by the real kubectl: the seed's service-account token
and kubeconfig, TokenRequest and TokenReview, RBAC with the default roles, `kubectl auth can-i`, the
namespace defaults, the legacy token switch and the issuer's OIDC discovery."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jwt
import yaml

from isthmus.local.apiserver.tokens import (
    API_AUDIENCES,
    ServiceAccountTokens,
    generate_signing_key,
    load_signing_key,
)
from tests.e2e.localkit import Kubectl, LocalClusters

T = TypeVar("T")

SEED_KUBECONFIG = r"""
set -euo pipefail
export WORK_DIR=$(pwd)
CLUSTER_NAME=$(kubectl config view --minify=true -o jsonpath='{.clusters[].name}')
export KUBECFG_FILE=${WORK_DIR}/${CLUSTER_NAME}
SERVER=$(kubectl config view --minify=true -o jsonpath='{.clusters[].cluster.server}')
NAMESPACE=istio-system
SERVICE_ACCOUNT=istio-reader-service-account
SECRET_NAME=$(kubectl get sa ${SERVICE_ACCOUNT} -n ${NAMESPACE} -o jsonpath='{.secrets[].name}')
CA_DATA=$(kubectl get secret ${SECRET_NAME} -n ${NAMESPACE} -o jsonpath="{.data['ca\.crt']}")
TOKEN=$(kubectl get secret ${SECRET_NAME} -n ${NAMESPACE} -o jsonpath="{.data['token']}" | base64 --decode)
cat <<EOF > ${KUBECFG_FILE}
apiVersion: v1
clusters:
   - cluster:
       certificate-authority-data: ${CA_DATA}
       server: ${SERVER}
     name: ${CLUSTER_NAME}
contexts:
   - context:
       cluster: ${CLUSTER_NAME}
       user: ${CLUSTER_NAME}
     name: ${CLUSTER_NAME}
current-context: ${CLUSTER_NAME}
kind: Config
preferences: {}
users:
   - name: ${CLUSTER_NAME}
     user:
       token: ${TOKEN}
EOF
"""


def wait_for(what: str, probe: Callable[[], T], timeout: float = 15.0) -> T:
    """Poll until `probe` returns something truthy (controllers act a moment after a write)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def token_kubectl(clusters: LocalClusters, tmp_path: Path, token: str, name: str) -> Kubectl:
    """kubectl as the holder of `token`: the admin kubeconfig's cluster (server, CA), this token as user."""
    config = clusters.kubeconfig_data()
    cluster = next(c for c in config["clusters"] if c["name"] == "cluster1")
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "cluster1", "context": {"cluster": "cluster1", "user": name}}],
        "current-context": "cluster1",
    }
    path = tmp_path / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return Kubectl(path, tmp_path / f"{name}-cache")


def token_review(kubectl: Kubectl, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec})
    out = kubectl("create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", "-", stdin=body)
    status: dict[str, Any] = json.loads(out)["status"]
    return status


def failure(kubectl: Kubectl, *args: str) -> str:
    """What a command printed on stderr if it failed; "" while it succeeds."""
    result = kubectl.run(*args, check=False)
    return result.err if result.code != 0 else ""


def refused(kubectl: Kubectl, token: str) -> dict[str, Any] | None:
    """The TokenReview status of a token once it is refused; None while it is accepted."""
    status = token_review(kubectl, token)
    return status if status.get("error") else None


def whoami(kubectl: Kubectl) -> str:
    return str(json.loads(kubectl("auth", "whoami", "-o", "json"))["status"]["userInfo"]["username"])


def account(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(kubectl("get", "sa", name, "-n", namespace, "-o", "json"))
    return obj


def test_seed_token_and_kubeconfig(clusters: LocalClusters, kubectl: Kubectl, tmp_path: Path) -> None:
    """The seed's guide reads the reader account's token Secret and builds a kubeconfig from it, with the
    cluster's own server address: that kubeconfig works with kubectl, within what RBAC grants the account."""
    kubectl("create", "namespace", "istio-system")
    kubectl("create", "serviceaccount", "istio-reader-service-account", "-n", "istio-system")
    wait_for(
        "the reader's token Secret",
        lambda: kubectl(
            "get",
            "sa",
            "istio-reader-service-account",
            "-n",
            "istio-system",
            "-o",
            "jsonpath={.secrets[].name}",
        ),
    )
    subprocess.run(
        ["bash", "-c", SEED_KUBECONFIG],
        cwd=tmp_path,
        env={"KUBECONFIG": str(clusters.kubeconfig), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        timeout=60,
    )
    built = yaml.safe_load((tmp_path / "cluster1").read_text())
    assert built["clusters"][0]["cluster"]["server"] == clusters.server("cluster1")
    ca = base64.b64decode(built["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == (clusters.folder / "ca.crt").read_bytes(), "ca.crt is the cluster CA"
    reader = Kubectl(tmp_path / "cluster1", tmp_path / "reader-cache")
    assert whoami(reader) == "system:serviceaccount:istio-system:istio-reader-service-account"
    err = reader.fails("get", "pods", "--all-namespaces")
    assert (
        'pods is forbidden: User "system:serviceaccount:istio-system:istio-reader-service-account" cannot list '
        'resource "pods" in API group "" at the cluster scope'
    ) in err
    kubectl(
        "create",
        "clusterrolebinding",
        "istio-reader",
        "--clusterrole",
        "view",
        "--serviceaccount",
        "istio-system:istio-reader-service-account",
    )
    assert "kube-root-ca.crt" in wait_for(
        "the reader to see config maps",
        lambda: reader.run("get", "configmaps", "--all-namespaces", check=False).out,
    )
    kubectl("delete", "serviceaccount", "istio-reader-service-account", "-n", "istio-system")
    gone = wait_for(
        "the reader's token to stop working",
        lambda: failure(reader, "auth", "whoami"),
    )
    assert "Unauthorized" in gone


def test_token_request_and_review(clusters: LocalClusters, kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "tokens")
    kubectl("create", "serviceaccount", "builder", "-n", "tokens")
    token = kubectl("create", "token", "builder", "-n", "tokens").strip()
    status = token_review(kubectl, token)
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:tokens:builder"
    assert status["user"]["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:tokens",
        "system:authenticated",
    ]
    assert status["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600

    hour = jwt.decode(
        kubectl("create", "token", "builder", "-n", "tokens", "--duration", "2h").strip(),
        options={"verify_signature": False},
    )
    assert hour["exp"] - hour["iat"] == 7200
    err = kubectl.fails("create", "token", "builder", "-n", "tokens", "--duration", "5m")
    assert (
        'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 300: may not '
        "specify a duration less than 10 minutes"
    ) in err
    assert 'serviceaccounts "nobody" not found' in kubectl.fails("create", "token", "nobody", "-n", "tokens")

    vault = kubectl("create", "token", "builder", "-n", "tokens", "--audience", "vault").strip()
    other = token_review(kubectl, vault)
    assert "authenticated" not in other
    assert other["error"] == (
        'token audiences ["vault"] is invalid for the target audiences '
        '["https://kubernetes.default.svc.cluster.local"]'
    )
    for_vault = token_review(kubectl, vault, ["vault", "consul"])
    assert for_vault["authenticated"] is True and for_vault["audiences"] == ["vault"]

    sa = account(kubectl, "tokens", "builder")
    key = load_signing_key(clusters.folder / "cluster1" / "sa.key")
    expired, _ = ServiceAccountTokens(key, lambda *_: None, clock=lambda: time.time() - 7200).issue(
        sa, API_AUDIENCES, 3600
    )
    assert token_review(kubectl, expired)["error"] == "service account token has expired"
    forged, _ = ServiceAccountTokens(generate_signing_key(), lambda *_: None).issue(sa, API_AUDIENCES, 3600)
    forged_status = token_review(kubectl, forged)
    assert "authenticated" not in forged_status and "signature does not verify" in forged_status["error"]

    kubectl("delete", "serviceaccount", "builder", "-n", "tokens")
    assert token_review(kubectl, token)["error"] == 'serviceaccount "builder" not found'
    assert token_review(kubectl, "not-a-token") == {"user": {}, "error": "invalid bearer token"}


def test_pod_bound_token_ends_with_its_pod(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "bound")
    kubectl("create", "serviceaccount", "runner", "-n", "bound")
    kubectl(
        "run",
        "worker",
        "-n",
        "bound",
        "--image",
        "registry.invalid/isthmus/none",
        "--overrides",
        json.dumps({"spec": {"serviceAccountName": "runner"}}),
    )
    pod_uid = kubectl("get", "pod", "worker", "-n", "bound", "-o", "jsonpath={.metadata.uid}")
    token = kubectl(
        "create",
        "token",
        "runner",
        "-n",
        "bound",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "worker",
    ).strip()
    status = token_review(kubectl, token)
    assert status["authenticated"] is True
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["worker"]
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [pod_uid]
    err = kubectl.fails(
        "create",
        "token",
        "default",
        "-n",
        "bound",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "worker",
    )
    assert 'cannot bind token for serviceaccount "default" to pod running with serviceaccount "runner"' in err
    kubectl("delete", "pod", "worker", "-n", "bound", "--grace-period=0", "--force")
    rejected = wait_for(
        "the bound token to be refused",
        lambda: refused(kubectl, token),
        timeout=30,
    )
    assert rejected is not None and rejected["error"] == 'pod "worker" not found'
    assert 'pods "gone" not found' in kubectl.fails(
        "create",
        "token",
        "runner",
        "-n",
        "bound",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "gone",
    )


def test_view_account_reads_but_cannot_write(
    clusters: LocalClusters, kubectl: Kubectl, tmp_path: Path
) -> None:
    kubectl("create", "namespace", "ro")
    kubectl("create", "serviceaccount", "viewer", "-n", "ro")
    kubectl(
        "create",
        "rolebinding",
        "viewer",
        "-n",
        "ro",
        "--clusterrole",
        "view",
        "--serviceaccount",
        "ro:viewer",
    )
    viewer = token_kubectl(
        clusters, tmp_path, kubectl("create", "token", "viewer", "-n", "ro").strip(), "viewer"
    )
    assert "kube-root-ca.crt" in wait_for(
        "kube-root-ca.crt in ro", lambda: viewer.run("get", "configmaps", "-n", "ro", check=False).out
    )
    assert viewer("get", "pods", "-n", "ro") == ""
    assert "default" in viewer("get", "serviceaccounts", "-n", "ro")
    err = viewer.fails("create", "configmap", "settings", "-n", "ro", "--from-literal", "a=b")
    assert err.strip() == (
        'error: failed to create configmap: configmaps is forbidden: User "system:serviceaccount:ro:viewer" '
        'cannot create resource "configmaps" in API group "" in the namespace "ro"'
    )
    err = viewer.fails("delete", "configmap", "kube-root-ca.crt", "-n", "ro")
    assert (
        'Error from server (Forbidden): configmaps "kube-root-ca.crt" is forbidden: User '
        '"system:serviceaccount:ro:viewer" cannot delete resource "configmaps" in API group "" in the namespace '
        '"ro"'
    ) in err
    err = viewer.fails("create", "token", "viewer", "-n", "ro")
    assert (
        'serviceaccounts "viewer" is forbidden: User "system:serviceaccount:ro:viewer" cannot create resource '
        '"serviceaccounts/token" in API group "" in the namespace "ro"'
    ) in err, "subresources need their own rule"
    err = viewer.fails("get", "secrets", "-n", "ro")
    assert 'cannot list resource "secrets" in API group "" in the namespace "ro"' in err, "view hides secrets"
    assert viewer.run("get", "pods", "-n", "default", check=False).code != 0, "bound in ro only"

    assert viewer("auth", "can-i", "list", "pods", "-n", "ro").strip() == "yes"
    denied = viewer.run("auth", "can-i", "create", "configmaps", "-n", "ro", check=False)
    assert (denied.code, denied.out.strip()) == (1, "no")
    as_viewer = ("--as", "system:serviceaccount:ro:viewer")
    assert kubectl("auth", "can-i", "get", "deployments.apps", "-n", "ro", *as_viewer).strip() == "yes"
    assert (
        kubectl.run("auth", "can-i", "delete", "pods", "-n", "ro", *as_viewer, check=False).out.strip()
        == "no"
    )
    assert kubectl.run("auth", "can-i", "get", "pods", "-n", "default", *as_viewer, check=False).code == 1
    listed = viewer("auth", "can-i", "--list", "-n", "ro")
    rows = {line.split()[0]: line for line in listed.splitlines()[1:] if not line.startswith(" ")}
    assert rows["pods"].rstrip().endswith("[get list watch]")
    assert "selfsubjectaccessreviews.authorization.k8s.io" in rows
    assert "secrets" not in rows
    admin_rows = kubectl("auth", "can-i", "--list", "-n", "ro").splitlines()
    assert admin_rows[1].split() == ["*.*", "[]", "[]", "[*]"]


def test_secrets_of_another_namespace_stay_hidden(
    clusters: LocalClusters, kubectl: Kubectl, tmp_path: Path
) -> None:
    for namespace in ("team-a", "team-b"):
        kubectl("create", "namespace", namespace)
        kubectl("create", "secret", "generic", "db", "-n", namespace, "--from-literal", "password=x")
    kubectl("create", "serviceaccount", "app", "-n", "team-a")
    kubectl("create", "role", "secret-reader", "-n", "team-a", "--verb", "get,list", "--resource", "secrets")
    kubectl(
        "create",
        "rolebinding",
        "app",
        "-n",
        "team-a",
        "--role",
        "secret-reader",
        "--serviceaccount",
        "team-a:app",
    )
    app = token_kubectl(clusters, tmp_path, kubectl("create", "token", "app", "-n", "team-a").strip(), "app")
    assert (
        base64.b64decode(app("get", "secret", "db", "-n", "team-a", "-o", "jsonpath={.data.password}"))
        == b"x"
    )
    err = app.fails("get", "secret", "db", "-n", "team-b")
    assert (
        'Error from server (Forbidden): secrets "db" is forbidden: User "system:serviceaccount:team-a:app" '
        'cannot get resource "secrets" in API group "" in the namespace "team-b"'
    ) in err
    assert "cannot list resource" in app.fails("get", "secrets", "--all-namespaces")


def test_no_escalation_through_rbac(clusters: LocalClusters, kubectl: Kubectl, tmp_path: Path) -> None:
    """A namespace admin may delegate what it holds, not cluster-admin."""
    kubectl("create", "namespace", "delegated")
    kubectl("create", "serviceaccount", "lead", "-n", "delegated")
    kubectl(
        "create",
        "rolebinding",
        "lead",
        "-n",
        "delegated",
        "--clusterrole",
        "admin",
        "--serviceaccount",
        "delegated:lead",
    )
    lead = token_kubectl(
        clusters, tmp_path, kubectl("create", "token", "lead", "-n", "delegated").strip(), "lead"
    )
    lead("create", "rolebinding", "bob-edit", "-n", "delegated", "--clusterrole", "edit", "--user", "bob")
    err = lead.fails(
        "create",
        "rolebinding",
        "bob-root",
        "-n",
        "delegated",
        "--clusterrole",
        "cluster-admin",
        "--user",
        "bob",
    )
    assert (
        'rolebindings.rbac.authorization.k8s.io "bob-root" is forbidden: user "system:serviceaccount:delegated:lead" '
        '(groups=["system:serviceaccounts" "system:serviceaccounts:delegated" "system:authenticated"]) is '
        "attempting to grant RBAC permissions not currently held:"
    ) in err
    assert kubectl.run("get", "rolebinding", "bob-root", "-n", "delegated", check=False).code != 0


def test_user_made_token_secret_is_filled_and_revoked(
    clusters: LocalClusters, kubectl: Kubectl, tmp_path: Path
) -> None:
    """A token Secret created with only the account's name gets its token; deleting it revokes the token."""
    kubectl("create", "namespace", "manual")
    kubectl("create", "serviceaccount", "robot", "-n", "manual")
    err = kubectl.fails(
        "apply",
        "-f",
        "-",
        stdin="apiVersion: v1\nkind: Secret\nmetadata:\n  name: unnamed\n  namespace: manual\n"
        "type: kubernetes.io/service-account-token\n",
    )
    assert (
        'The Secret "unnamed" is invalid: metadata.annotations[kubernetes.io/service-account.name]: Required value'
        in err
    )
    kubectl(
        "apply",
        "-f",
        "-",
        stdin="apiVersion: v1\nkind: Secret\nmetadata:\n  name: robot-token\n  namespace: manual\n"
        "  annotations:\n    kubernetes.io/service-account.name: robot\n"
        "type: kubernetes.io/service-account-token\n",
    )
    encoded = wait_for(
        "the token controller to fill the Secret",
        lambda: kubectl("get", "secret", "robot-token", "-n", "manual", "-o", "jsonpath={.data.token}"),
    )
    secret = json.loads(kubectl("get", "secret", "robot-token", "-n", "manual", "-o", "json"))
    sa = account(kubectl, "manual", "robot")
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == sa["metadata"]["uid"]
    assert base64.b64decode(secret["data"]["namespace"]) == b"manual"
    assert base64.b64decode(secret["data"]["ca.crt"]) == (clusters.folder / "ca.crt").read_bytes()
    robot = token_kubectl(clusters, tmp_path, base64.b64decode(encoded).decode(), "robot")
    assert whoami(robot) == "system:serviceaccount:manual:robot"
    kubectl("delete", "secret", "robot-token", "-n", "manual")
    err = robot.fails("auth", "whoami")
    assert "Unauthorized" in err


def test_namespace_defaults(clusters: LocalClusters, kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "fresh")
    ca = (clusters.folder / "ca.crt").read_text()

    def root_ca() -> str:
        return kubectl.run(
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "fresh",
            "-o",
            "jsonpath={.data.ca\\.crt}",
            check=False,
        ).out

    assert wait_for("kube-root-ca.crt", root_ca).strip() == ca.strip()
    assert wait_for(
        "the default account",
        lambda: kubectl.run("get", "sa", "default", "-n", "fresh", check=False).code == 0,
    )
    kubectl("delete", "serviceaccount", "default", "-n", "fresh")
    kubectl("delete", "configmap", "kube-root-ca.crt", "-n", "fresh")
    wait_for(
        "the default account again",
        lambda: kubectl.run("get", "sa", "default", "-n", "fresh", check=False).code == 0,
    )
    assert wait_for("kube-root-ca.crt again", root_ca).strip() == ca.strip()
    kubectl("patch", "configmap", "kube-root-ca.crt", "-n", "fresh", "-p", '{"data":{"ca.crt":"tampered"}}')
    assert (
        wait_for("kube-root-ca.crt restored", lambda: "" if root_ca() == "tampered" else root_ca()).strip()
        == ca.strip()
    )
    legacy = wait_for(
        "the default account's token Secret",
        lambda: kubectl("get", "sa", "default", "-n", "fresh", "-o", "jsonpath={.secrets[].name}"),
    )
    assert legacy.startswith("default-token-") and len(legacy) == len("default-token-") + 5


def test_openid_discovery(clusters: LocalClusters, kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("create", "namespace", "oidc")
    kubectl("create", "serviceaccount", "client", "-n", "oidc")
    token = kubectl("create", "token", "client", "-n", "oidc", "--audience", "vault").strip()
    api_token = kubectl("create", "token", "client", "-n", "oidc").strip()
    client = token_kubectl(clusters, tmp_path, api_token, "client")
    discovery = json.loads(client("get", "--raw", "/.well-known/openid-configuration"))
    assert discovery["issuer"] == "https://kubernetes.default.svc.cluster.local"
    assert discovery["jwks_uri"] == clusters.server("cluster1") + "/openid/v1/jwks"
    jwks = json.loads(client("get", "--raw", "/openid/v1/jwks"))
    (key,) = jwks["keys"]
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience="vault")
    assert claims["sub"] == "system:serviceaccount:oidc:client"
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "client"


def test_legacy_token_switch(clusters: LocalClusters, kubectl: Kubectl) -> None:
    """`up --no-legacy-sa-tokens` restarts the API servers without token Secrets (as Kubernetes 1.24+); the
    next `up` remembers it. Last in the module: it turns the switch back on at the end."""
    try:
        clusters.cli("up", "--no-legacy-sa-tokens")
        config = json.loads((clusters.folder / "cluster1" / "config.json").read_text())
        assert config["legacy_service_account_tokens"] is False
        clusters.cli("up")
        assert json.loads((clusters.folder / "run.json").read_text())["legacy_sa_tokens"] is False
        kubectl("create", "namespace", "modern")
        kubectl("create", "serviceaccount", "istio-reader-service-account", "-n", "modern")
        wait_for(
            "the default account",
            lambda: kubectl.run("get", "sa", "default", "-n", "modern", check=False).code == 0,
        )
        time.sleep(1.0)  # what the token controller would have needed to act
        secrets = kubectl(
            "get", "secrets", "-n", "modern", "--field-selector", "type=kubernetes.io/service-account-token"
        )
        assert secrets == ""
        assert kubectl("get", "sa", "-n", "modern", "-o", "jsonpath={.items[*].secrets}") == ""
        token = kubectl("create", "token", "istio-reader-service-account", "-n", "modern").strip()
        assert token_review(kubectl, token)["authenticated"] is True, "TokenRequest works either way"
    finally:
        clusters.cli("up", "--legacy-sa-tokens")
    assert wait_for(
        "token Secrets once the switch is back on",
        lambda: kubectl(
            "get", "sa", "istio-reader-service-account", "-n", "modern", "-o", "jsonpath={.secrets}"
        ),
    )
