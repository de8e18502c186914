"""``reclab view``: browse a recording in the terminal (the Textual viewer).

Textual is imported only here, inside the command, so the other commands
never pay for it. The recording is opened (its first record read) before any
screen is drawn: a missing file, a directory or a file that is not a
recording is one line on stderr and exit status 2, as for every command.
"""

from pathlib import Path
from typing import Annotated

import typer

from agentproto import RemoteProtocolError

from .app import app, examples, fail


@app.command(
    epilog=examples(
        "reclab view sample-recordings/failing-build.cbor",
        "reclab view --follow rec.cbor   (while reclab run records it in another terminal)",
        "reclab view before.cbor --diff after.cbor",
    )
)
def view(
    recording: Annotated[
        Path,
        typer.Argument(help="A .cbor session recording.", metavar="REC", show_default=False),
    ],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep reading a recording that is still being written, like tail -f.",
        ),
    ] = False,
    diff: Annotated[
        Path | None,
        typer.Option(
            "--diff",
            metavar="OTHER",
            help="Compare with another recording (as reclab diff) first; D shows it again.",
        ),
    ] = None,
) -> None:
    """Browse a recording: session, commands, timeline, frames, output, file ops, logs.

    The first screen appears at once, also for huge files, while the rest is
    indexed in the background. Press ? for every key, q to quit.

    r replays the selected command (after showing its plan and asking).
    """
    from ..model import RecordingError

    if diff is not None:
        _check_diff(diff)
    try:
        from ..tui.source import RecordingSource

        source = RecordingSource.open(recording)
    except RecordingError as exc:
        fail(str(exc))
    except RemoteProtocolError as exc:
        fail(f"{recording}: unreadable record: {exc}")
    except OSError as exc:
        fail(f"{recording}: {exc.strerror or exc}")
    from ..tui.app import ReclabApp

    try:
        ReclabApp(source, follow=follow, diff=diff).run()
    finally:
        source.close()


def _check_diff(diff: Path) -> None:
    """Exit 2 with one line, before any screen, if ``--diff`` is not a readable recording."""
    from ..model import RecordingError, open_recording

    if not diff.is_file():
        fail(f"--diff {diff}: {'is a directory' if diff.is_dir() else 'no such file'}")
    try:
        open_recording(diff, index=False).close()  # reads the first record only
    except (RecordingError, RemoteProtocolError) as exc:
        fail(f"--diff {exc}")
    except OSError as exc:
        fail(f"--diff {diff}: {exc.strerror or exc}")
