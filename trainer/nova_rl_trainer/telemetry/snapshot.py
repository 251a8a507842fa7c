"""The weigher's usage snapshot from measured telemetry.

``nova-rl-trainer snapshot`` reads the last ``window_s`` seconds of a
metrics source and writes what :mod:`nova_rl_weigher.snapshot` reads (with
its :func:`~nova_rl_weigher.snapshot.write`: validated as the weigher
parses it, replaced atomically):

* per **host**, keyed by the compute host name Nova uses (the instance's
  ``host``, which Ceilometer copies into Gnocchi; the weigher looks up
  ``HostState.host``): CPU and memory use, mean and 95th percentile over
  the window's measurement intervals, as fractions of the host's physical
  cores and RAM (from a cluster file or from Placement);
* per **project**: measured used / allocated CPU (vCPU-seconds used over
  vCPU-seconds of its measured instances).

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

Format version 2's fields (:func:`build_v2`; the weigher's feature schema
v2 reads them):

* per host written: ``vcpus_allocated`` / ``ram_mb_allocated``, the sum of
  the vCPUs and memory of the instances on it still running at the end of
  the window (the allocation the usage was sampled at; the weigher takes
  the difference with the live allocation), and ``cpu_util_peak_24h`` /
  ``mem_util_peak_24h``, the highest interval of the host's series (as
  above) over the last ``peak_window_s`` (24 h);
* per project: ``cpu_ratio_peak_24h``, its highest interval of used /
  allocated CPU over the peak window;
* per project ``lifetime``, ``flavors`` and ``recent_lifetime``, and
  ``flavors`` over every project: the lifetimes measured over the last
  ``lifetime_window_s`` (:mod:`nova_rl_trainer.telemetry.measured_lifetimes`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from typing import Mapping, Sequence

import numpy as np

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.telemetry.ingest import fill_sizes
from nova_rl_trainer.telemetry import measured_lifetimes
# build_v2's default, and so the command's, beside PEAK_WINDOW_S.
from nova_rl_trainer.telemetry.measured_lifetimes import LIFETIME_WINDOW_S
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import MetricsSource
from nova_rl_trainer.telemetry.sources import require_metrics
from nova_rl_trainer.telemetry.sources import SourceError
from nova_rl_trainer.telemetry.sources import utc
from nova_rl_weigher import snapshot as weigher_snapshot

#: Digits kept in the written fractions.
DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Capacity:
    """A host's physical size: cores and RAM (MiB)."""

    cores: float
    ram_mb: float


@dataclasses.dataclass
class Snapshot:
    """What :func:`build` measured: the snapshot's content, counts and
    warnings."""

    generated_at: float
    hosts: dict[str, dict]
    projects: dict[str, dict]
    summary: dict
    warnings: list[str]
    flavors: dict[str, dict] = dataclasses.field(default_factory=dict)
    #: Highest interval over the window: host -> (CPU, memory) and
    #: project -> used / allocated CPU (what the 24 h peaks are made of).
    host_peaks: dict[str, tuple[float, float]] = dataclasses.field(
        default_factory=dict, repr=False)
    project_peaks: dict[str, float] = dataclasses.field(
        default_factory=dict, repr=False)
    #: Host -> (vCPUs, memory MB) of its instances running at the end.
    allocation: dict[str, tuple[float, float]] = dataclasses.field(
        default_factory=dict, repr=False)


def capacities_from_cluster(cluster: ClusterSpec) -> dict[str, Capacity]:
    """Host name -> capacity, from a cluster (its ``hosts`` names, or
    ``<group>-<i>``)."""
    a = cluster.per_host
    return {name: Capacity(float(c), float(r))
            for name, c, r in zip(a.names, a.vcpus, a.ram_mb)}


def capacities_from_hosts(hosts: Sequence) -> dict[str, Capacity]:
    """Host name -> capacity from Placement's compute hosts
    (:class:`~nova_rl_trainer.telemetry.placement.ComputeHost`)."""
    return {h.name: Capacity(float(h.vcpus), float(h.ram_mb)) for h in hosts}


def _names(items: Sequence[str], limit: int = 5) -> str:
    more = f' and {len(items) - limit} more' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


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


def build(source: MetricsSource, capacities: Mapping[str, Capacity],
          stop: dt.datetime, window_s: float) -> Snapshot:
    """The snapshot of ``[stop - window_s, stop)`` (see the module doc)."""
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f'--window-s {window_s:g}: must be a positive '
                         'number of seconds')
    stop = utc(stop)
    start = stop - dt.timedelta(seconds=window_s)
    found = source.instances(start, stop)
    require_metrics(found, source.name, f'of the last {window_s:g} s',
                    ('vcpus',))
    complete, skipped, size_counts = fill_sizes(found)
    usage: Mapping[str, CpuUsage] = (
        source.cpu_usage(complete, start, stop) if complete else {})
    if any(u.shares is None or u.times is None for u in usage.values()):
        raise SourceError(
            f'source {source.name} gives CPU use as a mean and 95th '
            'percentile per instance, without a value per interval: a '
            "host's use is a sum over its instances interval by interval, "
            'so the usage snapshot needs a source with series (gnocchi)')
    memory = source.memory_usage(complete, start, stop) if complete else {}
    granularity = next((float(u.interval_s) for u in usage.values()
                        if u.interval_s), None) or float(
        getattr(source, 'granularity_s', 300.0))

    def buckets(times: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(times, dtype=np.float64)
                       / granularity).astype(np.int64)

    # Each instance's CPU share and memory on its span of intervals.
    cpu: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    mem: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for inst in complete:
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
        running = {i.id for i in complete
                   if i.departure is None or i.departure >= stop}
        if any(k[-1] == before and rid in running
               for rid, (k, _) in cpu.items()):
            grid = grid[:-1]
            cpu = {rid: (k[k <= before], v[k <= before])
                   for rid, (k, v) in cpu.items() if k[0] <= before}
    if complete and cpu == {} and any(
            i.metrics is None or 'cpu' in i.metrics for i in complete):
        raise SourceError(
            f'none of the {len(complete)} instances of the last '
            f'{window_s:g} s has CPU measures in {source.name} (is '
            'gnocchi-metricd processing? is the window shorter than the '
            f'granularity, {granularity:g} s?)')

    resolve = _resolver(capacities)
    n = grid.size
    host_cpu: dict[str, np.ndarray] = {}
    host_mem: dict[str, np.ndarray] = {}
    host_measured: dict[str, int] = {}
    unknown_capacity: dict[str, int] = {}
    by_short: dict[str, str] = {}
    used_cluster_names: set[str] = set()
    proj_used: dict[str, float] = {}
    proj_alloc: dict[str, float] = {}
    # Per project and interval, for its peak ratio.
    proj_used_k: dict[str, np.ndarray] = {}
    proj_alloc_k: dict[str, np.ndarray] = {}
    allocation: dict[str, list[float]] = {}
    without_host = without_cpu = without_memory = 0
    without_cpu_ids: list[str] = []
    for inst in complete:
        kv = cpu.get(inst.id)
        if kv is None:
            without_cpu += 1
            without_cpu_ids.append(inst.id)
        else:
            k, share = kv
            if inst.project_id:
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
        if not inst.host:
            without_host += 1
            continue
        name, short = resolve(inst.host)
        if name is None:
            unknown_capacity[inst.host] = unknown_capacity.get(
                inst.host, 0) + 1
            continue
        if short:
            by_short[inst.host] = name
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
        if kv is None:
            continue
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
            without_memory += 1
            values = np.full(present.shape, float(inst.memory_mb))
        host_mem[host][np.searchsorted(grid, present)] += values / cap.ram_mb

    hosts: dict[str, dict] = {}
    host_peaks: dict[str, tuple[float, float]] = {}
    left_out_no_cpu = []
    for host in sorted(host_cpu):
        if host_measured[host] == 0:
            left_out_no_cpu.append(host)
            continue
        series = (np.minimum(host_cpu[host], 1.0), host_mem[host])
        hosts[host] = _entry(*series)
        host_peaks[host] = tuple(_peak(x) for x in series)
    empty = 0
    for name in capacities:
        if name in used_cluster_names or name in hosts:
            continue
        hosts[name] = _entry(np.zeros(n), np.zeros(n))
        host_peaks[name] = (0.0, 0.0)
        empty += 1
    project_peaks = {}
    for pid, used in proj_used_k.items():
        alloc = proj_alloc_k[pid]
        ok = alloc > 0
        if ok.any():
            project_peaks[pid] = _peak(used[ok] / alloc[ok])
    projects = {pid: {'cpu_ratio': round(proj_used[pid] / alloc, DIGITS)}
                for pid, alloc in sorted(proj_alloc.items()) if alloc > 0}

    warnings = list(source.warnings())
    if skipped:
        warnings.append(
            f'{len(skipped)} instances left out: no vcpus or memory '
            'measures and no other instance of their flavor has them ('
            + _names([i.id for i in skipped]) + ')')
    if unknown_capacity:
        names = sorted(unknown_capacity)
        warnings.append(
            f'{len(names)} hosts with instances left out: their capacity '
            'is unknown (not in the cluster; Nova and the cluster must '
            'name hosts alike): ' + _names(names))
    if by_short:
        pairs = [f'{h} as {c}' for h, c in sorted(by_short.items())]
        warnings.append(f'{len(pairs)} hosts matched a cluster host by '
                        'their first DNS label: ' + _names(pairs))
    if left_out_no_cpu:
        warnings.append(
            f'{len(left_out_no_cpu)} hosts left out: none of their '
            'instances has CPU measures in the window: '
            + _names(left_out_no_cpu))
    if without_cpu:
        warnings.append(
            f'{without_cpu} instances without CPU measures in the window '
            'count for nothing (' + _names(without_cpu_ids) + ')')
    if without_memory:
        warnings.append(
            f'{without_memory} instances without memory.usage measures: '
            "their flavor's memory counted (an upper bound)")
    if without_host:
        warnings.append(f'{without_host} instances without a host: counted '
                        'for their project only')
    summary = {
        'source': source.name,
        'start': start.isoformat(),
        'stop': stop.isoformat(),
        'window_s': window_s,
        'generated_at': stop.timestamp(),
        'granularity_s': granularity,
        'intervals': int(n),
        'hosts': len(hosts),
        'hosts_with_instances': len(hosts) - empty,
        'hosts_idle': empty,
        'hosts_unknown_capacity': len(unknown_capacity),
        'hosts_without_cpu': len(left_out_no_cpu),
        'hosts_matched_by_short_name': len(by_short),
        'cluster_hosts': len(capacities),
        'instances': len(complete),
        'with_cpu': len(complete) - without_cpu,
        'without_cpu': without_cpu,
        'without_memory_usage': without_memory,
        'without_host': without_host,
        'skipped_without_size': len(skipped),
        'cpu_counter_resets': sum(u.resets for u in usage.values()),
        'projects': len(projects),
        **size_counts,
    }
    return Snapshot(stop.timestamp(), hosts, projects, summary, warnings,
                    host_peaks=host_peaks, project_peaks=project_peaks,
                    allocation={h: (a[0], a[1])
                                for h, a in allocation.items()
                                if h in hosts})


def _peak(x: np.ndarray) -> float:
    return round(max(float(x.max()), 0.0), DIGITS) if x.size else 0.0


#: Default of :func:`build_v2`: the span of the daily peaks.
PEAK_WINDOW_S = 86400.0


def build_v2(source: MetricsSource, capacities: Mapping[str, Capacity],
             stop: dt.datetime, window_s: float,
             peak_window_s: float = PEAK_WINDOW_S,
             lifetime_window_s: float = LIFETIME_WINDOW_S) -> Snapshot:
    """:func:`build`, plus format version 2's fields (see the module
    doc): a second pass over ``peak_window_s`` for the peaks (the same
    pass when it is ``window_s``) and the instances of the last
    ``lifetime_window_s`` for the lifetimes."""
    for name, value in (('--peak-window-s', peak_window_s),
                        ('--lifetime-window-s', lifetime_window_s)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f'{name} {value:g}: must be a positive number '
                             'of seconds')
    snap = build(source, capacities, stop, window_s)
    day = snap if peak_window_s == window_s else \
        build(source, capacities, stop, peak_window_s)
    for host, entry in snap.hosts.items():
        alloc = snap.allocation.get(host, (0.0, 0.0))
        entry['vcpus_allocated'] = alloc[0]
        entry['ram_mb_allocated'] = alloc[1]
        peaks = day.host_peaks.get(host)
        if peaks is not None:
            entry['cpu_util_peak_24h'], entry['mem_util_peak_24h'] = peaks
    for pid, peak in day.project_peaks.items():
        snap.projects.setdefault(pid, {})['cpu_ratio_peak_24h'] = peak
    stop = utc(stop)
    start = stop - dt.timedelta(seconds=lifetime_window_s)
    snap.flavors = measured_lifetimes.measure(
        source.instances(start, stop), stop, snap.projects)
    snap.summary['peak_window_s'] = peak_window_s
    snap.summary['lifetime_window_s'] = lifetime_window_s
    return snap


def _entry(cpu: np.ndarray, mem: np.ndarray) -> dict:
    def stat(x: np.ndarray, p95: bool) -> float:
        if x.size == 0:
            return 0.0
        v = float(np.percentile(x, 95)) if p95 else float(x.mean())
        return round(max(v, 0.0), DIGITS)
    return {'cpu_util_mean': stat(cpu, False), 'cpu_util_p95': stat(cpu, True),
            'mem_util_mean': stat(mem, False), 'mem_util_p95': stat(mem, True)}


def write(snap: Snapshot, path: str) -> None:
    """Write the snapshot with the weigher's own writer: checked as the
    weigher parses it, replaced atomically (mode 0644)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    weigher_snapshot.write(path, snap.generated_at, snap.hosts,
                           snap.projects, snap.flavors)
