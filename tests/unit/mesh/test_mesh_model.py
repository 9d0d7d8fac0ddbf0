"""The mesh's own types: protocol selection as Istio's, localities, FrozenMap, service visibility, endpoints."""

from __future__ import annotations

import dataclasses

import pytest

from isthmus.model import (
    ClusterId,
    EndpointsChanged,
    FrozenMap,
    Locality,
    Protocol,
    Service,
    ServiceChanged,
    ServicePort,
    protocol_of,
)
from isthmus.model.service import Endpoint


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("http", Protocol.HTTP),
        ("http-web", Protocol.HTTP),
        ("HTTP-Web", Protocol.HTTP),
        ("http2", Protocol.HTTP2),
        ("http2-api", Protocol.HTTP2),
        ("https-admin", Protocol.HTTPS),
        ("grpc", Protocol.GRPC),
        ("grpc-x", Protocol.GRPC),
        ("grpc-web", Protocol.GRPC_WEB),
        ("grpc-web-ui", Protocol.GRPC_WEB),
        ("tls-passthrough", Protocol.TLS),
        ("tcp", Protocol.TCP),
        ("tcp-db", Protocol.TCP),
        ("mongo-primary", Protocol.MONGO),
        ("redis", Protocol.REDIS),
        ("mysql-3306", Protocol.MYSQL),
    ],
)
def test_the_port_name_prefix_selects_the_protocol(name: str, expected: Protocol) -> None:
    assert protocol_of(name, None) is expected


@pytest.mark.parametrize("name", ["", "web", "httpbin", "grpcx", "metrics-http", "-http"])
def test_a_port_name_without_a_known_prefix_is_plain_tcp(name: str) -> None:
    assert protocol_of(name, None) is Protocol.TCP


@pytest.mark.parametrize(
    ("name", "app_protocol", "expected"),
    [
        ("tcp", "http", Protocol.HTTP),
        ("http", "grpc", Protocol.GRPC),
        ("web", "HTTP2", Protocol.HTTP2),
        ("grpc-x", "tcp", Protocol.TCP),
        ("web", "kubernetes.io/h2c", Protocol.HTTP2),
        ("web", "kubernetes.io/ws", Protocol.HTTP),
    ],
)
def test_app_protocol_takes_precedence_over_the_port_name(
    name: str, app_protocol: str, expected: Protocol
) -> None:
    assert protocol_of(name, app_protocol) is expected


def test_websocket_over_tls_is_https_as_in_istio() -> None:
    """Istio's ConvertProtocol: `kubernetes.io/wss` is WebSocket over TLS, HTTPS (treating it as HTTP would
    make the sidecar parse TLS bytes as HTTP)."""
    assert protocol_of("web", "kubernetes.io/wss") is Protocol.HTTPS


def test_an_unknown_app_protocol_still_takes_precedence_over_the_port_name() -> None:
    """Istio reads the protocol from appProtocol when it is set, and from the name only when it is not: a port
    named `http` with an appProtocol Istio does not know is not HTTP (here: plain TCP, the unknown case)."""
    assert protocol_of("http", "example.com/custom") is Protocol.TCP


@pytest.mark.parametrize(("name", "app_protocol"), [("http", None), ("grpc-x", "grpc"), ("dns", None)])
@pytest.mark.parametrize("transport", ["UDP", "udp"])
def test_a_udp_port_is_udp_whatever_its_name(name: str, app_protocol: str | None, transport: str) -> None:
    assert protocol_of(name, app_protocol, transport) is Protocol.UDP


def test_http_like_protocols() -> None:
    assert {p for p in Protocol if p.is_http} == {
        Protocol.HTTP,
        Protocol.HTTP2,
        Protocol.GRPC,
        Protocol.GRPC_WEB,
    }


# -- Locality -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("us-east1/us-east1-b/rack1", Locality("us-east1", "us-east1-b", "rack1")),
        ("us-east1/us-east1-b", Locality("us-east1", "us-east1-b", "")),
        ("us-east1", Locality("us-east1", "", "")),
        ("region1.zone1.sub1", Locality("region1", "zone1", "sub1")),  # the istio-locality label's form
        ("region1.zone1", Locality("region1", "zone1", "")),
        ("", Locality()),
    ],
)
def test_locality_parse(text: str, expected: Locality) -> None:
    assert Locality.parse(text) == expected


def test_locality_parse_keeps_dots_when_slashes_separate() -> None:
    """Istio replaces '.' by '/' only in a label without '/' (GetLocalityOrDefault): dots inside a
    slash-separated locality are part of the names."""
    assert Locality.parse("us-east1/us-east1-b/rack.1") == Locality("us-east1", "us-east1-b", "rack.1")


@pytest.mark.parametrize(
    ("locality", "label"),
    [
        (Locality("r", "z", "s"), "r/z/s"),
        (Locality("r", "z", ""), "r/z"),
        (Locality("r", "", ""), "r"),
        (Locality("", "z", "s"), ""),
        (Locality(), ""),
    ],
)
def test_locality_label(locality: Locality, label: str) -> None:
    assert locality.label == label


def test_locality_label_without_a_zone_stops_at_the_region() -> None:
    """Istio's LocalityToString stops at the first empty level: `r/s` would read back as zone `s`."""
    assert Locality("r", "", "s").label == "r"


@pytest.mark.parametrize("locality", [Locality("r", "z", "s"), Locality("r", "z"), Locality("r")])
def test_locality_label_round_trips(locality: Locality) -> None:
    assert Locality.parse(locality.label) == locality


# -- FrozenMap ------------------------------------------------------------------------------------------------


def test_frozen_maps_with_the_same_items_are_equal_and_hash_alike() -> None:
    a = FrozenMap({"app": "reviews", "version": "v1"})
    b = FrozenMap({"version": "v1", "app": "reviews"})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: 1}[b] == 1


def test_frozen_maps_with_different_items_differ() -> None:
    a = FrozenMap({"app": "reviews", "version": "v1"})
    assert a != FrozenMap({"app": "reviews", "version": "v2"})
    assert a != FrozenMap({"app": "reviews"})
    assert a != FrozenMap()
    assert a != "app"
    assert a != [("app", "reviews"), ("version", "v1")]


def test_a_frozen_map_equals_a_dict_with_the_same_items() -> None:
    assert FrozenMap({"a": 1}) == {"a": 1}
    assert FrozenMap({"a": 1}) == {"a": 1}
    assert FrozenMap({"a": 1}) != {"a": 2}
    assert FrozenMap() == {}


def test_a_frozen_map_cannot_be_changed_and_changes_make_new_maps() -> None:
    original = FrozenMap({"a": 1, "b": 2})
    with pytest.raises(TypeError):
        original["a"] = 3  # type: ignore[index]
    assert original.updated({"a": 3, "c": 4}) == {"a": 3, "b": 2, "c": 4}
    assert original.without("a") == {"b": 2}
    assert original.without("missing") == original
    assert original == {"a": 1, "b": 2}
    assert hash(original) == hash(FrozenMap({"b": 2, "a": 1}))


def test_a_frozen_map_does_not_follow_changes_of_its_source() -> None:
    source = {"a": 1}
    frozen = FrozenMap(source)
    source["a"] = 2
    assert frozen["a"] == 1


def test_values_holding_frozen_maps_compare_and_hash_by_content() -> None:
    def endpoint(labels: dict[str, str]) -> Endpoint:
        return Endpoint("10.0.0.1", 9080, "http", ClusterId("c1"), labels=FrozenMap(labels))

    assert endpoint({"a": "1", "b": "2"}) == endpoint({"b": "2", "a": "1"})
    assert hash(endpoint({"a": "1", "b": "2"})) == hash(endpoint({"b": "2", "a": "1"}))
    assert endpoint({"a": "1"}) != endpoint({"a": "2"})


# -- Service, Endpoint, events --------------------------------------------------------------------------------


def _service(export_to: tuple[str, ...]) -> Service:
    return Service(
        hostname="reviews.bookinfo.svc.cluster.local",
        name="reviews",
        namespace="bookinfo",
        ports=(ServicePort("http", 9080, Protocol.HTTP),),
        export_to=export_to,
    )


@pytest.mark.parametrize("namespace", ["bookinfo", "default", "istio-system"])
def test_a_service_exported_to_all_is_visible_everywhere(namespace: str) -> None:
    assert _service(("*",)).visible_from(namespace)
    assert Service("h", "n", "ns", ()).visible_from(namespace)  # the default


def test_a_service_exported_to_dot_is_visible_only_in_its_namespace() -> None:
    service = _service((".",))
    assert service.visible_from("bookinfo")
    assert not service.visible_from("default")


def test_a_service_exported_to_namespaces_is_visible_only_there() -> None:
    service = _service(("frontend", "istio-system"))
    assert service.visible_from("frontend")
    assert service.visible_from("istio-system")
    assert not service.visible_from("default")
    assert not service.visible_from("bookinfo")  # not even its own namespace, unless listed


def test_dot_and_namespaces_combine() -> None:
    service = _service((".", "frontend"))
    assert service.visible_from("bookinfo")
    assert service.visible_from("frontend")
    assert not service.visible_from("default")


def test_a_service_exported_to_tilde_is_visible_nowhere() -> None:
    assert not _service(("~",)).visible_from("bookinfo")


def test_each_cluster_keeps_its_vip() -> None:
    service = dataclasses.replace(
        _service(("*",)), vips=FrozenMap({ClusterId("c1"): "10.96.0.10", ClusterId("c2"): "10.97.0.20"})
    )
    assert service.vip_for(ClusterId("c1")) == "10.96.0.10"
    assert service.vip_for(ClusterId("c2")) == "10.97.0.20"
    assert service.vip_for(ClusterId("c3")) is None
    assert service.port(9080) == ServicePort("http", 9080, Protocol.HTTP)
    assert service.port(9081) is None
    assert service.port_named("http") is not None
    assert service.port_named("grpc") is None


@pytest.mark.parametrize(
    ("ready", "terminating", "healthy"),
    [(True, False, True), (False, False, False), (True, True, False), (False, True, False)],
)
def test_endpoint_health(ready: bool, terminating: bool, healthy: bool) -> None:
    endpoint = Endpoint("10.0.0.1", 80, "http", ClusterId("c"), ready=ready, terminating=terminating)
    assert endpoint.healthy is healthy


def test_model_values_are_immutable() -> None:
    endpoint = Endpoint("10.0.0.1", 80, "http", ClusterId("c"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        endpoint.address = "10.0.0.2"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        _service(("*",)).ports = ()  # type: ignore[misc]


def test_events_naming_the_same_thing_are_equal() -> None:
    a = ServiceChanged("reviews.bookinfo.svc.cluster.local", ClusterId("c1"))
    assert a == ServiceChanged("reviews.bookinfo.svc.cluster.local", ClusterId("c1"))
    assert a != ServiceChanged("reviews.bookinfo.svc.cluster.local", ClusterId("c2"))
    other: object = EndpointsChanged("reviews.bookinfo.svc.cluster.local", ClusterId("c1"))
    assert a != other
    assert len({a, ServiceChanged("reviews.bookinfo.svc.cluster.local", ClusterId("c1"))}) == 1
