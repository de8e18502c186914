"""agentproto.protocol (no I/O) and agentproto.client's in-memory transport."""

from __future__ import annotations

import pytest

from agentproto import (
    ConnectionClosedError,
    ExecMsg,
    FileOpResp,
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
    DataChunk,
    FrameParser,
    RequestTable,
    check_direction,
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
