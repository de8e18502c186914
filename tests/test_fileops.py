"""The file-op server: every op, every errno path, confinement, handles, threads.

Most op tests run twice: against an unconfined server with absolute paths and
against a server confined to the temporary directory with relative paths, so
both path resolvers are held to the same Go ``os`` semantics.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentproto import FileOp, FileOpReq, FileOpResp
from agentproto import fileops as fileops_mod
from agentproto.agent.fileops import file_stat, stat_map
from agentproto.errors import LocalProtocolError
from agentproto.filemode import (
    MODE_CHAR_DEVICE,
    MODE_DEVICE,
    MODE_DIR,
    MODE_IRREGULAR,
    MODE_NAMED_PIPE,
    MODE_SETGID,
    MODE_SETUID,
    MODE_SOCKET,
    MODE_STICKY,
    MODE_SYMLINK,
    format_mode,
    from_stat,
    to_posix,
    to_st_mode,
)
from agentproto.fileops import MAX_READ_SIZE, FileOpServer

IS_ROOT = os.geteuid() == 0


class Client:
    """Calls a server the way the mux would: fresh ids, responses through CBOR."""

    def __init__(self, server: FileOpServer, base: Path, confined: bool):
        self.server = server
        self.base = base
        self.confined = confined
        self._ids = itertools.count(100)  # next() on a count is atomic: threads may share it

    def p(self, name: str) -> str:
        """The request path for ``name`` under the test directory."""
        return name if self.confined else str(self.base / name)

    def __call__(self, op: int, **fields: Any) -> FileOpResp:
        req_id = next(self._ids)
        req = FileOpReq(req_id=req_id, op=op, **fields)
        req = FileOpReq.from_cbor(req.to_cbor())
        resp = self.server.handle(req)
        assert resp.req_id == req_id
        if op in (FileOp.STAT, FileOp.LSTAT, FileOp.READ_DIR):  # ask again, the agent's way
            assert self.server.answer(req) == resp.to_cbor()
        return FileOpResp.from_cbor(resp.to_cbor())  # every answer must be encodable

    def ok(self, op: int, **fields: Any) -> FileOpResp:
        resp = self(op, **fields)
        assert resp.errno == 0, resp.err_msg
        return resp

    def fails(self, code: int, op: int, **fields: Any) -> FileOpResp:
        resp = self(op, **fields)
        assert resp.errno == code, (errno.errorcode.get(resp.errno), resp.err_msg)
        assert resp.err_msg
        return resp

    def create(self, name: str, data: bytes = b"") -> int:
        handle = self.ok(FileOp.CREATE, path=self.p(name)).handle
        if data:
            assert self.ok(FileOp.WRITE_AT, handle=handle, data=data).n == len(data)
        return handle


@pytest.fixture(params=["plain", "confined"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    confined = request.param == "confined"
    server = FileOpServer(tmp_path if confined else None)
    yield Client(server, tmp_path, confined)
    server.close_all()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- filemode --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        (0, "----------"),
        (0o644, "-rw-r--r--"),
        (MODE_DIR | 0o755, "drwxr-xr-x"),
        (MODE_SYMLINK | 0o777, "Lrwxrwxrwx"),
        (MODE_SETUID | 0o755, "urwxr-xr-x"),
        (MODE_DIR | MODE_STICKY | 0o777, "dtrwxrwxrwx"),
        (MODE_DEVICE | MODE_CHAR_DEVICE | 0o666, "Dcrw-rw-rw-"),
        (MODE_NAMED_PIPE | 0o600, "prw-------"),
        (MODE_SOCKET | MODE_SETGID | 0o750, "Sgrwxr-x---"),
        (MODE_IRREGULAR | 0o400, "?r--------"),
    ],
)
def test_format_mode_matches_go(mode: int, text: str) -> None:
    assert format_mode(mode) == text


@pytest.mark.parametrize(
    ("st_mode", "file_mode"),
    [
        (stat.S_IFREG | 0o644, 0o644),
        (stat.S_IFDIR | 0o755, MODE_DIR | 0o755),
        (stat.S_IFLNK | 0o777, MODE_SYMLINK | 0o777),
        (stat.S_IFIFO | 0o600, MODE_NAMED_PIPE | 0o600),
        (stat.S_IFSOCK | 0o755, MODE_SOCKET | 0o755),
        (stat.S_IFCHR | 0o666, MODE_DEVICE | MODE_CHAR_DEVICE | 0o666),
        (stat.S_IFBLK | 0o660, MODE_DEVICE | 0o660),
        (stat.S_IFREG | stat.S_ISUID | 0o755, MODE_SETUID | 0o755),
        (stat.S_IFDIR | stat.S_ISGID | 0o2775 & 0o777, MODE_DIR | MODE_SETGID | 0o775),
        (stat.S_IFDIR | stat.S_ISVTX | 0o777, MODE_DIR | MODE_STICKY | 0o777),
    ],
)
def test_from_stat_and_back(st_mode: int, file_mode: int) -> None:
    assert from_stat(st_mode) == file_mode
    assert to_st_mode(file_mode) == st_mode


def test_to_posix_keeps_only_permissions_and_special_bits() -> None:
    assert to_posix(MODE_DIR | 0o755) == 0o755
    assert to_posix(MODE_SETUID | MODE_SETGID | MODE_STICKY | 0o700) == 0o7700
    assert to_posix(0o1777) == 0o777  # POSIX sticky bit position is not Go's


def test_real_device_mode() -> None:
    assert format_mode(from_stat(os.stat("/dev/null").st_mode)) == "Dcrw-rw-rw-"


# --- handles: open, create, read, write, close ---------------------------------------


def test_create_write_read_close(fs: Client) -> None:
    handle = fs.create("f", b"hello world")
    assert handle >= 1
    fs.ok(FileOp.CLOSE, handle=handle)
    handle = fs.ok(FileOp.OPEN, path=fs.p("f"), flags=os.O_RDONLY).handle
    resp = fs.ok(FileOp.READ_AT, handle=handle, offset=6, size=100)
    assert (resp.data, resp.n, resp.eof) == (b"world", 5, True)
    resp = fs.ok(FileOp.READ_AT, handle=handle, offset=0, size=5)
    assert (resp.data, resp.n, resp.eof) == (b"hello", 5, False)
    resp = fs.ok(FileOp.READ_AT, handle=handle, offset=6, size=5)  # exactly to the end
    assert (resp.data, resp.eof) == (b"world", True)
    resp = fs.ok(FileOp.READ_AT, handle=handle, offset=50, size=5)  # past the end
    assert (resp.data, resp.n, resp.eof) == (b"", 0, True)
    resp = fs.ok(FileOp.READ_AT, handle=handle, offset=0, size=0)
    assert (resp.data, resp.eof) == (b"", False)
    fs.ok(FileOp.CLOSE, handle=handle)
    fs.fails(errno.EBADF, FileOp.CLOSE, handle=handle)


def test_handles_are_small_and_distinct(fs: Client) -> None:
    handles = [fs.create(f"f{i}") for i in range(5)]
    assert handles == [1, 2, 3, 4, 5]
    assert fs.server.open_handles == 5


def test_create_truncates_and_uses_0666(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"old contents")
    fs.create("f")
    assert (fs.base / "f").read_bytes() == b""
    old = os.umask(0)
    try:
        fs.create("g")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(fs.base / "g").st_mode) == 0o666


def test_create_handle_is_write_only(fs: Client) -> None:
    handle = fs.create("f", b"abc")
    fs.fails(errno.EBADF, FileOp.READ_AT, handle=handle, size=3)


def test_open_file_with_flags_and_mode(fs: Client) -> None:
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    handle = fs.ok(FileOp.OPEN_FILE, path=fs.p("f"), flags=flags, mode=0o640).handle
    assert stat.S_IMODE(os.stat(fs.base / "f").st_mode) == 0o640
    fs.ok(FileOp.WRITE_AT, handle=handle, offset=3, data=b"xy")
    assert fs.ok(FileOp.READ_AT, handle=handle, size=10).data == b"\0\0\0xy"
    fs.fails(errno.EEXIST, FileOp.OPEN_FILE, path=fs.p("f"), flags=flags, mode=0o640)
    fs.fails(errno.EEXIST, FileOp.OPEN, path=fs.p("f"), flags=flags)


def test_open_errors(fs: Client) -> None:
    (fs.base / "d").mkdir()
    (fs.base / "f").write_bytes(b"")
    fs.fails(errno.ENOENT, FileOp.OPEN, path=fs.p("missing"))
    fs.fails(errno.ENOENT, FileOp.OPEN, path="")
    fs.fails(errno.EISDIR, FileOp.OPEN, path=fs.p("d"), flags=os.O_WRONLY)
    fs.fails(errno.ENOTDIR, FileOp.OPEN, path=fs.p("f/x"))
    fs.fails(errno.ENOTDIR, FileOp.OPEN, path=fs.p("f"), flags=os.O_DIRECTORY)
    fs.fails(errno.EINVAL, FileOp.OPEN, path=fs.p("nul\0byte"))
    os.symlink("f", fs.base / "link")
    fs.fails(errno.ELOOP, FileOp.OPEN, path=fs.p("link"), flags=os.O_NOFOLLOW)
    assert fs.server.open_handles == 0


def test_open_of_a_fifo_never_waits_for_its_other_end(fs: Client) -> None:
    """open(2) of a FIFO blocks until its other end opens: the agent's reading thread must
    not (a runner's Open of a FIFO would stall the connection, signals included)."""
    fifo = fs.base / "fifo"
    os.mkfifo(fifo)

    def call(flags: int) -> FileOpResp:
        done: list[FileOpResp] = []
        caller = threading.Thread(
            target=lambda: done.append(fs(FileOp.OPEN, path=fs.p("fifo"), flags=flags)),
            daemon=True,
        )
        caller.start()
        caller.join(10)
        if not done:  # blocked in open(2): open the other end to let it go, then fail
            os.close(os.open(fifo, os.O_RDWR))
            caller.join(10)
            pytest.fail(f"Open of a FIFO (flags {flags:#o}) waited for its other end")
        return done[0]

    no_reader = call(os.O_WRONLY)
    assert no_reader.errno == errno.ENXIO  # what open(2) says, instead of waiting
    handle = call(os.O_RDONLY).handle
    assert handle
    fd = fs.server._handles[handle].fd
    assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK  # the mode asked for
    writer = call(os.O_WRONLY)  # it has a reader now
    assert writer.errno == 0
    asked = call(os.O_RDONLY | os.O_NONBLOCK).handle
    assert fcntl.fcntl(fs.server._handles[asked].fd, fcntl.F_GETFL) & os.O_NONBLOCK
    for h in (handle, writer.handle, asked):
        fs.ok(FileOp.CLOSE, handle=h)
    assert fs.server.open_handles == 0


def test_opened_files_keep_their_status_flags(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"abc")
    handle = fs.ok(FileOp.OPEN, path=fs.p("f"), flags=os.O_WRONLY | os.O_APPEND).handle
    flags = fcntl.fcntl(fs.server._handles[handle].fd, fcntl.F_GETFL)
    assert flags & os.O_APPEND and not flags & os.O_NONBLOCK
    fs.ok(FileOp.CLOSE, handle=handle)


def test_open_follows_symlinks(fs: Client) -> None:
    (fs.base / "d").mkdir()
    (fs.base / "d" / "f").write_bytes(b"data")
    os.symlink("d", fs.base / "ld")
    os.symlink("ld/f", fs.base / "lf")
    handle = fs.ok(FileOp.OPEN, path=fs.p("lf")).handle
    assert fs.ok(FileOp.READ_AT, handle=handle, size=4).data == b"data"
    assert fs.ok(FileOp.FSTAT, handle=handle).stat.name == "lf"  # type: ignore[union-attr]
    # O_CREAT through a dangling symlink creates its target, as open(2) does
    os.symlink("d/new", fs.base / "dangling")
    exclusive = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fs.fails(errno.EEXIST, FileOp.OPEN, path=fs.p("dangling"), flags=exclusive)
    assert not (fs.base / "d" / "new").exists()
    fs.ok(FileOp.OPEN, path=fs.p("dangling"), flags=os.O_WRONLY | os.O_CREAT)
    assert (fs.base / "d" / "new").is_file()


def test_read_at_errors(fs: Client) -> None:
    handle = fs.ok(FileOp.OPEN, path=fs.p(".")).handle
    fs.fails(errno.EISDIR, FileOp.READ_AT, handle=handle, size=10)
    fs.fails(errno.EBADF, FileOp.READ_AT, handle=999, size=10)
    fs.fails(errno.EBADF, FileOp.READ_AT, handle=0, size=10)
    handle = fs.create("f", b"abc")
    fs.fails(errno.EINVAL, FileOp.READ_AT, handle=handle, offset=-1, size=1)
    fs.fails(errno.EINVAL, FileOp.READ_AT, handle=handle, size=-1)
    fs.fails(errno.EINVAL, FileOp.WRITE_AT, handle=handle, offset=-1, data=b"x")
    fs.fails(errno.EBADF, FileOp.WRITE_AT, handle=999, data=b"x")


def test_read_at_size_is_capped(fs: Client) -> None:
    with open(fs.base / "big", "wb") as f:
        f.truncate(MAX_READ_SIZE + 10)  # sparse: costs no disk
    handle = fs.ok(FileOp.OPEN, path=fs.p("big")).handle
    resp = fs.ok(FileOp.READ_AT, handle=handle, size=1 << 62)
    assert (resp.n, len(resp.data), resp.eof) == (MAX_READ_SIZE, MAX_READ_SIZE, False)
    resp = fs.ok(FileOp.READ_AT, handle=handle, offset=MAX_READ_SIZE, size=1 << 40)
    assert (resp.n, resp.eof) == (10, True)


def test_write_at_on_append_handle_is_einval(fs: Client) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    handle = fs.ok(FileOp.OPEN, path=fs.p("f"), flags=flags).handle
    resp = fs.fails(errno.EINVAL, FileOp.WRITE_AT, handle=handle, data=b"x")
    assert "O_APPEND" in resp.err_msg


def test_write_at_large_and_empty(fs: Client) -> None:
    handle = fs.create("f")
    payload = os.urandom(300_000)
    assert fs.ok(FileOp.WRITE_AT, handle=handle, offset=10, data=payload).n == len(payload)
    assert fs.ok(FileOp.WRITE_AT, handle=handle, data=b"").n == 0
    assert (fs.base / "f").read_bytes() == b"\0" * 10 + payload


def test_fstat_fsync_ftruncate(fs: Client) -> None:
    handle = fs.create("sub.txt", b"12345")
    st_ = fs.ok(FileOp.FSTAT, handle=handle).stat
    assert st_ is not None
    assert (st_.name, st_.size, st_.mode, st_.is_dir) == ("sub.txt", 5, 0o644 & st_.mode, False)
    fs.ok(FileOp.FSYNC, handle=handle)
    fs.ok(FileOp.FTRUNCATE, handle=handle, size=2)
    assert (fs.base / "sub.txt").read_bytes() == b"12"
    fs.ok(FileOp.FTRUNCATE, handle=handle, size=0)
    assert (fs.base / "sub.txt").read_bytes() == b""
    fs.fails(errno.EINVAL, FileOp.FTRUNCATE, handle=handle, size=-1)
    for op in (FileOp.FSTAT, FileOp.FSYNC, FileOp.FTRUNCATE, FileOp.CLOSE):
        fs.fails(errno.EBADF, op, handle=424242)
    read_only = fs.ok(FileOp.OPEN, path=fs.p("sub.txt")).handle
    resp = fs(FileOp.FTRUNCATE, handle=read_only, size=1)
    assert resp.errno in (errno.EINVAL, errno.EBADF)


def test_close_all_releases_every_handle(fs: Client) -> None:
    before = open_fds()
    handles = [fs.create(f"f{i}") for i in range(10)]
    assert open_fds() == before + 10
    fs.server.close_all()
    assert open_fds() == before
    assert fs.server.open_handles == 0
    for handle in handles:
        fs.fails(errno.EBADF, FileOp.READ_AT, handle=handle, size=1)
        fs.fails(errno.EBADF, FileOp.CLOSE, handle=handle)
    fs.server.close_all()  # idempotent
    assert fs.create("again") >= 1  # the server stays usable


# --- path ops ----------------------------------------------------------------------


def test_stat_and_lstat(fs: Client) -> None:
    (fs.base / "d").mkdir(mode=0o750)
    os.chmod(fs.base / "d", 0o750)
    (fs.base / "d" / "f").write_bytes(b"x" * 42)
    os.symlink("d/f", fs.base / "link")
    os.utime(fs.base / "d" / "f", ns=(1_000_000_123, 2_000_000_456))
    real = os.stat(fs.base / "d" / "f")
    st_ = fs.ok(FileOp.STAT, path=fs.p("link")).stat
    assert st_ is not None
    assert st_.name == "link"
    assert (st_.size, st_.mode, st_.is_dir) == (42, from_stat(real.st_mode), False)
    assert (st_.atime_nanos, st_.mtime_nanos, st_.ctime_nanos) == (
        1_000_000_123,
        2_000_000_456,
        real.st_ctime_ns,
    )
    assert (st_.uid, st_.gid, st_.nlink, st_.ino) == (
        real.st_uid,
        real.st_gid,
        1,
        real.st_ino,
    )
    assert (st_.blocks, st_.blksize, st_.rdev) == (real.st_blocks, real.st_blksize, 0)
    lst = fs.ok(FileOp.LSTAT, path=fs.p("link")).stat
    assert lst is not None
    assert lst.mode & MODE_SYMLINK and format_mode(lst.mode) == "Lrwxrwxrwx"
    assert lst.size == len("d/f")
    dst = fs.ok(FileOp.STAT, path=fs.p("d/")).stat
    assert dst is not None
    assert (dst.name, dst.is_dir, format_mode(dst.mode)) == ("d", True, "drwxr-x---")
    fs.fails(errno.ENOENT, FileOp.STAT, path=fs.p("missing"))
    fs.fails(errno.ENOENT, FileOp.LSTAT, path=fs.p("missing"))
    fs.fails(errno.ENOENT, FileOp.STAT, path="")
    fs.fails(errno.ENOTDIR, FileOp.STAT, path=fs.p("d/f/x"))
    os.symlink("nowhere", fs.base / "dangling")
    fs.fails(errno.ENOENT, FileOp.STAT, path=fs.p("dangling"))
    assert fs.ok(FileOp.LSTAT, path=fs.p("dangling")).stat is not None


def test_stat_of_a_device(fs: Client) -> None:
    if fs.confined:
        pytest.skip("/dev is outside the temporary root")
    st_ = fs.ok(FileOp.STAT, path="/dev/null").stat
    assert st_ is not None
    assert format_mode(st_.mode) == "Dcrw-rw-rw-"
    assert st_.rdev == os.stat("/dev/null").st_rdev


def test_read_dir(fs: Client) -> None:
    for name in ("b", "a", "C", "é"):
        (fs.base / name).write_bytes(name.encode())
    (fs.base / "sub").mkdir()
    os.symlink("sub", fs.base / "zlink")
    entries = fs.ok(FileOp.READ_DIR, path=fs.p(".")).entries
    names = [e.stat.name for e in entries]
    assert names == ["C", "a", "b", "sub", "zlink", "é"]  # byte order, like Go
    by_name = {e.stat.name: e.stat for e in entries}
    assert by_name["sub"].is_dir and by_name["sub"].mode & MODE_DIR
    assert by_name["zlink"].mode & MODE_SYMLINK and not by_name["zlink"].is_dir  # lstat
    assert by_name["é"].size == 2
    assert fs.ok(FileOp.READ_DIR, path=fs.p("sub")).entries == []
    fs.fails(errno.ENOTDIR, FileOp.READ_DIR, path=fs.p("a"))
    fs.fails(errno.ENOENT, FileOp.READ_DIR, path=fs.p("missing"))
    # a directory symlink is followed
    assert fs.ok(FileOp.READ_DIR, path=fs.p("zlink")).entries == []


def test_read_dir_too_big_for_one_reply(fs: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(20):
        (fs.base / f"file{i:02d}").write_bytes(b"")
    monkeypatch.setattr(fileops_mod, "MAX_DIR_REPLY_BYTES", 10 * 130)
    fs.fails(errno.EOVERFLOW, FileOp.READ_DIR, path=fs.p("."))


def test_mkdir(fs: Client) -> None:
    old = os.umask(0o022)
    try:
        fs.ok(FileOp.MKDIR, path=fs.p("d"))  # mode 0: Go callers mean 0o777
        fs.ok(FileOp.MKDIR, path=fs.p("private"), mode=0o700)
        fs.ok(FileOp.MKDIR, path=fs.p("shared"), mode=MODE_DIR | MODE_STICKY | 0o777)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(fs.base / "d").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(fs.base / "private").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(fs.base / "shared").st_mode) == 0o1755  # like /tmp
    fs.fails(errno.EEXIST, FileOp.MKDIR, path=fs.p("d"))
    fs.fails(errno.ENOENT, FileOp.MKDIR, path=fs.p("no/such/parent"))
    (fs.base / "f").write_bytes(b"")
    fs.fails(errno.ENOTDIR, FileOp.MKDIR, path=fs.p("f/sub"))
    fs.fails(errno.ENOENT, FileOp.MKDIR, path="")


def test_mkdir_all(fs: Client) -> None:
    fs.ok(FileOp.MKDIR_ALL, path=fs.p("a/b/c"), mode=0o750)
    assert (fs.base / "a/b/c").is_dir()
    assert stat.S_IMODE(os.stat(fs.base / "a/b").st_mode) == 0o750
    fs.ok(FileOp.MKDIR_ALL, path=fs.p("a/b/c"))  # exists: fine
    fs.ok(FileOp.MKDIR_ALL, path=fs.p("a//b/d/"))
    assert (fs.base / "a/b/d").is_dir()
    (fs.base / "a/f").write_bytes(b"")
    fs.fails(errno.ENOTDIR, FileOp.MKDIR_ALL, path=fs.p("a/f"))
    fs.fails(errno.ENOTDIR, FileOp.MKDIR_ALL, path=fs.p("a/f/g/h"))
    fs.fails(errno.ENOENT, FileOp.MKDIR_ALL, path="")


def test_remove(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"")
    (fs.base / "empty").mkdir()
    (fs.base / "full").mkdir()
    (fs.base / "full/x").write_bytes(b"")
    os.symlink("full", fs.base / "link")
    fs.ok(FileOp.REMOVE, path=fs.p("f"))
    fs.ok(FileOp.REMOVE, path=fs.p("empty"))
    assert not (fs.base / "f").exists() and not (fs.base / "empty").exists()
    fs.fails(errno.ENOTEMPTY, FileOp.REMOVE, path=fs.p("full"))
    fs.fails(errno.ENOENT, FileOp.REMOVE, path=fs.p("f"))
    fs.fails(errno.ENOTDIR, FileOp.REMOVE, path=fs.p("full/x/y"))
    fs.ok(FileOp.REMOVE, path=fs.p("link"))  # the link, not its target
    assert (fs.base / "full/x").exists() and not (fs.base / "link").is_symlink()


def test_rename(fs: Client) -> None:
    (fs.base / "a").write_bytes(b"A")
    (fs.base / "b").write_bytes(b"B")
    (fs.base / "d").mkdir()
    (fs.base / "e").mkdir()
    fs.ok(FileOp.RENAME, path=fs.p("a"), new_path=fs.p("b"))  # replaces a file
    assert (fs.base / "b").read_bytes() == b"A" and not (fs.base / "a").exists()
    fs.ok(FileOp.RENAME, path=fs.p("b"), new_path=fs.p("d/moved"))
    assert (fs.base / "d/moved").read_bytes() == b"A"
    fs.fails(errno.EEXIST, FileOp.RENAME, path=fs.p("d/moved"), new_path=fs.p("e"))
    fs.fails(errno.EEXIST, FileOp.RENAME, path=fs.p("d"), new_path=fs.p("e"))  # Go, not rename(2)
    fs.fails(errno.ENOENT, FileOp.RENAME, path=fs.p("missing"), new_path=fs.p("x"))
    fs.fails(errno.ENOENT, FileOp.RENAME, path=fs.p("missing"), new_path=fs.p("e"))
    fs.fails(errno.ENOENT, FileOp.RENAME, path=fs.p("d/moved"), new_path="")
    fs.fails(errno.EINVAL, FileOp.RENAME, path=fs.p("d"), new_path=fs.p("d/inside"))


def test_chmod(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"")
    (fs.base / "d").mkdir()
    os.symlink("f", fs.base / "link")
    fs.ok(FileOp.CHMOD, path=fs.p("link"), mode=0o640)  # follows the link
    assert stat.S_IMODE(os.stat(fs.base / "f").st_mode) == 0o640
    fs.ok(FileOp.CHMOD, path=fs.p("f"), mode=MODE_SETUID | MODE_SETGID | 0o755)
    assert stat.S_IMODE(os.stat(fs.base / "f").st_mode) == 0o6755
    fs.ok(FileOp.CHMOD, path=fs.p("d"), mode=MODE_DIR | MODE_STICKY | 0o777)
    assert stat.S_IMODE(os.stat(fs.base / "d").st_mode) == 0o1777
    st_ = fs.ok(FileOp.STAT, path=fs.p("d")).stat
    assert st_ is not None and format_mode(st_.mode) == "dtrwxrwxrwx"
    fs.ok(FileOp.CHMOD, path=fs.p("f"))  # mode 0 is taken literally
    assert stat.S_IMODE(os.stat(fs.base / "f").st_mode) == 0
    fs.fails(errno.ENOENT, FileOp.CHMOD, path=fs.p("missing"), mode=0o644)


def test_truncate(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"0123456789")
    (fs.base / "d").mkdir()
    fs.ok(FileOp.TRUNCATE, path=fs.p("f"), size=4)
    assert (fs.base / "f").read_bytes() == b"0123"
    fs.ok(FileOp.TRUNCATE, path=fs.p("f"), size=6)
    assert (fs.base / "f").read_bytes() == b"0123\0\0"
    fs.ok(FileOp.TRUNCATE, path=fs.p("f"))  # size 0
    assert (fs.base / "f").read_bytes() == b""
    fs.fails(errno.EINVAL, FileOp.TRUNCATE, path=fs.p("f"), size=-5)
    fs.fails(errno.ENOENT, FileOp.TRUNCATE, path=fs.p("missing"), size=1)
    fs.fails(errno.EISDIR, FileOp.TRUNCATE, path=fs.p("d"), size=1)


def test_getwd(fs: Client) -> None:
    resp = fs.ok(FileOp.GETWD)
    assert resp.path == (os.path.realpath(fs.base) if fs.confined else os.getcwd())


def test_readlink_symlink_link(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"data")
    (fs.base / "d").mkdir()
    fs.ok(FileOp.SYMLINK, path="f", new_path=fs.p("s"))
    assert os.readlink(fs.base / "s") == "f"
    assert fs.ok(FileOp.READLINK, path=fs.p("s")).path == "f"
    fs.fails(errno.EEXIST, FileOp.SYMLINK, path="f", new_path=fs.p("s"))
    fs.fails(errno.ENOENT, FileOp.SYMLINK, path="f", new_path=fs.p("no/dir/s"))
    fs.fails(errno.EINVAL, FileOp.READLINK, path=fs.p("f"))
    fs.fails(errno.ENOENT, FileOp.READLINK, path=fs.p("missing"))
    fs.ok(FileOp.LINK, path=fs.p("f"), new_path=fs.p("hard"))
    assert os.stat(fs.base / "hard").st_nlink == 2
    assert os.path.samefile(fs.base / "hard", fs.base / "f")
    fs.ok(FileOp.LINK, path=fs.p("s"), new_path=fs.p("hard-s"))  # links the symlink itself
    assert os.readlink(fs.base / "hard-s") == "f"
    fs.fails(errno.EEXIST, FileOp.LINK, path=fs.p("f"), new_path=fs.p("hard"))
    fs.fails(errno.ENOENT, FileOp.LINK, path=fs.p("missing"), new_path=fs.p("x"))
    fs.fails(errno.EPERM, FileOp.LINK, path=fs.p("d"), new_path=fs.p("dlink"))


def test_chown(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"")
    uid, gid = (1234, 5678) if IS_ROOT else (os.getuid(), os.getgid())
    fs.ok(FileOp.CHOWN, path=fs.p("f"), uid=uid, gid=gid)
    st_ = os.stat(fs.base / "f")
    assert (st_.st_uid, st_.st_gid) == (uid, gid)
    fs.ok(FileOp.CHOWN, path=fs.p("f"), uid=0xFFFF_FFFF, gid=0xFFFF_FFFF)  # Go's -1: unchanged
    st_ = os.stat(fs.base / "f")
    assert (st_.st_uid, st_.st_gid) == (uid, gid)
    fs.fails(errno.ENOENT, FileOp.CHOWN, path=fs.p("missing"), uid=uid, gid=gid)


def test_chtimes(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"")
    os.symlink("f", fs.base / "link")
    at, mt = 1_600_000_000_123_456_789, 1_700_000_000_987_654_321
    fs.ok(FileOp.CHTIMES, path=fs.p("link"), atime_nanos=at, mtime_nanos=mt)
    st_ = os.stat(fs.base / "f")
    assert (st_.st_atime_ns, st_.st_mtime_ns) == (at, mt)
    fs.fails(errno.ENOENT, FileOp.CHTIMES, path=fs.p("missing"), atime_nanos=at)


def test_statfs(fs: Client) -> None:
    sf = fs.ok(FileOp.STATFS, path=fs.p(".")).statfs
    real = os.statvfs(fs.base)
    assert sf is not None
    assert (sf.blocks, sf.files, sf.bsize, sf.frsize, sf.name_len) == (
        real.f_blocks,
        real.f_files,
        real.f_bsize,
        real.f_frsize,
        real.f_namemax,
    )
    assert sf.bavail <= sf.bfree <= sf.blocks
    fs.fails(errno.ENOENT, FileOp.STATFS, path=fs.p("missing"))


def test_unknown_op_is_enosys(fs: Client) -> None:
    for op in (0, 26, 255):
        resp = fs.fails(errno.ENOSYS, op, path=fs.p("x"))
        assert f"unknown file op {op}" in resp.err_msg


def test_error_messages_read_like_go(fs: Client) -> None:
    resp = fs.fails(errno.ENOENT, FileOp.STAT, path=fs.p("missing"))
    assert resp.err_msg == f"stat {fs.p('missing')}: no such file or directory"
    resp = fs.fails(errno.EBADF, FileOp.READ_AT, handle=7, size=1)
    assert resp.err_msg == "read handle 7: bad file handle"


def test_every_op_is_served() -> None:
    server = FileOpServer()
    for op in FileOp:
        resp = server.handle(FileOpReq(req_id=1, op=op))
        assert resp.errno != errno.ENOSYS, op


# --- permissions (the tests run as root, so EACCES comes from an unprivileged child) ---


def test_eacces_for_an_unprivileged_server() -> None:
    # pytest's tmp_path is private to root: use a directory anyone may traverse
    with tempfile.TemporaryDirectory(prefix="fileops-eacces-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir()
        (locked / "f").write_bytes(b"secret")
        locked.chmod(0o000)
        script = textwrap.dedent(
            f"""
            import os
            from agentproto import FileOp, FileOpReq
            from agentproto.fileops import FileOpServer
            if os.geteuid() == 0:  # drop privileges after importing (the venv may be root-only)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            s = FileOpServer()
            def errno_of(op, path):
                return s.handle(FileOpReq(req_id=1, op=op, path=path)).errno
            print([
                errno_of(FileOp.READ_DIR, {str(base)!r}),
                errno_of(FileOp.OPEN, {str(locked / "f")!r}),
                errno_of(FileOp.READ_DIR, {str(locked)!r}),
                errno_of(FileOp.MKDIR, {str(locked / "d")!r}),
                errno_of(FileOp.CHOWN, "/"),
            ])
            """
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
            )
        finally:
            locked.chmod(0o755)
    assert out.returncode == 0, out.stderr
    expected = [0, errno.EACCES, errno.EACCES, errno.EACCES, errno.EPERM]
    assert out.stdout.strip() == str(expected)


# --- confinement ----------------------------------------------------------------------


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[Client]:
    root = tmp_path / "jail"
    root.mkdir()
    (tmp_path / "secret").write_bytes(b"outside")
    (root / "inside").write_bytes(b"inside")
    (root / "d").mkdir()
    server = FileOpServer(root)
    yield Client(server, root, confined=True)
    server.close_all()


def test_confined_paths_are_relative_to_root(jail: Client, tmp_path: Path) -> None:
    resp = jail.ok(FileOp.STAT, path="inside")
    assert resp.stat is not None and resp.stat.size == 6
    resp = jail.ok(FileOp.STAT, path=str(jail.base / "inside"))  # absolute, under the root
    assert resp.stat is not None and resp.stat.size == 6
    assert jail.ok(FileOp.STAT, path="d/../inside").stat is not None
    names = [e.stat.name for e in jail.ok(FileOp.READ_DIR, path=str(jail.base)).entries]
    assert names == ["d", "inside"]
    assert jail.ok(FileOp.STAT, path=".").stat is not None
    assert jail.ok(FileOp.GETWD).path == str(jail.base)


@pytest.mark.parametrize(
    ("op", "fields"),
    [
        (FileOp.STAT, {"path": "../secret"}),
        (FileOp.STAT, {"path": "d/../../secret"}),
        (FileOp.STAT, {"path": ".."}),
        (FileOp.OPEN, {"path": "../secret"}),
        (FileOp.CREATE, {"path": "../new"}),
        (FileOp.READ_DIR, {"path": "/"}),
        (FileOp.READ_DIR, {"path": "/etc"}),
        (FileOp.REMOVE, {"path": "../secret"}),
        (FileOp.RENAME, {"path": "inside", "new_path": "../stolen"}),
        (FileOp.RENAME, {"path": "../secret", "new_path": "here"}),
        (FileOp.LINK, {"path": "../secret", "new_path": "here"}),
        (FileOp.SYMLINK, {"path": "x", "new_path": "../planted"}),
        (FileOp.CHMOD, {"path": "../secret", "mode": 0o777}),
        (FileOp.MKDIR_ALL, {"path": "../a/b"}),
        (FileOp.STATFS, {"path": "/"}),
    ],
)
def test_confinement_refuses_paths_outside(
    jail: Client, tmp_path: Path, op: FileOp, fields: dict[str, Any]
) -> None:
    for key in ("path", "new_path"):
        if fields.get(key) == "../secret":
            # also the same file named absolutely
            absolute = dict(fields, **{key: str(tmp_path / "secret")})
            jail.fails(errno.EACCES, op, **absolute)
    jail.fails(errno.EACCES, op, **fields)
    assert sorted(os.listdir(tmp_path)) == ["jail", "secret"]
    assert (tmp_path / "secret").read_bytes() == b"outside"
    assert stat.S_IMODE(os.stat(tmp_path / "secret").st_mode) != 0o777


def test_symlinks_cannot_leave_the_root(jail: Client, tmp_path: Path) -> None:
    os.symlink("../secret", jail.base / "rel-out")
    os.symlink(str(tmp_path / "secret"), jail.base / "abs-out")
    os.symlink(str(tmp_path), jail.base / "dir-out")
    os.symlink("/", jail.base / "slash")
    os.symlink(str(tmp_path / "nothing-yet"), jail.base / "dangling-out")
    for name in ("rel-out", "abs-out", "dir-out/secret", "slash/etc/passwd", "dangling-out"):
        jail.fails(errno.EACCES, FileOp.OPEN, path=name)
        jail.fails(errno.EACCES, FileOp.STAT, path=name)
    jail.fails(errno.EACCES, FileOp.CREATE, path="dangling-out")
    jail.fails(errno.EACCES, FileOp.OPEN, path="dangling-out", flags=os.O_CREAT | os.O_WRONLY)
    jail.fails(errno.EACCES, FileOp.CHTIMES, path="rel-out")
    jail.fails(errno.EACCES, FileOp.TRUNCATE, path="abs-out")
    jail.fails(errno.EACCES, FileOp.MKDIR, path="dir-out/new")
    jail.fails(errno.EACCES, FileOp.READ_DIR, path="dir-out")
    assert not (tmp_path / "nothing-yet").exists()
    assert (tmp_path / "secret").read_bytes() == b"outside"
    # the links themselves live inside and can be inspected and removed
    assert jail.ok(FileOp.READLINK, path="abs-out").path == str(tmp_path / "secret")
    lst = jail.ok(FileOp.LSTAT, path="rel-out").stat
    assert lst is not None and lst.mode & MODE_SYMLINK
    jail.ok(FileOp.REMOVE, path="rel-out")
    assert (tmp_path / "secret").exists()


def test_symlinks_inside_the_root_work(jail: Client) -> None:
    os.symlink(str(jail.base / "d"), jail.base / "abs-in")
    os.symlink("d/../inside", jail.base / "rel-in")
    os.symlink(".", jail.base / "self")
    assert jail.ok(FileOp.STAT, path="rel-in").stat is not None
    assert jail.ok(FileOp.STAT, path="self/self/inside").stat is not None
    jail.ok(FileOp.CREATE, path="abs-in/new")
    assert (jail.base / "d/new").exists()
    assert jail.ok(FileOp.STAT, path="self").stat.is_dir  # type: ignore[union-attr]


def test_symlink_loops_are_eloop(jail: Client) -> None:
    os.symlink("b", jail.base / "a")
    os.symlink("a", jail.base / "b")
    os.symlink("loop/x", jail.base / "loop")
    jail.fails(errno.ELOOP, FileOp.STAT, path="a")
    jail.fails(errno.ELOOP, FileOp.OPEN, path="loop")
    jail.fails(errno.ELOOP, FileOp.STAT, path="a/x")
    assert jail.ok(FileOp.LSTAT, path="a").stat is not None


def test_root_named_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real/f").write_bytes(b"f")
    os.symlink("real", tmp_path / "alias")
    server = FileOpServer(tmp_path / "alias")
    for path in ("f", str(tmp_path / "alias/f"), str(tmp_path / "real/f")):
        assert server.handle(FileOpReq(req_id=1, op=FileOp.STAT, path=path)).errno == 0
    assert server.root == str(tmp_path / "real")


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        FileOpServer(tmp_path / "f")
    with pytest.raises(NotADirectoryError):
        FileOpServer(tmp_path / "missing")


def test_confined_ops_leak_no_descriptors(jail: Client) -> None:
    os.symlink("b", jail.base / "a")
    os.symlink("a", jail.base / "b")
    before = open_fds()
    for _ in range(3):
        jail(FileOp.STAT, path="d/../inside")
        jail(FileOp.STAT, path="a")
        jail(FileOp.STAT, path="../x")
        jail(FileOp.STAT, path="inside/x/y")
        jail(FileOp.READ_DIR, path="d")
        jail(FileOp.MKDIR_ALL, path="m/n/o")
        jail(FileOp.STATFS, path="d")
        jail(FileOp.TRUNCATE, path="inside", size=6)
    assert open_fds() == before


# --- concurrency -----------------------------------------------------------------------


def test_concurrent_requests(fs: Client) -> None:
    def worker(i: int) -> None:
        name = fs.p(f"w{i}")
        handle = fs.ok(FileOp.CREATE, path=name).handle
        for j in range(20):
            fs.ok(FileOp.WRITE_AT, handle=handle, offset=j * 4, data=f"{j:04d}".encode())
        fs.ok(FileOp.CLOSE, handle=handle)
        handle = fs.ok(FileOp.OPEN, path=name).handle
        data = fs.ok(FileOp.READ_AT, handle=handle, size=1000).data
        assert data == b"".join(f"{j:04d}".encode() for j in range(20))
        fs.ok(FileOp.CLOSE, handle=handle)
        fs.ok(FileOp.STAT, path=name)

    before = open_fds()
    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(worker, i) for i in range(16)]:
            future.result(timeout=60)
    assert fs.server.open_handles == 0
    assert open_fds() == before


def test_close_while_reading_is_safe(fs: Client) -> None:
    (fs.base / "f").write_bytes(b"x" * 65536)
    handle = fs.ok(FileOp.OPEN, path=fs.p("f")).handle
    before = open_fds()
    results: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            resp = fs.server.handle(
                FileOpReq(req_id=1, op=FileOp.READ_AT, handle=handle, size=4096)
            )
            results.append(resp.errno)
            if resp.errno:
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    fs.ok(FileOp.CLOSE, handle=handle)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert set(results) <= {0, errno.EBADF}
    assert open_fds() == before - 1  # the fd is gone once every reader is done


# --- hostile requests ---------------------------------------------------------------------

_names = st.sampled_from(["", ".", "..", "a", "a/b", "../x", "/", "/etc", "l", "l/x", "d/"])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    op=st.integers(0, 30),
    path=_names,
    new_path=_names,
    flags=st.sampled_from([0, os.O_WRONLY | os.O_CREAT, os.O_RDWR, os.O_DIRECTORY, -1]),
    mode=st.integers(0, 0xFFFF_FFFF),
    handle=st.integers(0, 5),
    offset=st.integers(-(2**63), 2**63 - 1),
    size=st.one_of(st.integers(-5, 100), st.integers(-(2**63), 2**63 - 1)),
    times=st.integers(-(2**63), 2**63 - 1),
)
def test_handle_never_raises(
    op: int,
    path: str,
    new_path: str,
    flags: int,
    mode: int,
    handle: int,
    offset: int,
    size: int,
    times: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        (root / "a").mkdir()
        os.symlink("..", root / "l")
        server = FileOpServer(root)
        server.handle(FileOpReq(req_id=1, op=FileOp.CREATE, path="a/b"))
        req = FileOpReq(
            req_id=7,
            op=op,
            path=path,
            new_path=new_path,
            flags=flags,
            mode=mode,
            uid=os.getuid(),
            gid=os.getgid(),
            handle=handle,
            offset=offset,
            size=size,
            atime_nanos=times,
            mtime_nanos=times,
            data=b"data",
        )
        resp = server.handle(req)
        assert resp.req_id == 7
        FileOpResp.from_cbor(resp.to_cbor())
        server.close_all()
        assert os.listdir(tmp) == ["root"]


def test_requests_with_odd_values_get_errno(fs: Client) -> None:
    calls: list[Callable[[], FileOpResp]] = [
        lambda: fs(FileOp.CHTIMES, path=fs.p("."), atime_nanos=2**63 - 1, mtime_nanos=-(2**63)),
        lambda: fs(FileOp.TRUNCATE, path=fs.p("x"), size=2**63 - 1),
        lambda: fs(FileOp.OPEN, path=fs.p("x"), flags=-1),
    ]
    for call in calls:
        resp = call()
        assert isinstance(resp, FileOpResp)


def test_confined_mkdir_all_through_a_symlink_leading_out_is_eacces(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "out").symlink_to(outside)
    server = FileOpServer(str(root))
    try:
        for path in ("out", "out/new/deeper"):
            resp = server.handle(FileOpReq(req_id=1, op=FileOp.MKDIR_ALL, path=path))
            assert resp.errno == errno.EACCES, (errno.errorcode.get(resp.errno), resp.err_msg)
        assert list(outside.iterdir()) == []
    finally:
        server.close_all()


# --- the Stat answer without dataclasses (FileOpServer.answer) -------------------------------

_I64 = 1 << 63
_nanos = st.one_of(st.just(0), st.integers(-_I64, _I64 - 1), st.integers(_I64, 1 << 70))


@given(
    mode=st.integers(0, 0o177777),
    ints=st.lists(st.one_of(st.just(0), st.integers(1, (1 << 32) - 1)), min_size=6, max_size=6),
    big=st.lists(st.one_of(st.just(0), st.integers(1, (1 << 63) - 1)), min_size=3, max_size=3),
    times=st.lists(_nanos, min_size=3, max_size=3),
    name=st.text(max_size=20),
)
def test_stat_map_is_file_stat_to_map(
    mode: int, ints: list[int], big: list[int], times: list[int], name: str
) -> None:
    nlink, uid, gid, rdev, blksize, dev = ints
    size, blocks, ino = big
    st_ = os.stat_result(
        (mode, ino, dev, nlink, uid, gid, size, 0, 0, 0),
        {
            "st_atime_ns": times[0],
            "st_mtime_ns": times[1],
            "st_ctime_ns": times[2],
            "st_blocks": blocks,
            "st_blksize": blksize,
            "st_rdev": rdev,
        },
    )
    fast = stat_map(name, st_)
    if all(-_I64 <= t < _I64 for t in times):
        assert fast is not None
        assert cbor2.dumps(fast) == file_stat(name, st_).to_cbor()
    else:  # a time Go cannot hold: the checked path must refuse it, so the fast one stands back
        assert fast is None
        with pytest.raises(LocalProtocolError):
            file_stat(name, st_).to_cbor()


def test_answer_of_a_time_go_cannot_hold_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {"st_atime_ns": 0, "st_mtime_ns": 1 << 64, "st_ctime_ns": 0}
    fields |= {"st_blocks": 0, "st_blksize": 4096, "st_rdev": 0}
    far = os.stat_result((0o100644, 1, 1, 1, 0, 0, 0, 0, 0, 0), fields)
    server = FileOpServer()
    monkeypatch.setattr(server, "_stat_result", lambda path, follow: far)
    req = FileOpReq(req_id=9, op=FileOp.STAT, path=str(tmp_path))
    with pytest.raises(LocalProtocolError):
        server.handle(req).to_cbor()
    resp = FileOpResp.from_cbor(server.answer(req))  # an answer all the same, not an exception
    assert (resp.req_id, resp.errno, resp.stat) == (9, errno.EINVAL, None)
    assert resp.err_msg.startswith("stat ") and "st.t" in resp.err_msg


def test_read_dir_answer_with_a_time_go_cannot_hold_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {"st_atime_ns": 1, "st_mtime_ns": 2, "st_ctime_ns": 3}
    fields |= {"st_blocks": 8, "st_blksize": 4096, "st_rdev": 0}
    fine = os.stat_result((0o100644, 1, 1, 1, 0, 0, 5, 0, 0, 0), fields)
    far = os.stat_result((0o40755, 2, 1, 2, 0, 0, 0, 0, 0, 0), fields | {"st_ctime_ns": -(1 << 64)})
    server = FileOpServer()
    req = FileOpReq(req_id=4, op=FileOp.READ_DIR, path=str(tmp_path))
    monkeypatch.setattr(server, "_dir_listing", lambda req: [("a", fine), ("d", fine)])
    assert server.answer(req) == server.handle(req).to_cbor()
    monkeypatch.setattr(server, "_dir_listing", lambda req: [("a", fine), ("d", far)])
    resp = FileOpResp.from_cbor(server.answer(req))
    assert (resp.req_id, resp.errno, resp.entries) == (4, errno.EINVAL, [])
    assert "en" in resp.err_msg


@pytest.mark.parametrize("op", [FileOp.GETWD, FileOp.CLOSE, FileOp.STATFS, 99])
def test_answer_of_other_ops_is_handle_s(tmp_path: Path, op: int) -> None:
    server = FileOpServer()
    req = FileOpReq(req_id=5, op=op, path=str(tmp_path), handle=3)
    assert server.answer(req) == server.handle(req).to_cbor()
