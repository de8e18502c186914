"""Text for people, in ONE place: escaping, times, sizes, durations, signal and level names.

Everything reclab shows of a recording goes through :func:`safe_text` or
:func:`safe_preview` (recorded bytes must never drive a terminal); the
formats are shared by the CLI, the tables and the coming TUI.
"""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime

__all__ = [
    "LEVELS",
    "format_duration",
    "format_offset",
    "format_size",
    "format_time",
    "level_name",
    "level_rank",
    "safe_preview",
    "safe_text",
    "signal_name",
]

# C0/C1 controls, DEL, the backslash (so escapes are unambiguous), zero-width
# and bidi formatting characters, line/paragraph separators, the BOM, and the
# lone surrogates that "surrogateescape" decoding makes of bytes that are not UTF-8.
_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]"
)
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape_within(text: str, limit: int | None, more: bool = False) -> str:
    """Escape ``text``; if it is longer than ``limit`` (or ``more`` follows), cut and add ``…``.

    The cut never falls inside an escape, so a shortened ``\\x1b`` is never
    mistaken for other text.
    """
    full = _UNSAFE.sub(_escape, text)
    if limit is None or (len(full) <= limit and not more):
        return full
    budget = max(limit - 1, 0)  # room for the "…"
    out: list[str] = []
    used = pos = 0
    for match in _UNSAFE.finditer(text):
        literal = text[pos : match.start()]
        if used + len(literal) >= budget:
            break
        out.append(literal)
        used += len(literal)
        escaped = _escape(match)
        if used + len(escaped) > budget:
            return "".join(out) + "…"
        out.append(escaped)
        used += len(escaped)
        pos = match.end()
    out.append(text[pos : pos + budget - used])
    return "".join(out) + "…"


def safe_text(text: str, limit: int | None = None) -> str:
    """``text`` with every control, formatting character and backslash escaped.

    The result is printable on one line and cannot act on a terminal;
    ``limit`` cuts it to at most that many characters (never inside an
    escape), ending with ``…``.
    """
    return _escape_within(text, limit)


def safe_preview(data: bytes, limit: int = 60) -> str:
    """A one-line, escaped preview of recorded bytes: UTF-8, other bytes as ``\\xNN``."""
    # Escapes only lengthen the text, so 4 bytes per shown character is plenty.
    head = data[: limit * 4 + 4]
    return _escape_within(head.decode("utf-8", "surrogateescape"), limit, len(head) < len(data))


def format_offset(seconds: float, step: float | None = None) -> str:
    """A time offset for an axis label, in the unit ``step`` calls for.

    ``0s``, ``250ms``, ``1.5s``, ``2m30s``, ``12µs``: whole minutes when the
    step is a minute or more, seconds when it is at least 0.1 s, then
    milliseconds and microseconds. Without ``step`` the value picks its own unit.
    """
    unit = step if step is not None and step > 0 else abs(seconds)
    if seconds == 0:
        return "0s"
    if unit >= 60:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    if unit >= 0.1:
        return f"{round(seconds, 6):g}s"
    if unit >= 1e-4:
        return f"{round(seconds * 1e3, 3):g}ms"
    return f"{round(seconds * 1e6, 3):g}µs"


def format_duration(seconds: float) -> str:
    """A duration for people: ``850ns``, ``12.3µs``, ``4.56ms``, ``1.23s``, ``2m03s``, ``1h02m``."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f}ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        minutes, secs = divmod(int(seconds), 60)
        return f"{minutes}m{secs:02d}s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def format_time(ns: int) -> str:
    """Unix nanoseconds as ISO 8601 UTC with microseconds (``2026-11-29T08:11:05.123456Z``)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ns}ns"  # out of datetime's range: a hostile or broken timestamp
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def format_size(n: int, *, compact: bool = False) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ``3.2 MiB``; compact: ``512B``, ``1.5K``."""
    value = float(n)
    units = ("B", "K", "M", "G") if compact else ("B", "KiB", "MiB", "GiB")
    space = "" if compact else " "
    for unit in units:
        if value < 1024 or unit == units[-1]:
            return f"{n}{space}B" if unit == "B" else f"{value:.1f}{space}{unit}"
        value /= 1024
    return f"{n}{space}B"  # pragma: no cover


def signal_name(number: int, *, with_number: bool = True) -> str:
    """A signal's name: ``SIGTERM (15)`` (``SIGTERM`` without the number), else ``-9``."""
    try:
        name = signal.Signals(number).name
    except (ValueError, OverflowError):
        return str(number)
    return f"{name} ({number})" if with_number else name


# Go slog's level names and values, lowest first.
LEVELS = {"DEBUG": -4, "INFO": 0, "WARN": 4, "ERROR": 8}


def level_name(level: int) -> str:
    """Go slog's name of a level: -4/0/4/8 are DEBUG/INFO/WARN/ERROR, others "INFO+2"."""
    base, value = "DEBUG", LEVELS["DEBUG"]
    for name, at in LEVELS.items():
        if level >= at:
            base, value = name, at
    return base if level == value else f"{base}{level - value:+d}"


def level_rank(name: str) -> tuple[int, int]:
    """Sort key of a level name from :func:`level_name` (``WARN+2`` after ``WARN``)."""
    for rank, base in enumerate(reversed(LEVELS)):
        if name.startswith(base):
            rest = name[len(base) :]
            try:
                return len(LEVELS) - 1 - rank, int(rest) if rest else 0
            except ValueError:
                break
    return len(LEVELS), 0
