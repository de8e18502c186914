"""Write a recording's tables as CSV, JSON lines or Parquet, streaming in batches.

:func:`export_table` pulls the table in DataFrame batches (see
:func:`reclab.tables.iter_table`), filters each with an optional pandas
``query`` expression and appends it to the output: CSV and JSON lines by
appending text, Parquet through one ``pyarrow.parquet.ParquetWriter`` row
group per batch. Memory therefore stays bounded by the batch size, whatever
the size of the recording.

A ``where`` expression is applied batch by batch, so it must be a row
filter (``seq == 3 and type == 'data'``); aggregates such as
``size > size.mean()`` would be computed per batch. Times are UTC: compare
them with aware strings, e.g. ``timestamp > '2026-01-01T00:00Z'``.
"""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from .model import Recording
from .tables import DEFAULT_BATCH_ROWS, TABLES, iter_table

__all__ = ["FORMATS", "ExportError", "export_table"]

FORMATS = ("csv", "jsonl", "parquet")
ProgressCallback = Callable[[int, int], None]


class ExportError(Exception):
    """The export cannot be done as asked; the message is one line for the CLI."""


def _filter(df: Any, where: str | None) -> Any:
    """Rows of ``df`` for which the query expression ``where`` is true."""
    if where is None:
        return df
    import pandas as pd

    try:
        mask = df.eval(where)
    except Exception as exc:  # pandas raises many types for a bad expression
        detail = str(exc).strip().splitlines()
        message = detail[0] if detail else type(exc).__name__
        raise ExportError(f"bad --where expression {where!r}: {message}") from None
    if not isinstance(mask, pd.Series) or not (
        pd.api.types.is_bool_dtype(mask.dtype) or (len(mask) == 0 and mask.dtype == object)
    ):
        raise ExportError(f"bad --where expression {where!r}: it is not a true/false condition")
    if mask.dtype != bool:
        mask = mask.fillna(False).astype(bool)
    return df[mask]


def export_table(
    rec: Recording,
    table: str,
    fmt: str,
    out: str | os.PathLike[str] | IO[Any],
    *,
    where: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: ProgressCallback | None = None,
) -> int:
    """Write table ``table`` of ``rec`` to ``out`` in format ``fmt``; return the rows written.

    ``table`` is one of :data:`reclab.tables.TABLES`, ``fmt`` one of
    :data:`FORMATS`. ``out`` is a path, or an open stream: text for CSV
    and JSON lines, binary for Parquet. ``where`` is a pandas query
    expression applied to each batch; a bad one raises :class:`ExportError`
    before anything is written. ``progress(bytes_done, total)`` follows the
    recording's bytes.
    """
    if table not in TABLES:
        raise ExportError(f"unknown table {table!r}: choose from {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
    if batch_rows < 1:
        raise ExportError("the batch size must be at least one row")
    batches = iter_table(rec, table, batch_rows=batch_rows, progress=progress)
    first = _filter(next(batches), where)  # a bad expression fails before any output
    rows = 0
    with ExitStack() as stack:
        if fmt == "parquet":
            import pandas as pd
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.Schema.from_pandas(first, preserve_index=False)
            sink = _open(out, "wb", stack)
            # Dictionary-encode the categoricals only: on near-unique columns
            # (offsets, times) it costs time and makes the file larger.
            categorical = [
                name
                for name, dtype in first.dtypes.items()
                if isinstance(dtype, pd.CategoricalDtype)
            ]
            writer = stack.enter_context(
                pq.ParquetWriter(sink, schema, use_dictionary=categorical or False)
            )
            # Encoding and compressing a row group releases the GIL: a writer
            # thread does it while the next batch is built. At most one
            # batch waits for it, so memory stays bounded.
            tables: queue.Queue[Any] = queue.Queue(maxsize=1)
            failed: list[BaseException] = []

            def write() -> None:
                while (table := tables.get()) is not None:
                    if not failed:
                        try:
                            writer.write_table(table)
                        except BaseException as exc:  # handed to the caller below
                            failed.append(exc)

            thread = threading.Thread(target=write, name="reclab-parquet", daemon=True)
            thread.start()
            try:
                df, first = first, None  # hold no batch longer than needed
                while not failed:
                    arrow = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
                    rows += len(df)
                    df = None  # let go of the batch before the next is built
                    tables.put(arrow)
                    del arrow
                    df = next(batches, None)
                    if df is None:
                        break
                    df = _filter(df, where)
            finally:
                tables.put(None)
                thread.join()
            if failed:
                raise failed[0]
            return rows
        text = _open(out, "w", stack)
        df, first = first, None  # hold no batch longer than needed
        header = True
        while True:
            if fmt == "csv":
                df.to_csv(text, header=header, index=False, lineterminator="\n")
            elif len(df):
                data = _iso_times(df).to_json(orient="records", lines=True, date_unit="ns")
                text.write(data if data.endswith("\n") else data + "\n")
            header = False
            rows += len(df)
            df = next(batches, None)
            if df is None:
                break
            df = _filter(df, where)
        text.flush()
    return rows


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
                return stack.enter_context(open(path, "w", encoding="utf-8", newline=""))
            return stack.enter_context(open(path, "wb"))
        except OSError as exc:
            raise ExportError(f"{path}: {exc.strerror or exc}") from None
    if mode == "wb" and isinstance(out, io.TextIOBase):
        buffer = getattr(out, "buffer", None)
        if buffer is None:
            raise ExportError("Parquet needs a binary output")
        return buffer
    return out
