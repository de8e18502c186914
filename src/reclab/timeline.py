"""Timelines in the terminal: commands over the session, frames within a command.

- :func:`command_spans` + :func:`render_gantt`: one row per command, a bar
  from its start to its end on a shared time axis, so concurrent commands
  overlap visibly; green for exit 0, red for another code, yellow for a
  command whose end is not recorded.
- :func:`frame_rows` + :func:`render_frames`: a command's frames in time
  order with the time since the command start, direction, type, stream,
  payload size and a one-line preview.

Rendering produces :class:`rich.text.Text` lines and never interprets the
recorded bytes: every preview goes through :func:`safe_text`, which escapes
control characters, so a recording cannot move the cursor, change colours or
reorder text (bidi controls) in the user's terminal.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from agentproto import Direction, FileOp, Frame, FrameType

from .redact import mask_argv, mask_bytes, mask_text
from .text import (
    format_duration,
    format_offset,
    level_name,
    safe_preview,
    safe_text,
    signal_name,
)

if TYPE_CHECKING:
    from .model import Recording

__all__ = [
    "FrameRow",
    "Span",
    "command_spans",
    "format_duration",
    "format_offset",
    "frame_row",
    "frame_rows",
    "nice_step",
    "render_frames",
    "render_gantt",
    "safe_preview",
    "safe_text",
    "signal_name",
]

_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"
ARROWS = {int(Direction.SEND): "→", int(Direction.RECV): "←"}

# --- the session: commands over time ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """A command's extent in time (Unix ns), its label and how it ended."""

    seq: int
    label: str
    start: int
    end: int
    exit_code: int | None
    complete: bool


def command_spans(rec: Recording) -> list[Span]:
    """One span per command with a known time, in sequence-number order.

    A span runs from the command start (else its first frame) to its end
    (else its last frame, else its start): an unfinished command is drawn up
    to the last thing recorded for it.
    """
    spans = []
    for cmd in list(rec.commands.values()):
        start = cmd.start_time if cmd.start_time is not None else cmd.first_frame_time
        if start is None:
            continue
        end = cmd.end_time if cmd.end_time is not None else cmd.last_frame_time
        end = start if end is None else max(end, start)
        argv = cmd.argv or ([cmd.path] if cmd.path else [])
        spans.append(Span(cmd.seq, shlex.join(argv), start, end, cmd.exit_code, cmd.complete))
    return spans


def nice_step(total: float, ticks: int) -> float:
    """A 1-2-5 step (in the unit of ``total``) giving about ``ticks`` intervals."""
    if total <= 0 or ticks <= 0:
        return 1.0
    raw = total / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def _style(span: Span) -> str:
    if not span.complete:
        return "yellow"
    return "green" if span.exit_code == 0 else "red"


def _bar(start_col: float, end_col: float, width: int) -> tuple[int, str]:
    """Column and characters of a bar from ``start_col`` to ``end_col`` (cells, fractional)."""
    first = min(int(start_col), width - 1)
    eighths = max(1, round((end_col - start_col) * 8))
    full, rest = divmod(eighths, 8)
    chars = _FULL * full + (_EIGHTHS[rest] if rest else "")
    return first, chars[: width - first]


def render_gantt(
    spans: Iterable[Span],
    width: int = 100,
    *,
    origin: int | None = None,
    until: int | None = None,
) -> list[Text]:
    """Draw spans as a Gantt chart ``width`` cells wide: rows, then a time axis.

    Each row is ``seq label │bar│ duration exit``; the axis shows offsets
    from ``origin`` (default: the earliest start; pass the session start to
    show the gap before the first command) up to ``until`` (default: the
    latest end).
    """
    spans = list(spans)
    if not spans:
        return [Text("no commands with a recorded time", style="dim")]
    t0 = min(s.start for s in spans) if origin is None else min(origin, *(s.start for s in spans))
    t1 = max(s.end for s in spans) if until is None else max(until, *(s.end for s in spans))
    total = max(t1 - t0, 1)
    seq_w = max(len(str(s.seq)) for s in spans)
    label_w = min(max(len(s.label) for s in spans), max(8, width // 4))
    right = [
        (format_duration((s.end - s.start) / 1e9), "…" if not s.complete else str(s.exit_code))
        for s in spans
    ]
    dur_w = max(len(d) for d, _ in right)
    exit_w = max(4, *(len(e) for _, e in right))
    bars = max(10, width - (seq_w + 1 + label_w + 2 + 2 + dur_w + 1 + exit_w))
    scale = bars / total

    lines = []
    for span, (dur, code) in zip(spans, right, strict=True):
        col, chars = _bar((span.start - t0) * scale, (span.end - t0) * scale, bars)
        line = Text(no_wrap=True, overflow="crop")
        line.append(f"{span.seq:>{seq_w}} ", style="bold")
        line.append(f"{safe_text(span.label, label_w):<{label_w}} ")
        line.append("│", style="dim")
        line.append(" " * col)
        line.append(chars, style=_style(span))
        line.append(" " * (bars - col - len(chars)))
        line.append("│ ", style="dim")
        line.append(f"{dur:>{dur_w}} ")
        line.append(f"{code:>{exit_w}}", style=_style(span))
        lines.append(line)

    # The axis: ticks at 1-2-5 steps, labels where they fit without overlapping.
    indent = seq_w + 1 + label_w + 1
    step = nice_step(total / 1e9, max(1, bars // 12))
    ticks = []
    k = 0
    while (t := k * step) * 1e9 <= total + 1:
        ticks.append((min(round(t * 1e9 * scale), bars - 1), t))
        k += 1
    axis = ["─"] * bars
    for col, _t in ticks:
        axis[col] = "┬"
    labels = [" "] * (bars + 12)
    free = 0
    for col, t in ticks:
        text = format_offset(t, step)
        if col >= free and col + len(text) <= len(labels):
            labels[col : col + len(text)] = text
            free = col + len(text) + 1
    lines.append(Text(" " * indent + "└" + "".join(axis) + "┘", style="dim", no_wrap=True))
    lines.append(Text(" " * (indent + 1) + "".join(labels).rstrip(), style="dim", no_wrap=True))
    return lines


# --- one command: its frames -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One frame of a command as the frame timeline shows it."""

    index: int  # record index in the recording
    offset: int  # byte offset of the record
    time: float  # seconds since the command start
    direction: int
    type: str
    stream: int | None  # for data and EOF frames
    size: int  # payload bytes (data, file-op data)
    preview: str  # escaped, one line


def _describe(frame: Frame, limit: int, secrets: bool = False) -> tuple[int | None, int, str]:
    """``(stream, size, preview)`` for a frame; every string is escaped.

    Unless ``secrets``, what looks like a secret (``reclab.redact``'s patterns,
    secret-looking arguments) is masked in previews.
    """
    ftype = frame.type
    if ftype == FrameType.DATA:
        # the head shown, plus room for a secret that starts inside it
        data = frame.data if secrets else mask_bytes(frame.data[: limit * 4 + 4 + 4096])
        return frame.stream, len(frame.data), safe_preview(data, limit)
    if ftype == FrameType.EOF:
        return frame.stream, 0, ""
    if ftype == FrameType.EXEC and frame.exec is not None:
        x = frame.exec
        argv = x.argv or [x.path]
        text = shlex.join(argv if secrets else mask_argv(argv)) + (
            f"  (cwd {x.cwd})" if x.cwd else ""
        )
        return None, 0, safe_text(text, limit)
    if ftype == FrameType.SIGNAL:
        return None, 0, f"signal {signal_name(frame.signal)}"
    if ftype == FrameType.EXIT:
        return None, 0, f"exit code {frame.code}"
    if ftype == FrameType.ERROR:
        return None, 0, safe_text(frame.error, limit)
    if ftype == FrameType.LOG and frame.log is not None:
        level = level_name(frame.log.level)
        text = " ".join([level, frame.log.msg, *frame.log.attrs])
        return None, 0, safe_text(text if secrets else mask_text(text), limit)
    if ftype == FrameType.CONFIG and frame.config is not None:
        c = frame.config
        text = f"env_keep {c.env_keep or []} env_remove {c.env_remove or []}"
        return None, 0, safe_text(text, limit)
    if ftype == FrameType.PATH_QUERY:
        paths = frame.query.paths if frame.query is not None else []
        return None, 0, safe_text(" ".join(paths) or "(agent's $PATH)", limit)
    if ftype == FrameType.PATH_INFO:
        n = len(frame.info.entries or []) if frame.info is not None else 0
        return None, 0, f"{n} executables"
    if ftype == FrameType.FILE_OP and frame.file_op is not None:
        r = frame.file_op
        op = r.op.name if isinstance(r.op, FileOp) else f"op-{int(r.op)}"
        parts = [f"#{r.req_id} {op}"]
        parts += [p for p in (r.path, r.new_path) if p]
        if r.handle:
            parts.append(f"h={r.handle}")
        if r.offset or r.size:
            parts.append(f"off={r.offset} size={r.size}")
        return None, len(r.data), safe_text(" ".join(parts), limit)
    if ftype == FrameType.FILE_RESP and frame.file_resp is not None:
        p = frame.file_resp
        parts = [f"#{p.req_id}"]
        if p.errno:
            parts.append(f"errno {p.errno}" + (f" {p.err_msg}" if p.err_msg else ""))
        else:
            parts.append("ok")
        if p.handle:
            parts.append(f"h={p.handle}")
        if p.n:
            parts.append(f"n={p.n}")
        if p.eof:
            parts.append("eof")
        if p.path:
            parts.append(p.path)
        if p.entries:
            parts.append(f"{len(p.entries)} entries")
        return None, len(p.data), safe_text(" ".join(parts), limit)
    return None, 0, f"frame type {int(ftype)}"


def frame_row(
    index: int,
    offset: int,
    timestamp: int,
    direction: int,
    frame: Frame,
    start: int,
    limit: int,
    *,
    secrets: bool = False,
) -> FrameRow:
    """Describe one recorded frame relative to its command's ``start`` (Unix ns).

    Secret-looking values are masked in the preview unless ``secrets``.
    """
    stream, size, preview = _describe(frame, limit, secrets)
    ftype = frame.type
    name = ftype.name if isinstance(ftype, FrameType) else f"type-{int(ftype)}"
    return FrameRow(
        index, offset, (timestamp - start) / 1e9, int(direction), name, stream, size, preview
    )


def frame_rows(
    rec: Recording, seq: int, *, preview: int = 60, secrets: bool = False
) -> Iterator[FrameRow]:
    """The frames of command ``seq`` in file order (the order they were recorded).

    Times are relative to the command start, or to its first frame when the
    start record is missing. Raises ``UnknownCommandError`` for an unknown seq.
    Secret-looking values are masked in previews unless ``secrets``.
    """
    cmd = rec.command(seq)
    start = cmd.start_time
    if start is None:
        start = cmd.first_frame_time if cmd.first_frame_time is not None else 0
    for ref in rec.frames(seq):
        yield frame_row(
            ref.index,
            ref.offset,
            ref.timestamp,
            int(ref.direction),
            ref.frame,
            start,
            preview,
            secrets=secrets,
        )


_TYPE_STYLE = {
    "EXIT": "bold",
    "ERROR": "red",
    "SIGNAL": "magenta",
    "LOG": "dim",
    "FILE_OP": "cyan",
    "FILE_RESP": "cyan",
}


def render_frames(rows: Iterable[FrameRow]) -> Iterator[Text]:
    """One line per frame: ``+seconds  arrow  type  stream  size  preview``."""
    for row in rows:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{row.time:+.6f}s ", style="dim")
        arrow = ARROWS.get(row.direction, "?")
        line.append(f"{arrow} ", style="blue" if arrow == "→" else "green")
        line.append(f"{row.type:<9} ", style=_TYPE_STYLE.get(row.type, ""))
        line.append(f"{'' if row.stream is None else row.stream:>2} ")
        line.append(f"{row.size if row.size else '':>7} ")
        line.append(row.preview)
        yield line
