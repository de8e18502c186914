"""``reclab export``: a recording's tables as CSV, JSON lines or Parquet."""

import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Annotated, Any, TextIO, cast

import typer

from .app import app, fail, open_or_fail, warn

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

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


FORMATS = ("csv", "jsonl", "parquet", "asciicast")
# An output file's extension names its format when no format is given.
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet", ".cast": "asciicast"}

EXPORT_HELP = """Export a table of a recording as CSV, JSON lines or Parquet, streaming in batches;
or one command's terminal output as an asciicast v2 file.

The format is --format (or --csv, --jsonl, --parquet, --asciicast), else the
extension of -o (.csv, .jsonl, .parquet, .cast). -o - (the default) is stdout.
Files are written under a temporary name and renamed when complete.

\b
Examples:
  reclab export REC -t fileops --jsonl -w "errno != 0"
  reclab export REC -t frames --seq 2 -o frames.parquet
  reclab export REC -t logs -o logs.csv -w "timestamp > '2026-01-01 12:00'"
  reclab export REC --seq 1 -o build.cast    # then: asciinema play build.cast
"""


@app.command(help=EXPORT_HELP)
def export(
    recording: Annotated[Path, typer.Argument(help="A .cbor session recording.", metavar="REC")],
    table: Annotated[
        str,
        typer.Option(
            "--table",
            "-t",
            help="commands, frames, fileops, logs or session.",
            show_default=True,
            metavar="TABLE",
        ),
    ] = "commands",
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="csv, jsonl, parquet or asciicast (default: from -o's extension).",
            metavar="FORMAT",
        ),
    ] = None,
    csv: Annotated[
        bool, typer.Option("--csv", help="Write CSV (--format csv).", metavar="")
    ] = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Write JSON lines (--format jsonl).", metavar="")
    ] = False,
    parquet: Annotated[
        bool,
        typer.Option("--parquet", help="Write Parquet, to a file (--format parquet).", metavar=""),
    ] = False,
    asciicast: Annotated[
        bool,
        typer.Option(
            "--asciicast",
            help="Write command --seq's stdout and stderr as asciicast v2 (--format asciicast).",
            metavar="",
        ),
    ] = False,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="Output file; - is stdout.", metavar="FILE"),
    ] = "-",
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help="Keep rows matching a pandas query, e.g. \"type == 'data' and size > 100\".",
            metavar="EXPR",
        ),
    ] = None,
    seq: Annotated[
        int | None,
        typer.Option("--seq", "-n", help="Only command N (asciicast: the command).", metavar="N"),
    ] = None,
    batch_rows: Annotated[
        int,
        typer.Option("--batch-rows", help="Rows per batch (memory bound).", min=1, metavar="N"),
    ] = 32768,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show a progress bar on stderr (default: when stderr is a terminal).",
            metavar="",
        ),
    ] = None,
) -> None:
    flags = [
        name
        for name, on in (
            ("csv", csv),
            ("jsonl", jsonl),
            ("parquet", parquet),
            ("asciicast", asciicast),
        )
        if on
    ]
    if fmt is not None:
        if fmt not in FORMATS:
            fail(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
        flags.append(fmt)
    if len(set(flags)) > 1:
        fail(f"choose one format, not {' and '.join(dict.fromkeys(flags))}")
    path = None if output == "-" else Path(output)
    if flags:
        chosen = flags[0]
    elif path is not None and path.suffix.lower() in EXTENSIONS:
        chosen = EXTENSIONS[path.suffix.lower()]
    else:
        fail(
            "choose a format: --format csv|jsonl|parquet|asciicast (or --csv, --jsonl,"
            " --parquet, --asciicast), or an -o file ending in .csv, .jsonl, .parquet or .cast"
        )
    if path is not None and path.is_dir():
        fail(f"{path}: is a directory")
    if chosen == "asciicast":
        _export_asciicast(recording, seq, path, where is not None)
        return
    if table not in TABLE_NAMES:
        fail(f"unknown table {table!r}: choose from {', '.join(TABLE_NAMES)}")
    if chosen == "parquet" and path is None:
        fail("Parquet is not for a terminal or a pipe: give a file, -o FILE.parquet")

    from ..errors import ReclabError
    from ..export import export_table
    from ..terminal import TerminalText

    # On a terminal, recorded escapes are shown, not obeyed; to a pipe or file, byte-exact.
    screen = TerminalText(sys.stdout.buffer) if path is None and sys.stdout.isatty() else None
    with LazyProgress(progress) as bar:
        bar.stage("indexing")
        rec = open_or_fail(recording, progress=bar.update)
        with rec:
            bar.stage(f"exporting {table}")
            try:
                export_table(
                    rec,
                    table,
                    chosen,
                    path if path is not None else cast("IO[Any]", screen or sys.stdout),
                    where=where,
                    seq=seq,
                    batch_rows=batch_rows,
                    progress=bar.update,
                    warn=warn,
                )
                if screen is not None:
                    screen.finish()
            except ReclabError as exc:
                fail(str(exc))
            except BrokenPipeError:
                # The reader (e.g. `| head`) went away: stop quietly, like cat.
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                raise typer.Exit(1) from None
            except OSError as exc:
                fail(f"{path or 'stdout'}: {exc.strerror or exc}")


def _export_asciicast(recording: Path, seq: int | None, output: Path | None, where: bool) -> None:
    """``export --format asciicast``: command ``seq``'s output as asciicast v2."""
    if seq is None:
        fail("asciicast is one command's output: choose it with --seq N")
    if where:
        fail("--where selects table rows; it does not apply to asciicast")

    import io

    from agentproto import RemoteProtocolError

    from ..asciicast import write_asciicast
    from ..files import atomic_output
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
                with atomic_output(output, "w", encoding="utf-8", newline="\n") as fp:
                    write_asciicast(rec, seq, cast("TextIO", fp))
        except (UnknownCommandError, RecordingError) as exc:
            fail(str(exc))
        except RemoteProtocolError as exc:
            fail(f"{recording}: unreadable record: {exc}")
        except BrokenPipeError:
            raise typer.Exit(1) from None
        except OSError as exc:
            fail(f"{output or 'stdout'}: {exc.strerror or exc}")
