"""Recorded bytes turned into Rich ``Text`` that cannot act on the user's terminal.

A command's output is whatever the remote program wrote: colours, but also
clipboard writes (OSC 52), title changes, cursor movement, screen clears, C1
controls, bidi overrides that reorder what the reader sees. Rich keeps only
the styles it understands but lets stray control codes through, and they break
its width arithmetic (see tui-notes.md). So every piece of recorded text goes
through :func:`output_line` or :func:`escape_text` first:

- SGR sequences (``ESC [ ... m``: colours, bold...) are applied as styles;
  concealed and blinking text is shown plainly, so nothing is hidden.
- Every other escape sequence is shown, not obeyed: ``\\e]52;c;aGk=\\x07``,
  ``\\e[2J``, in :data:`ESCAPE_STYLE`.
- Other controls (C0 but newline, C1, DEL), zero-width and bidi formatting
  characters, and bytes that are not UTF-8 appear as ``\\xNN`` / ``\\uNNNN``.

Binary data is shown with :func:`hex_dump_line`.
"""

from __future__ import annotations

import re

from rich.ansi import AnsiDecoder
from rich.style import Style
from rich.text import Span, Text

__all__ = [
    "ESCAPE_STYLE",
    "escape_char",
    "escape_text",
    "hex_dump_line",
    "looks_binary",
    "output_line",
]

ESCAPE_STYLE = Style(color="magenta", italic=True)
"""How a neutralised escape sequence or control character is shown."""

# Styles a hostile SGR could use to hide or animate text: switched off.
_NEUTRAL = Style(conceal=False, blink=False, blink2=False)

# One token per match: an SGR sequence (kept), any other escape sequence
# (shown), or a single unsafe character (shown). Sequences follow ECMA-48:
# CSI = ESC [ params intermediates final; OSC/DCS/SOS/PM/APC strings run to
# BEL or ST; 8-bit C1 CSI (0x9b) and OSC (0x9d) are matched too.
_TOKEN = re.compile(
    r"(?P<sgr>\x1b\[[0-9;]*m)"
    r"|(?P<seq>"
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # strings
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"  # other escapes (ESC 7, ESC c, ESC ( B ...)
    r")"
    r"|(?P<char>[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
    r"\u2060-\u206f\ufeff\ud800-\udfff])"
)
# Characters the escaped form of a sequence must also neutralise.
_UNSAFE_CHAR = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff\\]"
)
_NAMED = {"\x1b": "\\e", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", "\x07": "\\a"}


def escape_char(ch: str) -> str:
    """The visible form of one unsafe character: ``\\e``, ``\\xNN``, ``\\uNNNN``.

    A byte that was not UTF-8 (decoded with ``surrogateescape``) is shown as
    the byte it was, ``\\xNN``.
    """
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_text(text: str) -> str:
    """``text`` with every control, formatting character and backslash written visibly."""
    return _UNSAFE_CHAR.sub(lambda m: escape_char(m.group()), text)


class OutputDecoder:
    """Turns lines of one stream into safe ``Text``, carrying SGR state between lines.

    A program sets a colour on one line and resets it lines later; one decoder
    per stream keeps that state, as a terminal would. ``tab_size`` expands tabs.
    """

    def __init__(self, tab_size: int = 8, style: Style | None = None) -> None:
        self._sgr = AnsiDecoder()
        if style is not None:
            self._sgr.style = style
        self.tab_size = tab_size

    @property
    def style(self) -> Style:
        """The SGR state after the lines decoded so far (to start another decoder there)."""
        return self._sgr.style

    def line(self, text: str) -> Text:
        """One line of output (no newline) as safe, styled ``Text``."""
        out = Text(no_wrap=True, end="")
        pos = 0
        for m in _TOKEN.finditer(text):
            if m.lastgroup == "sgr":
                continue  # stays in the printable run: AnsiDecoder applies it
            self._flush(out, text[pos : m.start()])
            token = m.group()
            if token == "\t":
                out.append(" " * (self.tab_size - out.cell_len % self.tab_size))
            else:
                out.append(_UNSAFE_CHAR.sub(lambda c: escape_char(c.group()), token), ESCAPE_STYLE)
            pos = m.end()
        self._flush(out, text[pos:])
        return out

    def _flush(self, out: Text, run: str) -> None:
        if not run:
            return
        piece = self._sgr.decode_line(run)  # only SGR and printable text reach it
        start = len(out)
        out.append(piece.plain)
        for span in piece.spans:
            style = span.style
            if isinstance(style, Style):
                style = style + _NEUTRAL
            out.spans.append(Span(start + span.start, start + span.end, style))


def output_line(text: str, tab_size: int = 8) -> Text:
    """One line of recorded output as safe ``Text`` (SGR applied, the rest shown).

    For several lines of one stream use :class:`OutputDecoder`, which keeps
    colours set on earlier lines.
    """
    return OutputDecoder(tab_size).line(text)


_BINARY_HINTS = frozenset(chr(c) for c in range(32) if chr(c) not in "\n\r\t\x1b\x08")


def looks_binary(sample: bytes) -> bool:
    """True when ``sample`` looks like binary data rather than text.

    Text is valid UTF-8 (a character cut at the end is allowed) with few
    controls other than newline, tab, CR and ESC; NUL bytes mean binary.
    """
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    # A character cut by the end of the sample is not a sign of binary.
    text = sample.decode("utf-8", "surrogateescape")
    body = text[:-3] if len(text) > 3 else text
    bad = sum(1 for ch in body if ch in _BINARY_HINTS or "\udc80" <= ch <= "\udcff")
    return bad * 10 > len(text)


def hex_dump_line(data: bytes, offset: int) -> Text:
    """One hex-dump line: ``offset  16 bytes in hex  |printable ASCII|``.

    ``offset`` is printed as given (a file offset or a stream position);
    bytes outside printable ASCII show as ``.``.
    """
    hexes = " ".join(f"{b:02x}" for b in data[:8])
    if len(data) > 8:
        hexes += "  " + " ".join(f"{b:02x}" for b in data[8:16])
    ascii_ = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data[:16])
    line = Text(no_wrap=True, end="")
    line.append(f"{offset:08x}  ", style="dim")
    line.append(f"{hexes:<49} ")
    line.append(f"|{ascii_}|", style="cyan")
    return line
