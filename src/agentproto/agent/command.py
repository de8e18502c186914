"""A command the agent runs: starting the child, its stdin buffer, its end.

See :mod:`agentproto.agent` for the semantics (exit codes 126/127, extra fds,
process groups, the stdin buffer of :data:`STDIN_BUFFER` bytes).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from ..types import ExecMsg

__all__ = [
    "DEFAULT_GRACE",
    "EXIT_CANNOT_RUN",
    "EXIT_NOT_FOUND",
    "MAX_FD",
    "STDIN_BUFFER",
    "ChildStdin",
    "Command",
    "StartError",
    "spawn",
]

EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126
DEFAULT_GRACE = 2.0
MAX_FD = 1023  # highest fd number a command may ask for in ExecMsg.fds
_PIPE_SIZE = 1024 * 1024
# Stdin the agent holds for a child that is not reading it: more than a runner
# has in flight (a pipe of 1 MiB and a frame), so a runner that pauses its
# input to send a signal gets the signal read.
STDIN_BUFFER = 4 * 1024 * 1024
# Per held chunk, beyond its bytes (object header, deque slot): counted against the
# buffer so that a flood of tiny frames cannot hold more than the bytes suggest.
_CHUNK_OVERHEAD = 128
_MERGE_LIMIT = 64 * 1024  # smaller frames are appended to one buffer up to this size


def _find_prctl() -> Callable[..., int] | None:
    """libc's prctl(2), looked up now: the child after fork must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _find_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent(agent_pid: int) -> None:
    """In the child: get SIGKILL when the agent's thread that started it dies.

    An agent killed with SIGKILL (no chance to end its commands) then leaves
    no orphan behind. The thread that forks is the session's, which outlives
    the child. Checked after the call: the agent may have died just before.
    """
    if _prctl is None:
        return
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != agent_pid:
        os._exit(EXIT_CANNOT_RUN)


class StartError(Exception):
    """The command could not be started; ``code`` is the exit code to report."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _grow(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


class ChildStdin:
    """Stream 0: runner data into the child's stdin, through a bounded buffer.

    A writer thread of its own feeds the pipe, so the connection's reading
    thread goes on reading while the child does not read its input: a signal
    (a Ctrl-C to a command that ignores its stdin), a file op or a PATH query
    behind pending input is still served. Up to ``limit`` bytes wait here
    (each held chunk counted with its overhead; small frames are merged);
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
        self._chunks: collections.deque[bytes | bytearray] = collections.deque()
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
            chunks = self._chunks
            tail = chunks[-1] if len(chunks) > 1 else None  # never [0]: the writer may hold it
            if tail is not None and tail.__class__ is bytearray and len(tail) < _MERGE_LIMIT:
                tail += data  # small frames: one buffer, not an object each
            else:
                chunks.append(bytearray(data) if len(data) < _MERGE_LIMIT else bytes(data))
            self._pending += len(data)
            self._cond.notify_all()
            while self.held > self._limit and not self._closed:
                self._cond.wait()

    @property
    def held(self) -> int:
        """What the pending input costs: its bytes plus a per-chunk overhead."""
        return self._pending + _CHUNK_OVERHEAD * len(self._chunks)

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

    def _write_all(self, chunk: bytes | bytearray) -> bool:
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
        self, proc: subprocess.Popen[bytes], stdin: ChildStdin, outputs: list[tuple[int, int]]
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


def spawn(
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

    agent_pid = os.getpid()

    def before_exec() -> None:  # runs in the child, between fork and exec
        _die_with_parent(agent_pid)
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
            # placed by a pre-exec hook instead; the agent's own fds are all close-on-exec.
            # The hook also ties the child's life to the agent's (PR_SET_PDEATHSIG).
            close_fds=not mapping,
            preexec_fn=before_exec if mapping or _prctl is not None else None,
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
    return Command(proc, ChildStdin(in_w, log, watch_fd, on_gone), outputs)


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
