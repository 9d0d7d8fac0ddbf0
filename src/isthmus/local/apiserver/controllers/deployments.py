"""Deployments, rolled out as kube-controller-manager's deployment controller rolls them out.

Each pod template gets a ReplicaSet named `<deployment>-<pod-template-hash>` (label `pod-template-hash`, the
hash of the template and `status.collisionCount` as `compute_hash` computes it), controlled by the Deployment
and annotated with its `deployment.kubernetes.io/revision` (and revision-history, desired-replicas,
max-replicas, and the Deployment's own annotations such as `kubernetes.io/change-cause`). A template change
makes a new ReplicaSet (or brings back an older one with the same template, a rollback), which takes over
from the old ones by `spec.strategy`: RollingUpdate within maxSurge/maxUnavailable, or Recreate (all old pods
gone first). Scaling is proportional across ReplicaSets mid-rollout; `spec.paused` stops rollouts; old
ReplicaSets beyond `revisionHistoryLimit` are deleted. Status: replicas, updatedReplicas, readyReplicas,
availableReplicas, unavailableReplicas, observedGeneration, collisionCount and the Available / Progressing
conditions with Kubernetes' reasons (`progressDeadlineSeconds` included). Event: ScalingReplicaSet.
`kubectl rollout status|history|undo|restart|pause|resume` work on top of this, as on Kubernetes.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson

from isthmus.local.apiserver.clock import now as utc_now
from isthmus.local.apiserver.clock import parse, timestamp
from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.informers import (
    CONTROLLER,
    DEPLOYMENTS,
    PODS,
    REPLICA_SETS,
    Informer,
    controller_of,
    object_key,
)
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object
from isthmus.local.events import NORMAL, WARNING

MANAGER = "deployment-controller"
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
NOT_COPIED = frozenset(
    {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO}
)
MAX_REVISION_HISTORY_CHARS = 2000
NO_DEADLINE = 2**31 - 1

# Condition reasons (deploymentutil).
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"
FAILED_RS_CREATE = "ReplicaSetCreateError"

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's rand alphabet: no vowels, no 0, 1, 3


# -- the pod-template-hash ------------------------------------------------------------------------------


def fnv32a(data: bytes, value: int = 0x811C9DC5) -> int:
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def safe_encode(text: str) -> str:
    """`rand.SafeEncodeString`: each character mapped into the safe alphabet."""
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in text)


def compute_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """`controller.ComputeHash`: FNV-32a over the pod template (here its canonical JSON, sorted keys, where
    Kubernetes hashes its Go structure), then `collisionCount` as 8 little-endian bytes; the decimal value
    safe-encoded."""
    value = fnv32a(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        value = fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), value)
    return safe_encode(str(value))


def _without_hash(template: Mapping[str, Any]) -> JsonObject:
    copied = copy_object(dict(template))
    meta = copied.get("metadata") or {}
    labels = meta.get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
        if not labels:
            del meta["labels"]
    for key in [k for k, v in meta.items() if v in (None, {}, [])]:
        del meta[key]
    if "metadata" in copied and not meta:
        del copied["metadata"]
    return copied


def equal_ignore_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two pod templates are the same but for the pod-template-hash label (`EqualIgnoreHash`)."""
    return _without_hash(a) == _without_hash(b)


# -- numbers ----------------------------------------------------------------------------------------------


def replicas(obj: Mapping[str, Any] | None) -> int:
    if obj is None:
        return 0
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _status_int(obj: Mapping[str, Any] | None, key: str) -> int:
    return int(((obj or {}).get("status") or {}).get(key) or 0)


def is_rolling(d: Mapping[str, Any]) -> bool:
    return ((d["spec"].get("strategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """maxSurge rounded up and maxUnavailable rounded down; never both zero (`ResolveFenceposts`)."""
    surge = podutil.scaled_value(max_surge if max_surge is not None else 0, desired, True)
    unavailable = podutil.scaled_value(max_unavailable if max_unavailable is not None else 0, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _fenceposts(d: Mapping[str, Any]) -> tuple[int, int]:
    rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(
        rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%"), replicas(d)
    )


def max_surge(d: Mapping[str, Any]) -> int:
    return _fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Mapping[str, Any]) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(_fenceposts(d)[1], replicas(d))


def new_rs_new_replicas(
    d: Mapping[str, Any], all_rss: Iterable[JsonObject], new_rs: Mapping[str, Any]
) -> int:
    """How many replicas the new ReplicaSet may have now (`NewRSNewReplicas`)."""
    if not is_rolling(d):
        return replicas(d)
    current = sum(replicas(rs) for rs in all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + scale_up


def revision(rs: Mapping[str, Any]) -> int:
    value = (rs["metadata"].get("annotations") or {}).get(REVISION, "")
    try:
        return int(value)
    except ValueError:
        return 0


def _created_key(rs: Mapping[str, Any]) -> tuple[str, str]:
    return rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"]


def active(rss: Iterable[JsonObject]) -> list[JsonObject]:
    return [rs for rs in rss if replicas(rs) > 0]


def set_replicas_annotations(rs: JsonObject, desired: int, max_total: int) -> bool:
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_total))):
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def set_new_rs_annotations(d: Mapping[str, Any], rs: JsonObject, new_revision: int, exists: bool) -> bool:
    """Copy the Deployment's annotations, raise the revision (keeping the old one in revision-history) and,
    for a new ReplicaSet, set the replicas annotations (`SetNewReplicaSetAnnotations`). True if changed."""
    annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in (d["metadata"].get("annotations") or {}).items():
        if key not in NOT_COPIED and annotations.get(key) != value:
            annotations[key] = value
            changed = True
    old_text = annotations.get(REVISION)
    try:
        old = int(old_text) if old_text is not None else 0
    except ValueError:
        return changed
    if old < new_revision:
        annotations[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = [r for r in (annotations.get(REVISION_HISTORY) or "").split(",") if r]
            history.append(old_text)
            while len(",".join(history)) > MAX_REVISION_HISTORY_CHARS and len(history) > 1:
                history.pop(0)
            annotations[REVISION_HISTORY] = ",".join(history)
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    if not annotations:
        del rs["metadata"]["annotations"]
    return changed


# -- status -----------------------------------------------------------------------------------------------


def new_condition(type_: str, status: str, reason: str, message: str, now: str) -> JsonObject:
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def condition(status: Mapping[str, Any], type_: str) -> JsonObject | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == type_:
            result: JsonObject = cond
            return result
    return None


def calculate_status(
    all_rss: list[JsonObject], new_rs: JsonObject | None, d: Mapping[str, Any], now: str
) -> JsonObject:
    """The Deployment's status from its ReplicaSets (`calculateStatus`); zero counts omitted as in the API."""
    available = sum(_status_int(rs, "availableReplicas") for rs in all_rss)
    total = sum(replicas(rs) for rs in all_rss)
    old = d.get("status") or {}
    status: JsonObject = {}
    values = (
        ("observedGeneration", int(d["metadata"].get("generation") or 0)),
        ("replicas", sum(_status_int(rs, "replicas") for rs in all_rss)),
        ("updatedReplicas", _status_int(new_rs, "replicas")),
        ("readyReplicas", sum(_status_int(rs, "readyReplicas") for rs in all_rss)),
        ("availableReplicas", available),
        ("unavailableReplicas", max(0, total - available)),
    )
    for key, value in values:
        if value:
            status[key] = value
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    status["conditions"] = [dict(c) for c in old.get("conditions") or ()]
    if available >= replicas(d) - max_unavailable(d):
        cond = new_condition("Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now)
    else:
        cond = new_condition(
            "Available", "False", MIN_UNAVAILABLE, "Deployment does not have minimum availability.", now
        )
    podutil.set_condition(status, cond)
    return status


def has_progress_deadline(d: Mapping[str, Any]) -> bool:
    deadline = d["spec"].get("progressDeadlineSeconds")
    return deadline is not None and int(deadline) != NO_DEADLINE


def deployment_complete(d: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    want = replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation") or 0)
    )


def deployment_progressing(d: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    old = d.get("status") or {}

    def get(s: Mapping[str, Any], key: str) -> int:
        return int(s.get(key) or 0)

    return (
        get(status, "updatedReplicas") > get(old, "updatedReplicas")
        or get(status, "replicas") - get(status, "updatedReplicas")
        < get(old, "replicas") - get(old, "updatedReplicas")
        or get(status, "readyReplicas") > get(old, "readyReplicas")
        or get(status, "availableReplicas") > get(old, "availableReplicas")
    )


def deployment_timed_out(d: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = condition(status, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse(cond.get("lastUpdateTime") or timestamp(now))
    return (now - since).total_seconds() > int(d["spec"]["progressDeadlineSeconds"])


def _replica_set_fraction(rs: Mapping[str, Any], d: Mapping[str, Any]) -> int:
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_replicas = replicas(d) + max_surge(d)
    annotated = (rs["metadata"].get("annotations") or {}).get(MAX_REPLICAS)
    try:
        max_annotated = int(annotated) if annotated is not None else _status_int(d, "replicas")
    except ValueError:
        max_annotated = _status_int(d, "replicas")
    if max_annotated == 0:
        return 0
    size = replicas(rs) * deployment_replicas / max_annotated
    return math.floor(size + 0.5) - replicas(rs)


def proportion(rs: Mapping[str, Any], d: Mapping[str, Any], to_add: int, added: int) -> int:
    """The share of a scaling of the Deployment by `to_add` that goes to `rs` (`GetProportion`)."""
    if replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# -- the controller ---------------------------------------------------------------------------------------


class DeploymentController(Reconciler):
    name = "deployment-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(self.name)
        self.deployments: Informer = ctx.informers.get(DEPLOYMENTS)
        self.replica_sets: Informer = ctx.informers.get(REPLICA_SETS)
        self.pods: Informer = ctx.informers.get(PODS)
        self.replica_sets.index_by(CONTROLLER)
        self.pods.index_by(CONTROLLER)
        self.deployments.add_handler(self._on_deployment, self.enqueue_all)
        self.replica_sets.add_handler(self._on_replica_set, self.enqueue_all)
        self.pods.add_handler(self._on_pod)

    def all_keys(self) -> Iterable[Hashable]:
        return self.deployments.keys()

    def _on_deployment(self, event: WatchEvent) -> None:
        self.enqueue(object_key(event.obj))

    def _on_replica_set(self, event: WatchEvent) -> None:
        namespace = event.obj["metadata"].get("namespace", "")
        refs = [controller_of(event.obj)]
        if event.old is not None:
            refs.append(controller_of(event.old))
        for ref in refs:
            if ref is not None and ref.get("kind") == "Deployment":
                self.enqueue((namespace, ref["name"]))
        if refs[0] is None and event.type != DELETED:
            rs_labels = podutil.labels(event.obj)
            for d in self.deployments.in_namespace(namespace).values():
                if podutil.label_selector(d["spec"].get("selector"))(rs_labels):
                    self.enqueue(object_key(d))

    def _on_pod(self, event: WatchEvent) -> None:
        """A Recreate rollout waits for the old pods to be gone."""
        if event.type != DELETED:
            return
        ref = controller_of(event.obj)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replica_sets.get(event.obj["metadata"].get("namespace", ""), ref["name"])
        owner = controller_of(rs) if rs is not None else None
        if rs is not None and owner is not None and owner.get("kind") == "Deployment":
            d = self.deployments.get(rs["metadata"]["namespace"], owner["name"])
            if d is not None and not is_rolling(d):
                self.enqueue(object_key(d))

    # -- reconcile ----------------------------------------------------------------------------------------

    async def reconcile(self, key: Any) -> None:
        namespace, name = key
        stored = self.deployments.get(namespace, name)
        if stored is None:
            return
        d = copy_object(stored)
        rs_list = await self._claim_replica_sets(d)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = await self._get_all(d, rs_list, create=False)
            await self._sync_deployment_status(self._all(old_rss, new_rs), new_rs, d)
            return
        await self._check_paused_conditions(d)
        if d["spec"].get("paused") or self._is_scaling_event(d, rs_list):
            await self._sync(d, rs_list)
        elif is_rolling(d):
            await self._rollout_rolling(d, rs_list)
        else:
            await self._rollout_recreate(d, rs_list)

    @staticmethod
    def _all(old_rss: list[JsonObject], new_rs: JsonObject | None) -> list[JsonObject]:
        return [*old_rss, new_rs] if new_rs is not None else list(old_rss)

    async def _claim_replica_sets(self, d: JsonObject) -> list[JsonObject]:
        """The ReplicaSets the Deployment controls, after adopting matching orphans and releasing the ones
        that no longer match (`ReplicaSetControllerRefManager.ClaimReplicaSets`)."""
        meta = d["metadata"]
        owned = self.replica_sets.indexed(CONTROLLER, meta["uid"]).values()
        return await podutil.claim(
            d, owned, lambda: self.replica_sets.in_namespace(meta["namespace"]).values(), self._write_rs
        )

    async def _write_rs(self, rs: JsonObject) -> JsonObject:
        namespace, name = object_key(rs)
        result = await self.ctx.objects.update(
            self.ctx.target("apps", "replicasets", namespace, name), rs, self.ctx.options(MANAGER)
        )
        return result.obj

    async def _write_deployment(self, d: JsonObject, subresource: str = "") -> None:
        """Write `d` (its status, or else its metadata), then make `d` the stored object."""
        namespace, name = object_key(d)
        result = await self.ctx.objects.update(
            self.ctx.target("apps", "deployments", namespace, name, subresource),
            copy_object(d),
            self.ctx.options(MANAGER),
        )
        d.clear()
        d.update(copy_object(result.obj))

    def _is_scaling_event(self, d: JsonObject, rs_list: list[JsonObject]) -> bool:
        """An active ReplicaSet was sized for another replica count than the Deployment's."""
        for rs in active(rs_list):
            desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
            if desired is not None and desired.isdigit() and int(desired) != replicas(d):
                return True
        return False

    async def _check_paused_conditions(self, d: JsonObject) -> None:
        if not has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        cond = condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused_recorded = cond is not None and cond.get("reason") == PAUSED
        now = timestamp()
        if d["spec"].get("paused") and not paused_recorded:
            podutil.set_condition(
                status, new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused", now)
            )
        elif not d["spec"].get("paused") and paused_recorded:
            podutil.set_condition(
                status, new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed", now)
            )
        else:
            return
        await self._write_deployment(d, "status")

    # -- the new and old ReplicaSets --------------------------------------------------------------------

    async def _get_all(
        self, d: JsonObject, rs_list: list[JsonObject], create: bool
    ) -> tuple[JsonObject | None, list[JsonObject]]:
        """The new ReplicaSet (created when asked and missing, its revision synced) and all the old ones."""
        ordered = sorted(rs_list, key=_created_key)
        template = d["spec"].get("template") or {}
        new_rs = next(
            (rs for rs in ordered if equal_ignore_hash(rs["spec"].get("template") or {}, template)), None
        )
        old_rss = [
            rs for rs in ordered if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
        ]
        new_rs = await self._get_new_replica_set(d, new_rs, old_rss, create)
        return new_rs, old_rss

    async def _get_new_replica_set(
        self, d: JsonObject, existing: JsonObject | None, old_rss: list[JsonObject], create: bool
    ) -> JsonObject | None:
        new_revision = max((revision(rs) for rs in old_rss), default=0) + 1
        status = d.setdefault("status", {})
        now = timestamp()
        if existing is not None:
            rs = copy_object(existing)
            changed = set_new_rs_annotations(d, rs, new_revision, exists=True)
            min_ready = int(d["spec"].get("minReadySeconds") or 0)
            if changed or int(rs["spec"].get("minReadySeconds") or 0) != min_ready:
                if min_ready:
                    rs["spec"]["minReadySeconds"] = min_ready
                else:
                    rs["spec"].pop("minReadySeconds", None)
                return await self._write_rs(rs)
            rs_revision = (rs["metadata"].get("annotations") or {}).get(REVISION, "")
            annotations_changed = self._set_revision(d, rs_revision)
            status_changed = False
            if has_progress_deadline(d) and condition(status, "Progressing") is None:
                message = f'Found new replica set "{rs["metadata"]["name"]}"'
                podutil.set_condition(
                    status, new_condition("Progressing", "True", FOUND_NEW_RS, message, now)
                )
                status_changed = True
            await self._write_revision_and_status(d, annotations_changed, status_changed)
            return rs
        if not create:
            return None
        return await self._create_new_replica_set(d, old_rss, new_revision)

    def _set_revision(self, d: JsonObject, value: str) -> bool:
        annotations = d["metadata"].setdefault("annotations", {})
        if annotations.get(REVISION) == value:
            return False
        annotations[REVISION] = value
        return True

    async def _write_revision_and_status(self, d: JsonObject, annotations: bool, status: bool) -> None:
        if annotations:
            wanted = copy_object(d.get("status") or {})
            await self._write_deployment(d)
            if status or wanted != d.get("status"):
                d["status"] = wanted
                await self._write_deployment(d, "status")
        elif status:
            await self._write_deployment(d, "status")

    async def _create_new_replica_set(
        self, d: JsonObject, old_rss: list[JsonObject], new_revision: int
    ) -> JsonObject:
        meta = d["metadata"]
        status = d.setdefault("status", {})
        collision_count = status.get("collisionCount")
        template = copy_object(d["spec"].get("template") or {})
        template_hash = compute_hash(template, collision_count)
        template_meta = template.setdefault("metadata", {})
        template_meta["labels"] = {**(template_meta.get("labels") or {}), HASH_LABEL: template_hash}
        selector = copy_object(d["spec"].get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: template_hash}
        name = f"{meta['name']}-{template_hash}"
        spec: JsonObject = {"replicas": 0, "selector": selector, "template": template}
        if d["spec"].get("minReadySeconds"):
            spec["minReadySeconds"] = d["spec"]["minReadySeconds"]
        rs: JsonObject = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": dict(template_meta["labels"]),
                "ownerReferences": [podutil.controller_reference(d)],
            },
            "spec": spec,
        }
        spec["replicas"] = new_rs_new_replicas(d, [*old_rss, rs], rs)
        set_new_rs_annotations(d, rs, new_revision, exists=False)
        now = timestamp()
        try:
            result = await self.ctx.objects.create(
                self.ctx.target("apps", "replicasets", meta["namespace"]), rs, self.ctx.options(MANAGER)
            )
            created, already_existed = result.obj, False
        except StatusError as exc:
            if exc.code == 409:
                found = self.replica_sets.get(meta["namespace"], name)
                if (
                    found is not None
                    and podutil.controlled_by(found, meta["uid"])
                    and equal_ignore_hash(
                        found["spec"].get("template") or {}, d["spec"].get("template") or {}
                    )
                ):
                    created, already_existed = found, True
                else:
                    # A hash collision: another template hashes the same; count it and try again.
                    status["collisionCount"] = int(collision_count or 0) + 1
                    await self._write_deployment(d, "status")
                    raise
            elif exc.code == 403 and "being terminated" in exc.message:
                raise
            else:
                message = f'Failed to create new replica set "{name}": {exc.message}'
                if has_progress_deadline(d):
                    podutil.set_condition(
                        status, new_condition("Progressing", "False", FAILED_RS_CREATE, message, now)
                    )
                    await self._write_deployment(d, "status")
                self.events.event(d, WARNING, FAILED_RS_CREATE, message)
                raise
        if not already_existed and replicas(created) > 0:
            self.events.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas(created)}",
            )
        annotations_changed = self._set_revision(d, str(new_revision))
        status_changed = False
        if not already_existed and has_progress_deadline(d):
            message = f'Created new replica set "{created["metadata"]["name"]}"'
            podutil.set_condition(status, new_condition("Progressing", "True", NEW_RS_CREATED, message, now))
            status_changed = True
        await self._write_revision_and_status(d, annotations_changed, status_changed)
        return created

    # -- scaling ----------------------------------------------------------------------------------------

    async def _scale_replica_set(
        self, rs: JsonObject, new_scale: int, d: JsonObject, operation: str
    ) -> tuple[bool, JsonObject]:
        size_changes = replicas(rs) != new_scale
        obj = copy_object(rs)
        annotations_change = set_replicas_annotations(obj, replicas(d), replicas(d) + max_surge(d))
        if not size_changes and not annotations_change:
            return False, rs
        old_scale = replicas(rs)
        obj["spec"]["replicas"] = new_scale
        updated = await self._write_rs(obj)
        if size_changes:
            self.events.event(
                d,
                NORMAL,
                "ScalingReplicaSet",
                f"Scaled {operation} replica set {rs['metadata']['name']} from {old_scale} to {new_scale}",
            )
        return size_changes, updated

    async def _scale_and_record(
        self, rs: JsonObject, new_scale: int, d: JsonObject
    ) -> tuple[bool, JsonObject]:
        if replicas(rs) == new_scale:
            return False, rs
        operation = "up" if replicas(rs) < new_scale else "down"
        return await self._scale_replica_set(rs, new_scale, d, operation)

    @staticmethod
    def _replace(rss: list[JsonObject], updated: JsonObject) -> list[JsonObject]:
        uid = updated["metadata"]["uid"]
        return [updated if rs["metadata"]["uid"] == uid else rs for rs in rss]

    async def _scale(
        self, d: JsonObject, new_rs: JsonObject | None, old_rss: list[JsonObject]
    ) -> tuple[JsonObject | None, list[JsonObject]]:
        """Scale the ReplicaSets to a new replica count of the Deployment (`dc.scale`): all of it to the only
        active one, old ones to 0 once the new one is saturated, else proportionally (RollingUpdate)."""
        newest_first = sorted(old_rss, key=_created_key, reverse=True)
        everything = self._all(newest_first, new_rs)
        live = active(everything)
        target: JsonObject | None = None
        if len(live) == 1:
            target = live[0]
        elif not live and everything:
            target = new_rs if new_rs is not None else newest_first[0]
        if target is not None:
            if replicas(target) != replicas(d):
                _, updated = await self._scale_and_record(target, replicas(d), d)
                if new_rs is not None and updated["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                    new_rs = updated
                old_rss = self._replace(old_rss, updated)
            return new_rs, old_rss
        if self._is_saturated(d, new_rs):
            for rs in active(old_rss):
                _, updated = await self._scale_and_record(rs, 0, d)
                old_rss = self._replace(old_rss, updated)
            return new_rs, old_rss
        if not is_rolling(d):
            return new_rs, old_rss
        allowed = replicas(d) + max_surge(d) if replicas(d) > 0 else 0
        to_add = allowed - sum(replicas(rs) for rs in live)
        if to_add > 0:  # bigger first; among equals the newer first
            live.sort(key=_created_key, reverse=True)
            live.sort(key=lambda rs: -replicas(rs))
            operation = "up"
        elif to_add < 0:  # bigger first; among equals the older first
            live.sort(key=_created_key)
            live.sort(key=lambda rs: -replicas(rs))
            operation = "down"
        else:
            operation = ""
        sizes: dict[str, int] = {}
        added = 0
        for rs in live:
            share = proportion(rs, d, to_add, added) if to_add else 0
            sizes[rs["metadata"]["uid"]] = replicas(rs) + share
            added += share
        for i, rs in enumerate(live):
            uid = rs["metadata"]["uid"]
            if i == 0 and to_add:
                sizes[uid] = max(0, sizes[uid] + to_add - added)
            _, updated = await self._scale_replica_set(rs, sizes[uid], d, operation)
            if new_rs is not None and uid == new_rs["metadata"]["uid"]:
                new_rs = updated
            old_rss = self._replace(old_rss, updated)
        return new_rs, old_rss

    @staticmethod
    def _is_saturated(d: JsonObject, rs: JsonObject | None) -> bool:
        if rs is None:
            return False
        desired = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
        return (
            replicas(rs) == replicas(d)
            and desired == str(replicas(d))
            and _status_int(rs, "availableReplicas") == replicas(d)
        )

    async def _sync(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        """Scaling without a rollout (a paused Deployment, or a new replica count)."""
        new_rs, old_rss = await self._get_all(d, rs_list, create=False)
        new_rs, old_rss = await self._scale(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_deployment_status(self._all(old_rss, new_rs), new_rs, d)

    # -- rollouts ---------------------------------------------------------------------------------------

    async def _rollout_rolling(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        new_rs, old_rss = await self._get_all(d, rs_list, create=True)
        if new_rs is None:
            raise StatusError(409, "Conflict", "the new ReplicaSet is not there yet")
        scaled_up, new_rs = await self._reconcile_new_replica_set(self._all(old_rss, new_rs), new_rs, d)
        if scaled_up:
            await self._sync_rollout_status(self._all(old_rss, new_rs), new_rs, d)
            return
        scaled_down, old_rss = await self._reconcile_old_replica_sets(old_rss, new_rs, d)
        if scaled_down:
            await self._sync_rollout_status(self._all(old_rss, new_rs), new_rs, d)
            return
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(self._all(old_rss, new_rs), new_rs, d)

    async def _reconcile_new_replica_set(
        self, all_rss: list[JsonObject], new_rs: JsonObject, d: JsonObject
    ) -> tuple[bool, JsonObject]:
        if replicas(new_rs) == replicas(d):
            return False, new_rs
        if replicas(new_rs) > replicas(d):
            return await self._scale_and_record(new_rs, replicas(d), d)
        return await self._scale_and_record(new_rs, new_rs_new_replicas(d, all_rss, new_rs), d)

    async def _reconcile_old_replica_sets(
        self, old_rss: list[JsonObject], new_rs: JsonObject, d: JsonObject
    ) -> tuple[bool, list[JsonObject]]:
        """Scale old ReplicaSets down as far as maxUnavailable allows, unhealthy replicas first."""
        old_active = active(old_rss)
        if sum(replicas(rs) for rs in old_active) == 0:
            return False, old_rss
        all_pods = sum(replicas(rs) for rs in [*old_active, new_rs])
        min_available = replicas(d) - max_unavailable(d)
        new_unavailable = replicas(new_rs) - _status_int(new_rs, "availableReplicas")
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False, old_rss
        scaled = 0
        for rs in sorted(old_active, key=_created_key):  # cleanupUnhealthyReplicas
            if scaled >= max_scaled_down:
                break
            unhealthy = replicas(rs) - _status_int(rs, "availableReplicas")
            if replicas(rs) == 0 or unhealthy <= 0:
                continue
            count = min(max_scaled_down - scaled, unhealthy)
            _, updated = await self._scale_and_record(rs, replicas(rs) - count, d)
            old_rss = self._replace(old_rss, updated)
            scaled += count
        old_active = active(old_rss)
        available = sum(_status_int(rs, "availableReplicas") for rs in [*old_active, new_rs])
        if available > min_available:  # scaleDownOldReplicaSetsForRollingUpdate
            total, done = available - min_available, 0
            for rs in sorted(old_active, key=_created_key):
                if done >= total:
                    break
                count = min(replicas(rs), total - done)
                _, updated = await self._scale_and_record(rs, replicas(rs) - count, d)
                old_rss = self._replace(old_rss, updated)
                done += count
            scaled += done
        return scaled > 0, old_rss

    async def _rollout_recreate(self, d: JsonObject, rs_list: list[JsonObject]) -> None:
        new_rs, old_rss = await self._get_all(d, rs_list, create=False)
        scaled_down = False
        for rs in active(old_rss):
            changed, updated = await self._scale_and_record(rs, 0, d)
            old_rss = self._replace(old_rss, updated)
            scaled_down = scaled_down or changed
        if scaled_down or self._old_pods_running(new_rs, old_rss):
            await self._sync_rollout_status(self._all(old_rss, new_rs), new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self._get_all(d, [*old_rss], create=True)
            if new_rs is None:
                raise StatusError(409, "Conflict", "the new ReplicaSet is not there yet")
        _, new_rs = await self._scale_and_record(new_rs, replicas(d), d)
        if deployment_complete(d, d.get("status") or {}):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(self._all(old_rss, new_rs), new_rs, d)

    def _old_pods_running(self, new_rs: JsonObject | None, old_rss: list[JsonObject]) -> bool:
        if sum(_status_int(rs, "replicas") for rs in old_rss) > 0:
            return True
        for rs in old_rss:
            if new_rs is not None and rs["metadata"]["uid"] == new_rs["metadata"]["uid"]:
                continue
            for pod in self.pods.indexed(CONTROLLER, rs["metadata"]["uid"]).values():
                if not podutil.is_terminal(pod):
                    return True
        return False

    async def _cleanup(self, d: JsonObject, old_rss: list[JsonObject]) -> None:
        """Delete the oldest revisions beyond revisionHistoryLimit (`cleanupDeployment`)."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        excess = len(alive) - int(limit)
        if excess <= 0:
            return
        for rs in sorted(alive, key=lambda rs: (revision(rs), _created_key(rs)))[:excess]:
            observed = _status_int(rs, "observedGeneration")
            if (
                _status_int(rs, "replicas")
                or replicas(rs)
                or int(rs["metadata"].get("generation") or 0) > observed
            ):
                continue
            namespace, name = object_key(rs)
            try:
                await self.ctx.objects.delete(
                    self.ctx.target("apps", "replicasets", namespace, name),
                    {"preconditions": {"uid": rs["metadata"]["uid"]}},
                    self.ctx.options(MANAGER),
                )
            except StatusError as exc:
                if exc.code != 404:
                    raise

    # -- status -----------------------------------------------------------------------------------------

    async def _sync_deployment_status(
        self, all_rss: list[JsonObject], new_rs: JsonObject | None, d: JsonObject
    ) -> None:
        status = calculate_status(all_rss, new_rs, d, timestamp())
        if status != (d.get("status") or {}):
            d["status"] = status
            await self._write_deployment(d, "status")

    async def _sync_rollout_status(
        self, all_rss: list[JsonObject], new_rs: JsonObject | None, d: JsonObject
    ) -> None:
        now_dt = utc_now()
        now = timestamp(now_dt)
        status = calculate_status(all_rss, new_rs, d, now)
        if not has_progress_deadline(d):
            podutil.remove_condition(status, "Progressing")
        current = condition(d.get("status") or {}, "Progressing")
        complete = (
            int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
            and current is not None
            and current.get("reason") == NEW_RS_AVAILABLE
        )
        rs_name = new_rs["metadata"]["name"] if new_rs is not None else ""
        if has_progress_deadline(d) and not complete:
            if deployment_complete(d, status):
                message = (
                    f'ReplicaSet "{rs_name}" has successfully progressed.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" has successfully progressed.'
                )
                podutil.set_condition(
                    status, new_condition("Progressing", "True", NEW_RS_AVAILABLE, message, now)
                )
            elif deployment_progressing(d, status):
                message = (
                    f'ReplicaSet "{rs_name}" is progressing.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" is progressing.'
                )
                cond = new_condition("Progressing", "True", RS_UPDATED, message, now)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime", now)
                    podutil.remove_condition(status, "Progressing")
                podutil.set_condition(status, cond)
            elif deployment_timed_out(d, status, now_dt):
                message = (
                    f'ReplicaSet "{rs_name}" has timed out progressing.'
                    if rs_name
                    else f'Deployment "{d["metadata"]["name"]}" has timed out progressing.'
                )
                podutil.set_condition(status, new_condition("Progressing", "False", TIMED_OUT, message, now))
        failure = next(
            (
                c
                for rs in all_rss
                for c in (rs.get("status") or {}).get("conditions") or ()
                if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
            ),
            None,
        )
        if failure is not None:
            podutil.set_condition(
                status,
                new_condition(
                    "ReplicaFailure", "True", failure.get("reason", ""), failure.get("message", ""), now
                ),
            )
        else:
            podutil.remove_condition(status, "ReplicaFailure")
        if status == (d.get("status") or {}):
            self._requeue_stuck(d, status, now_dt)
            return
        d["status"] = status
        await self._write_deployment(d, "status")

    def _requeue_stuck(self, d: JsonObject, status: JsonObject, now: datetime) -> None:
        """Look again when the progress deadline would pass (`requeueStuckDeployment`)."""
        cond = condition(d.get("status") or {}, "Progressing")
        if not has_progress_deadline(d) or cond is None:
            return
        if deployment_complete(d, status) or cond.get("reason") == TIMED_OUT:
            return
        since = parse(cond.get("lastUpdateTime") or timestamp(now))
        after = (since - now).total_seconds() + int(d["spec"]["progressDeadlineSeconds"])
        self.enqueue_after(object_key(d), max(after, 0.0) + 1.0)
