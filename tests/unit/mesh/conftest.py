"""Fixtures of the mesh's unit tests: in-process API servers on 127.0.0.1 (a primary and remotes, as many as a
test asks for), each stopped with its clients when the test ends; aggregates and background tasks of the
control plane, stopped before the servers. Fast retries, so a test of an outage takes a fraction of a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.unit.mesh.cakit import Ca, start_ca
from tests.unit.mesh.meshkit import Kube, LocalApi, MakeMesh, Mesh, Pki, Spawn, StartServer


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISTHMUS_KUBE_BACKOFF_INITIAL", "0.02")
    monkeypatch.setenv("ISTHMUS_KUBE_BACKOFF_MAX", "0.1")
    monkeypatch.setenv("ISTHMUS_KUBE_REQUEST_TIMEOUT", "5")


@pytest.fixture
async def apiservers(tmp_path: Path, certs: Pki) -> AsyncIterator[StartServer]:
    """`await apiservers("cluster1")` starts one more server; all of them stop when the test ends."""
    started: list[LocalApi] = []

    async def start(name: str = "", *, running: bool = True) -> LocalApi:
        index = len(started)
        server = LocalApi(name or f"cluster{index + 1}", tmp_path / f"api-{index}", certs, index)
        started.append(server)
        if running:
            await server.start()
        return server

    yield start
    for server in reversed(started):
        await server.close()


@pytest.fixture
async def apiserver(apiservers: StartServer) -> LocalApi:
    return await apiservers("cluster1")


@pytest.fixture
async def spawn(apiservers: StartServer) -> AsyncIterator[Spawn]:
    """Run a coroutine in the background until the test ends (cancelled before the servers stop)."""
    tasks: list[asyncio.Task[Any]] = []

    def run(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.append(task)
        return task

    yield run
    crashed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    for task in tasks:
        task.cancel()
    for task in tasks:
        if task not in crashed:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if crashed:  # a control-plane loop that died on its own is a failure, whatever the test saw
        raise AssertionError(f"background task {crashed[0].get_name()} crashed") from crashed[0].exception()


@pytest.fixture
async def meshes(apiservers: StartServer) -> AsyncIterator[MakeMesh]:
    """`meshes("primary")`: an aggregate whose registries are stopped when the test ends."""
    made: list[Mesh] = []

    def make(primary: str = "primary") -> Mesh:
        mesh = Mesh(primary)
        made.append(mesh)
        return mesh

    yield make
    for mesh in made:
        await mesh.close()


@pytest.fixture
async def ca(apiserver: LocalApi) -> AsyncIterator[Ca]:
    """A CA (self-signed) next to the API server, with namespaces sample and istio-system."""
    server = await start_ca(apiserver)
    yield Ca(server, Kube(apiserver.client()))
    await server.stop()
