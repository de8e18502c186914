"""The benchmarks say plainly when a target is missed, and exit 1 then."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _targets_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("targets", BENCHMARKS / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missed_target_is_named_and_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    targets = _targets_module().Targets()
    assert targets.check("replay / direct", 0.93, at_least=0.8, unit="x")
    assert not targets.check("recording adds", 12.5, at_most=10, unit="%")
    assert targets.verdict() == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  target met: replay / direct: 0.93x, target >= 0.8x",
        "  TARGET MISSED: recording adds: 12.5%, target <= 10%",
        "1 of 2 targets MISSED: recording adds: 12.5%, target <= 10%",
    ]


def test_all_targets_met_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    targets = _targets_module().Targets()
    targets.check("rate", 0.6, at_least=0.5, unit=" GB/s")
    assert targets.verdict() == 0
    assert capsys.readouterr().out.splitlines()[-1] == "all 1 targets met"


@pytest.mark.parametrize("name", ["fleet", "mux", "read", "replay", "rpc", "startup", "view"])
def test_each_benchmark_with_a_target_checks_it(name: str) -> None:
    source = (BENCHMARKS / f"{name}.py").read_text(encoding="utf-8")
    assert "targets.check(" in source and "return targets.verdict()" in source
    assert "sys.exit(main())" in source
