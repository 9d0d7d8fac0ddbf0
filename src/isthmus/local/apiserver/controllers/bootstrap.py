"""The objects every cluster has from the start: the system namespaces and the `kubernetes` Service with its
Endpoints and EndpointSlice pointing at this API server (re-pointed when its address changes)."""

from __future__ import annotations

from isthmus.local.apiserver.controllers.base import Controller, JsonObject, ResourceKey
from isthmus.local.apiserver.store import copy_object

NAMESPACES = ("", "namespaces")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MANAGER = "kube-apiserver"


class Bootstrap(Controller):
    name = "bootstrap"

    async def prepare(self) -> None:
        ctx = self.ctx
        for name in SYSTEM_NAMESPACES:
            if ctx.get(NAMESPACES, "", name) is None:
                await ctx.objects.create(
                    ctx.target(*NAMESPACES), {"metadata": {"name": name}}, ctx.options(MANAGER)
                )
        host, port = ctx.config.listen_host, ctx.config.listen_port
        await self._ensure(
            ("", "services"),
            "default",
            "kubernetes",
            {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": ctx.config.kubernetes_service_ip,
                    "sessionAffinity": "None",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                },
            },
        )
        await self._ensure(
            ("", "endpoints"),
            "default",
            "kubernetes",
            {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                },
                "subsets": [
                    {
                        "addresses": [{"ip": host}],
                        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                    }
                ],
            },
        )
        await self._ensure(
            ("discovery.k8s.io", "endpointslices"),
            "default",
            "kubernetes",
            {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {
                        "kubernetes.io/service-name": "kubernetes",
                        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [host],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                    }
                ],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            },
        )

    async def _ensure(self, resource: ResourceKey, namespace: str, name: str, desired: JsonObject) -> None:
        """Create the object, or bring the fields it sets back to `desired` (the address may have changed)."""
        ctx = self.ctx
        current = ctx.get(resource, namespace, name)
        if current is None:
            await ctx.objects.create(
                ctx.target(*resource, namespace), copy_object(desired), ctx.options(MANAGER)
            )
            return
        updated = copy_object(current.obj)
        for key, value in desired.items():
            if key == "metadata":
                updated["metadata"].setdefault("labels", {}).update(value.get("labels", {}))
            else:
                updated[key] = value
        if updated != current.obj:
            await ctx.objects.update(ctx.target(*resource, namespace, name), updated, ctx.options(MANAGER))
