"""Fit the utilisation model (``utilisation.py``) to real per-VM CPU use.

The data is ``data/azure-v1-cpu/`` (see its README): 27 days of 5-minute
average CPU use of 100 Azure VMs, shipped as per-VM summaries that
:func:`summarise` computes from 5-minute samples. The model's VMs are
simulated for the same 27 days and summarised by the same function, so data
and model are compared statistic for statistic (:func:`statistics`), and
:func:`fit` searches the model's parameters that bring them together.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import io
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np

from nova_rl_weigher.fileio import atomic_write

from nova_rl_trainer.simulation.traces import Trace
from nova_rl_trainer.simulation import utilisation
from nova_rl_trainer.simulation.utilisation import DAY_S
from nova_rl_trainer.simulation.utilisation import UtilisationParams

SAMPLE_S = 300.0
SAMPLES_PER_HOUR = 12
HOURS = 24
SAMPLES_PER_DAY = SAMPLES_PER_HOUR * HOURS
DAYS = 27
#: Floor under a sample before taking its log (the data's lowest is 0.0027).
LOG_FLOOR = 1e-3
QUANTILES = (10, 25, 50, 75, 90, 95)


@dataclasses.dataclass(frozen=True, eq=False)
class CpuSummary:
    """What the statistics need from 5-minute CPU use of ``n`` VMs over
    whole days starting at midnight (fractions of the VMs' vCPUs).

    ``profile`` is each VM's mean use per hour of the day (24 x n);
    ``noise`` the standard deviation of ``log(sample / profile at that
    hour)``; ``fleet`` the 5-minute sum of the VMs' use.
    """

    mean: np.ndarray
    p95: np.ndarray
    noise: np.ndarray
    profile: np.ndarray
    fleet: np.ndarray


def summarise(samples: np.ndarray) -> CpuSummary:
    """Summarise 5-minute samples (T x n, T a whole number of days)."""
    t, n = samples.shape
    if t == 0 or t % SAMPLES_PER_DAY:
        raise ValueError(f'{t} samples is not a whole number of days of '
                         f'{SAMPLES_PER_DAY}')
    hourly = samples.reshape(t // SAMPLES_PER_HOUR, SAMPLES_PER_HOUR,
                             n).mean(axis=1)
    profile = hourly.reshape(-1, HOURS, n).mean(axis=0)
    hour = (np.arange(t) // SAMPLES_PER_HOUR) % HOURS
    log_ratio = (np.log(np.maximum(samples, LOG_FLOOR))
                 - np.log(np.maximum(profile[hour], LOG_FLOOR)))
    return CpuSummary(mean=samples.mean(axis=0),
                      p95=np.percentile(samples, 95, axis=0),
                      noise=log_ratio.std(axis=0), profile=profile,
                      fleet=samples.sum(axis=1))


@dataclasses.dataclass(frozen=True)
class Stats:
    """The figures the model is fitted to (quantiles over VMs at
    ``QUANTILES``)."""

    vm_mean: tuple[float, ...]
    vm_mean_average: float            # the VMs' mean use: the fleet's level
    amplitude: tuple[float, ...]      # (max - min) / mean of the profile
    peak_hour: tuple[float, ...]      # quartiles of the profile's peak hour
    peak_concentration: float         # mean resultant length of peak hours
    peak_direction: float             # their circular mean, hours
    noise: tuple[float, ...]
    p95_over_mean: tuple[float, ...]
    fleet_max_min: float              # median over days of the sum's max/min

    def table(self) -> dict[str, float]:
        """Flat ``name: value`` for printing side by side."""
        out: dict[str, float] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                qs = (25, 50, 75) if field.name == 'peak_hour' else QUANTILES
                for q, v in zip(qs, value):
                    out[f'{field.name}_p{q}'] = v
            else:
                out[field.name] = value
        return out


def _quantiles(x: np.ndarray, qs=QUANTILES) -> tuple[float, ...]:
    return tuple(float(v) for v in np.percentile(x, qs))


def peak_hours(profile: np.ndarray) -> np.ndarray:
    """The middle of each VM's busiest hour of the day."""
    return profile.argmax(axis=0) + 0.5


_RADIANS = 2.0 * np.pi / HOURS     # per hour of the day


def statistics(s: CpuSummary) -> Stats:
    """The fitted figures of one summary."""
    peak = peak_hours(s.profile)
    angle = peak * _RADIANS
    return Stats(
        vm_mean=_quantiles(s.mean),
        vm_mean_average=float(s.mean.mean()),
        amplitude=_quantiles((s.profile.max(axis=0) - s.profile.min(axis=0))
                             / s.profile.mean(axis=0)),
        peak_hour=_quantiles(peak, (25, 50, 75)),
        peak_concentration=float(np.abs(np.exp(1j * angle).mean())),
        peak_direction=float(np.angle(np.exp(1j * angle).mean())
                             / _RADIANS % HOURS),
        noise=_quantiles(s.noise),
        p95_over_mean=_quantiles(s.p95 / s.mean),
        fleet_max_min=float(np.median(daily_max_min(s.fleet, SAMPLE_S))))


def one_vm_per_tenant(n: int, name: str = 'fit') -> Trace:
    """``n`` VMs of ``n`` tenants, running from midnight: the model's
    counterpart of a sample of a cloud's VMs."""
    zeros = np.zeros(n)
    nan = np.full(n, np.nan)
    return Trace(name=name, project_ids=tuple(f'{name}-{i}' for i in range(n)),
                 project=np.arange(n, dtype=np.int32),
                 batch=np.arange(n, dtype=np.int64), arrival_s=zeros,
                 departure_s=nan, vcpus=np.ones(n), memory_mb=zeros,
                 disk_gb=zeros, cpu_util_mean=nan, cpu_util_p95=nan)


def days_of(s: CpuSummary) -> int:
    """How many days a summary covers."""
    return len(s.fleet) // SAMPLES_PER_DAY


def simulate(params: UtilisationParams, n: int, seed: int,
             days: int = DAYS) -> np.ndarray:
    """5-minute CPU use (days * 288 x n) of ``n`` modelled VMs."""
    usage = utilisation.build_usage(one_vm_per_tenant(n), seed, SAMPLE_S,
                                    params)
    k = np.arange(days * SAMPLES_PER_DAY)[:, None]
    return usage.cpu_util(np.arange(n)[None, :], k)


def model_statistics(params: UtilisationParams, n: int = 100,
                     seeds: int = 8, days: int = DAYS) -> Stats:
    """The model's figures, each averaged over ``seeds`` samples of ``n``
    VMs (the data's sample size, so sampling noise is alike)."""
    tables = [statistics(summarise(simulate(params, n, seed, days))).table()
              for seed in range(seeds)]
    mean = {k: float(np.mean([t[k] for t in tables])) for k in tables[0]}
    # A direction is averaged on the circle (23 h and 1 h: midnight).
    angle = np.array([t['peak_direction'] for t in tables]) * _RADIANS
    mean['peak_direction'] = float(
        np.angle(np.exp(1j * angle).mean()) / _RADIANS % HOURS)
    return _from_table(mean)


def _from_table(table: dict[str, float]) -> Stats:
    values = {}
    for field in dataclasses.fields(Stats):
        keys = [k for k in table if k.startswith(field.name + '_p')]
        values[field.name] = (tuple(table[k] for k in keys) if keys
                              else table[field.name])
    return Stats(**values)


def fleet_use(trace: Trace, usage: utilisation.VmUsage,
              start_s: float = 0.0, end_s: float | None = None,
              chunk: int = 20000) -> np.ndarray:
    """Used vCPUs of all the trace's live VMs at each usage sample from
    ``start_s`` to ``end_s`` (default: the horizon), wherever they are
    placed: the cloud's fleet-wide CPU use, VM churn included."""
    interval = usage.interval_s
    end = trace.horizon_s
    dep = np.where(np.isnan(trace.departure_s), end, trace.departure_s)
    k0 = int(np.ceil(start_s / interval))
    k1 = int((end if end_s is None else min(end_s, end)) // interval) + 1
    # Live at sample k: arrival <= k * interval < departure.
    first = np.maximum(np.ceil(trace.arrival_s / interval), k0)
    stop = np.minimum(np.ceil(dep / interval), k1)
    total = np.zeros(max(k1 - k0, 0))
    for lo in range(0, len(trace), chunk):
        vms = np.arange(lo, min(lo + chunk, len(trace)))
        count = (stop[vms] - first[vms]).astype(np.int64)
        vms, count = vms[count > 0], count[count > 0]
        vm = np.repeat(vms, count)
        offset = np.arange(len(vm)) - np.repeat(np.cumsum(count) - count,
                                                count)
        k = first[vm].astype(np.int64) + offset
        total += np.bincount(k - k0, weights=usage.cpu_util(vm, k)
                             * trace.vcpus[vm], minlength=len(total))
    return total


def daily_max_min(series: np.ndarray, interval_s: float,
                  time_offset_s: float = 0.0) -> np.ndarray:
    """Max / min of ``series`` within each whole day (midnight to
    midnight, the series starting at ``time_offset_s``)."""
    per_day = int(round(DAY_S / interval_s))
    skip = int(np.ceil((-time_offset_s % DAY_S) / interval_s))
    days = (len(series) - skip) // per_day
    whole = series[skip:skip + days * per_day].reshape(days, per_day)
    return whole.max(axis=1) / whole.min(axis=1)


# The shipped data -------------------------------------------------------

def data_dir() -> str:
    """The directory holding the shipped summaries of the Azure CPU data."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, 'data', 'azure-v1-cpu')


VMS_FILE = 'vms.csv'
PROFILES_FILE = 'profiles.csv'
FLEET_FILE = 'fleet.csv.gz'


def _csv_text(header: Sequence[str], rows) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator='\n')
    w.writerow(header)
    for row in rows:
        w.writerow([f'{v:.5g}' if isinstance(v, float) else v for v in row])
    return out.getvalue()


def write_summary(s: CpuSummary, names: Sequence[str],
                  directory: str) -> None:
    """Write a summary as the three shipped files (atomically)."""
    atomic_write(os.path.join(directory, VMS_FILE), _csv_text(
        ('vm', 'mean', 'p95', 'noise'),
        ((name, float(m), float(p), float(z))
         for name, m, p, z in zip(names, s.mean, s.p95, s.noise))))
    atomic_write(os.path.join(directory, PROFILES_FILE), _csv_text(
        ('hour', *names),
        ((h, *(float(v) for v in s.profile[h])) for h in range(HOURS))))
    fleet = _csv_text(('t_s', 'cpu_sum'),
                      ((int(k * SAMPLE_S), float(v))
                       for k, v in enumerate(s.fleet)))
    atomic_write(os.path.join(directory, FLEET_FILE),
                 gzip.compress(fleet.encode('utf-8'), mtime=0))


def _read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt', encoding='utf-8', newline='') as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f'{path}: empty')
    return rows[0], rows[1:]


def _floats(path: str, rows: list[list[str]], columns: slice) -> np.ndarray:
    try:
        return np.array([[float(v) for v in row[columns]] for row in rows])
    except ValueError as e:
        raise ValueError(f'{path}: {e}') from None


def load_summary(directory: str | None = None) -> CpuSummary:
    """Read the shipped summary (default: ``data/azure-v1-cpu/``)."""
    directory = directory or data_dir()
    path = os.path.join(directory, VMS_FILE)
    header, rows = _read_csv(path)
    vms = _floats(path, rows, slice(1, 4))
    path = os.path.join(directory, PROFILES_FILE)
    header, rows = _read_csv(path)
    profile = _floats(path, rows, slice(1, None))
    if profile.shape != (HOURS, len(vms)):
        raise ValueError(f'{path}: expected {HOURS} hours x {len(vms)} VMs, '
                         f'got {profile.shape}')
    path = os.path.join(directory, FLEET_FILE)
    _, rows = _read_csv(path)
    fleet = _floats(path, rows, slice(1, 2))[:, 0]
    if len(fleet) == 0 or len(fleet) % SAMPLES_PER_DAY:
        raise ValueError(f'{path}: {len(fleet)} samples is not a whole '
                         f'number of days')
    return CpuSummary(mean=vms[:, 0], p95=vms[:, 1], noise=vms[:, 2],
                      profile=profile, fleet=fleet)


def derive(source_dir: str, out_dir: str, days: int = DAYS) -> None:
    """Summarise the source data (``cpu_avg.csv.gz``: ``t_s`` then one
    column of percent per VM, every 300 s) into ``out_dir``: its first
    ``days`` whole days."""
    path = os.path.join(source_dir, 'cpu_avg.csv.gz')
    header, rows = _read_csv(path)
    samples = _floats(path, rows[:days * SAMPLES_PER_DAY], slice(1, None))
    if len(samples) < days * SAMPLES_PER_DAY:
        raise ValueError(f'{path}: fewer than {days} days of samples')
    write_summary(summarise(samples / 100.0), header[1:], out_dir)


# The fit ----------------------------------------------------------------

def nelder_mead(f: Callable[[np.ndarray], float], x0: Sequence[float],
                step: Sequence[float], iterations: int = 60) -> np.ndarray:
    """Minimise ``f`` from ``x0`` (the standard simplex moves)."""
    pts = [np.asarray(x0, float)]
    pts += [pts[0] + np.eye(len(x0))[i] * step[i] for i in range(len(x0))]
    vals = [f(p) for p in pts]
    for _ in range(iterations):
        order = np.argsort(vals)
        pts = [pts[i] for i in order]
        vals = [vals[i] for i in order]
        centre = np.mean(pts[:-1], axis=0)
        reflected = centre + (centre - pts[-1])
        fr = f(reflected)
        if fr < vals[0]:
            expanded = centre + 2.0 * (centre - pts[-1])
            fe = f(expanded)
            pts[-1], vals[-1] = ((expanded, fe) if fe < fr
                                 else (reflected, fr))
        elif fr < vals[-2]:
            pts[-1], vals[-1] = reflected, fr
        else:
            contracted = centre + 0.5 * (pts[-1] - centre)
            fc = f(contracted)
            if fc < vals[-1]:
                pts[-1], vals[-1] = contracted, fc
            else:
                pts = [pts[0] + 0.5 * (p - pts[0]) for p in pts]
                vals = [vals[0]] + [f(p) for p in pts[1:]]
    return pts[int(np.argmin(vals))]


def _log_distance(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.sum((np.log(a) - np.log(b)) ** 2))


def _pair(x: np.ndarray) -> tuple[float, float]:
    return float(x[0]), float(x[1])


def fit(data: CpuSummary, start: UtilisationParams = UtilisationParams(),
        seeds: int = 4, iterations: int = 40) -> UtilisationParams:
    """The model's parameters fitted to ``data``, one concern at a time
    (each statistic depends mainly on one pair of parameters): the tenant
    mean's Beta to the VMs' means, the noise range to the noise, the
    amplitude range to the profiles' amplitude, the peak hour's spread to
    the peak hours' concentration. The model is simulated for as many VMs
    and days as the data holds, ``seeds`` times, with the same seeds for
    every candidate (common random numbers: a smooth objective)."""
    target = statistics(data)
    n, days = len(data.mean), days_of(data)
    params = start

    def figures(p: UtilisationParams) -> Stats:
        return model_statistics(p, n=n, seeds=seeds, days=days)

    def stage(make: Callable[[np.ndarray], UtilisationParams],
              loss: Callable[[Stats], float], x0, step) -> None:
        nonlocal params
        x = nelder_mead(lambda x: loss(figures(make(x))), x0, step,
                        iterations)
        params = make(x)

    stage(lambda x: dataclasses.replace(
              params, tenant_mean_floor=float(np.clip(x[0], 0.0, 0.5)),
              tenant_mean_beta=_pair(np.exp(x[1:]))),
          lambda s: _log_distance(s.vm_mean + (s.vm_mean_average,),
                                  target.vm_mean
                                  + (target.vm_mean_average,)),
          (params.tenant_mean_floor, *np.log(params.tenant_mean_beta)),
          (0.02, 0.5, 0.5))
    stage(lambda x: dataclasses.replace(
              params, noise_sigma=_pair(np.exp(np.sort(x)))),
          lambda s: _log_distance(s.noise, target.noise),
          np.log(params.noise_sigma), (0.3, 0.3))
    stage(lambda x: dataclasses.replace(
              params, diurnal_amplitude=_pair(np.clip(np.sort(x), 0, 1))),
          lambda s: _log_distance(s.amplitude, target.amplitude),
          params.diurnal_amplitude, (0.1, 0.1))
    params = dataclasses.replace(params, peak_hour_mean=target.peak_direction)
    stage(lambda x: dataclasses.replace(params, peak_hour_sd=float(
              np.clip(x[0], 0.1, 24.0))),
          lambda s: (s.peak_concentration - target.peak_concentration) ** 2,
          (params.peak_hour_sd,), (1.0,))
    return params


def side_by_side(data: Stats, model: Stats) -> str:
    """A two-column table of the figures."""
    d, m = data.table(), model.table()
    lines = [f'{"statistic":<22} {"data":>8} {"model":>8}']
    lines += [f'{k:<22} {d[k]:>8.3f} {m[k]:>8.3f}' for k in d]
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``derive SOURCE OUT``: write the shipped summary; ``compare``: the
    data's figures beside the default model's; ``fit``: fit and print."""
    parser = argparse.ArgumentParser(
        prog='python -m nova_rl_trainer.simulation.utilisation_fit')
    sub = parser.add_subparsers(dest='command', required=True)
    d = sub.add_parser('derive', help='summarise cpu_avg.csv.gz')
    d.add_argument('source', help='directory holding cpu_avg.csv.gz')
    d.add_argument('out', help='directory to write the summary to')
    for name in ('compare', 'fit'):
        c = sub.add_parser(name, help=f'{name} the model against the data')
        c.add_argument('--data', default=None,
                       help='summary directory (default: the shipped one)')
        c.add_argument('--seeds', type=int, default=8,
                       help='model samples averaged per figure')
    args = parser.parse_args(argv)
    try:
        if args.command == 'derive':
            derive(args.source, args.out)
            return 0
        data = load_summary(args.data)
    except (OSError, ValueError) as e:
        parser.exit(2, f'{parser.prog}: error: {e}\n')
    params = UtilisationParams()
    if args.command == 'fit':
        params = fit(data, seeds=args.seeds)
        print(params)
    model = model_statistics(params, n=len(data.mean), seeds=args.seeds,
                             days=days_of(data))
    print(side_by_side(statistics(data), model))
    return 0


if __name__ == '__main__':
    sys.exit(main())
