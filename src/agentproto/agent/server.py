"""Serving sessions: on stdin/stdout, or on a listening socket with admission checks.

A listening agent admits only allowed peers (:mod:`agentproto.auth`): see
:class:`PeerPolicy`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import io
import ipaddress
import logging
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from typing import Any

from .. import auth
from ..address import parse_address
from ..types import Frame, FrameType
from .session import Session

__all__ = ["HANDSHAKE_TIMEOUT", "PeerPolicy", "serve_listener", "serve_stdio"]

HANDSHAKE_TIMEOUT = 10.0  # seconds a peer not admitted by its uid has to present its token
DEFAULT_IDLE_TIMEOUT = 60.0  # seconds any peer has to send its first byte
DEFAULT_MAX_CONNECTIONS = 128  # at ~8 descriptors per running command: fits nofile 1024
_ACCEPT_RETRY = 0.1  # seconds between accept() attempts while out of descriptors
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
_BACKLOG = 128  # connections the kernel holds before accept(): bursts of runners
# accept() failures that say "not now" (out of descriptors or memory; a peer that gave up)
_ACCEPT_TRANSIENT = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO}
)
_REFUSAL_DRAIN = 64 * 1024  # what a refused peer may have sent already: read so close() is no RST

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
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds an admitted peer may wait to send anything


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
    # an admitted peer has the idle timeout to send something; the others must show
    # their token promptly
    wait = policy.idle_timeout if trusted else min(policy.idle_timeout, policy.handshake_timeout)
    deadline = time.monotonic() + wait
    conn.settimeout(wait)
    try:
        first = conn.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        raise _Refused(f"nothing received in {wait:g}s") from None
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
        except OSError as exc:
            sock.close()
            raise ValueError(f"--listen {spec}: cannot create {path}: {exc.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(_BACKLOG)
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
    sock.listen(_BACKLOG)
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
        sock, shown, unix_path = _listen(args.listen, policy)
    except (OSError, ValueError) as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        print(f"agentproto-agent: error: {exc}", file=sys.stderr)
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
            how = _admit(conn, self.policy)
        except _Refused as exc:
            peer = _describe_peer(conn, auth.peer_uid(conn))
            _agent_log.warning("refused connection %s from %s: %s", name, peer, exc)
            _refuse(conn, str(exc))
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
