r"""A recording opened for analysis: an index of records, commands, frames on demand.

:func:`open_recording` reads the session header and (by default) indexes the
whole file: the byte offset of every record in a compact array, one
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
that this process must land on exactly (see :mod:`reclab.model.parallel`).

A recording cut by a crashed writer keeps everything before the cut and
says where it is in :attr:`Recording.truncation`; bytes in the middle that
are not records are skipped to the next record, as ``reclab check`` does,
and listed in :attr:`Recording.damage`. A recording that is still being written is
followed with :meth:`Recording.refresh`, which indexes what was appended.

Thread use: one thread may index (``index``/``refresh``) while others take
:meth:`Recording.snapshot`\ s (frozen, consistent views) and read the records
inside them (``record``, ``frames``, ``stream_chunks``...); reads use
``os.pread`` and never move a shared file position.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from agentproto import (
    Direction,
    FrameType,
    Record,
    RemoteProtocolError,
    SessionFooter,
    SessionHeader,
)
from agentproto.codec import Incomplete, ItemDecoder
from agentproto.types import FRAME_KEYS as F
from agentproto.types import RECORDED_FRAME_KEYS as RF

from ..errors import RecordingError, UnknownCommandError
from .scan import KNOWN_FRAME_KEYS, Index, buffer_decoders, frame_envelope, raw_frame, simple_frames
from .types import (
    KIND_OTHER_FRAME,
    Command,
    Damage,
    FrameRef,
    IndexOptions,
    IndexSnapshot,
    ProgressCallback,
    Truncation,
)

__all__ = ["Recording", "open_recording"]


class Recording:
    """A session recording opened for analysis (see the module docstring).

    Create with :func:`open_recording`. ``record_count`` records are indexed
    so far; ``commands`` maps sequence numbers to :class:`Command` in
    ascending order once indexing finishes. ``size`` is the file size when
    indexing last ran. The index itself is an :class:`~reclab.model.scan.Index`.
    """

    def __init__(self, path: str | os.PathLike[str], *, options: IndexOptions | None = None):
        self.path = Path(path)
        _check_path(self.path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise RecordingError(f"{self.path}: {exc.strerror or exc}") from None
        self._index = Index(self.path, self._require_open, options)
        self._index.size = os.fstat(self._fd).st_size

    # --- the index ----------------------------------------------------------------

    def index(self, progress: ProgressCallback | None = None) -> None:
        """Index every record not yet indexed, up to the end of the file.

        ``progress(bytes_done, total)`` is called (from this thread) every few
        MiB and at the end. Stops at a cut or the end; :attr:`truncation`
        says which, :attr:`damage` lists what was skipped. Calling it again
        only indexes what was appended since.
        """
        self._index.scan(progress=progress)

    def refresh(self) -> int:
        """Index records appended since the last call (a live recording); return how many."""
        before = self.record_count
        self._index.scan()
        return self.record_count - before

    def snapshot(self) -> IndexSnapshot:
        """A frozen, consistent view of the index; cheap, callable from any thread.

        Also while :meth:`index` runs in another thread: the view is the index
        after some whole chunk. Its commands are never mutated afterwards.
        """
        return self._index.snapshot()

    @property
    def header(self) -> SessionHeader | None:
        """The session header (None if the recording has none)."""
        return self._index.header

    @property
    def footer(self) -> SessionFooter | None:
        """The session footer (None if the recording has none)."""
        return self._index.footer

    @property
    def truncation(self) -> Truncation | None:
        """Where and why reading stopped before a clean end (None: it did not)."""
        return self._index.truncation

    @property
    def damage(self) -> list[Damage]:
        """Regions in the middle that are not records, skipped by resync, in file order."""
        return self._index.damage

    @property
    def commands(self) -> dict[int, Command]:
        """The commands indexed so far by seq (ascending once indexing is done)."""
        return self._index.commands

    @property
    def record_count(self) -> int:
        """How many records are indexed."""
        return self._index.record_count

    @property
    def size(self) -> int:
        """The file size when indexing last ran."""
        return self._index.size

    @property
    def kinds(self) -> array[int]:
        """One byte per indexed record: the frame type, or a ``KIND_*`` code."""
        return self._index._kinds

    @property
    def indexed_bytes(self) -> int:
        """Offset just past the last complete record indexed."""
        return self._index._end

    @property
    def max_record_size(self) -> int:
        """Records larger than this are refused without reading them."""
        return self._index.max_record_size

    @max_record_size.setter
    def max_record_size(self, value: int) -> None:
        self._index.max_record_size = value

    # --- records on demand --------------------------------------------------------

    def _require_open(self) -> int:
        if self._fd is None:
            raise RecordingError(f"{self.path}: the recording is closed")
        return self._fd

    def offset_of(self, i: int) -> int:
        """Byte offset of record ``i`` (0-based, as indexed so far)."""
        if not 0 <= i < self.record_count:
            raise IndexError(f"record {i} out of range (0..{self.record_count - 1} indexed)")
        return self._index._offsets[i]

    def _end_of(self, i: int) -> int:
        if self._index._gaps:
            gap_end = self._index._gaps.get(i)
            if gap_end is not None:
                return gap_end
        offsets = self._index._offsets  # appended before _end moves: see Index
        return offsets[i + 1] if i + 1 < len(offsets) else self._index._end

    def _chunks(self, start: int, stop: int) -> Iterator[tuple[int, int, int, bytes]]:
        """Read records ``start..stop-1`` a few MiB at a time: (first, last+1, offset, bytes)."""
        fd = self._require_open()
        offsets = self._index._offsets
        i = start
        while i < stop:
            # Never hold a long run in memory whole; a huge record comes alone.
            j = min(
                bisect_left(offsets, offsets[i] + self._index.options.chunk_size, i + 1, stop), stop
            )
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
        offsets = self._index._offsets
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
            kinds = np.frombuffer(self._index._kinds[i:j], dtype=np.uint8)
            offsets = self._index._offsets[i:j]
            rel = np.frombuffer(offsets, dtype=offsets.typecode).astype(np.int64) - begin
            rel_end = np.append(rel[1:], len(data))
            for k, gap_end in self._index._gaps.items():
                if i <= k < j:  # the record before damage ends at the damage
                    rel_end[k - i] = gap_end - begin
            sf = simple_frames(data, 0)
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
                decoder, frame_decoder = buffer_decoders(data)
                for r, at in zip(np.flatnonzero(rest).tolist(), rel[rest].tolist(), strict=True):
                    envelope = frame_envelope(data, at)
                    if envelope is not None:
                        # The Go layout: decode the frame map alone, as indexing does.
                        try:
                            frame = frame_decoder.decode(envelope[0])[0]
                        except (Incomplete, RemoteProtocolError):
                            frame = None
                        if frame.__class__ is dict and frame.keys() <= KNOWN_FRAME_KEYS:
                            _start, seq, ts, direction = envelope
                            rf = {
                                RF.seq: seq,
                                RF.timestamp: ts,
                                RF.direction: direction,
                                RF.frame: frame,
                            }
                            others.append((i + r, at + begin, rf))
                            continue
                    try:
                        item = decoder.decode(at)[0]
                    except (Incomplete, RemoteProtocolError):  # record(i) says why
                        continue
                    raw = raw_frame(item, at + begin)
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
        count = self.record_count  # records indexed meanwhile are not read
        for i in indexes:
            if i >= count:
                break
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
            kinds = self._index._kinds
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
            rf = raw_frame(item, offset)
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
        kinds = self._index._kinds
        data_records = (i for i in cmd.record_indexes if kinds[i] == FrameType.DATA)
        for _i, _offset, rf in self.raw_frames(data_records):
            frame = rf.get(RF.frame)
            if frame.__class__ is not dict:
                continue
            stream: Any = frame.get(F.stream, 0)
            if wanted is not None and stream not in wanted:
                continue
            data = frame.get(F.data)
            if data.__class__ is bytes and data:
                d: Any = rf.get(RF.direction)
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
    options: IndexOptions | None = None,
) -> Recording:
    """Open a recording: check it is one, read its header, and index it unless ``index=False``.

    Raises :class:`RecordingError` (one line) for a missing file, a
    directory, or a file that is not an agentproto recording. With
    ``index=False`` only the first record is read, so a viewer can show the
    header at once and call :meth:`Recording.index` in the background.
    ``options`` say how to index (:class:`IndexOptions`; the defaults suit any file).
    """
    rec = Recording(path, options=options)
    try:
        if rec.size == 0:
            raise RecordingError(f"{rec.path} is not an agentproto recording: the file is empty")
        rec._index.scan(limit=1)
        if index:
            rec.index(progress)
    except BaseException:
        rec.close()
        raise
    return rec
