"""The C module of the frame-record layout (``agentproto._speedups``) agrees with NumPy.

``layout.parse_frame_records`` runs in C when the module is built and in
NumPy otherwise; both must give the same arrays on any bytes. The reader's C
run (``frame_run``) is compared with the general path in
``test_recording_fastpath.py``; here are its own guarantees: the objects it
builds are the ones ``__init__`` would make, and it never reads past a cut.
"""

from __future__ import annotations

import gc
import io
import random
from typing import Any

import cbor2
import numpy as np
import pytest
from test_recording_fastpath import FOOTER, HEADER, go_records, random_record

from agentproto import (
    AgentProtoError,
    Direction,
    Frame,
    FrameType,
    LogEntry,
    Record,
    RecordType,
    codec,
    encode_frame_record,
    layout,
)
from agentproto import recording as rec_mod
from agentproto.layout import FRAME_HEAD_MAX, FRAME_RECORD_PREFIX, parse_frame_records

speedups = layout.speedups()
needs_c = pytest.mark.skipif(speedups is None, reason="agentproto._speedups was not built")


def test_the_c_module_is_built() -> None:
    # pip install builds it wherever there is a C compiler; without it everything
    # still works, only slower, so say so loudly where it should be there
    assert speedups is not None, "agentproto._speedups missing: install gcc and python3-dev"
    assert rec_mod._FRAME_RUN is not None


def same_parse(buf: bytes, lo: int = 0, envelopes: bool = True) -> Any:
    numpy_result = parse_frame_records(buf, lo, envelopes=envelopes, native=False)
    c_result = parse_frame_records(buf, lo, envelopes=envelopes)
    if numpy_result is None:
        assert c_result is None
        return None
    assert c_result is not None
    for ours, theirs in zip(c_result, numpy_result, strict=True):
        assert type(ours) is type(theirs)
        for name, a, b in zip(ours._fields, ours, theirs, strict=True):
            assert a.dtype == b.dtype == np.int64, name
            assert np.array_equal(a, b), name
    return c_result


def mutate(rnd: random.Random, data: bytes) -> bytes:
    """Flip bytes, most of them in record heads, where the layout is judged."""
    out = bytearray(data)
    heads = [i for i in range(len(data)) if data.startswith(FRAME_RECORD_PREFIX, i)]
    for _ in range(rnd.choice([1, 2, 4])):
        if heads and rnd.random() < 0.8:
            at = min(len(out) - 1, rnd.choice(heads) + rnd.randrange(FRAME_HEAD_MAX))
        else:
            at = rnd.randrange(len(out))
        out[at] = rnd.choice([rnd.randrange(256), out[at] ^ 1 << rnd.randrange(8)])
    return bytes(out)


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_c_scan_matches_numpy_on_recordings_and_flipped_bytes(seed: int) -> None:
    rnd = random.Random(seed)
    data = b"".join(
        [HEADER, *go_records(rnd, 60), *(random_record(rnd) for _ in range(20)), FOOTER]
    )
    parsed = same_parse(data)
    assert parsed is not None and len(parsed[0].pos) > 10
    for _ in range(150):
        mutated = mutate(rnd, data)
        cut = rnd.randrange(len(mutated) + 1)
        same_parse(mutated[:cut], rnd.randrange(0, 200), envelopes=rnd.random() < 0.8)


@needs_c
def test_c_scan_of_every_cut_and_start() -> None:
    rnd = random.Random(9)
    data = b"".join(go_records(rnd, 6))
    for cut in range(len(data) + 1):
        same_parse(data[:cut])
    for lo in range(0, len(data), 7):
        same_parse(data, lo)


@needs_c
def test_built_records_are_what_init_makes() -> None:
    frame = Frame(type=FrameType.DATA, stream=1, data=b"hello")
    item = encode_frame_record(70000, 1_700_000_000_123_456_789, Direction.RECV, frame.to_cbor())
    run = rec_mod._FRAME_RUN(item * 3, 0, 1000)
    records = list(run)
    expected = Record(
        type=RecordType.FRAME,
        frame=rec_mod.RecordedFrame(
            seq=70000, timestamp=1_700_000_000_123_456_789, direction=Direction.RECV, frame=frame
        ),
    )
    assert records == [expected] * 3
    record = records[0]
    assert type(record.type) is RecordType and type(record.frame.direction) is Direction
    assert type(record.frame.frame.type) is FrameType
    assert (record.header, record.cmd_start, record.cmd_end, record.footer) == (None,) * 4
    f = record.frame.frame
    assert (f.signal, f.code, f.error, f.exec, f.file_resp) == (0, 0, "", None, None)
    # like any instance: tracked by the collector, mutable, and freed
    assert gc.is_tracked(record) and gc.is_tracked(f)
    f.data = b"changed"
    assert records[1].frame.frame.data == b"hello"
    assert run.pos == 3 * len(item) and run.end == 1000 + 3 * len(item)
    assert run.envelope is None


@needs_c
def test_run_builds_other_frames_and_stops_where_cbor2_must_decide() -> None:
    data = encode_frame_record(1, 2**62, 2, Frame(type=FrameType.DATA, stream=1).to_cbor())
    exit_frame = Frame(type=FrameType.EXIT, code=-3)
    log = Frame(type=FrameType.LOG, log=LogEntry(level=8, msg="é", attrs=["a=1"]))
    built = [encode_frame_record(5, 2**62 + 1, 1, f.to_cbor()) for f in (exit_frame, log)]
    # outside the plain subset (a float), and a map Frame.from_map refuses
    odd = [
        encode_frame_record(6, 2**62 + 2, 2, cbor2.dumps({"t": 5, "c": 1.5})),
        encode_frame_record(7, 2**62 + 3, 2, cbor2.dumps({"t": "data"})),
    ]
    for stop in odd:
        buf = data + b"".join(built) + stop + data
        run = rec_mod._FRAME_RUN(buf, 0, 0)
        records = list(run)
        assert [r.frame.frame for r in records[1:]] == [exit_frame, log]
        assert run.pos == len(buf) - len(stop) - len(data)
        frame_start, seq, _ts, direction = run.envelope
        assert (seq, direction) == (int.from_bytes(stop[18:19], "big"), 2)
        map_start = stop.rindex(b"\x65frame") + 6
        assert buf[frame_start:].startswith(stop[map_start:])
        assert list(run) == []  # stopped for good
    header_run = rec_mod._FRAME_RUN(HEADER + data, 0, 0)
    assert list(header_run) == [] and header_run.envelope is None and header_run.pos == 0


def plain_items(rnd: random.Random, depth: int = 0) -> Any:
    """Random values of the plain subset, and a few just outside it."""
    kind = rnd.randrange(12 if depth < 4 else 8)
    if kind == 0:
        return rnd.choice([0, 23, 24, 255, 256, 2**32, 2**63 - 1, 2**64 - 1])
    if kind == 1:
        return rnd.choice([-1, -24, -25, -(2**63), -(2**63) - 1, -(2**64)])
    if kind == 2:
        return rnd.randbytes(rnd.choice([0, 1, 23, 24, 300]))
    if kind == 3:
        return "".join(rnd.choice("aé€\U0001f600") for _ in range(rnd.randrange(30)))
    if kind == 4:
        return rnd.choice([True, False, None])
    if kind == 5:
        return rnd.choice([1.5, 0.0, float("inf")])  # floats: left to cbor2
    if kind == 6:
        return cbor2.CBORTag(rnd.choice([0, 2, 55799]), "x")
    if kind == 7:
        return cbor2.undefined
    if kind < 10:
        return [plain_items(rnd, depth + 1) for _ in range(rnd.randrange(5))]
    keys = [
        rnd.choice(["t", "s", "d", "x", "é"]) if rnd.random() < 0.8 else rnd.randrange(-3, 3)
        for _ in range(rnd.randrange(5))
    ]
    return {k: plain_items(rnd, depth + 1) for k in keys}


@needs_c
def test_decode_plain_is_cbor2_on_its_subset() -> None:
    assert speedups is not None
    rnd = random.Random(17)
    decoded = 0
    for _ in range(4000):
        item = cbor2.dumps(plain_items(rnd))
        if rnd.random() < 0.3:  # damage: a flipped byte, a cut, a bad UTF-8 byte
            b = bytearray(item)
            b[rnd.randrange(len(b))] = rnd.choice([0xFF, 0xC3, 0x1F, 0x5F, rnd.randrange(256)])
            item = bytes(b[: rnd.randrange(1, len(b) + 1)])
        got = speedups.decode_plain(item + b"\x00", 0)
        if got is None:
            continue
        decoded += 1
        value, end = got
        reference = cbor2.CBORDecoder(io.BytesIO(item + b"\x00"))
        assert value == reference.decode() and end == reference.fp.tell(), item.hex()
    assert decoded > 1500
    # what it leaves to cbor2
    for item in (
        b"\xbf\x61t\x02\xff",  # indefinite length
        b"\xa1\x61t\xf9\x3c\x00",  # a half float
        b"\xa1\x81\x01\x02",  # an array as a key
        b"\x62\xc3\x28",  # invalid UTF-8
        b"\x3b" + bytes.fromhex("8000000000000000"),  # below int64
        b"\x81" * 20 + b"\x01",  # deeper than it goes
        b"\x9a\x00\x02\x00\x01" + b"\x00" * 131073,  # more entries than Go allows
        b"\xa2\x61t",  # cut
    ):
        assert speedups.decode_plain(item, 0) is None, item[:8].hex()


@needs_c
def test_run_never_reads_past_the_buffer() -> None:
    # every cut of a record whose payload length claims more than is there
    item = encode_frame_record(
        1, 2**62, 2, Frame(type=FrameType.DATA, stream=1, data=b"x" * 300).to_cbor()
    )
    for cut in range(len(item)):
        run = rec_mod._FRAME_RUN(item[:cut], 0, 0)
        assert list(run) == [] and run.pos == 0
    for pos in (-5, len(item), len(item) + 10):
        assert list(rec_mod._FRAME_RUN(item, pos, 0)) == []
    assert len(list(rec_mod._FRAME_RUN(memoryview(item), 0, 0))) == 1


@needs_c
def test_reader_with_and_without_c_reads_the_same_recording(tmp_path: Any) -> None:
    rnd = random.Random(5)
    path = tmp_path / "r.cbor"
    path.write_bytes(b"".join([HEADER, *go_records(rnd, 3000), FOOTER]))
    with_c = list(rec_mod.RecordingReader(path))
    without = list(rec_mod.RecordingReader(path, native=False))
    assert with_c == without and len(with_c) == 3004
    assert rec_mod.read_recording(path) == with_c


def scan_outcome(scan: Any, buf: Any, pos: int) -> tuple[str, Any]:
    """What an item_end scan does: ("end", n), ("incomplete", needed) or the error's type."""
    try:
        return "end", scan(buf, pos)
    except codec.Incomplete as more:
        return "incomplete", more.needed
    except AgentProtoError as exc:
        return type(exc).__name__, str(exc)


@needs_c
def test_c_item_end_is_the_python_scan() -> None:
    """codec.item_end runs in C; the Python scan is the reference (and raises the errors)."""
    assert codec._c_item_end is not None
    rnd = random.Random(23)
    outcomes: set[str] = set()
    items = [cbor2.dumps(plain_items(rnd)) for _ in range(600)]
    items += [
        Frame(type=FrameType.DATA, stream=1, data=b"x" * 300).to_cbor(),
        b"\x9f\x01\xff",  # indefinite length
        b"\xfc",  # reserved
        b"\x81" * (codec.MAX_DEPTH + 2) + b"\x01",  # too deep
        b"\x9a\x00\x02\x00\x01",  # more entries than Go allows
        b"\xba\x00\x01\x00\x00",  # more map pairs than Go allows
        b"\x5b" + bytes.fromhex("ffffffffffffffff"),  # a string longer than any buffer
        b"\x82\x5b" + bytes.fromhex("7fffffffffffff00"),  # its needed count near int64's end
        b"\xd9\xd9\xf7\xa1\x61t\x01",  # a tag
    ]
    for item in items:
        for variant in range(4):
            buf = bytearray(item)
            if variant == 1:
                buf[rnd.randrange(len(buf))] = rnd.randrange(256)
            elif variant == 2:
                buf = buf[: rnd.randrange(len(buf) + 1)]
            elif variant == 3:
                buf = bytearray(b"\x00\x01" + bytes(buf) + b"\x02")
            for pos in {0, 2, rnd.randrange(len(buf) + 2)}:
                for view in (bytes(buf), memoryview(buf)):
                    ours = scan_outcome(codec.item_end, view, pos)
                    assert ours == scan_outcome(codec._scan_item_end, view, pos), buf.hex()
                    outcomes.add(ours[0])
    assert outcomes == {"end", "incomplete", "RemoteProtocolError", "LimitExceededError"}
