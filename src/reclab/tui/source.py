"""The viewer's adapter over the model: opening, background indexing, snapshots, follow, search.

Everything the screens and panes show comes from a :class:`RecordingSource`:
``source.rec`` (the open :class:`reclab.model.Recording`, whose reading
methods are safe from any thread) and ``source.snapshot()`` (a frozen,
consistent view of what is indexed so far). Indexing runs in a thread (the
app's worker calls :meth:`RecordingSource.index`); each batch of progress
publishes a new snapshot, so the first screen is drawn from the first batch
while the rest of a huge file is still being indexed.

This module parses nothing itself and never imports Textual: it is tested
and benchmarked without a screen.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from agentproto import FrameType

from ..model import Command, Damage, IndexOptions, IndexSnapshot, Recording, open_recording
from ..redact import mask_argv

if TYPE_CHECKING:
    from ..check import CheckReport

__all__ = [
    "Damage",
    "IndexSnapshot",
    "RecordingSource",
    "SearchHit",
    "command_label",
    "output_bytes",
]

SnapshotCallback = Callable[["IndexSnapshot"], None]


class Cancelled(Exception):
    """Raised inside a progress callback to stop indexing or checking (see cancel())."""


# How often (seconds) indexing publishes a snapshot: often enough for a live
# progress line, rarely enough that copying the commands and redrawing the
# screen for each (while indexing competes for the CPU) leave room for keys.
PUBLISH_INTERVAL = 0.4


class Pacer:
    """Lets a worker thread give way while the UI thread is behind (keys first).

    cbor2 and the indexer's Python keep the GIL, so the UI thread only gets
    its share of it: a relayout that takes 50 ms alone took 300 ms and more
    while indexing, and keys waited for it. The UI thread calls :meth:`beat`
    from a short timer; a worker calls :meth:`give_way` between small steps,
    which sleeps (letting the UI thread have the GIL) while the beats are
    late, i.e. while the UI is busy: at most ``ratio`` times as long as the
    step before took, and ``max_wait`` seconds, so a UI that is always
    behind (a loaded machine) slows indexing down by a bounded factor.
    """

    def __init__(self, late: float = 0.025, max_wait: float = 0.25, ratio: float = 4.0) -> None:
        self.late = late
        self.max_wait = max_wait
        self.ratio = ratio
        self.active = False  # beats are coming (set by the UI while it runs the timer)
        self._last = time.monotonic()
        self._resumed = self._last  # when the worker last went on working
        self.waited = 0.0  # seconds given way in all (for benchmarks)
        # Set by the UI before indexing starts: after the first snapshot the worker
        # waits (boundedly) for the first screen to be drawn, which would otherwise
        # take twice as long while it shares the GIL with the indexer.
        self.holds_first_screen = False
        self._first_screen = threading.Event()

    def first_screen_shown(self) -> None:
        """The UI has drawn its first screen (or gives up on it): indexing goes on."""
        self._first_screen.set()

    def wait_for_first_screen(self, timeout: float = 1.0) -> None:
        """Once, after the first snapshot: let the UI draw it before indexing goes on."""
        if self.holds_first_screen:
            self.holds_first_screen = False
            start = time.monotonic()
            self._first_screen.wait(timeout)
            self.waited += time.monotonic() - start

    def beat(self) -> None:
        """The UI thread is running its timers: it is not behind."""
        self._last = time.monotonic()
        self.active = True

    def give_way(self) -> None:
        """Sleep while the UI thread is behind (within the bounds above); at once otherwise."""
        start = time.monotonic()
        budget = min(self.max_wait, self.ratio * (start - self._resumed))
        now = start
        while self.active and now - self._last > self.late and now - start < budget:
            time.sleep(0.002)  # releases the GIL: the UI thread runs
            now = time.monotonic()
        self.waited += now - start
        self._resumed = now


def command_label(cmd: Command, *, secrets: bool = False) -> str:
    """The command line of ``cmd`` as a shell would read it (argv, else the path).

    Secret-looking arguments are masked unless ``secrets`` (the Exec tab reveals them).
    """
    argv = cmd.argv or ([cmd.path] if cmd.path else [])
    return shlex.join(argv if secrets else mask_argv(argv))


def output_bytes(cmd: Command) -> int:
    """Bytes the command wrote: stdout, stderr and extra descriptors."""
    return sum(n for stream, n in cmd.bytes_received.items() if stream >= 1)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One match of a search: the command, the frame holding it (None: the exec), where, what.

    ``where`` is ``argv``, ``path``, ``cwd``, ``stdout``, ``stderr``,
    ``stdin``, ``fd N``, ``log`` or ``file op``; ``preview`` is the text
    around the match, not yet made safe for a terminal.
    """

    seq: int
    record_index: int | None
    where: str
    preview: str


_STREAM_NAMES = {0: "stdin", 1: "stdout", 2: "stderr"}


def _stream_name(stream: int) -> str:
    return _STREAM_NAMES.get(stream, f"fd {stream}")


class _StreamMatcher:
    """Finds a byte pattern in a stream fed frame by frame, also across frame boundaries."""

    def __init__(self, needle: bytes, fold: bool) -> None:
        self.needle = needle
        self.fold = fold
        self.tail = b""  # the last len(needle)-1 bytes seen
        self.owners: list[tuple[int, int]] = []  # (position in tail, record index) ascending

    def feed(self, data: bytes, record_index: int) -> Iterator[tuple[int, bytes]]:
        """Yield (record index where the match starts, context) for matches ending in ``data``."""
        hay = self.tail + data
        owners = [*self.owners, (len(self.tail), record_index)]
        look = hay.lower() if self.fold else hay
        n = len(self.needle)
        pos = look.find(self.needle)
        while pos >= 0:
            if pos + n > len(self.tail):  # matches inside the old tail were reported before
                starts = [p for p, _ in owners]
                owner = owners[bisect_right(starts, pos) - 1][1]
                yield owner, hay[max(0, pos - 30) : pos + n + 30]
            pos = look.find(self.needle, pos + 1)
        # Keep the last n-1 bytes (a match may start there) and who wrote them.
        cut = max(len(hay) - max(n - 1, 0), 0)
        self.tail = hay[cut:]
        ends = [p for p, _ in owners[1:]] + [len(hay)]
        self.owners = [
            (max(p - cut, 0), i) for (p, i), end in zip(owners, ends, strict=True) if end > cut
        ]


def _text_match(text: str, needle: str, fold: bool) -> str | None:
    """The context around ``needle`` in ``text``, or None."""
    hay = text.lower() if fold else text
    pos = hay.find(needle)
    if pos < 0:
        return None
    return text[max(0, pos - 30) : pos + len(needle) + 30]


class RecordingSource:
    """The open recording, its latest snapshot and the viewer's shared state.

    Open with :meth:`open` (which raises :class:`reclab.model.RecordingError`
    for a missing file, a directory or a non-recording, before any screen
    exists). ``reveal_secrets`` says whether the exec pane shows the values
    of secret-looking environment variables.
    """

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.path = rec.path
        self.reveal_secrets = False
        self._snapshot = rec.snapshot()
        self._stop = threading.Event()  # set by cancel(): long work stops at its next step
        self._idle = threading.Event()  # clear while a thread indexes or checks
        self._idle.set()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self.pacer = Pacer()  # indexing gives way to a busy UI (the app beats it)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RecordingSource:
        """Open ``path`` reading only its first record: the rest is indexed by :meth:`index`."""
        # Smaller chunks than the CLI's, each followed by a progress call: indexing
        # gives way to the screen between them (see Pacer).
        step = 256 * 1024
        options = IndexOptions(chunk_size=step, progress_step=step)
        return cls(open_recording(path, index=False, options=options))

    def cancel(self) -> None:
        """Stop indexing, refreshing and checking at their next step (the viewer quits)."""
        self._stop.set()
        self.pacer.first_screen_shown()  # a worker waiting for the screen stops waiting

    def close(self) -> None:
        """Stop the work in progress (waiting a little for it) and close the recording file."""
        self.cancel()
        self._idle.wait(timeout=5)
        self.rec.close()

    @contextmanager
    def _working(self) -> Iterator[None]:
        """Mark a long job (close() waits for it) that cancel() can stop at a step."""
        with self._busy_lock:
            self._busy += 1
            self._idle.clear()
        try:
            yield
        except Cancelled:
            pass
        finally:
            with self._busy_lock:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Cancelled

    # --- snapshots ------------------------------------------------------------------

    def snapshot(self) -> IndexSnapshot:
        """The latest snapshot: cheap, from any thread."""
        return self._snapshot

    def command(self, seq: int) -> Command | None:
        """Command ``seq`` as the latest snapshot has it (None when unknown)."""
        return self._snapshot.commands.get(seq)

    def _publish(self, snap: IndexSnapshot, callback: SnapshotCallback | None) -> None:
        """Make ``snap`` the latest snapshot and hand it to ``callback``."""
        self._snapshot = snap
        if callback is not None:
            callback(snap)

    def index(self, on_snapshot: SnapshotCallback | None = None) -> IndexSnapshot:
        """Index the whole file (run it in a thread), publishing snapshots as batches arrive.

        The first batch is published at once (the first screen), then at most
        every :data:`PUBLISH_INTERVAL` seconds, and a final snapshot with
        ``done=True`` at the end.
        """
        last = [0.0]

        def progress(done: int, total: int) -> None:
            # The model calls this between batches; raising here is how indexing stops.
            self._check_stop()
            self.pacer.give_way()
            now = time.monotonic()
            if last[0] and now - last[0] < PUBLISH_INTERVAL:
                return
            first = not last[0]
            last[0] = now
            snap = self.rec.snapshot()
            self._publish(snap, on_snapshot)
            if first:
                self.pacer.wait_for_first_screen()

        with self._working():
            self._check_stop()
            self.rec.index(progress=progress)
            final = self.rec.snapshot()
            self._publish(final, on_snapshot)
        return self._snapshot

    def refresh(self, on_snapshot: SnapshotCallback | None = None) -> int:
        """Index records appended since the last look (follow); return how many were new."""
        before = self._snapshot
        added = 0
        with self._working():
            self._check_stop()
            added = self.rec.refresh()
            if added or self.rec.size != before.file_size or not before.done:
                self._publish(self.rec.snapshot(), on_snapshot)
        return added

    # --- search and check -----------------------------------------------------------

    def search(
        self,
        pattern: str,
        *,
        limit: int = 10_000,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[SearchHit]:
        """Matches of ``pattern`` in argv, paths, outputs and log messages, in recorded order.

        Case-insensitive unless the pattern has an upper-case letter (smart
        case). Outputs are searched across frame boundaries; a hit names the
        frame where the match starts. Stops after ``limit`` hits or when
        ``cancelled()`` says so. Runs in a thread: it decodes frames.
        """
        if not pattern:
            return []
        fold = pattern == pattern.lower()
        needle = pattern.lower() if fold else pattern
        raw_needle = needle.encode("utf-8", "surrogateescape")
        hits: list[SearchHit] = []
        for cmd in list(self._snapshot.commands.values()):
            if cancelled() or len(hits) >= limit:
                break
            for hit in self._search_command(cmd, needle, raw_needle, fold):
                hits.append(hit)
                if len(hits) >= limit:
                    break
        return hits

    def _search_command(
        self, cmd: Command, needle: str, raw_needle: bytes, fold: bool
    ) -> Iterator[SearchHit]:
        for where, text in (
            ("argv", command_label(cmd, secrets=True)),
            ("path", cmd.path),
            ("cwd", cmd.cwd),
        ):
            found = _text_match(text, needle, fold)
            if found is not None:
                yield SearchHit(cmd.seq, None, where, found)
        matchers: dict[int, _StreamMatcher] = {}
        indexes: Iterable[int] = cmd.record_indexes[: cmd.frame_count]
        for i, _offset, rf in self.rec.raw_frames(indexes):
            frame: Any = rf.get("frame")
            if frame.__class__ is not dict:
                continue
            kind = frame.get("t")
            if kind == FrameType.DATA:
                data = frame.get("d")
                if data.__class__ is bytes and data:
                    stream = frame.get("s", 0)
                    matcher = matchers.setdefault(stream, _StreamMatcher(raw_needle, fold))
                    for owner, context in matcher.feed(data, i):
                        text = context.decode("utf-8", "replace")
                        yield SearchHit(cmd.seq, owner, _stream_name(stream), text)
            elif kind == FrameType.LOG:
                yield from self._search_fields(cmd.seq, i, "log", frame.get("l"), needle, fold)
            elif kind == FrameType.FILE_OP:
                yield from self._search_fields(
                    cmd.seq, i, "file op", frame.get("fop"), needle, fold
                )
            elif kind == FrameType.FILE_RESP:
                yield from self._search_fields(
                    cmd.seq, i, "file op", frame.get("frp"), needle, fold
                )

    @staticmethod
    def _search_fields(
        seq: int, index: int, where: str, fields: Any, needle: str, fold: bool
    ) -> Iterator[SearchHit]:
        """A hit for the first string field of a log entry or file op (msg, attrs, paths)."""
        if fields.__class__ is not dict:
            return
        values: list[Any] = [fields.get(key) for key in ("msg", "p", "np", "em")]
        values.extend(fields.get("a") or [])
        for value in values:
            if isinstance(value, str):
                found = _text_match(value, needle, fold)
                if found is not None:
                    yield SearchHit(seq, index, where, found)
                    return

    def check(self) -> CheckReport | None:
        """Run ``reclab check`` on the file (in a thread: one streaming pass); None if cancelled."""
        from ..check import check_recording

        report = None
        with self._working():
            report = check_recording(self.path, progress=lambda _offset: self._check_stop())
        return report


def commands_view(snapshot: IndexSnapshot) -> Recording:
    """The snapshot seen as a recording by the table code (``select_commands``).

    :func:`reclab.summary.select_commands` and :func:`reclab.timeline.command_spans`
    only read ``.commands``; passing the snapshot's keeps what the user sees
    and what an expression selects the same, also while indexing goes on.
    """
    return cast("Recording", _CommandsOnly(snapshot.commands))


@dataclass(frozen=True, slots=True)
class _CommandsOnly:
    commands: Mapping[int, Command]
