"""The `isthmus` command: its top-level group and sub-command groups."""

from __future__ import annotations

import typer

from isthmus import __version__
from isthmus.cli import local

app = typer.Typer(
    name="isthmus",
    help="Isthmus: a multicluster service mesh with one shared control plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(local.app, name="local")


@app.command()
def version() -> None:
    """Print the Isthmus version."""
    typer.echo(__version__)


def main() -> None:
    app()
