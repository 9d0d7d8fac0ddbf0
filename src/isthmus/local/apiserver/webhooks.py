"""Admission webhooks: kube-apiserver's MutatingAdmissionWebhook and ValidatingAdmissionWebhook plug-ins.

For each write (and CONNECT) the webhooks whose rules, namespaceSelector and objectSelector match are sent an
AdmissionReview (v1 or v1beta1, whichever the webhook lists first). Mutating webhooks run in order
(configurations by name, then their webhooks in order); each JSONPatch is applied, and the result is decoded
against the schema and defaulted again before the next webhook sees it. When a webhook changed the object,
the chain runs a second round (see `admission`) in which the webhooks with `reinvocationPolicy: IfNeeded`
that ran before the change are called again. Validating webhooks then run concurrently on the final object.
A refusal answers the client with the webhook's status (`admission webhook "NAME" denied the request: ...`);
a webhook that cannot be called fails the write (`failurePolicy: Fail`, a 500 naming the webhook) or is
skipped (`Ignore`). Writes of webhook configurations themselves never go to webhooks.

The configurations are kept compiled and recompiled only after one is written (a watch on the store, drained
when a write needs them), so while none exists a write costs two queue checks.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import jsonpointer
import orjson

from isthmus.local.apiserver.admission import AdmissionRequest
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.errors import Cause, StatusError, bad_request, internal_error, not_found
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.store import Store, copy_object
from isthmus.local.apiserver.strategies import default_pod_spec
from isthmus.local.apiserver.validation import Decoder
from isthmus.local.apiserver.webhook_client import CallError, WebhookClient
from isthmus.local.apiserver.webhook_config import (
    GROUP,
    MUTATING,
    VALIDATING,
    Webhook,
    compile_configuration,
)

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]

STATE = "webhooks"  # this plug-in's key in AdmissionRequest.state
# Never sent to webhooks, so a broken webhook can always be removed (as Kubernetes exempts them).
EXEMPT = frozenset(
    (GROUP, plural)
    for plural in (
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
    )
)
# The kind of the object a write of a subresource carries, where it is not the resource's own kind.
SUBRESOURCE_KINDS = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}
# Metadata a webhook may not change: kept from the object it was sent.
_SYSTEM_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)


def _everything(obj: JsonObject) -> bool:
    return True


class ConfigurationCache:
    """The compiled webhooks of one configuration resource, refreshed after a configuration is written."""

    def __init__(self, store: Store, resource: tuple[str, str], mutating: bool) -> None:
        self.store = store
        self.resource = resource
        self.mutating = mutating
        self._compiled: dict[str, tuple[int, tuple[Webhook, ...]]] = {}
        self._watcher = store.watch(resource, store.rv, _everything)
        self.webhooks = self._load()

    def current(self) -> tuple[Webhook, ...]:
        queue = self._watcher.queue
        if queue.empty():
            return self.webhooks
        closed = False
        while not queue.empty():
            closed |= queue.get_nowait() is None
        if closed:  # the store ended the watch (shutdown, overflow): start another
            self._watcher = self.store.watch(self.resource, self.store.rv, _everything)
        self.webhooks = self._load()
        return self.webhooks

    def _load(self) -> tuple[Webhook, ...]:
        compiled: dict[str, tuple[int, tuple[Webhook, ...]]] = {}
        webhooks: list[Webhook] = []
        for stored in self.store.iter_objects(self.resource):  # in name order, as Kubernetes sorts them
            name = stored.obj["metadata"]["name"]
            entry = self._compiled.get(name)
            if entry is None or entry[0] != stored.rv:
                entry = (stored.rv, compile_configuration(stored.obj, self.mutating))
            compiled[name] = entry
            webhooks += entry[1]
        self._compiled = compiled
        return tuple(webhooks)

    def close(self) -> None:
        self.store.stop_watch(self.resource, self._watcher)


@dataclass(frozen=True, slots=True)
class Invocation:
    webhook: Webhook
    version: str  # the version the webhook is sent: the request's, or an equivalent one it asked for


@dataclass
class _Rounds:
    """What the mutating webhooks of one request keep between the chain's two rounds."""

    reinvocable: set[str] = field(default_factory=set)  # IfNeeded webhooks called since the last change
    reinvoke: set[str] = field(default_factory=set)  # webhooks to call in the second round
    output: JsonObject | None = None  # the object as the first round left it

    def changed(self) -> None:
        self.reinvoke |= self.reinvocable
        self.reinvocable.clear()


class WebhookAdmission:
    """The admission plug-in (see the module docstring)."""

    def __init__(self, store: Store, catalog: SchemaCatalog, client: WebhookClient | None = None) -> None:
        self.store = store
        self.catalog = catalog
        self.decoder = Decoder(catalog)
        self.client = client or WebhookClient(store)
        self.mutating = ConfigurationCache(store, MUTATING, True)
        self.validating = ConfigurationCache(store, VALIDATING, False)

    async def close(self) -> None:
        self.mutating.close()
        self.validating.close()
        await self.client.close()

    # -- the plug-in --------------------------------------------------------------------------------------

    async def mutate(self, request: AdmissionRequest) -> list[str]:
        webhooks = self.mutating.current()
        if not webhooks or request.rt.key in EXEMPT:
            return []
        rounds = request.state.get(STATE)
        if not isinstance(rounds, _Rounds):
            rounds = request.state[STATE] = _Rounds()
        if request.reinvoking:
            if rounds.output is not None and request.obj != rounds.output:
                rounds.changed()  # the plug-ins before the webhooks changed the object again
            if not rounds.reinvoke:
                return []
        warnings: list[str] = []
        for webhook in webhooks:
            if request.reinvoking and webhook.uid not in rounds.reinvoke:
                continue
            invocation = self._match(webhook, request)
            if invocation is None:
                continue
            try:
                changed, said = await self._mutate_with(invocation, request)
            except CallError as exc:
                self._call_failed(webhook, exc)
                changed, said = False, []
            warnings += said
            if changed:
                rounds.changed()
                request.reinvoke = True
            if webhook.reinvoke_if_needed:
                rounds.reinvocable.add(webhook.uid)
        if request.reinvoke and not request.reinvoking and request.obj is not None:
            rounds.output = copy_object(request.obj)
        return warnings

    async def validate(self, request: AdmissionRequest) -> list[str]:
        webhooks = self.validating.current()
        if not webhooks or request.rt.key in EXEMPT:
            return []
        invocations = [i for i in (self._match(w, request) for w in webhooks) if i is not None]
        if not invocations:
            return []
        results = await asyncio.gather(
            *(self._validate_with(invocation, request) for invocation in invocations), return_exceptions=True
        )
        warnings: list[str] = []
        for invocation, result in zip(invocations, results, strict=True):
            if isinstance(result, CallError):
                self._call_failed(invocation.webhook, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                warnings += result
        return warnings

    def _call_failed(self, webhook: Webhook, error: CallError) -> None:
        message = f'failed calling webhook "{webhook.name}": {error}'
        if webhook.failure_policy == "Ignore":
            log.warning("failing open: %s", message)
            return
        raise internal_error(message)

    # -- matching -----------------------------------------------------------------------------------------

    def _match(self, webhook: Webhook, request: AdmissionRequest) -> Invocation | None:
        """Whether the webhook wants this request (rules, then selectors), and in which version."""
        rt = request.rt
        cluster_scoped = not rt.namespaced
        version = request.version
        if not any(
            rule.matches(request.operation, rt.group, version, rt.plural, request.subresource, cluster_scoped)
            for rule in webhook.rules
        ):
            if webhook.match_policy != "Equivalent" or request.operation == "CONNECT":
                return None
            version = next(
                (
                    other
                    for rule in webhook.rules
                    for other in rt.versions
                    if other != request.version
                    and rule.matches(
                        request.operation, rt.group, other, rt.plural, request.subresource, cluster_scoped
                    )
                ),
                "",
            )
            if not version:
                return None
        if webhook.namespace_selector is not None and not webhook.namespace_selector(
            self._namespace_labels(request)
        ):
            return None
        if webhook.object_selector is not None and not any(
            isinstance(o, dict) and webhook.object_selector(_labels(o)) for o in (request.obj, request.old)
        ):
            return None
        return Invocation(webhook, version)

    def _namespace_labels(self, request: AdmissionRequest) -> dict[str, str]:
        """The labels a namespaceSelector is matched against (none exempts a cluster-scoped object)."""
        rt = request.rt
        if rt.key == ("", "namespaces"):
            if not request.subresource and request.operation in ("CREATE", "UPDATE") and request.obj:
                return _labels(request.obj)
            namespace = request.name
        elif not rt.namespaced:
            return {}
        else:
            namespace = request.namespace
        stored = self.store.get(("", "namespaces"), "", namespace)
        if stored is None:
            raise not_found("namespaces", "", namespace)
        return _labels(stored.obj)

    # -- calls --------------------------------------------------------------------------------------------

    async def _mutate_with(self, invocation: Invocation, request: AdmissionRequest) -> tuple[bool, list[str]]:
        """Call one mutating webhook and apply its patch to `request.obj`: (whether it changed, warnings)."""
        webhook = invocation.webhook
        response = await self._call(invocation, request)
        warnings = _warnings(response)
        if not response.get("allowed"):
            raise _rejection(webhook.name, response.get("status"))
        operations = _patch_operations(webhook, response)
        if not operations:
            return False, warnings
        obj = request.obj
        if obj is None or request.operation == "CONNECT":
            raise internal_error(
                f'admission webhook "{webhook.name}" attempted to modify the object, which is not supported '
                "for this operation"
            )
        patched = self._apply(invocation, request, obj, operations)
        if patched == obj:
            return False, warnings
        _replace(obj, patched)
        return True, warnings

    async def _validate_with(self, invocation: Invocation, request: AdmissionRequest) -> list[str]:
        response = await self._call(invocation, request)
        warnings = _warnings(response)
        if not response.get("allowed"):
            raise _rejection(invocation.webhook.name, response.get("status"))
        return warnings

    async def _call(self, invocation: Invocation, request: AdmissionRequest) -> JsonObject:
        """Send the AdmissionReview and return its verified `response`."""
        webhook = invocation.webhook
        if request.dry_run and webhook.side_effects not in ("None", "NoneOnDryRun"):
            raise StatusError(
                400, "BadRequest", f'admission webhook "{webhook.name}" does not support dry run'
            )
        if webhook.problem:
            raise CallError(webhook.problem)
        if not webhook.review_version:
            raise CallError("webhook does not accept v1 or v1beta1 AdmissionReview")
        uid = str(uuid.uuid4())
        review = _review(invocation, request, uid)
        answer = await self.client.post(webhook.client, webhook.timeout, orjson.dumps(review))
        return _verify(answer, uid, webhook.review_version, webhook.mutating)

    def _apply(
        self, invocation: Invocation, request: AdmissionRequest, obj: JsonObject, operations: list[Any]
    ) -> JsonObject:
        """The object with the webhook's patch applied, decoded against its schema and defaulted again."""
        webhook, rt = invocation.webhook, request.rt
        name = webhook.name
        document = copy_object(obj)
        document["apiVersion"] = rt.api_version(invocation.version)
        try:
            patched = jsonpatch.JsonPatch(operations).apply(document, in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, TypeError) as exc:
            raise internal_error(
                f'admission webhook "{name}" returned a patch that cannot be applied: {exc}'
            ) from None
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise internal_error(
                f'admission webhook "{name}" returned a patch that leaves no {rt.kind} object'
            )
        patched["apiVersion"], patched["kind"] = obj.get("apiVersion"), obj.get("kind")
        meta, before = patched["metadata"], obj.get("metadata") or {}
        for key in ("name", "namespace"):
            if meta.get(key) != before.get(key):
                raise bad_request(
                    f'admission webhook "{name}" may not change metadata.{key} (from "{before.get(key, "")}" '
                    f'to "{meta.get(key, "")}")'
                )
        for key in _SYSTEM_META:
            if key in before:
                meta[key] = before[key]
            else:
                meta.pop(key, None)
        schema = rt.schema(self.catalog, request.version)
        if schema is not None:
            report = self.decoder.decode(patched, schema, prune=True, drop_nulls=rt.is_custom)
            if report.type_errors:
                raise internal_error(
                    f'admission webhook "{name}" returned a patch whose result is not a valid {rt.kind}: '
                    f"{report.type_errors[0]}"
                )
        _default(request, patched)
        return patched


# -- AdmissionReview ------------------------------------------------------------------------------------------


def _review(invocation: Invocation, request: AdmissionRequest, uid: str) -> JsonObject:
    rt, version = request.rt, invocation.version
    obj, old = request.obj, request.old
    if version != request.version:
        api_version = rt.api_version(version)
        obj = {**obj, "apiVersion": api_version} if obj is not None else None
        old = {**old, "apiVersion": api_version} if old is not None else None
    namespace = request.name if rt.key == ("", "namespaces") else request.namespace
    body: JsonObject = {
        "uid": uid,
        "kind": _kind(request, version),
        "resource": {"group": rt.group, "version": version, "resource": rt.plural},
    }
    if request.subresource:
        body["subResource"] = request.subresource
    body["requestKind"] = _kind(request, request.version)
    body["requestResource"] = {"group": rt.group, "version": request.version, "resource": rt.plural}
    if request.subresource:
        body["requestSubResource"] = request.subresource
    if request.name:
        body["name"] = request.name
    if namespace:
        body["namespace"] = namespace
    body.update(
        {
            "operation": request.operation,
            "userInfo": _user_info(request.user),
            "object": obj,
            "oldObject": old,
            "dryRun": request.dry_run,
            "options": _options(request),
        }
    )
    return {
        "kind": "AdmissionReview",
        "apiVersion": f"admission.k8s.io/{invocation.webhook.review_version}",
        "request": body,
    }


def _kind(request: AdmissionRequest, version: str) -> JsonObject:
    if request.operation == "CONNECT" and request.obj is not None:
        return {"group": "", "version": "v1", "kind": request.obj.get("kind", "")}
    known = SUBRESOURCE_KINDS.get(request.subresource)
    if known is not None:
        return {"group": known[0], "version": known[1], "kind": known[2]}
    return {"group": request.rt.group, "version": version, "kind": request.rt.kind}


def _options(request: AdmissionRequest) -> JsonObject | None:
    kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}.get(
        request.operation
    )
    if kind is None:
        return None
    options: JsonObject = {"kind": kind, "apiVersion": "meta.k8s.io/v1", **(request.options or {})}
    options["kind"], options["apiVersion"] = kind, "meta.k8s.io/v1"
    if request.dry_run:
        options["dryRun"] = ["All"]
    return options


def _user_info(user: UserInfo) -> JsonObject:
    info: JsonObject = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    if user.groups:
        info["groups"] = list(user.groups)
    if user.extra:
        info["extra"] = {key: list(values) for key, values in user.extra.items()}
    return info


def _gvk(api_version: Any, kind: Any) -> str:
    """Go's `GroupVersionKind.String()`, as kube-apiserver's errors print it."""
    text = str(api_version or "")
    return f"{text if '/' in text else '/' + text}, Kind={kind or ''}"


def _verify(answer: JsonObject, uid: str, version: str, mutating: bool) -> JsonObject:
    """`VerifyAdmissionResponse`: the answer's type, uid and patch fields, with v1beta1's leniency."""

    def invalid(detail: str) -> CallError:
        return CallError(f"received invalid webhook response: {detail}")

    if version == "v1" and (answer.get("apiVersion"), answer.get("kind")) != (
        "admission.k8s.io/v1",
        "AdmissionReview",
    ):
        raise invalid(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got "
            + _gvk(answer.get("apiVersion"), answer.get("kind"))
        )
    response = answer.get("response")
    if not isinstance(response, dict):
        raise invalid("webhook response was absent")
    if version == "v1" and response.get("uid") != uid:
        raise invalid(f'expected response.uid="{uid}", got "{response.get("uid") or ""}"')
    patch_type, patch = response.get("patchType"), response.get("patch")
    if version == "v1":
        if patch_type and not patch:
            raise invalid("webhook returned response.patchType but not response.patch")
        if patch and not patch_type:
            raise invalid("webhook returned response.patch but not response.patchType")
    if mutating:
        if patch_type not in (None, "", "JSONPatch"):
            raise invalid(f'webhook returned invalid response.patchType of "{patch_type}"')
    elif patch_type:
        raise invalid("validating webhook may not return response.patchType")
    elif patch:
        raise invalid("validating webhook may not return response.patch")
    return response


def _patch_operations(webhook: Webhook, response: JsonObject) -> list[Any]:
    patch = response.get("patch")
    if not patch:
        return []
    try:
        operations = orjson.loads(base64.b64decode(str(patch), validate=True))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise internal_error(
            f'admission webhook "{webhook.name}" returned a patch that is not base64-encoded JSON: {exc}'
        ) from None
    if operations is None:
        return []
    if not isinstance(operations, list):
        raise internal_error(
            f'admission webhook "{webhook.name}" returned a patch that is not a JSONPatch list'
        )
    return operations


def _rejection(webhook: str, status: Any) -> StatusError:
    """`webhookerrors.ToStatusErr`: the webhook's Status, its message prefixed with who denied the request."""
    status = status if isinstance(status, dict) else {}
    code = status.get("code")
    code = code if isinstance(code, int) and code >= 400 else 400
    reason, message = str(status.get("reason") or ""), str(status.get("message") or "")
    denied = f'admission webhook "{webhook}" denied the request'
    text = (
        f"{denied}: {message}"
        if message
        else f"{denied}: {reason}"
        if reason
        else f"{denied} without explanation"
    )
    details = status.get("details") if isinstance(status.get("details"), dict) else {}
    causes = [
        Cause(str(c.get("reason") or ""), str(c.get("message") or ""), str(c.get("field") or ""))
        for c in details.get("causes") or []
        if isinstance(c, dict)
    ]
    return StatusError(
        code,
        reason,
        text,
        name=str(details.get("name") or ""),
        group=str(details.get("group") or ""),
        kind=str(details.get("kind") or ""),
        causes=causes,
    )


def _warnings(response: JsonObject) -> list[str]:
    """The webhook's warnings, made safe for a `Warning:` header (non-printable characters become spaces)."""
    out = []
    for warning in response.get("warnings") or []:
        if isinstance(warning, str):
            text = "".join(c if c.isprintable() else " " for c in warning).strip()
            if text:
                out.append(text)
    return out


def _labels(obj: JsonObject) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def _default(request: AdmissionRequest, obj: JsonObject) -> None:
    """Kubernetes' defaults for what a webhook added (a sidecar container, say): pods and pod templates."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if request.rt.key == ("", "pods"):
        default_pod_spec(spec)
        return
    template = spec.get("template")
    workload = request.rt.group in ("apps", "batch") or request.rt.key == ("", "replicationcontrollers")
    if workload and isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def _replace(obj: JsonObject, new: JsonObject) -> None:
    """Make `obj` equal `new`, keeping the identity of `obj` and its metadata dict (the caller holds both)."""
    meta, new_meta = obj.get("metadata"), new.get("metadata")
    obj.clear()
    obj.update(new)
    if isinstance(meta, dict) and isinstance(new_meta, dict):
        meta.clear()
        meta.update(new_meta)
        obj["metadata"] = meta
