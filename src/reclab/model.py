"""A recording opened for analysis: an index of records, commands, frames on demand.

:func:`open_recording` reads the session header and (by default) indexes the
whole file: the byte offset of every record in a compact ``array('Q')``, one
byte per record saying what it is, and per-command aggregates (frame count,
bytes per stream, signals, exit code...). Frames are not turned into
dataclasses while indexing; :meth:`Recording.record` and
:meth:`Recording.frames` decode them on demand by offset, so a viewer can show
any frame of a multi-GB file without holding the file in memory.

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
import io
import os
import pickle
import re
import subprocess
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import cbor2

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
from agentproto.codec import Incomplete, item_end
from agentproto.recording import DEFAULT_MAX_RECORD_SIZE
from agentproto.types import MAX_DEPTH, decode_cbor_item

__all__ = [
    "KIND_COMMAND_END",
    "KIND_COMMAND_START",
    "KIND_OTHER_FRAME",
    "KIND_SESSION_FOOTER",
    "KIND_SESSION_HEADER",
    "KIND_UNKNOWN_RECORD",
    "Command",
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
_WORKER_TIMEOUT = 3600.0
# Record{type: 3, frame: {seq: ...}}: how every frame record starts.
_FRAME_RECORD_PREFIX = bytes.fromhex("a2647479706503656672616d65a463736571")


class RecordingError(Exception):
    """The file cannot be read as a recording; the message is one line for the CLI."""


class UnknownCommandError(LookupError):
    """No command with the requested sequence number; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown command"


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

# The head of a frame record exactly as Go's encoder writes it (and Recorder):
# Record{type: 3, frame: {seq, ts, dir, frame: {t, [s], [d]...}}}. Groups:
# seq, ts, dir, frame-map head, frame type, stream, data-length head. The
# integers are CBOR heads, decoded by hand; only the data's length is read.
_UINT = rb"([\x00-\x17]|\x18.|\x19..|\x1a....)"
_FRAME_HEAD = re.compile(
    rb"\xa2\x64type\x03\x65frame\xa4\x63seq" + _UINT + rb"\x62ts"
    rb"(\x1b........|[\x00-\x17\x20-\x37]|[\x18\x38].|[\x19\x39]..|[\x1a\x3a]....|\x3b........)"
    rb"\x63dir([\x00-\x17])"
    rb"\x65frame([\xa1-\xb7])\x61t([\x00-\x17])"
    rb"(?:\x61s" + _UINT + rb")?"
    rb"(?:\x61d([\x40-\x57]|\x58.|\x59..|\x5a....|\x5b........))?",
    re.DOTALL,
)


def _head_int(head: bytes) -> int:
    """The integer of a CBOR integer head (major type 0 or 1)."""
    info = head[0] & 0x1F
    value = info if info < 24 else int.from_bytes(head[1:], "big")
    return value if head[0] < 0x20 else -1 - value


def _uint(value: Any) -> bool:
    return value.__class__ is int and value >= 0


class _Indexer:
    """Turn decoded record maps into the index; shared by every scanning path.

    ``add(offset, item)`` takes the raw CBOR map of one record. It reads only
    the fields the aggregates need and checks only their types; a map that
    is not a record raises :class:`RemoteProtocolError`.
    """

    def __init__(self, rec: Recording):
        self.rec = rec

    def add(self, offset: int, item: Any) -> None:
        rec = self.rec
        index = len(rec._offsets)
        if item.__class__ is not dict:
            raise RemoteProtocolError(
                f"a record is a CBOR map, found {type(item).__name__}", offset=offset
            )
        rtype: Any = item.get("type")
        if rtype is None and item:
            item = _canonical(item, offset)  # keys spelled in another case
            rtype = item.get("type")
        if rtype == 3:
            kind = self._frame(index, item.get("frame"), offset, item)
        elif rtype.__class__ is int and rtype in _RECORD_KINDS:
            kind = self._other(index, item, offset)
        elif _uint(rtype) and 0 < rtype <= 0xFF:
            kind = KIND_UNKNOWN_RECORD  # a newer writer's record type: keep, skip
        else:
            raise RemoteProtocolError(
                f"not a record: the map has no valid 'type' (found {rtype!r})", offset=offset
            )
        rec._offsets.append(offset)
        rec._kinds.append(kind)

    def _frame(self, index: int, rf: Any, offset: int, item: dict[str, Any]) -> int:
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
        if not (
            _uint(seq)
            and ts.__class__ is int
            and _uint(direction)
            and frame.__class__ is dict
            and rf.keys() <= _RECORDED_FRAME_KEYS
        ):
            # Unusual spelling (Go accepts keys in any case) or a broken record:
            # let the full decoder normalise it or say what is wrong.
            return self._via_record(index, item, offset)
        kind = self.apply_frame(index, seq, ts, direction, frame)
        if kind < 0:
            return self._via_record(index, item, offset)
        return kind

    def apply_frame(self, index: int, seq: int, ts: int, direction: int, frame: Any) -> int:
        """Count one frame into its command; return its kind, or -1 if the frame map is odd.

        ``frame`` is the raw frame map. Nothing is changed when -1 is returned
        (keys in another case, wrong types), so the caller can normalise the
        record and try again.
        """
        ftype = frame.get("t", 0)
        if not (_uint(ftype) and frame.keys() <= _FRAME_KEYS):
            return -1
        if ftype == 2:
            stream = frame.get("s", 0)
            if not _uint(stream):
                return -1
        cmd = self.rec.commands.get(seq)
        if cmd is None:
            cmd = self.rec._new_command(seq)
        cmd.frame_count += 1
        if cmd.first_frame_time is None:
            cmd.first_frame_time = ts
        cmd.last_frame_time = ts
        cmd.record_indexes.append(index)
        if ftype == 2:  # data
            data = frame.get("d")
            size = len(data) if data.__class__ is bytes else 0
            counts = cmd.bytes_sent if direction == _SEND else cmd.bytes_received
            counts[stream] = counts.get(stream, 0) + size
        elif ftype == 4:
            sig = frame.get("sig", 0)
            cmd.signals.append(sig if sig.__class__ is int else 0)
        elif ftype == 5:
            code = frame.get("c", 0)
            cmd.exit_frame_code = code if code.__class__ is int else 0
        elif ftype == 6:
            err = frame.get("e", "")
            cmd.errors.append(err if err.__class__ is str else repr(err))
        elif ftype == 7:
            cmd.log_count += 1
        elif ftype == 11:
            cmd.file_op_count += 1
        elif ftype == 1 and cmd.start_index is None:
            x = frame.get("x")
            if x.__class__ is dict:
                # a broken exec frame keeps the placeholder: record() will say why
                with contextlib.suppress(RemoteProtocolError):
                    cmd.exec = ExecMsg.from_map(x)
        return ftype if 0 < ftype <= 12 else KIND_OTHER_FRAME

    def _via_record(self, index: int, item: dict[str, Any], offset: int) -> int:
        if not item:  # already canonical and still not a frame
            raise RemoteProtocolError("frame record without a valid frame", offset=offset)
        canonical = _canonical(item, offset)
        return self._frame(index, canonical.get("frame"), offset, {})

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
            try:
                if limit is None and self._parallel_ok(total):
                    self._scan_parallel(fd, total, progress)
                self._scan_items(fd, total, progress, limit)
            except TruncatedError as exc:
                trunc = Truncation(self._end, _plain(exc), "cut")
            except RemoteProtocolError as exc:
                trunc = Truncation(self._end, _plain(exc), "garbage")
            except OSError as exc:
                raise RecordingError(f"{self.path}: {exc.strerror or exc}") from None
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

        Reads large chunks with ``pread`` and works on them in memory. Data
        and EOF frame records, nearly all of a real recording, are read by
        :data:`_FRAME_HEAD` (a regular expression over the exact bytes the Go
        encoder writes) without decoding their payload; any other record is
        decoded with cbor2 (the frame map alone when the head matched). A
        record cut at the end of a chunk is completed with exactly the bytes
        it needs, found by reading CBOR heads, so a huge record costs one
        extra read. With ``stop``, bytes from that offset on are not read (a
        record crossing it looks cut).
        """
        add = self._indexer.add
        apply_frame = self._indexer.apply_frame
        offsets = self._offsets
        kinds = self._kinds
        commands = self.commands
        new_command = self._new_command
        match = _FRAME_HEAD.match
        from_bytes = int.from_bytes
        base = self._end  # file offset of buf[0]
        first = min(_CHUNK, max(total - base, 0)) or 1
        buf = os.pread(fd, first if stop is None else min(first, stop - base), base)
        pos = 0
        next_report = base + _PROGRESS_STEP
        stop_at = len(offsets) + limit if limit is not None else -1
        try:
            while pos < len(buf):
                n = len(buf)
                stream = io.BytesIO(buf)
                decoder = cbor2.CBORDecoder(stream, max_depth=MAX_DEPTH)
                while pos < n:
                    m = match(buf, pos)
                    if m is not None:
                        sq, tsb, dirb, nb, tb, sb, db = m.groups()
                        head_end = m.end()
                        if nb[0] - 0xA0 == 1 + (sb is not None) + (db is not None) and (
                            tb == b"\x02" or tb == b"\x03"
                        ):
                            # A data or EOF frame: everything needed is in the head.
                            if db is None:
                                size = 0
                                end = head_end
                            else:
                                h = db[0]
                                size = h - 0x40 if h < 0x58 else from_bytes(db[1:], "big")
                                end = head_end + size
                                if end > n:
                                    break  # the payload goes past this chunk
                            seq = sq[0] if len(sq) == 1 else from_bytes(sq[1:], "big")
                            ts = from_bytes(tsb[1:], "big") if tsb[0] == 0x1B else _head_int(tsb)
                            cmd = commands.get(seq)
                            if cmd is None:
                                cmd = new_command(seq)
                            index = len(offsets)
                            cmd.frame_count += 1
                            if cmd.first_frame_time is None:
                                cmd.first_frame_time = ts
                            cmd.last_frame_time = ts
                            cmd.record_indexes.append(index)
                            if tb == b"\x02":
                                if sb is None:
                                    stream_no = 0
                                elif len(sb) == 1:
                                    stream_no = sb[0]
                                else:
                                    stream_no = from_bytes(sb[1:], "big")
                                counts = cmd.bytes_sent if dirb == b"\x01" else cmd.bytes_received
                                counts[stream_no] = counts.get(stream_no, 0) + size
                            offsets.append(base + pos)
                            kinds.append(tb[0])
                            pos = end
                            if index + 1 == stop_at:
                                return
                            continue
                        # Another frame type: decode only the frame map.
                        stream.seek(m.start(4))
                        try:
                            frame = decoder.decode()
                        except cbor2.CBORDecodeEOF:
                            break
                        except Exception:  # garbage: the full decode below says what
                            frame = None
                        if frame.__class__ is dict:
                            seq = sq[0] if len(sq) == 1 else from_bytes(sq[1:], "big")
                            ts = _head_int(tsb)
                            index = len(offsets)
                            kind = apply_frame(index, seq, ts, dirb[0], frame)
                            if kind >= 0:
                                offsets.append(base + pos)
                                kinds.append(kind)
                                pos = stream.tell()
                                if index + 1 == stop_at:
                                    return
                                continue
                    # Any other record, or an unusual frame record: decode it whole.
                    stream.seek(pos)
                    try:
                        item = decoder.decode()
                    except cbor2.CBORDecodeEOF:
                        break
                    except Exception as exc:  # cbor2 raises several types on garbage
                        raise RemoteProtocolError(
                            f"not a CBOR record: {exc}", offset=base + pos
                        ) from None
                    end = stream.tell()
                    add(base + pos, item)
                    pos = end
                    if len(offsets) == stop_at:
                        return
                self.record_count = len(offsets)
                self._end = base + pos
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
        finally:
            self.record_count = len(offsets)
            self._end = base + pos

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
        indexing goes on here, sequentially. Returns having indexed at least
        the first half, or nothing when no candidate is found; the caller
        continues from ``self._end`` either way.
        """
        base = self._end
        middle = base + (total - base) // 2
        window = os.pread(fd, 1 << 20, middle)
        found = window.find(_FRAME_RECORD_PREFIX)
        if found < 0:
            return
        split = middle + found
        try:
            here = str(Path(__file__).resolve().parent.parent)  # so the helper finds reclab
            paths = [here, *filter(None, [os.environ.get("PYTHONPATH")])]
            helper = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, os.fspath(self.path), str(split), str(total)],
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return
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
            try:
                data, _ = helper.communicate(timeout=_WORKER_TIMEOUT)
                state = pickle.loads(data) if helper.returncode == 0 else None
            except Exception:  # a helper that failed in any way: do its half here
                state = None
            if isinstance(state, dict) and state.get("start") == split:
                self._merge(state)
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
        return self._offsets[i + 1] if i + 1 < self.record_count else self._end

    def _raw(self, start: int, stop: int) -> Iterator[tuple[int, int, Any]]:
        """Decode records ``start..stop-1`` (a contiguous run): (index, offset, raw map)."""
        if start >= stop:
            return
        fd = self._require_open()
        begin = self._offsets[start]
        chunk_records = 0
        i = start
        while i < stop:
            # Read a few MiB at a time so a long run never sits in memory whole.
            j = i + 1
            end = self._end_of(i)
            while j < stop and end - self._offsets[i] < _PROGRESS_STEP:
                end = self._end_of(j)
                j += 1
            begin = self._offsets[i]
            data = os.pread(fd, end - begin, begin)
            if len(data) != end - begin:
                raise RecordingError(f"{self.path}: the file shrank while reading it")
            for k in range(i, j):
                off = self._offsets[k]
                rel = off - begin
                item = decode_cbor_item(data[rel : self._end_of(k) - begin])
                yield k, off, item
                chunk_records += 1
            i = j

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
        """Yield the frames of command ``seq`` (or of all commands) in file order."""
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
            if item.__class__ is not dict:
                continue
            rf = item.get("frame")
            if rf.__class__ is not dict or not _plain_frame(rf):
                try:
                    rf = _canonical(item, offset).get("frame")
                except RemoteProtocolError:
                    continue  # not decodable as a record: record(i) says why
            if rf.__class__ is dict:
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
    """Helper-process entry: index ``argv[2]``..``argv[3]`` of ``argv[1]``, pickle to stdout."""
    path, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rec = Recording(path)
    rec._end = start
    fd = rec._require_open()
    with contextlib.suppress(RemoteProtocolError):  # a cut or garbage: the parent finds it too
        rec._scan_items(fd, stop, None, None, stop=stop)
    state = {
        "start": start,
        "end": rec._end,
        "offsets": rec._offsets.tobytes(),
        "kinds": rec._kinds.tobytes(),
        "header": rec.header,
        "footer": rec.footer,
        "commands": list(rec.commands.values()),
    }
    rec.close()
    pickle.dump(state, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


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
