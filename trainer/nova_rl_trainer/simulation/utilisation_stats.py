"""The figures 5-minute CPU use is compared on, for measured VMs and the
utilisation model's (``utilisation.py``) alike.

:func:`summarise` reduces 5-minute samples of whole days to what the
figures need (:class:`CpuSummary`); :func:`statistics` computes the figures
(:class:`Stats`). The model's VMs are simulated (:func:`simulate`), one per
tenant, for as many days as the data and summarised by the same function,
so data and model are compared statistic for statistic
(:func:`model_statistics`). :func:`fleet_use` and :func:`daily_max_min`
measure a whole trace's daily swing the same way.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
