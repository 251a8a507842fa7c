"""Calibrating the confidence gate on held-out decisions.

For a sample of decision states of a held-out workload, the simulator is
branched: one branch places the request where the policy would (the
ensemble's best host), the other where the cluster's configured Nova
weighers would (``nova-default``, or ``nova-pack`` for a policy trained
under packing Nova: the fallback the gated weigher abstains to), and both
continue with that same Nova fallback for ``horizon_s`` of simulated time
(default 24 h, :data:`DEFAULT_HORIZON_S`: long enough to see a daily peak,
where overload accrues). Same workload and same continuation, so the only
difference is that one placement. Between samples the episode itself is
walked by the Nova fallback, as the gated weigher's abstentions would.

Samples come in groups, one per held-out start instant (disjoint stretches
of the trace, so independent). For each confidence level the weigher can
see (the share of ensemble members agreeing), the policy run *gated* at that
level acts where its confidence reaches it and leaves Nova's choice
(difference 0) elsewhere; each group's mean gated difference is one paired
sample, and a level qualifies when at least 10 decisions act and the
one-sided 95% upper bound of the mean over at least 10 groups
(:mod:`~nova_rl_trainer.simulation.paired`) is at most 0: the gated
policy is not measurably worse than its fallback. The threshold is the
lowest qualifying level, recorded in the manifest with the whole table.
When no level qualifies, the policy must not act: the manifest says
``calibration.act: "never"`` with ``confidence_threshold: null``
(:func:`manifest_fields`), the weigher abstains (``never_act``) and
``publish`` refuses the policy.

The groups fan out (:class:`~nova_rl_trainer.simulation.fanout.Fanout`):
a worker rebuilds the held-out environment from a picklable recipe.

This single-decision measurement cannot see a benefit that only many
decisions together bring: one packing placement in a cluster Nova keeps
spreading saves no active host-hour, so for a constrained objective
(``pareto``) it shows only the risk and says never.
:mod:`~nova_rl_trainer.learning.window_calibration` measures such a policy
as it runs, gated over whole held-out windows against the fallback
(``--calibration-method``; ``auto`` picks it for constrained objectives).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from nova_rl_weigher import gate
from nova_rl_weigher.policy import Policy

from nova_rl_trainer.learning import branching
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.simulation.fanout import Fanout
from nova_rl_trainer.simulation import paired
from nova_rl_trainer.simulation import policies as policies_mod

#: How long both branches continue: a day, so a daily peak is inside.
DEFAULT_HORIZON_S = 24 * 3600.0


@dataclasses.dataclass
class Sample:
    confidence: float
    same_as_nova: bool
    delta: float          # policy branch cost - Nova branch cost
    group: str = ''       # the independent stretch of trace it comes from


@dataclasses.dataclass(frozen=True)
class GroupTask:
    """One start's samples, to compute anywhere: the held-out environment's
    recipe (:class:`~nova_rl_trainer.learning.rollouts.EnvRecipe`, or None
    to use the caller's own environment), the policy and the settings."""

    recipe: Any
    policy: Policy
    start_s: float
    quota: int
    horizon_s: float
    fallback: str
    stride: int
    group: str


def fallback_of(env: env_mod.PlacementEnv) -> str:
    """The Nova weighers the held-out cluster runs: what a gated policy
    abstains to, so what calibration continues and walks with."""
    return env.config.nova_weighers


def collect(env: env_mod.PlacementEnv, policy: Policy, samples: int,
            horizon_s: float, starts: Sequence[float],
            fallback: str | None = None, stride: int = 7, *,
            fan: Fanout | None = None, recipe=None, key: str = ''
            ) -> list[Sample]:
    """Branch ``samples`` decisions, an equal share from each of ``starts``.

    Each start's episode walks the held-out trace with the Nova
    ``fallback`` (default: the one ``env``'s cluster runs) and branches
    every ``stride``-th decision with more than one candidate; branches
    continue ``horizon_s`` simulated seconds with the fallback. Groups are
    ``key`` + the start's index. With ``fan`` (not inline) and a
    ``recipe`` of ``env`` the starts are computed by its workers."""
    fallback = fallback or fallback_of(env)
    starts = [float(t) for t in starts]
    per_start = -(-samples // max(len(starts), 1))
    tasks = []
    for i, start_s in enumerate(starts):
        quota = min(per_start, samples - per_start * i)
        if quota > 0:
            tasks.append(GroupTask(recipe, policy, start_s, quota,
                                   float(horizon_s), fallback, stride,
                                   f'{key}{i}'))
    if fan is None or fan.kind == 'inline' or recipe is None:
        groups = [collect_group(t, env) for t in tasks]
    else:
        groups = fan.map(collect_group, tasks)
    return [s for g in groups for s in g]


#: A worker's held-out environments, by recipe key (built once).
_WORKER_ENVS: dict[str, env_mod.PlacementEnv] = {}


def worker_env(recipe) -> env_mod.PlacementEnv:
    """The held-out environment of ``recipe`` in a worker, built on first
    use and kept (both calibration methods' tasks carry recipes)."""
    env = _WORKER_ENVS.get(recipe.key)
    if env is None:
        env = _WORKER_ENVS[recipe.key] = recipe.build()
    return env


def collect_group(task: GroupTask, env: env_mod.PlacementEnv | None = None
                  ) -> list[Sample]:
    """One start's samples (top-level: the fan-out's worker side)."""
    if env is None:
        env = worker_env(task.recipe)
    out: list[Sample] = []
    sim = env.warm_start(task.start_s)
    walker = policies_mod.make_policy(task.fallback)
    while len(out) < task.quota:
        vm = sim.pending()
        if vm < 0:
            break
        if np.count_nonzero(sim.fit) > 1:
            out.append(_sample(sim, vm, task))
        # The walker places this decision and the next stride - 1.
        sim.play(walker, max_decisions=task.stride)
    return out


def _sample(sim, vm: int, task: GroupTask) -> Sample:
    """The policy's choice at the pending decision against Nova's."""
    d = env_mod.Decision(vm, *sim.candidate_features(vm, sim.fit))
    scores = task.policy.score(d.x)
    a = gate.assess(task.policy, d.x, scores, 'fresh')
    mine = int(d.candidates[a.best])
    theirs = d.nova_action
    if mine == theirs:
        return Sample(a.confidence, True, 0.0, task.group)
    costs = branching.branch_costs(sim, vm, (mine, theirs), task.fallback,
                                   seconds=task.horizon_s)
    return Sample(a.confidence, False, float(costs[0] - costs[1]),
                  task.group)


def table(samples: list[Sample], tolerance: float = 1e-9) -> list[dict]:
    """For each confidence level: how often the policy acts, how its acting
    choices compare with Nova's, and the paired bound over the groups of
    the policy gated at that level (see the module)."""
    conf = np.array([s.confidence for s in samples])
    delta = np.array([s.delta for s in samples])
    group = np.array([s.group for s in samples])
    names = sorted(set(group.tolist()))
    rows = []
    for level in sorted(set(np.round(conf, 6)) | {1.0}):
        sel = conf >= level - 1e-9
        n = int(sel.sum())
        gated = np.where(sel, delta, 0.0)
        per_group = [float(gated[group == g].mean()) for g in names]
        bound = paired.upper_bound(per_group) if len(per_group) >= 2 \
            else None
        rows.append({
            'threshold': float(level),
            'acting_share': n / len(samples) if samples else 0.0,
            'at_least_as_good': float((delta[sel] <= tolerance).mean())
            if n else None,
            'mean_cost_delta': float(delta[sel].mean()) if n else None,
            'decisions': n,
            'groups': len(names),
            'group_mean_delta': bound.mean if bound else None,
            'upper_95': bound.upper if bound else None,
        })
    return rows


#: What :func:`choose_threshold` returns when no confidence level
#: qualifies: the policy must never act.
NEVER = None

#: Fewest acting decisions a threshold may rest on.
MIN_DECISIONS = 10


def choose_threshold(rows: list[dict]) -> float | None:
    """Lowest threshold at which at least :data:`MIN_DECISIONS` decisions
    act and the gated policy's one-sided 95% upper bound over at least
    :data:`~nova_rl_trainer.simulation.paired.MIN_GROUPS` groups is at most
    0 (no measurable loss against the fallback), else :data:`NEVER`: no
    level at which the policy is at least as good as its fallback, so it
    must not act (not threshold 1.0, which would still let it act where it
    was measured no better)."""
    for row in rows:
        if row['threshold'] <= 0.0:
            continue    # zero confidence means unusable, never "act"
        upper = row.get('upper_95')
        if upper is not None and row['decisions'] >= MIN_DECISIONS \
                and row.get('groups', 0) >= paired.MIN_GROUPS \
                and upper <= paired.EPS:
            return row['threshold']
    return NEVER


def manifest_fields(threshold: float | None) -> dict:
    """The manifest's ``calibration.act`` and ``confidence_threshold`` for
    what :func:`choose_threshold` returned."""
    if threshold is NEVER:
        return {'act': 'never', 'confidence_threshold': None}
    return {'act': 'gated', 'confidence_threshold': float(threshold)}
