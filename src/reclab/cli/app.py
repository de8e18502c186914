"""The typer application shared by every command module, and error reporting."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from .. import __version__

app = typer.Typer(
    name="reclab",
    help="Read, analyse, view and replay agentproto session recordings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line on stderr and exit: the CLI never shows a traceback."""
    print(f"reclab: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    print(f"reclab: warning: {message}", file=sys.stderr)


def _version(value: bool) -> None:
    if value:
        print(f"reclab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Read, analyse, view and replay agentproto session recordings."""


def main() -> None:
    """Console-script entry point."""
    app()


# Command modules register themselves on ``app`` when imported: one line each.
from . import replay as _replay  # noqa: E402, F401  (reclab replay, serve, diff)
