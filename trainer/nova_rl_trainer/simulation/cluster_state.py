"""The cluster's state: host columns, placement's filter, placing and
releasing VMs, and each host's contribution to the accrual rates.

Per request, as Nova 34 does it: placement keeps the hosts where
``used + requested <= physical * allocation_ratio`` for vCPUs, RAM and disk
and the request is no larger than the host (``max_unit``); if none is left
the request is rejected (``NoValidHost``).

Hosts may differ (host groups, :mod:`cluster`): every capacity is per host,
``cap_vcpu``, ``cap_ram``, ``cap_disk`` and ``cores`` are arrays with an
entry per host, and placement's ``max_unit`` keeps a request off a host
smaller than it. A cluster whose hosts are all alike
(:attr:`ClusterSpec.uniform`) takes the identical-host path: the same
floats as the simulator before host groups (the filter compares with one
capacity, the lower bound is a division, energy uses one power model).

Host state is kept as numpy columns in the layout of
``nova_rl_weigher.features.HostColumns`` (:data:`COLUMN`), so filtering and
heuristic scoring are vectorised and the candidates' columns are one slice
away (:mod:`candidates`). Between events, the number of active hosts, the
fluid lower bound, overloaded and hot hosts, dynamic power and headroom
deficit are constant: each host's share of them is kept, and their sums are
what :mod:`accounting` integrates over time.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from nova_rl_weigher import features

#: Row of each host column in :attr:`ClusterState.cols`, in HostColumns
#: order.
COLUMN = {name: i for i, name in enumerate(
    features.HOST_COLUMNS + features.USAGE_COLUMNS)}
EPS = 1e-9


class ClusterState:
    """Mixin of :class:`~nova_rl_trainer.simulation.simulator.Simulation`:
    the hosts' columns and the VMs on them.

    Public attributes (baselines read them): ``cols`` (the column matrix)
    and its rows ``vcpus_used``, ``ram_free_mb``, ``disk_free_mb``,
    ``num_instances`` (views, updated in place); per host (arrays):
    the capacities ``cap_vcpu``, ``cap_ram``, ``cap_disk`` (what placement
    allows), ``ram_offset``/``disk_offset`` (capacity minus physical size:
    allocatable RAM is ``ram_free_mb + ram_offset``), ``cores`` (physical
    CPUs), ``host_ram_mb``, ``host_disk_mb``; ``uniform`` (all hosts alike);
    ``demand`` (actual CPU use per host, cores), ``measured`` (the demand
    at the last usage sample) and ``recent_vcpus`` (vCPUs placed since);
    ``host_of`` (each VM's host, -1 if none); the accrual rates
    ``n_active``, ``n_over``, ``n_hot``, ``dyn_sum``, ``def_sum``, ``lb``
    (and, hosts of several power models, ``base_w``); ``peak_alloc`` and
    ``peak_active``. :meth:`place` puts the pending request
    (``current_vm``, candidates ``fit``: the event loop's) on a host.
    """

    _VIEWS = ('vcpus_used', 'ram_free_mb', 'disk_free_mb', 'num_instances')

    def _init_cluster(self) -> None:
        cluster = self.cluster
        cfg = self.config
        h = cluster.hosts
        a = cluster.per_host
        # Host columns in HostColumns order; named rows are views.
        cols = np.zeros((len(COLUMN), h))
        cols[COLUMN['vcpus_total']] = a.vcpus
        cols[COLUMN['ram_total_mb']] = a.ram_mb
        cols[COLUMN['ram_free_mb']] = a.ram_mb
        cols[COLUMN['disk_total_gb']] = a.disk_gb
        cols[COLUMN['disk_free_mb']] = a.disk_mb
        cols[COLUMN['cpu_allocation_ratio']] = a.cpu_allocation_ratio
        cols[COLUMN['ram_allocation_ratio']] = a.ram_allocation_ratio
        cols[COLUMN['disk_allocation_ratio']] = a.disk_allocation_ratio
        self.cols = cols
        self._bind_views()

        # Per host: capacities, and the offsets that turn Nova's physical
        # free RAM/disk into what placement still allows.
        self.uniform = cluster.uniform
        self.cores = np.array(a.vcpus)
        self.host_ram_mb = np.array(a.ram_mb)
        self.host_disk_mb = a.disk_mb
        self.cap_vcpu = a.vcpu_capacity
        self.cap_ram = a.ram_capacity_mb
        self.cap_disk = a.disk_capacity_mb
        self.ram_offset = a.ram_mb * (a.ram_allocation_ratio - 1.0)
        self.disk_offset = a.disk_mb * (a.disk_allocation_ratio - 1.0)
        self._disk_hosts = self.cap_disk > 0
        self._any_disk = bool(self._disk_hosts.any())
        self._all_disk = bool(self._disk_hosts.all())
        # Placement's max_unit: a VM never spans hosts. Larger than every
        # host: rejected at once; larger than some: those are filtered.
        self._max_unit = (float(a.vcpus.max()), float(a.ram_mb.max()),
                          float(self.host_disk_mb.max()))
        self._min_unit = (float(a.vcpus.min()), float(a.ram_mb.min()),
                          float(self.host_disk_mb.min()))
        # Totals over the cluster (peak allocation).
        if self.uniform:
            g = cluster.groups[0]
            # The identical-host path's scalars.
            self._cap_s = (g.vcpus * g.cpu_allocation_ratio,
                           g.ram_mb * g.ram_allocation_ratio,
                           g.disk_gb * 1024.0 * g.disk_allocation_ratio)
            self._offset_s = (g.ram_mb * (g.ram_allocation_ratio - 1.0),
                              g.disk_gb * 1024.0
                              * (g.disk_allocation_ratio - 1.0))
            self._cap_total = tuple(c * h for c in self._cap_s)
            self._lb_cum = None
        else:
            self._cap_s = self._offset_s = None
            self._cap_total = (float(self.cap_vcpu.sum()),
                               float(self.cap_ram.sum()),
                               float(self.cap_disk.sum()))
            # Lower bound: capacities largest first, accumulated.
            self._lb_cum = tuple(
                np.cumsum(np.sort(c)[::-1]).tolist()
                for c in (self.cap_vcpu, self.cap_ram, self.cap_disk))
            self._lb_tol = tuple(EPS * float(c.max()) for c in
                                 (self.cap_vcpu, self.cap_ram, self.cap_disk))
        # Power: one model for all hosts, or per host (watts-weighted
        # dynamic power, and idle-over-empty watts of the active hosts).
        watts = (a.idle_watts, a.peak_watts, a.empty_watts)
        if all((w == w[0]).all() for w in watts):
            self._power_s = tuple(float(w[0]) for w in watts)
            self._span_l = None
            self._base_l = None
        else:
            self._power_s = None
            self._span_l = (a.peak_watts - a.idle_watts).tolist()
            self._base_l = (a.idle_watts - a.empty_watts).tolist()
            self._span = a.peak_watts - a.idle_watts
            self._base = a.idle_watts - a.empty_watts
            self._empty_total = float(a.empty_watts.sum())
        # Python lists for the per-placement path (one host at a time).
        self._cores_l = self.cores.tolist()
        self._capv_l = self.cap_vcpu.tolist()
        self._capr_l = self.cap_ram.tolist()
        self._capd_l = self.cap_disk.tolist()
        self._ram_l = self.host_ram_mb.tolist()
        self._disk_l = self.host_disk_mb.tolist()

        # Actual CPU demand (cores) per host, and what load-aware reads:
        # the demand measured at the last sample plus the vCPUs placed
        # since.
        self.demand = np.zeros(h)
        self.measured = np.zeros(h)
        self.recent_vcpus = np.zeros(h)
        n = len(self.workload)
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
        self.base_w = 0.0
        self.lb = 0
        self.live_vcpus = 0.0
        self.live_ram = 0.0
        self.live_disk = 0.0
        self.hot_cores = cfg.hot_threshold * self.cores
        self._hot_l = self.hot_cores.tolist()
        self.reserve = cfg.headroom_reserve
        self.peak_alloc = 0.0
        self.peak_active = 0

    def _bind_views(self) -> None:
        # Rows of self.cols updated in place by every placement; the
        # feature matrix and the filters read the same memory.
        for name in self._VIEWS:
            setattr(self, name, self.cols[COLUMN[name]])

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

    # -- per request ----------------------------------------------------------

    def _filter(self, vm: int) -> np.ndarray | None:
        """Placement's candidate mask for ``vm``; None if no host fits."""
        wl = self.workload
        v = wl.vcpus_l[vm]
        m = wl.memory_l[vm]
        d = wl.disk_mb_l[vm]
        # Placement's max_unit: a VM never spans hosts.
        top = self._max_unit
        if v > top[0] or m > top[1] or d > top[2]:
            return None
        if self.uniform:
            cap = self._cap_s
            off = self._offset_s
            fit = self.vcpus_used <= cap[0] - v + EPS
            fit &= self.ram_free_mb >= m - off[0] - EPS
            if d > 0:
                fit &= self.disk_free_mb >= d - off[1] - EPS
        else:
            fit = self.vcpus_used <= self.cap_vcpu - v + EPS
            fit &= self.ram_free_mb >= m - self.ram_offset - EPS
            if d > 0:
                fit &= self.disk_free_mb >= d - self.disk_offset - EPS
            low = self._min_unit
            if v > low[0]:
                fit &= self.cores >= v
            if m > low[1]:
                fit &= self.host_ram_mb >= m
            if d > low[2]:
                fit &= self.host_disk_mb >= d
        if not fit.any():
            return None
        return fit

    def place(self, vm: int, host: int) -> None:
        """Put the pending request on ``host`` (a candidate)."""
        if vm != self.current_vm:
            raise ValueError(f'VM {vm} is not the pending request '
                             f'({self.current_vm})')
        if not (0 <= host < self.n_hosts) or not self.fit[host]:
            raise ValueError(f'host {host} is not a candidate for VM {vm}')
        self.placed += 1
        self.current_vm = -1
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
        self.live_vcpus += v
        self.live_ram += m
        self.live_disk += d
        self._update_lb()
        self._host_changed(host)
        if self.n_active > self.peak_active:
            self.peak_active = self.n_active
        tot = self._cap_total
        alloc = max(self.live_vcpus / tot[0], self.live_ram / tot[1],
                    self.live_disk / tot[2] if tot[2] > 0 else 0.0)
        if alloc > self.peak_alloc:
            self.peak_alloc = alloc
        if self._life_on:
            self._signals_placed(vm, host)

    def _release(self, vm: int) -> None:
        """Take ``vm`` off its host (it departs)."""
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
        if self._life_on:
            self._signals_released(vm, host)

    # -- accrual rates --------------------------------------------------------

    def _update_lb(self) -> None:
        """The fluid lower bound: hosts the live VMs need at the least.

        Per resource, the fewest hosts whose capacities can hold the live
        demand, taking the largest hosts first (identical hosts:
        ``ceil(demand / capacity)``); the bound is the largest over the
        resources."""
        cum = self._lb_cum
        if cum is None:
            cap = self._cap_s
            lb = math.ceil(self.live_vcpus / cap[0] - EPS)
            r = math.ceil(self.live_ram / cap[1] - EPS)
            if r > lb:
                lb = r
            if cap[2] > 0:
                r = math.ceil(self.live_disk / cap[2] - EPS)
                if r > lb:
                    lb = r
            self.lb = lb if lb > 0 else 0
            return
        lb = 0
        for live, c, tol in zip((self.live_vcpus, self.live_ram,
                                 self.live_disk), cum, self._lb_tol):
            if live > tol:
                r = bisect.bisect_left(c, live - tol) + 1
                if r > lb:
                    lb = r
        self.lb = lb if lb <= self.n_hosts else self.n_hosts

    def _host_changed(self, h: int) -> None:
        """Recompute host ``h``'s contributions to the accrual rates."""
        n_inst = self.num_instances[h]
        active = n_inst > 0.5
        cores = self._cores_l[h]
        dem = float(self.demand[h]) if active else 0.0
        over = dem > cores + EPS
        hot = dem > self._hot_l[h] + EPS
        dyn = min(dem / cores, 1.0) if active else 0.0
        if active:
            alloc = max(self.vcpus_used[h] / self._capv_l[h],
                        (self._ram_l[h] - self.ram_free_mb[h])
                        / self._capr_l[h])
            cap_d = self._capd_l[h]
            if cap_d > 0:
                alloc = max(alloc, (self._disk_l[h]
                                    - self.disk_free_mb[h]) / cap_d)
            deficit = max(0.0, float(alloc) - (1.0 - self.reserve)) \
                / self.reserve
        else:
            deficit = 0.0
        if active != self._h_active[h]:
            self.n_active += 1 if active else -1
            self._h_active[h] = active
            if self._base_l is not None:
                self.base_w += self._base_l[h] if active \
                    else -self._base_l[h]
        if over != self._h_over[h]:
            self.n_over += 1 if over else -1
            self._h_over[h] = over
        if hot != self._h_hot[h]:
            self.n_hot += 1 if hot else -1
            self._h_hot[h] = hot
        if self._span_l is not None:
            # Hosts of several power models: dynamic watts.
            dyn *= self._span_l[h]
        self.dyn_sum += dyn - self._h_dyn[h]
        self._h_dyn[h] = dyn
        self.def_sum += deficit - self._h_def[h]
        self._h_def[h] = deficit

    def _resample(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                         np.ndarray, np.ndarray]:
        """Usage sample ``k``: redraw every live VM's CPU use and recompute
        every host's rates. Returns ``(live VMs, their hosts, their use,
        each host's CPU utilisation, which hosts are active)``."""
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
        over = active & (demand > self.cores + EPS)
        hot = active & (demand > self.hot_cores + EPS)
        util = demand / self.cores
        dyn = np.where(active, np.minimum(util, 1.0), 0.0)
        if self._span_l is not None:
            dyn = dyn * self._span
            self.base_w = float(self._base[active].sum())
        alloc = np.maximum(self.vcpus_used / self.cap_vcpu,
                           (self.host_ram_mb - self.ram_free_mb)
                           / self.cap_ram)
        if self._all_disk:
            alloc = np.maximum(alloc, (self.host_disk_mb - self.disk_free_mb)
                               / self.cap_disk)
        elif self._any_disk:
            used = np.divide(self.host_disk_mb - self.disk_free_mb,
                             self.cap_disk, out=np.zeros(h),
                             where=self._disk_hosts)
            alloc = np.maximum(alloc, used)
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
        return live, hosts, use, util, active
