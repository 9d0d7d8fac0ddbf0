"""Benchmark of `kubectl port-forward` into a local cluster (`make bench-port-forward`, as root).

Measures, on a fresh one-cluster local run, with a pod (the generic image) running a small bulk-transfer server:
- download throughput: 64 MiB from the pod to the host, MiB/s (best of 3);
- upload throughput: 64 MiB from the host to the pod, MiB/s (best of 3);
- a new connection's round trip (connect, ask for 1 byte, get it), p50 over 50 connections.
The baseline, measured in the same run: the same transfers over a direct TCP connection from the host to the
pod's IP, so the ratio is what the tunnel (kubectl, WebSocket, TLS, SPDY, the API server's relay) costs.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = 64 * 1024 * 1024
RUNS = 3
CONNECTIONS = 50
PORT = 7070
PROGRAM = """\
import socket, sys, threading

def serve(conn):
    with conn:
        stream = conn.makefile("rb")
        words = stream.readline().split()
        if len(words) != 2:
            return  # the readiness probe
        command, size = words[0], int(words[1])
        if command == b"send":
            block = bytes(1 << 20)
            while size > 0:
                conn.sendall(block[: min(size, len(block))])
                size -= len(block)
        else:
            received = 0
            while received < size and (chunk := stream.read1(1 << 20)):
                received += len(chunk)
            conn.sendall(b"%d\\n" % received)

listener = socket.create_server(("0.0.0.0", int(sys.argv[1])), backlog=128)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
"""


def isthmus(*args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).with_name("isthmus")), *args], check=True, stdout=subprocess.DEVNULL
    )


def kubectl_args(folder: Path) -> list[str]:
    return ["kubectl", "--kubeconfig", str(folder / "kubeconfig"), "--cache-dir", str(folder / "cache")]


def kubectl(folder: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [*kubectl_args(folder), *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def download(host: str, port: int) -> float:
    """Seconds to receive SIZE bytes."""
    with socket.create_connection((host, port)) as conn:
        start = time.perf_counter()
        conn.sendall(b"send %d\n" % SIZE)
        received = 0
        while received < SIZE:
            chunk = conn.recv(1 << 20)
            if not chunk:
                raise RuntimeError(f"download ended after {received} bytes")
            received += len(chunk)
        return time.perf_counter() - start


def upload(host: str, port: int) -> float:
    """Seconds to send SIZE bytes and hear that they all arrived."""
    block = bytes(1 << 20)
    with socket.create_connection((host, port)) as conn:
        start = time.perf_counter()
        conn.sendall(b"recv %d\n" % SIZE)
        for _ in range(SIZE // len(block)):
            conn.sendall(block)
        answer = conn.makefile("rb").readline()
        elapsed = time.perf_counter() - start
    if int(answer) != SIZE:
        raise RuntimeError(f"upload: the pod received {answer!r} bytes")
    return elapsed


def round_trip(host: str, port: int) -> float:
    start = time.perf_counter()
    with socket.create_connection((host, port)) as conn:
        conn.sendall(b"send 1\n")
        if conn.recv(1) != b"\x00":
            raise RuntimeError("no byte came back")
    return time.perf_counter() - start


def measure(host: str, port: int) -> dict[str, float]:
    mib = SIZE / (1024 * 1024)
    return {
        "down": max(mib / download(host, port) for _ in range(RUNS)),
        "up": max(mib / upload(host, port) for _ in range(RUNS)),
        "rtt_ms": statistics.median(round_trip(host, port) for _ in range(CONNECTIONS)) * 1000,
    }


def start_pod(folder: Path, program: Path) -> str:
    program.write_text(PROGRAM)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bulk", "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "bulk",
                    "image": "isthmus.dev/host",
                    "command": ["python3", str(program), str(PORT)],
                    "ports": [{"containerPort": PORT}],
                    "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
                }
            ]
        },
    }
    kubectl(folder, "apply", "-f", "-", stdin=json.dumps(pod))
    kubectl(folder, "wait", "--for=condition=Ready", "pod/bulk", "--timeout=60s")
    return kubectl(folder, "get", "pod", "bulk", "-o", "jsonpath={.status.podIP}")


def measure_port_forward(folder: Path) -> dict[str, float]:
    process = subprocess.Popen(
        [*kubectl_args(folder), "port-forward", "pod/bulk", f":{PORT}", "--address", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(rf"127\.0\.0\.1:(\d+) -> {PORT}", line)
        if found is None:
            raise RuntimeError(f"kubectl port-forward did not start: {line!r}")
        return measure("127.0.0.1", int(found.group(1)))
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench-port-forward starts a local cluster: run it as root")
    folder = Path(tempfile.mkdtemp(prefix="isthmus-bench-port-forward-"))
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-program-") as programs:
        Path(programs).chmod(0o755)  # the pod must read it; the run's own folder is 0700
        try:
            isthmus("local", "up", "--clusters", "1", "--dir", str(folder))
            ip = start_pod(folder, Path(programs) / "bulk.py")
            direct = measure(ip, PORT)
            tunnel = measure_port_forward(folder)
        finally:
            isthmus("local", "down", "--purge", "--dir", str(folder))

    def row(label: str, key: str, unit: str) -> None:
        value, base = tunnel[key], direct[key]
        print(f"{label:<36} {value:9.1f} {unit:<6} baseline {base:9.1f} {unit:<6} ratio {value / base:6.3f}")

    mib = SIZE // (1024 * 1024)
    print(
        f"port-forward benchmark ({os.cpu_count()} cores); baseline: a direct TCP connection from the host "
        "to the pod's IP"
    )
    row(f"download {mib} MiB, best of {RUNS}", "down", "MiB/s")
    row(f"upload {mib} MiB, best of {RUNS}", "up", "MiB/s")
    row(f"new connection round trip, p50/{CONNECTIONS}", "rtt_ms", "ms")
    print(
        f"port-forward-bench down_mib_s={tunnel['down']:.0f} up_mib_s={tunnel['up']:.0f} "
        f"rtt_ms={tunnel['rtt_ms']:.2f} direct_down_mib_s={direct['down']:.0f} direct_up_mib_s={direct['up']:.0f}"
    )


if __name__ == "__main__":
    main()
