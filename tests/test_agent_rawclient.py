"""The agent against a client written only with cbor2 and the documented Go keys.

Nothing from agentproto is imported here: frames are plain dicts with the
``cbor:"…"`` keys of agentproto-go-api.txt, so a misunderstanding shared by our
encoder and our mux cannot hide behind a round trip through both.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

TIMEOUT = 30
AGENT = [sys.executable, "-m", "agentproto.agent", "--log-level", "info"]

# Frame types, from the Go constants
EXEC, DATA, EOF, SIGNAL, EXIT, ERROR, LOG, CONFIG, PATH_QUERY, PATH_INFO, FILE_OP, FILE_RESP = (
    range(1, 13)
)


class RawClient:
    """The agent on stdio; frames written with cbor2.dumps, read with one cbor2 decoder."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*AGENT, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdout is not None
        self.decoder = cbor2.CBORDecoder(self.proc.stdout)

    def send(self, frame: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cbor2.dumps(frame))
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        frame = self.decoder.decode()
        assert isinstance(frame, dict)
        return frame

    def recv_until(self, ftype: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read frames until one of ``ftype``: (that frame, the others before it, logs skipped)."""
        before = []
        while True:
            frame = self.recv()
            if frame["t"] == ftype:
                return frame, before
            if frame["t"] != LOG:
                before.append(frame)

    def close(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.proc.stdout.close()


@pytest.fixture
def client() -> Iterator[RawClient]:
    c = RawClient()
    yield c
    c.close()


def exec_frame(path: str, argv: list[str] | None, **extra: Any) -> dict[str, Any]:
    # Go writes path, argv, env, cwd always (nil slices as null), fds only when non-empty
    x = {"path": path, "argv": argv, "env": extra.pop("env", None), "cwd": extra.pop("cwd", "")}
    x.update(extra)
    return {"t": EXEC, "x": x}


def streams(frames: list[dict[str, Any]]) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    for f in frames:
        if f["t"] == DATA:
            out[f.get("s", 0)] = out.get(f.get("s", 0), b"") + f.get("d", b"")
    return out


def test_exec_with_stdin_and_exit(client: RawClient) -> None:
    client.send(exec_frame("/bin/sh", ["sh", "-c", "cat; echo done >&2; exit 5"], env=[]))
    client.send({"t": DATA, "d": b"hello "})  # stream 0 omitted: Go's omitempty
    client.send({"t": DATA, "s": 0, "d": b"agent\n"})
    client.send({"t": EOF})
    exit_frame, frames = client.recv_until(EXIT)
    assert exit_frame == {"t": EXIT, "c": 5}
    assert streams(frames) == {1: b"hello agent\n", 2: b"done\n"}
    eofs = sorted(f.get("s", 0) for f in frames if f["t"] == EOF)
    assert eofs == [1, 2]
    assert all(f["t"] in (DATA, EOF) for f in frames)


def test_frames_use_go_keys_and_order(tmp_path: Path) -> None:
    c = RawClient()
    c.send(exec_frame("/bin/echo", None, env=None))  # argv null: the program alone
    assert c.proc.stdout is not None
    raw = c.proc.stdout.read()  # after FrameExit the agent closes its side
    c.close()
    decoder = cbor2.CBORDecoder(io.BytesIO(raw))
    pos = 0
    frames = []
    while pos < len(raw):
        frame = decoder.decode()
        end = decoder.fp.tell()
        # re-encoding the decoded dict (insertion order kept) gives the same bytes:
        # minimal heads, definite lengths, no tags
        assert cbor2.dumps(frame) == raw[pos:end]
        frames.append(frame)
        pos = end
    for frame in frames:
        order = {"t": 0, "s": 1, "d": 2, "sig": 3, "c": 4, "e": 5, "x": 6, "l": 7}
        assert list(frame) == sorted(frame, key=lambda k: order[k])  # Go declaration order
        if frame["t"] == LOG:
            assert list(frame["l"])[:2] == ["lvl", "msg"] and isinstance(frame["l"]["lvl"], int)


def test_stdin_close_before_exit_terminates(client: RawClient) -> None:
    # closing the connection is the runner going away: the child must not outlive it
    client.send(exec_frame("/bin/sh", ["sh", "-c", "echo $$; exec sleep 60"]))
    frame, _ = client.recv_until(DATA)
    pid = int(frame["d"])
    assert client.close() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_signal(client: RawClient) -> None:
    client.send(exec_frame("/bin/sh", ["sh", "-c", "echo ready; sleep 30"]))
    client.recv_until(DATA)
    client.send({"t": SIGNAL, "sig": 2})  # SIGINT to the process group
    exit_frame, _ = client.recv_until(EXIT)
    assert exit_frame["c"] == 130


def test_extra_fds(client: RawClient) -> None:
    client.send(exec_frame("/bin/sh", ["sh", "-c", "echo side >&4"], fds=[4]))
    _, frames = client.recv_until(EXIT)
    assert streams(frames) == {4: b"side\n"}
    assert sorted(f.get("s", 0) for f in frames if f["t"] == EOF) == [1, 2, 4]


def test_not_found(client: RawClient) -> None:
    client.send(exec_frame("/nonexistent/program", ["program"]))
    exit_frame, frames = client.recv_until(EXIT)
    assert exit_frame == {"t": EXIT, "c": 127}
    assert [f["t"] for f in frames] == [ERROR] and "/nonexistent/program" in frames[0]["e"]


def test_config_then_exec() -> None:
    env = {"PATH": os.environ.get("PATH", "/bin"), "XKEEP": "1", "XDROP": "2", "OTHER": "3"}
    c = RawClient(env=env)
    try:
        c.send({"t": CONFIG, "cfg": {"env_keep": ["X*"], "env_remove": ["/DROP$/"]}})
        c.send(exec_frame("/usr/bin/env", ["env"], env=["MINE=yes"]))
        _, frames = c.recv_until(EXIT)
        lines = set(streams(frames)[1].decode().splitlines())
        assert lines == {"XKEEP=1", "MINE=yes"}
    finally:
        c.close()


def test_path_query(client: RawClient, tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o4755)  # setuid: Go's ModeSetuid is 1<<23
    client.send({"t": PATH_QUERY, "q": {"paths": [str(tmp_path)]}})
    info = client.recv_until(PATH_INFO)[0]["i"]
    (entry,) = info["entries"]
    assert list(entry) == ["name", "path", "mode", "size", "mtime"]
    assert entry["name"] == "tool" and entry["path"] == str(tool)
    assert entry["mode"] == (1 << 23) | 0o755
    assert entry["size"] == tool.stat().st_size


def test_file_ops(client: RawClient, tmp_path: Path) -> None:
    path = str(tmp_path / "f.txt")
    client.send({"t": FILE_OP, "fop": {"id": 1, "op": 2, "p": path}})  # Create
    resp = client.recv_until(FILE_RESP)[0]["frp"]
    assert resp["id"] == 1 and "er" not in resp
    handle = resp["h"]
    client.send({"t": FILE_OP, "fop": {"id": 2, "op": 6, "h": handle, "d": b"hello"}})  # WriteAt
    client.send({"t": FILE_OP, "fop": {"id": 3, "op": 4, "h": handle}})  # Close
    client.send({"t": FILE_OP, "fop": {"id": 4, "op": 7, "p": path}})  # Stat
    client.send({"t": FILE_OP, "fop": {"id": 5, "op": 7, "p": path + ".missing"}})
    answers = {}
    while len(answers) < 4:
        resp = client.recv_until(FILE_RESP)[0]["frp"]
        answers[resp["id"]] = resp
    assert answers[2]["n"] == 5
    assert answers[3] == {"id": 3}
    assert answers[4]["st"]["n"] == "f.txt" and answers[4]["st"]["s"] == 5
    assert answers[4]["st"]["m"] == 0o666 & ~_umask()
    assert answers[5]["er"] == 2 and "no such file" in answers[5]["em"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_garbage_gets_an_error_frame(client: RawClient) -> None:
    assert client.proc.stdin is not None
    client.proc.stdin.write(b"\xfe\xfe\xfe")
    client.proc.stdin.flush()
    frame, _ = client.recv_until(ERROR)
    assert "protocol error" in frame["e"]
    assert client.close() == 0
