"""Simulated sidecars for `make bench-xds`: one process runs COUNT delta ADS streams, each behaving as Envoy does
(CDS and LDS by wildcard, then EDS for every cluster and RDS for the route it uses, an ACK for every response).

Usage: xds_clients.py ADDRESS FIRST COUNT CLUSTER_ID
Prints JSON lines on stdout: {"ev": "synced", "i", "t"} once a stream has all four types acknowledged, and
{"ev": "eds", "i", "t", "names"} for every later endpoint update (t: wall-clock time the ACK was written).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


class Reporter:
    """Records to stdout without ever blocking the event loop (a blocked client stops reading its streams and
    would slow the server it measures): gathered per turn of the loop, written by a non-blocking pipe."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.transport: asyncio.WriteTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)

    def emit(self, record: dict[str, Any]) -> None:
        if not self.lines:
            asyncio.get_running_loop().call_soon(self._flush)
        self.lines.append(json.dumps(record))

    def _flush(self) -> None:
        assert self.transport is not None
        self.transport.write(("\n".join(self.lines) + "\n").encode())
        self.lines.clear()


REPORTER = Reporter()


async def proxy(address: str, index: int, cluster_id: str) -> None:
    channel = grpc.aio.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    )
    call: Any = channel.stream_stream(
        METHOD,
        request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
    )()
    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": "bench", "CLUSTER_ID": cluster_id, "ISTIO_VERSION": "bench"})
    ip = f"10.250.{index // 250}.{index % 250 + 1}"
    node = base_pb2.Node(
        id=f"sidecar~{ip}~bench-proxy-{index}.bench~bench.svc.cluster.local", metadata=metadata
    )
    await call.write(discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CDS))
    await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=LDS))
    seen: set[str] = set()
    synced = False
    async for response in call:
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(type_url=response.type_url, response_nonce=response.nonce)
        )
        now = time.time()
        if response.type_url == CDS and CDS not in seen:
            names = [r.name for r in response.resources if r.name.startswith("outbound|")]
            await call.write(
                discovery_pb2.DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=names)
            )
        if response.type_url == LDS and LDS not in seen:
            await call.write(
                discovery_pb2.DeltaDiscoveryRequest(type_url=RDS, resource_names_subscribe=["80"])
            )
        seen.add(response.type_url)
        if not synced and len(seen) == 4:
            synced = True
            REPORTER.emit({"ev": "synced", "i": index, "t": now})
        elif synced and response.type_url == EDS:
            REPORTER.emit({"ev": "eds", "i": index, "t": now, "names": [r.name for r in response.resources]})


async def main() -> None:
    address, first, count, cluster_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    await REPORTER.open()
    await asyncio.gather(*(proxy(address, first + i, cluster_id) for i in range(count)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
