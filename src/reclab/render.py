"""Rich renderables shared by the CLI and the coming TUI (never Textual itself).

Each function turns an analysis result into something ``rich`` can print: the
``reclab info`` table of a :class:`~reclab.summary.SessionSummary`, and the
lines of a ``reclab check`` report. Recorded text is escaped
(:mod:`reclab.text`) and never interpreted as markup.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from .text import format_duration, format_size, format_time, safe_text, signal_name

if TYPE_CHECKING:
    from .check import CheckReport, Severity
    from .summary import SessionSummary

__all__ = ["check_summary", "finding_lines", "info_table"]


def info_table(s: SessionSummary) -> Table:
    """The ``reclab info`` view of a session summary: one labelled row per fact."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()

    def row(key: str, value: str | Text) -> None:
        grid.add_row(key, value if isinstance(value, Text) else Text(value))

    row("file", f"{s.path} ({format_size(s.size)}, {s.records} records)")
    h = s.header
    if h is None:
        row("session", Text("no session header", style="yellow"))
    else:
        row(
            "session",
            safe_text(f"version {h.version}, user {h.local_user}, pid {h.local_pid}"),
        )
        backend = " ".join(p for p in (h.backend_type, h.backend_addr) if p)
        row("backend", safe_text(backend) or "-")
        row("agent", safe_text(h.agent_path) or "-")
    row("start", format_time(s.start_time) if s.start_time is not None else "-")
    end = format_time(s.end_time) if s.end_time is not None else "-"
    row("end", end + ("" if s.footer is not None else " (no footer: last recorded time)"))
    row("duration", format_duration(s.duration) if s.duration is not None else "-")
    commands = f"{s.commands}"
    if s.footer is not None:
        same = s.footer.command_count == s.commands
        commands += f" (footer: {s.footer.command_count}{'' if same else ', MISMATCH'})"
    if s.complete != s.commands:
        commands += f", {s.commands - s.complete} without an end"
    row("commands", Text(commands, style="" if s.footer is None or same else "red"))
    exits = Text()
    for code, n in sorted(s.exit_codes.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        if exits:
            exits.append(", ")
        label = "no end" if code is None else f"exit {code}"
        style = "yellow" if code is None else ("green" if code == 0 else "red")
        exits.append(f"{label}: {n}", style=style)
    row("exit codes", exits if exits else Text("-"))
    row("bytes", ", ".join(f"{k} {format_size(v)}" for k, v in s.bytes.items()))
    frames = ", ".join(f"{k} {v}" for k, v in s.frames_by_type.items())
    row("frames", f"{s.frame_count}" + (f" ({frames})" if frames else ""))
    row("file ops", f"{s.file_op_count} requests")
    row("logs", f"{s.log_count} agent log records")
    if s.signal_count:
        listed = ", ".join(f"{signal_name(sig)} to {seq}" for seq, sig in s.signals[:10])
        more = ", ..." if s.signal_count > 10 else ""
        row("signals", f"{s.signal_count} ({listed}{more})")
    else:
        row("signals", "none")
    if s.error_count:
        err = Text(f"{s.error_count}", style="red")
        for seq, message in s.errors[:5]:
            err.append(f"\n[{seq}] {safe_text(message, 100)}")
        if s.error_count > 5:
            err.append(f"\n... {s.error_count - 5} more")
        row("agent errors", err)
    else:
        row("agent errors", "none")
    for d in s.damage:
        row(
            "damage",
            Text(f"{d.size} bytes at byte {d.offset} skipped: {d.message}", style="yellow"),
        )
    t = s.truncation
    if t is None:
        row("truncation", "none (complete recording)")
    else:
        row("truncation", Text(f"{t.kind} at byte {t.offset}: {t.message}", style="yellow"))
    return grid


def finding_lines(report: CheckReport, minimum: Severity) -> Iterator[Text]:
    """One line per finding at ``minimum`` severity or worse, in file order (grep-able)."""
    from .check import Severity, iter_findings

    styles = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "dim"}
    for f in iter_findings(report, minimum):
        line = Text()
        line.append(f"{f.severity.value:<7} ", style=styles[f.severity])
        where = [
            f"#{f.index}" if f.index is not None else "",
            f"@{f.offset}" if f.offset is not None else "",
            f"seq {f.seq}" if f.seq is not None else "",
        ]
        line.append(" ".join(w for w in where if w) + " " if any(where) else "")
        line.append(f.code, style="bold")
        line.append(f": {safe_text(f.message)}")
        yield line


def check_summary(report: CheckReport) -> Text:
    """The last line of ``reclab check``: counts per severity and the verdict."""
    c = report.counts
    verdict = Text("OK" if report.ok else "FAILED", style="green" if report.ok else "red")
    summary = Text(
        f"{report.records} records: {c['error']} errors, {c['warning']} warnings, "
        f"{c['info']} infos — "
    )
    return summary + verdict
