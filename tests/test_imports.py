"""Imports point one way (issue 8), checked in a fresh interpreter per module.

- agentproto never imports reclab;
- reading code (the data layer of agentproto, reclab's model, tables, views,
  the inspect and export commands) never imports the live stack (the mux, the
  agent, the file-op server, reclab's runner);
- nothing but reclab.tui imports Textual.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
LIVE = ("agentproto.mux", "agentproto.agent", "agentproto.fileops", "reclab.runner", "reclab.live")

READING = [
    "agentproto",
    "agentproto.types",
    "agentproto.wire",
    "agentproto.codec",
    "agentproto.layout",
    "agentproto.recording",
    "reclab",
    "reclab.errors",
    "reclab.model",
    "reclab.text",
    "reclab.render",
    "reclab.summary",
    "reclab.tables",
    "reclab.timeline",
    "reclab.check",
    "reclab.asciicast",
    "reclab.export",
    "reclab.cli.inspect",
    "reclab.cli.export",
]


def all_modules() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def imported_by(module: str) -> set[str]:
    """The modules loaded by ``import module`` in a fresh interpreter."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    ).stdout
    return set(json.loads(out))


def test_the_module_lists_are_real() -> None:
    modules = all_modules()
    assert set(READING) <= set(modules)
    assert "agentproto.mux" in modules


@pytest.mark.parametrize("module", [m for m in all_modules() if not m.startswith("reclab.tui")])
def test_one_way_imports(module: str) -> None:
    loaded = imported_by(module)
    assert not any(m == "textual" or m.startswith("textual.") for m in loaded)
    if module.startswith("agentproto"):
        assert not any(m == "reclab" or m.startswith("reclab.") for m in loaded)
    if module in READING:
        assert not [m for m in loaded if m.startswith(LIVE)]


def test_the_types_do_not_pay_for_the_live_side() -> None:
    loaded = imported_by("agentproto")
    assert "agentproto.mux" not in loaded and "agentproto.types" not in loaded
    code = "from agentproto import Direction; import sys; print('agentproto.mux' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "False"


def test_the_cli_loads_only_what_help_needs() -> None:
    """`reclab --help` imports the command modules: what only a command uses waits for it."""
    extra = imported_by("reclab.cli") - imported_by("typer")
    assert not extra & {"json", "logging", "shlex", "agentproto.types", "cbor2", "numpy"}


def test_command_signatures_are_objects_not_strings() -> None:
    """typer evaluates string annotations (PEP 563) of every command at each start-up."""
    import inspect

    from reclab.cli import app

    callbacks = [info.callback for info in app.registered_commands]
    assert len(callbacks) > 10
    if app.registered_callback is not None:
        callbacks.append(app.registered_callback.callback)
    for fn in callbacks:
        assert fn is not None
        strings = [k for k, v in inspect.get_annotations(fn).items() if isinstance(v, str)]
        assert not strings, f"{fn.__module__}.{fn.__name__}: {strings}"


def test_the_viewer_starts_without_pandas() -> None:
    """`reclab view` draws its first screen before pandas (File ops and Logs tabs) loads."""
    loaded = imported_by("reclab.tui.app")
    assert "textual" in loaded
    assert "pandas" not in loaded and "reclab.tables" not in loaded
