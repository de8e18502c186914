"""``reclab run``: run commands through an agent, pass their I/O through, record the session.

A thin shell over :mod:`reclab.runner`: one agent connection per command,
stdin/stdout/stderr passed through byte for byte, signals forwarded,
the command's exit code as reclab's own.
"""

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .app import app, examples, fail, warn

if TYPE_CHECKING:
    from agentproto import LogEntry
    from agentproto.address import Address

LOG_LEVELS = ("debug", "info", "warning", "error")
_SLOG_NAMES = {-4: "DEBUG", 0: "INFO", 4: "WARN", 8: "ERROR"}


def default_output(directory: Path | None = None) -> Path:
    """A fresh timestamped recording name in ``directory`` (default: the cwd)."""
    base = directory or Path.cwd()
    stem = time.strftime("reclab-%Y%m%d-%H%M%S")
    path = base / f"{stem}.cbor"
    n = 2
    while path.exists():
        path = base / f"{stem}-{n}.cbor"
        n += 1
    return path


def parse_script(text: str, *, source: str = "script") -> list[list[str]]:
    """Commands of a script: one shell-quoted command per line; blank and ``#`` lines skipped."""
    import shlex  # not at start-up: `reclab --help` lists commands only

    commands: list[list[str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            argv = shlex.split(stripped, comments=True)
        except ValueError as exc:
            raise ValueError(f"{source}:{number}: {exc}") from None
        if argv:
            commands.append(argv)
    return commands


def _print_log(entry: "LogEntry") -> None:
    level = _SLOG_NAMES.get(entry.level, str(entry.level))
    attrs = " ".join(entry.attrs)
    print(f"reclab: agent log: {level} {entry.msg} {attrs}".rstrip(), file=sys.stderr, flush=True)


def _print_agent_error(text: str) -> None:
    from agentproto.auth import REFUSED_PREFIX

    if text.startswith(REFUSED_PREFIX):
        return  # the command's failure says it, once
    print(f"reclab: agent error: {text}", file=sys.stderr, flush=True)


def _print_agent_stderr(line: str) -> None:
    print(f"reclab: agent stderr: {line}", file=sys.stderr, flush=True)


@app.command(
    "run",
    context_settings={"allow_interspersed_args": False},
    epilog=examples(
        "reclab run -o build.cbor -- make -j4",
        "reclab run --agent 'ssh build-host agentproto-agent' -- ls -l /srv",
        "reclab run --script steps.txt --parallel -o ci.cbor",
    ),
)
def run(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="The program and its arguments (after --).",
            metavar="PROGRAM [ARGS]...",
            show_default=False,
        ),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            help="Agent command line, split like a shell would, e.g. 'ssh host mproxy-agent'. "
            "Default: this package's agent as a local subprocess.",
            metavar="CMD",
            show_default=False,
        ),
    ] = None,
    connect: Annotated[
        str | None,
        typer.Option(
            help="Use an agent listening at unix:/path or tcp:[HOST:]PORT "
            "(agentproto-agent --listen) instead of starting one; one connection per command.",
            metavar="ADDR",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="With --connect: present the token in FILE (mode 0600) to the listening agent. "
            "Default: $AGENTPROTO_TOKEN if set.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    agent_log_level: Annotated[
        str | None,
        typer.Option(
            help="Log level of the default agent (debug, info, warning, error); its logs are "
            "recorded as FrameLog.",
            metavar="LEVEL",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Recording file. Default: reclab-YYYYmmdd-HHMMSS.cbor in the current directory.",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VALUE for the command's environment (repeatable).",
            metavar="NAME=VALUE",
            show_default=False,
        ),
    ] = None,
    env_keep: Annotated[
        list[str] | None,
        typer.Option(
            help="Agent variables to pass to the command: glob or /regex/ (repeatable).",
            metavar="PATTERN",
            show_default=False,
        ),
    ] = None,
    env_remove: Annotated[
        list[str] | None,
        typer.Option(
            help="Variables to drop from the command's environment (repeatable).",
            metavar="PATTERN",
            show_default=False,
        ),
    ] = None,
    cwd: Annotated[
        str | None,
        typer.Option(
            help="Working directory of the command on the agent's machine.",
            metavar="DIR",
            show_default=False,
        ),
    ] = None,
    fd: Annotated[
        list[int] | None,
        typer.Option(
            help="Extra descriptor N (3 or more) the command writes to; its output goes to "
            "reclab's own fd N (repeatable), e.g. --fd 3 ... 3>out.txt.",
            metavar="N",
            show_default=False,
        ),
    ] = None,
    script: Annotated[
        Path | None,
        typer.Option(
            help="Run the commands of FILE, one shell-quoted command per line, in one session "
            "(they get no stdin).",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    parallel: Annotated[
        bool, typer.Option("--parallel", help="Run the --script commands concurrently.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the -o recording if it exists.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the agent's logs and stderr on stderr."),
    ] = False,
) -> None:
    """Run a command through an agent and record the session.

    stdin, stdout and stderr pass through byte for byte; SIGINT, SIGTERM, SIGHUP,
    SIGQUIT, SIGUSR1 and SIGUSR2 go to the command. The third SIGINT, SIGTERM,
    SIGHUP or SIGQUIT gives up on the command. reclab exits with the command's
    exit code.

    Output is written as it arrives, in the order it is recorded: where stdout
    and stderr go to the same terminal, file or pipe (2>&1) it reads as in
    the recording. Where they go to different places (| less, 2>err.txt) each
    reader shows its part when it likes, and no writer can keep the order
    there: reclab cat REC --seq N --stream both gives the recorded one. With
    --parallel, the outputs of different commands interleave as they come.

    With --script: 0 if every command succeeded, else the code of the first
    that failed; a SIGINT, SIGTERM, SIGHUP or SIGQUIT stops the script after
    the current command.
    """
    from agentproto import AgentConfig

    from ..live.errors import AgentLostError, AgentStartError
    from ..live.run import EXIT_AGENT_FAILED, RunPlan, RunReporter, exec_messages, record_run

    argvs = _commands(command, script, parallel)
    agent_argv, address, token = _where(agent, connect, token_file, agent_log_level)
    plan = RunPlan(
        execs=exec_messages(argvs, env=_exec_env(env, env_keep), cwd=cwd),
        agent_argv=agent_argv,
        address=address,
        token=token,
        config=(
            AgentConfig(env_keep=env_keep, env_remove=env_remove)
            if env_keep or env_remove
            else None
        ),
        extra_fds=_extra_fds(fd or []),
        script=script is not None,
        parallel=parallel,
        default_agent=agent is None and connect is None,
    )
    output = _output_path(output, force)
    _route_library_warnings()
    reporter = RunReporter(
        agent_log=_print_log if verbose else None,
        agent_error=_print_agent_error,
        agent_stderr=_print_agent_stderr if verbose else None,
        notice=_print_notice,
        recording_failed=lambda exc: print(
            f"reclab: warning: the recording stopped: {exc.strerror or exc}; {output} holds "
            "what came before (a reader reports it cut short)",
            file=sys.stderr,
            flush=True,
        ),
    )
    try:
        outcome = record_run(plan, output, reporter)
    except (AgentStartError, AgentLostError) as exc:  # before OSError: they are OSErrors too
        fail(str(exc), EXIT_AGENT_FAILED)
    except OSError as exc:
        fail(f"cannot write the recording {output}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        # a Ctrl-C before the signal relay was installed (or after it was removed)
        raise typer.Exit(130) from None
    if not outcome.abandoned_by:
        for message in outcome.lost:
            print(f"reclab: error: {message}", file=sys.stderr)
    raise typer.Exit(outcome.exit_status)


def _where(
    agent: str | None, connect: str | None, token_file: Path | None, agent_log_level: str | None
) -> tuple[list[str] | None, "Address | None", bytes | None]:
    """(agent argv, address, token) from the options; one-line errors for bad ones."""
    from agentproto import auth
    from agentproto.address import parse_address

    from ..live.backend import agent_command

    if token_file is not None and connect is None:
        fail(f"--token-file {token_file}: a token is for an agent reached with --connect ADDR")
    if agent_log_level is not None and agent_log_level not in LOG_LEVELS:
        fail(f"--agent-log-level {agent_log_level}: expected one of {', '.join(LOG_LEVELS)}")
    if (agent is not None or connect is not None) and agent_log_level is not None:
        warn("--agent-log-level applies to the default agent only: ignored")
    if connect is None:
        try:
            return agent_command(agent, log_level=None if agent else agent_log_level), None, None
        except ValueError as exc:
            fail(f"--agent {agent!r}: {str(exc)[:1].lower()}{str(exc)[1:]}")
    if agent is not None:
        fail("--agent and --connect: give one, not both")
    try:
        address = parse_address(connect)
    except ValueError as exc:
        fail(f"--connect {exc}")
    try:
        token = auth.read_token_file(token_file) if token_file else auth.token_from_env()
    except auth.TokenError as exc:
        fail(str(exc))
    return None, address, token


def _output_path(output: Path | None, force: bool) -> Path:
    """The recording's path: the default name (announced), or ``-o`` checked."""
    if output is None:
        output = default_output()
        print(f"reclab: recording to {output}", file=sys.stderr, flush=True)
    elif output.is_dir():
        fail(f"{output}: is a directory")
    elif output.exists() and not force:
        fail(f"{output}: already exists (give --force to overwrite it)")
    return output


def _print_notice(text: str) -> None:
    print(f"reclab: {text}", file=sys.stderr, flush=True)


def _route_library_warnings() -> None:
    """Show agentproto's warnings (an invalid frame from the agent) as reclab's one-liners."""
    import logging  # not at start-up: `reclab --help` lists commands only

    log = logging.getLogger("agentproto")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("reclab: warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        log.addHandler(handler)
        log.propagate = False


def _commands(command: list[str] | None, script: Path | None, parallel: bool) -> list[list[str]]:
    if command and script is not None:
        fail("give either -- PROGRAM ARGS... or --script FILE, not both")
    if parallel and script is None:
        fail("--parallel needs --script FILE")
    if script is None:
        if not command:
            fail("nothing to run: give -- PROGRAM ARGS... or --script FILE")
        return [list(command)]
    try:
        text = script.read_text(encoding="utf-8")
    except IsADirectoryError:
        fail(f"--script {script}: is a directory")
    except OSError as exc:
        fail(f"--script {script}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail(f"--script {script}: not a UTF-8 text file")
    try:
        argvs = parse_script(text, source=str(script))
    except ValueError as exc:
        fail(str(exc))
    if not argvs:
        fail(f"--script {script}: no commands in it (only blank and # lines)")
    return argvs


def _extra_fds(numbers: list[int]) -> dict[int, int | None]:
    fds: dict[int, int | None] = {}
    for n in numbers:
        if not 3 <= n <= 1023:
            fail(f"--fd {n}: extra descriptors are numbered 3 to 1023")
        try:
            os.fstat(n)
        except OSError:
            fail(f"--fd {n}: descriptor {n} is not open here (redirect it, e.g. {n}>file)")
        fds[n] = None  # the command's fd n goes to our own fd n
    return fds


def _exec_env(env: list[str] | None, env_keep: list[str] | None) -> list[str] | None:
    """ExecMsg.env: None (the agent's whole environment) unless --env or --env-keep are given."""
    if not env and not env_keep:
        return None
    for entry in env or []:
        name, sep, _ = entry.partition("=")
        if not sep or not name:
            fail(f"--env {entry!r}: expected NAME=VALUE")
    return list(env or [])
