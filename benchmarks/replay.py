"""Replay and compare speed, against baselines measured in the same run.

    python benchmarks/replay.py [--commands N] [--output-mb MB] [--tmp DIR] [--skip-replay]

- replay: a recording of ``--commands`` short commands (``true``, one agent
  connection each, as ``reclab run`` makes them) is replayed with
  ``--timing fast`` (recording the replay and comparing it), against running
  the same commands through the agent directly (``reclab.runner.run_command``,
  no recording), in commands per second. Target: at least 0.8x.
- compare: two recordings of one command with ``--output-mb`` MB of stdout
  each (256 by default; 1024 for the 1 GiB case) are compared
  (:func:`reclab.replay.compare_recordings`), against reading both streams
  (:meth:`Recording.stream_chunks`), each in a child process, so its peak
  memory (max RSS) is its own. Target: the compare step close to reading
  (a ratio near 1), with memory bounded (independent of the output size).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from targets import Targets

from agentproto import Direction, ExecMsg, Frame, FrameType, Recorder

CHUNK = 256 * 1024
REPLAY_TARGET = 0.8


def replay_rates(commands: int, tmp: Path) -> tuple[float, float]:
    """(direct commands/s, replay commands/s) for ``commands`` runs of ``true``."""
    from reclab.replay import replay
    from reclab.runner import RecordedSession, run_command

    msg = ExecMsg(path="true", argv=["true"])
    recording = tmp / "short-commands.cbor"
    with RecordedSession(recording) as session:
        for _ in range(commands):
            session.run(msg, stdin=subprocess.DEVNULL)
    start = time.perf_counter()
    for _ in range(commands):
        run_command(msg, stdin=subprocess.DEVNULL, forward=False)
    direct = time.perf_counter() - start
    start = time.perf_counter()
    report = replay(recording, output=tmp / "short-commands-replay.cbor", timing="fast")
    replayed = time.perf_counter() - start
    if report.status != 0:
        raise SystemExit(f"the replay did not match: {report.to_json()['summary']}")
    return commands / direct, commands / replayed


def write_output_recording(path: Path, megabytes: int) -> None:
    """One command whose stdout is ``megabytes`` MB, in 256 KiB data frames."""
    block = bytes(range(256)) * (CHUNK // 256)
    with Recorder(path) as rec:
        rec.write_session_header()
        msg = ExecMsg(path="cat", argv=["cat", "big"])
        seq = rec.write_command_start(msg)
        rec.write_frame(seq, Direction.SEND, Frame(type=FrameType.EXEC, exec=msg))
        for _ in range(megabytes * 1_000_000 // CHUNK):
            rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.DATA, stream=1, data=block))
        rec.write_frame(seq, Direction.RECV, Frame(type=FrameType.EXIT, code=0))
        rec.write_command_end(seq, 0)


CHILD = r"""
import sys, time
from reclab.model import open_recording
from reclab.replay import compare_recordings
what, a_path, b_path = sys.argv[1:4]
a, b = open_recording(a_path), open_recording(b_path)
start = time.perf_counter()
if what == "read":
    total = sum(len(d) for rec in (a, b) for _s, _d, d in rec.stream_chunks(1, (1,)))
else:
    report = compare_recordings(a, b)
    assert report.status == 0, report.to_json()
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: the latter can keep the parent's size from before exec
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(elapsed, peak.split()[1])
"""


def child(what: str, a: Path, b: Path) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of reading or comparing in a fresh process (after indexing)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(a), str(b)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds, rss = out.stdout.split()
    return float(seconds), int(rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=1000, help="short commands to replay")
    parser.add_argument("--output-mb", type=int, default=256, help="stdout MB to compare")
    parser.add_argument("--tmp", type=Path, help="directory for the recordings")
    parser.add_argument("--skip-replay", action="store_true", help="only the compare step")
    parser.add_argument("--skip-compare", action="store_true", help="only the replay")
    args = parser.parse_args()
    targets = Targets()
    if args.output_mb > 1024:
        parser.error("--output-mb: at most 1024 (two recordings of that size are written)")
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.tmp) as name:
        tmp = Path(name)
        if not args.skip_replay:
            direct, replayed = replay_rates(args.commands, tmp)
            ratio = replayed / direct
            print(f"replay of {args.commands} short commands (--timing fast):")
            print(f"  through the agent directly  {direct:7.1f} commands/s")
            print(f"  replayed, recorded, compared {replayed:6.1f} commands/s  ({ratio:.2f}x)")
            targets.check("replay rate / direct rate", ratio, at_least=REPLAY_TARGET, unit="x")
        if not args.skip_compare:
            a, b = tmp / "a.cbor", tmp / "b.cbor"
            write_output_recording(a, args.output_mb)
            write_output_recording(b, args.output_mb)
            read_s, read_rss = min(child("read", a, b) for _ in range(2))
            cmp_s, cmp_rss = min(child("compare", a, b) for _ in range(2))
            mb = 2 * args.output_mb
            print(f"compare, two recordings of {args.output_mb} MB of stdout (best of 2):")
            print(f"  reading both streams  {read_s:6.2f} s  {mb / read_s:7.0f} MB/s  "
                  f"max RSS {read_rss / 1024:5.0f} MiB")  # fmt: skip
            print(f"  comparing them        {cmp_s:6.2f} s  {mb / cmp_s:7.0f} MB/s  "
                  f"max RSS {cmp_rss / 1024:5.0f} MiB")  # fmt: skip
            print(f"  the compare step takes {cmp_s / read_s:.2f}x the time of reading")
    return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
