"""The File ops tab: a command's file-op RPCs, request paired with response.

The pairing is :func:`reclab.tables.iter_fileops_batches` (by seq and
request id, responses in any order), run over a view of the recording that
holds only this command's records (:class:`CommandRecords`), so the tab
reads this command's file-op frames and nothing else. Failed requests are
red, slow ones (at least :data:`SLOW_SECONDS`) yellow; a click on a column
header, or ``o``, sorts.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from reclab.tables import iter_fileops_batches
from reclab.timeline import safe_text
from reclab.tui.widgets.frames import report_errors

if TYPE_CHECKING:
    from reclab.model import Command, Recording
    from reclab.tui.widgets.command_detail import CommandSource

__all__ = ["MAX_ROWS", "SLOW_SECONDS", "CommandRecords", "FileOpsTable"]

SLOW_SECONDS = 0.1
MAX_ROWS = 10_000  # DataTable measures every cell: beyond this the tab says how many it left out


class CommandRecords:
    """A read-only view of a recording restricted to one command's frame records.

    It has the members :mod:`reclab.tables` reads (``kinds``,
    ``record_count``, ``indexed_bytes``, ``raw_frames``, ``commands``), with
    the kind of every record outside the command cleared, so the tables'
    builders run over this command's frames alone.
    """

    def __init__(self, rec: Recording, cmd: Command) -> None:
        import numpy as np

        self._rec = rec
        count = min(cmd.frame_count, len(cmd.record_indexes))
        self.record_count = rec.record_count
        self.indexed_bytes = rec.indexed_bytes
        self.commands = {cmd.seq: cmd}
        # Copies (slices): a view would stop a concurrent index() from growing the arrays.
        taken = cmd.record_indexes[:count]
        mine = np.frombuffer(taken, dtype=taken.typecode).astype(np.int64)
        kinds = np.zeros(self.record_count, dtype=np.uint8)
        all_kinds = np.frombuffer(rec.kinds[: self.record_count], dtype=np.uint8)
        kinds[mine] = all_kinds[mine]
        self.kinds = array("B", kinds.tobytes())

    def raw_frames(self, indexes: Iterable[int]) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """The recording's own :meth:`~reclab.model.Recording.raw_frames`."""
        return self._rec.raw_frames(indexes)

    def as_recording(self) -> Recording:
        """This view typed as what the tables' builders take (it has what they read)."""
        return cast("Recording", self)


_COLUMNS = ("id", "op", "path", "handle", "offset", "size", "latency", "errno", "n")


class FileOpsTable(DataTable[Any]):
    """File-op request/response pairs of one command, sortable by any column."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "sort_next", "Sort"),
    ]
    DEFAULT_CSS = "FileOpsTable { height: 1fr; }"

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.source = source
        self.seq: int | None = None
        self.rows_data: list[dict[str, Any]] = []
        self.total = 0  # pairs in the command (rows shown are at most MAX_ROWS)
        self.sort_column: str | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        for name in _COLUMNS:
            self.add_column(name, key=name)

    def show_command(self, seq: int | None) -> None:
        """Show the file ops of command ``seq`` (None: empty); they are paired in a worker."""
        self.seq = seq
        self.rows_data = []
        self.total = 0
        self._fill()
        cmd = self.source.command(seq) if seq is not None else None
        if cmd is not None and cmd.file_op_count:
            self.run_worker(
                lambda: report_errors(self, "the file ops", lambda: self._read(cmd)),
                thread=True,
                exclusive=True,
                group="fileops",
                exit_on_error=False,
            )

    def _read(self, cmd: Command) -> None:
        rows: list[dict[str, Any]] = []
        total = 0
        limit = MAX_ROWS
        view = CommandRecords(self.source.rec, cmd).as_recording()
        for batch in iter_fileops_batches(view):
            total += len(batch)
            room = limit - len(rows)
            if room > 0:
                rows.extend(cast("list[dict[str, Any]]", batch.head(room).to_dict("records")))
        self.app.call_from_thread(self._loaded, cmd.seq, rows, total)

    def _loaded(self, seq: int, rows: list[dict[str, Any]], total: int) -> None:
        if seq != self.seq:
            return  # another command was selected meanwhile
        self.rows_data, self.total = rows, total
        if self.sort_column is not None:
            self.sort_by(self.sort_column, self.sort_reverse)
        else:
            self._fill()

    def sort_by(self, column: str, reverse: bool = False) -> None:
        """Sort the rows by ``column`` (one of the table's columns); missing values last."""
        if column not in _COLUMNS:
            raise ValueError(f"no column {column!r}: choose from {', '.join(_COLUMNS)}")
        self.sort_column, self.sort_reverse = column, reverse
        key = {"errno": "errno_name"}.get(column, column)

        def sort_key(row: dict[str, Any]) -> tuple[int, Any]:
            value = _plain(row.get(key))
            return (
                (1, "")
                if value is None
                else (0, str(value) if key in ("op", "path", "errno_name") else value)
            )

        present = [r for r in self.rows_data if _plain(r.get(key)) is not None]
        missing = [r for r in self.rows_data if _plain(r.get(key)) is None]
        present.sort(key=sort_key, reverse=reverse)
        self.rows_data = present + missing
        self._fill()

    def action_sort_next(self) -> None:
        """Sort by the next column (``o``); the same column again reverses the order."""
        if self.sort_column is None:
            self.sort_by(_COLUMNS[0])
        elif not self.sort_reverse:
            self.sort_by(self.sort_column, reverse=True)
        else:
            at = _COLUMNS.index(self.sort_column)
            self.sort_by(_COLUMNS[(at + 1) % len(_COLUMNS)])

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        reverse = self.sort_column == column and not self.sort_reverse
        self.sort_by(column, reverse)

    def _fill(self) -> None:
        self.clear()
        for row in self.rows_data:
            self.add_row(*_cells(row))
        left_out = self.total - len(self.rows_data)
        if left_out > 0:
            # A last row says it: a table of this size would freeze the screen.
            note = f"... {left_out} more file ops not shown (the first {len(self.rows_data)} are)"
            self.add_row(*[Text("")] * 2, Text(note, "italic yellow"), *[Text("")] * 6, key="more")


def _plain(value: Any) -> Any:
    """A pandas cell as a plain Python value, None for NA/NaN/NaT."""
    if value is None:
        return None
    try:
        if value != value:  # NaN, NaT
            return None
    except (TypeError, ValueError):  # pd.NA refuses comparison
        return None
    return value


def _cells(row: dict[str, Any]) -> list[Text]:
    """The table cells of one pair: failures red, slow ones yellow, unanswered dim."""
    errno = _plain(row.get("errno"))
    latency = _plain(row.get("latency"))
    failed = errno is not None and errno != 0
    slow = latency is not None and latency >= SLOW_SECONDS
    unanswered = _plain(row.get("response_index")) is None
    style = "red" if failed else "yellow" if slow else "dim" if unanswered else ""

    def show(value: Any) -> str:
        value = _plain(value)
        return "" if value is None else str(value)

    op = show(row.get("op"))
    path = show(row.get("path"))
    if show(row.get("new_path")):
        path += " → " + show(row.get("new_path"))
    if latency is None:
        latency_text = "no answer" if unanswered else ""
    else:
        latency_text = f"{latency * 1000:.3f} ms" if math.isfinite(latency) else ""
    errno_text = show(row.get("errno_name")) if failed else ("" if unanswered else "ok")
    values = [
        show(row.get("id")),
        op,
        safe_text(path, 200),
        show(row.get("handle")),
        show(row.get("offset")),
        show(row.get("size")),
        latency_text,
        errno_text,
        show(row.get("n")),
    ]
    return [Text(v, style=style) for v in values]
