"""Coverage-guided fuzzing (atheris) of the readers: record reader, model index, frame decoder.

    pip install atheris
    PYTHONPATH=src python fuzz/fuzz_readers.py records -max_total_time=300 fuzz/corpus-records
    PYTHONPATH=src python fuzz/fuzz_readers.py index   -max_total_time=300 fuzz/corpus-index
    PYTHONPATH=src python fuzz/fuzz_readers.py frames  -max_total_time=300 fuzz/corpus-frames

The first argument picks the target; the rest goes to libFuzzer. The corpus
starts from the sample recordings. The only outcomes allowed are a correct read
or the project's own error with a byte offset: anything else is a crash, and
libFuzzer writes the input as ``crash-*``. Keep such inputs in
``fuzz/regressions/``: ``tests/test_robustness.py`` reads every file there.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from agentproto import Decoder, RemoteProtocolError, iter_records
    from reclab.errors import ReclabError
    from reclab.model import open_recording

ROOT = Path(__file__).resolve().parent.parent
_TMP = Path(tempfile.mkdtemp(prefix="reclab-fuzz-"))


def records(data: bytes) -> None:
    """``iter_records`` over ``data``: records, or our error with an offset."""
    try:
        for _record in iter_records(io.BytesIO(data), require_footer=False):
            pass
    except RemoteProtocolError as exc:
        if exc.offset is None:
            raise AssertionError(f"error without an offset: {exc!r}") from exc


def index(data: bytes) -> None:
    """The model's index over ``data`` (as a file), then every indexed record on demand."""
    path = _TMP / "input.cbor"
    path.write_bytes(data)
    try:
        rec = open_recording(path)
    except ReclabError:
        return  # not a recording at all
    with rec:
        for i in range(rec.record_count):
            rec.record(i)
        for seq in rec.commands:
            rec.stream_bytes(seq, 1)


def frames(data: bytes) -> None:
    """The frame decoder over ``data`` as a stream: frames, or our error with an offset."""
    try:
        for _frame in Decoder(io.BytesIO(data)):
            pass
    except RemoteProtocolError as exc:
        if exc.offset is None:
            raise AssertionError(f"error without an offset: {exc!r}") from exc


TARGETS = {"records": records, "index": index, "frames": frames}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options] [corpus]")
    target = TARGETS[sys.argv.pop(1)]
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    for directory in corpus:  # seed an empty corpus with the sample recordings
        os.makedirs(directory, exist_ok=True)
        if not os.listdir(directory):
            for sample in sorted((ROOT / "sample-recordings").glob("*.cbor")):
                (Path(directory) / sample.name).write_bytes(sample.read_bytes())

    def one_input(data: bytes) -> None:
        target(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
