"""Every reclab command has --help text and is documented in README.md (as sqlite-utils does)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from reclab.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
ROOT_COMMAND = typer.main.get_command(app)
# typer vendors its own click: its classes, not the click package's.
assert isinstance(ROOT_COMMAND, typer.core.TyperGroup)


def _commands(group: typer.core.TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path, subcommands of groups included: ("export",), ("x", "y")..."""
    found = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        found.append((*prefix, name))
        if isinstance(command, typer.core.TyperGroup):
            found.extend(_commands(command, (*prefix, name)))
    return found


COMMANDS = _commands(ROOT_COMMAND)
TOP_LEVEL = sorted(ROOT_COMMAND.commands)


def test_the_inspection_commands_are_registered() -> None:
    assert {"info", "commands", "timeline", "cat", "check"} <= set(TOP_LEVEL)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert f"Usage: reclab {' '.join(path)}" in " ".join(result.output.split())
    command = ROOT_COMMAND
    for name in path:
        assert isinstance(command, typer.core.TyperGroup)
        command = command.commands[name]
    text = (command.help or "").strip()
    assert len(text) >= 20, f"reclab {' '.join(path)} needs a real help text"
    # every option documents itself too
    for param in command.params:
        if isinstance(param, typer.core.TyperOption) and not param.hidden:
            assert param.help, f"reclab {' '.join(path)} {param.opts[0]} has no help"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_command_is_in_readme(name: str) -> None:
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    assert f"reclab {name}" in text, f"README.md does not document `reclab {name}`"


# --- help that reads well --------------------------------------------------------------

# export's options are another change's (issue 12, "Exports"); its help is checked there.
OWN = [path for path in COMMANDS if path[0] != "export"]


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", [(), *OWN], ids=lambda p: " ".join(p) or "reclab")
def test_help_shows_no_type_names(path: tuple[str, ...]) -> None:
    """Metavars read as words (REC, N, QUERY): no <bool>, <list[str]> or {recording}."""
    text = _help(*path)
    labels = re.findall(r"<(?:bool|str|int|float|path|list\[|int range|float range)[^>]*>", text)
    assert not labels, f"reclab {' '.join(path)} --help shows {labels}"
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage


@pytest.mark.parametrize("path", OWN, ids=" ".join)
def test_help_has_examples(path: tuple[str, ...]) -> None:
    text = _help(*path)
    assert "Examples:" in text
    examples = text.split("Examples:", 1)[1]
    assert f"reclab {path[0]}" in examples


# "reclab exits with...", "from reclab import": prose and Python, not commands
PROSE = {"exits", "is", "writes", "reads", "picks", "never", "stays", "import"}


def _named_commands(text: str) -> set[str]:
    # `reclab NAME`, where NAME is a word (not an option, a path or a placeholder)
    return set(re.findall(r"\breclab ([a-z][a-z-]+)\b(?![./])", text)) - PROSE


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "reclab")
def test_help_names_only_commands_that_exist(path: tuple[str, ...]) -> None:
    named = _named_commands(_help(*path))
    assert named <= set(TOP_LEVEL), f"reclab {' '.join(path)} --help names {named - set(TOP_LEVEL)}"


def test_readme_names_only_commands_and_options_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    assert _named_commands(text) <= set(TOP_LEVEL)
    # `reclab CMD --option` in running text: the option exists on that command
    for name, option in set(re.findall(r"`reclab ([a-z]+) (--[a-z-]+)", text)):
        command = ROOT_COMMAND.commands[name]
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        assert option in options, f"README: reclab {name} has no {option}"


# --- shell completion (typer's own) -----------------------------------------------------

RECLAB = [sys.executable, "-m", "reclab"]


def test_show_completion_prints_a_bash_script_for_reclab() -> None:
    result = subprocess.run(
        [*RECLAB, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "_RECLAB_COMPLETE=complete_bash" in result.stdout
    assert result.stdout.rstrip().endswith(" reclab")  # complete ... -F _reclab_completion reclab


def _complete(line: str) -> list[str]:
    words = line.split(" ")
    env = {
        **os.environ,
        "_RECLAB_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
    }
    result = subprocess.run(RECLAB, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_offers_commands_options_and_stream_names() -> None:
    assert {"check", "commands"} <= set(_complete("reclab c"))
    assert "--stream" in _complete("reclab cat rec.cbor --st")
    assert _complete("reclab cat rec.cbor --stream std") == ["stdout", "stderr", "stdin"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["cat", "rec.cbor"],
            "reclab: error: Missing option '--seq' / '-n' (see reclab cat --help)",
        ),
        (["info", "--jsn"], "reclab: error: No such option: --jsn (Possible options: --json)"),
        (["nosuch"], "reclab: error: No such command 'nosuch' (see reclab --help)"),
        (["info"], "reclab: error: Missing argument 'REC' (see reclab info --help)"),
    ],
)
def test_a_usage_error_is_one_line(args: list[str], message: str) -> None:
    result = subprocess.run([*RECLAB, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message)
