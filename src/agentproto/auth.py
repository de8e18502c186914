"""Who may drive a listening agent: peer credentials and the connection token.

An agent runs commands as its own user, so whoever can open a connection to
``agentproto-agent --listen`` is that user. Loopback TCP is not a boundary
between the users of one machine, and a Unix socket's file mode is only as
good as the directories above it. A listening agent therefore admits a
connection only when one of these holds:

- the peer's uid is allowed (the agent's own uid, root, and ``--allow-uid``):
  on a Unix socket from ``SO_PEERCRED``; on loopback TCP from the peer
  socket's owner in ``/proc/net/tcp`` / ``/proc/net/tcp6`` (Linux);
- the peer proves it knows the token given to the agent out of band
  (``--token-file`` or ``AGENTPROTO_TOKEN``): before any frame it sends one
  line, :data:`TOKEN_MAGIC` then the token then ``\\n``. No frame starts with
  that byte (a frame is a CBOR map, ``0xa0``-``0xbf``), so the agent tells the
  line from a frame by the first byte; the frames themselves, and everything
  the Go agent speaks on stdio, are unchanged.

A refused peer gets one ``FrameError`` whose text starts with
:data:`REFUSED_PREFIX`, then the connection is closed.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import socket
import stat
import struct
import sys
import time
from collections.abc import Iterable

__all__ = [
    "MAX_TOKEN_LINE",
    "REFUSED_PREFIX",
    "TOKEN_ENV",
    "TOKEN_MAGIC",
    "TokenError",
    "check_token",
    "loopback_peer_uid",
    "peer_uid",
    "read_token_file",
    "read_token_line",
    "token_from_env",
    "token_line",
    "validate_token",
]

TOKEN_MAGIC = b"AGENTPROTO-TOKEN "
TOKEN_ENV = "AGENTPROTO_TOKEN"
REFUSED_PREFIX = "agent refused the connection: "
MIN_TOKEN = 16
MAX_TOKEN = 1024
MAX_TOKEN_LINE = len(TOKEN_MAGIC) + MAX_TOKEN + 1
_TOKEN_CHARS = re.compile(rb"[!-~]+")  # printable ASCII, no spaces: one unambiguous line


class TokenError(ValueError):
    """A token (or token file) that cannot be used; the message says why."""


def validate_token(token: bytes | str, *, source: str) -> bytes:
    """The token as bytes, surrounding whitespace removed; TokenError if it is unusable.

    A token is 16 to 1024 printable ASCII characters without spaces (for
    instance ``openssl rand -hex 32``): short ones could be guessed.
    """
    raw = token.encode("utf-8", "surrogateescape") if isinstance(token, str) else token
    raw = raw.strip()
    if not MIN_TOKEN <= len(raw) <= MAX_TOKEN or not _TOKEN_CHARS.fullmatch(raw):
        raise TokenError(
            f"{source}: a token is {MIN_TOKEN} to {MAX_TOKEN} printable ASCII characters "
            "without spaces (e.g. the output of `openssl rand -hex 32`)"
        )
    return raw


def read_token_file(path: str | os.PathLike[str]) -> bytes:
    """Read a token file; TokenError if it is readable by group or others, or unusable.

    The file holds a secret that lets its reader run commands: like ssh with a
    private key, refuse one that other users may read.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read(MAX_TOKEN + 64)
    except OSError as exc:
        raise TokenError(f"token file {name}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise TokenError(f"token file {name}: not a regular file")
    if mode & 0o077:
        raise TokenError(
            f"token file {name}: mode {stat.S_IMODE(mode):04o} lets other users read it (chmod 600)"
        )
    return validate_token(data, source=f"token file {name}")


def token_from_env(environ: dict[str, str] | None = None) -> bytes | None:
    """The token of ``$AGENTPROTO_TOKEN`` (None when unset or empty); TokenError if unusable."""
    value = (os.environ if environ is None else environ).get(TOKEN_ENV, "")
    if not value:
        return None
    return validate_token(value, source=f"${TOKEN_ENV}")


def token_line(token: bytes) -> bytes:
    """The line a connecting runner sends before its first frame."""
    return TOKEN_MAGIC + token + b"\n"


def check_token(presented: bytes, expected: bytes | None) -> bool:
    """True if ``presented`` is the expected token (constant-time comparison)."""
    return expected is not None and hmac.compare_digest(presented, expected)


def read_token_line(sock: socket.socket, deadline: float) -> bytes:
    """Read the token line from ``sock`` (its first byte already seen); the token.

    Reads byte-bounded (at most :data:`MAX_TOKEN_LINE`) and time-bounded (until
    ``deadline``, a :func:`time.monotonic` value), one byte at a time so that
    nothing past the line is consumed: the frames that follow belong to the
    session. Raises TokenError for a malformed or overlong line, TimeoutError
    when the deadline passes, ConnectionError when the peer closes first.
    """
    line = bytearray()
    while len(line) < MAX_TOKEN_LINE:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete token line in time")
        sock.settimeout(left)
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError("the peer closed the connection inside the token line")
        if byte == b"\n":
            if not line.startswith(TOKEN_MAGIC):
                raise TokenError("the first line is not a token line")
            return bytes(line[len(TOKEN_MAGIC) :])
        line += byte
        if len(line) <= len(TOKEN_MAGIC) and not TOKEN_MAGIC.startswith(bytes(line)):
            raise TokenError("the first line is not a token line")
    raise TokenError("the token line is too long")


# --- the peer's uid ------------------------------------------------------------------------


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of ``sock``, or None when it cannot be known.

    Unix sockets: ``SO_PEERCRED``. TCP: only for a loopback peer, from the
    kernel's socket table (:func:`loopback_peer_uid`).
    """
    if sock.family == socket.AF_UNIX:
        peercred = getattr(socket, "SO_PEERCRED", None)
        if peercred is None:
            return None
        try:
            creds = sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i"))
        except OSError:
            return None
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            peer = sock.getpeername()
            local = sock.getsockname()
        except OSError:
            return None
        return loopback_peer_uid((peer[0], peer[1]), (local[0], local[1]))
    return None


def _proc_address(host: str, port: int) -> tuple[str, str]:
    """(``/proc/net/tcp`` spelling, ``tcp6`` spelling or "") of an address and port.

    The kernel prints each 32-bit word of the address as a native-endian
    integer in hex, and the port as 4 hex digits.
    """
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        v4: ipaddress.IPv4Address | None = ip.ipv4_mapped
    elif isinstance(ip, ipaddress.IPv4Address):
        v4 = ip
    else:
        v4 = None
    v6 = ip if isinstance(ip, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{ip}")
    plain = f"{_words(v4.packed)}:{port:04X}" if v4 is not None else ""
    return plain, f"{_words(v6.packed)}:{port:04X}"


def _words(packed: bytes) -> str:
    return "".join(
        f"{int.from_bytes(packed[i : i + 4], sys.byteorder):08X}" for i in range(0, len(packed), 4)
    )


def loopback_peer_uid(
    peer: tuple[str, int],
    local: tuple[str, int],
    tables: Iterable[str] = ("/proc/net/tcp", "/proc/net/tcp6"),
) -> int | None:
    """The uid owning the loopback TCP socket ``peer`` connected to our ``local``; None if unknown.

    The peer's socket appears in the kernel's table with ``peer`` as its local
    address and ``local`` as its remote one; its ``uid`` column is the user
    that created it. A non-loopback peer (another machine: its uid means
    nothing here) and a peer that is gone give None.
    """
    try:
        if not ipaddress.ip_address(peer[0]).is_loopback and not _mapped_loopback(peer[0]):
            return None
    except ValueError:
        return None
    want_local = _proc_address(*peer)
    want_remote = _proc_address(*local)
    for table in tables:
        try:
            with open(table, encoding="ascii", errors="replace") as f:
                next(f, None)  # the column titles
                for line in f:
                    fields = line.split()
                    if len(fields) < 8:
                        continue
                    if fields[1] in want_local and fields[2] in want_remote:
                        try:
                            return int(fields[7])
                        except ValueError:
                            return None
        except OSError:
            continue
    return None


def _mapped_loopback(host: str) -> bool:
    ip = ipaddress.ip_address(host)
    return (
        isinstance(ip, ipaddress.IPv6Address)
        and ip.ipv4_mapped is not None
        and ip.ipv4_mapped.is_loopback
    )
