"""Wait for the next request awake: a short, bounded poll before a read that would block.

An agent answering RPCs one at a time sleeps in ``read(2)`` between them;
waking it costs more than the answer (the scheduler's wake-up, then caches
gone cold: decode, Stat and encode take three times longer right after a
wake-up). Go's runtime avoids part of that by spinning a little before it
parks a thread. :class:`Spinner` does the same for one descriptor: before a
read that would block, it polls the descriptor (``poll(2)`` with no timeout)
for at most :data:`SPIN_BUDGET` seconds, and only reads once something is
there, or the budget is spent.

It spins only when that can pay and costs nobody else:

- requests come back to back: the previous one arrived within the budget
  (an idle connection, or one that sends now and then, never spins: the first
  long wait turns spinning off until a request comes quickly again);
- a core is spare: fewer other tasks are runnable than this process may use
  cores, minus the one it would spin on (``/proc/loadavg``'s count of
  runnable tasks, averaged over checks ``CHECK_INTERVAL`` apart; no such file,
  no spinning), so it never takes a core from the runner or anyone else;
- this process runs one thread: a spinning thread would hold up the others
  (the GIL);
- nobody took the core from it: a thread preempted since the last look
  (``getrusage``'s involuntary context switches) shares its core with
  someone who wants it, whatever the load average says (tasks that wake
  now and then); it then stops spinning for ``BACK_OFF`` seconds.

The cost is bounded: at most ``SPIN_BUDGET`` of CPU per request received,
none while idle. A peer sending a request just inside the budget every time
keeps one core busy while it does so (as it would with a blocking read at
that rate, nearly). Nothing else changes: the read that follows is the same
blocking read (end of file, errors, limits as before), and signals are
handled as soon as they arrive (the poll loop runs Python code between
polls).
"""

from __future__ import annotations

import os
import resource
import select
import threading
import time

__all__ = ["BACK_OFF", "CHECK_INTERVAL", "SPIN_BUDGET", "Spinner", "other_runnable_tasks"]

SPIN_BUDGET = 150e-6
"""Seconds polled at most before a blocking read (covers a Python runner's turn-around)."""

CHECK_INTERVAL = 0.02
"""Seconds between two looks at the machine's load while requests come back to back."""

BACK_OFF = 1.0
"""Seconds without spinning after the spinning thread was preempted."""

_LOAD_SMOOTHING = 0.25  # weight of the newest look in the load average (about 80 ms of them)


def other_runnable_tasks() -> int | None:
    """How many other tasks are runnable right now (Linux ``/proc/loadavg``); None if unknown."""
    try:
        with open("/proc/loadavg", "rb") as fp:
            running = int(fp.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(running - 1, 0)  # this task is one of them


_RUSAGE = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)


def preemptions() -> int:
    """Involuntary context switches of this thread so far (this process's where unknown)."""
    return resource.getrusage(_RUSAGE).ru_nivcsw


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Spinner:
    """Poll ``fd`` for a short while before a read that would block (see the module docs).

    The reader calls :meth:`wait` before such a read and :meth:`done` after
    it returns. ``budget`` defaults to :data:`SPIN_BUDGET`. ``spins`` and
    ``hits`` count the waits that polled and those that saw data come while
    polling.
    """

    def __init__(self, fd: int, budget: float | None = None):
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)
        self.budget = SPIN_BUDGET if budget is None else budget
        self._cores = _cores()
        self._hot = False  # the last request came within the budget
        self._spare = False  # a core was spare at the last look
        self._load: float | None = None  # other runnable tasks, smoothed
        self._next_check = 0.0
        self._preempted = -1  # preemptions() at the last look
        self._start = 0.0
        self.spins = 0
        self.hits = 0

    def wait(self) -> None:
        """Before a read that may block: poll for up to the budget if that can pay."""
        clock = time.perf_counter
        now = self._start = clock()
        if not self._hot:
            return
        if now >= self._next_check:
            self._spare = self._core_is_spare()
            self._next_check = now + (CHECK_INTERVAL if self._spare else BACK_OFF)
        if not self._spare:
            return
        self.spins += 1
        deadline = now + self.budget
        poll = self._poller.poll
        while not poll(0):
            if clock() >= deadline:
                return
        self.hits += 1

    def done(self) -> None:
        """After the read: spin before the next one only if this one's data came quickly."""
        self._hot = time.perf_counter() - self._start <= self.budget

    def _core_is_spare(self) -> bool:
        if self._cores < 2 or threading.active_count() != 1:
            return False
        preempted, self._preempted = self._preempted, preemptions()
        if preempted >= 0 and self._preempted > preempted:
            return False  # someone else wanted this core meanwhile
        others = other_runnable_tasks()
        if others is None:
            return False
        load = self._load
        self._load = load = others if load is None else load + _LOAD_SMOOTHING * (others - load)
        # one core for this process besides the others' (half a task of slack: a look
        # often falls on a runner's thread just woken by our answer)
        return load <= self._cores - 0.5
