"""Signals this process receives, relayed to the running commands as ``FrameSignal``."""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .command import RemoteCommand

__all__ = [
    "ABANDON_AFTER",
    "ABANDON_SIGNALS",
    "FORWARDED_SIGNALS",
    "SignalState",
    "forward_signals",
]

# What a shell or ssh would pass on to a foreground command. SIGTSTP/SIGCONT are
# not: stopping the remote command would leave this runner waiting, unstopped.
FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# Only the signals that ask to stop count towards giving up; USR1/USR2 are
# messages to the command and may be sent any number of times.
ABANDON_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})
ABANDON_AFTER = 3  # the third stop signal gives up on the commands
JOIN_TIMEOUT = 5.0


@dataclasses.dataclass(slots=True)
class SignalState:
    """What :func:`forward_signals` saw: signals received, and the one that abandoned."""

    received: int = 0  # stop signals (ABANDON_SIGNALS) only
    abandoned_by: int = 0  # the signal number that made it give up (0: it did not)


@contextlib.contextmanager
def forward_signals(
    commands: Sequence[RemoteCommand] | Callable[[], Sequence[RemoteCommand]],
    signals: Sequence[int] = FORWARDED_SIGNALS,
    *,
    on_abandon: Callable[[int], None] | None = None,
) -> Iterator[SignalState]:
    """Relay ``signals`` received by this process to ``commands`` while the block runs.

    ``commands`` is a list or a function returning the current list. The
    handler only queues the signal number (a handler must not take the mux's
    send lock the interrupted code may hold); a thread sends the frames. The
    :data:`ABANDON_AFTER`-th stop signal (:data:`ABANDON_SIGNALS`) abandons
    every command instead and calls ``on_abandon(signo)``. Yields a
    :class:`SignalState`. Outside the main thread (where handlers cannot be
    installed) nothing is forwarded.
    """
    state = SignalState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()

    def current() -> Sequence[RemoteCommand]:
        return commands() if callable(commands) else commands

    def handler(signo: int, _frame: object) -> None:
        pending.put(signo)  # SimpleQueue.put is safe in a signal handler

    def relay() -> None:
        while True:
            signo = pending.get()
            if signo < 0:
                return
            targets = [c for c in current() if c.running]
            if signo in ABANDON_SIGNALS:
                state.received += 1
            if signo in ABANDON_SIGNALS and state.received >= ABANDON_AFTER:
                state.abandoned_by = state.abandoned_by or signo
                for command in targets:
                    command.abandon()
                if on_abandon is not None:
                    on_abandon(signo)
            else:
                for command in targets:
                    command.signal_soon(signo)  # never blocks: a later signal can abandon

    thread = threading.Thread(target=relay, name="reclab-signals", daemon=True)
    thread.start()
    previous = {signo: signal.signal(signo, handler) for signo in signals}
    try:
        yield state
    finally:
        for signo, old in previous.items():
            signal.signal(signo, old)
        pending.put(-1)
        thread.join(JOIN_TIMEOUT)
