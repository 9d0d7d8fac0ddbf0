"""Responses concatenated from pre-encoded resources parse, with the protobuf library, to exactly the
messages the library itself would build."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from isthmus.xds import wire
from isthmus.xds.resources import Resource, TypeUrl


def clusters(n: int) -> list[Resource]:
    return [
        Resource.of(
            TypeUrl.CLUSTER,
            f"outbound|{i}||svc{i}.ns.svc.cluster.local" + "x" * i,
            cluster_pb2.Cluster(name=f"c{i}"),
        )
        for i in range(n)
    ]


def test_a_state_of_the_world_response_is_what_the_library_builds() -> None:
    resources = clusters(200)  # names long enough for multi-byte length prefixes
    payload = wire.sotw_response("v1", TypeUrl.CLUSTER, "n-1", [r.sotw_entry for r in resources])
    expected = discovery_pb2.DiscoveryResponse(version_info="v1", type_url=TypeUrl.CLUSTER, nonce="n-1")
    for resource in resources:
        expected.resources.append(any_pb2.Any(type_url=TypeUrl.CLUSTER, value=resource.body))
    assert discovery_pb2.DiscoveryResponse.FromString(payload) == expected


def test_a_delta_response_is_what_the_library_builds() -> None:
    resources = clusters(3)
    payload = wire.delta_response(
        "", TypeUrl.CLUSTER, "n-2", [r.delta_entry for r in resources], ["gone", "also-gone"]
    )
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(payload)
    assert parsed.nonce == "n-2" and parsed.type_url == TypeUrl.CLUSTER
    assert [(r.name, r.version) for r in parsed.resources] == [(r.name, r.version) for r in resources]
    assert [cluster_pb2.Cluster.FromString(r.resource.value).name for r in parsed.resources] == [
        "c0",
        "c1",
        "c2",
    ]
    assert list(parsed.removed_resources) == ["gone", "also-gone"]


def test_versions_follow_content_only() -> None:
    a = Resource.of(TypeUrl.CLUSTER, "x", cluster_pb2.Cluster(name="x", type=cluster_pb2.Cluster.EDS))
    b = Resource.of(TypeUrl.CLUSTER, "x", cluster_pb2.Cluster(name="x", type=cluster_pb2.Cluster.EDS))
    c = Resource.of(TypeUrl.CLUSTER, "x", cluster_pb2.Cluster(name="x", type=cluster_pb2.Cluster.STATIC))
    assert a.version == b.version != c.version
    assert len(a.version) == 16


def test_varint_boundaries() -> None:
    for value in (0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35):
        encoded = wire.varint(value)
        decoded, shift = 0, 0
        for byte in encoded:
            decoded |= (byte & 0x7F) << shift
            shift += 7
        assert decoded == value
        assert all(b & 0x80 for b in encoded[:-1]) and not encoded[-1] & 0x80
