"""What ``reclab run`` does, as an API: a planned run, recorded, with its outcome.

The CLI parses options into a :class:`RunPlan`, calls :func:`record_run`
with a :class:`RunReporter` (how to show logs and notices) and prints the
:class:`RunOutcome`. Everything here is independent of the terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agentproto import AgentConfig, ExecMsg, LogEntry
from agentproto.address import Address

from .command import RemoteCommand
from .errors import AgentLostError, AgentRefusedError, AgentStartError
from .session import RecordedSession
from .signals import ABANDON_AFTER

__all__ = [
    "EXIT_AGENT_FAILED",
    "RunOutcome",
    "RunPlan",
    "RunReporter",
    "exec_messages",
    "record_run",
]

EXIT_AGENT_FAILED = 255  # what ssh exits with when the connection fails
# the default agent's own stderr lines for records it also sends as FrameLog
_AGENT_LOG_LINE = re.compile(r"agentproto-agent\[\d+\]: (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@dataclasses.dataclass(frozen=True, slots=True)
class RunPlan:
    """A run decided from the options: what to run, where, and how."""

    execs: Sequence[ExecMsg]
    agent_argv: list[str] | None = None  # None with ``address``
    address: Address | None = None
    token: bytes | None = None
    config: AgentConfig | None = None
    extra_fds: Mapping[int, int | None] = dataclasses.field(default_factory=dict)
    script: bool = False  # script commands get no stdin, and a stop signal ends the script
    parallel: bool = False
    default_agent: bool = False  # the agent is this package's (its stderr repeats its logs)


@dataclasses.dataclass(slots=True)
class RunReporter:
    """How a run shows what happens; each callback gets one line's text (or a log entry)."""

    agent_log: Callable[[LogEntry], None] | None = None  # None: agent logs are not shown
    agent_error: Callable[[str], None] = lambda text: None
    agent_stderr: Callable[[str], None] | None = None  # None: agent stderr is not shown
    notice: Callable[[str], None] = lambda text: None
    recording_failed: Callable[[OSError], None] = lambda exc: None


@dataclasses.dataclass(slots=True)
class RunOutcome:
    """How a run ended: exit codes so far, lost connections, a signal that gave up."""

    codes: list[int]
    lost: list[str]  # one line per command whose connection was lost
    abandoned_by: int = 0
    removed_recording: bool = False  # nothing ran: the recording was not kept

    @property
    def exit_status(self) -> int:
        """reclab's exit status: 128 + the abandoning signal, else the first failure's code."""
        if self.abandoned_by:
            return 128 + self.abandoned_by
        failed = [code for code in self.codes if code != 0]
        if not failed:
            return 0
        return failed[0] if 0 <= failed[0] <= 255 else EXIT_AGENT_FAILED


def exec_messages(
    argvs: Sequence[Sequence[str]], *, env: Sequence[str] | None, cwd: str | None
) -> list[ExecMsg]:
    """One ``ExecMsg`` per command line; ``env`` None inherits the agent's environment."""
    return [
        ExecMsg(
            path=argv[0],
            argv=list(argv),
            env=list(env) if env is not None else None,
            cwd=cwd or "",
        )
        for argv in argvs
    ]


def record_run(plan: RunPlan, output: Path, reporter: RunReporter) -> RunOutcome:
    """Run the plan's commands in one recorded session written to ``output``.

    A command whose connection is lost counts as 255 and is described in
    :attr:`RunOutcome.lost`. When no command could even reach an agent (it
    cannot start, cannot be reached, or refuses), the recording holds nothing
    of value and is removed, and :class:`AgentStartError` (or
    :class:`AgentRefusedError`) is raised. Raises OSError when the recording
    cannot be created.
    """
    stderr_shown = reporter.agent_stderr
    if stderr_shown is not None and plan.default_agent and reporter.agent_log is not None:
        stderr_shown = _without_log_lines(stderr_shown)
    session = RecordedSession(
        output,
        agent=plan.agent_argv,
        connect=plan.address,
        token=plan.token,
        config=plan.config,
        on_log=reporter.agent_log,
        on_error=reporter.agent_error,
        on_agent_stderr=stderr_shown,
        on_recording_failed=reporter.recording_failed,
    )
    lost: list[str] = []
    failures: list[AgentLostError] = []

    def on_abandon(signo: int) -> None:
        reporter.notice(f"signal {signo} received {ABANDON_AFTER} times: abandoning the command")

    def on_signal_delayed(signo: int) -> None:
        reporter.notice(
            f"signal {signo} not delivered yet: the agent is not reading (does the command "
            f"read its stdin?); send it {ABANDON_AFTER} times to give up"
        )

    def on_lost(_command: RemoteCommand, exc: AgentLostError) -> None:
        failures.append(exc)
        detail = exc.agent_stderr.strip().splitlines()
        lost.append(f"{exc}" + (f": {detail[-1]}" if detail else ""))

    try:
        with session:
            codes = session.run_all(
                plan.execs,
                parallel=plan.parallel,
                stdin=subprocess.DEVNULL if plan.script else None,
                extra_fds=plan.extra_fds,
                on_lost=on_lost,
                on_abandon=on_abandon,
                on_signal_delayed=on_signal_delayed,
                stop_on_signal=plan.script,
            )
    except AgentStartError:
        _remove(output)
        raise
    outcome = RunOutcome(codes=codes, lost=lost, abandoned_by=session.abandoned_by)
    refused = [exc for exc in failures if isinstance(exc, AgentRefusedError)]
    if refused and len(refused) == len(codes):
        _remove(output)
        raise refused[0]
    return outcome


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _without_log_lines(show: Callable[[str], None]) -> Callable[[str], None]:
    """``show`` for the agent's stderr lines, minus the log records it also sent as FrameLog."""

    def filtered(line: str) -> None:
        if not _AGENT_LOG_LINE.match(line):
            show(line)

    return filtered
