"""Mux and agent throughput, against baselines measured in the same run.

    python benchmarks/mux.py [--size MiB] [--repeat N] [--calls N]

Figures (best of ``--repeat`` runs each):

- stdout throughput: a child writing ``--size`` MiB of zeros, read at the
  runner through the agent and the mux, against the same child read straight
  from a pipe by Python (the raw-pipe baseline);
- recording cost: the same agent run with a Recorder on the runner's mux,
  as a ratio to the run without; written to tmpfs (``/dev/shm``) and to the
  temporary directory. At full speed the pipeline is CPU-bound, so this ratio
  is the recorder's CPU over the pipeline's; the CPU per GB of each process
  and the kernel's cost of writing a file (the floor for any recorder) are
  printed to read it against;
- recording cost at a set pace: a child writing ``--pace`` GB/s (the
  throughput target by default), with and without recording: what a command
  that is not CPU-bound feels;
- stdin throughput: the runner sending ``--size`` MiB to ``cat > /dev/null``
  through the agent;
- file-op RPCs per second against the agent (Stat of one file), with 1 and
  16 caller threads.

Targets: stdout >= 0.5 GB/s, recording costs < 10%.

The agent is started and serving before each clock starts: a Python
interpreter's start-up is not part of a stream's throughput.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from targets import Targets

from agentproto import ExecMsg, FileOp, FileOpReq, Frame, FrameType, Mux, Recorder

AGENT = [sys.executable, "-m", "agentproto.agent", "--log-level", "warning"]
CPU: dict[bool, list[tuple[float, float]]] = {False: [], True: []}  # recording -> (runner, agent)
PACED_CPU: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
CHUNK = 256 * 1024
# A child writing N bytes of zeros in 1 MiB writes at a set rate (bytes/s).
PACED_CHILD = """
import os, sys, time
size, rate = int(sys.argv[1]), float(sys.argv[2])
chunk = memoryview(bytes(1 << 20))
start, sent = time.perf_counter(), 0
while sent < size:
    sent += os.write(1, chunk[: min(len(chunk), size - sent)])
    ahead = start + sent / rate - time.perf_counter()
    if ahead > 0:
        time.sleep(ahead)
"""


class Count:
    """A stream handler that only counts."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)

    def eof(self) -> None:
        pass


def raw_pipe(size: int) -> float:
    """Seconds to read ``size`` bytes of a child's stdout straight from the pipe."""
    start = time.perf_counter()
    proc = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = 0
    while chunk := os.read(fd, CHUNK):
        got += len(chunk)
    proc.wait()
    elapsed = time.perf_counter() - start
    assert got == size, got
    return elapsed


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_agent(
    size: int,
    record_dir: Path | None = None,
    child: list[str] | None = None,
    cpu: dict[bool, list[tuple[float, float]]] = CPU,
) -> float:
    """Seconds to receive ``size`` bytes of a child's stdout through the agent and the mux.

    The agent is started and answers one RPC before the clock starts: its
    interpreter start-up is not part of the stream. Also adds the CPU seconds
    used by the runner (this process) and by the agent with its child to
    ``cpu[record_dir is not None]``: CPU per byte barely moves when other work
    loads the machine, wall time does. ``child`` replaces ``head``.
    """
    proc = subprocess.Popen(AGENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    mux = Mux(proc.stdout, proc.stdin, side="runner")
    recorder = None
    if record_dir is not None:
        recorder = Recorder(record_dir / "bench.cbor")
        recorder.write_session_header()
    out = Count()
    mux.register_stream(1, out)
    mux.register_stream(2, Count())
    argv = child or ["head", "-c", str(size), "/dev/zero"]
    msg = ExecMsg(path=shutil.which(argv[0]) or argv[0], argv=argv, env=[])
    mux.start()
    mux.file_op(FileOpReq(op=FileOp.STAT, path="/"))  # the agent is up and serving
    if recorder is not None:
        mux.set_recorder(recorder, recorder.write_command_start(msg))
    agent_before = _cpu_seconds(proc.pid)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    mux.send(Frame(type=FrameType.EXEC, exec=msg))
    code = mux.wait()
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    mux.close()
    _, _, agent_usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    runner_cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    agent_cpu = agent_usage.ru_utime + agent_usage.ru_stime - agent_before
    cpu[record_dir is not None].append((runner_cpu, agent_cpu))
    if recorder is not None:
        recorder.close()
        (record_dir / "bench.cbor").unlink()  # type: ignore[operator]
    assert code == 0 and out.size == size, (code, out.size)
    return elapsed


def stdin_through_agent(size: int) -> float:
    """Seconds to send ``size`` bytes as stdin through the mux and agent to ``cat > /dev/null``."""
    proc = subprocess.Popen(AGENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    mux = Mux(proc.stdout, proc.stdin, side="runner")
    mux.register_stream(1, Count())
    mux.register_stream(2, Count())
    mux.start()
    mux.file_op(FileOpReq(op=FileOp.STAT, path="/"))  # the agent is up and serving
    chunk = bytes(CHUNK)
    msg = ExecMsg(path="/bin/sh", argv=["sh", "-c", "cat > /dev/null"])
    start = time.perf_counter()
    mux.send(Frame(type=FrameType.EXEC, exec=msg))
    for _ in range(size // len(chunk)):
        mux.send_data(0, chunk)
    mux.send_eof(0)
    code = mux.wait()
    elapsed = time.perf_counter() - start
    mux.close()
    proc.wait(30)
    assert code == 0, code
    return elapsed


def file_op_rate(calls: int, threads: int, tmp: Path) -> float:
    """File-op RPCs per second (Stat) against the agent with ``threads`` callers."""
    target = tmp / "stat-me"
    target.write_bytes(b"x")
    proc = subprocess.Popen(AGENT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    mux = Mux(proc.stdout, proc.stdin, side="runner")
    mux.start()
    mux.file_op(FileOpReq(op=FileOp.STAT, path=str(target)))  # warm up (lazy server import)
    per_thread = calls // threads

    def work() -> None:
        req = FileOpReq(op=FileOp.STAT, path=str(target))
        for _ in range(per_thread):
            resp = mux.file_op(req)
            assert resp.errno == 0 and resp.stat is not None and resp.stat.size == 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    mux.close()
    proc.wait(30)
    return per_thread * threads / elapsed


def file_write_floor(size: int, directory: Path) -> float:
    """CPU seconds to write ``size`` bytes to a file in ``directory``, 256 KiB a call.

    Any recorder must at least copy the stream into the page cache once: this
    is that floor, to read the recording cost against.
    """
    chunk = os.urandom(256 * 1024)
    path = directory / "floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    start = time.process_time()
    try:
        for _ in range(size // len(chunk)):
            os.write(fd, chunk)
    finally:
        os.close(fd)
        path.unlink()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB per throughput run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument("--calls", type=int, default=8000, help="file-op calls per rate run")
    parser.add_argument("--pace", type=float, default=0.5, help="GB/s of the paced child")
    args = parser.parse_args()
    targets = Targets()
    size = args.size * 1024 * 1024
    gb = size / 1e9
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        shm = Path("/dev/shm")
        mem_dir = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else None
        try:
            # interleaved, so a burst of load from elsewhere hits every variant alike
            raw, agent, recorded, in_memory = [], [], [], []
            for _ in range(args.repeat):
                raw.append(raw_pipe(size))
                agent.append(through_agent(size))
                recorded.append(through_agent(size, tmp))
                if mem_dir is not None:
                    in_memory.append(through_agent(size, mem_dir))
            stdin = [stdin_through_agent(size) for _ in range(args.repeat)]
            paced_child = [sys.executable, "-c", PACED_CHILD, str(size), str(args.pace * 1e9)]
            paced: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeat):
                for recording in (False, True):
                    paced[recording].append(
                        through_agent(size, tmp if recording else None, paced_child, PACED_CPU)
                    )
        finally:
            if mem_dir is not None:
                mem_dir.rmdir()
        floor = min(file_write_floor(size, tmp) for _ in range(args.repeat))
        rpc1 = max(file_op_rate(args.calls, 1, tmp) for _ in range(args.repeat))
        rpc16 = max(file_op_rate(args.calls, 16, tmp) for _ in range(args.repeat))
    t_raw, t_agent = min(raw), min(agent)
    print(f"stdout, {args.size} MiB, best of {args.repeat}:")
    print(f"  raw pipe (python reading head's stdout)  {gb / t_raw:6.2f} GB/s")
    print(
        f"  agent + mux                              {gb / t_agent:6.2f} GB/s"
        f"  ({t_raw / t_agent:.2f} x the raw pipe's rate)"
    )
    targets.check("stdout through agent + mux", gb / t_agent, at_least=0.5, unit=" GB/s")
    for label, times in (("recording to tmpfs ", in_memory), ("recording to tempdir", recorded)):
        if times:
            t = min(times)
            print(f"  agent + mux, {label}        {gb / t:6.2f} GB/s")
            targets.check(
                f"time recording to {label.strip()} adds",
                100 * (t / t_agent - 1),
                at_most=10,
                unit="%",
            )
    for recording in (False, True):
        runs = CPU[recording]
        runner = min(r for r, _ in runs) / gb
        agent_cpu = min(a for _, a in runs) / gb
        label = "with recording" if recording else "no recording  "
        print(
            f"  CPU per GB, {label}  runner {runner:.2f} s, agent+child {agent_cpu:.2f} s,"
            f" total {runner + agent_cpu:.2f} s"
        )
    base = min(r + a for r, a in CPU[False])
    extra = min(r + a for r, a in CPU[True]) - base
    print(f"  recording adds {100 * extra / base:+.1f}% CPU to the whole pipeline")
    print(
        f"  floor: writing the bytes once to a file costs {floor / gb:.2f} CPU s/GB"
        f" ({100 * floor / base:.0f}% of the unrecorded pipeline's CPU); recording adds"
        f" {(extra - floor) / gb:+.2f} s/GB above it"
    )
    print(f"stdin (runner -> agent -> cat), {args.size} MiB, best of {args.repeat}:")
    print(f"  agent + mux                              {gb / min(stdin):6.2f} GB/s")
    t_off, t_on = min(paced[False]), min(paced[True])
    print(f"stdout paced at {args.pace:g} GB/s by the child, best of {args.repeat}:")
    print(f"  no recording {gb / t_off:.2f} GB/s, recording to tempdir {gb / t_on:.2f} GB/s")
    targets.check(
        "time recording adds at a paced rate", 100 * (t_on / t_off - 1), at_most=10, unit="%"
    )
    off_cpu = min(r for r, _ in PACED_CPU[False]) / gb
    on_cpu = min(r for r, _ in PACED_CPU[True]) / gb
    print(f"  runner CPU per GB {off_cpu:.2f} s without recording, {on_cpu:.2f} s with")
    print(f"file-op RPCs (Stat) against the agent, {args.calls} calls:")
    print(f"  1 caller thread    {rpc1:8.0f} calls/s")
    print(f"  16 caller threads  {rpc16:8.0f} calls/s  ({rpc16 / rpc1:.2f}x one thread)")
    return targets.verdict()


if __name__ == "__main__":
    sys.exit(main())
