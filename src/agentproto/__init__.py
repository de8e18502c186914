"""agentproto: the CBOR frame protocol of mproxy-agent, wire-compatible with the Go package.

The data layer (types, codec, layout, recordings) does no I/O of its own beyond
the streams it is handed; the live side (mux, file-op server, agent) builds on
it. Names are re-exported lazily (PEP 562): ``from agentproto import
Direction`` imports the types, not the live side a reader never runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# public name -> the submodule that defines it
_WHERE: dict[str, str] = {
    "AgentConfig": "types",
    "AgentProtoError": "errors",
    "CommandEnd": "types",
    "CommandStart": "types",
    "ConnectionClosedError": "errors",
    "DEFAULT_MAX_FRAME_SIZE": "codec",
    "Decoder": "codec",
    "Direction": "types",
    "Encoder": "codec",
    "ExecMsg": "types",
    "FileDirEntry": "types",
    "FileOp": "types",
    "FileOpReq": "types",
    "FileOpResp": "types",
    "FileOpServer": "fileops",
    "FileStat": "types",
    "FileStatfs": "types",
    "Frame": "types",
    "FrameTooLargeError": "errors",
    "FrameType": "types",
    "LimitExceededError": "errors",
    "LocalProtocolError": "errors",
    "LogEntry": "types",
    "MissingFooterError": "recording",
    "Mux": "mux",
    "MuxLogHandler": "logs",
    "PathInfo": "types",
    "PathInfoEntry": "types",
    "PathQuery": "types",
    "ProtocolError": "errors",
    "RPCTimeoutError": "errors",
    "Record": "types",
    "RecordType": "types",
    "RecordedFrame": "types",
    "Recorder": "recording",
    "RecordingReader": "recording",
    "RemoteProtocolError": "errors",
    "SessionFooter": "types",
    "SessionHeader": "types",
    "StreamHandler": "mux",
    "TruncatedError": "errors",
    "encode_frame_record": "recording",
    "iter_records": "recording",
    "read_recording": "recording",
    "writer_handler": "mux",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'agentproto' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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
