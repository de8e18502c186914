"""``reclab run`` as a user meets it: existing outputs, failures that leave nothing, scripts."""

from __future__ import annotations

import resource
import signal
import subprocess
from pathlib import Path

import pytest
from test_agent import Listener
from test_run import RECLAB, TIMEOUT, _wait_for_start, assert_one_line_error, reclab

from agentproto import Direction, ExecMsg, FrameType, RecordType, TruncatedError, read_recording
from reclab.runner import DEFAULT_AGENT, AgentLostError, run_command


def test_existing_output_is_refused_without_force(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    out.write_bytes(b"precious")
    result = reclab("run", "-o", str(out), "--", "echo", "hi")
    assert result.returncode == 2 and result.stdout == b""
    assert_one_line_error(result, "already exists (give --force to overwrite it)")
    assert out.read_bytes() == b"precious"
    forced = reclab("run", "-o", str(out), "--force", "--", "echo", "hi")
    assert (forced.returncode, forced.stdout) == (0, b"hi\n")
    assert read_recording(out)[-1].footer is not None


def test_an_agent_that_cannot_start_leaves_no_recording(tmp_path: Path) -> None:
    result = reclab("run", "--agent", "/no/such/agent", "--", "true", cwd=tmp_path)
    assert result.returncode == 255
    assert_one_line_error(result, "cannot start agent")
    assert list(tmp_path.glob("reclab-*.cbor")) == []


def test_an_unreachable_agent_leaves_no_recording(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    result = reclab("run", "--connect", f"unix:{tmp_path}/none.sock", "-o", str(out), "--", "true")
    assert result.returncode == 255
    assert_one_line_error(result, "cannot connect to the agent")
    assert not out.exists()


def test_a_refused_connection_leaves_no_recording(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123456789abcdef")
    token.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("fedcba9876543210fedcba9876543210")
    wrong.chmod(0o600)
    agent = Listener(tmp_path, "tcp:127.0.0.1:0", "warning", "--token-file", str(token))
    try:
        result = reclab("run", "--connect", agent.address, "--token-file", str(wrong), "--",
                        "true", cwd=tmp_path)  # fmt: skip
    finally:
        agent.stop()
    assert result.returncode == 255
    assert_one_line_error(result, "agent refused the connection: wrong token")
    assert list(tmp_path.glob("reclab-*.cbor")) == []


def test_verbose_shows_each_agent_log_line_once(tmp_path: Path) -> None:
    result = reclab("run", "-v", "--agent-log-level", "debug", "-o", str(tmp_path / "s.cbor"),
                    "--", "true")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    started = [line for line in lines if "started true" in line]
    assert len(started) == 1, lines
    assert started[0].startswith("reclab: agent log: INFO")


def test_a_stop_signal_stops_the_script(tmp_path: Path) -> None:
    script = tmp_path / "cmds.txt"
    script.write_text("sleep 30\necho second\n")
    out = tmp_path / "s.cbor"
    proc = subprocess.Popen(
        [*RECLAB, "run", "-o", str(out), "--script", str(script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_start(out)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, stderr
    assert stdout == b""  # the second command never ran
    starts = [r for r in read_recording(out) if r.type == RecordType.COMMAND_START]
    assert len(starts) == 1


def test_an_agent_that_prints_junk_fails_at_once_with_a_small_recording(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    result = reclab("run", "--agent", "yes", "-o", str(out), "--", "true")
    assert result.returncode == 255
    assert_one_line_error(result, "is it an agent?")
    assert out.stat().st_size < 64 * 1024


def test_a_silent_agent_is_given_up() -> None:
    with pytest.raises(AgentLostError, match=r"sent nothing .* is it an agent"):
        run_command(
            ExecMsg(path="true"),
            agent=["sleep", "300"],
            stdin=subprocess.DEVNULL,
            silence_timeout=0.5,
            forward=False,
            timeout=TIMEOUT,
        )


def test_a_quiet_agent_is_not_mistaken_for_a_silent_one() -> None:
    """At log level warning our agent says nothing while `sleep` runs: the probe answers."""
    code = run_command(
        ExecMsg(path="sleep", argv=["sleep", "8"]),
        agent=[*DEFAULT_AGENT, "--log-level", "warning"],
        stdin=subprocess.DEVNULL,
        silence_timeout=3,  # the probe goes out after 3 s and is answered (a Python start-up)
        forward=False,
        timeout=TIMEOUT,
    )
    assert code == 0


def test_a_full_disk_stops_the_recording_not_the_command(tmp_path: Path) -> None:
    """A file-size limit stands in for a full disk (Python ignores SIGXFSZ: writes fail)."""
    out = tmp_path / "s.cbor"
    limit = 200_000

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [*RECLAB, "run", "-o", str(out), "--", "sh", "-c", "head -c 1000000 /dev/zero; exit 3"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        preexec_fn=small_files,
    )
    assert result.returncode == 3, result.stderr
    assert len(result.stdout) == 1_000_000  # the command's output was not held back
    err = result.stderr.decode()
    assert "Traceback" not in err and err.count("the recording stopped") == 1, err
    assert out.stat().st_size <= limit
    with pytest.raises(TruncatedError) as cut:
        read_recording(out)
    records = cut.value.records  # type: ignore[attr-defined]
    assert records[0].header is not None
    assert any(r.type == RecordType.FRAME for r in records)


def test_output_to_one_pipe_keeps_the_recorded_order(tmp_path: Path) -> None:
    """stdout and stderr into the same pipe (2>&1): the bytes read as the recording has them."""
    out = tmp_path / "s.cbor"
    script = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done"
    result = subprocess.run(
        [*RECLAB, "run", "-o", str(out), "--", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0
    recorded = b"".join(
        r.frame.frame.data or b""
        for r in read_recording(out)
        if r.frame is not None
        and r.frame.direction == Direction.RECV
        and r.frame.frame.type == FrameType.DATA
        and r.frame.frame.stream in (1, 2)
    )
    assert recorded.count(b"\n") == 400
    assert result.stdout == recorded
