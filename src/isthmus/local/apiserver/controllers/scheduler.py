"""The scheduler (kube-scheduler's job, in the API server process): each pod that names no node and asks for
the default scheduler is bound (`pods/binding` semantics: `spec.nodeName` and PodScheduled=True, event
Scheduled) to a node that is Ready and schedulable, whose taints the pod tolerates and whose labels its
nodeSelector and required node affinity accept; among those, the one running the fewest pods. A pod no node
accepts gets PodScheduled=False (reason Unschedulable, Kubernetes' message) and a FailedScheduling event, and
is tried again when nodes change. A pod that already names a node, existing or not, is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from isthmus.local.apiserver.binding import bind_pod
from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.informers import NODE_NAME, NODES, PODS, Informer, object_key
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object
from isthmus.local.events import NORMAL, WARNING

SCHEDULER_NAME = "default-scheduler"
MANAGER = "default-scheduler"
FAILED_EVENT_INTERVAL = 30.0  # seconds between FailedScheduling events of one pod that keeps failing
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNREACHABLE_TAINT = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


def waits_for_scheduling(pod: Mapping[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or SCHEDULER_NAME) == SCHEDULER_NAME
        and podutil.is_active(pod)
    )


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Some toleration matches the taint (`Toleration.ToleratesTaint`)."""
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("key") and toleration["key"] != taint.get("key"):
            continue
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists" or (
            operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")
        ):
            return True
    return False


def _expression_matches(expr: Mapping[str, Any], value: str | None) -> bool:
    operator, values = expr.get("operator"), [str(v) for v in expr.get("values") or ()]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            number, bound = int(value), int(values[0])
        except ValueError:
            return False
        return number > bound if operator == "Gt" else number < bound
    return False


def node_affinity_matches(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """The pod's nodeSelector and required node affinity accept the node."""
    spec = pod.get("spec") or {}
    labels = podutil.labels(node)
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in terms:
        expressions = term.get("matchExpressions") or []
        field_expressions = term.get("matchFields") or []
        if not expressions and not field_expressions:
            continue
        if all(_expression_matches(e, labels.get(e.get("key", ""))) for e in expressions) and all(
            _expression_matches(e, fields.get(e.get("key", ""))) for e in field_expressions
        ):
            return True
    return False


def node_rejects(pod: Mapping[str, Any], node: Mapping[str, Any]) -> str | None:
    """Why the pod cannot go to the node, in kube-scheduler's words; None if it can."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    ready = podutil.condition(node, "Ready")
    taints = list((node.get("spec") or {}).get("taints") or [])
    if ready is None or ready.get("status") != "True":
        taints.insert(
            0, NOT_READY_TAINT if ready is not None and ready.get("status") == "False" else UNREACHABLE_TAINT
        )
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(tolerations, UNSCHEDULABLE_TAINT):
        return "node(s) were unschedulable"
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
    if not node_affinity_matches(pod, node):
        return "node(s) didn't match Pod's node affinity/selector"
    return None


def unschedulable_message(total: int, reasons: Mapping[str, int]) -> str:
    """kube-scheduler's FitError message."""
    if total == 0:
        return "no nodes available to schedule pods"
    histogram = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return (
        f"0/{total} nodes are available: {histogram}. preemption: 0/{total} nodes are available: "
        f"{total} Preemption is not helpful for scheduling."
    )


class Scheduler(Reconciler):
    name = SCHEDULER_NAME

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(SCHEDULER_NAME)
        self.pods: Informer = ctx.informers.get(PODS)
        self.nodes: Informer = ctx.informers.get(NODES)
        self.pods.index_by(NODE_NAME)
        self.pods.add_handler(self._on_pod, self.enqueue_all)
        self.nodes.add_handler(self._on_node, self.enqueue_all)
        self._last_failure: dict[str, float] = {}  # pod uid -> when its last FailedScheduling was recorded

    def all_keys(self) -> Iterable[Hashable]:
        return [
            object_key(pod) for pod in self.pods.indexed(NODE_NAME, "").values() if waits_for_scheduling(pod)
        ]

    def _on_pod(self, event: WatchEvent) -> None:
        if event.type == DELETED:
            self._last_failure.pop(event.obj["metadata"].get("uid", ""), None)
        elif waits_for_scheduling(event.obj):
            self.enqueue(object_key(event.obj))

    def _on_node(self, event: WatchEvent) -> None:
        old = event.old
        if event.type != DELETED and (
            old is None
            or event.obj.get("spec") != old.get("spec")
            or podutil.labels(event.obj) != podutil.labels(old)
            or podutil.condition(event.obj, "Ready") != podutil.condition(old, "Ready")
        ):
            self.enqueue_all()

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        pod = self.pods.get(namespace, name)
        if pod is None or not waits_for_scheduling(pod):
            return
        nodes = list(self.nodes.all())
        reasons: dict[str, int] = {}
        fits: list[tuple[int, str]] = []
        for node in nodes:
            why = node_rejects(pod, node)
            if why is None:
                node_name = node["metadata"]["name"]
                fits.append((self.pods.count(NODE_NAME, node_name), node_name))
            else:
                reasons[why] = reasons.get(why, 0) + 1
        if fits:
            node_name = min(fits)[1]
            bound = await bind_pod(
                self.ctx.objects,
                namespace,
                name,
                node_name,
                self.ctx.options(MANAGER),
                uid=pod["metadata"]["uid"],
            )
            self._last_failure.pop(pod["metadata"]["uid"], None)
            self.events.event(
                bound, NORMAL, "Scheduled", f"Successfully assigned {namespace}/{name} to {node_name}"
            )
            return
        await self._unschedulable(pod, unschedulable_message(len(nodes), reasons))

    async def _unschedulable(self, pod: JsonObject, message: str) -> None:
        previous = podutil.condition(pod, "PodScheduled")
        changed = (
            previous is None
            or previous.get("status") != "False"
            or previous.get("reason") != "Unschedulable"
            or previous.get("message") != message
        )
        uid = pod["metadata"]["uid"]
        if changed:
            obj = copy_object(pod)
            status = obj.setdefault("status", {})
            transition = (
                previous.get("lastTransitionTime")
                if previous is not None and previous.get("status") == "False"
                else timestamp()
            )
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": transition,
                "reason": "Unschedulable",
                "message": message,
            }
            status["conditions"] = [
                *(c for c in status.get("conditions") or () if c.get("type") != "PodScheduled"),
                condition,
            ]
            namespace, name = object_key(pod)
            await self.ctx.objects.update(
                self.ctx.target("", "pods", namespace, name, "status"), obj, self.ctx.options(MANAGER)
            )
        now = time.monotonic()
        if changed or now - self._last_failure.get(uid, float("-inf")) >= FAILED_EVENT_INTERVAL:
            self._last_failure[uid] = now
            self.events.event(pod, WARNING, "FailedScheduling", message)
