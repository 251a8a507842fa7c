"""The decision log's files: the rotating writer and the disk budget.

Each process writes its own file (``decisions-<host>-<pid>.jsonl``),
because nova-scheduler forks workers and several writers must not share one
file's rotation. A file is rotated when it reaches its size limit.

The disk budget holds over the whole directory: every file named like a
decision log file counts, whichever process wrote it, and the oldest are
deleted first, as are files older than the age limit. Only the current file
of a process that is still running is never deleted (its writer would go on
writing into a deleted file); the current file of a process that has died
(on this host) is an ordinary file.

Nothing here logs or keeps a thread: :class:`RotatingWriter` runs on the
writer thread of :class:`decision_log.DecisionLog` and raises ``OSError``
for it to handle.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import socket
import stat
import time

PREFIX = 'decisions-'
SUFFIX = '.jsonl'

#: ``decisions-<host>-<pid>[.<UTC stamp>[-n]].jsonl[.<anything>]``: the
#: current file of a process has no stamp; rotated files have one; a
#: trailing extension (``.gz``) is a file compressed by someone else.
_NAME = re.compile(
    r'^decisions-(?P<host>.+)-(?P<pid>\d+)'
    r'(?P<stamp>\.\d{8}T\d{6}(?:-\d+)?)?\.jsonl(?P<ext>\..+)?$')

_OPEN_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT
               | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOFOLLOW', 0)
               | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_NOCTTY', 0))


class RotatingWriter:
    """Appends lines to this process's file; rotates and prunes.

    ``prune_interval_s``: while writing, the directory is pruned at least
    this often (besides every rotation and every time a file is opened).
    """

    def __init__(self, prune_interval_s: float) -> None:
        self._prune_interval_s = prune_interval_s
        self._dir: str | None = None
        self._fd: int | None = None
        self._path: str | None = None
        self._size = 0
        self._next_prune = 0.0

    def _open(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        name = f'{PREFIX}{socket.gethostname()}-{os.getpid()}{SUFFIX}'
        path = os.path.join(directory, name)
        # Never follow a symlink planted under our name, never block on a
        # FIFO, write only into a regular file.
        fd = os.open(path, _OPEN_FLAGS, 0o666)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL,
                              f'{path} is not a regular file')
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._path, self._size = fd, path, st.st_size
        self._dir = directory

    def write(self, directory: str, data: bytes, file_bytes: int,
              total_bytes: int, max_age_s: float) -> None:
        # A budget smaller than two files would be exceeded by the current
        # file alone: rotate at half of it then.
        file_bytes = max(1, min(file_bytes, total_bytes // 2))
        due = time.monotonic() >= self._next_prune
        if self._fd is None or directory != self._dir:
            self.close()
            self._open(directory)
            self._prune(total_bytes, file_bytes, max_age_s)
            due = False
        elif due and os.fstat(self._fd).st_nlink == 0:
            # Deleted under us (by hand): start a new file rather than
            # write on into one nobody can read.
            self.close()
            self._open(directory)
        self._append(data)
        if self._size >= file_bytes:
            self._rotate()
            self._prune(total_bytes, file_bytes, max_age_s)
        elif due:
            self._prune(total_bytes, file_bytes, max_age_s)

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            # A full disk may have taken part of the line: cut it off so
            # the file stays whole lines.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(data)

    def _rotate(self) -> None:
        self.close()
        stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
        base = self._path[:-len(SUFFIX)]
        target = f'{base}.{stamp}{SUFFIX}'
        n = 1
        while os.path.lexists(target):
            target = f'{base}.{stamp}-{n}{SUFFIX}'
            n += 1
        os.replace(self._path, target)
        self._open(self._dir)

    def _prune(self, total_bytes: int, file_bytes: int,
               max_age_s: float) -> None:
        self._next_prune = time.monotonic() + self._prune_interval_s
        # Leave room for the current file to grow to its rotation size.
        reserve = max(0, file_bytes - self._size)
        prune(self._dir, max(0, total_bytes - reserve), max_age_s,
              keep=self._path)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False        # not a process: 0 and -1 mean groups to kill()
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True         # exists, belongs to someone else
    except (OverflowError, OSError, ValueError):
        return False
    return True


def log_files(directory: str) -> list[tuple[str, os.stat_result, bool]]:
    """Decision log files in ``directory``: (path, lstat, protected).

    Only regular files named like decision log files count (a symlink or a
    directory with such a name is neither counted nor deleted). Protected:
    the current (unrotated) file of a process that is still running on this
    host, or of a process on another host (which cannot be checked).
    """
    host = socket.gethostname()
    out = []
    for path in glob.glob(os.path.join(glob.escape(directory),
                                       PREFIX + '*' + SUFFIX + '*')):
        m = _NAME.match(os.path.basename(path))
        if m is None:
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        current = m.group('stamp') is None and m.group('ext') is None
        protected = current and (m.group('host') != host
                                 or _pid_alive(int(m.group('pid'))))
        out.append((path, st, protected))
    return out


def prune(directory: str, total_bytes: int, max_age_s: float = 0.0,
          keep: str | None = None, now: float | None = None) -> int:
    """Keep the decision log files in ``directory`` within their limits.

    Deletes, oldest first (by modification time), files older than
    ``max_age_s`` (0: no age limit), then files until all of them together
    take at most ``total_bytes``. Protected files (see :func:`log_files`)
    and ``keep`` count towards the total but are never deleted. Returns the
    bytes the files take afterwards.
    """
    now = time.time() if now is None else now
    files = log_files(directory)
    used = sum(st.st_size for _, st, _ in files)
    candidates = sorted((st.st_mtime, path, st.st_size)
                        for path, st, protected in files
                        if not protected and path != keep)
    cutoff = now - max_age_s if max_age_s and max_age_s > 0 else None
    for mtime, path, size in candidates:
        too_old = cutoff is not None and mtime < cutoff
        if not too_old and used <= total_bytes:
            break
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass                    # pruned by another process meanwhile
        except OSError:
            continue
        used -= size
    return used
