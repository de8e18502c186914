"""Files reclab writes appear whole or not at all.

:func:`atomic_output` writes to a hidden temporary name in the target's
directory (so the rename stays on one file system) and renames it over the
target only when the block completes; an error or an interrupt (Ctrl-C)
removes it. A reader never sees half a CSV, or a Parquet file that opens as
valid with half its rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_output"]


@contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    mode: str = "wb",
    *,
    private: bool = False,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    ``mode`` is ``"w"`` or ``"wb"``. The file gets the permissions a plain
    ``open`` would give (the umask's), or owner-only with ``private``.
    """
    import secrets

    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as fp:
            yield fp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
