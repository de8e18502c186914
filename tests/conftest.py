"""Shared test helpers: ONE way to build recordings, and fixtures.

:class:`RecordingBuilder` builds records with explicit values (the expected
results of a test are those values); ``sample_recording``,
``varied_recording`` and ``fileops_recording`` are ready-made sessions the
model, table, export and CLI tests share.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import (  # noqa: F401  (re-exported for fixtures)
    PREFIX,
    RECV,
    ROOT,
    SAMPLES,
    SEND,
    T0,
    RecordingBuilder,
    Script,
    fileops_script,
    sample_script,
    varied_script,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--exhaustive",
        action="store_true",
        help="run the sweeps over every offset of every sample (hours)",
    )


@pytest.fixture
def sample_path(tmp_path: Path) -> Path:
    """The sample session (:func:`sample_script`) written to a file."""
    path = tmp_path / "sample.cbor"
    sample_script().write(path)
    return path
