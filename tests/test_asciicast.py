"""reclab.asciicast: asciicast v2 from a command's output, UTF-8 carried across frames."""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentproto import (
    CommandEnd,
    CommandStart,
    Direction,
    ExecMsg,
    Frame,
    FrameType,
    Record,
    RecordedFrame,
    Recorder,
    RecordType,
    SessionFooter,
    SessionHeader,
)
from reclab.asciicast import asciicast_events, asciicast_header, write_asciicast
from reclab.model import UnknownCommandError, open_recording
from tests.builders import Script

T0 = 1_700_000_000_123_456_789


def test_multibyte_character_split_across_chunks() -> None:
    smile = "🙂".encode()  # 4 bytes, split 1 + 3
    chunks = [(T0 + 1000, 1, b"a" + smile[:1]), (T0 + 2_000_000, 1, smile[1:] + b"b")]
    events = list(asciicast_events(chunks, T0))
    assert events == [(0.000001, "o", "a"), (0.002, "o", "🙂b")]


def test_streams_decode_independently() -> None:
    e = "é".encode()
    # stderr between the two halves of a stdout character must not break it
    chunks = [(T0, 1, e[:1]), (T0 + 1, 2, b"err"), (T0 + 2, 1, e[1:])]
    events = [(c, t) for _s, c, t in asciicast_events(chunks, T0)]
    assert events == [("o", "err"), ("o", "é")]


def test_invalid_utf8_and_incomplete_end_become_replacement() -> None:
    chunks = [(T0, 1, b"ok\xff!"), (T0 + 5, 1, "€".encode()[:2])]
    events = list(asciicast_events(chunks, T0))
    assert [t for _s, _c, t in events] == ["ok\ufffd!", "\ufffd"]


def test_times_are_relative_and_never_go_backwards() -> None:
    chunks = [(T0 - 10, 1, b"a"), (T0 + 3_000_000_000, 1, b"b"), (T0 + 1_000_000_000, 1, b"c")]
    times = [t for t, _c, _x in asciicast_events(chunks, T0)]
    assert times == [0.0, 3.0, 3.0]


def test_stdin_is_input_event() -> None:
    events = list(asciicast_events([(T0, 0, b"ls\r"), (T0 + 1, 1, b"x")], T0))
    assert [c for _t, c, _x in events] == ["i", "o"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.lists(st.integers(0, 50), max_size=20))
def test_any_split_reassembles_the_text(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({min(c * 7, len(data)) for c in cuts} | {0, len(data)})
    chunks = [(T0 + i, 1, data[a:b]) for i, (a, b) in enumerate(itertools.pairwise(points))]
    # as a terminal's onlcr would show it: each "\n" not after "\r" becomes "\r\n"
    want = re.sub(r"(?<!\r)\n", "\r\n", text)
    assert "".join(x for _t, _c, x in asciicast_events(chunks, T0)) == want


def test_header_from_exec() -> None:
    x = ExecMsg(
        path="/bin/sh",
        argv=["sh", "-c", "echo 'hi there'"],
        env=["TERM=xterm-256color", "SHELL=/bin/bash", "COLUMNS=132", "LINES=abc", "SECRET=x"],
        cwd="/",
    )
    h = asciicast_header(x, T0).to_json()
    assert h == {
        "version": 2,
        "width": 132,
        "height": 24,
        "timestamp": T0 // 10**9,
        "command": "sh -c 'echo '\"'\"'hi there'\"'\"''",
        "env": {"SHELL": "/bin/bash", "TERM": "xterm-256color"},
    }
    bare = asciicast_header(ExecMsg(path="/x", argv=None, env=None), None, width=10, height=5)
    assert bare.to_json() == {"version": 2, "width": 10, "height": 5, "command": "/x"}


def _recording(path: Path) -> Path:
    start = CommandStart(
        seq=1,
        start_time=T0,
        exec=ExecMsg(path="/bin/top", argv=["top"], env=["TERM=xterm"], cwd="/"),
    )
    frames = [
        (T0 + 500_000, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"\x1b[2J\xe2")),
        (T0 + 900_000, Direction.SEND, Frame(type=FrameType.DATA, stream=0, data=b"q")),
        (T0 + 1_250_000, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"\x9c\x93\n")),
        (T0 + 2_000_000, Direction.RECV, Frame(type=FrameType.DATA, stream=2, data=b"bye\n")),
        (T0 + 3_000_000, Direction.RECV, Frame(type=FrameType.DATA, stream=3, data=b"fd3")),
        (T0 + 4_000_000, Direction.RECV, Frame(type=FrameType.EXIT)),
    ]
    header = SessionHeader(version="1.3.4", start_time=T0, local_user="u", local_pid=1)
    with Recorder(path) as rec:
        rec.write_record(Record(type=RecordType.SESSION_HEADER, header=header))
        rec.write_record(Record(type=RecordType.COMMAND_START, cmd_start=start))
        for ts, d, f in frames:
            rf = RecordedFrame(seq=1, timestamp=ts, direction=d, frame=f)
            rec.write_record(Record(type=RecordType.FRAME, frame=rf))
        end = CommandEnd(seq=1, end_time=T0 + 5_000_000, exit_code=0)
        rec.write_record(Record(type=RecordType.COMMAND_END, cmd_end=end))
        footer = SessionFooter(end_time=T0 + 6_000_000, command_count=1)
        rec.write_record(Record(type=RecordType.SESSION_FOOTER, footer=footer))
        rec._footer_written = True
    return path


def test_write_asciicast_file(tmp_path: Path) -> None:
    with open_recording(_recording(tmp_path / "top.cbor")) as rec:
        out = io.StringIO()
        assert write_asciicast(rec, 1, out) == 3
        lines = out.getvalue().splitlines()
        header = json.loads(lines[0])
        assert header == {
            "version": 2,
            "width": 80,
            "height": 24,
            "timestamp": T0 // 10**9,
            "command": "top",
            "env": {"TERM": "xterm"},
        }
        events = [json.loads(line) for line in lines[1:]]
        # the check mark's bytes are split over two frames: it appears whole in the second
        assert events == [
            [0.0005, "o", "\x1b[2J"],
            [0.00125, "o", "✓\r\n"],
            [0.002, "o", "bye\r\n"],
        ]
        with_input = io.StringIO()
        assert write_asciicast(rec, 1, with_input, input=True, width=100) == 4
        assert json.loads(with_input.getvalue().splitlines()[2]) == [0.0009, "i", "q"]
        with pytest.raises(UnknownCommandError):
            write_asciicast(rec, 2, io.StringIO())


def test_export_asciicast_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from reclab.cli import app

    runner = CliRunner()
    rec = _recording(tmp_path / "top.cbor")
    out = tmp_path / "top.cast"
    result = runner.invoke(app, ["export", str(rec), "--seq", "1", "--asciicast", "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert [json.loads(x)[2] for x in lines[1:]] == ["\x1b[2J", "✓\r\n", "bye\r\n"]
    to_stdout = runner.invoke(app, ["export", str(rec), "-n", "1", "--asciicast"])
    assert to_stdout.exit_code == 0
    assert to_stdout.stdout_bytes.decode("utf-8").splitlines() == lines
    for args, message in (
        (["--asciicast"], "--seq N"),
        (["--asciicast", "--seq", "7"], "no command 7"),
        (["--asciicast", "--seq", "1", "--csv"], "choose one format"),
        (["--asciicast", "--seq", "1", "-w", "seq == 1"], "does not apply to asciicast"),
    ):
        bad = runner.invoke(app, ["export", str(rec), *args, "-o", str(tmp_path / "x.cast")])
        assert bad.exit_code == 2, bad.output
        assert message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.cast").exists()


def _raw_terminal_columns(text: str) -> list[int]:
    """The column each line starts at on a raw terminal (no onlcr), as `asciinema play` has it.

    "\\r" returns to column 0, "\\n" moves down and keeps the column, anything else
    advances (escape sequences here move nothing and are skipped).
    """
    starts, col, at_line_start = [], 0, True
    for ch in re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text):
        if ch == "\r":
            col = 0
        elif ch == "\n":
            at_line_start = True
        else:
            if at_line_start:
                starts.append(col)
                at_line_start = False
            col += 1
    return starts


def _check_asciicast_v2(text: str) -> list[list[object]]:
    """What asciinema's player requires of an asciicast v2 file; returns the events."""
    lines = text.split("\n")
    assert lines[-1] == "" and all(lines[:-1])  # newline-terminated JSON lines
    header = json.loads(lines[0])
    assert header["version"] == 2
    assert isinstance(header["width"], int) and isinstance(header["height"], int)
    events = [json.loads(line) for line in lines[1:-1]]
    times = []
    for event in events:
        assert isinstance(event, list) and len(event) == 3
        assert isinstance(event[0], (int, float)) and event[1] in ("o", "i", "m", "r")
        assert isinstance(event[2], str)
        times.append(event[0])
    assert times == sorted(times)
    return events


def test_output_plays_without_a_staircase(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from reclab.cli import app

    src = tmp_path / "build.cbor"
    s = Script()
    s.header()
    s.start(1, T0, path="/bin/sh", argv=["sh", "-c", "make"], cwd="/")
    s.data(1, T0 + 10, 1, b"cc -c a.c\ncc -c b")
    s.data(1, T0 + 20, 1, b".c\r")  # a \r\n split across frames stays one line end
    s.data(1, T0 + 30, 1, b"\nprogress 50%\rprogress 100%\r\n")
    s.data(1, T0 + 40, 2, b"make: *** Error 1\n\n")
    s.end(1, T0 + 50, 2)
    s.write(src)
    for args in (["--format", "asciicast"], ["--asciicast"], []):
        out = tmp_path / "build.cast"
        result = CliRunner().invoke(app, ["export", str(src), "--seq", "1", *args, "-o", str(out)])
        assert result.exit_code == 0, result.stderr
        events = _check_asciicast_v2(out.read_text(encoding="utf-8"))
        played = "".join(str(e[2]) for e in events)
        assert "\r\r" not in played
        assert played == (
            "cc -c a.c\r\ncc -c b.c\r\nprogress 50%\rprogress 100%\r\nmake: *** Error 1\r\n\r\n"
        )
        assert _raw_terminal_columns(played) == [0, 0, 0, 0]
        out.unlink()
