"""The metrics of one simulation run and how they are summarised.

Keys of :attr:`RunResult.metrics` (the first ten are the contract of the CLI
and of every comparison; the rest are added beside them):

``decisions``
    placement requests seen (``placed + rejected``).
``placed``, ``rejected``
    requests placed, and those no host could take.
``active_host_hours``
    integral over the horizon of the number of hosts holding a VM.
``lb_host_hours``
    the fluid lower bound: integral of the most hosts any one resource
    needs for the live allocated demand, for the VMs live in this run (all
    of them when nothing is rejected). On identical hosts a resource needs
    ``ceil(live demand / host capacity)`` hosts; with host groups of
    several sizes, the fewest hosts whose capacities can hold the demand,
    taking the largest hosts first (capacity with allocation ratios). No
    placement can use fewer host-hours.
``energy_kwh``
    each active host's ``idle_watts + (peak_watts - idle_watts) * min(cpu
    use / cores, 1)``, plus ``empty_watts`` per empty host, integrated;
    the watts are each host's own (its host group's).
``overload_host_hours``
    integral of the number of hosts whose actual CPU demand exceeds their
    own physical cores.
``p95_host_cpu_util``
    95th percentile of active hosts' CPU demand / their physical cores,
    over the usage samples (above 1 means overloaded).
``empty_host_fraction``
    time-averaged share of hosts holding no VM.
``objective_value``
    the run's objective (:mod:`objectives`) over the accrued terms.

Beside them: the other objective terms (``hot_host_hours``,
``headroom_deficit_host_hours``), ``mean_host_cpu_util``,
``peak_allocated_fraction`` (peak over time of the allocated share of the
cluster's total capacity, on the most used resource), ``peak_active_hosts``,
``horizon_hours``, ``hosts``, and for artifact policies ``applied_fraction``
(share of decisions where a gated policy was confident enough to act).
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: The metric names fixed by the issue, in report order.
CONTRACT_KEYS: tuple[str, ...] = (
    'decisions', 'placed', 'rejected', 'active_host_hours', 'lb_host_hours',
    'energy_kwh', 'overload_host_hours', 'p95_host_cpu_util',
    'empty_host_fraction', 'objective_value')

#: Histogram bins of host CPU utilisation kept for the report.
UTIL_BINS = np.linspace(0.0, 2.0, 101)


@dataclasses.dataclass
class RunResult:
    """Metrics, the time series sampled at each usage sample, and the
    histogram of active hosts' CPU utilisation (over :data:`UTIL_BINS`, the
    last bin also counting everything above 2)."""

    metrics: dict
    series: dict[str, np.ndarray]
    util_hist: np.ndarray


def util_summary(samples: list[np.ndarray]) -> tuple[float, float,
                                                     np.ndarray]:
    """``(p95, mean, histogram)`` of the per-sample host utilisations."""
    if samples:
        allv = np.concatenate(samples)
    else:
        allv = np.zeros(0)
    hist, _ = np.histogram(np.minimum(allv, UTIL_BINS[-1]), bins=UTIL_BINS)
    if allv.size == 0:
        return 0.0, 0.0, hist
    return (float(np.percentile(allv, 95)), float(allv.mean()), hist)
