"""ReplicaSets, as kube-controller-manager's replicaset controller keeps them: `spec.replicas` active pods from
the template (named `<replicaset>-<5 random characters>`, controlled by the ReplicaSet), matching orphans
adopted and pods that stopped matching released, missing pods created in slow-start batches, extra pods
deleted in Kubernetes' order (`pods_to_delete`), and a status of replicas, fullyLabeledReplicas,
readyReplicas, availableReplicas (ready for `minReadySeconds`) and observedGeneration. Events:
SuccessfulCreate, SuccessfulDelete, FailedCreate, FailedDelete.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any

from isthmus.local.apiserver.clock import now as utc_now
from isthmus.local.apiserver.clock import parse, timestamp
from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.informers import (
    CONTROLLER,
    LABELS,
    PODS,
    REPLICA_SETS,
    Informer,
    controller_of,
    controllers_of,
    object_key,
)
from isthmus.local.apiserver.controllers.podcontrol import pods_to_adopt
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object
from isthmus.local.events import NORMAL, WARNING

MANAGER = "replicaset-controller"
BURST_REPLICAS = 500  # pods created or deleted per sync at most (kube-controller-manager's burstReplicas)
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


# -- which pods go first (controller.ActivePodsWithRanks) ----------------------------------------------


def _deletion_cost(pod: Mapping[str, Any]) -> int:
    value = (pod["metadata"].get("annotations") or {}).get(POD_DELETION_COST)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _max_restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or ()
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def _created(pod: Mapping[str, Any]) -> datetime | None:
    value = pod["metadata"].get("creationTimestamp")
    return parse(value) if value else None


def _log_rank(when: datetime, now: datetime) -> int:
    seconds = (now - when).total_seconds()
    return int(math.log2(seconds * 1e9)) if seconds > 0 else -1


def _newer_first(a: datetime | None, b: datetime | None, uid_a: str, uid_b: str, now: datetime) -> int | None:
    """Empty < newer < older, compared on a logarithmic scale (LogarithmicScaleDown); None when equal."""
    if a == b:
        return None
    if a is None or b is None:
        return -1 if a is None else 1
    diff = _log_rank(a, now) - _log_rank(b, now)
    if diff == 0:
        return -1 if uid_a < uid_b else (1 if uid_a > uid_b else 0)
    return -1 if diff < 0 else 1


def compare_for_deletion(a: JsonObject, b: JsonObject, rank_a: int, rank_b: int, now: datetime) -> int:
    """Negative when pod `a` should be deleted before pod `b` (`ActivePodsWithRanks.Less`)."""
    node_a, node_b = podutil.node_name(a), podutil.node_name(b)
    if node_a != node_b and (not node_a or not node_b):
        return -1 if not node_a else 1  # unassigned first
    phase_a, phase_b = _PHASE_ORDER.get(podutil.phase(a), 0), _PHASE_ORDER.get(podutil.phase(b), 0)
    if phase_a != phase_b:
        return -1 if phase_a < phase_b else 1  # Pending < Unknown < Running
    ready_a, ready_b = podutil.is_ready(a), podutil.is_ready(b)
    if ready_a != ready_b:
        return -1 if not ready_a else 1  # not ready first
    cost_a, cost_b = _deletion_cost(a), _deletion_cost(b)
    if cost_a != cost_b:
        return -1 if cost_a < cost_b else 1  # lower deletion cost first
    if rank_a != rank_b:
        return -1 if rank_a > rank_b else 1  # more pods of the same owner on its node first
    uid_a, uid_b = a["metadata"].get("uid", ""), b["metadata"].get("uid", "")
    if ready_a and ready_b:
        order = _newer_first(podutil.ready_since(a), podutil.ready_since(b), uid_a, uid_b, now)
        if order:
            return order  # ready for less time first
    restarts_a, restarts_b = _max_restarts(a), _max_restarts(b)
    if restarts_a != restarts_b:
        return -1 if restarts_a > restarts_b else 1  # more restarts first
    return _newer_first(_created(a), _created(b), uid_a, uid_b, now) or 0  # newer first


def pods_to_delete(
    pods: list[JsonObject], related: Iterable[JsonObject], count: int, now: datetime | None = None
) -> list[JsonObject]:
    """The `count` pods of `pods` to delete first; `related` (the pods of the owner and its siblings) ranks
    pods by how many active related pods share their node (`getPodsToDelete`)."""
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for pod in related:
        if podutil.is_active(pod):
            node = podutil.node_name(pod)
            on_node[node] = on_node.get(node, 0) + 1
    when = now or utc_now()
    ranked = [(pod, on_node.get(podutil.node_name(pod), 0)) for pod in pods]

    def compare(x: tuple[JsonObject, int], y: tuple[JsonObject, int]) -> int:
        return compare_for_deletion(x[0], y[0], x[1], y[1], when)

    ranked.sort(key=functools.cmp_to_key(compare))
    return [pod for pod, _ in ranked[:count]]


async def slow_start(count: int, start: Callable[[], Awaitable[None]]) -> tuple[int, Exception | None]:
    """Run `start` `count` times in batches of 1, 2, 4, ... (stopping after a batch with a failure), as
    `slowStartBatch` does; returns the successes and the first error."""
    done, batch = 0, min(count, 1)
    while batch > 0:
        results = await asyncio.gather(*(start() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        done += batch - len(errors)
        if errors:
            first = errors[0]
            if not isinstance(first, Exception):
                raise first
            return done, first
        count -= batch
        batch = min(2 * batch, count)
    return done, None


def replica_set_status(rs: Mapping[str, Any], pods: Iterable[JsonObject], now: datetime) -> JsonObject:
    """The status fields `calculateStatus` computes (zero counts omitted, as the API's JSON omits them)."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    replicas = fully_labeled = ready = available = 0
    for pod in pods:
        replicas += 1
        pod_labels = podutil.labels(pod)
        if all(pod_labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if podutil.is_ready(pod):
            ready += 1
            if podutil.is_available(pod, min_ready, now):
                available += 1
    status: JsonObject = {"replicas": replicas}
    for key, value in (
        ("fullyLabeledReplicas", fully_labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ):
        if value:
            status[key] = value
    return status


def pod_from_template(rs: Mapping[str, Any]) -> JsonObject:
    """A new pod of the ReplicaSet (`GetPodFromTemplate`)."""
    template = copy_object((rs.get("spec") or {}).get("template") or {})
    template_meta = template.get("metadata") or {}
    meta: JsonObject = {
        "generateName": rs["metadata"]["name"] + "-",
        "namespace": rs["metadata"]["namespace"],
        "ownerReferences": [podutil.controller_reference(rs)],
    }
    for key in ("labels", "annotations", "finalizers"):
        if template_meta.get(key):
            meta[key] = template_meta[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}


class ReplicaSetController(Reconciler):
    name = "replicaset-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(self.name)
        self.replica_sets: Informer = ctx.informers.get(REPLICA_SETS)
        self.pods: Informer = ctx.informers.get(PODS)
        self.pods.index_by(CONTROLLER)
        self.pods.index_by(LABELS)
        self.replica_sets.index_by(CONTROLLER)
        self.replica_sets.add_handler(self._on_replica_set, self.enqueue_all)
        self.pods.add_handler(self._on_pod, self.enqueue_all)

    def all_keys(self) -> Iterable[Hashable]:
        return self.replica_sets.keys()

    def _on_replica_set(self, event: WatchEvent) -> None:
        if event.type != DELETED:
            self.enqueue(object_key(event.obj))

    def _on_pod(self, event: WatchEvent) -> None:
        namespace = event.obj["metadata"].get("namespace", "")
        for key in controllers_of(event, "ReplicaSet"):
            self.enqueue(key)
        if controller_of(event.obj) is None and event.type != DELETED and podutil.is_active(event.obj):
            pod_labels = podutil.labels(event.obj)
            for rs in self.replica_sets.in_namespace(namespace).values():
                if podutil.label_selector(rs["spec"].get("selector"))(pod_labels):
                    self.enqueue(object_key(rs))

    # -- reconcile ----------------------------------------------------------------------------------------

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        rs = self.replica_sets.get(namespace, name)
        if rs is None:
            return
        pods = await self._claim_pods(rs)
        error: Exception | None = None
        if not rs["metadata"].get("deletionTimestamp"):
            error = await self._manage_replicas(rs, pods)
        self.ctx.informers.sync()
        current = self.replica_sets.get(namespace, name)
        if current is None or current["metadata"].get("uid") != rs["metadata"].get("uid"):
            return
        pods = self._owned_active(current)
        await self._update_status(current, pods, error)
        if error is not None:
            raise error

    def _owned_active(self, rs: JsonObject) -> list[JsonObject]:
        selector = podutil.label_selector(rs["spec"].get("selector"))
        return [
            pod
            for pod in self.pods.indexed(CONTROLLER, rs["metadata"]["uid"]).values()
            if podutil.is_active(pod) and selector(podutil.labels(pod))
        ]

    async def _claim_pods(self, rs: JsonObject) -> list[JsonObject]:
        """The active pods the ReplicaSet controls, after adopting matching orphans and releasing pods that
        no longer match (`PodControllerRefManager.ClaimPods`)."""
        meta = rs["metadata"]
        selector = rs["spec"].get("selector")
        owned = [p for p in self.pods.indexed(CONTROLLER, meta["uid"]).values() if podutil.is_active(p)]
        return await podutil.claim(
            rs,
            owned,
            lambda: pods_to_adopt(self.pods, meta["namespace"], selector),
            self._update_pod,
            adoptable=podutil.is_active,
        )

    async def _update_pod(self, pod: JsonObject) -> JsonObject:
        namespace, name = object_key(pod)
        result = await self.ctx.objects.update(
            self.ctx.target("", "pods", namespace, name), pod, self.ctx.options(MANAGER)
        )
        return result.obj

    async def _manage_replicas(self, rs: JsonObject, pods: list[JsonObject]) -> Exception | None:
        wanted = int(rs["spec"].get("replicas", 1))
        diff = len(pods) - wanted
        if diff < 0:
            return await self._create_pods(rs, min(-diff, BURST_REPLICAS))
        if diff > 0:
            victims = pods_to_delete(pods, self._related_pods(rs), min(diff, BURST_REPLICAS))
            return await self._delete_pods(rs, victims)
        return None

    def _related_pods(self, rs: JsonObject) -> list[JsonObject]:
        """The pods of the ReplicaSet's owner's ReplicaSets (`getIndirectlyRelatedPods`), or its own."""
        owner = controller_of(rs)
        siblings = [rs]
        if owner is not None and owner.get("uid"):
            siblings = list(self.replica_sets.indexed(CONTROLLER, owner["uid"]).values()) or [rs]
        related: dict[str, JsonObject] = {}
        for sibling in siblings:
            for pod in self.pods.indexed(CONTROLLER, sibling["metadata"]["uid"]).values():
                related[pod["metadata"]["uid"]] = pod
        return list(related.values())

    async def _create_pods(self, rs: JsonObject, count: int) -> Exception | None:
        namespace = rs["metadata"]["namespace"]
        target = self.ctx.target("", "pods", namespace)

        async def create() -> None:
            try:
                result = await self.ctx.objects.create(
                    target, pod_from_template(rs), self.ctx.options(MANAGER)
                )
            except StatusError as exc:
                if not (exc.code == 403 and "being terminated" in exc.message):
                    self.events.event(rs, WARNING, "FailedCreate", f"Error creating: {exc.message}")
                raise
            self.events.event(
                rs, NORMAL, "SuccessfulCreate", f"Created pod: {result.obj['metadata']['name']}"
            )

        _, error = await slow_start(count, create)
        return error

    async def _delete_pods(self, rs: JsonObject, victims: list[JsonObject]) -> Exception | None:
        async def delete(pod: JsonObject) -> None:
            namespace, name = object_key(pod)
            try:
                await self.ctx.objects.delete(
                    self.ctx.target("", "pods", namespace, name),
                    {"preconditions": {"uid": pod["metadata"]["uid"]}},
                    self.ctx.options(MANAGER),
                )
            except StatusError as exc:
                if exc.code == 404:
                    return
                self.events.event(rs, WARNING, "FailedDelete", f"Error deleting: {exc.message}")
                raise
            self.events.event(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {name}")

        results = await asyncio.gather(*(delete(pod) for pod in victims), return_exceptions=True)
        errors = [r for r in results if isinstance(r, Exception)]
        return errors[0] if errors else None

    async def _update_status(self, rs: JsonObject, pods: list[JsonObject], error: Exception | None) -> None:
        now = utc_now()
        old = rs.get("status") or {}
        status = replica_set_status(rs, pods, now)
        failure = next((c for c in old.get("conditions") or () if c.get("type") == "ReplicaFailure"), None)
        conditions = [c for c in old.get("conditions") or () if c.get("type") != "ReplicaFailure"]
        if error is not None:
            if failure is None:
                wanted = int(rs["spec"].get("replicas", 1))
                reason = "FailedCreate" if len(pods) < wanted else "FailedDelete"
                failure = {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastTransitionTime": timestamp(now),
                    "reason": reason,
                    "message": str(error),
                }
            conditions.append(failure)
        if conditions:
            status["conditions"] = conditions
        generation = rs["metadata"].get("generation")
        if generation:
            status["observedGeneration"] = generation
        if status != old:
            obj = dict(rs, status=status)
            namespace, name = object_key(rs)
            await self.ctx.objects.update(
                self.ctx.target("apps", "replicasets", namespace, name, "status"),
                copy_object(obj),
                self.ctx.options(MANAGER),
            )
        self._requeue_for_availability(rs, pods, now)

    def _requeue_for_availability(self, rs: JsonObject, pods: list[JsonObject], now: datetime) -> None:
        """Look again when the next ready pod has been ready for minReadySeconds."""
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        if min_ready <= 0:
            return
        waits = [
            wait
            for pod in pods
            if (wait := podutil.available_in(pod, min_ready, now)) is not None and wait > 0
        ]
        if waits:
            self.enqueue_after(object_key(rs), min(waits) + 1.0)
