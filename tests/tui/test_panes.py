"""The per-command panes (reclab.tui.widgets.command_detail and friends), driven with Pilot.

Each test builds a tiny app holding one CommandDetail over a minimal source
(the attributes RecordingSource has), on sample recordings or recordings
written here with agentproto's Recorder.
"""

from __future__ import annotations

import asyncio
import functools
import io
import random
import threading
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import TabbedContent

from agentproto import (
    AgentConfig,
    CommandEnd,
    CommandStart,
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    Record,
    RecordedFrame,
    Recorder,
    RecordType,
    SessionFooter,
    SessionHeader,
)
from agentproto.recording import encode_frame_record
from reclab.model import Command, Recording, open_recording
from reclab.tui.screens.frame_detail import FrameDetailScreen, cbor_diagnostic
from reclab.tui.widgets.command_detail import CommandDetail
from reclab.tui.widgets.exec import MASK, ExecPane, mask_env
from reclab.tui.widgets.fileops import FileOpsTable
from reclab.tui.widgets.frames import ActivityStrip, FrameList
from reclab.tui.widgets.logs import LogsTable
from reclab.tui.widgets.output import MAX_LINE, OutputView
from reclab.tui.widgets.playback import PlaybackView, Player

SAMPLES = Path(__file__).resolve().parents[2] / "sample-recordings"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SEND, RECV = Direction.SEND, Direction.RECV


def sync(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async Pilot test in its own event loop (no async pytest plugin is installed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


class Source:
    """The part of RecordingSource the panes use (see CommandSource)."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.reveal_secrets = False

    def snapshot(self) -> object:
        return None

    def command(self, seq: int) -> Command | None:
        return self.rec.commands.get(seq)


class DetailApp(App[None]):
    def __init__(self, rec: Recording, **detail: Any) -> None:
        super().__init__()
        self.source = Source(rec)
        self.selected: list[int] = []

    def compose(self) -> ComposeResult:
        yield CommandDetail(self.source, id="detail")

    def on_command_detail_frame_selected(self, event: CommandDetail.FrameSelected) -> None:
        self.selected.append(event.record_index)


def data(stream: int, payload: bytes) -> Frame:
    return Frame(type=FrameType.DATA, stream=stream, data=payload)


def write_recording(
    path: Path,
    frames: Iterable[tuple[int, Direction, Frame]],
    *,
    env: list[str] | None = None,
    argv: list[str] | None = None,
    exit_code: int | None = 0,
) -> Path:
    """One command (seq 1) with ``frames`` as (milliseconds, direction, frame); footer last."""
    header = SessionHeader(version="1.3.4", start_time=T0, local_user="u", local_pid=1)
    exec_msg = ExecMsg(path="/bin/prog", argv=argv or ["prog", "--flag"], env=env, cwd="/work")
    with Recorder(path) as rec:
        rec.write_record(Record(type=RecordType.SESSION_HEADER, header=header))
        start = CommandStart(seq=1, start_time=T0, exec=exec_msg)
        rec.write_record(Record(type=RecordType.COMMAND_START, cmd_start=start))
        last = 0
        for ms, direction, frame in frames:
            rf = RecordedFrame(seq=1, timestamp=T0 + ms * MS, direction=direction, frame=frame)
            rec.write_record(Record(type=RecordType.FRAME, frame=rf))
            last = ms
        if exit_code is not None:
            end = CommandEnd(seq=1, end_time=T0 + (last + 1) * MS, exit_code=exit_code)
            rec.write_record(Record(type=RecordType.COMMAND_END, cmd_end=end))
        footer = SessionFooter(end_time=T0 + (last + 2) * MS, command_count=1)
        rec.write_record(Record(type=RecordType.SESSION_FOOTER, footer=footer))
        rec._footer_written = True
    return path


async def settle(app: App[Any], pilot: Any) -> None:
    """Let lazy panes mount and workers finish."""
    for _ in range(3):
        await pilot.pause()
    await app.workers.wait_for_complete()
    for _ in range(2):
        await pilot.pause()


async def eventually(pilot: Any, condition: Callable[[], bool]) -> bool:
    """Let the app run (timers fire) until ``condition`` holds; give up after many steps."""
    for _ in range(100):
        if condition():
            return True
        await pilot.pause(0.05)
    return condition()


def drawn_text(widget: Any) -> str:
    """Everything the widget draws at its size, as plain text."""
    region = Region(0, 0, widget.size.width, widget.size.height)
    return "\n".join(strip.text.rstrip() for strip in widget.render_lines(region))


def lines(widget: Any, count: int | None = None) -> list[str]:
    """The text of the widget's visible lines as drawn by render_line."""
    height = widget.scrollable_content_region.height if count is None else count
    return [widget.render_line(y).text.rstrip() for y in range(height)]


# --- tabs ---------------------------------------------------------------------------------


@sync
async def test_tabs_switch_and_load_only_when_shown() -> None:
    with open_recording(SAMPLES / "failing-build.cbor") as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            await settle(app, pilot)
            assert detail.active_tab == "frames"
            assert app.query_one(FrameList).count == rec.commands[1].frame_count
            assert not app.query(OutputView)  # not shown yet: not even mounted
            # Switching by clicking the tab, as a user does.
            await pilot.click("#command-tabs Tab#--content-tab-output")
            await settle(app, pilot)
            assert app.query_one(TabbedContent).active == "output"
            output = app.query_one(OutputView)
            assert output.seq == 1 and output.line_count == 5
            for tab in ("fileops", "logs", "exec", "play"):
                detail.show_tab(tab)
                await settle(app, pilot)
                assert detail.active_tab == tab
                if tab == "exec":
                    assert "exit code  2" in drawn_text(app.query_one(ExecPane))
            detail.show_command(None)
            await settle(app, pilot)
            with pytest.raises(ValueError, match="no tab"):
                detail.show_tab("nope")


# --- frames -------------------------------------------------------------------------------


@sync
async def test_frames_growing_command_redraws_no_row_already_drawn() -> None:
    # While indexing (or following) the selected command grows at every snapshot:
    # the rows on screen are the same, so they are not drawn again.
    with open_recording(SAMPLES / "failing-build.cbor") as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            app.query_one(CommandDetail).show_command(1)
            await settle(app, pilot)
            frames = app.query_one(FrameList)
            drawn: list[int] = []
            render_row = frames.render_row
            frames.render_row = lambda row, selected: (
                drawn.append(row)
                or render_row(  # type: ignore[method-assign]
                    row, selected
                )
            )
            before = lines(frames)
            assert drawn == []  # all cached from the first paint
            frames.refresh_command()
            await pilot.pause()
            assert lines(frames) == before and drawn == []
            frames.show_command(1)  # another command (here: the same one, anew): drawn again
            assert lines(frames) == before and drawn


@sync
async def test_frames_cursor_moves_and_enter_opens_frame_detail() -> None:
    with open_recording(SAMPLES / "failing-build.cbor") as rec:
        cmd = rec.commands[1]
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            app.query_one(CommandDetail).show_command(1)
            await settle(app, pilot)
            frames = app.query_one(FrameList)
            assert not frames.has_focus  # selecting a command does not take the keys
            await pilot.click("#frame-list")  # the user goes to the frames
            assert frames.has_focus and frames.cursor == 0
            first = lines(frames, 3)
            assert "→ EXEC" in first[0] and "sh -c" in first[0]
            await pilot.press("down", "down")
            assert frames.cursor == 2
            await pilot.press("end")
            assert frames.cursor == cmd.frame_count - 1
            await pilot.press("home", "down", "enter")
            await pilot.pause()
            assert isinstance(app.screen, FrameDetailScreen)
            index = cmd.record_indexes[1]
            assert app.selected == [index]
            fields = str(app.screen.query_one("#fields").render())
            assert "type: FRAME" in fields and "stream" in fields
            diagnostic = str(app.screen.query_one("#diagnostic").render())
            assert diagnostic.startswith("{\n") and '"type": 3' in diagnostic
            hex_dump = str(app.screen.query_one("#hex").render())
            assert hex_dump.startswith(f"{rec.offset_of(index):08x}  a2")
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, FrameDetailScreen)


@sync
async def test_jump_to_frame_and_findings_marks() -> None:
    with open_recording(SAMPLES / "failing-build.cbor") as rec:
        cmd = rec.commands[1]
        target = cmd.record_indexes[5]
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("exec")
            await settle(app, pilot)
            detail.set_findings({target: "exit-mismatch"})
            detail.jump_to_frame(target)
            await settle(app, pilot)
            frames = app.query_one(FrameList)
            assert detail.active_tab == "frames" and frames.cursor == 5
            drawn = lines(frames, cmd.frame_count)
            assert drawn[5].startswith("● exit-mismatch +0.")
            assert not any("●" in line for n, line in enumerate(drawn) if n != 5)
            # The mark is drawn in the mark style, not only as text.
            segments = list(frames.render_line(5))
            mark = next(s for s in segments if s.text.startswith("●"))
            assert mark.style is not None and mark.style.bold


@sync
async def test_frames_follow_keeps_cursor(tmp_path: Path) -> None:
    path = tmp_path / "grow.cbor"
    frames_in = [(n, RECV, data(1, f"line {n}\n".encode())) for n in range(10)]
    write_recording(path, frames_in, exit_code=None)
    blob = path.read_bytes()
    # Cut the footer off, as a recording being written has none yet.
    footer = Record(
        type=RecordType.SESSION_FOOTER, footer=SessionFooter(end_time=T0 + 11 * MS, command_count=1)
    ).to_cbor()
    path.write_bytes(blob[: -len(footer)])
    with open_recording(path) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            await settle(app, pilot)
            frame_list = app.query_one(FrameList)
            frame_list.focus()
            await pilot.press("down", "down", "down")
            assert frame_list.count == 10 and frame_list.cursor == 3
            more = b"".join(
                encode_frame_record(1, T0 + (20 + n) * MS, 2, data(1, b"more\n").to_cbor())
                for n in range(5)
            )
            with path.open("ab") as f:
                f.write(more)
            assert rec.refresh() == 5
            detail.refresh_command()
            await settle(app, pilot)
            assert frame_list.count == 15 and frame_list.cursor == 3
            await pilot.press("end")
            assert "more" in lines(frame_list, 15)[14]


@sync
async def test_output_follow_reads_on_and_keeps_place(tmp_path: Path) -> None:
    path = tmp_path / "grow.cbor"
    # A line cut between the last old frame and the first new one.
    old = [(n, RECV, data(1, f"line {n}\n".encode())) for n in range(50)]
    old.append((50, RECV, data(1, b"half ")))
    write_recording(path, old, exit_code=None)
    footer = Record(
        type=RecordType.SESSION_FOOTER, footer=SessionFooter(end_time=T0 + 52 * MS, command_count=1)
    ).to_cbor()
    path.write_bytes(path.read_bytes()[: -len(footer)])
    with open_recording(path) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(100, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)
            assert view.line_count == 51
            view.scroll_to(y=20, animate=False, immediate=True)
            chunks_before = len(view._index.chunk_record)
            with path.open("ab") as f:
                f.write(encode_frame_record(1, T0 + 51 * MS, 2, data(1, b"line\n").to_cbor()))
                f.write(encode_frame_record(1, T0 + 52 * MS, 2, data(2, b"err\n").to_cbor()))
                f.write(encode_frame_record(1, T0 + 53 * MS, 2, data(1, b"last\n").to_cbor()))
            assert rec.refresh() == 3
            detail.refresh_command()
            await settle(app, pilot)
            # Read on from where it stopped: only the new frames were added.
            assert len(view._index.chunk_record) == chunks_before + 3
            assert int(view.scroll_y) == 20
            tail = [(view.line_stream(n), view.line_text(n).plain) for n in range(50, 53)]
            assert tail == [(1, "half line"), (2, "err"), (1, "last")]


@sync
async def test_selecting_commands_leaves_the_focus_alone() -> None:
    with open_recording(SAMPLES / "concurrent.cbor") as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(100, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            app.set_focus(None)
            for seq in rec.commands:
                detail.show_command(seq)
                await settle(app, pilot)
                assert app.focused is None  # the main screen's list would keep the keys
                assert app.query_one(FrameList).count == rec.commands[seq].frame_count
            detail.show_tab("output")  # a tab the user (or a search) chose takes the keys
            await settle(app, pilot)
            assert app.focused is app.query_one(OutputView)


@sync
async def test_activity_strip_shows_bursts_per_stream(tmp_path: Path) -> None:
    # A burst of stdout at the start, a stall, stderr at the end.
    frames_in = [(0, RECV, data(1, b"x" * 1000)), (1, RECV, data(1, b"y" * 1000))]
    frames_in += [(999, RECV, data(2, b"oops\n"))]
    with open_recording(write_recording(tmp_path / "a.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(105, 30)) as pilot:
            app.query_one(CommandDetail).show_command(1)
            await settle(app, pilot)
            strip = app.query_one(ActivityStrip)
            assert sorted(strip.bins) == [1, 2]
            out, err = (line.plain for line in strip.rows(105))
            assert out.startswith("out  █") and out.endswith(" ")
            assert err.startswith("err  ") and err[5] == " " and err.rstrip()[-1] != " "
            assert len(out) == 105
            drawn = lines(strip, 2)
            assert drawn[0].startswith("out  █")


# --- output -------------------------------------------------------------------------------


@sync
async def test_output_interleaved_or_one_stream() -> None:
    with open_recording(SAMPLES / "failing-build.cbor") as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)
            view.focus()
            both = lines(view, view.line_count)
            assert [line[:4] for line in both] == ["out│", "out│", "err│", "err│", "err│"]
            assert both[2] == "err│main.c:42:9: error: implicit declaration of function parse_args"
            await pilot.press("s")  # stdout alone
            await settle(app, pilot)
            assert view.stream == 1
            assert lines(view, view.line_count) == [
                "cc -O2 -Wall -c -o parser.o parser.c",
                "cc -O2 -Wall -c -o main.o main.c",
            ]
            await pilot.press("s")  # stderr alone
            await settle(app, pilot)
            assert view.stream == 2 and view.line_count == 3
            await pilot.press("s")  # all again
            await settle(app, pilot)
            assert view.stream is None and view.line_count == 5
            # stdout and stderr are told apart by colour, not only by the label.
            colours = {str(next(iter(view.render_line(y))).style.color) for y in (0, 2)}
            assert len(colours) == 2


@sync
async def test_output_search_next_and_previous(tmp_path: Path) -> None:
    text = b"".join(f"line {n}{' needle' if n % 10 == 3 else ''}\n".encode() for n in range(100))
    # Split across frames at odd places: a line may span frames.
    chunks = [text[i : i + 37] for i in range(0, len(text), 37)]
    frames_in = [(n, RECV, data(1, c)) for n, c in enumerate(chunks)]
    with open_recording(write_recording(tmp_path / "s.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(100, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)
            assert view.line_count == 100
            assert view.line_bytes(13) == b"line 13 needle\n"
            assert detail.search_output("NEEDLE")
            assert view.match == (3, 7, 13)
            assert detail.search_output("needle") and view.match[0] == 13
            assert detail.search_output("needle") and view.match[0] == 23
            assert detail.search_output("needle", forward=False) and view.match[0] == 13
            assert detail.search_output("needle", forward=False) and view.match[0] == 3
            assert detail.search_output("needle", forward=False) and view.match[0] == 93  # wraps
            await pilot.pause()
            # The match is on screen and highlighted in the drawn line.
            y = 93 - int(view.scroll_y)
            assert 0 <= y < view.scrollable_content_region.height
            segments = list(view.render_line(y))
            hit = next(s for s in segments if s.text == "needle")
            assert hit.style is not None and hit.style.bgcolor is not None
            assert not detail.search_output("absent")


def reference_line_starts(stream: bytes, max_line: int) -> list[int]:
    """Where lines start: after each newline, and every max_line bytes of a longer line."""
    starts, pos = [], 0
    while pos < len(stream):
        starts.append(pos)
        nl = stream.find(b"\n", pos, pos + max_line)
        pos = nl + 1 if nl >= 0 else min(pos + max_line, len(stream))
    return starts


@sync
async def test_output_lines_cut_at_newlines_and_long_lines(tmp_path: Path) -> None:
    rng = random.Random(9)
    pieces = [b"short\n", b"x" * (MAX_LINE - 1) + b"\n", b"y" * MAX_LINE + b"\n", b"\n"]
    pieces += [b"z" * (3 * MAX_LINE + 5), b"\n", b"tail without newline"]
    stream = b"".join(rng.choice(pieces) for _ in range(60)) + b"".join(pieces)
    cuts = sorted(rng.sample(range(1, len(stream)), 40))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    frames_in = [(n, RECV, data(1, chunk)) for n, chunk in enumerate(chunks)]
    with open_recording(write_recording(tmp_path / "l.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(100, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)
            expected = reference_line_starts(stream, MAX_LINE)
            assert list(view._index.line_pos) == expected
            assert b"".join(view.line_bytes(n) for n in range(view.line_count)) == stream


@sync
async def test_output_search_sees_what_is_shown(tmp_path: Path) -> None:
    # Matches the raw bytes do not hold as such: split by SGR, across a tab, an escape.
    text = b"plain\nerr\x1b[1mor here\nkey:\tvalue\nclip \x1b]52;c;eA==\x07\nend\n"
    lines_in = [(0, RECV, data(1, text))]
    with open_recording(write_recording(tmp_path / "e.cbor", lines_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(100, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)
            assert detail.search_output("error") and view.match == (1, 0, 5)
            assert detail.search_output(":   ") and view.match[0] == 2
            assert detail.search_output("\\e]52") and view.match[0] == 3


@sync
async def test_output_colours_carry_across_lines_of_their_stream(tmp_path: Path) -> None:
    frames_in = [
        (0, RECV, data(1, b"\x1b[31mred starts\nstill red\n")),
        (1, RECV, data(2, b"stderr is plain\n")),
        (2, RECV, data(1, b"red again\n\x1b[0mplain now\n")),
    ]
    with open_recording(write_recording(tmp_path / "c.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(100, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)

            def colour(n: int) -> int | None:
                spans = [s for s in view.line_text(n).spans if s.style.color]  # type: ignore[union-attr]
                return spans[0].style.color.number if spans else None  # type: ignore[union-attr]

            red = 1  # SGR 31
            # Drawn out of order first (a jump): the state is found by looking back.
            assert view.line_text(3).plain == "red again" and colour(3) == red
            assert [colour(n) for n in range(5)] == [red, red, None, red, None]
            assert view.line_text(4).plain == "plain now"


@sync
async def test_hostile_output_reaches_the_screen_harmlessly(tmp_path: Path) -> None:
    hostile = (
        b"\x1b]52;c;cm0gLXJmIH4=\x07clipboard\n"
        b"\x1b]0;pwned title\x1b\\title\n"
        b"\x1b[2J\x1b[H\x1b[10;1Hcursor\n"
        b"\xc2\x9b31mC1 csi \xc2\x85 nel\n"
        b"user\xe2\x80\xaegnp.exe bidi\n"
        b"\x1b[32mgreen\x1b[0m ok\n"
    )
    frames_in = [(0, RECV, data(1, hostile[:30])), (1, RECV, data(1, hostile[30:]))]
    with open_recording(write_recording(tmp_path / "h.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)
            assert view.line_count == 6
            segments = [seg for y in range(6) for seg in view.render_line(y)]
            drawn = "".join(seg.text for seg in segments)
            for bad in ("\x1b", "\x07", "\x9b", "\x85", "\u202e", "\x9c"):
                assert bad not in drawn
            assert "\\e]52;c;cm0gLXJmIH4=\\aclipboard" in drawn
            assert "\\e]0;pwned title\\e\\\\title" in drawn
            assert "\\e[2J\\e[H\\e[10;1Hcursor" in drawn
            assert "\\x9b31mC1 csi \\x85 nel" in drawn
            assert "user\\u202egnp.exe bidi" in drawn
            green = next(seg for seg in segments if seg.text == "green")
            assert green.style is not None and green.style.color is not None
            # The same bytes in the frames list and in the frame detail screen.
            detail.show_tab("frames")
            await settle(app, pilot)
            frames = app.query_one(FrameList)
            rows = [seg.text for y in range(frames.count) for seg in frames.render_line(y)]
            assert "\\e]52;c;cm0gLXJmIH4=\\x07clipboard" in "".join(rows)
            frames.focus()
            await pilot.press("enter")  # the first data frame
            await settle(app, pilot)
            screen = app.screen
            assert isinstance(screen, FrameDetailScreen)
            shown = ""
            for part in ("#fields", "#diagnostic", "#hex"):
                widget = screen.query_one(part)
                region = Region(0, 0, widget.size.width, widget.size.height)
                shown += "".join(seg.text for strip in widget.render_lines(region) for seg in strip)
            for bad in ("\x1b", "\x07", "\x9b", "\x85", "\u202e", "\x9c"):
                assert bad not in shown
            assert "h'1b5d35323b633b" in shown  # the data in diagnostic notation
            assert "\\e]52;c;cm0gLXJmIH4=\\x07" in shown  # the data field, escaped


@sync
async def test_a_file_that_shrinks_under_the_panes_is_reported_not_fatal(tmp_path: Path) -> None:
    frames_in = [(n, RECV, data(n % 2 + 1, b"line %d\n" % n)) for n in range(40)]
    path = write_recording(tmp_path / "shrink.cbor", frames_in)
    with open_recording(path) as rec:
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.truncate(size // 2)  # another program cut the file after it was indexed
        app = DetailApp(rec)
        async with app.run_test(size=(100, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            for tab in ("output", "play"):
                detail.show_tab(tab)
                await settle(app, pilot)
            messages = [n.message for n in app._notifications]
            assert any(m.startswith("cannot read the output:") for m in messages)
            assert any(m.startswith("cannot read the playback:") for m in messages)
            view = app.query_one(OutputView)
            assert not view.indexing  # what could be read is all there is
            assert app.is_running


@sync
async def test_binary_output_is_a_hex_dump(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 2
    frames_in = [(0, RECV, data(1, blob[:100])), (1, RECV, data(1, blob[100:]))]
    with open_recording(write_recording(tmp_path / "b.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("output")
            await settle(app, pilot)
            view = app.query_one(OutputView)
            assert view.line_count == 32
            drawn = lines(view, 32)
            assert drawn[0].startswith("out│00000000  00 01 02 03")
            assert drawn[6].startswith("out│00000060  60 61 62 63")  # across the frame boundary
            assert drawn[31].endswith("|................|")


# --- file ops, logs, exec ----------------------------------------------------------------


@sync
async def test_fileops_pairs_highlight_and_sort() -> None:
    with open_recording(SAMPLES / "fileops.cbor") as rec:
        seq = next(s for s, c in rec.commands.items() if c.file_op_count)
        app = DetailApp(rec)
        async with app.run_test(size=(140, 40)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(seq)
            detail.show_tab("fileops")
            await settle(app, pilot)
            table = app.query_one(FileOpsTable)
            assert table.row_count == table.total == 46
            errnos = {str(table.get_row_at(r)[7]) for r in range(table.row_count)}
            assert {"ENOENT", "EBADF", "EACCES", "ENOSYS", "ok"} <= errnos
            failed = next(
                r for r in range(table.row_count) if str(table.get_row_at(r)[7]) == "ENOENT"
            )
            assert table.get_row_at(failed)[1].style == "red"
            table.sort_by("latency", reverse=True)
            latencies = [table.value(r, "latency") for r in range(table.row_count)]
            known = [v for v in latencies if v is not None]  # unanswered ones: last
            assert latencies == known + [None] * (len(latencies) - len(known))
            assert known == sorted(known, reverse=True)
            # A click on the "op" header sorts by op; a second click reverses.
            op_x = 1 + table.columns[0].width + 1 + 1
            assert table.column_at(op_x) == "op"
            await pilot.click("FileOpsTable", offset=(op_x, 0))
            await pilot.pause()
            assert table.sort_column == "op" and not table.sort_reverse
            assert "op▲" in lines(table, 1)[0]
            ops = [str(table.get_row_at(r)[1]) for r in range(table.row_count)]
            named = [op for op in ops if op]  # responses without a request have no op: last
            assert ops == named + [""] * (len(ops) - len(named)) and named == sorted(named)
            await pilot.click("FileOpsTable", offset=(op_x, 0))
            await pilot.pause()
            assert table.sort_reverse
            table.focus()
            await pilot.press("o")
            assert table.sort_column == "path" and not table.sort_reverse


@sync
async def test_fileops_shows_every_pair_of_a_big_command(tmp_path: Path) -> None:
    # 12,000 pairs: more than the old 10,000-row cap; all are shown, drawn only when on screen.
    pairs = 12_000
    frames_in: list[tuple[int, Direction, Frame]] = []
    for i in range(1, pairs + 1):
        req = FileOpReq(req_id=i, op=FileOp.STAT, path=f"/f/{i:05d}")
        resp = FileOpResp(req_id=i, errno=2 if i % 1000 == 0 else 0)
        frames_in.append((i, SEND, Frame(type=FrameType.FILE_OP, file_op=req)))
        frames_in.append((i, RECV, Frame(type=FrameType.FILE_RESP, file_resp=resp)))
    with open_recording(write_recording(tmp_path / "many.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("fileops")
            await settle(app, pilot)
            table = app.query_one(FileOpsTable)
            assert table.row_count == table.total == pairs
            drawn: list[int] = []
            cells = table.cells
            table.cells = lambda item: drawn.append(item) or cells(item)  # type: ignore[method-assign]
            table.focus()
            await pilot.press("end")
            await pilot.pause()
            assert table.cursor == pairs - 1
            shown = lines(table)
            assert "/f/12000" in shown[-1] and "ENOENT" in shown[-1]
            assert table.get_row_at(pairs - 1)[1].style == "red"
            # Sorting by path, reversed: the cursor keeps its pair (now first).
            path_x = 1 + sum(c.width + 1 for c in table.columns[:2]) + 1
            await pilot.click("FileOpsTable", offset=(path_x, 0))
            await pilot.click("FileOpsTable", offset=(path_x, 0))
            await pilot.pause()
            assert table.sort_column == "path" and table.sort_reverse
            assert table.cursor == 0 and str(table.get_row_at(0)[2]) == "/f/12000"
            assert str(table.get_row_at(pairs - 1)[2]) == "/f/00001"
            await pilot.press("end")
            await pilot.pause()
            assert "/f/00001" in lines(table)[-1]
            assert len(set(drawn)) < 200  # only rows on screen were drawn


@sync
async def test_fileops_says_it_is_reading_until_the_pairs_come(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    build = FileOpsTable.build

    def held_build(self: FileOpsTable, view: Any, cmd: Any) -> Any:
        release.wait(timeout=60)
        return build(self, view, cmd)

    monkeypatch.setattr(FileOpsTable, "build", held_build)
    with open_recording(SAMPLES / "fileops.cbor") as rec:
        seq = next(s for s, c in rec.commands.items() if c.file_op_count)
        app = DetailApp(rec)
        async with app.run_test(size=(140, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(seq)
            detail.show_tab("fileops")
            for _ in range(5):
                await pilot.pause()
            table = app.query_one(FileOpsTable)
            assert table.row_count == 0 and lines(table, 2)[1] == " reading the file ops…"
            release.set()
            await settle(app, pilot)
            assert table.row_count == 46 and "reading" not in lines(table, 2)[1]


@sync
async def test_fileops_slow_ones_are_highlighted(tmp_path: Path) -> None:
    req = FileOpReq(req_id=1, op=FileOp.STAT, path="/slow")
    fast = FileOpReq(req_id=2, op=FileOp.STAT, path="/fast")
    frames_in = [
        (0, SEND, Frame(type=FrameType.FILE_OP, file_op=req)),
        (1, SEND, Frame(type=FrameType.FILE_OP, file_op=fast)),
        (2, RECV, Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=2))),
        (500, RECV, Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=1))),
    ]
    with open_recording(write_recording(tmp_path / "f.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("fileops")
            await settle(app, pilot)
            table = app.query_one(FileOpsTable)
            rows = {str(table.get_row_at(r)[2]): table.get_row_at(r) for r in range(2)}
            assert rows["/slow"][6].style == "yellow" and str(rows["/slow"][6]) == "500.000 ms"
            assert rows["/fast"][6].style == ""


@sync
async def test_fileops_of_one_command_only(tmp_path: Path) -> None:
    # Two commands at once, both using request id 1: each tab pairs its own.
    path = tmp_path / "two.cbor"
    header = SessionHeader(version="1.3.4", start_time=T0, local_user="u", local_pid=1)
    with Recorder(path) as rec:
        rec.write_record(Record(type=RecordType.SESSION_HEADER, header=header))
        for seq in (1, 2):
            start = CommandStart(seq=seq, start_time=T0, exec=ExecMsg(path="/bin/x", argv=["x"]))
            rec.write_record(Record(type=RecordType.COMMAND_START, cmd_start=start))
        for ms, seq, direction, frame in [
            (1, 1, SEND, Frame(type=FrameType.FILE_OP, file_op=FileOpReq(1, FileOp.STAT, "/one"))),
            (2, 2, SEND, Frame(type=FrameType.FILE_OP, file_op=FileOpReq(1, FileOp.STAT, "/two"))),
            (3, 2, RECV, Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(1, errno=2))),
            (9, 1, RECV, Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(1))),
        ]:
            rf = RecordedFrame(seq=seq, timestamp=T0 + ms * MS, direction=direction, frame=frame)
            rec.write_record(Record(type=RecordType.FRAME, frame=rf))
    with open_recording(path) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 20)) as pilot:
            detail = app.query_one(CommandDetail)
            shown = {}
            for seq in (1, 2):
                detail.show_command(seq)
                detail.show_tab("fileops")
                await settle(app, pilot)
                table = app.query_one(FileOpsTable)
                shown[seq] = [
                    [str(cell) for cell in table.get_row_at(r)] for r in range(table.row_count)
                ]
            assert [row[2] for row in shown[1]] == ["/one"] and shown[1][0][6] == "8.000 ms"
            assert [row[2] for row in shown[2]] == ["/two"] and shown[2][0][7] == "ENOENT"


@sync
async def test_logs_with_levels() -> None:
    with open_recording(SAMPLES / "agent-logs.cbor") as rec:
        seq = max(rec.commands, key=lambda s: rec.commands[s].log_count)
        app = DetailApp(rec)
        async with app.run_test(size=(140, 40)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(seq)
            detail.show_tab("logs")
            await settle(app, pilot)
            table = app.query_one(LogsTable)
            assert table.row_count == rec.commands[seq].log_count
            levels = {
                str(table.get_row_at(r)[1]): table.get_row_at(r)[1].style
                for r in range(table.row_count)
            }
            assert "INFO" in levels and levels["INFO"] == "green"
            assert set(levels) & {"WARN", "ERROR"}
            table.sort_by("level", reverse=True)  # by severity, not by name
            order = {"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3}
            shown = [order[level.split("+")[0].split("-")[0]] for level in table.levels]
            assert shown == sorted(shown, reverse=True)


@sync
async def test_logs_attrs_and_exec_config(tmp_path: Path) -> None:
    log = LogEntry(level=8, msg="boom", attrs=["path=/x", "errno=2"])
    cfg = AgentConfig(env_keep=["PATH", "LANG"], env_remove=["AWS_*"])
    frames_in = [
        (0, SEND, Frame(type=FrameType.CONFIG, config=cfg)),
        (1, RECV, Frame(type=FrameType.LOG, log=log)),
        (2, RECV, Frame(type=FrameType.SIGNAL, signal=15)),
    ]
    path = write_recording(tmp_path / "l.cbor", frames_in, exit_code=143)
    with open_recording(path) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("logs")
            await settle(app, pilot)
            row = app.query_one(LogsTable).get_row_at(0)
            assert [str(c) for c in row[1:]] == ["ERROR", "boom", "path=/x errno=2"]
            assert row[1].style == "bold red"
            detail.show_tab("exec")
            await settle(app, pilot)
            shown = drawn_text(app.query_one(ExecPane))
            assert "env keep    PATH LANG" in shown and "env remove  AWS_*" in shown
            assert "exit code   143" in shown and "SIGTERM (15)" in shown


def test_mask_env() -> None:
    env = ["API_TOKEN=abc", "db_password=pw", "HOME=/root", "AWS_SECRET_ACCESS_KEY=k", "NOEQ"]
    assert mask_env(env, reveal=False) == [
        f"API_TOKEN={MASK}",
        f"db_password={MASK}",
        "HOME=/root",
        f"AWS_SECRET_ACCESS_KEY={MASK}",
        "NOEQ",
    ]
    assert mask_env(env, reveal=True) == env


@sync
async def test_exec_masks_secrets_until_revealed(tmp_path: Path) -> None:
    env = ["GITHUB_TOKEN=ghp_topsecret", "HOME=/home/u", "Auth_Header=Bearer xyz"]
    path = write_recording(tmp_path / "e.cbor", [(0, RECV, data(1, b"hi\n"))], env=env)
    with open_recording(path) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(120, 30)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("exec")
            await settle(app, pilot)
            pane = app.query_one(ExecPane)
            shown = drawn_text(pane)
            assert "ghp_topsecret" not in shown and "Bearer xyz" not in shown
            assert f"GITHUB_TOKEN={MASK}" in shown and "HOME=/home/u" in shown
            assert "prog --flag" in shown and "/work" in shown
            app.source.reveal_secrets = True
            detail.refresh_secrets()
            await pilot.pause()
            shown = drawn_text(pane)
            assert "GITHUB_TOKEN=ghp_topsecret" in shown and "Bearer xyz" in shown
            # Without being told, the pane notices the change on its own.
            app.source.reveal_secrets = False
            assert await eventually(pilot, lambda: "ghp_topsecret" not in drawn_text(pane))


# --- playback -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_player_idle_cap_speed_and_seek() -> None:
    player = Player([0.0, 1.0, 11.0, 12.0], idle_cap=2.0)
    assert player.duration == 4.0  # the 10 s pause plays as 2 s
    player.toggle()
    player.step(1.0)
    assert player.shown == 2 and player.recorded_time() == 1.0
    player.step(2.0)
    assert player.shown == 3 and player.recorded_time() == 11.0
    player.faster()
    player.step(0.5)  # 1 s of playback at 2x
    assert player.at_end and not player.playing and player.shown == 4
    player.seek(-10)
    assert player.position == 0.0 and player.shown == 1
    player.set_idle_cap(None)
    assert player.duration == 12.0
    player.seek(5)
    assert player.shown == 2 and player.recorded_time() == 5.0
    player.set_idle_cap(2.0)
    # The pause plays in 2 s now: the same moment, just before the next event.
    assert player.shown == 2 and player.recorded_time() == pytest.approx(3.0)
    for _ in range(20):
        player.slower()
    assert player.speed == 0.125


@sync
async def test_playback_play_pause_seek_speed(tmp_path: Path) -> None:
    frames_in = [
        (0, RECV, data(1, b"one\n")),
        (1000, RECV, data(1, b"two\n")),
        (2000, RECV, data(2, b"three\x1b]52;c;eA==\x07\n")),
        (60000, RECV, data(1, b"10%\r50%\r100%\n")),
    ]
    with open_recording(write_recording(tmp_path / "p.cbor", frames_in)) as rec:
        app = DetailApp(rec)
        async with app.run_test(size=(100, 16)) as pilot:
            detail = app.query_one(CommandDetail)
            detail.show_command(1)
            detail.show_tab("play")
            await settle(app, pilot)
            view = app.query_one(PlaybackView)
            clock = FakeClock()
            view.clock = clock
            view.focus()
            assert view.player.shown == 1  # the first event is at 0 s
            assert lines(view, view.size.height)[-1].startswith(" ⏸ 0:00.0 / 1:00.0  x1")
            await pilot.press("space")
            assert view.player.playing
            clock.now += 1.5
            view.tick()
            assert view.player.shown == 2
            assert [line for line in lines(view, view.size.height - 1) if line] == ["one", "two"]
            await pilot.press("space")  # pause: time passing changes nothing
            clock.now += 100
            view.tick()
            assert view.player.shown == 2 and not view.player.playing
            await pilot.press("plus", "plus")
            assert view.player.speed == 4.0
            await pilot.press("minus")
            assert view.player.speed == 2.0
            await pilot.press("right")  # +5 s: past the 58 s pause, capped at 2 s
            assert view.player.at_end
            drawn = [line for line in lines(view, view.size.height - 1) if line]
            assert drawn == ["one", "two", "three\\e]52;c;eA==\\a", "100%"]
            progress = lines(view, view.size.height)[-1]
            assert "1:00.0 / 1:00.0" in progress and "x2" in progress and "idle≤2s" in progress
            await pilot.press("left")  # back 5 s from the end (4 s): the start
            assert view.player.position == 0.0 and view.player.shown == 1
            assert [line for line in lines(view, view.size.height - 1) if line] == ["one"]
            await pilot.press("i")  # idle cap off: the pause is a minute again
            assert view.player.duration == pytest.approx(60.0)
            await pilot.press("home")
            assert view.player.position == 0.0
            # The timer drives playback when nobody calls tick().
            view.clock = lambda: clock.now
            await pilot.press("space")
            clock.now += 3.0
            assert await eventually(pilot, lambda: view.player.shown == 3)


# --- frame detail ---------------------------------------------------------------------------


def test_cbor_diagnostic_notation() -> None:
    import cbor2

    item = cbor2.loads(
        cbor2.dumps({"a": [1, -2, 1.5, True, None], "b": b"\x00\xff", "c": "x\u202e\x1b", "d": {}})
    )
    assert cbor_diagnostic(item) == (
        '{\n  "a": [\n    1,\n    -2,\n    1.5,\n    true,\n    null\n  ],\n'
        '  "b": h\'00ff\',\n  "c": "x\\u202e\\u001b",\n  "d": {}\n}'
    )
    assert cbor_diagnostic(cbor2.CBORTag(1, 5)) == "1(5)"
    assert cbor_diagnostic(float("nan")) == "NaN"
    assert cbor_diagnostic(b"x" * 300).endswith("/ ... 300 bytes in all /")


# --- scale ------------------------------------------------------------------------------------


def million_frame_recording(path: Path, frames: int = 1_000_000) -> Path:
    """One command of ``frames`` small stdout frames, written in bulk (no footer)."""
    buf = io.BytesIO()
    rec = Recorder(buf)
    header = SessionHeader(version="1", start_time=T0, local_user="u", local_pid=1)
    rec.write_record(Record(type=RecordType.SESSION_HEADER, header=header))
    start = CommandStart(seq=1, start_time=T0, exec=ExecMsg(path="/bin/yes", argv=["yes"]))
    rec.write_record(Record(type=RecordType.COMMAND_START, cmd_start=start))
    frame = data(1, b"y\n").to_cbor()
    block = 1000
    for b in range(frames // block):
        buf.write(encode_frame_record(1, T0 + b * MS, 2, frame) * block)
    path.write_bytes(buf.getvalue())
    return path


@sync
async def test_million_frames_paint_without_decoding_them_all(tmp_path: Path) -> None:
    with open_recording(million_frame_recording(tmp_path / "big.cbor")) as rec:
        assert rec.commands[1].frame_count == 1_000_000
        app = DetailApp(rec)
        async with app.run_test(size=(120, 40)) as pilot:
            app.query_one(CommandDetail).show_command(1)
            for _ in range(3):
                await pilot.pause()
            frames = app.query_one(FrameList)
            assert frames.count == 1_000_000
            assert frames.virtual_size.height == 1_000_000
            height = frames.scrollable_content_region.height
            assert 0 < frames.decodes <= 2 * height
            assert "← DATA" in lines(frames, 1)[0]
            frames.focus()
            await pilot.press("end")
            await pilot.pause()
            assert frames.cursor == 999_999
            assert int(frames.scroll_y) == 1_000_000 - height
            last = lines(frames)[-1]
            assert "← DATA" in last and "+0.999000s" in last
            assert frames.decodes <= 3 * height
            await pilot.press("pageup", "up")
            assert frames.decodes <= 4 * height + 1
            # A jump (search hit, finding) to the middle lands there, on screen.
            middle = rec.commands[1].record_indexes[500_000]
            app.query_one(CommandDetail).jump_to_frame(middle)
            await pilot.pause()
            assert frames.cursor == 500_000
            assert frames.scroll_y <= 500_000 < frames.scroll_y + height
            assert frames.decodes <= 5 * height + 1
            # The activity strip of so many frames is binned in a worker, from the index.
            await app.workers.wait_for_complete()
            await pilot.pause()
            strip = app.query_one(ActivityStrip)
            assert list(strip.bins) == [1] and strip.bins[1].sum() == 2 * 1_000_000
            assert frames.decodes <= 5 * height + 1
