"""The ingest work on a Dask cluster: a real scheduler and two worker processes, started here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fleet_corpus import make_corpus
from typer.testing import CliRunner

from reclab.cli import app
from reclab.fleet import TABLES, FleetError, ingest
from reclab.fleet import dask as fleet_dask
from reclab.fleet.dataset import Manifest

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Any:
    """A LocalCluster of two worker processes (one thread each), stopped after the tests."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        silence_logs=40,
    ) as cluster:
        yield cluster


def dataset_contents(root: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every part's rows, by (table, part path below the dataset): what two datasets compare on."""
    return {
        (table, str(part.relative_to(root))): pq.read_table(part).to_pylist()
        for table in TABLES
        for part in sorted((root / table).glob("day=*/*.parquet"))
    }


def manifest_view(root: Path) -> dict[str, tuple[Any, ...]]:
    return {
        e.key: (e.path, e.hash, e.day, e.bytes, e.status, e.truncation, e.rows)
        for e in Manifest.load(root).entries.values()
    }


def test_dask_gives_the_same_dataset_as_local_processes(cluster: Any, tmp_path: Path) -> None:
    special = make_corpus(tmp_path / "recordings", 10)
    with distributed.Client(cluster) as client:
        on_dask = ingest([tmp_path / "recordings"], tmp_path / "dask", client=client)
        workers = client.scheduler_info()["workers"]
    local = ingest([tmp_path / "recordings"], tmp_path / "local", workers=1)
    assert len(workers) == 2
    assert sorted((r.path, r.status, r.hash) for r in on_dask.results) == sorted(
        (r.path, r.status, r.hash) for r in local.results
    )
    [failed] = on_dask.failed
    assert failed.path == str(special["garbage"])
    assert manifest_view(tmp_path / "dask") == manifest_view(tmp_path / "local")
    assert dataset_contents(tmp_path / "dask") == dataset_contents(tmp_path / "local")
    assert not list((tmp_path / "dask").rglob(".part-*"))


def test_cli_runs_on_a_scheduler_address(cluster: Any, tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parent.parent / "sample-recordings"
    into = tmp_path / "d"
    runner = CliRunner()
    result = runner.invoke(
        app, ["ingest", str(samples), "--into", str(into), "--dask", cluster.scheduler_address]
    )
    assert result.exit_code == 0, result.output
    assert "10 ingested (1 partial: cut or still growing), 0 unchanged" in result.stderr
    again = runner.invoke(
        app, ["ingest", str(samples), "--into", str(into), "--dask", cluster.scheduler_address]
    )
    assert "0 ingested, 10 unchanged" in again.stderr


def test_an_unreachable_scheduler_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_dask, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(
        FleetError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        ingest(
            [Path(__file__).parent.parent / "sample-recordings"],
            tmp_path / "d",
            client="tcp://127.0.0.1:9",
        )
    assert not (tmp_path / "d").exists()
