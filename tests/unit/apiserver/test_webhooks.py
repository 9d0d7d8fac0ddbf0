"""Admission webhooks, end to end through the API server's HTTP face: the project's API server in-process on
127.0.0.1 calls real HTTPS webhook servers (aiohttp, certificates from their own CA). Rules, selectors,
JSONPatch, reinvocation, failure policies, timeouts, TLS verification, v1 and v1beta1 reviews, dry runs and
side effects, CONNECT, and the validation of the configurations themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from isthmus.local.apiserver.webhook_config import Rule
from tests.unit.apiserver.webhookkit import (
    ADMREG,
    HOST,
    Answer,
    Api,
    Certs,
    Handler,
    JsonObject,
    WebhookServer,
    add_label,
    allow,
    by_service,
    by_url,
    deny,
    free_port,
    patch,
    pod,
    rule,
    webhook,
)

PODS = "/api/v1/namespaces/team/pods"
MUTATING = "MutatingWebhookConfiguration"
VALIDATING = "ValidatingWebhookConfiguration"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The webhooks' CA and certificate: the Service name `wh.hooks.svc`, `localhost` and 127.0.0.1."""
    return Certs.create(tmp_path_factory.mktemp("webhook-pki"), ["wh.hooks.svc", "localhost"], [HOST])


@pytest.fixture(scope="session")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Another CA, which did not sign the webhooks' certificate."""
    return Certs.create(tmp_path_factory.mktemp("stranger-pki"), ["wh.hooks.svc"], [HOST])


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    api = Api(tmp_path / "api")
    await api.start()
    try:
        await api.namespace("team", {"env": "prod"})
        await api.namespace("other")
        yield api
    finally:
        await api.stop()


@pytest.fixture
async def server(certs: Certs) -> AsyncIterator[WebhookServer]:
    server = WebhookServer(certs)
    await server.start()
    yield server
    await server.stop()


async def expose(api: Api, server: WebhookServer, name: str = "wh", ready: bool = True) -> None:
    """A selector-less Service `hooks/<name>` on port 443 whose Endpoints point at the webhook server."""
    if (await api.request("GET", "/api/v1/namespaces/hooks")).status == 404:
        await api.namespace("hooks")
    await api.ok(
        "POST",
        "/api/v1/namespaces/hooks/services",
        {"metadata": {"name": name}, "spec": {"ports": [{"port": 443, "targetPort": server.port}]}},
    )
    subset: JsonObject = {"ports": [{"port": server.port}]}
    subset["addresses" if ready else "notReadyAddresses"] = [{"ip": HOST}]
    await api.ok(
        "POST", "/api/v1/namespaces/hooks/endpoints", {"metadata": {"name": name}, "subsets": [subset]}
    )


def answering(answer: Answer) -> Handler:
    return lambda review: answer


def labels(obj: JsonObject) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("labels") or {}
    return found


# -- mutation ---------------------------------------------------------------------------------------------------


async def test_mutating_webhook_by_service_patches_the_pod_and_warns(api: Api, server: WebhookServer) -> None:
    server.routes["/mutate"] = lambda review: patch(
        add_label("injected.example.com/by", "webhook"), warnings=["pod\nlabelled"]
    )
    await expose(api, server)
    await api.configure(
        MUTATING,
        "labeller",
        [webhook("label.example.com", by_service("hooks", "wh", "/mutate", server.certs))],
    )

    reply = await api.create(PODS, pod("web", {"app": "web"}))
    assert reply.status == 201, reply.body
    assert labels(reply.body) == {"app": "web", "injected.example.com/by": "webhook"}
    assert reply.warnings == ["pod labelled"]
    stored = await api.ok("GET", f"{PODS}/web")
    assert labels(stored)["injected.example.com/by"] == "webhook"

    (call,) = server.calls_to("/mutate")
    review, request = call.review, call.request
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert request["kind"] == request["requestKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert (
        request["resource"]
        == request["requestResource"]
        == {"group": "", "version": "v1", "resource": "pods"}
    )
    assert "subResource" not in request
    assert (request["name"], request["namespace"], request["operation"]) == ("web", "team", "CREATE")
    assert request["userInfo"]["username"] == "kubernetes-admin"
    assert "system:masters" in request["userInfo"]["groups"]
    assert request["object"]["metadata"]["labels"] == {"app": "web"}
    assert request["oldObject"] is None and request["dryRun"] is False
    assert request["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert len(request["uid"]) == 36


async def test_an_added_sidecar_is_defaulted_and_gets_the_service_account_mount(
    api: Api, server: WebhookServer
) -> None:
    sidecar = {"name": "proxy", "image": "isthmus.dev/host", "command": ["sleep", "60"]}
    server.routes["/inject"] = lambda review: patch(
        {"op": "add", "path": "/spec/containers/-", "value": sidecar}
    )
    await api.configure(MUTATING, "injector", [webhook("inject.example.com", by_url(server, "/inject"))])

    created = await api.ok("POST", PODS, pod("web"))
    app, proxy = created["spec"]["containers"]
    assert proxy["name"] == "proxy"
    assert proxy["terminationMessagePath"] == "/dev/termination-log", "defaults apply to what a webhook adds"
    assert proxy["imagePullPolicy"] == "Always"
    mounts = [m["mountPath"] for m in proxy["volumeMounts"]]
    assert mounts == ["/var/run/secrets/kubernetes.io/serviceaccount"], "the second round mounts the token"
    assert [v["name"] for v in created["spec"]["volumes"]] == [app["volumeMounts"][0]["name"]]


async def test_reinvocation_if_needed_calls_an_earlier_webhook_once_more(
    api: Api, server: WebhookServer
) -> None:
    server.routes["/first"] = lambda review: allow()
    server.routes["/second"] = lambda review: patch(add_label("second", "yes"))
    server.routes["/third"] = lambda review: allow()
    await api.configure(
        MUTATING,
        "a-first",
        [
            webhook("first.example.com", by_url(server, "/first"), reinvocationPolicy="IfNeeded"),
            webhook("third.example.com", by_url(server, "/third"), reinvocationPolicy="IfNeeded"),
        ],
    )
    await api.configure(MUTATING, "b-second", [webhook("second.example.com", by_url(server, "/second"))])

    await api.ok("POST", PODS, pod("web"))
    first, second, third = (server.calls_to(p) for p in ("/first", "/second", "/third"))
    assert len(second) == 1, "a webhook that is not IfNeeded runs once"
    assert len(first) == 2 and len(third) == 2, "IfNeeded webhooks that ran before the change run once more"
    assert labels(first[1].request["object"])["second"] == "yes", "the reinvocation sees the change"


async def test_no_reinvocation_with_policy_never_or_without_a_change(api: Api, server: WebhookServer) -> None:
    server.routes["/first"] = lambda review: allow()
    server.routes["/second"] = lambda review: patch(add_label("second", "yes"))
    await api.configure(MUTATING, "a-first", [webhook("first.example.com", by_url(server, "/first"))])
    await api.configure(MUTATING, "b-second", [webhook("second.example.com", by_url(server, "/second"))])
    await api.ok("POST", PODS, pod("web"))
    assert len(server.calls_to("/first")) == 1

    server.routes["/second"] = lambda review: allow()
    await api.configure(
        MUTATING,
        "a-first",
        [webhook("first.example.com", by_url(server, "/first"), reinvocationPolicy="IfNeeded")],
    )
    server.calls.clear()
    await api.ok("POST", PODS, pod("db"))
    assert len(server.calls_to("/first")) == 1, "nothing changed the object: no second round"


async def test_patches_are_checked(api: Api, server: WebhookServer) -> None:
    await api.configure(MUTATING, "patcher", [webhook("patch.example.com", by_url(server, "/p"))])

    server.routes["/p"] = lambda review: patch({"op": "replace", "path": "/spec/containers", "value": "none"})
    reply = await api.create(PODS, pod("typed"))
    assert reply.status == 500
    assert reply.message.startswith(
        'Internal error occurred: admission webhook "patch.example.com" returned a patch whose result is not '
        "a valid Pod: json: cannot unmarshal string"
    ), reply.message

    server.routes["/p"] = lambda review: patch({"op": "remove", "path": "/spec/nothing"})
    reply = await api.create(PODS, pod("missing"))
    assert reply.status == 500 and "returned a patch that cannot be applied" in reply.message

    server.routes["/p"] = lambda review: patch(
        {"op": "replace", "path": "/metadata/namespace", "value": "other"}
    )
    reply = await api.create(PODS, pod("moved"))
    assert reply.status == 400
    assert (
        reply.message
        == 'admission webhook "patch.example.com" may not change metadata.namespace (from "team" to "other")'
    )

    server.routes["/p"] = lambda review: patch(
        {"op": "add", "path": "/metadata/labels/x", "value": "not valid!"}
    )
    reply = await api.create(PODS, pod("bad-label"))
    assert reply.status == 422, "the patched object is validated again"
    assert 'Pod "bad-label" is invalid: metadata.labels: Invalid value: "not valid!"' in reply.message

    server.routes["/p"] = lambda review: patch({"op": "add", "path": "/spec/unknownField", "value": 1})
    reply = await api.create(PODS, pod("pruned"))
    assert reply.status == 201 and "unknownField" not in reply.body["spec"], "unknown fields are dropped"


# -- matching ---------------------------------------------------------------------------------------------------


def test_rules_match_as_kubernetes_matches_them() -> None:
    def matches(
        resources: list[str],
        scope: str = "*",
        operation: str = "CREATE",
        group: str = "",
        version: str = "v1",
        resource: str = "pods",
        subresource: str = "",
        cluster_scoped: bool = False,
    ) -> bool:
        split = tuple((res, sub) for res, _, sub in (x.partition("/") for x in resources))
        r = Rule(frozenset({"CREATE", "UPDATE"}), frozenset({""}), frozenset({"v1"}), split, scope)
        return r.matches(operation, group, version, resource, subresource, cluster_scoped)

    assert matches(["pods"])
    assert not matches(["pods"], subresource="status")
    assert matches(["pods/status"], subresource="status") and not matches(["pods/status"])
    assert matches(["pods/*"]) and matches(["pods/*"], subresource="status")
    assert matches(["*"]) and not matches(["*"], subresource="status")
    assert matches(["*/*"], resource="services", subresource="proxy")
    assert matches(["*/status"], resource="deployments", subresource="status")
    assert not matches(["pods"], operation="DELETE")
    assert not matches(["pods"], group="apps") and not matches(["pods"], version="v2")
    assert matches(["pods"], "Namespaced") and not matches(["pods"], "Cluster")
    assert matches(["namespaces"], "Cluster", resource="namespaces", cluster_scoped=True)
    assert not matches(["namespaces"], "Namespaced", resource="namespaces", cluster_scoped=True)


async def test_rules_by_operation_resource_subresource_and_scope(api: Api, server: WebhookServer) -> None:
    server.routes["/v"] = lambda review: allow()
    await api.configure(
        VALIDATING,
        "watcher",
        [
            webhook("status.example.com", by_url(server, "/v"), [rule(["pods/status"], ["UPDATE"])]),
            webhook("cluster.example.com", by_url(server, "/v"), [rule(["*"], ["*"], scope="Cluster")]),
            webhook("deletes.example.com", by_url(server, "/v"), [rule(["configmaps"], ["DELETE"])]),
        ],
    )

    created = await api.ok("POST", PODS, pod("web"))
    assert server.calls == [], "a create of a pod matches none of the rules"
    created["metadata"]["labels"] = {"changed": "yes"}
    created = await api.ok("PUT", f"{PODS}/web", created)
    assert server.calls == []
    created["status"] = {**created["status"], "message": "hello"}
    await api.ok("PUT", f"{PODS}/web/status", created)
    (call,) = server.calls
    assert (call.request["operation"], call.request["subResource"]) == ("UPDATE", "status")
    assert call.request["kind"]["kind"] == "Pod" and call.request["oldObject"]["metadata"]["name"] == "web"
    assert call.request["options"]["kind"] == "UpdateOptions"

    server.calls.clear()
    await api.namespace("fresh")
    ns_calls = [c.request for c in server.calls if c.request["resource"]["resource"] == "namespaces"]
    assert ns_calls and ns_calls[0]["operation"] == "CREATE" and ns_calls[0]["name"] == "fresh"
    assert ns_calls[0]["namespace"] == "fresh", "a namespace's own requests carry its name as namespace"

    server.calls.clear()
    await api.ok("POST", "/api/v1/namespaces/team/configmaps", {"metadata": {"name": "cm"}})
    assert server.calls == []
    await api.ok("DELETE", "/api/v1/namespaces/team/configmaps/cm", {"gracePeriodSeconds": 0})
    (call,) = server.calls
    request = call.request
    assert request["operation"] == "DELETE" and request["object"] is None
    assert request["oldObject"]["metadata"]["name"] == "cm"
    assert request["options"] == {
        "kind": "DeleteOptions",
        "apiVersion": "meta.k8s.io/v1",
        "gracePeriodSeconds": 0,
    }


async def test_namespace_selector_and_object_selector(api: Api, server: WebhookServer) -> None:
    server.routes["/ns"] = lambda review: patch(add_label("ns-selected", "yes"))
    server.routes["/obj"] = lambda review: patch(add_label("obj-selected", "yes"))
    await api.configure(
        MUTATING,
        "selective",
        [
            webhook(
                "ns.example.com", by_url(server, "/ns"), namespaceSelector={"matchLabels": {"env": "prod"}}
            ),
            webhook(
                "obj.example.com",
                by_url(server, "/obj"),
                [rule(["pods"], ["CREATE", "UPDATE"])],
                objectSelector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            ),
        ],
    )
    in_prod = await api.ok("POST", PODS, pod("web", {"app": "web"}))
    assert labels(in_prod) == {"app": "web", "ns-selected": "yes", "obj-selected": "yes"}
    elsewhere = await api.ok("POST", "/api/v1/namespaces/other/pods", pod("db", {"app": "db"}))
    assert labels(elsewhere) == {"app": "db"}, "neither selector matches"

    server.calls.clear()
    in_prod["metadata"]["labels"] = {"app": "worker"}
    updated = await api.ok("PUT", f"{PODS}/web", in_prod)
    assert [c.path for c in server.calls] == ["/obj"], "the old object still matched the objectSelector"
    assert labels(updated) == {"app": "worker", "obj-selected": "yes"}

    await api.ok(
        "PATCH",
        "/api/v1/namespaces/other",
        {"metadata": {"labels": {"env": "prod"}}},
        content_type="application/merge-patch+json",
    )
    assert labels(await api.ok("POST", "/api/v1/namespaces/other/pods", pod("late")))["ns-selected"] == "yes"


async def test_match_policy_equivalent_sends_the_version_the_webhook_asked_for(
    api: Api, server: WebhookServer
) -> None:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    crd = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}},
                {"name": "v2", "served": True, "storage": False, "schema": {"openAPIV3Schema": schema}},
            ],
        },
    }
    await api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    for _ in range(300):
        if (await api.request("GET", "/apis/example.com/v2/namespaces/team/widgets")).status == 200:
            break
        await asyncio.sleep(0.01)
    server.routes["/w"] = lambda review: patch(add_label("seen-as", review["request"]["kind"]["version"]))
    widget_rule = rule(["widgets"], groups=["example.com"], versions=["v1"])
    await api.configure(MUTATING, "widgets", [webhook("w.example.com", by_url(server, "/w"), [widget_rule])])

    created = await api.ok(
        "POST",
        "/apis/example.com/v2/namespaces/team/widgets",
        {"metadata": {"name": "a", "labels": {"x": "y"}}},
    )
    assert created["apiVersion"] == "example.com/v2" and labels(created) == {"x": "y", "seen-as": "v1"}
    (call,) = server.calls
    assert call.request["kind"] == {"group": "example.com", "version": "v1", "kind": "Widget"}
    assert call.request["requestKind"]["version"] == "v2"
    assert call.request["requestResource"]["version"] == "v2"
    assert call.request["object"]["apiVersion"] == "example.com/v1"

    await api.configure(
        MUTATING,
        "widgets",
        [webhook("w.example.com", by_url(server, "/w"), [widget_rule], matchPolicy="Exact")],
    )
    server.calls.clear()
    created = await api.ok(
        "POST", "/apis/example.com/v2/namespaces/team/widgets", {"metadata": {"name": "b"}}
    )
    assert server.calls == [] and labels(created) == {}


# -- refusals and failures --------------------------------------------------------------------------------------


async def test_a_refusal_names_the_webhook(api: Api, server: WebhookServer) -> None:
    server.routes["/deny"] = lambda review: deny("pods need an owner", reason="Forbidden")
    server.routes["/quiet"] = lambda review: deny(code=200)
    await api.configure(VALIDATING, "policy", [webhook("owner.example.com", by_url(server, "/deny"))])
    reply = await api.create(PODS, pod("web"))
    assert (reply.status, reply.body["reason"]) == (403, "Forbidden")
    assert reply.message == 'admission webhook "owner.example.com" denied the request: pods need an owner'

    await api.configure(VALIDATING, "policy", [webhook("quiet.example.com", by_url(server, "/quiet"))])
    reply = await api.create(PODS, pod("web"))
    assert reply.status == 400, "a refusal is never answered below 400"
    assert reply.message == 'admission webhook "quiet.example.com" denied the request without explanation'
    assert (await api.request("GET", f"{PODS}/web")).status == 404


async def test_failure_policy_fail_and_ignore(api: Api, server: WebhookServer) -> None:
    closed = free_port()
    unreachable = {"url": f"https://{HOST}:{closed}/mutate", "caBundle": server.certs.ca_bundle}
    await api.configure(MUTATING, "down", [webhook("down.example.com", unreachable)])
    reply = await api.create(PODS, pod("web"))
    assert (reply.status, reply.body["reason"]) == (500, "InternalError")
    assert reply.message == (
        'Internal error occurred: failed calling webhook "down.example.com": failed to call webhook: '
        f'Post "https://{HOST}:{closed}/mutate?timeout=10s": dial tcp {HOST}:{closed}: connect: connection refused'
    )
    await api.configure(MUTATING, "down", [webhook("down.example.com", unreachable, failurePolicy="Ignore")])
    assert (await api.create(PODS, pod("web"))).status == 201


async def test_a_service_without_ready_endpoints(api: Api, server: WebhookServer) -> None:
    await expose(api, server, ready=False)
    await api.configure(
        MUTATING, "svc", [webhook("svc.example.com", by_service("hooks", "wh", "/m", server.certs))]
    )
    reply = await api.create(PODS, pod("web"))
    assert reply.status == 500
    assert reply.message == (
        'Internal error occurred: failed calling webhook "svc.example.com": failed to call webhook: '
        'Post "https://wh.hooks.svc:443/m?timeout=10s": no endpoints available for service "wh"'
    )
    await api.configure(
        MUTATING,
        "svc",
        [webhook("svc.example.com", by_service("hooks", "nope", "/m", server.certs, port=8443))],
    )
    reply = await api.create(PODS, pod("web"))
    assert reply.message.endswith(
        'Post "https://nope.hooks.svc:8443/m?timeout=10s": services "nope" not found'
    )


async def test_a_slow_webhook_times_out(api: Api, server: WebhookServer) -> None:
    async def slow(review: JsonObject) -> JsonObject:
        await asyncio.sleep(5)
        return allow()

    server.routes["/slow"] = slow
    await api.configure(
        MUTATING, "slow", [webhook("slow.example.com", by_url(server, "/slow"), timeoutSeconds=1)]
    )
    start = time.monotonic()
    reply = await api.create(PODS, pod("web"))
    assert 0.9 < time.monotonic() - start < 3
    assert reply.status == 500
    assert reply.message.endswith(f'Post "{server.url("/slow")}?timeout=1s": context deadline exceeded')
    await api.configure(
        MUTATING,
        "slow",
        [webhook("slow.example.com", by_url(server, "/slow"), timeoutSeconds=1, failurePolicy="Ignore")],
    )
    assert (await api.create(PODS, pod("web"))).status == 201


async def test_tls_is_verified_against_the_ca_bundle_and_the_service_name(
    api: Api, server: WebhookServer, stranger: Certs
) -> None:
    server.routes["/m"] = lambda review: allow()
    await expose(api, server)
    await api.configure(
        MUTATING, "tls", [webhook("tls.example.com", by_service("hooks", "wh", "/m", stranger))]
    )
    reply = await api.create(PODS, pod("web"))
    assert reply.status == 500
    assert reply.message.startswith(
        'Internal error occurred: failed calling webhook "tls.example.com": failed to call webhook: Post '
        '"https://wh.hooks.svc:443/m?timeout=10s": tls: failed to verify certificate: x509: certificate signed '
        "by unknown authority"
    ), reply.message
    assert server.calls == []

    await expose(api, server, name="alias")  # same server, but its certificate does not name alias.hooks.svc
    await api.configure(
        MUTATING, "tls", [webhook("tls.example.com", by_service("hooks", "alias", "/m", server.certs))]
    )
    reply = await api.create(PODS, pod("web"))
    assert "x509: certificate is not valid for the webhook's server name" in reply.message
    assert "alias.hooks.svc" in reply.message

    await api.configure(
        MUTATING, "tls", [webhook("tls.example.com", by_service("hooks", "wh", "/m", server.certs))]
    )
    assert (await api.create(PODS, pod("web"))).status == 201


async def test_invalid_answers_fail_per_failure_policy(api: Api, server: WebhookServer) -> None:
    answers: dict[str, bytes | JsonObject] = {
        "/wrong-uid": orjson.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": "x", "allowed": True},
            }
        ),
        "/no-type": b'{"response":{"allowed":true}}',
        "/patch-no-type": {"allowed": True, "patch": "W10="},
    }
    expected = {
        "/wrong-uid": 'expected response.uid="',
        "/no-type": "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=",
        "/patch-no-type": "webhook returned response.patch but not response.patchType",
    }
    for path, answer in answers.items():
        server.routes[path] = answering(answer)
        await api.configure(MUTATING, "odd", [webhook("odd.example.com", by_url(server, path))])
        reply = await api.create(PODS, pod("web"))
        assert reply.status == 500, path
        assert reply.message.startswith(
            'Internal error occurred: failed calling webhook "odd.example.com": received invalid webhook response: '
            + expected[path]
        ), reply.message
    server.routes["/error"] = lambda review: b"not json"
    await api.configure(
        MUTATING, "odd", [webhook("odd.example.com", by_url(server, "/error"), failurePolicy="Ignore")]
    )
    assert (await api.create(PODS, pod("web"))).status == 201

    server.routes["/v"] = lambda review: patch(add_label("a", "b"))
    await api.configure(VALIDATING, "validator", [webhook("v.example.com", by_url(server, "/v"))])
    reply = await api.create(PODS, pod("other"))
    assert reply.message.endswith(
        "received invalid webhook response: validating webhook may not return response.patchType"
    )


async def test_v1beta1_reviews(api: Api, server: WebhookServer) -> None:
    def old_style(review: JsonObject) -> bytes:
        encoded = patch(add_label("old", "style"))["patch"]
        return orjson.dumps({"response": {"allowed": True, "patch": encoded}})  # no uid, type or patchType

    server.routes["/beta"] = old_style
    await api.configure(
        MUTATING,
        "beta",
        [webhook("beta.example.com", by_url(server, "/beta"), admissionReviewVersions=["v1beta1", "v1"])],
    )
    created = await api.ok("POST", PODS, pod("web"))
    assert labels(created) == {"old": "style"}
    (call,) = server.calls
    assert call.review["apiVersion"] == "admission.k8s.io/v1beta1"
    assert call.request["operation"] == "CREATE" and call.request["object"]["metadata"]["name"] == "web"


async def test_validating_webhooks_run_concurrently(api: Api, server: WebhookServer) -> None:
    async def slow(review: JsonObject) -> JsonObject:
        await asyncio.sleep(0.6)
        return allow(warnings=[f"checked by {review['request']['uid'][:0]}one"])

    server.routes["/slow"] = slow
    await api.configure(
        VALIDATING,
        "slow",
        [webhook(f"slow{i}.example.com", by_url(server, "/slow")) for i in range(3)],
    )
    start = time.monotonic()
    reply = await api.create(PODS, pod("web"))
    assert reply.status == 201 and time.monotonic() - start < 1.5
    assert reply.warnings == ["checked by one"], "the same warning is passed on once"


# -- dry runs, CONNECT, exemptions ------------------------------------------------------------------------------


async def test_dry_run_goes_only_to_webhooks_without_side_effects(api: Api, server: WebhookServer) -> None:
    server.routes["/m"] = lambda review: patch(add_label("dry", str(review["request"]["dryRun"]).lower()))
    await api.configure(
        MUTATING, "dry", [webhook("dry.example.com", by_url(server, "/m"), sideEffects="NoneOnDryRun")]
    )
    reply = await api.create(PODS, pod("web"), dryRun="All")
    assert reply.status == 201 and labels(reply.body) == {"dry": "true"}
    assert server.calls[0].request["options"]["dryRun"] == ["All"]
    assert (await api.request("GET", f"{PODS}/web")).status == 404

    # A configuration with side effects (as an older server stored it; v1 refuses to store one now).
    config = await api.ok("GET", f"{ADMREG}/mutatingwebhookconfigurations/dry")
    config["webhooks"][0]["sideEffects"] = "Some"
    config["apiVersion"], config["kind"] = "admissionregistration.k8s.io/v1", MUTATING
    api.server.store.put(("admissionregistration.k8s.io", "mutatingwebhookconfigurations"), config)
    server.calls.clear()
    reply = await api.create(PODS, pod("web"), dryRun="All")
    assert (reply.status, reply.message) == (
        400,
        'admission webhook "dry.example.com" does not support dry run',
    )
    assert server.calls == []
    assert (await api.create(PODS, pod("web"))).status == 201, "a real write still calls it"


async def test_connect_requests_are_admitted(api: Api, server: WebhookServer) -> None:
    server.routes["/exec"] = lambda review: deny("no exec into production pods")
    await api.ok("POST", PODS, pod("web"))
    await api.configure(
        VALIDATING,
        "no-exec",
        [webhook("exec.example.com", by_url(server, "/exec"), [rule(["pods/exec"], ["CONNECT"])])],
    )
    reply = await api.request(
        "GET", f"{PODS}/web/exec", params={"command": "ls", "container": "app", "stdout": "true"}
    )
    assert reply.status == 403
    assert (
        reply.message
        == 'admission webhook "exec.example.com" denied the request: no exec into production pods'
    )
    (call,) = server.calls
    assert call.request["operation"] == "CONNECT" and call.request["subResource"] == "exec"
    assert call.request["object"] == {
        "kind": "PodExecOptions",
        "apiVersion": "v1",
        "stdout": True,
        "container": "app",
        "command": ["ls"],
    }


async def test_webhook_configurations_are_never_sent_to_webhooks(api: Api, server: WebhookServer) -> None:
    server.routes["/no"] = lambda review: deny("nothing gets through")
    everything = [rule(["*/*"], ["*"], ["*"], ["*"])]
    await api.configure(VALIDATING, "wall", [webhook("wall.example.com", by_url(server, "/no"), everything)])
    reply = await api.create("/api/v1/namespaces/team/configmaps", {"metadata": {"name": "cm"}})
    assert reply.status == 403 and "nothing gets through" in reply.message
    await api.configure(MUTATING, "other", [webhook("m.example.com", by_url(server, "/no"), everything)])
    await api.unconfigure(VALIDATING, "wall")
    await api.unconfigure(MUTATING, "other")
    assert all(c.request["resource"]["group"] != "admissionregistration.k8s.io" for c in server.calls)
    server.calls.clear()
    assert (
        await api.create("/api/v1/namespaces/team/configmaps", {"metadata": {"name": "cm"}})
    ).status == 201
    assert server.calls == [], "a deleted configuration is forgotten"


async def test_a_webhook_may_not_patch_a_delete(api: Api, server: WebhookServer) -> None:
    server.routes["/d"] = lambda review: patch(add_label("a", "b"))
    await api.ok("POST", "/api/v1/namespaces/team/configmaps", {"metadata": {"name": "cm"}})
    await api.configure(
        MUTATING,
        "del",
        [webhook("del.example.com", by_url(server, "/d"), [rule(["configmaps"], ["DELETE"])])],
    )
    reply = await api.request("DELETE", "/api/v1/namespaces/team/configmaps/cm")
    assert reply.status == 500
    assert reply.message == (
        'Internal error occurred: admission webhook "del.example.com" attempted to modify the object, which is '
        "not supported for this operation"
    )


# -- the configurations ------------------------------------------------------------------------------------------


async def test_configurations_get_kubernetes_defaults(api: Api, server: WebhookServer) -> None:
    stored = await api.configure(
        MUTATING, "defaults", [webhook("d.example.com", by_service("hooks", "wh", "/m", server.certs))]
    )
    (hook,) = stored["webhooks"]
    assert hook["failurePolicy"] == "Fail" and hook["matchPolicy"] == "Equivalent"
    assert hook["namespaceSelector"] == {} and hook["objectSelector"] == {}
    assert hook["timeoutSeconds"] == 10 and hook["reinvocationPolicy"] == "Never"
    assert hook["rules"][0]["scope"] == "*" and hook["clientConfig"]["service"]["port"] == 443
    validating = await api.configure(VALIDATING, "defaults", [webhook("d.example.com", by_url(server, "/v"))])
    assert "reinvocationPolicy" not in validating["webhooks"][0]


async def test_malformed_configurations_are_refused_naming_object_and_field(
    api: Api, server: WebhookServer
) -> None:
    good = by_url(server, "/m")
    cases: list[tuple[JsonObject, str]] = [
        (
            webhook("short.name", good),
            'webhooks[0].name: Invalid value: "short.name": should be a domain with at least three segments '
            "separated by dots",
        ),
        (
            webhook("t.example.com", good, timeoutSeconds=31),
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
        ),
        (
            webhook("s.example.com", good, sideEffects="Some"),
            'webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun"',
        ),
        (
            webhook("f.example.com", good, failurePolicy="Maybe"),
            'webhooks[0].failurePolicy: Unsupported value: "Maybe": supported values: "Fail", "Ignore"',
        ),
        (
            webhook("o.example.com", good, [rule(["pods"], ["CREATE", "PATCH"])]),
            'webhooks[0].rules[0].operations[1]: Unsupported value: "PATCH"',
        ),
        (
            webhook("r.example.com", good, [rule(["*", "pods"])]),
            "if '*' is present, must not specify other resources without subresources",
        ),
        (
            webhook("u.example.com", {"url": "http://example.com/x"}),
            "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme",
        ),
        (
            webhook("b.example.com", {"url": "https://h/x", "service": {"namespace": "a", "name": "b"}}),
            "webhooks[0].clientConfig: Required value: exactly one of url or service is required",
        ),
        (
            webhook("c.example.com", {"url": "https://h/x", "caBundle": "%%%"}),
            "webhooks[0].clientConfig.caBundle: Invalid value",
        ),
        (
            webhook("v.example.com", good, admissionReviewVersions=["v2"]),
            'webhooks[0].admissionReviewVersions: Invalid value: []string{"v2"}: must include at least one of '
            "v1, v1beta1",
        ),
        (
            webhook(
                "n.example.com",
                good,
                namespaceSelector={"matchExpressions": [{"key": "a", "operator": "In"}]},
            ),
            "webhooks[0].namespaceSelector.matchExpressions[0].values: Required value: must be specified when "
            "`operator` is 'In' or 'NotIn'",
        ),
        (
            webhook("p.example.com", by_service("hooks", "wh", "no-slash", server.certs)),
            "webhooks[0].clientConfig.service.path: Invalid value: \"no-slash\": must start with a '/'",
        ),
        (
            webhook("m.example.com", good, matchConditions=[{"name": "x", "expression": "true"}]),
            "webhooks[0].matchConditions: Forbidden: CEL match conditions are not evaluated",
        ),
    ]
    for hook, message in cases:
        reply = await api.request(
            "POST",
            f"{ADMREG}/mutatingwebhookconfigurations",
            {"metadata": {"name": "bad"}, "webhooks": [hook]},
        )
        assert reply.status == 422, (hook, reply.body)
        assert reply.message.startswith(
            'MutatingWebhookConfiguration.admissionregistration.k8s.io "bad" is invalid: '
        ), reply.message
        assert message in reply.message, reply.message
    duplicate = [webhook("same.example.com", good), webhook("same.example.com", good)]
    reply = await api.request(
        "POST",
        f"{ADMREG}/validatingwebhookconfigurations",
        {"metadata": {"name": "bad"}, "webhooks": duplicate},
    )
    assert 'webhooks[1].name: Duplicate value: "same.example.com"' in reply.message
    missing = {"name": "x.example.com", "clientConfig": good}
    reply = await api.request(
        "POST",
        f"{ADMREG}/validatingwebhookconfigurations",
        {"metadata": {"name": "bad"}, "webhooks": [missing]},
    )
    assert "webhooks[0].sideEffects: Required value" in reply.message
    assert "webhooks[0].admissionReviewVersions: Required value" in reply.message


async def test_writes_are_rechecked_after_a_slow_webhook(api: Api, server: WebhookServer) -> None:
    async def slow(review: JsonObject) -> JsonObject:
        await asyncio.sleep(0.5)
        return allow()

    server.routes["/slow"] = slow
    configmaps = "/api/v1/namespaces/team/configmaps"
    await api.configure(
        MUTATING,
        "slow",
        [
            webhook(
                "slow.example.com",
                by_url(server, "/slow"),
                [rule(["configmaps"], ["CREATE", "UPDATE"])],
                objectSelector={"matchLabels": {"slow": "yes"}},
            )
        ],
    )
    slow_create = asyncio.create_task(
        api.create(configmaps, {"metadata": {"name": "cm", "labels": {"slow": "yes"}}})
    )
    await asyncio.sleep(0.2)
    assert (await api.create(configmaps, {"metadata": {"name": "cm"}})).status == 201
    reply = await slow_create
    assert (reply.status, reply.body["reason"]) == (409, "AlreadyExists")

    current = await api.ok("GET", f"{configmaps}/cm")
    slow_update = asyncio.create_task(
        api.request(
            "PUT",
            f"{configmaps}/cm",
            {**current, "metadata": {**current["metadata"], "labels": {"slow": "yes"}}},
        )
    )
    await asyncio.sleep(0.2)
    await api.ok("PUT", f"{configmaps}/cm", {**current, "data": {"fast": "write"}})
    reply = await slow_update
    assert (reply.status, reply.body["reason"]) == (409, "Conflict"), (
        "the object changed while the webhook ran"
    )
    assert (await api.ok("GET", f"{configmaps}/cm"))["data"] == {"fast": "write"}
