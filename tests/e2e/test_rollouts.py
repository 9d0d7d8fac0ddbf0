"""Rolling updates in a local cluster with real pods and the real kubectl: Istio's helloworld changed from v1 to
v2 and back (`kubectl set image`, `rollout status|history|undo|restart|pause|resume`, `kubectl scale`) while
clients poll its Service from a pod (by name) and from the host (its ClusterIP) and see no failed request; a
DaemonSet, a StatefulSet (stable names, ordered start, DNS names through its headless Service) and Jobs run
to completion or failure under `kubectl wait`."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.e2e.localkit import Kubectl, wait_for

CLUSTERS = 1  # rollouts stay within a cluster
SAMPLES = Path(__file__).parent / "fixtures" / "istio-samples"
NS = "rollout"
V2_IMAGE = "docker.io/istio/examples-helloworld-v2"
READINESS = {"httpGet": {"path": "/hello", "port": 5000}, "periodSeconds": 1}
# What `kubectl rollout status deployment/...` may print on the way (kubectl's DeploymentStatusViewer).
DEPLOYMENT_PROGRESS = re.compile(
    r'^Waiting for deployment "helloworld-v1" rollout to finish: ('
    r"\d+ out of \d+ new replicas have been updated|"
    r"\d+ old replicas are pending termination|"
    r"\d+ of \d+ updated replicas are available)\.\.\.$"
)


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-n", NS, "-o", "json"))


def pods(kubectl: Kubectl, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(kubectl, "pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def rollout_status(kubectl: Kubectl, what: str) -> list[str]:
    out = kubectl.run("rollout", "status", what, "-n", NS, "--timeout=180s", timeout=200).out
    return out.splitlines()


@pytest.fixture(scope="module")
def helloworld(kubectl: Kubectl) -> str:
    """The helloworld Service and helloworld-v1 (with a readiness probe, as a rollout without failed requests
    needs) and the sleep client; returns the Service's ClusterIP."""
    kubectl("create", "namespace", NS)
    documents = list(yaml.safe_load_all((SAMPLES / "helloworld.yaml").read_text()))
    service = next(d for d in documents if d["kind"] == "Service")
    v1 = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "helloworld-v1")
    v1["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = READINESS
    kubectl("apply", "-n", NS, "-f", "-", stdin=yaml.safe_dump_all([service, v1]))
    kubectl("apply", "-n", NS, "-f", str(SAMPLES / "sleep.yaml"))
    for deployment in ("helloworld-v1", "sleep"):
        rollout_status(kubectl, f"deployment/{deployment}")
    ip: str = get_json(kubectl, "service", "helloworld")["spec"]["clusterIP"]
    return ip


class Pollers:
    """Clients polling helloworld throughout: one from the host against the ClusterIP (a new connection per
    request), one in the sleep pod running curl against the Service's name."""

    SHELL_LOOP: ClassVar[str] = (
        'while :; do r=$(curl -sS -m 2 http://helloworld:5000/hello 2>&1) || r="FAIL $r"; echo "$r"; '
        "sleep 0.05; done"
    )

    def __init__(self, kubectl: Kubectl, cluster_ip: str) -> None:
        self.kubectl = kubectl
        self.cluster_ip = cluster_ip
        self.host: list[str] = []
        self.pod: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._exec: subprocess.Popen[str] | None = None

    def __enter__(self) -> Pollers:
        kubectl = self.kubectl
        sleep_pod = pods(kubectl, "app=sleep")[0]["metadata"]["name"]
        self._exec = subprocess.Popen(
            kubectl.argv("exec", sleep_pod, "-n", NS, "-c", "sleep", "--", "sh", "-c", self.SHELL_LOOP),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._thread.start()
        self._reader.start()
        try:
            wait_for("both clients answered", lambda: bool(self.host) and bool(self.pod), 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._exec is not None:
            self._exec.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._exec.wait(10)
            if self._exec.poll() is None:
                self._exec.kill()
                self._exec.wait()
        if self._reader.is_alive():
            self._reader.join(10)

    def _poll(self) -> None:
        while not self._stop.is_set():
            connection = http.client.HTTPConnection(self.cluster_ip, 5000, timeout=2)
            try:
                connection.request("GET", "/hello", headers={"Connection": "close"})
                response = connection.getresponse()
                body = response.read().decode(errors="replace").strip()
                self.host.append(body if response.status == 200 else f"FAIL {response.status} {body}")
            except (OSError, http.client.HTTPException) as exc:
                self.host.append(f"FAIL {exc!r}")
            finally:
                connection.close()
            time.sleep(0.02)

    def _read(self) -> None:
        assert self._exec is not None and self._exec.stdout is not None
        for line in self._exec.stdout:
            self.pod.append(line.strip())

    def failures(self) -> list[str]:
        return [f"host: {r}" for r in self.host if not r.startswith("Hello")] + [
            f"pod: {r}" for r in self.pod if not r.startswith("Hello")
        ]

    def versions(self) -> set[str]:
        return {m.group(1) for r in [*self.host, *self.pod] if (m := re.match(r"Hello version: (v\d)", r))}

    def answered(self, version: str, last: int = 5) -> bool:
        """The last answers of both clients all came from `version`."""
        return all(
            len(answers) >= last and all(a.startswith(f"Hello version: {version},") for a in answers[-last:])
            for answers in (list(self.host), list(self.pod))
        )


def images(kubectl: Kubectl) -> set[str]:
    return {p["spec"]["containers"][0]["image"] for p in pods(kubectl, "app=helloworld")}


# -- Deployments ------------------------------------------------------------------------------------------


def test_scale_and_the_deployment_table(kubectl: Kubectl, helloworld: str) -> None:
    kubectl("scale", "deployment/helloworld-v1", "-n", NS, "--replicas=3")
    rollout_status(kubectl, "deployment/helloworld-v1")
    wait_for("3 ready pods", lambda: len(pods(kubectl, "app=helloworld")) == 3)
    table = kubectl("get", "deploy", "helloworld-v1", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], table
    assert table[1].split()[:4] == ["helloworld-v1", "3/3", "3", "3"], table
    scale = json.loads(
        kubectl("get", "--raw", f"/apis/apps/v1/namespaces/{NS}/deployments/helloworld-v1/scale")
    )
    assert scale["spec"] == {"replicas": 3} and scale["status"]["replicas"] == 3


def test_a_new_image_rolls_out_without_a_failed_request(kubectl: Kubectl, helloworld: str) -> None:
    kubectl("scale", "deployment/helloworld-v1", "-n", NS, "--replicas=3")
    rollout_status(kubectl, "deployment/helloworld-v1")
    with Pollers(kubectl, helloworld) as polled:
        kubectl("set", "image", "deployment/helloworld-v1", "-n", NS, f"helloworld={V2_IMAGE}")
        lines = rollout_status(kubectl, "deployment/helloworld-v1")
        wait_for("v2 answers", lambda: polled.answered("v2"), 30)
    assert lines[-1] == 'deployment "helloworld-v1" successfully rolled out', lines
    assert all(DEPLOYMENT_PROGRESS.match(line) for line in lines[:-1]), lines
    assert not polled.failures(), polled.failures()[:10]
    assert polled.versions() == {"v1", "v2"}
    assert len(polled.host) > 50 and len(polled.pod) > 20, (len(polled.host), len(polled.pod))
    assert images(kubectl) == {V2_IMAGE}
    replica_sets = get_json(kubectl, "replicasets", "-l", "app=helloworld")["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replica_sets) == [0, 3]


def test_rollout_history_and_undo_bring_v1_back(kubectl: Kubectl, helloworld: str) -> None:
    if images(kubectl) != {V2_IMAGE}:
        kubectl("set", "image", "deployment/helloworld-v1", "-n", NS, f"helloworld={V2_IMAGE}")
        rollout_status(kubectl, "deployment/helloworld-v1")
    history = kubectl("rollout", "history", "deployment/helloworld-v1", "-n", NS).splitlines()
    assert history[0] == "deployment.apps/helloworld-v1 ", history
    assert history[1].split() == ["REVISION", "CHANGE-CAUSE"]
    assert [line.split() for line in history[2:] if line.strip()] == [["1", "<none>"], ["2", "<none>"]]
    detail = kubectl("rollout", "history", "deployment/helloworld-v1", "-n", NS, "--revision=2")
    assert V2_IMAGE in detail and "pod-template-hash=" in detail
    with Pollers(kubectl, helloworld) as polled:
        out = kubectl("rollout", "undo", "deployment/helloworld-v1", "-n", NS)
        assert out.strip() == "deployment.apps/helloworld-v1 rolled back"
        rollout_status(kubectl, "deployment/helloworld-v1")
        wait_for("v1 answers", lambda: polled.answered("v1"), 30)
    assert not polled.failures(), polled.failures()[:10]
    assert images(kubectl) == {"registry.istio.io/release/examples-helloworld-v1:1.0"}
    history = kubectl("rollout", "history", "deployment/helloworld-v1", "-n", NS).splitlines()
    assert [line.split()[0] for line in history[2:] if line.strip()] == ["2", "3"]


def test_pause_resume_and_restart(kubectl: Kubectl, helloworld: str) -> None:
    rollout_status(kubectl, "deployment/helloworld-v1")
    assert kubectl("rollout", "pause", "deployment/helloworld-v1", "-n", NS).strip() == (
        "deployment.apps/helloworld-v1 paused"
    )
    before = images(kubectl)
    kubectl("set", "image", "deployment/helloworld-v1", "-n", NS, f"helloworld={V2_IMAGE}")
    time.sleep(2)
    assert images(kubectl) == before, "a paused Deployment does not roll out"
    deploy = get_json(kubectl, "deployment", "helloworld-v1")
    progressing = next(c for c in deploy["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")
    kubectl("rollout", "resume", "deployment/helloworld-v1", "-n", NS)
    rollout_status(kubectl, "deployment/helloworld-v1")
    assert images(kubectl) == {V2_IMAGE}
    names = {p["metadata"]["name"] for p in pods(kubectl, "app=helloworld")}
    with Pollers(kubectl, helloworld) as polled:
        assert kubectl("rollout", "restart", "deployment/helloworld-v1", "-n", NS).strip() == (
            "deployment.apps/helloworld-v1 restarted"
        )
        rollout_status(kubectl, "deployment/helloworld-v1")
        wait_for("the old pods gone", lambda: len(pods(kubectl, "app=helloworld")) == 3)
    assert not polled.failures(), polled.failures()[:10]
    assert not names & {p["metadata"]["name"] for p in pods(kubectl, "app=helloworld")}
    template = get_json(kubectl, "deployment", "helloworld-v1")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]


def test_a_stuck_rollout_exceeds_its_progress_deadline(kubectl: Kubectl, helloworld: str) -> None:
    stuck = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "stuck", "namespace": NS},
        "spec": {
            "progressDeadlineSeconds": 3,
            "selector": {"matchLabels": {"app": "stuck"}},
            "template": {
                "metadata": {"labels": {"app": "stuck"}},
                "spec": {"containers": [{"name": "app", "image": "example.com/missing:1"}]},
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(stuck))
    result = kubectl.run(
        "rollout", "status", "deployment/stuck", "-n", NS, "--timeout=60s", check=False, timeout=90
    )
    assert result.code == 1 and 'error: deployment "stuck" exceeded its progress deadline' in result.err, (
        result
    )
    conditions = {c["type"]: c for c in get_json(kubectl, "deployment", "stuck")["status"]["conditions"]}
    progressing = conditions["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert re.fullmatch(r'ReplicaSet "stuck-\w+" has timed out progressing\.', progressing["message"])
    assert (conditions["Available"]["status"], conditions["Available"]["reason"]) == (
        "False",
        "MinimumReplicasUnavailable",
    )
    kubectl("delete", "deployment", "stuck", "-n", NS)


# -- DaemonSets -------------------------------------------------------------------------------------------


def daemon_set(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "containers": [{"name": "agent", "image": image, "readinessProbe": READINESS}],
                },
            },
        },
    }


def test_a_daemon_set_runs_on_the_node_and_rolls_back(kubectl: Kubectl, helloworld: str) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(daemon_set("istio/examples-helloworld-v1")))
    lines = rollout_status(kubectl, "daemonset/agent")
    assert lines[-1] == 'daemon set "agent" successfully rolled out', lines
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    [pod] = pods(kubectl, "app=agent")
    assert pod["spec"]["nodeName"] == nodes[0]["metadata"]["name"] and len(nodes) == 1
    assert pod["status"]["phase"] == "Running"
    table = kubectl("get", "ds", "agent", "-n", NS).splitlines()
    assert table[0].split() == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE",
        "SELECTOR",
        "AGE",
    ]
    assert table[1].split()[:7] == ["agent", "1", "1", "1", "1", "1", "<none>"], table
    kubectl("set", "image", "daemonset/agent", "-n", NS, "agent=istio/examples-helloworld-v2")
    lines = rollout_status(kubectl, "daemonset/agent")
    assert lines[-1] == 'daemon set "agent" successfully rolled out', lines
    [pod] = pods(kubectl, "app=agent")
    assert pod["spec"]["containers"][0]["image"] == "istio/examples-helloworld-v2"
    history = kubectl("rollout", "history", "daemonset/agent", "-n", NS).splitlines()
    assert [line.split()[0] for line in history[2:] if line.strip()] == ["1", "2"], history
    assert (
        kubectl("rollout", "undo", "daemonset/agent", "-n", NS).strip() == "daemonset.apps/agent rolled back"
    )
    rollout_status(kubectl, "daemonset/agent")
    wait_for(
        "v1 back",
        lambda: (
            [p["spec"]["containers"][0]["image"] for p in pods(kubectl, "app=agent")]
            == ["istio/examples-helloworld-v1"]
        ),
    )
    history = kubectl("rollout", "history", "daemonset/agent", "-n", NS).splitlines()
    assert [line.split()[0] for line in history[2:] if line.strip()] == ["2", "3"], history
    kubectl("delete", "daemonset", "agent", "-n", NS, "--wait=true", "--timeout=60s")
    wait_for("daemon pods gone", lambda: not pods(kubectl, "app=agent"))


# -- StatefulSets -----------------------------------------------------------------------------------------


STATEFUL_SET = f"""\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {NS}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports:
  - {{name: http, port: 5000}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: {NS}
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: istio/examples-helloworld-v1
        readinessProbe: {{httpGet: {{path: /hello, port: 5000}}, periodSeconds: 1}}
"""


class OrderWatch:
    """Snapshots of the StatefulSet's pods while it starts: no pod may exist before the one below it is
    Running and Ready (OrderedReady)."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.kubectl = kubectl
        self.violations: list[str] = []
        self.seen: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OrderWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            result = self.kubectl.run("get", "pods", "-n", NS, "-l", "app=web", "-o", "json", check=False)
            if result.code == 0:
                self.check(json.loads(result.out)["items"])
            time.sleep(0.2)

    def check(self, items: list[dict[str, Any]]) -> None:
        state = {p["metadata"]["name"]: p for p in items}
        names = sorted(state)
        if names and (not self.seen or self.seen[-1] != names):
            self.seen.append(names)
        for name in names:
            index = int(name.rsplit("-", 1)[1])
            if index == 0:
                continue
            below = state.get(f"web-{index - 1}")
            ready = below is not None and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in below.get("status", {}).get("conditions", [])
            )
            if not ready:
                self.violations.append(f"{name} exists while web-{index - 1} is not ready")


def test_a_stateful_set_starts_in_order_with_stable_names(kubectl: Kubectl, helloworld: str) -> None:
    with OrderWatch(kubectl) as order:
        kubectl("apply", "-f", "-", stdin=STATEFUL_SET)
        lines = rollout_status(kubectl, "statefulset/web")
    assert lines[-1] == "partitioned roll out complete: 3 new pods have been updated...", lines
    assert not order.violations, order.violations[:5]
    assert order.seen[0] == ["web-0"] and order.seen[-1] == ["web-0", "web-1", "web-2"], order.seen
    table = kubectl("get", "sts", "web", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "READY", "AGE"] and table[1].split()[:2] == ["web", "3/3"], table
    sleep_pod = pods(kubectl, "app=sleep")[0]["metadata"]["name"]
    for index in range(3):
        out = kubectl(
            "exec",
            sleep_pod,
            "-n",
            NS,
            "-c",
            "sleep",
            "--",
            "curl",
            "-sS",
            "-m",
            "5",
            f"http://web-{index}.web:5000/hello",
        )
        assert out.strip() == f"Hello version: v1, instance: web-{index}", out
    kubectl("scale", "statefulset/web", "-n", NS, "--replicas=1")
    wait_for(
        "web-0 alone",
        lambda: sorted(p["metadata"]["name"] for p in pods(kubectl, "app=web")) == ["web-0"],
        90,
    )
    events = kubectl(
        "get", "events", "-n", NS, "--field-selector", "involvedObject.name=web", "--sort-by=.lastTimestamp"
    )
    deletions = re.findall(r"delete Pod (web-\d) in StatefulSet web successful", events)
    assert deletions == ["web-2", "web-1"], events


# -- Jobs -------------------------------------------------------------------------------------------------


def job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "work", "image": "isthmus.dev/host", "command": ["sh", "-c", script]}
                    ],
                }
            },
            **spec,
        },
    }


def test_a_job_runs_to_completion_under_kubectl_wait(kubectl: Kubectl, helloworld: str) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(job("batch", "echo working; sleep 1", completions=3, parallelism=2)),
    )
    out = kubectl.run(
        "wait", "--for=condition=complete", "job/batch", "-n", NS, "--timeout=120s", timeout=150
    ).out
    assert out.strip() == "job.batch/batch condition met"
    table = kubectl("get", "job", "batch", "-n", NS).splitlines()
    assert table[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], table
    assert table[1].split()[:3] == ["batch", "Complete", "3/3"], table
    done = get_json(kubectl, "job", "batch")
    assert done["status"]["succeeded"] == 3 and done["status"]["completionTime"]
    job_pods = get_json(kubectl, "pods", "-l", "batch.kubernetes.io/job-name=batch")["items"]
    assert len(job_pods) == 3 and {p["status"]["phase"] for p in job_pods} == {"Succeeded"}
    assert all(not p["metadata"].get("finalizers") for p in job_pods)
    assert kubectl("logs", "job/batch", "-n", NS).strip() == "working"


def test_a_failing_job_fails_after_its_backoff_limit(kubectl: Kubectl, helloworld: str) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(job("fails", "exit 3", backoffLimit=0)))
    out = kubectl.run(
        "wait", "--for=condition=failed", "job/fails", "-n", NS, "--timeout=120s", timeout=150
    ).out
    assert out.strip() == "job.batch/fails condition met"
    failed = get_json(kubectl, "job", "fails")
    condition = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert (condition["reason"], condition["message"]) == (
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    assert kubectl("get", "job", "fails", "-n", NS, "--no-headers").split()[1:3] == ["Failed", "0/1"]
