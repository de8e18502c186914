"""One agent connection (a *session*): config, file ops, PATH queries, at most one command.

See :mod:`agentproto.agent` for the protocol the session follows.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import logging
import os
import select
import signal
import termios
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConnectionClosedError, RemoteProtocolError
from ..mux import Mux
from ..types import ExecMsg, FileOpReq, Frame, FrameType, PathInfo, PathQuery
from .command import DEFAULT_GRACE, Command, StartError, spawn
from .envfilter import EnvFilter
from .logs import MuxLogHandler
from .pathquery import query_path

if TYPE_CHECKING:
    from .fileops import FileOpServer

__all__ = ["READ_SIZE", "Session"]

READ_SIZE = 256 * 1024
READER_JOIN_TIMEOUT = 5.0
ERROR_SEND_WAIT = 1.0  # seconds a FrameError to a misbehaving runner may take before we go on

_agent_log = logging.getLogger("agentproto.agent")


class Session:
    """One connection: optional config, file ops and PATH queries, at most one command.

    ``abort_read`` (sockets) unblocks a read in progress when the session ends
    so the reading thread finishes; for stdio the process exit does that.
    ``spin`` lets the reading thread poll briefly for the next request before
    it sleeps, until the command starts (see :mod:`agentproto.spin`): for a
    process serving this session alone.
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
        spin: bool = False,
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
        self.mux.on_file_op_encoded(self._file_op)
        self.mux.on_path_query(self._path_query)
        if spin:
            self.mux.spin_before_reads(True)

    # --- services ------------------------------------------------------------------------

    def _file_op(self, req: FileOpReq) -> bytes:
        server = self._fileops
        if server is not None:
            return server.answer(req)
        with self._fileops_lock:
            if self._fileops is None:
                from .fileops import FileOpServer  # only sessions doing file ops need it

                self._fileops = FileOpServer(self.root)
            server = self._fileops
        return server.answer(req)

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
            except TimeoutError as exc:
                self.log.warning("closing the connection: %s", exc)
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
            command = spawn(msg, env, self.log, self._watch_fd, self._connection_lost)
        except StartError as exc:
            self.log.error("%s", exc.message)
            self._send_error(exc.message)
            self._send_exit(exc.code)
            return exc.code
        self.command = command
        mux = self.mux
        mux.spin_before_reads(False)  # threads share the GIL from now on: never spin in one
        # a file op that hangs (a dead NFS mount) must not hold up signals and stdin
        mux.serve_file_ops_on_worker()
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
            # The runner is gone, stopped reading or broke the protocol. Log to stderr
            # only, and never wait on the runner for long before ending the child: a
            # frame to a runner that does not read would block forever.
            self.log.removeHandler(self._log_handler)
            if isinstance(mux.error, TimeoutError):
                self.log.warning("%s: terminating the command", mux.error)
            elif isinstance(mux.error, RemoteProtocolError):
                self.log.error("bad input from the runner: %s: terminating the command", mux.error)
                sender = threading.Thread(
                    target=self._send_error,
                    args=(f"protocol error: {mux.error}",),
                    name="agent-error",
                    daemon=True,
                )
                sender.start()
                sender.join(ERROR_SEND_WAIT)  # a runner that reads gets told why
            else:
                self.log.info("the runner disconnected: terminating the command")
            command.terminate(self.grace, self.log)
            finished = True
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
        self.mux.stop_serving_file_ops(drain=ERROR_SEND_WAIT)
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
