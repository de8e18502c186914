"""Compare what two recordings say each command did: exit code, output, file ops, PATH answers.

The comparison of a recorded command with its replay (or with the same
command in another recording) looks at what the agent answered, never at
what is expected to change from run to run:

- the exit code (of ``FrameExit``; the command-end record's when there is none);
- each output stream's bytes (stdout, stderr, extra fds): equal, or the first
  differing offset and, for text, a short unified diff around it. Streams are
  compared chunk by chunk as they are read (:meth:`Recording.stream_chunks`),
  so memory stays bounded whatever the output size;
- file-op responses, request by request in recorded order (request ids and
  handles differ between sessions and are ignored): errno, n, eof, data, path,
  the stable stat fields (name, size, mode, directory, owner, links: not times,
  inode or blocks), statfs sizes and directory entries;
- PATH-query answers (name, path, mode and size of each entry; not times);
- with ``logs=True`` also the agent's log lines and errors.

``ignore`` patterns (regular expressions on bytes) mask expected differences
such as timestamps or temporary names in output, file data and log text:
each match is replaced by ``<ignored>`` before comparing, line by line.
"""

from __future__ import annotations

import difflib
import errno as errno_module
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentproto import (
    Direction,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    PathInfo,
    RemoteProtocolError,
)

from ..model import Recording

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "EXIT_MATCHED",
    "CommandComparison",
    "CompareOptions",
    "Comparison",
    "Difference",
    "compare_commands",
    "compare_recordings",
    "pair_commands",
]

EXIT_MATCHED = 0
EXIT_DIVERGED = 1
EXIT_ERROR = 2
MASK = b"<ignored>"
CONTEXT = 2048  # bytes kept before and read after a difference, for its diff
DIFF_LINES = 12  # lines of unified diff shown per stream
LINE_CAP = 1024 * 1024  # a "line" without newline is masked in pieces of this size
MAX_DIFFERENCES = 20  # per command; the rest is counted
STREAM_NAMES = {0: "stdin", 1: "stdout", 2: "stderr"}
# Stat fields that say what a file is; times, inode and blocks change with every run.
STAT_FIELDS = ("name", "size", "mode", "is_dir", "uid", "gid", "nlink", "rdev")
STATFS_FIELDS = ("bsize", "frsize", "name_len")
_RPC_KINDS = frozenset(
    {FrameType.FILE_OP, FrameType.FILE_RESP, FrameType.PATH_QUERY, FrameType.PATH_INFO}
)
_LOG_KINDS = frozenset({FrameType.LOG, FrameType.ERROR})


def stream_name(stream: int) -> str:
    """``stdout``, ``stderr``, or ``fd N`` for an extra descriptor."""
    return STREAM_NAMES.get(stream, f"fd {stream}")


@dataclass(frozen=True, slots=True)
class CompareOptions:
    """What to compare: ``ignore`` patterns mask output, ``logs`` adds agent logs and errors."""

    ignore: tuple[re.Pattern[bytes], ...] = ()
    logs: bool = False

    @classmethod
    def from_patterns(cls, ignore: Iterable[str] = (), *, logs: bool = False) -> CompareOptions:
        """Options from regular-expression strings; raises ValueError naming a bad one."""
        compiled = []
        for pattern in ignore:
            try:
                compiled.append(re.compile(pattern.encode("utf-8", "surrogateescape")))
            except re.error as exc:
                raise ValueError(f"--ignore {pattern!r}: {exc}") from None
        return cls(tuple(compiled), logs)

    def mask(self, data: bytes) -> bytes:
        """``data`` with every match of every ignore pattern replaced by ``<ignored>``."""
        for pattern in self.ignore:
            data = pattern.sub(MASK, data)
        return data

    def mask_text(self, text: str) -> str:
        """:meth:`mask` for a string."""
        if not self.ignore:
            return text
        return self.mask(text.encode("utf-8", "surrogateescape")).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a command's two runs differ.

    ``kind`` is ``command`` (a paired command with another path, argv or
    cwd), ``exit``, ``stream``, ``file_op``, ``path_query``, ``log``,
    ``error``, ``run`` (the replay could not send everything) or ``more``;
    ``what`` says it in one line; ``recorded`` and ``replayed`` are the two
    values (JSON-friendly) where short; ``offset`` is the first differing
    byte of a stream and ``diff`` a short unified diff of text around it.
    """

    kind: str
    what: str
    stream: int | None = None
    offset: int | None = None
    recorded: Any = None
    replayed: Any = None
    diff: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form (see the README's description of ``--json``)."""
        return {
            "kind": self.kind,
            "what": self.what,
            "stream": self.stream,
            "offset": self.offset,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "diff": self.diff,
        }


@dataclass(slots=True)
class CommandComparison:
    """The verdict on one command: ``match``, ``diverged``, ``error`` or ``unpaired``.

    ``seq`` is the command in the recorded (first) recording, ``other_seq``
    its counterpart in the replay (or second recording), None when there is
    none. ``error`` says why it could not be replayed or compared.
    """

    seq: int | None
    other_seq: int | None
    argv: list[str]
    cwd: str = ""
    differences: list[Difference] = field(default_factory=list)
    error: str | None = None
    unpaired: bool = False

    @property
    def verdict(self) -> str:
        """``error``, ``unpaired``, ``diverged`` or ``match``."""
        if self.error is not None:
            return "error"
        if self.unpaired:
            return "unpaired"
        return "diverged" if self.differences else "match"

    @property
    def matched(self) -> bool:
        """True when both runs agree on everything compared."""
        return self.verdict == "match"

    def to_json(self) -> dict[str, Any]:
        """The JSON form (see the README's description of ``--json``)."""
        return {
            "seq": self.seq,
            "other_seq": self.other_seq,
            "argv": self.argv,
            "cwd": self.cwd,
            "verdict": self.verdict,
            "error": self.error,
            "differences": [d.to_json() for d in self.differences],
        }


@dataclass(slots=True)
class Comparison:
    """A whole report: every command's verdict and the exit status it implies.

    ``kind`` is ``replay`` (``recording`` replayed into ``other``) or
    ``diff`` (two recordings). ``errors`` holds problems not tied to one
    command (a recording that is cut, an agent that would not start).
    """

    kind: str
    recording: str
    other: str | None
    commands: list[CommandComparison] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        """How many commands have ``verdict``."""
        return sum(1 for c in self.commands if c.verdict == verdict)

    @property
    def status(self) -> int:
        """0 when everything matched, 1 when something diverged, 2 when something failed."""
        if self.errors or self.count("error"):
            return EXIT_ERROR
        if self.count("diverged") or self.count("unpaired"):
            return EXIT_DIVERGED
        return EXIT_MATCHED

    def to_json(self) -> dict[str, Any]:
        """The stable JSON document of ``--json`` (``format`` 1; see the README)."""
        return {
            "format": 1,
            "kind": self.kind,
            "recording": self.recording,
            "other": self.other,
            "status": self.status,
            "summary": {
                "commands": len(self.commands),
                "matched": self.count("match"),
                "diverged": self.count("diverged"),
                "errors": self.count("error"),
                "unpaired": self.count("unpaired"),
            },
            "errors": list(self.errors),
            "commands": [c.to_json() for c in self.commands],
        }


# --- streams ---------------------------------------------------------------------------------


def _masked(chunks: Iterator[bytes], options: CompareOptions) -> Iterator[bytes]:
    """The chunks with ignore patterns applied line by line (whole lines only)."""
    if not options.ignore:
        yield from chunks
        return
    pending = b""
    for chunk in chunks:
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut:
            yield options.mask(pending[:cut])
            pending = pending[cut:]
        elif len(pending) >= LINE_CAP:
            yield options.mask(pending)
            pending = b""
    if pending:
        yield options.mask(pending)


def _first_difference(a: bytes, b: bytes) -> int:
    """Index of the first differing byte of two different byte strings."""
    n = min(len(a), len(b))
    lo = 0
    while n - lo > 64:  # halve the range with memcmp-speed comparisons
        mid = (lo + n) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            n = mid
    for i in range(lo, n):
        if a[i] != b[i]:
            return i
    return n


def _read_ahead(first: bytes, rest: Iterator[bytes], size: int) -> bytes:
    parts = [first]
    total = len(first)
    while total < size:
        chunk = next(rest, None)
        if chunk is None:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)[:size]


def compare_streams(
    a: Iterable[bytes], b: Iterable[bytes]
) -> tuple[int, bytes, bytes, bytes] | None:
    """Compare two byte streams given as chunks; None when equal.

    Otherwise ``(offset, before, after_a, after_b)``: the first differing
    offset, up to :data:`CONTEXT` equal bytes before it and up to as many of
    each stream from it on. Holds at most one chunk of each plus the context.
    """
    it_a, it_b = iter(a), iter(b)
    buf_a = buf_b = b""
    pos = 0
    tail = b""
    while True:
        if not buf_a:
            buf_a = next(it_a, b"")
        if not buf_b:
            buf_b = next(it_b, b"")
        if not buf_a or not buf_b:
            if not buf_a and not buf_b:
                return None
            return pos, tail, _read_ahead(buf_a, it_a, CONTEXT), _read_ahead(buf_b, it_b, CONTEXT)
        n = min(len(buf_a), len(buf_b))
        if len(buf_a) == len(buf_b):
            same, piece_a, piece_b, buf_a_rest, buf_b_rest = buf_a == buf_b, buf_a, buf_b, b"", b""
        else:
            piece_a, piece_b = buf_a[:n], buf_b[:n]
            same = piece_a == piece_b
            buf_a_rest, buf_b_rest = buf_a[n:], buf_b[n:]
        if not same:
            k = _first_difference(piece_a, piece_b)
            before = (tail + piece_a[:k])[-CONTEXT:]
            return (
                pos + k,
                before,
                _read_ahead(buf_a[k:], it_a, CONTEXT),
                _read_ahead(buf_b[k:], it_b, CONTEXT),
            )
        tail = piece_a[-CONTEXT:] if n >= CONTEXT else (tail + piece_a)[-CONTEXT:]
        pos += n
        buf_a, buf_b = buf_a_rest, buf_b_rest


def _is_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    text = data.decode("utf-8", "replace")
    return text.count("\ufffd") <= max(1, len(text) // 100)


def text_diff(before: bytes, after_a: bytes, after_b: bytes) -> str | None:
    """A short unified diff (recorded vs replay) around a difference; None for binary data."""
    if not _is_text(before + after_a + after_b):
        return None
    if len(before) >= CONTEXT and b"\n" in before:  # start at a whole line
        before = before[before.index(b"\n") + 1 :]

    def lines(after: bytes) -> list[str]:
        if len(after) >= CONTEXT and b"\n" in after:  # end at a whole line
            after = after[: after.rindex(b"\n") + 1]
        text = (before + after).decode("utf-8", "replace")
        return [line[:200] for line in text.splitlines()]

    body = [
        line
        for line in difflib.unified_diff(lines(after_a), lines(after_b), n=2, lineterm="")
        if not line.startswith(("---", "+++", "@@"))
    ]
    return "\n".join(body[:DIFF_LINES]) if body else None


def _stream_difference(
    a: Recording, seq_a: int, b: Recording, seq_b: int, stream: int, options: CompareOptions
) -> Difference | None:
    chunks_a = (d for _s, _d, d in a.stream_chunks(seq_a, (stream,)))
    chunks_b = (d for _s, _d, d in b.stream_chunks(seq_b, (stream,)))
    found = compare_streams(_masked(chunks_a, options), _masked(chunks_b, options))
    if found is None:
        return None
    offset, before, after_a, after_b = found
    size_a = a.command(seq_a).bytes_received.get(stream, 0)
    size_b = b.command(seq_b).bytes_received.get(stream, 0)
    name = stream_name(stream)
    masked = " after masking" if options.ignore else ""
    return Difference(
        kind="stream",
        what=f"{name} differs at byte {offset}{masked} ({size_a} vs {size_b} bytes)",
        stream=stream,
        offset=offset,
        recorded=size_a,
        replayed=size_b,
        diff=text_diff(before, after_a, after_b),
    )


# --- RPCs and logs -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Exchanges:
    """One command's RPCs in request order, and its logs/errors (when asked for)."""

    file_ops: list[tuple[FileOpReq, FileOpResp | None]] = field(default_factory=list)
    path_queries: list[tuple[list[str], PathInfo | None]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _exchanges(rec: Recording, seq: int, logs: bool) -> _Exchanges:
    cmd = rec.command(seq)
    wanted = _RPC_KINDS | _LOG_KINDS if logs else _RPC_KINDS
    kinds = rec.kinds
    indexes = [i for i in cmd.record_indexes[: cmd.frame_count] if kinds[i] in wanted]
    out = _Exchanges()
    by_id: dict[int, int] = {}
    answered_queries = 0
    for _i, _offset, raw in rec.raw_frames(indexes):
        try:
            frame = Frame.from_map(raw.get("frame"))
        except RemoteProtocolError:  # a broken frame is not an exchange
            continue
        sent = raw.get("dir") == Direction.SEND
        if frame.type == FrameType.FILE_OP and sent and frame.file_op is not None:
            by_id[frame.file_op.req_id] = len(out.file_ops)
            out.file_ops.append((frame.file_op, None))
        elif frame.type == FrameType.FILE_RESP and not sent and frame.file_resp is not None:
            k = by_id.pop(frame.file_resp.req_id, None)
            if k is not None:
                out.file_ops[k] = (out.file_ops[k][0], frame.file_resp)
        elif frame.type == FrameType.PATH_QUERY and sent:
            paths = list(frame.query.paths) if frame.query is not None else []
            out.path_queries.append((paths, None))
        elif frame.type == FrameType.PATH_INFO and not sent:
            # PATH answers carry no id: they come in request order
            if answered_queries < len(out.path_queries):
                paths = out.path_queries[answered_queries][0]
                out.path_queries[answered_queries] = (paths, frame.info or PathInfo())
                answered_queries += 1
        elif frame.type == FrameType.LOG and not sent and frame.log is not None:
            out.logs.append(" ".join([str(frame.log.level), frame.log.msg, *frame.log.attrs]))
        elif frame.type == FrameType.ERROR and not sent:
            out.errors.append(frame.error)
    return out


def _op_name(req: FileOpReq) -> str:
    return getattr(req.op, "name", str(req.op))


def _errno_name(code: int) -> str:
    return f"{errno_module.errorcode.get(code, 'errno')} ({code})" if code else "0"


def _stat_view(stat: Any, fields: Sequence[str]) -> dict[str, Any] | None:
    if stat is None:
        return None
    return {name: getattr(stat, name) for name in fields}


def _response_view(resp: FileOpResp, options: CompareOptions) -> dict[str, Any]:
    """The fields of a file-op response that say what happened (not handles, not times)."""
    return {
        "errno": resp.errno,
        "n": resp.n,
        "eof": resp.eof,
        "data": options.mask(resp.data) if resp.data else b"",
        "path": options.mask_text(resp.path),
        "stat": _stat_view(resp.stat, STAT_FIELDS),
        "statfs": _stat_view(resp.statfs, STATFS_FIELDS),
        "entries": sorted(
            (tuple(getattr(e.stat, name) for name in STAT_FIELDS) for e in resp.entries),
            key=lambda entry: str(entry[0]),
        ),
    }


def _request_view(req: FileOpReq, options: CompareOptions) -> tuple[Any, ...]:
    return (
        req.op,
        options.mask_text(req.path),
        options.mask_text(req.new_path),
        req.flags,
        req.mode,
        req.offset,
        req.size,
        len(req.data),
    )


def _short(value: Any) -> Any:
    """A JSON-friendly, short form of a compared value."""
    if isinstance(value, bytes):
        shown = value[:64].decode("utf-8", "replace")
        return shown + (f"... ({len(value)} bytes)" if len(value) > 64 else "")
    if isinstance(value, list):
        return [list(v) if isinstance(v, tuple) else v for v in value[:10]]
    return value


def _file_op_differences(
    a: list[tuple[FileOpReq, FileOpResp | None]],
    b: list[tuple[FileOpReq, FileOpResp | None]],
    options: CompareOptions,
) -> list[Difference]:
    found: list[Difference] = []
    if len(a) != len(b):
        found.append(
            Difference(
                "file_op",
                f"{len(a)} file ops recorded, {len(b)} replayed",
                None,
                None,
                len(a),
                len(b),
            )
        )
    opened: dict[int, str] = {}  # recorded handle -> the path it was opened for
    for k, ((req_a, resp_a), (req_b, resp_b)) in enumerate(zip(a, b, strict=False), 1):
        if resp_a is not None and resp_a.handle and req_a.path:
            opened[resp_a.handle] = req_a.path
        path = req_a.path or opened.get(req_a.handle, "")
        label = f"file op #{k} {_op_name(req_a)}" + (f" {path}" if path else "")
        if _request_view(req_a, options) != _request_view(req_b, options):
            found.append(
                Difference(
                    "file_op",
                    f"{label}: the requests differ ({_op_name(req_b)} {req_b.path})".rstrip(),
                    recorded=_op_name(req_a),
                    replayed=_op_name(req_b),
                )
            )
            continue
        if resp_a is None or resp_b is None:
            if (resp_a is None) != (resp_b is None):
                side = "recording" if resp_a is None else "replay"
                found.append(Difference("file_op", f"{label}: no response in the {side}"))
            continue
        view_a, view_b = _response_view(resp_a, options), _response_view(resp_b, options)
        if view_a == view_b:
            continue
        if view_a["errno"] != view_b["errno"]:
            found.append(
                Difference(
                    "file_op",
                    f"{label}: errno {_errno_name(resp_a.errno)} recorded, "
                    f"{_errno_name(resp_b.errno)} replayed",
                    recorded=resp_a.errno,
                    replayed=resp_b.errno,
                )
            )
            continue
        names: list[str] = []
        recorded: dict[str, Any] = {}
        replayed: dict[str, Any] = {}
        for name, value_a in view_a.items():
            value_b = view_b[name]
            if value_a == value_b:
                continue
            if isinstance(value_a, dict) and isinstance(value_b, dict):
                for key in value_a:  # name the stat fields that differ, not the whole stat
                    if value_a[key] != value_b.get(key):
                        names.append(f"{name}.{key}")
                        recorded[f"{name}.{key}"] = value_a[key]
                        replayed[f"{name}.{key}"] = value_b.get(key)
            else:
                names.append(name)
                recorded[name], replayed[name] = _short(value_a), _short(value_b)
        verb = "differs" if len(names) == 1 else "differ"
        found.append(
            Difference(
                "file_op", f"{label}: {', '.join(names)} {verb}", None, None, recorded, replayed
            )
        )
    return found


def _path_entries(info: PathInfo | None) -> list[tuple[str, str, int, int]] | None:
    if info is None:
        return None
    return sorted((e.name, e.remote_path, e.mode, e.size) for e in info.entries or [])


def _path_query_differences(
    a: list[tuple[list[str], PathInfo | None]], b: list[tuple[list[str], PathInfo | None]]
) -> list[Difference]:
    found: list[Difference] = []
    if len(a) != len(b):
        found.append(
            Difference(
                "path_query",
                f"{len(a)} PATH queries recorded, {len(b)} replayed",
                recorded=len(a),
                replayed=len(b),
            )
        )
    for k, ((paths_a, info_a), (_paths_b, info_b)) in enumerate(zip(a, b, strict=False), 1):
        entries_a, entries_b = _path_entries(info_a), _path_entries(info_b)
        if entries_a == entries_b:
            continue
        names_a = {e[0] for e in entries_a or []}
        names_b = {e[0] for e in entries_b or []}
        missing, extra = sorted(names_a - names_b), sorted(names_b - names_a)
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:5])}")
        if extra:
            detail.append(f"new {', '.join(extra[:5])}")
        if not detail:
            detail.append("entries changed")
        found.append(
            Difference(
                "path_query",
                f"PATH query #{k} {paths_a or '($PATH)'}: {'; '.join(detail)}",
                recorded=len(entries_a or []),
                replayed=len(entries_b or []),
            )
        )
    return found


def _sequence_difference(
    kind: str, a: list[str], b: list[str], options: CompareOptions
) -> Difference | None:
    masked_a = [options.mask_text(x) for x in a]
    masked_b = [options.mask_text(x) for x in b]
    if masked_a == masked_b:
        return None
    for k, (x, y) in enumerate(zip(masked_a, masked_b, strict=False)):
        if x != y:
            return Difference(kind, f"{kind} line {k + 1} differs", recorded=x, replayed=y)
    return Difference(
        kind, f"{len(a)} {kind} lines recorded, {len(b)} replayed", recorded=len(a), replayed=len(b)
    )


# --- commands -----------------------------------------------------------------------------------


def _exit_code(rec: Recording, seq: int) -> int | None:
    cmd = rec.command(seq)
    return cmd.exit_frame_code if cmd.exit_frame_code is not None else cmd.exit_code


def compare_commands(
    a: Recording,
    seq_a: int,
    b: Recording,
    seq_b: int,
    options: CompareOptions | None = None,
) -> CommandComparison:
    """Compare command ``seq_a`` of ``a`` (the recorded run) with ``seq_b`` of ``b``.

    Returns a :class:`CommandComparison` listing every difference found (at
    most :data:`MAX_DIFFERENCES`, then a count). A command that either
    recording has cut before its end is an error, not a comparison.
    """
    options = options or CompareOptions()
    cmd_a, cmd_b = a.command(seq_a), b.command(seq_b)
    result = CommandComparison(seq_a, seq_b, cmd_a.argv, cmd_a.cwd)
    for rec, cmd, name in ((a, cmd_a, "the recording"), (b, cmd_b, "the other recording")):
        if not cmd.complete:
            result.error = f"{name} ({rec.path.name}) is cut before command {cmd.seq}'s end"
            return result
    found = result.differences
    if (cmd_a.exec.path, cmd_a.argv, cmd_a.cwd) != (cmd_b.exec.path, cmd_b.argv, cmd_b.cwd):
        other = shlex.join(cmd_b.argv) + (f" (in {cmd_b.cwd})" if cmd_b.cwd else "")
        found.append(
            Difference(
                "command", f"a different command: {other}", recorded=cmd_a.argv, replayed=cmd_b.argv
            )
        )
    code_a, code_b = _exit_code(a, seq_a), _exit_code(b, seq_b)
    if code_a != code_b:
        found.append(
            Difference(
                "exit",
                f"exit code {code_a} recorded, {code_b} replayed",
                recorded=code_a,
                replayed=code_b,
            )
        )
    streams = (set(cmd_a.bytes_received) | set(cmd_b.bytes_received)) - {0}
    for stream in sorted(streams):
        if not cmd_a.bytes_received.get(stream) and not cmd_b.bytes_received.get(stream):
            continue  # empty on both sides (known from the index): nothing to read
        diff = _stream_difference(a, seq_a, b, seq_b, stream, options)
        if diff is not None:
            found.append(diff)
    ex_a, ex_b = _exchanges(a, seq_a, options.logs), _exchanges(b, seq_b, options.logs)
    found.extend(_file_op_differences(ex_a.file_ops, ex_b.file_ops, options))
    found.extend(_path_query_differences(ex_a.path_queries, ex_b.path_queries))
    if options.logs:
        for kind, xs, ys in (("log", ex_a.logs, ex_b.logs), ("error", ex_a.errors, ex_b.errors)):
            diff = _sequence_difference(kind, xs, ys, options)
            if diff is not None:
                found.append(diff)
    if len(found) > MAX_DIFFERENCES:
        more = len(found) - MAX_DIFFERENCES
        del found[MAX_DIFFERENCES:]
        found.append(Difference("more", f"... and {more} more differences"))
    return result


def pair_commands(
    a: Recording, b: Recording, *, match: str = "seq"
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Pair the commands of two recordings: ``(pairs, only_in_a, only_in_b)``.

    ``match="seq"`` pairs equal sequence numbers; ``match="argv"`` pairs, in
    seq order, each command of ``a`` with the first unpaired command of ``b``
    that has the same argv and cwd.
    """
    if match == "seq":
        pairs = [(s, s) for s in sorted(a.commands) if s in b.commands]
        return (
            pairs,
            [s for s in sorted(a.commands) if s not in b.commands],
            [s for s in sorted(b.commands) if s not in a.commands],
        )
    if match != "argv":
        raise ValueError(f"match by {match!r}: expected seq or argv")
    left = sorted(b.commands)
    pairs = []
    only_a = []
    for seq in sorted(a.commands):
        key = (a.commands[seq].argv, a.commands[seq].cwd)
        found = next((s for s in left if (b.commands[s].argv, b.commands[s].cwd) == key), None)
        if found is None:
            only_a.append(seq)
        else:
            left.remove(found)
            pairs.append((seq, found))
    return pairs, only_a, left


def compare_recordings(
    a: Recording,
    b: Recording,
    *,
    match: str = "seq",
    options: CompareOptions | None = None,
) -> Comparison:
    """Compare every paired command of two recordings (``reclab diff``).

    Unpaired commands are listed with the verdict ``unpaired``; a recording
    cut before a command's end makes that command an error.
    """
    pairs, only_a, only_b = pair_commands(a, b, match=match)
    report = Comparison("diff", str(a.path), str(b.path))
    for seq_a, seq_b in pairs:
        report.commands.append(compare_commands(a, seq_a, b, seq_b, options))
    for seq in only_a:
        cmd = a.commands[seq]
        report.commands.append(CommandComparison(seq, None, cmd.argv, cmd.cwd, unpaired=True))
    for seq in only_b:
        cmd = b.commands[seq]
        report.commands.append(CommandComparison(None, seq, cmd.argv, cmd.cwd, unpaired=True))
    return report
