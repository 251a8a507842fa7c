"""Paired comparisons over independent groups: a one-sided bound, not one run.

``publish`` and calibration both ask "is the candidate no worse than the
reference?" of paired samples: for each of ``n`` independent groups (held-out
time windows, or groups of calibration branches) the candidate's cost minus
the reference's on the same workload. One run says little: a policy can win
one window by luck. The rule here:

* a term **must not be worse** when the one-sided 95% upper confidence
  bound of the mean paired difference is at most ``tolerance``;
* a term to **improve** needs a mean paired difference below zero.

The bound is Student's t: ``mean + t(0.95, n - 1) * sd / sqrt(n)``, with the
quantiles tabulated below (scipy is not a dependency), which assumes the
per-group differences are independent and roughly normal (means of many
decisions each); it is capped at the largest difference observed, so a
candidate no worse in any group passes "not worse". Differences are scaled by
the reference's mean magnitude
(:func:`relative`), so a tolerance of 0.01 allows 1% of the reference.
At least :data:`MIN_GROUPS` groups are required.

A relative bound on a term the reference barely accrues is noise: where
Nova's weighers overload for a minute in a day-long window, a candidate's
few extra seconds are +100%. So a term may also be judged in its own units
against a ``floor`` (:func:`compare`): it is not worse when the one-sided
bound of the mean absolute difference per group is at most the floor,
which for the host-hour terms set by sampled usage is one host for one
usage sample (:func:`~nova_rl_trainer.simulation.objectives.floor`): below
what one group measures.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

#: Fewest independent groups a verdict may rest on.
MIN_GROUPS = 10

#: One-sided 95% quantiles of Student's t, by degrees of freedom (1-30);
#: beyond 30 the Cornish-Fisher expansion in :func:`t95` is within 1e-3.
_T95 = (6.3138, 2.9200, 2.3534, 2.1318, 2.0150, 1.9432, 1.8946, 1.8595,
        1.8331, 1.8125, 1.7959, 1.7823, 1.7709, 1.7613, 1.7531, 1.7459,
        1.7396, 1.7341, 1.7291, 1.7247, 1.7207, 1.7171, 1.7139, 1.7109,
        1.7081, 1.7056, 1.7033, 1.7011, 1.6991, 1.6973)
_Z95 = 1.6448536269514722

# Runs that make the same decisions accrue bit-identical floats, but a
# harmless difference can land a few ulps away: kept from deciding.
EPS = 1e-9


def t95(df: int) -> float:
    """One-sided 95% quantile of Student's t with ``df`` degrees of
    freedom."""
    if df < 1:
        raise ValueError('a bound needs at least 2 paired samples')
    if df <= len(_T95):
        return _T95[df - 1]
    z = _Z95
    return z + (z ** 3 + z) / (4 * df) + \
        (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclasses.dataclass(frozen=True)
class Bound:
    """The mean paired difference and its one-sided 95% upper bound."""

    n: int
    mean: float
    upper: float
    #: The bound of the mean absolute difference per group, in the term's
    #: own units, and the floor it is held to (:func:`compare`).
    upper_abs: float | None = None
    floor: float = 0.0

    def not_worse(self, tolerance: float = 0.0) -> bool:
        """Within ``tolerance`` of the reference, or within the floor in
        the term's units."""
        return self.upper <= tolerance + EPS or self.within_floor()

    def within_floor(self) -> bool:
        return self.floor > 0 and self.upper_abs is not None and \
            self.upper_abs <= self.floor + EPS

    def improves(self) -> bool:
        return self.mean < -EPS

    def as_dict(self) -> dict:
        out = {'n': self.n, 'mean_diff': self.mean, 'upper_95': self.upper}
        if self.floor > 0:
            out.update(upper_95_abs=self.upper_abs, floor=self.floor)
        return out


def upper_bound(diffs: Sequence[float]) -> Bound:
    """One-sided 95% upper confidence bound of the mean of ``diffs``."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n < 2:
        raise ValueError('a bound needs at least 2 paired samples')
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    # Never above the worst group seen: a candidate no worse in any group
    # is not "possibly worse" because one group's gain was large (the
    # spread that gain adds is not evidence of a loss).
    upper = min(mean + t95(n - 1) * sd / math.sqrt(n), float(d.max()))
    return Bound(n, mean, upper)


def compare(candidate: Sequence[float], reference: Sequence[float],
            floor: float = 0.0) -> Bound:
    """The bound of the paired relative differences (:func:`relative`),
    with, when ``floor`` > 0, the bound of the absolute ones held to it."""
    if not (math.isfinite(floor) and floor >= 0):
        raise ValueError('floor must be a finite number >= 0')
    bound = upper_bound(relative(candidate, reference))
    if floor == 0:
        return bound
    absolute = upper_bound(np.asarray(candidate, dtype=float)
                           - np.asarray(reference, dtype=float))
    return dataclasses.replace(bound, upper_abs=absolute.upper, floor=floor)


def relative(candidate: Sequence[float], reference: Sequence[float]
             ) -> np.ndarray:
    """Paired differences as a share of the reference's mean magnitude
    (absolute when the reference is zero throughout, e.g. no rejections:
    then any rejection is a difference of at least 1)."""
    c = np.asarray(candidate, dtype=float)
    r = np.asarray(reference, dtype=float)
    scale = float(np.abs(r).mean()) if len(r) else 0.0
    return (c - r) / (scale if scale > 0 else 1.0)
