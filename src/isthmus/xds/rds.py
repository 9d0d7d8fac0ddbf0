"""RDS: HTTP routes.

A sidecar's route configuration per port (`"5000"`) has a virtual host per HTTP service of the view on that
port, answering the names a client uses (`helloworld`, `helloworld.sample`, `helloworld.sample.svc`, the full
name, the VIP of the proxy's own cluster; each with and without the port), with the VirtualService's routes
when one applies (matches, weights, subsets, timeouts, retries, rewrites, redirects, aborts), else one route to
`outbound|PORT||HOST` with Istio's default retries. A last virtual host catches the rest: PassthroughCluster
with ALLOW_ANY, a 502 with REGISTRY_ONLY. Proxyless gRPC clients get one route configuration per `host:port`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from isthmus.config.networking import (
    DEFAULT_RETRY_ON,
    HttpMatch,
    HttpRoute,
    Retries,
    StringMatch,
    VirtualService,
    WeightedDestination,
)
from isthmus.model import Service, ServicePort
from isthmus.xds import names
from isthmus.xds.resources import Resource, TypeUrl
from isthmus.xds.view import View

DEFAULT_RETRIES = Retries(attempts=2)
GRPC_RETRY_ON = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}


def _seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(value * 1e9))
    return out


def domains(service: Service, port: int, view: View) -> list[str]:
    host = service.hostname
    short = [f"{service.name}.{service.namespace}", f"{service.name}.{service.namespace}.svc"]
    if service.namespace == view.key.namespace:
        short.insert(0, service.name)
    plain = [host, *short]
    vip = service.vip_for(view.key.cluster)
    if vip:
        plain.append(vip)
    out: list[str] = []
    for name in plain:
        out += [name, f"{name}:{port}"]
    return out


def _string_matcher(match: StringMatch) -> string_pb2.StringMatcher:
    if match.kind == "exact":
        return string_pb2.StringMatcher(exact=match.value)
    if match.kind == "prefix":
        return string_pb2.StringMatcher(prefix=match.value)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.value))


def _header(name: str, match: StringMatch) -> rc.HeaderMatcher:
    return rc.HeaderMatcher(name=name, string_match=_string_matcher(match))


def _route_match(match: HttpMatch | None) -> rc.RouteMatch:
    out = rc.RouteMatch()
    uri = match.uri if match is not None else None
    if uri is None:
        out.prefix = "/"
    elif uri.kind == "exact":
        out.path = uri.value
    elif uri.kind == "prefix":
        out.prefix = uri.value
    else:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.value))
    if match is not None:
        for name, value in match.headers:
            out.headers.append(_header(name, value))
        if match.method is not None:
            out.headers.append(_header(":method", match.method))
        if match.authority is not None:
            out.headers.append(_header(":authority", match.authority))
        for name, value in match.query_params:
            out.query_parameters.append(
                rc.QueryParameterMatcher(name=name, string_match=_string_matcher(value))
            )
    return out


def _retry_policy(retries: Retries, proxyless: bool) -> rc.RetryPolicy | None:
    if retries.attempts == 0:
        return None
    retry_on = retries.retry_on or DEFAULT_RETRY_ON
    if proxyless:
        retry_on = ",".join(c for c in retry_on.split(",") if c in GRPC_RETRY_ON)
        if not retry_on:
            return None
    policy = rc.RetryPolicy(
        retry_on=retry_on,
        num_retries=wrappers_pb2.UInt32Value(value=retries.attempts),
    )
    if not proxyless:
        predicate = rc.RetryPolicy.RetryHostPredicate(name="envoy.retry_host_predicates.previous_hosts")
        predicate.typed_config.Pack(previous_hosts_pb2.PreviousHostsPredicate())
        policy.retry_host_predicate.append(predicate)
        policy.host_selection_retry_max_attempts = 5
        policy.retriable_status_codes.append(503)
    if retries.per_try_timeout:
        policy.per_try_timeout.CopyFrom(_seconds(retries.per_try_timeout))
    return policy


def _cluster_for(destination_port: int | None, host: str, subset: str, listener_port: int, view: View) -> str:
    service = view.sources.aggregate.service(host)
    port = destination_port
    if port is None:
        port = service.ports[0].port if service is not None and len(service.ports) == 1 else listener_port
    return names.outbound(port, host, subset)


def _action(route: tuple[WeightedDestination, ...], port: int, view: View) -> rc.RouteAction:
    action = rc.RouteAction()
    clusters = [
        (_cluster_for(w.destination.port, w.destination.host, w.destination.subset, port, view), w.weight)
        for w in route
    ]
    if len(clusters) == 1:
        action.cluster = clusters[0][0]
    else:
        weighted = rc.WeightedCluster()
        for name, weight in clusters:
            if weight > 0:
                weighted.clusters.append(
                    rc.WeightedCluster.ClusterWeight(name=name, weight=wrappers_pb2.UInt32Value(value=weight))
                )
        action.weighted_clusters.CopyFrom(weighted)
    return action


def _applies(match: HttpMatch, port: int, view: View, vs: VirtualService, index: int) -> bool:
    if match.port is not None and match.port != port:
        return False
    if match.source_namespace and match.source_namespace != view.key.namespace:
        return False
    return not match.source_labels or (vs.namespace, vs.name, index) in view.key.source_matches


def _routes(http: HttpRoute, index: int, vs: VirtualService, port: int, view: View) -> list[rc.Route]:
    proxyless = view.key.proxyless
    if http.matches:
        matches: list[HttpMatch | None] = [m for m in http.matches if _applies(m, port, view, vs, index)]
        if not matches:
            return []
    else:
        matches = [None]
    out = []
    for match in matches:
        route = rc.Route(match=_route_match(match), name=http.name or f"{vs.namespace}/{vs.name}")
        if http.redirect_uri or http.redirect_authority:
            redirect = rc.RedirectAction()
            if http.redirect_uri:
                redirect.path_redirect = http.redirect_uri
            if http.redirect_authority:
                redirect.host_redirect = http.redirect_authority
            route.redirect.CopyFrom(redirect)
        else:
            action = _action(http.route, port, view)
            action.timeout.CopyFrom(_seconds(http.timeout or 0.0))
            if proxyless and http.timeout:
                action.max_stream_duration.max_stream_duration.CopyFrom(_seconds(http.timeout))
            policy = _retry_policy(http.retries if http.retries is not None else DEFAULT_RETRIES, proxyless)
            if policy is not None:
                action.retry_policy.CopyFrom(policy)
            if http.rewrite_uri and not proxyless:
                action.prefix_rewrite = http.rewrite_uri
            if http.rewrite_authority and not proxyless:
                action.host_rewrite_literal = http.rewrite_authority
            route.route.CopyFrom(action)
            if http.fault_abort_status is not None and not proxyless:
                _abort(route, http)
        out.append(route)
    return out


def _abort(route: rc.Route, http: HttpRoute) -> None:
    from envoy.extensions.filters.http.fault.v3 import fault_pb2

    fault = fault_pb2.HTTPFault()
    fault.abort.http_status = http.fault_abort_status or 503
    fault.abort.percentage.CopyFrom(
        percent_pb2.FractionalPercent(
            numerator=round(http.fault_abort_percent * 10000),
            denominator=percent_pb2.FractionalPercent.MILLION,
        )
    )
    route.typed_per_filter_config["envoy.filters.http.fault"].Pack(fault)


def default_route(host: str, port: int, view: View, subset: str = "") -> rc.Route:
    action = rc.RouteAction(cluster=names.outbound(port, host, subset), timeout=_seconds(0.0))
    policy = _retry_policy(DEFAULT_RETRIES, view.key.proxyless)
    if policy is not None:
        action.retry_policy.CopyFrom(policy)
    return rc.Route(match=rc.RouteMatch(prefix="/"), route=action, name="default")


def virtual_host(service: Service, port: ServicePort, view: View, domain_names: list[str]) -> rc.VirtualHost:
    vhost = rc.VirtualHost(name=f"{service.hostname}:{port.port}", domains=domain_names)
    vs = view.virtual_service(service.hostname)
    routes: list[rc.Route] = []
    if vs is not None:
        for index, http in enumerate(vs.http):
            routes += _routes(http, index, vs, port.port, view)
    if not routes:
        routes.append(default_route(service.hostname, port.port, view))
    vhost.routes.extend(routes)
    return vhost


def _catch_all(view: View) -> rc.VirtualHost:
    if view.outbound_policy() == "REGISTRY_ONLY":
        return rc.VirtualHost(
            name="block_all",
            domains=["*"],
            routes=[
                rc.Route(
                    match=rc.RouteMatch(prefix="/"),
                    direct_response=rc.DirectResponseAction(status=502),
                    name="block_all",
                )
            ],
        )
    return rc.VirtualHost(
        name="allow_any",
        domains=["*"],
        routes=[
            rc.Route(
                match=rc.RouteMatch(prefix="/"),
                route=rc.RouteAction(cluster=names.PASSTHROUGH, timeout=_seconds(0.0)),
                name="allow_any",
            )
        ],
    )


def http_ports(view: View) -> dict[int, list[tuple[Service, ServicePort]]]:
    """The view's HTTP services by port number."""
    out: dict[int, list[tuple[Service, ServicePort]]] = {}
    for service in view.services():
        if service.external_name:
            continue
        for port in service.ports:
            if port.protocol.is_http:
                out.setdefault(port.port, []).append((service, port))
    return out


def sidecar_route(view: View, port: int, services: list[tuple[Service, ServicePort]]) -> Resource:
    config = route_pb2.RouteConfiguration(
        name=names.route(port), validate_clusters=wrappers_pb2.BoolValue(value=False)
    )
    used: set[str] = set()
    for service, service_port in services:
        domain_names = [d for d in domains(service, port, view) if d not in used]
        used.update(domain_names)
        config.virtual_hosts.append(virtual_host(service, service_port, view, domain_names))
    config.virtual_hosts.append(_catch_all(view))
    return Resource.of(TypeUrl.ROUTE, config.name, config)


def view_routes(view: View) -> Mapping[str, Resource]:
    """A sidecar view's route configurations, one per HTTP port (cached in the view)."""
    cached = view.outputs.get(TypeUrl.ROUTE)
    if cached is None:
        previous = view.memo.get(TypeUrl.ROUTE, {})
        memo: dict[object, Resource] = {}
        built: dict[str, Resource] = {}
        policy = view.outbound_policy()
        for port, services in sorted(http_ports(view).items()):
            key = (
                port,
                tuple(services),
                tuple(view.virtual_service(s.hostname) for s, _ in services),
                policy,
            )
            memo[key] = built[names.route(port)] = previous.get(key) or sidecar_route(view, port, services)
        view.memo[TypeUrl.ROUTE] = memo
        view.outputs[TypeUrl.ROUTE] = cached = built
    return cached


def proxyless_routes(view: View, wanted: Iterable[str]) -> dict[str, Resource]:
    """Route configurations named `host:port`, for gRPC clients (domains: the name they dial)."""
    out: dict[str, Resource] = {}
    for name in wanted:
        parsed = names.split_host_port(name)
        if parsed is None:
            continue
        service = resolve_host(view, parsed[0])
        port = service.port(parsed[1]) if service is not None else None
        if service is None or port is None:
            continue
        config = route_pb2.RouteConfiguration(name=name)
        config.virtual_hosts.append(virtual_host(service, port, view, [name, parsed[0]]))
        out[name] = Resource.of(TypeUrl.ROUTE, name, config)
    return out


def resolve_host(view: View, host: str) -> Service | None:
    """A service by the name a gRPC client dials: the full name, `name.namespace` or `name.namespace.svc`, or
    a short name in the client's namespace."""
    aggregate = view.sources.aggregate
    parts = host.split(".")
    candidates = [host]
    if len(parts) == 1:
        candidates.append(f"{host}.{view.key.namespace}.svc.cluster.local")
    elif len(parts) == 2:
        candidates.append(f"{host}.svc.cluster.local")
    elif len(parts) == 3 and parts[2] == "svc":
        candidates.append(f"{host}.cluster.local")
    for candidate in candidates:
        service = aggregate.service(candidate)
        if service is not None and view.sees(service.hostname):
            return service
    return None
