"""Protocol conformance of a recording: an expert-info pass over its records.

The core, :class:`Checker` (and :func:`check_records` around it), is pure: it
is fed ``(index, offset, Record)`` triples one at a time and keeps only small
per-command state, so it checks a multi-GB recording in one streaming pass and
can be tested with hand-built lists. :func:`check_recording` is the I/O shell
that reads a file and reports how the byte stream ended (cut, garbage).

Every :class:`Finding` has a short stable ``code`` (``frame-after-exit``...),
listed with its severity in :data:`CODES`. Severity ``error`` means the
recording breaks the protocol or the recording format in a way that makes
the analysis of the affected command unreliable; ``warning`` an incomplete or
unusual recording that is still consistent (a crashed writer, a newer peer's
frame type, a race between runner and agent); ``info`` a remark.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from agentproto import (
    Direction,
    Frame,
    FrameType,
    Record,
    RecordType,
    RemoteProtocolError,
    TruncatedError,
)
from agentproto.layout import MAX_RESYNCS, next_record_start, parse_frame_records
from agentproto.recording import (
    BULK_MIN_BYTES,
    CHUNK_SIZE,
    BulkIndex,
    ParsedRun,
    RecordingReader,
    run_stops,
)
from agentproto.types import FRAME_KEYS as F
from agentproto.types import RECORD_KEYS as R
from agentproto.types import RECORDED_FRAME_KEYS as RF

__all__ = [
    "CODES",
    "CheckReport",
    "Checker",
    "Finding",
    "Severity",
    "StreamEnd",
    "check_recording",
    "check_records",
    "iter_findings",
    "next_record_start",
]


class Severity(StrEnum):
    """How bad a finding is; ``error`` findings make ``reclab check`` exit 1."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# code -> (default severity, one-line description). The codes are a stable interface.
CODES: dict[str, tuple[Severity, str]] = {
    "missing-header": (E, "the recording does not start with a session header"),
    "header-not-first": (E, "a session header after other records"),
    "duplicate-header": (E, "more than one session header"),
    "missing-footer": (W, "no session footer (the writer did not close the recording)"),
    "duplicate-footer": (E, "more than one session footer"),
    "record-after-footer": (E, "records after the session footer"),
    "footer-count-mismatch": (E, "footer command count differs from the command starts"),
    "duplicate-start": (E, "a second CommandStart for the same seq"),
    "seq-out-of-order": (W, "command starts not numbered 1, 2, 3, ..."),
    "end-without-start": (E, "a CommandEnd for a seq that never started"),
    "duplicate-end": (E, "a second CommandEnd for the same seq"),
    "command-without-end": (W, "a command started but never ended"),
    "frame-unknown-seq": (E, "a frame for a seq with no CommandStart before it"),
    "frame-after-exit": (E, "a frame of a command after its FrameExit"),
    "frame-after-end": (E, "a frame of a command after its CommandEnd"),
    "duplicate-exit": (E, "a second FrameExit for the same command"),
    "exit-code-mismatch": (E, "FrameExit code differs from the CommandEnd exit code"),
    "end-without-exit-frame": (INFO, "a command ended without a FrameExit"),
    "data-after-eof": (E, "FrameData on a stream after FrameEOF on it"),
    "duplicate-eof": (W, "a second FrameEOF on the same stream"),
    "response-without-request": (E, "a file-op response with no request in flight"),
    "duplicate-request-id": (E, "a file-op request reusing an id still in flight"),
    "request-unanswered": (W, "a file-op request never answered"),
    "timestamp-backwards": (W, "a command's time goes backwards"),
    "unknown-record-type": (W, "a record type this version does not know"),
    "unknown-frame-type": (W, "a frame type this version does not know"),
    "unknown-direction": (W, "a frame direction that is neither 1 (sent) nor 2 (received)"),
    "unexpected-direction": (W, "a frame type travelling the wrong way"),
    "record-payload-mismatch": (E, "the record's type does not match the payload it carries"),
    "invalid-record": (E, "a CBOR item that is not a valid record"),
    "truncated": (E, "the file ends inside a record"),
    "garbage": (E, "bytes that are not CBOR (checking resumes at the next record, if any)"),
    "findings-suppressed": (INFO, "more findings of one code than the report keeps"),
}

# Which way each frame type travels (DATA and EOF go both ways).
_EXPECTED_DIRECTION: dict[int, Direction] = {
    FrameType.EXEC: Direction.SEND,
    FrameType.SIGNAL: Direction.SEND,
    FrameType.CONFIG: Direction.SEND,
    FrameType.PATH_QUERY: Direction.SEND,
    FrameType.FILE_OP: Direction.SEND,
    FrameType.EXIT: Direction.RECV,
    FrameType.ERROR: Direction.RECV,
    FrameType.LOG: Direction.RECV,
    FrameType.PATH_INFO: Direction.RECV,
    FrameType.FILE_RESP: Direction.RECV,
}

_FRAME_TYPES = frozenset(int(t) for t in FrameType)
_DATA_KEYS = frozenset({F.type, F.stream, F.data})  # every key a data or EOF frame may carry
_FRAME_RECORD = int(RecordType.FRAME)
_DATA, _EOF = int(FrameType.DATA), int(FrameType.EOF)

_PAYLOAD_OF: dict[int, str] = {
    RecordType.SESSION_HEADER: "header",
    RecordType.COMMAND_START: "cmd_start",
    RecordType.FRAME: "frame",
    RecordType.COMMAND_END: "cmd_end",
    RecordType.SESSION_FOOTER: "footer",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One conformance finding: where (record index, byte offset, seq), how bad, what."""

    index: int | None
    offset: int | None
    seq: int | None
    severity: Severity
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict (keys: index, offset, seq, severity, code, message)."""
        return {
            "index": self.index,
            "offset": self.offset,
            "seq": self.seq,
            "severity": str(self.severity),
            "code": self.code,
            "message": self.message,
        }


class StreamEnd(Protocol):
    """How the record stream ended when it did not end cleanly (``reclab.model.Truncation``).

    ``kind`` is ``"cut"`` (inside a record), ``"garbage"`` (bytes that are not
    CBOR) or ``"no-footer"`` (a clean end without footer, which the checker
    detects by itself).
    """

    @property
    def offset(self) -> int: ...
    @property
    def message(self) -> str: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, slots=True)
class _End:
    offset: int
    message: str
    kind: str


@dataclass(slots=True)
class CheckReport:
    """The outcome of a check: kept findings, totals per severity and per code."""

    records: int
    findings: list[Finding]
    counts: dict[str, int]  # severity -> number of findings, suppressed ones included
    code_counts: dict[str, int]  # code -> number of findings, suppressed ones included
    suppressed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there is no error-level finding."""
        return self.counts.get(Severity.ERROR.value, 0) == 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: records, ok, counts, codes, suppressed, findings."""
        return {
            "records": self.records,
            "ok": self.ok,
            "counts": dict(self.counts),
            "codes": dict(self.code_counts),
            "suppressed": dict(self.suppressed),
            "findings": [f.to_json() for f in self.findings],
        }


class _Command:
    """What the checker remembers about one command (kept small: there may be millions)."""

    __slots__ = (
        "end_index",
        "eof",
        "exit_code",
        "exit_index",
        "in_flight",
        "last_ts",
        "start_index",
        "start_offset",
    )

    def __init__(self, index: int, offset: int, start_time: int) -> None:
        self.start_index = index
        self.start_offset = offset
        self.last_ts = start_time
        self.exit_code: int | None = None
        self.exit_index: int | None = None
        self.end_index: int | None = None
        self.eof: set[tuple[int, int]] | None = None  # (direction, stream) closed
        self.in_flight: dict[int, tuple[int, int]] | None = None  # req id -> (index, offset)


class Checker:
    """Incremental conformance checker: ``feed`` records in file order, then ``finish``.

    ``max_per_code`` bounds how many findings of one code are kept (the rest
    are only counted), so a pathological recording cannot exhaust memory.
    """

    def __init__(self, *, max_per_code: int = 100) -> None:
        self.max_per_code = max_per_code
        self.findings: list[Finding] = []
        self.code_counts: dict[str, int] = {}
        self.counts: dict[str, int] = {s.value: 0 for s in Severity}
        self.records = 0
        self._commands: dict[int, _Command] = {}
        self._starts = 0
        self._next_seq = 1
        self._header_seen = False
        self._footer: tuple[int, int, int] | None = None  # index, offset, command_count

    # -- reporting ------------------------------------------------------------------

    def add(
        self,
        code: str,
        message: str,
        *,
        index: int | None,
        offset: int | None,
        seq: int | None = None,
        severity: Severity | None = None,
    ) -> None:
        """Record a finding of ``code`` (severity defaults to the code's own)."""
        sev = severity or CODES[code][0]
        n = self.code_counts.get(code, 0) + 1
        self.code_counts[code] = n
        self.counts[sev.value] += 1
        if n <= self.max_per_code:
            self.findings.append(Finding(index, offset, seq, sev, code, message))

    # -- feeding --------------------------------------------------------------------

    def feed_invalid(self, index: int, offset: int, message: str) -> None:
        """A CBOR item at ``index`` could not be read as a record."""
        self.records += 1
        self.add("invalid-record", f"not a valid record: {message}", index=index, offset=offset)

    def feed(self, index: int, offset: int, record: Record) -> None:
        """Check one record, given its index in the file and its byte offset."""
        self.records += 1
        rtype = record.type
        if index == 0 and rtype != RecordType.SESSION_HEADER:
            self.add(
                "missing-header",
                "the first record is not a session header",
                index=0,
                offset=offset,
            )
        if self._footer is not None and rtype != RecordType.SESSION_FOOTER:
            self.add(
                "record-after-footer",
                f"{_record_name(rtype)} record after the session footer (record {self._footer[0]})",
                index=index,
                offset=offset,
                seq=_seq_of(record),
            )
        payload_attr = _PAYLOAD_OF.get(rtype)
        if payload_attr is None:
            self.add(
                "unknown-record-type",
                f"record type {int(rtype)} is not known; skipped",
                index=index,
                offset=offset,
            )
            return
        others = [
            a for a in _PAYLOAD_OF.values() if a != payload_attr and getattr(record, a) is not None
        ]
        if getattr(record, payload_attr) is None:
            self.add(
                "record-payload-mismatch",
                f"{_record_name(rtype)} record without its {payload_attr!r} payload"
                + (f" (has {', '.join(others)})" if others else ""),
                index=index,
                offset=offset,
            )
            return
        if others:
            # Readers go by the type and ignore the rest, so the record is still usable.
            self.add(
                "record-payload-mismatch",
                f"{_record_name(rtype)} record also carries {', '.join(others)} (ignored)",
                index=index,
                offset=offset,
                severity=Severity.WARNING,
            )
        if rtype == RecordType.FRAME:
            self._frame(index, offset, record)
        elif rtype == RecordType.COMMAND_START:
            self._start(index, offset, record)
        elif rtype == RecordType.COMMAND_END:
            self._end(index, offset, record)
        elif rtype == RecordType.SESSION_HEADER:
            self._header(index, offset)
        else:
            self._footer_record(index, offset, record)

    def _header(self, index: int, offset: int) -> None:
        if self._header_seen:
            self.add("duplicate-header", "a second session header", index=index, offset=offset)
        elif index != 0:
            self.add(
                "header-not-first",
                f"the session header is record {index}, not the first",
                index=index,
                offset=offset,
            )
        self._header_seen = True

    def _footer_record(self, index: int, offset: int, record: Record) -> None:
        assert record.footer is not None
        if self._footer is not None:
            self.add(
                "duplicate-footer",
                f"a second session footer (the first is record {self._footer[0]})",
                index=index,
                offset=offset,
            )
            return
        self._footer = (index, offset, record.footer.command_count)

    def _start(self, index: int, offset: int, record: Record) -> None:
        start = record.cmd_start
        assert start is not None
        seq = start.seq
        self._starts += 1
        if seq in self._commands:
            first = self._commands[seq]
            self.add(
                "duplicate-start",
                f"command {seq} already started at record {first.start_index}",
                index=index,
                offset=offset,
                seq=seq,
            )
            return
        if seq != self._next_seq:
            self.add(
                "seq-out-of-order",
                f"command start numbered {seq}, expected {self._next_seq}",
                index=index,
                offset=offset,
                seq=seq,
            )
        self._next_seq = max(self._next_seq, seq) + 1
        self._commands[seq] = _Command(index, offset, start.start_time)

    def _end(self, index: int, offset: int, record: Record) -> None:
        end = record.cmd_end
        assert end is not None
        seq = end.seq
        cmd = self._commands.get(seq)
        if cmd is None:
            self.add(
                "end-without-start",
                f"CommandEnd for command {seq}, which never started",
                index=index,
                offset=offset,
                seq=seq,
            )
            return
        if cmd.end_index is not None:
            self.add(
                "duplicate-end",
                f"command {seq} already ended at record {cmd.end_index}",
                index=index,
                offset=offset,
                seq=seq,
            )
            return
        cmd.end_index = index
        if end.end_time < cmd.last_ts:
            self.add(
                "timestamp-backwards",
                f"command {seq} ends {_ns(cmd.last_ts - end.end_time)} before its last "
                "frame or start",
                index=index,
                offset=offset,
                seq=seq,
            )
        if cmd.exit_code is None:
            self.add(
                "end-without-exit-frame",
                f"command {seq} ended (exit code {end.exit_code}) without a FrameExit",
                index=index,
                offset=offset,
                seq=seq,
            )
        elif cmd.exit_code != end.exit_code:
            self.add(
                "exit-code-mismatch",
                f"command {seq}: FrameExit code {cmd.exit_code} (record {cmd.exit_index}) "
                f"but CommandEnd exit code {end.exit_code}",
                index=index,
                offset=offset,
                seq=seq,
            )

    def _frame(self, index: int, offset: int, record: Record) -> None:
        rf = record.frame
        assert rf is not None
        frame = rf.frame
        self._frame_values(
            index,
            offset,
            rf.seq,
            rf.timestamp,
            int(rf.direction),
            int(frame.type),
            frame.stream,
            len(frame.data),
            frame,
        )

    def feed_item(self, index: int, offset: int, item: Any) -> None:
        """Check one decoded CBOR item (a record's plain map), as read from a file.

        Data and EOF frames, the bulk of any recording, are checked straight
        from the map when it has exactly the expected keys and types (what
        ``Record.from_map`` would accept); everything else is converted to a
        :class:`Record` first, and an item that is not one is reported.
        """
        if item.__class__ is dict and len(item) == 2 and item.get(R.type) == _FRAME_RECORD:
            rf = item.get(R.frame)
            if rf.__class__ is dict and len(rf) == 4:
                seq = rf.get(RF.seq)
                ts = rf.get(RF.timestamp)
                direction = rf.get(RF.direction)
                frame = rf.get(RF.frame)
                if (
                    seq.__class__ is int
                    and 0 <= seq <= 0xFFFF_FFFF
                    and ts.__class__ is int
                    and -(2**63) <= ts < 2**63
                    and direction.__class__ is int
                    and 0 <= direction <= 0xFF
                    and frame.__class__ is dict
                    and frame.get(F.type).__class__ is int
                    and frame[F.type] in (_DATA, _EOF)
                    and frame.keys() <= _DATA_KEYS
                ):
                    stream = frame.get(F.stream, 0)
                    data = frame.get(F.data, b"")
                    if (
                        stream.__class__ is int
                        and 0 <= stream <= 0xFFFF_FFFF
                        and (data.__class__ is bytes or data is None)
                    ):
                        size = len(data) if data is not None else 0
                        self.feed_data_frame(
                            index, offset, (seq, ts, direction, frame[F.type], stream, size)
                        )
                        return
        try:
            record = Record.from_map(item)
        except RemoteProtocolError as exc:
            self.feed_invalid(index, offset, str(exc))
        else:
            self.feed(index, offset, record)

    def feed_data_frame(
        self, index: int, offset: int, fields: tuple[int, int, int, int, int, int]
    ) -> None:
        """Check a data or EOF frame record given as ``(seq, ts, direction, type, stream, size)``.

        The values must be what ``Record.from_map`` would accept (``size`` is
        the payload's length); :func:`check_recording` gets them from the bulk
        frame index without decoding the record.
        """
        seq, ts, direction, ftype, stream, size = fields
        self.records += 1
        self._data_frame_position(index, offset, seq)
        self._frame_values(index, offset, seq, ts, direction, ftype, stream, size, None)

    def _data_frame_position(self, index: int, offset: int, seq: int) -> None:
        # what a frame record's place in the file can break
        if self._footer is not None:
            self.add(
                "record-after-footer",
                f"FRAME record after the session footer (record {self._footer[0]})",
                index=index,
                offset=offset,
                seq=seq,
            )
        if index == 0:
            self.add(
                "missing-header",
                "the first record is not a session header",
                index=0,
                offset=offset,
            )

    def feed_data_run(self, index: int, run: ParsedRun) -> None:
        """Check consecutive data and EOF frame records from a bulk table.

        ``run.table`` holds lists ``pos``, ``seq``, ``ts``, ``dir``, ``t``,
        ``stream`` and ``size`` (see :func:`_data_frames`); the first record
        of the run is record ``index``. A data frame of a running command
        on a stream still open, a valid direction and a timestamp not before
        the command's latest can raise no finding and only moves that time
        on: that is checked inline, everything else goes through the checks
        of :meth:`feed_data_frame`. Findings are those of feeding the records
        one by one.
        """
        table, lo, hi = run.table, run.start, run.stop
        self.records += hi - lo
        # after a footer or at record 0 every record has a finding: none is taken inline
        careful = self._footer is not None or index == 0
        commands = {} if careful else self._commands
        rows = zip(
            table["seq"][lo:hi],
            table["ts"][lo:hi],
            table["dir"][lo:hi],
            table["t"][lo:hi],
            table["stream"][lo:hi],
            strict=True,
        )
        for k, (seq, ts, direction, ftype, stream) in enumerate(rows):
            cmd = commands.get(seq)
            if (
                cmd is not None
                and ts >= cmd.last_ts
                and ftype == _DATA
                and (direction == 1 or direction == 2)
                and cmd.end_index is None
                and cmd.exit_index is None
                and (cmd.eof is None or (direction, stream) not in cmd.eof)
            ):
                cmd.last_ts = ts
                continue
            at = run.base + table["pos"][lo + k]
            self._data_frame_position(index + k, at, seq)
            size = table["size"][lo + k]
            self._frame_values(index + k, at, seq, ts, direction, ftype, stream, size, None)

    def _frame_values(
        self,
        index: int,
        offset: int,
        seq: int,
        timestamp: int,
        direction: int,
        ftype: int,
        stream: int,
        size: int,
        frame: Frame | None,
    ) -> None:
        """Check a frame from its fields; ``frame`` is needed only for types other than DATA/EOF."""
        known_type = ftype in _FRAME_TYPES
        if not known_type:
            self.add(
                "unknown-frame-type",
                f"frame type {ftype} is not known",
                index=index,
                offset=offset,
                seq=seq,
            )
        if direction != 1 and direction != 2:
            self.add(
                "unknown-direction",
                f"{_frame_name(ftype)} frame with direction {direction}",
                index=index,
                offset=offset,
                seq=seq,
            )
        elif known_type:
            expected = _EXPECTED_DIRECTION.get(ftype)
            if expected is not None and direction != expected:
                self.add(
                    "unexpected-direction",
                    f"{_frame_name(ftype)} frame {_dir_word(direction)}; it travels "
                    f"{_dir_word(expected)} only",
                    index=index,
                    offset=offset,
                    seq=seq,
                )
        cmd = self._commands.get(seq)
        if cmd is None:
            self.add(
                "frame-unknown-seq",
                f"{_frame_name(ftype)} frame for command {seq}, which has not started",
                index=index,
                offset=offset,
                seq=seq,
            )
            return
        if cmd.end_index is not None or cmd.exit_index is not None:
            self._late_frame(index, offset, seq, cmd, direction, ftype)
        if timestamp < cmd.last_ts:
            self.add(
                "timestamp-backwards",
                f"{_frame_name(ftype)} frame of command {seq} is "
                f"{_ns(cmd.last_ts - timestamp)} earlier than the one before it "
                "(or the command start)",
                index=index,
                offset=offset,
                seq=seq,
            )
        else:
            cmd.last_ts = timestamp
        if ftype == FrameType.DATA or ftype == FrameType.EOF:
            if cmd.eof is None:
                if ftype == FrameType.DATA:
                    return  # nothing closed yet: the common case
                cmd.eof = set()
            key = (direction, stream)
            closed = key in cmd.eof
            if ftype == FrameType.DATA:
                if closed:
                    self.add(
                        "data-after-eof",
                        f"{size} bytes on stream {stream} {_dir_word(direction)} "
                        "after its FrameEOF",
                        index=index,
                        offset=offset,
                        seq=seq,
                    )
                return
            if closed:
                self.add(
                    "duplicate-eof",
                    f"stream {stream} {_dir_word(direction)} closed twice",
                    index=index,
                    offset=offset,
                    seq=seq,
                )
            cmd.eof.add(key)
            return
        if frame is None:
            return
        if ftype == FrameType.EXIT:
            if cmd.exit_index is not None:
                self.add(
                    "duplicate-exit",
                    f"command {seq} already got a FrameExit at record {cmd.exit_index}",
                    index=index,
                    offset=offset,
                    seq=seq,
                )
            else:
                cmd.exit_index = index
                cmd.exit_code = frame.code
        elif ftype == FrameType.FILE_OP and frame.file_op is not None:
            req_id = frame.file_op.req_id
            if cmd.in_flight is None:
                cmd.in_flight = {}
            if req_id in cmd.in_flight:
                self.add(
                    "duplicate-request-id",
                    f"file-op request id {req_id} reused while the request at record "
                    f"{cmd.in_flight[req_id][0]} is in flight",
                    index=index,
                    offset=offset,
                    seq=seq,
                )
            cmd.in_flight[req_id] = (index, offset)
        elif ftype == FrameType.FILE_RESP and frame.file_resp is not None:
            req_id = frame.file_resp.req_id
            if cmd.in_flight is None or cmd.in_flight.pop(req_id, None) is None:
                self.add(
                    "response-without-request",
                    f"file-op response id {req_id} with no request in flight",
                    index=index,
                    offset=offset,
                    seq=seq,
                )

    def _late_frame(
        self, index: int, offset: int, seq: int, cmd: _Command, direction: int, ftype: int
    ) -> None:
        # A runner's frame racing the agent's exit is plausible; an agent frame is not.
        late = Severity.WARNING if direction == Direction.SEND else Severity.ERROR
        name = _frame_name(ftype)
        if cmd.end_index is not None:
            self.add(
                "frame-after-end",
                f"{name} frame {_dir_word(direction)} after command {seq} ended "
                f"(record {cmd.end_index})",
                index=index,
                offset=offset,
                seq=seq,
                severity=late,
            )
        elif ftype != FrameType.EXIT:
            self.add(
                "frame-after-exit",
                f"{name} frame {_dir_word(direction)} after command {seq}'s FrameExit "
                f"(record {cmd.exit_index})",
                index=index,
                offset=offset,
                seq=seq,
                severity=late,
            )

    # -- the end --------------------------------------------------------------------

    def finish(self, end: StreamEnd | None = None) -> CheckReport:
        """Report what only the end reveals and return the report.

        ``end`` says how the byte stream ended when it was not clean (a cut
        or garbage at ``end.offset``); None means it ended after a complete record.
        """
        if end is not None and end.kind == "cut":
            self.add("truncated", end.message, index=self.records, offset=end.offset)
        elif end is not None and end.kind == "garbage":
            self.add("garbage", end.message, index=self.records, offset=end.offset)
        if self.records == 0 and (end is None or end.kind not in ("cut", "garbage")):
            self.add("missing-header", "the recording has no records", index=None, offset=0)
        for seq, cmd in self._commands.items():
            if cmd.end_index is None:
                self.add(
                    "command-without-end",
                    f"command {seq} started but never ended",
                    index=cmd.start_index,
                    offset=cmd.start_offset,
                    seq=seq,
                )
            for req_id, (index, offset) in (cmd.in_flight or {}).items():
                self.add(
                    "request-unanswered",
                    f"file-op request id {req_id} never answered",
                    index=index,
                    offset=offset,
                    seq=seq,
                )
        if self._footer is None:
            if self.records:
                self.add(
                    "missing-footer",
                    "the recording has no session footer (the writer did not close it)",
                    index=None,
                    offset=end.offset if end is not None else None,
                )
        elif self._footer[2] != self._starts:
            self.add(
                "footer-count-mismatch",
                f"the footer counts {self._footer[2]} commands, the recording has "
                f"{self._starts} command starts",
                index=self._footer[0],
                offset=self._footer[1],
            )
        suppressed = {
            code: n - self.max_per_code
            for code, n in self.code_counts.items()
            if n > self.max_per_code
        }
        for code, extra in suppressed.items():
            self.findings.append(
                Finding(
                    None,
                    None,
                    None,
                    Severity.INFO,
                    "findings-suppressed",
                    f"{extra} more {code!r} findings not listed",
                )
            )
        self.findings.sort(key=_finding_order)
        return CheckReport(
            records=self.records,
            findings=self.findings,
            counts=dict(self.counts),
            code_counts=dict(self.code_counts),
            suppressed=suppressed,
        )


def _finding_order(f: Finding) -> tuple[int, int]:
    # File order; findings about the whole recording (no index) last.
    return (f.index if f.index is not None else 1 << 62, f.offset or 0)


def check_records(
    records: Iterable[tuple[int, int, Record]],
    end: StreamEnd | None = None,
    *,
    max_per_code: int = 100,
) -> CheckReport:
    """Check ``(index, offset, Record)`` triples in file order; pure, no I/O.

    ``end`` describes a stream that ended badly (see :class:`StreamEnd`).
    """
    checker = Checker(max_per_code=max_per_code)
    for index, offset, record in records:
        checker.feed(index, offset, record)
    return checker.finish(end)


# the reader's chunk size and smallest chunk for the bulk index (tests make them small)
_CHUNK_SIZE = CHUNK_SIZE
_BULK_MIN_BYTES = BULK_MIN_BYTES


def _data_frames(buf: bytes) -> BulkIndex | None:
    """The frame records of a chunk in Go's layout, from the bulk frame index.

    The data and EOF frames come as a table of columns (lists ``pos``,
    ``seq``, ``ts``, ``dir``, ``t``, ``stream``, ``size``) for
    :meth:`Checker.feed_data_run`; the other frames as envelopes, which the
    reader turns into records decoding their frame map alone. The reader
    uses a run or an envelope only where its walk from record to record
    lands (see ``RecordingReader.raw_items``).
    """
    parsed = parse_frame_records(buf)
    if parsed is None:
        return None
    r, e = parsed
    data = (r.ftype == _DATA) | (r.ftype == _EOF)
    columns = {
        "pos": r.pos[data],
        "seq": r.seq[data],
        "ts": r.ts[data],
        "dir": r.direction[data],
        "t": r.ftype[data],
        "stream": r.stream[data],
        "size": (r.end - r.data)[data],
    }
    ends = r.end[data]
    table = {name: values.tolist() for name, values in columns.items()}
    envelopes = dict(
        zip(
            e.pos.tolist(),
            zip(e.frame.tolist(), e.seq.tolist(), e.ts.tolist(), e.direction.tolist(), strict=True),
            strict=True,
        )
    )
    return table["pos"], ends.tolist(), run_stops(columns["pos"], ends), table, envelopes


def check_recording(
    path: str | os.PathLike[str],
    *,
    max_per_code: int = 100,
    progress: Callable[[int], None] | None = None,
    fast_path: bool = True,
) -> CheckReport:
    """Check the recording file at ``path`` in one streaming pass.

    Items that are CBOR but not valid records are reported and skipped. After
    bytes that are not CBOR the check resumes at the next plausible record
    (see :func:`next_record_start`), reporting the skipped bytes as
    ``garbage``; record indexes then count the records actually read. A cut
    last record ends the pass. ``progress`` is called now and then with the
    byte offset reached, and with the size at the end. Raises ``OSError`` when the file
    cannot be read.

    Data and EOF frames in Go's layout are checked from the bulk frame index
    of each chunk (with NumPy), without decoding them; ``fast_path=False``
    decodes every record with cbor2, the reference the tests compare with.
    """
    checker = Checker(max_per_code=max_per_code)
    feed_item = checker.feed_item
    feed_data_run = checker.feed_data_run
    feed = checker.feed
    bulk = _data_frames if fast_path else None
    next_progress = 4096
    size = os.path.getsize(path)
    end: _End | None = None
    index = 0
    start = 0
    for _attempt in range(MAX_RESYNCS + 1):
        reader = RecordingReader(
            path,
            start=start,
            require_footer=False,
            chunk_size=_CHUNK_SIZE,
            bulk_min_bytes=_BULK_MIN_BYTES,
        )
        try:
            for offset, item in reader.raw_items(bulk):
                if item.__class__ is ParsedRun:
                    feed_data_run(index, item)
                    index += item.stop - item.start
                elif item.__class__ is Record:  # a frame, its map decoded alone
                    feed(index, offset, item)
                    index += 1
                else:
                    feed_item(index, offset, item)
                    index += 1
                if progress is not None and index >= next_progress:
                    progress(offset)
                    next_progress = index + 4096  # a bar moves smoothly
            break
        except TruncatedError as exc:
            end = _End(exc.offset or reader.offset, exc.message, "cut")
            break
        except RemoteProtocolError as exc:
            bad = exc.offset if exc.offset is not None else reader.offset
            with open(path, "rb") as fp:
                resume = next_record_start(fp, bad + 1)
            if resume is None or _attempt == MAX_RESYNCS:
                end = _End(bad, f"{exc.message}; {size - bad} bytes not read", "garbage")
                break
            checker.add(
                "garbage",
                f"{exc.message}; skipped {resume - bad} bytes to a record at byte {resume}",
                index=index,
                offset=bad,
            )
            start = resume
    if progress is not None:
        progress(size)
    return checker.finish(end)


def iter_findings(report: CheckReport, minimum: Severity = Severity.INFO) -> Iterator[Finding]:
    """The report's findings at ``minimum`` severity or worse, in file order."""
    rank = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    limit = rank[minimum]
    return (f for f in report.findings if rank[f.severity] <= limit)


# -- naming helpers ---------------------------------------------------------------------


def _record_name(rtype: int) -> str:
    return rtype.name if isinstance(rtype, RecordType) else f"type-{int(rtype)}"


def _frame_name(ftype: int) -> str:
    return FrameType(ftype).name if ftype in _FRAME_TYPES else f"type-{int(ftype)}"


def _dir_word(direction: int) -> str:
    if direction == Direction.SEND:
        return "sent"
    if direction == Direction.RECV:
        return "received"
    return f"direction {int(direction)}"


def _seq_of(record: Record) -> int | None:
    payload = record.payload
    seq = getattr(payload, "seq", None)
    return seq if isinstance(seq, int) else None


def _ns(delta: int) -> str:
    return f"{delta / 1e9:.6f}s"
