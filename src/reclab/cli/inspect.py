"""Commands that inspect a recording: info (more come with the analysis model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentproto import RecordType, RemoteProtocolError, TruncatedError
from agentproto.recording import RecordingReader

from .app import app, fail, warn


@app.command()
def info(recording: Annotated[Path, typer.Argument(help="A .cbor session recording.")]) -> None:
    """Summarise a recording: header, commands, exit codes, truncation."""
    if not recording.exists():
        fail(f"{recording}: no such file")
    if recording.is_dir():
        fail(f"{recording}: is a directory, not a recording")
    counts: dict[str, int] = {}
    exits: dict[int, int] = {}
    header = None
    try:
        for record in RecordingReader(recording):
            name = (
                RecordType(record.type).name
                if record.type in RecordType._value2member_map_
                else str(record.type)
            )
            counts[name] = counts.get(name, 0) + 1
            if record.header is not None:
                header = record.header
            if record.cmd_end is not None:
                exits[record.cmd_end.exit_code] = exits.get(record.cmd_end.exit_code, 0) + 1
    except TruncatedError as exc:
        warn(f"{recording}: {exc}")
    except RemoteProtocolError as exc:
        fail(f"{recording}: not a readable recording: {exc}")
    if header is not None:
        print(
            f"session  version {header.version}, user {header.local_user}, pid {header.local_pid}"
        )
    kinds = ", ".join(f"{k.lower()} {v}" for k, v in counts.items())
    print(f"records  {sum(counts.values())} ({kinds})")
    print(f"exits    {', '.join(f'{code}: {n}' for code, n in sorted(exits.items())) or 'none'}")
