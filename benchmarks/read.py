"""Reading a large recording: agentproto against raw cbor2 and Go, in one run.

Writes a synthetic recording (default one million frame records: mostly
stdout/stderr data of varied sizes, some stdin, EOF, exit, log and file-op
frames, several commands interleaved; byte for byte what Go's encoder
writes), or reads ``--file``, then measures on the same bytes:

- raw cbor2, the idiomatic buffered-file loop ``while fp.peek(1): dec.decode()``;
- raw cbor2 from memory (a BytesIO of the whole file);
- ``agentproto.iter_records`` and ``agentproto.read_recording``;
- ``iter_records`` without the C module (the NumPy parse), and with the frame-record
  fast path switched off (cbor2 and conversion only);
- ``RecordingReader.raw_items`` (decoded maps with their offsets);
- ``reclab check`` (``check_recording``) and its decode-every-record path;
- Go's ``ReadRecording`` and record iteration (``tests/go/crosscheck readbench``,
  on one core: ``GOMAXPROCS=1``), if Go is installed.

Each is run ``--repeat`` times, taking turns (one run of every reader, then the
next round), and the best time kept, both wall-clock and CPU time (the
process's user + system time: on a shared, loaded machine the fairer of the
two). Each target of issue 13 is then printed as a ratio against its anchor
from this run, with "target met" or "MISSED", and the memory each record held
by ``read_recording`` costs, next to Go's.

    python benchmarks/read.py                 # 1 000 000 frames
    python benchmarks/read.py --frames 200000 --keep /tmp/big.cbor
    python benchmarks/read.py --file /tmp/big.cbor --repeat 3
"""

from __future__ import annotations

import argparse
import inspect
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
    read_recording,
)
from agentproto.recording import RecordingReader, encode_frame_record
from agentproto.types import CommandEnd, CommandStart

ROOT = Path(__file__).resolve().parent.parent
START = 1_700_000_000_000_000_000
GO_MISSING = "Go toolchain or golang-github-fxamacker-cbor-dev not installed"
GO_READ = "Go ReadRecording (fxamacker)"
GO_ITER = "Go record iteration"
# issue 13: (ours, anchor, least ratio of our rate to the anchor's)
TARGETS = (
    ("agentproto read_recording", GO_READ, 1.2),
    ("agentproto iter_records", GO_READ, 1.3),
    ("agentproto iter_records", GO_ITER, 1.3),
    ("reclab check", "cbor2 buffered file", 2.0),
)


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


Timing = tuple[int, float, float]  # records, wall seconds, CPU seconds


def best_of(
    repeat: int, readers: list[tuple[str, Callable[[], int | list[Record]]]]
) -> dict[str, Timing]:
    """Run every reader once per round, ``repeat`` rounds; keep each one's best times.

    A reader returning the records it read (``read_recording``) has them
    freed after its clock stops, as Go's ReadRecording benchmark frees its
    slice in a later, untimed garbage collection.
    """
    results: dict[str, Timing] = {}
    for _ in range(repeat):
        for name, fn in readers:
            t0, c0 = time.perf_counter(), time.process_time()
            held = fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            count = held if isinstance(held, int) else len(held)
            del held
            if name in results:
                _, best_wall, best_cpu = results[name]
                wall, cpu = min(wall, best_wall), min(cpu, best_cpu)
            results[name] = (count, wall, cpu)
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


def agentproto_numpy_path(path: Path) -> int:
    """iter_records without the C module: the NumPy parse of each chunk (the path before it)."""
    count = 0
    for _record in RecordingReader(path, native=False):
        count += 1
    return count


def agentproto_raw_items(path: Path) -> int:
    count = 0
    for _item in RecordingReader(path).raw_items():
        count += 1
    return count


def read_all(path: Path) -> list[Record]:
    return read_recording(path)


def check_fast(path: Path) -> int:
    from reclab.check import check_recording

    return check_recording(path).records


def check_general(path: Path) -> int:
    """reclab check decoding every record with cbor2 (the path before the bulk index)."""
    from reclab.check import check_recording

    if "fast_path" not in inspect.signature(check_recording).parameters:
        return check_recording(path).records  # an older reclab: it has only this path
    return check_recording(path, fast_path=False).records


MEMORY_PROBE = """
import sys
from agentproto import read_recording
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
before = rss()
records = read_recording(sys.argv[1])
print(len(records), rss() - before)
"""


def python_memory(path: Path) -> tuple[int, int] | None:
    """(records, bytes of RSS that read_recording's list added) in a fresh interpreter."""
    if not Path("/proc/self/statm").exists():
        return None
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        print(f"memory probe failed: {result.stderr.strip()}", file=sys.stderr)
        return None
    count, grown = result.stdout.split()
    return int(count), int(grown)


def go_reader(path: Path, repeat: int) -> dict[str, float] | None:
    """Go's readbench on one core: best wall and CPU seconds of reading and of iterating."""
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
    best: dict[str, float] = {}
    for _ in range(repeat):
        result = subprocess.run(
            [str(binary), "readbench", str(path)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "GOMAXPROCS": "1"},
        )
        if result.returncode != 0:
            print(f"Go reader failed: {result.stderr.strip()}", file=sys.stderr)
            return None
        facts = json.loads(result.stdout)
        for key, value in facts.items():
            keep_max = key in ("records", "bytes", "read_heap_bytes")
            if key not in best:
                best[key] = value
            else:
                best[key] = max(best[key], value) if keep_max else min(best[key], value)
    return best


def verdict(ratio: float, target: float) -> str:
    return "target met" if ratio >= target else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frame records to write")
    parser.add_argument("--keep", type=Path, help="write the recording here and keep it")
    parser.add_argument("--repeat", type=int, default=2, help="runs per reader (best is kept)")
    parser.add_argument("--file", type=Path, help="measure this recording instead of writing one")
    args = parser.parse_args(argv)

    cleanup = False
    if args.file:
        path = args.file
    elif args.keep:
        path = args.keep
    else:
        fd, name = tempfile.mkstemp(suffix=".cbor", prefix="reclab-bench-")
        os.close(fd)
        path = Path(name)
        cleanup = True
    try:
        if args.file:
            records = sum(1 for _ in RecordingReader(path).raw_items())
        else:
            t0 = time.perf_counter()
            records = write_recording(path, args.frames)
            print(f"written in {time.perf_counter() - t0:.1f} s")
        size = path.stat().st_size
        print(
            f"recording: {records:,} records, {size / 1e6:.1f} MB ({size / records:.0f} B/record)"
        )
        readers: list[tuple[str, Callable[[], int | list[Record]]]] = [
            ("cbor2 buffered file", lambda: cbor2_buffered(path)),
            ("cbor2 from memory", lambda: cbor2_memory(path)),
            ("agentproto iter_records", lambda: agentproto_records(path)),
            ("agentproto read_recording", lambda: read_all(path)),
            ("iter_records, NumPy, no C", lambda: agentproto_numpy_path(path)),
            ("iter_records, no fast path", lambda: agentproto_general_path(path)),
            ("agentproto raw_items", lambda: agentproto_raw_items(path)),
            ("reclab check", lambda: check_fast(path)),
            ("reclab check, every record decoded", lambda: check_general(path)),
        ]
        results = best_of(args.repeat, readers)
        go = go_reader(path, args.repeat)
        if go is not None:
            results[GO_READ] = (int(go["records"]), go["read_seconds"], go["read_cpu_seconds"])
            results[GO_ITER] = (int(go["records"]), go["iter_seconds"], go["iter_cpu_seconds"])
        print(f"{'reader':36} {'records/s':>11} {'MB/s':>7} {'wall s':>7} {'CPU s':>7}")
        for name, (count, wall, cpu) in results.items():
            if count != records:
                print(f"{name}: read {count} records, expected {records}", file=sys.stderr)
                return 1
            print(
                f"{name:36} {count / wall:11,.0f} {size / wall / 1e6:7.1f} {wall:7.2f} {cpu:7.2f}"
            )
        if go is None:
            print("Go reader: skipped (" + GO_MISSING + ")")
        targets = Targets()
        print("targets (rate of ours / rate of the anchor in this run; wall | CPU):")
        for ours, anchor, target in TARGETS:
            if anchor not in results:
                print(f"  {ours} / {anchor}: no anchor (skipped)")
                continue
            by_wall = results[anchor][1] / results[ours][1]
            by_cpu = results[anchor][2] / results[ours][2]
            print(
                f"  {ours} / {anchor}: {by_wall:.2f}x {verdict(by_wall, target)} | "
                f"{by_cpu:.2f}x {verdict(by_cpu, target)}  (target {target}x)"
            )
            # the verdict goes by CPU: wall time depends on what else the machine runs
            targets.check(f"{ours} / {anchor} (CPU)", by_cpu, at_least=target, unit="x")
        print("other ratios:")
        ours = results["agentproto iter_records"][1]
        for name in ("cbor2 buffered file", "cbor2 from memory"):
            print(f"  iter_records / {name}: {results[name][1] / ours:.2f} (wall)")
        old = results["reclab check, every record decoded"][1]
        print(
            f"  reclab check / its every-record path: {old / results['reclab check'][1]:.2f} (wall)"
        )
        memory = python_memory(path)
        if memory is not None:
            count, grown = memory
            line = f"memory per record held: read_recording {grown / count:.0f} B"
            if go is not None:
                line += f", Go ReadRecording {go['read_heap_bytes'] / go['records']:.0f} B (heap)"
            print(line)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if cleanup:
            path.unlink(missing_ok=True)
    return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
