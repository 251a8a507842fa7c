"""How much CPU each VM actually uses, over time: the utilisation model.

The Azure trace says what was requested, not what was used, so use is
modelled after what Resource Central (Cortez et al., SOSP 2017) reports: most
VMs have a low average CPU utilisation, a long tail is busy, and VMs of one
tenant's deployment behave alike. The model, all of it seeded:

* **Tenant profile** (persistent): each project gets a mean utilisation
  ``m ~ Beta(0.7, 2.8)`` (mean 0.2, a long tail towards 1), a diurnal
  amplitude ``a ~ U(0, 0.6)``, a peak hour ``~ N(14 h, 3 h)`` and a noise
  level ``s ~ U(0.1, 0.5)``; memory in use is a fraction ``Beta(4, 2)`` of
  what its VMs were allocated. The profile is a function of the seed and the
  project's *name*, so a tenant behaves the same in every trace and window:
  what a project used before predicts what its next VM will use, which is
  what makes learning from measured use worthwhile.
* **VM**: its mean is the tenant's times a mean-one log-normal factor
  (sigma 0.3): correlated within the tenant, not identical.
* **Over time**: at sample ``k`` (every ``interval_s``), a VM uses
  ``clip(mean * (1 + a cos(2 pi (t - peak) / 1 day)) * exp(s z - s^2 / 2),
  0, 1)`` of its vCPUs, with ``z`` standard normal noise.

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

    tenant_mean_beta: tuple[float, float] = (0.7, 2.8)
    vm_spread_sigma: float = 0.3
    diurnal_amplitude: tuple[float, float] = (0.0, 0.6)
    peak_hour_mean: float = 14.0
    peak_hour_sd: float = 3.0
    noise_sigma: tuple[float, float] = (0.1, 0.5)
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
        t_mean[j] = rng.beta(*params.tenant_mean_beta)
        t_amp[j] = rng.uniform(*params.diurnal_amplitude)
        t_peak[j] = (rng.normal(params.peak_hour_mean, params.peak_hour_sd)
                     % 24.0) * 3600.0
        t_sigma[j] = rng.uniform(*params.noise_sigma)
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
