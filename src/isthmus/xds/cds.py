"""CDS: the clusters a proxy connects to.

- `outbound|PORT|SUBSET|HOST` for every port of every service the view sees (and each DestinationRule subset),
  fed by EDS with the endpoints of every cluster of the mesh; load balancer, connection pool, outlier detection
  and locality settings from the DestinationRule in effect.
- `inbound|PORT|PORTNAME|HOST` (private to a proxy): its own app on 127.0.0.1:containerPort.
- `PassthroughCluster`, `BlackHoleCluster`, `InboundPassthroughClusterIpv4`.
Proxyless gRPC clients ask for outbound clusters by name and get only those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from isthmus.config.networking import duration
from isthmus.model import Protocol, Service, ServicePort
from isthmus.xds import names, tls
from isthmus.xds.resources import Resource, TypeUrl
from isthmus.xds.traffic import ClusterPolicy, cluster_policy
from isthmus.xds.view import InboundPort, View

Cluster = cluster_pb2.Cluster
MAX = 2**32 - 1
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_LB = {
    "": Cluster.ROUND_ROBIN,
    "UNSPECIFIED": Cluster.ROUND_ROBIN,
    "ROUND_ROBIN": Cluster.ROUND_ROBIN,
    "LEAST_CONN": Cluster.LEAST_REQUEST,
    "LEAST_REQUEST": Cluster.LEAST_REQUEST,
    "RANDOM": Cluster.RANDOM,
}


def _seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(value * 1e9))
    return out


def ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _http2() -> dict[str, any_pb2.Any]:
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    packed = any_pb2.Any()
    packed.Pack(options)
    return {HTTP_PROTOCOL_OPTIONS: packed}


def _uses_http2(port: ServicePort) -> bool:
    return port.protocol in (Protocol.HTTP2, Protocol.GRPC)


def _apply_policy(cluster: Cluster, policy: ClusterPolicy, proxyless: bool) -> None:
    traffic = policy.policy
    if traffic.lb_simple == "PASSTHROUGH":
        cluster.type = Cluster.ORIGINAL_DST
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
        cluster.ClearField("eds_cluster_config")
    elif traffic.consistent_hash_header:
        cluster.lb_policy = Cluster.RING_HASH
    else:
        cluster.lb_policy = _LB[traffic.lb_simple] if not proxyless else Cluster.ROUND_ROBIN
    pool = traffic.pool
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=wrappers_pb2.UInt32Value(
            value=pool.max_connections if pool and pool.max_connections else MAX
        ),
        max_pending_requests=wrappers_pb2.UInt32Value(
            value=pool.http1_max_pending_requests if pool and pool.http1_max_pending_requests else MAX
        ),
        max_requests=wrappers_pb2.UInt32Value(
            value=pool.http2_max_requests if pool and pool.http2_max_requests else MAX
        ),
        max_retries=wrappers_pb2.UInt32Value(value=pool.max_retries if pool and pool.max_retries else MAX),
    )
    cluster.circuit_breakers.thresholds.append(thresholds)
    if pool and pool.connect_timeout:
        cluster.connect_timeout.CopyFrom(_seconds(pool.connect_timeout))
    outlier = traffic.outlier
    if outlier is not None:
        detection = outlier_detection_pb2.OutlierDetection(
            interval=_seconds(outlier.interval),
            base_ejection_time=_seconds(outlier.base_ejection_time),
            max_ejection_percent=wrappers_pb2.UInt32Value(value=outlier.max_ejection_percent),
            enforcing_success_rate=wrappers_pb2.UInt32Value(value=0),
        )
        five = outlier.consecutive_5xx or 0
        gateway = outlier.consecutive_gateway or 0
        detection.consecutive_5xx.value = five if five else MAX
        detection.enforcing_consecutive_5xx.value = 100 if five else 0
        if gateway:
            detection.consecutive_gateway_failure.value = gateway
            detection.enforcing_consecutive_gateway_failure.value = 100
        cluster.outlier_detection.CopyFrom(detection)
        cluster.common_lb_config.healthy_panic_threshold.value = float(outlier.min_health_percent)
    if policy.locality is not None and policy.locality.enabled and policy.locality.distribute:
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


def outbound(
    view: View,
    service: Service,
    port: ServicePort,
    subset: str,
    policy: ClusterPolicy,
    identities: tuple[str, ...] = (),
) -> Resource:
    name = names.outbound(port.port, service.hostname, subset)
    cluster = Cluster(
        name=name,
        type=Cluster.EDS,
        connect_timeout=_seconds(duration(view.mesh.connect_timeout, "connectTimeout")),
        eds_cluster_config=Cluster.EdsClusterConfig(eds_config=ads(), service_name=name),
    )
    if service.headless and not view.key.proxyless:
        cluster.type = Cluster.ORIGINAL_DST
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
        cluster.ClearField("eds_cluster_config")
    else:
        _apply_policy(cluster, policy, view.key.proxyless)
    if view.key.mtls and cluster.type == Cluster.EDS:
        sni = names.sni(port.port, service.hostname, subset)
        tls.apply_outbound(cluster, policy.policy.tls_mode, identities, sni)
    if _uses_http2(port) and not view.key.proxyless:
        for key, value in _http2().items():
            cluster.typed_extension_protocol_options[key].CopyFrom(value)
    if policy.policy.pool and policy.policy.pool.max_requests_per_connection and not view.key.proxyless:
        options = http_protocol_options_pb2.HttpProtocolOptions()
        existing = cluster.typed_extension_protocol_options.get(HTTP_PROTOCOL_OPTIONS)
        if existing is not None:
            existing.Unpack(options)
        else:
            options.use_downstream_protocol_config.SetInParent()
        options.common_http_protocol_options.max_requests_per_connection.value = (
            policy.policy.pool.max_requests_per_connection
        )
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Pack(options)
    return Resource.of(TypeUrl.CLUSTER, name, cluster)


def outbound_clusters(view: View, only: Iterable[str] | None = None) -> dict[str, Resource]:
    """The view's outbound clusters (all of them, or the named ones that exist). A cluster whose inputs did
    not change since the view's last build is not built again."""
    wanted = set(only) if only is not None else None
    out: dict[str, Resource] = {}
    previous = view.memo.get(TypeUrl.CLUSTER, {})
    memo: dict[object, Resource] = {}
    timeout = view.mesh.connect_timeout
    services = view.services()
    if wanted is not None:
        hosts = {names.host_of_cluster(n) for n in wanted}
        services = [s for s in services if s.hostname in hosts]
    for service in services:
        if service.external_name:
            continue
        for port in service.ports:
            if port.protocol is Protocol.UDP:
                continue
            subsets = [""]
            base = cluster_policy(view, service.hostname, service.namespace, port.port, "")
            if base is None:
                continue
            if base.rule is not None:
                subsets += [s.name for s in base.rule.subsets]
            identities: tuple[str, ...] = ()
            if view.key.mtls:
                identities = view.sources.identities(service.hostname)
                view.sources.identities_used[service.hostname] = identities
            for subset in subsets:
                name = names.outbound(port.port, service.hostname, subset)
                if wanted is not None and name not in wanted:
                    continue
                policy = (
                    base
                    if not subset
                    else cluster_policy(view, service.hostname, service.namespace, port.port, subset)
                )
                if policy is None:
                    continue
                key = (service, port, subset, policy, timeout, identities)
                built = previous.get(key) or outbound(view, service, port, subset, policy, identities)
                memo[key] = out[name] = built
    if wanted is None:
        view.memo[TypeUrl.CLUSTER] = memo
    return out


def _static(name: str, address: str, port: int, connect_timeout: float) -> Cluster:
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=address, port_value=port)
            )
        )
    )
    return Cluster(
        name=name,
        type=Cluster.STATIC,
        connect_timeout=_seconds(connect_timeout),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )


def inbound_clusters(view: View, ports: list[InboundPort]) -> dict[str, Resource]:
    """A proxy's own: one cluster per port its pod serves, to the app on 127.0.0.1."""
    timeout = duration(view.mesh.connect_timeout, "connectTimeout")
    out: dict[str, Resource] = {}
    for inbound in ports:
        name = names.inbound(inbound.port.port, inbound.port.name, inbound.service.hostname)
        cluster = _static(name, "127.0.0.1", inbound.target, timeout)
        if _uses_http2(inbound.port):
            for key, value in _http2().items():
                cluster.typed_extension_protocol_options[key].CopyFrom(value)
        out[name] = Resource.of(TypeUrl.CLUSTER, name, cluster)
    return out


def fixed_clusters(view: View) -> dict[str, Resource]:
    timeout = _seconds(duration(view.mesh.connect_timeout, "connectTimeout"))
    passthrough = Cluster(
        name=names.PASSTHROUGH,
        type=Cluster.ORIGINAL_DST,
        lb_policy=Cluster.CLUSTER_PROVIDED,
        connect_timeout=timeout,
    )
    blackhole = Cluster(name=names.BLACKHOLE, type=Cluster.STATIC, connect_timeout=timeout)
    inbound_passthrough = Cluster(
        name=names.INBOUND_PASSTHROUGH,
        type=Cluster.ORIGINAL_DST,
        lb_policy=Cluster.CLUSTER_PROVIDED,
        connect_timeout=timeout,
        upstream_bind_config=address_pb2.BindConfig(
            source_address=address_pb2.SocketAddress(address=names.INBOUND_PASSTHROUGH_SOURCE, port_value=0)
        ),
    )
    return {
        c.name: Resource.of(TypeUrl.CLUSTER, c.name, c) for c in (passthrough, blackhole, inbound_passthrough)
    }


def view_clusters(view: View) -> Mapping[str, Resource]:
    """Everything outbound a sidecar of this view gets (shared by its proxies; cached in the view)."""
    cached = view.outputs.get(TypeUrl.CLUSTER)
    if cached is None:
        cached = {**fixed_clusters(view), **outbound_clusters(view)}
        view.outputs[TypeUrl.CLUSTER] = cached
    return cached
