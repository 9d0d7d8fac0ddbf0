"""Admission webhooks in a local cluster, with the real kubectl: a mutating webhook served by a pod of the
cluster (the generic image running fixtures/webhook_server.py, its certificate from a Secret), reached
through its Service, labels new pods in a labelled namespace only; while it is down, failurePolicy Fail
refuses pods with a message naming it and Ignore lets them through; a caBundle that did not sign its
certificate is refused with a TLS error naming it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from isthmus.local.cluster import pki
from tests.e2e.localkit import Kubectl, wait_for

CLUSTERS = 1  # admission stays within a cluster
SERVER = Path(__file__).parent / "fixtures" / "webhook_server.py"
HOOK = "pods.webhook.isthmus.dev"
LABEL = "webhook.isthmus.dev/patched"
NAMESPACE = "webhook-system"


@dataclass(frozen=True)
class Bundles:
    right: str  # the CA that signed the webhook's certificate, base64 as caBundle wants it
    wrong: str  # another CA


def configuration(ca_bundle: str, failure_policy: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "pod-labeller"},
            "webhooks": [
                {
                    "name": HOOK,
                    "clientConfig": {
                        "service": {"namespace": NAMESPACE, "name": "webhook", "path": "/mutate"},
                        "caBundle": ca_bundle,
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"webhook-test": "enabled"}},
                    "failurePolicy": failure_policy,
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        }
    )


def webhook_objects() -> list[dict[str, object]]:
    labels = {"app": "webhook"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "webhook", "namespace": NAMESPACE},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "webhook",
                                "image": "isthmus.dev/host",
                                "command": [
                                    "python3",
                                    str(SERVER),
                                    "8443",
                                    "/certs/tls.crt",
                                    "/certs/tls.key",
                                ],
                                "ports": [{"containerPort": 8443}],
                                "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                                "volumeMounts": [{"name": "certs", "mountPath": "/certs", "readOnly": True}],
                            }
                        ],
                        "volumes": [{"name": "certs", "secret": {"secretName": "webhook-tls"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "webhook", "namespace": NAMESPACE},
            "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]},
        },
    ]


def wait_for_service_account(kubectl: Kubectl, namespace: str) -> None:
    wait_for(
        f"the default ServiceAccount of {namespace}",
        lambda: kubectl.run("get", "sa", "default", "-n", namespace, check=False).code == 0,
    )


@pytest.fixture(scope="module")
def bundles(kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    """The webhook running in `webhook-system` behind its Service, and the namespaces `injected` (labelled
    for the webhook) and `plain`."""
    folder = tmp_path_factory.mktemp("webhook-pki")
    ca, ca_key = pki.ensure_ca(folder, "webhook-ca")
    service_name = f"webhook.{NAMESPACE}.svc"
    cert, key = pki.ensure_serving_cert(folder, ca, ca_key, service_name, [service_name], [])
    other = tmp_path_factory.mktemp("other-pki")
    wrong, _ = pki.ensure_ca(other, "someone-else")
    kubectl("create", "namespace", NAMESPACE)
    kubectl("create", "secret", "tls", "webhook-tls", "-n", NAMESPACE, f"--cert={cert}", f"--key={key}")
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(webhook_objects()))
    kubectl("rollout", "status", "deployment/webhook", "-n", NAMESPACE, "--timeout=90s")
    kubectl("create", "namespace", "injected")
    kubectl("label", "namespace", "injected", "webhook-test=enabled")
    kubectl("create", "namespace", "plain")
    for namespace in ("injected", "plain"):
        wait_for_service_account(kubectl, namespace)
    return Bundles(base64.b64encode(ca.read_bytes()).decode(), base64.b64encode(wrong.read_bytes()).decode())


def run_pod(kubectl: Kubectl, name: str, namespace: str, check: bool = True) -> tuple[int, str]:
    result = kubectl.run(
        "run",
        name,
        "-n",
        namespace,
        "--image=isthmus.dev/host",
        "--restart=Never",
        "--command",
        "--",
        "sleep",
        "600",
        check=check,
    )
    return result.code, result.err


def pod_labels(kubectl: Kubectl, name: str, namespace: str) -> dict[str, str]:
    pod = json.loads(kubectl("get", "pod", name, "-n", namespace, "-o", "json"))
    labels: dict[str, str] = pod["metadata"].get("labels") or {}
    return labels


def configure(kubectl: Kubectl, ca_bundle: str, failure_policy: str) -> None:
    kubectl("apply", "-f", "-", stdin=configuration(ca_bundle, failure_policy))


def webhook_pods(kubectl: Kubectl) -> list[str]:
    return kubectl("get", "pods", "-n", NAMESPACE, "-l", "app=webhook", "-o", "name").split()


def test_new_pods_in_the_labelled_namespace_are_patched(kubectl: Kubectl, bundles: Bundles) -> None:
    configure(kubectl, bundles.right, "Fail")
    (webhook_pod,) = webhook_pods(kubectl)
    _, err = run_pod(kubectl, "patched", "injected")
    assert f"Warning: labelled by {webhook_pod.removeprefix('pod/')}" in err
    assert pod_labels(kubectl, "patched", "injected")[LABEL] == webhook_pod.removeprefix("pod/")
    _, err = run_pod(kubectl, "untouched", "plain")
    assert "Warning" not in err
    assert LABEL not in pod_labels(kubectl, "untouched", "plain")


def test_while_the_webhook_is_down_fail_refuses_and_ignore_admits(kubectl: Kubectl, bundles: Bundles) -> None:
    configure(kubectl, bundles.right, "Fail")
    kubectl("scale", "deployment/webhook", "-n", NAMESPACE, "--replicas=0")
    wait_for("the webhook pod to go", lambda: not webhook_pods(kubectl))
    code, err = run_pod(kubectl, "refused", "injected", check=False)
    assert code != 0
    assert err.strip() == (
        f'Error from server (InternalError): Internal error occurred: failed calling webhook "{HOOK}": failed to '
        f'call webhook: Post "https://webhook.{NAMESPACE}.svc:443/mutate?timeout=10s": no endpoints available for '
        'service "webhook"'
    ), err
    run_pod(kubectl, "elsewhere", "plain")  # the webhook does not concern this namespace

    configure(kubectl, bundles.right, "Ignore")
    run_pod(kubectl, "admitted", "injected")
    assert LABEL not in pod_labels(kubectl, "admitted", "injected")

    kubectl("scale", "deployment/webhook", "-n", NAMESPACE, "--replicas=1")
    kubectl("rollout", "status", "deployment/webhook", "-n", NAMESPACE, "--timeout=90s")
    configure(kubectl, bundles.right, "Fail")
    run_pod(kubectl, "back", "injected")
    assert LABEL in pod_labels(kubectl, "back", "injected")


def test_a_ca_bundle_that_did_not_sign_the_webhook_is_refused(kubectl: Kubectl, bundles: Bundles) -> None:
    configure(kubectl, bundles.wrong, "Fail")
    code, err = run_pod(kubectl, "mistrusted", "injected", check=False)
    assert code != 0
    assert err.startswith(
        f'Error from server (InternalError): Internal error occurred: failed calling webhook "{HOOK}": failed to '
        f'call webhook: Post "https://webhook.{NAMESPACE}.svc:443/mutate?timeout=10s": tls: failed to verify '
        "certificate: x509: certificate signed by unknown authority"
    ), err
    assert kubectl.run("get", "pod", "mistrusted", "-n", "injected", check=False).code != 0
    configure(kubectl, bundles.right, "Fail")
    run_pod(kubectl, "trusted", "injected")
    assert LABEL in pod_labels(kubectl, "trusted", "injected")
