"""ControllerRevisions, the revision history of DaemonSets and StatefulSets (`pkg/controller/history`).

A revision holds the owner's pod template as the strategic-merge patch `kubectl rollout undo` applies
(`{"spec": {"template": {..., "$patch": "replace"}}}`), a `revision` number, the template's labels plus
`controller-revision-hash`, and the owner's annotations (so `rollout history` shows change causes). The
controllers claim revisions as they claim pods: by selector and controller reference.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from isthmus.local.apiserver.controllers import podutil
from isthmus.local.apiserver.controllers.base import ControllerContext, JsonObject
from isthmus.local.apiserver.controllers.deployments import SAFE_ALPHABET
from isthmus.local.apiserver.controllers.informers import CONTROLLER, Informer, controller_of, object_key
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import WatchEvent, copy_object

CONTROLLER_REVISIONS = ("apps", "controllerrevisions")
HASH_LABEL = "controller-revision-hash"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def fnv32(data: bytes, value: int = 0x811C9DC5) -> int:
    """FNV-1 (not 1a), 32 bits: what `HashControllerRevision` uses."""
    for byte in data:
        value = ((value * 0x01000193) & 0xFFFFFFFF) ^ byte
    return value


def safe_encode(value: int) -> str:
    return "".join(SAFE_ALPHABET[ord(c) % len(SAFE_ALPHABET)] for c in str(value))


def template_patch(owner: Mapping[str, Any]) -> JsonObject:
    """The revision data of an owner's current template (`getPatch`)."""
    template = copy_object(dict((owner.get("spec") or {}).get("template") or {}))
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def template_of(revision: Mapping[str, Any]) -> JsonObject:
    """The pod template a revision records."""
    template = copy_object(dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {}))
    template.pop("$patch", None)
    return template


def revision_number(revision: Mapping[str, Any]) -> int:
    return int(revision.get("revision") or 0)


def sort_revisions(revisions: Iterable[JsonObject]) -> list[JsonObject]:
    """By revision number, then creation time, then name (`SortControllerRevisions`)."""
    return sorted(
        revisions,
        key=lambda r: (
            revision_number(r),
            r["metadata"].get("creationTimestamp") or "",
            r["metadata"]["name"],
        ),
    )


def next_revision(revisions: Iterable[JsonObject]) -> int:
    return max((revision_number(r) for r in revisions), default=0) + 1


def revision_name(owner_name: str, hash_: str) -> str:
    """`ControllerRevisionName`: the owner's name (cut to 223 characters), a dash and the hash."""
    return f"{owner_name[:223]}-{hash_}"


def new_revision(owner: Mapping[str, Any], data: JsonObject, number: int) -> JsonObject:
    """A ControllerRevision of `owner` (not yet named or hashed)."""
    template = (owner.get("spec") or {}).get("template") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    annotations = {k: v for k, v in (owner["metadata"].get("annotations") or {}).items() if k != LAST_APPLIED}
    meta: JsonObject = {
        "namespace": owner["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [podutil.controller_reference(owner)],
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": meta,
        "data": data,
        "revision": number,
    }


class RevisionHistory:
    """Reads and writes the ControllerRevisions of one kind of owner, for its controller."""

    def __init__(self, ctx: ControllerContext, manager: str) -> None:
        self.ctx = ctx
        self.manager = manager
        self.informer: Informer = ctx.informers.get(CONTROLLER_REVISIONS)
        self.informer.index_by(CONTROLLER)

    def follow(self, kind: str, enqueue: Callable[[Hashable], None]) -> None:
        """Call `enqueue((namespace, name))` with the `kind` controller of every revision that changes."""

        def on_revision(event: WatchEvent) -> None:
            ref = controller_of(event.obj)
            if ref is not None and ref.get("kind") == kind:
                enqueue((event.obj["metadata"].get("namespace", ""), ref["name"]))

        self.informer.add_handler(on_revision)

    def owned(self, owner: Mapping[str, Any]) -> list[JsonObject]:
        return list(self.informer.indexed(CONTROLLER, owner["metadata"]["uid"]).values())

    async def claim(self, owner: JsonObject) -> list[JsonObject]:
        """The owner's revisions, after adopting matching orphans and releasing ones that stopped matching."""
        namespace = owner["metadata"]["namespace"]
        return await podutil.claim(
            owner, self.owned(owner), lambda: self.informer.in_namespace(namespace).values(), self.update
        )

    async def create(self, revision: JsonObject) -> JsonObject:
        namespace = revision["metadata"]["namespace"]
        result = await self.ctx.objects.create(
            self.ctx.target(*CONTROLLER_REVISIONS, namespace), revision, self.ctx.options(self.manager)
        )
        return result.obj

    async def update(self, revision: JsonObject) -> JsonObject:
        namespace, name = object_key(revision)
        result = await self.ctx.objects.update(
            self.ctx.target(*CONTROLLER_REVISIONS, namespace, name),
            copy_object(revision),
            self.ctx.options(self.manager),
        )
        return result.obj

    async def renumber(self, revision: JsonObject, number: int) -> JsonObject:
        if revision_number(revision) == number:
            return revision
        obj = copy_object(revision)
        obj["revision"] = number
        return await self.update(obj)

    async def delete(self, revision: JsonObject) -> None:
        namespace, name = object_key(revision)
        try:
            await self.ctx.objects.delete(
                self.ctx.target(*CONTROLLER_REVISIONS, namespace, name),
                {"preconditions": {"uid": revision["metadata"]["uid"]}},
                self.ctx.options(self.manager),
            )
        except StatusError as exc:
            if exc.code not in (404, 409):
                raise

    async def truncate(self, owner: Mapping[str, Any], revisions: list[JsonObject], live: set[str]) -> None:
        """Delete the oldest revisions not named in `live` beyond the owner's revisionHistoryLimit."""
        limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
        old = [r for r in sort_revisions(revisions) if r["metadata"]["name"] not in live]
        if limit < 0 or len(old) <= limit:
            return
        for revision in old[: len(old) - limit]:
            await self.delete(revision)
