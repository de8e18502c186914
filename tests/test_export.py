"""Exports read back equal, stream in batches, filter, and fail with one line."""

from __future__ import annotations

import io
import json
from pathlib import Path

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
from tests.builders import RECV, T0, Script, fileops_script, sample_script

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
