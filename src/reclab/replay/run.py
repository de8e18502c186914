"""Send a replay plan to a live agent, record the new session, compare it with the original.

Each recorded command gets its own agent connection, as ``reclab run``
gives it (``agent``: a command line, default this package's agent as a
local subprocess; or ``connect``: ``unix:PATH`` / ``tcp:HOST:PORT``). Its
recorded outbound frames go out in recorded order, at recorded times
(``timing="recorded"``, scaled by ``speed``) or as fast as possible
(``timing="fast"``). File-op requests carry the live handles that the
replay's own answers opened in place of the recorded ones; RPCs wait for
their answer before the next frame goes out, so a handle is known before a
request uses it.

Commands start in recorded order. A command waits for every command that
had ended before it started in the recording (so sequential commands stay
sequential and overlapping ones overlap), and with recorded timing also for
its recorded start time. The replay is recorded through the mux like any
session (:class:`reclab.runner.RecordedSession`), then compared command by
command with :func:`reclab.replay.compare.compare_commands`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentproto import AgentProtoError
from agentproto.address import Address, parse_address

from ..model import Recording, open_recording
from ..runner import AgentConnection, AgentStartError, RecordedSession, agent_command
from .compare import CommandComparison, CompareOptions, Comparison, Difference, compare_commands
from .plan import CommandPlan, Plan, build_plan

__all__ = [
    "DEFAULT_TIMEOUT",
    "CommandRun",
    "ReplayRun",
    "default_output",
    "describe_target",
    "replay",
    "run_plan",
]

DEFAULT_TIMEOUT = 300.0  # seconds a replayed command may run after its last frame went out
RPC_TIMEOUT = 30.0  # seconds a replayed file op or PATH query waits for its answer
TIMINGS = ("recorded", "fast")


class _Discard:
    """Output of the replayed command: the recorder keeps it, nothing else needs it."""

    def write(self, data: bytes) -> None:
        """Drop the chunk (it is already recorded)."""

    def eof(self) -> None:
        """Nothing to close."""


@dataclass(slots=True)
class CommandRun:
    """How the replay of one command went: its seq in the new recording, or why it failed.

    ``error`` is set when the command could not be replayed (the agent would
    not start, the connection was lost); ``notes`` are divergences seen while
    running (it did not exit in time, a request could not be sent).
    """

    seq: int
    replay_seq: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ReplayRun:
    """The result of :func:`run_plan`: the new recording and each command's :class:`CommandRun`."""

    output: Path
    target: str
    commands: dict[int, CommandRun] = field(default_factory=dict)


def describe_target(
    agent: str | Sequence[str] | None = None, connect: str | Address | None = None
) -> str:
    """The agent a replay talks to, for people: ``agent CMD`` or the listening agent's address."""
    if connect is not None:
        return f"the agent listening at {parse_address(connect)}"
    return f"agent {shlex.join(agent_command(agent))}"


def default_output() -> Path:
    """A fresh named temporary file for the replay's recording (kept: the report names it)."""
    fd, name = tempfile.mkstemp(prefix="reclab-replay-", suffix=".cbor")
    os.close(fd)
    return Path(name)


class _Replayer:
    """Runs one plan: a thread per command, started when its turn comes."""

    def __init__(
        self,
        plan: Plan,
        session: RecordedSession,
        *,
        agent: str | Sequence[str] | None,
        connect: str | Address | None,
        timing: str,
        speed: float,
        timeout: float,
        on_command: Callable[[CommandRun], None] | None,
    ):
        self.plan = plan
        self.session = session
        self.agent = agent
        self.connect = connect
        self.timing = timing
        self.speed = speed
        self.timeout = timeout
        self.on_command = on_command
        self.results: dict[int, CommandRun] = {}
        self.done: dict[int, threading.Event] = {}
        self.live: set[AgentConnection] = set()
        self.lock = threading.Lock()
        self.cannot_start: str | None = None
        self.stopping = False

    def _scaled(self, seconds: float) -> float:
        return 0.0 if self.timing == "fast" else seconds / self.speed

    def run(self) -> dict[int, CommandRun]:
        commands = sorted(self.plan.replayable, key=lambda c: (c.start, c.seq))
        for cmd in commands:
            self.done[cmd.seq] = threading.Event()
        threads = []
        began = time.monotonic()
        try:
            for cmd in commands:
                for seq in cmd.after:
                    if seq in self.done:
                        self.done[seq].wait()
                delay = began + self._scaled(cmd.start) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if self.cannot_start is not None:
                    self._finish(CommandRun(cmd.seq, error=self.cannot_start))
                    continue
                thread = threading.Thread(
                    target=self._command, args=(cmd,), name=f"reclab-replay-{cmd.seq}", daemon=True
                )
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
        except BaseException:
            # interrupted: give up on every live connection (each agent ends its command)
            with self.lock:
                self.stopping = True
                live = list(self.live)
            for conn in live:
                conn.abandon()
            for thread in threads:
                thread.join(10)
            raise
        return self.results

    def _finish(self, result: CommandRun) -> None:
        with self.lock:
            self.results[result.seq] = result
        self.done[result.seq].set()
        if self.on_command is not None:
            self.on_command(result)

    def _command(self, cmd: CommandPlan) -> None:
        result = CommandRun(cmd.seq)
        try:
            self._replay(cmd, result)
        except Exception as exc:  # reported as this command's error, never lost
            result.error = result.error or f"replay failed: {exc}"
        finally:
            self._finish(result)

    def _replay(self, cmd: CommandPlan, result: CommandRun) -> None:
        try:
            conn = AgentConnection(
                self.agent, connect=self.connect, on_log=lambda entry: None, on_error=lambda t: None
            )
        except AgentStartError as exc:
            self.cannot_start = f"not replayed: {exc}"
            result.error = str(exc)
            return
        with self.lock:
            self.live.add(conn)
            stopping = self.stopping
        if stopping:  # interrupted while this connection was being made
            conn.abandon()
        recorder = self.session.recorder
        seq = recorder.write_command_start(cmd.exec)
        result.replay_seq = seq
        conn.mux.set_recorder(recorder, seq)
        for stream in (1, 2, *cmd.exec.extra_fds):
            conn.mux.register_stream(stream, _Discard())
        code = -1
        expected_end = False  # the replay itself ended the connection (as recorded, or timed out)
        try:
            conn.start()
            self._send_steps(cmd, conn, result)
            code, expected_end = self._wait_exit(cmd, conn, result)
        finally:
            status = conn.close()
            with self.lock:
                self.live.discard(conn)
            with contextlib.suppress(OSError, ValueError):
                recorder.write_command_end(seq, code)
        if code < 0 and not expected_end and not self.stopping:
            why = conn.mux.error
            reason = f"the connection failed ({why})" if why else "the agent closed the connection"
            reason += " before the command's exit code"
            if status:
                reason += f"; agent exit status {status}"
            tail = conn.agent_stderr.strip().splitlines()
            if tail:
                reason += f"; its stderr ended with: {tail[-1]}"
            result.error = reason

    def _send_steps(self, cmd: CommandPlan, conn: AgentConnection, result: CommandRun) -> None:
        """Send the recorded frames; stop when the connection ends (the caller says why)."""
        mux = conn.mux
        handles: dict[int, int] = {}  # recorded handle -> the live one opened for it
        began = time.monotonic()
        for k, step in enumerate(cmd.steps):
            delay = began + self._scaled(step.time) - time.monotonic()
            if delay > 0:
                mux.wait(delay)  # returns early when the connection ends
            if mux.exit_code is not None or self.stopping:
                self._unsent(cmd, k, result, "the command had ended")
                return
            frame = step.frame
            try:
                if step.kind == "stdin":
                    mux.send_data(0, frame.data)
                elif step.kind == "eof":
                    mux.send_eof(0)
                elif step.kind == "path_query":
                    paths = list(frame.query.paths) if frame.query is not None else []
                    mux.path_query(paths, timeout=RPC_TIMEOUT)
                elif step.kind == "file_op" and frame.file_op is not None:
                    request = frame.file_op
                    if request.handle:
                        live = handles.get(request.handle, request.handle)
                        request = dataclasses.replace(request, handle=live)
                    answer = mux.file_op(request, timeout=RPC_TIMEOUT)
                    if step.answer_handle and answer.handle:
                        handles[step.answer_handle] = answer.handle
                else:
                    mux.send(frame)
            except AgentProtoError as exc:
                mux.wait(1.0)  # a lost connection or an exit: let the read loop see which
                self._unsent(cmd, k, result, f"{step.kind}: {exc}")
                return

    @staticmethod
    def _unsent(cmd: CommandPlan, k: int, result: CommandRun, why: str) -> None:
        """Note the recorded frames that could not go out (not those recorded after the exit)."""
        left = [step for step in cmd.steps[k:] if not step.after_exit]
        if left:
            result.notes.append(f"{len(left)} recorded frames not sent ({why})")

    def _wait_exit(
        self, cmd: CommandPlan, conn: AgentConnection, result: CommandRun
    ) -> tuple[int, bool]:
        """Wait for the exit code: ``(code, whether the replay ended the connection itself)``."""
        mux = conn.mux
        if not cmd.exited:
            # the recorded runner hung up without an exit code: hang up as it did
            last = cmd.steps[-1].time if cmd.steps else 0.0
            ended = (cmd.end - cmd.start) if cmd.end is not None else last
            mux.wait(max(0.0, min(self.timeout, self._scaled(ended - last))))
            if mux.exit_code is not None:
                return mux.exit_code, True
            conn.abandon()
            mux.wait(5.0)
            return -1, True
        code = mux.wait(self.timeout)
        if code is None:
            result.notes.append(f"no exit code within {self.timeout:g}s: abandoned")
            conn.abandon()
            mux.wait(5.0)
            return -1, True
        return code, False


def run_plan(
    plan: Plan,
    output: str | os.PathLike[str],
    *,
    agent: str | Sequence[str] | None = None,
    connect: str | Address | None = None,
    timing: str = "recorded",
    speed: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT,
    on_command: Callable[[CommandRun], None] | None = None,
) -> ReplayRun:
    """Replay every replayable command of ``plan`` against a live agent, recording to ``output``.

    ``agent`` (a command line) and ``connect`` (an address) are exclusive;
    neither means this package's agent as a local subprocess. ``timing`` is
    ``recorded`` (times scaled by ``speed``) or ``fast``; ``timeout`` bounds
    how long a command may run after its last frame. ``on_command`` is called
    as each command finishes. Raises ValueError for bad options and OSError
    when ``output`` cannot be written; agent failures are per command.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing {timing!r}: expected recorded or fast")
    if not speed > 0:
        raise ValueError(f"speed {speed}: must be more than 0")
    if agent is not None and connect is not None:
        raise ValueError("an agent command and an address to connect to are exclusive")
    target = describe_target(agent, connect)
    session = RecordedSession(output, agent=agent if connect is None else None, connect=connect)
    runner = _Replayer(
        plan,
        session,
        agent=None if connect is not None else agent,
        connect=connect,
        timing=timing,
        speed=speed,
        timeout=timeout,
        on_command=on_command,
    )
    try:
        results = runner.run()
    finally:
        session.close()
    return ReplayRun(Path(output), target, results)


def compare_replay(
    rec: Recording, plan: Plan, run: ReplayRun, options: CompareOptions | None = None
) -> Comparison:
    """The report of a replay: each planned command compared with its replay, or why not."""
    report = Comparison("replay", str(rec.path), str(run.output))
    with open_recording(run.output) as replayed:
        for cmd in plan.commands:
            if cmd.problem is not None:
                report.commands.append(
                    CommandComparison(
                        cmd.seq, None, cmd.argv, cmd.exec.cwd, error=f"not replayed: {cmd.problem}"
                    )
                )
                continue
            done = run.commands.get(cmd.seq)
            if done is None or done.error is not None or done.replay_seq is None:
                why = done.error if done is not None and done.error else "not replayed"
                report.commands.append(
                    CommandComparison(
                        cmd.seq,
                        done.replay_seq if done else None,
                        cmd.argv,
                        cmd.exec.cwd,
                        error=why,
                    )
                )
                continue
            result = compare_commands(rec, cmd.seq, replayed, done.replay_seq, options)
            result.differences[:0] = [Difference("run", note) for note in done.notes]
            report.commands.append(result)
    return report


def replay(
    recording: str | os.PathLike[str] | Recording,
    *,
    seqs: Sequence[int] | None = None,
    output: str | os.PathLike[str] | None = None,
    agent: str | Sequence[str] | None = None,
    connect: str | Address | None = None,
    timing: str = "recorded",
    speed: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT,
    options: CompareOptions | None = None,
) -> Comparison:
    """Plan, run and compare in one call (``reclab replay REC --run``); the report.

    ``recording`` is a path or an open :class:`Recording`; ``output`` the new
    recording (default: a named temporary file, named in the report's
    ``other``). See :func:`run_plan` for the other arguments. Raises
    RecordingError for an unreadable recording and UnknownCommandError for a
    bad seq.
    """
    rec = recording if isinstance(recording, Recording) else open_recording(recording)
    try:
        plan = build_plan(rec, seqs)
        out = Path(output) if output is not None else default_output()
        run = run_plan(
            plan, out, agent=agent, connect=connect, timing=timing, speed=speed, timeout=timeout
        )
        return compare_replay(rec, plan, run, options)
    finally:
        if rec is not recording:
            rec.close()
