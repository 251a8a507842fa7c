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

How each host's series is built from its instances' measures, and which
hosts are written: :mod:`nova_rl_trainer.telemetry.usage_series`.

Format version 2's fields (:func:`build_v2`; the weigher's feature schema
v2 reads them):

* per host written: ``vcpus_allocated`` / ``ram_mb_allocated``, the sum of
  the vCPUs and memory of the instances on it still running at the end of
  the window (the allocation the usage was sampled at; the weigher takes
  the difference with the live allocation), and ``cpu_util_peak_24h`` /
  ``mem_util_peak_24h``, the highest interval of the host's series over
  the last ``peak_window_s`` (24 h);
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
from nova_rl_trainer.telemetry import usage_series
from nova_rl_trainer.telemetry.usage_series import Capacity
from nova_rl_weigher import snapshot as weigher_snapshot


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
    cpu, mem, grid = usage_series.spans(complete, usage, memory,
                                        granularity, stop)
    if complete and cpu == {} and any(
            i.metrics is None or 'cpu' in i.metrics for i in complete):
        raise SourceError(
            f'none of the {len(complete)} instances of the last '
            f'{window_s:g} s has CPU measures in {source.name} (is '
            'gnocchi-metricd processing? is the window shorter than the '
            f'granularity, {granularity:g} s?)')

    caveats = usage_series.Caveats(
        without_size=[i.id for i in skipped],
        without_cpu=[i.id for i in complete if i.id not in cpu])
    hosts, host_peaks, allocation, idle = usage_series.host_entries(
        complete, cpu, mem, grid, capacities, stop, caveats)
    projects, project_peaks = usage_series.project_ratios(complete, cpu,
                                                          grid)
    summary = {
        'source': source.name,
        'start': start.isoformat(),
        'stop': stop.isoformat(),
        'window_s': window_s,
        'generated_at': stop.timestamp(),
        'granularity_s': granularity,
        'intervals': int(grid.size),
        'hosts': len(hosts),
        'hosts_with_instances': len(hosts) - idle,
        'hosts_idle': idle,
        'hosts_unknown_capacity': len(caveats.unknown_capacity),
        'hosts_without_cpu': len(caveats.hosts_without_cpu),
        'hosts_matched_by_short_name': len(caveats.by_short_name),
        'cluster_hosts': len(capacities),
        'instances': len(complete),
        'with_cpu': len(complete) - len(caveats.without_cpu),
        'without_cpu': len(caveats.without_cpu),
        'without_memory_usage': caveats.without_memory,
        'without_host': caveats.without_host,
        'skipped_without_size': len(caveats.without_size),
        'cpu_counter_resets': sum(u.resets for u in usage.values()),
        'projects': len(projects),
        **size_counts,
    }
    return Snapshot(stop.timestamp(), hosts, projects, summary,
                    list(source.warnings()) + caveats.warnings(),
                    host_peaks=host_peaks, project_peaks=project_peaks,
                    allocation=allocation)


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


def write(snap: Snapshot, path: str) -> None:
    """Write the snapshot with the weigher's own writer: checked as the
    weigher parses it, replaced atomically (mode 0644)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    weigher_snapshot.write(path, snap.generated_at, snap.hosts,
                           snap.projects, snap.flavors)
