"""Agent addresses: ``unix:/path`` and ``tcp:[HOST:]PORT``, for listening and connecting.

The agent's ``--listen`` and a runner's ``--connect`` share the syntax. A TCP
address without a host means the loopback address: whoever connects to an
agent can run commands as its user.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from .auth import token_line

__all__ = ["Address", "connect", "parse_address"]

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed agent address: ``kind`` "unix" (``path``) or "tcp" (``host``, ``port``)."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_address(spec: str | Address) -> Address:
    """Parse ``unix:/path`` or ``tcp:[HOST:]PORT`` (IPv6 hosts in brackets); ValueError if bad.

    An :class:`Address` is returned as it is, so callers may take either.
    """
    if isinstance(spec, Address):
        return spec
    kind, sep, rest = spec.partition(":")
    if kind == "unix" and sep and rest:
        return Address("unix", path=rest)
    if kind == "tcp" and sep:
        host, colon, port = rest.rpartition(":")
        if not colon:
            host, port = "", rest
        try:
            number = int(port)
        except ValueError:
            number = -1
        if not 0 <= number <= 65535:
            raise ValueError(f"{spec}: bad port {port!r}")
        return Address("tcp", host=host.strip("[]") or DEFAULT_HOST, port=number)
    raise ValueError(f"{spec}: expected unix:/path or tcp:[HOST:]PORT")


def connect(
    address: Address | str, *, timeout: float | None = 10.0, token: bytes | None = None
) -> socket.socket:
    """Open a blocking stream socket to an agent at ``address``; raises OSError if it cannot.

    ``timeout`` bounds the connection attempt only: the socket returned blocks,
    as the mux expects of its file descriptors. ``token`` (see
    :mod:`agentproto.auth`) is presented before anything else is sent: a
    listening agent admits a peer of another uid only with it.
    """
    addr = parse_address(address)
    if addr.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = addr.path
    else:
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        target = (addr.host, addr.port)
    try:
        sock.settimeout(timeout)
        sock.connect(target)
        sock.settimeout(None)
        if addr.kind == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames: RPCs
        if token is not None:
            sock.sendall(token_line(token))
    except BaseException:
        sock.close()
        raise
    return sock
