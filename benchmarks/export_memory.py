"""Peak memory of ``reclab export -t frames`` (Parquet and CSV) against the recording's size.

Synthesises recordings of the given sizes (default 0.3, 1 and 3 GB, with
the generator of ``benchmarks/export.py``: ~330 bytes a frame), runs the
command on each in a fresh process and prints its peak resident memory:
the largest of the command's and of its index helper's (``ru_maxrss`` from
``wait4``, what ``/usr/bin/time -v`` reports). The goal: under 300 MB at
3 GB, i.e. flat in the file size; each row says "met" or "MISSED" against
it, and the growth per GB between the smallest and the largest file is
printed. The files (about 4.5 GB for the defaults, plus the output) are
deleted at the end unless ``--keep`` names a directory for them.

    python benchmarks/export_memory.py
    python benchmarks/export_memory.py --sizes-gb 0.3 1 --formats parquet
"""

from __future__ import annotations

import argparse
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOAL = 300e6  # bytes of peak memory, at 3 GB
BYTES_PER_FRAME = 331.6  # what the generator writes, on average


def peak_of(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd``; return its seconds and peak RSS in bytes (it or any child it waited for)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return time.perf_counter() - t, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--formats", nargs="+", default=["parquet", "csv"])
    parser.add_argument("--keep", type=Path, help="directory to keep (and reuse) recordings in")
    parser.add_argument("--tmp", type=Path, help="directory for the files otherwise")
    args = parser.parse_args()
    synthesise = runpy.run_path(str(HERE / "export.py"), run_name="bench")["synthesise"]
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        rows: dict[str, list[tuple[int, int]]] = {fmt: [] for fmt in args.formats}
        print(f"{'recording':>10} {'format':8} {'seconds':>8} {'peak':>8}  goal < 300 MB at 3 GB")
        for gb in args.sizes_gb:
            path = where / f"{gb:g}gb.cbor"
            if not path.exists():
                frames = round(gb * 1e9 / BYTES_PER_FRAME)
                synthesise(path, frames, seed=int(gb * 10))
            size = path.stat().st_size
            for fmt in args.formats:
                out = Path(tmp) / f"out.{fmt}"
                cmd = [sys.executable, "-m", "reclab", "export", str(path), "-t", "frames"]
                seconds, peak = peak_of([*cmd, f"--{fmt}", "-o", str(out)])
                out.unlink(missing_ok=True)
                rows[fmt].append((size, peak))
                verdict = "met" if peak < GOAL else "MISSED"
                print(f"{size / 1e9:8.2f}GB {fmt:8} {seconds:8.1f} {peak / 1e6:6.0f}MB  {verdict}")
            if args.keep is None:
                path.unlink()
        for fmt, points in rows.items():
            if len(points) >= 2:
                (s0, p0), (s1, p1) = points[0], points[-1]
                slope = (p1 - p0) / (s1 - s0)  # bytes of memory per byte of file
                print(f"{fmt}: peak grows {slope * 1e3:.1f} MB per GB of recording")
        if args.keep is None:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
