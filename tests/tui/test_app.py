"""Pilot tests of reclab view's shell: session bar, commands list, timeline, filters,
search, check findings, secrets, help, follow, quit.

Each test drives the real app headless (``App.run_test``) on a real recording
and checks what the user would see (the screen's text) or the state behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input, TabbedContent

from reclab.tui.app import ReclabApp
from reclab.tui.screens.findings import FindingsScreen
from reclab.tui.screens.help import HelpScreen
from reclab.tui.screens.main import MainScreen
from reclab.tui.screens.search import SearchScreen
from reclab.tui.widgets.command_detail import CommandDetail
from reclab.tui.widgets.commands import CommandList, CommandsHeader
from reclab.tui.widgets.exec import ExecPane
from reclab.tui.widgets.fileops import FileOpsTable
from reclab.tui.widgets.frames import FrameList
from reclab.tui.widgets.logs import LogsTable
from reclab.tui.widgets.output import OutputView
from reclab.tui.widgets.playback import PlaybackView
from reclab.tui.widgets.session_bar import SessionBar
from reclab.tui.widgets.timeline import Timeline
from tests.tui.records import (
    T0,
    command_records,
    footer_record,
    header_record,
    screen_text,
    workers_done,
)

OpenApp = Callable[..., ReclabApp]


async def settle(app: ReclabApp, pilot: object) -> None:
    """Wait for indexing (and any other worker) and the repaint that follows."""
    await workers_done(app)
    await pilot.pause()  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]


def main_of(app: ReclabApp) -> MainScreen:
    return app.main_screen


async def test_first_screen_shows_session_and_commands(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        text = screen_text(app)
        for expected in (
            "ssh build-host:22",
            "user tester",
            "start 2025-11-29T07:06:40.000000Z",
            "/usr/local/bin/mproxy-agent",
            "commands 4 (footer says 4)",
            "make all",
            "pytest -q",
            "none",  # command 3 has no exit code
        ):
            assert expected in text, expected
        assert "indexing" not in text
        commands = app.screen.query_one(CommandList)
        assert commands.rows == [1, 2, 3, 4]
        assert commands.selected == 1
        assert app.screen.query_one(CommandDetail).seq == 1


async def test_keys_and_mouse_select_commands(open_app: OpenApp, small_recording: Path) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        commands = app.screen.query_one(CommandList)
        detail = app.screen.query_one(CommandDetail)
        await pilot.press("down", "down")
        await pilot.pause()
        assert commands.selected == 3 and detail.seq == 3
        assert app.focused is commands  # the detail loading its pane does not steal the focus
        await pilot.press("end")
        assert commands.selected == 4
        await pilot.press("home")
        assert commands.selected == 1
        await pilot.click(CommandList, offset=(2, 1))  # the second row
        await pilot.pause()
        assert commands.selected == 2 and detail.seq == 2
        # Enter goes into the selected command's tabs.
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is not None and detail in app.focused.ancestors


async def test_number_keys_show_the_tabs(open_app: OpenApp, small_recording: Path) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        tabs = app.screen.query_one(TabbedContent)
        for key, tab, pane in [
            ("2", "output", OutputView),
            ("3", "fileops", FileOpsTable),
            ("4", "logs", LogsTable),
            ("5", "exec", ExecPane),
            ("6", "play", PlaybackView),
            ("1", "frames", FrameList),
        ]:
            await pilot.press(key)
            await pilot.pause()
            assert tabs.active == tab
            focused = app.focused
            assert focused is not None  # the keys go to the tab shown
            assert isinstance(focused, pane) or any(
                isinstance(w, pane) for w in focused.walk_children()
            )


async def test_sort_by_column_keys_and_header_click(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        commands = app.screen.query_one(CommandList)
        await pilot.press("s")  # next column: exit code, missing last
        assert commands.sort_column == "exit"
        assert commands.rows == [1, 4, 2, 3]
        assert commands.selected == 1  # the selection follows its command
        await pilot.press("S")  # reversed
        assert commands.rows == [3, 2, 1, 4]
        await pilot.press("s")  # duration
        assert commands.sort_column == "duration"
        header = app.screen.query_one(CommandsHeader)
        await pilot.click(CommandsHeader, offset=(1, 0))  # the "seq" title
        assert commands.sort_column == "seq" and commands.rows == [1, 2, 3, 4]
        await pilot.click(CommandsHeader, offset=(1, 0))  # again: descending
        assert commands.rows == [4, 3, 2, 1]
        assert "seq▼" in header.render().plain


async def test_text_filter_is_incremental_and_escape_clears(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        commands = app.screen.query_one(CommandList)
        await pilot.press("slash", "p", "y")
        await pilot.pause()
        assert commands.rows == [2]
        await pilot.press("backspace", "backspace", "l", "s")
        await pilot.pause()
        assert commands.rows == [4]
        await pilot.press("enter")
        assert app.focused is commands
        await pilot.press("escape")
        assert commands.rows == [1, 2, 3, 4]
        # Keys typed into the box are text, not commands: q does not quit, n does not search.
        await pilot.press("slash", "q", "n", "c")
        await pilot.pause()
        assert app.is_running and isinstance(app.screen, MainScreen)
        assert app.screen.query_one("#filter", Input).value == "qnc"
        assert commands.rows == []
        assert "no command matches the filter" in screen_text(app)


async def test_where_expression_uses_the_commands_syntax(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        commands = app.screen.query_one(CommandList)
        await pilot.press("w", *"exit_code != 0", "enter")
        await settle(app, pilot)
        assert commands.rows == [2]
        assert "where exit_code != 0: 1 commands" in screen_text(app)
        # The same syntax as reclab commands --where: pandas string methods too.
        await pilot.press("w", "ctrl+u", *"argv.str.contains('make') or complete == False")
        await pilot.press("enter")
        await settle(app, pilot)
        assert commands.rows == [1, 3]
        # A bad expression says why in one line and keeps the last good filter.
        await pilot.press("w", "ctrl+u", *"exit_code ==", "enter")
        await settle(app, pilot)
        assert "bad --where expression" in screen_text(app)
        assert app.screen.query_one("#where").has_class("-error")
        assert commands.rows == [1, 3]
        await pilot.press("escape")
        assert commands.rows == [1, 2, 3, 4]


async def test_search_next_and_previous_jump_to_command_and_frame(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        main = main_of(app)
        await pilot.press("f")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"needle", "enter")
        await settle(app, pilot)
        # argv/paths, output and log messages are searched; matches in recorded order.
        assert [(h.seq, h.where) for h in main.hits] == [(2, "stdout"), (4, "stdout")]
        first = main.hits[0]
        commands = main.query_one(CommandList)
        detail = main.query_one(CommandDetail)
        assert commands.selected == 2 and detail.seq == 2
        assert detail.active_tab == "frames"
        assert first.record_index is not None
        assert app.source.rec.record(first.record_index).frame is not None
        assert "match 1/2 in stdout of command 2" in screen_text(app)
        await pilot.press("n")
        assert commands.selected == 4 and main.hit_index == 1
        await pilot.press("n")  # wraps around
        assert commands.selected == 2 and main.hit_index == 0
        await pilot.press("N")
        assert commands.selected == 4
        await pilot.press("f", "ctrl+u", *"started pytest", "enter")
        await settle(app, pilot)
        assert [(h.seq, h.where) for h in main.hits] == [(2, "log")]
        await pilot.press("f", "ctrl+u", *"/bin/ls", "enter")
        await settle(app, pilot)
        assert [(h.seq, h.where, h.record_index) for h in main.hits] == [(4, "path", None)]
        await pilot.press("f", "ctrl+u", *"nowhere to be found", "enter")
        await settle(app, pilot)
        await pilot.press("n")
        assert main.hits == [] and "no match for 'nowhere to be found'" in screen_text(app)


async def test_output_tab_search_with_slash_n_and_shift_n(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        main = main_of(app)
        await pilot.press("f", *"needle", "enter")  # a global search first
        await settle(app, pilot)
        assert main.query_one(CommandList).selected == 2
        detail = main.query_one(CommandDetail)
        detail.show_tab("output")
        await settle(app, pilot)
        view = main.query_one(OutputView)
        view.focus()
        await pilot.pause()
        assert view.line_count == 2
        # No output search yet: n is still the global search's next match.
        await pilot.press("n")
        await settle(app, pilot)
        assert main.hit_index == 1 and main.query_one(CommandList).selected == 4
        await pilot.press("N")
        await settle(app, pilot)
        assert main.query_one(CommandList).selected == 2
        detail.show_tab("output")
        view.focus()
        await settle(app, pilot)
        assert "/ Search output" in screen_text(app)  # in the footer while the output has keys
        await pilot.press("slash")
        assert isinstance(app.screen, SearchScreen)
        assert "this command's output" in screen_text(app)
        await pilot.press(*"T_", "enter")
        await settle(app, pilot)
        assert view.match == (1, 10, 12)  # "FAILED test_needle.py::test_x": any case, line 2
        assert "'T_' in the output of command 2, line 2" in screen_text(app)
        await pilot.press("n")  # the next on the same line
        assert view.match == (1, 26, 28) and main.hit_index == 0  # the global search stays
        await pilot.press("n")  # wrapping around
        assert view.match == (1, 10, 12)
        await pilot.press("N")
        assert view.match == (1, 26, 28)
        drawn = view.render_line(1)
        current = view.get_component_rich_style("output--current-match")
        assert any(
            seg.text == "t_" and seg.style and seg.style.bgcolor == current.bgcolor for seg in drawn
        )
        await pilot.press("slash", "ctrl+u", *"zebra", "enter")
        await settle(app, pilot)
        assert view.match is None
        assert "no match for 'zebra' in the output of command 2" in screen_text(app)


async def test_timeline_bars_select_commands(open_app: OpenApp, small_recording: Path) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        timeline = app.screen.query_one(Timeline)
        commands = app.screen.query_one(CommandList)
        assert not timeline.display  # narrow: the list and the timeline take turns
        await pilot.press("t")
        assert timeline.display and not commands.parent.display  # type: ignore[union-attr]
        assert app.focused is timeline
        assert "make all" in screen_text(app) and "┬" in screen_text(app)  # bars and axis
        await pilot.press("down")
        await pilot.pause()
        assert timeline.selected == 2 and commands.selected == 2
        assert app.screen.query_one(CommandDetail).seq == 2
        await pilot.click(Timeline, offset=(10, 3))  # the fourth bar
        await pilot.pause()
        assert commands.selected == 4
        await pilot.press("t")
        assert commands.parent.display  # type: ignore[union-attr]


async def test_wide_terminal_shows_list_and_timeline_side_by_side(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        timeline = app.screen.query_one(Timeline)
        commands = app.screen.query_one(CommandList)
        assert timeline.display and commands.display
        assert timeline.region.x > commands.region.x
        # Selecting in the list highlights the bar.
        await pilot.press("down")
        assert timeline.selected == 2


async def test_findings_view_lists_check_findings_and_marks_frames(
    open_app: OpenApp, sample: Callable[[str], Path]
) -> None:
    app = open_app(sample("cut-off.cbor"))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        # A small recording is checked once indexed: findings marked before asking.
        report = app.check_report
        assert report is not None and report.findings
        detail = main_of(app).query_one(CommandDetail)
        assert detail.marks
        await pilot.press("c")
        assert isinstance(app.screen, FindingsScreen)
        await settle(app, pilot)
        text = screen_text(app)
        assert "truncated" in text and "errors found" in text
        marked = {f.index: f.code for f in report.findings if f.index is not None}
        assert detail.marks == marked
        # Enter on a finding with a command goes to it.
        screen = app.screen
        assert isinstance(screen, FindingsScreen)
        row = next(i for i, f in enumerate(screen.findings) if f.seq is not None)
        table = screen.query_one("DataTable")
        table.move_cursor(row=row)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert app.screen.query_one(CommandList).selected == screen.findings[row].seq
        await pilot.press("c")  # the second time the findings are there at once
        assert isinstance(app.screen, FindingsScreen)
        assert "errors found" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_findings_view_starts_the_check_when_none_ran(
    open_app: OpenApp, sample: Callable[[str], Path]
) -> None:
    app = open_app(sample("cut-off.cbor"), follow=True)  # followed: no check by itself
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        assert app.check_report is None
        await pilot.press("c")
        for _ in range(100):
            await pilot.pause(0.05)
            if app.check_report is not None:
                break
        await pilot.pause()
        assert app.check_report is not None
        assert "truncated" in screen_text(app)


async def test_reveal_secrets_key_toggles_the_source(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        assert app.source.reveal_secrets is False
        detail = app.screen.query_one(CommandDetail)
        detail.show_tab("exec")  # command 1 has API_TOKEN=hunter2 in its environment
        for _ in range(40):
            await pilot.pause(0.05)
            if "API_TOKEN=" in screen_text(app):
                break
        assert "API_TOKEN=" in screen_text(app) and "hunter2" not in screen_text(app)
        await pilot.press("R")
        assert app.source.reveal_secrets is True
        for _ in range(40):
            await pilot.pause(0.05)
            if "hunter2" in screen_text(app):
                break
        assert "API_TOKEN=hunter2" in screen_text(app)
        assert "secret environment values shown" in screen_text(app)
        await pilot.press("R")
        assert app.source.reveal_secrets is False
        for _ in range(40):
            await pilot.pause(0.05)
            if "hunter2" not in screen_text(app):
                break
        assert "hunter2" not in screen_text(app)


async def test_help_lists_every_key(open_app: OpenApp, small_recording: Path) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(100, 60)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.pause()
        help_screen = app.screen
        listed = {(what, key) for _part, keys, what in help_screen.rows for key in keys.split()}
        for key, what in [
            ("q", "Quit"),
            ("?", "Help"),
            ("/", "Filter"),
            ("w", "Where"),
            ("f", "Search"),
            ("n", "Next match"),
            ("N", "Previous match"),
            ("c", "Check"),
            ("t", "Timeline"),
            ("R", "Reveal secrets"),
            ("s", "Sort"),
            ("S", "Reverse sort"),
            ("Esc", "Clear filters"),
            ("tab", "Next part"),
            ("1", "Frames tab"),
            ("3", "File ops tab"),
            ("6", "Play tab"),
            ("/", "Search output"),
            ("n", "Next in output"),
            ("N", "Previous in output"),
            ("o", "Sort"),
        ]:
            assert (what, key) in listed, (key, what)
        # The panes' keys are listed too (gathered from every widget on the main screen).
        parts = {part for part, _keys, _what in help_screen.rows}
        assert {"ReclabApp", "MainScreen", "CommandList", "Timeline"} <= parts
        assert len(parts) > 4
        assert "Reverse sort" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_command_palette_offers_the_viewer_commands(
    open_app: OpenApp, small_recording: Path
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Search", "Check findings", "Where expression", "Reveal secrets"} <= titles
        await pilot.press("ctrl+p", *"check find")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, FindingsScreen)


async def test_cut_recording_says_where_and_why(
    open_app: OpenApp, sample: Callable[[str], Path]
) -> None:
    app = open_app(sample("cut-off.cbor"))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        snap = app.source.snapshot()
        assert snap.done and snap.truncation is not None and snap.truncation.kind == "cut"
        bar = app.screen.query_one(SessionBar).render().plain
        assert f"⚠ cut at byte {snap.truncation.offset}: the recording is cut" in bar
        assert app.screen.query_one(CommandList).rows == list(snap.commands)


async def test_garbage_in_the_middle_shows_what_comes_before_and_after(
    open_app: OpenApp, small_recording: Path, tmp_path: Path
) -> None:
    data = small_recording.read_bytes()
    broken = tmp_path / "broken.cbor"
    cut = len(header_record()) + len(
        command_records(
            1,
            ["make", "all"],
            [b"cc -c main.c\n", b"cc -c util.c\n"],
            start=T0 + 10**8,
            env=["HOME=/root", "API_TOKEN=hunter2"],
        )
    )
    broken.write_bytes(data[:cut] + b"\xff\xfe garbage" + data[cut:])
    app = open_app(broken)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        # the model resyncs after damage: every command is shown, and the damage is named
        assert app.screen.query_one(CommandList).rows == [1, 2, 3, 4]
        assert [d.offset for d in app.source.snapshot().damage] == [cut]
        bar = app.screen.query_one(SessionBar).render().plain
        assert f"at byte {cut}" in bar


async def test_follow_shows_appended_commands_and_keeps_the_place(tmp_path: Path) -> None:
    from agentproto import Direction, ExecMsg, Frame, FrameType, Recorder
    from reclab.tui.source import RecordingSource

    path = tmp_path / "live.cbor"
    writer = Recorder(path)
    writer.write_session_header()
    first = writer.write_command_start(ExecMsg(path="/bin/sh", argv=["sh", "-c", "one"]))
    writer.write_frame(first, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"1\n"))
    source = RecordingSource.open(path)
    app = ReclabApp(source, follow=True, follow_interval=0.05)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(app, pilot)
            commands = app.screen.query_one(CommandList)
            assert commands.rows == [first]
            assert "live" in app.screen.query_one(SessionBar).render().plain
            second = writer.write_command_start(ExecMsg(path="/bin/sh", argv=["sh", "-c", "two"]))
            writer.write_frame(
                first, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"more\n")
            )
            for _ in range(200):  # the follow timer picks the records up
                await pilot.pause(0.05)
                if len(commands.rows) == 2 and source.command(first).frame_count == 2:  # type: ignore[union-attr]
                    break
            assert commands.rows == [first, second]
            assert commands.selected == first  # the user's place is kept
            assert source.command(first).frame_count == 2  # type: ignore[union-attr]
            # The selected command's frames pane grew too.
            frames = app.screen.query_one(FrameList)
            for _ in range(100):
                await pilot.pause(0.05)
                if frames.virtual_size.height == 2:
                    break
            assert frames.virtual_size.height == 2
            await pilot.press("down")
            writer.write_command_end(second, 0)
            writer.close()
            for _ in range(200):
                await pilot.pause(0.05)
                if source.snapshot().footer is not None:
                    break
            await pilot.pause()
            assert commands.selected == second
            assert "footer says 2" in app.screen.query_one(SessionBar).render().plain
    finally:
        source.close()


async def test_q_quits(open_app: OpenApp, small_recording: Path) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_uses_the_room_it_gets(
    open_app: OpenApp, small_recording: Path, size: tuple[int, int]
) -> None:
    app = open_app(small_recording)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        detail = app.screen.query_one(CommandDetail)
        commands = app.screen.query_one(CommandList)
        # The list takes the rows it needs (4 commands, a title; on a wide screen the
        # timeline's axis too), the detail all the rest.
        top = app.screen.query_one("#top")
        assert commands.region.height >= 4 and top.region.height <= 6
        assert detail.region.width == size[0]
        assert detail.region.height >= size[1] - top.region.height - 6
        text = screen_text(app)
        assert "q Quit" in text and "make all" in text


async def test_hostile_argv_cwd_and_header_reach_the_screen_harmlessly(tmp_path: Path) -> None:
    from agentproto import Record, RecordType, SessionHeader
    from reclab.tui.source import RecordingSource

    hostile = "\x1b]52;c;aGVsbG8=\x07\x1b]0;owned\x07\x1b[2J\x9b31m\u202eevil"
    header = SessionHeader(
        version="1", start_time=T0, local_user=hostile, local_pid=1, agent_path=hostile
    )
    path = tmp_path / "hostile.cbor"
    path.write_bytes(
        Record(type=RecordType.SESSION_HEADER, header=header).to_cbor()
        + command_records(1, ["sh", hostile], [b"x"], start=T0 + 1000)
        + footer_record(T0 + 10**9, 1)
    )
    source = RecordingSource.open(path)
    app = ReclabApp(source)
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("f", *"evil", "enter")  # the status line shows the match too
            await settle(app, pilot)
            await pilot.press("t")
            await pilot.pause()
            text = screen_text(app)
            assert "\\e]52;c;aGVsbG8=" in text  # shown, not obeyed
            for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
                assert bad not in text
    finally:
        source.close()


async def test_recording_without_footer_says_so_and_where(
    open_app: OpenApp, small_recording: Path, tmp_path: Path
) -> None:
    data = small_recording.read_bytes()
    unfinished = tmp_path / "unfinished.cbor"
    end = len(data) - len(footer_record(T0 + 10**9, 4))
    unfinished.write_bytes(data[:end])
    app = open_app(unfinished)
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(app, pilot)
        bar = app.screen.query_one(SessionBar).render().plain
        assert f"⚠ no session footer after byte {end}" in bar
        assert "footer says" not in bar and "commands 4" in bar
