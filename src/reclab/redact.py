"""Mask secrets in a recording, writing a new recording that Go still reads.

Recordings hold environments, command lines and output, so they hold
secrets. :func:`redact_recording` copies a recording record by record and
masks:

- **environment values** whose names look secret (:func:`is_secret_name`:
  TOKEN, SECRET, PASSWORD, PASSWD, KEY, CREDENTIAL, AUTH, plus extra
  patterns), in command-start records and in Exec frames: ``NAME=[REDACTED]``;
- **byte patterns** in stream data (stdin, stdout, stderr, extra fds) and in
  file-op data, replaced by as many ``*`` bytes, so every size, offset and
  byte count in the recording stays true. Stream data is matched as one
  stream, so a secret split across two frames is still found;
- **log messages and attributes**, with the same patterns;
- **argv** on request: ``NAME=value`` and ``--password value`` style
  arguments, and the data patterns.

It never changes the record structure: the output has the same records in
the same order, encoded exactly as Go encodes them.
"""

from __future__ import annotations

import bisect
import fnmatch
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, cast

from agentproto import ExecMsg, Frame, FrameType, Record, RecordType, iter_records
from agentproto.errors import RemoteProtocolError, TruncatedError
from agentproto.layout import next_record_start
from agentproto.recording import MissingFooterError

from .errors import ReclabError
from .files import atomic_output

MASKED_VALUE = "***"  # how every viewer and `reclab redact` show a masked value
MASK_BYTE = b"*"

# Parts of an environment name that mark its value as secret (matched case-insensitively).
SECRET_NAME_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH")

_SECRET_WORDS_RE = "|".join(SECRET_NAME_WORDS)
_NAME_CHARS = rb"[A-Za-z0-9_.-]"

# The default byte patterns: common key formats, and NAME=value where NAME
# looks secret (what `env` or a config dump prints). A group named "secret"
# is what gets masked; without one, the whole match is.
DEFAULT_DATA_PATTERNS: dict[str, bytes] = {
    "secret-assignment": (
        rb"(?i)\b"
        + _NAME_CHARS
        + rb"*(?:"
        + _SECRET_WORDS_RE.encode()
        + rb")"
        + _NAME_CHARS
        + rb"*[ \t]*[=:][ \t]*[\"']?(?!(?:bearer|basic)\b)(?P<secret>[^\s\"']{4,})"
    ),
    "private-key": (
        rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]{0,16384}?-----END [A-Z0-9 ]*PRIVATE KEY-----"
    ),
    "aws-access-key-id": rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "github-token": rb"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b",
    "slack-token": rb"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    "bearer-token": rb"(?i)\bbearer[ \t]+(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
    "jwt": rb"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    "url-password": rb"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:(?P<secret>[^\s/@]+)@",
}

_DEFAULT_COMPILED = {name: re.compile(rx) for name, rx in DEFAULT_DATA_PATTERNS.items()}
_SECRET_FLAG = re.compile(rf"^--?[A-Za-z0-9_.-]*(?:{_SECRET_WORDS_RE})[A-Za-z0-9_.-]*$", re.I)

# How far back a stream match may start before the frame that completes it.
# Longer secrets split across frames are still masked in the frame they end in.
STREAM_OVERLAP = 16384 + 1024


class RedactError(ReclabError, ValueError):
    """The redaction cannot be done (bad pattern, unreadable input, output exists)."""


def is_secret_name(name: str, extra: Sequence[str] = ()) -> bool:
    """True when an environment variable's name looks like it holds a secret.

    Matches :data:`SECRET_NAME_WORDS` anywhere in the name, case-insensitively
    (``AWS_SECRET_ACCESS_KEY``, ``github_token``, ``DB_PASSWD``), and any
    ``extra`` pattern: a glob (``MY_*``) or a ``/regex/``.
    """
    upper = name.upper()
    if any(word in upper for word in SECRET_NAME_WORDS):
        return True
    for pattern in extra:
        if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
            if re.search(pattern[1:-1], name):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def mask_env(env: Iterable[str], extra: Sequence[str] = (), *, reveal: bool = False) -> list[str]:
    """``NAME=value`` entries with the values of secret-looking names replaced.

    ``reveal`` returns them unchanged: the one switch every viewer offers.
    Entries without ``=`` are kept as they are.
    """
    if reveal:
        return list(env)
    out = []
    for entry in env:
        name, eq, _value = entry.partition("=")
        out.append(f"{name}={MASKED_VALUE}" if eq and is_secret_name(name, extra) else entry)
    return out


@dataclass(slots=True)
class RedactionPolicy:
    """What to mask. ``data_patterns`` are compiled byte regexes by name."""

    env_names: Sequence[str] = ()
    data_patterns: dict[str, re.Pattern[bytes]] = field(default_factory=dict)
    argv: bool = False

    @classmethod
    def build(
        cls,
        *,
        env_names: Sequence[str] = (),
        data: Sequence[str] = (),
        default_data: bool = True,
        argv: bool = False,
    ) -> RedactionPolicy:
        """A policy from command-line style options; raises :class:`RedactError` for a bad regex."""
        patterns: dict[str, re.Pattern[bytes]] = {}
        if default_data:
            patterns.update(_DEFAULT_COMPILED)
        for i, text in enumerate(data, 1):
            try:
                patterns[f"data-{i}"] = re.compile(text.encode())
            except re.error as exc:
                raise RedactError(
                    f"--data {text!r} is not a valid regular expression: {exc}"
                ) from None
        for pattern in env_names:
            if pattern.startswith("/") and pattern.endswith("/") and len(pattern) >= 2:
                try:
                    re.compile(pattern[1:-1])
                except re.error as exc:
                    raise RedactError(f"--env {pattern!r}: {exc}") from None
        return cls(env_names=tuple(env_names), data_patterns=patterns, argv=argv)


@dataclass(slots=True)
class RedactionSummary:
    """What :func:`redact_recording` masked, and how far it read."""

    records: int = 0
    env_values: int = 0
    argv_items: int = 0
    log_items: int = 0
    data_matches: Counter[str] = field(default_factory=Counter)
    data_bytes: int = 0
    stopped: str | None = None  # why the input ended early (cut, garbage), with the offset
    damage: list[str] = field(default_factory=list)  # unreadable regions skipped, left out

    def to_json(self) -> dict[str, object]:
        """A stable dict for ``--json``."""
        return {
            "records": self.records,
            "env_values": self.env_values,
            "argv_items": self.argv_items,
            "log_items": self.log_items,
            "data_matches": dict(sorted(self.data_matches.items())),
            "data_bytes": self.data_bytes,
            "stopped": self.stopped,
            "damage": list(self.damage),
        }


StreamKey = tuple[int, int, int]  # (seq, direction, stream)
Ranges = list[tuple[int, int]]


def _span(match: re.Match[bytes]) -> tuple[int, int]:
    if "secret" in match.re.groupindex and match.start("secret") >= 0:
        return match.span("secret")
    return match.span()


def _find(
    patterns: dict[str, re.Pattern[bytes]], data: bytes, counts: Counter[str] | None
) -> Ranges:
    found = []
    for name, pattern in patterns.items():
        for match in pattern.finditer(data):
            start, end = _span(match)
            if end > start:
                found.append((start, end))
                if counts is not None:
                    counts[name] += 1
    return found


def _mask(data: bytes, ranges: Iterable[tuple[int, int]]) -> tuple[bytes, int]:
    """``data`` with the byte ranges (relative to it) overwritten by ``*``; bytes masked."""
    out = bytearray(data)
    masked = 0
    for start, end in ranges:
        start, end = max(start, 0), min(end, len(out))
        if end > start:
            masked += end - start
            out[start:end] = MASK_BYTE * (end - start)
    return bytes(out), masked


def _merge(ranges: Ranges) -> Ranges:
    merged: Ranges = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def default_patterns() -> dict[str, re.Pattern[bytes]]:
    """The built-in data patterns, compiled (see :data:`DEFAULT_DATA_PATTERNS`)."""
    return dict(_DEFAULT_COMPILED)


def mask_bytes(
    data: bytes,
    patterns: dict[str, re.Pattern[bytes]] | None = None,
    counts: Counter[str] | None = None,
) -> bytes:
    """``data`` with every match of ``patterns`` (default: the built-ins) starred, byte for byte."""
    ranges = _find(_DEFAULT_COMPILED if patterns is None else patterns, data, counts)
    return _mask(data, ranges)[0] if ranges else data


def mask_text(
    text: str,
    patterns: dict[str, re.Pattern[bytes]] | None = None,
    counts: Counter[str] | None = None,
) -> str:
    """:func:`mask_bytes` for text: what a viewer shows of recorded output or a log line."""
    raw = text.encode("utf-8", "surrogateescape")
    masked = mask_bytes(raw, patterns, counts)
    return text if masked is raw else masked.decode("utf-8", "surrogateescape")


def mask_argv(
    argv: Sequence[str],
    extra: Sequence[str] = (),
    patterns: dict[str, re.Pattern[bytes]] | None = None,
    counts: Counter[str] | None = None,
) -> list[str]:
    """A command line with secret-looking arguments masked.

    ``NAME=value`` with a secret-looking name keeps the name; the argument
    after a flag such as ``--password`` or ``--api-key`` is replaced whole;
    the data patterns are applied to every other argument.
    """
    out: list[str] = []
    secret_next = False
    for arg in argv:
        if secret_next:
            out.append(MASKED_VALUE)
            secret_next = False
            continue
        name, eq, _value = arg.partition("=")
        if eq and is_secret_name(name.lstrip("-"), extra):
            out.append(f"{name}={MASKED_VALUE}")
        elif _SECRET_FLAG.match(arg):
            secret_next = True
            out.append(arg)
        else:
            out.append(mask_text(arg, patterns, counts))
    return out


class _StreamScanner:
    """First pass: where the patterns match in each stream, as absolute byte ranges.

    Each stream is scanned as a whole: every frame is searched together with
    the tail of what came before it, so a match across a frame boundary is
    found. Only the ranges are kept, never the data.
    """

    def __init__(self, patterns: dict[str, re.Pattern[bytes]]):
        self.patterns = patterns
        self.ranges: dict[StreamKey, Ranges] = {}
        self._tail: dict[StreamKey, bytes] = {}
        self._pos: dict[StreamKey, int] = {}
        self.counts: Counter[str] = Counter()
        self._seen: set[tuple[str, StreamKey, int, int]] = set()

    def feed(self, key: StreamKey, data: bytes) -> None:
        tail = self._tail.get(key, b"")
        pos = self._pos.get(key, 0)
        window = tail + data
        base = pos - len(tail)
        for name, pattern in self.patterns.items():
            for match in pattern.finditer(window):
                start, end = _span(match)
                if end <= len(tail) or end <= start:
                    continue  # found with the previous frame already
                absolute = (name, key, base + start, base + end)
                if absolute not in self._seen:
                    self._seen.add(absolute)
                    self.counts[name] += 1
                    self.ranges.setdefault(key, []).append((base + start, base + end))
        self._pos[key] = pos + len(data)
        self._tail[key] = window[-STREAM_OVERLAP:]

    def finish(self) -> dict[StreamKey, Ranges]:
        return {key: _merge(ranges) for key, ranges in self.ranges.items()}


class _Redactor:
    def __init__(self, policy: RedactionPolicy, stream_ranges: dict[StreamKey, Ranges]):
        self.policy = policy
        self.stream_ranges = stream_ranges
        self.stream_pos: dict[StreamKey, int] = {}
        self.summary = RedactionSummary()

    def text(self, value: str) -> tuple[str, bool]:
        masked = mask_text(value, self.policy.data_patterns, self.summary.data_matches)
        return masked, masked != value

    def argv(self, argv: list[str] | None) -> list[str] | None:
        if argv is None or not self.policy.argv:
            return argv
        masked = mask_argv(
            argv, self.policy.env_names, self.policy.data_patterns, self.summary.data_matches
        )
        self.summary.argv_items += sum(a != b for a, b in zip(argv, masked, strict=True))
        return masked

    def exec_msg(self, msg: ExecMsg) -> ExecMsg:
        env = msg.env
        if env is not None:
            masked = mask_env(env, self.policy.env_names)
            self.summary.env_values += sum(a != b for a, b in zip(env, masked, strict=True))
            env = masked
        return replace(msg, env=env, argv=self.argv(msg.argv))

    def data(self, key: StreamKey, data: bytes) -> bytes:
        start = self.stream_pos.get(key, 0)
        self.stream_pos[key] = start + len(data)
        ranges = self.stream_ranges.get(key)
        if not ranges:
            return data
        end = start + len(data)
        first = max(bisect.bisect_right(ranges, (start, sys.maxsize)) - 1, 0)
        local = []
        for lo, hi in ranges[first:]:
            if lo >= end:
                break
            if hi > start:
                local.append((lo - start, hi - start))
        if not local:
            return data
        masked, count = _mask(data, local)
        self.summary.data_bytes += count
        return masked

    def blob(self, data: bytes) -> bytes:
        ranges = _find(self.policy.data_patterns, data, self.summary.data_matches)
        if not ranges:
            return data
        masked, count = _mask(data, ranges)
        self.summary.data_bytes += count
        return masked

    def frame(self, seq: int, direction: int, frame: Frame) -> Frame:
        frame = replace(frame)  # a copy: the fields below are replaced on it
        if frame.type == FrameType.DATA and frame.data:
            frame.data = self.data((seq, int(direction), frame.stream), frame.data)
        if frame.exec is not None:
            frame.exec = self.exec_msg(frame.exec)
        if frame.log is not None:
            msg, changed = self.text(frame.log.msg)
            attrs = []
            for attr in frame.log.attrs:
                masked, attr_changed = self.text(attr)
                changed |= attr_changed
                attrs.append(masked)
            self.summary.log_items += changed
            frame.log = replace(frame.log, msg=msg, attrs=attrs)
        if frame.file_op is not None and frame.file_op.data:
            frame.file_op = replace(frame.file_op, data=self.blob(frame.file_op.data))
        if frame.file_resp is not None and frame.file_resp.data:
            frame.file_resp = replace(frame.file_resp, data=self.blob(frame.file_resp.data))
        return frame

    def record(self, record: Record) -> Record:
        self.summary.records += 1
        if record.type == RecordType.COMMAND_START and record.cmd_start is not None:
            start = replace(record.cmd_start, exec=self.exec_msg(record.cmd_start.exec))
            return replace(record, cmd_start=start)
        if record.type == RecordType.FRAME and record.frame is not None:
            rf = record.frame
            return replace(
                record, frame=replace(rf, frame=self.frame(rf.seq, rf.direction, rf.frame))
            )
        return record


def _readable(
    source: Path, on_record: Callable[[Record], object], damage: list[str] | None = None
) -> str | None:
    """Feed every complete record to ``on_record``; say why reading stopped early, if it did.

    Bytes that are not records are skipped as ``reclab check`` and the model
    skip them (to the next plausible record); each skip is described in
    ``damage``. The damaged bytes themselves are never copied.
    """
    start = 0
    with open(source, "rb") as fp:
        while True:
            fp.seek(start)
            try:
                for record in iter_records(fp):
                    on_record(record)
            except MissingFooterError:
                return None  # every record was read; the output lacks a footer as the input does
            except TruncatedError as exc:
                cut = start + (exc.offset or 0)
                return f"the recording is cut at byte {cut}; the output ends there too"
            except RemoteProtocolError as exc:
                bad = start + (exc.offset or 0)
                resume = next_record_start(fp, bad + 1)
                if resume is None:
                    return f"unreadable bytes at byte {bad} ({exc.message}); the output ends there"
                if damage is not None:
                    damage.append(
                        f"{resume - bad} unreadable bytes at byte {bad} ({exc.message}) left out"
                    )
                start = resume
                continue
            return None


def _data_frames(records: Iterable[Record]) -> Iterator[tuple[StreamKey, bytes]]:
    for record in records:
        rf = record.frame
        if rf is not None and rf.frame.type == FrameType.DATA and rf.frame.data:
            yield (rf.seq, int(rf.direction), rf.frame.stream), rf.frame.data


def redact_recording(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str] | BinaryIO,
    policy: RedactionPolicy | None = None,
) -> RedactionSummary:
    """Copy the recording at ``source`` to ``dest`` with secrets masked (see the module doc).

    ``dest`` is a path (written to a temporary name beside it, owner-only,
    and renamed when complete, so an interrupted run leaves nothing) or a
    binary file object. A cut or damaged source is copied up to its last
    complete record and :attr:`RedactionSummary.stopped` says where.
    """
    policy = policy or RedactionPolicy.build()
    src = Path(source)
    if not src.is_file():
        raise RedactError(f"{src}: no such recording")

    scanner = _StreamScanner(policy.data_patterns)

    def scan(record: Record) -> None:
        for key, data in _data_frames((record,)):
            scanner.feed(key, data)

    damage: list[str] = []
    stopped = _readable(src, scan, damage)
    redactor = _Redactor(policy, scanner.finish())
    redactor.summary.data_matches.update(scanner.counts)

    def copy(out: BinaryIO) -> None:
        _readable(src, lambda record: out.write(redactor.record(record).to_cbor()))

    if isinstance(dest, (str, os.PathLike)):
        with atomic_output(dest, "wb", private=True) as out:
            copy(cast("BinaryIO", out))
    else:
        copy(dest)
    redactor.summary.stopped = stopped
    redactor.summary.damage = damage
    return redactor.summary
