"""The Logs tab: the agent's log entries for one command, coloured by level.

Rows come from :func:`reclab.tables.iter_logs_batches` over the command's own
records (:class:`reclab.tui.widgets.fileops.CommandRecords`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.text import Text
from textual.widgets import DataTable

from reclab.tables import iter_logs_batches
from reclab.timeline import safe_text
from reclab.tui.widgets import fileops
from reclab.tui.widgets.fileops import CommandRecords
from reclab.tui.widgets.frames import command_start_ns, report_errors

if TYPE_CHECKING:
    from reclab.model import Command
    from reclab.tui.widgets.command_detail import CommandSource

__all__ = ["LEVEL_STYLES", "LogsTable"]

LEVEL_STYLES = {"DEBUG": "dim", "INFO": "green", "WARN": "yellow", "ERROR": "bold red"}


def level_style(level: str) -> str:
    """The colour of a level name (``INFO+2`` takes INFO's)."""
    for base, style in LEVEL_STYLES.items():
        if level.startswith(base):
            return style
    return ""


class LogsTable(DataTable[Any]):
    """Agent log entries of one command: time since start, level, message, attributes."""

    DEFAULT_CSS = "LogsTable { height: 1fr; }"

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.source = source
        self.seq: int | None = None
        self.total = 0
        self.levels: list[str] = []  # level of each row shown, for tests and filters

    def on_mount(self) -> None:
        for name in ("time", "level", "message", "attrs"):
            self.add_column(name, key=name)

    def show_command(self, seq: int | None) -> None:
        """Show the log entries of command ``seq`` (None: empty); read in a worker."""
        self.seq = seq
        self.clear()
        self.total = 0
        self.levels = []
        cmd = self.source.command(seq) if seq is not None else None
        if cmd is not None and cmd.log_count:
            self.run_worker(
                lambda: report_errors(self, "the logs", lambda: self._read(cmd)),
                thread=True,
                exclusive=True,
                group="logs",
                exit_on_error=False,
            )

    def _read(self, cmd: Command) -> None:
        start = pd.Timestamp(command_start_ns(cmd), unit="ns", tz="UTC")
        view = CommandRecords(self.source.rec, cmd).as_recording()
        rows: list[tuple[float, str, str, str]] = []
        total = 0
        for batch in iter_logs_batches(view):
            total += len(batch)
            part = batch.head(max(fileops.MAX_ROWS - len(rows), 0))
            seconds = (part["timestamp"] - start).dt.total_seconds().tolist()
            rows.extend(
                zip(
                    seconds,
                    part["level"].astype(str).tolist(),
                    part["message"].astype(str).tolist(),
                    part["attrs"].astype(str).tolist(),
                    strict=True,
                )
            )
        self.app.call_from_thread(self._loaded, cmd.seq, rows, total)

    def _loaded(self, seq: int, rows: list[tuple[float, str, str, str]], total: int) -> None:
        if seq != self.seq:
            return  # another command was selected meanwhile
        self.total = total
        for second, level, message, attrs in rows:
            style = level_style(level)
            self.levels.append(level)
            self.add_row(
                Text(f"{second:+.6f}s", "dim"),
                Text(level, style),
                Text(safe_text(message, 500), style if level != "INFO" else ""),
                Text(safe_text(attrs, 500), "cyan"),
            )
        left_out = total - len(rows)
        if left_out > 0:
            note = f"... {left_out} more log entries not shown (the first {len(rows)} are)"
            self.add_row(Text(""), Text(""), Text(note, "italic yellow"), Text(""), key="more")
