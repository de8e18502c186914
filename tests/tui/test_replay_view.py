"""Replay and diff in the viewer: the plan first, nothing sent until Enter; the comparison."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from reclab.cli import app as cli
from reclab.tui.app import ReclabApp
from reclab.tui.screens.replay import DiffScreen, ReplayScreen
from tests.tui.records import SAMPLES, screen_text, workers_done

OpenApp = Callable[..., ReclabApp]


def _text(screen: ReplayScreen | DiffScreen, widget: str) -> str:
    return str(screen.query_one(widget).render())


async def test_replay_shows_the_plan_and_runs_only_after_enter(
    open_app: OpenApp, tmp_path: Path
) -> None:
    path = tmp_path / "quick.cbor"
    shutil.copy(SAMPLES / "quick.cbor", path)
    app = open_app(path)
    async with app.run_test(size=(120, 36)) as pilot:
        await workers_done(app)
        await pilot.pause()
        await pilot.press("r")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReplayScreen) and screen.seq == 1
        assert "echo" in _text(screen, "#body") and "Enter: replay" in _text(screen, "#status")
        await pilot.press("escape")  # back: nothing was sent
        await pilot.pause()
        assert screen.state == "plan" and screen.report is None
        assert not isinstance(app.screen, ReplayScreen)

        await pilot.press("r")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ReplayScreen)
        await pilot.press("enter")
        await workers_done(app)
        await pilot.pause()
        assert screen.state == "done", _text(screen, "#status")
        assert screen.report is not None and screen.report.commands[0].verdict == "match"
        assert "replayed command 1: match" in _text(screen, "#status")
        shown = screen_text(app)
        assert "1 matched" in shown and "match" in shown.split("replayed command 1")[1]


async def test_diff_with_another_recording(open_app: OpenApp, tmp_path: Path) -> None:
    a = SAMPLES / "concurrent.cbor"
    b = tmp_path / "b.cbor"
    shutil.copy(SAMPLES / "failing-build.cbor", b)
    app = open_app(a, diff=b)
    async with app.run_test(size=(120, 36)) as pilot:
        await workers_done(app)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DiffScreen)
        assert screen.report is not None and screen.report.count("diverged") >= 1
        assert "diverged" in _text(screen, "#status")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DiffScreen)
        await pilot.press("D")  # again, on demand
        await workers_done(app)
        await pilot.pause()
        assert isinstance(app.screen, DiffScreen)


async def test_diff_key_without_a_second_recording_says_how(open_app: OpenApp) -> None:
    app = open_app(SAMPLES / "quick.cbor")
    async with app.run_test(size=(120, 36)) as pilot:
        await workers_done(app)
        await pilot.press("D")
        await pilot.pause()
        assert not isinstance(app.screen, DiffScreen)


def test_view_diff_option_checks_the_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["view", str(SAMPLES / "quick.cbor"), "--diff", str(tmp_path / "none.cbor")]
    )
    assert result.exit_code == 2 and "--diff" in result.stderr and "no such file" in result.stderr
    not_a_recording = tmp_path / "notes.txt"
    not_a_recording.write_text("hello\n")
    result = CliRunner().invoke(
        cli, ["view", str(SAMPLES / "quick.cbor"), "--diff", str(not_a_recording)]
    )
    assert result.exit_code == 2 and "--diff" in result.stderr
    assert "not an agentproto recording" in result.stderr and "Traceback" not in result.stderr
