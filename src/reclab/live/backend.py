"""Where commands run: the agent command line, and how the session header describes it."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence

from agentproto.address import Address

__all__ = ["DEFAULT_AGENT", "Backend", "agent_command", "describe_address", "describe_agent"]

DEFAULT_AGENT: tuple[str, ...] = (sys.executable, "-m", "agentproto.agent")
# ssh options that take an argument (the host is the first word that is not one of these)
_SSH_OPTIONS_WITH_ARG = set("BbcDEeFIiJLlmOoPpQRSWw")


def agent_command(
    agent: str | Sequence[str] | None = None, *, log_level: str | None = None
) -> list[str]:
    """The agent's argv: ``agent`` split like a shell would (a string), or as given.

    None is this package's own agent as a local subprocess
    (:data:`DEFAULT_AGENT`); ``log_level`` is then passed as ``--log-level``.
    Raises ValueError for an empty command or unbalanced quotes.
    """
    if agent is None:
        argv = list(DEFAULT_AGENT)
        if log_level:
            argv += ["--log-level", log_level]
        return argv
    argv = shlex.split(agent) if isinstance(agent, str) else list(agent)
    if not argv:
        raise ValueError("the agent command is empty")
    return argv


@dataclasses.dataclass(frozen=True, slots=True)
class Backend:
    """How the session header describes where commands run."""

    type: str  # "local", "ssh", or "unix"/"tcp" for a listening agent
    addr: str  # the ssh destination, socket path or host:port; "" for local
    agent_path: str  # the agent program (and its arguments) on that machine


def describe_agent(argv: Sequence[str]) -> Backend:
    """Describe an agent command for the session header: ``ssh`` or ``local``.

    For ``ssh [options] host agent...`` the backend address is ``host`` and the
    agent path the remote command; anything else is a local agent whose path
    is the whole command line.
    """
    if argv and os.path.basename(argv[0]) == "ssh":
        i = 1
        while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
            option = argv[i]
            i += 1
            if len(option) == 2 and option[1] in _SSH_OPTIONS_WITH_ARG:
                i += 1  # "-p 22": the value is the next word
        if i < len(argv) and argv[i] == "--":
            i += 1
        if i < len(argv):
            return Backend("ssh", argv[i], shlex.join(argv[i + 1 :]))
    return Backend("local", "", shlex.join(argv))


def describe_address(address: Address) -> Backend:
    """Describe a listening agent for the session header: ``unix`` or ``tcp`` and its address.

    The agent's program is not known from a socket, so ``agent_path`` is empty.
    """
    if address.kind == "unix":
        return Backend("unix", address.path, "")
    return Backend("tcp", str(address).removeprefix("tcp:"), "")
