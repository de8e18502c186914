"""``reclab export``: a recording's tables as CSV, JSON lines or Parquet."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Annotated, Any, cast

import typer

from .app import app, fail, open_or_fail

if TYPE_CHECKING:
    pass

TABLE_NAMES = ("commands", "frames", "fileops", "logs", "session")


class LazyProgress:
    """A rich progress bar on stderr that appears only if the work takes more than a moment.

    It is shown when stderr is a terminal, or when forced; redirected
    output never gets escape codes. ``update(done, total)`` is the
    progress callback of the model and the export.
    """

    def __init__(self, enabled: bool | None, delay: float = 0.5):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.delay = delay
        self.started = time.monotonic()
        self.description = ""
        self._progress: Any = None
        self._task: Any = None

    def stage(self, description: str) -> None:
        """Name the current stage (indexing, exporting); resets the bar."""
        self.description = description
        if self._progress is not None:
            self._progress.reset(self._task, description=description)

    def update(self, done: int, total: int) -> None:
        """Progress callback: ``done`` of ``total`` bytes."""
        if not self.enabled:
            return
        if self._progress is None:
            if time.monotonic() - self.started < self.delay:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True, force_terminal=self.enabled or None),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=total)
        self._progress.update(self._task, completed=done, total=total)

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


@app.command()
def export(
    recording: Annotated[Path, typer.Argument(help="A .cbor session recording.")],
    table: Annotated[
        str,
        typer.Option(
            "--table", "-t", help="commands, frames, fileops, logs or session.", show_default=True
        ),
    ] = "commands",
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Write JSON lines.")] = False,
    parquet: Annotated[bool, typer.Option("--parquet", help="Write Parquet (needs -o).")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output file (default: stdout).")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            "--where", "-w", help="Keep rows matching a pandas query, e.g. \"type == 'data'\"."
        ),
    ] = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", help="Rows per batch (memory bound).", min=1)
    ] = 32768,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar on stderr (default: when stderr is a terminal).",
        ),
    ] = None,
    seq: Annotated[
        int | None,
        typer.Option("--seq", "-n", help="The command to export with --asciicast."),
    ] = None,
    asciicast: Annotated[
        bool,
        typer.Option(
            "--asciicast",
            help="Write command --seq's stdout and stderr as asciicast v2 (asciinema play).",
        ),
    ] = False,
) -> None:
    """Export a table of a recording as CSV, JSON lines or Parquet, streaming in batches.

    With --asciicast --seq N: command N's terminal output as an asciicast v2 file.
    """
    if asciicast:
        others = csv or jsonl or parquet or where is not None
        _export_asciicast(recording, seq, output, others)
        return
    formats = [name for name, on in (("csv", csv), ("jsonl", jsonl), ("parquet", parquet)) if on]
    if len(formats) != 1:
        fail("choose exactly one of --csv, --jsonl or --parquet")
    fmt = formats[0]
    if table not in TABLE_NAMES:
        fail(f"unknown table {table!r}: choose from {', '.join(TABLE_NAMES)}")
    if fmt == "parquet" and output is None:
        fail("--parquet needs an output file: -o FILE")
    if output is not None and output.is_dir():
        fail(f"{output}: is a directory")

    from ..export import ExportError, export_table
    from ..model import RecordingError, UnknownCommandError
    from ..terminal import TerminalText

    # On a terminal, recorded escapes are shown, not obeyed; to a pipe or file, byte-exact.
    screen = TerminalText(sys.stdout.buffer) if output is None and sys.stdout.isatty() else None
    with LazyProgress(progress) as bar:
        bar.stage("indexing")
        rec = open_or_fail(recording, progress=bar.update)
        with rec:
            bar.stage(f"exporting {table}")
            try:
                export_table(
                    rec,
                    table,
                    fmt,
                    output if output is not None else cast("IO[Any]", screen or sys.stdout),
                    where=where,
                    batch_rows=batch_rows,
                    progress=bar.update,
                )
                if screen is not None:
                    screen.finish()
            except (ExportError, UnknownCommandError, RecordingError) as exc:
                fail(str(exc))
            except BrokenPipeError:
                # The reader (e.g. `| head`) went away: stop quietly, like cat.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                raise typer.Exit(1) from None
            except OSError as exc:
                fail(f"{output or 'stdout'}: {exc.strerror or exc}")


def _export_asciicast(recording: Path, seq: int | None, output: Path | None, others: bool) -> None:
    """``export --asciicast``: one command's output as asciicast v2 (see reclab.asciicast)."""
    if seq is None:
        fail("--asciicast needs a command: --seq N")
    if others:
        fail("--asciicast cannot be combined with --csv, --jsonl, --parquet or --where")
    if output is not None and output.is_dir():
        fail(f"{output}: is a directory")

    import io

    from agentproto import RemoteProtocolError

    from ..asciicast import write_asciicast
    from ..model import RecordingError, UnknownCommandError

    rec = open_or_fail(recording)
    with rec:
        try:
            rec.command(seq)  # an unknown seq fails before the output file is created
            if output is None:
                # asciicast is UTF-8 whatever the locale says
                out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
                try:
                    write_asciicast(rec, seq, out)
                    out.flush()
                finally:
                    out.detach()
            else:
                with open(output, "w", encoding="utf-8", newline="\n") as fp:
                    write_asciicast(rec, seq, fp)
        except (UnknownCommandError, RecordingError) as exc:
            fail(str(exc))
        except RemoteProtocolError as exc:
            fail(f"{recording}: unreadable record: {exc}")
        except BrokenPipeError:
            raise typer.Exit(1) from None
        except OSError as exc:
            fail(f"{output or 'stdout'}: {exc.strerror or exc}")
