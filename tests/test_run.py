"""``reclab run`` and the runner API: pass-through, exit codes, signals, the recording.

The CLI is run as a real process (its stdin/stdout/stderr and signals are
what is under test); every process has a timeout so nothing can hang.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_agent import gone

from agentproto import (
    AgentConfig,
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    FrameType,
    Record,
    RecordType,
    read_recording,
)
from agentproto.errors import TruncatedError
from reclab.cli.record import default_output, parse_script
from reclab.runner import (
    DEFAULT_AGENT,
    AgentLostError,
    AgentStartError,
    RecordedSession,
    RemoteCommand,
    agent_command,
    describe_agent,
    run_command,
)

RECLAB = [sys.executable, "-c", "from reclab.cli import main; main()"]
TIMEOUT = 60


def reclab(
    *args: str, input: bytes | None = b"", cwd: Path | None = None, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*RECLAB, *args], input=input, capture_output=True, timeout=TIMEOUT, cwd=cwd, **kw
    )


def assert_one_line_error(result: subprocess.CompletedProcess[bytes], text: str) -> None:
    err = result.stderr.decode()
    assert "Traceback" not in err
    assert text in err
    lines = [line for line in err.splitlines() if line]
    assert lines and all(line.startswith("reclab: ") for line in lines), err


def frames(records: list[Record], seq: int | None = None) -> list[Any]:
    return [r.frame for r in records if r.frame is not None and (seq is None or r.frame.seq == seq)]


def stream_bytes(records: list[Record], stream: int, direction: Direction) -> bytes:
    return b"".join(
        f.frame.data
        for f in frames(records)
        if f.direction == direction and f.frame.type == FrameType.DATA and f.frame.stream == stream
    )


# --- the CLI ------------------------------------------------------------------------------


def test_exit_code_and_byte_exact_output(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "sys.stdout.buffer.write(bytes(range(256)) * 2000)\n"
        "sys.stdout.flush()\n"
        "sys.stderr.buffer.write(b'\\x00err\\xff\\r\\n')\n"
        "sys.exit(7)\n"
    )
    out = tmp_path / "s.cbor"
    result = reclab("run", "-o", str(out), "--", sys.executable, "-c", program)
    assert result.returncode == 7
    assert result.stdout == bytes(range(256)) * 2000
    assert result.stderr == b"\x00err\xff\r\n"  # nothing of reclab's own mixed in
    records = read_recording(out)
    assert stream_bytes(records, 1, Direction.RECV) == result.stdout
    assert stream_bytes(records, 2, Direction.RECV) == result.stderr


def test_stdin_is_piped_through_and_everything_is_recorded(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    out = tmp_path / "s.cbor"
    result = reclab("run", "-o", str(out), "--", "cat", input=data)
    assert result.returncode == 0
    assert result.stdout == data

    records = read_recording(out)
    types = [RecordType(r.type) for r in records]
    assert types[0] == RecordType.SESSION_HEADER
    assert types[1] == RecordType.COMMAND_START
    assert types[-2:] == [RecordType.COMMAND_END, RecordType.SESSION_FOOTER]
    header = records[0].header
    assert header is not None
    assert header.backend_type == "local" and "agentproto.agent" in header.agent_path
    assert header.local_pid > 0 and header.start_time > 0
    start = records[1].cmd_start
    assert start is not None and start.seq == 1
    assert start.exec.argv == ["cat"] and start.exec.path == "cat"
    sent = [f.frame.type for f in frames(records) if f.direction == Direction.SEND]
    received = [f.frame.type for f in frames(records) if f.direction == Direction.RECV]
    assert sent[0] == FrameType.EXEC and FrameType.EOF in sent
    assert received[-1] == FrameType.EXIT
    assert stream_bytes(records, 0, Direction.SEND) == data
    assert stream_bytes(records, 1, Direction.RECV) == data
    assert all(f.seq == 1 for f in frames(records))
    timestamps = [f.timestamp for f in frames(records)]
    assert timestamps == sorted(timestamps)
    end = records[-2].cmd_end
    assert end is not None and (end.seq, end.exit_code) == (1, 0)
    footer = records[-1].footer
    assert footer is not None and footer.command_count == 1


def test_default_recording_name(tmp_path: Path) -> None:
    result = reclab("run", "--", "true", cwd=tmp_path)
    assert result.returncode == 0
    made = list(tmp_path.glob("reclab-*.cbor"))
    assert len(made) == 1
    assert f"reclab: recording to {made[0]}" in result.stderr.decode()
    assert read_recording(made[0])[-1].footer is not None


def test_default_output_never_overwrites(tmp_path: Path) -> None:
    first = default_output(tmp_path)
    first.write_bytes(b"")
    second = default_output(tmp_path)
    assert second != first and second.name.startswith(first.stem)


def test_program_not_found(tmp_path: Path) -> None:
    result = reclab("run", "-o", str(tmp_path / "s.cbor"), "--", "no-such-program-here")
    assert result.returncode == 127
    assert_one_line_error(result, "reclab: agent error: exec no-such-program-here")


@pytest.mark.parametrize(
    ("agent", "code", "message"),
    [
        ("no-such-agent-binary", 255, "cannot start agent 'no-such-agent-binary'"),
        ("false", 255, "the agent closed the connection (agent exit status 1)"),
        ("sh -c 'echo broken agent >&2; exit 3'", 255, "broken agent"),
        ("", 2, "--agent '': the agent command is empty"),
        ("'unbalanced", 2, '--agent "\'unbalanced": no closing quotation'),
    ],
)
def test_bad_agent_is_a_one_line_error(tmp_path: Path, agent: str, code: int, message: str) -> None:
    result = reclab("run", "-o", str(tmp_path / "s.cbor"), "--agent", agent, "--", "true")
    assert result.returncode == code
    assert_one_line_error(result, message)


def test_agent_speaking_garbage(tmp_path: Path) -> None:
    result = reclab(
        "run", "-o", str(tmp_path / "s.cbor"), "--agent", "printf 'not cbor at all'", "--", "true"
    )
    assert result.returncode == 255
    assert_one_line_error(result, "no exit code for the command")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to run"),
        (["--parallel", "--", "true"], "--parallel needs --script"),
        (["--script", "/no/such/script"], "--script /no/such/script: No such file or directory"),
        (["--script", "/", "--", "true"], "not both"),
        (["--fd", "2", "--", "true"], "--fd 2: extra descriptors are numbered 3 to 1023"),
        (["--fd", "977", "--", "true"], "--fd 977: descriptor 977 is not open here"),
        (["--env", "NOEQUALS", "--", "true"], "expected NAME=VALUE"),
        (["--agent-log-level", "loud", "--", "true"], "--agent-log-level loud: expected one of"),
        (["--token-file", "t", "--", "true"], "--token-file t: a token is for an agent reached"),
        (["--bogus", "--", "true"], "No such option: --bogus"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = reclab("run", "-o", str(tmp_path / "s.cbor"), *args)
    assert result.returncode == 2
    assert_one_line_error(result, message)


def test_output_errors(tmp_path: Path) -> None:
    result = reclab("run", "-o", str(tmp_path), "--", "true")
    assert result.returncode == 2
    assert_one_line_error(result, "is a directory")
    result = reclab("run", "-o", str(tmp_path / "no/dir/s.cbor"), "--", "true")
    assert result.returncode == 2
    assert_one_line_error(result, "cannot write the recording")


def test_options_reach_the_command(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    script = 'echo "$FOO|${HOME-unset}|${DROPME-gone}"; pwd'
    result = reclab(
        "run",
        "-o",
        str(out),
        "--cwd",
        str(tmp_path),
        "--env",
        "FOO=bar",
        "--env",
        "DROPME=x",
        "--env-remove",
        "DROP*",
        "--",
        "sh",
        "-c",
        script,
        env={**os.environ, "HOME": "/home/test"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == ["bar|unset|gone", str(tmp_path)]
    result = reclab(
        "run", "-o", str(out), "--force", "--env-keep", "HO*", "--", "sh", "-c", script,
        env={**os.environ, "HOME": "/home/test"},
    )  # fmt: skip
    assert result.stdout.decode().splitlines()[0] == "|/home/test|gone"
    records = read_recording(out)
    config = [f.frame.config for f in frames(records) if f.frame.type == FrameType.CONFIG]
    assert config == [AgentConfig(env_keep=["HO*"], env_remove=None)]


def test_extra_fds(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    sink3, sink4 = tmp_path / "fd3.txt", tmp_path / "fd4.txt"
    # a shell opens fds 3 and 4 for reclab, as a user would: reclab ... 3>file 4>file
    result = subprocess.run(
        [
            "sh",
            "-c",
            'exec "$@" 3>"$SINK3" 4>"$SINK4"',
            "sh",
            *RECLAB,
            "run",
            "-o",
            str(out),
            "--fd",
            "3",
            "--fd",
            "4",
            "--",
            "sh",
            "-c",
            "echo three >&3; echo four >&4; echo out",
        ],
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, "SINK3": str(sink3), "SINK4": str(sink4)},
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, sink3.read_bytes(), sink4.read_bytes()) == (
        b"out\n",
        b"three\n",
        b"four\n",
    )
    records = read_recording(out)
    assert records[1].cmd_start is not None and records[1].cmd_start.exec.extra_fds == [3, 4]
    assert stream_bytes(records, 3, Direction.RECV) == b"three\n"


def test_script_runs_commands_in_one_session(tmp_path: Path) -> None:
    script = tmp_path / "cmds.txt"
    script.write_text(
        "# comment\n"
        "echo first\n"
        "\n"
        "sh -c 'echo \"second $0\"; exit 3' arg\n"
        "sh -c 'exit 5'\n"
        "cat  # gets no stdin: ends at once\n"
    )
    out = tmp_path / "s.cbor"
    result = reclab("run", "-o", str(out), "--script", str(script), input=b"not for cat")
    assert result.returncode == 3  # the first failure, in script order
    assert result.stdout == b"first\nsecond arg\n"
    records = read_recording(out)
    starts = [r.cmd_start for r in records if r.cmd_start is not None]
    ends = [r.cmd_end for r in records if r.cmd_end is not None]
    assert [s.seq for s in starts] == [1, 2, 3, 4]
    assert [(e.seq, e.exit_code) for e in ends] == [(1, 0), (2, 3), (3, 5), (4, 0)]
    assert records[-1].footer is not None and records[-1].footer.command_count == 4


def overlapping_script(tmp_path: Path) -> Path:
    """Two commands that each wait for the file the other writes: done only if they overlap."""
    script = tmp_path / "cmds.txt"
    a, b = tmp_path / "a", tmp_path / "b"
    wait_for = "i=0; while [ ! -e {0} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done"
    script.write_text(
        f"sh -c 'touch {a}; {wait_for.format(b)}; [ -e {b} ] && echo A'\n"
        f"sh -c 'touch {b}; {wait_for.format(a)}; [ -e {a} ] && echo B'\n"
    )
    return script


def test_parallel_script_interleaves_commands(tmp_path: Path) -> None:
    script = overlapping_script(tmp_path)
    out = tmp_path / "s.cbor"
    result = reclab("run", "-o", str(out), "--parallel", "--script", str(script))
    assert result.returncode == 0
    assert sorted(result.stdout.split()) == [b"A", b"B"]
    kinds = [(RecordType(r.type), getattr(r.payload, "seq", None)) for r in read_recording(out)]
    order = [k for k in kinds if k[0] in (RecordType.COMMAND_START, RecordType.COMMAND_END)]
    assert order[:2] == [(RecordType.COMMAND_START, 1), (RecordType.COMMAND_START, 2)]


def _wait_for_start(out: Path, deadline: float = 30.0) -> None:
    """Wait until the agent reports the command started (its 'started' log frame)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            records = read_recording(out)
        except TruncatedError as exc:
            records = exc.records  # type: ignore[assignment]
        except (OSError, ValueError):
            records = []
        for f in frames(records):
            if f.frame.type == FrameType.LOG and f.frame.log.msg.startswith("started"):
                return
        time.sleep(0.05)
    raise AssertionError("the command never started")


def _wait_for_stdin(out: Path, at_least: int, *, stuck: bool = False) -> None:
    """Wait until the recording (mostly stdin frames) holds ``at_least`` bytes; with
    ``stuck``, also until it stops growing for a second: the agent no longer reads."""
    deadline = time.monotonic() + TIMEOUT
    sizes = [-1, -2]
    while time.monotonic() < deadline:
        size = out.stat().st_size
        if size >= at_least and (not stuck or sizes[-1] == sizes[-2] == size):
            return
        sizes.append(size)
        time.sleep(0.5 if stuck else 0.05)
    raise AssertionError(f"stdin did not {'back up' if stuck else 'arrive'}: {sizes[-1]} bytes")


STUCK = 4 << 20  # at least the agent's stdin buffer: it holds 4 MiB, then stops reading


def _signal_run(
    tmp_path: Path,
    command: list[str],
    signals: list[int],
    pause: float = 0.2,
    stdin: Any = subprocess.DEVNULL,
    connect: str | None = None,
    stdin_sent: int = 0,
    stuck: bool = False,
) -> tuple[int, bytes, bytes, Path]:
    """Run ``reclab run -- command``, signal it once started: (code, stdout, stderr, recording).

    ``stdin_sent``/``stuck``: first wait for that much stdin (see :func:`_wait_for_stdin`).
    """
    out = tmp_path / "s.cbor"
    via = ["--connect", connect] if connect else []
    proc = subprocess.Popen(
        [*RECLAB, "run", *via, "-o", str(out), "--", *command],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_start(out)
        if stdin_sent:
            _wait_for_stdin(out, stdin_sent, stuck=stuck)
        for i, signo in enumerate(signals):
            if i:
                time.sleep(pause)
            proc.send_signal(signo)
        stdout, err = proc.communicate(timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, stdout, err, out


@pytest.mark.parametrize(
    ("signo", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGQUIT, 131)],
)
def test_signals_are_forwarded(tmp_path: Path, signo: int, code: int) -> None:
    returncode, _, err, out = _signal_run(tmp_path, ["sleep", "30"], [signo])
    assert returncode == code, err
    records = read_recording(out)
    sent = [f.frame for f in frames(records) if f.direction == Direction.SEND]
    assert [f.signal for f in sent if f.type == FrameType.SIGNAL] == [signo]
    assert records[-2].cmd_end is not None and records[-2].cmd_end.exit_code == code


def test_user_signals_reach_the_command_and_never_abandon_it(tmp_path: Path) -> None:
    """USR1/USR2 are messages: each one arrives, and three of them do not give up."""
    script = (
        "trap 'echo usr1' USR1; trap 'echo usr2; exit 7' USR2; "
        "i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done"
    )
    returncode, stdout, err, out = _signal_run(
        tmp_path, ["sh", "-c", script], [signal.SIGUSR1] * 3 + [signal.SIGUSR2], pause=0.3
    )
    assert returncode == 7, err
    assert stdout.split() == [b"usr1", b"usr1", b"usr1", b"usr2"]
    assert b"abandoning" not in err
    sent = [f.frame.signal for f in frames(read_recording(out)) if f.frame.type == FrameType.SIGNAL]
    assert sent == [signal.SIGUSR1] * 3 + [signal.SIGUSR2]


def test_third_signal_abandons_a_stubborn_command(tmp_path: Path) -> None:
    returncode, _, err, out = _signal_run(
        tmp_path, ["sh", "-c", "trap '' INT TERM; sleep 30"], [signal.SIGINT] * 3
    )
    assert returncode == 130
    assert b"abandoning the command" in err and b"Traceback" not in err
    records = read_recording(out)
    signals = [f.frame.signal for f in frames(records) if f.frame.type == FrameType.SIGNAL]
    assert signals == [signal.SIGINT, signal.SIGINT]
    assert records[-2].cmd_end is not None and records[-2].cmd_end.exit_code == -1
    assert records[-1].footer is not None


def test_signal_gets_past_stdin_the_command_does_not_read(tmp_path: Path) -> None:
    big = tmp_path / "input"
    big.write_bytes(b"y" * (3 << 20))  # more than the pipes hold: the agent buffers it
    with open(big, "rb") as stdin:
        returncode, _, err, _ = _signal_run(
            tmp_path, ["sleep", "30"], [signal.SIGINT], stdin=stdin, stdin_sent=3 << 20
        )
    assert returncode == 130, err


def _command_pid(recording: Path) -> int:
    for f in frames(read_recording(recording)):
        if f.frame.type == FrameType.LOG and f.frame.log.msg.startswith("started"):
            return int(f.frame.log.msg.rsplit("pid ", 1)[1].rstrip(")"))
    raise AssertionError("no 'started' log")


def stuck_stdin_run(tmp_path: Path, connect: str | None = None) -> tuple[int, bytes, bytes, Path]:
    """``yes | reclab run -- sleep 300``, three SIGINTs once stdin has backed up."""
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        return _signal_run(
            tmp_path,
            ["sleep", "300"],
            [signal.SIGINT] * 3,
            stdin=yes.stdout,
            connect=connect,
            stdin_sent=STUCK,
            stuck=True,
        )
    finally:
        yes.kill()
        yes.wait()


def test_third_signal_abandons_even_when_stdin_is_stuck(tmp_path: Path) -> None:
    """Endless input to a command that never reads it: the connection is stuck, yet
    the third Ctrl-C still ends reclab, the agent and the command."""
    returncode, _, err, out = stuck_stdin_run(tmp_path)
    assert returncode == 130, err
    assert b"abandoning the command" in err and b"Traceback" not in err
    pid = _command_pid(out)
    assert gone(pid), f"the command (pid {pid}) is still running"


def test_a_signal_stuck_behind_stdin_is_explained(tmp_path: Path) -> None:
    """The first Ctrl-C cannot get through: reclab says why and how to give up."""
    out = tmp_path / "s.cbor"
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    proc = subprocess.Popen(
        [*RECLAB, "run", "-o", str(out), "--", "sleep", "300"],
        stdin=yes.stdout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    lines: list[bytes] = []
    noticed = threading.Event()

    def collect() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if b"not delivered yet" in line:
                noticed.set()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        _wait_for_start(out)
        _wait_for_stdin(out, STUCK, stuck=True)
        proc.send_signal(signal.SIGINT)
        assert noticed.wait(TIMEOUT), b"".join(lines)
        for _ in range(2):
            time.sleep(0.2)  # the same signal twice before its handler runs counts once
            proc.send_signal(signal.SIGINT)
        proc.wait(TIMEOUT)
        collector.join(TIMEOUT)
    finally:
        for p in (proc, yes):
            p.kill()
            p.wait()
    err = b"".join(lines)
    assert proc.returncode == 130, err
    assert b"send it 3 times to give up" in err and b"abandoning the command" in err
    assert b"Traceback" not in err


def test_closed_stdout_sends_sigpipe(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    pipeline = f"{' '.join(RECLAB[:2])} {RECLAB[2]!r} run -o {out} -- yes | head -n 2"
    result = subprocess.run(
        ["bash", "-c", pipeline + "; echo ${PIPESTATUS[0]}"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert result.stdout.split() == [b"y", b"y", b"141"]
    sent = [f.frame.signal for f in frames(read_recording(out)) if f.frame.type == FrameType.SIGNAL]
    assert sent == [signal.SIGPIPE]


def test_agent_logs_are_recorded_and_shown_with_verbose(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    result = reclab("run", "-o", str(out), "-v", "--agent-log-level", "debug", "--", "true")
    assert result.returncode == 0
    assert "reclab: agent log: INFO started true" in result.stderr.decode()
    logs = [f.frame.log for f in frames(read_recording(out)) if f.frame.type == FrameType.LOG]
    assert any(log.msg.startswith("command exited") for log in logs)


# --- the Python API --------------------------------------------------------------------------


def test_agent_command_and_backend() -> None:
    assert agent_command() == list(DEFAULT_AGENT)
    assert agent_command(log_level="debug")[-2:] == ["--log-level", "debug"]
    assert agent_command("ssh -p 2222 'my host' agent --x") == [
        "ssh",
        "-p",
        "2222",
        "my host",
        "agent",
        "--x",
    ]
    with pytest.raises(ValueError):
        agent_command("  ")
    b = describe_agent(["ssh", "-p", "22", "-o", "BatchMode=yes", "-T", "build1", "mproxy-agent"])
    assert (b.type, b.addr, b.agent_path) == ("ssh", "build1", "mproxy-agent")
    b = describe_agent(["/usr/bin/ssh", "user@h", "/opt/agent", "--root", "/srv"])
    assert (b.type, b.addr, b.agent_path) == ("ssh", "user@h", "/opt/agent --root /srv")
    b = describe_agent(["python3", "-m", "agentproto.agent"])
    assert (b.type, b.addr, b.agent_path) == ("local", "", "python3 -m agentproto.agent")


def test_parse_script() -> None:
    text = "a b 'c d'\n  # note\n\nx # trailing comment\n"
    assert parse_script(text) == [["a", "b", "c d"], ["x"]]
    with pytest.raises(ValueError, match=r"s\.txt:2"):
        parse_script("ok\nbad 'quote\n", source="s.txt")


def test_run_command_with_bytes_and_buffers() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    code = run_command(
        ExecMsg(path="sh", argv=["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 9"]),
        stdin=b"hello",
        stdout=out,
        stderr=err,
        forward=False,
        timeout=TIMEOUT,
    )
    assert (code, out.getvalue(), err.getvalue()) == (9, b"HELLO", b"oops\n")


def test_run_command_errors() -> None:
    with pytest.raises(AgentStartError):
        run_command(ExecMsg(path="true"), agent="/no/such/agent", forward=False)
    with pytest.raises(AgentLostError) as info:
        run_command(
            ExecMsg(path="true"),
            agent=["sh", "-c", "echo ssh: connect refused >&2; exit 255"],
            stdin=subprocess.DEVNULL,
            forward=False,
            timeout=TIMEOUT,
        )
    assert info.value.agent_status == 255
    assert "connect refused" in info.value.agent_stderr


def test_file_ops_and_path_query_during_a_command(tmp_path: Path) -> None:
    out = tmp_path / "s.cbor"
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    with RecordedSession(out) as session:
        command = session.command(
            ExecMsg(path="cat", argv=["cat"]), stdin=subprocess.PIPE, stdout=io.BytesIO()
        )
        assert isinstance(command, RemoteCommand)
        command.start()
        command.write_stdin(b"still running")
        resp = command.file_op(FileOpReq(op=FileOp.STAT, path=str(tool)))
        assert resp.errno == 0 and resp.stat is not None and resp.stat.name == "tool"
        resp = command.file_op(FileOpReq(op=FileOp.STAT, path=str(tmp_path / "missing")))
        assert resp.errno == errno.ENOENT
        info = command.path_query([str(tmp_path / "bin")])
        assert [e.name for e in info.entries or []] == ["tool"]
        command.close_stdin()
        assert command.wait(TIMEOUT) == 0
        assert command.outputs[1].getvalue() == b"still running"  # type: ignore[union-attr]
    records = read_recording(out)
    sent = [f.frame.type for f in frames(records) if f.direction == Direction.SEND]
    received = [f.frame.type for f in frames(records) if f.direction == Direction.RECV]
    assert sent.count(FrameType.FILE_OP) == 2 and FrameType.PATH_QUERY in sent
    assert received.count(FrameType.FILE_RESP) == 2 and FrameType.PATH_INFO in received


# --- the sample recordings ------------------------------------------------------------------

SAMPLES = Path(__file__).resolve().parent.parent / "sample-recordings"


def _sample(name: str) -> list[Record]:
    return read_recording(SAMPLES / name)


def test_samples_are_documented_small_and_readable() -> None:
    readme = (SAMPLES / "README.md").read_text()
    names = sorted(p.name for p in SAMPLES.glob("*.cbor"))
    assert len(names) >= 10
    for name in names:
        assert f"`{name}`" in readme, name
        assert (SAMPLES / name).stat().st_size < 1_000_000
        if name == "cut-off.cbor":
            with pytest.raises(TruncatedError) as info:
                _sample(name)
            assert info.value.records and not any(
                r.type == RecordType.SESSION_FOOTER for r in info.value.records
            )
        else:
            records = _sample(name)
            assert records[0].header is not None and records[-1].footer is not None


def test_samples_show_what_the_readme_says() -> None:
    def frame_types(name: str) -> list[Any]:
        return [f.frame.type for f in frames(_sample(name))]

    ops = {f.frame.file_op.op for f in frames(_sample("fileops.cbor")) if f.frame.file_op}
    assert ops >= set(FileOp)
    errnos = {f.frame.file_resp.errno for f in frames(_sample("fileops.cbor")) if f.frame.file_resp}
    assert errnos >= {0, errno.ENOENT, errno.EBADF, errno.EEXIST, errno.ENOTDIR, errno.EISDIR}
    assert errnos >= {errno.ENOTEMPTY, errno.EINVAL, errno.EACCES, errno.ENOSYS}
    assert frame_types("path-query.cbor").count(FrameType.PATH_INFO) == 2
    assert FrameType.SIGNAL in frame_types("signal.cbor")
    streams = {f.frame.stream for f in frames(_sample("extra-fds.cbor"))}
    assert {3, 4} <= streams
    kinds = [RecordType(r.type) for r in _sample("concurrent.cbor")]
    assert kinds.index(RecordType.COMMAND_END) > kinds.index(RecordType.COMMAND_START) + 2
    levels = {f.frame.log.level for f in frames(_sample("agent-logs.cbor")) if f.frame.log}
    assert levels >= {0, 4, 8}
    ends = [r.cmd_end.exit_code for r in _sample("failing-build.cbor") if r.cmd_end]
    assert ends == [2]
