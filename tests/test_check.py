"""reclab.check: every finding code on hand-built records, and the file-level pass."""

from __future__ import annotations

import contextlib
import io
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest

from agentproto import (
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    Record,
    Recorder,
    RecordType,
    RemoteProtocolError,
)
from agentproto.recording import ParsedRun, RecordingReader
from reclab.check import CODES, Severity, check_recording, check_records, next_record_start
from tests.builders import RECV, SEND, T0, RecordingBuilder

# Bare records from the shared builder (conftest.RecordingBuilder).


def header(t: int = T0) -> Record:
    return RecordingBuilder().header(t, local_user="ci", local_pid=42)


def start(seq: int, t: int = T0 + 1000) -> Record:
    return RecordingBuilder().start(
        seq, t, path="/bin/echo", argv=["echo", "hi"], env=[], cwd="/tmp"
    )


def frame(seq: int, t: int, direction: int, f: Frame) -> Record:
    return RecordingBuilder().frame(seq, t, direction, f)


def data(seq: int, t: int, stream: int, payload: bytes) -> Record:
    return RecordingBuilder().data(seq, t, stream, payload)


def eof(seq: int, t: int, stream: int) -> Record:
    return RecordingBuilder().eof(seq, t, stream)


def exit_(seq: int, t: int, code: int) -> Record:
    return RecordingBuilder().exit(seq, t, code)


def end(seq: int, t: int, code: int) -> Record:
    return RecordingBuilder().end(seq, t, code)


def footer(count: int, t: int = T0 + 10**9) -> Record:
    return RecordingBuilder().footer(t, count)


def fop(seq: int, t: int, req_id: int) -> Record:
    req = FileOpReq(req_id=req_id, op=FileOp.STAT, path="/etc/hosts")
    return frame(seq, t, SEND, Frame(type=FrameType.FILE_OP, file_op=req))


def frp(seq: int, t: int, req_id: int) -> Record:
    return frame(
        seq, t, RECV, Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=req_id, n=1))
    )


def command(seq: int, base: int, code: int = 0) -> list[Record]:
    """A well-formed command: start, stdin, output, EOFs, exit, end."""
    return [
        start(seq, base),
        frame(seq, base + 1, SEND, Frame(type=FrameType.EXEC, exec=start(seq).cmd_start.exec)),  # type: ignore[union-attr]
        data(seq, base + 2, 0, b"in"),
        eof(seq, base + 3, 0),
        data(seq, base + 4, 1, b"hello\n"),
        data(seq, base + 5, 2, b"oops\n"),
        fop(seq, base + 6, 7),
        frp(seq, base + 7, 7),
        eof(seq, base + 8, 1),
        eof(seq, base + 9, 2),
        exit_(seq, base + 10, code),
        end(seq, base + 11, code),
    ]


def good() -> list[Record]:
    return [header(), *command(1, T0 + 100), *command(2, T0 + 200, 3), footer(2)]


def numbered(records: list[Record]) -> list[tuple[int, int, Record]]:
    # Offsets only need to be distinct and increasing for the pure checker.
    return [(i, i * 100, r) for i, r in enumerate(records)]


def codes_of(records: list[Record]) -> dict[str, int]:
    return check_records(numbered(records)).code_counts


def test_good_recording_has_no_findings() -> None:
    report = check_records(numbered(good()))
    assert report.findings == []
    assert report.ok
    assert report.records == len(good())


def test_concurrent_interleaved_commands_are_fine() -> None:
    a, b = command(1, T0 + 100), command(2, T0 + 150)
    mixed = [header(), a[0], b[0]]
    for x, y in zip(a[1:], b[1:], strict=True):
        mixed += [x, y]
    mixed.append(footer(2))
    assert check_records(numbered(mixed)).findings == []


def _insert(records: list[Record], index: int, *new: Record) -> list[Record]:
    return records[:index] + list(new) + records[index:]


def _replace(records: list[Record], index: int, new: Record) -> list[Record]:
    out = list(records)
    out[index] = new
    return out


G = good()
C1_EXIT = 11  # index of command 1's FrameExit in good()
C1_END = 12

# (code, records, index of the record the finding must point at or None)
CASES: list[tuple[str, Callable[[], list[Record]], int | None]] = [
    ("missing-header", lambda: G[1:], 0),
    ("header-not-first", lambda: [G[1], G[0], *G[2:]], 1),
    ("duplicate-header", lambda: _insert(G, 1, header()), 1),
    ("missing-footer", lambda: G[:-1], None),
    ("duplicate-footer", lambda: [*G, footer(2)], len(G)),
    ("record-after-footer", lambda: [*G, data(2, T0 + 300, 1, b"x")], len(G)),
    ("footer-count-mismatch", lambda: [*G[:-1], footer(5)], len(G) - 1),
    ("duplicate-start", lambda: _insert(G, 2, start(1)), 2),
    ("seq-out-of-order", lambda: [header(), *command(2, T0 + 100), footer(1)], 1),
    ("end-without-start", lambda: _insert(G, 1, end(9, T0, 0)), 1),
    ("duplicate-end", lambda: _insert(G, C1_END + 1, end(1, T0 + 112, 0)), C1_END + 1),
    ("command-without-end", lambda: [*G[:C1_END], *G[C1_END + 1 :]], 1),
    ("frame-unknown-seq", lambda: _insert(G, 2, data(5, T0 + 101, 1, b"x")), 2),
    ("frame-after-exit", lambda: _insert(G, C1_EXIT + 1, data(1, T0 + 110, 1, b"x")), 12),
    ("frame-after-end", lambda: _insert(G, C1_END + 1, data(1, T0 + 112, 1, b"x")), 13),
    ("duplicate-exit", lambda: _insert(G, C1_EXIT + 1, exit_(1, T0 + 110, 0)), 12),
    ("exit-code-mismatch", lambda: _replace(G, C1_END, end(1, T0 + 111, 9)), C1_END),
    ("end-without-exit-frame", lambda: [*G[:C1_EXIT], *G[C1_EXIT + 1 :]], C1_EXIT),
    ("data-after-eof", lambda: _insert(G, 5, data(1, T0 + 103, 0, b"late")), 5),
    ("duplicate-eof", lambda: _insert(G, 5, eof(1, T0 + 103, 0)), 5),
    ("response-without-request", lambda: _insert(G, 9, frp(1, T0 + 107, 8)), 9),
    ("duplicate-request-id", lambda: _insert(G, 8, fop(1, T0 + 106, 7)), 8),
    ("request-unanswered", lambda: _insert(G, 8, fop(1, T0 + 106, 99)), 8),
    ("timestamp-backwards", lambda: _insert(G, 5, data(1, T0 + 50, 1, b"x")), 5),
    ("unknown-record-type", lambda: _insert(G, 1, Record(type=9)), 1),
    (
        "unknown-frame-type",
        lambda: _insert(G, 3, frame(1, T0 + 101, RECV, Frame(type=42))),
        3,
    ),
    (
        "unknown-direction",
        lambda: _insert(G, 3, frame(1, T0 + 101, 7, Frame(type=FrameType.LOG))),
        3,
    ),
    (
        "unexpected-direction",
        lambda: _insert(G, 3, frame(1, T0 + 101, SEND, Frame(type=FrameType.EXIT, code=1))),
        3,
    ),
    ("record-payload-mismatch", lambda: _insert(G, 1, Record(type=RecordType.FRAME)), 1),
]


@pytest.mark.parametrize(("code", "build", "where"), CASES, ids=[c[0] for c in CASES])
def test_each_code_on_hand_built_records(
    code: str, build: Callable[[], list[Record]], where: int | None
) -> None:
    report = check_records(numbered(build()))
    hits = [f for f in report.findings if f.code == code]
    assert hits, report.findings
    assert hits[0].severity in (CODES[code][0], Severity.WARNING)
    if where is not None:
        assert hits[0].index == where
        assert hits[0].offset == where * 100
    assert report.ok == (report.counts["error"] == 0)


def test_severity_drives_ok() -> None:
    assert not check_records(numbered(_insert(G, 1, header()))).ok
    # a missing footer alone is a warning: the recording is still usable
    report = check_records(numbered(G[:-1]))
    assert report.ok and report.counts["warning"] == 1


def test_late_runner_frame_is_a_warning_agent_frame_an_error() -> None:
    late_stdin = _insert(G, C1_EXIT + 1, data(1, T0 + 110, 0, b"x"))
    late_stdout = _insert(G, C1_EXIT + 1, data(1, T0 + 110, 1, b"x"))
    (a,) = [f for f in check_records(numbered(late_stdin)).findings if f.code == "frame-after-exit"]
    (b,) = [
        f for f in check_records(numbered(late_stdout)).findings if f.code == "frame-after-exit"
    ]
    assert a.severity == Severity.WARNING and b.severity == Severity.ERROR


def test_record_with_two_payloads_is_a_warning() -> None:
    both = Record(
        type=RecordType.COMMAND_END, cmd_end=end(1, T0, 0).cmd_end, footer=footer(1).footer
    )
    (f,) = check_records(numbered(_insert(G, 1, both))).findings[:1]
    assert (f.code, f.severity, f.index) == ("record-payload-mismatch", Severity.WARNING, 1)
    assert "also carries footer" in f.message


def test_findings_are_capped_and_counted() -> None:
    records = [*G, *(data(1, T0 + 400 + i, 1, b"x") for i in range(30))]
    report = check_records(numbered(records), max_per_code=5)
    kept = [f for f in report.findings if f.code == "record-after-footer"]
    assert len(kept) == 5
    assert report.code_counts["record-after-footer"] == 30
    # each late frame is also after its command's end and after its stdout EOF
    expected = {"record-after-footer": 25, "frame-after-end": 25, "data-after-eof": 25}
    assert report.suppressed == expected
    assert sum(f.code == "findings-suppressed" for f in report.findings) == 3
    assert report.counts["error"] == 90


def test_seq_out_of_order_reports_each_gap_once() -> None:
    records = [header(), *command(1, T0), *command(3, T0 + 100), *command(4, T0 + 200), footer(3)]
    found = [f for f in check_records(numbered(records)).findings if f.code == "seq-out-of-order"]
    assert [f.seq for f in found] == [3]


def test_empty_stream() -> None:
    report = check_records([])
    assert [f.code for f in report.findings] == ["missing-header"]


# --- file level: invalid items, cut and garbage, with offsets checked by plain cbor2 ----------


def _write(path: Path, records: list[Record], raw_tail: bytes = b"") -> list[int]:
    offsets = []
    with path.open("wb") as fp:
        rec = Recorder(fp)
        for r in records:
            offsets.append(fp.tell())
            rec.write_record(r)
        fp.write(raw_tail)
    return offsets


def test_check_recording_clean_file(tmp_path: Path) -> None:
    path = tmp_path / "good.cbor"
    _write(path, G)
    report = check_recording(path)
    assert report.findings == [] and report.records == len(G)


def test_check_recording_cut_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.cbor"
    offsets = _write(path, G[:-1])
    blob = path.read_bytes()
    cut_at = offsets[-1] + 3
    path.write_bytes(blob[:cut_at])
    report = check_recording(path)
    assert report.records == len(G) - 2
    (trunc,) = [f for f in report.findings if f.code == "truncated"]
    assert trunc.offset == offsets[-1] and trunc.severity == Severity.ERROR
    assert report.code_counts["missing-footer"] == 1
    assert not report.ok


def test_check_recording_garbage_and_invalid_items(tmp_path: Path) -> None:
    path = tmp_path / "bad.cbor"
    # a valid CBOR item that is not a record, then garbage that is not CBOR at all
    invalid = cbor2.dumps({"type": "frame"})
    offsets = _write(path, G[:3], invalid + b"\xff\xff\xff garbage")
    invalid_at = offsets[-1] + len(G[2].to_cbor())
    report = check_recording(path)
    codes = {f.code: f for f in report.findings}
    assert codes["invalid-record"].offset == invalid_at
    assert codes["invalid-record"].index == 3
    assert codes["garbage"].offset == invalid_at + len(invalid)
    assert "bytes not read" in codes["garbage"].message
    assert report.records == 4


def test_every_code_is_exercised() -> None:
    covered = {c[0] for c in CASES} | {
        "invalid-record",
        "truncated",
        "garbage",
        "findings-suppressed",
    }
    assert covered == set(CODES)


@pytest.mark.parametrize(("code", "build", "where"), CASES, ids=[c[0] for c in CASES])
def test_file_pass_matches_pure_pass(
    code: str, build: Callable[[], list[Record]], where: int | None, tmp_path: Path
) -> None:
    # check_recording reads data/EOF frames straight from the CBOR maps: same findings
    records = build()
    path = tmp_path / "case.cbor"
    offsets = _write(path, records)
    from_file = check_recording(path)
    pure = check_records([(i, offsets[i], r) for i, r in enumerate(records)])
    assert from_file.findings == pure.findings
    assert from_file.code_counts == pure.code_counts


def test_fast_path_refuses_what_from_map_refuses(tmp_path: Path) -> None:
    good_frame = data(1, T0 + 101, 1, b"x").to_map()
    variants = []
    for key, value in (("t", 2.0), ("s", -1), ("d", "text"), ("t", True)):
        m = cbor2.loads(cbor2.dumps(good_frame))
        m["frame"]["frame"][key] = value
        variants.append(cbor2.dumps(m))
    path = tmp_path / "odd.cbor"
    _write(path, G[:2], b"".join(variants))
    report = check_recording(path)
    assert report.code_counts.get("invalid-record") == len(variants), report.findings


def test_check_resumes_after_garbage(tmp_path: Path) -> None:
    path = tmp_path / "holes.cbor"
    junk = b"\xff\xfe not cbor \xff"
    with path.open("wb") as fp:
        for i, r in enumerate(G):
            if i in (5, 9):
                fp.write(junk)
            fp.write(r.to_cbor())
    report = check_recording(path)
    assert report.records == len(G)  # every record was read despite the holes
    garbage = [f for f in report.findings if f.code == "garbage"]
    first_at = sum(len(r.to_cbor()) for r in G[:5])
    assert [(f.index, f.offset) for f in garbage] == [
        (5, first_at),
        (9, first_at + len(junk) + sum(len(r.to_cbor()) for r in G[5:9])),
    ]
    assert f"skipped {len(junk)} bytes" in garbage[0].message
    assert set(report.code_counts) == {"garbage"}


def test_next_record_start_across_chunks() -> None:
    import io

    record = G[1].to_cbor()
    for pad in range(0, 12):
        blob = b"\x00" * pad + b"\xff" * 7 + record
        found = next_record_start(io.BytesIO(blob), 0, chunk_size=4)
        assert found == pad + 7
    assert next_record_start(io.BytesIO(b"\xff" * 100), 0, chunk_size=8) is None


# --- the bulk path (data frames from the frame index) against decoding every record ----


@pytest.fixture
def bulk_everywhere(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make check_recording use the bulk frame index on every chunk, however small.

    Returns a list that grows by one for each run of records the bulk path
    checked, so a test can tell that it was used at all.
    """
    import reclab.check as check_mod

    monkeypatch.setattr(check_mod, "_BULK_MIN_BYTES", 0)
    runs: list[int] = []
    feed_run = check_mod.Checker.feed_data_run

    def counting(self: check_mod.Checker, index: int, run: ParsedRun) -> None:
        runs.append(run.stop - run.start)
        feed_run(self, index, run)

    monkeypatch.setattr(check_mod.Checker, "feed_data_run", counting)
    return runs


def assert_same_findings(path: Path, chunk_size: int | None = None) -> dict[str, Any]:
    import reclab.check as check_mod

    if chunk_size is not None:
        check_mod._CHUNK_SIZE = chunk_size
    try:
        fast = check_recording(path, max_per_code=5).to_json()
        general = check_recording(path, max_per_code=5, fast_path=False).to_json()
    finally:
        check_mod._CHUNK_SIZE = check_mod.CHUNK_SIZE
    assert fast == general, path.name
    return fast


def mutations(data: bytes, rnd: random.Random) -> list[bytes]:
    """Damaged and reordered versions of a recording's bytes."""
    reader = RecordingReader(io.BytesIO(data), require_footer=False)
    starts = []
    with contextlib.suppress(RemoteProtocolError):  # a cut sample: its complete records
        starts = [off for off, _ in reader.raw_items()]
    bounds = [*starts, reader.offset]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    out = []
    for _ in range(6):
        flipped = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            flipped[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        out.append(bytes(flipped))
    out.append(data[: rnd.randrange(1, len(data))])  # cut anywhere
    at = rnd.choice(bounds)
    out.append(data[:at] + b"\xff\xfe junk \xff" + data[at:])  # garbage between records
    shuffled = pieces[:]
    rnd.shuffle(shuffled)  # every order problem at once: late, early, unknown commands
    out.append(b"".join(shuffled))
    out.append(b"".join(pieces[1:] + pieces[1:]))  # no header, everything twice
    middle = len(pieces) // 2  # mostly data frames there
    out.append(data + b"".join(pieces[middle : middle + 6]))  # records after the footer
    out.append(b"".join(pieces[middle:]))  # starts with a frame, commands never started
    return out


def test_bulk_path_finds_the_same_in_every_sample_and_mutation(
    bulk_everywhere: list[int], tmp_path: Path
) -> None:
    from tests.builders import SAMPLES

    rnd = random.Random(13)
    path = tmp_path / "m.cbor"
    for sample in SAMPLES:
        data = sample.read_bytes()
        assert_same_findings(sample)
        for mutated in mutations(data, rnd):
            path.write_bytes(mutated)
            assert_same_findings(path, chunk_size=rnd.choice([97, 4096, 1 << 20]))
    assert sum(bulk_everywhere) > 500  # the bulk path did the work


@pytest.mark.parametrize(("code", "build", "where"), CASES, ids=[c[0] for c in CASES])
def test_bulk_path_finds_the_same_for_every_code(
    code: str,
    build: Callable[[], list[Record]],
    where: int | None,
    bulk_everywhere: list[int],
    tmp_path: Path,
) -> None:
    path = tmp_path / "case.cbor"
    _write(path, build())
    report = assert_same_findings(path)
    assert code in report["codes"] or code in ("invalid-record", "findings-suppressed")


@pytest.mark.go
def test_bulk_path_finds_the_same_in_go_recordings(
    bulk_everywhere: list[int], tmp_path: Path
) -> None:
    from gotools import go_outputs  # skips the test when Go is not installed

    go = go_outputs(tmp_path / "go")
    rnd = random.Random(5)
    path = tmp_path / "m.cbor"
    for recording in [*go.recordings, go.cut, go.no_footer]:
        assert_same_findings(recording)
        for mutated in mutations(recording.read_bytes(), rnd)[:8]:
            path.write_bytes(mutated)
            assert_same_findings(path, chunk_size=rnd.choice([333, 1 << 20]))
    assert sum(bulk_everywhere) > 1000


def test_bulk_path_reports_data_of_a_running_command_after_the_footer(
    bulk_everywhere: list[int], tmp_path: Path
) -> None:
    # the command never ended, so nothing but the footer makes these frames wrong
    path = tmp_path / "late.cbor"
    frames = [data(1, T0 + 2000 + i, 1, b"x") for i in range(5)]
    _write(path, [header(), start(1), footer(1), *frames])
    report = assert_same_findings(path)
    assert report["codes"]["record-after-footer"] == 5
    assert bulk_everywhere
