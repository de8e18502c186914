"""Fixtures for the viewer's tests: sample recordings, synthetic ones, an app factory.

Animations are off and every app runs at a fixed size, so Pilot tests and
snapshots are deterministic. Synthetic recordings carry fixed timestamps
(no wall clock) so what the screen shows is the same on every run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["TEXTUAL_ANIMATIONS"] = "none"

from reclab.tui.app import ReclabApp
from reclab.tui.source import RecordingSource
from tests.tui.records import (  # noqa: F401  (re-exported for fixtures)
    SAMPLES,
    T0,
    command_records,
    footer_record,
    header_record,
    workers_done,
    write_large,
)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests (Pilot needs an event loop) without an asyncio plugin."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture
def sample() -> Callable[[str], Path]:
    """The path of a recording in sample-recordings/."""

    def path(name: str) -> Path:
        return SAMPLES / name

    return path


@pytest.fixture
def open_app() -> Iterator[Callable[..., ReclabApp]]:
    """Build a ReclabApp for a recording path (the source is closed after the test)."""
    sources: list[RecordingSource] = []

    def make(path: Path, **options: object) -> ReclabApp:
        source = RecordingSource.open(path)
        sources.append(source)
        return ReclabApp(source, **options)  # type: ignore[arg-type]

    yield make
    for source in sources:
        source.close()


@pytest.fixture
def small_recording(tmp_path: Path) -> Path:
    """Four commands with known outputs, exit codes, a log, a secret in the env."""
    path = tmp_path / "small.cbor"
    parts = [header_record()]
    parts.append(
        command_records(
            1,
            ["make", "all"],
            [b"cc -c main.c\n", b"cc -c util.c\n"],
            start=T0 + 10**8,
            env=["HOME=/root", "API_TOKEN=hunter2"],
        )
    )
    parts.append(
        command_records(
            2,
            ["pytest", "-q"],
            [b"....F\n", b"FAILED test_needle.py::test_x - assert\n"],
            start=T0 + 3 * 10**8,
            exit_code=1,
            logs=["started pytest"],
        )
    )
    parts.append(command_records(3, ["sleep", "9"], [], start=T0 + 5 * 10**8, exit_code=None))
    parts.append(command_records(4, ["ls", "/tmp"], [b"needle.txt\n"], start=T0 + 6 * 10**8))
    parts.append(footer_record(T0 + 10**9, 4))
    path.write_bytes(b"".join(parts))
    return path
