"""A recorded session (header, one connection per command, footer) and one-shot runs."""

from __future__ import annotations

import contextlib
import getpass
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from agentproto import AgentConfig, ExecMsg, LogEntry, Recorder, SessionHeader
from agentproto.address import Address, parse_address
from agentproto.recording import RECORDING_VERSION

from .backend import agent_command, describe_address, describe_agent
from .command import SILENCE_TIMEOUT, RemoteCommand
from .connection import AGENT_OR_ADDRESS
from .errors import AgentLostError
from .recording import SessionRecorder
from .signals import forward_signals
from .stdio import Sink, Source

__all__ = ["RecordedSession", "run_command"]


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class RecordedSession:
    """A recorded runner session: header now, one agent connection per command, footer at close.

    ``output`` is a path (created or truncated) or a binary stream. The
    header names the backend: ``ssh`` with the host for an ``ssh ...`` agent
    command, else ``local``, with ``agent_path`` the agent command; or, with
    ``connect``, ``unix``/``tcp`` and the listening agent's address. Use
    :meth:`command` for full control, :meth:`run` and :meth:`run_all` for
    the usual cases. Thread-safe: commands may run concurrently. ``token``
    is presented to a listening agent. When the recording cannot be written
    (disk full), the commands go on unrecorded and ``on_recording_failed(exc)``
    is called once (see :class:`~reclab.live.recording.SessionRecorder`).
    """

    def __init__(
        self,
        output: str | os.PathLike[str] | IO[bytes],
        *,
        agent: str | Sequence[str] | None = None,
        connect: str | Address | None = None,
        token: bytes | None = None,
        agent_env: Mapping[str, str] | None = None,
        config: AgentConfig | None = None,
        on_log: Callable[[LogEntry], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_agent_stderr: Callable[[str], None] | None = None,
        on_recording_failed: Callable[[OSError], None] | None = None,
    ):
        if connect is not None:
            if agent is not None:
                raise ValueError(AGENT_OR_ADDRESS)
            self.address: Address | None = parse_address(connect)
            self.agent_argv: list[str] | None = None
            self.backend = describe_address(self.address)
        else:
            self.address = None
            self.agent_argv = agent_command(agent)
            self.backend = describe_agent(self.agent_argv)
        self.recorder: Recorder = SessionRecorder(output, on_recording_failed)
        self.header = SessionHeader(
            version=RECORDING_VERSION,
            start_time=time.time_ns(),
            local_user=_local_user(),
            local_pid=os.getpid(),
            backend_type=self.backend.type,
            backend_addr=self.backend.addr,
            agent_path=self.backend.agent_path,
        )
        self.recorder.write_session_header(self.header)
        self.agent_env = agent_env
        self.token = token
        self.config = config
        self.on_log = on_log
        self.on_error = on_error
        self.on_agent_stderr = on_agent_stderr
        self.commands: list[RemoteCommand] = []
        self.abandoned_by = 0

    def command(
        self,
        exec_msg: ExecMsg,
        *,
        stdin: Source = None,
        stdout: Sink = None,
        stderr: Sink = None,
        extra_fds: Mapping[int, Sink] | None = None,
        on_signal_delayed: Callable[[int], None] | None = None,
    ) -> RemoteCommand:
        """A recorded :class:`RemoteCommand` (not started) with the session's settings.

        Input and output as in :mod:`reclab.live.stdio`; ``on_signal_delayed``
        as in :class:`RemoteCommand`.
        """
        command = RemoteCommand(
            exec_msg,
            agent=self.agent_argv,
            connect=self.address,
            token=self.token,
            recorder=self.recorder,
            config=self.config,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            extra_fds=extra_fds,
            agent_env=self.agent_env,
            on_log=self.on_log,
            on_error=self.on_error,
            on_agent_stderr=self.on_agent_stderr,
            on_signal_delayed=on_signal_delayed,
        )
        self.commands.append(command)
        return command

    def run(
        self,
        exec_msg: ExecMsg,
        *,
        stdin: Source = None,
        stdout: Sink = None,
        stderr: Sink = None,
        extra_fds: Mapping[int, Sink] | None = None,
        on_signal_delayed: Callable[[int], None] | None = None,
        on_lost: Callable[[RemoteCommand, AgentLostError], None] | None = None,
        on_abandon: Callable[[int], None] | None = None,
    ) -> int:
        """Run one command to its end, forwarding SIGINT/SIGTERM; its exit code.

        The keywords are those of :meth:`run_all`.
        """
        return self.run_all(
            [exec_msg],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            extra_fds=extra_fds,
            on_signal_delayed=on_signal_delayed,
            on_lost=on_lost,
            on_abandon=on_abandon,
        )[0]

    def run_all(
        self,
        exec_msgs: Sequence[ExecMsg],
        *,
        parallel: bool = False,
        stdin: Source = None,
        stdout: Sink = None,
        stderr: Sink = None,
        extra_fds: Mapping[int, Sink] | None = None,
        on_signal_delayed: Callable[[int], None] | None = None,
        on_lost: Callable[[RemoteCommand, AgentLostError], None] | None = None,
        on_abandon: Callable[[int], None] | None = None,
        stop_on_signal: bool = False,
    ) -> list[int]:
        """Run commands one after another (or all at once) and return their exit codes.

        Each command gets the same input and output settings (see
        :meth:`command`). A command whose connection was lost counts as exit
        code 255 (as ssh reports it) and the :class:`AgentLostError` is passed
        to ``on_lost`` if given; otherwise it is raised after the remaining
        commands ran. ``on_abandon(signo)`` is called when repeated signals
        make the session give up (:func:`forward_signals`); :attr:`abandoned_by`
        then holds that signal and no further command starts. With
        ``stop_on_signal`` (a script), the first stop signal (SIGINT, SIGTERM,
        SIGHUP, SIGQUIT) also means no further command starts: it goes to the
        running command and ends the list, as Ctrl-C ends a shell script.
        """
        commands = [
            self.command(
                msg,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                extra_fds=extra_fds,
                on_signal_delayed=on_signal_delayed,
            )
            for msg in exec_msgs
        ]
        codes: list[int] = []
        lost: AgentLostError | None = None

        def finish(command: RemoteCommand) -> int:
            nonlocal lost
            try:
                return command.wait()
            except AgentLostError as exc:
                if on_lost is not None:
                    on_lost(command, exc)
                elif lost is None:
                    lost = exc
                return 255

        with forward_signals(commands, on_abandon=on_abandon) as signals:
            if parallel:
                started = []
                try:
                    for command in commands:
                        command.start()
                        started.append(command)
                finally:
                    codes = [finish(command) for command in started]
            else:
                for command in commands:
                    if signals.abandoned_by or (stop_on_signal and signals.received):
                        break  # given up or stopped: the remaining commands do not start
                    command.start()
                    codes.append(finish(command))
            self.abandoned_by = signals.abandoned_by
        if lost is not None:
            raise lost
        return codes

    def close(self) -> None:
        """Write the footer and close the recording (idempotent)."""
        self.recorder.close()

    def __enter__(self) -> RecordedSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_command(
    exec_msg: ExecMsg,
    *,
    agent: str | Sequence[str] | None = None,
    connect: str | Address | None = None,
    token: bytes | None = None,
    recorder: Recorder | None = None,
    config: AgentConfig | None = None,
    stdin: Source = None,
    stdout: Sink = None,
    stderr: Sink = None,
    extra_fds: Mapping[int, Sink] | None = None,
    agent_env: Mapping[str, str] | None = None,
    on_log: Callable[[LogEntry], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_agent_stderr: Callable[[str], None] | None = None,
    on_signal_delayed: Callable[[int], None] | None = None,
    silence_timeout: float | None = SILENCE_TIMEOUT,
    forward: bool = True,
    timeout: float | None = None,
) -> int:
    """Run one command through an agent and return its exit code.

    Input and output as in :mod:`reclab.live.stdio` (``None``: this process's
    own descriptors), the other keywords as for :class:`RemoteCommand`. With
    ``recorder`` the command and all its frames are recorded (the caller
    writes the session header and footer, or use :class:`RecordedSession`).
    ``forward`` relays SIGINT/SIGTERM to the command. Raises
    :class:`AgentStartError` when the agent cannot start,
    :class:`AgentLostError` when it ends without the command's exit code.
    """
    command = RemoteCommand(
        exec_msg,
        agent=agent,
        connect=connect,
        token=token,
        recorder=recorder,
        config=config,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        extra_fds=extra_fds,
        agent_env=agent_env,
        on_log=on_log,
        on_error=on_error,
        on_agent_stderr=on_agent_stderr,
        on_signal_delayed=on_signal_delayed,
        silence_timeout=silence_timeout,
    )
    with forward_signals([command]) if forward else contextlib.nullcontext():
        command.start()
        return command.wait(timeout)
