"""The one family of errors reclab raises.

Every error reclab raises on purpose derives from `ReclabError`, so a caller
(the CLI, a script) catches one class.  Like cbor2's, each subclass also
inherits the builtin it resembles, so existing ``except LookupError`` or
``except OSError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["ExportError", "ReclabError", "RecordingError", "UnknownCommandError"]


class ReclabError(Exception):
    """Base class of every error reclab raises on purpose."""


class RecordingError(ReclabError, ValueError):
    """The file cannot be read as a recording; the message is one line for the CLI."""


class UnknownCommandError(ReclabError, LookupError):
    """No command with the requested sequence number; the message lists the valid ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown command"


class ExportError(ReclabError, ValueError):
    """The export cannot be done as asked; the message is one line for the CLI."""
