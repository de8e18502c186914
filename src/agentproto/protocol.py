"""The protocol without I/O: bytes in, frames out; frames out as bytes; RPC bookkeeping.

Everything here is pure computation on bytes and small state objects, so it
can be tested by feeding bytes one at a time and reused by any transport
(:class:`~agentproto.mux.Mux` puts threads and file descriptors around it):

- :class:`FrameParser`: feed received bytes, take whole encoded frames out
  (the frame-size limit is enforced before a frame is buffered);
  :func:`decode_item` turns one into a :class:`DataChunk` (Go's data-frame
  layout, decoded without cbor2: the hot path) or a :class:`Frame`;
- :func:`encode_data_frame_head`: a data frame's bytes up to its payload, so
  a chunk can go out with ``writev`` and never be copied;
- :func:`check_direction`: which frame types each side may receive;
- :class:`RequestTable`: file-op request ids and PATH-query order, the
  waiters, and failing them all when the connection ends.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any, Literal

import cbor2

from .codec import DEFAULT_MAX_FRAME_SIZE, Incomplete, item_end
from .errors import (
    ConnectionClosedError,
    FrameTooLargeError,
    RemoteProtocolError,
    TruncatedError,
)
from .types import FRAME_KEYS, MAX_DEPTH, FileOpReq, FileOpResp, Frame, FrameType, PathInfo
from .wire import nested

__all__ = [
    "AGENT_RECEIVES",
    "FILE_RESP_FRAME_HEAD",
    "RUNNER_RECEIVES",
    "SESSION_OPENERS",
    "DataChunk",
    "FrameParser",
    "RequestTable",
    "Side",
    "Waiter",
    "accepted_types",
    "check_direction",
    "decode_frame_item",
    "decode_item",
    "encode_data_frame_head",
    "parse_data_frame",
]

Side = Literal["runner", "agent"]

# Frame types each side may receive; the others are dropped when a side is set.
AGENT_RECEIVES = frozenset(
    {
        FrameType.EXEC,
        FrameType.DATA,
        FrameType.EOF,
        FrameType.SIGNAL,
        FrameType.CONFIG,
        FrameType.PATH_QUERY,
        FrameType.FILE_OP,
    }
)
RUNNER_RECEIVES = frozenset(
    {
        FrameType.DATA,
        FrameType.EOF,
        FrameType.EXIT,
        FrameType.ERROR,
        FrameType.LOG,
        FrameType.PATH_INFO,
        FrameType.FILE_RESP,
    }
)
# Frames that open a session: a runner receiving one is not talking to an agent.
SESSION_OPENERS = frozenset({FrameType.EXEC, FrameType.CONFIG})


def accepted_types(side: Side | None) -> frozenset[FrameType] | None:
    """The frame types ``side`` may receive; None (every type) when no side is given."""
    if side == "agent":
        return AGENT_RECEIVES
    if side == "runner":
        return RUNNER_RECEIVES
    return None


def check_direction(side: Side | None, ftype: FrameType) -> bool:
    """May ``side`` receive a frame of ``ftype``? Raises for a peer that is no agent at all.

    A runner that receives ``FrameExec`` or ``FrameConfig`` is talking to
    something that echoes (``cat``) or to another runner: waiting for its exit
    would hang, so that is a :class:`RemoteProtocolError`, not a dropped frame.
    """
    accepts = accepted_types(side)
    if accepts is None or ftype in accepts:
        return True
    if side == "runner" and ftype in SESSION_OPENERS:
        raise RemoteProtocolError(
            f"the peer sent {ftype.name}, which only a runner sends: it is not an agent"
        )
    return False


# --- data frames by hand (the hot path) ------------------------------------------------------


def _uint_head(major: int, value: int) -> bytes:
    mt = major << 5
    if value < 24:
        return bytes((mt | value,))
    if value < 0x100:
        return bytes((mt | 24, value))
    if value < 0x10000:
        return bytes((mt | 25,)) + value.to_bytes(2, "big")
    if value < 0x1_0000_0000:
        return bytes((mt | 26,)) + value.to_bytes(4, "big")
    return bytes((mt | 27,)) + value.to_bytes(8, "big")


def encode_data_frame_head(stream: int, size: int) -> bytes:
    """Encoded ``Frame{Type: Data, Stream: stream, Data: <size bytes>}`` up to the data.

    Appending the data gives exactly ``Frame(type=DATA, stream=..., data=...).to_cbor()``
    (Go's omitempty drops a zero stream and empty data), so a chunk can be sent
    with ``writev`` and never copied into a frame buffer.
    """
    if not 0 <= stream <= 0xFFFF_FFFF:
        raise ValueError(f"stream {stream} is not a uint32")
    pairs = 1 + (stream != 0) + (size != 0)
    parts = [bytes((0xA0 | pairs,)), b"\x61t\x02"]
    if stream:
        parts += [b"\x61s", _uint_head(0, stream)]
    if size:
        parts += [b"\x61d", _uint_head(2, size)]
    return b"".join(parts)


def _read_uint(item: bytes | memoryview, pos: int, major: int) -> tuple[int, int]:
    """Read an unsigned head of ``major`` at ``pos``; (-1, pos) if it is not one."""
    head = item[pos]
    if head >> 5 != major:
        return -1, pos
    info = head & 0x1F
    if info < 24:
        return info, pos + 1
    if info > 27:
        return -1, pos
    size = 1 << (info - 24)
    return int.from_bytes(item[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def parse_data_frame(item: bytes | memoryview) -> tuple[int, bytes] | None:
    """(stream, data) when ``item`` is a data frame in Go's exact layout, else None.

    Anything else (other types, other key order, case-folded keys) returns None
    and takes the general path through cbor2.
    """
    if len(item) < 6 or item[1:4] != b"\x61t\x02":
        return None
    pairs = item[0]
    if pairs not in (0xA2, 0xA3):
        return None
    pos = 4
    stream = 0
    try:
        if item[pos : pos + 2] == b"\x61s":
            stream, pos = _read_uint(item, pos + 2, 0)
            if not 0 <= stream <= 0xFFFF_FFFF:
                return None
            if pairs == 0xA2:  # stream only: an empty data frame
                return (stream, b"") if pos == len(item) else None
        elif pairs == 0xA3:
            return None
        if item[pos : pos + 2] != b"\x61d":
            return None
        size, pos = _read_uint(item, pos + 2, 2)
    except IndexError:
        return None
    if size < 0 or pos + size != len(item):
        return None
    return stream, bytes(item[pos:])  # the one copy of the payload


@dataclass(frozen=True, slots=True)
class DataChunk:
    """A received data frame, decoded by hand: ``stream`` and its ``data``."""

    stream: int
    data: bytes


def decode_frame_item(item: bytes | memoryview) -> Frame:
    """Decode one whole encoded frame, as cut by :func:`~agentproto.codec.item_end`.

    The item's end is already known, so cbor2 decodes it in one call (no
    stream, no check for trailing bytes: the cut has none); errors are
    :func:`~agentproto.types.decode_cbor_item`'s, a :class:`RemoteProtocolError`.
    """
    try:
        value = cbor2.loads(item, max_depth=MAX_DEPTH)
    except cbor2.CBORDecodeEOF as exc:
        raise RemoteProtocolError(f"CBOR item cut short ({len(item)} bytes)") from exc
    except (cbor2.CBORDecodeError, RecursionError, ValueError, OverflowError) as exc:
        raise RemoteProtocolError(f"invalid CBOR: {exc}") from exc
    # A file-op request ({"t": 11, "fop": {...}}, the RPC hot path): Frame.from_map's
    # result without its walk over the frame's keys
    if value.__class__ is dict and len(value) == 2:
        ftype = value.get(_TYPE_KEY)
        fop = value.get(_FILE_OP_KEY)
        if ftype.__class__ is int and ftype == _FILE_OP and fop.__class__ is dict:
            try:
                return Frame(type=FrameType.FILE_OP, file_op=FileOpReq.from_map(fop))
            except RemoteProtocolError as exc:
                raise nested(exc, _FILE_OP_KEY) from None
    return Frame.from_map(value)


_TYPE_KEY = FRAME_KEYS.type
_FILE_OP_KEY = FRAME_KEYS.file_op
_FILE_OP = int(FrameType.FILE_OP)

FILE_RESP_FRAME_HEAD = (
    b"\xa2"  # a map of two pairs: the type, then the answer
    + cbor2.dumps(FRAME_KEYS.type)
    + cbor2.dumps(int(FrameType.FILE_RESP))
    + cbor2.dumps(FRAME_KEYS.file_resp)
)
"""A ``FrameFileResp``'s bytes up to its answer: the frame is this + ``FileOpResp.to_cbor()``."""


def decode_item(item: bytes | memoryview) -> DataChunk | Frame:
    """Decode one encoded frame: a :class:`DataChunk` in Go's layout, else a :class:`Frame`.

    ``item`` is one whole CBOR item (as :class:`FrameParser` cuts them).
    Raises :class:`RemoteProtocolError` for an item that is no valid frame.
    """
    fast = parse_data_frame(item)
    if fast is not None:
        return DataChunk(fast[0], fast[1])
    return decode_frame_item(item)


# --- bytes in, frames out -----------------------------------------------------------------------


class FrameParser:
    """Cut received bytes into encoded frames, h11 style: :meth:`feed`, then :meth:`next_item`.

    No I/O: the caller reads from wherever it likes and feeds what it got, in
    pieces of any size (one byte at a time works). The buffer holds at most
    one partial frame plus what was fed; a frame claiming more than
    ``max_frame_size`` bytes is refused as soon as its head says so, before
    its bytes are buffered. Errors carry the stream offset of the frame.
    """

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE):
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._consumed = 0  # stream offset of _buf[0]
        self._ended = False

    @property
    def offset(self) -> int:
        """Stream offset of the next frame."""
        return self._consumed

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned as frames."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes."""
        if self._ended:
            raise RuntimeError("feed() after end()")
        self._buf += data

    def end(self) -> None:
        """The stream ended: :meth:`next_item` then raises for a partial frame left over."""
        self._ended = True

    def next_item(self) -> bytes | None:
        """The next whole encoded frame, or None when more bytes are needed (or at a clean end).

        Raises :class:`FrameTooLargeError` over the limit,
        :class:`RemoteProtocolError` for CBOR agentproto never uses, and
        :class:`TruncatedError` when the stream ended inside a frame.
        """
        buf = self._buf
        try:
            end = item_end(buf, 0)
        except Incomplete as more:
            if more.needed > self.max_frame_size:
                raise FrameTooLargeError(
                    f"frame of at least {more.needed} bytes exceeds the limit of "
                    f"{self.max_frame_size}",
                    offset=self._consumed,
                ) from None
            if self._ended and buf:
                raise TruncatedError(
                    f"stream ended inside a frame ({len(buf)} of at least {more.needed} bytes)",
                    offset=self._consumed,
                ) from None
            return None
        except RemoteProtocolError as exc:
            raise exc.at(self._consumed) from None
        if end > self.max_frame_size:
            raise FrameTooLargeError(
                f"frame of {end} bytes exceeds the limit of {self.max_frame_size}",
                offset=self._consumed,
            )
        item = bytes(buf[:end])
        del buf[:end]
        self._consumed += end
        return item


# --- RPC bookkeeping -----------------------------------------------------------------------------


class Waiter:
    """One RPC caller waiting for its answer (or for the connection's end).

    A held lock that the answer releases: one C-level acquire to wait, one
    release to wake, where an Event takes a Condition and a fresh lock per
    wait (a file-op RPC's hand-over between threads is on its hot path).
    Exactly one thread waits; :meth:`set` and :meth:`fail` count once.
    """

    __slots__ = ("_done", "_lock", "abandoned", "error", "result")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned = False

    def is_set(self) -> bool:
        """True once answered or failed."""
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the answer (or the failure); False if ``timeout`` seconds passed first."""
        if self._done:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            self._lock.release()  # a later wait() returns at once, as an Event's would
            return True
        return self._done

    def _wake(self) -> None:
        if not self._done:
            self._done = True
            self._lock.release()

    def set(self, result: Any) -> None:
        """Hand over the answer and wake the waiting thread."""
        if not self._done:
            self.result = result
            self._wake()

    def fail(self, error: BaseException) -> None:
        """Wake the waiting thread with ``error`` instead of an answer."""
        if not self._done:
            self.error = error
            self._wake()


class RequestTable:
    """Who waits for which answer, on one connection (thread-safe).

    File-op request ids start at 1 and wrap around skipping 0 (a response
    without an ``id`` decodes as 0 and can never be taken for an answer) and
    ids still waiting. PATH queries carry no id: answers are matched first in,
    first out, and a query that timed out stays queued, abandoned, to swallow
    its late answer. Once :meth:`finish` is called every waiter fails and new
    requests are refused with :class:`ConnectionClosedError`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._next_id = 1
        self._files: dict[int, Waiter] = {}
        self._paths: collections.deque[Waiter] = collections.deque()
        self.finished: str | None = None  # why no answer can come any more

    @property
    def file_ops_waiting(self) -> int:
        """File-op requests still waiting for their answer."""
        return len(self._files)

    def _check_open(self) -> None:
        if self.finished is not None:
            raise ConnectionClosedError(f"no answer possible: {self.finished}")

    def new_file_op(self) -> tuple[int, Waiter]:
        """A fresh request id and its waiter."""
        waiter = Waiter()
        with self.lock:
            self._check_open()
            req_id = self._next_id
            while req_id in self._files or req_id == 0:
                req_id = (req_id + 1) & 0xFFFF_FFFF
            self._next_id = (req_id + 1) & 0xFFFF_FFFF or 1
            self._files[req_id] = waiter
        return req_id, waiter

    def forget_file_op(self, req_id: int) -> None:
        """The caller stopped waiting (timeout, failed send)."""
        with self.lock:
            self._files.pop(req_id, None)

    def answer_file_op(self, resp: FileOpResp) -> bool:
        """Hand ``resp`` to its waiter; False if no one waits for that id."""
        with self.lock:
            waiter = self._files.pop(resp.req_id, None)
        if waiter is None:
            return False
        waiter.set(resp)
        return True

    def new_path_query(self) -> Waiter:
        """Queue a waiter for the next PATH answer; the caller holds :attr:`lock` while sending.

        Holding the lock from queueing to sending keeps queries on the wire in
        the order of the queue.
        """
        self._check_open()
        waiter = Waiter()
        self._paths.append(waiter)
        return waiter

    def drop_path_query(self, waiter: Waiter) -> None:
        """Unqueue a query whose send failed; the caller holds :attr:`lock`."""
        self._paths.remove(waiter)

    def answer_path_query(self, info: PathInfo) -> bool:
        """Hand ``info`` to the oldest query; False if none was asked."""
        with self.lock:
            waiter = self._paths.popleft() if self._paths else None
        if waiter is None:
            return False
        if not waiter.abandoned:
            waiter.set(info)
        return True

    def finish(self, reason: str) -> None:
        """No answer can come any more: fail every waiter, refuse new requests."""
        with self.lock:
            self.finished = reason
            waiters = [*self._files.values(), *self._paths]
            self._files.clear()
            self._paths.clear()
        for waiter in waiters:
            waiter.fail(ConnectionClosedError(f"no answer: {reason}"))
