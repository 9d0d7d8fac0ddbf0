"""`isthmus ca` (the cluster's CA, the seed's istio-citadel) and `isthmus x ca root|intermediate` (plug-in CA
certificates from one root, in the layout of Istio's samples/certs)."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from isthmus.cli import component

certs = typer.Typer(
    help="Create plug-in CA certificates: one root, an intermediate per cluster.", no_args_is_help=True
)
experimental = typer.Typer(help="Experimental and tooling commands.", no_args_is_help=True)
experimental.add_typer(certs, name="ca")

KEY_TYPES = "ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096"


def _key_type(value: str) -> object:
    from isthmus.security.pki import KeyType

    try:
        return KeyType(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not one of {KEY_TYPES}", param_hint="--key-type") from None


def _prepare(out: Path, force: bool, names: list[str]) -> None:
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        typer.echo(
            f"error: {out} already has {', '.join(existing)}: choose another --out or pass --force", err=True
        )
        raise typer.Exit(1)
    out.mkdir(parents=True, exist_ok=True)


@certs.command()
def root(
    out: Annotated[Path, typer.Option("--out", help="Folder for root-cert.pem and root-key.pem.")],
    key_type: Annotated[str, typer.Option("--key-type", help=KEY_TYPES)] = "ec-p256",
    days: Annotated[int, typer.Option("--days", min=1, max=36500, help="Lifetime.")] = 3650,
    name: Annotated[str, typer.Option("--name", help="The root's common name.")] = "Isthmus root CA",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create the mesh's root CA: OUT/root-cert.pem and OUT/root-key.pem (keep the key offline)."""
    from isthmus.security import pki

    kind = _key_type(key_type)
    assert isinstance(kind, pki.KeyType)
    _prepare(out, force, ["root-cert.pem", "root-key.pem"])
    key = kind.generate()
    cert = pki.new_root(name, key, datetime.timedelta(days=days))
    pki.write_private(out / "root-key.pem", pki.key_pem(key))
    (out / "root-cert.pem").write_bytes(pki.cert_pem(cert))
    typer.echo(f"root CA {name!r} ({kind.value}, {days} days) in {out}")


@certs.command()
def intermediate(
    root_dir: Annotated[Path, typer.Option("--root", help="Folder made by `isthmus x ca root`.")],
    cluster: Annotated[
        str, typer.Option("--cluster", help="The cluster this CA signs for (its common name).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the cacerts files.")],
    key_type: Annotated[str, typer.Option("--key-type", help=KEY_TYPES)] = "ec-p256",
    days: Annotated[int, typer.Option("--days", min=1, max=36500, help="Lifetime.")] = 730,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create a cluster's intermediate CA signed by the root: OUT/ca-cert.pem, ca-key.pem, root-cert.pem,
    cert-chain.pem, ready for `kubectl create secret generic cacerts -n istio-system --from-file=OUT/...`."""
    from isthmus.security import pki

    kind = _key_type(key_type)
    assert isinstance(kind, pki.KeyType)
    try:
        root_cert = pki.load_certs(
            (root_dir / "root-cert.pem").read_bytes(), str(root_dir / "root-cert.pem")
        )[0]
        root_key = pki.load_key((root_dir / "root-key.pem").read_bytes(), str(root_dir / "root-key.pem"))
        signer = pki.check_signer(root_cert, root_key, [root_cert], root_cert, str(root_dir))
    except (OSError, pki.PkiError) as exc:
        typer.echo(f"error: {exc} (make one with `isthmus x ca root --out DIR`)", err=True)
        raise typer.Exit(1) from None
    files = [pki.CA_CERT, pki.CA_KEY, pki.ROOT_CERT, pki.CERT_CHAIN]
    _prepare(out, force, files)
    key = kind.generate()
    cert = signer.intermediate(f"Isthmus intermediate CA ({cluster})", key, datetime.timedelta(days=days))
    pki.write_private(out / pki.CA_KEY, pki.key_pem(key))
    (out / pki.CA_CERT).write_bytes(pki.cert_pem(cert))
    (out / pki.ROOT_CERT).write_bytes(pki.cert_pem(root_cert))
    (out / pki.CERT_CHAIN).write_bytes(pki.cert_pem(cert) + pki.cert_pem(root_cert))
    typer.echo(f"intermediate CA for {cluster} ({kind.value}, {days} days) in {out}: {', '.join(files)}")


def ca(
    kubeconfig: Annotated[
        str | None, typer.Option("--kubeconfig", help="Kubeconfig of this cluster (in a pod: in-cluster).")
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Context of the kubeconfig to use.")
    ] = None,
    self_signed: Annotated[
        bool,
        typer.Option(
            "--self-signed-ca/--plugin-ca", help="Self-signed root, or the plug-in CA in --cacerts."
        ),
    ] = True,
    cacerts: Annotated[
        Path, typer.Option("--cacerts", help="The mounted Secret cacerts (ca-cert.pem, ca-key.pem, ...).")
    ] = Path("/etc/cacerts"),
    namespace: Annotated[str, typer.Option("--namespace", help="The CA's namespace.")] = "istio-system",
    trust_domain: Annotated[
        str, typer.Option("--trust-domain", help="Of the SPIFFE ids issued.")
    ] = "cluster.local",
    grpc_address: Annotated[
        str, typer.Option("--grpc-address", help="The CSR service (TLS).")
    ] = "127.0.0.1:8060",
    http_address: Annotated[str, typer.Option("--http-address", help="/ready, /metrics, /roots.")] = (
        "127.0.0.1:15014"
    ),
    service_name: Annotated[
        str,
        typer.Option("--service-name", help="The Service the CA is reached by (its certificate's names)."),
    ] = "istio-citadel",
    publish_roots: Annotated[
        bool,
        typer.Option(
            "--publish-roots/--no-publish-roots", help="Keep ConfigMap istio-ca-root-cert in every namespace."
        ),
    ] = True,
    audience: Annotated[
        list[str] | None,
        typer.Option("--token-audience", help="Audiences tokens must have (default: the API server's)."),
    ] = None,
) -> None:
    """Run the cluster's certificate authority: signs workload CSRs for the caller's own identity."""
    from isthmus.security.pki import PkiError
    from isthmus.security.server import CaOptions, serve

    client = component.start(kubeconfig, context)
    options = CaOptions(
        namespace=namespace,
        trust_domain=trust_domain,
        self_signed=self_signed,
        cacerts=cacerts,
        grpc_address=grpc_address,
        http_address=http_address,
        audiences=tuple(audience or ()),
        service_name=service_name,
        publish_roots=publish_roots,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(client, options, stop)

    try:
        asyncio.run(run())
    except (PkiError, OSError) as exc:  # a bad plug-in CA, a port in use
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    os._exit(0)  # grpc's threads must not hold the exit
