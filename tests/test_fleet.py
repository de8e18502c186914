"""reclab.fleet: recordings into one Parquet dataset and SQL over it; reclab ingest and query."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fleet_corpus import header, make_corpus, write_command
from typer.testing import CliRunner

from agentproto import Recorder
from reclab.cli import app
from reclab.export import export_table
from reclab.fleet import TABLES, FleetError, arrow_dataset, connect, ingest, query
from reclab.fleet import work as ingest_module
from reclab.fleet.dataset import MANIFEST, Manifest
from reclab.model import open_recording
from reclab.summary import summarize

duckdb = pytest.importorskip("duckdb")

SYNTHETIC = 200  # "a few hundred" with the samples and the special files


def info_json(path: Path, *, cli: bool = False) -> dict[str, Any]:
    """``reclab info --json`` of one recording: run as a command, or its function (much quicker)."""
    if cli:
        result = CliRunner().invoke(app, ["info", "--json", str(path)])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))
    with open_recording(path) as rec:
        return dict(json.loads(json.dumps(summarize(rec).to_json())))


def info_counts(path: Path, *, cli: bool = False) -> dict[str, int]:
    """What ``reclab info --json`` says about one recording, as table row counts."""
    data = info_json(path, cli=cli)
    return {
        "commands": data["commands"]["total"],
        "frames": data["frames"]["total"],
        "fileops": data["file_ops"],
        "logs": data["logs"],
    }


def dataset_counts(root: Path) -> dict[str, dict[str, int]]:
    """Rows per table per recording path, by SQL over the dataset."""
    con = connect(root)
    counts: dict[str, dict[str, int]] = {}
    for table in ("commands", "frames", "fileops", "logs"):
        for path, n in con.sql(
            f"SELECT recording_path, count(*) FROM {table} GROUP BY 1"
        ).fetchall():
            counts.setdefault(path, {})[table] = n
    for (path,) in con.sql("SELECT recording_path FROM session").fetchall():
        for table in ("commands", "frames", "fileops", "logs"):
            counts.setdefault(path, {}).setdefault(table, 0)
    con.close()
    return counts


def parts(root: Path) -> dict[Path, int]:
    """Every file under the dataset with its modification time (ns), the manifest aside."""
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name != MANIFEST}


class Growing:
    """A recording still being written: a Recorder appending commands from a thread."""

    def __init__(self, path: Path):
        self.rec = Recorder(path)
        self.rec.write_session_header(header(7))
        write_command(self.rec, 7, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.written = 1

    def _run(self) -> None:
        while not self.stop.is_set() and self.written < 200:
            write_command(self.rec, 7, self.written)
            self.written += 1
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The corpus, ingested once with two local workers while one recording grows."""
    base = tmp_path_factory.mktemp("fleet")
    corpus = base / "recordings"
    special = make_corpus(corpus, SYNTHETIC)
    growing = Growing(corpus / "growing.cbor")
    growing.thread.start()
    try:
        first = ingest([corpus], base / "dataset", workers=2)
    finally:
        growing.finish()
    return {
        "base": base,
        "corpus": corpus,
        "dataset": base / "dataset",
        "report": first,
        "growing": growing,
        **special,
    }


def test_ingest_reports_each_file(fleet: dict[str, Any]) -> None:
    report = fleet["report"]
    total = SYNTHETIC + 10 + 3  # synthetic, samples, cut + garbage + growing
    assert len(report.results) == total
    [failed] = report.failed
    assert failed.path == str(fleet["garbage"]) and "not an agentproto recording" in failed.error
    partial = {r.path: r.truncation for r in report.partial}
    assert partial[str(fleet["cut"])] == "cut"
    assert partial[str(fleet["corpus"] / "growing.cbor")] in ("no-footer", "cut")
    assert str(fleet["corpus"] / "samples" / "cut-off.cbor") in partial
    assert len(report.ingested) == total - 1
    # nothing half-written anywhere, nothing of the unreadable file
    assert not list(fleet["dataset"].rglob(".part-*"))
    assert all(p.name.startswith("part-") for p in parts(fleet["dataset"]) if "day=" in str(p))


def test_counts_agree_with_reclab_info(fleet: dict[str, Any]) -> None:
    counts = dataset_counts(fleet["dataset"])
    manifest = Manifest.load(fleet["dataset"])
    growing = str(fleet["corpus"] / "growing.cbor")
    assert len(counts) == len(fleet["report"].ingested)
    for path, mine in counts.items():
        if path == growing:
            continue  # it grew after it was ingested: see test_a_grown_recording_is_picked_up
        # the command for the samples, its function (the same JSON) for the many others
        assert mine == info_counts(Path(path), cli="samples" in path), path
    assert {e.path for e in manifest.entries.values()} == set(counts)


def test_every_table_has_the_export_columns_and_dtypes(fleet: dict[str, Any]) -> None:
    sample = fleet["corpus"] / "samples" / "fileops.cbor"
    [entry] = [e for e in Manifest.load(fleet["dataset"]).entries.values() if e.path == str(sample)]
    with open_recording(sample) as rec:
        for table in TABLES:
            out = fleet["base"] / f"export-{table}.parquet"
            export_table(rec, table, "parquet", out)
            exported = pq.read_table(out)
            part = pq.read_table(
                fleet["dataset"] / table / f"day={entry.day}" / f"part-{entry.key}.parquet"
            )
            assert part.schema.names[:2] == ["recording", "recording_path"]
            mine = part.drop_columns(["recording", "recording_path"])
            assert mine.schema.remove_metadata() == exported.schema.remove_metadata(), table
            assert mine.to_pandas().dtypes.equals(exported.to_pandas().dtypes), table
            assert mine.num_rows == exported.num_rows
            assert set(part.column("recording").to_pylist()) <= {entry.hash}
            assert set(part.column("recording_path").to_pylist()) <= {str(sample)}


def test_read_back_by_pyarrow_and_duckdb_with_partitions(fleet: dict[str, Any]) -> None:
    root = fleet["dataset"]
    days = {"2026-11-28", "2026-11-29", "2026-11-30"}
    assert {p.name for p in (root / "commands").iterdir()} >= {f"day={d}" for d in days}
    # plain pyarrow, hive flavour: the partition is found with no help
    plain = pa.dataset.dataset(root / "frames", format="parquet", partitioning="hive")
    table = plain.to_table(columns=["recording", "seq", "day"])
    assert {str(d) for d in table.column("day").unique().to_pylist()} >= days
    typed = arrow_dataset(root, "frames")
    assert typed.schema.field("day").type == pa.date32()
    by_day = typed.to_table(filter=pa.dataset.field("day") == datetime.date(2026, 11, 28))
    assert 0 < by_day.num_rows < typed.count_rows()
    con = connect(root)
    kind = con.execute("SELECT typeof(day), typeof(timestamp) FROM frames LIMIT 1").fetchone()
    assert kind == ("DATE", "TIMESTAMPTZ_NS")
    n = con.execute("SELECT count(*) FROM frames WHERE day = DATE '2026-11-28'").fetchone()
    assert n is not None and n[0] == by_day.num_rows
    joined = con.execute(
        "SELECT count(*) FROM commands c JOIN session s USING (recording) "
        "WHERE s.backend_addr = 'host1:22'"
    ).fetchone()
    assert joined is not None and joined[0] > 0
    con.close()


def test_reingest_is_a_no_op(fleet: dict[str, Any], tmp_path: Path) -> None:
    # a copy of the dataset, so the other tests keep theirs
    root = tmp_path / "dataset"
    shutil.copytree(fleet["dataset"], root)
    corpus = fleet["corpus"]
    # files as they were at the first ingest (the growing one goes elsewhere)
    sources = [corpus / "builds", corpus / "deploys", corpus / "samples", fleet["cut"]]
    before = parts(root)
    manifest = (root / MANIFEST).read_bytes()
    report = ingest(sources, root, workers=2)
    assert len(report.skipped) == len(report.results) and not report.ingested
    assert parts(root) == before
    # touched, and copied elsewhere: same content hash, so nothing is written either
    touched = corpus / "builds" / "s0001.cbor"
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    copy = tmp_path / "copy.cbor"
    shutil.copy(corpus / "deploys" / "s0000.cbor", copy)
    report = ingest([touched, copy], root, workers=1)
    assert [r.status for r in report.results] == ["unchanged", "unchanged"]
    assert parts(root) == before
    # the manifest only remembers the touched file's new time, so it is not read again
    changed = [
        (a, b)
        for a, b in zip(
            json.loads(manifest)["recordings"],
            json.loads((root / MANIFEST).read_bytes())["recordings"],
            strict=True,
        )
        if a != b
    ]
    assert len(changed) == 1 and changed[0][0]["path"] == str(touched.resolve())
    assert {k for k in changed[0][0] if changed[0][0][k] != changed[0][1][k]} == {"mtime_ns"}
    # and the touched file is not even read the next time
    again = ingest([touched], root, workers=1)
    assert again.results[0].status == "unchanged"


def test_a_grown_recording_is_picked_up(fleet: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    shutil.copytree(fleet["dataset"], root)
    path = fleet["corpus"] / "growing.cbor"
    first = next(r for r in fleet["report"].results if r.path == str(path))
    growing = fleet["growing"]
    # still open: more commands and a torn record at the end
    write_command(growing.rec, 7, 999)
    with open(path, "ab") as fp:
        fp.write(b"\xa2\x64type\x03")
    report = ingest([path], root, workers=1)
    [result] = report.results
    assert result.status == "partial" and result.truncation == "cut"
    assert result.key == first.key and result.hash != first.hash and result.bytes > first.bytes
    # one part per table for this recording, the old ones replaced
    mine = sorted(p for p in parts(root) if first.key in p.name)
    assert [p.parent.parent.name for p in mine] == sorted(TABLES)
    tables = {p.parent.parent.name: pq.read_table(p) for p in mine}
    counts = {name: t.num_rows for name, t in tables.items() if name != "session"}
    # the complete records, no more: what reclab info reads of the same file
    assert counts == info_counts(path, cli=True)
    assert counts["commands"] == growing.written + 1
    assert {h for t in tables.values() for h in t.column("recording").to_pylist()} == {result.hash}
    assert tables["session"].column("truncation").to_pylist() == ["cut"]
    # finished: the torn bytes were a record's start; the footer makes it complete
    data = path.read_bytes()
    path.write_bytes(data[: result.bytes])
    growing.rec.close()
    report = ingest([path], root, workers=1)
    assert report.results[0].status == "complete"
    con = connect(root)
    rows = con.execute(
        "SELECT recording, truncated, commands_recorded FROM session WHERE recording_path = ?",
        [str(path)],
    ).fetchall()
    con.close()
    assert rows == [(report.results[0].hash, False, growing.written + 1)]


def test_a_failure_while_writing_leaves_no_part(
    fleet: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ingest_module._write_table
    calls = []

    def failing(rec: Any, table: str, *args: Any) -> int:
        calls.append(table)
        if table == "fileops":
            raise OSError(28, "No space left on device")
        return real(rec, table, *args)

    monkeypatch.setattr(ingest_module, "_write_table", failing)
    source = fleet["corpus"] / "samples"
    report = ingest([source / "quick.cbor", source / "signal.cbor"], tmp_path / "d", workers=1)
    assert [r.status for r in report.results] == ["failed", "failed"]
    assert "No space left on device" in report.results[0].error
    assert "fileops" in calls
    assert not list((tmp_path / "d").rglob("*.parquet"))
    assert not list((tmp_path / "d").rglob(".part-*"))
    # the other files were tried too, and the next run writes them
    monkeypatch.setattr(ingest_module, "_write_table", real)
    report = ingest([source / "quick.cbor"], tmp_path / "d", workers=1)
    assert report.results[0].status == "complete"


def test_progress_follows_files_and_bytes(fleet: dict[str, Any], tmp_path: Path) -> None:
    seen: list[tuple[int, int, int, int]] = []
    source = fleet["corpus"] / "samples"
    ingest([source], tmp_path / "d", workers=2, progress=lambda *a: seen.append(a))
    size = sum(p.stat().st_size for p in source.glob("*.cbor"))
    assert seen[0] == (0, 10, 0, size)
    assert seen[-1] == (10, 10, size, size)
    assert [s[0] for s in seen] == list(range(11))


def test_parts_left_by_a_killed_ingest_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / "d" / "frames" / "day=2026-11-29" / ".part-0123456789abcdef.parquet.1a2b.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"PAR1 half a file")
    ingest([Path(__file__).parent.parent / "sample-recordings" / "quick.cbor"], tmp_path / "d")
    assert not stale.exists()
    assert len(list((tmp_path / "d").rglob("*.parquet"))) == len(TABLES)


def test_one_ingest_at_a_time(tmp_path: Path) -> None:
    from reclab.fleet.dataset import dataset_lock

    with dataset_lock(tmp_path / "d"), pytest.raises(FleetError, match="another reclab ingest"):
        ingest([Path(__file__).parent.parent / "sample-recordings"], tmp_path / "d")


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="no such file"):
        ingest([tmp_path / "missing"], tmp_path / "d")
    with pytest.raises(FleetError, match="no file matches"):
        ingest([str(tmp_path / "*.cbor")], tmp_path / "d")
    with pytest.raises(FleetError, match="not a reclab dataset"):
        connect(tmp_path)


def test_query_api_returns_arrow_or_pandas(fleet: dict[str, Any]) -> None:
    sql = "SELECT exit_code, count(*) AS n FROM commands GROUP BY 1 ORDER BY 1"
    arrow = query(fleet["dataset"], sql)
    frame = query(fleet["dataset"], sql, result="pandas")
    assert isinstance(arrow, pa.Table) and arrow.column_names == ["exit_code", "n"]
    assert frame["n"].tolist() == arrow.column("n").to_pylist()
    with pytest.raises(FleetError, match="nope"):
        query(fleet["dataset"], "SELECT * FROM nope")


# --- the commands -----------------------------------------------------------------------


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_cli_ingest_reports_and_skips_unreadable(fleet: dict[str, Any], tmp_path: Path) -> None:
    samples = fleet["corpus"] / "samples"
    runner = CliRunner()
    result = runner.invoke(
        app, ["ingest", str(samples), str(fleet["garbage"]), "--into", str(tmp_path / "d")]
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any("skipped" in ln and "garbage.cbor" in ln for ln in lines)
    assert "10 ingested (1 partial: cut or still growing), 0 unchanged, 1 unreadable" in lines[-1]
    again = runner.invoke(app, ["ingest", str(samples), "--into", str(tmp_path / "d"), "-j", "1"])
    assert again.exit_code == 0
    assert "0 ingested, 10 unchanged, 0 unreadable" in again.stderr
    verbose = runner.invoke(
        app,
        ["ingest", str(samples / "quick.cbor"), "--into", str(tmp_path / "v"), "-v", "--progress"],
    )
    assert verbose.exit_code == 0, verbose.output
    assert f"{samples / 'quick.cbor'}: complete: 1 commands, 8 frames" in verbose.stderr
    assert "files" in verbose.stderr and "bytes" in verbose.stderr  # the progress bar
    bad = runner.invoke(app, ["ingest", str(tmp_path / "nothing"), "--into", str(tmp_path / "d")])
    assert bad.exit_code == 2
    assert one_line(bad.output).startswith("reclab: error:")


def test_cli_query_outputs(fleet: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    root = str(fleet["dataset"])
    sql = "SELECT day, count(*) AS n FROM session GROUP BY day ORDER BY day"
    shown = runner.invoke(app, ["query", root, sql], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    assert "2026-11-28" in shown.stdout and "┃" in shown.stdout
    as_csv = runner.invoke(app, ["query", root, sql, "--csv"])
    rows = as_csv.stdout.splitlines()
    assert rows[0] == '"day","n"' and len(rows) >= 4
    as_json = runner.invoke(app, ["query", root, sql, "--json"])
    data = json.loads(as_json.stdout)
    assert data[0]["day"] == "2026-11-28" and sum(r["n"] for r in data) == len(
        fleet["report"].ingested
    )
    out = tmp_path / "r.parquet"
    as_parquet = runner.invoke(app, ["query", root, sql, "--parquet", "-o", str(out)])
    assert as_parquet.exit_code == 0
    assert pq.read_table(out).to_pylist() == query(root, sql).to_pylist()
    by_extension = tmp_path / "r.CSV"
    assert runner.invoke(app, ["query", root, sql, "-o", str(by_extension)]).exit_code == 0
    assert by_extension.read_text().splitlines() == rows
    to_stdout = runner.invoke(app, ["query", root, sql, "--csv", "-o", "-"])
    assert to_stdout.stdout.splitlines() == rows and not Path("-").exists()


def test_cli_query_json_escapes_terminal_controls(tmp_path: Path) -> None:
    root = tmp_path / "d"
    ingest([Path(__file__).resolve().parent.parent / "sample-recordings" / "quick.cbor"], root)
    sql = "SELECT 'a' || chr(155) || '31m' || chr(8238) AS text"  # CSI (C1) and RLO (bidi)
    result = CliRunner().invoke(app, ["query", str(root), sql, "--json"])
    assert result.exit_code == 0, result.output
    assert "\\u009b31m\\u202e" in result.stdout and "\x9b" not in result.stdout
    assert json.loads(result.stdout) == [{"text": "a\x9b31m\u202e"}]
    shown = CliRunner().invoke(app, ["query", str(root), sql])
    assert "\x9b" not in shown.stdout and "\u202e" not in shown.stdout


def test_cli_query_straight_on_recordings() -> None:
    samples = Path(__file__).resolve().parent.parent / "sample-recordings"
    result = CliRunner().invoke(
        app, ["query", str(samples), "SELECT count(*) AS n FROM commands", "--csv"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['"n"', "16"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["SELECT * FROM nope"], "nope"),
        (["SELECT 1", "--parquet"], "--parquet needs an output file"),
        (["SELECT 1", "--csv", "--json"], "at most one of"),
        (["SELECT 1", "-o", "x.txt"], "-o needs a format"),
        (["SELECT 1", "--parquet", "-o", "-"], "--parquet needs an output file"),
    ],
)
def test_cli_query_errors_are_one_line(
    fleet: dict[str, Any], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, ["query", str(fleet["dataset"]), *args])
    assert result.exit_code == 2
    assert message in one_line(result.output)


def test_cli_without_duckdb_says_how_to_install(
    fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb now fails
    result = CliRunner().invoke(app, ["query", str(fleet["dataset"]), "SELECT 1"])
    assert result.exit_code == 2
    assert "pip install 'reclab[fleet]'" in one_line(result.output)


def test_cli_dask_without_distributed_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    samples = Path(__file__).resolve().parent.parent / "sample-recordings"
    result = CliRunner().invoke(
        app, ["ingest", str(samples), "--into", str(tmp_path / "d"), "--dask", "tcp://127.0.0.1:1"]
    )
    assert result.exit_code == 2
    assert "pip install 'reclab[fleet]'" in one_line(result.output)


def test_fleet_loads_no_duckdb_or_dask_until_used() -> None:
    import subprocess

    code = (
        "import sys, reclab.cli, reclab.fleet; "
        "print(sorted(m for m in ('duckdb', 'dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_an_interrupted_query_output_leaves_no_file(tmp_path: Path, fmt: str) -> None:
    import pyarrow as pa

    from reclab.fleet.query import write_result

    batch = pa.record_batch({"n": [1, 2]})

    class Interrupted:
        schema = batch.schema

        def __iter__(self) -> Any:
            yield batch
            raise KeyboardInterrupt  # Ctrl-C halfway

    out = tmp_path / f"result.{fmt}"
    with pytest.raises(KeyboardInterrupt):
        write_result(Interrupted(), fmt, out)
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_with_older_columns_is_not_mixed_with_new_ones(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    (root / "_reclab_manifest.json").write_text(json.dumps({"format": 1, "recordings": []}))
    quick = Path(__file__).resolve().parent.parent / "sample-recordings" / "quick.cbor"
    with pytest.raises(FleetError, match="older reclab, with other columns; ingest"):
        ingest([quick], root)
