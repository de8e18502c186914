"""``reclab replay`` and :mod:`reclab.replay`: a real session recorded, replayed, compared.

The session is recorded once per module through this package's agent (stdout,
stderr, stdin, an exit code read from a file, a signal, file ops and a PATH
query in a temporary directory, two concurrent commands); each test resets
that directory first, then changes what it needs.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentproto import Direction, ExecMsg, FileOp, FileOpReq, Frame, FrameType, Recorder
from reclab.model import open_recording
from reclab.replay import build_plan, mask_env, plan_command, replay
from reclab.replay.compare import CompareOptions
from reclab.runner import RecordedSession

RECLAB = [sys.executable, "-c", "from reclab.cli import main; main()"]
AGENT = [sys.executable, "-m", "agentproto.agent"]
TIMEOUT = 120


def reclab(*args: str, timeout: float = TIMEOUT, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the reclab CLI in a subprocess (as a user would)."""
    return subprocess.run(
        [*RECLAB, *args], capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, **kw,
    )  # fmt: skip


def assert_clean_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    """Exit 2 with a one-line reason on stderr, never a traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert text in result.stderr, result.stderr


def gone(pid: int, timeout: float = 30) -> bool:
    """True once ``pid`` no longer exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


# --- the recorded session ------------------------------------------------------------------


class World:
    """The temporary directory the recorded commands read and write."""

    def __init__(self, root: Path):
        self.root = root
        (root / "bin").mkdir(parents=True)
        tool = root / "bin" / "tool"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
        self.reset()

    def reset(self) -> None:
        (self.root / "data.txt").write_text("hello from the data file\nsecond line\n")
        (self.root / "code.txt").write_text("3\n")
        (self.root / "other.txt").write_text("stat me\n")
        with self.root.joinpath("scratch").open("wb"):
            pass


STEPS = {
    1: "output: stdout and stderr",
    2: "stdin through tr",
    3: "exit code from a file",
    4: "a signal",
    5: "file ops and a PATH query",
    6: "concurrent A",
    7: "concurrent B",
}


def record_session(world: World, out: Path) -> None:
    root = str(world.root)
    with RecordedSession(out) as session:
        session.run(
            ExecMsg(path="sh", argv=["sh", "-c", "cat data.txt; echo to-stderr >&2"], cwd=root),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        session.run(
            ExecMsg(path="tr", argv=["tr", "a-z", "A-Z"]),
            stdin=b"replay me\n", stdout=subprocess.DEVNULL,
        )  # fmt: skip
        session.run(
            ExecMsg(path="sh", argv=["sh", "-c", "exit $(cat code.txt)"], cwd=root),
            stdin=subprocess.DEVNULL,
        )
        sleeper = session.command(
            ExecMsg(path="sleep", argv=["sleep", "60"]), stdin=subprocess.DEVNULL
        )
        sleeper.start()
        time.sleep(0.3)
        sleeper.signal(signal.SIGTERM)
        assert sleeper.wait(TIMEOUT) == 128 + signal.SIGTERM
        cat = session.command(
            ExecMsg(path="cat", argv=["cat"]), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        cat.start()
        h = cat.file_op(FileOpReq(op=FileOp.OPEN, path=f"{root}/data.txt")).handle
        assert cat.file_op(FileOpReq(op=FileOp.READ_AT, handle=h, size=100)).data
        cat.file_op(FileOpReq(op=FileOp.CLOSE, handle=h))
        assert cat.file_op(FileOpReq(op=FileOp.STAT, path=f"{root}/other.txt")).errno == 0
        w = cat.file_op(FileOpReq(op=FileOp.CREATE, path=f"{root}/scratch")).handle
        assert cat.file_op(FileOpReq(op=FileOp.WRITE_AT, handle=w, data=b"written")).n == 7
        cat.file_op(FileOpReq(op=FileOp.CLOSE, handle=w))
        assert cat.file_op(FileOpReq(op=FileOp.READ_DIR, path=f"{root}/bin")).entries
        assert cat.path_query([f"{root}/bin"]).entries
        cat.close_stdin()
        assert cat.wait(TIMEOUT) == 0
        codes = session.run_all(
            [
                ExecMsg(path="sh", argv=["sh", "-c", f"sleep 0.5; echo {name}"])
                for name in ("A", "B")
            ],
            parallel=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        assert codes == [0, 0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, Path]:
    base = tmp_path_factory.mktemp("replay")
    world = World(base / "world")
    out = base / "session.cbor"
    record_session(world, out)
    return world, out


@pytest.fixture
def session(recorded: tuple[World, Path]) -> Iterator[tuple[World, Path]]:
    world, out = recorded
    world.reset()
    yield world, out
    world.reset()


def spans(path: Path) -> dict[int, tuple[int, int]]:
    with open_recording(path) as rec:
        return {seq: (cmd.start_time or 0, cmd.end_time or 0) for seq, cmd in rec.commands.items()}


# --- replaying ------------------------------------------------------------------------------


def test_replay_of_a_real_session_matches(session: tuple[World, Path], tmp_path: Path) -> None:
    _world, recording = session
    out = tmp_path / "replay.cbor"
    report = replay(recording, output=out, timing="fast")
    assert [c.verdict for c in report.commands] == ["match"] * len(STEPS), report.to_json()
    assert report.status == 0 and report.other == str(out)
    with open_recording(out) as rec, open_recording(recording) as original:
        assert len(rec.commands) == len(STEPS)
        # the replay really ran: same output, exit codes, file ops and a signal
        assert rec.stream_bytes(2, 1) == b"REPLAY ME\n"
        assert [c.exit_code for c in rec.commands.values()] == [
            c.exit_code for c in original.commands.values()
        ]
        assert rec.commands[4].signals == [signal.SIGTERM]
        assert rec.commands[5].file_op_count == original.commands[5].file_op_count > 0
    got = spans(out)
    # commands recorded one after another replay one after another...
    assert all(got[n][1] <= got[n + 1][0] for n in range(1, 6))
    # ...and the two that overlapped in the recording overlap in the replay
    (a_start, a_end), (b_start, b_end) = got[6], got[7]
    assert a_start < b_end and b_start < a_end


def test_replay_cli_over_agent_at_recorded_timing(
    session: tuple[World, Path], tmp_path: Path
) -> None:
    _world, recording = session
    out = tmp_path / "replay.cbor"
    agent = " ".join(AGENT)
    result = reclab(
        "replay", str(recording), "--run", "--agent", agent, "--speed", "2", "-o", str(out),
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["format"] == 1 and doc["kind"] == "replay" and doc["status"] == 0
    assert doc["summary"] == {
        "commands": 7, "matched": 7, "diverged": 0, "errors": 0, "unpaired": 0,
    }  # fmt: skip
    assert doc["recording"] == str(recording) and doc["other"] == str(out)
    assert [c["verdict"] for c in doc["commands"]] == ["match"] * 7
    assert str(out) in result.stderr
    with open_recording(out) as rec:
        assert rec.header is not None and rec.header.agent_path == agent


def test_replay_reports_what_changed(session: tuple[World, Path], tmp_path: Path) -> None:
    world, recording = session
    (world.root / "data.txt").write_text("hello from the data file\nchanged line\n")
    (world.root / "code.txt").write_text("5\n")
    (world.root / "other.txt").unlink()
    result = reclab("replay", str(recording), "--run", "--timing", "fast", "--json",
                    "-o", str(tmp_path / "r.cbor"))  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    verdicts = {c["seq"]: c["verdict"] for c in doc["commands"]}
    assert verdicts == {1: "diverged", 2: "match", 3: "diverged", 4: "match",
                        5: "diverged", 6: "match", 7: "match"}  # fmt: skip
    by_seq = {c["seq"]: c["differences"] for c in doc["commands"]}
    [out_diff] = by_seq[1]
    assert out_diff["kind"] == "stream" and out_diff["stream"] == 1
    assert out_diff["offset"] == len("hello from the data file\n")
    assert "-second line" in out_diff["diff"] and "+changed line" in out_diff["diff"]
    [code_diff] = by_seq[3]
    assert (code_diff["kind"], code_diff["recorded"], code_diff["replayed"]) == ("exit", 3, 5)
    what = [d["what"] for d in by_seq[5]]
    assert any("READ_AT" in w and "data" in w for w in what), what
    assert any("STAT" in w and "other.txt" in w and "ENOENT" in w for w in what), what
    # the table names the command and the difference too
    table = reclab(
        "replay",
        str(recording),
        "--run",
        "--timing",
        "fast",
        "--seq",
        "3",
        "-o",
        str(tmp_path / "r3.cbor"),
        env={**os.environ, "COLUMNS": "200"},
    )
    assert table.returncode == 1
    assert "exit $(cat code.txt)" in table.stdout and "exit code 3 recorded, 5 replayed" in (
        table.stdout
    )


def test_replay_over_connect(session: tuple[World, Path], tmp_path: Path) -> None:
    _world, recording = session
    sock = tmp_path / "agent.sock"
    listener = subprocess.Popen(
        [*AGENT, "--listen", f"unix:{sock}"], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stderr is not None
        assert "listening" in listener.stderr.readline()
        result = reclab("replay", str(recording), "--run", "--connect", f"unix:{sock}",
                        "--timing", "fast", "-o", str(tmp_path / "r.cbor"))  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "7 matched, 0 diverged, 0 errors" in result.stdout
        with open_recording(tmp_path / "r.cbor") as rec:
            assert rec.header is not None and rec.header.backend_type == "unix"
    finally:
        listener.send_signal(signal.SIGTERM)
        listener.wait(TIMEOUT)


# --- the plan --------------------------------------------------------------------------------


def test_replay_without_run_starts_nothing(session: tuple[World, Path], tmp_path: Path) -> None:
    _world, recording = session
    marker = tmp_path / "agent-started"
    agent = f"sh -c 'touch {marker}; exec {sys.executable} -m agentproto.agent'"
    before = recording.stat().st_mtime_ns
    result = reclab("replay", str(recording), "--agent", agent, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "the plan started an agent"
    assert list(tmp_path.iterdir()) == [], "the plan wrote something"
    assert recording.stat().st_mtime_ns == before
    out = result.stdout
    assert "Nothing was sent: add --run" in out
    assert "exec tr tr a-z A-Z" in out and "stdin 10 bytes replay me\\n" in out
    assert "signal SIGTERM (15)" in out and "stdin EOF" in out
    assert "file op OPEN" in out and "PATH query" in out
    assert "command 7 at" in out and "starts after command 5 ended" in out


def test_replay_with_the_real_agent_proves_the_marker_works(
    session: tuple[World, Path], tmp_path: Path
) -> None:
    _world, recording = session
    marker = tmp_path / "agent-started"
    agent = f"sh -c 'touch {marker}; exec {sys.executable} -m agentproto.agent'"
    result = reclab("replay", str(recording), "--run", "--seq", "2", "--agent", agent,
                    "--timing", "fast", "-o", str(tmp_path / "r.cbor"))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists()


def _recording_with_env(path: Path, env: list[str]) -> None:
    with Recorder(path) as rec:
        rec.write_session_header()
        msg = ExecMsg(path="/bin/sh", argv=["sh", "-c", "true"], env=env, cwd="/")
        seq = rec.write_command_start(msg)
        rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EXEC, exec=msg))
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.EXIT, code=0))
        rec.write_command_end(seq, 0)


def test_plan_masks_secret_looking_env_values(tmp_path: Path) -> None:
    env = ["GITHUB_TOKEN=ghp_s3cr3t", "DB_PASSWORD=hunter2", "api_key=k3y", "AUTH_HEADER=b",
           "HOME=/home/me", "MY_CREDENTIALS=c", "SECRET_X=y", "PASSWD=z", "LANG=C"]  # fmt: skip
    path = tmp_path / "env.cbor"
    _recording_with_env(path, env)
    assert mask_env(env) == [
        "GITHUB_TOKEN=***", "DB_PASSWORD=***", "api_key=***", "AUTH_HEADER=***",
        "HOME=/home/me", "MY_CREDENTIALS=***", "SECRET_X=***", "PASSWD=***", "LANG=C",
    ]  # fmt: skip
    assert mask_env(None) is None
    result = reclab("replay", str(path))
    plan_json = reclab("replay", str(path), "--json")
    for text in (result.stdout, plan_json.stdout):
        for secret in ("ghp_s3cr3t", "hunter2", "k3y"):
            assert secret not in text
        assert "GITHUB_TOKEN=***" in text and "HOME=/home/me" in text
    doc = json.loads(plan_json.stdout)
    assert doc["kind"] == "plan" and doc["commands"][0]["env"][0] == "GITHUB_TOKEN=***"


def test_plan_command_for_one_seq(session: tuple[World, Path]) -> None:
    _world, recording = session
    with open_recording(recording) as rec:
        plan = plan_command(rec, 5)
        kinds = [step.kind for step in plan.steps]
        assert kinds[0] == "exec" and kinds[-1] == "eof"
        assert kinds.count("file_op") == 8 and kinds.count("path_query") == 1
        # handles opened by recorded answers are known, to be mapped to live ones
        assert [s.answer_handle > 0 for s in plan.steps if s.kind == "file_op"][:1] == [True]
        assert plan.replayable and plan.exited
        whole = build_plan(rec)
        assert [c.seq for c in whole.commands] == list(STEPS)
        # each waits for the command before it (and so for all before that); B not for A
        assert [c.after for c in whole.commands] == [[], [1], [2], [3], [4], [5], [5]]


# --- failures ---------------------------------------------------------------------------------


def test_agent_that_does_not_exist(session: tuple[World, Path], tmp_path: Path) -> None:
    _world, recording = session
    result = reclab("replay", str(recording), "--run", "--agent", "/no/such/agent",
                    "--json", "-o", str(tmp_path / "r.cbor"))  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == 2 and doc["summary"]["errors"] == 7
    assert all("cannot start agent" in c["error"] for c in doc["commands"])


def _sleeper_recording(path: Path, pidfile: Path) -> None:
    with Recorder(path) as rec:
        rec.write_session_header()
        msg = ExecMsg(path="sh", argv=["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"])
        seq = rec.write_command_start(msg)
        rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EXEC, exec=msg))
        rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EOF, stream=0))
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.EXIT, code=0))
        rec.write_command_end(seq, 0)


def test_agent_that_dies_mid_replay(tmp_path: Path) -> None:
    recording, pidfile = tmp_path / "s.cbor", tmp_path / "pid"
    _sleeper_recording(recording, pidfile)
    # the agent runs the command, then is terminated as soon as the command is there
    agent = (
        # (a background job's stdin is /dev/null unless given explicitly: keep the pipe in fd 3)
        f"sh -c 'exec 3<&0; {sys.executable} -m agentproto.agent 0<&3 3<&- & a=$!; exec 3<&-; "
        f"while [ ! -s {pidfile} ]; do sleep 0.05; done; kill -TERM $a; wait $a; exit 1'"
    )
    result = reclab(
        "replay",
        str(recording),
        "--run",
        "--agent",
        agent,
        "--timing",
        "fast",
        "-o",
        str(tmp_path / "r.cbor"),
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "error" in result.stdout and "before the command's exit code" in result.stdout
    assert gone(int(pidfile.read_text())), "the replayed command was orphaned"


def test_cut_off_recording(tmp_path: Path) -> None:
    path = tmp_path / "cut.cbor"
    with Recorder(path) as rec:
        rec.write_session_header()
        for text in ("first", "second"):
            msg = ExecMsg(path="echo", argv=["echo", text])
            seq = rec.write_command_start(msg)
            rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EXEC, exec=msg))
            rec.write_frame(
                seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=f"{text}\n".encode())
            )
            if text == "first":
                rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.EXIT, code=0))
                rec.write_command_end(seq, 0)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"second\n") + 3])  # inside the second command's output
    result = reclab("replay", str(path), "--run", "--timing", "fast", "--json",
                    "-o", str(tmp_path / "r.cbor"))  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cut inside a record" in result.stderr and "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    [first, second] = doc["commands"]
    assert first["verdict"] == "match"
    assert second["verdict"] == "error" and "cut before the command's end" in second["error"]
    plan = reclab("replay", str(path))
    assert "command 2 cannot be replayed" in plan.stderr and "not replayable" in plan.stdout


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--timing", "slow"], "--timing slow"),
        (["--speed", "0"], "--speed"),
        (["--agent", "x", "--connect", "unix:/x"], "give one, not both"),
        (["--connect", "ftp:x"], "--connect"),
        (["--ignore", "("], "--ignore"),
        (["--seq", "99"], "no command 99"),
    ],
)
def test_bad_options_are_one_line_errors(
    session: tuple[World, Path], args: list[str], text: str
) -> None:
    _world, recording = session
    assert_clean_error(reclab("replay", str(recording), "--run", *args), text)


def test_unreadable_recording(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(b"this is not a recording at all")
    assert_clean_error(reclab("replay", str(bad), "--run"), "not an agentproto recording")
    assert_clean_error(reclab("replay", str(tmp_path / "missing.cbor")), "no such file")


def test_ignore_masks_output_in_a_replay(tmp_path: Path) -> None:
    path = tmp_path / "pid.cbor"
    with RecordedSession(path) as session:
        session.run(ExecMsg(path="sh", argv=["sh", "-c", "echo pid $$ done"]),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip
    differs = replay(path, output=tmp_path / "a.cbor", timing="fast")
    assert differs.status == 1
    [diff] = differs.commands[0].differences
    assert diff.offset is not None and diff.offset >= len("pid ")
    assert diff.diff is not None and "-pid " in diff.diff and "+pid " in diff.diff
    masked = replay(path, output=tmp_path / "b.cbor", timing="fast",
                    options=CompareOptions.from_patterns([r"pid \d+"]))  # fmt: skip
    assert masked.status == 0, masked.to_json()


def test_default_output_is_a_named_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "env.cbor"
    _recording_with_env(path, ["LANG=C"])
    result = reclab("replay", str(path), "--run", "--timing", "fast", "--json")
    assert result.returncode == 0, result.stderr
    other = Path(json.loads(result.stdout)["other"])
    try:
        assert other.name.startswith("reclab-replay-") and other.exists()
        assert str(other) in result.stderr
        assert stat.S_ISREG(other.stat().st_mode)
    finally:
        other.unlink()


def test_output_is_not_overwritten_without_force(tmp_path: Path) -> None:
    path = tmp_path / "env.cbor"
    _recording_with_env(path, ["LANG=C"])
    out = tmp_path / "kept.cbor"
    out.write_bytes(b"precious")
    refused = reclab("replay", str(path), "--run", "--timing", "fast", "-o", str(out))
    assert_clean_error(refused, "--force")
    assert out.read_bytes() == b"precious"
    forced = reclab("replay", str(path), "--run", "--timing", "fast", "-o", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert out.read_bytes() != b"precious"


def test_interrupting_a_replay_leaves_no_process(tmp_path: Path) -> None:
    recording, pidfile = tmp_path / "s.cbor", tmp_path / "pid"
    _sleeper_recording(recording, pidfile)
    proc = subprocess.Popen(
        [
            *RECLAB,
            "replay",
            str(recording),
            "--run",
            "--timing",
            "fast",
            "-o",
            str(tmp_path / "r.cbor"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert gone(int(pidfile.read_text()))
