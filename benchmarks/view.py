"""reclab view: time to first screen and to full index, key latency while indexing.

For synthetic recordings of about 2 KB and 100 MB (and 1 GB with ``--big``),
each measured in a fresh interpreter, headless (``App.run_test``):

- raw: plain cbor2 decoding of every record of the file (buffered file,
  ``while fp.peek(1): dec.decode()``), the baseline, in the same run;
- first screen: from opening the recording (imports done, timed apart) to
  the first paint of the commands list with commands in it (the session bar
  is drawn before it);
- full index: from opening to the last snapshot (``done``) reaching the screen;
- keys: while indexing, "down" is pressed again and again; the latency is
  from sending the key to the commands list handling it (median and worst);
- tick: the gaps of a 20 ms UI timer while indexing (how long the UI stalls).

Targets (issue 9): first screen of the large file within 0.35x of its raw
decode and within 1.5x of the 2 KB file's; keys answered within 100 ms.

Usage: ``python benchmarks/view.py [--big] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import Targets

HERE = Path(__file__).resolve().parent
SIZES = {"2KB": 5, "100MB": 300_000, "1GB": 3_000_000}  # frames, with export.py's mix

_RAW = """
import sys, time, cbor2
t = time.perf_counter()
with open(sys.argv[1], "rb") as fp:
    dec = cbor2.CBORDecoder(fp)
    while fp.peek(1):
        dec.decode()
print(time.perf_counter() - t)
"""

_VIEW = """
import asyncio, json, os, sys, time
os.environ["TEXTUAL_ANIMATIONS"] = "none"
t = time.perf_counter()
from reclab.tui.app import ReclabApp
from reclab.tui.source import RecordingSource
from reclab.tui.widgets.commands import CommandList
from textual.worker import WorkerCancelled
imports = time.perf_counter() - t

handled = []
original = CommandList.action_cursor
def timed(self, delta):
    original(self, delta)
    handled.append(time.perf_counter())
CommandList.action_cursor = timed

async def main():
    start = time.perf_counter()
    source = RecordingSource.open(sys.argv[1])
    app = ReclabApp(source)
    latencies = []
    ticks = []
    async with app.run_test(size=(120, 40)) as pilot:
        commands = app.screen.query_one(CommandList)
        while commands.first_painted_at is None:
            await asyncio.sleep(0.001)
        first = commands.first_painted_at - start
        # The UI's own clock: a 20 ms timer; its gaps are how long the UI was stalled.
        timer = app.set_interval(0.02, lambda: ticks.append(time.perf_counter()))
        while not source.snapshot().done:
            sent = time.perf_counter()
            count = len(handled)
            await pilot.press("down")
            while len(handled) == count:
                await asyncio.sleep(0.0005)
            latencies.append(handled[-1] - sent)
            await asyncio.sleep(0.02)
        timer.stop()
        while running := [w for w in app.workers if not w.is_finished]:
            try:
                await app.workers.wait_for_complete(running)
            except WorkerCancelled:  # replaced by a newer one: fine
                pass
        await pilot.pause()
        full = time.perf_counter() - start
        rows = len(commands.rows)
    source.close()
    print(json.dumps({"imports": imports, "first": first, "full": full, "rows": rows,
                      "keys": latencies, "while_indexing": not commands.first_painted_done,
                      "stalls": [b - a for a, b in zip(ticks, ticks[1:])]}))

asyncio.run(main())
"""


def _python(code: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    return done.stdout.strip().splitlines()[-1]


def _warm(path: Path) -> None:
    with open(path, "rb") as fp:
        while fp.read(1 << 24):
            pass


def measure(path: Path, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` raw decode and viewer figures for one file."""
    _warm(path)
    raw = min(float(_python(_RAW, str(path))) for _ in range(repeat))
    runs = [json.loads(_python(_VIEW, str(path))) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["first"])
    keys = [k for r in runs for k in r["keys"]]
    stalls = [g for r in runs for g in r["stalls"]]
    return {
        "size": path.stat().st_size,
        "raw": raw,
        "imports": best["imports"],
        "first": best["first"],
        "full": min(r["full"] for r in runs),
        "keys_n": len(keys),
        "keys_median": statistics.median(keys) if keys else 0.0,
        "keys_worst": max(keys) if keys else 0.0,
        "stall_median": statistics.median(stalls) if stalls else 0.0,
        "stall_worst": max(stalls) if stalls else 0.0,
        "while_indexing": any(r["while_indexing"] for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the ~1 GB recording")
    parser.add_argument("--keep", type=Path, help="reuse or keep the synthesised files here")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from export import synthesise  # the same realistic mix as the export benchmark

    names = ["2KB", "100MB", *(["1GB"] if args.big else [])]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = {}
        for name in names:
            path = folder / f"view-{name}.cbor"
            if not path.exists():
                t = time.perf_counter()
                synthesise(path, SIZES[name])
                print(f"synthesised {name} in {time.perf_counter() - t:.1f}s", flush=True)
            results[name] = measure(path, repeat=3)  # best of 3 for every size alike
            if not args.keep:
                pass  # the temporary directory goes at the end
        small = results["2KB"]["first"]
        print(
            f"cpus {os.cpu_count()}; textual+reclab.tui imports (not counted) "
            f"{results['2KB']['imports']:.2f}s"
        )
        print(
            f"{'file':>6} {'size':>9} {'raw':>7} {'first':>7} {'/raw':>6} {'/2KB':>6} "
            f"{'index':>7} {'/raw':>6} {'keys':>5} {'median':>8} {'worst':>8} "
            f"{'tick':>7} {'worst':>7}"
        )
        for name, r in results.items():
            print(
                f"{name:>6} {r['size'] / 1e6:8.1f}M {r['raw']:6.3f}s {r['first']:6.3f}s "
                f"{r['first'] / r['raw']:5.2f}x {r['first'] / small:5.2f}x "
                f"{r['full']:6.2f}s {r['full'] / r['raw']:5.2f}x {r['keys_n']:5d} "
                f"{r['keys_median'] * 1e3:6.1f}ms {r['keys_worst'] * 1e3:6.1f}ms "
                f"{r['stall_median'] * 1e3:5.0f}ms {r['stall_worst'] * 1e3:5.0f}ms"
            )
        print("(first: open to first commands painted; index: open to the full index on")
        print(" screen; /raw: ratio to raw cbor2 decoding of the same file, lower is faster;")
        print(" keys: presses of Down while indexing, from sending to handled; tick: gaps")
        print(" of a 20 ms UI timer while indexing, median and worst: how long the UI stalled)")
        targets = Targets()
        large = names[-1]
        r = results[large]
        targets.check(
            f"first screen of {large} / raw", r["first"] / r["raw"], at_most=0.35, unit="x"
        )
        targets.check(f"first screen of {large} / 2KB's", r["first"] / small, at_most=1.5, unit="x")
        for name, r in results.items():
            targets.check(
                f"worst key answer, {name}", r["keys_worst"] * 1e3, at_most=100, unit=" ms"
            )
    return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
