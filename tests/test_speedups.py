"""The C module of the frame-record layout (``agentproto._speedups``) agrees with NumPy.

``layout.parse_frame_records`` runs in C when the module is built and in
NumPy otherwise; both must give the same arrays on any bytes. The reader's C
run (``frame_run``) is compared with the general path in
``test_recording_fastpath.py``; here are its own guarantees: the objects it
builds are the ones ``__init__`` would make, and it never reads past a cut.
"""

from __future__ import annotations

import gc
import random
from typing import Any

import numpy as np
import pytest
from test_recording_fastpath import FOOTER, HEADER, go_records, random_record

from agentproto import Direction, Frame, FrameType, Record, RecordType, encode_frame_record, layout
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
def test_run_stops_at_other_records_and_says_where() -> None:
    data = encode_frame_record(1, 2**62, 2, Frame(type=FrameType.DATA, stream=1).to_cbor())
    exit_frame = Frame(type=FrameType.EXIT, code=3).to_cbor()
    other = encode_frame_record(5, 2**62 + 1, 1, exit_frame)
    run = rec_mod._FRAME_RUN(data + other + data, 0, 0)
    assert len(list(run)) == 1
    assert run.pos == len(data)
    frame_start, seq, ts, direction = run.envelope
    assert (seq, ts, direction) == (5, 2**62 + 1, 1)
    assert (data + other)[frame_start:] == exit_frame
    assert list(run) == []  # stopped for good
    header_run = rec_mod._FRAME_RUN(HEADER + data, 0, 0)
    assert list(header_run) == [] and header_run.envelope is None and header_run.pos == 0


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
