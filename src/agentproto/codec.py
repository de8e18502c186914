"""Frame encoding and decoding on byte streams (the Go ``Encoder``/``Decoder``).

A connection is a CBOR sequence of ``Frame`` maps with no length prefix. To
never block on a pipe or socket while a peer waits for our answer, the
:class:`Decoder` finds where the current item ends by reading CBOR heads
(:func:`item_end`) and asks the reader only for bytes that are available
(``read1``); it never needs bytes past the current frame to return it.
The same scan enforces a frame-size limit before anything large is buffered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

from .errors import FrameTooLargeError, RemoteProtocolError, TruncatedError
from .types import Frame, decode_cbor_item

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "Decoder",
    "Encoder",
    "Incomplete",
    "item_end",
]

# Large enough for a 4 MiB ReadAt/WriteAt payload plus its envelope.
DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024
READ_SIZE = 256 * 1024


class Incomplete(Exception):
    """``item_end`` needs at least ``needed`` bytes in the buffer to go on."""

    def __init__(self, needed: int):
        super().__init__(needed)
        self.needed = needed


def item_end(buf: bytes | bytearray | memoryview, pos: int = 0) -> int:
    """Return the offset just past the CBOR item starting at ``buf[pos]``.

    Only heads are read; string contents are skipped. Raises
    :class:`Incomplete` with the smallest buffer length that could let the
    scan continue, or :class:`RemoteProtocolError` for what agentproto never
    contains (indefinite lengths, reserved head values).
    """
    n = len(buf)
    pending = 1  # items still to skip
    while pending:
        if pos >= n:
            raise Incomplete(pos + pending)  # every item takes at least one byte
        head = buf[pos]
        major, info = head >> 5, head & 0x1F
        pos += 1
        if info < 24:
            arg = info
        elif info <= 27:
            size = 1 << (info - 24)
            if pos + size > n:
                raise Incomplete(pos + size)
            arg = int.from_bytes(buf[pos : pos + size], "big")
            pos += size
        else:
            raise RemoteProtocolError(
                f"CBOR head 0x{head:02x} (indefinite length or reserved) is not used by agentproto",
                offset=pos - 1,
            )
        pending -= 1
        if major == 2 or major == 3:  # byte and text strings: skip the content
            pos += arg
            if pos > n:
                raise Incomplete(pos + pending)
        elif major == 4:
            pending += arg
        elif major == 5:
            pending += 2 * arg
        elif major == 6:
            pending += 1  # a tag wraps one item
    return pos


class Decoder:
    """Read frames one at a time from a byte stream (the Go ``Decoder``).

    ``decode()`` returns the next :class:`Frame`, ``None`` at a clean end of
    stream, and raises :class:`TruncatedError` when the stream ends inside a
    frame, :class:`FrameTooLargeError` for an item announcing more than
    ``max_frame_size`` bytes, :class:`RemoteProtocolError` for anything that is
    not a frame. Offsets in errors count bytes from the start of the stream.
    """

    def __init__(self, reader: BinaryIO | Any, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE):
        read1 = getattr(reader, "read1", None)
        # read1 returns what is there (at most one OS read); plain read on a
        # buffered pipe would block until the full size arrived.
        self._read: Callable[[int], bytes | None] = read1 if read1 is not None else reader.read
        self._buf = bytearray()
        self._start = 0  # consumed bytes at the front of _buf
        self._consumed = 0  # stream offset of _buf[0]
        self._eof = False
        self.max_frame_size = max_frame_size

    @property
    def offset(self) -> int:
        """Stream offset of the next item (bytes consumed so far)."""
        return self._consumed + self._start

    def decode_bytes(self) -> bytes | None:
        """Return the encoded bytes of the next item, or None at a clean end of stream."""
        buf = self._buf
        while True:
            start = self._start
            try:
                end = item_end(buf, start)
            except Incomplete as more:
                needed = more.needed - start
                if needed > self.max_frame_size:
                    raise FrameTooLargeError(
                        f"frame of at least {needed} bytes exceeds the limit of "
                        f"{self.max_frame_size}",
                        offset=self.offset,
                    ) from None
                if not self._fill(more.needed):
                    have = len(self._buf) - self._start
                    if have == 0:
                        return None
                    raise TruncatedError(
                        f"stream ended inside a frame ({have} of at least {needed} bytes)",
                        offset=self.offset,
                    ) from None
                buf = self._buf
                continue
            except RemoteProtocolError as exc:
                raise exc.at(self.offset) from None
            if end - start > self.max_frame_size:
                raise FrameTooLargeError(
                    f"frame of {end - start} bytes exceeds the limit of {self.max_frame_size}",
                    offset=self.offset,
                )
            item = bytes(buf[start:end])
            self._start = end
            return item

    def decode(self) -> Frame | None:
        """Return the next frame, or None at a clean end of stream."""
        offset = self.offset
        data = self.decode_bytes()
        if data is None:
            return None
        try:
            return Frame.from_map(decode_cbor_item(data))
        except RemoteProtocolError as exc:
            raise exc.at(offset) from None

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.decode()) is not None:
            yield frame

    def _fill(self, needed: int) -> bool:
        """Read until the buffer holds ``needed`` bytes; False at end of stream."""
        if self._start:
            # drop consumed bytes before growing, so the buffer stays one frame long
            del self._buf[: self._start]
            self._consumed += self._start
            needed -= self._start
            self._start = 0
        while len(self._buf) < needed:
            if self._eof:
                return False
            chunk = self._read(max(READ_SIZE, needed - len(self._buf)))
            if not chunk:
                self._eof = True
                return False
            self._buf += chunk
        return True


class _Writer(Protocol):
    def write(self, data: bytes, /) -> Any: ...


class Encoder:
    """Write frames to a byte stream; safe to call from many threads at once."""

    def __init__(self, writer: _Writer | BinaryIO):
        self._writer = writer
        self._flush: Callable[[], Any] | None = getattr(writer, "flush", None)
        self._lock = threading.Lock()

    def encode(self, frame: Frame) -> bytes:
        """Encode and write one frame (flushed); returns the bytes written."""
        data = frame.to_cbor()
        self.write_encoded(data)
        return data

    def write_encoded(self, data: bytes) -> None:
        """Write one already encoded frame, whole, flushed."""
        with self._lock:
            self._writer.write(data)
            if self._flush is not None:
                self._flush()
