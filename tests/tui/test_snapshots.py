"""Snapshots of reclab view's main screens at fixed sizes (pytest-textual-snapshot).

Update after an intended change with ``pytest tests/tui/test_snapshots.py
--snapshot-update`` and look at the report. Every screen shows only what the
recording holds (its own times), never the wall clock, so snapshots are stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reclab.tui.app import ReclabApp
from reclab.tui.source import RecordingSource
from tests.tui.records import workers_done

SnapCompare = Callable[..., bool]


@pytest.fixture
def viewer() -> Iterator[Callable[[Path], ReclabApp]]:
    sources: list[RecordingSource] = []

    def make(path: Path) -> ReclabApp:
        source = RecordingSource.open(path)
        sources.append(source)
        return ReclabApp(source)

    yield make
    for source in sources:
        source.close()


def after(*keys: str) -> Callable[[Any], Any]:
    """A run_before that waits for indexing and the check, presses ``keys``, waits again."""

    async def run_before(pilot: Any) -> None:
        # Indexed, then checked (small files are checked by themselves): the screen is final.
        for _ in range(200):
            await workers_done(pilot.app)
            await pilot.pause()
            if pilot.app.check_report is not None:
                break
        for key in keys:
            await pilot.press(key)
        await workers_done(pilot.app)
        await pilot.pause()
        await pilot.pause()

    return run_before


def test_main_screen(snap_compare: SnapCompare, viewer: Any, sample: Any) -> None:
    app = viewer(sample("failing-build.cbor"))
    assert snap_compare(app, terminal_size=(100, 30), run_before=after())


def test_main_screen_at_80x24_with_the_timeline(
    snap_compare: SnapCompare, viewer: Any, sample: Any
) -> None:
    app = viewer(sample("concurrent.cbor"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=after("t", "down"))


def test_wide_screen_list_and_timeline(snap_compare: SnapCompare, viewer: Any, sample: Any) -> None:
    app = viewer(sample("concurrent.cbor"))
    assert snap_compare(app, terminal_size=(150, 40), run_before=after("down", "s", "s"))


def test_cut_off_recording_warning(snap_compare: SnapCompare, viewer: Any, sample: Any) -> None:
    app = viewer(sample("cut-off.cbor"))
    assert snap_compare(app, terminal_size=(100, 30), run_before=after())


def test_filtered_by_expression(
    snap_compare: SnapCompare, viewer: Any, small_recording: Path
) -> None:
    app = viewer(small_recording)
    keys = ("w", *"exit_code != 0 or complete == False", "enter")
    assert snap_compare(app, terminal_size=(100, 30), run_before=after(*keys))


def test_help_screen(snap_compare: SnapCompare, viewer: Any, sample: Any) -> None:
    app = viewer(sample("failing-build.cbor"))
    assert snap_compare(app, terminal_size=(100, 40), run_before=after("question_mark"))


def test_findings_screen(snap_compare: SnapCompare, viewer: Any, sample: Any) -> None:
    app = viewer(sample("cut-off.cbor"))
    assert snap_compare(app, terminal_size=(100, 30), run_before=after("c"))


def clicking(tab: str, *keys: str) -> Callable[[Any], Any]:
    """A run_before that waits like :func:`after`, clicks a command tab, presses ``keys``."""
    settle = after()

    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        await pilot.click(f"#command-tabs Tab#--content-tab-{tab}")
        await workers_done(pilot.app)
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
        await pilot.pause()

    return run_before


def test_fileops_tab_sorted(snap_compare: SnapCompare, viewer: Any, sample: Any) -> None:
    app = viewer(sample("fileops.cbor"))
    assert snap_compare(app, terminal_size=(120, 30), run_before=clicking("fileops", "o", "o"))


def test_logs_tab(snap_compare: SnapCompare, viewer: Any, sample: Any) -> None:
    app = viewer(sample("agent-logs.cbor"))
    assert snap_compare(app, terminal_size=(120, 30), run_before=clicking("logs", "down"))
