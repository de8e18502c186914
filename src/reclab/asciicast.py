"""A command's terminal output as an asciicast v2 file (asciinema's format).

An asciicast v2 file is a JSON header line, then one JSON array per event:
``[seconds since start, "o", text]`` for output, ``"i"`` for input. The
recording holds bytes in frames that may split a multi-byte UTF-8 character
anywhere, so each stream keeps its own incremental decoder: a character cut
across two frames comes out whole in the second event, and bytes that are not
UTF-8 become U+FFFD, as a terminal would show them.

:func:`asciicast_events` is the pure core (timed chunks in, events out);
:func:`write_asciicast` reads a command from a recording and writes the file.
"""

from __future__ import annotations

import codecs
import json
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from agentproto import Direction, ExecMsg, FrameType

from .terminal import json_safe

if TYPE_CHECKING:
    from .model import Recording

__all__ = [
    "AsciicastHeader",
    "asciicast_events",
    "asciicast_header",
    "write_asciicast",
]

STDIN, STDOUT, STDERR = 0, 1, 2
_BARE_LF = re.compile(r"(?<!\r)\n")


@dataclass(frozen=True, slots=True)
class AsciicastHeader:
    """The first line of an asciicast v2 file."""

    width: int
    height: int
    timestamp: int | None = None  # Unix seconds of the command start
    command: str | None = None
    env: dict[str, str] | None = None
    idle_time_limit: float | None = None
    title: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The header as the JSON object asciinema expects (absent fields left out)."""
        out: dict[str, Any] = {"version": 2, "width": self.width, "height": self.height}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        if self.idle_time_limit is not None:
            out["idle_time_limit"] = self.idle_time_limit
        if self.command is not None:
            out["command"] = self.command
        if self.title is not None:
            out["title"] = self.title
        if self.env:
            out["env"] = self.env
        return out


def asciicast_header(
    exec_msg: ExecMsg,
    start_ns: int | None,
    *,
    width: int | None = None,
    height: int | None = None,
    idle_time_limit: float | None = None,
) -> AsciicastHeader:
    """Build the header for a command: its argv as ``command``, SHELL/TERM as ``env``.

    The terminal size defaults to the command's ``COLUMNS``/``LINES``
    environment variables when they are numbers, else 80x24.
    """
    env: dict[str, str] = {}
    for entry in exec_msg.env or []:
        key, sep, value = entry.partition("=")
        if sep:
            env[key] = value
    argv = exec_msg.argv or ([exec_msg.path] if exec_msg.path else [])
    return AsciicastHeader(
        width=width or _positive(env.get("COLUMNS")) or 80,
        height=height or _positive(env.get("LINES")) or 24,
        timestamp=start_ns // 1_000_000_000 if start_ns is not None else None,
        command=shlex.join(argv) if argv else None,
        env={k: env[k] for k in ("SHELL", "TERM") if k in env} or None,
        idle_time_limit=idle_time_limit,
    )


def _positive(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value <= 10_000 else None


def asciicast_events(
    chunks: Iterable[tuple[int, int, bytes]], start_ns: int
) -> Iterator[tuple[float, str, str]]:
    """Turn ``(timestamp_ns, stream, bytes)`` chunks into ``(seconds, code, text)`` events.

    Streams 1 and 2 (stdout, stderr) become ``"o"`` events, stream 0
    (stdin) ``"i"``; each stream is decoded as UTF-8 on its own, carrying an
    incomplete character to its next chunk. In output, a ``"\\n"`` not
    after a ``"\\r"`` becomes ``"\\r\\n"``, as a terminal's ``onlcr`` does. Times are relative to
    ``start_ns`` and never go backwards (players require that), clamped at 0.
    """
    decoders: dict[int, codecs.IncrementalDecoder] = {}
    last = 0.0
    after_cr = False  # the last output text ended with "\r"

    def event(stream: int, text: str) -> tuple[float, str, str]:
        nonlocal after_cr
        if stream == STDIN:
            return last, "i", text
        # The player's terminal is raw; the command wrote to a pipe, not a tty
        # whose onlcr would have turned each "\n" into "\r\n": do it here.
        if text[0] == "\n" and after_cr:
            text = "\n" + _BARE_LF.sub("\r\n", text[1:])
        else:
            text = _BARE_LF.sub("\r\n", text)
        after_cr = text[-1] == "\r"
        return last, "o", text

    for timestamp, stream, data in chunks:
        decoder = decoders.get(stream)
        if decoder is None:
            decoder = decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(data)
        last = max(last, round((timestamp - start_ns) / 1e9, 6))
        if text:
            yield event(stream, text)
    for stream, decoder in decoders.items():
        # A character still incomplete at the end is shown as U+FFFD.
        text = decoder.decode(b"", final=True)
        if text:
            yield event(stream, text)


def write_asciicast(
    rec: Recording,
    seq: int,
    fileobj: TextIO,
    *,
    width: int | None = None,
    height: int | None = None,
    input: bool = False,
    idle_time_limit: float | None = None,
) -> int:
    """Write command ``seq`` of ``rec`` to ``fileobj`` as asciicast v2; return the event count.

    Output events come from the stdout and stderr data the agent sent, in
    recorded order; with ``input`` the stdin data the runner sent is added as
    ``"i"`` events. Times are relative to the command start (its first frame
    when the start was not recorded). Raises ``UnknownCommandError`` for an
    unknown ``seq``.
    """
    command = rec.command(seq)
    start = command.start_time
    if start is None:
        start = command.first_frame_time if command.first_frame_time is not None else 0
    header = asciicast_header(
        command.exec, start, width=width, height=height, idle_time_limit=idle_time_limit
    )
    fileobj.write(json_safe(json.dumps(header.to_json(), ensure_ascii=False)) + "\n")
    count = 0
    for event in asciicast_events(_terminal_chunks(rec, seq, input), start):
        fileobj.write(json_safe(json.dumps(list(event), ensure_ascii=False)) + "\n")
        count += 1
    return count


def _terminal_chunks(rec: Recording, seq: int, input: bool) -> Iterator[tuple[int, int, bytes]]:
    for ref in rec.frames(seq):
        frame = ref.frame
        if frame.type != FrameType.DATA or not frame.data:
            continue
        if ref.direction == Direction.RECV and frame.stream in (STDOUT, STDERR):
            yield ref.timestamp, frame.stream, frame.data
        elif input and ref.direction == Direction.SEND and frame.stream == STDIN:
            yield ref.timestamp, STDIN, frame.data
