"""Listening sockets that admit only allowed peers: the agent's and ``reclab serve``'s.

Whoever can connect to a listening agent runs commands as its user, so a
peer is admitted by its uid (:func:`agentproto.auth.peer_uid`: ``SO_PEERCRED``
for Unix sockets, the kernel's socket table for loopback TCP) or by the
token line it sends first (:mod:`agentproto.auth`); the others get one
``FrameError`` saying why and are closed. See :class:`PeerPolicy`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import stat
import time
from typing import NamedTuple

from .address import parse_address
from .auth import (
    REFUSED_PREFIX,
    TOKEN_MAGIC,
    TokenError,
    check_token,
    peer_uid,
    read_token_line,
)
from .types import Frame, FrameType

__all__ = [
    "BACKLOG",
    "DEFAULT_IDLE_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "Listening",
    "PeerPolicy",
    "Refused",
    "admit",
    "describe_peer",
    "is_loopback",
    "open_listener",
    "refuse",
]

HANDSHAKE_TIMEOUT = 10.0  # seconds a peer not admitted by its uid has to present its token
DEFAULT_IDLE_TIMEOUT = 60.0  # seconds any peer has to send its first byte
BACKLOG = 128  # connections the kernel holds before accept(): bursts of runners
_REFUSAL_DRAIN = 64 * 1024  # what a refused peer may have sent already: read so close() is no RST


class Listening(NamedTuple):
    """A listening socket, its address for humans, and the Unix socket file to remove."""

    sock: socket.socket
    shown: str
    unix_path: str | None


def is_loopback(host: str) -> bool:
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


class Refused(Exception):
    """A peer that may not use the agent; the message says why (it is sent to the peer)."""


def describe_peer(conn: socket.socket, uid: int | None) -> str:
    who = "unknown uid" if uid is None else f"uid {uid}"
    if conn.family == socket.AF_UNIX:
        return who
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return who
    return f"{host}:{port} ({who})"


def admit(conn: socket.socket, policy: PeerPolicy) -> str:
    """Decide whether ``conn`` may run commands; how it was admitted, or raise :class:`Refused`.

    The token line, if the peer sends one, is consumed here, so the session
    starts at the first frame. The first byte tells: a frame is a CBOR map,
    the token line starts with ``A``.
    """
    uid = peer_uid(conn)
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
        raise Refused(f"nothing received in {wait:g}s") from None
    if first != TOKEN_MAGIC[:1]:
        conn.settimeout(None)
        if trusted:
            return f"uid {uid}" if by_uid else "any peer (insecure)"
        if not first:
            raise Refused("closed before any frame")
        if uid is None:
            raise Refused(
                "the peer's uid cannot be known (not a local connection): "
                "present the agent's token (--token-file or $AGENTPROTO_TOKEN)"
            )
        raise Refused(
            f"uid {uid} may not use this agent: present the agent's token "
            "(--token-file or $AGENTPROTO_TOKEN)"
        )
    try:
        presented = read_token_line(conn, deadline)
    except (TokenError, TimeoutError, ConnectionError) as exc:
        raise Refused(f"bad token line: {exc}") from None
    finally:
        conn.settimeout(None)
    if policy.token is not None:
        if check_token(presented, policy.token):
            return "token"
        raise Refused("wrong token")
    if trusted:
        return f"uid {uid}" if by_uid else "any peer (insecure)"
    raise Refused(f"this agent takes no token, and uid {uid} may not use it")


def refuse(conn: socket.socket, reason: str) -> None:
    """Tell a refused peer why in one FrameError, then let the caller close.

    The peer may have sent frames already: they are read (bounded) after our
    side is shut down, so closing sends FIN, not a reset that could destroy
    the error before the peer reads it.
    """
    with contextlib.suppress(OSError):
        conn.settimeout(2.0)
        conn.sendall(Frame(type=FrameType.ERROR, error=REFUSED_PREFIX + reason).to_cbor())
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        drained = 0
        while drained < _REFUSAL_DRAIN and (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            chunk = conn.recv(16384)
            if not chunk:
                break
            drained += len(chunk)


def open_listener(spec: str, policy: PeerPolicy) -> Listening:
    """Bind and listen on ``spec`` (``unix:PATH`` or ``tcp:[HOST:]PORT``) for peers of ``policy``.

    A Unix socket is created mode 0600; a TCP address other machines can reach
    needs a token or ``policy.any_peer``. ValueError (saying what is wrong with
    ``spec``) when it cannot be used.
    """
    try:
        addr = parse_address(spec)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if addr.kind == "unix":
        path = os.path.abspath(addr.path)
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise ValueError(f"{spec}: {path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket of a dead agent
            else:
                raise ValueError(f"{spec}: another agent is listening on {path}")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created owner-only: whoever connects can run commands
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            raise ValueError(f"{spec}: cannot create {path}: {exc.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
        return Listening(sock, f"unix:{path}", path)
    host, port = addr.host, addr.port
    if not is_loopback(host) and policy.token is None and not policy.any_peer:
        raise ValueError(
            f"{spec}: other machines can reach {host}, and their users cannot be "
            "identified: give a token (--token-file or $AGENTPROTO_TOKEN), "
            "or --insecure-allow-any-peer"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if family == socket.AF_INET6 else bound[0]
    return Listening(sock, f"tcp:{shown}:{bound[1]}", None)
