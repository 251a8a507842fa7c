"""Running policies on one setup: a single run, or several side by side.

Every policy evaluated on a :class:`~nova_rl_trainer.simulation.setup.Setup`
plays the same workload, so the comparison is paired. Several
policies run in parallel worker processes (``jobs``), each rebuilding the
workload from the setup (deterministic, so identical), with one progress bar
over all of them.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import queue
import threading
import time
from typing import Callable, Sequence

from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation.metrics import RunResult
from nova_rl_trainer.simulation.setup import Setup


def run_one(setup: Setup, policy_spec: str,
            workload: simulator.Workload | None = None,
            progress: Callable[[int], None] | None = None) -> RunResult:
    """Simulate ``policy_spec`` on ``setup``; metrics gain the run's labels."""
    workload = workload or setup.workload()
    policy = policies_mod.make_policy(policy_spec)
    objective = setup.make_objective()
    sim = simulator.Simulation(workload, setup.cluster, objective)
    started = time.perf_counter()
    result = sim.run(policy, progress)
    wall = time.perf_counter() - started
    m = result.metrics
    labels = {'policy': policy_spec, 'objective': objective.name,
              'objective_weights': dict(objective.weights),
              'seed': setup.seed, 'trace': workload.trace.name}
    result.metrics = {**labels, **m, 'wall_s': round(wall, 3),
                      'decisions_per_s': (round(m['decisions'] / wall)
                                          if wall > 0 else None)}
    return result


# Worker side of evaluate(): the workload is built once per process.
_WORKER: dict = {}


def _init_worker(setup: Setup, q) -> None:
    _WORKER['setup'] = setup
    _WORKER['queue'] = q
    _WORKER['workload'] = None


def _worker_run(policy_spec: str) -> RunResult:
    if _WORKER['workload'] is None:
        _WORKER['workload'] = _WORKER['setup'].workload()
    q = _WORKER['queue']
    return run_one(_WORKER['setup'], policy_spec, _WORKER['workload'],
                   progress=(lambda n: q.put(n)) if q is not None else None)


def evaluate(setup: Setup, policy_specs: Sequence[str], jobs: int = 1,
             show_progress: bool = True) -> list[RunResult]:
    """Run every policy on ``setup``; results in the order given."""
    for spec in policy_specs:
        # Fail on a bad name before minutes of simulation, not after.
        policies_mod.make_policy(spec)
    setup.make_objective()
    workload = setup.workload() if jobs <= 1 or len(policy_specs) <= 1 \
        else None
    bar = None
    if show_progress:
        total = (len(workload) if workload is not None
                 else len(setup.load_trace())) * len(policy_specs)
        bar = _progress_bar(total)
    try:
        if workload is not None:
            return [run_one(setup, spec, workload,
                            bar.update if bar else None)
                    for spec in policy_specs]
        return _evaluate_parallel(setup, policy_specs, jobs, bar)
    finally:
        if bar is not None:
            bar.close()


_BLAS_THREADS = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS',
                 'MKL_NUM_THREADS')


def _evaluate_parallel(setup: Setup, policy_specs: Sequence[str], jobs: int,
                       bar) -> list[RunResult]:
    # Each worker is one simulation: a BLAS thread pool per worker on top
    # of the worker processes oversubscribes the cores, which made
    # artifact policies (small matrix products per decision) several times
    # slower. Spawned workers read these when they import numpy.
    saved = {k: os.environ.get(k) for k in _BLAS_THREADS}
    os.environ.update({k: '1' for k in _BLAS_THREADS})
    try:
        return _run_pool(setup, policy_specs, jobs, bar)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_pool(setup: Setup, policy_specs: Sequence[str], jobs: int,
              bar) -> list[RunResult]:
    ctx = multiprocessing.get_context('spawn')
    q = ctx.Queue() if bar is not None else None
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            try:
                bar.update(q.get(timeout=0.2))
            except queue.Empty:
                continue

    pumper = None
    if q is not None:
        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
    try:
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(jobs, len(policy_specs)), mp_context=ctx,
                initializer=_init_worker, initargs=(setup, q)) as pool:
            # Longest first: an artifact policy (feature matrix and network
            # per decision) takes 20-50x longer than a heuristic, so it
            # starts at once while the other workers run the heuristics.
            order = sorted(range(len(policy_specs)),
                           key=lambda i: not _is_slow(policy_specs[i]))
            futures = {i: pool.submit(_worker_run, policy_specs[i])
                       for i in order}
            return [futures[i].result() for i in range(len(policy_specs))]
    finally:
        stop.set()
        if pumper is not None:
            pumper.join()
            while True:
                try:
                    bar.update(q.get_nowait())
                except queue.Empty:
                    break


def _is_slow(spec: str) -> bool:
    """Whether a policy spec runs a network per decision (not a baseline)."""
    try:
        name, _ = policies_mod.split_spec(spec)
    except ValueError:
        return False
    return name not in baselines.BASELINES


def _progress_bar(total: int):
    from tqdm import tqdm
    return tqdm(total=total, unit='decision', unit_scale=True,
                smoothing=0.1, mininterval=0.5)
