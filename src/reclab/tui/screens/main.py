"""The main screen: session bar, commands list and timeline, the selected command's detail.

Layout: the session bar on top; below it the commands list and the session
timeline (side by side when the terminal is wide, one at a time with ``t``
when it is narrow); the selected command's :class:`CommandDetail` takes the
rest; a status line (filter, search position) and the footer at the bottom.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from ...timeline import safe_text
from ..source import IndexSnapshot, RecordingSource, SearchHit, commands_view
from ..widgets.command_detail import TAB_TITLES, TABS, CommandDetail
from ..widgets.commands import CommandList, CommandsHeader
from ..widgets.output import OutputView
from ..widgets.session_bar import SessionBar
from ..widgets.timeline import Timeline

if TYPE_CHECKING:
    from ...check import Finding

# Below this width the commands list and the timeline take turns.
WIDE = 120
# While indexing, the selected command's panes are redrawn at most this often (seconds).
DETAIL_REFRESH = 1.0


class MainScreen(Screen[None]):
    """Everything about one recording on one screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("w", "where", "Where"),
        Binding("f", "search", "Search"),
        Binding("n", "next_match(1)", "Next match", show=False),
        Binding("N", "next_match(-1)", "Previous match", show=False),
        Binding("c", "findings", "Check"),
        Binding("t", "toggle_timeline", "Timeline"),
        Binding("R", "reveal_secrets", "Reveal secrets", show=False),
        Binding("r", "replay", "Replay", show=False),
        Binding("D", "diff", "Diff", show=False),
        Binding("escape", "clear_filters", "Clear filters", show=False),
        Binding("enter", "open_detail", "Open detail", show=False),
        Binding("tab", "focus_move(1)", "Next part", show=False),
        Binding("shift+tab", "focus_move(-1)", "Previous part", show=False),
        # the selected command's tabs, in the order shown
        *(
            Binding(str(number), f"show_tab('{tab}')", f"{TAB_TITLES[tab]} tab", show=False)
            for number, tab in enumerate(TABS, start=1)
        ),
    ]

    DEFAULT_CSS = """
    MainScreen { layout: vertical; }
    MainScreen #top { height: 40%; min-height: 4; }
    MainScreen #commands-pane { width: 1fr; }
    MainScreen #timeline { width: 1fr; display: none; }
    MainScreen.-wide #timeline { display: block; width: 45%; border-left: vkey $foreground 20%; }
    MainScreen.-timeline #timeline { display: block; }
    MainScreen.-timeline #commands-pane { display: none; }
    MainScreen.-wide.-timeline #commands-pane { display: block; }
    MainScreen #filter, MainScreen #where { display: none; height: 1; border: none; padding: 0 1; }
    MainScreen #filter.-shown, MainScreen #where.-shown { display: block; }
    MainScreen #where.-error { background: $error 30%; }
    MainScreen #detail { height: 1fr; border-top: hkey $foreground 20%; }
    MainScreen #status { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    """

    def __init__(self, source: RecordingSource, *, following: bool = False) -> None:
        super().__init__()
        self.source = source
        self.following = following
        self.hits: list[SearchHit] = []
        self.hit_index = -1
        self.pattern = ""
        self._searching = False
        self.where = ""
        # While the user moves through the list or timeline, the detail loading its
        # panes must not take the focus away (see _show); None once the user leaves.
        self._pinned: Widget | None = None
        self._shown = source.snapshot()  # the snapshot on screen
        self._detail_stale = False  # the selected command changed since its panes were drawn
        self._detail_shown = 0.0  # when (monotonic) they were last redrawn for that

    def compose(self) -> ComposeResult:
        """Session bar, list and timeline, detail, status line, footer."""
        yield SessionBar(following=self.following, id="session")
        commands = CommandList(id="commands")
        with Horizontal(id="top"):
            with Vertical(id="commands-pane"):
                yield CommandsHeader(commands, id="commands-header")
                yield commands
                yield Input(placeholder="filter: text in the rows (Esc clears)", id="filter")
                yield Input(
                    placeholder="where: e.g. exit_code != 0 and duration > 2 (Esc clears)",
                    id="where",
                )
            yield Timeline(id="timeline")
        yield CommandDetail(self.source, id="detail")
        yield Static("", id="status")
        yield Footer()

    def on_mount(self) -> None:
        """Show what is known already (the header) and focus the list."""
        commands = self.query_one(CommandList)
        commands.focus()
        self._pinned = commands
        self.apply_snapshot(self.source.snapshot())

    def on_resize(self) -> None:
        """Use the room: list and timeline side by side when wide enough."""
        self.set_class(self.size.width >= WIDE, "-wide")
        self._fit_top()

    def _fit_top(self) -> None:
        """Give the list (and timeline) the rows they need, up to 40%; the detail the rest."""
        count = len(self._shown.commands)
        boxes = sum(1 for box in self.query(Input) if box.has_class("-shown"))
        need = count + 1 + boxes  # the title row, the filter boxes
        if self.has_class("-wide") or self.has_class("-timeline"):
            need = max(need, count + 2)  # bars and the two axis lines
        self.query_one("#top").styles.height = max(4, min(need, int(self.size.height * 0.4)))

    # --- snapshots -----------------------------------------------------------------

    def apply_snapshot(self, snap: IndexSnapshot) -> None:
        """Show a newer snapshot without moving the user's place."""
        shown, self._shown = self._shown, snap
        commands = self.query_one(CommandList)
        self.query_one(SessionBar).update_snapshot(snap)
        commands.set_snapshot(snap)
        self.query_one(Timeline).set_snapshot(snap)
        if self.where:
            self._run_where(self.where)
        if len(snap.commands) != len(shown.commands):
            self._fit_top()
        selected = commands.selected
        if selected is not None and snap.commands.get(selected) is not shown.commands.get(selected):
            self._detail_stale = True
        # While a big file is indexed the selected command grows with every batch:
        # redraw its panes now and then, not for every batch (the UI stays quick).
        now = time.monotonic()
        if self._detail_stale and (snap.done or now - self._detail_shown >= DETAIL_REFRESH):
            self._detail_stale = False
            self._detail_shown = now
            self.query_one(CommandDetail).refresh_command()

    # --- selection -----------------------------------------------------------------

    @on(CommandList.Highlighted)
    def _command_highlighted(self, event: CommandList.Highlighted) -> None:
        self._show(event.seq)

    def _show(self, seq: int | None) -> None:
        """Show command ``seq`` in the detail and the timeline; the focus stays where it is."""
        detail = self.query_one(CommandDetail)
        focused = self.focused
        if focused is not None and detail not in focused.ancestors:
            self._pinned = focused
        detail.show_command(seq)
        self.query_one(Timeline).show_selected(seq)

    def set_focus(
        self, widget: Widget | None, scroll_visible: bool = True, from_app_focus: bool = False
    ) -> None:
        """Keep the focus where the user is while the detail loads the selected command.

        The detail focuses its pane when it loads (``widget.focus()``); while the
        user moves through the list, the timeline or a filter box, that would
        swallow the next key. A click (which focuses without scrolling), Tab,
        Enter and jumps (search, findings) release the pin first.
        """
        pinned = self._pinned
        if (
            pinned is not None
            and widget is not None
            and scroll_visible
            and widget is not pinned
            and self.query_one(CommandDetail) in widget.ancestors
        ):
            return
        if widget is not None and not scroll_visible:
            self._pinned = None  # a click
        super().set_focus(widget, scroll_visible, from_app_focus)

    def action_focus_move(self, step: int) -> None:
        """Tab / Shift+Tab: the next or previous part of the screen."""
        self._pinned = None
        if step > 0:
            self.focus_next()
        else:
            self.focus_previous()

    def action_show_tab(self, tab: str) -> None:
        """1-6: show that tab of the selected command; the keys go to it."""
        self._pinned = None
        self.query_one(CommandDetail).show_tab(tab)

    def action_open_detail(self) -> None:
        """Enter on the list or timeline: into the selected command's tabs."""
        self._pinned = None
        detail = self.query_one(CommandDetail)
        for widget in self.focus_chain:
            if detail in widget.ancestors and type(widget).__name__ != "Tabs":
                widget.focus()
                return

    @on(Timeline.Selected)
    def _bar_selected(self, event: Timeline.Selected) -> None:
        self.select_command(event.seq)

    def select_command(self, seq: int) -> None:
        """Select command ``seq`` everywhere (list, timeline, detail)."""
        commands = self.query_one(CommandList)
        if commands.selected == seq:
            return
        if not commands.select(seq):
            # Filtered out of the list: show it anyway, and say so.
            commands.selected = seq
            self._show(seq)
            self.set_status(f"command {seq} is hidden by the filter (Esc clears it)")

    def jump(self, seq: int | None, record_index: int | None) -> None:
        """Select command ``seq`` and, if given, its frame ``record_index``."""
        if seq is not None:
            self.select_command(seq)
        if record_index is not None:
            self._pinned = None
            self.query_one(CommandDetail).jump_to_frame(record_index)

    def set_status(self, text: str) -> None:
        """The one-line status under the detail (filters, search position)."""
        self.query_one("#status", Static).update(safe_text(text))

    # --- filters -------------------------------------------------------------------

    def action_filter(self) -> None:
        """Show the text filter (incremental: rows narrow as you type)."""
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()
        self._fit_top()

    def action_where(self) -> None:
        """Show the expression filter (``reclab commands --where`` syntax, applied on Enter)."""
        box = self.query_one("#where", Input)
        box.add_class("-shown")
        box.focus()
        self._fit_top()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(CommandList).set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.remove_class("-shown")
            self._fit_top()
        self.query_one(CommandList).focus()

    @on(Input.Submitted, "#where")
    def _where_submitted(self, event: Input.Submitted) -> None:
        self.where = event.value.strip()
        if not self.where:
            event.input.remove_class("-shown", "-error")
            self.query_one(CommandList).set_where(None)
            self.set_status("")
            self._fit_top()
            return
        self._run_where(self.where)

    def _run_where(self, expression: str) -> None:
        self._where_worker(expression, self.source.snapshot())

    @work(thread=True, exclusive=True, group="where")
    def _where_worker(self, expression: str, snap: IndexSnapshot) -> None:
        """Evaluate the expression with the commands table code (pandas loads here, lazily)."""
        from ...summary import select_commands

        try:
            seqs: frozenset[int] | None = frozenset(
                select_commands(commands_view(snap), where=expression)
            )
            error = ""
        except ValueError as exc:
            seqs, error = None, str(exc)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._where_done, expression, seqs, error)

    def _where_done(self, expression: str, seqs: frozenset[int] | None, error: str) -> None:
        if expression != self.where:
            return  # a newer expression is on its way
        box = self.query_one("#where", Input)
        box.set_class(bool(error), "-error")
        if error:
            self.set_status(error)
            return
        self.query_one(CommandList).set_where(seqs)
        self.set_status(f"where {expression}: {len(seqs or ())} commands")
        if box.has_focus:
            self.query_one(CommandList).focus()

    def action_clear_filters(self) -> None:
        """Esc: drop the text and expression filters and hide their boxes."""
        for box in self.query(Input):
            box.value = ""
            box.remove_class("-shown", "-error")
        self.where = ""
        commands = self.query_one(CommandList)
        commands.set_filter("")
        commands.set_where(None)
        commands.focus()
        self.set_status("")
        self._fit_top()

    # --- timeline ------------------------------------------------------------------

    def action_toggle_timeline(self) -> None:
        """Narrow terminal: switch between the commands list and the timeline."""
        self.toggle_class("-timeline")
        target = Timeline if self.has_class("-timeline") else CommandList
        self.query_one(target).focus()
        self._fit_top()

    # --- search --------------------------------------------------------------------

    def action_search(self) -> None:
        """Ask for a pattern and search outputs, argv, paths and log messages."""
        from .search import SearchScreen

        self.app.push_screen(SearchScreen(self.pattern), self._search_entered)

    def _search_entered(self, pattern: str | None) -> None:
        if pattern:
            self.search(pattern)

    def search(self, pattern: str) -> None:
        """Search for ``pattern`` in a worker; the first match is shown when it is done."""
        self.pattern = pattern
        self.hits = []
        self.hit_index = -1
        self._searching = True
        self.set_status(f"searching for {pattern!r}…")
        self._search_worker(pattern)

    @work(thread=True, exclusive=True, group="search")
    def _search_worker(self, pattern: str) -> None:
        worker = get_current_worker()
        hits = self.source.search(pattern, cancelled=lambda: worker.is_cancelled)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._search_done, pattern, hits)

    def _search_done(self, pattern: str, hits: list[SearchHit]) -> None:
        if pattern != self.pattern:
            return
        self._searching = False
        self.hits = hits
        if not hits:
            self.set_status(f"no match for {pattern!r}")
            return
        self.hit_index = -1
        self.action_next_match(1)

    def action_next_match(self, step: int) -> None:
        """n / N: the next or previous match, in recorded order (wrapping around)."""
        if not self.hits:
            if not self.pattern:
                self.set_status("no search yet (f searches)")
            elif self._searching:
                self.set_status(f"still searching for {self.pattern!r}…")
            else:
                self.set_status(f"no match for {self.pattern!r}")
            return
        self.hit_index = (self.hit_index + step) % len(self.hits)
        hit = self.hits[self.hit_index]
        self.jump(hit.seq, hit.record_index)
        preview = " ".join(hit.preview.split())
        self.set_status(
            f"match {self.hit_index + 1}/{len(self.hits)} in {hit.where} of command {hit.seq}: "
            f"{preview}"
        )

    @on(OutputView.Searched)
    def _output_searched(self, event: OutputView.Searched) -> None:
        seq = self.query_one(CommandDetail).seq
        if event.line is None:
            self.set_status(f"no match for {event.pattern!r} in the output of command {seq}")
        else:
            self.set_status(
                f"{event.pattern!r} in the output of command {seq}, line {event.line + 1} "
                "(n / N: next / previous in the output)"
            )

    # --- check findings and secrets ------------------------------------------------

    def action_findings(self) -> None:
        """Open the check findings view."""
        from .findings import FindingsScreen

        self.app.push_screen(FindingsScreen(), self._finding_chosen)

    def _finding_chosen(self, finding: Finding | None) -> None:
        if finding is not None:
            self.jump(finding.seq, finding.index)

    def set_findings(self, marks: dict[int, str]) -> None:
        """Mark findings on the frames they point at."""
        self.query_one(CommandDetail).set_findings(marks)

    def action_replay(self) -> None:
        """Show the selected command's replay plan; Enter there replays it and compares."""
        from .replay import ReplayScreen

        seq = self.query_one(CommandList).selected
        if seq is None:
            self.app.notify("select a command to replay", severity="warning")
            return
        self.app.push_screen(ReplayScreen(self.source, seq))

    def action_diff(self) -> None:
        """Compare with the recording given by --diff (reclab diff, in the viewer)."""
        from .replay import DiffScreen

        other = getattr(self.app, "diff", None)
        if other is None:
            self.app.notify(
                "start the viewer with --diff OTHER.cbor to compare", severity="warning"
            )
            return
        self.app.push_screen(DiffScreen(self.source, other))

    def action_reveal_secrets(self) -> None:
        """Show or mask the values of secret-looking environment variables."""
        self.source.reveal_secrets = not self.source.reveal_secrets
        self.query_one(CommandDetail).refresh_secrets()
        state = "shown" if self.source.reveal_secrets else "masked"
        self.set_status(f"secret environment values {state} (R toggles)")
