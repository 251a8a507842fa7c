"""Costs and metrics: what a run has accrued so far.

Costs accrue continuously: between events the number of active hosts, the
fluid lower bound, overloaded and hot hosts, dynamic power and headroom
deficit are constant (:mod:`cluster_state` keeps them), and are integrated
exactly. Energy integrates each host's own power model (idle and peak
watts of an active host, empty watts of an empty one). At every usage
sample the active hosts' utilisation and the series
are recorded. :meth:`Accounting.terms` gives the objective terms
(:mod:`objectives`), :meth:`Accounting.result` the metrics (:mod:`metrics`).
"""

from __future__ import annotations

import numpy as np

from nova_rl_trainer.simulation import metrics as metrics_mod


class Accounting:
    """Mixin of :class:`~nova_rl_trainer.simulation.simulator.Simulation`:
    the accrued host-seconds (``acc_*``), the clock ``now``, the counts
    ``decisions``, ``placed``, ``rejected`` (kept by the event loop) and the
    sampled series."""

    def _init_accounting(self) -> None:
        self.now = 0.0
        self.acc_active = 0.0
        self.acc_lb = 0.0
        self.acc_over = 0.0
        self.acc_hot = 0.0
        self.acc_dyn = 0.0
        self.acc_def = 0.0
        self.acc_base = 0.0
        self.decisions = 0
        self.placed = 0
        self.rejected = 0
        self._samples: list[np.ndarray] = []
        self._series: dict[str, list[float]] = {
            'time_s': [], 'active_hosts': [], 'lb_hosts': [],
            'overloaded_hosts': [], 'hot_hosts': [], 'mean_cpu_util': []}

    def _integrate(self, t: float) -> None:
        """Accrue the current rates up to time ``t``."""
        dt = t - self.now
        if dt > 0:
            self.acc_active += self.n_active * dt
            self.acc_lb += self.lb * dt
            self.acc_over += self.n_over * dt
            self.acc_hot += self.n_hot * dt
            self.acc_dyn += self.dyn_sum * dt
            self.acc_def += self.def_sum * dt
            self.acc_base += self.base_w * dt
        self.now = t

    def _record_sample(self, active_util: np.ndarray) -> None:
        """Record a usage sample: the active hosts' CPU utilisation and the
        series at this instant."""
        self._samples.append(active_util)
        s = self._series
        s['time_s'].append(self.now)
        s['active_hosts'].append(self.n_active)
        s['lb_hosts'].append(self.lb)
        s['overloaded_hosts'].append(self.n_over)
        s['hot_hosts'].append(self.n_hot)
        s['mean_cpu_util'].append(float(active_util.mean())
                                  if active_util.size else 0.0)

    def terms(self) -> dict[str, float]:
        """The objective terms accrued so far (see :mod:`objectives`)."""
        hours = 1.0 / 3600.0
        power = self._power_s
        if power is not None:
            # One power model for every host.
            idle, peak, empty = power
            empty_s = self.n_hosts * self.now - self.acc_active
            energy_wh = (idle * self.acc_active
                         + (peak - idle) * self.acc_dyn
                         + empty * empty_s) * hours
        else:
            # Per host: every host's empty watts all the time, plus each
            # active host's idle-over-empty watts, plus the dynamic watts
            # (acc_dyn is in watt-seconds here, cluster_state).
            energy_wh = (self._empty_total * self.now + self.acc_base
                         + self.acc_dyn) * hours
        return {
            'active_host_hours': self.acc_active * hours,
            'energy_kwh': energy_wh / 1000.0,
            'overload_host_hours': self.acc_over * hours,
            'hot_host_hours': self.acc_hot * hours,
            'headroom_deficit_host_hours': self.acc_def * hours,
            'rejected': float(self.rejected),
        }

    def cost(self) -> float:
        """The objective accrued so far (0 without an objective)."""
        if self.objective is None:
            return 0.0
        return self.objective.value(self.terms())

    def result(self) -> metrics_mod.RunResult:
        """Metrics of the run so far (call after the last decision)."""
        terms = self.terms()
        horizon_h = self.now / 3600.0
        p95, mean_util, hist = metrics_mod.util_summary(self._samples)
        m = {
            'decisions': self.decisions,
            'placed': self.placed,
            'rejected': self.rejected,
            'active_host_hours': terms['active_host_hours'],
            'lb_host_hours': self.acc_lb / 3600.0,
            'energy_kwh': terms['energy_kwh'],
            'overload_host_hours': terms['overload_host_hours'],
            'p95_host_cpu_util': p95,
            'empty_host_fraction': (
                1.0 - terms['active_host_hours'] / (self.n_hosts * horizon_h)
                if horizon_h > 0 else 1.0),
            'objective_value': (self.objective.value(terms)
                                if self.objective is not None else None),
            'hot_host_hours': terms['hot_host_hours'],
            'headroom_deficit_host_hours':
                terms['headroom_deficit_host_hours'],
            'mean_host_cpu_util': mean_util,
            'peak_allocated_fraction': self.peak_alloc,
            'peak_active_hosts': self.peak_active,
            'horizon_hours': horizon_h,
            'hosts': self.n_hosts,
        }
        series = {k: np.asarray(v) for k, v in self._series.items()}
        return metrics_mod.RunResult(m, series, hist)
