"""Which Nova a policy augments: the running weigher configuration, and
how it differs from the one the policy was trained with.

A policy reads Nova's combined weight as a feature and hands its
abstentions to Nova's ranking, so one trained over a packing Nova means
something else over a spreading one. The manifest records the
configuration it was trained with (``nova_weighers``: the multipliers and
the enabled weighers); :func:`config_mismatch` compares it with the
running one, which the weigher reads from ``[filter_scheduler]`` and the
simulator from its ``SimConfig``, both as plain data (:class:`NovaConfig`),
so this module needs neither Nova nor the trainer. Only signs are
compared (negative, zero, positive): a multiplier's size tunes a weigher,
its sign decides what it prefers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from nova_rl_weigher.policy import Policy


@dataclasses.dataclass(frozen=True, slots=True)
class NovaConfig:
    """The weigher configuration of the Nova a policy runs in, as plain data.

    ``multipliers``: ``[filter_scheduler]`` option name -> value, e.g.
    ``{'ram_weight_multiplier': 1.0, ...}``; ``weighers``: the enabled
    weigher classes as dotted paths (``weight_classes`` expanded, e.g.
    ``nova.scheduler.weights.all_weighers`` to its classes), or None when
    unknown (then only the multipliers are compared).
    """

    multipliers: Mapping[str, float]
    weighers: frozenset[str] | None = None


def finite_number(value) -> float | None:
    """An option or metadata value as a finite float (a number, or text
    that reads as one); None for NaN, infinities and anything else."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _sign(value) -> int | None:
    number = finite_number(value)
    if number is None:
        return None
    return (number > 0) - (number < 0)


def _enabled(name: str, weighers: frozenset[str]) -> bool:
    """``name`` (a dotted path, or a bare class name) among ``weighers``."""
    if name in weighers:
        return True
    return '.' not in name and any(w.rpartition('.')[2] == name
                                   for w in weighers)


def config_mismatch(policy: Policy | None, running: NovaConfig | None
                    ) -> str:
    """What differs between the Nova configuration the policy was trained
    with (manifest ``nova_weighers``) and ``running``; '' when they match,
    or when either is unknown (no field, no running configuration).

    Compared: the sign of every recorded multiplier the running Nova has,
    and, when ``running.weighers`` is known, that every recorded weigher
    is enabled.
    """
    if policy is None or running is None:
        return ''
    recorded = policy.manifest.get('nova_weighers')
    if not isinstance(recorded, dict):
        return ''
    diffs = []
    multipliers = recorded.get('multipliers')
    for name, value in (multipliers.items()
                        if isinstance(multipliers, dict) else ()):
        if name not in running.multipliers:
            continue
        now = running.multipliers[name]
        if _sign(now) is None or _sign(now) != _sign(value):
            diffs.append(f'{name} is {now!r} here, {value!r} in training')
    weighers = recorded.get('weighers')
    if running.weighers is not None and isinstance(weighers, list):
        missing = [w for w in weighers
                   if isinstance(w, str) and not _enabled(w, running.weighers)]
        if missing:
            diffs.append('not enabled in weight_classes: '
                         + ', '.join(missing))
    if not diffs:
        return ''
    return (f"policy trained for Nova weighers {recorded.get('name')!r}: "
            + '; '.join(diffs))
