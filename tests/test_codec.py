"""The frame Decoder and Encoder on byte streams: framing, limits, pipes, threads."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentproto import (
    Decoder,
    Encoder,
    ExecMsg,
    FileOpReq,
    FileOpResp,
    FileStat,
    Frame,
    FrameTooLargeError,
    FrameType,
    LogEntry,
    RemoteProtocolError,
    TruncatedError,
)
from agentproto.codec import Incomplete, item_end

FRAMES = [
    Frame(type=FrameType.CONFIG),
    Frame(
        type=FrameType.EXEC,
        exec=ExecMsg(path="/bin/sh", argv=["sh", "-c", "cat"], env=None, cwd="/"),
    ),
    Frame(type=FrameType.DATA, stream=0, data=b"line\n"),
    Frame(type=FrameType.DATA, stream=1, data=bytes(range(256)) * 300),  # 76 800 bytes
    Frame(type=FrameType.DATA, stream=2, data=b"x" * 23),
    Frame(type=FrameType.DATA, stream=2, data=b"x" * 24),
    Frame(type=FrameType.LOG, log=LogEntry(level=-4, msg="débogage", attrs=["a=b"])),
    Frame(type=FrameType.FILE_OP, file_op=FileOpReq(req_id=1, op=9, path="/")),
    Frame(type=FrameType.FILE_RESP, file_resp=FileOpResp(req_id=1, stat=FileStat(name="/"))),
    Frame(type=FrameType.EOF),
    Frame(type=99, data=b"future"),
    Frame(type=FrameType.EXIT, code=-1),
]
STREAM = b"".join(f.to_cbor() for f in FRAMES)


class OneByteReader:
    """A reader whose read1 returns one byte at a time: the worst split of a stream."""

    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0
        self.calls = 0

    def read1(self, n: int = -1) -> bytes:
        self.calls += 1
        chunk = self._data[self._pos : self._pos + 1]
        self._pos += len(chunk)
        return chunk


class ScriptedReader:
    """A reader returning scripted chunks (like a socket's successive recvs)."""

    def __init__(self, chunks: list[bytes]):
        self._chunks = list(chunks)

    def read(self, n: int = -1) -> bytes:
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        if len(chunk) > n:
            chunk, rest = chunk[:n], chunk[n:]
            self._chunks.insert(0, rest)
        return chunk


def decode_all(decoder: Decoder) -> list[Frame]:
    return list(decoder)


def test_whole_stream() -> None:
    assert decode_all(Decoder(io.BytesIO(STREAM))) == FRAMES


def test_one_byte_at_a_time() -> None:
    reader = OneByteReader(STREAM)
    decoder = Decoder(reader)
    assert decode_all(decoder) == FRAMES
    assert decoder.offset == len(STREAM)
    assert reader.calls >= len(STREAM)


def test_scripted_chunks_split_everywhere() -> None:
    # every frame boundary and every split point inside a short stream
    small = b"".join(f.to_cbor() for f in FRAMES if len(f.data) < 1000)
    expected = [f for f in FRAMES if len(f.data) < 1000]
    for cut in range(1, len(small)):
        chunks = [small[:cut], small[cut:]]
        assert decode_all(Decoder(ScriptedReader(chunks))) == expected, cut


def test_clean_eof_is_none() -> None:
    decoder = Decoder(io.BytesIO(FRAMES[0].to_cbor()))
    assert decoder.decode() == FRAMES[0]
    assert decoder.decode() is None
    assert decoder.decode() is None  # and stays at the end
    assert Decoder(io.BytesIO(b"")).decode() is None


def test_cut_inside_a_frame() -> None:
    first = FRAMES[0].to_cbor()
    second = FRAMES[3].to_cbor()
    for cut in (1, 2, 5, len(second) // 2, len(second) - 1):
        decoder = Decoder(io.BytesIO(first + second[:cut]))
        assert decoder.decode() == FRAMES[0]
        with pytest.raises(TruncatedError) as info:
            decoder.decode()
        assert info.value.offset == len(first)
        assert isinstance(info.value, EOFError)


def test_cut_frame_one_byte_at_a_time() -> None:
    decoder = Decoder(OneByteReader(STREAM[:-1]))
    frames = []
    with pytest.raises(TruncatedError) as info:
        while (frame := decoder.decode()) is not None:
            frames.append(frame)
    assert frames == FRAMES[:-1]
    assert info.value.offset == len(STREAM) - len(FRAMES[-1].to_cbor())


class CountingReader:
    """Records how much was asked for and returned; refuses to hand out much."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)
        self.returned = 0

    def read1(self, n: int = -1) -> bytes:
        chunk = self._data.read(min(n, 4096))
        self.returned += len(chunk)
        return chunk


def test_hostile_length_fails_at_once() -> None:
    # {"t": 2, "d": bytes(2^62)}: the length header alone must be refused
    hostile = bytes.fromhex("a261740261645b") + (2**62).to_bytes(8, "big") + b"\x00" * 100
    reader = CountingReader(hostile)
    decoder = Decoder(reader, max_frame_size=1 << 20)
    with pytest.raises(FrameTooLargeError) as info:
        decoder.decode()
    assert info.value.offset == 0
    assert reader.returned <= 4096  # nothing was buffered beyond the first read


@pytest.mark.parametrize(
    "hostile",
    [
        bytes.fromhex("a2617402") + b"\x61d\x5b" + (2**62).to_bytes(8, "big"),  # byte string
        bytes.fromhex("a2617402") + b"\x61e\x7b" + (2**63).to_bytes(8, "big"),  # text
        bytes.fromhex("a2617402") + b"\x63zzz\x9b" + (2**62).to_bytes(8, "big"),  # array
        bytes.fromhex("bb") + (2**62).to_bytes(8, "big"),  # a map of 2^62 pairs
    ],
    ids=["bytes", "text", "array", "map"],
)
def test_hostile_lengths(hostile: bytes) -> None:
    decoder = Decoder(OneByteReader(hostile + b"\x00" * 64), max_frame_size=1 << 16)
    with pytest.raises(FrameTooLargeError):
        decoder.decode()


def test_frame_over_the_limit() -> None:
    big = Frame(type=FrameType.DATA, stream=1, data=b"z" * 5000).to_cbor()
    decoder = Decoder(io.BytesIO(FRAMES[0].to_cbor() + big), max_frame_size=4096)
    assert decoder.decode() == FRAMES[0]
    with pytest.raises(FrameTooLargeError) as info:
        decoder.decode()
    assert info.value.offset == len(FRAMES[0].to_cbor())
    # exactly at the limit is fine
    assert Decoder(io.BytesIO(big), max_frame_size=len(big)).decode() is not None


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"\xff", "break"),
        (b"\x9f\x00\xff", "indefinite array"),
        (b"\x1c", "reserved head"),
        (cbor2.dumps(5), "not a map"),
        (cbor2.dumps({"t": "exec"}), "wrong type"),
        (cbor2.dumps({"t": 2, "d": "text"}), "text for bytes"),
        (b"\xa1\x61t\x62\xff\xfe", "invalid utf-8 key value"),
    ],
)
def test_garbage_reports_offset(garbage: bytes, why: str) -> None:
    first = FRAMES[2].to_cbor()
    decoder = Decoder(io.BytesIO(first + garbage + first))
    assert decoder.decode() == FRAMES[2]
    with pytest.raises(RemoteProtocolError) as info:
        decoder.decode()
    assert info.value.offset == len(first), why
    assert not isinstance(info.value, (TruncatedError, FrameTooLargeError))


def test_item_end_reports_what_it_needs() -> None:
    data = FRAMES[3].to_cbor()
    assert item_end(data) == len(data)
    assert item_end(data + b"\x00\x00") == len(data)
    with pytest.raises(Incomplete) as info:
        item_end(data[:10])
    assert 10 < info.value.needed <= len(data)


# --- pipes: never block waiting past the current frame -----------------------------------


@contextmanager
def pipe_pair() -> Iterator[tuple[io.BufferedReader, io.BufferedWriter]]:
    r, w = os.pipe()
    reader = os.fdopen(r, "rb")
    writer = os.fdopen(w, "wb")
    try:
        yield reader, writer
    finally:
        for f in (writer, reader):
            with suppress(OSError):
                f.close()


def test_decoder_on_a_pipe_answers_each_frame() -> None:
    # The peer writes one request and waits for our answer before writing the next:
    # a decoder reading ahead (or waiting to fill a buffer) would deadlock here.
    requests = [FRAMES[1], FRAMES[3], FRAMES[7], FRAMES[2]]
    with pipe_pair() as (to_us_r, to_us_w), pipe_pair() as (to_peer_r, to_peer_w):
        answers: list[Frame | None] = []
        errors: list[BaseException] = []

        def peer() -> None:
            try:
                encoder = Encoder(to_us_w)
                back = Decoder(to_peer_r)
                for request in requests:
                    encoder.encode(request)
                    answers.append(back.decode())
                to_us_w.close()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        decoder = Decoder(to_us_r)
        reply = Encoder(to_peer_w)
        got = []
        for _ in requests:
            timer = threading.Timer(10, to_us_w.close)  # unblock a hung read, then fail
            timer.start()
            frame = decoder.decode()
            timer.cancel()
            assert frame is not None, "decoder blocked past the frame (peer waits for us)"
            got.append(frame)
            reply.encode(Frame(type=FrameType.DATA, stream=1, data=b"ack"))
        thread.join(10)
        assert not thread.is_alive()
        assert not errors, errors
        assert got == requests
        assert answers == [Frame(type=FrameType.DATA, stream=1, data=b"ack")] * len(requests)
        assert decoder.decode() is None


def test_decoder_on_a_pipe_with_split_writes() -> None:
    # a frame written in pieces with pauses: the decoder waits for the rest, then returns it
    data = FRAMES[3].to_cbor()
    with pipe_pair() as (r, w):
        done = threading.Event()

        def writer() -> None:
            for i in range(0, len(data), 7000):
                w.write(data[i : i + 7000])
                w.flush()
                done.wait(0.002)
            w.close()

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        decoder = Decoder(r)
        assert decoder.decode() == FRAMES[3]
        assert decoder.decode() is None
        done.set()
        thread.join(10)
        assert not thread.is_alive()


# --- the encoder -------------------------------------------------------------------------


def test_encoder_writes_go_bytes() -> None:
    out = io.BytesIO()
    encoder = Encoder(out)
    written = [encoder.encode(f) for f in FRAMES]
    assert out.getvalue() == STREAM == b"".join(written)


def test_encoder_is_thread_safe() -> None:
    class SlowWriter(io.RawIOBase):
        """Writes in small pieces, like a pipe under pressure: interleaving would show."""

        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            view = bytes(data)
            for i in range(0, len(view), 97):
                self.parts.append(view[i : i + 97])
            return len(view)

    out = SlowWriter()
    encoder = Encoder(out)
    per_thread = 200

    def work(n: int) -> None:
        for i in range(per_thread):
            encoder.encode(Frame(type=FrameType.DATA, stream=n, data=bytes([n]) * (i * 37 % 1500)))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    frames = decode_all(Decoder(io.BytesIO(b"".join(out.parts))))
    assert len(frames) == 8 * per_thread
    for frame in frames:
        assert frame.data == bytes([frame.stream]) * len(frame.data)
    for n in range(1, 9):
        sizes = [len(f.data) for f in frames if f.stream == n]
        assert sizes == [i * 37 % 1500 for i in range(per_thread)]


def test_encoder_refuses_before_writing() -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError):
        Encoder(out).encode(Frame(stream=-1))
    assert out.getvalue() == b""


# --- whatever the bytes, only protocol errors come out ------------------------------------

_RECORD = FRAMES[6].to_cbor() + FRAMES[8].to_cbor()  # a log frame and a file-op response


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=40))
    data = bytearray(_RECORD)
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=300, deadline=None)
@given(damaged())
def test_any_bytes_give_a_protocol_error_or_frames(data: bytes) -> None:
    for attempt in (
        lambda: Frame.from_cbor(data),
        lambda: list(Decoder(io.BytesIO(data))),
        lambda: list(Decoder(OneByteReader(data))),
    ):
        with suppress(RemoteProtocolError):
            attempt()
