"""The weigher's metrics as a Prometheus textfile, for node_exporter.

With ``[rl_weigher] metrics_file`` set, every scheduler process rewrites
that file (atomically, :func:`fileio.atomic_write`) at most every
``metrics_interval`` seconds in the Prometheus text exposition format, for
node_exporter's textfile collector (``--collector.textfile.directory``;
it reads only files named ``*.prom``), so operators graph the weigher
beside Nova's own metrics:

``nova_rl_weigher_calls_total``
    weighing calls (modes ``shadow`` and ``gated``).
``nova_rl_weigher_applied_total``
    calls where the policy's weights were applied.
``nova_rl_weigher_abstained_total{reason}``
    calls where the weigher abstained, by reason: every reason of
    :mod:`gate` (:data:`ABSTAIN_REASONS`) is always present.
``nova_rl_weigher_errors_total``
    failures inside the weigher (each also an abstention or a policy error).
``nova_rl_weigher_decision_log_dropped_total{reason}``
    decision records not written (:data:`DROP_REASONS`).
``nova_rl_weigher_latency_seconds``
    histogram (:data:`LATENCY_BUCKETS_S`) of the whole weighing call.
``nova_rl_weigher_policy_info{version,mode}``
    1, labelled with the policy version last used and the mode.

Every sample carries ``pid``. nova-scheduler forks workers, each with its
own counters; a ``{pid}`` in ``metrics_file`` is replaced by the process
id, so each worker writes its own file (``rl_weigher_{pid}.prom``), and
files of processes of this host that have exited are deleted, so that their
frozen counters do not linger. Sum over workers with ``sum without (pid)``.
Without ``{pid}`` every worker rewrites the same file with its own
counters: fine for a single worker only.

The counters are :attr:`scorer.Scorer.stats` (one set of counters); this
module adds the latency histogram and the policy label. The weighing path
only records the call and, when the interval has passed, wakes a writer
thread: it never does I/O nor waits for a lock held during I/O. A write
that fails is logged at most once a minute (:mod:`ratelimit`).
"""

from __future__ import annotations

import bisect
import glob
import os
import queue
import re
import stat
import threading
import time
import weakref
from typing import Any, Callable, Mapping

from oslo_log import log as logging

from nova_rl_weigher import fileio
from nova_rl_weigher import gate
from nova_rl_weigher.log_files import _pid_alive
from nova_rl_weigher.ratelimit import RateLimitedLog

LOG = logging.getLogger(__name__)

PREFIX = 'nova_rl_weigher_'
#: Replaced by the process id in ``metrics_file``.
PID_FIELD = '{pid}'
#: Upper bounds (seconds) of the latency histogram's buckets; ``+Inf`` is
#: added. The default ``latency_budget_ms`` (20 ms) is a bound.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1,
                     0.25, 0.5, 1.0, 2.5)
#: The gate's reasons to abstain, each exported even at 0 so that rates and
#: alerts on a reason exist before it first happens.
ABSTAIN_REASONS = (
    gate.MODE_SHADOW, gate.NO_HOSTS, gate.POLICY_UNAVAILABLE,
    gate.SNAPSHOT_STALE, gate.SNAPSHOT_UNAVAILABLE, gate.NON_FINITE,
    gate.OUT_OF_DISTRIBUTION, gate.LOW_CONFIDENCE, gate.OVER_LATENCY_BUDGET,
    gate.OUTSIDE_CANARY, gate.NOVA_CONFIG_MISMATCH, gate.NEVER_ACT,
    gate.NO_SAFE_HOST, gate.ERROR)
#: The reasons :class:`decision_log.DecisionLog` drops a record for.
DROP_REASONS = ('unavailable', 'queue_bytes', 'queue_full', 'write_error',
                'record_error')
#: The mode in which the weigher does nothing and counts nothing.
MODE_OFF = 'off'
ERROR_LOG_INTERVAL_S = 60.0

_LABEL_ESCAPES = str.maketrans({'\\': r'\\', '"': r'\"', '\n': r'\n'})


def escape_label(value: str) -> str:
    """A label value as the text format wants it (backslash, quote and
    newline escaped)."""
    return str(value).translate(_LABEL_ESCAPES)


def _labels(labels: Mapping[str, Any]) -> str:
    return '{' + ','.join(f'{k}="{escape_label(v)}"'
                          for k, v in labels.items()) + '}'


def _value(v: float) -> str:
    # Counters are ints; the latency sum is a finite float.
    return str(v) if isinstance(v, int) else repr(float(v))


class _Family:
    """One metric's HELP/TYPE header and samples."""

    def __init__(self, name: str, kind: str, help_: str) -> None:
        self.lines = [f'# HELP {PREFIX}{name} {help_}',
                      f'# TYPE {PREFIX}{name} {kind}']
        self.name = PREFIX + name

    def add(self, value: float, labels: Mapping[str, Any],
            suffix: str = '') -> '_Family':
        self.lines.append(f'{self.name}{suffix}{_labels(labels)} '
                          f'{_value(value)}')
        return self


def render(stats: Mapping[str, int], latency: 'Histogram',
           policy_version: str | None, mode: str, pid: int) -> str:
    """The exposition text for one process's counters."""
    base = {'pid': pid}
    families = [
        _Family('calls_total', 'counter', 'Weighing calls handled by the '
                'learned weigher (modes shadow and gated).')
        .add(stats.get('calls', 0), base),
        _Family('applied_total', 'counter', "Weighing calls where the "
                "policy's weights were applied.")
        .add(stats.get('applied', 0), base),
    ]
    families.append(_by_reason(
        _Family('abstained_total', 'counter', 'Weighing calls where the '
                'weigher abstained (Nova decided), by reason.'),
        stats, 'abstained.', ABSTAIN_REASONS, base))
    families.append(_Family('errors_total', 'counter', 'Failures inside '
                            'the weigher (each logged, rate-limited).')
                    .add(stats.get('errors', 0), base))
    families.append(_by_reason(
        _Family('decision_log_dropped_total', 'counter', 'Decision records '
                'not written to the decision log, by reason.'),
        stats, 'decision_log_dropped.', DROP_REASONS, base))
    hist = _Family('latency_seconds', 'histogram', 'Duration of weighing '
                   'calls in seconds.')
    cumulative = 0
    bounds = [repr(float(b)) for b in LATENCY_BUCKETS_S] + ['+Inf']
    for bound, count in zip(bounds, latency.counts):
        cumulative += count
        hist.add(cumulative, dict(base, le=bound), '_bucket')
    hist.add(latency.total, base, '_sum').add(cumulative, base, '_count')
    families.append(hist)
    families.append(_Family('policy_info', 'gauge', 'The policy version '
                            'last used (empty: none loaded) and the mode.')
                    .add(1, dict(base, version=policy_version or '',
                                 mode=mode)))
    return '\n'.join(line for f in families for line in f.lines) + '\n'


def _by_reason(family: _Family, stats: Mapping[str, int], prefix: str,
               known: tuple[str, ...], base: Mapping[str, Any]) -> _Family:
    """The counters ``<prefix><reason>`` as samples labelled ``reason``:
    the known reasons (0 if not counted yet), then any other counted."""
    seen = {k[len(prefix):] for k in stats if k.startswith(prefix)}
    for reason in list(known) + sorted(seen - set(known)):
        family.add(stats.get(prefix + reason, 0), dict(base, reason=reason))
    return family


class Histogram:
    """Counts per latency bucket (not cumulative; ``+Inf`` last) and sum."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # le: a value equal to a bound falls in that bound's bucket.
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.total += seconds

    def copy(self) -> 'Histogram':
        other = Histogram()
        other.counts = list(self.counts)
        other.total = self.total
        return other


def resolve(path: str, pid: int | None = None) -> str:
    """``metrics_file`` with :data:`PID_FIELD` replaced by the process id."""
    return path.replace(PID_FIELD, str(os.getpid() if pid is None else pid))


def prune_dead(path: str) -> list[str]:
    """Delete the files of ``path`` (a ``metrics_file`` with ``{pid}``) of
    processes of this host that have exited; return their paths."""
    directory, name = os.path.split(path)
    if PID_FIELD not in name:
        return []       # {pid} only counts in the file name
    head, _, tail = name.partition(PID_FIELD)
    pattern = re.compile(re.escape(head) + r'(\d+)' + re.escape(tail) + '$')
    removed = []
    for found in glob.glob(os.path.join(glob.escape(directory),
                                        glob.escape(head) + '*'
                                        + glob.escape(tail))):
        m = pattern.match(os.path.basename(found))
        if m is None or _pid_alive(int(m.group(1))):
            continue
        try:
            if not stat.S_ISREG(os.lstat(found).st_mode):
                continue
            os.unlink(found)
        except OSError:
            continue
        removed.append(found)
    return removed


class Metrics:
    """This process's histogram and policy label, and the textfile writer.

    ``source`` has the counters as ``stats`` (a :class:`scorer.Scorer`;
    held weakly, as the writer thread outlives it). ``clock`` is monotonic
    time for the interval and the error log (tests drive it).
    """

    def __init__(self, source: Any, *,
                 clock: Callable[[], float] = time.monotonic,
                 error_interval_s: float = ERROR_LOG_INTERVAL_S) -> None:
        self._source = weakref.ref(source)
        self._clock = clock
        self.errors = RateLimitedLog(error_interval_s, logger=LOG,
                                     clock=clock)
        # Guards the histogram and labels only: held for a few additions,
        # never during I/O.
        self._lock = threading.Lock()
        self._latency = Histogram()
        self._version: str | None = None
        self._mode = ''
        self._due = 0.0
        self._pid: int | None = None
        self._queue: queue.Queue | None = None
        #: Files written since start (for tests and debugging).
        self.writes = 0
        ref = weakref.ref(self)
        os.register_at_fork(
            after_in_child=lambda: ref() is not None and ref()._after_fork())

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._due = 0.0         # a new worker writes its file at once

    def observe(self, seconds: float, outcome: Any, settings: Any) -> None:
        """Record one weighing call that took ``seconds``; wake the writer
        if ``settings.metrics_file`` is due.

        ``outcome`` is the call's :class:`scorer.Outcome`, ``settings`` its
        :class:`scorer.Settings`. Never raises and never blocks on I/O.
        Calls in mode ``off`` (which count nothing) are not in the
        histogram.
        """
        try:
            mode, reason = settings.mode, outcome.reason
            policy_version = outcome.policy_version
            path = settings.metrics_file
            with self._lock:
                self._mode = mode
                if mode != MODE_OFF:
                    self._latency.observe(seconds)
                # None with hosts to weigh: no policy could be loaded.
                if policy_version is not None or \
                        reason == gate.POLICY_UNAVAILABLE:
                    self._version = policy_version
            if not path:
                return
            now = self._clock()
            if now < self._due:
                return
            # Unlocked: two threads may both pass; the queue holds one
            # request, so the file is still written once.
            self._due = now + settings.metrics_interval
            try:
                self._ensure_started().put_nowait(path)
            except queue.Full:
                pass            # a write is pending: it reads fresh counters
        except Exception:  # noqa: BLE001 - metrics must never fail a call
            self.errors.error('observe', 'rl_weigher: could not record '
                              'metrics', exc_info=True)

    def text(self) -> str:
        """The exposition text of the current counters."""
        with self._lock:
            latency = self._latency.copy()
            version, mode = self._version, self._mode
        source = self._source()
        stats = source.stats if source is not None else {}
        return render(stats, latency, version, mode, os.getpid())

    def write(self, path: str) -> bool:
        """Write the file now (``{pid}`` resolved); False if it failed
        (logged at most once per interval). Never raises."""
        target = resolve(path)
        try:
            fileio.atomic_write(target, self.text())
            prune_dead(path)
        except Exception as e:  # noqa: BLE001 - the thread must live on
            self.errors.error(
                'write:' + target, 'rl_weigher: cannot write the metrics '
                'file %s: %s', target,
                e.strerror if isinstance(e, OSError) and e.strerror else e)
            return False
        self.writes += 1
        return True

    def _ensure_started(self) -> queue.Queue:
        pid = os.getpid()
        q = self._queue
        if self._pid == pid and q is not None:
            return q
        with self._lock:
            if self._pid != pid or self._queue is None:
                q = queue.Queue(maxsize=1)
                threading.Thread(target=self._run, args=(q,), daemon=True,
                                 name='rl-weigher-metrics').start()
                self._queue, self._pid = q, pid
            return self._queue

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until a pending write is done (for tests and shutdown)."""
        q = self._queue
        if q is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        try:
            q.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def _run(self, q: queue.Queue) -> None:
        while True:
            item = q.get()
            if isinstance(item, threading.Event):
                item.set()
            else:
                self.write(item)
