"""The session's recorder: a full disk stops the recording, never the commands."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

from agentproto import Direction, ExecMsg, Frame, Record, Recorder

__all__ = ["SessionRecorder"]


class SessionRecorder(Recorder):
    """A :class:`~agentproto.recording.Recorder` that stops at the first failed write.

    Disk full, a file-size limit, an I/O error: the commands go on (their exit
    codes are what the user waits for), ``on_failure(exc)`` is called once,
    and nothing more is written, so the file holds every record before the
    failure, whole, and at most the failed one cut short at its end, which
    readers report as a truncated recording. Sequence numbers go on being
    handed out.
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | IO[bytes],
        on_failure: Callable[[OSError], None] | None = None,
    ):
        super().__init__(target)
        self.failure: OSError | None = None
        """The write error that stopped the recording, if any."""
        self._on_failure = on_failure
        self._failure_lock = threading.Lock()

    def _failed(self, exc: OSError) -> None:
        with self._failure_lock:
            if self.failure is not None:
                return
            self.failure = exc
        if self._on_failure is not None:
            self._on_failure(exc)

    def _guarded(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self.failure is not None:
            return
        try:
            write(*args, **kwargs)
        except OSError as exc:
            self._failed(exc)

    def write_record(self, record: Record) -> None:
        """Write any record, unless the recording stopped."""
        self._guarded(super().write_record, record)

    def write_command_start(self, exec_msg: ExecMsg) -> int:
        """Number a new command and record its start (numbered even when the recording stopped)."""
        if self.failure is None:
            try:
                return super().write_command_start(exec_msg)
            except OSError as exc:
                self._failed(exc)
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
        return seq

    def write_frame(
        self,
        seq: int,
        direction: Direction | int,
        frame: Frame | bytes | bytearray | memoryview,
    ) -> None:
        """Record one frame, unless the recording stopped."""
        self._guarded(super().write_frame, seq, direction, frame)

    def write_frame_parts(
        self,
        seq: int,
        direction: Direction | int,
        parts: Sequence[bytes | bytearray | memoryview],
        *,
        timestamp: int | None = None,
    ) -> None:
        """Record one frame given in pieces, unless the recording stopped."""
        self._guarded(super().write_frame_parts, seq, direction, parts, timestamp=timestamp)

    def write_command_end(self, seq: int, exit_code: int) -> None:
        """Record a command's end, unless the recording stopped."""
        self._guarded(super().write_command_end, seq, exit_code)

    def write_session_footer(self) -> None:
        """Write the footer, unless the recording stopped (then the file just ends)."""
        self._guarded(super().write_session_footer)
