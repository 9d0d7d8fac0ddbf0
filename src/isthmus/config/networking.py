"""Istio's traffic configuration (networking.istio.io): VirtualService, DestinationRule and Sidecar, parsed
from their `spec` into immutable values the generators read, with Istio's semantics for host names and
defaults. `ConfigError` names the object's field (`spec.http[0].route[1].weight`) and what it must be.

Short host names resolve in the object's namespace (`reviews` in `bookinfo` is
`reviews.bookinfo.svc.cluster.local`); `*` and `*.suffix` are wildcards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from isthmus.model import FrozenMap

T = TypeVar("T")
JsonObject = dict[str, Any]
DOMAIN_SUFFIX = "svc.cluster.local"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_HOST = re.compile(r"^(\*|(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$")


class ConfigError(ValueError):
    """A field of a config object that cannot be used; the message names the field."""


def duration(value: Any, path: str) -> float:
    """A protobuf duration (`10s`, `1.5s`, `100ms`, `1m30s`) in seconds."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: must be a duration such as 1s or 100ms, not {value!r}")
    parts = _DURATION_PART.findall(value)
    if "".join(n + u for n, u in parts) != value:
        raise ConfigError(f"{path}: {value!r} is not a duration such as 1s, 100ms or 1m30s")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def _get(data: Mapping[str, Any], key: str, kind: type[T], path: str, what: str) -> T | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}.{key}: must be {what}, not {value!r}")
    return value


def _mapping(data: Mapping[str, Any], key: str, path: str) -> JsonObject:
    return _get(data, key, dict, path, "a mapping") or {}


def _items(data: Mapping[str, Any], key: str, path: str) -> list[Any]:
    return _get(data, key, list, path, "a list") or []


def _each(
    data: Mapping[str, Any], key: str, path: str, parse: Callable[[JsonObject, str], T]
) -> tuple[T, ...]:
    out = []
    for i, item in enumerate(_items(data, key, path)):
        where = f"{path}.{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a mapping, not {item!r}")
        out.append(parse(item, where))
    return tuple(out)


def _labels(data: Mapping[str, Any], key: str, path: str) -> FrozenMap[str, str]:
    raw = _mapping(data, key, path)
    for k, v in raw.items():
        if not isinstance(v, str):
            raise ConfigError(f"{path}.{key}.{k}: must be a string, not {v!r}")
    return FrozenMap(raw)


def _port_number(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"{path}: must be a port number 1..65535, not {value!r}")
    return value


def qualify(host: str, namespace: str) -> str:
    """Istio's short-name resolution: `reviews` in `ns` -> `reviews.ns.svc.cluster.local`."""
    if host == "*" or host.startswith("*.") or "." in host:
        return host
    return f"{host}.{namespace}.{DOMAIN_SUFFIX}"


def host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _host(value: Any, namespace: str, path: str) -> str:
    if not isinstance(value, str) or not _HOST.match(value.lower()):
        raise ConfigError(
            f"{path}: {value!r} is not a host name (e.g. reviews, reviews.bookinfo.svc.cluster.local)"
        )
    return qualify(value.lower(), namespace)


def _export_to(spec: Mapping[str, Any], path: str) -> tuple[str, ...]:
    values = _items(spec, "exportTo", path)
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}.exportTo[{i}]: must be '*', '.' or a namespace, not {value!r}")
    return tuple(values) or ("*",)


def visible(export_to: tuple[str, ...], own_namespace: str, namespace: str) -> bool:
    return any(e == "*" or e == namespace or (e == "." and namespace == own_namespace) for e in export_to)


# -- VirtualService -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: str  # exact, prefix, regex
    value: str

    def matches(self, text: str) -> bool:
        if self.kind == "exact":
            return text == self.value
        if self.kind == "prefix":
            return text.startswith(self.value)
        return re.fullmatch(self.value, text) is not None


def _string_match(data: Any, path: str) -> StringMatch:
    if not isinstance(data, dict) or len(data) != 1:
        raise ConfigError(f"{path}: must have exactly one of exact, prefix, regex")
    ((kind, value),) = data.items()
    if kind not in ("exact", "prefix", "regex"):
        raise ConfigError(f"{path}: {kind!r} is not exact, prefix or regex")
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{kind}: must be a string, not {value!r}")
    if kind == "regex":
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{path}.regex: {value!r} is not a regular expression: {exc}") from None
    return StringMatch(kind, value)


@dataclass(frozen=True, slots=True)
class HttpMatch:
    uri: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    port: int | None = None
    source_labels: FrozenMap[str, str] = field(default_factory=FrozenMap)
    source_namespace: str = ""


def _http_match(data: JsonObject, path: str) -> HttpMatch:
    known = {"name", "uri", "method", "authority", "headers", "queryParams", "port", "sourceLabels"}
    known |= {"sourceNamespace", "gateways", "scheme", "ignoreUriCase", "withoutHeaders"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}.{key}: not a field of HTTPMatchRequest")

    def one(key: str) -> StringMatch | None:
        return _string_match(data[key], f"{path}.{key}") if key in data else None

    def many(key: str) -> tuple[tuple[str, StringMatch], ...]:
        raw = _mapping(data, key, path)
        return tuple(
            (k.lower() if key == "headers" else k, _string_match(v, f"{path}.{key}.{k}"))
            for k, v in raw.items()
        )

    port = data.get("port")
    return HttpMatch(
        uri=one("uri"),
        method=one("method"),
        authority=one("authority"),
        headers=many("headers"),
        query_params=many("queryParams"),
        port=_port_number(port, f"{path}.port") if port is not None else None,
        source_labels=_labels(data, "sourceLabels", path),
        source_namespace=_get(data, "sourceNamespace", str, path, "a namespace") or "",
    )


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True, slots=True)
class WeightedDestination:
    destination: Destination
    weight: int


def _destination(data: JsonObject, namespace: str, path: str) -> Destination:
    if "host" not in data:
        raise ConfigError(f"{path}.host: required (the service to send to)")
    port_spec = _mapping(data, "port", path)
    number = port_spec.get("number")
    return Destination(
        host=_host(data["host"], namespace, f"{path}.host"),
        subset=_get(data, "subset", str, path, "a subset name") or "",
        port=_port_number(number, f"{path}.port.number") if number is not None else None,
    )


def _routes(data: JsonObject, namespace: str, path: str) -> tuple[WeightedDestination, ...]:
    items = _items(data, "route", path)
    out = []
    for i, item in enumerate(items):
        where = f"{path}.route[{i}]"
        if not isinstance(item, dict) or "destination" not in item:
            raise ConfigError(f"{where}.destination: required")
        weight = item.get("weight", 100 if len(items) == 1 else None)
        if weight is None:
            raise ConfigError(f"{where}.weight: required when a route has several destinations")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise ConfigError(f"{where}.weight: must be an integer 0..100, not {weight!r}")
        out.append(
            WeightedDestination(_destination(item["destination"], namespace, f"{where}.destination"), weight)
        )
    if len(out) > 1 and sum(w.weight for w in out) != 100:
        raise ConfigError(f"{path}.route: the weights must add up to 100, not {sum(w.weight for w in out)}")
    return tuple(out)


DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


@dataclass(frozen=True, slots=True)
class Retries:
    attempts: int
    per_try_timeout: float | None = None
    retry_on: str = ""  # empty: Istio's default, DEFAULT_RETRY_ON


@dataclass(frozen=True, slots=True)
class HttpRoute:
    name: str = ""
    matches: tuple[HttpMatch, ...] = ()
    route: tuple[WeightedDestination, ...] = ()
    timeout: float | None = None
    retries: Retries | None = None
    rewrite_uri: str = ""
    rewrite_authority: str = ""
    redirect_uri: str = ""
    redirect_authority: str = ""
    fault_abort_status: int | None = None
    fault_abort_percent: float = 0.0


def _http_route(data: JsonObject, namespace: str, path: str) -> HttpRoute:
    route = _routes(data, namespace, path)
    redirect = _mapping(data, "redirect", path)
    if not route and not redirect:
        raise ConfigError(f"{path}: needs a route or a redirect")
    timeout = duration(data["timeout"], f"{path}.timeout") if "timeout" in data else None
    retries = None
    if "retries" in data:
        spec = _mapping(data, "retries", path)
        attempts = _get(spec, "attempts", int, f"{path}.retries", "a number of attempts")
        if attempts is None or attempts < 0:
            raise ConfigError(f"{path}.retries.attempts: required, a number >= 0")
        per_try = spec.get("perTryTimeout")
        retry_on = _get(spec, "retryOn", str, f"{path}.retries", "a list such as 5xx,connect-failure")
        retries = Retries(
            attempts,
            duration(per_try, f"{path}.retries.perTryTimeout") if per_try is not None else None,
            retry_on or "",
        )
    rewrite = _mapping(data, "rewrite", path)
    abort = _mapping(_mapping(data, "fault", path), "abort", f"{path}.fault")
    status = abort.get("httpStatus")
    if abort and (not isinstance(status, int) or not 200 <= status <= 599):
        raise ConfigError(f"{path}.fault.abort.httpStatus: must be an HTTP status 200..599, not {status!r}")
    percent = _mapping(abort, "percentage", f"{path}.fault.abort").get("value", 100.0 if abort else 0.0)
    return HttpRoute(
        name=_get(data, "name", str, path, "a name") or "",
        matches=_each(data, "match", path, _http_match),
        route=route,
        timeout=timeout,
        retries=retries,
        rewrite_uri=_get(rewrite, "uri", str, f"{path}.rewrite", "a path") or "",
        rewrite_authority=_get(rewrite, "authority", str, f"{path}.rewrite", "a host") or "",
        redirect_uri=_get(redirect, "uri", str, f"{path}.redirect", "a path") or "",
        redirect_authority=_get(redirect, "authority", str, f"{path}.redirect", "a host") or "",
        fault_abort_status=status if abort else None,
        fault_abort_percent=float(percent),
    )


@dataclass(frozen=True, slots=True)
class TcpRoute:
    ports: tuple[int, ...] = ()
    route: tuple[WeightedDestination, ...] = ()


def _tcp_route(data: JsonObject, namespace: str, path: str) -> TcpRoute:
    ports = []
    for i, match in enumerate(_items(data, "match", path)):
        if isinstance(match, dict) and "port" in match:
            ports.append(_port_number(match["port"], f"{path}.match[{i}].port"))
    route = _routes(data, namespace, path)
    if not route:
        raise ConfigError(f"{path}.route: required")
    return TcpRoute(tuple(ports), route)


@dataclass(frozen=True, slots=True)
class VirtualService:
    namespace: str
    name: str
    hosts: tuple[str, ...]
    gateways: tuple[str, ...] = ()
    export_to: tuple[str, ...] = ("*",)
    http: tuple[HttpRoute, ...] = ()
    tcp: tuple[TcpRoute, ...] = ()
    created: str = ""

    @property
    def applies_to_sidecars(self) -> bool:
        return not self.gateways or "mesh" in self.gateways


def virtual_service(namespace: str, name: str, spec: JsonObject, created: str = "") -> VirtualService:
    path = "spec"
    hosts = _items(spec, "hosts", path)
    if not hosts:
        raise ConfigError("spec.hosts: at least one host is required")
    gateways = _items(spec, "gateways", path)
    for i, gateway in enumerate(gateways):
        if not isinstance(gateway, str):
            raise ConfigError(f"spec.gateways[{i}]: must be a gateway name or mesh, not {gateway!r}")
    if "tls" in spec and _items(spec, "tls", path):
        pass  # TLS routes apply to gateways and TLS-origination; sidecars here route HTTP and TCP
    return VirtualService(
        namespace=namespace,
        name=name,
        hosts=tuple(_host(h, namespace, f"spec.hosts[{i}]") for i, h in enumerate(hosts)),
        gateways=tuple(gateways),
        export_to=_export_to(spec, path),
        http=_each(spec, "http", path, lambda d, p: _http_route(d, namespace, p)),
        tcp=_each(spec, "tcp", path, lambda d, p: _tcp_route(d, namespace, p)),
        created=created,
    )


# -- DestinationRule ------------------------------------------------------------------------------------------

LB_SIMPLE = ("ROUND_ROBIN", "LEAST_CONN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH", "UNSPECIFIED")


@dataclass(frozen=True, slots=True)
class LocalityLbSetting:
    enabled: bool = True
    distribute: tuple[tuple[str, FrozenMap[str, int]], ...] = ()
    failover: tuple[tuple[str, str], ...] = ()


def locality_lb_setting(data: JsonObject, path: str) -> LocalityLbSetting:
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{path}.enabled: must be true or false, not {enabled!r}")
    distribute = []
    for i, item in enumerate(_items(data, "distribute", path)):
        where = f"{path}.distribute[{i}]"
        source = _get(item, "from", str, where, "a locality such as us-east1/*")
        weights = _mapping(item, "to", where)
        for k, v in weights.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{where}.to.{k}: must be a weight >= 0, not {v!r}")
        if sum(weights.values()) != 100:
            raise ConfigError(f"{where}.to: the weights must add up to 100, not {sum(weights.values())}")
        distribute.append((source or "", FrozenMap(weights)))
    failover = []
    for i, item in enumerate(_items(data, "failover", path)):
        where = f"{path}.failover[{i}]"
        source = _get(item, "from", str, where, "a region")
        target = _get(item, "to", str, where, "a region")
        if not source or not target:
            raise ConfigError(f"{where}: needs from and to (regions)")
        failover.append((source, target))
    if distribute and failover:
        raise ConfigError(f"{path}: distribute and failover cannot both be set")
    return LocalityLbSetting(enabled, tuple(distribute), tuple(failover))


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    consecutive_5xx: int | None = None
    consecutive_gateway: int | None = None
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10
    min_health_percent: int = 0


def _outlier(data: JsonObject, path: str) -> OutlierDetection:
    def count(key: str) -> int | None:
        value = _get(data, key, int, path, "a count >= 0")
        if value is not None and value < 0:
            raise ConfigError(f"{path}.{key}: must be >= 0, not {value}")
        return value

    def percent(key: str, default: int) -> int:
        value = _get(data, key, int, path, "a percentage 0..100")
        if value is not None and not 0 <= value <= 100:
            raise ConfigError(f"{path}.{key}: must be 0..100, not {value}")
        return default if value is None else value

    five = count("consecutive5xxErrors")
    legacy = count("consecutiveErrors")  # 1.4's name: 502, 503 and 504 (gateway errors)
    return OutlierDetection(
        consecutive_5xx=five,
        consecutive_gateway=count("consecutiveGatewayErrors") if legacy is None else legacy,
        interval=duration(data["interval"], f"{path}.interval") if "interval" in data else 10.0,
        base_ejection_time=(
            duration(data["baseEjectionTime"], f"{path}.baseEjectionTime")
            if "baseEjectionTime" in data
            else 30.0
        ),
        max_ejection_percent=percent("maxEjectionPercent", 10),
        min_health_percent=percent("minHealthPercent", 0),
    )


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    max_connections: int | None = None
    connect_timeout: float | None = None
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout: float | None = None


def _pool(data: JsonObject, path: str) -> ConnectionPool:
    tcp = _mapping(data, "tcp", path)
    http = _mapping(data, "http", path)

    def positive(source: JsonObject, key: str, where: str) -> int | None:
        value = _get(source, key, int, where, "a number > 0")
        if value is not None and value <= 0:
            raise ConfigError(f"{where}.{key}: must be > 0, not {value}")
        return value

    return ConnectionPool(
        max_connections=positive(tcp, "maxConnections", f"{path}.tcp"),
        connect_timeout=duration(tcp["connectTimeout"], f"{path}.tcp.connectTimeout")
        if "connectTimeout" in tcp
        else None,
        http1_max_pending_requests=positive(http, "http1MaxPendingRequests", f"{path}.http"),
        http2_max_requests=positive(http, "http2MaxRequests", f"{path}.http"),
        max_requests_per_connection=positive(http, "maxRequestsPerConnection", f"{path}.http"),
        max_retries=positive(http, "maxRetries", f"{path}.http"),
        idle_timeout=duration(http["idleTimeout"], f"{path}.http.idleTimeout")
        if "idleTimeout" in http
        else None,
    )


TLS_MODES = ("DISABLE", "ISTIO_MUTUAL")


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    lb_simple: str = ""
    consistent_hash_header: str = ""
    locality: LocalityLbSetting | None = None
    outlier: OutlierDetection | None = None
    pool: ConnectionPool | None = None
    tls_mode: str = ""  # "", DISABLE or ISTIO_MUTUAL ("": auto mTLS, by the endpoint's sidecar)
    port_level: tuple[tuple[int, TrafficPolicy], ...] = ()

    def for_port(self, port: int) -> TrafficPolicy:
        """Port-level settings replace the top-level ones they set (Istio's merge)."""
        for number, policy in self.port_level:
            if number == port:
                return TrafficPolicy(
                    lb_simple=policy.lb_simple or self.lb_simple,
                    consistent_hash_header=policy.consistent_hash_header or self.consistent_hash_header,
                    locality=policy.locality or self.locality,
                    outlier=policy.outlier or self.outlier,
                    pool=policy.pool or self.pool,
                    tls_mode=policy.tls_mode or self.tls_mode,
                )
        return self


def _traffic_policy(data: JsonObject, path: str, port_level: bool = True) -> TrafficPolicy:
    lb = _mapping(data, "loadBalancer", path)
    simple = _get(lb, "simple", str, f"{path}.loadBalancer", "|".join(LB_SIMPLE)) or ""
    if simple and simple not in LB_SIMPLE:
        raise ConfigError(
            f"{path}.loadBalancer.simple: must be one of {', '.join(LB_SIMPLE)}, not {simple!r}"
        )
    consistent = _mapping(lb, "consistentHash", f"{path}.loadBalancer")
    header = (
        _get(consistent, "httpHeaderName", str, f"{path}.loadBalancer.consistentHash", "a header name") or ""
    )
    locality = (
        locality_lb_setting(
            _mapping(lb, "localityLbSetting", f"{path}.loadBalancer"),
            f"{path}.loadBalancer.localityLbSetting",
        )
        if "localityLbSetting" in lb
        else None
    )
    tls = _mapping(data, "tls", path)
    tls_mode = _get(tls, "mode", str, f"{path}.tls", "DISABLE|ISTIO_MUTUAL") or ""
    if tls_mode in ("SIMPLE", "MUTUAL"):
        raise ConfigError(
            f"{path}.tls.mode: {tls_mode} (TLS origination with your own certificates) is not supported yet; "
            "use ISTIO_MUTUAL (the mesh's certificates) or DISABLE"
        )
    if tls_mode and tls_mode not in TLS_MODES:
        raise ConfigError(f"{path}.tls.mode: must be one of {', '.join(TLS_MODES)}, not {tls_mode!r}")
    levels: list[tuple[int, TrafficPolicy]] = []
    if port_level:
        for i, item in enumerate(_items(data, "portLevelSettings", path)):
            where = f"{path}.portLevelSettings[{i}]"
            number = _mapping(item, "port", where).get("number")
            levels.append((_port_number(number, f"{where}.port.number"), _traffic_policy(item, where, False)))
    return TrafficPolicy(
        lb_simple=simple,
        consistent_hash_header=header,
        locality=locality,
        outlier=_outlier(_mapping(data, "outlierDetection", path), f"{path}.outlierDetection")
        if "outlierDetection" in data
        else None,
        pool=_pool(_mapping(data, "connectionPool", path), f"{path}.connectionPool")
        if "connectionPool" in data
        else None,
        tls_mode=tls_mode,
        port_level=tuple(levels),
    )


@dataclass(frozen=True, slots=True)
class Subset:
    name: str
    labels: FrozenMap[str, str]
    policy: TrafficPolicy | None = None


_SUBSET_NAME = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")


def _subset(data: JsonObject, path: str) -> Subset:
    name = _get(data, "name", str, path, "a name")
    if not name or not _SUBSET_NAME.match(name):
        raise ConfigError(f"{path}.name: required, letters, digits, -, _ and . (got {name!r})")
    return Subset(
        name,
        _labels(data, "labels", path),
        _traffic_policy(_mapping(data, "trafficPolicy", path), f"{path}.trafficPolicy")
        if "trafficPolicy" in data
        else None,
    )


@dataclass(frozen=True, slots=True)
class DestinationRule:
    namespace: str
    name: str
    host: str
    export_to: tuple[str, ...] = ("*",)
    policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    created: str = ""

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


def destination_rule(namespace: str, name: str, spec: JsonObject, created: str = "") -> DestinationRule:
    if "host" not in spec:
        raise ConfigError("spec.host: required (the service this rule applies to)")
    subsets = _each(spec, "subsets", "spec", _subset)
    names = [s.name for s in subsets]
    for i, subset_name in enumerate(names):
        if subset_name in names[:i]:
            raise ConfigError(
                f"spec.subsets[{i}].name: {subset_name!r} is already the name of another subset"
            )
    return DestinationRule(
        namespace=namespace,
        name=name,
        host=_host(spec["host"], namespace, "spec.host"),
        export_to=_export_to(spec, "spec"),
        policy=_traffic_policy(_mapping(spec, "trafficPolicy", "spec"), "spec.trafficPolicy")
        if "trafficPolicy" in spec
        else None,
        subsets=subsets,
        created=created,
    )


# -- Sidecar --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EgressHost:
    namespace: str  # "*", "." (resolved to the Sidecar's namespace), "~" (none) or a namespace
    host: str  # "*", "*.suffix" or a host name

    def admits(self, service_namespace: str, hostname: str) -> bool:
        if self.namespace == "~":
            return False
        if self.namespace not in ("*", service_namespace):
            return False
        if self.host == "*":
            return True
        return host_matches(self.host, hostname) or host_matches(
            qualify(self.host, service_namespace), hostname
        )


@dataclass(frozen=True, slots=True)
class Sidecar:
    namespace: str
    name: str
    workload_selector: FrozenMap[str, str] | None
    egress: tuple[EgressHost, ...]
    outbound_traffic_policy: str = ""
    created: str = ""

    def admits(self, service_namespace: str, hostname: str) -> bool:
        return any(e.admits(service_namespace, hostname) for e in self.egress)

    def selects(self, labels: Mapping[str, str]) -> bool:
        if self.workload_selector is None:
            return True
        return all(labels.get(k) == v for k, v in self.workload_selector.items())


def sidecar(namespace: str, name: str, spec: JsonObject, created: str = "") -> Sidecar:
    egress_hosts: list[EgressHost] = []
    egress = _items(spec, "egress", "spec")
    for i, item in enumerate(egress):
        where = f"spec.egress[{i}]"
        hosts = _items(item, "hosts", where) if isinstance(item, dict) else []
        if not hosts:
            raise ConfigError(
                f"{where}.hosts: at least one namespace/host is required, e.g. ./* or istio-system/*"
            )
        for j, entry in enumerate(hosts):
            if not isinstance(entry, str) or entry.count("/") != 1:
                raise ConfigError(
                    f"{where}.hosts[{j}]: {entry!r} is not NAMESPACE/HOST (e.g. ./*, istio-system/*)"
                )
            ns, host = entry.split("/")
            if not ns or not host:
                raise ConfigError(
                    f"{where}.hosts[{j}]: {entry!r} is not NAMESPACE/HOST (e.g. ./*, istio-system/*)"
                )
            egress_hosts.append(EgressHost(namespace if ns == "." else ns, host.lower()))
    selector = spec.get("workloadSelector")
    labels = _labels(selector, "labels", "spec.workloadSelector") if isinstance(selector, dict) else None
    mode = ""
    if "outboundTrafficPolicy" in spec:
        mode = str(_mapping(spec, "outboundTrafficPolicy", "spec").get("mode", ""))
        if mode not in ("", "ALLOW_ANY", "REGISTRY_ONLY"):
            raise ConfigError(
                f"spec.outboundTrafficPolicy.mode: must be ALLOW_ANY or REGISTRY_ONLY, not {mode!r}"
            )
    if not egress_hosts:
        egress_hosts = [EgressHost("*", "*")]
    return Sidecar(namespace, name, labels, tuple(egress_hosts), mode, created)
