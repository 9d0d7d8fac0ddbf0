"""`isthmus proxy-status`: each proxy the control plane serves, with its cluster and, per xDS type, whether it
has what the control plane last sent (SYNCED), not yet (STALE), or nothing (NOT SENT).

It reads the discovery pods' `/debug/syncz` through the Kubernetes API (the `pods/proxy` subresource), so it
works wherever kubectl does, with no port-forward.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from lightkube import ApiError, AsyncClient

from isthmus.kube import client as kube_client
from isthmus.kube.client import KubeconfigError
from isthmus.kube.informer import describe
from isthmus.kube.resources import Pods, pod_proxy

TYPES = ("CDS", "LDS", "EDS", "RDS")
DEBUG_PORT = 8080


async def _syncz(client: AsyncClient, namespace: str, selector: dict[str, str]) -> list[tuple[str, Any]]:
    api: Any = client
    pods = [p async for p in api.list(Pods, namespace=namespace, labels=selector)]
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if not running:
        raise LookupError(
            f"no running discovery pod (label {','.join(f'{k}={v}' for k, v in selector.items())}) in namespace "
            f"{namespace}: is the control plane installed there? (-i NAMESPACE)"
        )
    out = []
    for pod in running:
        name = pod["metadata"]["name"]
        out.append(
            (name, await api.get(pod_proxy("debug/syncz"), f"{name}:{DEBUG_PORT}", namespace=namespace))
        )
    return out


def render(results: list[tuple[str, Any]], wanted: str = "") -> list[str]:
    rows = [("NAME", "CLUSTER", *TYPES, "PILOT", "VERSION")]
    for pilot, body in results:
        for proxy in body.get("proxies", []):
            name = proxy.get("pod") or proxy.get("node")
            if wanted and wanted not in (name, proxy.get("node"), proxy.get("ip")):
                continue
            types = proxy.get("types", {})
            rows.append(
                (
                    name,
                    str(proxy.get("cluster", "")),
                    *(types.get(t, {}).get("status", "NOT SENT") for t in TYPES),
                    pilot,
                    proxy.get("istio_version", ""),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def proxy_status(
    pod: Annotated[str, typer.Argument(help="Only this proxy (POD.NAMESPACE, node id or IP).")] = "",
    kubeconfig: Annotated[
        str | None, typer.Option("--kubeconfig", "-c", help="Kubeconfig of the primary cluster.")
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Context of the kubeconfig to use.")
    ] = None,
    namespace: Annotated[
        str, typer.Option("--istioNamespace", "-i", help="The control plane's namespace.")
    ] = ("istio-system"),
) -> None:
    """Show each proxy's cluster and whether it has the latest configuration, per xDS type."""
    try:
        client = kube_client.from_file(kubeconfig, context) if kubeconfig else kube_client.default(context)
    except KubeconfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def fetch() -> list[tuple[str, Any]]:
        try:
            return await _syncz(client, namespace, {"istio": "pilot"})
        finally:
            await client.close()

    try:
        results = asyncio.run(fetch())
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (ApiError, OSError) as exc:
        typer.echo(f"error: cannot read the control plane's status: {describe(exc)}", err=True)
        raise typer.Exit(1) from None
    lines = render(results, pod)
    if pod and len(lines) == 1:
        typer.echo(f"error: no proxy {pod!r} is connected to the control plane", err=True)
        raise typer.Exit(1)
    for line in lines:
        typer.echo(line)
