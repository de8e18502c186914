"""Recorded bytes made safe for a terminal, and JSON made safe for one too.

Recorded output can carry escape sequences that write the clipboard (OSC 52),
retitle the window, clear the screen, move the cursor or reorder text (bidi
overrides). When reclab writes recorded bytes to a *terminal* it passes only
what cannot act on it: text, newlines, tabs, carriage returns and colour
(SGR, ``ESC [ ... m``). Everything else is shown as a visible escape
(``\\e]52;c;…\\a``, ``\\x9b``, ``\\u202e``) so the reader sees that it was
there. To a pipe or a file reclab stays byte-exact; this module is not used.

:class:`TerminalFilter` works on a stream of chunks: a sequence or a UTF-8
character split across two chunks is handled whole.
"""

from __future__ import annotations

import codecs
import re
from typing import BinaryIO

# Sequences an escape can start. SGR is kept; every other one is shown escaped.
_SEQUENCE = re.compile(
    rb"\x1b\[[0-9;:]*m"  # SGR: colour and style (kept)
    rb"|\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"  # other CSI: cursor, erase, modes
    rb"|\x1b[\]PX^_][\s\S]*?(?:\x07|\x1b\\)"  # OSC, DCS, SOS, PM, APC up to BEL or ST
    # two-byte and nF escapes (not the openers of CSI and string sequences above)
    rb"|\x1b[\x20-\x2f]*[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]"
)
_SGR = re.compile(rb"\x1b\[[0-9;:]*m\Z")

# A string sequence (OSC, DCS...) longer than this is not held back waiting for its end.
MAX_PENDING = 64 * 1024

# Characters that act on a terminal or reorder text: C0 (but \t \n \r), DEL, C1, bidi controls,
# line/paragraph separators.
_UNSAFE_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\udc80-\udcff]"
)
_NAMED = {"\x1b": "\\e", "\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f", "\x00": "\\0"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape_unsafe(text: str) -> str:
    """``text`` with every character that could act on a terminal shown as an escape."""
    return _UNSAFE_CHARS.sub(_escape_char, text)


class TerminalFilter:
    """Turn recorded bytes, chunk by chunk, into bytes safe to write to a terminal."""

    def __init__(self) -> None:
        self._pending = b""
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    def _text(self, data: bytes, final: bool = False) -> bytes:
        text = self._decoder.decode(data, final)
        return escape_unsafe(text).encode("utf-8", "surrogateescape")

    def feed(self, data: bytes) -> bytes:
        """The safe form of ``data``; an unfinished trailing sequence waits for the next chunk."""
        buf = self._pending + data
        self._pending = b""
        out = []
        pos = 0
        while True:
            esc = buf.find(b"\x1b", pos)
            if esc < 0:
                out.append(self._text(buf[pos:]))
                break
            # ESC never continues a UTF-8 character: what is pending before it is complete
            out.append(self._text(buf[pos:esc], final=True))
            match = _SEQUENCE.match(buf, esc)
            if match is None:
                if len(buf) - esc < MAX_PENDING and _may_continue(buf[esc:]):
                    self._pending = buf[esc:]  # the rest of it is in the next chunk
                    break
                out.append(self._text(b"\x1b"))  # a lone ESC: shown, and the rest is text
                pos = esc + 1
                continue
            sequence = match.group()
            if _SGR.match(sequence):
                out.append(sequence)
            else:
                out.append(escape_unsafe(sequence.decode("latin-1")).encode())
            pos = match.end()
        return b"".join(out)

    def flush(self) -> bytes:
        """Whatever was held back, shown escaped: the stream has ended."""
        rest, self._pending = self._pending, b""
        return self._text(rest, final=True)


def _may_continue(tail: bytes) -> bool:
    """True when ``tail`` (starting with ESC) could still become a complete sequence."""
    if len(tail) == 1:
        return True
    second = tail[1:2]
    if second == b"[":
        return re.fullmatch(rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*", tail) is not None
    if second in (b"]", b"P", b"X", b"^", b"_"):
        return True  # a string sequence runs until BEL or ST
    return re.fullmatch(rb"\x1b[\x20-\x2f]*", tail) is not None


def sanitize(data: bytes) -> bytes:
    """The terminal-safe form of a whole byte string (see :class:`TerminalFilter`)."""
    f = TerminalFilter()
    return f.feed(data) + f.flush()


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_safe(document: str) -> str:
    """Serialised JSON with C1 controls, bidi controls and line separators as ``\\uXXXX``.

    ``json.dumps(..., ensure_ascii=False)`` leaves them raw, and a terminal
    acts on them; inside JSON strings the escaped form means the same.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)


class TerminalText:
    """A text stream to a terminal whose writes pass through a :class:`TerminalFilter`.

    For commands that write recorded values as text (``reclab export`` of a
    table to stdout): on a terminal they cannot act on it. Call
    :meth:`finish` at the end to write what the filter still holds.
    """

    def __init__(self, binary: BinaryIO) -> None:
        self._out = binary
        self._filter = TerminalFilter()

    def write(self, text: str) -> int:
        self._out.write(self._filter.feed(text.encode("utf-8", "surrogateescape")))
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        self._out.write(self._filter.flush())
        self._out.flush()
