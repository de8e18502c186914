"""Start-up of short reclab commands, against ``reclab info`` in the same run.

    python benchmarks/startup.py [--runs N] [--recording FILE] [--baseline-src DIR]

Each command runs ``--runs`` times in a fresh interpreter (``python -m
reclab``), in turns; the median wall time and the median CPU time (user +
system of the child) are printed, with the ratio to ``reclab info`` on the
same small recording. The floor under ``--help`` is printed with it: a bare
``python -c pass``, the same without ``site`` (``-S``: what start-up hooks in
site-packages cost) and ``import typer`` (the library that builds the help).
``--baseline-src DIR`` times ``--help`` from another source tree too (``git
archive <commit> src | tar -x -C DIR``): before and after in one run.

Targets (issue 13): ``commands`` and ``export --csv`` within 1.5x of
``info``; ``--help`` under 0.15 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from targets import Targets

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample-recordings" / "failing-build.cbor"


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command")
    parser.add_argument("--recording", type=Path, default=SAMPLE, help="a small recording")
    parser.add_argument("--baseline-src", type=Path, help="also time --help from this tree")
    args = parser.parse_args()
    rec = str(args.recording)
    reclab = [sys.executable, "-m", "reclab"]
    envs: dict[str, dict[str, str] | None] = {}
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "reclab --help": [*reclab, "--help"],
        "reclab info": [*reclab, "info", rec],
        "reclab commands": [*reclab, "commands", rec],
        "reclab export --csv": [*reclab, "export", "--csv", rec],
    }
    os.environ.setdefault("COLUMNS", "100")
    if args.baseline_src:
        src = str(args.baseline_src.resolve() / "src")
        envs["baseline --help"] = dict(os.environ, PYTHONPATH=src)
        commands["baseline --help"] = [*reclab, "--help"]
    for name, argv in commands.items():  # once untimed: bytecode caches filled
        run(argv, envs.get(name))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.runs):  # in turns: load from elsewhere hits every command alike
        for name, argv in commands.items():
            times[name].append(run(argv, envs.get(name)))
    size = args.recording.stat().st_size
    print(f"start-up, {args.runs} runs each, recording {args.recording.name} ({size} bytes):")
    wall_info = statistics.median(w for w, _ in times["reclab info"])
    cpu_info = statistics.median(c for _, c in times["reclab info"])
    for name, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(
            f"  {name:32s} wall {wall * 1000:6.0f} ms ({wall / wall_info:4.2f}x info)"
            f"  CPU {cpu * 1000:6.0f} ms ({cpu / cpu_info:4.2f}x info)"
        )
    print("load average: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    def median_wall(name: str) -> float:
        return statistics.median(w for w, _ in times[name])

    targets = Targets()
    targets.check(
        "reclab --help, wall", median_wall("reclab --help") * 1000, at_most=150, unit=" ms"
    )
    for name in ("reclab commands", "reclab export --csv"):
        targets.check(
            f"{name} / reclab info, wall", median_wall(name) / wall_info, at_most=1.5, unit="x"
        )
    return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
