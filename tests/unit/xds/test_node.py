"""Parsing the node a proxy sends: Istio's id form, metadata, errors that say what is expected."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from isthmus.xds.node import NodeError, parse


def make(node_id: str, **metadata: Any) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update(metadata)
    return base_pb2.Node(id=node_id, metadata=meta, cluster="reviews.bookinfo")


def test_an_istio_sidecar_node() -> None:
    node = parse(
        make(
            "sidecar~10.44.1.5~reviews-v1-abc.bookinfo~bookinfo.svc.cluster.local",
            CLUSTER_ID="Kubernetes",
            LABELS={"app": "reviews", "version": "v1"},
            ISTIO_VERSION="1.4.6",
            INTERCEPTION_MODE="REDIRECT",
        )
    )
    assert (node.type, node.ip, node.pod_name, node.namespace) == (
        "sidecar",
        "10.44.1.5",
        "reviews-v1-abc",
        "bookinfo",
    )
    assert node.pod == "reviews-v1-abc.bookinfo" and node.domain == "bookinfo.svc.cluster.local"
    assert node.cluster_id == "Kubernetes" and dict(node.labels) == {"app": "reviews", "version": "v1"}
    assert node.istio_version == "1.4.6" and node.service_cluster == "reviews.bookinfo"
    assert not node.proxyless


def test_the_namespace_metadata_wins_and_grpc_clients_say_so() -> None:
    node = parse(make("sidecar~10.0.0.1~client~x.svc.cluster.local", NAMESPACE="apps", GENERATOR="grpc"))
    assert node.namespace == "apps" and node.proxyless


@pytest.mark.parametrize(
    ("node_id", "says"),
    [
        ("", "has no id"),
        ("reviews-v1", "is not TYPE~IP~POD.NAMESPACE~DOMAIN"),
        ("gateway~10.0.0.1~a.b~b.svc.cluster.local", "type 'gateway' is not one of sidecar, router"),
        ("sidecar~not-an-ip~a.b~b.svc.cluster.local", "'not-an-ip' is not an IP address"),
    ],
)
def test_bad_node_ids_are_explained(node_id: str, says: str) -> None:
    with pytest.raises(NodeError) as caught:
        parse(make(node_id))
    assert says in str(caught.value)
