"""``reclab diff`` and :mod:`reclab.replay.compare`: two recordings, command by command."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_replay import assert_clean_error, reclab

from agentproto import (
    Direction,
    ExecMsg,
    FileDirEntry,
    FileOp,
    FileOpReq,
    FileOpResp,
    FileStat,
    Frame,
    FrameType,
    LogEntry,
    PathInfo,
    PathInfoEntry,
    PathQuery,
    Recorder,
)
from reclab.model import open_recording
from reclab.replay.compare import (
    CompareOptions,
    compare_commands,
    compare_recordings,
    compare_streams,
    pair_commands,
)


def command(
    rec: Recorder,
    argv: Sequence[str],
    *,
    out: Sequence[bytes] = (),
    err: Sequence[bytes] = (),
    code: int | None = 0,
    cwd: str = "",
    frames: Sequence[tuple[Direction, Frame]] = (),
) -> int:
    """Write one command: exec, extra frames, stdout/stderr chunks, exit and end (None: cut)."""
    msg = ExecMsg(path=argv[0], argv=list(argv), cwd=cwd)
    seq = rec.write_command_start(msg)
    rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EXEC, exec=msg))
    for direction, frame in frames:
        rec.write_frame(seq, direction, frame)
    for stream, chunks in ((1, out), (2, err)):
        for chunk in chunks:
            rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.DATA, stream=stream,
                                                       data=chunk))  # fmt: skip
    if code is not None:
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.EXIT, code=code))
        rec.write_command_end(seq, code)
    return seq


def recording(path: Path, *commands: dict[str, Any]) -> Path:
    with Recorder(path) as rec:
        rec.write_session_header()
        for spec in commands:
            command(rec, **spec)
    return path


def diff_json(a: Path, b: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = reclab("diff", str(a), str(b), "--json", *args)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def test_identical_recordings_match(tmp_path: Path) -> None:
    spec = {"argv": ["make"], "out": [b"cc main.c\n", b"ok\n"], "err": [b"warn\n"]}
    a = recording(tmp_path / "a.cbor", spec, {"argv": ["true"]})
    # the same bytes in other chunks: output is compared as streams, not frames
    b = recording(tmp_path / "b.cbor", {**spec, "out": [b"cc ma", b"in.c\nok\n"]},
                  {"argv": ["true"]})  # fmt: skip
    code, doc = diff_json(a, b)
    assert code == 0 and doc["status"] == 0 and doc["kind"] == "diff"
    assert [c["verdict"] for c in doc["commands"]] == ["match", "match"]
    plain = reclab("diff", str(a), str(b))
    assert plain.returncode == 0 and "2 matched, 0 diverged, 0 errors, 0 unpaired" in plain.stdout


def test_output_and_exit_differences(tmp_path: Path) -> None:
    a = recording(tmp_path / "a.cbor",
                  {"argv": ["make"], "out": [b"one\ntwo\nthree\n"], "code": 0})  # fmt: skip
    b = recording(tmp_path / "b.cbor",
                  {"argv": ["make"], "out": [b"one\nTWO\nthree\n"], "code": 2})  # fmt: skip
    code, doc = diff_json(a, b)
    assert code == 1
    [cmd] = doc["commands"]
    assert cmd["verdict"] == "diverged"
    exit_diff, out_diff = cmd["differences"]
    assert (exit_diff["kind"], exit_diff["recorded"], exit_diff["replayed"]) == ("exit", 0, 2)
    assert out_diff["stream"] == 1 and out_diff["offset"] == 4
    assert out_diff["diff"].splitlines() == [" one", "-two", "+TWO", " three"]
    table = reclab("diff", str(a), str(b), env={**os.environ, "COLUMNS": "160"})
    assert table.returncode == 1
    assert "exit code 0 recorded, 2 replayed" in table.stdout
    assert "stdout differs at byte 4" in table.stdout and "diverged" in table.stdout


def test_binary_output_has_an_offset_but_no_text_diff(tmp_path: Path) -> None:
    a = recording(tmp_path / "a.cbor", {"argv": ["dump"], "out": [b"\x00\x01\x02\x03"]})
    b = recording(tmp_path / "b.cbor", {"argv": ["dump"], "out": [b"\x00\x01\xff\x03\x04"]})
    _code, doc = diff_json(a, b)
    [diff] = doc["commands"][0]["differences"]
    assert diff["offset"] == 2 and diff["diff"] is None
    assert (diff["recorded"], diff["replayed"]) == (4, 5)


def test_ignore_masks_expected_differences(tmp_path: Path) -> None:
    a = recording(tmp_path / "a.cbor",
                  {"argv": ["build"], "out": [b"built in 1.25s at /tmp/tmp.ab12\n"]})  # fmt: skip
    b_out = [b"built in 3.5s ", b"at /tmp/tmp.zz9\n"]
    b = recording(tmp_path / "b.cbor", {"argv": ["build"], "out": b_out})
    assert diff_json(a, b)[0] == 1
    assert diff_json(a, b, "--ignore", r"\d+\.\d+s")[0] == 1
    code, doc = diff_json(a, b, "--ignore", r"\d+\.\d+s", "--ignore", r"tmp\.\w+")
    assert code == 0, doc


def test_match_by_argv_and_unpaired_commands(tmp_path: Path) -> None:
    a = recording(tmp_path / "a.cbor", {"argv": ["build"]}, {"argv": ["test"]},
                  {"argv": ["lint"]})  # fmt: skip
    b = recording(tmp_path / "b.cbor", {"argv": ["test"]}, {"argv": ["build"]},
                  {"argv": ["deploy"]})  # fmt: skip
    code, doc = diff_json(a, b)
    assert code == 1  # by seq, build is paired with test: a different command
    assert doc["commands"][0]["differences"][0]["what"] == "a different command: test"
    code, doc = diff_json(a, b, "--match", "argv")
    assert code == 1
    pairs = [(c["seq"], c["other_seq"], c["verdict"]) for c in doc["commands"]]
    assert pairs == [(1, 2, "match"), (2, 1, "match"), (3, None, "unpaired"),
                     (None, 3, "unpaired")]  # fmt: skip
    assert doc["summary"]["unpaired"] == 2
    with open_recording(a) as ra, open_recording(b) as rb:
        assert pair_commands(ra, rb, match="argv") == ([(1, 2), (2, 1)], [3], [3])
    plain = reclab("diff", str(a), str(b), "--match", "argv")
    assert "only in this recording" in plain.stdout and "only in the other" in plain.stdout


def test_a_cut_recording_is_an_error(tmp_path: Path) -> None:
    a = recording(tmp_path / "a.cbor", {"argv": ["make"], "out": [b"x\n"]})
    b = recording(tmp_path / "b.cbor", {"argv": ["make"], "out": [b"x\n"], "code": None})
    code, doc = diff_json(a, b)
    assert code == 2
    assert "cut before command 1's end" in doc["commands"][0]["error"]


def test_bad_input(tmp_path: Path) -> None:
    a = recording(tmp_path / "a.cbor", {"argv": ["make"]})
    assert_clean_error(reclab("diff", str(a), str(tmp_path / "none.cbor")), "no such file")
    assert_clean_error(reclab("diff", str(a), str(a), "--match", "env"), "--match")
    assert_clean_error(reclab("diff", str(a), str(a), "--ignore", "[x"), "--ignore")


def _file_op(req_id: int, req: FileOpReq, resp: FileOpResp) -> list[tuple[Direction, Frame]]:
    req.req_id = resp.req_id = req_id
    return [
        (Direction.SEND, Frame(type=FrameType.FILE_OP, file_op=req)),
        (Direction.RECV, Frame(type=FrameType.FILE_RESP, file_resp=resp)),
    ]


def _stat(size: int, mtime: int, ino: int) -> FileStat:
    return FileStat(name="f.txt", size=size, mode=0o644, mtime_nanos=mtime, ino=ino, nlink=1)


def test_file_op_responses_ignore_ids_handles_and_times(tmp_path: Path) -> None:
    def session(path: Path, handle: int, ids: int, size: int, stamp: int, errno: int) -> Path:
        frames = [
            *_file_op(ids, FileOpReq(op=FileOp.OPEN, path="f.txt"),
                      FileOpResp(handle=handle)),
            *_file_op(ids + 1, FileOpReq(op=FileOp.READ_AT, handle=handle, size=10),
                      FileOpResp(data=b"x" * size, n=size, eof=True)),
            *_file_op(ids + 2, FileOpReq(op=FileOp.STAT, path="f.txt"),
                      FileOpResp(stat=_stat(size, stamp, stamp))),
            *_file_op(ids + 3, FileOpReq(op=FileOp.READ_DIR, path="."),
                      FileOpResp(entries=[FileDirEntry(stat=_stat(size, stamp, 7))])),
            *_file_op(ids + 4, FileOpReq(op=FileOp.STAT, path="gone.txt"),
                      FileOpResp(errno=errno, err_msg="stat gone.txt")),
        ]  # fmt: skip
        return recording(path, {"argv": ["cat"], "frames": frames})

    a = session(tmp_path / "a.cbor", handle=1, ids=1, size=4, stamp=111, errno=0)
    same = session(tmp_path / "same.cbor", handle=9, ids=40, size=4, stamp=222, errno=0)
    other = session(tmp_path / "other.cbor", handle=1, ids=1, size=5, stamp=111, errno=2)
    with open_recording(a) as ra, open_recording(same) as rs, open_recording(other) as ro:
        assert compare_commands(ra, 1, rs, 1).matched
        found = compare_commands(ra, 1, ro, 1).differences
    what = [d.what for d in found]
    assert what == [
        "file op #2 READ_AT f.txt: n, data differ",
        "file op #3 STAT f.txt: stat.size differs",
        "file op #4 READ_DIR .: entries differs",
        "file op #5 STAT gone.txt: errno 0 recorded, ENOENT (2) replayed",
    ]
    assert (found[1].recorded, found[1].replayed) == ({"stat.size": 4}, {"stat.size": 5})


def test_path_queries_logs_and_errors(tmp_path: Path) -> None:
    def session(path: Path, names: list[str], log: str) -> Path:
        frames = [
            (Direction.SEND, Frame(type=FrameType.PATH_QUERY, query=PathQuery(paths=["/bin"]))),
            (Direction.RECV, Frame(type=FrameType.PATH_INFO, info=PathInfo(entries=[
                PathInfoEntry(name=n, remote_path=f"/bin/{n}", mode=0o755, size=1,
                              mtime_nanos=len(log)) for n in names]))),
            (Direction.RECV, Frame(type=FrameType.LOG, log=LogEntry(level=0, msg=log))),
        ]  # fmt: skip
        return recording(path, {"argv": ["x"], "frames": frames})

    a = session(tmp_path / "a.cbor", ["ls", "sh"], "started pid 12")
    b = session(tmp_path / "b.cbor", ["ls", "sh"], "started pid 345")
    c = session(tmp_path / "c.cbor", ["ls", "zsh"], "started pid 12")
    assert diff_json(a, b)[0] == 0  # logs are not compared by default (nor PATH mtimes)
    code, doc = diff_json(a, b, "--logs")
    assert code == 1 and doc["commands"][0]["differences"][0]["kind"] == "log"
    assert diff_json(a, b, "--logs", "--ignore", r"pid \d+")[0] == 0
    code, doc = diff_json(a, c)
    [diff] = doc["commands"][0]["differences"]
    assert diff["what"] == "PATH query #1 ['/bin']: missing sh; new zsh"


def test_compare_recordings_api(tmp_path: Path) -> None:
    a = recording(tmp_path / "a.cbor", {"argv": ["make"], "out": [b"a\n"]})
    b = recording(tmp_path / "b.cbor", {"argv": ["make"], "out": [b"b\n"]})
    with open_recording(a) as ra, open_recording(b) as rb:
        report = compare_recordings(ra, rb, options=CompareOptions.from_patterns(["[ab]"]))
    assert report.status == 0 and report.to_json()["summary"]["matched"] == 1


# --- the streaming comparison ---------------------------------------------------------------


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[i:j] for i, j in itertools.pairwise(points) if j > i]


@given(
    st.binary(max_size=3000),
    st.binary(max_size=3000),
    st.lists(st.integers(0, 3000), max_size=8),
    st.lists(st.integers(0, 3000), max_size=8),
)
def test_compare_streams_finds_the_first_difference(
    a: bytes, b: bytes, cuts_a: list[int], cuts_b: list[int]
) -> None:
    found = compare_streams(_chunks(a, cuts_a), _chunks(b, cuts_b))
    if a == b:
        assert found is None
        return
    expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                    min(len(a), len(b)))  # fmt: skip
    assert found is not None
    offset, before, after_a, after_b = found
    assert offset == expected
    assert before == a[max(0, offset - 2048) : offset]
    assert after_a == a[offset : offset + 2048] and after_b == b[offset : offset + 2048]


def test_compare_streams_holds_only_chunks_and_context() -> None:
    """Streams are consumed lazily: a difference early on stops the reading there."""
    consumed = []

    def endless(tag: bytes) -> Any:
        n = 0
        while True:
            consumed.append(tag)
            n += 1
            yield (b"same " * 1000) if n < 5 else tag * 5000

    found = compare_streams(endless(b"a"), endless(b"b"))
    assert found is not None and found[0] == 4 * 5000
    assert len(consumed) < 20
