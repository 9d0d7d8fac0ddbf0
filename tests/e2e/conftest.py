"""End-to-end fixtures: real local clusters started with the `isthmus` command, driven by the real kubectl."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.localkit import Kubectl, LocalClusters

if os.geteuid() != 0:
    pytest.exit(
        "the end-to-end tests start local clusters, which needs root (network namespaces)", returncode=4
    )


@pytest.fixture(scope="module")
def clusters(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalClusters]:
    """Local clusters shared by the tests of one module (two, or the module's `CLUSTERS`), removed afterwards
    (also on failure)."""
    run = LocalClusters(tmp_path_factory.mktemp("local"))
    try:
        run.up(getattr(request.module, "CLUSTERS", 2))
        yield run
    finally:
        run.down(purge=True)


@pytest.fixture(scope="module")
def kubectl(clusters: LocalClusters, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(clusters.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))
