"""Exports read back equal, stream in batches, filter, and fail with one line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from agentproto import Frame, FrameType
from reclab import tables
from reclab.cli import app
from reclab.cli.export import LazyProgress
from reclab.export import ExportError, export_table
from reclab.model import open_recording
from tests.builders import RECV, SEND, T0, Script, fileops_script, sample_script

runner = CliRunner()


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "session.cbor"
    sample_script().write(path)
    return path


@pytest.fixture
def fileops(tmp_path: Path) -> Path:
    path = tmp_path / "fileops.cbor"
    fileops_script().write(path)
    return path


def expected(path: Path, table: str) -> pd.DataFrame:
    with open_recording(path) as rec:
        return tables.TABLE_FUNCTIONS[table](rec)


def normalise(df: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """Bring a frame read back from text to the dtypes of the original table."""
    out = pd.DataFrame(index=range(len(df)))
    for name in like.columns:
        col = df[name]
        dtype = like[name].dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            out[name] = pd.to_datetime(col, utc=True, format="ISO8601").astype(dtype)
        elif isinstance(dtype, pd.CategoricalDtype):
            out[name] = pd.Categorical(
                col.astype(object).where(col.notna(), None), categories=dtype.categories
            )
            out[name] = out[name].astype(dtype)
        elif isinstance(dtype, pd.ArrowDtype):  # argv, signals: lists (JSON text in CSV)
            values = [json.loads(v) if isinstance(v, str) else v for v in col.tolist()]
            out[name] = pd.array([None if v is None or v is pd.NA else v for v in values], dtype)
        elif str(dtype) == "str":
            out[name] = col.astype(object).where(col.notna(), None).astype("str")
        else:
            out[name] = col.astype(dtype)
    return out


def compare(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(normalise(got, want), want, check_exact=False, rtol=1e-9)


TABLES_WITH_ROWS = ["commands", "frames", "fileops", "logs", "session"]


@pytest.mark.parametrize("table", TABLES_WITH_ROWS)
@pytest.mark.parametrize("batch_rows", [2, 65536])
def test_csv_reads_back(sample: Path, fileops: Path, table: str, batch_rows: int) -> None:
    src = fileops if table == "fileops" else sample
    out = io.StringIO()
    with open_recording(src) as rec:
        rows = export_table(rec, table, "csv", out, batch_rows=batch_rows)
    want = expected(src, table)
    assert rows == len(want)
    got = pd.read_csv(io.StringIO(out.getvalue()))
    # CSV cannot tell empty text from missing text: compare text with both as "".
    for name in want.columns:
        if str(want[name].dtype) == "str":
            want[name] = want[name].fillna("")
            got[name] = got[name].astype(object).where(got[name].notna(), "")
    compare(got, want)


@pytest.mark.parametrize("table", TABLES_WITH_ROWS)
def test_jsonl_reads_back(sample: Path, fileops: Path, tmp_path: Path, table: str) -> None:
    src = fileops if table == "fileops" else sample
    dest = tmp_path / "out.jsonl"
    with open_recording(src) as rec:
        export_table(rec, table, "jsonl", dest, batch_rows=3)
    lines = dest.read_text().splitlines()
    want = expected(src, table)
    assert len(lines) == len(want)
    got = pd.DataFrame([json.loads(line) for line in lines])
    compare(got, want)
    if table == "frames":  # nanoseconds survive in JSON
        first = json.loads(lines[0])["timestamp"]
        assert first.endswith("Z") and pd.Timestamp(first).value == T0 + 30


@pytest.mark.parametrize("table", TABLES_WITH_ROWS)
def test_parquet_reads_back_in_row_groups(
    sample: Path, fileops: Path, tmp_path: Path, table: str
) -> None:
    src = fileops if table == "fileops" else sample
    dest = tmp_path / "out.parquet"
    with open_recording(src) as rec:
        export_table(rec, table, "parquet", dest, batch_rows=2)
    want = expected(src, table)
    got = pd.read_parquet(dest)
    for name in want.columns:
        if isinstance(want[name].dtype, pd.CategoricalDtype):
            got[name] = got[name].astype(want[name].dtype)
        elif isinstance(want[name].dtype, pd.ArrowDtype):  # lists read back as arrays
            values = [None if v is None else list(v) for v in got[name]]
            got[name] = pd.array(values, dtype=want[name].dtype)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    groups = pq.ParquetFile(dest).num_row_groups
    assert groups == max(1, -(-len(want) // 2))  # one row group per batch


def test_parquet_arrow_path_has_the_pandas_schema(sample: Path, tmp_path: Path) -> None:
    # an unfiltered frames export goes straight to Arrow; a filtered one through
    # pandas: both must write the same schema, pandas metadata included
    direct, filtered = tmp_path / "direct.parquet", tmp_path / "filtered.parquet"
    with open_recording(sample) as rec:
        export_table(rec, "frames", "parquet", direct, batch_rows=3)
        export_table(rec, "frames", "parquet", filtered, batch_rows=3, where="seq >= 0")
    assert pq.read_schema(direct).equals(pq.read_schema(filtered), check_metadata=True)
    pd.testing.assert_frame_equal(pd.read_parquet(direct), pd.read_parquet(filtered))


def test_where_filters_rows(sample: Path) -> None:
    out = io.StringIO()
    with open_recording(sample) as rec:
        rows = export_table(
            rec, "frames", "csv", out, where="type == 'data' and seq == 1", batch_rows=3
        )
    got = pd.read_csv(io.StringIO(out.getvalue()))
    assert rows == len(got) == 5
    assert set(got["type"]) == {"data"} and set(got["seq"]) == {1}


@pytest.mark.parametrize("expr", ["seq ====", "no_such_column > 1", "seq + 1"])
def test_bad_where_is_one_line(sample: Path, expr: str) -> None:
    out = io.StringIO()
    with open_recording(sample) as rec, pytest.raises(ExportError) as err:
        export_table(rec, "frames", "csv", out, where=expr)
    assert "\n" not in str(err.value) and "--where" in str(err.value)
    assert out.getvalue() == ""


def test_a_large_table_streams_in_small_batches(tmp_path: Path) -> None:
    s = Script()
    s.header()
    s.start(1, T0, path="/gen")
    n = 3000
    for i in range(n):
        s.frame(1, T0 + i, RECV, Frame(type=FrameType.DATA, stream=1, data=b"x" * (i % 50)))
    path = tmp_path / "many.cbor"
    s.write(path)
    dest = tmp_path / "frames.parquet"
    seen: list[int] = []

    def size_of_batches(done: int, total: int) -> None:
        seen.append(done)

    with open_recording(path) as rec:
        rows = export_table(
            rec, "frames", "parquet", dest, batch_rows=256, progress=size_of_batches
        )
    assert rows == n
    meta = pq.ParquetFile(dest).metadata
    assert meta.num_rows == n and meta.num_row_groups == -(-n // 256)
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) == 256
    assert seen == sorted(seen) and seen[-1] == path.stat().st_size
    sizes = pd.read_parquet(dest, columns=["size"])["size"]
    assert sizes.tolist() == [i % 50 for i in range(n)]


# --- the command ------------------------------------------------------------------------------


def test_cli_default_table_is_commands(sample: Path) -> None:
    result = runner.invoke(app, ["export", "--csv", str(sample)])
    assert result.exit_code == 0, result.stderr
    got = pd.read_csv(io.StringIO(result.stdout))
    assert list(got["seq"]) == [1, 2] and "exit_code" in got.columns
    assert result.stderr == ""


def test_cli_parquet_and_where(sample: Path, tmp_path: Path) -> None:
    dest = tmp_path / "f.parquet"
    result = runner.invoke(
        app,
        ["export", str(sample), "--table", "frames", "--parquet", "-o", str(dest), "-w", "seq==2"],
    )
    assert result.exit_code == 0, result.stderr
    assert set(pd.read_parquet(dest)["seq"]) == {2}


def test_cli_jsonl_to_file(sample: Path, tmp_path: Path) -> None:
    dest = tmp_path / "logs.jsonl"
    result = runner.invoke(app, ["export", str(sample), "-t", "logs", "--jsonl", "-o", str(dest)])
    assert result.exit_code == 0
    assert json.loads(dest.read_text())["message"] == "slow"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--csv", "{missing}"], "no such file"),
        (["--csv", "{dir}"], "is a directory"),
        (["--csv", "{text}"], "is not an agentproto recording"),
        (["{rec}"], "choose a format"),
        (["-o", "out.txt", "{rec}"], "choose a format"),
        (["--csv", "--jsonl", "{rec}"], "choose one format, not csv and jsonl"),
        (["--csv", "--format", "parquet", "{rec}"], "choose one format"),
        (["--format", "xml", "{rec}"], "unknown format 'xml'"),
        (["--parquet", "{rec}"], "give a file, -o FILE.parquet"),
        (["--parquet", "-o", "-", "{rec}"], "give a file, -o FILE.parquet"),
        (["--csv", "-t", "session", "--seq", "1", "{rec}"], "--seq does not apply"),
        (["--csv", "--seq", "9", "{rec}"], "no command 9"),
        (["--csv", "-t", "nope", "{rec}"], "unknown table"),
        (["--csv", "-w", "seq ===", "{rec}"], "bad --where expression"),
        (["--csv", "-o", "{dir}", "{rec}"], "is a directory"),
    ],
)
def test_cli_errors_are_one_line(
    sample: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    names = {
        "missing": str(tmp_path / "missing.cbor"),
        "dir": str(tmp_path),
        "text": str(text),
        "rec": str(sample),
    }
    result = runner.invoke(app, ["export", *(a.format(**names) for a in args)])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli_cut_recording_warns_and_exports(sample: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.cbor"
    cut.write_bytes(sample.read_bytes()[:-5])
    result = runner.invoke(app, ["export", "--csv", "-t", "frames", str(cut)])
    assert result.exit_code == 0
    assert "warning" in result.stderr and "cut" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(pd.read_csv(io.StringIO(result.stdout))) == 18


def test_progress_only_when_wanted(capsys: pytest.CaptureFixture[str]) -> None:
    with LazyProgress(False, delay=0) as bar:
        bar.update(5, 10)
    assert capsys.readouterr().err == ""
    with LazyProgress(True, delay=0) as bar:
        bar.stage("exporting")
        bar.update(5, 10)
        bar.update(10, 10)
    assert "exporting" in capsys.readouterr().err
    with LazyProgress(True, delay=60) as bar:  # quick work never shows a bar
        bar.update(5, 10)
    assert capsys.readouterr().err == ""


# --- issue 12: exports as a user expects them ------------------------------------------


def cli(*args: str) -> Any:
    return runner.invoke(app, ["export", *args])


@pytest.mark.parametrize("table", ["frames", "fileops", "logs"])
def test_every_event_table_has_timestamp_and_index(fileops: Path, table: str) -> None:
    got = expected(fileops, table)
    assert str(got["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert "index" in got.columns


def test_where_on_a_missing_column_names_the_columns(sample: Path) -> None:
    result = cli(str(sample), "-t", "fileops", "--csv", "-w", "time > 3")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "the fileops table has no column 'time'" in line and "timestamp" in line
    assert "is not defined" not in line and len(line.splitlines()) == 1


@pytest.mark.parametrize("when", ["2023-11-14 22:13:20", "2023-11-14T22:13:20Z"])
def test_a_date_without_a_zone_is_utc(sample: Path, when: str) -> None:
    # T0 is 2023-11-14 22:13:20 UTC and every frame is a few ns after it
    result = cli(str(sample), "-t", "frames", "--jsonl", "-w", f"timestamp > '{when}'")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(expected(sample, "frames"))
    earlier = cli(str(sample), "-t", "frames", "--jsonl", "-w", f"timestamp < '{when}'")
    assert earlier.exit_code == 0 and earlier.stdout == ""


def test_a_time_compared_with_a_non_time_says_so(sample: Path) -> None:
    result = cli(str(sample), "-t", "frames", "--csv", "-w", "timestamp > 'yesterday-ish'")
    assert result.exit_code == 2
    assert "timestamp is a time and 'yesterday-ish' is not one" in result.stderr


@pytest.mark.parametrize("value", ["DATA", "data", "Data"])
def test_a_category_matches_in_any_case(sample: Path, value: str) -> None:
    want = expected(sample, "frames")
    result = cli(str(sample), "-t", "frames", "--jsonl", "-w", f"type == '{value}'")
    assert result.exit_code == 0 and "warning" not in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == (want["type"] == "data").sum() > 0
    inside = cli(str(sample), "-t", "frames", "--jsonl", "-w", f"type in ['{value}', 'EOF']")
    assert len(inside.stdout.splitlines()) == want["type"].isin(["data", "eof"]).sum()


def test_a_value_no_category_has_gives_a_warning(sample: Path) -> None:
    result = cli(str(sample), "-t", "frames", "--csv", "-w", "type == 'stdout'")
    assert result.exit_code == 0
    warning = [x for x in result.stderr.splitlines() if "warning" in x]
    assert len(warning) == 1
    assert "'stdout' is not a value of type (exec, data, eof" in warning[0]
    levels = cli(str(sample), "-t", "logs", "--csv", "-w", "level >= 'warn'")
    assert levels.exit_code == 0 and "warning" not in levels.stderr
    assert len(levels.stdout.splitlines()) == 2  # header and the WARN log


@pytest.mark.parametrize("table", ["commands", "frames", "fileops", "logs"])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_seq_keeps_one_command(sample: Path, tmp_path: Path, table: str, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    result = cli(str(sample), "-t", table, "--seq", "2", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    if fmt == "parquet":
        got = pd.read_parquet(out)
    else:
        got = pd.DataFrame([json.loads(x) for x in out.read_text().splitlines()])
    want = expected(sample, table)
    assert len(got) == (want["seq"] == 2).sum()
    assert set(got.get("seq", pd.Series(dtype=int))) <= {2}
    if table in ("commands", "frames"):
        assert len(got) > 0


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("out.csv", lambda p: p.read_text().startswith("seq,path,argv,")),
        ("out.jsonl", lambda p: json.loads(p.read_text().splitlines()[0])["seq"] == 1),
        ("out.parquet", lambda p: len(pd.read_parquet(p)) == 2),
        ("out.CSV", lambda p: p.read_text().startswith("seq,")),
    ],
)
def test_the_format_comes_from_the_extension(
    sample: Path, tmp_path: Path, name: str, check: Any
) -> None:
    out = tmp_path / name
    result = cli(str(sample), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert check(out)
    # a flag still wins over the extension
    forced = tmp_path / "forced.csv"
    assert cli(str(sample), "--jsonl", "-o", str(forced)).exit_code == 0
    assert json.loads(forced.read_text().splitlines()[0])["seq"] == 1


def test_dash_is_stdout(sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(str(sample), "--jsonl", "-o", "-")
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2
    assert not (tmp_path / "-").exists()
    with_format = cli(str(sample), "--format", "csv", "-o", "-")
    assert with_format.stdout.startswith("seq,")


def test_json_lines_have_lists_nulls_and_plain_slashes(tmp_path: Path) -> None:
    s = Script()
    s.header()
    s.start(1, T0 + 1, path="/bin/sh", argv=["sh", "-c", "a/b"], cwd="/w")
    s.start(2, T0 + 2, path="/usr/bin/true", argv=None, cwd="")  # Go's nil slice
    s.start(3, T0 + 3, path="/bin/x", argv=[], cwd="a\\/b\\\\/c")  # backslashes before "/"
    s.frame(1, T0 + 4, SEND, Frame(type=FrameType.SIGNAL, signal=2))
    s.end(1, T0 + 5, 0)
    src = tmp_path / "nil.cbor"
    s.write(src)
    result = cli(str(src), "--jsonl")
    assert result.exit_code == 0, result.stderr
    assert "\\/" not in result.stdout.splitlines()[0]  # "/bin/sh", "a/b": no "\\/"
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["argv"] for r in rows] == [["sh", "-c", "a/b"], None, []]
    assert [r["signals"] for r in rows] == [[2], [], []]
    assert rows[0]["path"] == "/bin/sh" and rows[1]["end_time"] is None
    assert rows[2]["cwd"] == "a\\/b\\\\/c"
    listed = runner.invoke(app, ["commands", str(src), "--json"])
    assert [c["argv"] for c in json.loads(listed.stdout)] == [["sh", "-c", "a/b"], None, []]
    assert [c["signals"] for c in json.loads(listed.stdout)] == [[2], [], []]
    # CSV has no lists: JSON arrays, read back as lists; null stays empty (missing)
    csv = pd.read_csv(io.StringIO(cli(str(src), "--csv").stdout))
    assert json.loads(csv["argv"][0]) == ["sh", "-c", "a/b"] and pd.isna(csv["argv"][1])
    assert csv["argv"][2] == "[]"
    # a Parquet file reads back with pandas and pyarrow, lists as lists
    pq_out = tmp_path / "c.parquet"
    assert cli(str(src), "-o", str(pq_out)).exit_code == 0
    assert pq.read_table(pq_out).column("argv").to_pylist() == [["sh", "-c", "a/b"], None, []]
    assert pd.read_parquet(pq_out)["argv"].map(lambda v: v is None).tolist() == [
        False,
        True,
        False,
    ]


def _interrupt_after_first_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tables.iter_table

    def iter_table(*args: Any, **kwargs: Any) -> Any:
        batches = real(*args, **kwargs)
        yield next(batches)
        raise KeyboardInterrupt  # Ctrl-C in the middle of the export

    monkeypatch.setattr(tables, "iter_table", iter_table)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_an_interrupted_export_leaves_no_file(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    _interrupt_after_first_batch(monkeypatch)
    out = tmp_path / "out" / f"frames.{fmt}"
    out.parent.mkdir()
    with open_recording(sample) as rec, pytest.raises(KeyboardInterrupt):
        export_table(rec, "frames", fmt, out, where="size >= 0", batch_rows=2)
    assert list(out.parent.iterdir()) == []
    out.write_text("the previous export\n")
    with open_recording(sample) as rec, pytest.raises(KeyboardInterrupt):
        export_table(rec, "frames", fmt, out, where="size >= 0", batch_rows=2)
    assert list(out.parent.iterdir()) == [out]
    assert out.read_text() == "the previous export\n"


def test_commands_json_and_the_commands_export_agree(sample: Path) -> None:
    exported = [json.loads(x) for x in cli(str(sample), "--jsonl").stdout.splitlines()]
    listed = json.loads(runner.invoke(app, ["commands", str(sample), "--json"]).stdout)
    shared = set(exported[0]) & set(listed[0])
    assert {"argv", "signals", "seq", "path", "exit_code", "start_time"} <= shared
    assert "errors" not in shared  # a list in --json, error_count in the table
    for row, obj in zip(exported, listed, strict=True):
        for key in shared - {"start_time", "end_time"}:  # ISO text vs Unix ns, as documented
            assert row[key] == obj[key], key


def test_export_help_has_examples_and_readable_metavars() -> None:
    result = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "160", "NO_COLOR": "1"})
    assert result.exit_code == 0
    text = result.stdout
    assert "Examples:" in text and "reclab export REC -t fileops --jsonl" in text
    rows = {}  # option name -> its help line (click's plain layout)
    for line in text.splitlines():
        words = line.replace(",", "").split()
        if line.startswith("  -") and "--help" not in words:
            name = next(w for w in words if w.startswith("--"))
            rows[name] = line
    assert {"--format", "--csv", "--seq", "--where", "--progress"} <= set(rows)
    for name, line in rows.items():  # <bool>, <text>, <integer>: typer's defaults
        assert "<" not in line, name
    assert "EXPR" in rows["--where"] and "FILE" in rows["--output"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("timestamp > 5", "timestamp is a time; compare it with a date/time in quotes"),
        ("type == DATA", "no column 'DATA' (text goes in quotes: 'DATA'); its columns are index"),
        ("type = 'data'", "compare with ==, not ="),
        ("tim > 3", "no column 'tim'; its columns are index, offset, seq, timestamp,"),
    ],
)
def test_where_mistakes_are_said_in_the_users_terms(sample: Path, expr: str, message: str) -> None:
    result = cli(str(sample), "-t", "frames", "--csv", "-w", expr)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
