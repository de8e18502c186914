"""ONE way to build recordings in tests: RecordingBuilder and ready-made sessions."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentproto import (
    CommandEnd,
    CommandStart,
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    Record,
    RecordedFrame,
    Recorder,
    RecordType,
    SessionFooter,
    SessionHeader,
)

ROOT = Path(__file__).resolve().parent.parent


SAMPLES = sorted((ROOT / "sample-recordings").glob("*.cbor"))


T0 = 1_700_000_000_000_000_000  # a fixed Unix-ns start, so times are exact


SEND, RECV = Direction.SEND, Direction.RECV


@dataclass
class RecordingBuilder:
    """THE way tests build recordings: records in file order, then bytes or a file.

    Each method appends one record and returns it (so a test can also collect
    bare records, as the check tests do). ``write`` goes through a
    :class:`Recorder`, as a real session would.
    """

    records: list[Record] = field(default_factory=list)

    def header(self, t: int = T0, **kw: object) -> Record:
        values: dict[str, object] = {"local_user": "ana", "local_pid": 4242, "agent_path": "/a"}
        h = SessionHeader(version="1.3.4", start_time=t, **(values | kw))  # type: ignore[arg-type]
        return self._add(Record(type=RecordType.SESSION_HEADER, header=h))

    def start(self, seq: int, t: int, **exec_kw: object) -> Record:
        x = ExecMsg(**exec_kw)  # type: ignore[arg-type]
        cs = CommandStart(seq=seq, start_time=t, exec=x)
        return self._add(Record(type=RecordType.COMMAND_START, cmd_start=cs))

    def frame(self, seq: int, t: int, direction: int, frame: Frame) -> Record:
        rf = RecordedFrame(seq=seq, timestamp=t, direction=direction, frame=frame)
        return self._add(Record(type=RecordType.FRAME, frame=rf))

    def data(self, seq: int, t: int, stream: int, data: bytes) -> Record:
        direction = SEND if stream == 0 else RECV
        return self.frame(seq, t, direction, Frame(type=FrameType.DATA, stream=stream, data=data))

    def eof(self, seq: int, t: int, stream: int) -> Record:
        direction = SEND if stream == 0 else RECV
        return self.frame(seq, t, direction, Frame(type=FrameType.EOF, stream=stream))

    def exit(self, seq: int, t: int, code: int) -> Record:
        return self.frame(seq, t, RECV, Frame(type=FrameType.EXIT, code=code))

    def end(self, seq: int, t: int, code: int) -> Record:
        ce = CommandEnd(seq=seq, end_time=t, exit_code=code)
        return self._add(Record(type=RecordType.COMMAND_END, cmd_end=ce))

    def footer(self, t: int, count: int) -> Record:
        f = SessionFooter(end_time=t, command_count=count)
        return self._add(Record(type=RecordType.SESSION_FOOTER, footer=f))

    def _add(self, record: Record) -> Record:
        self.records.append(record)
        return record

    def bytes(self) -> bytes:
        """The recording's bytes, as a Recorder writes them."""
        buf = io.BytesIO()
        rec = Recorder(buf)
        for r in self.records:
            rec.write_record(r)
        return buf.getvalue()

    def write(self, path: Path) -> bytes:
        """Write through a Recorder (as a real session would) and return the bytes."""
        buf = io.BytesIO()
        rec = Recorder(buf)
        for r in self.records:
            rec.write_record(r)
        data = buf.getvalue()
        path.write_bytes(data)
        return data


Script = RecordingBuilder  # the name the model and table tests grew up with


def sample_script() -> RecordingBuilder:
    """Two interleaved commands with output on 3 streams, a signal, logs, file ops, an error."""
    s = Script()
    s.header(backend_type="ssh", backend_addr="host:22")
    s.start(1, T0 + 10, path="/bin/sh", argv=["sh", "-c", "echo hi"], env=["A=1", "B=2"], cwd="/w")
    s.start(2, T0 + 20, path="/bin/cat", argv=["cat"], env=None, cwd="", extra_fds=[3])
    s.frame(1, T0 + 30, SEND, Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh")))
    s.data(1, T0 + 40, 0, b"input-1")
    s.frame(1, T0 + 45, SEND, Frame(type=FrameType.EOF, stream=0))
    s.data(2, T0 + 50, 0, b"to cat\n")
    s.data(1, T0 + 60, 1, b"hi\n")
    s.data(1, T0 + 70, 2, b"warn: x\n")
    s.data(2, T0 + 80, 1, b"to cat\n")
    s.data(2, T0 + 85, 3, b"\x00\xff extra")
    s.data(1, T0 + 90, 1, b"more\x00bytes")
    s.frame(2, T0 + 95, SEND, Frame(type=FrameType.SIGNAL, signal=15))
    s.frame(2, T0 + 96, SEND, Frame(type=FrameType.SIGNAL, signal=9))
    s.frame(1, T0 + 100, RECV, Frame(type=FrameType.LOG, log=LogEntry(level=4, msg="slow")))
    s.frame(1, T0 + 101, RECV, Frame(type=FrameType.ERROR, error="pty failed"))
    req = FileOpReq(req_id=7, op=FileOp.STAT, path="/etc/hosts")
    s.frame(1, T0 + 110, SEND, Frame(type=FrameType.FILE_OP, file_op=req))
    s.frame(1, T0 + 120, RECV, Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=7)))
    s.data(1, T0 + 125, 1, b"")  # an empty data frame counts as a frame, not as bytes
    s.frame(1, T0 + 130, RECV, Frame(type=FrameType.EXIT, code=3))
    s.end(1, T0 + 140, 3)
    s.frame(2, T0 + 150, RECV, Frame(type=FrameType.EXIT))  # code 0 is omitted on the wire
    s.end(2, T0 + 160, 0)
    s.footer(T0 + 170, 2)
    return s


PREFIX = bytes.fromhex("a2647479706503656672616d65a463736571")


def varied_script(seed: int, frames: int = 1500, mimic: bool = True) -> RecordingBuilder:
    """Frames in every layout the bulk scan must take or refuse, payloads that mimic records."""

    rng = random.Random(seed)
    fake = Record(
        type=RecordType.FRAME,
        frame=RecordedFrame(seq=1, timestamp=T0, direction=RECV, frame=Frame(type=2, data=b"zz")),
    ).to_cbor()
    s = Script()
    s.header()
    seqs = [1, 2, 23, 24, 255, 256, 70000]
    for q in seqs:
        s.start(q, T0 + q, path=f"/bin/{q}", argv=[str(q)])
    t = T0
    for i in range(frames):
        q = rng.choice(seqs)
        t += rng.choice([1, 1000, 10**9])
        ts = rng.choice([t, t, t, 5, -7, 2**40])
        r = rng.random()
        if r < 0.6:
            size = rng.choice([0, 1, 23, 24, 255, 256, 1000, 70000])
            data = rng.randbytes(size)
            if mimic and rng.random() < 0.2 and size > 200:  # a record look-alike in the payload
                at = rng.randrange(size - 60)
                data = data[:at] + rng.choice([PREFIX, fake]) + data[at:]
                data = data[:size]
            stream = rng.choice([0, 1, 1, 2, 3, 23, 24, 255, 256])
            direction = SEND if stream == 0 else rng.choice([RECV, RECV, SEND, 7])
            s.frame(q, ts, direction, Frame(type=FrameType.DATA, stream=stream, data=data))
        elif r < 0.7:
            s.frame(q, ts, SEND, Frame(type=FrameType.EOF, stream=rng.choice([0, 1, 30])))
        elif r < 0.75:
            s.frame(q, ts, SEND, Frame(type=FrameType.SIGNAL, signal=rng.choice([0, 2, 15])))
        elif r < 0.8:
            s.frame(q, ts, RECV, Frame(type=FrameType.EXIT, code=rng.choice([0, 1, -1])))
        elif r < 0.85:
            s.frame(q, ts, RECV, Frame(type=FrameType.ERROR, error=f"e{i}"))
        elif r < 0.9:
            s.frame(q, ts, RECV, Frame(type=FrameType.LOG, log=LogEntry(level=0, msg="m")))
        elif r < 0.95:
            req = FileOpReq(req_id=i, op=FileOp.READ_AT, handle=1, size=10)
            s.frame(q, ts, SEND, Frame(type=FrameType.FILE_OP, file_op=req))
        else:
            s.frame(q, ts, SEND, Frame(type=rng.choice([1, 13, 99])))
        if rng.random() < 0.01:
            s.end(q, t, rng.choice([0, 1]))
    s.footer(t, len(seqs))
    return s


def fileops_script() -> RecordingBuilder:
    s = Script()
    s.header()
    s.start(1, T0, path="/sync")
    s.start(2, T0, path="/other")
    req = Frame(type=FrameType.FILE_OP, file_op=FileOpReq(req_id=1, op=FileOp.OPEN, path="/a"))
    s.frame(1, T0 + 100, SEND, req)
    read = FileOpReq(req_id=2, op=FileOp.READ_AT, handle=5, offset=0, size=4096)
    s.frame(1, T0 + 200, SEND, Frame(type=FrameType.FILE_OP, file_op=read))
    ren = FileOpReq(req_id=3, op=FileOp.RENAME, path="/a", new_path="/b")
    s.frame(1, T0 + 300, SEND, Frame(type=FrameType.FILE_OP, file_op=ren))
    # the same id on another command is another RPC
    other = FileOpReq(req_id=2, op=FileOp.WRITE_AT, handle=1, offset=10, data=b"12345")
    s.frame(2, T0 + 350, SEND, Frame(type=FrameType.FILE_OP, file_op=other))
    # responses out of order; request 3 is never answered
    r2 = FileOpResp(req_id=2, data=b"abc", n=3, eof=True)
    s.frame(1, T0 + 400, RECV, Frame(type=FrameType.FILE_RESP, file_resp=r2))
    r1 = FileOpResp(req_id=1, errno=2, err_msg="no such file")
    s.frame(1, T0 + 500, RECV, Frame(type=FrameType.FILE_RESP, file_resp=r1))
    r22 = FileOpResp(req_id=2, n=5)
    s.frame(2, T0 + 650, RECV, Frame(type=FrameType.FILE_RESP, file_resp=r22))
    stray = FileOpResp(req_id=99, errno=9)
    s.frame(1, T0 + 700, RECV, Frame(type=FrameType.FILE_RESP, file_resp=stray))
    return s


def allow_fork_beside_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the index helper fork although earlier tests left threads running.

    ``fork_safe`` wants a lone main thread; in a long test session other tests'
    threads linger, so here only "from the main thread" counts.
    """
    import threading

    from reclab.model import parallel

    monkeypatch.setattr(
        parallel, "fork_safe", lambda: threading.current_thread() is threading.main_thread()
    )
