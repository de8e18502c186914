"""This process's side of a command's I/O: output sinks and the stdin pump.

Where input comes from and output goes follows :mod:`subprocess`: ``None``
means this process's own descriptor (fd 0, 1, 2, or fd *n* for extra fd *n*),
``subprocess.DEVNULL`` nothing, an ``int`` a descriptor, a binary file object
itself; ``stdin`` may also be ``bytes``, or ``subprocess.PIPE`` (the caller
feeds it). Output is written unbuffered and byte-exact, chunk by chunk.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import threading
from collections.abc import Callable
from typing import IO

__all__ = ["READ_SIZE", "OutputSink", "Sink", "Source", "pump_stdin", "stdin_fd"]

READ_SIZE = 256 * 1024

Source = int | bytes | IO[bytes] | None
Sink = int | IO[bytes] | None


class OutputSink:
    """A stream handler writing one output stream unbuffered (fd) or to a file object."""

    def __init__(self, target: Sink, default_fd: int, on_broken: Callable[[], None]):
        self._fd: int | None = None
        self._file: IO[bytes] | None = None
        if target is None:
            self._fd = default_fd
        elif target == subprocess.DEVNULL:
            pass
        elif isinstance(target, int):
            self._fd = target
        else:
            self._file = target
        self._on_broken = on_broken
        self._broken = False
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)
        if self._broken:
            return
        try:
            if self._fd is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            elif self._file is not None:
                self._file.write(data)
                self._file.flush()
        except BrokenPipeError:
            # the reader went away (`reclab run -- yes | head`): tell the command, as a pipe would
            self._broken = True
            self._on_broken()
        except (OSError, ValueError):
            self._broken = True  # a closed descriptor or file: drop the rest

    def eof(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._file.flush()


def stdin_fd(source: Source) -> int | None:
    if source is None:
        return 0
    if isinstance(source, int) and source >= 0:
        return source
    fileno = getattr(source, "fileno", None)
    if fileno is not None:
        with contextlib.suppress(OSError, ValueError):
            return int(fileno())
    return None


def pump_stdin(source: Source, send: Callable[[bytes], None], stop: threading.Event) -> bool:
    """Copy the command's input from ``source`` with ``send`` until its end or ``stop``.

    True when the input ended and the caller should send ``FrameEOF``; False
    for ``subprocess.PIPE`` (the caller feeds stdin itself) or once ``stop``
    is set. A descriptor is polled, so the pump ends with the command even
    if nobody ever types; unreadable input (a closed fd 0) ends like an empty one.
    """
    if isinstance(source, bytes):
        for i in range(0, len(source), READ_SIZE):
            send(source[i : i + READ_SIZE])
    elif source == subprocess.PIPE:
        return False
    elif source != subprocess.DEVNULL:
        try:
            fd = stdin_fd(source)
            if fd is not None:
                _pump_fd(fd, send, stop)
            elif source is not None and not isinstance(source, int):
                while not stop.is_set():
                    chunk = source.read(READ_SIZE)
                    if not chunk:
                        break
                    send(chunk)
        except (OSError, ValueError):
            pass
    return not stop.is_set()


def _pump_fd(fd: int, send: Callable[[bytes], None], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            ready, _, _ = select.select([fd], [], [], 0.2)
        except (OSError, ValueError):
            ready = [fd]  # not selectable (a regular file is always ready anyway)
        if not ready:
            continue
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            return
        send(chunk)
