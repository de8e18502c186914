"""A recording opened for analysis: an index of records, commands, frames on demand.

:func:`open_recording` reads the session header and (by default) indexes the
whole file: the byte offset of every record in a compact ``array('Q')``, one
byte per record saying what it is, and per-command aggregates (frame count,
bytes per stream, signals, exit code...). Frames are not turned into
dataclasses while indexing; :meth:`Recording.record` and
:meth:`Recording.frames` decode them on demand by offset, so a viewer can show
any frame of a multi-GB file without holding the file in memory.

Indexing speed comes from not decoding what nobody asked for: data and EOF
frame records (nearly all of a real recording) are parsed in bulk with NumPy
straight from the bytes the Go encoder lays out, and only the other records
go through cbor2. On two or more cores, a file of more than 64 MiB is split:
a helper process indexes the second half from a candidate record boundary
that this process must land on exactly (see :meth:`Recording._scan_parallel`).

A recording cut by a crashed writer, or with garbage in the middle, keeps
everything before the problem and says where it is in
:attr:`Recording.truncation`. A recording that is still being written is
followed with :meth:`Recording.refresh`, which indexes what was appended.

Thread use: one thread may index (``index``/``refresh``) while others read
records and aggregates; reads use ``os.pread`` and never move a shared file
position. Iterate over ``list(rec.commands.values())`` if indexing may be
adding commands at the same time.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from agentproto import (
    Direction,
    ExecMsg,
    Frame,
    FrameType,
    Record,
    RecordType,
    RemoteProtocolError,
    SessionFooter,
    SessionHeader,
    TruncatedError,
)
from agentproto.codec import Incomplete, ItemDecoder, item_end
from agentproto.layout import (
    FRAME_RECORD_PREFIX,
    MAX_RESYNCS,
    frame_envelope,
    next_record_start,
    parse_frame_records,
)
from agentproto.recording import DEFAULT_MAX_RECORD_SIZE
from agentproto.types import MAX_DEPTH
from agentproto.wire import describe_value

from .errors import RecordingError, UnknownCommandError

__all__ = [
    "KIND_COMMAND_END",
    "KIND_COMMAND_START",
    "KIND_OTHER_FRAME",
    "KIND_SESSION_FOOTER",
    "KIND_SESSION_HEADER",
    "KIND_UNKNOWN_RECORD",
    "Command",
    "Damage",
    "FrameRef",
    "Recording",
    "RecordingError",
    "Truncation",
    "UnknownCommandError",
    "open_recording",
]

ProgressCallback = Callable[[int, int], None]

# What each record is, one byte per record in Recording.kinds: a frame record
# stores its frame type (1..12, KIND_OTHER_FRAME for types this version does
# not know), other records a code of their own.
KIND_OTHER_FRAME = 200
KIND_SESSION_HEADER = 251
KIND_COMMAND_START = 252
KIND_COMMAND_END = 253
KIND_SESSION_FOOTER = 254
KIND_UNKNOWN_RECORD = 255
_RECORD_KINDS = {
    RecordType.SESSION_HEADER: KIND_SESSION_HEADER,
    RecordType.COMMAND_START: KIND_COMMAND_START,
    RecordType.COMMAND_END: KIND_COMMAND_END,
    RecordType.SESSION_FOOTER: KIND_SESSION_FOOTER,
}

_SEND = int(Direction.SEND)
_PROGRESS_STEP = 4 * 1024 * 1024  # report progress every few MiB
_CHUNK = 4 * 1024 * 1024  # bytes read at once while indexing
# Below this many bytes to index, a helper process costs more than it saves.
_PARALLEL_MIN_BYTES = 64 * 1024 * 1024
_WORKER_WAIT = 120.0  # the longest wait for the helper's last segments
_SEGMENT = 32 * 1024 * 1024  # the helper sends its index in pieces of about this size
_WAIT_BYTES = 2 * _SEGMENT  # wait for the helper only when less than this is left
# Bulk (NumPy) indexing of data frames; False selects the record-by-record
# reference path (tests compare the two).
_VECTOR_SCAN = True
_VECTOR_MIN_BYTES = 64 * 1024  # below this, a chunk is indexed record by record


@dataclass(slots=True)
class Truncation:
    """Where and why reading stopped before a clean end.

    ``kind`` is ``"cut"`` (the file ends inside a record: a crashed writer, or
    a live recording mid-write), ``"garbage"`` (bytes that are not a record)
    or ``"no-footer"`` (a clean end after a complete record but no session
    footer: the writer did not close it, or is still writing). ``offset`` is
    the end of the last complete record.
    """

    offset: int
    message: str
    kind: str


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes in the middle of a recording that are not records, skipped by resync.

    ``offset`` is where the damage starts (the end of the last good record
    before it), ``size`` how many bytes were skipped to the next plausible
    record, ``message`` what was wrong at ``offset``.
    """

    offset: int
    size: int
    message: str


@dataclass(slots=True, eq=False)
class Command:
    """One remote command of the session and what the index learned about it.

    ``start_time``/``end_time`` are Unix nanoseconds from the command start
    and end records (None when the recording lacks them); ``exit_code`` is the
    code of the command-end record, ``exit_frame_code`` that of an Exit frame
    sent by the agent. ``bytes_sent``/``bytes_received`` count data bytes per
    stream number by direction. ``record_indexes`` are the indexes (into the
    recording) of this command's frame records, in file order.
    """

    seq: int
    exec: ExecMsg = field(default_factory=ExecMsg)
    start_time: int | None = None
    end_time: int | None = None
    exit_code: int | None = None
    exit_frame_code: int | None = None
    frame_count: int = 0
    first_frame_time: int | None = None
    last_frame_time: int | None = None
    bytes_sent: dict[int, int] = field(default_factory=dict)
    bytes_received: dict[int, int] = field(default_factory=dict)
    signals: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    log_count: int = 0
    file_op_count: int = 0
    record_indexes: array[int] = field(default_factory=lambda: array("Q"))
    start_index: int | None = None  # record index of the command start
    end_index: int | None = None  # record index of the command end

    @property
    def complete(self) -> bool:
        """True when the recording has this command's end record."""
        return self.end_time is not None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end record (None unless both are known)."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1e9

    @property
    def argv(self) -> list[str]:
        """The command's argument vector (empty when the exec had none)."""
        return list(self.exec.argv or [])

    @property
    def path(self) -> str:
        """The executable path of the exec request."""
        return self.exec.path

    @property
    def cwd(self) -> str:
        """The working directory of the exec request ("" means the agent's own)."""
        return self.exec.cwd


@dataclass(slots=True)
class FrameRef:
    """A recorded frame decoded on demand, with where it is in the file."""

    index: int
    offset: int
    seq: int
    timestamp: int
    direction: Direction | int
    frame: Frame


_RECORDED_FRAME_KEYS = frozenset(("seq", "ts", "dir", "frame"))


def _uint(value: Any) -> bool:
    return value.__class__ is int and value >= 0


def _u32(value: Any) -> bool:
    return value.__class__ is int and 0 <= value <= 0xFFFF_FFFF


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_DATA, _EOF = int(FrameType.DATA), int(FrameType.EOF)
_LAST_FRAME_TYPE = max(FrameType)
_DATA_KEYS = frozenset(("t", "s", "d"))


def _checked_frame(frame: dict[Any, Any]) -> Frame | None:
    """The frame map read by Go's rules (the wire table), None if Go would refuse it."""
    try:
        return Frame.from_map(frame)
    except RemoteProtocolError:
        return None


class _Indexer:
    """What each kind of record changes in the index; shared by every scanning path.

    The methods take decoded maps, read only the fields the aggregates need
    and check only their types. They change the commands (exec, times,
    bytes, signals...) but not the per-record bookkeeping (offsets, kinds,
    frame counts, record indexes, first/last frame times), which the scanner
    does in bulk. A map that is not a record raises
    :class:`RemoteProtocolError`.
    """

    def __init__(self, rec: Recording):
        self.rec = rec

    def record(self, index: int, offset: int, item: Any) -> tuple[int, int, int]:
        """Apply one decoded record; return (kind, seq, ts), seq -1 for non-frames."""
        if item.__class__ is not dict:
            raise RemoteProtocolError(
                f"a record is a CBOR map, found {type(item).__name__}", offset=offset
            )
        rtype: Any = item.get("type")
        if rtype is None and item:
            item = _canonical(item, offset)  # keys spelled in another case
            rtype = item.get("type")
        if rtype == 3:
            return self._frame(item.get("frame"), offset, item)
        if rtype.__class__ is int and rtype in _RECORD_KINDS:
            return self._other(index, item, offset), -1, 0
        if _uint(rtype) and 0 < rtype <= 0xFF:
            return KIND_UNKNOWN_RECORD, -1, 0  # a newer writer's record type: keep, skip
        raise RemoteProtocolError(
            f"not a record: the map has no valid 'type' (found {describe_value(rtype)})",
            offset=offset,
        )

    def _frame(self, rf: Any, offset: int, item: dict[str, Any]) -> tuple[int, int, int]:
        seq: Any
        ts: Any
        direction: Any
        frame: Any
        if rf.__class__ is dict:
            seq = rf.get("seq")
            ts = rf.get("ts")
            direction = rf.get("dir")
            frame = rf.get("frame")
        else:
            seq = ts = direction = frame = None
        kind = -1
        if (
            _u32(seq)
            and ts.__class__ is int
            and _I64_MIN <= ts <= _I64_MAX
            and direction.__class__ is int
            and 0 <= direction <= 0xFF
            and frame.__class__ is dict
            and rf.keys() <= _RECORDED_FRAME_KEYS
        ):
            kind = self.frame(seq, direction, frame)
        if kind < 0:
            # Unusual spelling (Go accepts keys in any case) or a broken record:
            # let the full decoder normalise it or say what is wrong.
            if not item:  # already canonical and still not a frame
                raise RemoteProtocolError("frame record without a valid frame", offset=offset)
            return self._frame(_canonical(item, offset).get("frame"), offset, {})
        return kind, seq, ts

    def frame(self, seq: int, direction: int, frame: Any) -> int:
        """Count one frame's content into its command; return its kind, -1 if the map is odd.

        ``frame`` is the raw frame map. Nothing is changed when -1 is returned
        (keys in another case, wrong types, values out of the Go field's
        range), so the caller can normalise the record, or have the full
        decoder say what is wrong with it. Data and EOF frames are checked
        field by field (the hot path); any other frame through the wire table
        (:meth:`Frame.from_map`), so that every frame the index counts is one
        Go would read, and the tables can trust the raw maps.
        """
        ftype = frame.get("t", 0)
        if not (ftype.__class__ is int and 0 <= ftype <= 0xFF and frame.keys() <= _FRAME_KEYS):
            return -1
        parsed: Frame | None = None
        if ftype in (_DATA, _EOF):
            stream = frame.get("s", 0)
            data = frame.get("d", b"")
            if not (_u32(stream) and data.__class__ is bytes):
                return -1
            if len(frame) > 3 or (len(frame) == 3 and frame.keys() != _DATA_KEYS):
                parsed = _checked_frame(frame)  # more fields than Go writes: check them all
                if parsed is None:
                    return -1
        else:
            parsed = _checked_frame(frame)
            if parsed is None:
                return -1
        cmd = self.rec.commands.get(seq)
        if cmd is None:
            cmd = self.rec._new_command(seq)
        if ftype == _DATA:
            counts = cmd.bytes_sent if direction == _SEND else cmd.bytes_received
            counts[stream] = counts.get(stream, 0) + len(data)
        elif parsed is None:
            pass
        elif ftype == FrameType.SIGNAL:
            cmd.signals.append(parsed.signal)
        elif ftype == FrameType.EXIT:
            cmd.exit_frame_code = parsed.code
        elif ftype == FrameType.ERROR:
            cmd.errors.append(parsed.error)
        elif ftype == FrameType.LOG:
            cmd.log_count += 1
        elif ftype == FrameType.FILE_OP:
            cmd.file_op_count += 1
        elif ftype == FrameType.EXEC and cmd.start_index is None and parsed.exec is not None:
            cmd.exec = parsed.exec
        return ftype if 0 < ftype <= _LAST_FRAME_TYPE else KIND_OTHER_FRAME

    def _other(self, index: int, item: dict[str, Any], offset: int) -> int:
        try:
            record = Record.from_map(item)
        except RemoteProtocolError as exc:
            raise exc.at(offset) from None
        rec = self.rec
        if record.header is not None:
            if rec.header is None:
                rec.header = record.header
            return KIND_SESSION_HEADER
        if record.cmd_start is not None:
            start = record.cmd_start
            cmd = rec.commands.get(start.seq)
            if cmd is None:
                cmd = rec._new_command(start.seq)
            cmd.exec = start.exec
            cmd.start_time = start.start_time
            cmd.start_index = index
            return KIND_COMMAND_START
        if record.cmd_end is not None:
            end = record.cmd_end
            cmd = rec.commands.get(end.seq)
            if cmd is None:
                cmd = rec._new_command(end.seq)
            cmd.end_time = end.end_time
            cmd.exit_code = end.exit_code
            cmd.end_index = index
            return KIND_COMMAND_END
        if record.footer is not None:
            rec.footer = record.footer
            return KIND_SESSION_FOOTER
        raise RemoteProtocolError(
            f"record of type {int(record.type)} has no payload", offset=offset
        )


class _Incomplete(Exception):
    """The record at the scan position goes past the end of the buffer."""


def _decoders(buf: bytes) -> tuple[ItemDecoder, ItemDecoder]:
    """A buffer's decoders for whole records and for frame maps (two levels deeper)."""
    return ItemDecoder(buf), ItemDecoder(buf, max_depth=MAX_DEPTH - 2)


def _decode_one(
    indexer: _Indexer,
    buf: bytes,
    decoders: tuple[ItemDecoder, ItemDecoder],
    pos: int,
    base: int,
    index: int,
) -> tuple[int, int, int, int]:
    """Decode and apply the record at ``buf[pos]``: (end, kind, seq, ts); raise _Incomplete.

    A frame record in the Go encoder's layout has only its frame map decoded
    (cheaper than the whole record); anything else is decoded whole.
    ``decoders`` are the buffer's record and frame-map decoders; the end
    returned is always after ``pos`` (see :class:`ItemDecoder`).
    """
    envelope = frame_envelope(buf, pos)
    if envelope is not None:
        try:
            frame, end = decoders[1].decode(envelope[0])
        except Incomplete:
            raise _Incomplete from None
        except RemoteProtocolError:  # garbage: the full decode below says what
            frame = None
        if frame.__class__ is dict:
            _start, seq, ts, direction = envelope
            kind = indexer.frame(seq, direction, frame)
            if kind >= 0:
                return end, kind, seq, ts
    try:
        item, end = decoders[0].decode(pos)
    except Incomplete:
        raise _Incomplete from None
    except RemoteProtocolError as exc:
        raise type(exc)(exc.message, offset=base + pos) from None
    kind, seq, ts = indexer.record(index, base + pos, item)
    return end, kind, seq, ts


def _simple_frames(buf: bytes, lo: int) -> dict[str, Any]:
    """The data and EOF frame records in Go's layout in ``buf[lo:]``, parsed in bulk.

    :func:`agentproto.layout.parse_frame_records` finds them; this keeps the
    data and EOF frames on streams below 256 (what the bulk bookkeeping of
    :meth:`Recording._commit` counts). Returns sorted NumPy arrays ``pos``,
    ``end``, ``seq``, ``ts``, ``dir``, ``t``, ``stream``, ``size`` and
    ``data`` (where the payload starts). A candidate may still be a
    coincidence inside a payload: the caller only trusts one that the chain
    of records reaches.
    """
    import numpy as np

    parsed = parse_frame_records(buf, lo)
    if parsed is None:
        empty = np.zeros(0, dtype=np.int64)
        return dict.fromkeys(
            ("pos", "end", "seq", "ts", "dir", "t", "stream", "size", "data"), empty
        )
    r = parsed[0]
    ok = ((r.ftype == _DATA) | (r.ftype == _EOF)) & (r.stream < 256)
    return {
        "pos": r.pos[ok],
        "end": r.end[ok],
        "seq": r.seq[ok],
        "ts": r.ts[ok],
        "dir": r.direction[ok],
        "t": r.ftype[ok],
        "stream": r.stream[ok],
        "size": (r.end - r.data)[ok],
        "data": r.data[ok],
    }


class Recording:
    """A session recording opened for analysis (see the module docstring).

    Create with :func:`open_recording`. ``record_count`` records are indexed
    so far; ``commands`` maps sequence numbers to :class:`Command` in
    ascending order once indexing finishes. ``size`` is the file size when
    indexing last ran.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        _check_path(self.path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise RecordingError(f"{self.path}: {exc.strerror or exc}") from None
        self.size = os.fstat(self._fd).st_size
        self.header: SessionHeader | None = None
        self.footer: SessionFooter | None = None
        self.truncation: Truncation | None = None
        self.record_count = 0
        self.commands: dict[int, Command] = {}
        self._offsets: array[int] = array("Q")
        self._kinds: array[int] = array("B")
        self._end = 0  # end of the last complete record: where indexing resumes
        self.damage: list[Damage] = []  # regions skipped by resync, in file order
        # record index -> its end, for the records followed by damage (their end
        # is not the next record's offset)
        self._gaps: dict[int, int] = {}
        self._lock = threading.Lock()  # one indexer at a time
        self._indexer = _Indexer(self)
        self._sorted = True
        self.max_record_size = DEFAULT_MAX_RECORD_SIZE

    # --- indexing -----------------------------------------------------------------

    @property
    def kinds(self) -> array[int]:
        """One byte per indexed record: the frame type, or a ``KIND_*`` code."""
        return self._kinds

    @property
    def indexed_bytes(self) -> int:
        """Offset just past the last complete record indexed."""
        return self._end

    def index(self, progress: ProgressCallback | None = None) -> None:
        """Index every record not yet indexed, up to the end of the file.

        ``progress(bytes_done, total)`` is called every few MiB and at the
        end. Stops at a cut, garbage or the end; :attr:`truncation` says
        which. Calling it again only indexes what was appended since.
        """
        self._scan(progress=progress)

    def refresh(self) -> int:
        """Index records appended since the last call (a live recording); return how many."""
        before = self.record_count
        self._scan()
        return self.record_count - before

    def _scan(self, *, progress: ProgressCallback | None = None, limit: int | None = None) -> None:
        with self._lock:
            fd = self._require_open()
            self.size = total = os.fstat(fd).st_size
            trunc: Truncation | None = None
            parallel = limit is None and self._parallel_ok(total)
            while True:
                try:
                    if parallel:
                        parallel = False
                        self._scan_parallel(fd, total, progress)
                    self._scan_items(fd, total, progress, limit)
                except TruncatedError as exc:
                    trunc = Truncation(self._end, _plain(exc), "cut")
                except RemoteProtocolError as exc:
                    if self._resync(fd, exc):
                        continue  # damage skipped: index what follows it
                    trunc = Truncation(self._end, _plain(exc), "garbage")
                except OSError as exc:
                    raise RecordingError(f"{self.path}: {exc.strerror or exc}") from None
                break
            if trunc is not None and self._end == 0 and self.record_count == 0:
                self._reject_start(trunc)
            if trunc is None and limit is None and self.footer is None and self.record_count:
                trunc = Truncation(
                    self._end,
                    "the recording has no session footer (the writer did not close it)",
                    "no-footer",
                )
            if limit is None or trunc is not None:
                self.truncation = trunc
            self._sort_commands()
            if progress is not None:
                progress(self._end if trunc else total, total)

    def _scan_items(
        self,
        fd: int,
        total: int,
        progress: ProgressCallback | None,
        limit: int | None,
        stop: int | None = None,
    ) -> None:
        """Index records from ``self._end`` on; raise at a cut or garbage.

        Reads large chunks with ``pread`` and indexes each in memory (see
        :meth:`_chunk_vector`). A record cut at the end of a chunk is
        completed with exactly the bytes it needs, found by reading CBOR
        heads, so a huge record costs one extra read. With ``stop``, bytes
        from that offset on are not read (a record crossing it looks cut).
        ``limit`` stops after that many records.
        """
        base = self._end  # file offset of buf[0]
        first = min(_CHUNK, max(total - base, 0)) or 1
        buf = os.pread(fd, first if stop is None else min(first, stop - base), base)
        pos = 0
        next_report = base + _PROGRESS_STEP
        vector = limit is None and _VECTOR_SCAN
        stop_at = len(self._offsets) + limit if limit is not None else -1
        while pos < len(buf):
            if vector and len(buf) - pos >= _VECTOR_MIN_BYTES:
                pos = self._chunk_vector(buf, pos, base)
            elif self._chunk_records(buf, pos, base, stop_at):
                return
            pos = self._end - base
            if progress is not None and base + pos >= next_report:
                progress(base + pos, total)
                next_report = base + pos + _PROGRESS_STEP
            # Refill: keep the unfinished record's bytes, add what it needs.
            rest = buf[pos:]
            need = _CHUNK
            if rest:
                try:
                    item_end(rest)
                except RemoteProtocolError as exc:
                    raise RemoteProtocolError(exc.message, offset=base + pos) from None
                except Incomplete as more:
                    if more.needed > self.max_record_size:
                        raise RemoteProtocolError(
                            f"record of at least {more.needed} bytes is larger than the "
                            f"limit of {self.max_record_size}",
                            offset=base + pos,
                        ) from None
                    need = max(need, more.needed - len(rest))
                else:
                    raise RemoteProtocolError("undecodable CBOR record", offset=base + pos)
            base += pos
            pos = 0
            if stop is not None:
                need = min(need, stop - base - len(rest))
            more_bytes = os.pread(fd, need, base + len(rest)) if need > 0 else b""
            if not more_bytes:
                if rest:
                    raise TruncatedError(
                        f"the recording is cut inside a record ({len(rest)} bytes after "
                        "the last complete record)",
                        offset=base,
                    )
                return
            buf = rest + more_bytes

    def _resync(self, fd: int, exc: RemoteProtocolError) -> bool:
        """After bytes that are not a record, skip to the next plausible record, as check does.

        Records before the damage stay indexed and the skipped region is added
        to :attr:`damage`; returns False (nothing changed) when there is no
        record to resume at, at the very start of the file (then it is not a
        recording), or after too many damaged regions.
        """
        bad = max(exc.offset if exc.offset is not None else self._end, self._end)
        if not self.record_count or len(self.damage) >= MAX_RESYNCS:
            return False
        resume = next_record_start(lambda size, at: os.pread(fd, size, at), bad + 1)
        if resume is None:
            return False
        self._gaps.setdefault(self.record_count - 1, self._end)  # damage may follow damage
        self.damage.append(Damage(self._end, resume - self._end, _plain(exc)))
        self._end = resume
        return True

    def _book(self, seq: int, index: int, ts: int) -> None:
        """The per-record bookkeeping of one frame record (see _commit for the bulk way)."""
        cmd = self.commands[seq]
        cmd.frame_count += 1
        if cmd.first_frame_time is None:
            cmd.first_frame_time = ts
        cmd.last_frame_time = ts
        cmd.record_indexes.append(index)

    def _chunk_records(self, buf: bytes, pos: int, base: int, stop_at: int) -> bool:
        """Index the complete records of ``buf[pos:]`` one by one; True when ``stop_at`` is hit.

        The reference path: every record is decoded with cbor2 (its frame map
        only, for frame records in the Go layout).
        """
        indexer = self._indexer
        offsets = self._offsets
        kinds = self._kinds
        decoders = _decoders(buf)
        n = len(buf)
        try:
            while pos < n:
                index = len(offsets)
                try:
                    end, kind, seq, ts = _decode_one(indexer, buf, decoders, pos, base, index)
                except _Incomplete:
                    break
                offsets.append(base + pos)
                kinds.append(kind)
                if seq >= 0:
                    self._book(seq, index, ts)
                pos = end
                if len(offsets) == stop_at:
                    return True
            return False
        finally:
            self.record_count = len(offsets)
            self._end = base + pos

    def _chunk_vector(self, buf: bytes, pos: int, base: int) -> int:
        """Index the complete records of ``buf[pos:]``, data frames in bulk; return the end.

        :func:`_simple_frames` parses every data/EOF frame-record candidate
        at once. Walking the chain of records from ``pos``, each run of
        consecutive parsed candidates is taken whole (a candidate is trusted
        only when the previous record ends exactly where it starts); any
        other record is decoded on its own. The bookkeeping of the chunk is
        then done with NumPy in :meth:`_commit`, also when garbage stops the
        walk (everything before it stays indexed).
        """
        sf = _simple_frames(buf, pos)
        starts = sf["pos"].tolist()
        ends = sf["end"].tolist()
        m = len(starts)
        # Runs end where a parsed record is not followed by the next candidate.
        breaks = [i for i in range(m - 1) if ends[i] != starts[i + 1]] + [m - 1]
        runs: list[tuple[int, int]] = []
        singles: list[tuple[int, int, int, int]] = []  # (pos, kind, seq, ts)
        indexer = self._indexer
        decoders = _decoders(buf)
        n = len(buf)
        index0 = len(self._offsets)
        count = 0
        i = bisect_left(starts, pos)
        try:
            while pos < n:
                if i < m and starts[i] == pos:
                    k = breaks[bisect_left(breaks, i)]
                    runs.append((i, k + 1))
                    count += k + 1 - i
                    pos = ends[k]
                    i = k + 1
                    if i < m and starts[i] != pos:
                        i = bisect_left(starts, pos, i)
                    continue
                try:
                    end, kind, seq, ts = _decode_one(
                        indexer, buf, decoders, pos, base, index0 + count
                    )
                except _Incomplete:
                    break
                singles.append((pos, kind, seq, ts))
                count += 1
                pos = end
                if i < m and starts[i] < pos:
                    i = bisect_left(starts, pos, i)
        finally:
            self._commit(base, sf, runs, singles)
            self.record_count = len(self._offsets)
            self._end = base + pos
        return pos

    def _commit(
        self,
        base: int,
        sf: dict[str, Any],
        runs: list[tuple[int, int]],
        singles: list[tuple[int, int, int, int]],
    ) -> None:
        """Append a chunk's records to the index: offsets, kinds, per-command bookkeeping."""
        import numpy as np

        if not runs and not singles:
            return
        take = np.zeros(len(sf["pos"]), dtype=bool)
        for a, b in runs:
            take[a:b] = True
        single = np.array(singles, dtype=np.int64).reshape(-1, 4)
        pos = np.concatenate([sf["pos"][take], single[:, 0]])
        order = np.argsort(pos, kind="stable")
        pos = pos[order]
        kind = np.concatenate([sf["t"][take], single[:, 1]])[order]
        seq = np.concatenate([sf["seq"][take], single[:, 2]])[order]
        ts = np.concatenate([sf["ts"][take], single[:, 3]])[order]
        index0 = len(self._offsets)
        self._offsets.frombytes((pos + base).astype(np.uint64).tobytes())
        self._kinds.frombytes(kind.astype(np.uint8).tobytes())
        frames = np.flatnonzero(seq >= 0)
        if len(frames):
            seqs, inverse, counts = np.unique(seq[frames], return_inverse=True, return_counts=True)
            grouped = frames[np.argsort(inverse, kind="stable")]
            start = 0
            for s, c in zip(seqs.tolist(), counts.tolist(), strict=True):
                mine = grouped[start : start + c]
                start += c
                cmd = self.commands.get(s)
                if cmd is None:
                    cmd = self._new_command(s)
                cmd.frame_count += c
                cmd.record_indexes.frombytes((mine + index0).astype(np.uint64).tobytes())
                if cmd.first_frame_time is None:
                    cmd.first_frame_time = int(ts[mine[0]])
                cmd.last_frame_time = int(ts[mine[-1]])
        data = take & (sf["t"] == 2)
        if data.any():
            # One key per (command, direction, stream); streams here are < 256.
            key = (sf["seq"][data] << 9) | ((sf["dir"][data] == _SEND) << 8) | sf["stream"][data]
            keys, inverse = np.unique(key, return_inverse=True)
            sums = np.bincount(inverse, weights=sf["size"][data])
            for k, total in zip(keys.tolist(), sums.tolist(), strict=True):
                cmd = self.commands[k >> 9]
                per_stream = cmd.bytes_sent if (k >> 8) & 1 else cmd.bytes_received
                stream = k & 0xFF
                per_stream[stream] = per_stream.get(stream, 0) + int(total)

    # --- indexing on two cores -------------------------------------------------------

    def _parallel_ok(self, total: int) -> bool:
        if total - self._end < _PARALLEL_MIN_BYTES or os.environ.get("RECLAB_INDEX_WORKERS") == "1":
            return False
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        return cpus >= 2

    def _scan_parallel(self, fd: int, total: int, progress: ProgressCallback | None) -> None:
        """Index the second half of the unindexed bytes in a helper process meanwhile.

        The second half starts at a *candidate* record boundary: the first
        frame-record head after the middle. It may be a coincidence inside a
        payload, so it is only trusted when this process, indexing the first
        half, lands exactly on it; otherwise the helper's work is dropped and
        indexing goes on here, sequentially. The helper sends its index in
        segments of about ``_SEGMENT`` bytes, each starting where the previous
        one ended; they are merged in order. Returns having indexed the
        first half and what the helper finished, or nothing when no
        candidate is found; the caller continues from ``self._end``.
        """
        base = self._end
        middle = base + (total - base) // 2
        window = os.pread(fd, 1 << 20, middle)
        found = window.find(FRAME_RECORD_PREFIX)
        if found < 0:
            return
        split = middle + found
        try:
            here = str(Path(__file__).resolve().parent.parent)  # so the helper finds reclab
            paths = [here, *filter(None, [os.environ.get("PYTHONPATH")])]
            helper = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER_CODE,
                    os.fspath(self.path),
                    str(split),
                    str(total),
                    str(_SEGMENT),
                ],
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return
        segments: queue.Queue[Any] = queue.Queue()

        def pump(stdout: Any) -> None:
            # Unpickle the helper's segments as they arrive; None marks its end.
            try:
                while True:
                    segments.put(pickle.load(stdout))
            except Exception:
                segments.put(None)

        threading.Thread(
            target=pump, args=(helper.stdout,), name="reclab-index-pump", daemon=True
        ).start()
        try:
            part: ProgressCallback | None = None
            if progress is not None:
                share = (total - base) / max(split - base, 1)

                def part(done: int, _total: int) -> None:
                    progress(base + int((done - base) * share), total)

            # A record crossing the split looks cut: the candidate was not a boundary.
            with contextlib.suppress(TruncatedError):
                self._scan_items(fd, total, part, None, stop=split)
            if self._end != split:
                return  # the candidate was not a boundary (or trouble came first): go on alone
            # Take the helper's segments as they come. When it lags behind (a
            # busy machine), do not wait for it: index the rest here instead.
            while True:
                left = total - self._end
                try:
                    state = segments.get(timeout=_WORKER_WAIT if left <= _WAIT_BYTES else 0.01)
                except queue.Empty:
                    return
                if not isinstance(state, dict) or state.get("start") != self._end:
                    return
                self._merge(state)
                if progress is not None:
                    progress(self._end, total)
        finally:
            if helper.poll() is None:
                helper.kill()
            helper.wait()
            if helper.stdout is not None:
                helper.stdout.close()

    def _merge(self, state: dict[str, Any]) -> None:
        """Append the index of the following bytes, made by a helper process."""
        import numpy as np

        shift = len(self._offsets)
        self._offsets.frombytes(state["offsets"])
        self._kinds.frombytes(state["kinds"])
        if self.header is None:
            self.header = state["header"]
        if state["footer"] is not None:
            self.footer = state["footer"]
        for b in state["commands"]:
            if shift:
                moved = np.frombuffer(b.record_indexes, dtype=np.uint64) + np.uint64(shift)
                b.record_indexes = array("Q", moved.tobytes())
                if b.start_index is not None:
                    b.start_index += shift
                if b.end_index is not None:
                    b.end_index += shift
            a = self.commands.get(b.seq)
            if a is None:
                self.commands[b.seq] = b
                self._sorted = False
                continue
            _merge_command(a, b)
        self.record_count = len(self._offsets)
        # A cut or garbage the helper met is found again, at once, by the
        # sequential scan that continues from here.
        self._end = state["end"]

    def _reject_start(self, trunc: Truncation) -> None:
        """A problem at byte 0: a cut header is a recording just begun, garbage is not one."""
        if trunc.kind == "cut":
            first = os.pread(self._require_open(), 1, 0)
            if first and 0xA0 <= first[0] <= 0xBF:
                return
        raise RecordingError(
            f"{self.path} is not an agentproto recording: {trunc.message} at byte 0"
        )

    def _new_command(self, seq: int) -> Command:
        cmd = Command(seq)
        if self.commands and seq < next(reversed(self.commands)):
            self._sorted = False
        self.commands[seq] = cmd
        return cmd

    def _sort_commands(self) -> None:
        if not self._sorted:
            self.commands = dict(sorted(self.commands.items()))
            self._sorted = True

    # --- records on demand --------------------------------------------------------

    def _require_open(self) -> int:
        if self._fd is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        return self._fd

    def offset_of(self, i: int) -> int:
        """Byte offset of record ``i`` (0-based, as indexed so far)."""
        if not 0 <= i < self.record_count:
            raise IndexError(f"record {i} out of range (0..{self.record_count - 1} indexed)")
        return self._offsets[i]

    def _end_of(self, i: int) -> int:
        if self._gaps:
            gap_end = self._gaps.get(i)
            if gap_end is not None:
                return gap_end
        return self._offsets[i + 1] if i + 1 < self.record_count else self._end

    def _chunks(self, start: int, stop: int) -> Iterator[tuple[int, int, int, bytes]]:
        """Read records ``start..stop-1`` a few MiB at a time: (first, last+1, offset, bytes)."""
        fd = self._require_open()
        offsets = self._offsets
        i = start
        while i < stop:
            # Never hold a long run in memory whole; a huge record comes alone.
            j = min(bisect_left(offsets, offsets[i] + _CHUNK, i + 1, stop), stop)
            j = max(j, i + 1)
            begin = offsets[i]
            end = self._end_of(j - 1)
            data = os.pread(fd, end - begin, begin)
            if len(data) != end - begin:
                raise RecordingError(f"{self.path}: the file shrank while reading it")
            yield i, j, begin, data
            i = j

    def _raw(self, start: int, stop: int) -> Iterator[tuple[int, int, Any]]:
        """Decode records ``start..stop-1`` (a contiguous run): (index, offset, raw map)."""
        offsets = self._offsets
        for i, j, begin, data in self._chunks(start, stop):
            decoder = ItemDecoder(data)
            for k in range(i, j):
                off = offsets[k]
                try:
                    item, end = decoder.decode(off - begin)
                except (Incomplete, RemoteProtocolError) as exc:
                    why = exc.message if isinstance(exc, RemoteProtocolError) else "cut"
                    raise RemoteProtocolError(f"invalid CBOR: {why}", offset=off) from None
                if end != self._end_of(k) - begin:
                    raise RemoteProtocolError("record does not end where indexed", offset=off)
                yield k, off, item

    def frame_chunks(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[dict[str, Any], list[tuple[int, int, dict[str, Any]]]]]:
        """Yield the frame records ``start..stop-1`` in bulk, a few MiB at a time.

        Each item is ``(simple, others)``: ``simple`` holds NumPy arrays
        (``index``, ``offset``, ``seq``, ``ts``, ``dir``, ``t``, ``stream``,
        ``size``) for the data and EOF frames in the Go encoder's layout,
        parsed without decoding (see :func:`_simple_frames`); ``others`` the
        ``(index, offset, raw RecordedFrame map)`` of every other frame
        record, decoded with cbor2 as :meth:`raw_frames` does. Together they
        are all frame records of the range, each once; sort by index for
        file order. This is what the frames table is built from.
        """
        import numpy as np

        stop = self.record_count if stop is None else min(stop, self.record_count)
        for i, j, begin, data in self._chunks(max(start, 0), stop):
            # Copies (slices), not views: a view would stop a concurrent
            # index() or refresh() from growing the arrays (BufferError).
            kinds = np.frombuffer(self._kinds[i:j], dtype=np.uint8)
            rel = np.frombuffer(self._offsets[i:j], dtype=np.uint64).astype(np.int64) - begin
            rel_end = np.append(rel[1:], len(data))
            for k, gap_end in self._gaps.items():
                if i <= k < j:  # the record before damage ends at the damage
                    rel_end[k - i] = gap_end - begin
            sf = _simple_frames(data, 0)
            k = np.searchsorted(rel, sf["pos"])
            k_ok = np.minimum(k, len(rel) - 1)
            ok = (
                (k < len(rel))
                & (rel[k_ok] == sf["pos"])
                & (rel_end[k_ok] == sf["end"])
                & (kinds[k_ok] == sf["t"])
            )
            simple = {name: sf[name][ok] for name in ("seq", "ts", "dir", "t", "stream", "size")}
            taken = k[ok]
            simple["index"] = taken + i
            simple["offset"] = rel[taken] + begin
            rest = np.ones(j - i, dtype=bool)
            rest[taken] = False
            rest &= kinds <= KIND_OTHER_FRAME
            others = []
            if rest.any():
                decoder, frame_decoder = _decoders(data)
                for r, at in zip(np.flatnonzero(rest).tolist(), rel[rest].tolist(), strict=True):
                    envelope = frame_envelope(data, at)
                    if envelope is not None:
                        # The Go layout: decode the frame map alone, as indexing does.
                        try:
                            frame = frame_decoder.decode(envelope[0])[0]
                        except (Incomplete, RemoteProtocolError):
                            frame = None
                        if frame.__class__ is dict and frame.keys() <= _FRAME_KEYS:
                            _start, seq, ts, direction = envelope
                            rf = {"seq": seq, "ts": ts, "dir": direction, "frame": frame}
                            others.append((i + r, at + begin, rf))
                            continue
                    try:
                        item = decoder.decode(at)[0]
                    except (Incomplete, RemoteProtocolError):  # record(i) says why
                        continue
                    raw = _raw_frame(item, at + begin)
                    if raw is not None:
                        others.append((i + r, at + begin, raw))
            yield simple, others

    def record(self, i: int) -> Record:
        """Decode record ``i`` on demand; a broken record raises RemoteProtocolError."""
        offset = self.offset_of(i)
        data = os.pread(self._require_open(), self._end_of(i) - offset, offset)
        try:
            return Record.from_cbor(data)
        except RemoteProtocolError as exc:
            raise exc.at(offset) from None

    def iter_records(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, int, Record]]:
        """Yield ``(index, offset, record)`` for indexed records ``start..stop-1``."""
        stop = self.record_count if stop is None else min(stop, self.record_count)
        for i, offset, item in self._raw(max(start, 0), stop):
            try:
                yield i, offset, Record.from_map(item)
            except RemoteProtocolError as exc:
                raise exc.at(offset) from None

    def _raw_selected(self, indexes: Iterable[int]) -> Iterator[tuple[int, int, Any]]:
        """Decode the records at ascending ``indexes``, reading runs of neighbours at once."""
        run_start = run_end = -1
        for i in indexes:
            if i == run_end:
                run_end += 1
                continue
            if run_start >= 0:
                yield from self._raw(run_start, run_end)
            run_start, run_end = i, i + 1
        if run_start >= 0:
            yield from self._raw(run_start, run_end)

    def frames(self, seq: int | None = None) -> Iterator[FrameRef]:
        """Yield the frames of command ``seq`` (or of all commands) in file order.

        Covers the frames indexed when the iteration starts; records indexed
        meanwhile (``refresh``) are not added to it.
        """
        if seq is None:
            kinds = self._kinds
            indexes: Iterable[int] = (
                i for i in range(self.record_count) if kinds[i] <= KIND_OTHER_FRAME
            )
        else:
            indexes = self.command(seq).record_indexes
        for i, offset, item in self._raw_selected(indexes):
            try:
                rf = Record.from_map(item).frame
            except RemoteProtocolError as exc:
                raise exc.at(offset) from None
            if rf is not None:
                yield FrameRef(i, offset, rf.seq, rf.timestamp, rf.direction, rf.frame)

    def raw_frames(self, indexes: Iterable[int]) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Yield ``(index, offset, raw RecordedFrame map)`` for frame records at ``indexes``.

        The maps are cbor2's plain decoding with the Go keys (``seq``, ``ts``,
        ``dir``, ``frame`` -> ``t``, ``s``, ``d``...), which tables read
        without building dataclasses. Records that are not frames are skipped.
        """
        for i, offset, item in self._raw_selected(indexes):
            rf = _raw_frame(item, offset)
            if rf is not None:
                yield i, offset, rf

    def command(self, seq: int) -> Command:
        """The command with sequence number ``seq``; raises :class:`UnknownCommandError`."""
        cmd = self.commands.get(seq)
        if cmd is None:
            raise UnknownCommandError(f"no command {seq} in {self.path.name}: {self._valid()}")
        return cmd

    def _valid(self) -> str:
        seqs = sorted(self.commands)
        if not seqs:
            return "the recording has no commands"
        if seqs == list(range(seqs[0], seqs[-1] + 1)):
            return f"valid commands are {seqs[0]}..{seqs[-1]}"
        shown = ", ".join(map(str, seqs[:20])) + (", ..." if len(seqs) > 20 else "")
        return f"valid commands are {shown}"

    def stream_chunks(
        self, seq: int, streams: Iterable[int] | None = None
    ) -> Iterator[tuple[int, Direction | int, bytes]]:
        """Yield ``(stream, direction, data)`` for the data frames of command ``seq``.

        In recorded order. Stream 0 is stdin (sent), 1 stdout, 2 stderr, 3 and
        up the extra file descriptors (received). ``streams`` restricts the
        streams; empty data frames are skipped.
        """
        wanted = None if streams is None else set(streams)
        cmd = self.command(seq)
        kinds = self._kinds
        data_records = (i for i in cmd.record_indexes if kinds[i] == FrameType.DATA)
        for _i, _offset, rf in self.raw_frames(data_records):
            frame = rf.get("frame")
            if frame.__class__ is not dict:
                continue
            stream: Any = frame.get("s", 0)
            if wanted is not None and stream not in wanted:
                continue
            data = frame.get("d")
            if data.__class__ is bytes and data:
                d: Any = rf.get("dir")
                yield stream, (Direction(d) if d in (1, 2) else d), data

    def stream_bytes(self, seq: int, stream: int) -> bytes:
        """The whole byte stream ``stream`` of command ``seq``, reassembled from its frames."""
        return b"".join(data for _s, _d, data in self.stream_chunks(seq, (stream,)))

    # --- life cycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the file; the index stays readable, records no longer are."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return (
            f"<Recording {str(self.path)!r} records={self.record_count} "
            f"commands={len(self.commands)} truncation={self.truncation and self.truncation.kind}>"
        )


_FRAME_KEYS = frozenset(Frame().to_map()) | {
    "s",
    "d",
    "sig",
    "c",
    "e",
    "x",
    "l",
    "cfg",
    "q",
    "i",
    "fop",
    "frp",
}


def _plain_frame(rf: dict[Any, Any]) -> bool:
    """True when a recorded-frame map uses the exact Go keys (the common case)."""
    frame = rf.get("frame")
    return (
        rf.keys() <= _RECORDED_FRAME_KEYS
        and frame.__class__ is dict
        and frame.keys() <= _FRAME_KEYS
    )


def _raw_frame(item: Any, offset: int) -> dict[str, Any] | None:
    """The RecordedFrame map of a decoded frame record, with the Go keys; None if not one."""
    if item.__class__ is not dict or item.get("type", 3) != 3:
        return None
    rf = item.get("frame")
    if rf.__class__ is not dict or not _plain_frame(rf):
        try:
            rf = _canonical(item, offset).get("frame")
        except RemoteProtocolError:
            return None  # not decodable as a record: record(i) says why
    return rf if rf.__class__ is dict else None


def _canonical(item: dict[Any, Any], offset: int) -> dict[str, Any]:
    """A record map as the Go encoder spells it (exact keys), via the full decoder.

    Go accepts keys in any case; the index reads exact keys, so an unusual
    spelling goes through :meth:`Record.from_map` once, which also refuses
    what is not a record.
    """
    try:
        return Record.from_map(item).to_map()
    except RemoteProtocolError as exc:
        raise exc.at(offset) from None


def _merge_command(a: Command, b: Command) -> None:
    """Fold ``b`` (the same command, seen in the following bytes) into ``a``.

    The result is what one sequential pass would have built: later start
    and end records win, as do later exec frames of a command with no start.
    """
    if b.start_index is not None:
        a.exec, a.start_time, a.start_index = b.exec, b.start_time, b.start_index
    elif a.start_index is None and b.exec != ExecMsg():
        a.exec = b.exec
    if b.end_index is not None:
        a.end_time, a.exit_code, a.end_index = b.end_time, b.exit_code, b.end_index
    if b.exit_frame_code is not None:
        a.exit_frame_code = b.exit_frame_code
    if a.first_frame_time is None:
        a.first_frame_time = b.first_frame_time
    if b.last_frame_time is not None:
        a.last_frame_time = b.last_frame_time
    a.frame_count += b.frame_count
    for mine, theirs in ((a.bytes_sent, b.bytes_sent), (a.bytes_received, b.bytes_received)):
        for stream, n in theirs.items():
            mine[stream] = mine.get(stream, 0) + n
    a.signals.extend(b.signals)
    a.errors.extend(b.errors)
    a.log_count += b.log_count
    a.file_op_count += b.file_op_count
    a.record_indexes.extend(b.record_indexes)


_WORKER_CODE = "from reclab.model import _index_worker; _index_worker()"


def _index_worker() -> None:
    """Helper-process entry: index ``argv[2]``..``argv[3]`` of ``argv[1]`` in segments.

    ``argv[4]`` is the segment size in bytes.

    Each segment's index is pickled to stdout as soon as it is done, so the
    parent can use what is finished and stop waiting for the rest.
    """
    path, start, stop, segment = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    out = sys.stdout.buffer
    pos = start
    while pos < stop:
        rec = Recording(path)
        rec._end = pos
        fd = rec._require_open()
        failed = False
        size = segment
        while True:
            end = min(pos + size, stop)
            try:
                rec._scan_items(fd, stop, None, None, stop=end)
            except TruncatedError:
                pass  # a record crossing the segment's end: the next segment starts there
            except RemoteProtocolError:
                failed = True  # garbage: the parent finds it again and reports it
            if rec._end > pos or failed or end == stop:
                break
            size *= 4  # a record larger than a segment
        if rec._end > pos:
            state = {
                "start": pos,
                "end": rec._end,
                "offsets": rec._offsets.tobytes(),
                "kinds": rec._kinds.tobytes(),
                "header": rec.header,
                "footer": rec.footer,
                "commands": list(rec.commands.values()),
            }
            pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        rec.close()
        if failed or rec._end == pos:
            break
        pos = rec._end


def _plain(exc: Exception) -> str:
    """An agentproto error's message without the "(at byte N)" suffix (offset kept apart)."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else str(exc)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise RecordingError(f"{path}: no such file")
    if path.is_dir():
        raise RecordingError(f"{path}: is a directory, not a recording")
    if not path.is_file():
        raise RecordingError(f"{path}: not a regular file")


def open_recording(
    path: str | os.PathLike[str],
    *,
    index: bool = True,
    progress: ProgressCallback | None = None,
) -> Recording:
    """Open a recording: check it is one, read its header, and index it unless ``index=False``.

    Raises :class:`RecordingError` (one line) for a missing file, a
    directory, or a file that is not an agentproto recording. With
    ``index=False`` only the first record is read, so a viewer can show the
    header at once and call :meth:`Recording.index` in the background.
    """
    rec = Recording(path)
    try:
        if rec.size == 0:
            raise RecordingError(f"{rec.path} is not an agentproto recording: the file is empty")
        rec._scan(limit=1)
        if index:
            rec.index(progress)
    except BaseException:
        rec.close()
        raise
    return rec
