"""Helpers of the CA's tests: plug-in CA folders made by `isthmus x ca`, a CaServer on loopback ports next to
an in-process API server, and a client that calls it as a workload does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from isthmus.cli.main import app
from isthmus.security.client import request_certificate
from isthmus.security.server import CaOptions, CaServer
from tests.unit.mesh.meshkit import Kube, LocalApi, free_port

SERVER_NAME = "istio-citadel.istio-system.svc"


def make_ca(tmp: Path, cluster: str = "cluster1") -> Path:
    runner = CliRunner()
    root = tmp / "root"
    if not (root / "root-cert.pem").exists():
        result = runner.invoke(app, ["x", "ca", "root", "--out", str(root)])
        assert result.exit_code == 0, result.output
    out = tmp / cluster
    result = runner.invoke(
        app, ["x", "ca", "intermediate", "--root", str(root), "--cluster", cluster, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


class Ca:
    """A running CaServer and what a workload needs to call it."""

    def __init__(self, server: CaServer, kube: Kube) -> None:
        self.server = server
        self.kube = kube

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def root_pem(self) -> bytes:
        return self.server.roots_pem().encode()

    async def sign(self, token: str, csr: bytes, validity: int = 0) -> list[str]:
        return await request_certificate(
            self.address, self.root_pem, token, csr, validity_seconds=validity, server_name=SERVER_NAME
        )


def ca_options(**options: Any) -> CaOptions:
    return CaOptions(
        grpc_address=f"127.0.0.1:{free_port()}", http_address=f"127.0.0.1:{free_port()}", **options
    )


async def start_ca(apiserver: LocalApi, **options: Any) -> CaServer:
    kube = Kube(apiserver.client())
    for ns in ("istio-system", "sample"):
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for namespace, name in (
        ("sample", "sleep"),
        ("sample", "helloworld"),
        ("istio-system", "istio-pilot-service-account"),
    ):
        await kube.create(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
        )
    server = CaServer(apiserver.client(), ca_options(**options))
    await server.start()
    return server
