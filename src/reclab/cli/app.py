"""The typer application shared by every command module, and error reporting."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from .. import __version__

if TYPE_CHECKING:
    from ..model import Recording

app = typer.Typer(
    name="reclab",
    help="Read, analyse, view and replay agentproto session recordings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help and usage errors: typer's rich formatting imports rich, markdown-it
    # and pygments, three times the start-up of everything else `reclab --help` needs.
    rich_markup_mode=None,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line on stderr and exit: the CLI never shows a traceback."""
    print(f"reclab: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    print(f"reclab: warning: {message}", file=sys.stderr)


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn every reading problem into one line on stderr and exit status 2."""
    from agentproto.errors import RemoteProtocolError

    from ..errors import ReclabError

    try:
        yield
    except ReclabError as exc:
        fail(str(exc))
    except RemoteProtocolError as exc:
        fail(f"{path}: unreadable record: {exc}")
    except BrokenPipeError:  # the reader went away (| head): not an error
        raise typer.Exit(0) from None
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")


def open_or_fail(path: Path, progress: Callable[[int, int], None] | None = None) -> Recording:
    """Open and index a recording for a command: exit 2 with one line if it cannot be read.

    Warns once (one line each) when the recording is cut, has no footer, or
    had damage that was skipped; the command then works on what was read.
    """
    from ..model import open_recording

    with reading(path):
        rec = open_recording(path, progress=progress)
    if rec.damage:
        first = rec.damage[0]
        more = f" and {len(rec.damage) - 1} more damaged regions" if len(rec.damage) > 1 else ""
        warn(
            f"{path}: {first.message} at byte {first.offset}; skipped {first.size} bytes"
            f"{more} and read the records after it"
        )
    t = rec.truncation
    if t is not None:
        if t.kind == "no-footer":
            warn(f"{path}: no session footer (the writer did not close it)")
        else:
            warn(
                f"{path}: {t.message} at byte {t.offset}; "
                f"using the {rec.record_count} complete records before it"
            )
    return rec


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
