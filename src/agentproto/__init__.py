"""agentproto: the CBOR frame protocol of mproxy-agent, wire-compatible with the Go package.

The data layer (types, codec, recordings) does no I/O of its own beyond the
streams it is handed; the live side (mux, file-op server, agent) builds on it.
"""

from .codec import DEFAULT_MAX_FRAME_SIZE, Decoder, Encoder
from .errors import (
    AgentProtoError,
    ConnectionClosedError,
    FrameTooLargeError,
    LimitExceededError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    RPCTimeoutError,
    TruncatedError,
)
from .fileops import FileOpServer
from .logs import MuxLogHandler
from .mux import Mux, StreamHandler, writer_handler
from .recording import (
    MissingFooterError,
    Recorder,
    RecordingReader,
    encode_frame_record,
    iter_records,
    read_recording,
)
from .types import (
    AgentConfig,
    CommandEnd,
    CommandStart,
    Direction,
    ExecMsg,
    FileDirEntry,
    FileOp,
    FileOpReq,
    FileOpResp,
    FileStat,
    FileStatfs,
    Frame,
    FrameType,
    LogEntry,
    PathInfo,
    PathInfoEntry,
    PathQuery,
    Record,
    RecordedFrame,
    RecordType,
    SessionFooter,
    SessionHeader,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "AgentConfig",
    "AgentProtoError",
    "CommandEnd",
    "CommandStart",
    "ConnectionClosedError",
    "Decoder",
    "Direction",
    "Encoder",
    "ExecMsg",
    "FileDirEntry",
    "FileOp",
    "FileOpReq",
    "FileOpResp",
    "FileOpServer",
    "FileStat",
    "FileStatfs",
    "Frame",
    "FrameTooLargeError",
    "FrameType",
    "LimitExceededError",
    "LocalProtocolError",
    "LogEntry",
    "MissingFooterError",
    "Mux",
    "MuxLogHandler",
    "PathInfo",
    "PathInfoEntry",
    "PathQuery",
    "ProtocolError",
    "RPCTimeoutError",
    "Record",
    "RecordType",
    "RecordedFrame",
    "Recorder",
    "RecordingReader",
    "RemoteProtocolError",
    "SessionFooter",
    "SessionHeader",
    "StreamHandler",
    "TruncatedError",
    "encode_frame_record",
    "iter_records",
    "read_recording",
    "writer_handler",
]
