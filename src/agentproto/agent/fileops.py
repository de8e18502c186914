"""The agent side of file-op RPCs: :class:`FileOpServer` (Go's ``FileOpServer``).

Each :class:`~agentproto.types.FileOpReq` is carried out with the matching
``os`` primitive and answered with a :class:`~agentproto.types.FileOpResp`;
failures travel as a Linux errno plus a Go-style message (``open /x: no such
file or directory``). :meth:`FileOpServer.handle` never raises.

Semantics follow Go's ``os`` package on Linux, which is what the Go agent
calls. Where the wire cannot say what Go's API could, these choices hold:

- ``mode`` is a Go ``os.FileMode`` (see :mod:`agentproto.filemode`). It is
  ``omitempty`` on the wire, so 0 means "not given": files are created 0o666
  and directories 0o777 (before the umask), as ``os.Create``/``os.MkdirAll``
  callers usually ask. Chmod takes 0 literally.
- ``flags`` of Open/OpenFile are Linux ``open(2)`` flags (Go's ``os.O_*``);
  ``O_CLOEXEC`` is always added. Create is ``O_WRONLY|O_CREAT|O_TRUNC``.
- ReadAt reads at most :data:`MAX_READ_SIZE` (4 MiB) per request, whatever
  ``size`` asks, so a hostile size cannot exhaust memory; ``n`` says how many
  bytes came back and ``eof`` is true when the read reached the end of the
  file (a short read, or ``offset + n`` at or past the size of a regular file).
- ReadDir lists like Go's ``os.ReadDir`` plus ``Info()``: sorted by name,
  ``lstat`` of each entry, entries that vanish meanwhile skipped. A listing
  too big for one reply (over :data:`MAX_DIR_REPLY_BYTES`) fails with EOVERFLOW.
- Remove is ``os.Remove`` (file or empty directory); Rename onto an existing
  directory is EEXIST like Go's; MkdirAll is Go's algorithm (ENOTDIR when a
  path element is a file); Link does not follow a symlink (``link(2)``).
- Chown uid/gid ``0xFFFFFFFF`` (Go's ``-1``) leave that id unchanged;
  Chtimes sets both times as given (0 is the Unix epoch).
- An unknown op is ENOSYS; a bad or closed handle EBADF; a negative offset
  or size EINVAL; an empty path ENOENT; an error that is not an ``OSError``
  EINVAL (bad argument) or EIO (anything else).

Confinement (off by default, like Go's): ``FileOpServer(root=...)`` serves
only the tree under ``root``. Relative paths are relative to ``root`` (which
is also what Getwd answers); absolute paths must name ``root`` or something
under it. Paths are resolved one component at a time with ``O_NOFOLLOW`` and
``*at`` system calls, following symlinks in user space, so neither ``..`` nor
a symlink (absolute targets are real paths and must lie under ``root``) can
leave the tree: any such path fails with EACCES. Symlink chains longer than
40 are ELOOP, as in the kernel. The final object is then used through its
parent directory's descriptor with symlinks not followed, which leaves no
window for a swapped-in symlink to point outside.
"""

from __future__ import annotations

import errno as errno_
import fcntl
import os
import stat as stat_
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ..errors import LocalProtocolError
from ..filemode import from_stat, to_posix
from ..types import FileDirEntry, FileOp, FileOpReq, FileOpResp, FileStat, FileStatfs
from ..wire import WireKeys

__all__ = [
    "DEFAULT_DIR_PERM",
    "DEFAULT_FILE_PERM",
    "MAX_DIR_REPLY_BYTES",
    "MAX_READ_SIZE",
    "FileOpServer",
    "file_stat",
]

MAX_READ_SIZE = 4 * 1024 * 1024
# A ReadDir reply must fit a frame (8 MiB by default) and Go's decoder limits.
MAX_DIR_REPLY_BYTES = 6 * 1024 * 1024
DEFAULT_FILE_PERM = 0o666
DEFAULT_DIR_PERM = 0o777
MAX_SYMLINKS = 40  # Linux's MAXSYMLINKS
_UNCHANGED_ID = 0xFFFF_FFFF  # Go's -1 as a uint32
_HANDLE_LIMIT = 0xFFFF_FFFF
# Upper bound of one encoded FileDirEntry without its name (all 14 fields set).
_DIR_ENTRY_OVERHEAD = 120

# Go's PathError "Op" words, for messages like "open /x: permission denied".
_OP_WORDS = {
    FileOp.OPEN: "open",
    FileOp.CREATE: "open",
    FileOp.OPEN_FILE: "open",
    FileOp.CLOSE: "close",
    FileOp.READ_AT: "read",
    FileOp.WRITE_AT: "write",
    FileOp.STAT: "stat",
    FileOp.LSTAT: "lstat",
    FileOp.READ_DIR: "readdir",
    FileOp.MKDIR: "mkdir",
    FileOp.MKDIR_ALL: "mkdir",
    FileOp.REMOVE: "remove",
    FileOp.RENAME: "rename",
    FileOp.CHMOD: "chmod",
    FileOp.TRUNCATE: "truncate",
    FileOp.GETWD: "getwd",
    FileOp.FSYNC: "sync",
    FileOp.READLINK: "readlink",
    FileOp.SYMLINK: "symlink",
    FileOp.LINK: "link",
    FileOp.CHOWN: "chown",
    FileOp.CHTIMES: "chtimes",
    FileOp.STATFS: "statfs",
    FileOp.FSTAT: "stat",
    FileOp.FTRUNCATE: "truncate",
}


class _OpError(Exception):
    """A failure the server detects itself: an errno and what to say about it."""

    def __init__(self, errno: int, detail: str = ""):
        super().__init__(errno, detail)
        self.errno = errno
        self.detail = detail


def _strerror(errno: int) -> str:
    # Go's syscall.Errno strings are glibc's with a lower-case first letter.
    text = os.strerror(errno)
    return text[:1].lower() + text[1:]


def go_base(path: str) -> str:
    """The last element of ``path`` like Go's ``filepath.Base`` (what ``FileInfo.Name()`` is)."""
    if not path:
        return "."
    path = path.rstrip("/")
    if not path:
        return "/"
    return path.rsplit("/", 1)[-1]


def _go_parent(path: str) -> str | None:
    """The parent MkdirAll creates first, as Go's algorithm finds it (None at the top)."""
    i = len(path)
    while i > 0 and path[i - 1] == "/":
        i -= 1
    j = i
    while j > 0 and path[j - 1] != "/":
        j -= 1
    return path[: j - 1] if j > 1 else None


def _safe_text(name: str) -> str:
    # Undecodable file names (surrogate escapes) cannot go into a CBOR text string.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name


_STAT_KEYS = WireKeys(FileStat)
_RESP_KEYS = WireKeys(FileOpResp)
_ENTRY_KEYS = WireKeys(FileDirEntry)
(_K_NAME, _K_SIZE, _K_MODE, _K_MTIME, _K_ATIME, _K_CTIME, _K_UID, _K_GID) = (
    _STAT_KEYS.name,
    _STAT_KEYS.size,
    _STAT_KEYS.mode,
    _STAT_KEYS.mtime_nanos,
    _STAT_KEYS.atime_nanos,
    _STAT_KEYS.ctime_nanos,
    _STAT_KEYS.uid,
    _STAT_KEYS.gid,
)
(_K_NLINK, _K_RDEV, _K_BLOCKS, _K_BLKSIZE, _K_INO, _K_DIR) = (
    _STAT_KEYS.nlink,
    _STAT_KEYS.rdev,
    _STAT_KEYS.blocks,
    _STAT_KEYS.blksize,
    _STAT_KEYS.ino,
    _STAT_KEYS.is_dir,
)
_I64 = 1 << 63


def stat_map(name: str, st: os.stat_result) -> dict[str, Any] | None:
    """``file_stat(name, st).to_map()`` built straight from ``st`` (the Stat hot path).

    None when a time does not fit Go's int64 nanoseconds (far-future mtimes):
    then :func:`file_stat` and its checks must say so. Written out field by
    field, in declaration order, omitting zeros (``omitempty``): a loop over
    the fields costs more than the rest of a Stat answer.
    """
    mt, at, ct = st.st_mtime_ns, st.st_atime_ns, st.st_ctime_ns
    if not (-_I64 <= mt < _I64 and -_I64 <= at < _I64 and -_I64 <= ct < _I64):
        return None
    mode = st.st_mode
    m: dict[str, Any] = {
        _K_NAME: name if name.isascii() else _safe_text(name),
        _K_SIZE: st.st_size,
        _K_MODE: from_stat(mode),
    }
    if mt:
        m[_K_MTIME] = mt
    if at:
        m[_K_ATIME] = at
    if ct:
        m[_K_CTIME] = ct
    if v := st.st_uid:
        m[_K_UID] = v
    if v := st.st_gid:
        m[_K_GID] = v
    if v := st.st_nlink & 0xFFFF_FFFF:
        m[_K_NLINK] = v
    if v := st.st_rdev & 0xFFFF_FFFF:
        m[_K_RDEV] = v
    if v := st.st_blocks:
        m[_K_BLOCKS] = v
    if v := st.st_blksize & 0xFFFF_FFFF:
        m[_K_BLKSIZE] = v
    if v := st.st_ino:
        m[_K_INO] = v
    if stat_.S_ISDIR(mode):
        m[_K_DIR] = True
    return m


def file_stat(name: str, st: os.stat_result) -> FileStat:
    """Build the wire :class:`FileStat` of ``st``, named ``name`` (a base name)."""
    return FileStat(
        name=_safe_text(name),
        size=st.st_size,
        mode=from_stat(st.st_mode),
        mtime_nanos=st.st_mtime_ns,
        atime_nanos=st.st_atime_ns,
        ctime_nanos=st.st_ctime_ns,
        uid=st.st_uid,
        gid=st.st_gid,
        nlink=st.st_nlink & 0xFFFF_FFFF,
        rdev=st.st_rdev & 0xFFFF_FFFF,
        blocks=st.st_blocks,
        blksize=st.st_blksize & 0xFFFF_FFFF,
        ino=st.st_ino,
        is_dir=stat_.S_ISDIR(st.st_mode),
    )


@dataclass(slots=True)
class _OpenFile:
    """An open handle: the fd, the name it was opened with, and who is using it."""

    fd: int
    name: str
    users: int = 0
    closed: bool = False


@dataclass(slots=True)
class _Location:
    """Where an op acts: ``name`` inside ``dir_fd`` (None: relative to the cwd).

    ``follow`` is whether the system call itself should follow a final symlink:
    unconfined, the op's own choice; confined, never (the walk already did).
    """

    dir_fd: int | None
    name: str
    follow: bool
    fds: list[int] = field(default_factory=list)


class FileOpServer:
    """Serve file-op RPCs against the local file system (Go's ``FileOpServer``).

    Stateful: Open/Create/OpenFile return small uint32 handles (from 1) that
    ReadAt, WriteAt, Fstat, Fsync, Ftruncate and Close refer to; they belong to
    this server. Thread-safe: the agent may serve many requests at once, and a
    handle closed while another request still uses it is released when that
    request ends. ``root`` confines every path to one tree (see the module
    documentation). Call :meth:`close_all` when the connection ends.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self._lock = threading.Lock()
        self._handles: dict[int, _OpenFile] = {}
        self._next_handle = 1
        self._root: str | None = None
        self._root_prefixes: list[list[str]] = []
        if root is not None:
            given = os.path.abspath(os.fspath(root))
            real = os.path.realpath(given)
            if not os.path.isdir(real):
                raise NotADirectoryError(errno_.ENOTDIR, "file-op root is not a directory", given)
            self._root = real
            # The root may be named by its real path or as given (through a symlink).
            self._root_prefixes = [_components(real)]
            if given != real:
                self._root_prefixes.append(_components(given))
        self._ops: dict[int, Callable[[FileOpReq], FileOpResp]] = {
            FileOp.OPEN: self._open,
            FileOp.CREATE: self._create,
            FileOp.OPEN_FILE: self._open,
            FileOp.CLOSE: self._close,
            FileOp.READ_AT: self._read_at,
            FileOp.WRITE_AT: self._write_at,
            FileOp.STAT: self._stat,
            FileOp.LSTAT: self._lstat,
            FileOp.READ_DIR: self._read_dir,
            FileOp.MKDIR: self._mkdir,
            FileOp.MKDIR_ALL: self._mkdir_all,
            FileOp.REMOVE: self._remove,
            FileOp.RENAME: self._rename,
            FileOp.CHMOD: self._chmod,
            FileOp.TRUNCATE: self._truncate,
            FileOp.GETWD: self._getwd,
            FileOp.FSYNC: self._fsync,
            FileOp.READLINK: self._readlink,
            FileOp.SYMLINK: self._symlink,
            FileOp.LINK: self._link,
            FileOp.CHOWN: self._chown,
            FileOp.CHTIMES: self._chtimes,
            FileOp.STATFS: self._statfs,
            FileOp.FSTAT: self._fstat,
            FileOp.FTRUNCATE: self._ftruncate,
        }
        self._fast: dict[int, Callable[[FileOpReq], dict[str, Any] | None]] = {
            FileOp.STAT: self._stat_answer,
            FileOp.LSTAT: self._lstat_answer,
            FileOp.READ_DIR: self._read_dir_answer,
        }

    @property
    def root(self) -> str | None:
        """The real path of the confinement root, or None when unconfined."""
        return self._root

    @property
    def open_handles(self) -> int:
        """How many handles are open."""
        with self._lock:
            return len(self._handles)

    # --- the public surface ------------------------------------------------------

    def handle(self, req: FileOpReq) -> FileOpResp:
        """Carry out one request and answer it; never raises.

        The response echoes ``req.req_id``. Any failure becomes ``errno`` plus
        a Go-style ``err_msg``: an ``OSError`` gives its own errno, a bad
        argument EINVAL, an unknown op ENOSYS, anything unexpected EIO.
        """
        op = self._ops.get(int(req.op))
        try:
            if op is None:
                raise _OpError(errno_.ENOSYS, f"unknown file op {int(req.op)}")
            resp = op(req)
        except Exception as exc:  # the server must answer whatever happens
            resp = self._failure(req, exc)
        resp.req_id = req.req_id
        return resp

    def answer(self, req: FileOpReq) -> bytes:
        """``handle(req).to_cbor()``, byte for byte; never raises.

        An answer that cannot be encoded (a value Go's types cannot hold)
        becomes an EIO answer saying why.

        Stat, Lstat and ReadDir, the calls that come by the thousand or with
        thousands of entries, skip the dataclasses: their answer maps are
        built from ``os.stat`` results directly.
        """
        fast = self._fast.get(req.op)
        if fast is not None:
            try:
                m = fast(req)
            except Exception as exc:
                resp = self._failure(req, exc)
            else:
                if m is not None:
                    return cbor2.dumps({_RESP_KEYS.req_id: req.req_id, **m})
                resp = self.handle(req)  # a time Go cannot hold: the checked path says so
            resp.req_id = req.req_id
        else:
            resp = self.handle(req)
        try:
            return resp.to_cbor()
        except LocalProtocolError as exc:  # a value Go cannot hold: say so, do not raise
            failure = self._failure(req, exc)
            failure.req_id = req.req_id
            return failure.to_cbor()

    # The answer maps of answer()'s ops, without the id; None: take the checked path.

    def _stat_answer(self, req: FileOpReq) -> dict[str, Any] | None:
        m = stat_map(go_base(req.path), self._stat_result(req.path, True))
        return None if m is None else {_RESP_KEYS.stat: m}

    def _lstat_answer(self, req: FileOpReq) -> dict[str, Any] | None:
        m = stat_map(go_base(req.path), self._stat_result(req.path, False))
        return None if m is None else {_RESP_KEYS.stat: m}

    def _read_dir_answer(self, req: FileOpReq) -> dict[str, Any] | None:
        maps = [stat_map(name, st) for name, st in self._dir_listing(req)]
        if any(m is None for m in maps):
            return None
        return {_RESP_KEYS.entries: [{_ENTRY_KEYS.stat: m} for m in maps]} if maps else {}

    def close_all(self) -> None:
        """Close every open handle (call when the file-op service ends); idempotent."""
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for of in handles:
            self._retire(of)

    # --- errors ------------------------------------------------------------------

    def _failure(self, req: FileOpReq, exc: Exception) -> FileOpResp:
        """The answer to a request that raised ``exc``."""
        if isinstance(exc, _OpError):
            return self._error(req, exc.errno, exc.detail)
        if isinstance(exc, OSError):
            code = exc.errno if isinstance(exc.errno, int) and exc.errno > 0 else errno_.EIO
            return self._error(req, code)
        if isinstance(exc, (ValueError, OverflowError, TypeError)):
            # e.g. a NUL byte in a path, an integer no system call takes
            return self._error(req, errno_.EINVAL, f"invalid argument: {exc}")
        return self._error(req, errno_.EIO, f"internal error: {type(exc).__name__}: {exc}")

    def _error(self, req: FileOpReq, errno: int, detail: str = "") -> FileOpResp:
        try:
            word = _OP_WORDS.get(FileOp(req.op), "fileop")
        except ValueError:
            word = "fileop"
        subject = req.path
        if req.op in (FileOp.RENAME, FileOp.LINK, FileOp.SYMLINK):
            subject = f"{req.path} {req.new_path}"
        elif req.op in _HANDLE_OPS:
            subject = f"handle {req.handle}"
        message = detail or _strerror(errno)
        prefix = f"{word} {subject}".rstrip()
        return FileOpResp(errno=errno, err_msg=_safe_text(f"{prefix}: {message}"))

    # --- handles -----------------------------------------------------------------

    def _register(self, fd: int, name: str) -> int:
        with self._lock:
            if len(self._handles) >= _HANDLE_LIMIT - 1:
                os.close(fd)
                raise _OpError(errno_.EMFILE, "too many open handles")
            handle = self._next_handle
            while handle in self._handles:
                handle = handle % (_HANDLE_LIMIT - 1) + 1
            self._next_handle = handle % (_HANDLE_LIMIT - 1) + 1  # 0 is never a handle
            self._handles[handle] = _OpenFile(fd, name)
        return handle

    @contextmanager
    def _use(self, handle: int) -> Iterator[_OpenFile]:
        """Borrow an open handle; its fd stays open until the borrower is done."""
        with self._lock:
            of = self._handles.get(handle)
            if of is None:
                raise _OpError(errno_.EBADF, "bad file handle")
            of.users += 1
        try:
            yield of
        finally:
            with self._lock:
                of.users -= 1
                last = of.closed and of.users == 0
            if last:
                os.close(of.fd)

    def _retire(self, of: _OpenFile) -> None:
        """Mark a handle closed; close its fd now unless a request is still using it."""
        with self._lock:
            of.closed = True
            now = of.users == 0
        if now:
            os.close(of.fd)

    # --- path resolution ------------------------------------------------------------

    @contextmanager
    def _at(self, path: str, *, follow: bool) -> Iterator[_Location]:
        """Resolve ``path`` to where a system call should act (see the module docs)."""
        if not path:
            raise _OpError(errno_.ENOENT)
        if self._root is None:
            yield _Location(None, path, follow)
            return
        loc = self._walk(path, follow)
        try:
            yield loc
        finally:
            for fd in loc.fds:
                os.close(fd)

    def _inside(self, path: str) -> list[str]:
        """The components of ``path`` relative to the root; EACCES for one outside it."""
        parts = _components(path)
        if not path.startswith("/"):
            return parts
        for prefix in self._root_prefixes:
            if parts[: len(prefix)] == prefix:
                return parts[len(prefix) :]
        raise _OpError(errno_.EACCES, "permission denied (outside the file-op root)")

    def _walk(self, path: str, follow: bool) -> _Location:
        assert self._root is not None
        todo = self._inside(path)
        todo.reverse()  # a stack: the next component is at the end
        fds = [os.open(self._root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
        links = 0
        try:
            while todo:
                name = todo.pop()
                if name == "..":
                    if len(fds) == 1:
                        raise _OpError(
                            errno_.EACCES, "permission denied (.. leaves the file-op root)"
                        )
                    os.close(fds.pop())
                    continue
                dir_fd = fds[-1]
                last = not todo
                if last and not follow:
                    return _Location(dir_fd, name, False, fds)
                if last:
                    try:
                        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except OSError:
                        return _Location(dir_fd, name, False, fds)  # let the op report it
                    if not stat_.S_ISLNK(st.st_mode):
                        return _Location(dir_fd, name, False, fds)
                else:
                    try:
                        fds.append(
                            os.open(
                                name,
                                os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=dir_fd,
                            )
                        )
                        continue
                    except OSError as exc:
                        if exc.errno not in (errno_.ENOTDIR, errno_.ELOOP):
                            raise
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    if not stat_.S_ISLNK(st.st_mode):
                        raise _OpError(errno_.ENOTDIR)
                # A symlink to follow: splice its target into the remaining path.
                links += 1
                if links > MAX_SYMLINKS:
                    raise _OpError(errno_.ELOOP)
                target = os.readlink(name, dir_fd=dir_fd)
                if target.startswith("/"):
                    target_parts = self._inside(target)
                    while len(fds) > 1:
                        os.close(fds.pop())
                else:
                    target_parts = _components(target)
                todo.extend(reversed(target_parts))
            # The path names a directory already open (the root, "a/..", a link to ".").
            return _Location(fds[-1], ".", False, fds)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def _open_at(self, loc: _Location, flags: int, mode: int = 0o666) -> int:
        if self._root is not None:
            flags |= os.O_NOFOLLOW  # the walk resolved the final symlink already
        flags |= os.O_CLOEXEC
        if flags & (os.O_NONBLOCK | os.O_PATH):  # asked for, or an O_PATH (which never waits)
            return os.open(loc.name, flags, mode, dir_fd=loc.dir_fd)
        # open(2) of a FIFO waits for its other end, forever if none comes, and the
        # connection's reading thread (signals included) would wait with it. Opened
        # non-blocking, a FIFO opens at once for reading and fails with ENXIO for writing
        # without a reader; the file is then put back in the blocking mode asked for.
        fd = os.open(loc.name, flags | os.O_NONBLOCK, mode, dir_fd=loc.dir_fd)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)  # (only its status flags: O_APPEND...)
        except OSError:
            os.close(fd)
            raise
        return fd

    # --- the ops -------------------------------------------------------------------

    def _open(self, req: FileOpReq) -> FileOpResp:
        perm = to_posix(req.mode) if req.mode else DEFAULT_FILE_PERM
        exclusive = req.flags & (os.O_CREAT | os.O_EXCL) == os.O_CREAT | os.O_EXCL
        # open(2) follows a final symlink unless O_NOFOLLOW, or O_CREAT|O_EXCL (then EEXIST)
        follow = not (req.flags & os.O_NOFOLLOW or exclusive)
        with self._at(req.path, follow=follow) as loc:
            fd = self._open_at(loc, req.flags, perm)
        return FileOpResp(handle=self._register(fd, req.path))

    def _create(self, req: FileOpReq) -> FileOpResp:
        perm = to_posix(req.mode) if req.mode else DEFAULT_FILE_PERM
        with self._at(req.path, follow=True) as loc:
            fd = self._open_at(loc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perm)
        return FileOpResp(handle=self._register(fd, req.path))

    def _close(self, req: FileOpReq) -> FileOpResp:
        with self._lock:
            of = self._handles.pop(req.handle, None)
        if of is None:
            raise _OpError(errno_.EBADF, "bad file handle")
        self._retire(of)
        return FileOpResp()

    def _read_at(self, req: FileOpReq) -> FileOpResp:
        if req.offset < 0 or req.size < 0:
            raise _OpError(errno_.EINVAL, "negative offset or size")
        size = min(req.size, MAX_READ_SIZE)
        with self._use(req.handle) as of:
            chunks: list[bytes] = []
            got = 0
            while got < size:
                chunk = os.pread(of.fd, size - got, req.offset + got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
            eof = got < size
            if not eof:
                st = os.fstat(of.fd)
                eof = stat_.S_ISREG(st.st_mode) and req.offset + got >= st.st_size
        return FileOpResp(data=b"".join(chunks), n=got, eof=eof)

    def _write_at(self, req: FileOpReq) -> FileOpResp:
        if req.offset < 0:
            raise _OpError(errno_.EINVAL, "negative offset")
        with self._use(req.handle) as of:
            if fcntl.fcntl(of.fd, fcntl.F_GETFL) & os.O_APPEND:
                # pwrite(2) ignores the offset on an O_APPEND file; Go refuses too.
                raise _OpError(errno_.EINVAL, "invalid use of WriteAt on file opened with O_APPEND")
            view = memoryview(req.data)
            written = 0
            while written < len(view):
                n = os.pwrite(of.fd, view[written:], req.offset + written)
                if n <= 0:
                    raise _OpError(errno_.EIO, "short write")
                written += n
        return FileOpResp(n=written)

    def _stat_result(self, path: str, follow: bool) -> os.stat_result:
        if self._root is None and path:  # the common case, without _at's context manager
            return os.stat(path, follow_symlinks=follow)
        with self._at(path, follow=follow) as loc:
            return os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=loc.follow and follow)

    def _stat(self, req: FileOpReq) -> FileOpResp:
        return FileOpResp(stat=file_stat(go_base(req.path), self._stat_result(req.path, True)))

    def _lstat(self, req: FileOpReq) -> FileOpResp:
        return FileOpResp(stat=file_stat(go_base(req.path), self._stat_result(req.path, False)))

    def _read_dir(self, req: FileOpReq) -> FileOpResp:
        entries = [FileDirEntry(stat=file_stat(name, st)) for name, st in self._dir_listing(req)]
        return FileOpResp(entries=entries)

    def _dir_listing(self, req: FileOpReq) -> list[tuple[str, os.stat_result]]:
        """The entries of directory ``req.path`` as Go lists them: names and lstat results."""
        with self._at(req.path, follow=True) as loc:
            fd = self._open_at(loc, os.O_RDONLY | os.O_DIRECTORY)
        listed: list[tuple[bytes, str, os.stat_result]] = []
        budget = MAX_DIR_REPLY_BYTES
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed since it was listed, as Go's ReadDir skips it
                    key = entry.name.encode("utf-8", "surrogateescape")
                    budget -= _DIR_ENTRY_OVERHEAD + len(key)
                    if budget < 0:
                        raise _OpError(
                            errno_.EOVERFLOW, "directory has too many entries for one reply"
                        )
                    listed.append((key, entry.name, st))
        finally:
            os.close(fd)
        listed.sort(key=lambda item: item[0])  # Go sorts by name, byte-wise
        return [(name, st) for _, name, st in listed]

    def _mkdir(self, req: FileOpReq) -> FileOpResp:
        perm = to_posix(req.mode) if req.mode else DEFAULT_DIR_PERM
        with self._at(req.path, follow=False) as loc:
            os.mkdir(loc.name, perm, dir_fd=loc.dir_fd)
        return FileOpResp()

    def _is_dir(self, path: str, *, follow: bool) -> bool | None:
        """Whether ``path`` is a directory; None when it cannot be stat'ed.

        A path the root confinement refuses (a symlink leading out) raises
        its EACCES: it is not "missing", and MkdirAll must not try to create it.
        """
        try:
            with self._at(path, follow=follow) as loc:
                st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=loc.follow)
        except OSError:
            return None
        except _OpError as exc:
            if exc.errno == errno_.EACCES:
                raise
            return None
        return stat_.S_ISDIR(st.st_mode)

    def _mkdir_all(self, req: FileOpReq) -> FileOpResp:
        perm = to_posix(req.mode) if req.mode else DEFAULT_DIR_PERM
        # Go's MkdirAll: climb until something exists, then create downwards.
        missing: list[str] = []
        path: str | None = req.path
        while path is not None:
            found = self._is_dir(path, follow=True)
            if found is True:
                break
            if found is False:
                raise _OpError(errno_.ENOTDIR, f"{path}: {_strerror(errno_.ENOTDIR)}")
            missing.append(path)
            path = _go_parent(path)
        for path in reversed(missing):
            try:
                with self._at(path, follow=False) as loc:
                    os.mkdir(loc.name, perm, dir_fd=loc.dir_fd)
            except OSError:
                if self._is_dir(path, follow=False) is not True:
                    raise
        return FileOpResp()

    def _remove(self, req: FileOpReq) -> FileOpResp:
        with self._at(req.path, follow=False) as loc:
            try:
                os.unlink(loc.name, dir_fd=loc.dir_fd)
                return FileOpResp()
            except OSError as exc:
                unlink_error = exc
            try:
                os.rmdir(loc.name, dir_fd=loc.dir_fd)
                return FileOpResp()
            except OSError as exc:
                # Go's rule: rmdir of a non-directory says ENOTDIR, so then unlink's error is real.
                raise (unlink_error if exc.errno == errno_.ENOTDIR else exc) from None

    def _rename(self, req: FileOpReq) -> FileOpResp:
        with (
            self._at(req.path, follow=False) as old,
            self._at(req.new_path, follow=False) as new,
        ):
            # Go refuses to replace a directory (rename(2) would replace an empty one).
            try:
                new_st = os.stat(new.name, dir_fd=new.dir_fd, follow_symlinks=False)
            except OSError:
                new_st = None
            if new_st is not None and stat_.S_ISDIR(new_st.st_mode):
                old_st = os.stat(old.name, dir_fd=old.dir_fd, follow_symlinks=False)
                same = (old_st.st_dev, old_st.st_ino) == (new_st.st_dev, new_st.st_ino)
                if req.path == req.new_path or not same:
                    raise _OpError(errno_.EEXIST)
            os.rename(old.name, new.name, src_dir_fd=old.dir_fd, dst_dir_fd=new.dir_fd)
        return FileOpResp()

    def _chmod(self, req: FileOpReq) -> FileOpResp:
        with self._at(req.path, follow=True) as loc:
            if loc.dir_fd is None:
                os.chmod(loc.name, to_posix(req.mode))
            else:
                os.chmod(loc.name, to_posix(req.mode), dir_fd=loc.dir_fd, follow_symlinks=False)
        return FileOpResp()

    def _truncate(self, req: FileOpReq) -> FileOpResp:
        if req.size < 0:
            raise _OpError(errno_.EINVAL, "negative size")
        with self._at(req.path, follow=True) as loc:
            if loc.dir_fd is None:
                os.truncate(loc.name, req.size)
            else:
                fd = self._open_at(loc, os.O_WRONLY | os.O_NONBLOCK)
                try:
                    os.ftruncate(fd, req.size)
                finally:
                    os.close(fd)
        return FileOpResp()

    def _getwd(self, req: FileOpReq) -> FileOpResp:
        return FileOpResp(path=_safe_text(self._root if self._root is not None else os.getcwd()))

    def _fsync(self, req: FileOpReq) -> FileOpResp:
        with self._use(req.handle) as of:
            os.fsync(of.fd)
        return FileOpResp()

    def _readlink(self, req: FileOpReq) -> FileOpResp:
        with self._at(req.path, follow=False) as loc:
            target = os.readlink(loc.name, dir_fd=loc.dir_fd)
        return FileOpResp(path=_safe_text(target))

    def _symlink(self, req: FileOpReq) -> FileOpResp:
        # The target is only text stored in the link; confinement applies when it is followed.
        with self._at(req.new_path, follow=False) as loc:
            os.symlink(req.path, loc.name, dir_fd=loc.dir_fd)
        return FileOpResp()

    def _link(self, req: FileOpReq) -> FileOpResp:
        with (
            self._at(req.path, follow=False) as old,
            self._at(req.new_path, follow=False) as new,
        ):
            os.link(
                old.name,
                new.name,
                src_dir_fd=old.dir_fd,
                dst_dir_fd=new.dir_fd,
                follow_symlinks=False,
            )
        return FileOpResp()

    def _chown(self, req: FileOpReq) -> FileOpResp:
        uid = -1 if req.uid == _UNCHANGED_ID else req.uid
        gid = -1 if req.gid == _UNCHANGED_ID else req.gid
        with self._at(req.path, follow=True) as loc:
            os.chown(loc.name, uid, gid, dir_fd=loc.dir_fd, follow_symlinks=loc.follow)
        return FileOpResp()

    def _chtimes(self, req: FileOpReq) -> FileOpResp:
        with self._at(req.path, follow=True) as loc:
            os.utime(
                loc.name,
                ns=(req.atime_nanos, req.mtime_nanos),
                dir_fd=loc.dir_fd,
                follow_symlinks=loc.follow,
            )
        return FileOpResp()

    def _statfs(self, req: FileOpReq) -> FileOpResp:
        with self._at(req.path, follow=True) as loc:
            fd = self._open_at(loc, os.O_PATH)
        try:
            sv = os.statvfs(fd)
        finally:
            os.close(fd)
        return FileOpResp(
            statfs=FileStatfs(
                blocks=sv.f_blocks,
                bfree=sv.f_bfree,
                bavail=sv.f_bavail,
                files=sv.f_files,
                ffree=sv.f_ffree,
                bsize=sv.f_bsize & 0xFFFF_FFFF,
                frsize=sv.f_frsize & 0xFFFF_FFFF,
                name_len=sv.f_namemax & 0xFFFF_FFFF,
            )
        )

    def _fstat(self, req: FileOpReq) -> FileOpResp:
        with self._use(req.handle) as of:
            st = os.fstat(of.fd)
        return FileOpResp(stat=file_stat(go_base(of.name), st))

    def _ftruncate(self, req: FileOpReq) -> FileOpResp:
        if req.size < 0:
            raise _OpError(errno_.EINVAL, "negative size")
        with self._use(req.handle) as of:
            os.ftruncate(of.fd, req.size)
        return FileOpResp()


_HANDLE_OPS = frozenset(
    {
        FileOp.CLOSE,
        FileOp.READ_AT,
        FileOp.WRITE_AT,
        FileOp.FSYNC,
        FileOp.FSTAT,
        FileOp.FTRUNCATE,
    }
)


def _components(path: str) -> list[str]:
    """Split a path into its names, dropping empty and ``.`` components."""
    return [part for part in path.split("/") if part and part != "."]
