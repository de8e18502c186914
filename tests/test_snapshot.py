"""Recording.snapshot(): a frozen, consistent view while another thread indexes."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from agentproto import Direction, Frame, FrameType
from reclab.model import Command, IndexOptions, IndexSnapshot, open_recording
from tests.builders import RecordingBuilder

T0 = 1_700_000_000_000_000_000


def busy_recording(path: Path) -> None:
    """Three interleaved commands with many data frames: about 6 MB, many 64 KiB chunks."""
    b = RecordingBuilder()
    b.header()
    for seq in (1, 2, 3):
        b.start(seq, T0 + seq)
    for i in range(6000):
        seq = 1 + i % 3
        b.data(seq, T0 + 10 + i, 1 + i % 2, bytes([i % 251]) * (1 + i % 1997))
        if i % 500 == 0:
            b.frame(seq, T0 + 10 + i, Direction.RECV, Frame(type=FrameType.LOG, log=None))
    for seq in (1, 2, 3):
        b.frame(seq, T0 + 9000 + seq, Direction.RECV, Frame(type=FrameType.EXIT, code=seq))
        b.end(seq, T0 + 9100 + seq, seq)
    b.footer(T0 + 9999, 3)
    b.write(path)


def check_snapshot(rec: object, snap: IndexSnapshot) -> None:
    """Every command of ``snap`` agrees with the records it points at."""
    from reclab.model import Recording

    assert isinstance(rec, Recording)
    assert list(snap.commands) == sorted(snap.commands)
    for seq, cmd in snap.commands.items():
        indexes = cmd.record_indexes[: cmd.frame_count]
        assert len(indexes) == cmd.frame_count
        assert all(i < snap.record_count for i in indexes)
        received: dict[int, int] = {}
        for i in indexes:
            rf = rec.record(i).frame
            assert rf is not None and rf.seq == seq
            if rf.frame.type == FrameType.DATA:
                received[rf.frame.stream] = received.get(rf.frame.stream, 0) + len(rf.frame.data)
        assert received == cmd.bytes_received


def test_snapshots_while_indexing_in_another_thread(tmp_path: Path) -> None:
    path = tmp_path / "busy.cbor"
    busy_recording(path)
    options = IndexOptions(chunk_size=64 * 1024, bulk_min_bytes=4096, workers=1)
    rec = open_recording(path, index=False, options=options)
    paused = threading.Event()
    resume = threading.Event()
    reports: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        reports.append((done, total))
        if len(reports) == 1:  # hold the indexer once, at 4 MiB, for a certain mid-file snapshot
            paused.set()
            resume.wait(30)

    indexer = threading.Thread(target=rec.index, kwargs={"progress": progress})
    indexer.start()
    assert paused.wait(30)
    held = rec.snapshot()
    assert held.record_count > 0 and not held.done and held.indexed_bytes < held.file_size
    frozen = {seq: dataclasses.astuple(cmd)[:-3] for seq, cmd in held.commands.items()}
    check_snapshot(rec, held)
    resume.set()
    taken = [held]
    while indexer.is_alive():  # snapshots and reads race the indexer
        snap = rec.snapshot()
        assert snap.record_count >= taken[-1].record_count
        if len(taken) % 10 == 0:
            check_snapshot(rec, snap)
            for seq in snap.commands:
                b"".join(chunk for _s, _d, chunk in rec.stream_chunks(seq))
        taken.append(snap)
    indexer.join()
    final = rec.snapshot()
    assert final.done and final.record_count == rec.record_count and final.truncation is None
    check_snapshot(rec, final)
    assert final.commands[1].exit_code == 1 and final.footer is not None
    # The held snapshot's commands were never changed by the indexing that followed.
    assert {seq: dataclasses.astuple(cmd)[:-3] for seq, cmd in held.commands.items()} == frozen
    assert held.commands[1].frame_count < final.commands[1].frame_count
    assert all(done <= total for done, total in reports) and reports[-1][0] == reports[-1][1]
    rec.close()


def test_snapshot_of_a_finished_index_matches_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "busy.cbor"
    busy_recording(path)
    with open_recording(path) as rec:
        snap = rec.snapshot()
        assert snap.done and snap.record_count == rec.record_count
        assert snap.file_size == rec.size == snap.indexed_bytes
        assert snap.header == rec.header and snap.footer == rec.footer
        for seq, cmd in rec.commands.items():
            copy = snap.commands[seq]
            assert isinstance(copy, Command) and copy is not cmd
            assert dataclasses.astuple(copy) == dataclasses.astuple(cmd)
        assert rec.snapshot().commands is snap.commands  # nothing changed: no new copies
