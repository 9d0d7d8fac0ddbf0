"""Per-kind rules applied on writes, as kube-apiserver's registry strategies do: defaults, allocations
(Service ClusterIPs and node ports), kind-specific validation, and which kinds track `metadata.generation`.

A strategy is called on the server's event loop, between decoding and storing an object, and may change the
object it is given (a private copy). It must not store anything itself.
"""

from __future__ import annotations

import base64
import ipaddress
import random
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from isthmus.local.apiserver.errors import (
    Cause,
    field_forbidden,
    field_invalid,
    field_required,
    field_unsupported,
    internal_error,
)
from isthmus.local.apiserver.selectors import selector_from_label_selector
from isthmus.local.apiserver.store import Store
from isthmus.local.apiserver.validation import dns1035_label, dns1123_subdomain
from isthmus.local.apiserver.webhook_config import default_configuration, validate_configuration

JsonObject = dict[str, Any]

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
NAMESPACE_FINALIZER = "kubernetes"


class ServiceAddresses:
    """ClusterIPs from the service CIDR and node ports from 30000-32767, allocated once each."""

    def __init__(self, store: Store, service_cidr: str) -> None:
        self.network = ipaddress.ip_network(service_cidr)
        self._store = store
        self._ips: set[str] | None = None
        self._ports: set[int] = set()

    def _used(self) -> set[str]:
        if self._ips is None:
            self._ips = set()
            for stored in self._store.iter_objects(("", "services")):
                spec = stored.obj.get("spec", {})
                self._ips.update(ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip)
                self._ports.update(p["nodePort"] for p in spec.get("ports") or [] if p.get("nodePort"))
        return self._ips

    def allocate_ip(self, requested: str | None) -> str | Cause:
        used = self._used()
        if requested:
            try:
                address = ipaddress.ip_address(requested)
            except ValueError:
                return field_invalid("spec.clusterIPs[0]", requested, "must be a valid IP address")
            if address not in self.network:
                return field_invalid(
                    "spec.clusterIPs",
                    [requested],
                    "failed to allocate IP "
                    f"{requested}: provided IP is not in the valid range. The range of valid "
                    f"IPs is {self.network}",
                )
            if requested in used:
                return field_invalid(
                    "spec.clusterIPs",
                    [requested],
                    f"failed to allocate IP {requested}: provided IP is already allocated",
                )
            used.add(requested)
            return requested
        # Usable addresses: all but the network and broadcast ones, and the first (the `kubernetes` Service's).
        first, count = int(self.network.network_address) + 2, self.network.num_addresses - 3
        start = random.randrange(count) if count > 0 else 0
        for offset in range(count):
            candidate = str(ipaddress.ip_address(first + (start + offset) % count))
            if candidate not in used:
                used.add(candidate)
                return candidate
        raise internal_error("failed to allocate a serviceIP: range is full")

    def allocate_node_port(self) -> int:
        self._used()
        port = random.choice([p for p in range(30000, 32768) if p not in self._ports])
        self._ports.add(port)
        return port

    def release(self, spec: Mapping[str, Any]) -> None:
        used = self._used()
        for ip in spec.get("clusterIPs") or []:
            used.discard(ip)
        for p in spec.get("ports") or []:
            self._ports.discard(p.get("nodePort", 0))


class Strategy:
    """The default: no defaults, no extra validation, no generation."""

    tracks_generation = False

    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        return []

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        return []

    def deleted(self, obj: JsonObject) -> None:
        """Called after the object left storage."""

    def deletion_grace(self, obj: JsonObject, options: JsonObject) -> int | None:
        """Seconds a DELETE leaves the object in place for an orderly stop (pods on a node); None: delete now."""
        return None


class GenerationStrategy(Strategy):
    tracks_generation = True


def _set(obj: JsonObject, key: str, value: Any) -> None:
    if obj.get(key) in (None, ""):
        obj[key] = value


def default_pod_spec(spec: JsonObject) -> None:
    """Kubernetes' defaults for a PodSpec (also inside workload templates)."""
    _set(spec, "restartPolicy", "Always")
    _set(spec, "terminationGracePeriodSeconds", 30)
    _set(spec, "dnsPolicy", "ClusterFirst")
    _set(spec, "schedulerName", "default-scheduler")
    _set(spec, "securityContext", {})
    _set(spec, "enableServiceLinks", True)
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if not isinstance(container, dict):
            continue
        _set(container, "terminationMessagePath", "/dev/termination-log")
        _set(container, "terminationMessagePolicy", "File")
        image = str(container.get("image", ""))
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        _set(
            container,
            "imagePullPolicy",
            "Always" if not tagged or image.endswith(":latest") else "IfNotPresent",
        )
        _set(container, "resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                _set(port, "protocol", "TCP")
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(probe_name)
            if isinstance(probe, dict):
                _set(probe, "timeoutSeconds", 1)
                _set(probe, "periodSeconds", 10)
                _set(probe, "successThreshold", 1)
                _set(probe, "failureThreshold", 3)
                http = probe.get("httpGet")
                if isinstance(http, dict):
                    _set(http, "path", "/")
                    _set(http, "scheme", "HTTP")


def _template_spec(obj: JsonObject) -> Iterator[JsonObject]:
    template = obj.get("spec", {}).get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        yield template["spec"]


class PodStrategy(Strategy):
    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        _set(spec, "serviceAccountName", spec.get("serviceAccount") or "default")
        _set(spec, "serviceAccount", spec["serviceAccountName"])
        status = obj.setdefault("status", {})
        _set(status, "phase", "Pending")
        _set(status, "qosClass", "BestEffort")
        return []

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        default_pod_spec(obj.setdefault("spec", {}))
        return []

    def deletion_grace(self, obj: JsonObject, options: JsonObject) -> int | None:
        """A pod bound to a node is stopped by its kubelet, which then deletes it; others go at once."""
        spec = obj.get("spec", {})
        if not spec.get("nodeName") or obj.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return None
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return max(0, int(grace)) or None


_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MESSAGE = (
    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
    "regex used for validation is '[0-9]+%')"
)
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
DAEMONSET_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def _int_or_percent(path: str, value: Any, max_100: bool) -> tuple[list[Cause], int]:
    """Causes for an IntOrString that must be a non-negative number or percentage, and its number."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return [field_invalid(path, value, "must be an integer or percentage (e.g '5%')")], 0
    if isinstance(value, int):
        if value < 0:
            return [field_invalid(path, value, "must be greater than or equal to 0")], 0
        return [], value
    if not _PERCENT.match(value):
        return [field_invalid(path, value, _PERCENT_MESSAGE)], 0
    number = int(value[:-1])
    if max_100 and number > 100:
        return [field_invalid(path, value, "must not be greater than 100%")], number
    return [], number


class WorkloadStrategy(GenerationStrategy):
    """Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs: defaults of the workload and its pod template,
    and the checks kube-apiserver makes of their rollout settings."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def _defaults(self, obj: JsonObject) -> None:
        spec = obj.setdefault("spec", {})
        if self.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
            _set(spec, "replicas", 1)
        if self.kind in ("Deployment", "StatefulSet", "DaemonSet"):
            _set(spec, "revisionHistoryLimit", 10)
        if self.kind == "Deployment":
            _set(spec, "progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            _set(strategy, "type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                _set(rolling, "maxSurge", "25%")
                _set(rolling, "maxUnavailable", "25%")
        if self.kind == "StatefulSet":
            _set(spec, "podManagementPolicy", "OrderedReady")
            strategy = spec.setdefault("updateStrategy", {})
            _set(strategy, "type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                _set(strategy.setdefault("rollingUpdate", {}), "partition", 0)
            retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
            _set(retention, "whenDeleted", "Retain")
            _set(retention, "whenScaled", "Retain")
        if self.kind == "DaemonSet":
            strategy = spec.setdefault("updateStrategy", {})
            _set(strategy, "type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                _set(rolling, "maxUnavailable", 1)
                _set(rolling, "maxSurge", 0)
        if self.kind == "Job":
            if spec.get("completions") is None and spec.get("parallelism") is None:
                spec["completions"] = spec["parallelism"] = 1
            _set(spec, "parallelism", 1)
            _set(spec, "backoffLimit", 6)
            _set(spec, "completionMode", "NonIndexed")
            _set(spec, "suspend", False)
            _set(spec, "manualSelector", False)
            _set(
                spec,
                "podReplacementPolicy",
                "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed",
            )
        for pod_spec in _template_spec(obj):
            default_pod_spec(pod_spec)
        if self.kind != "Job":
            obj.setdefault("status", {})

    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        self._defaults(obj)
        if self.kind == "DaemonSet":
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations[DAEMONSET_TEMPLATE_GENERATION] = "1"
        if self.kind == "Job":
            obj["status"] = {}
            if not obj["spec"].get("manualSelector"):
                self._job_selector(obj)
        return self._validate(obj)

    @staticmethod
    def _job_selector(job: JsonObject) -> None:
        """The labels and selector kube-apiserver generates for a Job (`generateSelector`): its name and its
        uid on the pod template, the uid in the selector; an unlabelled Job takes its template's labels."""
        meta = job["metadata"]
        uid = meta["uid"] = meta.get("uid") or str(uuid.uuid4())
        template = job["spec"].setdefault("template", {})
        template_meta = template.setdefault("metadata", {})
        share_labels = "labels" in template_meta and not meta.get("labels")
        labels = template_meta.setdefault("labels", {})
        for key in JOB_NAME_LABELS:
            labels.setdefault(key, meta.get("name", ""))
        for key in JOB_UID_LABELS:
            labels.setdefault(key, uid)
        selector = job["spec"].get("selector") or {}
        match_labels = selector.setdefault("matchLabels", {})
        match_labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        job["spec"]["selector"] = selector
        if share_labels:  # Kubernetes' defaulting shares the template's label map with the Job
            meta["labels"] = dict(labels)

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        self._defaults(obj)
        if self.kind == "DaemonSet":
            annotations = obj["metadata"].setdefault("annotations", {})
            generation = (old["metadata"].get("annotations") or {}).get(DAEMONSET_TEMPLATE_GENERATION, "1")
            if obj["spec"].get("template") != old.get("spec", {}).get("template") and generation.isdigit():
                generation = str(int(generation) + 1)
            annotations[DAEMONSET_TEMPLATE_GENERATION] = generation
        causes = self._validate(obj)
        if obj.get("spec", {}).get("selector") != old.get("spec", {}).get("selector"):
            causes.append(
                field_invalid("spec.selector", obj.get("spec", {}).get("selector"), "field is immutable")
            )
        if self.kind == "Job":
            spec, old_spec = obj.get("spec", {}), old.get("spec", {})
            if spec.get("template") != old_spec.get("template") and not old_spec.get("suspend"):
                causes.append(field_invalid("spec.template", spec.get("template"), "field is immutable"))
            for key in ("completions", "completionMode"):
                if spec.get(key) != old_spec.get(key) and not (
                    key == "completions" and spec.get("completionMode") == "Indexed"
                ):
                    causes.append(field_invalid(f"spec.{key}", spec.get(key), "field is immutable"))
        if self.kind == "StatefulSet":
            spec, old_spec = obj.get("spec", {}), old.get("spec", {})
            changed = [
                key
                for key in set(spec) | set(old_spec)
                if key
                not in (
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                    "revisionHistoryLimit",
                )
                and spec.get(key) != old_spec.get(key)
            ]
            if changed:
                causes.append(
                    field_forbidden(
                        "spec",
                        "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                        "'template', 'updateStrategy', 'revisionHistoryLimit', "
                        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    )
                )
        return causes

    def _validate(self, obj: JsonObject) -> list[Cause]:
        spec = obj.get("spec", {})
        selector = spec.get("selector")
        policy = next((p.get("restartPolicy") for p in _template_spec(obj)), None)
        if self.kind == "Job":
            if policy not in ("OnFailure", "Never"):
                return [field_unsupported("spec.template.spec.restartPolicy", policy, ["OnFailure", "Never"])]
            causes = []
            for key in (
                "parallelism",
                "completions",
                "backoffLimit",
                "activeDeadlineSeconds",
                "ttlSecondsAfterFinished",
            ):
                value = spec.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                    causes.append(field_invalid(f"spec.{key}", value, "must be greater than or equal to 0"))
            if spec.get("completionMode") not in ("NonIndexed", "Indexed"):
                causes.append(
                    field_unsupported(
                        "spec.completionMode", spec.get("completionMode"), ["NonIndexed", "Indexed"]
                    )
                )
            elif spec["completionMode"] == "Indexed" and spec.get("completions") is None:
                causes.append(field_required("spec.completions", "when completion mode is Indexed"))
            return causes
        causes = []
        if policy is not None and policy != "Always":
            causes.append(field_unsupported("spec.template.spec.restartPolicy", policy, ["Always"]))
        causes += self._validate_rollout(spec)
        if not isinstance(selector, dict):
            return causes
        labels = (spec.get("template", {}).get("metadata") or {}).get("labels") or {}
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(
                field_invalid("spec.selector", selector, "empty selector is invalid for deployment")
            )
        elif not selector_from_label_selector(selector)(labels):
            causes.append(
                field_invalid(
                    "spec.template.metadata.labels", labels, "`selector` does not match template `labels`"
                )
            )
        return causes

    def _validate_rollout(self, spec: JsonObject) -> list[Cause]:
        """The strategy fields of Deployments, DaemonSets and StatefulSets."""
        causes: list[Cause] = []
        if self.kind == "Deployment":
            strategy = spec.get("strategy") or {}
            kind = strategy.get("type")
            if kind not in ("RollingUpdate", "Recreate"):
                return [field_unsupported("spec.strategy.type", kind, ["Recreate", "RollingUpdate"])]
            rolling = strategy.get("rollingUpdate")
            if kind == "Recreate":
                if rolling is not None:
                    causes.append(
                        field_forbidden(
                            "spec.strategy.rollingUpdate",
                            "may not be specified when strategy `type` is 'Recreate'",
                        )
                    )
                return causes
            path = "spec.strategy.rollingUpdate"
            rolling = rolling or {}
            surge_causes, surge = _int_or_percent(f"{path}.maxSurge", rolling.get("maxSurge"), False)
            unavailable_causes, unavailable = _int_or_percent(
                f"{path}.maxUnavailable", rolling.get("maxUnavailable"), True
            )
            causes += surge_causes + unavailable_causes
            if not causes and surge == 0 and unavailable == 0:
                causes.append(
                    field_invalid(
                        f"{path}.maxUnavailable",
                        rolling.get("maxUnavailable"),
                        "may not be 0 when `maxSurge` is 0",
                    )
                )
        elif self.kind == "DaemonSet":
            strategy = spec.get("updateStrategy") or {}
            kind = strategy.get("type")
            if kind not in ("RollingUpdate", "OnDelete"):
                return [field_unsupported("spec.updateStrategy.type", kind, ["OnDelete", "RollingUpdate"])]
            if kind == "RollingUpdate":
                rolling = strategy.get("rollingUpdate") or {}
                path = "spec.updateStrategy.rollingUpdate"
                unavailable_causes, unavailable = _int_or_percent(
                    f"{path}.maxUnavailable", rolling.get("maxUnavailable", 0), True
                )
                surge_causes, surge = _int_or_percent(f"{path}.maxSurge", rolling.get("maxSurge", 0), True)
                causes += unavailable_causes + surge_causes
                if not causes and unavailable and surge:
                    causes.append(
                        field_invalid(
                            f"{path}.maxSurge",
                            rolling.get("maxSurge"),
                            "may not be set when maxUnavailable is non-zero",
                        )
                    )
                elif not causes and not unavailable and not surge:
                    causes.append(field_required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
        elif self.kind == "StatefulSet":
            strategy = spec.get("updateStrategy") or {}
            kind = strategy.get("type")
            if kind not in ("RollingUpdate", "OnDelete"):
                return [field_unsupported("spec.updateStrategy.type", kind, ["OnDelete", "RollingUpdate"])]
            if kind == "OnDelete" and strategy.get("rollingUpdate") is not None:
                causes.append(
                    field_invalid(
                        "spec.updateStrategy.rollingUpdate",
                        strategy["rollingUpdate"],
                        "only allowed for updateStrategy 'RollingUpdate'",
                    )
                )
            partition = (strategy.get("rollingUpdate") or {}).get("partition", 0)
            if isinstance(partition, int) and partition < 0:
                causes.append(
                    field_invalid(
                        "spec.updateStrategy.rollingUpdate.partition",
                        partition,
                        "must be greater than or equal to 0",
                    )
                )
            management = spec.get("podManagementPolicy")
            if management not in ("OrderedReady", "Parallel"):
                causes.append(
                    field_unsupported("spec.podManagementPolicy", management, ["OrderedReady", "Parallel"])
                )
            if spec.get("volumeClaimTemplates"):
                causes.append(
                    field_forbidden(
                        "spec.volumeClaimTemplates",
                        "the local cluster has no PersistentVolumes to bind claims to: use emptyDir or hostPath "
                        "volumes in the pod template",
                    )
                )
        return causes


class ServiceStrategy(Strategy):
    def __init__(self, addresses: Callable[[], ServiceAddresses]) -> None:
        self._addresses = addresses

    def _defaults(self, spec: JsonObject) -> None:
        _set(spec, "type", "ClusterIP")
        _set(spec, "sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                _set(port, "protocol", "TCP")
                _set(port, "targetPort", port.get("port"))

    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        spec = obj.setdefault("spec", {})
        self._defaults(spec)
        causes = self._validate(spec)
        if causes:
            return causes
        if spec["type"] != "ExternalName":
            requested = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
            if requested == "None":
                spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            else:
                allocated = self._addresses().allocate_ip(requested)
                if isinstance(allocated, Cause):
                    return [allocated]
                spec["clusterIP"], spec["clusterIPs"] = allocated, [allocated]
            _set(spec, "ipFamilies", ["IPv4"])
            _set(spec, "ipFamilyPolicy", "SingleStack")
            _set(spec, "internalTrafficPolicy", "Cluster")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            _set(spec, "externalTrafficPolicy", "Cluster")
            for port in spec.get("ports") or []:
                _set(port, "nodePort", self._addresses().allocate_node_port())
        obj.setdefault("status", {"loadBalancer": {}})
        return []

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        spec = obj.setdefault("spec", {})
        old_spec = old.get("spec", {})
        self._defaults(spec)
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec["clusterIPs"] = old_spec.get("clusterIPs")
        for key in ("ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "externalTrafficPolicy"):
            if key in old_spec:
                _set(spec, key, old_spec[key])
        old_node_ports = {
            (p.get("port"), p.get("protocol")): p.get("nodePort") for p in old_spec.get("ports", [])
        }
        for port in spec.get("ports") or []:
            if port.get("nodePort") is None and old_node_ports.get((port.get("port"), port.get("protocol"))):
                port["nodePort"] = old_node_ports[(port.get("port"), port.get("protocol"))]
        causes = self._validate(spec)
        if spec.get("clusterIP") != old_spec.get("clusterIP") and old_spec.get("type") == spec.get("type"):
            causes.append(
                field_invalid("spec.clusterIPs[0]", spec.get("clusterIP"), "may not change once set")
            )
        return causes

    def _validate(self, spec: JsonObject) -> list[Cause]:
        causes: list[Cause] = []
        types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
        if spec["type"] not in types:
            causes.append(field_unsupported("spec.type", spec["type"], types))
        ports = spec.get("ports") or []
        if not ports and spec["type"] != "ExternalName" and spec.get("clusterIP") != "None":
            causes.append(field_required("spec.ports"))
        names = set()
        for i, port in enumerate(ports):
            if not isinstance(port, dict):
                continue
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.append(
                    field_invalid(f"spec.ports[{i}].port", number, "must be between 1 and 65535, inclusive")
                )
            name = port.get("name")
            if len(ports) > 1 and not name:
                causes.append(field_required(f"spec.ports[{i}].name"))
            elif name and name in names:
                causes.append(
                    Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', f"spec.ports[{i}].name")
                )
            names.add(name)
        return causes

    def deleted(self, obj: JsonObject) -> None:
        self._addresses().release(obj.get("spec", {}))


class NamespaceStrategy(Strategy):
    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
            "metadata"
        ]["name"]
        obj["spec"] = {"finalizers": [NAMESPACE_FINALIZER]}
        obj["status"] = {"phase": "Active"}
        return []

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
            "metadata"
        ]["name"]
        return []


class SecretStrategy(Strategy):
    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        _set(obj, "type", "Opaque")
        return self._validate(obj)

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        _set(obj, "type", "Opaque")
        causes = self._validate(obj)
        if obj.get("type") != old.get("type"):
            causes.append(field_invalid("type", obj.get("type"), "field is immutable"))
        if old.get("immutable") and (obj.get("data") != old.get("data") or not obj.get("immutable")):
            causes.append(field_forbidden("data", "field is immutable when `immutable` is set"))
        return causes

    def _validate(self, obj: JsonObject) -> list[Cause]:
        causes = _config_keys(obj, "data", "stringData")
        # stringData is write-only: merged into data (base64) as Kubernetes does.
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        return causes


_CONFIG_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _config_keys(obj: JsonObject, *fields: str) -> list[Cause]:
    """Secret and ConfigMap keys: `[-._a-zA-Z0-9]+`, at most 253 characters."""
    causes = []
    for name in fields:
        for key in obj.get(name) or {}:
            if not key or len(key) > 253 or any(c not in _CONFIG_KEY_CHARS for c in key):
                causes.append(
                    field_invalid(
                        f"{name}[{key}]",
                        key,
                        "a valid config key must consist of alphanumeric "
                        "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                        "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    )
                )
    return causes


class ConfigMapStrategy(Strategy):
    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        return self._validate(obj)

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        causes = self._validate(obj)
        if old.get("immutable") and (obj.get("data") != old.get("data") or not obj.get("immutable")):
            causes.append(field_forbidden("data", "field is immutable when `immutable` is set"))
        return causes

    def _validate(self, obj: JsonObject) -> list[Cause]:
        return _config_keys(obj, "data", "binaryData")


class CrdStrategy(GenerationStrategy):
    """CustomResourceDefinitions: the rules kube-apiserver checks before a CRD can be served."""

    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CRD_CLEANUP_FINALIZER not in finalizers:
            finalizers.append(CRD_CLEANUP_FINALIZER)
        obj["status"] = {"acceptedNames": {"kind": "", "plural": ""}, "conditions": [], "storedVersions": []}
        return self._validate(obj)

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        causes = self._validate(obj)
        old_spec, spec = old.get("spec", {}), obj.get("spec", {})
        if spec.get("group") != old_spec.get("group"):
            causes.append(field_invalid("spec.group", spec.get("group"), "field is immutable"))
        if spec.get("names", {}).get("plural") != old_spec.get("names", {}).get("plural"):
            causes.append(
                field_invalid("spec.names.plural", spec.get("names", {}).get("plural"), "field is immutable")
            )
        return causes

    def _validate(self, obj: JsonObject) -> list[Cause]:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group") or ""
        causes: list[Cause] = []
        plural = names.get("plural") or ""
        if not group:
            causes.append(field_required("spec.group"))
        elif "." not in group:
            causes.append(field_invalid("spec.group", group, "should be a domain with at least one dot"))
        if not plural:
            causes.append(field_required("spec.names.plural"))
        elif dns1035_label(plural):
            causes.append(field_invalid("spec.names.plural", plural, dns1035_label(plural)[0]))
        if not names.get("kind"):
            causes.append(field_required("spec.names.kind"))
        expected = f"{plural}.{group}"
        if plural and group and obj["metadata"]["name"] != expected:
            causes.append(
                field_invalid(
                    "metadata.name", obj["metadata"]["name"], 'must be spec.names.plural+"."+spec.group'
                )
            )
        if group and dns1123_subdomain(group):
            causes.append(field_invalid("spec.group", group, dns1123_subdomain(group)[0]))
        scope = spec.get("scope")
        if scope not in ("Cluster", "Namespaced"):
            causes.append(field_unsupported("spec.scope", scope, ["Cluster", "Namespaced"]))
        versions = spec.get("versions") or []
        if not versions:
            causes.append(
                field_required("spec.versions", "must have exactly one version marked as storage version")
            )
        storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
        if versions and len(storage) != 1:
            causes.append(
                field_invalid(
                    "spec.versions", len(storage), "must have exactly one version marked as storage version"
                )
            )
        seen = set()
        for i, version in enumerate(versions):
            if not isinstance(version, dict):
                continue
            if version.get("name") in seen:
                causes.append(
                    Cause(
                        "FieldValueDuplicate",
                        f'Duplicate value: "{version.get("name")}"',
                        f"spec.versions[{i}].name",
                    )
                )
            seen.add(version.get("name"))
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if not isinstance(schema, dict):
                causes.append(
                    field_required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required")
                )
        return causes


class WebhookConfigurationStrategy(GenerationStrategy):
    """Mutating and validating webhook configurations: Kubernetes' defaults and validation."""

    def __init__(self, mutating: bool) -> None:
        self.mutating = mutating

    def prepare_create(self, obj: JsonObject) -> list[Cause]:
        default_configuration(obj, self.mutating)
        return validate_configuration(obj, self.mutating)

    def prepare_update(self, obj: JsonObject, old: JsonObject) -> list[Cause]:
        return self.prepare_create(obj)


def _strategies(addresses: Callable[[], ServiceAddresses]) -> dict[tuple[str, str], Strategy]:
    generation = GenerationStrategy()
    mutating_webhooks = WebhookConfigurationStrategy(True)
    validating_webhooks = WebhookConfigurationStrategy(False)
    return {
        ("", "pods"): PodStrategy(),
        ("", "services"): ServiceStrategy(addresses),
        ("", "namespaces"): NamespaceStrategy(),
        ("", "secrets"): SecretStrategy(),
        ("", "configmaps"): ConfigMapStrategy(),
        ("", "replicationcontrollers"): generation,
        ("apps", "deployments"): WorkloadStrategy("Deployment"),
        ("apps", "replicasets"): WorkloadStrategy("ReplicaSet"),
        ("apps", "statefulsets"): WorkloadStrategy("StatefulSet"),
        ("apps", "daemonsets"): WorkloadStrategy("DaemonSet"),
        ("batch", "jobs"): WorkloadStrategy("Job"),
        ("batch", "cronjobs"): generation,
        ("autoscaling", "horizontalpodautoscalers"): generation,
        ("policy", "poddisruptionbudgets"): generation,
        ("networking.k8s.io", "networkpolicies"): generation,
        ("networking.k8s.io", "ingresses"): generation,
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): mutating_webhooks,
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): validating_webhooks,
        ("apiextensions.k8s.io", "customresourcedefinitions"): CrdStrategy(),
        ("scheduling.k8s.io", "priorityclasses"): generation,
    }


class Strategies:
    """The strategy for each resource; custom resources track generation, anything else gets the default."""

    def __init__(self, store: Store, service_cidr: str) -> None:
        addresses: list[ServiceAddresses] = []

        def service_addresses() -> ServiceAddresses:
            if not addresses:
                addresses.append(ServiceAddresses(store, service_cidr))
            return addresses[0]

        self.service_addresses = service_addresses
        self._by_resource = _strategies(service_addresses)
        self._default = Strategy()
        self._custom = GenerationStrategy()

    def get(self, group: str, plural: str, custom: bool) -> Strategy:
        strategy = self._by_resource.get((group, plural))
        if strategy is not None:
            return strategy
        return self._custom if custom else self._default
