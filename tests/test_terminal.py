"""Recorded bytes reach a terminal harmlessly: SGR kept, everything else shown escaped."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentproto import Direction, ExecMsg, Frame, FrameType, Recorder
from reclab.terminal import TerminalFilter, json_safe, sanitize

HOSTILE = [
    (b"\x1b]52;c;aGVsbG8=\x07", rb"\e]52;c;aGVsbG8=\a"),  # clipboard write (BEL)
    (b"\x1b]0;pwned\x1b\\", rb"\e]0;pwned\e" + b"\\"),  # window title (ST)
    (b"\x1b[2J\x1b[H", rb"\e[2J\e[H"),  # clear screen, cursor home
    (b"\x1b[10;5H", rb"\e[10;5H"),  # cursor movement
    (b"\x1bPqdcs\x1b\\", rb"\ePqdcs\e" + b"\\"),  # DCS
    (b"\x1bc", rb"\ec"),  # full reset
    ("\u009b31m".encode(), rb"\x9b31m"),  # C1 CSI, as UTF-8
    (b"\x9b31m", rb"\x9b31m"),  # C1 CSI, raw byte
    ("abc\u202edcba".encode(), rb"abc\u202edcba"),  # bidi override
    (b"bell\x07", rb"bell\a"),
    (b"\x1b", rb"\e"),  # a lone ESC at the end
]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_hostile_sequences_are_shown_not_acted_on(raw: bytes, shown: bytes) -> None:
    assert sanitize(raw) == shown


def test_text_colour_and_layout_pass_through() -> None:
    text = "ok \x1b[1;31mred\x1b[0m\ttab\r\nnext line, naïve ✓\n".encode()
    assert sanitize(text) == text


@pytest.mark.parametrize("cut", range(1, 20))
def test_sequences_and_characters_split_across_chunks(cut: int) -> None:
    data = "a\x1b[31mé\x1b]52;c;eA==\x07ü\x1b[0m".encode()
    f = TerminalFilter()
    out = f.feed(data[:cut]) + f.feed(data[cut:]) + f.flush()
    assert out == sanitize(data) == "a\x1b[31mé".encode() + rb"\e]52;c;eA==\a" + "ü\x1b[0m".encode()


def test_an_endless_string_sequence_is_not_held_forever() -> None:
    f = TerminalFilter()
    out = f.feed(b"\x1b]52;c;" + b"A" * 70000)
    assert out.startswith(rb"\e]52;c;AAA") and len(out) > 70000


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_output_never_holds_a_live_escape_but_sgr(chunks: list[bytes]) -> None:
    f = TerminalFilter()
    out = b"".join(f.feed(c) for c in chunks) + f.flush()
    # every ESC left is the start of an SGR sequence; no C0/C1 controls but \t \n \r
    for i in range(len(out)):
        if out[i] == 0x1B:
            end = out.index(b"m", i)
            assert out[i + 1 : i + 2] == b"[" and all(
                c in b"0123456789;:" for c in out[i + 2 : end]
            )
    text = out.decode("utf-8")
    assert not any(0x80 <= ord(c) <= 0x9F or c in "\u202e\u2066" for c in text)
    assert not any(ord(c) < 0x20 and c not in "\t\n\r\x1b" for c in text)


def test_json_safe_escapes_c1_and_bidi() -> None:
    doc = json.dumps({"argv": ["x\u009b2J", "\u202eevil"]}, ensure_ascii=False)
    safe = json_safe(doc)
    assert "\u009b" not in safe and "\u202e" not in safe
    assert json.loads(safe) == json.loads(doc)


def _hostile_recording(path: Path) -> bytes:
    out = b"title\x1b]0;pwned\x07 clip\x1b]52;c;aGVsbG8=\x07 \x1b[31mred\x1b[0m\x1b[2J\n"
    with Recorder(path) as rec:
        rec.write_session_header()
        seq = rec.write_command_start(ExecMsg(path="/bin/sh", argv=["sh"], env=None))
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=out))
        rec.write_command_end(seq, 0)
    return out


def _cat_on_a_terminal(path: Path, *extra: str) -> bytes:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "reclab", "cat", str(path), "--seq", "1", *extra],
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=60,
            check=True,
        )
        assert proc.stderr == b""
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).replace(b"\r\n", b"\n")
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)


def test_cat_to_a_terminal_shows_escapes_unless_raw(tmp_path: Path) -> None:
    path = tmp_path / "hostile.cbor"
    recorded = _hostile_recording(path)
    shown = _cat_on_a_terminal(path)
    assert b"\x1b]" not in shown and b"\x1b[2J" not in shown
    assert rb"\e]52;c;aGVsbG8=\a" in shown and b"\x1b[31mred\x1b[0m" in shown
    assert _cat_on_a_terminal(path, "--raw") == recorded
    piped = subprocess.run(
        [sys.executable, "-m", "reclab", "cat", str(path), "--seq", "1"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert piped.stdout == recorded  # to a pipe or file: byte-exact


def test_export_to_a_terminal_shows_escapes(tmp_path: Path) -> None:
    path = tmp_path / "hostile.cbor"
    with Recorder(path) as rec:
        rec.write_session_header()
        argv = ["sh", "-c", "\x1b]52;c;aGk=\x07 \x1b[2J"]
        rec.write_command_start(ExecMsg(path="/bin/sh", argv=argv, env=None))
        rec.write_command_end(1, 0)
    primary, secondary = pty.openpty()
    try:
        subprocess.run(
            [sys.executable, "-m", "reclab", "export", str(path), "--csv"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            timeout=60,
            check=True,
        )
        os.close(secondary)
        secondary = -1
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert b"\x1b]52" not in shown and b"\x1b[2J" not in shown
    assert rb"\e]52;c;aGk=\a" in shown
    piped = subprocess.run(
        [sys.executable, "-m", "reclab", "export", str(path), "--csv"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"\x1b]52;c;aGk=\x07" in piped.stdout  # to a pipe: as recorded
