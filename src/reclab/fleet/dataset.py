"""The layout of a fleet dataset on disk, its manifest, and how recordings are found.

A dataset is a directory of plain hive-partitioned Parquet, one directory
per table (the tables of :mod:`reclab.tables`, as ``reclab export`` writes
them, plus the columns ``recording`` and ``recording_path``)::

    DATASET/
      _reclab_manifest.json                what was ingested, from which file
      commands/day=2026-11-29/part-<key>.parquet
      frames/day=2026-11-29/part-<key>.parquet
      ...

``day`` is the UTC day of the session start. ``<key>`` names a recording
for as long as it grows (a hash of its path and its header record), so a
grown recording's new part replaces the old one with one rename: readers
never see it twice or not at all. Files starting with ``_`` or ``.``
(the manifest, parts being written) are skipped by pyarrow, DuckDB, Spark
and Trino alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ReclabError

__all__ = [
    "MANIFEST",
    "TABLES",
    "FleetError",
    "Manifest",
    "ManifestEntry",
    "dataset_lock",
    "find_recordings",
    "is_dataset",
    "part_path",
    "utc_day",
]

# The tables of reclab.tables.TABLES, in the order they are written.
TABLES = ("session", "commands", "frames", "fileops", "logs")
MANIFEST = "_reclab_manifest.json"
_LOCK = "_reclab_lock"
# 2: the tables' columns renamed (timestamp, index, error_count), argv and signals lists.
_FORMAT = 2


class FleetError(ReclabError, ValueError):
    """A dataset or a set of recordings cannot be used as asked; the message is one line."""


@dataclass(slots=True)
class ManifestEntry:
    """One ingested recording: where it came from, what was taken, where its parts are.

    ``size`` and ``mtime_ns`` are the file's when it was ingested (an
    unchanged file is skipped without being read again); ``hash`` is the
    content hash of the ``bytes`` complete records taken, the ``recording``
    column's value; ``status`` is ``"complete"`` or ``"partial"`` (cut, or
    no footer yet: picked up again when it grows), ``truncation`` the model's
    truncation kind.
    """

    key: str
    path: str
    hash: str
    day: str
    size: int
    mtime_ns: int
    bytes: int
    status: str
    truncation: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    ingested_at: float = 0.0


class Manifest:
    """The dataset's record of ingested recordings, by key; saved atomically (temp + rename)."""

    def __init__(self, root: Path, entries: dict[str, ManifestEntry] | None = None):
        self.root = root
        self.entries: dict[str, ManifestEntry] = entries or {}

    @classmethod
    def load(cls, root: Path) -> Manifest:
        """The manifest of dataset ``root`` (empty when there is none yet)."""
        path = root / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(root)
        except (OSError, ValueError) as exc:
            raise FleetError(f"{path}: unreadable manifest: {exc}") from None
        old = data.get("format") if isinstance(data, dict) else None
        if isinstance(old, int) and old < _FORMAT:  # its files have older columns: no mixing
            raise FleetError(
                f"{root}: a dataset made by an older reclab, with other columns;"
                " ingest the recordings again into a new directory"
            )
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise FleetError(f"{path}: not a reclab dataset manifest (format {_FORMAT})")
        try:
            entries = {e["key"]: ManifestEntry(**e) for e in data.get("recordings", [])}
        except (TypeError, KeyError) as exc:
            raise FleetError(f"{path}: malformed manifest entry: {exc}") from None
        return cls(root, entries)

    def save(self) -> None:
        """Write the manifest: to a temporary file first, then renamed over the old one."""
        data = {
            "format": _FORMAT,
            "recordings": [asdict(e) for e in sorted(self.entries.values(), key=lambda e: e.key)],
        }
        fd, tmp = tempfile.mkstemp(prefix="." + MANIFEST, dir=self.root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                json.dump(data, fp, indent=1)
            os.replace(tmp, self.root / MANIFEST)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def by_path(self) -> dict[str, ManifestEntry]:
        """The newest entry of each source path."""
        out: dict[str, ManifestEntry] = {}
        for e in self.entries.values():
            if e.path not in out or e.ingested_at > out[e.path].ingested_at:
                out[e.path] = e
        return out

    def hashes(self) -> dict[str, str]:
        """Content hash -> key of every ingested recording."""
        return {e.hash: e.key for e in self.entries.values()}


def part_path(root: Path, table: str, day: str, key: str) -> Path:
    """Where recording ``key``'s part of ``table`` lives."""
    return root / table / f"day={day}" / f"part-{key}.parquet"


@contextlib.contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """Hold the dataset's writer lock: one ingest at a time may change a dataset."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FleetError(f"{root}: another reclab ingest is writing this dataset") from None
        _remove_stale_parts(root)
        yield
    finally:
        os.close(fd)


def _remove_stale_parts(root: Path) -> None:
    """Delete parts left half-written by an ingest that was killed (we hold the lock)."""
    for table in TABLES:
        for tmp in (root / table).glob("day=*/.part-*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


def is_dataset(path: Path) -> bool:
    """True if ``path`` is a dataset directory (has a manifest or a table directory)."""
    return path.is_dir() and (
        (path / MANIFEST).exists() or any((path / t).is_dir() for t in TABLES)
    )


def find_recordings(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The ``.cbor`` files named by ``sources``: files, directories (searched recursively), globs.

    Each file is listed once (by resolved path), in a stable order. A source
    that names nothing raises :class:`FleetError`.
    """
    found: dict[Path, None] = {}
    for source in sources:
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*.cbor") if p.is_file())
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(text):
            matches = []
            for name in sorted(glob.glob(text, recursive=True)):
                p = Path(name)
                if p.is_dir():
                    matches.extend(sorted(q for q in p.rglob("*.cbor") if q.is_file()))
                elif p.is_file():
                    matches.append(p)
            if not matches:
                raise FleetError(f"{text}: no file matches")
        else:
            raise FleetError(f"{text}: no such file or directory")
        for p in matches:
            found.setdefault(p.resolve(), None)
    return list(found)


def utc_day(unix_ns: int | None) -> str:
    """The UTC day (YYYY-MM-DD) of a Unix time in ns; 1970-01-01 when unknown."""
    seconds = (unix_ns or 0) // 1_000_000_000
    return time.strftime("%Y-%m-%d", time.gmtime(max(seconds, 0)))
