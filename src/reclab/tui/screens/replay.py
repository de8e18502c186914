"""Replay and diff inside the viewer: what would be sent, a confirmation, the comparison.

:class:`ReplayScreen` shows the replay plan of the selected command
(:func:`reclab.replay.plan_command`) and runs nothing until the user says so:
Enter replays it against this package's agent (recorded timing) in a thread
worker, then the comparison replaces the plan. :class:`DiffScreen` shows
``reclab diff``'s comparison of the open recording with another one. Both
use the replay package's report functions, so the viewer, the CLI and
``--json`` agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ...model import RecordingError, UnknownCommandError, open_recording
from ...replay import plan_command
from ...replay.report import command_plan_lines, comparison_table, summary_line

if TYPE_CHECKING:
    from ...replay import Comparison
    from ..source import RecordingSource


def _report(report: Comparison) -> Group:
    return Group(comparison_table(report), Text(summary_line(report)))


class ReplayScreen(Screen[None]):
    """The plan of one command; Enter replays it and shows what changed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("enter", "run", "Replay it"),
    ]

    DEFAULT_CSS = """
    ReplayScreen #status { height: auto; padding: 0 1; background: $panel; }
    ReplayScreen VerticalScroll { height: 1fr; padding: 0 1; }
    """

    def __init__(self, source: RecordingSource, seq: int) -> None:
        super().__init__()
        self.source = source
        self.seq = seq
        self.state = "plan"  # plan -> running -> done (or failed)
        self.report: Comparison | None = None

    def compose(self) -> ComposeResult:
        """Status line, the plan (then the comparison), footer."""
        yield Static(id="status")
        with VerticalScroll():
            yield Static(id="body")
        yield Footer()

    def on_mount(self) -> None:
        """Show the plan: nothing is sent until Enter."""
        plan = plan_command(self.source.rec, self.seq)
        self.query_one("#body", Static).update(Text("\n".join(command_plan_lines(plan))))
        if plan.problem is not None:
            self.state = "failed"
            self._status(f"command {self.seq} cannot be replayed: {plan.problem}", "red")
        else:
            self._status(
                f"Replay command {self.seq} against this package's agent (a local "
                "subprocess) and compare? It runs the command for real. Enter: replay, "
                "Esc: back",
                "yellow",
            )

    def _status(self, text: str, style: str) -> None:
        self.query_one("#status", Static).update(Text(text, style=style))

    def action_close(self) -> None:
        """Back to the recording (a replay in progress finishes in the background)."""
        self.dismiss(None)

    def action_run(self) -> None:
        """Replay the command (once)."""
        if self.state != "plan":
            return
        self.state = "running"
        self._status(f"replaying command {self.seq}…", "yellow")
        self._replay()

    @work(thread=True, exclusive=True, group="replay")
    def _replay(self) -> None:
        from ...replay import replay

        try:
            report = replay(self.source.path, seqs=[self.seq])
        except (RecordingError, UnknownCommandError, OSError) as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._done, report)

    def _failed(self, error: str) -> None:
        self.state = "failed"
        self._status(f"the replay failed: {error}", "red")

    def _done(self, report: Comparison) -> None:
        self.state = "done"
        self.report = report
        verdict = report.commands[0].verdict if report.commands else "error"
        style = {"match": "green", "diverged": "red"}.get(verdict, "yellow")
        self._status(f"replayed command {self.seq}: {verdict}", style)
        self.query_one("#body", Static).update(_report(report))


class DiffScreen(Screen[None]):
    """``reclab diff`` of the open recording with another one, as a table."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back")]

    DEFAULT_CSS = """
    DiffScreen #status { height: auto; padding: 0 1; background: $panel; }
    DiffScreen VerticalScroll { height: 1fr; padding: 0 1; }
    """

    def __init__(self, source: RecordingSource, other: Path, match: str = "seq") -> None:
        super().__init__()
        self.source = source
        self.other = other
        self.match = match
        self.report: Comparison | None = None

    def compose(self) -> ComposeResult:
        """Status line, the comparison, footer."""
        yield Static(Text(f"comparing with {self.other}…", style="yellow"), id="status")
        with VerticalScroll():
            yield Static(id="body")
        yield Footer()

    def on_mount(self) -> None:
        """Compare in a worker: it reads both recordings' streams."""
        self._compare()

    def action_close(self) -> None:
        """Back to the recording."""
        self.dismiss(None)

    @work(thread=True, exclusive=True, group="diff")
    def _compare(self) -> None:
        from ...replay import compare_recordings

        try:
            with open_recording(self.source.path) as a, open_recording(self.other) as b:
                report = compare_recordings(a, b, match=self.match)
        except (RecordingError, OSError) as exc:
            self.app.call_from_thread(self._show, None, str(exc))
            return
        self.app.call_from_thread(self._show, report, None)

    def _show(self, report: Any, error: str | None) -> None:
        status = self.query_one("#status", Static)
        if report is None:
            status.update(Text(f"cannot compare: {error}", style="red"))
            return
        self.report = report
        diverged = report.count("diverged") + report.count("unpaired") + report.count("error")
        status.update(
            Text(
                f"{self.source.path} vs {self.other}: {summary_line(report)}",
                style="red" if diverged else "green",
            )
        )
        self.query_one("#body", Static).update(_report(report))
