"""The pandas tables: dtypes, values, file-op pairing, logs, streams, batching."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from agentproto import FileOp, FileOpReq, FileOpResp, Frame, FrameType, LogEntry
from reclab import tables
from reclab.model import IndexOptions, open_recording
from tests.builders import RECV, SEND, T0, Script, fileops_script, sample_script, varied_script

UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, unit="ns", tz="UTC")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "session.cbor"
    sample_script().write(path)
    return path


def test_session_table(sample: Path) -> None:
    with open_recording(sample) as rec:
        df = tables.session_table(rec)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["version"] == "1.3.4" and row["local_user"] == "ana"
    assert row["local_pid"] == 4242
    assert (row["backend_type"], row["backend_addr"], row["agent_path"]) == (
        "ssh",
        "host:22",
        "/a",
    )
    assert row["start_time"] == ts(T0) and row["end_time"] == ts(T0 + 170)
    assert row["command_count"] == 2 and not row["truncated"]
    assert df["start_time"].dtype == UTC_NS and df["local_pid"].dtype == "Int64"


def test_commands_table(sample: Path) -> None:
    with open_recording(sample) as rec:
        df = tables.commands_table(rec)
    assert list(df["seq"]) == [1, 2]
    one, two = df.iloc[0], df.iloc[1]
    assert (
        one["path"] == "/bin/sh" and one["argv"] == ["sh", "-c", "echo hi"] and one["cwd"] == "/w"
    )
    assert one["env_count"] == 2 and two["env_count"] == 0
    assert one["start_time"] == ts(T0 + 10) and one["end_time"] == ts(T0 + 140)
    assert one["duration"] == pytest.approx(130e-9)
    assert (one["exit_code"], two["exit_code"]) == (3, 0)
    assert (one["frames"], two["frames"]) == (12, 6)
    assert (one["stdin_bytes"], one["stdout_bytes"], one["stderr_bytes"]) == (7, 13, 8)
    assert (two["stdin_bytes"], two["stdout_bytes"], two["extra_fd_bytes"]) == (7, 7, 8)
    assert one["command_line"] == "sh -c 'echo hi'"
    assert two["signals"] == [15, 9] and one["signals"] == []
    assert (one["error_count"], one["first_error"], one["logs"], one["file_ops"]) == (
        1,
        "pty failed",
        1,
        1,
    )
    assert pd.isna(two["first_error"])
    assert df["complete"].dtype == bool and df["complete"].all()
    assert df["exit_code"].dtype == "Int64" and df["end_time"].dtype == UTC_NS


def test_commands_table_missing_values(tmp_path: Path) -> None:
    s = Script()
    s.header()
    s.start(1, T0 + 1, path="/x")
    s.data(1, T0 + 2, 1, b"out")
    path = tmp_path / "open.cbor"
    s.write(path)
    with open_recording(path) as rec:
        df = tables.commands_table(rec)
    row = df.iloc[0]
    assert pd.isna(row["exit_code"]) and pd.isna(row["end_time"]) and pd.isna(row["duration"])
    assert not row["complete"]


def test_frames_table(sample: Path) -> None:
    script = sample_script()
    frames = [(i, r.frame) for i, r in enumerate(script.records) if r.frame is not None]
    with open_recording(sample) as rec:
        df = tables.frames_table(rec)
        only2 = tables.frames_table(rec, seq=2)
    assert list(df["index"]) == [i for i, _ in frames]
    assert list(df["seq"]) == [f.seq for _, f in frames]
    assert list(df["timestamp"]) == [ts(f.timestamp) for _, f in frames]
    assert list(df["type"]) == [FrameType(f.frame.type).name.lower() for _, f in frames]
    assert list(df["direction"]) == ["send" if f.direction == SEND else "recv" for _, f in frames]
    assert list(df["size"]) == [len(f.frame.data) for _, f in frames]
    starts = {1: T0 + 10, 2: T0 + 20}
    assert list(df["since_start"]) == pytest.approx(
        [(f.timestamp - starts[f.seq]) / 1e9 for _, f in frames]
    )
    data = df[df["type"] == "data"]
    assert list(data["stream"]) == [0, 0, 1, 2, 1, 3, 1, 1]
    assert df.loc[df["type"] == "signal", "signal"].tolist() == [15, 9]
    assert df.loc[df["type"] == "exit", "code"].tolist() == [3, 0]
    assert df.loc[df["type"] == "error", "error"].tolist() == ["pty failed"]
    log = df[df["type"] == "log"].iloc[0]
    assert (log["log_level"], log["log_message"]) == ("WARN", "slow")
    fop = df[df["type"] == "file_op"].iloc[0]
    assert (fop["fileop_id"], fop["fileop_op"]) == (7, "stat")
    resp = df[df["type"] == "file_resp"].iloc[0]
    assert (resp["fileop_id"], resp["errno"]) == (7, 0)
    assert pd.isna(df.loc[df["type"] == "data", "signal"]).all()
    assert isinstance(df["type"].dtype, pd.CategoricalDtype)
    assert isinstance(df["direction"].dtype, pd.CategoricalDtype)
    assert df["stream"].dtype == "Int64" and df["timestamp"].dtype == UTC_NS
    assert list(only2["seq"].unique()) == [2] and len(only2) == 6


def test_frames_batches_concatenate_to_the_table(sample: Path) -> None:
    with open_recording(sample) as rec:
        whole = tables.frames_table(rec)
        batches = list(tables.iter_frames_batches(rec, batch_rows=4))
    assert [len(b) for b in batches] == [4, 4, 4, 4, 2]
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), whole)


@pytest.mark.parametrize("batch_rows", [1, 2, 65536])
def test_fileops_pairing(tmp_path: Path, batch_rows: int) -> None:
    path = tmp_path / "fileops.cbor"
    fileops_script().write(path)
    with open_recording(path) as rec:
        df = pd.concat(list(tables.iter_fileops_batches(rec, batch_rows=batch_rows)))
    df = df.reset_index(drop=True)
    assert len(df) == 5
    by_key = {(int(r.seq), int(r.id)): r for r in df.itertuples()}
    open_ = by_key[(1, 1)]
    assert (open_.op, open_.path, open_.errno, open_.errno_name) == ("open", "/a", 2, "ENOENT")
    assert open_.message == "no such file"
    assert open_.latency == pytest.approx(400e-9)
    read = by_key[(1, 2)]
    assert (read.op, read.handle, read.offset, read.size) == ("read_at", 5, 0, 4096)
    assert (read.n, read.eof, read.response_bytes, read.errno) == (3, True, 3, 0)
    assert read.response_time == ts(T0 + 400) and read.latency == pytest.approx(200e-9)
    write = by_key[(2, 2)]
    assert (write.op, write.offset, write.request_bytes, write.n) == ("write_at", 10, 5, 5)
    rename = by_key[(1, 3)]
    assert (rename.op, rename.path, rename.new_path) == ("rename", "/a", "/b")
    assert pd.isna(rename.response_time) and pd.isna(rename.errno) and pd.isna(rename.latency)
    assert pd.isna(rename.eof)
    stray = by_key[(1, 99)]
    assert pd.isna(stray.op) and pd.isna(stray.timestamp) and stray.errno_name == "EBADF"
    assert df["errno"].dtype == "Int64" and df["response_time"].dtype == UTC_NS
    assert isinstance(df["op"].dtype, pd.CategoricalDtype)
    if batch_rows == 65536:
        # request order, with the stray response where it arrived
        assert list(zip(df["seq"], df["id"], strict=True)) == [
            (1, 1),
            (1, 2),
            (1, 3),
            (2, 2),
            (1, 99),
        ]


def test_fileops_held_rows_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "fileops.cbor"
    fileops_script().write(path)
    with open_recording(path) as rec:
        batches = list(tables.iter_fileops_batches(rec, batch_rows=1, max_held_rows=2))
    df = pd.concat(batches, ignore_index=True)
    assert max(len(b) for b in batches) <= 4
    # Request 1 was released before its late answer: the answer is a row of its own.
    assert len(df[(df["seq"] == 1) & (df["id"] == 1)]) == 2
    assert df["index"].dropna().is_unique and df["response_index"].dropna().is_unique


def test_fileops_table_handle_from_response(tmp_path: Path) -> None:
    s = Script()
    s.header()
    req = FileOpReq(req_id=4, op=FileOp.CREATE, path="/new")
    s.frame(1, T0 + 1, SEND, Frame(type=FrameType.FILE_OP, file_op=req))
    resp = FileOpResp(req_id=4, handle=12)
    s.frame(1, T0 + 2, RECV, Frame(type=FrameType.FILE_RESP, file_resp=resp))
    path = tmp_path / "create.cbor"
    s.write(path)
    with open_recording(path) as rec:
        df = tables.fileops_table(rec)
    assert df.iloc[0]["handle"] == 12 and df.iloc[0]["op"] == "create"


@pytest.mark.parametrize(
    ("level", "name"),
    [
        (-4, "DEBUG"),
        (0, "INFO"),
        (4, "WARN"),
        (8, "ERROR"),
        (2, "INFO+2"),
        (-8, "DEBUG-4"),
        (12, "ERROR+4"),
        (3, "INFO+3"),
        (-1, "DEBUG+3"),
    ],
)
def test_level_names_follow_slog(level: int, name: str) -> None:
    assert tables.level_name(level) == name


def test_logs_table(tmp_path: Path) -> None:
    s = Script()
    s.header()
    for i, (lvl, msg, attrs) in enumerate(
        [(0, "started", ["pid=1"]), (8, "boom", []), (2, "odd", ["a=1", "b=x y"])]
    ):
        log = LogEntry(level=lvl, msg=msg, attrs=attrs)
        s.frame(1, T0 + i, RECV, Frame(type=FrameType.LOG, log=log))
    path = tmp_path / "logs.cbor"
    s.write(path)
    with open_recording(path) as rec:
        df = tables.logs_table(rec)
    assert list(df["level"]) == ["INFO", "ERROR", "INFO+2"]
    assert list(df["message"]) == ["started", "boom", "odd"]
    assert list(df["attrs"]) == ["pid=1", "", "a=1 b=x y"]
    assert list(df["timestamp"]) == [ts(T0), ts(T0 + 1), ts(T0 + 2)]
    assert list(df["index"]) == [1, 2, 3]
    assert isinstance(df["level"].dtype, pd.CategoricalDtype) and df["level"].cat.ordered
    assert df["level"].min() == "INFO"  # ordered by severity, not by name


def test_streams_and_stream_table(sample: Path) -> None:
    with open_recording(sample) as rec:
        got = tables.streams(rec, 1)
        chunks = tables.stream_table(rec, 2)
    assert got == {"stdin": b"input-1", "stdout": b"hi\nmore\x00bytes", "stderr": b"warn: x\n"}
    assert list(chunks["name"]) == ["stdin", "stdout", "fd3"]
    assert list(chunks["stream_offset"]) == [0, 0, 0]
    assert b"".join(chunks["data"]) == b"to cat\nto cat\n\x00\xff extra"
    assert list(chunks["direction"]) == ["send", "recv", "recv"]


def test_empty_tables_have_columns(tmp_path: Path) -> None:
    s = Script()
    s.header()
    path = tmp_path / "empty.cbor"
    s.write(path)
    with open_recording(path) as rec:
        for name in ("frames", "fileops", "logs", "commands"):
            df = getattr(tables, f"{name}_table")(rec)
            assert len(df) == 0 and len(df.columns) > 3
        assert tables.frames_table(rec)["timestamp"].dtype == UTC_NS


def test_cut_recording_is_marked_in_the_session(tmp_path: Path) -> None:
    path = tmp_path / "cut.cbor"
    data = sample_script().write(path)
    path.write_bytes(data[:-3])
    with open_recording(path) as rec:
        df = tables.session_table(rec)
    assert bool(df.iloc[0]["truncated"]) and df.iloc[0]["truncation"] == "cut"
    assert pd.isna(df.iloc[0]["end_time"])


@pytest.mark.parametrize(("chunk", "frame_range"), [(4096, 7), (1 << 22, 1), (1 << 22, 4096)])
def test_bulk_frames_table_equals_record_by_record(
    tmp_path: Path, chunk: int, frame_range: int
) -> None:
    path = tmp_path / "varied.cbor"
    varied_script(5).write(path)
    with open_recording(path, options=IndexOptions(chunk_size=chunk)) as rec:
        ranges = tables.iter_frames_batches(rec, batch_rows=10**9, records_per_range=frame_range)
        bulk = pd.concat(list(ranges), ignore_index=True)
        cols = tables._FrameColumns()
        frame_indexes = [i for i in range(rec.record_count) if rec.kinds[i] <= 200]
        for index, offset, rf in rec.raw_frames(frame_indexes):
            cols.add(index, offset, rf)
        reference = cols.frame(tables._command_starts(rec))
        by_batches = pd.concat(list(tables.iter_frames_batches(rec, batch_rows=100)))
    assert len(bulk) == len(frame_indexes)
    pd.testing.assert_frame_equal(bulk, reference)
    pd.testing.assert_frame_equal(by_batches.reset_index(drop=True), reference)


def test_hostile_field_types_do_not_break_tables(tmp_path: Path) -> None:
    import cbor2

    head = Script()
    head.header()
    odd = [
        {"type": 3, "frame": {"seq": 1, "ts": T0, "dir": 2, "frame": {"t": 6, "e": 42}}},
        {"type": 3, "frame": {"seq": 1, "ts": T0, "dir": 2, "frame": {"t": 7, "l": {"msg": 7}}}},
        {"type": 3, "frame": {"seq": 1, "ts": T0, "dir": 2, "frame": {"t": 2, "s": 1, "d": "x"}}},
    ]
    path = tmp_path / "odd.cbor"
    path.write_bytes(head.write(path) + b"".join(cbor2.dumps(r) for r in odd))
    with open_recording(path) as rec:
        frames = tables.frames_table(rec)
        logs = tables.logs_table(rec)
        # Go refuses a record with a wrong field type: each is invalid, reported
        # with its offset (damage, then garbage at the end), and not tabulated.
        assert [d.offset for d in rec.damage] == [len(head.write(path)), rec.damage[1].offset]
        assert rec.truncation is not None and rec.truncation.kind == "garbage"
    assert len(frames) == 0 and len(logs) == 0
