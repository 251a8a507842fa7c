"""What the operator wants: objectives as weighted sums of accrued costs.

Every objective is a linear combination of *terms*, quantities the simulator
accrues over time (so a placement is charged for its whole life, and the
environment's reward between two decisions is minus what accrued between
them):

===============================  ===========================================
term                             accrues
===============================  ===========================================
``active_host_hours``            hosts holding at least one VM, per hour
``energy_kwh``                   the linear power model's energy
``overload_host_hours``          hosts whose actual CPU demand exceeds their
                                 physical cores
``hot_host_hours``               hosts whose demand exceeds ``hot_threshold``
                                 of their cores (0.8 by default): hot spots
``headroom_deficit_host_hours``  per host, the share of its failover reserve
                                 (``headroom_reserve``, 20% of capacity by
                                 default) taken by allocations, 0 to 1
``rejected``                     each request no host could take
===============================  ===========================================

Objectives are stevedore plugins in namespace ``nova_rl_trainer.objectives``
(see ``setup.cfg``); each accepts term weights as options to override its
defaults (``--objective-option energy_kwh=2``). Shipped:

* ``packing``: active host-hours and energy (fewer, fuller hosts);
* ``balance``: overload and hot spots (spread actual load);
* ``headroom``: keep spare capacity on every host for failover evacuations
  (live migration and rebuilds land on running hosts, so the spare room must
  be there, not in powered-off hosts);
* ``mix``: options weigh other objectives and terms, e.g.
  ``packing=1,balance=5``;
* ``pareto``: constrained, not a fixed trade-off: fewer active host-hours
  and kWh (the primary terms, weighted as in ``packing``) with no more
  overload, hot host-hours or rejections than a reference policy on the same
  episode (:class:`Pareto`). Each constraint term's weight is its Lagrange
  multiplier, which training adjusts (``learning.ppo.dual_ascent``).

Every shipped objective also charges :data:`REJECTION_COST` per rejected
request, so no objective is improved by failing to place VMs.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

NAMESPACE = 'nova_rl_trainer.objectives'

TERMS: tuple[str, ...] = (
    'active_host_hours', 'energy_kwh', 'overload_host_hours',
    'hot_host_hours', 'headroom_deficit_host_hours', 'rejected')

#: Cost of a rejected request, in the units of each objective's main term.
REJECTION_COST = 10.0

#: Terms a host accrues while its sampled CPU use is past a limit: the usage
#: they are measured from changes once per usage sample.
SAMPLED_TERMS: tuple[str, ...] = ('overload_host_hours', 'hot_host_hours')

#: Default :func:`floor`: one host for one usage sample.
DEFAULT_FLOOR_HOST_SAMPLES = 1.0


def valid_floor(host_samples: float) -> bool:
    """Whether ``host_samples`` can be a :func:`floor`: a finite number
    >= 0 (0: the relative bound alone)."""
    return math.isfinite(host_samples) and host_samples >= 0


def floor(term: str, usage_interval_s: float,
          host_samples: float = DEFAULT_FLOOR_HOST_SAMPLES) -> float:
    """How much more of ``term`` a paired comparison may find per group
    (window) and still call it no worse
    (:func:`~nova_rl_trainer.simulation.paired.compare`): for
    :data:`SAMPLED_TERMS`, ``host_samples`` hosts for one usage sample of
    ``usage_interval_s`` (in host-hours; 5 minutes of one host by default,
    the finest step the usage is measured in); 0 for every other term,
    which keeps its relative bound only (a rejection is never noise)."""
    if not valid_floor(host_samples):
        raise ValueError('the floor must be a finite number of host-samples '
                         '>= 0')
    if term not in SAMPLED_TERMS:
        return 0.0
    return host_samples * usage_interval_s / 3600.0


def floors(terms: Sequence[str], usage_intervals_s: Iterable[float],
           host_samples: float) -> dict[str, float]:
    """Each of ``terms``' :func:`floor` per group, at the finest of the
    compared runs' usage intervals (the strictest floor)."""
    interval = min(usage_intervals_s)
    return {t: floor(t, interval, host_samples) for t in terms}


class ObjectiveError(ValueError):
    """Unknown objective or invalid option."""


def parse_options(items: list[str] | tuple[str, ...] | str | None
                  ) -> dict[str, float]:
    """``['a=1', 'b=2']`` or ``'a=1,b=2'`` -> ``{'a': 1.0, 'b': 2.0}``."""
    if not items:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, float] = {}
    for item in items:
        for part in item.split(','):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition('=')
            if not sep:
                raise ObjectiveError(f'objective option {part!r} is not '
                                     'KEY=NUMBER')
            try:
                number = float(value)
            except ValueError:
                raise ObjectiveError(f'objective option {key.strip()}: '
                                     f'{value!r} is not a number') from None
            if not math.isfinite(number):
                raise ObjectiveError(f'objective option {key.strip()} must '
                                     'be finite')
            out[key.strip()] = number
    return out


class Objective:
    """A weighted sum of :data:`TERMS`; lower is better."""

    name = 'custom'
    description = ''
    default_weights: Mapping[str, float] = {}

    def __init__(self, **options: float) -> None:
        weights = dict(self.default_weights)
        for key, value in options.items():
            if key not in TERMS:
                raise ObjectiveError(
                    f'objective {self.name!r} has no option {key!r}; its '
                    'options are term weights: ' + ', '.join(TERMS))
            weights[key] = float(value)
        self.weights: dict[str, float] = {t: w for t, w in weights.items()
                                          if w != 0.0}
        self.options = dict(options)

    def value(self, terms: Mapping[str, float]) -> float:
        """The objective for accrued ``terms`` (a metrics dict will do)."""
        return float(sum(w * float(terms[t]) for t, w in
                         self.weights.items()))

    def describe(self) -> dict:
        return {'name': self.name, 'weights': dict(self.weights)}

    def __repr__(self) -> str:
        terms = ', '.join(f'{t}={w:g}' for t, w in self.weights.items())
        return f'<Objective {self.name}: {terms}>'


class Packing(Objective):
    name = 'packing'
    description = 'active host-hours and energy: fewer, fuller hosts'
    default_weights = {'active_host_hours': 1.0, 'energy_kwh': 1.0,
                       'rejected': REJECTION_COST}


class Balance(Objective):
    name = 'balance'
    description = 'overload and hot spots: spread the actual CPU load'
    default_weights = {'overload_host_hours': 1.0, 'hot_host_hours': 0.1,
                       'rejected': REJECTION_COST}


class Headroom(Objective):
    name = 'headroom'
    description = 'keep spare capacity on each host for failover'
    default_weights = {'headroom_deficit_host_hours': 1.0,
                       'rejected': REJECTION_COST}


#: The terms ``pareto`` holds at or below the reference policy's.
CONSTRAINT_TERMS: tuple[str, ...] = ('overload_host_hours', 'hot_host_hours',
                                     'rejected')


class Pareto(Objective):
    """Primary terms minimised, constraint terms held to a reference's.

    Lagrangian form: ``primary + sum_i lambda_i * constraint_i``, where the
    weights of :data:`CONSTRAINT_TERMS` are the multipliers ``lambda_i >=
    0`` (:attr:`multipliers`, set by the trainer's dual ascent from the
    measured :meth:`excess` over the reference policy, by default the
    cluster's configured Nova weighers). Options: ``active_host_hours`` and
    ``energy_kwh`` (primary weights, default 1), ``overload_host_hours``
    (1), ``hot_host_hours`` (0.1) and ``rejected`` (:data:`REJECTION_COST`):
    the initial multipliers, also each constraint's price scale in the dual
    step; ``dual_lr`` (1): the dual ascent's step, in units of that price
    per 100% excess.
    """

    name = 'pareto'
    description = ('fewer active host-hours and kWh than the reference, '
                   'with no more overload, hot host-hours or rejections')
    default_weights = {'active_host_hours': 1.0, 'energy_kwh': 1.0,
                       'overload_host_hours': 1.0, 'hot_host_hours': 0.1,
                       'rejected': REJECTION_COST}
    constraints = CONSTRAINT_TERMS
    #: Relative excess is clipped to this range, so one episode with
    #: almost none of a term on the reference side (a tiny denominator)
    #: cannot blow a multiplier up.
    excess_clip = (-1.0, 4.0)
    #: Host-hour terms are relative to at least this share of the
    #: reference's active host-hours (rejections to at least 1 request).
    excess_floor = 0.01

    def __init__(self, **options: float) -> None:
        options = dict(options)
        self.dual_lr = float(options.pop('dual_lr', 1.0))
        if not self.dual_lr > 0:
            raise ObjectiveError('objective pareto: dual_lr must be '
                                 f'positive, got {self.dual_lr:g}')
        for key in ('active_host_hours', 'energy_kwh', *self.constraints):
            if options.get(key, 0.0) < 0:
                raise ObjectiveError(f'objective pareto: {key} must not be '
                                     'negative')
        super().__init__(**options)
        unknown = set(self.weights) - {'active_host_hours', 'energy_kwh',
                                       *self.constraints}
        if unknown:
            raise ObjectiveError(
                'objective pareto: ' + ', '.join(sorted(unknown))
                + ' is neither a primary term (active_host_hours, '
                'energy_kwh) nor a constraint (' + ', '.join(
                    self.constraints) + ')')
        self.options = {**self.options, 'dual_lr': self.dual_lr}
        # A constraint priced 0 would never move: the dual step needs a
        # scale, so it gets the default's.
        self.prices = {t: self.weights.get(t) or self.default_weights[t]
                       for t in self.constraints}
        self.weights.update(self.multipliers)

    @property
    def multipliers(self) -> dict[str, float]:
        return {t: self.weights.get(t, 0.0) for t in self.constraints}

    def set_multipliers(self, multipliers: Mapping[str, float]) -> None:
        for t, lam in multipliers.items():
            if t not in self.constraints or not lam >= 0:
                raise ObjectiveError(f'objective pareto: multiplier {t}='
                                     f'{lam!r} (constraints: '
                                     + ', '.join(self.constraints) + ')')
            self.weights[t] = float(lam)

    def primary(self, terms: Mapping[str, float]) -> float:
        """The primary terms alone: what the policy should lower."""
        return float(sum(w * float(terms[t]) for t, w in self.weights.items()
                         if t not in self.constraints))

    def excess(self, terms: Mapping[str, float],
               reference: Mapping[str, float]) -> dict[str, float]:
        """Per constraint, how far ``terms`` exceed the ``reference``'s
        (same episode), relative to the reference's level (floored, see
        :attr:`excess_floor`) and clipped to :attr:`excess_clip`: > 0
        violated, <= 0 met."""
        floor = self.excess_floor * float(reference['active_host_hours'])
        out = {}
        for t in self.constraints:
            ref = float(reference[t])
            denom = max(ref, 1.0 if t == 'rejected' else floor, 1e-9)
            out[t] = float(min(max((float(terms[t]) - ref) / denom,
                                   self.excess_clip[0]), self.excess_clip[1]))
        return out

    def describe(self) -> dict:
        return {**super().describe(), 'constraints': list(self.constraints),
                'multipliers': self.multipliers, 'dual_lr': self.dual_lr}


class Mix(Objective):
    """Options name objectives (their weights scaled and added) or terms."""

    name = 'mix'
    description = 'weighted mix of objectives and terms from options'

    def __init__(self, **options: float) -> None:
        if not options:
            raise ObjectiveError('objective mix needs options, e.g. '
                                 'packing=1,balance=5')
        weights: dict[str, float] = {}
        for key, factor in options.items():
            if key in TERMS:
                parts = {key: 1.0}
            elif key == self.name:
                raise ObjectiveError('objective mix cannot contain itself')
            else:
                parts = load_objective(key).weights
            for term, w in parts.items():
                weights[term] = weights.get(term, 0.0) + float(factor) * w
        self.weights = {t: w for t, w in weights.items() if w != 0.0}
        self.options = dict(options)


def objective_class(name: str) -> type[Objective]:
    """The plugin class registered as ``name``."""
    from stevedore import driver
    from stevedore import exception as st_exc
    try:
        # Instantiated by us, not by stevedore, which would log and swallow
        # a constructor's error about a bad option.
        return driver.DriverManager(namespace=NAMESPACE, name=name,
                                    invoke_on_load=False).driver
    except st_exc.NoMatches:
        raise ObjectiveError(
            f'unknown objective {name!r}; available: '
            + ', '.join(available_objectives())) from None


def load_objective(name: str, options: Mapping[str, float] | None = None
                   ) -> Objective:
    """The objective plugin ``name``, configured with ``options``."""
    return objective_class(name)(**dict(options or {}))


def available_objectives() -> list[str]:
    from stevedore import extension
    mgr = extension.ExtensionManager(namespace=NAMESPACE,
                                     invoke_on_load=False)
    return sorted(mgr.names())
