"""Pods of a workload controller (`controller.PodControlInterface` and `PodControllerRefManager`): claim the
pods an owner controls (adopting matching orphans, releasing pods that stopped matching), create pods from a
template with a controller reference, delete and patch them, and record the events that go with it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject
from isthmus.local.apiserver.controllers.informers import CONTROLLER, LABELS, PODS, Informer, object_key
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import copy_object
from isthmus.local.events import NORMAL, WARNING, EventRecorder

# What an event says about a pod created or deleted: (verb, pod name, owner) -> (reason, message).
EventText = Callable[[str, str, Mapping[str, Any], str], tuple[str, str]]


def replica_set_text(verb: str, pod: str, owner: Mapping[str, Any], error: str) -> tuple[str, str]:
    """The generic pod control's words (ReplicaSets, DaemonSets, Jobs)."""
    if error:
        return f"Failed{verb}", f"Error {verb.lower()[:-1]}ing: {error}"
    return f"Successful{verb}", f"{verb}d pod: {pod}"


def pod_from_template(
    owner: Mapping[str, Any], template: Mapping[str, Any], generate_name: str = ""
) -> JsonObject:
    """A new pod of `owner` from `template` (`GetPodFromTemplate`): its labels, annotations and finalizers, the
    controller reference, and `generateName` `<owner>-` unless given."""
    template = copy_object(dict(template))
    template_meta = template.get("metadata") or {}
    meta: JsonObject = {
        "generateName": generate_name or owner["metadata"]["name"] + "-",
        "namespace": owner["metadata"]["namespace"],
        "ownerReferences": [podutil.controller_reference(owner)],
    }
    for key in ("labels", "annotations", "finalizers"):
        if template_meta.get(key):
            meta[key] = template_meta[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}


def pods_to_adopt(pods: Informer, namespace: str, selector: Mapping[str, Any] | None) -> Iterable[JsonObject]:
    """Pods that may match `selector` in `namespace`, looked up by its rarest matchLabels pair (none for an
    empty selector, which adopts nothing)."""
    if podutil.is_empty_selector(selector):
        return ()
    match_labels = (selector or {}).get("matchLabels") or {}
    if not match_labels:
        return pods.in_namespace(namespace).values()
    return min((pods.indexed(LABELS, (namespace, k, v)) for k, v in match_labels.items()), key=len).values()


class PodControl:
    """Pod reads and writes on behalf of one controller (its field manager and event recorder)."""

    def __init__(
        self,
        ctx: ControllerContext,
        manager: str,
        events: EventRecorder,
        text: EventText = replica_set_text,
    ) -> None:
        self.ctx = ctx
        self.manager = manager
        self.events = events
        self.text = text
        self.pods: Informer = ctx.informers.get(PODS)
        self.pods.index_by(CONTROLLER)
        self.pods.index_by(LABELS)

    def owned(self, owner: Mapping[str, Any]) -> list[JsonObject]:
        """Every pod the owner controls, terminating and finished ones included."""
        return list(self.pods.indexed(CONTROLLER, owner["metadata"]["uid"]).values())

    async def claim(self, owner: JsonObject, include_finished: bool = False) -> list[JsonObject]:
        """The pods `owner` controls after adoption and release; finished pods only when asked."""
        namespace = owner["metadata"]["namespace"]
        selector = (owner.get("spec") or {}).get("selector")

        def adoptable(pod: JsonObject) -> bool:
            return not pod["metadata"].get("deletionTimestamp") and (
                include_finished or podutil.is_active(pod)
            )

        claimed = await podutil.claim(
            owner,
            self.owned(owner),
            lambda: pods_to_adopt(self.pods, namespace, selector),
            self.update,
            releasable=podutil.is_active,
            adoptable=adoptable,
        )
        return self._keep(claimed, include_finished)

    @staticmethod
    def _keep(pods: list[JsonObject], include_finished: bool) -> list[JsonObject]:
        return pods if include_finished else [p for p in pods if not podutil.is_terminal(p)]

    async def update(self, pod: JsonObject) -> JsonObject:
        namespace, name = object_key(pod)
        result = await self.ctx.objects.update(
            self.ctx.target("", "pods", namespace, name), pod, self.ctx.options(self.manager)
        )
        return result.obj

    async def create(self, owner: JsonObject, pod: JsonObject) -> JsonObject:
        """Create `pod` for `owner`, recording SuccessfulCreate or FailedCreate on the owner."""
        namespace = owner["metadata"]["namespace"]
        try:
            result = await self.ctx.objects.create(
                self.ctx.target("", "pods", namespace), pod, self.ctx.options(self.manager)
            )
        except StatusError as exc:
            if not (exc.code == 403 and "being terminated" in exc.message):
                name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
                reason, message = self.text("Create", name, owner, exc.message)
                self.events.event(owner, WARNING, reason, message)
            raise
        reason, message = self.text("Create", result.obj["metadata"]["name"], owner, "")
        self.events.event(owner, NORMAL, reason, message)
        return result.obj

    async def delete(self, owner: JsonObject, pod: JsonObject) -> bool:
        """Delete `pod` (gracefully), recording the event; False if it was gone already."""
        namespace, name = object_key(pod)
        try:
            await self.ctx.objects.delete(
                self.ctx.target("", "pods", namespace, name),
                {"preconditions": {"uid": pod["metadata"]["uid"]}},
                self.ctx.options(self.manager),
            )
        except StatusError as exc:
            if exc.code in (404, 409):
                return False
            reason, message = self.text("Delete", name, owner, exc.message)
            self.events.event(owner, WARNING, reason, message)
            raise
        reason, message = self.text("Delete", name, owner, "")
        self.events.event(owner, NORMAL, reason, message)
        return True
