"""Recordings: the Recorder, the readers, truncation and byte-exact round trips."""

from __future__ import annotations

import io
import itertools
import threading
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentproto import (
    AgentConfig,
    CommandStart,
    Direction,
    ExecMsg,
    FileDirEntry,
    FileOp,
    FileOpReq,
    FileOpResp,
    FileStat,
    FileStatfs,
    Frame,
    FrameTooLargeError,
    FrameType,
    LocalProtocolError,
    LogEntry,
    MissingFooterError,
    PathInfo,
    PathInfoEntry,
    PathQuery,
    Record,
    RecordedFrame,
    Recorder,
    RecordingReader,
    RecordType,
    RemoteProtocolError,
    SessionHeader,
    TruncatedError,
    encode_frame_record,
    iter_records,
    read_recording,
)
from agentproto.recording import _record_from_map

HEADER = SessionHeader(
    version="1.3.4",
    start_time=1_700_000_000_000_000_000,
    local_user="tester",
    local_pid=42,
    backend_type="local",
    agent_path="mproxy-agent",
)


def sample_frames() -> list[tuple[Direction, Frame]]:
    """One frame of every type and most field kinds, as a session would carry them."""
    exec_msg = ExecMsg(path="/bin/sh", argv=["sh", "-c", "ls"], env=None, cwd="/", extra_fds=[3])
    return [
        (Direction.SEND, Frame(type=FrameType.CONFIG, config=AgentConfig(env_keep=["PATH"]))),
        (Direction.SEND, Frame(type=FrameType.EXEC, exec=exec_msg)),
        (Direction.SEND, Frame(type=FrameType.DATA, stream=0, data=b"stdin\n")),
        (Direction.SEND, Frame(type=FrameType.EOF, stream=0)),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=bytes(range(256)))),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=2, data="✓ é\n".encode())),
        (Direction.SEND, Frame(type=FrameType.SIGNAL, signal=2)),
        (Direction.RECV, Frame(type=FrameType.LOG, log=LogEntry(level=4, msg="w", attrs=["k=v"]))),
        (Direction.RECV, Frame(type=FrameType.ERROR, error="oops")),
        (Direction.SEND, Frame(type=FrameType.PATH_QUERY, query=PathQuery(paths=["/bin"]))),
        (
            Direction.RECV,
            Frame(
                type=FrameType.PATH_INFO,
                info=PathInfo(entries=[PathInfoEntry(name="ls", remote_path="/bin/ls", mode=493)]),
            ),
        ),
        (
            Direction.SEND,
            Frame(
                type=FrameType.FILE_OP, file_op=FileOpReq(req_id=1, op=FileOp.READ_DIR, path="/")
            ),
        ),
        (
            Direction.RECV,
            Frame(
                type=FrameType.FILE_RESP,
                file_resp=FileOpResp(
                    req_id=1,
                    entries=[FileDirEntry(FileStat(name="a", size=1, mode=0o644, ino=2**64 - 1))],
                    statfs=FileStatfs(blocks=2**64 - 1),
                ),
            ),
        ),
        (Direction.RECV, Frame(type=FrameType.EXIT, code=-1)),
    ]


def write_sample(target: Path | io.BytesIO, *, close: bool = True) -> Recorder:
    recorder = Recorder(target)
    recorder.write_session_header(HEADER)
    a = recorder.write_command_start(ExecMsg(path="/bin/sh", argv=["sh"], env=[], cwd="/"))
    b = recorder.write_command_start(ExecMsg(path="/bin/true", argv=None, env=None, cwd=""))
    for direction, frame in sample_frames():
        recorder.write_frame(a, direction, frame)
        recorder.write_frame(b, direction, frame.to_cbor())  # pre-encoded
    recorder.write_command_end(b, 0)
    recorder.write_command_end(a, -1)
    if close:
        recorder.close()
    return recorder


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.cbor"
    write_sample(path)
    return path


def record_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record, found with cbor2 alone (independent of our reader)."""
    fp = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(fp)
    spans = []
    while fp.tell() < len(data):
        start = fp.tell()
        decoder.decode()
        spans.append((start, fp.tell()))
    return spans


# --- the Recorder ----------------------------------------------------------------------


def test_sequence_numbers_and_footer(sample: Path) -> None:
    records = read_recording(sample)
    types = [r.type for r in records]
    assert types[0] == RecordType.SESSION_HEADER and records[0].header == HEADER
    assert types.count(RecordType.SESSION_FOOTER) == 1 and types[-1] == RecordType.SESSION_FOOTER
    starts = [r.cmd_start for r in records if r.cmd_start]
    assert [s.seq for s in starts] == [1, 2]
    assert records[-1].footer is not None and records[-1].footer.command_count == 2
    frames = [r.frame for r in records if r.frame]
    assert len(frames) == 2 * len(sample_frames())
    assert [f.frame for f in frames if f.seq == 1] == [f for _, f in sample_frames()]
    assert [f.frame for f in frames if f.seq == 2] == [f for _, f in sample_frames()]
    assert all(f.timestamp > 0 for f in frames)
    ends = {r.cmd_end.seq: r.cmd_end.exit_code for r in records if r.cmd_end}
    assert ends == {1: -1, 2: 0}


def test_seq_counts_up() -> None:
    recorder = Recorder(io.BytesIO())
    assert [recorder.write_command_start(ExecMsg()) for _ in range(3)] == [1, 2, 3]
    assert recorder.command_count == 3


def test_footer_written_once(tmp_path: Path) -> None:
    path = tmp_path / "r.cbor"
    recorder = Recorder(path)
    recorder.write_session_header(HEADER)
    recorder.write_session_footer()
    recorder.write_session_footer()
    recorder.close()
    recorder.close()
    records = read_recording(path)
    assert [r.type for r in records] == [RecordType.SESSION_HEADER, RecordType.SESSION_FOOTER]
    with pytest.raises(ValueError):
        recorder.write_frame(1, Direction.SEND, Frame())


def test_default_header_describes_this_process() -> None:
    out = io.BytesIO()
    recorder = Recorder(out)
    header = recorder.write_session_header()
    assert header.local_pid > 0 and header.start_time > 0 and header.version
    assert read_recording(io.BytesIO(out.getvalue()), require_footer=False)[0].header == header


def test_writer_target_is_not_closed() -> None:
    out = io.BytesIO()
    write_sample(out)
    assert not out.closed
    assert read_recording(io.BytesIO(out.getvalue()))[-1].type == RecordType.SESSION_FOOTER


def test_path_target_truncates(tmp_path: Path) -> None:
    path = tmp_path / "r.cbor"
    path.write_bytes(b"old junk" * 1000)
    with Recorder(path) as recorder:
        recorder.write_session_header(HEADER)
    assert [r.type for r in read_recording(path)] == [1, 5]


def test_each_record_reaches_the_os(tmp_path: Path) -> None:
    path = tmp_path / "live.cbor"
    recorder = Recorder(path)
    recorder.write_session_header(HEADER)
    seq = recorder.write_command_start(ExecMsg(path="/bin/cat"))
    with open(path, "rb") as other:  # another handle, while the recorder is open
        for i in range(5):
            recorder.write_frame(seq, Direction.RECV, Frame(type=2, stream=1, data=b"%d" % i))
            other.seek(0)
            seen = read_recording(io.BytesIO(other.read()), require_footer=False)
            assert len(seen) == 3 + i
            assert seen[-1].frame is not None and seen[-1].frame.frame.data == b"%d" % i
    recorder.close()


def test_buffered_writer_target_is_flushed(tmp_path: Path) -> None:
    path = tmp_path / "buffered.cbor"
    with open(path, "wb") as fp:  # a BufferedWriter: the recorder must flush each record
        recorder = Recorder(fp)
        recorder.write_session_header(HEADER)
        assert len(read_recording(path, require_footer=False)) == 1
        recorder.close()
        assert len(read_recording(path)) == 2


def test_concurrent_commands_interleave_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "concurrent.cbor"
    recorder = Recorder(path)
    recorder.write_session_header(HEADER)
    per_command = 150
    seqs: list[int] = []
    lock = threading.Lock()
    together = threading.Barrier(6, timeout=30)  # forces the commands to interleave

    def command(n: int) -> None:
        seq = recorder.write_command_start(ExecMsg(path=f"/bin/{n}", argv=[str(n)]))
        with lock:
            seqs.append(seq)
        for i in range(per_command):
            if i % 25 == 0:
                together.wait()
            data = bytes([seq]) * (i * 53 % 3000)
            recorder.write_frame(seq, Direction.RECV, Frame(type=2, stream=1, data=data))
        recorder.write_command_end(seq, n)

    threads = [threading.Thread(target=command, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    recorder.close()
    records = read_recording(path)
    assert sorted(seqs) == [1, 2, 3, 4, 5, 6]
    frames = [r.frame for r in records if r.frame]
    assert len(frames) == 6 * per_command
    for seq in seqs:
        mine = [f.frame.data for f in frames if f.seq == seq]
        assert [len(d) for d in mine] == [i * 53 % 3000 for i in range(per_command)]
        assert all(d == bytes([seq]) * len(d) for d in mine)
    # frames of different commands really interleave, and file order is time order
    switches = sum(1 for a, b in itertools.pairwise(frames) if a.seq != b.seq)
    assert switches >= 5 * (per_command // 25)  # each round has all six commands
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps)
    assert records[-1].footer is not None and records[-1].footer.command_count == 6


# --- encode_frame_record -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "ts", "direction", "frame"),
    [
        (1, 1_700_000_000_000_000_000, Direction.SEND, Frame(type=2, data=b"x")),
        (0, 0, 0, Frame()),
        (2**32 - 1, -(2**63), 255, Frame(type=99)),
        (24, 2**63 - 1, Direction.RECV, Frame(type=5, code=-1)),
        (70000, -1, 7, Frame(type=FrameType.EXEC, exec=ExecMsg(path="/"))),
    ],
)
def test_encode_frame_record_matches(seq: int, ts: int, direction: int, frame: Frame) -> None:
    record = Record(
        type=RecordType.FRAME,
        frame=RecordedFrame(seq=seq, timestamp=ts, direction=direction, frame=frame),
    )
    assert encode_frame_record(seq, ts, direction, frame.to_cbor()) == record.to_cbor()


@pytest.mark.parametrize(
    ("seq", "ts", "direction"),
    [
        *[(-1, 0, 1), (2**32, 0, 1), (1, 2**63, 1), (1, -(2**63) - 1, 1), (1, 0, 256), (1, 0, -1)],
        *[(True, 0, 1), (1.0, 0, 1), (1, 0.5, 1), (1, 0, True), (1, None, 1)],
    ],
)
def test_encode_frame_record_refuses(seq: object, ts: object, direction: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame_record(seq, ts, direction, Frame().to_cbor())  # type: ignore[arg-type]


# --- reading ------------------------------------------------------------------------------


def test_round_trip_is_byte_identical(sample: Path) -> None:
    data = sample.read_bytes()
    spans = record_spans(data)
    records = read_recording(sample)
    assert len(records) == len(spans)
    for record, (start, end) in zip(records, spans, strict=True):
        assert record.to_cbor() == data[start:end]
    assert b"".join(r.to_cbor() for r in records) == data


def test_raw_items_offsets(sample: Path) -> None:
    data = sample.read_bytes()
    reader = RecordingReader(sample)
    offsets = [offset for offset, _ in reader.raw_items()]
    assert offsets == [start for start, _ in record_spans(data)]
    assert reader.offset == len(data)


def test_reader_start_offset(sample: Path) -> None:
    spans = record_spans(sample.read_bytes())
    start = spans[3][0]
    records = list(RecordingReader(sample, start=start))
    assert records == read_recording(sample)[3:]


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1 << 20])
def test_chunk_sizes_do_not_matter(sample: Path, chunk_size: int) -> None:
    assert read_recording(sample, chunk_size=chunk_size) == read_recording(sample)


def test_file_object_source(sample: Path) -> None:
    with open(sample, "rb") as fp:
        assert list(iter_records(fp)) == read_recording(sample)


def test_truncation_at_every_offset(tmp_path: Path) -> None:
    out = io.BytesIO()
    recorder = Recorder(out)
    recorder.write_session_header(HEADER)
    seq = recorder.write_command_start(ExecMsg(path="/bin/sh", argv=["sh"], env=None, cwd="/"))
    for direction, frame in sample_frames()[:8]:
        recorder.write_frame(seq, direction, frame)
    recorder.write_command_end(seq, 3)
    recorder.close()
    data = out.getvalue()
    spans = record_spans(data)
    full = read_recording(io.BytesIO(data))
    ends = [end for _, end in spans]
    for cut in range(len(data) + 1):
        complete = sum(1 for end in ends if end <= cut)
        boundary = max([0, *(end for end in ends if end <= cut)])
        for chunk_size in (1 << 20, 16):
            source = io.BytesIO(data[:cut])
            if cut == len(data):
                assert read_recording(source, chunk_size=chunk_size) == full
                continue
            with pytest.raises(TruncatedError) as info:
                read_recording(source, chunk_size=chunk_size)
            exc = info.value
            assert exc.records == full[:complete], cut
            assert exc.offset == boundary, cut
            # a cut exactly between records is a missing footer; inside one, a cut record
            assert isinstance(exc, MissingFooterError) == (cut == boundary), cut
        # streaming yields the same complete records before raising
        got = []
        reader = RecordingReader(io.BytesIO(data[:cut]), require_footer=False)
        try:
            got.extend(reader)
        except TruncatedError as exc:
            assert exc.offset == boundary and cut != boundary
        assert got == full[:complete]
        assert reader.offset == boundary


def test_missing_footer(sample: Path, tmp_path: Path) -> None:
    data = sample.read_bytes()
    last_start = record_spans(data)[-1][0]
    path = tmp_path / "nofooter.cbor"
    path.write_bytes(data[:last_start])
    with pytest.raises(MissingFooterError) as info:
        read_recording(path)
    assert info.value.offset == last_start
    assert len(info.value.records) == len(record_spans(data)) - 1
    assert "footer" in str(info.value)
    # without the requirement it reads cleanly
    assert len(read_recording(path, require_footer=False)) == len(info.value.records)


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"\xff", "break"),
        (b"\x1c\x00", "reserved head"),
        (b"\x00", "an integer, not a record"),
        (cbor2.dumps({"type": "frame"}), "wrong type"),
        (cbor2.dumps({"type": 3, "frame": {"seq": -1}}), "bad nested field"),
        (cbor2.dumps([1, 2, 3]), "an array"),
    ],
)
def test_garbage_in_the_middle(sample: Path, tmp_path: Path, garbage: bytes, why: str) -> None:
    data = sample.read_bytes()
    spans = record_spans(data)
    at = spans[5][0]
    path = tmp_path / "garbage.cbor"
    path.write_bytes(data[:at] + garbage + data[at:])
    got = []
    with pytest.raises(RemoteProtocolError) as info:
        got.extend(iter_records(path))
    assert info.value.offset == at, why
    assert not isinstance(info.value, TruncatedError), why
    assert got == read_recording(sample)[:5]


def test_record_larger_than_the_limit(sample: Path) -> None:
    with pytest.raises(FrameTooLargeError) as info:
        read_recording(sample, max_record_size=100, chunk_size=64)
    assert "larger than" in str(info.value)


def test_hostile_length_in_a_recording(sample: Path, tmp_path: Path) -> None:
    # a record announcing 2^62 bytes: refused at once, not read to the end of the file
    data = sample.read_bytes()
    at = record_spans(data)[2][0]
    hostile = bytes.fromhex("a2647479706503656672616d655b") + (2**62).to_bytes(8, "big")
    path = tmp_path / "hostile.cbor"
    path.write_bytes(data[:at] + hostile + b"\x00" * 100)
    with pytest.raises(FrameTooLargeError) as info:
        read_recording(path)
    assert info.value.offset == at
    assert not isinstance(info.value, TruncatedError)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.cbor"
    empty.write_bytes(b"")
    with pytest.raises(MissingFooterError):
        read_recording(empty)
    assert read_recording(empty, require_footer=False) == []
    with pytest.raises(FileNotFoundError):
        read_recording(tmp_path / "missing.cbor")
    with pytest.raises(IsADirectoryError):
        read_recording(tmp_path)


def test_records_compare_by_value(sample: Path) -> None:
    records = read_recording(sample)
    start = next(r.cmd_start for r in records if r.cmd_start)
    assert isinstance(start, CommandStart) and start.exec.env == []
    assert records[1].payload is start


# --- the reader's shortcut for frame records agrees with the general decoder ---------------

_ODD_VALUES = st.sampled_from(
    [
        *(0, 1, 2, 3, 255, 256, -1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1),
        *(True, False, None, 1.0, "x", b"x", b"", [], {}, {"t": 2}),
    ]
)


@st.composite
def frame_record_maps(draw: st.DrawFn) -> dict[object, object]:
    frame: dict[object, object] = {"t": 2, "s": 1, "d": b"data"}
    rf: dict[object, object] = {"seq": 1, "ts": 1_700_000_000_000_000_000, "dir": 2, "frame": frame}
    record: dict[object, object] = {"type": 3, "frame": rf}
    for target in (frame, rf, record):
        for key in list(target):
            choice = draw(st.integers(0, 9))
            if choice == 0:
                target[key] = draw(_ODD_VALUES)
            elif choice == 1:
                del target[key]
            elif choice == 2:
                target[key.upper() if isinstance(key, str) else key] = target.pop(key)
        if draw(st.integers(0, 9)) == 0:
            target[draw(st.sampled_from(["c", "x", "zz", 7, "T"]))] = draw(_ODD_VALUES)
    return record


@settings(max_examples=400, deadline=None)
@given(frame_record_maps())
def test_frame_record_shortcut_matches_general_path(m: dict[object, object]) -> None:
    try:
        expected: Record | str = Record.from_map(m)
    except RemoteProtocolError as exc:
        expected = str(exc)
    try:
        got: Record | str = _record_from_map(m)
    except RemoteProtocolError as exc:
        got = str(exc)
    assert got == expected
    if isinstance(got, Record) and isinstance(expected, Record):
        assert got.to_cbor() == expected.to_cbor()
        assert type(got.type) is type(expected.type)


def _many_records(n: int) -> bytes:
    out = io.BytesIO()
    with Recorder(out) as rec:
        rec.write_session_header()
        seq = rec.write_command_start(ExecMsg(path="/bin/true", argv=["true"]))
        for i in range(n):
            rec.write_frame(
                seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"x%d" % i)
            )
        rec.write_command_end(seq, 0)
    return out.getvalue()


def test_read_recording_runs_no_garbage_collection_while_building() -> None:
    import gc

    data = _many_records(5000)  # 15 000 objects: many collections if the collector ran
    collections: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    gc.callbacks.append(seen)
    try:
        records = read_recording(io.BytesIO(data))
    finally:
        gc.callbacks.remove(seen)
    assert len(records) == 5004 and collections == []
    assert gc.isenabled()


def test_read_recording_leaves_the_collector_as_it_found_it() -> None:
    import gc

    cut = _many_records(10)[:-3]
    with pytest.raises(TruncatedError) as info:
        read_recording(io.BytesIO(cut))
    assert gc.isenabled() and len(info.value.records) == 13
    gc.disable()
    try:
        read_recording(io.BytesIO(_many_records(10)))
        assert not gc.isenabled()
    finally:
        gc.enable()
