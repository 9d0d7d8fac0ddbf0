"""Fixtures of the xDS unit tests: a two-cluster mesh and an xDS server on a loopback port, stopped (with its
client channels) when the test ends. Debounce is short so tests wait milliseconds, not the defaults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.xds.xdskit import MeshBuilder, XdsHarness


@pytest.fixture(autouse=True)
def quick_pushes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_DEBOUNCE_AFTER", "0.005")
    monkeypatch.setenv("ISTHMUS_DEBOUNCE_MAX", "0.05")


@pytest.fixture
def mesh() -> MeshBuilder:
    return MeshBuilder()


@pytest.fixture
async def xds(mesh: MeshBuilder) -> AsyncIterator[XdsHarness]:
    harness = XdsHarness(mesh)
    await harness.start()
    yield harness
    await harness.close()
