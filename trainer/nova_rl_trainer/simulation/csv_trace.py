"""The generic CSV trace format: :func:`read_csv` and :func:`write_csv`.

The generic CSV has exactly these columns, in any order, with a header line::

    vm_id,project_id,arrival_s,departure_s,vcpus,memory_mb,disk_gb,cpu_util_mean,cpu_util_p95

One more column is optional: ``host``, the compute host Nova placed the VM
on (``nova-rl-trainer ingest`` writes it; empty when unknown).

``departure_s`` empty means still running at the end of the trace (the VM
runs to the horizon). The utilisation columns are fractions of the VM's
vCPUs, may be empty (the utilisation model then decides), and override the
model when present. A file may be gzip-compressed (``.gz``). Every row is a
VM: a malformed row stops the reader with a :class:`TraceError` naming the
file, line and column; nothing is skipped except blank lines.

Each line is checked against the bounds of :mod:`traces` as it is read
(read through the module, as :mod:`azure_v1` does, so there is one value
of each).
"""

from __future__ import annotations

import csv
import gzip
import math
import os
from typing import Iterable

import numpy as np

from nova_rl_trainer.simulation import traces
from nova_rl_trainer.simulation.traces import open_text
from nova_rl_trainer.simulation.traces import Trace
from nova_rl_trainer.simulation.traces import TraceError

_SIZE_BOUNDS = {'vcpus': traces.MAX_VCPUS, 'memory_mb': traces.MAX_MEMORY_MB,
                'disk_gb': traces.MAX_DISK_GB}

CSV_COLUMNS: tuple[str, ...] = (
    'vm_id', 'project_id', 'arrival_s', 'departure_s', 'vcpus', 'memory_mb',
    'disk_gb', 'cpu_util_mean', 'cpu_util_p95')


#: Columns a CSV may have beside :data:`CSV_COLUMNS`.
OPTIONAL_COLUMNS: tuple[str, ...] = ('host',)


def _number(path: str, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(path, f'{text!r} is not a number', line,
                         repr(column)) from None
    if not math.isfinite(value):
        raise TraceError(path, f'{text!r} is not a finite number', line,
                         repr(column))
    return value


def _time(path: str, line: int, column: str, text: str) -> float:
    value = _number(path, line, column, text)
    if value < 0:
        raise TraceError(path, f'{column} {value:g} is negative', line,
                         repr(column))
    if value > traces.MAX_TRACE_S:
        raise TraceError(path, f'{column} {value:g} is more than '
                         f'{traces.MAX_TRACE_S:,.0f} s (400 days, the '
                         'longest trace simulated) after time 0', line,
                         repr(column))
    return value


def read_csv(path: str, name: str | None = None) -> Trace:
    """Read a generic CSV trace (see the module doc for the format)."""
    try:
        f = open_text(path)
    except OSError as e:
        raise TraceError(path, f'cannot open: {e.strerror or e}') from None
    try:
        with f:
            return _parse_csv(path, f, name)
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise TraceError(path, f'cannot read: {e}') from None
    except csv.Error as e:
        raise TraceError(path, f'not valid CSV: {e}') from None


def _parse_csv(path: str, f: Iterable[str], name: str | None) -> Trace:
    reader = csv.reader(f)
    header = next(reader, None)
    while header is not None and not any(c.strip() for c in header):
        header = next(reader, None)
    if header is None:
        raise TraceError(path, 'empty file: expected a header line with '
                         + ','.join(CSV_COLUMNS))
    header_line = reader.line_num
    names = [h.strip() for h in header]
    if names and names[0].startswith('\ufeff'):
        names[0] = names[0][1:]
    missing = [c for c in CSV_COLUMNS if c not in names]
    unknown = [c for c in names
               if c not in CSV_COLUMNS and c not in OPTIONAL_COLUMNS]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if missing or unknown or dupes:
        parts = []
        if missing:
            parts.append('missing ' + ', '.join(missing))
        if unknown:
            parts.append('unknown ' + ', '.join(repr(c) for c in unknown))
        if dupes:
            parts.append('repeated ' + ', '.join(dupes))
        raise TraceError(path, 'header must have exactly the columns '
                         + ','.join(CSV_COLUMNS) + ' (and optionally '
                         + ','.join(OPTIONAL_COLUMNS) + '): '
                         + '; '.join(parts), header_line)
    pos = {c: names.index(c) for c in CSV_COLUMNS + OPTIONAL_COLUMNS
           if c in names}
    host_pos = pos.get('host')
    hosts: list[str] = []
    width = len(names)

    vm_ids: list[str] = []
    seen: dict[str, int] = {}
    projects: dict[str, int] = {}
    project: list[int] = []
    lines: list[int] = []
    cols: dict[str, list[float]] = {c: [] for c in CSV_COLUMNS[2:]}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            raise TraceError(path, f'expected {width} fields, found '
                             f'{len(row)}', line)
        cell = {c: row[pos[c]].strip() for c in CSV_COLUMNS}
        if len(vm_ids) >= traces.MAX_VMS:
            raise TraceError(path, f'more than {traces.MAX_VMS:,} VMs',
                             line)
        vm_id = cell['vm_id']
        if not vm_id:
            raise TraceError(path, 'empty vm_id', line, "'vm_id'")
        host = row[host_pos].strip() if host_pos is not None else ''
        for c, value in (('vm_id', vm_id), ('project_id',
                         cell['project_id']), ('host', host)):
            if len(value) > traces.MAX_ID_CHARS:
                raise TraceError(path, f'{c} longer than '
                                 f'{traces.MAX_ID_CHARS} characters', line,
                                 repr(c))
        if vm_id in seen:
            raise TraceError(path, f'vm_id {vm_id!r} already used on line '
                             f'{seen[vm_id]}', line, "'vm_id'")
        seen[vm_id] = line
        project_id = cell['project_id']
        if not project_id:
            raise TraceError(path, 'empty project_id', line, "'project_id'")
        arrival = _time(path, line, 'arrival_s', cell['arrival_s'])
        departure = math.nan
        if cell['departure_s']:
            departure = _time(path, line, 'departure_s',
                              cell['departure_s'])
            if departure < arrival:
                raise TraceError(path, f'departure_s {departure:g} is before '
                                 f'arrival_s {arrival:g}', line,
                                 "'departure_s'")
        sizes = {}
        for c in ('vcpus', 'memory_mb', 'disk_gb'):
            if not cell[c]:
                raise TraceError(path, f'empty {c}', line, repr(c))
            sizes[c] = _number(path, line, c, cell[c])
        for c in ('vcpus', 'memory_mb'):
            if sizes[c] <= 0:
                raise TraceError(path, f'{c} must be positive, got '
                                 f'{sizes[c]:g}', line, repr(c))
        if sizes['disk_gb'] < 0:
            raise TraceError(path, f"disk_gb {sizes['disk_gb']:g} is "
                             'negative', line, "'disk_gb'")
        for c, bound in _SIZE_BOUNDS.items():
            if sizes[c] > bound:
                raise TraceError(path, f'{c} {sizes[c]:g} is more than '
                                 f'{bound:,} (one VM)', line, repr(c))
        util = {}
        for c in ('cpu_util_mean', 'cpu_util_p95'):
            util[c] = math.nan
            if cell[c]:
                util[c] = _number(path, line, c, cell[c])
                if not 0 <= util[c] <= 1:
                    raise TraceError(path, f'{c} {util[c]:g} is not a '
                                     'fraction in [0, 1]', line, repr(c))
        mean, p95 = util['cpu_util_mean'], util['cpu_util_p95']
        if math.isnan(mean) and not math.isnan(p95):
            raise TraceError(path, 'cpu_util_p95 given without '
                             'cpu_util_mean', line, "'cpu_util_mean'")
        if not math.isnan(p95) and p95 < mean:
            raise TraceError(path, f'cpu_util_p95 {p95:g} is below '
                             f'cpu_util_mean {mean:g}', line,
                             "'cpu_util_p95'")
        if math.isnan(p95):
            # A mean alone describes a steady VM.
            p95 = mean
        vm_ids.append(vm_id)
        hosts.append(host)
        lines.append(line)
        project.append(projects.setdefault(project_id, len(projects)))
        for c, v in (('arrival_s', arrival), ('departure_s', departure),
                     ('cpu_util_mean', mean), ('cpu_util_p95', p95)):
            cols[c].append(v)
        for c, v in sizes.items():
            cols[c].append(v)
    if not vm_ids:
        raise TraceError(path, 'no VMs after the header')
    arrival = np.asarray(cols['arrival_s'], dtype=np.float64)
    order = np.argsort(arrival, kind='stable')
    arrays = {c: np.asarray(v, dtype=np.float64)[order]
              for c, v in cols.items()}
    return Trace(
        name=name or _stem(path),
        project_ids=tuple(projects),
        project=np.asarray(project, dtype=np.int32)[order],
        batch=np.asarray(lines, dtype=np.int64)[order],
        vm_ids=tuple(vm_ids[i] for i in order),
        hosts=(tuple(hosts[i] for i in order) if host_pos is not None
               else None),
        source=os.path.abspath(path), **arrays)


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for ext in ('.gz', '.csv', '.txt'):
        if base.endswith(ext):
            base = base[:-len(ext)]
    return base


def write_csv(trace: Trace, path: str) -> None:
    """Write ``trace`` in the generic CSV format (round-trips read_csv),
    with the ``host`` column when the trace knows where its VMs ran."""
    with open(path, 'w', encoding='utf-8', newline='') as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS + (('host',) if trace.hosts is not None
                                  else ()))
        for i in range(len(trace)):
            def fmt(x: float) -> str:
                return '' if math.isnan(x) else repr(float(x))
            w.writerow([trace.vm_id(i),
                        trace.project_ids[trace.project[i]],
                        fmt(trace.arrival_s[i]), fmt(trace.departure_s[i]),
                        fmt(trace.vcpus[i]), fmt(trace.memory_mb[i]),
                        fmt(trace.disk_gb[i]), fmt(trace.cpu_util_mean[i]),
                        fmt(trace.cpu_util_p95[i])]
                       + ([trace.hosts[i]] if trace.hosts is not None
                          else []))
