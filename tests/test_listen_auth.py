"""Who may drive a listening agent: peer uids (SO_PEERCRED, /proc/net/tcp) and the token.

The hostile peer is a second user: the tests run as root and start the client
as ``nobody`` with ``setpriv``, using the system's Python and only the standard
library (``nobody`` cannot read root's virtualenv).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_agent import AGENT, TIMEOUT, Listener
from test_run import assert_one_line_error, reclab

from agentproto import ExecMsg, Frame, FrameType, Recorder
from agentproto.auth import (
    REFUSED_PREFIX,
    TokenError,
    loopback_peer_uid,
    peer_uid,
    read_token_file,
    validate_token,
)
from agentproto.codec import FrameReader
from agentproto.types import decode_cbor_item

NOBODY = 65534
TOKEN = "0123456789abcdef0123456789abcdef"
SYSTEM_PYTHON = "/usr/bin/python3"

needs_second_uid = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root, setpriv and a system python to act as a second user",
)

# Connects, presents $TOKEN if set, sends the frames given in hex, prints all it gets back in hex.
RAW_CLIENT = r"""
import os, socket, sys
kind, target, payload = sys.argv[1:4]
if kind == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.connect(target)
else:
    host, port = target.rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)))
token = os.environ.get("TOKEN")
if token:
    s.sendall(b"AGENTPROTO-TOKEN " + token.encode() + b"\n")
s.sendall(bytes.fromhex(payload))
s.settimeout(20)
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except ConnectionResetError:
        break
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.hex())
"""


def id_frames() -> bytes:
    """Exec of ``id -u`` with an empty stdin: the agent's answer shows who ran it."""
    exec_msg = ExecMsg(path="/usr/bin/id", argv=["id", "-u"])
    return (
        Frame(type=FrameType.EXEC, exec=exec_msg).to_cbor()
        + Frame(type=FrameType.EOF, stream=0).to_cbor()
    )


def as_nobody(address: str, token: str | None = None) -> list[Frame]:
    """Run the raw client as uid 65534 against ``address``; the frames the agent sent."""
    kind, _, target = address.partition(":")
    env = {"PATH": "/usr/bin:/bin"}
    if token is not None:
        env["TOKEN"] = token
    result = subprocess.run(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
         SYSTEM_PYTHON, "-c", RAW_CLIENT, kind, target, id_frames().hex()],
        capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reader = FrameReader(io.BytesIO(bytes.fromhex(result.stdout)))
    frames = []
    while (item := reader.next_item()) is not None:
        frames.append(Frame.from_map(decode_cbor_item(bytes(item))))
    return frames


def ran_as(frames: list[Frame]) -> tuple[bytes, int | None]:
    out = b"".join(f.data for f in frames if f.type == FrameType.DATA and f.stream == 1)
    codes = [f.code for f in frames if f.type == FrameType.EXIT]
    return out, codes[0] if codes else None


def refusal(frames: list[Frame]) -> str:
    errors = [f.error for f in frames if f.type == FrameType.ERROR]
    assert errors, frames
    assert not any(f.type in (FrameType.DATA, FrameType.EXIT) for f in frames), frames
    return errors[0]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory other users may enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="reclab-auth-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def token_file(directory: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = directory / "token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def listener(tmp: Path, spec: str, *args: str) -> Listener:
    return Listener(tmp, spec, "info", *args)


# --- another user ------------------------------------------------------------------------


@needs_second_uid
def test_tcp_refuses_another_uid(tmp_path: Path) -> None:
    agent = listener(tmp_path, "tcp:127.0.0.1:0")
    try:
        error = refusal(as_nobody(agent.address))
        assert error.startswith(REFUSED_PREFIX) and f"uid {NOBODY}" in error
    finally:
        agent.stop()
    assert any("refused connection" in line and f"uid {NOBODY}" in line for line in agent.lines)


@needs_second_uid
def test_tcp6_refuses_another_uid(tmp_path: Path) -> None:
    try:
        agent = listener(tmp_path, "tcp:[::1]:0")
    except AssertionError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert f"uid {NOBODY}" in refusal(as_nobody(agent.address))
    finally:
        agent.stop()


@needs_second_uid
def test_tcp_admits_another_uid_with_the_token(tmp_path: Path) -> None:
    agent = listener(tmp_path, "tcp:127.0.0.1:0", "--token-file", str(token_file(tmp_path)))
    try:
        assert ran_as(as_nobody(agent.address, TOKEN)) == (b"0\n", 0)
        assert "wrong token" in refusal(as_nobody(agent.address, TOKEN[::-1]))
        assert f"uid {NOBODY}" in refusal(as_nobody(agent.address))
    finally:
        agent.stop()


@needs_second_uid
def test_token_from_the_environment_is_not_passed_to_commands(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTPROTO_TOKEN": TOKEN}
    agent = Listener(tmp_path, "tcp:127.0.0.1:0", "info", env=env)
    try:
        assert ran_as(as_nobody(agent.address, TOKEN)) == (b"0\n", 0)
        # reclab presents $AGENTPROTO_TOKEN too; the command must not see it
        run = reclab("run", "-o", str(tmp_path / "env.cbor"), "--connect", agent.address, "--",
                     "env", env=env)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert b"AGENTPROTO_TOKEN" not in run.stdout
    finally:
        agent.stop()


@needs_second_uid
def test_unix_socket_refuses_another_uid_even_when_reachable(shared_dir: Path) -> None:
    sock = shared_dir / "agent.sock"
    agent = listener(shared_dir, f"unix:{sock}")
    try:
        sock.chmod(0o666)  # a careless mode, or a group-shared socket: the uid check still holds
        error = refusal(as_nobody(agent.address))
        assert error.startswith(REFUSED_PREFIX) and f"uid {NOBODY}" in error
    finally:
        agent.stop()


@needs_second_uid
def test_unix_socket_allow_uid(shared_dir: Path) -> None:
    sock = shared_dir / "agent.sock"
    agent = listener(shared_dir, f"unix:{sock}", "--allow-uid", str(NOBODY))
    try:
        sock.chmod(0o666)
        assert ran_as(as_nobody(agent.address)) == (b"0\n", 0)
    finally:
        agent.stop()


# --- the same user, the runner ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_same_uid_is_admitted_with_or_without_a_token(tmp_path: Path, kind: str) -> None:
    spec = f"unix:{tmp_path}/a.sock" if kind == "unix" else "tcp:127.0.0.1:0"
    agent = listener(tmp_path, spec, "--token-file", str(token_file(tmp_path)))
    try:
        plain = reclab("run", "-o", str(tmp_path / "a.cbor"), "--connect", agent.address, "--",
                       "echo", "plain")  # fmt: skip
        assert (plain.returncode, plain.stdout) == (0, b"plain\n"), plain.stderr
        with_token = reclab(
            "run", "-o", str(tmp_path / "b.cbor"), "--connect", agent.address,
            "--token-file", str(token_file(tmp_path)), "--", "echo", "token",
        )  # fmt: skip
        assert (with_token.returncode, with_token.stdout) == (0, b"token\n"), with_token.stderr
    finally:
        agent.stop()


def test_runner_reports_a_refusal_in_one_line(tmp_path: Path) -> None:
    agent = listener(tmp_path, "tcp:127.0.0.1:0", "--token-file", str(token_file(tmp_path)))
    wrong = tmp_path / "wrong"
    wrong.write_text(TOKEN[::-1])
    wrong.chmod(0o600)
    try:
        result = reclab("run", "-o", str(tmp_path / "r.cbor"), "--connect", agent.address,
                        "--token-file", str(wrong), "--", "true")  # fmt: skip
    finally:
        agent.stop()
    assert result.returncode == 255
    assert_one_line_error(result, "agent refused the connection: wrong token")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_runner_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    result = reclab("run", "--connect", "tcp:127.0.0.1:9", "--token-file",
                    str(token_file(tmp_path, mode=0o644)), "--", "true")  # fmt: skip
    assert result.returncode == 2
    assert_one_line_error(result, "lets other users read it")


# --- starting a listener ------------------------------------------------------------------


def test_agent_refuses_an_unsafe_token_file(tmp_path: Path) -> None:
    r = subprocess.run(
        [*AGENT, "--listen", "tcp:127.0.0.1:0", "--token-file",
         str(token_file(tmp_path, mode=0o640))],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert r.returncode == 2 and "lets other users read it" in r.stderr
    assert "Traceback" not in r.stderr


def test_agent_refuses_a_short_token(tmp_path: Path) -> None:
    r = subprocess.run(
        [*AGENT, "--listen", "tcp:127.0.0.1:0", "--token-file",
         str(token_file(tmp_path, text="secret"))],
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert r.returncode == 2 and "16 to 1024" in r.stderr


def test_non_loopback_listener_needs_a_check(tmp_path: Path) -> None:
    r = subprocess.run(
        [*AGENT, "--listen", "tcp:0.0.0.0:0"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert r.returncode == 2 and "--insecure-allow-any-peer" in r.stderr
    with_token = listener(tmp_path, "tcp:0.0.0.0:0", "--token-file", str(token_file(tmp_path)))
    with_token.stop()
    insecure = listener(tmp_path, "tcp:0.0.0.0:0", "--insecure-allow-any-peer")
    try:
        assert any("insecure-allow-any-peer" in line for line in insecure.lines)
    finally:
        insecure.stop()


# --- the pieces ---------------------------------------------------------------------------


def test_peer_uid_over_unix_and_tcp() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_uid(a) == os.getuid()
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as client:
        conn, _ = server.accept()
        with conn:
            assert peer_uid(conn) == os.getuid()
            assert peer_uid(client) == os.getuid()  # and the other way round


def test_loopback_peer_uid_ignores_other_machines_and_unknown_peers() -> None:
    assert loopback_peer_uid(("10.1.2.3", 4000), ("10.1.2.4", 22)) is None
    assert loopback_peer_uid(("127.0.0.1", 1), ("127.0.0.1", 2), tables=[]) is None


def test_loopback_peer_uid_reads_the_kernel_table(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1234 0 1\n"
    )
    if sys.byteorder != "little":
        pytest.skip("the sample table is a little-endian machine's")
    assert loopback_peer_uid(("127.0.0.1", 0x9C40), ("127.0.0.1", 0x1F90), [str(table)]) == 1234
    assert loopback_peer_uid(("127.0.0.1", 0x9C41), ("127.0.0.1", 0x1F90), [str(table)]) is None


def test_token_rules(tmp_path: Path) -> None:
    assert validate_token(f"  {TOKEN}\n", source="t") == TOKEN.encode()
    for bad in ("short", "has a space in it 0123456789", "x" * 2000):
        with pytest.raises(TokenError):
            validate_token(bad, source="t")
    assert read_token_file(token_file(tmp_path)) == TOKEN.encode()
    with pytest.raises(TokenError, match="lets other users read it"):
        read_token_file(token_file(tmp_path, mode=0o604))
    with pytest.raises(TokenError, match="No such file"):
        read_token_file(tmp_path / "missing")


# --- recordings are private ----------------------------------------------------------------


def test_recorder_creates_owner_only_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "new.cbor"
        Recorder(path).close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        existing = tmp_path / "existing.cbor"
        existing.write_bytes(b"old")
        existing.chmod(0o644)
        Recorder(existing).close()
        assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_reclab_run_recording_is_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "run.cbor"
    result = reclab("run", "-o", str(out), "--", "true")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
