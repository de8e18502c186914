"""The per-file ingest work on an existing Dask cluster (``dask.distributed``).

Each recording is one task running :func:`reclab.fleet.ingest.ingest_file`,
exactly as a local worker process would; the workers write the parts to
the dataset path themselves (it must be reachable by them: a shared
filesystem), and only the small :class:`~reclab.fleet.ingest.FileResult`
comes back to this process, which keeps the manifest. Dask does the
scheduling, retries and worker life cycle: reclab adds no scheduler of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .dataset import FleetError
from .ingest import FileResult, IngestTask, ingest_file

__all__ = ["INSTALL_HINT", "client_for", "run_on_dask"]

INSTALL_HINT = "running on Dask needs dask.distributed: pip install 'reclab[fleet]'"


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
        return client_class(client, timeout="10s", set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as exc:
        detail = str(exc).strip().splitlines()
        raise FleetError(
            f"cannot reach the Dask scheduler at {client}: {detail[0] if detail else exc}"
        ) from None


def run_on_dask(
    client: Any, tasks: list[IngestTask], known: frozenset[str]
) -> Iterator[tuple[IngestTask, FileResult]]:
    """Run ``tasks`` on the cluster of ``client``; yield (task, result) as each finishes.

    The set of content hashes already in the dataset goes to every worker
    once (scattered), not with each task. A task whose worker died is a
    failed file, as on the local pool.
    """
    import distributed

    as_completed: Any = distributed.as_completed  # not fully typed
    if not tasks:
        return
    dask_client, owned = client_for(client)
    try:
        shared = dask_client.scatter(known, broadcast=True, hash=False)
        futures = dask_client.map(ingest_file, tasks, known=shared, pure=False)
        task_of = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        for future in as_completed(futures):
            task = task_of[future.key]
            try:
                result = future.result()
            except Exception as exc:  # the worker was lost, or the task could not run
                detail = str(exc).strip().splitlines()
                result = FileResult(
                    path=task.path,
                    status="failed",
                    error=f"{task.path}: on Dask: {type(exc).__name__}: "
                    f"{detail[0] if detail else ''}",
                )
            future.release()
            yield task, result
    finally:
        if owned:
            dask_client.close()
