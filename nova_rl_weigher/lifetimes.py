"""VM lifetimes: the statistics measured so far, and what they predict.

Schema v2's lifetime columns (a request's predicted life, a host's expected
remaining busy time) are computed in three places: the snapshot producer
measures lifetimes on the operator's cloud, the simulator in its own run,
and the weigher predicts from the snapshot inside nova-scheduler. A policy
learnt on the simulator's predictions only transfers if the weigher's are
made the same way, so, as the feature columns have one definition, so do
these: a group's lifetime statistics (:func:`lifetime_stats`,
:func:`sibling_lifetime`), which group predicts a VM's life
(:class:`Lifetimes`) and when a VM or a host is expected to be done
(:func:`expected_end_s`, :func:`host_remaining_s`). :mod:`features` only
turns the predictions into columns. Numpy only, as all the weigher imports.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True, slots=True)
class Lifetime:
    """Measured VM lifetimes of one group (a project, a flavor, ...)."""

    median_s: float
    p90_s: float
    count: float


#: Siblings of a request: its project's boots within this many seconds
#: before it (a multi-create request, a batch of jobs).
SIBLING_WINDOW_S = 600.0


def _rank(n: int, q: float) -> int:
    # Nearest rank: the smallest value with at least q of the values at or
    # below it.
    return max(0, math.ceil(q * n) - 1)


def lifetime_stats(sorted_s: Sequence[float]) -> Lifetime | None:
    """Median and p90 (nearest rank) of ascending lifetimes; None if
    empty. The one definition the simulator and the snapshot producer use.
    """
    n = len(sorted_s)
    if not n:
        return None
    return Lifetime(float(sorted_s[_rank(n, 0.5)]),
                    float(sorted_s[_rank(n, 0.9)]), float(n))


def _floats(values: Iterable[float]) -> np.ndarray:
    # An array as it is (np.fromiter walks it one element at a time).
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.fromiter(values, dtype=np.float64)


def sibling_lifetime(ended_s: Iterable[float],
                     alive_ages_s: Iterable[float]) -> Lifetime | None:
    """The lifetimes of a request's siblings, some still running.

    A running sibling's lifetime is only known to exceed its age, so the
    median is known once more than half have ended (None before); the p90,
    when it falls on a running sibling, is the oldest running sibling's
    age (a lower bound), and never below the median.
    """
    ended = _floats(ended_s)
    ages = _floats(alive_ages_s)
    n = ended.shape[0] + ages.shape[0]
    if not n or _rank(n, 0.5) >= ended.shape[0]:
        return None     # usually: siblings are seconds to minutes old
    ended = np.sort(ended)
    median = float(ended[_rank(n, 0.5)])
    k = _rank(n, 0.9)
    p90 = float(ended[k]) if k < ended.shape[0] else \
        max(median, float(ages.max()))
    return Lifetime(median, p90, float(n))


def expected_end_s(start_s: float, now_s: float, life: Lifetime) -> float:
    """When a VM started at ``start_s`` is expected to end, seen at
    ``now_s``, re-predicted as it outlives each estimate.

    Its group's median until then, its p90 after that, then doubling the
    p90 each time it is outlived (long-lived VMs tend to live on). The
    estimate is constant between the instants it is outlived, which lets
    the simulator keep a host's busy period without recomputing it on
    every request.
    """
    end = start_s + life.median_s
    if now_s < end:
        return end
    span = max(life.p90_s, life.median_s, 1.0)
    end = start_s + span
    while now_s >= end:
        span *= 2.0
        end = start_s + span
    return end


class Lifetimes:
    """Lifetime statistics by group, and the prediction order.

    ``recent``: project -> its siblings' lifetimes (boots of the last
    :data:`SIBLING_WINDOW_S`, :func:`sibling_lifetime`);
    ``project_flavor``: (project, flavor name) -> lifetimes; ``project``
    and ``flavor``: by project id and by flavor name.
    """

    __slots__ = ('recent', 'project_flavor', 'project', 'flavor')

    def __init__(self, recent: Mapping[str, Lifetime] | None = None,
                 project_flavor: Mapping[tuple[str, str], Lifetime]
                 | None = None,
                 project: Mapping[str, Lifetime] | None = None,
                 flavor: Mapping[str, Lifetime] | None = None) -> None:
        self.recent = recent or {}
        self.project_flavor = project_flavor or {}
        self.project = project or {}
        self.flavor = flavor or {}

    def for_instance(self, project_id: str, flavor: str) -> Lifetime | None:
        """A running VM's lifetime distribution: its project and flavor,
        else its project, else its flavor; None if nothing is known."""
        life = self.project_flavor.get((project_id, flavor))
        if life is None:
            life = self.project.get(project_id)
        if life is None:
            life = self.flavor.get(flavor)
        return life

    def for_request(self, project_id: str, flavor: str) -> Lifetime | None:
        """The request's: its siblings' first, else :meth:`for_instance`."""
        life = self.recent.get(project_id)
        return life if life is not None else \
            self.for_instance(project_id, flavor)


NO_LIFETIMES = Lifetimes()


def host_remaining_s(now_s: float, holdings: Iterable[tuple[float,
                                                            Lifetime | None]]
                     ) -> float:
    """Expected remaining life of a host's longest-lived holding, from
    ``(start, lifetime distribution or None)`` per VM it holds: 0 for an
    empty host, NaN when none of its VMs has a prediction."""
    best = math.nan
    empty = True
    for start, life in holdings:
        empty = False
        if life is not None:
            left = expected_end_s(start, now_s, life) - now_s
            if not left <= best:
                best = left
    return 0.0 if empty else best
