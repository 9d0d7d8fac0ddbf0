"""The ADS protocol as a proxy sees it over a real gRPC stream: state of the world and delta, ACK and NACK,
stale nonces, subscriptions, reconnection with known versions, warming order, coalescing, bad nodes."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from isthmus.xds import metrics
from isthmus.xds.resources import TypeUrl
from tests.unit.xds.xdskit import C1, C2, MeshBuilder, XdsHarness, decoded, http, names_in, node

HELLO = "outbound|5000||helloworld.sample.svc.cluster.local"
OTHER = "outbound|5000||other.sample.svc.cluster.local"


def two_services(mesh: MeshBuilder) -> None:
    mesh.service("helloworld", [http()], vips={C1: "10.96.0.10", C2: "10.97.0.10"})
    mesh.service("other", [http()], vips={C1: "10.96.0.11"})
    mesh.endpoints(C1, "helloworld", ["10.44.1.1"])
    mesh.endpoints(C2, "helloworld", ["10.45.1.1"])
    mesh.endpoints(C1, "other", ["10.44.1.2"])


async def test_sotw_initial_clusters_then_ack_makes_the_proxy_synced(
    mesh: MeshBuilder, xds: XdsHarness
) -> None:
    two_services(mesh)
    stream = xds.stream(delta=False)
    await stream.sotw(TypeUrl.CLUSTER, the_node=node())
    response = await stream.recv()
    assert {HELLO, OTHER, "PassthroughCluster", "BlackHoleCluster"} <= set(names_in(response))
    assert response.version_info and response.nonce
    [proxy] = xds.server.syncz()
    assert proxy["types"]["CDS"]["status"] == "STALE"  # sent, not acknowledged yet
    await stream.ack(response)
    await asyncio.sleep(0.05)
    [proxy] = xds.server.syncz()
    assert proxy["types"]["CDS"]["status"] == "SYNCED"
    assert proxy["pod"] == "client-1.sample" and proxy["protocol"] == "sotw"


async def test_sotw_endpoints_of_both_clusters_in_one_assignment(mesh: MeshBuilder, xds: XdsHarness) -> None:
    two_services(mesh)
    stream = xds.stream(delta=False)
    await stream.sotw(TypeUrl.ENDPOINT, [HELLO], the_node=node())
    cla = decoded(await stream.recv())[HELLO]
    addresses = {
        (lb.endpoint.address.socket_address.address, group.locality.zone)
        for group in cla.endpoints
        for lb in group.lb_endpoints
    }
    assert addresses == {("10.44.1.1", "zone1"), ("10.45.1.1", "zone2")}
    assert all(group.load_balancing_weight.value == 1 for group in cla.endpoints)


async def test_sotw_stale_nonce_is_ignored(mesh: MeshBuilder, xds: XdsHarness) -> None:
    two_services(mesh)
    stream = xds.stream(delta=False)
    await stream.sotw(TypeUrl.ENDPOINT, [HELLO], the_node=node())
    first = await stream.recv()
    await stream.sotw(TypeUrl.ENDPOINT, [HELLO, OTHER], nonce="not-a-nonce-we-sent")
    await stream.nothing()  # ignored: neither an ACK nor a new subscription
    await stream.sotw(TypeUrl.ENDPOINT, [HELLO, OTHER], nonce=first.nonce, version=first.version_info)
    assert names_in(await stream.recv()) == [OTHER]  # the newly asked-for one


async def test_sotw_nack_is_counted_and_the_rejected_version_never_resent(
    mesh: MeshBuilder, xds: XdsHarness
) -> None:
    two_services(mesh)
    stream = xds.stream(delta=False)
    await stream.sotw(TypeUrl.CLUSTER, the_node=node())
    first = await stream.recv()
    await stream.ack(first)
    mesh.apply(
        "DestinationRule",
        "hello",
        {"host": "helloworld", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
    )
    changed = await stream.recv()
    assert decoded(changed)[HELLO].lb_policy == 3  # RANDOM
    await stream.sotw(
        TypeUrl.CLUSTER, nonce=changed.nonce, version=first.version_info, error="no RANDOM here"
    )
    await asyncio.sleep(0.05)
    [proxy] = xds.server.syncz()
    assert proxy["types"]["CDS"]["nacks"] == 1 and proxy["types"]["CDS"]["last_error"] == "no RANDOM here"
    assert HELLO in proxy["types"]["CDS"]["rejected"]
    mesh.endpoints(C1, "other", ["10.44.1.3"])  # a change that leaves the clusters as they are
    await stream.nothing()
    mesh.service(
        "third", [http()]
    )  # a change of the clusters: the full state again, without the rejected one
    full = decoded(await stream.recv())
    assert "outbound|5000||third.sample.svc.cluster.local" in full
    assert full[HELLO].lb_policy != 3, "the rejected version was sent again"


async def test_delta_sends_only_the_changed_assignment(mesh: MeshBuilder, xds: XdsHarness) -> None:
    two_services(mesh)
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.ENDPOINT, [HELLO, OTHER], the_node=node())
    first = await stream.recv()
    assert names_in(first) == sorted([HELLO, OTHER])
    await stream.ack(first)
    mesh.endpoints(C2, "helloworld", ["10.45.1.1", "10.45.1.2"])
    update = await stream.recv()
    assert names_in(update) == [HELLO]
    cla = decoded(update)[HELLO]
    assert sorted(
        lb.endpoint.address.socket_address.address for g in cla.endpoints for lb in g.lb_endpoints
    ) == [
        "10.44.1.1",
        "10.45.1.1",
        "10.45.1.2",
    ]


async def test_convergence_is_measured_when_the_proxy_acknowledges_a_change(
    mesh: MeshBuilder, xds: XdsHarness
) -> None:
    def observed() -> float:
        return metrics.REGISTRY.get_sample_value("isthmus_xds_convergence_seconds_count") or 0.0

    two_services(mesh)
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.ENDPOINT, [HELLO, OTHER], the_node=node())
    await stream.ack(await stream.recv())
    before = observed()  # an initial sync carries no change
    mesh.endpoints(C2, "helloworld", ["10.45.1.1", "10.45.1.2"])
    update = await stream.recv()
    await asyncio.sleep(0.05)
    assert observed() == before, "written is not converged: the proxy has not acknowledged it yet"
    await stream.ack(update)
    await asyncio.sleep(0.05)
    assert observed() == before + 1


async def test_delta_unsubscribe_stops_updates(mesh: MeshBuilder, xds: XdsHarness) -> None:
    two_services(mesh)
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.ENDPOINT, [HELLO, OTHER], the_node=node())
    await stream.ack(await stream.recv())
    await stream.subscribe(TypeUrl.ENDPOINT, unsubscribe=[OTHER])
    mesh.endpoints(C1, "other", ["10.44.9.9"])
    await stream.nothing()
    mesh.endpoints(C1, "helloworld", ["10.44.9.8"])
    assert names_in(await stream.recv()) == [HELLO]


async def test_proxies_with_the_same_subscription_share_it_and_part_ways_on_change(
    mesh: MeshBuilder, xds: XdsHarness
) -> None:
    """A thousand sidecars subscribed to the same thousand clusters must not hold a thousand copies of the
    names (that was most of the server's memory per proxy)."""
    two_services(mesh)
    streams = [xds.stream(delta=True) for _ in range(2)]
    for i, stream in enumerate(streams):
        await stream.subscribe(TypeUrl.ENDPOINT, [HELLO, OTHER], the_node=node(ip=f"10.44.0.{i + 5}"))
        await stream.ack(await stream.recv())
    first, second = (c.states[TypeUrl.ENDPOINT].names for c in xds.server.connections.values())
    assert first == {HELLO, OTHER} and first is second
    await streams[1].subscribe(TypeUrl.ENDPOINT, unsubscribe=[OTHER])
    await asyncio.sleep(0.05)
    first, second = (c.states[TypeUrl.ENDPOINT].names for c in xds.server.connections.values())
    assert first == {HELLO, OTHER} and second == {HELLO}
    mesh.endpoints(C1, "other", ["10.44.9.9"])
    assert names_in(await streams[0].recv()) == [OTHER]
    await streams[1].nothing()


async def test_delta_reconnect_with_known_versions_resends_nothing(
    mesh: MeshBuilder, xds: XdsHarness
) -> None:
    two_services(mesh)
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.CLUSTER, the_node=node())
    first = await stream.recv()
    versions = {r.name: r.version for r in first.resources}
    await stream.close()
    again = xds.stream(delta=True)
    await again.subscribe(TypeUrl.CLUSTER, initial=versions, the_node=node())
    response = await again.recv()  # the first request of a type is always answered
    assert list(response.resources) == [] and list(response.removed_resources) == []
    stale = dict(versions, **{HELLO: "0000000000000000"})
    third = xds.stream(delta=True)
    await third.subscribe(
        TypeUrl.CLUSTER, initial={**stale, "outbound|1|gone|x": "1"}, the_node=node("10.44.0.6")
    )
    response = await third.recv()
    assert names_in(response) == [HELLO]
    removal = await third.recv()  # removals of clusters come last, in their own response
    assert list(removal.resources) == [] and list(removal.removed_resources) == ["outbound|1|gone|x"]


async def test_delta_nack_is_not_resent_and_a_new_version_is(mesh: MeshBuilder, xds: XdsHarness) -> None:
    two_services(mesh)
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.CLUSTER, the_node=node())
    await stream.ack(await stream.recv())
    mesh.apply(
        "DestinationRule",
        "hello",
        {"host": "helloworld", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
    )
    bad = await stream.recv()
    assert names_in(bad) == [HELLO]
    await stream.subscribe(TypeUrl.CLUSTER, nonce=bad.nonce, error="rejected for the test")
    mesh.service("third", [http()])
    response = await stream.recv()
    assert names_in(response) == ["outbound|5000||third.sample.svc.cluster.local"], (
        "the rejected cluster came again"
    )
    mesh.apply(
        "DestinationRule",
        "hello",
        {"host": "helloworld", "trafficPolicy": {"loadBalancer": {"simple": "LEAST_CONN"}}},
    )
    assert names_in(await stream.recv()) == [HELLO]
    [proxy] = xds.server.syncz()
    assert proxy["types"]["CDS"]["nacks"] == 1


async def test_a_changed_cluster_is_followed_by_its_endpoints(mesh: MeshBuilder, xds: XdsHarness) -> None:
    """Envoy re-warms a changed cluster and waits for its assignment: it is sent even though unchanged."""
    two_services(mesh)
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.CLUSTER, the_node=node())
    await stream.ack(await stream.recv())
    await stream.subscribe(TypeUrl.ENDPOINT, [HELLO, OTHER])
    await stream.ack(await stream.recv())
    mesh.apply(
        "DestinationRule",
        "hello",
        {"host": "helloworld", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
    )
    clusters = await stream.recv()
    assert clusters.type_url == TypeUrl.CLUSTER and names_in(clusters) == [HELLO]
    endpoints = await stream.recv()
    assert endpoints.type_url == TypeUrl.ENDPOINT and names_in(endpoints) == [HELLO]


async def test_removed_clusters_go_out_after_listeners_and_routes(mesh: MeshBuilder, xds: XdsHarness) -> None:
    two_services(mesh)
    stream = xds.stream(delta=True)
    the_node = node()
    for type_url in (TypeUrl.CLUSTER, TypeUrl.LISTENER):
        await stream.subscribe(type_url, the_node=the_node)
        await stream.ack(await stream.recv())
    await stream.subscribe(TypeUrl.ROUTE, ["5000"])
    await stream.ack(await stream.recv())
    mesh.aggregate.service_changed(C1, ("sample", "other"), None)
    order: list[tuple[str, list[str], list[str]]] = []
    while not order or order[-1][0] != "Cluster":
        response = await stream.recv()
        order.append(
            (response.type_url.rsplit(".", 1)[1], names_in(response), list(response.removed_resources))
        )
        await stream.ack(response)
    assert order[-1] == ("Cluster", [], [OTHER]), order
    route = next(entry for entry in order if entry[0] == "RouteConfiguration")
    assert route[1] == ["5000"], order  # the route that stopped naming the cluster went out first


async def test_many_changes_in_a_burst_are_coalesced(mesh: MeshBuilder, xds: XdsHarness) -> None:
    two_services(mesh)
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.ENDPOINT, [HELLO], the_node=node())
    await stream.ack(await stream.recv())
    for i in range(50):
        mesh.endpoints(C1, "helloworld", [f"10.44.2.{i}"])
    responses = []
    while True:
        try:
            responses.append(await stream.recv(timeout=0.3))
        except TimeoutError:
            break
    assert 1 <= len(responses) <= 3, len(responses)
    last = decoded(responses[-1])[HELLO]
    assert "10.44.2.49" in {
        lb.endpoint.address.socket_address.address for g in last.endpoints for lb in g.lb_endpoints
    }


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_a_bad_node_id_is_refused_with_what_is_expected(xds: XdsHarness, delta: bool) -> None:
    stream = xds.stream(delta=delta)
    bad = node()
    bad.id = "just-a-name"
    if delta:
        await stream.subscribe(TypeUrl.CLUSTER, the_node=bad)
    else:
        await stream.sotw(TypeUrl.CLUSTER, the_node=bad)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.recv()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "TYPE~IP~POD.NAMESPACE~DOMAIN" in str(caught.value.details())
    good = xds.stream(delta=delta)  # the server keeps serving others
    if delta:
        await good.subscribe(TypeUrl.CLUSTER, the_node=node())
    else:
        await good.sotw(TypeUrl.CLUSTER, the_node=node())
    assert (await good.recv()).nonce


async def test_a_proxy_belongs_to_the_cluster_that_knows_its_ip(mesh: MeshBuilder, xds: XdsHarness) -> None:
    """The seed's remotes report the primary's CLUSTER_ID; the registry that knows the pod IP decides."""
    two_services(mesh)
    mesh.pod(C2, "client-2", "10.45.9.9")
    stream = xds.stream(delta=True)
    await stream.subscribe(TypeUrl.LISTENER, the_node=node("10.45.9.9", "client-2", cluster_id="Kubernetes"))
    listeners = decoded(await stream.recv())
    [proxy] = xds.server.syncz()
    assert proxy["cluster"] == "cluster2" and proxy["claimed_cluster"] == "Kubernetes"
    # the outbound TCP listeners, routes' VIPs: cluster2's own VIP of helloworld
    await stream.subscribe(TypeUrl.ROUTE, ["5000"])
    routes = decoded(await stream.recv())["5000"]
    hello = next(v for v in routes.virtual_hosts if v.name.startswith("helloworld."))
    assert "10.97.0.10" in hello.domains and "10.96.0.10" not in hello.domains
    assert "virtualOutbound" in listeners and "virtualInbound" in listeners
