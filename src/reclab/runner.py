"""Run commands through an agent and record the session: the runner side, as a Python API.

A *session* is what ``reclab run`` records: a session header, then for every
command its own agent connection (like one SSH session per remote command),
and a footer. One command on one connection is a :class:`RemoteCommand`:

1. the agent is started as a subprocess (``python -m agentproto.agent`` by
   default, or any command line such as ``ssh host mproxy-agent``) and a
   runner-side :class:`~agentproto.mux.Mux` is put on its stdin/stdout;
2. the command gets its sequence number from the recorder (``CommandStart``)
   and the mux records every frame both ways under that number;
3. ``FrameConfig`` (if any) and ``FrameExec`` go out, stdin is streamed as
   stream 0, stdout/stderr/extra fds come back and are written out as they
   arrive; file-op and PATH RPCs may be made meanwhile;
4. ``FrameExit`` gives the exit code, ``CommandEnd`` is recorded.

Where input comes from and output goes follows :mod:`subprocess`: ``None``
means this process's own descriptor (fd 0, 1, 2, or fd *n* for extra fd *n*),
``subprocess.DEVNULL`` nothing, an ``int`` a descriptor, a binary file object
itself; ``stdin`` may also be ``bytes``, or ``subprocess.PIPE`` to feed it
with :meth:`RemoteCommand.write_stdin` and :meth:`RemoteCommand.close_stdin`.
Output is written unbuffered and byte-exact, chunk by chunk, as the agent
sends it.

:func:`forward_signals` relays SIGINT and SIGTERM received by this process
to the running commands as ``FrameSignal`` (the agent delivers them to the
command's process group); the third one abandons the commands by closing
their connections (the agent then terminates them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import queue
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from agentproto import (
    AgentConfig,
    AgentProtoError,
    ExecMsg,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    PathInfo,
    Recorder,
    SessionHeader,
)
from agentproto.address import Address, parse_address
from agentproto.address import connect as connect_to
from agentproto.auth import REFUSED_PREFIX
from agentproto.mux import Mux
from agentproto.recording import RECORDING_VERSION

__all__ = [
    "DEFAULT_AGENT",
    "AgentConnection",
    "AgentLostError",
    "AgentRefusedError",
    "AgentStartError",
    "Backend",
    "RecordedSession",
    "RemoteCommand",
    "RunnerError",
    "SignalState",
    "agent_command",
    "describe_address",
    "describe_agent",
    "forward_signals",
    "run_command",
]

DEFAULT_AGENT: tuple[str, ...] = (sys.executable, "-m", "agentproto.agent")
READ_SIZE = 256 * 1024
# What a shell or ssh would pass on to a foreground command. SIGTSTP/SIGCONT are
# not: stopping the remote command would leave this runner waiting, unstopped.
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# Only the signals that ask to stop count towards giving up; USR1/USR2 are
# messages to the command and may be sent any number of times.
ABANDON_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})
ABANDON_AFTER = 3  # the third stop signal gives up on the commands
CLOSE_TIMEOUT = 5.0
_AGENT_OR_ADDRESS = "an agent command and an address to connect to are exclusive"
SIGNAL_DELAY_NOTICE = 1.0  # seconds a signal may wait for the connection before on_signal_delayed
# ssh options that take an argument (the host is the first word that is not one of these)
_SSH_OPTIONS_WITH_ARG = set("BbcDEeFIiJLlmOoPpQRSWw")

Source = int | bytes | IO[bytes] | None
Sink = int | IO[bytes] | None


class RunnerError(AgentProtoError):
    """A command could not be run through the agent."""


class AgentStartError(RunnerError, OSError):
    """The agent command could not be started (not found, not executable...)."""


class AgentLostError(RunnerError, ConnectionError):
    """The agent connection ended before the command's ``FrameExit``.

    ``agent_stderr`` holds the last lines the agent process wrote on its
    stderr (an ``ssh`` error, a traceback), ``agent_status`` its exit status.
    """

    def __init__(self, message: str, *, agent_stderr: str = "", agent_status: int | None = None):
        super().__init__(message)
        self.agent_stderr = agent_stderr
        self.agent_status = agent_status


class AgentRefusedError(AgentLostError):
    """A listening agent refused the connection (uid not allowed, no or wrong token)."""


# --- the agent command -------------------------------------------------------------------


def agent_command(
    agent: str | Sequence[str] | None = None, *, log_level: str | None = None
) -> list[str]:
    """The agent's argv: ``agent`` split like a shell would (a string), or as given.

    None is this package's own agent as a local subprocess
    (:data:`DEFAULT_AGENT`); ``log_level`` is then passed as ``--log-level``.
    Raises ValueError for an empty command or unbalanced quotes.
    """
    if agent is None:
        argv = list(DEFAULT_AGENT)
        if log_level:
            argv += ["--log-level", log_level]
        return argv
    argv = shlex.split(agent) if isinstance(agent, str) else list(agent)
    if not argv:
        raise ValueError("the agent command is empty")
    return argv


@dataclasses.dataclass(frozen=True, slots=True)
class Backend:
    """How the session header describes where commands run."""

    type: str  # "local", "ssh", or "unix"/"tcp" for a listening agent
    addr: str  # the ssh destination, socket path or host:port; "" for local
    agent_path: str  # the agent program (and its arguments) on that machine


def describe_agent(argv: Sequence[str]) -> Backend:
    """Describe an agent command for the session header: ``ssh`` or ``local``.

    For ``ssh [options] host agent...`` the backend address is ``host`` and the
    agent path the remote command; anything else is a local agent whose path
    is the whole command line.
    """
    if argv and os.path.basename(argv[0]) == "ssh":
        i = 1
        while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
            option = argv[i]
            i += 1
            if len(option) == 2 and option[1] in _SSH_OPTIONS_WITH_ARG:
                i += 1  # "-p 22": the value is the next word
        if i < len(argv) and argv[i] == "--":
            i += 1
        if i < len(argv):
            return Backend("ssh", argv[i], shlex.join(argv[i + 1 :]))
    return Backend("local", "", shlex.join(argv))


def describe_address(address: Address) -> Backend:
    """Describe a listening agent for the session header: ``unix`` or ``tcp`` and its address.

    The agent's program is not known from a socket, so ``agent_path`` is empty.
    """
    if address.kind == "unix":
        return Backend("unix", address.path, "")
    return Backend("tcp", str(address).removeprefix("tcp:"), "")


# --- input and output ------------------------------------------------------------------


class _Sink:
    """A stream handler writing one output stream unbuffered (fd) or to a file object."""

    def __init__(self, target: Sink, default_fd: int, on_broken: Callable[[], None]):
        self._fd: int | None = None
        self._file: IO[bytes] | None = None
        if target is None:
            self._fd = default_fd
        elif target == subprocess.DEVNULL:
            pass
        elif isinstance(target, int):
            self._fd = target
        else:
            self._file = target
        self._on_broken = on_broken
        self._broken = False
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)
        if self._broken:
            return
        try:
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            elif self._file is not None:
                self._file.write(data)
                self._file.flush()
        except BrokenPipeError:
            # the reader went away (`reclab run -- yes | head`): tell the command, as a pipe would
            self._broken = True
            self._on_broken()
        except (OSError, ValueError):
            self._broken = True  # a closed descriptor or file: drop the rest

    def eof(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._file.flush()


def _stdin_fd(source: Source) -> int | None:
    if source is None:
        return 0
    if isinstance(source, int) and source >= 0:
        return source
    fileno = getattr(source, "fileno", None)
    if fileno is not None:
        with contextlib.suppress(OSError, ValueError):
            return int(fileno())
    return None


# --- one connection --------------------------------------------------------------------------


class AgentConnection:
    """One agent connection and the runner-side mux on it (one SSH session).

    By default the agent is a process started from ``agent`` (a command line)
    and spoken to on its stdin/stdout; with ``connect`` (``unix:/path`` or
    ``tcp:HOST:PORT``) it is an agent already listening there
    (``agentproto-agent --listen``), one connection per command.

    The mux reads in a background thread as soon as the connection exists,
    so file-op and PATH RPCs work at once (``mux.file_op``, ``mux.path_query``),
    with or without a command. An agent process's stderr is collected (its
    last lines explain a failed ``ssh``) and passed to ``on_stderr`` line by
    line. ``agent_env`` is the agent process's environment (default: this one's).
    """

    def __init__(
        self,
        agent: str | Sequence[str] | None = None,
        *,
        connect: str | Address | None = None,
        token: bytes | None = None,
        recorder: Recorder | None = None,
        seq: int = 0,
        agent_env: Mapping[str, str] | None = None,
        on_log: Callable[[LogEntry], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ):
        self.process: subprocess.Popen[bytes] | None = None
        self.socket: socket.socket | None = None
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._on_stderr = on_stderr
        self._stderr_thread: threading.Thread | None = None
        if connect is not None:
            if agent is not None:
                raise ValueError(_AGENT_OR_ADDRESS)
            self.address: Address | None = parse_address(connect)
            self.argv: list[str] = []
            try:
                self.socket = connect_to(self.address, token=token)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise AgentStartError(
                    f"cannot connect to the agent at {self.address}: {reason}"
                ) from exc
            reader: Any = self.socket.makefile("rb", buffering=0)
            writer: Any = self.socket.makefile("wb", buffering=0)
        else:
            self.address = None
            self.argv = agent_command(agent)
            try:
                # own process group: a terminal's Ctrl-C reaches reclab only, which forwards it
                self.process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    bufsize=0,
                    env=dict(agent_env) if agent_env is not None else None,
                    process_group=0,
                )
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise AgentStartError(
                    f"cannot start agent {shlex.join(self.argv)!r}: {reason}"
                ) from exc
            self._stderr_thread = threading.Thread(
                target=self._read_stderr, name="reclab-agent-stderr", daemon=True
            )
            self._stderr_thread.start()
            reader, writer = self.process.stdout, self.process.stdin
        self.mux = Mux(reader, writer, side="runner")
        self._reader, self._writer = reader, writer
        self.errors: list[str] = []
        self._on_error = on_error
        self.mux.on_error(self._agent_error)
        if on_log is not None:
            self.mux.on_log(on_log)
        else:
            self.mux.on_log(lambda entry: None)  # recorded all the same
        if recorder is not None:
            self.mux.set_recorder(recorder, seq)
        self._closed = False
        self._started = False
        self._start_lock = threading.Lock()

    @property
    def refusal(self) -> str | None:
        """The listening agent's refusal (``agent refused the connection: ...``), if it refused."""
        return next((e for e in self.errors if e.startswith(REFUSED_PREFIX)), None)

    def _agent_error(self, text: str) -> None:
        self.errors.append(text)
        if self._on_error is not None:
            self._on_error(text)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stderr_tail.append(line)
            if self._on_stderr is not None:
                with contextlib.suppress(Exception):
                    self._on_stderr(line)

    def start(self) -> None:
        """Start the mux's read loop (idempotent)."""
        with self._start_lock:
            if not self._started:
                self._started = True
                self.mux.start()

    def file_op(self, request: FileOpReq, *, timeout: float | None = 30.0) -> FileOpResp:
        """One file-op RPC (see :meth:`Mux.file_op`); starts the read loop if needed."""
        self.start()
        return self.mux.file_op(request, timeout=timeout)

    def path_query(
        self, paths: list[str] | None = None, *, timeout: float | None = 30.0
    ) -> PathInfo:
        """One PATH query (see :meth:`Mux.path_query`); starts the read loop if needed."""
        self.start()
        return self.mux.path_query(paths, timeout=timeout)

    @property
    def agent_stderr(self) -> str:
        """The last lines the agent wrote on its stderr."""
        return "\n".join(self._stderr_tail)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int | None:
        """Close the connection and reap an agent process (killed after ``timeout``).

        Returns the agent process's status; None for a connection to a listening agent.
        """
        if not self._closed:
            self._closed = True
            self.mux.close()
        if self.process is None:
            self._close_socket()
            return None
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout)
        for pipe in (self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()
        return status

    def _close_socket(self) -> None:
        if self.socket is None:
            return
        for f in (self._reader, self._writer):
            with contextlib.suppress(OSError, ValueError):
                f.close()
        with contextlib.suppress(OSError):
            self.socket.close()

    def abandon(self) -> None:
        """Give up on the connection without waiting for the command.

        Closing alone may not reach the agent: while it does not read (its
        command ignores a full stdin), a blocked send keeps our end open. So an
        agent process also gets SIGTERM (our agent then ends the command, as
        ``mproxy-agent`` does on a hang-up; for ``ssh …`` the remote agent sees
        the connection drop), and a socket is shut down, which ends a blocked
        send at once.
        """
        self.mux.close()
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)
        elif self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.terminate()

    def __enter__(self) -> AgentConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- one command ------------------------------------------------------------------------------


class RemoteCommand:
    """One command on its own agent connection; see the module documentation.

    ``start()`` launches it, ``wait()`` gives the exit code (raises
    :class:`AgentLostError` when the connection ended without one),
    ``signal()`` forwards a signal, ``connection`` offers RPCs meanwhile.
    The command is recorded as ``seq`` when a recorder is given.
    ``on_signal_delayed(signo)`` is called when a signal queued by
    :meth:`signal_soon` could not be sent within :data:`SIGNAL_DELAY_NOTICE`
    seconds (the agent is not reading: its command ignores a full stdin).
    """

    def __init__(
        self,
        exec_msg: ExecMsg,
        *,
        agent: str | Sequence[str] | None = None,
        connect: str | Address | None = None,
        token: bytes | None = None,
        recorder: Recorder | None = None,
        config: AgentConfig | None = None,
        stdin: Source = None,
        stdout: Sink = None,
        stderr: Sink = None,
        extra_fds: Mapping[int, Sink] | None = None,
        agent_env: Mapping[str, str] | None = None,
        on_log: Callable[[LogEntry], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_agent_stderr: Callable[[str], None] | None = None,
        on_signal_delayed: Callable[[int], None] | None = None,
    ):
        if extra_fds and not exec_msg.extra_fds:
            exec_msg = dataclasses.replace(exec_msg, extra_fds=sorted(extra_fds))
        self.exec_msg = exec_msg
        self.agent = agent
        self.connect = connect
        self.token = token
        self.recorder = recorder
        self.config = config
        self.stdin = stdin
        self.outputs: dict[int, Sink] = {1: stdout, 2: stderr, **dict(extra_fds or {})}
        self.agent_env = agent_env
        self.on_log = on_log
        self.on_error = on_error
        self.on_agent_stderr = on_agent_stderr
        self.on_signal_delayed = on_signal_delayed
        self.seq = 0
        self.connection: AgentConnection | None = None
        self.exit_code: int | None = None
        self.sinks: dict[int, _Sink] = {}
        self._stop_stdin = threading.Event()
        self._stdin_thread: threading.Thread | None = None
        self._sigpipe_sent = False
        self._signals_out: queue.SimpleQueue[int] | None = None  # see signal_soon()
        self._ended = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the agent, record the command start, send config and exec, pump stdin."""
        conn = AgentConnection(
            self.agent,
            connect=self.connect,
            token=self.token,
            agent_env=self.agent_env,
            on_log=self.on_log,
            on_error=self.on_error,
            on_stderr=self.on_agent_stderr,
        )
        self.connection = conn
        if self.recorder is not None:
            self.seq = self.recorder.write_command_start(self.exec_msg)
            conn.mux.set_recorder(self.recorder, self.seq)
        for stream, target in self.outputs.items():
            sink = _Sink(target, stream, self._local_pipe_closed)
            self.sinks[stream] = sink
            conn.mux.register_stream(stream, sink)
        conn.start()
        try:
            if self.config is not None:
                conn.mux.send(Frame(type=FrameType.CONFIG, config=self.config))
            conn.mux.send(Frame(type=FrameType.EXEC, exec=self.exec_msg))
        except AgentProtoError:
            return  # the agent is gone already: wait() reports it with its stderr
        self._stdin_thread = threading.Thread(
            target=self._pump_stdin, name="reclab-stdin", daemon=True
        )
        self._stdin_thread.start()

    def _local_pipe_closed(self) -> None:
        with self._lock:
            if self._sigpipe_sent:
                return
            self._sigpipe_sent = True
        self.signal_soon(signal.SIGPIPE)  # on the reading thread: must not block

    def _pump_stdin(self) -> None:
        """Stream 0: local input to the command, then FrameEOF."""
        assert self.connection is not None
        mux = self.connection.mux
        source = self.stdin
        try:
            if isinstance(source, bytes):
                for i in range(0, len(source), READ_SIZE):
                    mux.send_data(0, source[i : i + READ_SIZE])
            elif source == subprocess.PIPE:
                return  # the caller feeds stdin: write_stdin(), close_stdin()
            elif source != subprocess.DEVNULL:
                self._pump_source(source)
            if not self._stop_stdin.is_set():
                mux.send_eof(0)
        except AgentProtoError:
            pass  # the command ended or the connection closed: nothing more to send

    def _pump_source(self, source: Source) -> None:
        assert self.connection is not None
        mux = self.connection.mux
        try:
            fd = _stdin_fd(source)
            if fd is not None:
                self._pump_fd(fd)
            elif source is not None and not isinstance(source, (int, bytes)):
                while not self._stop_stdin.is_set():
                    chunk = source.read(READ_SIZE)
                    if not chunk:
                        break
                    mux.send_data(0, chunk)
        except (OSError, ValueError):
            pass  # unreadable input (a closed fd 0) ends stdin like an empty one

    def _pump_fd(self, fd: int) -> None:
        assert self.connection is not None
        mux = self.connection.mux
        while not self._stop_stdin.is_set():
            # poll so the pump ends with the command even if nobody ever types
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except (OSError, ValueError):
                ready = [fd]  # not selectable (a regular file is always ready anyway)
            if not ready:
                continue
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                return
            mux.send_data(0, chunk)

    def write_stdin(self, data: bytes) -> None:
        """Send ``data`` to the command's stdin (with ``stdin=subprocess.PIPE``)."""
        if self.connection is None:
            raise RuntimeError("the command was not started")
        self.connection.mux.send_data(0, data)

    def close_stdin(self) -> None:
        """End the command's stdin (``FrameEOF`` on stream 0)."""
        if self.connection is None:
            raise RuntimeError("the command was not started")
        self.connection.mux.send_eof(0)

    def signal(self, signo: int) -> None:
        """Send ``FrameSignal`` for the command; ignored when the connection is gone."""
        if self.connection is None:
            return
        with contextlib.suppress(AgentProtoError):
            self.connection.mux.send(Frame(type=FrameType.SIGNAL, signal=int(signo)))

    def signal_soon(self, signo: int) -> None:
        """Queue ``signo`` for the command and return at once; queued signals go out in order.

        For callers that must not block (the signal relay, a stream handler):
        a send waits while the connection is blocked, for instance behind stdin
        that the agent cannot deliver because the command does not read it.
        """
        with self._lock:
            if self._signals_out is None:
                self._signals_out = queue.SimpleQueue()
                threading.Thread(
                    target=self._send_queued_signals,
                    args=(self._signals_out,),
                    name="reclab-signal-out",
                    daemon=True,
                ).start()
            self._signals_out.put(signo)

    def _send_queued_signals(self, signals: queue.SimpleQueue[int]) -> None:
        while (signo := signals.get()) > 0:
            notice = None
            if self.on_signal_delayed is not None:
                # the connection is blocked (the agent is not reading): say so, once per signal
                notice = threading.Timer(SIGNAL_DELAY_NOTICE, self.on_signal_delayed, (signo,))
                notice.daemon = True
                notice.start()
            try:
                self.signal(signo)
            finally:
                if notice is not None:
                    notice.cancel()

    @property
    def running(self) -> bool:
        """True between start() and the end of the connection."""
        return self.connection is not None and not self._ended

    def abandon(self) -> None:
        """Give up on the command without waiting: see :meth:`AgentConnection.abandon`."""
        if self.connection is not None:
            self.connection.abandon()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for ``FrameExit``; returns its code, records ``CommandEnd``, closes the connection.

        Raises :class:`AgentLostError` if the connection ended without an exit
        code and TimeoutError if ``timeout`` passed first (the command runs on).
        """
        conn = self.connection
        if conn is None:
            raise RuntimeError("the command was not started")
        code = conn.mux.wait(timeout)
        if code is None:
            raise TimeoutError(f"the command did not finish in {timeout}s")
        with self._lock:
            first = not self._ended
            self._ended = True
        if first:
            self._stop_stdin.set()
            with self._lock:
                if self._signals_out is not None:
                    self._signals_out.put(0)  # ends the signal sender
            status = conn.close()
            self.exit_code = code if code >= 0 else None
            if self.recorder is not None:
                with contextlib.suppress(OSError, ValueError):
                    self.recorder.write_command_end(self.seq, code)
            self._agent_status = status
        if self.exit_code is None:
            refusal = conn.refusal
            if refusal is not None:
                raise AgentRefusedError(refusal)
            why = conn.mux.error
            reason = f"the connection failed: {why}" if why else "the agent closed the connection"
            status = getattr(self, "_agent_status", None)
            if status:
                reason += f" (agent exit status {status})"
            raise AgentLostError(
                f"{reason} before the command's exit code",
                agent_stderr=conn.agent_stderr,
                agent_status=status,
            )
        return self.exit_code

    def file_op(self, request: FileOpReq, *, timeout: float | None = 30.0) -> FileOpResp:
        """A file-op RPC on this command's connection (while it runs)."""
        if self.connection is None:
            raise RuntimeError("the command was not started")
        return self.connection.file_op(request, timeout=timeout)

    def path_query(
        self, paths: list[str] | None = None, *, timeout: float | None = 30.0
    ) -> PathInfo:
        """A PATH query on this command's connection (while it runs)."""
        if self.connection is None:
            raise RuntimeError("the command was not started")
        return self.connection.path_query(paths, timeout=timeout)


# --- signals ----------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class SignalState:
    """What :func:`forward_signals` saw: signals received, and the one that abandoned."""

    received: int = 0  # stop signals (ABANDON_SIGNALS) only
    abandoned_by: int = 0  # the signal number that made it give up (0: it did not)


@contextlib.contextmanager
def forward_signals(
    commands: Sequence[RemoteCommand] | Callable[[], Sequence[RemoteCommand]],
    signals: Sequence[int] = FORWARDED_SIGNALS,
    *,
    on_abandon: Callable[[int], None] | None = None,
) -> Iterator[SignalState]:
    """Relay ``signals`` received by this process to ``commands`` while the block runs.

    ``commands`` is a list or a function returning the current list. The
    handler only queues the signal number (a handler must not take the mux's
    send lock the interrupted code may hold); a thread sends the frames. The
    :data:`ABANDON_AFTER`-th stop signal (:data:`ABANDON_SIGNALS`) abandons
    every command instead and calls ``on_abandon(signo)``. Yields a
    :class:`SignalState`. Outside the main thread (where handlers cannot be
    installed) nothing is forwarded.
    """
    state = SignalState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()

    def current() -> Sequence[RemoteCommand]:
        return commands() if callable(commands) else commands

    def handler(signo: int, _frame: object) -> None:
        pending.put(signo)  # SimpleQueue.put is safe in a signal handler

    def relay() -> None:
        while True:
            signo = pending.get()
            if signo < 0:
                return
            targets = [c for c in current() if c.running]
            if signo in ABANDON_SIGNALS:
                state.received += 1
            if signo in ABANDON_SIGNALS and state.received >= ABANDON_AFTER:
                state.abandoned_by = state.abandoned_by or signo
                for command in targets:
                    command.abandon()
                if on_abandon is not None:
                    on_abandon(signo)
            else:
                for command in targets:
                    command.signal_soon(signo)  # never blocks: a later signal can abandon

    thread = threading.Thread(target=relay, name="reclab-signals", daemon=True)
    thread.start()
    previous = {signo: signal.signal(signo, handler) for signo in signals}
    try:
        yield state
    finally:
        for signo, old in previous.items():
            signal.signal(signo, old)
        pending.put(-1)
        thread.join(CLOSE_TIMEOUT)


# --- sessions ----------------------------------------------------------------------------------


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class RecordedSession:
    """A recorded runner session: header now, one agent connection per command, footer at close.

    ``output`` is a path (created or truncated) or a binary stream. The
    header names the backend: ``ssh`` with the host for an ``ssh ...`` agent
    command, else ``local``, with ``agent_path`` the agent command; or, with
    ``connect``, ``unix``/``tcp`` and the listening agent's address. Use
    :meth:`command` for full control, :meth:`run` and :meth:`run_all` for
    the usual cases. Thread-safe: commands may run concurrently.
    """

    def __init__(
        self,
        output: str | os.PathLike[str] | IO[bytes],
        *,
        agent: str | Sequence[str] | None = None,
        connect: str | Address | None = None,
        token: bytes | None = None,
        agent_env: Mapping[str, str] | None = None,
        config: AgentConfig | None = None,
        on_log: Callable[[LogEntry], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_agent_stderr: Callable[[str], None] | None = None,
    ):
        if connect is not None:
            if agent is not None:
                raise ValueError(_AGENT_OR_ADDRESS)
            self.address: Address | None = parse_address(connect)
            self.agent_argv: list[str] | None = None
            self.backend = describe_address(self.address)
        else:
            self.address = None
            self.agent_argv = agent_command(agent)
            self.backend = describe_agent(self.agent_argv)
        self.recorder = Recorder(output)
        self.header = SessionHeader(
            version=RECORDING_VERSION,
            start_time=time.time_ns(),
            local_user=_local_user(),
            local_pid=os.getpid(),
            backend_type=self.backend.type,
            backend_addr=self.backend.addr,
            agent_path=self.backend.agent_path,
        )
        self.recorder.write_session_header(self.header)
        self.agent_env = agent_env
        self.token = token
        self.config = config
        self.on_log = on_log
        self.on_error = on_error
        self.on_agent_stderr = on_agent_stderr
        self.commands: list[RemoteCommand] = []
        self.abandoned_by = 0

    def command(self, exec_msg: ExecMsg, **options: Any) -> RemoteCommand:
        """A recorded :class:`RemoteCommand` (not started) with the session's settings."""
        settings: dict[str, Any] = {
            "agent": self.agent_argv,
            "connect": self.address,
            "token": self.token,
            "recorder": self.recorder,
            "config": self.config,
            "agent_env": self.agent_env,
            "on_log": self.on_log,
            "on_error": self.on_error,
            "on_agent_stderr": self.on_agent_stderr,
        }
        settings.update(options)
        command = RemoteCommand(exec_msg, **settings)
        self.commands.append(command)
        return command

    def run(self, exec_msg: ExecMsg, **options: Any) -> int:
        """Run one command to its end, forwarding SIGINT/SIGTERM; its exit code."""
        return self.run_all([exec_msg], **options)[0]

    def run_all(
        self, exec_msgs: Sequence[ExecMsg], *, parallel: bool = False, **options: Any
    ) -> list[int]:
        """Run commands one after another (or all at once) and return their exit codes.

        A command whose connection was lost counts as exit code 255 (as ssh
        reports it) and the :class:`AgentLostError` is passed to
        ``on_lost`` if given in ``options``; otherwise it is raised after the
        remaining commands ran. ``on_abandon(signo)`` in ``options`` is called
        when repeated signals make the session give up (:func:`forward_signals`);
        :attr:`abandoned_by` then holds that signal and no further command starts.
        """
        on_lost: Callable[[RemoteCommand, AgentLostError], None] | None = options.pop(
            "on_lost", None
        )
        on_abandon: Callable[[int], None] | None = options.pop("on_abandon", None)
        commands = [self.command(msg, **options) for msg in exec_msgs]
        codes: list[int] = []
        lost: AgentLostError | None = None

        def finish(command: RemoteCommand) -> int:
            nonlocal lost
            try:
                return command.wait()
            except AgentLostError as exc:
                if on_lost is not None:
                    on_lost(command, exc)
                elif lost is None:
                    lost = exc
                return 255

        with forward_signals(commands, on_abandon=on_abandon) as signals:
            if parallel:
                started = []
                try:
                    for command in commands:
                        command.start()
                        started.append(command)
                finally:
                    codes = [finish(command) for command in started]
            else:
                for command in commands:
                    if signals.abandoned_by:
                        break  # given up: the remaining commands do not start
                    command.start()
                    codes.append(finish(command))
            self.abandoned_by = signals.abandoned_by
        if lost is not None:
            raise lost
        return codes

    def close(self) -> None:
        """Write the footer and close the recording (idempotent)."""
        self.recorder.close()

    def __enter__(self) -> RecordedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_command(
    exec_msg: ExecMsg,
    *,
    agent: str | Sequence[str] | None = None,
    recorder: Recorder | None = None,
    config: AgentConfig | None = None,
    stdin: Source = None,
    stdout: Sink = None,
    stderr: Sink = None,
    extra_fds: Mapping[int, Sink] | None = None,
    forward: bool = True,
    timeout: float | None = None,
    **options: Any,
) -> int:
    """Run one command through an agent and return its exit code.

    Input and output as in the module documentation (``None``: this process's
    own descriptors). With ``recorder`` the command and all its frames are
    recorded (the caller writes the session header and footer, or use
    :class:`RecordedSession`). ``forward`` relays SIGINT/SIGTERM to the
    command. Raises :class:`AgentStartError` when the agent cannot start,
    :class:`AgentLostError` when it ends without the command's exit code.
    """
    command = RemoteCommand(
        exec_msg,
        agent=agent,
        recorder=recorder,
        config=config,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        extra_fds=extra_fds,
        **options,
    )
    with forward_signals([command]) if forward else contextlib.nullcontext():
        command.start()
        return command.wait(timeout)
