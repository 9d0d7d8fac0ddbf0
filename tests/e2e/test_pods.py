"""Pods that really run on one flat network across two local clusters: Istio's samples unchanged, ClusterIPs,
DNS, cross-cluster pod IPs, the API server stopped under running pods, the generic image, exec and logs."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.localkit import Kubectl, LocalClusters, wait_for

SAMPLES = Path(__file__).parent / "fixtures" / "istio-samples"


def rollout(kubectl: Kubectl, deployment: str, namespace: str, context: str) -> None:
    kubectl(
        "rollout", "status", f"deployment/{deployment}", "-n", namespace, "--timeout=90s", context=context
    )


def pod_ip(kubectl: Kubectl, selector: str, namespace: str, context: str) -> str:
    ip = kubectl(
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        "jsonpath={.items[0].status.podIP}",
        context=context,
    )
    assert ip, f"no pod IP for {selector} in {context}"
    return ip


def pod_name(kubectl: Kubectl, selector: str, namespace: str, context: str) -> str:
    return kubectl(
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        selector,
        "-o",
        "jsonpath={.items[0].metadata.name}",
        context=context,
    )


def curl_from(
    kubectl: Kubectl, pod: str, namespace: str, context: str, url: str, timeout: int = 5
) -> tuple[int, str]:
    result = kubectl.run(
        "exec",
        pod,
        "-n",
        namespace,
        "-c",
        "sleep",
        "--",
        "curl",
        "-sS",
        "-m",
        str(timeout),
        url,
        context=context,
        check=False,
        timeout=timeout + 30,
    )
    return result.code, result.out + result.err


@pytest.fixture(scope="module")
def samples(kubectl: Kubectl) -> None:
    """The seed's layout: helloworld v1 in cluster1, v2 in cluster2, the Service and sleep in both."""
    for context in ("cluster1", "cluster2"):
        kubectl("create", "namespace", "sample", context=context)
        kubectl(
            "apply",
            "-n",
            "sample",
            "-f",
            str(SAMPLES / "helloworld.yaml"),
            "-l",
            "service=helloworld",
            context=context,
        )
        kubectl("apply", "-n", "sample", "-f", str(SAMPLES / "sleep.yaml"), context=context)
    kubectl(
        "apply",
        "-n",
        "sample",
        "-f",
        str(SAMPLES / "helloworld.yaml"),
        "-l",
        "version=v1",
        context="cluster1",
    )
    kubectl(
        "apply",
        "-n",
        "sample",
        "-f",
        str(SAMPLES / "helloworld.yaml"),
        "-l",
        "version=v2",
        context="cluster2",
    )
    rollout(kubectl, "helloworld-v1", "sample", "cluster1")
    rollout(kubectl, "helloworld-v2", "sample", "cluster2")
    for context in ("cluster1", "cluster2"):
        rollout(kubectl, "sleep", "sample", context)


def test_samples_answer_through_cluster_ips_and_dns(kubectl: Kubectl, samples: None) -> None:
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster2")
    code, out = curl_from(kubectl, sleep, "sample", "cluster2", "http://helloworld.sample:5000/hello")
    assert code == 0 and out.startswith("Hello version: v2, instance: helloworld-v2-"), out
    code, out = curl_from(kubectl, sleep, "sample", "cluster2", "http://helloworld:5000/hello")
    assert code == 0 and "Hello version: v2" in out, "the short name resolves through the search list"


def test_pod_ips_are_routable_across_clusters(kubectl: Kubectl, samples: None) -> None:
    v1 = pod_ip(kubectl, "app=helloworld", "sample", "cluster1")
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster2")
    code, out = curl_from(kubectl, sleep, "sample", "cluster2", f"http://{v1}:5000/hello")
    assert code == 0 and "Hello version: v1" in out, out
    sleep_ip = pod_ip(kubectl, "app=sleep", "sample", "cluster2")
    logs = kubectl("logs", "-n", "sample", "deploy/helloworld-v1", context="cluster1")
    assert f"{sleep_ip} - " in logs, "the server sees the client pod's own address (no translation)"


def test_the_host_reaches_pod_ips(kubectl: Kubectl, samples: None) -> None:
    v1 = pod_ip(kubectl, "app=helloworld", "sample", "cluster1")
    out = subprocess.run(
        ["curl", "-sS", "-m", "5", f"http://{v1}:5000/hello"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("Hello version: v1")


def test_another_clusters_cluster_ip_is_not_translated(kubectl: Kubectl, samples: None) -> None:
    cluster_ip = kubectl(
        "get", "svc", "helloworld", "-n", "sample", "-o", "jsonpath={.spec.clusterIP}", context="cluster1"
    )
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster2")
    code, out = curl_from(kubectl, sleep, "sample", "cluster2", f"http://{cluster_ip}:5000/hello", timeout=3)
    assert code != 0, f"cluster2's pods must not use cluster1's ClusterIPs, got: {out}"


def test_pods_keep_serving_while_their_api_server_is_stopped(
    kubectl: Kubectl, clusters: LocalClusters, samples: None
) -> None:
    v1 = pod_ip(kubectl, "app=helloworld", "sample", "cluster1")
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster2")
    clusters.cli("stop", "cluster1")
    try:
        code, out = curl_from(kubectl, sleep, "sample", "cluster2", f"http://{v1}:5000/hello")
        assert code == 0 and "Hello version: v1" in out, out
    finally:
        clusters.cli("start", "cluster1")
    assert pod_ip(kubectl, "app=helloworld", "sample", "cluster1") == v1
    kubectl("get", "pods", "-n", "sample", context="cluster1")


def test_generic_image_runs_a_users_program(kubectl: Kubectl, samples: None) -> None:
    program = Path(__file__).parent / "fixtures" / "echo_server.py"
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "echo", "namespace": "sample", "labels": {"app": "echo"}},
                "spec": {
                    "containers": [
                        {
                            "name": "echo",
                            "image": "isthmus.dev/host",
                            "command": ["python3", str(program), "7000"],
                            "ports": [{"containerPort": 7000}],
                            "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1},
                        }
                    ]
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "echo", "namespace": "sample"},
                "spec": {
                    "selector": {"app": "echo"},
                    "ports": [{"port": 80, "targetPort": 7000, "name": "http"}],
                },
            },
        ],
    }
    documents = yaml.safe_dump_all(manifest["items"])
    kubectl("apply", "-f", "-", stdin=documents, context="cluster1")
    kubectl("wait", "--for=condition=Ready", "pod/echo", "-n", "sample", "--timeout=60s", context="cluster1")
    sleep1 = pod_name(kubectl, "app=sleep", "sample", "cluster1")
    code, out = curl_from(kubectl, sleep1, "sample", "cluster1", "http://echo.sample/")
    assert code == 0 and out.startswith("echo from echo to "), out
    echo_ip = pod_ip(kubectl, "app=echo", "sample", "cluster1")
    sleep2 = pod_name(kubectl, "app=sleep", "sample", "cluster2")
    code, out = curl_from(kubectl, sleep2, "sample", "cluster2", f"http://{echo_ip}:7000/")
    assert code == 0 and "echo from echo" in out, out
    code, _ = curl_from(kubectl, sleep2, "sample", "cluster2", "http://echo.sample/", timeout=3)
    assert code != 0, "cluster2 has no echo Service: its name does not resolve there"


def test_unknown_image_stays_pending_with_err_image_pull(kubectl: Kubectl) -> None:
    kubectl("run", "nope", "--image=example.com/does-not-exist:1", "-n", "default", context="cluster1")

    def pulled_error() -> bool:
        pod = json.loads(kubectl("get", "pod", "nope", "-n", "default", "-o", "json", context="cluster1"))
        states = [
            c.get("state", {}).get("waiting", {}) for c in pod.get("status", {}).get("containerStatuses", [])
        ]
        return any(s.get("reason") in ("ErrImagePull", "ImagePullBackOff") for s in states)

    wait_for("ErrImagePull", pulled_error, 30)
    pod = json.loads(kubectl("get", "pod", "nope", "-n", "default", "-o", "json", context="cluster1"))
    assert pod["status"]["phase"] == "Pending"
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert "example.com/does-not-exist:1" in waiting["message"]
    events = kubectl(
        "get", "events", "-n", "default", "--field-selector", "involvedObject.name=nope", context="cluster1"
    )
    assert "example.com/does-not-exist:1" in events
    kubectl("delete", "pod", "nope", "-n", "default", context="cluster1")


def test_exec_needs_create_on_pods_exec(kubectl: Kubectl, samples: None) -> None:
    """kubectl execs over a WebSocket, an HTTP GET: it is authorized as `create` on pods/exec, as Kubernetes
    does with AuthorizePodWebsocketUpgradeCreatePermission, so read access to pods/exec runs nothing."""
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster1")
    user = "system:serviceaccount:sample:execer"
    kubectl("create", "serviceaccount", "execer", "-n", "sample", context="cluster1")

    def grant(name: str, verb: str, resources: str) -> None:
        kubectl(
            "create",
            "role",
            name,
            f"--verb={verb}",
            f"--resource={resources}",
            "-n",
            "sample",
            context="cluster1",
        )
        kubectl(
            "create",
            "rolebinding",
            name,
            f"--role={name}",
            "--serviceaccount=sample:execer",
            "-n",
            "sample",
            context="cluster1",
        )

    grant("execer", "get", "pods,pods/exec")
    refused = kubectl.run(
        "exec", sleep, "-n", "sample", "--as", user, "--", "true", context="cluster1", check=False
    )
    assert refused.code != 0 and 'cannot create resource "pods/exec"' in refused.err, refused.err
    grant("execer-create", "create", "pods/exec")
    allowed = kubectl(
        "exec", sleep, "-n", "sample", "--as", user, "--", "echo", "allowed", context="cluster1"
    )
    assert allowed == "allowed\n"


def test_exec_and_logs(kubectl: Kubectl, samples: None) -> None:
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster1")
    result = kubectl.run(
        "exec",
        sleep,
        "-n",
        "sample",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
        context="cluster1",
        check=False,
    )
    assert result.code == 3 and result.out == "out\n" and "err" in result.err
    assert "command terminated with exit code 3" in result.err
    hostname = kubectl("exec", sleep, "-n", "sample", "--", "hostname", context="cluster1").strip()
    assert hostname == sleep
    piped = kubectl.run(
        "exec", "-i", sleep, "-n", "sample", "--", "cat", context="cluster1", stdin="from stdin\n"
    )
    assert piped.out == "from stdin\n"
    logs = kubectl("logs", "-n", "sample", "deploy/helloworld-v1", "--tail", "1", context="cluster1")
    assert len(logs.strip().splitlines()) == 1
    stamped = kubectl("logs", "-n", "sample", "deploy/helloworld-v1", "--timestamps", context="cluster1")
    assert stamped.splitlines()[0][:4].isdigit() and "Z " in stamped.splitlines()[0]


def test_secret_volume_follows_its_secret(kubectl: Kubectl, samples: None) -> None:
    kubectl(
        "create",
        "secret",
        "generic",
        "sleep-secret",
        "-n",
        "sample",
        "--from-literal",
        "key=one",
        context="cluster2",
    )
    kubectl("rollout", "restart", "deployment/sleep", "-n", "sample", context="cluster2")
    rollout(kubectl, "sleep", "sample", "cluster2")
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster2")

    def content() -> str:
        return kubectl.run(
            "exec", sleep, "-n", "sample", "--", "cat", "/etc/sleep/tls/key", context="cluster2", check=False
        ).out

    wait_for("the secret mounted", lambda: content() == "one", 30)
    kubectl(
        "patch",
        "secret",
        "sleep-secret",
        "-n",
        "sample",
        "--type=merge",
        "-p",
        '{"stringData":{"key":"two"}}',
        context="cluster2",
    )
    wait_for("the secret update in the running pod", lambda: content() == "two", 30)


def test_uid_1337_runs_installed_programs(kubectl: Kubectl) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "as-1337", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
            "containers": [
                {"name": "isthmus", "image": "docker.io/istio/isthmus:latest", "args": ["version"]}
            ],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod), context="cluster1")
    wait_for(
        "the pod to finish",
        lambda: (
            kubectl("get", "pod", "as-1337", "-o", "jsonpath={.status.phase}", context="cluster1")
            in ("Succeeded", "Failed")
        ),
        60,
    )
    logs = kubectl("logs", "as-1337", context="cluster1")
    assert (
        kubectl("get", "pod", "as-1337", "-o", "jsonpath={.status.phase}", context="cluster1") == "Succeeded"
    ), logs
    assert logs.strip() == "0.1.0"


def test_init_container_with_net_admin_sets_iptables(kubectl: Kubectl) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "with-init", "namespace": "default"},
        "spec": {
            "initContainers": [
                {
                    "name": "rules",
                    "image": "isthmus.dev/host",
                    "command": [
                        "iptables",
                        "-t",
                        "nat",
                        "-A",
                        "OUTPUT",
                        "-p",
                        "tcp",
                        "--dport",
                        "9",
                        "-j",
                        "REDIRECT",
                        "--to-ports",
                        "15001",
                    ],
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
                }
            ],
            "containers": [
                {
                    "name": "main",
                    "image": "isthmus.dev/host",
                    "command": ["sleep", "infinity"],
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod), context="cluster1")
    kubectl("wait", "--for=condition=Ready", "pod/with-init", "--timeout=60s", context="cluster1")
    rules = kubectl("exec", "with-init", "--", "iptables", "-t", "nat", "-S", "OUTPUT", context="cluster1")
    assert "--to-ports 15001" in rules, "the init container's rules live in the pod's own network namespace"
    host_rules = subprocess.run(
        ["iptables", "-t", "nat", "-S", "OUTPUT"], capture_output=True, text=True
    ).stdout
    assert "--to-ports 15001" not in host_rules
    status = json.loads(kubectl("get", "pod", "with-init", "-o", "json", context="cluster1"))["status"]
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_pod_token_authenticates_in_cluster(kubectl: Kubectl, samples: None) -> None:
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster1")
    secrets_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    listing = kubectl("exec", sleep, "-n", "sample", "--", "ls", secrets_dir, context="cluster1").split()
    assert listing == ["ca.crt", "namespace", "token"]
    script = (
        f'curl -sS --cacert {secrets_dir}/ca.crt -H "Authorization: Bearer $(cat {secrets_dir}/token)" '
        "https://kubernetes.default/api/v1/namespaces/sample/secrets"
    )
    answer = json.loads(kubectl("exec", sleep, "-n", "sample", "--", "sh", "-c", script, context="cluster1"))
    assert answer["code"] == 403
    assert 'User "system:serviceaccount:sample:sleep" cannot list resource "secrets"' in answer["message"]
    token = kubectl("exec", sleep, "-n", "sample", "--", "cat", f"{secrets_dir}/token", context="cluster1")
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    result = json.loads(
        kubectl(
            "create",
            "--raw",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "-f",
            "-",
            stdin=json.dumps(review),
            context="cluster1",
        )
    )
    status = result["status"]
    assert status["authenticated"] is True
    assert status["user"]["username"] == "system:serviceaccount:sample:sleep"
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-name"] == [sleep]


def test_crash_loop_restarts_and_previous_logs(kubectl: Kubectl) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "crasher", "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "crash",
                    "image": "isthmus.dev/host",
                    "command": ["sh", "-c", "echo run at $(date +%s%N); exit 2"],
                }
            ]
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod), context="cluster1")

    def restarted() -> bool:
        count = kubectl(
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
            context="cluster1",
        )
        return count not in ("", "0")

    wait_for("a restart", restarted, 30)
    status = json.loads(kubectl("get", "pod", "crasher", "-o", "json", context="cluster1"))["status"]
    container = status["containerStatuses"][0]
    assert container["lastState"]["terminated"]["exitCode"] == 2
    assert container["lastState"]["terminated"]["reason"] == "Error"
    previous = kubectl("logs", "crasher", "--previous", context="cluster1")
    assert previous.startswith("run at ")
    wait_for(
        "CrashLoopBackOff",
        lambda: "CrashLoopBackOff" in kubectl("get", "pod", "crasher", context="cluster1"),
        30,
    )
    kubectl("delete", "pod", "crasher", "--wait=true", context="cluster1")


def test_exec_with_a_terminal(kubectl: Kubectl, samples: None) -> None:
    """`kubectl exec -it` through a pseudo-terminal on our side, as a user at a shell would run it."""
    import os
    import pty
    import select

    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster1")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("kubectl", kubectl.argv("exec", "-it", sleep, "-n", "sample", "--", "sh"))
    output = b""
    deadline = time.monotonic() + 30
    os.write(fd, b"tty; echo marker-$((6*7)); exit 5\n")
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "marker-42" in text and "/dev/pts/" in text, text
    assert os.waitstatus_to_exitcode(status) == 5


async def test_python_client_exec(clusters: LocalClusters, kubectl: Kubectl, samples: None) -> None:
    """lightkube's exec (the v4 channel protocol) reaches the container."""
    from lightkube import AsyncClient, KubeConfig

    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster1")
    client = AsyncClient(config=KubeConfig.from_file(str(clusters.kubeconfig)).get(context_name="cluster1"))
    try:
        result = await client.exec(
            sleep,
            namespace="sample",
            container="sleep",
            command=["sh", "-c", "echo hello from $(hostname)"],
            stdout=True,
        )
        assert isinstance(result.stdout, str) and result.stdout.strip() == f"hello from {sleep}"
    finally:
        await client.close()


def test_headless_and_selectorless_services_in_dns(kubectl: Kubectl, samples: None) -> None:
    v1 = pod_ip(kubectl, "app=helloworld", "sample", "cluster1")
    documents = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hello-headless", "namespace": "sample"},
            "spec": {
                "clusterIP": "None",
                "selector": {"app": "helloworld"},
                "ports": [{"port": 5000, "name": "http"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "istio-pilot", "namespace": "sample"},
            "spec": {
                "clusterIP": "None",
                "ports": [{"port": 15010, "name": "grpc-xds"}, {"port": 5000, "name": "http"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "istio-pilot", "namespace": "sample"},
            "subsets": [
                {
                    "addresses": [{"ip": v1}],
                    "ports": [{"port": 15010, "name": "grpc-xds"}, {"port": 5000, "name": "http"}],
                }
            ],
        },
    ]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents), context="cluster1")
    sleep = pod_name(kubectl, "app=sleep", "sample", "cluster1")

    def answers(url: str) -> bool:
        code, out = curl_from(kubectl, sleep, "sample", "cluster1", url, timeout=3)
        return code == 0 and "Hello version: v1" in out

    wait_for(
        "the headless Service to resolve to the pod", lambda: answers("http://hello-headless:5000/hello"), 30
    )
    wait_for(
        "the selector-less Service to resolve to its Endpoints",
        lambda: answers("http://istio-pilot.sample.svc.cluster.local:5000/hello"),
        30,
    )
    slices = json.loads(
        kubectl(
            "get",
            "endpointslices",
            "-n",
            "sample",
            "-l",
            "kubernetes.io/service-name=istio-pilot",
            "-o",
            "json",
            context="cluster1",
        )
    )
    assert [e["addresses"] for e in slices["items"][0]["endpoints"]] == [[v1]]


def test_proxy_subresources(kubectl: Kubectl, samples: None) -> None:
    via_service = kubectl(
        "get", "--raw", "/api/v1/namespaces/sample/services/helloworld:http/proxy/hello", context="cluster1"
    )
    assert via_service.startswith("Hello version: v1")
    pod = pod_name(kubectl, "app=helloworld", "sample", "cluster1")
    via_pod = kubectl(
        "get", "--raw", f"/api/v1/namespaces/sample/pods/{pod}:5000/proxy/hello", context="cluster1"
    )
    assert via_pod == f"Hello version: v1, instance: {pod}\n"


def test_endpoints_follow_scaling(kubectl: Kubectl, samples: None) -> None:
    kubectl("scale", "deployment/helloworld-v1", "-n", "sample", "--replicas=3", context="cluster1")
    rollout(kubectl, "helloworld-v1", "sample", "cluster1")

    def addresses() -> list[str]:
        slices = json.loads(
            kubectl(
                "get",
                "endpointslices",
                "-n",
                "sample",
                "-l",
                "kubernetes.io/service-name=helloworld",
                "-o",
                "json",
                context="cluster1",
            )
        )
        return sorted(
            a
            for s in slices["items"]
            for e in s.get("endpoints") or []
            if e["conditions"].get("ready")
            for a in e["addresses"]
        )

    wait_for("3 ready endpoints", lambda: len(addresses()) == 3, 30)
    pods = kubectl(
        "get",
        "pods",
        "-n",
        "sample",
        "-l",
        "app=helloworld",
        "-o",
        "jsonpath={.items[*].status.podIP}",
        context="cluster1",
    ).split()
    assert addresses() == sorted(pods)
    kubectl("scale", "deployment/helloworld-v1", "-n", "sample", "--replicas=1", context="cluster1")
    wait_for("1 ready endpoint", lambda: len(addresses()) == 1, 60)


def test_environment_and_downward_api(kubectl: Kubectl) -> None:
    kubectl("create", "configmap", "settings", "--from-literal", "mode=fast", context="cluster1")
    kubectl("create", "secret", "generic", "creds", "--from-literal", "password=s3cret", context="cluster1")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "env-check", "namespace": "default", "labels": {"tier": "web"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "isthmus.dev/host",
                    "command": [
                        "sh",
                        "-c",
                        "echo $POD_NAME $POD_IP $MODE $PASSWORD $GREETING; cat /etc/podinfo/labels",
                    ],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {
                            "name": "MODE",
                            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                        },
                        {
                            "name": "PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                        },
                        {"name": "GREETING", "value": "hello-$(POD_NAME)"},
                    ],
                    "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
                }
            ],
            "volumes": [
                {
                    "name": "podinfo",
                    "downwardAPI": {
                        "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                    },
                }
            ],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod), context="cluster1")
    wait_for(
        "the pod to finish",
        lambda: (
            kubectl("get", "pod", "env-check", "-o", "jsonpath={.status.phase}", context="cluster1")
            == "Succeeded"
        ),
        60,
    )
    ip = kubectl("get", "pod", "env-check", "-o", "jsonpath={.status.podIP}", context="cluster1")
    lines = kubectl("logs", "env-check", context="cluster1").splitlines()
    assert lines[0] == f"env-check {ip} fast s3cret hello-env-check"
    assert lines[1] == 'tier="web"'


def test_logs_follow_and_container_choice(kubectl: Kubectl) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "talker", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "counter",
                    "image": "isthmus.dev/host",
                    "command": ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done"],
                },
                {"name": "quiet", "image": "isthmus.dev/host", "command": ["sh", "-c", "echo only me"]},
            ],
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(pod), context="cluster1")
    wait_for(
        "the pod to start",
        lambda: kubectl("get", "pod", "talker", "-o", "jsonpath={.status.podIP}", context="cluster1") != "",
        30,
    )
    followed = kubectl.run("logs", "-f", "talker", "-c", "counter", context="cluster1", timeout=30)
    assert followed.out.splitlines() == ["line 1", "line 2", "line 3"], "-f ends when the container does"
    assert kubectl("logs", "talker", "-c", "quiet", context="cluster1") == "only me\n"
    unnamed = kubectl.run("logs", "talker", context="cluster1")
    assert 'Defaulted container "counter"' in unnamed.err and unnamed.out.startswith("line 1")
