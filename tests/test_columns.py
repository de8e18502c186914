"""The small tables without pandas: same CSV bytes as pandas, and short commands stay light."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from builders import SAMPLES

from reclab.columns import Column, write_csv
from reclab.export import export_table
from reclab.model import open_recording
from reclab.tables import commands_table, session_table

SRC = Path(__file__).resolve().parent.parent / "src"
SAMPLE = Path(__file__).resolve().parent.parent / "sample-recordings" / "failing-build.cbor"


def pandas_csv(df: pd.DataFrame) -> str:
    """What export's pandas path writes (lists as JSON arrays, as CSV has no lists)."""
    from reclab.export import _csv_text

    out = io.StringIO()
    _csv_text(df).to_csv(out, index=False, lineterminator="\n")
    return out.getvalue()


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("table", ["commands", "session"])
def test_plain_csv_is_pandas_csv_on_every_sample(path: Path, table: str) -> None:
    with open_recording(path) as rec:
        out = io.StringIO()
        rows = export_table(rec, table, "csv", out)
        df = commands_table(rec) if table == "commands" else session_table(rec)
    assert out.getvalue() == pandas_csv(df)
    assert rows == len(df)


NS = 1_700_000_000_000_000_000


@pytest.mark.parametrize(
    "times",
    [
        [NS, NS + 500_000_000],  # milliseconds
        [NS, NS + 500_001_000],  # microseconds
        [NS, NS + 1],  # nanoseconds
        [NS, None, NS + 3_000_000_000],  # whole seconds, a missing value
        [None],
        [NS - 86_400 * 10**9 * 20_000],  # before 1970
    ],
)
def test_times_are_formatted_as_pandas_formats_a_column(times: list[int | None]) -> None:
    from reclab.tables import _frame_of

    columns: list[Column] = [
        ("t", "time", times),
        ("f", "float", [0.341848251, None, 1e16, 1e-5, 2.5e-7, 1 / 3][: len(times)]),
        ("i", "Int64", [None, 3, -7, 0, 1, 2][: len(times)]),
        ("s", "str", ['a,"b"', None, "é\nx", "", " ", "-"][: len(times)]),
        ("b", "bool", [True, False, True, False, True, False][: len(times)]),
    ]
    out = io.StringIO()
    write_csv(columns, out)
    assert out.getvalue() == pandas_csv(_frame_of(columns))


def run_reclab_modules(*args: str) -> dict[str, Any]:
    """Run the reclab CLI in a fresh interpreter; which heavy libraries it imported."""
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['reclab', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('reclab', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "else:\n"
        "    code = 0\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'textual')\n"
        "found = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(json.dumps({'code': code, 'heavy': found}), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "100"},
        timeout=120,
    )
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["commands", str(SAMPLE)],
        ["export", "--csv", str(SAMPLE)],
        ["export", "--csv", "-t", "session", str(SAMPLE)],
    ],
    ids=" ".join,
)
def test_short_commands_do_not_import_pandas(args: list[str]) -> None:
    got = run_reclab_modules(*args)
    assert got["code"] in (0, None)
    assert got["heavy"] == []


def test_commands_with_where_still_uses_the_table() -> None:
    got = run_reclab_modules("commands", "--where", "exit_code != 0", str(SAMPLE))
    assert got["code"] in (0, None) and "pandas" in got["heavy"]
