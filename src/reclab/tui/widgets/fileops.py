"""The File ops tab: a command's file-op RPCs, request paired with response.

The pairing is :func:`reclab.tables.iter_fileops_batches` (by seq and
request id, responses in any order), run over a view of the recording that
holds only this command's records (:class:`CommandRecords`), so the tab
reads this command's file-op frames and nothing else. Failed requests are
red, slow ones (at least :data:`SLOW_SECONDS`) yellow; a click on a column
header, or ``o``, sorts. It is a virtual table (:mod:`reclab.tui.widgets.vlist`):
a command with hundreds of thousands of file ops shows them all at once.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast

from rich.text import Text

from reclab.timeline import safe_text
from reclab.tui.widgets.frames import report_errors
from reclab.tui.widgets.vlist import Column, VirtualTable, sort_ranks, text_width

if TYPE_CHECKING:
    import pandas as pd

    from reclab.model import Command, Recording
    from reclab.tui.widgets.command_detail import CommandSource

__all__ = ["SLOW_SECONDS", "CommandRecords", "CommandTable", "FileOpsTable", "Table", "concat"]

SLOW_SECONDS = 0.1


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
_NUMERIC = {"id", "handle", "offset", "size", "latency", "n"}
_SORT_KEY = {"errno": "errno_name"}  # what a column sorts by when not its own field
_FIELDS = (  # the fields the cells are made of
    "id", "op", "path", "new_path", "handle", "offset", "size", "latency",
    "errno", "errno_name", "n", "response_index",
)  # fmt: skip
_PATH_WIDTH = 80  # cells; a longer path is cut with an ellipsis


class CommandTable(VirtualTable):
    """A table of one command's rows (file ops, logs), built in a worker when shown.

    Subclasses say whether a command has rows (:meth:`has_rows`) and build the
    table's data, columns and sort ranks off the UI thread (:meth:`build`).
    """

    WHAT: ClassVar[str] = "the rows"  # for the error line when the recording fails us

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.seq: int | None = None
        self.total = 0  # rows in the command
        self._data: dict[str, Any] = {}  # field -> values, by item

    def has_rows(self, cmd: Command) -> bool:
        """True when command ``cmd`` has rows to show."""
        raise NotImplementedError

    def build(self, view: Recording, cmd: Command) -> Table | None:
        """The table of ``cmd`` from its records (``view``); None when empty. Runs in a worker."""
        raise NotImplementedError

    def show_command(self, seq: int | None) -> None:
        """Show the rows of command ``seq`` (None: empty); they are read in a worker."""
        self.seq = seq
        self.total = 0
        self._data = {}
        self.note = ""
        self.set_table([], 0, {})
        cmd = self.source.command(seq) if seq is not None else None
        if cmd is not None and self.has_rows(cmd):
            self.note = f"reading {self.WHAT}…"  # 200k file ops take seconds: say they come
            self.run_worker(
                lambda: report_errors(self, self.WHAT, lambda: self._read(cmd)),
                thread=True,
                exclusive=True,
                group=f"table-{self.id}",
                exit_on_error=False,
            )

    def _read(self, cmd: Command) -> None:
        table = None
        try:
            table = self.build(CommandRecords(self.source.rec, cmd).as_recording(), cmd)
        finally:  # also when the recording fails us: the tab stops saying it is loading
            self.app.call_from_thread(self._loaded, cmd.seq, table or Table({}, [], 0, {}))

    def _loaded(self, seq: int, table: Table) -> None:
        if seq != self.seq:
            return  # another command was selected meanwhile
        self.note = ""
        self._data, self.total = table.data, table.rows
        self.set_table(table.columns, table.rows, table.ranks)


class Table(NamedTuple):
    """What a :class:`CommandTable` shows: values by field, columns, rows, sort ranks."""

    data: dict[str, Any]
    columns: list[Column]
    rows: int
    ranks: dict[str, Any]


def concat(batches: Iterable[pd.DataFrame]) -> pd.DataFrame | None:
    """The batches of a :mod:`reclab.tables` iterator as one frame; None when there are none."""
    import pandas as pd

    frames = list(batches)
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class FileOpsTable(CommandTable):
    """File-op request/response pairs of one command, sortable by any column.

    Every pair is shown (a virtual list: only the rows on screen are drawn);
    the pairs, column widths and sort ranks are prepared in a worker.
    """

    WHAT = "the file ops"

    def has_rows(self, cmd: Command) -> bool:
        return bool(cmd.file_op_count)

    def build(self, view: Recording, cmd: Command) -> Table | None:
        from reclab.tables import iter_fileops_batches  # pandas: only once the tab is shown

        frame = concat(iter_fileops_batches(view))
        if frame is None:
            return None
        data = {name: frame[name].array for name in _FIELDS}
        ranks = {c: sort_ranks(frame[_SORT_KEY.get(c, c)]) for c in _COLUMNS}
        columns = [Column(c, _width(frame, c), c in _NUMERIC) for c in _COLUMNS]
        return Table(data, columns, len(frame), ranks)

    def value(self, row: int, field: str) -> Any:
        """The raw value of ``field`` at row ``row`` (None when missing)."""
        return _plain(self._data[field][self.item(row)])

    def cells(self, item: int) -> list[Text]:
        return _cells({name: values[item] for name, values in self._data.items()})


def _width(frame: Any, column: str) -> int:
    """The cells column ``column`` needs for every row of ``frame`` (computed at once)."""
    if column == "latency":
        top = frame["latency"].max()
        text = "no answer"
        if _plain(top) is not None and math.isfinite(top):
            text = f"{top * 1000:.3f} ms"
        need = len(text) if frame["latency"].notna().all() else max(len(text), 9)
    elif column == "errno":
        need = max(text_width(frame["errno_name"]), 2)
    elif column == "path":
        paths = frame["path"].fillna("").astype(str).str.len()
        renamed = frame["new_path"].fillna("").astype(str).str.len()
        both = paths + (renamed + 3).where(renamed > 0, 0)
        need = min(int(both.max()), _PATH_WIDTH) if len(both) else 0
    else:
        need = text_width(frame[column])
    return max(need, len(column) + 1)  # room for the name and the sort arrow


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
