"""What every control-plane command (`discovery`, `ca`) does first: log as a server does, and find its
cluster (the kubeconfig given, else the pod's in-cluster configuration), or exit with a clear error."""

from __future__ import annotations

import logging

import typer
from lightkube import AsyncClient

from isthmus.kube import client as kube_client
from isthmus.kube.client import KubeconfigError


def start(kubeconfig: str | None, context: str | None) -> AsyncClient:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        return kube_client.for_component(kubeconfig, context)
    except KubeconfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
