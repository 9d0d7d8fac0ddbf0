"""The resources the mesh reads, as lightkube resource classes whose objects decode to plain dicts (not client
model objects): the informers project them into the mesh's own slim types and drop the rest."""

from __future__ import annotations

from lightkube.core import resource as res
from lightkube.generic_resource import GenericGlobalResource, GenericNamespacedResource

READ = ["get", "list", "watch", "global_list", "global_watch"]


def _namespaced(group: str, version: str, kind: str, plural: str) -> type[GenericNamespacedResource]:
    api = res.ApiInfo(resource=res.ResourceDef(group, version, kind), plural=plural, verbs=READ)
    return type(kind, (GenericNamespacedResource,), {"_api_info": api})


def _global(group: str, version: str, kind: str, plural: str) -> type[GenericGlobalResource]:
    api = res.ApiInfo(resource=res.ResourceDef(group, version, kind), plural=plural, verbs=READ)
    return type(kind, (GenericGlobalResource,), {"_api_info": api})


Pods = _namespaced("", "v1", "Pod", "pods")
Services = _namespaced("", "v1", "Service", "services")
EndpointSlices = _namespaced("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
Secrets = _namespaced("", "v1", "Secret", "secrets")
ConfigMaps = _namespaced("", "v1", "ConfigMap", "configmaps")
Nodes = _global("", "v1", "Node", "nodes")
Namespaces = _global("", "v1", "Namespace", "namespaces")


def custom(group: str, version: str, kind: str, plural: str, namespaced: bool = True) -> type[res.Resource]:
    """A raw resource class for a custom resource (Istio's config kinds)."""
    return _namespaced(group, version, kind, plural) if namespaced else _global(group, version, kind, plural)


def pod_proxy(path: str) -> type[res.Resource]:
    """GET through the API server to a pod's HTTP port: `client.get(pod_proxy("debug/syncz"), "POD:PORT",
    namespace=NS)` (the `pods/proxy` subresource, which works on real clusters as on local ones)."""
    api = res.ApiInfo(
        resource=res.ResourceDef("", "v1", "PodProxy"),
        parent=res.ResourceDef("", "v1", "Pod"),
        plural="pods",
        verbs=["get"],
        action=f"proxy/{path.lstrip('/')}",
    )
    return type("PodProxy", (GenericNamespacedResource,), {"_api_info": api})
