"""The `isthmus` command: its top-level group and sub-command groups."""

from __future__ import annotations

import typer

from isthmus import __version__, tunables
from isthmus.cli import agent, local
from isthmus.cli.ca import ca, experimental
from isthmus.cli.discovery import discovery
from isthmus.cli.proxy_status import proxy_status

app = typer.Typer(
    name="isthmus",
    help="Isthmus: a multicluster service mesh with one shared control plane.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(local.app, name="local")
app.add_typer(agent.app, name="agent")
app.command()(discovery)
app.command()(ca)
app.add_typer(experimental, name="x")
app.command(name="proxy-status")(proxy_status)


@app.command(name="tunables")
def show_tunables() -> None:
    """List every tunable: its environment variable, current value and what it does."""
    for env, value, doc in tunables.table():
        typer.echo(f"{env}={value}\n    {doc}")


@app.command()
def version() -> None:
    """Print the Isthmus version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
