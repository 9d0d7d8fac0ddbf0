"""Tables as kube-apiserver 1.32 renders them for `kubectl get`: columns, cells, row objects, metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.resources import BUILTIN_TYPES, ResourceType, crd_resource_type
from isthmus.local.apiserver.tables import human_duration, table

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
TYPES = {(rt.group, rt.kind): rt for rt in BUILTIN_TYPES}


def ago(seconds: float) -> str:
    t = NOW - timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, age: float = 3600, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(age), **extra}


def rt_of(kind: str, group: str = "") -> ResourceType:
    return TYPES[(group, kind)]


def render(rt: ResourceType, *objects: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return table(rt, rt.storage_version, list(objects), kwargs.pop("include_object", ""), NOW, **kwargs)


def cells(kind: str, obj: dict[str, Any], group: str = "") -> list[Any]:
    rows = render(rt_of(kind, group), obj)["rows"]
    assert len(rows) == 1
    return list(rows[0]["cells"])


def column_names(rt: ResourceType, version: str | None = None) -> list[tuple[str, int]]:
    result = table(rt, version or rt.storage_version, [], "", NOW)
    return [(c["name"], c["priority"]) for c in result["columnDefinitions"]]


# ---------------------------------------------------------------------------------------------------------
# HumanDuration


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=-1.5), "0s"),  # Go truncates toward zero: -1
        (timedelta(seconds=-1), "0s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=1.999), "1s"),
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(seconds=120), "2m"),
        (timedelta(seconds=200), "3m20s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=10, seconds=59), "10m"),
        (timedelta(minutes=179, seconds=59), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=1), "3h1m"),
        (timedelta(hours=7, minutes=59, seconds=59), "7h59m"),
        (timedelta(hours=8), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=2, hours=3), "2d3h"),
        (timedelta(days=7, hours=23, minutes=59), "7d23h"),
        (timedelta(days=8), "8d"),
        (timedelta(days=729, hours=23), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=731), "2y1d"),
        (timedelta(days=365 * 8, hours=-1), "7y364d"),
        (timedelta(days=365 * 8), "8y"),
        (timedelta(days=365 * 10 + 100), "10y"),
    ],
)
def test_human_duration_boundaries(delta: timedelta, expected: str) -> None:
    assert human_duration(delta) == expected


# ---------------------------------------------------------------------------------------------------------
# Table envelope: metadata, headers, row objects


def test_list_table_envelope_and_list_metadata() -> None:
    ns = {"metadata": meta("team-a", resourceVersion="41"), "status": {"phase": "Active"}}
    result = render(
        rt_of("Namespace"),
        ns,
        list_meta={"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3},
    )
    assert result["kind"] == "Table"
    assert result["apiVersion"] == "meta.k8s.io/v1"
    assert result["metadata"] == {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 3}
    assert [c["name"] for c in result["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert result["rows"][0]["cells"] == ["team-a", "Active", "60m"]


def test_single_object_table_takes_the_object_resource_version() -> None:
    ns = {"metadata": meta("team-a", resourceVersion="41")}
    assert render(rt_of("Namespace"), ns)["metadata"] == {"resourceVersion": "41"}
    assert render(rt_of("Namespace"), ns, list_meta={})["metadata"] == {}


def test_column_definition_fields() -> None:
    columns = render(rt_of("Pod"))["columnDefinitions"]
    assert columns[0] == {
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": columns[0]["description"],
        "priority": 0,
    }
    assert columns[0]["description"].startswith("Name must be unique within a namespace.")
    assert columns[4]["name"] == "Age"
    assert columns[4]["description"].startswith("CreationTimestamp is a timestamp representing")
    assert columns[5] == {
        "name": "IP",
        "type": "string",
        "format": "",
        "description": "podIP address allocated to the pod. Routable at least within the cluster. "
        "Empty if not yet allocated.",
        "priority": 1,
    }


def test_no_headers_for_later_watch_events() -> None:
    result = render(rt_of("Namespace"), {"metadata": meta("a")}, no_headers=True)
    assert result["columnDefinitions"] is None
    assert result["rows"][0]["cells"][0] == "a"


@pytest.mark.parametrize("include_object", ["", "Metadata"])
def test_rows_carry_partial_object_metadata_by_default(include_object: str) -> None:
    metadata = meta("cm", labels={"app": "web"}, resourceVersion="5")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"a": "1"}}
    row = render(rt_of("ConfigMap"), cm, include_object=include_object)["rows"][0]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    }


def test_include_object_object_and_none() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cm"), "data": {"a": "1"}}
    assert render(rt_of("ConfigMap"), cm, include_object="Object")["rows"][0]["object"] == cm
    row = render(rt_of("ConfigMap"), cm, include_object="None")["rows"][0]
    assert "object" in row
    assert row["object"] is None


def test_unknown_include_object_is_a_bad_request() -> None:
    with pytest.raises(StatusError) as caught:
        render(rt_of("ConfigMap"), {"metadata": meta("cm")}, include_object="Everything")
    assert caught.value.code == 400
    assert caught.value.message == 'unrecognized includeObject value: "Everything"'


def test_naive_now_is_utc() -> None:
    rt = rt_of("Namespace")
    naive = table(rt, "v1", [{"metadata": meta("a", age=90)}], "", NOW.replace(tzinfo=None))
    assert naive["rows"][0]["cells"][2] == "90s"


@pytest.mark.parametrize("rt", BUILTIN_TYPES, ids=lambda rt: f"{rt.group or 'core'}/{rt.kind}")
@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"metadata": None, "spec": [], "status": "x"},
        {
            "metadata": {"name": 3, "creationTimestamp": "yesterday"},
            "spec": {"containers": "x", "ports": [1]},
        },
    ],
)
def test_every_kind_survives_partial_objects_with_a_cell_per_column(
    rt: ResourceType, obj: dict[str, Any]
) -> None:
    result = render(rt, obj)
    assert len(result["rows"][0]["cells"]) == len(result["columnDefinitions"])


# ---------------------------------------------------------------------------------------------------------
# Pods


def container_status(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": f"{name}:1", "restartCount": 0, "ready": False, **fields}


def test_pod_columns() -> None:
    assert column_names(rt_of("Pod")) == [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]


def test_running_pod_two_of_two_ready_with_a_recent_restart() -> None:
    pod = {
        "metadata": meta("web-7d4b9", age=3 * 86400 + 4 * 3600),
        "spec": {
            "nodeName": "node-1",
            "containers": [{"name": "app"}, {"name": "proxy"}],
            "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.7",
            "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "example.com/lb", "status": "True"},
                {"type": "example.com/dns", "status": "False"},
            ],
            "containerStatuses": [
                container_status(
                    "app",
                    ready=True,
                    restartCount=2,
                    state={"running": {"startedAt": ago(300)}},
                    lastState={"terminated": {"exitCode": 1, "finishedAt": ago(301)}},
                ),
                container_status("proxy", ready=True, state={"running": {}}),
            ],
        },
    }
    assert cells("Pod", pod) == [
        "web-7d4b9",
        "2/2",
        "Running",
        "2 (5m1s ago)",
        "3d4h",
        "10.244.1.7",
        "node-1",
        "<none>",
        "1/2",
    ]


def test_pod_waiting_on_err_image_pull() -> None:
    pod = {
        "metadata": meta("api"),
        "spec": {"containers": [{"name": "api"}]},
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                container_status("api", state={"waiting": {"reason": "ErrImagePull", "message": "not found"}})
            ],
        },
    }
    assert cells("Pod", pod)[:4] == ["api", "0/1", "ErrImagePull", "0"]


def test_pod_in_crash_loop_back_off_shows_restarts_and_when() -> None:
    pod = {
        "metadata": meta("worker"),
        "spec": {"containers": [{"name": "worker"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                container_status(
                    "worker",
                    restartCount=5,
                    state={"waiting": {"reason": "CrashLoopBackOff"}},
                    lastState={"terminated": {"exitCode": 2, "reason": "Error", "finishedAt": ago(150)}},
                )
            ],
        },
    }
    assert cells("Pod", pod)[1:4] == ["0/1", "CrashLoopBackOff", "5 (2m30s ago)"]


def test_restarts_without_a_termination_time_have_no_when() -> None:
    pod = {
        "metadata": meta("p"),
        "spec": {"containers": [{"name": "c"}]},
        "status": {"containerStatuses": [container_status("c", restartCount=3, state={"running": {}})]},
    }
    assert cells("Pod", pod)[3] == "3"


def init_pod(*init_statuses: dict[str, Any], count: int = 2) -> dict[str, Any]:
    return {
        "metadata": meta("init-demo"),
        "spec": {
            "initContainers": [{"name": f"init-{i}"} for i in range(count)],
            "containers": [{"name": "main"}],
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "False"}],
            "initContainerStatuses": list(init_statuses),
            "containerStatuses": [container_status("main", state={"waiting": {"reason": "PodInitializing"}})],
        },
    }


def test_init_container_progress() -> None:
    done = container_status("init-0", state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    running = container_status("init-1", state={"running": {}})
    assert cells("Pod", init_pod(done, running))[1:3] == ["0/1", "Init:1/2"]
    waiting = container_status("init-0", state={"waiting": {"reason": "PodInitializing"}})
    assert cells("Pod", init_pod(waiting, count=1))[2] == "Init:0/1"


def test_init_container_failures() -> None:
    pulling = container_status("init-0", state={"waiting": {"reason": "ImagePullBackOff"}})
    assert cells("Pod", init_pod(pulling))[2] == "Init:ImagePullBackOff"
    failed = container_status(
        "init-0", restartCount=3, state={"terminated": {"exitCode": 1, "reason": "Error"}}
    )
    assert cells("Pod", init_pod(failed))[2:4] == ["Init:Error", "3"]
    no_reason = container_status("init-0", state={"terminated": {"exitCode": 137}})
    assert cells("Pod", init_pod(no_reason))[2] == "Init:ExitCode:137"
    signalled = container_status("init-0", state={"terminated": {"exitCode": 1, "signal": 9}})
    assert cells("Pod", init_pod(signalled))[2] == "Init:Signal:9"


def test_pod_initializing_after_init_containers_finished() -> None:
    done = [
        container_status(f"init-{i}", state={"terminated": {"exitCode": 0, "reason": "Completed"}})
        for i in (0, 1)
    ]
    pod = init_pod(*done)
    pod["status"]["conditions"] = [{"type": "Initialized", "status": "True"}]
    assert cells("Pod", pod)[1:3] == ["0/1", "PodInitializing"]


def test_started_sidecar_counts_towards_ready_containers() -> None:
    pod = {
        "metadata": meta("with-sidecar"),
        "spec": {
            "initContainers": [{"name": "log-shipper", "restartPolicy": "Always"}],
            "containers": [{"name": "main"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                container_status(
                    "log-shipper",
                    started=True,
                    ready=True,
                    restartCount=1,
                    state={"running": {}},
                    lastState={"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
                )
            ],
            "containerStatuses": [container_status("main", ready=True, state={"running": {}})],
        },
    }
    assert cells("Pod", pod)[1:4] == ["2/2", "Running", "1 (30s ago)"]


def test_crash_looping_sidecar_of_an_initialized_pod_still_counts_main_containers() -> None:
    pod = {
        "metadata": meta("with-sidecar"),
        "spec": {
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "main"}],
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [
                container_status(
                    "proxy",
                    started=False,
                    restartCount=3,
                    state={"waiting": {"reason": "CrashLoopBackOff"}},
                    lastState={"terminated": {"exitCode": 1, "finishedAt": ago(40)}},
                )
            ],
            "containerStatuses": [container_status("main", ready=True, state={"running": {}})],
        },
    }
    assert cells("Pod", pod)[1:4] == ["1/2", "Init:CrashLoopBackOff", "3 (40s ago)"]


def test_terminating_pod() -> None:
    pod = {
        "metadata": meta("old", deletionTimestamp=ago(10), deletionGracePeriodSeconds=30),
        "spec": {"containers": [{"name": "c"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [container_status("c", ready=True, state={"running": {}})],
        },
    }
    assert cells("Pod", pod)[1:3] == ["1/1", "Terminating"]
    pod["status"]["reason"] = "NodeLost"
    assert cells("Pod", pod)[2] == "Unknown"


def completed_pod(**status: Any) -> dict[str, Any]:
    return {
        "metadata": meta("job-x"),
        "spec": {"containers": [{"name": "c"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                container_status("c", state={"terminated": {"exitCode": 0, "reason": "Completed"}})
            ],
            **status,
        },
    }


def test_completed_pod_and_its_row_condition() -> None:
    row = render(rt_of("Pod"), completed_pod())["rows"][0]
    assert row["cells"][1:3] == ["0/1", "Completed"]
    assert row["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    deleted = completed_pod()
    deleted["metadata"]["deletionTimestamp"] = ago(1)
    assert cells("Pod", deleted)[2] == "Completed"


def test_failed_pod_row_condition_and_terminated_without_reason() -> None:
    pod = {
        "metadata": meta("crashed"),
        "spec": {"containers": [{"name": "c"}]},
        "status": {
            "phase": "Failed",
            "containerStatuses": [container_status("c", state={"terminated": {"exitCode": 3}})],
        },
    }
    row = render(rt_of("Pod"), pod)["rows"][0]
    assert row["cells"][2] == "ExitCode:3"
    assert row["conditions"] == [
        {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
    ]
    running_row = render(rt_of("Pod"), {"metadata": meta("r"), "status": {"phase": "Running"}})["rows"][0]
    assert "conditions" not in running_row


def test_completed_container_next_to_a_running_one() -> None:
    pod = {
        "metadata": meta("mixed"),
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                container_status("a", ready=True, state={"running": {}}),
                container_status("b", state={"terminated": {"exitCode": 0, "reason": "Completed"}}),
            ],
        },
    }
    assert cells("Pod", pod)[1:3] == ["1/2", "NotReady"]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cells("Pod", pod)[2] == "Running"


def test_scheduling_gated_and_status_less_pods() -> None:
    gated = {
        "metadata": meta("gated"),
        "spec": {"containers": [{"name": "c"}], "schedulingGates": [{"name": "example.com/quota"}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        },
    }
    assert cells("Pod", gated)[2] == "SchedulingGated"
    fresh = {"metadata": meta("fresh", age=4), "spec": {"containers": [{"name": "c"}]}}
    assert cells("Pod", fresh) == ["fresh", "0/1", "", "0", "4s", "<none>", "<none>", "<none>", "<none>"]


def test_pod_ip_falls_back_to_pod_ip_and_nominated_node() -> None:
    pod = {
        "metadata": meta("p"),
        "spec": {"containers": []},
        "status": {"phase": "Pending", "podIP": "10.0.0.9", "nominatedNodeName": "node-2"},
    }
    assert cells("Pod", pod)[5:8] == ["10.0.0.9", "<none>", "node-2"]


# ---------------------------------------------------------------------------------------------------------
# Services and endpoints


def test_cluster_ip_service_with_two_ports() -> None:
    svc = {
        "metadata": meta("kube-dns", age=86400 * 12),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
            "selector": {"k8s-app": "kube-dns", "app": "dns"},
        },
    }
    assert cells("Service", svc) == [
        "kube-dns",
        "ClusterIP",
        "10.96.0.10",
        "<none>",
        "53/UDP,53/TCP",
        "12d",
        "app=dns,k8s-app=kube-dns",
    ]
    assert column_names(rt_of("Service")) == [
        ("Name", 0),
        ("Type", 0),
        ("Cluster-IP", 0),
        ("External-IP", 0),
        ("Port(s)", 0),
        ("Age", 0),
        ("Selector", 1),
    ]


def test_headless_service() -> None:
    svc = {"metadata": meta("db"), "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}}
    assert cells("Service", svc) == ["db", "ClusterIP", "None", "<none>", "<none>", "60m", "<none>"]


def test_service_defaults_when_stored_undefaulted() -> None:
    svc = {"metadata": meta("web"), "spec": {"clusterIP": "10.96.3.4", "ports": [{"port": 80}]}}
    assert cells("Service", svc)[1:5] == ["ClusterIP", "10.96.3.4", "<none>", "80/TCP"]


def test_node_port_load_balancer_and_external_name_services() -> None:
    node_port = {
        "metadata": meta("np"),
        "spec": {
            "type": "NodePort",
            "clusterIPs": ["10.96.1.1"],
            "externalIPs": ["1.2.3.4"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
        },
    }
    assert cells("Service", node_port)[1:5] == ["NodePort", "10.96.1.1", "1.2.3.4", "80:30080/TCP"]
    lb = {"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.1.2"]}}
    assert cells("Service", lb)[3] == "<pending>"
    lb["status"] = {"loadBalancer": {"ingress": [{"hostname": "z.example.com"}, {"ip": "203.0.113.9"}]}}
    assert cells("Service", lb)[3] == "203.0.113.9,z.example.com"
    lb["spec"]["externalIPs"] = ["198.51.100.1"]
    assert cells("Service", lb)[3] == "203.0.113.9,z.example.com,198.51.100.1"
    external = {"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}}
    assert cells("Service", external)[1:4] == ["ExternalName", "<none>", "db.example.com"]


def test_endpoints_truncate_after_three() -> None:
    ep: dict[str, Any] = {
        "metadata": meta("web"),
        "subsets": [
            {
                "addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 5)],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ],
    }
    assert cells("Endpoints", ep) == ["web", "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 1 more...", "60m"]
    ep["subsets"][0]["ports"].append({"name": "metrics", "port": 9090})
    assert cells("Endpoints", ep)[1] == "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080 + 5 more..."


def test_endpoints_exactly_three_ipv6_headless_and_empty() -> None:
    three = {
        "metadata": meta("a"),
        "subsets": [
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]},
        ],
    }
    assert cells("Endpoints", three)[1] == "[fd00::1]:80,10.0.0.1,10.0.0.2"
    assert cells("Endpoints", {"metadata": meta("none")})[1] == "<none>"
    assert cells("Endpoints", {"metadata": meta("x"), "subsets": [{"ports": [{"port": 80}]}]})[1] == ""


def test_endpoint_slices() -> None:
    eps = {
        "metadata": meta("web-abc12"),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80}, {"name": "named"}, {}, {"port": 9090}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}],
    }
    assert cells("EndpointSlice", eps, "discovery.k8s.io") == [
        "web-abc12",
        "IPv4",
        "80,named,* + 1 more...",
        "10.0.0.1,10.0.0.2,10.0.0.3",
        "60m",
    ]
    empty = {"metadata": meta("empty"), "addressType": "IPv6"}
    assert cells("EndpointSlice", empty, "discovery.k8s.io")[1:4] == ["IPv6", "<unset>", "<unset>"]


# ---------------------------------------------------------------------------------------------------------
# Config and identity objects


def test_secrets_config_maps_and_service_accounts() -> None:
    secret = {
        "metadata": meta("tls"),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "eA==", "tls.key": "eQ=="},
    }
    assert cells("Secret", secret) == ["tls", "kubernetes.io/tls", 2, "60m"]
    assert cells("Secret", {"metadata": meta("s")})[1:3] == ["Opaque", 0]
    cm = {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert cells("ConfigMap", cm) == ["cfg", 3, "60m"]
    sa = {"metadata": meta("default"), "secrets": [{"name": "default-token"}]}
    assert cells("ServiceAccount", sa) == ["default", 1, "60m"]
    assert column_names(rt_of("Secret")) == [("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)]


def test_namespace_phase_defaults_to_active() -> None:
    terminating = {"metadata": meta("gone"), "status": {"phase": "Terminating"}}
    assert cells("Namespace", terminating)[1] == "Terminating"
    assert cells("Namespace", {"metadata": meta("new")})[1] == "Active"


# ---------------------------------------------------------------------------------------------------------
# Nodes and events


def test_nodes() -> None:
    node = {
        "metadata": meta(
            "cp-1",
            age=86400 * 40,
            labels={
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "infra",
            },
        ),
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "addresses": [
                {"type": "Hostname", "address": "cp-1"},
                {"type": "InternalIP", "address": "172.18.0.2"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.8.0",
                "containerRuntimeVersion": "containerd://1.7.24",
            },
        },
    }
    assert cells("Node", node) == [
        "cp-1",
        "Ready,SchedulingDisabled",
        "control-plane,infra",
        "40d",
        "v1.32.0",
        "172.18.0.2",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.8.0",
        "containerd://1.7.24",
    ]
    not_ready = {"metadata": meta("w-1"), "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert cells("Node", not_ready)[1:3] == ["NotReady", "<none>"]
    assert cells("Node", {"metadata": meta("w-2")})[1] == "Unknown"
    assert cells("Node", {"metadata": meta("w-2")})[7:] == ["<unknown>", "<unknown>", "<unknown>"]


def test_core_events() -> None:
    event = {
        "metadata": meta("web.17d", age=600),
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "type": "Warning",
        "source": {"component": "kubelet", "host": "node-1"},
        "count": 7,
        "firstTimestamp": ago(600),
        "lastTimestamp": ago(20),
    }
    assert cells("Event", event) == [
        "20s",
        "Warning",
        "BackOff",
        "pod/web",
        "spec.containers{app}",
        "kubelet, node-1",
        "Back-off restarting failed container",
        "10m",
        7,
        "web.17d",
    ]
    assert column_names(rt_of("Event")) == [
        ("Last Seen", 0),
        ("Type", 0),
        ("Reason", 0),
        ("Object", 0),
        ("Subobject", 1),
        ("Source", 1),
        ("Message", 0),
        ("First Seen", 1),
        ("Count", 1),
        ("Name", 1),
    ]


def test_events_from_the_events_api() -> None:
    singleton = {
        "metadata": meta("e1"),
        "involvedObject": {"kind": "Node"},
        "eventTime": "2025-06-01T11:58:59.900000Z",
        "reportingComponent": "scheduler",
        "reportingInstance": "",
        "type": "Normal",
        "reason": "Scheduled",
    }
    assert cells("Event", singleton)[:6] == ["60s", "Normal", "Scheduled", "node", "", "scheduler"]
    assert cells("Event", singleton)[7:9] == ["60s", 1]
    series = {**singleton, "series": {"count": 4, "lastObservedTime": "2025-06-01T11:59:55.000001Z"}}
    assert cells("Event", series)[0] == "4s"
    assert cells("Event", series)[8] == 4
    assert cells("Event", {"metadata": meta("bare")})[0] == "<unknown>"


# ---------------------------------------------------------------------------------------------------------
# Workloads


def workload_template(*containers: tuple[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": n, "image": i} for n, i in containers]},
    }


def test_deployment_two_of_three() -> None:
    deploy = {
        "metadata": meta("web", age=86400 * 2 + 3 * 3600),
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            },
            "template": workload_template(("nginx", "nginx:1.27"), ("sidecar", "envoy:1.31")),
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("Deployment", deploy, "apps") == [
        "web",
        "2/3",
        3,
        2,
        "2d3h",
        "nginx,sidecar",
        "nginx:1.27,envoy:1.31",
        "app=web,!canary,tier in (edge,front)",
    ]
    assert column_names(rt_of("Deployment", "apps")) == [
        ("Name", 0),
        ("Ready", 0),
        ("Up-to-date", 0),
        ("Available", 0),
        ("Age", 0),
        ("Containers", 1),
        ("Images", 1),
        ("Selector", 1),
    ]


def test_deployment_defaults_and_bad_selector() -> None:
    deploy = {
        "metadata": meta("d"),
        "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
    }
    assert cells("Deployment", deploy, "apps")[1:4] == ["0/1", 0, 0]
    assert cells("Deployment", deploy, "apps")[7] == "<invalid>"
    assert cells("Deployment", {"metadata": meta("d"), "spec": {"replicas": 0}}, "apps")[1] == "0/0"


def test_replica_sets_daemon_sets_and_stateful_sets() -> None:
    rs = {
        "metadata": meta("web-5d4f"),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}},
            "template": workload_template(("nginx", "nginx:1.27")),
        },
        "status": {"replicas": 3, "readyReplicas": 1},
    }
    assert cells("ReplicaSet", rs, "apps") == [
        "web-5d4f",
        3,
        3,
        1,
        "60m",
        "nginx",
        "nginx:1.27",
        "app=web,pod-template-hash=5d4f",
    ]
    ds = {
        "metadata": meta("fluentd"),
        "spec": {
            "selector": {},
            "template": {
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "f", "image": "fluentd"}],
                }
            },
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    assert cells("DaemonSet", ds, "apps") == [
        "fluentd",
        3,
        3,
        2,
        3,
        2,
        "kubernetes.io/os=linux",
        "60m",
        "f",
        "fluentd",
        "<none>",
    ]
    sts = {
        "metadata": meta("db"),
        "spec": {"replicas": 3, "template": workload_template(("pg", "postgres:17"))},
        "status": {"readyReplicas": 3},
    }
    assert cells("StatefulSet", sts, "apps") == ["db", "3/3", "60m", "pg", "postgres:17"]
    assert cells("StatefulSet", {"metadata": meta("x")}, "apps")[1] == "0/1"


def job(spec: dict[str, Any], status: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    template = workload_template(("pi", "perl:5"))
    return {"metadata": meta("pi", **metadata), "spec": {"template": template, **spec}, "status": status}


def test_jobs() -> None:
    complete = job(
        {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
        {
            "succeeded": 1,
            "startTime": ago(3000),
            "completionTime": ago(2990),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    )
    assert cells("Job", complete, "batch") == [
        "pi",
        "Complete",
        "1/1",
        "10s",
        "60m",
        "pi",
        "perl:5",
        "batch.kubernetes.io/controller-uid=u1",
    ]
    running = job({"parallelism": 3}, {"startTime": ago(200), "active": 3})
    assert cells("Job", running, "batch")[1:4] == ["Running", "0/1 of 3", "3m20s"]
    pending = job({"completions": 5}, {})
    assert cells("Job", pending, "batch")[1:4] == ["Running", "0/5", ""]
    failed = job(
        {},
        {"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]},
    )
    assert cells("Job", failed, "batch")[1:3] == ["Failed", "0/1"]
    suspended = job({}, {"conditions": [{"type": "Suspended", "status": "True"}]}, deletionTimestamp=ago(1))
    assert cells("Job", suspended, "batch")[1] == "Terminating"
    suspended["metadata"].pop("deletionTimestamp")
    assert cells("Job", suspended, "batch")[1] == "Suspended"


# ---------------------------------------------------------------------------------------------------------
# Cluster configuration objects


def test_leases_and_webhook_configurations() -> None:
    lease = {"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp-1_abc"}}
    assert cells("Lease", lease, "coordination.k8s.io") == ["kube-scheduler", "cp-1_abc", "60m"]
    assert cells("Lease", {"metadata": meta("free")}, "coordination.k8s.io")[1] == ""
    group = "admissionregistration.k8s.io"
    hooks = {"metadata": meta("policy"), "webhooks": [{"name": "a.example.com"}, {"name": "b.example.com"}]}
    assert cells("ValidatingWebhookConfiguration", hooks, group) == ["policy", 2, "60m"]
    assert cells("MutatingWebhookConfiguration", {"metadata": meta("m")}, group)[1] == 0
    assert column_names(rt_of("MutatingWebhookConfiguration", group)) == [
        ("Name", 0),
        ("Webhooks", 0),
        ("Age", 0),
    ]


def test_role_bindings() -> None:
    group = "rbac.authorization.k8s.io"
    binding = {
        "metadata": meta("readers"),
        "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "devs"},
            {"kind": "User", "name": "bob"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
        ],
    }
    assert cells("RoleBinding", binding, group) == [
        "readers",
        "ClusterRole/view",
        "60m",
        "alice, bob",
        "devs",
        "tools/ci",
    ]
    crb = {"metadata": meta("admins"), "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}}
    assert cells("ClusterRoleBinding", crb, group) == [
        "admins",
        "ClusterRole/cluster-admin",
        "60m",
        "",
        "",
        "",
    ]
    assert column_names(rt_of("ClusterRoleBinding", group)) == [
        ("Name", 0),
        ("Role", 0),
        ("Age", 0),
        ("Users", 1),
        ("Groups", 1),
        ("ServiceAccounts", 1),
    ]


@pytest.mark.parametrize(
    ("kind", "group"),
    [
        ("Role", "rbac.authorization.k8s.io"),
        ("ClusterRole", "rbac.authorization.k8s.io"),
        ("CustomResourceDefinition", "apiextensions.k8s.io"),
        ("LimitRange", ""),
    ],
)
def test_kinds_without_a_printer_show_name_and_created_at(kind: str, group: str) -> None:
    rt = rt_of(kind, group)
    result = render(rt, {"metadata": meta("thing", creationTimestamp="2024-03-05T07:08:09+02:00")})
    assert [(c["name"], c["type"]) for c in result["columnDefinitions"]] == [
        ("Name", "string"),
        ("Created At", "date"),
    ]
    assert result["rows"][0]["cells"] == ["thing", "2024-03-05T05:08:09Z"]
    assert cells(kind, {"metadata": {"name": "new"}}, group) == ["new", "0001-01-01T00:00:00Z"]


# ---------------------------------------------------------------------------------------------------------
# Custom resources


def crd(*versions: dict[str, Any]) -> ResourceType:
    return crd_resource_type(
        {
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "names": {"kind": "CronTab", "plural": "crontabs"},
                "scope": "Namespaced",
                "versions": list(versions),
            },
        }
    )


CRONTAB_COLUMNS = [
    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec", "description": "The cron spec"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend", "priority": 1},
    {"name": "Load", "type": "number", "jsonPath": ".status.load"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Image",
        "type": "string",
        "jsonPath": ".spec.containers[0].image",
        "format": "uri",
        "priority": 1,
    },
]


def test_custom_resource_printer_columns() -> None:
    rt = crd({"name": "v1", "served": True, "storage": True, "additionalPrinterColumns": CRONTAB_COLUMNS})
    definitions = render(rt)["columnDefinitions"]
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in definitions] == [
        ("Name", "string", "name", 0),
        ("Spec", "string", "", 0),
        ("Replicas", "integer", "", 0),
        ("Ready", "string", "", 0),
        ("Suspended", "boolean", "", 1),
        ("Load", "number", "", 0),
        ("Age", "date", "", 0),
        ("Image", "string", "uri", 1),
    ]
    assert definitions[1]["description"] == "The cron spec"
    assert (
        definitions[2]["description"]
        == "Custom resource definition column (in JSONPath format): .spec.replicas"
    )
    obj = {
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": meta("nightly", age=5 * 86400),
        "spec": {
            "cronSpec": "* * * * */5",
            "replicas": 2,
            "suspend": False,
            "containers": [{"image": "busybox:1.37"}],
        },
        "status": {
            "load": 1,
            "conditions": [{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False"}],
        },
    }
    assert render(rt, obj)["rows"][0]["cells"] == [
        "nightly",
        "* * * * */5",
        2,
        "False",
        False,
        1.0,
        "5d",
        "busybox:1.37",
    ]


def test_custom_resource_missing_and_mistyped_values() -> None:
    rt = crd({"name": "v1", "served": True, "storage": True, "additionalPrinterColumns": CRONTAB_COLUMNS})
    assert render(rt, {"metadata": meta("bare")})["rows"][0]["cells"] == [
        "bare",
        None,
        None,
        None,
        None,
        None,
        "60m",
        None,
    ]
    odd = {
        "metadata": {"name": "odd", "creationTimestamp": "last tuesday"},
        "spec": {
            "cronSpec": {"b": 1, "a": "<x>"},
            "replicas": 2.9,
            "suspend": "yes",
            "containers": [{"image": None}],
        },
        "status": {"load": True},
    }
    assert render(rt, odd)["rows"][0]["cells"] == [
        "odd",
        '{"a":"\\u003cx\\u003e","b":1}',
        2,
        None,
        None,
        None,
        "<invalid>",
        "<no value>",
    ]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (3, "3"),
        (1.5, "1.5"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (0.00001, "1e-05"),
        (True, "true"),
        ([1, "a"], '[1,"a"]'),
    ],
)
def test_string_columns_print_any_value_as_go_does(value: Any, shown: str) -> None:
    rt = crd(
        {
            "name": "v1",
            "served": True,
            "storage": True,
            "additionalPrinterColumns": [{"name": "V", "type": "string", "jsonPath": ".spec.v"}],
        }
    )
    assert render(rt, {"metadata": meta("x"), "spec": {"v": value}})["rows"][0]["cells"] == ["x", shown]


def test_custom_resource_without_columns_gets_age_and_columns_follow_the_version() -> None:
    rt = crd(
        {"name": "v2", "served": True, "storage": True, "additionalPrinterColumns": CRONTAB_COLUMNS[:1]},
        {"name": "v1", "served": True, "storage": False},
    )
    v1 = table(rt, "v1", [{"metadata": meta("a", age=30)}], "", NOW)
    assert [(c["name"], c["type"]) for c in v1["columnDefinitions"]] == [("Name", "string"), ("Age", "date")]
    assert v1["columnDefinitions"][1]["description"].startswith("CreationTimestamp is a timestamp")
    assert v1["rows"][0]["cells"] == ["a", "30s"]
    v2 = table(rt, "v2", [{"metadata": meta("a", age=30), "spec": {"cronSpec": "@daily"}}], "", NOW)
    assert [c["name"] for c in v2["columnDefinitions"]] == ["Name", "Spec"]
    assert v2["rows"][0]["cells"] == ["a", "@daily"]


def test_custom_resource_json_paths() -> None:
    columns = [
        {"name": "Label", "type": "string", "jsonPath": ".metadata.labels.app\\.kubernetes\\.io/name"},
        {"name": "Bracket", "type": "string", "jsonPath": ".metadata.annotations['example.com/owner']"},
        {"name": "Last", "type": "integer", "jsonPath": ".spec.sizes[-1]"},
        {"name": "Any", "type": "string", "jsonPath": ".spec.sizes[*]"},
        {"name": "NotReady", "type": "string", "jsonPath": ".status.conditions[?(@.status!='True')].type"},
        {"name": "Slice", "type": "string", "jsonPath": ".spec.sizes[0:2]"},
    ]
    rt = crd({"name": "v1", "served": True, "storage": True, "additionalPrinterColumns": columns})
    obj = {
        "metadata": meta(
            "w", labels={"app.kubernetes.io/name": "shop"}, annotations={"example.com/owner": "ops"}
        ),
        "spec": {"sizes": [4, 8, 16]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]
        },
    }
    assert render(rt, obj)["rows"][0]["cells"] == ["w", "shop", "ops", 16, "4", "Synced", None]
