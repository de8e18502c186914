"""The replay plan and comparison reports for people: escaped text lines and a rich table.

Every string taken from a recording (argv, paths, output) goes through
:func:`reclab.timeline.safe_text`, so a recording can never drive the
terminal. The JSON form is :meth:`Comparison.to_json`.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..timeline import safe_text
from .compare import CommandComparison, Comparison
from .plan import CommandPlan, Plan

__all__ = ["comparison_table", "plan_lines", "summary_line"]

VERDICT_STYLES = {"match": "green", "diverged": "red", "error": "bold red", "unpaired": "yellow"}


def _command_text(argv: list[str], cwd: str) -> str:
    text = shlex.join(argv) if argv else "(no argv)"
    return safe_text(text + (f"  (in {cwd})" if cwd else ""), 120)


def command_plan_lines(cmd: CommandPlan) -> list[str]:
    """One command's plan: a heading line, then one line per frame to send."""
    head = f"command {cmd.seq} at +{cmd.start:.3f}s: {_command_text(cmd.argv, cmd.exec.cwd)}"
    if cmd.problem is not None:
        return [head, f"  not replayable: {cmd.problem}"]
    lines = [head]
    if cmd.after:
        shown = ", ".join(map(str, cmd.after[-5:]))
        lines.append(
            f"  starts after command{'s' if len(cmd.after) > 1 else ''} "
            f"{'..., ' if len(cmd.after) > 5 else ''}{shown} ended"
        )
    for step in cmd.steps:
        late = "  (recorded after the exit)" if step.after_exit else ""
        lines.append(f"  +{step.time:.6f}s  {step.describe()}{late}")
    if not cmd.exited:
        lines.append("  (recorded without an exit code: the replay hangs up as the runner did)")
    return lines


def plan_lines(plan: Plan, target: str) -> list[str]:
    """The whole plan as text lines: what would be sent to ``target``, command by command."""
    count = len(plan.commands)
    lines = [
        f"Replay plan for {safe_text(plan.path)}: {count} command{'s' if count != 1 else ''}, "
        f"each on its own connection to {safe_text(target)}.",
        "Nothing was sent: add --run to replay it.",
    ]
    if plan.truncation:
        lines.append(f"The recording stops early: {safe_text(plan.truncation)}")
    for cmd in plan.commands:
        lines.extend(command_plan_lines(cmd))
    return lines


def _differences_text(cmd: CommandComparison) -> str:
    if cmd.error is not None:
        return safe_text(cmd.error)
    if cmd.unpaired:
        return "only in the other recording" if cmd.seq is None else "only in this recording"
    parts = []
    for diff in cmd.differences:
        parts.append(safe_text(diff.what))
        if diff.diff:
            parts.extend("  " + safe_text(line, 160) for line in diff.diff.splitlines())
    return "\n".join(parts)


def comparison_table(report: Comparison) -> Any:
    """A rich Table: one row per command with its verdict and what differed."""
    from rich.table import Table
    from rich.text import Text

    other = "replay" if report.kind == "replay" else "other"
    table = Table(
        title=f"{safe_text(report.recording)} vs {safe_text(report.other or '')}",
        title_justify="left",
    )
    table.add_column("seq", justify="right")
    table.add_column(other, justify="right")
    table.add_column("command", overflow="fold", max_width=50)
    table.add_column("verdict")
    table.add_column("what differed", overflow="fold")
    for cmd in report.commands:
        verdict = cmd.verdict
        # Text cells, never markup: recorded strings are shown as they are (escaped)
        table.add_row(
            Text("-" if cmd.seq is None else str(cmd.seq)),
            Text("-" if cmd.other_seq is None else str(cmd.other_seq)),
            Text(_command_text(cmd.argv, cmd.cwd)),
            Text(verdict, style=VERDICT_STYLES[verdict]),
            Text(_differences_text(cmd)),
        )
    return table


def summary_line(report: Comparison) -> str:
    """``3 matched, 1 diverged, 0 errors`` (and unpaired for a diff), plus the replay's file."""
    parts = [
        f"{report.count('match')} matched",
        f"{report.count('diverged')} diverged",
        f"{report.count('error')} error{'s' if report.count('error') != 1 else ''}",
    ]
    if report.kind == "diff":
        parts.append(f"{report.count('unpaired')} unpaired")
    text = ", ".join(parts)
    if report.kind == "replay" and report.other:
        text += f"; the replay is recorded in {safe_text(report.other)}"
    return text
