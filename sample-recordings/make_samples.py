"""Regenerate every sample recording in this directory.

    python sample-recordings/make_samples.py [--out DIR] [--only NAME ...]

Most samples are made with ``reclab run`` exactly as README.md shows (the
command line is printed before each one runs); the file-op and PATH-query
sessions use the Python runner API, since no CLI command makes RPCs; the
cut-off sample is a real recording truncated in the middle of a record.
Every sample is checked after it is written (it must read back, and be
under 1 MB).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agentproto import (
    ExecMsg,
    FileOp,
    FileOpReq,
    RecordType,
    TruncatedError,
    read_recording,
)
from agentproto.recording import RecordingReader
from reclab.runner import DEFAULT_AGENT, RecordedSession

HERE = Path(__file__).resolve().parent
MAX_SIZE = 1_000_000
TIMEOUT = 120

FAILING_BUILD = (
    'echo "cc -O2 -Wall -c -o parser.o parser.c"; '
    'echo "cc -O2 -Wall -c -o main.o main.c"; '
    'echo "main.c:42:9: error: implicit declaration of function parse_args" >&2; '
    'echo "main.c:57:1: warning: control reaches end of non-void function" >&2; '
    'echo "make: *** [Makefile:12: main.o] Error 1" >&2; '
    "exit 2"
)

STDIN_TEXT = b"alpha beta\ngamma\ndelta epsilon zeta\n"


def reclab_argv() -> list[str]:
    """How to start reclab here: the console script if installed, else through Python."""
    found = shutil.which("reclab")
    if found:
        return [found]
    return [sys.executable, "-c", "from reclab.cli import main; main()"]


def show(argv: list[str], *, stdin: str | None = None, suffix: str = "") -> None:
    line = shlex.join(["reclab", *argv])
    if stdin is not None:
        line = f"{stdin} | {line}"
    print(f"$ {line}{suffix}", flush=True)


def run_reclab(
    argv: list[str],
    out: Path,
    *,
    input: bytes | None = None,
    check_code: int = 0,
    stdin_shown: str | None = None,
    redirects: str = "",
) -> None:
    """Run ``reclab ARGV`` (as shown in the README) and check its exit code."""
    show(argv, stdin=stdin_shown, suffix=f" {redirects}" if redirects else "")
    cmd = [*reclab_argv(), *argv]
    if redirects:
        # let a shell open the extra descriptors, exactly as the README line does
        cmd = ["sh", "-c", f'exec "$@" {redirects}', "sh", *cmd]
    result = subprocess.run(
        cmd,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        cwd=out,
    )
    if result.returncode != check_code:
        raise SystemExit(
            f"{shlex.join(argv)}: exit {result.returncode}, expected {check_code}\n"
            + result.stderr.decode(errors="replace")
        )


# --- the samples made with `reclab run` ----------------------------------------------------


def quick(out: Path) -> None:
    run_reclab(["run", "-o", "quick.cbor", "--", "echo", "hello, world"], out)


def failing_build(out: Path) -> None:
    run_reclab(
        ["run", "-o", "failing-build.cbor", "--", "sh", "-c", FAILING_BUILD], out, check_code=2
    )


def stdin_pipe(out: Path) -> None:
    run_reclab(
        ["run", "-o", "stdin-wc.cbor", "--", "wc"],
        out,
        input=STDIN_TEXT,
        stdin_shown="printf 'alpha beta\\ngamma\\ndelta epsilon zeta\\n'",
    )


def signal_sample(out: Path) -> None:
    argv = ["run", "-o", "signal.cbor", "--", "sleep", "30"]
    show(argv, suffix="   # then Ctrl-C (SIGINT) once the command runs")
    target = out / "signal.cbor"
    # an old recording would look "started" at once and the signal would hit reclab
    # while it is still starting up
    target.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [*reclab_argv(), *argv],
        cwd=out,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_started(target)
        proc.send_signal(signal.SIGINT)
        proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 130:
        raise SystemExit(f"signal sample: exit {proc.returncode}, expected 130")


def _wait_until_started(path: Path) -> None:
    """Poll the growing recording until the agent's 'started' log frame is in it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            records = read_recording(path)
        except TruncatedError as exc:
            records = exc.records  # type: ignore[assignment]
        except (OSError, ValueError):
            records = []
        for record in records:
            frame = record.frame
            log = frame.frame.log if frame is not None else None
            if log is not None and log.msg.startswith("started"):
                return
        time.sleep(0.05)
    raise SystemExit(f"{path}: the command never started")


def concurrent(out: Path) -> None:
    script = out / "concurrent.txt"
    script.write_text(CONCURRENT_SCRIPT)
    run_reclab(
        ["run", "-o", "concurrent.cbor", "--parallel", "--script", "concurrent.txt"],
        out,
        check_code=3,
    )


CONCURRENT_SCRIPT = """\
# three commands at once: their frames interleave in the recording
sh -c 'for i in 1 2 3 4 5; do echo "compile unit $i"; sleep 0.1; done'
sh -c 'for i in 1 2 3; do echo "test batch $i"; sleep 0.15; done; echo "1 test failed" >&2; exit 3'
sh -c 'sleep 0.05; for i in 1 2 3 4; do echo "lint file $i"; sleep 0.12; done'
"""


def extra_fds(out: Path) -> None:
    body = (
        "echo building; "
        'for step in 1 2 3; do echo "progress $step/3" >&3; done; '
        "echo artifact=app.tar size=1024 >&4; "
        "echo done"
    )
    run_reclab(
        ["run", "-o", "extra-fds.cbor", "--fd", "3", "--fd", "4", "--", "sh", "-c", body],
        out,
        redirects="3>/dev/null 4>/dev/null",
    )


def agent_logs(out: Path) -> None:
    script = out / "agent-logs.txt"
    script.write_text(AGENT_LOGS_SCRIPT)
    run_reclab(
        [
            "run",
            "-o",
            "agent-logs.cbor",
            "--agent-log-level",
            "debug",
            "--env-keep",
            "PATH",
            "--env-keep",
            "/[unclosed/",
            "--script",
            "agent-logs.txt",
        ],
        out,
        check_code=127,
    )


AGENT_LOGS_SCRIPT = """\
# run with --agent-log-level debug and a bad --env-keep pattern (a WARN log and a FrameError)
echo the agent logs every start and exit
no-such-program --version
sh -c 'echo "about to fail" >&2; exit 1'
"""


# --- the samples made with the runner API ------------------------------------------------------


def fileops(out: Path) -> None:
    """A session with every file op (and errors), confined to a scratch tree with --root."""
    print("$ python make_samples.py --only fileops   # runner API: all 25 file ops", flush=True)
    with tempfile.TemporaryDirectory(prefix="reclab-fileops-") as scratch:
        root = Path(scratch)
        (root / "src").mkdir()
        (root / "src/main.c").write_text("int main(void) { return 0; }\n")
        (root / "README").write_text("sample tree\n" * 20)
        agent = [*DEFAULT_AGENT, "--root", str(root)]
        with RecordedSession(out / "fileops.cbor", agent=agent) as session:
            command = session.command(
                ExecMsg(path="cat", argv=["cat"]),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            command.start()
            _all_file_ops(command.file_op)
            command.close_stdin()
            command.wait(TIMEOUT)


def _all_file_ops(call: Callable[[FileOpReq], object]) -> None:
    seen: set[int] = set()

    def op(kind: FileOp, expect: int = 0, **fields: object) -> object:
        resp = call(FileOpReq(op=kind, **fields))  # type: ignore[arg-type]
        got = getattr(resp, "errno", -1)
        if got != expect:
            raise SystemExit(f"fileops sample: op {kind} {fields}: errno {got}, expected {expect}")
        seen.add(int(kind))
        return resp

    op(FileOp.GETWD)
    op(FileOp.STATFS, path=".")
    op(FileOp.READ_DIR, path=".")
    op(FileOp.MKDIR, path="build", mode=0o755)
    op(FileOp.MKDIR_ALL, path="build/obj/x86_64", mode=0o755)
    h = op(FileOp.CREATE, path="build/obj/main.o").handle  # type: ignore[attr-defined]
    op(FileOp.WRITE_AT, handle=h, offset=0, data=b"\x7fELF" + bytes(60))
    op(FileOp.WRITE_AT, handle=h, offset=64, data=b"section data " * 8)
    op(FileOp.FSYNC, handle=h)
    op(FileOp.FSTAT, handle=h)
    op(FileOp.FTRUNCATE, handle=h, size=100)
    op(FileOp.CLOSE, handle=h)
    h = op(FileOp.OPEN, path="README", flags=os.O_RDONLY).handle  # type: ignore[attr-defined]
    op(FileOp.READ_AT, handle=h, offset=0, size=48)
    op(FileOp.READ_AT, handle=h, offset=200, size=4096)  # reaches the end: eof
    # several RPCs in flight at once, answered by id
    threads = [
        threading.Thread(
            target=op, args=(FileOp.READ_AT,), kwargs={"handle": h, "offset": 12 * i, "size": 12}
        )
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    op(FileOp.CLOSE, handle=h)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    h = op(FileOp.OPEN_FILE, path="build/config.h", flags=flags, mode=0o640).handle  # type: ignore[attr-defined]
    op(FileOp.WRITE_AT, handle=h, data=b"#define DEBUG 1\n")
    op(FileOp.CLOSE, handle=h)
    op(FileOp.STAT, path="src/main.c")
    op(FileOp.SYMLINK, path="obj/main.o", new_path="build/latest.o")
    op(FileOp.LSTAT, path="build/latest.o")
    op(FileOp.READLINK, path="build/latest.o")
    op(FileOp.LINK, path="src/main.c", new_path="build/main.c")
    op(FileOp.RENAME, path="build/config.h", new_path="build/config-debug.h")
    op(FileOp.CHMOD, path="build/config-debug.h", mode=0o600)
    op(FileOp.CHOWN, path="build/config-debug.h", uid=os.getuid(), gid=os.getgid())
    op(
        FileOp.CHTIMES,
        path="build/config-debug.h",
        atime_nanos=1_700_000_000_000_000_000,
        mtime_nanos=1_700_000_000_000_000_000,
    )
    op(FileOp.TRUNCATE, path="build/config-debug.h", size=8)
    op(FileOp.READ_DIR, path="build")
    op(FileOp.REMOVE, path="build/main.c")
    # the errors a client must map back to os.Err* sentinels
    op(FileOp.STAT, expect=errno.ENOENT, path="src/missing.c")
    op(FileOp.READ_AT, expect=errno.EBADF, handle=4242, size=10)
    op(FileOp.MKDIR, expect=errno.EEXIST, path="build")
    op(FileOp.STAT, expect=errno.ENOTDIR, path="README/x")
    op(FileOp.OPEN, expect=errno.EISDIR, path="src", flags=os.O_WRONLY)
    op(FileOp.REMOVE, expect=errno.ENOTEMPTY, path="build")
    op(FileOp.READLINK, expect=errno.EINVAL, path="README")
    op(FileOp.STAT, expect=errno.EACCES, path="../etc/passwd")  # outside --root
    op(99, expect=errno.ENOSYS)  # type: ignore[arg-type]
    missing = {int(k) for k in FileOp} - seen
    if missing:
        raise SystemExit(f"fileops sample misses ops {sorted(missing)}")


def path_query(out: Path) -> None:
    """PATH queries: explicit directories (first one wins) and the agent's own $PATH."""
    print("$ python make_samples.py --only path-query   # runner API: PATH queries", flush=True)
    with tempfile.TemporaryDirectory(prefix="reclab-path-") as scratch:
        base = Path(scratch)
        dirs = [base / "usr-local-bin", base / "usr-bin", base / "missing"]
        for d in dirs[:2]:
            d.mkdir()
        _tool(dirs[0] / "python3", "#!/bin/sh\necho local python\n")
        _tool(dirs[0] / "make", "#!/bin/sh\n")
        _tool(dirs[1] / "python3", "#!/bin/sh\necho system python\n")  # shadowed
        _tool(dirs[1] / "cc", "#!/bin/sh\n")
        _tool(dirs[1] / "ld", "#!/bin/sh\n")
        (dirs[1] / "notes.txt").write_text("not executable\n")
        os.symlink("cc", dirs[1] / "gcc")
        agent_env = {**os.environ, "PATH": os.pathsep.join(str(d) for d in dirs[:2])}
        with RecordedSession(out / "path-query.cbor", agent_env=agent_env) as session:
            command = session.command(
                ExecMsg(path="/bin/cat", argv=["cat"]),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            command.start()
            info = command.path_query([str(d) for d in dirs])
            names = [e.name for e in info.entries or []]
            if names != ["make", "python3", "cc", "gcc", "ld"]:
                raise SystemExit(f"path-query sample: unexpected entries {names}")
            command.path_query(None)  # the agent's own $PATH
            command.close_stdin()
            command.wait(TIMEOUT)


def _tool(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def cut_off(out: Path) -> None:
    """A crashed writer: the concurrent session cut in the middle of a record."""
    print(
        "$ python make_samples.py --only cut-off   # concurrent.cbor cut inside a record",
        flush=True,
    )
    source = out / "concurrent.cbor"
    if not source.exists():
        concurrent(out)
    offsets = [offset for offset, _ in RecordingReader(source).raw_items()]
    middle = offsets[len(offsets) // 2]
    data = source.read_bytes()
    size = offsets[len(offsets) // 2 + 1] - middle
    (out / "cut-off.cbor").write_bytes(data[: middle + size // 2])


SAMPLES: dict[str, Callable[[Path], None]] = {
    "quick": quick,
    "failing-build": failing_build,
    "stdin-wc": stdin_pipe,
    "signal": signal_sample,
    "concurrent": concurrent,
    "extra-fds": extra_fds,
    "agent-logs": agent_logs,
    "fileops": fileops,
    "path-query": path_query,
    "cut-off": cut_off,
}


def check(path: Path) -> str:
    """Read a sample back; a one-line summary (or SystemExit when it is wrong)."""
    size = path.stat().st_size
    if size >= MAX_SIZE:
        raise SystemExit(f"{path.name}: {size} bytes, over the 1 MB budget")
    try:
        records = read_recording(path)
        cut = ""
    except TruncatedError as exc:
        records = exc.records  # type: ignore[assignment]
        cut = f", cut at byte {exc.offset}"
    kinds: dict[str, int] = {}
    for record in records:
        name = RecordType(record.type).name.lower()
        kinds[name] = kinds.get(name, 0) + 1
    return f"{path.name}: {size} bytes, {len(records)} records ({kinds}){cut}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: here)")
    parser.add_argument("--only", nargs="*", choices=sorted(SAMPLES), help="make only these")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in args.only or SAMPLES:
        SAMPLES[name](out)
        print("  ->", check(out / f"{name}.cbor"), flush=True)


if __name__ == "__main__":
    main()
