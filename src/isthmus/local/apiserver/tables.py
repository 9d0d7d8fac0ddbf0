"""`meta.k8s.io/v1` Tables, built as kube-apiserver 1.32 builds them for `kubectl get` and `kubectl get -w`.

`table(rt, version, objects, include_object, now)` renders one Table from plain JSON objects (already in the
requested version): a list (pass `list_meta`, the list's `metadata`), a single object or one watch event (no
`list_meta`; the Table takes the object's resourceVersion). Like kube-apiserver it always renders the wide
columns: kubectl drops priority-1 columns itself unless `-o wide`. A watch sends headers with its first event
only: pass `no_headers=True` (the request's `TableOptions.noHeaders`) for the later ones.

Columns and cells follow `pkg/printers/internalversion/printers.go` for the kinds it prints here, the CRD
convertor (`apiextensions-apiserver/.../tableconvertor`) for custom resources, and the default convertor
(NAME, CREATED AT) for every other kind. Fields the API defaults (service type, port protocol, replicas,
secret type, namespace phase) are read with their default, so objects stored without defaulting print as a
real server prints them. Missing or ill-typed fields never raise. Rows share the input objects: serialize
the Table before mutating them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from isthmus.local.apiserver.errors import bad_request
from isthmus.local.apiserver.resources import ResourceType

JsonObject = dict[str, Any]
Cells = list[Any]

INCLUDE_OBJECT_VALUES = ("Metadata", "Object", "None")

# ---------------------------------------------------------------------------------------------------------
# Durations and timestamps


def human_duration(d: timedelta) -> str:
    """apimachinery's `duration.HumanDuration`: ~2-3 significant figures, e.g. `5s`, `3m20s`, `2d3h`."""
    nanos = (d.days * 86400 + d.seconds) * 1_000_000_000 + d.microseconds * 1000
    seconds = _trunc_div(nanos, 1_000_000_000)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _trunc_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as Go's int conversion of a float does."""
    q = abs(a) // b
    return q if a >= 0 else -q


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|([+-])(\d{2}):(\d{2}))\Z"
)
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def _parse_rfc3339(value: str) -> datetime:
    """`time.Parse(time.RFC3339, value)`: ValueError where Go fails (fractions kept to microseconds)."""
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {value!r}")
    tz = UTC
    if m[8] != "Z":
        offset = timedelta(hours=int(m[10]), minutes=int(m[11]))
        tz = timezone(-offset if m[9] == "-" else offset)
    micros = int((m[7] or "")[:6].ljust(6, "0"))
    return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), micros, tzinfo=tz)


def _parse_time(value: Any) -> datetime | None:
    """A `metav1.Time` field: None when absent, invalid or Go's zero time."""
    if not isinstance(value, str):
        return None
    try:
        t = _parse_rfc3339(value)
    except (ValueError, OverflowError):
        return None
    return None if t == _GO_ZERO_TIME else t


def _since(t: datetime | None, now: datetime) -> str:
    """`translateTimestampSince`: the age of a timestamp, `<unknown>` for a zero one."""
    return "<unknown>" if t is None else human_duration(now - t)


def _rfc3339_utc(t: datetime | None) -> str:
    t = (t or _GO_ZERO_TIME).astimezone(UTC)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


# ---------------------------------------------------------------------------------------------------------
# Reading plain JSON objects without trusting their shape


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _str(obj: Any, *path: str) -> str:
    value = _get(obj, *path)
    return value if isinstance(value, str) else ""


def _opt_int(obj: Any, *path: str) -> int | None:
    value = _get(obj, *path)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _int(obj: Any, *path: str, default: int = 0) -> int:
    value = _opt_int(obj, *path)
    return default if value is None else value


def _map(obj: Any, *path: str) -> Mapping[str, Any]:
    value = _get(obj, *path)
    return value if isinstance(value, Mapping) else {}


def _opt_map(obj: Any, *path: str) -> Mapping[str, Any] | None:
    value = _get(obj, *path)
    return value if isinstance(value, Mapping) else None


def _maps(obj: Any, *path: str) -> list[Mapping[str, Any]]:
    value = _get(obj, *path)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _strs(obj: Any, *path: str) -> list[str]:
    value = _get(obj, *path)
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _len(obj: Any, *path: str) -> int:
    value = _get(obj, *path)
    return len(value) if isinstance(value, list | Mapping) else 0


def _name(obj: Mapping[str, Any]) -> str:
    return _str(obj, "metadata", "name")


def _age(obj: Mapping[str, Any], now: datetime) -> str:
    return _since(_parse_time(_get(obj, "metadata", "creationTimestamp")), now)


def _later(current: datetime | None, candidate: datetime | None) -> datetime | None:
    if candidate is not None and (current is None or current < candidate):
        return candidate
    return current


# ---------------------------------------------------------------------------------------------------------
# Formatting helpers shared by the printers


def _format_labels(labels: Mapping[str, Any]) -> str:
    """`labels.FormatLabels`: `k=v,...` sorted by key, `<none>` when empty."""
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if isinstance(v, str))
    return text or "<none>"


def _selector_string(selector: Any) -> str | None:
    """`LabelSelectorAsSelector(s).String()`; None where that conversion fails."""
    if not isinstance(selector, Mapping):
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in _map(selector, "matchLabels").items():
        if isinstance(value, str):
            requirements.append((key, f"{key}={value}"))
    for expr in _maps(selector, "matchExpressions"):
        key, op, values = _str(expr, "key"), _str(expr, "operator"), sorted(_strs(expr, "values"))
        if op in ("In", "NotIn"):
            if not values:
                return None
            word = "in" if op == "In" else "notin"
            requirements.append((key, f"{key} {word} ({','.join(values)})"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                return None
            requirements.append((key, key if op == "Exists" else f"!{key}"))
        else:
            return None
    requirements.sort(key=lambda r: r[0])
    return ",".join(text for _, text in requirements)


def _format_selector(selector: Any) -> str:
    """`metav1.FormatLabelSelector`: `<none>` when it selects everything, `<error>` when invalid."""
    text = _selector_string(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def _container_cells(obj: Mapping[str, Any], *template: str) -> list[str]:
    """`layoutContainerCells`: container names and images, each comma-joined."""
    containers = _maps(obj, *template, "spec", "containers")
    return [",".join(_str(c, "name") for c in containers), ",".join(_str(c, "image") for c in containers)]


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _list_with_more(items: list[str], more: bool, count: int, limit: int) -> str:
    text = ",".join(items)
    if more:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


# ---------------------------------------------------------------------------------------------------------
# Column definitions


@dataclass(frozen=True)
class _Column:
    name: str
    type: str
    description: str
    priority: int = 0
    format: str = ""

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


# The printers' descriptions: SwaggerDoc strings of the k8s.io/api types they name ("Type.field").
_DOCS = {
    "ObjectMeta.name": (
        "Name must be unique within a namespace. Is required when creating resources, although some "
        "resources may allow a client to request the generation of an appropriate name automatically. Name "
        "is primarily intended for creation idempotence and configuration definition. Cannot be updated. "
        "More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
    ),
    "ObjectMeta.creationTimestamp": (
        "CreationTimestamp is a timestamp representing the server time when this object was created. It is "
        "not guaranteed to be set in happens-before order across separate operations. Clients may not set "
        "this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
        "Read-only. Null for lists. More info: "
        "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
    ),
    "PodStatus.podIP": (
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
        "allocated."
    ),
    "PodSpec.nodeName": (
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for "
        "scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for "
        "this node becomes responsible for the lifecycle of this pod. This field should not be used to "
        "express a desire for the pod to be scheduled on a specific node. "
        "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"
    ),
    "PodStatus.nominatedNodeName": (
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be "
        "scheduled right away as preemption victims receive their graceful termination periods. This field "
        "does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the "
        "pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the "
        "resources on this node to a higher priority pod that is created after preemption. As a result, "
        "this field may be different than PodSpec.nodeName when the pod is scheduled."
    ),
    "PodSpec.readinessGates": (
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all "
        "its containers are ready AND all conditions specified in the readiness gates have status equal to "
        '"True" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates'
    ),
    "PodSpec.nodeSelector": (
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must "
        "match a node's labels for the pod to be scheduled on that node. More info: "
        "https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"
    ),
    "ServiceSpec.type": (
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are "
        'ExternalName, ClusterIP, NodePort, and LoadBalancer. "ClusterIP" allocates a cluster-internal '
        "IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that "
        "is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If "
        'clusterIP is "None", no virtual IP is allocated and the endpoints are published as a set of '
        'endpoints rather than a virtual IP. "NodePort" builds on ClusterIP and allocates a port on '
        'every node which routes to the same endpoints as the clusterIP. "LoadBalancer" builds on '
        "NodePort and creates an external load-balancer (if supported in the current cloud) which routes "
        'to the same endpoints as the clusterIP. "ExternalName" aliases this service to the specified '
        "externalName. Several other fields do not apply to ExternalName services. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"
    ),
    "ServiceSpec.clusterIP": (
        "clusterIP is the IP address of the service and is usually assigned randomly. If an address is "
        "specified manually, is in-range (as per system configuration), and is not in use, it will be "
        "allocated to the service; otherwise creation of the service will fail. This field may not be "
        "changed through updates unless the type field is also being changed to ExternalName (which "
        "requires this field to be blank) or the type field is being changed from ExternalName (in which "
        'case this field may optionally be specified, as describe above).  Valid values are "None", '
        'empty string (""), or a valid IP address. Setting this to "None" makes a "headless service" '
        "(no virtual IP), which is useful when direct endpoint connections are preferred and proxying is "
        "not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is "
        "specified when creating a Service of type ExternalName, creation will fail. This field will be "
        "wiped when updating a Service to type ExternalName. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
    ),
    "ServiceSpec.externalIPs": (
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for "
        "this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring "
        "that traffic arrives at a node with this IP.  A common example is external load-balancers that "
        "are not part of the Kubernetes system."
    ),
    "ServiceSpec.ports": (
        "The list of ports that are exposed by this service. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
    ),
    "ServiceSpec.selector": (
        "Route service traffic to pods with label keys and values matching this selector. If empty or not "
        "present, the service is assumed to have an external process managing its endpoints, which "
        "Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored "
        "if type is ExternalName. More info: "
        "https://kubernetes.io/docs/concepts/services-networking/service/"
    ),
    "Endpoints.subsets": (
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according "
        "to the IPs they share. A single address with multiple ports, some of which are ready and some of "
        "which are not (because they come from different containers) will result in the address being "
        "displayed in different subsets for the different ports. No address will appear in both Addresses "
        "and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."
    ),
    "EndpointSlice.addressType": (
        "addressType specifies the type of address carried by this EndpointSlice. All addresses in this "
        "slice must be the same type. This field is immutable after creation. The following address types "
        "are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. "
        "* FQDN: Represents a Fully Qualified Domain Name."
    ),
    "EndpointSlice.ports": (
        "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must "
        "have a unique name. When ports is empty, it indicates that there are no defined ports. When a "
        'port is defined with a nil port value, it indicates "all ports". Each slice may include a '
        "maximum of 100 ports."
    ),
    "EndpointSlice.endpoints": (
        "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 "
        "endpoints."
    ),
    "Secret.type": (
        "Used to facilitate programmatic handling of secret data. More info: "
        "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"
    ),
    "Secret.data": (
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. "
        "The serialized form of the secret data is a base64 encoded string, representing the arbitrary "
        "(possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"
    ),
    "ConfigMap.data": (
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' "
        "or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in "
        "Data must not overlap with the keys in the BinaryData field, this is enforced during validation "
        "process."
    ),
    "ServiceAccount.secrets": (
        "Secrets is a list of the secrets in the same namespace that pods running using this "
        "ServiceAccount are allowed to use. Pods are only limited to this list if this service account has "
        'a "kubernetes.io/enforce-mountable-secrets" annotation set to "true". The '
        '"kubernetes.io/enforce-mountable-secrets" annotation is deprecated since v1.32. Prefer separate '
        "namespaces to isolate access to mounted secrets. This field should not be used to find "
        "auto-generated service account token secrets for use outside of pods. Instead, tokens can be "
        "requested directly using the TokenRequest API, or service account token secrets can be manually "
        "created. More info: https://kubernetes.io/docs/concepts/configuration/secret"
    ),
    "NodeSystemInfo.kubeletVersion": "Kubelet Version reported by the node.",
    "NodeSystemInfo.osImage": (
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."
    ),
    "NodeSystemInfo.kernelVersion": (
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."
    ),
    "NodeSystemInfo.containerRuntimeVersion": (
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."
    ),
    "NodeStatus.addresses": (
        "List of addresses reachable to the node. Queried from cloud provider, if available. More info: "
        "https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as "
        "mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it "
        "is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for "
        "an example. Consumers should assume that addresses can change during the lifetime of a Node. "
        "However, there are some exceptions where this may not be possible, such as Pods that inherit a "
        "Node's address in its own status or consumers of the downward API (status.hostIP)."
    ),
    "Event.lastTimestamp": "The time at which the most recent occurrence of this event was recorded.",
    "Event.type": "Type of this event (Normal, Warning), new types could be added in the future",
    "Event.reason": (
        "This should be a short, machine understandable string that gives the reason for the transition "
        "into the object's current status."
    ),
    "Event.involvedObject": "The object that this event is about.",
    "Event.source": "The component reporting this event. Should be a short machine understandable string.",
    "Event.message": "A human-readable description of the status of this operation.",
    "Event.firstTimestamp": (
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"
    ),
    "Event.count": "The number of times this event has occurred.",
    "ObjectReference.fieldPath": (
        "If referring to a piece of an object instead of an entire object, this string should contain a "
        "valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, "
        "if the object reference is to a container within a pod, this would take on a value like: "
        '"spec.containers{name}" (where "name" refers to the name of the container that triggered the '
        'event) or if no container name is specified "spec.containers[2]" (container with index 2 in '
        "this pod). This syntax is chosen only to have some well-defined way of referencing a part of an "
        "object."
    ),
    "DeploymentStatus.updatedReplicas": (
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec."
    ),
    "DeploymentStatus.availableReplicas": (
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."
    ),
    "DeploymentSpec.selector": (
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones "
        "affected by this deployment."
    ),
    "ReplicaSetSpec.replicas": (
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit "
        "zero and unspecified. Defaults to 1. More info: "
        "https://kubernetes.io/docs/concepts/workloads/controllers/"
        "replicationcontroller/#what-is-a-replicationcontroller"
    ),
    "ReplicaSetStatus.replicas": (
        "Replicas is the most recently observed number of replicas. More info: "
        "https://kubernetes.io/docs/concepts/workloads/controllers/"
        "replicationcontroller/#what-is-a-replicationcontroller"
    ),
    "ReplicaSetStatus.readyReplicas": "The number of ready replicas for this replica set.",
    "ReplicaSetSpec.selector": (
        "Selector is a label query over pods that should match the replica count. If the selector is "
        "empty, it is defaulted to the labels present on the pod template. Label keys and values that must "
        "match in order to be controlled by this replica set. More info: "
        "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
    ),
    "DaemonSetStatus.desiredNumberScheduled": (
        "The total number of nodes that should be running the daemon pod (including nodes correctly "
        "running the daemon pod). More info: "
        "https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
    ),
    "DaemonSetStatus.currentNumberScheduled": (
        "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon "
        "pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
    ),
    "DaemonSetStatus.numberReady": (
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod "
        "running and ready."
    ),
    "DaemonSetStatus.updatedNumberScheduled": "The total number of nodes that are running updated daemon pod",
    "DaemonSetStatus.numberAvailable": (
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod "
        "running and available (ready for at least spec.minReadySeconds)"
    ),
    "DaemonSetSpec.selector": (
        "A label query over pods that are managed by the daemon set. Must match in order to be controlled. "
        "If empty, defaulted to labels on Pod template. More info: "
        "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
    ),
    "JobStatus.succeeded": (
        "The number of pods which reached phase Succeeded. The value increases monotonically for a given "
        "spec. However, it may decrease in reaction to scale down of elastic indexed jobs."
    ),
    "JobSpec.selector": (
        "A label query over pods that should match the pod count. Normally, the system sets this field for "
        "you. More info: "
        "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
    ),
    "LeaseSpec.holderIdentity": (
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader "
        "Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name "
        "field."
    ),
    "RoleBinding.roleRef": (
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. "
        "If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable."
    ),
    "ClusterRoleBinding.roleRef": (
        "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be "
        "resolved, the Authorizer must return an error. This field is immutable."
    ),
}


def _doc_column(name: str, type_: str, doc: str, priority: int = 0) -> _Column:
    return _Column(name, type_, _DOCS[doc], priority)


_NAME = _Column("Name", "string", _DOCS["ObjectMeta.name"], format="name")
_AGE = _doc_column("Age", "string", "ObjectMeta.creationTimestamp")
_CONTAINERS = _Column("Containers", "string", "Names of each container in the template.", 1)
_IMAGES = _Column("Images", "string", "Images referenced by each container in the template.", 1)
_WORKLOAD_READY = _Column("Ready", "string", "Number of the pod with ready state")
_WEBHOOKS = _Column(
    "Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"
)


def _binding_columns(what: str, kind: str) -> tuple[_Column, ...]:
    return (
        _NAME,
        _doc_column("Role", "string", f"{kind}.roleRef"),
        _AGE,
        _Column("Users", "string", f"Users in the {what}", 1),
        _Column("Groups", "string", f"Groups in the {what}", 1),
        _Column("ServiceAccounts", "string", f"ServiceAccounts in the {what}", 1),
    )


# ---------------------------------------------------------------------------------------------------------
# Printers for built-in kinds


@dataclass(frozen=True)
class _Printer:
    columns: tuple[_Column, ...]
    cells: Callable[[Mapping[str, Any], datetime], Cells]


def _is_restartable_init_container(container: Mapping[str, Any] | None) -> bool:
    return container is not None and container.get("restartPolicy") == "Always"


def _condition_true(status: Mapping[str, Any], kind: str, first_only: bool = False) -> bool:
    for condition in _maps(status, "conditions"):
        if condition.get("type") == kind:
            if condition.get("status") == "True":
                return True
            if first_only:
                return False
    return False


def _terminated_at(container_status: Mapping[str, Any]) -> datetime | None:
    return _parse_time(_get(container_status, "lastState", "terminated", "finishedAt"))


def _pod_cells(pod: Mapping[str, Any], now: datetime) -> Cells:
    spec, status = _map(pod, "spec"), _map(pod, "status")
    init_containers = _maps(spec, "initContainers")
    restarts = restartable_restarts = ready = 0
    total = len(_maps(spec, "containers"))
    last_restart: datetime | None = None
    last_restartable_restart: datetime | None = None

    phase = _str(status, "phase")
    reason = _str(status, "reason") or phase
    for condition in _maps(status, "conditions"):
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_by_name = {_str(c, "name"): c for c in init_containers}
    total += sum(1 for c in init_containers if _is_restartable_init_container(c))

    initializing = False
    for i, cs in enumerate(_maps(status, "initContainerStatuses")):
        restarts += _int(cs, "restartCount")
        last_restart = _later(last_restart, _terminated_at(cs))
        restartable = _is_restartable_init_container(init_by_name.get(_str(cs, "name")))
        if restartable:
            restartable_restarts += _int(cs, "restartCount")
            last_restartable_restart = _later(last_restartable_restart, _terminated_at(cs))
        terminated, waiting = _opt_map(cs, "state", "terminated"), _opt_map(cs, "state", "waiting")
        if terminated is not None and _int(terminated, "exitCode") == 0:
            continue
        if restartable and cs.get("started") is True:
            if cs.get("ready") is True:
                ready += 1
            continue
        if terminated is not None:
            if _str(terminated, "reason"):
                reason = "Init:" + _str(terminated, "reason")
            elif _int(terminated, "signal") != 0:
                reason = f"Init:Signal:{_int(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{_int(terminated, 'exitCode')}"
        elif waiting is not None and _str(waiting, "reason") not in ("", "PodInitializing"):
            reason = "Init:" + _str(waiting, "reason")
        else:
            reason = f"Init:{i}/{len(init_containers)}"
        initializing = True
        break

    if not initializing or _condition_true(status, "Initialized", first_only=True):
        restarts, last_restart = restartable_restarts, last_restartable_restart
        has_running = False
        for cs in reversed(_maps(status, "containerStatuses")):
            restarts += _int(cs, "restartCount")
            last_restart = _later(last_restart, _terminated_at(cs))
            terminated, waiting = _opt_map(cs, "state", "terminated"), _opt_map(cs, "state", "waiting")
            if waiting is not None and _str(waiting, "reason"):
                reason = _str(waiting, "reason")
            elif terminated is not None and _str(terminated, "reason"):
                reason = _str(terminated, "reason")
            elif terminated is not None:
                signal = _int(terminated, "signal")
                reason = f"Signal:{signal}" if signal != 0 else f"ExitCode:{_int(terminated, 'exitCode')}"
            elif cs.get("ready") is True and _opt_map(cs, "state", "running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(status, "Ready") else "NotReady"

    if _get(pod, "metadata", "deletionTimestamp") is not None:
        if _str(status, "reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_text = f"{restarts} ({_since(last_restart, now)} ago)"

    pod_ips = _maps(status, "podIPs")
    # podIPs[0] mirrors podIP on a real server; read podIP when only that was stored.
    pod_ip = (_str(pod_ips[0], "ip") if pod_ips else _str(status, "podIP")) or "<none>"
    gates = _maps(spec, "readinessGates")
    readiness_gates = "<none>"
    if gates:
        conditions = _maps(status, "conditions")
        true_count = 0
        for gate in gates:
            match = next((c for c in conditions if c.get("type") == gate.get("conditionType")), None)
            if match is not None and match.get("status") == "True":
                true_count += 1
        readiness_gates = f"{true_count}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod, now),
        pod_ip,
        _str(spec, "nodeName") or "<none>",
        _str(status, "nominatedNodeName") or "<none>",
        readiness_gates,
    ]


def _pod_conditions(pod: Mapping[str, Any]) -> list[JsonObject] | None:
    phase = _str(pod, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return None
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


def _namespace_cells(ns: Mapping[str, Any], now: datetime) -> Cells:
    return [_name(ns), _str(ns, "status", "phase") or "Active", _age(ns, now)]


def _service_external_ip(svc_type: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    external_ips = _strs(spec, "externalIPs")
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) or "<none>"
    if svc_type == "LoadBalancer":
        ingress = {_str(i, "ip") or _str(i, "hostname") for i in _maps(status, "loadBalancer", "ingress")}
        lb_ips = sorted(ingress - {""})
        if external_ips:
            return ",".join(lb_ips + external_ips)
        return ",".join(lb_ips) or "<pending>"
    if svc_type == "ExternalName":
        return _str(spec, "externalName")
    return "<unknown>"


def _service_cells(svc: Mapping[str, Any], now: datetime) -> Cells:
    spec = _map(svc, "spec")
    svc_type = _str(spec, "type") or "ClusterIP"
    cluster_ips = _strs(spec, "clusterIPs")
    # clusterIPs[0] mirrors clusterIP on a real server; read clusterIP when only that was stored.
    internal_ip = (cluster_ips[0] if cluster_ips else _str(spec, "clusterIP")) or "<none>"
    ports = []
    for port in _maps(spec, "ports"):
        protocol = _str(port, "protocol") or "TCP"
        node_port = _int(port, "nodePort")
        if node_port > 0:
            ports.append(f"{_int(port, 'port')}:{node_port}/{protocol}")
        else:
            ports.append(f"{_int(port, 'port')}/{protocol}")
    return [
        _name(svc),
        svc_type,
        internal_ip,
        _service_external_ip(svc_type, spec, _map(svc, "status")),
        ",".join(ports) or "<none>",
        _age(svc, now),
        _format_labels(_map(spec, "selector")),
    ]


def _format_endpoints(endpoints: Mapping[str, Any]) -> str:
    subsets = _maps(endpoints, "subsets")
    if not subsets:
        return "<none>"
    limit, count, more = 3, 0, False
    shown: list[str] = []
    for subset in subsets:
        addresses = [_str(a, "ip") for a in _maps(subset, "addresses")]
        # Headless services may have no ports: then each address shows alone.
        ports: list[Mapping[str, Any] | None] = [*_maps(subset, "ports")] or [None]
        for port in ports:
            count += len(addresses)
            for ip in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(ip if port is None else _join_host_port(ip, _int(port, "port")))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def _endpoints_cells(ep: Mapping[str, Any], now: datetime) -> Cells:
    return [_name(ep), _format_endpoints(ep), _age(ep, now)]


def _endpoint_slice_cells(eps: Mapping[str, Any], now: datetime) -> Cells:
    limit, port_count, address_count = 3, 0, 0
    ports: list[str] = []
    addresses: list[str] = []
    for port in _maps(eps, "ports"):
        if len(ports) < limit:
            number, name = _opt_int(port, "port"), port.get("name")
            ports.append(str(number) if number is not None else name if isinstance(name, str) else "*")
        port_count += 1
    for endpoint in _maps(eps, "endpoints"):
        for address in _strs(endpoint, "addresses"):
            if len(addresses) < limit:
                addresses.append(address)
            address_count += 1
    return [
        _name(eps),
        _str(eps, "addressType"),
        _list_with_more(ports, port_count > limit, port_count, limit),
        _list_with_more(addresses, address_count > limit, address_count, limit),
        _age(eps, now),
    ]


def _secret_cells(secret: Mapping[str, Any], now: datetime) -> Cells:
    return [_name(secret), _str(secret, "type") or "Opaque", _len(secret, "data"), _age(secret, now)]


def _config_map_cells(cm: Mapping[str, Any], now: datetime) -> Cells:
    return [_name(cm), _len(cm, "data") + _len(cm, "binaryData"), _age(cm, now)]


def _service_account_cells(sa: Mapping[str, Any], now: datetime) -> Cells:
    return [_name(sa), _len(sa, "secrets"), _age(sa, now)]


def _node_address(node: Mapping[str, Any], kind: str) -> str:
    for address in _maps(node, "status", "addresses"):
        if address.get("type") == kind:
            return _str(address, "address")
    return "<none>"


def _node_cells(node: Mapping[str, Any], now: datetime) -> Cells:
    ready = None
    for condition in _maps(node, "status", "conditions"):
        if condition.get("type") == "Ready":
            ready = condition
    status = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if _get(node, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in _map(node, "metadata", "labels").items():
        if key.startswith("node-role.kubernetes.io/"):
            if role := key.removeprefix("node-role.kubernetes.io/"):
                roles.add(role)
        elif key == "kubernetes.io/role" and isinstance(value, str) and value:
            roles.add(value)
    info = _map(node, "status", "nodeInfo")
    return [
        _name(node),
        ",".join(status),
        ",".join(sorted(roles)) or "<none>",
        _age(node, now),
        _str(info, "kubeletVersion"),
        _node_address(node, "InternalIP"),
        _node_address(node, "ExternalIP"),
        _str(info, "osImage") or "<unknown>",
        _str(info, "kernelVersion") or "<unknown>",
        _str(info, "containerRuntimeVersion") or "<unknown>",
    ]


def _event_cells(event: Mapping[str, Any], now: datetime) -> Cells:
    first_time = _parse_time(event.get("firstTimestamp"))
    first_seen = _since(first_time if first_time is not None else _parse_time(event.get("eventTime")), now)
    last_time = _parse_time(event.get("lastTimestamp"))
    last_seen = first_seen if last_time is None else _since(last_time, now)
    count = _int(event, "count")
    series = _opt_map(event, "series")
    if series is not None:
        last_seen = _since(_parse_time(series.get("lastObservedTime")), now)
        count = _int(series, "count")
    elif count == 0:
        count = 1  # singleton events of the events.k8s.io API carry no count
    involved = _map(event, "involvedObject")
    kind, name = _str(involved, "kind").lower(), _str(involved, "name")
    component = _str(event, "source", "component") or _str(event, "reportingComponent")
    instance = _str(event, "source", "host") or _str(event, "reportingInstance")
    return [
        last_seen,
        _str(event, "type"),
        _str(event, "reason"),
        f"{kind}/{name}" if name else kind,
        _str(involved, "fieldPath"),
        f"{component}, {instance}" if instance else component,
        _str(event, "message").strip(),
        first_seen,
        count,
        _name(event),
    ]


def _deployment_cells(deploy: Mapping[str, Any], now: datetime) -> Cells:
    status = _map(deploy, "status")
    selector = _selector_string(_get(deploy, "spec", "selector"))
    return [
        _name(deploy),
        f"{_int(status, 'readyReplicas')}/{_int(deploy, 'spec', 'replicas', default=1)}",
        _int(status, "updatedReplicas"),
        _int(status, "availableReplicas"),
        _age(deploy, now),
        *_container_cells(deploy, "spec", "template"),
        "<invalid>" if selector is None else selector,
    ]


def _replica_set_cells(rs: Mapping[str, Any], now: datetime) -> Cells:
    return [
        _name(rs),
        _int(rs, "spec", "replicas", default=1),
        _int(rs, "status", "replicas"),
        _int(rs, "status", "readyReplicas"),
        _age(rs, now),
        *_container_cells(rs, "spec", "template"),
        _format_selector(_get(rs, "spec", "selector")),
    ]


def _daemon_set_cells(ds: Mapping[str, Any], now: datetime) -> Cells:
    status = _map(ds, "status")
    return [
        _name(ds),
        _int(status, "desiredNumberScheduled"),
        _int(status, "currentNumberScheduled"),
        _int(status, "numberReady"),
        _int(status, "updatedNumberScheduled"),
        _int(status, "numberAvailable"),
        _format_labels(_map(ds, "spec", "template", "spec", "nodeSelector")),
        _age(ds, now),
        *_container_cells(ds, "spec", "template"),
        _format_selector(_get(ds, "spec", "selector")),
    ]


def _stateful_set_cells(sts: Mapping[str, Any], now: datetime) -> Cells:
    ready, desired = _int(sts, "status", "readyReplicas"), _int(sts, "spec", "replicas", default=1)
    return [_name(sts), f"{ready}/{desired}", _age(sts, now), *_container_cells(sts, "spec", "template")]


def _job_condition(status: Mapping[str, Any], kind: str) -> bool:
    return _condition_true(status, kind, first_only=True)


def _job_cells(job: Mapping[str, Any], now: datetime) -> Cells:
    spec, status = _map(job, "spec"), _map(job, "status")
    succeeded, completions = _int(status, "succeeded"), _opt_int(spec, "completions")
    if completions is not None:
        completions_text = f"{succeeded}/{completions}"
    elif (parallelism := _int(spec, "parallelism")) > 1:
        completions_text = f"{succeeded}/1 of {parallelism}"
    else:
        completions_text = f"{succeeded}/1"
    started, completed = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    duration = ""
    if started is not None:
        duration = human_duration((completed or now) - started)
    if _job_condition(status, "Complete"):
        state = "Complete"
    elif _job_condition(status, "Failed"):
        state = "Failed"
    elif _get(job, "metadata", "deletionTimestamp") is not None:
        state = "Terminating"
    elif _job_condition(status, "Suspended"):
        state = "Suspended"
    elif _job_condition(status, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    return [
        _name(job),
        state,
        completions_text,
        duration,
        _age(job, now),
        *_container_cells(job, "spec", "template"),
        _format_selector(spec.get("selector")),
    ]


def _lease_cells(lease: Mapping[str, Any], now: datetime) -> Cells:
    return [_name(lease), _str(lease, "spec", "holderIdentity"), _age(lease, now)]


def _webhook_configuration_cells(config: Mapping[str, Any], now: datetime) -> Cells:
    return [_name(config), _len(config, "webhooks"), _age(config, now)]


def _binding_cells(binding: Mapping[str, Any], now: datetime) -> Cells:
    users: list[str] = []
    groups: list[str] = []
    service_accounts: list[str] = []
    for subject in _maps(binding, "subjects"):
        kind, name = _str(subject, "kind"), _str(subject, "name")
        if kind == "ServiceAccount":
            service_accounts.append(f"{_str(subject, 'namespace')}/{name}")
        elif kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
    role_ref = _map(binding, "roleRef")
    return [
        _name(binding),
        f"{_str(role_ref, 'kind')}/{_str(role_ref, 'name')}",
        _age(binding, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(service_accounts),
    ]


_PRINTERS: dict[tuple[str, str], _Printer] = {
    ("", "Pod"): _Printer(
        (
            _NAME,
            _Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            _Column("Status", "string", "The aggregate status of the containers in this pod."),
            _Column(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last "
                "container in this pod has restarted.",
            ),
            _AGE,
            _doc_column("IP", "string", "PodStatus.podIP", 1),
            _doc_column("Node", "string", "PodSpec.nodeName", 1),
            _doc_column("Nominated Node", "string", "PodStatus.nominatedNodeName", 1),
            _doc_column("Readiness Gates", "string", "PodSpec.readinessGates", 1),
        ),
        _pod_cells,
    ),
    ("", "Namespace"): _Printer(
        (_NAME, _Column("Status", "string", "The status of the namespace"), _AGE), _namespace_cells
    ),
    ("", "Service"): _Printer(
        (
            _NAME,
            _doc_column("Type", "string", "ServiceSpec.type"),
            _doc_column("Cluster-IP", "string", "ServiceSpec.clusterIP"),
            _doc_column("External-IP", "string", "ServiceSpec.externalIPs"),
            _doc_column("Port(s)", "string", "ServiceSpec.ports"),
            _AGE,
            _doc_column("Selector", "string", "ServiceSpec.selector", 1),
        ),
        _service_cells,
    ),
    ("", "Endpoints"): _Printer(
        (_NAME, _doc_column("Endpoints", "string", "Endpoints.subsets"), _AGE), _endpoints_cells
    ),
    ("discovery.k8s.io", "EndpointSlice"): _Printer(
        (
            _NAME,
            _doc_column("AddressType", "string", "EndpointSlice.addressType"),
            _doc_column("Ports", "string", "EndpointSlice.ports"),
            _doc_column("Endpoints", "string", "EndpointSlice.endpoints"),
            _AGE,
        ),
        _endpoint_slice_cells,
    ),
    ("", "Secret"): _Printer(
        (
            _NAME,
            _doc_column("Type", "string", "Secret.type"),
            _doc_column("Data", "string", "Secret.data"),
            _AGE,
        ),
        _secret_cells,
    ),
    ("", "ConfigMap"): _Printer(
        (_NAME, _doc_column("Data", "string", "ConfigMap.data"), _AGE), _config_map_cells
    ),
    ("", "ServiceAccount"): _Printer(
        (_NAME, _doc_column("Secrets", "string", "ServiceAccount.secrets"), _AGE), _service_account_cells
    ),
    ("", "Node"): _Printer(
        (
            _NAME,
            _Column("Status", "string", "The status of the node"),
            _Column("Roles", "string", "The roles of the node"),
            _AGE,
            _doc_column("Version", "string", "NodeSystemInfo.kubeletVersion"),
            _doc_column("Internal-IP", "string", "NodeStatus.addresses", 1),
            _doc_column("External-IP", "string", "NodeStatus.addresses", 1),
            _doc_column("OS-Image", "string", "NodeSystemInfo.osImage", 1),
            _doc_column("Kernel-Version", "string", "NodeSystemInfo.kernelVersion", 1),
            _doc_column("Container-Runtime", "string", "NodeSystemInfo.containerRuntimeVersion", 1),
        ),
        _node_cells,
    ),
    ("", "Event"): _Printer(
        (
            _doc_column("Last Seen", "string", "Event.lastTimestamp"),
            _doc_column("Type", "string", "Event.type"),
            _doc_column("Reason", "string", "Event.reason"),
            _doc_column("Object", "string", "Event.involvedObject"),
            _doc_column("Subobject", "string", "ObjectReference.fieldPath", 1),
            _doc_column("Source", "string", "Event.source", 1),
            _doc_column("Message", "string", "Event.message"),
            _doc_column("First Seen", "string", "Event.firstTimestamp", 1),
            _doc_column("Count", "string", "Event.count", 1),
            _Column("Name", "string", _DOCS["ObjectMeta.name"], 1, "name"),
        ),
        _event_cells,
    ),
    ("apps", "Deployment"): _Printer(
        (
            _NAME,
            _WORKLOAD_READY,
            _doc_column("Up-to-date", "string", "DeploymentStatus.updatedReplicas"),
            _doc_column("Available", "string", "DeploymentStatus.availableReplicas"),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _doc_column("Selector", "string", "DeploymentSpec.selector", 1),
        ),
        _deployment_cells,
    ),
    ("apps", "ReplicaSet"): _Printer(
        (
            _NAME,
            _doc_column("Desired", "integer", "ReplicaSetSpec.replicas"),
            _doc_column("Current", "integer", "ReplicaSetStatus.replicas"),
            _doc_column("Ready", "integer", "ReplicaSetStatus.readyReplicas"),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _doc_column("Selector", "string", "ReplicaSetSpec.selector", 1),
        ),
        _replica_set_cells,
    ),
    ("apps", "DaemonSet"): _Printer(
        (
            _NAME,
            _doc_column("Desired", "integer", "DaemonSetStatus.desiredNumberScheduled"),
            _doc_column("Current", "integer", "DaemonSetStatus.currentNumberScheduled"),
            _doc_column("Ready", "integer", "DaemonSetStatus.numberReady"),
            _doc_column("Up-to-date", "integer", "DaemonSetStatus.updatedNumberScheduled"),
            _doc_column("Available", "integer", "DaemonSetStatus.numberAvailable"),
            _doc_column("Node Selector", "string", "PodSpec.nodeSelector"),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _doc_column("Selector", "string", "DaemonSetSpec.selector", 1),
        ),
        _daemon_set_cells,
    ),
    ("apps", "StatefulSet"): _Printer(
        (_NAME, _WORKLOAD_READY, _AGE, _CONTAINERS, _IMAGES), _stateful_set_cells
    ),
    ("batch", "Job"): _Printer(
        (
            _NAME,
            _Column("Status", "string", "Status of the job."),
            _doc_column("Completions", "string", "JobStatus.succeeded"),
            _Column("Duration", "string", "Time required to complete the job."),
            _AGE,
            _CONTAINERS,
            _IMAGES,
            _doc_column("Selector", "string", "JobSpec.selector", 1),
        ),
        _job_cells,
    ),
    ("coordination.k8s.io", "Lease"): _Printer(
        (_NAME, _doc_column("Holder", "string", "LeaseSpec.holderIdentity"), _AGE), _lease_cells
    ),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): _Printer(
        (_NAME, _WEBHOOKS, _AGE), _webhook_configuration_cells
    ),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): _Printer(
        (_NAME, _WEBHOOKS, _AGE), _webhook_configuration_cells
    ),
    ("rbac.authorization.k8s.io", "RoleBinding"): _Printer(
        _binding_columns("roleBinding", "RoleBinding"), _binding_cells
    ),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _Printer(
        _binding_columns("clusterRoleBinding", "ClusterRoleBinding"), _binding_cells
    ),
}


_POD_PRINTER = _PRINTERS[("", "Pod")]

# Kinds without a printer (roles, CRDs, ...) get the generic convertor's NAME and CREATED AT.
_DEFAULT_PRINTER = _Printer(
    (_NAME, _doc_column("Created At", "date", "ObjectMeta.creationTimestamp")),
    lambda obj, now: [_name(obj), _rfc3339_utc(_parse_time(_get(obj, "metadata", "creationTimestamp")))],
)


# ---------------------------------------------------------------------------------------------------------
# Custom resources: the CRD version's additionalPrinterColumns


class _UnsupportedPathError(Exception):
    pass


# Steps of a parsed JSONPath: ("field", name), ("index", n), ("all", None), ("filter", (path, op, literal)).
_Step = tuple[str, Any]
_NO_LITERAL = object()


def _parse_path(text: str) -> list[_Step]:
    """The subset of Kubernetes JSONPath that printer columns use; `_UnsupportedPathError` beyond it."""
    steps: list[_Step] = []
    i = 0
    if text.startswith("$"):
        i = 1
    if i >= len(text) or text[i] not in ".[":
        raise _UnsupportedPathError(text)
    while i < len(text):
        if text[i] == ".":
            i += 1
            if i < len(text) and text[i] == ".":
                raise _UnsupportedPathError(text)
            name: list[str] = []
            while i < len(text) and text[i] not in ".[":
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                name.append(text[i])
                i += 1
            if not name:
                raise _UnsupportedPathError(text)
            field = "".join(name)
            steps.append(("all", None) if field == "*" else ("field", field))
        elif text[i] == "[":
            end = _bracket_end(text, i)
            steps.append(_parse_bracket(text[i + 1 : end].strip()))
            i = end + 1
        else:
            raise _UnsupportedPathError(text)
    return steps


def _bracket_end(text: str, start: int) -> int:
    quote, depth = "", 0
    for j in range(start, len(text)):
        c = text[j]
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "[(":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth == 0:
                return j
    raise _UnsupportedPathError(text)


_FILTER = re.compile(r"\?\(\s*@(\.[^=!<>]*?)\s*(?:(==|!=)\s*(.+?))?\s*\)\Z")


def _parse_bracket(inner: str) -> _Step:
    if inner == "*":
        return ("all", None)
    if re.fullmatch(r"-?\d+", inner):
        return ("index", int(inner))
    literal = _parse_literal(inner)
    if isinstance(literal, str) and inner[0] in "'\"":
        return ("field", literal)
    m = _FILTER.match(inner)
    if m is None:
        raise _UnsupportedPathError(inner)
    operand = _NO_LITERAL if m[2] is None else _parse_literal(m[3])
    if m[2] is not None and operand is _NO_LITERAL:
        raise _UnsupportedPathError(inner)
    return ("filter", (_parse_path(m[1]), m[2], operand))


def _parse_literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" and text.count(text[0]) == 2:
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d*", text):
        return float(text)
    if text in ("true", "false"):
        return text == "true"
    return _NO_LITERAL


def _evaluate(steps: Iterable[_Step], root: Any) -> list[Any]:
    values = [root]
    for kind, arg in steps:
        values = [result for value in values for result in _apply_step(kind, arg, value)]
    return values


def _apply_step(kind: str, arg: Any, value: Any) -> list[Any]:
    if kind == "field":
        return [value[arg]] if isinstance(value, Mapping) and arg in value else []
    if kind == "index":
        return [value[arg]] if isinstance(value, list) and -len(value) <= arg < len(value) else []
    if kind == "all":
        return (
            list(value.values())
            if isinstance(value, Mapping)
            else list(value)
            if isinstance(value, list)
            else []
        )
    return [item for item in value if _filter_matches(arg, item)] if isinstance(value, list) else []


def _filter_matches(condition: tuple[list[_Step], str | None, Any], item: Any) -> bool:
    path, op, literal = condition
    results = _evaluate(path, item)
    if op is None:
        return bool(results)
    equal = any(type(r) is type(literal) and r == literal for r in results)
    return equal if op == "==" else bool(results) and not equal


def _go_float(value: float) -> str:
    """`fmt.Sprint(float64)`: shortest digits, exponent form when the exponent is below -4 or at least 6."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    d = Decimal(repr(value)).normalize()
    exponent = d.adjusted()
    if -4 <= exponent < 6:
        return format(d, "f")
    digits = "".join(str(n) for n in d.as_tuple().digits)
    mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
    return f"{'-' if d.is_signed() else ''}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def _go_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text


def _print_string(value: Any) -> str:
    """A value as JSONPath's PrintResults shows it in a `string` column."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, list | Mapping):
        return _go_json(value)
    return str(value)


def _typed_cell(column_type: str, value: Any, now: datetime) -> Any:
    """`cellForJSONValue` of the CRD convertor (`string` columns print any value)."""
    if column_type == "string":
        return _print_string(value)
    if value is None or (isinstance(value, bool) and column_type in ("integer", "number")):
        return None
    if column_type == "integer" and isinstance(value, int | float):
        return int(value)
    if column_type == "number" and isinstance(value, int | float):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        if value in ("", "null"):
            return "<unknown>"
        try:
            t = _parse_rfc3339(value)
        except (ValueError, OverflowError):
            return "<invalid>"
        return _since(None if t == _GO_ZERO_TIME else t, now)
    return None


_DEFAULT_CRD_COLUMNS: tuple[Mapping[str, Any], ...] = (
    {
        "name": "Age",
        "type": "date",
        "description": _DOCS["ObjectMeta.creationTimestamp"],
        "jsonPath": ".metadata.creationTimestamp",
    },
)


def _custom_printer(columns: Sequence[Mapping[str, Any]]) -> _Printer:
    """NAME, then the version's columns (only an `Age` column when it declares none)."""
    definitions = [_NAME]
    paths: list[tuple[str, list[_Step] | None]] = []
    for column in columns or _DEFAULT_CRD_COLUMNS:
        json_path = _str(column, "jsonPath")
        definitions.append(
            _Column(
                _str(column, "name"),
                _str(column, "type"),
                _str(column, "description")
                or f"Custom resource definition column (in JSONPath format): {json_path}",
                _int(column, "priority"),
                _str(column, "format"),
            )
        )
        try:
            paths.append((_str(column, "type"), _parse_path(json_path)))
        except _UnsupportedPathError:
            paths.append((_str(column, "type"), None))

    def cells(obj: Mapping[str, Any], now: datetime) -> Cells:
        row: Cells = [_name(obj)]
        for column_type, steps in paths:
            results = [] if steps is None else _evaluate(steps, obj)
            row.append(_typed_cell(column_type, results[0], now) if results else None)
        return row

    return _Printer(tuple(definitions), cells)


# ---------------------------------------------------------------------------------------------------------
# The Table


def _row_object(obj: Mapping[str, Any], include_object: str) -> Any:
    if include_object == "Object":
        return obj
    if include_object == "None":
        return None
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": _map(obj, "metadata"),
    }


def _table_metadata(objects: Sequence[Mapping[str, Any]], list_meta: Mapping[str, Any] | None) -> JsonObject:
    meta: JsonObject = {}
    if list_meta is None:
        if len(objects) == 1 and (rv := _str(objects[0], "metadata", "resourceVersion")):
            meta["resourceVersion"] = rv
        return meta
    for key in ("resourceVersion", "continue"):
        if value := _str(list_meta, key):
            meta[key] = value
    if (remaining := _opt_int(list_meta, "remainingItemCount")) is not None:
        meta["remainingItemCount"] = remaining
    return meta


def table(
    rt: ResourceType,
    version: str,
    objects: Sequence[Mapping[str, Any]],
    include_object: str,
    now: datetime,
    *,
    list_meta: Mapping[str, Any] | None = None,
    no_headers: bool = False,
) -> JsonObject:
    """The `meta.k8s.io/v1` Table of `objects` of type `rt` served at `version`.

    `include_object` is the request's `includeObject` ("" means "Metadata"); any other value than those
    Kubernetes accepts raises the 400 `StatusError` kube-apiserver answers. `now` dates the ages (a naive
    datetime is taken as UTC).
    """
    mode = include_object or "Metadata"
    if mode not in INCLUDE_OBJECT_VALUES:
        raise bad_request(f'unrecognized includeObject value: "{include_object}"')
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if rt.is_custom:
        printer = _custom_printer(rt.printer_columns.get(version, ()))
    else:
        printer = _PRINTERS.get((rt.group, rt.kind), _DEFAULT_PRINTER)
    pod_printer = printer is _POD_PRINTER
    rows: list[JsonObject] = []
    for obj in objects:
        row: JsonObject = {"cells": printer.cells(obj, now)}
        if pod_printer and (conditions := _pod_conditions(obj)) is not None:
            row["conditions"] = conditions
        row["object"] = _row_object(obj, mode)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": _table_metadata(objects, list_meta),
        "columnDefinitions": None if no_headers else [c.to_json() for c in printer.columns],
        "rows": rows,
    }
