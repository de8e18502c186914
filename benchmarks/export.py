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

and prints each as a ratio to both baselines (higher is faster), with its
peak memory: the task process's own peak RSS (VmHWM, exact), its index
helper process's, and the two together (the largest sum at one moment;
these two sampled every 5 ms). Imports done before the task starts are
timed apart (pandas alone is ~0.5 s); the export loads pandas and pyarrow
itself, as the command does, and that time counts. Memory always counts
the imports.

Then peak memory for a 1 GiB recording, the target's size: measured on a
synthesised 1 GiB file when the disk has room (about 3 GiB free: the file
and the Parquet output; it takes a minute or two more), else projected by
a straight line through files of 1/8 and 1/4 GiB, and says which.

Usage: ``python benchmarks/export.py [--frames N] [--keep FILE] [--repeat R]
[--tasks a,b] [--memory measure|project|off] [--tmp DIR]``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
# needs up front (timed apart), _task does the work (timed). The export runs
# as the command does: only the CLI is loaded first; pandas and pyarrow load
# when the export starts (after indexing), and that time counts.
def _setup(name: str) -> None:
    import cbor2  # noqa: F401

    if name in ("index", "info"):
        import reclab.model
        import reclab.summary
    elif name == "commands":
        import numpy  # noqa: F401
        import pandas  # noqa: F401

        import reclab.tables
    elif name == "frames-parquet":
        import reclab.cli  # noqa: F401


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


def _tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes now of process ``pid`` and of its descendants (0 once gone)."""
    own = others = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fp:
                for line in fp:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
                        if p == pid:
                            own = rss
                        else:
                            others += rss
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fp:
                    todo.extend(int(c) for c in fp.read().split())
        except (OSError, ValueError):
            continue  # exited meanwhile
    return own, others


@dataclass
class Measure:
    """One task run: seconds of work and of imports, peak memory in bytes."""

    seconds: float
    imports: float
    peak: int  # the task process's own peak RSS (VmHWM: exact)
    helper: int  # the peak RSS of its index helper process (0 if none; sampled)
    together: int  # the peak of task + helper at the same moment (sampled)


def _run(name: str, path: Path, out: Path) -> Measure:
    """Run a task in a fresh interpreter and measure it.

    The child reports its own VmHWM (exact). Meanwhile this process samples
    the RSS of the child and of its descendants (the index helper) every
    few ms: ``helper`` is the largest sample of the descendants, and
    ``together`` of the sum, what the command takes from the machine at
    once. (The helper's ru_maxrss would not do: on Linux, a child started
    with vfork and exec inherits its parent's peak.) A sample can miss a
    peak shorter than its interval.
    """
    code = (
        "import sys, time, runpy\n"
        f"mod = runpy.run_path({str(Path(__file__).resolve())!r}, run_name='bench')\n"
        "t = time.perf_counter()\n"
        "mod['_setup'](sys.argv[1])\n"
        "t1 = time.perf_counter()\n"
        "mod['_task'](sys.argv[1], sys.argv[2], sys.argv[3])\n"
        "t2 = time.perf_counter()\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "print(t2 - t1, t1 - t, int(hwm[0].split()[1]) * 1024)\n"
    )
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", code, name, str(path), str(out)],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
        helper = together = 0
        deadline = time.monotonic() + 1800
        try:
            while child.poll() is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"task {name} took more than 30 minutes")
                own, others = _tree_rss(child.pid)
                helper = max(helper, others)
                together = max(together, own + others)
                time.sleep(0.005)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"task {name} failed:\n{stderr.read()}")
        seconds, imports, rss = stdout.read().split()[-3:]
    # The sampled sum can miss the exact peak of the task: never report less.
    return Measure(float(seconds), float(imports), int(rss), helper, max(together, int(rss)))


def _best(runs: list[Measure]) -> Measure:
    """Fastest time of the runs, largest memory (memory varies run to run: report the worst)."""
    return Measure(
        min(r.seconds for r in runs),
        min(r.imports for r in runs),
        max(r.peak for r in runs),
        max(r.helper for r in runs),
        max(r.together for r in runs),
    )


def _mb(n: float) -> str:
    return f"{n / 1e6:5.0f}MB"


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
    parser.add_argument(
        "--memory",
        choices=("measure", "project", "off"),
        default="measure",
        help="peak memory for a 1 GiB recording: measure it on a synthesised 1 GiB file "
        "(falls back to projecting when the disk is short), project it from two smaller "
        "files, or skip it",
    )
    parser.add_argument("--tmp", type=Path, help="directory for the synthesised files")
    args = parser.parse_args()

    if args.tmp is not None:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)  # the folder it is given may be new
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = args.keep or Path(tmp) / "bench.cbor"
        out = Path(tmp) / "frames.parquet"
        if not path.exists():
            t = time.perf_counter()
            synthesise(path, args.frames)
            print(f"synthesised {args.frames} frames in {time.perf_counter() - t:.1f}s")
        size = path.stat().st_size
        _warm(path)

        def best(name: str, target: Path) -> Measure:
            return _best([_run(name, target, out) for _ in range(args.repeat)])

        # Speed: every task as a ratio to raw cbor2 decoding of the same file.
        file_s = best("cbor2-file", path).seconds
        mem_s = best("cbor2-memory", path).seconds
        tasks = args.tasks.split(",")
        print(f"recording: {size / 1e6:.0f} MB, {args.frames} frames; cpus {os.cpu_count()}")
        print(f"raw cbor2, buffered file: {file_s:6.2f}s  ({size / file_s / 1e6:5.0f} MB/s)")
        print(f"raw cbor2, from memory:   {mem_s:6.2f}s  ({size / mem_s / 1e6:5.0f} MB/s)")
        print(
            f"{'task':15} {'seconds':>7} {'vs file':>8} {'vs memory':>9} {'imports':>7} "
            f"{'peak':>7} {'helper':>7} {'together':>8}"
        )
        for name in tasks:
            m = best(name, path)
            print(
                f"{name:15} {m.seconds:7.2f} {file_s / m.seconds:7.2f}x "
                f"{mem_s / m.seconds:8.2f}x {m.imports:6.2f}s "
                f"{_mb(m.peak):>7} {_mb(m.helper):>7} {_mb(m.together):>8}"
            )
        print("(vs: baseline seconds / task seconds, higher is faster; imports: module import")
        print(" time, not included; peak: the task process's peak RSS (exact); helper: its")
        print(" index helper process's, which exits once indexing is done; together: the")
        print(" largest sum of both at one moment; helper and together sampled every 5 ms)")
        if args.memory != "off":
            _memory_at_1gib(args.memory, tasks, Path(tmp), best, size, args.frames)


def _warm(path: Path) -> None:
    """Read the file once so that every task finds it in the page cache alike."""
    with open(path, "rb") as fp:
        while fp.read(1 << 24):
            pass


def _memory_at_1gib(
    how: str,
    tasks: list[str],
    tmp: Path,
    best: Callable[[str, Path], Measure],
    size: int,
    frames: int,
) -> None:
    """Print each task's peak memory for a 1 GiB recording, measured or projected.

    Measured: on a synthesised file of 1 GiB (give or take a frame), when
    the disk has room for it and the Parquet output. Projected: from files
    of 1/8 and 1/4 GiB by a straight line, which is what the memory of an
    index that grows with the file and a working set that does not gives.
    """
    per_frame = size / frames
    free = shutil.disk_usage(tmp).free
    if how == "measure" and free < 3 * GB:
        print(f"only {free / GB:.1f} GiB free in {tmp}: projecting instead of measuring")
        how = "project"
    if how == "measure":
        big = tmp / "1gib.cbor"
        t = time.perf_counter()
        got = synthesise(big, round(GB / per_frame), seed=3)
        print(
            f"\npeak memory, measured on a synthesised {got / GB:.3f} GiB recording "
            f"(written in {time.perf_counter() - t:.0f}s):"
        )
        _warm(big)
        files = [big]
    else:
        files = []
        for eighths in (1, 2):
            f = tmp / f"{eighths}-8gib.cbor"
            synthesise(f, round(eighths * GB / 8 / per_frame), seed=3 + eighths)
            files.append(f)
        print("\npeak memory for 1 GiB, projected by a line through files of 1/8 and 1/4 GiB:")
    print(f"{'task':15} {'seconds':>7} {'vs file':>8} {'peak':>7} {'helper':>7} {'together':>8}")
    file_s = best("cbor2-file", files[-1]).seconds
    sizes = [f.stat().st_size for f in files]

    def at_1gib(small: int, large: int) -> int:
        # A straight line through the two files' figures (a single file: as measured).
        if len(sizes) == 1:
            return large
        return round(large + (large - small) / (sizes[1] - sizes[0]) * (GB - sizes[1]))

    for name in tasks:
        runs = [best(name, f) for f in files]
        first, m = runs[0], runs[-1]
        m = Measure(
            m.seconds,
            m.imports,
            at_1gib(first.peak, m.peak),
            at_1gib(first.helper, m.helper),
            at_1gib(first.together, m.together),
        )
        print(
            f"{name:15} {m.seconds:7.2f} {file_s / m.seconds:7.2f}x "
            f"{_mb(m.peak):>7} {_mb(m.helper):>7} {_mb(m.together):>8}"
        )
    if how == "project":
        print("(seconds and vs file: on the 1/4 GiB file)")


if __name__ == "__main__":
    main()
