"""Session recordings: the :class:`Recorder` (writing) and the readers.

A recording is a CBOR sequence of ``Record`` maps: a session header, then
command starts, frames and command ends of possibly concurrent commands,
interleaved, and a footer written by ``close``. A writer that crashed leaves
no footer and possibly a cut last record; the readers yield every complete
record and then raise :class:`TruncatedError` saying where the cut is.
"""

from __future__ import annotations

import dataclasses
import gc
import getpass
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import islice, repeat
from typing import Any, BinaryIO, NamedTuple

import cbor2

from .codec import Incomplete, ItemDecoder, item_end
from .errors import (
    FrameTooLargeError,
    LimitExceededError,
    LocalProtocolError,
    RemoteProtocolError,
    TruncatedError,
)
from .layout import FRAME_RECORD_PREFIX, parse_frame_records, speedups
from .types import (
    MAX_DEPTH,
    CommandEnd,
    CommandStart,
    Direction,
    ExecMsg,
    Frame,
    FrameType,
    Record,
    RecordedFrame,
    RecordType,
    SessionFooter,
    SessionHeader,
)

__all__ = [
    "DEFAULT_MAX_RECORD_SIZE",
    "MissingFooterError",
    "ParsedRun",
    "Recorder",
    "RecordingReader",
    "encode_frame_record",
    "iter_records",
    "read_recording",
]

RECORDING_VERSION = "1.3.4"  # the Go package version whose format we write
DEFAULT_MAX_RECORD_SIZE = 256 * 1024 * 1024
CHUNK_SIZE = 1024 * 1024

Source = str | os.PathLike[str] | BinaryIO | Any


class MissingFooterError(TruncatedError):
    """The recording ends cleanly after a complete record but has no session footer."""


# --- writing ------------------------------------------------------------------------

# Record{Type: 3, Frame: &RecordedFrame{...}}: the head up to the seq value.
_FRAME_RECORD_HEAD = FRAME_RECORD_PREFIX


def _wire_int(value: Any, lo: int, hi: int, what: str, field: str) -> int:
    """``value`` as a plain int if Go can hold it in ``what``, else LocalProtocolError."""
    if value.__class__ is int and lo <= value <= hi:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
        return int(value)  # an IntEnum such as Direction
    raise LocalProtocolError(f"cannot encode {value!r} as Go {what}", field=field)


def frame_record_head(seq: int, timestamp: int, direction: int) -> bytes:
    """The bytes of a frame record that come before the frame itself.

    ``frame_record_head(...) + frame_cbor`` is the whole record; values Go
    cannot hold (bools, floats, out-of-range numbers) raise
    :class:`LocalProtocolError`.
    """
    seq = _wire_int(seq, 0, 0xFFFF_FFFF, "uint32", "frame.seq")
    timestamp = _wire_int(timestamp, -(2**63), 2**63 - 1, "int64", "frame.ts")
    direction = _wire_int(direction, 0, 0xFF, "uint8", "frame.dir")
    return b"".join(
        (
            _FRAME_RECORD_HEAD,
            cbor2.dumps(seq),
            b"\x62ts",
            cbor2.dumps(timestamp),
            b"\x63dir",
            cbor2.dumps(direction),
            b"\x65frame",
        )
    )


def encode_frame_record(seq: int, timestamp: int, direction: int, frame_cbor: bytes) -> bytes:
    """Encode a frame record around an already encoded frame.

    CBOR is concatenative, so the record is a fixed head, three integers and
    the frame's own bytes: the mux records what it sends without encoding it
    twice. Identical to ``Record(type=FRAME, frame=RecordedFrame(...)).to_cbor()``;
    values Go cannot hold (bools, floats, out-of-range numbers) raise
    :class:`LocalProtocolError`.
    """
    return frame_record_head(seq, timestamp, direction) + frame_cbor


class Recorder:
    """Write a session recording (the Go ``Recorder``); safe for concurrent use.

    ``Recorder(path)`` creates or truncates the file, owner-only (0600); ``Recorder(writer)``
    writes to an open binary stream that the caller closes. Every record is
    written whole and handed to the OS at once, so a process killed at any
    moment leaves at most the record being written incomplete.
    """

    def __init__(self, target: str | os.PathLike[str] | BinaryIO | Any):
        if isinstance(target, (str, os.PathLike)):
            # owner-only: a recording holds environments and output (secrets); an
            # existing file is truncated and made owner-only too
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:  # noqa: SIM105 - one spot: no contextlib import for it
                os.fchmod(fd, 0o600)
            except OSError:
                pass  # not our file (root writing elsewhere): it keeps its mode
            # unbuffered: each record is one write(2)
            self._file: Any = open(fd, "wb", buffering=0)  # noqa: SIM115
            self._owns_file = True
        else:
            self._file = target
            self._owns_file = False
        self._flush = getattr(self._file, "flush", None) if not self._owns_file else None
        # our own unbuffered file: frame pieces can go out with one writev
        self._fd: int | None = self._file.fileno() if self._owns_file else None
        self._lock = threading.Lock()
        self._next_seq = 1
        self._footer_written = False
        self._closed = False

    @property
    def command_count(self) -> int:
        """How many commands ``write_command_start`` has numbered."""
        return self._next_seq - 1

    def _write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed Recorder")
        self._file.write(data)
        if self._flush is not None:
            self._flush()

    def write_record(self, record: Record) -> None:
        """Write any record as it is (no time stamping, no numbering)."""
        data = record.to_cbor()
        with self._lock:
            self._write(data)

    def write_session_header(self, header: SessionHeader | None = None) -> SessionHeader:
        """Write the session header; with no argument, one describing this process now."""
        if header is None:
            header = SessionHeader(
                version=RECORDING_VERSION,
                start_time=time.time_ns(),
                local_user=_local_user(),
                local_pid=os.getpid(),
                agent_path="",
            )
        self.write_record(Record(type=RecordType.SESSION_HEADER, header=header))
        return header

    def write_command_start(self, exec_msg: ExecMsg) -> int:
        """Number a new command (1, 2, 3...), record its start, return the number."""
        with self._lock:
            seq = self._next_seq
            start = CommandStart(seq=seq, start_time=time.time_ns(), exec=exec_msg)
            data = Record(type=RecordType.COMMAND_START, cmd_start=start).to_cbor()
            self._write(data)
            self._next_seq += 1
        return seq

    def write_frame(
        self, seq: int, direction: Direction | int, frame: Frame | bytes | bytearray | memoryview
    ) -> None:
        """Record one frame of command ``seq``, stamped now; ``frame`` may be pre-encoded."""
        frame_cbor = frame.to_cbor() if isinstance(frame, Frame) else bytes(frame)
        with self._lock:
            # stamped under the lock: timestamps never go backwards in file order
            self._write(encode_frame_record(seq, time.time_ns(), direction, frame_cbor))

    def write_frame_parts(
        self,
        seq: int,
        direction: Direction | int,
        parts: Sequence[bytes | bytearray | memoryview],
        *,
        timestamp: int | None = None,
    ) -> None:
        """Record a frame given as encoded pieces (head, payload), without joining them.

        The mux passes a data frame's head and the payload it already holds;
        on a file the record goes out in one ``writev`` with no copy of the
        payload in Python. ``timestamp`` defaults to now.
        """
        with self._lock:
            ts = time.time_ns() if timestamp is None else timestamp
            pieces = [frame_record_head(seq, ts, direction), *parts]
            if self._closed:
                raise ValueError("write to a closed Recorder")
            if self._fd is None:
                self._write(b"".join(pieces))
                return
            total = sum(len(p) for p in pieces)
            written = os.writev(self._fd, pieces)
            if written < total:  # rare short write: finish it plainly
                rest = b"".join(pieces)[written:]
                while rest:
                    rest = rest[os.write(self._fd, rest) :]

    def write_command_end(self, seq: int, exit_code: int) -> None:
        """Record that command ``seq`` ended with ``exit_code``."""
        with self._lock:
            end = CommandEnd(seq=seq, end_time=time.time_ns(), exit_code=exit_code)
            self._write(Record(type=RecordType.COMMAND_END, cmd_end=end).to_cbor())

    def write_session_footer(self) -> None:
        """Write the footer (end time, command count) once; later calls do nothing."""
        with self._lock:
            if self._footer_written:
                return
            footer = SessionFooter(end_time=time.time_ns(), command_count=self._next_seq - 1)
            self._write(Record(type=RecordType.SESSION_FOOTER, footer=footer).to_cbor())
            self._footer_written = True

    def close(self) -> None:
        """Write the footer if not yet written, then close the file if we opened it."""
        if self._closed:
            return
        self.write_session_footer()
        with self._lock:
            self._closed = True
            if self._owns_file:
                self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# --- reading ------------------------------------------------------------------------


_U32, _I64_LO, _I64_HI = 0xFFFF_FFFF, -(2**63), 2**63 - 1
_DIRECTIONS: dict[int, Direction] = dict(Direction._value2member_map_)
_FRAME_TYPES: dict[int, FrameType] = dict(FrameType._value2member_map_)


def _record_from_map(m: Any) -> Record:
    """``Record.from_map`` with a shortcut for the shape of nearly every record.

    A frame record is ``{"type": 3, "frame": {"seq", "ts", "dir", "frame"}}``,
    and most frames are data, ``{"t", "s", "d"}``. Checking that shape (every
    value's type and range, as the general path does) and building the
    objects directly cuts the conversion cost by about a third. Anything else,
    including every error, takes the general path, so results and error
    messages are the same either way.
    """
    try:
        if m.__class__ is dict and len(m) == 2 and m["type"].__class__ is int and m["type"] == 3:
            rf = m["frame"]
            if rf.__class__ is dict and len(rf) == 4:
                seq = rf["seq"]
                ts = rf["ts"]
                d = rf["dir"]
                f = rf["frame"]
                if (
                    seq.__class__ is int
                    and 0 <= seq <= _U32
                    and ts.__class__ is int
                    and _I64_LO <= ts <= _I64_HI
                    and d.__class__ is int
                    and 0 <= d <= 0xFF
                    and f.__class__ is dict
                ):
                    frame = None
                    if len(f) == 3 and "d" in f and "s" in f and "t" in f:
                        t = f["t"]
                        s = f["s"]
                        data = f["d"]
                        if (
                            t.__class__ is int
                            and 0 <= t <= 0xFF
                            and s.__class__ is int
                            and 0 <= s <= _U32
                            and data.__class__ is bytes
                        ):
                            # positional, in Go's field order; the tests compare
                            # this path with Record.from_map on random maps
                            frame = Frame(
                                _FRAME_TYPES.get(t, t), s, data, 0, 0, "",
                                None, None, None, None, None, None, None,
                            )  # fmt: skip
                    if frame is None:
                        frame = Frame.from_map(f)
                    rec_frame = RecordedFrame(seq, ts, _DIRECTIONS.get(d, d), frame)
                    return Record(RecordType.FRAME, None, None, rec_frame, None, None)
    except (KeyError, RemoteProtocolError):
        pass  # not the common shape, or an error: the general path reports it
    return Record.from_map(m)


# --- the frame-record fast path ------------------------------------------------------
#
# Turning cbor2's dicts into dataclasses costs about as much as cbor2's decoding,
# so each in-memory chunk is first parsed for Go's frame-record layout all at once
# (agentproto.layout); the reader then builds those records straight from the
# parsed values. Other frames in the same envelope (logs, exits, file ops) have
# only their frame map decoded by cbor2, and everything else is decoded whole. A
# candidate is used only when the walk from record to record reaches its offset,
# so one that is a coincidence inside a payload is never used. Only byte sequences
# that cbor2 and ``Record.from_map`` would turn into exactly the same record are
# accepted (same values, enums and ranges); any other layout, value or a record
# cut by the end of the chunk takes the general path, which also reports every error.

# Below this many bytes in a chunk, NumPy's fixed cost outweighs what it saves.
BULK_MIN_BYTES = 64 * 1024

# the enum member (or the plain int) for each one-byte direction and frame type
_DIRECTION_BY_BYTE: list[Direction | int] = [_DIRECTIONS.get(i, i) for i in range(24)]
_FRAME_TYPE_BY_BYTE: list[FrameType | int] = [_FRAME_TYPES.get(i, i) for i in range(24)]

# What a bulk parse of a chunk gives the walk: the start and end of each parsed
# record (sorted by start), the index after the run each one is in (see
# run_stops), an iterator making the item to yield for each, in
# the same order, and the envelopes ``{start: (frame start, seq, timestamp,
# direction)}`` of other frame records. The items are made lazily, one as each
# is yielded: a chunk's worth of live objects would make the cyclic garbage
# collector promote and rescan them, which costs more than it saves.
# (For raw_items the items are instead one table the caller reads runs from.)
BulkIndex = tuple[list[int], list[int], list[int], Any, dict[int, tuple[int, int, int, int]]]


class ParsedRun(NamedTuple):
    """Records ``start..stop-1`` of a bulk ``table``, consecutive in the file.

    ``base`` is the file offset of the chunk the table's positions are in.
    """

    table: Any
    base: int
    start: int
    stop: int


def run_stops(starts: Any, ends: Any) -> list[int]:
    """For each parsed record (NumPy arrays), the index after the run it is in.

    A run is a stretch of parsed records each starting where the one before
    ends: once the walk reaches its first record, it takes them all.
    """
    import numpy as np  # only called with NumPy arrays

    m = len(starts)
    breaks = np.flatnonzero(ends[:-1] != starts[1:]) + 1
    stops = np.append(breaks, m)
    result: list[int] = stops[np.searchsorted(breaks, np.arange(m), side="right")].tolist()
    return result


def _frame_index(buf: bytes, native: bool = True) -> BulkIndex | None:
    """The frame records of ``buf`` in Go's layout (:mod:`agentproto.layout`), built at once.

    Records whose frame holds only ``t``, ``s`` and ``d`` come back as
    :class:`Record` objects made by ``map`` over the parsed columns (no
    Python code per record but the dataclasses' own ``__init__``).
    A candidate that the walk does not reach is built for nothing, which is
    rare (a coincidence inside a payload). The envelopes of other frame
    records leave the frame map to cbor2. None without NumPy.
    """
    parsed = parse_frame_records(buf, native=native)
    if parsed is None:
        return None
    r, e = parsed
    ends = r.end.tolist()
    none = repeat(None)
    frames = map(
        Frame,
        map(_FRAME_TYPE_BY_BYTE.__getitem__, r.ftype.tolist()),
        r.stream.tolist(),
        map(buf.__getitem__, map(slice, r.data.tolist(), ends)),
        repeat(0), repeat(0), repeat(""),
        none, none, none, none, none, none, none,
    )  # fmt: skip
    recorded = map(
        RecordedFrame,
        r.seq.tolist(),
        r.ts.tolist(),
        map(_DIRECTION_BY_BYTE.__getitem__, r.direction.tolist()),
        frames,
    )
    records = map(Record, repeat(RecordType.FRAME), none, none, recorded, none, none)
    envelopes = dict(
        zip(
            e.pos.tolist(),
            zip(e.frame.tolist(), e.seq.tolist(), e.ts.tolist(), e.direction.tolist(), strict=True),
            strict=True,
        )
    )
    return r.pos.tolist(), ends, run_stops(r.pos, r.end), records, envelopes


def _native_frame_run() -> Callable[[bytes, int, int], Any] | None:
    """The C builder of frame records (``_speedups.frame_run``), set up for our classes.

    None when the C module was not built, or when the classes are not the
    slotted dataclasses with plain defaults it fills (then the NumPy path runs).
    """
    c = speedups()
    if c is None:
        return None

    def spec(cls: type, leading: tuple[str, ...]) -> tuple[type, tuple[Any, ...], tuple[Any, ...]]:
        # frame_run fills the leading fields (by position; unfilled ones start as None)
        # and leaves the others at their defaults: plain values, no default_factory
        fields = dataclasses.fields(cls)
        defaults = tuple(None if f.name in leading else f.default for f in fields)
        if tuple(f.name for f in fields[: len(leading)]) != leading or any(
            d is dataclasses.MISSING for d in defaults
        ):
            raise TypeError(f"{cls.__name__}: fields are not what frame_run fills")
        return cls, tuple(cls.__dict__[f.name] for f in fields), defaults

    try:
        c.configure(
            spec(Record, ("type", "header", "cmd_start", "frame")),  # the two between stay None
            spec(RecordedFrame, ("seq", "timestamp", "direction", "frame")),
            spec(Frame, ("type", "stream", "data")),
            RecordType.FRAME,
            _FRAME_TYPE_BY_BYTE,
            _DIRECTION_BY_BYTE,
            Frame.from_map,
        )
    except TypeError:
        return None
    run: Callable[[bytes, int, int], Any] = c.frame_run
    return run


_FRAME_RUN = _native_frame_run()


class RecordingReader:
    """Stream the records of a recording with their byte offsets.

    ``source`` is a path or a binary file object. Records are decoded from
    large in-memory chunks (faster than decoding from a buffered file), one
    at a time, so memory stays bounded by the chunk size and the largest record.
    Frame records in Go's byte layout are parsed straight from the chunk
    (with NumPy, when it is installed) instead of through cbor2's dicts; the
    records, offsets and errors are the same either way.

    ``offset`` is the end of the record last yielded; after iteration stops,
    the end of the last complete record.
    A cut inside a record raises :class:`TruncatedError` at that record's
    offset; a clean end with no footer raises :class:`MissingFooterError`
    when ``require_footer`` (the default); bytes that are not a record raise
    :class:`RemoteProtocolError` with their offset, as does a record
    announcing more than ``max_record_size`` bytes (refused from its head,
    without reading it). Everything complete before the problem has been
    yielded by then. ``fast_path=False`` decodes every record with cbor2
    (the reference the fast path is compared with); chunks shorter than
    ``bulk_min_bytes`` skip the NumPy parse (its fixed cost outweighs the gain).
    Where the C module of :mod:`agentproto.layout` is built, it parses and
    builds the frame records instead of NumPy (``native=False``: NumPy only).
    """

    def __init__(
        self,
        source: Source,
        *,
        start: int = 0,
        require_footer: bool = True,
        max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
        chunk_size: int = CHUNK_SIZE,
        fast_path: bool = True,
        bulk_min_bytes: int = BULK_MIN_BYTES,
        native: bool = True,
    ):
        self._source = source
        self.fast_path = fast_path
        self.native = native
        self.bulk_min_bytes = bulk_min_bytes
        self._offset = start
        self._run: Any = None  # the C run of records being yielded, if any
        self.require_footer = require_footer
        self.max_record_size = max_record_size
        self.chunk_size = max(1, chunk_size)
        self.saw_footer = False

    @property
    def offset(self) -> int:
        """The file offset after the last record yielded (see the class doc)."""
        run = self._run
        return self._offset if run is None else int(run.end)

    @offset.setter
    def offset(self, value: int) -> None:
        self._offset = value

    def _open(self) -> tuple[Any, bool]:
        if isinstance(self._source, (str, os.PathLike)):
            try:
                fp = open(self._source, "rb", buffering=0)  # noqa: SIM115
            except IsADirectoryError:
                raise IsADirectoryError(f"{os.fspath(self._source)}: is a directory") from None
            return fp, True
        return self._source, False

    def raw_items(
        self, bulk: Callable[[bytes], BulkIndex | None] | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(offset, decoded CBOR item)`` without converting to :class:`Record`.

        ``bulk(chunk)`` (for chunks of at least ``bulk_min_bytes``) may parse
        records in bulk: it returns the starts, ends and runs of the records
        it parsed and a table of their values (see :data:`BulkIndex`: here the
        "items" are that table). When the walk from record to record reaches
        a run of them, it is yielded whole as ``(offset of its first record,
        ParsedRun)`` instead of being decoded; a frame record at one of its
        envelopes comes as a finished :class:`Record` (its frame map decoded
        alone, as ``__iter__`` does). The records around, their order and the
        errors stay those of the plain decode. ``reclab check`` reads this way.
        """
        fp, owned = self._open()
        try:
            if self.offset:
                fp.seek(self.offset)
            yield from self._scan(fp, raw=True, bulk=bulk)
        finally:
            if owned:
                fp.close()

    def __iter__(self) -> Iterator[Record]:
        fp, owned = self._open()
        try:
            if self.offset:
                fp.seek(self.offset)
            if not self.fast_path:
                yield from self._scan(fp, raw=False, bulk=None)
            elif self.native and _FRAME_RUN is not None:
                yield from self._scan(fp, raw=False, bulk=None, walk=_FRAME_RUN)
            else:
                bulk = _frame_index if self.native else partial(_frame_index, native=False)
                yield from self._scan(fp, raw=False, bulk=bulk)
        finally:
            if owned:
                fp.close()
        if self.require_footer and not self.saw_footer:
            raise MissingFooterError(
                "recording has no session footer (the writer did not close it)",
                offset=self.offset,
            )

    def _scan(
        self,
        fp: Any,
        *,
        raw: bool,
        bulk: Callable[[bytes], BulkIndex | None] | None,
        walk: Callable[[bytes, int, int], Any] | None = None,
    ) -> Iterator[Any]:
        """The one chunk loop: ``(offset, item)`` pairs when ``raw``, else :class:`Record`s.

        Records that ``bulk`` parsed in a chunk (see :func:`_frame_index`) are
        taken from it, in runs, when the walk from record to record reaches
        them; or, with ``walk`` (the C ``frame_run``), each run of frame
        records is built where the walk stands. The rest is decoded with cbor2
        (through :class:`ItemDecoder`, which can only move forward) and
        converted unless ``raw``.
        """
        read = fp.read
        # the C decoder of plain CBOR too, except on the reference path (all cbor2)
        plain = self.native and (bulk is not None or walk is not None)
        convert = _record_from_map
        footer = RecordType.SESSION_FOOTER
        frame_record = RecordType.FRAME
        directions = _DIRECTION_BY_BYTE
        buf = b""
        base = self._offset  # file offset of buf[0]
        pos = 0  # next record's position in buf
        eof = False
        no_envelopes: dict[int, tuple[int, int, int, int]] = {}
        while True:
            if pos >= len(buf):
                if eof:
                    return
                buf, base, pos = b"", base + pos, 0
                buf = read(self.chunk_size)
                if not buf:
                    return
            n = len(buf)
            index = bulk(buf) if bulk is not None and n >= self.bulk_min_bytes else None
            if index is None:
                starts: list[int] = []
                ends: list[int] = []
                stops: list[int] = []
                items: Iterator[Any] = iter(())
                envelopes = no_envelopes
            else:
                starts, ends, stops, items, envelopes = index
            m = len(starts)
            i = 0  # the next parsed record that may be reached
            made = 0  # items taken from ``items`` so far
            envelope = envelopes.get
            decode = ItemDecoder(buf, plain=plain).decode
            # a frame map alone sits two levels higher than in its record
            decode_frame = ItemDecoder(buf, max_depth=MAX_DEPTH - 2, plain=plain).decode
            while pos < n:
                if walk is not None:
                    # C builds the run of frame records from here, up to the next other record
                    self._run = run = walk(buf, pos, base)
                    yield from run
                    self._run = None
                    pos, start = run.pos, run.envelope
                    self._offset = base + pos
                    if pos >= n:
                        continue
                else:
                    if i < m and starts[i] < pos:
                        i = bisect_left(starts, pos, i)
                    if i < m and starts[i] == pos:
                        if made < i and not raw:  # candidates passed over (inside payloads)
                            for _skipped in islice(items, i - made):
                                pass
                        # a run of parsed records, each starting where the last ended
                        stop = stops[i]
                        if raw:  # the whole run at once; the caller reads the table
                            self._offset = base + ends[stop - 1]
                            yield base + pos, ParsedRun(items, base, i, stop)
                            pos = ends[stop - 1]
                            i = stop
                            continue
                        for item, end in zip(islice(items, stop - i), ends[i:stop], strict=True):
                            self._offset = base + end
                            yield item
                        pos = ends[stop - 1]
                        i = made = stop
                        continue
                    start = envelope(pos)
                if start is not None:
                    # another frame in Go's envelope: cbor2 decodes the frame map alone
                    try:
                        fmap, end = decode_frame(start[0])
                        other = Frame.from_map(fmap) if fmap.__class__ is dict else None
                    except Exception:  # cut, garbage, a bad field: the general path says
                        other = None
                    if other is not None:
                        record = Record(
                            frame_record,
                            None,
                            None,
                            RecordedFrame(start[1], start[2], directions[start[3]], other),
                            None,
                            None,
                        )
                        self._offset = base + end
                        yield (base + pos, record) if raw else record
                        pos = end
                        continue
                try:
                    item, end = decode(pos)
                except Incomplete:
                    break  # the record goes past this chunk: read more below
                except RemoteProtocolError as exc:
                    raise type(exc)(exc.message, offset=base + pos) from None
                if raw:
                    self._offset = base + end
                    yield base + pos, item
                else:
                    try:
                        record = convert(item)
                    except RemoteProtocolError as exc:
                        raise exc.at(base + pos) from None
                    if record.type == footer:
                        self.saw_footer = True
                    self._offset = base + end
                    yield record
                pos = end
            else:
                continue
            buf, base, pos, eof = self._refill(read, buf, base, pos, eof)

    def _refill(
        self, read: Any, buf: bytes, base: int, pos: int, eof: bool
    ) -> tuple[bytes, int, int, bool]:
        """A record is cut at the end of the chunk: keep its bytes and read more.

        Returns the new ``(buf, base, pos, eof)``; raises FrameTooLargeError for
        a record announcing too many bytes or entries, TruncatedError when the
        file ended.
        """
        self._check_size(buf, pos, base)
        if eof:
            raise TruncatedError(
                f"recording is cut inside a record ({len(buf) - pos} bytes after the "
                "last complete record)",
                offset=base + pos,
            )
        more = read(max(self.chunk_size, len(buf) - pos))
        return buf[pos:] + more, base + pos, 0, not more

    def _check_size(self, buf: bytes, pos: int, base: int) -> None:
        """Refuse a record whose heads announce more than ``max_record_size`` bytes.

        Also refuses, from the heads alone, one breaking Go's limits on
        entries and nesting (:class:`LimitExceededError`).
        """
        try:
            end = item_end(buf, pos)
        except Incomplete as more:
            end = more.needed
        except LimitExceededError as exc:
            raise LimitExceededError(exc.message, offset=base + pos) from None
        except RemoteProtocolError:
            return  # an indefinite length: cbor2 decides once the bytes are there
        if end - pos > self.max_record_size:
            raise FrameTooLargeError(
                f"record of at least {end - pos} bytes is larger than {self.max_record_size} bytes",
                offset=base + pos,
            )


def iter_records(source: Source, **options: Any) -> Iterator[Record]:
    """Stream the records of a recording (path or binary file); see :class:`RecordingReader`."""
    return iter(RecordingReader(source, **options))


def read_recording(source: Source, **options: Any) -> list[Record]:
    """Read all records, like Go's ``ReadRecording``.

    On a cut or footer-less recording the :class:`TruncatedError` raised
    carries the complete records in ``exc.records``, so a caller can report
    the cut and carry on with what was there.

    The cyclic garbage collector is paused while the list is built (and
    restored after, if it was on): the records hold no cycles, and its full
    passes over a growing list of millions of objects cost more than
    reading them.
    """
    records: list[Record] = []
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        records.extend(RecordingReader(source, **options))
    except RemoteProtocolError as exc:
        if isinstance(exc, TruncatedError):
            exc.records = list(records)
        raise
    finally:
        if collecting:
            gc.enable()
    return records
