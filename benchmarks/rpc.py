"""File-op RPCs through the mux: this package's agent against the Go agent, in one run.

    python benchmarks/rpc.py [--calls N] [--repeat N] [--profile agent|runner]
                             [--baseline-src DIR] [--busy N]

The runner side is the same for both (:class:`agentproto.Mux` in this
process, as ``reclab.runner`` uses it); only the agent differs:

- this package's agent (``python -m agentproto.agent``);
- the Go agent: ``tests/go/crosscheck agent``, a Go ``Mux`` read loop serving
  Stat with fxamacker/cbor (built on the fly; skipped without Go).

``--baseline-src DIR`` adds this package's agent as another source tree has
it (``git archive <commit> src | tar -x -C DIR``): before and after in one run.

Rates are Stat RPCs per second with 1 and 16 caller threads, best of
``--repeat`` runs taken in turns, printed as a ratio to the Go agent's (the
target: at least 1x Go, said met or MISSED; the exit status is 1 on a miss),
with the load average before and after (this agent polls for the next request
only while a core is spare: see :mod:`agentproto.spin`), and each agent's
CPU per call. Then each agent's CPU in the second after a burst of calls (a
spinning agent must stop spinning when the requests stop).
Then one call's latency is broken down (1 caller, medians):

- runner encode: ``Frame.to_cbor()`` of the request;
- write: the ``write(2)`` of the request into the pipe;
- agent decode + syscall + encode: the agent's own CPU per request, measured
  in this process on the same functions (decode the frame, ``FileOpServer``'s
  Stat answer, encoded, behind the frame's head), hot in the cache: the agent
  runs them cold, after a wake-up, and so slower;
- pipe + agent wake-up: the rest of a bare round trip (write, then a blocking
  read of the answer, no mux threads): scheduling and the agent's read/write;
- read, decode: the runner's read of the answer, decoding it;
- wake-up: what the mux adds to the bare round trip (its reading thread
  receives the answer and wakes the calling thread).

Last, bare round trips (no mux, 1 caller) with the agent's CPU per call, on
a ladder: a Python process that only reads and writes, the agent's decode +
Stat + encode functions alone, this agent (the session and the mux around
them), the Go agent.

``--busy N`` runs N processes that keep a core busy each while the rates
are measured: a loaded machine (the agent must then stop spinning).

``--profile agent`` runs the agent under cProfile and prints its top
functions; ``--profile runner`` profiles this process during a 1-caller run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from targets import Targets  # noqa: E402

from agentproto import FileOp, FileOpReq, Frame, FrameType, Mux  # noqa: E402
from agentproto.agent.fileops import FileOpServer  # noqa: E402
from agentproto.codec import item_end  # noqa: E402
from agentproto.protocol import FILE_RESP_FRAME_HEAD, decode_frame_item  # noqa: E402

PY_AGENT = [sys.executable, "-m", "agentproto.agent", "--log-level", "warning"]


def go_agent() -> list[str] | None:
    """The Go agent's command line, or None when Go or fxamacker/cbor is missing."""
    try:
        from gotools import crosscheck_binary
    except ImportError:
        return None
    binary = crosscheck_binary()
    return None if binary is None else [str(binary), "agent"]


def _cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by process ``pid``, all its threads (Linux /proc).

    From the scheduler's nanosecond counts (``schedstat``) where the kernel has
    them: the clock ticks of ``/proc/PID/stat`` (10 ms) are too coarse for an
    idle agent's second.
    """
    try:
        return (
            sum(
                int(task.joinpath("schedstat").read_text().split()[0])
                for task in Path(f"/proc/{pid}/task").iterdir()
            )
            / 1e9
        )
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# (agent, threads) -> [(agent CPU us per call, runner CPU us per call)], filled by rate()
CPU: dict[tuple[str, int], list[tuple[float, float]]] = {}


def rate(
    agent: list[str],
    target: str,
    calls: int,
    threads: int,
    name: str = "",
    env: dict[str, str] | None = None,
) -> float:
    """Stat RPCs per second through a Mux to ``agent`` with ``threads`` callers.

    Also adds the agent's and this process's CPU microseconds per call to
    ``CPU[name, threads]``: CPU per call moves less than wall time when other
    work loads the machine.
    """
    proc = subprocess.Popen(agent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    mux = Mux(proc.stdout, proc.stdin, side="runner")
    mux.start()
    for _ in range(50):  # warm up: lazy imports, page faults
        mux.file_op(FileOpReq(op=FileOp.STAT, path=target))
    per_thread = calls // threads
    req = FileOpReq(op=FileOp.STAT, path=target)

    def work() -> None:
        for _ in range(per_thread):
            resp = mux.file_op(req)
            assert resp.errno == 0 and resp.stat is not None and resp.stat.size == 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    agent_before = _cpu_seconds(proc.pid)
    runner_before = time.process_time()
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    runner_cpu = time.process_time() - runner_before
    agent_cpu = _cpu_seconds(proc.pid) - agent_before
    mux.close()
    proc.wait(30)
    done = per_thread * threads
    CPU.setdefault((name, threads), []).append((1e6 * agent_cpu / done, 1e6 * runner_cpu / done))
    return done / elapsed


def _median_us(fn, n: int = 2000) -> float:  # type: ignore[no-untyped-def]
    times = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times) / 1000


def breakdown(agent: list[str], target: str, calls: int) -> dict[str, float]:
    """Median microseconds of each part of one Stat RPC (see the module docs)."""
    req = FileOpReq(op=FileOp.STAT, path=target)
    parts: dict[str, float] = {}
    # runner-side encode (a fresh id each call, as Mux.file_op does)
    parts["runner encode"] = _median_us(
        lambda: Frame(type=FrameType.FILE_OP, file_op=FileOpReq(7, FileOp.STAT, target)).to_cbor()
    )
    request = Frame(type=FrameType.FILE_OP, file_op=FileOpReq(7, FileOp.STAT, target)).to_cbor()
    server = FileOpServer()
    answer = Frame(type=FrameType.FILE_RESP, file_resp=server.handle(req)).to_cbor()

    # this package's agent's CPU per request, on the functions its read loop calls
    def agent_cpu() -> None:
        frame = decode_frame_item(request)
        assert frame.file_op is not None
        FILE_RESP_FRAME_HEAD + server.answer(frame.file_op)

    parts["agent decode+syscall+encode"] = _median_us(agent_cpu)
    parts["runner decode"] = _median_us(lambda: decode_frame_item(answer))

    # a bare round trip: no mux threads, one blocking read of the whole answer
    proc = subprocess.Popen(agent, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()
    clock = time.perf_counter_ns
    writes, trips, reads = [], [], []
    for i in range(calls):
        t0 = clock()
        os.write(wfd, request)
        t1 = clock()
        data = os.read(rfd, 65536)  # blocks until the answer (or its start) is there
        t2 = clock()
        while True:
            try:
                if item_end(data, 0) == len(data):
                    break
            except Exception:
                pass
            data += os.read(rfd, 65536)
        t3 = clock()
        if i >= 50:
            writes.append(t1 - t0)
            trips.append(t2 - t1)
            reads.append(t3 - t2)
    proc.stdin.close()
    proc.wait(30)
    bare = statistics.median(a + b + c for a, b, c in zip(writes, trips, reads, strict=True)) / 1000
    parts["write"] = statistics.median(writes) / 1000
    parts["pipe + agent wake-up (bare trip - agent CPU)"] = (
        statistics.median(trips) / 1000 - parts["agent decode+syscall+encode"]
    )
    parts["read rest"] = statistics.median(reads) / 1000

    # the same calls through the mux, 1 caller: the difference is the mux's hand-over
    proc = subprocess.Popen(agent, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    mux = Mux(proc.stdout, proc.stdin, side="runner")
    mux.start()
    lat = []
    for i in range(calls):
        t0 = clock()
        mux.file_op(req)
        if i >= 50:
            lat.append(clock() - t0)
    mux.close()
    proc.wait(30)
    total = statistics.median(lat) / 1000
    parts["mux hand-over (mux call - bare trip - encode - decode)"] = (
        total - bare - parts["runner encode"] - parts["runner decode"]
    )
    parts["total (mux call)"] = total
    parts["bare round trip"] = bare
    return parts


def bare_trip(
    agent: list[str], target: str, calls: int, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """A bare round trip (write, blocking read) to ``agent``: median us, agent CPU us per call."""
    request = Frame(type=FrameType.FILE_OP, file_op=FileOpReq(7, FileOp.STAT, target)).to_cbor()
    proc = subprocess.Popen(agent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    wfd, rfd = proc.stdin.fileno(), proc.stdout.fileno()
    trips = []
    cpu_before = 0.0
    for i in range(calls):
        if i == 50:
            cpu_before = _cpu_seconds(proc.pid)
        t0 = time.perf_counter_ns()
        os.write(wfd, request)
        data = os.read(rfd, 65536)
        while item_end(data, 0) != len(data):
            data += os.read(rfd, 65536)
        if i >= 50:
            trips.append(time.perf_counter_ns() - t0)
    cpu = _cpu_seconds(proc.pid) - cpu_before
    proc.stdin.close()
    proc.wait(30)
    return statistics.median(trips) / 1000, 1e6 * cpu / len(trips)


def idle_cpu(agent: list[str], target: str, env: dict[str, str] | None = None) -> float:
    """The agent's CPU share (percent of a core) in the second after a burst of calls.

    A spinning agent polls for at most its budget after the last request, then
    sleeps: this is that cost, and proves the spinning stops.
    """
    proc = subprocess.Popen(agent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    mux = Mux(proc.stdout, proc.stdin, side="runner")
    mux.start()
    req = FileOpReq(op=FileOp.STAT, path=target)
    for _ in range(500):  # back to back: spinning, where the machine allows it
        mux.file_op(req)
    before = _cpu_seconds(proc.pid)
    time.sleep(1.0)
    used = _cpu_seconds(proc.pid) - before
    mux.close()
    proc.wait(30)
    return 100 * used


def load() -> str:
    """The load averages and the tasks runnable right now (``/proc/loadavg``)."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
    except OSError:
        return "unknown"
    return f"{' '.join(fields[:3])}, runnable now {fields[3].split('/')[0]}"


def serve(mode: str) -> None:
    """The reference points below the agent (``--serve``), on stdin/stdout.

    ``echo``: a Python process that reads each request and writes a fixed answer
    (the floor: wake-ups and two system calls). ``work``: the agent's own decode,
    Stat and encode functions on each read, without the mux or the session.
    """
    server = FileOpServer()
    answer = b""
    while True:
        data = os.read(0, 65536)
        if not data:
            return
        if mode == "work" or not answer:
            frame = decode_frame_item(data)
            assert frame.file_op is not None
            answer = FILE_RESP_FRAME_HEAD + server.answer(frame.file_op)
        os.write(1, answer)


def profile_agent(target: str, calls: int, threads: int, out: Path) -> None:
    """Run this package's agent under cProfile for one rate run; print its top functions."""
    agent = [sys.executable, "-m", "cProfile", "-o", str(out), *PY_AGENT[1:]]
    print(f"{rate(agent, target, calls, threads):.0f} calls/s under the profiler")
    pstats.Stats(str(out)).sort_stats("tottime").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=8000, help="calls per rate run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument("--profile", choices=["agent", "runner"], help="profile one side")
    parser.add_argument("--serve", choices=["echo", "work"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also run the agent of this source tree (the src directory's parent)",
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="processes keeping a core busy each during the rates"
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    with tempfile.TemporaryDirectory() as tmpdir:
        target = os.path.join(tmpdir, "stat-me")
        Path(target).write_bytes(b"x")
        if args.profile == "agent":
            for threads in (1, 16):
                profile_agent(target, args.calls, threads, Path(tmpdir) / "agent.prof")
            return 0
        if args.profile == "runner":
            prof = cProfile.Profile()
            prof.enable()
            print(f"{rate(PY_AGENT, target, args.calls, 1):.0f} calls/s, runner profiled")
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            return 0
        go = go_agent()
        agents = {"python": PY_AGENT} | ({"go": go} if go else {})
        envs: dict[str, dict[str, str] | None] = dict.fromkeys(agents)
        if args.baseline_src:
            agents["baseline"] = PY_AGENT
            src = str(args.baseline_src.resolve() / "src")
            envs["baseline"] = dict(os.environ, PYTHONPATH=src)
        rates: dict[tuple[str, int], list[float]] = {}
        busy = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)
        ]
        try:
            time.sleep(0.5 if busy else 0)
            print(f"load before: {load()}" + (f" ({len(busy)} busy processes)" if busy else ""))
            for _ in range(args.repeat):  # in turns: load from elsewhere hits both alike
                for threads in (1, 16):
                    for name, cmd in agents.items():
                        rates.setdefault((name, threads), []).append(
                            rate(cmd, target, args.calls, threads, name, envs[name])
                        )
            print(f"load after:  {load()}")
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        targets = Targets()
        print(f"file-op RPCs (Stat) through the Mux, {args.calls} calls, best of {args.repeat}:")
        for threads in (1, 16):
            py = max(rates["python", threads])
            line = f"  {threads:2d} caller(s): this agent {py:8.0f} calls/s ({1e6 / py:5.1f} us)"
            if go:
                g = max(rates["go", threads])
                line += f", Go agent {g:8.0f} calls/s ({1e6 / g:5.1f} us): {py / g:.2f}x Go"
            else:
                line += " (Go agent: Go or fxamacker/cbor not installed)"
            print(line)
            if go:
                targets.check(f"{threads} caller(s), this agent / Go", py / g, at_least=1.0)
            if args.baseline_src:
                base = max(rates["baseline", threads])
                line = f"      baseline agent {base:8.0f} calls/s ({1e6 / base:5.1f} us)"
                line += f": this agent {py / base:.2f}x the baseline"
                if go:
                    line += f"; baseline {base / max(rates['go', threads]):.2f}x Go"
                print(line)
            for name in agents:
                agent_us = min(a for a, _ in CPU[name, threads])
                runner_us = min(r for _, r in CPU[name, threads])
                print(
                    f"      {name:8s} agent: CPU per call agent {agent_us:5.1f} us,"
                    f" runner {runner_us:5.1f} us"
                )
        print("agent CPU in the second after 500 calls back to back (% of a core):")
        for name, cmd in agents.items():
            print(f"  {name:8s} {idle_cpu(cmd, target, envs[name]):6.2f}")
        parts = breakdown(PY_AGENT, target, args.calls)
        print("one call, 1 caller, this agent (median us):")
        for name, value in parts.items():
            print(f"  {name:55s} {value:7.1f}")
        print("bare round trips, 1 caller (median us; agent CPU us per call):")
        me = [sys.executable, str(Path(__file__).resolve())]
        ladder: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "a Python process reading and writing (floor)": ([*me, "--serve", "echo"], None),
            "agent decode + Stat + encode, no mux": ([*me, "--serve", "work"], None),
            "this agent": (PY_AGENT, None),
        }
        if args.baseline_src:
            ladder["baseline agent"] = (PY_AGENT, envs["baseline"])
        if go:
            ladder["Go agent"] = (go, None)
        for name, (cmd, env) in ladder.items():
            trip, cpu = bare_trip(cmd, target, args.calls, env)
            print(f"  {name:55s} {trip:7.1f} ({cpu:5.1f})")
        return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
