"""Virtual lists: rows drawn only when on screen (Textual's Line API).

:class:`VirtualList` is a ``ScrollView`` whose virtual height is the row
count; :meth:`VirtualList.render_line` draws just the visible rows (cached as
``Strip``\\ s), so millions of rows cost nothing until shown (see
tui-notes.md: ``DataTable`` measures every cell). It owns the cursor, the
keys that move it, clicks and an optional fixed header line.

:class:`VirtualTable` adds columns and sorting: the rows' order is a NumPy
permutation and every column has a precomputed rank array
(:func:`sort_ranks`), so sorting 200k rows is one ``argsort`` of integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Column", "VirtualList", "VirtualTable", "sort_ranks", "text_width"]


class VirtualList(ScrollView, can_focus=True):
    """Rows ``0..count-1`` drawn on demand, a cursor, and ``HEADER_LINES`` fixed lines on top.

    Subclasses draw a row in :meth:`render_row` (and the header in
    :meth:`render_header`); Enter or a double click calls :meth:`choose`.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"virtual-list--cursor"}
    DEFAULT_CSS = """
    VirtualList { height: 1fr; }
    VirtualList > .virtual-list--cursor { background: $accent 50%; }
    VirtualList:blur > .virtual-list--cursor { background: $accent 20%; }
    """
    HEADER_LINES: ClassVar[int] = 0

    cursor: reactive[int] = reactive(0, always_update=True)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._count = 0
        self._strips: LRUCache[tuple[int, bool], Strip] = LRUCache(1024)
        self.note = ""  # shown dim in place of the rows while there are none (e.g. loading)

    @property
    def count(self) -> int:
        """How many rows the list shows."""
        return self._count

    def set_count(self, count: int, width: int, *, keep_place: bool) -> None:
        """Show ``count`` rows ``width`` cells wide; the cursor stays (keep_place) or goes to 0.

        With ``keep_place`` the rows already drawn are kept: only rows were added.
        """
        self._count = count
        self.virtual_size = Size(width, count + self.HEADER_LINES)
        if keep_place:
            # More rows of the same list (follow, indexing): the rows drawn stay right.
            self.cursor = min(self.cursor, max(count - 1, 0))
        else:
            self._strips.clear()
            self.scroll_to(0, 0, animate=False, immediate=True)
            self.cursor = 0
        self.refresh()

    def redraw(self) -> None:
        """Draw every row again (what they show changed)."""
        self._strips.clear()
        self.refresh()

    # --- drawing -----------------------------------------------------------------------

    def render_row(self, row: int, selected: bool) -> Strip:
        """The line of row ``row`` (``selected``: under the cursor), uncropped."""
        raise NotImplementedError

    def render_header(self) -> Strip:
        """The fixed lines on top (only with ``HEADER_LINES``), uncropped."""
        return Strip([])

    def line_strip(self, line: Text, selected: bool, style: Style | None = None) -> Strip:
        """``line`` as a Strip over the widget's style (plus ``style``, and the cursor's)."""
        base = self.rich_style
        if style is not None:
            base = base + style
        if selected:
            base = base + self.get_component_rich_style("virtual-list--cursor")
        return Strip(
            [
                Segment(s.text, base + s.style if s.style else base)
                for s in line.render(self.app.console)
            ]
        )

    def render_line(self, y: int) -> Strip:
        """Draw visible line ``y``: a header line, or the row at ``scroll_y`` plus ``y``."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        if y < self.HEADER_LINES:
            return self.render_header().crop_extend(scroll_x, scroll_x + width, self.rich_style)
        row = scroll_y + y - self.HEADER_LINES
        if row == 0 and self._count == 0 and self.note:
            line = self.line_strip(Text(f" {self.note}", "dim italic"), False)
            return line.crop_extend(0, width, self.rich_style)
        if row >= self._count:
            return Strip.blank(width, self.rich_style)
        selected = row == self.cursor
        key = (row, selected)
        strip = self._strips.get(key)
        if strip is None:
            strip = self.render_row(row, selected)
            self._strips.set(key, strip)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    # --- moving ------------------------------------------------------------------------

    @property
    def page_rows(self) -> int:
        """How many rows fit on screen."""
        return max(self.scrollable_content_region.height - self.HEADER_LINES, 1)

    def watch_cursor(self, old: int, new: int) -> None:
        if self._count == 0:
            return
        if old != new:
            self._strips.discard((old, True))
        height = self.page_rows
        if new < self.scroll_y:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= self.scroll_y + height:
            self.scroll_to(y=new - height + 1, animate=False, immediate=True)
        self.refresh()

    def _move_to(self, row: int) -> None:
        if self._count:
            self.cursor = max(0, min(row, self._count - 1))

    def action_cursor(self, delta: int) -> None:
        """Move the cursor ``delta`` rows."""
        self._move_to(self.cursor + delta)

    def action_page(self, pages: int) -> None:
        """Move the cursor a screenful up or down."""
        self._move_to(self.cursor + pages * max(self.page_rows - 1, 1))

    def action_first(self) -> None:
        """Cursor to the first row."""
        self._move_to(0)

    def action_last(self) -> None:
        """Cursor to the last row."""
        self._move_to(self._count - 1)

    def action_select(self) -> None:
        """Enter: choose the row under the cursor."""
        if self._count:
            self.choose(self.cursor)

    def choose(self, row: int) -> None:
        """Row ``row`` was chosen (Enter, double click); nothing by default."""

    def header_clicked(self, x: int) -> None:
        """A click on the header at virtual column ``x``; nothing by default."""

    def on_click(self, event: events.Click) -> None:
        if event.y < self.HEADER_LINES:
            self.header_clicked(int(self.scroll_x) + event.x)
            return
        row = int(self.scroll_y) + event.y - self.HEADER_LINES
        if 0 <= row < self._count:
            self.cursor = row
            if event.chain == 2:
                self.choose(row)


# --- tables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A table column: its name (the header), width in cells and alignment."""

    name: str
    width: int
    right: bool = False


def sort_ranks(values: Any) -> np.ndarray:
    """Each value's rank in sorted order (equal values share one), -1 for missing ones.

    ``values`` is a pandas Series; categories and text sort as text. Run it
    where the data is built (a worker): sorting by the ranks is then a cheap
    ``argsort`` of integers.
    """
    import numpy as np
    import pandas as pd

    series = pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(series.cat.categories.dtype)
    codes, _uniques = pd.factorize(series, sort=True)
    return np.asarray(codes, dtype=np.int64)


def text_width(values: Any) -> int:
    """The longest of ``values`` (a pandas Series) as text, missing ones left out."""
    shown = values.dropna()
    return int(shown.astype(str).str.len().max()) if len(shown) else 0


class VirtualTable(VirtualList):
    """A virtual list of rows split in :class:`Column`\\ s under a header; sortable.

    Subclasses give the cells of an item (:meth:`cells`) and call
    :meth:`set_table` with the columns, the item count and a rank array per
    column (:func:`sort_ranks`). ``o`` or a click on a header sorts (again:
    reversed); missing values sort last either way. The cursor stays on its
    item when the order changes.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("o", "sort_next", "Sort")]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"virtual-table--header", "virtual-table--zebra"}
    DEFAULT_CSS = """
    VirtualTable > .virtual-table--header { text-style: bold; color: $text-accent; }
    VirtualTable > .virtual-table--zebra { background: $surface-lighten-1 40%; }
    """
    HEADER_LINES = 1

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns: list[Column] = []
        self.sort_column: str | None = None
        self.sort_reverse = False
        self._ranks: dict[str, Any] = {}
        self._order: Any = None  # row -> item (NumPy); None: recorded order

    def set_table(
        self, columns: list[Column], count: int, ranks: dict[str, Any], *, keep_place: bool = False
    ) -> None:
        """Show ``count`` items in ``columns``, sorted as before if a sort was chosen."""
        self.columns = columns
        self._ranks = ranks
        self._order = None
        width = sum(c.width + 1 for c in columns) + 1
        self._strips.clear()  # new data
        self.set_count(count, width, keep_place=keep_place)
        if self.sort_column in ranks:
            self.sort_by(self.sort_column, self.sort_reverse)

    @property
    def row_count(self) -> int:
        """How many rows the table shows."""
        return self._count

    def item(self, row: int) -> int:
        """The item shown at row ``row`` (its index in recorded order)."""
        if not 0 <= row < self._count:
            raise IndexError(f"row {row} out of range (0..{self._count - 1})")
        return row if self._order is None else int(self._order[row])

    def cells(self, item: int) -> list[Text]:
        """The cells of item ``item``, one per column."""
        raise NotImplementedError

    def get_row_at(self, row: int) -> list[Text]:
        """The cells shown at row ``row``."""
        return self.cells(self.item(row))

    # --- sorting -----------------------------------------------------------------------

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort the rows by ``column``; missing values last; the cursor keeps its item."""
        import numpy as np

        names = [c.name for c in self.columns]
        if column not in self._ranks and column not in names:
            raise ValueError(f"no column {column!r}: choose from {', '.join(names)}")
        self.sort_column, self.sort_reverse = column, reverse
        ranks = self._ranks.get(column)
        if ranks is None or len(ranks) != self._count:
            return  # data not loaded yet: sorted when it is
        held = self.item(self.cursor) if self._count else None
        key = -ranks if reverse else ranks.copy()
        key[ranks < 0] = np.iinfo(np.int64).max  # missing: last
        self._order = np.argsort(key, kind="stable")
        if held is not None:
            self.cursor = int(np.flatnonzero(self._order == held)[0])
        self.redraw()

    def action_sort_next(self) -> None:
        """Sort by the next column (``o``); the same column again reverses the order."""
        names = [c.name for c in self.columns]
        if not names:
            return
        if self.sort_column not in names:
            self.sort_by(names[0])
        elif not self.sort_reverse:
            self.sort_by(self.sort_column, reverse=True)
        else:
            self.sort_by(names[(names.index(self.sort_column) + 1) % len(names)])

    def column_at(self, x: int) -> str | None:
        """The column at virtual column ``x``, None outside them."""
        left = 1
        for column in self.columns:
            if left <= x < left + column.width + 1:
                return column.name
            left += column.width + 1
        return None

    def header_clicked(self, x: int) -> None:
        column = self.column_at(x)
        if column is not None:
            reverse = self.sort_column == column and not self.sort_reverse
            self.sort_by(column, reverse)

    # --- drawing -----------------------------------------------------------------------

    def _line(self, texts: list[Text]) -> Text:
        line = Text(" ", no_wrap=True, end="")
        for column, text in zip(self.columns, texts, strict=False):
            cell = text.copy()
            cell.truncate(column.width, overflow="ellipsis")
            cell.align("right" if column.right else "left", column.width)
            line.append_text(cell)
            line.append(" ")
        return line

    def render_header(self) -> Strip:
        names = []
        for column in self.columns:
            mark = ""
            if column.name == self.sort_column:
                mark = "▼" if self.sort_reverse else "▲"
            names.append(Text(column.name + mark))
        style = self.get_component_rich_style("virtual-table--header")
        return self.line_strip(self._line(names), False, style)

    def render_row(self, row: int, selected: bool) -> Strip:
        zebra = self.get_component_rich_style("virtual-table--zebra") if row % 2 else None
        return self.line_strip(self._line(self.get_row_at(row)), selected, zebra)
