"""The runnable agent as a subprocess, driven through our Mux (stdio and --listen)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentproto import (
    AgentConfig,
    Decoder,
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    Frame,
    FrameType,
    LogEntry,
    Mux,
    Recorder,
    RecordType,
    read_recording,
)
from agentproto.address import connect, parse_address
from agentproto.envfilter import EnvFilter, build_env
from agentproto.mux import encode_data_frame_head
from agentproto.pathquery import query_path

TIMEOUT = 30.0
AGENT = [sys.executable, "-m", "agentproto.agent"]


class Sink:
    """Collects one stream; can hash instead of keeping the bytes (large outputs)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.chunks: list[bytes] = []
        self.sha = hashlib.sha256()
        self.size = 0
        self.eofs = 0
        self.first = threading.Event()

    def write(self, data: bytes) -> None:
        if self.keep:
            self.chunks.append(data)
        else:
            self.sha.update(data)
        self.size += len(data)
        self.first.set()

    def eof(self) -> None:
        self.eofs += 1

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class Agent:
    """An agent subprocess on stdio with a runner Mux on its pipes; always cleaned up."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.stderr_path = tmp / f"agent-{time.monotonic_ns()}.log"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*AGENT, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.mux = Mux(self.proc.stdout, self.proc.stdin, side="runner")
        self.logs: list[LogEntry] = []
        self.errors: list[str] = []
        self.mux.on_log(self.logs.append)
        self.mux.on_error(self.errors.append)
        self.streams: dict[int, Sink] = {}

    def sink(self, stream: int, keep: bool = True) -> Sink:
        self.streams[stream] = Sink(keep)
        self.mux.register_stream(stream, self.streams[stream])
        return self.streams[stream]

    def close(self) -> int | None:
        self.mux.close()
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.close()


@dataclass
class Result:
    code: int | None
    agent: Agent
    out: bytes = b""
    err: bytes = b""
    streams: dict[int, Sink] = field(default_factory=dict)


def run(
    agents: list[Agent],
    tmp: Path,
    argv: list[str],
    *,
    path: str | None = None,
    stdin: bytes | None = None,
    env: list[str] | None = None,
    cwd: str = "",
    fds: tuple[int, ...] = (),
    config: AgentConfig | None = None,
    agent_args: tuple[str, ...] = (),
    agent_env: dict[str, str] | None = None,
) -> Result:
    agent = Agent(tmp, *agent_args, env=agent_env)
    agents.append(agent)
    for stream in (1, 2, *fds):
        agent.sink(stream)
    if config is not None:
        agent.mux.send(Frame(type=FrameType.CONFIG, config=config))
    msg = ExecMsg(path=path or argv[0], argv=argv, env=env, cwd=cwd, extra_fds=list(fds))
    agent.mux.send(Frame(type=FrameType.EXEC, exec=msg))
    agent.mux.start()
    if stdin is not None:
        agent.mux.send_data(0, stdin)
        agent.mux.send_eof(0)
    code = agent.mux.wait(TIMEOUT)
    return Result(
        code,
        agent,
        agent.streams[1].data,
        agent.streams[2].data,
        agent.streams,
    )


def gone(pid: int, timeout: float = TIMEOUT) -> bool:
    """True once ``pid`` no longer exists (reaped by the agent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


# --- commands ----------------------------------------------------------------------


def test_echo(agents: list[Agent], tmp_path: Path) -> None:
    r = run(agents, tmp_path, ["echo", "hello", "world"], path="/bin/echo")
    assert (r.code, r.out, r.err) == (0, b"hello world\n", b"")
    assert r.streams[1].eofs == 1 and r.streams[2].eofs == 1
    assert r.agent.close() == 0
    assert any(e.msg.startswith("started /bin/echo") for e in r.agent.logs)


def test_stdin_to_cat(agents: list[Agent], tmp_path: Path) -> None:
    data = os.urandom(300_000)
    r = run(agents, tmp_path, ["cat"], path="/bin/cat", stdin=data)
    assert r.code == 0 and r.out == data


def test_stderr_and_exit_code(agents: list[Agent], tmp_path: Path) -> None:
    r = run(agents, tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 3"], path="/bin/sh")
    assert (r.code, r.out, r.err) == (3, b"out\n", b"err\n")


def test_path_lookup_and_argv0(agents: list[Agent], tmp_path: Path) -> None:
    r = run(
        agents, tmp_path, ["custom-name", "-c", 'echo "$0"'], path="sh", env=["PATH=/usr/bin:/bin"]
    )
    assert (r.code, r.out) == (0, b"custom-name\n")


def test_cwd(agents: list[Agent], tmp_path: Path) -> None:
    r = run(agents, tmp_path, ["pwd"], path="/bin/pwd", cwd=str(tmp_path))
    assert r.out.decode().strip() == os.path.realpath(tmp_path)


def test_signal_to_process_group(agents: list[Agent], tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agents.append(agent)
    out = agent.sink(1)
    agent.sink(2)
    script = "echo ready; sleep 30; echo never"
    agent.mux.send(
        Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh", argv=["sh", "-c", script]))
    )
    agent.mux.start()
    assert out.first.wait(TIMEOUT)
    agent.mux.send(Frame(type=FrameType.SIGNAL, signal=signal.SIGTERM))
    assert agent.mux.wait(TIMEOUT) == 128 + signal.SIGTERM  # 143, as a shell reports it
    assert out.data == b"ready\n"


def test_extra_fds(agents: list[Agent], tmp_path: Path) -> None:
    script = "echo three >&3; echo five >&5; echo out"
    r = run(agents, tmp_path, ["sh", "-c", script], path="/bin/sh", fds=(3, 5))
    assert r.code == 0
    assert (r.out, r.streams[3].data, r.streams[5].data) == (b"out\n", b"three\n", b"five\n")
    assert r.streams[3].eofs == 1 and r.streams[5].eofs == 1


def test_bad_extra_fd_is_refused(agents: list[Agent], tmp_path: Path) -> None:
    r = run(agents, tmp_path, ["true"], path="/bin/true", fds=(1,))
    assert r.code == 126 and "extra fds" in r.agent.errors[0]


@pytest.mark.parametrize(
    ("what", "code"), [("missing", 127), ("not-executable", 126), ("bad-cwd", 126)]
)
def test_command_that_cannot_start(
    agents: list[Agent], tmp_path: Path, what: str, code: int
) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    path, cwd = {
        "missing": (str(tmp_path / "no-such-program"), ""),
        "not-executable": (str(script), ""),
        "bad-cwd": ("/bin/true", str(tmp_path / "no-such-dir")),
    }[what]
    r = run(agents, tmp_path, [path], path=path, cwd=cwd)
    assert r.code == code
    assert len(r.agent.errors) == 1 and r.agent.errors[0].startswith("exec ")
    assert r.agent.close() == 0  # the agent ends cleanly


# --- large output -------------------------------------------------------------------------------


@pytest.mark.slow
def test_large_output_is_byte_exact(agents: list[Agent], tmp_path: Path) -> None:
    size = 100 * 1000 * 1000
    source = tmp_path / "big.bin"
    expected = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(source, "wb") as f:
        written = 0
        i = 0
        while written < size:
            chunk = (i.to_bytes(8, "big") + block)[: min(1 << 20, size - written)]
            f.write(chunk)
            expected.update(chunk)
            written += len(chunk)
            i += 1
    agent = Agent(tmp_path)
    agents.append(agent)
    out = agent.sink(1, keep=False)
    agent.sink(2)
    agent.mux.send(
        Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/cat", argv=["cat", str(source)]))
    )
    agent.mux.start()
    assert agent.mux.wait(TIMEOUT * 2) == 0
    source.unlink()
    assert out.size == size and out.sha.hexdigest() == expected.hexdigest()


def test_output_to_a_regular_file(tmp_path: Path) -> None:
    # stdout not a pipe or socket: the agent copies instead of splicing
    out_path = tmp_path / "frames.bin"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(AGENT, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    msg = ExecMsg(path="/bin/sh", argv=["sh", "-c", "head -c 3000000 /dev/zero; echo e >&2"])
    proc.stdin.write(Frame(type=FrameType.EXEC, exec=msg).to_cbor())
    proc.stdin.flush()
    try:
        assert proc.wait(TIMEOUT) == 0
    finally:
        proc.stdin.close()
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    with open(out_path, "rb") as f:
        frames = list(Decoder(f))
    data = {s: b"".join(f.data for f in frames if f.type == FrameType.DATA and f.stream == s)
            for s in (1, 2)}  # fmt: skip
    assert data == {1: bytes(3_000_000), 2: b"e\n"}
    assert frames[-1].type == FrameType.EXIT and frames[-1].code == 0


# --- environment ----------------------------------------------------------------------


def env_of(out: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


@pytest.mark.parametrize(
    ("keep", "remove", "requested", "expected"),
    [
        # glob: whole name, case-sensitive
        (["HOME"], None, [], {"HOME": "/h"}),
        (["home"], None, [], {}),
        (["H*"], None, [], {"HOME": "/h", "HOSTNAME": "box"}),
        # regex: searched anywhere unless anchored
        (["/OST/"], None, [], {"HOSTNAME": "box"}),
        (["/^OST/"], None, [], {}),
        # requested entries overlay kept ones; later duplicates win; junk ignored
        (["HOME"], None, ["HOME=/x", "A=1", "A=2", "junk", "=v"], {"HOME": "/x", "A": "2"}),
        # remove applies to requested entries too
        (["*"], ["/^A/", "HOST?AME"], ["AB=1", "C=2"], {"HOME": "/h", "SECRET": "s", "C": "2"}),
        # nil env: the agent's whole environment, minus removals
        (None, ["HOME"], None, {"HOSTNAME": "box", "SECRET": "s"}),
    ],
)
def test_env_filter_semantics(
    keep: list[str] | None,
    remove: list[str] | None,
    requested: list[str] | None,
    expected: dict[str, str],
) -> None:
    agent_env = {"HOME": "/h", "HOSTNAME": "box", "SECRET": "s"}
    assert (
        build_env(requested, AgentConfig(env_keep=keep, env_remove=remove), agent_env) == expected
    )


def test_env_filter_reports_bad_patterns() -> None:
    f = EnvFilter.from_config(AgentConfig(env_keep=["/(/", "OK"], env_remove=["/[/"]))
    assert len(f.errors) == 2 and all("invalid pattern" in e for e in f.errors)
    assert f.build([], {"OK": "1", "NO": "2"}) == {"OK": "1"}


def test_query_path_dedups_and_skips(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d, name, mode in [(a, "x", 0o755), (b, "x", 0o755), (b, "y", 0o700), (b, "z", 0o600)]:
        (d / name).write_bytes(b"#!/bin/sh\n")
        (d / name).chmod(mode)
    (b / "dangling").symlink_to(tmp_path / "nowhere")
    info = query_path([f"{a}:{tmp_path / 'missing'}", "", str(b), str(a)])
    assert [(e.name, e.remote_path) for e in info.entries or []] == [
        ("x", str(a / "x")),
        ("y", str(b / "y")),
    ]


def test_config_env_filtering(agents: list[Agent], tmp_path: Path) -> None:
    agent_env = {
        **os.environ,
        "KEEP_ONE": "1",
        "KEEP_TWO": "2",
        "SECRET_TOKEN": "s",
        "SECRET_OK": "ok",
        "OTHER": "o",
    }
    config = AgentConfig(env_keep=["KEEP_*", "/^SECRET/"], env_remove=["SECRET_TOKEN", "/DROP/"])
    r = run(
        agents,
        tmp_path,
        ["env"],
        path="/usr/bin/env",
        env=["REQ=a", "REQ_DROP=b", "KEEP_TWO=override"],
        config=config,
        agent_env=agent_env,
    )
    assert r.code == 0
    assert env_of(r.out) == {"KEEP_ONE": "1", "KEEP_TWO": "override", "SECRET_OK": "ok", "REQ": "a"}


def test_nil_env_inherits_agent_environment(agents: list[Agent], tmp_path: Path) -> None:
    agent_env = {**os.environ, "FROM_AGENT": "yes", "DROP_ME": "x"}
    config = AgentConfig(env_keep=None, env_remove=["DROP_*"])
    r = run(
        agents, tmp_path, ["env"], path="/usr/bin/env", env=None, config=config, agent_env=agent_env
    )
    got = env_of(r.out)
    assert got["FROM_AGENT"] == "yes" and "DROP_ME" not in got


def test_bad_config_pattern_is_reported(agents: list[Agent], tmp_path: Path) -> None:
    config = AgentConfig(env_keep=["/([/"], env_remove=None)
    r = run(agents, tmp_path, ["env"], path="/usr/bin/env", env=["A=1"], config=config)
    assert r.code == 0 and env_of(r.out) == {"A": "1"}
    assert any("invalid pattern" in e for e in r.agent.errors)


# --- RPCs ---------------------------------------------------------------------


def test_path_query_without_command(agents: list[Agent], tmp_path: Path) -> None:
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    for d in (d1, d2):
        d.mkdir()
    for d, name, mode in [
        (d1, "tool", 0o755),
        (d1, "data", 0o644),
        (d2, "tool", 0o755),
        (d2, "other", 0o750),
    ]:
        (d / name).write_text(f"#!/bin/sh\necho {d.name}\n")
        (d / name).chmod(mode)
    (d1 / "subdir").mkdir(mode=0o755)
    (d1 / "link").symlink_to(d2 / "other")
    agent = Agent(tmp_path)
    agents.append(agent)
    agent.mux.start()
    info = agent.mux.path_query([str(d1), str(d2)], timeout=TIMEOUT)
    entries = {e.name: e for e in info.entries or []}
    assert sorted(entries) == ["link", "other", "tool"]
    assert entries["tool"].remote_path == str(d1 / "tool")
    assert entries["tool"].mode == 0o755 and entries["link"].mode == 0o750
    assert entries["tool"].size == (d1 / "tool").stat().st_size
    assert entries["tool"].mtime_nanos == (d1 / "tool").stat().st_mtime_ns
    # empty paths: the agent's own $PATH
    own = agent.mux.path_query(timeout=TIMEOUT)
    assert "sh" in {e.name for e in own.entries or []}
    assert agent.close() == 0


def test_concurrent_file_ops_against_agent(agents: list[Agent], tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for t in range(16):
        (root / f"f{t}").write_bytes(b"x" * (t + 1))
    agent = Agent(tmp_path, "--root", str(root))
    agents.append(agent)
    agent.mux.start()
    failures: list[str] = []

    def caller(t: int) -> None:
        for i in range(50):
            name = f"f{(t + i) % 16}"
            resp = agent.mux.file_op(FileOpReq(op=FileOp.STAT, path=name), timeout=TIMEOUT)
            st = resp.stat
            if resp.errno or st is None or (st.name, st.size) != (name, (t + i) % 16 + 1):
                failures.append(f"{name}: {resp}")

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(TIMEOUT * 2)
    assert failures == []
    escape = agent.mux.file_op(FileOpReq(op=FileOp.STAT, path="/etc/passwd"), timeout=TIMEOUT)
    assert escape.errno != 0  # confined to --root
    assert agent.close() == 0


def test_file_ops_while_command_runs(agents: list[Agent], tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agents.append(agent)
    agent.sink(1)
    agent.sink(2)
    agent.mux.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/cat", argv=["cat"])))
    agent.mux.start()
    resp = agent.mux.file_op(FileOpReq(op=FileOp.GETWD), timeout=TIMEOUT)
    assert resp.errno == 0 and resp.path == os.getcwd()
    agent.mux.send_eof(0)
    assert agent.mux.wait(TIMEOUT) == 0


# --- disconnects and hostile peers ---------------------------------------------------------------


def start_long_child(agent: Agent, script: str) -> int:
    out = agent.sink(1)
    agent.sink(2)
    agent.mux.send(
        Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh", argv=["sh", "-c", script]))
    )
    agent.mux.start()
    assert out.first.wait(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while b"\n" not in out.data and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(out.data.split()[0])


def test_runner_disconnect_kills_child(agents: list[Agent], tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agents.append(agent)
    pid = start_long_child(agent, "echo $$; exec sleep 60")
    assert agent.close() == 0
    assert gone(pid)


def test_signal_and_file_ops_get_past_pending_stdin(agents: list[Agent], tmp_path: Path) -> None:
    """Input the child does not read is buffered: later frames are still served."""
    agent = Agent(tmp_path)
    agents.append(agent)
    pid = start_long_child(agent, "echo $$; exec sleep 60")  # never reads its stdin
    # 3 MiB: more than the child's pipe and the connection's pipe hold together
    feeder = threading.Thread(target=agent.mux.send_data, args=(0, b"z" * (3 << 20)))
    feeder.start()
    feeder.join(TIMEOUT)
    assert not feeder.is_alive()  # the agent took it all, though the child reads nothing
    resp = agent.mux.file_op(FileOpReq(op=FileOp.GETWD), timeout=TIMEOUT)
    assert resp.errno == 0
    agent.mux.send(Frame(type=FrameType.SIGNAL, signal=signal.SIGTERM))
    assert agent.mux.wait(TIMEOUT) == 128 + signal.SIGTERM
    assert gone(pid)


def _child_stdin(limit: int) -> tuple[Any, int]:
    """A _ChildStdin on a fresh pipe (nobody reads it yet): (stdin, the pipe's read fd)."""
    from agentproto.agent.command import ChildStdin as _ChildStdin

    r, w = os.pipe()
    return _ChildStdin(w, logging.getLogger("test"), None, lambda: None, limit=limit), r


def _read_all(fd: int) -> bytes:
    with open(fd, "rb") as f:
        return f.read()


def test_child_stdin_buffers_up_to_its_limit_then_waits() -> None:
    stdin, r = _child_stdin(limit=(2 << 20) + 4096)  # 2 MiB and the chunks' overhead
    stdin.write(b"a" * (1 << 20))  # returns: buffered, although nobody reads
    stdin.write(b"b" * (1 << 20))
    assert stdin.pending > 0
    blocked = threading.Thread(target=stdin.write, args=(b"c" * (1 << 20),))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # over the limit: back-pressure
    reader = threading.Thread(target=lambda: got.append(_read_all(r)))
    got: list[bytes] = []
    reader.start()
    blocked.join(TIMEOUT)
    assert not blocked.is_alive()
    stdin.eof()  # closes the pipe once everything is written
    reader.join(TIMEOUT)
    assert got == [b"a" * (1 << 20) + b"b" * (1 << 20) + b"c" * (1 << 20)]
    assert stdin.pending == 0


def test_child_stdin_close_drops_input_and_releases_a_blocked_write() -> None:
    stdin, r = _child_stdin(limit=1 << 16)
    blocked = threading.Thread(target=stdin.write, args=(b"x" * (1 << 20),))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()
    stdin.close()  # the child is gone
    blocked.join(TIMEOUT)
    assert not blocked.is_alive() and stdin.pending == 0
    stdin.write(b"later")  # dropped, no error
    assert len(_read_all(r)) < (1 << 20)  # the pipe is closed: EOF after what got through


def test_child_stdin_close_after_the_writer_ended_touches_no_other_fd() -> None:
    """The child went away first (EPIPE): close() later must not write to fd numbers
    the writer closed, which new pipes may reuse."""
    stdin, r = _child_stdin(limit=1 << 20)
    stdin.write(b"x")
    os.close(r)  # the child is gone
    stdin.write(b"y" * 65536)  # EPIPE ends the writer, which closes its fds
    writer = stdin._writer
    assert writer is not None
    writer.join(TIMEOUT)
    assert not writer.is_alive()
    reused = [os.pipe() for _ in range(3)]  # likely to get the freed numbers back
    try:
        stdin.close()
        for pr, _ in reused:
            os.set_blocking(pr, False)
            with pytest.raises(BlockingIOError):
                os.read(pr, 1)  # nothing was written into a reused pipe
    finally:
        for pair in reused:
            for fd in pair:
                os.close(fd)


def test_child_stdin_eof_without_input_closes_at_once() -> None:
    stdin, r = _child_stdin(limit=1024)
    stdin.eof()
    assert _read_all(r) == b""


def _stdin_frames(path: Path, script: str, stdin_size: int) -> None:
    """Write a runner's side of a session to ``path``: Exec of ``sh -c script``, then stdin."""
    exec_msg = ExecMsg(path="/bin/sh", argv=["sh", "-c", script])
    chunk = b"z" * (256 << 10)
    with open(path, "wb") as f:
        f.write(Frame(type=FrameType.EXEC, exec=exec_msg).to_cbor())
        for _ in range(stdin_size // len(chunk)):
            f.write(encode_data_frame_head(0, len(chunk)) + chunk)


def test_disconnect_while_stdin_is_blocked(tmp_path: Path) -> None:
    """Runner killed while the agent waits for the child to read: the child is ended."""
    frames_path = tmp_path / "frames.bin"
    pid_file = tmp_path / "pid"
    # 16 MiB: the agent buffers a few MiB, then stops reading; the runner blocks
    _stdin_frames(frames_path, f"echo $$ > {pid_file}; exec sleep 60", 16 << 20)
    runner = subprocess.Popen(["cat", str(frames_path)], stdout=subprocess.PIPE)
    agent = subprocess.Popen(AGENT, stdin=runner.stdout, stdout=subprocess.DEVNULL)
    assert runner.stdout is not None
    runner.stdout.close()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        with pytest.raises(subprocess.TimeoutExpired):
            runner.wait(0.5)  # blocked: the agent no longer reads
        started = time.monotonic()
        runner.kill()
        runner.wait()
        assert agent.wait(TIMEOUT) == 0
        assert gone(pid)
        assert time.monotonic() - started < 20  # not the child's 60 seconds
    finally:
        for proc in (runner, agent):
            proc.kill()
            proc.wait()


def test_child_ignoring_sigterm_gets_sigkill(agents: list[Agent], tmp_path: Path) -> None:
    agent = Agent(tmp_path, "--grace", "0.3")
    agents.append(agent)
    pid = start_long_child(agent, "trap '' TERM; echo $$; sleep 60; sleep 60")
    assert agent.close() == 0
    assert gone(pid)
    assert "ignored SIGTERM" in agent.stderr


def test_disconnect_mid_frame_kills_child(agents: list[Agent], tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agents.append(agent)
    pid = start_long_child(agent, "echo $$; exec sleep 60")
    assert agent.proc.stdin is not None
    agent.proc.stdin.write(Frame(type=FrameType.DATA, data=b"y" * 100).to_cbor()[:30])
    agent.proc.stdin.flush()
    agent.proc.stdin.close()
    assert agent.mux.wait(TIMEOUT) == -1
    assert any("protocol error" in e for e in agent.errors)
    assert agent.proc.wait(TIMEOUT) == 0
    assert gone(pid)


def test_runner_that_stops_reading_output(agents: list[Agent], tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    agent = Agent(tmp_path)
    agents.append(agent)
    script = f"echo $$ > {pid_file}; exec yes"
    agent.mux.send(
        Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh", argv=["sh", "-c", script]))
    )
    deadline = time.monotonic() + TIMEOUT
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pid = int(pid_file.read_text())
    assert agent.proc.stdout is not None
    agent.proc.stdout.close()  # stdin stays open: only the output side is gone
    assert agent.proc.wait(TIMEOUT) == 0
    assert gone(pid)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\x00\x01garbage",
        encode_data_frame_head(0, 1 << 40),  # a terabyte frame: refused, not buffered
        b"\x85\x01\x02\x03\x04\x05",  # CBOR, but not a frame
    ],
    ids=["garbage", "huge-frame", "not-a-map"],
)
def test_hostile_input_before_exec(agents: list[Agent], tmp_path: Path, garbage: bytes) -> None:
    agent = Agent(tmp_path)
    agents.append(agent)
    assert agent.proc.stdin is not None
    agent.proc.stdin.write(garbage)
    agent.proc.stdin.flush()
    agent.mux.start()
    assert agent.mux.wait(TIMEOUT) == -1  # the agent ends the connection
    assert any("protocol error" in e for e in agent.errors)
    assert agent.proc.wait(TIMEOUT) == 0
    assert "Traceback" not in agent.stderr


def test_wrong_frames_during_command_are_dropped(agents: list[Agent], tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agents.append(agent)
    out = agent.sink(1)
    agent.sink(2)
    agent.mux.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/cat", argv=["cat"])))
    agent.mux.send(Frame(type=FrameType.EXIT, code=9))  # may not end the agent's loop
    agent.mux.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/true")))
    agent.mux.send(Frame(type=99))
    agent.mux.send_data(0, b"still fine\n")
    agent.mux.send_eof(0)
    agent.mux.start()
    assert agent.mux.wait(TIMEOUT) == 0
    assert out.data == b"still fine\n"
    assert "Traceback" not in agent.stderr


# --- recording ----------------------------------------------------------------------


def test_recording_against_agent(agents: list[Agent], tmp_path: Path) -> None:
    path = tmp_path / "rec.cbor"
    with Recorder(path) as rec:
        rec.write_session_header()
        msg = ExecMsg(path="/bin/cat", argv=["cat"], env=[])
        seq = rec.write_command_start(msg)
        agent = Agent(tmp_path, "--log-level", "warning")
        agents.append(agent)
        agent.mux.set_recorder(rec, seq)
        agent.sink(1)
        agent.sink(2)
        agent.mux.send(Frame(type=FrameType.EXEC, exec=msg))
        agent.mux.start()
        agent.mux.send_data(0, b"recorded\n")
        agent.mux.send_eof(0)
        code = agent.mux.wait(TIMEOUT)
        assert code == 0
        rec.write_command_end(seq, code)
    frames = [r.frame for r in read_recording(path) if r.type == RecordType.FRAME and r.frame]
    sent = [f.frame.type for f in frames if f.direction == Direction.SEND]
    got = [(f.frame.type, f.frame.stream, f.frame.data) for f in frames if f.direction == 2]
    assert sent == [FrameType.EXEC, FrameType.DATA, FrameType.EOF]
    assert (FrameType.DATA, 1, b"recorded\n") in got
    assert got[-1][0] == FrameType.EXIT


# --- listening ----------------------------------------------------------------------


class Listener:
    def __init__(
        self,
        tmp: Path,
        spec: str,
        log_level: str = "warning",
        *options: str,
        env: dict[str, str] | None = None,
        preexec_fn: Any = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [*AGENT, "--listen", spec, "--log-level", log_level, *options],
            env=env,
            preexec_fn=preexec_fn,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.address = ""
        self.lines: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"listening on (\S+)", line)
                if m:
                    self.address = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        assert ready.wait(TIMEOUT), "agent did not start listening"
        assert self.address, "".join(self.lines)

    def connect(self) -> tuple[socket.socket, Mux]:
        sock = connect(self.address, timeout=TIMEOUT)
        mux = Mux(sock.makefile("rb", buffering=0), sock.makefile("wb", buffering=0), side="runner")
        return sock, mux

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def exec_on(mux: Mux, argv: list[str]) -> Sink:
    out = Sink()
    mux.register_stream(1, out)
    mux.register_stream(2, Sink())
    mux.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path=argv[0], argv=argv)))
    mux.start()
    return out


def test_listen_unix_concurrent_connections(tmp_path: Path) -> None:
    sock_path = tmp_path / "agent.sock"
    listener = Listener(tmp_path, f"unix:{sock_path}")
    socks: list[socket.socket] = []
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        s1, m1 = listener.connect()
        s2, m2 = listener.connect()
        socks += [s1, s2]
        out1 = exec_on(m1, ["/bin/cat"])  # waits for its stdin
        out2 = exec_on(m2, ["/bin/echo", "second"])
        assert m2.wait(TIMEOUT) == 0 and out2.data == b"second\n"
        assert m1.exit_code is None  # the first command is still running
        m1.send_data(0, b"first\n")
        m1.send_eof(0)
        assert m1.wait(TIMEOUT) == 0 and out1.data == b"first\n"
    finally:
        for s in socks:
            s.close()
        assert listener.stop() == 0
    assert not sock_path.exists()


def test_listen_tcp(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "tcp:127.0.0.1:0")
    try:
        assert listener.address.startswith("tcp:127.0.0.1:")
        sock, mux = listener.connect()
        with contextlib.closing(sock):
            out = exec_on(mux, ["/bin/echo", "over tcp"])
            assert mux.wait(TIMEOUT) == 0 and out.data == b"over tcp\n"
            info_sock, info_mux = listener.connect()
            with contextlib.closing(info_sock):
                info_mux.start()
                info = info_mux.path_query(["/bin"], timeout=TIMEOUT)
                assert "sh" in {e.name for e in info.entries or []}
    finally:
        assert listener.stop() == 0


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("unix:/run/a.sock", "unix:/run/a.sock"),
        ("tcp:8022", "tcp:127.0.0.1:8022"),
        ("tcp::8022", "tcp:127.0.0.1:8022"),
        ("tcp:0.0.0.0:1", "tcp:0.0.0.0:1"),
        ("tcp:[::1]:65535", "tcp:[::1]:65535"),
    ],
)
def test_parse_address(spec: str, shown: str) -> None:
    assert str(parse_address(spec)) == shown


@pytest.mark.parametrize("spec", ["unix:", "udp:1", "tcp:", "tcp:x", "tcp:65536", "tcp:-1", "8022"])
def test_parse_address_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match=r"expected unix:/path|bad port"):
        parse_address(spec)


def test_listen_rejects_bad_address(tmp_path: Path) -> None:
    r = subprocess.run(
        [*AGENT, "--listen", "udp:1234"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert r.returncode == 2 and "expected unix:/path" in r.stderr
    assert "Traceback" not in r.stderr


def test_non_loopback_without_a_check_warns(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "tcp:0.0.0.0:0", "warning", "--insecure-allow-any-peer")
    try:
        assert any("anyone who can reach" in line for line in listener.lines)
    finally:
        listener.stop()


def test_listen_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "agent.sock"
    r = subprocess.run(
        [*AGENT, "--listen", f"unix:{path}"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(path) in r.stderr and "No such file or directory" in r.stderr


def test_child_stdin_bounds_a_flood_of_tiny_frames() -> None:
    """One-byte frames cost far more than a byte each: what is held stays near the limit."""
    limit = 1 << 16
    stdin, r = _child_stdin(limit=limit)
    byte = b"z"

    def flood() -> None:
        for _ in range(1 << 20):
            stdin.write(byte)

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    writer.join(1.0)
    with stdin._cond:
        chunks = list(stdin._chunks)
        held = sum(sys.getsizeof(c) for c in chunks) + 8 * len(chunks)
    assert held <= 2 * limit, f"{len(chunks)} chunks hold {held} bytes"
    assert stdin.held <= limit + 65536
    stdin.close()
    writer.join(TIMEOUT)
    os.close(r)


def _started_pid(frames_seen: list[LogEntry]) -> int:
    for entry in frames_seen:
        if entry.msg.startswith("started"):
            return int(entry.msg.rsplit("pid ", 1)[1].rstrip(")"))
    raise AssertionError("no 'started' log")


def test_a_killed_agent_takes_its_command_along(tmp_path: Path) -> None:
    agent = subprocess.Popen([*AGENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert agent.stdin is not None and agent.stdout is not None
    mux = Mux(agent.stdout, agent.stdin, side="runner")
    logs: list[LogEntry] = []
    started = threading.Event()

    def on_log(entry: LogEntry) -> None:
        logs.append(entry)
        if entry.msg.startswith("started"):
            started.set()

    mux.on_log(on_log)
    mux.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path="sleep", argv=["sleep", "300"])))
    mux.start()
    try:
        assert started.wait(TIMEOUT)
        pid = _started_pid(logs)
        agent.kill()  # no chance to end its command itself
        agent.wait(TIMEOUT)
        assert gone(pid), f"the command (pid {pid}) outlived its agent"
    finally:
        mux.close()
        agent.kill()
        agent.wait()


@pytest.mark.parametrize("kind", ["stdio", "socket"])
def test_a_runner_that_half_closes_and_never_reads(tmp_path: Path, kind: str) -> None:
    """The runner ends its input but never reads: its output backs up, and yet the
    agent ends the command (and a stdio agent itself) instead of blocking on a send."""
    exec_frame = Frame(
        type=FrameType.EXEC, exec=ExecMsg(path="sh", argv=["sh", "-c", "echo $$ >&2; exec yes"])
    ).to_cbor()
    if kind == "stdio":
        agent = subprocess.Popen(
            [*AGENT, "--log-level", "info"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert agent.stdin is not None
        agent.stdin.write(exec_frame)
        agent.stdin.close()  # half-close; stdout is never read
        try:
            agent.wait(TIMEOUT)
        finally:
            agent.kill()
            agent.wait()
        return
    listener = Listener(tmp_path, f"unix:{tmp_path}/a.sock", "info")
    try:
        sock = connect(listener.address, timeout=TIMEOUT)
        with sock:
            sock.sendall(exec_frame)
            time.sleep(0.5)  # let the output back up
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + TIMEOUT
            while not any("the runner disconnected" in line for line in listener.lines):
                assert time.monotonic() < deadline, "".join(listener.lines)
                time.sleep(0.05)
        pids = [int(m.group(1)) for line in listener.lines if (m := re.search(r"pid (\d+)", line))]
        assert pids and all(gone(pid) for pid in pids)
    finally:
        listener.stop()


def test_sigterm_right_after_start_leaves_no_socket_file(tmp_path: Path) -> None:
    for attempt in range(3):  # the window is small: a failure shows only now and then
        path = tmp_path / f"a{attempt}.sock"
        proc = subprocess.Popen(
            [*AGENT, "--listen", f"unix:{path}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while not path.exists() and proc.poll() is None:  # as soon as it is bound
                assert time.monotonic() < deadline
            proc.send_signal(signal.SIGTERM)
            proc.wait(TIMEOUT)
        finally:
            proc.kill()
            proc.wait()
        assert not path.exists(), f"attempt {attempt}: the socket file was left behind"
