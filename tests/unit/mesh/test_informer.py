"""The informer against a real (in-process) API server: list then watch, only real changes reported, relist
after 410 with removals found, errors while the server cannot be reached, and how failures are described."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Namespace, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from isthmus.kube.client import from_kubeconfig_data
from isthmus.kube.informer import Informer, Key, describe
from isthmus.kube.resources import EndpointSlices, Services
from isthmus.registry import projections
from isthmus.registry.projections import KService, KSlice
from tests.unit.mesh.meshkit import (
    Kube,
    LocalApi,
    SilentListener,
    Spawn,
    StartServer,
    TcpProxy,
    endpoint,
    endpoint_slice,
    eventually,
    free_port,
    kubeconfig,
    namespace,
    service,
    service_account,
    settle,
)

NS = "informer"
Change = tuple[Key, Any, Any]


class Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    def __call__(self, key: Key, old: Any, new: Any) -> None:
        self.changes.append((key, old, new))

    def names(self) -> list[tuple[str, str]]:
        """(name, "added" | "modified" | "removed") of each change, in order."""
        out = []
        for key, old, new in self.changes:
            kind = "added" if old is None else "removed" if new is None else "modified"
            out.append((key[1], kind))
        return out


def service_informer(client: AsyncClient, recorder: Recorder) -> Informer[KService]:
    return Informer(client, Services, projections.service, recorder, namespace=NS, name="services")


@pytest.fixture
async def kube(apiserver: LocalApi) -> Kube:
    kube = Kube(apiserver.client())
    await kube.create(namespace(NS))
    return kube


async def test_it_lists_then_watches(apiserver: LocalApi, kube: Kube, spawn: Spawn) -> None:
    await kube.create(service(NS, "a"), service(NS, "b"), service("default", "elsewhere"))
    recorder = Recorder()
    informer = service_informer(apiserver.client(), recorder)
    spawn(informer.run())
    await eventually(informer.synced.is_set, what="the first list")
    assert sorted(recorder.names()) == [("a", "added"), ("b", "added")]
    assert set(informer.items) == {(NS, "a"), (NS, "b")}
    assert informer.resource_version

    recorder.changes.clear()
    await kube.create(service(NS, "c", [("grpc", 7070)]))
    await eventually(lambda: recorder.names() == [("c", "added")], what="c added by the watch")
    await kube.update(service(NS, "a", [("http", 9080), ("http-admin", 9090)]))
    await eventually(lambda: recorder.names()[1:] == [("a", "modified")], what="a modified")
    _, old, new = recorder.changes[-1]
    assert [p.port for p in old.ports] == [9080]
    assert [p.port for p in new.ports] == [9080, 9090]
    await kube.delete(Service, "b", NS)
    await eventually(lambda: recorder.names()[2:] == [("b", "removed")], what="b removed")
    assert recorder.changes[-1][1] is not None  # the last state known
    assert set(informer.items) == {(NS, "a"), (NS, "c")}
    assert informer.items[(NS, "a")] is new
    assert informer.error == ""
    assert informer.failing_since is None


async def test_updates_that_change_nothing_in_the_projection_are_not_reported(
    apiserver: LocalApi, kube: Kube, spawn: Spawn
) -> None:
    await kube.create(service(NS, "a"))
    recorder = Recorder()
    informer = service_informer(apiserver.client(), recorder)
    spawn(informer.run())
    await eventually(informer.synced.is_set)
    recorder.changes.clear()
    events = informer.events

    await kube.update(
        {**service(NS, "a"), "metadata": {"namespace": NS, "name": "a", "annotations": {"note": "x"}}}
    )
    await kube.update(
        {**service(NS, "a"), "metadata": {"namespace": NS, "name": "a", "annotations": {"note": "y"}}}
    )
    await eventually(lambda: informer.events >= events + 2, what="the two updates seen by the watch")
    assert recorder.changes == []

    await kube.update(
        {**service(NS, "a"), "metadata": {"namespace": NS, "name": "a", "labels": {"app": "a"}}}
    )
    await eventually(lambda: recorder.names() == [("a", "modified")], what="a label change reported")


async def test_an_object_that_leaves_the_projection_is_reported_removed(
    apiserver: LocalApi, kube: Kube, spawn: Spawn
) -> None:
    await kube.create(endpoint_slice(NS, "s1", "reviews", [endpoint("10.244.0.5")]))
    recorder = Recorder()
    informer: Informer[KSlice] = Informer(
        apiserver.client(), EndpointSlices, projections.endpoint_slice, recorder, namespace=NS
    )
    spawn(informer.run())
    await eventually(informer.synced.is_set)
    assert recorder.names() == [("s1", "added")]

    await kube.patch(EndpointSlice, "s1", {"metadata": {"labels": {"kubernetes.io/service-name": None}}}, NS)
    await eventually(lambda: recorder.names() == [("s1", "added"), ("s1", "removed")], what="s1 removed")
    assert informer.items == {}


async def test_an_object_deleted_while_the_watch_is_down_is_reported_removed_after_the_relist(
    apiserver: LocalApi, kube: Kube, spawn: Spawn
) -> None:
    await kube.create(service(NS, "kept"), service(NS, "deleted"), service(NS, "changed"))
    recorder = Recorder()
    informer = service_informer(apiserver.client(), recorder)
    spawn(informer.run())
    await eventually(informer.synced.is_set)
    recorder.changes.clear()
    events, version = informer.events, informer.resource_version

    async def meanwhile(side: Kube) -> None:
        await side.delete(Service, "deleted", NS)
        await side.update(service(NS, "changed", [("http", 9080), ("grpc", 7070)]))
        await side.create(service(NS, "new"))

    # The restarted server's watch history starts over: resuming from `version` is 410 Gone.
    await apiserver.restart(while_down=meanwhile)
    await eventually(
        lambda: (
            sorted(recorder.names()) == [("changed", "modified"), ("deleted", "removed"), ("new", "added")]
        ),
        what="the relist's differences",
    )
    assert informer.events == events  # found by the relist, not by a watch event
    assert informer.resource_version != version
    assert set(informer.items) == {(NS, "kept"), (NS, "changed"), (NS, "new")}
    await eventually(lambda: informer.error == "", what="the error cleared")

    await kube.create(service(NS, "after"))  # and the watch runs again
    await eventually(lambda: recorder.names()[-1] == ("after", "added"))


async def test_a_stopped_server_sets_error_and_failing_since_and_they_clear_when_it_is_back(
    apiserver: LocalApi, kube: Kube, spawn: Spawn
) -> None:
    await kube.create(service(NS, "a"))
    recorder = Recorder()
    informer = service_informer(apiserver.client(), recorder)
    spawn(informer.run())
    await eventually(informer.synced.is_set)
    assert (informer.error, informer.failing_since) == ("", None)

    before = time.monotonic()
    await apiserver.stop()
    await eventually(
        lambda: informer.error.startswith("could not connect to the API server"), what="the informer noticed"
    )
    assert informer.failing_since is not None and informer.failing_since >= before
    since = informer.failing_since
    await settle(0.3)  # several retries later, failing_since is still the start of the outage
    assert informer.failing_since == since
    assert set(informer.items) == {(NS, "a")}  # last-known objects stay
    assert [kind for _, kind in recorder.names()] == ["added"]

    await apiserver.start()
    await eventually(lambda: informer.error == "" and informer.failing_since is None, what="recovered")
    assert set(informer.items) == {(NS, "a")}
    assert [kind for _, kind in recorder.names()] == ["added"]  # nothing reported for an unchanged object


async def test_a_broken_watch_resumes_from_its_last_version(
    apiserver: LocalApi, kube: Kube, spawn: Spawn
) -> None:
    proxy = TcpProxy(apiserver.config.listen_port)
    await proxy.restore()
    try:
        recorder = Recorder()
        informer = service_informer(apiserver.client(server=proxy.url), recorder)
        spawn(informer.run())
        await eventually(informer.synced.is_set)
        events = informer.events

        await proxy.cut()
        await eventually(lambda: informer.error, what="the cut noticed")
        await kube.create(service(NS, "while-cut"))
        await proxy.restore()
        await eventually(
            lambda: recorder.names() == [("while-cut", "added")], what="the change made meanwhile"
        )
        assert informer.events == events + 1  # delivered by the resumed watch (no relist)
        assert informer.error == ""
    finally:
        await proxy.close()


async def test_the_error_clears_when_the_watch_works_again_even_if_nothing_changed(
    apiserver: LocalApi, kube: Kube, spawn: Spawn
) -> None:
    """The contract: `error` and `failing_since` clear once a list or watch works again. A cluster where
    nothing happens to change must not stay in error (and its registry must not turn stale) after a blip."""
    await kube.create(service(NS, "a"))
    proxy = TcpProxy(apiserver.config.listen_port)
    await proxy.restore()
    try:
        informer = service_informer(apiserver.client(server=proxy.url), Recorder())
        spawn(informer.run())
        await eventually(informer.synced.is_set)

        await proxy.cut()
        await eventually(lambda: informer.error, what="the cut noticed")
        connections = proxy.connections
        await proxy.restore()
        await eventually(lambda: proxy.connections > connections, what="the informer reconnected")
        await settle(0.5)  # well after the resumed watch is established
        assert (informer.error, informer.failing_since) == ("", None)
    finally:
        await proxy.close()


# -- describing failures ----------------------------------------------------------------------------------------


async def informer_error(client: AsyncClient, spawn: Spawn) -> str:
    informer = service_informer(client, Recorder())
    spawn(informer.run())
    await eventually(lambda: informer.error, timeout=5.0, what="a failure")
    assert informer.failing_since is not None
    assert not informer.synced.is_set()
    return informer.error


async def test_401_is_described_as_refused_credentials(apiserver: LocalApi, spawn: Spawn) -> None:
    error = await informer_error(apiserver.client(token="not-a-valid-token"), spawn)
    assert error.startswith("the API server refused the credentials (401 Unauthorized)"), error


async def test_403_is_described_as_missing_permission(apiserver: LocalApi, kube: Kube, spawn: Spawn) -> None:
    await kube.create(service_account(NS, "nobody"))
    token = await kube.token(NS, "nobody")
    error = await informer_error(apiserver.client(token=token), spawn)
    assert error.startswith("the credentials lack permission (403 Forbidden)"), error
    assert "system:serviceaccount:informer:nobody" in error  # the server's message says who and what


async def test_other_api_errors_give_the_code_and_message(apiserver: LocalApi) -> None:
    client = apiserver.client()
    with pytest.raises(ApiError) as caught:
        await client.get(Service, "missing", namespace=NS)
    assert describe(caught.value).startswith("the API server answered 404: ")
    assert "missing" in describe(caught.value)


async def test_connection_refused_is_described_as_such(apiserver: LocalApi, spawn: Spawn) -> None:
    """Nothing listens at the address: the description must say so (httpx's own text here is only "All
    connection attempts failed"; the cause, ECONNREFUSED, is in the exception's chain)."""
    error = await informer_error(apiserver.client(server=f"https://127.0.0.1:{free_port()}"), spawn)
    assert error.startswith("could not connect to the API server"), error
    assert "refused" in error.lower(), error


async def test_a_listener_that_accepts_but_never_answers_plain_http(
    monkeypatch: pytest.MonkeyPatch, spawn: Spawn
) -> None:
    monkeypatch.setenv("ISTHMUS_KUBE_REQUEST_TIMEOUT", "0.2")
    listener = SilentListener()
    port = await listener.start()
    try:
        client = from_kubeconfig_data(yaml.safe_dump(kubeconfig(f"http://127.0.0.1:{port}", "", "token")))
        try:
            error = await informer_error(client, spawn)
        finally:
            await client.close()
        assert listener.accepted >= 1
        assert error == "the API server accepted the connection but did not answer in time"
    finally:
        await listener.close()


async def test_a_listener_that_accepts_but_never_answers_https(
    apiserver: LocalApi, monkeypatch: pytest.MonkeyPatch, spawn: Spawn
) -> None:
    """An API server is https: a listener that accepts and then says nothing times out in the TLS handshake,
    which httpx reports as a connect timeout. The connection was accepted, so "could not connect" points the
    user at the wrong problem (routing, firewall) instead of the server that hangs."""
    monkeypatch.setenv("ISTHMUS_KUBE_REQUEST_TIMEOUT", "0.2")
    listener = SilentListener()
    port = await listener.start()
    try:
        error = await informer_error(apiserver.client(server=f"https://127.0.0.1:{port}"), spawn)
        assert listener.accepted >= 1
        assert error.startswith("the API server accepted the connection but did not answer in time"), error
    finally:
        await listener.close()


def test_describe_wording_of_other_failures() -> None:
    assert describe(ValueError("Expecting value")).startswith(
        "the API server answered something that is not Kubernetes JSON"
    )
    assert describe(RuntimeError("boom")) == "RuntimeError: boom"


async def test_several_servers_run_at_once(apiservers: StartServer) -> None:
    """The harness: a primary and remotes, each its own state, certificates shared."""
    one, two = await apiservers("primary"), await apiservers("remote")
    await Kube(one.client()).create(namespace("only-in-one"))
    names_one = {ns.metadata.name async for ns in one.client().list(Namespace) if ns.metadata}
    names_two = {ns.metadata.name async for ns in two.client().list(Namespace) if ns.metadata}
    assert "only-in-one" in names_one
    assert "only-in-one" not in names_two
    assert one.url != two.url


async def test_a_list_in_pages_is_complete_and_watchable(
    apiserver: LocalApi, kube: Kube, spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISTHMUS_KUBE_LIST_PAGE", "2")
    await kube.create(*(service(NS, f"s{i}") for i in range(5)))
    recorder = Recorder()
    informer = service_informer(apiserver.client(), recorder)
    spawn(informer.run())
    await eventually(informer.synced.is_set)
    assert sorted(name for name, _ in recorder.names()) == [f"s{i}" for i in range(5)]
    await kube.delete(Service, "s3", NS)
    await eventually(lambda: recorder.names()[-1] == ("s3", "removed"))
    assert informer.error == ""


async def test_a_label_selected_informer_reports_objects_leaving_the_selection_as_removed(
    apiserver: LocalApi, kube: Kube, spawn: Spawn
) -> None:
    labelled = service(NS, "a", labels={"mesh": "yes"})
    await kube.create(labelled, service(NS, "b"))
    recorder = Recorder()
    informer: Informer[KService] = Informer(
        apiserver.client(), Services, projections.service, recorder, namespace=NS, labels={"mesh": "yes"}
    )
    spawn(informer.run())
    await eventually(informer.synced.is_set)
    assert recorder.names() == [("a", "added")]
    await kube.patch(Service, "a", {"metadata": {"labels": {"mesh": None}}}, NS)
    await eventually(lambda: recorder.names() == [("a", "added"), ("a", "removed")])
    await kube.patch(Service, "b", {"metadata": {"labels": {"mesh": "yes"}}}, NS)
    await eventually(lambda: recorder.names()[-1] == ("b", "added"))
