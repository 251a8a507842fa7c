"""Calibrating the confidence gate over whole held-out windows.

:mod:`calibration` branches single decisions (the policy's choice against
Nova's, both continued with Nova's weighers). That cannot see a benefit
that needs many decisions together: a packing policy in a cluster that
Nova keeps spreading (the ``pareto`` objective's regime) saves no active
host-hours with one placement, since every host stays active, so the
single-decision delta shows only the added risk and calibration says never,
although gated over a whole day the policy empties hosts. Such a policy
has to be measured the way it runs in Nova: gated, acting on every decision
it is confident on, its abstentions going to Nova's weighers.

Here each *group* is a held-out start of a member's trace. From the
cluster state the member's warm-up policy built there, a clone is played
for ``horizon_s`` of simulated time (a day by default,
:data:`calibration.DEFAULT_HORIZON_S`, so a daily peak is inside) by the
fallback (the cluster's configured Nova weighers,
:func:`calibration.fallback_of`) and one by the policy gated at each
confidence level the ensemble can produce (``k / K`` agreeing members),
exactly as the weigher gates it in Nova
(:class:`~nova_rl_trainer.simulation.policies.ArtifactPolicy` calls
:func:`nova_rl_weigher.gate.decide`). Same workload and starting state, so
each group gives one paired difference per accrued term.

A level qualifies when, for every term the objective checks (its
constraints and primary terms for ``pareto``; otherwise every term it
weighs), the one-sided 95% upper bound of the per-group difference, gated
minus fallback as a share of the fallback's mean (scaled as ``publish``
scales it, :func:`paired.relative`), is at most 0 (or, for overload and
hot host-hours, the bound of the absolute difference is at most a floor of
one host for one usage sample per window, :func:`objectives.floors`:
Nova's weighers
overload a cluster for seconds in a day, and a relative bound on seconds
is noise), and the policy acts on
at least :data:`calibration.MIN_DECISIONS` decisions in all, over at least
:data:`paired.MIN_GROUPS` groups; the threshold is the lowest qualifying
level (:func:`calibration.choose_threshold` on the rows, whose ``upper_95``
is the worst checked term's), else :data:`calibration.NEVER`.

Every member gives ``ceil(MIN_GROUPS / members)`` of its calibration
starts, spread over them, so even one member yields enough groups; a
family of at least :data:`paired.MIN_GROUPS` members gives one each, its
whole held-out part when that is shorter than ``horizon_s`` (as the
family's are: 20% of a 1-3 day window), and those groups are independent.
(A member's windows overlap when it gives several and its held-out part is
shorter than ``horizon_s``; those groups are then not fully independent.)
The mean simulated span of the groups is recorded (``hours``). Each group
computes all levels in one task, fanned out like :mod:`calibration`'s: its
cost is ``K + 1`` runs of ``horizon_s``, ``K`` of them scoring every
decision, about 100 s of CPU on a 277-host member of the ``azure-v1-dev``
family (6,210 decisions a run, ``K = 5``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from nova_rl_weigher.policy import Policy

from nova_rl_trainer.learning import calibration
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.learning import rollouts
from nova_rl_trainer.simulation.fanout import Fanout
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import paired
from nova_rl_trainer.simulation import policies as policies_mod

METHOD = 'windows'
#: ``--calibration-method`` choices: ``auto`` is this method for a
#: constrained objective, else ``branch`` (:mod:`calibration`).
METHODS = ('auto', 'branch', METHOD)


class HeldOut(Protocol):
    """What a group needs of a member (``members.Member`` has it)."""

    val_env: env_mod.PlacementEnv
    calibration_starts: Sequence[float]


def resolve_method(name: str, constrained: bool) -> str:
    """``'branch'`` or ``'windows'`` for a ``calibration_method`` (one of
    :data:`METHODS`; a ValueError otherwise)."""
    if name not in METHODS:
        raise ValueError(f'calibration method {name!r}: one of '
                         + ', '.join(METHODS))
    if name == 'auto':
        return METHOD if constrained else 'branch'
    return name


def starts_per_member(members: int) -> int:
    """Starts each member gives, so that the members give at least
    :data:`paired.MIN_GROUPS` groups together: one each from
    :data:`paired.MIN_GROUPS` members on (distinct clusters and workloads,
    so independent groups), more from fewer members (whose windows may
    then overlap)."""
    return math.ceil(paired.MIN_GROUPS / max(members, 1))


def spread(starts: Sequence[float], n: int) -> list[float]:
    """``n`` of ``starts`` (all of them if fewer), evenly spaced over
    them: held-out stretches as far apart as the starts allow."""
    if n >= len(starts):
        return [float(t) for t in starts]
    picks = np.linspace(0, len(starts) - 1, num=n).round().astype(int)
    return [float(starts[i]) for i in picks]


def levels(policy: Policy) -> tuple[float, ...]:
    """The confidence levels the ensemble can produce: ``k / K`` agreeing
    members, ``k >= 1`` (0 means unusable, never "act")."""
    k = policy.ensemble_size
    return tuple(i / k for i in range(1, k + 1))


def checked_terms(objective: objectives_mod.Objective) -> tuple[str, ...]:
    """The terms a gated policy must not worsen: a constrained objective's
    constraints and primary terms (whatever the multipliers training left
    them, a constraint priced 0 is still a constraint); for any other, the
    terms it weighs (as ``publish`` checks by default)."""
    constraints = tuple(getattr(objective, 'constraints', ()))
    return tuple(t for t in objectives_mod.TERMS
                 if t in constraints or objective.weights.get(t))


@dataclasses.dataclass(frozen=True)
class WindowTask:
    """One group to compute anywhere: the member's held-out environment
    recipe (None: the caller's own environment), the policy, the start,
    the horizon, the fallback's name and the levels to gate at."""

    recipe: Any
    policy: Policy
    start_s: float
    horizon_s: float
    fallback: str
    levels: tuple[float, ...]
    group: str


@dataclasses.dataclass
class Run:
    """What one run of a group accrued: every term of
    :data:`objectives.TERMS`, requests placed and, gated, how many the
    policy acted on."""

    terms: dict[str, float]
    decisions: int
    acted: int = 0

    @property
    def acting_share(self) -> float:
        return self.acted / self.decisions if self.decisions else 0.0


@dataclasses.dataclass
class Group:
    """The fallback's run and the gated policy's per level, from one
    start."""

    name: str
    start_s: float
    fallback: Run
    gated: dict[float, Run]
    hours: float = 0.0      # simulated time the fallback's run covered


def run_group(task: WindowTask, env: env_mod.PlacementEnv | None = None
              ) -> Group:
    """One group (top-level: the fan-out's worker side)."""
    if env is None:
        env = calibration.worker_env(task.recipe)
    sim = env.warm_start(task.start_s)
    before = sim.terms()
    until_s = sim.now + task.horizon_s
    ends: list[float] = []      # where each run stopped

    def play(policy) -> Run:
        branch = sim.clone()
        placed = branch.play(policy, until_s=until_s)
        after = branch.terms()
        ends.append(branch.now)
        return Run({t: float(after[t] - before[t])
                    for t in objectives_mod.TERMS}, placed)

    fallback = play(policies_mod.make_policy(task.fallback))
    hours = (ends[0] - sim.now) / 3600.0
    gated = {}
    for level in task.levels:
        policy = policies_mod.ArtifactPolicy(
            task.policy, name=f'calibration@{level:g}', threshold=level)
        run = play(policy)
        run.acted = policy.applied
        gated[level] = run
    return Group(task.group, task.start_s, fallback, gated, hours)


def collect(members: Sequence[HeldOut], policy: Policy,
            horizon_s: float = calibration.DEFAULT_HORIZON_S,
            fallback: str | None = None, *, fan: Fanout | None = None,
            key: str = '') -> list[Group]:
    """The groups of every member: :func:`starts_per_member` of its
    calibration starts, :func:`spread` over them. ``fallback``: default
    the first member's configured Nova weighers. With ``fan`` (not
    inline), the groups are computed by its workers, which build each
    member's held-out environment once from a recipe keyed ``key`` + the
    member's index; groups are named ``'<member>-<start>'``."""
    if not members:
        return []
    fallback = fallback or calibration.fallback_of(members[0].val_env)
    inline = fan is None or fan.kind == 'inline'
    n = starts_per_member(len(members))
    tasks, envs = [], []
    for k, m in enumerate(members):
        recipe = None if inline else rollouts.EnvRecipe.of(
            f'{key}{k}', m.val_env, m.calibration_starts)
        for i, start_s in enumerate(spread(m.calibration_starts, n)):
            tasks.append(WindowTask(recipe, policy, start_s,
                                    float(horizon_s), fallback,
                                    levels(policy), f'{k}-{i}'))
            envs.append(m.val_env)
    if inline:
        return [run_group(t, e) for t, e in zip(tasks, envs)]
    return fan.map(run_group, tasks)


def table(groups: Sequence[Group], terms: Sequence[str],
          floors: Mapping[str, float] | None = None) -> list[dict]:
    """Per level, lowest first: the acting share, the decisions acted on
    (``decisions``) of those placed (``requests``), the groups and, per
    checked term, the paired relative difference's mean and one-sided 95%
    upper bound (``mean_diff``, ``upper_95``, None under 2 groups) with
    the absolute means of the gated policy and the fallback; for a term
    with a floor (``floors``, in its units per group) also the absolute
    difference's bound and the floor (``upper_95_abs``, ``floor``). Each
    term's ``judged_95`` is its ``upper_95``, but at most 0 when the term
    is within its floor; the row's ``upper_95`` and ``worst_term``: the
    checked term with the highest ``judged_95`` (what
    :func:`calibration.choose_threshold` reads)."""
    if not groups:
        return []
    floors = floors or {}
    reference = {t: [g.fallback.terms[t] for g in groups] for t in terms}
    rows = []
    for level in sorted(groups[0].gated):
        runs = [g.gated[level] for g in groups]
        per_term: dict[str, dict] = {}
        for t in terms:
            mine = [r.terms[t] for r in runs]
            entry: dict[str, Any] = {'mean_diff': None, 'upper_95': None,
                                     'judged_95': None}
            if len(groups) >= 2:
                bound = paired.compare(mine, reference[t],
                                       floors.get(t, 0.0))
                entry = bound.as_dict()
                del entry['n']
                entry['judged_95'] = min(bound.upper, 0.0) \
                    if bound.within_floor() else bound.upper
            entry.update(gated=float(np.mean(mine)),
                         fallback=float(np.mean(reference[t])))
            per_term[t] = entry
        bounded = [t for t in terms if per_term[t]['judged_95'] is not None]
        worst = max(bounded, key=lambda t: per_term[t]['judged_95']) \
            if bounded else None
        requests = sum(r.decisions for r in runs)
        acted = sum(r.acted for r in runs)
        rows.append({
            'threshold': float(level),
            'acting_share': acted / requests if requests else 0.0,
            'decisions': acted,
            'requests': requests,
            'groups': len(groups),
            'upper_95': per_term[worst]['judged_95'] if worst else None,
            'worst_term': worst,
            'terms': per_term,
        })
    return rows


def method_text(fallback: str, groups: int, horizon_s: float,
                hours: float | None = None,
                floor_host_samples: float = 0.0) -> str:
    span = f'{horizon_s / 3600:g} h' if hours is None else \
        f'up to {horizon_s / 3600:g} h (mean {hours:.1f} h)'
    floor = '' if not floor_host_samples else (
        f' or, for {" and ".join(objectives_mod.SAMPLED_TERMS)}, its '
        f'absolute bound <= {floor_host_samples:g} host x usage sample '
        'per window')
    return (f'windows: the policy gated at each level vs {fallback} over '
            f'{groups} held-out starts x {span}, every checked term\'s '
            f'one-sided 95% bound <= 0{floor}')


def calibrate(members: Sequence[HeldOut], policy: Policy,
              objective: objectives_mod.Objective,
              horizon_s: float = calibration.DEFAULT_HORIZON_S,
              fallback: str | None = None, *, fan: Fanout | None = None,
              key: str = '',
              floor_host_samples: float =
              objectives_mod.DEFAULT_FLOOR_HOST_SAMPLES) -> dict:
    """The manifest's ``calibration`` section by this method: ``act`` and
    ``confidence_threshold`` (:func:`calibration.manifest_fields`), the
    :func:`table`, the checked ``terms``, ``groups``, ``horizon_s``,
    ``continuation`` (the fallback), ``floor_host_samples`` (the sampled
    terms' floor, :func:`objectives.floors` at the members' finest usage
    interval) and ``method``."""
    fallback = fallback or calibration.fallback_of(members[0].val_env)
    groups = collect(members, policy, horizon_s, fallback, fan=fan, key=key)
    terms = checked_terms(objective)
    rows = table(groups, terms, objectives_mod.floors(
        terms, (m.val_env.config.usage_interval_s for m in members),
        floor_host_samples))
    # Looked up at call time: the one rule for both methods.
    threshold = calibration.choose_threshold(rows)
    hours = float(np.mean([g.hours for g in groups])) if groups else 0.0
    return {**calibration.manifest_fields(threshold), 'table': rows,
            'terms': list(terms), 'groups': len(groups),
            'horizon_s': float(horizon_s), 'hours': hours,
            'continuation': fallback,
            'floor_host_samples': float(floor_host_samples),
            'method': method_text(fallback, len(groups), horizon_s, hours,
                                  floor_host_samples)}
