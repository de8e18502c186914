"""The agent: the far side of the protocol, compatible with ``mproxy-agent``.

A runnable agent: the far side of the protocol, compatible with ``mproxy-agent``.

``python -m agentproto.agent`` (or ``agentproto-agent``) speaks on its
stdin/stdout, as ``mproxy-agent`` does under SSH; ``--listen unix:/path`` or
``--listen tcp:HOST:PORT`` serves many connections at once instead (one
command per connection). ``--root DIR`` confines file ops to a tree.

A connection (a *session*):

1. Until ``FrameExec``, frames are read one at a time: ``FrameConfig`` sets
   the environment patterns (see :mod:`agentproto.envfilter`), file ops and
   PATH queries are answered; a connection that never sends ``FrameExec`` is
   served until its end.
2. ``FrameExec`` starts the child: ``path`` is the program (relative to
   ``cwd`` when it has a ``/``, looked up on the child's ``PATH`` when it has
   none, ``argv[0]`` when empty), ``argv`` its arguments (``[path]`` when
   empty), ``cwd`` its directory (the agent's when empty). The child runs in a
   new session (its own process group). Each fd ``n`` of ``ExecMsg.fds``
   (3 or more) is a pipe the child writes on fd ``n``, sent as stream ``n``.
3. Stream 0 data goes to the child's stdin (``FrameEOF`` closes it); stdout
   (1), stderr (2) and the extra fds go to the runner as ``FrameData`` chunks
   of up to 256 KiB then ``FrameEOF``, with back-pressure: a runner that stops
   reading blocks the child, nothing piles up in memory. ``FrameSignal`` goes
   to the child's process group. File ops and PATH queries are still served.
4. When the child has exited and its outputs are drained, ``FrameExit``
   carries the exit code (128 + signal number for a child killed by a
   signal, as a shell reports it) and the agent closes the connection:
   ``FrameExit`` is the last frame.

A command that cannot start gets ``FrameError`` (why) and ``FrameExit`` with
127 (program not found) or 126 (found but not runnable: permission, format,
bad ``cwd``, bad ``fds``). If the runner disconnects before the child ends
(end of its input, even while stdin delivery is blocked; or it stops reading
our output), the child's process group gets SIGTERM, then SIGKILL after
``--grace`` seconds, and is reaped. The agent's own log records go to stderr
and, as ``FrameLog``, to the runner (the command line only at debug level).

Hostile or broken input: bytes that are not CBOR, a frame over the size limit
or a cut frame end the session with ``FrameError`` (and the child as above);
before ``FrameExec`` so does a CBOR item that is not a valid frame. During a
command, undecodable frames, frames of unknown type or of the runner-bound
direction (``FrameExit``, a second ``FrameExec``...) are dropped and logged.

Stdin goes through a buffer of ``STDIN_BUFFER`` bytes with a writer thread:
while the child does not read, later frames of the connection (signals, file
ops) are still read and served, until that much input is pending; then the
connection waits for the child (back-pressure). Runners built on this package's
:class:`~agentproto.mux.Mux` send signals, file ops and PATH queries ahead of
the data frames not yet written, so they never wait behind more than that.

Modules: :mod:`~agentproto.agent.session` (one connection),
:mod:`~agentproto.agent.command` (the child, its stdin buffer),
:mod:`~agentproto.agent.server` (stdio and listening, admission),
:mod:`~agentproto.agent.cli` (``main``), and the services
:mod:`~agentproto.agent.fileops`, :mod:`~agentproto.agent.pathquery`,
:mod:`~agentproto.agent.envfilter`, :mod:`~agentproto.agent.logs`.
Names are imported lazily: ``from agentproto.agent import FileOpServer`` does
not load the session machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cli import main
    from .command import EXIT_CANNOT_RUN, EXIT_NOT_FOUND, STDIN_BUFFER, Command, StartError
    from .session import Session

__all__ = [
    "EXIT_CANNOT_RUN",
    "EXIT_NOT_FOUND",
    "STDIN_BUFFER",
    "Command",
    "Session",
    "StartError",
    "main",
]

_WHERE = {
    "main": ".cli",
    "EXIT_CANNOT_RUN": ".command",
    "EXIT_NOT_FOUND": ".command",
    "STDIN_BUFFER": ".command",
    "Command": ".command",
    "StartError": ".command",
    "Session": ".session",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
