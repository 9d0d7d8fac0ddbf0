"""DaemonSets, as kube-controller-manager's daemonset controller runs them: one pod on every node that should
run it (the template's nodeSelector and required node affinity accept the node, and the pod tolerates its
taints; a node that is not Ready counts as tainted `node.kubernetes.io/not-ready:NoSchedule`, as the node
lifecycle controller would taint it). Each pod is created without a node but with a required node affinity
on the node's name (`matchFields metadata.name`), so the scheduler binds it, and with the DaemonSet
tolerations (not-ready, unreachable, pressure, unschedulable). Failed pods are replaced, extra pods on a node
deleted (the oldest kept), pods on nodes that no longer qualify deleted.

Revisions are ControllerRevisions `<daemonset>-<hash>` (label `controller-revision-hash`, pods labelled with it
and with `pod-template-generation`). `updateStrategy` RollingUpdate replaces old pods node by node within
maxUnavailable (numbers or percentages of the desired pods, rounded up) or, with maxSurge, starts the new pod
before the old one goes; OnDelete replaces pods only when they are deleted. Status: desired, current, ready,
available (ready for minReadySeconds), updated, unavailable and misscheduled counts, observedGeneration.
Events: SuccessfulCreate, SuccessfulDelete, FailedCreate, FailedDelete.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any

from isthmus.local.apiserver.clock import now as utc_now
from isthmus.local.apiserver.controllers import history, podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.deployments import compute_hash
from isthmus.local.apiserver.controllers.informers import (
    NODES,
    Informer,
    controller_of,
    controllers_of,
    object_key,
)
from isthmus.local.apiserver.controllers.podcontrol import PodControl, pod_from_template
from isthmus.local.apiserver.controllers.replicasets import slow_start
from isthmus.local.apiserver.controllers.scheduler import (
    NOT_READY_TAINT,
    UNREACHABLE_TAINT,
    node_affinity_matches,
    tolerates,
)
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object

DAEMON_SETS = ("apps", "daemonsets")
MANAGER = "daemon-set-controller"
TEMPLATE_GENERATION = "pod-template-generation"
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"
FAILED_BACKOFF_START = 1.0
FAILED_BACKOFF_MAX = 900.0

# Added to every daemon pod (`AddOrUpdateDaemonPodTolerations`).
DAEMON_TOLERATIONS: tuple[JsonObject, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
NETWORK_UNAVAILABLE = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": "Exists",
    "effect": "NoSchedule",
}


# -- what runs where ----------------------------------------------------------------------------------------


def daemon_tolerations(pod_spec: Mapping[str, Any]) -> list[JsonObject]:
    """The pod's tolerations with the DaemonSet ones added (existing ones with the same key and effect kept)."""
    tolerations = [dict(t) for t in pod_spec.get("tolerations") or ()]
    extra = [*DAEMON_TOLERATIONS, *((NETWORK_UNAVAILABLE,) if pod_spec.get("hostNetwork") else ())]
    for toleration in extra:
        if not any(
            t.get("key") == toleration["key"] and t.get("effect") == toleration["effect"] for t in tolerations
        ):
            tolerations.append(dict(toleration))
    return tolerations


def node_taints(node: Mapping[str, Any]) -> list[JsonObject]:
    """The node's taints, with the not-ready or unreachable one a node lifecycle controller would add."""
    taints = [dict(t) for t in (node.get("spec") or {}).get("taints") or ()]
    ready = podutil.condition(node, "Ready")
    if ready is None or ready.get("status") != "True":
        status_false = ready is not None and ready.get("status") == "False"
        taints.append(dict(NOT_READY_TAINT if status_false else UNREACHABLE_TAINT))
    if (node.get("spec") or {}).get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    return taints


def should_run(ds: Mapping[str, Any], node: Mapping[str, Any]) -> tuple[bool, bool]:
    """(a daemon pod should be started on the node, an existing one may keep running)
    (`NodeShouldRunDaemonPod`)."""
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    name = node["metadata"]["name"]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return False, False
    if not node_affinity_matches({"spec": spec}, node):
        return False, False
    tolerations = daemon_tolerations(spec)
    untolerated = [
        taint
        for taint in node_taints(node)
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint)
    ]
    if untolerated:
        return False, not any(t.get("effect") == "NoExecute" for t in untolerated)
    return True, True


def target_node(pod: Mapping[str, Any]) -> str:
    """The node a daemon pod is for: its nodeName, else the one its node affinity names (`GetTargetNodeName`)."""
    if podutil.node_name(pod):
        return podutil.node_name(pod)
    required = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            values = field.get("values") or []
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return ""


def node_affinity_for(affinity: Mapping[str, Any] | None, node: str) -> JsonObject:
    """The pod's affinity with its required node affinity replaced by `metadata.name In [node]`
    (`ReplaceDaemonSetPodNodeNameNodeAffinity`)."""
    result = copy_object(dict(affinity or {}))
    node_affinity = result.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
    }
    return result


def template_generation(ds: Mapping[str, Any]) -> str:
    annotations = ds["metadata"].get("annotations") or {}
    return str(annotations.get(TEMPLATE_GENERATION_ANNOTATION) or ds["metadata"].get("generation") or 1)


def daemon_pod(ds: Mapping[str, Any], node: str, hash_: str) -> JsonObject:
    """A new pod of the DaemonSet for `node`."""
    template = copy_object(dict((ds.get("spec") or {}).get("template") or {}))
    meta = template.setdefault("metadata", {})
    meta["labels"] = {
        **(meta.get("labels") or {}),
        TEMPLATE_GENERATION: template_generation(ds),
        history.HASH_LABEL: hash_,
    }
    pod = pod_from_template(ds, template)
    spec = pod["spec"]
    spec["affinity"] = node_affinity_for(spec.get("affinity"), node)
    spec["tolerations"] = daemon_tolerations(spec)
    return pod


def is_updated(pod: Mapping[str, Any], hash_: str) -> bool:
    return podutil.labels(pod).get(history.HASH_LABEL) == hash_


def _creation_order(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """Scheduled pods first, then the oldest, then by name (`podByCreationTimestampAndPhase`)."""
    scheduled_a, scheduled_b = bool(podutil.node_name(a)), bool(podutil.node_name(b))
    if scheduled_a != scheduled_b:
        return -1 if scheduled_a else 1
    key_a = (a["metadata"].get("creationTimestamp") or "", a["metadata"]["name"])
    key_b = (b["metadata"].get("creationTimestamp") or "", b["metadata"]["name"])
    return -1 if key_a < key_b else (1 if key_a > key_b else 0)


def oldest_first(pods: Iterable[JsonObject]) -> list[JsonObject]:
    return sorted(pods, key=functools.cmp_to_key(_creation_order))


def rolling_limits(ds: Mapping[str, Any], desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers of pods, both rounded up (`SurgeCount`, `UnavailableCount`)."""
    rolling = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate")) or {}
    surge = podutil.scaled_value(rolling.get("maxSurge", 0), desired, True)
    unavailable = podutil.scaled_value(rolling.get("maxUnavailable", 1), desired, True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def updated_pods_on_node(
    pods: Iterable[JsonObject], hash_: str
) -> tuple[JsonObject | None, JsonObject | None, bool]:
    """(the new pod, the old pod, whether there is at most one of each) among a node's live pods."""
    new = old = None
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        if is_updated(pod, hash_):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def rolling_update_plan(
    ds: Mapping[str, Any],
    node_pods: Mapping[str, list[JsonObject]],
    eligible: Mapping[str, bool],
    hash_: str,
    now: datetime,
) -> tuple[list[JsonObject], list[str]]:
    """The old pods to delete and the nodes to start a new pod on for one step of a rolling update
    (`dsc.rollingUpdate`)."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    desired = sum(1 for run in eligible.values() if run)
    max_surge, max_unavailable = rolling_limits(ds, desired)

    def available(pod: Mapping[str, Any]) -> bool:
        return podutil.is_available(pod, min_ready, now)

    if max_surge == 0:
        unavailable = 0
        replace: list[JsonObject] = []
        candidates: list[JsonObject] = []
        for node in sorted(node_pods):
            new, old, ok = updated_pods_on_node(node_pods[node], hash_)
            if not ok or (new is None) == (old is None):
                unavailable += 1  # the manage step creates or deletes here
            elif new is not None:
                if not available(new):
                    unavailable += 1
            elif old is not None:
                if not available(old):
                    replace.append(old)
                elif unavailable < max_unavailable:
                    candidates.append(old)
        room = max(0, min(max_unavailable - unavailable, len(candidates)))
        return [*replace, *candidates[:room]], []
    to_delete: list[JsonObject] = []
    allowed_nodes: list[str] = []
    candidate_nodes: list[str] = []
    surging = 0
    for node in sorted(node_pods):
        new, old, ok = updated_pods_on_node(node_pods[node], hash_)
        if not ok:
            continue
        if not eligible.get(node, False):
            if old is not None:
                to_delete.append(old)
            continue
        if old is None:
            continue
        if new is None:
            if not available(old):
                allowed_nodes.append(node)
            elif surging < max_surge:
                candidate_nodes.append(node)
        elif not available(new):
            surging += 1
        else:
            to_delete.append(old)
    room = max(0, min(max_surge - surging, len(candidate_nodes)))
    return to_delete, [*allowed_nodes, *candidate_nodes[:room]]


def daemon_set_status(
    ds: Mapping[str, Any],
    nodes: Iterable[JsonObject],
    node_pods: Mapping[str, list[JsonObject]],
    hash_: str,
    now: datetime,
) -> JsonObject:
    """The status `updateDaemonSetStatus` writes (zero counts of optional fields omitted)."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    desired = current = misscheduled = ready = available = updated = 0
    for node in nodes:
        name = node["metadata"]["name"]
        run, _ = should_run(ds, node)
        pods = oldest_first(node_pods.get(name) or ())
        if run:
            desired += 1
            if pods:
                current += 1
                pod = pods[0]
                if podutil.is_ready(pod):
                    ready += 1
                    if podutil.is_available(pod, min_ready, now):
                        available += 1
                if is_updated(pod, hash_):
                    updated += 1
        elif pods:
            misscheduled += 1
    status: JsonObject = {
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
    }
    generation = int(ds["metadata"].get("generation") or 0)
    for key, value in (
        ("observedGeneration", generation),
        ("updatedNumberScheduled", updated),
        ("numberAvailable", available),
        ("numberUnavailable", desired - available),
    ):
        if value:
            status[key] = value
    old = ds.get("status") or {}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = old["conditions"]
    return status


def _ready_status(node: Mapping[str, Any]) -> str:
    cond = podutil.condition(node, "Ready")
    return str((cond or {}).get("status") or "")


# -- the controller -----------------------------------------------------------------------------------------


class DaemonSetController(Reconciler):
    name = "daemonset-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(self.name)
        self.daemon_sets: Informer = ctx.informers.get(DAEMON_SETS)
        self.nodes: Informer = ctx.informers.get(NODES)
        self.pod_control = PodControl(ctx, MANAGER, self.events)
        self.history = history.RevisionHistory(ctx, MANAGER)
        self.daemon_sets.add_handler(self._on_daemon_set, self.enqueue_all)
        self.pod_control.pods.add_handler(self._on_pod, self.enqueue_all)
        self.nodes.add_handler(self._on_node, self.enqueue_all)
        self.history.follow("DaemonSet", self.enqueue)
        self._failed: dict[tuple[str, str], tuple[float, float]] = {}  # (ds uid, node) -> (backoff, until)

    def all_keys(self) -> Iterable[Hashable]:
        return self.daemon_sets.keys()

    def _on_daemon_set(self, event: WatchEvent) -> None:
        if event.type != DELETED:
            self.enqueue(object_key(event.obj))
            return
        uid = event.obj["metadata"].get("uid", "")
        for key in [k for k in self._failed if k[0] == uid]:
            del self._failed[key]

    def _on_pod(self, event: WatchEvent) -> None:
        namespace = event.obj["metadata"].get("namespace", "")
        for key in controllers_of(event, "DaemonSet"):
            self.enqueue(key)
        if controller_of(event.obj) is None and event.type != DELETED and podutil.is_active(event.obj):
            pod_labels = podutil.labels(event.obj)
            for ds in self.daemon_sets.in_namespace(namespace).values():
                if podutil.label_selector(ds["spec"].get("selector"))(pod_labels):
                    self.enqueue(object_key(ds))

    def _on_node(self, event: WatchEvent) -> None:
        old = event.old
        if (
            event.type == DELETED
            or old is None
            or event.obj.get("spec") != old.get("spec")
            or podutil.labels(event.obj) != podutil.labels(old)
            or _ready_status(event.obj) != _ready_status(old)
        ):
            self.enqueue_all()

    # -- reconcile --------------------------------------------------------------------------------------

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        stored = self.daemon_sets.get(namespace, name)
        if stored is None or stored["metadata"].get("deletionTimestamp"):
            return
        ds = copy_object(stored)
        revisions = await self.history.claim(ds)
        current, old_revisions = await self._construct_history(ds, revisions)
        hash_ = podutil.labels(current).get(history.HASH_LABEL) or current["metadata"]["name"]
        await self.pod_control.claim(ds, include_finished=True)
        nodes = list(self.nodes.all())
        changed = await self._manage(ds, nodes, hash_)
        strategy = (ds["spec"].get("updateStrategy") or {}).get("type") or "RollingUpdate"
        if not changed and strategy == "RollingUpdate":
            await self._rolling_update(ds, nodes, hash_)
        self.ctx.informers.sync()
        await self._cleanup_history(ds, old_revisions)
        await self._update_status(ds, nodes, hash_)

    def _node_pods(self, ds: JsonObject) -> dict[str, list[JsonObject]]:
        """The DaemonSet's pods by target node; finished pods that are being deleted left out."""
        result: dict[str, list[JsonObject]] = {}
        selector = podutil.label_selector(ds["spec"].get("selector"))
        for pod in self.pod_control.owned(ds):
            if not selector(podutil.labels(pod)):
                continue
            if podutil.is_terminal(pod) and pod["metadata"].get("deletionTimestamp"):
                continue
            result.setdefault(target_node(pod), []).append(pod)
        return result

    async def _construct_history(
        self, ds: JsonObject, revisions: list[JsonObject]
    ) -> tuple[JsonObject, list[JsonObject]]:
        """The revision of the current template (made or renumbered as needed) and the others."""
        data = history.template_patch(ds)
        current = [r for r in revisions if r.get("data") == data]
        old = [r for r in revisions if r.get("data") != data]
        number = history.next_revision(old)
        if not current:
            return await self._snapshot(ds, data, number), old
        keep = history.sort_revisions(current)[-1]
        for duplicate in current:
            if duplicate is not keep:
                old.append(duplicate)
        return await self.history.renumber(keep, number), old

    async def _snapshot(self, ds: JsonObject, data: JsonObject, number: int) -> JsonObject:
        collision = (ds.get("status") or {}).get("collisionCount")
        hash_ = compute_hash(ds["spec"].get("template") or {}, collision)
        revision = history.new_revision(ds, data, number)
        revision["metadata"]["name"] = history.revision_name(ds["metadata"]["name"], hash_)
        revision["metadata"]["labels"][history.HASH_LABEL] = hash_
        try:
            return await self.history.create(revision)
        except StatusError as exc:
            if exc.code != 409:
                raise
        existing = self.history.informer.get(ds["metadata"]["namespace"], revision["metadata"]["name"])
        if (
            existing is not None
            and existing.get("data") == data
            and podutil.controlled_by(existing, ds["metadata"]["uid"])
        ):
            return await self.history.renumber(existing, number)
        ds["status"] = {**(ds.get("status") or {}), "collisionCount": int(collision or 0) + 1}
        await self._write_status(ds, ds["status"])
        raise StatusError(409, "Conflict", f"controllerrevision {revision['metadata']['name']} exists")

    async def _manage(self, ds: JsonObject, nodes: list[JsonObject], hash_: str) -> bool:
        """Create missing daemon pods and delete the ones that should not be there (`dsc.manage`)."""
        node_pods = self._node_pods(ds)
        surge = rolling_limits(ds, len(nodes))[0] > 0 and self._rolling(ds)
        to_create: list[str] = []
        to_delete: list[JsonObject] = []
        now = time.monotonic()
        uid = ds["metadata"]["uid"]
        node_names = set()
        for node in nodes:
            name = node["metadata"]["name"]
            node_names.add(name)
            run, keep = should_run(ds, node)
            pods = node_pods.get(name) or []
            if run and not pods:
                to_create.append(name)
            elif keep:
                running: list[JsonObject] = []
                for pod in pods:
                    if pod["metadata"].get("deletionTimestamp"):
                        continue
                    if podutil.phase(pod) == "Failed":
                        backoff, until = self._failed.get((uid, name), (FAILED_BACKOFF_START, 0.0))
                        if now < until:
                            self.enqueue_after(object_key(ds), until - now)
                            continue
                        self._failed[(uid, name)] = (min(backoff * 2, FAILED_BACKOFF_MAX), now + backoff)
                        to_delete.append(pod)
                    elif podutil.phase(pod) == "Succeeded":
                        to_delete.append(pod)
                    else:
                        running.append(pod)
                to_delete.extend(self._excess(running, hash_, surge, ds))
            else:
                to_delete.extend(p for p in pods if not p["metadata"].get("deletionTimestamp"))
        for name, pods in node_pods.items():
            if name not in node_names:  # the node is gone: so are its pods, as the pod GC would see to
                to_delete.extend(p for p in pods if not p["metadata"].get("deletionTimestamp"))
        return await self._sync_nodes(ds, to_delete, to_create, hash_)

    @staticmethod
    def _rolling(ds: Mapping[str, Any]) -> bool:
        return ((ds["spec"].get("updateStrategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"

    @staticmethod
    def _excess(
        running: list[JsonObject], hash_: str, surge: bool, ds: Mapping[str, Any]
    ) -> list[JsonObject]:
        """Daemon pods beyond the one a node may run (two while a surge replaces an old one)."""
        if len(running) <= 1:
            return []
        ordered = oldest_first(running)
        if not surge:
            return ordered[1:]
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        now = utc_now()
        new = next((p for p in ordered if is_updated(p, hash_)), None)
        old = next((p for p in ordered if not is_updated(p, hash_)), None)
        keep: list[JsonObject] = []
        if new is not None and old is not None and not podutil.is_available(new, min_ready, now):
            keep = [new, old] if podutil.is_available(old, min_ready, now) else [new]
        else:
            keep = [new or ordered[0]]
        return [p for p in ordered if all(p is not k for k in keep)]

    async def _sync_nodes(
        self, ds: JsonObject, to_delete: list[JsonObject], to_create: list[str], hash_: str
    ) -> bool:
        errors: list[Exception] = []
        for pod in to_delete:
            try:
                await self.pod_control.delete(ds, pod)
            except StatusError as exc:
                errors.append(exc)
        nodes = iter(to_create)

        async def create() -> None:
            await self.pod_control.create(ds, daemon_pod(ds, next(nodes), hash_))

        _, error = await slow_start(len(to_create), create)
        if error is not None:
            errors.append(error)
        if errors:
            raise errors[0]
        self.ctx.informers.sync()
        return bool(to_delete or to_create)

    async def _rolling_update(self, ds: JsonObject, nodes: list[JsonObject], hash_: str) -> None:
        eligible = {node["metadata"]["name"]: should_run(ds, node)[0] for node in nodes}
        now = utc_now()
        to_delete, to_create = rolling_update_plan(ds, self._node_pods(ds), eligible, hash_, now)
        await self._sync_nodes(ds, to_delete, to_create, hash_)
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        if min_ready:
            waits = [
                wait
                for pods in self._node_pods(ds).values()
                for pod in pods
                if (wait := podutil.available_in(pod, min_ready, now)) is not None and wait > 0
            ]
            if waits:
                self.enqueue_after(object_key(ds), min(waits) + 1.0)

    async def _cleanup_history(self, ds: JsonObject, old_revisions: list[JsonObject]) -> None:
        live_hashes = {
            podutil.labels(pod).get(history.HASH_LABEL)
            for pods in self._node_pods(ds).values()
            for pod in pods
        }
        live = {
            r["metadata"]["name"]
            for r in old_revisions
            if podutil.labels(r).get(history.HASH_LABEL) in live_hashes
        }
        await self.history.truncate(ds, old_revisions, live)

    async def _update_status(self, ds: JsonObject, nodes: list[JsonObject], hash_: str) -> None:
        current = self.daemon_sets.get(*object_key(ds))
        if current is None or current["metadata"].get("uid") != ds["metadata"]["uid"]:
            return
        status = daemon_set_status(current, nodes, self._node_pods(current), hash_, utc_now())
        if status != (current.get("status") or {}):
            await self._write_status(current, status)

    async def _write_status(self, ds: JsonObject, status: JsonObject) -> None:
        namespace, name = object_key(ds)
        obj = copy_object(ds)
        obj["status"] = status
        await self.ctx.objects.update(
            self.ctx.target(*DAEMON_SETS, namespace, name, "status"), obj, self.ctx.options(MANAGER)
        )
