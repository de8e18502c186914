"""THE byte layout of a recording's frame records, as Go's encoder writes them.

Nearly every record of a recording is a frame record that Go's encoder (and
:func:`agentproto.recording.encode_frame_record`) lays out byte for byte the
same way::

  a2 64"type" 03 65"frame" a4 63"seq" <uint> 62"ts" 1b<8 bytes> 63"dir" <0-23>
  65"frame" <map a1..a3> 61"t" <0-23> [61"s" <uint>] [61"d" <byte string>]

Decoding such records with cbor2 and turning the maps into objects costs
more than reading these bytes directly, so every bulk reader (the record
reader of :mod:`agentproto.recording`, the index of :mod:`reclab.model`)
finds and parses them here, and decodes only the rest with cbor2:

- :data:`FRAME_RECORD_PREFIX`: the 18 bytes every frame record starts with.
- :func:`parse_frame_records`: every frame record of a buffer in the layout,
  parsed at once with NumPy: data/EOF-like frames whole (:class:`FrameRecords`),
  the envelope of the others (:class:`FrameEnvelopes`).
- :func:`frame_envelope`: the same envelope for one record, without NumPy.
- :func:`next_record_start`: where a record may start again after damage.
- :func:`speedups`: the same parse in C (:file:`_speedups.c`), which also
  builds the reader's records; optional, NumPy does it otherwise.

A candidate is only a place where the prefix occurs: it may be a coincidence
inside a payload, so a reader trusts one only when its walk from record to
record lands on it. A change of the layout is made here, once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = [
    "FRAME_HEAD_MAX",
    "FRAME_RECORD_PREFIX",
    "MAX_RESYNCS",
    "RECORD_START",
    "FrameEnvelopes",
    "FrameRecords",
    "frame_envelope",
    "next_record_start",
    "parse_frame_records",
    "speedups",
]

# Record{type: 3, frame: {seq: ...}}: how every frame record starts, up to the
# seq value (map of 2, "type", 3, "frame", map of 4, "seq").
FRAME_RECORD_PREFIX = bytes.fromhex("a2647479706503656672616d65a463736571")
# Bytes read from a candidate's start, at most: prefix 18, seq 5, ts 12, dir 5,
# frame key 6, map head 1, t 3, s 2+5, d key 2 and a byte-string head 5.
FRAME_HEAD_MAX = 64
_FRAME_FIELDS_MAX = 3  # t, s, d
# FRAME_RECORD_PREFIX as big-endian integers of 8, 8 and 2 bytes
_PREFIX_WORDS = (
    int.from_bytes(FRAME_RECORD_PREFIX[:8], "big"),
    int.from_bytes(FRAME_RECORD_PREFIX[8:16], "big"),
    int.from_bytes(FRAME_RECORD_PREFIX[16:], "big"),
)


class FrameRecords(NamedTuple):
    """Frame records whose frame map holds only ``t``, ``s`` and ``d``, parsed whole.

    NumPy int64 arrays, one entry per record, sorted by ``pos``: the record's
    start and end in the buffer, seq, timestamp, direction and frame type (the
    wire's ints, 0-23), stream, and where the payload starts (the payload is
    ``buf[data:end]``; empty without ``d``).
    """

    pos: Any
    end: Any
    seq: Any
    ts: Any
    direction: Any
    ftype: Any
    stream: Any
    data: Any


class FrameEnvelopes(NamedTuple):
    """The other frame records in the layout: envelope parsed, frame map left to cbor2.

    ``frame`` is where the frame map starts; the arrays are as in
    :class:`FrameRecords`. The record may end past the buffer.
    """

    pos: Any
    frame: Any
    seq: Any
    ts: Any
    direction: Any


_numpy_module: Any = None


def _numpy() -> Any:
    """NumPy if it can be imported (imported lazily, once), else False."""
    global _numpy_module
    if _numpy_module is None:
        try:
            import numpy
        except ImportError:  # the fast path is optional: cbor2 reads everything
            _numpy_module = False
        else:
            _numpy_module = numpy
    return _numpy_module


def speedups() -> Any:
    """The C module of this layout (:file:`_speedups.c`), or None if it was not built.

    ``AGENTPROTO_PURE=1`` in the environment leaves it out (to compare).
    """
    global _speedups_module
    if _speedups_module is None:
        _speedups_module = False
        if not os.environ.get("AGENTPROTO_PURE"):
            try:
                from . import _speedups
            except ImportError:  # no C compiler at install: NumPy and cbor2 do it all
                pass
            else:
                _speedups_module = _speedups
    return _speedups_module or None


_speedups_module: Any = None


def parse_frame_records(
    buf: bytes, lo: int = 0, *, envelopes: bool = True, native: bool = True
) -> tuple[FrameRecords, FrameEnvelopes] | None:
    """Parse every frame record in the layout that starts in ``buf[lo:]``, all at once.

    Candidates are the places where :data:`FRAME_RECORD_PREFIX` occurs (at
    least :data:`FRAME_HEAD_MAX` bytes before the end); only those whose every
    head is valid, and, for :class:`FrameRecords`, whose record ends inside
    ``buf``, are returned (no envelopes unless ``envelopes``). None without
    NumPy or when ``buf`` is too short. The C module does the parse when it
    is there (without holding the GIL) and ``native``; NumPy otherwise: the
    results are the same.
    """
    np = _numpy()
    n = len(buf)
    if not np or n - lo < FRAME_HEAD_MAX:
        return None
    c = speedups() if native else None
    if c is not None:
        whole_rows, other_rows = c.scan_frame_records(buf, lo, envelopes)
        whole = np.frombuffer(whole_rows, dtype=np.int64).reshape(-1, len(FrameRecords._fields))
        other = np.frombuffer(other_rows, dtype=np.int64).reshape(-1, len(FrameEnvelopes._fields))
        return (
            FrameRecords(*np.ascontiguousarray(whole.T)),
            FrameEnvelopes(*np.ascontiguousarray(other.T)),
        )
    a = np.frombuffer(buf, dtype=np.uint8)
    # big-endian 2-, 4- and 8-byte integers starting at every byte (views, no copy):
    # one gather reads a whole literal or head argument
    u16, u32, u64 = (
        np.ndarray((n - size + 1,), dtype=f">u{size}", buffer=buf, strides=(1,))
        for size in (2, 4, 8)
    )
    pos = np.flatnonzero(a[lo : n - FRAME_HEAD_MAX + 1] == FRAME_RECORD_PREFIX[0]) + lo
    pos = pos[u64[pos] == _PREFIX_WORDS[0]]
    pos = pos[u64[pos + 8] == _PREFIX_WORDS[1]]
    pos = pos[u16[pos + 16] == _PREFIX_WORDS[2]]

    def head(i: Any, major: int) -> tuple[Any, Any, Any]:
        # (valid, head length, argument) of a definite head of ``major`` at i;
        # the length is at most 5 even when invalid, keeping reads in bounds
        info = a[i].astype(np.int64) - (major << 5)
        small, one, two = info < 24, info == 24, info == 25
        length = np.where(small, 1, np.where(one, 2, np.where(two, 3, 5)))
        value = np.where(
            small,
            info,
            np.where(one, a[i + 1], np.where(two, u16[i + 1], u32[i + 1].astype(np.int64))),
        )
        return (info >= 0) & (info <= 26), length, value

    ok, length, seq = head(pos + 18, 0)  # four bytes at most: always a uint32
    p = pos + 18 + length
    ok &= u32[p] == 0x6274731B  # 62"ts" 1b: an 8-byte timestamp
    ts = u64[p + 4]
    ok &= ts < 1 << 63  # int64
    ts = ts.astype(np.int64)
    p = p + 12
    # direction and frame type: one-byte heads (0-23), all Go writes for them
    direction = a[p + 4].astype(np.int64)
    ok &= (u32[p] == 0x63646972) & (direction < 24)  # 63"dir"
    ok &= (u32[p + 5] == 0x65667261) & (u16[p + 9] == 0x6D65)  # 65"frame"
    fields = a[p + 11].astype(np.int64) - 0xA0
    envelope = ok & (fields >= 0) & (fields < 28)  # a definite-length frame map
    frame_start = p + 11
    ftype = a[p + 14].astype(np.int64)
    ok &= (fields >= 1) & (fields <= _FRAME_FIELDS_MAX) & (u16[p + 12] == 0x6174) & (ftype < 24)
    p = p + 15
    has_s = (u16[p] == 0x6173) & (fields >= 2)  # 61"s"
    valid, length, stream = head(p + 2, 0)
    ok &= valid | ~has_s
    stream = np.where(has_s, stream, 0)
    p = np.where(has_s, p + 2 + length, p)
    has_d = (u16[p] == 0x6164) & (fields >= 2 + has_s)  # 61"d"
    valid, length, size = head(p + 2, 2)
    ok &= valid | ~has_d
    start = np.where(has_d, p + 2 + length, p)
    end = start + np.where(has_d, size, 0)
    ok &= (fields == 1 + has_s + has_d) & (end <= n)
    whole = FrameRecords(
        pos[ok], end[ok], seq[ok], ts[ok], direction[ok], ftype[ok], stream[ok], start[ok]
    )
    other = (envelope & ~ok) if envelopes else np.zeros(len(pos), dtype=bool)
    return whole, FrameEnvelopes(
        pos[other], frame_start[other], seq[other], ts[other], direction[other]
    )


# The envelope of one frame record, for readers that go record by record.
# Groups: seq, ts (any integer head), dir, frame-map head.
_UINT = rb"([\x00-\x17]|\x18.|\x19..|\x1a....)"
_FRAME_HEAD = re.compile(
    re.escape(FRAME_RECORD_PREFIX) + _UINT + rb"\x62ts"
    rb"(\x1b........|[\x00-\x17\x20-\x37]|[\x18\x38].|[\x19\x39]..|[\x1a\x3a]....|\x3b........)"
    rb"\x63dir([\x00-\x17])"
    rb"\x65frame([\xa0-\xb7])",
    re.DOTALL,
)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _head_int(head: bytes) -> int:
    """The integer of a CBOR integer head (major type 0 or 1)."""
    info = head[0] & 0x1F
    value = info if info < 24 else int.from_bytes(head[1:], "big")
    return value if head[0] < 0x20 else -1 - value


def frame_envelope(buf: bytes, pos: int) -> tuple[int, int, int, int] | None:
    """``(frame start, seq, timestamp, direction)`` of the frame record at ``buf[pos]``.

    None unless its envelope is in the layout (any integer encoding of the
    timestamp, within int64). The frame map itself, from ``frame start``, is
    left to the caller.
    """
    m = _FRAME_HEAD.match(buf, pos)
    if m is None:
        return None
    sq, tsb, dirb = m.group(1, 2, 3)
    ts = _head_int(tsb)
    if not _I64_MIN <= ts <= _I64_MAX:
        return None
    seq = sq[0] if len(sq) == 1 else int.from_bytes(sq[1:], "big")
    return m.start(4), seq, ts, dirb[0]


# A record is a map of 2 (Go writes type + one payload) to 6 pairs whose first key
# is "type": where the next record may start after bytes that are not CBOR.
RECORD_START = re.compile(rb"[\xa1-\xa6]\x64type")
# Readers give up resynchronising after this many damaged regions.
MAX_RESYNCS = 1000

ReadAt = Callable[[int, int], bytes]  # (size, offset) -> bytes, like os.pread


def next_record_start(source: Any, start: int, chunk_size: int = 1 << 20) -> int | None:
    """Offset of the first plausible record start at or after ``start``, None if there is none.

    A heuristic for damaged files: a record's map header followed by its
    ``"type"`` key. ``source`` is a seekable binary file or a ``read_at(size,
    offset)`` function (``os.pread`` on a descriptor); it is read in chunks.
    """
    if callable(source):
        read_at: ReadAt = source
    else:

        def read_at(size: int, offset: int) -> bytes:
            source.seek(offset)
            data: bytes = source.read(size)
            return data

    carry = b""
    base = start  # file offset of carry + chunk
    offset = start
    while chunk := read_at(chunk_size, offset):
        offset += len(chunk)
        buf = carry + chunk
        match = RECORD_START.search(buf)
        if match:
            return base + match.start()
        keep = min(len(buf), 5)  # a match may straddle two chunks
        base += len(buf) - keep
        carry = buf[len(buf) - keep :]
    return None
