"""The per-command tabs: Frames, Output, File ops, Logs, Exec, Play.

:class:`CommandDetail` is what the main screen shows for the selected
command. The Frames pane is wrapped in :class:`textual.lazy.Lazy` (the screen
appears first); the other panes are mounted when their tab is first shown.
Panes load their data only when their tab is shown: selecting another
command costs nothing for tabs nobody looks at. Data is reached only through
a :class:`CommandSource` (the app's ``RecordingSource``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.lazy import Lazy
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane

from reclab.tui.screens.frame_detail import FrameDetailScreen
from reclab.tui.widgets.exec import ExecPane
from reclab.tui.widgets.fileops import FileOpsTable
from reclab.tui.widgets.frames import FRAMES_HEADER, ActivityStrip, FrameList
from reclab.tui.widgets.logs import LogsTable
from reclab.tui.widgets.output import OutputView
from reclab.tui.widgets.playback import PlaybackView

if TYPE_CHECKING:
    from reclab.model import Command, Recording

__all__ = ["TABS", "CommandDetail", "CommandSource"]


class CommandSource(Protocol):
    """What the panes need from the app's data source (``reclab.tui.source.RecordingSource``)."""

    rec: Recording
    reveal_secrets: bool

    def snapshot(self) -> object:
        """The latest index snapshot (``reclab.model.IndexSnapshot``)."""
        ...

    def command(self, seq: int) -> Command | None:
        """Command ``seq`` as of the latest snapshot, None if unknown."""
        ...


TABS = ("frames", "output", "fileops", "logs", "exec", "play")
TAB_TITLES = {
    "frames": "Frames",
    "output": "Output",
    "fileops": "File ops",
    "logs": "Logs",
    "exec": "Exec",
    "play": "Play",
}


_FOCUS: dict[str, type[Widget]] = {
    "frames": FrameList,
    "output": OutputView,
    "fileops": FileOpsTable,
    "logs": LogsTable,
    "exec": VerticalScroll,
    "play": PlaybackView,
}


class CommandDetail(Widget):
    """Tabs for one command: Frames, Output, File ops, Logs, Exec, Play (lazy panes)."""

    DEFAULT_CSS = """
    CommandDetail { height: 1fr; }
    CommandDetail TabbedContent, CommandDetail ContentSwitcher { height: 1fr; }
    CommandDetail TabPane { padding: 0; height: 1fr; }
    CommandDetail #frames-header { height: 1; color: $text-muted; text-style: bold; }
    """

    class FrameSelected(Message):
        """Enter on a frame (the detail screen is opened here; this tells the app)."""

        def __init__(self, record_index: int) -> None:
            super().__init__()
            self.record_index = record_index

    def __init__(self, source: CommandSource, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.seq: int | None = None
        self.marks: dict[int, str] = {}
        self._loaded: dict[str, int | None] = {}  # tab -> the seq its pane shows
        self._pending_frame: int | None = None
        self._shown_tab: str | None = "frames"  # the initial tab
        # The other tabs' panes, mounted when their tab is first shown: mounting them
        # all at the start cost the first keys hundreds of ms while a big file indexes.
        self._parts: dict[str, Widget] = {
            "output": OutputView(self.source, id="output-view"),
            "fileops": FileOpsTable(self.source, id="fileops-table"),
            "logs": LogsTable(self.source, id="logs-table"),
            "exec": VerticalScroll(ExecPane(self.source, id="exec-pane")),
            "play": PlaybackView(self.source, id="playback"),
        }

    def compose(self) -> ComposeResult:
        with TabbedContent(id="command-tabs", initial="frames"):
            with TabPane(TAB_TITLES["frames"], id="frames"):
                yield Lazy(
                    Vertical(
                        ActivityStrip(self.source, id="activity"),
                        Static(FRAMES_HEADER, id="frames-header", markup=False),
                        FrameList(self.source, id="frame-list"),
                    )
                )
            for tab in TABS[1:]:
                yield TabPane(TAB_TITLES[tab], id=tab)  # filled when first shown (see _sync)

    @property
    def unmounted_parts(self) -> list[Widget]:
        """The panes of tabs not shown yet (not mounted): the help lists their keys too."""
        return list(self._parts.values())

    # --- the interface the main screen uses ---------------------------------------------

    def show_command(self, seq: int | None) -> None:
        """Show command ``seq`` (None: nothing selected); the visible tab loads at once."""
        self.seq = seq
        self._loaded.clear()
        self._sync()

    def refresh_command(self) -> None:
        """The command grew (follow): the visible tab shows the new data, keeping its place.

        Frames and Output take the new frames in where they are; File ops, Logs
        and Exec are read again; a playback keeps what it loaded (it would
        otherwise restart) until another command is selected.
        """
        tab = self._active_or_none()
        if tab is None or self._loaded.get(tab, -1) != self.seq or self.seq is None:
            self._loaded.clear()
            self._sync()
            return
        kept = {tab: self.seq} if tab in ("frames", "output", "play") else {}
        self._loaded = dict(kept)
        try:
            if tab == "frames":
                self.query_one(FrameList).refresh_command()
                self.query_one(ActivityStrip).show_command(self.seq)
            elif tab == "output":
                self.query_one(OutputView).refresh_command()
        except NoMatches:
            self._loaded.clear()
        self._sync()

    def jump_to_frame(self, record_index: int) -> None:
        """Switch to the Frames tab and put the cursor on the frame at ``record_index``."""
        self._pending_frame = record_index
        self.show_tab("frames")

    def search_output(self, pattern: str, forward: bool = True) -> bool:
        """Switch to the Output tab and go to the next/previous match of ``pattern``.

        Searches the lines read so far (the output is read in a worker); False
        when nothing matches or the tab is not ready yet.
        """
        self.show_tab("output")
        try:
            view = self.query_one(OutputView)
        except NoMatches:
            return False
        return view.search(pattern, forward)

    def set_findings(self, marks: dict[int, str]) -> None:
        """Mark frames (record index -> finding code) in the Frames tab."""
        self.marks = dict(marks)
        with contextlib.suppress(NoMatches):  # not mounted yet: _sync passes the marks on
            self.query_one(FrameList).set_findings(self.marks)

    def refresh_secrets(self) -> None:
        """Redraw the Exec tab and frame previews after ``source.reveal_secrets`` changed."""
        with contextlib.suppress(NoMatches):
            self.query_one(ExecPane).refresh_secrets()
        with contextlib.suppress(NoMatches):
            self.query_one(FrameList).refresh()  # it re-decodes rows when the setting changed

    @property
    def active_tab(self) -> str:
        """The id of the tab shown: one of :data:`TABS`."""
        return self.query_one(TabbedContent).active or "frames"

    def show_tab(self, tab: str) -> None:
        """Show tab ``tab`` (one of :data:`TABS`) and load it."""
        if tab not in TABS:
            raise ValueError(f"no tab {tab!r}: choose from {', '.join(TABS)}")
        self.query_one(TabbedContent).active = tab
        self._sync()

    # --- loading panes when they are shown ------------------------------------------------

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.stop()
        # Another tab was chosen (by the user or show_tab): keys go to it. The
        # first activation, when the tabs are built, leaves the focus alone.
        tab = event.pane.id
        changed = tab != self._shown_tab
        self._shown_tab = tab
        self._sync(focus=changed)

    def on_mount(self) -> None:
        self.call_after_refresh(self._sync)

    def _active_or_none(self) -> str | None:
        try:
            return self.active_tab
        except NoMatches:  # not composed yet
            return None

    def _sync(self, focus: bool = False, tries: int = 0) -> None:
        """Load the visible tab's pane if it shows another command (or none yet).

        ``focus`` gives the pane the keyboard (not when the main screen merely
        selected another command: the commands list keeps it).
        """
        tab = self._active_or_none()
        try:
            if tab is None:
                raise NoMatches("not composed yet")
            part = self._parts.get(tab)
            if part is not None:
                if part.parent is None:
                    self.query_one(f"TabPane#{tab}", TabPane).mount(part)
                if not part.is_mounted:
                    raise NoMatches("mounting")
                del self._parts[tab]
            if self._loaded.get(tab, -1) != self.seq:
                self._load(tab)
                self._loaded[tab] = self.seq
            if tab == "frames":
                frames = self.query_one(FrameList)
                frames.set_findings(self.marks)
                if self._pending_frame is not None:
                    focus = focus or frames.select_record(self._pending_frame)
                    self._pending_frame = None
            if focus:
                self.query_one(_FOCUS[tab]).focus()
        except NoMatches:
            # The lazy pane is not mounted yet: try again after the next refresh.
            if tries < 100:
                self.call_after_refresh(self._sync, focus, tries + 1)

    def _load(self, tab: str) -> None:
        seq = self.seq
        if tab == "frames":
            frames = self.query_one(FrameList)
            self.query_one(ActivityStrip).show_command(seq)
            frames.show_command(seq)
        elif tab == "output":
            self.query_one(OutputView).show_command(seq)
        elif tab == "fileops":
            self.query_one(FileOpsTable).show_command(seq)
        elif tab == "logs":
            self.query_one(LogsTable).show_command(seq)
        elif tab == "exec":
            self.query_one(ExecPane).show_command(seq)
        elif tab == "play":
            self.query_one(PlaybackView).show_command(seq)

    def on_frame_list_selected(self, event: FrameList.Selected) -> None:
        event.stop()
        self.app.push_screen(FrameDetailScreen(self.source.rec, event.record_index))
        self.post_message(self.FrameSelected(event.record_index))
