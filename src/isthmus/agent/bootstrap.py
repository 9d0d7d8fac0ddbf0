"""Envoy's bootstrap, from what the injected sidecar container has: its arguments (`proxy sidecar
--discoveryAddress ... --serviceCluster ...`) and environment (POD_NAME, POD_NAMESPACE, INSTANCE_IP,
ISTIO_META_*, ISTIO_METAJSON_*), as Istio's pilot-agent writes it.

- node id `sidecar~IP~POD.NAMESPACE~DOMAIN`, node cluster the service cluster, metadata from ISTIO_META_*;
- the `xds-grpc` cluster to the discovery address, resolved by DNS (STRICT_DNS, re-resolved) so a changed
  control-plane address is followed; ADS over it (delta by default);
- admin on 127.0.0.1:15000, Prometheus stats on 0.0.0.0:15090 at /stats/prometheus.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)


class BootstrapError(ValueError):
    """The agent cannot describe its proxy; the message names the argument or variable."""


@dataclass(frozen=True)
class AgentOptions:
    discovery_address: str = "istio-pilot.istio-system:15010"
    service_cluster: str = "istio-proxy"
    domain: str = ""
    config_path: str = "/etc/istio/proxy"
    binary_path: str = ""
    proxy_admin_port: int = 15000
    status_port: int = 15020
    stats_port: int = 15090
    concurrency: int = 1
    drain_duration: float = 45.0
    parent_shutdown_duration: float = 60.0
    connect_timeout: float = 10.0
    dns_refresh_rate: float = 300.0
    control_plane_auth_policy: str = "NONE"
    log_level: str = "warning"
    application_ports: tuple[int, ...] = ()
    delta: bool = True
    ca_address: str = ""  # the cluster's CA; empty: no certificates (plaintext only)
    trust_domain: str = "cluster.local"
    root_cert_path: str = "/var/run/secrets/istio/root-cert.pem"
    token_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProxyIdentity:
    pod_name: str
    namespace: str
    ip: str
    service_account: str
    metadata: JsonObject

    def node_id(self, domain: str) -> str:
        return f"sidecar~{self.ip}~{self.pod_name}.{self.namespace}~{domain or self.namespace + '.svc.cluster.local'}"


def identity(env: Mapping[str, str]) -> ProxyIdentity:
    """Who this proxy is, from the environment the injection template gives the sidecar."""
    missing = [name for name in ("POD_NAME", "POD_NAMESPACE", "INSTANCE_IP") if not env.get(name)]
    if missing:
        raise BootstrapError(
            f"{', '.join(missing)} not set: the sidecar needs them from the downward API "
            "(metadata.name, metadata.namespace, status.podIP)"
        )
    ip = env["INSTANCE_IP"]
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise BootstrapError(f"INSTANCE_IP={ip!r} is not an IP address") from None
    metadata: JsonObject = {}
    for name, value in env.items():
        if name.startswith("ISTIO_METAJSON_"):
            key = name.removeprefix("ISTIO_METAJSON_")
            try:
                metadata[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise BootstrapError(f"{name} is not JSON: {exc}") from None
        elif name.startswith("ISTIO_META_"):
            metadata[name.removeprefix("ISTIO_META_")] = value
    metadata.setdefault("NAMESPACE", env["POD_NAMESPACE"])
    metadata.setdefault("INSTANCE_IPS", ip)
    metadata.setdefault("INTERCEPTION_MODE", "REDIRECT")
    if env.get("SERVICE_ACCOUNT"):
        metadata.setdefault("SERVICE_ACCOUNT", env["SERVICE_ACCOUNT"])
    return ProxyIdentity(env["POD_NAME"], env["POD_NAMESPACE"], ip, env.get("SERVICE_ACCOUNT", ""), metadata)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BootstrapError(
            f"--discoveryAddress {address!r} is not HOST:PORT (e.g. istio-pilot.istio-system:15010)"
        )
    return host.strip("[]"), int(port)


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


SDS_SOCKET = "SDS"  # in the config path: /etc/istio/proxy/SDS, as Istio 1.4


def sds_socket(options: AgentOptions) -> str:
    return f"{options.config_path.rstrip('/')}/{SDS_SOCKET}"


def sds_cluster(options: AgentOptions) -> JsonObject:
    """`sds-grpc`: the agent's SDS server on a Unix socket, over HTTP/2."""
    return {
        "name": "sds-grpc",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": "sds-grpc",
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": sds_socket(options)}}}}]}
            ],
        },
    }


def _sds(name: str) -> JsonObject:
    return {
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
                "set_node_on_first_message_only": True,
            },
            "resource_api_version": "V3",
        },
    }


def pilot_identity(options: AgentOptions, host: str) -> str:
    """The SAN the control plane must present: its service account in the namespace of the discovery host
    (`istio-pilot.<ns>`), as Istio derives it."""
    labels = host.split(".")
    namespace = labels[1] if len(labels) > 1 and not host.replace(".", "").isdigit() else "istio-system"
    return f"spiffe://{options.trust_domain}/ns/{namespace}/sa/istio-pilot-service-account"


def control_plane_tls(options: AgentOptions, host: str) -> JsonObject:
    """xDS over mTLS: the workload's certificate from SDS, the control plane's identity checked."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [_sds("default")],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            {"san_type": "URI", "matcher": {"exact": pilot_identity(options, host)}}
                        ]
                    },
                    "validation_context_sds_secret_config": _sds("ROOTCA"),
                },
            },
        },
    }


def bootstrap(options: AgentOptions, proxy: ProxyIdentity, version: str) -> JsonObject:
    host, port = _host_port(options.discovery_address)
    try:
        ipaddress.ip_address(host)
        discovery_type = "STATIC"
    except ValueError:
        discovery_type = "STRICT_DNS"
    metadata = {**proxy.metadata, **options.extra_metadata, "ISTIO_VERSION": version}
    clusters: list[JsonObject] = []
    if options.ca_address:
        metadata["SDS"] = "true"
        clusters.append(sds_cluster(options))
    if options.control_plane_auth_policy not in ("NONE", "MUTUAL_TLS"):
        raise BootstrapError(
            f"--controlPlaneAuthPolicy {options.control_plane_auth_policy!r}: use NONE (port 15010) or "
            "MUTUAL_TLS (port 15011)"
        )
    if options.control_plane_auth_policy == "MUTUAL_TLS" and not options.ca_address:
        raise BootstrapError(
            "--controlPlaneAuthPolicy MUTUAL_TLS needs the workload's certificate: pass --caAddress (or CA_ADDR)"
        )
    xds_cluster: JsonObject = {
        "name": "xds-grpc",
        "type": discovery_type,
        "connect_timeout": _duration(options.connect_timeout),
        "dns_refresh_rate": _duration(options.dns_refresh_rate),
        "respect_dns_ttl": True,
        "dns_lookup_family": "V4_ONLY",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "10s"},
                    }
                },
            }
        },
        "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}},
        "load_assignment": {
            "cluster_name": "xds-grpc",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                    ]
                }
            ],
        },
    }
    if options.control_plane_auth_policy == "MUTUAL_TLS":
        xds_cluster["transport_socket"] = control_plane_tls(options, host)
    admin_cluster: JsonObject = {
        "name": "prometheus_stats",
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": "prometheus_stats",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": "127.0.0.1",
                                        "port_value": options.proxy_admin_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    stats_listener: JsonObject = {
        "name": "prometheus_stats",
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": options.stats_port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": HCM_TYPE,
                            "stat_prefix": "stats",
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "backend",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"prefix": "/stats/prometheus"},
                                                "route": {"cluster": "prometheus_stats"},
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }
    return {
        "node": {
            "id": proxy.node_id(options.domain),
            "cluster": options.service_cluster,
            "metadata": metadata,
        },
        "admin": {
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": "/dev/null",
                    },
                }
            ],
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": options.proxy_admin_port}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if options.delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
            "lds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
        },
        "static_resources": {
            "clusters": [xds_cluster, admin_cluster, *clusters],
            "listeners": [stats_listener],
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": "global config",
                    "static_layer": {"overload.global_downstream_max_connections": 2147483647},
                }
            ]
        },
    }
