"""The analysis model: indexing, aggregates, records on demand, cut files, live refresh.

Recordings are hand-built with :class:`agentproto.Recorder` and explicit
timestamps; expected values are computed from the script of the session, not
with the model's code.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import pytest

from agentproto import (
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
from reclab.model import (
    KIND_COMMAND_END,
    KIND_COMMAND_START,
    KIND_SESSION_FOOTER,
    KIND_SESSION_HEADER,
    IndexOptions,
    Recording,
    RecordingError,
    UnknownCommandError,
    open_recording,
    parallel,
)
from tests.builders import (
    PREFIX,
    RECV,
    SEND,
    T0,
    Script,
    allow_fork_beside_threads,
    sample_script,
    varied_script,
)

# --- building recordings ---------------------------------------------------------------


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, Script, bytes]:
    s = sample_script()
    path = tmp_path / "session.cbor"
    data = s.write(path)
    return path, s, data


def offsets_of(script: Script) -> list[int]:
    """Byte offset of each record, from the encoded sizes (independent of the indexer)."""
    out, at = [], 0
    for r in script.records:
        out.append(at)
        at += len(r.to_cbor())
    return out


# --- a complete recording -------------------------------------------------------------------


def test_header_footer_and_counts(sample: tuple[Path, Script, bytes]) -> None:
    path, script, data = sample
    with open_recording(path) as rec:
        assert rec.size == len(data)
        assert rec.record_count == len(script.records)
        assert rec.truncation is None
        assert rec.header == script.records[0].header
        assert rec.footer == SessionFooter(end_time=T0 + 170, command_count=2)
        assert list(rec.commands) == [1, 2]
        assert [rec.offset_of(i) for i in range(rec.record_count)] == offsets_of(script)
        assert rec.indexed_bytes == len(data)


def test_command_aggregates(sample: tuple[Path, Script, bytes]) -> None:
    path, _script, _data = sample
    with open_recording(path) as rec:
        one, two = rec.command(1), rec.command(2)
    assert one.path == "/bin/sh" and one.argv == ["sh", "-c", "echo hi"] and one.cwd == "/w"
    assert (one.start_time, one.end_time, one.exit_code) == (T0 + 10, T0 + 140, 3)
    assert one.exit_frame_code == 3
    assert one.duration == pytest.approx(130e-9)
    assert one.complete
    # exec, data, eof, data, data, data, log, error, file op, file resp, empty data, exit
    assert one.frame_count == 12
    assert (one.first_frame_time, one.last_frame_time) == (T0 + 30, T0 + 130)
    assert one.bytes_sent == {0: len(b"input-1")}
    assert one.bytes_received == {1: len(b"hi\n") + len(b"more\x00bytes") + 0, 2: len(b"warn: x\n")}
    assert one.signals == [] and one.errors == ["pty failed"]
    assert (one.log_count, one.file_op_count) == (1, 1)
    assert two.argv == ["cat"] and two.exec.extra_fds == [3]
    assert two.signals == [15, 9]
    assert two.exit_code == 0 and two.exit_frame_code == 0
    assert two.bytes_received == {1: 7, 3: len(b"\x00\xff extra")}
    assert two.frame_count == 6


def test_record_indexes_and_kinds(sample: tuple[Path, Script, bytes]) -> None:
    path, script, _data = sample
    with open_recording(path) as rec:
        expect = {1: [], 2: []}  # type: dict[int, list[int]]
        for i, r in enumerate(script.records):
            if r.frame is not None:
                expect[r.frame.seq].append(i)
        assert list(rec.command(1).record_indexes) == expect[1]
        assert list(rec.command(2).record_indexes) == expect[2]
        kinds = list(rec.kinds)
        assert kinds[0] == KIND_SESSION_HEADER and kinds[-1] == KIND_SESSION_FOOTER
        assert kinds[1] == kinds[2] == KIND_COMMAND_START
        assert kinds.count(KIND_COMMAND_END) == 2
        for i, r in enumerate(script.records):
            if r.frame is not None:
                assert kinds[i] == int(r.frame.frame.type)


def test_record_on_demand_and_iteration(sample: tuple[Path, Script, bytes]) -> None:
    path, script, _data = sample
    with open_recording(path) as rec:
        for i in (0, 5, len(script.records) - 1, 3):
            assert rec.record(i) == script.records[i]
        got = list(rec.iter_records(4, 9))
        assert [i for i, _o, _r in got] == [4, 5, 6, 7, 8]
        assert [r for _i, _o, r in got] == script.records[4:9]
        assert [o for _i, o, _r in got] == offsets_of(script)[4:9]
        assert [r for _i, _o, r in rec.iter_records()] == script.records
        with pytest.raises(IndexError):
            rec.offset_of(len(script.records))


def test_frames_of_a_command_and_of_all(sample: tuple[Path, Script, bytes]) -> None:
    path, script, _data = sample
    with open_recording(path) as rec:
        refs = list(rec.frames(2))
        expect = [r.frame for r in script.records if r.frame is not None and r.frame.seq == 2]
        assert [(f.seq, f.timestamp, f.direction, f.frame) for f in refs] == [
            (e.seq, e.timestamp, e.direction, e.frame) for e in expect
        ]
        assert all(rec.record(f.index).frame is not None for f in refs)
        all_refs = list(rec.frames())
        assert len(all_refs) == sum(r.frame is not None for r in script.records)
        assert [f.index for f in all_refs] == sorted(f.index for f in all_refs)


def test_streams_are_byte_exact(sample: tuple[Path, Script, bytes]) -> None:
    path, _script, _data = sample
    with open_recording(path) as rec:
        assert rec.stream_bytes(1, 0) == b"input-1"
        assert rec.stream_bytes(1, 1) == b"hi\nmore\x00bytes"
        assert rec.stream_bytes(1, 2) == b"warn: x\n"
        assert rec.stream_bytes(2, 3) == b"\x00\xff extra"
        assert rec.stream_bytes(2, 2) == b""
        chunks = list(rec.stream_chunks(1))
        assert chunks == [
            (0, SEND, b"input-1"),
            (1, RECV, b"hi\n"),
            (2, RECV, b"warn: x\n"),
            (1, RECV, b"more\x00bytes"),
        ]
        assert [c[0] for c in rec.stream_chunks(2, streams=[1, 3])] == [1, 3]


def test_unknown_command(sample: tuple[Path, Script, bytes]) -> None:
    path, _script, _data = sample
    with open_recording(path) as rec, pytest.raises(UnknownCommandError) as err:
        rec.command(9)
    assert "1..2" in str(err.value) and "\n" not in str(err.value)


def test_large_record_across_chunks(tmp_path: Path) -> None:
    big = bytes(range(256)) * (5 * 4096 + 7)  # > the 4 MiB read size
    s = Script()
    s.header()
    s.start(1, T0 + 1, path="/x")
    s.data(1, T0 + 2, 1, b"a")
    s.data(1, T0 + 3, 1, big)
    s.data(1, T0 + 4, 1, b"z")
    s.end(1, T0 + 5, 0)
    s.footer(T0 + 6, 1)
    path = tmp_path / "big.cbor"
    s.write(path)
    with open_recording(path) as rec:
        assert rec.record_count == 7 and rec.truncation is None
        assert rec.command(1).bytes_received == {1: len(big) + 2}
        assert rec.stream_bytes(1, 1) == b"a" + big + b"z"


def test_progress_is_reported(sample: tuple[Path, Script, bytes]) -> None:
    path, _script, data = sample
    calls: list[tuple[int, int]] = []
    rec = open_recording(path, index=False)
    assert rec.header is not None and rec.record_count == 1
    rec.index(progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (len(data), len(data))
    assert all(done <= total for done, total in calls)
    assert rec.record_count == len(sample_script().records)
    rec.close()


def test_frames_without_a_command_start_and_unsorted_seqs(tmp_path: Path) -> None:
    s = Script()
    s.header()
    s.data(5, T0 + 1, 1, b"orphan")
    s.start(3, T0 + 2, path="/three")
    s.data(3, T0 + 3, 1, b"x")
    path = tmp_path / "odd.cbor"
    s.write(path)
    with open_recording(path) as rec:
        assert list(rec.commands) == [3, 5]
        orphan = rec.command(5)
        assert orphan.start_time is None and orphan.path == "" and not orphan.complete
        assert orphan.bytes_received == {1: 6}
        assert rec.truncation is not None and rec.truncation.kind == "no-footer"


def test_keys_in_another_case_are_read_like_go(tmp_path: Path) -> None:
    # Go's decoder matches keys case-insensitively; the index must too.
    head = Record(type=RecordType.SESSION_HEADER, header=SessionHeader(version="1")).to_cbor()
    odd = cbor2.dumps(
        {
            "Type": 3,
            "Frame": {"Seq": 4, "TS": T0, "Dir": 2, "Frame": {"T": 2, "S": 1, "D": b"abc"}},
        }
    )
    path = tmp_path / "case.cbor"
    path.write_bytes(head + odd)
    with open_recording(path) as rec:
        assert rec.record_count == 2
        assert rec.command(4).bytes_received == {1: 3}
        assert rec.stream_bytes(4, 1) == b"abc"


# --- damaged and unusual files ---------------------------------------------------------------


def test_cut_anywhere_in_the_last_record(
    sample: tuple[Path, Script, bytes], tmp_path: Path
) -> None:
    _path, script, data = sample
    offsets = offsets_of(script)
    last = offsets[-2]  # cut inside the command-end record before the footer
    for cut in range(last + 1, offsets[-1]):
        path = tmp_path / f"cut{cut}.cbor"
        path.write_bytes(data[:cut])
        with open_recording(path) as rec:
            assert rec.record_count == len(script.records) - 2
            assert rec.truncation is not None and rec.truncation.kind == "cut"
            assert rec.truncation.offset == last
            assert "\n" not in rec.truncation.message
            assert not rec.command(2).complete


def test_cut_at_a_record_boundary_is_no_footer(
    sample: tuple[Path, Script, bytes], tmp_path: Path
) -> None:
    _path, script, data = sample
    offsets = offsets_of(script)
    path = tmp_path / "nofooter.cbor"
    path.write_bytes(data[: offsets[10]])
    with open_recording(path) as rec:
        assert rec.record_count == 10
        assert rec.truncation is not None
        assert (rec.truncation.kind, rec.truncation.offset) == ("no-footer", offsets[10])


@pytest.mark.parametrize(
    "junk",
    [b"\xff\xff\xff\xff", b"\x1c", b"\x9f\x01\xff", b"\xa1\x61x\x01" + b"\x00" * 3],
    ids=["break-codes", "reserved-head", "indefinite-array", "map-without-type"],
)
def test_garbage_in_the_middle(
    sample: tuple[Path, Script, bytes], tmp_path: Path, junk: bytes
) -> None:
    _path, script, data = sample
    offsets = offsets_of(script)
    path = tmp_path / "garbage.cbor"
    path.write_bytes(data[: offsets[6]] + junk + data[offsets[6] :])
    with open_recording(path) as rec:
        # The damage is skipped (as `reclab check` does) and what follows is read.
        assert rec.record_count == len(script.records)
        assert [(d.offset, d.size) for d in rec.damage] == [(offsets[6], len(junk))]
        assert "\n" not in rec.damage[0].message
        assert rec.truncation is None
        assert rec.record(5) == script.records[5]
        assert rec.record(6) == script.records[6]
        assert [rec.record(i) for i in range(rec.record_count)] == script.records
        assert sum(c.frame_count for c in rec.commands.values()) == sum(
            r.frame is not None for r in script.records
        )


def test_hostile_length_does_not_allocate(tmp_path: Path) -> None:
    head = Record(type=RecordType.SESSION_HEADER, header=SessionHeader(version="1")).to_cbor()
    # A frame record whose data claims 2**40 bytes.
    hostile = bytes.fromhex("a2647479706503656672616d65a4637365710162747301636469720265")
    hostile += b"frame\xa2\x61t\x02\x61d\x5b" + (1 << 40).to_bytes(8, "big") + b"xx"
    path = tmp_path / "hostile.cbor"
    path.write_bytes(head + hostile)
    with open_recording(path) as rec:
        assert rec.record_count == 1
        assert rec.truncation is not None and rec.truncation.kind == "garbage"
        assert rec.truncation.offset == len(head)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is text\n", cbor2.dumps(42), cbor2.dumps({"x": 1}), b"\xff\x00\x13"],
    ids=["empty", "text", "cbor-int", "map-without-type", "junk"],
)
def test_not_a_recording(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not.cbor"
    path.write_bytes(content)
    with pytest.raises(RecordingError) as err:
        open_recording(path)
    message = str(err.value)
    assert "is not an agentproto recording" in message and "\n" not in message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="no such file"):
        open_recording(tmp_path / "missing.cbor")
    with pytest.raises(RecordingError, match="is a directory"):
        open_recording(tmp_path)


def test_a_header_being_written_is_a_recording(tmp_path: Path) -> None:
    head = Record(type=RecordType.SESSION_HEADER, header=SessionHeader(version="1.3.4"))
    path = tmp_path / "begun.cbor"
    path.write_bytes(head.to_cbor()[:7])
    with open_recording(path) as rec:
        assert rec.record_count == 0
        assert rec.truncation is not None and rec.truncation.kind == "cut"


def test_closed_recording_refuses_reads(sample: tuple[Path, Script, bytes]) -> None:
    path, _script, _data = sample
    rec = open_recording(path)
    rec.close()
    assert rec.command(1).frame_count == 12  # the index stays
    with pytest.raises(RecordingError, match="closed"):
        rec.record(0)


# --- live recordings -----------------------------------------------------------------------------


def test_refresh_follows_a_live_recording(tmp_path: Path) -> None:
    path = tmp_path / "live.cbor"
    sink = open(path, "ab", buffering=0)  # noqa: SIM115  (append mode: our own appends stay in order)
    writer = Recorder(sink)
    try:
        writer.write_session_header()
        seq = writer.write_command_start(ExecMsg(path="/bin/yes", argv=["yes"]))
        writer.write_frame(seq, RECV, Frame(type=FrameType.DATA, stream=1, data=b"y\n"))
        rec = open_recording(path)
        assert rec.record_count == 3
        assert rec.truncation is not None and rec.truncation.kind == "no-footer"
        assert rec.refresh() == 0
        for _ in range(4):
            writer.write_frame(seq, RECV, Frame(type=FrameType.DATA, stream=1, data=b"y\n"))
        # Half a record, as a writer caught mid-write leaves it:
        extra = Record(
            type=RecordType.FRAME,
            frame=RecordedFrame(
                seq=seq, timestamp=T0, direction=RECV, frame=Frame(type=2, stream=1, data=b"y\n")
            ),
        ).to_cbor()
        with open(path, "ab") as fp:
            fp.write(extra[:10])
        assert rec.refresh() == 4
        assert rec.truncation is not None and rec.truncation.kind == "cut"
        assert rec.command(seq).bytes_received == {1: 10}
        with open(path, "ab") as fp:
            fp.write(extra[10:])
        assert rec.refresh() == 1
        assert rec.command(seq).frame_count == 6
        assert rec.stream_bytes(seq, 1) == b"y\n" * 6
        writer.write_command_end(seq, 0)
    finally:
        writer.close()
        sink.close()
    assert rec.refresh() == 2  # the command end and the footer
    assert rec.truncation is None and rec.command(seq).exit_code == 0
    rec.close()


# --- the bulk (vectorised) indexer against the record-by-record reference -------------------


def index_snapshot(rec: Recording) -> tuple[object, ...]:
    import dataclasses

    commands = {
        seq: [getattr(c, f.name) for f in dataclasses.fields(c)] for seq, c in rec.commands.items()
    }
    return (
        rec.record_count,
        rec.indexed_bytes,
        [rec.offset_of(i) for i in range(rec.record_count)],
        list(rec.kinds),
        list(rec.commands),
        commands,
        rec.header,
        rec.footer,
        rec.truncation,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("chunk", [4096, 1 << 22])
def test_bulk_index_equals_reference(tmp_path: Path, seed: int, chunk: int) -> None:
    path = tmp_path / "varied.cbor"
    data = varied_script(seed).write(path)
    bulk_options = IndexOptions(chunk_size=chunk, bulk_min_bytes=512, workers=1)
    reference_options = IndexOptions(chunk_size=chunk, bulk=False, workers=1)
    with open_recording(path, options=bulk_options) as rec:
        bulk = index_snapshot(rec)
    with open_recording(path, options=reference_options) as rec:
        reference = index_snapshot(rec)
    assert bulk == reference
    assert bulk[0] == len(varied_script(seed).records)
    # and a cut inside the file, at a chunk boundary or not
    for cut in (len(data) // 3, len(data) // 2 + 1):
        path.write_bytes(data[:cut])
        with open_recording(path, options=reference_options) as rec:
            cut_reference = index_snapshot(rec)
        with open_recording(path, options=bulk_options) as rec:
            assert index_snapshot(rec) == cut_reference


def _count_forks(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Record the helpers forked (their pids) and the segments merged (their records)."""
    allow_fork_beside_threads(monkeypatch)
    forked: list[int] = []
    real_fork = parallel._fork_helper

    def fork_helper(*args: Any) -> Any:
        pid, reader = real_fork(*args)
        if pid is not None:
            forked.append(pid)
        return pid, reader

    monkeypatch.setattr(parallel, "_fork_helper", fork_helper)
    merged: list[int] = []
    real_merge = parallel._merge

    def merge(index: Any, state: dict[str, Any]) -> None:
        merged.append(len(state["offsets"]))
        real_merge(index, state)

    monkeypatch.setattr(parallel, "_merge", merge)
    return forked, merged


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # already waited for
    return False


@pytest.mark.slow
def test_two_process_index_equals_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "varied.cbor"
    data = varied_script(7, frames=3000, mimic=False).write(path)
    with open_recording(path, options=IndexOptions(workers=1)) as rec:
        reference = index_snapshot(rec)
    options = IndexOptions(
        workers=2,  # a helper process even on one core
        parallel_min_bytes=1,
        segment=len(data) // 9,  # several segments to merge
        worker_wait=60,  # always wait for the helper here
    )
    forked, merged = _count_forks(monkeypatch)
    with open_recording(path, options=options) as rec:
        assert index_snapshot(rec) == reference
    assert forked  # the helper process really ran
    assert len(merged) >= 2  # and its index came in several segments
    assert all(_reaped(pid) for pid in forked)
    # A helper that is not waited for: this process indexes the rest, alike.
    forked.clear()
    merged.clear()
    with open_recording(path, options=replace(options, worker_wait=0)) as rec:
        assert index_snapshot(rec) == reference
    assert forked and all(_reaped(pid) for pid in forked)
    # A split candidate inside a payload is refused and indexing still agrees.
    middle = len(data) // 2
    s = Script()
    s.header()
    s.start(1, T0, path="/x")
    s.data(1, T0 + 1, 1, PREFIX * 20000)  # the middle of the file is inside this payload
    s.data(1, T0 + 2, 2, b"after")
    s.footer(T0 + 3, 1)
    tricky = tmp_path / "tricky.cbor"
    s.write(tricky)
    assert middle > 0
    with open_recording(tricky, options=options) as rec:
        assert rec.record_count == 5 and rec.stream_bytes(1, 2) == b"after"
        assert rec.command(1).bytes_received == {1: len(PREFIX) * 20000, 2: 5}


def test_no_helper_forked_from_a_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Forking while other threads run is unsafe: from a worker thread (the
    # TUI's indexer) the index is built in this process alone, and alike.
    path = tmp_path / "varied.cbor"
    varied_script(8, frames=400, mimic=False).write(path)
    with open_recording(path, options=IndexOptions(workers=1)) as rec:
        reference = index_snapshot(rec)
    forked, _merged = _count_forks(monkeypatch)
    options = IndexOptions(workers=2, parallel_min_bytes=1)
    found: list[Any] = []

    def index() -> None:
        with open_recording(path, options=options) as rec:
            found.append(index_snapshot(rec))

    worker = threading.Thread(target=index)
    worker.start()
    worker.join()
    assert found == [reference]
    assert forked == []


def test_helper_only_with_a_free_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "varied.cbor"
    varied_script(9, frames=400, mimic=False).write(path)
    options = IndexOptions(parallel_min_bytes=1)  # workers=None: decide by the machine
    forked, _merged = _count_forks(monkeypatch)
    monkeypatch.setattr(parallel, "_cores", lambda: 2)
    monkeypatch.setattr(parallel, "busy_cores", lambda: 1.0)  # one core taken by others
    with open_recording(path, options=options) as rec:
        assert rec.record_count > 400
    assert forked == []
    monkeypatch.setattr(parallel, "busy_cores", lambda: 0.0)  # an idle machine
    with open_recording(path, options=options) as rec:
        assert rec.record_count > 400
    assert len(forked) == 1


def test_offsets_and_indexes_take_four_bytes_below_4_gib(
    sample: tuple[Path, Script, bytes],
) -> None:
    path, s, _data = sample
    with open_recording(path) as rec:
        narrow = index_snapshot(rec)
        index = rec._index
        assert index._offsets.itemsize == 4
        assert all(c.record_indexes.itemsize == 4 for c in index.commands.values())
        # Past 4 GiB they widen to 8 bytes, keeping every entry.
        with index._state_lock:
            index._widen()
        assert index._offsets.itemsize == 8
        assert all(c.record_indexes.itemsize == 8 for c in index.commands.values())
        assert index_snapshot(rec) == narrow
        assert rec.offset_of(rec.record_count - 1) == offsets_of(s)[-1]


def test_refresh_while_frames_are_being_read(tmp_path: Path) -> None:
    # A viewer reads frames while the background indexer grows the index.
    path = tmp_path / "live.cbor"
    s = Script()
    s.header()
    for i in range(50):
        s.data(1, T0 + i, 1, b"x" * 10)
    data = s.write(path)
    with open_recording(path) as rec:
        chunks = rec.frame_chunks()
        simple, others = next(chunks)
        frames = rec.frames()
        next(frames)
        more = Script()
        for i in range(50):
            more.data(1, T0 + 100 + i, 1, b"y")
        path.write_bytes(data + b"".join(r.to_cbor() for r in more.records))
        assert rec.refresh() == 50  # no BufferError from the suspended readers
        assert len(simple["index"]) + len(others) == 50
        assert sum(1 for _ in frames) == 49  # the frames indexed when it started
        assert rec.stream_bytes(1, 1) == b"x" * 500 + b"y" * 50
