"""Running policies on one setup: a single run, or several side by side.

Every policy evaluated on a :class:`~nova_rl_trainer.simulation.setup.Setup`
plays the same workload, so the comparison is paired. Several runs fan out
(:mod:`~nova_rl_trainer.simulation.fanout`: worker processes, ``jobs``, or
Ray), each worker rebuilding the workload from the setup (deterministic, so
identical), with one progress bar over all of them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Sequence

from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.simulation.fanout import Fanout
from nova_rl_trainer.simulation.metrics import RunResult
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator


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


def evaluate(setup: Setup, policy_specs: Sequence[str], jobs: int = 1,
             show_progress: bool = True, ray_address: str | None = None
             ) -> list[RunResult]:
    """Run every policy on ``setup``; results in the order given.

    ``jobs`` local worker processes (1: in this process) or, with
    ``ray_address``, Ray tasks (:mod:`fanout`)."""
    return run_pairs([(setup, spec) for spec in policy_specs], jobs,
                     show_progress, ray_address)


def run_pairs(pairs: Sequence[tuple[Setup, str]], jobs: int = 1,
              show_progress: bool = True, ray_address: str | None = None
              ) -> list[RunResult]:
    """Run each ``(setup, policy_spec)``, fanned out; results in order.

    A worker builds each setup's workload once and reuses it for the
    policies that follow on it."""
    for setup in dict.fromkeys(s for s, _ in pairs):
        setup.make_objective()
    for spec in dict.fromkeys(p for _, p in pairs):
        # Fail on a bad name before minutes of simulation, not after.
        policies_mod.make_policy(spec)
    if not pairs:
        return []
    # Longest first: an artifact policy (feature matrix and network per
    # decision) takes 20-50x longer than a heuristic, so it starts at once
    # while the other workers run the heuristics.
    order = sorted(range(len(pairs)), key=lambda i: not _is_slow(pairs[i][1]))
    bar = _progress_bar(_total_decisions(pairs)) if show_progress else None
    try:
        with Fanout(max(1, min(jobs, len(pairs))), ray_address) as fan:
            done = fan.map(_run_pair, [pairs[i] for i in order],
                           progress=None if bar is None else bar.update)
    finally:
        _WORKLOAD.clear()   # in-process runs: do not keep a trace alive
        if bar is not None:
            bar.close()
    out: list = [None] * len(pairs)
    for i, result in zip(order, done):
        out[i] = result
    return out


# Worker side: the last setup's workload, reused by the next policy on it.
_WORKLOAD: dict[Setup, simulator.Workload] = {}


def _run_pair(pair: tuple[Setup, str], tick=None) -> RunResult:
    setup, spec = pair
    return run_one(setup, spec, _cached_workload(setup), progress=tick)


def _total_decisions(pairs: Sequence[tuple[Setup, str]]) -> int | None:
    """Decisions in all runs, for the bar (unknown for several setups:
    loading each trace here would cost as much as a short run)."""
    setups = set(s for s, _ in pairs)
    if len(setups) != 1:
        return None
    return len(next(iter(setups)).load_trace()) * len(pairs)


def _is_slow(spec: str) -> bool:
    """Whether a policy spec runs a network per decision (not a baseline)."""
    try:
        name, _ = policies_mod.split_spec(spec)
    except ValueError:
        return False
    return name not in baselines.BASELINES


def _progress_bar(total: int | None):
    from tqdm import tqdm
    return tqdm(total=total, unit='decision', unit_scale=True,
                smoothing=0.1, mininterval=0.5)


# -- held-out windows: paired, independent cases from one trace ---------------

@dataclasses.dataclass(frozen=True)
class Window:
    """``[start_s, end_s)`` of ``setup``'s trace (``end_s`` None: to the
    end), played from the state the setup's Nova weighers built before it."""

    setup: Setup
    start_s: float
    end_s: float | None

    @property
    def label(self) -> str:
        name = self.setup.name or os.path.basename(self.setup.trace_path)
        end = '' if self.end_s is None else f'{self.end_s / 86400:.2f}'
        return (f'{name} seed {self.setup.seed} days '
                f'{self.start_s / 86400:.2f}-{end}')


def split_windows(setup: Setup, windows: int,
                  window_days: float | None = None) -> list[Window]:
    """``windows`` disjoint windows of ``setup``'s trace, ``window_days``
    long (default: the span divided evenly), spread evenly over it.

    Each window starts from the state the setup's Nova weighers (the
    fallback a gated policy abstains to) built before it, the same for
    every policy, so a window's paired difference is that window's
    decisions alone and the windows are independent cases (disjoint
    workloads, starting states no compared policy influenced). A
    ValueError says why windows cannot be cut (overlap, bad numbers)."""
    if windows < 1:
        raise ValueError('--windows must be at least 1')
    if window_days is not None and not (math.isfinite(window_days)
                                        and window_days > 0):
        raise ValueError('--window-days must be a number > 0')
    arrivals = setup.load_trace().arrival_s
    lo, hi = float(arrivals.min()), float(arrivals.max())
    span = max(hi - lo, 1.0)
    step = span / windows
    length = step if window_days is None else window_days * 86400.0
    if length > step * (1 + 1e-9):
        raise ValueError(
            f'{windows} windows of {window_days:g} days do not fit in the '
            f'{span / 86400:.3g} days of {setup.name or setup.trace_path} '
            'without overlapping (and so would not be independent); use '
            'fewer or shorter windows')
    out = []
    for k in range(windows):
        start = lo + k * step
        end = None if (k == windows - 1 and window_days is None) \
            else start + length
        out.append(Window(setup, start, end))
    return out


def evaluate_windows(windows: Sequence[Window], policy_specs: Sequence[str],
                     jobs: int = 1, show_progress: bool = True,
                     ray_address: str | None = None
                     ) -> list[list[dict]]:
    """Each policy on each window; ``[window][policy]`` metrics: the
    objective terms, ``objective_value`` and ``decisions`` accrued in the
    window, plus the policy's own run metrics (``applied_fraction``)."""
    for spec in dict.fromkeys(policy_specs):
        policies_mod.make_policy(spec)
    for setup in dict.fromkeys(w.setup for w in windows):
        setup.make_objective()
    bar = _progress_bar(None) if show_progress else None
    items = [(w, tuple(policy_specs)) for w in windows]
    try:
        with Fanout(max(1, min(jobs, len(items))), ray_address) as fan:
            return fan.map(_run_window, items,
                           progress=None if bar is None else bar.update)
    finally:
        _REFERENCE.clear()
        _WORKLOAD.clear()
        if bar is not None:
            bar.close()


# Worker side: the fallback's simulation of the last setup, advanced from
# window to window (windows come in time order, so a worker replays the
# trace about once).
_REFERENCE: dict[str, Any] = {}


def _reference_at(window: Window) -> simulator.Simulation:
    setup = window.setup
    sim = _REFERENCE.get('sim')
    if _REFERENCE.get('setup') != setup or sim is None \
            or sim.now > window.start_s:
        sim = simulator.Simulation(_cached_workload(setup), setup.cluster,
                                   setup.make_objective())
        sim.enable_usage()      # policies that read it see what Nova would
        _REFERENCE.update(setup=setup, sim=sim,
                          policy=policies_mod.make_policy(
                              setup.config.nova_weighers))
    sim.play(_REFERENCE['policy'], until_s=window.start_s)
    return sim


def _cached_workload(setup: Setup) -> simulator.Workload:
    workload = _WORKLOAD.get(setup)
    if workload is None:
        _WORKLOAD.clear()
        workload = _WORKLOAD[setup] = setup.workload()
    return workload


def _run_window(item: tuple[Window, tuple[str, ...]], tick=None
                ) -> list[dict]:
    window, specs = item
    start = _reference_at(window)
    before = start.terms()
    decided = _decided(start)
    objective = start.objective
    out = []
    for spec in specs:
        branch = start.clone()
        policy = policies_mod.make_policy(spec)
        branch.play(policy, until_s=window.end_s)
        if window.end_s is None:
            branch.pending()    # to the end of the trace, accrued
        after = branch.terms()
        terms = {k: after[k] - before[k] for k in after}
        m = {'policy': spec, **terms,
             'objective_value': objective.value(terms),
             'decisions': _decided(branch) - decided,
             'window': [window.start_s, window.end_s]}
        extra = getattr(policy, 'run_metrics', None)
        if extra is not None:
            m.update(extra())
        out.append(m)
        if tick is not None:
            tick(m['decisions'])
    return out


def _decided(sim: simulator.Simulation) -> int:
    """Requests decided so far, not counting the one left pending (the
    next window's first)."""
    return sim.decisions - (1 if sim.current_vm >= 0 else 0)
