"""`isthmus local`: embedded local clusters (Kubernetes-API-compatible servers on one flat network)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from isthmus.local.cluster.lifecycle import DEFAULT_DIR, LocalClusterError, LocalRun
from isthmus.local.cluster.network import NetworkError

app = typer.Typer(help="Run local clusters on this machine (needs root).", no_args_is_help=True)

DirOption = Annotated[Path, typer.Option("--dir", help="State folder of the local run.")]


def _fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(1)


@app.command()
def up(
    clusters: Annotated[int | None, typer.Option("--clusters", help="How many clusters (default 2).")] = None,
    block: Annotated[
        str | None,
        typer.Option("--block", help="The /16 address block to use (default: a free 10.N.0.0/16)."),
    ] = None,
    legacy_sa_tokens: Annotated[
        bool | None,
        typer.Option(
            "--legacy-sa-tokens/--no-legacy-sa-tokens",
            help="Give every ServiceAccount a token Secret listed in its .secrets[], as Kubernetes before 1.24 "
            "did (default: on, or as the run last had it).",
        ),
    ] = None,
    topology: Annotated[
        list[str] | None,
        typer.Option(
            "--topology",
            help="CLUSTER=REGION/ZONE for a cluster's node labels (repeatable; default: region local, zone "
            "local-CLUSTER, so every cluster is its own zone).",
        ),
    ] = None,
    dir: DirOption = DEFAULT_DIR,
) -> None:
    """Start the local clusters of DIR (creating them on first use; objects persist across down/up)."""
    run = LocalRun(dir)
    zones: dict[str, str] = {}
    for entry in topology or []:
        cluster, sep, where = entry.partition("=")
        if not sep:
            raise _fail(
                ValueError(
                    f"--topology {entry!r}: give CLUSTER=REGION/ZONE, e.g. cluster1=us-east1/us-east1-b"
                )
            )
        zones[cluster] = where
    try:
        run.up(clusters, block, legacy_sa_tokens, zones)
    except (LocalClusterError, NetworkError, ValueError) as exc:
        raise _fail(exc) from None
    names = ", ".join(run.clusters())
    typer.echo(f"local clusters up: {names}")
    typer.echo(f"  kubeconfig: {run.kubeconfig}")
    typer.echo(f"  try: kubectl --kubeconfig {run.kubeconfig} --context {run.clusters()[0]} get namespaces")
    typer.echo(f"  or:  export KUBECONFIG={run.kubeconfig}")


@app.command()
def down(
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the state folder and every object.")
    ] = False,
    dir: DirOption = DEFAULT_DIR,
) -> None:
    """Stop everything the local run of DIR started and remove its network (objects are kept)."""
    try:
        LocalRun(dir).down(purge)
    except (LocalClusterError, NetworkError) as exc:
        raise _fail(exc) from None
    typer.echo("local clusters down" + (" and purged" if purge else ""))


@app.command()
def status(dir: DirOption = DEFAULT_DIR) -> None:
    """Show each local cluster's API server: address, process and readiness."""
    run = LocalRun(dir)
    rows = run.status()
    if not rows:
        typer.echo(f"no local clusters in {run.folder}")
        raise typer.Exit(1)
    for row in rows:
        state = "ready" if row.ready else ("starting" if row.pid else "stopped")
        typer.echo(f"{row.name:<10} {state:<9} {row.server}" + (f"  pid {row.pid}" if row.pid else ""))


@app.command()
def stop(cluster: str, dir: DirOption = DEFAULT_DIR) -> None:
    """Stop one cluster's API server (its pods keep running)."""
    try:
        LocalRun(dir).stop(cluster)
    except (LocalClusterError, NetworkError) as exc:
        raise _fail(exc) from None
    typer.echo(f"{cluster}: API server stopped")


@app.command()
def start(cluster: str, dir: DirOption = DEFAULT_DIR) -> None:
    """Start one cluster's API server again."""
    try:
        LocalRun(dir).start(cluster)
    except (LocalClusterError, NetworkError) as exc:
        raise _fail(exc) from None
    typer.echo(f"{cluster}: API server ready")
