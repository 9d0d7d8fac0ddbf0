"""Cluster registries and the aggregate against in-process API servers: services merged by hostname across
clusters, endpoints with what load balancing and security need, events that name what changed, clusters that
leave, a trust-domain change, and a cluster that cannot be reached."""

from __future__ import annotations

import pytest
from lightkube.resources.core_v1 import Node, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from isthmus.model import (
    ClusterAdded,
    ClusterId,
    ClusterRemoved,
    ClusterStateChanged,
    Endpoint,
    EndpointsChanged,
    Locality,
    Protocol,
    ServiceChanged,
    TlsMode,
    WorkloadChanged,
)
from isthmus.model.service import CLUSTER_LABEL
from tests.unit.mesh.meshkit import (
    Kube,
    LocalApi,
    MakeMesh,
    Mesh,
    StartServer,
    endpoint,
    endpoint_slice,
    eventually,
    namespace,
    node,
    pod,
    service,
    service_account,
    settle,
)

NS = "bookinfo"
REVIEWS = "reviews.bookinfo.svc.cluster.local"
RATINGS = "ratings.bookinfo.svc.cluster.local"
PRIMARY, REMOTE = ClusterId("primary"), ClusterId("remote")


class Cluster:
    """One cluster's API server with the bookinfo namespace, a node and the service accounts."""

    def __init__(self, api: LocalApi) -> None:
        self.api = api
        self.kube = Kube(api.client())

    async def prepare(self, node_name: str, region: str, zone: str) -> Cluster:
        await self.kube.create(
            namespace(NS),
            service_account(NS, "bookinfo-reviews"),
            service_account(NS, "bookinfo-ratings"),
            node(node_name, region, zone),
        )
        return self

    async def run_pod(
        self,
        name: str,
        ip: str,
        *,
        node_name: str,
        app: str = "reviews",
        sidecar: bool = True,
        extra_labels: dict[str, str] | None = None,
        ready: bool = True,
    ) -> None:
        labels = {"app": app, **(extra_labels or {})}
        await self.kube.create(
            pod(NS, name, node=node_name, service_account=f"bookinfo-{app}", labels=labels, sidecar=sidecar)
        )
        await self.kube.pod_status(NS, name, ip, ready=ready)


async def two_clusters(apiservers: StartServer) -> tuple[Cluster, Cluster]:
    primary = await Cluster(await apiservers("primary")).prepare("node-a", "us-east1", "us-east1-b")
    remote = await Cluster(await apiservers("remote")).prepare("node-b", "europe-west1", "europe-west1-c")
    return primary, remote


async def bookinfo(primary: Cluster, remote: Cluster) -> None:
    """reviews in both clusters (v1 with a sidecar in the primary, v2 without one in the remote, with its own
    locality label), ratings in the primary only; slices written as the endpoint controller would."""
    await primary.run_pod("reviews-v1", "10.244.0.10", node_name="node-a", extra_labels={"version": "v1"})
    await remote.run_pod(
        "reviews-v2",
        "10.245.0.20",
        node_name="node-b",
        sidecar=False,
        extra_labels={"version": "v2", "istio-locality": "europe-west1.europe-west1-d.rack7"},
    )
    await primary.run_pod("ratings-v1", "10.244.0.30", node_name="node-a", app="ratings")
    await primary.kube.create(
        service(NS, "reviews", [("http", 9080)]),
        endpoint_slice(
            NS, "reviews-p", "reviews", [endpoint("10.244.0.10", pod="reviews-v1", node="node-a")]
        ),
        service(NS, "ratings", [("http", 9080)]),
        endpoint_slice(
            NS, "ratings-p", "ratings", [endpoint("10.244.0.30", pod="ratings-v1", node="node-a")]
        ),
    )
    await remote.kube.create(
        service(NS, "reviews", [("http", 9080)]),
        endpoint_slice(
            NS, "reviews-r", "reviews", [endpoint("10.245.0.20", pod="reviews-v2", node="node-b")]
        ),
    )


async def synced_mesh(mesh: Mesh, primary: Cluster, remote: Cluster) -> None:
    await mesh.add_synced(PRIMARY, primary.api.client())
    await mesh.add_synced(REMOTE, remote.api.client())


async def bookinfo_mesh(apiservers: StartServer, meshes: MakeMesh) -> tuple[Cluster, Cluster, Mesh]:
    """Both clusters with bookinfo, synced into a mesh whose event record starts empty."""
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    mesh.events.clear()
    return primary, remote, mesh


def by_address(endpoints: list[Endpoint]) -> dict[str, Endpoint]:
    return {e.address: e for e in endpoints}


async def test_a_service_in_two_clusters_merges_with_both_vips_and_both_clusters_endpoints(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    aggregate = mesh.aggregate

    reviews = aggregate.service(REVIEWS)
    assert reviews is not None
    assert (reviews.name, reviews.namespace) == ("reviews", NS)
    assert reviews.clusters == {PRIMARY, REMOTE}
    assert set(reviews.vips) == {PRIMARY, REMOTE}
    assert reviews.vip_for(
        PRIMARY,
    ).startswith("10.96.")  # type: ignore[union-attr]
    assert reviews.vip_for(REMOTE).startswith("10.97.")  # type: ignore[union-attr]
    assert [(p.name, p.port, p.protocol) for p in reviews.ports] == [("http", 9080, Protocol.HTTP)]
    assert not reviews.headless

    endpoints = aggregate.endpoints_of(REVIEWS)
    assert [(e.address, e.cluster) for e in endpoints] == [("10.244.0.10", PRIMARY), ("10.245.0.20", REMOTE)]
    ratings = aggregate.service(RATINGS)
    assert ratings is not None and ratings.clusters == {PRIMARY}
    assert ratings.vip_for(REMOTE) is None  # no Service object there: no VIP there
    assert [e.address for e in aggregate.endpoints_of(RATINGS)] == ["10.244.0.30"]


async def test_endpoints_carry_cluster_locality_identity_labels_and_tls_mode(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    endpoints = by_address(mesh.aggregate.endpoints_of(REVIEWS))

    v1 = endpoints["10.244.0.10"]
    assert (v1.port, v1.service_port_name) == (9080, "http")
    assert v1.cluster == PRIMARY
    assert v1.locality == Locality("us-east1", "us-east1-b")  # its node's labels
    assert v1.identity == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
    assert v1.labels == {"app": "reviews", "version": "v1", CLUSTER_LABEL: "primary"}
    assert v1.tls_mode is TlsMode.ISTIO
    assert (v1.workload, v1.namespace, v1.node) == ("reviews-v1", NS, "node-a")
    assert v1.ready and v1.healthy

    v2 = endpoints["10.245.0.20"]
    assert v2.cluster == REMOTE
    assert v2.locality == Locality("europe-west1", "europe-west1-d", "rack7")  # the pod's label overrides
    assert v2.identity == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
    assert v2.labels[CLUSTER_LABEL] == "remote"
    assert v2.labels["version"] == "v2"
    assert v2.tls_mode is TlsMode.DISABLED  # no sidecar


async def test_a_pod_ip_belongs_to_its_cluster(apiservers: StartServer, meshes: MakeMesh) -> None:
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    aggregate = mesh.aggregate
    assert aggregate.cluster_of_ip("10.244.0.10") == PRIMARY
    assert aggregate.cluster_of_ip("10.245.0.20") == REMOTE
    assert aggregate.cluster_of_ip("10.244.0.99") is None
    workload = aggregate.workload("10.245.0.20")
    assert workload is not None
    assert (workload.cluster, workload.namespace, workload.name) == (REMOTE, NS, "reviews-v2")
    assert workload.service_account == "bookinfo-reviews"
    assert not workload.has_sidecar
    assert workload.ready
    assert workload.locality == Locality("europe-west1", "europe-west1-d", "rack7")
    v1 = aggregate.workload("10.244.0.10")
    assert v1 is not None and v1.has_sidecar and v1.locality == Locality("us-east1", "us-east1-b")


async def test_the_primarys_definition_of_a_port_wins_and_other_ports_are_added(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, remote = await two_clusters(apiservers)
    await primary.kube.create(service(NS, "reviews", [("http", 9080)]))
    await remote.kube.create(service(NS, "reviews", [("tcp", 9080), ("grpc-admin", 9090)]))
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    reviews = mesh.aggregate.service(REVIEWS)
    assert reviews is not None
    assert [(p.name, p.port, p.protocol) for p in reviews.ports] == [
        ("http", 9080, Protocol.HTTP),
        ("grpc-admin", 9090, Protocol.GRPC),
    ]


async def test_a_slice_change_emits_endpoints_changed_for_that_service_and_cluster_only(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    await remote.kube.create(service(NS, "ratings", [("http", 9080)]))
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    mesh.events.clear()

    await remote.run_pod("reviews-v3", "10.245.0.21", node_name="node-b", extra_labels={"version": "v3"})
    await eventually(lambda: mesh.events.of(WorkloadChanged), what="the new pod")
    mesh.events.clear()
    await remote.kube.update(
        endpoint_slice(
            NS,
            "reviews-r",
            "reviews",
            [
                endpoint("10.245.0.20", pod="reviews-v2", node="node-b"),
                endpoint("10.245.0.21", pod="reviews-v3", node="node-b"),
            ],
        )
    )
    await eventually(lambda: mesh.events.seen, what="an event")
    await settle()
    assert mesh.events.seen == [EndpointsChanged(REVIEWS, REMOTE)]
    assert [e.address for e in mesh.aggregate.endpoints_of(REVIEWS)] == [
        "10.244.0.10",
        "10.245.0.20",
        "10.245.0.21",
    ]
    assert list(mesh.aggregate.endpoints[REVIEWS][PRIMARY]) == mesh.aggregate.endpoints_of(REVIEWS)[0:1]


async def test_an_endpoint_that_is_not_ready_stays_with_its_condition(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, _remote, mesh = await bookinfo_mesh(apiservers, meshes)
    await primary.kube.update(
        endpoint_slice(
            NS,
            "reviews-p",
            "reviews",
            [endpoint("10.244.0.10", pod="reviews-v1", node="node-a", ready=False)],
        )
    )
    await eventually(lambda: mesh.events.seen == [EndpointsChanged(REVIEWS, PRIMARY)])
    v1 = by_address(mesh.aggregate.endpoints_of(REVIEWS))["10.244.0.10"]
    assert not v1.ready and not v1.healthy


async def test_removing_a_slice_removes_its_endpoints(apiservers: StartServer, meshes: MakeMesh) -> None:
    _primary, remote, mesh = await bookinfo_mesh(apiservers, meshes)
    await remote.kube.delete(EndpointSlice, "reviews-r", NS)
    await eventually(lambda: mesh.events.seen == [EndpointsChanged(REVIEWS, REMOTE)])
    assert [e.cluster for e in mesh.aggregate.endpoints_of(REVIEWS)] == [PRIMARY]
    assert REMOTE not in mesh.aggregate.endpoints[REVIEWS]


async def test_a_pod_label_change_updates_its_endpoints(apiservers: StartServer, meshes: MakeMesh) -> None:
    primary, _remote, mesh = await bookinfo_mesh(apiservers, meshes)
    await primary.kube.patch(Pod, "reviews-v1", {"metadata": {"labels": {"version": "v1b"}}}, NS)
    await eventually(lambda: EndpointsChanged(REVIEWS, PRIMARY) in mesh.events.seen)
    assert WorkloadChanged(PRIMARY, NS, "reviews-v1") in mesh.events.seen
    assert EndpointsChanged(RATINGS, PRIMARY) not in mesh.events.seen
    assert by_address(mesh.aggregate.endpoints_of(REVIEWS))["10.244.0.10"].labels["version"] == "v1b"


async def test_a_node_locality_change_updates_the_endpoints_on_it(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, _remote, mesh = await bookinfo_mesh(apiservers, meshes)
    await primary.kube.patch(
        Node, "node-a", {"metadata": {"labels": {"topology.kubernetes.io/zone": "us-east1-c"}}}
    )
    await eventually(
        lambda: (
            {EndpointsChanged(REVIEWS, PRIMARY), EndpointsChanged(RATINGS, PRIMARY)} <= set(mesh.events.seen)
        )
    )
    assert by_address(mesh.aggregate.endpoints_of(REVIEWS))["10.244.0.10"].locality == Locality(
        "us-east1", "us-east1-c"
    )
    assert EndpointsChanged(REVIEWS, REMOTE) not in mesh.events.seen


async def test_a_slice_that_arrives_before_its_pod_gets_the_pods_identity_when_the_pod_arrives(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    """Watches of different resources are separate streams, so a slice naming a new pod can be seen before
    the pod itself. Istio keeps such endpoints pending and completes them when the pod arrives; an endpoint
    left without identity and TLS mode would get plaintext traffic and fail authorization."""
    primary, _ = await two_clusters(apiservers)
    mesh = meshes()
    await mesh.add_synced(PRIMARY, primary.api.client())
    await primary.kube.create(
        service(NS, "reviews"),
        endpoint_slice(
            NS, "reviews-p", "reviews", [endpoint("10.244.0.40", pod="reviews-v4", node="node-a")]
        ),
    )
    await eventually(lambda: mesh.aggregate.endpoints_of(REVIEWS), what="the endpoint without its pod")
    assert mesh.aggregate.endpoints_of(REVIEWS)[0].identity == ""

    await primary.run_pod("reviews-v4", "10.244.0.40", node_name="node-a")
    await eventually(lambda: mesh.aggregate.cluster_of_ip("10.244.0.40") == PRIMARY, what="the pod")
    await eventually(
        lambda: (
            mesh.aggregate.endpoints_of(REVIEWS)[0].identity
            == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
        ),
        timeout=2.0,
        what="the endpoint completed with the pod's identity",
    )
    assert mesh.aggregate.endpoints_of(REVIEWS)[0].tls_mode is TlsMode.ISTIO


async def test_the_endpoint_controllers_slices_are_read_too(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    """A Service with a selector: the in-process server's EndpointSlice controller writes the slice."""
    primary, _ = await two_clusters(apiservers)
    mesh = meshes()
    await mesh.add_synced(PRIMARY, primary.api.client())
    await primary.kube.create(service(NS, "reviews", selector={"app": "reviews"}))
    await primary.run_pod("reviews-v1", "10.244.0.10", node_name="node-a")
    await primary.run_pod("reviews-v2", "10.244.0.11", node_name="node-a", ready=False)
    await eventually(lambda: len(mesh.aggregate.endpoints_of(REVIEWS)) == 2, what="both pods in the slice")
    endpoints = by_address(mesh.aggregate.endpoints_of(REVIEWS))
    assert endpoints["10.244.0.10"].ready and not endpoints["10.244.0.11"].ready
    assert endpoints["10.244.0.10"].identity == "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"
    assert endpoints["10.244.0.10"].workload == "reviews-v1"


async def test_a_headless_service_has_no_vip(apiservers: StartServer, meshes: MakeMesh) -> None:
    primary, remote = await two_clusters(apiservers)
    headless = service(NS, "db", [("tcp", 5432)])
    headless["spec"]["clusterIP"] = "None"
    await primary.kube.create(headless)
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    db = mesh.aggregate.service("db.bookinfo.svc.cluster.local")
    assert db is not None and db.headless and db.vips == {}

    await remote.kube.create(service(NS, "db", [("tcp", 5432)]))
    await eventually(lambda: REMOTE in mesh.aggregate.services["db.bookinfo.svc.cluster.local"].clusters)
    db = mesh.aggregate.service("db.bookinfo.svc.cluster.local")
    assert db is not None and not db.headless and set(db.vips) == {REMOTE}


async def test_deleting_a_service_in_one_cluster_keeps_the_others(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, remote, mesh = await bookinfo_mesh(apiservers, meshes)
    await remote.kube.delete(Service, "reviews", NS)
    await eventually(lambda: ServiceChanged(REVIEWS, REMOTE) in mesh.events.seen)
    reviews = mesh.aggregate.service(REVIEWS)
    assert reviews is not None and reviews.clusters == {PRIMARY} and set(reviews.vips) == {PRIMARY}
    mesh.events.clear()
    await primary.kube.delete(Service, "ratings", NS)
    await eventually(lambda: mesh.events.seen == [ServiceChanged(RATINGS, PRIMARY)])
    assert mesh.aggregate.service(RATINGS) is None


async def test_removing_a_cluster_removes_its_services_endpoints_and_pods(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    await remote.kube.create(
        service(NS, "details", [("http", 9080)]),
        endpoint_slice(NS, "details-r", "details", [endpoint("10.245.0.50")]),
    )
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    details = "details.bookinfo.svc.cluster.local"
    assert mesh.aggregate.service(details) is not None
    mesh.events.clear()

    await mesh.aggregate.remove_cluster(REMOTE)
    seen = mesh.events.seen
    assert seen[-1] == ClusterRemoved(REMOTE)
    assert EndpointsChanged(REVIEWS, REMOTE) in seen
    assert EndpointsChanged(details, REMOTE) in seen
    assert ServiceChanged(REVIEWS, REMOTE) in seen  # its VIP left the merged service
    assert ServiceChanged(details, REMOTE) in seen
    assert WorkloadChanged(REMOTE, NS, "reviews-v2") in seen
    assert not any(getattr(e, "cluster", None) == PRIMARY for e in seen)

    reviews = mesh.aggregate.service(REVIEWS)
    assert reviews is not None and reviews.clusters == {PRIMARY} and set(reviews.vips) == {PRIMARY}
    assert mesh.aggregate.service(details) is None
    assert [e.cluster for e in mesh.aggregate.endpoints_of(REVIEWS)] == [PRIMARY]
    assert mesh.aggregate.endpoints_of(details) == []
    assert mesh.aggregate.cluster_of_ip("10.245.0.20") is None
    assert mesh.aggregate.cluster_of_ip("10.244.0.10") == PRIMARY
    assert set(mesh.aggregate.clusters) == {PRIMARY}

    mesh.events.clear()  # and it no longer listens to the removed cluster
    await remote.kube.create(service(NS, "late"))
    await settle()
    assert mesh.events.seen == []


async def test_adding_a_cluster_is_announced(apiservers: StartServer, meshes: MakeMesh) -> None:
    primary, _ = await two_clusters(apiservers)
    mesh = meshes()
    await mesh.add_synced(PRIMARY, primary.api.client())
    assert mesh.events.seen[0] == ClusterAdded(PRIMARY)


async def test_a_trust_domain_change_rebuilds_identities(apiservers: StartServer, meshes: MakeMesh) -> None:
    _primary, _remote, mesh = await bookinfo_mesh(apiservers, meshes)

    mesh.aggregate.set_trust_domain("cluster.local")  # unchanged: nothing to do
    assert mesh.events.seen == []

    mesh.aggregate.set_trust_domain("example.org")
    assert {e.identity for e in mesh.aggregate.endpoints_of(REVIEWS)} == {
        "spiffe://example.org/ns/bookinfo/sa/bookinfo-reviews"
    }
    assert [e.identity for e in mesh.aggregate.endpoints_of(RATINGS)] == [
        "spiffe://example.org/ns/bookinfo/sa/bookinfo-ratings"
    ]
    assert set(mesh.events.seen) == {
        EndpointsChanged(REVIEWS, PRIMARY),
        EndpointsChanged(REVIEWS, REMOTE),
        EndpointsChanged(RATINGS, PRIMARY),
    }


async def test_an_unreachable_cluster_keeps_its_endpoints_and_turns_stale(
    apiservers: StartServer, meshes: MakeMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISTHMUS_CLUSTER_STALE_AFTER", "0.2")
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    registry = mesh.aggregate.clusters[REMOTE]
    assert registry.state == "synced"
    mesh.events.clear()

    await remote.api.stop()
    await eventually(lambda: registry.state == "stale", what="stale")
    assert registry.error.startswith("could not connect to the API server") or registry.error
    assert [e.cluster for e in mesh.aggregate.endpoints_of(REVIEWS)] == [PRIMARY, REMOTE]  # last-known kept
    assert mesh.aggregate.cluster_of_ip("10.245.0.20") == REMOTE

    await remote.api.start()
    await eventually(lambda: registry.state == "synced" and registry.error == "", what="synced again")
    assert [e.cluster for e in mesh.aggregate.endpoints_of(REVIEWS)] == [PRIMARY, REMOTE]
    assert not mesh.events.of(EndpointsChanged)  # nothing changed in the cluster: nothing to push


async def test_a_cluster_turning_stale_and_back_is_announced(
    apiservers: StartServer, meshes: MakeMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.events.ClusterStateChanged: "A cluster became synced, stale (unreachable, last-known state kept)
    or failed"; the aggregate has `cluster_state_changed` to announce it, but nothing calls it."""
    monkeypatch.setenv("ISTHMUS_CLUSTER_STALE_AFTER", "0.2")
    primary, remote = await two_clusters(apiservers)
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    registry = mesh.aggregate.clusters[REMOTE]
    await remote.api.stop()
    await eventually(lambda: registry.state == "stale", what="stale")
    await eventually(lambda: ClusterStateChanged(REMOTE, "stale") in mesh.events.seen, timeout=2.0)
    await remote.api.start()
    await eventually(lambda: ClusterStateChanged(REMOTE, "synced") in mesh.events.seen, timeout=2.0)


async def test_each_port_of_a_slice_is_an_endpoint(apiservers: StartServer, meshes: MakeMesh) -> None:
    primary, _ = await two_clusters(apiservers)
    await primary.run_pod("reviews-v1", "10.244.0.10", node_name="node-a")
    await primary.kube.create(
        service(NS, "reviews", [("http", 9080), ("grpc-admin", 9090)]),
        endpoint_slice(
            NS,
            "reviews-p",
            "reviews",
            [endpoint("10.244.0.10", pod="reviews-v1", node="node-a")],
            ports=[("http", 8080), ("grpc-admin", 8090)],
        ),
    )
    mesh = meshes()
    await mesh.add_synced(PRIMARY, primary.api.client())
    assert sorted((e.service_port_name, e.port) for e in mesh.aggregate.endpoints_of(REVIEWS)) == [
        ("grpc-admin", 8090),
        ("http", 8080),
    ]


async def test_a_slice_moved_to_another_service_moves_its_endpoints(
    apiservers: StartServer, meshes: MakeMesh
) -> None:
    primary, remote = await two_clusters(apiservers)
    await bookinfo(primary, remote)
    await primary.kube.create(
        endpoint_slice(NS, "extra", "reviews", [endpoint("10.244.0.30", pod="ratings-v1", node="node-a")])
    )
    mesh = meshes()
    await synced_mesh(mesh, primary, remote)
    assert "10.244.0.30" in by_address(mesh.aggregate.endpoints_of(REVIEWS))
    mesh.events.clear()

    await primary.kube.patch(
        EndpointSlice, "extra", {"metadata": {"labels": {"kubernetes.io/service-name": "details"}}}, NS
    )
    details = "details.bookinfo.svc.cluster.local"
    await eventually(
        lambda: (
            set(mesh.events.seen) == {EndpointsChanged(REVIEWS, PRIMARY), EndpointsChanged(details, PRIMARY)}
        )
    )
    assert "10.244.0.30" not in by_address(mesh.aggregate.endpoints_of(REVIEWS))
    assert [e.address for e in mesh.aggregate.endpoints_of(details)] == ["10.244.0.30"]
    assert mesh.aggregate.endpoints_of(details)[0].identity.endswith("/sa/bookinfo-ratings")


async def test_a_deleted_pod_is_forgotten(apiservers: StartServer, meshes: MakeMesh) -> None:
    _primary, remote, mesh = await bookinfo_mesh(apiservers, meshes)
    await remote.kube.delete(Pod, "reviews-v2", NS)
    await eventually(lambda: mesh.aggregate.cluster_of_ip("10.245.0.20") is None, what="the pod forgotten")
    assert WorkloadChanged(REMOTE, NS, "reviews-v2") in mesh.events.seen
    assert mesh.aggregate.cluster_of_ip("10.244.0.10") == PRIMARY
