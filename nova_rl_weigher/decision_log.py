"""The decision log: one JSON line per weighing call, never in the way.

Records are handed to a bounded queue and written by a daemon thread, so a
slow disk costs scheduling nothing: when the queue is full, in records
(``decision_log_queue_size``) or in bytes (``decision_log_queue_mb``), the
record is dropped and counted. Each process writes its own file
(``decisions-<host>-<pid>.jsonl``), because nova-scheduler forks workers and
several writers must not share one file's rotation. A file is rotated when it
reaches its size limit.

The disk budget holds over the whole directory: every file named like a
decision log file counts, whichever process wrote it, and the oldest are
deleted first, as are files older than the age limit. Only the current file
of a process that is still running is never deleted (its writer would go on
writing into a deleted file); the current file of a process that has died
(on this host) is an ordinary file.

A directory that cannot be written (read-only, full, a path that cannot be
created) costs one log line per minute, not a traceback per call: the writer
reports the error (rate-limited, with the number suppressed), drops records
without touching the disk, and tries the directory again only after
:data:`RETRY_INTERVAL_S`.

The thread is started lazily on first use and again in a forked child (a
thread does not survive ``fork``), so a weigher created before nova forks its
workers logs from every worker.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import queue
import re
import socket
import stat
import sys
import threading
import time
import weakref
from typing import Any, Callable, NamedTuple

from oslo_log import log as logging

from nova_rl_weigher import conf
from nova_rl_weigher.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

PREFIX = 'decisions-'
SUFFIX = '.jsonl'
MIB = 1024 * 1024
DAY_S = 86400.0

#: ``decisions-<host>-<pid>[.<UTC stamp>[-n]].jsonl[.<anything>]``: the
#: current file of a process has no stamp; rotated files have one; a
#: trailing extension (``.gz``) is a file compressed by someone else.
_NAME = re.compile(
    r'^decisions-(?P<host>.+)-(?P<pid>\d+)'
    r'(?P<stamp>\.\d{8}T\d{6}(?:-\d+)?)?\.jsonl(?P<ext>\..+)?$')

#: A directory that failed is tried again after this many seconds; records
#: submitted meanwhile are dropped (``unavailable``) without a syscall.
RETRY_INTERVAL_S = 30.0
#: The writer's own errors are logged at most this often per kind.
ERROR_LOG_INTERVAL_S = 60.0
#: While writing, the directory is pruned at least this often (besides
#: every rotation and every time a file is opened).
PRUNE_INTERVAL_S = 60.0
#: Defaults of ``decision_log_queue_mb`` and ``decision_log_max_age_days``.
DEFAULT_QUEUE_BYTES = conf.default('decision_log_queue_mb') * MIB
DEFAULT_MAX_AGE_S = conf.default('decision_log_max_age_days') * DAY_S

#: Added to every record's size estimate: the dicts and strings every
#: record has whatever the number of hosts.
RECORD_OVERHEAD_BYTES = 4096
#: Per item of a list or tuple captured by the record's closure when the
#: items are not numbers or strings: a pointer and a small object.
_ITEM_BYTES = 64

_OPEN_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT
               | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_NOFOLLOW', 0)
               | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_NOCTTY', 0))


class _Item(NamedTuple):
    make_record: Callable[[], Any] | None
    directory: str | None
    file_bytes: int
    total_bytes: int
    size: int


class _Channel:
    """The queue of one writer thread and the bytes it holds."""

    def __init__(self, queue_size: int) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.lock = threading.Lock()
        self.bytes = 0

    def release(self, size: int) -> None:
        if size:
            with self.lock:
                self.bytes -= size


def estimate_bytes(make_record: Callable[[], Any]) -> int:
    """Memory a queued record holds until it is written, estimated.

    ``make_record`` is a closure over what the record is built from (the
    feature matrix, host names, weights: proportional to the number of
    hosts). Arrays count their ``nbytes``, strings their length, lists and
    tuples their length times the size of their first item plus a pointer;
    anything else only :data:`RECORD_OVERHEAD_BYTES`.
    """
    total = RECORD_OVERHEAD_BYTES
    for cell in getattr(make_record, '__closure__', None) or ():
        try:
            value = cell.cell_contents
        except ValueError:          # an empty cell
            continue
        total += _approx_size(value)
    return total


def _approx_size(value: Any) -> int:
    nbytes = getattr(value, 'nbytes', None)
    if isinstance(nbytes, int) and not isinstance(value, type):
        return nbytes
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return 0
        first = value[0]
        if isinstance(first, (str, bytes, int, float)):
            item = sys.getsizeof(first)
        else:
            item = _ITEM_BYTES
        return len(value) * (8 + item)
    return 0


class DecisionLog:
    """Asynchronous, rotating, size-bounded JSON-lines writer.

    ``queue_bytes`` and ``max_age_s`` are read on every use: set them
    directly or with :meth:`configure` (the Nova adapter does on each call,
    from ``decision_log_queue_mb`` and ``decision_log_max_age_days``).
    ``clock`` is monotonic time for the retry and error intervals (tests
    drive it instead of sleeping).
    """

    def __init__(self, on_drop: Callable[[str], None] | None = None, *,
                 queue_bytes: int = DEFAULT_QUEUE_BYTES,
                 max_age_s: float = DEFAULT_MAX_AGE_S,
                 retry_interval_s: float = RETRY_INTERVAL_S,
                 error_interval_s: float = ERROR_LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._on_drop = on_drop or (lambda reason: None)
        self.queue_bytes = queue_bytes
        self.max_age_s = max_age_s
        self.retry_interval_s = retry_interval_s
        self._clock = clock
        self.errors = RateLimitedLog(error_interval_s, logger=LOG,
                                     clock=clock)
        self._lock = threading.Lock()
        self._pid = None
        self._channel: _Channel | None = None
        self._thread: threading.Thread | None = None
        # The directory that failed and when it may be tried again. Read
        # without a lock on the submitting side: a stale read costs one
        # record queued or dropped, nothing more.
        self._down: tuple[str, float] | None = None
        ref = weakref.ref(self)
        os.register_at_fork(
            after_in_child=lambda: ref() is not None and ref()._after_fork())

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def configure(self, queue_bytes: int | None = None,
                  max_age_s: float | None = None) -> None:
        """Set the queue's byte budget and the age limit (None: unchanged)."""
        if queue_bytes is not None:
            self.queue_bytes = queue_bytes
        if max_age_s is not None:
            self.max_age_s = max_age_s

    def _ensure_started(self, queue_size: int) -> _Channel:
        pid = os.getpid()
        channel = self._channel
        if self._pid == pid and channel is not None:
            return channel
        with self._lock:
            if self._pid != pid or self._channel is None:
                channel = _Channel(queue_size)
                thread = threading.Thread(
                    target=self._run, args=(channel,), daemon=True,
                    name='rl-weigher-decision-log')
                thread.start()
                self._channel, self._thread, self._pid = \
                    channel, thread, pid
            return self._channel

    def _is_down(self, directory: str) -> bool:
        down = self._down
        return (down is not None and down[0] == directory
                and self._clock() < down[1])

    def submit(self, make_record: Callable[[], dict], directory: str,
               file_bytes: int, total_bytes: int,
               queue_size: int = 1000, size_hint: int | None = None) -> bool:
        """Queue a record for writing; never blocks. False if dropped.

        ``make_record`` runs on the writer thread, so turning arrays into
        JSON and explaining scores stay off the scheduling path. What the
        queued record holds until then counts against ``queue_bytes``:
        ``size_hint`` if given, else :func:`estimate_bytes`. Drop reasons
        given to ``on_drop``: ``unavailable`` (the directory failed and is
        not tried again yet), ``queue_bytes``, ``queue_full``.
        """
        if self._is_down(directory):
            self._on_drop('unavailable')
            return False
        try:
            size = int(size_hint) if size_hint is not None \
                else estimate_bytes(make_record)
        except Exception:  # noqa: BLE001 - an estimate must not fail a call
            size = RECORD_OVERHEAD_BYTES
        budget = self.queue_bytes
        channel = self._ensure_started(queue_size)
        with channel.lock:
            fits = channel.bytes + size <= budget
            if fits:
                channel.bytes += size
        if not fits:
            if size > budget:
                self.errors.warning(
                    'record_too_large', 'rl_weigher: a decision record of '
                    'about %.1f MiB is larger than decision_log_queue_mb '
                    '(%.1f MiB); such records are dropped', size / MIB,
                    budget / MIB)
            self._on_drop('queue_bytes')
            return False
        try:
            channel.queue.put_nowait(
                _Item(make_record, directory, file_bytes, total_bytes, size))
        except queue.Full:
            channel.release(size)
            self._on_drop('queue_full')
            return False
        return True

    def queued_bytes(self) -> int:
        """Estimated bytes held by queued records of this process."""
        channel = self._channel
        if channel is None or self._pid != os.getpid():
            return 0
        with channel.lock:
            return channel.bytes

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued records are written (for tests and shutdown)."""
        channel = self._channel
        if channel is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        try:
            channel.queue.put(_Item(done.set, None, 0, 0, 0),
                              timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        with self._lock:
            channel, thread = self._channel, self._thread
            if channel is None or self._pid != os.getpid():
                return
            self._channel = self._thread = self._pid = None
        try:
            channel.queue.put(_Item(None, None, 0, 0, 0), timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    # -- the writer thread ------------------------------------------------
    def _run(self, channel: _Channel) -> None:
        writer = _RotatingWriter()
        while True:
            item = channel.queue.get()
            try:
                if item.make_record is None:     # close()
                    writer.close()
                    return
                if item.directory is None:
                    item.make_record()      # a flush marker
                    continue
                self._write(writer, item)
            except Exception:  # noqa: BLE001 - the thread must live on
                self._on_drop('write_error')
                self.errors.error('writer', 'rl_weigher: decision log '
                                  'writer failed', exc_info=True)
            finally:
                channel.release(item.size)

    def _write(self, writer: '_RotatingWriter', item: _Item) -> None:
        directory = item.directory
        if self._is_down(directory):
            self._on_drop('unavailable')
            return
        try:
            line = json.dumps(item.make_record(), separators=(',', ':'),
                              allow_nan=False) + '\n'
        except Exception:  # noqa: BLE001 - a bug: worth its traceback
            self._on_drop('record_error')
            self.errors.error('record', 'rl_weigher: could not build a '
                              'decision record', exc_info=True)
            return
        try:
            writer.write(directory, line.encode('utf-8'), item.file_bytes,
                         item.total_bytes, self.max_age_s)
        except OSError as e:
            # Read-only, full, not a directory, permissions: the same
            # answer until someone fixes it. No traceback, no retry
            # before the interval.
            writer.close()
            retry = self.retry_interval_s
            self._down = (directory, self._clock() + retry)
            self._on_drop('write_error')
            self.errors.error(
                'write:' + directory, 'rl_weigher: cannot write the decision '
                'log in %s: %s; dropping records, next try in %.0f s',
                directory, e, retry)
        else:
            self._down = None


class _RotatingWriter:
    """Appends lines to this process's file; rotates and prunes."""

    def __init__(self) -> None:
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
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
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
