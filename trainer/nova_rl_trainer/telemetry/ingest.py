"""An operator's workload, read from a metrics source, as the trainer's
CSV trace.

Every instance that lived in ``[start, stop)`` becomes one row::

    vm_id,project_id,arrival_s,departure_s,vcpus,memory_mb,disk_gb,cpu_util_mean,cpu_util_p95,host

``vm_id`` is the instance id; ``arrival_s``/``departure_s`` are seconds
from ``start``, clipped to the window (an instance launched before the
window arrives at 0; one still running at ``stop`` has an empty
``departure_s``); ``vcpus``, ``memory_mb``, ``disk_gb`` its flavor
(``disk_gb`` = root + ephemeral); ``cpu_util_mean``/``cpu_util_p95`` the
mean and 95th percentile of its CPU shares (fractions of its vCPUs) inside
the window, empty when the source has none for it; ``host`` the compute
host Nova put it on (empty when unknown).

An instance whose ``vcpus`` or ``memory`` the source lacks takes the
values most instances of its flavor have; if none has them it is left out
(counted and warned about). A missing disk size is taken from the flavor
likewise, else 0. A required metric (``vcpus``, ``memory``, ``cpu``) that
no instance of the window has at all is an error: the telemetry is not
configured as the trainer expects.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import io
import math
import os
from typing import Iterable, Sequence

from nova_rl_trainer.simulation.csv_trace import CSV_COLUMNS
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import MetricsSource
from nova_rl_trainer.telemetry.sources import require_metrics
from nova_rl_trainer.telemetry.sources import utc
from nova_rl_weigher import fileio

#: The trainer's trace columns and the optional host.
TRACE_COLUMNS: tuple[str, ...] = (*CSV_COLUMNS, 'host')
UNKNOWN_PROJECT = 'unknown'


@dataclasses.dataclass
class IngestResult:
    rows: list[dict]
    summary: dict
    warnings: list[str]


def _mode(values: Iterable[float]) -> float | None:
    counts = collections.Counter(values)
    if not counts:
        return None
    # Most common; ties to the larger (a safe guess for placement).
    return max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]


def fill_sizes(instances: Sequence[Instance]
               ) -> tuple[list[Instance], list[Instance], dict]:
    """Sizes the source lacks, from the instance's flavor peers.

    Returns ``(complete, skipped, counts)``: instances with vcpus and
    memory (disk filled, 0 when unknown), the ones that could not be
    completed, and how many sizes were borrowed or defaulted.
    """
    def flavor(i: Instance) -> str | None:
        return i.flavor_id or i.flavor_name

    peers: dict[str, dict[str, float | None]] = {}
    by_flavor: dict[str, list[Instance]] = collections.defaultdict(list)
    for inst in instances:
        if flavor(inst) is not None:
            by_flavor[flavor(inst)].append(inst)
    for name, group in by_flavor.items():
        peers[name] = {
            field: _mode(getattr(i, field) for i in group
                         if getattr(i, field) is not None)
            for field in ('vcpus', 'memory_mb', 'disk_gb')}
    complete, skipped = [], []
    counts = {'sizes_from_flavor': 0, 'disk_unknown': 0}
    for inst in instances:
        changes = {}
        known = peers.get(flavor(inst), {})
        for field in ('vcpus', 'memory_mb', 'disk_gb'):
            value = getattr(inst, field)
            if value is None or not math.isfinite(value):
                borrowed = known.get(field)
                if borrowed is not None:
                    changes[field] = borrowed
                    counts['sizes_from_flavor'] += 1
                elif field == 'disk_gb':
                    changes[field] = 0.0
                    counts['disk_unknown'] += 1
        inst = dataclasses.replace(inst, **changes) if changes else inst
        if (inst.vcpus is None or not inst.vcpus > 0
                or inst.memory_mb is None or not inst.memory_mb > 0):
            skipped.append(inst)
        else:
            complete.append(inst)
    return complete, skipped, counts


def _seconds(t: dt.datetime, start: dt.datetime) -> float:
    return (utc(t) - start).total_seconds()


def to_row(inst: Instance, usage: CpuUsage | None, start: dt.datetime,
           stop: dt.datetime) -> dict:
    window = (stop - start).total_seconds()
    arrival = inst.arrival
    arrival_s = 0.0 if arrival is None else min(
        max(0.0, _seconds(arrival, start)), window)
    departure = inst.departure
    departure_s = None
    if departure is not None and departure < stop:
        departure_s = max(arrival_s, _seconds(departure, start))
    return {
        'vm_id': inst.id,
        'project_id': inst.project_id or UNKNOWN_PROJECT,
        'arrival_s': arrival_s,
        'departure_s': departure_s,
        'vcpus': inst.vcpus,
        'memory_mb': inst.memory_mb,
        'disk_gb': inst.disk_gb,
        'cpu_util_mean': None if usage is None else usage.mean,
        'cpu_util_p95': None if usage is None else max(usage.p95,
                                                       usage.mean),
        'host': inst.host or '',
    }


def ingest(source: MetricsSource, start: dt.datetime,
           stop: dt.datetime) -> IngestResult:
    """Read the window from ``source``: rows, a summary, warnings."""
    start, stop = utc(start), utc(stop)
    if not stop > start:
        raise ValueError(f'--stop {stop.isoformat()} is not after --start '
                         f'{start.isoformat()}')
    found = source.instances(start, stop)
    require_metrics(found, source.name, 'in the window',
                    ('vcpus', 'memory_mb'))
    complete, skipped, counts = fill_sizes(found)
    usage = source.cpu_usage(complete, start, stop) if complete else {}
    rows = [to_row(i, usage.get(i.id), start, stop) for i in complete]
    rows.sort(key=lambda r: (r['arrival_s'], r['vm_id']))
    with_usage = sum(1 for r in rows if r['cpu_util_mean'] is not None)
    warnings = list(source.warnings())
    if skipped:
        ids = ', '.join(i.id for i in skipped[:5])
        more = f' and {len(skipped) - 5} more' if len(skipped) > 5 else ''
        warnings.append(f'{len(skipped)} instances left out: no vcpus or '
                        f'memory measures and no other instance of their '
                        f'flavor has them ({ids}{more})')
    if counts['sizes_from_flavor']:
        warnings.append(f"{counts['sizes_from_flavor']} sizes taken from "
                        "other instances of the same flavor")
    if counts['disk_unknown']:
        warnings.append(f"{counts['disk_unknown']} instances without disk "
                        'measures: disk_gb 0')
    resets = sum(u.resets for u in usage.values())
    gaps = sum(u.gaps for u in usage.values())
    summary = {
        'source': source.name,
        'start': start.isoformat(),
        'stop': stop.isoformat(),
        'window_s': (stop - start).total_seconds(),
        'instances': len(rows),
        'with_usage': with_usage,
        'without_usage': len(rows) - with_usage,
        'found': len(found),
        'skipped_without_size': len(skipped),
        'running_at_stop': sum(1 for r in rows if r['departure_s'] is None),
        'projects': len({r['project_id'] for r in rows}),
        'hosts': len({r['host'] for r in rows if r['host']}),
        'without_host': sum(1 for r in rows if not r['host']),
        'cpu_points': sum(u.points for u in usage.values()),
        'cpu_counter_resets': resets,
        'cpu_gaps': gaps,
        **counts,
    }
    return IngestResult(rows, summary, warnings)


def _fmt(value: object) -> str:
    if value is None:
        return ''
    if isinstance(value, str):
        return value
    x = float(value)
    if not math.isfinite(x):
        return ''
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(round(x, 6))


def trace_csv(rows: Sequence[dict]) -> str:
    """The rows as the trainer's CSV trace (with the ``host`` column)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(TRACE_COLUMNS)
    for r in rows:
        w.writerow([_fmt(r[c]) for c in TRACE_COLUMNS])
    return buf.getvalue()


def write_trace(rows: Sequence[dict], path: str) -> None:
    """Write the trace atomically: readers see the old file or the whole
    new one, never part of it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fileio.atomic_write(path, trace_csv(rows))
