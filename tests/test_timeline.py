"""reclab.timeline: escaping, axis steps and labels, the Gantt chart, frame descriptions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentproto import (
    AgentConfig,
    Direction,
    ExecMsg,
    FileDirEntry,
    FileOp,
    FileOpReq,
    FileOpResp,
    FileStat,
    Frame,
    FrameType,
    LogEntry,
    PathInfo,
    PathInfoEntry,
    PathQuery,
)
from reclab.timeline import (
    Span,
    format_duration,
    format_offset,
    frame_row,
    nice_step,
    render_frames,
    render_gantt,
    safe_preview,
    safe_text,
)

S = 1_000_000_000


# --- escaping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"plain text", "plain text"),
        (b"a\nb\rc\td", "a\\nb\\rc\\td"),
        (b"\x1b[31mred\x1b[0m", "\\e[31mred\\e[0m"),
        (b"\x00\x07\x7f", "\\x00\\x07\\x7f"),
        (b"back\\slash \\x41", "back\\\\slash \\\\x41"),  # a literal "\x41" stays distinct
        (b"bad \xff\xfe byte", "bad \\xff\\xfe byte"),
        ("é 日本 🙂".encode(), "é 日本 🙂"),
        ("\u202eevil\u2066".encode(), "\\u202eevil\\u2066"),  # bidi overrides
        ("\u0085\u009b2J".encode(), "\\x85\\x9b2J"),  # C1 controls, incl. CSI
        ("a\u2028b\ufeff".encode(), "a\\u2028b\\ufeff"),
    ],
)
def test_safe_preview(data: bytes, expected: str) -> None:
    assert safe_preview(data, 200) == expected


def test_safe_preview_limit() -> None:
    assert safe_preview(b"x" * 100, 10) == "x" * 9 + "…"
    assert safe_preview(b"\n" * 100, 10) == "\\n" * 4 + "…"  # never half an escape
    assert safe_preview(b"ab\x1bc", 4) == "ab…"
    assert safe_preview(b"ab\x1bc", 5) == "ab\\ec"  # fits exactly
    assert safe_preview(b"ab\x1bcd", 5) == "ab\\e…"
    # a long frame is previewed without decoding all of it
    assert safe_preview(b"y" * 10_000_000, 20).endswith("…")
    assert safe_text("abcdef", 4) == "abc…"


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_preview_never_contains_controls(data: bytes) -> None:
    out = safe_preview(data, 1000)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in out)
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in out)
    assert not any(0x202A <= ord(ch) <= 0x202E or 0x2066 <= ord(ch) <= 0x2069 for ch in out)


# --- axis ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "ticks", "step"),
    [(10.0, 5, 2.0), (10.0, 4, 5.0), (0.003, 3, 0.001), (7200.0, 6, 2000.0), (1.0, 1, 1.0)],
)
def test_nice_step(total: float, ticks: int, step: float) -> None:
    assert nice_step(total, ticks) == pytest.approx(step)


@pytest.mark.parametrize(
    ("seconds", "step", "text"),
    [
        (0.0, 1.0, "0s"),
        (1.5, 0.5, "1.5s"),
        (2.0, 1.0, "2s"),
        (0.25, 0.05, "250ms"),
        (0.000012, 0.000002, "12µs"),
        (150.0, 60.0, "2m30s"),
        (120.0, 60.0, "2m"),
    ],
)
def test_format_offset(seconds: float, step: float, text: str) -> None:
    assert format_offset(seconds, step) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.00000085, "850ns"),
        (0.0000123, "12.3µs"),
        (0.00456, "4.56ms"),
        (1.234, "1.23s"),
        (123.0, "2m03s"),
        (3720.0, "1h02m"),
        (-1.5, "-1.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- the Gantt chart ----------------------------------------------------------------------


def _bars(line: str) -> tuple[int, int]:
    cols = [i for i, ch in enumerate(line) if ch in "█▏▎▍▌▋▊▉"]
    return cols[0], cols[-1]


def test_gantt_overlap_colour_and_axis() -> None:
    spans = [
        Span(1, "make", 0, 4 * S, 0, True),
        Span(2, "test", 2 * S, 6 * S, 1, True),
        Span(3, "sleep 100", 7 * S, 8 * S, None, False),
    ]
    lines = render_gantt(spans, 80, origin=0, until=10 * S)
    plain = [ln.plain for ln in lines]
    assert all(len(p) <= 80 for p in plain)
    (a1, b1), (a2, b2), (a3, b3) = (_bars(p) for p in plain[:3])
    assert a1 < a2 < b1 < b2 < a3 <= b3  # 1 and 2 overlap, 3 after both
    width = plain[3].index("┘") - plain[3].index("└") - 1
    # proportions: command 1 is 40% of the axis, command 2 starts at 20%
    assert (b1 - a1 + 1) == pytest.approx(width * 0.4, abs=1)
    assert (a2 - a1) == pytest.approx(width * 0.2, abs=1)
    styles = [{str(s.style) for s in ln.spans} for ln in lines[:3]]
    assert "green" in styles[0] and "red" in styles[1] and "yellow" in styles[2]
    assert plain[2].rstrip().endswith("…")  # no recorded end
    labels = plain[4].split()
    assert labels[0] == "0s" and labels[-1] == "10s"


def test_gantt_degenerate_inputs() -> None:
    assert render_gantt([], 80)[0].plain.startswith("no commands")
    one = render_gantt([Span(1, "x", 5 * S, 5 * S, 0, True)], 60)
    assert "▏" in one[0].plain and len(one) == 3
    hostile = render_gantt([Span(1, "\x1b[2Jrm -rf /\n", 0, S, 0, True)], 60)
    assert "\x1b" not in hostile[0].plain and "\n" not in hostile[0].plain


# --- frame rows ---------------------------------------------------------------------------

SEND, RECV = int(Direction.SEND), int(Direction.RECV)


@pytest.mark.parametrize(
    ("frame", "direction", "kind", "stream", "size", "preview"),
    [
        (Frame(type=FrameType.DATA, stream=2, data=b"err\n"), RECV, "DATA", 2, 4, "err\\n"),
        (Frame(type=FrameType.EOF, stream=0), SEND, "EOF", 0, 0, ""),
        (
            Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/sh", argv=["sh", "-c", "a b"])),
            SEND,
            "EXEC",
            None,
            0,
            "sh -c 'a b'",
        ),
        (Frame(type=FrameType.SIGNAL, signal=9), SEND, "SIGNAL", None, 0, "signal SIGKILL (9)"),
        (Frame(type=FrameType.SIGNAL, signal=-3), SEND, "SIGNAL", None, 0, "signal -3"),
        (Frame(type=FrameType.EXIT, code=-1), RECV, "EXIT", None, 0, "exit code -1"),
        (Frame(type=FrameType.ERROR, error="x\ty"), RECV, "ERROR", None, 0, "x\\ty"),
        (
            Frame(type=FrameType.LOG, log=LogEntry(level=8, msg="m", attrs=["a=1"])),
            RECV,
            "LOG",
            None,
            0,
            "ERROR m a=1",
        ),
        (
            Frame(type=FrameType.CONFIG, config=AgentConfig(env_keep=["PATH"])),
            SEND,
            "CONFIG",
            None,
            0,
            "env_keep ['PATH'] env_remove []",
        ),
        (
            Frame(type=FrameType.PATH_QUERY, query=PathQuery()),
            SEND,
            "PATH_QUERY",
            None,
            0,
            "(agent's $PATH)",
        ),
        (
            Frame(
                type=FrameType.PATH_INFO,
                info=PathInfo(entries=[PathInfoEntry(name="ls", remote_path="/bin/ls")]),
            ),
            RECV,
            "PATH_INFO",
            None,
            0,
            "1 executables",
        ),
        (
            Frame(
                type=FrameType.FILE_OP,
                file_op=FileOpReq(req_id=4, op=FileOp.WRITE_AT, handle=3, offset=8, data=b"abc"),
            ),
            SEND,
            "FILE_OP",
            None,
            3,
            "#4 WRITE_AT h=3 off=8 size=0",
        ),
        (
            Frame(
                type=FrameType.FILE_RESP,
                file_resp=FileOpResp(req_id=4, errno=13, err_msg="permission denied"),
            ),
            RECV,
            "FILE_RESP",
            None,
            0,
            "#4 errno 13 permission denied",
        ),
        (
            Frame(
                type=FrameType.FILE_RESP,
                file_resp=FileOpResp(
                    req_id=5, n=2, eof=True, data=b"hi", entries=[FileDirEntry(FileStat(name="a"))]
                ),
            ),
            RECV,
            "FILE_RESP",
            None,
            2,
            "#5 ok n=2 eof 1 entries",
        ),
        (Frame(type=77), RECV, "type-77", None, 0, "frame type 77"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_frame_row(
    frame: Frame, direction: int, kind: str, stream: int | None, size: int, preview: str
) -> None:
    row = frame_row(3, 300, 10 * S + 123_000, direction, frame, 10 * S, 60)
    assert (row.type, row.stream, row.size, row.preview) == (kind, stream, size, preview)
    assert row.time == pytest.approx(0.000123)
    (line,) = render_frames([row])
    arrow = "→" if direction == SEND else "←"
    assert line.plain.startswith(f"+0.000123s {arrow} {kind}")
