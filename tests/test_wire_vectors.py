"""Hex test vectors for every wire type, checked against Go's fxamacker/cbor.

``OBJECTS`` and ``GO_HEX`` are one table in two halves: each name is a value
that ``tests/go/crosscheck/main.go`` (``vectors()``) builds with the real Go
types and default options, and the hex is what Go wrote for it (pasted from
``crosscheck vectors``, so it does not come from our encoder). When Go is
installed, :func:`test_go_vectors_are_current` re-runs Go and compares, so
the table cannot drift from Go's output. A few vectors are also derived by
hand from the CBOR rules in :data:`HAND_HEX`.

Then: what Go cannot represent is refused on encode (LocalProtocolError
naming the field); decoding applies Go's rules (unknown keys ignored,
case-insensitive fallback, null is the zero value) and refuses wrong types
and out-of-range values with a RemoteProtocolError naming the field.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import cbor2
import pytest
from gotools import run_crosscheck

from agentproto import (
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
    LocalProtocolError,
    LogEntry,
    PathInfo,
    PathInfoEntry,
    PathQuery,
    Record,
    RecordedFrame,
    RecordType,
    RemoteProtocolError,
    SessionFooter,
    SessionHeader,
)
from agentproto.types import WireType

BASE_TIME = 1_700_000_000_123_456_789
ALL_BYTES = bytes(range(256))
U32 = 2**32 - 1
U64 = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
MODE_DIR, MODE_SYMLINK, MODE_SETUID = 1 << 31, 1 << 27, 1 << 23

FULL_STAT = FileStat(
    name="données ✓",
    size=I64_MAX,
    mode=MODE_DIR | 0o755,
    mtime_nanos=BASE_TIME,
    atime_nanos=-1,
    ctime_nanos=I64_MIN,
    uid=U32,
    gid=1000,
    nlink=2,
    rdev=259,
    blocks=U64,
    blksize=4096,
    ino=U64,
    is_dir=True,
)
FULL_STATFS = FileStatfs(
    blocks=U64,
    bfree=1 << 40,
    bavail=2**32 + 1,
    files=65536,
    ffree=255,
    bsize=4096,
    frsize=U32,
    name_len=255,
)
EXEC = ExecMsg(
    path="/bin/echo", argv=["echo", "hi"], env=["LANG=C.UTF-8"], cwd="/tmp", extra_fds=[3]
)
REQ_OPEN = FileOpReq(req_id=1, op=FileOp.OPEN, path="/etc/hosts")
RESP_OPEN = FileOpResp(req_id=1, handle=1)
REQ_FULL = FileOpReq(
    req_id=29,
    op=FileOp.OPEN,
    path="/all",
    new_path="/fields",
    flags=-(2**31),
    mode=U32,
    uid=1,
    gid=2,
    handle=3,
    offset=I64_MIN,
    size=-1,
    atime_nanos=1,
    mtime_nanos=I64_MAX,
    data=b"\x00",
)
RESP_FULL = FileOpResp(
    req_id=29,
    errno=U32,
    err_msg="everything",
    handle=U32,
    data=b"\xff",
    n=I64_MIN,
    eof=True,
    path="p",
    stat=FileStat(),
    statfs=FileStatfs(),
    entries=[FileDirEntry()],
)
HEADER = SessionHeader(
    version="1.3.4",
    start_time=BASE_TIME,
    local_user="alice",
    local_pid=4242,
    agent_path="/usr/bin/mproxy-agent",
)

# name -> the value Go's vectors() builds under the same name (tests/go/crosscheck/main.go)
OBJECTS: dict[str, WireType] = {
    "frame_zero": Frame(),
    "frame_data": Frame(type=FrameType.DATA, stream=1, data=b"hello"),
    "frame_stdin": Frame(type=FrameType.DATA, data=b"x"),
    "frame_all_bytes": Frame(type=FrameType.DATA, stream=2, data=ALL_BYTES),
    "frame_stream_max": Frame(type=FrameType.EOF, stream=U32),
    "frame_signal": Frame(type=FrameType.SIGNAL, signal=15),
    "frame_signal_negative": Frame(type=FrameType.SIGNAL, signal=-9),
    "frame_exit_negative": Frame(type=FrameType.EXIT, code=-1),
    "frame_exit_min": Frame(type=FrameType.EXIT, code=I64_MIN),
    "frame_exit_max": Frame(type=FrameType.EXIT, code=I64_MAX),
    "frame_error_unicode": Frame(type=FrameType.ERROR, error="échec ✓ 日本 🙂"),
    "frame_unknown_type": Frame(type=99),
    "frame_exec": Frame(type=FrameType.EXEC, exec=EXEC),
    "frame_log": Frame(type=FrameType.LOG, log=LogEntry(level=8, msg="boom", attrs=["k=v"])),
    "frame_config_zero": Frame(type=FrameType.CONFIG, config=AgentConfig()),
    "frame_query": Frame(type=FrameType.PATH_QUERY, query=PathQuery()),
    "frame_info": Frame(
        type=FrameType.PATH_INFO,
        info=PathInfo(
            entries=[PathInfoEntry(name="ls", remote_path="/bin/ls", mode=0o755, size=1)]
        ),
    ),
    "frame_file_op": Frame(type=FrameType.FILE_OP, file_op=REQ_OPEN),
    "frame_file_resp": Frame(type=FrameType.FILE_RESP, file_resp=RESP_OPEN),
    "frame_everything": Frame(
        type=FrameType.DATA,
        stream=1,
        data=b"\x01",
        signal=1,
        code=1,
        error="e",
        exec=ExecMsg(),
        log=LogEntry(),
        config=AgentConfig(),
        query=PathQuery(),
        info=PathInfo(),
        file_op=FileOpReq(),
        file_resp=FileOpResp(),
    ),
    "exec_zero": ExecMsg(),
    "exec_env_nil": ExecMsg(path="/bin/true", argv=["true"], env=None, cwd="/"),
    "exec_env_empty": ExecMsg(path="/bin/true", argv=["true"], env=[], cwd="/"),
    "exec_argv_empty": ExecMsg(argv=[]),
    "exec_fds": ExecMsg(
        path="p", argv=["a"], env=["E=é"], cwd="c", extra_fds=[3, 24, 256, 65536, U32]
    ),
    "exec_fds_empty": ExecMsg(extra_fds=[]),
    "config_nil": AgentConfig(),
    "config_empty": AgentConfig(env_keep=[], env_remove=[]),
    "config_patterns": AgentConfig(env_keep=["PATH", "LC_*"], env_remove=["/^SSH_/"]),
    "log_zero": LogEntry(),
    "log_debug": LogEntry(level=-4, msg="débogage"),
    "log_attrs": LogEntry(level=4, msg="slow", attrs=["ms=1500", "op=ReadAt"]),
    "log_attrs_empty": LogEntry(level=0, msg="x", attrs=[]),
    "log_level_min": LogEntry(level=I64_MIN, msg="m"),
    "path_query_zero": PathQuery(),
    "path_query_empty": PathQuery(paths=[]),
    "path_query": PathQuery(paths=["/usr/bin", "/bin"]),
    "path_info_nil": PathInfo(),
    "path_info_empty": PathInfo(entries=[]),
    "path_info": PathInfo(
        entries=[
            PathInfoEntry(
                name="ls", remote_path="/bin/ls", mode=0o755, size=142144, mtime_nanos=BASE_TIME
            ),
            PathInfoEntry(name="ünï", remote_path="/x/ünï", mode=U32, size=-1),
        ]
    ),
    "path_info_entry_zero": PathInfoEntry(),
    "path_info_entry": PathInfoEntry(
        name="sh", remote_path="/bin/sh", mode=MODE_SYMLINK | 0o777, size=9, mtime_nanos=-1
    ),
    "file_op_req_zero": FileOpReq(),
    "file_op_req_open": FileOpReq(
        req_id=7, op=FileOp.OPEN_FILE, path="/tmp/f", flags=0o1101, mode=0o644
    ),
    "file_op_req_full": REQ_FULL,
    "file_op_req_write": FileOpReq(
        req_id=U32, op=FileOp.WRITE_AT, handle=3, offset=1 << 40, data=ALL_BYTES
    ),
    "file_op_req_flags_neg": FileOpReq(req_id=1, op=FileOp.OPEN, flags=-1),
    "file_op_req_unknown_op": FileOpReq(req_id=2, op=200),
    "file_op_resp_zero": FileOpResp(),
    "file_op_resp_error": FileOpResp(req_id=3, errno=2, err_msg="no such file or directory"),
    "file_op_resp_read": FileOpResp(req_id=4, data=b"abc", n=3, eof=True),
    "file_op_resp_stat_zero": FileOpResp(req_id=5, stat=FileStat()),
    "file_op_resp_stat": FileOpResp(req_id=5, stat=FULL_STAT),
    "file_op_resp_statfs": FileOpResp(req_id=6, statfs=FULL_STATFS),
    "file_op_resp_entries": FileOpResp(
        req_id=7, entries=[FileDirEntry(FileStat(name="a", size=1, mode=0o644)), FileDirEntry()]
    ),
    "file_op_resp_entries_0": FileOpResp(req_id=8, entries=[]),
    "file_op_resp_full": RESP_FULL,
    "file_stat_zero": FileStat(),
    "file_stat_full": FULL_STAT,
    "file_stat_dir": FileStat(name="d", size=4096, mode=MODE_DIR | 0o755, is_dir=True),
    "file_statfs_zero": FileStatfs(),
    "file_statfs_full": FULL_STATFS,
    "file_dir_entry_zero": FileDirEntry(),
    "file_dir_entry": FileDirEntry(FileStat(name="a", size=24, mode=0o600, mtime_nanos=BASE_TIME)),
    "session_header": HEADER,
    "session_header_backend": SessionHeader(
        version="1.3.4",
        start_time=-1,
        local_user="élise",
        local_pid=-1,
        backend_type="ssh",
        backend_addr="[::1]:22",
        agent_path="",
    ),
    "session_header_zero": SessionHeader(),
    "command_start": CommandStart(seq=1, start_time=BASE_TIME, exec=EXEC),
    "command_start_zero": CommandStart(),
    "recorded_frame": RecordedFrame(
        seq=1,
        timestamp=BASE_TIME,
        direction=Direction.RECV,
        frame=Frame(type=FrameType.DATA, stream=1, data=b"out"),
    ),
    "recorded_frame_extremes": RecordedFrame(
        seq=U32, timestamp=I64_MIN, direction=255, frame=Frame(type=255)
    ),
    "recorded_frame_zero": RecordedFrame(),
    "command_end": CommandEnd(seq=2, end_time=BASE_TIME, exit_code=0),
    "command_end_negative": CommandEnd(seq=2, end_time=BASE_TIME, exit_code=-1),
    "command_end_extremes": CommandEnd(seq=U32, end_time=I64_MAX, exit_code=I64_MIN),
    "session_footer": SessionFooter(end_time=BASE_TIME, command_count=3),
    "session_footer_zero": SessionFooter(),
    "record_zero": Record(),
    "record_unknown_type": Record(type=9),
    "record_header": Record(type=RecordType.SESSION_HEADER, header=HEADER),
    "record_cmd_start": Record(
        type=RecordType.COMMAND_START,
        cmd_start=CommandStart(
            seq=1, start_time=BASE_TIME, exec=ExecMsg(path="/bin/true", argv=["true"], cwd="/")
        ),
    ),
    "record_frame": Record(
        type=RecordType.FRAME,
        frame=RecordedFrame(
            seq=1,
            timestamp=BASE_TIME,
            direction=Direction.SEND,
            frame=Frame(type=FrameType.DATA, data=b"in"),
        ),
    ),
    "record_cmd_end": Record(
        type=RecordType.COMMAND_END, cmd_end=CommandEnd(seq=1, end_time=BASE_TIME, exit_code=1)
    ),
    "record_footer": Record(
        type=RecordType.SESSION_FOOTER, footer=SessionFooter(end_time=BASE_TIME, command_count=1)
    ),
}

GO_HEX: dict[str, str] = {
    "frame_zero": "a1617400",
    "frame_data": "a361740261730161644568656c6c6f",
    "frame_stdin": "a261740261644178",
    "frame_all_bytes": (
        "a36174026173026164590100000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b"
        "4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f7071727374757677"
        "78797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3"
        "a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
        "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafb"
        "fcfdfeff"
    ),
    "frame_stream_max": "a261740361731affffffff",
    "frame_signal": "a2617404637369670f",
    "frame_signal_negative": "a26174046373696728",
    "frame_exit_negative": "a2617405616320",
    "frame_exit_min": "a261740561633b7fffffffffffffff",
    "frame_exit_max": "a261740561631b7fffffffffffffff",
    "frame_error_unicode": "a2617406616576c3a96368656320e29c9320e697a5e69cac20f09f9982",
    "frame_unknown_type": "a161741863",
    "frame_exec": (
        "a26174016178a56470617468692f62696e2f6563686f646172677682646563686f62686963656e76816c4c41"
        "4e473d432e5554462d3863637764642f746d70636664738103"
    ),
    "frame_log": "a2617407616ca3636c766c08636d736764626f6f6d616181636b3d76",
    "frame_config_zero": "a261740863636667a268656e765f6b656570f66a656e765f72656d6f7665f6",
    "frame_query": "a26174096171a0",
    "frame_info": (
        "a261740a6169a167656e747269657381a4646e616d65626c736470617468672f62696e2f6c73646d6f646519"
        "01ed6473697a6501"
    ),
    "frame_file_op": "a261740b63666f70a362696401626f700161706a2f6574632f686f737473",
    "frame_file_resp": "a261740c63667270a262696401616801",
    "frame_everything": (
        "ad617402617301616441016373696701616301616561656178a46470617468606461726776f663656e76f663"
        "63776460616ca2636c766c00636d73676063636667a268656e765f6b656570f66a656e765f72656d6f7665f6"
        "6171a06169a167656e7472696573f663666f70a262696400626f700063667270a162696400"
    ),
    "exec_zero": "a46470617468606461726776f663656e76f66363776460",
    "exec_env_nil": "a46470617468692f62696e2f74727565646172677681647472756563656e76f663637764612f",
    "exec_env_empty": (
        "a46470617468692f62696e2f74727565646172677681647472756563656e768063637764612f"
    ),
    "exec_argv_empty": "a464706174686064617267768063656e76f66363776460",
    "exec_fds": (
        "a564706174686170646172677681616163656e768164453dc3a963637764616363666473850318181901001a"
        "000100001affffffff"
    ),
    "exec_fds_empty": "a46470617468606461726776f663656e76f66363776460",
    "config_nil": "a268656e765f6b656570f66a656e765f72656d6f7665f6",
    "config_empty": "a268656e765f6b656570806a656e765f72656d6f766580",
    "config_patterns": (
        "a268656e765f6b656570826450415448644c435f2a6a656e765f72656d6f766581672f5e5353485f2f"
    ),
    "log_zero": "a2636c766c00636d736760",
    "log_debug": "a2636c766c23636d73676964c3a9626f67616765",
    "log_attrs": "a3636c766c04636d736764736c6f77616182676d733d31353030696f703d526561644174",
    "log_attrs_empty": "a2636c766c00636d73676178",
    "log_level_min": "a2636c766c3b7fffffffffffffff636d7367616d",
    "path_query_zero": "a0",
    "path_query_empty": "a0",
    "path_query": "a165706174687382682f7573722f62696e642f62696e",
    "path_info_nil": "a167656e7472696573f6",
    "path_info_empty": "a167656e747269657380",
    "path_info": (
        "a167656e747269657382a5646e616d65626c736470617468672f62696e2f6c73646d6f64651901ed6473697a"
        "651a00022b40656d74696d651b17979cfe3d85cd15a4646e616d6565c3bc6ec3af6470617468682f782fc3bc"
        "6ec3af646d6f64651affffffff6473697a6520"
    ),
    "path_info_entry_zero": "a4646e616d6560647061746860646d6f6465006473697a6500",
    "path_info_entry": (
        "a5646e616d656273686470617468672f62696e2f7368646d6f64651a080001ff6473697a6509656d74696d6520"
    ),
    "file_op_req_zero": "a262696400626f7000",
    "file_op_req_open": "a562696407626f70036170662f746d702f6662666c190241626d6f1901a4",
    "file_op_req_full": (
        "ae626964181d626f70016170642f616c6c626e70672f6669656c647362666c3a7fffffff626d6f1affffffff"
        "63756964016367696402616803626f663b7fffffffffffffff62737a2062617401626d741b7fffffffffffff"
        "ff61644100"
    ),
    "file_op_req_write": (
        "a56269641affffffff626f7006616803626f661b00000100000000006164590100000102030405060708090a"
        "0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233343536"
        "3738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162"
        "636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e"
        "8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9ba"
        "bbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6"
        "e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
    ),
    "file_op_req_flags_neg": "a362696401626f700162666c20",
    "file_op_req_unknown_op": "a262696402626f7018c8",
    "file_op_resp_zero": "a162696400",
    "file_op_resp_error": (
        "a3626964036265720262656d78196e6f20737563682066696c65206f72206469726563746f7279"
    ),
    "file_op_resp_read": "a462696404616443616263616e0363656f66f5",
    "file_op_resp_stat_zero": "a262696405627374a3616e60617300616d00",
    "file_op_resp_stat": (
        "a262696405627374ae616e6c646f6e6ec3a9657320e29c9361731b7fffffffffffffff616d1a800001ed6174"
        "1b17979cfe3d85cd15626174206263743b7fffffffffffffff637569641affffffff636769641903e8626e6c"
        "0262726419010362626c1bffffffffffffffff62627319100063696e6f1bffffffffffffffff6164f5"
    ),
    "file_op_resp_statfs": (
        "a262696406627366a861621bffffffffffffffff6262661b00000100000000006262611b0000000100000001"
        "61661a0001000062666618ff6262731910006266721affffffff626e6c18ff"
    ),
    "file_op_resp_entries": (
        "a26269640762656e82a1627374a3616e6161617301616d1901a4a1627374a3616e60617300616d00"
    ),
    "file_op_resp_entries_0": "a162696408",
    "file_op_resp_full": (
        "ab626964181d6265721affffffff62656d6a65766572797468696e6761681affffffff616441ff616e3b7fff"
        "ffffffffffff63656f66f561706170627374a3616e60617300616d00627366a062656e81a1627374a3616e60"
        "617300616d00"
    ),
    "file_stat_zero": "a3616e60617300616d00",
    "file_stat_full": (
        "ae616e6c646f6e6ec3a9657320e29c9361731b7fffffffffffffff616d1a800001ed61741b17979cfe3d85cd"
        "15626174206263743b7fffffffffffffff637569641affffffff636769641903e8626e6c0262726419010362"
        "626c1bffffffffffffffff62627319100063696e6f1bffffffffffffffff6164f5"
    ),
    "file_stat_dir": "a4616e61646173191000616d1a800001ed6164f5",
    "file_statfs_zero": "a0",
    "file_statfs_full": (
        "a861621bffffffffffffffff6262661b00000100000000006262611b000000010000000161661a0001000062"
        "666618ff6262731910006266721affffffff626e6c18ff"
    ),
    "file_dir_entry_zero": "a1627374a3616e60617300616d00",
    "file_dir_entry": "a1627374a4616e616161731818616d19018061741b17979cfe3d85cd15",
    "session_header": (
        "a56776657273696f6e65312e332e346a73746172745f74696d651b17979cfe3d85cd156a6c6f63616c5f7573"
        "657265616c696365696c6f63616c5f7069641910926a6167656e745f70617468752f7573722f62696e2f6d70"
        "726f78792d6167656e74"
    ),
    "session_header_backend": (
        "a76776657273696f6e65312e332e346a73746172745f74696d65206a6c6f63616c5f7573657266c3a96c6973"
        "65696c6f63616c5f706964206c6261636b656e645f74797065637373686c6261636b656e645f61646472685b"
        "3a3a315d3a32326a6167656e745f7061746860"
    ),
    "session_header_zero": (
        "a56776657273696f6e606a73746172745f74696d65006a6c6f63616c5f7573657260696c6f63616c5f706964"
        "006a6167656e745f7061746860"
    ),
    "command_start": (
        "a363736571016a73746172745f74696d651b17979cfe3d85cd156465786563a56470617468692f62696e2f65"
        "63686f646172677682646563686f62686963656e76816c4c414e473d432e5554462d3863637764642f746d70"
        "636664738103"
    ),
    "command_start_zero": (
        "a363736571006a73746172745f74696d65006465786563a46470617468606461726776f663656e76f6636377"
        "6460"
    ),
    "recorded_frame": (
        "a463736571016274731b17979cfe3d85cd156364697202656672616d65a36174026173016164436f7574"
    ),
    "recorded_frame_extremes": (
        "a4637365711affffffff6274733b7fffffffffffffff6364697218ff656672616d65a1617418ff"
    ),
    "recorded_frame_zero": "a46373657100627473006364697200656672616d65a1617400",
    "command_end": "a3637365710268656e645f74696d651b17979cfe3d85cd1569657869745f636f646500",
    "command_end_negative": (
        "a3637365710268656e645f74696d651b17979cfe3d85cd1569657869745f636f646520"
    ),
    "command_end_extremes": (
        "a3637365711affffffff68656e645f74696d651b7fffffffffffffff69657869745f636f64653b7fffffffff"
        "ffffff"
    ),
    "session_footer": "a268656e645f74696d651b17979cfe3d85cd156d636f6d6d616e645f636f756e7403",
    "session_footer_zero": "a268656e645f74696d65006d636f6d6d616e645f636f756e7400",
    "record_zero": "a1647479706500",
    "record_unknown_type": "a1647479706509",
    "record_header": (
        "a264747970650166686561646572a56776657273696f6e65312e332e346a73746172745f74696d651b17979c"
        "fe3d85cd156a6c6f63616c5f7573657265616c696365696c6f63616c5f7069641910926a6167656e745f7061"
        "7468752f7573722f62696e2f6d70726f78792d6167656e74"
    ),
    "record_cmd_start": (
        "a264747970650269636d645f7374617274a363736571016a73746172745f74696d651b17979cfe3d85cd1564"
        "65786563a46470617468692f62696e2f74727565646172677681647472756563656e76f663637764612f"
    ),
    "record_frame": (
        "a2647479706503656672616d65a463736571016274731b17979cfe3d85cd156364697201656672616d65a261"
        "7402616442696e"
    ),
    "record_cmd_end": (
        "a264747970650467636d645f656e64a3637365710168656e645f74696d651b17979cfe3d85cd156965786974"
        "5f636f646501"
    ),
    "record_footer": (
        "a264747970650566666f6f746572a268656e645f74696d651b17979cfe3d85cd156d636f6d6d616e645f636f"
        "756e7401"
    ),
}

# Derived by hand from RFC 8949 (head byte = major type << 5 | argument):
# fmt: off
HAND_HEX: dict[str, str] = {
    # map(1) {text(1) "t": uint 0}
    "frame_zero": "a1" "6174" "00",
    # map(3) {"t": 2, "s": 1, "d": bytes(5) "hello"}
    "frame_data": "a3" "6174" "02" "6173" "01" "6164" "45" "68656c6c6f",
    # map(2) {"t": 4, "sig": -9}: negative n is major 1 with argument -1-n = 8
    "frame_signal_negative": "a2" "6174" "04" "63736967" "28",
    # {"t": 5, "c": INT64_MIN}: major 1, 8-byte argument 2^63-1
    "frame_exit_min": "a2" "6174" "05" "6163" "3b7fffffffffffffff",
    # {"t": 3, "s": 2^32-1}: 4-byte argument (1a)
    "frame_stream_max": "a2" "6174" "03" "6173" "1affffffff",
    # {"t": 99}: 99 > 23 needs a 1-byte argument (18)
    "frame_unknown_type": "a1" "6174" "1863",
    # {"path": "", "argv": null, "env": null, "cwd": ""}: nil slices are null (f6)
    "exec_zero": "a4" "6470617468" "60" "6461726776" "f6" "63656e76" "f6" "63637764" "60",
    # env [] is an empty array (80), not null; fds [] is dropped by omitempty
    "exec_env_empty": "a4" "6470617468" "692f62696e2f74727565" "6461726776" "81" "6474727565"
                      "63656e76" "80" "63637764" "612f",
    # {"env_keep": null, "env_remove": null}
    "config_nil": "a2" "68656e765f6b656570" "f6" "6a656e765f72656d6f7665" "f6",
    # {}: every field omitempty and zero
    "file_statfs_zero": "a0",
    # uint64 2^64-1 and 2^40 take 8-byte arguments (1b), 65536 a 4-byte one (1a),
    # 4096 a 2-byte one (19), 255 a 1-byte one (18)
    "file_statfs_full": "a8" "6162" "1bffffffffffffffff" "626266" "1b0000010000000000"
                        "626261" "1b0000000100000001" "6166" "1a00010000" "626666" "18ff"
                        "626273" "191000" "626672" "1affffffff" "626e6c" "18ff",
    # {"paths": ["/usr/bin", "/bin"]}: array(2) of text(8) and text(4)
    "path_query": "a1" "657061746873" "82" "682f7573722f62696e" "642f62696e",
    # {"type": 0}
    "record_zero": "a1" "6474797065" "00",
}
# fmt: on


def test_table_is_complete() -> None:
    assert set(OBJECTS) == set(GO_HEX)
    covered = {type(obj) for obj in OBJECTS.values()}
    wire_types = {
        Frame, ExecMsg, AgentConfig, LogEntry, PathQuery, PathInfo, PathInfoEntry, FileOpReq,
        FileOpResp, FileStat, FileStatfs, FileDirEntry, Record, SessionHeader, CommandStart,
        RecordedFrame, CommandEnd, SessionFooter,
    }  # fmt: skip
    assert covered == wire_types


@pytest.mark.parametrize("name", sorted(HAND_HEX))
def test_hand_vectors_agree_with_go(name: str) -> None:
    assert OBJECTS[name].to_cbor().hex() == HAND_HEX[name] == GO_HEX[name]


@pytest.mark.parametrize("name", sorted(GO_HEX))
def test_encode_matches_go(name: str) -> None:
    assert OBJECTS[name].to_cbor().hex() == GO_HEX[name]


@pytest.mark.parametrize("name", sorted(GO_HEX))
def test_decode_go_bytes(name: str) -> None:
    obj = OBJECTS[name]
    decoded = type(obj).from_cbor(bytes.fromhex(GO_HEX[name]))
    assert decoded == obj
    # and the value decoded from Go's bytes encodes back to exactly those bytes
    assert decoded.to_cbor().hex() == GO_HEX[name]


@pytest.mark.go
def test_go_vectors_are_current() -> None:
    result = run_crosscheck("vectors")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == GO_HEX


def test_nil_and_empty_lists_decode_apart() -> None:
    assert ExecMsg.from_cbor(bytes.fromhex(GO_HEX["exec_env_nil"])).env is None
    assert ExecMsg.from_cbor(bytes.fromhex(GO_HEX["exec_env_empty"])).env == []
    cfg = AgentConfig.from_cbor(bytes.fromhex(GO_HEX["config_nil"]))
    assert cfg.env_keep is None and cfg.env_remove is None
    assert AgentConfig.from_cbor(bytes.fromhex(GO_HEX["config_empty"])).env_keep == []
    assert PathInfo.from_cbor(bytes.fromhex(GO_HEX["path_info_nil"])).entries is None
    assert PathInfo.from_cbor(bytes.fromhex(GO_HEX["path_info_empty"])).entries == []


def test_pointer_to_zero_struct_is_kept() -> None:
    resp = FileOpResp.from_cbor(bytes.fromhex(GO_HEX["file_op_resp_stat_zero"]))
    assert resp.stat == FileStat() and resp.statfs is None


@pytest.mark.parametrize(
    ("obj", "value"),
    [
        (Frame(type=99, data=b"x"), 99),
        (FileOpReq(op=200), 200),
        (Record(type=9), 9),
        (RecordedFrame(direction=7), 7),
    ],
)
def test_unknown_enum_values_survive(obj: WireType, value: int) -> None:
    data = obj.to_cbor()
    back = type(obj).from_cbor(data)
    assert back == obj and back.to_cbor() == data
    field = {"Frame": "type", "FileOpReq": "op", "Record": "type", "RecordedFrame": "direction"}
    kept = getattr(back, field[type(obj).__name__])
    assert kept == value and type(kept) is int


def test_known_enum_values_decode_as_enums() -> None:
    frame = Frame.from_cbor(bytes.fromhex(GO_HEX["frame_data"]))
    assert frame.type is FrameType.DATA
    rf = RecordedFrame.from_cbor(bytes.fromhex(GO_HEX["recorded_frame"]))
    assert rf.direction is Direction.RECV
    assert FileOpReq.from_cbor(bytes.fromhex(GO_HEX["file_op_req_open"])).op is FileOp.OPEN_FILE


# --- encoding refuses what Go cannot hold ---------------------------------------------


def _nested_frame(**fields: Any) -> Record:
    return Record(type=RecordType.FRAME, frame=RecordedFrame(frame=Frame(**fields)))


ENCODE_ERRORS: list[tuple[str, Any, str]] = [
    ("negative uint32", lambda: Frame(stream=-1), "s"),
    ("uint32 overflow", lambda: Frame(type=2, stream=2**32), "s"),
    ("uint8 overflow", lambda: Frame(type=256), "t"),
    ("negative uint8", lambda: Frame(type=-1), "t"),
    ("uint64 overflow", lambda: FileStat(blocks=2**64), "bl"),
    ("negative uint64", lambda: FileStatfs(files=-1), "f"),
    ("int32 overflow", lambda: FileOpReq(flags=2**31), "fl"),
    ("int32 underflow", lambda: FileOpReq(flags=-(2**31) - 1), "fl"),
    ("int64 overflow", lambda: Frame(code=2**63), "c"),
    ("int64 underflow", lambda: CommandEnd(exit_code=-(2**63) - 1), "exit_code"),
    ("bool in int field", lambda: Frame(stream=True), "s"),
    ("False in omitempty int field", lambda: Frame(stream=False), "s"),
    ("bool in plain int field", lambda: FileStat(size=False), "s"),
    ("float in int field", lambda: CommandEnd(seq=1.0), "seq"),
    ("None in int field", lambda: SessionFooter(end_time=None), "end_time"),
    ("int in bool field", lambda: FileStat(is_dir=1), "d"),
    ("str where bytes belong", lambda: Frame(data="text"), "d"),
    ("str where bytes belong (request)", lambda: FileOpReq(data="x"), "d"),
    ("bytes where str belongs", lambda: ExecMsg(path=b"/bin/sh"), "path"),
    ("empty bytes where str belongs", lambda: Frame(error=b""), "e"),
    ("None where str belongs", lambda: SessionHeader(version=None), "version"),
    ("bytes in a string list", lambda: ExecMsg(argv=["sh", b"-c"]), "argv"),
    ("str as a string list", lambda: AgentConfig(env_keep="PATH"), "env_keep"),
    ("negative fd", lambda: ExecMsg(extra_fds=[3, -1]), "fds"),
    ("bool fd", lambda: ExecMsg(extra_fds=[True]), "fds"),
    ("wrong struct type", lambda: Frame(exec=LogEntry()), "x"),
    ("dict for a struct", lambda: CommandStart(exec={"path": "/"}), "exec"),
    ("wrong list item type", lambda: FileOpResp(entries=[FileStat()]), "en"),
    ("nested field", lambda: Frame(exec=ExecMsg(argv=[1])), "x.argv"),
    ("deeply nested", lambda: _nested_frame(stream=-1), "frame.frame.s"),
    (
        "nested in a list",
        lambda: FileOpResp(entries=[FileDirEntry(), FileDirEntry(FileStat(uid=-5))]),
        "en.st.uid",
    ),
]


@pytest.mark.parametrize(
    ("make", "field"), [c[1:] for c in ENCODE_ERRORS], ids=[c[0] for c in ENCODE_ERRORS]
)
def test_encode_refuses(make: Any, field: str) -> None:
    obj = make()
    with pytest.raises(LocalProtocolError) as info:
        obj.to_cbor()
    assert info.value.field == field
    assert field in str(info.value)


def test_encode_accepts_python_equivalents() -> None:
    # IntEnums, bytearray/memoryview, tuples are what Go would write for the same values
    a = Frame(type=FrameType.DATA, stream=1, data=bytearray(b"abc"))
    b = Frame(type=2, stream=1, data=b"abc")
    assert a.to_cbor() == b.to_cbor() == Frame(type=2, stream=1, data=memoryview(b"abc")).to_cbor()
    assert ExecMsg(argv=("a", "b")).to_cbor() == ExecMsg(argv=["a", "b"]).to_cbor()
    assert Frame(type=2, data=bytearray()).to_cbor() == Frame(type=2).to_cbor()


# --- decoding: Go's rules ------------------------------------------------------------------


def test_unknown_keys_are_ignored() -> None:
    data = cbor2.dumps({"t": 2, "future": {"x": [1, 2]}, "s": 1, 7: "int key", "d": b"a"})
    assert Frame.from_cbor(data) == Frame(type=2, stream=1, data=b"a")


def test_keys_in_any_order() -> None:
    data = cbor2.dumps({"d": b"a", "s": 1, "t": 2})
    assert Frame.from_cbor(data) == Frame(type=2, stream=1, data=b"a")


def test_case_insensitive_key_fallback() -> None:
    data = cbor2.dumps({"T": 2, "S": 1, "D": b"x"})
    assert Frame.from_cbor(data) == Frame(type=2, stream=1, data=b"x")
    rec = Record.from_cbor(cbor2.dumps({"Type": 5, "FOOTER": {"End_Time": 7, "command_COUNT": 1}}))
    assert rec == Record(type=5, footer=SessionFooter(end_time=7, command_count=1))


def test_case_insensitive_first_key_wins() -> None:
    # fxamacker gives a field to the first key naming it, exactly or not
    assert Frame.from_cbor(cbor2.dumps({"T": 1, "t": 2})).type == 1
    assert Frame.from_cbor(cbor2.dumps({"t": 1, "T": 2})).type == 1


def test_case_folding_is_ascii_only() -> None:
    # Go compares keys of equal byte length only: the Kelvin sign never folds to "k",
    # nor the long s to "s"
    data = cbor2.dumps({"t": 2, "\u212a": 1, "\u017f": 5})
    assert Frame.from_cbor(data) == Frame(type=2)


def test_non_text_keys_are_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        Frame.from_cbor(cbor2.dumps({"t": 2, b"s": 1}))


@pytest.mark.parametrize(
    ("cls", "m", "expected"),
    [
        (Frame, {"t": None, "s": None, "d": None, "e": None, "x": None}, Frame()),
        (
            ExecMsg,
            {"path": "/", "argv": None, "env": None, "cwd": None, "fds": None},
            ExecMsg(path="/"),
        ),
        (CommandStart, {"seq": 1, "start_time": None, "exec": None}, CommandStart(seq=1)),
        (RecordedFrame, {"seq": 1, "frame": None}, RecordedFrame(seq=1)),
        (FileOpResp, {"id": 1, "st": None, "en": None, "eof": None}, FileOpResp(req_id=1)),
        (PathInfo, {"entries": None}, PathInfo()),
        (Record, {"type": 3, "frame": None}, Record(type=3)),
    ],
)
def test_null_is_the_zero_value(cls: type[WireType], m: dict[str, Any], expected: WireType) -> None:
    assert cls.from_cbor(cbor2.dumps(m)) == expected


def test_missing_fields_are_zero() -> None:
    assert Frame.from_cbor(cbor2.dumps({})) == Frame()
    assert CommandStart.from_cbor(cbor2.dumps({})).exec == ExecMsg()


DECODE_ERRORS: list[tuple[str, type[WireType], bytes, str | None]] = [
    ("text in uint8", Frame, cbor2.dumps({"t": "2"}), "t"),
    ("uint8 overflow", Frame, cbor2.dumps({"t": 256}), "t"),
    ("negative uint32", Frame, cbor2.dumps({"t": 2, "s": -1}), "s"),
    ("uint32 overflow", Frame, cbor2.dumps({"t": 2, "s": 2**32}), "s"),
    ("bool in int", Frame, cbor2.dumps({"t": 2, "s": True}), "s"),
    ("float in int", Frame, cbor2.dumps({"t": 2.0}), "t"),
    ("int64 overflow", CommandEnd, cbor2.dumps({"exit_code": 2**63}), "exit_code"),
    ("int64 underflow", CommandEnd, cbor2.dumps({"end_time": -(2**63) - 1}), "end_time"),
    # tag 2 bignum 2^64: beyond any Go integer
    ("uint64 overflow", FileStat, bytes.fromhex("a162626cc249010000000000000000"), "bl"),
    ("int32 overflow", FileOpReq, cbor2.dumps({"fl": 2**31}), "fl"),
    ("text where bytes belong", Frame, cbor2.dumps({"t": 2, "d": "x"}), "d"),
    ("bytes where text belongs", Frame, cbor2.dumps({"t": 6, "e": b"x"}), "e"),
    ("int in bool", FileOpResp, cbor2.dumps({"eof": 1}), "eof"),
    ("map where list belongs", ExecMsg, cbor2.dumps({"argv": {"a": 1}}), "argv"),
    ("int in string list", ExecMsg, cbor2.dumps({"env": ["A=1", 2]}), "env"),
    ("negative fd", ExecMsg, cbor2.dumps({"fds": [3, -1]}), "fds"),
    ("list where struct belongs", Frame, cbor2.dumps({"t": 1, "x": ["sh"]}), "x"),
    ("nested wrong type", Frame, cbor2.dumps({"t": 1, "x": {"argv": "sh"}}), "x.argv"),
    (
        "deep field",
        Record,
        cbor2.dumps({"type": 3, "frame": {"seq": 1, "frame": {"t": 2, "s": -1}}}),
        "frame.frame.s",
    ),
    ("list item not a map", FileOpResp, cbor2.dumps({"en": [{}, 5]}), "en"),
    ("list item field", FileOpResp, cbor2.dumps({"en": [{"st": {"uid": -1}}]}), "en.st.uid"),
]


@pytest.mark.parametrize(
    ("cls", "data", "field"), [c[1:] for c in DECODE_ERRORS], ids=[c[0] for c in DECODE_ERRORS]
)
def test_decode_refuses(cls: type[WireType], data: bytes, field: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        cls.from_cbor(data)
    assert info.value.field == field
    assert repr(field) in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        cbor2.dumps(5),
        cbor2.dumps([{"t": 2}]),
        cbor2.dumps(None),
        bytes.fromhex("ff"),  # a break with no indefinite item
        bytes.fromhex("a2617402"),  # cut: the map announces two pairs
        bytes.fromhex("a161746378"),  # cut text
        bytes.fromhex("a1617462ff fe".replace(" ", "")),  # text that is not UTF-8
        b"",
    ],
    ids=["int", "list", "null", "break", "cut-map", "cut-text", "bad-utf8", "empty"],
)
def test_not_a_frame(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Frame.from_cbor(data)


def test_trailing_bytes_rejected() -> None:
    data = bytes.fromhex(GO_HEX["frame_data"])
    with pytest.raises(RemoteProtocolError, match="trailing"):
        Frame.from_cbor(data + b"\x00")
    with pytest.raises(RemoteProtocolError, match="trailing"):
        Frame.from_cbor(data + data)


def test_deep_nesting_rejected() -> None:
    # an unknown key whose value nests 100 arrays: Go's limit is 32 levels
    deep = b"\xa2\x61t\x02\x63zzz" + b"\x81" * 100 + b"\x00"
    with pytest.raises(RemoteProtocolError):
        Frame.from_cbor(deep)
    shallow = b"\xa2\x61t\x02\x63zzz" + b"\x81" * 10 + b"\x00"
    assert Frame.from_cbor(shallow) == Frame(type=2)


def test_round_trip_of_every_field_kind() -> None:
    for name, obj in OBJECTS.items():
        data = obj.to_cbor()
        again = type(obj).from_cbor(data)
        assert again == obj, name
        assert dataclasses.astuple(again) == dataclasses.astuple(obj), name
