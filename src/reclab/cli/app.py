"""The typer application shared by every command module, and error reporting."""

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType

from .. import __version__

if TYPE_CHECKING:
    from typer import _click as click  # typer vendors its own click: its classes

    from ..model import Recording


class _Argument(TyperArgument):
    """An argument shown by its metavar alone, as man pages do: ``REC``, not ``{recording}``
    in the usage line and ``recording <path>`` in the list."""

    def display_type_rich(self, ctx: "click.Context") -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"


def _tidy(params: "list[click.Parameter]") -> "list[click.Parameter]":
    """Help that reads well: no ``<bool>`` after a flag, arguments named in capitals."""
    for param in params:
        if isinstance(param, TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "").upper()
            param.__class__ = _Argument
        elif isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # a flag takes no value; typer would show its type
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: "click.Context") -> "list[click.Parameter]":
        return _tidy(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: "click.Context") -> "list[click.Parameter]":
        return _tidy(super().get_params(ctx))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Run the CLI; a usage error (unknown option, missing --seq) is one line, as the others."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **kwargs)
        from typer import _click as click_

        try:
            status = super().main(
                args, prog_name, complete_var, False, windows_expand_args, **kwargs
            )
        except click_.exceptions.NoArgsIsHelpError as exc:
            sys.exit(exc.exit_code)  # `reclab` alone: typer has shown the help
        except click_.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            print(f"reclab: error: {exc.format_message().rstrip('.')}{see}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except typer.Abort:  # an EOF at a prompt
            print("reclab: interrupted", file=sys.stderr)
            sys.exit(130)
        sys.exit(status if isinstance(status, int) else 0)


class _Typer(typer.Typer):
    """Every command of the app gets :class:`_Command`'s help."""

    def command(
        self, *args: Any, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="reclab",
    help="Read, analyse, view and replay agentproto session recordings.",
    no_args_is_help=True,
    cls=_Group,
    pretty_exceptions_enable=False,
    # Plain help and usage errors: typer's rich formatting imports rich, markdown-it
    # and pygments, three times the start-up of everything else `reclab --help` needs.
    rich_markup_mode=None,
)


def examples(*lines: str) -> str:
    """A command's epilog: one example a line, as ``--help`` shows them."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


# Temporary copies of stdin (`-`) and the name a message gives them instead.
_SHOWN_AS: dict[str, str] = {}


def _shown(message: str) -> str:
    for path, name in _SHOWN_AS.items():
        message = message.replace(path, name)
    return message


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear line on stderr and exit: the CLI never shows a traceback."""
    print(f"reclab: error: {_shown(message)}", file=sys.stderr)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    print(f"reclab: warning: {_shown(message)}", file=sys.stderr)


STDIN_NAME = "<stdin>"


def is_stdin(path: Path) -> bool:
    """Whether a recording argument is ``-``: the recording comes on stdin."""
    return str(path) == "-"


@contextmanager
def recording_file(path: Path) -> Iterator[Path]:
    """The path to read a recording argument from: ``-`` is stdin, copied to a temporary file.

    The model seeks (an index, random access to frames), so a pipe is spooled
    first; messages name it ``<stdin>``, not the temporary file.
    """
    if not is_stdin(path):
        yield path
        return
    if sys.stdin is None or sys.stdin.isatty():
        fail("- reads the recording from stdin, but stdin is a terminal: pipe a recording in")
    with tempfile.TemporaryDirectory(prefix="reclab-stdin-") as tmp:
        spooled = Path(tmp) / "stdin.cbor"
        _SHOWN_AS[str(spooled)] = STDIN_NAME
        try:
            with reading(Path(STDIN_NAME)), open(spooled, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            yield spooled
        finally:
            del _SHOWN_AS[str(spooled)]


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


def open_or_fail(path: Path, progress: Callable[[int, int], None] | None = None) -> "Recording":
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
    # One program name however it is started (python -m reclab too): shell completion keys on it.
    app(prog_name="reclab")
