"""The byte layout of a recording's records, as Go's encoder writes them.

Every bulk reader of recordings reads records through this module's
knowledge of the layout, so a change in the wire format is made here once:

- :data:`FRAME_RECORD_PREFIX`: the 18 bytes every frame record starts with.
- :func:`next_record_start`: where a record may start again after damage.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "FRAME_RECORD_PREFIX",
    "MAX_RESYNCS",
    "RECORD_START",
    "next_record_start",
]

# Record{type: 3, frame: {seq: ...}}: how every frame record starts, up to the
# seq value (map of 2, "type", 3, "frame", map of 4, "seq").
FRAME_RECORD_PREFIX = bytes.fromhex("a2647479706503656672616d65a463736571")

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
