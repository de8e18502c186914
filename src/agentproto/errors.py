"""Exceptions of the agentproto package.

One base class, split like h11's: a *local* error is something our side tried
to do that the protocol cannot express (refused before anything is written); a
*remote* error is something the peer or a recording file sent us. Each also
inherits the builtin it resembles, as cbor2's errors do, so generic handlers
(``except ValueError``, ``except EOFError``) keep working.
"""

from __future__ import annotations


class AgentProtoError(Exception):
    """Base class of every error raised by agentproto."""


class ProtocolError(AgentProtoError, ValueError):
    """Bytes or values that are not valid agentproto.

    ``offset`` is the byte offset in the stream or file where the offending
    item starts (None when unknown), ``field`` the dotted wire path of the
    offending field (``frame.x.argv``) when one is to blame.
    """

    def __init__(self, message: str, *, offset: int | None = None, field: str | None = None):
        self.message = message
        self.offset = offset
        self.field = field
        super().__init__(message)

    def __str__(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"at byte {self.offset}")
        if self.field:
            where.append(f"in field {self.field!r}")
        return f"{self.message} ({', '.join(where)})" if where else self.message

    def at(self, offset: int) -> ProtocolError:
        """Set the byte offset (if not yet known) and return self, for re-raising."""
        if self.offset is None:
            self.offset = offset
        return self


class LocalProtocolError(ProtocolError):
    """A value we were asked to encode cannot be represented the way Go would."""


class RemoteProtocolError(ProtocolError):
    """The peer or the recording sent something that is not a valid frame or record."""


class TruncatedError(RemoteProtocolError, EOFError):
    """The stream or file ended inside an item.

    Everything before ``offset`` was complete; ``records`` holds what was read
    before the cut when the reader collected it (``read_recording``).
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        field: str | None = None,
        records: list[object] | None = None,
    ):
        super().__init__(message, offset=offset, field=field)
        self.records: list[object] = records if records is not None else []


class FrameTooLargeError(RemoteProtocolError):
    """An item announces more bytes than the configured limit; it was not buffered."""


class LimitExceededError(FrameTooLargeError):
    """An item breaks Go's decoder limits (entries per array or map, nesting depth).

    Refused from its heads, before it is buffered, like a frame over the size limit.
    """


class ConnectionClosedError(AgentProtoError, ConnectionError):
    """The connection ended while a caller was waiting for an answer."""


class RPCTimeoutError(AgentProtoError, TimeoutError):
    """A file-op RPC got no answer within its timeout."""
