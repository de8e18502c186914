"""Run commands through an agent and record the session (kept name: see :mod:`reclab.live`).

The runner moved to the :mod:`reclab.live` package (connection, command,
local stdio, signals, backend, session); this module re-exports its public
names so ``from reclab.runner import RecordedSession`` keeps working.
"""

from __future__ import annotations

from agentproto.client import CLOSE_TIMEOUT

from .live import (
    ABANDON_AFTER,
    ABANDON_SIGNALS,
    DEFAULT_AGENT,
    FORWARDED_SIGNALS,
    READ_SIZE,
    SIGNAL_DELAY_NOTICE,
    AgentConnection,
    AgentLostError,
    AgentRefusedError,
    AgentStartError,
    Backend,
    RecordedSession,
    RemoteCommand,
    RunnerError,
    SignalState,
    Sink,
    Source,
    agent_command,
    describe_address,
    describe_agent,
    forward_signals,
    run_command,
)

__all__ = [
    "ABANDON_AFTER",
    "ABANDON_SIGNALS",
    "CLOSE_TIMEOUT",
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
