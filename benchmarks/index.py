"""The index helper process against one process, on an idle and on a loaded machine.

Indexes the same recording (``open_recording``, everything) in fresh
interpreters, taking turns, three ways:

- ``1 process``: ``IndexOptions(workers=1)``, the anchor;
- ``auto``: the default, which forks a helper only for large files when a
  second core is free;
- ``forced 2``: ``IndexOptions(workers=2)``, a helper whatever the machine.

first with the machine as it is ("idle": nothing added), then with
``--load`` busy processes spinning (default: one per core). Each is run
``--repeat`` times; the median time is kept. Ratios are the 1-process
time over the other's (above 1 is faster); the target is that ``auto`` is
never slower than one process by more than noise: a ratio of at least
0.95, or of what a second 1-process run in the same rounds got (the noise
measured), and it prints "met" or "MISSED". The import time is not counted.

    python benchmarks/index.py --size-mb 300 1000 --repeat 5
    python benchmarks/index.py --file big.cbor

The machine running it may be busy with other work already: the figures
are ratios from the same run, and the load at the start is printed.
"""

from __future__ import annotations

import argparse
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOISE = 0.95  # auto / 1-process ratio under which "never slower" is missed

# The child: index the file the given way, print seconds and helpers forked.
CHILD = """
import sys, time
from reclab.model import IndexOptions, open_recording, parallel
forks = []
if hasattr(parallel, "_fork_helper"):
    real = parallel._fork_helper
    def counted(*args):
        forks.append(1)
        return real(*args)
    parallel._fork_helper = counted
elif hasattr(parallel, "subprocess"):  # before: a new interpreter
    real = parallel.subprocess.Popen
    def counted(*args, **kwargs):
        forks.append(1)
        return real(*args, **kwargs)
    parallel.subprocess.Popen = counted
workers = {"1": 1, "auto": None, "2": 2}[sys.argv[2]]
t = time.perf_counter()
with open_recording(sys.argv[1], options=IndexOptions(workers=workers)) as rec:
    count = rec.record_count
print(time.perf_counter() - t, len(forks), count)
"""

# "1 process, again" measures the noise: the same work as the anchor.
MODES = (("1 process", "1"), ("auto", "auto"), ("forced 2", "2"), ("1 process, again", "1"))


def run_once(path: Path, mode: str) -> tuple[float, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    seconds, forks, count = out.stdout.split()
    return float(seconds), int(forks), int(count)


def measure(path: Path, repeat: int) -> dict[str, tuple[float, int]]:
    """Median seconds and helpers forked (in all runs) per mode, the modes taking turns."""
    times: dict[str, list[float]] = {name: [] for name, _ in MODES}
    forks = dict.fromkeys(times, 0)
    counts = set()
    for _ in range(repeat):
        for name, mode in MODES:
            seconds, forked, count = run_once(path, mode)
            times[name].append(seconds)
            forks[name] += forked
            counts.add(count)
    if len(counts) != 1:
        raise SystemExit(f"the modes indexed different record counts: {sorted(counts)}")
    return {name: (statistics.median(t), forks[name]) for name, t in times.items()}


def report(label: str, size: int, results: dict[str, tuple[float, int]], repeat: int) -> None:
    anchor = results["1 process"][0]
    again = anchor / results["1 process, again"][0]  # 1.0 but for noise, either way
    noise = min(NOISE, again, 1 / again)
    print(f"{label}: {size / 1e6:.0f} MB; 1 process (anchor) {anchor:.2f} s")
    for name in ("1 process, again", "auto", "forced 2"):
        seconds, forks = results[name]
        ratio = anchor / seconds
        verdict = ""
        if name == "auto":
            verdict = "met" if ratio >= noise else "MISSED"
            verdict = f"  (never slower than 1 process: >= {noise:.2f}) {verdict}"
        print(
            f"  {name:9} {seconds:6.2f} s  {ratio:5.2f}x 1 process, "
            f"helper forked in {forks}/{repeat} runs{verdict}"
        )


def busy(n: int) -> list[subprocess.Popen[bytes]]:
    code = "while True: pass"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, action="append", help="recording(s) to index")
    parser.add_argument(
        "--size-mb", type=int, nargs="*", default=[300, 1000], help="synthesise these sizes"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per mode (median kept)")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1, help="busy processes")
    parser.add_argument("--tmp", type=Path, help="directory for the synthesised files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        files = list(args.file or [])
        if not args.file:
            synthesise = runpy.run_path(str(HERE / "export.py"), run_name="bench")["synthesise"]
            for mb in args.size_mb:
                path = Path(tmp) / f"{mb}mb.cbor"
                synthesise(path, round(mb * 1e6 / 331.6))  # ~332 bytes a frame
                files.append(path)
        load = Path("/proc/loadavg").read_text().strip()
        print(f"cpus {os.cpu_count()}, load at start {load}")
        for path in files:
            size = path.stat().st_size
            with open(path, "rb") as fp:  # the page cache alike for every run
                while fp.read(1 << 24):
                    pass
            report("idle (as found)", size, measure(path, args.repeat), args.repeat)
            spinners = busy(args.load)
            try:
                time.sleep(1)
                label = f"loaded (+{args.load} busy processes)"
                report(label, size, measure(path, args.repeat), args.repeat)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    main()
