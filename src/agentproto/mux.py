"""The frame multiplexer (the Go ``Mux``): streams, signals, logs and RPCs on one connection.

A :class:`Mux` sits on a reader (incoming frames) and a writer (outgoing
frames), typically the two ends of an SSH session's stdio, a subprocess's
pipes or a socket. It is used on both sides:

- **runner side**: register stream handlers for stdout (1), stderr (2) and
  extra fds (3+), send ``FrameExec``, stdin data and signals, then call
  :meth:`Mux.read_loop`, which returns the code of ``FrameExit`` (-1 when the
  connection ended without one). File-op and PATH RPCs (:meth:`Mux.file_op`,
  :meth:`Mux.path_query`) need somebody reading: either the caller's own
  ``read_loop`` in another thread, or :meth:`Mux.start`, which runs it in a
  daemon thread (``wait()`` then returns its result). RPCs therefore work
  with or without a command running.
- **agent side**: :meth:`Mux.decode_one` reads the first frames (config,
  exec) before the loop; :meth:`Mux.on_file_op` and :meth:`Mux.on_path_query`
  install the servers, :meth:`Mux.on_signal` the signal delivery.

File-op request ids are per-mux, start at 1 and wrap around skipping 0: a
response missing its ``id`` decodes as 0 and so can never be taken for an
answer. PATH queries carry no id: answers are matched first-in first-out, and
a query that timed out leaves a placeholder that swallows its late answer.

When the loop ends (end of stream, protocol error, ``FrameExit``) or the mux
is closed, every RPC still waiting gets :class:`ConnectionClosedError`, and
later RPCs fail at once. Frames of unknown type, for streams nobody
registered, or (with ``side=``) going the wrong way are dropped with a
rate-limited log line. Frames over ``max_frame_size`` end the loop with
:class:`FrameTooLargeError` in :attr:`Mux.error`, without being buffered.

Handlers and callbacks run on the reading thread, in frame order: they must
not call :meth:`Mux.file_op` or :meth:`Mux.path_query` themselves (the answer
could only be read by the thread that is waiting for it), and a slow handler
holds up the whole connection (that is the back-pressure).

Hot path: data frames are encoded by hand (byte-identical to
``Frame.to_cbor()``), written with one ``os.writev`` straight to the file
descriptor, read by :class:`~agentproto.codec.FrameReader` (the reader under
:class:`~agentproto.codec.Decoder`) into one reused buffer with the frame-size
limit enforced before buffering, and decoded without cbor2; a frame tap (a recorder) gets
the very bytes that went over the wire. The byte-level work (framing, data
frames by hand, request ids) lives in :mod:`agentproto.protocol`; this
module adds the threads, file descriptors and locks.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import cbor2

from .codec import DEFAULT_MAX_FRAME_SIZE, Encoder, FrameReader
from .errors import (
    AgentProtoError,
    ConnectionClosedError,
    LocalProtocolError,
    RemoteProtocolError,
    RPCTimeoutError,
)
from .protocol import (
    FILE_RESP_FRAME_HEAD,
    RequestTable,
    Side,
    accepted_types,
    check_direction,
    decode_frame_item,
    encode_data_frame_head,
    parse_data_frame,
)
from .spin import Spinner
from .types import (
    Direction,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    PathInfo,
    PathQuery,
)

if TYPE_CHECKING:
    from .fileop_worker import FileOpWorker

__all__ = [
    "FrameRecorder",
    "FrameTap",
    "Mux",
    "StreamHandler",
    "encode_data_frame_head",
    "writer_handler",
]

# kept for code that imported them from here (they live in agentproto.protocol)
_fast_data_frame = parse_data_frame

_log = logging.getLogger("agentproto.mux")

_INITIAL_READ_BUFFER = 64 * 1024  # a quiet connection's read buffer (see _GrowingFrameReader)
_FULL_READ_BUFFER = 4 * 1024 * 1024  # a busy one's: many frames per read(2)
_PIPE_SIZE = 1024 * 1024  # Linux default pipe-max-size; fewer, larger reads and writes
_CLOSE_WAIT = 0.5  # seconds close() waits for a send in progress (longer: the peer is stuck)
# File-op answers held back to share one write(2) with the next ones (see _serve_file_op)
_DEFER_FRAMES = 64
_FILE_OP_TYPE = int(FrameType.FILE_OP)


class StreamHandler(Protocol):
    """Receives the data and the end of one stream (the Go ``StreamHandler``)."""

    def write(self, data: bytes) -> None:
        """Take one chunk of the stream's data."""

    def eof(self) -> None:
        """The sender closed the stream."""


class _WriterHandler:
    def __init__(self, fileobj: Any):
        self._file = fileobj
        self._flush: Callable[[], Any] | None = getattr(fileobj, "flush", None)

    def write(self, data: bytes) -> None:
        self._file.write(data)
        if self._flush is not None:
            self._flush()

    def eof(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file.close()


def writer_handler(fileobj: Any) -> StreamHandler:
    """A :class:`StreamHandler` writing each chunk to ``fileobj`` (flushed), closing it on EOF."""
    return _WriterHandler(fileobj)


class FrameRecorder(Protocol):
    """Where :meth:`Mux.set_recorder` sends frames (a :class:`~agentproto.recording.Recorder`)."""

    def write_frame_parts(
        self, seq: int, direction: Direction, parts: Sequence[bytes | bytearray | memoryview]
    ) -> None:
        """Record one frame given as its encoded pieces."""


FrameTap = Callable[[Direction, Sequence[bytes | bytearray | memoryview]], None]
"""Sees every frame crossing a mux as its encoded pieces, in wire order (:meth:`Mux.set_tap`)."""


class _GrowingFrameReader(FrameReader):
    """A :class:`FrameReader` whose buffer starts small and grows when the stream is busy.

    An idle or quiet connection (a listening agent may hold a hundred) then
    costs 64 KiB instead of 4 MiB of zero-filled buffer. A frame larger than
    the buffer grows it to that frame's size (the reader's own rule); a read
    that fills the whole buffer marks a busy stream, and the buffer grows to
    the reader's full size, so bulk transfers keep many frames per read(2).
    """

    def __init__(
        self,
        reader: Any,
        *,
        max_frame_size: int,
        before_read: Callable[[], None] | None = None,
    ):
        self._before_read = before_read
        self.spinner: Spinner | None = None
        # not super().__init__: its 4 MiB buffer, even freed at once, raises glibc's
        # mmap threshold, and later buffers then stay in the heap after use
        into = getattr(reader, "readinto1", None) or getattr(reader, "readinto", None)
        self._readinto: Callable[[memoryview], int | None] | None = into
        read1 = getattr(reader, "read1", None)
        self._read: Callable[[int], bytes | None] = read1 if read1 is not None else reader.read
        self._mem = bytearray(_INITIAL_READ_BUFFER)
        self._view = memoryview(self._mem)
        self._lo = self._hi = self._consumed = 0
        self._eof = False
        self.max_frame_size = max_frame_size
        self._full_size = _FULL_READ_BUFFER

    @property
    def buffered(self) -> bool:
        """True when bytes past the last frame returned are already read."""
        return self._hi > self._lo

    def next_item(self) -> memoryview | None:
        # Nothing buffered (a quiet connection, one RPC at a time): read before
        # scanning, instead of scanning an empty buffer to learn that.
        if self._lo == self._hi and not self._fill(1):
            return None
        return super().next_item()

    def _fill(self, needed: int) -> bool:
        if self._before_read is not None:
            self._before_read()  # held-back answers go out before this thread may block
        size = len(self._mem)
        if size < self._full_size and self._hi == size:
            lo, hi = self._lo, self._hi
            mem = bytearray(self._full_size)  # a new buffer: views handed out stay valid
            mem[: hi - lo] = self._view[lo:hi]
            self._consumed += lo
            self._mem, self._view = mem, memoryview(mem)
            self._lo, self._hi = 0, hi - lo
        spinner = self.spinner
        if spinner is None or self._lo != self._hi:
            return super()._fill(needed)
        spinner.wait()  # nothing buffered: this read may block
        try:
            return super()._fill(needed)
        finally:
            spinner.done()


class Mux:
    """Multiplex frames over a reader/writer pair (the Go ``Mux``); see the module docs.

    ``reader`` is a binary file object (``read1`` or ``read``); ``writer`` a
    binary file object or anything with ``write``. When the writer has a
    blocking file descriptor, frames go to it with ``os.write`` directly.
    ``side`` ("runner" or "agent") makes the mux drop frames that only the
    other side may receive (a hostile peer's ``FrameExit`` cannot end an
    agent's loop); None accepts every type.
    """

    def __init__(
        self,
        reader: Any,
        writer: Any,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        logger: logging.Logger | None = None,
        side: Side | None = None,
    ):
        self._reader = reader
        self._writer = writer
        self._frames = _GrowingFrameReader(
            reader, max_frame_size=max_frame_size, before_read=self._flush_deferred
        )
        self.log = logger if logger is not None else _log
        self._side: Side | None = side
        self._accepts = accepted_types(side)
        self._serves_file_ops = self._accepts is None or FrameType.FILE_OP in self._accepts
        self._send_lock = threading.Lock()
        # control frames (anything but data) waiting for / given the send lock
        self._control_cond = threading.Condition(threading.Lock())
        self._control_asked = 0
        self._control_sent = 0
        # encoded file-op answers not yet written (guarded by the send lock)
        self._deferred: list[bytes] = []
        self._file_op_worker: FileOpWorker | None = None  # serve_file_ops_on_worker
        self._file_ops_stopped = False  # stop_serving_file_ops
        self._fd = self._writer_fd(writer)
        self._encoder = Encoder(writer) if self._fd is None else None
        self._splice_ok = self._fd is not None and _spliceable(self._fd)
        for f in (writer, reader):
            _grow_pipe(f)

        self._streams: dict[int, StreamHandler] = {}
        self._on_signal: Callable[[int], None] | None = None
        self._on_log: Callable[[LogEntry], None] | None = None
        self._on_file_op: Callable[[FileOpReq], FileOpResp] | None = None
        self._on_file_op_encoded: Callable[[FileOpReq], bytes] | None = None
        self._on_path_query: Callable[[PathQuery], PathInfo] | None = None
        self._on_error: Callable[[str], None] | None = None
        self._tap: FrameTap | None = None
        self._requests = RequestTable()
        self.frames_received = 0
        """Valid frames received so far (a runner's proof that its peer is an agent)."""

        self._send_closed = False
        self._writer_closed = False
        self._closed = False
        self._reading = False
        self._drops: collections.Counter[str] = collections.Counter()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self.exit_code: int | None = None
        """The result of the loop run by :meth:`start` (None while it runs)."""
        self.error: BaseException | None = None
        """The error that ended the last read loop (protocol error, I/O error), if any."""

    @staticmethod
    def _writer_fd(writer: Any) -> int | None:
        try:
            fd = int(writer.fileno())
            if not os.get_blocking(fd):
                return None  # a socket with a timeout: let the file object deal with it
        except (AttributeError, OSError, ValueError):
            return None
        flush = getattr(writer, "flush", None)
        if flush is not None:
            flush()  # anything buffered earlier goes first
        return fd

    # --- registration ------------------------------------------------------------------

    def register_stream(self, stream_id: int, handler: StreamHandler) -> None:
        """Send the data and EOF frames of ``stream_id`` to ``handler``."""
        self._streams[stream_id] = handler

    def on_signal(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(signo)`` for each ``FrameSignal`` (agent side)."""
        self._on_signal = fn

    def on_log(self, fn: Callable[[LogEntry], None]) -> None:
        """Call ``fn(entry)`` for each ``FrameLog`` (runner side)."""
        self._on_log = fn

    def on_file_op(self, fn: Callable[[FileOpReq], FileOpResp]) -> None:
        """Serve ``FrameFileOp`` with ``fn`` (agent side); the request id is copied to the answer.

        ``fn`` runs on the reading thread, so answers go out in request order.
        An exception in ``fn`` is answered with EIO and logged.
        """
        self._on_file_op = fn
        self._on_file_op_encoded = None

    def on_file_op_encoded(self, fn: Callable[[FileOpReq], bytes]) -> None:
        """Like :meth:`on_file_op`, but ``fn`` answers with the encoded ``FileOpResp``.

        ``fn(req)`` returns ``resp.to_cbor()`` with ``resp.req_id`` already
        ``req.req_id``: the agent's Stat answers then need no dataclasses
        (see :meth:`agentproto.agent.fileops.FileOpServer.answer`).
        """
        self._on_file_op_encoded = fn
        self._on_file_op = None

    def on_path_query(self, fn: Callable[[PathQuery], PathInfo]) -> None:
        """Answer ``FramePathQuery`` with ``FramePathInfo`` from ``fn`` (agent side)."""
        self._on_path_query = fn

    def on_error(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(text)`` for each ``FrameError`` (runner side)."""
        self._on_error = fn

    def set_tap(self, tap: FrameTap | None) -> None:
        """Call ``tap(direction, parts)`` for every frame sent (SEND) and received (RECV).

        ``parts`` are the frame's exact bytes on the wire, in pieces (a data
        frame's head and payload), valid during the call only. The tap runs in
        the thread that moves the frame: a received one before it is handled,
        a sent one inside the send lock before it goes out (so an answer can
        never be seen before its request). A slow tap therefore slows the
        connection instead of filling memory. With a tap set, output is not
        spliced in the kernel (the tap must see the bytes). None removes it.
        """
        self._tap = tap

    def set_recorder(self, recorder: FrameRecorder, seq: int) -> None:
        """Record every frame sent (Direction.SEND) and received (RECV) as command ``seq``.

        A tap (:meth:`set_tap`) that writes each frame with
        ``recorder.write_frame_parts``: records hold the exact bytes of the
        wire and the time each frame crossed it, and nothing is pending when a
        call returns. A frame that cannot be recorded (disk full) is logged,
        and the connection goes on.
        """

        def record(direction: Direction, parts: Sequence[bytes | bytearray | memoryview]) -> None:
            try:
                recorder.write_frame_parts(seq, direction, parts)
            except (OSError, ValueError) as exc:
                self._drop("record", f"cannot record a frame: {exc}", logging.WARNING)

        self.set_tap(record)

    # --- sending -----------------------------------------------------------------------------

    def _write(self, parts: list[Any]) -> None:
        """Write an encoded frame, whole; the caller holds the send lock."""
        if self._send_closed:
            self._deferred.clear()  # answers nobody can receive
            raise ConnectionClosedError("the connection is closed for sending")
        if self._deferred:  # answers held back go first, in one write with this frame
            deferred, self._deferred = self._deferred, []
            parts = [*deferred, *parts]
        try:
            self._write_unchecked(parts)
        finally:
            if self._closed:  # close() came while this write was blocked: finish its job
                self._close_writer()

    def _write_unchecked(self, parts: list[Any]) -> None:
        try:
            fd = self._fd
            if fd is None:
                assert self._encoder is not None
                self._encoder.write_encoded(parts[0] if len(parts) == 1 else b"".join(parts))
                return
            if len(parts) == 1:  # one encoded frame (an RPC): no iovec to build
                total = len(parts[0])
                written = os.write(fd, parts[0])
            else:
                total = sum(len(p) for p in parts)
                written = os.writev(fd, parts)
            while written < total:  # partial write (sockets, signals): finish the rest
                rest = b"".join(parts)[written:]
                parts, total, written = [rest], len(rest), os.write(fd, rest)
        except (OSError, ValueError) as exc:
            self._send_closed = True
            raise ConnectionClosedError(f"cannot send frame: {exc}") from exc

    def _send_parts(self, parts: list[Any], stream: int = -1) -> None:
        """Send an encoded frame; ``stream`` >= 0 says it is a data frame (parts: head, data)."""
        if stream >= 0:
            self._yield_to_control_frames()
            self._acquire_send_lock()
        elif not self._send_lock.acquire(blocking=False):
            # the connection is busy: queue up so data frames let this one go first
            with self._control_cond:
                self._control_asked += 1
            try:
                self._acquire_send_lock()
            finally:  # counted even if the wait failed: data must not wait for it
                with self._control_cond:
                    self._control_sent += 1
                    self._control_cond.notify_all()
        try:
            self._tap_and_write(parts)
        finally:
            self._send_lock.release()

    def _acquire_send_lock(self) -> None:
        """Take the send lock; raise ConnectionClosedError instead once the mux is closed.

        A send blocked on a peer that does not read holds the lock: nobody else
        may wait for it forever after :meth:`close`.
        """
        lock = self._send_lock
        if lock.acquire(blocking=False):
            return
        while not lock.acquire(timeout=_CLOSE_WAIT):
            if self._send_closed:
                raise ConnectionClosedError("the connection is closed for sending")

    def _yield_to_control_frames(self) -> None:
        """Let control frames that already wait for the connection go before this data frame.

        A bulk transfer (stdin, output) would otherwise keep the send lock to
        itself while a signal or an RPC waits: Python's locks are not fair.
        Only frames that asked before this one go first, so data cannot starve.
        """
        if self._control_asked == self._control_sent:
            return
        with self._control_cond:
            target = self._control_asked
            while self._control_sent < target and not self._send_closed:
                self._control_cond.wait(0.5)

    def _tap_and_write(self, parts: list[Any]) -> None:
        """Record, then send, one frame; the caller holds the send lock.

        Recorded inside the lock (frames in wire order) and BEFORE the write:
        once on the wire, the peer's answer may be received and recorded at
        once, and a recording must never show a response before its request.
        """
        tap = self._tap
        if tap is not None:
            tap(Direction.SEND, parts)
        self._write(parts)

    def send(self, frame: Frame) -> None:
        """Encode and send one frame; thread-safe. Raises ConnectionClosedError if it cannot."""
        self._send_parts([frame.to_cbor()])

    def send_data(self, stream: int, data: bytes | bytearray | memoryview) -> None:
        """Send a ``FrameData`` for ``stream``; ``data`` may be any bytes-like object.

        The data is not copied when not recording, and is no longer needed when
        the call returns (a caller may reuse its buffer).
        """
        if not data:
            self._send_parts([encode_data_frame_head(stream, 0)], stream)
            return
        self._send_parts([encode_data_frame_head(stream, len(data)), data], stream)

    @property
    def can_splice(self) -> bool:
        """True if :meth:`send_data_from_pipe` moves data in the kernel (no tap set)."""
        return self._splice_ok and self._tap is None

    def send_data_from_pipe(self, stream: int, pipe_fd: int, size: int) -> None:
        """Send a ``FrameData`` of ``size`` bytes taken from the pipe ``pipe_fd``.

        The bytes must already be in the pipe (``FIONREAD``): they are moved with
        ``splice(2)`` from that pipe to the connection, never copied through
        user space, when the connection is a pipe or socket and nothing is
        recording; otherwise they are read and sent as :meth:`send_data` does.
        """
        if not self.can_splice:
            chunks = []
            left = size
            while left:
                chunk = os.read(pipe_fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
            self._send_parts([encode_data_frame_head(stream, len(data)), data], stream)
            return
        self._yield_to_control_frames()
        self._acquire_send_lock()
        try:
            self._write([encode_data_frame_head(stream, size)])
            fd = self._fd
            assert fd is not None
            moved = 0
            try:
                while moved < size:
                    n = os.splice(pipe_fd, fd, size - moved)
                    if not n:
                        raise OSError(errno.EPIPE, "the source pipe ended inside a frame")
                    moved += n
            except OSError as exc:
                # a frame cut short: the connection cannot be used any more
                self._send_closed = True
                raise ConnectionClosedError(f"cannot send frame: {exc}") from exc
            finally:
                if self._closed:
                    self._close_writer()
        finally:
            self._send_lock.release()

    def send_eof(self, stream: int) -> None:
        """Send a ``FrameEOF`` for ``stream``."""
        self.send(Frame(type=FrameType.EOF, stream=stream))

    # --- receiving -----------------------------------------------------------------------------

    def _next_item(self) -> memoryview | None:
        return self._frames.next_item()

    def decode_one(self) -> Frame | None:
        """Read one frame without dispatching it (None at the end of the stream).

        For the frames before the loop (``FrameConfig``, ``FrameExec``).
        Raises :class:`RemoteProtocolError` (and subclasses) for bad input.
        """
        item = self._next_item()
        if item is None:
            return None
        tap = self._tap
        if tap is not None:
            tap(Direction.RECV, [item])  # the exact bytes received
        return decode_frame_item(item)

    def read_loop(self, *, stop: threading.Event | None = None) -> int:
        """Read and dispatch frames until ``FrameExit``, the end of stream or an error.

        Returns the exit code of ``FrameExit``, or -1 when the loop ended without
        one (then :attr:`error` says why, None for a clean end of stream).
        ``stop`` is checked between frames; to end a loop blocked in a read,
        close the connection (or the peer). When the loop ends, every RPC
        still waiting fails with :class:`ConnectionClosedError`.
        """
        self._reading = True
        self.error = None
        reason = "the connection ended"
        code = -1
        try:
            while stop is None or not stop.is_set():
                item = self._next_item()
                if item is None:
                    break
                tap = self._tap
                if tap is not None:
                    tap(Direction.RECV, [item])  # the exact bytes received
                fast = parse_data_frame(item)
                if fast is not None:
                    self.frames_received += 1
                    self._deliver_data(fast[0], fast[1])
                    continue
                try:
                    frame = decode_frame_item(item)
                except RemoteProtocolError as exc:
                    if self._side == "runner" and not self.frames_received:
                        # not one valid frame yet: the peer does not speak the protocol
                        # (`--agent yes`); dropping its output forever would record junk
                        raise RemoteProtocolError(
                            f"the agent's first output is not a frame ({exc}): is it an agent?"
                        ) from None
                    self._drop("invalid", f"dropped an invalid frame: {exc}", logging.WARNING)
                    continue
                self.frames_received += 1
                result = self.dispatch(frame)
                if result is not None:
                    code = result
                    reason = "the command exited"
                    break
        except (AgentProtoError, OSError, ValueError) as exc:
            # ValueError: a file object closed under us
            self.error = exc
            reason = f"the connection failed: {exc}"
            self.log.debug("read loop ended: %s", exc)
        finally:
            self._reading = False
            self._flush_deferred()
            self._finish(reason)
        return code

    def dispatch(self, frame: Frame) -> int | None:
        """Act on one received frame; returns the code if it is an accepted ``FrameExit``."""
        ftype = frame.type
        if ftype is FrameType.FILE_OP and self._serves_file_ops:  # the RPC hot path first
            self._serve_file_op(frame.file_op or FileOpReq())
            return None
        if not isinstance(ftype, FrameType):
            self._drop(f"type{ftype}", f"dropped a frame of unknown type {ftype}")
            return None
        if self._accepts is not None and not check_direction(self._side, ftype):
            self._drop(
                f"dir{ftype}", f"dropped a frame of type {ftype.name}: the peer may not send it"
            )
            return None
        if ftype == FrameType.DATA:
            self._deliver_data(frame.stream, frame.data)
        elif ftype == FrameType.EOF:
            handler = self._streams.get(frame.stream)
            if handler is None:
                self._drop(
                    f"s{frame.stream}", f"dropped EOF for unregistered stream {frame.stream}"
                )
            else:
                self._call("stream EOF handler", handler.eof)
        elif ftype == FrameType.EXIT:
            return frame.code
        elif ftype == FrameType.SIGNAL:
            self._callback("signal", self._on_signal, frame.signal)
        elif ftype == FrameType.LOG:
            self._callback("log", self._on_log, frame.log or LogEntry())
        elif ftype == FrameType.ERROR:
            self._callback("error", self._on_error, frame.error)
        elif ftype == FrameType.FILE_OP:
            self._serve_file_op(frame.file_op or FileOpReq())
        elif ftype == FrameType.FILE_RESP:
            self._answer_file_op(frame.file_resp or FileOpResp())
        elif ftype == FrameType.PATH_QUERY:
            self._serve_path_query(frame.query or PathQuery())
        elif ftype == FrameType.PATH_INFO:
            self._answer_path_query(frame.info or PathInfo())
        else:
            self._drop(
                f"type{ftype}", f"dropped a frame of type {ftype.name}: nothing handles it here"
            )
        return None

    def _deliver_data(self, stream: int, data: bytes) -> None:
        handler = self._streams.get(stream)
        if handler is None:
            self._drop(f"s{stream}", f"dropped data for unregistered stream {stream}")
            return
        self._call("stream handler", handler.write, data)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a handler's bug must not end the connection
            self._drop(what, f"{what} failed: {exc!r}", logging.WARNING)

    def _callback(self, kind: str, fn: Callable[[Any], None] | None, arg: Any) -> None:
        if fn is None:
            self._drop(kind, f"dropped a {kind} frame: no handler")
        else:
            self._call(f"{kind} handler", fn, arg)

    def _drop(self, key: str, message: str, level: int = logging.INFO) -> None:
        """Log a dropped frame or a failed handler: the first 3 of a kind, then every 10x."""
        count = self._drops[key] = self._drops[key] + 1
        if count <= 3 or (count % 10 == 0 and str(count).rstrip("0") == "1"):
            more = f" ({count} so far)" if count > 3 else ""
            self.log.log(level, "%s%s", message, more)

    # --- agent side RPC service ------------------------------------------------------------------

    def _file_op_answer(self, req: FileOpReq) -> bytes:
        """The encoded ``FrameFileResp`` answering ``req`` (never raises)."""
        encoded = self._on_file_op_encoded
        if encoded is not None:
            try:
                body = encoded(req)
            except Exception as exc:
                self.log.warning("file op %s failed: %r", req.op, exc)  # a server bug
                body = FileOpResp(
                    req_id=req.req_id, errno=errno.EIO, err_msg=f"internal error: {exc}"
                ).to_cbor()
        else:
            fn = self._on_file_op
            if fn is None:
                resp = FileOpResp(errno=errno.ENOSYS, err_msg="file ops are not served here")
            else:
                try:
                    resp = fn(req)
                except Exception as exc:
                    self.log.warning("file op %s failed: %r", req.op, exc)  # a server bug
                    resp = FileOpResp(errno=errno.EIO, err_msg=f"internal error: {exc}")
            resp.req_id = req.req_id
            body = resp.to_cbor()
        return FILE_RESP_FRAME_HEAD + body

    def _send_file_op_answer(self, data: bytes) -> None:
        """Send an answer made on the file-op worker thread."""
        try:
            self._send_parts([data])
        except ConnectionClosedError as exc:
            self._drop("send", f"cannot answer: {exc}")

    def serve_file_ops_on_worker(self) -> None:
        """Serve file ops on a worker thread (:mod:`agentproto.fileop_worker`) from now on.

        For an agent whose reading thread must stay free for signals and
        stdin while its command runs: a slow file op then holds up only the
        file ops after it. Answers still go out in request order, and the
        requests waiting are bounded.
        """
        if self._file_op_worker is None and not self._file_ops_stopped:
            from .fileop_worker import FileOpWorker

            self._file_op_worker = FileOpWorker(self._file_op_answer, self._send_file_op_answer)

    def stop_serving_file_ops(self, *, drain: float = 0.0) -> None:
        """Answer no more file ops: before the agent's ``FrameExit``, which must be the last frame.

        Requests queued on the worker get up to ``drain`` seconds to be
        answered; no answer is sent after this returns, and later requests
        are dropped.
        """
        self._file_ops_stopped = True
        worker = self._file_op_worker
        if worker is not None:
            worker.stop(drain)

    def _serve_file_op(self, req: FileOpReq) -> None:
        worker = self._file_op_worker
        if worker is not None:
            worker.submit(req)  # answered on the worker thread (may wait while it is full)
            return
        if self._file_ops_stopped:
            self._drop("fop-late", "dropped a file op: the command has ended")
            return
        data = self._file_op_answer(req)
        try:
            if self._tap is None and self._send_lock.acquire(blocking=False):
                # Nothing to tap and nobody sending: write here, without _send_parts' queue.
                try:
                    if self._frames.buffered:
                        # More input is already read (callers pipelining RPCs): hold this
                        # answer back to share one write(2) with the next ones. It goes out
                        # before this thread reads again (never after a blocking read) or
                        # with any frame sent meanwhile. With a tap, each frame is tapped
                        # as it is sent: not then.
                        self._deferred.append(data)
                        if len(self._deferred) >= _DEFER_FRAMES:
                            self._write([])
                    else:
                        self._write([data])
                finally:
                    self._send_lock.release()
            else:
                self._send_parts([data])
        except ConnectionClosedError as exc:
            self._drop("send", f"cannot answer: {exc}")

    def _flush_deferred(self) -> None:
        """Write the answers held back by :meth:`_serve_file_op` (before a read may block)."""
        if not self._deferred:
            return
        try:
            self._acquire_send_lock()
        except ConnectionClosedError as exc:
            self._drop("send", f"cannot answer: {exc}")
            return
        try:
            if self._deferred:
                self._write([])
        except ConnectionClosedError as exc:
            self._drop("send", f"cannot answer: {exc}")
        finally:
            self._send_lock.release()

    def _serve_path_query(self, query: PathQuery) -> None:
        fn = self._on_path_query
        info = PathInfo(entries=[])
        if fn is None:
            self._drop("pathq", "PATH query with no handler: answered with no entries")
        else:
            try:
                info = fn(query)
            except Exception as exc:
                self.log.warning("PATH query failed: %r", exc)
                self._send_quietly(Frame(type=FrameType.ERROR, error=f"PATH query failed: {exc}"))
        self._send_quietly(Frame(type=FrameType.PATH_INFO, info=info))

    def _send_quietly(self, frame: Frame) -> None:
        try:
            self.send(frame)
        except ConnectionClosedError as exc:
            self._drop("send", f"cannot answer: {exc}")

    # --- runner side RPC clients ------------------------------------------------------------------

    def _answer_file_op(self, resp: FileOpResp) -> None:
        if not self._requests.answer_file_op(resp):
            self._drop("fresp", f"dropped a file-op response with unknown id {resp.req_id}")

    def _answer_path_query(self, info: PathInfo) -> None:
        if not self._requests.answer_path_query(info):
            self._drop("pinfo", "dropped a PATH answer nobody asked for")

    def file_op(self, request: FileOpReq, *, timeout: float | None = 30.0) -> FileOpResp:
        """Send a file-op request with a fresh id and wait for its answer (thread-safe).

        ``request`` is not modified (a copy carries the id). Raises
        :class:`RPCTimeoutError` after ``timeout`` seconds (None: wait forever)
        and :class:`ConnectionClosedError` when the connection ends first.
        Needs a running read loop (see :meth:`start`).
        """
        requests = self._requests
        req_id, waiter = requests.new_file_op()
        try:
            self._send_parts([_encode_file_op(request, req_id)])
        except BaseException:
            requests.forget_file_op(req_id)
            raise
        if not waiter.wait(timeout):
            requests.forget_file_op(req_id)
            if not waiter.is_set():
                raise RPCTimeoutError(
                    f"file op {getattr(request.op, 'name', request.op)} (id {req_id}): "
                    f"no answer in {timeout}s"
                )
        if waiter.error is not None:
            raise waiter.error
        result: FileOpResp = waiter.result
        return result

    def path_query(
        self, paths: list[str] | None = None, *, timeout: float | None = 30.0
    ) -> PathInfo:
        """Ask the agent for the executables on ``paths`` (None or empty: its own $PATH)."""
        requests = self._requests
        with requests.lock:
            waiter = requests.new_path_query()
            try:
                # under the lock: queries go out in the order of the waiter queue
                self.send(
                    Frame(type=FrameType.PATH_QUERY, query=PathQuery(paths=list(paths or [])))
                )
            except BaseException:
                requests.drop_path_query(waiter)
                raise
        if not waiter.wait(timeout):
            waiter.abandoned = True  # stays queued to swallow the late answer
            if not waiter.is_set():
                raise RPCTimeoutError(f"PATH query: no answer in {timeout}s")
        if waiter.error is not None:
            raise waiter.error
        result: PathInfo = waiter.result
        return result

    def _finish(self, reason: str) -> None:
        """No answer can come any more: fail every waiter, refuse new RPCs."""
        self._requests.finish(reason)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Run :meth:`read_loop` in a daemon thread (for RPCs); :meth:`wait` gives its result."""
        if self._thread is not None:
            raise RuntimeError("the read loop is already started")

        def run() -> None:
            try:
                self.exit_code = self.read_loop()
            finally:
                self._done.set()

        self._thread = threading.Thread(target=run, name="agentproto-mux-reader", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the loop run by :meth:`start`; its result, or None if still running."""
        if self._thread is None:
            raise RuntimeError("the read loop was not started with start()")
        self._done.wait(timeout)
        return self.exit_code

    def spin_before_reads(self, enabled: bool) -> bool:
        """Poll the reader briefly before a read that would block (see :mod:`agentproto.spin`).

        For an agent serving RPCs back to back on a machine with a spare
        core. Only for a reader with a file descriptor; returns whether
        spinning is now on. Call it from the reading thread, or before it reads.
        """
        frames = self._frames
        if not enabled:
            frames.spinner = None
            return False
        if frames.spinner is None:
            try:
                fd = int(self._reader.fileno())
            except (AttributeError, OSError, ValueError):
                return False
            frames.spinner = Spinner(fd)
        return True

    @property
    def spinner(self) -> Spinner | None:
        """The :class:`~agentproto.spin.Spinner` in use, if any (its counters)."""
        return self._frames.spinner

    @property
    def read_offset(self) -> int:
        """Stream offset of the next frame to be read (bytes of whole frames read so far)."""
        return self._frames.offset

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop RPCs (waiters get ConnectionClosedError) and close the writer; idempotent.

        The peer sees the end of its input. If a send is blocked (the peer does
        not read), close() does not wait for it past half a second: that send
        closes the writer when it returns, and later sends fail. The reader is
        closed too unless a read loop is running on it (closing it under a
        blocked read is unsafe); that loop ends when the peer closes its side.
        """
        if self._closed:
            return
        self._closed = True
        self._finish("the mux was closed")
        if self._file_op_worker is not None:
            self._file_op_worker.stop()
        if self._send_lock.acquire(timeout=_CLOSE_WAIT):
            try:
                if self._deferred:  # answers already made reach the peer before the end
                    with contextlib.suppress(ConnectionClosedError):
                        self._write([])
                self._close_writer()
            finally:
                self._send_lock.release()
        else:
            # A send is blocked: the peer does not read. Closing the fd under it
            # would not wake it and could let the fd number be reused under its
            # feet, so it closes the writer itself when it returns.
            self._send_closed = True
        if not self._reading:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._reader.close()

    def _close_writer(self) -> None:
        """Close the writer once; the caller holds the send lock.

        On a socket the sending side is shut down too: closing a ``makefile``
        object leaves the socket open, and the peer would not see the end.
        """
        self._send_closed = True
        if not self._writer_closed:
            self._writer_closed = True
            if self._fd is not None and _is_socket(self._fd):
                with contextlib.suppress(OSError):
                    sock = socket.socket(fileno=os.dup(self._fd))
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    finally:
                        sock.close()
            with contextlib.suppress(OSError, ValueError):
                self._writer.close()

    def __enter__(self) -> Mux:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode_file_op(request: FileOpReq, req_id: int) -> bytes:
    """``Frame(type=FILE_OP, file_op=<request with req_id>).to_cbor()``, without the copies.

    The request's map is made once and its id (always its first key) set in
    place; anything unusual (a subclass, a field Go cannot hold) takes the
    general path, which also raises the error naming the field.
    """
    if request.__class__ is FileOpReq:
        try:
            fields = request.to_map()
        except LocalProtocolError:
            pass
        else:
            fields["id"] = req_id
            return cbor2.dumps({"t": _FILE_OP_TYPE, "fop": fields})
    copy = dataclasses.replace(request, req_id=req_id)
    return Frame(type=FrameType.FILE_OP, file_op=copy).to_cbor()


def _is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def _spliceable(fd: int) -> bool:
    """Can splice(2) write to ``fd``: a pipe or a socket, on a system that has it."""
    if not hasattr(os, "splice"):
        return False
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _grow_pipe(fileobj: Any) -> None:
    """Enlarge a pipe's kernel buffer (Linux): fewer context switches per megabyte."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    try:
        fd = int(fileobj.fileno())
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, set_size, _PIPE_SIZE)
    except (AttributeError, OSError, ValueError):
        pass  # not a pipe, or the limit is lower: the default size works too
