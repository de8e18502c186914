"""The check findings view: ``reclab check``'s findings, listed; Enter jumps to the frame.

The check is one streaming pass over the file (:func:`reclab.check.check_recording`),
run by the app in a thread worker (after indexing for small files, else the
first time this view opens); the app keeps the findings and marks them on the
frames they point at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from ...check import Finding
from ...timeline import safe_text

if TYPE_CHECKING:
    from ...check import CheckReport
    from ..app import ReclabApp

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


class FindingsScreen(Screen[Finding | None]):
    """Every finding with severity, code, command, record, byte offset and message."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,c", "close", "Back"),
        Binding("enter", "choose", "Go to frame", show=True),
    ]

    DEFAULT_CSS = """
    FindingsScreen #summary { height: auto; padding: 0 1; background: $panel; }
    FindingsScreen DataTable { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        """Summary line, findings table, footer."""
        yield Static("checking…", id="summary")
        table: DataTable[Text | str] = DataTable(cursor_type="row", id="findings")
        table.add_columns("severity", "code", "seq", "record", "offset", "message")
        yield table
        yield Footer()

    @property
    def reclab_app(self) -> ReclabApp:
        """The app, typed."""
        from ..app import ReclabApp

        assert isinstance(self.app, ReclabApp)
        return self.app

    def on_mount(self) -> None:
        """Show the findings, starting the check when nobody has yet."""
        report = self.reclab_app.check_report
        if report is None:
            self.reclab_app.run_check()
        else:
            self.show_report(report)
        self.query_one(DataTable).focus()

    def show_failure(self, message: str) -> None:
        """Say why the check could not run."""
        self.query_one("#summary", Static).update(f"cannot check: {safe_text(message)}")

    def show_report(self, report: CheckReport) -> None:
        """Fill the table from ``report``."""
        self.findings = list(report.findings)
        counts = ", ".join(f"{n} {sev}" for sev, n in sorted(report.counts.items()) if n)
        verdict = "OK" if report.ok else "errors found"
        self.query_one("#summary", Static).update(
            f"reclab check: {verdict}; {report.records} records; {counts or 'no findings'}"
        )
        table: DataTable[Text | str] = self.query_one(DataTable)
        table.clear()
        for f in self.findings:
            table.add_row(
                Text(str(f.severity), style=_SEVERITY_STYLE.get(str(f.severity), "")),
                f.code,
                "" if f.seq is None else str(f.seq),
                "" if f.index is None else str(f.index),
                "" if f.offset is None else str(f.offset),
                safe_text(f.message),
            )

    def action_close(self) -> None:
        """Back to the main screen."""
        self.dismiss(None)

    def action_choose(self) -> None:
        """Back to the main screen at the finding's command and frame."""
        table: DataTable[Text | str] = self.query_one(DataTable)
        findings = getattr(self, "findings", [])
        if findings and 0 <= table.cursor_row < len(findings):
            self.dismiss(findings[table.cursor_row])

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_choose()
