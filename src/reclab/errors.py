"""The one family of errors reclab raises.

Every error reclab raises on purpose derives from `ReclabError`, so a caller
(the CLI, a script) catches one class.  Like cbor2's, each subclass also
inherits the builtin it resembles, so existing ``except LookupError`` or
``except OSError`` code keeps working.
"""

from __future__ import annotations


class ReclabError(Exception):
    """Base class of every error reclab raises on purpose."""
