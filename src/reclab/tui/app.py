"""ReclabApp: the ``reclab view`` Textual application.

The app owns the :class:`RecordingSource` and its background work: indexing
(one thread worker that publishes snapshots as batches arrive), following a
recording that is still being written (a timer that runs ``refresh()`` in a
thread worker), and the check findings. Workers never touch widgets: they
post a :class:`SnapshotReady` nudge, and the main screen reads the latest
snapshot when it gets to it, so stale progress is simply skipped.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer

from ..model import RecordingError
from .screens.findings import FindingsScreen
from .screens.main import MainScreen
from .source import IndexSnapshot, RecordingSource

if TYPE_CHECKING:
    from ..check import CheckReport

# How often a followed recording is looked at for appended records (seconds).
FOLLOW_INTERVAL = 0.5
# The GIL switch interval while a thread indexes (seconds; Python's default is 0.005).
# A CPU-bound indexing thread keeps the GIL for a whole interval each time the UI
# thread gives it up to wait for input or output (the "convoy effect"): measured on
# a 100 MB file, a batch waited over a second to reach the screen with 5 ms, and
# was shown at once with 0.5 ms.
INDEXING_SWITCH_INTERVAL = 0.0005
# The UI's heartbeat while indexing (seconds): the indexer pauses while beats are late.
BEAT_INTERVAL = 0.01
# Recordings up to this size are checked as soon as they are indexed (one more
# streaming pass); bigger ones when the findings view is opened.
AUTO_CHECK_BYTES = 64 * 1024 * 1024


@contextmanager
def _ui_first() -> Iterator[None]:
    """Let the UI thread take the GIL back quickly while this thread works."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, INDEXING_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class SnapshotReady(Message):
    """A newer snapshot was published; only the latest one pending is kept."""

    def can_replace(self, message: Message) -> bool:
        """A newer nudge makes an older, unhandled one pointless."""
        return isinstance(message, SnapshotReady)


class IndexFailed(Message):
    """Indexing stopped on an error it could not read past (file gone, closed)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ReclabApp(App[None]):
    """Browse one recording: session, commands, timeline, per-command panes, search, check."""

    TITLE = "reclab view"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self,
        source: RecordingSource,
        *,
        follow: bool = False,
        follow_interval: float = FOLLOW_INTERVAL,
        diff: Path | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.diff = diff  # another recording to compare with (D, and shown at start)
        self.follow = follow
        self.follow_interval = follow_interval
        self.check_report: CheckReport | None = None
        self._checking = False
        self.sub_title = str(source.path)
        self._follow_timer: Timer | None = None
        self._frozen = False  # gc.freeze() while indexing (see on_snapshot_ready)
        self._first_snapshot_shown = False
        self.main_screen = MainScreen(source, following=follow)

    def on_mount(self) -> None:
        """Draw the first screen from the header, then index in the background."""
        self.push_screen(self.main_screen)
        # While indexing, a beat every few ms tells the indexer the screen keeps up.
        self._beat = self.set_interval(BEAT_INTERVAL, self.source.pacer.beat)
        self.source.pacer.holds_first_screen = True  # until the first snapshot is drawn
        self._index()
        if self.diff is not None:
            self.main_screen.action_diff()

    # --- indexing and follow -------------------------------------------------------

    def _published(self, snap: IndexSnapshot) -> None:
        # Runs in the worker thread: post_message is thread-safe.
        self.post_message(SnapshotReady())

    @work(thread=True, exclusive=True, group="index")
    def _index(self) -> None:
        try:
            with _ui_first():
                self.source.index(self._published)
        except RecordingError as exc:
            self.post_message(IndexFailed(str(exc)))

    @work(thread=True, exclusive=True, group="index")
    def _refresh(self) -> None:
        try:
            with _ui_first():
                self.source.refresh(self._published)
        except RecordingError as exc:
            self.post_message(IndexFailed(str(exc)))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Show the latest snapshot; once the first indexing is done, start following."""
        snap = self.source.snapshot()
        if not self._first_snapshot_shown:
            self._first_snapshot_shown = True
            self.call_after_refresh(self.source.pacer.first_screen_shown)
        if snap.done:
            self._indexed()
        elif not self._frozen:
            # The screen is built: its ~100k objects need no more full collections while
            # indexing allocates (each took ~100 ms with the GIL shared: keys waited).
            gc.freeze()
            self._frozen = True
        self.main_screen.apply_snapshot(snap)
        if snap.done and snap.file_size <= AUTO_CHECK_BYTES and not self.follow:
            self.run_check()  # small enough: findings marked on frames without asking
        if snap.done and self.follow and self._follow_timer is None:
            self._follow_timer = self.set_interval(self.follow_interval, self._poll)

    def _indexed(self) -> None:
        """Indexing ended: no more pacing, and the screen's objects are collected as usual."""
        self.source.pacer.active = False
        self._beat.stop()
        self.on_unmount()

    def on_unmount(self) -> None:
        """The viewer quits (or indexing ended): the screen's objects are collected as usual."""
        self.source.pacer.first_screen_shown()
        if self._frozen:
            gc.unfreeze()
            self._frozen = False

    def _poll(self) -> None:
        if not any(w.group == "index" and not w.is_finished for w in self.workers):
            self._refresh()

    def on_index_failed(self, message: IndexFailed) -> None:
        """Say why reading stopped; what was read stays on screen."""
        self._indexed()
        self.main_screen.set_status(f"reading stopped: {message.error}")

    # --- check findings ------------------------------------------------------------

    def run_check(self) -> None:
        """Start ``reclab check`` in a thread worker unless it ran or runs already."""
        if self.check_report is None and not self._checking:
            self._checking = True
            self._check()

    @work(thread=True, group="check")
    def _check(self) -> None:
        try:
            report = self.source.check()
        except OSError as exc:
            self.call_from_thread(self._check_failed, str(exc))
            return
        if report is not None:  # None: the viewer is quitting
            self.call_from_thread(self.set_check_report, report)

    def _check_failed(self, message: str) -> None:
        self._checking = False
        self.main_screen.set_status(f"cannot check: {message}")
        if isinstance(self.screen, FindingsScreen):
            self.screen.show_failure(message)

    def set_check_report(self, report: CheckReport) -> None:
        """Keep the check's findings, mark them on their frames, list them if shown."""
        self._checking = False
        self.check_report = report
        marks = {f.index: f.code for f in report.findings if f.index is not None}
        self.main_screen.set_findings(marks)
        if isinstance(self.screen, FindingsScreen):
            self.screen.show_report(report)

    # --- keys and the command palette ----------------------------------------------

    async def action_quit(self) -> None:
        """Quit at once: background indexing and checking stop at their next step."""
        self.source.cancel()
        await super().action_quit()

    def action_help(self) -> None:
        """Show every key."""
        from .screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette (Ctrl+P): Textual's commands and the viewer's own."""
        yield from super().get_system_commands(screen)
        main = self.main_screen
        yield SystemCommand(
            "Filter commands", "Text filter on the commands list (/)", main.action_filter
        )
        yield SystemCommand(
            "Where expression", "reclab commands --where filter (w)", main.action_where
        )
        yield SystemCommand("Search", "Search outputs, argv, paths, logs (f)", main.action_search)
        yield SystemCommand("Check findings", "reclab check's findings (c)", main.action_findings)
        yield SystemCommand(
            "Toggle timeline", "Show the session timeline (t)", main.action_toggle_timeline
        )
        yield SystemCommand(
            "Reveal secrets", "Show or mask secret env values (R)", main.action_reveal_secrets
        )
        yield SystemCommand("Keys", "Every key (?)", self.action_help)
