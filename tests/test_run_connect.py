"""``reclab run --connect`` and ``AgentConnection(connect=...)``: a listening agent over sockets."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_agent import Listener, gone
from test_run import (
    RECLAB,
    TIMEOUT,
    _command_pid,
    _signal_run,
    assert_one_line_error,
    overlapping_script,
    reclab,
    stuck_stdin_run,
)

from agentproto import FileOp, FileOpReq, RecordType, read_recording
from reclab.runner import AgentConnection, AgentStartError, RecordedSession


@pytest.fixture(params=["unix", "tcp"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    spec = f"unix:{tmp_path}/agent.sock" if request.param == "unix" else "tcp:127.0.0.1:0"
    agent = Listener(tmp_path, spec)
    yield agent
    agent.stop()


def test_run_through_a_listening_agent(listener: Listener, tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    result = reclab(
        "run",
        "--connect",
        listener.address,
        "-o",
        str(out),
        "--",
        "sh",
        "-c",
        "cat; echo err >&2; exit 3",
        input=b"through the socket\n",
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == b"through the socket\n" and result.stderr == b"err\n"
    records = read_recording(out)
    header = records[0].header
    assert header is not None
    kind, _, addr = listener.address.partition(":")
    assert (header.backend_type, header.backend_addr, header.agent_path) == (kind, addr, "")
    ends = [r.cmd_end for r in records if r.type == RecordType.COMMAND_END]
    assert [e.exit_code for e in ends if e is not None] == [3]


def test_parallel_commands_share_one_listening_agent(listener: Listener, tmp_path: Path) -> None:
    script = overlapping_script(tmp_path)
    result = reclab(
        "run", "--connect", listener.address, "-o", str(tmp_path / "s.cbor"),
        "--parallel", "--script", str(script),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == [b"A", b"B"]


def _run_connected(tmp_path: Path, address: str, command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*RECLAB, "run", "--connect", address, "-o", str(tmp_path / "s.cbor"), "--", *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_signal_over_a_socket(tmp_path: Path) -> None:
    listener = Listener(tmp_path, f"unix:{tmp_path}/agent.sock", log_level="info")
    try:
        returncode, _, err, _ = _signal_run(
            tmp_path, ["sleep", "300"], [signal.SIGINT], connect=listener.address
        )
    finally:
        listener.stop()
    assert returncode == 130, err


def test_third_signal_shuts_a_stuck_socket_down(tmp_path: Path) -> None:
    """Endless stdin, a command that never reads it: shutting the socket down ends it."""
    listener = Listener(tmp_path, f"unix:{tmp_path}/agent.sock", log_level="info")
    try:
        returncode, _, err, out = stuck_stdin_run(tmp_path, connect=listener.address)
        pid = _command_pid(out)
        assert gone(pid), f"the command (pid {pid}) is still running"
        assert listener.proc.poll() is None  # the listening agent serves on
    finally:
        listener.stop()
    assert returncode == 130, err
    assert b"abandoning the command" in err and b"Traceback" not in err


def test_connection_refused_is_one_line(tmp_path: Path) -> None:
    result = reclab("run", "--connect", f"unix:{tmp_path}/none.sock", "--", "true", cwd=tmp_path)
    assert result.returncode == 255
    assert_one_line_error(result, f"cannot connect to the agent at unix:{tmp_path}/none.sock")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connect", "udp:1"], "--connect udp:1: expected unix:/path or tcp:[HOST:]PORT"),
        (["--connect", "tcp:99999"], "bad port"),
        (["--connect", "tcp:1", "--agent", "cat"], "--agent and --connect: give one"),
    ],
)
def test_bad_connect_options(args: list[str], message: str, tmp_path: Path) -> None:
    result = reclab("run", *args, "--", "true", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result, message)


def test_agent_connection_rpcs_over_a_socket(listener: Listener, tmp_path: Path) -> None:
    conn = AgentConnection(connect=listener.address)
    try:
        resp = conn.file_op(FileOpReq(op=FileOp.STAT, path=str(tmp_path)), timeout=TIMEOUT)
        assert resp.errno == 0 and resp.stat is not None and resp.stat.is_dir
        info = conn.path_query(["/bin"], timeout=TIMEOUT)
        assert any(e.name == "sh" for e in info.entries)
    finally:
        assert conn.close() is None  # no agent process to reap


def test_session_api_with_connect(listener: Listener, tmp_path: Path) -> None:
    from agentproto import ExecMsg

    out = tmp_path / "s.cbor"
    with RecordedSession(out, connect=listener.address) as session:
        code = session.run(
            ExecMsg(path="sh", argv=["sh", "-c", "exit 4"]), stdout=subprocess.DEVNULL
        )
    assert code == 4
    with pytest.raises(ValueError, match="exclusive"):
        RecordedSession(tmp_path / "x.cbor", agent="cat", connect=listener.address)
    with pytest.raises(AgentStartError, match="cannot connect"):
        AgentConnection(connect=f"unix:{tmp_path}/none.sock")
