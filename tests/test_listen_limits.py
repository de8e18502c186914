"""A listening agent under misbehaving peers: too many connections, idle or stalled ones."""

from __future__ import annotations

import contextlib
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_agent import TIMEOUT, Listener, exec_on

from agentproto import Frame, FrameType
from agentproto.address import connect
from agentproto.auth import REFUSED_PREFIX


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(TIMEOUT)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _echo_works(listener: Listener) -> bool:
    sock, mux = listener.connect()
    with contextlib.closing(sock):
        out = exec_on(mux, ["/bin/echo", "still serving"])
        return mux.wait(TIMEOUT) == 0 and out.data == b"still serving\n"


def test_out_of_descriptors_the_listener_goes_on(tmp_path: Path) -> None:
    def low_nofile() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    listener = Listener(tmp_path, "tcp:127.0.0.1:0", "info", preexec_fn=low_nofile)
    idle: list[socket.socket] = []
    try:
        for _ in range(40):  # more than the agent has descriptors for
            idle.append(connect(listener.address, timeout=TIMEOUT))
        deadline = time.monotonic() + TIMEOUT
        while not any("cannot accept" in line for line in listener.lines):
            assert time.monotonic() < deadline, "".join(listener.lines)
            time.sleep(0.05)
            assert listener.proc.poll() is None  # still running
        for sock in idle:
            sock.close()
        idle.clear()
        assert _echo_works(listener)
    finally:
        for sock in idle:
            sock.close()
        listener.stop()


def test_connections_over_the_cap_are_refused(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "tcp:127.0.0.1:0", "info", "--max-connections", "2")
    try:
        first = connect(listener.address, timeout=TIMEOUT)
        second = connect(listener.address, timeout=TIMEOUT)
        with first, second, connect(listener.address, timeout=TIMEOUT) as third:
            refused = _read_until_closed(third)
            error = Frame.from_cbor(refused)
            assert error.type == FrameType.ERROR
            assert error.error.startswith(REFUSED_PREFIX) and "2 connections" in error.error
        deadline = time.monotonic() + TIMEOUT
        while True:  # the two closed: their slots come back
            with contextlib.suppress(AssertionError, OSError):
                if _echo_works(listener):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        listener.stop()


def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "tcp:127.0.0.1:0", "info", "--idle-timeout", "0.5")
    try:
        with connect(listener.address, timeout=TIMEOUT) as sock:
            _read_until_closed(sock)  # returns once the agent closes it
        assert _echo_works(listener)
    finally:
        listener.stop()
    assert any("nothing received" in line for line in listener.lines), listener.lines


def test_a_runner_stopping_inside_a_frame_is_cut_off(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "tcp:127.0.0.1:0", "info", "--idle-timeout", "0.5")
    try:
        with connect(listener.address, timeout=TIMEOUT) as sock:
            frame = Frame(type=FrameType.CONFIG).to_cbor()
            sock.sendall(frame + Frame(type=FrameType.SIGNAL, signal=2).to_cbor()[:3])
            _read_until_closed(sock)
    finally:
        listener.stop()
    assert any("inside a frame" in line for line in listener.lines), listener.lines


def test_an_idle_runner_with_a_running_command_is_waited_for(tmp_path: Path) -> None:
    listener = Listener(tmp_path, "tcp:127.0.0.1:0", "info", "--idle-timeout", "0.3")
    try:
        sock, mux = listener.connect()
        with contextlib.closing(sock):
            out = exec_on(mux, [sys.executable, "-c", "import time; time.sleep(1.5); print('ok')"])
            assert mux.wait(TIMEOUT) == 0 and out.data == b"ok\n"
    finally:
        listener.stop()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_quiet_connections_cost_little_memory(tmp_path: Path) -> None:
    """Each connection read one small frame; its read buffer must not be 4 MiB."""
    listener = Listener(tmp_path, f"unix:{tmp_path}/a.sock", "warning")
    socks: list[socket.socket] = []
    try:
        config = Frame(type=FrameType.CONFIG).to_cbor()

        def open_some(n: int) -> None:
            for _ in range(n):
                sock = connect(listener.address, timeout=TIMEOUT)
                sock.sendall(config)
                socks.append(sock)
            assert _echo_works(listener)  # every frame sent before this one was read

        open_some(5)
        before = _rss_kib(listener.proc.pid)
        open_some(60)
        per_connection = (_rss_kib(listener.proc.pid) - before) / 60
        assert per_connection < 1024, f"{per_connection:.0f} KiB per quiet connection"
    finally:
        for sock in socks:
            sock.close()
        listener.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-connections", "0"], "--max-connections 0: must be at least 1"),
        (["--idle-timeout", "-1.5"], "--idle-timeout -1.5: must be a positive number of seconds"),
    ],
)
def test_a_bad_limit_names_its_value(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentproto.agent", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"agentproto-agent: error: {message}"
