"""The decision log: one JSON line per weighing call, never in the way.

Records are handed to a bounded queue and written by a daemon thread, so a
slow disk costs scheduling nothing: when the queue is full, in records
(``decision_log_queue_size``) or in bytes (``decision_log_queue_mb``), the
record is dropped and counted. The files, one per process, rotated at a
size limit and pruned to a disk budget over the whole directory and to an
age limit, are written by :class:`log_files.RotatingWriter` (see
:mod:`log_files`).

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

import json
import os
import queue
import sys
import threading
import time
import weakref
from typing import Any, Callable, NamedTuple

from oslo_log import log as logging

from nova_rl_weigher import conf
from nova_rl_weigher.log_files import log_files
from nova_rl_weigher.log_files import PREFIX
from nova_rl_weigher.log_files import prune
from nova_rl_weigher.log_files import RotatingWriter
from nova_rl_weigher.log_files import SUFFIX
from nova_rl_weigher.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

#: This module's API, including the names it re-exports from
#: :mod:`log_files` for its callers.
__all__ = [
    'DAY_S', 'DEFAULT_MAX_AGE_S', 'DEFAULT_QUEUE_BYTES',
    'ERROR_LOG_INTERVAL_S', 'MIB', 'PREFIX', 'PRUNE_INTERVAL_S',
    'RECORD_OVERHEAD_BYTES', 'RETRY_INTERVAL_S', 'SUFFIX', 'DecisionLog',
    'estimate_bytes', 'log_files', 'prune']

MIB = 1024 * 1024
DAY_S = 86400.0

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
        # PRUNE_INTERVAL_S is read here, so setting it on this module
        # (as tests do) takes effect for a writer thread started after.
        writer = RotatingWriter(PRUNE_INTERVAL_S)
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

    def _write(self, writer: 'RotatingWriter', item: _Item) -> None:
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
