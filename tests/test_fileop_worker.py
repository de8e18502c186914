"""File ops on a worker thread while a command runs (agentproto.fileop_worker): in order, in
bounded memory, never after the command's exit, and never in the way of its signals."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from test_mux import Sink

from agentproto import ExecMsg, FileOp, FileOpReq, Frame, FrameType, Mux
from agentproto.agent import Session
from agentproto.errors import ConnectionClosedError
from agentproto.fileop_worker import FileOpWorker

TIMEOUT = 30.0


class Gate:
    """An answer function that blocks on chosen paths until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.answered: list[str] = []

    def answer(self, req: FileOpReq) -> bytes:
        if req.path.startswith("block"):
            self.entered.set()
            assert self.release.wait(TIMEOUT)
        self.answered.append(req.path)
        return req.path.encode()


def submit_in_thread(worker: FileOpWorker, req: FileOpReq) -> threading.Thread:
    thread = threading.Thread(target=worker.submit, args=(req,), daemon=True)
    thread.start()
    return thread


def test_answers_in_order_on_another_thread() -> None:
    sent: list[tuple[bytes, str]] = []
    worker = FileOpWorker(
        lambda req: req.path.encode(),
        lambda frame: sent.append((frame, threading.current_thread().name)),
    )
    for i in range(200):
        worker.submit(FileOpReq(req_id=i, op=FileOp.STAT, path=f"p{i}"))
    assert worker.stop(TIMEOUT)
    assert [frame for frame, _ in sent] == [f"p{i}".encode() for i in range(200)]
    assert {name for _, name in sent} == {"agent-fileops"}


@pytest.mark.parametrize(
    ("limits", "second"),
    [
        ({"max_requests": 1}, FileOpReq(op=FileOp.STAT, path="small")),
        ({"max_bytes": 9_000}, FileOpReq(op=FileOp.WRITE_AT, path="big", data=b"x" * 8_800)),
    ],
)
def test_a_full_queue_makes_the_submitter_wait(limits: dict[str, int], second: FileOpReq) -> None:
    gate = Gate()
    worker = FileOpWorker(gate.answer, lambda frame: None, **limits)
    worker.submit(FileOpReq(op=FileOp.STAT, path="block"))
    assert gate.entered.wait(TIMEOUT)  # the worker holds it: the queue is empty
    worker.submit(FileOpReq(op=FileOp.STAT, path="queued"))
    waiting = submit_in_thread(worker, second)
    waiting.join(0.3)
    assert waiting.is_alive()  # no room: it waits, holding nothing more in memory
    gate.release.set()
    waiting.join(TIMEOUT)
    assert not waiting.is_alive()
    assert worker.stop(TIMEOUT)
    assert gate.answered == ["block", "queued", second.path]


def test_a_request_larger_than_the_budget_still_goes_alone() -> None:
    sent: list[bytes] = []
    worker = FileOpWorker(lambda req: req.data[:3], sent.append, max_bytes=100)
    worker.submit(FileOpReq(op=FileOp.WRITE_AT, data=b"abc" * 1000))
    assert worker.stop(TIMEOUT)
    assert sent == [b"abc"]


def test_no_answer_after_stop() -> None:
    gate = Gate()
    sent: list[bytes] = []
    worker = FileOpWorker(gate.answer, sent.append)
    worker.submit(FileOpReq(op=FileOp.STAT, path="first"))
    worker.submit(FileOpReq(op=FileOp.STAT, path="block"))
    worker.submit(FileOpReq(op=FileOp.STAT, path="after"))
    assert gate.entered.wait(TIMEOUT)
    assert not worker.stop(0.1)  # one is stuck: stop gives up on it and on what follows
    worker.submit(FileOpReq(op=FileOp.STAT, path="late"))  # dropped, without waiting
    gate.release.set()
    deadline = time.monotonic() + TIMEOUT
    while "block" not in gate.answered and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert sent == [b"first"]
    assert "after" not in gate.answered and "late" not in gate.answered


def test_stop_returns_while_an_answer_is_stuck_in_its_write() -> None:
    """A peer that does not read blocks the worker inside send: stop (and with it the mux's
    close) must not wait for it forever."""
    stuck = threading.Event()
    unblock = threading.Event()

    def send(frame: bytes) -> None:
        stuck.set()
        unblock.wait(TIMEOUT)

    worker = FileOpWorker(lambda req: b"answer", send)
    worker.submit(FileOpReq(op=FileOp.STAT, path="a"))
    assert stuck.wait(TIMEOUT)
    stopping = threading.Thread(target=worker.stop, daemon=True)
    stopping.start()
    stopping.join(TIMEOUT)
    try:
        assert not stopping.is_alive()
    finally:
        unblock.set()


def test_a_failing_answer_is_logged_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[bytes] = []

    def answer(req: FileOpReq) -> bytes:
        if req.path == "bad":
            raise RuntimeError("boom")
        return req.path.encode()

    worker = FileOpWorker(answer, sent.append)
    for path in ("a", "bad", "b"):
        worker.submit(FileOpReq(op=FileOp.STAT, path=path))
    assert worker.stop(TIMEOUT)
    assert sent == [b"a", b"b"]
    assert "no answer" in caplog.text and "boom" in caplog.text


def _agent_session(tmp_path: Path) -> tuple[Session, Mux, threading.Thread, list[int]]:
    to_agent, from_agent = os.pipe(), os.pipe()
    session = Session(os.fdopen(to_agent[0], "rb", 0), os.fdopen(from_agent[1], "wb", 0))
    runner = Mux(os.fdopen(from_agent[0], "rb", 0), os.fdopen(to_agent[1], "wb", 0), side="runner")
    result: list[int] = []
    serving = threading.Thread(target=lambda: result.append(session.run()), daemon=True)
    serving.start()
    return session, runner, serving, result


def test_a_hung_file_op_does_not_hold_up_the_commands_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Stat that hangs (a dead NFS mount) during a command: the runner's SIGTERM still
    reaches the command, other streams flow, and the hung op's answer never follows Exit."""
    from agentproto.agent.fileops import FileOpServer

    gate = Gate()
    real_answer = FileOpServer.answer

    def answer(self: FileOpServer, req: FileOpReq) -> bytes:
        if req.path.endswith("hung"):
            gate.entered.set()
            gate.release.wait(TIMEOUT)
        return real_answer(self, req)

    monkeypatch.setattr(FileOpServer, "answer", answer)
    _session, runner, serving, result = _agent_session(tmp_path)
    out = Sink()
    runner.register_stream(1, out)
    runner.register_stream(2, Sink())
    runner.start()
    errors: list[BaseException] = []
    try:
        (tmp_path / "f").write_bytes(b"abc")
        script = "trap 'echo term; exit 3' TERM; echo ready; while :; do sleep 0.05; done"
        runner.send(
            Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh", argv=["sh", "-c", script]))
        )
        deadline = time.monotonic() + TIMEOUT
        while b"ready" not in out.data and time.monotonic() < deadline:
            time.sleep(0.01)

        def hung_call() -> None:
            try:
                runner.file_op(
                    FileOpReq(op=FileOp.STAT, path=str(tmp_path / "hung")), timeout=TIMEOUT
                )
            except BaseException as exc:  # what the caller sees, checked below
                errors.append(exc)

        caller = threading.Thread(target=hung_call, daemon=True)
        caller.start()
        assert gate.entered.wait(TIMEOUT)  # the agent is inside the hung Stat now
        runner.send(Frame(type=FrameType.SIGNAL, signal=15))
        assert runner.wait(TIMEOUT) == 3  # the signal got through, the command exited
        assert b"term" in out.data
        caller.join(TIMEOUT)
        assert len(errors) == 1 and isinstance(errors[0], ConnectionClosedError)
    finally:
        gate.release.set()
        runner.close()
        serving.join(TIMEOUT)
    assert result == [3]


def test_file_ops_during_a_command_are_answered_in_order(tmp_path: Path) -> None:
    session, runner, serving, result = _agent_session(tmp_path)
    runner.register_stream(1, Sink())
    runner.register_stream(2, Sink())
    runner.start()
    try:
        runner.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/cat", argv=["cat"])))
        for i in range(20):
            (tmp_path / f"f{i}").write_bytes(b"x" * i)
        sizes: dict[int, int] = {}

        def caller(t: int) -> None:
            for i in range(t, 20, 4):
                resp = runner.file_op(FileOpReq(op=FileOp.STAT, path=str(tmp_path / f"f{i}")))
                assert resp.stat is not None
                sizes[i] = resp.stat.size

        callers = [threading.Thread(target=caller, args=(t,)) for t in range(4)]
        for c in callers:
            c.start()
        for c in callers:
            c.join(TIMEOUT)
        assert sizes == {i: i for i in range(20)}
        worker = session.mux._file_op_worker
        assert worker is not None  # served by the worker
        runner.send_eof(0)
        assert runner.wait(TIMEOUT) == 0
    finally:
        runner.close()
        serving.join(TIMEOUT)
    assert result == [0]
    worker._thread.join(TIMEOUT)
    assert not worker._thread.is_alive()  # a session leaves no thread behind
