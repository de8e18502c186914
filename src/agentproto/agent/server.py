"""Serving sessions: on stdin/stdout, or on a listening socket with admission checks.

A listening agent admits only allowed peers: see :mod:`agentproto.listener`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

from .. import auth
from ..listener import (
    DEFAULT_IDLE_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    PeerPolicy,
    Refused,
    admit,
    describe_peer,
    open_listener,
    refuse,
)
from ..types import Frame, FrameType
from .session import Session

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "PeerPolicy",
    "serve_listener",
    "serve_stdio",
]

DEFAULT_MAX_CONNECTIONS = 128  # at ~8 descriptors per running command: fits nofile 1024
_ACCEPT_RETRY = 0.1  # seconds between accept() attempts while out of descriptors
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
# accept() failures that say "not now" (out of descriptors or memory; a peer that gave up)
_ACCEPT_TRANSIENT = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO}
)

_agent_log = logging.getLogger("agentproto.agent")


# --- serving ------------------------------------------------------------------------------------


def serve_stdio(args: argparse.Namespace) -> int:
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
    session = Session(
        reader, writer, root=args.root, grace=args.grace, log_level=args.log_level, spin=True
    )
    try:
        session.run()
    finally:
        if session.command is not None and session.command.proc.returncode is None:
            session.command.terminate(args.grace, session.log)
    return 0


class _PatientReader(io.RawIOBase):
    """A listening connection's reading side, with patience for idle runners only.

    Before its command starts, a runner that sends nothing for ``timeout``
    seconds is cut off (an idle connection holds a thread, descriptors and
    buffers); at any time, so is one that stops inside a frame that long.
    A runner idle between frames while its command runs is waited for
    (a long build sends no input). The wait is a poll(2) before each read.
    """

    def __init__(self, conn: socket.socket, timeout: float):
        super().__init__()
        self._conn = conn
        self._fd = conn.fileno()
        self._timeout_ms = max(1, int(timeout * 1000))
        self._timeout = timeout
        self._received = 0  # bytes handed to the frame reader
        self._session: Session | None = None

    def watch(self, session: Session) -> None:
        """Take the phase (command started?) and the frame position from ``session``."""
        self._session = session

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buf: Any) -> int:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLRDHUP)
        while not poller.poll(self._timeout_ms):
            session = self._session
            if session is None:
                break
            if self._received > session.mux.read_offset:
                raise TimeoutError(f"the runner stopped inside a frame for {self._timeout:g}s")
            if session.command is None:
                raise TimeoutError(f"nothing from the runner for {self._timeout:g}s")
        n = self._conn.recv_into(buf)
        self._received += n
        return n


def _refuse_now(conn: socket.socket, reason: str) -> None:
    """Refuse without waiting on the peer (the accepting thread must go on at once)."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(Frame(type=FrameType.ERROR, error=auth.REFUSED_PREFIX + reason).to_cbor())
    conn.close()


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
    return PeerPolicy(
        allowed_uids=allowed,
        token=token,
        any_peer=args.insecure_allow_any_peer,
        idle_timeout=args.idle_timeout,
    )


def serve_listener(args: argparse.Namespace) -> int:
    """Serve connections on ``args.listen`` until a stop signal; the process status."""
    # A stop signal between creating the socket file and the cleanup below would
    # leave the file behind: hold those signals until the cleanup is in place.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        policy = _peer_policy(args)
        sock, shown, unix_path = open_listener(args.listen, policy)
    except (OSError, ValueError) as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        where = "" if isinstance(exc, auth.TokenError) else "--listen "
        print(f"agentproto-agent: error: {where}{exc}", file=sys.stderr)
        return 2
    if policy.any_peer:
        _agent_log.warning(
            "--insecure-allow-any-peer: anyone who can reach %s can run commands as uid %d",
            shown,
            os.geteuid(),
        )
    listener = _Listener(args, policy, sock)
    # A stop signal that lands just before accept() blocks would not interrupt it:
    # the signal also writes to this pipe, which the accepting loop watches.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    listener.wakeup = wake_r
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held signal is handled here
        print(f"agentproto-agent: listening on {shown}", file=sys.stderr, flush=True)
        listener.accept_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
        sock.close()
        if unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(unix_path)
        listener.end_sessions()
    return 0


class _Listener:
    """The accepting loop and the connections it serves, one thread each."""

    def __init__(self, args: argparse.Namespace, policy: PeerPolicy, sock: socket.socket):
        self.args = args
        self.policy = policy
        self.sock = sock
        self.lock = threading.Lock()
        self.sessions: set[Session] = set()
        self.waiting: set[socket.socket] = set()  # connections not admitted yet
        self.active = 0  # connections being served (admission included)
        self.threads: list[threading.Thread] = []
        self.counter = 0
        self.wakeup: int | None = None  # readable once a signal arrived (set_wakeup_fd)
        sock.setblocking(False)  # accept() only once select() saw a connection

    def accept_forever(self) -> None:
        """Accept connections and start a thread for each, within the connection cap."""
        limit = self.args.max_connections
        while True:
            conn = self._accept()
            with self.lock:
                busy = self.active >= limit
                if not busy:
                    self.active += 1
            if busy:
                _agent_log.warning(
                    "refused a connection: %d connections already (--max-connections)", limit
                )
                _refuse_now(conn, f"the agent is busy: {limit} connections already")
                continue
            if conn.family != socket.AF_UNIX:
                # frames are whole writes: Nagle would only hold back pipelined RPCs
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.counter += 1
            name = f"conn{self.counter}"
            thread = threading.Thread(target=self._serve, args=(conn, name), name=name, daemon=True)
            thread.start()
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]

    def _accept(self) -> socket.socket:
        """The next connection; out of descriptors, wait for sessions to end (logged)."""
        starved = 0  # failures in a row
        listening = self.sock.fileno()
        watched = [listening] if self.wakeup is None else [listening, self.wakeup]
        while True:
            ready, _, _ = select.select(watched, [], [])
            if self.wakeup is not None and self.wakeup in ready:
                # the signal's Python handler runs at the next bytecode and ends the loop
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup, 64)
                continue
            try:
                conn, _ = self.sock.accept()
                conn.setblocking(True)  # sessions read and write blocking, in their threads
                return conn
            except BlockingIOError:
                continue  # the peer went away between select() and accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_TRANSIENT:
                    raise
                # the connection stays in the backlog: try again once a session ends
                starved += 1
                if starved == 1 or starved % 100 == 0:
                    _agent_log.warning(
                        "cannot accept a connection (%s): retrying as sessions end", exc.strerror
                    )
                time.sleep(_ACCEPT_RETRY)

    def _serve(self, conn: socket.socket, name: str) -> None:
        try:
            if self._admitted(conn, name):
                self._run_session(conn, name)
        except Exception:
            _agent_log.exception("connection %s failed", name)
        finally:
            conn.close()
            with self.lock:
                self.active -= 1

    def _admitted(self, conn: socket.socket, name: str) -> bool:
        """Admit ``conn`` or refuse it (logged, told why); see :class:`PeerPolicy`."""
        with self.lock:
            self.waiting.add(conn)
        try:
            how = admit(conn, self.policy)
        except Refused as exc:
            peer = describe_peer(conn, auth.peer_uid(conn))
            _agent_log.warning("refused connection %s from %s: %s", name, peer, exc)
            refuse(conn, str(exc))
            return False
        except OSError as exc:
            _agent_log.info("connection %s failed before its first frame: %s", name, exc)
            return False
        finally:
            with self.lock:
                self.waiting.discard(conn)
        _agent_log.debug("connection %s admitted: %s", name, how)
        return True

    def _run_session(self, conn: socket.socket, name: str) -> None:
        def shut() -> None:
            conn.shutdown(socket.SHUT_RDWR)

        reader = _PatientReader(conn, self.policy.idle_timeout)
        session = Session(
            reader,
            conn.makefile("wb", buffering=0),
            root=self.args.root,
            grace=self.args.grace,
            log_level=self.args.log_level,
            name=name,
            abort_read=shut,
        )
        reader.watch(session)
        with self.lock:
            self.sessions.add(session)
        try:
            session.run()
        finally:
            with self.lock:
                self.sessions.discard(session)

    def end_sessions(self) -> None:
        """Agent shutdown: drop connections not admitted yet, abort sessions, wait for them."""
        with self.lock:
            live = list(self.sessions)
            pending = list(self.waiting)
        for conn in pending:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for session in live:
            session.abort()
        for thread in self.threads:
            thread.join(self.args.grace + 5)
