"""Answer PATH queries: enumerate the executables reachable through PATH-style directories.

For ``FramePathQuery``: directories are searched in the order given (each
entry may itself be a ``:``-separated PATH string; empty entries are
skipped), names inside a directory in sorted order. An entry is an
executable regular file (after following symlinks) with at least one
execute bit set. The first directory providing a name wins; later ones are
ignored (as a shell's PATH lookup would). ``remote_path`` is the directory
joined with the name (symlinks not resolved, so the PATH view is kept);
``mode`` is a Go ``os.FileMode``, ``size`` and ``mtime_nanos`` come from the
target. Unreadable or missing directories are skipped. The answer is capped
at :data:`MAX_ENTRIES` (Go's decoder refuses longer arrays).
"""

from __future__ import annotations

import os
import stat

from ..filemode import from_stat
from ..types import PathInfo, PathInfoEntry

__all__ = ["MAX_ENTRIES", "query_path"]

MAX_ENTRIES = 131072  # fxamacker/cbor's default MaxArrayElements


def _directories(paths: list[str] | None) -> list[str]:
    if not paths:
        paths = [os.environ.get("PATH", os.defpath)]
    dirs: list[str] = []
    for entry in paths:
        dirs.extend(d for d in entry.split(os.pathsep) if d)
    return dirs


def query_path(paths: list[str] | None = None) -> PathInfo:
    """Enumerate executables on ``paths`` (None or empty: this process's ``$PATH``)."""
    seen: set[str] = set()
    entries: list[PathInfoEntry] = []
    visited: set[str] = set()
    for directory in _directories(paths):
        if directory in visited:
            continue  # a directory listed twice adds nothing
        visited.add(directory)
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name in seen:
                continue
            full = os.path.join(directory, name)
            try:
                st = os.stat(full)
            except OSError:
                continue  # dangling symlink, vanished file
            if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
                continue
            seen.add(name)
            entries.append(
                PathInfoEntry(
                    name=name,
                    remote_path=full,
                    mode=from_stat(st.st_mode),
                    size=st.st_size,
                    mtime_nanos=st.st_mtime_ns,
                )
            )
            if len(entries) >= MAX_ENTRIES:
                return PathInfo(entries=entries)
    return PathInfo(entries=entries)
