"""Every reclab command has --help text and is documented in README.md (as sqlite-utils does)."""

from __future__ import annotations

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
