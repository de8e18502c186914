"""agentproto.protocol (no I/O) and agentproto.client's in-memory transport."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentproto import (
    ConnectionClosedError,
    ExecMsg,
    FileOp,
    FileOpReq,
    FileOpResp,
    FileStat,
    Frame,
    FrameTooLargeError,
    FrameType,
    LogEntry,
    PathInfo,
    RemoteProtocolError,
    TruncatedError,
)
from agentproto.client import AgentClient, MemoryTransport
from agentproto.protocol import (
    FILE_RESP_FRAME_HEAD,
    DataChunk,
    FrameParser,
    RequestTable,
    check_direction,
    decode_frame_item,
    decode_item,
    encode_data_frame_head,
)

FRAMES = [
    Frame(type=FrameType.EXEC, exec=ExecMsg(path="/bin/echo", argv=["echo", "hi"])),
    Frame(type=FrameType.DATA, stream=1, data=b"x" * 300),
    Frame(type=FrameType.DATA, stream=0, data=b""),
    Frame(type=FrameType.LOG, log=LogEntry(level=4, msg="careful")),
    Frame(type=FrameType.EXIT, code=3),
]


def test_parser_fed_one_byte_at_a_time() -> None:
    wire = b"".join(f.to_cbor() for f in FRAMES)
    parser = FrameParser()
    items = []
    for i in range(len(wire)):
        parser.feed(wire[i : i + 1])
        while (item := parser.next_item()) is not None:
            items.append(item)
    parser.end()
    assert parser.next_item() is None and parser.buffered == 0
    assert items == [f.to_cbor() for f in FRAMES]
    assert parser.offset == len(wire)


def test_parser_refuses_a_huge_frame_before_buffering_it() -> None:
    parser = FrameParser(max_frame_size=1024)
    parser.feed(encode_data_frame_head(1, 1 << 40))
    with pytest.raises(FrameTooLargeError):
        parser.next_item()
    assert parser.buffered < 32


def test_parser_reports_a_cut_frame_and_bad_cbor_with_offsets() -> None:
    first = FRAMES[0].to_cbor()
    parser = FrameParser()
    parser.feed(first + FRAMES[1].to_cbor()[:10])
    assert parser.next_item() == first
    assert parser.next_item() is None
    parser.end()
    with pytest.raises(TruncatedError) as cut:
        parser.next_item()
    assert cut.value.offset == len(first)
    bad = FrameParser()
    bad.feed(b"\xa1\x9f")  # an indefinite-length array: never used by agentproto
    with pytest.raises(RemoteProtocolError):
        bad.next_item()


def test_decode_item_takes_the_fast_path_for_go_data_frames() -> None:
    assert decode_item(FRAMES[1].to_cbor()) == DataChunk(1, b"x" * 300)
    frame = decode_item(FRAMES[4].to_cbor())
    assert isinstance(frame, Frame) and frame.code == 3


def test_direction_rules() -> None:
    assert check_direction("runner", FrameType.EXIT)
    assert not check_direction("agent", FrameType.EXIT)  # dropped, not fatal
    with pytest.raises(RemoteProtocolError, match="not an agent"):
        check_direction("runner", FrameType.EXEC)
    assert check_direction(None, FrameType.EXEC)


def test_request_table_ids_wrap_and_skip_zero_and_busy_ids() -> None:
    table = RequestTable()
    table._next_id = 0xFFFF_FFFF
    a, _ = table.new_file_op()
    b, waiter_b = table.new_file_op()
    assert (a, b) == (0xFFFF_FFFF, 1)
    assert table.answer_file_op(FileOpResp(req_id=1))
    assert waiter_b.is_set() and not table.answer_file_op(FileOpResp(req_id=1))
    with table.lock:
        path_waiter = table.new_path_query()
    table.finish("gone")
    assert isinstance(path_waiter.error, ConnectionClosedError)
    with pytest.raises(ConnectionClosedError):
        table.new_file_op()
    assert not table.answer_path_query(PathInfo())


def test_memory_transport_runs_a_client_without_any_process() -> None:
    agent_side = b"".join(
        f.to_cbor()
        for f in (
            Frame(type=FrameType.DATA, stream=1, data=b"replayed\n"),
            Frame(type=FrameType.ERROR, error="a note"),
            Frame(type=FrameType.EXIT, code=4),
        )
    )
    transport = MemoryTransport(agent_side)
    seen: list[tuple[str, bytes]] = []
    client = AgentClient(transport)
    client.set_tap(lambda direction, parts: seen.append((direction.name, b"".join(parts))))

    class Out:
        data = b""

        def write(self, chunk: bytes) -> None:
            Out.data += chunk

        def eof(self) -> None:
            pass

    client.mux.register_stream(1, Out())
    client.mux.send(Frame(type=FrameType.EXEC, exec=ExecMsg(path="true")))
    client.start()
    assert client.mux.wait(10) == 4
    client.close()
    assert Out.data == b"replayed\n" and client.errors == ["a note"]
    assert transport.sent == Frame(type=FrameType.EXEC, exec=ExecMsg(path="true")).to_cbor()
    assert [d for d, _ in seen] == ["SEND", "RECV", "RECV", "RECV"]
    assert b"".join(b for d, b in seen if d == "RECV") == agent_side


# --- file-op frames (the RPC hot path) ---------------------------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
)
_fop_keys = st.sampled_from(["id", "op", "p", "np", "fl", "mo", "h", "of", "sz", "d", "P", "x", 7])


def _decode_general(item: bytes) -> Frame | str:
    try:
        return Frame.from_map(cbor2.loads(item))
    except RemoteProtocolError as exc:
        return f"error: {exc}"


def _decode_fast(item: bytes) -> Frame | str:
    try:
        return decode_frame_item(item)
    except RemoteProtocolError as exc:
        return f"error: {exc}"


@given(
    ftype=st.one_of(st.just(11), st.just(11.0), st.just(True), st.integers(0, 300)),
    fop=st.one_of(st.dictionaries(_fop_keys, _values, max_size=5), _values),
    type_key=st.sampled_from(["t", "T"]),
    fop_key=st.sampled_from(["fop", "Fop", "fo"]),
)
def test_file_op_frames_decode_as_frame_from_map_does(
    ftype: object, fop: object, type_key: str, fop_key: str
) -> None:
    """The file-op shortcut gives the general decoder's frame, or its error, for any map."""
    item = cbor2.dumps({type_key: ftype, fop_key: fop})
    assert _decode_fast(item) == _decode_general(item)


def test_file_op_request_decodes_to_its_frame() -> None:
    req = FileOpReq(req_id=3, op=FileOp.STAT, path="/x")
    frame = decode_frame_item(Frame(type=FrameType.FILE_OP, file_op=req).to_cbor())
    assert frame == Frame(type=FrameType.FILE_OP, file_op=req)
    assert frame.type is FrameType.FILE_OP and frame.file_op is not None
    assert frame.file_op.op is FileOp.STAT


def test_file_resp_frame_head() -> None:
    resp = FileOpResp(req_id=70000, stat=FileStat(name="x", size=1, mode=0o644))
    assert FILE_RESP_FRAME_HEAD + resp.to_cbor() == (
        Frame(type=FrameType.FILE_RESP, file_resp=resp).to_cbor()
    )
