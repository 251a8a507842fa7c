"""The trace-driven simulator of a Nova cluster.

A :class:`Workload` is a trace made concrete for one seed: the time-ordered
events (departures, arrivals, usage samples) and every VM's utilisation
model. It does not depend on the policy, so runs of different policies on
one workload see the same requests and the same CPU use at the same times
(common random numbers). A :class:`Simulation` plays a workload on a
cluster, asking a policy where each request goes.

Per request, as Nova 34 does it: placement keeps the hosts where
``used + requested <= physical * allocation_ratio`` for vCPUs, RAM and disk
and the request is no larger than the host (``max_unit``); the policy picks
one of them; if none is left the request is rejected (``NoValidHost``).
Events at one instant run departures first, then arrivals in trace order,
then the usage sample. The run ends at the trace's horizon (its last arrival
or departure); VMs with no departure run until then.

Costs accrue continuously: between events the number of active hosts, the
fluid lower bound, overloaded and hot hosts, dynamic power and headroom
deficit are constant, and are integrated exactly. Actual CPU use is sampled
every ``usage_interval_s`` (default 300 s, the Azure trace's bin): each VM's
use is drawn at a sample and holds until the next; a VM arriving between
samples uses its draw for the current sample.

Cluster state is kept as numpy columns in the layout of
``nova_rl_weigher.features.HostColumns``, so filtering and heuristic scoring
are vectorised and the feature matrix of the candidates is one column slice
away; it is built only for policies that read it.

Stepping API (used by :meth:`Simulation.run` and by the gymnasium
environment): :meth:`Simulation.next_decision` advances to the next request
that has a candidate and returns its VM index (-1 at the end),
:attr:`Simulation.fit` is the candidate mask, :meth:`Simulation.place` puts
the VM on a host, :meth:`Simulation.cost` is the objective accrued so far.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Callable, Protocol

import numpy as np

from nova_rl_weigher import features

from nova_rl_trainer.simulation import metrics as metrics_mod
from nova_rl_trainer.simulation import nova_weighers
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import utilisation
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.traces import Trace

DEPART, ARRIVE, TICK = 0, 1, 2
_EPS = 1e-9
# Rows of the host column matrix, in HostColumns order.
_COLUMN = {name: i for i, name in enumerate(
    features.HOST_COLUMNS + features.USAGE_COLUMNS)}


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

    def __len__(self) -> int:
        return self.n_decisions


class Policy(Protocol):
    """What :meth:`Simulation.run` needs of a policy (see :mod:`policies`)."""

    name: str
    needs_usage: bool

    def bind(self, sim: 'Simulation') -> None: ...

    def choose(self, vm: int, fit: np.ndarray) -> int: ...


class Simulation:
    """One run of a workload on a cluster. Not thread-safe; cheap to
    :meth:`clone` (for example to warm up once and branch)."""

    def __init__(self, workload: Workload, cluster: ClusterSpec,
                 objective: objectives_mod.Objective | None = None) -> None:
        self.workload = workload
        self.cluster = cluster
        self.config = workload.config
        self._nova_multipliers = nova_weighers.CONFIGURATIONS[
            self.config.nova_weighers]
        self.objective = objective
        h = cluster.hosts
        self.n_hosts = h
        cfg = self.config

        # Host columns in HostColumns order; named rows are views.
        cols = np.zeros((len(_COLUMN), h))
        cols[_COLUMN['vcpus_total']] = cluster.host_vcpus
        cols[_COLUMN['ram_total_mb']] = cluster.host_ram_mb
        cols[_COLUMN['ram_free_mb']] = cluster.host_ram_mb
        cols[_COLUMN['disk_total_gb']] = cluster.host_disk_gb
        cols[_COLUMN['disk_free_mb']] = cluster.host_disk_gb * 1024.0
        cols[_COLUMN['cpu_allocation_ratio']] = cluster.cpu_allocation_ratio
        cols[_COLUMN['ram_allocation_ratio']] = cluster.ram_allocation_ratio
        cols[_COLUMN['disk_allocation_ratio']] = \
            cluster.disk_allocation_ratio
        self.cols = cols
        self._bind_views()

        # Capacities (identical hosts) and the offsets that turn Nova's
        # physical free RAM/disk into what placement still allows.
        self.cap_vcpu = cluster.vcpu_capacity
        self.cap_ram = cluster.ram_capacity_mb
        self.cap_disk = cluster.disk_capacity_mb
        self.ram_offset = cluster.host_ram_mb * (
            cluster.ram_allocation_ratio - 1.0)
        self.disk_offset = cluster.host_disk_gb * 1024.0 * (
            cluster.disk_allocation_ratio - 1.0)
        self.cores = float(cluster.host_vcpus)

        # Actual CPU demand (cores) per host, and what load-aware reads:
        # the demand measured at the last sample plus the vCPUs placed
        # since.
        self.demand = np.zeros(h)
        self.measured = np.zeros(h)
        self.recent_vcpus = np.zeros(h)
        n = len(workload)
        self.host_of = np.full(n, -1, dtype=np.int64)
        self.vm_demand = np.zeros(n)

        # Per-host contributions to the accrual rates, and their sums.
        self._h_active = [False] * h
        self._h_over = [False] * h
        self._h_hot = [False] * h
        self._h_dyn = [0.0] * h
        self._h_def = [0.0] * h
        self.n_active = 0
        self.n_over = 0
        self.n_hot = 0
        self.dyn_sum = 0.0
        self.def_sum = 0.0
        self.lb = 0
        self.live_vcpus = 0.0
        self.live_ram = 0.0
        self.live_disk = 0.0
        self.hot_cores = cfg.hot_threshold * self.cores
        self.reserve = cfg.headroom_reserve

        # Accrued host-seconds.
        self.now = 0.0
        self.acc_active = 0.0
        self.acc_lb = 0.0
        self.acc_over = 0.0
        self.acc_hot = 0.0
        self.acc_dyn = 0.0
        self.acc_def = 0.0
        self.decisions = 0
        self.placed = 0
        self.rejected = 0
        self.peak_alloc = 0.0
        self.peak_active = 0

        self._pos = 0
        self.fit: np.ndarray = np.zeros(h, dtype=bool)
        self.current_vm = -1
        self.done = False
        self._samples: list[np.ndarray] = []
        self._series: dict[str, list[float]] = {
            'time_s': [], 'active_hosts': [], 'lb_hosts': [],
            'overloaded_hosts': [], 'hot_hosts': [], 'mean_cpu_util': []}

        # Usage snapshot, only maintained when a policy reads it.
        self.needs_usage = False
        self._window = max(1, int(round(cfg.usage_window_s
                                        / cfg.usage_interval_s)))
        self._ring_fill = 0
        self._cpu_ring = self._mem_ring = None
        self._proj_use = self._proj_alloc = None
        self.project_ratio = np.full(len(workload.trace.project_ids), np.nan)
        self.progress: Callable[[int], None] | None = None

    # -- set-up -------------------------------------------------------------

    _VIEWS = ('vcpus_used', 'ram_free_mb', 'disk_free_mb', 'num_instances')

    def _bind_views(self) -> None:
        # Rows of self.cols updated in place by every placement; the
        # feature matrix and the filters read the same memory.
        for name in self._VIEWS:
            setattr(self, name, self.cols[_COLUMN[name]])

    def __getstate__(self) -> dict:
        # Copies and pickles must not turn the row views into separate
        # arrays: drop them and bind them again on the copy.
        state = dict(self.__dict__)
        for name in self._VIEWS:
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind_views()

    def enable_usage(self) -> None:
        """Maintain the usage snapshot (before the first event)."""
        if self.needs_usage or not self.config.usage_snapshot:
            return
        if self._pos:
            raise RuntimeError('enable_usage() after the run started')
        self.needs_usage = True
        p = len(self.workload.trace.project_ids)
        self._cpu_ring = np.zeros((self._window, self.n_hosts))
        self._mem_ring = np.zeros((self._window, self.n_hosts))
        self._proj_use = np.zeros((self._window, p))
        self._proj_alloc = np.zeros((self._window, p))

    def clone(self) -> 'Simulation':
        """An independent copy sharing the (read-only) workload."""
        memo = {id(self.workload): self.workload,
                id(self.objective): self.objective,
                id(self.progress): None}
        return copy.deepcopy(self, memo)

    # -- the event loop -----------------------------------------------------

    def next_decision(self) -> int:
        """Advance to the next request with a candidate host; return its VM
        index, or -1 when the trace is over. Requests with no candidate
        are rejected on the way."""
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

    def _filter(self, vm: int) -> np.ndarray | None:
        wl = self.workload
        v = wl.vcpus_l[vm]
        m = wl.memory_l[vm]
        d = wl.disk_mb_l[vm]
        c = self.cluster
        # Placement's max_unit: a VM never spans hosts.
        if v > c.host_vcpus or m > c.host_ram_mb or \
                d > c.host_disk_gb * 1024.0:
            return None
        fit = self.vcpus_used <= self.cap_vcpu - v + _EPS
        fit &= self.ram_free_mb >= m - self.ram_offset - _EPS
        if d > 0:
            fit &= self.disk_free_mb >= d - self.disk_offset - _EPS
        if not fit.any():
            return None
        return fit

    def place(self, vm: int, host: int) -> None:
        """Put the current request on ``host`` (a candidate)."""
        if vm != self.current_vm:
            raise ValueError(f'VM {vm} is not the pending request '
                             f'({self.current_vm})')
        if not (0 <= host < self.n_hosts) or not self.fit[host]:
            raise ValueError(f'host {host} is not a candidate for VM {vm}')
        wl = self.workload
        v = wl.vcpus_l[vm]
        m = wl.memory_l[vm]
        d = wl.disk_mb_l[vm]
        dem = wl.arrival_demand_l[vm]
        self.vcpus_used[host] += v
        self.ram_free_mb[host] -= m
        self.disk_free_mb[host] -= d
        self.num_instances[host] += 1.0
        self.host_of[vm] = host
        self.vm_demand[vm] = dem
        self.demand[host] += dem
        self.recent_vcpus[host] += v
        self.placed += 1
        self.current_vm = -1
        self.live_vcpus += v
        self.live_ram += m
        self.live_disk += d
        self._update_lb()
        self._host_changed(host)
        if self.n_active > self.peak_active:
            self.peak_active = self.n_active
        h = self.n_hosts
        alloc = max(self.live_vcpus / (self.cap_vcpu * h),
                    self.live_ram / (self.cap_ram * h),
                    self.live_disk / (self.cap_disk * h)
                    if self.cap_disk > 0 else 0.0)
        if alloc > self.peak_alloc:
            self.peak_alloc = alloc

    def _release(self, vm: int) -> None:
        host = int(self.host_of[vm])
        wl = self.workload
        v = wl.vcpus_l[vm]
        m = wl.memory_l[vm]
        d = wl.disk_mb_l[vm]
        self.vcpus_used[host] -= v
        self.ram_free_mb[host] += m
        self.disk_free_mb[host] += d
        self.num_instances[host] -= 1.0
        self.demand[host] -= self.vm_demand[vm]
        self.host_of[vm] = -1
        self.live_vcpus -= v
        self.live_ram -= m
        self.live_disk -= d
        self._update_lb()
        self._host_changed(host)

    def _update_lb(self) -> None:
        lb = math.ceil(self.live_vcpus / self.cap_vcpu - _EPS)
        r = math.ceil(self.live_ram / self.cap_ram - _EPS)
        if r > lb:
            lb = r
        if self.cap_disk > 0:
            r = math.ceil(self.live_disk / self.cap_disk - _EPS)
            if r > lb:
                lb = r
        self.lb = lb if lb > 0 else 0

    def _host_changed(self, h: int) -> None:
        """Recompute host ``h``'s contributions to the accrual rates."""
        n_inst = self.num_instances[h]
        active = n_inst > 0.5
        dem = float(self.demand[h]) if active else 0.0
        over = dem > self.cores + _EPS
        hot = dem > self.hot_cores + _EPS
        dyn = min(dem / self.cores, 1.0) if active else 0.0
        if active:
            alloc = max(self.vcpus_used[h] / self.cap_vcpu,
                        (self.cluster.host_ram_mb - self.ram_free_mb[h])
                        / self.cap_ram)
            if self.cap_disk > 0:
                alloc = max(alloc, (self.cluster.host_disk_gb * 1024.0
                                    - self.disk_free_mb[h]) / self.cap_disk)
            deficit = max(0.0, float(alloc) - (1.0 - self.reserve)) \
                / self.reserve
        else:
            deficit = 0.0
        if active != self._h_active[h]:
            self.n_active += 1 if active else -1
            self._h_active[h] = active
        if over != self._h_over[h]:
            self.n_over += 1 if over else -1
            self._h_over[h] = over
        if hot != self._h_hot[h]:
            self.n_hot += 1 if hot else -1
            self._h_hot[h] = hot
        self.dyn_sum += dyn - self._h_dyn[h]
        self._h_dyn[h] = dyn
        self.def_sum += deficit - self._h_def[h]
        self._h_def[h] = deficit

    def _integrate(self, t: float) -> None:
        dt = t - self.now
        if dt > 0:
            self.acc_active += self.n_active * dt
            self.acc_lb += self.lb * dt
            self.acc_over += self.n_over * dt
            self.acc_hot += self.n_hot * dt
            self.acc_dyn += self.dyn_sum * dt
            self.acc_def += self.def_sum * dt
        self.now = t

    def _sample(self, k: int) -> None:
        """Usage sample ``k``: redraw every VM's CPU use, resynchronise the
        rates, record the series and refresh the usage snapshot."""
        wl = self.workload
        h = self.n_hosts
        live = np.flatnonzero(self.host_of >= 0)
        hosts = self.host_of[live]
        use = wl.vcpus[live] * wl.usage.cpu_util(live, k)
        self.vm_demand[live] = use
        demand = np.bincount(hosts, weights=use, minlength=h)
        self.demand[:] = demand
        self.measured[:] = demand
        self.recent_vcpus[:] = 0.0

        active = self.num_instances > 0.5
        over = active & (demand > self.cores + _EPS)
        hot = active & (demand > self.hot_cores + _EPS)
        util = demand / self.cores
        dyn = np.where(active, np.minimum(util, 1.0), 0.0)
        alloc = np.maximum(self.vcpus_used / self.cap_vcpu,
                           (self.cluster.host_ram_mb - self.ram_free_mb)
                           / self.cap_ram)
        if self.cap_disk > 0:
            alloc = np.maximum(alloc, (self.cluster.host_disk_gb * 1024.0
                                       - self.disk_free_mb) / self.cap_disk)
        deficit = np.where(active, np.maximum(alloc - (1.0 - self.reserve),
                                              0.0) / self.reserve, 0.0)
        self._h_over = over.tolist()
        self._h_hot = hot.tolist()
        self._h_dyn = dyn.tolist()
        self._h_def = deficit.tolist()
        self._h_active = active.tolist()
        self.n_active = int(active.sum())
        self.n_over = int(over.sum())
        self.n_hot = int(hot.sum())
        self.dyn_sum = float(dyn.sum())
        self.def_sum = float(deficit.sum())

        active_util = util[active]
        self._samples.append(active_util)
        s = self._series
        s['time_s'].append(self.now)
        s['active_hosts'].append(self.n_active)
        s['lb_hosts'].append(self.lb)
        s['overloaded_hosts'].append(self.n_over)
        s['hot_hosts'].append(self.n_hot)
        s['mean_cpu_util'].append(float(active_util.mean())
                                  if active_util.size else 0.0)
        if self.needs_usage:
            self._refresh_snapshot(live, hosts, use, util)

    def _refresh_snapshot(self, live: np.ndarray, hosts: np.ndarray,
                          use: np.ndarray, util: np.ndarray) -> None:
        wl = self.workload
        slot = self._ring_fill % self._window
        self._ring_fill += 1
        # A host cannot use more than its cores: what a collector measures.
        self._cpu_ring[slot] = np.minimum(util, 1.0)
        self._mem_ring[slot] = np.bincount(
            hosts, weights=wl.mem_use[live], minlength=self.n_hosts
        ) / self.cluster.host_ram_mb
        proj = wl.trace.project[live]
        p = self.project_ratio.shape[0]
        self._proj_use[slot] = np.bincount(proj, weights=use, minlength=p)
        self._proj_alloc[slot] = np.bincount(proj, weights=wl.vcpus[live],
                                             minlength=p)
        filled = min(self._ring_fill, self._window)
        cpu = self._cpu_ring[:filled]
        mem = self._mem_ring[:filled]
        c = self.cols
        c[_COLUMN['usage_present']] = 1.0
        c[_COLUMN['cpu_util_mean']] = cpu.mean(axis=0)
        c[_COLUMN['cpu_util_p95']] = np.percentile(cpu, 95, axis=0)
        c[_COLUMN['mem_util_mean']] = mem.mean(axis=0)
        c[_COLUMN['mem_util_p95']] = np.percentile(mem, 95, axis=0)
        alloc = self._proj_alloc.sum(axis=0)
        with np.errstate(invalid='ignore', divide='ignore'):
            self.project_ratio = np.where(
                alloc > 0, self._proj_use.sum(axis=0) / alloc, np.nan)

    # -- what policies read -------------------------------------------------

    def request_view(self, vm: int) -> features.RequestView:
        tr = self.workload.trace
        return features.RequestView(
            vcpus=float(tr.vcpus[vm]), memory_mb=float(tr.memory_mb[vm]),
            disk_gb=float(tr.disk_gb[vm]),
            project_id=tr.project_ids[tr.project[vm]],
            instance_uuid=tr.vm_id(vm))

    def project_cpu_ratio(self, vm: int) -> float | None:
        """The requesting project's measured used/allocated CPU, if any."""
        if not self.needs_usage:
            return None
        r = self.project_ratio[self.workload.trace.project[vm]]
        return None if math.isnan(r) else float(r)

    def nova_weights(self, fit: np.ndarray,
                     multipliers: nova_weighers.NovaMultipliers
                     = nova_weighers.DEFAULT) -> np.ndarray:
        """Nova's combined weight of every host for candidate mask ``fit``
        (meaningless outside the mask)."""
        # No build phase is simulated: num_io_ops is 0 on every host.
        return nova_weighers.combined_weights(
            self.ram_free_mb, self.cap_vcpu - self.vcpus_used,
            self.disk_free_mb, None, self.num_instances, multipliers,
            mask=fit)

    def candidate_columns(self, fit: np.ndarray
                          ) -> tuple[np.ndarray, features.HostColumns]:
        """The candidates' host indices and their columns, ``nova_weight``
        filled with the weight Nova's configured weighers
        (``SimConfig.nova_weighers``) give over this candidate set."""
        cand = np.flatnonzero(fit)
        sub = self.cols[:, cand]
        sub[_COLUMN['nova_weight']] = nova_weighers.combined_weights(
            sub[_COLUMN['ram_free_mb']],
            sub[_COLUMN['vcpus_total']] * sub[_COLUMN['cpu_allocation_ratio']]
            - sub[_COLUMN['vcpus_used']], sub[_COLUMN['disk_free_mb']],
            sub[_COLUMN['num_io_ops']], sub[_COLUMN['num_instances']],
            self._nova_multipliers)
        return cand, features.HostColumns(*sub)

    def candidate_features(self, vm: int, fit: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(candidate host indices, feature matrix, Nova weights)`` for
        the pending request: what the weigher would see in Nova."""
        cand, columns = self.candidate_columns(fit)
        x = features.compute_matrix(columns, self.request_view(vm),
                                    self.project_cpu_ratio(vm))
        return cand, x, columns.nova_weight

    # -- accounting -----------------------------------------------------------

    def terms(self) -> dict[str, float]:
        """The objective terms accrued so far (see :mod:`objectives`)."""
        c = self.cluster
        hours = 1.0 / 3600.0
        empty_s = self.n_hosts * self.now - self.acc_active
        energy_wh = (c.idle_watts * self.acc_active
                     + (c.peak_watts - c.idle_watts) * self.acc_dyn
                     + c.empty_watts * empty_s) * hours
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

    def run(self, policy: Policy,
            progress: Callable[[int], None] | None = None
            ) -> metrics_mod.RunResult:
        """Play the whole workload with ``policy`` and return the result."""
        policy.bind(self)
        if policy.needs_usage:
            self.enable_usage()
        self.progress = progress
        choose = policy.choose
        place = self.place
        next_decision = self.next_decision
        while True:
            vm = next_decision()
            if vm < 0:
                break
            place(vm, choose(vm, self.fit))
        self.progress = None
        if progress is not None:
            progress(self.decisions & 0x1FFF)
        result = self.result()
        extra = getattr(policy, 'run_metrics', None)
        if extra is not None:
            result.metrics.update(extra())
        return result
