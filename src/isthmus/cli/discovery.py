"""`isthmus discovery`: run the control plane's discovery process (the seed's istio-pilot)."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
import uvloop

from isthmus.cli import component


def discovery(
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig", help="Kubeconfig of the primary cluster (in a pod: the in-cluster configuration)."
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Context of the kubeconfig to use.")
    ] = None,
    cluster_id: Annotated[
        str, typer.Option("--cluster-id", help="This (primary) cluster's id; remote clusters may not use it.")
    ] = "Kubernetes",
    namespace: Annotated[
        str,
        typer.Option(
            "--namespace",
            help="The control plane's namespace: multicluster Secrets and the mesh ConfigMap live there.",
        ),
    ] = "istio-system",
    http_address: Annotated[str, typer.Option("--http-address", help="Readiness and debug endpoints.")] = (
        "127.0.0.1:8080"
    ),
    monitoring_address: Annotated[str, typer.Option("--monitoring-address", help="Prometheus /metrics.")] = (
        "127.0.0.1:15014"
    ),
    grpc_address: Annotated[str, typer.Option("--grpc-address", help="Where xDS listens (plaintext).")] = (
        "127.0.0.1:15010"
    ),
    secure_grpc_address: Annotated[
        str,
        typer.Option(
            "--secure-grpc-address",
            help="xDS over mutual TLS (15011): proxies must present certificates of the pods they claim "
            "(needs --ca-address).",
        ),
    ] = "",
    ca_address: Annotated[
        str,
        typer.Option(
            "--ca-address", envvar="CA_ADDR", help="The cluster's CA, for this process's own certificate."
        ),
    ] = "",
) -> None:
    """Discover services, endpoints and pods in this cluster and in the remote clusters registered by Secrets
    labelled istio/multiCluster=true, and serve them."""
    from isthmus.discovery.server import DiscoveryOptions, serve

    client = component.start(kubeconfig, context)
    options = DiscoveryOptions(
        cluster_id=cluster_id,
        namespace=namespace,
        http_address=http_address,
        monitoring_address=monitoring_address,
        grpc_address=grpc_address,
        pod_name=os.environ.get("POD_NAME", ""),
        secure_grpc_address=secure_grpc_address,
        ca_address=ca_address,
        service_account=os.environ.get("SERVICE_ACCOUNT") or "istio-pilot-service-account",
    )
    if secure_grpc_address and not ca_address:
        typer.echo(
            "error: --secure-grpc-address needs --ca-address (the CA that issues this process's certificate)",
            err=True,
        )
        raise typer.Exit(2)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(client, options))
