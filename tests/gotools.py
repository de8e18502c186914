"""The Go side of the interop tests: build and run ``tests/go/crosscheck``.

``crosscheck`` declares the agentproto types exactly as the Go package does
and uses the real ``github.com/fxamacker/cbor`` (Debian's
``golang-github-fxamacker-cbor-dev``, GOPATH mode) with default options, so
its output is what a Go peer writes. Tests use it through this module:

- :func:`crosscheck_binary` builds it once per test session (cached under
  ``tests/go/bin/``, keyed by the source's hash) and returns its path, or
  None when Go or the library is missing;
- :func:`go_recordings` writes Go recordings into a directory and returns the
  complete ones (header ... footer), for tests that need real Go-written input;
- :func:`go_outputs` gives everything ``gen`` writes (cut recording, frame
  stream, hex vectors, manifest);
- :func:`run_crosscheck` runs any subcommand (``check``, ``checkframes``, ``bench``).

The functions that need Go call ``pytest.skip(GO_SKIP_REASON)`` when it is
absent, so a test using them is skipped with a clear reason, never failed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

GO_SKIP_REASON = "Go toolchain or golang-github-fxamacker-cbor-dev not installed"
SOURCE_DIR = Path(__file__).resolve().parent / "go" / "crosscheck"
BIN_DIR = Path(__file__).resolve().parent / "go" / "bin"
FXAMACKER = "github.com/fxamacker/cbor"
BUILD_TIMEOUT = 300
RUN_TIMEOUT = 120


def _gopath() -> str | None:
    """The GOPATH entry that holds fxamacker/cbor (Debian: /usr/share/gocode)."""
    candidates = [p for p in os.environ.get("GOPATH", "").split(os.pathsep) if p]
    candidates.append("/usr/share/gocode")
    for entry in candidates:
        if (Path(entry) / "src" / FXAMACKER).is_dir():
            return entry
    return None


def _go_env(gopath: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GO111MODULE="off",
        GOPATH=gopath,
        GOFLAGS="",
        # Go refuses to build without a cache directory; keep it beside the binary.
        GOCACHE=str(BIN_DIR / "gocache"),
    )
    return env


@functools.cache
def crosscheck_binary() -> Path | None:
    """Build ``crosscheck`` once (cached by source hash); None when Go or fxamacker is absent.

    A build failure with Go present is an error in ``main.go`` and raises
    ``RuntimeError`` with the compiler's output, rather than skipping silently.
    """
    go = shutil.which("go")
    gopath = _gopath()
    if go is None or gopath is None:
        return None
    source = SOURCE_DIR / "main.go"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    binary = BIN_DIR / f"crosscheck-{digest}"
    if binary.exists():
        return binary
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    # Build to a temporary name and rename: concurrent sessions never see half a binary.
    fd, tmp = tempfile.mkstemp(prefix=".crosscheck-", dir=BIN_DIR)
    os.close(fd)
    try:
        result = subprocess.run(
            [go, "build", "-o", tmp, "."],
            cwd=SOURCE_DIR,
            env=_go_env(gopath),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if result.returncode != 0:
            raise RuntimeError(f"building tests/go/crosscheck failed:\n{result.stderr}")
        os.replace(tmp, binary)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


def require_crosscheck() -> Path:
    """The ``crosscheck`` binary, or skip the calling test when Go is not installed."""
    binary = crosscheck_binary()
    if binary is None:
        if os.environ.get("CI"):
            # .ci/run installs Go: a CI run without it would pass while checking nothing
            pytest.fail(f"CI=true but {GO_SKIP_REASON}")
        pytest.skip(GO_SKIP_REASON)
    return binary


def run_crosscheck(
    *args: str | os.PathLike[str], timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``crosscheck ARGS...`` (skipping the test without Go); output captured as text."""
    binary = require_crosscheck()
    return subprocess.run(
        [str(binary), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class GoOutputs:
    """What ``crosscheck gen`` wrote: paths, the hex vectors and the manifest."""

    dir: Path
    recordings: list[Path]  # complete recordings, header to footer
    cut: Path  # no footer, last record cut in its middle
    no_footer: Path  # ends after a complete record, no footer
    frames: Path  # a connection's byte stream: Frames only
    vectors: dict[str, str] = field(default_factory=dict)  # name -> hex
    manifest: dict[str, Any] = field(default_factory=dict)  # file name -> facts


def go_outputs(tmpdir: str | os.PathLike[str]) -> GoOutputs:
    """Run ``crosscheck gen`` into ``tmpdir`` and describe what it wrote (skips without Go)."""
    out = Path(tmpdir)
    result = run_crosscheck("gen", out)
    if result.returncode != 0:
        raise RuntimeError(f"crosscheck gen failed: {result.stderr.strip()}")
    manifest = json.loads((out / "manifest.json").read_text())
    complete = sorted(out / name for name, facts in manifest.items() if facts.get("complete"))
    return GoOutputs(
        dir=out,
        recordings=complete,
        cut=out / "cut.cbor",
        no_footer=out / "no-footer.cbor",
        frames=out / "frames.cbor",
        vectors=json.loads((out / "vectors.json").read_text()),
        manifest=manifest,
    )


def go_recordings(tmpdir: str | os.PathLike[str]) -> list[Path]:
    """Write recordings with the Go implementation into ``tmpdir``; return the complete ones.

    Each is a whole session (header, interleaved commands, footer) written by
    fxamacker/cbor: ``every-type.cbor`` uses every record, frame type, file
    op and field kind; ``interleaved.cbor`` has four concurrent commands and
    about 3000 data/log/file-op frames. The calling test is skipped when Go is
    not installed. Use :func:`go_outputs` for the cut and footer-less ones.
    """
    return go_outputs(tmpdir).recordings
