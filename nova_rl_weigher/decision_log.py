"""The decision log: one JSON line per weighing call, never in the way.

Records are handed to a bounded queue and written by a daemon thread, so a
slow disk costs scheduling nothing: when the queue is full, the record is
dropped and counted. Each process writes its own file
(``decisions-<host>-<pid>.jsonl``), because nova-scheduler forks workers and
several writers must not share one file's rotation. A file is rotated when it
reaches its size limit and the oldest rotated files in the directory are
deleted to keep the whole log under its disk budget.

The thread is started lazily on first use and again in a forked child (a
thread does not survive ``fork``), so a weigher created before nova forks its
workers logs from every worker.
"""

from __future__ import annotations

import glob
import json
import os
import queue
import re
import socket
import threading
import time
from typing import Callable

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

PREFIX = 'decisions-'
SUFFIX = '.jsonl'
_ROTATED = re.compile(r'\.\d{8}T\d{6}(-\d+)?\.jsonl$')


class DecisionLog:
    """Asynchronous, rotating, size-bounded JSON-lines writer."""

    def __init__(self, on_drop: Callable[[str], None] | None = None) -> None:
        self._on_drop = on_drop or (lambda reason: None)
        self._lock = threading.Lock()
        self._pid = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def _ensure_started(self, queue_size: int) -> queue.Queue:
        pid = os.getpid()
        if self._pid == pid and self._queue is not None:
            return self._queue
        with self._lock:
            if self._pid != pid or self._queue is None:
                q: queue.Queue = queue.Queue(maxsize=queue_size)
                thread = threading.Thread(
                    target=self._run, args=(q,), daemon=True,
                    name='rl-weigher-decision-log')
                thread.start()
                self._queue, self._thread, self._pid = q, thread, pid
        return self._queue

    def submit(self, make_record: Callable[[], dict], directory: str,
               file_bytes: int, total_bytes: int,
               queue_size: int = 1000) -> bool:
        """Queue a record for writing; never blocks. False if dropped.

        ``make_record`` runs on the writer thread, so turning arrays into
        JSON and explaining scores stay off the scheduling path.
        """
        try:
            self._ensure_started(queue_size).put_nowait(
                (make_record, directory, file_bytes, total_bytes))
            return True
        except queue.Full:
            self._on_drop('queue_full')
            return False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued records are written (for tests and shutdown)."""
        q = self._queue
        if q is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        try:
            q.put((done.set, None, 0, 0), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread."""
        with self._lock:
            q, thread = self._queue, self._thread
            if q is None or self._pid != os.getpid():
                return
            self._queue = self._thread = self._pid = None
        try:
            q.put((None, None, 0, 0), timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def _run(self, q: queue.Queue) -> None:
        writer = _RotatingWriter()
        while True:
            make_record, directory, file_bytes, total_bytes = q.get()
            if make_record is None:     # close()
                writer.close()
                return
            if directory is None:
                make_record()      # a flush marker
                continue
            try:
                line = json.dumps(make_record(), separators=(',', ':'),
                                  allow_nan=False)
                writer.write(directory, line + '\n', file_bytes, total_bytes)
            except Exception:
                self._on_drop('write_error')
                LOG.exception('rl_weigher: could not write a decision record')


class _RotatingWriter:
    def __init__(self) -> None:
        self._dir = None
        self._file = None
        self._path = None
        self._size = 0

    def _open(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        name = f'{PREFIX}{socket.gethostname()}-{os.getpid()}{SUFFIX}'
        self._path = os.path.join(directory, name)
        self._file = open(self._path, 'a', encoding='utf-8')
        self._size = self._file.tell()
        self._dir = directory

    def write(self, directory: str, line: str, file_bytes: int,
              total_bytes: int) -> None:
        if self._file is None or directory != self._dir:
            self.close()
            self._open(directory)
        data = line
        self._file.write(data)
        self._file.flush()
        self._size += len(data.encode('utf-8'))
        if self._size >= file_bytes:
            self._rotate(file_bytes, total_bytes)

    def _rotate(self, file_bytes: int, total_bytes: int) -> None:
        self.close()
        stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
        base = self._path[:-len(SUFFIX)]
        target = f'{base}.{stamp}{SUFFIX}'
        n = 1
        while os.path.exists(target):
            target = f'{base}.{stamp}-{n}{SUFFIX}'
            n += 1
        os.replace(self._path, target)
        prune(self._dir, total_bytes)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def prune(directory: str, total_bytes: int) -> None:
    """Delete the oldest rotated decision files beyond ``total_bytes``."""
    files = []
    for path in glob.glob(os.path.join(directory, PREFIX + '*' + SUFFIX)):
        try:
            st = os.stat(path)
        except OSError:
            continue
        files.append((st.st_mtime, path, st.st_size))
    files.sort()
    used = sum(size for _, _, size in files)
    for _, path, size in files:
        if used <= total_bytes:
            break
        # Only rotated files (with a timestamp) go; a live file belongs to
        # a running process, which rotates it itself.
        if not _ROTATED.search(path):
            continue
        try:
            os.unlink(path)
            used -= size
        except OSError:
            pass
