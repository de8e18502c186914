"""Commands that inspect a recording: info, commands, timeline, cat, check.

Each is a thin shell over a documented Python API (:mod:`reclab.summary`,
:mod:`reclab.tables`, :mod:`reclab.timeline`, :mod:`reclab.check`, the model).
Bad input (missing file, directory, not a recording, unknown ``--seq``, bad
``--where``) is one line on stderr and exit status 2; a cut-off recording is
read up to the cut with a one-line warning.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentproto import Direction

from .app import app, fail, open_or_fail, reading

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ..model import Command
    from ..summary import SessionSummary

RecordingArg = Annotated[
    Path, typer.Argument(help="A .cbor session recording.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _console(width: int | None = None) -> Console:
    from rich.console import Console  # rich loads lazily: --help stays quick

    # Recorded text is only ever printed as Text (never markup), escaped by reclab.timeline.
    return Console(width=width, highlight=False, markup=False, emoji=False, soft_wrap=False)


def _json_out(data: Any) -> None:
    from ..terminal import json_safe  # C1 and bidi controls escaped: a terminal acts on them

    sys.stdout.write(json_safe(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")


def _size(n: int) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _argv_text(cmd: Command) -> str:
    argv = cmd.argv or ([cmd.path] if cmd.path else [])
    return shlex.join(argv)


# --- info ---------------------------------------------------------------------------


@app.command()
def info(recording: RecordingArg, as_json: JsonOpt = False) -> None:
    """Summarise a recording: session header, times, commands and exit codes, bytes per
    stream, frames by type, agent errors, signals and truncation.

    With --json the summary is one JSON object with stable keys (documented in
    reclab.summary.SessionSummary.to_json): path, size, records, header, footer,
    start_time/end_time (Unix ns), start/end (ISO 8601), duration (s), commands,
    bytes, frames, records_by_type, logs, file_ops, signals, errors, truncation.
    """
    from ..summary import summarize

    rec = open_or_fail(recording)
    with rec:
        summary = summarize(rec)
    if as_json:
        _json_out(summary.to_json())
        return
    _console().print(_info_table(summary))


def _info_table(s: SessionSummary) -> Table:
    from rich.table import Table
    from rich.text import Text

    from ..summary import format_time
    from ..timeline import format_duration, safe_text, signal_name

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()

    def row(key: str, value: str | Text) -> None:
        grid.add_row(key, value if isinstance(value, Text) else Text(value))

    row("file", f"{s.path} ({_size(s.size)}, {s.records} records)")
    h = s.header
    if h is None:
        row("session", Text("no session header", style="yellow"))
    else:
        row(
            "session",
            safe_text(f"version {h.version}, user {h.local_user}, pid {h.local_pid}"),
        )
        backend = " ".join(p for p in (h.backend_type, h.backend_addr) if p)
        row("backend", safe_text(backend) or "-")
        row("agent", safe_text(h.agent_path) or "-")
    row("start", format_time(s.start_time) if s.start_time is not None else "-")
    end = format_time(s.end_time) if s.end_time is not None else "-"
    row("end", end + ("" if s.footer is not None else " (no footer: last recorded time)"))
    row("duration", format_duration(s.duration) if s.duration is not None else "-")
    commands = f"{s.commands}"
    if s.footer is not None:
        same = s.footer.command_count == s.commands
        commands += f" (footer: {s.footer.command_count}{'' if same else ', MISMATCH'})"
    if s.complete != s.commands:
        commands += f", {s.commands - s.complete} without an end"
    row("commands", Text(commands, style="" if s.footer is None or same else "red"))
    exits = Text()
    for code, n in sorted(s.exit_codes.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        if exits:
            exits.append(", ")
        label = "no end" if code is None else f"exit {code}"
        style = "yellow" if code is None else ("green" if code == 0 else "red")
        exits.append(f"{label}: {n}", style=style)
    row("exit codes", exits if exits else Text("-"))
    row("bytes", ", ".join(f"{k} {_size(v)}" for k, v in s.bytes.items()))
    frames = ", ".join(f"{k} {v}" for k, v in s.frames_by_type.items())
    row("frames", f"{s.frame_count}" + (f" ({frames})" if frames else ""))
    row("file ops", f"{s.file_op_count} requests")
    row("logs", f"{s.log_count} agent log records")
    if s.signal_count:
        listed = ", ".join(f"{signal_name(sig)} to {seq}" for seq, sig in s.signals[:10])
        more = ", ..." if s.signal_count > 10 else ""
        row("signals", f"{s.signal_count} ({listed}{more})")
    else:
        row("signals", "none")
    if s.error_count:
        err = Text(f"{s.error_count}", style="red")
        for seq, message in s.errors[:5]:
            err.append(f"\n[{seq}] {safe_text(message, 100)}")
        if s.error_count > 5:
            err.append(f"\n... {s.error_count - 5} more")
        row("agent errors", err)
    else:
        row("agent errors", "none")
    for d in s.damage:
        row(
            "damage",
            Text(f"{d.size} bytes at byte {d.offset} skipped: {d.message}", style="yellow"),
        )
    t = s.truncation
    if t is None:
        row("truncation", "none (complete recording)")
    else:
        row("truncation", Text(f"{t.kind} at byte {t.offset}: {t.message}", style="yellow"))
    return grid


# --- commands -----------------------------------------------------------------------


@app.command()
def commands(
    recording: RecordingArg,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help="pandas query over the commands table, e.g. 'exit_code != 0 and duration > 2'.",
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            "-s",
            help="Sort by a column of the commands table; --sort=-duration for descending.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the commands: seq, argv, cwd, start, duration, exit code, bytes.

    --where filters with a pandas query over the commands table (columns as in
    `reclab export --csv`); --json prints a list of objects with keys seq, path,
    argv, cwd, start_time, end_time (Unix ns), duration (s), exit_code,
    exit_frame_code, frames, bytes {stdin, stdout, stderr, extra}, signals,
    errors, complete.
    """
    from ..summary import command_json, select_commands

    rec = open_or_fail(recording)
    with rec:
        try:
            seqs = select_commands(rec, where, sort)
        except ValueError as exc:
            fail(str(exc))
        cmds = [rec.commands[s] for s in seqs]
    if as_json:
        _json_out([command_json(c) for c in cmds])
        return
    console = _console()
    for line in _command_lines(cmds, console.width):
        console.print(line)


def _command_lines(cmds: list[Command], width: int) -> Iterator[Text]:
    from rich.text import Text

    from ..summary import format_time
    from ..timeline import format_duration, safe_text

    if not cmds:
        yield Text("no commands", style="dim")
        return
    rows: list[tuple[str, str, str, str, str]] = []
    for c in cmds:
        start = format_time(c.start_time)[11:23] if c.start_time is not None else "-"
        dur = format_duration(c.duration) if c.duration is not None else "-"
        code = "-" if c.exit_code is None else str(c.exit_code)
        output = c.bytes_received.get(1, 0) + c.bytes_received.get(2, 0)
        rows.append((str(c.seq), start, dur, code, _size(output)))
    head = ("seq", "start", "duration", "exit", "out")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fixed = sum(widths) + len(widths) * 2
    cwd_w = min(24, max(3, *(len(c.cwd) for c in cmds)))
    argv_w = max(10, width - fixed - cwd_w - 2)
    title = Text(no_wrap=True, overflow="ellipsis", style="bold")
    for h, w in zip(head, widths, strict=True):
        title.append(f"{h:>{w}}  ")
    title.append(f"{'cwd':<{cwd_w}}  argv")
    yield title
    for (seq, start, dur, code, out), c in zip(rows, cmds, strict=True):
        style = "yellow" if not c.complete else ("green" if c.exit_code == 0 else "red")
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{seq:>{widths[0]}}  ", style="bold")
        line.append(f"{start:>{widths[1]}}  {dur:>{widths[2]}}  ")
        line.append(f"{code:>{widths[3]}}  ", style=style)
        line.append(f"{out:>{widths[4]}}  ")
        line.append(f"{safe_text(c.cwd or '-', cwd_w):<{cwd_w}}  ", style="dim")
        line.append(safe_text(_argv_text(c), argv_w))
        yield line


# --- timeline -----------------------------------------------------------------------


@app.command()
def timeline(
    recording: RecordingArg,
    seq: Annotated[
        int | None,
        typer.Option("--seq", "-n", help="Show this command's frames instead of the session."),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option("--width", "-W", min=40, help="Output width in columns (default: terminal)."),
    ] = None,
) -> None:
    """Draw the session as a Gantt chart of commands over time, or one command's frames.

    Without --seq: one row per command, a bar from its start to its end
    (green exit 0, red another code, yellow no recorded end) on a shared time
    axis, so concurrent commands overlap. With --seq N: every frame of command N
    in recorded order with its time since the command start (+0.000123s),
    direction (→ sent to the agent, ← received), type, stream, size and an
    escaped preview.
    """
    from rich.text import Text

    from ..timeline import command_spans, frame_rows, render_frames, render_gantt

    console = _console(width)
    rec = open_or_fail(recording)
    with rec, reading(recording):
        if seq is None:
            origin = rec.header.start_time if rec.header is not None else None
            until = rec.footer.end_time if rec.footer is not None else None
            for line in render_gantt(command_spans(rec), console.width, origin=origin, until=until):
                console.print(line)
            return
        preview = max(16, console.width - 36)
        shown = 0
        for line in render_frames(frame_rows(rec, seq, preview=preview)):
            console.print(line)
            shown += 1
        if not shown:
            console.print(Text(f"command {seq} has no frames", style="dim"))


# --- cat ----------------------------------------------------------------------------


def parse_stream(value: str) -> tuple[tuple[int, ...], Direction]:
    """``--stream`` as (stream numbers, direction): stdin is sent, the others received."""
    named = {
        "stdout": ((1,), Direction.RECV),
        "stderr": ((2,), Direction.RECV),
        "both": ((1, 2), Direction.RECV),
        "stdin": ((0,), Direction.SEND),
    }
    if value in named:
        return named[value]
    if value.isdigit() and int(value) <= 0xFFFF_FFFF:
        n = int(value)
        return (n,), Direction.SEND if n == 0 else Direction.RECV
    raise ValueError(f"--stream must be stdout, stderr, both, stdin or a number, not {value!r}")


@app.command()
def cat(
    recording: RecordingArg,
    seq: Annotated[int, typer.Option("--seq", "-n", help="The command (sequence number).")],
    stream: Annotated[
        str,
        typer.Option(
            "--stream",
            help="stdout, stderr, both (interleaved in recorded order), stdin, or a number.",
        ),
    ] = "stdout",
    raw: Annotated[
        bool,
        typer.Option("--raw", help="On a terminal too, write every byte as recorded."),
    ] = False,
) -> None:
    """Write a command's reconstructed output to stdout, byte for byte.

    Bytes are written exactly as recorded (no decoding), so `reclab cat REC
    --seq 3 > out.bin` reproduces what the command wrote. `--stream both`
    interleaves stdout and stderr in the order they were recorded. On a
    terminal, escape sequences other than colours (clipboard writes, titles,
    cursor movement) and control characters are shown escaped unless --raw.
    """
    try:
        streams, direction = parse_stream(stream)
    except ValueError as exc:
        fail(str(exc))
    rec = open_or_fail(recording)
    out = sys.stdout.buffer
    from ..terminal import TerminalFilter

    screen = None if raw or not sys.stdout.isatty() else TerminalFilter()
    with rec, reading(recording):
        rec.command(seq)  # unknown seq: one-line error before any output
        try:
            for _stream, d, data in rec.stream_chunks(seq, streams):
                if d == direction:
                    out.write(data if screen is None else screen.feed(data))
            if screen is not None:
                out.write(screen.flush())
            out.flush()
        except BrokenPipeError:
            raise typer.Exit(0) from None


# --- check --------------------------------------------------------------------------


@app.command()
def check(
    recording: RecordingArg,
    as_json: JsonOpt = False,
    max_per_code: Annotated[
        int, typer.Option("--max", min=1, help="Findings listed per code (all are counted).")
    ] = 100,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors, and the summary line.")
    ] = False,
) -> None:
    """Check protocol conformance in one streaming pass (works on huge files).

    Reports frames after FrameExit, commands without an end, CommandEnd without
    start, duplicate starts, unanswered or unmatched file-op requests, frames
    for unknown commands, out-of-order sequence numbers, time going backwards,
    footer count mismatches, missing header/footer, records after the footer,
    exit-code mismatches, data after EOF, unknown types, truncation and garbage.
    Each finding has record index, byte offset, seq, severity and a stable code.
    Exit status: 0 when there is no error-level finding (warnings and infos
    allowed), 1 when there is at least one, 2 when the file cannot be read.
    """
    from rich.text import Text

    from ..check import Severity, check_recording, iter_findings
    from ..model import open_recording

    # Refuse what is not a recording at all with the same one line as the other commands.
    with reading(recording):
        open_recording(recording, index=False).close()
        report = check_recording(recording, max_per_code=max_per_code)
    if as_json:
        _json_out({"path": str(recording), **report.to_json()})
    else:
        from ..timeline import safe_text

        console = _console()
        styles = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "dim"}
        minimum = Severity.ERROR if quiet else Severity.INFO
        for f in iter_findings(report, minimum):
            line = Text()
            line.append(f"{f.severity.value:<7} ", style=styles[f.severity])
            where = [
                f"#{f.index}" if f.index is not None else "",
                f"@{f.offset}" if f.offset is not None else "",
                f"seq {f.seq}" if f.seq is not None else "",
            ]
            line.append(" ".join(w for w in where if w) + " " if any(where) else "")
            line.append(f.code, style="bold")
            line.append(f": {safe_text(f.message)}")
            console.print(line, soft_wrap=True)  # one finding per line, for grep
        c = report.counts
        verdict = Text("OK" if report.ok else "FAILED", style="green" if report.ok else "red")
        summary = Text(
            f"{report.records} records: {c['error']} errors, {c['warning']} warnings, "
            f"{c['info']} infos — "
        )
        console.print(summary + verdict)
    if not report.ok:
        raise typer.Exit(1)
