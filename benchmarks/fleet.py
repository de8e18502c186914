"""Ingest of many recordings on 1 and 2 local workers against `reclab export` one file at a time.

Synthesises N recordings (default 100 of about 1 MB: a modest run; ``--full``
is the issue's 1,000 recordings of about 1 GB in all), each in realistic
proportions (``benchmarks/export.py``'s generator, a different seed each),
then measures in one run, each in a fresh interpreter so imports and page
cache are alike:

- ``export``: the baseline, ``reclab export``'s function
  (``reclab.export.export_table``) writing the five tables of each
  recording to Parquet, one file after the other in one process (its
  imports done before the clock starts: the strongest baseline);
- ``ingest -j1`` and ``ingest -j2``: ``reclab.fleet.ingest`` into a fresh
  dataset, the same imports done first; the worker processes' start-up counts
  (``-j1`` runs in the process itself);

and prints files/s and MB/s, and each as a ratio to the baseline (the
target: 2 workers at 1.6x or better), with the peak memory of the process
and of its largest worker (sampled). Then a query over the frames of all
the recordings: DuckDB through ``reclab.fleet.connect`` against pandas
reading the same Parquet files, as a ratio.

The machine may be shared: the load average before and after is printed,
since other work on the cores distorts the ratios.

Usage: ``python benchmarks/fleet.py [--files N] [--file-mb M] [--full] [--tmp DIR] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import Targets

HERE = Path(__file__).resolve().parent
MB = 1_000_000
BYTES_PER_FRAME = 300  # about what benchmarks/export.py's generator writes per record


def synthesise_many(root: Path, files: int, file_mb: float) -> int:
    """Write ``files`` recordings of about ``file_mb`` MB each; return their total size."""
    sys.path.insert(0, str(HERE))
    from export import synthesise  # benchmarks/export.py

    root.mkdir(parents=True, exist_ok=True)
    frames = max(100, int(file_mb * MB / BYTES_PER_FRAME))
    total = 0
    for i in range(files):
        total += synthesise(root / f"rec{i:05d}.cbor", frames=frames, seed=i + 1)
    return total


# What each measured task does, run in a fresh interpreter (see _run).
_TASK = r"""
import os, sys, time, json
from pathlib import Path
name, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
files = sorted(src.glob("*.cbor"))
if name == "export":
    from reclab.export import export_table
    from reclab.model import open_recording
    import reclab.tables, pyarrow.parquet  # imports before the clock: the strongest baseline
    out.mkdir(parents=True, exist_ok=True)
    t, cpu0 = time.perf_counter(), sum(os.times()[:2])
    for i, path in enumerate(files):
        with open_recording(path) as rec:
            for table in ("session", "commands", "frames", "fileops", "logs"):
                export_table(rec, table, "parquet", out / f"{i}-{table}.parquet")
else:
    from reclab.fleet import ingest
    import reclab.tables, pyarrow.parquet  # the same imports before the clock
    t, cpu0 = time.perf_counter(), sum(os.times()[:2])
    report = ingest([src], out, workers=int(name[len("ingest-j"):]))
    assert not report.failed and len(report.ingested) == len(files), report.failed[:1]
seconds = time.perf_counter() - t
cpu = sum(os.times()[:2]) - cpu0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak": int(hwm[0].split()[1]) * 1024}))
"""


_TICK = os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> dict[int, tuple[int, float, int]]:
    """Resident bytes, CPU seconds so far and depth (1: a child) of each descendant of ``pid``."""
    found: dict[int, tuple[int, float, int]] = {}
    depth = {pid: 0}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fp:
                    children = [int(c) for c in fp.read().split()]
                todo.extend(children)
                for c in children:
                    depth[c] = depth[p] + 1
                    with open(f"/proc/{c}/stat") as fp:
                        fields = fp.read().rsplit(")", 1)[1].split()
                    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
                    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
                    found[c] = (rss, cpu, depth[c])
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return found


def _run(name: str, src: Path, out: Path) -> dict[str, float]:
    """Run a task in a fresh interpreter: its seconds, its peak RSS, its largest descendant's."""
    shutil.rmtree(out, ignore_errors=True)
    child = subprocess.Popen(
        [sys.executable, "-c", _TASK, name, str(src), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker_peak = 0
    worker_cpu: dict[int, tuple[float, int]] = {}
    while child.poll() is None:
        for pid, (rss, cpu, depth) in _descendants(child.pid).items():
            # the forkserver is a descendant too, but never the largest for long
            worker_peak = max(worker_peak, rss)
            worker_cpu[pid] = (cpu, depth)
        time.sleep(0.02)
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{name} failed:\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["worker_peak"] = worker_peak
    # CPU of the whole tree (workers' last samples: a few ms short each)
    own = result["cpu"]
    result["cpu"] += sum(cpu for cpu, _ in worker_cpu.values())
    # What the run would take on idle cores: the forkserver's start-up (a child),
    # then the workers' CPU shared over the cores they run on (workers are replaced
    # every few dozen files, so no single process stands for a core), alongside
    # this process's own work.
    jobs = int(name.rsplit("-j", 1)[1]) if "-j" in name else 1
    forkserver = sum(cpu for cpu, depth in worker_cpu.values() if depth == 1)
    workers = sum(cpu for cpu, depth in worker_cpu.values() if depth > 1)
    result["idle"] = max(own, forkserver + workers / jobs) if worker_cpu else own
    return dict(result)


_QUERY = (
    "SELECT recording, type, count(*) AS frames, sum(size) AS bytes, "
    "max(since_start) AS longest FROM frames GROUP BY ALL"
)


def query_benchmark(dataset: Path, repeat: int) -> tuple[float, float, int]:
    """Seconds for the query over all frames: DuckDB, then pandas on the same Parquet files."""
    import pandas as pd

    from reclab.fleet import connect

    def duck() -> int:
        con = connect(dataset)
        rows = len(con.execute(_QUERY).fetchall())
        con.close()
        return rows

    def pandas() -> int:
        frames = pd.read_parquet(
            dataset / "frames", columns=["recording", "type", "size", "since_start"]
        )
        grouped = frames.groupby(["recording", "type"], observed=True).agg(
            frames=("size", "size"), bytes=("size", "sum"), longest=("since_start", "max")
        )
        return len(grouped)

    def best(fn: object) -> tuple[float, int]:
        times, rows = [], 0
        for _ in range(repeat):
            t = time.perf_counter()
            rows = fn()  # type: ignore[operator]
            times.append(time.perf_counter() - t)
        return min(times), rows

    duck_s, duck_rows = best(duck)
    pandas_s, pandas_rows = best(pandas)
    assert duck_rows == pandas_rows, (duck_rows, pandas_rows)
    return duck_s, pandas_s, duck_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100, help="recordings to synthesise")
    parser.add_argument("--file-mb", type=float, default=1.0, help="size of each, MB")
    parser.add_argument(
        "--full", action="store_true", help="the issue's size: 1,000 recordings, ~1 GB"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument("--tmp", type=Path, default=None, help="where the files go")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    args = parser.parse_args()
    if args.full:
        args.files, args.file_mb = 1000, 1.0
    if args.tmp is not None:
        Path(args.tmp).mkdir(parents=True, exist_ok=True)  # the folder it is given may be new
    base = Path(tempfile.mkdtemp(prefix="reclab-fleet-bench-", dir=args.tmp))
    try:
        src = base / "recordings"
        t = time.perf_counter()
        total = synthesise_many(src, args.files, args.file_mb)
        print(
            f"{args.files} recordings, {total / MB:.1f} MB in all "
            f"(synthesised in {time.perf_counter() - t:.1f} s); "
            f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
        )
        results: dict[str, dict[str, float]] = {}
        for name in ("export", "ingest-j1", "ingest-j2"):
            runs = [_run(name, src, base / name) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["peak"] = max(r["peak"] for r in runs)
            best["worker_peak"] = max(r["worker_peak"] for r in runs)
            results[name] = best
        baseline = results["export"]["seconds"]
        base_idle = results["export"]["idle"]
        print(
            f"{'task':<11} {'seconds':>8} {'files/s':>8} {'MB/s':>7} {'ratio':>6}"
            f" {'CPU s':>7} {'idle s':>7} {'MB/s':>6} {'ratio':>6}  peak memory"
        )
        for name, r in results.items():
            s, cpu, idle = r["seconds"], r["cpu"], r["idle"]
            workers = f", largest worker {r['worker_peak'] / MB:.0f} MB" if r["worker_peak"] else ""
            print(
                f"{name:<11} {s:8.2f} {args.files / s:8.1f} {total / MB / s:7.1f} "
                f"{baseline / s:5.2f}x {cpu:7.2f} {idle:7.2f} {total / MB / idle:6.1f}"
                f" {base_idle / idle:5.2f}x  {r['peak'] / MB:.0f} MB{workers}"
            )
        print(
            "(seconds: wall time, ratio to export; CPU s: the whole process tree; idle s: what\n"
            " the CPU times say the run takes on cores of its own: the forkserver's start-up,\n"
            " then the busiest worker, alongside the driver. On a machine shared with other\n"
            " work the wall times are distorted; the idle estimate is not.)"
        )
        duck_s, pandas_s, rows = query_benchmark(base / "ingest-j2", max(args.repeat, 3))
        print(
            f"query over all frames ({rows} groups): DuckDB {duck_s:.3f} s, "
            f"pandas {pandas_s:.3f} s: DuckDB {pandas_s / duck_s:.1f}x pandas"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        targets = Targets()
        targets.check(
            "ingest -j2 against export (idle-cores estimate)",
            base_idle / results["ingest-j2"]["idle"],
            at_least=1.6,
            unit="x",
        )
    finally:
        if args.keep:
            print(f"kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
