"""Frame encoding and decoding on byte streams (the Go ``Encoder``/``Decoder``).

A connection is a CBOR sequence of ``Frame`` maps with no length prefix. To
never block on a pipe or socket while a peer waits for our answer, the
:class:`Decoder` finds where the current item ends by reading CBOR heads
(:func:`item_end`) and asks the reader only for bytes that are available
(``read1``); it never needs bytes past the current frame to return it.
The same scan enforces a frame-size limit before anything large is buffered.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Protocol

import cbor2

from .errors import FrameTooLargeError, LimitExceededError, RemoteProtocolError, TruncatedError
from .layout import speedups
from .types import MAX_DEPTH, Frame, decode_cbor_item

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "MAX_CONTAINER_ITEMS",
    "Decoder",
    "Encoder",
    "FrameReader",
    "Incomplete",
    "ItemDecoder",
    "item_end",
]

_c = speedups()
_c_item_end: Callable[[Any, int, int, int], int | None] | None = _c.item_end if _c else None
del _c

# Large enough for a 4 MiB ReadAt/WriteAt payload plus its envelope.
DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024
# FrameReader's buffer: many frames per read(2); grown only for a larger frame
_BUFFER_SIZE = 4 * 1024 * 1024


class Incomplete(Exception):
    """``item_end`` needs at least ``needed`` bytes in the buffer to go on."""

    def __init__(self, needed: int):
        super().__init__(needed)
        self.needed = needed


# Go's decoder (fxamacker/cbor) refuses more array elements or map pairs than this,
# and nesting deeper than MAX_DEPTH: so do we, from the heads, before decoding.
MAX_CONTAINER_ITEMS = 131_072


def item_end(buf: bytes | bytearray | memoryview, pos: int = 0) -> int:
    """Return the offset just past the CBOR item starting at ``buf[pos]``.

    (The scan runs in C where the extension is built: every frame read from a
    connection passes here. Errors are raised by the Python scan below.)

    Only heads are read; string contents are skipped. Raises
    :class:`Incomplete` with the smallest buffer length that could let the
    scan continue, :class:`LimitExceededError` for an array or map of more
    than ``MAX_CONTAINER_ITEMS`` entries or nesting deeper than ``MAX_DEPTH``
    (Go's limits, checked before anything is buffered), and
    :class:`RemoteProtocolError` for what agentproto never contains
    (indefinite lengths, reserved head values). The result is always greater
    than ``pos``.
    """
    if _c_item_end is not None:
        end: int | None = _c_item_end(buf, pos, MAX_CONTAINER_ITEMS, MAX_DEPTH)
        if end is not None:
            if end > 0:
                return end
            raise Incomplete(-end)
    return _scan_item_end(buf, pos)


def _scan_item_end(buf: bytes | bytearray | memoryview, pos: int) -> int:
    # item_end in Python: the reference the C scan follows, and where errors are raised
    n = len(buf)
    pending = 1  # items still to skip in the innermost open container
    outer: list[int] = []  # the pending counts of the enclosing containers
    while True:
        while not pending:
            if not outer:
                return pos
            pending = outer.pop()
        if pos >= n:
            raise Incomplete(pos + pending + sum(outer))  # every item takes a byte
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
                raise Incomplete(pos + pending + sum(outer))
        elif major >= 4 and major <= 6:
            if major != 6 and arg > MAX_CONTAINER_ITEMS:
                what = "array of" if major == 4 else "map of"
                unit = "elements" if major == 4 else "pairs"
                raise LimitExceededError(
                    f"{what} {arg} {unit} is more than the limit of {MAX_CONTAINER_ITEMS}"
                )
            count = 1 if major == 6 else arg << (major == 5)  # a tag wraps one item
            if count:
                outer.append(pending)
                pending = count
                if len(outer) > MAX_DEPTH:
                    raise LimitExceededError(
                        f"CBOR nested deeper than the limit of {MAX_DEPTH} levels"
                    )


# The C plain-CBOR decoder gives up below 17 levels of nesting: a decoder allowing
# fewer levels than this keeps to cbor2 (its limit must be the one applied).
_PLAIN_DEPTH = 20


class ItemDecoder:
    """Decode the CBOR items at chosen offsets of one in-memory buffer, never going backwards.

    cbor2's decoder reads ahead of the item it decodes; after an error, or a
    seek behind its back, that read-ahead no longer matches the stream
    position, and a reader that trusts ``tell()`` then can go backwards and
    loop forever (issue 11). So the decoder is replaced after every error,
    and every result is checked: an item ends after its start and inside the
    buffer, else :class:`RemoteProtocolError`. Items larger than
    ``MAX_CONTAINER_ITEMS`` bytes (the only ones that can hold that many
    entries) are also checked against Go's limits with :func:`item_end`.
    """

    __slots__ = ("_buf", "_decoder", "_max_depth", "_plain", "_size", "_stream")

    def __init__(self, buf: bytes, *, max_depth: int = MAX_DEPTH, plain: bool = True):
        self._buf = buf
        self._size = len(buf)
        self._stream = io.BytesIO(buf)
        self._max_depth = max_depth
        self._decoder: Any = None
        # The C decoder of plain CBOR (agentproto.layout.speedups) makes what cbor2
        # makes, faster, and declines everything else (cuts, limits, errors
        # included, and anything nested deeper than it goes), which cbor2 then decodes
        # or reports. It is used only where that is within ``max_depth``, and unless
        # ``plain`` is false (cbor2 alone: the reference the tests compare with).
        c = speedups() if plain and max_depth >= _PLAIN_DEPTH else None
        self._plain = c.decode_plain if c is not None else None

    def decode(self, pos: int) -> tuple[Any, int]:
        """The item at ``buf[pos]`` and the offset just past it.

        Raises :class:`Incomplete` when the buffer ends inside the item, and
        :class:`RemoteProtocolError` (``offset`` relative to the buffer, with
        ``pos``) when the bytes are not CBOR or break Go's limits.
        """
        plain = self._plain
        if plain is not None:
            got: tuple[Any, int] | None = plain(self._buf, pos)
            if got is not None:
                return got
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = cbor2.CBORDecoder(self._stream, max_depth=self._max_depth)
        stream = self._stream
        stream.seek(pos)
        try:
            item = decoder.decode()
        except cbor2.CBORDecodeEOF:
            self._decoder = None
            buf = self._buf
            # Cut by the end of the buffer; say how much is needed if the heads tell.
            try:
                item_end(buf, pos)
            except Incomplete:
                raise
            except LimitExceededError as exc:
                raise exc.at(pos) from None
            except RemoteProtocolError:  # indefinite lengths: more bytes may complete it
                raise Incomplete(len(buf) + 1) from None
            raise RemoteProtocolError("undecodable CBOR item", offset=pos) from None
        except Exception as exc:  # cbor2 raises several types on garbage
            self._decoder = None
            raise RemoteProtocolError(f"not a CBOR record: {_short(exc)}", offset=pos) from None
        end = stream.tell()
        if not pos < end <= self._size:
            self._decoder = None
            raise RemoteProtocolError("the CBOR decoder lost its place", offset=pos)
        if end - pos > MAX_CONTAINER_ITEMS:
            try:
                item_end(self._buf, pos)
            except (Incomplete, RemoteProtocolError) as exc:
                if isinstance(exc, RemoteProtocolError):
                    raise exc.at(pos) from None
                raise RemoteProtocolError("undecodable CBOR item", offset=pos) from None
        return item, end


def _short(exc: BaseException) -> str:
    """An exception's message, cut to one short line (cbor2 may quote huge values)."""
    try:
        text = str(exc)
    except ValueError:  # an int too large to print
        text = type(exc).__name__
    text = text.replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."


class FrameReader:
    """Cut a byte stream into encoded frames, with as few copies as possible.

    The same contract as :meth:`agentproto.codec.Decoder.decode_bytes` (the
    same :func:`~agentproto.codec.item_end` scan, so the same frame-size limit
    before anything is buffered, the same errors with stream offsets), tuned
    for the mux's hot path: the stream is read with ``readinto`` (one system
    call, whatever is available: never blocking for bytes past the current
    frame) into one reused buffer, and each frame is returned as a
    ``memoryview`` of it, valid until the next call. The buffer is compacted
    only when a frame would not fit before its end, so a byte is copied once
    by the kernel and, usually, never again here.
    """

    def __init__(self, reader: Any, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE):
        into = getattr(reader, "readinto1", None) or getattr(reader, "readinto", None)
        self._readinto: Callable[[memoryview], int | None] | None = into
        read1 = getattr(reader, "read1", None)
        self._read: Callable[[int], bytes | None] = read1 if read1 is not None else reader.read
        self._mem = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._mem)
        self._lo = 0  # start of the next item
        self._hi = 0  # end of the bytes read
        self._consumed = 0  # stream offset of _mem[0]
        self._eof = False
        self.max_frame_size = max_frame_size

    @property
    def offset(self) -> int:
        """Stream offset of the next item."""
        return self._consumed + self._lo

    def next_item(self) -> memoryview | None:
        """The next encoded item (valid until the next call); None at a clean end of stream."""
        while True:
            lo = self._lo
            try:
                end = item_end(self._view[: self._hi], lo)
            except Incomplete as more:
                needed = more.needed - lo  # at least this many bytes for the item
                if needed > self.max_frame_size:
                    raise FrameTooLargeError(
                        f"frame of at least {needed} bytes exceeds the limit of "
                        f"{self.max_frame_size}",
                        offset=self.offset,
                    ) from None
                if not self._fill(needed):
                    return None
                continue
            except RemoteProtocolError as exc:
                raise exc.at(self.offset) from None
            if end - lo > self.max_frame_size:
                raise FrameTooLargeError(
                    f"frame of {end - lo} bytes exceeds the limit of {self.max_frame_size}",
                    offset=self.offset,
                )
            self._lo = end
            return self._view[lo:end]

    def _fill(self, needed: int) -> bool:
        """Have ``needed`` bytes from the item start; False at a clean end of stream."""
        lo, hi = self._lo, self._hi
        if lo == hi:  # nothing pending: start over at the front, for free
            self._consumed += lo
            self._lo = self._hi = lo = hi = 0
        if lo + needed > len(self._mem):
            pending = self._view[lo:hi]
            if needed > len(self._mem):
                # a frame larger than the buffer: a new, larger one (never resized, so
                # views handed out earlier stay valid)
                mem = bytearray(max(needed, 2 * len(self._mem)))
                mem[: hi - lo] = pending
                self._mem, self._view = mem, memoryview(mem)
            else:
                self._view[: hi - lo] = pending  # compact: move the partial item down
            self._consumed += lo
            self._lo, self._hi = 0, hi - lo
            lo, hi = 0, hi - lo
        while hi - lo < needed and not self._eof:
            if self._readinto is not None:
                n = self._readinto(self._view[hi:])
            else:
                chunk = self._read(len(self._mem) - hi)
                n = len(chunk) if chunk else 0
                self._view[hi : hi + n] = chunk or b""
            if not n:
                self._eof = True
                break
            hi += n
            self._hi = hi
        have = hi - lo
        if have >= needed:
            return True
        if have == 0:
            return False
        raise TruncatedError(
            f"stream ended inside a frame ({have} of at least {needed} bytes)",
            offset=self.offset,
        )


class Decoder:
    """Read frames one at a time from a byte stream (the Go ``Decoder``).

    ``decode()`` returns the next :class:`Frame`, ``None`` at a clean end of
    stream, and raises :class:`TruncatedError` when the stream ends inside a
    frame, :class:`FrameTooLargeError` for an item announcing more than
    ``max_frame_size`` bytes, :class:`RemoteProtocolError` for anything that is
    not a frame. Offsets in errors count bytes from the start of the stream.
    Built on :class:`FrameReader`, which the mux uses too.
    """

    def __init__(self, reader: BinaryIO | Any, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE):
        self._frames = FrameReader(reader, max_frame_size=max_frame_size)

    @property
    def offset(self) -> int:
        """Stream offset of the next item (bytes consumed so far)."""
        return self._frames.offset

    @property
    def max_frame_size(self) -> int:
        """Largest item accepted, in bytes."""
        return self._frames.max_frame_size

    def decode_bytes(self) -> bytes | None:
        """Return the encoded bytes of the next item, or None at a clean end of stream."""
        item = self._frames.next_item()
        return None if item is None else bytes(item)

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
