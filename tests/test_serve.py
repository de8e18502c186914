"""``reclab serve``: a recording stands in for the agent, for our runner and a bare cbor2 client."""

from __future__ import annotations

import errno
import shlex
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from test_listen_auth import (
    NOBODY,
    TOKEN,
    as_nobody,
    needs_second_uid,
    refusal,
    token_file,
)
from test_replay import RECLAB, TIMEOUT, assert_clean_error, reclab

from agentproto import ExecMsg, FileOp, FileOpReq, FrameType
from agentproto.auth import REFUSED_PREFIX
from reclab.model import open_recording
from reclab.replay import replay
from reclab.runner import AgentConnection, RecordedSession

SAMPLES = Path(__file__).resolve().parent.parent / "sample-recordings"
REPLAYABLE_SAMPLES = [
    "quick", "failing-build", "stdin-wc", "signal", "concurrent", "extra-fds",
    "agent-logs", "fileops", "path-query",
]  # fmt: skip


def serve_agent(recording: Path, *options: str) -> list[str]:
    """The agent command line of ``reclab serve`` for a runner."""
    return [*RECLAB, "serve", str(recording), *options]


def recorded_exec(recording: Path, seq: int = 1) -> ExecMsg:
    with open_recording(recording) as rec:
        return rec.command(seq).exec


@pytest.mark.parametrize("name", REPLAYABLE_SAMPLES)
def test_replaying_a_sample_against_serve_matches(name: str, tmp_path: Path) -> None:
    """Our runner (the replay client) against serve: every sample's answers come back."""
    sample = SAMPLES / f"{name}.cbor"
    report = replay(sample, output=tmp_path / "r.cbor", timing="fast",
                    agent=serve_agent(sample, "--timing", "fast"))  # fmt: skip
    assert report.status == 0, report.to_json()
    assert report.commands and all(c.verdict == "match" for c in report.commands)


def test_reclab_run_against_serve(tmp_path: Path) -> None:
    sample = SAMPLES / "failing-build.cbor"
    msg = recorded_exec(sample)
    with open_recording(sample) as rec:
        out, err = rec.stream_bytes(1, 1), rec.stream_bytes(1, 2)
    agent = shlex.join(serve_agent(sample))
    result = subprocess.run(
        [*RECLAB, "run", "--agent", agent, "-o", str(tmp_path / "s.cbor"), "--", *(msg.argv or [])],
        capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert (result.stdout, result.stderr) == (out, err)


def test_serve_maps_file_op_handles_and_request_ids(tmp_path: Path) -> None:
    sample = SAMPLES / "fileops.cbor"
    with open_recording(sample) as rec:
        asked = {r.frame.file_op.req_id: r.frame.file_op for r in rec.frames(1) if r.frame.file_op}
        answers = {r.frame.file_resp.req_id: r.frame.file_resp
                   for r in rec.frames(1) if r.frame.file_resp}  # fmt: skip
    open_id = next(i for i, q in asked.items() if q.op == FileOp.OPEN and q.path == "README")
    read_id = next(i for i, q in asked.items()
                   if q.op == FileOp.READ_AT and q.offset == 0 and q.size == 48)  # fmt: skip
    assert answers[open_id].handle == 2 and asked[read_id].handle == 2
    with RecordedSession(tmp_path / "s.cbor", agent=serve_agent(sample, "--timing", "fast")) as s:
        cmd = s.command(recorded_exec(sample), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        cmd.start()
        # the runner's request ids start at 1 here (13 in the recording): answers carry ours
        opened = cmd.file_op(asked[open_id])
        assert opened.errno == 0 and opened.handle == 1  # this connection's own handle...
        read = cmd.file_op(FileOpReq(op=FileOp.READ_AT, handle=1, size=48))
        assert read.data == answers[read_id].data and read.n == 48  # ...mapped to recorded 2
        stray = cmd.file_op(FileOpReq(op=FileOp.READ_AT, handle=7, size=48))
        assert stray.errno == errno.EBADF
        cmd.close_stdin()
        assert cmd.wait(TIMEOUT) == 0


def test_unmatched_requests_get_errors_and_the_session_goes_on(tmp_path: Path) -> None:
    sample = SAMPLES / "path-query.cbor"
    errors: list[str] = []
    stderr: list[str] = []
    conn = AgentConnection(serve_agent(sample, "--timing", "fast"), on_error=errors.append,
                           on_stderr=stderr.append)  # fmt: skip
    try:
        unmatched = conn.file_op(FileOpReq(op=FileOp.STAT, path="/no/such/recorded/path"))
        assert unmatched.errno == 5 and "no recorded answer" in unmatched.err_msg
        nothing = conn.path_query(["/not/recorded"], timeout=TIMEOUT)
        assert nothing.entries == []
        with open_recording(sample) as rec:
            query = next(r.frame.query for r in rec.frames(1) if r.frame.query is not None)
        answered = conn.path_query(list(query.paths), timeout=TIMEOUT)
        assert answered.entries, "a recorded query is still answered after unmatched ones"
    finally:
        conn.close()
    assert any("no recorded answer for PATH query ['/not/recorded']" in e for e in errors)
    assert any("no recorded answer for file op STAT" in line for line in stderr), stderr
    assert any("closest recorded: seq 1: []" in line for line in stderr), stderr


def test_unmatched_exec_gets_an_error_and_127(tmp_path: Path) -> None:
    sample = SAMPLES / "quick.cbor"
    result = subprocess.run(
        [*RECLAB, "run", "-v", "--agent", shlex.join(serve_agent(sample)),
         "-o", str(tmp_path / "s.cbor"), "--", "echo", "hello, wrld"],
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 127, result.stderr
    assert "no recorded command matches exec echo" in result.stderr
    assert "closest recorded: seq 1: echo echo 'hello, world'" in result.stderr


# --- a client built only on cbor2 -----------------------------------------------------------


def _frames(stream: Any) -> Iterator[dict[str, Any]]:
    decoder = cbor2.CBORDecoder(stream)
    while True:
        try:
            yield decoder.decode()
        except cbor2.CBORDecodeEOF:
            return


def test_serve_with_a_bare_cbor2_client() -> None:
    sample = SAMPLES / "stdin-wc.cbor"
    msg = recorded_exec(sample)
    with open_recording(sample) as rec:
        stdin, stdout = rec.stream_bytes(1, 0), rec.stream_bytes(1, 1)
    proc = subprocess.Popen([*RECLAB, "serve", str(sample)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    exec_map = {"path": msg.path, "argv": msg.argv, "env": msg.env, "cwd": msg.cwd}
    # a file op nobody recorded first: an errno answer, and the session goes on
    proc.stdin.write(cbor2.dumps({"t": 11, "fop": {"id": 7, "op": 7, "p": "/nowhere"}}))
    proc.stdin.write(cbor2.dumps({"t": 1, "x": exec_map}))
    proc.stdin.write(cbor2.dumps({"t": 2, "d": stdin}))
    proc.stdin.write(cbor2.dumps({"t": 3}))
    proc.stdin.flush()
    got = b""
    answers = []
    code = None
    for frame in _frames(proc.stdout):
        if frame["t"] == 2 and frame.get("s") == 1:
            got += frame["d"]
        elif frame["t"] == 12:
            answers.append(frame["frp"])
        elif frame["t"] == 5:
            code = frame.get("c", 0)
            break
    _, err = proc.communicate(timeout=TIMEOUT)
    assert answers == [{"id": 7, "er": 5, "em": "reclab serve: no recorded answer"}]
    assert (got, code) == (stdout, 0)
    assert b"no recorded answer for file op STAT" in err and proc.returncode == 0


def test_serve_waits_for_the_signal_that_ended_the_recorded_command() -> None:
    sample = SAMPLES / "signal.cbor"
    msg = recorded_exec(sample)
    proc = subprocess.Popen([*RECLAB, "serve", str(sample), "--timing", "fast"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(
        cbor2.dumps(
            {"t": 1, "x": {"path": msg.path, "argv": msg.argv, "env": msg.env, "cwd": msg.cwd}}
        )
    )
    proc.stdin.write(cbor2.dumps({"t": 3}))
    proc.stdin.write(cbor2.dumps({"t": 4, "sig": int(signal.SIGINT)}))
    proc.stdin.flush()
    codes = [f.get("c", 0) for f in _frames(proc.stdout) if f["t"] == 5]
    proc.stdin.close()
    proc.wait(TIMEOUT)
    assert codes == [128 + signal.SIGINT]


# --- listening -------------------------------------------------------------------------------


class Server:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen([*RECLAB, "serve", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)  # fmt: skip
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        assert "listening on" in line, line + self.proc.stderr.read()
        self.address = line.split("listening on ", 1)[1].strip()

    def stop(self, signo: int = signal.SIGINT) -> None:
        self.proc.send_signal(signo)
        self.proc.wait(TIMEOUT)


def test_serve_listening_on_a_unix_socket(tmp_path: Path) -> None:
    sample = SAMPLES / "quick.cbor"
    sock = tmp_path / "serve.sock"
    server = Server(str(sample), "--listen", f"unix:{sock}")
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        for i in range(2):  # one connection per command, any number of them
            result = reclab("run", "--connect", server.address, "-o", str(tmp_path / f"s{i}.cbor"),
                            "--", "echo", "hello, world")  # fmt: skip
            assert result.returncode == 0 and result.stdout == "hello, world\n", result.stderr
    finally:
        server.stop(signal.SIGTERM)
    assert server.proc.returncode == 0 and not sock.exists()


def test_serve_on_loopback_tcp_answers_this_user(tmp_path: Path) -> None:
    sample = SAMPLES / "quick.cbor"
    server = Server(str(sample), "--listen", "tcp:127.0.0.1:0")  # same uid: no flag needed
    try:
        result = reclab("run", "--connect", server.address, "-o", str(tmp_path / "s.cbor"),
                        "--", "echo", "hello, world")  # fmt: skip
        assert result.returncode == 0 and result.stdout == "hello, world\n", result.stderr
    finally:
        server.stop()


def test_serve_on_a_reachable_tcp_address_needs_a_token(tmp_path: Path) -> None:
    sample = SAMPLES / "quick.cbor"
    assert_clean_error(reclab("serve", str(sample), "--listen", "tcp:0.0.0.0:0"), "token")
    bad = tmp_path / "token"
    bad.write_text("short\n")
    bad.chmod(0o600)
    assert_clean_error(
        reclab("serve", str(sample), "--listen", "tcp:127.0.0.1:0", "--token-file", str(bad)),
        "token file",
    )


@needs_second_uid
def test_serve_refuses_another_user_unless_it_has_the_token(tmp_path: Path) -> None:
    sample = SAMPLES / "quick.cbor"
    server = Server(str(sample), "--listen", "tcp:127.0.0.1:0",
                    "--token-file", str(token_file(tmp_path)))  # fmt: skip
    try:
        error = refusal(as_nobody(server.address))
        assert error.startswith(REFUSED_PREFIX) and f"uid {NOBODY}" in error
        # admitted with the token: the recorded agent answers (no recorded `id -u`: exit 127)
        frames = as_nobody(server.address, TOKEN)
        assert [f.code for f in frames if f.type == FrameType.EXIT] == [127]
    finally:
        server.stop()


def test_serve_bad_input_is_one_line(tmp_path: Path) -> None:
    assert_clean_error(reclab("serve", str(tmp_path / "none.cbor")), "no such file")
    sample = SAMPLES / "quick.cbor"
    assert_clean_error(reclab("serve", str(sample), "--listen", "bogus"), "--listen")
    assert_clean_error(reclab("serve", str(sample), "--timing", "slow"), "--timing")


def test_unmatched_file_op_names_the_closest_recorded_one() -> None:
    sample = SAMPLES / "fileops.cbor"
    stderr: list[str] = []
    conn = AgentConnection(serve_agent(sample, "--timing", "fast"), on_stderr=stderr.append)
    try:
        answer = conn.file_op(FileOpReq(op=FileOp.STAT, path="src/main.cc"))
        assert answer.errno == errno.EIO
        recorded = conn.file_op(FileOpReq(op=FileOp.STAT, path="src/main.c"))
        assert recorded.errno == 0 and recorded.stat is not None and recorded.stat.name == "main.c"
    finally:
        conn.close()
    line = next(line for line in stderr if "no recorded answer" in line)
    assert (
        "file op STAT path='src/main.cc'; closest recorded: seq 1: file op STAT path='src/main.c'"
        in line
    )


def test_serve_answers_once_stdin_ended_even_if_shorter_than_recorded() -> None:
    sample = SAMPLES / "stdin-wc.cbor"
    msg = recorded_exec(sample)
    proc = subprocess.Popen([*RECLAB, "serve", str(sample), "--timing", "fast"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(
        cbor2.dumps(
            {"t": 1, "x": {"path": msg.path, "argv": msg.argv, "env": msg.env, "cwd": msg.cwd}}
        )
    )
    proc.stdin.write(cbor2.dumps({"t": 2, "d": b"short\n"}))
    proc.stdin.write(cbor2.dumps({"t": 3}))
    proc.stdin.flush()
    codes = [f.get("c", 0) for f in _frames(proc.stdout) if f["t"] == 5]
    proc.stdin.close()
    proc.wait(TIMEOUT)
    assert codes == [0]


def test_exec_matching_uses_env_only_when_asked(tmp_path: Path) -> None:
    from reclab.replay.serve import RecordedAgent

    sample = SAMPLES / "quick.cbor"
    msg = recorded_exec(sample)
    other_env = ExecMsg(path=msg.path, argv=msg.argv, env=["X=1"], cwd=msg.cwd)
    with open_recording(sample) as rec:
        loose = RecordedAgent(rec, log=lambda line: None)
        strict = RecordedAgent(rec, match_env=True, log=lambda line: None)
        assert loose.match_exec(other_env) is not None
        assert strict.match_exec(other_env) is None
        assert strict.match_exec(msg) is not None
        assert "closest recorded: seq 1" in strict.closest_exec(other_env)
