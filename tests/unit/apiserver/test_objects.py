"""The object lifecycle with Kubernetes' semantics, driven through `Objects` as the HTTP handlers drive it:
create (generateName, system metadata, AlreadyExists, namespaces that must exist and not be terminating),
get and list (order, limit and continue, selectors), update and patch (optimistic concurrency, no-op writes,
status subresource, generation), server-side apply, delete (finalizers, preconditions, propagation, garbage-
collection indexes) and dry run."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import orjson
import pytest

from isthmus.local.apiserver.admission import AdmissionChain
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import (
    FOREGROUND_FINALIZER,
    PATCH_APPLY_YAML,
    PATCH_JSON,
    PATCH_MERGE,
    PATCH_STRATEGIC,
    Objects,
    Target,
    WriteOptions,
    WriteResult,
)
from isthmus.local.apiserver.resources import ResourceRegistry, crd_resource_type
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.store import ADDED, DELETED, MODIFIED, Store, Watcher, WatchEvent, copy_object
from isthmus.local.apiserver.strategies import Strategies

JsonObject = dict[str, Any]

CATALOG = SchemaCatalog.load()
ADMIN = UserInfo("admin", groups=("system:masters",))
STALE = "the object has been modified; please apply your changes to the latest version and try again"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def new_objects() -> Objects:
    store = Store(None)
    return Objects(store, ResourceRegistry(), CATALOG, Strategies(store, "10.96.0.0/24"), AdmissionChain())


def opts(**kw: Any) -> WriteOptions:
    kw.setdefault("field_manager", "test")
    return WriteOptions(user=ADMIN, **kw)


def target(
    objects: Objects, group: str, plural: str, namespace: str = "", name: str = "", subresource: str = ""
) -> Target:
    rt = objects.registry.get(group, plural)
    assert rt is not None
    return Target(rt, rt.storage_version, namespace, name, subresource)


def configmaps(objects: Objects, namespace: str = "default", name: str = "") -> Target:
    return target(objects, "", "configmaps", namespace, name)


def deployments(
    objects: Objects, namespace: str = "default", name: str = "", subresource: str = ""
) -> Target:
    return target(objects, "apps", "deployments", namespace, name, subresource)


def namespaces(objects: Objects, name: str = "") -> Target:
    return target(objects, "", "namespaces", "", name)


def configmap(name: str = "cm", data: dict[str, str] | None = None, **meta: Any) -> JsonObject:
    body: JsonObject = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}}
    if data is not None:
        body["data"] = data
    return body


def deployment(name: str = "web", replicas: int = 1, image: str = "nginx:1.27", **meta: Any) -> JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, **meta},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }


async def make_namespace(objects: Objects, name: str) -> None:
    await objects.create(namespaces(objects), {"metadata": {"name": name}}, opts())


@pytest.fixture
async def objects() -> Objects:
    objects = new_objects()
    await make_namespace(objects, "default")
    return objects


async def create_cm(objects: Objects, name: str = "cm", namespace: str = "default", **kw: Any) -> JsonObject:
    result = await objects.create(configmaps(objects, namespace), configmap(name, **kw), opts())
    return result.obj


def current(objects: Objects, t: Target) -> JsonObject:
    return copy_object(objects.get(t).obj)


def drain(watcher: Watcher) -> list[WatchEvent | None]:
    events: list[WatchEvent | None] = []
    while not watcher.queue.empty():
        events.append(watcher.queue.get_nowait())
    return events


def kinds(events: list[WatchEvent | None]) -> list[tuple[str, str] | None]:
    return [None if e is None else (e.type, e.obj["metadata"]["name"]) for e in events]


# -- create --------------------------------------------------------------------------------------------------


async def test_create_sets_the_system_metadata(objects: Objects) -> None:
    """uid, creationTimestamp and resourceVersion are the server's; what a client sends for them is ignored."""
    body = configmap(
        "cm",
        {"k": "v"},
        uid="client-uid",
        creationTimestamp="2000-01-01T00:00:00Z",
        deletionTimestamp="2000-01-01T00:00:00Z",
    )

    result = await objects.create(configmaps(objects), body, opts())

    meta = result.obj["metadata"]
    assert result.code == 201
    assert meta["uid"] != "client-uid" and uuid.UUID(meta["uid"])
    assert TIMESTAMP.match(meta["creationTimestamp"]) and meta["creationTimestamp"] != "2000-01-01T00:00:00Z"
    assert "deletionTimestamp" not in meta
    assert meta["resourceVersion"] == str(objects.store.rv)
    assert meta["namespace"] == "default"
    assert result.obj["apiVersion"] == "v1" and result.obj["kind"] == "ConfigMap"
    assert objects.get(configmaps(objects, name="cm")).obj == result.obj


async def test_create_takes_the_namespace_of_the_request(objects: Objects) -> None:
    await make_namespace(objects, "team")
    created = await objects.create(configmaps(objects, "team"), configmap("cm"), opts())
    assert created.obj["metadata"]["namespace"] == "team"


async def test_a_namespace_in_the_body_must_match_the_request(objects: Objects) -> None:
    """kube-apiserver: 400 `the namespace of the provided object does not match the namespace sent on the
    request`."""
    await make_namespace(objects, "team")
    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects, "team"), configmap("cm", namespace="default"), opts())
    assert excinfo.value.code == 400
    assert excinfo.value.message == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )


async def test_generate_name_appends_five_random_characters(objects: Objects) -> None:
    """names.SimpleNameGenerator: generateName + 5 characters of `bcdfghjklmnpqrstvwxz2456789`."""
    names = set()
    for _ in range(3):
        result = await objects.create(
            configmaps(objects), {"metadata": {"generateName": "job-"}, "data": {}}, opts()
        )
        name = result.obj["metadata"]["name"]
        assert re.fullmatch(r"job-[bcdfghjklmnpqrstvwxz2456789]{5}", name)
        assert result.obj["metadata"]["generateName"] == "job-"
        names.add(name)
    assert len(names) == 3


async def test_generate_name_is_truncated_so_the_name_fits_63_characters(objects: Objects) -> None:
    """names.SimpleNameGenerator truncates a base longer than 58 characters (maxGeneratedNameLength =
    63 - 5), so a generated name is never longer than 63 characters, whatever the kind."""
    base = "a" * 60 + "-"

    result = await objects.create(configmaps(objects), {"metadata": {"generateName": base}}, opts())

    name = result.obj["metadata"]["name"]
    assert len(name) == 63
    assert name.startswith("a" * 58)


async def test_a_name_or_generate_name_is_required(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects), {"metadata": {}}, opts())
    error = excinfo.value
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required'
    )


async def test_creating_an_existing_object_is_409_already_exists(objects: Objects) -> None:
    await create_cm(objects)
    rv = objects.store.rv

    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects), configmap("cm", {"other": "x"}), opts())

    status = excinfo.value.to_status()
    assert (status["code"], status["reason"]) == (409, "AlreadyExists")
    assert status["message"] == 'configmaps "cm" already exists'
    assert status["details"] == {"name": "cm", "kind": "configmaps"}
    assert objects.store.rv == rv


async def test_already_exists_names_the_group(objects: Objects) -> None:
    await objects.create(deployments(objects), deployment(), opts())
    with pytest.raises(StatusError) as excinfo:
        await objects.create(deployments(objects), deployment(), opts())
    assert excinfo.value.message == 'deployments.apps "web" already exists'
    assert excinfo.value.to_status()["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


async def test_an_invalid_name_is_422_with_kubernetes_message(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        await objects.create(namespaces(objects), {"metadata": {"name": "Team.A"}}, opts())
    error = excinfo.value
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        'Namespace "Team.A" is invalid: metadata.name: Invalid value: "Team.A": a lowercase RFC 1123 label '
        "must consist of lower case alphanumeric characters or '-', and must start and end with an "
        "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )
    assert [c.to_json() for c in error.causes] == [
        {
            "reason": "FieldValueInvalid",
            "message": error.message.split("metadata.name: ")[1],
            "field": "metadata.name",
        }
    ]


async def test_invalid_labels_are_422(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects), configmap("cm", labels={"app": "a b"}), opts())
    assert excinfo.value.code == 422
    assert [c.field for c in excinfo.value.causes] == ["metadata.labels"]
    assert excinfo.value.message.startswith(
        'ConfigMap "cm" is invalid: metadata.labels: Invalid value: "a b": '
    )


async def test_create_in_a_missing_namespace_is_404(objects: Objects) -> None:
    """kube-apiserver's NamespaceLifecycle admission: `namespaces "nope" not found`."""
    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects, "nope"), configmap("cm"), opts())
    status = excinfo.value.to_status()
    assert (status["code"], status["reason"]) == (404, "NotFound")
    assert status["message"] == 'namespaces "nope" not found'
    assert status["details"] == {"name": "nope", "kind": "namespaces"}


async def test_create_in_a_terminating_namespace_is_403(objects: Objects) -> None:
    """NamespaceLifecycle: `configmaps "cm" is forbidden: unable to create new content in namespace doomed
    because it is being terminated`."""
    await make_namespace(objects, "doomed")
    await objects.delete(namespaces(objects, "doomed"), {}, opts())

    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects, "doomed"), configmap("cm"), opts())

    error = excinfo.value
    assert (error.code, error.reason) == (403, "Forbidden")
    assert error.message == (
        'configmaps "cm" is forbidden: unable to create new content in namespace doomed because it is being '
        "terminated"
    )


async def test_the_terminating_namespace_message_names_the_group(objects: Objects) -> None:
    """errors.NewForbidden uses the qualified resource: `deployments.apps "web" is forbidden: ...`, with the
    group in the Status details, as for every other error about a resource of a named group."""
    await make_namespace(objects, "doomed")
    await objects.delete(namespaces(objects, "doomed"), {}, opts())

    with pytest.raises(StatusError) as excinfo:
        await objects.create(deployments(objects, "doomed"), deployment(), opts())

    status = excinfo.value.to_status()
    assert status["code"] == 403
    assert status["message"] == (
        'deployments.apps "web" is forbidden: unable to create new content in namespace doomed because it is '
        "being terminated"
    )
    assert status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


async def test_objects_in_a_terminating_namespace_can_still_be_updated_and_deleted(objects: Objects) -> None:
    """Only creation is refused; controllers must still be able to remove finalizers and delete."""
    await make_namespace(objects, "doomed")
    await create_cm(objects, "cm", "doomed", finalizers=["example.com/hold"])
    await objects.delete(namespaces(objects, "doomed"), {}, opts())

    t = configmaps(objects, "doomed", "cm")
    body = current(objects, t)
    body["data"] = {"k": "v"}
    await objects.update(t, body, opts())
    await objects.delete(t, {}, opts())
    body = current(objects, t)
    body["metadata"]["finalizers"] = []
    await objects.update(t, body, opts())

    assert objects.store.get(("", "configmaps"), "doomed", "cm") is None


async def test_a_cluster_scoped_object_sent_with_a_namespace_has_it_cleared(objects: Objects) -> None:
    """rest.EnsureObjectNamespaceMatchesRequestNamespace: for a cluster-scoped resource the request namespace
    is "" and a namespace in the body is cleared ("cluster-scoped, clear namespace"), not refused; so manifests
    (Helm charts) that set `metadata.namespace` on ClusterRoles and Namespaces apply cleanly."""
    t = target(objects, "rbac.authorization.k8s.io", "clusterroles")
    body = {"metadata": {"name": "reader", "namespace": "default"}, "rules": []}

    result = await objects.create(t, body, opts())

    assert result.code == 201
    assert "namespace" not in result.obj["metadata"]
    stored = objects.store.get(("rbac.authorization.k8s.io", "clusterroles"), "", "reader")
    assert stored is not None and "namespace" not in stored.obj["metadata"]


async def test_cluster_scoped_objects_are_stored_without_namespace(objects: Objects) -> None:
    t = target(objects, "rbac.authorization.k8s.io", "clusterroles")
    result = await objects.create(t, {"metadata": {"name": "reader"}, "rules": []}, opts())
    assert "namespace" not in result.obj["metadata"]
    assert objects.store.get(("rbac.authorization.k8s.io", "clusterroles"), "", "reader") is not None


async def test_type_meta_must_match_the_resource(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects), {**configmap("cm"), "kind": "Secret"}, opts())
    assert excinfo.value.code == 400
    assert (
        excinfo.value.message == "the kind in the data (Secret) does not match the expected kind (ConfigMap)"
    )
    with pytest.raises(StatusError) as excinfo:
        await objects.create(deployments(objects), {**deployment(), "apiVersion": "apps/v1beta1"}, opts())
    assert excinfo.value.code == 400
    assert excinfo.value.message == (
        "the API version in the data (apps/v1beta1) does not match the expected API version (apps/v1)"
    )


# -- field validation ----------------------------------------------------------------------------------------


def with_typo(body: JsonObject) -> JsonObject:
    body["spec"]["template"]["spec"]["containers"][0]["imagee"] = "nginx"
    return body


async def test_strict_field_validation_refuses_unknown_fields(objects: Objects) -> None:
    """fieldValidation=Strict (kubectl's default): 400 `.. strict decoding error: unknown field "..."`."""
    with pytest.raises(StatusError) as excinfo:
        await objects.create(deployments(objects), with_typo(deployment()), opts(field_validation="Strict"))
    assert excinfo.value.code == 400
    assert excinfo.value.message == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagee"'
    )
    assert objects.store.get(("apps", "deployments"), "default", "web") is None


async def test_warn_field_validation_warns_and_drops_unknown_fields(objects: Objects) -> None:
    result = await objects.create(
        deployments(objects), with_typo(deployment()), opts(field_validation="Warn")
    )
    assert result.warnings == ['unknown field "spec.template.spec.containers[0].imagee"']
    assert "imagee" not in result.obj["spec"]["template"]["spec"]["containers"][0]


async def test_ignore_field_validation_drops_unknown_fields_silently(objects: Objects) -> None:
    result = await objects.create(
        deployments(objects), with_typo(deployment()), opts(field_validation="Ignore")
    )
    assert result.warnings == []
    assert "imagee" not in result.obj["spec"]["template"]["spec"]["containers"][0]


async def test_required_fields_of_the_schema_are_422(objects: Objects) -> None:
    body = deployment()
    del body["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(StatusError) as excinfo:
        await objects.create(deployments(objects), body, opts())
    assert excinfo.value.code == 422
    assert excinfo.value.message == (
        'Deployment.apps "web" is invalid: spec.template.spec.containers[0].name: Required value'
    )


# -- get and list --------------------------------------------------------------------------------------------


async def test_get_of_a_missing_object_is_404(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        objects.get(configmaps(objects, name="nope"))
    assert (excinfo.value.code, excinfo.value.message) == (404, 'configmaps "nope" not found')
    with pytest.raises(StatusError) as excinfo:
        objects.get(deployments(objects, name="nope"))
    assert excinfo.value.message == 'deployments.apps "nope" not found'


async def populate(objects: Objects, keys: list[tuple[str, str]]) -> None:
    for namespace in sorted({ns for ns, _ in keys} - {"default"}):
        await make_namespace(objects, namespace)
    for namespace, name in keys:
        await create_cm(objects, name, namespace)


def names(items: list[Any]) -> list[tuple[str, str]]:
    return [(s.obj["metadata"]["namespace"], s.obj["metadata"]["name"]) for s in items]


async def test_list_is_ordered_by_namespace_then_name(objects: Objects) -> None:
    await populate(objects, [("team", "b"), ("default", "z"), ("team", "a"), ("default", "m")])

    everywhere = objects.list_objects(configmaps(objects, ""))
    in_team = objects.list_objects(configmaps(objects, "team"))

    assert names(everywhere.items) == [("default", "m"), ("default", "z"), ("team", "a"), ("team", "b")]
    assert names(in_team.items) == [("team", "a"), ("team", "b")]
    assert everywhere.resource_version == objects.store.rv
    assert everywhere.continue_token == ""


async def test_list_order_across_namespaces_is_etcd_key_order(objects: Objects) -> None:
    """kube-apiserver lists in etcd key order, `/registry/configmaps/<namespace>/<name>` compared bytewise:
    namespace `a-b` sorts before `a` (`-` is 0x2d, `/` is 0x2f), so `kubectl get -A` shows a-b's objects
    first; continue tokens are keys in that order too."""
    await populate(objects, [("a", "x"), ("a-b", "y")])

    listed = objects.list_objects(configmaps(objects, ""))

    assert names(listed.items) == [("a-b", "y"), ("a", "x")]


async def test_list_in_pages_with_limit_and_continue(objects: Objects) -> None:
    """limit/continue: each page has at most `limit` items, a continue token while more remain, none on the
    last page, and the list resourceVersion of the first page throughout."""
    await populate(objects, [("default", n) for n in "abcde"])
    t = configmaps(objects)

    first = objects.list_objects(t, limit=2)
    second = objects.list_objects(t, limit=2, continue_token=first.continue_token)
    third = objects.list_objects(t, limit=2, continue_token=second.continue_token)

    assert [n for _, n in names(first.items)] == ["a", "b"]
    assert [n for _, n in names(second.items)] == ["c", "d"]
    assert [n for _, n in names(third.items)] == ["e"]
    assert first.continue_token and second.continue_token and third.continue_token == ""
    assert first.resource_version == second.resource_version == third.resource_version


async def test_a_page_that_ends_the_list_has_no_continue_token(objects: Objects) -> None:
    await populate(objects, [("default", n) for n in "ab"])
    page = objects.list_objects(configmaps(objects), limit=2)
    assert [n for _, n in names(page.items)] == ["a", "b"]
    assert page.continue_token == ""


async def test_pages_are_a_consistent_snapshot(objects: Objects) -> None:
    """Kubernetes API concepts, "Retrieving large results sets in chunks": the list's resourceVersion stays
    the same across pages, "indicating the server is showing you a consistent snapshot" - objects created,
    updated or deleted after the first page "would not be shown unless you make a separate list request
    without the continue token"."""
    await populate(objects, [("default", n) for n in "ace"])
    t = configmaps(objects)
    first = objects.list_objects(t, limit=1)

    await create_cm(objects, "b")  # created after the first page
    await create_cm(objects, "d")
    changed = current(objects, configmaps(objects, name="c"))
    changed["data"] = {"k": "v"}
    await objects.update(configmaps(objects, name="c"), changed, opts())
    rest = objects.list_objects(t, continue_token=first.continue_token)

    assert [n for _, n in names(rest.items)] == ["c", "e"]
    assert "data" not in rest.items[0].obj  # as it was at the first page's resourceVersion


async def test_an_invalid_continue_token_is_400(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        objects.list_objects(configmaps(objects), continue_token="not-a-token")
    assert excinfo.value.code == 400
    assert excinfo.value.message.startswith("continue key is not valid")
    bad = base64.urlsafe_b64encode(orjson.dumps({"x": 1})).decode()
    with pytest.raises(StatusError):
        objects.list_objects(configmaps(objects), continue_token=bad)


async def test_list_with_selectors(objects: Objects) -> None:
    await create_cm(objects, "a", labels={"app": "web"})
    await create_cm(objects, "b", labels={"app": "db"})
    await create_cm(objects, "c")
    t = configmaps(objects)

    assert [n for _, n in names(objects.list_objects(t, label_selector="app=web").items)] == ["a"]
    assert [n for _, n in names(objects.list_objects(t, label_selector="app!=web").items)] == ["b", "c"]
    assert [n for _, n in names(objects.list_objects(t, label_selector="!app").items)] == ["c"]
    assert [n for _, n in names(objects.list_objects(t, field_selector="metadata.name=b").items)] == ["b"]
    page = objects.list_objects(t, label_selector="app", limit=1)
    assert [n for _, n in names(page.items)] == ["a"] and page.continue_token
    with pytest.raises(StatusError) as excinfo:
        objects.list_objects(t, field_selector="data.k=v")
    assert excinfo.value.code == 400


async def test_watch_through_objects_filters_by_namespace_and_selector(objects: Objects) -> None:
    await make_namespace(objects, "team")
    watcher = objects.watch(configmaps(objects, "team"), objects.store.rv, label_selector="app=web")

    await create_cm(objects, "a", "team", labels={"app": "web"})
    await create_cm(objects, "b", "default", labels={"app": "web"})
    await create_cm(objects, "c", "team", labels={"app": "db"})
    await objects.delete(configmaps(objects, "team", "a"), {}, opts())

    assert kinds(drain(watcher)) == [(ADDED, "a"), (DELETED, "a")]


# -- update --------------------------------------------------------------------------------------------------


async def test_update_with_a_stale_resource_version_is_409_conflict(objects: Objects) -> None:
    """Optimistic concurrency: `Operation cannot be fulfilled on configmaps "cm": the object has been
    modified; please apply your changes to the latest version and try again`."""
    await create_cm(objects)
    t = configmaps(objects, name="cm")
    stale = current(objects, t)
    fresh = current(objects, t)
    fresh["data"] = {"k": "1"}
    await objects.update(t, fresh, opts())
    rv = objects.store.rv

    stale["data"] = {"k": "2"}
    with pytest.raises(StatusError) as excinfo:
        await objects.update(t, stale, opts())

    status = excinfo.value.to_status()
    assert (status["code"], status["reason"]) == (409, "Conflict")
    assert status["message"] == f'Operation cannot be fulfilled on configmaps "cm": {STALE}'
    assert status["details"] == {"name": "cm", "kind": "configmaps"}
    assert objects.store.rv == rv
    assert current(objects, t)["data"] == {"k": "1"}


async def test_conflict_message_names_the_group(objects: Objects) -> None:
    await objects.create(deployments(objects), deployment(), opts())
    t = deployments(objects, name="web")
    body = current(objects, t)
    body["metadata"]["resourceVersion"] = "1"
    with pytest.raises(StatusError) as excinfo:
        await objects.update(t, body, opts())
    assert excinfo.value.message == f'Operation cannot be fulfilled on deployments.apps "web": {STALE}'


async def test_update_without_a_resource_version_is_unconditional(objects: Objects) -> None:
    await create_cm(objects)
    t = configmaps(objects, name="cm")

    result = await objects.update(t, configmap("cm", {"k": "v"}), opts())

    assert result.obj["data"] == {"k": "v"}
    assert result.obj["metadata"]["resourceVersion"] == str(objects.store.rv)


async def test_update_bumps_the_resource_version_and_keeps_uid_and_creation_time(objects: Objects) -> None:
    created = await create_cm(objects)
    t = configmaps(objects, name="cm")

    result = await objects.update(t, configmap("cm", {"k": "v"}), opts())

    meta = result.obj["metadata"]
    assert int(meta["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert meta["uid"] == created["metadata"]["uid"]
    assert meta["creationTimestamp"] == created["metadata"]["creationTimestamp"]


async def test_an_update_carrying_another_uid_fails_its_uid_precondition(objects: Objects) -> None:
    """A PUT body's metadata.uid is a precondition (rest.defaultUpdatedObjectInfo.Preconditions): replacing an
    object with a copy of a different (deleted and recreated) one is 409 `Operation cannot be fulfilled on
    configmaps "cm": Precondition failed: UID in precondition: <body's>, UID in object meta: <stored>`, not
    silently applied to the new object."""
    created = await create_cm(objects)
    t = configmaps(objects, name="cm")
    body = current(objects, t)
    other = "0b6d3c35-6a39-4dd5-8c1c-1e4c1c1d1c1d"
    body["metadata"]["uid"] = other
    body["data"] = {"k": "v"}

    with pytest.raises(StatusError) as excinfo:
        await objects.update(t, body, opts())

    assert (excinfo.value.code, excinfo.value.reason) == (409, "Conflict")
    assert excinfo.value.message == (
        f'Operation cannot be fulfilled on configmaps "cm": Precondition failed: UID in precondition: {other}, '
        f"UID in object meta: {created['metadata']['uid']}"
    )
    assert "data" not in current(objects, t)


async def test_a_no_op_update_does_not_write(objects: Objects) -> None:
    """An update that changes nothing is not written: same resourceVersion, no watch event (etcd is not
    touched), as kube-apiserver's GuaranteedUpdate short-circuits identical objects."""
    await create_cm(objects, data={"k": "v"}, labels={"a": "b"})
    t = configmaps(objects, name="cm")
    before = current(objects, t)
    rv = objects.store.rv
    watcher = objects.watch(configmaps(objects), rv)

    result = await objects.update(t, copy_object(before), opts())
    unconditional = copy_object(before)
    del unconditional["metadata"]["resourceVersion"]
    await objects.update(t, unconditional, opts())
    await objects.patch(t, PATCH_MERGE, b'{"data":{"k":"v"}}', opts())

    assert result.obj["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert objects.store.rv == rv
    assert drain(watcher) == []
    assert current(objects, t) == before


async def test_an_update_body_for_another_name_is_400(objects: Objects) -> None:
    await create_cm(objects)
    with pytest.raises(StatusError) as excinfo:
        await objects.update(configmaps(objects, name="cm"), configmap("other"), opts())
    assert excinfo.value.code == 400
    assert excinfo.value.message == "the name of the object (other) does not match the name on the URL (cm)"


async def test_update_of_a_missing_object_is_404(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        await objects.update(configmaps(objects, name="cm"), configmap("cm"), opts())
    assert (excinfo.value.code, excinfo.value.message) == (404, 'configmaps "cm" not found')


# -- generation and status -----------------------------------------------------------------------------------


async def test_generation_counts_spec_changes_only(objects: Objects) -> None:
    """metadata.generation starts at 1 and is bumped by spec changes, not by metadata or status writes."""
    created = await objects.create(deployments(objects), deployment(), opts())
    t = deployments(objects, name="web")
    assert created.obj["metadata"]["generation"] == 1

    body = current(objects, t)
    body["metadata"]["labels"] = {"team": "a"}
    labelled = await objects.update(t, body, opts())
    assert labelled.obj["metadata"]["generation"] == 1

    body = current(objects, t)
    body["spec"]["replicas"] = 3
    scaled = await objects.update(t, body, opts())
    assert scaled.obj["metadata"]["generation"] == 2

    status = current(objects, t)
    status["status"] = {"replicas": 3, "observedGeneration": 2}
    reported = await objects.update(deployments(objects, name="web", subresource="status"), status, opts())
    assert reported.obj["metadata"]["generation"] == 2

    body = current(objects, t)
    body["metadata"]["generation"] = 40  # clients cannot set it
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"
    rolled = await objects.update(t, body, opts())
    assert rolled.obj["metadata"]["generation"] == 3


async def test_kinds_without_generation_do_not_get_one(objects: Objects) -> None:
    created = await create_cm(objects, data={"k": "1"})
    assert "generation" not in created["metadata"]
    updated = await objects.update(configmaps(objects, name="cm"), configmap("cm", {"k": "2"}), opts())
    assert "generation" not in updated.obj["metadata"]


async def test_the_status_subresource_writes_only_status(objects: Objects) -> None:
    """PUT .../status: spec and labels in the body are ignored (deploymentStatusStrategy resets them), the
    status is written and the resourceVersion bumped."""
    await objects.create(deployments(objects), deployment(), opts())
    t = deployments(objects, name="web")
    body = current(objects, t)
    body["spec"]["replicas"] = 9
    body["status"] = {"replicas": 1, "readyReplicas": 1}

    result = await objects.update(deployments(objects, name="web", subresource="status"), body, opts())

    assert result.obj["status"] == {"replicas": 1, "readyReplicas": 1}
    assert result.obj["spec"]["replicas"] == 1
    assert current(objects, t)["spec"]["replicas"] == 1
    assert result.obj["metadata"]["resourceVersion"] == str(objects.store.rv)


async def test_the_main_resource_ignores_status_for_kinds_with_a_status_subresource(objects: Objects) -> None:
    """Create drops status (the strategy's PrepareForCreate resets it); update keeps the stored status."""
    body = deployment()
    body["status"] = {"replicas": 5}
    created = await objects.create(deployments(objects), body, opts())
    assert created.obj["status"] == {}

    t = deployments(objects, name="web")
    await objects.update(
        deployments(objects, name="web", subresource="status"),
        {**current(objects, t), "status": {"replicas": 1}},
        opts(),
    )
    body = current(objects, t)
    body["status"] = {"replicas": 7}
    body["spec"]["replicas"] = 2
    updated = await objects.update(t, body, opts())

    assert updated.obj["status"] == {"replicas": 1}
    assert updated.obj["spec"]["replicas"] == 2


async def test_a_status_update_with_a_stale_resource_version_is_409(objects: Objects) -> None:
    await objects.create(deployments(objects), deployment(), opts())
    t = deployments(objects, name="web")
    stale = current(objects, t)
    body = current(objects, t)
    body["spec"]["replicas"] = 2
    await objects.update(t, body, opts())

    stale["status"] = {"replicas": 1}
    with pytest.raises(StatusError) as excinfo:
        await objects.update(deployments(objects, name="web", subresource="status"), stale, opts())
    assert excinfo.value.code == 409


# -- custom resources ----------------------------------------------------------------------------------------


def widget_crd(status_subresource: bool) -> JsonObject:
    version: JsonObject = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"type": "integer"},
                            "mode": {"type": "string"},
                        },
                    },
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                },
            }
        },
    }
    if status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def widgets(objects: Objects, status_subresource: bool, name: str = "", subresource: str = "") -> Target:
    if objects.registry.get("example.com", "widgets") is None:
        objects.registry.register(crd_resource_type(widget_crd(status_subresource)))
    return target(objects, "example.com", "widgets", "default", name, subresource)


def widget(size: Any = 1, **spec: Any) -> JsonObject:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": size, **spec},
    }


async def test_custom_resources_are_validated_against_their_schema(objects: Objects) -> None:
    t = widgets(objects, status_subresource=True)
    body = widget()
    del body["spec"]["size"]

    with pytest.raises(StatusError) as excinfo:
        await objects.create(t, body, opts())

    error = excinfo.value
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == 'Widget.example.com "w" is invalid: spec.size: Required value'
    assert error.to_status()["details"]["group"] == "example.com"


async def test_custom_resource_generation_ignores_status_with_a_status_subresource(objects: Objects) -> None:
    t = widgets(objects, status_subresource=True)
    body = widget()
    body["status"] = {"phase": "Ready"}
    created = await objects.create(t, body, opts())
    assert created.obj["metadata"]["generation"] == 1
    assert "status" not in created.obj  # dropped: written through /status only

    tw = widgets(objects, True, "w")
    updated = await objects.update(tw, {**current(objects, tw), "status": {"phase": "Ready"}}, opts())
    assert "status" not in updated.obj and updated.obj["metadata"]["generation"] == 1
    status = await objects.update(
        widgets(objects, True, "w", "status"), {**current(objects, tw), "status": {"phase": "Ready"}}, opts()
    )
    assert status.obj["status"] == {"phase": "Ready"} and status.obj["metadata"]["generation"] == 1
    body = current(objects, tw)
    body["spec"]["size"] = 2
    assert (await objects.update(tw, body, opts())).obj["metadata"]["generation"] == 2


async def test_custom_resource_without_status_subresource_counts_status_changes(objects: Objects) -> None:
    """apiextensions-apiserver's customResourceStrategy.PrepareForUpdate: "except for the changes to
    `metadata`, any other changes cause the generation to increment" - without a status subresource, status
    is part of the object like spec, so a status change bumps metadata.generation."""
    t = widgets(objects, status_subresource=False)
    created = await objects.create(t, widget(), opts())
    assert created.obj["metadata"]["generation"] == 1

    tw = widgets(objects, False, "w")
    updated = await objects.update(tw, {**current(objects, tw), "status": {"phase": "Ready"}}, opts())

    assert updated.obj["status"] == {"phase": "Ready"}
    assert updated.obj["metadata"]["generation"] == 2


async def test_custom_resource_nulls_in_non_nullable_fields_are_pruned(objects: Objects) -> None:
    """apiextensions.k8s.io/v1: "null values for fields that either don't specify the nullable flag, or give
    it a false value, will be pruned" (structuraldefaulting.PruneNonNullableNullsWithoutDefaults) - a
    manifest with `mode: ~` (a Helm value left empty) is accepted, the field dropped."""
    t = widgets(objects, status_subresource=True)

    result = await objects.create(t, widget(mode=None), opts())

    assert result.code == 201
    assert result.obj["spec"] == {"size": 1}


async def test_strategic_merge_patch_is_415_for_custom_resources(objects: Objects) -> None:
    t = widgets(objects, status_subresource=True)
    await objects.create(t, widget(), opts())
    with pytest.raises(StatusError) as excinfo:
        await objects.patch(widgets(objects, True, "w"), PATCH_STRATEGIC, b'{"spec":{"size":2}}', opts())
    assert (excinfo.value.code, excinfo.value.reason) == (415, "UnsupportedMediaType")


# -- patch ---------------------------------------------------------------------------------------------------


async def test_merge_and_json_patches(objects: Objects) -> None:
    await create_cm(objects, data={"a": "1", "b": "2"})
    t = configmaps(objects, name="cm")

    merged = await objects.patch(t, PATCH_MERGE, b'{"data":{"a":null,"c":"3"}}', opts())
    assert merged.obj["data"] == {"b": "2", "c": "3"}
    patched = await objects.patch(t, PATCH_JSON, b'[{"op":"replace","path":"/data/b","value":"x"}]', opts())
    assert patched.obj["data"] == {"b": "x", "c": "3"}
    assert int(patched.obj["metadata"]["resourceVersion"]) > int(merged.obj["metadata"]["resourceVersion"])


async def test_strategic_merge_patch_merges_containers_by_name(objects: Objects) -> None:
    await objects.create(deployments(objects), deployment(), opts())
    patch = b'{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"nginx:1.28"}]}}}}'
    result = await objects.patch(deployments(objects, name="web"), PATCH_STRATEGIC, patch, opts())
    (container,) = result.obj["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.28" and container["terminationMessagePolicy"] == "File"
    assert result.obj["metadata"]["generation"] == 2


async def test_a_patch_carrying_a_stale_resource_version_is_409(objects: Objects) -> None:
    await create_cm(objects)
    t = configmaps(objects, name="cm")
    rv = current(objects, t)["metadata"]["resourceVersion"]
    await objects.patch(t, PATCH_MERGE, b'{"data":{"a":"1"}}', opts())

    patch = orjson.dumps({"metadata": {"resourceVersion": rv}, "data": {"a": "2"}})
    with pytest.raises(StatusError) as excinfo:
        await objects.patch(t, PATCH_MERGE, patch, opts())
    assert excinfo.value.code == 409
    assert excinfo.value.message == f'Operation cannot be fulfilled on configmaps "cm": {STALE}'


async def test_patch_of_a_missing_object_is_404_and_unknown_patch_types_415(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        await objects.patch(configmaps(objects, name="nope"), PATCH_MERGE, b"{}", opts())
    assert excinfo.value.code == 404
    await create_cm(objects)
    with pytest.raises(StatusError) as excinfo:
        await objects.patch(configmaps(objects, name="cm"), "application/xml", b"{}", opts())
    assert excinfo.value.code == 415


# -- server-side apply ---------------------------------------------------------------------------------------


def applied_deployment(replicas: int) -> bytes:
    body = deployment(replicas=replicas)
    body["metadata"]["namespace"] = "default"
    return orjson.dumps(body)


async def apply(objects: Objects, body: bytes, manager: str, force: bool = False) -> WriteResult:
    return await objects.patch(
        deployments(objects, name="web"), PATCH_APPLY_YAML, body, opts(field_manager=manager, force=force)
    )


async def test_apply_creates_then_conflicts_between_managers(objects: Objects) -> None:
    """Server-side apply: the first apply creates (201) and records the manager's fields; another manager
    changing one of them is 409 `Apply failed with 1 conflict: conflict with "a": .spec.replicas` unless it
    forces, which moves the ownership."""
    created = await apply(objects, applied_deployment(2), "a")
    assert created.code == 201
    assert [(e["manager"], e["operation"]) for e in created.obj["metadata"]["managedFields"]] == [
        ("a", "Apply")
    ]

    with pytest.raises(StatusError) as excinfo:
        await apply(objects, applied_deployment(3), "b")
    error = excinfo.value
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == 'Apply failed with 1 conflict: conflict with "a": .spec.replicas'
    assert [c.to_json() for c in error.causes] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "a"', "field": ".spec.replicas"}
    ]
    assert current(objects, deployments(objects, name="web"))["spec"]["replicas"] == 2

    forced = await apply(objects, applied_deployment(3), "b", force=True)
    assert forced.code == 200 and forced.obj["spec"]["replicas"] == 3
    owners = {
        e["manager"]: e["fieldsV1"]
        for e in forced.obj["metadata"]["managedFields"]
        if e["operation"] == "Apply"
    }
    assert "f:replicas" in owners["b"]["f:spec"] and "f:replicas" not in owners["a"]["f:spec"]


async def test_applying_the_same_configuration_again_changes_nothing(objects: Objects) -> None:
    await apply(objects, applied_deployment(2), "a")
    rv = objects.store.rv
    again = await apply(objects, applied_deployment(2), "a")
    assert again.code == 200
    assert objects.store.rv == rv


async def test_apply_needs_a_field_manager(objects: Objects) -> None:
    with pytest.raises(StatusError) as excinfo:
        await apply(objects, applied_deployment(2), "")
    assert excinfo.value.code == 422
    assert [c.field for c in excinfo.value.causes] == ["fieldManager"]


# -- delete --------------------------------------------------------------------------------------------------


async def test_delete_removes_the_object_and_sends_deleted(objects: Objects) -> None:
    await create_cm(objects, data={"k": "v"})
    watcher = objects.watch(configmaps(objects), objects.store.rv)

    result = await objects.delete(configmaps(objects, name="cm"), {}, opts())

    assert result.code == 200 and result.obj["data"] == {"k": "v"}
    assert objects.store.get(("", "configmaps"), "default", "cm") is None
    assert kinds(drain(watcher)) == [(DELETED, "cm")]
    with pytest.raises(StatusError) as excinfo:
        await objects.delete(configmaps(objects, name="cm"), {}, opts())
    assert (excinfo.value.code, excinfo.value.message) == (404, 'configmaps "cm" not found')


async def test_delete_with_finalizers_marks_the_object_for_deletion(objects: Objects) -> None:
    """With finalizers the object stays, with deletionTimestamp and deletionGracePeriodSeconds 0, until the
    last finalizer is removed; deleting it again changes nothing."""
    await create_cm(objects, finalizers=["example.com/a", "example.com/b"])
    t = configmaps(objects, name="cm")
    watcher = objects.watch(configmaps(objects), objects.store.rv)

    result = await objects.delete(t, {}, opts())

    meta = result.obj["metadata"]
    assert TIMESTAMP.match(meta["deletionTimestamp"])
    assert meta["deletionGracePeriodSeconds"] == 0
    assert meta["finalizers"] == ["example.com/a", "example.com/b"]
    assert current(objects, t)["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]
    rv = objects.store.rv
    again = await objects.delete(t, {}, opts())
    assert again.obj["metadata"]["resourceVersion"] == str(rv) and objects.store.rv == rv

    body = current(objects, t)
    body["metadata"]["finalizers"] = ["example.com/b"]
    await objects.update(t, body, opts())
    assert current(objects, t)["metadata"]["finalizers"] == ["example.com/b"]

    body = current(objects, t)
    del body["metadata"]["finalizers"]
    await objects.update(t, body, opts())
    assert objects.store.get(("", "configmaps"), "default", "cm") is None
    assert kinds(drain(watcher)) == [(MODIFIED, "cm"), (MODIFIED, "cm"), (DELETED, "cm")]


async def test_removing_the_last_finalizer_by_patch_deletes(objects: Objects) -> None:
    await create_cm(objects, finalizers=["example.com/a"])
    t = configmaps(objects, name="cm")
    await objects.delete(t, {}, opts())

    await objects.patch(t, PATCH_MERGE, b'{"metadata":{"finalizers":null}}', opts())

    assert objects.store.get(("", "configmaps"), "default", "cm") is None


async def test_an_update_cannot_undo_the_deletion(objects: Objects) -> None:
    """ "an update can never remove/change a deletion timestamp" (rest.BeforeUpdate)."""
    await create_cm(objects, finalizers=["example.com/a"])
    t = configmaps(objects, name="cm")
    deleted_at = (await objects.delete(t, {}, opts())).obj["metadata"]["deletionTimestamp"]
    body = current(objects, t)
    del body["metadata"]["deletionTimestamp"]
    body["data"] = {"k": "v"}

    result = await objects.update(t, body, opts())

    assert result.obj["metadata"]["deletionTimestamp"] == deleted_at


async def test_no_new_finalizers_once_deleting(objects: Objects) -> None:
    """ValidateNoNewFinalizers (422): `metadata.finalizers: Forbidden: no new finalizers can be added if the
    object is being deleted, found new finalizers []string{"example.com/b"}` (Go's %#v of the list)."""
    await create_cm(objects, finalizers=["example.com/a"])
    t = configmaps(objects, name="cm")
    await objects.delete(t, {}, opts())
    body = current(objects, t)
    body["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]

    with pytest.raises(StatusError) as excinfo:
        await objects.update(t, body, opts())

    error = excinfo.value
    assert (error.code, error.reason) == (422, "Invalid")
    assert [(c.reason, c.field) for c in error.causes] == [("FieldValueForbidden", "metadata.finalizers")]
    assert current(objects, t)["metadata"]["finalizers"] == ["example.com/a"]
    assert error.message == (
        'ConfigMap "cm" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the '
        'object is being deleted, found new finalizers []string{"example.com/b"}'
    )


async def test_delete_preconditions(objects: Objects) -> None:
    created = await create_cm(objects)
    t = configmaps(objects, name="cm")
    uid, rv = created["metadata"]["uid"], created["metadata"]["resourceVersion"]

    with pytest.raises(StatusError) as excinfo:
        await objects.delete(t, {"preconditions": {"uid": "other"}}, opts())
    assert excinfo.value.code == 409
    assert excinfo.value.message == (
        f'Operation cannot be fulfilled on configmaps "cm": Precondition failed: UID in precondition: other, '
        f"UID in object meta: {uid}"
    )
    with pytest.raises(StatusError) as excinfo:
        await objects.delete(t, {"preconditions": {"resourceVersion": "1"}}, opts())
    assert excinfo.value.message == (
        'Operation cannot be fulfilled on configmaps "cm": Precondition failed: ResourceVersion in '
        f"precondition: 1, ResourceVersion in object meta: {rv}"
    )
    assert objects.store.get(("", "configmaps"), "default", "cm") is not None
    await objects.delete(t, {"preconditions": {"uid": uid, "resourceVersion": rv}}, opts())
    assert objects.store.get(("", "configmaps"), "default", "cm") is None


async def test_an_unknown_propagation_policy_is_422(objects: Objects) -> None:
    await create_cm(objects)
    with pytest.raises(StatusError) as excinfo:
        await objects.delete(configmaps(objects, name="cm"), {"propagationPolicy": "Later"}, opts())
    assert excinfo.value.code == 422
    assert [c.field for c in excinfo.value.causes] == ["propagationPolicy"]


async def owner_and_dependent(objects: Objects) -> tuple[str, str]:
    owner = await create_cm(objects, "owner")
    uid = owner["metadata"]["uid"]
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    dependent = await create_cm(objects, "dependent", ownerReferences=[ref])
    return uid, dependent["metadata"]["uid"]


async def test_garbage_collection_indexes_follow_owner_references(objects: Objects) -> None:
    owner_uid, dependent_uid = await owner_and_dependent(objects)
    dependent = (("", "configmaps"), "default", "dependent")

    assert objects.by_uid[owner_uid] == (("", "configmaps"), "default", "owner")
    assert objects.by_uid[dependent_uid] == dependent
    assert list(objects.dependents_of(owner_uid)) == [dependent]

    t = configmaps(objects, name="dependent")
    body = current(objects, t)
    del body["metadata"]["ownerReferences"]
    await objects.update(t, body, opts())
    assert list(objects.dependents_of(owner_uid)) == []
    await objects.delete(t, {}, opts())
    assert dependent_uid not in objects.by_uid


async def test_a_dependent_of_a_missing_owner_is_queued_for_collection(objects: Objects) -> None:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "ghost-uid"}
    await create_cm(objects, "orphan", ownerReferences=[ref])
    assert "ghost-uid" in objects.gc_queue


async def test_orphan_deletion_removes_the_owner_reference_from_dependents(objects: Objects) -> None:
    owner_uid, _ = await owner_and_dependent(objects)

    await objects.delete(configmaps(objects, name="owner"), {"propagationPolicy": "Orphan"}, opts())

    assert objects.store.get(("", "configmaps"), "default", "owner") is None
    dependent = current(objects, configmaps(objects, name="dependent"))
    assert "ownerReferences" not in dependent["metadata"]
    assert list(objects.dependents_of(owner_uid)) == []


async def test_background_deletion_removes_the_owner_and_queues_its_dependents(objects: Objects) -> None:
    owner_uid, _ = await owner_and_dependent(objects)
    objects.gc_wakeup.clear()

    await objects.delete(configmaps(objects, name="owner"), {"propagationPolicy": "Background"}, opts())

    assert objects.store.get(("", "configmaps"), "default", "owner") is None
    assert owner_uid in objects.gc_queue and objects.gc_wakeup.is_set()
    assert objects.store.get(("", "configmaps"), "default", "dependent") is not None  # the collector's job


async def test_foreground_deletion_keeps_the_owner_until_dependents_are_gone(objects: Objects) -> None:
    """Foreground: the owner gets deletionTimestamp and the `foregroundDeletion` finalizer and stays (visible
    to clients as deleting) while the collector deletes the dependents."""
    owner_uid, _ = await owner_and_dependent(objects)

    result = await objects.delete(
        configmaps(objects, name="owner"), {"propagationPolicy": "Foreground"}, opts()
    )

    meta = result.obj["metadata"]
    assert meta["finalizers"] == [FOREGROUND_FINALIZER] and meta.get("deletionTimestamp")
    assert objects.store.get(("", "configmaps"), "default", "owner") is not None
    assert owner_uid in objects.gc_queue


async def test_deleting_a_namespace_marks_it_terminating(objects: Objects) -> None:
    """Namespaces are deleted gracefully: deletionTimestamp and phase Terminating, removed later by the
    namespace controller once its `kubernetes` finalizer is done."""
    await make_namespace(objects, "team")

    result = await objects.delete(namespaces(objects, "team"), {}, opts())

    assert result.obj["status"]["phase"] == "Terminating"
    assert result.obj["metadata"].get("deletionTimestamp")
    assert result.obj["spec"]["finalizers"] == ["kubernetes"]
    assert objects.store.get(("", "namespaces"), "", "team") is not None


# -- dry run -------------------------------------------------------------------------------------------------


async def test_dry_run_changes_nothing(objects: Objects) -> None:
    """dryRun=All: every step but storing; nothing is written, no resourceVersion is used, no event sent."""
    await create_cm(objects, "cm", data={"k": "v"})
    t = configmaps(objects, name="cm")
    before = current(objects, t)
    rv = objects.store.rv
    watcher = objects.watch(configmaps(objects), rv)
    dry = opts(dry_run=True)

    created = await objects.create(configmaps(objects), configmap("new", {"a": "b"}), dry)
    assert created.code == 201 and created.obj["metadata"]["name"] == "new"
    assert created.obj["metadata"].get("uid") and "resourceVersion" not in created.obj["metadata"]

    body = copy_object(before)
    body["data"] = {"k": "changed"}
    updated = await objects.update(t, body, dry)
    assert updated.obj["data"] == {"k": "changed"}
    assert updated.obj["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    patched = await objects.patch(t, PATCH_MERGE, b'{"data":{"k":"patched"}}', dry)
    assert patched.obj["data"] == {"k": "patched"}

    deleted = await objects.delete(t, {}, dry)
    assert deleted.obj["metadata"]["name"] == "cm"

    assert objects.store.rv == rv
    assert current(objects, t) == before
    assert objects.store.get(("", "configmaps"), "default", "new") is None
    assert drain(watcher) == []


async def test_dry_run_still_validates(objects: Objects) -> None:
    await create_cm(objects)
    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects), configmap("cm"), opts(dry_run=True))
    assert excinfo.value.code == 409
    with pytest.raises(StatusError) as excinfo:
        await objects.create(configmaps(objects), configmap("Bad"), opts(dry_run=True))
    assert excinfo.value.code == 422
