"""What the endpoints and EndpointSlice controllers compute from a Service and its pods, as Kubernetes'
`endpointutil` and `endpointsliceutil` compute it: which pods count, their address for the Service's IP family,
target ports resolved by number or container port name, Endpoints subsets (ready and not-ready addresses,
repacked by port set) and EndpointSlice endpoints (ready, serving and terminating conditions).
Pure functions over JSON objects, shared by both controllers and their tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from isthmus.local.apiserver.controllers import podutil

JsonObject = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
HEADLESS_LABEL = "service.kubernetes.io/headless"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
MAX_ENDPOINTS_ADDRESSES = 1000  # an Endpoints object keeps at most this many addresses (then: truncated)
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def selector_of(service: Mapping[str, Any]) -> Mapping[str, str] | None:
    """The Service's pod selector; None for a Service without one (its endpoints are written by hand)."""
    selector: Mapping[str, str] | None = (service.get("spec") or {}).get("selector") or None
    return selector


def selects(selector: Mapping[str, str], pod: Mapping[str, Any]) -> bool:
    labels = podutil.labels(pod)
    return all(labels.get(k) == v for k, v in selector.items())


def is_headless(service: Mapping[str, Any]) -> bool:
    return (service.get("spec") or {}).get("clusterIP") == "None"


def ip_families(service: Mapping[str, Any]) -> list[str]:
    spec = service.get("spec") or {}
    families = [f for f in spec.get("ipFamilies") or () if f in ("IPv4", "IPv6")]
    if families:
        return families
    cluster_ip = spec.get("clusterIP") or ""
    if cluster_ip and cluster_ip != "None":
        try:
            return ["IPv6" if ipaddress.ip_address(cluster_ip).version == 6 else "IPv4"]
        except ValueError:
            pass
    return ["IPv4"]


def endpoints_family(service: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
    """The address family of a pod's address in the Service's Endpoints: the Service's first IP family, or,
    where the Service does not say (headless, no ipFamilies), the pod's own first address's."""
    spec = service.get("spec") or {}
    if spec.get("ipFamilies") or (spec.get("clusterIP") or "None") != "None":
        return ip_families(service)[0]
    addresses = pod_addresses(pod)
    return (family_of(addresses[0]) if addresses else None) or "IPv4"


def family_of(address: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(address).version == 6 else "IPv4"
    except ValueError:
        return None


def pod_addresses(pod: Mapping[str, Any]) -> list[str]:
    status = pod.get("status") or {}
    addresses = [str(a.get("ip")) for a in status.get("podIPs") or () if a.get("ip")]
    if not addresses and status.get("podIP"):
        addresses = [str(status["podIP"])]
    return addresses


def pod_address(pod: Mapping[str, Any], family: str) -> str | None:
    return next((a for a in pod_addresses(pod) if family_of(a) == family), None)


def in_endpoints(pod: Mapping[str, Any], include_terminating: bool) -> bool:
    """`ShouldPodBeInEndpoints`: not finished, has an IP, and (unless asked) not terminating."""
    if podutil.is_terminal(pod) or not pod_addresses(pod):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def find_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The pod's port for a Service port (`podutil.FindPort`): a number as is, a name looked up among the
    containers' (and sidecar init containers') named ports of the same protocol; None if there is none."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    if not isinstance(target, str):
        return None
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    for container in [*(spec.get("containers") or ()), *sidecars]:
        for port in container.get("ports") or ():
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                number = port.get("containerPort")
                return int(number) if number is not None else None
    return None


def target_ref(pod: Mapping[str, Any]) -> JsonObject:
    meta = pod["metadata"]
    return {
        "kind": "Pod",
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "uid": meta.get("uid", ""),
    }


def hostname_for(pod: Mapping[str, Any], service: Mapping[str, Any]) -> str | None:
    """`ShouldSetHostname`: the pod's hostname when its subdomain is the Service's name."""
    spec = pod.get("spec") or {}
    if (
        spec.get("hostname")
        and spec.get("subdomain") == service["metadata"]["name"]
        and pod["metadata"].get("namespace") == service["metadata"].get("namespace")
    ):
        return str(spec["hostname"])
    return None


def endpoint_signature(pod: Mapping[str, Any] | None) -> Any:
    """What of a pod the endpoints depend on (besides labels): a change elsewhere changes no endpoint."""
    if pod is None:
        return None
    spec = pod.get("spec") or {}
    ports = [c.get("ports") for c in [*(spec.get("containers") or ()), *(spec.get("initContainers") or ())]]
    return (
        pod["metadata"].get("uid"),
        tuple(pod_addresses(pod)),
        podutil.is_ready(pod),
        bool(pod["metadata"].get("deletionTimestamp")),
        podutil.is_terminal(pod),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
        orjson.dumps(ports),
    )


# -- Endpoints (the endpoints controller) -------------------------------------------------------------


def _endpoints_port(service_port: Mapping[str, Any], number: int) -> JsonObject:
    port: JsonObject = {"port": number, "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _port_key(port: Mapping[str, Any]) -> tuple[str, int, str, str]:
    return (
        port.get("name") or "",
        int(port.get("port") or 0),
        port.get("protocol") or "",
        port.get("appProtocol") or "",
    )


def _address_key(address: Mapping[str, Any]) -> tuple[str, str]:
    return str(address.get("ip")), str((address.get("targetRef") or {}).get("uid") or "")


def endpoints_subsets(service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[JsonObject]:
    """The subsets of the Service's Endpoints: each pod's address under each Service port it resolves, ready
    or not (publishNotReadyAddresses makes all ready), repacked so addresses sharing ports share a subset
    (`endpoints.RepackSubsets`), sorted."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    service_ports = spec.get("ports") or []
    addresses: dict[tuple[str, str], JsonObject] = {}
    # port key -> (port, {address key: ready})
    by_port: dict[
        tuple[str, int, str, str] | None, tuple[JsonObject | None, dict[tuple[str, str], bool]]
    ] = {}

    def add(address: JsonObject, port: JsonObject | None, ready: bool) -> None:
        key = _address_key(address)
        addresses.setdefault(key, address)
        pkey = _port_key(port) if port is not None else None
        entry = by_port.setdefault(pkey, (port, {}))
        if entry[1].get(key, True):  # not ready wins over ready
            entry[1][key] = ready

    for pod in pods:
        if not in_endpoints(pod, publish_not_ready):
            continue
        family = endpoints_family(service, pod)
        ip = pod_address(pod, family)
        if ip is None:
            continue
        address: JsonObject = {"ip": ip}
        hostname = hostname_for(pod, service)
        if hostname:
            address["hostname"] = hostname
        if podutil.node_name(pod):
            address["nodeName"] = podutil.node_name(pod)
        address["targetRef"] = target_ref(pod)
        ready = publish_not_ready or podutil.is_ready(pod)
        if not service_ports:
            if is_headless(service):
                add(address, None, ready)
            continue
        for service_port in service_ports:
            number = find_port(pod, service_port)
            if number is not None:
                add(address, _endpoints_port(service_port, number), ready)
    # addresses with the same readiness per port share a subset
    grouped: dict[frozenset[tuple[tuple[str, str], bool]], list[JsonObject]] = {}
    for port, members in by_port.values():
        ports = grouped.setdefault(frozenset(members.items()), [])
        if port is not None:
            ports.append(port)
    subsets = []
    for members_key, subset_ports in grouped.items():
        ordered = sorted(members_key)
        subset: JsonObject = {}
        ready_addresses = [addresses[k] for k, ok in ordered if ok]
        not_ready_addresses = [addresses[k] for k, ok in ordered if not ok]
        if ready_addresses:
            subset["addresses"] = ready_addresses
        if not_ready_addresses:
            subset["notReadyAddresses"] = not_ready_addresses
        if subset_ports:
            subset["ports"] = sorted(subset_ports, key=_port_key)
        subsets.append(subset)
    subsets.sort(key=lambda s: orjson.dumps(s, option=orjson.OPT_SORT_KEYS))
    return subsets


def truncate_subsets(subsets: list[JsonObject]) -> tuple[list[JsonObject], bool]:
    """At most MAX_ENDPOINTS_ADDRESSES addresses, ready ones kept first; True when some were dropped."""
    total = sum(len(s.get("addresses") or ()) + len(s.get("notReadyAddresses") or ()) for s in subsets)
    if total <= MAX_ENDPOINTS_ADDRESSES:
        return subsets, False
    room = MAX_ENDPOINTS_ADDRESSES
    out: list[JsonObject] = []
    for key in ("addresses", "notReadyAddresses"):
        for subset in subsets:
            kept = (subset.get(key) or [])[: max(room, 0)]
            room -= len(kept)
            if kept:
                existing = next((s for s in out if s.get("ports") == subset.get("ports")), None)
                if existing is None:
                    existing = {k: v for k, v in subset.items() if k == "ports"}
                    out.append(existing)
                existing[key] = kept
    return out, True


# -- EndpointSlices (the endpointslice controller) ----------------------------------------------------


def slice_ports(service: Mapping[str, Any], pod: Mapping[str, Any]) -> list[JsonObject]:
    """The slice ports of a pod for the Service (`getEndpointPorts`): ports it cannot resolve are left out."""
    ports = []
    for service_port in (service.get("spec") or {}).get("ports") or ():
        number = find_port(pod, service_port)
        if number is None:
            continue
        port: JsonObject = {
            "name": service_port.get("name") or "",
            "port": number,
            "protocol": service_port.get("protocol") or "TCP",
        }
        if service_port.get("appProtocol"):
            port["appProtocol"] = service_port["appProtocol"]
        ports.append(port)
    return ports


def slice_endpoint(
    pod: Mapping[str, Any], service: Mapping[str, Any], address: str, zone: str | None
) -> JsonObject:
    """A pod as an EndpointSlice endpoint (`podToEndpoint`)."""
    serving = podutil.is_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    endpoint: JsonObject = {
        "addresses": [address],
        "conditions": {
            "ready": publish or (serving and not terminating),
            "serving": serving,
            "terminating": terminating,
        },
    }
    hostname = hostname_for(pod, service)
    if hostname:
        endpoint["hostname"] = hostname
    endpoint["targetRef"] = target_ref(pod)
    if podutil.node_name(pod):
        endpoint["nodeName"] = podutil.node_name(pod)
    if zone:
        endpoint["zone"] = zone
    return endpoint


def ports_key(ports: list[JsonObject]) -> bytes:
    return orjson.dumps(sorted(ports, key=_port_key))


def desired_slice_groups(
    service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], family: str, zones: Mapping[str, str]
) -> dict[bytes, tuple[list[JsonObject], list[JsonObject]]]:
    """The Service's endpoints of one address family grouped by their port set: ports key -> (ports,
    endpoints sorted by address). `zones` maps node names to their topology zone."""
    groups: dict[bytes, tuple[list[JsonObject], list[JsonObject]]] = {}
    for pod in pods:
        if not in_endpoints(pod, True):
            continue
        address = pod_address(pod, family)
        if address is None:
            continue
        ports = sorted(slice_ports(service, pod), key=_port_key)
        endpoint = slice_endpoint(pod, service, address, zones.get(podutil.node_name(pod)))
        groups.setdefault(ports_key(ports), (ports, []))[1].append(endpoint)
    for _, endpoints in groups.values():
        endpoints.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["uid"]))
    return groups


def slice_labels(service: Mapping[str, Any], managed_by: str) -> dict[str, str]:
    """The Service's labels (but the reserved ones) and the slice's own (`setEndpointSliceLabels`)."""
    labels = {
        k: v for k, v in podutil.labels(service).items() if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)
    }
    if is_headless(service):
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = service["metadata"]["name"]
    labels[MANAGED_BY_LABEL] = managed_by
    return labels


def plan_slices(
    groups: Mapping[bytes, tuple[list[JsonObject], list[JsonObject]]],
    existing: list[JsonObject],
    capacity: int = MAX_ENDPOINTS_PER_SLICE,
    placeholder: bool = True,
) -> tuple[list[tuple[JsonObject | None, list[JsonObject], list[JsonObject]]], list[JsonObject]]:
    """Place the endpoints in slices, changing as few slices as possible: an endpoint stays in the slice that
    has it, new ones fill slices with room, then slices no longer needed are reused before new ones are
    made. Returns (slice or None for a new one, ports, endpoints) for every slice to keep, and the slices to
    delete. With no endpoints at all one empty slice stays (Kubernetes' placeholder), if `placeholder`."""
    by_ports: dict[bytes, list[JsonObject]] = {}
    for current in sorted(existing, key=lambda s: s["metadata"]["name"]):
        by_ports.setdefault(ports_key(list(current.get("ports") or [])), []).append(current)
    kept: list[tuple[JsonObject | None, list[JsonObject], list[JsonObject]]] = []
    spare: list[JsonObject] = []
    new: list[tuple[list[JsonObject], list[JsonObject]]] = []
    for key, (ports, endpoints) in groups.items():
        slices = by_ports.pop(key, [])
        home: dict[str, str] = {}
        for current in slices:
            for endpoint in current.get("endpoints") or ():
                for address in endpoint.get("addresses") or ():
                    home.setdefault(address, current["metadata"]["name"])
        contents: dict[str, list[JsonObject]] = {s["metadata"]["name"]: [] for s in slices}
        leftovers = []
        for endpoint in endpoints:
            name = home.get(endpoint["addresses"][0])
            if name is not None and len(contents[name]) < capacity:
                contents[name].append(endpoint)
            else:
                leftovers.append(endpoint)
        for current in slices:
            room = contents[current["metadata"]["name"]]
            while leftovers and len(room) < capacity:
                room.append(leftovers.pop(0))
        for current in slices:
            content = contents[current["metadata"]["name"]]
            if content:
                content.sort(
                    key=lambda e: (
                        e["addresses"][0],
                        e["targetRef"].get("uid", "") if e.get("targetRef") else "",
                    )
                )
                kept.append((current, ports, content))
            else:
                spare.append(current)
        for start in range(0, len(leftovers), capacity):
            new.append((ports, leftovers[start : start + capacity]))
    for slices in by_ports.values():
        spare.extend(slices)
    if placeholder and not groups and not new:
        new.append(([], []))  # the placeholder
    for ports, endpoints in new:
        kept.append((spare.pop(0) if spare else None, ports, endpoints))
    return kept, spare
