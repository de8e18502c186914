"""Go ``os.FileMode`` values: the mode carried by ``FileStat.mode`` and file-op requests.

A Go ``FileMode`` is not a POSIX ``st_mode``: the permission bits are the same
(0o777), but the file type and the setuid/setgid/sticky bits live in the high
bits (``MODE_DIR`` is ``1 << 31``...). These helpers convert between the two
exactly as Go's ``os`` package does on Linux, and format a mode the way Go's
``FileMode.String()`` does (``drwxr-xr-x``).
"""

from __future__ import annotations

import stat as _stat

__all__ = [
    "MODE_APPEND",
    "MODE_CHAR_DEVICE",
    "MODE_DEVICE",
    "MODE_DIR",
    "MODE_EXCLUSIVE",
    "MODE_IRREGULAR",
    "MODE_NAMED_PIPE",
    "MODE_PERM",
    "MODE_SETGID",
    "MODE_SETUID",
    "MODE_SOCKET",
    "MODE_STICKY",
    "MODE_SYMLINK",
    "MODE_TEMPORARY",
    "MODE_TYPE",
    "format_mode",
    "from_stat",
    "to_posix",
    "to_st_mode",
]

MODE_DIR = 1 << 31  # d: is a directory
MODE_APPEND = 1 << 30  # a: append-only
MODE_EXCLUSIVE = 1 << 29  # l: exclusive use
MODE_TEMPORARY = 1 << 28  # T: temporary file (Plan 9 only)
MODE_SYMLINK = 1 << 27  # L: symbolic link
MODE_DEVICE = 1 << 26  # D: device file
MODE_NAMED_PIPE = 1 << 25  # p: named pipe (FIFO)
MODE_SOCKET = 1 << 24  # S: Unix domain socket
MODE_SETUID = 1 << 23  # u: setuid
MODE_SETGID = 1 << 22  # g: setgid
MODE_CHAR_DEVICE = 1 << 21  # c: Unix character device, when MODE_DEVICE is set
MODE_STICKY = 1 << 20  # t: sticky
MODE_IRREGULAR = 1 << 19  # ?: non-regular file; nothing else is known about this file

# Go's ModeType: the bits that say what kind of file it is.
MODE_TYPE = (
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE
) | MODE_IRREGULAR
MODE_PERM = 0o777

# Go's FileMode.String() letters, highest bit first.
_LETTERS = "dalTLDpSugct?"

# S_IFMT value -> FileMode type bits (Go's fillFileStatFromSys on Linux).
_TYPE_FROM_POSIX = {
    _stat.S_IFBLK: MODE_DEVICE,
    _stat.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE,
    _stat.S_IFDIR: MODE_DIR,
    _stat.S_IFIFO: MODE_NAMED_PIPE,
    _stat.S_IFLNK: MODE_SYMLINK,
    _stat.S_IFREG: 0,
    _stat.S_IFSOCK: MODE_SOCKET,
}


def from_stat(st_mode: int) -> int:
    """Convert a POSIX ``st_mode`` (from ``os.stat``) to a Go ``os.FileMode``.

    Permission bits are kept; the file type becomes the FileMode type bits and
    setuid/setgid/sticky their FileMode bits, as Go's ``os.Stat`` does on Linux.
    A file type Go does not know maps to no type bits (Go does the same).
    """
    mode = st_mode & MODE_PERM
    mode |= _TYPE_FROM_POSIX.get(_stat.S_IFMT(st_mode), 0)
    if st_mode & _stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & _stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & _stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def to_posix(file_mode: int) -> int:
    """Convert a Go ``os.FileMode`` to the POSIX mode for chmod/mkdir/open.

    This is Go's ``syscallMode``: the permission bits plus setuid, setgid and
    sticky. Type bits are dropped (a mode argument never carries a file type);
    use :func:`to_st_mode` for a full ``st_mode``.
    """
    mode = file_mode & MODE_PERM
    if file_mode & MODE_SETUID:
        mode |= _stat.S_ISUID
    if file_mode & MODE_SETGID:
        mode |= _stat.S_ISGID
    if file_mode & MODE_STICKY:
        mode |= _stat.S_ISVTX
    return mode


def to_st_mode(file_mode: int) -> int:
    """Convert a Go ``os.FileMode`` to a full POSIX ``st_mode`` including the file type.

    The inverse of :func:`from_stat`; a mode with no type bits is a regular
    file, and ``MODE_IRREGULAR`` (no POSIX equivalent) gives no type bits.
    """
    mode = to_posix(file_mode)
    if file_mode & MODE_DIR:
        return mode | _stat.S_IFDIR
    if file_mode & MODE_SYMLINK:
        return mode | _stat.S_IFLNK
    if file_mode & MODE_NAMED_PIPE:
        return mode | _stat.S_IFIFO
    if file_mode & MODE_SOCKET:
        return mode | _stat.S_IFSOCK
    if file_mode & MODE_DEVICE:
        return mode | (_stat.S_IFCHR if file_mode & MODE_CHAR_DEVICE else _stat.S_IFBLK)
    if file_mode & MODE_IRREGULAR:
        return mode
    return mode | _stat.S_IFREG


def format_mode(file_mode: int) -> str:
    """Format a Go ``os.FileMode`` exactly like Go's ``FileMode.String()``.

    One letter per set high bit (``dalTLDpSugct?``), or ``-`` when none is
    set, then ``rwxrwxrwx`` with ``-`` for clear bits: ``drwxr-xr-x``,
    ``-rw-r--r--``, ``Lrwxrwxrwx``, ``urwxr-xr-x`` for a setuid file.
    """
    letters = [c for i, c in enumerate(_LETTERS) if file_mode & (1 << (31 - i))]
    head = "".join(letters) or "-"
    perm = "".join(c if file_mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return head + perm
