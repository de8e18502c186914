"""One command on its own agent connection: start, I/O, signals, RPCs, exit code."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import signal
import threading
from collections.abc import Callable, Mapping, Sequence

from agentproto import (
    AgentConfig,
    AgentProtoError,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    PathInfo,
    Recorder,
    RPCTimeoutError,
)
from agentproto.address import Address

from .connection import AgentConnection
from .errors import AgentLostError, AgentRefusedError
from .stdio import OutputSink, Sink, Source, pump_stdin

__all__ = ["SIGNAL_DELAY_NOTICE", "RemoteCommand"]

SIGNAL_DELAY_NOTICE = 1.0  # seconds a signal may wait for the connection before on_signal_delayed
# An agent that sends nothing this long is asked a file op (any agent answers at once);
# no answer in as long again: it is not an agent. Generous: ssh may ask a password first.
SILENCE_TIMEOUT = 30.0
_PROBE_STDIN_LIMIT = 1 << 20  # more stdin than this sent: the agent may be blocked on it


class RemoteCommand:
    """One command on its own agent connection; see the module documentation.

    ``start()`` launches it, ``wait()`` gives the exit code (raises
    :class:`AgentLostError` when the connection ended without one),
    ``signal()`` forwards a signal, ``connection`` offers RPCs meanwhile.
    The command is recorded as ``seq`` when a recorder is given.
    ``on_signal_delayed(signo)`` is called when a signal queued by
    :meth:`signal_soon` could not be sent within :data:`SIGNAL_DELAY_NOTICE`
    seconds (the agent is not reading: its command ignores a full stdin).
    An agent that sends nothing for ``silence_timeout`` seconds is asked a
    file op; without an answer in as long again the connection is given up
    (``wait()`` raises :class:`AgentLostError`): a silent program is no agent.
    None waits forever.
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
        silence_timeout: float | None = SILENCE_TIMEOUT,
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
        self.silence_timeout = silence_timeout
        self._silent = False  # the silence probe gave up on the agent
        self._stdin_sent = 0
        self.seq = 0
        self.connection: AgentConnection | None = None
        self.exit_code: int | None = None
        self.sinks: dict[int, OutputSink] = {}
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
            sink = OutputSink(target, stream, self._local_pipe_closed)
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
        if self.silence_timeout is not None:
            threading.Thread(target=self._watch_silence, name="reclab-silence", daemon=True).start()

    def _watch_silence(self) -> None:
        """Give up on a peer that says nothing and answers nothing (see the class docs)."""
        assert self.connection is not None and self.silence_timeout is not None
        conn = self.connection
        if conn.mux.wait(self.silence_timeout) is not None or conn.mux.frames_received:
            return  # finished, or spoke: an agent
        if self._stdin_sent > _PROBE_STDIN_LIMIT:
            return  # the agent may be blocked on stdin its command does not read
        try:
            conn.file_op(FileOpReq(op=FileOp.GETWD), timeout=self.silence_timeout)
        except RPCTimeoutError:
            self._silent = True
            conn.abandon()
        except AgentProtoError:
            pass  # the connection ended meanwhile: wait() reports it

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
        try:
            if pump_stdin(self.stdin, self._send_stdin, self._stop_stdin):
                mux.send_eof(0)
        except AgentProtoError:
            pass  # the command ended or the connection closed: nothing more to send

    def _send_stdin(self, chunk: bytes) -> None:
        assert self.connection is not None
        self._stdin_sent += len(chunk)
        self.connection.mux.send_data(0, chunk)

    def write_stdin(self, data: bytes) -> None:
        """Send ``data`` to the command's stdin (with ``stdin=subprocess.PIPE``)."""
        if self.connection is None:
            raise RuntimeError("the command was not started")
        self._send_stdin(data)

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
            if self._silent:
                reason = (
                    f"the agent sent nothing for {self.silence_timeout:g}s and did not answer a "
                    f"file op in {self.silence_timeout:g}s more: is it an agent?"
                )
            elif why:
                reason = f"the connection failed: {why}"
            else:
                reason = "the agent closed the connection"
            status = getattr(self, "_agent_status", None)
            if status:
                reason += f" (agent exit status {status})"
            raise AgentLostError(
                f"no exit code for the command: {reason}",
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
