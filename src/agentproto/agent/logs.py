"""Agent logs over the mux: Python ``logging`` records as ``FrameLog`` and back.

:class:`MuxLogHandler` is the Go ``MuxLogHandler``: attach it to a logger on
the agent side and each record travels to the runner as a ``LogEntry``
(slog level, message, ``key=value`` attributes). :func:`log_entry_level` and
:func:`emit_log_entry` do the reverse on the runner side.

Level mapping (Python -> slog): DEBUG -4, INFO 0, WARNING 4, ERROR and
CRITICAL 8; levels in between are interpolated (4 slog steps per 10 Python
steps, rounded down) and clamped to [-8, 8].
"""

from __future__ import annotations

import logging
import threading

from ..errors import AgentProtoError
from ..mux import Mux
from ..types import Frame, FrameType, LogEntry

__all__ = [
    "MuxLogHandler",
    "emit_log_entry",
    "log_entry_level",
    "slog_level",
]

# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}


def slog_level(level: int) -> int:
    """The Go slog level for a Python logging level (see the module docs)."""
    if level >= logging.ERROR:
        return 8
    return max(-8, ((level - logging.INFO) * 4) // 10)


def log_entry_level(slog: int) -> int:
    """The Python logging level for a slog level: -4 DEBUG, 0 INFO, 4 WARNING, 8 ERROR."""
    if slog >= 12:
        return logging.CRITICAL
    return max(logging.NOTSET + 1, logging.INFO + (slog * 10) // 4)


class MuxLogHandler(logging.Handler):
    """Forward log records through a :class:`Mux` as ``FrameLog`` frames.

    Never raises: a closed or broken connection drops the record. A record
    logged while the handler is sending (the mux logging its own send
    failure, on the same thread) is dropped instead of recursing.
    """

    def __init__(self, mux: Mux, level: int = logging.DEBUG):
        super().__init__(level)
        self.mux = mux
        self._busy = threading.local()
        self._exc_formatter = logging.Formatter()

    def entry(self, record: logging.LogRecord) -> LogEntry:
        """The ``LogEntry`` for ``record``: slog level, message, extra fields and exception."""
        attrs = [
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        ]
        if record.exc_info and record.exc_info[0] is not None:
            attrs.append(f"exc={self._exc_formatter.formatException(record.exc_info)}")
        elif record.exc_text:
            attrs.append(f"exc={record.exc_text}")
        if record.stack_info:
            attrs.append(f"stack={record.stack_info}")
        return LogEntry(level=slog_level(record.levelno), msg=record.getMessage(), attrs=attrs)

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` as a ``FrameLog``; drop it if the mux is closed or busy with us."""
        if getattr(self._busy, "active", False) or self.mux.closed:
            return
        self._busy.active = True
        try:
            self.mux.send(Frame(type=FrameType.LOG, log=self.entry(record)))
        except (AgentProtoError, OSError, ValueError, TypeError):
            pass  # the runner is gone or the record cannot be encoded: nowhere to report it
        finally:
            self._busy.active = False


def emit_log_entry(logger: logging.Logger, entry: LogEntry) -> None:
    """Log a received ``LogEntry`` on ``logger`` (runner side), attrs appended to the message."""
    level = log_entry_level(entry.level)
    if not logger.isEnabledFor(level):
        return
    text = entry.msg if not entry.attrs else f"{entry.msg} {' '.join(entry.attrs)}"
    logger.log(level, "%s", text)
