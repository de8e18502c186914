"""The commands list: one row per command, sortable by column, filtered by text or expression.

A ``render_line`` list (Textual's line API), not a ``DataTable``: a session
may hold many thousands of commands and grows while it is indexed or
followed, and the user's selection must survive every update. Rows are
rendered only when visible.

The text filter (``/``) matches the row's visible text; the expression
filter (``w``) is ``reclab commands --where``: the screen evaluates it with
:func:`reclab.summary.select_commands` and hands the matching sequence
numbers to :meth:`CommandList.set_where`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from ...model import Command
from ...text import format_duration, format_size, safe_text, signal_name
from ..source import IndexSnapshot, command_label, output_bytes


def _bytes(n: int) -> str:
    return format_size(n, compact=True)


def _signals(cmd: Command) -> str:
    return ",".join(signal_name(s) for s in cmd.signals)


def _exit_text(cmd: Command) -> Text:
    if cmd.exit_code is None:
        # No end record: still running, or the recording stops first.
        return Text("none", style="bold black on yellow")
    if cmd.exit_code != 0:
        return Text(str(cmd.exit_code), style="bold white on red")
    return Text("0", style="green")


@dataclass(frozen=True, slots=True)
class Column:
    """A column of the commands list: key, title, width (0: takes the rest), how it sorts."""

    key: str
    title: str
    width: int
    sort_key: Callable[[Command], Any]
    cell: Callable[[Command], Text]
    right: bool = False
    min_screen: int = 0  # shown only when the list is at least this wide


COLUMNS: tuple[Column, ...] = (
    Column("seq", "seq", 5, lambda c: c.seq, lambda c: Text(str(c.seq), style="bold"), True),
    Column("exit", "exit", 5, lambda c: c.exit_code, _exit_text, True),
    Column(
        "duration",
        "time",
        8,
        lambda c: c.duration,
        lambda c: Text(format_duration(c.duration) if c.duration is not None else "…"),
        True,
    ),
    Column("output", "out", 8, output_bytes, lambda c: Text(_bytes(output_bytes(c))), True),
    Column(
        "signals",
        "sig",
        7,
        _signals,
        lambda c: Text(_signals(c), style="bold magenta"),
        min_screen=70,
    ),
    Column(
        "errors",
        "err",
        4,
        lambda c: len(c.errors),
        lambda c: Text(str(len(c.errors)), style="bold red") if c.errors else Text("0", "dim"),
        True,
        min_screen=60,
    ),
    Column("cwd", "cwd", 18, lambda c: c.cwd, lambda c: Text(safe_text(c.cwd)), min_screen=90),
    Column("argv", "command", 0, command_label, lambda c: Text(safe_text(command_label(c)))),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)


def layout(width: int) -> list[tuple[Column, int, int]]:
    """The columns shown at ``width`` cells: (column, x, cell width); the last takes the rest."""
    shown = [c for c in COLUMNS if width >= c.min_screen]
    fixed = sum(c.width + 1 for c in shown if c.width)
    out = []
    x = 0
    for c in shown:
        w = c.width if c.width else max(width - fixed, 8)
        out.append((c, x, w))
        x += w + 1
    return out


def _row_text(cmd: Command) -> str:
    """What the text filter matches: the row as shown."""
    exit_code = "none" if cmd.exit_code is None else str(cmd.exit_code)
    return f"{cmd.seq} {exit_code} {_signals(cmd)} {cmd.cwd} {command_label(cmd)}".lower()


def _sort_value(column: Column, cmd: Command) -> tuple[bool, Any]:
    value = column.sort_key(cmd)
    return (value is None, value if value is not None else 0)


class CommandsHeader(Widget):
    """Column titles with the sort column marked; a click on a title sorts by it."""

    DEFAULT_CSS = """
    CommandsHeader { height: 1; background: $boost; text-style: bold; }
    """

    def __init__(self, commands: CommandList, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.commands = commands

    def render(self) -> Text:
        """The titles, aligned like the cells below."""
        line = Text(no_wrap=True, overflow="crop")
        for column, x, w in layout(self.size.width):
            title = column.title
            if column.key == self.commands.sort_column:
                title += "▼" if self.commands.sort_reverse else "▲"
            line.append(" " * (x - len(line.plain)))
            line.append(title.rjust(w) if column.right else title.ljust(w))
        return line

    def on_click(self, event: events.Click) -> None:
        """Sort by the clicked column (again: reverse the order)."""
        for column, x, w in layout(self.size.width):
            if x <= event.x < x + w + 1:
                self.commands.sort_by(column.key)
                break


class CommandList(ScrollView, can_focus=True):
    """The session's commands, one per row; the cursor row is the selected command."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "first", "First command", show=False),
        Binding("end,G", "last", "Last command", show=False),
        Binding("s", "next_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
    ]

    DEFAULT_CSS = """
    CommandList { height: 1fr; }
    CommandList > .commands--cursor { background: $accent 40%; }
    CommandList:focus > .commands--cursor { background: $accent; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"commands--cursor"}

    class Highlighted(Message):
        """The selected command changed (``seq`` None: no command shown)."""

        def __init__(self, seq: int | None) -> None:
            super().__init__()
            self.seq = seq

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._snap: IndexSnapshot | None = None
        self.rows: list[int] = []  # seqs shown, in order
        self.cursor = 0
        self.selected: int | None = None
        self.sort_column = "seq"
        self.sort_reverse = False
        self.text_filter = ""
        self.where_seqs: frozenset[int] | None = None
        # The snapshot's ``done`` when rows were first painted, and when (perf_counter):
        # the event-order test and benchmarks/view.py read them; never shown.
        self.first_painted_done: bool | None = None
        self.first_painted_at: float | None = None

    # --- data --------------------------------------------------------------------

    def set_snapshot(self, snap: IndexSnapshot) -> None:
        """Show the commands of ``snap``, keeping the selected command and the scroll position."""
        self._snap = snap
        self._rebuild()

    def set_filter(self, text: str) -> None:
        """Keep the rows whose text contains ``text`` (case-insensitive; "" shows all)."""
        self.text_filter = text.lower()
        self._rebuild()

    def set_where(self, seqs: frozenset[int] | None) -> None:
        """Keep only these commands (an expression's result; None: no expression)."""
        self.where_seqs = seqs
        self._rebuild()

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        """Sort by column ``key``; sorting by the current column again reverses the order."""
        if reverse is None:
            reverse = not self.sort_reverse if key == self.sort_column else False
        self.sort_column = key
        self.sort_reverse = reverse
        self._rebuild()

    def _rebuild(self) -> None:
        snap = self._snap
        if snap is None:
            return
        cmds = list(snap.commands.values())
        if self.where_seqs is not None:
            cmds = [c for c in cmds if c.seq in self.where_seqs]
        if self.text_filter:
            cmds = [c for c in cmds if self.text_filter in _row_text(c)]
        column = next(c for c in COLUMNS if c.key == self.sort_column)
        if column.key != "seq":
            cmds.sort(key=lambda c: _sort_value(column, c), reverse=self.sort_reverse)
        elif self.sort_reverse:
            cmds.reverse()
        self.rows = [c.seq for c in cmds]
        self.virtual_size = Size(self.size.width, len(self.rows))
        if self.selected is not None and self.selected in snap.commands:
            try:
                self.cursor = self.rows.index(self.selected)
            except ValueError:
                self.cursor = min(self.cursor, max(len(self.rows) - 1, 0))
        self._settle()
        self.refresh()
        header = self.parent.query(CommandsHeader) if self.parent is not None else None
        if header:
            header.first().refresh()

    def _settle(self) -> None:
        """Make the cursor row the selection, say so if it changed, and keep it in view."""
        seq = self.rows[self.cursor] if self.rows else None
        if seq != self.selected:
            self.selected = seq
            self.post_message(self.Highlighted(seq))
        if self.rows:
            self.scroll_to_region(
                Region(0, self.cursor, 1, 1), animate=False, force=True, immediate=True
            )

    def select(self, seq: int) -> bool:
        """Move the cursor to command ``seq`` (False when it is filtered out)."""
        if seq not in self.rows:
            return False
        self.cursor = self.rows.index(seq)
        self._settle()
        self.refresh()
        return True

    # --- keys and mouse ----------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        """Move the selection up or down."""
        if self.rows:
            self.cursor = max(0, min(len(self.rows) - 1, self.cursor + delta))
            self._settle()
            self.refresh()

    def action_page(self, direction: int) -> None:
        """Move the selection a page."""
        self.action_cursor(direction * max(self.size.height - 1, 1))

    def action_first(self) -> None:
        """Select the first row."""
        self.action_cursor(-len(self.rows))

    def action_last(self) -> None:
        """Select the last row."""
        self.action_cursor(len(self.rows))

    def action_next_sort(self) -> None:
        """Sort by the next column."""
        keys = COLUMN_KEYS
        self.sort_by(keys[(keys.index(self.sort_column) + 1) % len(keys)], reverse=False)

    def action_reverse_sort(self) -> None:
        """Reverse the sort order."""
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_click(self, event: events.Click) -> None:
        """A click selects the row under the pointer."""
        row = int(self.scroll_y) + event.y
        if 0 <= row < len(self.rows):
            self.cursor = row
            self._settle()
            self.refresh()

    def on_resize(self) -> None:
        """Keep the virtual width in step with the widget."""
        self.virtual_size = Size(self.size.width, len(self.rows))

    # --- drawing -----------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """One command row (only visible rows are ever rendered)."""
        row = int(self.scroll_y) + y
        width = self.size.width
        if self._snap is None or row >= len(self.rows):
            if self._snap is not None and not self.rows and y == 0:
                if self._snap.commands:
                    note = "no command matches the filter (Esc clears it)"
                else:
                    note = "indexing…" if not self._snap.done else "no commands"
                return Strip([*Text(note, style="dim").render(self.app.console)]).crop_extend(
                    0, width, None
                )
            return Strip.blank(width, self.rich_style)
        cmd = self._snap.commands.get(self.rows[row])
        if cmd is None:
            return Strip.blank(width, self.rich_style)
        if self.first_painted_done is None:
            self.first_painted_done = self._snap.done
            self.first_painted_at = time.perf_counter()
        line = Text(no_wrap=True, overflow="crop", end="")
        for column, x, w in layout(width):
            line.append(" " * (x - len(line.plain)))
            cell = column.cell(cmd)
            cell.truncate(w, overflow="ellipsis")
            pad = " " * (w - cell.cell_len)
            if column.right:
                line.append(pad)
                line.append_text(cell)
            else:
                line.append_text(cell)
                line.append(pad)
        style: Style | None = self.rich_style
        if row == self.cursor:
            style = self.get_component_rich_style("commands--cursor")
        segments = list(line.render(self.app.console))
        strip = Strip(segments).crop_extend(0, width, None)
        return strip.apply_style(style) if style is not None else strip
