"""The ingest work: one recording into the dataset, and many on local processes.

:func:`ingest_file` is the unit of work, the same wherever it runs (this
process, a local process pool, a Dask worker): open and index one
recording, hash its complete records, and write one Parquet part per table
(to a hidden temporary name, then renamed into place), built by the very
functions ``reclab export`` uses. It returns a :class:`FileResult` and
never raises: an unreadable recording is a ``"failed"`` result.

:func:`ingest` is the driver: it finds the files, skips those the manifest
says are unchanged, runs the rest (a process per core by default, or on a
Dask cluster, see :mod:`reclab.fleet.dask`), and records each result in the
manifest as it arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import secrets
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dataset import (
    TABLES,
    FleetError,
    Manifest,
    ManifestEntry,
    dataset_lock,
    find_recordings,
    part_path,
    utc_day,
)

if TYPE_CHECKING:
    from ..model import Recording

__all__ = ["FileResult", "IngestReport", "IngestTask", "ingest", "ingest_file"]

# Rows per Parquet row group and per table batch: what bounds a worker's memory.
BATCH_ROWS = 32768
# A worker process is replaced after this many recordings, so memory that
# pandas and Arrow keep after a large file is given back.
_TASKS_PER_WORKER = 64
_HASH_CHUNK = 4 * 1024 * 1024
_SAVE_EVERY = 2.0  # seconds between manifest saves during a long ingest

ProgressCallback = Callable[[int, int, int, int], None]


@dataclass(frozen=True, slots=True)
class IngestTask:
    """One recording to ingest into ``dataset`` (both absolute paths, as the worker sees them)."""

    path: str
    dataset: str
    batch_rows: int = BATCH_ROWS


@dataclass(slots=True)
class FileResult:
    """What became of one recording.

    ``status`` is ``"complete"`` or ``"partial"`` (written; partial when cut
    or not closed yet), ``"unchanged"`` (its content hash is already in the
    dataset: nothing written) or ``"failed"`` (``error`` says why, in one
    line; nothing written).
    """

    path: str
    status: str
    key: str = ""
    hash: str = ""
    day: str = ""
    size: int = 0
    mtime_ns: int = 0
    bytes: int = 0
    truncation: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def written(self) -> bool:
        """True when parts were written for this recording."""
        return self.status in ("complete", "partial")


@dataclass(slots=True)
class IngestReport:
    """The outcome of :func:`ingest`: one :class:`FileResult` per file looked at."""

    dataset: Path
    results: list[FileResult] = field(default_factory=list)

    def _with(self, *statuses: str) -> list[FileResult]:
        return [r for r in self.results if r.status in statuses]

    @property
    def ingested(self) -> list[FileResult]:
        """Recordings written (complete or partial)."""
        return self._with("complete", "partial")

    @property
    def partial(self) -> list[FileResult]:
        """Recordings written up to their last complete record (cut, or still growing)."""
        return self._with("partial")

    @property
    def skipped(self) -> list[FileResult]:
        """Recordings already in the dataset (same file, or same content hash)."""
        return self._with("unchanged")

    @property
    def failed(self) -> list[FileResult]:
        """Recordings that could not be read; nothing of them was written."""
        return self._with("failed")


# --- the per-file work ----------------------------------------------------------------


def _content_hash(rec: Recording, end: int) -> str:
    """BLAKE2b-128 of the first ``end`` bytes: the complete records, whatever is appended."""
    digest = hashlib.blake2b(digest_size=16)
    with open(rec.path, "rb", buffering=0) as fp:
        done = 0
        while done < end:
            data = fp.read(min(_HASH_CHUNK, end - done))
            if not data:
                raise OSError(f"{rec.path}: the file shrank while reading it")
            digest.update(data)
            done += len(data)
    return digest.hexdigest()


def _recording_key(rec: Recording, path: str) -> str:
    """A name for the recording that stays the same while it grows: its path and header record."""
    first_end = rec.offset_of(1) if rec.record_count > 1 else rec.indexed_bytes
    with open(rec.path, "rb", buffering=0) as fp:
        header = fp.read(first_end)
    return hashlib.blake2b(path.encode() + b"\0" + header, digest_size=8).hexdigest()


def _table_batches(rec: Recording, table: str, batch_rows: int) -> Iterator[Any]:
    """Table ``table`` of ``rec`` as ``pyarrow.Table`` batches, as ``reclab export`` writes it.

    The same sources and conversion as :mod:`reclab.export`: the frames
    table straight as Arrow, the others from the pandas batches of
    :func:`reclab.tables.iter_table`, all with the first batch's schema.
    """
    from ..tables import arrow_batches, frames_arrow_batches, iter_table

    if table == "frames":
        yield from frames_arrow_batches(rec, batch_rows=batch_rows)
        return
    yield from arrow_batches(iter_table(rec, table, batch_rows=batch_rows))


def _with_recording(batch: Any, recording: str, path: str) -> Any:
    """``batch`` with the join columns ``recording`` (content hash) and ``recording_path`` first."""
    import pyarrow as pa

    n = batch.num_rows
    batch = batch.add_column(0, "recording_path", pa.array([path] * n, pa.string()))
    return batch.add_column(0, "recording", pa.array([recording] * n, pa.string()))


def _write_table(rec: Recording, table: str, target: Path, hash_: str, path: str, rows: int) -> int:
    """Write ``table`` of ``rec`` to the Parquet file ``target``; return its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    written = 0
    writer = None
    try:
        for batch in _table_batches(rec, table, rows):
            batch = _with_recording(batch, hash_, path)
            if writer is None:
                # Dictionary pages for the categoricals and the join columns only:
                # on near-unique columns (offsets, times) they cost and grow the file.
                dictionary = [
                    f.name
                    for f in batch.schema
                    if pa.types.is_dictionary(f.type) or f.name.startswith("recording")
                ]
                writer = pq.ParquetWriter(target, batch.schema, use_dictionary=dictionary)
            writer.write_table(batch)
            written += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return written


def ingest_file(task: IngestTask, known: frozenset[str] | Any = frozenset()) -> FileResult:
    """Ingest one recording into the dataset; never raise (a failure is a ``"failed"`` result).

    Indexes ``task.path`` up to its last complete record, hashes those
    bytes, and unless the hash is in ``known`` writes one part per table
    under ``task.dataset``: each to a hidden temporary file first, all
    renamed into place only once every table is written, so an error or a
    kill leaves no part of this recording half-written. A part of an older
    version of the same recording (it grew) is replaced by the rename.
    """
    from ..model import RecordingError, open_recording

    result = FileResult(path=task.path, status="failed")
    temps: list[tuple[Path, Path]] = []
    try:
        st = os.stat(task.path)
        result.size, result.mtime_ns = st.st_size, st.st_mtime_ns
        with open_recording(task.path) as rec:
            end = rec.indexed_bytes
            result.bytes = end
            result.hash = _content_hash(rec, end)
            if result.hash in known:
                result.status = "unchanged"
                return result
            result.key = _recording_key(rec, task.path)
            start = rec.header.start_time if rec.header else None
            result.day = utc_day(start)
            result.truncation = rec.truncation.kind if rec.truncation else None
            root = Path(task.dataset)
            for table in TABLES:
                final = part_path(root, table, result.day, result.key)
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
                temps.append((tmp, final))
                result.rows[table] = _write_table(
                    rec, table, tmp, result.hash, task.path, task.batch_rows
                )
        for tmp, final in temps:
            os.replace(tmp, final)
        temps = []
        result.status = "complete" if result.truncation is None else "partial"
    except RecordingError as exc:
        result.error = str(exc)
    except OSError as exc:
        result.error = f"{task.path}: {exc.strerror or exc}"
    except Exception as exc:  # a hostile recording must not stop the other files
        detail = str(exc).strip().splitlines()
        result.error = f"{task.path}: {type(exc).__name__}: {detail[0] if detail else ''}".rstrip()
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    if result.status == "failed":
        result.rows = {}
    return result


# --- local processes --------------------------------------------------------------------

_KNOWN: frozenset[str] = frozenset()


def _init_worker(known: frozenset[str]) -> None:
    global _KNOWN
    _KNOWN = known
    # The pool already has a process per core: no index helper process per large file.
    os.environ["RECLAB_INDEX_WORKERS"] = "1"


def _ingest_in_worker(task: IngestTask) -> FileResult:
    return ingest_file(task, _KNOWN)


def _run_local(
    tasks: list[IngestTask], known: frozenset[str], workers: int
) -> Iterator[tuple[IngestTask, FileResult]]:
    """Run ``tasks`` on ``workers`` local processes (in this one for 1); yield as each ends."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield task, ingest_file(task, known)
        return
    # forkserver: workers start from a clean process that has already imported
    # pandas and pyarrow (cheap, and safe with the progress bar's thread).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["reclab.fleet.work", "reclab.tables", "pyarrow.parquet"])
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(known,),
        max_tasks_per_child=_TASKS_PER_WORKER,
    ) as pool:
        # Keep a bounded number of files queued: the pool's queue holds no more.
        pending: dict[Future[FileResult], IngestTask] = {}
        queue = iter(tasks)
        try:
            while True:
                while len(pending) < 4 * workers:
                    queued = next(queue, None)
                    if queued is None:
                        break
                    pending[pool.submit(_ingest_in_worker, queued)] = queued
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    yield task, _result_of(future, task)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _result_of(future: Future[FileResult], task: IngestTask) -> FileResult:
    """A future's result; a worker that died (killed, out of memory) is a failed file."""
    try:
        return future.result()
    except Exception as exc:
        return FileResult(path=task.path, status="failed", error=f"{task.path}: worker died: {exc}")


# --- the driver ------------------------------------------------------------------------


def default_workers() -> int:
    """A worker process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def ingest(
    sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    *,
    workers: int | None = None,
    client: Any = None,
    batch_rows: int = BATCH_ROWS,
    progress: ProgressCallback | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> IngestReport:
    """Ingest the recordings named by ``sources`` into the Parquet dataset ``dataset``.

    ``sources`` are files, directories (searched for ``*.cbor``) or globs.
    A file unchanged since it was ingested (same size and modification
    time), or whose complete records hash to content already in the
    dataset, is skipped; a grown one replaces its old parts. The work runs
    on ``workers`` local processes (default: one per core), or on a Dask
    cluster when ``client`` is a ``dask.distributed.Client`` or a scheduler
    address (the dataset path must then be reachable by the workers).
    ``progress(files_done, files_total, bytes_done, bytes_total)`` follows
    the work; ``on_result`` sees each file's :class:`FileResult`. Raises
    :class:`FleetError` for bad sources or a dataset in use; an unreadable
    recording is only a failed result.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if batch_rows < 1:
        raise FleetError("the batch size must be at least one row")
    root = Path(dataset).resolve()
    if root.exists() and not root.is_dir():
        raise FleetError(f"{root}: not a directory")
    files = find_recordings(sources)
    report = IngestReport(root)
    with contextlib.ExitStack() as stack:
        if client is not None:
            # A missing dask.distributed or an unreachable scheduler fails before any work.
            from .dask import client_for

            client, owned = client_for(client)
            if owned:
                stack.callback(client.close)
        stack.enter_context(dataset_lock(root))
        _ingest_files(files, root, report, workers, client, batch_rows, progress, on_result)
    return report


def _ingest_files(
    files: list[Path],
    root: Path,
    report: IngestReport,
    workers: int | None,
    client: Any,
    batch_rows: int,
    progress: ProgressCallback | None,
    on_result: Callable[[FileResult], None] | None,
) -> None:
    """The body of :func:`ingest`, with the dataset locked: skip, run, record."""
    manifest = Manifest.load(root)
    by_path = manifest.by_path()
    tasks: list[IngestTask] = []
    sizes: dict[str, int] = {}
    for path in files:
        name = str(path)
        try:
            st = path.stat()
        except OSError as exc:
            report.results.append(
                FileResult(name, "failed", error=f"{name}: {exc.strerror or exc}")
            )
            continue
        old = by_path.get(name)
        if old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
            report.results.append(_unchanged(old))
            continue
        sizes[name] = st.st_size
        tasks.append(IngestTask(name, str(root), batch_rows))
    # Largest first: a big file started last would leave the other cores idle.
    tasks.sort(key=lambda t: -sizes[t.path])
    hashes = manifest.hashes()
    known = frozenset(hashes)
    total_bytes = sum(sizes.values())
    done_files = done_bytes = 0
    if progress is not None:
        progress(0, len(tasks), 0, total_bytes)
    if client is not None:
        from .dask import run_on_dask

        results: Iterator[tuple[IngestTask, FileResult]] = run_on_dask(client, tasks, known)
    else:
        results = _run_local(tasks, known, workers or default_workers())
    last_save = time.monotonic()
    try:
        for task, result in results:
            _record(manifest, hashes, result)
            report.results.append(result)
            done_files += 1
            done_bytes += sizes[task.path]
            if on_result is not None:
                on_result(result)
            if progress is not None:
                progress(done_files, len(tasks), done_bytes, total_bytes)
            if time.monotonic() - last_save > _SAVE_EVERY:
                manifest.save()
                last_save = time.monotonic()
    finally:
        manifest.save()


def _unchanged(entry: ManifestEntry) -> FileResult:
    return FileResult(
        path=entry.path,
        status="unchanged",
        key=entry.key,
        hash=entry.hash,
        day=entry.day,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        bytes=entry.bytes,
        truncation=entry.truncation,
        rows=dict(entry.rows),
    )


def _record(manifest: Manifest, hashes: dict[str, str], result: FileResult) -> None:
    """Enter a result in the manifest, removing parts it made obsolete or duplicate.

    ``hashes`` maps the content hashes in the manifest to their keys; it is
    kept up to date here.
    """
    root = manifest.root
    if result.status == "unchanged":
        # Same content as an ingested recording (e.g. only a torn record was
        # appended): remember the new size so the file is not read again.
        for entry in manifest.entries.values():
            if entry.hash == result.hash and entry.path == result.path:
                entry.size, entry.mtime_ns = result.size, result.mtime_ns
        return
    if not result.written:
        return
    twin = hashes.get(result.hash)
    if twin is not None and twin != result.key:
        # The same content under another path, ingested by another worker of
        # this run: keep the first, drop these parts.
        _remove_parts(root, result.key, result.day)
        result.status = "unchanged"
        return
    old = manifest.entries.get(result.key)
    if old is not None:
        hashes.pop(old.hash, None)
        if old.day != result.day:
            _remove_parts(root, old.key, old.day)
    hashes[result.hash] = result.key
    manifest.entries[result.key] = ManifestEntry(
        key=result.key,
        path=result.path,
        hash=result.hash,
        day=result.day,
        size=result.size,
        mtime_ns=result.mtime_ns,
        bytes=result.bytes,
        status=result.status,
        truncation=result.truncation,
        rows=dict(result.rows),
        ingested_at=time.time(),
    )


def _remove_parts(root: Path, key: str, day: str) -> None:
    for table in TABLES:
        with contextlib.suppress(FileNotFoundError):
            part_path(root, table, day, key).unlink()


def describe(result: FileResult) -> str:
    """One line about a result, for the CLI."""
    if result.status == "failed":
        return result.error
    rows = ", ".join(f"{n} {t}" for t, n in result.rows.items() if t != "session")
    note = f" ({result.truncation})" if result.status == "partial" else ""
    return f"{shlex.quote(result.path)}: {result.status}{note}: {rows}"
