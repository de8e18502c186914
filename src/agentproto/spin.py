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
- this process runs one thread on a machine of two cores or more: a
  spinning thread would hold up the others (the GIL), and on one core it
  would hold up the peer;
- nobody else wants its core: while it spins, the thread looks every
  ``CHECK_INTERVAL`` at how long it waited for a CPU (the kernel's
  ``/proc/thread-self/schedstat``) against how long it ran. A thread that
  waited more than ``MAX_WAIT_SHARE`` of that time shares its core with
  someone who wants it (other work, a runner whose threads have no core of
  their own, tasks that wake now and then), and stops spinning for
  ``BACK_OFF`` seconds. Without that file it never spins. (The load
  average cannot tell: sampled right after an answer, it counts the
  runner's threads that the answer just woke.)

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
import select
import threading
import time

__all__ = [
    "BACK_OFF",
    "CHECK_INTERVAL",
    "MAX_WAIT_SHARE",
    "SPIN_BUDGET",
    "Spinner",
    "cpu_times",
]

SPIN_BUDGET = 150e-6
"""Seconds polled at most before a blocking read (covers a Python runner's turn-around)."""

CHECK_INTERVAL = 0.02
"""Seconds between two looks at this thread's waits for a CPU while it spins."""

MAX_WAIT_SHARE = 0.05
"""The share of its time wanting a CPU that a spinning thread may spend waiting for one."""

BACK_OFF = 1.0
"""Seconds without spinning after the thread waited for a CPU (someone else wants it)."""

_SCHEDSTAT = "/proc/thread-self/schedstat"


def cpu_times() -> tuple[int, int] | None:
    """This thread's nanoseconds on a CPU and waiting for one so far; None if unknown.

    Linux's per-thread scheduler statistics: the first two numbers of
    ``/proc/thread-self/schedstat``.
    """
    try:
        fd = os.open(_SCHEDSTAT, os.O_RDONLY)
    except OSError:
        return None
    try:
        fields = os.read(fd, 128).split()
        return int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


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
        self._next_check = 0.0
        self._times: tuple[int, int] | None = None  # cpu_times() at the last look
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
        times, last = cpu_times(), self._times
        self._times = times
        if times is None:
            return False
        if last is None:
            return True  # nothing to judge by yet: the next look, an interval on, tells
        ran, waited = times[0] - last[0], times[1] - last[1]
        return waited <= MAX_WAIT_SHARE * (ran + waited)
