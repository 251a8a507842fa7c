"""VM request traces: the in-memory form and the bounds every reader keeps.

A :class:`Trace` is a set of VM requests in arrival order, as numpy columns.
Two readers produce one:
:func:`nova_rl_trainer.simulation.csv_trace.read_csv` for the generic CSV
format (described there) and
:func:`nova_rl_trainer.simulation.azure_v1.read_azure_v1` for the Azure V1
derived trace; :func:`nova_rl_trainer.simulation.trace_files.load_trace`
picks one by name or file extension.

Every reader bounds what a trace may hold (:data:`MAX_TRACE_S`,
:data:`MAX_VMS`, :data:`MAX_VCPUS`, :data:`MAX_MEMORY_MB`,
:data:`MAX_DISK_GB`, :data:`MAX_ID_CHARS`): times finite, from 0 to 400
days, a departure not before its arrival, sizes within what one VM can be.
A damaged or hostile file then ends in a :class:`TraceError` at the line at
fault, not in a MemoryError or a simulation that runs for days.
"""

from __future__ import annotations

import dataclasses
import gzip
import io

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
    #: Where Nova placed each VM ('' unknown), when the source knows it.
    hosts: tuple[str, ...] | None = None

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
            source=self.source,
            hosts=(None if self.hosts is None
                   else tuple(self.hosts[i] for i in idx)))

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
