"""`isthmus agent proxy sidecar ...`: the sidecar container's entry point (Istio's `pilot-agent`), with the
arguments the injection template passes."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated

import typer

from isthmus import __version__

app = typer.Typer(help="The sidecar's agent: runs and configures Envoy.", no_args_is_help=True)

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: str, option: str) -> float:
    """`45s`, `1m0s`, `1m30s`, `100ms` -> seconds."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise typer.BadParameter(f"{value!r} is not a duration such as 45s or 1m0s", param_hint=option)
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


@app.command()
def proxy(
    role: Annotated[str, typer.Argument(help="sidecar (router: gateways, not available yet)")] = "sidecar",
    discovery_address: Annotated[str, typer.Option("--discoveryAddress")] = "istio-pilot.istio-system:15010",
    service_cluster: Annotated[str, typer.Option("--serviceCluster")] = "istio-proxy",
    domain: Annotated[str, typer.Option("--domain")] = "",
    config_path: Annotated[str, typer.Option("--configPath")] = "/etc/istio/proxy",
    binary_path: Annotated[str, typer.Option("--binaryPath", help="Envoy; default: the bundled one")] = "",
    proxy_admin_port: Annotated[int, typer.Option("--proxyAdminPort")] = 15000,
    status_port: Annotated[int, typer.Option("--statusPort")] = 15020,
    concurrency: Annotated[int, typer.Option("--concurrency")] = 1,
    drain_duration: Annotated[str, typer.Option("--drainDuration")] = "45s",
    parent_shutdown_duration: Annotated[str, typer.Option("--parentShutdownDuration")] = "1m0s",
    connect_timeout: Annotated[str, typer.Option("--connectTimeout")] = "10s",
    dns_refresh_rate: Annotated[str, typer.Option("--dnsRefreshRate")] = "300s",
    control_plane_auth_policy: Annotated[str, typer.Option("--controlPlaneAuthPolicy")] = "NONE",
    application_ports: Annotated[str, typer.Option("--applicationPorts")] = "",
    zipkin_address: Annotated[
        str, typer.Option("--zipkinAddress", help="accepted; tracing is not exported")
    ] = "",
    trust_domain: Annotated[str, typer.Option("--trust-domain")] = "",
    log_level: Annotated[str, typer.Option("--proxyLogLevel")] = "warning",
    xds_protocol: Annotated[str, typer.Option("--xdsProtocol", help="delta or sotw")] = "delta",
    ca_address: Annotated[
        str,
        typer.Option(
            "--caAddress",
            envvar="CA_ADDR",
            help="The cluster's CA (istio-citadel.istio-system.svc:8060): certificates over SDS; none: plaintext",
        ),
    ] = "",
    root_cert: Annotated[
        str, typer.Option("--rootCert", help="The trusted roots (ConfigMap istio-ca-root-cert, mounted)")
    ] = "/var/run/secrets/istio/root-cert.pem",
    token_path: Annotated[
        str, typer.Option("--tokenPath", help="The pod's service-account token, sent to the CA")
    ] = "/var/run/secrets/kubernetes.io/serviceaccount/token",
) -> None:
    """Write Envoy's bootstrap from the pod's environment and these arguments, run Envoy, serve health."""
    from isthmus.agent.bootstrap import AgentOptions, BootstrapError, identity
    from isthmus.agent.main import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if role != "sidecar":
        typer.echo(f"error: proxy role {role!r} is not available: use sidecar", err=True)
        raise typer.Exit(2)
    if xds_protocol not in ("delta", "sotw"):
        raise typer.BadParameter("must be delta or sotw", param_hint="--xdsProtocol")
    try:
        ports = tuple(int(p) for p in application_ports.split(",") if p.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{application_ports!r} is not a list of ports", param_hint="--applicationPorts"
        ) from None
    del zipkin_address
    options = AgentOptions(
        discovery_address=discovery_address,
        service_cluster=service_cluster,
        domain=domain,
        config_path=config_path,
        binary_path=binary_path,
        proxy_admin_port=proxy_admin_port,
        status_port=status_port,
        concurrency=max(1, concurrency),
        drain_duration=_seconds(drain_duration, "--drainDuration"),
        parent_shutdown_duration=_seconds(parent_shutdown_duration, "--parentShutdownDuration"),
        connect_timeout=_seconds(connect_timeout, "--connectTimeout"),
        dns_refresh_rate=_seconds(dns_refresh_rate, "--dnsRefreshRate"),
        control_plane_auth_policy=control_plane_auth_policy,
        log_level=log_level,
        application_ports=ports,
        delta=xds_protocol == "delta",
        ca_address=ca_address,
        trust_domain=trust_domain or "cluster.local",
        root_cert_path=root_cert,
        token_path=token_path,
    )
    try:
        who = identity(os.environ)
        asyncio.run(run(options, who, __version__))
    except BootstrapError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
