"""Every type of the Go ``agentproto`` package, as Python dataclasses.

Field names are snake_case; the wire names are the Go ``cbor:"…"`` keys, in Go
declaration order (see ``agentproto-go-api.txt``). Each type has:

- ``to_map()`` / ``from_map(m)``: to and from the plain CBOR map (for nesting);
- ``to_cbor()`` / ``from_cbor(data)``: to and from the encoded bytes.

Python defaults are Go's zero values: ``0``, ``""``, ``b""``, ``None`` for nil
pointers and nil slices (which Go writes as CBOR null when the field has no
``omitempty``), an empty list for ``omitempty`` slices. Enumerations are
``IntEnum``s; a value the enum does not know is kept as a plain ``int`` so a
newer peer's frame types survive a round trip.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Self

import cbor2

from .errors import RemoteProtocolError
from .wire import WireKeys, wire, wire_struct

__all__ = [
    "FILE_OP_KEYS",
    "FILE_RESP_KEYS",
    "FRAME_KEYS",
    "LOG_KEYS",
    "RECORDED_FRAME_KEYS",
    "RECORD_KEYS",
    "AgentConfig",
    "CommandEnd",
    "CommandStart",
    "Direction",
    "ExecMsg",
    "FileDirEntry",
    "FileOp",
    "FileOpReq",
    "FileOpResp",
    "FileStat",
    "FileStatfs",
    "Frame",
    "FrameType",
    "LogEntry",
    "PathInfo",
    "PathInfoEntry",
    "PathQuery",
    "Record",
    "RecordType",
    "RecordedFrame",
    "SessionFooter",
    "SessionHeader",
    "decode_cbor_item",
]

# Go's decoder refuses deeper nesting; nothing in the protocol needs more than 7.
MAX_DEPTH = 32


def decode_cbor_item(data: bytes) -> Any:
    """Decode exactly one CBOR item from ``data``; trailing bytes are an error.

    ``cbor2.loads`` silently ignores trailing bytes, which would hide a
    framing bug, so this decodes through a decoder and checks the position.
    """
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp, max_depth=MAX_DEPTH).decode()
    except cbor2.CBORDecodeEOF as exc:
        raise RemoteProtocolError(f"CBOR item cut short ({len(data)} bytes)") from exc
    except (cbor2.CBORDecodeError, RecursionError, ValueError, OverflowError) as exc:
        raise RemoteProtocolError(f"invalid CBOR: {exc}") from exc
    if fp.tell() != len(data):
        raise RemoteProtocolError(
            f"{len(data) - fp.tell()} trailing bytes after the CBOR item", offset=fp.tell()
        )
    return value


class WireType:
    """Mixin: CBOR bytes from and to the generated map converters."""

    __slots__ = ()
    __wire_fields__: ClassVar[tuple[Any, ...]]

    def to_map(self) -> dict[str, Any]:  # replaced by wire_struct
        raise NotImplementedError

    @classmethod
    def from_map(cls, m: Any) -> Self:  # replaced by wire_struct
        raise NotImplementedError

    @staticmethod
    def valid_map(m: Any) -> bool:  # replaced by wire_struct
        raise NotImplementedError

    def to_cbor(self) -> bytes:
        """Encode exactly as Go's fxamacker/cbor would (declaration order, omitempty)."""
        return cbor2.dumps(self.to_map())

    @classmethod
    def from_cbor(cls, data: bytes) -> Self:
        """Decode one CBOR item; raises RemoteProtocolError naming the offending field."""
        return cls.from_map(decode_cbor_item(data))


# --- enumerations ------------------------------------------------------------------


class Direction(IntEnum):
    """Whether a recorded frame was sent by the runner or received from the agent."""

    SEND = 1  # local -> agent
    RECV = 2  # agent -> local


class FrameType(IntEnum):
    """The kind of message on the mux."""

    EXEC = 1  # local -> agent: start command
    DATA = 2  # both ways: data for a stream
    EOF = 3  # sender closes a stream
    SIGNAL = 4  # local -> agent: deliver signal to the child's process group
    EXIT = 5  # agent -> local: child exited (terminal frame)
    ERROR = 6  # agent -> local: internal error
    LOG = 7  # agent -> local: log message
    CONFIG = 8  # local -> agent: configuration
    PATH_QUERY = 9  # local -> agent: enumerate PATH executables
    PATH_INFO = 10  # agent -> local: PATH enumeration result
    FILE_OP = 11  # local -> agent: file-op request
    FILE_RESP = 12  # agent -> local: file-op response


class FileOp(IntEnum):
    """A remote file operation (the RPC's ``op``)."""

    OPEN = 1  # path, flags -> handle
    CREATE = 2  # path -> handle (O_WRONLY|O_CREATE|O_TRUNC)
    OPEN_FILE = 3  # path, flags -> handle
    CLOSE = 4  # handle
    READ_AT = 5  # handle, offset, size -> data, eof
    WRITE_AT = 6  # handle, offset, data -> n
    STAT = 7  # path -> stat
    LSTAT = 8  # path -> stat (not following symlinks)
    READ_DIR = 9  # path -> entries
    MKDIR = 10  # path
    MKDIR_ALL = 11  # path
    REMOVE = 12  # path
    RENAME = 13  # path, new_path
    CHMOD = 14  # path, mode
    TRUNCATE = 15  # path, size
    GETWD = 16  # -> path
    FSYNC = 17  # handle
    READLINK = 18  # path -> path
    SYMLINK = 19  # path (target), new_path (link)
    LINK = 20  # path (old), new_path (new)
    CHOWN = 21  # path, uid, gid
    CHTIMES = 22  # path, atime_nanos, mtime_nanos
    STATFS = 23  # path -> statfs
    FSTAT = 24  # handle -> stat
    FTRUNCATE = 25  # handle, size


class RecordType(IntEnum):
    """The tag of each record in a recording file."""

    SESSION_HEADER = 1
    COMMAND_START = 2
    FRAME = 3
    COMMAND_END = 4
    SESSION_FOOTER = 5


# --- frame payloads (declared before the types that nest them) ----------------------


@wire_struct
@dataclass(slots=True)
class ExecMsg(WireType):
    """The command a ``FrameType.EXEC`` frame starts. ``env`` None is Go's nil (null)."""

    path: str = wire("path", "str")
    argv: list[str] | None = wire("argv", "list_str")
    env: list[str] | None = wire("env", "list_str")
    cwd: str = wire("cwd", "str")
    extra_fds: list[int] = wire("fds", "list_u32", omitempty=True)


@wire_struct
@dataclass(slots=True)
class AgentConfig(WireType):
    """Agent configuration sent in ``FrameType.CONFIG``: globs or ``/regex/`` patterns."""

    env_keep: list[str] | None = wire("env_keep", "list_str")
    env_remove: list[str] | None = wire("env_remove", "list_str")


@wire_struct
@dataclass(slots=True)
class LogEntry(WireType):
    """A structured log record from the agent; ``level`` is a Go slog level."""

    level: int = wire("lvl", "i64")
    msg: str = wire("msg", "str")
    attrs: list[str] = wire("a", "list_str", omitempty=True)


@wire_struct
@dataclass(slots=True)
class PathQuery(WireType):
    """Ask for the executables on PATH-style directories (empty: the agent's own $PATH)."""

    paths: list[str] = wire("paths", "list_str", omitempty=True)


@wire_struct
@dataclass(slots=True)
class PathInfoEntry(WireType):
    """One executable found by a PATH query."""

    name: str = wire("name", "str")
    remote_path: str = wire("path", "str")
    mode: int = wire("mode", "u32")
    size: int = wire("size", "i64")
    mtime_nanos: int = wire("mtime", "i64", omitempty=True)


@wire_struct
@dataclass(slots=True)
class PathInfo(WireType):
    """The answer to a PATH query: deduplicated by name, first found wins."""

    entries: list[PathInfoEntry] | None = wire("entries", "list_struct", struct=PathInfoEntry)


@wire_struct
@dataclass(slots=True)
class FileStat(WireType):
    """A stat snapshot; ``mode`` is a Go ``os.FileMode`` (see :mod:`agentproto.filemode`)."""

    name: str = wire("n", "str")
    size: int = wire("s", "i64")
    mode: int = wire("m", "u32")
    mtime_nanos: int = wire("t", "i64", omitempty=True)
    atime_nanos: int = wire("at", "i64", omitempty=True)
    ctime_nanos: int = wire("ct", "i64", omitempty=True)
    uid: int = wire("uid", "u32", omitempty=True)
    gid: int = wire("gid", "u32", omitempty=True)
    nlink: int = wire("nl", "u32", omitempty=True)
    rdev: int = wire("rd", "u32", omitempty=True)
    blocks: int = wire("bl", "u64", omitempty=True)
    blksize: int = wire("bs", "u32", omitempty=True)
    ino: int = wire("ino", "u64", omitempty=True)
    is_dir: bool = wire("d", "bool", omitempty=True)


@wire_struct
@dataclass(slots=True)
class FileStatfs(WireType):
    """A statfs/statvfs snapshot."""

    blocks: int = wire("b", "u64", omitempty=True)
    bfree: int = wire("bf", "u64", omitempty=True)
    bavail: int = wire("ba", "u64", omitempty=True)
    files: int = wire("f", "u64", omitempty=True)
    ffree: int = wire("ff", "u64", omitempty=True)
    bsize: int = wire("bs", "u32", omitempty=True)
    frsize: int = wire("fr", "u32", omitempty=True)
    name_len: int = wire("nl", "u32", omitempty=True)


@wire_struct
@dataclass(slots=True)
class FileDirEntry(WireType):
    """One entry of a ReadDir answer."""

    stat: FileStat = wire("st", "struct", struct=FileStat)


@wire_struct
@dataclass(slots=True)
class FileOpReq(WireType):
    """The request half of a file-op RPC; set only the fields the op uses."""

    req_id: int = wire("id", "u32")
    op: FileOp | int = wire("op", "u8", enum_type=FileOp)
    path: str = wire("p", "str", omitempty=True)
    new_path: str = wire("np", "str", omitempty=True)
    flags: int = wire("fl", "i32", omitempty=True)
    mode: int = wire("mo", "u32", omitempty=True)
    uid: int = wire("uid", "u32", omitempty=True)
    gid: int = wire("gid", "u32", omitempty=True)
    handle: int = wire("h", "u32", omitempty=True)
    offset: int = wire("of", "i64", omitempty=True)
    size: int = wire("sz", "i64", omitempty=True)
    atime_nanos: int = wire("at", "i64", omitempty=True)
    mtime_nanos: int = wire("mt", "i64", omitempty=True)
    data: bytes = wire("d", "bytes", omitempty=True)


@wire_struct
@dataclass(slots=True)
class FileOpResp(WireType):
    """The response half of a file-op RPC; ``errno`` non-zero means failure."""

    req_id: int = wire("id", "u32")
    errno: int = wire("er", "u32", omitempty=True)
    err_msg: str = wire("em", "str", omitempty=True)
    handle: int = wire("h", "u32", omitempty=True)
    data: bytes = wire("d", "bytes", omitempty=True)
    n: int = wire("n", "i64", omitempty=True)
    eof: bool = wire("eof", "bool", omitempty=True)
    path: str = wire("p", "str", omitempty=True)
    stat: FileStat | None = wire("st", "ptr", omitempty=True, struct=FileStat)
    statfs: FileStatfs | None = wire("sf", "ptr", omitempty=True, struct=FileStatfs)
    entries: list[FileDirEntry] = wire("en", "list_struct", omitempty=True, struct=FileDirEntry)


# --- the frame -----------------------------------------------------------------------


@wire_struct
@dataclass(slots=True)
class Frame(WireType):
    """One message on the mux; only the fields its type uses are set."""

    type: FrameType | int = wire("t", "u8", enum_type=FrameType)
    stream: int = wire("s", "u32", omitempty=True)  # 0 stdin, 1 stdout, 2 stderr, 3+ extra fds
    data: bytes = wire("d", "bytes", omitempty=True)
    signal: int = wire("sig", "i64", omitempty=True)
    code: int = wire("c", "i64", omitempty=True)
    error: str = wire("e", "str", omitempty=True)
    exec: ExecMsg | None = wire("x", "ptr", omitempty=True, struct=ExecMsg)
    log: LogEntry | None = wire("l", "ptr", omitempty=True, struct=LogEntry)
    config: AgentConfig | None = wire("cfg", "ptr", omitempty=True, struct=AgentConfig)
    query: PathQuery | None = wire("q", "ptr", omitempty=True, struct=PathQuery)
    info: PathInfo | None = wire("i", "ptr", omitempty=True, struct=PathInfo)
    file_op: FileOpReq | None = wire("fop", "ptr", omitempty=True, struct=FileOpReq)
    file_resp: FileOpResp | None = wire("frp", "ptr", omitempty=True, struct=FileOpResp)

    def __repr__(self) -> str:
        # Frames can carry megabytes: show the fields that are set, data abbreviated.
        parts = [f"type={_enum_name(self.type)}"]
        for name in (
            "stream",
            "signal",
            "code",
            "error",
            "exec",
            "log",
            "config",
            "query",
            "info",
            "file_op",
            "file_resp",
        ):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value!r}")
        if self.data:
            shown = self.data[:32]
            more = f"...+{len(self.data) - 32}" if len(self.data) > 32 else ""
            parts.append(f"data={shown!r}{more}")
        return f"Frame({', '.join(parts)})"


def _enum_name(value: int) -> str:
    return value.name if isinstance(value, IntEnum) else str(value)


# --- recordings ------------------------------------------------------------------------


@wire_struct
@dataclass(slots=True)
class SessionHeader(WireType):
    """Written once at the start of a recording; ``start_time`` in Unix nanoseconds."""

    version: str = wire("version", "str")
    start_time: int = wire("start_time", "i64")
    local_user: str = wire("local_user", "str")
    local_pid: int = wire("local_pid", "i64")
    backend_type: str = wire("backend_type", "str", omitempty=True)
    backend_addr: str = wire("backend_addr", "str", omitempty=True)
    agent_path: str = wire("agent_path", "str")


@wire_struct
@dataclass(slots=True)
class CommandStart(WireType):
    """A command began: its sequence number and the exec request."""

    seq: int = wire("seq", "u32")
    start_time: int = wire("start_time", "i64")
    exec: ExecMsg = wire("exec", "struct", struct=ExecMsg)


@wire_struct
@dataclass(slots=True)
class RecordedFrame(WireType):
    """A frame as recorded: command sequence number, Unix-nanosecond time, direction."""

    seq: int = wire("seq", "u32")
    timestamp: int = wire("ts", "i64")
    direction: Direction | int = wire("dir", "u8", enum_type=Direction)
    frame: Frame = wire("frame", "struct", struct=Frame)


@wire_struct
@dataclass(slots=True)
class CommandEnd(WireType):
    """A command ended with ``exit_code``."""

    seq: int = wire("seq", "u32")
    end_time: int = wire("end_time", "i64")
    exit_code: int = wire("exit_code", "i64")


@wire_struct
@dataclass(slots=True)
class SessionFooter(WireType):
    """Written once by ``Recorder.close``: end time and number of commands."""

    end_time: int = wire("end_time", "i64")
    command_count: int = wire("command_count", "u32")


@wire_struct
@dataclass(slots=True)
class Record(WireType):
    """The envelope of each item in a recording file; one payload field is set."""

    type: RecordType | int = wire("type", "u8", enum_type=RecordType)
    header: SessionHeader | None = wire("header", "ptr", omitempty=True, struct=SessionHeader)
    cmd_start: CommandStart | None = wire("cmd_start", "ptr", omitempty=True, struct=CommandStart)
    frame: RecordedFrame | None = wire("frame", "ptr", omitempty=True, struct=RecordedFrame)
    cmd_end: CommandEnd | None = wire("cmd_end", "ptr", omitempty=True, struct=CommandEnd)
    footer: SessionFooter | None = wire("footer", "ptr", omitempty=True, struct=SessionFooter)

    @property
    def payload(self) -> object:
        """Whichever of header/cmd_start/frame/cmd_end/footer is set (None if none)."""
        return self.frame or self.cmd_start or self.cmd_end or self.header or self.footer


# The CBOR keys of the types that readers look into without decoding them whole
# (``FRAME_KEYS.file_op == "fop"``), derived from the field tables above.
RECORD_KEYS = WireKeys(Record)
RECORDED_FRAME_KEYS = WireKeys(RecordedFrame)
FRAME_KEYS = WireKeys(Frame)
LOG_KEYS = WireKeys(LogEntry)
FILE_OP_KEYS = WireKeys(FileOpReq)
FILE_RESP_KEYS = WireKeys(FileOpResp)
