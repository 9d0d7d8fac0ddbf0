"""The node's half of port-forward over its Unix socket: a connection handed over as a file descriptor, and the
errors the API server passes on to kubectl. The pod here is this process's own network namespace; a pod's
loopback in its own namespace is shown end to end in tests/e2e/test_port_forward.py."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from isthmus.local.node.portforward import DialError, PortForwardServer, dial

HOST_NETNS = "/proc/self/ns/net"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[str]:
    pods = {("sample", "pod-1", "uid-1"): HOST_NETNS, ("sample", "gone", "uid-2"): str(tmp_path / "no-netns")}
    server = PortForwardServer(lambda *pod: pods.get(pod, ""), str(tmp_path / "portforward.sock"))
    await server.start()
    try:
        yield server.socket_path
    finally:
        await server.stop()
    assert not Path(server.socket_path).exists()  # noqa: ASYNC240


async def test_a_connection_is_handed_over_and_carries_data(node: str) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    assert stat.S_IMODE(Path(node).stat().st_mode) == 0o600  # noqa: ASYNC240
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        connected = await dial(node, "sample", "pod-1", "uid-1", port)
        reader, writer = await asyncio.open_connection(sock=connected)
        writer.write(b"through the node")
        assert await reader.read(100) == b"through the node"
        writer.close()


async def test_a_closed_port_is_refused_in_kubelet_words(node: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(DialError) as refused:
            await dial(node, "sample", "pod-1", "uid-1", closed)
    assert str(refused.value) == (
        f"failed to connect to localhost:{closed} inside the pod's network namespace: "
        f"dial tcp4 127.0.0.1:{closed}: connect: connection refused"
    )


async def test_a_pod_not_on_the_node_or_without_its_namespace(node: str, tmp_path: Path) -> None:
    with pytest.raises(
        DialError, match=r"pod sample/nope \(uid uid-1\) has no network namespace on this node"
    ):
        await dial(node, "sample", "nope", "uid-1", 80)
    with pytest.raises(DialError, match=r"pod sample/pod-1 \(uid uid-9\) has no network namespace"):
        await dial(node, "sample", "pod-1", "uid-9", 80)  # same name, another pod (re-created)
    with pytest.raises(DialError) as failed:
        await dial(node, "sample", "gone", "uid-2", 80)
    assert str(failed.value) == (
        f'failed to execute portforward in network namespace "{tmp_path / "no-netns"}": No such file or directory'
    )


@pytest.mark.parametrize(
    "request_line",
    [{"namespace": "sample"}, {"namespace": "sample", "name": "pod-1", "uid": "uid-1", "port": 70000}],
)
async def test_a_malformed_request_is_answered_with_an_error(
    node: str, request_line: dict[str, object]
) -> None:
    reader, writer = await asyncio.open_unix_connection(node)
    writer.write(json.dumps(request_line).encode() + b"\n")
    assert (await reader.read()).startswith(b"error: malformed request to the node")
    writer.close()


async def test_no_node_listening_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        await dial(str(tmp_path / "missing.sock"), "sample", "pod-1", "uid-1", 80)
