"""Bad input against a real local cluster: each is answered as kube-apiserver 1.32 answers it (a `Status`
error, or kubectl's message built from one), and the server keeps serving afterwards.

Raw requests go to cluster1 over https with the CA and the admin bearer token of the run's kubeconfig; kubectl
commands use the run's kubeconfig (or a modified copy of it). After each bad request a normal read and a
normal (dry-run) write must still succeed.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from tests.e2e.localkit import Kubectl, LocalClusters

RFC1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: strict
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: strict}
  template:
    metadata:
      labels: {app: strict}
    spec:
      containers:
      - name: app
        image: registry.example/app:v1
"""


def http_client(clusters: LocalClusters, token: str | None, context: str = "cluster1") -> httpx.Client:
    """An https client for one cluster's API server, trusting the run's CA, with `token` (or none)."""
    config = clusters.kubeconfig_data()
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context)
    ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(
        base_url=cluster["server"],
        verify=ssl.create_default_context(cadata=ca),
        headers=headers,
        timeout=30,
    )


def admin_token(clusters: LocalClusters, context: str = "cluster1") -> str:
    config = clusters.kubeconfig_data()
    return str(next(u["user"]["token"] for u in config["users"] if u["name"] == context))


@pytest.fixture(scope="module")
def api(clusters: LocalClusters) -> Iterator[httpx.Client]:
    """Raw https requests to cluster1 as its admin (what any Kubernetes client library sends)."""
    with http_client(clusters, admin_token(clusters)) as client:
        yield client


def status_of(response: httpx.Response) -> dict[str, Any]:
    """The Kubernetes `Status` a failed request was answered with, checked for the fields every Status has."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        f"{response.status_code} {response.headers.get('content-type')}: {response.text[:300]}"
    )
    body: dict[str, Any] = response.json()
    assert body.get("kind") == "Status" and body.get("apiVersion") == "v1", body
    assert body.get("status") == "Failure", body
    assert body.get("code") == response.status_code, body
    return body


def assert_still_serving(api: httpx.Client) -> None:
    """A normal read and a normal (dry-run) write succeed: the bad request left the server serving."""
    read = api.get("/api/v1/namespaces/default")
    assert read.status_code == 200 and read.json()["metadata"]["name"] == "default", read.text
    write = api.post(
        "/api/v1/namespaces/default/configmaps",
        params={"dryRun": "All"},
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}, "data": {"a": "b"}},
    )
    assert write.status_code == 201 and write.json()["data"] == {"a": "b"}, write.text


def create_config_map(api: httpx.Client, name: str, data: dict[str, str]) -> dict[str, Any]:
    response = api.post(
        "/api/v1/namespaces/default/configmaps",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# -- bodies -------------------------------------------------------------------------------------------------


def test_malformed_json_body(api: httpx.Client) -> None:
    """A truncated JSON body: 400 BadRequest with kube-apiserver's decode message (transformDecodeError)."""
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"broken"'
    response = api.post(
        "/api/v1/namespaces/default/configmaps", content=body, headers={"Content-Type": "application/json"}
    )
    status = status_of(response)
    assert response.status_code == 400 and status["reason"] == "BadRequest"
    # kube-apiserver: the kind could not be read, so it names the expected type, Go's JSON error and the
    # first 30 bytes of the body.
    assert status["message"] == (
        "the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; "
        'json parse error: unexpected end of JSON input ({"apiVersion":"v1","kind":"Con ...)'
    )
    assert api.get("/api/v1/namespaces/default/configmaps/broken").status_code == 404  # nothing stored
    assert_still_serving(api)


def test_malformed_yaml_body(api: httpx.Client) -> None:
    """A YAML body that does not parse: 400 BadRequest naming the type the request needed."""
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [broken\n"
    response = api.post(
        "/api/v1/namespaces/default/configmaps", content=body, headers={"Content-Type": "application/yaml"}
    )
    status = status_of(response)
    assert response.status_code == 400 and status["reason"] == "BadRequest"
    # kube-apiserver converts YAML to JSON first; the failure goes through the same transformDecodeError.
    assert status["message"].startswith("the object provided is unrecognized (must be of type ConfigMap): ")
    assert_still_serving(api)


def test_oversized_body(api: httpx.Client) -> None:
    """A body over kube-apiserver's 3 MiB request limit: 413 RequestEntityTooLarge, nothing stored."""
    big = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "too-big"},
        "data": {"blob": "x" * (3 * 1024 * 1024 + 1)},
    }
    response = api.post("/api/v1/namespaces/default/configmaps", content=json.dumps(big).encode())
    status = status_of(response)
    assert response.status_code == 413 and status["reason"] == "RequestEntityTooLarge"
    assert status["message"] == "Request entity too large: limit is 3145728"
    assert api.get("/api/v1/namespaces/default/configmaps/too-big").status_code == 404
    assert_still_serving(api)


# -- names and fields ---------------------------------------------------------------------------------------


def test_invalid_name_with_kubectl_create(kubectl: Kubectl, api: httpx.Client) -> None:
    """`kubectl create configmap Bad_Name`: Kubernetes' RFC 1123 message; the raw answer is a 422 Invalid."""
    err = kubectl.fails("create", "configmap", "Bad_Name", "--from-literal", "a=b")
    assert err.strip() == (
        'error: failed to create configmap: ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: '
        f'"Bad_Name": {RFC1123_SUBDOMAIN}'
    )
    response = api.post(
        "/api/v1/namespaces/default/configmaps",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}},
    )
    # the Status a client library gets: 422 Invalid with one cause for the field (NewInvalid's shape).
    assert status_of(response) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN}',
        "reason": "Invalid",
        "details": {
            "name": "Bad_Name",
            "kind": "ConfigMap",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN}',
                    "field": "metadata.name",
                }
            ],
        },
        "code": 422,
    }
    assert_still_serving(api)


def test_invalid_name_with_kubectl_apply(kubectl: Kubectl, api: httpx.Client) -> None:
    """`kubectl apply` of an object named Bad_Name: kubectl's 'The ConfigMap ... is invalid' line."""
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata:\n  a: b\n"
    err = kubectl.fails("apply", "-f", "-", stdin=manifest)
    assert err.strip() == (
        f'The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN}'
    )
    assert_still_serving(api)


def test_unknown_field_in_deployment(kubectl: Kubectl, api: httpx.Client) -> None:
    """`kubectl apply` with a misspelt field: strict decoding refuses it (kubectl's default Strict)."""
    err = kubectl.fails("apply", "-f", "-", stdin=DEPLOYMENT.replace("replicas:", "replicass:"))
    assert err.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be '
        'handled as a Deployment: strict decoding error: unknown field "spec.replicass"'
    )
    assert api.get("/apis/apps/v1/namespaces/default/deployments/strict").status_code == 404
    assert_still_serving(api)


# -- resources and paths ------------------------------------------------------------------------------------


def test_unknown_resource(kubectl: Kubectl, api: httpx.Client) -> None:
    """`kubectl get foos` fails on discovery; a raw request to an unknown resource path is a 404 Status."""
    err = kubectl.fails("get", "foos")
    assert err.strip().splitlines()[-1] == 'error: the server doesn\'t have a resource type "foos"'
    response = api.get("/api/v1/foos")
    status = status_of(response)
    assert response.status_code == 404 and status["reason"] == "NotFound"
    assert status["message"] == "the server could not find the requested resource"
    assert_still_serving(api)


def test_create_in_missing_namespace(api: httpx.Client) -> None:
    """Creating into a namespace that does not exist: 404 naming the namespace, as the NamespaceLifecycle
    admission plugin answers."""
    response = api.post(
        "/api/v1/namespaces/no-such-namespace/configmaps",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "orphan"}},
    )
    assert status_of(response) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'namespaces "no-such-namespace" not found',
        "reason": "NotFound",
        "details": {"name": "no-such-namespace", "kind": "namespaces"},
        "code": 404,
    }
    assert_still_serving(api)


# -- authentication -----------------------------------------------------------------------------------------


def test_wrong_token(kubectl: Kubectl, clusters: LocalClusters, api: httpx.Client, tmp_path: Path) -> None:
    """A kubeconfig copy with a wrong token: kubectl says 'You must be logged in to the server'; raw: 401.

    What kubectl puts in parentheses depends on which request meets the 401 first, as against kube-apiserver:
    with no discovery cache it is discovery, which client-go reads raw (its generic 401 text); with discovery
    cached it is the list itself, whose Status message ("Unauthorized") kubectl prints.
    """
    config = clusters.kubeconfig_data()
    for user in config["users"]:
        user["user"]["token"] = "not-the-right-token"
    bad_kubeconfig = tmp_path / "kubeconfig"
    bad_kubeconfig.write_text(yaml.safe_dump(config))

    fresh = Kubectl(bad_kubeconfig, tmp_path / "fresh-cache").fails("get", "configmaps")
    assert fresh.strip().splitlines()[-1] == (
        "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
    )
    kubectl("get", "configmaps")  # the good kubeconfig fills the shared discovery cache ...
    cached = Kubectl(bad_kubeconfig, kubectl.cache_dir).fails("get", "configmaps")
    # ... so with the wrong token only the list request is made, and its 401 Status is what kubectl shows.
    assert cached.strip().splitlines()[-1] == "error: You must be logged in to the server (Unauthorized)"

    with http_client(clusters, "not-the-right-token") as wrong:
        response = wrong.get("/api/v1/namespaces/default/configmaps")
    assert status_of(response) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert_still_serving(api)


def test_missing_token_is_anonymous(clusters: LocalClusters, api: httpx.Client) -> None:
    """No token: the request is system:anonymous, which may read /version but not resources (403)."""
    with http_client(clusters, None) as anonymous:
        version = anonymous.get("/version")
        resources = anonymous.get("/api/v1/namespaces/default/configmaps")
        discovery = anonymous.get("/api")
    # system:public-info-viewer lets anyone read the version.
    assert version.status_code == 200 and version.json()["major"] == "1"
    status = status_of(resources)
    assert resources.status_code == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'configmaps is forbidden: User "system:anonymous" cannot list resource "configmaps" in API group "" '
        'in the namespace "default"'
    )
    assert status["details"] == {"kind": "configmaps"}
    # discovery is for authenticated users only (system:discovery).
    assert discovery.status_code == 403
    assert status_of(discovery)["message"] == 'forbidden: User "system:anonymous" cannot get path "/api"'
    assert_still_serving(api)


def test_non_bearer_authorization_is_anonymous(clusters: LocalClusters, api: httpx.Client) -> None:
    """An Authorization header that is not a bearer token (here Basic) is ignored by kube-apiserver's token
    authenticator, so the request is anonymous: 403 Forbidden, not 401."""
    with http_client(clusters, None) as client:
        response = client.get(
            "/api/v1/namespaces/default/configmaps",
            headers={"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()},
        )
    status = status_of(response)
    assert response.status_code == 403 and status["reason"] == "Forbidden"
    assert 'User "system:anonymous" cannot list resource "configmaps"' in status["message"]
    assert_still_serving(api)


# -- watch --------------------------------------------------------------------------------------------------


def test_watch_with_bogus_resource_version(api: httpx.Client) -> None:
    """`watch` from resourceVersion=abc is refused before any stream starts.

    kube-apiserver 1.32: the watch cache's ParseResourceVersion fails with a storage InvalidError, which is
    not an API status, so the handler answers 500 with no reason and the field error as its message.
    """
    response = api.get(
        "/api/v1/namespaces/default/configmaps", params={"watch": "true", "resourceVersion": "abc"}
    )
    assert status_of(response) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax',
        "code": 500,
    }
    assert_still_serving(api)


def test_watch_with_too_old_resource_version(api: httpx.Client) -> None:
    """A watch from a version older than the watch history: HTTP 200, then one ERROR event carrying a 410
    Expired Status (how client-go and lightkube learn to relist), then the stream ends."""
    for i in range(3):  # make sure the cluster's history has moved well past version 1
        create_config_map(api, f"history-{i}", {"i": str(i)})
    with api.stream(
        "GET",
        "/api/v1/namespaces/default/configmaps",
        params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "5"},
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.strip()]
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    status = event["object"]
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1", "Failure")
    assert (status["code"], status["reason"]) == (410, "Expired")
    assert status["message"].startswith("too old resource version: 1 (")
    assert_still_serving(api)


# -- writes -------------------------------------------------------------------------------------------------


def test_stale_update_conflicts(api: httpx.Client) -> None:
    """PUT with the resourceVersion of an older read: 409 Conflict, Kubernetes' optimistic-concurrency message."""
    first = create_config_map(api, "stale", {"v": "1"})
    newer = dict(first, data={"v": "2"})
    updated = api.put("/api/v1/namespaces/default/configmaps/stale", json=newer)
    assert updated.status_code == 200, updated.text
    older = dict(first, data={"v": "3"})  # still carries the first resourceVersion
    response = api.put("/api/v1/namespaces/default/configmaps/stale", json=older)
    assert status_of(response) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on configmaps "stale": the object has been modified; please '
        "apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "stale", "kind": "configmaps"},
        "code": 409,
    }
    current = api.get("/api/v1/namespaces/default/configmaps/stale").json()
    assert current["data"] == {"v": "2"}  # the stale write changed nothing
    assert_still_serving(api)


def test_status_subresource_ignores_spec(api: httpx.Client) -> None:
    """Writes to /status change only status (spec, labels and generation stay); writes to the object itself
    ignore status. On a PodDisruptionBudget: no controller of the local cluster writes those (a workload
    controller would race the test's writes)."""
    path = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/status-demo"
    manifest = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "status-demo"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "status-demo"}}},
    }
    created = api.post("/apis/policy/v1/namespaces/default/poddisruptionbudgets", json=manifest)
    assert created.status_code == 201, created.text
    budget = created.json()
    assert budget["metadata"]["generation"] == 1

    status = {
        "observedGeneration": 1,
        "currentHealthy": 1,
        "desiredHealthy": 1,
        "disruptionsAllowed": 0,
        "expectedPods": 1,
    }
    budget["spec"]["minAvailable"] = 5
    budget["metadata"]["labels"] = {"changed": "by-status-write"}
    budget["status"] = status
    response = api.put(f"{path}/status", json=budget)
    assert response.status_code == 200, response.text
    after_status = response.json()
    assert after_status["status"] == status
    assert after_status["spec"]["minAvailable"] == 1  # the spec change was ignored ...
    assert "labels" not in after_status["metadata"]  # ... and so was the label change
    assert after_status["metadata"]["generation"] == 1

    patched = api.patch(
        f"{path}/status",
        content=json.dumps({"spec": {"minAvailable": 9}, "status": {"currentHealthy": 2}}).encode(),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["minAvailable"] == 1 and patched.json()["status"]["currentHealthy"] == 2

    main = dict(after_status, status=dict(status, currentHealthy=42))
    main["spec"] = dict(after_status["spec"], minAvailable=3)
    main["metadata"] = dict(patched.json()["metadata"])
    replaced = api.put(path, json=main)
    assert replaced.status_code == 200, replaced.text
    # the main resource takes the spec change (generation moves) but keeps the status it had.
    assert replaced.json()["spec"]["minAvailable"] == 3 and replaced.json()["metadata"]["generation"] == 2
    assert replaced.json()["status"]["currentHealthy"] == 2
    assert_still_serving(api)


# -- selectors ----------------------------------------------------------------------------------------------


def test_label_selector_with_bad_syntax(api: httpx.Client) -> None:
    """An unterminated set in a label selector: 400 BadRequest with labels.Parse's message."""
    response = api.get("/api/v1/namespaces/default/configmaps", params={"labelSelector": "app in (web"})
    status = status_of(response)
    assert response.status_code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == "unable to parse requirement: found '', expected: ',' or ')'"
    assert_still_serving(api)


def test_unsupported_field_selector_on_pods(api: httpx.Client) -> None:
    """A field selector pods do not support: 400 'field label not supported' (the Pod conversion function)."""
    response = api.get("/api/v1/namespaces/default/pods", params={"fieldSelector": "spec.foo=bar"})
    status = status_of(response)
    assert response.status_code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == "field label not supported: spec.foo"
    assert_still_serving(api)


def test_unsupported_field_selector_on_configmaps(api: httpx.Client) -> None:
    """ConfigMaps register no field-label conversion, so kube-apiserver answers with the default one's
    message (runtime.DefaultMetaV1FieldSelectorConversion), not 'field label not supported'."""
    response = api.get("/api/v1/namespaces/default/configmaps", params={"fieldSelector": "spec.foo=bar"})
    status = status_of(response)
    assert response.status_code == 400 and status["reason"] == "BadRequest"
    assert status["message"] == (
        '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
    assert_still_serving(api)
