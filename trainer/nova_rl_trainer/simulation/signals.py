"""Schema v2's placement signals, from the simulation's own history.

What the snapshot producer reads from Gnocchi in a real cloud, the
simulator takes from its simulated past, through the same definitions in
``nova_rl_weigher.features``:

* allocation at the last usage sample and 24 h peaks: kept by
  :mod:`usage` at each sample (:meth:`PlacementSignals.host_signals` reads
  them);
* lifetimes: the completed lifetimes (departure minus arrival) of the VMs
  placed so far, per project, per flavor and per project and flavor
  (``lifetimes.lifetime_stats``); a request's siblings are its project's
  requests of the last ``lifetimes.SIBLING_WINDOW_S`` that were placed
  (``lifetimes.sibling_lifetime``);
* each host's expected remaining busy time: each VM is predicted from the
  statistics when it was placed and re-predicted as it outlives its
  estimate (``lifetimes.expected_end_s``). Those estimates only change at
  the instants a VM outlives one, so each VM's estimate is kept, with a
  heap per host of its VMs' estimates (earliest first): when the earliest
  passes, only the VMs outlived are re-predicted (a host holds tens of
  VMs, and recomputing them all was most of a late decision's time); the
  host's busy end (the latest estimate) is only recomputed when the VM
  holding it leaves.

Everything is kept only with the usage snapshot, from the first v2 feature
matrix a policy asks for (usually the first request: a run whose policies
read only v1's columns pays nothing; started later, it is rebuilt from the
VMs placed so far, each started at its arrival as the simulator places
them).
"""

from __future__ import annotations

import bisect
import heapq
import math

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher import lifetimes as lifetimes_mod


class PlacementSignals:
    """Mixin of :class:`~nova_rl_trainer.simulation.simulator.Simulation`:
    lifetime statistics and host busy periods for schema v2's signals."""

    def _init_signals(self) -> None:
        h = self.n_hosts
        self._life_on = False
        # Per host: end of its busy period (-inf empty, NaN none of its
        # VMs predicted), the earliest estimate to be outlived, its VMs
        # (a dict as an ordered set: placement order, O(1) removal) and
        # the heap of its predicted VMs' (estimate, VM), where a departed
        # VM's entry stays until it comes to the top.
        self._busy_end = np.full(h, -np.inf)
        self._next_change = np.full(h, np.inf)
        self._host_vms: list[dict[int, None]] | None = None
        self._end_heaps: list[list[tuple[float, int]]] | None = None
        # Each running predicted VM's current estimate of its end.
        self._vm_end: dict[int, float] = {}
        # The last request's prediction (VM, time, lifetime): asked for
        # its features, then again when it is placed, at the same time.
        self._last_prediction: tuple[int, float,
                                     lifetimes_mod.Lifetime | None] = (
            -1, math.nan, None)
        # Each VM's placement time (NaN: not placed, or rejected).
        self._vm_start = np.full(len(self.workload), np.nan)
        # Running VMs' (start, lifetime distribution or None).
        self._vm_life: dict[int, tuple[float,
                                       lifetimes_mod.Lifetime | None]] = {}
        # Completed lifetimes by group (ascending), and how far the
        # departures have been read.
        self._done = 0
        self._by_project: dict[int, list[float]] = {}
        self._by_flavor: dict[int, list[float]] = {}
        self._by_pair: dict[tuple[int, int], list[float]] = {}

    def _signals_copies(self) -> dict[int, object]:
        """Copies of the signals' containers for :meth:`clone`'s memo.

        ``copy.deepcopy`` walks every tuple and float of them (0.8 s a clone
        late in a 3-day trace, most of a vine iteration); their elements are
        immutable (floats, ints, frozen :class:`lifetimes.Lifetime`), so a
        copy of each container is a deep copy."""
        out: dict[int, object] = {
            id(self._vm_life): dict(self._vm_life),
            id(self._vm_end): dict(self._vm_end)}
        for table in (self._by_project, self._by_flavor, self._by_pair):
            out[id(table)] = {k: v.copy() for k, v in table.items()}
        for per_host in (self._host_vms, self._end_heaps):
            if per_host is not None:
                out[id(per_host)] = [v.copy() for v in per_host]
        return out

    def _start_signals(self) -> None:
        """Keep the lifetime signals from now on, with what was placed so
        far (VMs are placed at their arrival)."""
        self._life_on = True
        self._host_vms = [{} for _ in range(self.n_hosts)]
        self._end_heaps = [[] for _ in range(self.n_hosts)]
        tr = self.workload.trace
        arrived = tr.arrival_s <= self.now
        ran = arrived & ((self.host_of >= 0) | (tr.departure_s <= self.now))
        self._vm_start[ran] = tr.arrival_s[ran]
        now = self.now
        for vm in np.flatnonzero(self.host_of >= 0).tolist():
            host = int(self.host_of[vm])
            start = float(tr.arrival_s[vm])
            life = self._predict_instance(vm)
            self._host_vms[host][vm] = None
            self._vm_life[vm] = (start, life)
            if life is not None:
                end = lifetimes_mod.expected_end_s(start, now, life)
                self._vm_end[vm] = end
                self._end_heaps[host].append((end, vm))
        for h in range(self.n_hosts):
            heapq.heapify(self._end_heaps[h])
            self._busy_end[h] = self._latest_end(h)
            self._settle(h)

    def _ensure_signals(self) -> bool:
        """Whether the signals are kept (started at the first ask, with
        the usage snapshot)."""
        if not self._life_on and self.needs_usage:
            self._start_signals()
        return self._life_on

    # -- hooks of cluster_state ------------------------------------------

    def _signals_placed(self, vm: int, host: int) -> None:
        now = self.now
        life = self._predict_instance(vm)
        self._vm_start[vm] = now
        self._vm_life[vm] = (now, life)
        self._host_vms[host][vm] = None
        end = self._busy_end[host]
        if life is None:
            if end == -np.inf:
                self._busy_end[host] = np.nan
            return
        new = lifetimes_mod.expected_end_s(now, now, life)
        self._vm_end[vm] = new
        heapq.heappush(self._end_heaps[host], (new, vm))
        if not new <= end:       # also when end is NaN
            self._busy_end[host] = new
        if new < self._next_change[host]:
            self._next_change[host] = new

    def _signals_released(self, vm: int, host: int) -> None:
        vms = self._host_vms[host]
        del vms[vm]
        del self._vm_life[vm]
        end = self._vm_end.pop(vm, None)
        heap = self._end_heaps[host]
        if not vms:
            self._busy_end[host] = -np.inf
            self._next_change[host] = np.inf
            heap.clear()
            return
        if len(heap) > 2 * len(vms) + 16:
            # Departed VMs' entries only leave from the top, as a host is
            # read: keep the heap (copied by every clone) in proportion.
            heap[:] = [e for e in heap if e[1] in self._vm_end]
            heapq.heapify(heap)
        if end is None:
            return
        # Only a VM at one of the host's extremes changes them (its
        # estimate may be outlived, on a host refreshed when read: the
        # busy end stays the latest kept estimate, as the refresh needs).
        if not end < self._busy_end[host]:
            self._busy_end[host] = self._latest_end(host)
        if end <= self._next_change[host]:
            self._settle(host)

    # -- state --------------------------------------------------------------

    def _latest_end(self, host: int) -> float:
        """The latest kept estimate of the host's VMs (-inf empty, NaN
        none predicted)."""
        vms = self._host_vms[host]
        best = -np.inf if not vms else np.nan
        ends = self._vm_end
        for vm in vms:
            end = ends.get(vm)
            if end is not None and not end <= best:
                best = end
        return best

    def _settle(self, host: int) -> None:
        """Drop departed VMs' entries off the top of the host's heap; the
        earliest estimate left is its next change."""
        heap = self._end_heaps[host]
        ends = self._vm_end
        while heap and heap[0][1] not in ends:
            heapq.heappop(heap)
        self._next_change[host] = heap[0][0] if heap else np.inf

    def _refresh_host(self, host: int) -> None:
        """Re-predict the host's VMs whose estimate has passed (its next
        change is due): as if every VM's estimate were recomputed now, the
        others' being unchanged until they pass."""
        now = self.now
        heap = self._end_heaps[host]
        ends = self._vm_end
        lives = self._vm_life
        end_of = lifetimes_mod.expected_end_s
        best = self._busy_end[host]
        while heap and heap[0][0] <= now:
            _, vm = heapq.heappop(heap)
            if vm not in ends:
                continue        # departed
            start, life = lives[vm]
            end = end_of(start, now, life)
            ends[vm] = end
            heapq.heappush(heap, (end, vm))
            if not end <= best:
                best = end
        self._busy_end[host] = best
        self._settle(host)

    def _read_completed(self) -> None:
        """Add the lifetimes of the placed VMs departed by now."""
        index = self.workload.life
        dep = index.departure_sorted
        order = index.by_departure_l
        stop = bisect.bisect_right(dep, self.now)
        i = self._done
        if i >= stop:
            return
        flavor = index.flavor
        project = self.workload.trace.project
        life_s = index.lifetime_s
        started = self._vm_start
        for vm in order[i:stop]:
            if math.isnan(started[vm]):
                continue        # rejected: it never ran
            value = float(life_s[vm])
            p = int(project[vm])
            f = int(flavor[vm])
            for table, key in ((self._by_project, p), (self._by_flavor, f),
                               (self._by_pair, (p, f))):
                bisect.insort(table.setdefault(key, []), value)
        self._done = stop

    def _predict_instance(self, vm: int) -> lifetimes_mod.Lifetime | None:
        """A VM's lifetime distribution: project and flavor, else project,
        else flavor (``lifetimes.Lifetimes.for_instance``'s order)."""
        last_vm, last_now, life = self._last_prediction
        if last_vm == vm and last_now == self.now:
            return life     # the statistics read up to now already
        self._read_completed()
        p = int(self.workload.trace.project[vm])
        f = int(self.workload.life.flavor[vm])
        life = None
        for table, key in ((self._by_pair, (p, f)), (self._by_project, p),
                           (self._by_flavor, f)):
            values = table.get(key)
            if values:
                life = lifetimes_mod.lifetime_stats(values)
                break
        self._last_prediction = (vm, self.now, life)
        return life

    def _siblings(self, vm: int) -> lifetimes_mod.Lifetime | None:
        """The lifetimes of the project's placed requests of the last
        ``SIBLING_WINDOW_S``, some still running."""
        index = self.workload.life
        now = self.now
        p = int(self.workload.trace.project[vm])
        lo, hi = index.project_start[p], index.project_start[p + 1]
        arrivals = index.project_arrival[lo:hi]
        # Arrivals of the window up to now: a VM is placed at its arrival,
        # so none after now has run (a batch project has thousands).
        first = int(np.searchsorted(
            arrivals, now - lifetimes_mod.SIBLING_WINDOW_S))
        last = int(np.searchsorted(arrivals, now, side='right'))
        others = index.project_vms[lo + first:lo + last]
        start = self._vm_start[others]
        # Placed ones only (not rejected, not the request itself).
        placed = ~np.isnan(start) & (others != vm)
        if not placed.any():
            return None
        start = start[placed]
        dep = self.workload.trace.departure_s[others[placed]]
        ended = dep <= now
        return lifetimes_mod.sibling_lifetime((dep - start)[ended],
                                              now - start[~ended])

    # -- what policies read ----------------------------------------------

    def request_signals(self, vm: int) -> features.RequestSignals:
        """Schema v2's request inputs for ``vm`` (none without the usage
        snapshot)."""
        if not self._ensure_signals():
            return features.NO_REQUEST_SIGNALS
        life = self._siblings(vm)
        if life is None:
            life = self._predict_instance(vm)
        peak = self.project_peak[self.workload.trace.project[vm]]
        return features.RequestSignals(
            life, None if math.isnan(peak) else float(peak))

    def host_signals(self, cand: np.ndarray) -> np.ndarray | None:
        """Schema v2's per-host inputs (``features.SIGNAL_COLUMNS`` rows)
        for hosts ``cand``; None (all unknown) without the snapshot."""
        if not self._ensure_signals():
            return None
        now = self.now
        stale = cand[self._next_change[cand] <= now]
        for h in stale.tolist():
            self._refresh_host(h)
        out = np.empty((len(features.SIGNAL_COLUMNS), cand.shape[0]))
        # take: [:, cand] would gather column by column (four times as
        # long).
        out[0:2] = self.sample_alloc.take(cand, axis=1)
        out[2:4] = self.host_peaks.take(cand, axis=1)
        np.subtract(self._busy_end[cand], now, out=out[4])
        np.maximum(out[4], 0.0, out=out[4])
        return out

    # -- inspection (tests, snapshots of the simulated cloud) ---------------

    def keep_signals(self) -> None:
        """Keep the v2 signals from now on, whatever the policy reads
        (with the usage snapshot, :meth:`enable_usage`)."""
        self._ensure_signals()

    def lifetime_tables(self) -> lifetimes_mod.Lifetimes:
        """The lifetime statistics measured so far, keyed as a usage
        snapshot keys them (project ids, flavor names; no siblings)."""
        self._read_completed()
        ids = self.workload.trace.project_ids
        names = self.workload.life.flavor_names
        stats = lifetimes_mod.lifetime_stats
        return lifetimes_mod.Lifetimes(
            project_flavor={(ids[p], names[f]): stats(v)
                            for (p, f), v in self._by_pair.items()},
            project={ids[p]: stats(v) for p, v in self._by_project.items()},
            flavor={names[f]: stats(v) for f, v in self._by_flavor.items()})

    def holdings(self, host: int
                 ) -> list[tuple[int, float, lifetimes_mod.Lifetime | None]]:
        """``(VM, start, lifetime distribution it was predicted from)`` of
        each VM on ``host``."""
        return [(vm, *self._vm_life[vm]) for vm in self._host_vms[host]]

    def siblings(self, vm: int) -> lifetimes_mod.Lifetime | None:
        """The lifetimes of ``vm``'s siblings (None if unknown)."""
        return self._siblings(vm) if self._ensure_signals() else None
