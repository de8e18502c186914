"""What the index of a recording is made of: commands, frames, damage, snapshots.

Plain data, no I/O: :class:`Command` (what the index learned about one remote
command), :class:`FrameRef` (a frame decoded on demand), :class:`Truncation`
and :class:`Damage` (where reading stopped or skipped), :class:`IndexSnapshot`
(a frozen view of the index for another thread) and :class:`IndexOptions`
(how indexing is done).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agentproto import Direction, ExecMsg, Frame, SessionFooter, SessionHeader

__all__ = [
    "KIND_COMMAND_END",
    "KIND_COMMAND_START",
    "KIND_OTHER_FRAME",
    "KIND_SESSION_FOOTER",
    "KIND_SESSION_HEADER",
    "KIND_UNKNOWN_RECORD",
    "Command",
    "Damage",
    "FrameRef",
    "IndexOptions",
    "IndexSnapshot",
    "ProgressCallback",
    "Truncation",
]

ProgressCallback = Callable[[int, int], None]

# What each record is, one byte per record in Recording.kinds: a frame record
# stores its frame type (1..12, KIND_OTHER_FRAME for types this version does
# not know), other records a code of their own.
KIND_OTHER_FRAME = 200
KIND_SESSION_HEADER = 251
KIND_COMMAND_START = 252
KIND_COMMAND_END = 253
KIND_SESSION_FOOTER = 254
KIND_UNKNOWN_RECORD = 255


@dataclass(slots=True)
class Truncation:
    """Where and why reading stopped before a clean end.

    ``kind`` is ``"cut"`` (the file ends inside a record: a crashed writer, or
    a live recording mid-write), ``"garbage"`` (bytes that are not a record)
    or ``"no-footer"`` (a clean end after a complete record but no session
    footer: the writer did not close it, or is still writing). ``offset`` is
    the end of the last complete record.
    """

    offset: int
    message: str
    kind: str


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes in the middle of a recording that are not records, skipped by resync.

    ``offset`` is where the damage starts (the end of the last good record
    before it), ``size`` how many bytes were skipped to the next plausible
    record, ``message`` what was wrong at ``offset``.
    """

    offset: int
    size: int
    message: str


@dataclass(slots=True, eq=False)
class Command:
    """One remote command of the session and what the index learned about it.

    ``start_time``/``end_time`` are Unix nanoseconds from the command start
    and end records (None when the recording lacks them); ``exit_code`` is the
    code of the command-end record, ``exit_frame_code`` that of an Exit frame
    sent by the agent. ``bytes_sent``/``bytes_received`` count data bytes per
    stream number by direction. ``record_indexes`` are the indexes (into the
    recording) of this command's frame records, in file order.
    """

    seq: int
    exec: ExecMsg = field(default_factory=ExecMsg)
    start_time: int | None = None
    end_time: int | None = None
    exit_code: int | None = None
    exit_frame_code: int | None = None
    frame_count: int = 0
    first_frame_time: int | None = None
    last_frame_time: int | None = None
    bytes_sent: dict[int, int] = field(default_factory=dict)
    bytes_received: dict[int, int] = field(default_factory=dict)
    signals: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    log_count: int = 0
    file_op_count: int = 0
    record_indexes: array[int] = field(default_factory=lambda: array("Q"))
    start_index: int | None = None  # record index of the command start
    end_index: int | None = None  # record index of the command end

    @property
    def complete(self) -> bool:
        """True when the recording has this command's end record."""
        return self.end_time is not None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end record (None unless both are known)."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1e9

    @property
    def argv(self) -> list[str]:
        """The command's argument vector (empty when the exec had none)."""
        return list(self.exec.argv or [])

    @property
    def path(self) -> str:
        """The executable path of the exec request."""
        return self.exec.path

    @property
    def cwd(self) -> str:
        """The working directory of the exec request ("" means the agent's own)."""
        return self.exec.cwd


@dataclass(slots=True)
class FrameRef:
    """A recorded frame decoded on demand, with where it is in the file."""

    index: int
    offset: int
    seq: int
    timestamp: int
    direction: Direction | int
    frame: Frame


@dataclass(frozen=True, slots=True)
class IndexSnapshot:
    """A frozen, consistent view of a recording's index, safe to hold in any thread.

    Taken with :meth:`Recording.snapshot`, also while another thread indexes.
    ``record_count`` records are indexed, ending at ``indexed_bytes``;
    ``file_size`` is the file's size when it was taken; ``done`` says indexing
    reached the end of the file (as known then). ``commands`` are in
    ascending seq order and never mutated afterwards; a command's
    ``record_indexes`` holds at least ``frame_count`` valid entries (use only
    ``record_indexes[:frame_count]``).
    """

    record_count: int
    indexed_bytes: int
    file_size: int
    done: bool
    header: SessionHeader | None
    footer: SessionFooter | None
    truncation: Truncation | None
    damage: tuple[Damage, ...]
    commands: Mapping[int, Command]


@dataclass(frozen=True, slots=True)
class IndexOptions:
    """How a recording is indexed; the defaults suit any file.

    ``chunk_size``: bytes read at once. ``bulk``: parse data frames in bulk
    with NumPy (False: the record-by-record reference path, which tests
    compare with); chunks under ``bulk_min_bytes`` go record by record.
    ``workers``: 1 never forks a helper process, 2 always does for files
    over ``parallel_min_bytes``, None (the default) does when a second core
    is free (see :func:`reclab.model.parallel.parallel_ok`). The helper sends
    its index in pieces of ``segment`` bytes; the parent waits for each as
    long as indexing it alone would take, or ``worker_wait`` seconds if set.
    ``progress_step``: bytes between calls of the progress callback (a viewer
    that pauses indexing there while its screen is busy wants them often).
    """

    chunk_size: int = 4 * 1024 * 1024
    progress_step: int = 4 * 1024 * 1024
    bulk: bool = True
    bulk_min_bytes: int = 64 * 1024
    workers: int | None = None
    parallel_min_bytes: int = 64 * 1024 * 1024
    segment: int = 32 * 1024 * 1024
    worker_wait: float | None = None
