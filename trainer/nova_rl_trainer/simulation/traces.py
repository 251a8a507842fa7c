"""VM request traces: the in-memory form and the generic CSV reader.

A :class:`Trace` is a set of VM requests in arrival order, as numpy columns.
Two readers produce one: :func:`read_csv` for the generic format below and
:func:`nova_rl_trainer.simulation.azure_v1.read_azure_v1` for the Azure V1
derived trace; :func:`nova_rl_trainer.simulation.trace_files.load_trace`
picks one by name or file extension.

The generic CSV has exactly these columns, in any order, with a header line::

    vm_id,project_id,arrival_s,departure_s,vcpus,memory_mb,disk_gb,cpu_util_mean,cpu_util_p95

``departure_s`` empty means still running at the end of the trace (the VM
runs to the horizon). The utilisation columns are fractions of the VM's
vCPUs, may be empty (the utilisation model then decides), and override the
model when present. A file may be gzip-compressed (``.gz``). Every row is a
VM: a malformed row stops the reader with a :class:`TraceError` naming the
file, line and column; nothing is skipped except blank lines.

Every reader bounds what a trace may hold (:data:`MAX_TRACE_S`,
:data:`MAX_VMS`, :data:`MAX_VCPUS`, :data:`MAX_MEMORY_MB`,
:data:`MAX_DISK_GB`, :data:`MAX_ID_CHARS`): times finite, from 0 to 400
days, a departure not before its arrival, sizes within what one VM can be.
A damaged or hostile file then ends in a :class:`TraceError` at the line at
fault, not in a MemoryError or a simulation that runs for days.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import math
import os
from typing import Iterable

import numpy as np

#: Trace time, in seconds from the trace's time 0, that any arrival or
#: departure may reach: 400 days (34,560,000 s). The simulator keeps a usage
#: sample every ``usage_interval_s`` (300 s by default: 115,200 samples) and
#: costs grow with the horizon; the shipped traces span 3.5 and 5.7 days.
MAX_TRACE_S = 400 * 86_400.0
#: VM requests in one trace (the shipped test trace has 410,276).
MAX_VMS = 10_000_000
#: Per VM: vCPUs, memory (64 TiB) and local disk (1 PiB).
MAX_VCPUS = 4096
MAX_MEMORY_MB = 64 * 1024 * 1024
MAX_DISK_GB = 1024 * 1024
#: vm_id and project_id length (Nova's are 36-character UUIDs).
MAX_ID_CHARS = 255

_SIZE_BOUNDS = {'vcpus': MAX_VCPUS, 'memory_mb': MAX_MEMORY_MB,
                'disk_gb': MAX_DISK_GB}

CSV_COLUMNS: tuple[str, ...] = (
    'vm_id', 'project_id', 'arrival_s', 'departure_s', 'vcpus', 'memory_mb',
    'disk_gb', 'cpu_util_mean', 'cpu_util_p95')


class TraceError(ValueError):
    """A trace file is missing, malformed or inconsistent.

    ``line`` is 1-based as an editor shows it; ``column`` is a column name
    (CSV) or a token position (Azure), or None when the whole file is at
    fault.
    """

    def __init__(self, path: str, message: str, line: int | None = None,
                 column: str | None = None):
        self.path = path
        self.line = line
        self.column = column
        where = path
        if line is not None:
            where += f': line {line}'
        if column is not None:
            where += f', column {column}'
        super().__init__(f'{where}: {message}')


@dataclasses.dataclass(frozen=True, eq=False)
class Trace:
    """VM requests sorted by arrival time (stable: file order breaks ties).

    Times are seconds from the trace's time 0; ``time_offset_s`` is the
    absolute time of that 0 in the source (it sets the phase of the diurnal
    swing, so a window of a trace keeps its time of day). Float columns use
    NaN for "not given": ``departure_s`` (runs to the horizon) and the two
    utilisation columns (modelled).
    """

    name: str
    project_ids: tuple[str, ...]
    project: np.ndarray          # int32 index into project_ids
    batch: np.ndarray            # int64: requests made together share one
    arrival_s: np.ndarray
    departure_s: np.ndarray
    vcpus: np.ndarray
    memory_mb: np.ndarray
    disk_gb: np.ndarray
    cpu_util_mean: np.ndarray
    cpu_util_p95: np.ndarray
    vm_ids: tuple[str, ...] | None = None
    time_offset_s: float = 0.0
    source: str = ''

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def horizon_s(self) -> float:
        """Last arrival or departure: where every simulation of it ends."""
        if len(self) == 0:
            return 0.0
        last = float(self.arrival_s.max())
        dep = self.departure_s[~np.isnan(self.departure_s)]
        if dep.size:
            last = max(last, float(dep.max()))
        return last

    def vm_id(self, i: int) -> str:
        if self.vm_ids is not None:
            return self.vm_ids[i]
        return f'{self.name}-{i:07d}'

    def select(self, keep: np.ndarray, name: str | None = None,
               shift_s: float = 0.0) -> 'Trace':
        """The VMs where ``keep`` is true, times moved back by ``shift_s``."""
        idx = np.flatnonzero(keep)
        projects_used, project = np.unique(self.project[idx],
                                           return_inverse=True)
        return Trace(
            name=name or self.name,
            project_ids=tuple(self.project_ids[p] for p in projects_used),
            project=project.astype(np.int32),
            batch=self.batch[idx],
            arrival_s=self.arrival_s[idx] - shift_s,
            departure_s=self.departure_s[idx] - shift_s,
            vcpus=self.vcpus[idx], memory_mb=self.memory_mb[idx],
            disk_gb=self.disk_gb[idx],
            cpu_util_mean=self.cpu_util_mean[idx],
            cpu_util_p95=self.cpu_util_p95[idx],
            vm_ids=(None if self.vm_ids is None
                    else tuple(self.vm_ids[i] for i in idx)),
            time_offset_s=self.time_offset_s + shift_s,
            source=self.source)

    def window(self, start_s: float, end_s: float) -> 'Trace':
        """VMs arriving in ``[start_s, end_s)``, with ``start_s`` as time 0.

        A VM still running at ``end_s`` loses its departure: it runs to the
        window's horizon, as a VM still running at a trace's end does.
        """
        if not end_s > start_s >= 0:
            raise ValueError(f'window [{start_s}, {end_s}) is empty or '
                             'negative')
        keep = (self.arrival_s >= start_s) & (self.arrival_s < end_s)
        out = self.select(keep, shift_s=start_s,
                          name=f'{self.name}[{start_s:g}:{end_s:g}]')
        late = out.departure_s >= end_s - start_s
        out.departure_s[late] = np.nan
        return out

    def sample(self, fraction: float, seed: int) -> 'Trace':
        """Keep each batch (a tenant's requests made together) with
        probability ``fraction``, so deployments stay whole."""
        if not 0 < fraction <= 1:
            raise ValueError(f'sample fraction {fraction} not in (0, 1]')
        if fraction == 1:
            return self
        batches, inverse = np.unique(self.batch, return_inverse=True)
        rng = np.random.default_rng([seed, 0x5A3])
        keep_batch = rng.random(batches.shape[0]) < fraction
        return self.select(keep_batch[inverse],
                           name=f'{self.name}~{fraction:g}')

    def summary(self) -> dict:
        """Sizes for reports and sizing: counts and the peak live demand."""
        peak = peak_demand(self)
        return {'name': self.name, 'vms': len(self),
                'projects': len(self.project_ids),
                'horizon_s': self.horizon_s, **peak}


def peak_demand(trace: Trace) -> dict:
    """Peak of the live allocated demand if every VM were placed."""
    if len(trace) == 0:
        return {'peak_vcpus': 0.0, 'peak_memory_mb': 0.0, 'peak_disk_gb': 0.0}
    horizon = trace.horizon_s
    dep = np.where(np.isnan(trace.departure_s), horizon, trace.departure_s)
    times = np.concatenate([trace.arrival_s, dep])
    # Departures before arrivals at the same instant, as the simulator does.
    order = np.lexsort((np.concatenate([np.ones(len(trace)),
                                        np.zeros(len(trace))]), times))
    out = {}
    for key, col in (('peak_vcpus', trace.vcpus),
                     ('peak_memory_mb', trace.memory_mb),
                     ('peak_disk_gb', trace.disk_gb)):
        live = np.cumsum(np.concatenate([col, -col])[order])
        out[key] = float(live.max())
    return out


def check_bounds(trace: Trace, path: str) -> None:
    """Raise :class:`TraceError` if ``trace`` breaks a bound of the module
    doc. The readers check each line as they read it; this is the last
    check on any trace, whoever built it."""
    if len(trace) > MAX_VMS:
        raise TraceError(path, f'{len(trace):,} VMs, more than {MAX_VMS:,}')
    arr, dep = trace.arrival_s, trace.departure_s
    no_dep = np.isnan(dep)
    with np.errstate(invalid='ignore'):
        checks = (
            ('arrival_s', np.isfinite(arr) & (arr >= 0)
             & (arr <= MAX_TRACE_S),
             f'not a time from 0 to {MAX_TRACE_S:,.0f} s (400 days)'),
            ('departure_s', no_dep | (np.isfinite(dep)
                                      & (dep <= MAX_TRACE_S)),
             f'not a time up to {MAX_TRACE_S:,.0f} s (400 days)'),
            ('departure_s', no_dep | (dep >= arr), 'before its arrival'),
            ('vcpus', (trace.vcpus > 0) & (trace.vcpus <= MAX_VCPUS),
             f'not in (0, {MAX_VCPUS:,}]'),
            ('memory_mb', (trace.memory_mb > 0)
             & (trace.memory_mb <= MAX_MEMORY_MB),
             f'not in (0, {MAX_MEMORY_MB:,}]'),
            ('disk_gb', (trace.disk_gb >= 0)
             & (trace.disk_gb <= MAX_DISK_GB),
             f'not in [0, {MAX_DISK_GB:,}]'),
        )
    for column, ok, what in checks:
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise TraceError(path, f'{column} of VM {trace.vm_id(i)!r} is '
                             f'{what}')


def open_text(path: str) -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``*.gz``."""
    if path.endswith('.gz'):
        return io.TextIOWrapper(gzip.open(path, 'rb'), encoding='utf-8',
                                newline='')
    return open(path, encoding='utf-8', newline='')


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
    if value > MAX_TRACE_S:
        raise TraceError(path, f'{column} {value:g} is more than '
                         f'{MAX_TRACE_S:,.0f} s (400 days, the longest trace '
                         'simulated) after time 0', line, repr(column))
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
    unknown = [c for c in names if c not in CSV_COLUMNS]
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
                         + ','.join(CSV_COLUMNS) + ': ' + '; '.join(parts),
                         header_line)
    pos = {c: names.index(c) for c in CSV_COLUMNS}
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
        if len(vm_ids) >= MAX_VMS:
            raise TraceError(path, f'more than {MAX_VMS:,} VMs', line)
        vm_id = cell['vm_id']
        if not vm_id:
            raise TraceError(path, 'empty vm_id', line, "'vm_id'")
        for c in ('vm_id', 'project_id'):
            if len(cell[c]) > MAX_ID_CHARS:
                raise TraceError(path, f'{c} longer than {MAX_ID_CHARS} '
                                 'characters', line, repr(c))
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
        source=os.path.abspath(path), **arrays)


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for ext in ('.gz', '.csv', '.txt'):
        if base.endswith(ext):
            base = base[:-len(ext)]
    return base


def write_csv(trace: Trace, path: str) -> None:
    """Write ``trace`` in the generic CSV format (round-trips read_csv)."""
    with open(path, 'w', encoding='utf-8', newline='') as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for i in range(len(trace)):
            def fmt(x: float) -> str:
                return '' if math.isnan(x) else repr(float(x))
            w.writerow([trace.vm_id(i),
                        trace.project_ids[trace.project[i]],
                        fmt(trace.arrival_s[i]), fmt(trace.departure_s[i]),
                        fmt(trace.vcpus[i]), fmt(trace.memory_mb[i]),
                        fmt(trace.disk_gb[i]), fmt(trace.cpu_util_mean[i]),
                        fmt(trace.cpu_util_p95[i])])
