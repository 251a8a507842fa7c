"""Hosts' and projects' use, interval by interval, from the instances'
measured series: the content of the usage snapshot
(:mod:`nova_rl_trainer.telemetry.snapshot`).

How a host's series is built, interval by interval (the source's
granularity, 300 s with Ceilometer's ``ceilometer-low`` policies, labelled
as the source labels them):

* CPU: the sum over the instances on the host of their CPU share (of their
  own vCPUs) x their vCPUs / the host's cores, capped at 1 (a host cannot
  use more than its cores: what the simulator's snapshot, and so the
  policy's training, sees). Memory: the sum of their ``memory.usage``
  (guest MiB in use) / the host's RAM; an instance without
  ``memory.usage`` counts its flavor's memory (an upper bound), with a
  warning.
* An instance counts from its first to its last measured interval; an
  interval missing in between (lost polls, a counter reset) takes the
  value of the next measured one, which for lost polls is exactly the
  rate Gnocchi spread over the gap.
* The intervals are every interval any instance was measured in: a host
  holding no instance during some of them gets 0 there, as in the
  simulator. The most recent interval is left out when an instance
  measured in the one before it and still running has no value there yet
  (the collector or ``gnocchi-metricd`` has not got to it).

Which hosts are written:

* every host of the cluster (file or Placement): one without instances in
  the window is **present with 0** use (it is idle: the policy's training
  saw empty hosts at 0, not absent);
* a host with instances but no known capacity is **left out**, with a
  warning (the weigher then sees it as absent, its features say so); a
  Nova host name that is not in the cluster but whose first DNS label
  matches exactly one cluster host (``compute-1`` and Placement's
  ``compute-1.example.org``, Nova's ``host`` against the libvirt node's
  ``hypervisor_hostname``) takes that host's capacity, with a warning;
* a host whose instances have no CPU measures at all in the window is left
  out (unknown is not idle), with a warning.

The instance's host is Gnocchi's current ``host`` attribute: an instance
that migrated inside the window counts on its new host for the whole
window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Mapping, Sequence

import numpy as np

from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance

#: Digits kept in the written fractions.
DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Capacity:
    """A host's physical size: cores and RAM (MiB)."""

    cores: float
    ram_mb: float


@dataclasses.dataclass
class Caveats:
    """What the window's telemetry left uncounted or only estimated: the
    snapshot's warnings, and counts in its summary."""

    #: Instances left out, their size unknown (ids).
    without_size: list[str]
    #: Instances counted for nothing, without CPU measures (ids).
    without_cpu: list[str]
    #: Nova host -> how many of its instances were left out: its capacity
    #: is unknown.
    unknown_capacity: dict[str, int] = dataclasses.field(
        default_factory=dict)
    #: Nova host -> the cluster host its first DNS label matched.
    by_short_name: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Hosts left out: none of their instances has CPU measures.
    hosts_without_cpu: list[str] = dataclasses.field(default_factory=list)
    #: Instances whose flavor's memory counted, without memory.usage.
    without_memory: int = 0
    #: Instances counted for their project only, without a host.
    without_host: int = 0

    def warnings(self) -> list[str]:
        """One line per kind of caveat there is."""
        warnings = []
        if self.without_size:
            warnings.append(
                f'{len(self.without_size)} instances left out: no vcpus or '
                'memory measures and no other instance of their flavor has '
                'them (' + _names(self.without_size) + ')')
        if self.unknown_capacity:
            names = sorted(self.unknown_capacity)
            warnings.append(
                f'{len(names)} hosts with instances left out: their '
                'capacity is unknown (not in the cluster; Nova and the '
                'cluster must name hosts alike): ' + _names(names))
        if self.by_short_name:
            pairs = [f'{h} as {c}'
                     for h, c in sorted(self.by_short_name.items())]
            warnings.append(f'{len(pairs)} hosts matched a cluster host by '
                            'their first DNS label: ' + _names(pairs))
        if self.hosts_without_cpu:
            warnings.append(
                f'{len(self.hosts_without_cpu)} hosts left out: none of '
                'their instances has CPU measures in the window: '
                + _names(self.hosts_without_cpu))
        if self.without_cpu:
            warnings.append(
                f'{len(self.without_cpu)} instances without CPU measures in '
                'the window count for nothing (' + _names(self.without_cpu)
                + ')')
        if self.without_memory:
            warnings.append(
                f'{self.without_memory} instances without memory.usage '
                "measures: their flavor's memory counted (an upper bound)")
        if self.without_host:
            warnings.append(f'{self.without_host} instances without a host: '
                            'counted for their project only')
        return warnings


def _names(items: Sequence[str], limit: int = 5) -> str:
    more = f' and {len(items) - limit} more' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


#: Instance id -> (intervals, values) on its span of intervals.
Spans = dict[str, tuple[np.ndarray, np.ndarray]]


def spans(instances: Sequence[Instance], usage: Mapping[str, CpuUsage],
          memory: Mapping[str, tuple[np.ndarray, np.ndarray]],
          granularity: float, stop: dt.datetime
          ) -> tuple[Spans, Spans, np.ndarray]:
    """Each instance's CPU share and memory on its span of intervals (of
    ``granularity`` seconds), and the window's intervals (see the module
    doc)."""
    def buckets(times: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(times, dtype=np.float64)
                       / granularity).astype(np.int64)

    cpu: Spans = {}
    mem: Spans = {}
    for inst in instances:
        u = usage.get(inst.id)
        if u is not None and u.shares.size:
            cpu[inst.id] = _span(buckets(u.times), u.shares)
        times_mib = memory.get(inst.id)
        if times_mib is not None and len(times_mib[0]):
            t, mib = times_mib
            ok = np.isfinite(mib) & (np.asarray(mib) >= 0)
            if ok.any():
                mem[inst.id] = _span(buckets(np.asarray(t)[ok]),
                                     np.asarray(mib, dtype=np.float64)[ok])
    grid = (np.unique(np.concatenate([k for k, _ in cpu.values()]))
            if cpu else np.zeros(0, dtype=np.int64))
    if grid.size >= 2:
        # The latest interval is still incomplete while an instance
        # measured in the one before it, and still running, has no value
        # there yet: left out.
        before = grid[-2]
        running = {i.id for i in instances
                   if i.departure is None or i.departure >= stop}
        if any(k[-1] == before and rid in running
               for rid, (k, _) in cpu.items()):
            grid = grid[:-1]
            cpu = {rid: (k[k <= before], v[k <= before])
                   for rid, (k, v) in cpu.items() if k[0] <= before}
    return cpu, mem, grid


def _span(buckets: np.ndarray, values: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Every bucket from the first to the last measured one; those
    missing in between take the next measured value."""
    order = np.argsort(buckets, kind='stable')
    buckets, values = buckets[order], values[order]
    # One value per bucket (the last, should a source repeat one).
    last = np.r_[buckets[1:] != buckets[:-1], True]
    buckets, values = buckets[last], values[last]
    full = np.arange(buckets[0], buckets[-1] + 1, dtype=np.int64)
    return full, values[np.searchsorted(buckets, full)]


def _resolver(capacities: Mapping[str, Capacity]):
    """Nova host name -> (cluster name, by short name?) or (None, False)."""
    short: dict[str, list[str]] = {}
    for name in capacities:
        short.setdefault(name.split('.')[0], []).append(name)

    def resolve(host: str) -> tuple[str | None, bool]:
        if host in capacities:
            return host, False
        found = short.get(host.split('.')[0], [])
        if len(found) == 1:
            return found[0], True
        return None, False
    return resolve


def host_entries(instances: Sequence[Instance], cpu: Spans, mem: Spans,
                 grid: np.ndarray, capacities: Mapping[str, Capacity],
                 stop: dt.datetime, caveats: Caveats
                 ) -> tuple[dict[str, dict], dict[str, tuple[float, float]],
                            dict[str, tuple[float, float]], int]:
    """The hosts written (see the module doc) with their use over ``grid``;
    each one's highest CPU and memory interval; the vCPUs and memory of
    its instances running at ``stop``; how many are idle. What could not
    be counted goes into ``caveats``."""
    resolve = _resolver(capacities)
    n = grid.size
    host_cpu: dict[str, np.ndarray] = {}
    host_mem: dict[str, np.ndarray] = {}
    host_measured: dict[str, int] = {}
    used_cluster_names: set[str] = set()
    allocation: dict[str, list[float]] = {}
    for inst in instances:
        if not inst.host:
            caveats.without_host += 1
            continue
        name, short = resolve(inst.host)
        if name is None:
            caveats.unknown_capacity[inst.host] = caveats.unknown_capacity.get(
                inst.host, 0) + 1
            continue
        if short:
            caveats.by_short_name[inst.host] = name
        used_cluster_names.add(name)
        cap = capacities[name]
        host = inst.host
        if inst.departure is None or inst.departure >= stop:
            alloc = allocation.setdefault(host, [0.0, 0.0])
            alloc[0] += float(inst.vcpus)
            alloc[1] += float(inst.memory_mb)
        if host not in host_cpu:
            host_cpu[host] = np.zeros(n)
            host_mem[host] = np.zeros(n)
            host_measured[host] = 0
        kv = cpu.get(inst.id)
        if kv is None:
            continue
        k, share = kv
        host_measured[host] += 1
        pos = np.searchsorted(grid, k)
        host_cpu[host][pos] += share * inst.vcpus / cap.cores
        # Memory over the instance's presence: its CPU span and its
        # memory span, within the grid.
        present = k
        if inst.id in mem:
            mk, mib = mem[inst.id]
            inside = (mk >= grid[0]) & (mk <= grid[-1])
            present = np.union1d(k, mk[inside])
            present = present[np.isin(present, grid)]
            idx = np.clip(np.searchsorted(mk, present), 0, mk.size - 1)
            # Nearest measured value outside the memory span.
            values = mib[idx]
        else:
            caveats.without_memory += 1
            values = np.full(present.shape, float(inst.memory_mb))
        host_mem[host][np.searchsorted(grid, present)] += values / cap.ram_mb

    hosts: dict[str, dict] = {}
    host_peaks: dict[str, tuple[float, float]] = {}
    for host in sorted(host_cpu):
        if host_measured[host] == 0:
            caveats.hosts_without_cpu.append(host)
            continue
        series = (np.minimum(host_cpu[host], 1.0), host_mem[host])
        hosts[host] = _entry(*series)
        host_peaks[host] = tuple(_peak(x) for x in series)
    idle = 0
    for name in capacities:
        if name in used_cluster_names or name in hosts:
            continue
        hosts[name] = _entry(np.zeros(n), np.zeros(n))
        host_peaks[name] = (0.0, 0.0)
        idle += 1
    return (hosts, host_peaks,
            {h: (a[0], a[1]) for h, a in allocation.items() if h in hosts},
            idle)


def project_ratios(instances: Sequence[Instance], cpu: Spans,
                   grid: np.ndarray
                   ) -> tuple[dict[str, dict], dict[str, float]]:
    """Each project's used / allocated CPU over ``grid`` (the snapshot's
    ``cpu_ratio``), and its highest interval of it."""
    proj_used: dict[str, float] = {}
    proj_alloc: dict[str, float] = {}
    # Per project and interval, for its peak ratio.
    proj_used_k: dict[str, np.ndarray] = {}
    proj_alloc_k: dict[str, np.ndarray] = {}
    for inst in instances:
        kv = cpu.get(inst.id)
        if kv is None or not inst.project_id:
            continue
        k, share = kv
        proj_used[inst.project_id] = proj_used.get(
            inst.project_id, 0.0) + float(share.sum()) * inst.vcpus
        proj_alloc[inst.project_id] = proj_alloc.get(
            inst.project_id, 0.0) + k.size * inst.vcpus
        inside = np.isin(k, grid)
        pos = np.searchsorted(grid, k[inside])
        if inst.project_id not in proj_used_k:
            proj_used_k[inst.project_id] = np.zeros(grid.size)
            proj_alloc_k[inst.project_id] = np.zeros(grid.size)
        np.add.at(proj_used_k[inst.project_id], pos,
                  share[inside] * inst.vcpus)
        np.add.at(proj_alloc_k[inst.project_id], pos, inst.vcpus)
    project_peaks = {}
    for pid, used in proj_used_k.items():
        alloc = proj_alloc_k[pid]
        ok = alloc > 0
        if ok.any():
            project_peaks[pid] = _peak(used[ok] / alloc[ok])
    projects = {pid: {'cpu_ratio': round(proj_used[pid] / alloc, DIGITS)}
                for pid, alloc in sorted(proj_alloc.items()) if alloc > 0}
    return projects, project_peaks


def _entry(cpu: np.ndarray, mem: np.ndarray) -> dict:
    def stat(x: np.ndarray, p95: bool) -> float:
        if x.size == 0:
            return 0.0
        v = float(np.percentile(x, 95)) if p95 else float(x.mean())
        return round(max(v, 0.0), DIGITS)
    return {'cpu_util_mean': stat(cpu, False), 'cpu_util_p95': stat(cpu, True),
            'mem_util_mean': stat(mem, False), 'mem_util_p95': stat(mem, True)}


def _peak(x: np.ndarray) -> float:
    return round(max(float(x.max()), 0.0), DIGITS) if x.size else 0.0
