"""Exports are the same whatever built the index: one process, a forked helper, 8-byte arrays."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from reclab.export import export_table
from reclab.model import IndexOptions, open_recording, parallel
from tests.builders import allow_fork_beside_threads, varied_script

ALONE = IndexOptions(workers=1)


def _export(path: Path, options: IndexOptions, fmt: str, *, wide: bool = False) -> bytes:
    with open_recording(path, options=options) as rec:
        if wide:  # what a file past 4 GiB gets
            with rec._index._state_lock:
                rec._index._widen()
        out: io.BytesIO | io.StringIO = io.BytesIO() if fmt == "parquet" else io.StringIO()
        for table in ("frames", "commands", "fileops", "logs"):
            export_table(rec, table, fmt, out)
        value = out.getvalue()
    return value if isinstance(value, bytes) else value.encode()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_is_the_same_with_the_index_helper(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    allow_fork_beside_threads(monkeypatch)
    forks: list[int] = []
    real = parallel._fork_helper

    def fork_helper(*args: Any) -> Any:
        forks.append(1)
        return real(*args)

    monkeypatch.setattr(parallel, "_fork_helper", fork_helper)
    path = tmp_path / "varied.cbor"
    data = varied_script(11, frames=3000, mimic=False).write(path)
    helper = IndexOptions(workers=2, parallel_min_bytes=1, segment=len(data) // 7, worker_wait=60)
    alone = _export(path, ALONE, fmt)
    assert _export(path, helper, fmt) == alone
    assert forks  # the helper did index part of it
    assert _export(path, ALONE, fmt, wide=True) == alone
