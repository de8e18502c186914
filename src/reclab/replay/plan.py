"""What a replay would send: the recorded outbound frames of each command, in order.

A replay plan is read from a recording without starting anything: for every
recorded command, the frames the runner sent (config, exec, stdin data and
EOF, signals, PATH queries, file-op requests) with their time since the
command started, and whether the command can be replayed at all (a
recording cut before a command's end cannot say what that command should
have produced, so it is not replayed). :func:`plan_command` builds the plan
of one command (what a viewer shows before it replays it).
"""

from __future__ import annotations

import dataclasses
import heapq
import shlex
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentproto import AgentConfig, Direction, ExecMsg, FileOpReq, Frame, FrameType

from .. import redact
from ..model import Recording
from ..redact import MASKED_VALUE
from ..timeline import safe_preview, safe_text

__all__ = [
    "CommandPlan",
    "Plan",
    "PlanStep",
    "build_plan",
    "mask_env",
    "plan_command",
]

MASK = MASKED_VALUE
PREVIEW_CHARS = 40

# The frame types a runner sends, as the step kinds of a plan.
_STEP_KINDS = {
    FrameType.CONFIG: "config",
    FrameType.EXEC: "exec",
    FrameType.DATA: "stdin",
    FrameType.EOF: "eof",
    FrameType.SIGNAL: "signal",
    FrameType.PATH_QUERY: "path_query",
    FrameType.FILE_OP: "file_op",
}


def mask_env(env: Iterable[str] | None) -> list[str] | None:
    """:func:`reclab.redact.mask_env`, keeping None (inherit the agent's environment) as None."""
    return None if env is None else redact.mask_env(env)


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One recorded outbound frame: ``time`` seconds after the command started."""

    time: float
    kind: str  # config, exec, stdin, eof, signal, path_query, file_op
    frame: Frame
    answer_handle: int = 0  # a file op's recorded answer opened this handle (0: none)
    after_exit: bool = False  # recorded after the agent's FrameExit (a race the replay may lose)

    def to_json(self) -> dict[str, Any]:
        """``{"time", "kind", "what"}``: the step for ``reclab replay --json`` without ``--run``."""
        return {"time": self.time, "kind": self.kind, "what": self.describe()}

    def describe(self) -> str:
        """One escaped line for people; env values with secret-looking names masked."""
        frame = self.frame
        if self.kind == "stdin":
            return f"stdin {len(frame.data)} bytes {safe_preview(frame.data, PREVIEW_CHARS)}"
        if self.kind == "exec" and frame.exec is not None:
            text = describe_exec(frame.exec)
        elif self.kind == "config" and frame.config is not None:
            text = _describe_config(frame.config)
        elif self.kind == "eof":
            text = "stdin EOF" if frame.stream == 0 else f"EOF on stream {frame.stream}"
        elif self.kind == "signal":
            text = f"signal {_signal_name(frame.signal)}"
        elif self.kind == "path_query":
            paths = frame.query.paths if frame.query is not None else []
            text = f"PATH query {paths or '(the agent $PATH)'}"
        elif self.kind == "file_op" and frame.file_op is not None:
            text = describe_file_op(frame.file_op)
        else:
            text = self.kind
        return safe_text(text, 200)


def describe_exec(msg: ExecMsg) -> str:
    """``exec PATH argv... in CWD env [...]`` with secret-looking env values masked."""
    text = f"exec {msg.path} {shlex.join(msg.argv or [])}"
    if msg.cwd:
        text += f" in {msg.cwd}"
    env = mask_env(msg.env)
    text += " env inherited" if env is None else f" env {env}"
    if msg.extra_fds:
        text += f" fds {msg.extra_fds}"
    return text


def _describe_config(config: AgentConfig) -> str:
    return f"config env_keep={config.env_keep} env_remove={config.env_remove}"


def describe_file_op(req: FileOpReq) -> str:
    """A file-op request in one line: op name and the inputs it sets."""
    op = getattr(req.op, "name", str(req.op))
    parts = [f"file op {op}"]
    for name in ("path", "new_path", "handle", "offset", "size", "flags", "mode"):
        value = getattr(req, name)
        if value:
            parts.append(f"{name}={value!r}")
    if req.data:
        parts.append(f"data={len(req.data)} bytes")
    return " ".join(parts)


def _signal_name(signo: int) -> str:
    try:
        return f"{signal.Signals(signo).name} ({signo})"
    except ValueError:
        return str(signo)


@dataclass(slots=True)
class CommandPlan:
    """What replaying one recorded command sends, and when.

    ``start`` is seconds since the first planned command started (for
    running recorded-concurrent commands concurrently); ``end`` the same for
    the recorded command end (None when the recording has no end).
    ``after`` lists the planned commands that had ended before this one
    started (only the last ones: the others are waited for through them): a
    replay starts it only once they have ended too, so commands that ran one
    after another stay that way and those that overlapped overlap.
    ``problem`` says why the command cannot be replayed (None: it can).
    """

    seq: int
    exec: ExecMsg
    start: float
    end: float | None
    steps: list[PlanStep] = field(default_factory=list)
    after: list[int] = field(default_factory=list)
    problem: str | None = None
    exited: bool = True  # the recording has the agent's FrameExit

    @property
    def replayable(self) -> bool:
        """True when the command can be replayed."""
        return self.problem is None

    @property
    def argv(self) -> list[str]:
        """The recorded argv."""
        return list(self.exec.argv or [])

    def to_json(self) -> dict[str, Any]:
        """The command's plan as JSON (env values with secret-looking names masked)."""
        return {
            "seq": self.seq,
            "path": self.exec.path,
            "argv": self.exec.argv,
            "cwd": self.exec.cwd,
            "env": mask_env(self.exec.env),
            "start": self.start,
            "after": self.after,
            "replayable": self.replayable,
            "problem": self.problem,
            "stdin_bytes": self.stdin_bytes(),
            "steps": [step.to_json() for step in self.steps],
        }

    def stdin_bytes(self) -> int:
        """How many stdin bytes the replay sends."""
        return sum(len(s.frame.data) for s in self.steps if s.kind == "stdin")


@dataclass(slots=True)
class Plan:
    """The replay plan of a recording: one :class:`CommandPlan` per selected command."""

    path: str
    commands: list[CommandPlan]
    truncation: str | None = None  # why the recording stops early, if it does

    @property
    def replayable(self) -> list[CommandPlan]:
        """The commands that can be replayed."""
        return [c for c in self.commands if c.replayable]

    def to_json(self, target: str) -> dict[str, Any]:
        """The plan as the JSON document of ``reclab replay --json`` (without ``--run``)."""
        return {
            "format": 1,
            "kind": "plan",
            "recording": self.path,
            "target": target,
            "truncation": self.truncation,
            "commands": [cmd.to_json() for cmd in self.commands],
        }

    @property
    def problems(self) -> dict[int, str]:
        """seq -> why it cannot be replayed, for the commands that cannot."""
        return {c.seq: c.problem for c in self.commands if c.problem is not None}


def plan_command(rec: Recording, seq: int, *, origin: int | None = None) -> CommandPlan:
    """The plan of recorded command ``seq`` (raises UnknownCommandError for a bad seq).

    ``origin`` is the Unix-nanosecond time plan times count from (default:
    the command's own start). Steps are the frames the runner sent, in
    recorded order; a recording whose frames lack the exec (written by hand,
    or by a runner that records only answers) gets one at time 0 from the
    command-start record.
    """
    cmd = rec.command(seq)
    begin = cmd.start_time if cmd.start_time is not None else (cmd.first_frame_time or 0)
    base = begin if origin is None else origin
    end = None if cmd.end_time is None else (cmd.end_time - base) / 1e9
    plan = CommandPlan(seq=seq, exec=cmd.exec, start=(begin - base) / 1e9, end=end)
    exited = False
    asked: dict[int, int] = {}  # file-op request id -> its step, to note opened handles
    for ref in rec.frames(seq):
        ftype = ref.frame.type
        if ref.direction == Direction.RECV:
            exited = exited or ftype == FrameType.EXIT
            answer = ref.frame.file_resp
            if ftype == FrameType.FILE_RESP and answer is not None and answer.handle:
                k = asked.pop(answer.req_id, None)
                if k is not None:
                    plan.steps[k] = dataclasses.replace(plan.steps[k], answer_handle=answer.handle)
            continue
        kind = _STEP_KINDS.get(ftype) if isinstance(ftype, FrameType) else None
        if kind is None or (kind in ("stdin", "eof") and ref.frame.stream != 0):
            continue  # nothing a runner sends (a hand-written file may hold anything)
        if kind == "stdin" and not ref.frame.data:
            continue
        if kind == "file_op" and ref.frame.file_op is not None:
            asked[ref.frame.file_op.req_id] = len(plan.steps)
        at = max(0.0, (ref.timestamp - begin) / 1e9)
        plan.steps.append(PlanStep(at, kind, ref.frame, after_exit=exited))
    if not any(s.kind == "exec" for s in plan.steps):
        plan.steps.insert(0, PlanStep(0.0, "exec", Frame(type=FrameType.EXEC, exec=cmd.exec)))
    plan.exited = exited
    if not cmd.complete:
        plan.problem = "the recording is cut before the command's end"
    elif not (cmd.exec.path or cmd.exec.argv):
        plan.problem = "the recorded exec has neither a path nor an argv"
    return plan


def _last_before(p: CommandPlan, latest: list[CommandPlan]) -> bool:
    """True unless another command in ``latest`` (the two latest-started) started after p ended."""
    later = next((q for q in latest if q is not p), None)
    return later is None or p.end is None or later.start < p.end


def build_plan(rec: Recording, seqs: Sequence[int] | None = None) -> Plan:
    """The replay plan of ``rec``: every command, or those in ``seqs`` (in seq order).

    Raises UnknownCommandError for a seq the recording does not have.
    """
    wanted = sorted(set(seqs)) if seqs else sorted(rec.commands)
    for seq in wanted:
        rec.command(seq)  # fails early, naming the valid seqs
    starts = [
        c.start_time if c.start_time is not None else (c.first_frame_time or 0)
        for c in (rec.commands[s] for s in wanted)
    ]
    origin = min(starts) if starts else 0
    commands = [plan_command(rec, seq, origin=origin) for seq in wanted]
    for cmd in commands:
        # ended before this one started in the recording: the replay keeps that order
        before = [
            other
            for other in commands
            if other is not cmd and other.end is not None and other.end <= cmd.start
        ]
        # only the last of them to matter: P need not be waited for when another one (Q)
        # started after P ended, since Q itself waited for P
        latest = heapq.nlargest(2, before, key=lambda c: c.start)
        cmd.after = [p.seq for p in before if _last_before(p, latest)]
    trunc = rec.truncation
    why = None if trunc is None or trunc.kind == "no-footer" else trunc.message
    return Plan(path=str(rec.path), commands=commands, truncation=why)
