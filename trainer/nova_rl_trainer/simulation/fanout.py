"""Fan independent work out: in this process, local worker processes or Ray.

::

    from nova_rl_trainer.simulation.fanout import Fanout

    with Fanout(workers=2) as fan:               # or ray_address='HOST:PORT'
        results = fan.map(simulate_window, windows)   # ordered like windows

- ``fn`` must be a picklable top-level function and every item picklable;
  results come back in the order of ``items``.
- ``workers == 1`` and no ``ray_address``: ``fn`` runs here, in order (no
  pickling, no processes; the reference the other paths must equal).
- ``workers > 1``: spawned worker processes (not forked: the trainer may
  have torch or threads loaded), at most ``workers`` at once, each limited
  to one BLAS/OpenMP thread, since a thread pool per worker on top of the
  processes oversubscribes the cores (several times slower measured on 2
  cores). The pool lives as long as the ``with`` block, so a worker keeps
  whatever it caches at module level (a workload, say) between calls.
  On Linux a worker is killed when this process dies, however it dies
  (``kill``, a scheduler's timeout), instead of finishing its simulation
  as an orphan; elsewhere it outlives a killed parent as before.
- ``ray_address``: each item is a Ray task on an existing cluster
  (``ray start --head ...``; the address as ``ray start`` prints it).
  ``import ray`` happens only then, so Ray is never required; Ray's workers
  must be able to import this package.
- An exception in ``fn`` is raised by ``map`` with its own type and
  message (the worker's traceback is chained as its cause).
- ``map(fn, items, progress=callback)`` calls ``fn(item, tick)`` instead,
  where ``tick(n)`` reports ``n`` units of work done; ``callback(n)`` gets
  them in this process (live from local workers, when each task finishes
  from Ray). This is what drives a progress bar over several simulations.

A bad address or a missing Ray is a :class:`FanoutError` with one line
saying what is wrong.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
from typing import Any, Callable, Iterable, Sequence

_ONE_THREAD = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')


class FanoutError(ValueError):
    """Fan-out cannot start (a bad option, Ray missing or not answering):
    bad input, so the command line prints it as one line, exit 2."""


class Fanout:
    """Ordered ``map`` over in-process, local-process or Ray workers."""

    def __init__(self, workers: int = 1, ray_address: str | None = None):
        if isinstance(workers, bool) or not isinstance(workers, int) \
                or workers < 1:
            raise FanoutError(f'workers must be an integer >= 1, '
                              f'not {workers!r}')
        self.workers = workers
        self.ray_address = ray_address or None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._queue = None
        self._ray = None

    @property
    def kind(self) -> str:
        """``'ray'``, ``'processes'`` or ``'inline'``."""
        if self.ray_address:
            return 'ray'
        return 'processes' if self.workers > 1 else 'inline'

    def __enter__(self) -> 'Fanout':
        if self.kind == 'ray':
            self._ray = _connect_ray(self.ray_address)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the local workers (Ray stays up; only this client leaves)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None

    def map(self, fn: Callable, items: Iterable,
            progress: Callable[[int], None] | None = None) -> list:
        """``[fn(item) for item in items]``, fanned out; see the module."""
        items = list(items)
        if not items:
            return []
        if self.kind == 'inline':
            if progress is None:
                return [fn(item) for item in items]
            return [fn(item, progress) for item in items]
        if self.kind == 'ray':
            return self._map_ray(fn, items, progress)
        return self._map_processes(fn, items, progress)

    # -- local processes ---------------------------------------------------

    def _ensure_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context('spawn')
            self._queue = ctx.Queue()
            # The workers' parent is this process (spawn execs the
            # interpreter directly): a worker whose parent is another one
            # by the time it starts was orphaned already.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx,
                initializer=_init_worker,
                initargs=(self._queue, os.getpid()))
        return self._pool

    def _map_processes(self, fn: Callable, items: Sequence,
                       progress: Callable[[int], None] | None) -> list:
        pool = self._ensure_pool()
        # Spawned workers read these when they first load a BLAS; the
        # initializer limits whatever is loaded already.
        saved = {k: os.environ.get(k) for k in _ONE_THREAD}
        os.environ.update({k: '1' for k in _ONE_THREAD})
        try:
            futures = [pool.submit(_call, fn, item, progress is not None)
                       for item in items]
        finally:
            _restore(saved)
        if progress is None:
            return [f.result() for f in futures]
        return _pump_until_done(futures, self._queue, progress)

    # -- Ray -----------------------------------------------------------------

    def _map_ray(self, fn: Callable, items: Sequence,
                 progress: Callable[[int], None] | None) -> list:
        ray = self._ray
        remote = ray.remote(_call_counting)
        refs = [remote.remote(fn, item, progress is not None)
                for item in items]
        try:
            done = ray.get(refs)
        except ray.exceptions.RayTaskError as e:
            # Raise what fn raised (type and message), not Ray's wrapper.
            cause = getattr(e, 'cause', None)
            if isinstance(cause, BaseException):
                raise cause from e
            raise
        results = []
        for result, ticks in done:
            if progress is not None and ticks:
                progress(ticks)
            results.append(result)
        return results


# -- worker side (top-level: pickled by reference) ---------------------------

_TICKS: dict[str, Any] = {'queue': None}


def _init_worker(q, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    os.environ.update({k: '1' for k in _ONE_THREAD})
    _TICKS['queue'] = q
    try:
        import threadpoolctl
    except ImportError:     # pragma: no cover - a trainer dependency
        return
    # Kept referenced: the limit holds for the worker's life.
    _TICKS['limits'] = threadpoolctl.threadpool_limits(limits=1)


#: prctl(2) option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this worker when its parent dies.

    A parent killed by SIGTERM or SIGKILL never shuts its pool down (only
    Ctrl-C reaches the workers too, through the process group), and its
    workers, adopted by init, went on with their simulations for as long
    as those took: nobody would ever read the result.

    Linux only: prctl(PR_SET_PDEATHSIG) is Linux's (macOS and Windows have
    no such call, and a libc without ``prctl`` has nothing to call), so
    elsewhere, or if the call fails, the worker carries on unprotected as
    before: an orphan then wastes CPU until its task ends but computes
    nothing wrong, which is no reason to refuse to run. The kernel's
    "parent" is the thread that started the worker (the one calling
    ``Fanout.map``, the main thread in every caller), so ``map`` must not
    be called from a thread that ends before the pool does.
    """
    if not sys.platform.startswith('linux'):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    if prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return
    # The parent may have died between starting this process and the
    # prctl call: no signal comes then, but the parent is init (or a
    # subreaper) already.
    if os.getppid() != parent_pid:
        os._exit(1)


def _call(fn: Callable, item, with_tick: bool):
    """Run ``fn``; with ticks, return ``(result, ticks sent)`` so the
    caller knows how many to wait for."""
    if not with_tick:
        return fn(item)
    q = _TICKS['queue']
    sent = [0]

    def tick(n: int) -> None:
        sent[0] += n
        q.put(n)

    return fn(item, tick), sent[0]


def _call_counting(fn: Callable, item, with_tick: bool):
    """Ray side: run ``fn`` counting its ticks, returned with the result."""
    if not with_tick:
        return fn(item), 0
    total = [0]

    def tick(n: int) -> None:
        total[0] += n

    return fn(item, tick), total[0]


def _pump_until_done(futures, q, progress: Callable[[int], None]) -> list:
    """Feed the workers' ticks to ``progress`` until every future is done
    and every tick it sent has arrived."""
    stop = threading.Event()
    received = [0]

    def take(n: int) -> None:
        received[0] += n
        progress(n)

    def pump() -> None:
        while not stop.is_set():
            try:
                take(q.get(timeout=0.2))
            except queue.Empty:
                continue

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        done = [f.result() for f in futures]
    except BaseException:
        stop.set()
        pumper.join()
        _drain(q, take)
        raise
    stop.set()
    pumper.join()
    # A multiprocessing.Queue writes from a feeder thread: ticks a task put
    # just before it returned may still be on their way.
    expected = sum(sent for _, sent in done)
    while received[0] < expected:
        take(q.get(timeout=_LATE_TICK_TIMEOUT_S))
    return [result for result, _ in done]


#: How long the last ticks of finished tasks may take to arrive.
_LATE_TICK_TIMEOUT_S = 60.0


def _drain(q, take: Callable[[int], None]) -> None:
    while True:
        try:
            take(q.get_nowait())
        except queue.Empty:
            return


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _connect_ray(address: str):
    try:
        import ray
    except ImportError:
        raise FanoutError(
            f'--ray-address {address} needs Ray, which is not installed '
            f'(pip install ray), or omit it to use local worker '
            f'processes') from None
    # ray.init retries an address that does not answer for many minutes.
    _probe(address)
    try:
        ray.init(address=address, logging_level='ERROR',
                 log_to_driver=False, ignore_reinit_error=True)
    except Exception as e:  # noqa: BLE001 - Ray raises many kinds here
        first = str(e).strip().splitlines()[0] if str(e).strip() else \
            type(e).__name__
        raise FanoutError(f'cannot connect to the Ray cluster at '
                          f'{address}: {first}') from None
    return ray


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing accepts connections at ``HOST:PORT``."""
    if address in ('auto', 'local'):
        return      # Ray resolves these itself
    host, sep, port = address.removeprefix('ray://').rpartition(':')
    if not sep:
        return
    try:
        with socket.create_connection((host.strip('[]'), int(port)),
                                      timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise FanoutError(f'cannot connect to the Ray cluster at {address}: '
                          f'{e}') from None
