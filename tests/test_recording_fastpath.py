"""The reader's frame-record fast path gives exactly what cbor2 and Record.from_map give.

``RecordingReader.__iter__`` builds frame records in Go's byte layout straight
from a NumPy parse of each chunk (``_frame_index``) and decodes everything else
with cbor2. These tests read the same bytes with the fast path forced on (for
every chunk, however small) and forced off, and compare records (with the
exact type of every value: enums, ints, bytes), offsets seen during iteration,
errors (type, message, offset, field) and the final ``offset``. The bytes are
generated from a seeded random source: every head size, shortest or not,
out-of-range values, other keys, other key orders, byte flips and cuts.
"""

from __future__ import annotations

import dataclasses
import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from agentproto import (
    Direction,
    ExecMsg,
    Frame,
    FrameType,
    LogEntry,
    Record,
    Recorder,
    RecordingReader,
    RecordType,
    RemoteProtocolError,
    SessionFooter,
    SessionHeader,
    encode_frame_record,
    layout,
)
from agentproto import recording as rec_mod
from agentproto.codec import Incomplete, item_end
from agentproto.layout import FRAME_HEAD_MAX
from agentproto.types import CommandEnd, CommandStart, decode_cbor_item

HEADER = Record(
    type=RecordType.SESSION_HEADER,
    header=SessionHeader(
        version="1.3.4", start_time=1_700_000_000_000_000_000, local_user="t", local_pid=1
    ),
).to_cbor()
FOOTER = Record(
    type=RecordType.SESSION_FOOTER,
    footer=SessionFooter(end_time=1_700_000_001_000_000_000, command_count=1),
).to_cbor()


# --- building bytes by hand --------------------------------------------------------------


def head(major: int, value: int, size: int | None = None) -> bytes:
    """A CBOR head; ``size`` 0 (inline), 1, 2, 4 or 8 argument bytes, shortest if None."""
    if size is None:
        limits = ((0, 24), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32))
        size = next((s for s, lim in limits if value < lim), 8)
    if size == 0:
        assert value < 24
        return bytes([major << 5 | value])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[size]
    return bytes([major << 5 | info]) + value.to_bytes(size, "big")


def integer(value: int, size: int | None = None) -> bytes:
    return head(0, value, size) if value >= 0 else head(1, -1 - value, size)


def text(s: str) -> bytes:
    raw = s.encode()
    return head(3, len(raw)) + raw


def bstr(data: bytes, size: int | None = None) -> bytes:
    return head(2, len(data), size) + data


def record_bytes(
    seq: bytes, ts: bytes, direction: bytes, frame_items: list[tuple[str, bytes]]
) -> bytes:
    """A frame record with the outer maps in Go's layout and the given encoded values."""
    frame = head(5, len(frame_items)) + b"".join(text(k) + v for k, v in frame_items)
    return (
        b"\xa2"
        + text("type")
        + b"\x03"
        + text("frame")
        + b"\xa4"
        + text("seq")
        + seq
        + text("ts")
        + ts
        + text("dir")
        + direction
        + text("frame")
        + frame
    )


SEQS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]
TIMES = [0, 1, 23, 24, -1, -24, -25, -256, 2**32, 1_700_000_000_123_456_789, 2**63 - 1]
TIMES += [2**63, -(2**63), -(2**63) - 1]
SMALL = [0, 1, 2, 3, 5, 23, 24, 255, 256]
STREAMS = [0, 1, 2, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32]
SIZES = [0, 1, 23, 24, 255, 256, 300, 65535, 65536]


def sizes_for(value: int) -> list[int | None]:
    """Every head size that can hold ``value`` (None: shortest)."""
    magnitude = value if value >= 0 else -1 - value
    fits = [s for s, lim in ((0, 24), (1, 1 << 8), (2, 1 << 16), (4, 1 << 32)) if magnitude < lim]
    return [None, *fits, 8] if magnitude < 1 << 64 else [None]


def random_record(rnd: random.Random) -> bytes:
    """A frame record, mostly in Go's layout, often with one deviation."""
    seq = rnd.choice(SEQS)
    ts = rnd.choice(TIMES) if rnd.random() < 0.5 else rnd.getrandbits(63)
    direction, ftype = rnd.choice(SMALL), rnd.choice(SMALL[:3] if rnd.random() < 0.5 else SMALL)
    odd = rnd.random() < 0.5  # deviate from the shortest heads
    items: list[tuple[str, bytes]] = [
        ("t", integer(ftype, rnd.choice(sizes_for(ftype)) if odd else None))
    ]
    if rnd.random() < 0.7:
        s = rnd.choice(STREAMS)
        items.append(("s", integer(s, rnd.choice(sizes_for(s)) if odd else None)))
    if rnd.random() < 0.7:
        data = rnd.randbytes(rnd.choice(SIZES) if rnd.random() < 0.2 else rnd.randint(0, 40))
        items.append(("d", bstr(data, rnd.choice(sizes_for(len(data))) if odd else None)))
    x = rnd.random()
    if x < 0.05:
        items.append((rnd.choice(["c", "e", "sig", "zz"]), integer(rnd.choice(TIMES))))
    elif x < 0.1:
        items.insert(rnd.randrange(len(items) + 1), ("e", text("oops")))
    elif x < 0.15:
        rnd.shuffle(items)
    elif x < 0.2:  # a key matching only case-insensitively, or a duplicate
        k, v = items[rnd.randrange(len(items))]
        items.append((k.upper(), v) if rnd.random() < 0.5 else (k, v))
    elif x < 0.25:  # a value of the wrong type
        k = rnd.choice([k for k, _ in items])
        items = [(k2, text("x") if k2 == k else v) for k2, v in items]
    elif x < 0.3:
        items = [(k, b"\xf6" if rnd.random() < 0.5 else v) for k, v in items]  # null
    return record_bytes(
        integer(seq, rnd.choice(sizes_for(seq)) if odd else None),
        integer(ts, rnd.choice(sizes_for(ts)) if odd else None),
        integer(direction, rnd.choice(sizes_for(direction)) if odd else None),
        items,
    )


def go_records(rnd: random.Random, count: int) -> list[bytes]:
    """Records as the Recorder writes them: frame records of every kind plus envelopes."""
    out = []
    exec_msg = ExecMsg(path="/bin/sh", argv=["sh"], env=None, cwd="/")
    start = CommandStart(seq=1, start_time=5, exec=exec_msg)
    out.append(Record(type=RecordType.COMMAND_START, cmd_start=start).to_cbor())
    for i in range(count):
        x = rnd.random()
        if x < 0.7:
            frame = Frame(
                type=FrameType.DATA,
                stream=rnd.choice(STREAMS[:-1]),
                data=rnd.randbytes(rnd.choice([0, 1, 30, 300])),
            )
        elif x < 0.8:
            frame = Frame(type=FrameType.EOF, stream=rnd.choice([0, 1, 2]))
        elif x < 0.9:
            frame = Frame(type=FrameType.LOG, log=LogEntry(level=0, msg="m", attrs=[f"i={i}"]))
        else:
            frame = Frame(type=FrameType.EXIT, code=rnd.choice([0, 1, -1]))
        seq = rnd.choice(SEQS[:-1])
        ts = rnd.choice(TIMES[:-3])
        out.append(encode_frame_record(seq, ts, rnd.choice([1, 2, 0, 23]), frame.to_cbor()))
    end = CommandEnd(seq=1, end_time=9, exit_code=0)
    out.append(Record(type=RecordType.COMMAND_END, cmd_end=end).to_cbor())
    return out


# --- reading both ways ---------------------------------------------------------------


def shape(value: Any) -> Any:
    """A value with the exact type of everything in it (dataclass == ignores IntEnum vs int)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            tuple(shape(getattr(value, f.name)) for f in dataclasses.fields(value)),
        )
    if isinstance(value, list):
        return [shape(v) for v in value]
    return (type(value).__name__, value)


def outcome(
    data: bytes, *, fast: bool, native: bool = True, chunk_size: int = 1 << 20, **options: Any
) -> Any:
    """Everything observable about reading ``data``: records, offsets, error, final state."""
    path: dict[str, Any] = {"bulk_min_bytes": 0, "native": native} if fast else {"fast_path": False}
    reader = RecordingReader(io.BytesIO(data), chunk_size=chunk_size, **path, **options)
    records, offsets = [], []
    error = None
    try:
        for record in reader:
            records.append(shape(record))
            offsets.append(reader.offset)
    except RemoteProtocolError as exc:
        error = (type(exc).__name__, exc.message, exc.offset, exc.field)
    return records, offsets, error, reader.offset, reader.saw_footer


def assert_same(data: bytes, **options: Any) -> Any:
    """The general path, the C fast path and the NumPy one read ``data`` the same."""
    general = outcome(data, fast=False, **options)
    assert outcome(data, fast=True, **options) == general
    assert outcome(data, fast=True, native=False, **options) == general
    return general


def reference(item: bytes) -> Any:
    """What Record.from_map makes of one encoded record (or its error message)."""
    try:
        return shape(Record.from_map(decode_cbor_item(item)))
    except RemoteProtocolError as exc:
        return ("error", exc.message, exc.field)


def fast_parse(item: bytes) -> Any:
    """The bulk parse's record for ``item`` alone, or None when it leaves it to cbor2.

    The C scan and the NumPy scan must agree on it; the C run must build it
    too, and whatever else it builds must be what cbor2 and from_map make.
    """
    padded = item + b"\xa2" * FRAME_HEAD_MAX  # the index needs room after a record
    found = []
    for native in (True, False):
        index = rec_mod._frame_index(padded, native=native)
        assert index is not None
        starts, ends, _stops, records, _envelopes = index
        if not starts or starts[0] != 0:
            found.append(None)
            continue
        assert ends[0] == len(item), "the fast path must end the record where cbor2 does"
        found.append(shape(next(records)))
    assert found[0] == found[1], found
    if rec_mod._FRAME_RUN is not None:
        # the C run also builds the other frames in Go's envelope (from_map on its map)
        run = rec_mod._FRAME_RUN(padded, 0, 0)
        built = [shape(r) for r in run]
        assert len(built) <= 1 and run.pos == (len(item) if built else 0)
        if built:
            assert built[0] == reference(item)
        if found[0] is not None:
            assert built == [found[0]]
    return found[0]


# --- tests ---------------------------------------------------------------------------------


def test_fast_parse_matches_record_from_map_on_random_records() -> None:
    rnd = random.Random(1)
    taken = 0
    for _ in range(3000):
        item = random_record(rnd)
        got = fast_parse(item)
        if got is not None:
            taken += 1
            assert got == reference(item), item.hex()
    assert taken > 250  # the common layouts do take the fast path


@pytest.mark.parametrize("seq", SEQS[:-1])
@pytest.mark.parametrize("stream", [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1])
def test_go_layout_takes_the_fast_path(seq: int, stream: int) -> None:
    for size in SIZES:
        for ftype in (FrameType.DATA, FrameType.EOF, 7, 0):
            data = bytes(size) if ftype == FrameType.DATA else b""
            frame = Frame(type=ftype, stream=stream, data=data).to_cbor()
            for ts in (0, 1, 2**63 - 1, 1_700_000_000_123_456_789):
                item = encode_frame_record(seq, ts, Direction.RECV, frame)
                got = fast_parse(item)
                if ts < 2**32:  # the fast path reads only Go's 8-byte timestamps
                    assert got is None
                else:
                    assert got is not None and got == reference(item)


def test_values_out_of_range_or_odd_are_left_to_the_general_path() -> None:
    good = [("t", b"\x02"), ("s", b"\x01"), ("d", bstr(b"x"))]
    ts = integer(1_700_000_000_000_000_000)
    cases = [
        record_bytes(integer(2**32), ts, b"\x02", good),  # seq beyond uint32
        record_bytes(b"\x01", integer(2**63), b"\x02", good),  # ts beyond int64
        record_bytes(b"\x01", integer(-5), b"\x02", good),  # negative ts: general path
        record_bytes(b"\x01", ts, integer(256), good),  # dir beyond uint8
        record_bytes(b"\x01", ts, b"\x02", [("t", integer(256)), *good[1:]]),
        record_bytes(b"\x01", ts, b"\x02", [good[0], ("s", integer(2**32)), good[2]]),
        record_bytes(b"\x01", ts, b"\x02", [good[0], ("d", text("x")), good[1]]),
        record_bytes(b"\x01", ts, b"\x02", [good[1], good[0], good[2]]),
        record_bytes(b"\x01", ts, b"\x02", [("T", b"\x02"), *good[1:]]),
        record_bytes(b"\x01", ts, b"\x02", [*good, ("e", text("x"))]),
        record_bytes(b"\x01", ts, b"\x02", [good[0], good[0]]),
        record_bytes(b"\x01", ts, b"\x02", [good[0], ("d", b"\x5f\x41x\xff")]),  # indefinite
        record_bytes(b"\x01", ts, b"\x02", [good[0], ("s", b"\xf6")]),  # null
    ]
    for item in cases:
        assert fast_parse(item) is None, item.hex()
        assert_same(HEADER + item + FOOTER)
    # the same record without the deviation is taken
    assert fast_parse(record_bytes(b"\x01", ts, b"\x02", good)) is not None


def test_map_count_must_match_the_fields() -> None:
    ts = integer(1_700_000_000_000_000_000)
    items = [("t", b"\x02"), ("s", b"\x01"), ("d", bstr(b"abc"))]
    full = record_bytes(b"\x01", ts, b"\x02", items)
    i = full.index(b"\xa3\x61t")
    for count in (0xA1, 0xA2, 0xA4, 0xBF):
        item = full[:i] + bytes([count]) + full[i + 1 :]
        try:
            end = item_end(item)
        except (Incomplete, RemoteProtocolError):
            end = len(item) + 1
        if end < len(item):  # fewer fields: the record ends early, garbage follows
            assert fast_parse(item[:end]) == reference(item[:end])
        else:
            assert fast_parse(item) is None
        assert_same(HEADER + item + FOOTER)
    # a one-field frame map followed by bytes that look like its next field
    short = record_bytes(b"\x01", ts, b"\x02", items[:1])
    assert fast_parse(short) == reference(short)
    assert_same(HEADER + short + b"\x61s\x01" + FOOTER)


@pytest.mark.parametrize("seed", range(6))
def test_random_recordings_read_the_same(seed: int) -> None:
    rnd = random.Random(seed)
    items = [HEADER]
    for _ in range(150):
        items.append(random_record(rnd) if rnd.random() < 0.5 else rnd.choice(go_records(rnd, 3)))
    items.append(FOOTER)
    data = b"".join(items)
    for chunk_size in (1 << 20, 4096, 97):
        assert_same(data, chunk_size=chunk_size)


@pytest.mark.parametrize("seed", range(4))
def test_byte_flips_read_the_same(seed: int) -> None:
    rnd = random.Random(100 + seed)
    data = b"".join([HEADER, *go_records(rnd, 40), FOOTER])
    for _ in range(120):
        mutated = bytearray(data)
        for _ in range(rnd.choice([1, 1, 2, 5])):
            at = rnd.randrange(len(mutated))
            mutated[at] = rnd.choice([rnd.randrange(256), mutated[at] ^ 1 << rnd.randrange(8)])
        assert_same(bytes(mutated), chunk_size=rnd.choice([1 << 20, 64, 513]))


def test_records_on_generated_single_records_match_reference() -> None:
    rnd = random.Random(7)
    for _ in range(400):
        item = random_record(rnd)
        records, _offsets, error, _end, _footer = assert_same(
            HEADER + item + FOOTER, require_footer=False
        )
        expected = reference(item)
        if expected[0] == "error":
            assert error is not None and error[1] == expected[1]
        elif error is None:
            assert records[1] == expected
        else:  # cbor2 read the record's bytes as another item sequence: compare both ways
            assert error[0] in ("RemoteProtocolError", "TruncatedError", "MissingFooterError")


def test_every_cut_yields_exactly_the_complete_records() -> None:
    rnd = random.Random(3)
    items = [HEADER, *go_records(rnd, 8), FOOTER]
    data = b"".join(items)
    ends = list(itertools_accumulate(len(i) for i in items))
    for cut in range(len(data) + 1):
        for chunk_size in (1 << 20, 7):
            _records, offsets, error, end, _footer = assert_same(data[:cut], chunk_size=chunk_size)
            complete = [e for e in ends if e <= cut]
            # while a record is handled, offset is already its end
            assert offsets == complete[: len(offsets)] and len(offsets) == len(complete)
            assert end == (complete[-1] if complete else 0)
            if cut == len(data):
                assert error is None
            elif cut in complete or cut == 0:
                assert error is not None and error[0] == "MissingFooterError"
            else:
                assert error is not None and error[0] == "TruncatedError"
                assert error[2] == end


def itertools_accumulate(values: Iterator[int]) -> Iterator[int]:
    total = 0
    for v in values:
        total += v
        yield total


@pytest.mark.parametrize("chunk_size", [1, 3, 64, 100, 1000, 1 << 20])
def test_chunk_boundaries_and_large_payloads(chunk_size: int) -> None:
    rnd = random.Random(chunk_size)
    items = [HEADER]
    for size in (0, 1, 23, 24, 255, 256, 65535, 65536, 200_000):
        frame = Frame(type=FrameType.DATA, stream=1, data=rnd.randbytes(size)).to_cbor()
        items.append(encode_frame_record(3, 1_700_000_000_000_000_000, 2, frame))
    items.append(FOOTER)
    records, _offsets, error, _end, footer = assert_same(b"".join(items), chunk_size=chunk_size)
    assert error is None and footer and len(records) == len(items)


def test_recorder_output_decodes_frames_without_cbor2(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    with Recorder(buf) as recorder:
        recorder.write_session_header()
        seq = recorder.write_command_start(ExecMsg(path="/bin/true", argv=["true"], cwd="/"))
        for i in range(2000):
            data = bytes([i % 256]) * (i % 50)
            recorder.write_frame(
                seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=data)
            )
            if i % 100 == 0:  # other frames: their envelope is parsed, cbor2 decodes the frame
                log = LogEntry(level=4, msg="slow", attrs=[f"i={i}"])
                recorder.write_frame(seq, Direction.RECV, Frame(type=FrameType.LOG, log=log))
                recorder.write_frame(seq, Direction.SEND, Frame(type=FrameType.SIGNAL, signal=15))
        recorder.write_frame(seq, Direction.RECV, Frame(type=FrameType.EOF, stream=1))
        recorder.write_command_end(seq, 0)
    data = buf.getvalue()
    general = assert_same(data)
    converted: list[object] = []
    real = rec_mod._record_from_map

    def spy(m: Any) -> Record:
        converted.append(m)
        return real(m)

    monkeypatch.setattr(rec_mod, "_record_from_map", spy)
    records = list(RecordingReader(io.BytesIO(data)))
    assert [shape(r) for r in records] == general[0]
    # only the header, command start, command end and footer went through cbor2
    assert len(converted) == 4


def test_without_numpy_everything_takes_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(11)
    data = b"".join([HEADER, *go_records(rnd, 200), FOOTER])
    expected = outcome(data, fast=False)
    monkeypatch.setattr(layout, "_numpy_module", False)
    assert rec_mod._frame_index(data) is None
    assert outcome(data, fast=True) == expected


def test_fake_record_inside_a_payload_is_not_used() -> None:
    # a payload holding a complete frame record in Go's layout: the index finds it,
    # the walk from record to record never lands on it
    inner = encode_frame_record(
        9, 2**62, 1, Frame(type=FrameType.DATA, stream=1, data=b"no").to_cbor()
    )
    outer_frame = Frame(type=FrameType.DATA, stream=2, data=b"xx" + inner + b"yy").to_cbor()
    outer = encode_frame_record(1, 2**62, 2, outer_frame)
    data = HEADER + outer + FOOTER
    padded = data + bytes(FRAME_HEAD_MAX)
    index = rec_mod._frame_index(padded)
    assert index is not None and data.index(inner) in index[0]
    records = assert_same(data)[0]
    assert len(records) == 3
    assert records[1] == shape(Record.from_map(cbor2.loads(outer)))


def envelope_record(frame_value: bytes) -> bytes:
    """A frame record in Go's envelope around an arbitrary encoded frame value."""
    head_bytes = encode_frame_record(7, 1_700_000_000_000_000_000, 2, b"")
    return head_bytes + frame_value


def test_envelope_with_any_frame_reads_the_same() -> None:
    rnd = random.Random(21)
    values = [
        Frame(type=FrameType.EXIT, code=-1).to_cbor(),
        Frame(type=FrameType.LOG, log=LogEntry(level=8, msg="x")).to_cbor(),
        cbor2.dumps({"t": 2, "s": 1, "d": b"x", "zz": [1, {"a": None}]}),
        cbor2.dumps({"T": 5, "C": 3}),  # keys matching only case-insensitively
        cbor2.dumps({"t": 2, "t ": 1, 7: 1}),  # unknown text and integer keys
        cbor2.dumps({"t": "data"}),  # wrong type: the error names frame.frame.t
        cbor2.dumps({"t": 2, "x": {"path": 5}}),  # nested error
        cbor2.dumps({"t": 2, b"k": 1}),  # a byte-string key Go refuses
        cbor2.dumps({}),
        cbor2.dumps([1, 2]),  # not a map
        cbor2.dumps("text"),
        b"\xf6",  # null: the zero Frame
        b"\xbf\x61t\x02\xff",  # indefinite-length map
        b"\xa1\x61t",  # cut
        b"\xa2\x61t\x02\x61c\x3b" + bytes.fromhex("8000000000000000"),  # c below int64
        b"\xa1\x61t\x1c",  # reserved head
    ]
    for value in values:
        item = envelope_record(value)
        general = assert_same(HEADER + item + FOOTER)
        assert_same(HEADER + item + item + FOOTER, chunk_size=rnd.choice([5, 64, 1 << 20]))
        if general[2] is None:
            assert general[0][1] == reference(item)


@pytest.mark.parametrize("depth", range(26, 34))
def test_nesting_limit_is_the_same_for_a_frame_decoded_alone(depth: int) -> None:
    # an ignored field nested ``depth`` levels inside the record: both paths
    # must refuse exactly the same depths (cbor2's max_depth counts from the record)
    nested = b"\x81" * (depth - 3) + b"\x01"
    frame = b"\xa2\x61t\x07\x62zz" + nested
    assert_same(HEADER + envelope_record(frame) + FOOTER)


@pytest.mark.go
def test_go_written_recordings_read_the_same_and_take_the_fast_path(tmp_path: Path) -> None:
    from gotools import go_outputs  # skips the test when Go is not installed

    go = go_outputs(tmp_path)
    fast_frames = 0
    for path in [*go.recordings, go.cut, go.no_footer]:
        data = path.read_bytes()
        for chunk_size in (1 << 20, 333):
            assert_same(data, chunk_size=chunk_size)
        index = rec_mod._frame_index(data + bytes(FRAME_HEAD_MAX))
        fast_frames += len(index[0]) if index is not None else 0
    assert fast_frames > 100  # Go's data frames are in the layout the fast path reads
