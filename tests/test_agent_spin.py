"""The agent's short poll before a blocking read (agentproto.spin): when it spins, and that
nothing else changes while it does (answers, end of input, signals, hostile input, commands)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentproto.spin as spin
from agentproto import ExecMsg, FileOp, FileOpReq, FileOpResp, Frame, FrameType, Mux
from agentproto.agent import Session
from agentproto.spin import Spinner

TIMEOUT = 30.0
# The stdio agent with spinning forced on (whatever the machine's load) and a budget long
# enough that it is still spinning whenever the test sends something.
SPINNING_AGENT = [
    sys.executable,
    "-c",
    "import sys, agentproto.spin as s; s.SPIN_BUDGET = 60.0; "
    "s.Spinner._core_is_spare = lambda self: True; "
    "from agentproto.agent.cli import main; sys.exit(main(sys.argv[1:]))",
]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.fixture
def spare(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with a spare core, whatever this one's load; requests always come quickly
    enough to spin for (the budget is far longer than any test's pause)."""
    monkeypatch.setattr(Spinner, "_core_is_spare", lambda self: True)
    monkeypatch.setattr(spin, "SPIN_BUDGET", 60.0)


def test_spins_only_after_a_request_that_came_quickly(pipe: tuple[int, int], spare: None) -> None:
    r, w = pipe
    spinner = Spinner(r, budget=60.0)
    spinner.wait()  # the first wait: nothing says requests come back to back
    assert spinner.spins == 0
    os.write(w, b"a")
    os.read(r, 1)
    spinner.done()  # came within the budget: spin before the next read
    os.write(w, b"b")
    spinner.wait()
    assert (spinner.spins, spinner.hits) == (1, 1)  # data was there: the poll saw it
    os.read(r, 1)
    spinner.done()
    spinner.budget = 1e-9  # now every wait is longer than the budget
    spinner.wait()
    assert (spinner.spins, spinner.hits) == (2, 1)  # polled, nothing came: gave up
    spinner.done()
    spinner.wait()
    assert spinner.spins == 2  # a slow request turned spinning off


def test_a_spin_ends_at_the_end_of_input(pipe: tuple[int, int], spare: None) -> None:
    r, w = pipe
    spinner = Spinner(r, budget=60.0)
    os.write(w, b"a")
    spinner.wait()
    os.read(r, 1)
    spinner.done()
    os.close(w)
    spinner.wait()  # the writer is gone: poll reports it at once, not after 60 s
    assert spinner.hits == 1
    assert os.read(r, 1) == b""


def test_no_spinning_without_a_spare_core(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    spinner = Spinner(pipe[0])
    spinner._cores = 2
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(spin, "cpu_times", lambda: (1_000, 0))
    assert spinner._core_is_spare()  # the runner on one core, us on the other
    spinner._cores = 1
    assert not spinner._core_is_spare()  # one core: a spin takes it from the runner
    spinner._cores = 2
    monkeypatch.setattr(threading, "active_count", lambda: 3)
    assert not spinner._core_is_spare()  # other threads of this process need the GIL
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(spin, "cpu_times", lambda: None)
    assert not spinner._core_is_spare()  # no scheduler statistics: nothing tells


def test_a_thread_kept_waiting_for_a_cpu_stops_spinning(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its waits for a CPU, against its time on one, say whether someone else wants it."""
    r, w = pipe
    spinner = Spinner(r, budget=60.0)
    spinner._cores = 2
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    times = [(0, 0)]
    monkeypatch.setattr(spin, "cpu_times", lambda: times[-1])

    def look(ran_ms: float, waited_ms: float) -> bool:
        ran, waited = times[-1]
        times.append((ran + int(ran_ms * 1e6), waited + int(waited_ms * 1e6)))
        return spinner._core_is_spare()

    assert spinner._core_is_spare()  # the first look: nothing to judge by, try it
    assert look(20, 0)  # ran the whole interval
    assert look(19.2, 0.8)  # kept waiting 4% of the time: still spare
    assert not look(14, 6)  # 30%: a busy program shares the core (measured: 28-30%)
    assert look(0.05, 0)  # mostly asleep, never kept waiting
    assert not look(0.05, 0.05)  # woken, then kept waiting as long as it ran

    # in wait(): a look that finds it kept waiting stops spinning for BACK_OFF seconds
    monkeypatch.setattr(spin, "BACK_OFF", 3600.0)
    os.write(w, b"a")
    spinner.wait()
    os.read(r, 1)
    spinner.done()  # hot now
    spinner._next_check = 0.0  # look at the next wait
    ran, waited = times[-1]
    times.append((ran + 10**6, waited + 10**6))
    os.write(w, b"b")
    spinner.wait()
    assert spinner.spins == 0
    os.read(r, 1)
    spinner.done()
    times.append((ran + 10**8, waited + 10**6))  # calm again, but no look before BACK_OFF
    os.write(w, b"c")
    spinner.wait()
    assert spinner.spins == 0


def test_cpu_times_are_this_threads() -> None:
    main = spin.cpu_times()
    if main is None:
        pytest.skip("no /proc/thread-self/schedstat here")
    fresh: list[tuple[int, int] | None] = []
    thread = threading.Thread(target=lambda: fresh.append(spin.cpu_times()))
    thread.start()
    thread.join(TIMEOUT)
    assert fresh[0] is not None
    assert 0 <= fresh[0][0] < main[0]  # a new thread has run for less than this one
    later = spin.cpu_times()
    assert later is not None and later[0] >= main[0] and later[1] >= main[1]


def test_spin_before_reads_needs_a_descriptor() -> None:
    mux = Mux(io.BytesIO(), io.BytesIO())
    assert mux.spin_before_reads(True) is False
    assert mux.spinner is None


def test_rpcs_through_a_spinning_mux(spare: None) -> None:
    """Answers are right and in order, back to back and from many callers at once."""
    to_agent, from_agent = os.pipe(), os.pipe()
    agent = Mux(os.fdopen(to_agent[0], "rb", 0), os.fdopen(from_agent[1], "wb", 0), side="agent")
    runner = Mux(os.fdopen(from_agent[0], "rb", 0), os.fdopen(to_agent[1], "wb", 0), side="runner")
    assert agent.spin_before_reads(True)
    seen: list[int] = []

    def serve(req: FileOpReq) -> bytes:
        seen.append(req.req_id)
        return FileOpResp(req_id=req.req_id, path=req.path).to_cbor()

    agent.on_file_op_encoded(serve)
    agent.start()
    runner.start()
    try:
        for i in range(50):
            resp = runner.file_op(FileOpReq(op=FileOp.GETWD, path=f"p{i}"), timeout=TIMEOUT)
            assert resp.path == f"p{i}"
        failures: list[str] = []

        def caller(t: int) -> None:
            for i in range(20):
                want = f"t{t}-{i}"
                got = runner.file_op(FileOpReq(op=FileOp.GETWD, path=want), timeout=TIMEOUT)
                if got.path != want:
                    failures.append(f"{want}: {got.path}")

        callers = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
        for c in callers:
            c.start()
        for c in callers:
            c.join(TIMEOUT)
        assert failures == []
        assert sorted(seen) == sorted(set(seen)) and len(seen) == 50 + 8 * 20  # each once
        spinner = agent.spinner
        assert spinner is not None and spinner.spins > 0
    finally:
        runner.close()
        assert agent.wait(TIMEOUT) == -1  # the runner's end of input ends the loop
        agent.close()
    assert agent.error is None


def test_a_session_stops_spinning_when_its_command_starts(tmp_path: Path, spare: None) -> None:
    to_agent, from_agent = os.pipe(), os.pipe()
    session = Session(os.fdopen(to_agent[0], "rb", 0), os.fdopen(from_agent[1], "wb", 0), spin=True)
    runner = Mux(os.fdopen(from_agent[0], "rb", 0), os.fdopen(to_agent[1], "wb", 0), side="runner")
    out: list[bytes] = []
    runner.register_stream(1, _Collect(out))
    runner.register_stream(2, _Collect([]))
    result: list[int] = []
    serving = threading.Thread(target=lambda: result.append(session.run()))
    serving.start()
    runner.start()
    try:
        (tmp_path / "f").write_bytes(b"abc")
        for _ in range(20):
            resp = runner.file_op(FileOpReq(op=FileOp.STAT, path=str(tmp_path / "f")))
            assert resp.stat is not None and resp.stat.size == 3
        spinner = session.mux.spinner
        assert spinner is not None and spinner.spins > 0
        runner.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/cat", argv=["cat"])))
        runner.send_data(0, b"streamed\n")
        resp = runner.file_op(FileOpReq(op=FileOp.GETWD), timeout=TIMEOUT)
        assert resp.errno == 0
        assert session.mux.spinner is None  # the command's threads share the GIL now
        runner.send_eof(0)
        assert runner.wait(TIMEOUT) == 0
    finally:
        runner.close()
        serving.join(TIMEOUT)
    assert result == [0]
    assert b"".join(out) == b"streamed\n"


class _Collect:
    def __init__(self, into: list[bytes]) -> None:
        self.into = into

    def write(self, data: bytes) -> None:
        self.into.append(data)

    def eof(self) -> None:
        pass


class SpinningAgent:
    """The stdio agent, spinning, with a runner Mux on its pipes."""

    def __init__(self, tmp: Path) -> None:
        self.err = tmp / "agent.err"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                SPINNING_AGENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.mux = Mux(self.proc.stdout, self.proc.stdin, side="runner")
        self.errors: list[str] = []
        self.mux.on_error(self.errors.append)

    def stat(self, path: Path) -> int:
        resp = self.mux.file_op(FileOpReq(op=FileOp.STAT, path=str(path)), timeout=TIMEOUT)
        assert resp.errno == 0 and resp.stat is not None
        return resp.stat.size


@pytest.fixture
def spinning(tmp_path: Path) -> Iterator[SpinningAgent]:
    agent = SpinningAgent(tmp_path)
    (tmp_path / "f").write_bytes(b"four")
    yield agent
    agent.mux.close()
    try:
        agent.proc.wait(TIMEOUT)
    finally:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()
        assert agent.proc.stdout is not None
        agent.proc.stdout.close()


def test_spinning_agent_ends_with_its_input(spinning: SpinningAgent, tmp_path: Path) -> None:
    spinning.mux.start()
    for _ in range(20):
        assert spinning.stat(tmp_path / "f") == 4
    spinning.mux.close()  # mid-spin: the agent sees the end of its input
    assert spinning.proc.wait(TIMEOUT) == 0
    assert "Traceback" not in spinning.err.read_text()


def test_spinning_agent_obeys_sigterm(spinning: SpinningAgent, tmp_path: Path) -> None:
    spinning.mux.start()
    for _ in range(20):
        assert spinning.stat(tmp_path / "f") == 4
    spinning.proc.send_signal(signal.SIGTERM)  # while it polls for the next request
    assert spinning.proc.wait(TIMEOUT) == 1
    assert "Traceback" not in spinning.err.read_text()


def test_spinning_agent_refuses_garbage(spinning: SpinningAgent, tmp_path: Path) -> None:
    spinning.mux.start()
    for _ in range(20):
        assert spinning.stat(tmp_path / "f") == 4
    stdin = spinning.proc.stdin
    assert stdin is not None
    stdin.write(b"\xff\x00garbage")
    stdin.flush()
    assert spinning.mux.wait(TIMEOUT) == -1
    assert any("protocol error" in e for e in spinning.errors)
    assert spinning.proc.wait(TIMEOUT) == 0


def test_spinning_agent_runs_a_command(spinning: SpinningAgent, tmp_path: Path) -> None:
    out: list[bytes] = []
    spinning.mux.register_stream(1, _Collect(out))
    spinning.mux.register_stream(2, _Collect([]))
    spinning.mux.start()
    for _ in range(20):
        assert spinning.stat(tmp_path / "f") == 4
    spinning.mux.send(
        Frame(
            type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh", argv=["sh", "-c", "cat; echo done"])
        )
    )
    spinning.mux.send_data(0, b"x" * 300_000)
    assert spinning.stat(tmp_path / "f") == 4  # served during the command too
    spinning.mux.send_eof(0)
    assert spinning.mux.wait(TIMEOUT) == 0
    assert b"".join(out) == b"x" * 300_000 + b"done\n"
