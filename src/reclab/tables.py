"""pandas tables of a recording: session, commands, frames, file ops, logs, streams.

Every table is built from a :class:`~reclab.model.Recording` (indexed or
not yet fully indexed: what is indexed is what you get). Conventions:

- times are timezone-aware UTC datetimes (``datetime64[ns, UTC]``);
  durations and latencies are float seconds;
- small closed sets (frame type, direction, file-op name, log level) are
  pandas categoricals;
- integers that can be missing are nullable ``Int64``; text is ``str``;
  lists (argv, signals) are Arrow lists, null where the recording has null;
- the same thing has the same name in every table: ``seq`` the command,
  ``timestamp`` the time of the row's record (frame, file-op request, log),
  ``index`` its record index; other times end in ``_time``, other record
  indexes in ``_index``.

The large tables (frames, file ops, logs) also come as iterators of
DataFrame batches (``iter_*_batches``) so an export of a huge recording
never holds the whole table in memory; the ``*_table`` functions
concatenate those batches.
"""

from __future__ import annotations

import errno as errno_module
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from agentproto import Direction, FileOp, FrameType
from agentproto.types import FILE_OP_KEYS as FOP
from agentproto.types import FILE_RESP_KEYS as FRP
from agentproto.types import FRAME_KEYS as F
from agentproto.types import LOG_KEYS as LG
from agentproto.types import RECORDED_FRAME_KEYS as RF

from .columns import Column, commands_columns, session_columns
from .model import Recording
from .text import LEVELS, level_name, level_rank

__all__ = [
    "DIRECTIONS",
    "FILE_OPS",
    "FRAME_TYPES",
    "TABLES",
    "TABLE_FUNCTIONS",
    "arrow_batches",
    "commands_table",
    "fileops_table",
    "frames_arrow_batches",
    "frames_table",
    "iter_fileops_batches",
    "iter_frames_batches",
    "iter_logs_batches",
    "iter_table",
    "level_name",
    "logs_table",
    "session_table",
    "stream_table",
    "streams",
]

ProgressCallback = Callable[[int, int], None]
DEFAULT_BATCH_ROWS = 32768

FRAME_TYPES = [t.name.lower() for t in FrameType]  # category codes are value - 1
DIRECTIONS = [d.name.lower() for d in Direction]
FILE_OPS = [op.name.lower() for op in FileOp]
STREAM_NAMES = {0: "stdin", 1: "stdout", 2: "stderr"}

_FILE_OP = int(FrameType.FILE_OP)
_FILE_RESP = int(FrameType.FILE_RESP)
_LOG = int(FrameType.LOG)
_DATA, _EOF, _SIGNAL = int(FrameType.DATA), int(FrameType.EOF), int(FrameType.SIGNAL)
_EXIT, _ERROR = int(FrameType.EXIT), int(FrameType.ERROR)
# File ops whose offset/size/n fields are meaningful even when omitted (zero).
_OFFSET_OPS = {int(FileOp.READ_AT), int(FileOp.WRITE_AT)}
_SIZE_OPS = {int(FileOp.READ_AT), int(FileOp.TRUNCATE), int(FileOp.FTRUNCATE)}


# --- helpers -------------------------------------------------------------------------


def _times(values: Iterable[int | None]) -> pd.Series:
    """Unix nanoseconds (None for missing) as ``datetime64[ns, UTC]``."""
    arr = np.array([v if v is not None else np.iinfo(np.int64).min for v in values], "int64")
    return pd.Series(arr.view("datetime64[ns]")).dt.tz_localize("UTC")


def _times_np(arr: np.ndarray[Any, Any]) -> pd.Series:
    return pd.Series(arr.astype("int64").view("datetime64[ns]")).dt.tz_localize("UTC")


def _ints(values: list[int | None]) -> pd.arrays.IntegerArray:
    return pd.array(values, dtype="Int64")


_STR = pd.Series([""], dtype="str").dtype  # pandas' default text dtype


def _strs(values: Any) -> pd.Series:
    """Text (None for missing) as pandas' ``str`` dtype.

    Through a pyarrow array when that is how pandas stores text: five
    times faster than letting pandas check every value.
    """
    if getattr(_STR, "storage", None) == "pyarrow":
        import pyarrow as pa

        try:
            arrow = pa.array(values, type=pa.large_string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # not all text (a hostile frame): let pandas convert each value
        else:
            return pd.Series(pd.array(arrow, dtype=_STR))
    return pd.Series(values, dtype="str")


def _list_dtype(item: str) -> Any:
    import pyarrow as pa

    return pd.ArrowDtype(pa.list_(pa.large_string() if item == "str" else pa.int64()))


_TEXT_LIST = "str"
_INT_LIST = "int"


def _lists(values: list[Any], item: str) -> pd.Series:
    """Lists (None for missing) as an Arrow list column: lists in JSON and Parquet, not text."""
    return pd.Series(pd.array(values, dtype=_list_dtype(item)))


def _category(codes: Iterable[int], categories: list[str]) -> Any:
    """A categorical from integer codes (-1 for missing): far faster than from values."""
    return pd.Categorical.from_codes(
        np.fromiter(codes, np.int16), categories=pd.Index(categories, dtype=object)
    )


def _type_code(t: Any) -> int:
    return t - 1 if t.__class__ is int and 1 <= t <= len(FRAME_TYPES) else -1


def _dir_code(d: Any) -> int:
    return d - 1 if d == Direction.SEND or d == Direction.RECV else -1


def _level_category(values: list[str]) -> Any:
    # Order categories by severity so sorting and comparisons mean something.
    cats = sorted(set(values) | set(LEVELS), key=level_rank)
    return pd.Categorical(values, categories=cats, ordered=True)


def _command_starts(rec: Recording) -> dict[int, int]:
    """Per command, the time that "since start" counts from (start record, else first frame)."""
    starts = {}
    for seq, cmd in list(rec.commands.items()):
        t = cmd.start_time if cmd.start_time is not None else cmd.first_frame_time
        if t is not None:
            starts[seq] = t
    return starts


def _kind_indexes(rec: Recording, wanted: Iterable[int]) -> Iterator[int]:
    """Indexes of records whose kind (frame type or record code) is in ``wanted``."""
    # A copy: a view would stop a concurrent index()/refresh() from growing the array.
    kinds = np.frombuffer(rec.kinds[: rec.record_count], dtype=np.uint8)
    mask = np.isin(kinds, np.fromiter(wanted, np.uint8))
    for chunk in np.array_split(np.flatnonzero(mask), max(1, int(mask.size // 1_000_000))):
        yield from chunk.tolist()


# --- session and commands ------------------------------------------------------------


def _frame_of(columns: list[Column]) -> pd.DataFrame:
    """A DataFrame of plain columns (:mod:`reclab.columns`), in this module's dtypes."""
    convert: dict[str, Callable[[list[Any]], Any]] = {
        "int": lambda v: pd.Series(v, dtype="int64"),
        "Int64": _ints,
        "float": lambda v: pd.Series(v, dtype="float64"),
        "bool": lambda v: pd.Series(v, dtype=bool),
        "str": _strs,
        "time": _times,
        "str_list": lambda v: _lists(v, _TEXT_LIST),
        "int_list": lambda v: _lists(v, _INT_LIST),
    }
    return pd.DataFrame({name: convert[kind](values) for name, kind, values in columns})


def session_table(rec: Recording) -> pd.DataFrame:
    """One row describing the session: header fields, footer fields, truncation."""
    return _frame_of(session_columns(rec))


def commands_table(rec: Recording) -> pd.DataFrame:
    """One row per command, in sequence order, from the index alone (no frame decoding).

    Columns: seq, path, argv (a list; null when the recording says null, as
    Go writes a nil slice), command_line (argv shell-quoted, for queries such
    as ``command_line.str.contains('make')``), cwd, env_count, start_time,
    end_time, duration (s), exit_code, exit_frame_code, frames, stdin_bytes,
    stdout_bytes, stderr_bytes, extra_fd_bytes, signals (a list of signal
    numbers), error_count, first_error, logs, file_ops, complete,
    first_frame_time, last_frame_time.
    """
    return _frame_of(commands_columns(rec))


# --- frames ------------------------------------------------------------------------------

FRAME_COLUMNS = [
    "index",
    "offset",
    "seq",
    "timestamp",
    "since_start",
    "direction",
    "type",
    "stream",
    "size",
    "signal",
    "code",
    "error",
    "log_level",
    "log_message",
    "fileop_id",
    "fileop_op",
    "errno",
]


class _FrameColumns:
    """Rows of one batch of the frames table (frames decoded with cbor2), as tuples."""

    # the table's columns as rows carry them: raw timestamp, since_start computed later
    _NAMES = tuple("ts" if c == "timestamp" else c for c in FRAME_COLUMNS if c != "since_start")

    def __init__(self) -> None:
        # One tuple per row: a single append per frame is what keeps this fast.
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, index: int, offset: int, rf: dict[str, Any]) -> None:
        frame = rf.get(RF.frame)
        if frame.__class__ is not dict:
            frame = {}
        assert isinstance(frame, dict)
        t = frame.get(F.type, 0)
        stream = signal = code = fop_id = errno = None
        error = level = message = None
        op = -1
        data = frame.get(F.data)
        size = len(data) if data.__class__ is bytes else 0
        if t in (_DATA, _EOF):
            stream = frame.get(F.stream, 0)
        elif t == _SIGNAL:
            signal = frame.get(F.signal, 0)
        elif t == _EXIT:
            code = frame.get(F.code, 0)
        elif t == _ERROR:
            error = frame.get(F.error, "")
        elif t == _LOG:
            log = frame.get(F.log)
            if log.__class__ is dict:
                lvl = log.get(LG.level, 0)
                level = level_name(lvl) if lvl.__class__ is int else None
                message = log.get(LG.msg, "")
        elif t in (_FILE_OP, _FILE_RESP):
            body = frame.get(F.file_op if t == _FILE_OP else F.file_resp)
            if body.__class__ is dict:
                fop_id = body.get(FOP.req_id, 0)  # the same keys in a request and a response
                d = body.get(FOP.data)
                size = len(d) if d.__class__ is bytes else 0
                if t == _FILE_OP:
                    o = body.get(FOP.op, 0)
                    op = o - 1 if o.__class__ is int and 1 <= o <= len(FILE_OPS) else -1
                else:
                    errno = body.get(FRP.errno, 0)
        self.rows.append(
            (
                index,
                offset,
                rf.get(RF.seq, 0),
                rf.get(RF.timestamp, 0),
                _dir_code(rf.get(RF.direction)),
                _type_code(t),
                stream,
                size,
                signal,
                code,
                error,
                level,
                message,
                fop_id,
                op,
                errno,
            )
        )

    def columns(
        self, starts: dict[int, int], simple: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The batch as NumPy columns in file order, merged with bulk-parsed data/EOF frames.

        Integers that can be missing come as ``name`` (values, 0 where
        missing) and ``name_missing`` (a mask); categoricals as int16 codes
        (-1 missing); text as object arrays (None missing). See
        :func:`_frames_dataframe` and :func:`frames_arrow_batches`.
        """
        if simple is None:
            simple = _NO_SIMPLE
        k = len(simple["index"])
        c: Any = (
            dict(zip(self._NAMES, map(list, zip(*self.rows, strict=True)), strict=True))
            if self.rows
            else {name: [] for name in self._NAMES}
        )
        self.rows = []  # the tuples are no longer needed: let them go now
        index = np.concatenate([simple["index"], np.array(c["index"], dtype=np.int64)])
        order = np.argsort(index, kind="stable")
        out: dict[str, Any] = {"index": index[order]}

        def num(bulk: Any, mine: list[int]) -> Any:
            return np.concatenate([bulk, np.array(mine, dtype=np.int64)])[order]

        def nullable(name: str, mine: list[int | None], bulk: Any = None) -> None:
            values = np.array([0 if v is None else v for v in mine], dtype=np.int64)
            missing = np.array([v is None for v in mine], dtype=bool)
            if bulk is None:
                head_values, head_missing = np.zeros(k, np.int64), np.ones(k, bool)
            else:
                head_values, head_missing = bulk, np.zeros(k, bool)
            out[name] = np.concatenate([head_values, values])[order]
            out[name + "_missing"] = np.concatenate([head_missing, missing])[order]

        def text(mine: list[str | None]) -> Any:
            values = np.empty(k + len(mine), dtype=object)
            values[k:] = mine
            return values[order]

        def codes(bulk: Any, mine: list[int]) -> Any:
            return np.concatenate([bulk, np.array(mine, dtype=np.int64)])[order].astype(np.int16)

        seq = num(simple["seq"], c["seq"])
        ts = num(simple["ts"], c["ts"])
        # "since start" counts from the command's start record, else its first frame
        seqs, inverse = np.unique(seq, return_inverse=True)
        known = np.array([starts.get(s, -1) for s in seqs.tolist()], dtype=np.int64)[inverse]
        base = np.where(known >= 0, known, ts) if len(seq) else ts
        bulk_dir = np.where((simple["dir"] == 1) | (simple["dir"] == 2), simple["dir"] - 1, -1)
        out["offset"] = num(simple["offset"], c["offset"])
        out["seq"] = seq
        out["timestamp"] = ts
        out["since_start"] = (ts - base) / 1e9
        out["direction"] = codes(bulk_dir, c["direction"])
        out["type"] = codes(simple["t"] - 1, c["type"])
        nullable("stream", c["stream"], simple["stream"])
        out["size"] = num(simple["size"], c["size"])
        nullable("signal", c["signal"])
        nullable("code", c["code"])
        out["error"] = text(c["error"])
        out["log_level"] = text(c["log_level"])
        out["log_message"] = text(c["log_message"])
        nullable("fileop_id", c["fileop_id"])
        out["fileop_op"] = codes(np.full(k, -1, np.int64), c["fileop_op"])
        nullable("errno", c["errno"])
        return out

    def frame(self, starts: dict[int, int], simple: dict[str, Any] | None = None) -> pd.DataFrame:
        """The batch as a DataFrame, merged in file order with bulk-parsed data/EOF frames."""
        return _frames_dataframe(self.columns(starts, simple))


# Categories of the frames table's categorical columns.
_FRAME_CATEGORIES = {"direction": DIRECTIONS, "type": FRAME_TYPES, "fileop_op": FILE_OPS}
_FRAME_NULLABLE = ("stream", "signal", "code", "fileop_id", "errno")
_FRAME_TEXT = ("error", "log_level", "log_message")


def _frames_dataframe(cols: dict[str, Any]) -> pd.DataFrame:
    """The frames table's DataFrame from :meth:`_FrameColumns.columns`."""
    data: dict[str, Any] = {}
    for name in FRAME_COLUMNS:
        if name in _FRAME_CATEGORIES:
            data[name] = pd.Categorical.from_codes(
                cols[name], categories=pd.Index(_FRAME_CATEGORIES[name], dtype=object)
            )
        elif name in _FRAME_NULLABLE:
            data[name] = pd.arrays.IntegerArray(cols[name], cols[name + "_missing"])
        elif name in _FRAME_TEXT:
            data[name] = _strs(cols[name])
        elif name == "timestamp":
            data[name] = _times_np(cols[name])
        else:
            data[name] = cols[name]
    return pd.DataFrame(data)


def _slice_columns(cols: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {name: values[start:stop] for name, values in cols.items()}


def _join_pieces(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}


# Records read and parsed at once for the frames table: about 1 MB of a
# typical recording (a range is also cut at a few MiB, however large its records).
# Frame records read at a time for the frames table: the bulk parse temporaries stay small.
FRAME_RANGE = 4096


_NO_SIMPLE = {
    name: np.zeros(0, dtype=np.int64)
    for name in ("index", "offset", "seq", "ts", "dir", "t", "stream", "size")
}


def _iter_frame_columns(
    rec: Recording,
    seq: int | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: ProgressCallback | None = None,
    records_per_range: int = FRAME_RANGE,
) -> Iterator[dict[str, Any]]:
    """Yield the frames table as NumPy column batches of ``batch_rows`` rows (the last fewer).

    All frames: data and EOF frames are parsed in bulk (Recording.frame_chunks)
    and only the others are decoded. One command's: its records are decoded.
    At least one (possibly empty) batch is yielded.
    """
    starts = _command_starts(rec)
    total = rec.indexed_bytes
    if seq is not None:
        cols = _FrameColumns()
        yielded = False
        for index, offset, rf in rec.raw_frames(rec.command(seq).record_indexes):
            cols.add(index, offset, rf)
            if len(cols) >= batch_rows:
                yield cols.columns(starts)
                yielded = True
                cols = _FrameColumns()
                if progress is not None:
                    progress(offset, total)
        if len(cols) or not yielded:
            yield cols.columns(starts)
    else:
        # The file is read a range of records at a time, small enough that
        # the bulk parse's temporaries stay a few MB; each range becomes
        # final NumPy columns at once, and batches are cut from those.
        pieces: list[dict[str, Any]] = []
        held = 0
        yielded = False
        count = rec.record_count
        for first in range(0, count, records_per_range):
            for simple, others in rec.frame_chunks(first, min(first + records_per_range, count)):
                cols = _FrameColumns()
                for index, offset, rf in others:
                    cols.add(index, offset, rf)
                del others  # decoded maps hold payloads the table does not need
                piece = cols.columns(starts, simple)
                del cols, simple
                rows = len(piece["index"])
                if not rows:
                    continue
                pieces.append(piece)
                held += rows
                last_offset = int(piece["offset"][-1])
                del piece
                if held >= batch_rows:
                    table = pieces[0] if len(pieces) == 1 else _join_pieces(pieces)
                    pieces = []
                    whole = held - held % batch_rows
                    for start in range(0, whole, batch_rows):
                        yield _slice_columns(table, start, start + batch_rows)
                        yielded = True
                    if whole < held:  # a copy: a view would keep the whole table alive
                        pieces.append({name: v[whole:held].copy() for name, v in table.items()})
                    held -= whole
                    del table
                if progress is not None:
                    progress(last_offset, total)
        if held or not yielded:
            yield _join_pieces(pieces) if pieces else _FrameColumns().columns(starts)
    if progress is not None:
        progress(total, total)


def iter_frames_batches(
    rec: Recording,
    seq: int | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: ProgressCallback | None = None,
    records_per_range: int = FRAME_RANGE,
) -> Iterator[pd.DataFrame]:
    """Yield the frames table in DataFrames of at most ``batch_rows`` rows (see frames_table).

    All frames: data and EOF frames are parsed in bulk (Recording.frame_chunks),
    ``records_per_range`` records at a time, and only the others are decoded.
    One command's: its records are decoded.
    """
    for cols in _iter_frame_columns(
        rec, seq, batch_rows=batch_rows, progress=progress, records_per_range=records_per_range
    ):
        yield _frames_dataframe(cols)


def frames_arrow_batches(
    rec: Recording,
    seq: int | None = None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: ProgressCallback | None = None,
) -> Iterator[Any]:
    """Yield the frames table as ``pyarrow.Table`` batches of at most ``batch_rows`` rows.

    The schema is what ``pyarrow.Table.from_pandas`` gives for a batch of
    :func:`iter_frames_batches`, pandas metadata included, so a Parquet file
    of these reads back into the same dtypes. Building the Arrow arrays
    straight from NumPy skips a DataFrame per batch: faster, less memory.
    """
    import pyarrow as pa

    empty = _frames_dataframe(_FrameColumns().columns({}))
    schema = pa.Schema.from_pandas(empty, preserve_index=False)
    fields = {field.name: field.type for field in schema}
    dictionaries = {
        name: pa.array(categories, type=fields[name].value_type)
        for name, categories in _FRAME_CATEGORIES.items()
    }
    for cols in _iter_frame_columns(rec, seq, batch_rows=batch_rows, progress=progress):
        arrays = []
        for name in FRAME_COLUMNS:
            kind = fields[name]
            values = cols[name]
            if name in _FRAME_CATEGORIES:
                indices = pa.array(values, mask=values < 0, type=kind.index_type)
                arrays.append(pa.DictionaryArray.from_arrays(indices, dictionaries[name]))
            elif name in _FRAME_NULLABLE:
                arrays.append(pa.array(values, mask=cols[name + "_missing"], type=kind))
            elif name in _FRAME_TEXT:
                try:
                    arrays.append(pa.array(values, type=kind, from_pandas=True))
                except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: a hostile frame
                    arrays.append(pa.array(_strs(values), type=kind, from_pandas=True))
            elif name == "timestamp":
                arrays.append(pa.array(values, type=pa.int64()).view(kind))
            else:
                arrays.append(pa.array(values, type=kind))
        del cols
        yield pa.Table.from_arrays(arrays, schema=schema)


def frames_table(rec: Recording, seq: int | None = None) -> pd.DataFrame:
    """One row per frame (of command ``seq``, or all), in file order.

    Columns: index (record index), offset (byte offset), seq, timestamp,
    since_start (s since the command's start), direction (send/recv), type,
    stream (data/eof), size (data bytes carried), signal, code (exit),
    error, log_level, log_message, fileop_id, fileop_op (requests), errno
    (responses).
    """
    return _concat(iter_frames_batches(rec, seq))


def _concat(batches: Iterable[pd.DataFrame]) -> pd.DataFrame:
    parts = list(batches)
    if len(parts) == 1:
        return parts[0]
    nonempty = [p for p in parts if len(p)] or parts[:1]
    out = pd.concat(nonempty, ignore_index=True)
    for name in parts[0].columns:
        first = parts[0][name]
        if isinstance(first.dtype, pd.CategoricalDtype) and out[name].dtype != first.dtype:
            cats = sorted({c for p in nonempty for c in p[name].cat.categories})
            out[name] = pd.Categorical(out[name], categories=cats)
    return out


# --- file ops ------------------------------------------------------------------------------

FILEOP_COLUMNS = [
    "seq",
    "id",
    "op",
    "path",
    "new_path",
    "handle",
    "offset",
    "size",
    "request_bytes",
    "timestamp",
    "response_time",
    "latency",
    "errno",
    "errno_name",
    "message",
    "n",
    "eof",
    "response_bytes",
    "index",
    "response_index",
]


def _fileops_frame(rows: list[list[Any]]) -> pd.DataFrame:
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 18
    (
        seq,
        rid,
        op,
        path,
        new_path,
        handle,
        offset,
        size,
        req_bytes,
        req_time,
        resp_time,
        errno,
        message,
        n,
        eof,
        resp_bytes,
        req_index,
        resp_index,
    ) = cols
    req_ns = np.array([t if t is not None else -1 for t in req_time], "int64")
    resp_ns = np.array([t if t is not None else -1 for t in resp_time], "int64")
    latency = np.where((req_ns >= 0) & (resp_ns >= 0), (resp_ns - req_ns) / 1e9, np.nan)
    return pd.DataFrame(
        {
            "seq": pd.Series(seq, dtype="int64"),
            "id": pd.Series(rid, dtype="int64"),
            "op": _category(
                (o - 1 if o is not None and 1 <= o <= 25 else -1 for o in op), FILE_OPS
            ),
            "path": _strs(list(path)),
            "new_path": _strs(list(new_path)),
            "handle": _ints(list(handle)),
            "offset": _ints(list(offset)),
            "size": _ints(list(size)),
            "request_bytes": _ints(list(req_bytes)),
            "timestamp": _times(req_time),
            "response_time": _times(resp_time),
            "latency": pd.Series(latency, dtype="float64"),
            "errno": _ints(list(errno)),
            "errno_name": _strs(
                [
                    None if e is None else ("" if e == 0 else errno_module.errorcode.get(e, str(e)))
                    for e in errno
                ]
            ),
            "message": _strs(list(message)),
            "n": _ints(list(n)),
            "eof": pd.array(list(eof), dtype="boolean"),
            "response_bytes": _ints(list(resp_bytes)),
            "index": _ints(list(req_index)),
            "response_index": _ints(list(resp_index)),
        }
    )


def iter_fileops_batches(
    rec: Recording,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: ProgressCallback | None = None,
    max_held_rows: int = 4 * DEFAULT_BATCH_ROWS,
) -> Iterator[pd.DataFrame]:
    """Yield the file-ops table in batches (see :func:`fileops_table`).

    Rows are in request order. A batch is released once its requests are
    answered; to keep memory bounded, when an unanswered request holds back
    more than ``max_held_rows`` rows (or four batches, if more), rows are
    released with it unanswered, and a late response gets a row of its own.
    """
    hold = max(max_held_rows, 4 * batch_rows)
    total = rec.indexed_bytes
    rows: deque[list[Any]] = deque()
    # (seq, id) -> rows waiting for a response, oldest first (ids may be reused).
    pending: dict[tuple[int, int], deque[list[Any]]] = {}
    answered = 0  # leading rows of `rows` known complete
    for index, offset, rf in rec.raw_frames(_kind_indexes(rec, (_FILE_OP, _FILE_RESP))):
        frame = rf.get(RF.frame)
        if frame.__class__ is not dict:
            continue
        assert isinstance(frame, dict)
        seq = rf.get(RF.seq, 0)
        ts = rf.get(RF.timestamp, 0)
        t = frame.get(F.type)
        if t == _FILE_OP:
            body = frame.get(F.file_op)
            if body.__class__ is not dict:
                continue
            assert isinstance(body, dict)
            op = body.get(FOP.op, 0)
            data = body.get(FOP.data)
            row: list[Any] = [
                seq,
                body.get(FOP.req_id, 0),
                op,
                body.get(FOP.path) or None,
                body.get(FOP.new_path) or None,
                body.get(FOP.handle) or None,
                body.get(FOP.offset, 0) if op in _OFFSET_OPS else (body.get(FOP.offset) or None),
                body.get(FOP.size, 0) if op in _SIZE_OPS else (body.get(FOP.size) or None),
                len(data) if data.__class__ is bytes else 0,
                ts,
                None,  # response time
                None,  # errno
                None,  # message
                None,  # n
                None,  # eof
                None,  # response bytes
                index,
                None,  # response index
            ]
            rows.append(row)
            pending.setdefault((seq, row[1]), deque()).append(row)
        elif t == _FILE_RESP:
            body = frame.get(F.file_resp)
            if body.__class__ is not dict:
                continue
            assert isinstance(body, dict)
            rid = body.get(FRP.req_id, 0)
            waiting = pending.get((seq, rid))
            if waiting:
                row = waiting.popleft()
                if not waiting:
                    del pending[(seq, rid)]
            else:  # a response nobody asked for (or asked before the cut): its own row
                row = [seq, rid] + [None] * 16
                rows.append(row)
            data = body.get(FRP.data)
            row[10] = ts
            row[11] = body.get(FRP.errno, 0)
            row[12] = body.get(FRP.err_msg) or None
            row[13] = body.get(FRP.n, 0)
            row[14] = bool(body.get(FRP.eof, False))
            row[15] = len(data) if data.__class__ is bytes else 0
            row[17] = index
            if row[5] is None and body.get(FRP.handle):
                row[5] = body.get(FRP.handle)
        # Release complete leading rows in batches.
        while answered < len(rows) and rows[answered][10] is not None:
            answered += 1
        if answered >= batch_rows or len(rows) >= hold:
            take = batch_rows if answered >= batch_rows else len(rows)
            out = [rows.popleft() for _ in range(take)]
            for r in out:
                if r[10] is None:  # released unanswered: forget it, a late answer is an orphan
                    waiting = pending.get((r[0], r[1]))
                    if waiting and r in waiting:
                        waiting.remove(r)
                        if not waiting:
                            del pending[(r[0], r[1])]
            answered = max(0, answered - take)
            yield _fileops_frame(out)
            if progress is not None:
                progress(offset, total)
    rest = list(rows)
    for start in range(0, max(len(rest), 1), batch_rows):
        yield _fileops_frame(rest[start : start + batch_rows])
    if progress is not None:
        progress(total, total)


def fileops_table(rec: Recording) -> pd.DataFrame:
    """One row per file-op RPC, request paired with response by (seq, id).

    Responses may arrive in any order. Columns: seq, id, op, path, new_path,
    handle (request's, else the one returned), offset, size, request_bytes,
    timestamp (the request's), response_time, latency (s), errno, errno_name, message,
    n, eof, response_bytes, index (the request's record), response_index. An unanswered
    request has NaT/NA response columns; a response with no request has NA
    request columns.
    """
    return _concat(iter_fileops_batches(rec))


# --- logs --------------------------------------------------------------------------------


def iter_logs_batches(
    rec: Recording,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: ProgressCallback | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the logs table in batches (see :func:`logs_table`)."""
    total = rec.indexed_bytes
    rows: list[tuple[Any, ...]] = []

    def batch() -> pd.DataFrame:
        cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), (), ()]
        index, seq, ts, lvl, msg, attrs = cols
        return pd.DataFrame(
            {
                "index": pd.Series(index, dtype="int64"),
                "seq": pd.Series(seq, dtype="int64"),
                "timestamp": _times(ts),
                "level": _level_category([level_name(v) for v in lvl]),
                "level_value": pd.Series(lvl, dtype="int64"),
                "message": _strs(list(msg)),
                "attrs": _strs(list(attrs)),
            }
        )

    for index, offset, rf in rec.raw_frames(_kind_indexes(rec, (_LOG,))):
        frame = rf.get(RF.frame)
        log = frame.get(F.log) if frame.__class__ is dict else None
        if log.__class__ is not dict:
            continue
        assert isinstance(log, dict)
        lvl = log.get(LG.level, 0)
        attrs = log.get(LG.attrs) or []
        rows.append(
            (
                index,
                rf.get(RF.seq, 0),
                rf.get(RF.timestamp, 0),
                lvl if lvl.__class__ is int else 0,
                str(log.get(LG.msg, "")),
                " ".join(str(a) for a in attrs) if isinstance(attrs, list) else "",
            )
        )
        if len(rows) >= batch_rows:
            yield batch()
            rows = []
            if progress is not None:
                progress(offset, total)
    yield batch()
    if progress is not None:
        progress(total, total)


def logs_table(rec: Recording) -> pd.DataFrame:
    """One row per agent log record: index, seq, timestamp, level (DEBUG/INFO/WARN/ERROR or
    "INFO+2"-style), level_value, message, attrs (``key=value`` strings joined by spaces)."""
    return _concat(iter_logs_batches(rec))


# --- streams -------------------------------------------------------------------------------


def streams(rec: Recording, seq: int) -> dict[str, bytes]:
    """The reconstructed byte streams of command ``seq``: stdin, stdout, stderr, fd3...

    Keys are ``stdin``/``stdout``/``stderr`` for streams 0-2 and ``fdN``
    for the extra descriptors; only streams that carried data appear.
    """
    parts: dict[int, list[bytes]] = {}
    for stream, _direction, data in rec.stream_chunks(seq):
        parts.setdefault(stream, []).append(data)
    return {_stream_name(s): b"".join(chunks) for s, chunks in sorted(parts.items())}


def _stream_name(stream: int) -> str:
    return STREAM_NAMES.get(stream, f"fd{stream}")


def stream_table(rec: Recording, seq: int) -> pd.DataFrame:
    """One row per data chunk of command ``seq``: where it sits in its reconstructed stream.

    Columns: index, timestamp, since_start (s), direction, stream, name
    (stdin/stdout/stderr/fdN), size, stream_offset (bytes of the same stream
    before this chunk), data (the bytes).
    """
    cmd = rec.command(seq)
    start = cmd.start_time if cmd.start_time is not None else (cmd.first_frame_time or 0)
    data_indexes = [i for i in cmd.record_indexes if rec.kinds[i] == FrameType.DATA]
    rows = []
    position: dict[int, int] = {}
    for index, _offset, rf in rec.raw_frames(data_indexes):
        frame = rf.get(RF.frame)
        if frame.__class__ is not dict:
            continue
        assert isinstance(frame, dict)
        data = frame.get(F.data)
        if data.__class__ is not bytes or not data:
            continue
        stream = frame.get(F.stream, 0)
        at = position.get(stream, 0)
        position[stream] = at + len(data)
        rows.append(
            (index, rf.get(RF.timestamp, 0), rf.get(RF.direction), stream, len(data), at, data)
        )
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 7
    indexes, ts, direction, stream_nums, size, at_col, data_col = cols
    ts_arr = np.array(ts, dtype="int64")
    return pd.DataFrame(
        {
            "index": pd.Series(indexes, dtype="int64"),
            "timestamp": _times_np(ts_arr),
            "since_start": (ts_arr - start) / 1e9,
            "direction": _category((_dir_code(d) for d in direction), DIRECTIONS),
            "stream": pd.Series(stream_nums, dtype="int64"),
            "name": _strs([_stream_name(s) for s in stream_nums]),
            "size": pd.Series(size, dtype="int64"),
            "stream_offset": pd.Series(at_col, dtype="int64"),
            "data": pd.Series(data_col, dtype=object),
        }
    )


# --- by name ---------------------------------------------------------------------------------

TABLES = ("commands", "frames", "fileops", "logs", "session")
TABLE_FUNCTIONS: dict[str, Callable[[Recording], pd.DataFrame]] = {
    "commands": commands_table,
    "frames": frames_table,
    "fileops": fileops_table,
    "logs": logs_table,
    "session": session_table,
}


def arrow_batches(batches: Iterable[pd.DataFrame]) -> Iterator[Any]:
    """DataFrame batches as ``pyarrow.Table`` batches, all of the first one's schema.

    The pandas metadata of list columns (argv, signals) names their dtype
    as ``object``: pandas cannot read back the name of an Arrow list dtype,
    so ``pandas.read_parquet`` would fail on the file.
    """
    import json

    import pyarrow as pa

    schema = metadata = None
    for df in batches:
        # The first batch's schema is inferred in its conversion (once, not twice).
        table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
        del df  # let go of the batch before the next is built
        if schema is None:
            schema = table.schema
            metadata = dict(schema.metadata or {})
            if b"pandas" in metadata:
                described = json.loads(metadata[b"pandas"])
                for column in described.get("columns", []):
                    if str(column.get("numpy_type", "")).startswith(("list<", "large_list<")):
                        column["numpy_type"] = "object"
                metadata[b"pandas"] = json.dumps(described).encode()
        yield table.replace_schema_metadata(metadata)
        del table


def iter_table(
    rec: Recording,
    name: str,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: ProgressCallback | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield table ``name`` (one of :data:`TABLES`) in batches of at most ``batch_rows`` rows."""
    if name == "frames":
        yield from iter_frames_batches(rec, batch_rows=batch_rows, progress=progress)
    elif name == "fileops":
        yield from iter_fileops_batches(rec, batch_rows=batch_rows, progress=progress)
    elif name == "logs":
        yield from iter_logs_batches(rec, batch_rows=batch_rows, progress=progress)
    elif name in ("commands", "session"):
        table = commands_table(rec) if name == "commands" else session_table(rec)
        for start in range(0, max(len(table), 1), batch_rows):
            yield table.iloc[start : start + batch_rows].reset_index(drop=True)
    else:
        raise ValueError(f"unknown table {name!r}: choose from {', '.join(TABLES)}")
