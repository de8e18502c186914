"""The errors of the live side: running commands through an agent."""

from __future__ import annotations

from agentproto import AgentProtoError

from ..errors import ReclabError

__all__ = ["AgentLostError", "AgentRefusedError", "AgentStartError", "RunnerError"]


class RunnerError(ReclabError, AgentProtoError):
    """A command could not be run through the agent.

    A :class:`~reclab.errors.ReclabError`; also an
    :class:`~agentproto.errors.AgentProtoError`, as it was before reclab had
    its own base, so existing ``except`` clauses keep working.
    """


class AgentStartError(RunnerError, OSError):
    """The agent command could not be started (not found, not executable...)."""


class AgentLostError(RunnerError, ConnectionError):
    """The agent connection ended before the command's ``FrameExit``.

    ``agent_stderr`` holds the last lines the agent process wrote on its
    stderr (an ``ssh`` error, a traceback), ``agent_status`` its exit status.
    """

    def __init__(self, message: str, *, agent_stderr: str = "", agent_status: int | None = None):
        super().__init__(message)
        self.agent_stderr = agent_stderr
        self.agent_status = agent_status


class AgentRefusedError(AgentLostError):
    """A listening agent refused the connection (uid not allowed, no or wrong token)."""
