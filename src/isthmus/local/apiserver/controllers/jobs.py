"""Jobs run to completion, as kube-controller-manager's job controller (1.32) runs them: up to `parallelism`
pods at once (never more than the completions still missing), until `completions` pods succeeded (or, without
completions, until one succeeded and the others finished); pods named `<job>-xxxxx`, or
`<job>-<index>-xxxxx` with the completion index in annotation, label, hostname and `JOB_COMPLETION_INDEX`
for `completionMode: Indexed`. Finished pods are counted through the `batch.kubernetes.io/job-tracking`
finalizer and `status.uncountedTerminatedPods`, so none is counted twice or lost; a deleted pod counts as
failed. After a failure new pods wait 10 s, doubling up to 10 minutes. More failures than `backoffLimit`
(for restartPolicy OnFailure: container restarts) or `activeDeadlineSeconds` passed fail the Job: active pods
are deleted and FailureTarget then Failed are set. Success sets SuccessCriteriaMet then Complete
(`CompletionsReached`) and completionTime. `suspend` deletes active pods (condition Suspended);
`ttlSecondsAfterFinished` deletes a finished Job (the TTL-after-finished controller). Status: startTime,
active, ready, terminating, succeeded, failed, completedIndexes. Events: SuccessfulCreate, SuccessfulDelete,
Completed, BackoffLimitExceeded, DeadlineExceeded, Suspended, Resumed.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from isthmus.local.apiserver.clock import now as utc_now
from isthmus.local.apiserver.clock import parse, timestamp
from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject, Reconciler
from isthmus.local.apiserver.controllers.informers import Informer, controller_of, controllers_of, object_key
from isthmus.local.apiserver.controllers.podcontrol import PodControl, pod_from_template
from isthmus.local.apiserver.controllers.replicasets import pods_to_delete, slow_start
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import PATCH_STRATEGIC
from isthmus.local.apiserver.store import DELETED, WatchEvent, copy_object
from isthmus.local.events import NORMAL, WARNING

JOBS = ("batch", "jobs")
MANAGER = "job-controller"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
MAX_UNCOUNTED = 500
MAX_CREATE_DELETE = 500
BACKOFF_MAX = 600.0

COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")


# -- facts about jobs and their pods ----------------------------------------------------------------------


def has_tracking_finalizer(pod: Mapping[str, Any]) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or ())


def is_indexed(job: Mapping[str, Any]) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def completions(job: Mapping[str, Any]) -> int | None:
    value = (job.get("spec") or {}).get("completions")
    return None if value is None else int(value)


def completion_index(pod: Mapping[str, Any]) -> int:
    value = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, "")
    return int(value) if value.isdigit() else -1


def is_pod_failed(pod: Mapping[str, Any]) -> bool:
    """Failed, or deleted before it succeeded (`isPodFailed` with podReplacementPolicy TerminatingOrFailed)."""
    if podutil.phase(pod) == "Failed":
        return True
    return bool(pod["metadata"].get("deletionTimestamp")) and podutil.phase(pod) != "Succeeded"


def finished_condition(job: Mapping[str, Any]) -> JsonObject | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            result: JsonObject = cond
            return result
    return None


def job_condition(job: Mapping[str, Any], type_: str) -> JsonObject | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_ and cond.get("status") == "True":
            result: JsonObject = cond
            return result
    return None


def new_condition(type_: str, reason: str, message: str, now: str, status: str = "True") -> JsonObject:
    return {
        "type": type_,
        "status": status,
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def ensure_condition(status: JsonObject, type_: str, value: str, reason: str, message: str, now: str) -> bool:
    """`ensureJobConditionStatus`: set a condition's status; a False one is never added. True if changed."""
    conditions: list[JsonObject] = status.setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") == type_:
            if (
                cond.get("status") == value
                and cond.get("reason") == reason
                and cond.get("message") == message
            ):
                return False
            if cond.get("status") != value:
                cond["lastTransitionTime"] = now
            cond.update(status=value, reason=reason, message=message, lastProbeTime=now)
            return True
    if not conditions:
        del status["conditions"]
    if value != "True":
        return False
    status.setdefault("conditions", []).append(new_condition(type_, reason, message, now, value))
    return True


def restarts_on_failure(job: Mapping[str, Any], pods: Iterable[JsonObject]) -> bool:
    """More container restarts than backoffLimit among pods still running (`pastBackoffLimitOnFailure`)."""
    template_spec = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return False
    total = 0
    for pod in pods:
        if podutil.phase(pod) in ("Running", "Pending"):
            status = pod.get("status") or {}
            for container in [
                *(status.get("initContainerStatuses") or ()),
                *(status.get("containerStatuses") or ()),
            ]:
                total += int(container.get("restartCount") or 0)
    limit = int((job.get("spec") or {}).get("backoffLimit", 6))
    return total > 0 if limit == 0 else total >= limit


def finish_time(pod: Mapping[str, Any]) -> datetime | None:
    """When a failed pod stopped: its containers' latest finishedAt, else its Ready condition's last change."""
    latest: datetime | None = None
    for container in (pod.get("status") or {}).get("containerStatuses") or ():
        finished = ((container.get("state") or {}).get("terminated") or {}).get("finishedAt")
        if finished:
            when = parse(finished)
            latest = when if latest is None or when > latest else latest
    if latest is not None:
        return latest
    ready = podutil.condition(pod, "Ready")
    if ready is not None and ready.get("lastTransitionTime"):
        return parse(ready["lastTransitionTime"])
    return None


def parse_indexes(text: str) -> set[int]:
    """`1,3-5` -> {1, 3, 4, 5} (`status.completedIndexes`)."""
    result: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        first, _, last = part.partition("-")
        result.update(range(int(first), int(last or first) + 1))
    return result


def format_indexes(indexes: Iterable[int]) -> str:
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def indexed_template(template: Mapping[str, Any], job_name: str, index: int) -> JsonObject:
    """The template of the pod for completion `index`: annotation, label, hostname, JOB_COMPLETION_INDEX."""
    result = copy_object(dict(template))
    meta = result.setdefault("metadata", {})
    meta.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
    meta.setdefault("labels", {})[COMPLETION_INDEX] = str(index)
    spec = result.setdefault("spec", {})
    spec["hostname"] = f"{job_name}-{index}"
    env_var = {
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
    }
    for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        env = container.setdefault("env", [])
        if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
            env.append(dict(env_var))
    return result


@dataclass
class Backoff:
    """Failures since the last success, and when the last one happened (`backoffRecord`)."""

    failures: int = 0
    last_failure: datetime | None = None
    seen: set[str] = field(default_factory=set)

    def remaining(self, base: float, now: datetime) -> float:
        if self.failures == 0 or self.last_failure is None:
            return 0.0
        delay = min(base * 2.0 ** (self.failures - 1), BACKOFF_MAX)
        return max(0.0, delay - (now - self.last_failure).total_seconds())


# -- the controller -----------------------------------------------------------------------------------------


class JobController(Reconciler):
    name = "job-controller"
    backoff_base = 10.0  # seconds before a pod is made again after a failure (DefaultJobPodFailureBackOff)

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.events = ctx.events.recorder(self.name)
        self.jobs: Informer = ctx.informers.get(JOBS)
        self.pod_control = PodControl(ctx, MANAGER, self.events)
        self.jobs.add_handler(self._on_job, self.enqueue_all)
        self.pod_control.pods.add_handler(self._on_pod, self.enqueue_all)
        self._backoff: dict[str, Backoff] = {}  # by job uid

    def all_keys(self) -> Iterable[Hashable]:
        keys: list[Hashable] = list(self.jobs.keys())
        for pod in self.pod_control.pods.all():
            if has_tracking_finalizer(pod) and self._orphaned(pod):
                keys.append(("pod", *object_key(pod)))
        return keys

    def _on_job(self, event: WatchEvent) -> None:
        if event.type == DELETED:
            self._backoff.pop(event.obj["metadata"].get("uid", ""), None)
            return
        self.enqueue(object_key(event.obj))

    def _on_pod(self, event: WatchEvent) -> None:
        for key in controllers_of(event, "Job"):
            self.enqueue(key)
        if event.type != DELETED and has_tracking_finalizer(event.obj) and self._orphaned(event.obj):
            self.enqueue(("pod", *object_key(event.obj)))

    def _orphaned(self, pod: Mapping[str, Any]) -> bool:
        """A pod whose Job is gone or finished no longer needs its tracking finalizer."""
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "Job":
            return True
        job = self.jobs.get(pod["metadata"].get("namespace", ""), ref["name"])
        return (
            job is None or job["metadata"].get("uid") != ref.get("uid") or finished_condition(job) is not None
        )

    # -- reconcile --------------------------------------------------------------------------------------

    async def reconcile(self, key: Any) -> None:
        if len(key) == 3:  # ("pod", namespace, name): a pod whose tracking finalizer is left over
            pod = self.pod_control.pods.get(key[1], key[2])
            if pod is not None and has_tracking_finalizer(pod) and self._orphaned(pod):
                await self._remove_finalizers([pod])
            return
        namespace, name = key
        stored = self.jobs.get(namespace, name)
        if stored is None:
            return
        job = copy_object(stored)
        if finished_condition(job) is not None:
            await self._expire(job)
            return
        pods = await self.pod_control.claim(job, include_finished=True)
        await self._sync(job, pods)

    async def _sync(self, job: JsonObject, pods: list[JsonObject]) -> None:
        """`syncJob`: count, decide, create or delete pods, then track finished pods into the status."""
        spec, status = job["spec"], job.setdefault("status", {})
        now_dt = utc_now()
        now = timestamp(now_dt)
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        uncounted_succeeded = set(uncounted.get("succeeded") or ())
        uncounted_failed = set(uncounted.get("failed") or ())
        active = [p for p in pods if podutil.is_active(p)]
        terminating = sum(
            1 for p in pods if p["metadata"].get("deletionTimestamp") and not podutil.is_terminal(p)
        )
        ready = sum(1 for p in active if podutil.is_ready(p))
        tracked = [p for p in pods if has_tracking_finalizer(p)]
        new_succeeded = [
            p
            for p in tracked
            if podutil.phase(p) == "Succeeded" and p["metadata"]["uid"] not in uncounted_succeeded
        ]
        new_failed = [p for p in tracked if is_pod_failed(p) and p["metadata"]["uid"] not in uncounted_failed]
        succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(uncounted_succeeded)
        failed = int(status.get("failed") or 0) + len(new_failed) + len(uncounted_failed)
        suspended = bool(spec.get("suspend"))
        if not status.get("startTime") and not suspended:
            status["startTime"] = now
        backoff = self._record_backoff(job, new_succeeded, new_failed)

        finished: JsonObject | None = None
        target = job_condition(job, "FailureTarget")
        if job_condition(job, "SuccessCriteriaMet") is not None:
            finished = new_condition("SuccessCriteriaMet", *COMPLETIONS_REACHED, now)
        elif target is not None:
            finished = target
        elif failed > int(spec.get("backoffLimit", 6)) or restarts_on_failure(job, pods):
            finished = new_condition("FailureTarget", *BACKOFF_EXCEEDED, now)
        elif self._past_deadline(job, now_dt):
            finished = new_condition("FailureTarget", *DEADLINE_EXCEEDED, now)
        elif spec.get("activeDeadlineSeconds") is not None and status.get("startTime") and not suspended:
            left = int(spec["activeDeadlineSeconds"]) - (now_dt - parse(status["startTime"])).total_seconds()
            self.enqueue_after(object_key(job), max(0.0, left) + 0.5)
        completed_indexes: set[int] = set()
        if is_indexed(job):
            completed_indexes = parse_indexes(status.get("completedIndexes", ""))
            total = completions(job) or 0
            completed_indexes.update(
                i for p in pods if podutil.phase(p) == "Succeeded" and 0 <= (i := completion_index(p)) < total
            )
            succeeded = len(completed_indexes)

        if finished is not None:
            deleted = await self._delete_pods(job, active)
            ready -= sum(1 for p in deleted if podutil.is_ready(p))
            terminating += len(deleted)
            active = [p for p in active if all(p is not d for d in deleted)]
            if active:
                finished = None
        else:
            active_count = len(active)
            if not job["metadata"].get("deletionTimestamp"):
                active_count = await self._manage(
                    job, active, succeeded, terminating, completed_indexes, backoff, now_dt
                )
            want = completions(job)
            complete = active_count == 0 and (succeeded > 0 if want is None else succeeded >= want)
            if complete:
                finished = new_condition("SuccessCriteriaMet", *COMPLETIONS_REACHED, now)
            elif suspended:
                if ensure_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", now):
                    self.events.event(job, NORMAL, "Suspended", "Job suspended")
            elif ensure_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now):
                self.events.event(job, NORMAL, "Resumed", "Job resumed")
                status["startTime"] = now
            self.ctx.informers.sync()
            active = [p for p in self.pod_control.owned(job) if podutil.is_active(p)]
            ready = sum(1 for p in active if podutil.is_ready(p))
        status["active"] = len(active)
        status["ready"] = ready
        status["terminating"] = terminating
        if is_indexed(job):
            status["completedIndexes"] = format_indexes(completed_indexes)
            status["succeeded"] = len(completed_indexes)
        await self._track(job, pods, finished, terminating, now)

    def _record_backoff(
        self, job: JsonObject, succeeded: list[JsonObject], failed: list[JsonObject]
    ) -> Backoff:
        record = self._backoff.setdefault(job["metadata"]["uid"], Backoff())
        fresh_success = [p for p in succeeded if p["metadata"]["uid"] not in record.seen]
        fresh_failure = [p for p in failed if p["metadata"]["uid"] not in record.seen]
        record.seen.update(p["metadata"]["uid"] for p in [*fresh_success, *fresh_failure])
        if fresh_success:
            record.failures = 0
            record.last_failure = None
        if fresh_failure:
            record.failures += len(fresh_failure)
            times = [t for p in fresh_failure if (t := finish_time(p)) is not None] or [utc_now()]
            latest = max(times)
            if record.last_failure is None or latest > record.last_failure:
                record.last_failure = latest
        return record

    @staticmethod
    def _past_deadline(job: Mapping[str, Any], now: datetime) -> bool:
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        start = (job.get("status") or {}).get("startTime")
        if deadline is None or not start or (job.get("spec") or {}).get("suspend"):
            return False
        return (now - parse(start)).total_seconds() >= int(deadline)

    async def _manage(
        self,
        job: JsonObject,
        active: list[JsonObject],
        succeeded: int,
        terminating: int,
        completed_indexes: set[int],
        backoff: Backoff,
        now: datetime,
    ) -> int:
        """Create or delete pods toward the wanted number of active ones (`manageJob`); the active count."""
        spec = job["spec"]
        if spec.get("suspend"):
            deleted = await self._delete_pods(job, active)
            return len(active) - len(deleted)
        parallelism = int(spec.get("parallelism", 1))
        want_completions = completions(job)
        if want_completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = max(0, min(want_completions - succeeded, parallelism))
        excess = len(active) - want
        if excess > 0:
            victims = pods_to_delete(active, active, min(excess, MAX_CREATE_DELETE))
            deleted = await self._delete_pods(job, victims)
            return len(active) - len(deleted)
        missing = want - len(active)
        if missing <= 0:
            return len(active)
        wait = backoff.remaining(self.backoff_base, now)
        if wait > 0:
            self.enqueue_after(object_key(job), wait)
            return len(active)
        missing = min(missing, MAX_CREATE_DELETE)
        template = copy_object(spec.get("template") or {})
        template_meta = template.setdefault("metadata", {})
        finalizers = list(template_meta.get("finalizers") or [])
        if TRACKING_FINALIZER not in finalizers:
            finalizers.append(TRACKING_FINALIZER)
        template_meta["finalizers"] = finalizers
        indexes: list[int] = []
        if is_indexed(job):
            busy = {completion_index(p) for p in active}
            indexes = [
                i for i in range(want_completions or 0) if i not in completed_indexes and i not in busy
            ][:missing]
            missing = len(indexes)
        pending = iter(indexes)
        name = job["metadata"]["name"]

        async def create() -> None:
            if is_indexed(job):
                index = next(pending)
                pod = pod_from_template(job, indexed_template(template, name, index), f"{name}-{index}-")
            else:
                pod = pod_from_template(job, template)
            await self.pod_control.create(job, pod)

        created, error = await slow_start(missing, create)
        if error is not None:
            raise error
        return len(active) + created

    async def _delete_pods(self, job: JsonObject, pods: list[JsonObject]) -> list[JsonObject]:
        deleted = []
        for pod in pods:
            if await self.pod_control.delete(job, pod):
                deleted.append(pod)
        return deleted

    async def _track(
        self, job: JsonObject, pods: list[JsonObject], finished: JsonObject | None, terminating: int, now: str
    ) -> None:
        """Count finished pods through uncountedTerminatedPods and their finalizers, then mark the Job finished
        once nothing is left to count or to stop (`trackJobStatusAndRemoveFinalizers`)."""
        status = job["status"]
        uncounted = status["uncountedTerminatedPods"]
        succeeded_uids: list[str] = list(uncounted.get("succeeded") or ())
        failed_uids: list[str] = list(uncounted.get("failed") or ())
        with_finalizer = {p["metadata"]["uid"] for p in pods if has_tracking_finalizer(p)}
        self._flush_counted(status, with_finalizer)
        succeeded_uids = list(uncounted.get("succeeded") or ())
        failed_uids = list(uncounted.get("failed") or ())
        finishing = finished is not None and finished["type"] != "SuccessCriteriaMet"
        to_release: list[JsonObject] = []
        for pod in pods:
            if not has_tracking_finalizer(pod):
                continue
            uid = pod["metadata"]["uid"]
            considered_failed = is_pod_failed(pod)
            releasable = (
                job["metadata"].get("deletionTimestamp") or finished or podutil.phase(pod) == "Succeeded"
            )
            if not releasable and not considered_failed:  # `canRemoveFinalizer`
                continue
            to_release.append(pod)
            if podutil.phase(pod) == "Succeeded" and uid not in failed_uids:
                if not is_indexed(job) and uid not in succeeded_uids:
                    succeeded_uids.append(uid)
            elif (
                (considered_failed or finishing)
                and uid not in failed_uids
                and (not is_indexed(job) or 0 <= completion_index(pod) < (completions(job) or 0))
            ):
                failed_uids.append(uid)
            if len(succeeded_uids) + len(failed_uids) >= MAX_UNCOUNTED:
                break
        uncounted["succeeded"], uncounted["failed"] = succeeded_uids, failed_uids
        final: JsonObject | None = None
        if finished is not None:
            if finished["type"] == "FailureTarget":
                if job_condition(job, "FailureTarget") is None:
                    status.setdefault("conditions", []).append(finished)
                final = new_condition("Failed", finished["reason"], finished["message"], now)
            else:
                if job_condition(job, "SuccessCriteriaMet") is None:
                    status.setdefault("conditions", []).append(finished)
                final = new_condition("Complete", finished["reason"], finished["message"], now)
        self._tidy(status)
        await self._write_status(job)  # the uncounted pods and interim conditions, before finalizers go
        released = await self._remove_finalizers(to_release)
        with_finalizer -= released
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        self._flush_counted(status, with_finalizer)
        left = list(uncounted.get("succeeded") or ()) + list(uncounted.get("failed") or ())
        done = final is not None and not left and terminating == 0
        if done and final is not None:
            ensure_condition(status, final["type"], "True", final["reason"], final["message"], now)
            if final["type"] == "Complete":
                status["completionTime"] = now
        self._tidy(status)
        await self._write_status(job)
        if done and final is not None:
            if final["type"] == "Complete":
                want = completions(job)
                if want is not None and int(status.get("succeeded") or 0) > want:
                    self.events.event(
                        job,
                        WARNING,
                        "TooManySucceededPods",
                        "Too many succeeded pods running after completion count reached",
                    )
                self.events.event(job, NORMAL, "Completed", "Job completed")
            else:
                self.events.event(job, WARNING, final["reason"], final["message"])
            self._backoff.pop(job["metadata"]["uid"], None)
            await self._expire(job)

    @staticmethod
    def _flush_counted(status: JsonObject, with_finalizer: set[str]) -> None:
        """Move uncounted pods whose finalizer is gone into the counters (`cleanUncountedPodsWithoutFinalizers`)."""
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        for key, counter in (("succeeded", "succeeded"), ("failed", "failed")):
            uids = list(uncounted.get(key) or ())
            kept = [uid for uid in uids if uid in with_finalizer]
            if len(kept) != len(uids):
                status[counter] = int(status.get(counter) or 0) + len(uids) - len(kept)
                uncounted[key] = kept

    @staticmethod
    def _tidy(status: JsonObject) -> None:
        """Drop empty lists and zero counters the API omits."""
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = {k: v for k, v in uncounted.items() if v}
        for key in ("succeeded", "failed"):
            if not status.get(key):
                status.pop(key, None)
        if not status.get("active"):
            status.pop("active", None)
        if "conditions" in status and not status["conditions"]:
            del status["conditions"]

    async def _remove_finalizers(self, pods: list[JsonObject]) -> set[str]:
        """Take the tracking finalizer off the pods; the uids done (or gone)."""
        done: set[str] = set()
        patch = orjson.dumps({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}})
        for pod in pods:
            namespace, name = object_key(pod)
            try:
                await self.ctx.objects.patch(
                    self.ctx.target("", "pods", namespace, name),
                    PATCH_STRATEGIC,
                    patch,
                    self.ctx.options(MANAGER),
                )
            except StatusError as exc:
                if exc.code != 404:
                    raise
            done.add(pod["metadata"]["uid"])
        return done

    async def _write_status(self, job: JsonObject) -> None:
        latest = self.jobs.get(*object_key(job))
        if latest is None or latest["metadata"].get("uid") != job["metadata"]["uid"]:
            return
        if (latest.get("status") or {}) == job["status"]:
            return
        obj = copy_object(latest)
        obj["status"] = copy_object(job["status"])
        namespace, name = object_key(job)
        result = await self.ctx.objects.update(
            self.ctx.target(*JOBS, namespace, name, "status"), obj, self.ctx.options(MANAGER)
        )
        job["metadata"] = copy_object(result.obj["metadata"])
        self.ctx.informers.sync()

    async def _expire(self, job: JsonObject) -> None:
        """Delete a finished Job once its ttlSecondsAfterFinished passed (the TTL-after-finished controller)."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        finished = finished_condition(job)
        if ttl is None or finished is None or job["metadata"].get("deletionTimestamp"):
            return
        since = (job.get("status") or {}).get("completionTime") or finished.get("lastTransitionTime")
        left = int(ttl) - (utc_now() - parse(since)).total_seconds() if since else 0.0
        if left > 0:
            self.enqueue_after(object_key(job), left + 0.5)
            return
        namespace, name = object_key(job)
        try:
            await self.ctx.objects.delete(
                self.ctx.target(*JOBS, namespace, name),
                {"propagationPolicy": "Foreground", "preconditions": {"uid": job["metadata"]["uid"]}},
                self.ctx.options("ttl-after-finished-controller"),
            )
        except StatusError as exc:
            if exc.code not in (404, 409):
                raise
