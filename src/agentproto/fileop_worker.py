"""File-op requests served on a worker thread, in order, in bounded memory (agent side).

While an agent's command runs, the connection's reading thread also delivers
its signals and stdin. A file op that blocks (a stat on a hung NFS mount, a
read from a slow device) must not hold those up, so the mux can hand requests
to one :class:`FileOpWorker` (:meth:`agentproto.Mux.serve_file_ops_on_worker`),
which answers them in the order they came.

The queue is bounded by requests and by bytes (a WriteAt carries up to
4 MiB): when it is full, :meth:`FileOpWorker.submit` waits for room, as a
full pipe would make the peer wait, so a runner flooding a stuck agent with
requests cannot exhaust its memory.

Nothing may follow the command's ``FrameExit``: :meth:`FileOpWorker.stop`
lets queued requests be answered for a while, then drops every later answer
(an op still stuck by then is answered never, as the connection ends).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from .types import FileOpReq

__all__ = ["MAX_QUEUED_BYTES", "MAX_QUEUED_REQUESTS", "FileOpWorker"]

MAX_QUEUED_REQUESTS = 256
MAX_QUEUED_BYTES = 8 * 1024 * 1024
_REQUEST_OVERHEAD = 256  # bytes counted per request besides its data and paths
_GATE_WAIT = 0.5  # seconds stop() waits for an answer being written

_log = logging.getLogger("agentproto.mux")


def _size(req: FileOpReq) -> int:
    return _REQUEST_OVERHEAD + len(req.data) + len(req.path) + len(req.new_path)


class FileOpWorker:
    """Answer file-op requests on one daemon thread, in the order they are submitted.

    ``answer(req)`` makes the encoded answer frame; ``send(frame)`` writes
    it. Both run on the worker thread and should not raise (an exception is
    logged, and the worker goes on with the next request).
    """

    def __init__(
        self,
        answer: Callable[[FileOpReq], bytes],
        send: Callable[[bytes], None],
        *,
        max_requests: int = MAX_QUEUED_REQUESTS,
        max_bytes: int = MAX_QUEUED_BYTES,
        name: str = "agent-fileops",
    ):
        self._answer = answer
        self._send = send
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._queue: collections.deque[tuple[FileOpReq, int]] = collections.deque()
        self._queued_bytes = 0
        self._busy = False  # the worker holds a request taken from the queue
        self._accepting = True
        self._cond = threading.Condition()
        # held while an answer is sent, and to stop answers for good
        self._send_gate = threading.Lock()
        self._answers_stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, req: FileOpReq) -> None:
        """Queue ``req``; waits while the queue is full. Dropped once stopped."""
        size = _size(req)
        with self._cond:
            # a request larger than the whole budget still goes, alone
            while (
                self._accepting
                and self._queue
                and (
                    len(self._queue) >= self._max_requests
                    or self._queued_bytes + size > self._max_bytes
                )
            ):
                self._cond.wait()
            if not self._accepting:
                return
            self._queue.append((req, size))
            self._queued_bytes += size
            self._cond.notify_all()

    def stop(self, timeout: float = 0.0) -> bool:
        """Take no more requests; let queued ones be answered for up to ``timeout`` seconds.

        After it returns, no answer is sent any more. True when every request
        submitted was answered.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._accepting = False
            self._cond.notify_all()
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            drained = not self._queue and not self._busy
            self._queue.clear()
            self._queued_bytes = 0
            self._cond.notify_all()
        # An answer being written finishes first, unless its write is stuck (a peer that
        # does not read): then it holds the gate, past its check, and whatever is sent
        # next (the exit frame) queues behind it for the connection anyway.
        in_gate = self._send_gate.acquire(timeout=_GATE_WAIT)
        self._answers_stopped = True
        if in_gate:
            self._send_gate.release()
        return drained

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if not self._accepting:
                        return
                    self._cond.wait()
                req, size = self._queue.popleft()
                self._queued_bytes -= size
                self._busy = True
                self._cond.notify_all()  # room for a waiting submit
            try:
                frame = self._answer(req)
                with self._send_gate:
                    if not self._answers_stopped:
                        self._send(frame)
            except Exception:
                _log.exception("file op %s: no answer", req.op)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
