"""Commands that inspect a recording: info, commands, timeline, cat, check.

Each is a thin shell over a documented Python API (:mod:`reclab.summary`,
:mod:`reclab.tables`, :mod:`reclab.timeline`, :mod:`reclab.check`, the model).
Bad input (missing file, directory, not a recording, unknown ``--seq``, bad
``--where``) is one line on stderr and exit status 2; a cut-off recording is
read up to the cut with a one-line warning.
"""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..text import format_size
from .app import app, examples, fail, is_stdin, open_or_fail, reading, recording_file

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from agentproto import Direction

    from ..model import Command, Recording

RecordingArg = Annotated[
    Path,
    typer.Argument(
        help="A .cbor session recording, or - to read one from stdin (copied to a temporary "
        "file first: the recording is read out of order).",
        metavar="REC",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SecretsOpt = Annotated[
    bool,
    typer.Option(
        "--show-secrets", help="Show secret-looking arguments, values and output unmasked."
    ),
]


def _console(width: int | None = None) -> "Console":
    from rich.console import Console  # rich loads lazily: --help stays quick

    # Recorded text is only ever printed as Text (never markup), escaped by reclab.timeline.
    return Console(width=width, highlight=False, markup=False, emoji=False, soft_wrap=False)


def _json_out(data: Any) -> None:
    import json  # not at start-up: `reclab --help` lists commands only

    from ..terminal import json_safe  # C1 and bidi controls escaped: a terminal acts on them

    sys.stdout.write(json_safe(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")


def _argv_text(cmd: "Command", secrets: bool) -> str:
    import shlex  # not at start-up: `reclab --help` lists commands only

    from ..redact import mask_argv

    argv = cmd.argv or ([cmd.path] if cmd.path else [])
    return shlex.join(argv if secrets else mask_argv(argv))


# --- info ---------------------------------------------------------------------------


@app.command(
    epilog=examples(
        "reclab info sample-recordings/failing-build.cbor",
        "reclab info session.cbor --json | jq .duration",
        "ssh ci-host cat /var/rec/build.cbor | reclab info -",
    )
)
def info(recording: RecordingArg, as_json: JsonOpt = False) -> None:
    """Summarise a recording: session header, times, commands and exit codes, bytes per
    stream, frames by type, agent errors, signals and truncation.

    With --json the summary is one JSON object with stable keys (documented in
    reclab.summary.SessionSummary.to_json): path, size, records, header, footer,
    start_time/end_time (Unix ns), start/end (ISO 8601), duration (s), commands,
    bytes, frames, records_by_type, logs, file_ops, signals, errors, truncation.
    """
    from dataclasses import replace

    from ..summary import summarize

    with recording_file(recording) as path:
        rec = open_or_fail(path)
        with rec:
            summary = summarize(rec)
    if is_stdin(recording):
        summary = replace(summary, path="-")
    if as_json:
        _json_out(summary.to_json())
        return
    from ..render import info_table

    _console().print(info_table(summary))


# --- commands -----------------------------------------------------------------------


@app.command(
    epilog=examples(
        "reclab commands session.cbor --where 'exit_code != 0' --sort=-duration",
        "reclab commands session.cbor --json | jq '.[].argv'",
    )
)
def commands(
    recording: RecordingArg,
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            "-w",
            help="pandas query over the commands table, e.g. 'exit_code != 0 and duration > 2'.",
            metavar="QUERY",
            show_default=False,
        ),
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            "-s",
            help="Sort by a column of the commands table; --sort=-duration for descending.",
            metavar="COLUMN",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    show_secrets: SecretsOpt = False,
) -> None:
    """List the commands: seq, argv, cwd, start, duration, exit code, bytes.

    --where filters with a pandas query over the commands table (columns as in
    `reclab export --csv`); --json prints a list of objects with keys seq, path,
    argv, cwd, start_time, end_time (Unix ns), duration (s), exit_code,
    exit_frame_code, frames, bytes {stdin, stdout, stderr, extra}, signals,
    errors, complete. Secret-looking arguments (--password X, TOKEN=X, known
    key formats) are shown as *** unless --show-secrets.
    """
    from ..summary import command_json, select_commands

    with recording_file(recording) as path:
        rec = open_or_fail(path)
        with rec:
            try:
                seqs = select_commands(rec, where, sort)
            except ValueError as exc:
                fail(str(exc))
            cmds = [rec.commands[s] for s in seqs]
    if as_json:
        _json_out([command_json(c, secrets=show_secrets) for c in cmds])
        return
    console = _console()
    for line in _command_lines(cmds, console.width, secrets=show_secrets):
        console.print(line)


def _command_lines(cmds: list["Command"], width: int, *, secrets: bool) -> Iterator["Text"]:
    from rich.text import Text

    from ..text import format_duration, format_time, safe_text

    if not cmds:
        yield Text("no commands", style="dim")
        return
    rows: list[tuple[str, str, str, str, str]] = []
    for c in cmds:
        start = format_time(c.start_time)[11:23] if c.start_time is not None else "-"
        dur = format_duration(c.duration) if c.duration is not None else "-"
        code = "-" if c.exit_code is None else str(c.exit_code)
        output = c.bytes_received.get(1, 0) + c.bytes_received.get(2, 0)
        rows.append((str(c.seq), start, dur, code, format_size(output)))
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
        line.append(safe_text(_argv_text(c, secrets), argv_w))
        yield line


# --- timeline -----------------------------------------------------------------------


@app.command(
    epilog=examples(
        "reclab timeline sample-recordings/concurrent.cbor",
        "reclab timeline session.cbor --seq 3 --width 120",
    )
)
def timeline(
    recording: RecordingArg,
    seq: Annotated[
        int | None,
        typer.Option(
            "--seq",
            "-n",
            help="Show this command's frames instead of the session.",
            metavar="N",
            show_default=False,
        ),
    ] = None,
    width: Annotated[
        int | None,
        typer.Option(
            "--width",
            "-W",
            min=40,
            help="Output width in columns, 40 or more (default: the terminal's).",
            metavar="COLUMNS",
            show_default=False,
        ),
    ] = None,
    show_secrets: SecretsOpt = False,
) -> None:
    """Draw the session as a Gantt chart of commands over time, or one command's frames.

    Without --seq: one row per command, a bar from its start to its end
    (green exit 0, red another code, yellow no recorded end) on a shared time
    axis, so concurrent commands overlap. With --seq N: every frame of command N
    in recorded order with its time since the command start (+0.000123s),
    direction (→ sent to the agent, ← received), type, stream, size and an
    escaped preview, in which secret-looking values are masked unless
    --show-secrets.
    """
    console = _console(width)
    with recording_file(recording) as path:
        _timeline(console, open_or_fail(path), path, seq, show_secrets)


def _timeline(
    console: "Console", rec: "Recording", path: Path, seq: int | None, show_secrets: bool
) -> None:
    from rich.text import Text

    from ..timeline import command_spans, frame_rows, render_frames, render_gantt

    with rec, reading(path):
        if seq is None:
            origin = rec.header.start_time if rec.header is not None else None
            until = rec.footer.end_time if rec.footer is not None else None
            for line in render_gantt(command_spans(rec), console.width, origin=origin, until=until):
                console.print(line)
            return
        preview = max(16, console.width - 36)
        shown = 0
        for line in render_frames(frame_rows(rec, seq, preview=preview, secrets=show_secrets)):
            console.print(line)
            shown += 1
        if not shown:
            console.print(Text(f"command {seq} has no frames", style="dim"))


# --- cat ----------------------------------------------------------------------------


def parse_stream(value: str) -> tuple[tuple[int, ...], "Direction"]:
    """``--stream`` as (stream numbers, direction): stdin is sent, the others received."""
    from agentproto import Direction  # not at import: its types cost --help a third

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


STREAM_NAMES = ("stdout", "stderr", "both", "stdin")


def _complete_stream(incomplete: str) -> list[str]:
    return [name for name in STREAM_NAMES if name.startswith(incomplete)]


@app.command(
    epilog=examples(
        "reclab cat sample-recordings/failing-build.cbor --seq 1 --stream both > build.log",
        "reclab cat session.cbor -n 3 | less -R",
    )
)
def cat(
    recording: RecordingArg,
    seq: Annotated[
        int,
        typer.Option(
            "--seq", "-n", help="The command (sequence number).", metavar="N", show_default=False
        ),
    ],
    stream: Annotated[
        str,
        typer.Option(
            "--stream",
            help="stdout, stderr, both (interleaved in recorded order), stdin, or a descriptor "
            "number.",
            metavar="STREAM",
            autocompletion=_complete_stream,
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
    with recording_file(recording) as path:
        _cat(open_or_fail(path), path, seq, streams, direction, raw)


def _cat(
    rec: "Recording",
    path: Path,
    seq: int,
    streams: tuple[int, ...],
    direction: "Direction",
    raw: bool,
) -> None:
    from ..terminal import TerminalFilter

    out = sys.stdout.buffer
    screen = None if raw or not sys.stdout.isatty() else TerminalFilter()
    with rec, reading(path):
        cmd = rec.command(seq)  # unknown seq: one-line error before any output
        extra = [s for s in streams if s > 2]
        had = set(cmd.bytes_received) | set(cmd.exec.extra_fds or [])
        missing = [s for s in extra if s not in had]
        if missing:
            known = ", ".join(str(s) for s in sorted(s for s in had if s > 2)) or "none"
            fail(
                f"command {seq} has no stream {missing[0]} "
                f"(its extra descriptors: {known}; or use stdout, stderr, both, stdin)"
            )
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


# How long check works before it shows a progress bar (on a terminal only).
PROGRESS_DELAY = 0.5


@app.command(
    epilog=examples(
        "reclab check sample-recordings/cut-off.cbor",
        "reclab check session.cbor --quiet || echo 'not conformant'",
        "reclab check session.cbor --json | jq '.findings[].code'",
    )
)
def check(
    recording: RecordingArg,
    as_json: JsonOpt = False,
    max_per_code: Annotated[
        int,
        typer.Option(
            "--max", min=1, help="Findings listed per code (all are counted).", metavar="N"
        ),
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
    On a terminal, a progress bar on stderr shows how far a long check is.
    """
    from ..check import Severity, check_recording
    from ..model import open_recording
    from .export import LazyProgress

    with recording_file(recording) as path, reading(path):
        # Refuse what is not a recording at all with the same one line as the other commands.
        open_recording(path, index=False).close()
        size = path.stat().st_size
        with LazyProgress(None, delay=PROGRESS_DELAY) as bar:
            bar.stage("checking")
            report = check_recording(
                path, max_per_code=max_per_code, progress=lambda done: bar.update(done, size)
            )
    if as_json:
        _json_out({"path": str(recording), **report.to_json()})
    else:
        from ..render import check_summary, finding_lines

        console = _console()
        minimum = Severity.ERROR if quiet else Severity.INFO
        for line in finding_lines(report, minimum):
            console.print(line, soft_wrap=True)  # one finding per line, for grep
        console.print(check_summary(report))
    if not report.ok:
        raise typer.Exit(1)
