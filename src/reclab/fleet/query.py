"""SQL over a dataset with embedded DuckDB, and writing a result as a table, CSV, JSON or Parquet.

:func:`connect` opens an in-memory DuckDB database whose views, named
after the tables (session, commands, frames, fileops, logs), read the
dataset's Parquet parts with the ``day`` partition as a DATE column.
:func:`recordings_source` lets a query run straight on ``.cbor`` files by
ingesting them into a temporary dataset first. Results stream from DuckDB
as Arrow record batches, so writing a large result holds one batch at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from ..files import atomic_output
from .dataset import TABLES, FleetError, is_dataset

__all__ = [
    "INSTALL_HINT",
    "OUTPUT_FORMATS",
    "arrow_dataset",
    "connect",
    "query",
    "recordings_source",
    "write_result",
]

INSTALL_HINT = "SQL over recordings needs DuckDB: pip install 'reclab[fleet]'"
OUTPUT_FORMATS = ("csv", "json", "parquet")
_BATCH_ROWS = 65536


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise FleetError(INSTALL_HINT) from None
    return duckdb


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(dataset: str | os.PathLike[str]) -> Any:
    """A DuckDB connection (in memory) with a view per table of ``dataset``.

    Each view reads ``DATASET/<table>/day=*/part-*.parquet`` with hive
    partitioning, so ``day`` is a DATE column to filter on (DuckDB then
    skips the other days' files); times are shown in UTC. Raises
    :class:`FleetError` if ``dataset`` is not a dataset.
    """
    duckdb = _duckdb()
    root = Path(dataset)
    if not is_dataset(root):
        hint = " (ingest recordings first: reclab ingest)" if root.is_dir() else ""
        raise FleetError(f"{root}: not a reclab dataset{hint}")
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    for table in TABLES:
        if not any((root / table).glob("day=*/*.parquet")):
            continue  # nothing ingested yet: no view, so a query says which table is missing
        pattern = _sql_string(str(root.resolve() / table / "day=*" / "*.parquet"))
        # Every part of a table has the same schema (the table functions' own), so
        # DuckDB binds from one file instead of reading every file's (union_by_name).
        con.execute(
            f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet({pattern}, '
            "hive_partitioning = true, hive_types = {'day': DATE})"
        )
    return con


def query(
    dataset: str | os.PathLike[str],
    sql: str,
    *,
    result: Literal["arrow", "pandas"] = "arrow",
) -> Any:
    """Run ``sql`` over ``dataset`` (see :func:`connect`); return a ``pyarrow.Table`` or, with
    ``result="pandas"``, a DataFrame. A bad query raises :class:`FleetError` (one line)."""
    con = connect(dataset)
    try:
        try:
            relation = con.sql(sql)
        except _duckdb().Error as exc:
            raise FleetError(_one_line(exc)) from None
        if relation is None:
            raise FleetError("the SQL returns no result (use a SELECT)")
        return relation.df() if result == "pandas" else relation.to_arrow_table()
    finally:
        con.close()


def arrow_dataset(dataset: str | os.PathLike[str], table: str) -> Any:
    """Table ``table`` of ``dataset`` as a ``pyarrow.dataset.Dataset`` (``day`` a date column)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if table not in TABLES:
        raise FleetError(f"unknown table {table!r}: choose from {', '.join(TABLES)}")
    partitioning = ds.partitioning(pa.schema([("day", pa.date32())]), flavor="hive")
    return ds.dataset(Path(dataset) / table, format="parquet", partitioning=partitioning)


def _one_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def recordings_source(
    source: str | os.PathLike[str], *, workers: int | None = None
) -> Iterator[Path]:
    """The dataset to query for ``source``: itself if it is a dataset, else a temporary one.

    A directory of ``.cbor`` files, a recording or a glob is ingested into a
    temporary dataset, removed when the block ends: for small sets of
    recordings, one command with no dataset to keep.
    """
    path = Path(source)
    if is_dataset(path):
        yield path
        return
    from .work import ingest

    with tempfile.TemporaryDirectory(prefix="reclab-query-") as tmp:
        report = ingest([source], Path(tmp) / "dataset", workers=workers)
        if not report.ingested and not report.skipped:
            failures = "; ".join(r.error for r in report.failed[:3])
            raise FleetError(f"{source}: no readable recording ({failures or 'none found'})")
        yield Path(tmp) / "dataset"


def execute(con: Any, sql: str) -> Any:
    """Run ``sql`` on ``con``; return a ``pyarrow.RecordBatchReader`` over its result."""
    duckdb = _duckdb()
    try:
        relation = con.sql(sql)
        if relation is None:
            raise FleetError("the SQL returns no result (use a SELECT)")
        return relation.to_arrow_reader(_BATCH_ROWS)
    except duckdb.Error as exc:
        raise FleetError(_one_line(exc)) from None


def _json_value(value: Any) -> Any:
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def write_result(reader: Any, fmt: str, out: str | os.PathLike[str] | IO[Any]) -> int:
    """Write the batches of ``reader`` to ``out`` as ``fmt`` (csv, json, parquet); return rows.

    CSV has a header line; JSON is one array of row objects (times in ISO
    8601); Parquet keeps the types. ``out`` is a path or a binary stream.
    """
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from ..terminal import json_safe

    if fmt not in OUTPUT_FORMATS:
        raise FleetError(f"unknown format {fmt!r}: choose from {', '.join(OUTPUT_FORMATS)}")
    rows = 0
    with contextlib.ExitStack() as stack:
        sink: Any = out
        if isinstance(out, (str, os.PathLike)):
            # renamed into place when complete: an interrupted query leaves no partial file
            sink = stack.enter_context(atomic_output(out, "wb"))
        if fmt == "parquet":
            writer = stack.enter_context(pq.ParquetWriter(sink, reader.schema))
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        elif fmt == "csv":
            writer = stack.enter_context(pcsv.CSVWriter(sink, reader.schema))
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        else:
            sink.write(b"[")
            for batch in reader:
                for row in batch.to_pylist():
                    # C1 and bidi controls escaped: recorded text must not act on a terminal
                    text = json_safe(json.dumps(row, default=_json_value, ensure_ascii=False))
                    sink.write((",\n" if rows else "\n").encode() + text.encode())
                    rows += 1
            sink.write(b"\n]\n" if rows else b"]\n")
        sink.flush()
    return rows
