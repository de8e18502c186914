"""The small tables (session, commands) as plain Python columns, and CSV without pandas.

:mod:`reclab.tables` turns these columns into DataFrames; ``reclab export
--csv`` of these tables writes them here directly, byte for byte as pandas'
``to_csv`` would, because importing pandas takes longer than reading a small
recording. Each column is ``(name, kind, values)`` with ``None`` for a
missing value; the kinds are ``int``, ``Int64`` (nullable), ``float``,
``bool``, ``str``, ``time`` (Unix nanoseconds, shown as UTC datetimes),
``str_list`` and ``int_list`` (lists, written to CSV as JSON arrays).
"""

from __future__ import annotations

import csv
import json
import shlex
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Recording

__all__ = ["Column", "commands_columns", "session_columns", "write_csv"]

Column = tuple[str, str, list[Any]]


def session_columns(rec: Recording) -> list[Column]:
    """The one-row session table: header fields, footer fields, truncation."""
    h = rec.header
    f = rec.footer
    t = rec.truncation
    return [
        ("version", "str", [h.version if h else None]),
        ("start_time", "time", [h.start_time if h else None]),
        ("local_user", "str", [h.local_user if h else None]),
        ("local_pid", "Int64", [h.local_pid if h else None]),
        ("backend_type", "str", [h.backend_type if h else None]),
        ("backend_addr", "str", [h.backend_addr if h else None]),
        ("agent_path", "str", [h.agent_path if h else None]),
        ("end_time", "time", [f.end_time if f else None]),
        ("command_count", "Int64", [f.command_count if f else None]),
        ("commands_recorded", "Int64", [len(rec.commands)]),
        ("records", "Int64", [rec.record_count]),
        ("truncated", "bool", [t is not None]),
        ("truncation", "str", [t.kind if t else None]),
    ]


def commands_columns(rec: Recording) -> list[Column]:
    """One row per command, in sequence order, from the index alone (no frame decoding)."""
    cmds = list(rec.commands.values())
    return [
        ("seq", "int", [c.seq for c in cmds]),
        ("path", "str", [c.exec.path for c in cmds]),
        ("argv", "str_list", [c.exec.argv for c in cmds]),  # null stays null (Go's nil slice)
        (
            "command_line",
            "str",
            [None if c.exec.argv is None else shlex.join(c.exec.argv) for c in cmds],
        ),
        ("cwd", "str", [c.exec.cwd for c in cmds]),
        ("env_count", "Int64", [len(c.exec.env or []) for c in cmds]),
        ("start_time", "time", [c.start_time for c in cmds]),
        ("end_time", "time", [c.end_time for c in cmds]),
        ("duration", "float", [c.duration for c in cmds]),
        ("exit_code", "Int64", [c.exit_code for c in cmds]),
        ("exit_frame_code", "Int64", [c.exit_frame_code for c in cmds]),
        ("frames", "int", [c.frame_count for c in cmds]),
        ("stdin_bytes", "int", [c.bytes_sent.get(0, 0) for c in cmds]),
        ("stdout_bytes", "int", [int(c.bytes_received.get(1, 0)) for c in cmds]),
        ("stderr_bytes", "int", [int(c.bytes_received.get(2, 0)) for c in cmds]),
        (
            "extra_fd_bytes",
            "int",
            [sum(n for s, n in c.bytes_received.items() if s >= 3) for c in cmds],
        ),
        ("signals", "int_list", [list(c.signals) for c in cmds]),
        # a count: "errors" is the list of messages in reclab commands --json
        ("error_count", "int", [len(c.errors) for c in cmds]),
        ("first_error", "str", [c.errors[0] if c.errors else None for c in cmds]),
        ("logs", "int", [c.log_count for c in cmds]),
        ("file_ops", "int", [c.file_op_count for c in cmds]),
        ("complete", "bool", [c.complete for c in cmds]),
        ("first_frame_time", "time", [c.first_frame_time for c in cmds]),
        ("last_frame_time", "time", [c.last_frame_time for c in cmds]),
    ]


# --- CSV as pandas writes it ------------------------------------------------------------


def _time_digits(values: Iterable[int]) -> int:
    """pandas shows a datetime column's fractions to the finest unit any value needs."""
    digits = 0
    for ns in values:
        frac = ns % 1_000_000_000
        if frac % 1000:
            return 9
        if frac % 1_000_000:
            digits = 6
        elif frac and not digits:
            digits = 3
    return digits


def _format_times(values: list[int | None]) -> list[str]:
    digits = _time_digits(v for v in values if v is not None)
    scale = 10 ** (9 - digits)
    out = []
    for ns in values:
        if ns is None:
            out.append("")
            continue
        seconds, frac = divmod(ns, 1_000_000_000)
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
        if digits:
            text += f".{frac // scale:0{digits}d}"
        out.append(text + "+00:00")
    return out


def _format(kind: str, values: list[Any]) -> list[str]:
    if kind == "time":
        return _format_times(values)
    if kind == "float":
        # NumPy's shortest repr, which is Python's; NaN and None are empty
        return ["" if v is None or v != v else repr(float(v)) for v in values]
    if kind == "bool":
        return ["True" if v else "False" for v in values]
    if kind == "str":
        return ["" if v is None else str(v) for v in values]
    if kind in ("str_list", "int_list"):
        return ["" if v is None else json.dumps(list(v), ensure_ascii=False) for v in values]
    return ["" if v is None else str(int(v)) for v in values]  # int, Int64


def write_csv(columns: list[Column], out: IO[str]) -> int:
    """Write ``columns`` to ``out`` as ``DataFrame.to_csv(index=False, lineterminator="\\n")``.

    Returns the number of rows written.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _, _ in columns])
    cells = [_format(kind, values) for _, kind, values in columns]
    rows = len(cells[0]) if cells else 0
    writer.writerows(zip(*cells, strict=True))
    return rows
