"""Clients to a cluster's API server: from a kubeconfig file (and context), from kubeconfig data (a remote
cluster's Secret), or in-cluster (the pod's service-account token and CA)."""

from __future__ import annotations

from typing import Any

import httpx2
import yaml
from lightkube import AsyncClient, KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from isthmus import tunables


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be used; the message says what is wrong with it."""


def _client(config: SingleConfig | KubeConfig) -> AsyncClient:
    timeout = httpx2.Timeout(tunables.KUBE_REQUEST_TIMEOUT.get())
    return AsyncClient(config=config, timeout=timeout, field_manager="isthmus")


def from_file(path: str, context: str | None = None) -> AsyncClient:
    try:
        config = KubeConfig.from_file(path)
        single = config.get(context_name=context) if context else config.get()
        if single is None:
            raise KubeconfigError(f"the kubeconfig {path} has no usable context")
        return _client(single)
    except (OSError, KeyError, ValueError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"the kubeconfig {path} cannot be used: {exc}") from None


def default(context: str | None = None) -> AsyncClient:
    """As kubectl finds its cluster: $KUBECONFIG (its first file), else ~/.kube/config."""
    import os
    from pathlib import Path

    path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    if not Path(path).exists():
        raise KubeconfigError(f"no kubeconfig at {path}: pass --kubeconfig FILE or set KUBECONFIG")
    return from_file(path, context)


def in_cluster() -> AsyncClient:
    try:
        return _client(KubeConfig.from_service_account())
    except (OSError, KeyError, ValueError) as exc:
        raise KubeconfigError(
            f"no in-cluster configuration (service-account token, CA, KUBERNETES_SERVICE_HOST): {exc}"
        ) from None


def for_component(kubeconfig: str | None, context: str | None) -> AsyncClient:
    """A control-plane component's client: the kubeconfig given, else the pod's in-cluster configuration."""
    import os

    if kubeconfig:
        return from_file(kubeconfig, context)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    raise KubeconfigError("no cluster to talk to: pass --kubeconfig FILE [--context NAME], or run in a pod")


def parse_kubeconfig(data: bytes | str) -> dict[str, Any]:
    """Parse kubeconfig data and check it names a server and credentials; KubeconfigError says what is missing."""
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise KubeconfigError("not a kubeconfig: expected a YAML mapping with clusters, users and contexts")
    clusters = document.get("clusters") or []
    if not isinstance(clusters, list) or not clusters:
        raise KubeconfigError("it has no clusters")
    contexts = document.get("contexts") or []
    current = document.get("current-context")
    if not current and len(contexts) != 1:
        raise KubeconfigError("it has no current-context")
    if not any(isinstance(c, dict) and (c.get("cluster") or {}).get("server") for c in clusters):
        raise KubeconfigError("its cluster has no server address")
    return document


def from_kubeconfig_data(data: bytes | str) -> AsyncClient:
    document = parse_kubeconfig(data)
    try:
        config = KubeConfig.from_dict(document)
        context = document.get("current-context") or None
        single = config.get(context_name=context) if context else config.get()
        if single is None:
            raise KubeconfigError("it has no usable context")
        return _client(single)
    except (KeyError, ValueError, TypeError) as exc:
        raise KubeconfigError(f"it cannot be used: {exc}") from None
