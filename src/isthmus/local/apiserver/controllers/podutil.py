"""Pod and workload facts the controllers share, as Kubernetes' `podutil` and `controller_utils` define them:
readiness, availability, activity, owner references, label selectors, int-or-percent values, conditions."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from isthmus.local.apiserver.clock import parse
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.selectors import selector_from_label_selector
from isthmus.local.apiserver.store import copy_object

JsonObject = dict[str, Any]
LabelPredicate = Callable[[Mapping[str, str]], bool]


def condition(obj: Mapping[str, Any], type_: str) -> JsonObject | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_:
            result: JsonObject = cond
            return result
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod last became ready (its Ready condition's lastTransitionTime); None if not ready."""
    cond = condition(pod, "Ready")
    if cond is None or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return None
    return parse(cond["lastTransitionTime"])


def is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least `min_ready_seconds` (`podutil.IsPodAvailable`)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and (now - since).total_seconds() > min_ready_seconds


def available_in(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> float | None:
    """Seconds until a ready pod counts as available; None for a pod that is not ready."""
    since = ready_since(pod)
    if since is None:
        return None
    return max(0.0, min_ready_seconds - (now - since).total_seconds())


def phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_active(pod: Mapping[str, Any]) -> bool:
    """Not finished and not being deleted (`controller.IsPodActive`)."""
    return not is_terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def node_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def controller_reference(owner: Mapping[str, Any]) -> JsonObject:
    """An ownerReference naming `owner` as the controller (`metav1.NewControllerRef`)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def with_owner(obj: Mapping[str, Any], uid: str, owner: Mapping[str, Any] | None) -> JsonObject:
    """A copy of `obj` released from the owner `uid` and, when `owner` is given, controlled by it."""
    out = copy_object(dict(obj))
    refs = [r for r in out["metadata"].get("ownerReferences") or () if r.get("uid") != uid]
    if owner is not None:
        refs.append(controller_reference(owner))
    out["metadata"]["ownerReferences"] = refs
    if not refs:
        del out["metadata"]["ownerReferences"]
    return out


def _always(obj: JsonObject) -> bool:
    return True


async def claim(
    owner: JsonObject,
    owned: Iterable[JsonObject],
    orphans: Callable[[], Iterable[JsonObject]],
    write: Callable[[JsonObject], Awaitable[JsonObject]],
    *,
    releasable: Callable[[JsonObject], bool] = _always,
    adoptable: Callable[[JsonObject], bool] = _always,
) -> list[JsonObject]:
    """Kubernetes' `ControllerRefManager.ClaimObject` over lists: the objects `owner` controls that its selector
    still matches, after releasing those it stopped matching (`releasable` ones) and adopting matching
    `adoptable` orphans, neither while the owner is being deleted. `write` stores an object with its new owner
    references; one that changed meanwhile or is gone (409, 404) is left alone."""
    meta = owner["metadata"]

    async def set_owner(obj: JsonObject, new_owner: JsonObject | None) -> JsonObject | None:
        try:
            return await write(with_owner(obj, meta["uid"], new_owner))
        except StatusError as exc:
            if exc.code in (404, 409):
                return None
            raise

    selector = label_selector((owner.get("spec") or {}).get("selector"))
    deleting = bool(meta.get("deletionTimestamp"))
    claimed: list[JsonObject] = []
    for obj in list(owned):
        if selector(labels(obj)):
            claimed.append(obj)
        elif not deleting and releasable(obj):
            await set_owner(obj, None)
    if deleting:
        return claimed
    for obj in list(orphans()):
        if not has_controller(obj) and adoptable(obj) and selector(labels(obj)):
            adopted = await set_owner(obj, owner)
            if adopted is not None:
                claimed.append(adopted)
    return claimed


def controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == owner_uid
        for ref in obj["metadata"].get("ownerReferences") or ()
    )


def has_controller(obj: Mapping[str, Any]) -> bool:
    return any(ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or ())


def labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    result: Mapping[str, str] = obj["metadata"].get("labels") or {}
    return result


def label_selector(selector: Mapping[str, Any] | None) -> LabelPredicate:
    """A predicate for a `metav1.LabelSelector`; an invalid selector matches nothing."""
    try:
        return selector_from_label_selector(selector)
    except (KeyError, TypeError, ValueError):
        return lambda labels: False


def is_empty_selector(selector: Mapping[str, Any] | None) -> bool:
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """An IntOrString as a number: an int as is, `"N%"` of `total` (`GetScaledValueFromIntOrPercent`)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = int(value[:-1])
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from None
        scaled = percent * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    raise ValueError(f"invalid value for IntOrString: invalid type: string is not a percentage: {value!r}")


def set_condition(status: JsonObject, new: JsonObject) -> bool:
    """Put condition `new` in `status.conditions`, keeping lastTransitionTime when the status stays the same
    and changing nothing when status and reason are unchanged (`SetDeploymentCondition`). True if changed."""
    conditions: list[JsonObject] = status.setdefault("conditions", [])
    current = next((c for c in conditions if c.get("type") == new["type"]), None)
    if (
        current is not None
        and current.get("status") == new["status"]
        and current.get("reason") == new.get("reason")
    ):
        return False
    if current is not None and current.get("status") == new["status"] and "lastTransitionTime" in current:
        new = dict(new, lastTransitionTime=current["lastTransitionTime"])
    status["conditions"] = [c for c in conditions if c.get("type") != new["type"]] + [new]
    return True


def remove_condition(status: JsonObject, type_: str) -> None:
    conditions = status.get("conditions")
    if conditions:
        status["conditions"] = [c for c in conditions if c.get("type") != type_]
        if not status["conditions"]:
            del status["conditions"]
