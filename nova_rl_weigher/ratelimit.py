"""Rate-limited logging: each kind of message at most once per interval.

A scheduler handles many requests a second. An error that repeats on every
request (an unreadable policy, a full log directory) must not write a
traceback per request, so :class:`RateLimitedLog` logs the first occurrence
of each *kind* and then nothing for that kind until ``interval_s`` has
passed; the next message it logs says how many were suppressed in between.
"""

from __future__ import annotations

import collections
import logging as std_logging
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable

from oslo_log import log as logging

#: Default interval between two messages of the same kind.
INTERVAL_S = 60.0

#: Kinds remembered at most. Kinds may come from data (an aggregate's
#: metadata value), so the table is bounded: when full, kinds not seen for
#: an interval are forgotten, and if all are recent, new kinds share one
#: entry.
MAX_KINDS = 1024
_OVERFLOW_KIND = '<other kinds>'


class RateLimitedLog:
    """Logs each kind of message at most once per interval, with a count.

    ``logger`` defaults to the logger of the module that creates the
    instance; ``clock`` is monotonic time (tests drive their own). Thread-
    safe; the lock is replaced in a forked child (a lock held by another
    thread at fork time would stay held there forever).
    """

    def __init__(self, interval_s: float = INTERVAL_S, logger: Any = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_kinds: int = MAX_KINDS) -> None:
        self._interval = interval_s
        if logger is None:
            # The creating module's logger, so messages keep their origin.
            caller = sys._getframe(1).f_globals.get('__name__', __name__)
            logger = logging.getLogger(caller)
        self._logger = logger
        self._clock = clock
        self._max_kinds = max(1, max_kinds)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: collections.Counter = collections.Counter()
        ref = weakref.ref(self)
        os.register_at_fork(
            after_in_child=lambda: ref() is not None and ref()._reset_lock())

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()

    def error(self, kind: str, msg: str, *args: Any,
              exc_info: bool = False) -> bool:
        """Log at ERROR unless ``kind`` was logged within the interval."""
        return self.log(std_logging.ERROR, kind, msg, *args,
                        exc_info=exc_info)

    def warning(self, kind: str, msg: str, *args: Any,
                exc_info: bool = False) -> bool:
        """Log at WARNING unless ``kind`` was logged within the interval."""
        return self.log(std_logging.WARNING, kind, msg, *args,
                        exc_info=exc_info)

    def log(self, level: int, kind: str, msg: str, *args: Any,
            exc_info: bool = False) -> bool:
        """Log unless suppressed; True if the message was logged."""
        now = self._clock()
        with self._lock:
            if kind not in self._last and len(self._last) >= self._max_kinds:
                self._forget_before(now - self._interval)
                if len(self._last) >= self._max_kinds:
                    kind = _OVERFLOW_KIND
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._suppressed[kind] += 1
                return False
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            msg += ' (%d similar messages suppressed)' % suppressed
        self._logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def suppressed(self, kind: str) -> int:
        """How many messages of ``kind`` are suppressed since the last one."""
        with self._lock:
            return self._suppressed.get(kind, 0)

    def _forget_before(self, cutoff: float) -> None:
        for kind in [k for k, t in self._last.items() if t < cutoff]:
            del self._last[kind]
            self._suppressed.pop(kind, None)
