"""The Mux over real pipes: streams, callbacks, file-op and PATH RPCs, recording, logs."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest

from agentproto import (
    ConnectionClosedError,
    Decoder,
    Direction,
    FileOp,
    FileOpReq,
    FileOpResp,
    FrameTooLargeError,
    LogEntry,
    PathInfo,
    PathInfoEntry,
    PathQuery,
    Recorder,
    RecordType,
    RemoteProtocolError,
    RPCTimeoutError,
    TruncatedError,
    read_recording,
)
from agentproto.logs import MuxLogHandler, emit_log_entry, log_entry_level, slog_level
from agentproto.mux import (
    FrameReader,
    Mux,
    _fast_data_frame,
    encode_data_frame_head,
    writer_handler,
)
from agentproto.types import Frame, FrameType

TIMEOUT = 20.0


class Sink:
    """A stream handler collecting what arrives."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.eofs = 0
        self.done = threading.Event()

    def write(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def eof(self) -> None:
        self.eofs += 1
        self.done.set()

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class Pair:
    """Two muxes connected by two os.pipe()s: ``runner`` and ``agent``."""

    def __init__(self, *, agent_side: bool = True, **runner_kw: Any) -> None:
        a_r, r_w = os.pipe()  # runner -> agent
        r_r, a_w = os.pipe()  # agent -> runner
        pipes = ((r_r, "rb"), (r_w, "wb"), (a_r, "rb"), (a_w, "wb"))
        self.files = [open(fd, mode, buffering=0) for fd, mode in pipes]  # noqa: SIM115
        self.runner = Mux(self.files[0], self.files[1], side="runner", **runner_kw)
        self.agent = Mux(self.files[2], self.files[3], side="agent" if agent_side else None)

        self.threads: list[threading.Thread] = []

    def close(self) -> None:
        # writers first: every loop sees the end of its input and returns; only then
        # close the readers, or a loop could read from a recycled fd number
        self.runner.close()
        self.agent.close()
        for t in [*self.threads, self.runner._thread]:
            if t is not None:
                t.join(TIMEOUT)
        for f in self.files:
            with contextlib.suppress(OSError, ValueError):
                f.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    yield p
    p.close()


def start_agent_loop(p: Pair) -> threading.Thread:
    t = threading.Thread(target=p.agent.read_loop, daemon=True)
    t.start()
    p.threads.append(t)
    return t


# --- encoding ----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [0, 1, 2, 23, 24, 255, 256, 65535, 65536, 2**32 - 1])
@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 65536, 70000])
def test_data_frame_head_is_go_encoding(stream: int, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = Frame(type=FrameType.DATA, stream=stream, data=data).to_cbor()
    assert encode_data_frame_head(stream, size) + data == expected
    if stream or size:  # a bare {"t": 2} is left to the general path
        assert _fast_data_frame(expected) == (stream, data)


def test_fast_path_declines_other_layouts() -> None:
    reordered = cbor2.dumps({"d": b"xy", "t": 2, "s": 1})
    assert _fast_data_frame(reordered) is None
    assert _fast_data_frame(Frame(type=FrameType.EOF, stream=1).to_cbor()) is None
    wrong_len = bytearray(Frame(type=FrameType.DATA, stream=1, data=b"abc").to_cbor())
    assert _fast_data_frame(bytes(wrong_len[:-1])) is None


# --- cutting the stream into frames ---------------------------------------------------------


class Trickle:
    """A scripted reader giving at most ``step`` bytes per call (``readinto`` or ``read``)."""

    def __init__(self, data: bytes, step: int, *, readinto: bool = True) -> None:
        self.data, self.pos, self.step = data, 0, step
        if not readinto:
            self.readinto = None  # type: ignore[assignment]

    def _take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + min(n, self.step)]
        self.pos += len(chunk)
        return chunk

    def readinto(self, buf: memoryview) -> int:
        chunk = self._take(len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)

    def read(self, n: int) -> bytes:
        return self._take(n)


def sample_frames() -> list[bytes]:
    return [
        Frame(type=FrameType.EXEC).to_cbor(),
        Frame(type=FrameType.DATA, stream=1, data=b"a" * 100).to_cbor(),
        Frame(type=FrameType.DATA, stream=2, data=os.urandom(1 << 20)).to_cbor(),
        cbor2.dumps({"d": b"x" * 70000, "t": 2, "s": 1}),  # data before the other keys
        Frame(type=FrameType.DATA, stream=1, data=os.urandom(5 << 20)).to_cbor(),  # > buffer
        *(
            Frame(type=FrameType.DATA, stream=3, data=bytes([i]) * 900_000).to_cbor()
            for i in range(9)
        ),
        Frame(type=FrameType.EXIT, code=3).to_cbor(),
    ]


@pytest.mark.parametrize(
    ("step", "readinto"), [(1 << 30, True), (65536, True), (7777, False), (1, True)]
)
def test_frame_reader_cuts_exact_frames(step: int, readinto: bool) -> None:
    frames = sample_frames()
    if step == 1:
        frames = [f for f in frames if len(f) < 200_000]  # one byte at a time: keep it quick
    reader = FrameReader(Trickle(b"".join(frames), step, readinto=readinto))
    got = []
    while (item := reader.next_item()) is not None:
        got.append(bytes(item))
    assert got == frames
    assert reader.offset == sum(map(len, frames))


def test_frame_reader_reports_cut_and_size_with_offsets() -> None:
    frames = sample_frames()[:3]
    cut = b"".join(frames)[:-10]
    reader = FrameReader(Trickle(cut, 4096))
    assert reader.next_item() is not None and reader.next_item() is not None
    with pytest.raises(TruncatedError) as info:
        reader.next_item()
    assert info.value.offset == len(frames[0]) + len(frames[1])

    reader = FrameReader(Trickle(b"".join(frames), 4096), max_frame_size=1000)
    assert reader.next_item() is not None and reader.next_item() is not None
    with pytest.raises(FrameTooLargeError) as too_large:
        reader.next_item()
    assert too_large.value.offset == len(frames[0]) + len(frames[1])


# --- streams and callbacks ------------------------------------------------------------------


def test_data_eof_and_exit_over_pipes(pair: Pair) -> None:
    out, err = Sink(), Sink()
    pair.runner.register_stream(1, out)
    pair.runner.register_stream(2, err)
    pair.agent.send_data(1, b"hello ")
    pair.agent.send_data(1, b"world")
    pair.agent.send_data(2, b"oops")
    pair.agent.send_eof(1)
    pair.agent.send_eof(2)
    pair.agent.send(Frame(type=FrameType.EXIT, code=7))
    assert pair.runner.read_loop() == 7
    assert (out.data, out.eofs, err.data, err.eofs) == (b"hello world", 1, b"oops", 1)
    assert pair.runner.error is None


@pytest.mark.parametrize("recording", [False, True])
def test_send_data_from_pipe(pair: Pair, tmp_path: Any, recording: bool) -> None:
    if recording:
        rec = Recorder(tmp_path / "r.cbor")
        pair.agent.set_recorder(rec, 1)
    assert pair.agent.can_splice is not recording  # the pair's writer is a pipe
    out = Sink()
    pair.runner.register_stream(4, out)
    pair.runner.start()  # spliced buffers take a pipe slot each: the reader must keep up
    r, w = os.pipe()
    payload = os.urandom(200_000)
    writer = threading.Thread(target=os.write, args=(w, payload))  # fills past 64 KiB
    writer.start()
    sent = 0
    while sent < len(payload):
        time.sleep(0.01)
        ready = len(payload) - sent if not writer.is_alive() else 1000
        pair.agent.send_data_from_pipe(4, r, ready)
        sent += ready
    writer.join()
    os.close(r)
    os.close(w)
    pair.agent.send_eof(4)
    pair.agent.send(Frame(type=FrameType.EXIT, code=0))
    assert pair.runner.wait(TIMEOUT) == 0
    assert out.data == payload and out.eofs == 1
    if recording:
        rec.close()
        frames = [x.frame for x in read_recording(tmp_path / "r.cbor") if x.frame]
        assert b"".join(f.frame.data for f in frames if f.frame.stream == 4) == payload


def test_reordered_keys_take_the_general_path(pair: Pair) -> None:
    out = Sink()
    pair.runner.register_stream(1, out)
    pair.files[3].write(cbor2.dumps({"d": b"xy", "s": 1, "t": 2}))
    pair.files[3].write(cbor2.dumps({"T": 5, "c": 3}))  # Go matches keys case-insensitively
    assert pair.runner.read_loop() == 3
    assert out.data == b"xy"


def test_stdin_signal_log_error_callbacks(pair: Pair) -> None:
    stdin = Sink()
    signals: list[int] = []
    pair.agent.register_stream(0, stdin)
    pair.agent.on_signal(signals.append)
    start_agent_loop(pair)
    pair.runner.send_data(0, b"input")
    pair.runner.send(Frame(type=FrameType.SIGNAL, signal=15))
    pair.runner.send_eof(0)
    assert stdin.done.wait(TIMEOUT)
    assert stdin.data == b"input"
    assert signals == [15]

    logs: list[LogEntry] = []
    errors: list[str] = []
    pair.runner.on_log(logs.append)
    pair.runner.on_error(errors.append)
    pair.agent.send(Frame(type=FrameType.LOG, log=LogEntry(level=4, msg="careful", attrs=["k=v"])))
    pair.agent.send(Frame(type=FrameType.ERROR, error="broken"))
    pair.agent.send(Frame(type=FrameType.EXIT, code=0))
    assert pair.runner.read_loop() == 0
    assert logs == [LogEntry(level=4, msg="careful", attrs=["k=v"])]
    assert errors == ["broken"]


def test_unknown_and_unroutable_frames_are_dropped_rate_limited(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    out = Sink()
    pair.runner.register_stream(1, out)
    for _ in range(25):
        pair.files[3].write(cbor2.dumps({"t": 99}))  # unknown type
        pair.agent.send_data(9, b"nobody listens")  # unregistered stream
    pair.agent.send(Frame(type=FrameType.SIGNAL, signal=15))  # the wrong way: for agents only
    pair.agent.send_data(1, b"still alive")
    pair.agent.send(Frame(type=FrameType.EXIT, code=1))
    with caplog.at_level(logging.INFO, logger="agentproto.mux"):
        assert pair.runner.read_loop() == 1
    assert out.data == b"still alive"
    type_lines = [r for r in caplog.records if "type 99" in r.getMessage()]
    stream_lines = [r for r in caplog.records if "stream 9" in r.getMessage()]
    # 3 first ones, then the 10th: 25 repeats cost 4 lines each
    assert len(type_lines) == 4 and len(stream_lines) == 4
    assert any("SIGNAL" in r.getMessage() for r in caplog.records)


def test_agent_side_ignores_exit_from_peer(pair: Pair) -> None:
    stop = threading.Event()
    pair.runner.send(Frame(type=FrameType.EXIT, code=3))
    pair.runner.close()  # end of stream ends the agent's loop, not the hostile Exit
    assert pair.agent.read_loop(stop=stop) == -1


@pytest.mark.parametrize("opener", [FrameType.EXEC, FrameType.CONFIG])
def test_runner_side_gives_up_on_a_peer_that_opens_sessions(pair: Pair, opener: FrameType) -> None:
    # `--agent cat` echoes our own Exec back: waiting for its FrameExit would hang
    pair.agent.send(Frame(type=opener))
    assert pair.runner.read_loop() == -1
    assert isinstance(pair.runner.error, RemoteProtocolError)
    assert "not an agent" in str(pair.runner.error)


def test_stop_event_ends_the_loop_between_frames(pair: Pair) -> None:
    stop = threading.Event()
    stopped = Sink()

    class StopAfterFirst(Sink):
        def write(self, data: bytes) -> None:
            super().write(data)
            stop.set()

    handler = StopAfterFirst()
    pair.runner.register_stream(1, handler)
    pair.agent.send_data(1, b"first")
    pair.agent.send_data(1, b"second")
    assert pair.runner.read_loop(stop=stop) == -1
    assert handler.data == b"first" and stopped.data == b""


def test_handler_exception_does_not_end_the_loop(pair: Pair) -> None:
    class Broken:
        def write(self, data: bytes) -> None:
            raise RuntimeError("bug")

        def eof(self) -> None:
            raise RuntimeError("bug")

    pair.runner.register_stream(1, Broken())
    pair.agent.send_data(1, b"x")
    pair.agent.send_eof(1)
    pair.agent.send(Frame(type=FrameType.EXIT, code=5))
    assert pair.runner.read_loop() == 5


def test_oversized_frame_is_refused_without_buffering() -> None:
    p = Pair(max_frame_size=1024)
    try:
        # a data frame announcing 1 GiB: the loop must stop at the head
        p.files[3].write(encode_data_frame_head(1, 1 << 30) + b"x" * 100)
        assert p.runner.read_loop() == -1
        assert isinstance(p.runner.error, FrameTooLargeError)
    finally:
        p.close()


def test_garbage_ends_the_loop_with_an_error(pair: Pair) -> None:
    pair.files[3].write(b"\xff\xff\xff")
    assert pair.runner.read_loop() == -1
    assert pair.runner.error is not None


def test_writer_handler_writes_and_closes() -> None:
    buf = io.BytesIO()
    closed: list[bool] = []

    class Spy(io.BytesIO):
        def close(self) -> None:
            closed.append(True)
            buf.write(self.getvalue())
            super().close()

    spy = Spy()
    handler = writer_handler(spy)
    handler.write(b"abc")
    handler.write(b"def")
    handler.eof()
    assert buf.getvalue() == b"abcdef" and closed == [True]


# --- file-op RPCs ------------------------------------------------------------------------------


def echo_file_op(req: FileOpReq) -> FileOpResp:
    """A fake server: answers with the request's path and offset so answers are checkable."""
    return FileOpResp(req_id=12345, data=req.path.encode(), n=req.offset)  # id is overwritten


def test_concurrent_file_ops_each_get_their_own_answer(pair: Pair) -> None:
    pair.agent.on_file_op(echo_file_op)
    start_agent_loop(pair)
    pair.runner.start()
    failures: list[str] = []

    def caller(t: int) -> None:
        for i in range(50):
            req = FileOpReq(op=FileOp.STAT, path=f"/t{t}/f{i}", offset=t * 1000 + i)
            resp = pair.runner.file_op(req, timeout=TIMEOUT)
            if resp.data != req.path.encode() or resp.n != req.offset or resp.req_id == 0:
                failures.append(f"{req} -> {resp}")
            if req.req_id != 0:
                failures.append("request was modified")

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert pair.runner._requests.file_ops_waiting == 0


def test_file_op_timeout_removes_the_waiter_and_drops_the_late_answer(pair: Pair) -> None:
    release = threading.Event()

    def slow(req: FileOpReq) -> FileOpResp:
        release.wait(TIMEOUT)
        return FileOpResp(n=1)

    pair.agent.on_file_op(slow)
    start_agent_loop(pair)
    pair.runner.start()
    with pytest.raises(RPCTimeoutError):
        pair.runner.file_op(FileOpReq(op=FileOp.GETWD), timeout=0.2)
    assert pair.runner._requests.file_ops_waiting == 0
    release.set()  # the late answer arrives and is dropped; the next call works
    pair.agent.on_file_op(echo_file_op)
    resp = pair.runner.file_op(FileOpReq(op=FileOp.STAT, path="/x"), timeout=TIMEOUT)
    assert resp.data == b"/x"


def test_encoded_file_op_server_answers_and_its_failures_are_eio(pair: Pair) -> None:
    def encoded(req: FileOpReq) -> bytes:
        if req.path == "/boom":
            raise RuntimeError("server bug")
        return FileOpResp(req_id=req.req_id, path=req.path.upper()).to_cbor()

    pair.agent.on_file_op_encoded(encoded)
    start_agent_loop(pair)
    pair.runner.start()
    resp = pair.runner.file_op(FileOpReq(op=FileOp.READLINK, path="/ab"), timeout=TIMEOUT)
    assert (resp.errno, resp.path) == (0, "/AB")
    resp = pair.runner.file_op(FileOpReq(op=FileOp.READLINK, path="/boom"), timeout=TIMEOUT)
    assert resp.errno == 5 and "server bug" in resp.err_msg
    pair.agent.on_file_op(echo_file_op)  # the plain server replaces the encoded one
    resp = pair.runner.file_op(FileOpReq(op=FileOp.STAT, path="/x"), timeout=TIMEOUT)
    assert resp.data == b"/x"


def test_file_op_without_server_is_enosys(pair: Pair) -> None:
    start_agent_loop(pair)
    pair.runner.start()
    resp = pair.runner.file_op(FileOpReq(op=FileOp.STAT, path="/"), timeout=TIMEOUT)
    assert resp.errno == 38


def test_waiters_get_connection_closed_when_peer_disconnects_mid_frame(pair: Pair) -> None:
    got_request = threading.Event()
    pair.agent.on_file_op(lambda req: (got_request.set(), FileOpResp())[1])
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            pair.runner.file_op(FileOpReq(op=FileOp.GETWD), timeout=TIMEOUT)
        except BaseException as exc:
            errors.append(exc)

    pair.runner.start()
    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    # the "agent" reads the requests but answers with half a frame, then disconnects
    for _ in range(4):
        assert pair.agent.decode_one() is not None
    frame = Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=1, data=b"z" * 100))
    pair.files[3].write(frame.to_cbor()[:20])
    pair.files[3].close()
    for t in threads:
        t.join(TIMEOUT)
    assert len(errors) == 4 and all(isinstance(e, ConnectionClosedError) for e in errors)
    assert pair.runner.wait(TIMEOUT) == -1
    assert isinstance(pair.runner.error, TruncatedError)
    with pytest.raises(ConnectionClosedError):
        pair.runner.file_op(FileOpReq(op=FileOp.GETWD))
    with pytest.raises(ConnectionClosedError):
        pair.runner.path_query()


def test_close_fails_waiters(pair: Pair) -> None:
    pair.runner.start()
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            pair.runner.file_op(FileOpReq(op=FileOp.GETWD), timeout=TIMEOUT)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=caller)
    t.start()
    deadline = time.monotonic() + TIMEOUT
    while not pair.runner._requests.file_ops_waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    pair.runner.close()
    t.join(TIMEOUT)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionClosedError)


# --- PATH queries ---------------------------------------------------------------------------------


def test_path_query_fifo_and_late_answer_after_timeout(pair: Pair) -> None:
    release = threading.Event()
    asked: list[list[str]] = []

    def answer(query: PathQuery) -> PathInfo:
        asked.append(query.paths)
        if query.paths == ["/slow"]:
            release.wait(TIMEOUT)
        name = query.paths[0] if query.paths else "own"
        return PathInfo(entries=[PathInfoEntry(name=name, remote_path=name, mode=0o755, size=1)])

    pair.agent.on_path_query(answer)
    start_agent_loop(pair)
    pair.runner.start()
    with pytest.raises(RPCTimeoutError):
        pair.runner.path_query(["/slow"], timeout=0.2)
    release.set()
    info = pair.runner.path_query(["/fast"], timeout=TIMEOUT)
    assert [e.name for e in info.entries or []] == ["/fast"]  # not the late "/slow" answer
    info = pair.runner.path_query(timeout=TIMEOUT)
    assert [e.name for e in info.entries or []] == ["own"]
    assert asked == [["/slow"], ["/fast"], []]


# --- recording ----------------------------------------------------------------------


def test_recording_both_directions_exact_bytes(tmp_path: Any, pair: Pair) -> None:
    path = tmp_path / "session.cbor"
    rec = Recorder(path)
    rec.write_session_header()
    from agentproto import ExecMsg

    seq = rec.write_command_start(ExecMsg(path="/bin/true", argv=["true"]))
    pair.runner.set_recorder(rec, seq)
    pair.agent.on_file_op(echo_file_op)
    pair.agent.register_stream(0, Sink())
    start_agent_loop(pair)
    pair.runner.start()
    pair.runner.send_data(0, b"in" * 1000)
    resp = pair.runner.file_op(FileOpReq(op=FileOp.STAT, path="/r"), timeout=TIMEOUT)
    pair.agent.send_data(1, b"out")
    pair.agent.send(Frame(type=FrameType.EXIT, code=4))
    assert pair.runner.wait(TIMEOUT) == 4
    rec.write_command_end(seq, 4)
    rec.close()
    records = read_recording(path)
    frames = [r.frame for r in records if r.type == RecordType.FRAME and r.frame is not None]
    assert all(f.seq == seq and f.timestamp > 0 for f in frames)
    sent = [(f.frame.type, f.frame.stream) for f in frames if f.direction == Direction.SEND]
    got = [(f.frame.type, f.frame.stream) for f in frames if f.direction == Direction.RECV]
    assert sent == [(FrameType.DATA, 0), (FrameType.FILE_OP, 0)]
    assert got == [(FrameType.FILE_RESP, 0), (FrameType.DATA, 1), (FrameType.EXIT, 0)]
    file_resp = next(f.frame.file_resp for f in frames if f.frame.type == FrameType.FILE_RESP)
    assert file_resp == resp
    assert frames[0].frame.data == b"in" * 1000


def test_recording_never_shows_a_response_before_its_request(tmp_path: Any, pair: Pair) -> None:
    # Regression: the request used to be recorded after it was written, so a fast
    # answer, recorded by the reading thread, could land in the file first.
    path = tmp_path / "session.cbor"
    rec = Recorder(path)
    from agentproto import ExecMsg

    seq = rec.write_command_start(ExecMsg(path="/bin/true", argv=["true"]))
    pair.runner.set_recorder(rec, seq)
    pair.agent.on_file_op(echo_file_op)
    start_agent_loop(pair)
    pair.runner.start()

    def caller(t: int) -> None:
        for i in range(40):
            pair.runner.file_op(FileOpReq(op=FileOp.STAT, path=f"/{t}/{i}"), timeout=TIMEOUT)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 2)
    rec.close()
    requested: set[int] = set()
    answered = 0
    for record in read_recording(path):
        frame = record.frame.frame if record.frame is not None else None
        if frame is not None and frame.file_op is not None:
            requested.add(frame.file_op.req_id)
        elif frame is not None and frame.file_resp is not None:
            assert frame.file_resp.req_id in requested, "response recorded before its request"
            answered += 1
    assert answered == 8 * 40


# --- logs ----------------------------------------------------------------------


def test_slog_level_mapping() -> None:
    assert [slog_level(x) for x in (10, 20, 30, 40, 50)] == [-4, 0, 4, 8, 8]
    assert slog_level(25) == 2 and slog_level(0) == -8 and slog_level(45) == 8
    assert [log_entry_level(x) for x in (-4, 0, 4, 8, 12)] == [10, 20, 30, 40, 50]


def test_mux_log_handler_forwards_records(pair: Pair) -> None:
    logger = logging.Logger("agent-test")
    logger.addHandler(MuxLogHandler(pair.agent, logging.INFO))
    logger.debug("below the level")
    logger.warning("disk %s is full", "/dev/x", extra={"device": "x", "pct": 99})
    try:
        raise ValueError("bad thing")
    except ValueError:
        logger.exception("it failed")
    pair.agent.send(Frame(type=FrameType.EXIT, code=0))
    entries: list[LogEntry] = []
    pair.runner.on_log(entries.append)
    assert pair.runner.read_loop() == 0
    assert [(e.level, e.msg) for e in entries] == [(4, "disk /dev/x is full"), (8, "it failed")]
    assert entries[0].attrs == ["device=x", "pct=99"]
    assert entries[1].attrs[0].startswith("exc=Traceback") and "bad thing" in entries[1].attrs[0]


def test_mux_log_handler_does_not_recurse_or_raise(pair: Pair) -> None:
    logger = logging.Logger("agent-test")
    handler = MuxLogHandler(pair.agent)
    logger.addHandler(handler)
    pair.agent.log = logger  # the mux logs through the handler that sends through the mux
    pair.files[2].close()
    pair.files[0].close()  # the runner is gone: sends fail with EPIPE
    logger.error("nobody hears this")  # must not raise nor recurse
    with pytest.raises(ConnectionClosedError):
        pair.agent.send_data(1, b"x")
    pair.agent.close()
    logger.error("closed mux")  # dropped quietly


def test_emit_log_entry() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.Logger("runner-test")
    logger.addHandler(Keep())
    emit_log_entry(logger, LogEntry(level=4, msg="careful", attrs=["a=1"]))
    assert seen[0].levelno == logging.WARNING and seen[0].getMessage() == "careful a=1"


# --- a peer that does not read ---------------------------------------------------------


BLOCKING_SIZE = 4 << 20  # more than any pipe holds (the mux grows its pipes to 1 MiB)


def _stalled_sender() -> tuple[Mux, int]:
    """A mux writing to a pipe that nobody reads yet: (mux, the pipe's read fd)."""
    r, w = os.pipe()
    mux = Mux(io.BytesIO(), open(w, "wb", buffering=0))  # noqa: SIM115 - the mux closes it
    return mux, r


def _wait_until(condition: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _drain(fd: int) -> list[Frame]:
    with open(fd, "rb") as f:
        frames = []
        reader = FrameReader(f)
        while (item := reader.next_item()) is not None:
            frames.append(Frame.from_cbor(bytes(item)))
        return frames


def test_control_frames_go_before_data_frames_still_waiting() -> None:
    """A signal waiting behind a blocked bulk send goes out before the next data frame."""
    mux, r = _stalled_sender()
    first = threading.Thread(target=mux.send_data, args=(0, b"a" * BLOCKING_SIZE))
    first.start()  # blocks: nobody reads
    _wait_until(lambda: mux._send_lock.locked())
    signal_sender = threading.Thread(
        target=mux.send, args=(Frame(type=FrameType.SIGNAL, signal=2),)
    )
    signal_sender.start()
    _wait_until(lambda: mux._control_asked == 1)
    second = threading.Thread(target=mux.send_data, args=(0, b"b" * 10))
    second.start()
    reader = threading.Thread(target=lambda: frames.extend(_drain(r)))
    frames: list[Frame] = []
    time.sleep(0.05)  # give a wrong order every chance to happen
    reader.start()
    for t in (first, signal_sender, second):
        t.join(TIMEOUT)
    mux.close()
    reader.join(TIMEOUT)
    assert [(f.type, f.data[:1]) for f in frames] == [
        (FrameType.DATA, b"a"),
        (FrameType.SIGNAL, b""),
        (FrameType.DATA, b"b"),
    ]


def test_data_yields_only_to_control_frames_already_waiting() -> None:
    """Data never waits for control frames that asked after it: no starvation."""
    mux, r = _stalled_sender()
    reader = threading.Thread(target=_drain, args=(r,))
    reader.start()
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            mux.send(Frame(type=FrameType.SIGNAL, signal=10))

    noisy = [threading.Thread(target=chatter) for _ in range(4)]
    for t in noisy:
        t.start()
    try:
        for _ in range(200):
            mux.send_data(1, b"x" * 1000)  # returns although signals keep coming
    finally:
        stop.set()
        for t in noisy:
            t.join(TIMEOUT)
        mux.close()
        reader.join(TIMEOUT)


def test_close_does_not_wait_for_a_send_the_peer_never_reads() -> None:
    mux, r = _stalled_sender()
    errors: list[BaseException] = []

    def send() -> None:
        try:
            mux.send_data(0, b"q" * BLOCKING_SIZE)
        except ConnectionClosedError as exc:  # pragma: no cover - the frame goes out whole
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    _wait_until(lambda: mux._send_lock.locked())
    closer = threading.Thread(target=mux.close)
    closer.start()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    with pytest.raises(ConnectionClosedError):
        mux.send(Frame(type=FrameType.SIGNAL, signal=2))
    # the peer reads at last: the blocked frame completes, then the writer is closed
    frames = _drain(r)
    sender.join(TIMEOUT)
    assert not errors
    assert [(f.type, len(f.data)) for f in frames] == [(FrameType.DATA, BLOCKING_SIZE)]


def test_close_on_a_socket_shows_the_peer_the_end() -> None:
    """Closing a makefile() object leaves its socket open: close() shuts the sending side."""
    import socket

    ours, peer = socket.socketpair()
    try:
        mux = Mux(ours.makefile("rb", buffering=0), ours.makefile("wb", buffering=0))
        mux.send_eof(1)
        mux.close()
        peer.settimeout(TIMEOUT)
        got = b""
        while chunk := peer.recv(4096):  # ends (b"") only if the peer saw the end
            got += chunk
        assert Frame.from_cbor(got).type == FrameType.EOF
    finally:
        ours.close()
        peer.close()


# --- file-op RPC fast paths: same bytes, same answers -------------------------------------


class CountingWriter:
    """A writer with no file descriptor: the mux calls write() once per write it makes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def test_requests_read_together_are_answered_in_order_in_one_write() -> None:
    requests = [
        Frame(type=FrameType.FILE_OP, file_op=FileOpReq(req_id=i, op=FileOp.STAT, path=f"/f{i}"))
        for i in range(1, 6)
    ]
    writer = CountingWriter()
    agent = Mux(io.BytesIO(b"".join(f.to_cbor() for f in requests)), writer, side="agent")
    agent.on_file_op(echo_file_op)
    assert agent.read_loop() == -1
    answers = list(Decoder(io.BytesIO(b"".join(writer.writes))))
    assert [a.file_resp.req_id for a in answers] == [1, 2, 3, 4, 5]
    expected = [echo_file_op(f.file_op) for f in requests]
    for resp, req in zip(expected, requests, strict=True):
        resp.req_id = req.file_op.req_id
    assert [a.file_resp for a in answers] == expected
    # the five answers left together (one write each before), byte-identical to one by one
    assert len(writer.writes) == 1
    assert writer.writes[0] == b"".join(
        Frame(type=FrameType.FILE_RESP, file_resp=r).to_cbor() for r in expected
    )


def test_answers_held_back_go_out_before_a_frame_sent_meanwhile() -> None:
    requests = b"".join(
        Frame(type=FrameType.FILE_OP, file_op=FileOpReq(req_id=i, op=FileOp.GETWD)).to_cbor()
        for i in (1, 2)
    )
    writer = CountingWriter()
    agent = Mux(io.BytesIO(requests), writer, side="agent")

    def answer_then_log(req: FileOpReq) -> FileOpResp:
        if req.req_id == 2:  # the first answer is held back (request 2 is already read)
            agent.send(Frame(type=FrameType.ERROR, error="meanwhile"))
        return FileOpResp(path="/")

    agent.on_file_op(answer_then_log)
    agent.read_loop()
    frames = list(Decoder(io.BytesIO(b"".join(writer.writes))))
    kinds = [(f.type, f.file_resp.req_id if f.file_resp else None) for f in frames]
    assert kinds == [
        (FrameType.FILE_RESP, 1),
        (FrameType.ERROR, None),
        (FrameType.FILE_RESP, 2),
    ]


def test_a_tapped_agent_sends_each_answer_as_it_is_made() -> None:
    requests = b"".join(
        Frame(type=FrameType.FILE_OP, file_op=FileOpReq(req_id=i, op=FileOp.GETWD)).to_cbor()
        for i in (1, 2, 3)
    )
    writer = CountingWriter()
    agent = Mux(io.BytesIO(requests), writer, side="agent")
    seen: list[tuple[Direction, bytes]] = []
    agent.set_tap(lambda d, parts: seen.append((d, b"".join(parts))))
    agent.on_file_op(lambda req: FileOpResp(path="/"))
    agent.read_loop()
    assert len(writer.writes) == 3
    assert [d for d, _ in seen] == [Direction.RECV, Direction.SEND] * 3


@pytest.mark.parametrize(
    "request_",
    [
        FileOpReq(op=FileOp.STAT, path="/etc/passwd"),
        FileOpReq(req_id=99, op=FileOp.WRITE_AT, handle=3, offset=1 << 40, data=b"\x00" * 300),
        FileOpReq(op=FileOp.CHOWN, path="é", uid=0xFFFF_FFFF, gid=5, mode=0o755),
        FileOpReq(op=FileOp.GETWD),
    ],
)
def test_file_op_requests_are_encoded_as_frame_to_cbor_would(request_: FileOpReq) -> None:
    from dataclasses import replace

    from agentproto.mux import _encode_file_op

    for req_id in (1, 23, 0xFFFF_FFFF):
        expected = Frame(type=FrameType.FILE_OP, file_op=replace(request_, req_id=req_id)).to_cbor()
        assert _encode_file_op(request_, req_id) == expected
    assert request_.req_id in (0, 99)  # the caller's request is not modified


def test_a_file_op_request_go_cannot_hold_names_its_field() -> None:
    from agentproto import LocalProtocolError
    from agentproto.mux import _encode_file_op

    with pytest.raises(LocalProtocolError) as info:
        _encode_file_op(FileOpReq(op=FileOp.READ_AT, offset=1 << 64), 1)
    assert "fop" in str(info.value) and "of" in str(info.value)
