"""The slim projections a cluster registry keeps of Services, EndpointSlices, Pods and Nodes."""

from __future__ import annotations

from typing import Any

import pytest

from isthmus.model import FrozenMap, Locality, Protocol, ServicePort
from isthmus.registry import projections

JsonObject = dict[str, Any]


def pod_object(**changes: Any) -> JsonObject:
    obj: JsonObject = {
        "metadata": {
            "namespace": "bookinfo",
            "name": "reviews-v1-abc",
            "uid": "uid-1",
            "labels": {"app": "reviews", "version": "v1"},
            "resourceVersion": "17",
        },
        "spec": {
            "nodeName": "node-a",
            "serviceAccountName": "bookinfo-reviews",
            "containers": [{"name": "reviews", "image": "reviews:v1"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.0.7",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
        },
    }
    obj.update(changes)  # whole sections replaced
    return obj


def test_a_running_pod_is_projected() -> None:
    projected = projections.pod(pod_object())
    assert projected is not None
    assert (projected.namespace, projected.name, projected.uid) == ("bookinfo", "reviews-v1-abc", "uid-1")
    assert projected.ip == "10.244.0.7"
    assert projected.service_account == "bookinfo-reviews"
    assert projected.labels == FrozenMap({"app": "reviews", "version": "v1"})
    assert projected.node == "node-a"
    assert projected.ready
    assert not projected.has_sidecar
    assert projected.locality_label == ""
    assert projected.network == ""


@pytest.mark.parametrize("status", [{}, {"phase": "Pending"}, {"podIP": ""}, {"podIP": None}])
def test_a_pod_without_an_ip_is_skipped(status: JsonObject) -> None:
    assert projections.pod(pod_object(status=status)) is None


def test_a_host_network_pod_is_skipped() -> None:
    spec = {**pod_object()["spec"], "hostNetwork": True}
    assert projections.pod(pod_object(spec=spec)) is None


def test_a_pod_with_host_network_false_is_kept() -> None:
    spec = {**pod_object()["spec"], "hostNetwork": False}
    assert projections.pod(pod_object(spec=spec)) is not None


def test_a_pod_with_the_sidecar_status_annotation_has_a_sidecar() -> None:
    obj = pod_object()
    obj["metadata"]["annotations"] = {
        "sidecar.istio.io/status": '{"version":"1.4","containers":["istio-proxy"]}'
    }
    projected = projections.pod(obj)
    assert projected is not None and projected.has_sidecar


def test_a_pod_with_an_istio_proxy_container_has_a_sidecar() -> None:
    obj = pod_object()
    obj["spec"]["containers"].append({"name": "istio-proxy", "image": "proxyv2"})
    projected = projections.pod(obj)
    assert projected is not None and projected.has_sidecar


def test_injection_annotations_alone_are_no_sidecar() -> None:
    obj = pod_object()
    obj["metadata"]["annotations"] = {"sidecar.istio.io/inject": "true"}
    obj["spec"]["containers"].append({"name": "proxy", "image": "envoy"})
    projected = projections.pod(obj)
    assert projected is not None and not projected.has_sidecar


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ([{"type": "Ready", "status": "True"}], True),
        ([{"type": "Ready", "status": "False"}], False),
        ([{"type": "Ready", "status": "Unknown"}], False),
        ([{"type": "ContainersReady", "status": "True"}], False),
        ([], False),
        (None, False),
    ],
)
def test_pod_readiness_is_its_ready_condition(conditions: Any, ready: bool) -> None:
    projected = projections.pod(pod_object(status={"podIP": "10.244.0.7", "conditions": conditions}))
    assert projected is not None and projected.ready is ready


def test_a_pod_without_a_service_account_runs_as_default() -> None:
    spec = {"nodeName": "n", "containers": [{"name": "c"}]}
    projected = projections.pod(pod_object(spec=spec))
    assert projected is not None and projected.service_account == "default"


def test_the_deprecated_service_account_field_is_read() -> None:
    spec = {"nodeName": "n", "serviceAccount": "legacy", "containers": [{"name": "c"}]}
    projected = projections.pod(pod_object(spec=spec))
    assert projected is not None and projected.service_account == "legacy"


def test_pod_locality_and_network_labels() -> None:
    obj = pod_object()
    obj["metadata"]["labels"] = {"istio-locality": "region1.zone1", "topology.istio.io/network": "net1"}
    projected = projections.pod(obj)
    assert projected is not None
    assert (projected.locality_label, projected.network) == ("region1.zone1", "net1")


def test_a_status_heartbeat_projects_equal() -> None:
    """What an informer relies on to drop updates that change nothing the mesh uses."""
    before = pod_object()
    after = pod_object()
    after["metadata"]["resourceVersion"] = "18"
    after["status"]["conditions"][1]["lastProbeTime"] = "2026-01-01T00:00:00Z"
    after["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert projections.pod(before) == projections.pod(after)
    assert hash(projections.pod(before)) == hash(projections.pod(after))


# -- EndpointSlices -------------------------------------------------------------------------------------------


def slice_object(labels: dict[str, str] | None = None, **extra: Any) -> JsonObject:
    obj: JsonObject = {
        "metadata": {
            "namespace": "bookinfo",
            "name": "reviews-x7k2p",
            "labels": {"kubernetes.io/service-name": "reviews"} if labels is None else labels,
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["10.244.0.7"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": "node-a",
                "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": "bookinfo", "name": "reviews-v1-abc"},
            }
        ],
        "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
    }
    obj.update(extra)
    return obj


def test_a_slice_is_projected() -> None:
    projected = projections.endpoint_slice(slice_object())
    assert projected is not None
    assert (projected.namespace, projected.name, projected.service) == (
        "bookinfo",
        "reviews-x7k2p",
        "reviews",
    )
    assert projected.ports == (("http", 9080, "TCP"),)
    (entry,) = projected.endpoints
    assert entry == projections.KSliceEndpoint(
        addresses=("10.244.0.7",),
        ready=True,
        serving=True,
        terminating=False,
        node="node-a",
        pod="reviews-v1-abc",
        zone="zone-a",
    )


@pytest.mark.parametrize("labels", [{}, {"app": "reviews"}, {"kubernetes.io/service-name": ""}])
def test_a_slice_without_the_service_name_label_is_ignored(labels: dict[str, str]) -> None:
    assert projections.endpoint_slice(slice_object(labels)) is None


def test_an_ipv6_slice_is_ignored() -> None:
    assert projections.endpoint_slice(slice_object(addressType="IPv6")) is None


@pytest.mark.parametrize(
    ("conditions", "ready", "serving", "terminating"),
    [
        ({}, True, True, False),  # unset means ready (EndpointConditions: nil is "unknown", read as ready)
        ({"ready": False}, False, False, False),  # serving follows ready when unset
        ({"ready": False, "serving": True, "terminating": True}, False, True, True),
        ({"ready": True, "serving": False}, True, False, False),
    ],
)
def test_slice_endpoint_conditions(
    conditions: JsonObject, ready: bool, serving: bool, terminating: bool
) -> None:
    obj = slice_object()
    obj["endpoints"][0]["conditions"] = conditions
    projected = projections.endpoint_slice(obj)
    assert projected is not None
    entry = projected.endpoints[0]
    assert (entry.ready, entry.serving, entry.terminating) == (ready, serving, terminating)


def test_a_target_ref_that_is_not_a_pod_names_no_pod() -> None:
    obj = slice_object()
    obj["endpoints"][0]["targetRef"] = {"kind": "Node", "name": "node-a"}
    projected = projections.endpoint_slice(obj)
    assert projected is not None and projected.endpoints[0].pod == ""


# -- Services and Nodes ---------------------------------------------------------------------------------------


def service_object(spec: JsonObject, annotations: dict[str, str] | None = None) -> JsonObject:
    return {
        "metadata": {"namespace": "bookinfo", "name": "reviews", "annotations": annotations or {}},
        "spec": spec,
    }


def test_a_service_is_projected_with_its_port_protocols() -> None:
    projected = projections.service(
        service_object(
            {
                "clusterIP": "10.96.0.10",
                "selector": {"app": "reviews"},
                "ports": [
                    {"name": "http-web", "port": 9080, "targetPort": 8080, "protocol": "TCP"},
                    {"name": "tcp", "port": 9081, "appProtocol": "grpc"},
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"port": 9090},
                ],
            }
        )
    )
    assert projected is not None
    assert projected.cluster_ip == "10.96.0.10"
    assert projected.has_selector
    assert projected.ports == (
        ServicePort("http-web", 9080, Protocol.HTTP, 8080),
        ServicePort("tcp", 9081, Protocol.GRPC, None),
        ServicePort("dns", 53, Protocol.UDP, None),
        ServicePort("", 9090, Protocol.TCP, None),
    )
    assert projected.export_to == ("*",)


@pytest.mark.parametrize("cluster_ip", ["None", "", None])
def test_a_headless_service_has_no_vip(cluster_ip: str | None) -> None:
    projected = projections.service(service_object({"clusterIP": cluster_ip, "ports": []}))
    assert projected is not None and projected.cluster_ip is None


def test_an_external_name_service() -> None:
    projected = projections.service(
        service_object({"type": "ExternalName", "externalName": "db.example.com"})
    )
    assert projected is not None
    assert (projected.external_name, projected.cluster_ip) == ("db.example.com", None)


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [(".", (".",)), ("*", ("*",)), (".,frontend", (".", "frontend")), (" a , b ", ("a", "b")), ("", ("*",))],
)
def test_the_export_to_annotation(annotation: str, expected: tuple[str, ...]) -> None:
    projected = projections.service(
        service_object({"clusterIP": "10.96.0.10"}, {"networking.istio.io/exportTo": annotation})
    )
    assert projected is not None and projected.export_to == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            {
                "topology.kubernetes.io/region": "r1",
                "topology.kubernetes.io/zone": "z1",
                "topology.istio.io/subzone": "s1",
            },
            Locality("r1", "z1", "s1"),
        ),
        (
            {
                "failure-domain.beta.kubernetes.io/region": "r0",
                "failure-domain.beta.kubernetes.io/zone": "z0",
            },
            Locality("r0", "z0"),
        ),
        (
            {
                "topology.kubernetes.io/region": "r1",
                "failure-domain.beta.kubernetes.io/region": "r0",
                "topology.kubernetes.io/zone": "z1",
            },
            Locality("r1", "z1"),
        ),
        ({}, Locality()),
    ],
)
def test_a_node_locality_comes_from_its_topology_labels(labels: dict[str, str], expected: Locality) -> None:
    projected = projections.node({"metadata": {"name": "node-a", "labels": labels}})
    assert projected == projections.KNode("node-a", expected)
