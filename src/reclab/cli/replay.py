"""``reclab replay``, ``reclab serve`` and ``reclab diff``: thin shells over :mod:`reclab.replay`.

Exit statuses (replay --run and diff): 0 when every command matched, 1 when
something diverged, 2 on error (an unreadable or cut recording, an agent
that would not start or was lost). Every error is one line on stderr.
"""

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import app, examples, fail, warn

if TYPE_CHECKING:
    from ..model import Recording
    from ..replay.compare import Comparison

Timing = Annotated[
    str,
    typer.Option(
        help="recorded: keep the recorded relative times (scaled by --speed); fast: no waiting.",
        metavar="recorded|fast",
    ),
]
Speed = Annotated[
    float,
    typer.Option(help="With --timing recorded: play this many times faster.", metavar="FACTOR"),
]
Ignore = Annotated[
    list[str] | None,
    typer.Option(
        help="Regular expression masking expected differences in output (timestamps, temp "
        "names), applied line by line (repeatable).",
        metavar="REGEX",
        show_default=False,
    ),
]
Logs = Annotated[bool, typer.Option("--logs", help="Also compare the agent's logs and errors.")]
Json = Annotated[
    bool, typer.Option("--json", help="Print the report as a stable JSON document for CI.")
]


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Reading problems as one line on stderr and exit status 2."""
    from agentproto import RemoteProtocolError

    from ..model import RecordingError, UnknownCommandError

    try:
        yield
    except (RecordingError, UnknownCommandError) as exc:
        fail(str(exc))
    except RemoteProtocolError as exc:
        fail(f"{path}: unreadable record: {exc}")
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")


def _open(path: Path) -> "Recording":
    from ..model import open_recording

    with _reading(path):
        rec = open_recording(path)
    cut = rec.truncation
    if cut is not None and cut.kind != "no-footer":
        warn(f"{path}: {cut.message} at byte {cut.offset}; read up to there")
    return rec


def _options(ignore: list[str] | None, logs: bool) -> Any:
    from ..replay.compare import CompareOptions

    try:
        return CompareOptions.from_patterns(ignore or [], logs=logs)
    except ValueError as exc:
        fail(str(exc))


def _check_timing(timing: str, speed: float) -> None:
    if timing not in ("recorded", "fast"):
        fail(f"--timing {timing}: expected recorded or fast")
    if not speed > 0:
        fail(f"--speed {speed}: must be more than 0")


def _print_report(report: "Comparison", as_json: bool) -> None:
    from rich.console import Console

    from ..replay.report import comparison_table, summary_line

    if as_json:
        import json  # not at start-up: `reclab --help` lists commands only

        sys.stdout.write(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        console = Console(highlight=False, markup=False, emoji=False, soft_wrap=False)
        console.print(comparison_table(report))
        console.print(summary_line(report))
    for error in report.errors:
        print(f"reclab: error: {error}", file=sys.stderr)
    raise typer.Exit(report.status)


@app.command(
    "replay",
    epilog=examples(
        "reclab replay build.cbor",
        "reclab replay build.cbor --run --timing fast --ignore '\\d+\\.\\d+s'",
    ),
)
def replay_command(
    recording: Annotated[Path, typer.Argument(help="The recording to replay.", metavar="REC")],
    run: Annotated[
        bool,
        typer.Option(
            "--run",
            help="Really send it (runs the recorded commands); without it, "
            "only the plan is printed.",
        ),
    ] = False,
    agent: Annotated[
        str | None,
        typer.Option(
            help="Agent command line, e.g. 'ssh host mproxy-agent'. Default: this package's "
            "agent as a local subprocess.",
            metavar="CMD",
            show_default=False,
        ),
    ] = None,
    connect: Annotated[
        str | None,
        typer.Option(
            help="Replay to an agent listening at unix:PATH or tcp:HOST:PORT instead.",
            metavar="ADDR",
            show_default=False,
        ),
    ] = None,
    timing: Timing = "recorded",
    speed: Speed = 1.0,
    seq: Annotated[
        list[int] | None,
        typer.Option(
            help="Replay only this command (repeatable).", metavar="N", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to record the replay. Default: a named temporary file (the report "
            "names it).",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the -o recording if it exists.")
    ] = False,
    ignore: Ignore = None,
    logs: Logs = False,
    as_json: Json = False,
    timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a command may run after its last recorded frame went out, "
            "then it is abandoned.",
            metavar="SECONDS",
        ),
    ] = 300.0,
) -> None:
    """Replay a recording's commands against a live agent and report what changed.

    Without --run, print what would be sent (exec, env with secret-looking values masked, stdin,
    signals, file ops, PATH queries) and run nothing.

    With --run, send it (one connection per command), record the replay and compare it with
    the recording: exit 0 when everything matched, 1 when something diverged, 2 on error.
    """
    from agentproto.address import parse_address

    from ..replay.plan import build_plan
    from ..replay.report import plan_lines
    from ..replay.run import describe_target

    _check_timing(timing, speed)
    if agent is not None and connect is not None:
        fail("--agent and --connect: give one, not both")
    try:
        target = describe_target(agent, parse_address(connect) if connect else None)
    except ValueError as exc:
        fail(f"--connect {exc}" if connect else f"--agent: {exc}")
    options = _options(ignore, logs)
    if not timeout > 0:
        fail(f"--timeout {timeout}: must be more than 0")
    if output is not None and output.is_dir():
        fail(f"{output}: is a directory")
    if output is not None and run and output.exists() and not force:
        fail(f"{output}: already exists (give --force to overwrite it)")
    rec = _open(recording)
    with rec, _reading(recording):
        plan = build_plan(rec, seq)
        if not run:
            if as_json:
                import json  # not at start-up: `reclab --help` lists commands only

                sys.stdout.write(json.dumps(plan.to_json(target), indent=2) + "\n")
            else:
                for line in plan_lines(plan, target):
                    print(line)
            for number, problem in plan.problems.items():
                warn(f"command {number} cannot be replayed: {problem}")
            return
        _replay(rec, plan, output, agent, connect, timing, speed, timeout, options, as_json)


def _replay(
    rec: "Recording",
    plan: Any,
    output: Path | None,
    agent: str | None,
    connect: str | None,
    timing: str,
    speed: float,
    timeout: float,
    options: Any,
    as_json: bool,
) -> None:
    from ..replay.run import compare_replay, default_output, run_plan

    out = output if output is not None else default_output()
    print(
        f"reclab: replaying {len(plan.replayable)} of {len(plan.commands)} commands; "
        f"recording the replay to {out}",
        file=sys.stderr,
        flush=True,
    )
    try:
        result = run_plan(
            plan, out, agent=agent, connect=connect, timing=timing, speed=speed, timeout=timeout
        )
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the replay's recording {out}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        print(f"reclab: interrupted; the replay so far is in {out}", file=sys.stderr)
        raise typer.Exit(130) from None
    _print_report(compare_replay(rec, plan, result, options), as_json)


@app.command(
    "serve",
    epilog=examples(
        "reclab run --agent 'reclab serve build.cbor' -- make",
        "reclab serve build.cbor --listen unix:/tmp/agent.sock",
    ),
)
def serve_command(
    recording: Annotated[Path, typer.Argument(help="The recording to answer from.", metavar="REC")],
    listen: Annotated[
        str | None,
        typer.Option(
            help="Serve connections on unix:PATH (mode 0600) or tcp:HOST:PORT instead of "
            "stdin/stdout. Only this user or root (or the holder of the token) is answered; "
            "a TCP address other machines can reach needs a token.",
            metavar="ADDR",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="With --listen: also answer peers that present the token in this file "
            "(as the agent's --token-file; default $AGENTPROTO_TOKEN).",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    insecure_allow_any_peer: Annotated[
        bool,
        typer.Option(
            "--insecure-allow-any-peer",
            help="With --listen: answer anyone who can connect.",
        ),
    ] = False,
    timing: Timing = "recorded",
    speed: Speed = 1.0,
    match_env: Annotated[
        bool,
        typer.Option("--match-env", help="Match an exec's env too, not only path, argv and cwd."),
    ] = False,
) -> None:
    """Stand in for an agent: answer a runner's requests from a recording.

    Each exec, file op and PATH query gets the recorded answers of the matching recorded
    request; an unmatched one gets an error answer and a log line naming the closest recorded
    one. Speaks on stdin/stdout (as an agent under SSH), or with --listen on a socket.
    """
    from agentproto import auth

    from ..replay.serve import RecordedAgent, serve_listener, serve_stdio

    _check_timing(timing, speed)
    token = None
    if listen is not None:
        try:
            token = auth.read_token_file(token_file) if token_file else auth.token_from_env()
        except auth.TokenError as exc:
            fail(str(exc))
    rec = _open(recording)
    with rec, _reading(recording):
        agent = RecordedAgent(rec, timing=timing, speed=speed, match_env=match_env)
        if listen is None:
            serve_stdio(agent)
            return
        stop = threading.Event()
        # SIGTERM ends the listener as Ctrl-C does: the socket file is removed
        signal.signal(signal.SIGTERM, lambda _signo, _frame: stop.set())
        try:
            serve_listener(
                agent,
                listen,
                allow_any_peer=insecure_allow_any_peer,
                token=token,
                stop=stop,
                on_ready=lambda shown: print(
                    f"reclab serve: listening on {shown}", file=sys.stderr, flush=True
                ),
            )
        except ValueError as exc:
            fail(f"--listen {exc}")
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


@app.command(
    "diff",
    epilog=examples(
        "reclab diff before.cbor after.cbor",
        "reclab diff before.cbor after.cbor --match argv --ignore 'tmp\\.\\w+' --json",
    ),
)
def diff_command(
    first: Annotated[Path, typer.Argument(help="The first (reference) recording.", metavar="A")],
    second: Annotated[Path, typer.Argument(help="The recording to compare with it.", metavar="B")],
    match: Annotated[
        str,
        typer.Option(help="Pair commands by seq, or by argv and cwd in order.", metavar="seq|argv"),
    ] = "seq",
    ignore: Ignore = None,
    logs: Logs = False,
    as_json: Json = False,
) -> None:
    """Compare the commands of two recordings: exit codes, output, file ops, PATH answers.

    Exit 0 when every paired command matched and none is unpaired, 1 otherwise, 2 on error.
    """
    from ..replay.compare import compare_recordings

    if match not in ("seq", "argv"):
        fail(f"--match {match}: expected seq or argv")
    options = _options(ignore, logs)
    a = _open(first)
    b = _open(second)
    with a, b, _reading(first):
        report = compare_recordings(a, b, match=match, options=options)
    _print_report(report, as_json)
