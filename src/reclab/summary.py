"""What ``reclab info`` and ``reclab commands`` show, computed from an indexed recording.

:func:`summarize` reads only the model's index and per-command aggregates
(no record is decoded again), so it costs little even on a multi-GB file.
:meth:`SessionSummary.to_json` is the stable, documented shape of
``reclab info --json``; :func:`select_commands` and :func:`command_json`
are ``reclab commands --where/--sort/--json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentproto import FrameType, SessionFooter, SessionHeader

from .redact import mask_argv
from .text import format_time

if TYPE_CHECKING:
    from .model import Command, Damage, Recording, Truncation

__all__ = [
    "MAX_LISTED",
    "SessionSummary",
    "command_json",
    "format_time",
    "select_commands",
    "summarize",
]

MAX_LISTED = 100  # errors and signals listed one by one in the summary (all are counted)


@dataclass(slots=True)
class SessionSummary:
    """Session-level facts of a recording: header, times, commands, bytes, frames, problems.

    Times are Unix nanoseconds: ``start_time`` is the header's (else the
    first command start's), ``end_time`` the footer's (else the latest
    command end or frame). ``bytes`` counts data bytes of all commands as
    ``stdin`` (sent on stream 0), ``stdout`` and ``stderr`` (received on
    streams 1 and 2) and ``extra`` (every other stream either way).
    ``exit_codes`` maps an exit code to how many commands ended with it,
    ``None`` to how many have no recorded end.
    """

    path: str
    size: int
    records: int
    header: SessionHeader | None
    footer: SessionFooter | None
    truncation: Truncation | None
    damage: tuple[Damage, ...]
    start_time: int | None
    end_time: int | None
    commands: int
    complete: int
    exit_codes: dict[int | None, int]
    bytes: dict[str, int]
    frames_by_type: dict[str, int]
    records_by_type: dict[str, int]
    log_count: int
    file_op_count: int
    signal_count: int
    errors: list[tuple[int, str]] = field(default_factory=list)  # (seq, message), first ones
    error_count: int = 0
    signals: list[tuple[int, int]] = field(default_factory=list)  # (seq, signal), first ones

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None unless both are known)."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1e9

    @property
    def frame_count(self) -> int:
        """How many frame records the recording holds."""
        return sum(self.frames_by_type.values())

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON-ready data with stable keys (``reclab info --json``).

        Keys: ``path``, ``size``, ``records``, ``header`` (the header's Go
        keys, or null), ``footer`` (``end_time``, ``command_count`` or null),
        ``start_time``/``end_time`` (Unix ns or null), ``start``/``end`` (ISO
        8601 UTC or null), ``duration`` (seconds or null), ``commands``
        (``total``, ``complete``, ``incomplete``, ``footer_count``,
        ``exit_codes`` keyed by the code as a string, ``"none"`` for commands
        without an end), ``bytes`` (``stdin``, ``stdout``, ``stderr``,
        ``extra``), ``frames`` (``total``, ``by_type`` keyed by frame type
        name), ``records_by_type``, ``logs``, ``file_ops``, ``signals``
        (``count``, ``list`` of ``{seq, signal}``), ``errors`` (``count``,
        ``list`` of ``{seq, message}``), ``truncation`` (``kind``,
        ``offset``, ``message`` or null).
        """
        h = self.header
        exit_codes = {
            ("none" if code is None else str(code)): n
            for code, n in sorted(self.exit_codes.items(), key=_exit_order)
        }
        return {
            "path": self.path,
            "size": self.size,
            "records": self.records,
            "header": None
            if h is None
            else {
                "version": h.version,
                "start_time": h.start_time,
                "local_user": h.local_user,
                "local_pid": h.local_pid,
                "backend_type": h.backend_type,
                "backend_addr": h.backend_addr,
                "agent_path": h.agent_path,
            },
            "footer": None
            if self.footer is None
            else {"end_time": self.footer.end_time, "command_count": self.footer.command_count},
            "start_time": self.start_time,
            "end_time": self.end_time,
            "start": _iso(self.start_time),
            "end": _iso(self.end_time),
            "duration": self.duration,
            "commands": {
                "total": self.commands,
                "complete": self.complete,
                "incomplete": self.commands - self.complete,
                "footer_count": None if self.footer is None else self.footer.command_count,
                "exit_codes": exit_codes,
            },
            "bytes": dict(self.bytes),
            "frames": {"total": self.frame_count, "by_type": dict(self.frames_by_type)},
            "records_by_type": dict(self.records_by_type),
            "logs": self.log_count,
            "file_ops": self.file_op_count,
            "signals": {
                "count": self.signal_count,
                "list": [{"seq": s, "signal": sig} for s, sig in self.signals],
            },
            "errors": {
                "count": self.error_count,
                "list": [{"seq": s, "message": m} for s, m in self.errors],
            },
            "damage": [
                {"offset": d.offset, "size": d.size, "message": d.message} for d in self.damage
            ],
            "truncation": None
            if self.truncation is None
            else {
                "kind": self.truncation.kind,
                "offset": self.truncation.offset,
                "message": self.truncation.message,
            },
        }


def _exit_order(item: tuple[int | None, int]) -> tuple[int, int]:
    code = item[0]
    return (1, 0) if code is None else (0, code)


def _iso(ns: int | None) -> str | None:
    return None if ns is None else format_time(ns)


def summarize(rec: Recording) -> SessionSummary:
    """Summarise an indexed recording (see :class:`SessionSummary`); reads no records."""
    from . import model

    commands = list(rec.commands.values())
    streams = {"stdin": 0, "stdout": 0, "stderr": 0, "extra": 0}
    exit_codes: Counter[int | None] = Counter()
    errors: list[tuple[int, str]] = []
    signals: list[tuple[int, int]] = []
    error_count = signal_count = logs = file_ops = complete = 0
    starts: list[int] = []
    ends: list[int] = []
    for cmd in commands:
        for stream, n in cmd.bytes_sent.items():
            streams["stdin" if stream == 0 else "extra"] += n
        for stream, n in cmd.bytes_received.items():
            key = {1: "stdout", 2: "stderr"}.get(stream, "extra")
            streams[key] += n
        exit_codes[cmd.exit_code if cmd.complete else None] += 1
        complete += cmd.complete
        error_count += len(cmd.errors)
        signal_count += len(cmd.signals)
        errors.extend((cmd.seq, e) for e in cmd.errors[: MAX_LISTED - len(errors)])
        signals.extend((cmd.seq, s) for s in cmd.signals[: MAX_LISTED - len(signals)])
        logs += cmd.log_count
        file_ops += cmd.file_op_count
        for t in (cmd.start_time, cmd.first_frame_time):
            if t is not None:
                starts.append(t)
        for t in (cmd.end_time, cmd.last_frame_time):
            if t is not None:
                ends.append(t)

    kinds = rec.kinds.tobytes()
    frames_by_type: dict[str, int] = {}
    for ftype in FrameType:
        n = kinds.count(bytes((int(ftype),)))
        if n:
            frames_by_type[ftype.name] = n
    other = kinds.count(bytes((model.KIND_OTHER_FRAME,)))
    if other:
        frames_by_type["UNKNOWN"] = other
    records_by_type = {
        "header": kinds.count(bytes((model.KIND_SESSION_HEADER,))),
        "command_start": kinds.count(bytes((model.KIND_COMMAND_START,))),
        "frame": sum(frames_by_type.values()),
        "command_end": kinds.count(bytes((model.KIND_COMMAND_END,))),
        "footer": kinds.count(bytes((model.KIND_SESSION_FOOTER,))),
        "unknown": kinds.count(bytes((model.KIND_UNKNOWN_RECORD,))),
    }

    start_time = rec.header.start_time if rec.header is not None else min(starts, default=None)
    end_time = rec.footer.end_time if rec.footer is not None else max(ends, default=None)
    return SessionSummary(
        path=str(rec.path),
        size=rec.size,
        records=rec.record_count,
        header=rec.header,
        footer=rec.footer,
        truncation=rec.truncation,
        damage=tuple(rec.damage),
        start_time=start_time,
        end_time=end_time,
        commands=len(commands),
        complete=complete,
        exit_codes=dict(exit_codes),
        bytes=streams,
        frames_by_type=frames_by_type,
        records_by_type=records_by_type,
        log_count=logs,
        file_op_count=file_ops,
        signal_count=signal_count,
        errors=errors,
        error_count=error_count,
        signals=signals,
    )


def command_json(cmd: Command, *, secrets: bool = False) -> dict[str, Any]:
    """One command as JSON-ready data (``reclab commands --json``), keys as documented there.

    Secret-looking arguments are masked (``reclab.redact.mask_argv``) unless ``secrets``.

    Times are Unix nanoseconds, ``duration`` seconds; ``bytes`` counts data
    bytes: ``stdin`` sent on stream 0, ``stdout``/``stderr`` received on 1
    and 2, ``extra`` every other stream.
    """
    extra = sum(n for st, n in cmd.bytes_received.items() if st > 2)
    extra += sum(n for st, n in cmd.bytes_sent.items() if st != 0)
    argv = cmd.exec.argv
    return {
        "seq": cmd.seq,
        "path": cmd.path,
        # null stays null (Go writes a nil slice so), apart from an empty list
        "argv": argv if secrets or argv is None else mask_argv(argv),
        "cwd": cmd.cwd,
        "start_time": cmd.start_time,
        "end_time": cmd.end_time,
        "duration": cmd.duration,
        "exit_code": cmd.exit_code,
        "exit_frame_code": cmd.exit_frame_code,
        "frames": cmd.frame_count,
        "bytes": {
            "stdin": cmd.bytes_sent.get(0, 0),
            "stdout": cmd.bytes_received.get(1, 0),
            "stderr": cmd.bytes_received.get(2, 0),
            "extra": extra,
        },
        "signals": list(cmd.signals),
        "errors": list(cmd.errors),
        "complete": cmd.complete,
    }


def select_commands(rec: Recording, where: str | None = None, sort: str | None = None) -> list[int]:
    """Sequence numbers of the commands matching ``where``, ordered by ``sort``.

    ``where`` is a pandas ``DataFrame.query`` expression over
    :func:`reclab.tables.commands_table` (``exit_code != 0 and duration > 2``);
    ``sort`` a column of that table, ``-column`` for descending. Raises
    ``ValueError`` with a one-line message for a bad expression or column.
    """
    if not where and not sort:
        # the table's order, without building it (pandas costs half a second to import)
        return [c.seq for c in rec.commands.values()]
    from .tables import commands_table
    from .where import Where

    df = commands_table(rec)
    if where:
        # the commands table has no categorical column: no warnings to pass on
        df = Where(where, "commands").filter(df)
    if sort:
        column = sort.lstrip("-")
        if column not in df.columns:
            raise ValueError(
                f"unknown --sort column {column!r}; columns are {', '.join(map(str, df.columns))}"
            )
        try:
            df = df.sort_values(
                column, ascending=not sort.startswith("-"), kind="stable", na_position="last"
            )
        except TypeError as exc:
            raise ValueError(f"cannot sort by {column!r}: {exc}") from None
    return [int(seq) for seq in df["seq"]]
