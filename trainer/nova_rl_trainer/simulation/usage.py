"""The usage snapshot policies read, as the weigher's snapshot in Nova.

At every usage sample, each host's CPU utilisation (capped at its cores:
what a collector measures) and memory use, as fractions of that host's own
cores and RAM, and each project's CPU use and allocation, go into rings
spanning ``SimConfig.usage_window_s``; the host columns' usage rows get the
mean and p95 over the ring, and
:attr:`UsageSnapshot.project_ratio` each project's used / allocated CPU over
it; schema v2's allocation at the sample and 24 h peaks (of hosts' CPU
and memory use, of projects' used / allocated CPU) are kept with it. The
snapshot is only kept when a policy reads it
(:meth:`UsageSnapshot.enable_usage`, before the first event); otherwise the
usage rows stay zero (``usage_present`` 0: usage absent).
"""

from __future__ import annotations

import numpy as np

from nova_rl_trainer.simulation.cluster_state import COLUMN

#: Hours the daily peaks span.
PEAK_HOURS = 24


class UsageSnapshot:
    """Mixin of :class:`~nova_rl_trainer.simulation.simulator.Simulation`:
    the usage rings and their refresh. ``needs_usage`` says whether the
    snapshot is kept; ``project_ratio`` holds each project's measured
    used/allocated CPU (NaN if unknown)."""

    def _init_usage(self) -> None:
        cfg = self.config
        self.needs_usage = False
        self._window = max(1, int(round(cfg.usage_window_s
                                        / cfg.usage_interval_s)))
        self._ring_fill = 0
        self._cpu_ring = self._mem_ring = None
        self._proj_use = self._proj_alloc = None
        self.project_ratio = np.full(
            len(self.workload.trace.project_ids), np.nan)
        # Schema v2: each host's vCPUs and RAM MB allocated at the last
        # sample, its and each project's 24 h peaks (NaN: unknown), and
        # the hourly maxima they come from.
        self.sample_alloc = np.full((2, self.n_hosts), np.nan)
        self.host_peaks = np.full((2, self.n_hosts), np.nan)
        self.project_peak = np.full(len(self.workload.trace.project_ids),
                                    np.nan)
        self._peak_hour = -1
        self._host_hourly = self._proj_hourly = None

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
        self._host_hourly = np.full((PEAK_HOURS, 2, self.n_hosts), np.nan)
        self._proj_hourly = np.full((PEAK_HOURS, p), np.nan)

    def _refresh_snapshot(self, live: np.ndarray, hosts: np.ndarray,
                          use: np.ndarray, util: np.ndarray) -> None:
        """Add the sample just taken (``live`` VMs on ``hosts`` using
        ``use`` cores; hosts at ``util``) and recompute the snapshot."""
        wl = self.workload
        slot = self._ring_fill % self._window
        self._ring_fill += 1
        # A host cannot use more than its cores: what a collector measures.
        self._cpu_ring[slot] = np.minimum(util, 1.0)
        self._mem_ring[slot] = np.bincount(
            hosts, weights=wl.mem_use[live], minlength=self.n_hosts
        ) / self.host_ram_mb
        proj = wl.trace.project[live]
        p = self.project_ratio.shape[0]
        self._proj_use[slot] = np.bincount(proj, weights=use, minlength=p)
        self._proj_alloc[slot] = np.bincount(proj, weights=wl.vcpus[live],
                                             minlength=p)
        filled = min(self._ring_fill, self._window)
        cpu = self._cpu_ring[:filled]
        mem = self._mem_ring[:filled]
        c = self.cols
        c[COLUMN['usage_present']] = 1.0
        c[COLUMN['cpu_util_mean']] = cpu.mean(axis=0)
        c[COLUMN['cpu_util_p95']] = np.percentile(cpu, 95, axis=0)
        c[COLUMN['mem_util_mean']] = mem.mean(axis=0)
        c[COLUMN['mem_util_p95']] = np.percentile(mem, 95, axis=0)
        alloc = self._proj_alloc.sum(axis=0)
        with np.errstate(invalid='ignore', divide='ignore'):
            self.project_ratio = np.where(
                alloc > 0, self._proj_use.sum(axis=0) / alloc, np.nan)
            ratio = np.where(self._proj_alloc[slot] > 0,
                             self._proj_use[slot] / self._proj_alloc[slot],
                             np.nan)
        self._record_peaks(self._cpu_ring[slot], self._mem_ring[slot], ratio)

    def _record_peaks(self, cpu: np.ndarray, mem: np.ndarray,
                      ratio: np.ndarray) -> None:
        """Schema v2's inputs at a sample: the allocation now, and the 24 h
        peaks as the highest of the last 24 hourly maxima (NaN ignored)."""
        self.sample_alloc[0] = self.vcpus_used
        np.subtract(self.host_ram_mb, self.ram_free_mb,
                    out=self.sample_alloc[1])
        hour = int(self.now // 3600.0)
        slot = hour % PEAK_HOURS
        if hour != self._peak_hour:
            self._peak_hour = hour
            self._host_hourly[slot] = np.nan
            self._proj_hourly[slot] = np.nan
        np.fmax(self._host_hourly[slot, 0], cpu,
                out=self._host_hourly[slot, 0])
        np.fmax(self._host_hourly[slot, 1], mem,
                out=self._host_hourly[slot, 1])
        np.fmax(self._proj_hourly[slot], ratio, out=self._proj_hourly[slot])
        with np.errstate(invalid='ignore'):
            # All-NaN columns (never measured) stay NaN, quietly.
            self.host_peaks = np.fmax.reduce(self._host_hourly, axis=0)
            self.project_peak = np.fmax.reduce(self._proj_hourly, axis=0)
