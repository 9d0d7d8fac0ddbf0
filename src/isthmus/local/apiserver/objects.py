"""The object lifecycle as Kubernetes defines it: create, get, list, watch, update, patch, apply and delete of
any resource, with system metadata, preconditions, finalizers, status subresources, generation, managedFields,
no-op detection and garbage-collection bookkeeping. HTTP lives elsewhere (`handlers`); controllers running in
the server call this directly.

Contract: runs on the server's event loop. Each write decides and stores without awaiting in between, so
concurrent writers are serialized by the loop; the awaits (admission, persistence) happen before the decision
or after the store.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from isthmus.local.apiserver import apply as ssa
from isthmus.local.apiserver import patch as patches
from isthmus.local.apiserver.admission import AdmissionChain, AdmissionRequest
from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.clock import now, timestamp
from isthmus.local.apiserver.errors import (
    STALE_WRITE,
    Cause,
    StatusError,
    already_exists,
    bad_request,
    conflict,
    field_forbidden,
    field_required,
    go_value,
    invalid,
    not_found,
)
from isthmus.local.apiserver.resources import ResourceRegistry, ResourceType
from isthmus.local.apiserver.schema import Schema, SchemaCatalog
from isthmus.local.apiserver.selectors import all_of, field_matcher, label_matcher
from isthmus.local.apiserver.store import Store, Stored, Watcher, copy_object, storage_key
from isthmus.local.apiserver.strategies import NAMESPACE_FINALIZER, Strategies
from isthmus.local.apiserver.validation import (
    CrdValidator,
    Decoder,
    DecodeReport,
    required_fields,
    strict_decoding_error,
    validate_metadata,
    validate_name,
)

JsonObject = dict[str, Any]

FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
_NAME_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SYSTEM_META = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)

PATCH_JSON = "application/json-patch+json"
PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY_YAML = "application/apply-patch+yaml"
PATCH_APPLY_CBOR = "application/apply-patch+cbor"


@dataclass(frozen=True)
class Target:
    """What a request addresses. `namespace` is "" for cluster-scoped resources and all-namespace lists."""

    rt: ResourceType
    version: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    @property
    def api_version(self) -> str:
        return self.rt.api_version(self.version)


@dataclass
class WriteOptions:
    user: UserInfo
    dry_run: bool = False
    field_manager: str = ""  # as the client sent it; empty means "named after the user agent" (not for apply)
    user_agent: str = ""
    field_validation: str = "Strict"  # Strict, Warn or Ignore
    force: bool = False


@dataclass
class WriteResult:
    obj: JsonObject
    code: int = 200
    warnings: list[str] = field(default_factory=list)


@dataclass
class ListResult:
    items: list[Stored]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


def _generate_suffix() -> str:
    return "".join(secrets.choice(_NAME_SUFFIX_CHARS) for _ in range(5))


def _spec_of(obj: JsonObject, with_status: bool = False) -> JsonObject:
    """Everything but metadata (and status, unless asked): what `metadata.generation` tracks."""
    skip = ("metadata", "apiVersion", "kind") if with_status else ("metadata", "status", "apiVersion", "kind")
    return {k: v for k, v in obj.items() if k not in skip}


def _without_volatile(obj: JsonObject) -> JsonObject:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta, "apiVersion": None}


class Objects:
    """The lifecycle of every object of one cluster. See the module docstring for the contract."""

    def __init__(
        self,
        store: Store,
        registry: ResourceRegistry,
        catalog: SchemaCatalog,
        strategies: Strategies,
        admission: AdmissionChain,
    ) -> None:
        self.store = store
        self.registry = registry
        self.catalog = catalog
        self.strategies = strategies
        self.admission = admission
        self.decoder = Decoder(catalog)
        self._crd_validators: dict[tuple[str, str, str, int], CrdValidator] = {}
        # Garbage-collection indexes: uid -> where the object is; owner uid -> dependents.
        self.by_uid: dict[str, tuple[tuple[str, str], str, str]] = {}
        self.dependents: dict[str, set[tuple[tuple[str, str], str, str]]] = {}
        self.gc_queue: list[str] = []  # uids whose dependents need collecting (owner gone or deleting)
        self.gc_wakeup = asyncio.Event()
        for resource in store.resources():
            for stored in store.iter_objects(resource):
                self._index(resource, stored.obj, None)

    # -- presentation -------------------------------------------------------------------------------------

    def present(self, t: Target, stored: Stored) -> bytes:
        """The stored object's JSON in the version the request asked for (conversion None: apiVersion only)."""
        if stored.obj.get("apiVersion") == t.api_version:
            return stored.raw
        return orjson.dumps({**stored.obj, "apiVersion": t.api_version})

    def present_obj(self, t: Target, obj: JsonObject) -> JsonObject:
        if obj.get("apiVersion") == t.api_version:
            return obj
        return {**obj, "apiVersion": t.api_version}

    # -- reads --------------------------------------------------------------------------------------------

    def get(self, t: Target) -> Stored:
        stored = self.store.get(t.rt.key, t.namespace, t.name)
        if stored is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        return stored

    def matcher(self, t: Target, label_selector: str, field_selector: str) -> Callable[[JsonObject], bool]:
        namespace = t.namespace
        in_namespace = (
            (lambda obj: obj.get("metadata", {}).get("namespace") == namespace) if namespace else None
        )
        return all_of(
            in_namespace,
            label_matcher(label_selector),
            field_matcher(t.rt.group, t.rt.plural, field_selector, t.rt.is_custom),
        )

    def list_objects(
        self,
        t: Target,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> ListResult:
        matches = self.matcher(t, label_selector, field_selector)
        rv = self.store.rv
        after: str | None = None
        if continue_token:
            try:
                token = orjson.loads(base64.urlsafe_b64decode(continue_token.encode()))
                after = storage_key((str(token["ns"]), str(token["name"])))
                rv = int(token["rv"])
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request(f"continue key is not valid: {exc}") from None
        items: list[Stored] = []
        namespace = t.namespace if t.rt.namespaced and t.namespace else None
        objects = self.store.iter_objects(t.rt.key, namespace)
        if rv != self.store.rv:
            # Later pages show the list as it was when the first page was served, as etcd's MVCC does.
            snapshot = self.store.snapshot(t.rt.key, rv, namespace)
            if snapshot is None:
                raise StatusError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter, or use the continue token in this "
                    "response to retrieve the remainder of the results.",
                )
            objects = iter(snapshot)
        for stored in objects:
            if after is not None:
                meta = stored.obj["metadata"]
                if storage_key((meta.get("namespace", ""), meta["name"])) <= after:
                    continue
            if matches(stored.obj):
                if limit and len(items) == limit:
                    last = items[-1].obj["metadata"]
                    token_json = orjson.dumps(
                        {"rv": rv, "ns": last.get("namespace", ""), "name": last["name"]}
                    )
                    return ListResult(items, rv, base64.urlsafe_b64encode(token_json).decode())
                items.append(stored)
        return ListResult(items, rv)

    def watch(self, t: Target, since: int, label_selector: str = "", field_selector: str = "") -> Watcher:
        return self.store.watch(t.rt.key, since, self.matcher(t, label_selector, field_selector))

    # -- writes -------------------------------------------------------------------------------------------

    def _schema(self, t: Target) -> Schema | None:
        return t.rt.schema(self.catalog, t.version)

    def _decode(self, t: Target, obj: Any, opts: WriteOptions) -> list[str]:
        """Check the body's type meta and fields against the schema; prune unknown fields unless Strict."""
        if not isinstance(obj, dict):
            raise bad_request(f"the body of the request was not a JSON object: {type(obj).__name__}")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != t.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({t.api_version})"
            )
        if kind and kind != t.rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({t.rt.kind})")
        obj["apiVersion"], obj["kind"] = t.api_version, t.rt.kind
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = {}
        elif not isinstance(meta, dict):
            report = DecodeReport(
                type_errors=[
                    f"json: cannot unmarshal {type(meta).__name__} into Go struct field metadata of type object"
                ]
            )
            raise strict_decoding_error(t.rt.kind, t.version, report)
        schema = self._schema(t)
        if schema is None:
            return []
        report = self.decoder.decode(
            obj, schema, prune=opts.field_validation != "Strict", drop_nulls=t.rt.is_custom
        )
        if report.type_errors:
            raise strict_decoding_error(t.rt.kind, t.version, report)
        if report.unknown and opts.field_validation == "Strict":
            raise strict_decoding_error(t.rt.kind, t.version, report)
        if report.unknown and opts.field_validation == "Warn":
            return [f'unknown field "{p}"' for p in report.unknown]
        return []

    def _validate(self, t: Target, obj: JsonObject, causes: list[Cause]) -> None:
        meta = obj["metadata"]
        causes = causes + validate_name(t.rt.group, t.rt.plural, meta["name"]) + validate_metadata(meta)
        if t.rt.is_custom:
            crd = t.rt.crd_schemas.get(t.version)
            if crd is not None:
                causes += self._crd_validator(t).validate(obj)
        else:
            schema = self._schema(t)
            if schema is not None:
                causes += required_fields(obj, schema)
        if causes:
            raise invalid(t.rt.kind, t.rt.group, meta["name"], causes)

    def _crd_validator(self, t: Target) -> CrdValidator:
        crd = self.store.get(("apiextensions.k8s.io", "customresourcedefinitions"), "", t.rt.crd_name)
        generation = crd.obj["metadata"].get("generation", 0) if crd else 0
        key = (t.rt.group, t.rt.plural, t.version, generation)
        validator = self._crd_validators.get(key)
        if validator is None:
            schema = t.rt.crd_schemas[t.version]
            validator = self._crd_validators[key] = CrdValidator(schema.raw)
        return validator

    def _check_namespace(self, t: Target, obj: JsonObject) -> None:
        meta = obj["metadata"]
        if not t.rt.namespaced:
            meta.pop("namespace", None)  # Kubernetes clears it (charts often set it on cluster-scoped kinds)
            return
        body_ns = meta.get("namespace")
        if body_ns and t.namespace and body_ns != t.namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = t.namespace or body_ns or "default"

    def _namespace_open(self, t: Target, name: str) -> None:
        """Namespaced objects need their namespace, and new ones a namespace that is not terminating."""
        namespace = self.store.get(("", "namespaces"), "", t.namespace)
        if namespace is None:
            raise not_found("namespaces", "", t.namespace)
        if namespace.obj["metadata"].get("deletionTimestamp"):
            qualified = f"{t.rt.plural}.{t.rt.group}" if t.rt.group else t.rt.plural
            raise StatusError(
                403,
                "Forbidden",
                f'{qualified} "{name}" is forbidden: unable to create new '
                f"content in namespace {t.namespace} because it is being terminated",
                name=name,
                group=t.rt.group,
                kind=t.rt.plural,
            )

    async def create(self, t: Target, body: Any, opts: WriteOptions) -> WriteResult:
        warnings = self._decode(t, body, opts)
        obj: JsonObject = body
        t = Target(t.rt, t.version, t.namespace, t.name, t.subresource)
        self._check_namespace(t, obj)
        t = Target(t.rt, t.version, obj["metadata"].get("namespace", ""), t.name, t.subresource)
        return await self._create(t, obj, opts, warnings, "Update")

    async def _create(
        self, t: Target, obj: JsonObject, opts: WriteOptions, warnings: list[str], operation: str
    ) -> WriteResult:
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"][:58] + _generate_suffix()
            else:
                raise invalid(
                    t.rt.kind,
                    t.rt.group,
                    "",
                    [field_required("metadata.name", "name or generateName is required")],
                )
        for key in (*_SYSTEM_META, "resourceVersion"):
            meta.pop(key, None)
        if "finalizers" in meta and not meta["finalizers"]:
            del meta["finalizers"]
        if t.rt.has_status:
            obj.pop("status", None)  # status is written through the status subresource only
        strategy = self.strategies.get(t.rt.group, t.rt.plural, t.rt.is_custom)
        if t.rt.namespaced:
            self._namespace_open(t, meta["name"])
        if self.store.get(t.rt.key, t.namespace, meta["name"]) is not None:
            raise already_exists(t.rt.plural, t.rt.group, meta["name"])
        causes = strategy.prepare_create(obj)
        try:
            warnings += await self.admission.run(
                AdmissionRequest(
                    "CREATE",
                    t.rt,
                    t.version,
                    t.subresource,
                    t.namespace,
                    meta["name"],
                    obj,
                    None,
                    opts.user,
                    opts.dry_run,
                )
            )
            self._validate(t, obj, causes)
            if self.store.get(t.rt.key, t.namespace, meta["name"]) is not None:
                raise already_exists(t.rt.plural, t.rt.group, meta["name"])
        except StatusError:
            if not causes:  # prepare_create allocated (it allocates nothing when it finds a problem)
                strategy.deleted(obj)
            raise
        now = timestamp()
        meta["uid"] = meta.get("uid") or str(uuid.uuid4())  # a strategy may have chosen it (Jobs' selectors)
        meta["creationTimestamp"] = now
        if strategy.tracks_generation:
            meta["generation"] = 1
        if operation != "Apply":
            obj = ssa.record_update(
                None,
                obj,
                self._manager(opts),
                t.subresource,
                self._schema(t),
                now,
                api_version=t.api_version,
                has_status=t.rt.has_status,
            )
        obj["apiVersion"] = t.rt.api_version(t.rt.storage_version)
        if opts.dry_run:
            strategy.deleted(obj)
            return WriteResult(self.present_obj(t, obj), 201, warnings)
        stored = self.store.put(t.rt.key, obj)
        self._index(t.rt.key, stored.obj, None)
        await self.store.persisted()
        return WriteResult(self.present_obj(t, stored.obj), 201, warnings)

    async def update(self, t: Target, body: Any, opts: WriteOptions) -> WriteResult:
        warnings = self._decode(t, body, opts)
        obj: JsonObject = body
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != t.name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})"
            )
        meta["name"] = t.name
        self._check_namespace(t, obj)
        current = self.get(t)
        if (
            meta.get("resourceVersion")
            and meta["resourceVersion"] != current.obj["metadata"]["resourceVersion"]
        ):
            raise conflict(t.rt.plural, t.rt.group, t.name, STALE_WRITE)
        current_uid = current.obj["metadata"].get("uid")
        if meta.get("uid") and meta["uid"] != current_uid:
            raise conflict(
                t.rt.plural,
                t.rt.group,
                t.name,
                f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {current_uid}",
            )
        return await self._update(t, current, obj, opts, warnings, "Update")

    async def _update(
        self,
        t: Target,
        current: Stored,
        obj: JsonObject,
        opts: WriteOptions,
        warnings: list[str],
        operation: str,
    ) -> WriteResult:
        """Store `obj` as the next state of `current`, following Kubernetes' update rules."""
        old = current.obj
        meta = obj["metadata"]
        old_meta = old["metadata"]
        for key in _SYSTEM_META:
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["namespace"] = old_meta.get("namespace")
        if not t.rt.namespaced:
            meta.pop("namespace", None)
        if t.subresource == "status":
            obj = {**copy_object(old), "status": obj.get("status")}
            if obj["status"] is None:
                del obj["status"]
            meta = obj["metadata"]
        elif t.rt.has_status:
            if "status" in old:
                obj["status"] = copy_object(old)["status"]
            else:
                obj.pop("status", None)
        strategy = self.strategies.get(t.rt.group, t.rt.plural, t.rt.is_custom)
        causes = [] if t.subresource == "status" else strategy.prepare_update(obj, old)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                causes.append(
                    field_forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the "
                        "object is being deleted, found new finalizers "
                        f"{go_value(sorted(added))}",
                    )
                )
        warnings += await self.admission.run(
            AdmissionRequest(
                "UPDATE",
                t.rt,
                t.version,
                t.subresource,
                t.namespace,
                t.name,
                obj,
                old,
                opts.user,
                opts.dry_run,
            )
        )
        self._validate(t, obj, causes)
        with_status = t.rt.is_custom and not t.rt.has_status  # then status changes count too
        if strategy.tracks_generation and _spec_of(obj, with_status) != _spec_of(old, with_status):
            meta["generation"] = old_meta.get("generation", 0) + 1
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        if operation != "Apply":
            obj = ssa.record_update(
                old,
                obj,
                self._manager(opts),
                t.subresource,
                self._schema(t),
                timestamp(),
                api_version=t.api_version,
                has_status=t.rt.has_status,
            )
        obj["apiVersion"] = t.rt.api_version(t.rt.storage_version)
        latest = self.store.get(t.rt.key, t.namespace, t.name)
        if latest is None:
            raise not_found(t.rt.plural, t.rt.group, t.name)
        if latest.rv != current.rv:  # changed while admission ran
            raise conflict(t.rt.plural, t.rt.group, t.name, STALE_WRITE)
        if _without_volatile(obj) == _without_volatile(old):
            return WriteResult(self.present_obj(t, old), 200, warnings)
        if opts.dry_run:
            obj["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
            return WriteResult(self.present_obj(t, obj), 200, warnings)
        if old_meta.get("deletionTimestamp") and not meta.get("finalizers"):
            removed = self._remove(t.rt.key, t.namespace, t.name)
            await self.store.persisted()
            return WriteResult(self.present_obj(t, removed.obj if removed else obj), 200, warnings)
        stored = self.store.put(t.rt.key, obj)
        self._index(t.rt.key, stored.obj, old)
        await self.store.persisted()
        return WriteResult(self.present_obj(t, stored.obj), 200, warnings)

    async def patch(self, t: Target, patch_type: str, body: bytes, opts: WriteOptions) -> WriteResult:
        if patch_type in (PATCH_APPLY_YAML, PATCH_APPLY_CBOR):
            return await self._apply(t, body, opts)
        try:
            patch_body = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        current = self.get(t)
        base = copy_object(dict(current.obj, apiVersion=t.api_version))
        if patch_type == PATCH_JSON:
            patched = patches.json_patch(base, patch_body)
        elif patch_type == PATCH_MERGE:
            patched = patches.merge_patch(base, patch_body)
        elif patch_type == PATCH_STRATEGIC:
            if t.rt.is_custom:
                raise StatusError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                )
            patched = patches.strategic_merge_patch(base, patch_body, self._schema(t))
        else:
            raise StatusError(415, "UnsupportedMediaType", f"the patch type {patch_type!r} is not supported")
        if not isinstance(patched, dict):
            raise bad_request("the patch did not produce an object")
        warnings = self._decode(t, patched, opts)
        meta = patched["metadata"]
        if meta.get("name") != t.name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({t.name})"
            )
        if meta.get("resourceVersion") != current.obj["metadata"]["resourceVersion"]:
            raise conflict(t.rt.plural, t.rt.group, t.name, STALE_WRITE)
        self._check_namespace(t, patched)
        return await self._update(t, current, patched, opts, warnings, "Update")

    def _manager(self, opts: WriteOptions) -> str:
        return ssa.manager_name(opts.field_manager, opts.user_agent)

    async def _apply(self, t: Target, body: bytes, opts: WriteOptions) -> WriteResult:
        applied = ssa.parse_applied(body)
        ssa.validate_field_manager(opts.field_manager, options_kind="PatchOptions", apply=True)
        raw_meta = applied.get("metadata")
        applied_meta: JsonObject = raw_meta if isinstance(raw_meta, dict) else {}
        if applied_meta.get("name") not in (None, t.name):
            raise bad_request(
                f"the name of the object ({applied_meta.get('name')}) does not match the name on "
                f"the URL ({t.name})"
            )
        check = copy_object(applied)
        warnings = self._decode(t, check, opts)
        current = self.store.get(t.rt.key, t.namespace, t.name)
        schema = self._schema(t)
        now = timestamp()
        extra: dict[str, Any] = {
            "api_version": t.api_version,
            "kind": t.rt.kind,
            "subresource": t.subresource,
            "has_status": t.rt.has_status,
        }
        if current is None:
            obj = ssa.server_side_apply(None, check, opts.field_manager, opts.force, schema, now, **extra)
            obj.setdefault("metadata", {})["name"] = t.name
            self._check_namespace(t, obj)
            return await self._create(t, obj, opts, warnings, "Apply")
        live = copy_object(dict(current.obj, apiVersion=t.api_version))
        obj = ssa.server_side_apply(live, check, opts.field_manager, opts.force, schema, now, **extra)
        obj["metadata"]["name"] = t.name
        applied_rv = applied_meta.get("resourceVersion")
        if applied_rv and applied_rv != current.obj["metadata"]["resourceVersion"]:
            raise conflict(t.rt.plural, t.rt.group, t.name, STALE_WRITE)
        self._check_namespace(t, obj)
        return await self._update(t, current, obj, opts, warnings, "Apply")

    # -- deletion -----------------------------------------------------------------------------------------

    async def delete(self, t: Target, options: JsonObject, opts: WriteOptions) -> WriteResult:
        current = self.get(t)
        old_meta = current.obj["metadata"]
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != old_meta.get("uid"):
            raise conflict(
                t.rt.plural,
                t.rt.group,
                t.name,
                f"Precondition failed: UID in precondition: "
                f"{preconditions['uid']}, UID in object meta: {old_meta.get('uid')}",
            )
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != old_meta["resourceVersion"]
        ):
            raise conflict(
                t.rt.plural,
                t.rt.group,
                t.name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                f"{old_meta['resourceVersion']}",
            )
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    Cause(
                        "FieldValueNotSupported",
                        f'Unsupported value: "{policy}": supported values: "Foreground", '
                        '"Background", "Orphan"',
                        "propagationPolicy",
                    )
                ],
            )
        warnings = await self.admission.run(
            AdmissionRequest(
                "DELETE",
                t.rt,
                t.version,
                t.subresource,
                t.namespace,
                t.name,
                None,
                current.obj,
                opts.user,
                opts.dry_run,
                options=options,
            )
        )
        latest = self.get(t)
        if latest.rv != current.rv:  # changed while admission ran: decide on the latest state
            return await self.delete(t, options, opts)
        if opts.dry_run:
            return WriteResult(self.present_obj(t, current.obj), 200, warnings)
        uid = old_meta.get("uid", "")
        if policy == "Orphan":
            await self._orphan(uid)
        finalizers = list(old_meta.get("finalizers") or [])
        if policy == "Foreground" and self.dependents.get(uid) and FOREGROUND_FINALIZER not in finalizers:
            finalizers.append(FOREGROUND_FINALIZER)
        namespace_kind = t.rt.key == ("", "namespaces")
        strategy = self.strategies.get(t.rt.group, t.rt.plural, t.rt.is_custom)
        grace = strategy.deletion_grace(current.obj, options)  # pods on a node: the kubelet stops them first
        if finalizers or namespace_kind or grace:
            previous_grace = old_meta.get("deletionGracePeriodSeconds")
            shorter = grace is not None and previous_grace is not None and grace < previous_grace
            if (
                old_meta.get("deletionTimestamp")
                and finalizers == list(old_meta.get("finalizers") or [])
                and not shorter
            ):
                return WriteResult(self.present_obj(t, current.obj), 200, warnings)
            obj = copy_object(current.obj)
            meta = obj["metadata"]
            if grace is not None and (shorter or not meta.get("deletionTimestamp")):
                meta["deletionTimestamp"] = timestamp(now() + timedelta(seconds=grace))
                meta["deletionGracePeriodSeconds"] = grace
            meta.setdefault("deletionTimestamp", timestamp())
            meta.setdefault("deletionGracePeriodSeconds", 0)
            if finalizers:
                meta["finalizers"] = finalizers
            if namespace_kind:
                obj.setdefault("status", {})["phase"] = "Terminating"
            stored = self.store.put(t.rt.key, obj)
            self._index(t.rt.key, stored.obj, current.obj)
            if FOREGROUND_FINALIZER in finalizers:
                self.queue_gc(uid)
            await self.store.persisted()
            return WriteResult(self.present_obj(t, stored.obj), 200, warnings)
        removed = self._remove(t.rt.key, t.namespace, t.name)
        await self.store.persisted()
        return WriteResult(self.present_obj(t, removed.obj if removed else current.obj), 200, warnings)

    def _remove(self, resource: tuple[str, str], namespace: str, name: str) -> Stored | None:
        removed = self.store.remove(resource, namespace, name)
        if removed is not None:
            self._unindex(resource, removed.obj)
            self.strategies.get(resource[0], resource[1], self._is_custom(resource)).deleted(removed.obj)
            uid = removed.obj["metadata"].get("uid", "")
            if self.dependents.get(uid):
                self.queue_gc(uid)
        return removed

    def _is_custom(self, resource: tuple[str, str]) -> bool:
        rt = self.registry.get(*resource)
        return rt is not None and rt.is_custom

    async def _orphan(self, uid: str) -> None:
        """Take the owner reference to `uid` out of every dependent."""
        for resource, namespace, name in list(self.dependents.get(uid, ())):
            stored = self.store.get(resource, namespace, name)
            if stored is None:
                continue
            obj = copy_object(stored.obj)
            refs = [r for r in obj["metadata"].get("ownerReferences", []) if r.get("uid") != uid]
            if refs:
                obj["metadata"]["ownerReferences"] = refs
            else:
                obj["metadata"].pop("ownerReferences", None)
            self.store.put(resource, obj)
            self._index(resource, obj, stored.obj)

    async def delete_collection(
        self, t: Target, label_selector: str, field_selector: str, options: JsonObject, opts: WriteOptions
    ) -> list[Stored]:
        listed = self.list_objects(t, label_selector, field_selector)
        for stored in listed.items:
            meta = stored.obj["metadata"]
            target = Target(t.rt, t.version, meta.get("namespace", ""), meta["name"])
            try:
                await self.delete(target, options, opts)
            except StatusError as exc:
                if exc.code != 404:
                    raise
        return listed.items

    # -- garbage-collection bookkeeping -------------------------------------------------------------------

    def _index(self, resource: tuple[str, str], obj: JsonObject, old: JsonObject | None) -> None:
        meta = obj["metadata"]
        where = (resource, meta.get("namespace", ""), meta["name"])
        if old is not None:
            self._unindex(resource, old, keep_uid=True)
        uid = meta.get("uid")
        if uid:
            self.by_uid[uid] = where
        for ref in meta.get("ownerReferences") or ():
            owner = ref.get("uid")
            if owner:
                self.dependents.setdefault(owner, set()).add(where)
                if owner not in self.by_uid:
                    self.queue_gc(owner)  # an owner that does not exist (any more)

    def _unindex(self, resource: tuple[str, str], obj: JsonObject, keep_uid: bool = False) -> None:
        meta = obj["metadata"]
        where = (resource, meta.get("namespace", ""), meta["name"])
        if not keep_uid:
            self.by_uid.pop(meta.get("uid", ""), None)
        for ref in meta.get("ownerReferences") or ():
            dependents = self.dependents.get(ref.get("uid", ""))
            if dependents is not None:
                dependents.discard(where)
                if not dependents:
                    del self.dependents[ref["uid"]]

    def queue_gc(self, uid: str) -> None:
        """Ask the garbage collector to look at the dependents of `uid`."""
        self.gc_queue.append(uid)
        self.gc_wakeup.set()

    def queue_gc_later(self, uid: str, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.queue_gc, uid)

    async def finalize_namespace(self, name: str) -> None:
        """Finish a terminating namespace whose objects are all gone (the `kubernetes` finalizer's work)."""
        current = self.store.get(("", "namespaces"), "", name)
        if current is None or not current.obj["metadata"].get("deletionTimestamp"):
            return
        spec_finalizers = (current.obj.get("spec") or {}).get("finalizers") or []
        if NAMESPACE_FINALIZER in spec_finalizers:
            obj = copy_object(current.obj)
            obj["spec"]["finalizers"] = [f for f in spec_finalizers if f != NAMESPACE_FINALIZER]
            current = self.store.put(("", "namespaces"), obj)
        if not current.obj["metadata"].get("finalizers") and not (current.obj.get("spec") or {}).get(
            "finalizers"
        ):
            self._remove(("", "namespaces"), "", name)
        await self.store.persisted()

    def dependents_of(self, uid: str) -> Iterable[tuple[tuple[str, str], str, str]]:
        return list(self.dependents.get(uid, ()))
