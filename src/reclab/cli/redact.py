"""``reclab redact``: a copy of a recording with its secrets masked."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from .app import app, examples, fail, warn


@app.command(
    epilog=examples(
        "reclab redact session.cbor -o shared.cbor",
        "reclab redact session.cbor -o shared.cbor --env 'DB_*' --data 'id-[0-9a-f]{32}' --argv",
    )
)
def redact(
    recording: Annotated[
        Path,
        typer.Argument(help="A .cbor session recording.", metavar="REC", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="OUT", help="Where to write the redacted recording."
        ),
    ],
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            metavar="PATTERN",
            help="Also mask environment values whose name matches this glob or /regex/.",
        ),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            metavar="REGEX",
            help="Also mask bytes matching this regex in output, stdin, file-op data and logs "
            "(a group named 'secret' masks only that group).",
        ),
    ] = None,
    no_default_data: Annotated[
        bool,
        typer.Option("--no-default-data", help="Do not apply the built-in key and token patterns."),
    ] = False,
    argv: Annotated[
        bool, typer.Option("--argv", help="Mask secret-looking arguments of command lines too.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.")
    ] = False,
) -> None:
    """Write a copy of REC with secrets masked: a valid recording that Go reads.

    Masks environment values whose names look secret (TOKEN, SECRET, PASSWORD,
    PASSWD, KEY, CREDENTIAL, AUTH, plus --env), common key and token formats and
    NAME=value assignments in stream data, file-op data and log lines (each
    masked byte becomes '*', so sizes stay true), and with --argv, arguments.
    """
    from ..redact import RedactError, RedactionPolicy, redact_recording

    if recording.is_dir():
        fail(f"{recording}: is a directory, not a recording")
    if not recording.exists():
        fail(f"{recording}: no such file")
    if output.resolve() == recording.resolve():
        fail(f"-o {output}: that is the recording itself; write the copy to another file")
    if output.exists() and not force:
        fail(f"{output}: already exists (give --force to overwrite it)")
    try:
        policy = RedactionPolicy.build(
            env_names=env or (),
            data=data or (),
            default_data=not no_default_data,
            argv=argv,
        )
        summary = redact_recording(recording, output, policy)
    except RedactError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or output}: {exc.strerror or exc}")
    if summary.records == 0 and summary.stopped is not None:
        output.unlink(missing_ok=True)
        fail(f"{recording}: not a recording ({summary.stopped})")
    for skipped in summary.damage:
        warn(f"{recording}: {skipped}")
    if summary.stopped is not None:
        warn(f"{recording}: {summary.stopped}")
    if as_json:
        import json  # not at start-up: `reclab --help` lists commands only

        sys.stdout.write(json.dumps({"output": str(output), **summary.to_json()}, indent=2) + "\n")
        return
    matches = ", ".join(f"{name} {n}" for name, n in sorted(summary.data_matches.items()))
    print(
        f"{output}: {summary.records} records; masked {summary.env_values} environment values, "
        f"{summary.data_bytes} data bytes ({matches or 'no pattern matched'}), "
        f"{summary.log_items} log lines, {summary.argv_items} arguments",
        file=sys.stderr,
    )
