"""The only place the weigher reads its input files, and their writer.

The scheduler reads two kinds of files that other programs write: the policy
artifact and the usage snapshot (the decision log, which the weigher only
writes, has its own module). Neither is trusted:

- :func:`read_bounded` opens with ``O_NONBLOCK`` (a FIFO never blocks the
  open), looks at what it opened with ``fstat`` and refuses anything that is
  not a regular file (FIFO, character or block device, directory, socket)
  before reading a byte, refuses a file larger than the caller's cap before
  reading, and reads at most one byte past the cap (a file that grows, or
  lies about its size like ``/proc`` files do, is refused). A symlink is
  followed only when its resolved target stays inside ``allowed_root``
  (by default the directory the path names), so ``manifest.json ->
  /dev/zero`` or ``weights.npz -> /etc/shadow`` are refused.
- :class:`FileVersion` identifies the content of a file cheaply (device,
  inode, size, mtime), so callers can remember a result, or a failure, per
  file version instead of re-reading. :func:`is_racy` says when a version
  cannot be trusted to identify content (written within the file system's
  timestamp granularity of the read, like git's "racily clean" index
  entries), so that the caller reads it again later.
- :func:`atomic_write` is the writer: a temporary file in the same
  directory, ``fsync``, ``rename`` over the target, ``fsync`` of the
  directory. A reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import tempfile
import time
from typing import NamedTuple

__all__ = ['FileRefused', 'FileChanged', 'FileVersion', 'read_bounded',
           'version_of', 'version_of_stat', 'is_racy', 'atomic_write',
           'decode_json', 'brief']

#: A file modified less than this long before it was read may still change
#: without its version changing (file system timestamps are coarse: one
#: kernel tick, up to 10 ms; a margin for clock steps between the two
#: clocks). Results for such a version are used but read again later.
RACY_WINDOW_NS = 100_000_000

_READ_FLAGS = (os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0)
               | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOFOLLOW', 0)
               | getattr(os, 'O_NOCTTY', 0))
_PROC_FD = '/proc/self/fd'


class FileRefused(OSError):
    """The file is not something the weigher reads; ``str()`` says why.

    A subclass of :class:`OSError`, so callers that already treat an
    unreadable file as "unavailable" need no new ``except`` clause.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f'{path}: {reason}')
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return self.args[0]


class FileChanged(FileRefused):
    """The file changed while it was being read; read it again later."""


class FileVersion(NamedTuple):
    """What identifies a file's content without reading it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int


def version_of_stat(st: os.stat_result) -> FileVersion:
    return FileVersion(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def version_of(path: str) -> FileVersion:
    """The version of the file ``path`` names (symlinks followed: swapping a
    symlink to another file changes the device/inode). Raises OSError."""
    return version_of_stat(os.stat(path))


def is_racy(version: FileVersion, read_at_ns: int | None = None) -> bool:
    """True when ``version`` was written too close to ``read_at_ns`` (default:
    now) for its (size, mtime) to prove the content did not change since."""
    if read_at_ns is None:
        read_at_ns = time.time_ns()
    return read_at_ns - version.mtime_ns < RACY_WINDOW_NS


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, 'a FIFO'),
                       (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'),
                       (stat.S_ISDIR, 'a directory'),
                       (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return name
    return 'not a regular file'


def _inside(path: str, root: str) -> bool:
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(
        root if root.endswith(os.sep) else root + os.sep)


def read_bounded(path: str, max_bytes: int, *,
                 allowed_root: str | None = None,
                 allow_outside: bool = False) -> tuple[bytes, FileVersion]:
    """Read the regular file ``path`` whole, refusing anything hostile.

    Returns ``(content, version)`` where ``version`` is the file's
    :class:`FileVersion` as it was read. Raises :class:`FileRefused` (an
    OSError) with a one-line reason for: a path that resolves outside
    ``allowed_root`` (default: the directory containing ``path``; pass
    ``allow_outside=True`` to follow symlinks anywhere), anything but a
    regular file, a file larger than ``max_bytes`` (checked before
    reading, and again while reading), a file that changed while being
    read (:class:`FileChanged`). Other OSErrors (missing file, permission)
    propagate as they are. Never blocks on a FIFO or device: the type is
    checked with ``stat`` before opening (opening some devices has side
    effects) and with ``fstat`` on the opened descriptor before reading.
    """
    abspath = os.path.abspath(path)
    real = os.path.realpath(abspath)
    root = None
    if not allow_outside:
        root = os.path.realpath(allowed_root if allowed_root is not None
                                else os.path.dirname(abspath))
        if not _inside(real, root):
            raise FileRefused(path, f'resolves to {real}, outside {root}')
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(path, f'is {_kind(st.st_mode)}, not a regular file')
    try:
        # O_NOFOLLOW: ``real`` has no symlink left in its last component;
        # if one was swapped in since realpath(), refuse instead of
        # following it.
        fd = os.open(real, _READ_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FileRefused(path, 'became a symlink while being opened') \
                from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(path, f'is {_kind(st.st_mode)}, not a regular '
                                    'file')
        if st.st_size > max_bytes:
            raise FileRefused(path, f'{st.st_size} bytes, more than the '
                                    f'{max_bytes} bytes allowed')
        if root is not None:
            _check_opened_inside(fd, path, root)
        version = version_of_stat(st)
        # One byte more than the size it claims: a file that grew, or one
        # that lies about its size, is noticed without reading it all.
        buf = bytearray(min(st.st_size, max_bytes) + 1)
        view = memoryview(buf)
        got = 0
        with io.FileIO(fd, 'rb', closefd=False) as f:
            while got < len(buf):
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
        view.release()
        if got > st.st_size:
            if got > max_bytes:
                raise FileRefused(path, f'more than the {max_bytes} bytes '
                                        'allowed')
            raise FileRefused(path, f'larger than its size ({st.st_size} '
                                    'bytes): growing or not a real file')
        after = version_of_stat(os.fstat(fd))
        if after != version or got != st.st_size:
            raise FileChanged(path, 'changed while being read')
        del buf[got:]
        return bytes(buf), version
    finally:
        os.close(fd)


def _check_opened_inside(fd: int, path: str, root: str) -> None:
    """Where the descriptor really points (Linux): a directory component
    swapped for a symlink between realpath() and open() is caught here."""
    try:
        opened = os.readlink(os.path.join(_PROC_FD, str(fd)))
    except OSError:
        return   # no /proc: realpath() and O_NOFOLLOW are what we have
    if not _inside(opened, root):
        raise FileRefused(path, f'opened {opened}, outside {root}')


def atomic_write(path: str, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    Writes a temporary file in the same directory (``.<name>.<random>.tmp``),
    sets ``mode`` (default 0644: readable by the nova user that runs the
    scheduler), ``fsync``s it, renames it over ``path`` and ``fsync``s the
    directory. ``str`` data is written as UTF-8. A symlink at ``path`` is
    replaced by the file, not followed. On any error the temporary file is
    removed and ``path`` is untouched.
    """
    if isinstance(data, str):
        data = data.encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                               suffix='.tmp', dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0)
                      | getattr(os, 'O_CLOEXEC', 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass   # some file systems cannot fsync a directory; rename is done
    finally:
        os.close(dfd)


def decode_json(data: bytes) -> object:
    """Decode UTF-8 JSON; every failure is a ValueError with a one-line
    reason (bad UTF-8, bad JSON, a number over Python's digit limit, and
    nesting deeper than the decoder's recursion limit, which would
    otherwise be a RecursionError)."""
    try:
        return json.loads(data.decode('utf-8'))
    except RecursionError:
        raise ValueError('not valid JSON: nested too deeply') from None
    except ValueError as e:   # includes UnicodeDecodeError
        raise ValueError(f'not valid JSON: {str(e)[:200]}') from None


def brief(value: object) -> str:
    """A short description of a decoded JSON value for an error message:
    never the whole value, which may be huge or nested too deeply to
    ``repr``."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 64:
            return ('an integer of about '
                    f'{int(value.bit_length() * 0.30103)} digits')
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:40]) + ('...' if len(value) > 40 else '')
    if isinstance(value, dict):
        return f'an object of {len(value)} keys'
    if isinstance(value, list):
        return f'a list of {len(value)} items'
    return type(value).__name__
