"""A real grpcio client dialing `xds:///helloworld.sample.svc.cluster.local:5000`, configured by the xDS server,
reaching gRPC servers that stand for the service's endpoints in two clusters (on loopback ports here; the
end-to-end test runs them in pods)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.unit.xds.xdskit import C1, C2, MeshBuilder, XdsHarness, free_port, http

HOST = "helloworld.sample.svc.cluster.local"
CLIENT = """
import collections, json, sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
call = channel.unary_unary("/isthmus.test.Echo/Who", request_serializer=None, response_deserializer=None)
seen = collections.Counter(call(b"", timeout=10).decode() for _ in range(int(sys.argv[2])))
print(json.dumps(seen))
"""


class Echo:
    """A gRPC server that answers with its own name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "isthmus.test.Echo",
            {
                "Who": grpc.unary_unary_rpc_method_handler(
                    self.who, request_deserializer=None, response_serializer=None
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")

    async def who(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return self.name.encode()


@pytest.fixture
async def echoes() -> AsyncIterator[list[Echo]]:
    servers = [Echo("cluster1"), Echo("cluster2")]
    for server in servers:
        await server.server.start()
    yield servers
    for server in servers:
        await server.server.stop(0)


def run_client(xds: XdsHarness, tmp_path: Path, target: str, calls: int) -> Counter[str]:
    bootstrap = {
        "xds_servers": [
            {
                "server_uri": xds.address,
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {
            "id": "sidecar~127.0.0.1~grpc-client.sample~sample.svc.cluster.local",
            "metadata": {"GENERATOR": "grpc", "NAMESPACE": "sample", "CLUSTER_ID": "cluster1"},
            "locality": {"region": "region1", "zone": "zone1"},
        },
    }
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, target, str(calls)],
        env={**os.environ, "GRPC_XDS_BOOTSTRAP": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return Counter(json.loads(result.stdout.strip().splitlines()[-1]))


async def test_a_grpc_client_reaches_servers_in_both_clusters(
    mesh: MeshBuilder, xds: XdsHarness, echoes: list[Echo], tmp_path: Path
) -> None:
    mesh.service("helloworld", [http(5000, "grpc")], vips={C1: "10.96.0.10", C2: "10.97.0.10"})
    mesh.endpoints(C1, "helloworld", ["127.0.0.1"], port=echoes[0].port, port_name="grpc")
    mesh.endpoints(C2, "helloworld", ["127.0.0.1"], port=echoes[1].port, port_name="grpc")
    # The client runs in its own process; the server answers it from this one's event loop.
    seen = await asyncio.to_thread(run_client, xds, tmp_path, f"xds:///{HOST}:5000", 40)
    assert set(seen) == {"cluster1", "cluster2"}, seen
    assert sum(seen.values()) == 40


async def test_a_grpc_client_follows_a_virtual_service(
    mesh: MeshBuilder, xds: XdsHarness, echoes: list[Echo], tmp_path: Path
) -> None:
    mesh.service("helloworld", [http(5000, "grpc")], vips={C1: "10.96.0.10", C2: "10.97.0.10"})
    mesh.endpoints(
        C1, "helloworld", ["127.0.0.1"], port=echoes[0].port, port_name="grpc", labels={"version": "v1"}
    )
    mesh.endpoints(
        C2, "helloworld", ["127.0.0.1"], port=echoes[1].port, port_name="grpc", labels={"version": "v2"}
    )
    mesh.apply(
        "DestinationRule",
        "helloworld",
        {"host": "helloworld", "subsets": [{"name": "v2", "labels": {"version": "v2"}}]},
    )
    mesh.apply(
        "VirtualService",
        "helloworld",
        {
            "hosts": ["helloworld"],
            "http": [{"route": [{"destination": {"host": "helloworld", "subset": "v2"}}]}],
        },
    )
    seen = await asyncio.to_thread(run_client, xds, tmp_path, f"xds:///{HOST}:5000", 20)
    assert seen == Counter({"cluster2": 20})
