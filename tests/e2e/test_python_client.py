"""The mesh's Kubernetes client library, lightkube (async), against a real local cluster, as its users see it.

Every test talks to cluster1 of the module's run through `lightkube.AsyncClient` configured from the run's
kubeconfig, and works in namespaces of its own. One test restarts cluster1's API server (the realistic way to
make a resourceVersion too old); it starts it again before it ends, also when it fails.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Any, Protocol, TypeVar

import pytest
from lightkube import ALL_NS, ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource
from lightkube.models.apiextensions_v1 import (
    CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion,
    CustomResourceValidation,
    JSONSchemaProps,
)
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import Container, PodSpec, PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ConfigMap, Namespace, Secret
from lightkube.types import OnErrorResult, PatchType, on_error_retry

from tests.e2e.localkit import LocalClusters

T = TypeVar("T")
EVENT_TIMEOUT = 10.0


class HasMetadata(Protocol):
    @property
    def metadata(self) -> ObjectMeta | None: ...


def meta(obj: HasMetadata) -> ObjectMeta:
    assert obj.metadata is not None, "every object the server returns has metadata"
    return obj.metadata


def name_of(obj: HasMetadata) -> str:
    name = meta(obj).name
    assert name is not None
    return name


def rv_of(obj: HasMetadata) -> int:
    rv = meta(obj).resourceVersion
    assert rv is not None and rv.isdigit(), f"resourceVersion {rv!r}"
    return int(rv)


def config_map(name: str, namespace: str, data: dict[str, str], **labels: str) -> ConfigMap:
    return ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace, labels=labels or None), data=data)


@pytest.fixture
async def client(clusters: LocalClusters) -> AsyncIterator[AsyncClient]:
    """lightkube's async client for cluster1, configured from the run's kubeconfig as a user would."""
    config = KubeConfig.from_file(clusters.kubeconfig).get(context_name="cluster1")
    async with AsyncClient(config=config) as c:
        yield c


async def create_namespaces(client: AsyncClient, *names: str) -> None:
    for name in names:
        await client.create(Namespace(metadata=ObjectMeta(name=name)))


async def next_event(events: AsyncIterator[tuple[str, T]]) -> tuple[str, T]:
    """The next event of a lightkube watch, or a failure (TimeoutError) if none comes in time."""
    return await asyncio.wait_for(anext(events), EVENT_TIMEOUT)


async def close(events: AsyncIterator[Any]) -> None:
    if isinstance(events, AsyncGenerator):
        await events.aclose()


def watching(stream: AsyncIterable[tuple[str, T]]) -> AsyncIterator[tuple[str, T]]:
    return aiter(stream)


# -- CRUD ---------------------------------------------------------------------------------------------------


async def test_configmap_crud(client: AsyncClient) -> None:
    """Create, get, replace and delete of a ConfigMap; the server fills in system metadata and versions."""
    await create_namespaces(client, "py-crud")
    created = await client.create(config_map("settings", "py-crud", {"mode": "a"}, app="demo"))
    # create returns the stored object: a uid, a creation time and a resourceVersion the server assigned.
    assert meta(created).uid and meta(created).creationTimestamp is not None
    assert created.data == {"mode": "a"} and meta(created).labels == {"app": "demo"}

    got = await client.get(ConfigMap, "settings", namespace="py-crud")
    # get returns exactly what create stored (same uid and version).
    assert meta(got).uid == meta(created).uid and rv_of(got) == rv_of(created)

    got.data = {"mode": "b", "extra": "1"}
    replaced = await client.replace(got)
    # replace (PUT with the version just read) succeeds and moves the resourceVersion forward.
    assert replaced.data == {"mode": "b", "extra": "1"} and rv_of(replaced) > rv_of(created)
    assert meta(replaced).uid == meta(created).uid

    await client.delete(ConfigMap, "settings", namespace="py-crud")
    with pytest.raises(ApiError) as gone:
        await client.get(ConfigMap, "settings", namespace="py-crud")
    # after delete, get is a 404 whose Status carries Kubernetes' message and details.
    assert gone.value.status.code == 404 and gone.value.status.reason == "NotFound"
    assert gone.value.status.message == 'configmaps "settings" not found'
    assert gone.value.status.details is not None and gone.value.status.details.name == "settings"


async def test_secret_crud(client: AsyncClient) -> None:
    """Secrets: stringData is write-only and lands base64-encoded in data; duplicates are 409 AlreadyExists."""
    await create_namespaces(client, "py-secret")
    secret = Secret(
        metadata=ObjectMeta(name="creds", namespace="py-secret"),
        type="Opaque",
        data={"user": base64.b64encode(b"admin").decode()},
        stringData={"password": "s3cret"},
    )
    created = await client.create(secret)
    # the server merges stringData into data (base64) and never returns stringData, as Kubernetes does.
    assert created.stringData is None
    assert created.data == {
        "user": base64.b64encode(b"admin").decode(),
        "password": base64.b64encode(b"s3cret").decode(),
    }
    assert created.type == "Opaque"

    with pytest.raises(ApiError) as duplicate:
        await client.create(secret)
    # creating the same name again is refused with Kubernetes' AlreadyExists Status.
    assert duplicate.value.status.code == 409 and duplicate.value.status.reason == "AlreadyExists"
    assert duplicate.value.status.message == 'secrets "creds" already exists'

    await client.delete(Secret, "creds", namespace="py-secret")
    with pytest.raises(ApiError) as gone:
        await client.get(Secret, "creds", namespace="py-secret")
    assert gone.value.status.code == 404


async def test_namespace_crud(client: AsyncClient) -> None:
    """Namespaces are created Active, their deletion goes through Terminating, then they are gone."""
    created = await client.create(Namespace(metadata=ObjectMeta(name="py-ns", labels={"team": "mesh"})))
    assert created.status is not None and created.status.phase == "Active"
    names = [name_of(ns) async for ns in client.list(Namespace, labels={"team": "mesh"})]
    # a label selector on a cluster-scoped list finds exactly the new namespace.
    assert names == ["py-ns"]

    await client.delete(Namespace, "py-ns")
    # deleting a namespace is graceful: it is Terminating (or already gone) right after the call ...
    try:
        terminating = await client.get(Namespace, "py-ns")
        assert terminating.status is not None and terminating.status.phase == "Terminating"
        assert meta(terminating).deletionTimestamp is not None
    except ApiError as exc:
        assert exc.status.code == 404
    # ... and is removed by the namespace controller shortly after.
    deadline = asyncio.get_running_loop().time() + EVENT_TIMEOUT
    while True:
        try:
            await client.get(Namespace, "py-ns")
        except ApiError as exc:
            assert exc.status.code == 404
            break
        assert asyncio.get_running_loop().time() < deadline, "namespace py-ns was never removed"
        await asyncio.sleep(0.2)


# -- list and watch -----------------------------------------------------------------------------------------


async def test_list_across_namespaces(client: AsyncClient) -> None:
    """`list(..., namespace=ALL_NS)` sees every namespace; a namespace, a selector or chunks narrow or page it."""
    await create_namespaces(client, "py-list-a", "py-list-b")
    created = [
        await client.create(config_map("one", "py-list-a", {"k": "1"}, suite="py-list")),
        await client.create(config_map("two", "py-list-b", {"k": "2"}, suite="py-list")),
        await client.create(config_map("three", "py-list-b", {"k": "3"}, suite="py-list")),
        await client.create(config_map("other", "py-list-b", {"k": "4"}, suite="elsewhere")),
    ]

    everywhere = client.list(ConfigMap, namespace=ALL_NS, labels={"suite": "py-list"})
    found = sorted([(meta(cm).namespace or "", name_of(cm)) async for cm in everywhere])
    # one request across all namespaces returns the matching objects of both namespaces, once each, and
    # only those.
    assert found == [("py-list-a", "one"), ("py-list-b", "three"), ("py-list-b", "two")]
    # the list carries the collection's resourceVersion (what a watch resumes from): at least the last write.
    assert int(everywhere.resourceVersion) >= max(rv_of(cm) for cm in created)

    in_b = {name_of(cm) async for cm in client.list(ConfigMap, namespace="py-list-b")}
    in_b.discard("kube-root-ca.crt")  # every namespace gets one soon after it is created, as on any cluster
    # a namespaced list stays in its namespace.
    assert in_b == {"two", "three", "other"}

    paged = client.list(ConfigMap, namespace=ALL_NS, labels={"suite": "py-list"}, chunk_size=1)
    names = [name_of(cm) async for cm in paged]
    # chunked listing (limit + continue tokens, followed by lightkube) returns every item exactly once.
    assert sorted(names) == ["one", "three", "two"]


async def test_watch_resumes_from_list_resource_version(client: AsyncClient) -> None:
    """A watch across namespaces from a list's resourceVersion gets every later event, in order, none before."""
    await create_namespaces(client, "py-watch-a", "py-watch-b")
    await client.create(config_map("before", "py-watch-a", {"v": "0"}, suite="py-watch"))
    listing = client.list(ConfigMap, namespace=ALL_NS, labels={"suite": "py-watch"})
    assert [name_of(cm) async for cm in listing] == ["before"]
    list_rv = listing.resourceVersion

    # Changes made after the list but before the watch starts: the watch must replay them from history.
    await client.create(config_map("after-a", "py-watch-a", {"v": "1"}, suite="py-watch"))
    await client.create(config_map("after-b", "py-watch-b", {"v": "1"}, suite="py-watch"))
    events = watching(
        client.watch(ConfigMap, namespace=ALL_NS, labels={"suite": "py-watch"}, resource_version=list_rv)
    )
    try:
        seen = [await next_event(events), await next_event(events)]
        # A change made while the watch is open arrives live.
        await client.patch(
            ConfigMap, "before", {"data": {"v": "2"}}, namespace="py-watch-a", patch_type=PatchType.MERGE
        )
        seen.append(await next_event(events))
    finally:
        await close(events)
    summary = [(kind, meta(cm).namespace, name_of(cm)) for kind, cm in seen]
    # exactly the three changes after the list, in order, across both namespaces; "before" is not replayed
    # as ADDED (it existed at the list's version), only its later modification.
    assert summary == [
        ("ADDED", "py-watch-a", "after-a"),
        ("ADDED", "py-watch-b", "after-b"),
        ("MODIFIED", "py-watch-a", "before"),
    ]
    assert all(rv_of(cm) > int(list_rv) for _, cm in seen)
    assert seen[2][1].data == {"v": "2"}


async def test_watch_after_restart_410_then_lightkube_relists(
    client: AsyncClient, clusters: LocalClusters
) -> None:
    """After an API server restart an old resourceVersion is too old: 410, and lightkube's watch relists."""
    suite: dict[str, Any] = {"suite": "py-relist"}
    await create_namespaces(client, "py-relist")
    # (labelled: the namespace also gets its kube-root-ca.crt, in its own time)
    await client.create(config_map("r1", "py-relist", {"n": "1"}, suite="py-relist"))
    listing = client.list(ConfigMap, namespace="py-relist", labels=suite)
    assert [name_of(cm) async for cm in listing] == ["r1"]
    old_rv = listing.resourceVersion
    # history moves past old_rv
    await client.create(config_map("r2", "py-relist", {"n": "2"}, suite="py-relist"))

    # Restart cluster1's API server: its watch history starts fresh from the stored state.
    try:
        await asyncio.to_thread(clusters.cli, "stop", "cluster1")
    finally:
        await asyncio.to_thread(clusters.cli, "start", "cluster1")

    listed = {name_of(cm) async for cm in client.list(ConfigMap, namespace="py-relist", labels=suite)}
    # objects survive the restart (they are persisted), and the same client keeps working.
    assert listed == {"r1", "r2"}

    with pytest.raises(ApiError) as expired:
        async with asyncio.timeout(EVENT_TIMEOUT):
            async for _ in client.watch(
                ConfigMap, namespace="py-relist", labels=suite, resource_version=old_rv
            ):
                pass
    # a watch from the pre-restart version ends with Kubernetes' 410 Expired, which lightkube raises.
    assert expired.value.status.code == 410 and expired.value.status.reason == "Expired"
    assert (expired.value.status.message or "").startswith("too old resource version: ")

    errors: list[Exception] = []

    def record_then_retry(error: Exception, count: int) -> OnErrorResult:
        errors.append(error)
        return on_error_retry(error, count)

    events = watching(
        client.watch(
            ConfigMap,
            namespace="py-relist",
            labels=suite,
            resource_version=old_rv,
            on_error=record_then_retry,
        )
    )
    try:
        relisted = [await next_event(events), await next_event(events)]
        await client.create(config_map("r3", "py-relist", {"n": "3"}, suite="py-relist"))
        live = await next_event(events)
    finally:
        await close(events)
    # lightkube met the 410 once, dropped the version and re-watched from scratch: the server sent the
    # current state as ADDED events (the relist) ...
    assert len(errors) == 1 and isinstance(errors[0], ApiError) and errors[0].status.code == 410
    assert sorted((kind, name_of(cm)) for kind, cm in relisted) == [("ADDED", "r1"), ("ADDED", "r2")]
    # ... and then kept delivering live changes.
    assert (live[0], name_of(live[1])) == ("ADDED", "r3")


# -- patches and server-side apply --------------------------------------------------------------------------


async def test_merge_and_json_patches(client: AsyncClient) -> None:
    """Merge patch (null deletes a key) and JSON patch (atomic, `test` guards) on a ConfigMap."""
    await create_namespaces(client, "py-patch")
    await client.create(config_map("cfg", "py-patch", {"a": "1", "b": "2"}))

    merged = await client.patch(
        ConfigMap,
        "cfg",
        {"data": {"a": None, "c": "3"}, "metadata": {"labels": {"patched": "merge"}}},
        namespace="py-patch",
        patch_type=PatchType.MERGE,
    )
    # RFC 7386: keys merge, null removes "a".
    assert merged.data == {"b": "2", "c": "3"} and meta(merged).labels == {"patched": "merge"}

    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/data/c", "value": "3"},
        {"op": "replace", "path": "/data/c", "value": "4"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/labels/json", "value": "yes"},
    ]
    patched = await client.patch(ConfigMap, "cfg", ops, namespace="py-patch", patch_type=PatchType.JSON)
    # RFC 6902: every operation applied in order.
    assert patched.data == {"c": "4"} and meta(patched).labels == {"patched": "merge", "json": "yes"}

    failing: list[dict[str, Any]] = [
        {"op": "replace", "path": "/data/c", "value": "5"},
        {"op": "test", "path": "/data/c", "value": "4"},  # fails: c is 5 by now
    ]
    with pytest.raises(ApiError) as refused:
        await client.patch(ConfigMap, "cfg", failing, namespace="py-patch", patch_type=PatchType.JSON)
    # a failed `test` makes the whole patch fail (422, Kubernetes' generic message) and changes nothing.
    assert refused.value.status.code == 422 and refused.value.status.reason == "Invalid"
    assert refused.value.status.message == "the server rejected our request due to an error in our request"
    after = await client.get(ConfigMap, "cfg", namespace="py-patch")
    assert after.data == {"c": "4"} and rv_of(after) == rv_of(patched)


def deployment(name: str, namespace: str, containers: list[Container]) -> Deployment:
    labels = {"app": name}
    return Deployment(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=DeploymentSpec(
            replicas=1,
            selector=LabelSelector(matchLabels=labels),
            template=PodTemplateSpec(metadata=ObjectMeta(labels=labels), spec=PodSpec(containers=containers)),
        ),
    )


def containers_of(d: Deployment) -> list[tuple[str, str | None]]:
    assert d.spec is not None and d.spec.template.spec is not None
    return [(c.name, c.image) for c in d.spec.template.spec.containers]


async def test_strategic_merge_patch_merges_lists_by_key(client: AsyncClient) -> None:
    """Strategic merge patch merges `containers` by name; a merge patch of the same list replaces it."""
    await create_namespaces(client, "py-smp")
    created = await client.create(
        deployment(
            "web",
            "py-smp",
            [Container(name="app", image="app:v1"), Container(name="proxy", image="proxy:v1")],
        )
    )
    assert meta(created).generation == 1

    containers_patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}}
    smp = await client.patch(
        Deployment, "web", containers_patch, namespace="py-smp", patch_type=PatchType.STRATEGIC
    )
    # the patch's one container merged into the list by its name: app updated, proxy kept.
    assert containers_of(smp) == [("app", "app:v2"), ("proxy", "proxy:v1")]
    assert meta(smp).generation == 2  # a spec change bumps generation

    mp = await client.patch(
        Deployment, "web", containers_patch, namespace="py-smp", patch_type=PatchType.MERGE
    )
    # a JSON merge patch has no list semantics: the list is replaced, proxy is gone.
    assert containers_of(mp) == [("app", "app:v2")]
    assert meta(mp).generation == 3


async def test_server_side_apply_conflict_and_force(client: AsyncClient) -> None:
    """Two field managers applying the same field: 409 with Kubernetes' conflict Status; force takes it over."""
    await create_namespaces(client, "py-ssa")
    first = await client.apply(config_map("shared", "py-ssa", {"a": "1", "b": "1"}), field_manager="alice")
    # apply creates the object and records alice as an Apply manager of what she sent.
    assert first.data == {"a": "1", "b": "1"}
    managers = {(m.manager, m.operation) for m in meta(first).managedFields or []}
    assert managers == {("alice", "Apply")}

    again = await client.apply(config_map("shared", "py-ssa", {"a": "1", "b": "1"}), field_manager="alice")
    # re-applying the same intent changes nothing (same resourceVersion).
    assert rv_of(again) == rv_of(first)

    with pytest.raises(ApiError) as conflict:
        await client.apply(config_map("shared", "py-ssa", {"a": "2"}), field_manager="bob")
    status = conflict.value.status
    # bob changing alice's field without force is a 409 Conflict naming the manager and the field.
    assert status.code == 409 and status.reason == "Conflict"
    assert status.message == 'Apply failed with 1 conflict: conflict with "alice": .data.a'
    assert status.details is not None and status.details.causes is not None
    assert [(c.reason, c.message, c.field) for c in status.details.causes] == [
        ("FieldManagerConflict", 'conflict with "alice"', ".data.a")
    ]
    unchanged = await client.get(ConfigMap, "shared", namespace="py-ssa")
    assert unchanged.data == {"a": "1", "b": "1"}

    forced = await client.apply(config_map("shared", "py-ssa", {"a": "2"}), field_manager="bob", force=True)
    # force=True takes the field over: bob's value wins, alice keeps only what bob did not take.
    assert forced.data == {"a": "2", "b": "1"}
    owned = {m.manager: m.fieldsV1 for m in meta(forced).managedFields or []}
    assert owned["bob"] == {"f:data": {"f:a": {}}}
    assert owned["alice"] == {"f:data": {"f:b": {}}}

    # alice, re-applying without the field she lost, keeps her other field and leaves bob's alone.
    final = await client.apply(config_map("shared", "py-ssa", {"b": "1"}), field_manager="alice")
    assert final.data == {"a": "2", "b": "1"}


# -- custom resources ---------------------------------------------------------------------------------------

GROUP = "pyclient.isthmus.dev"


def crd(kind: str, plural: str) -> CustomResourceDefinition:
    spec_schema = JSONSchemaProps(
        type="object",
        properties={
            "size": JSONSchemaProps(type="integer"),
            "color": JSONSchemaProps(type="string", enum=["red", "blue"]),
        },
    )
    return CustomResourceDefinition(
        metadata=ObjectMeta(name=f"{plural}.{GROUP}"),
        spec=CustomResourceDefinitionSpec(
            group=GROUP,
            scope="Namespaced",
            names=CustomResourceDefinitionNames(kind=kind, plural=plural, singular=kind.lower()),
            versions=[
                CustomResourceDefinitionVersion(
                    name="v1",
                    served=True,
                    storage=True,
                    schema=CustomResourceValidation(
                        openAPIV3Schema=JSONSchemaProps(type="object", properties={"spec": spec_schema})
                    ),
                )
            ],
        ),
    )


def spec_of(obj: GenericNamespacedResource) -> Any:
    return obj["spec"]


async def test_crd_and_custom_objects(client: AsyncClient) -> None:
    """A CRD created through lightkube is served; its objects are created, listed, patched and applied."""
    created_crd = await client.create(crd("Gadget", "gadgets"))
    assert name_of(created_crd) == f"gadgets.{GROUP}"
    established = await asyncio.wait_for(
        client.wait(CustomResourceDefinition, f"gadgets.{GROUP}", for_conditions=["Established"]),
        EVENT_TIMEOUT,
    )
    # the server reports the CRD Established (what clients wait for before using it).
    assert established.status is not None and established.status.acceptedNames is not None
    assert established.status.acceptedNames.kind == "Gadget"

    gadget = create_namespaced_resource(GROUP, "v1", "Gadget", "gadgets")
    await create_namespaces(client, "py-crd-a", "py-crd-b")
    await client.create(
        gadget(metadata=ObjectMeta(name="g1", namespace="py-crd-a"), spec={"size": 1, "color": "red"})
    )
    await client.create(
        gadget(metadata=ObjectMeta(name="g2", namespace="py-crd-b"), spec={"size": 2, "color": "blue"})
    )

    found = {
        (meta(g).namespace, name_of(g), spec_of(g)["size"])
        async for g in client.list(gadget, namespace=ALL_NS)
    }
    # custom objects are listed across namespaces like built-in ones.
    assert found == {("py-crd-a", "g1", 1), ("py-crd-b", "g2", 2)}

    merged = await client.patch(
        gadget, "g1", {"spec": {"size": 5}}, namespace="py-crd-a", patch_type=PatchType.MERGE
    )
    # a merge patch changes one field of the custom object and keeps the rest; generation follows spec.
    assert spec_of(merged) == {"size": 5, "color": "red"}
    assert meta(merged).generation == 2

    jsoned = await client.patch(
        gadget,
        "g1",
        [{"op": "replace", "path": "/spec/color", "value": "blue"}],
        namespace="py-crd-a",
        patch_type=PatchType.JSON,
    )
    assert spec_of(jsoned) == {"size": 5, "color": "blue"}

    applied = await client.apply(
        gadget(metadata=ObjectMeta(name="g3", namespace="py-crd-a"), spec={"size": 3}),
        field_manager="py-operator",
    )
    # server-side apply creates custom objects too, with its manager recorded.
    assert spec_of(applied) == {"size": 3}
    assert [m.manager for m in meta(applied).managedFields or []] == ["py-operator"]

    with pytest.raises(ApiError) as invalid:
        await client.patch(
            gadget, "g1", {"spec": {"color": "green"}}, namespace="py-crd-a", patch_type=PatchType.MERGE
        )
    # the CRD's schema is enforced on patches: 422 with Kubernetes' enum message.
    assert invalid.value.status.code == 422
    assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' in (
        invalid.value.status.message or ""
    )

    await client.delete(CustomResourceDefinition, f"gadgets.{GROUP}")


async def test_custom_resource_refuses_strategic_merge_patch(client: AsyncClient) -> None:
    """lightkube's default patch type (strategic merge) on a custom object: 415 naming the accepted types."""
    await client.create(crd("Sprocket", "sprockets"))
    await asyncio.wait_for(
        client.wait(CustomResourceDefinition, f"sprockets.{GROUP}", for_conditions=["Established"]),
        EVENT_TIMEOUT,
    )
    sprocket = create_namespaced_resource(GROUP, "v1", "Sprocket", "sprockets")
    await create_namespaces(client, "py-crd-smp")
    await client.create(sprocket(metadata=ObjectMeta(name="s1", namespace="py-crd-smp"), spec={"size": 1}))

    with pytest.raises(ApiError) as smp:
        # lightkube's default patch type is strategic merge, which custom resources do not support.
        await client.patch(sprocket, "s1", {"spec": {"size": 6}}, namespace="py-crd-smp")
    # Kubernetes answers 415 listing the patch types a custom resource accepts.
    assert smp.value.status.code == 415 and smp.value.status.reason == "UnsupportedMediaType"
    assert smp.value.status.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )

    unchanged = await client.get(sprocket, "s1", namespace="py-crd-smp")
    # nothing was changed by the refused patch.
    assert spec_of(unchanged) == {"size": 1}


async def test_watch_from_empty_list_sees_first_object(client: AsyncClient) -> None:
    """The informer pattern on a type with no objects yet (as for a new CRD): list (empty), an object is
    created, then a watch from the list's resourceVersion must deliver it (Kubernetes keeps every event
    after that version), not 410."""
    await client.create(crd("Doohickey", "doohickeys"))
    await asyncio.wait_for(
        client.wait(CustomResourceDefinition, f"doohickeys.{GROUP}", for_conditions=["Established"]),
        EVENT_TIMEOUT,
    )
    doohickey = create_namespaced_resource(GROUP, "v1", "Doohickey", "doohickeys")
    await create_namespaces(client, "py-empty")
    listing = client.list(doohickey, namespace=ALL_NS)
    assert [name_of(d) async for d in listing] == []
    list_rv = listing.resourceVersion

    await client.create(doohickey(metadata=ObjectMeta(name="first", namespace="py-empty"), spec={"size": 1}))
    events = watching(client.watch(doohickey, namespace=ALL_NS, resource_version=list_rv))
    try:
        kind, obj = await next_event(events)
    finally:
        await close(events)
    # the first object of the type, created after the list, arrives as ADDED.
    assert (kind, meta(obj).namespace, name_of(obj)) == ("ADDED", "py-empty", "first")
