"""reclab info / commands / timeline / cat / check through the CLI.

Three sources of recordings: ones built here with agentproto's Recorder from
explicit values (expected results are those values), ones written by the Go
cross-check program (tests/gotools.py), and sample-recordings/*.cbor. For the
last two the expected results come from an independent reading with plain
cbor2 (:func:`oracle`), not from reclab's own model.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest
from typer.testing import CliRunner

from agentproto import (
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    Record,
    Recorder,
    RecordType,
    SessionFooter,
    SessionHeader,
)
from reclab.cli import app
from tests.builders import RecordingBuilder

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

T0 = 1_764_403_200_000_000_000  # 2025-11-29T08:00:00Z
MS = 1_000_000
SEND, RECV = Direction.SEND, Direction.RECV


def run(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "100"})


# --- a recording built from explicit values --------------------------------------------


# Records from the shared builder (conftest.RecordingBuilder), at T0 + t ms.


def _frame(seq: int, t: int, d: int, f: Frame) -> Record:
    return RecordingBuilder().frame(seq, T0 + t * MS, d, f)


def _data(seq: int, t: int, stream: int, payload: bytes) -> Record:
    return RecordingBuilder().data(seq, T0 + t * MS, stream, payload)


def _eof(seq: int, t: int, stream: int) -> Record:
    return RecordingBuilder().eof(seq, T0 + t * MS, stream)


def _start(seq: int, t: int, argv: list[str], cwd: str, fds: list[int] | None = None) -> Record:
    return RecordingBuilder().start(
        seq,
        T0 + t * MS,
        path="/usr/bin/" + argv[0],
        argv=argv,
        env=["TERM=xterm", "LANG=C"],
        cwd=cwd,
        extra_fds=fds or [],
    )


def _end(seq: int, t: int, code: int) -> Record:
    return RecordingBuilder().end(seq, T0 + t * MS, code)


def _exit(seq: int, t: int, code: int) -> Record:
    return RecordingBuilder().exit(seq, T0 + t * MS, code)


SPLIT_E = "é".encode()  # two bytes, split across two frames of command 1


def session_records() -> list[Record]:
    """Three commands, 1 and 2 concurrent; every frame type the CLI summarises."""
    header = SessionHeader(
        version="1.3.4",
        start_time=T0,
        local_user="dev",
        local_pid=4242,
        backend_type="ssh",
        backend_addr="build-7:22",
        agent_path="/usr/local/bin/mproxy-agent",
    )
    return [
        Record(type=RecordType.SESSION_HEADER, header=header),
        _start(1, 100, ["make", "all"], "/src"),
        _frame(1, 101, SEND, Frame(type=FrameType.EXEC, exec=ExecMsg(path="/usr/bin/make"))),
        _data(1, 200, 1, b"building h" + SPLIT_E[:1]),
        _start(2, 300, ["sleep", "5"], "/"),
        _data(1, 400, 1, SPLIT_E[1:] + b"llo\n\x1b[31mred\x1b[0m\n"),
        _data(1, 500, 2, b"warning: x\n"),
        _frame(2, 600, SEND, Frame(type=FrameType.SIGNAL, signal=15)),
        _data(1, 700, 1, b"done\n"),
        _eof(1, 800, 1),
        _eof(1, 801, 2),
        _exit(1, 900, 0),
        _end(1, 1600, 0),
        _exit(2, 2000, 143),
        _end(2, 2100, 143),
        _start(3, 3000, ["cat"], "/tmp", [3]),
        _data(3, 3100, 0, b"abc"),
        _eof(3, 3101, 0),
        _data(3, 3200, 1, b"abc"),
        _data(3, 3300, 3, b"fd3"),
        _frame(3, 3400, RECV, Frame(type=FrameType.ERROR, error="boom\x1b[2J")),
        _frame(
            3,
            3500,
            RECV,
            Frame(type=FrameType.LOG, log=LogEntry(level=4, msg="slow", attrs=["k=v"])),
        ),
        _frame(
            3,
            3600,
            SEND,
            Frame(type=FrameType.FILE_OP, file_op=FileOpReq(req_id=1, op=FileOp.STAT, path="/x")),
        ),
        _frame(
            3,
            3700,
            RECV,
            Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=1, errno=2)),
        ),
        _exit(3, 3800, 2),
        _end(3, 3900, 2),
        Record(
            type=RecordType.SESSION_FOOTER,
            footer=SessionFooter(end_time=T0 + 10_000 * MS, command_count=3),
        ),
    ]


def write(path: Path, records: list[Record]) -> Path:
    with Recorder(path) as rec:
        for r in records:
            rec.write_record(r)
        rec._footer_written = True  # the footer (if any) is among the records
    return path


@pytest.fixture
def session(tmp_path: Path) -> Path:
    return write(tmp_path / "session.cbor", session_records())


@pytest.fixture
def cut(tmp_path: Path) -> Path:
    """The session without its footer, cut 5 bytes into its last command end."""
    records = session_records()[:-1]
    path = write(tmp_path / "cut.cbor", records)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - len(records[-1].to_cbor()) + 5])
    return path


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --- an independent reading with plain cbor2 ---------------------------------------------


@dataclass
class Oracle:
    records: int = 0
    cut: bool = False
    types: Counter[int] = field(default_factory=Counter)
    frame_types: Counter[int] = field(default_factory=Counter)
    starts: list[int] = field(default_factory=list)
    exit_codes: dict[int, int] = field(default_factory=dict)
    # (seq, direction, stream) -> bytes in recorded order; (seq) -> [(stream, bytes)]
    streams: dict[tuple[int, int, int], bytes] = field(default_factory=dict)
    interleaved: dict[int, list[tuple[int, int, bytes]]] = field(default_factory=dict)
    frames_per_seq: Counter[int] = field(default_factory=Counter)
    footer_count: int | None = None


def oracle(path: Path) -> Oracle:
    """Read a recording with nothing but cbor2: what every command should report."""
    o = Oracle()
    data = path.read_bytes()
    pos = 0
    import io

    fp = io.BytesIO(data)
    while pos < len(data):
        fp.seek(pos)
        try:
            item = cbor2.CBORDecoder(fp).decode()
        except Exception:
            o.cut = True
            break
        pos = fp.tell()
        o.records += 1
        o.types[item["type"]] += 1
        if item["type"] == 2:
            o.starts.append(item["cmd_start"]["seq"])
        elif item["type"] == 4:
            o.exit_codes[item["cmd_end"]["seq"]] = item["cmd_end"]["exit_code"]
        elif item["type"] == 5:
            o.footer_count = item["footer"]["command_count"]
        elif item["type"] == 3:
            rf = item["frame"]
            f = rf["frame"]
            o.frame_types[f["t"]] += 1
            o.frames_per_seq[rf["seq"]] += 1
            if f["t"] == 2 and f.get("d"):
                key = (rf["seq"], rf["dir"], f.get("s", 0))
                o.streams[key] = o.streams.get(key, b"") + f["d"]
                o.interleaved.setdefault(rf["seq"], []).append((f.get("s", 0), rf["dir"], f["d"]))
    return o


# --- info ------------------------------------------------------------------------------------


def test_info_json_explicit_values(session: Path) -> None:
    result = run("info", session, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["records"] == len(session_records())
    assert info["size"] == session.stat().st_size
    assert info["header"]["backend_type"] == "ssh"
    assert info["header"]["backend_addr"] == "build-7:22"
    assert info["header"]["agent_path"] == "/usr/local/bin/mproxy-agent"
    assert info["start_time"] == T0 and info["end_time"] == T0 + 10_000 * MS
    assert info["start"] == "2025-11-29T08:00:00.000000Z"
    assert info["duration"] == pytest.approx(10.0)
    assert info["commands"] == {
        "total": 3,
        "complete": 3,
        "incomplete": 0,
        "footer_count": 3,
        "exit_codes": {"0": 1, "2": 1, "143": 1},
    }
    stdout = len(b"building h" + SPLIT_E + b"llo\n\x1b[31mred\x1b[0m\n" + b"done\n" + b"abc")
    assert info["bytes"] == {"stdin": 3, "stdout": stdout, "stderr": 11, "extra": 3}
    assert info["frames"]["by_type"] == {
        "EXEC": 1,
        "DATA": 7,
        "EOF": 3,
        "SIGNAL": 1,
        "EXIT": 3,
        "ERROR": 1,
        "LOG": 1,
        "FILE_OP": 1,
        "FILE_RESP": 1,
    }
    assert info["frames"]["total"] == 19
    assert info["records_by_type"] == {
        "header": 1,
        "command_start": 3,
        "frame": 19,
        "command_end": 3,
        "footer": 1,
        "unknown": 0,
    }
    assert info["signals"] == {"count": 1, "list": [{"seq": 2, "signal": 15}]}
    assert info["errors"] == {"count": 1, "list": [{"seq": 3, "message": "boom\x1b[2J"}]}
    assert info["logs"] == 1 and info["file_ops"] == 1
    assert info["truncation"] is None


def test_info_human(session: Path) -> None:
    result = run("info", session)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in (
        "version 1.3.4, user dev, pid 4242",
        "ssh build-7:22",
        "/usr/local/bin/mproxy-agent",
        "2025-11-29T08:00:00.000000Z",
        "3 (footer: 3)",
        "exit 0: 1",
        "exit 143: 1",
        "stdin 3 B",
        "extra 3 B",
        "SIGNAL 1",
        "none (complete recording)",
    ):
        assert expected in out, (expected, out)
    # the agent's error text is shown escaped, never as a raw terminal code
    assert "\x1b" not in out and "boom\\e[2J" in out


def test_info_cut_recording_warns_once(cut: Path) -> None:
    result = run("info", cut, "--json")
    assert result.exit_code == 0
    warning = one_line(result.stderr)
    assert warning.startswith("reclab: warning:") and "cut" in warning
    info = json.loads(result.stdout)
    assert info["truncation"]["kind"] == "cut"
    assert info["records"] == len(session_records()) - 2
    assert info["commands"]["incomplete"] == 1
    assert info["commands"]["exit_codes"] == {"0": 1, "143": 1, "none": 1}
    assert info["footer"] is None


def test_info_footerless_recording_warns(tmp_path: Path) -> None:
    path = write(tmp_path / "open.cbor", session_records()[:-1])
    result = run("info", path)
    assert result.exit_code == 0
    assert "no session footer" in one_line(result.stderr)


# --- bad input: one line on stderr, exit 2, for every command ------------------------------

COMMANDS: list[list[str]] = [
    ["info"],
    ["commands"],
    ["timeline"],
    ["cat", "--seq", "1"],
    ["check"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize("problem", ["missing", "directory", "not-a-recording", "empty"])
def test_bad_input_is_one_line(argv: list[str], problem: str, tmp_path: Path) -> None:
    path = tmp_path / "x.cbor"
    if problem == "directory":
        path.mkdir()
    elif problem == "not-a-recording":
        path.write_text("just some text, not CBOR\n" * 10)
    elif problem == "empty":
        path.write_bytes(b"")
    result = runner.invoke(app, [argv[0], str(path), *argv[1:]])
    assert result.exit_code == 2, result.output
    line = one_line(result.stderr)
    assert line.startswith("reclab: error:") and str(path) in line
    assert result.stdout == ""


@pytest.mark.parametrize(
    "argv",
    [["cat", "--seq", "9"], ["timeline", "--seq", "9"]],
    ids=["cat", "timeline"],
)
def test_unknown_seq(session: Path, argv: list[str]) -> None:
    result = runner.invoke(app, [argv[0], str(session), *argv[1:]])
    assert result.exit_code == 2
    line = one_line(result.stderr)
    assert "no command 9" in line and "1..3" in line


# --- commands ------------------------------------------------------------------------------


def test_commands_human(session: Path) -> None:
    result = run("commands", session)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["seq", "start", "duration", "exit", "out", "cwd", "argv"]
    assert [ln.split()[0] for ln in lines[1:]] == ["1", "2", "3"]
    assert "make all" in lines[1] and "/src" in lines[1] and "1.5s" in lines[1]
    assert " 143 " in lines[2] and "1.8s" in lines[2]
    assert "08:00:03.000" in lines[3]


def test_commands_json(session: Path) -> None:
    result = run("commands", session, "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["seq"] for r in rows] == [1, 2, 3]
    third = rows[2]
    assert third["argv"] == ["cat"] and third["cwd"] == "/tmp"
    assert third["bytes"] == {"stdin": 3, "stdout": 3, "stderr": 0, "extra": 3}
    assert third["exit_code"] == 2 and third["exit_frame_code"] == 2
    assert third["start_time"] == T0 + 3000 * MS and third["duration"] == pytest.approx(0.9)
    assert third["errors"] == ["boom\x1b[2J"] and rows[1]["signals"] == [15]
    assert all(r["complete"] for r in rows)


@pytest.mark.parametrize(
    ("where", "sort", "expected"),
    [
        ("exit_code != 0", None, [2, 3]),
        ("exit_code != 0 and duration > 1", None, [2]),
        (None, "-duration", [2, 1, 3]),
        (None, "duration", [3, 1, 2]),
        ("stdin_bytes > 0 or cwd == '/src'", "-seq", [3, 1]),
        ("argv.str.contains('sleep')", None, [2]),
    ],
)
def test_commands_where_and_sort(
    session: Path, where: str | None, sort: str | None, expected: list[int]
) -> None:
    args = ["commands", str(session), "--json"]
    if where:
        args += ["--where", where]
    if sort:
        args += ["--sort", sort]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [r["seq"] for r in json.loads(result.stdout)] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--where", "exit_code !="],
            "bad --where expression 'exit_code !=': invalid syntax: it must be a pandas "
            "condition, e.g. 'exit_code != 0'",
        ),
        (
            ["--where", "no_such_column > 1"],
            "bad --where expression 'no_such_column > 1': the commands table has no column "
            "'no_such_column'; its columns are seq, path, argv, command_line, cwd,",
        ),
        (
            ["--where", "exit_code > 'a'"],
            "bad --where expression \"exit_code > 'a'\": it compares values of different types",
        ),
        (["--sort", "nope"], "unknown --sort column 'nope'"),
    ],
)
def test_commands_bad_where_or_sort(session: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["commands", str(session), *args])
    assert result.exit_code == 2
    assert message in one_line(result.stderr)


# --- timeline ------------------------------------------------------------------------------


def test_timeline_session_gantt(session: Path) -> None:
    result = runner.invoke(app, ["timeline", str(session), "--width", "90"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").splitlines()
    assert all(len(ln) <= 90 for ln in lines)
    rows = {int(ln.split()[0]): ln for ln in lines[:3]}
    assert sorted(rows) == [1, 2, 3]

    def extent(line: str) -> tuple[int, int]:
        bars = [i for i, ch in enumerate(line) if ch in "█▏▎▍▌▋▊▉"]
        return bars[0], bars[-1]

    # session 0..10 s: command 1 runs 0.1-1.6 s, 2 runs 0.3-2.1 s (overlapping), 3 at 3-3.9 s
    (a1, b1), (a2, b2), (a3, b3) = (extent(rows[s]) for s in (1, 2, 3))
    assert a1 < a2 <= b1 < b2 < a3 <= b3
    assert " 143" in rows[2] and rows[1].rstrip().endswith("0")
    assert "┬" in lines[3] and "0s" in lines[4] and "10s" in lines[4]


def test_timeline_command_frames(session: Path) -> None:
    result = runner.invoke(app, ["timeline", str(session), "--seq", "1", "--width", "100"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 8  # command 1 has 8 frames
    assert lines[0].startswith("+0.001000s → EXEC")
    assert lines[1].startswith("+0.100000s ← DATA") and "building h\\xc3" in lines[1]
    assert "\\xa9llo\\n\\e[31mred\\e[0m\\n" in lines[2]
    assert "\x1b" not in result.stdout
    assert lines[-1].startswith("+0.800000s ← EXIT") and "exit code 0" in lines[-1]
    other = runner.invoke(app, ["timeline", str(session), "--seq", "3"]).stdout
    assert "→ FILE_OP" in other and "#1 STAT /x" in other and "errno 2" in other
    assert "WARN slow k=v" in other and "boom\\e[2J" in other
    assert "signal SIGTERM (15)" in runner.invoke(app, ["timeline", str(session), "-n", "2"]).stdout


def test_timeline_command_without_frames(tmp_path: Path) -> None:
    path = write(tmp_path / "quiet.cbor", [session_records()[0], _start(1, 5, ["true"], "/")])
    result = runner.invoke(app, ["timeline", str(path), "--seq", "1"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "command 1 has no frames"
    gantt = runner.invoke(app, ["timeline", str(path)]).stdout.splitlines()
    assert gantt[0].split()[:2] == ["1", "true"] and gantt[0].rstrip().endswith("…")


# --- cat -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ("stdout", b"building h" + SPLIT_E + b"llo\n\x1b[31mred\x1b[0m\ndone\n"),
        ("stderr", b"warning: x\n"),
        ("both", b"building h" + SPLIT_E + b"llo\n\x1b[31mred\x1b[0m\nwarning: x\ndone\n"),
    ],
)
def test_cat_byte_exact(session: Path, stream: str, expected: bytes) -> None:
    result = runner.invoke(app, ["cat", str(session), "--seq", "1", "--stream", stream])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == expected


def test_cat_stdin_and_extra_fd(session: Path) -> None:
    stdin = runner.invoke(app, ["cat", str(session), "--seq", "3", "--stream", "stdin"])
    assert stdin.stdout_bytes == b"abc"
    fd3 = runner.invoke(app, ["cat", str(session), "--seq", "3", "--stream", "3"])
    assert fd3.stdout_bytes == b"fd3"
    bad = runner.invoke(app, ["cat", str(session), "--seq", "3", "--stream", "sideways"])
    assert bad.exit_code == 2 and "--stream" in one_line(bad.stderr)
    # A stream the command never had is an error, not empty output (issue 12).
    never = runner.invoke(app, ["cat", str(session), "--seq", "1", "--stream", "99"])
    assert never.exit_code == 2 and never.stdout_bytes == b""
    assert "no stream 99" in one_line(never.stderr)
    fd3_of_3 = runner.invoke(app, ["cat", str(session), "--seq", "3", "--stream", "3"])
    assert fd3_of_3.exit_code == 0


def test_cat_every_byte_value(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 300  # split over frames at odd sizes
    records = [session_records()[0], _start(1, 0, ["gen"], "/")]
    for i in range(0, len(payload), 4093):
        records.append(_data(1, 1 + i, 1, payload[i : i + 4093]))
    records += [_exit(1, 99_999, 0), _end(1, 100_000, 0)]
    path = write(tmp_path / "bin.cbor", records)
    result = runner.invoke(app, ["cat", str(path), "--seq", "1"])
    assert result.stdout_bytes == payload
    assert "no session footer" in one_line(result.stderr)


# --- check ---------------------------------------------------------------------------------


def test_check_clean_recording(session: Path) -> None:
    result = run("check", session)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("OK")
    assert f"{len(session_records())} records: 0 errors, 0 warnings" in result.stdout


def test_check_cut_recording(cut: Path) -> None:
    result = run("check", cut, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    codes = report["codes"]
    assert codes["truncated"] == 1 and codes["missing-footer"] == 1
    assert codes["command-without-end"] == 1
    (trunc,) = [f for f in report["findings"] if f["code"] == "truncated"]
    assert trunc["offset"] == cut.stat().st_size - 5
    assert set(trunc) == {"index", "offset", "seq", "severity", "code", "message"}


def test_check_broken_recording_human(tmp_path: Path) -> None:
    records = session_records()
    records.insert(13, _data(1, 1700, 1, b"late"))  # after command 1's end
    records.insert(5, _start(1, 350, ["again"], "/"))  # a duplicate start
    path = write(tmp_path / "bad.cbor", records)
    result = run("check", path)
    assert result.exit_code == 1
    out = result.stdout
    assert re.search(r"^error\s+#5 @\d+ seq 1 duplicate-start: ", out, re.M), out
    assert re.search(r"^error\s+#14 @\d+ seq 1 frame-after-end: ", out, re.M), out
    assert "FAILED" in out.splitlines()[-1]
    quiet = run("check", path, "--quiet").stdout
    assert "footer-count-mismatch" in quiet and "info " not in quiet


# --- recordings written by Go and sample recordings ------------------------------------------


def _go_recordings(tmp_dir: Path) -> list[Path]:
    try:
        from gotools import go_recordings  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("tests/gotools.py (the Go cross-check builder) is not present")
    paths = list(go_recordings(tmp_dir))  # skips without Go (fails under CI=true)
    if not paths:
        pytest.skip("the Go cross-check program wrote no recordings")
    return paths


@pytest.fixture(scope="module")
def go_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _go_recordings(tmp_path_factory.mktemp("go"))


SAMPLES = sorted((ROOT / "sample-recordings").glob("*.cbor"))


def check_against_oracle(path: Path) -> None:
    """Every command's view of ``path`` agrees with a plain cbor2 reading."""
    o = oracle(path)
    info_result = runner.invoke(app, ["info", str(path), "--json"])
    assert info_result.exit_code == 0, info_result.output
    info = json.loads(info_result.stdout)
    assert info["records"] == o.records
    assert info["commands"]["total"] == len(set(o.starts) | set(o.frames_per_seq))
    assert info["commands"]["footer_count"] == o.footer_count
    assert info["frames"]["total"] == sum(o.frame_types.values())
    by_name = {FrameType(t).name: n for t, n in o.frame_types.items() if t in range(1, 13)}
    assert {k: v for k, v in info["frames"]["by_type"].items() if k != "UNKNOWN"} == by_name
    stdout = sum(len(b) for (_s, d, st), b in o.streams.items() if d == 2 and st == 1)
    assert info["bytes"]["stdout"] == stdout
    assert (info["truncation"] is not None and info["truncation"]["kind"] == "cut") == o.cut

    rows = json.loads(runner.invoke(app, ["commands", str(path), "--json"]).stdout)
    assert {r["seq"]: r["exit_code"] for r in rows if r["exit_code"] is not None} == o.exit_codes
    assert {r["seq"]: r["frames"] for r in rows if r["frames"]} == dict(o.frames_per_seq)

    for seq in sorted(set(o.starts))[:20]:
        for name, stream in (("stdout", 1), ("stderr", 2)):
            got = runner.invoke(app, ["cat", str(path), "--seq", str(seq), "--stream", name])
            assert got.exit_code == 0, got.output
            assert got.stdout_bytes == o.streams.get((seq, 2, stream), b"")
        both = runner.invoke(app, ["cat", str(path), "--seq", str(seq), "--stream", "both"])
        expected = b"".join(d for s, di, d in o.interleaved.get(seq, []) if di == 2 and s in (1, 2))
        assert both.stdout_bytes == expected
        frames = runner.invoke(app, ["timeline", str(path), "--seq", str(seq), "-W", "120"])
        assert frames.exit_code == 0, frames.output
        assert len(frames.stdout.splitlines()) == o.frames_per_seq[seq]
        assert "\x1b" not in frames.stdout

    gantt = runner.invoke(app, ["timeline", str(path), "--width", "100"])
    assert gantt.exit_code == 0, gantt.output
    assert "\x1b" not in gantt.stdout

    checked = runner.invoke(app, ["check", str(path), "--json"])
    assert checked.exit_code in (0, 1), checked.output
    report = json.loads(checked.stdout)
    assert report["records"] == o.records
    assert ("truncated" in report["codes"]) == o.cut
    assert checked.exit_code == (0 if report["ok"] else 1)


@pytest.mark.go
def test_go_recordings(go_paths: list[Path]) -> None:
    for path in go_paths:
        check_against_oracle(path)


@pytest.mark.skipif(not SAMPLES, reason="no sample-recordings/*.cbor in this checkout")
@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_recordings(path: Path) -> None:
    check_against_oracle(path)


def test_oracle_agrees_on_the_built_session(session: Path, cut: Path) -> None:
    # the same cross-check on our own recordings, so it is known to work when Go is absent
    check_against_oracle(session)
    check_against_oracle(cut)


@pytest.mark.go
def test_go_cut_and_footerless_recordings(tmp_path: Path) -> None:
    try:
        from gotools import go_outputs  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("tests/gotools.py (the Go cross-check builder) is not present")
    out = go_outputs(tmp_path)  # skips, saying why, without Go
    for path in (out.cut, out.no_footer):
        facts = out.manifest[path.name]
        o = oracle(path)
        assert o.records == facts["records"]
        result = runner.invoke(app, ["info", str(path), "--json"])
        assert result.exit_code == 0, result.output
        assert one_line(result.stderr).startswith("reclab: warning:")
        info = json.loads(result.stdout)
        assert info["records"] == facts["records"]
        assert info["truncation"]["offset"] == facts["cut_offset"]
        assert info["truncation"]["kind"] == (
            "cut" if facts["size"] > facts["cut_offset"] else "no-footer"
        )
        report = json.loads(runner.invoke(app, ["check", str(path), "--json"]).stdout)
        assert report["codes"]["missing-footer"] == 1
        assert ("truncated" in report["codes"]) == (facts["size"] > facts["cut_offset"])
        check_against_oracle(path)


# --- a recording on stdin (-) ----------------------------------------------------------------


def from_stdin(data: bytes, *args: str) -> Any:
    return runner.invoke(app, list(args), input=data, env={"COLUMNS": "100"})


@pytest.mark.parametrize(
    "args",
    [
        ["info", "--json"],
        ["info"],
        ["commands", "--json"],
        ["commands", "--where", "exit_code != 0"],
        ["timeline"],
        ["timeline", "--seq", "1"],
        ["cat", "--seq", "1", "--stream", "both"],
        ["check", "--json"],
    ],
    ids=" ".join,
)
def test_dash_reads_the_recording_from_stdin(
    session: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(session.parent)  # a short name: no wrapped rows in info's table
    command, *options = args
    on_file = run(command, session.name, *options)
    on_stdin = from_stdin(session.read_bytes(), command, "-", *options)
    assert on_stdin.exit_code == on_file.exit_code, on_stdin.output
    assert on_stdin.stderr == on_file.stderr == ""
    if args == ["info"]:  # the table's "file" row names the recording, padded to the column
        assert re.search(r"^file\s+- \(", on_stdin.stdout, re.M), on_stdin.stdout

        def rows(text: str) -> list[str]:
            return [row.rstrip() for row in text.splitlines() if not row.startswith("file ")]

        assert rows(on_stdin.stdout) == rows(on_file.stdout)
    else:
        assert on_stdin.stdout == on_file.stdout.replace(f'"{session.name}"', '"-"')


def test_dash_names_stdin_in_messages(cut: Path) -> None:
    empty = from_stdin(b"", "info", "-")
    assert empty.exit_code == 2
    assert one_line(empty.stderr) == (
        "reclab: error: <stdin> is not an agentproto recording: the file is empty"
    )
    warned = from_stdin(cut.read_bytes(), "commands", "-")
    assert warned.exit_code == 0
    assert one_line(warned.stderr).startswith("reclab: warning: <stdin>: the recording is cut")


# --- progress on a terminal, never on a pipe ----------------------------------------------------

# reclab, with the bar allowed at once (a test file is checked too quickly for the usual delay)
EAGER_BAR = [
    sys.executable,
    "-c",
    "import reclab.cli.inspect as i; i.PROGRESS_DELAY = 0; from reclab.cli import main; main()",
]


def _stderr_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    main, child = pty.openpty()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=child, timeout=60)
    finally:
        os.close(child)
    out = b""
    while select.select([main], [], [], 0.5)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    return proc.returncode, out.decode(errors="replace")


def test_check_shows_progress_on_a_terminal_only(session: Path) -> None:
    code, err = _stderr_on_a_terminal([*EAGER_BAR, "check", str(session)])
    assert code == 0
    assert "checking" in err and "\x1b[" in err  # a rich bar, drawn and cleared
    piped = subprocess.run(
        [*EAGER_BAR, "check", str(session)], capture_output=True, text=True, timeout=60
    )
    assert piped.returncode == 0
    assert piped.stderr == ""
