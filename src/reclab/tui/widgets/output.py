"""The Output tab: a command's stdout, stderr and extra descriptors, safely drawn.

The output is not held in memory: a worker thread reads the command's data
frames once and keeps only where each line starts (chunk number and byte
offset, in compact arrays). :class:`OutputView` is a Line-API
``ScrollView`` that reads and decodes the few chunks of the lines on screen
when drawing them (LRU caches), so a command with gigabytes of output costs
a few bytes per line.

Lines are cut at a newline, when the stream changes (interleaved view) and
after :data:`MAX_LINE` bytes, so no single line is huge. A stream that looks
binary (:func:`reclab.tui.safe.looks_binary` on its first bytes) is shown as
a hex dump, 16 bytes a line, with offsets in that stream. Text goes through
:class:`reclab.tui.safe.OutputDecoder`: SGR colours kept, every other escape
and control shown, never obeyed. Colours set on one line do not carry to the
next (lines are drawn independently, in any order).
"""

from __future__ import annotations

import re
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from itertools import accumulate
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.actions import SkipAction
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from agentproto import Direction, FrameType
from reclab.tui.safe import OutputDecoder, hex_dump_line, looks_binary
from reclab.tui.widgets.frames import report_errors

if TYPE_CHECKING:
    from reclab.tui.widgets.command_detail import CommandSource

__all__ = ["MAX_LINE", "OutputView", "stream_label"]

MAX_LINE = 4096  # bytes; a longer line continues on the next row
_HEX_LINE = 16
_SAMPLE = 4096  # first bytes of a stream that decide text or binary
_PUBLISH_EVERY = 0.25  # seconds between showing what the worker has read so far
_RECV = int(Direction.RECV)
_DATA = int(FrameType.DATA)
_STREAM_STYLE = {1: "green", 2: "red"}
_GUTTER = 4  # "out│"
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")  # bytes the output view shows escaped
_BLOCK = 32  # chunks read together (neighbours are usually adjacent in the file)
_CACHE_BYTES = 32 * 1024 * 1024  # chunk data kept for drawing and searching
# Colours carry across lines: a line's SGR state is found by looking back this many
# lines of its stream at most (beyond, it starts plain).
_SGR_LOOKBACK = 2000


def stream_label(stream: int) -> str:
    """``out``, ``err`` or ``fdN``: how the gutter names a stream."""
    return {0: "in", 1: "out", 2: "err"}.get(stream, f"fd{stream}")


def _text_lines(data: bytes, continues: bool, line_bytes: int) -> tuple[list[int], int, int] | None:
    """Where lines start in a chunk of text; None if a line is too long for this quick way.

    ``continues`` says the chunk goes on with the previous chunk's last line
    (same stream, no newline yet), which holds ``line_bytes`` bytes. Returns
    the offsets where lines start, the bytes of the chunk's last line (counting
    the carried ones) and the longest line. A line longer than
    :data:`MAX_LINE` is left to the byte-by-byte loop, which cuts it.
    """
    carried = line_bytes if continues and line_bytes < MAX_LINE else -1
    # split() and accumulate() run in C: much cheaper per line than a loop of find().
    parts = data.split(b"\n")
    lengths = [len(part) + 1 for part in parts[:-1]]
    if parts[-1]:
        lengths.append(len(parts[-1]))
    first = lengths[0] + max(carried, 0)
    widest = max(lengths)
    if first > MAX_LINE or widest > MAX_LINE:
        return None
    starts = list(accumulate(lengths[:-1], initial=0))
    if carried >= 0:
        starts = starts[1:]  # the first segment ends the carried line
    last = lengths[-1] + (max(carried, 0) if len(lengths) == 1 else 0)
    return starts, last, max(first, widest)


def _line_str(data: bytes) -> str:
    """A line's bytes without its newline, as text (undecodable bytes kept as escapes)."""
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    return data.decode("utf-8", "surrogateescape")


class _ChunkCache:
    """Chunk data by chunk number, least recently used first out, bounded in bytes.

    Frames can be large (up to the record size limit), so a count of entries
    would not bound memory.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self._items: OrderedDict[int, bytes] = OrderedDict()

    def get(self, c: int) -> bytes | None:
        data = self._items.get(c)
        if data is not None:
            self._items.move_to_end(c)
        return data

    def put(self, c: int, data: bytes) -> None:
        old = self._items.pop(c, None)
        if old is not None:
            self.size -= len(old)
        self._items[c] = data
        self.size += len(data)
        while self.size > self.budget and len(self._items) > 1:
            _c, dropped = self._items.popitem(last=False)
            self.size -= len(dropped)

    def clear(self) -> None:
        self._items.clear()
        self.size = 0


class _LineIndex:
    """Where each output line starts; filled by the worker, read by the UI thread.

    Chunk ``c`` is the data frame at record ``chunk_record[c]`` of stream
    ``chunk_stream[c]``; line ``n`` starts at byte ``line_off[n]`` of chunk
    ``line_chunk[n]``, which is byte ``line_pos[n]`` of its stream, and ends
    where line ``n + 1`` starts (or at the end). ``lines`` counts the lines
    published to the UI; the arrays may already hold more.
    """

    def __init__(self) -> None:
        self.chunk_record = array("Q")
        self.chunk_stream = array("L")
        self.chunk_size = array("L")
        self.line_chunk = array("L")
        self.line_off = array("L")
        self.line_pos = array("Q")
        self.binary: dict[int, bool] = {}
        self.styled: set[int] = set()  # text streams with SGR escapes (colours carry over)
        self.lines = 0
        self.done = False
        # Where reading stopped, so a followed command is read on from there:
        self.scanned = 0  # entries of the command's record_indexes read
        self.line_stream = -1  # stream of the last line, -1 when it ended with a newline
        self.line_bytes = 0  # bytes in the last line
        self.pos: dict[int, int] = {}  # bytes of each stream so far
        self.widest = 0  # bytes in the longest line (a first guess at the width)


class OutputView(ScrollView, can_focus=True):
    """The reconstructed output of one command: interleaved or one stream at a time.

    ``s`` cycles the view: all streams in recorded order (a gutter says
    which), then each stream alone. ``/`` asks for a pattern and
    :meth:`search` finds it and highlights it; ``n`` / ``N`` go to the next /
    previous match in this output (before any output search they are the
    main screen's keys: the global search's next / previous). Reading
    happens in a worker; :attr:`indexing` is True until it is done.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_stream", "Streams"),
        Binding("slash", "search_prompt", "Search output"),
        Binding("n", "search_next(True)", "Next in output", show=False),
        Binding("N", "search_next(False)", "Previous in output", show=False),
        Binding("up", "scroll_up", show=False),
        Binding("down", "scroll_down", show=False),
        Binding("pageup", "page_up", show=False),
        Binding("pagedown", "page_down", show=False),
        Binding("home", "scroll_home", show=False),
        Binding("end", "scroll_end", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"output--match", "output--current-match"}
    DEFAULT_CSS = """
    OutputView { height: 1fr; }
    OutputView > .output--match { background: $warning 40%; }
    OutputView > .output--current-match { background: $warning; color: $background; }
    """

    class Indexed(Message):
        """The worker finished reading the output of the command shown."""

    class Searched(Message):
        """A search in the output (``/``, ``n``, ``N``) ended: on ``line``, None if no match."""

        def __init__(self, pattern: str, line: int | None) -> None:
            super().__init__()
            self.pattern = pattern
            self.line = line

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.seq: int | None = None
        self.stream: int | None = None  # None: every stream interleaved
        self.streams: list[int] = []  # the streams the command wrote, ascending
        self._index = _LineIndex()
        self._generation = 0
        self._chunks = _ChunkCache(_CACHE_BYTES)
        self._strips: LRUCache[int, Strip] = LRUCache(1024)
        self._texts: LRUCache[int, Text] = LRUCache(1024)
        self._end_styles: LRUCache[int, Style] = LRUCache(65536)  # SGR state after line n
        self._more = False  # the command grew while the worker was reading
        self._drawn_width = 0  # the widest line drawn so far, in cells
        self._flags: Any = None  # per chunk: may show the search pattern (see _chunk_flags)
        self._flags_pattern: str | None = None
        self.pattern = ""
        self.match: tuple[int, int, int] | None = None  # (line, start, end) in the plain text

    # --- what is shown -----------------------------------------------------------------

    @property
    def line_count(self) -> int:
        """How many lines are shown (grows while the worker reads)."""
        return self._index.lines

    @property
    def indexing(self) -> bool:
        """True while the worker is still reading the command's output."""
        return self.seq is not None and not self._index.done

    def show_command(self, seq: int | None, stream: int | None = None) -> None:
        """Show the output of command ``seq`` (None: nothing); ``stream`` alone or all."""
        self.seq = seq
        self.stream = stream
        if seq is not None:
            cmd = self.source.command(seq)
            self.streams = sorted(cmd.bytes_received) if cmd is not None else []
        else:
            self.streams = []
        self.match = None
        self._reindex(keep_place=False)

    def refresh_command(self) -> None:
        """The command grew: read its new frames on from where reading stopped."""
        if self.seq is None:
            return
        cmd = self.source.command(self.seq)
        self.streams = sorted(cmd.bytes_received) if cmd is not None else []
        if not self._index.done:
            self._more = True  # the worker is busy: it goes on when it is done
            return
        self._more = False
        self._index.done = False
        self._start_worker()

    def show_stream(self, stream: int | None) -> None:
        """Show one stream alone (``None``: all interleaved)."""
        self.stream = stream
        self.match = None
        self._reindex(keep_place=False)

    def action_cycle_stream(self) -> None:
        """Interleaved -> each stream alone -> interleaved."""
        order: list[int | None] = [None, *self.streams]
        at = order.index(self.stream) if self.stream in order else 0
        self.show_stream(order[(at + 1) % len(order)])

    def _reindex(self, *, keep_place: bool) -> None:
        self._generation += 1
        self._flags_pattern = None
        self._more = False
        self._index = _LineIndex()
        self._chunks.clear()
        self._strips.clear()
        self._texts.clear()
        self._end_styles.clear()
        if not keep_place:
            self.scroll_to(0, 0, animate=False, immediate=True)
        self._drawn_width = 0
        self._set_virtual_size()
        self.refresh()
        if self.seq is None:
            self._index.done = True
            return
        self._start_worker()

    def _start_worker(self) -> None:
        seq, stream, gen, index = self.seq, self.stream, self._generation, self._index
        if seq is None:
            return
        self.run_worker(
            lambda: report_errors(
                self, "the output", lambda: self._read_all(seq, stream, gen, index)
            ),
            thread=True,
            exclusive=True,
            group="output-index",
            exit_on_error=False,
        )

    # --- the worker: one pass over the data frames -------------------------------------

    def _read_all(self, seq: int, wanted: int | None, gen: int, ix: _LineIndex) -> None:
        """Read on; if the recording fails us, show the lines read so far as all there is."""
        try:
            self._read(seq, wanted, gen, ix)
        except BaseException:
            self.app.call_from_thread(self._publish, gen, len(ix.line_chunk), True)
            raise

    def _read(self, seq: int, wanted: int | None, gen: int, ix: _LineIndex) -> None:
        cmd = self.source.command(seq)
        if cmd is None:
            self.app.call_from_thread(self._publish, gen, 0, True)
            return
        rec = self.source.rec
        kinds = rec.kinds
        count = min(cmd.frame_count, len(cmd.record_indexes))
        todo = cmd.record_indexes[ix.scanned : count]
        data_records = (i for i in todo if kinds[i] == _DATA)
        worker = get_current_worker()
        line_stream, line_bytes, pos = ix.line_stream, ix.line_bytes, ix.pos
        next_publish = monotonic() + _PUBLISH_EVERY
        for record, _offset, rf in rec.raw_frames(data_records):
            if worker.is_cancelled or gen != self._generation:
                return
            frame: Any = rf.get("frame")
            data = frame.get("d") if frame.__class__ is dict else None
            stream = frame.get("s", 0) if frame.__class__ is dict else 0
            if rf.get("dir") != _RECV or data.__class__ is not bytes or not data:
                continue
            if wanted is not None and stream != wanted:
                continue
            if stream not in ix.binary:
                ix.binary[stream] = looks_binary(data[:_SAMPLE])
            binary = ix.binary.get(stream, False)
            if not binary and b"\x1b[" in data:
                ix.styled.add(stream)
            c = len(ix.chunk_record)
            ix.chunk_record.append(record)
            ix.chunk_stream.append(stream)
            ix.chunk_size.append(len(data))
            start = pos.get(stream, 0)
            off = 0
            if not binary:
                fast = _text_lines(data, stream == line_stream, line_bytes)
                if fast is not None:
                    starts, line_bytes, widest = fast
                    ix.line_chunk.extend([c] * len(starts))
                    ix.line_off.extend(starts)
                    ix.line_pos.extend([start + s for s in starts])
                    ix.widest = max(ix.widest, widest)
                    line_stream = -1 if data.endswith(b"\n") else stream
                    off = len(data)  # done: the loop below is for long lines and hex
            while off < len(data):
                if stream != line_stream or line_bytes >= (_HEX_LINE if binary else MAX_LINE):
                    ix.line_chunk.append(c)
                    ix.line_off.append(off)
                    ix.line_pos.append(start + off)
                    line_stream, line_bytes = stream, 0
                room = (_HEX_LINE if binary else MAX_LINE) - line_bytes
                if binary:
                    step = min(room, len(data) - off)
                else:
                    nl = data.find(b"\n", off, off + room)
                    step = (nl + 1 - off) if nl >= 0 else min(room, len(data) - off)
                off += step
                line_bytes += step
                if line_bytes > ix.widest:
                    ix.widest = line_bytes
                if not binary and data[off - 1] == 0x0A:
                    line_stream = -1  # the next byte starts a new line
            pos[stream] = start + len(data)
            ix.line_stream, ix.line_bytes = line_stream, line_bytes
            if monotonic() >= next_publish:
                # Show what is read so far; without waiting for the UI to draw it.
                self.app.call_from_thread(self._publish, gen, len(ix.line_chunk), False)
                next_publish = monotonic() + _PUBLISH_EVERY
        ix.scanned = count
        self.app.call_from_thread(self._publish, gen, len(ix.line_chunk), True)

    def _publish(self, gen: int, lines: int, done: bool) -> None:
        if gen != self._generation:
            return
        # The last line shown so far may have grown: draw it again.
        self._texts.discard(self._index.lines - 1)
        self._end_styles.discard(self._index.lines - 1)
        self._index.lines = lines
        self._index.done = done
        self._set_virtual_size()
        self._strips.clear()
        self.refresh()
        if done and self._more:
            self.refresh_command()  # frames arrived while reading: read them too
        elif done:
            self.post_message(self.Indexed())

    def _set_virtual_size(self) -> None:
        # Bytes guess the width (hex lines are 78 cells); lines drawn wider
        # (escapes take more cells than bytes) widen it when drawn.
        ix = self._index
        guess = 78 if any(ix.binary.values()) else ix.widest
        width = max(guess + _GUTTER, self._drawn_width)
        self.virtual_size = Size(width, ix.lines)

    # --- reading lines -----------------------------------------------------------------

    def _chunk(self, c: int) -> bytes:
        """The data of chunk ``c``; a miss reads its whole block of neighbours at once."""
        data = self._chunks.get(c)
        if data is not None:
            return data
        ix = self._index
        first = c - c % _BLOCK
        last = min(first + _BLOCK, len(ix.chunk_record))
        records = ix.chunk_record[first:last]
        found: dict[int, bytes] = {}
        for i, _o, rf in self.source.rec.raw_frames(records):
            frame = rf.get("frame")
            d = frame.get("d") if isinstance(frame, dict) else None
            found[i] = d if isinstance(d, bytes) else b""
        for k, record in enumerate(records, start=first):
            self._chunks.put(k, found.get(record, b""))
        return found.get(ix.chunk_record[c], b"")

    def line_bytes(self, n: int) -> bytes:
        """The bytes of line ``n`` (newline included), read from its chunks."""
        ix = self._index
        c, off = ix.line_chunk[n], ix.line_off[n]
        if n + 1 < len(ix.line_chunk):
            end_c, end_off = ix.line_chunk[n + 1], ix.line_off[n + 1]
        else:
            end_c, end_off = len(ix.chunk_record) - 1, ix.chunk_size[-1]
        parts = []
        while c <= end_c:
            data = self._chunk(c)
            parts.append(data[off : end_off if c == end_c else len(data)])
            c, off = c + 1, 0
        return b"".join(parts)

    def line_stream(self, n: int) -> int:
        """The stream line ``n`` belongs to."""
        return self._index.chunk_stream[self._index.line_chunk[n]]

    def line_text(self, n: int) -> Text:
        """Line ``n`` as safe Text without the gutter (cached)."""
        text = self._texts.get(n)
        if text is None:
            stream = self.line_stream(n)
            data = self.line_bytes(n)
            if self._index.binary.get(stream, False):
                text = hex_dump_line(data, self._index.line_pos[n])
            elif stream in self._index.styled:
                decoder = OutputDecoder(style=self._style_before(n, stream))
                text = decoder.line(_line_str(data))
                self._end_styles.set(n, decoder.style)
            else:
                text = OutputDecoder().line(_line_str(data))
            self._texts.set(n, text)
        return text

    def _style_before(self, n: int, stream: int) -> Style | None:
        """The SGR state at the start of line ``n``: what earlier lines of its stream set.

        Looks back for a line whose end state is known (lines are mostly drawn
        in order, so usually the one before), then replays the lines with
        escapes between there and ``n``; at most :data:`_SGR_LOOKBACK` lines.
        """
        between: list[int] = []
        start: Style | None = None
        k = n - 1
        while k >= 0 and len(between) < _SGR_LOOKBACK:
            if self.line_stream(k) == stream:
                known = self._end_styles.get(k)
                if known is not None:
                    start = known
                    break
                between.append(k)
            k -= 1
        decoder = OutputDecoder(style=start)
        for k in reversed(between):
            data = self.line_bytes(k)
            if b"\x1b[" in data:
                decoder.line(_line_str(data))
            self._end_styles.set(k, decoder.style)
        return decoder.style

    def render_line(self, y: int) -> Strip:
        """Draw the visible line ``y`` (gutter, then the line with search highlights)."""
        scroll_x, scroll_y = self.scroll_offset
        n = scroll_y + y
        width = self.scrollable_content_region.width
        if n >= self._index.lines:
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(n)
        if strip is None:
            strip = self._draw_line(n)
            self._strips.set(n, strip)
            if strip.cell_length > self._drawn_width:
                self._drawn_width = strip.cell_length
                self.call_later(self._set_virtual_size)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _draw_line(self, n: int) -> Strip:
        stream = self.line_stream(n)
        line = Text(no_wrap=True, end="")
        if self.stream is None:
            line.append(
                f"{stream_label(stream):>3}│",
                Style(color=_STREAM_STYLE.get(stream, "yellow"), dim=stream != 2),
            )
        body = self.line_text(n).copy()
        if self.pattern:
            match_style = self.get_component_rich_style("output--match")
            lowered = body.plain.lower()
            at = lowered.find(self.pattern)
            while at >= 0:
                body.stylize(match_style, at, at + len(self.pattern))
                at = lowered.find(self.pattern, at + len(self.pattern))
            if self.match is not None and self.match[0] == n:
                body.stylize(
                    self.get_component_rich_style("output--current-match"),
                    self.match[1],
                    self.match[2],
                )
        line.append_text(body)
        base = self.rich_style
        return Strip(
            [
                Segment(s.text, base + s.style if s.style else base)
                for s in line.render(self.app.console)
            ]
        )

    # --- search ------------------------------------------------------------------------

    def action_search_prompt(self) -> None:
        """``/``: ask for a pattern, then go to its first match from the top of the screen."""
        from reclab.tui.screens.search import SearchScreen

        hint = "Search this command's output (lower case: any case). Then n / N: next / previous."
        self.app.push_screen(SearchScreen(self.pattern, hint=hint), self._prompted)

    def _prompted(self, pattern: str | None) -> None:
        if pattern:
            self.match = None  # a new search starts from the screen, not the old match
            self._searched(pattern, self.search(pattern))

    def action_search_next(self, forward: bool) -> None:
        """``n`` / ``N``: the next / previous match in the output (wrapping around)."""
        if not self.pattern:
            raise SkipAction()  # no output search: the keys are the main screen's
        self._searched(self.pattern, self.search(self.pattern, forward))

    def _searched(self, pattern: str, found: bool) -> None:
        line = self.match[0] if found and self.match is not None else None
        self.post_message(self.Searched(pattern, line))

    def search(self, pattern: str, forward: bool = True) -> bool:
        """Go to the next (or previous) line containing ``pattern``, case-insensitively.

        Searches what is shown (escapes appear as their visible form, so
        ``\\e]52`` finds a clipboard write), from the current match or the
        top of the screen, wrapping around. Highlights every occurrence on
        screen and the current one more strongly; False when nothing matches.
        """
        pattern = pattern.lower()
        if pattern != self.pattern:
            self.pattern = pattern
            self.match = None
            self._strips.clear()
            self.refresh()
        total = self._index.lines
        if not pattern or total == 0:
            return False
        if self.match is not None:
            line, start, _end = self.match
            # Another occurrence on the same line comes first.
            plain = self.line_text(line).plain.lower()
            at = plain.find(pattern, start + 1) if forward else plain.rfind(pattern, 0, start)
            if at >= 0:
                return self._go(line, at, pattern)
            first = line + (1 if forward else -1)
        else:
            first = int(self.scroll_y) if forward else int(self.scroll_y) + self.size.height - 1
        first %= total
        for n in self._candidates(pattern, first, forward):
            plain = self.line_text(n).plain.lower()
            at = plain.find(pattern) if forward else plain.rfind(pattern)
            if at >= 0:
                return self._go(n, at, pattern)
        return False

    def _candidates(self, pattern: str, first: int, forward: bool) -> Iterator[int]:
        """The lines that may show ``pattern``, in search order from ``first``, wrapping.

        Each chunk's bytes are tested once per pattern (:meth:`_chunk_flags`):
        a chunk of plain ASCII without the pattern cannot show it, so its
        lines are not drawn. Lines of other chunks are all candidates.
        """
        import numpy as np

        total = self._index.lines
        ix = self._index
        chunks = ix.line_chunk[:total]  # a copy: the worker may be growing the array
        starts = np.frombuffer(chunks, dtype=f"u{chunks.itemsize}").astype(np.int64)
        maybe = self._chunk_flags(pattern)
        ends = np.append(starts[1:], len(ix.chunk_record) - 1)
        # A line spanning chunks is a candidate if any chunk it touches may hold it.
        span = np.cumsum(np.concatenate([[0], maybe.astype(np.int64)]))
        lines = np.flatnonzero(span[ends + 1] - span[starts] > 0)
        at = int(np.searchsorted(lines, first))
        if forward:
            order = np.concatenate([lines[at:], lines[:at]])
        else:
            at = int(np.searchsorted(lines, first, side="right"))
            order = np.concatenate([lines[:at][::-1], lines[at:][::-1]])
        yield from order.tolist()

    def _chunk_flags(self, pattern: str) -> Any:
        """Per chunk, True when its lines may show ``pattern`` (cached per pattern)."""
        import numpy as np

        ix = self._index
        count = len(ix.chunk_record)
        needle = pattern.encode() if pattern.isascii() and "\\" not in pattern else None
        flags: Any = self._flags if self._flags_pattern == pattern else np.zeros(0, bool)
        done = len(flags)
        if done < count:
            more = np.ones(count - done, dtype=bool)
            if needle is not None:
                tail = b""
                for k, c in enumerate(range(done, count)):
                    if ix.binary.get(ix.chunk_stream[c], False):
                        continue  # hex lines: always searched
                    data = self._chunk(c)
                    low = data.lower()
                    plain = data.isascii() and not _CONTROL.search(data.replace(b"\n", b""))
                    # A match across the boundary with the previous chunk marks both.
                    across = needle in (tail + low[: len(needle) - 1]) if tail else False
                    more[k] = needle in low or not plain or across
                    if across and k > 0:
                        more[k - 1] = True
                    tail = low[-(len(needle) - 1) :] if len(needle) > 1 else b""
            # The last chunk may still grow (follow): test it again next time.
            flags = np.concatenate([flags, more])
            self._flags, self._flags_pattern = flags[:-1], pattern
        return flags

    def _go(self, line: int, at: int, pattern: str) -> bool:
        old = self.match
        self.match = (line, at, at + len(pattern))
        for n in {line, old[0] if old else line}:
            self._strips.discard(n)
        height = self.scrollable_content_region.height or 1
        if not self.scroll_y <= line < self.scroll_y + height:
            self.scroll_to(y=max(line - height // 2, 0), animate=False, immediate=True)
        x = at + (4 if self.stream is None else 0)  # after the gutter
        width = self.scrollable_content_region.width or 1
        if not self.scroll_x <= x < self.scroll_x + width - 4:
            self.scroll_to(x=max(x - width // 2, 0), animate=False, immediate=True)
        self.refresh()
        return True
