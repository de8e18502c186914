"""One agent connection for a command: an agent process or a listening agent."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence

from agentproto import LogEntry, Recorder
from agentproto.address import Address, parse_address
from agentproto.client import (
    CLOSE_TIMEOUT,
    AgentClient,
    ProcessTransport,
    SocketTransport,
    Transport,
)

from .backend import agent_command
from .errors import AgentStartError

__all__ = ["AGENT_OR_ADDRESS", "AgentConnection"]

AGENT_OR_ADDRESS = "an agent command and an address to connect to are exclusive"


class AgentConnection(AgentClient):
    """One agent connection and the runner-side mux on it (one SSH session).

    By default the agent is a process started from ``agent`` (a command line)
    and spoken to on its stdin/stdout; with ``connect`` (``unix:/path`` or
    ``tcp:HOST:PORT``) it is an agent already listening there
    (``agentproto-agent --listen``), one connection per command, presented
    ``token`` if given (see :mod:`agentproto.auth`). An agent that cannot be
    started or reached raises :class:`AgentStartError`.

    The mux reads in a background thread once started, so file-op and PATH
    RPCs work at once (``file_op``, ``path_query``), with or without a
    command. An agent process's stderr is collected (its last lines explain
    a failed ``ssh``) and passed to ``on_stderr`` line by line. ``agent_env``
    is the agent process's environment (default: this one's). With
    ``recorder``, every frame is recorded as command ``seq``.
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
        transport: Transport
        self.process = None
        self.socket = None
        if connect is not None:
            if agent is not None:
                raise ValueError(AGENT_OR_ADDRESS)
            self.address: Address | None = parse_address(connect)
            self.argv: list[str] = []
            try:
                sockets = SocketTransport(self.address, token=token)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise AgentStartError(
                    f"cannot connect to the agent at {self.address}: {reason}"
                ) from exc
            self.socket = sockets.socket
            transport = sockets
        else:
            self.address = None
            self.argv = agent_command(agent)
            try:
                process = ProcessTransport(self.argv, env=agent_env, on_stderr=on_stderr)
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise AgentStartError(
                    f"cannot start agent {shlex.join(self.argv)!r}: {reason}"
                ) from exc
            self.process = process.process
            transport = process
        super().__init__(transport, on_log=on_log, on_error=on_error)
        if recorder is not None:
            self.mux.set_recorder(recorder, seq)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> int | None:
        """Close the connection and reap an agent process (killed after ``timeout``).

        Returns the agent process's status; None for a connection to a listening agent.
        """
        return super().close(timeout)

    def __enter__(self) -> AgentConnection:
        return self
