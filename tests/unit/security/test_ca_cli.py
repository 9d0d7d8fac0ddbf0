"""`isthmus x ca` and `isthmus ca` from the command line: the seed's cacerts layout, and a bad plug-in CA
stopping the CA at start with a message naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from isthmus.cli.main import app
from isthmus.security import pki

runner = CliRunner()


def kubeconfig(tmp: Path) -> Path:
    """A kubeconfig of a server that is never reached (the CA fails before it calls the API)."""
    path = tmp / "kubeconfig"
    cluster = {"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}
    user = {"name": "u", "user": {"token": "t"}}
    context = {"name": "c", "context": {"cluster": "c", "user": "u"}}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [user],
                "contexts": [context],
                "current-context": "c",
            }
        )
    )
    return path


def test_the_seeds_cacerts_files_chain_to_one_root(tmp_path: Path) -> None:
    assert (
        runner.invoke(
            app, ["x", "ca", "root", "--out", str(tmp_path / "root"), "--key-type", "rsa-2048"]
        ).exit_code
        == 0
    )
    for cluster in ("cluster1", "cluster2"):
        result = runner.invoke(
            app,
            [
                "x",
                "ca",
                "intermediate",
                "--root",
                str(tmp_path / "root"),
                "--cluster",
                cluster,
                "--out",
                str(tmp_path / cluster),
            ],
        )
        assert result.exit_code == 0, result.output
        signer = pki.load_plugin_ca(tmp_path / cluster)
        assert signer.root == pki.load_certs((tmp_path / "root" / "root-cert.pem").read_bytes(), "root")[0]
        assert (tmp_path / cluster / "ca-key.pem").stat().st_mode & 0o077 == 0
    one = pki.load_plugin_ca(tmp_path / "cluster1").cert
    two = pki.load_plugin_ca(tmp_path / "cluster2").cert
    assert one.subject != two.subject and one.public_key() != two.public_key()


def test_an_unknown_key_type_is_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["x", "ca", "root", "--out", str(tmp_path), "--key-type", "dsa"])
    assert result.exit_code != 0 and "'dsa' is not one of ec-p256" in result.output


def test_a_plugin_ca_that_is_not_a_ca_stops_the_ca_naming_the_file(tmp_path: Path) -> None:
    runner.invoke(app, ["x", "ca", "root", "--out", str(tmp_path / "root")])
    runner.invoke(
        app,
        [
            "x",
            "ca",
            "intermediate",
            "--root",
            str(tmp_path / "root"),
            "--cluster",
            "c1",
            "--out",
            str(tmp_path / "c1"),
        ],
    )
    (tmp_path / "c1" / "ca-cert.pem").write_bytes(
        (tmp_path / "root" / "root-cert.pem").read_bytes()
    )  # wrong key
    result = runner.invoke(
        app,
        ["ca", "--plugin-ca", "--cacerts", str(tmp_path / "c1"), "--kubeconfig", str(kubeconfig(tmp_path))],
    )
    assert result.exit_code == 1
    assert f"{tmp_path / 'c1'}: ca-key.pem is not the key of ca-cert.pem" in result.output
