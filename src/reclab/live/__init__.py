"""The live side of reclab: run commands through an agent and record the session.

A *session* is what ``reclab run`` records: a session header, then for every
command its own agent connection (like one SSH session per remote command),
and a footer. One command on one connection is a :class:`RemoteCommand`:

1. the agent is started as a subprocess (``python -m agentproto.agent`` by
   default, or any command line such as ``ssh host mproxy-agent``), or reached
   where it listens (``connect``), and a runner-side
   :class:`~agentproto.mux.Mux` is put on the connection
   (:class:`AgentConnection`, built on :mod:`agentproto.client`);
2. the command gets its sequence number from the recorder (``CommandStart``)
   and the mux records every frame both ways under that number;
3. ``FrameConfig`` (if any) and ``FrameExec`` go out, stdin is streamed as
   stream 0, stdout/stderr/extra fds come back and are written out as they
   arrive; file-op and PATH RPCs may be made meanwhile;
4. ``FrameExit`` gives the exit code, ``CommandEnd`` is recorded.

Modules: :mod:`.backend` (the agent command, the header's backend),
:mod:`.connection`, :mod:`.command`, :mod:`.stdio` (this process's input and
output), :mod:`.signals` (SIGINT and friends relayed as ``FrameSignal``; the
third stop signal abandons the commands), :mod:`.session`
(:class:`RecordedSession`, :func:`run_command`), :mod:`.errors`.
"""

from __future__ import annotations

from .backend import DEFAULT_AGENT, Backend, agent_command, describe_address, describe_agent
from .command import SIGNAL_DELAY_NOTICE, RemoteCommand
from .connection import AgentConnection
from .errors import AgentLostError, AgentRefusedError, AgentStartError, RunnerError
from .session import RecordedSession, run_command
from .signals import (
    ABANDON_AFTER,
    ABANDON_SIGNALS,
    FORWARDED_SIGNALS,
    SignalState,
    forward_signals,
)
from .stdio import READ_SIZE, Sink, Source

__all__ = [
    "ABANDON_AFTER",
    "ABANDON_SIGNALS",
    "DEFAULT_AGENT",
    "FORWARDED_SIGNALS",
    "READ_SIZE",
    "SIGNAL_DELAY_NOTICE",
    "AgentConnection",
    "AgentLostError",
    "AgentRefusedError",
    "AgentStartError",
    "Backend",
    "RecordedSession",
    "RemoteCommand",
    "RunnerError",
    "SignalState",
    "Sink",
    "Source",
    "agent_command",
    "describe_address",
    "describe_agent",
    "forward_signals",
    "run_command",
]
