"""The Logs tab: the agent's log entries for one command, coloured by level.

Rows come from :func:`reclab.tables.iter_logs_batches` over the command's own
records (:class:`reclab.tui.widgets.fileops.CommandRecords`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from reclab.timeline import safe_text
from reclab.tui.widgets.fileops import CommandTable, Table, concat
from reclab.tui.widgets.frames import command_start_ns
from reclab.tui.widgets.vlist import Column, sort_ranks, text_width

if TYPE_CHECKING:
    from reclab.model import Command, Recording

__all__ = ["LEVEL_STYLES", "LogsTable"]

LEVEL_STYLES = {"DEBUG": "dim", "INFO": "green", "WARN": "yellow", "ERROR": "bold red"}


def level_style(level: str) -> str:
    """The colour of a level name (``INFO+2`` takes INFO's)."""
    for base, style in LEVEL_STYLES.items():
        if level.startswith(base):
            return style
    return ""


_MESSAGE_WIDTH = 120  # cells; longer messages are cut with an ellipsis (attrs come after)


class LogsTable(CommandTable):
    """Agent log entries of one command: time since start, level, message, attributes.

    Every entry is shown (a virtual table, read and ranked in a worker);
    sortable like the File ops tab (``o``, a click on a header).
    """

    WHAT = "the logs"

    @property
    def levels(self) -> list[str]:
        """The level of each row, in the order shown (for tests and filters)."""
        return [str(self._data["level"][self.item(r)]) for r in range(self._count)]

    def has_rows(self, cmd: Command) -> bool:
        return bool(cmd.log_count)

    def build(self, view: Recording, cmd: Command) -> Table | None:
        import pandas as pd  # only once the tab is shown

        from reclab.tables import iter_logs_batches

        frame = concat(iter_logs_batches(view))
        if frame is None:
            return None
        start = pd.Timestamp(command_start_ns(cmd), unit="ns", tz="UTC")
        seconds = (frame["timestamp"] - start).dt.total_seconds()
        level = frame["level"].astype(str)
        data = {
            "time": seconds.to_numpy(),
            "level": level.array,
            "message": frame["message"].array,
            "attrs": frame["attrs"].array,
        }
        ranks = {
            "time": sort_ranks(seconds),
            "level": sort_ranks(frame["level_value"]),
            "message": sort_ranks(frame["message"]),
            "attrs": sort_ranks(frame["attrs"]),
        }
        widest = max(abs(seconds.min()), abs(seconds.max())) if len(seconds) else 0.0
        columns = [
            Column("time", max(len(f"{-widest:+.6f}s"), 5), right=True),
            Column("level", max(int(level.str.len().max()), 6)),
            Column("message", min(max(text_width(frame["message"]), 8), _MESSAGE_WIDTH)),
            Column("attrs", max(min(text_width(frame["attrs"]), 500), 6)),
        ]
        return Table(data, columns, len(frame), ranks)

    def cells(self, item: int) -> list[Text]:
        level = str(self._data["level"][item])
        style = level_style(level)
        message = safe_text(str(self._data["message"][item]), 500)
        return [
            Text(f"{self._data['time'][item]:+.6f}s", "dim"),
            Text(level, style),
            Text(message, style if level != "INFO" else ""),
            Text(safe_text(str(self._data["attrs"][item]), 500), "cyan"),
        ]
