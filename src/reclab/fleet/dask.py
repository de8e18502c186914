"""The per-file ingest work on an existing Dask cluster (``dask.distributed``).

Each recording is one task running :func:`reclab.fleet.work.ingest_file`,
exactly as a local worker process would; the workers write the parts to
the dataset path themselves (it must be reachable by them: a shared
filesystem), and only the small :class:`~reclab.fleet.work.FileResult`
comes back to this process, which keeps the manifest. Dask does the
scheduling, retries and worker life cycle: reclab adds no scheduler of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .dataset import FleetError
from .work import FileResult, IngestTask, ingest_file

__all__ = ["INSTALL_HINT", "client_for", "run_on_dask"]

INSTALL_HINT = "running on Dask needs dask.distributed: pip install 'reclab[fleet]'"
CONNECT_TIMEOUT = "10s"  # how long to wait for the scheduler before saying it cannot be reached


def client_for(client: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` for ``client`` (a Client, or a scheduler address); and whether
    it was made here (so it is closed here)."""
    try:
        import distributed
    except ImportError:
        raise FleetError(INSTALL_HINT) from None
    client_class: Any = distributed.Client  # distributed is not fully typed
    if isinstance(client, client_class):
        return client, False
    if not isinstance(client, str):
        raise FleetError(f"not a Dask client or scheduler address: {client!r}")
    try:
        return client_class(client, timeout=CONNECT_TIMEOUT, set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as exc:
        detail = str(exc).strip().splitlines()
        raise FleetError(
            f"cannot reach the Dask scheduler at {client}: {detail[0] if detail else exc}"
        ) from None


def run_on_dask(
    client: Any, tasks: list[IngestTask], known: frozenset[str]
) -> Iterator[tuple[IngestTask, FileResult]]:
    """Run ``tasks`` on the cluster of ``client`` (a ``distributed.Client``); yield (task,
    result) as each finishes.

    The set of content hashes already in the dataset goes to every worker
    once (scattered), not with each task. A task whose worker died is a
    failed file, as on the local pool.
    """
    import distributed

    as_completed: Any = distributed.as_completed  # not fully typed
    if not tasks:
        return
    # in a list: a bare set would be scattered element by element
    [shared] = client.scatter([known], broadcast=True, hash=False)
    futures = client.map(ingest_file, tasks, known=shared, pure=False)
    task_of = {f.key: t for f, t in zip(futures, tasks, strict=True)}
    for future in as_completed(futures, loop=client.loop):
        task = task_of[future.key]
        try:
            result = future.result()
        except Exception as exc:  # the worker was lost, or the task could not run
            detail = str(exc).strip().splitlines()
            result = FileResult(
                path=task.path,
                status="failed",
                error=f"{task.path}: on Dask: {type(exc).__name__}: {detail[0] if detail else ''}",
            )
        future.release()
        yield task, result
