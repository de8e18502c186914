"""Indexing on two cores: a forked helper process indexes the second half of the file.

Used by :class:`~reclab.model.scan.Index` for large files when
:attr:`IndexOptions.workers` allows it and a core is free (see
:func:`parallel_ok`). The helper is a fork of this process (no new
interpreter to start, nothing to import); it sends its index in pickled
segments through a pipe, which are merged in file order (see
:func:`scan_parallel`).

Forking a process that runs other threads is unsafe (a lock another thread
holds stays held in the child forever), so the helper is only forked from
the main thread of a process that has no other thread; anywhere else (the
TUI indexes from a worker thread) indexing runs in this process alone.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import queue
import threading
import time
from array import array
from typing import TYPE_CHECKING, Any

from agentproto import ExecMsg, RemoteProtocolError, TruncatedError
from agentproto.layout import FRAME_RECORD_PREFIX

from .types import Command, IndexOptions, ProgressCallback

if TYPE_CHECKING:
    from .scan import Index

__all__ = ["busy_cores", "fork_safe", "parallel_ok", "scan_parallel"]


def fork_safe() -> bool:
    """True when this thread may fork: the main thread, and no other thread running."""
    return threading.current_thread() is threading.main_thread() and threading.active_count() == 1


def busy_cores(samples: int = 3) -> float:
    """How many other tasks want a core right now (the mean of a few samples).

    Linux counts the runnable tasks at this instant in ``/proc/loadavg``
    (this one included); the 1-minute load average lags a minute behind and
    counts this process's own recent work, so it is the fallback only.
    """
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg", "rb") as fp:
                running = int(fp.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        counts.append(max(running - 1, 0))
        if i + 1 < samples:
            time.sleep(0.001)
    return sum(counts) / len(counts)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_ok(index: Index, total: int) -> bool:
    """True when a helper process should index part of the ``total`` bytes.

    Only for ``parallel_min_bytes`` or more still to index, from a thread
    that may fork; with ``workers`` None, also only when a second core is
    free: this process and the helper each need one, else the helper takes
    its time from this process and from the machine's other work.
    """
    options = index.options
    if total - index._end < options.parallel_min_bytes or options.workers == 1:
        return False
    if not hasattr(os, "fork") or not fork_safe():
        return False
    if options.workers is not None:
        return True
    return _cores() - busy_cores() >= 1.5


def scan_parallel(index: Index, fd: int, total: int, progress: ProgressCallback | None) -> None:
    """Index the second half of the unindexed bytes in a forked helper meanwhile.

    The second half starts at a *candidate* record boundary: the first
    frame-record head after the middle. It may be a coincidence inside a
    payload, so it is only trusted when this process, indexing the first
    half, lands exactly on it; otherwise the helper's work is dropped and
    indexing goes on here, sequentially. The helper sends its index in
    segments of about ``IndexOptions.segment`` bytes, each starting where the
    previous one ended; they are merged in order. Returns having indexed the
    first half and what the helper finished, or nothing when no candidate is
    found; the caller continues from ``index._end``.

    Waiting for the helper never costs more than one segment: the next
    segment is waited for only as long as indexing it here would take (at
    the rate this process had on the first half), or ``worker_wait`` seconds
    when set; then the helper is stopped and the rest indexed here.
    """
    options = index.options
    base = index._end
    middle = base + (total - base) // 2
    window = os.pread(fd, 1 << 20, middle)
    found = window.find(FRAME_RECORD_PREFIX)
    if found < 0:
        return
    split = middle + found
    pid, reader = _fork_helper(index, fd, split, total)
    if pid is None or reader is None:
        return
    segments: queue.Queue[Any] = queue.Queue()

    def pump() -> None:
        # Unpickle the helper's segments as they arrive; None marks its end.
        try:
            while True:
                segments.put(pickle.load(reader))
        except Exception:
            segments.put(None)

    pumper = threading.Thread(target=pump, name="reclab-index-pump", daemon=True)
    pumper.start()
    try:
        part: ProgressCallback | None = None
        if progress is not None:
            share = (total - base) / max(split - base, 1)

            def part(done: int, _total: int) -> None:
                progress(base + int((done - base) * share), total)

        started = time.perf_counter()
        # A record crossing the split looks cut: the candidate was not a boundary.
        with contextlib.suppress(TruncatedError):
            index._scan_items(fd, total, part, None, stop=split)
        if index._end != split:
            return  # the candidate was not a boundary (or trouble came first): go on alone
        rate = (split - base) / max(time.perf_counter() - started, 1e-6)  # bytes/s here
        while True:
            if options.worker_wait is not None:
                patience = options.worker_wait
            else:
                patience = min(options.segment, total - index._end) / rate
            try:
                state = segments.get(timeout=patience)
            except queue.Empty:
                return  # the helper lags (a busy machine): index the rest here
            if not isinstance(state, dict) or state.get("start") != index._end:
                return
            with index._state_lock:  # snapshots see whole segments
                _merge(index, state)
            if progress is not None:
                progress(index._end, total)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        pumper.join(5)  # the pipe is at its end now that the helper is gone
        if not pumper.is_alive():
            reader.close()


def _fork_helper(index: Index, fd: int, start: int, stop: int) -> tuple[int | None, Any]:
    """Fork a helper indexing ``start``..``stop``: its pid and the pipe to read it from."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None, None
    if pid == 0:  # the helper: never return into the caller's code
        code = 1
        try:
            os.close(r)
            # A collection would walk (and so copy) the parent's whole heap;
            # the helper's own garbage is small and it exits soon.
            gc.disable()
            with os.fdopen(w, "wb") as out:
                _index_part(index, fd, start, stop, out)
            code = 0
        except BaseException:  # the parent sees the pipe end and goes on alone
            pass
        finally:
            os._exit(code)
    os.close(w)
    return pid, os.fdopen(r, "rb")


def _index_part(parent: Index, fd: int, start: int, stop: int, out: Any) -> None:
    """Helper: index ``start``..``stop`` of the file in segments, pickled to ``out``.

    Each segment's index is sent as soon as it is done, so the parent can
    use what is finished and stop waiting for the rest.
    """
    from .scan import Index

    options = IndexOptions(bulk=parent.options.bulk, workers=1)
    segment = parent.options.segment
    pos = start
    while pos < stop:
        rec = Index(parent.path, lambda: fd, options)
        rec._widen(parent._typecode == "Q")
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
                "offsets": rec._offsets,
                "kinds": rec._kinds,
                "header": rec.header,
                "footer": rec.footer,
                "commands": list(rec.commands.values()),
            }
            pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
        if failed or rec._end == pos:
            break
        pos = rec._end


def _merge(index: Index, state: dict[str, Any]) -> None:
    """Append the index of the following bytes, made by a helper process."""
    import numpy as np

    shift = len(index._offsets)
    index._offsets.extend(state["offsets"])  # same width: see Index._widen
    index._kinds.extend(state["kinds"])
    if index.header is None:
        index.header = state["header"]
    if state["footer"] is not None:
        index.footer = state["footer"]
    for b in state["commands"]:
        if shift:
            code = b.record_indexes.typecode
            moved = np.frombuffer(b.record_indexes, dtype=code) + np.array(shift, dtype=code)
            b.record_indexes = array(code, moved.tobytes())
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
