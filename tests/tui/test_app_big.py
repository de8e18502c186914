"""Big recordings: the first screen comes before indexing ends (proven by event order).

Indexing is held after its first published batch (a source whose publish
waits on an event), so the app can only show commands then if it does not
wait for the whole index: an app that indexed before drawing would hang here
and fail, whatever the speed of the machine.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reclab.model import open_recording
from reclab.tui import source as source_module
from reclab.tui.app import ReclabApp
from reclab.tui.source import IndexSnapshot, Pacer, RecordingSource, SnapshotCallback
from reclab.tui.widgets.commands import CommandList
from reclab.tui.widgets.session_bar import SessionBar
from tests.tui.records import workers_done, write_large


class HeldSource(RecordingSource):
    """Stops indexing after the first batch it publishes with two commands, until ``release``."""

    def __init__(self, path: Path) -> None:
        super().__init__(open_recording(path, index=False))
        self.held = threading.Event()
        self.release = threading.Event()

    def _publish(self, snap: IndexSnapshot, callback: SnapshotCallback | None) -> None:
        super()._publish(snap, callback)
        if not snap.done and len(snap.commands) >= 2 and not self.held.is_set():
            self.held.set()
            self.release.wait(timeout=120)


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldSource]:
    """A ~25 MB recording (several batches) whose indexing is held after the first."""
    monkeypatch.setattr(source_module, "PUBLISH_INTERVAL", 0.0)  # a batch at every step
    path = tmp_path / "big.cbor"
    write_large(path, commands=40, frames_per_command=2500)
    source = HeldSource(path)
    yield source
    source.release.set()
    source.close()


async def test_first_screen_is_drawn_before_indexing_completes(held: HeldSource) -> None:
    source = held
    app = ReclabApp(source)
    async with app.run_test(size=(100, 30)) as pilot:
        commands = app.screen.query_one(CommandList)
        for _ in range(600):
            await pilot.pause(0.05)
            if commands.first_painted_done is not None:
                break
        # The rows were painted from a snapshot of an index still in progress...
        assert commands.first_painted_done is False
        assert source.held.wait(timeout=60)  # (it goes on to a batch of 2 commands, held)
        await pilot.pause()
        snap = source.snapshot()
        assert not snap.done and 2 <= len(snap.commands) < 40
        assert "indexing" in app.screen.query_one(SessionBar).render().plain
        # ...and keys are answered meanwhile.
        await pilot.press("down")
        await pilot.pause()
        assert commands.selected == 2
        source.release.set()
        await workers_done(app)
        await pilot.pause()
        await pilot.pause()
        assert source.snapshot().done
        assert commands.rows == list(range(1, 41))
        assert commands.selected == 2  # the place is kept as the rest arrives
        assert "indexing" not in app.screen.query_one(SessionBar).render().plain


def test_index_publishes_batches_then_a_final_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "big.cbor"
    write_large(path, commands=40, frames_per_command=2500)
    source = RecordingSource.open(path)
    seen: list[IndexSnapshot] = []
    counts_then: list[dict[int, int]] = []

    def published(snap: IndexSnapshot) -> None:
        seen.append(snap)
        counts_then.append({seq: cmd.frame_count for seq, cmd in snap.commands.items()})

    try:
        import reclab.tui.source as module

        module.PUBLISH_INTERVAL, before = 0.0, module.PUBLISH_INTERVAL
        try:
            final = source.index(published)
        finally:
            module.PUBLISH_INTERVAL = before
    finally:
        source.close()
    assert seen[-1] is final and final.done and len(final.commands) == 40
    partial = [s for s in seen if not s.done]
    assert partial, "no batch was published before the end"
    sizes = [s.indexed_bytes for s in seen]
    assert sizes == sorted(sizes) and sizes[-1] == final.file_size
    # A published snapshot is frozen: later batches did not change its commands.
    for snap, then in zip(seen, counts_then, strict=True):
        assert {seq: cmd.frame_count for seq, cmd in snap.commands.items()} == then
    assert counts_then[0] != counts_then[-1]


async def test_q_during_indexing_stops_the_indexing(held: HeldSource) -> None:
    source = held
    app = ReclabApp(source)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(600):
            await pilot.pause(0.05)
            if source.held.is_set():
                break
        await pilot.press("q")
        source.release.set()  # indexing goes on... and stops at its next step
    assert gc.get_freeze_count() == 0  # frozen while indexing, not after the viewer
    # Quitting does not wait for the whole file to be indexed.
    assert source._idle.wait(timeout=60)
    assert not source.snapshot().done
    assert source.snapshot().indexed_bytes < Path(source.path).stat().st_size


def test_cancel_stops_indexing_and_checking(tmp_path: Path) -> None:
    path = tmp_path / "big.cbor"
    write_large(path, commands=1, frames_per_command=70_000, payload=20)  # > 65536 records
    source = RecordingSource.open(path)
    try:
        source.cancel()
        assert source.index() is source.snapshot() and not source.snapshot().done
        assert source.snapshot().commands == {}
        assert source.check() is None  # stopped at its first progress step
    finally:
        source.close()


def test_pacer_holds_a_worker_while_the_ui_is_behind() -> None:
    pacer = Pacer(late=0.0, max_wait=60, ratio=1e9)
    pacer.give_way()  # no beats yet (no UI running): never waits
    assert pacer.waited == 0
    pacer.beat()  # from now on the UI beats; late=0: it is always behind
    released = threading.Event()

    def work() -> None:
        pacer.give_way()
        released.set()

    worker = threading.Thread(target=work)
    worker.start()
    # The worker waits for the UI (up to a minute); the test ends its wait.
    assert not released.wait(timeout=0.05)
    pacer.late = 60.0  # the next beat... and the UI is on time again
    pacer.beat()
    worker.join(timeout=30)
    assert released.is_set() and pacer.waited > 0


def test_pacer_waits_in_proportion_to_the_work_between() -> None:
    pacer = Pacer(late=0.0, max_wait=60, ratio=0.0)  # the UI is always behind...
    pacer.beat()
    pacer.give_way()  # ...but no wait is allowed: indexing is never stopped for good
    assert pacer.waited == 0


async def test_indexing_is_paced_by_the_ui_only_while_it_runs(held: HeldSource) -> None:
    source = held
    app = ReclabApp(source)
    async with app.run_test(size=(100, 30)) as pilot:
        while not source.held.is_set():
            await pilot.pause(0.05)
        await pilot.pause(0.05)
        assert source.pacer.active  # the UI's beats reach the indexer
        assert gc.get_freeze_count() > 0  # the screen's objects are out of full collections
        bar = app.screen.query_one(SessionBar)
        layouts: list[bool] = []
        refresh = bar.refresh

        def counted(*args: Any, layout: bool = False, **kwargs: Any) -> Any:
            layouts.append(layout)
            return refresh(*args, layout=layout, **kwargs)

        bar.refresh = counted  # type: ignore[method-assign]
        snap = source.snapshot()
        more = replace(
            snap, indexed_bytes=snap.indexed_bytes + 1, record_count=snap.record_count + 1
        )
        bar.update_snapshot(more)  # progress only: same height, no new layout of the screen
        bar.update_snapshot(replace(more, done=True))
        assert layouts == [False, False]
        source.release.set()
        await workers_done(app)
        await pilot.pause()
        assert source.snapshot().done and not source.pacer.active
        assert gc.get_freeze_count() == 0


def test_pacer_holds_indexing_after_the_first_snapshot_until_the_screen_is_drawn() -> None:
    pacer = Pacer()
    pacer.wait_for_first_screen(timeout=60)  # no UI said it would draw: no wait
    pacer.holds_first_screen = True
    released = threading.Event()

    def work() -> None:
        pacer.wait_for_first_screen(timeout=60)
        released.set()

    worker = threading.Thread(target=work)
    worker.start()
    assert not released.wait(timeout=0.05)  # held until the UI has drawn...
    pacer.first_screen_shown()
    worker.join(timeout=30)
    assert released.is_set()
    pacer.wait_for_first_screen(timeout=60)  # ...once only
    # bounded: a UI that never draws holds indexing for the timeout at most
    late = Pacer()
    late.holds_first_screen = True
    late.wait_for_first_screen(timeout=0.01)
    assert late.waited > 0


async def test_indexing_waits_for_the_first_screen_then_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_module, "PUBLISH_INTERVAL", 0.0)
    path = tmp_path / "big.cbor"
    write_large(path, commands=40, frames_per_command=2500)
    source = RecordingSource.open(path)
    published: list[int] = []
    at_first_screen: list[int] = []
    publish, shown = source._publish, source.pacer.first_screen_shown

    def record_publish(snap: IndexSnapshot, callback: SnapshotCallback | None) -> None:
        published.append(snap.indexed_bytes)
        publish(snap, callback)

    def record_shown() -> None:
        at_first_screen.append(source.rec.snapshot().indexed_bytes)  # where indexing stands
        shown()

    monkeypatch.setattr(source, "_publish", record_publish)
    monkeypatch.setattr(source.pacer, "first_screen_shown", record_shown)
    app = ReclabApp(source)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await workers_done(app)
            await pilot.pause()
            assert source.snapshot().done
    finally:
        source.close()
    # Event order: nothing was indexed between the first snapshot and its screen.
    assert at_first_screen[0] == published[0] < published[-1]
