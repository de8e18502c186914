"""Readers never hang and never blow up (issue 11), and read past damage (issue 12).

Every reader of recordings (``iter_records``, the model's index, ``check`` and
the CLI commands on top of them) is fed mutated recordings: the only outcomes
allowed are a correct read or the project's own error with a byte offset.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentproto import Decoder, LimitExceededError, RemoteProtocolError, iter_records
from agentproto.codec import MAX_CONTAINER_ITEMS, ItemDecoder, item_end
from agentproto.errors import FrameTooLargeError
from agentproto.types import MAX_DEPTH
from reclab import tables
from reclab.check import check_recording
from reclab.cli import app
from reclab.errors import ReclabError
from reclab.model import open_recording
from reclab.summary import command_json, summarize
from reclab.timeline import command_spans, frame_rows

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample-recordings").glob("*.cbor"))
QUICK = (ROOT / "sample-recordings" / "quick.cbor").read_bytes()
runner = CliRunner()


def read_everything(path: Path) -> None:
    """Every reader over ``path``: only a correct read or our error with an offset."""
    try:
        list(iter_records(path, require_footer=False))
    except RemoteProtocolError as exc:
        assert exc.offset is not None, exc
    check_recording(path)
    try:
        rec = open_recording(path)
    except ReclabError:
        return  # not a recording at all: one line for the CLI
    with rec:
        for i in range(rec.record_count):
            rec.record(i)  # every indexed record decodes
        for d in rec.damage:
            assert d.size > 0 and 0 < d.offset < rec.size
        offsets = [rec.offset_of(i) for i in range(rec.record_count)]
        assert offsets == sorted(set(offsets))  # the index never went backwards
        summarize(rec).to_json()
        for cmd in rec.commands.values():
            command_json(cmd)
            list(frame_rows(rec, cmd.seq))
            for stream in (0, 1, 2):
                rec.stream_bytes(cmd.seq, stream)
        command_spans(rec)
        tables.commands_table(rec)
        tables.frames_table(rec)
        tables.fileops_table(rec)
        tables.logs_table(rec)


# --- the hang of issue 11 ------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("at", range(478, 492))
def test_invalid_utf8_in_a_log_message_does_not_hang(tmp_path: Path, at: int) -> None:
    # quick.cbor's log message made invalid UTF-8: the model reused a cbor2 decoder
    # after the error, its read-ahead was stale and indexing went backwards forever.
    data = bytearray(QUICK)
    data[at] = 0xFF
    path = tmp_path / "mutant.cbor"
    path.write_bytes(bytes(data))
    with open_recording(path) as rec:
        problems = [(d.offset, d.message) for d in rec.damage]
        if rec.truncation is not None and rec.truncation.kind == "garbage":
            problems.append((rec.truncation.offset, rec.truncation.message))
        assert problems, "the damaged record must be reported"
        assert all(0 < offset <= at for offset, _ in problems)
        assert rec.record_count >= 4
    read_everything(path)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "at byte" in result.output  # the warning names the offset


def test_item_decoder_is_not_misled_by_an_earlier_error() -> None:
    good = cbor2.dumps({"type": 1, "x": "y" * 5000})
    bad = b"\x78\x05ab\xff\xfecd"  # a text string of invalid UTF-8
    buf = bad + good
    decoder = ItemDecoder(buf)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.decode(0)
    assert info.value.offset == 0
    item, end = decoder.decode(len(bad))
    assert item == {"type": 1, "x": "y" * 5000} and end == len(buf)


# --- damage in the middle is skipped and reported, as check does ---------------------------


def test_a_16_byte_flip_in_the_middle_is_skipped(tmp_path: Path) -> None:
    data = bytearray((ROOT / "sample-recordings" / "failing-build.cbor").read_bytes())
    intact = open_recording(ROOT / "sample-recordings" / "failing-build.cbor")
    middle = intact.offset_of(intact.record_count // 2) + 3
    data[middle : middle + 16] = b"\xff" * 16
    path = tmp_path / "flipped.cbor"
    path.write_bytes(bytes(data))
    with open_recording(path) as rec:
        assert len(rec.damage) == 1
        d = rec.damage[0]
        assert d.offset < middle < d.offset + d.size
        assert rec.truncation is None  # the footer after the damage was read
        assert rec.footer == intact.footer
        assert rec.record_count >= intact.record_count - 2
    info = runner.invoke(app, ["info", str(path), "--json"])
    assert info.exit_code == 0
    damage = json.loads(info.stdout)["damage"]
    assert damage == [{"offset": d.offset, "size": d.size, "message": d.message}]
    text = runner.invoke(app, ["info", str(path)], env={"COLUMNS": "200"})
    assert f"{d.size} bytes at byte {d.offset} skipped" in text.output
    assert text.stderr.count("\n") == 1 and "skipped 49 bytes" not in text.stdout
    assert f"at byte {d.offset}; skipped {d.size} bytes" in text.stderr  # one warning line


# --- huge integers ---------------------------------------------------------------------------


HEADER = cbor2.dumps({"type": 1, "header": {"version": "1", "start_time": 1}})
FOOTER = cbor2.dumps({"type": 5, "footer": {"end_time": 2, "command_count": 1}})
U64_MAX = 2**64 - 1


def frame_record(seq: Any = 1, ts: Any = 10, direction: Any = 2, **frame: Any) -> bytes:
    rf = {"seq": seq, "ts": ts, "dir": direction, "frame": frame}
    return cbor2.dumps({"type": 3, "frame": rf})


GOOD = frame_record(t=2, s=1, d=b"ok")
HUGE = [
    pytest.param(cbor2.dumps({"type": 1 << 200000, "header": {}}), id="bignum-type"),
    pytest.param(frame_record(seq=1 << 200000, t=2, s=1, d=b"x"), id="bignum-seq"),
    pytest.param(frame_record(ts=U64_MAX, t=2, s=1, d=b"x"), id="u64-ts"),
    pytest.param(frame_record(seq=U64_MAX, t=2, s=1, d=b"x"), id="u64-seq"),
    pytest.param(frame_record(t=2, s=U64_MAX, d=b"x"), id="u64-stream"),
    pytest.param(frame_record(t=4, sig=U64_MAX), id="u64-signal"),
    pytest.param(frame_record(t=5, c=U64_MAX), id="u64-exit-frame-code"),
    pytest.param(
        cbor2.dumps({"type": 4, "cmd_end": {"seq": 1, "end_time": 3, "exit_code": U64_MAX}}),
        id="u64-exit-code",
    ),
    pytest.param(frame_record(t=11, fop={"id": 1, "op": 3, "of": U64_MAX}), id="u64-fileop"),
    pytest.param(frame_record(t=7, l={"lvl": -(1 << 80), "msg": "x"}), id="negative-level"),
]


@pytest.mark.parametrize("bad", HUGE)
def test_integers_out_of_the_go_range_are_an_invalid_record(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "huge.cbor"
    path.write_bytes(HEADER + GOOD + bad + GOOD + FOOTER)
    with pytest.raises(RemoteProtocolError) as info:
        list(iter_records(path))
    assert info.value.offset == len(HEADER + GOOD)
    with open_recording(path) as rec:
        assert [(d.offset, d.size) for d in rec.damage] == [(len(HEADER + GOOD), len(bad))]
        assert rec.record_count == 4 and rec.truncation is None
        assert rec.commands[1].frame_count == 2
    report = check_recording(path)
    assert any(f.offset == len(HEADER + GOOD) for f in report.findings)
    read_everything(path)
    for command in (["info"], ["commands", "--json"], ["timeline"], ["export", "--csv"]):
        result = runner.invoke(app, [*command, str(path)])
        assert result.exit_code == 0, (command, result.output)
        assert f"at byte {len(HEADER + GOOD)}" in result.output


# --- Go's limits on arrays, maps and nesting ------------------------------------------------


def test_item_end_applies_gos_limits() -> None:
    ok = b"\x9a" + MAX_CONTAINER_ITEMS.to_bytes(4, "big") + b"\x00" * MAX_CONTAINER_ITEMS
    assert item_end(ok) == len(ok)
    with pytest.raises(LimitExceededError):
        item_end(b"\x9a" + (MAX_CONTAINER_ITEMS + 1).to_bytes(4, "big"))  # refused from the head
    with pytest.raises(LimitExceededError):
        item_end(b"\xba" + (MAX_CONTAINER_ITEMS + 1).to_bytes(4, "big"))
    assert item_end(b"\x81" * MAX_DEPTH + b"\x00") == MAX_DEPTH + 1
    with pytest.raises(LimitExceededError):
        item_end(b"\x81" * (MAX_DEPTH + 1) + b"\x00")
    with pytest.raises(LimitExceededError):
        item_end(b"\xc1" * (MAX_DEPTH + 1) + b"\x00")  # tags nest too


def big_array_record(elements: int) -> bytes:
    head = b"\x9a" + elements.to_bytes(4, "big")
    return (
        bytes.fromhex("a3647479706503656672616d65")
        + frame_record(t=2, s=1, d=b"")[13:]
        + (b"\x63big" + head + b"\x00" * elements)
    )


@pytest.mark.parametrize("elements", [MAX_CONTAINER_ITEMS + 1, 4 * 1024 * 1024])
def test_a_record_over_the_limits_is_refused(tmp_path: Path, elements: int) -> None:
    bad = big_array_record(elements)
    assert cbor2.loads(bad)["big"].__len__() == elements  # valid CBOR, only too big for Go
    path = tmp_path / "big.cbor"
    path.write_bytes(HEADER + bad + GOOD + FOOTER)
    with pytest.raises(FrameTooLargeError) as info:
        list(iter_records(path))
    assert info.value.offset == len(HEADER)
    with open_recording(path) as rec:
        assert [(d.offset, d.size) for d in rec.damage] == [(len(HEADER), len(bad))]
        assert "limit" in rec.damage[0].message
        assert rec.record_count == 3
    report = check_recording(path)
    assert [f.code for f in report.findings if f.offset == len(HEADER)] == ["garbage"]


# --- property: mutated recordings --------------------------------------------------------------

CRAFTED = [
    b"\x81" * 40 + b"\x00",  # deep nesting
    b"\x5b" + (1 << 62).to_bytes(8, "big"),  # a lying length
    b"\x9b" + (1 << 40).to_bytes(8, "big"),
    b"\xc2\x59\x10\x00" + b"\xff" * 4096,  # a bignum
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",  # uint64 max
    b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff",  # the most negative CBOR integer
    b"\xa1\x01\x02",  # an integer key
    b"\xa1\x41k\x02",  # a byte-string key
    b"\xa1\xf6\x02",  # a null key
    b"\x7f\x61a\xff",  # indefinite text
    b"\xd8\x1c\x81\xd8\x1d\x00",  # a shared reference to itself
    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
]


@st.composite
def mutants(draw: Any) -> bytes:
    sample = draw(st.sampled_from(SAMPLES))
    data = bytearray(sample.read_bytes())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        how = draw(st.sampled_from(["flip", "insert", "delete", "cut", "crafted", "byte"]))
        if how == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "byte" and data:
            data[at] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif how == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.sampled_from(CRAFTED))
    return bytes(data)


@pytest.mark.timeout(120)
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutants())
def test_mutated_recordings_read_or_fail_with_an_offset(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "mutant.cbor"
    path.write_bytes(data)
    read_everything(path)


# --- every CLI reader on cut and flipped samples -----------------------------------------------

COMMANDS = [
    ["info"],
    ["info", "--json"],
    ["commands", "--json"],
    ["timeline"],
    ["timeline", "--seq", "1"],
    ["cat", "--seq", "1", "--stream", "both"],
    ["export", "--csv", "-t", "frames"],
    ["check", "--quiet"],
]


def mutations(data: bytes, count: int) -> list[tuple[str, bytes]]:
    """``count`` cuts and ``count`` flips spread evenly over ``data``."""
    step = max(len(data) // count, 1)
    cuts = [(f"cut@{at}", data[:at]) for at in range(1, len(data), step)]
    flips = []
    for at in range(step // 2, len(data), step):
        flipped = bytearray(data)
        flipped[at] ^= 0xFF
        flips.append((f"flip@{at}", bytes(flipped)))
    return cuts + flips


def cli_survives(path: Path, command: list[str]) -> None:
    result = runner.invoke(app, [command[0], str(path), *command[1:]], env={"COLUMNS": "120"})
    assert result.exit_code in (0, 1, 2), (command, result.output)
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), (command, repr(result.exception))
    assert "Traceback" not in result.output


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_cli_readers_on_cut_and_flipped_samples(tmp_path: Path, sample: Path) -> None:
    path = tmp_path / sample.name
    for _name, data in mutations(sample.read_bytes(), 3):
        path.write_bytes(data)
        for command in COMMANDS:
            cli_survives(path, command)


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_cli_readers_on_every_cut_and_flip(
    tmp_path: Path, sample: Path, request: pytest.FixtureRequest
) -> None:
    # Every offset of every sample through every reader takes hours: run with --exhaustive.
    if not request.config.getoption("--exhaustive"):
        pytest.skip("the exhaustive sweep runs with --exhaustive")
    data = sample.read_bytes()
    path = tmp_path / sample.name
    for _name, mutant in mutations(data, len(data)):
        path.write_bytes(mutant)
        for command in COMMANDS:
            cli_survives(path, command)


def test_read_everything_sees_a_good_recording_whole() -> None:
    # The oracle itself: a sample reads without any error.
    path = ROOT / "sample-recordings" / "fileops.cbor"
    read_everything(path)
    assert len(list(iter_records(io.BytesIO(path.read_bytes())))) > 10


def test_damage_right_after_damage_keeps_record_ends(tmp_path: Path) -> None:
    # Two damaged regions in a row after record 0: record 0 still ends where it ends.
    bad = cbor2.dumps("not a record")
    path = tmp_path / "twice.cbor"
    path.write_bytes(HEADER + bad + frame_record(t=2, s="x") + GOOD + FOOTER)
    with open_recording(path) as rec:
        assert [d.offset for d in rec.damage] == [len(HEADER), len(HEADER + bad)]
        assert rec.record_count == 3
        assert rec.record(0).header is not None and rec.record(1).frame is not None


REGRESSIONS = sorted((ROOT / "fuzz" / "regressions").glob("*"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kept", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_inputs_the_fuzzer_found(tmp_path: Path, kept: Path) -> None:
    # Every input the fuzz targets (fuzz/fuzz_readers.py) ever crashed on stays read.
    path = tmp_path / "kept.cbor"
    path.write_bytes(kept.read_bytes())
    read_everything(path)
    try:
        list(Decoder(io.BytesIO(kept.read_bytes())))
    except RemoteProtocolError as exc:
        assert exc.offset is not None


# --- valid_map: from_map's verdict without building objects ------------------------------------

_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2, 255, 256, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1])
    | st.text(max_size=3)
    | st.binary(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _frame_maps() -> Any:
    from agentproto import FileOpReq, FileOpResp, Frame, LogEntry
    from agentproto.wire import WireKeys

    keys = [*WireKeys(Frame), *WireKeys(FileOpReq), *WireKeys(FileOpResp), *WireKeys(LogEntry)]
    key = st.sampled_from(keys) | st.sampled_from(["T", "Fop", "zz"]) | st.integers(0, 3)
    nested = st.dictionaries(key, _VALUES, max_size=4)
    return st.dictionaries(key, _VALUES | nested, max_size=5)


@settings(max_examples=400, deadline=None)
@given(m=_frame_maps())
def test_valid_map_agrees_with_from_map(m: dict[Any, Any]) -> None:
    from agentproto import Frame

    try:
        Frame.from_map(m)
        accepted = True
    except RemoteProtocolError:
        accepted = False
    assert Frame.valid_map(m) is accepted
