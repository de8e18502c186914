"""Many recordings: a hive-partitioned Parquet dataset, SQL over it, and Dask past one machine.

``ingest(sources, dataset)`` turns recordings into one dataset (see
:mod:`reclab.fleet.dataset` for the layout); ``connect(dataset)`` returns a
DuckDB connection with a view per table; ``query(dataset, sql)`` returns
the result as Arrow or pandas; ``arrow_dataset(dataset, table)`` opens a
table with pyarrow's dataset API. DuckDB and Dask load only when used.
"""

from __future__ import annotations

from .dataset import TABLES, FleetError
from .query import arrow_dataset, connect, query
from .work import FileResult, IngestReport, ingest

__all__ = [
    "TABLES",
    "FileResult",
    "FleetError",
    "IngestReport",
    "arrow_dataset",
    "connect",
    "ingest",
    "query",
]
