"""A runnable agent: the far side of the protocol, compatible with ``mproxy-agent``.

``python -m agentproto.agent`` (or ``agentproto-agent``) speaks on its
stdin/stdout, as ``mproxy-agent`` does under SSH; ``--listen unix:/path`` or
``--listen tcp:HOST:PORT`` serves many connections at once instead (one
command per connection). ``--root DIR`` confines file ops to a tree.

A connection (a *session*):

1. Until ``FrameExec``, frames are read one at a time: ``FrameConfig`` sets
   the environment patterns (see :mod:`agentproto.envfilter`), file ops and
   PATH queries are answered; a connection that never sends ``FrameExec`` is
   served until its end.
2. ``FrameExec`` starts the child: ``path`` is the program (relative to
   ``cwd`` when it has a ``/``, looked up on the child's ``PATH`` when it has
   none, ``argv[0]`` when empty), ``argv`` its arguments (``[path]`` when
   empty), ``cwd`` its directory (the agent's when empty). The child runs in a
   new session (its own process group). Each fd ``n`` of ``ExecMsg.fds``
   (3 or more) is a pipe the child writes on fd ``n``, sent as stream ``n``.
3. Stream 0 data goes to the child's stdin (``FrameEOF`` closes it); stdout
   (1), stderr (2) and the extra fds go to the runner as ``FrameData`` chunks
   of up to 256 KiB then ``FrameEOF``, with back-pressure: a runner that stops
   reading blocks the child, nothing piles up in memory. ``FrameSignal`` goes
   to the child's process group. File ops and PATH queries are still served.
4. When the child has exited and its outputs are drained, ``FrameExit``
   carries the exit code (128 + signal number for a child killed by a
   signal, as a shell reports it) and the agent closes the connection:
   ``FrameExit`` is the last frame.

A command that cannot start gets ``FrameError`` (why) and ``FrameExit`` with
127 (program not found) or 126 (found but not runnable: permission, format,
bad ``cwd``, bad ``fds``). If the runner disconnects before the child ends
(end of its input, even while stdin delivery is blocked; or it stops reading
our output), the child's process group gets SIGTERM, then SIGKILL after
``--grace`` seconds, and is reaped. The agent's own log records go to stderr
and, as ``FrameLog``, to the runner (the command line only at debug level).

Hostile or broken input: bytes that are not CBOR, a frame over the size limit
or a cut frame end the session with ``FrameError`` (and the child as above);
before ``FrameExec`` so does a CBOR item that is not a valid frame. During a
command, undecodable frames, frames of unknown type or of the runner-bound
direction (``FrameExit``, a second ``FrameExec``...) are dropped and logged.

Stdin goes through a buffer of ``STDIN_BUFFER`` bytes with a writer thread:
while the child does not read, later frames of the connection (signals, file
ops) are still read and served, until that much input is pending; then the
connection waits for the child (back-pressure). Runners built on this package's
:class:`~agentproto.mux.Mux` send signals, file ops and PATH queries ahead of
the data frames not yet written, so they never wait behind more than that.
"""

from __future__ import annotations

import argparse
import array
import collections
import contextlib
import dataclasses
import fcntl
import ipaddress
import logging
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType as PyFrame
from typing import TYPE_CHECKING, Any

from . import auth
from .address import parse_address
from .envfilter import EnvFilter
from .errors import AgentProtoError, ConnectionClosedError, RemoteProtocolError
from .logs import MuxLogHandler
from .mux import Mux
from .pathquery import query_path
from .types import ExecMsg, FileOpReq, FileOpResp, Frame, FrameType, PathInfo, PathQuery

if TYPE_CHECKING:
    from .fileops import FileOpServer

__all__ = ["EXIT_CANNOT_RUN", "EXIT_NOT_FOUND", "Session", "main"]

EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126
DEFAULT_GRACE = 2.0
READ_SIZE = 256 * 1024
READER_JOIN_TIMEOUT = 5.0
MAX_FD = 1023  # highest fd number a command may ask for in ExecMsg.fds
_PIPE_SIZE = 1024 * 1024
# Stdin the agent holds for a child that is not reading it: more than a runner
# has in flight (a pipe of 1 MiB and a frame), so a runner that pauses its
# input to send a signal gets the signal read.
STDIN_BUFFER = 4 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0  # seconds a peer not admitted by its uid has to present its token
_REFUSAL_DRAIN = 64 * 1024  # what a refused peer may have sent already: read so close() is no RST

_agent_log = logging.getLogger("agentproto.agent")


class StartError(Exception):
    """The command could not be started; ``code`` is the exit code to report."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _grow(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


class _ChildStdin:
    """Stream 0: runner data into the child's stdin, through a bounded buffer.

    A writer thread of its own feeds the pipe, so the connection's reading
    thread goes on reading while the child does not read its input: a signal
    (a Ctrl-C to a command that ignores its stdin), a file op or a PATH query
    behind pending input is still served. Up to ``limit`` bytes wait here;
    past that, :meth:`write` blocks until the child reads (back-pressure on
    the runner; a hostile runner cannot make the agent hold more). While the
    writer waits for the child, the connection is watched: if the runner
    hangs up meanwhile, ``on_gone`` is called (the session then ends the
    child), since the reading thread may be blocked here and not see its
    input end.
    """

    def __init__(
        self,
        fd: int,
        log: logging.Logger,
        watch_fd: int | None,
        on_gone: Callable[[], None],
        *,
        limit: int = STDIN_BUFFER,
    ):
        self._fd = fd
        self._log = log
        self._watch = watch_fd
        self._on_gone = on_gone
        self._limit = limit
        self._cond = threading.Condition(threading.Lock())
        self._chunks: collections.deque[bytes] = collections.deque()
        self._pending = 0  # bytes in _chunks
        self._eof = False  # no more input: close the pipe once drained
        self._closed = False  # the pipe is closed (or being closed): input is dropped
        self._writer: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1  # wakes a writer waiting on the child
        os.set_blocking(fd, False)  # our end only: the child's end stays blocking

    @property
    def pending(self) -> int:
        """Bytes received for the child and not yet written to its stdin."""
        return self._pending

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            if self._closed or self._eof:
                return
            if self._writer is None:
                self._wake_r, self._wake_w = os.pipe()
                self._writer = threading.Thread(
                    target=self._write_loop, name="agent-stdin", daemon=True
                )
                self._writer.start()
            self._chunks.append(bytes(data))
            self._pending += len(data)
            self._cond.notify_all()
            while self._pending > self._limit and not self._closed:
                self._cond.wait()

    def eof(self) -> None:
        """The runner's end of stdin: the pipe is closed once what is pending is written."""
        with self._cond:
            self._eof = True
            if self._writer is None:
                self._close_pipe()
            self._cond.notify_all()

    def close(self) -> None:
        """Drop pending input and close the pipe now (the child is gone)."""
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._pending = 0
            if self._writer is None:
                self._close_pipe()
            elif self._wake_w >= 0:  # the writer is still running (it closes the fds)
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")
            self._cond.notify_all()

    def _write_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._chunks and not self._eof and not self._closed:
                        self._cond.wait()
                    if self._closed or not self._chunks:
                        return
                    chunk = self._chunks[0]
                written = self._write_all(chunk)
                with self._cond:
                    if self._chunks and self._chunks[0] is chunk:
                        self._chunks.popleft()
                        self._pending -= len(chunk)
                    self._cond.notify_all()
                if not written:
                    return
        finally:
            with self._cond:
                self._closed = True
                self._chunks.clear()
                self._pending = 0
                self._close_pipe()
                for fd in (self._wake_r, self._wake_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                # under the lock: close() never writes to a closed (maybe reused) fd number
                self._wake_r = self._wake_w = -1
                self._cond.notify_all()

    def _write_all(self, chunk: bytes) -> bool:
        """Write ``chunk`` to the child; False if the pipe failed or :meth:`close` was called."""
        view = memoryview(chunk)
        try:
            while view:
                try:
                    view = view[os.write(self._fd, view) :]
                except BlockingIOError:
                    if not self._wait_writable():
                        return False
        except OSError as exc:
            self._log.info("child stdin closed (%s): dropping further input", exc.strerror)
            return False
        return True

    def _wait_writable(self) -> bool:
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        poller.register(self._wake_r, select.POLLIN)
        if self._watch is not None:
            poller.register(self._watch, select.POLLRDHUP)  # errors and hangups always count
        while True:
            for fd, events in poller.poll():
                if fd == self._wake_r:
                    return False  # close(): the child is gone
                if fd == self._fd:
                    return True  # writable, or an error the next write reports
                if events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    poller.unregister(fd)  # report once, then wait for the child to go
                    self._on_gone()

    def _close_pipe(self) -> None:
        """Close our end of the pipe; the caller holds the lock."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


class Command:
    """A started child: its process, output pumps and the process group."""

    def __init__(
        self, proc: subprocess.Popen[bytes], stdin: _ChildStdin, outputs: list[tuple[int, int]]
    ):
        self.proc = proc
        self.pgid = proc.pid  # start_new_session: the child leads its own group
        self.stdin = stdin
        self.outputs = outputs  # (read fd, stream id)
        self.pumps: list[threading.Thread] = []

    @property
    def exit_code(self) -> int:
        """The child's exit status; 128 + signal number if a signal killed it."""
        rc = self.proc.returncode
        assert rc is not None
        return 128 - rc if rc < 0 else rc

    def signal(self, signo: int) -> None:
        """Deliver ``signo`` to the child's process group."""
        os.killpg(self.pgid, signo)

    def terminate(self, grace: float, log: logging.Logger) -> None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds, reap the child.

        Then stdin is closed and its pending input dropped (which also releases a
        reading thread blocked on a full stdin buffer).
        """
        for signo in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pgid, signo)
            except (ProcessLookupError, PermissionError):
                break  # the whole group is gone already
            if signo == signal.SIGTERM:
                try:
                    self.proc.wait(grace)
                except subprocess.TimeoutExpired:
                    log.warning("child %d ignored SIGTERM for %.1fs: SIGKILL", self.pgid, grace)
        self.proc.wait()
        self.stdin.close()


def _spawn(
    msg: ExecMsg,
    env: dict[str, str],
    log: logging.Logger,
    watch_fd: int | None = None,
    on_gone: Callable[[], None] = lambda: None,
) -> Command:
    """Start the child of ``msg`` with its pipes; raises StartError when it cannot start.

    ``watch_fd`` (the connection) and ``on_gone`` go to the stdin writer.
    """
    argv = list(msg.argv or [])
    path = msg.path or (argv[0] if argv else "")
    if not path:
        raise StartError(EXIT_NOT_FOUND, "exec: no program path and no argv")
    if not argv:
        argv = [path]
    extra = list(msg.extra_fds)
    bad = [fd for fd in extra if not 3 <= fd <= MAX_FD]
    if bad or len(set(extra)) != len(extra):
        raise StartError(
            EXIT_CANNOT_RUN,
            f"exec {path}: extra fds must be distinct numbers from 3 to {MAX_FD}, got {extra}",
        )
    cwd = msg.cwd or None
    fds: list[int] = []  # everything to close in the agent after the spawn
    try:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds += [in_r, in_w, out_r, out_w, err_r, err_w]
        outputs = [(out_r, 1), (err_r, 2)]
        mapping: list[tuple[int, int]] = []
        for target in extra:
            r, w = os.pipe()
            fds += [r, w]
            # above every target, so no dup2 in the child clobbers a pipe not yet moved
            high = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, MAX_FD + 1)
            fds.append(high)
            mapping.append((high, target))
            outputs.append((r, target))
        for r, _ in outputs:
            _grow(r)
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise StartError(EXIT_CANNOT_RUN, f"exec {path}: cannot create pipes: {exc}") from exc

    def place_extra_fds() -> None:  # runs in the child, between fork and exec
        for src, target in mapping:
            os.dup2(src, target)  # inheritable: survives the exec

    keep = {in_w, out_r, err_r, *(r for r, _ in outputs)}
    try:
        proc = subprocess.Popen(
            argv,
            executable=path,
            stdin=in_r,
            stdout=out_w,
            stderr=err_w,
            env=env,
            cwd=cwd,
            start_new_session=True,
            # pass_fds needs the target numbers open in the agent, so extra fds are
            # placed by a pre-exec hook instead; the agent's own fds are all close-on-exec
            close_fds=not mapping,
            preexec_fn=place_extra_fds if mapping else None,
        )
    except BaseException as exc:
        for fd in fds:
            os.close(fd)
        raise _start_error(exc, path, cwd) from exc
    for fd in fds:
        if fd not in keep:
            os.close(fd)
    log.info("started %s (pid %d)", path, proc.pid)
    log.debug("command line", extra={"argv": argv, "cwd": cwd or ""})  # may hold secrets
    return Command(proc, _ChildStdin(in_w, log, watch_fd, on_gone), outputs)


def _start_error(exc: BaseException, path: str, cwd: str | None) -> StartError:
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        if cwd is not None and exc.filename == cwd:
            return StartError(EXIT_CANNOT_RUN, f"exec {path}: chdir {cwd}: {reason}")
        if isinstance(exc, FileNotFoundError):
            return StartError(EXIT_NOT_FOUND, f"exec {path}: {reason}")
        return StartError(EXIT_CANNOT_RUN, f"exec {path}: {reason}")
    if isinstance(exc, (ValueError, TypeError, subprocess.SubprocessError)):
        return StartError(EXIT_CANNOT_RUN, f"exec {path}: {exc}")
    raise exc  # KeyboardInterrupt and the like are not start failures


class Session:
    """One connection: optional config, file ops and PATH queries, at most one command.

    ``abort_read`` (sockets) unblocks a read in progress when the session ends
    so the reading thread finishes; for stdio the process exit does that.
    """

    def __init__(
        self,
        reader: Any,
        writer: Any,
        *,
        root: str | None = None,
        grace: float = DEFAULT_GRACE,
        log_level: int = logging.INFO,
        name: str = "stdio",
        abort_read: Callable[[], None] | None = None,
    ):
        # not registered with logging.getLogger: one logger per connection must not leak
        self.log = logging.Logger(f"agentproto.agent.{name}")
        self.log.parent = _agent_log
        self.mux = Mux(reader, writer, logger=self.log, side="agent")
        self._log_handler = MuxLogHandler(self.mux, log_level)
        self.log.addHandler(self._log_handler)
        self.root = root
        self.grace = grace
        self._abort_read = abort_read
        self._fileops: FileOpServer | None = None
        self._fileops_lock = threading.Lock()
        self._env_filter = EnvFilter()
        self._wake = threading.Event()
        self._aborted = False
        self.command: Command | None = None
        self._reader: threading.Thread | None = None
        try:
            self._watch_fd: int | None = int(reader.fileno())
        except (AttributeError, OSError, ValueError):
            self._watch_fd = None
        self.mux.on_file_op(self._file_op)
        self.mux.on_path_query(self._path_query)

    # --- services ------------------------------------------------------------------------

    def _file_op(self, req: FileOpReq) -> FileOpResp:
        with self._fileops_lock:
            if self._fileops is None:
                from .fileops import FileOpServer  # only sessions doing file ops need it

                self._fileops = FileOpServer(self.root)
            server = self._fileops
        return server.handle(req)

    def _path_query(self, query: PathQuery) -> PathInfo:
        return query_path(query.paths)

    def _send_error(self, text: str) -> None:
        with contextlib.suppress(ConnectionClosedError):
            self.mux.send(Frame(type=FrameType.ERROR, error=text))

    def abort(self) -> None:
        """End the session from outside (agent shutdown): the child is terminated."""
        self._aborted = True
        self._wake.set()
        if self._abort_read is not None:
            with contextlib.suppress(OSError):
                self._abort_read()

    # --- the session -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve the connection to its end; the exit code, or -1 if no command ran to its end."""
        try:
            msg = self._before_exec()
            if msg is None:
                return -1
            return self._run_command(msg)
        finally:
            with self._fileops_lock:
                if self._fileops is not None:
                    self._fileops.close_all()
            self.log.removeHandler(self._log_handler)
            self.mux.close()
            if self._abort_read is not None:
                with contextlib.suppress(OSError):
                    self._abort_read()
                # the socket is closed after we return: the reader must be done with it
                if self._reader is not None:
                    self._reader.join(READER_JOIN_TIMEOUT)

    def _before_exec(self) -> ExecMsg | None:
        while not self._aborted:
            try:
                frame = self.mux.decode_one()
            except RemoteProtocolError as exc:
                self.log.error("bad input from the runner: %s", exc)
                self._send_error(f"protocol error: {exc}")
                return None
            except (OSError, ValueError) as exc:
                self.log.debug("connection failed: %s", exc)
                return None
            if frame is None:
                self.log.debug("the runner closed the connection without a command")
                return None
            if frame.type == FrameType.CONFIG:
                self._env_filter = EnvFilter.from_config(frame.config)
                for problem in self._env_filter.errors:
                    self.log.warning("config: %s (pattern ignored)", problem)
                    self._send_error(f"config: {problem} (pattern ignored)")
            elif frame.type == FrameType.EXEC:
                return frame.exec or ExecMsg()
            else:
                self.mux.dispatch(frame)
        return None

    def _run_command(self, msg: ExecMsg) -> int:
        env = self._env_filter.build(msg.env, os.environ)
        try:
            command = _spawn(msg, env, self.log, self._watch_fd, self._connection_lost)
        except StartError as exc:
            self.log.error("%s", exc.message)
            self._send_error(exc.message)
            self._send_exit(exc.code)
            return exc.code
        self.command = command
        mux = self.mux
        mux.register_stream(0, command.stdin)
        mux.on_signal(self._signal)
        for fd, stream in command.outputs:
            pump = threading.Thread(
                target=self._pump, args=(fd, stream), name=f"agent-stream-{stream}", daemon=True
            )
            pump.start()
            command.pumps.append(pump)
        child_done = threading.Event()

        def wait_child() -> None:
            command.proc.wait()
            for pump in command.pumps:
                pump.join()
            child_done.set()
            self._wake.set()

        def read() -> None:
            try:
                mux.read_loop()
            finally:
                self._wake.set()

        threading.Thread(target=wait_child, name="agent-wait", daemon=True).start()
        self._reader = threading.Thread(target=read, name="agent-read", daemon=True)
        self._reader.start()
        finished = False
        try:
            self._wake.wait()
            if child_done.is_set() and not self._aborted:
                code = command.exit_code
                self.log.info("command exited with code %d", code)
                self._send_exit(code)
                finished = True
                return code
            if isinstance(mux.error, RemoteProtocolError):
                self.log.error("bad input from the runner: %s", mux.error)
                self._send_error(f"protocol error: {mux.error}")
            else:
                self.log.info("the runner disconnected: terminating the command")
            return -1
        finally:
            if not finished:
                command.terminate(self.grace, self.log)
            command.stdin.close()  # input nobody will read (the child is gone)

    def _connection_lost(self) -> None:
        self._aborted = True
        self._wake.set()

    def _send_exit(self, code: int) -> None:
        # Exit is the last frame: nothing (logs, late file-op answers) may follow it
        self.log.removeHandler(self._log_handler)
        with contextlib.suppress(ConnectionClosedError):
            self.mux.send(Frame(type=FrameType.EXIT, code=code))
        self.mux.close()

    def _signal(self, signo: int) -> None:
        command = self.command
        if command is None or command.proc.returncode is not None:
            return  # reaped: its process group id may belong to someone else by now
        if not 1 <= signo < signal.NSIG:
            self.log.warning("ignored invalid signal number %d", signo)
            return
        try:
            command.signal(signo)
            self.log.info("delivered signal %d to process group %d", signo, command.pgid)
        except (ProcessLookupError, PermissionError) as exc:
            self.log.info("signal %d not delivered: %s", signo, exc.strerror)

    def _pump(self, fd: int, stream: int) -> None:
        """Copy one child output to the runner until EOF, then send FrameEOF."""
        try:
            if self.mux.can_splice:
                self._splice_stream(fd, stream)
            else:
                self._copy_stream(fd, stream)
            self.mux.send_eof(stream)
        except ConnectionClosedError:
            # the runner no longer reads: nobody would drain the child's output
            self.log.debug("cannot send stream %d: the runner is gone", stream)
            self._connection_lost()
        except OSError as exc:
            self.log.warning("reading stream %d failed: %s", stream, exc)
        finally:
            os.close(fd)

    def _splice_stream(self, fd: int, stream: int) -> None:
        """Move the output in the kernel: wait for data, frame what is there, splice it."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        count = array.array("i", [0])
        send = self.mux.send_data_from_pipe
        while True:
            poller.poll()
            fcntl.ioctl(fd, termios.FIONREAD, count)
            if not count[0]:
                return  # readable with nothing to read: every writer has closed it
            send(stream, fd, min(count[0], READ_SIZE))

    def _copy_stream(self, fd: int, stream: int) -> None:
        send = self.mux.send_data
        readv = os.readv
        # one buffer, reused: no allocation (and no fresh pages to fault in) per chunk;
        # send_data has written the chunk out before it returns
        buf = memoryview(bytearray(READ_SIZE))
        while True:
            try:
                n = readv(fd, [buf])
            except InterruptedError:
                continue
            if not n:
                return
            send(stream, buf[:n])


# --- serving ------------------------------------------------------------------------------------


def _serve_stdio(args: argparse.Namespace) -> int:
    # Keep the protocol fds private: stray prints (ours or a library's) must not
    # corrupt the frame stream, so fd 1 becomes stderr and fd 0 /dev/null.
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    reader = open(proto_in, "rb", buffering=0)  # noqa: SIM115 - lives as long as the process
    writer = open(proto_out, "wb", buffering=0)  # noqa: SIM115
    session = Session(reader, writer, root=args.root, grace=args.grace, log_level=args.log_level)
    try:
        session.run()
    finally:
        if session.command is not None and session.command.proc.returncode is None:
            session.command.terminate(args.grace, session.log)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class PeerPolicy:
    """Who may use a listening agent (see :mod:`agentproto.auth`).

    A peer is admitted when its uid is in ``allowed_uids``, or when it
    presents ``token``; ``any_peer`` admits everyone (``--insecure-allow-any-peer``).
    """

    allowed_uids: frozenset[int]
    token: bytes | None = None
    any_peer: bool = False
    handshake_timeout: float = HANDSHAKE_TIMEOUT


class _Refused(Exception):
    """A peer that may not use the agent; the message says why (it is sent to the peer)."""


def _describe_peer(conn: socket.socket, uid: int | None) -> str:
    who = "unknown uid" if uid is None else f"uid {uid}"
    if conn.family == socket.AF_UNIX:
        return who
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return who
    return f"{host}:{port} ({who})"


def _admit(conn: socket.socket, policy: PeerPolicy) -> str:
    """Decide whether ``conn`` may run commands; how it was admitted, or raise _Refused.

    The token line, if the peer sends one, is consumed here, so the session
    starts at the first frame. The first byte tells: a frame is a CBOR map,
    the token line starts with ``A``.
    """
    uid = auth.peer_uid(conn)
    by_uid = uid is not None and uid in policy.allowed_uids
    trusted = by_uid or policy.any_peer
    # a trusted peer may wait before its first frame as long as it likes (step 3
    # bounds idle connections); the others must show their token promptly
    deadline = time.monotonic() + policy.handshake_timeout
    conn.settimeout(None if trusted else policy.handshake_timeout)
    try:
        first = conn.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        raise _Refused("no token presented in time") from None
    if first != auth.TOKEN_MAGIC[:1]:
        conn.settimeout(None)
        if trusted:
            return f"uid {uid}" if by_uid else "any peer (insecure)"
        if not first:
            raise _Refused("closed before any frame")
        if uid is None:
            raise _Refused(
                "the peer's uid cannot be known (not a local connection): "
                "present the agent's token (--token-file or $AGENTPROTO_TOKEN)"
            )
        raise _Refused(
            f"uid {uid} may not use this agent: present the agent's token "
            "(--token-file or $AGENTPROTO_TOKEN)"
        )
    try:
        presented = auth.read_token_line(conn, deadline)
    except (auth.TokenError, TimeoutError, ConnectionError) as exc:
        raise _Refused(f"bad token line: {exc}") from None
    finally:
        conn.settimeout(None)
    if policy.token is not None:
        if auth.check_token(presented, policy.token):
            return "token"
        raise _Refused("wrong token")
    if trusted:
        return f"uid {uid}" if by_uid else "any peer (insecure)"
    raise _Refused(f"this agent takes no token, and uid {uid} may not use it")


def _refuse(conn: socket.socket, reason: str) -> None:
    """Tell a refused peer why in one FrameError, then let the caller close.

    The peer may have sent frames already: they are read (bounded) after our
    side is shut down, so closing sends FIN, not a reset that could destroy
    the error before the peer reads it.
    """
    with contextlib.suppress(OSError):
        conn.settimeout(2.0)
        conn.sendall(Frame(type=FrameType.ERROR, error=auth.REFUSED_PREFIX + reason).to_cbor())
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        drained = 0
        while drained < _REFUSAL_DRAIN and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(16384)
            if not chunk:
                break
            drained += len(chunk)


def _listen(spec: str, policy: PeerPolicy) -> tuple[socket.socket, str, str | None]:
    """Open the listening socket: (socket, address for humans, unix path to remove)."""
    try:
        addr = parse_address(spec)
    except ValueError as exc:
        raise ValueError(f"--listen {exc}") from None
    if addr.kind == "unix":
        path = os.path.abspath(addr.path)
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise ValueError(f"--listen {spec}: {path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket of a dead agent
            else:
                raise ValueError(f"--listen {spec}: another agent is listening on {path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created owner-only: whoever connects can run commands
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        return sock, f"unix:{path}", path
    host, port = addr.host, addr.port
    if not _is_loopback(host) and policy.token is None and not policy.any_peer:
        raise ValueError(
            f"--listen {spec}: other machines can reach {host}, and their users cannot be "
            "identified: give a token (--token-file or $AGENTPROTO_TOKEN), "
            "or --insecure-allow-any-peer"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    return sock, f"tcp:{shown}:{bound[1]}", None


def _peer_policy(args: argparse.Namespace) -> PeerPolicy:
    """The listening agent's admission rule from its options; TokenError for a bad token.

    ``$AGENTPROTO_TOKEN`` is removed from the agent's environment once read:
    the commands it runs inherit that environment and must not learn it.
    """
    token = auth.read_token_file(args.token_file) if args.token_file else None
    from_env = auth.token_from_env()
    os.environ.pop(auth.TOKEN_ENV, None)
    if token is None:
        token = from_env
    allowed = frozenset({os.geteuid(), 0, *(args.allow_uid or [])})
    return PeerPolicy(allowed_uids=allowed, token=token, any_peer=args.insecure_allow_any_peer)


def _serve_listener(args: argparse.Namespace) -> int:
    try:
        policy = _peer_policy(args)
        sock, shown, unix_path = _listen(args.listen, policy)
    except (OSError, ValueError) as exc:
        print(f"agentproto-agent: error: {exc}", file=sys.stderr)
        return 2
    if policy.any_peer:
        _agent_log.warning(
            "--insecure-allow-any-peer: anyone who can reach %s can run commands as uid %d",
            shown,
            os.geteuid(),
        )
    sessions: set[Session] = set()
    waiting: set[socket.socket] = set()  # connections not admitted yet
    lock = threading.Lock()
    counter = 0

    def serve(conn: socket.socket, name: str) -> None:
        def shut() -> None:
            conn.shutdown(socket.SHUT_RDWR)

        try:
            with lock:
                waiting.add(conn)
            try:
                how = _admit(conn, policy)
            except _Refused as exc:
                _agent_log.warning(
                    "refused connection %s from %s: %s",
                    name,
                    _describe_peer(conn, auth.peer_uid(conn)),
                    exc,
                )
                _refuse(conn, str(exc))
                return
            except OSError as exc:
                _agent_log.info("connection %s failed before its first frame: %s", name, exc)
                return
            finally:
                with lock:
                    waiting.discard(conn)
            _agent_log.debug("connection %s admitted: %s", name, how)
            session = Session(
                conn.makefile("rb", buffering=0),
                conn.makefile("wb", buffering=0),
                root=args.root,
                grace=args.grace,
                log_level=args.log_level,
                name=name,
                abort_read=shut,
            )
            with lock:
                sessions.add(session)
            try:
                session.run()
            finally:
                with lock:
                    sessions.discard(session)
        except Exception:
            _agent_log.exception("connection %s failed", name)
        finally:
            conn.close()

    print(f"agentproto-agent: listening on {shown}", file=sys.stderr, flush=True)
    threads: list[threading.Thread] = []
    try:
        while True:
            conn, _ = sock.accept()
            if conn.family != socket.AF_UNIX:
                # frames are whole writes: Nagle would only hold back pipelined RPCs
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            counter += 1
            thread = threading.Thread(
                target=serve, args=(conn, f"conn{counter}"), name=f"conn{counter}", daemon=True
            )
            thread.start()
            threads = [t for t in threads if t.is_alive()] + [thread]
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        sock.close()
        if unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(unix_path)
        with lock:
            live = list(sessions)
            pending = list(waiting)
        for conn in pending:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for session in live:
            session.abort()
        for thread in threads:
            thread.join(args.grace + 5)
    return 0


def _on_signal(signo: int, _frame: PyFrame | None) -> None:
    raise SystemExit(128 + signo)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent (the ``agentproto-agent`` console script); returns the process status."""
    parser = argparse.ArgumentParser(
        prog="agentproto-agent",
        description="Run commands for an agentproto runner over stdin/stdout or a socket.",
    )
    parser.add_argument(
        "--listen",
        metavar="ADDR",
        help="serve connections on unix:/path (mode 0600) or tcp:[HOST:]PORT "
        "(default host 127.0.0.1) instead of stdin/stdout",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="confine file ops to this directory (not commands nor PATH queries)",
    )
    parser.add_argument(
        "--allow-uid",
        metavar="UID",
        type=int,
        action="append",
        help="with --listen: also admit local peers of this uid (repeatable); the agent's own "
        "uid and root are always admitted",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="with --listen: admit any peer presenting the token in PATH (mode 0600; "
        "default: $AGENTPROTO_TOKEN)",
    )
    parser.add_argument(
        "--insecure-allow-any-peer",
        action="store_true",
        help="with --listen: admit every peer that can connect, unchecked (dangerous)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="level of the agent's logs (stderr and FrameLog); default info",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        help="seconds between SIGTERM and SIGKILL when the runner disconnects",
    )
    args = parser.parse_args(argv)
    args.log_level = getattr(logging, args.log_level.upper())
    if args.root is not None:
        if not os.path.isdir(args.root):
            parser.error(f"--root {args.root}: not a directory")
        args.root = os.path.abspath(args.root)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"agentproto-agent[{os.getpid()}]: %(levelname)s %(message)s")
    )
    _agent_log.addHandler(handler)
    _agent_log.setLevel(args.log_level)
    _agent_log.propagate = False
    for signo in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signo, _on_signal)
    try:
        if args.listen:
            return _serve_listener(args)
        return _serve_stdio(args)
    except (KeyboardInterrupt, SystemExit):
        return 1
    except AgentProtoError as exc:
        print(f"agentproto-agent: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
