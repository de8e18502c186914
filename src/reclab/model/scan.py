r"""Indexing a recording: the :class:`Index` and the scan that fills it.

The index holds the byte offset of every record in a compact array (4 bytes
a record below 4 GiB, 8 beyond: see :meth:`Index._widen`),
one byte per record saying what it is (:attr:`Index.kinds`), and
per-command aggregates (:class:`~reclab.model.types.Command`). Frames are not
turned into dataclasses while indexing: data and EOF frame records (nearly
all of a real recording) are parsed in bulk straight from the bytes
(:mod:`agentproto.layout`), and only the other records go through cbor2.

A cut stops the scan; bytes that are not records are skipped to the next
plausible record (like ``reclab check``) and listed as :class:`Damage`.

Thread use: one thread scans (``Index.scan``) while others take
:meth:`Index.snapshot`\ s, frozen consistent views; the scanner changes the
index one chunk at a time under a lock that snapshots take too.
"""

from __future__ import annotations

import os
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable
from types import MappingProxyType
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
    MAX_RESYNCS,
    frame_envelope,
    next_record_start,
    parse_frame_records,
)
from agentproto.recording import DEFAULT_MAX_RECORD_SIZE
from agentproto.types import FRAME_KEYS as F
from agentproto.types import MAX_DEPTH
from agentproto.types import RECORD_KEYS as R
from agentproto.types import RECORDED_FRAME_KEYS as RF
from agentproto.wire import describe_value

from ..errors import RecordingError
from .parallel import parallel_ok, scan_parallel
from .types import (
    KIND_COMMAND_END,
    KIND_COMMAND_START,
    KIND_OTHER_FRAME,
    KIND_SESSION_FOOTER,
    KIND_SESSION_HEADER,
    KIND_UNKNOWN_RECORD,
    Command,
    Damage,
    IndexOptions,
    IndexSnapshot,
    ProgressCallback,
    Truncation,
)

__all__ = [
    "KNOWN_FRAME_KEYS",
    "Index",
    "buffer_decoders",
    "canonical_record",
    "frame_envelope",
    "raw_frame",
    "simple_frames",
]

_RECORD_KINDS = {
    RecordType.SESSION_HEADER: KIND_SESSION_HEADER,
    RecordType.COMMAND_START: KIND_COMMAND_START,
    RecordType.COMMAND_END: KIND_COMMAND_END,
    RecordType.SESSION_FOOTER: KIND_SESSION_FOOTER,
}
_SEND = int(Direction.SEND)
# The first read of a scan is small and reported at once, so a viewer can draw the
# first commands of a huge file without waiting for a whole chunk.
_FIRST_READ = 256 * 1024


_RECORDED_FRAME_KEYS = frozenset(RF)
_RECORD_KEYS = frozenset(R)
_SEQ, _TS, _DIR, _FRAME = RF.seq, RF.timestamp, RF.direction, RF.frame
_FRAME_RECORD = int(RecordType.FRAME)
_U32_MAX = 0xFFFF_FFFF
_TRIM_STEP = 256 * 1024 * 1024  # give free heap pages back every this many bytes indexed


def _uint(value: Any) -> bool:
    return value.__class__ is int and value >= 0


def _u32(value: Any) -> bool:
    return value.__class__ is int and 0 <= value <= 0xFFFF_FFFF


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_DATA, _EOF = int(FrameType.DATA), int(FrameType.EOF)
_LAST_FRAME_TYPE = max(FrameType)
_DATA_KEYS = frozenset((F.type, F.stream, F.data))
# hot keys and frame types as plain locals of the module (no attribute lookups per record)
_T, _S, _D, _SIG, _C, _E, _X = F.type, F.stream, F.data, F.signal, F.code, F.error, F.exec
_SIGNAL, _EXIT, _ERROR = int(FrameType.SIGNAL), int(FrameType.EXIT), int(FrameType.ERROR)
_LOG, _FILE_OP, _EXEC = int(FrameType.LOG), int(FrameType.FILE_OP), int(FrameType.EXEC)


class _Indexer:
    """What each kind of record changes in the index; shared by every scanning path.

    The methods take decoded maps, read only the fields the aggregates need
    and check only their types. They change the commands (exec, times,
    bytes, signals...) but not the per-record bookkeeping (offsets, kinds,
    frame counts, record indexes, first/last frame times), which the scanner
    does in bulk. A map that is not a record raises
    :class:`RemoteProtocolError`.
    """

    def __init__(self, rec: Index):
        self.rec = rec

    def record(self, index: int, offset: int, item: Any) -> tuple[int, int, int]:
        """Apply one decoded record; return (kind, seq, ts), seq -1 for non-frames."""
        if item.__class__ is not dict:
            raise RemoteProtocolError(
                f"a record is a CBOR map, found {type(item).__name__}", offset=offset
            )
        rtype: Any = item.get(R.type)
        if rtype is None and item:
            item = canonical_record(item, offset)  # keys spelled in another case
            rtype = item.get(R.type)
        if rtype == _FRAME_RECORD:
            if not item.keys() <= _RECORD_KEYS:
                # other keys (Go ignores unknown text keys, refuses a map as a key):
                # the full decoder says which (found by the fuzzer)
                item = canonical_record(item, offset)
            return self._frame(item.get(R.frame), offset, item)
        if rtype.__class__ is int and rtype in _RECORD_KINDS:
            return self._other(index, item, offset), -1, 0
        if _uint(rtype) and 0 < rtype <= 0xFF:
            # A newer writer's record type: kept and skipped, but its fields must
            # still be what Go reads (found by the fuzzer: a bad frame in one).
            canonical_record(item, offset)
            return KIND_UNKNOWN_RECORD, -1, 0
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
            seq = rf.get(_SEQ)
            ts = rf.get(_TS)
            direction = rf.get(_DIR)
            frame = rf.get(_FRAME)
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
            return self._frame(canonical_record(item, offset).get(R.frame), offset, {})
        return kind, seq, ts

    def frame(self, seq: int, direction: int, frame: Any) -> int:
        """Count one frame's content into its command; return its kind, -1 if the map is odd.

        ``frame`` is the raw frame map. Nothing is changed when -1 is returned
        (keys in another case, wrong types, values out of the Go field's
        range), so the caller can normalise the record, or have the full
        decoder say what is wrong with it. Data and EOF frames are checked
        field by field (the hot path); any other frame through the wire table
        (:meth:`Frame.valid_map`), so that every frame the index counts is one
        Go would read, and the tables can trust the raw maps.
        """
        ftype = frame.get(_T, 0)
        if not (ftype.__class__ is int and 0 <= ftype <= 0xFF and frame.keys() <= KNOWN_FRAME_KEYS):
            return -1
        if ftype in (_DATA, _EOF):
            stream = frame.get(_S, 0)
            data = frame.get(_D, b"")
            if not (_u32(stream) and data.__class__ is bytes):
                return -1
            # more fields than Go writes for it: check them all
            odd = not frame.keys() <= _DATA_KEYS
            if odd and not Frame.valid_map(frame):
                return -1
        elif not Frame.valid_map(frame):
            return -1
        cmd = self.rec.commands.get(seq)
        if cmd is None:
            cmd = self.rec._new_command(seq)
        self.rec._dirty.add(seq)
        if ftype == _DATA:
            counts = cmd.bytes_sent if direction == _SEND else cmd.bytes_received
            counts[stream] = counts.get(stream, 0) + len(data)
        elif ftype == _SIGNAL:
            cmd.signals.append(frame.get(_SIG) or 0)  # null is Go's zero value
        elif ftype == _EXIT:
            cmd.exit_frame_code = frame.get(_C) or 0
        elif ftype == _ERROR:
            cmd.errors.append(frame.get(_E) or "")
        elif ftype == _LOG:
            cmd.log_count += 1
        elif ftype == _FILE_OP:
            cmd.file_op_count += 1
        elif ftype == _EXEC and cmd.start_index is None:
            x = frame.get(_X)
            if x is not None:
                cmd.exec = ExecMsg.from_map(x)  # valid: checked above
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
            rec._dirty.add(start.seq)
            cmd.exec = start.exec
            cmd.start_time = start.start_time
            cmd.start_index = index
            return KIND_COMMAND_START
        if record.cmd_end is not None:
            end = record.cmd_end
            cmd = rec.commands.get(end.seq)
            if cmd is None:
                cmd = rec._new_command(end.seq)
            rec._dirty.add(end.seq)
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


def buffer_decoders(buf: bytes) -> tuple[ItemDecoder, ItemDecoder]:
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


def simple_frames(buf: bytes, lo: int) -> dict[str, Any]:
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

    parsed = parse_frame_records(buf, lo, envelopes=False)
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


KNOWN_FRAME_KEYS = frozenset(F)  # every key a Frame map may hold


def _plain_frame(rf: dict[Any, Any]) -> bool:
    """True when a recorded-frame map uses the exact Go keys (the common case)."""
    frame = rf.get(RF.frame)
    return (
        rf.keys() <= _RECORDED_FRAME_KEYS
        and frame.__class__ is dict
        and frame.keys() <= KNOWN_FRAME_KEYS
    )


def raw_frame(item: Any, offset: int) -> dict[str, Any] | None:
    """The RecordedFrame map of a decoded frame record, with the Go keys; None if not one."""
    if item.__class__ is not dict or item.get(R.type, _FRAME_RECORD) != _FRAME_RECORD:
        return None
    rf = item.get(R.frame)
    if rf.__class__ is not dict or not _plain_frame(rf):
        try:
            rf = canonical_record(item, offset).get(R.frame)
        except RemoteProtocolError:
            return None  # not decodable as a record: record(i) says why
    return rf if rf.__class__ is dict else None


def canonical_record(item: dict[Any, Any], offset: int) -> dict[str, Any]:
    """A record map as the Go encoder spells it (exact keys), via the full decoder.

    Go accepts keys in any case; the index reads exact keys, so an unusual
    spelling goes through :meth:`Record.from_map` once, which also refuses
    what is not a record.
    """
    try:
        return Record.from_map(item).to_map()
    except RemoteProtocolError as exc:
        raise exc.at(offset) from None


_libc: Any = None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc only; elsewhere nothing).

    While the index arrays grow, chunk buffers and NumPy temporaries come
    and go around them, and glibc keeps the freed holes resident: as much
    again as the index itself, measured (an export of 3 GB peaked at 328 MB,
    of which ~90 MB holes). Dask's workers trim the same way.
    """
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
        _libc.malloc_trim(0)
    except (OSError, AttributeError):
        _libc = False  # not glibc: nothing to trim


def _plain(exc: Exception) -> str:
    """An agentproto error's message without the "(at byte N)" suffix (offset kept apart)."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else str(exc)


def _frozen(cmd: Command) -> Command:
    """A copy of ``cmd`` that indexing will not change (for a snapshot).

    The containers are copied; ``record_indexes`` is shared, as indexing only
    appends to it: the copy's ``frame_count`` says how many entries are its own.
    """
    return Command(
        cmd.seq,
        cmd.exec,
        cmd.start_time,
        cmd.end_time,
        cmd.exit_code,
        cmd.exit_frame_code,
        cmd.frame_count,
        cmd.first_frame_time,
        cmd.last_frame_time,
        dict(cmd.bytes_sent),
        dict(cmd.bytes_received),
        list(cmd.signals),
        list(cmd.errors),
        cmd.log_count,
        cmd.file_op_count,
        cmd.record_indexes,
        cmd.start_index,
        cmd.end_index,
    )


class Index:
    """The index of one recording file, filled by :meth:`scan`.

    Owns the record offsets (``_offsets``), kinds, commands, header, footer,
    truncation and damage. ``fd`` returns the open file descriptor to read
    (the :class:`~reclab.model.recording.Recording` owns the file).
    """

    def __init__(self, path: Any, fd: Callable[[], int], options: IndexOptions | None = None):
        self.path = path
        self._fd = fd
        self.options = options or IndexOptions()
        self.size = 0
        self.header: SessionHeader | None = None
        self.footer: SessionFooter | None = None
        self.truncation: Truncation | None = None
        self.record_count = 0
        self.commands: dict[int, Command] = {}
        # 4-byte offsets and record indexes while the file is under 4 GiB:
        # half the memory of 8 (an export of 3 GB holds ~10 M of each).
        self._typecode = "I"
        self._offsets: array[int] = array(self._typecode)
        self._kinds: array[int] = array("B")
        self._end = 0  # end of the last complete record: where indexing resumes
        self.damage: list[Damage] = []  # regions skipped by resync, in file order
        # record index -> its end, for the records followed by damage (their end
        # is not the next record's offset)
        self._gaps: dict[int, int] = {}
        self._lock = threading.Lock()  # one scanner at a time
        self._state_lock = threading.Lock()  # the scanner's changes vs snapshots
        self._indexer = _Indexer(self)
        self._sorted = True
        self._done = False
        self._dirty: set[int] = set()  # commands changed since the last snapshot
        self._published: dict[int, Command] = {}
        self._published_view: MappingProxyType[int, Command] = MappingProxyType({})
        self.max_record_size = DEFAULT_MAX_RECORD_SIZE

    def scan(self, *, progress: ProgressCallback | None = None, limit: int | None = None) -> None:
        """Index what is not indexed yet (``limit`` records at most); see :meth:`_scan`."""
        self._scan(progress=progress, limit=limit)

    def snapshot(self) -> IndexSnapshot:
        """A frozen, consistent view of the index; cheap, from any thread, also mid-scan."""
        with self._state_lock:
            if self._dirty:
                for seq in self._dirty:
                    cmd = self.commands.get(seq)
                    if cmd is not None:
                        self._published[seq] = _frozen(cmd)
                self._dirty.clear()
                self._published_view = MappingProxyType(dict(sorted(self._published.items())))
            return IndexSnapshot(
                record_count=self.record_count,
                indexed_bytes=self._end,
                file_size=self.size,
                done=self._done,
                header=self.header,
                footer=self.footer,
                truncation=self.truncation,
                damage=tuple(self.damage),
                commands=self._published_view,
            )

    def _scan(self, *, progress: ProgressCallback | None = None, limit: int | None = None) -> None:
        with self._lock:
            fd = self._fd()
            with self._state_lock:
                self.size = total = os.fstat(fd).st_size
                self._done = False
                self._widen(total > _U32_MAX)
            start = self._end
            trunc: Truncation | None = None
            parallel = limit is None and parallel_ok(self, total)
            while True:
                try:
                    if parallel:
                        parallel = False
                        scan_parallel(self, fd, total, progress)
                    self._scan_items(fd, total, progress, limit)
                except TruncatedError as exc:
                    trunc = Truncation(self._end, _plain(exc), "cut")
                except RemoteProtocolError as exc:
                    with self._state_lock:
                        resynced = self._resync(fd, exc)
                    if resynced:
                        continue  # damage skipped: index what follows it
                    trunc = Truncation(self._end, _plain(exc), "garbage")
                except OSError as exc:
                    raise RecordingError(f"{self.path}: {exc.strerror or exc}") from None
                break
            if trunc is not None and self._end == 0 and self.record_count == 0:
                self._reject_start(fd, trunc)
            if trunc is None and limit is None and self.footer is None and self.record_count:
                trunc = Truncation(
                    self._end,
                    "the recording has no session footer (the writer did not close it)",
                    "no-footer",
                )
            with self._state_lock:
                if limit is None or trunc is not None:
                    self.truncation = trunc
                self._sort_commands()
                self._done = limit is None
            if self._end - start >= _TRIM_STEP // 4:
                _trim_heap()  # before what follows (an export) allocates its own
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
        first = min(self.options.chunk_size, _FIRST_READ, max(total - base, 0)) or 1
        buf = os.pread(fd, first if stop is None else min(first, stop - base), base)
        pos = 0
        next_report = base  # the first chunk is reported at once
        next_trim = base + _TRIM_STEP
        vector = limit is None and self.options.bulk
        stop_at = len(self._offsets) + limit if limit is not None else -1
        while pos < len(buf):
            with self._state_lock:  # snapshots see whole chunks
                if vector and len(buf) - pos >= self.options.bulk_min_bytes:
                    self._chunk_vector(buf, pos, base)
                elif self._chunk_records(buf, pos, base, stop_at):
                    return
            if self._end - base < pos:  # never: an indexer that goes backwards loops forever
                raise RemoteProtocolError("indexing went backwards", offset=base + pos)
            pos = self._end - base
            if progress is not None and base + pos >= next_report:
                progress(base + pos, total)
                next_report = base + pos + self.options.progress_step
            if base + pos >= next_trim:
                _trim_heap()
                next_trim = base + pos + _TRIM_STEP
            # Refill: keep the unfinished record's bytes, add what it needs.
            rest = buf[pos:]
            need = self.options.chunk_size
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

    def _widen(self, wide: bool = True) -> None:
        """Switch to 8-byte offsets and record indexes (for files past 4 GiB), if ``wide``.

        A file of N bytes has offsets and record counts below N, so 4 bytes
        suffice until it reaches 4 GiB. The arrays are replaced, not changed:
        snapshots holding the old ones keep valid entries.
        """
        if not wide or self._typecode == "Q":
            return
        self._typecode = "Q"
        self._offsets = array("Q", self._offsets)
        for cmd in self.commands.values():
            cmd.record_indexes = array("Q", cmd.record_indexes)

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
        self._dirty.add(seq)
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
        self._widen(base + len(buf) > _U32_MAX)  # a file growing past 4 GiB while read
        indexer = self._indexer
        offsets = self._offsets
        kinds = self._kinds
        decoders = buffer_decoders(buf)
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
            # _end before record_count: a reader bounded by record_count finds every end
            self._end = base + pos
            self.record_count = len(offsets)

    def _chunk_vector(self, buf: bytes, pos: int, base: int) -> int:
        """Index the complete records of ``buf[pos:]``, data frames in bulk; return the end.

        :func:`simple_frames` parses every data/EOF frame-record candidate
        at once. Walking the chain of records from ``pos``, each run of
        consecutive parsed candidates is taken whole (a candidate is trusted
        only when the previous record ends exactly where it starts); any
        other record is decoded on its own. The bookkeeping of the chunk is
        then done with NumPy in :meth:`_commit`, also when garbage stops the
        walk (everything before it stays indexed).
        """
        self._widen(base + len(buf) > _U32_MAX)  # a file growing past 4 GiB while read
        sf = simple_frames(buf, pos)
        starts = sf["pos"].tolist()
        ends = sf["end"].tolist()
        m = len(starts)
        # Runs end where a parsed record is not followed by the next candidate.
        breaks = [i for i in range(m - 1) if ends[i] != starts[i + 1]] + [m - 1]
        runs: list[tuple[int, int]] = []
        singles: list[tuple[int, int, int, int]] = []  # (pos, kind, seq, ts)
        indexer = self._indexer
        decoders = buffer_decoders(buf)
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
            # _end before record_count: a reader bounded by record_count finds every end
            self._end = base + pos
            self.record_count = len(self._offsets)
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
        self._offsets.frombytes((pos + base).astype(self._typecode).tobytes())
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
                self._dirty.add(s)
                cmd.frame_count += c
                cmd.record_indexes.frombytes((mine + index0).astype(self._typecode).tobytes())
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

    def _reject_start(self, fd: int, trunc: Truncation) -> None:
        """A problem at byte 0: a cut header is a recording just begun, garbage is not one."""
        why = f"{trunc.message} at byte 0"
        if trunc.kind == "cut":
            first = os.pread(fd, 1, 0)
            if first and 0xA0 <= first[0] <= 0xBF:
                return
            # not cut: its bytes only happen to read as the start of a CBOR item that is not a map
            why = "it does not begin with a record (a CBOR map)"
        raise RecordingError(f"{self.path} is not an agentproto recording: {why}")

    def _new_command(self, seq: int) -> Command:
        cmd = Command(seq, record_indexes=array(self._typecode))
        self._dirty.add(seq)
        if self.commands and seq < next(reversed(self.commands)):
            self._sorted = False
        self.commands[seq] = cmd
        return cmd

    def _sort_commands(self) -> None:
        if not self._sorted:
            self.commands = dict(sorted(self.commands.items()))
            self._sorted = True
