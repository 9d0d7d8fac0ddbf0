"""Controllers that live inside the API server process, as in kube-apiserver and kube-controller-manager:
CRD establishment and cleanup, namespace termination, garbage collection by ownerReferences, and the
bootstrap objects every cluster has (system namespaces, the `kubernetes` Service and its endpoints).

Each controller is an asyncio task on the server's loop that reacts to store events; all writes go through
`Objects`, so they follow the same rules as client writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from isthmus.local.apiserver.auth import SYSTEM_MASTERS, UserInfo
from isthmus.local.apiserver.clock import timestamp
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.objects import FOREGROUND_FINALIZER, Objects, Target, WriteOptions
from isthmus.local.apiserver.resources import ResourceType, crd_resource_type
from isthmus.local.apiserver.store import DELETED, Watcher, copy_object
from isthmus.local.apiserver.strategies import CRD_CLEANUP_FINALIZER, NAMESPACE_FINALIZER

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
SYSTEM_USER = UserInfo("system:apiserver", groups=(SYSTEM_MASTERS,))
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _options(manager: str) -> WriteOptions:
    return WriteOptions(user=SYSTEM_USER, field_manager=manager, field_validation="Ignore")


class Controllers:
    """Starts and stops the in-process controllers of one API server."""

    def __init__(self, objects: Objects, config: ApiServerConfig) -> None:
        self.objects = objects
        self.config = config
        self._tasks: list[asyncio.Task[None]] = []
        self._gc_wakeup = asyncio.Event()
        objects.on_gc_work = self._gc_wakeup.set

    def _target(
        self, group: str, plural: str, namespace: str = "", name: str = "", subresource: str = ""
    ) -> Target:
        rt = self.objects.registry.get(group, plural)
        assert rt is not None, f"{plural}.{group} is not served"
        return Target(rt, rt.storage_version, namespace, name, subresource)

    def register_existing_crds(self) -> None:
        """Serve every stored CRD before the first request (their objects are already in storage)."""
        for stored in self.objects.store.iter_objects(CRDS):
            self._register(stored.obj)

    async def start(self) -> None:
        await self._bootstrap()
        self._spawn(self._run_crds())
        self._spawn(self._run_namespaces())
        self._spawn(self._run_gc())
        if self.objects.gc_queue:
            self._gc_wakeup.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _events(self, resource: tuple[str, str]) -> Watcher:
        return self.objects.store.watch(resource, self.objects.store.rv, lambda obj: True)

    # -- bootstrap ------------------------------------------------------------------------------------------

    async def _bootstrap(self) -> None:
        store = self.objects.store
        for name in SYSTEM_NAMESPACES:
            if store.get(NAMESPACES, "", name) is None:
                await self.objects.create(
                    self._target(*NAMESPACES), {"metadata": {"name": name}}, _options("kube-apiserver")
                )
        service_ip = self.config.kubernetes_service_ip
        service = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": service_ip,
                "sessionAffinity": "None",
                "ports": [
                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.config.listen_port}
                ],
            },
        }
        await self._ensure(("", "services"), "default", "kubernetes", service)
        endpoints = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": [
                {
                    "addresses": [{"ip": self.config.listen_host}],
                    "ports": [{"name": "https", "port": self.config.listen_port, "protocol": "TCP"}],
                }
            ],
        }
        await self._ensure(("", "endpoints"), "default", "kubernetes", endpoints)
        slice_ = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.config.listen_host], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.config.listen_port, "protocol": "TCP"}],
        }
        await self._ensure(("discovery.k8s.io", "endpointslices"), "default", "kubernetes", slice_)

    async def _ensure(
        self, resource: tuple[str, str], namespace: str, name: str, desired: JsonObject
    ) -> None:
        """Create the object, or bring the fields it sets back to `desired` (the address may have changed)."""
        current = self.objects.store.get(resource, namespace, name)
        options = _options("kube-apiserver")
        if current is None:
            await self.objects.create(self._target(*resource, namespace), copy_object(desired), options)
            return
        updated = copy_object(current.obj)
        for key, value in desired.items():
            if key == "metadata":
                updated["metadata"].setdefault("labels", {}).update(value.get("labels", {}))
            else:
                updated[key] = value
        if updated != current.obj:
            await self.objects.update(self._target(*resource, namespace, name), updated, options)

    # -- CRDs -----------------------------------------------------------------------------------------------

    def _register(self, crd: JsonObject) -> ResourceType | None:
        try:
            rt = crd_resource_type(crd)
        except (KeyError, TypeError) as exc:
            log.warning("CRD %s cannot be served: %s", crd["metadata"]["name"], exc)
            return None
        if not rt.versions:
            self.objects.registry.unregister(rt.group, rt.plural)
            return None
        current = self.objects.registry.get(rt.group, rt.plural)
        if current is not None and not current.is_custom:
            return None
        self.objects.registry.register(rt)
        return rt

    async def _run_crds(self) -> None:
        watcher = await self._events(CRDS)
        for stored in list(self.objects.store.iter_objects(CRDS)):
            await self._reconcile_crd(stored.obj)
        while True:
            event = await watcher.queue.get()
            if event is None:
                watcher = await self._events(CRDS)
                continue
            if event.type != DELETED:
                try:
                    await self._reconcile_crd(event.obj)
                except StatusError as exc:
                    log.warning("CRD %s: %s", event.obj["metadata"]["name"], exc)
            else:
                spec = event.obj.get("spec", {})
                self.objects.registry.unregister(
                    spec.get("group", ""), spec.get("names", {}).get("plural", "")
                )

    async def _reconcile_crd(self, crd: JsonObject) -> None:
        name = crd["metadata"]["name"]
        if crd["metadata"].get("deletionTimestamp"):
            await self._cleanup_crd(crd)
            return
        rt = self._register(crd)
        if rt is None:
            return
        current = self.objects.store.get(CRDS, "", name)
        if current is None:
            return
        status = copy_object(current.obj.get("status") or {})
        names = crd["spec"]["names"]
        accepted = {
            k: v
            for k, v in names.items()
            if k in ("kind", "listKind", "plural", "singular", "shortNames", "categories")
        }
        accepted.setdefault("singular", names["kind"].lower())
        accepted.setdefault("listKind", names["kind"] + "List")
        conditions = []
        for kind, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ):
            previous = next((c for c in status.get("conditions", []) if c.get("type") == kind), None)
            since = (
                previous["lastTransitionTime"]
                if previous and previous.get("status") == "True"
                else timestamp()
            )
            conditions.append(
                {
                    "type": kind,
                    "status": "True",
                    "lastTransitionTime": since,
                    "reason": reason,
                    "message": message,
                }
            )
        stored_versions = list(status.get("storedVersions") or [])
        if rt.storage_version not in stored_versions:
            stored_versions.append(rt.storage_version)
        desired = {"acceptedNames": accepted, "conditions": conditions, "storedVersions": stored_versions}
        if desired != status:
            obj = copy_object(current.obj)
            obj["status"] = desired
            await self.objects.update(
                self._target(*CRDS, name=name, subresource="status"), obj, _options("apiextensions-apiserver")
            )

    async def _cleanup_crd(self, crd: JsonObject) -> None:
        spec = crd.get("spec", {})
        rt = self.objects.registry.get(spec.get("group", ""), spec.get("names", {}).get("plural", ""))
        if rt is not None and rt.is_custom:
            for stored in list(self.objects.store.iter_objects(rt.key)):
                meta = stored.obj["metadata"]
                target = Target(rt, rt.storage_version, meta.get("namespace", ""), meta["name"])
                with contextlib.suppress(StatusError):
                    await self.objects.delete(target, {}, _options("apiextensions-apiserver"))
            if self.objects.store.count(rt.key):
                return  # objects with finalizers of their own: try again when they change
            self.objects.registry.unregister(rt.group, rt.plural)
            self.objects.store.close_watchers(rt.key)
        await self._drop_finalizer(CRDS, "", crd["metadata"]["name"], CRD_CLEANUP_FINALIZER)

    async def _drop_finalizer(
        self, resource: tuple[str, str], namespace: str, name: str, finalizer: str
    ) -> None:
        current = self.objects.store.get(resource, namespace, name)
        if current is None or finalizer not in (current.obj["metadata"].get("finalizers") or []):
            return
        obj = copy_object(current.obj)
        obj["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != finalizer]
        await self.objects.update(
            self._target(*resource, namespace, name), obj, _options("kube-controller-manager")
        )

    # -- namespaces -----------------------------------------------------------------------------------------

    async def _run_namespaces(self) -> None:
        watcher = await self._events(NAMESPACES)
        loop = asyncio.get_running_loop()
        first_seen: dict[str, float] = {}
        while True:
            terminating = [
                s.obj
                for s in self.objects.store.iter_objects(NAMESPACES)
                if s.obj["metadata"].get("deletionTimestamp")
            ]
            for namespace in terminating:
                # Like kube-controller-manager, start cleaning up a moment after the deletion, not in the
                # same instant: `kubectl delete -f` of a file that lists the namespace first then deletes the
                # namespace's objects itself, as on a real cluster.
                since = first_seen.setdefault(namespace["metadata"]["name"], loop.time())
                if loop.time() - since < self.config.namespace_cleanup_delay:
                    continue
                try:
                    await self._finish_namespace(namespace)
                except StatusError as exc:
                    log.warning("namespace %s: %s", namespace["metadata"]["name"], exc)
            names = {n["metadata"]["name"] for n in terminating}
            for gone in set(first_seen) - names:
                del first_seen[gone]
            timeout = 0.25 if terminating else None
            with contextlib.suppress(TimeoutError):
                event = await asyncio.wait_for(watcher.queue.get(), timeout)
                if event is None:
                    watcher = await self._events(NAMESPACES)

    async def _finish_namespace(self, namespace: JsonObject) -> None:
        name = namespace["metadata"]["name"]
        remaining = 0
        for rt in self.objects.registry.all():
            if not rt.namespaced or rt.virtual:
                continue
            for stored in list(self.objects.store.iter_objects(rt.key, name)):
                remaining += 1
                if stored.obj["metadata"].get("deletionTimestamp"):
                    continue
                target = Target(rt, rt.storage_version, name, stored.obj["metadata"]["name"])
                with contextlib.suppress(StatusError):
                    await self.objects.delete(
                        target, {"propagationPolicy": "Background"}, _options("namespace-controller")
                    )
        if remaining:
            return
        current = self.objects.store.get(NAMESPACES, "", name)
        if current is None:
            return
        meta = current.obj["metadata"]
        spec_finalizers = (current.obj.get("spec") or {}).get("finalizers") or []
        if NAMESPACE_FINALIZER in spec_finalizers:
            obj = copy_object(current.obj)
            obj["spec"]["finalizers"] = [f for f in spec_finalizers if f != NAMESPACE_FINALIZER]
            self.objects.store.put(NAMESPACES, obj)
            current = self.objects.store.get(NAMESPACES, "", name)
        if (
            current is not None
            and not meta.get("finalizers")
            and not (current.obj.get("spec") or {}).get("finalizers")
        ):
            self.objects._remove(NAMESPACES, "", name)
            await self.objects.store.persisted()

    # -- garbage collection ---------------------------------------------------------------------------------

    async def _run_gc(self) -> None:
        while True:
            await self._gc_wakeup.wait()
            self._gc_wakeup.clear()
            queue, self.objects.gc_queue = self.objects.gc_queue, []
            for uid in dict.fromkeys(queue):
                try:
                    await self._collect(uid)
                except StatusError as exc:
                    log.warning("garbage collection for owner %s: %s", uid, exc)

    async def _collect(self, owner_uid: str) -> None:
        owner_at = self.objects.by_uid.get(owner_uid)
        owner = self.objects.store.get(*owner_at) if owner_at else None
        foreground = owner is not None and FOREGROUND_FINALIZER in (
            owner.obj["metadata"].get("finalizers") or []
        )
        if owner is not None and not foreground:
            return
        for resource, namespace, name in self.objects.dependents_of(owner_uid):
            stored = self.objects.store.get(resource, namespace, name)
            rt = self.objects.registry.get(*resource)
            if stored is None or rt is None or stored.obj["metadata"].get("deletionTimestamp"):
                continue
            refs = stored.obj["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") != owner_uid and r.get("uid") in self.objects.by_uid]
            target = Target(rt, rt.storage_version, namespace, name)
            if alive:
                obj = copy_object(stored.obj)
                obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                await self.objects.update(target, obj, _options("garbage-collector"))
            else:
                await self.objects.delete(
                    target,
                    {"propagationPolicy": "Foreground" if foreground else "Background"},
                    _options("garbage-collector"),
                )
        if foreground and owner_at is not None and not self.objects.dependents_of(owner_uid):
            await self._drop_finalizer(owner_at[0], owner_at[1], owner_at[2], FOREGROUND_FINALIZER)
        elif foreground:
            # Dependents with finalizers of their own are still going: look again shortly.
            asyncio.get_running_loop().call_later(0.5, self.objects.queue_gc, owner_uid)
