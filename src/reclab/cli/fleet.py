"""``reclab ingest`` and ``reclab query``: many recordings as one Parquet dataset, and SQL over it.

Thin shells over :mod:`reclab.fleet`; DuckDB and Dask load only here, when used.
"""

import os
import sys
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer

from .app import app, examples, fail

_TABLE_ROWS = 1000  # rows shown in the terminal table; the rest are counted


class _FilesProgress:
    """A rich progress bar over files and bytes on stderr, shown only on a terminal."""

    def __init__(self, enabled: bool | None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._files: Any = None
        self._bytes: Any = None

    def __call__(self, files_done: int, files_total: int, bytes_done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description:>10}"),
                BarColumn(),
                MofNCompleteColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True, force_terminal=True),
                transient=True,
            )
            self._progress.start()
            self._files = self._progress.add_task("files", total=files_total)
            self._bytes = self._progress.add_task("bytes", total=total)
        self._progress.update(self._files, completed=files_done, total=files_total)
        self._progress.update(self._bytes, completed=bytes_done, total=total)

    def log(self, line: str) -> None:
        """Print a line on stderr, above the bar while it is shown."""
        from ..timeline import safe_text  # paths may hold controls: they must not act

        if self._progress is None:
            print(safe_text(line), file=sys.stderr)
        else:
            self._progress.console.print(
                safe_text(line), markup=False, highlight=False, soft_wrap=True
            )

    def __enter__(self) -> "_FilesProgress":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


@app.command(
    epilog=examples(
        "reclab ingest /recordings/ 'ci/**/*.cbor' --into fleet/",
        "reclab ingest /recordings/ --into /shared/fleet/ --dask tcp://scheduler:8786",
    )
)
def ingest(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Recordings: .cbor files, directories (searched) or globs.", metavar="SOURCE..."
        ),
    ],
    into: Annotated[
        Path,
        typer.Option("--into", help="The dataset directory (created if missing).", metavar="DIR"),
    ],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-j",
            help="Local worker processes (default: one per core).",
            min=1,
            metavar="N",
            show_default=False,
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="Run on a Dask cluster: its scheduler address, e.g. tcp://scheduler:8786.",
            metavar="ADDRESS",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="One line per recording written.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Show progress on stderr (default: when stderr is a terminal).",
        ),
    ] = None,
) -> None:
    """Ingest recordings into a Parquet dataset, incrementally and in parallel.

    The dataset is hive-partitioned: one directory per table, partitioned by day.
    A recording already ingested is skipped; one still growing or cut is
    ingested up to its last complete record and picked up again when it has
    grown. An unreadable recording is reported and skipped; the exit status is
    1 if any was.
    """
    from ..fleet import FleetError
    from ..fleet import ingest as run_ingest
    from ..fleet.work import describe

    with _FilesProgress(progress) as bar:

        def report(result: Any) -> None:
            if result.status == "failed":
                bar.log(f"reclab: warning: skipped: {result.error}")
            elif verbose and result.written:
                bar.log(describe(result))

        try:
            outcome = run_ingest(
                sources, into, workers=workers, client=dask, progress=bar, on_result=report
            )
        except FleetError as exc:
            fail(str(exc))
    partial = len(outcome.partial)
    print(
        f"{len(outcome.ingested)} ingested"
        + (f" ({partial} partial: cut or still growing)" if partial else "")
        + f", {len(outcome.skipped)} unchanged, {len(outcome.failed)} unreadable"
        + f" -> {outcome.dataset}",
        file=sys.stderr,
    )
    if outcome.failed:
        raise typer.Exit(1)


@app.command(
    epilog=examples(
        'reclab query fleet/ "SELECT exit_code, count(*) FROM commands GROUP BY 1"',
        'reclab query fleet/ "SELECT * FROM fileops WHERE errno <> 0" --csv > failed-ops.csv',
        'reclab query sample-recordings/ "SELECT argv, exit_code FROM commands" --json',
    )
)
def query(
    dataset: Annotated[
        str,
        typer.Argument(
            help="A dataset made by reclab ingest, or recordings (a directory of .cbor, a glob).",
            metavar="DATASET",
        ),
    ],
    sql: Annotated[
        str,
        typer.Argument(
            help="SQL over the views session, commands, frames, fileops, logs.", metavar="SQL"
        ),
    ],
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Write a JSON array of rows.")] = False,
    parquet: Annotated[bool, typer.Option("--parquet", help="Write Parquet (needs -o).")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output file, its format from --csv/--json/--parquet or its extension;"
            " - is stdout (the default).",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run SQL over a dataset with DuckDB: a table on the terminal, or CSV, JSON or Parquet.

    The views are named after the tables; every one has the columns recording
    (content hash) and recording_path to join on, and day (the session's UTC
    day, a partition: filtering on it skips files). Given recordings instead of
    a dataset, they are ingested into a temporary one first.
    """
    from ..fleet import FleetError
    from ..fleet.query import connect, execute, recordings_source, write_result

    formats = [n for n, on in (("csv", csv), ("json", as_json), ("parquet", parquet)) if on]
    if len(formats) > 1:
        fail("choose at most one of --csv, --json or --parquet")
    fmt = formats[0] if formats else None
    if output is not None and str(output) == "-":
        output = None
    if output is not None and fmt is None:
        fmt = {".csv": "csv", ".json": "json", ".parquet": "parquet"}.get(output.suffix.lower())
        if fmt is None:
            fail("-o needs a format: --csv, --json or --parquet, or a .csv, .json or .parquet file")
    if fmt == "parquet" and output is None:
        fail("--parquet needs an output file: -o FILE")
    if output is not None and output.is_dir():
        fail(f"{output}: is a directory")
    try:
        with recordings_source(dataset) as root:
            con = connect(root)
            try:
                reader = execute(con, sql)
                if fmt is None:
                    _print_table(reader)
                else:
                    target: Any = output if output is not None else sys.stdout.buffer
                    write_result(reader, fmt, target)
            finally:
                con.close()
    except FleetError as exc:
        fail(str(exc))
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, like cat.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(1) from None
    except OSError as exc:
        fail(f"{output or 'stdout'}: {exc.strerror or exc}")


def _print_table(reader: Any) -> None:
    """The result as a rich table (at most _TABLE_ROWS rows; the rest are counted)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..timeline import safe_text

    table = Table(*[field.name for field in reader.schema], show_edge=False, highlight=False)
    shown = more = 0
    for batch in reader:
        if shown >= _TABLE_ROWS:
            more += batch.num_rows
            continue
        for row in batch.to_pylist():
            if shown >= _TABLE_ROWS:
                more += 1
                continue
            # Recorded text (argv, messages) is escaped: it must not act on the terminal.
            table.add_row(*(Text(safe_text("" if v is None else str(v))) for v in row.values()))
            shown += 1
    console = Console(highlight=False, markup=False, emoji=False)
    console.print(table)
    if more:
        console.print(f"({more} more rows: use --csv, --json or --parquet -o for all)")
