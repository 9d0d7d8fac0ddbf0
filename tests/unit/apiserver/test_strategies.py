"""Per-kind rules on writes, as kube-apiserver's registry strategies apply them: Service ClusterIP and node
port allocation, workload and pod defaults, Deployment selector rules, Secret stringData, immutable fields,
Namespace and CRD rules. Driven through `Objects` where the rule involves the object's lifecycle (an address
freed on delete), directly otherwise."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest

from isthmus.local.apiserver.admission import AdmissionChain
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import Objects, Target, WriteOptions
from isthmus.local.apiserver.resources import ResourceRegistry
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.store import Store, copy_object
from isthmus.local.apiserver.strategies import (
    CRD_CLEANUP_FINALIZER,
    GenerationStrategy,
    Strategies,
    Strategy,
)

JsonObject = dict[str, Any]

CATALOG = SchemaCatalog.load()
ADMIN = UserInfo("admin", groups=("system:masters",))
SERVICE_CIDR = "10.96.0.0/24"  # a local cluster's size


def opts(**kw: Any) -> WriteOptions:
    return WriteOptions(user=ADMIN, field_manager="test", **kw)


async def new_objects(service_cidr: str = SERVICE_CIDR, store: Store | None = None) -> Objects:
    store = store or Store(None)
    objects = Objects(store, ResourceRegistry(), CATALOG, Strategies(store, service_cidr), AdmissionChain())
    if store.get(("", "namespaces"), "", "default") is None:
        await objects.create(target(objects, "", "namespaces"), {"metadata": {"name": "default"}}, opts())
    return objects


@pytest.fixture
async def objects() -> Objects:
    return await new_objects()


def target(objects: Objects, group: str, plural: str, namespace: str = "", name: str = "") -> Target:
    rt = objects.registry.get(group, plural)
    assert rt is not None
    return Target(rt, rt.storage_version, namespace, name)


def services(objects: Objects, name: str = "") -> Target:
    return target(objects, "", "services", "default", name)


def service(name: str = "web", cluster_ip: str | None = None, **spec: Any) -> JsonObject:
    body: JsonObject = {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}
    if cluster_ip is not None:
        body["spec"]["clusterIP"] = cluster_ip
    return body


async def create(objects: Objects, t: Target, body: JsonObject, **kw: Any) -> JsonObject:
    return (await objects.create(t, body, opts(**kw))).obj


async def refused(objects: Objects, t: Target, body: JsonObject) -> StatusError:
    with pytest.raises(StatusError) as excinfo:
        await objects.create(t, body, opts())
    return excinfo.value


def causes(error: StatusError) -> list[str]:
    return [f"{c.field}: {c.message}" for c in error.causes]


# -- Service: ClusterIP --------------------------------------------------------------------------------------


async def test_a_service_gets_a_cluster_ip_from_the_service_cidr_and_defaults(objects: Objects) -> None:
    created = await create(objects, services(objects), service())

    spec = created["spec"]
    ip = ipaddress.ip_address(spec["clusterIP"])
    network = ipaddress.ip_network(SERVICE_CIDR)
    assert ip in network and ip not in (network.network_address, network.broadcast_address)
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert created["status"] == {"loadBalancer": {}}


async def test_every_service_gets_its_own_cluster_ip(objects: Objects) -> None:
    ips = {
        (await create(objects, services(objects), service(f"s{i}")))["spec"]["clusterIP"] for i in range(20)
    }
    assert len(ips) == 20


async def test_a_requested_cluster_ip_is_used(objects: Objects) -> None:
    created = await create(objects, services(objects), service(cluster_ip="10.96.0.50"))
    assert created["spec"]["clusterIP"] == "10.96.0.50"
    assert created["spec"]["clusterIPs"] == ["10.96.0.50"]
    from_list = await create(objects, services(objects), service("b", clusterIPs=["10.96.0.51"]))
    assert from_list["spec"]["clusterIP"] == "10.96.0.51"


async def test_a_requested_cluster_ip_taken_twice_is_refused(objects: Objects) -> None:
    await create(objects, services(objects), service("a", cluster_ip="10.96.0.50"))

    error = await refused(objects, services(objects), service("b", cluster_ip="10.96.0.50"))

    assert (error.code, error.reason) == (422, "Invalid")
    assert [c.field for c in error.causes] == ["spec.clusterIPs"]
    assert "failed to allocate IP 10.96.0.50: provided IP is already allocated" in error.message
    assert objects.store.get(("", "services"), "default", "b") is None


async def test_the_ip_already_allocated_message_is_kubernetes(objects: Objects) -> None:
    """The Service REST allocator: `field.Invalid(spec.clusterIPs, service.Spec.ClusterIPs, ...)`, the value a
    Go []string printed with %#v: `Service "b" is invalid: spec.clusterIPs: Invalid value:
    []string{"10.96.0.50"}: failed to allocate IP 10.96.0.50: provided IP is already allocated`."""
    await create(objects, services(objects), service("a", cluster_ip="10.96.0.50"))

    error = await refused(objects, services(objects), service("b", cluster_ip="10.96.0.50"))

    assert error.message == (
        'Service "b" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.50"}: failed to allocate '
        "IP 10.96.0.50: provided IP is already allocated"
    )


async def test_a_requested_cluster_ip_outside_the_range_is_refused(objects: Objects) -> None:
    error = await refused(objects, services(objects), service(cluster_ip="10.0.0.5"))
    assert error.code == 422
    assert [c.field for c in error.causes] == ["spec.clusterIPs"]
    assert "is not in the valid range. The range of valid IPs is 10.96.0.0/24" in error.message


async def test_a_cluster_ip_is_released_when_its_service_is_deleted(objects: Objects) -> None:
    await create(objects, services(objects), service("a", cluster_ip="10.96.0.50"))
    await objects.delete(services(objects, "a"), {}, opts())

    again = await create(objects, services(objects), service("b", cluster_ip="10.96.0.50"))

    assert again["spec"]["clusterIP"] == "10.96.0.50"


async def test_a_refused_create_does_not_keep_its_cluster_ip(objects: Objects) -> None:
    """An IP allocated for a create that then fails validation (here: the name) is given back."""
    error = await refused(objects, services(objects), service("1-bad-name", cluster_ip="10.96.0.50"))
    assert error.code == 422

    created = await create(objects, services(objects), service("good", cluster_ip="10.96.0.50"))
    assert created["spec"]["clusterIP"] == "10.96.0.50"


async def test_a_dry_run_create_does_not_keep_its_cluster_ip(objects: Objects) -> None:
    dry = await create(objects, services(objects), service("a", cluster_ip="10.96.0.50"), dry_run=True)
    assert dry["spec"]["clusterIP"] == "10.96.0.50"

    created = await create(objects, services(objects), service("b", cluster_ip="10.96.0.50"))
    assert created["spec"]["clusterIP"] == "10.96.0.50"


async def test_cluster_ips_in_use_are_known_after_a_restart() -> None:
    store = Store(None)
    first = await new_objects(store=store)
    await create(first, services(first), service("a", cluster_ip="10.96.0.50"))

    restarted = await new_objects(store=store)  # new strategies over the same stored objects
    error = await refused(restarted, services(restarted), service("b", cluster_ip="10.96.0.50"))

    assert error.code == 422
    assert "provided IP is already allocated" in error.message


async def test_a_headless_service_gets_no_cluster_ip(objects: Objects) -> None:
    created = await create(
        objects, services(objects), {"metadata": {"name": "db"}, "spec": {"clusterIP": "None"}}
    )
    assert created["spec"]["clusterIP"] == "None"
    assert created["spec"]["clusterIPs"] == ["None"]


async def test_an_external_name_service_gets_no_cluster_ip(objects: Objects) -> None:
    body = {"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}
    created = await create(objects, services(objects), body)
    assert "clusterIP" not in created["spec"]


async def test_the_cluster_ip_is_immutable(objects: Objects) -> None:
    """ValidateServiceUpdate: the ClusterIP may not change once set (`spec.clusterIPs[0]: ... may not change
    once set`); an update that leaves it out keeps it (kubectl replace of a manifest without clusterIP)."""
    created = await create(objects, services(objects), service(cluster_ip="10.96.0.50"))
    t = services(objects, "web")

    changed = copy_object(created)
    changed["spec"]["clusterIP"] = "10.96.0.60"
    changed["spec"]["clusterIPs"] = ["10.96.0.60"]
    with pytest.raises(StatusError) as excinfo:
        await objects.update(t, changed, opts())
    assert excinfo.value.code == 422
    assert [c.field for c in excinfo.value.causes] == ["spec.clusterIPs[0]"]
    assert "may not change once set" in excinfo.value.message

    replaced = await objects.update(t, service(ports=[{"port": 8080}]), opts())
    assert replaced.obj["spec"]["clusterIP"] == "10.96.0.50"
    assert replaced.obj["spec"]["clusterIPs"] == ["10.96.0.50"]


async def test_running_out_of_cluster_ips_is_an_internal_error() -> None:
    """When the range is full the allocator's AllocateNext fails and kube-apiserver answers 500
    `Internal error occurred: failed to allocate a serviceIP: range is full`."""
    objects = await new_objects("10.0.0.0/29")
    for i in range(8):
        try:
            await create(objects, services(objects), service(f"s{i}"))
        except StatusError as exc:
            error = exc
            break
    else:
        pytest.fail("a /29 never ran out of addresses")

    assert (error.code, error.reason) == (500, "InternalError")
    assert error.message == "Internal error occurred: failed to allocate a serviceIP: range is full"


async def test_node_ports_are_allocated_and_kept(objects: Objects) -> None:
    body = service(type="NodePort", ports=[{"name": "http", "port": 80}, {"name": "https", "port": 443}])
    created = await create(objects, services(objects), body)

    ports = [p["nodePort"] for p in created["spec"]["ports"]]
    assert all(30000 <= p <= 32767 for p in ports) and len(set(ports)) == 2
    assert created["spec"]["externalTrafficPolicy"] == "Cluster"

    update = copy_object(created)
    for port in update["spec"]["ports"]:
        del port["nodePort"]
    updated = await objects.update(services(objects, "web"), update, opts())
    assert [p["nodePort"] for p in updated.obj["spec"]["ports"]] == ports


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"ports": [{"port": 0}]},
            ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"],
        ),
        ({"ports": []}, ["spec.ports: Required value"]),
        (
            {"ports": [{"port": 80}, {"port": 443}]},
            ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"],
        ),
        (
            {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 443}]},
            ['spec.ports[1].name: Duplicate value: "a"'],
        ),
        (
            {"type": "Weird", "ports": [{"port": 80}]},
            [
                'spec.type: Unsupported value: "Weird": supported values: "ClusterIP", "ExternalName", '
                '"LoadBalancer", "NodePort"'
            ],
        ),
    ],
    ids=["port-0", "no-ports", "two-unnamed-ports", "duplicate-port-names", "unknown-type"],
)
async def test_service_validation(objects: Objects, spec: JsonObject, expected: list[str]) -> None:
    error = await refused(objects, services(objects), {"metadata": {"name": "web"}, "spec": spec})
    assert error.code == 422
    assert causes(error) == expected


# -- workloads -----------------------------------------------------------------------------------------------


def deployments(objects: Objects, name: str = "") -> Target:
    return target(objects, "apps", "deployments", "default", name)


def deployment(
    selector: JsonObject | None = None, labels: dict[str, str] | None = None, **spec: Any
) -> JsonObject:
    return {
        "metadata": {"name": "web"},
        "spec": {
            "selector": selector if selector is not None else {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": labels if labels is not None else {"app": "web"}},
                "spec": {
                    "containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]
                },
            },
            **spec,
        },
    }


async def test_deployment_defaults(objects: Objects) -> None:
    """SetDefaults_Deployment and the PodSpec defaults of its template, as `kubectl get -o yaml` shows them."""
    created = await create(objects, deployments(objects), deployment())

    spec = created["spec"]
    assert spec["replicas"] == 1
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["dnsPolicy"] == "ClusterFirst"
    assert pod["schedulerName"] == "default-scheduler"
    assert pod["securityContext"] == {}
    (container,) = pod["containers"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert created["status"] == {}


async def test_explicit_values_are_not_overwritten_by_defaults(objects: Objects) -> None:
    body = deployment(replicas=0, strategy={"type": "Recreate"})
    body["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    body["spec"]["template"]["spec"]["dnsPolicy"] = "Default"

    created = await create(objects, deployments(objects), body)

    assert created["spec"]["replicas"] == 0
    assert created["spec"]["strategy"] == {"type": "Recreate"}
    assert created["spec"]["template"]["spec"]["dnsPolicy"] == "Default"


async def test_a_selector_that_does_not_match_the_template_is_refused(objects: Objects) -> None:
    error = await refused(objects, deployments(objects), deployment(labels={"app": "other"}))

    assert (error.code, error.reason) == (422, "Invalid")
    assert [c.field for c in error.causes] == ["spec.template.metadata.labels"]
    assert "`selector` does not match template `labels`" in error.message
    assert objects.store.get(("apps", "deployments"), "default", "web") is None


async def test_the_selector_mismatch_message_is_kubernetes(objects: Objects) -> None:
    """ValidateDeploymentSpec: `field.Invalid(.., template.Labels, ..)`, the Go map printed with %#v:
    `Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value:
    map[string]string{"app":"other"}: `selector` does not match template `labels``."""
    error = await refused(objects, deployments(objects), deployment(labels={"app": "other"}))

    assert error.message == (
        'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: '
        'map[string]string{"app":"other"}: `selector` does not match template `labels`'
    )


async def test_an_empty_selector_is_refused(objects: Objects) -> None:
    error = await refused(objects, deployments(objects), deployment(selector={}))
    assert error.code == 422
    assert [c.field for c in error.causes] == ["spec.selector"]
    assert "empty selector is invalid for deployment" in error.message


async def test_match_expressions_select_the_template(objects: Objects) -> None:
    selector = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}
    created = await create(objects, deployments(objects), deployment(selector=selector))
    assert created["spec"]["selector"] == selector


async def test_the_selector_is_immutable(objects: Objects) -> None:
    """apps/v1: `spec.selector: Invalid value: ...: field is immutable`."""
    created = await create(objects, deployments(objects), deployment())
    body = copy_object(created)
    body["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "front"}}
    body["spec"]["template"]["metadata"]["labels"] = {"app": "web", "tier": "front"}

    with pytest.raises(StatusError) as excinfo:
        await objects.update(deployments(objects, "web"), body, opts())

    assert excinfo.value.code == 422
    assert [c.field for c in excinfo.value.causes] == ["spec.selector"]
    assert "field is immutable" in excinfo.value.message


async def test_statefulset_and_daemonset_defaults(objects: Objects) -> None:
    sts = deployment(serviceName="web")
    created = await create(objects, target(objects, "apps", "statefulsets", "default"), sts)
    assert created["spec"]["podManagementPolicy"] == "OrderedReady"
    assert created["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert created["spec"]["replicas"] == 1 and created["spec"]["revisionHistoryLimit"] == 10

    ds = await create(objects, target(objects, "apps", "daemonsets", "default"), deployment())
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    assert "replicas" not in ds["spec"]


def job(restart_policy: str | None) -> JsonObject:
    pod: JsonObject = {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}]}
    if restart_policy is not None:
        pod["restartPolicy"] = restart_policy
    return {"metadata": {"name": "once"}, "spec": {"template": {"spec": pod}}}


async def test_job_defaults(objects: Objects) -> None:
    created = await create(objects, target(objects, "batch", "jobs", "default"), job("Never"))

    spec = created["spec"]
    assert (spec["backoffLimit"], spec["completions"], spec["parallelism"]) == (6, 1, 1)
    assert spec["completionMode"] == "NonIndexed" and spec["suspend"] is False
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


async def test_a_job_needs_a_restart_policy_of_never_or_on_failure(objects: Objects) -> None:
    """The pod template of a Job gets PodSpec's default restartPolicy `Always`, which ValidateJobSpec refuses:
    `Job.batch "once" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported
    values: "OnFailure", "Never"` (a common first mistake with Jobs; a real cluster refuses it)."""
    t = target(objects, "batch", "jobs", "default")
    for policy in (None, "Always"):
        with pytest.raises(StatusError) as excinfo:
            await objects.create(t, job(policy), opts())
        assert excinfo.value.code == 422
        assert excinfo.value.message == (
            'Job.batch "once" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": '
            'supported values: "OnFailure", "Never"'
        )


# -- pods ----------------------------------------------------------------------------------------------------


async def test_pod_defaults_and_initial_status(objects: Objects) -> None:
    body = {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {"name": "a", "image": "nginx"},
                {"name": "b", "image": "nginx:latest"},
                {"name": "c", "image": "nginx:1.27"},
                {"name": "d", "image": "registry.local:5000/nginx"},
                {"name": "e", "image": "nginx@sha256:" + "0" * 64},
                {
                    "name": "f",
                    "image": "nginx:1.27",
                    "readinessProbe": {"httpGet": {"port": 80}},
                },
            ]
        },
    }

    created = await create(objects, target(objects, "", "pods", "default"), body)

    spec = created["spec"]
    assert spec["restartPolicy"] == "Always" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    assert spec["enableServiceLinks"] is True
    # imagePullPolicy: Always for no tag or :latest, IfNotPresent otherwise (a registry port is not a tag).
    assert [c["imagePullPolicy"] for c in spec["containers"]] == [
        "Always",
        "Always",
        "IfNotPresent",
        "Always",
        "IfNotPresent",
        "IfNotPresent",
    ]
    assert spec["containers"][5]["readinessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert created["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


# -- secrets and configmaps ----------------------------------------------------------------------------------


def secrets(objects: Objects, name: str = "") -> Target:
    return target(objects, "", "secrets", "default", name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_secret_string_data_is_merged_into_data(objects: Objects) -> None:
    """stringData is write-only: its values are base64-encoded into data, overriding keys data also has."""
    body = {
        "metadata": {"name": "creds"},
        "data": {"user": b64("old"), "keep": b64("k")},
        "stringData": {"user": "admin", "password": "s3cr=t"},
    }

    created = await create(objects, secrets(objects), body)

    assert created["data"] == {"user": b64("admin"), "keep": b64("k"), "password": b64("s3cr=t")}
    assert "stringData" not in created
    assert created["type"] == "Opaque"
    stored = objects.store.get(("", "secrets"), "default", "creds")
    assert stored is not None and "stringData" not in stored.obj

    update = copy_object(created)
    update["stringData"] = {"user": "root"}
    updated = await objects.update(secrets(objects, "creds"), update, opts())
    assert updated.obj["data"]["user"] == b64("root") and "stringData" not in updated.obj


async def test_secret_type_is_immutable(objects: Objects) -> None:
    created = await create(objects, secrets(objects), {"metadata": {"name": "s"}, "data": {}})
    body = copy_object(created)
    body["type"] = "kubernetes.io/tls"

    with pytest.raises(StatusError) as excinfo:
        await objects.update(secrets(objects, "s"), body, opts())

    assert excinfo.value.code == 422
    assert causes(excinfo.value) == ['type: Invalid value: "kubernetes.io/tls": field is immutable']


async def test_immutable_secrets_and_configmaps_keep_their_data(objects: Objects) -> None:
    """`immutable: true`: `data: Forbidden: field is immutable when `immutable` is set`."""
    secret = await create(
        objects, secrets(objects), {"metadata": {"name": "s"}, "data": {"a": b64("1")}, "immutable": True}
    )
    body = copy_object(secret)
    body["data"] = {"a": b64("2")}
    with pytest.raises(StatusError) as excinfo:
        await objects.update(secrets(objects, "s"), body, opts())
    assert causes(excinfo.value) == ["data: Forbidden: field is immutable when `immutable` is set"]

    cms = target(objects, "", "configmaps", "default")
    cm = await create(objects, cms, {"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": True})
    body = copy_object(cm)
    body["data"] = {"a": "2"}
    with pytest.raises(StatusError) as excinfo:
        await objects.update(target(objects, "", "configmaps", "default", "c"), body, opts())
    assert causes(excinfo.value) == ["data: Forbidden: field is immutable when `immutable` is set"]

    body = copy_object(cm)
    body["metadata"]["labels"] = {"x": "y"}  # metadata may still change
    await objects.update(target(objects, "", "configmaps", "default", "c"), body, opts())


async def test_invalid_data_keys_are_reported_per_key(objects: Objects) -> None:
    """ValidateConfigMap and ValidateSecret report a bad key at `data[<key>]`:
    `data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters,
    '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is
    '[-._a-zA-Z0-9]+')`."""
    cms = target(objects, "", "configmaps", "default")
    error = await refused(objects, cms, {"metadata": {"name": "c"}, "data": {"bad key": "v", "ok": "v"}})

    assert error.code == 422
    assert causes(error) == [
        'data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '
        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        "'[-._a-zA-Z0-9]+')"
    ]


async def test_valid_data_keys(objects: Objects) -> None:
    cms = target(objects, "", "configmaps", "default")
    created = await create(
        objects, cms, {"metadata": {"name": "c"}, "data": {"app.yaml": "", "KEY_1": "", "-x.y_z": ""}}
    )
    assert set(created["data"]) == {"app.yaml", "KEY_1", "-x.y_z"}


# -- namespaces ----------------------------------------------------------------------------------------------


async def test_namespaces_get_their_name_label_finalizer_and_phase(objects: Objects) -> None:
    t = target(objects, "", "namespaces")
    created = await create(objects, t, {"metadata": {"name": "team", "labels": {"env": "dev"}}})

    assert created["metadata"]["labels"] == {"env": "dev", "kubernetes.io/metadata.name": "team"}
    assert created["spec"] == {"finalizers": ["kubernetes"]}
    assert created["status"] == {"phase": "Active"}

    body = copy_object(created)
    body["metadata"]["labels"] = {"kubernetes.io/metadata.name": "other"}
    updated = await objects.update(target(objects, "", "namespaces", "", "team"), body, opts())
    assert updated.obj["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}


# -- CustomResourceDefinitions -------------------------------------------------------------------------------


def crd(name: str = "widgets.example.com", group: str = "example.com", plural: str = "widgets") -> JsonObject:
    return {
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": plural},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


async def test_a_crd_gets_the_cleanup_finalizer_and_an_initial_status(objects: Objects) -> None:
    t = target(objects, "apiextensions.k8s.io", "customresourcedefinitions")
    created = await create(objects, t, crd())

    assert created["metadata"]["finalizers"] == [CRD_CLEANUP_FINALIZER]
    assert created["status"]["storedVersions"] == []
    assert created["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            crd(name="widgets"),
            ['metadata.name: Invalid value: "widgets": must be spec.names.plural+"."+spec.group'],
        ),
        (
            crd(name="widgets.example", group="example"),
            ['spec.group: Invalid value: "example": should be a domain with at least one dot'],
        ),
    ],
)
async def test_crd_naming_rules(objects: Objects, body: JsonObject, expected: list[str]) -> None:
    t = target(objects, "apiextensions.k8s.io", "customresourcedefinitions")
    error = await refused(objects, t, body)
    assert error.code == 422
    assert causes(error) == expected


# -- which strategy ------------------------------------------------------------------------------------------


def test_custom_resources_track_generation_and_plain_kinds_do_not() -> None:
    strategies = Strategies(Store(None), SERVICE_CIDR)

    assert isinstance(strategies.get("example.com", "widgets", True), GenerationStrategy)
    assert strategies.get("example.com", "widgets", True).tracks_generation
    assert not strategies.get("", "configmaps", False).tracks_generation
    assert strategies.get("apps", "deployments", False).tracks_generation
    assert strategies.get("batch", "cronjobs", False).tracks_generation
    default = strategies.get("coordination.k8s.io", "leases", False)
    assert type(default) is Strategy and not default.tracks_generation
