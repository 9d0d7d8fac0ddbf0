"""The remote-cluster controller against in-process API servers: Secrets labelled istio/multiCluster=true in the
primary's istio-system add, update and remove remote clusters (each remote is another in-process server); bad
input is refused with an error naming the Secret and key, and never disturbs the other clusters."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Secret

from isthmus.kube.client import from_kubeconfig_data
from isthmus.model import ClusterAdded, ClusterId, ClusterRemoved, EndpointsChanged, ServiceChanged
from isthmus.registry.remotes import RemoteSecrets
from tests.unit.mesh.meshkit import (
    Events,
    Kube,
    LocalApi,
    MakeMesh,
    Mesh,
    Spawn,
    StartServer,
    TcpProxy,
    endpoint,
    endpoint_slice,
    eventually,
    namespace,
    pod,
    service,
    settle,
)

NS = "bookinfo"
REVIEWS = "reviews.bookinfo.svc.cluster.local"
SYSTEM = "istio-system"
JsonObject = dict[str, Any]


def cluster_secret(name: str, kubeconfigs: dict[str, str], **annotations: str) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "namespace": SYSTEM,
            "name": name,
            "labels": {"istio/multiCluster": "true"},
            "annotations": {"networking.istio.io/cluster": name, **annotations},
        },
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in kubeconfigs.items()},
    }


async def serve_reviews(api: LocalApi, ip: str) -> None:
    """A remote cluster with one reviews pod, its Service and its slice."""
    kube = Kube(api.client())
    await kube.create(namespace(NS), pod(NS, "reviews", labels={"app": "reviews"}, sidecar=True))
    await kube.pod_status(NS, "reviews", ip)
    await kube.create(
        service(NS, "reviews"),
        endpoint_slice(NS, "reviews", "reviews", [endpoint(ip, pod="reviews", node="node-a")]),
    )


@dataclass
class World:
    """The primary (with the controller running on it) and two remotes serving reviews."""

    primary: LocalApi
    remote1: LocalApi
    remote2: LocalApi
    mesh: Mesh
    remotes: RemoteSecrets
    kube: Kube  # writes to the primary
    clients: list[AsyncClient] = field(default_factory=list)  # every client the controller made

    @property
    def events(self) -> Events:
        return self.mesh.events

    def running(self) -> set[str]:
        return {str(c) for c in self.mesh.aggregate.clusters}

    def clusters_of(self, host: str = REVIEWS) -> list[str]:
        return [str(e.cluster) for e in self.mesh.aggregate.endpoints_of(host)]

    def entry(self, cluster: str, secret: str | None = None) -> JsonObject:
        entries = [
            e
            for e in self.remotes.status()
            if e["id"] == cluster and (secret is None or e["secret"] == f"{SYSTEM}/{secret}")
        ]
        assert len(entries) == 1, self.remotes.status()
        return entries[0]

    async def synced(self, cluster: str) -> None:
        await eventually(
            lambda: (
                cluster in self.running() and self.mesh.aggregate.clusters[ClusterId(cluster)].synced.is_set()
            ),
            what=f"{cluster} synced",
        )

    async def reconciled(self) -> None:
        """Wait until the controller has seen the Secrets as they are now, and acted on them."""
        await settle(0.05)
        await eventually(
            lambda: self.remotes.informer.synced.is_set() and not self.remotes._dirty.is_set(),
            what="reconciled",
        )
        await settle(0.2)


@pytest.fixture
async def world(apiservers: StartServer, meshes: MakeMesh, spawn: Spawn) -> AsyncIterator[World]:
    primary = await apiservers("primary")
    remote1, remote2 = await apiservers("remote1"), await apiservers("remote2")
    await serve_reviews(remote1, "10.245.0.10")
    await serve_reviews(remote2, "10.246.0.10")
    kube = Kube(primary.client())
    await kube.create(namespace(SYSTEM))
    mesh = meshes("primary")
    await mesh.add_synced("primary", primary.client())
    clients: list[AsyncClient] = []

    def factory(data: bytes) -> AsyncClient:
        client = from_kubeconfig_data(data)
        clients.append(client)
        return client

    remotes = RemoteSecrets(
        primary.client(), SYSTEM, mesh.aggregate, lambda: mesh.aggregate.trust_domain, client_factory=factory
    )
    spawn(remotes.run())
    await eventually(remotes.informer.synced.is_set, what="the Secrets listed")
    yield World(primary, remote1, remote2, mesh, remotes, kube, clients)
    await mesh.close()
    for client in clients:
        await client.close()


async def test_a_secret_adds_its_cluster(world: World) -> None:
    await world.kube.create(cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()}))
    await world.synced("remote1")
    assert world.running() == {"primary", "remote1"}
    await eventually(lambda: world.clusters_of() == ["remote1"], what="remote1's endpoints")
    assert ClusterAdded(ClusterId("remote1")) in world.events.seen
    assert world.mesh.aggregate.cluster_of_ip("10.245.0.10") == "remote1"
    endpoint_ = world.mesh.aggregate.endpoints_of(REVIEWS)[0]
    assert endpoint_.identity == "spiffe://cluster.local/ns/bookinfo/sa/default"
    assert endpoint_.labels["topology.istio.io/cluster"] == "remote1"
    assert world.remotes.status() == [
        {
            "id": "remote1",
            "secret": "istio-system/remote1",
            "key": "remote1",
            "state": "synced",
            "synced": True,
            "stale": False,
            "error": "",
        }
    ]


async def test_one_secret_can_hold_several_clusters(world: World) -> None:
    await world.kube.create(
        cluster_secret(
            "remotes",
            {"remote1": world.remote1.kubeconfig_yaml(), "remote2": world.remote2.kubeconfig_yaml()},
        )
    )
    await world.synced("remote1")
    await world.synced("remote2")
    await eventually(lambda: world.clusters_of() == ["remote1", "remote2"])


async def test_secrets_without_the_label_or_in_other_namespaces_are_ignored(world: World) -> None:
    unlabelled = cluster_secret("plain", {"remote1": world.remote1.kubeconfig_yaml()})
    unlabelled["metadata"]["labels"] = {}
    elsewhere = cluster_secret("elsewhere", {"remote2": world.remote2.kubeconfig_yaml()})
    elsewhere["metadata"]["namespace"] = "default"
    await world.kube.create(unlabelled, elsewhere)
    await world.reconciled()
    assert world.running() == {"primary"}
    assert world.remotes.status() == []


async def test_an_identical_reapply_changes_nothing(world: World) -> None:
    secret = cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()})
    await world.kube.create(secret)
    await world.synced("remote1")
    await eventually(lambda: world.clusters_of() == ["remote1"])
    registry = world.mesh.aggregate.clusters[ClusterId("remote1")]
    client, endpoints = registry.client, world.mesh.aggregate.endpoints_of(REVIEWS)
    world.events.clear()

    await world.kube.update(
        cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()}, touched="1")
    )
    await world.kube.update(secret)  # and the very same object again
    await world.reconciled()
    assert world.events.seen == []
    assert world.mesh.aggregate.clusters[ClusterId("remote1")] is registry
    assert registry.client is client  # not even reconnected
    assert world.mesh.aggregate.endpoints_of(REVIEWS) == endpoints
    assert len(world.clients) == 1


async def watch_endpoints(world: World, stop: asyncio.Event) -> list[list[str]]:
    """Every distinct set of clusters serving reviews seen while `stop` is not set (sampled every few ms)."""
    seen: list[list[str]] = []
    while not stop.is_set():
        now = world.clusters_of()
        if not seen or seen[-1] != now:
            seen.append(now)
        await asyncio.sleep(0.002)
    return seen


async def test_a_changed_kubeconfig_reconnects_and_keeps_unchanged_endpoints(
    world: World, spawn: Spawn
) -> None:
    await world.kube.create(cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()}))
    await world.synced("remote1")
    await eventually(lambda: world.clusters_of() == ["remote1"])
    registry = world.mesh.aggregate.clusters[ClusterId("remote1")]
    old_client = registry.client
    world.events.clear()
    stop = asyncio.Event()
    sampler = spawn(watch_endpoints(world, stop))

    # The same cluster, other bytes: another user name for the same credentials (as a rotated token would be).
    changed = world.remote1.kubeconfig_yaml(user="istio-reader-service-account")
    await world.kube.update(cluster_secret("remote1", {"remote1": changed}))
    await eventually(lambda: registry.client is not old_client, what="reconnected")
    await eventually(registry.synced.is_set, what="resynced")
    await settle()
    stop.set()
    assert await sampler == [["remote1"]]  # never dropped, not even for a moment
    assert world.mesh.aggregate.clusters[ClusterId("remote1")] is registry
    assert not world.events.of(EndpointsChanged)
    assert not world.events.of(ServiceChanged)
    assert not world.events.of(ClusterRemoved)
    assert world.entry("remote1")["error"] == ""

    # and the new connection works: a change in the remote arrives through it
    await Kube(world.remote1.client()).update(
        endpoint_slice(NS, "reviews", "reviews", [endpoint("10.245.0.10"), endpoint("10.245.0.11")])
    )
    await eventually(lambda: len(world.mesh.aggregate.endpoints_of(REVIEWS)) == 2, what="the new endpoint")


async def test_a_kubeconfig_pointing_at_another_server_replaces_only_what_differs(world: World) -> None:
    await world.kube.create(cluster_secret("moving", {"moving": world.remote1.kubeconfig_yaml()}))
    await world.synced("moving")
    await eventually(
        lambda: [e.address for e in world.mesh.aggregate.endpoints_of(REVIEWS)] == ["10.245.0.10"]
    )
    await world.kube.update(cluster_secret("moving", {"moving": world.remote2.kubeconfig_yaml()}))
    await eventually(
        lambda: [e.address for e in world.mesh.aggregate.endpoints_of(REVIEWS)] == ["10.246.0.10"],
        what="the other server's endpoints",
    )
    assert world.mesh.aggregate.cluster_of_ip("10.245.0.10") is None
    assert world.mesh.aggregate.cluster_of_ip("10.246.0.10") == "moving"
    assert not world.events.of(ClusterRemoved)


async def test_a_removed_key_removes_its_cluster_only(world: World) -> None:
    both = {"remote1": world.remote1.kubeconfig_yaml(), "remote2": world.remote2.kubeconfig_yaml()}
    await world.kube.create(cluster_secret("remotes", both))
    await world.synced("remote1")
    await world.synced("remote2")
    await eventually(lambda: world.clusters_of() == ["remote1", "remote2"])
    world.events.clear()

    secret = cluster_secret("remotes", {"remote1": both["remote1"]})
    await world.kube.patch(Secret, "remotes", {"data": {**secret["data"], "remote2": None}}, SYSTEM)
    await eventually(
        lambda: ClusterRemoved(ClusterId("remote2")) in world.events.seen, what="remote2 removed"
    )
    assert world.running() == {"primary", "remote1"}
    assert world.clusters_of() == ["remote1"]
    assert world.mesh.aggregate.cluster_of_ip("10.246.0.10") is None
    assert EndpointsChanged(REVIEWS, ClusterId("remote2")) in world.events.seen
    assert not [e for e in world.events.seen if getattr(e, "cluster", None) in ("remote1", "primary")]
    assert [e["id"] for e in world.remotes.status()] == ["remote1"]


async def test_a_deleted_secret_removes_its_clusters(world: World) -> None:
    await world.kube.create(
        cluster_secret("remotes", {"remote1": world.remote1.kubeconfig_yaml()}),
        cluster_secret("other", {"remote2": world.remote2.kubeconfig_yaml()}),
    )
    await world.synced("remote1")
    await world.synced("remote2")
    await eventually(lambda: world.clusters_of() == ["remote1", "remote2"])
    world.events.clear()

    await world.kube.delete(Secret, "remotes", SYSTEM)
    await eventually(lambda: ClusterRemoved(ClusterId("remote1")) in world.events.seen)
    assert world.running() == {"primary", "remote2"}
    assert world.clusters_of() == ["remote2"]
    assert [e["id"] for e in world.remotes.status()] == ["remote2"]


async def test_a_removed_cluster_leaves_no_connection_open(world: World) -> None:
    """The controller made a client for the cluster; once the cluster is gone, nothing may stay connected to
    its API server (a control plane whose remote Secrets are rotated or removed must not leak connections)."""
    proxy = TcpProxy(world.remote1.config.listen_port)
    await proxy.restore()
    try:
        await world.kube.create(
            cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml(server=proxy.url)})
        )
        await world.synced("remote1")
        assert proxy.live > 0
        await world.kube.delete(Secret, "remote1", SYSTEM)
        await eventually(lambda: "remote1" not in world.running(), what="removed")
        await eventually(
            lambda: proxy.live == 0, timeout=2.0, what="every connection to the removed cluster closed"
        )
    finally:
        await proxy.close()


# -- refused input ------------------------------------------------------------------------------------------


async def assert_refused(world: World, cluster: str, secret: str, *words: str) -> str:
    await eventually(
        lambda: any(e["state"] == "refused" and e["id"] == cluster for e in world.remotes.status()),
        what=f"{cluster} refused",
    )
    entry = world.entry(cluster, secret)
    assert entry["secret"] == f"{SYSTEM}/{secret}"
    assert entry["state"] == "refused"
    assert not entry["synced"]
    error: str = entry["error"]
    for word in words:
        assert word in error, error
    return error


async def good_cluster_unaffected(world: World) -> None:
    await world.synced("remote2")
    await eventually(lambda: world.clusters_of() == ["remote2"], what="remote2 serving")
    assert world.entry("remote2")["error"] == ""
    assert "primary" in world.running()


async def test_a_key_that_is_not_a_cluster_id_is_refused(world: World) -> None:
    await world.kube.create(
        cluster_secret(
            "remotes",
            {"remote_1": world.remote1.kubeconfig_yaml(), "remote2": world.remote2.kubeconfig_yaml()},
        )
    )
    await assert_refused(world, "remote_1", "remotes", '"remote_1"', "DNS-1123")
    assert world.entry("remote_1")["key"] == "remote_1"
    assert "remote_1" not in world.running()
    await good_cluster_unaffected(world)


async def test_a_malformed_kubeconfig_is_refused(world: World) -> None:
    await world.kube.create(
        cluster_secret("broken", {"remote1": "clusters: [unterminated"}),
        cluster_secret("good", {"remote2": world.remote2.kubeconfig_yaml()}),
    )
    await assert_refused(
        world, "remote1", "broken", "Secret istio-system/broken", "key remote1", "not valid YAML"
    )
    assert "remote1" not in world.running()
    await good_cluster_unaffected(world)


@pytest.mark.parametrize(
    ("kubeconfig", "words"),
    [
        ("just a string", "not a kubeconfig"),
        ("apiVersion: v1\nkind: Config\nclusters: []\n", "no clusters"),
        ("clusters: [{name: c, cluster: {}}]\ncontexts: [{name: c, context: {cluster: c}}]\n", "no server"),
    ],
)
async def test_a_kubeconfig_that_names_no_server_is_refused(
    world: World, kubeconfig: str, words: str
) -> None:
    await world.kube.create(
        cluster_secret("broken", {"remote1": kubeconfig, "remote2": world.remote2.kubeconfig_yaml()})
    )
    await assert_refused(world, "remote1", "broken", "Secret istio-system/broken", "key remote1", words)
    await good_cluster_unaffected(world)


async def test_the_primarys_own_id_is_refused(world: World) -> None:
    await world.kube.create(
        cluster_secret(
            "self", {"primary": world.primary.kubeconfig_yaml(), "remote2": world.remote2.kubeconfig_yaml()}
        )
    )
    await assert_refused(world, "primary", "self", '"primary"', "primary cluster")
    assert world.entry("primary")["key"] == "primary"
    await good_cluster_unaffected(world)
    assert [str(c) for c in world.mesh.aggregate.clusters].count("primary") == 1
    assert not world.events.of(ClusterRemoved)


async def test_an_id_in_two_secrets_is_an_error_on_both_and_the_running_cluster_keeps_running(
    world: World,
) -> None:
    await world.kube.create(cluster_secret("first", {"remote1": world.remote1.kubeconfig_yaml()}))
    await world.synced("remote1")
    registry = world.mesh.aggregate.clusters[ClusterId("remote1")]
    world.events.clear()

    await world.kube.create(
        cluster_secret(
            "second", {"remote1": world.remote2.kubeconfig_yaml(), "remote2": world.remote2.kubeconfig_yaml()}
        )
    )
    await eventually(lambda: len([e for e in world.remotes.status() if e["id"] == "remote1"]) == 2)
    first, second = world.entry("remote1", "first"), world.entry("remote1", "second")
    for entry in (first, second):
        assert "istio-system/first" in entry["error"] and "istio-system/second" in entry["error"], entry
        assert entry["key"] == "remote1"
    assert first["state"] == "synced"  # the one that ran keeps running, with the error shown
    assert second["state"] == "refused"
    assert world.mesh.aggregate.clusters[ClusterId("remote1")] is registry
    assert world.mesh.aggregate.cluster_of_ip("10.245.0.10") == "remote1"  # still remote1's own server
    assert not world.events.of(ClusterRemoved)
    await world.synced("remote2")  # the other key of the second Secret is fine

    await world.kube.delete(Secret, "first", SYSTEM)  # resolved: the second Secret's kubeconfig takes over
    await eventually(lambda: world.mesh.aggregate.cluster_of_ip("10.246.0.10") in ("remote1", "remote2"))
    await eventually(
        lambda: (
            world.entry("remote1")["error"] == ""
            and world.entry("remote1")["secret"] == "istio-system/second"
        )
    )


async def test_a_bad_kubeconfig_for_a_running_cluster_keeps_it_running(world: World) -> None:
    await world.kube.create(cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()}))
    await world.synced("remote1")
    await eventually(lambda: world.clusters_of() == ["remote1"])
    world.events.clear()
    await world.kube.update(cluster_secret("remote1", {"remote1": "{not yaml"}))
    await eventually(lambda: world.entry("remote1")["error"], what="the error")
    entry = world.entry("remote1")
    assert "Secret istio-system/remote1" in entry["error"] and "key remote1" in entry["error"]
    assert entry["state"] == "synced"
    assert world.clusters_of() == ["remote1"]
    assert world.events.seen == []

    await world.kube.update(cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()}))
    await eventually(lambda: world.entry("remote1")["error"] == "", what="the error cleared once fixed")
    assert world.clusters_of() == ["remote1"]


async def test_an_unreachable_remote_does_not_hold_the_others_back(world: World) -> None:
    await world.remote1.stop()
    await world.kube.create(
        cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()}),
        cluster_secret("remote2", {"remote2": world.remote2.kubeconfig_yaml()}),
    )
    await world.synced("remote2")
    await eventually(lambda: world.entry("remote1")["state"] == "failed", what="remote1 failing")
    assert world.entry("remote1")["error"].startswith("could not connect to the API server")
    started = asyncio.get_running_loop().time()
    await world.remotes.wait_synced(0.3)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert world.clusters_of() == ["remote2"]

    await world.remote1.start()
    await world.synced("remote1")
    await eventually(lambda: world.clusters_of() == ["remote1", "remote2"])
    assert world.entry("remote1")["error"] == ""


async def test_an_id_in_two_secrets_at_start_runs_once(world: World, meshes: MakeMesh, spawn: Spawn) -> None:
    """A control plane that starts with the conflict already there: the older Secret's cluster runs, both
    Secrets show the error."""
    await world.kube.create(cluster_secret("a-older", {"shared": world.remote1.kubeconfig_yaml()}))
    # created in the same second or the next: either way "a-older" sorts first (creationTimestamp, then name)
    await world.kube.create(cluster_secret("b-newer", {"shared": world.remote2.kubeconfig_yaml()}))
    mesh = meshes("primary")
    remotes = RemoteSecrets(
        world.primary.client(), SYSTEM, mesh.aggregate, lambda: mesh.aggregate.trust_domain
    )
    spawn(remotes.run())
    await eventually(lambda: ClusterId("shared") in mesh.aggregate.clusters, what="shared running")
    await eventually(lambda: len(remotes.status()) == 2)
    older, newer = remotes.status()
    assert (older["secret"], newer["secret"]) == ("istio-system/a-older", "istio-system/b-newer")
    assert older["state"] != "refused" and newer["state"] == "refused"
    assert "claimed by several Secrets" in older["error"] and "claimed by several Secrets" in newer["error"]
    await eventually(
        lambda: mesh.aggregate.cluster_of_ip("10.245.0.10") == "shared", what="the older's server"
    )
    assert mesh.aggregate.cluster_of_ip("10.246.0.10") is None
    for registry in mesh.aggregate.clusters.values():
        if registry.cluster == "shared":
            await registry.stop()
            await registry.client.close()


async def test_a_secret_that_loses_its_label_removes_its_cluster(world: World) -> None:
    await world.kube.create(cluster_secret("remote1", {"remote1": world.remote1.kubeconfig_yaml()}))
    await world.synced("remote1")
    await world.kube.patch(Secret, "remote1", {"metadata": {"labels": {"istio/multiCluster": None}}}, SYSTEM)
    await eventually(lambda: ClusterRemoved(ClusterId("remote1")) in world.events.seen)
    assert world.running() == {"primary"}
    assert world.remotes.status() == []
