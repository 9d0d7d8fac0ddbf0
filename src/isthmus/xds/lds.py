"""LDS: listeners.

A sidecar's traffic arrives through the capture rules: outbound at `virtualOutbound` (15001), which hands each
connection to the listener of its original destination (`use_original_dst`): `0.0.0.0_PORT` for HTTP ports
(routes from RDS `"PORT"`), `VIP_PORT` for TCP ports (the VIP of the proxy's own cluster; a service without one
there is reached by name over HTTP only), or its own catch-all (PassthroughCluster with ALLOW_ANY,
BlackHoleCluster with REGISTRY_ONLY). Inbound arrives at `virtualInbound` (15006), with a filter chain per
port the pod serves, to `inbound|PORT|NAME|HOST`; other ports pass through.
Proxyless gRPC clients ask for `host:port` and get an `api_listener` pointing at RDS of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import any_pb2, duration_pb2, message, wrappers_pb2

from isthmus.config.networking import TcpRoute, WeightedDestination
from isthmus.config.security import MtlsMode
from isthmus.model import Protocol, Service, ServicePort
from isthmus.xds import names, rds, tls
from isthmus.xds.cds import ads
from isthmus.xds.resources import Resource, TypeUrl
from isthmus.xds.view import InboundPort, View

Listener = listener_pb2.Listener
HCM = hcm.HttpConnectionManager
_TCP = {
    Protocol.TCP,
    Protocol.HTTPS,
    Protocol.TLS,
    Protocol.MONGO,
    Protocol.REDIS,
    Protocol.MYSQL,
    Protocol.UNSUPPORTED,
}


def _packed(value: message.Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(value)
    return out


def _address(ip: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=ip, port_value=port))


def _access_log(view: View) -> list[accesslog_pb2.AccessLog]:
    path = view.mesh.access_log_file
    if not path:
        return []
    return [
        accesslog_pb2.AccessLog(
            name="envoy.access_loggers.file", typed_config=_packed(file_pb2.FileAccessLog(path=path))
        )
    ]


def _http_filters(proxyless: bool) -> list[hcm.HttpFilter]:
    router = hcm.HttpFilter(name="envoy.filters.http.router", typed_config=_packed(router_pb2.Router()))
    if proxyless:
        return [router]
    fault = hcm.HttpFilter(name="envoy.filters.http.fault", typed_config=_packed(fault_pb2.HTTPFault()))
    return [fault, router]


def _hcm(
    view: View, stat_prefix: str, route_name: str = "", inline: route_pb2.RouteConfiguration | None = None
) -> HCM:
    manager = HCM(
        codec_type=HCM.AUTO,
        stat_prefix=stat_prefix,
        http_filters=_http_filters(view.key.proxyless),
        use_remote_address=wrappers_pb2.BoolValue(value=False),
        upgrade_configs=[HCM.UpgradeConfig(upgrade_type="websocket")],
        access_log=_access_log(view),
    )
    if inline is not None:
        manager.route_config.CopyFrom(inline)
    else:
        manager.rds.CopyFrom(hcm.Rds(config_source=ads(), route_config_name=route_name))
    return manager


def _network_hcm(manager: HCM) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=_packed(manager)
    )


def _tcp_proxy(
    stat_prefix: str, cluster: str = "", weighted: list[tuple[str, int]] | None = None
) -> listener_components_pb2.Filter:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if weighted:
        proxy.weighted_clusters.CopyFrom(
            tcp_proxy_pb2.TcpProxy.WeightedCluster(
                clusters=[
                    tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=n, weight=w)
                    for n, w in weighted
                    if w > 0
                ]
            )
        )
    else:
        proxy.cluster = cluster
    return listener_components_pb2.Filter(name="envoy.filters.network.tcp_proxy", typed_config=_packed(proxy))


def _catch_all_cluster(view: View) -> str:
    return names.BLACKHOLE if view.outbound_policy() == "REGISTRY_ONLY" else names.PASSTHROUGH


def virtual_outbound(view: View) -> Listener:
    return Listener(
        name=names.VIRTUAL_OUTBOUND,
        address=_address("0.0.0.0", names.OUTBOUND_PORT),
        use_original_dst=wrappers_pb2.BoolValue(value=True),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                name="virtualOutbound-catchall-tcp",
                filters=[_tcp_proxy(_catch_all_cluster(view), _catch_all_cluster(view))],
            )
        ],
    )


def http_listener(view: View, port: int) -> Listener:
    return Listener(
        name=names.listener("0.0.0.0", port),
        address=_address("0.0.0.0", port),
        bind_to_port=wrappers_pb2.BoolValue(value=False),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[_network_hcm(_hcm(view, f"outbound_0.0.0.0_{port}", route_name=names.route(port)))]
            )
        ],
    )


def _tcp_route(view: View, service: Service, port: ServicePort) -> list[tuple[str, int]] | None:
    vs = view.virtual_service(service.hostname)
    if vs is None:
        return None
    route: TcpRoute | None = next((r for r in vs.tcp if not r.ports or port.port in r.ports), None)
    if route is None:
        return None
    return [(_destination_cluster(view, w, port.port), w.weight) for w in route.route]


def _destination_cluster(view: View, weighted: WeightedDestination, port: int) -> str:
    destination = weighted.destination
    target = view.sources.aggregate.service(destination.host)
    number = destination.port or (
        target.ports[0].port if target is not None and len(target.ports) == 1 else port
    )
    return names.outbound(number, destination.host, destination.subset)


def tcp_listener(view: View, service: Service, port: ServicePort, vip: str) -> Listener:
    cluster = names.outbound(port.port, service.hostname)
    weighted = _tcp_route(view, service, port)
    stat = f"outbound|{port.port}||{service.hostname}"
    if weighted and len(weighted) > 1:
        proxy = _tcp_proxy(stat, weighted=weighted)
    else:
        proxy = _tcp_proxy(stat, weighted[0][0] if weighted else cluster)
    return Listener(
        name=names.listener(vip, port.port),
        address=_address(vip, port.port),
        bind_to_port=wrappers_pb2.BoolValue(value=False),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[listener_components_pb2.FilterChain(filters=[proxy])],
    )


def view_listeners(view: View) -> Mapping[str, Resource]:
    """A sidecar view's outbound listeners (cached in the view)."""
    cached = view.outputs.get(TypeUrl.LISTENER)
    if cached is not None:
        return cached
    previous = view.memo.get(TypeUrl.LISTENER, {})
    memo: dict[object, Resource] = {}
    built: dict[str, Resource] = {}
    policy = view.outbound_policy()
    access_log = view.mesh.access_log_file

    outbound_key = ("virtualOutbound", policy)
    resource = previous.get(outbound_key) or Resource.of(
        TypeUrl.LISTENER, names.VIRTUAL_OUTBOUND, virtual_outbound(view)
    )
    memo[outbound_key] = built[names.VIRTUAL_OUTBOUND] = resource
    for number in sorted(rds.http_ports(view)):
        key: object = ("http", number, access_log)
        resource = previous.get(key) or Resource.of(
            TypeUrl.LISTENER, names.listener("0.0.0.0", number), http_listener(view, number)
        )
        memo[key] = built[resource.name] = resource
    for service in view.services():
        vip = service.vip_for(view.key.cluster)
        if not vip or service.headless or service.external_name:
            continue
        for port in service.ports:
            if port.protocol not in _TCP:
                continue
            name = names.listener(vip, port.port)
            key = ("tcp", service, port, vip, view.virtual_service(service.hostname))
            resource = previous.get(key) or Resource.of(
                TypeUrl.LISTENER, name, tcp_listener(view, service, port, vip)
            )
            memo[key] = built[name] = resource
    view.memo[TypeUrl.LISTENER] = memo
    view.outputs[TypeUrl.LISTENER] = built
    return built


def _inbound_route(inbound: InboundPort) -> route_pb2.RouteConfiguration:
    cluster = names.inbound(inbound.port.port, inbound.port.name, inbound.service.hostname)
    return route_pb2.RouteConfiguration(
        name=cluster,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=f"inbound|http|{inbound.port.port}",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        name="default",
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(
                            cluster=cluster, timeout=duration_pb2.Duration()
                        ),
                    )
                ],
            )
        ],
    )


def _inbound_chains(
    view: View, inbound: InboundPort, mode: MtlsMode
) -> list[listener_components_pb2.FilterChain]:
    """One port's chains: mTLS (the mesh's ALPN), plaintext, and, under PERMISSIVE, the app's own TLS passed
    through; which of them exist is the port's PeerAuthentication mode."""
    cluster = names.inbound(inbound.port.port, inbound.port.name, inbound.service.hostname)
    port = wrappers_pb2.UInt32Value(value=inbound.target)
    if inbound.port.protocol.is_http:
        manager = _hcm(view, f"inbound_0.0.0.0_{inbound.target}", inline=_inbound_route(inbound))
        filters = [_network_hcm(manager)]
    else:
        filters = [_tcp_proxy(cluster, cluster)]
    match, chain = listener_components_pb2.FilterChainMatch, listener_components_pb2.FilterChain
    if not view.key.mtls:  # no certificates: plaintext only; STRICT cannot be met, so nothing is accepted
        if mode is MtlsMode.STRICT:
            refuse = [_tcp_proxy(names.BLACKHOLE, names.BLACKHOLE)]
            return [
                chain(
                    name=f"{cluster}-strict", filter_chain_match=match(destination_port=port), filters=refuse
                )
            ]
        return [chain(name=cluster, filter_chain_match=match(destination_port=port), filters=filters)]
    chains = []
    if mode in (MtlsMode.STRICT, MtlsMode.PERMISSIVE):
        chains.append(
            chain(
                name=f"{cluster}-mtls",
                filter_chain_match=match(
                    destination_port=port,
                    transport_protocol="tls",
                    application_protocols=list(names.MESH_ALPN),
                ),
                filters=filters,
                transport_socket=tls.downstream_socket(),
            )
        )
    if mode is MtlsMode.PERMISSIVE:
        chains.append(
            chain(
                name=f"{cluster}-app-tls",
                filter_chain_match=match(destination_port=port, transport_protocol="tls"),
                filters=[_tcp_proxy(cluster, cluster)],
            )
        )
    if mode in (MtlsMode.PERMISSIVE, MtlsMode.DISABLE):
        chains.append(
            chain(
                name=f"{cluster}-plaintext",
                filter_chain_match=match(destination_port=port, transport_protocol="raw_buffer"),
                filters=filters,
            )
        )
    return chains


def virtual_inbound(view: View, ports: list[InboundPort], modes: Mapping[int, MtlsMode]) -> Resource:
    """A proxy's own inbound listener; `modes` is the PeerAuthentication mode per container port."""
    chains = []
    for inbound in ports:
        chains.extend(_inbound_chains(view, inbound, modes.get(inbound.target, MtlsMode.PERMISSIVE)))
    chains.append(
        listener_components_pb2.FilterChain(
            name="virtualInbound-catchall-tcp",
            filters=[_tcp_proxy(names.INBOUND_PASSTHROUGH, names.INBOUND_PASSTHROUGH)],
        )
    )
    listener_filters = [
        listener_components_pb2.ListenerFilter(
            name="envoy.filters.listener.original_dst", typed_config=_packed(original_dst_pb2.OriginalDst())
        )
    ]
    if view.key.mtls:
        listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=_packed(tls_inspector_pb2.TlsInspector()),
            )
        )
    listener = Listener(
        name=names.VIRTUAL_INBOUND,
        address=_address("0.0.0.0", names.INBOUND_PORT),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=listener_filters,
        filter_chains=chains,
    )
    return Resource.of(TypeUrl.LISTENER, names.VIRTUAL_INBOUND, listener)


def proxyless_listeners(view: View, wanted: Iterable[str]) -> dict[str, Resource]:
    """`host:port` listeners for gRPC clients, for the services they may call."""
    out: dict[str, Resource] = {}
    for name in wanted:
        parsed = names.split_host_port(name)
        if parsed is None:
            continue
        service = rds.resolve_host(view, parsed[0])
        if service is None or service.port(parsed[1]) is None:
            continue
        manager = _hcm(view, name, route_name=name)
        listener = Listener(
            name=name, api_listener=api_listener_pb2.ApiListener(api_listener=_packed(manager))
        )
        out[name] = Resource.of(TypeUrl.LISTENER, name, listener)
    return out
