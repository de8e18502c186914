"""The session timeline: ``reclab timeline``'s Gantt chart, drawn in the TUI and selectable.

One row per command (:func:`reclab.timeline.command_spans`, drawn by
:func:`reclab.timeline.render_gantt` at the widget's width) on the session's
time axis; the selected command's row is highlighted, and moving through
the rows (keys or mouse) selects commands.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...timeline import Span, command_spans, render_gantt
from ..source import IndexSnapshot, commands_view
from .session_bar import session_end


class Timeline(ScrollView, can_focus=True):
    """Commands as bars on a shared time axis; the cursor bar is the selected command."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Previous bar", show=False),
        Binding("down,j", "move(1)", "Next bar", show=False),
        Binding("home", "move(-1000000000)", "First bar", show=False),
        Binding("end", "move(1000000000)", "Last bar", show=False),
    ]

    DEFAULT_CSS = """
    Timeline { height: 1fr; }
    Timeline > .timeline--cursor { background: $accent 40%; }
    Timeline:focus > .timeline--cursor { background: $accent; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"timeline--cursor"}

    class Selected(Message):
        """The user moved to the bar of command ``seq``."""

        def __init__(self, seq: int) -> None:
            super().__init__()
            self.seq = seq

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._snap: IndexSnapshot | None = None
        self.spans: list[Span] = []
        self.selected: int | None = None
        self._lines: list[Text] = []
        self._drawn_width = -1

    def set_snapshot(self, snap: IndexSnapshot) -> None:
        """Draw the commands of ``snap`` (redrawn lazily at the next paint)."""
        self._snap = snap
        self.spans = command_spans(commands_view(snap))
        self._drawn_width = -1
        self.virtual_size = Size(self.size.width, len(self.spans) + 2)
        self.refresh()

    def show_selected(self, seq: int | None) -> None:
        """Highlight command ``seq``'s bar (the selection made elsewhere) and scroll to it."""
        self.selected = seq
        row = self._row_of(seq)
        if row is not None:
            self.scroll_to_region(Region(0, row, 1, 1), animate=False, immediate=True)
        self.refresh()

    def _row_of(self, seq: int | None) -> int | None:
        for row, span in enumerate(self.spans):
            if span.seq == seq:
                return row
        return None

    def _draw(self, width: int) -> None:
        snap = self._snap
        if snap is None:
            self._lines = []
            return
        origin = snap.header.start_time if snap.header is not None else None
        self._lines = render_gantt(self.spans, width, origin=origin, until=session_end(snap))
        self._drawn_width = width

    # --- keys and mouse ----------------------------------------------------------

    def _choose(self, row: int) -> None:
        if not self.spans:
            return
        row = max(0, min(len(self.spans) - 1, row))
        seq = self.spans[row].seq
        self.show_selected(seq)
        self.post_message(self.Selected(seq))

    def action_move(self, delta: int) -> None:
        """Select the previous or next bar."""
        row = self._row_of(self.selected)
        self._choose((row if row is not None else -1 if delta > 0 else 0) + delta)

    def on_click(self, event: events.Click) -> None:
        """A click on a bar selects its command."""
        row = int(self.scroll_y) + event.y
        if row < len(self.spans):
            self._choose(row)

    # --- drawing -----------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """One bar (or an axis line)."""
        width = self.size.width
        if width != self._drawn_width:
            self._draw(width)
        row = int(self.scroll_y) + y
        if row >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        segments = list(self._lines[row].render(self.app.console))
        strip = Strip(segments).crop_extend(0, width, None)
        if row < len(self.spans) and self.spans[row].seq == self.selected:
            return strip.apply_style(self.get_component_rich_style("timeline--cursor"))
        return strip.apply_style(self.rich_style)
