"""RecordingSource without a screen: snapshots, search, the --where view; and the CLI's checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentproto import Direction, ExecMsg, FileOp, FileOpReq, Frame, FrameType
from agentproto.recording import encode_frame_record
from reclab.cli import app as cli
from reclab.model import RecordingError
from reclab.summary import select_commands
from reclab.tui.source import RecordingSource, commands_view
from tests.tui.records import T0, command_records, footer_record, header_record

ROOT = Path(__file__).resolve().parent.parent.parent


def test_open_reads_only_the_header_and_index_publishes_a_done_snapshot(
    small_recording: Path,
) -> None:
    source = RecordingSource.open(small_recording)
    try:
        first = source.snapshot()
        assert first.header is not None and first.header.local_user == "tester"
        assert not first.done and first.commands == {}
        final = source.index()
        assert source.snapshot() is final and final.done
        assert list(final.commands) == [1, 2, 3, 4]
        assert final.footer is not None and final.truncation is None
        assert source.command(2) is final.commands[2] and source.command(9) is None
    finally:
        source.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.cbor", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: (tmp / "notes.txt").write_text("hello") and tmp / "notes.txt", "not an"),
    ],
)
def test_open_refuses_what_is_not_a_recording(tmp_path: Path, make: object, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        RecordingSource.open(make(tmp_path))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.cbor", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: (tmp / "notes.txt").write_text("hello") and tmp / "notes.txt", "not an"),
    ],
)
def test_view_fails_in_one_line_before_any_screen(
    tmp_path: Path, make: object, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reclab.tui.app import ReclabApp

    def no_screen(self: ReclabApp) -> None:
        raise AssertionError("a screen was started")

    monkeypatch.setattr(ReclabApp, "run", no_screen)
    result = CliRunner().invoke(cli, ["view", str(make(tmp_path))])  # type: ignore[operator]
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reclab: error: ") and message in lines[0]


def test_view_runs_the_app_on_a_recording(
    small_recording: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reclab.tui.app import ReclabApp

    ran: list[ReclabApp] = []
    monkeypatch.setattr(ReclabApp, "run", lambda self: ran.append(self))
    result = CliRunner().invoke(cli, ["view", "--follow", str(small_recording)])
    assert result.exit_code == 0, result.output
    assert len(ran) == 1 and ran[0].follow and ran[0].source.path == small_recording


def _modules_after(code: str) -> set[str]:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_cli_does_not_import_textual() -> None:
    assert "textual" not in _modules_after("from reclab.cli import app")


def test_the_shell_loads_pandas_only_for_an_expression() -> None:
    modules = _modules_after(
        "import reclab.tui.source, reclab.tui.widgets.commands, reclab.tui.widgets.timeline, "
        "reclab.tui.widgets.session_bar, reclab.tui.screens.help, reclab.tui.screens.search, "
        "reclab.tui.screens.findings"
    )
    assert "textual" in modules and "pandas" not in modules


def test_where_selects_from_the_snapshot_with_the_commands_syntax(small_recording: Path) -> None:
    source = RecordingSource.open(small_recording)
    try:
        snap = source.index()
        view = commands_view(snap)
        assert select_commands(view, where="exit_code != 0") == [2]
        assert select_commands(view, where="complete == False") == [3]
        assert select_commands(view, sort="-stdout_bytes") == [2, 1, 4, 3]
    finally:
        source.close()


def _frames_recording(path: Path) -> Path:
    """One command whose output splits "needle" across frames, with file ops and a log."""
    x = ExecMsg(path="/bin/cat", argv=["cat"], cwd="/srv")
    parts = [header_record(), command_records(1, ["cat"], [], start=T0, exit_code=None)]
    t = T0
    frames = [
        (Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"a nee")),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=2, data=b"dle on stderr")),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"d")),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"le, NEEDLE\n")),
        (
            Direction.SEND,
            Frame(
                type=FrameType.FILE_OP,
                file_op=FileOpReq(req_id=1, op=FileOp.STAT, path="/data/needle.bin"),
            ),
        ),
    ]
    del x
    for direction, frame in frames:
        t += 1000
        parts.append(encode_frame_record(1, t, int(direction), frame.to_cbor()))
    parts.append(footer_record(t + 1, 1))
    path.write_bytes(b"".join(parts))
    return path


def test_search_finds_matches_across_frames_streams_and_file_ops(tmp_path: Path) -> None:
    source = RecordingSource.open(_frames_recording(tmp_path / "needle.cbor"))
    try:
        source.index()
        hits = source.search("needle")
        records = {i: source.rec.record(i).frame for i in range(source.snapshot().record_count)}
        # stdout "a nee" + "d" + "le, NEEDLE": one match starting in the first frame, one later;
        # stderr "dle..." alone is no match (streams are searched apart); the file op's path.
        assert [(h.where, h.record_index is not None) for h in hits] == [
            ("stdout", True),
            ("stdout", True),
            ("file op", True),
        ]
        first, second, fileop = hits
        assert records[first.record_index].frame.data == b"a nee"  # type: ignore[index,union-attr]
        assert records[second.record_index].frame.data == b"le, NEEDLE\n"  # type: ignore[index,union-attr]
        assert "NEEDLE" in second.preview
        assert records[fileop.record_index].frame.type == FrameType.FILE_OP  # type: ignore[index,union-attr]
        # Smart case: an upper-case letter makes the search case-sensitive.
        assert [h.preview for h in source.search("NEEDLE")] == [second.preview]
        assert source.search("needle", limit=1) == hits[:1]
        assert source.search("") == []
        assert source.search("needle", cancelled=lambda: True) == []
    finally:
        source.close()


def test_follow_refresh_publishes_appended_records(small_recording: Path, tmp_path: Path) -> None:
    data = small_recording.read_bytes()
    live = tmp_path / "live.cbor"
    head = len(header_record())
    live.write_bytes(data[:head])
    source = RecordingSource.open(live)
    published = []
    try:
        source.index()
        assert source.snapshot().commands == {}
        with open(live, "ab") as fp:
            fp.write(data[head:])
        assert source.refresh(published.append) > 0
        assert published and list(published[-1].commands) == [1, 2, 3, 4]
        assert source.refresh(published.append) == 0
    finally:
        source.close()
