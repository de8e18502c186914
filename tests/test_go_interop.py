"""Interoperability with the Go implementation (fxamacker/cbor v2.4.0, default options).

Go writes recordings and a frame stream (``crosscheck gen``); Python must read
every record and re-encode it to the very same bytes. Python's Recorder
writes a recording covering every type; Go strictly decodes it (unknown
fields and duplicate keys are errors) and re-encodes it with zero byte
differences. Skipped when Go or the library is not installed (CI has both).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from gotools import GO_SKIP_REASON, GoOutputs, crosscheck_binary, go_outputs, run_crosscheck

from agentproto import (
    AgentConfig,
    Decoder,
    Direction,
    ExecMsg,
    FileDirEntry,
    FileOp,
    FileOpReq,
    FileOpResp,
    FileStat,
    FileStatfs,
    Frame,
    FrameType,
    LogEntry,
    MissingFooterError,
    PathInfo,
    PathInfoEntry,
    PathQuery,
    Record,
    Recorder,
    RecordingReader,
    RecordType,
    SessionHeader,
    TruncatedError,
    read_recording,
)

pytestmark = [
    pytest.mark.go,
    pytest.mark.skipif(crosscheck_binary() is None, reason=GO_SKIP_REASON),
]


@pytest.fixture(scope="module")
def go(tmp_path_factory: pytest.TempPathFactory) -> GoOutputs:
    return go_outputs(tmp_path_factory.mktemp("go"))


def spans(path: Path) -> list[tuple[int, int]]:
    reader = RecordingReader(path, require_footer=False)
    starts = [offset for offset, _ in reader.raw_items()]
    return list(zip(starts, [*starts[1:], reader.offset], strict=True))


# --- Go writes, Python reads ---------------------------------------------------------------


def test_go_recordings_exist(go: GoOutputs) -> None:
    names = sorted(p.name for p in go.recordings)
    assert names == ["every-type.cbor", "interleaved.cbor"]


@pytest.mark.parametrize("name", ["every-type.cbor", "interleaved.cbor"])
def test_python_reads_go_recordings_byte_identically(go: GoOutputs, name: str) -> None:
    path = go.dir / name
    data = path.read_bytes()
    records = read_recording(path)
    assert len(records) == go.manifest[name]["records"]
    for record, (start, end) in zip(records, spans(path), strict=True):
        assert record.to_cbor() == data[start:end], f"record at byte {start}"
    assert b"".join(r.to_cbor() for r in records) == data
    assert records[0].type == RecordType.SESSION_HEADER
    assert records[-1].type == RecordType.SESSION_FOOTER


def test_go_every_type_content(go: GoOutputs) -> None:
    records = read_recording(go.dir / "every-type.cbor")
    frames = [r.frame.frame for r in records if r.frame]
    types = {f.type for f in frames}
    assert set(FrameType) <= types and 99 in types
    ops = {f.file_op.op for f in frames if f.file_op}
    assert set(FileOp) <= ops and 200 in ops
    header = records[0].header
    assert header is not None and header.local_user == "tëster" and header.backend_type == "ssh"
    execs = [r.cmd_start.exec for r in records if r.cmd_start]
    assert execs[0].env is None and execs[1].env == [] and execs[1].extra_fds == [3, 2**32 - 1]
    configs = [f.config for f in frames if f.config]
    assert configs[0] == AgentConfig(env_keep=None, env_remove=None)
    assert configs[1] == AgentConfig(env_keep=[], env_remove=None)
    resps = [f.file_resp for f in frames if f.file_resp]
    assert any(r.stat == FileStat() for r in resps)  # pointer to a zero struct
    assert any(r.statfs and r.statfs.blocks == 2**64 - 1 for r in resps)
    ends = [r.cmd_end.exit_code for r in records if r.cmd_end]
    assert -1 in ends and -(2**63) in ends
    assert records[-1].footer is not None and records[-1].footer.command_count == 4


def test_python_reads_go_frame_stream(go: GoOutputs) -> None:
    data = go.frames.read_bytes()
    decoder = Decoder(io.BytesIO(data))
    out = b""
    count = 0
    while (frame := decoder.decode()) is not None:
        out += frame.to_cbor()
        count += 1
    assert count == go.manifest["frames.cbor"]["frames"]
    assert out == data


def test_go_cut_recording(go: GoOutputs) -> None:
    facts = go.manifest["cut.cbor"]
    with pytest.raises(TruncatedError) as info:
        read_recording(go.cut)
    assert not isinstance(info.value, MissingFooterError)
    assert info.value.offset == facts["cut_offset"]
    assert len(info.value.records) == facts["records"]
    # Go's own strict reader agrees on where the cut is
    result = run_crosscheck("check", go.cut)
    assert result.returncode == 1 and f"at byte {facts['cut_offset']}" in result.stderr


def test_go_recording_without_footer(go: GoOutputs) -> None:
    facts = go.manifest["no-footer.cbor"]
    with pytest.raises(MissingFooterError) as info:
        read_recording(go.no_footer)
    assert info.value.offset == facts["cut_offset"]
    assert len(info.value.records) == facts["records"]


def test_go_checks_its_own_output(go: GoOutputs) -> None:
    for path in go.recordings:
        result = run_crosscheck("check", path)
        assert result.returncode == 0, result.stderr
    result = run_crosscheck("checkframes", go.frames)
    assert result.returncode == 0, result.stderr


# --- Python writes, Go reads ------------------------------------------------------------------


def every_frame() -> list[tuple[Direction, Frame]]:
    """A frame of every type, all file ops with their fields, nil and empty lists."""
    frames: list[tuple[Direction, Frame]] = [
        (Direction.SEND, Frame(type=FrameType.CONFIG, config=AgentConfig())),
        (
            Direction.SEND,
            Frame(type=FrameType.CONFIG, config=AgentConfig(env_keep=[], env_remove=["/^X/"])),
        ),
        (
            Direction.SEND,
            Frame(
                type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh", argv=["sh"], env=None, cwd="/")
            ),
        ),
        (
            Direction.SEND,
            Frame(type=FrameType.EXEC, exec=ExecMsg(argv=[], env=[], extra_fds=[3, 2**32 - 1])),
        ),
        (Direction.SEND, Frame(type=FrameType.DATA, stream=0, data=b"in")),
        (Direction.SEND, Frame(type=FrameType.EOF)),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=bytes(range(256)) * 40)),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=2, data="ünï ✓ 🙂".encode())),
        (Direction.RECV, Frame(type=FrameType.DATA, stream=2**32 - 1)),
        (Direction.SEND, Frame(type=FrameType.SIGNAL, signal=-9)),
        (Direction.RECV, Frame(type=FrameType.EXIT, code=-(2**63))),
        (Direction.RECV, Frame(type=FrameType.ERROR, error="échec")),
        (Direction.RECV, Frame(type=FrameType.LOG, log=LogEntry())),
        (
            Direction.RECV,
            Frame(type=FrameType.LOG, log=LogEntry(level=-4, msg="d", attrs=["a=1", "b=2"])),
        ),
        (Direction.SEND, Frame(type=FrameType.PATH_QUERY, query=PathQuery())),
        (Direction.SEND, Frame(type=FrameType.PATH_QUERY, query=PathQuery(paths=["/bin"]))),
        (Direction.RECV, Frame(type=FrameType.PATH_INFO, info=PathInfo())),
        (Direction.RECV, Frame(type=FrameType.PATH_INFO, info=PathInfo(entries=[]))),
        (
            Direction.RECV,
            Frame(
                type=FrameType.PATH_INFO,
                info=PathInfo(
                    entries=[
                        PathInfoEntry(
                            name="ls", remote_path="/bin/ls", mode=0o755, size=9, mtime_nanos=-1
                        ),
                        PathInfoEntry(),
                    ]
                ),
            ),
        ),
        (Direction.RECV, Frame(type=99, stream=7, data=b"future", code=2**63 - 1)),
        (0, Frame()),
    ]
    full_stat = FileStat(
        name="f", size=2**63 - 1, mode=(1 << 31) | 0o755, mtime_nanos=1, atime_nanos=-1,
        ctime_nanos=-(2**63), uid=2**32 - 1, gid=1, nlink=2, rdev=3, blocks=2**64 - 1,
        blksize=4096, ino=2**64 - 1, is_dir=True,
    )  # fmt: skip
    for op in [*FileOp, 200]:
        req = FileOpReq(
            req_id=int(op), op=op, path=f"/p/{int(op)}", new_path="/np" if op % 2 else "",
            flags=-1 if op == FileOp.OPEN else 0o1101, mode=0o644 * (op % 3), uid=op % 5,
            gid=op % 7, handle=op % 4, offset=-(op % 2), size=op * 1000, atime_nanos=op,
            mtime_nanos=-op, data=bytes([op]) * (op % 3),
        )  # fmt: skip
        failed = op % 4 == 0
        stat = {FileOp.STAT: full_stat, FileOp.FSTAT: full_stat, FileOp.LSTAT: FileStat()}
        resp = FileOpResp(
            req_id=int(op),
            errno=2 if failed else 0,
            err_msg="no such file" if failed else "",
            handle=op % 3,
            data=b"\x00\xff" * (op % 2),
            n=-op if op % 5 == 0 else op,
            eof=op % 2 == 0,
            path="/wd" if op in (FileOp.GETWD, FileOp.READLINK) else "",
            stat=stat.get(op),
            statfs=FileStatfs(blocks=2**64 - 1, name_len=255) if op == FileOp.STATFS else None,
            entries=[FileDirEntry(full_stat), FileDirEntry()] if op == FileOp.READ_DIR else [],
        )
        frames.append((Direction.SEND, Frame(type=FrameType.FILE_OP, file_op=req)))
        frames.append((Direction.RECV, Frame(type=FrameType.FILE_RESP, file_resp=resp)))
    return frames


def write_python_recording(path: Path) -> int:
    header = SessionHeader(
        version="1.3.4", start_time=-1, local_user="élise", local_pid=-1,
        backend_type="ssh", backend_addr="[::1]:22", agent_path="",
    )  # fmt: skip
    with Recorder(path) as recorder:
        recorder.write_session_header(header)
        a = recorder.write_command_start(ExecMsg(path="/bin/sh", argv=["sh"], env=None, cwd="/"))
        b = recorder.write_command_start(ExecMsg(argv=[], env=[], extra_fds=[3]))
        for i, (direction, frame) in enumerate(every_frame()):
            recorder.write_frame(a if i % 2 else b, direction, frame)
            recorder.write_frame(b, direction, frame.to_cbor())
        recorder.write_record(Record(type=9))  # an unknown record type survives too
        recorder.write_command_end(a, -1)
        recorder.write_command_end(b, 2**63 - 1)
    return len(read_recording(path))


def test_go_checks_python_recording(tmp_path: Path) -> None:
    path = tmp_path / "python.cbor"
    count = write_python_recording(path)
    result = run_crosscheck("check", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == str(count)


def test_go_checks_python_frame_stream(tmp_path: Path) -> None:
    path = tmp_path / "frames.cbor"
    path.write_bytes(b"".join(frame.to_cbor() for _, frame in every_frame()))
    result = run_crosscheck("checkframes", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == str(len(every_frame()))


def test_go_check_reports_a_difference(tmp_path: Path) -> None:
    # non-canonical but valid CBOR (a 2-byte head for a small int): Go re-encodes it shorter
    good = Record(type=RecordType.COMMAND_END).to_cbor()
    path = tmp_path / "odd.cbor"
    path.write_bytes(good + bytes.fromhex("a164747970651904"))
    result = run_crosscheck("check", path)
    assert result.returncode == 1
    assert f"at byte {len(good)}" in result.stderr


def test_go_check_is_strict_about_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "unknown.cbor"
    path.write_bytes(bytes.fromhex("a2647479706504637a7a7a00"))
    result = run_crosscheck("check", path)
    assert result.returncode == 1


def test_go_agent_and_this_agent_answer_stat_alike(tmp_path: Path) -> None:
    """The benchmark's Go anchor (``crosscheck agent``) answers as this package's agent does."""
    import subprocess
    import sys

    from agentproto import Mux

    binary = crosscheck_binary()
    if binary is None:
        pytest.skip(GO_SKIP_REASON)
    (tmp_path / "f").write_bytes(b"abc")
    (tmp_path / "link").symlink_to("f")
    requests = [
        FileOpReq(op=FileOp.STAT, path=str(tmp_path / "f")),
        FileOpReq(op=FileOp.STAT, path=str(tmp_path)),
        FileOpReq(op=FileOp.LSTAT, path=str(tmp_path / "link")),
        FileOpReq(op=FileOp.STAT, path=str(tmp_path / "missing")),
    ]

    def answers(agent: list[str]) -> list[FileOpResp]:
        proc = subprocess.Popen(agent, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        with Mux(proc.stdout, proc.stdin, side="runner") as mux:
            mux.start()
            got = [mux.file_op(req, timeout=20) for req in requests]
            info = mux.path_query(["/nonexistent-dir"], timeout=20)
        assert proc.wait(20) == 0 and info.entries == []
        return got

    go = answers([str(binary), "agent"])
    ours = answers([sys.executable, "-m", "agentproto.agent", "--log-level", "warning"])
    assert go == ours
    assert go[0].stat is not None and go[0].stat.size == 3 and go[3].errno == 2
