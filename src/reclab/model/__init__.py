"""A recording opened for analysis: an index of records, commands, frames on demand.

Where things are:

- :mod:`reclab.model.types`: what the index is made of (:class:`Command`,
  :class:`FrameRef`, :class:`Truncation`, :class:`Damage`,
  :class:`IndexSnapshot`, :class:`IndexOptions`, the ``KIND_*`` codes);
- :mod:`reclab.model.scan`: the :class:`~reclab.model.scan.Index` and the scan
  that fills it (bulk parsing via :mod:`agentproto.layout`, resync after damage,
  snapshots);
- :mod:`reclab.model.parallel`: the helper process that indexes the second
  half of a large file;
- :mod:`reclab.model.recording`: :class:`Recording` (random access to records,
  frames and streams) and :func:`open_recording`.
"""

from __future__ import annotations

from ..errors import RecordingError, UnknownCommandError
from .recording import Recording, open_recording
from .types import (
    KIND_COMMAND_END,
    KIND_COMMAND_START,
    KIND_OTHER_FRAME,
    KIND_SESSION_FOOTER,
    KIND_SESSION_HEADER,
    KIND_UNKNOWN_RECORD,
    Command,
    Damage,
    FrameRef,
    IndexOptions,
    IndexSnapshot,
    ProgressCallback,
    Truncation,
)

__all__ = [
    "KIND_COMMAND_END",
    "KIND_COMMAND_START",
    "KIND_OTHER_FRAME",
    "KIND_SESSION_FOOTER",
    "KIND_SESSION_HEADER",
    "KIND_UNKNOWN_RECORD",
    "Command",
    "Damage",
    "FrameRef",
    "IndexOptions",
    "IndexSnapshot",
    "ProgressCallback",
    "Recording",
    "RecordingError",
    "Truncation",
    "UnknownCommandError",
    "open_recording",
]
