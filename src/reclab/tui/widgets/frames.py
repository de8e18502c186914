"""The Frames tab: every frame of a command as a virtual list, and its activity strip.

A command may have millions of frames, so :class:`FrameList` is a Line-API
``ScrollView`` (see tui-notes.md): its virtual height is the frame count and
only the rows on screen are decoded, one record each, from the command's
``record_indexes``. Decoded rows and rendered lines sit in small LRU caches,
so scrolling back and forth decodes nothing twice. :attr:`FrameList.decodes`
counts decodes (the tests prove a 1M-frame list paints without decoding all).

:class:`ActivityStrip` draws bytes over time per stream, binned to its
width; the bins come from the index's bulk frame arrays in a worker thread.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.worker import Worker, get_current_worker

from agentproto import RemoteProtocolError
from reclab.errors import ReclabError
from reclab.model import Command, RecordingError
from reclab.timeline import FrameRow, frame_row, render_frames
from reclab.tui.widgets.vlist import VirtualList

if TYPE_CHECKING:
    from reclab.tui.widgets.command_detail import CommandSource

__all__ = ["FRAMES_HEADER", "ActivityStrip", "FrameList", "command_start_ns", "report_errors"]

# Column titles over FrameList, aligned with reclab.timeline.render_frames.
FRAMES_HEADER = f"  {'time':<11}  {'type':<9} {'st':>2} {'size':>7} preview"
PREVIEW = 160  # characters of preview decoded per row; the line is cropped to the width
_WIDTH = 2 + 12 + 2 + 10 + 3 + 8 + PREVIEW  # gutter + the columns of render_frames


def command_start_ns(cmd: Command) -> int:
    """The time a command's relative times count from: its start record, else its first frame."""
    if cmd.start_time is not None:
        return cmd.start_time
    return cmd.first_frame_time if cmd.first_frame_time is not None else 0


def report_errors(widget: Widget, what: str, work: Callable[[], None]) -> None:
    """Run a pane's worker body; a recording that cannot be read says so instead of crashing.

    The app keeps running (the workers are started with
    ``exit_on_error=False``); the user sees one line saying what failed.
    """
    try:
        work()
    except (ReclabError, RecordingError, RemoteProtocolError, OSError, ValueError) as exc:
        widget.app.call_from_thread(
            widget.notify, f"cannot read {what}: {exc}", severity="error", timeout=8
        )


class FrameList(VirtualList):
    """The frames of one command in recorded order, decoded only when shown.

    Rows: finding mark, time since the command start, direction arrow
    (→ sent to the agent, ← received), frame type, stream, size, escaped
    preview (:func:`reclab.timeline.render_frames`). Up/down/page/home/end
    move the cursor; Enter posts :class:`FrameList.Selected`.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select", "Frame detail")]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"frame-list--mark"}
    DEFAULT_CSS = """
    FrameList > .frame-list--mark { color: $error; text-style: bold; }
    """

    class Selected(Message):
        """Enter on a frame: ``record_index`` is its index in the recording."""

        def __init__(self, record_index: int) -> None:
            super().__init__()
            self.record_index = record_index

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.seq: int | None = None
        self._indexes: Sequence[int] = ()
        self._start = 0
        self._marks: dict[int, str] = {}
        self._rows: LRUCache[int, FrameRow | str] = LRUCache(4096)
        self._secrets_shown = False
        self.decodes = 0  # frame records decoded so far (for tests and curiosity)

    # --- what is shown -----------------------------------------------------------------

    def show_command(self, seq: int | None) -> None:
        """Show the frames of command ``seq`` (None: none), cursor on the first."""
        self.seq = seq
        self._rows.clear()
        self._load(keep_place=False)

    def refresh_command(self) -> None:
        """The command gained frames (a followed recording): show them, keep the cursor."""
        self._load(keep_place=True)

    def _load(self, *, keep_place: bool) -> None:
        cmd = self.source.command(self.seq) if self.seq is not None else None
        count = 0
        if cmd is None:
            self._indexes = ()
        else:
            # Only the first frame_count entries are valid (CONTRACTS.md).
            self._indexes = cmd.record_indexes
            count = min(cmd.frame_count, len(cmd.record_indexes))
            self._start = command_start_ns(cmd)
        self.set_count(count, _WIDTH, keep_place=keep_place)

    def record_index(self, row: int) -> int:
        """The recording's record index of list row ``row``."""
        if not 0 <= row < self._count:
            raise IndexError(f"row {row} out of range (0..{self._count - 1})")
        return self._indexes[row]

    def row_of(self, record_index: int) -> int | None:
        """The list row of the frame at ``record_index``, None if not in this command."""
        row = bisect_left(self._indexes, record_index, 0, self._count)
        if row < self._count and self._indexes[row] == record_index:
            return row
        return None

    def select_record(self, record_index: int) -> bool:
        """Move the cursor to the frame at ``record_index``; False if it is not shown here."""
        row = self.row_of(record_index)
        if row is None:
            return False
        self.cursor = row
        return True

    def set_findings(self, marks: dict[int, str]) -> None:
        """Mark frames (record index -> finding code) with a sign and the code."""
        self._marks = dict(marks)
        self.redraw()

    def frame_row(self, row: int) -> FrameRow | str:
        """The decoded row ``row`` (cached); a string says why the record cannot be shown."""
        if self._secrets_shown != self.source.reveal_secrets:  # previews mask secrets unless
            self._secrets_shown = self.source.reveal_secrets
            self._rows.clear()
            self._strips.clear()
        cached = self._rows.get(row)
        if cached is not None:
            return cached
        index = self._indexes[row]
        self.decodes += 1
        result: FrameRow | str
        try:
            rf = self.source.rec.record(index).frame
            if rf is None:
                result = "not a frame record"
            else:
                result = frame_row(
                    index,
                    self.source.rec.offset_of(index),
                    rf.timestamp,
                    int(rf.direction),
                    rf.frame,
                    self._start,
                    PREVIEW,
                    secrets=self._secrets_shown,
                )
        except (RemoteProtocolError, OSError, ValueError) as exc:
            result = f"record {index} cannot be decoded: {exc}"
        self._rows.set(row, result)
        return result

    # --- drawing -----------------------------------------------------------------------

    def render_row(self, row: int, selected: bool) -> Strip:
        """The frame of row ``row``, decoded on demand."""
        decoded = self.frame_row(row)
        mark = self._marks.get(self._indexes[row])
        line = Text(no_wrap=True, end="")
        if mark is not None:
            # The code first: the end of a long row is off screen.
            line.append(f"● {mark} ", self.get_component_rich_style("frame-list--mark"))
        else:
            line.append("  ")
        if isinstance(decoded, str):
            line.append(decoded, "red")
        else:
            line.append_text(next(render_frames([decoded])))
        return self.line_strip(line, selected)

    def choose(self, row: int) -> None:
        """Post :class:`Selected` for the frame at ``row``."""
        self.post_message(self.Selected(self._indexes[row]))


# --- the activity strip ------------------------------------------------------------------

_INLINE_RECORDS = 5000  # a command spanning fewer records gets its strip without a worker
_FINE_BINS = 1024  # bins computed once per command; redrawn to any width from these
_BLOCKS = " ▁▂▃▄▅▆▇█"
_STREAM_LABEL = {0: "in ", 1: "out", 2: "err"}
_STREAM_STYLE = {0: "blue", 1: "green", 2: "red"}


class ActivityStrip(Widget):
    """Bytes over time per stream for one command: bursts and stalls at a glance.

    One row per stream that carried data (at most four), the command's time
    span across the width. The bins are computed in a worker thread from the
    index's bulk frame arrays (:meth:`reclab.model.Recording.frame_chunks`),
    so even millions of frames are not decoded one by one.
    """

    DEFAULT_CSS = """
    ActivityStrip { height: auto; max-height: 5; }
    """

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.seq: int | None = None
        self.bins: dict[int, Any] = {}  # stream -> NumPy array of _FINE_BINS byte counts
        self.span_s = 0.0
        self._drawn: tuple[int, list[Text]] = (-1, [])  # rows drawn at a width
        self._height = 0  # rows taken on screen

    def _resize(self, rows: int) -> None:
        # A new layout only when the height changes: moving from command to command
        # (each with stdout and stderr, say) then redraws the strip alone.
        rows = min(rows, 4)
        changed = rows != self._height
        self._height = rows
        self.refresh(layout=changed)

    def show_command(self, seq: int | None) -> None:
        """Compute and draw the strip of command ``seq`` (None: clear it)."""
        if seq != self.seq:  # the same command again (follow): keep drawing the old bins
            self.bins = {}
            self._drawn = (-1, [])
            self.refresh()  # blank, at the old height, until the new bins arrive
        self.seq = seq
        cmd = self.source.command(seq) if seq is not None else None
        count = 0 if cmd is None else min(cmd.frame_count, len(cmd.record_indexes))
        if cmd is None or count == 0:
            self._resize(0)
            return
        if cmd.record_indexes[count - 1] - cmd.record_indexes[0] < _INLINE_RECORDS:
            # A small command: drawn at once, with the frames (no flicker, no wait).
            with contextlib.suppress(ReclabError, RecordingError, RemoteProtocolError, OSError):
                self._set_bins(cmd.seq, *self._compute(cmd, count))
            return
        self.run_worker(
            lambda: report_errors(self, "the activity strip", lambda: self._work(cmd, count)),
            thread=True,
            exclusive=True,
            group="activity",
            exit_on_error=False,
        )

    def _work(self, cmd: Command, count: int) -> None:
        worker = get_current_worker()
        bins, span = self._compute(cmd, count, worker)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._set_bins, cmd.seq, bins, span)

    def _compute(
        self, cmd: Command, count: int, worker: Worker[None] | None = None
    ) -> tuple[dict[int, Any], float]:
        """Bytes per stream in :data:`_FINE_BINS` bins over the command's span, and the span."""
        import numpy as np

        seq = cmd.seq
        first, last = cmd.record_indexes[0], cmd.record_indexes[count - 1]
        start = command_start_ns(cmd)
        end = max(cmd.end_time or 0, cmd.last_frame_time or 0, start + 1)
        parts: dict[int, list[Any]] = {}
        for simple, others in self.source.rec.frame_chunks(first, last + 1):
            if worker is not None and worker.is_cancelled:
                return {}, 0.0  # another command was selected: _set_bins drops this
            mine = (simple["seq"] == seq) & (simple["t"] == 2) & (simple["size"] > 0)
            ts = simple["ts"][mine].astype(np.int64)
            streams = simple["stream"][mine].astype(np.int64)
            sizes = simple["size"][mine].astype(np.int64)
            # Frames in another layout come decoded: add this command's data frames.
            extra = [
                (rf.get("ts", 0), frame.get("s", 0), len(frame.get("d") or b""))
                for _i, _o, rf in others
                if rf.get("seq") == seq
                and isinstance(frame := rf.get("frame"), dict)
                and frame.get("t") == 2
            ]
            if extra:
                more = np.array(extra, dtype=np.int64)
                ts = np.concatenate([ts, more[:, 0]])
                streams = np.concatenate([streams, more[:, 1]])
                sizes = np.concatenate([sizes, more[:, 2]])
            if ts.size == 0:
                continue
            pos = np.clip((ts - start) * _FINE_BINS // (end - start), 0, _FINE_BINS - 1)
            for stream in np.unique(streams).tolist():
                sel = streams == stream
                counts = np.bincount(pos[sel], weights=sizes[sel], minlength=_FINE_BINS)
                parts.setdefault(int(stream), []).append(counts)
        bins = {s: np.sum(chunks, axis=0) for s, chunks in sorted(parts.items())}
        return bins, (end - start) / 1e9

    def _set_bins(self, seq: int, bins: dict[int, Any], span_s: float) -> None:
        if seq != self.seq:
            return  # a newer command was selected meanwhile
        self.bins = bins
        self.span_s = span_s
        self._drawn = (-1, [])
        self._resize(len(bins))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._height

    def rows(self, width: int) -> list[Text]:
        """The strip drawn at ``width`` cells: one row per stream, label then bars."""
        import numpy as np

        lines = []
        cells = max(width - 5, 1)
        for stream, fine in list(self.bins.items())[:4]:
            # Sum fine bins into `cells` columns: column c takes bins [edges[c], edges[c+1]).
            edges = np.linspace(0, _FINE_BINS, cells + 1).astype(int)
            sums = np.add.reduceat(fine, edges[:-1])
            sums[edges[:-1] == edges[1:]] = 0  # reduceat repeats a bin for empty ranges
            top = sums.max()
            # sqrt: a few bytes next to a burst still show
            levels = (
                np.ceil(np.sqrt(sums / top) * (len(_BLOCKS) - 1)).astype(int)
                if top > 0
                else np.zeros(cells, int)
            )
            line = Text(no_wrap=True, end="")
            line.append(f"{_STREAM_LABEL.get(stream, f'fd{stream}'):<4} ", "dim")
            line.append(
                "".join(_BLOCKS[v] for v in levels.tolist()), _STREAM_STYLE.get(stream, "yellow")
            )
            lines.append(line)
        return lines

    def render_line(self, y: int) -> Strip:
        """Draw row ``y`` of the strip at the widget's width."""
        width = self.size.width
        drawn_width, rows = self._drawn
        if drawn_width != width:
            rows = self.rows(width)
            self._drawn = (width, rows)
        if y >= len(rows):
            return Strip.blank(width, self.rich_style)
        return Strip(list(rows[y].render(self.app.console))).crop_extend(0, width, self.rich_style)
