"""Recordings for the viewer's tests, written record by record, and waiting for workers."""

from __future__ import annotations

import contextlib
from pathlib import Path

from agentproto import (
    CommandEnd,
    CommandStart,
    Direction,
    ExecMsg,
    Frame,
    FrameType,
    LogEntry,
    Record,
    RecordType,
    SessionFooter,
    SessionHeader,
)
from agentproto.recording import encode_frame_record
from reclab.tui.app import ReclabApp

SAMPLES = Path(__file__).resolve().parent.parent.parent / "sample-recordings"


T0 = 1_764_400_000_000_000_000  # a fixed session start (Unix ns)


def screen_text(app: ReclabApp) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def workers_done(app: ReclabApp) -> None:
    """Wait until no worker runs; one cancelled by a newer one (exclusive) is not an error."""
    from textual.worker import WorkerCancelled

    while running := [w for w in app.workers if not w.is_finished]:
        with contextlib.suppress(WorkerCancelled):
            await app.workers.wait_for_complete(running)


def header_record(start: int = T0) -> bytes:
    """A session header with fixed values."""
    header = SessionHeader(
        version="1.3.4",
        start_time=start,
        local_user="tester",
        local_pid=42,
        backend_type="ssh",
        backend_addr="build-host:22",
        agent_path="/usr/local/bin/mproxy-agent",
    )
    return Record(type=RecordType.SESSION_HEADER, header=header).to_cbor()


def command_records(
    seq: int,
    argv: list[str],
    outputs: list[bytes],
    *,
    start: int,
    exit_code: int | None = 0,
    env: list[str] | None = None,
    logs: list[str] = (),  # type: ignore[assignment]
) -> bytes:
    """One command: start, stdout frames 1 ms apart, logs, exit frame and end (if exit_code)."""
    x = ExecMsg(path=f"/bin/{argv[0]}", argv=argv, env=env or ["HOME=/root"], cwd="/work")
    out = [Record(type=RecordType.COMMAND_START, cmd_start=CommandStart(seq, start, x)).to_cbor()]
    t = start
    for data in outputs:
        t += 1_000_000
        frame = Frame(type=FrameType.DATA, stream=1, data=data).to_cbor()
        out.append(encode_frame_record(seq, t, int(Direction.RECV), frame))
    for message in logs:
        t += 1_000_000
        frame = Frame(type=FrameType.LOG, log=LogEntry(level=0, msg=message)).to_cbor()
        out.append(encode_frame_record(seq, t, int(Direction.RECV), frame))
    if exit_code is not None:
        t += 1_000_000
        frame = Frame(type=FrameType.EXIT, code=exit_code).to_cbor()
        out.append(encode_frame_record(seq, t, int(Direction.RECV), frame))
        end = CommandEnd(seq=seq, end_time=t + 1000, exit_code=exit_code)
        out.append(Record(type=RecordType.COMMAND_END, cmd_end=end).to_cbor())
    return b"".join(out)


def footer_record(end: int, count: int) -> bytes:
    """A session footer."""
    return Record(
        type=RecordType.SESSION_FOOTER, footer=SessionFooter(end_time=end, command_count=count)
    ).to_cbor()


def write_large(path: Path, commands: int, frames_per_command: int, payload: int = 200) -> int:
    """A synthetic recording of many data frames (fixed times); return its size."""
    frame = Frame(type=FrameType.DATA, stream=1, data=b"x" * (payload - 1) + b"\n").to_cbor()
    with open(path, "wb") as fp:
        fp.write(header_record())
        t = T0
        for seq in range(1, commands + 1):
            x = ExecMsg(path="/bin/build", argv=["build", f"part{seq}"], cwd="/w")
            start = CommandStart(seq=seq, start_time=t, exec=x)
            fp.write(Record(type=RecordType.COMMAND_START, cmd_start=start).to_cbor())
            chunk = []
            for _ in range(frames_per_command):
                t += 10_000
                chunk.append(encode_frame_record(seq, t, int(Direction.RECV), frame))
            fp.write(b"".join(chunk))
            end = CommandEnd(seq=seq, end_time=t + 1, exit_code=0)
            fp.write(Record(type=RecordType.COMMAND_END, cmd_end=end).to_cbor())
        fp.write(footer_record(t + 2, commands))
    return path.stat().st_size
