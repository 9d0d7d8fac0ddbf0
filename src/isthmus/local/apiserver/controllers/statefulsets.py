"""StatefulSets, as kube-controller-manager's statefulset controller runs them: pods with stable names
`<set>-<ordinal>` for ordinals `ordinals.start` .. start+replicas-1, hostname = pod name and subdomain =
`serviceName` (so the headless Service's DNS answers `<pod>.<service>.<ns>.svc`), labels
`statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and `controller-revision-hash`.

`podManagementPolicy: OrderedReady` (the default) starts pods one at a time in ordinal order, each only once
the ones before it are Running and Ready (and available for minReadySeconds), and removes pods one at a time
from the highest ordinal; `Parallel` starts and removes them all at once. A failed or succeeded pod is
deleted and made again. Revisions are ControllerRevisions `<set>-<hash>`: `updateStrategy` RollingUpdate
replaces pods from the highest ordinal down to `partition`, one at a time, each after the one above it is
ready again; OnDelete replaces a pod only when it is deleted. Status: replicas, readyReplicas,
availableReplicas, currentReplicas, updatedReplicas, currentRevision, updateRevision, collisionCount,
observedGeneration. Events: SuccessfulCreate, SuccessfulDelete, FailedCreate, FailedDelete (Kubernetes'
"create Pod web-0 in StatefulSet web successful"). volumeClaimTemplates are refused by the API server.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson

from isthmus.local.apiserver.clock import now as utc_now
from isthmus.local.apiserver.controllers import history, podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.informers import Informer, controller_of, controllers_of, object_key
from isthmus.local.apiserver.controllers.podcontrol import PodControl, pod_from_template
from isthmus.local.apiserver.controllers.replicasets import slow_start
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object

STATEFUL_SETS = ("apps", "statefulsets")
MANAGER = "statefulset-controller"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
MAX_COLLISIONS = 10
_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")


def statefulset_text(verb: str, pod: str, owner: Mapping[str, Any], error: str) -> tuple[str, str]:
    """`recordPodEvent`'s words."""
    name = owner["metadata"]["name"]
    if error:
        return f"Failed{verb}", f"{verb.lower()} Pod {pod} in StatefulSet {name} failed error: {error}"
    return f"Successful{verb}", f"{verb.lower()} Pod {pod} in StatefulSet {name} successful"


def parent_and_ordinal(pod: Mapping[str, Any]) -> tuple[str, int]:
    match = _ORDINAL.match(pod["metadata"]["name"])
    if match is None:
        return "", -1
    return match.group(1), int(match.group(2))


def ordinal(pod: Mapping[str, Any]) -> int:
    return parent_and_ordinal(pod)[1]


def is_member(sts: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    return parent_and_ordinal(pod)[0] == str(sts["metadata"]["name"])


def start_ordinal(sts: Mapping[str, Any]) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def replicas(sts: Mapping[str, Any]) -> int:
    value = (sts.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def pod_revision(pod: Mapping[str, Any]) -> str:
    return podutil.labels(pod).get(history.HASH_LABEL, "")


def is_created(pod: Mapping[str, Any]) -> bool:
    return bool(podutil.phase(pod))


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    return podutil.phase(pod) == "Running" and podutil.is_ready(pod)


def is_running_and_available(pod: Mapping[str, Any], min_ready: int, now: datetime) -> bool:
    return podutil.phase(pod) == "Running" and podutil.is_available(pod, min_ready, now)


def is_unavailable(pod: Mapping[str, Any], min_ready: int, now: datetime) -> bool:
    return is_terminating(pod) or not is_running_and_available(pod, min_ready, now)


def revision_hash(data: Mapping[str, Any], collision_count: int) -> str:
    """`HashControllerRevision`: FNV-1 over the revision data and the collision count, safe-encoded."""
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS) + str(collision_count).encode()
    return history.safe_encode(history.fnv32(raw))


def identity_matches(sts: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    name = pod["metadata"]["name"]
    labels = podutil.labels(pod)
    spec = pod.get("spec") or {}
    service = (sts.get("spec") or {}).get("serviceName") or ""
    return (
        is_member(sts, pod)
        and pod["metadata"].get("namespace") == sts["metadata"]["namespace"]
        and labels.get(POD_NAME_LABEL) == name
        and labels.get(POD_INDEX_LABEL) == str(ordinal(pod))
        and (spec.get("hostname") or "") == name
        and (spec.get("subdomain") or "") == service
    )


def set_identity(sts: Mapping[str, Any], pod: JsonObject, index: int) -> None:
    """Name, labels, hostname and subdomain of the pod at `index` (`initIdentity`)."""
    name = f"{sts['metadata']['name']}-{index}"
    pod["metadata"]["name"] = name
    pod["metadata"].pop("generateName", None)
    labels = pod["metadata"].setdefault("labels", {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(index)
    pod["spec"]["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName") or ""
    if service:
        pod["spec"]["subdomain"] = service
    else:
        pod["spec"].pop("subdomain", None)


def new_pod(sts: Mapping[str, Any], template: Mapping[str, Any], revision: str, index: int) -> JsonObject:
    pod = pod_from_template(sts, template)
    set_identity(sts, pod, index)
    pod["metadata"]["labels"][history.HASH_LABEL] = revision
    return pod


def statefulset_status(
    sts: Mapping[str, Any],
    pods: Iterable[JsonObject],
    current: str,
    update: str,
    collision_count: int,
    now: datetime,
) -> JsonObject:
    """The status `updateStatus` computes, a finished rolling update completed (`completeRollingUpdate`)."""
    min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
    count = ready = available = current_count = updated = 0
    for pod in pods:
        if is_created(pod):
            count += 1
        if is_running_and_ready(pod):
            ready += 1
            if is_running_and_available(pod, min_ready, now):
                available += 1
        if is_created(pod) and not is_terminating(pod):
            if pod_revision(pod) == current:
                current_count += 1
            if pod_revision(pod) == update:
                updated += 1
    strategy = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
    if strategy == "RollingUpdate" and updated == count and ready == count:
        current_count, current = updated, update
    status: JsonObject = {"replicas": count}
    for key, value in (
        ("observedGeneration", int(sts["metadata"].get("generation") or 0)),
        ("readyReplicas", ready),
        ("currentReplicas", current_count),
        ("updatedReplicas", updated),
    ):
        if value:
            status[key] = value
    status["currentRevision"] = current
    status["updateRevision"] = update
    status["collisionCount"] = collision_count
    status["availableReplicas"] = available
    conditions = ((sts.get("status") or {}).get("conditions")) or []
    if conditions:
        status["conditions"] = conditions
    return status


class StatefulSetController(Reconciler):
    name = "statefulset-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(self.name)
        self.stateful_sets: Informer = ctx.informers.get(STATEFUL_SETS)
        self.pod_control = PodControl(ctx, MANAGER, self.events, statefulset_text)
        self.history = history.RevisionHistory(ctx, MANAGER)
        self.stateful_sets.add_handler(self._on_stateful_set, self.enqueue_all)
        self.pod_control.pods.add_handler(self._on_pod, self.enqueue_all)
        self.history.follow("StatefulSet", self.enqueue)

    def all_keys(self) -> Iterable[Hashable]:
        return self.stateful_sets.keys()

    def _on_stateful_set(self, event: WatchEvent) -> None:
        if event.type != DELETED:
            self.enqueue(object_key(event.obj))

    def _on_pod(self, event: WatchEvent) -> None:
        namespace = event.obj["metadata"].get("namespace", "")
        for key in controllers_of(event, "StatefulSet"):
            self.enqueue(key)
        if controller_of(event.obj) is None and event.type != DELETED:
            parent, index = parent_and_ordinal(event.obj)
            if index >= 0 and self.stateful_sets.get(namespace, parent) is not None:
                self.enqueue((namespace, parent))

    # -- reconcile --------------------------------------------------------------------------------------

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        stored = self.stateful_sets.get(namespace, name)
        if stored is None:
            return
        sts = copy_object(stored)
        revisions = history.sort_revisions(await self.history.claim(sts))
        pods = [p for p in await self.pod_control.claim(sts, include_finished=True) if is_member(sts, p)]
        current, update, collision_count = await self._revisions(sts, revisions)
        error: Exception | None = None
        if not sts["metadata"].get("deletionTimestamp"):
            try:
                await self._update(sts, pods, current, update)
            except StatusError as exc:
                error = exc
        self.ctx.informers.sync()
        pods = [p for p in self.pod_control.owned(sts) if is_member(sts, p)]
        live = {current["metadata"]["name"], update["metadata"]["name"], *(pod_revision(p) for p in pods)}
        await self.history.truncate(sts, self.history.owned(sts), live)
        await self._update_status(sts, pods, current, update, collision_count)
        if error is not None:
            raise error

    async def _revisions(
        self, sts: JsonObject, revisions: list[JsonObject]
    ) -> tuple[JsonObject, JsonObject, int]:
        """The current and update revisions, the update one made, or renumbered for a rollback, if needed
        (`getStatefulSetRevisions`); and the collision count."""
        collision_count = int((sts.get("status") or {}).get("collisionCount") or 0)
        data = history.template_patch(sts)
        number = history.next_revision(revisions)
        equal = [r for r in revisions if r.get("data") == data]
        if equal and revisions and equal[-1] is revisions[-1]:
            update = revisions[-1]
        elif equal:
            update = await self.history.renumber(equal[-1], number)
        else:
            update, collision_count = await self._create_revision(sts, data, number, collision_count)
        wanted = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == wanted), update)
        return current, update, collision_count

    async def _create_revision(
        self, sts: JsonObject, data: JsonObject, number: int, collision_count: int
    ) -> tuple[JsonObject, int]:
        for _ in range(MAX_COLLISIONS):
            revision = history.new_revision(sts, data, number)
            name = history.revision_name(sts["metadata"]["name"], revision_hash(data, collision_count))
            revision["metadata"]["name"] = name
            revision["metadata"]["labels"][history.HASH_LABEL] = name
            try:
                return await self.history.create(revision), collision_count
            except StatusError as exc:
                if exc.code != 409:
                    raise
            existing = self.history.informer.get(sts["metadata"]["namespace"], name)
            if existing is not None and existing.get("data") == data:
                return existing, collision_count
            collision_count += 1
        raise StatusError(
            409, "Conflict", f"too many ControllerRevision name collisions for {sts['metadata']['name']}"
        )

    async def _update(
        self, sts: JsonObject, pods: list[JsonObject], current: JsonObject, update: JsonObject
    ) -> None:
        """Create, delete and replace pods toward the wanted state (`updateStatefulSet`)."""
        spec = sts["spec"]
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = utc_now()
        start, count = start_ordinal(sts), replicas(sts)
        wanted: list[JsonObject | None] = [None] * count
        condemned: list[JsonObject] = []
        for pod in pods:
            index = ordinal(pod)
            if start <= index < start + count:
                wanted[index - start] = pod
            elif index >= 0:
                condemned.append(pod)
        condemned.sort(key=ordinal, reverse=True)
        strategy = spec.get("updateStrategy") or {}
        rolling_update = strategy.get("rollingUpdate")
        partition = int((rolling_update or {}).get("partition") or 0)
        rolling = (strategy.get("type") or "RollingUpdate") == "RollingUpdate"
        current_name, update_name = current["metadata"]["name"], update["metadata"]["name"]
        current_count = int((sts.get("status") or {}).get("currentReplicas") or 0)
        replicas_list: list[JsonObject] = []
        for i, existing in enumerate(wanted):
            if existing is not None:
                replicas_list.append(existing)
                continue
            # A new pod: at the current revision below the partition (`newVersionedStatefulSetPod`).
            index = start + i
            at_current = (rolling and rolling_update is None and index < start + current_count) or (
                rolling_update is not None and index < start + partition
            )
            revision = current if at_current else update
            revision_name = current_name if at_current else update_name
            replicas_list.append(new_pod(sts, history.template_of(revision), revision_name, index))
        unavailable = [
            p
            for p in [*replicas_list, *reversed(condemned)]
            if is_created(p) and is_unavailable(p, min_ready, now)
        ]
        first_unhealthy = unavailable[0] if unavailable else None
        monotonic = (spec.get("podManagementPolicy") or "OrderedReady") != "Parallel"

        if monotonic:
            for pod in replicas_list:
                if await self._process_replica(sts, update, pod, True, min_ready, now):
                    self._requeue_for_availability(sts, pod, min_ready, now)
                    return
            for pod in condemned:
                if await self._process_condemned(sts, pod, first_unhealthy, True, min_ready, now):
                    return
        else:
            pending = iter(replicas_list)

            async def process() -> None:
                await self._process_replica(sts, update, next(pending), False, min_ready, now)

            _, error = await slow_start(len(replicas_list), process)
            if error is not None:
                raise error
            for pod in condemned:
                await self._process_condemned(sts, pod, first_unhealthy, False, min_ready, now)
        if not rolling:
            return
        for pod in reversed(replicas_list[partition:]):
            if pod_revision(pod) != update_name and not is_terminating(pod):
                if is_created(pod):
                    await self.pod_control.delete(sts, pod)
                return
            if is_unavailable(pod, min_ready, now):
                self._requeue_for_availability(sts, pod, min_ready, now)
                return

    async def _process_replica(
        self,
        sts: JsonObject,
        update: JsonObject,
        pod: JsonObject,
        monotonic: bool,
        min_ready: int,
        now: datetime,
    ) -> bool:
        """One wanted pod: made if missing, replaced if it finished, fixed if its identity drifted. True when
        an ordered set must wait for it."""
        if is_created(pod) and podutil.phase(pod) in ("Failed", "Succeeded"):
            if not is_terminating(pod):
                await self.pod_control.delete(sts, pod)
            return True
        if not is_created(pod):
            try:
                await self.pod_control.create(sts, pod)
            except StatusError as exc:
                if exc.code != 409:
                    raise
            return monotonic
        if is_terminating(pod) and monotonic:
            return True
        if monotonic and not is_running_and_available(pod, min_ready, now):
            return True
        if identity_matches(sts, pod):
            return False
        fixed = copy_object(pod)
        set_identity(sts, fixed, ordinal(pod))
        for key in ("hostname", "subdomain"):  # immutable in a pod: only labels can be put right
            if (pod.get("spec") or {}).get(key) != fixed["spec"].get(key):
                fixed["spec"][key] = (pod.get("spec") or {}).get(key)
                if fixed["spec"][key] is None:
                    del fixed["spec"][key]
        await self.pod_control.update(fixed)
        return False

    async def _process_condemned(
        self,
        sts: JsonObject,
        pod: JsonObject,
        first_unhealthy: JsonObject | None,
        monotonic: bool,
        min_ready: int,
        now: datetime,
    ) -> bool:
        """A pod beyond the wanted ordinals, removed from the highest down. True when an ordered set must
        wait."""
        if is_terminating(pod):
            return monotonic
        if monotonic and pod is not first_unhealthy and not is_running_and_available(pod, min_ready, now):
            return True
        await self.pod_control.delete(sts, pod)
        return monotonic

    def _requeue_for_availability(
        self, sts: JsonObject, pod: JsonObject, min_ready: int, now: datetime
    ) -> None:
        if min_ready <= 0:
            return
        wait = podutil.available_in(pod, min_ready, now)
        if wait is not None and wait > 0:
            self.enqueue_after(object_key(sts), wait + 1.0)

    async def _update_status(
        self,
        sts: JsonObject,
        pods: list[JsonObject],
        current: JsonObject,
        update: JsonObject,
        collision_count: int,
    ) -> None:
        latest = self.stateful_sets.get(*object_key(sts))
        if latest is None or latest["metadata"].get("uid") != sts["metadata"]["uid"]:
            return
        status = statefulset_status(
            latest, pods, current["metadata"]["name"], update["metadata"]["name"], collision_count, utc_now()
        )
        if status == (latest.get("status") or {}):
            return
        obj = copy_object(latest)
        obj["status"] = status
        namespace, name = object_key(latest)
        await self.ctx.objects.update(
            self.ctx.target(*STATEFUL_SETS, namespace, name, "status"), obj, self.ctx.options(MANAGER)
        )
