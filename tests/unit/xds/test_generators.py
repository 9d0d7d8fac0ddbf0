"""What the generators build for a proxy: Istio's names and layout, VirtualService and DestinationRule
semantics, scoping, locality priorities, proxyless forms; and that Envoy itself accepts the whole of it
(`envoy --mode validate` on a bootstrap made of the generated resources)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format

from isthmus.config.mesh import MeshConfig
from isthmus.xds import cds, lds, rds
from isthmus.xds.eds import EndpointCache
from isthmus.xds.node import parse
from isthmus.xds.resources import TypeUrl
from isthmus.xds.server import MESSAGES
from isthmus.xds.view import View, inbound_ports, resolve, view_key
from tests.unit.xds.xdskit import C1, C2, ZONES, MeshBuilder, assert_envoy_accepts, http, node, tcp

HOST = "helloworld.sample.svc.cluster.local"


def bookinfo(mesh: MeshBuilder) -> None:
    mesh.service("helloworld", [http()], vips={C1: "10.96.0.10", C2: "10.97.0.10"})
    mesh.service("db", [tcp(3306, "tcp-mysql")], vips={C1: "10.96.0.20"})
    mesh.service("remote-only", [http(8080, "http-web")], vips={C2: "10.97.0.30"})
    mesh.service("secret", [http()], namespace="private", vips={C1: "10.96.0.40"}, export_to=(".",))
    mesh.endpoints(C1, "helloworld", ["10.44.1.1"], labels={"version": "v1"})
    mesh.endpoints(C2, "helloworld", ["10.45.1.1"], labels={"version": "v2"})
    mesh.endpoints(C1, "db", ["10.44.1.5"], port=3306, port_name="tcp-mysql")
    mesh.endpoints(C2, "remote-only", ["10.45.1.7"], port=8080, port_name="http-web")


def view_for(
    mesh: MeshBuilder,
    ip: str = "10.44.0.5",
    pod: str = "client-1",
    namespace: str = "sample",
    grpc: bool = False,
) -> tuple[View, Any]:
    proxy = resolve(parse(node(ip, pod, namespace, grpc_client=grpc)), mesh.sources)
    return View(view_key(proxy, mesh.sources), mesh.sources, proxy.sidecar), proxy


def dump(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def decode(type_url: TypeUrl, body: bytes) -> Any:
    return MESSAGES[type_url].FromString(body)


def test_sidecar_clusters_listeners_and_routes_have_istios_names(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    view, _ = view_for(mesh)
    clusters = cds.view_clusters(view)
    assert {
        "outbound|5000||helloworld.sample.svc.cluster.local",
        "outbound|3306||db.sample.svc.cluster.local",
        "outbound|8080||remote-only.sample.svc.cluster.local",
        "PassthroughCluster",
        "BlackHoleCluster",
        "InboundPassthroughClusterIpv4",
    } == set(clusters)  # the private namespace's service is not exported here
    listeners = lds.view_listeners(view)
    assert set(listeners) == {"virtualOutbound", "0.0.0.0_5000", "0.0.0.0_8080", "10.96.0.20_3306"}
    routes = rds.view_routes(view)
    assert set(routes) == {"5000", "8080"}
    config = decode(TypeUrl.ROUTE, routes["5000"].body)
    hello = next(v for v in config.virtual_hosts if v.name == f"{HOST}:5000")
    assert {
        "helloworld",
        "helloworld:5000",
        "helloworld.sample",
        "helloworld.sample.svc",
        HOST,
        f"{HOST}:5000",
    } <= set(hello.domains)
    assert {"10.96.0.10", "10.96.0.10:5000"} <= set(hello.domains) and "10.97.0.10" not in hello.domains
    assert hello.routes[0].route.cluster == "outbound|5000||helloworld.sample.svc.cluster.local"
    assert hello.routes[0].route.retry_policy.num_retries.value == 2
    assert config.virtual_hosts[-1].name == "allow_any"


def test_a_service_without_a_vip_in_the_proxys_cluster_gets_clusters_and_routes_but_no_vip(
    mesh: MeshBuilder,
) -> None:
    bookinfo(mesh)
    view, _ = view_for(mesh)
    config = decode(TypeUrl.ROUTE, rds.view_routes(view)["8080"].body)
    remote = next(v for v in config.virtual_hosts if v.name.startswith("remote-only"))
    assert "remote-only.sample" in remote.domains and not any(d.startswith("10.") for d in remote.domains)
    cache = EndpointCache()
    cla = decode(
        TypeUrl.ENDPOINT,
        cache.assignment(view, ZONES[C1], "outbound|8080||remote-only.sample.svc.cluster.local").body,
    )
    assert [lb.endpoint.address.socket_address.address for g in cla.endpoints for lb in g.lb_endpoints] == [
        "10.45.1.7"
    ]


def test_short_names_only_for_the_proxys_own_namespace(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    view, _ = view_for(mesh, namespace="other")
    config = decode(TypeUrl.ROUTE, rds.view_routes(view)["5000"].body)
    hello = next(v for v in config.virtual_hosts if v.name == f"{HOST}:5000")
    assert "helloworld" not in hello.domains and "helloworld.sample" in hello.domains


def test_virtual_service_weights_subsets_matches_and_retries(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    mesh.apply(
        "DestinationRule",
        "helloworld",
        {
            "host": "helloworld",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    )
    mesh.apply(
        "VirtualService",
        "helloworld",
        {
            "hosts": ["helloworld"],
            "http": [
                {
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "route": [{"destination": {"host": "helloworld", "subset": "v2"}}],
                    "timeout": "2s",
                },
                {
                    "route": [
                        {"destination": {"host": "helloworld", "subset": "v1"}, "weight": 80},
                        {"destination": {"host": "helloworld", "subset": "v2"}, "weight": 20},
                    ],
                    "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx"},
                },
            ],
        },
    )
    view, _ = view_for(mesh)
    assert {"outbound|5000|v1|" + HOST, "outbound|5000|v2|" + HOST} <= set(cds.view_clusters(view))
    config = decode(TypeUrl.ROUTE, rds.view_routes(view)["5000"].body)
    hello = next(v for v in config.virtual_hosts if v.name == f"{HOST}:5000")
    jason, split = hello.routes
    assert jason.match.headers[0].name == "end-user" and jason.match.headers[0].string_match.exact == "jason"
    assert jason.route.cluster == "outbound|5000|v2|" + HOST and jason.route.timeout.seconds == 2
    weights = {c.name: c.weight.value for c in split.route.weighted_clusters.clusters}
    assert weights == {"outbound|5000|v1|" + HOST: 80, "outbound|5000|v2|" + HOST: 20}
    assert split.route.retry_policy.num_retries.value == 3 and split.route.retry_policy.retry_on == "5xx"
    assert split.route.retry_policy.per_try_timeout.nanos == 500_000_000
    cache = EndpointCache()
    v2 = decode(TypeUrl.ENDPOINT, cache.assignment(view, ZONES[C1], "outbound|5000|v2|" + HOST).body)
    assert [lb.endpoint.address.socket_address.address for g in v2.endpoints for lb in g.lb_endpoints] == [
        "10.45.1.1"
    ]


def test_locality_failover_prefers_the_proxys_own_zone(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    view, _ = view_for(mesh)
    cache = EndpointCache()
    name = "outbound|5000||" + HOST
    plain = decode(TypeUrl.ENDPOINT, cache.assignment(view, ZONES[C1], name).body)
    assert {g.priority for g in plain.endpoints} == {0}  # no outlier detection: no failover (Istio's rule)
    mesh.apply(
        "DestinationRule",
        "helloworld",
        {"host": "helloworld", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 1}}},
    )
    view, _ = view_for(mesh)
    cache.clear()
    from_c1 = decode(TypeUrl.ENDPOINT, cache.assignment(view, ZONES[C1], name).body)
    assert {g.locality.zone: g.priority for g in from_c1.endpoints} == {"zone1": 0, "zone2": 1}
    from_c2 = decode(TypeUrl.ENDPOINT, cache.assignment(view, ZONES[C2], name).body)
    assert {g.locality.zone: g.priority for g in from_c2.endpoints} == {"zone1": 1, "zone2": 0}
    cluster = decode(TypeUrl.CLUSTER, cds.view_clusters(view)[name].body)
    assert cluster.outlier_detection.consecutive_5xx.value == 1
    assert cluster.outlier_detection.enforcing_consecutive_5xx.value == 100


def test_registry_only_blocks_the_unknown(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    mesh.mesh_config = MeshConfig(outbound_traffic_policy="REGISTRY_ONLY")
    view, _ = view_for(mesh)
    outbound = decode(TypeUrl.LISTENER, lds.view_listeners(view)["virtualOutbound"].body)
    assert "BlackHoleCluster" in str(dump(outbound))
    config = decode(TypeUrl.ROUTE, rds.view_routes(view)["5000"].body)
    assert config.virtual_hosts[-1].name == "block_all"
    assert config.virtual_hosts[-1].routes[0].direct_response.status == 502


def test_a_sidecar_resource_narrows_what_a_proxy_sees(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    mesh.apply("Sidecar", "default", {"egress": [{"hosts": ["./db.sample.svc.cluster.local"]}]})
    view, _ = view_for(mesh)
    outbound = {n for n in cds.view_clusters(view) if n.startswith("outbound")}
    assert outbound == {"outbound|3306||db.sample.svc.cluster.local"}
    other_namespace, _ = view_for(mesh, namespace="other")
    assert "outbound|5000||" + HOST in cds.view_clusters(other_namespace)


def test_the_inbound_side_of_a_proxy_is_its_own(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    mesh.pod(C1, "helloworld-v1", "10.44.1.1", {"app": "helloworld", "version": "v1"})
    view, proxy = view_for(mesh, ip="10.44.1.1", pod="helloworld-v1")
    ports = inbound_ports(proxy, mesh.sources)
    assert [(p.service.hostname, p.port.port, p.target) for p in ports] == [(HOST, 5000, 5000)]
    clusters = cds.inbound_clusters(view, ports)
    assert list(clusters) == ["inbound|5000|http|" + HOST]
    inbound = decode(TypeUrl.LISTENER, lds.virtual_inbound(view, ports, {}).body)
    assert inbound.address.socket_address.port_value == 15006
    assert [c.filter_chain_match.destination_port.value for c in inbound.filter_chains] == [5000, 0]


def test_proxyless_clients_get_api_listeners_by_host_and_port(mesh: MeshBuilder) -> None:
    bookinfo(mesh)
    view, _ = view_for(mesh, grpc=True)
    name = f"{HOST}:5000"
    listeners = lds.proxyless_listeners(
        view, [name, "nosuch.sample.svc.cluster.local:1", "helloworld.sample:5000"]
    )
    assert set(listeners) == {name, "helloworld.sample:5000"}
    listener = decode(TypeUrl.LISTENER, listeners[name].body)
    assert listener.HasField("api_listener")
    routes = rds.proxyless_routes(view, [name])
    vhost = decode(TypeUrl.ROUTE, routes[name].body).virtual_hosts[0]
    assert name in vhost.domains
    assert vhost.routes[0].route.cluster == "outbound|5000||" + HOST
    clusters = cds.outbound_clusters(view, ["outbound|5000||" + HOST])
    assert list(clusters) == ["outbound|5000||" + HOST]


def test_envoy_accepts_everything_generated(mesh: MeshBuilder, tmp_path: Path) -> None:
    """The whole sidecar configuration, with every feature in use, as a static bootstrap Envoy validates."""
    bookinfo(mesh)
    mesh.pod(C1, "helloworld-v1", "10.44.1.1", {"app": "helloworld", "version": "v1"})
    mesh.apply(
        "DestinationRule",
        "helloworld",
        {
            "host": "helloworld",
            "trafficPolicy": {
                "loadBalancer": {"simple": "LEAST_CONN"},
                "connectionPool": {
                    "tcp": {"maxConnections": 10, "connectTimeout": "1s"},
                    "http": {"maxRequestsPerConnection": 5},
                },
                "outlierDetection": {"consecutiveErrors": 2, "interval": "1s", "baseEjectionTime": "3s"},
            },
            "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
        },
    )
    mesh.apply(
        "VirtualService",
        "helloworld",
        {
            "hosts": ["helloworld"],
            "http": [
                {
                    "match": [{"uri": {"regex": "/h.*"}, "method": {"exact": "GET"}}],
                    "rewrite": {"uri": "/hello"},
                    "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 1}}},
                    "route": [{"destination": {"host": "helloworld", "subset": "v1"}}],
                },
                {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"uri": "/new"}},
                {"route": [{"destination": {"host": "helloworld"}}]},
            ],
        },
    )
    mesh.apply(
        "VirtualService", "db", {"hosts": ["db"], "tcp": [{"route": [{"destination": {"host": "db"}}]}]}
    )
    view, proxy = view_for(mesh, ip="10.44.1.1", pod="helloworld-v1")
    ports = inbound_ports(proxy, mesh.sources)
    cache = EndpointCache()
    clusters = [*cds.view_clusters(view).values(), *cds.inbound_clusters(view, ports).values()]
    listeners = [*lds.view_listeners(view).values(), lds.virtual_inbound(view, ports, {})]
    static_clusters = []
    for resource in clusters:
        cluster = decode(TypeUrl.CLUSTER, resource.body)
        if cluster.HasField("eds_cluster_config"):  # validate the assignment Envoy would get, in place
            cluster.ClearField("eds_cluster_config")
            cluster.type = cluster.STATIC
            cluster.load_assignment.CopyFrom(
                decode(TypeUrl.ENDPOINT, cache.assignment(view, proxy.locality, cluster.name).body)
            )
        static_clusters.append(dump(cluster))
    static_listeners = []
    routes = {name: dump(decode(TypeUrl.ROUTE, r.body)) for name, r in rds.view_routes(view).items()}
    for resource in listeners:
        listener = dump(decode(TypeUrl.LISTENER, resource.body))
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                config = network_filter["typed_config"]
                if "rds" in config:  # the route Envoy would fetch, inline
                    config["route_config"] = routes[config.pop("rds")["route_config_name"]]
        static_listeners.append(listener)
    bootstrap = {
        "node": {
            "id": "sidecar~10.44.1.1~helloworld-v1.sample~sample.svc.cluster.local",
            "cluster": "helloworld.sample",
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 15000}}},
        "static_resources": {"clusters": static_clusters, "listeners": static_listeners},
    }
    assert_envoy_accepts(bootstrap, tmp_path)
