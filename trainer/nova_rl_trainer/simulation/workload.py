"""What a simulation plays: the measuring configuration and the workload.

A :class:`Workload` is a trace made concrete for one seed: the time-ordered
events (departures, arrivals, usage samples) and every VM's utilisation
model. It does not depend on the policy, so runs of different policies on
one workload see the same requests and the same CPU use at the same times
(common random numbers).

Events at one instant run departures first, then arrivals in trace order,
then the usage sample; a VM leaving the instant it arrives leaves after that
instant's arrivals. Usage samples come every ``usage_interval_s`` from 0 to
the trace's horizon (its last arrival or departure).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nova_rl_trainer.simulation import nova_weighers
from nova_rl_trainer.simulation.traces import Trace
from nova_rl_trainer.simulation import utilisation

#: Event kinds, in the order events of one instant run.
DEPART, ARRIVE, TICK = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """How the simulator measures; the same for every policy compared."""

    #: Seconds between usage samples (CPU use redrawn, metrics sampled,
    #: the usage snapshot refreshed).
    usage_interval_s: float = 300.0
    #: Span of the usage snapshot that policies read (mean and p95).
    usage_window_s: float = 3600.0
    #: A host is hot above this share of its physical cores.
    hot_threshold: float = 0.8
    #: Share of each host's capacity to keep free for failover.
    headroom_reserve: float = 0.2
    #: Give policies measured usage features (as the weigher's usage
    #: snapshot does); False marks usage absent.
    usage_snapshot: bool = True
    #: The Nova weigher configuration the cluster runs: it gives the
    #: ``nova_weight`` feature policies read, and so the host Nova picks
    #: when a gated policy abstains. ``nova-pack`` is how an operator who
    #: wants packing configures Nova (negative resource multipliers).
    nova_weighers: str = 'nova-default'

    def __post_init__(self) -> None:
        if self.nova_weighers not in nova_weighers.CONFIGURATIONS:
            raise ValueError(
                f'nova_weighers {self.nova_weighers!r}: one of '
                + ', '.join(nova_weighers.CONFIGURATIONS))
        if not self.usage_interval_s > 0:
            raise ValueError('usage_interval_s must be positive')
        if not self.usage_window_s >= self.usage_interval_s:
            raise ValueError('usage_window_s must be at least '
                             'usage_interval_s')
        if not 0 < self.hot_threshold:
            raise ValueError('hot_threshold must be positive')
        if not 0 < self.headroom_reserve <= 1:
            raise ValueError('headroom_reserve must be in (0, 1]')


class Workload:
    """A trace made concrete for a seed: events and utilisation, shared
    read-only by every simulation of it."""

    def __init__(self, trace: Trace, seed: int = 0,
                 config: SimConfig | None = None) -> None:
        self.trace = trace
        self.seed = int(seed)
        self.config = config or SimConfig()
        dt = self.config.usage_interval_s
        n = len(trace)
        self.horizon_s = trace.horizon_s
        self.usage = utilisation.build_usage(trace, self.seed, dt)
        n_ticks = max(1, math.ceil(self.horizon_s / dt))
        self.n_ticks = n_ticks

        dep = trace.departure_s
        has_dep = ~np.isnan(dep)
        dep_vm = np.flatnonzero(has_dep)
        # A VM leaving the instant it arrives leaves after that instant's
        # arrivals, not before its own.
        instant = dep[dep_vm] <= trace.arrival_s[dep_vm]
        vm_idx = np.arange(n)
        times = np.concatenate([dep[dep_vm], trace.arrival_s,
                                np.arange(n_ticks) * dt])
        kinds = np.concatenate([np.full(dep_vm.shape[0], DEPART),
                                np.full(n, ARRIVE), np.full(n_ticks, TICK)])
        # Sorted as an arrival placed after every arrival of the instant.
        rank = np.concatenate([np.where(instant, ARRIVE, DEPART),
                               np.full(n, ARRIVE), np.full(n_ticks, TICK)])
        args = np.concatenate([dep_vm, vm_idx, np.arange(n_ticks)])
        seq = np.concatenate([np.where(instant, n + dep_vm, dep_vm), vm_idx,
                              np.arange(n_ticks)])
        order = np.lexsort((seq, rank, times))
        # Python lists: the event loop reads them one scalar at a time.
        self.ev_time: list[float] = times[order].tolist()
        self.ev_kind: list[int] = kinds[order].tolist()
        self.ev_arg: list[int] = args[order].tolist()

        self.vcpus = trace.vcpus
        self.memory_mb = trace.memory_mb
        self.disk_mb = trace.disk_gb * 1024.0
        self.vcpus_l: list[float] = trace.vcpus.tolist()
        self.memory_l: list[float] = trace.memory_mb.tolist()
        self.disk_mb_l: list[float] = self.disk_mb.tolist()
        sample_at_arrival = np.minimum(
            (trace.arrival_s // dt).astype(np.int64), n_ticks - 1)
        self.arrival_demand_l: list[float] = (
            trace.vcpus * self.usage.cpu_util(vm_idx, sample_at_arrival)
        ).tolist()
        self.mem_use = trace.memory_mb * self.usage.mem_frac
        self.n_decisions = n
        self._life = None

    @property
    def life(self) -> 'LifeIndex':
        """What the lifetime signals read of the trace (built on first
        use: only runs whose policies read features need it)."""
        if self._life is None:
            self._life = LifeIndex(self.trace)
        return self._life

    def __len__(self) -> int:
        return self.n_decisions


class LifeIndex:
    """The trace indexed for the lifetime signals (read-only, shared).

    ``flavor`` (each VM's flavor index into ``flavor_names``: the trace
    has no flavor names, so a flavor is a distinct vCPUs and memory pair,
    named as in :func:`flavor_name`), ``lifetime_s`` (departure minus
    arrival, NaN if it runs to the end), ``by_departure`` (the VMs that
    depart, in departure order, with ``departure_sorted``), and per
    project its VMs in arrival order (``project_vms[project_start[p]:
    project_start[p + 1]]``, arrivals in ``project_arrival``).
    """

    def __init__(self, trace: Trace) -> None:
        pairs = np.stack([trace.vcpus, trace.memory_mb], axis=1)
        uniq, self.flavor = np.unique(pairs, axis=0, return_inverse=True)
        self.flavor = self.flavor.reshape(-1)
        self.flavor_names = tuple(flavor_name(v, m) for v, m in uniq)
        self.lifetime_s = trace.departure_s - trace.arrival_s
        dep = np.flatnonzero(~np.isnan(trace.departure_s))
        order = np.argsort(trace.departure_s[dep], kind='stable')
        self.by_departure = dep[order]
        self.departure_sorted = trace.departure_s[self.by_departure].tolist()
        self.by_departure_l = self.by_departure.tolist()
        proj = trace.project
        self.project_vms = np.argsort(proj, kind='stable')
        self.project_start = np.searchsorted(
            proj[self.project_vms], np.arange(len(trace.project_ids) + 1))
        self.project_arrival = trace.arrival_s[self.project_vms]


def flavor_name(vcpus: float, memory_mb: float) -> str:
    """The flavor name the simulator gives a vCPUs and memory pair."""
    return f'{vcpus:g}vcpu-{memory_mb:g}mb'
