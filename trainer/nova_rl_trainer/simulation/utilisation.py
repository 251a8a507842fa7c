"""How much CPU each VM actually uses, over time: the utilisation model.

The Azure trace says what was requested, not what was used, so use is
modelled, and fitted (``utilisation_fit.py``) to real per-VM CPU use: 27 days
of 5-minute samples of 100 Azure VMs (``data/azure-v1-cpu/``, Azure Public
Dataset V1, CC-BY 4.0; Cortez et al., Resource Central, SOSP 2017). Most VMs
idle along at a few percent, a long tail is busy, VMs of one tenant's
deployment behave alike, and their daily peaks are spread over the whole
day. The model, all of it seeded:

* **Tenant profile** (persistent): each project gets a mean utilisation
  ``m = f + (1 - f) Beta(0.135, 2.82)`` with an idle floor ``f = 0.065``
  (median 0.066, mean 0.108, 10% of tenants above 0.21), a diurnal
  amplitude ``a ~ U(0, 0.19)``, a peak hour ``~ N(21.9 h, 6.25 h)`` (mod 24:
  nearly all over the day), and a noise level ``s`` log-uniform on ``[0.07,
  1.21]``; memory in use is a fraction ``Beta(4, 2)`` of what its VMs were
  allocated. The profile is a function of the seed and the project's
  *name*, so a tenant behaves the same in every trace and window: what a
  project used before predicts what its next VM will use, which is what
  makes learning from measured use worthwhile.
* **VM**: its mean is the tenant's times a mean-one log-normal factor
  (sigma 0.3): correlated within the tenant, not identical.
* **Over time**: at sample ``k`` (every ``interval_s``), a VM uses
  ``clip(mean * (1 + a cos(2 pi (t - peak) / 1 day)) * exp(s z - s^2 / 2),
  0, 1)`` of its vCPUs, with ``z`` standard normal noise.

The fit (``python -m nova_rl_trainer.simulation.utilisation_fit compare``):
the model's VMs, one per tenant, simulated for the data's 27 days in 8
samples of 100 and summarised by the same code as the data (quantiles over
VMs; "profile" is a VM's mean use per hour of the day, "noise" the sd of
``log(sample / profile)``):

===============================  =====================  =====================
figure                           data                   model
===============================  =====================  =====================
VM mean use p10 / p50 / p90      0.044 / 0.074 / 0.202  0.046 / 0.073 / 0.185
VM mean use p95 / average        0.282 / 0.106          0.281 / 0.102
profile (max-min)/mean p25/50/75 0.10 / 0.34 / 0.51     0.15 / 0.25 / 0.34
peak hour quartiles              6.5 / 16.5 / 20.5 h    5.3 / 13.8 / 19.8 h
peak hours' concentration (R)    0.26                   0.23
noise p10 / p50 / p90            0.10 / 0.30 / 0.98     0.10 / 0.31 / 0.95
5-min p95 / mean p25 / 50 / 90   1.31 / 1.45 / 3.94     1.32 / 1.61 / 3.03
100 VMs' sum, daily max/min      1.36                   1.44
===============================  =====================  =====================

The old defaults (``Beta(0.7, 2.8)``, no floor, ``U(0, 0.6)``, ``N(14 h,
3 h)``, noise ``U(0.1, 0.5)``) gave a median VM of 0.119 and an average of
0.186 (the data's: 0.074, 0.106), peak concentration 0.71 and a 100-VM
daily max/min of 1.83. What the model does not have: the data's noise is
persistent (lag-1 autocorrelation 0.5; i.i.d. here, so the 100 VMs' sum is
a little peakier) and its daily profiles are not cosines (their first
harmonic is small; the cosine's amplitude is fitted to the profiles' range)
nor, for quiet VMs, as flat as the data's (amplitude and noise are
independent here, correlated 0.58 in the data).

The VMs' own cycles nearly cancel (the data's 100 VMs sum to a 27-day mean
profile with max/min 1.05), so a cloud's daily swing comes mostly from VMs
starting and stopping: simulated over the whole ``azure-v1-test`` trace,
used vCPUs swing by a daily max/min of 1.18 and 1.31 on its two days after
filling up, Azure's fleet-wide figure being about 1.24 (the old defaults:
1.99 and 2.21).

A CSV trace that gives ``cpu_util_mean``/``cpu_util_p95`` for a VM overrides
the model for that VM: ``clip(mean + (p95 - mean) / 1.645 * z, 0, 1)``, the
normal distribution with that mean and 95th percentile (constant when only
the mean is given).

The noise ``z`` is a pure function of (seed, VM, sample index), a counter-
based hash, not a stream: every policy simulated with the same seed sees the
same use for the same VM at the same time, whatever else it placed (common
random numbers, so comparisons between policies are paired).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from nova_rl_trainer.simulation.traces import Trace

DAY_S = 86400.0
# z of the 95th percentile of the standard normal.
Z95 = 1.6448536269514722


@dataclasses.dataclass(frozen=True)
class UtilisationParams:
    """The model's constants (see the module doc)."""

    tenant_mean_beta: tuple[float, float] = (0.135, 2.82)
    tenant_mean_floor: float = 0.065
    vm_spread_sigma: float = 0.3
    diurnal_amplitude: tuple[float, float] = (0.0, 0.19)
    peak_hour_mean: float = 21.9
    peak_hour_sd: float = 6.25
    noise_sigma: tuple[float, float] = (0.07, 1.21)
    memory_beta: tuple[float, float] = (4.0, 2.0)


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode('utf-8')).digest()[:8],
                          'little')


_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)
_C3 = np.uint64(0x94D049BB133111EB)
_VM_STRIDE = np.uint64(0xD1B54A32D192ED03)
_SECOND = np.uint64(0x632BE59BD9B4E019)


def _splitmix(x: np.ndarray) -> np.ndarray:
    z = x + _C1
    z = (z ^ (z >> np.uint64(30))) * _C2
    z = (z ^ (z >> np.uint64(27))) * _C3
    return z ^ (z >> np.uint64(31))


def _unit(z: np.ndarray) -> np.ndarray:
    """uint64 -> float in (0, 1]."""
    return 1.0 - (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def normal_noise(key: int, vms: np.ndarray,
                 sample: int | np.ndarray) -> np.ndarray:
    """Standard normal ``z`` for each VM at ``sample`` (a scalar or one per
    VM), a pure function of its arguments."""
    with np.errstate(over='ignore'):
        x = (np.asarray(vms).astype(np.uint64) * _VM_STRIDE
             + np.asarray(sample).astype(np.uint64)) ^ np.uint64(key)
        h1 = _splitmix(x)
        h2 = _splitmix(x ^ _SECOND)
    # Box-Muller.
    return np.sqrt(-2.0 * np.log(_unit(h1))) * np.cos(2.0 * np.pi * _unit(h2))


@dataclasses.dataclass(frozen=True, eq=False)
class VmUsage:
    """Per-VM parameters of the model for one trace and seed.

    ``cpu_util(vms, k)`` is the fraction of their vCPUs the VMs use at
    sample ``k`` (time ``k * interval_s``); ``mem_frac`` the fraction of
    their allocated memory in use.
    """

    base: np.ndarray
    amplitude: np.ndarray
    phase_s: np.ndarray        # time of day of the diurnal peak, seconds
    sigma: np.ndarray          # log-normal noise
    add_sd: np.ndarray         # additive noise (CSV-given utilisation)
    mem_frac: np.ndarray
    project_mean: np.ndarray   # per project: the tenant's mean
    interval_s: float
    time_offset_s: float
    key: int

    def cpu_util(self, vms: np.ndarray,
                 sample: int | np.ndarray) -> np.ndarray:
        t = self.time_offset_s + np.asarray(sample) * self.interval_s
        z = normal_noise(self.key, vms, sample)
        s = self.sigma[vms]
        diurnal = 1.0 + self.amplitude[vms] * np.cos(
            (2.0 * np.pi / DAY_S) * (t - self.phase_s[vms]))
        u = (self.base[vms] * diurnal * np.exp(s * z - 0.5 * s * s)
             + self.add_sd[vms] * z)
        return np.clip(u, 0.0, 1.0)


def build_usage(trace: Trace, seed: int, interval_s: float,
                params: UtilisationParams = UtilisationParams()) -> VmUsage:
    """Draw the model's parameters for every VM of ``trace``."""
    n = len(trace)
    p = len(trace.project_ids)
    t_mean = np.empty(p)
    t_amp = np.empty(p)
    t_peak = np.empty(p)
    t_sigma = np.empty(p)
    t_mem = np.empty(p)
    for j, name in enumerate(trace.project_ids):
        rng = np.random.default_rng([seed, 0xC0, _name_key(name)])
        floor = params.tenant_mean_floor
        t_mean[j] = floor + (1.0 - floor) * rng.beta(*params.tenant_mean_beta)
        t_amp[j] = rng.uniform(*params.diurnal_amplitude)
        t_peak[j] = (rng.normal(params.peak_hour_mean, params.peak_hour_sd)
                     % 24.0) * 3600.0
        # Log-uniform: noise levels spread over a decade (see the fit).
        t_sigma[j] = np.exp(rng.uniform(*np.log(params.noise_sigma)))
        t_mem[j] = rng.beta(*params.memory_beta)
    rng = np.random.default_rng([seed, 0xC1])
    spread = params.vm_spread_sigma
    vm_factor = np.exp(rng.normal(0.0, spread, n) - 0.5 * spread * spread)
    proj = trace.project
    base = np.clip(t_mean[proj] * vm_factor, 0.0, 1.0)
    amplitude = t_amp[proj].copy()
    sigma = t_sigma[proj].copy()
    add_sd = np.zeros(n)
    given = ~np.isnan(trace.cpu_util_mean)
    if given.any():
        base[given] = trace.cpu_util_mean[given]
        amplitude[given] = 0.0
        sigma[given] = 0.0
        add_sd[given] = (trace.cpu_util_p95[given]
                         - trace.cpu_util_mean[given]) / Z95
    return VmUsage(
        base=base, amplitude=amplitude, phase_s=t_peak[proj], sigma=sigma,
        add_sd=add_sd, mem_frac=t_mem[proj], project_mean=t_mean,
        interval_s=float(interval_s),
        time_offset_s=float(trace.time_offset_s),
        key=_name_key(f'noise-{seed}'))
