"""The search for the utilisation model's parameters whose figures
(:mod:`~nova_rl_trainer.simulation.utilisation_stats`) match those of
measured CPU use: one concern at a time, each with Nelder-Mead's simplex
(:func:`fit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses

import numpy as np

from nova_rl_trainer.simulation.utilisation import UtilisationParams
from nova_rl_trainer.simulation.utilisation_stats import CpuSummary
from nova_rl_trainer.simulation.utilisation_stats import days_of
from nova_rl_trainer.simulation.utilisation_stats import model_statistics
from nova_rl_trainer.simulation.utilisation_stats import statistics
from nova_rl_trainer.simulation.utilisation_stats import Stats


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
