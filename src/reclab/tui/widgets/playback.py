"""Playback of a command's output at recorded speed, like asciinema's player.

:class:`Player` is the clock alone (no Textual): position, speed, an idle-time
cap that shortens long pauses, seeking. :class:`PlaybackView` draws the
output up to the player's position, newest lines at the bottom, with a
progress line, and moves the player from a Textual timer. The clock is
injected (``clock``), and :meth:`PlaybackView.tick` can be called directly,
so tests play minutes of output without waiting.

Output is decoded as the asciicast export does
(:func:`reclab.asciicast.asciicast_events`: UTF-8 per stream, characters cut
across frames joined). A carriage return starts its line again (progress
bars redraw in place); every other escape is shown, not obeyed
(:class:`reclab.tui.safe.OutputDecoder`). At most :data:`MAX_BYTES` of
output are loaded; the progress line says when the playback stops short.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget

from agentproto import Direction, FrameType
from reclab.asciicast import asciicast_events
from reclab.tui.safe import OutputDecoder
from reclab.tui.widgets.frames import command_start_ns, report_errors

if TYPE_CHECKING:
    from reclab.model import Command
    from reclab.tui.widgets.command_detail import CommandSource

__all__ = ["MAX_BYTES", "PlaybackView", "Player"]

MAX_BYTES = 8 * 1024 * 1024
_KEPT_LINES = 500  # lines of scrollback kept while playing
_SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
_DATA = int(FrameType.DATA)
_RECV = int(Direction.RECV)


def clock_time(seconds: float) -> str:
    """``m:ss.s`` as a player shows time (``1:02.5``)."""
    minutes, rest = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}:{rest:04.1f}"


class Player:
    """Where a playback is: events at recorded times, a position, a speed, an idle cap.

    ``times`` are the events' recorded seconds (ascending). With an idle cap,
    a pause longer than the cap plays as the cap: :attr:`position` runs on
    that shortened time line, :meth:`recorded_time` maps it back.
    """

    def __init__(self, times: Sequence[float], idle_cap: float | None = 2.0) -> None:
        self.times = list(times)
        self.idle_cap = idle_cap
        self.speed = 1.0
        self.playing = False
        self.position = 0.0
        self._play_times = self._cap(idle_cap)

    def _cap(self, cap: float | None) -> list[float]:
        out: list[float] = []
        last_rec = 0.0
        last_play = 0.0
        for t in self.times:
            gap = max(t - last_rec, 0.0)
            last_play += gap if cap is None else min(gap, cap)
            last_rec = t
            out.append(last_play)
        return out

    @property
    def duration(self) -> float:
        """Playback seconds from start to the last event (idle cap applied)."""
        return self._play_times[-1] if self._play_times else 0.0

    @property
    def shown(self) -> int:
        """How many events are due at the current position."""
        return bisect_right(self._play_times, self.position + 1e-9)

    @property
    def at_end(self) -> bool:
        """True when every event has been shown."""
        return self.position >= self.duration

    def recorded_time(self) -> float:
        """The recorded time (seconds since the command start) of the current position."""
        k = self.shown
        if k == 0:
            first = self._play_times[0] if self._play_times else 0.0
            return min(self.position, first)
        extra = self.position - self._play_times[k - 1]
        if k < len(self.times):
            extra = min(extra, self.times[k] - self.times[k - 1])
        return self.times[k - 1] + max(extra, 0.0)

    def step(self, dt: float) -> None:
        """Let ``dt`` wall-clock seconds pass: advance by ``dt * speed`` while playing."""
        if not self.playing:
            return
        self.position = min(self.position + dt * self.speed, self.duration)
        if self.at_end:
            self.playing = False

    def toggle(self) -> None:
        """Play or pause; playing at the end starts again from the beginning."""
        if not self.playing and self.at_end:
            self.position = 0.0
        self.playing = not self.playing

    def faster(self) -> None:
        """Double the speed (up to 64x)."""
        self.speed = next((s for s in _SPEEDS if s > self.speed), self.speed)

    def slower(self) -> None:
        """Halve the speed (down to 1/8)."""
        self.speed = next((s for s in reversed(_SPEEDS) if s < self.speed), self.speed)

    def seek(self, delta: float) -> None:
        """Move the position by ``delta`` playback seconds, within the recording."""
        self.position = min(max(self.position + delta, 0.0), self.duration)

    def set_idle_cap(self, cap: float | None) -> None:
        """Change the idle cap, keeping the same recorded moment on screen."""
        recorded = self.recorded_time()
        k = self.shown
        self.idle_cap = cap
        self._play_times = self._cap(cap)
        if k == 0:
            self.position = min(recorded, self._play_times[0] if self._play_times else 0.0)
            return
        extra = recorded - self.times[k - 1]
        if k < len(self.times):
            # Within a pause that is now shorter: stay just before the next event.
            gap = self._play_times[k] - self._play_times[k - 1]
            extra = min(extra, max(gap - 1e-6, 0.0))
        self.position = min(self._play_times[k - 1] + extra, self.duration)


class PlaybackView(Widget, can_focus=True):
    """A command's output replayed at recorded speed, with a progress line.

    Keys: space play/pause, ``+``/``-`` faster/slower, left/right seek 5 s,
    ``i`` idle cap on/off (2 s), home back to the start.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "play_pause", "Play/pause"),
        Binding("plus,equals_sign", "faster", "Faster"),
        Binding("minus", "slower", "Slower"),
        Binding("right", "seek(5)", "+5s"),
        Binding("left", "seek(-5)", "-5s"),
        Binding("i", "idle_cap", "Idle cap"),
        Binding("home", "restart", "Start", show=False),
    ]
    DEFAULT_CSS = "PlaybackView { height: 1fr; }"
    IDLE_CAP = 2.0
    FPS = 20

    def __init__(
        self,
        source: CommandSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.source = source
        self.clock = clock
        self.seq: int | None = None
        self.texts: list[str] = []
        self.player = Player([], self.IDLE_CAP)
        self.partial = False  # True when the output was longer than MAX_BYTES
        self._lines: deque[str] = deque([""], maxlen=_KEPT_LINES)
        self._applied = 0  # events already in _lines
        self._last_tick = 0.0
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self._timer = self.set_interval(1 / self.FPS, self.tick, pause=True)

    # --- loading -----------------------------------------------------------------------

    def show_command(self, seq: int | None) -> None:
        """Load the output of command ``seq`` for playback (in a worker), paused at the start."""
        self.seq = seq
        self._set_events(seq, [], [], False)
        if seq is not None:
            self.run_worker(
                lambda: report_errors(self, "the playback", lambda: self._read(seq)),
                thread=True,
                exclusive=True,
                group="playback",
                exit_on_error=False,
            )

    def _read(self, seq: int) -> None:
        cmd = self.source.command(seq)
        if cmd is None:
            return
        times: list[float] = []
        texts: list[str] = []
        cut: list[bool] = []
        chunks = self._chunks(cmd, cut)
        for seconds, _code, text in asciicast_events(chunks, command_start_ns(cmd)):
            times.append(seconds)
            texts.append(text)
        self.app.call_from_thread(self._set_events, seq, times, texts, bool(cut))

    def _set_events(self, seq: int | None, times: list[float], texts: list[str], cut: bool) -> None:
        if seq != self.seq:
            return  # another command was selected meanwhile
        self.texts = texts
        self.partial = cut
        self.player = Player(times, self.IDLE_CAP)
        self._reset_screen()
        if self._timer is not None:
            self._timer.pause()
        self.refresh()

    def _chunks(self, cmd: Command, cut: list[bool]) -> Iterator[tuple[int, int, bytes]]:
        """``(timestamp, stream, data)`` of stdout and stderr; appends to ``cut`` if cut short."""
        rec = self.source.rec
        kinds = rec.kinds
        count = min(cmd.frame_count, len(cmd.record_indexes))
        records = (i for i in cmd.record_indexes[:count] if kinds[i] == _DATA)
        total = 0
        for _i, _o, rf in rec.raw_frames(records):
            frame: Any = rf.get("frame")
            if rf.get("dir") != _RECV or frame.__class__ is not dict:
                continue
            data = frame.get("d")
            if frame.get("s", 0) not in (1, 2) or data.__class__ is not bytes:
                continue
            if total + len(data) > MAX_BYTES:
                cut.append(True)
                return
            total += len(data)
            yield rf.get("ts", 0), frame.get("s", 0), data

    # --- the screen --------------------------------------------------------------------

    def _reset_screen(self) -> None:
        self._lines = deque([""], maxlen=_KEPT_LINES)
        self._applied = 0

    def _catch_up(self) -> None:
        """Bring the screen lines to the player's position (rebuilt after a seek back)."""
        shown = self.player.shown
        if shown < self._applied:
            self._reset_screen()
        lines = self._lines
        for text in self.texts[self._applied : shown]:
            parts = text.replace("\r\n", "\n").split("\n")
            lines[-1] += parts[0]
            lines.extend(parts[1:])
        self._applied = shown

    def screen_lines(self, height: int) -> list[str]:
        """The last ``height`` lines of output due at the current position (raw text)."""
        self._catch_up()
        lines = list(self._lines)[-height:] if height > 0 else []
        # A carriage return starts the line again: keep what was written last.
        return [line.rsplit("\r", 1)[-1] for line in lines]

    def progress_text(self, width: int) -> Text:
        """The progress line: state, recorded time, total, speed, idle cap, a bar."""
        p = self.player
        state = "▶" if p.playing else "⏸"
        total = p.times[-1] if p.times else 0.0
        now = p.recorded_time()
        left = f" {state} {clock_time(now)} / {clock_time(total)}  x{p.speed:g}"
        left += f"  idle≤{p.idle_cap:g}s" if p.idle_cap is not None else "  no idle cap"
        if self.partial:
            left += f"  (first {MAX_BYTES // (1024 * 1024)} MiB)"
        room = max(width - len(left) - 3, 0)
        done = (
            int(room * (p.position / p.duration)) if p.duration > 0 else (room if p.at_end else 0)
        )
        line = Text(no_wrap=True, end="")
        line.append(left, "bold")
        line.append("  ")
        line.append("━" * done, "green")
        line.append("─" * (room - done), "dim")
        return line

    def render_line(self, y: int) -> Strip:
        """Draw line ``y``: output lines above, the progress line at the bottom."""
        width, height = self.size
        if y >= height:
            return Strip.blank(width, self.rich_style)
        if y == height - 1:
            text = self.progress_text(width)
        else:
            lines = self.screen_lines(height - 1)
            pad = height - 1 - len(lines)
            if y < pad:
                return Strip.blank(width, self.rich_style)
            text = OutputDecoder().line(lines[y - pad])
        return Strip(list(text.render(self.app.console))).crop_extend(0, width, self.rich_style)

    # --- playing -----------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the player by the time passed on ``clock`` since the last tick."""
        now = self.clock()
        self.player.step(now - self._last_tick)
        self._last_tick = now
        if not self.player.playing and self._timer is not None:
            self._timer.pause()
        self.refresh()

    def action_play_pause(self) -> None:
        """Play or pause."""
        self.player.toggle()
        self._last_tick = self.clock()
        if self._timer is not None:
            if self.player.playing:
                self._timer.resume()
            else:
                self._timer.pause()
        self.refresh()

    def action_faster(self) -> None:
        """Play faster."""
        self.player.faster()
        self.refresh()

    def action_slower(self) -> None:
        """Play slower."""
        self.player.slower()
        self.refresh()

    def action_seek(self, seconds: float) -> None:
        """Seek by ``seconds`` of playback time."""
        self.player.seek(seconds)
        self.refresh()

    def action_idle_cap(self) -> None:
        """Switch the idle-time cap on or off."""
        self.player.set_idle_cap(None if self.player.idle_cap is not None else self.IDLE_CAP)
        self.refresh()

    def action_restart(self) -> None:
        """Back to the start."""
        self.player.seek(-self.player.duration)
        self.refresh()
