"""Stand in for an agent: answer a runner from a recording (``reclab serve``).

A :class:`RecordedAgent` plays the agent side of the protocol on any
connection (stdin/stdout, or each connection of a listening socket):

- ``FrameExec`` is matched with a recorded command of the same path, argv and
  cwd (and env, with ``match_env``); the first not yet served, then the first
  again. Its recorded answers (stdout, stderr, extra fds, EOFs, logs, errors
  and finally ``FrameExit``) go out in recorded order, each no earlier than
  the runner has sent what preceded it in the recording (as many stdin bytes
  or stdin's end, stdin's EOF, as many signals), at recorded times after the exec
  (``timing="recorded"``, scaled by ``speed``) or at once (``"fast"``);
- a file-op request is matched on its op and inputs (path, new path, flags,
  mode, offset, size, data...), its handle mapped back to the recorded one;
  the answer carries the runner's request id and a handle of this
  connection's own for any handle the recorded answer opened. A PATH query is
  matched on its list of directories;
- an unmatched request gets an answer all the same, so the runner never
  waits: ``FrameError`` then ``FrameExit`` 127 for an exec (what an agent
  answers for a program it cannot start), an ``EIO`` answer for a file op,
  ``FrameError`` and no entries for a PATH query. A log line (to ``log`` and
  as ``FrameLog``) names the closest recorded candidate; the session goes on.

Listening (:func:`serve_listener`) admits peers by the agent's rule
(:mod:`agentproto.listener`): this user or root, or the holder of the token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentproto import (
    AgentProtoError,
    Direction,
    ExecMsg,
    FileOpReq,
    FileOpResp,
    Frame,
    FrameType,
    LogEntry,
    PathInfo,
    PathQuery,
)
from agentproto.address import Address
from agentproto.auth import peer_uid
from agentproto.listener import PeerPolicy, Refused, admit, describe_peer, open_listener, refuse
from agentproto.mux import Mux

from ..model import Recording
from .plan import describe_file_op

__all__ = ["RecordedAgent", "serve_listener", "serve_stdio"]

UNMATCHED_EXIT = 127  # what an agent answers for a program it cannot start
WARN = 4  # slog's WARN level, for FrameLog
_SCRIPTED = frozenset(
    {FrameType.DATA, FrameType.EOF, FrameType.LOG, FrameType.ERROR, FrameType.EXIT}
)
# File-op request fields that say what is asked (the id and handle are mapped, not matched).
_REQUEST_FIELDS = (
    "op",
    "path",
    "new_path",
    "flags",
    "mode",
    "uid",
    "gid",
    "offset",
    "size",
    "atime_nanos",
    "mtime_nanos",
    "data",
)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A recorded frame the agent sent on its own, and what the runner had sent before it."""

    time: float  # seconds after the exec
    index: int  # record index (data is read when it is sent, not held)
    frame: Frame | None  # the frame itself, for anything but data
    stdin_bytes: int
    stdin_eof: bool
    signals: int


@dataclass(frozen=True, slots=True)
class _FileOp:
    seq: int
    request: FileOpReq
    response: FileOpResp
    latency: float


@dataclass(frozen=True, slots=True)
class _PathQuery:
    seq: int
    paths: tuple[str, ...]
    info: PathInfo
    latency: float


@dataclass(slots=True)
class _RecordedCommand:
    seq: int
    exec: ExecMsg
    answers: list[_Answer] = field(default_factory=list)
    file_ops: list[_FileOp] = field(default_factory=list)
    path_queries: list[_PathQuery] = field(default_factory=list)


def _request_key(req: FileOpReq) -> tuple[Any, ...]:
    return tuple(getattr(req, name) for name in _REQUEST_FIELDS)


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


class _Connection:
    """One runner connection's state: what it sent, its handles, what it was answered."""

    def __init__(self, mux: Mux):
        self.mux = mux
        self.cond = threading.Condition()
        self.stdin_bytes = 0
        self.stdin_eof = False
        self.signals = 0
        self.gone = threading.Event()
        self.command: _RecordedCommand | None = None
        self.handles: dict[int, int] = {}  # our handle -> the recorded one
        self.next_handle = 1
        self.used_file_ops: set[int] = set()
        self.used_queries: set[int] = set()

    # stream 0 handler: stdin from the runner, counted (its bytes are not checked)
    def write(self, data: bytes) -> None:
        with self.cond:
            self.stdin_bytes += len(data)
            self.cond.notify_all()

    def eof(self) -> None:
        with self.cond:
            self.stdin_eof = True
            self.cond.notify_all()

    def signal(self, _signo: int) -> None:
        with self.cond:
            self.signals += 1
            self.cond.notify_all()

    def ended(self) -> None:
        self.gone.set()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, answer: _Answer) -> bool:
        """Wait until the runner has sent what preceded ``answer``; False if it hung up."""
        with self.cond:
            while not self.gone.is_set():
                # once stdin has ended, fewer bytes than recorded do not hold anything up
                if (
                    (self.stdin_bytes >= answer.stdin_bytes or self.stdin_eof)
                    and (self.stdin_eof or not answer.stdin_eof)
                    and self.signals >= answer.signals
                ):
                    return True
                self.cond.wait()
        return False


class RecordedAgent:
    """The agent side of a recording: serves connections with the recorded answers.

    ``timing`` is ``recorded`` (answers at their recorded times after the
    exec, RPC answers after their recorded latency, all scaled by ``speed``)
    or ``fast``. ``match_env`` also requires an exec's env to match.
    ``log(line)`` receives the unmatched-request lines (default: stderr).
    Thread-safe: one instance serves any number of connections at once.
    """

    def __init__(
        self,
        rec: Recording,
        *,
        timing: str = "recorded",
        speed: float = 1.0,
        match_env: bool = False,
        log: Callable[[str], None] | None = None,
    ):
        if timing not in ("recorded", "fast"):
            raise ValueError(f"timing {timing!r}: expected recorded or fast")
        if not speed > 0:
            raise ValueError(f"speed {speed}: must be more than 0")
        self.rec = rec
        self.timing = timing
        self.speed = speed
        self.match_env = match_env
        self.log = log or (lambda line: print(f"reclab serve: {line}", file=sys.stderr, flush=True))
        self.commands = [self._load(seq) for seq in sorted(rec.commands)]
        self._served: set[int] = set()
        self._lock = threading.Lock()

    def _load(self, seq: int) -> _RecordedCommand:
        cmd = self.rec.command(seq)
        loaded = _RecordedCommand(seq, cmd.exec)
        begin = cmd.start_time or 0
        stdin_bytes, stdin_eof, signals = 0, False, 0
        file_asks: dict[int, tuple[FileOpReq, int]] = {}
        path_asks: list[tuple[tuple[str, ...], int]] = []
        for ref in self.rec.frames(seq):
            frame, ftype = ref.frame, ref.frame.type
            if ref.direction == Direction.SEND:
                if ftype == FrameType.EXEC:
                    begin = ref.timestamp
                elif ftype == FrameType.DATA and frame.stream == 0:
                    stdin_bytes += len(frame.data)
                elif ftype == FrameType.EOF and frame.stream == 0:
                    stdin_eof = True
                elif ftype == FrameType.SIGNAL:
                    signals += 1
                elif ftype == FrameType.FILE_OP and frame.file_op is not None:
                    file_asks[frame.file_op.req_id] = (frame.file_op, ref.timestamp)
                elif ftype == FrameType.PATH_QUERY:
                    paths = tuple(frame.query.paths) if frame.query is not None else ()
                    path_asks.append((paths, ref.timestamp))
                continue
            if ftype == FrameType.FILE_RESP and frame.file_resp is not None:
                asked = file_asks.pop(frame.file_resp.req_id, None)
                if asked is not None:
                    latency = max(0.0, (ref.timestamp - asked[1]) / 1e9)
                    loaded.file_ops.append(_FileOp(seq, asked[0], frame.file_resp, latency))
            elif ftype == FrameType.PATH_INFO and path_asks:
                paths, asked_at = path_asks.pop(0)
                latency = max(0.0, (ref.timestamp - asked_at) / 1e9)
                loaded.path_queries.append(
                    _PathQuery(seq, paths, frame.info or PathInfo(entries=[]), latency)
                )
            elif ftype in _SCRIPTED:
                kept = None if ftype == FrameType.DATA else frame
                at = max(0.0, (ref.timestamp - begin) / 1e9)
                loaded.answers.append(_Answer(at, ref.index, kept, stdin_bytes, stdin_eof, signals))
        return loaded

    def _delay(self, seconds: float) -> float:
        return 0.0 if self.timing == "fast" else seconds / self.speed

    def _warn(self, conn: _Connection, line: str) -> None:
        self.log(line)
        with contextlib.suppress(AgentProtoError):
            conn.mux.send(
                Frame(type=FrameType.LOG, log=LogEntry(level=WARN, msg=f"reclab serve: {line}"))
            )

    # --- matching ------------------------------------------------------------------------

    def _exec_matches(self, recorded: ExecMsg, live: ExecMsg) -> bool:
        same = (
            recorded.path == live.path
            and list(recorded.argv or []) == list(live.argv or [])
            and recorded.cwd == live.cwd
        )
        return same and (not self.match_env or recorded.env == live.env)

    def match_exec(self, msg: ExecMsg) -> _RecordedCommand | None:
        """The recorded command answering ``msg``: the first not yet served, else the first."""
        found = [c for c in self.commands if self._exec_matches(c.exec, msg)]
        with self._lock:
            for cmd in found:
                if cmd.seq not in self._served:
                    self._served.add(cmd.seq)
                    return cmd
        return found[0] if found else None

    def closest_exec(self, msg: ExecMsg) -> str:
        """The recorded exec most like ``msg``, in words."""

        def text(m: ExecMsg) -> str:
            return shlex.join([m.path, *(m.argv or [])]) + (f" in {m.cwd}" if m.cwd else "")

        if not self.commands:
            return "the recording has no commands"
        best = max(self.commands, key=lambda c: _similarity(text(c.exec), text(msg)))
        return f"closest recorded: seq {best.seq}: {text(best.exec)}"

    def _file_op_pools(self, conn: _Connection) -> list[_FileOp]:
        mine = conn.command.file_ops if conn.command is not None else []
        others = [op for c in self.commands if c is not conn.command for op in c.file_ops]
        return [*mine, *others]

    def answer_file_op(self, conn: _Connection, req: FileOpReq) -> FileOpResp:
        """The recorded answer to ``req`` on ``conn`` (an EIO answer when none matches)."""
        wanted = req
        if req.handle:
            recorded_handle = conn.handles.get(req.handle)
            if recorded_handle is None:
                self._warn(conn, f"file op {describe_file_op(req)}: unknown handle {req.handle}")
                return FileOpResp(errno=errno.EBADF, err_msg="reclab serve: unknown handle")
            wanted = dataclasses.replace(req, handle=recorded_handle)
        key = _request_key(wanted)
        pool = self._file_op_pools(conn)
        candidates = [
            op
            for op in pool
            if _request_key(op.request) == key and op.request.handle == wanted.handle
        ]
        if not candidates:
            closest = ""
            same_op = [op for op in pool if op.request.op == req.op] or pool
            if same_op:
                best = max(
                    same_op,
                    key=lambda op: _similarity(
                        describe_file_op(op.request), describe_file_op(wanted)
                    ),
                )
                closest = f"; closest recorded: seq {best.seq}: {describe_file_op(best.request)}"
            self._warn(conn, f"no recorded answer for {describe_file_op(req)}{closest}")
            return FileOpResp(errno=errno.EIO, err_msg="reclab serve: no recorded answer")
        chosen = next((op for op in candidates if id(op) not in conn.used_file_ops), candidates[0])
        conn.used_file_ops.add(id(chosen))
        delay = self._delay(chosen.latency)
        if delay:
            time.sleep(delay)
        answer = dataclasses.replace(chosen.response)
        if answer.handle:
            live = conn.next_handle
            conn.next_handle += 1
            conn.handles[live] = answer.handle
            answer.handle = live
        return answer

    def answer_path_query(self, conn: _Connection, query: PathQuery) -> PathInfo:
        """The recorded answer to a PATH query (no entries and a FrameError when none matches)."""
        paths = tuple(query.paths)
        mine = conn.command.path_queries if conn.command is not None else []
        pool = [*mine, *(q for c in self.commands if c is not conn.command for q in c.path_queries)]
        candidates = [q for q in pool if q.paths == paths]
        if not candidates:
            closest = ""
            if pool:
                best = max(pool, key=lambda q: _similarity(repr(q.paths), repr(paths)))
                closest = f"; closest recorded: seq {best.seq}: {list(best.paths)}"
            line = f"no recorded answer for PATH query {list(paths)}{closest}"
            self._warn(conn, line)
            with contextlib.suppress(AgentProtoError):
                conn.mux.send(Frame(type=FrameType.ERROR, error=f"reclab serve: {line}"))
            return PathInfo(entries=[])
        chosen = next((q for q in candidates if id(q) not in conn.used_queries), candidates[0])
        conn.used_queries.add(id(chosen))
        delay = self._delay(chosen.latency)
        if delay:
            time.sleep(delay)
        return chosen.info

    # --- a connection ----------------------------------------------------------------------

    def serve(self, reader: Any, writer: Any) -> int:
        """Serve one runner connection to its end; the exit code answered (-1: none).

        ``reader``/``writer`` are binary file objects (a pipe, a socket's
        ``makefile``). Never raises for what the runner sends.
        """
        mux = Mux(reader, writer, side="agent")
        conn = _Connection(mux)
        mux.on_file_op(lambda req: self.answer_file_op(conn, req))
        mux.on_path_query(lambda query: self.answer_path_query(conn, query))
        try:
            msg = self._before_exec(mux)
            if msg is None:
                return -1
            cmd = self.match_exec(msg)
            if cmd is None:
                line = (
                    f"no recorded command matches exec {shlex.join([msg.path, *(msg.argv or [])])}"
                )
                line += f" (cwd {msg.cwd!r}); {self.closest_exec(msg)}"
                self._warn(conn, line)
                with contextlib.suppress(AgentProtoError):
                    mux.send(Frame(type=FrameType.ERROR, error=f"reclab serve: {line}"))
                    mux.send(Frame(type=FrameType.EXIT, code=UNMATCHED_EXIT))
                return UNMATCHED_EXIT
            conn.command = cmd
            return self._play(conn, cmd)
        finally:
            mux.close()

    def _before_exec(self, mux: Mux) -> ExecMsg | None:
        """Serve RPCs until the runner's ``FrameExec``; None if it hangs up or breaks first."""
        while True:
            try:
                frame = mux.decode_one()
            except (AgentProtoError, OSError, ValueError) as exc:
                self.log(f"bad input from the runner: {exc}")
                return None
            if frame is None:
                return None
            if frame.type == FrameType.EXEC:
                return frame.exec or ExecMsg()
            if frame.type != FrameType.CONFIG:  # the recorded answers already reflect it
                mux.dispatch(frame)

    def _play(self, conn: _Connection, cmd: _RecordedCommand) -> int:
        mux = conn.mux
        mux.register_stream(0, conn)
        mux.on_signal(conn.signal)

        def read() -> None:
            try:
                mux.read_loop()
            finally:
                conn.ended()

        reader = threading.Thread(target=read, name="reclab-serve-read", daemon=True)
        reader.start()
        began = time.monotonic()
        code = -1
        try:
            for answer in cmd.answers:
                if not conn.wait_for(answer):
                    return -1  # the runner hung up
                delay = began + self._delay(answer.time) - time.monotonic()
                if delay > 0 and conn.gone.wait(delay):
                    return -1
                frame = answer.frame
                if frame is None:  # data: read from the recording now
                    record = self.rec.record(answer.index)
                    assert record.frame is not None
                    frame = record.frame.frame
                    mux.send_data(frame.stream, frame.data)
                    continue
                mux.send(frame)
                if frame.type == FrameType.EXIT:
                    code = frame.code
                    break
            else:
                conn.gone.wait()  # recorded without an exit: the runner hung up, so wait for it
        except AgentProtoError:
            return -1  # the runner went away while we answered
        finally:
            mux.close()
            reader.join(5.0)
        return code


# --- where it serves ---------------------------------------------------------------------


def serve_stdio(agent: RecordedAgent) -> int:
    """Serve one connection on this process's stdin/stdout, as an agent under SSH does.

    fd 1 is taken over for the protocol: anything printed afterwards goes to
    stderr, so nothing can corrupt the frame stream. Returns the exit code
    answered (-1 for none).
    """
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with open(proto_in, "rb", buffering=0) as reader, open(proto_out, "wb", buffering=0) as writer:
        return agent.serve(reader, writer)


def serve_listener(
    agent: RecordedAgent,
    address: str | Address,
    *,
    allow_any_peer: bool = False,
    token: bytes | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve every connection to ``address`` (``unix:PATH`` or ``tcp:HOST:PORT``) until ``stop``.

    Peers are admitted as by a listening agent (:mod:`agentproto.listener`):
    running as this user or root (Unix sockets and loopback TCP), or
    presenting ``token``; everyone with ``allow_any_peer``. A TCP address
    other machines can reach needs a token or ``allow_any_peer``. The others
    get a ``FrameError`` saying why and are closed. ``on_ready(address)`` is
    called once listening. Raises ValueError for an address that cannot be used.
    """
    policy = PeerPolicy(
        allowed_uids=frozenset({os.geteuid(), 0}), token=token, any_peer=allow_any_peer
    )
    sock, shown, unix_path = open_listener(str(address), policy)
    stop = stop or threading.Event()
    sock.settimeout(0.2)  # to notice ``stop``
    threads: list[threading.Thread] = []
    if on_ready is not None:
        on_ready(shown)

    def handle(conn: socket.socket) -> None:
        try:
            conn.settimeout(None)
            try:
                admit(conn, policy)
            except Refused as exc:
                agent.log(f"refused a connection from {describe_peer(conn, peer_uid(conn))}: {exc}")
                refuse(conn, str(exc))
                return
            with (
                conn.makefile("rb", buffering=0) as reader,
                conn.makefile("wb", buffering=0) as writer,
            ):
                agent.serve(reader, writer)
        except Exception as exc:  # one broken connection must not end the listener
            agent.log(f"connection failed: {exc}")
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    try:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=handle, args=(conn,), name="reclab-serve", daemon=True)
            thread.start()
            threads = [t for t in threads if t.is_alive()] + [thread]
    finally:
        sock.close()
        if unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(unix_path)
        for thread in threads:
            thread.join(5.0)
