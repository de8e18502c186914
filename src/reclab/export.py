"""Write a recording's tables as CSV, JSON lines or Parquet, streaming in batches.

:func:`export_table` pulls the table in DataFrame batches (see
:func:`reclab.tables.iter_table`), filters each with an optional pandas
``query`` expression and appends it to the output: CSV and JSON lines by
appending text, Parquet through one ``pyarrow.parquet.ParquetWriter`` row
group per batch, written by a second thread while the next batch is built.
The frames table, unfiltered, goes to Parquet as Arrow batches built
straight from NumPy (:func:`reclab.tables.frames_arrow_batches`). Memory
therefore stays bounded by the batch size, whatever the size of the
recording: for a 1 GiB recording, the whole command peaks near 230 MB,
half of it pandas and pyarrow themselves (``benchmarks/export.py``).

A ``where`` expression is applied batch by batch, so it must be a row
filter (``seq == 3 and type == 'data'``); aggregates such as
``size > size.mean()`` would be computed per batch. Times are UTC (a
date/time without a zone is read as UTC): ``timestamp > '2026-01-01T00:00Z'``.
Files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import io
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from .columns import Column, commands_columns, session_columns, write_csv
from .errors import ExportError
from .files import atomic_output
from .model import Recording
from .where import Where

__all__ = ["FORMATS", "ExportError", "export_table"]

FORMATS = ("csv", "jsonl", "parquet")
ProgressCallback = Callable[[int, int], None]
# tables of one row per session or command, built from the index as plain columns
_PLAIN_TABLES: dict[str, Callable[[Recording], list[Column]]] = {
    "commands": commands_columns,
    "session": session_columns,
}


def _rows(
    rec: Recording,
    table: str,
    where: Where | None,
    seq: int | None,
    batch_rows: int,
    progress: ProgressCallback | None,
) -> Iterator[Any]:
    """Table ``table`` in DataFrame batches, only command ``seq``'s rows and those ``where`` keeps.

    The first batch is built (and ``where`` checked) when the first item is asked for.
    """
    from .tables import iter_frames_batches, iter_table

    if table == "frames" and seq is not None:
        batches = iter_frames_batches(rec, seq, batch_rows=batch_rows, progress=progress)
    else:
        batches = iter_table(rec, table, batch_rows=batch_rows, progress=progress)
    for df in batches:
        if seq is not None and table != "frames":
            df = df[df["seq"] == seq].reset_index(drop=True)
        yield where.filter(df) if where is not None else df


def _check_seq(rec: Recording, table: str, seq: int | None) -> None:
    if seq is None:
        return
    if table == "session":
        raise ExportError("--seq does not apply to the session table (it has no seq column)")
    rec.command(seq)  # an unknown seq fails (listing the known ones) before any output


def export_table(
    rec: Recording,
    table: str,
    fmt: str,
    out: str | os.PathLike[str] | IO[Any],
    *,
    where: str | None = None,
    seq: int | None = None,
    batch_rows: int | None = None,
    progress: ProgressCallback | None = None,
    warn: Callable[[str], None] | None = None,
) -> int:
    """Write table ``table`` of ``rec`` to ``out`` in format ``fmt``; return the rows written.

    ``table`` is one of :data:`reclab.tables.TABLES`, ``fmt`` one of
    :data:`FORMATS`. ``out`` is a path, or an open stream: text for CSV
    and JSON lines, binary for Parquet. ``where`` is a pandas query
    expression applied to each batch (see :class:`reclab.where.Where`); a bad
    one raises :class:`~reclab.where.WhereError` before anything is written,
    and ``warn`` gets a line for each comparison in it that can match
    nothing. ``seq`` keeps command ``seq``'s rows. A path is written under
    a temporary name and renamed when complete. ``batch_rows`` (default
    :data:`reclab.tables.DEFAULT_BATCH_ROWS`) bounds the memory; each batch
    is a Parquet row group. ``progress(bytes_done, total)`` follows the
    recording's bytes.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    if batch_rows is not None and batch_rows < 1:
        raise ExportError("the batch size must be at least one row")
    if fmt == "csv" and where is None and seq is None and table in _PLAIN_TABLES:
        # a handful of rows: written without pandas, whose import would be most of the time
        with ExitStack() as stack:
            text = _open(out, "w", stack)
            rows = write_csv(_PLAIN_TABLES[table](rec), text)
            text.flush()
        return rows
    # pandas and pyarrow (~100 MB) load here, not when the CLI imports this
    # module: after indexing, whose helper process has then exited.
    _load_arrow()
    from .tables import DEFAULT_BATCH_ROWS, TABLES

    if table not in TABLES:
        raise ExportError(f"unknown table {table!r}: choose from {', '.join(TABLES)}")
    _check_seq(rec, table, seq)
    if batch_rows is None:
        batch_rows = DEFAULT_BATCH_ROWS
    check = Where(where, table) if where is not None else None
    with ExitStack() as stack:
        if fmt == "parquet":
            stack.enter_context(_system_arrow_pool())
            batches = _arrow_batches(rec, table, check, seq, batch_rows, progress)
        else:
            batches = _rows(rec, table, check, seq, batch_rows, progress)
        first = next(batches)  # a bad expression fails before any output
        for line in check.warnings if check is not None else ():
            if warn is not None:
                warn(line)
        if fmt == "parquet":
            return _export_parquet(first, batches, _open(out, "wb", stack), stack)
        rows = 0
        text = _open(out, "w", stack)
        df, first = first, None  # hold no batch longer than needed
        header = True
        while df is not None:
            if fmt == "csv":
                _csv_text(df).to_csv(text, header=header, index=False, lineterminator="\n")
            elif len(df):
                data = _iso_times(df).to_json(orient="records", lines=True, date_unit="ns")
                # pandas escapes "/" (legal JSON that no one else writes); in its output a
                # backslash right before "/" is always that escape, never an escaped backslash
                data = data.replace("\\/", "/")
                text.write(data if data.endswith("\n") else data + "\n")
            header = False
            rows += len(df)
            df = next(batches, None)
        text.flush()
    return rows


def _load_arrow() -> None:
    """Import pyarrow with the system allocator, if this is its first import and no one chose.

    Arrow's default allocator (mimalloc) keeps pages it has freed, per
    thread, and Arrow's C++ code (the Parquet writer) allocates from it
    whatever pool Python selects: ~10-20 MB more peak memory in an export.
    The allocator is fixed when pyarrow loads, from ``ARROW_DEFAULT_MEMORY_POOL``;
    a value set by the user, or a pyarrow already loaded, is left alone.
    """
    if "pyarrow" in sys.modules or "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    try:
        import pyarrow

        pyarrow.default_memory_pool()  # chosen on first use: use it now
    finally:
        os.environ.pop("ARROW_DEFAULT_MEMORY_POOL", None)


@contextmanager
def _system_arrow_pool() -> Iterator[None]:
    """Make the system allocator Arrow's default pool for Python calls while the block runs.

    For when pyarrow was loaded with mimalloc before the export (see
    :func:`_load_arrow`): the arrays built from Python then come from the
    system allocator at least. Every buffer remembers the pool it came
    from, so switching the default is safe for arrays made before or after.
    """
    import pyarrow as pa

    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _arrow_batches(
    rec: Recording,
    table: str,
    where: Where | None,
    seq: int | None,
    batch_rows: int,
    progress: ProgressCallback | None,
) -> Iterator[Any]:
    """Table ``table`` as ``pyarrow.Table`` batches, all of the first one's schema.

    The frames table, unfiltered, is built as Arrow arrays directly (no
    DataFrame per batch: faster and smaller); others go through pandas.
    """
    from .tables import arrow_batches, frames_arrow_batches

    if table == "frames" and where is None:
        yield from frames_arrow_batches(rec, seq, batch_rows=batch_rows, progress=progress)
        return
    yield from arrow_batches(_rows(rec, table, where, seq, batch_rows, progress))


def _export_parquet(first: Any, batches: Iterator[Any], sink: Any, stack: ExitStack) -> int:
    """Write ``first`` and the rest of ``batches`` as Parquet, one row group each; return rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = first.schema
    # Dictionary-encode the categoricals only: on near-unique columns
    # (offsets, times) it costs time and makes the file larger.
    categorical = [field.name for field in schema if pa.types.is_dictionary(field.type)]
    writer = stack.enter_context(
        pq.ParquetWriter(sink, schema, use_dictionary=categorical or False)
    )
    # Encoding and compressing a row group releases the GIL: a writer thread
    # does it while the next batch is built. At most one batch waits for it
    # and one is being written, so memory stays bounded.
    pending: queue.Queue[Any] = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def write() -> None:
        while (arrow := pending.get()) is not None:
            if not failed:
                try:
                    writer.write_table(arrow)
                except BaseException as exc:  # handed to the caller below
                    failed.append(exc)
            del arrow  # free the batch now, not when the next one arrives

    thread = threading.Thread(target=write, name="reclab-parquet", daemon=True)
    thread.start()
    rows = 0
    try:
        arrow = first
        del first
        while arrow is not None and not failed:
            rows += arrow.num_rows
            pending.put(arrow)
            arrow = None  # hold no batch longer than needed
            arrow = next(batches, None)
    finally:
        pending.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return rows


def _csv_text(df: Any) -> Any:
    """List columns (argv, signals) as JSON arrays: CSV has no lists, and JSON reads back."""
    import json

    import pandas as pd

    lists = [
        name
        for name in df.columns
        if isinstance(df[name].dtype, pd.ArrowDtype) and "list" in str(df[name].dtype)
    ]
    if not lists:
        return df
    out = df.copy()
    for name in lists:
        out[name] = [
            None if v is None or v is pd.NA else json.dumps(list(v), ensure_ascii=False)
            for v in df[name].tolist()
        ]
    return out


def _iso_times(df: Any) -> Any:
    """Times as ISO 8601 strings with nanoseconds and ``Z``.

    pandas' own ``to_json`` drops the nanoseconds of timezone-aware columns.
    """
    import numpy as np
    import pandas as pd

    converted = None
    for name in df.columns:
        col = df[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            naive = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
            text = np.char.add(np.datetime_as_string(naive, unit="ns"), "Z").astype(object)
            text[col.isna().to_numpy()] = None
            if converted is None:
                converted = df.copy()
            converted[name] = text
    return df if converted is None else converted


def _open(out: str | os.PathLike[str] | IO[Any], mode: str, stack: ExitStack) -> Any:
    if isinstance(out, (str, os.PathLike)):
        path = Path(out)
        if path.is_dir():
            raise ExportError(f"{path}: is a directory")
        try:
            if mode == "w":
                return stack.enter_context(atomic_output(path, "w", encoding="utf-8", newline=""))
            return stack.enter_context(atomic_output(path, "wb"))
        except OSError as exc:
            raise ExportError(f"{path}: {exc.strerror or exc}") from None
    if mode == "wb" and isinstance(out, io.TextIOBase):
        buffer = getattr(out, "buffer", None)
        if buffer is None:
            raise ExportError("Parquet needs a binary output")
        return buffer
    return out
