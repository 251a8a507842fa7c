"""The trace-driven simulator of a Nova cluster.

A :class:`Simulation` plays a :class:`Workload` (a trace made concrete for a
seed, :mod:`workload`) on a cluster, asking a policy where each request
goes. It is composed of mixins over one shared state, one concern each:

* :mod:`cluster_state`: host columns, placement's filter, placing and
  releasing VMs, each host's contribution to the accrual rates;
* :mod:`usage`: the usage snapshot policies read (rings and refresh);
* :mod:`accounting`: integration of the rates, objective terms, metrics;
* :mod:`candidates`: what a policy reads (request view, Nova's weights,
  the candidates' columns and feature matrix);
* :mod:`signals`: feature schema v2's lifetime signals and host busy
  periods, from the simulated past;
* this module: the event loop, placing, cloning and the driver
  :meth:`Simulation.play`.

Per request, as Nova 34 does it: placement keeps the hosts that fit; the
policy picks one of them; if none is left the request is rejected
(``NoValidHost``). The run ends at the trace's horizon (its last arrival or
departure); VMs with no departure run until then. Actual CPU use is sampled
every ``usage_interval_s`` (default 300 s, the Azure trace's bin): each VM's
use is drawn at a sample and holds until the next; a VM arriving between
samples uses its draw for the current sample.

Stepping API: :meth:`Simulation.next_decision` advances to the next request
that has a candidate and returns its VM index (-1 at the end);
:attr:`Simulation.fit` is the candidate mask, :attr:`Simulation.current_vm`
the pending request (-1 if none); :meth:`Simulation.place` puts it on a
host; :meth:`Simulation.cost` is the objective accrued so far.

Driver: :meth:`Simulation.play` lets a policy place requests until the end
of the trace, an instant, or a number of placements; :meth:`Simulation.run`
plays the whole workload and returns the metrics. Every loop that lets a
policy drive the simulation (evaluation, warm starts, branches, imitation,
calibration, validation) goes through :meth:`~Simulation.play`.
"""

from __future__ import annotations

import copy
from typing import Callable, Protocol

import numpy as np

from nova_rl_weigher import features

from nova_rl_trainer.simulation.accounting import Accounting
from nova_rl_trainer.simulation.candidates import Candidates
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.cluster_state import ClusterState
from nova_rl_trainer.simulation import metrics as metrics_mod
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation.signals import PlacementSignals
from nova_rl_trainer.simulation.usage import UsageSnapshot
# Re-exported: callers import the workload's names from here.
from nova_rl_trainer.simulation.workload import ARRIVE  # noqa: F401
from nova_rl_trainer.simulation.workload import DEPART  # noqa: F401
from nova_rl_trainer.simulation.workload import SimConfig  # noqa: F401
from nova_rl_trainer.simulation.workload import TICK  # noqa: F401
from nova_rl_trainer.simulation.workload import Workload  # noqa: F401


class Policy(Protocol):
    """What :meth:`Simulation.play` needs of a policy (see
    :mod:`policies`). ``sim`` is the simulation it is bound to (None
    before :meth:`bind`)."""

    name: str
    needs_usage: bool
    sim: 'Simulation | None'
    #: Optional: the feature schema it reads (an artifact policy's own;
    #: default ``features.SCHEMA``), which ``candidate_features`` computes.
    # feature_schema: features.Schema

    def bind(self, sim: 'Simulation') -> None: ...

    def choose(self, vm: int, fit: np.ndarray) -> int: ...


class Simulation(ClusterState, UsageSnapshot, Accounting, Candidates,
                 PlacementSignals):
    """One run of a workload on a cluster. Not thread-safe; cheap to
    :meth:`clone` (for example to warm up once and branch)."""

    def __init__(self, workload: Workload, cluster: ClusterSpec,
                 objective: objectives_mod.Objective | None = None) -> None:
        self.workload = workload
        self.cluster = cluster
        self.config = workload.config
        self.objective = objective
        self.n_hosts = cluster.hosts
        self._init_cluster()
        self._init_accounting()
        self._init_signals()
        self._init_usage()
        self._init_candidates()
        # The event loop: next event, pending request and its candidates.
        self._pos = 0
        self.fit: np.ndarray = np.zeros(cluster.hosts, dtype=bool)
        self.current_vm = -1
        self.done = False
        self.progress: Callable[[int], None] | None = None

    def clone(self) -> 'Simulation':
        """An independent copy sharing the (read-only) workload."""
        memo = {id(self.workload): self.workload,
                id(self.objective): self.objective,
                id(self.progress): None}
        memo.update(self._signals_copies())
        return copy.deepcopy(self, memo)

    # -- the event loop -----------------------------------------------------

    def next_decision(self) -> int:
        """Advance to the next request with a candidate host; return its VM
        index, or -1 when the trace is over. Requests with no candidate
        are rejected on the way. (A request already pending is not placed:
        :meth:`pending` keeps it.)"""
        wl = self.workload
        ev_time, ev_kind, ev_arg = wl.ev_time, wl.ev_kind, wl.ev_arg
        n_events = len(ev_time)
        pos = self._pos
        while pos < n_events:
            t = ev_time[pos]
            kind = ev_kind[pos]
            arg = ev_arg[pos]
            pos += 1
            if t != self.now:
                self._integrate(t)
            if kind == ARRIVE:
                self.decisions += 1
                if self.progress is not None and not self.decisions & 0x1FFF:
                    self.progress(0x2000)
                fit = self._filter(arg)
                if fit is None:
                    self.rejected += 1
                    continue
                self._pos = pos
                self.fit = fit
                self.current_vm = arg
                return arg
            if kind == DEPART:
                if self.host_of[arg] >= 0:
                    self._release(arg)
            else:
                self._sample(arg)
        self._pos = pos
        if not self.done:
            self._integrate(max(self.now, wl.horizon_s))
            self.done = True
        self.current_vm = -1
        return -1

    def pending(self) -> int:
        """The request awaiting placement: the one left pending, else the
        next (advancing to it); -1 at the end of the trace."""
        vm = self.current_vm
        return vm if vm >= 0 else self.next_decision()

    def _sample(self, k: int) -> None:
        """Usage sample ``k``: redraw every VM's CPU use, resynchronise the
        rates, record the series and refresh the usage snapshot."""
        live, hosts, use, util, active = self._resample(k)
        self._record_sample(util[active])
        if self.needs_usage:
            self._refresh_snapshot(live, hosts, use, util)

    # -- the driver -----------------------------------------------------------

    def play(self, policy: Policy, *, until_s: float | None = None,
             max_decisions: int | None = None) -> int:
        """Let ``policy`` place requests; return how many it placed.

        Binds ``policy`` to this simulation unless it is bound to it
        already (its ``sim``: a policy's own state carries over from one
        call to the next), and keeps the usage snapshot if the policy reads
        it and the run has not started (a run already started keeps what it
        has). Then, for each request in turn: the one left pending if any
        (:attr:`current_vm` >= 0, e.g. where an earlier ``play`` stopped at
        ``until_s``), else the next; requests with no candidate are
        rejected on the way, as always.

        Stops at the end of the trace (:attr:`done`; no request pending),
        after ``max_decisions`` placements (returning at once, without
        advancing: no request pending, the clock at the last placed
        request's arrival; :meth:`pending` advances), or before placing the
        first request arriving at or after ``until_s`` (left pending, the
        clock at its arrival). Playing in chunks is playing in one go:
        ``play(p, max_decisions=k)`` repeated until it returns less than
        ``k`` leaves the same state as one ``play(p)``.
        """
        if getattr(policy, 'sim', None) is not self:
            policy.bind(self)
        if policy.needs_usage and not self._pos:
            self.enable_usage()
        if max_decisions is not None and max_decisions <= 0:
            return 0
        # The policy's feature schema for this call only: whoever reads
        # candidate_features after it gets the current one again.
        self.feature_schema = getattr(policy, 'feature_schema',
                                      features.SCHEMA)
        try:
            return self._play(policy, until_s, max_decisions)
        finally:
            self.feature_schema = features.SCHEMA

    def _play(self, policy: Policy, until_s: float | None,
              max_decisions: int | None) -> int:
        limit = -1 if max_decisions is None else max_decisions
        choose = policy.choose
        place = self.place
        next_decision = self.next_decision
        arrival = self.workload.trace.arrival_s
        placed = 0
        vm = self.current_vm
        if vm < 0:
            vm = next_decision()
        while vm >= 0:
            if until_s is not None and arrival[vm] >= until_s:
                break
            place(vm, choose(vm, self.fit))
            placed += 1
            if placed == limit:
                break
            vm = next_decision()
        return placed

    def run(self, policy: Policy,
            progress: Callable[[int], None] | None = None
            ) -> metrics_mod.RunResult:
        """Play the whole workload with ``policy`` and return the result.

        ``progress(n)`` is called with the number of requests decided
        since the last call, every 8192 and at the end.
        """
        self.progress = progress
        try:
            self.play(policy)
        finally:
            self.progress = None
        if progress is not None:
            progress(self.decisions & 0x1FFF)
        result = self.result()
        extra = getattr(policy, 'run_metrics', None)
        if extra is not None:
            result.metrics.update(extra())
        return result
