"""Indexing on two cores: a helper process indexes the second half of the file.

Used by :class:`~reclab.model.scan.Index` for large files when
:attr:`IndexOptions.workers` allows it. The helper is this very package run
with ``sys.executable``; it sends its index in pickled segments on its
stdout, which are merged in file order (see :func:`scan_parallel`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentproto import ExecMsg, RemoteProtocolError, TruncatedError
from agentproto.layout import FRAME_RECORD_PREFIX

from .types import Command, IndexOptions, ProgressCallback

if TYPE_CHECKING:
    from .scan import Index

__all__ = ["index_worker", "parallel_ok", "scan_parallel"]


def parallel_ok(index: Index, total: int) -> bool:
    """True when a helper process should index part of the ``total`` bytes."""
    options = index.options
    if total - index._end < options.parallel_min_bytes or options.workers == 1:
        return False
    if options.workers is not None:
        return True
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cpus >= 2


def scan_parallel(index: Index, fd: int, total: int, progress: ProgressCallback | None) -> None:
    """Index the second half of the unindexed bytes in a helper process meanwhile.

    The second half starts at a *candidate* record boundary: the first
    frame-record head after the middle. It may be a coincidence inside a
    payload, so it is only trusted when this process, indexing the first
    half, lands exactly on it; otherwise the helper's work is dropped and
    indexing goes on here, sequentially. The helper sends its index in
    segments of about ``IndexOptions.segment`` bytes, each starting where the previous
    one ended; they are merged in order. Returns having indexed the
    first half and what the helper finished, or nothing when no
    candidate is found; the caller continues from ``index._end``.
    """
    options = index.options
    wait_bytes = options.wait_bytes if options.wait_bytes is not None else 2 * options.segment
    base = index._end
    middle = base + (total - base) // 2
    window = os.pread(fd, 1 << 20, middle)
    found = window.find(FRAME_RECORD_PREFIX)
    if found < 0:
        return
    split = middle + found
    try:
        # the directory holding this very reclab, so that the helper imports it
        here = str(Path(__file__).resolve().parent.parent.parent)
        paths = [here, *filter(None, [os.environ.get("PYTHONPATH")])]
        helper = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER_CODE,
                os.fspath(index.path),
                str(split),
                str(total),
                str(index.options.segment),
                str(int(index.options.bulk)),
            ],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return
    segments: queue.Queue[Any] = queue.Queue()

    def pump(stdout: Any) -> None:
        # Unpickle the helper's segments as they arrive; None marks its end.
        try:
            while True:
                segments.put(pickle.load(stdout))
        except Exception:
            segments.put(None)

    threading.Thread(
        target=pump, args=(helper.stdout,), name="reclab-index-pump", daemon=True
    ).start()
    try:
        part: ProgressCallback | None = None
        if progress is not None:
            share = (total - base) / max(split - base, 1)

            def part(done: int, _total: int) -> None:
                progress(base + int((done - base) * share), total)

        # A record crossing the split looks cut: the candidate was not a boundary.
        with contextlib.suppress(TruncatedError):
            index._scan_items(fd, total, part, None, stop=split)
        if index._end != split:
            return  # the candidate was not a boundary (or trouble came first): go on alone
        # Take the helper's segments as they come. When it lags behind (a
        # busy machine), do not wait for it: index the rest here instead.
        while True:
            left = total - index._end
            try:
                state = segments.get(timeout=options.worker_wait if left <= wait_bytes else 0.01)
            except queue.Empty:
                return
            if not isinstance(state, dict) or state.get("start") != index._end:
                return
            with index._state_lock:  # snapshots see whole segments
                _merge(index, state)
            if progress is not None:
                progress(index._end, total)
    finally:
        if helper.poll() is None:
            helper.kill()
        helper.wait()
        if helper.stdout is not None:
            helper.stdout.close()


def _merge(index: Index, state: dict[str, Any]) -> None:
    """Append the index of the following bytes, made by a helper process."""
    import numpy as np

    shift = len(index._offsets)
    index._offsets.frombytes(state["offsets"])
    index._kinds.frombytes(state["kinds"])
    if index.header is None:
        index.header = state["header"]
    if state["footer"] is not None:
        index.footer = state["footer"]
    for b in state["commands"]:
        if shift:
            moved = np.frombuffer(b.record_indexes, dtype=np.uint64) + np.uint64(shift)
            b.record_indexes = array("Q", moved.tobytes())
            if b.start_index is not None:
                b.start_index += shift
            if b.end_index is not None:
                b.end_index += shift
        a = index.commands.get(b.seq)
        if a is None:
            index.commands[b.seq] = b
            index._sorted = False
            continue
        _merge_command(a, b)
    # A cut or garbage the helper met is found again, at once, by the
    # sequential scan that continues from here. (_end first: see Index.)
    index._end = state["end"]
    index.record_count = len(index._offsets)


def _merge_command(a: Command, b: Command) -> None:
    """Fold ``b`` (the same command, seen in the following bytes) into ``a``.

    The result is what one sequential pass would have built: later start
    and end records win, as do later exec frames of a command with no start.
    """
    if b.start_index is not None:
        a.exec, a.start_time, a.start_index = b.exec, b.start_time, b.start_index
    elif a.start_index is None and b.exec != ExecMsg():
        a.exec = b.exec
    if b.end_index is not None:
        a.end_time, a.exit_code, a.end_index = b.end_time, b.exit_code, b.end_index
    if b.exit_frame_code is not None:
        a.exit_frame_code = b.exit_frame_code
    if a.first_frame_time is None:
        a.first_frame_time = b.first_frame_time
    if b.last_frame_time is not None:
        a.last_frame_time = b.last_frame_time
    a.frame_count += b.frame_count
    for mine, theirs in ((a.bytes_sent, b.bytes_sent), (a.bytes_received, b.bytes_received)):
        for stream, n in theirs.items():
            mine[stream] = mine.get(stream, 0) + n
    a.signals.extend(b.signals)
    a.errors.extend(b.errors)
    a.log_count += b.log_count
    a.file_op_count += b.file_op_count
    a.record_indexes.extend(b.record_indexes)


_WORKER_CODE = "from reclab.model.parallel import index_worker; index_worker()"


def _constant(fd: int) -> Callable[[], int]:
    return lambda: fd


def index_worker() -> None:
    """Helper-process entry: index ``argv[2]``..``argv[3]`` of ``argv[1]`` in segments.

    ``argv[4]`` is the segment size in bytes, ``argv[5]`` 1 for the bulk scan.

    Each segment's index is pickled to stdout as soon as it is done, so the
    parent can use what is finished and stop waiting for the rest.
    """
    from .scan import Index

    path, start, stop, segment = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    options = IndexOptions(bulk=sys.argv[5] == "1", workers=1)
    out = sys.stdout.buffer
    pos = start
    while pos < stop:
        fd = os.open(path, os.O_RDONLY)
        rec = Index(path, _constant(fd), options)
        rec._end = pos
        failed = False
        size = segment
        while True:
            end = min(pos + size, stop)
            try:
                rec._scan_items(fd, stop, None, None, stop=end)
            except TruncatedError:
                pass  # a record crossing the segment's end: the next segment starts there
            except RemoteProtocolError:
                failed = True  # garbage: the parent finds it again and reports it
            if rec._end > pos or failed or end == stop:
                break
            size *= 4  # a record larger than a segment
        if rec._end > pos:
            state = {
                "start": pos,
                "end": rec._end,
                "offsets": rec._offsets.tobytes(),
                "kinds": rec._kinds.tobytes(),
                "header": rec.header,
                "footer": rec.footer,
                "commands": list(rec.commands.values()),
            }
            pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        os.close(fd)
        if failed or rec._end == pos:
            break
        pos = rec._end
