"""Reading a large recording: agentproto against raw cbor2 and Go, in one run.

Writes a synthetic recording (default one million frame records: mostly
stdout/stderr data of varied sizes, some stdin, EOF, exit, log and file-op
frames, several commands interleaved), then measures on the same bytes:

- raw cbor2, the idiomatic buffered-file loop ``while fp.peek(1): dec.decode()``;
- raw cbor2 from memory (a BytesIO of the whole file);
- ``agentproto.iter_records`` (decoding and conversion to dataclasses);
- the same with the frame-record fast path switched off (cbor2 and conversion only);
- ``RecordingReader.raw_items`` (decoded maps with their offsets);
- the Go ``ReadRecording``-style reader (``tests/go/crosscheck bench``), if Go is installed.

Each is run ``--repeat`` times, taking turns (one run of every reader, then the
next round), and the best time kept; ratios compare rates measured in this
run, so a busy machine skews them less than absolute times.

    python benchmarks/read.py                 # 1 000 000 frames
    python benchmarks/read.py --frames 200000 --keep /tmp/big.cbor
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
from targets import Targets

from agentproto import (
    Direction,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    Record,
    RecordType,
    SessionFooter,
    SessionHeader,
    iter_records,
)
from agentproto.recording import RecordingReader, encode_frame_record
from agentproto.types import CommandEnd, CommandStart

ROOT = Path(__file__).resolve().parent.parent
START = 1_700_000_000_000_000_000
GO_MISSING = "Go toolchain or golang-github-fxamacker-cbor-dev not installed"


def payload_size(rnd: random.Random) -> int:
    """Output chunk sizes as a pipe delivers them: mostly lines, sometimes full buffers."""
    x = rnd.random()
    if x < 0.6:
        return rnd.randint(1, 80)  # a line
    if x < 0.9:
        return rnd.randint(80, 320)  # a few lines
    if x < 0.995:
        return rnd.randint(320, 2048)
    return rnd.choice((16384, 32768))  # a full pipe buffer


def write_recording(path: Path, frames: int, seed: int = 1) -> int:
    """Write ``frames`` frame records plus envelopes to ``path``; return the record count."""
    rnd = random.Random(seed)
    blob = rnd.randbytes(70000)
    now = START
    records = 0
    live: list[int] = []
    next_seq = 1
    with open(path, "wb") as out:
        buf = io.BufferedWriter(out, 1 << 20)

        def put(data: bytes) -> None:
            nonlocal records
            buf.write(data)
            records += 1

        header = SessionHeader(
            version="1.3.4", start_time=now, local_user="bench", local_pid=1, agent_path="agent"
        )
        put(Record(type=RecordType.SESSION_HEADER, header=header).to_cbor())

        def start() -> None:
            nonlocal next_seq
            seq = next_seq
            next_seq += 1
            exec_msg = ExecMsg(path="/bin/sh", argv=["sh", "-c", f"job {seq}"], env=[], cwd="/src")
            put(
                Record(
                    type=RecordType.COMMAND_START,
                    cmd_start=CommandStart(seq=seq, start_time=now, exec=exec_msg),
                ).to_cbor()
            )
            put(encode_frame_record(seq, now, 1, Frame(type=1, exec=exec_msg).to_cbor()))
            live.append(seq)

        def end(seq: int) -> None:
            code = rnd.choice((0, 0, 0, 1, 2, -1))
            put(encode_frame_record(seq, now, 2, Frame(type=FrameType.EXIT, code=code).to_cbor()))
            put(
                Record(
                    type=RecordType.COMMAND_END,
                    cmd_end=CommandEnd(seq=seq, end_time=now, exit_code=code),
                ).to_cbor()
            )
            live.remove(seq)

        for _ in range(6):  # several commands run at once
            start()
        req_id = 0
        for i in range(frames):
            now += rnd.randint(1_000, 200_000)
            seq = rnd.choice(live)
            x = rnd.random()
            if x < 0.86:
                size = payload_size(rnd)
                at = rnd.randint(0, len(blob) - size)
                frame = Frame(
                    type=FrameType.DATA, stream=1 if x < 0.7 else 2, data=blob[at : at + size]
                )
                direction = Direction.RECV
            elif x < 0.91:
                frame = Frame(type=FrameType.DATA, stream=0, data=blob[: rnd.randint(1, 200)])
                direction = Direction.SEND
            elif x < 0.92:
                frame = Frame(type=FrameType.EOF, stream=rnd.randint(0, 2))
                direction = Direction.SEND
            elif x < 0.95:
                attrs = [f"i={i}", "op=build"]
                frame = Frame(type=FrameType.LOG, log=LogEntry(level=0, msg="step", attrs=attrs))
                direction = Direction.RECV
            elif x < 0.975:
                req_id += 1
                req = FileOpReq(req_id=req_id, op=FileOp.READ_AT, handle=3, offset=i, size=4096)
                frame = Frame(type=FrameType.FILE_OP, file_op=req)
                direction = Direction.SEND
            else:
                resp = FileOpResp(req_id=req_id, data=blob[:512], n=512)
                frame = Frame(type=FrameType.FILE_RESP, file_resp=resp)
                direction = Direction.RECV
            put(encode_frame_record(seq, now, direction, frame.to_cbor()))
            if i % 50_000 == 49_999:  # commands end and new ones begin
                end(live[0])
                start()
        for seq in list(live):
            end(seq)
        put(
            Record(
                type=RecordType.SESSION_FOOTER,
                footer=SessionFooter(end_time=now, command_count=next_seq - 1),
            ).to_cbor()
        )
        buf.flush()
        buf.detach()
    return records


def best_of(
    repeat: int, readers: list[tuple[str, Callable[[], int]]]
) -> dict[str, tuple[int, float]]:
    """Run every reader once per round, ``repeat`` rounds; keep each one's best time."""
    results: dict[str, tuple[int, float]] = {}
    for _ in range(repeat):
        for name, fn in readers:
            t0 = time.perf_counter()
            count = fn()
            seconds = time.perf_counter() - t0
            if name not in results or seconds < results[name][1]:
                results[name] = (count, seconds)
    return results


def cbor2_buffered(path: Path) -> int:
    count = 0
    with open(path, "rb") as fp:
        decoder = cbor2.CBORDecoder(fp)
        while fp.peek(1):
            decoder.decode()
            count += 1
    return count


def cbor2_memory(path: Path) -> int:
    data = path.read_bytes()
    fp = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(fp)
    count = 0
    size = len(data)
    while fp.tell() < size:
        decoder.decode()
        count += 1
    return count


def agentproto_records(path: Path) -> int:
    count = 0
    for _record in iter_records(path):
        count += 1
    return count


def agentproto_general_path(path: Path) -> int:
    """iter_records with the frame-record fast path off: every record through cbor2."""
    count = 0
    for _record in RecordingReader(path, fast_path=False):
        count += 1
    return count


def agentproto_raw_items(path: Path) -> int:
    count = 0
    for _item in RecordingReader(path).raw_items():
        count += 1
    return count


def go_reader(path: Path, repeat: int) -> tuple[int, float] | None:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from gotools import crosscheck_binary
    except ImportError:
        return None
    try:
        binary = crosscheck_binary()
    except RuntimeError as exc:
        print(f"Go reader: {exc}", file=sys.stderr)
        return None
    if binary is None:
        return None
    best = float("inf")
    count = 0
    for _ in range(repeat):
        result = subprocess.run(
            [str(binary), "bench", str(path)], capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            print(f"Go reader failed: {result.stderr.strip()}", file=sys.stderr)
            return None
        facts = json.loads(result.stdout)
        count = facts["records"]
        best = min(best, facts["seconds"])
    return count, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frame records to write")
    parser.add_argument("--keep", type=Path, help="write the recording here and keep it")
    parser.add_argument("--repeat", type=int, default=2, help="runs per reader (best is kept)")
    args = parser.parse_args(argv)

    if args.keep:
        path = args.keep
        cleanup = False
    else:
        fd, name = tempfile.mkstemp(suffix=".cbor", prefix="reclab-bench-")
        os.close(fd)
        path = Path(name)
        cleanup = True
    try:
        t0 = time.perf_counter()
        records = write_recording(path, args.frames)
        size = path.stat().st_size
        print(
            f"recording: {records:,} records, {size / 1e6:.1f} MB "
            f"({size / records:.0f} B/record), written in {time.perf_counter() - t0:.1f} s"
        )
        results: dict[str, tuple[int, float]] = {}
        readers: list[tuple[str, Callable[[], int]]] = [
            ("cbor2 buffered file", lambda: cbor2_buffered(path)),
            ("cbor2 from memory", lambda: cbor2_memory(path)),
            ("agentproto iter_records", lambda: agentproto_records(path)),
            ("iter_records, no fast path", lambda: agentproto_general_path(path)),
            ("agentproto raw_items", lambda: agentproto_raw_items(path)),
        ]
        results.update(best_of(args.repeat, readers))
        go = go_reader(path, args.repeat)
        if go is not None:
            results["Go ReadRecording (fxamacker)"] = go
        print(f"{'reader':32} {'records/s':>12} {'MB/s':>8} {'seconds':>8}")
        for name, (count, seconds) in results.items():
            if count != records:
                print(f"{name}: read {count} records, expected {records}", file=sys.stderr)
                return 1
            print(f"{name:32} {count / seconds:12,.0f} {size / seconds / 1e6:8.1f} {seconds:8.2f}")
        if go is None:
            print("Go reader: skipped (" + GO_MISSING + ")")
        ours = results["agentproto iter_records"][1]
        print("ratios (rate of iter_records / rate of baseline; >= 1 is faster):")
        for name in ("cbor2 buffered file", "cbor2 from memory", "Go ReadRecording (fxamacker)"):
            if name in results:
                print(f"  iter_records / {name}: {results[name][1] / ours:.2f}")
        targets = Targets()
        go_name = "Go ReadRecording (fxamacker)"
        if go_name in results:  # the design's target: at least as fast as Go's reader
            targets.check(f"iter_records against {go_name}", results[go_name][1] / ours, at_least=1)
    finally:
        if cleanup:
            path.unlink(missing_ok=True)
    return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
