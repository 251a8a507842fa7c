"""The cluster's state: host columns, placement's filter, placing and
releasing VMs, and each host's contribution to the accrual rates.

Per request, as Nova 34 does it: placement keeps the hosts where
``used + requested <= physical * allocation_ratio`` for vCPUs, RAM and disk
and the request is no larger than the host (``max_unit``); if none is left
the request is rejected (``NoValidHost``).

Host state is kept as numpy columns in the layout of
``nova_rl_weigher.features.HostColumns`` (:data:`COLUMN`), so filtering and
heuristic scoring are vectorised and the candidates' columns are one slice
away (:mod:`candidates`). Between events, the number of active hosts, the
fluid lower bound, overloaded and hot hosts, dynamic power and headroom
deficit are constant: each host's share of them is kept, and their sums are
what :mod:`accounting` integrates over time.
"""

from __future__ import annotations

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
    ``num_instances`` (views, updated in place); the capacities
    ``cap_vcpu``, ``cap_ram``, ``cap_disk`` (what placement allows per host)
    and ``cores``; ``demand`` (actual CPU use per host, cores), ``measured``
    (the demand at the last usage sample) and ``recent_vcpus`` (vCPUs placed
    since); ``host_of`` (each VM's host, -1 if none); the accrual rates
    ``n_active``, ``n_over``, ``n_hot``, ``dyn_sum``, ``def_sum``, ``lb``;
    ``peak_alloc`` and ``peak_active``. :meth:`place` puts the pending
    request (``current_vm``, candidates ``fit``: the event loop's) on a
    host.
    """

    _VIEWS = ('vcpus_used', 'ram_free_mb', 'disk_free_mb', 'num_instances')

    def _init_cluster(self) -> None:
        cluster = self.cluster
        cfg = self.config
        h = cluster.hosts
        # Host columns in HostColumns order; named rows are views.
        cols = np.zeros((len(COLUMN), h))
        cols[COLUMN['vcpus_total']] = cluster.host_vcpus
        cols[COLUMN['ram_total_mb']] = cluster.host_ram_mb
        cols[COLUMN['ram_free_mb']] = cluster.host_ram_mb
        cols[COLUMN['disk_total_gb']] = cluster.host_disk_gb
        cols[COLUMN['disk_free_mb']] = cluster.host_disk_gb * 1024.0
        cols[COLUMN['cpu_allocation_ratio']] = cluster.cpu_allocation_ratio
        cols[COLUMN['ram_allocation_ratio']] = cluster.ram_allocation_ratio
        cols[COLUMN['disk_allocation_ratio']] = \
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
        self.lb = 0
        self.live_vcpus = 0.0
        self.live_ram = 0.0
        self.live_disk = 0.0
        self.hot_cores = cfg.hot_threshold * self.cores
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
        c = self.cluster
        # Placement's max_unit: a VM never spans hosts.
        if v > c.host_vcpus or m > c.host_ram_mb or \
                d > c.host_disk_gb * 1024.0:
            return None
        fit = self.vcpus_used <= self.cap_vcpu - v + EPS
        fit &= self.ram_free_mb >= m - self.ram_offset - EPS
        if d > 0:
            fit &= self.disk_free_mb >= d - self.disk_offset - EPS
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
        h = self.n_hosts
        alloc = max(self.live_vcpus / (self.cap_vcpu * h),
                    self.live_ram / (self.cap_ram * h),
                    self.live_disk / (self.cap_disk * h)
                    if self.cap_disk > 0 else 0.0)
        if alloc > self.peak_alloc:
            self.peak_alloc = alloc

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

    # -- accrual rates --------------------------------------------------------

    def _update_lb(self) -> None:
        """The fluid lower bound: hosts the live VMs need at the least."""
        lb = math.ceil(self.live_vcpus / self.cap_vcpu - EPS)
        r = math.ceil(self.live_ram / self.cap_ram - EPS)
        if r > lb:
            lb = r
        if self.cap_disk > 0:
            r = math.ceil(self.live_disk / self.cap_disk - EPS)
            if r > lb:
                lb = r
        self.lb = lb if lb > 0 else 0

    def _host_changed(self, h: int) -> None:
        """Recompute host ``h``'s contributions to the accrual rates."""
        n_inst = self.num_instances[h]
        active = n_inst > 0.5
        dem = float(self.demand[h]) if active else 0.0
        over = dem > self.cores + EPS
        hot = dem > self.hot_cores + EPS
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
        return live, hosts, use, util, active
