"""Synthetic recordings for the fleet tests: many small sessions, written with Recorder."""

from __future__ import annotations

import shutil
from pathlib import Path

from agentproto import (
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    Recorder,
    SessionHeader,
)

SAMPLES = Path(__file__).resolve().parent.parent / "sample-recordings"
DAY_NS = 86_400 * 10**9
T0 = 1_795_900_000 * 10**9  # 2026-11-28, early UTC


def header(i: int) -> SessionHeader:
    """Session ``i``'s header: three days of sessions, five hosts."""
    return SessionHeader(
        version="1.3.4",
        start_time=T0 + (i % 3) * DAY_NS + i * 10**9,
        local_user=f"user{i % 4}",
        local_pid=1000 + i,
        backend_type="ssh",
        backend_addr=f"host{i % 5}:22",
        agent_path="/usr/bin/mproxy-agent",
    )


def write_command(rec: Recorder, i: int, c: int) -> None:
    """One command of session ``i``: output, a log, a file-op RPC or two, an exit."""
    seq = rec.write_command_start(
        ExecMsg(path="/usr/bin/make", argv=["make", f"target{(i + c) % 7}"], cwd="/src")
    )
    rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=b"o" * (i % 50)))
    if c % 2:
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.DATA, stream=2, data=b"e" * c))
    rec.write_frame(
        seq, Direction.RECV, Frame(type=FrameType.LOG, log=LogEntry(level=4 * (c % 3), msg="m"))
    )
    for n in range(i % 3):
        rec.write_frame(
            seq,
            Direction.SEND,
            Frame(
                type=FrameType.FILE_OP,
                file_op=FileOpReq(req_id=n + 1, op=FileOp.READ_AT, handle=3, size=64),
            ),
        )
        rec.write_frame(
            seq,
            Direction.RECV,
            Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=n + 1, data=b"d" * n)),
        )
    code = (i + c) % 4 == 0
    rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.EXIT, code=int(code)))
    rec.write_command_end(seq, int(code))


def write_session(path: Path, i: int) -> Path:
    """A complete small session (header, 1 to 3 commands, footer)."""
    with Recorder(path) as rec:
        rec.write_session_header(header(i))
        for c in range(1 + i % 3):
            write_command(rec, i, c)
    return path


def make_corpus(root: Path, count: int) -> dict[str, Path]:
    """``count`` synthetic sessions in two subdirectories, the samples, one cut, one garbage.

    Returns the special files by name: ``cut`` and ``garbage``.
    """
    for i in range(count):
        sub = root / ("builds" if i % 2 else "deploys")
        sub.mkdir(parents=True, exist_ok=True)
        write_session(sub / f"s{i:04d}.cbor", i)
    shutil.copytree(
        SAMPLES, root / "samples", ignore=shutil.ignore_patterns("*.py", "*.txt", "*.md")
    )
    cut = write_session(root / "cut.cbor", count + 1)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - 7])  # the footer (and more) torn off
    garbage = root / "garbage.cbor"
    garbage.write_bytes(b"this is not a recording at all\n" * 10)
    return {"cut": cut, "garbage": garbage}
