"""Analysis speed and memory against raw cbor2 decoding of the same recording.

Synthesises a recording (default one million frames, about 300 bytes per
record like real sessions: mostly stdout/stderr chunks, some stdin, logs,
file-op RPCs, signals), then measures in one run, each in a fresh
subprocess so that page cache, imports and peak memory are comparable:

- baselines: raw cbor2 decoding of every record, the idiomatic way from a
  buffered file (``while fp.peek(1): dec.decode()``) and from memory;
- ``index``: ``open_recording`` (open and index everything);
- ``info``: what ``reclab info`` computes (index + summary);
- ``commands``: index + the commands table;
- ``frames-parquet``: ``reclab export --table frames --parquet`` (as a command);

and prints each as a ratio to both baselines (higher is faster), with the
peak resident memory (VmHWM) of the task and of its index helper process,
each projected to a 1 GB recording by a line through this file and one of
half its size. Module imports are timed apart (pandas alone is ~0.5 s).

Usage: ``python benchmarks/export.py [--frames N] [--keep FILE] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1 << 30


def synthesise(path: Path, frames: int = 1_000_000, seed: int = 1) -> int:
    """Write a recording of ``frames`` frames in realistic proportions; return its size.

    Frames are pre-encoded in a few hundred variants and stamped with
    increasing times, so a million frames take a few seconds to write.
    Four commands run at once, as a runner multiplexing sessions would.
    """
    from agentproto import (
        CommandEnd,
        CommandStart,
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
    )
    from agentproto.recording import encode_frame_record

    rng = random.Random(seed)
    stdout = [
        Frame(
            type=FrameType.DATA, stream=1 + (i % 7 == 0), data=rng.randbytes(rng.randint(1, 600))
        ).to_cbor()
        for i in range(256)
    ]
    stdin = [
        Frame(type=FrameType.DATA, stream=0, data=rng.randbytes(rng.randint(1, 200))).to_cbor()
        for i in range(32)
    ]
    logs = [
        Frame(
            type=FrameType.LOG,
            log=LogEntry(level=rng.choice([-4, 0, 4, 8]), msg=f"event {i}", attrs=[f"k={i}"]),
        ).to_cbor()
        for i in range(32)
    ]
    reads = [
        Frame(
            type=FrameType.FILE_OP,
            file_op=FileOpReq(req_id=i, op=FileOp.READ_AT, handle=3, offset=i * 4096, size=4096),
        ).to_cbor()
        for i in range(64)
    ]
    answers = [
        Frame(
            type=FrameType.FILE_RESP,
            file_resp=FileOpResp(req_id=i, data=rng.randbytes(rng.randint(100, 900)), n=500),
        ).to_cbor()
        for i in range(64)
    ]
    signal = Frame(type=FrameType.SIGNAL, signal=2).to_cbor()
    eof = Frame(type=FrameType.EOF, stream=0).to_cbor()
    exit_frame = Frame(type=FrameType.EXIT, code=0).to_cbor()

    t = 1_700_000_000_000_000_000
    out = []
    write = out.append
    header = SessionHeader(
        version="1.3.4", start_time=t, local_user="bench", local_pid=1, agent_path="/agent"
    )
    write(Record(type=RecordType.SESSION_HEADER, header=header).to_cbor())
    per_command = 20_000
    seq = 0
    running: list[int] = []
    left: dict[int, int] = {}
    written = 0
    with open(path, "wb") as fp:
        while written < frames:
            while len(running) < 4 and written + sum(left.values()) < frames:
                seq += 1
                x = ExecMsg(path="/bin/build", argv=["build", f"part{seq}"], env=["A=1"], cwd="/w")
                start = CommandStart(seq=seq, start_time=t, exec=x)
                write(Record(type=RecordType.COMMAND_START, cmd_start=start).to_cbor())
                running.append(seq)
                left[seq] = min(per_command, frames - written - sum(left.values()))
            s = running[rng.randrange(len(running))]
            t += rng.randint(1_000, 50_000)
            r = rng.random()
            if left[s] == 1:
                write(encode_frame_record(s, t, 2, exit_frame))
            elif r < 0.80:
                write(encode_frame_record(s, t, 2, stdout[rng.randrange(256)]))
            elif r < 0.86:
                write(encode_frame_record(s, t, 1, stdin[rng.randrange(32)]))
            elif r < 0.90:
                write(encode_frame_record(s, t, 2, logs[rng.randrange(32)]))
            elif r < 0.95:
                write(encode_frame_record(s, t, 1, reads[(written // 2) % 64]))
            elif r < 0.9995:
                write(encode_frame_record(s, t, 2, answers[(written // 2) % 64]))
            elif r < 0.9998:
                write(encode_frame_record(s, t, 1, signal))
            else:
                write(encode_frame_record(s, t, 1, eof))
            written += 1
            left[s] -= 1
            if left[s] == 0:
                end = CommandEnd(seq=s, end_time=t + 1, exit_code=rng.choice([0, 0, 0, 1]))
                write(Record(type=RecordType.COMMAND_END, cmd_end=end).to_cbor())
                running.remove(s)
                del left[s]
            if len(out) >= 4096:
                fp.write(b"".join(out))
                out.clear()
        footer = SessionFooter(end_time=t + 2, command_count=seq)
        write(Record(type=RecordType.SESSION_FOOTER, footer=footer).to_cbor())
        fp.write(b"".join(out))
    return path.stat().st_size


# Each measured task runs in a fresh interpreter: _setup imports what the task
# needs (not timed, reported apart), _task does the work (timed).
def _setup(name: str) -> None:
    import cbor2  # noqa: F401

    if name in ("index", "info"):
        import reclab.model
        import reclab.summary
    elif name in ("commands", "frames-parquet"):
        import numpy  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        import reclab.cli
        import reclab.export
        import reclab.tables  # noqa: F401


def _task(name: str, path: str, out: str | None) -> None:
    if name == "baseline":
        pass  # the interpreter's own footprint
    elif name == "cbor2-file":
        import cbor2

        with open(path, "rb") as fp:
            dec = cbor2.CBORDecoder(fp)
            while fp.peek(1):
                dec.decode()
    elif name == "cbor2-memory":
        import io

        import cbor2

        data = Path(path).read_bytes()
        stream = io.BytesIO(data)
        dec = cbor2.CBORDecoder(stream)
        end = len(data)
        while stream.tell() < end:
            dec.decode()
    elif name == "index":
        from reclab.model import open_recording

        open_recording(path).close()
    elif name == "info":
        from reclab.model import open_recording
        from reclab.summary import summarize

        with open_recording(path) as rec:
            summarize(rec)
    elif name == "commands":
        from reclab.model import open_recording
        from reclab.tables import commands_table

        with open_recording(path) as rec:
            commands_table(rec)
    elif name == "frames-parquet":
        from reclab.cli import app

        try:
            app(["export", path, "--table", "frames", "--parquet", "-o", str(out)])
        except SystemExit as exc:
            if exc.code:
                raise
    else:
        raise SystemExit(f"unknown task {name}")


def _run(name: str, path: Path, out: Path) -> tuple[float, float, int, int]:
    """Run a task in a fresh interpreter.

    Returns seconds of work, seconds of imports, its peak RSS and the peak
    RSS of its helper process (0 if none).
    """
    code = (
        "import sys, time, resource, runpy\n"
        f"mod = runpy.run_path({str(Path(__file__).resolve())!r}, run_name='bench')\n"
        "t = time.perf_counter()\n"
        "mod['_setup'](sys.argv[1])\n"
        "t1 = time.perf_counter()\n"
        "mod['_task'](sys.argv[1], sys.argv[2], sys.argv[3])\n"
        "t2 = time.perf_counter()\n"
        # VmHWM is this process's own peak (ru_maxrss would include the RSS of
        # the parent at fork time); helper processes run at the same time, so
        # their peak is added.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "rss = int(hwm[0].split()[1]) * 1024\n"
        "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(t2 - t1, t1 - t, rss, kids)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, name, str(path), str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"task {name} failed:\n{result.stderr}")
    seconds, imports, rss, kids = result.stdout.split()[-4:]
    return float(seconds), float(imports), int(rss), int(kids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="reuse or keep the synthesised recording here")
    parser.add_argument("--repeat", type=int, default=1, help="runs per task (best is kept)")
    parser.add_argument(
        "--tasks",
        default="index,info,commands,frames-parquet",
        help="comma-separated tasks to measure",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.cbor"
        small = Path(tmp) / "small.cbor"
        if not path.exists():
            t = time.perf_counter()
            synthesise(path, args.frames)
            print(f"synthesised {args.frames} frames in {time.perf_counter() - t:.1f}s")
        # Half the size: large enough for the two-process index, and for the
        # export's batch-bounded working set to have reached its plateau.
        synthesise(small, max(args.frames // 2, 1000), seed=2)
        size, small_size = path.stat().st_size, small.stat().st_size
        out = Path(tmp) / "frames.parquet"
        with open(path, "rb") as fp:  # warm the page cache for everyone alike
            while fp.read(1 << 24):
                pass

        def best(name: str, target: Path = path) -> tuple[float, float, int, int]:
            runs = [_run(name, target, out) for _ in range(args.repeat)]
            return (
                min(r[0] for r in runs),
                min(r[1] for r in runs),
                max(r[2] for r in runs),
                max(r[3] for r in runs),
            )

        def at_1gb(big: int, small_value: int) -> float:
            # Linear in the file size, through this file and one half its size.
            slope = max(big - small_value, 0) / max(size - small_size, 1)
            return big + slope * (GB - size)

        file_s, *_ = best("cbor2-file")
        mem_s, *_ = best("cbor2-memory")
        print(f"recording: {size / 1e6:.0f} MB, {args.frames} frames; cpus {os.cpu_count()}")
        print(f"raw cbor2, buffered file: {file_s:6.2f}s  ({size / file_s / 1e6:5.0f} MB/s)")
        print(f"raw cbor2, from memory:   {mem_s:6.2f}s  ({size / mem_s / 1e6:5.0f} MB/s)")
        print(
            f"{'task':15} {'seconds':>7} {'vs file':>8} {'vs memory':>9} {'imports':>7} "
            f"{'peak RSS':>9} {'helper':>7} {'@1GB':>7} {'helper@1GB':>10}"
        )
        for name in args.tasks.split(","):
            seconds, imports, rss, kids = best(name)
            _, _, small_rss, small_kids = best(name, small)
            print(
                f"{name:15} {seconds:7.2f} {file_s / seconds:7.2f}x {mem_s / seconds:8.2f}x "
                f"{imports:6.2f}s {rss / 1e6:7.0f}MB {kids / 1e6:5.0f}MB "
                f"{at_1gb(rss, small_rss) / 1e6:5.0f}MB {at_1gb(kids, small_kids) / 1e6:8.0f}MB"
            )
        print("(vs: baseline seconds / task seconds, higher is faster; imports: module import")
        print(" time, not included; peak RSS of the task and of its index helper process,")
        print(" which exits once indexing is done; @1GB: projected linearly to a 1 GB file)")


if __name__ == "__main__":
    main()
