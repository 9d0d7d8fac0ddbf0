"""VirtualService, DestinationRule and Sidecar specs: Istio's semantics, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from isthmus.config.networking import ConfigError, destination_rule, duration, sidecar, virtual_service
from isthmus.config.store import ConfigStore
from isthmus.model import ConfigChanged


def test_short_hosts_resolve_in_the_objects_namespace() -> None:
    vs = virtual_service(
        "bookinfo",
        "reviews",
        {
            "hosts": ["reviews", "ratings.other", "*.example.com"],
            "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}],
        },
    )
    assert vs.hosts == ("reviews.bookinfo.svc.cluster.local", "ratings.other", "*.example.com")
    assert vs.http[0].route[0].destination.host == "reviews.bookinfo.svc.cluster.local"
    assert vs.http[0].route[0].weight == 100 and vs.applies_to_sidecars


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({}, "spec.hosts: at least one host is required"),
        (
            {
                "hosts": ["r"],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": "r"}, "weight": 80},
                            {"destination": {"host": "r"}, "weight": 30},
                        ]
                    }
                ],
            },
            "spec.http[0].route: the weights must add up to 100, not 110",
        ),
        (
            {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}, "weight": 101}]}]},
            "spec.http[0].route[0].weight: must be an integer 0..100",
        ),
        (
            {"hosts": ["r"], "http": [{"route": [{"destination": {}}]}]},
            "spec.http[0].route[0].destination.host: required",
        ),
        (
            {
                "hosts": ["r"],
                "http": [{"match": [{"uri": {"exakt": "/"}}], "route": [{"destination": {"host": "r"}}]}],
            },
            "spec.http[0].match[0].uri: 'exakt' is not exact, prefix or regex",
        ),
        (
            {"hosts": ["r"], "http": [{"timeout": "soon", "route": [{"destination": {"host": "r"}}]}]},
            "spec.http[0].timeout: 'soon' is not a duration",
        ),
        (
            {
                "hosts": ["r"],
                "http": [
                    {
                        "retries": {"attempts": 2, "perTryTimeout": "1x"},
                        "route": [{"destination": {"host": "r"}}],
                    }
                ],
            },
            "spec.http[0].retries.perTryTimeout",
        ),
        ({"hosts": ["Not A Host!"]}, "spec.hosts[0]: 'Not A Host!' is not a host name"),
    ],
)
def test_virtual_service_errors_name_the_field(spec: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        virtual_service("ns", "vs", spec)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({}, "spec.host: required"),
        (
            {"host": "r", "subsets": [{"name": "v1"}, {"name": "v1"}]},
            "spec.subsets[1].name: 'v1' is already the name",
        ),
        (
            {"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}},
            "spec.trafficPolicy.loadBalancer.simple: must be one of",
        ),
        (
            {"host": "r", "trafficPolicy": {"outlierDetection": {"maxEjectionPercent": 150}}},
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be 0..100",
        ),
        (
            {"host": "r", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 0}}}},
            "spec.trafficPolicy.connectionPool.tcp.maxConnections: must be > 0",
        ),
        (
            {
                "host": "r",
                "trafficPolicy": {
                    "loadBalancer": {
                        "localityLbSetting": {"distribute": [{"from": "a/*", "to": {"a/*": 50}}]}
                    }
                },
            },
            "the weights must add up to 100",
        ),
    ],
)
def test_destination_rule_errors_name_the_field(spec: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        destination_rule("ns", "dr", spec)
    assert says in str(caught.value)


def test_port_level_settings_override_the_top_level() -> None:
    rule = destination_rule(
        "ns",
        "dr",
        {
            "host": "r",
            "trafficPolicy": {
                "loadBalancer": {"simple": "RANDOM"},
                "outlierDetection": {"consecutive5xxErrors": 3},
                "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "LEAST_CONN"}}],
            },
        },
    )
    assert rule.policy is not None
    assert rule.policy.for_port(9080).lb_simple == "LEAST_CONN"
    assert rule.policy.for_port(9080).outlier == rule.policy.outlier
    assert rule.policy.for_port(1).lb_simple == "RANDOM"


def test_sidecar_egress_hosts() -> None:
    scoped = sidecar(
        "bookinfo",
        "default",
        {"egress": [{"hosts": ["./*", "istio-system/*", "*/ratings.other.svc.cluster.local"]}]},
    )
    assert scoped.admits("bookinfo", "reviews.bookinfo.svc.cluster.local")
    assert scoped.admits("istio-system", "istio-pilot.istio-system.svc.cluster.local")
    assert scoped.admits("other", "ratings.other.svc.cluster.local")
    assert not scoped.admits("other", "details.other.svc.cluster.local")
    with pytest.raises(ConfigError, match=r"spec.egress\[0\].hosts\[0\]: 'reviews' is not NAMESPACE/HOST"):
        sidecar("bookinfo", "bad", {"egress": [{"hosts": ["reviews"]}]})


def test_durations() -> None:
    assert duration("1m30s", "x") == 90 and duration("100ms", "x") == 0.1 and duration("1.5s", "x") == 1.5


def test_the_store_keeps_the_last_valid_version_and_reports_the_error() -> None:
    store = ConfigStore(None, lambda: "istio-system")
    heard: list[ConfigChanged] = []
    store.listeners.append(heard.append)

    def vs(weight: int) -> dict[str, Any]:
        route = [
            {"destination": {"host": "r", "subset": "a"}, "weight": weight},
            {"destination": {"host": "r", "subset": "b"}, "weight": 100 - weight if weight <= 100 else 0},
        ]
        return {
            "kind": "VirtualService",
            "metadata": {"namespace": "ns", "name": "r"},
            "spec": {"hosts": ["r"], "http": [{"route": route}]},
        }

    store.apply(vs(80))
    assert heard == [ConfigChanged("VirtualService", "ns", "r")]
    store.apply(vs(120))
    assert len(heard) == 1  # nothing pushed
    [(key, error)] = store.errors.items()
    assert key == ("VirtualService", "ns", "r")
    assert "VirtualService ns/r: spec.http[0].route[0].weight: must be an integer 0..100" in error
    assert "keeping its last valid version" in error
    assert store.virtual_services.objects[("ns", "r")].http[0].route[0].weight == 80
    store.apply(vs(70))
    assert not store.errors and len(heard) == 2


def test_a_new_invalid_object_is_ignored_until_fixed() -> None:
    store = ConfigStore(None, lambda: "istio-system")
    store.apply(
        {"kind": "DestinationRule", "metadata": {"namespace": "ns", "name": "d"}, "spec": {"subsets": []}}
    )
    assert not store.destination_rules.objects
    assert "ignored until it is fixed" in store.errors[("DestinationRule", "ns", "d")]


def test_destination_rule_precedence() -> None:
    store = ConfigStore(None, lambda: "istio-system")
    for namespace in ("istio-system", "reviews", "client"):
        store.apply(
            {
                "kind": "DestinationRule",
                "metadata": {"namespace": namespace, "name": "r"},
                "spec": {"host": "reviews.reviews.svc.cluster.local"},
            }
        )
    host = "reviews.reviews.svc.cluster.local"
    assert store.destination_rule(host, "client", "reviews").namespace == "client"  # type: ignore[union-attr]
    assert store.destination_rule(host, "elsewhere", "reviews").namespace == "reviews"  # type: ignore[union-attr]
