"""reclab.tui.safe: recorded bytes become Text that cannot act on a terminal."""

from __future__ import annotations

import pytest
from rich.console import Console

from reclab.tui.safe import (
    ESCAPE_STYLE,
    OutputDecoder,
    escape_char,
    escape_text,
    hex_dump_line,
    looks_binary,
    output_line,
)

# Bytes that make a terminal act: C0/C1 controls (ESC and CSI included), DEL,
# bidi overrides and isolates, zero-width characters, BOM.
DANGEROUS = (
    [chr(c) for c in range(0x20) if chr(c) != "\t"]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\u200f", "\ufeff"]
)


def _rendered(text: str) -> str:
    """What a terminal would receive for the line, styles included."""
    console = Console(width=400, color_system="truecolor", force_terminal=True, record=True)
    with console.capture() as cap:
        console.print(output_line(text), end="")
    return cap.get()


def test_sgr_colours_are_kept_as_styles() -> None:
    line = output_line("\x1b[31mred\x1b[0m plain \x1b[1;32mbold green\x1b[m")
    assert line.plain == "red plain bold green"
    styles = {line.plain[s.start : s.end]: str(s.style) for s in line.spans}
    assert "red" in styles["red"] or "color(1)" in styles["red"]
    assert "bold" in styles["bold green"]


def test_sgr_cannot_hide_text() -> None:
    line = output_line("\x1b[8msecret\x1b[0m \x1b[5mblink")
    rendered = _rendered("\x1b[8msecret\x1b[0m \x1b[5mblink")
    assert line.plain == "secret blink"
    assert "\x1b[8m" not in rendered and "\x1b[5m" not in rendered


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]52;c;aGVsbG8=\x07", "\\e]52;c;aGVsbG8=\\a"),  # clipboard write, BEL-terminated
        ("\x1b]52;c;aGVsbG8=\x1b\\", "\\e]52;c;aGVsbG8=\\e\\\\"),  # ST-terminated
        ("\x1b]0;owned\x07", "\\e]0;owned\\a"),  # window title
        ("\x1b[2J\x1b[H", "\\e[2J\\e[H"),  # clear screen, cursor home
        ("\x1b[10;20H", "\\e[10;20H"),  # cursor movement
        ("\x9b31m", "\\x9b31m"),  # 8-bit CSI
        ("\x9d0;t\x9c", "\\x9d0;t\\x9c"),  # 8-bit OSC and ST
        ("\x1bc", "\\ec"),  # full reset
        ("a\u202eb", "a\\u202eb"),  # bidi override
        ("\x00\x7f\x85", "\\x00\\x7f\\x85"),
        ("\r", "\\r"),
        ("bad \udcff byte", "bad \\xff byte"),
    ],
)
def test_other_escapes_are_shown_not_obeyed(raw: str, shown: str) -> None:
    line = output_line(raw)
    assert line.plain == shown
    rendered = _rendered(raw)
    for ch in DANGEROUS:
        if ch != "\x1b":
            assert ch not in rendered
    # The only escapes reaching a terminal are the SGR Rich writes itself.
    assert all(
        part.split("m", 1)[0].replace(";", "").isdigit() for part in rendered.split("\x1b[")[1:]
    )


def test_escapes_are_styled_apart_from_text() -> None:
    line = output_line("x\x1b[2Jy")
    (span,) = line.spans
    assert (line.plain[span.start : span.end], span.style) == ("\\e[2J", ESCAPE_STYLE)


def test_every_dangerous_character_is_escaped() -> None:
    text = "".join(DANGEROUS)
    line = output_line(text)
    assert not any(ch in line.plain for ch in DANGEROUS)


def test_tabs_expand_to_tab_stops() -> None:
    assert output_line("a\tb\x1b[31m\tc").plain == "a       b       c"


def test_decoder_keeps_colour_across_lines() -> None:
    decoder = OutputDecoder()
    decoder.line("\x1b[31mstart")
    second = decoder.line("still red")
    assert second.spans and "color(1)" in str(second.spans[0].style)


def test_escape_text_and_char() -> None:
    assert escape_text("a\\b\x1b\u202e") == "a\\\\b\\e\\u202e"
    assert escape_char("\udc80") == "\\x80"


def test_hex_dump_line() -> None:
    line = hex_dump_line(b"hello\x00\x1b[2J world!!", 0x1234)
    assert line.plain == (
        "00001234  68 65 6c 6c 6f 00 1b 5b  32 4a 20 77 6f 72 6c 64  |hello..[2J world|"
    )
    assert hex_dump_line(b"ab", 0).plain.endswith("|ab|")


def test_looks_binary() -> None:
    assert not looks_binary(b"plain text\n\x1b[31mred\x1b[0m\r\n\ttab")
    assert not looks_binary("caf\u00e9".encode()[:-1])  # a character cut at the end
    assert looks_binary(b"\x7fELF\x02\x01\x01\x00\x00")
    assert looks_binary(bytes(range(1, 32)) * 4)
    assert not looks_binary(b"")
