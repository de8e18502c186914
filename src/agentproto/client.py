"""The runner side of one agent connection: a transport, and a runner-side Mux on it.

A *transport* carries the bytes: :class:`ProcessTransport` (an agent command
spoken to on its stdin/stdout, as ``ssh host mproxy-agent``),
:class:`SocketTransport` (an agent listening on ``unix:``/``tcp:``, with the
token of :mod:`agentproto.auth`), or :class:`MemoryTransport` (bytes in
memory: tests, replay). :class:`AgentClient` puts a ``side="runner"``
:class:`~agentproto.mux.Mux` on one and reads in a background thread, so
file-op and PATH RPCs work at once, with or without a command.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from .address import Address, parse_address
from .address import connect as connect_to
from .auth import REFUSED_PREFIX
from .mux import FrameTap, Mux
from .types import FileOpReq, FileOpResp, LogEntry, PathInfo

__all__ = [
    "CLOSE_TIMEOUT",
    "AgentClient",
    "MemoryTransport",
    "ProcessTransport",
    "SocketTransport",
    "Transport",
]

CLOSE_TIMEOUT = 5.0
STDERR_LINES = 20  # the last lines of an agent process's stderr kept to explain a failure


class Transport(Protocol):
    """What carries a connection's bytes (see the module documentation)."""

    reader: Any  # a binary file object frames are read from
    writer: Any  # a binary file object frames are written to

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int | None:
        """Release everything (after the mux is closed); an agent process's exit status."""

    def abandon(self) -> None:
        """Make the peer see the end now, even while a send is blocked on it."""

    @property
    def stderr_tail(self) -> str:
        """The last lines an agent process wrote on its stderr ("" if none)."""


class ProcessTransport:
    """An agent command run as a subprocess, spoken to on its stdin/stdout.

    It runs in its own process group: a terminal's Ctrl-C reaches the runner
    only, which forwards it as a frame. Its stderr is read in a thread; the
    last lines are kept (an ``ssh`` error, a traceback) and each line goes to
    ``on_stderr``. Raises OSError or ValueError when the command cannot start.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ):
        self.argv = list(argv)
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=dict(env) if env is not None else None,
            process_group=0,
        )
        self.reader: Any = self.process.stdout
        self.writer: Any = self.process.stdin
        self._tail: deque[str] = deque(maxlen=STDERR_LINES)
        self._on_stderr = on_stderr
        self._stderr_thread = threading.Thread(
            target=self._read_stderr, name="agent-stderr", daemon=True
        )
        self._stderr_thread.start()

    def __str__(self) -> str:
        return shlex.join(self.argv)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            if self._on_stderr is not None:
                with contextlib.suppress(Exception):
                    self._on_stderr(line)

    @property
    def stderr_tail(self) -> str:
        """The last lines the agent wrote on its stderr."""
        return "\n".join(self._tail)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int | None:
        """Reap the agent (killed after ``timeout`` seconds); its exit status."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self._stderr_thread.join(timeout)
        for pipe in (self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()
        return status

    def abandon(self) -> None:
        """SIGTERM the agent: closing alone may not reach it while a send to it is blocked.

        Our agent then ends its command, as ``mproxy-agent`` does on a hang-up;
        for ``ssh …`` the remote agent sees the connection drop.
        """
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.terminate()


class SocketTransport:
    """A connection to an agent listening at ``address`` (``agentproto-agent --listen``).

    ``token`` is presented first (see :mod:`agentproto.auth`). Raises OSError
    when the connection cannot be made.
    """

    def __init__(
        self, address: str | Address, *, token: bytes | None = None, timeout: float = 10.0
    ):
        self.address = parse_address(address)
        self.socket = connect_to(self.address, timeout=timeout, token=token)
        self.reader: Any = self.socket.makefile("rb", buffering=0)
        self.writer: Any = self.socket.makefile("wb", buffering=0)

    def __str__(self) -> str:
        return str(self.address)

    @property
    def stderr_tail(self) -> str:
        """A socket has no agent stderr."""
        return ""

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int | None:
        """Close the socket; a listening agent has no exit status for us (None)."""
        for f in (self.reader, self.writer):
            with contextlib.suppress(OSError, ValueError):
                f.close()
        with contextlib.suppress(OSError):
            self.socket.close()
        return None

    def abandon(self) -> None:
        """Shut the socket down: a blocked send ends at once and the agent sees the end."""
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)


class MemoryTransport:
    """A connection in memory: the agent's side is given as bytes, what we send is kept.

    ``incoming`` is everything the "agent" sends (for instance frames taken
    from a recording); :attr:`sent` is everything written to it. No thread,
    no descriptor: the mux reads ``incoming`` to its end.
    """

    def __init__(self, incoming: bytes = b""):
        self.reader: Any = io.BytesIO(incoming)
        self._sent = io.BytesIO()
        self.writer: Any = _KeepOnClose(self._sent)

    def __str__(self) -> str:
        return "memory"

    @property
    def sent(self) -> bytes:
        """The bytes the runner side wrote."""
        return self._sent.getvalue()

    @property
    def stderr_tail(self) -> str:
        """No agent process: no stderr."""
        return ""

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int | None:
        """Nothing to release."""
        return None

    def abandon(self) -> None:
        """Nothing blocks in memory."""


class _KeepOnClose(io.RawIOBase):
    """A writer whose bytes stay readable after the mux closes it."""

    def __init__(self, sink: io.BytesIO):
        super().__init__()
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._sink.write(data)


class AgentClient:
    """One agent connection from the runner's side: a transport and a runner-side mux.

    The mux reads in a background thread once :meth:`start` is called (the
    RPC methods call it). ``tap`` sees every frame (a recorder, see
    :meth:`Mux.set_tap`). ``FrameError`` texts are kept in :attr:`errors` and
    passed to ``on_error``; ``FrameLog`` entries go to ``on_log``.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        on_log: Callable[[LogEntry], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ):
        self.transport = transport
        self.mux = Mux(transport.reader, transport.writer, side="runner")
        self.errors: list[str] = []
        self._on_error = on_error
        self.mux.on_error(self._agent_error)
        self.mux.on_log(on_log if on_log is not None else (lambda entry: None))
        self._closed = False
        self._started = False
        self._start_lock = threading.Lock()

    def _agent_error(self, text: str) -> None:
        self.errors.append(text)
        if self._on_error is not None:
            self._on_error(text)

    @property
    def refusal(self) -> str | None:
        """The listening agent's refusal (``agent refused the connection: ...``), if it refused."""
        return next((e for e in self.errors if e.startswith(REFUSED_PREFIX)), None)

    def set_tap(self, tap: FrameTap | None) -> None:
        """See every frame of the connection (:meth:`Mux.set_tap`)."""
        self.mux.set_tap(tap)

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
        """The last lines an agent process wrote on its stderr."""
        return self.transport.stderr_tail

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int | None:
        """Close the connection and release the transport; an agent process's exit status."""
        if not self._closed:
            self._closed = True
            self.mux.close()
        return self.transport.close(timeout)

    def abandon(self) -> None:
        """Give up on the connection without waiting (for the command, or a blocked send)."""
        self.mux.close()
        self.transport.abandon()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
