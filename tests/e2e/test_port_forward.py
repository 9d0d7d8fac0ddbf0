"""`kubectl port-forward` from the host into a local cluster: the pod, deployment and service forms, concurrent
connections both ways, several sessions at once, 30 s idle, a port bound to the pod's loopback only, errors on
the error stream and before the upgrade, and RBAC's `create` on `pods/portforward`."""

from __future__ import annotations

import contextlib
import http.client
import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pytest
import yaml

from tests.e2e.localkit import Kubectl

CLUSTERS = 1  # port-forward stays within a cluster
SAMPLES = Path(__file__).parent / "fixtures" / "istio-samples"
TCP_ECHO = Path(__file__).parent / "fixtures" / "tcp_echo.py"
KUBECTL_1_33 = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")


@pytest.fixture(scope="module")
def workloads(kubectl: Kubectl) -> str:
    """helloworld v1 and its Service, and a TCP echo Deployment (7000 on the pod's IP, 7001 on its loopback
    only); returns the helloworld pod's name."""
    kubectl("create", "namespace", "sample")
    helloworld = str(SAMPLES / "helloworld.yaml")
    kubectl("apply", "-n", "sample", "-f", helloworld, "-l", "service=helloworld")
    kubectl("apply", "-n", "sample", "-f", helloworld, "-l", "version=v1")
    echo = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": "sample"},
        "spec": {
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {
                "metadata": {"labels": {"app": "echo"}},
                "spec": {
                    "containers": [
                        {
                            "name": "echo",
                            "image": "isthmus.dev/host",
                            "command": ["python3", str(TCP_ECHO), "7000"],
                            "ports": [{"containerPort": 7000}],
                            "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1},
                        },
                        {
                            "name": "loopback-echo",
                            "image": "isthmus.dev/host",
                            "command": ["python3", str(TCP_ECHO), "7001", "127.0.0.1"],
                        },
                    ]
                },
            },
        },
    }
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(echo))
    for deployment in ("helloworld-v1", "echo"):
        kubectl("rollout", "status", f"deployment/{deployment}", "-n", "sample", "--timeout=90s")
    return kubectl(
        "get", "pods", "-n", "sample", "-l", "app=helloworld", "-o", "jsonpath={.items[0].metadata.name}"
    )


class Forwarder:
    """A running `kubectl port-forward`, its local port on 127.0.0.1 and what it printed."""

    def __init__(self, process: subprocess.Popen[str], remote: int) -> None:
        self.process = process
        self.remote = remote
        self.port = 0
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self.readers = [
            threading.Thread(target=self._read, args=(process.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(process.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)
            self.lines.put(line)

    def wait_ready(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        pattern = re.compile(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {self.remote}")
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if found := pattern.search(line):
                self.port = int(found.group(1))
                return
        raise AssertionError(f"kubectl port-forward did not start:\n{self.output}")

    def wait_exit(self, seconds: float) -> int:
        code = self.process.wait(timeout=seconds)
        for reader in self.readers:
            reader.join(timeout=5)
        return code

    @property
    def output(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self.readers:
            reader.join(timeout=5)


@contextlib.contextmanager
def port_forward(
    kubectl: Kubectl, target: str, remote: int, *extra: str, binary: str = "kubectl"
) -> Iterator[Forwarder]:
    """`kubectl port-forward TARGET :REMOTE` on 127.0.0.1 (kubectl picks the local port); always killed."""
    command = kubectl.argv(
        "port-forward",
        "-n",
        "sample",
        *extra,
        target,
        f":{remote}",
        "--address",
        "127.0.0.1",
        binary=binary,
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    forwarder = Forwarder(process, remote)
    try:
        forwarder.wait_ready()
        yield forwarder
    finally:
        forwarder.stop()


def get(port: int, path: str, connection: http.client.HTTPConnection | None = None) -> str:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, f"{path}: {response.status} {body}"
        return body
    finally:
        if connection is None:
            conn.close()


def echo_round_trip(port: int, size: int) -> None:
    """Send `size` random bytes, half-close, and read the same bytes back until the forwarded connection ends."""
    payload = os.urandom(size)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:

        def send() -> None:
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := conn.recv(1 << 20):
            received += chunk
        sender.join()
    assert len(received) == size and received == payload, f"echoed {len(received)} of {size} bytes"


def test_pod_and_deployment_forms_answer_concurrent_connections(kubectl: Kubectl, workloads: str) -> None:
    pod = workloads
    with (
        port_forward(kubectl, f"pod/{pod}", 5000) as by_pod,
        port_forward(kubectl, "deployment/helloworld-v1", 5000) as by_deployment,
    ):
        assert by_pod.port != by_deployment.port
        paths = [
            (forwarder.port, f"/hello?client={i}") for i in range(8) for forwarder in (by_pod, by_deployment)
        ]
        with ThreadPoolExecutor(len(paths)) as pool:
            answers = list(pool.map(lambda p: get(*p), paths))
        assert answers == [f"Hello version: v1, instance: {pod}\n"] * len(paths)
        assert by_pod.process.poll() is None and by_deployment.process.poll() is None
    logs = kubectl("logs", "-n", "sample", pod)
    for _, path in paths:
        assert f'"GET {path} HTTP/1.1" 200' in logs, f"the pod did not see {path}"


def test_data_flows_both_ways_intact_with_half_close(kubectl: Kubectl, workloads: str) -> None:
    with port_forward(kubectl, "deployment/echo", 7000) as forwarder:
        sizes = [1, 65535, 1 << 20, 3 * (1 << 20) + 17, 200_000, 5]
        with ThreadPoolExecutor(len(sizes)) as pool:
            list(pool.map(lambda size: echo_round_trip(forwarder.port, size), sizes))
        echo_round_trip(forwarder.port, 10_000)  # the session goes on after its connections ended
        assert forwarder.process.poll() is None, forwarder.output


def test_service_form_survives_30s_idle(kubectl: Kubectl, workloads: str) -> None:
    pod = workloads
    with port_forward(kubectl, "svc/helloworld", 5000) as forwarder:
        kept = http.client.HTTPConnection("127.0.0.1", forwarder.port, timeout=10)
        try:
            assert get(forwarder.port, "/hello?before-idle", kept) == f"Hello version: v1, instance: {pod}\n"
            time.sleep(30)
            assert forwarder.process.poll() is None, forwarder.output
            assert get(forwarder.port, "/hello?after-idle", kept).startswith("Hello version: v1")
        finally:
            kept.close()
        assert get(forwarder.port, "/hello?new-connection").startswith("Hello version: v1")
    assert "Handling connection for" in forwarder.output


def test_a_port_on_the_pods_loopback_only_is_forwarded(kubectl: Kubectl, workloads: str) -> None:
    """As on a real node: the connection is made inside the pod's network namespace (Envoy's admin port is such
    a port), while the pod's IP does not answer on it."""
    pod_ip = kubectl(
        "get", "pods", "-n", "sample", "-l", "app=echo", "-o", "jsonpath={.items[0].status.podIP}"
    )
    with socket.socket() as direct:
        direct.settimeout(5)
        assert direct.connect_ex((pod_ip, 7001)) != 0, "7001 must not answer on the pod's IP"
    with port_forward(kubectl, "deployment/echo", 7001) as forwarder:
        echo_round_trip(forwarder.port, 100_000)
        assert forwarder.process.poll() is None, forwarder.output


def test_closed_port_is_reported_on_the_error_stream(kubectl: Kubectl, workloads: str) -> None:
    pod = workloads
    with port_forward(kubectl, f"pod/{pod}", 5001) as forwarder:
        with socket.create_connection(("127.0.0.1", forwarder.port), timeout=10) as conn:
            assert conn.recv(100) == b"", "nothing comes back from a closed port"
        code = forwarder.wait_exit(20)  # kubectl 1.32 ends the session on an error-stream message
    assert code != 0
    err = forwarder.output
    assert f"error forwarding port 5001 to pod {pod}" in err, err
    assert "connect: connection refused" in err, err
    assert "lost connection to pod" in err, err


@pytest.mark.skipif(not KUBECTL_1_33.exists(), reason="kubectl 1.33 is not installed here")
def test_kubectl_1_33(kubectl: Kubectl, workloads: str) -> None:
    with port_forward(kubectl, "svc/helloworld", 5000, binary=str(KUBECTL_1_33)) as forwarder:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: get(forwarder.port, f"/hello?v133={i}"), range(4)))
        assert all(a.startswith("Hello version: v1") for a in answers)


def test_errors_before_the_upgrade(kubectl: Kubectl, workloads: str) -> None:
    pod = workloads
    path = f"/api/v1/namespaces/sample/pods/{pod}/portforward"
    err = kubectl.fails("get", "--raw", path)
    assert "Upgrade request required" in err and "WebSocket" in err, err
    err = kubectl.fails("get", "--raw", "/api/v1/namespaces/sample/pods/nope/portforward")
    assert 'pods "nope" not found' in err, err
    kubectl("run", "pending", "--image=example.com/not-here:1", "-n", "sample")
    try:
        err = kubectl.fails("get", "--raw", "/api/v1/namespaces/sample/pods/pending/portforward")
        assert "pod pending is not running. Current status=Pending" in err, err
        err = kubectl.fails("port-forward", "-n", "sample", "pod/pending", ":80")
        assert "pod is not running" in err, err
    finally:
        kubectl("delete", "pod", "pending", "-n", "sample", "--wait=false")


def test_port_forward_needs_create_on_pods_portforward(kubectl: Kubectl, workloads: str) -> None:
    pod = workloads
    user = "system:serviceaccount:sample:forwarder"
    kubectl("create", "serviceaccount", "forwarder", "-n", "sample")
    kubectl("create", "role", "reader", "--verb=get", "--resource=pods,pods/portforward", "-n", "sample")
    kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=reader",
        "--serviceaccount=sample:forwarder",
        "-n",
        "sample",
    )
    with (
        pytest.raises(AssertionError, match="did not start") as refused,
        port_forward(kubectl, f"pod/{pod}", 5000, "--as", user),
    ):
        pass
    assert 'cannot create resource "pods/portforward"' in str(refused.value), refused.value
    kubectl("create", "role", "forwarder", "--verb=create", "--resource=pods/portforward", "-n", "sample")
    kubectl(
        "create",
        "rolebinding",
        "forwarder",
        "--role=forwarder",
        "--serviceaccount=sample:forwarder",
        "-n",
        "sample",
    )
    with port_forward(kubectl, f"pod/{pod}", 5000, "--as", user) as forwarder:
        assert get(forwarder.port, "/hello").startswith("Hello version: v1")
