"""The README's Python examples really run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "README.md should carry runnable Python examples"


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(README.parent)
    exec(compile(source, "README.md", "exec"), {"__name__": "readme_example", "TMP": tmp_path})


SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
EXPORTS = [
    line.strip()
    for block in SHELL_BLOCKS
    for line in block.splitlines()
    if line.strip().startswith("reclab export ")
]


def test_readme_has_export_examples() -> None:
    assert len(EXPORTS) >= 5


@pytest.mark.parametrize("line", EXPORTS)
def test_readme_export_example_runs(
    line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `reclab export` line of the README, on a sample recording with every table."""
    import shlex

    from typer.testing import CliRunner

    from reclab.cli import app

    sample = README.parent / "sample-recordings" / "fileops.cbor"
    monkeypatch.chdir(tmp_path)  # output files land here
    args = [
        str(sample) if arg.endswith(".cbor") else arg
        for arg in shlex.split(line, comments=True)[1:]
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr
