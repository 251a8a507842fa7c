"""Calibrating the confidence gate on held-out decisions.

For a sample of decision states of a held-out workload, the simulator is
branched: one branch places the request where the policy would (the
ensemble's best host), the other where Nova's default weighers would, and
both continue for ``horizon`` more decisions with the heuristic the policy
was trained to improve on (same workload and same continuation, so the only
difference is that one placement). The policy's choice is "at least as
good" when its branch accrued no more objective cost.

For each confidence level the weigher can see (the share of ensemble members
agreeing), this gives how often a choice made at or above that confidence is
at least as good as Nova's, and how often the policy would act. The default
threshold is the lowest level whose decisions are at least as good as Nova's
in ``target`` of cases (and at least as good on average), recorded in the
manifest with the whole table. When no level qualifies, the policy must not
act: the manifest says ``calibration.act: "never"`` with
``confidence_threshold: null`` (:func:`manifest_fields`), the weigher
abstains (``never_act``) and ``publish`` refuses the policy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nova_rl_weigher import gate
from nova_rl_weigher.policy import Policy

from nova_rl_trainer.learning import branching
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.simulation import policies as policies_mod


@dataclasses.dataclass
class Sample:
    confidence: float
    same_as_nova: bool
    delta: float          # policy branch cost - Nova branch cost


def collect(env: env_mod.PlacementEnv, policy: Policy, samples: int,
            horizon: int, starts, continuation: str, stride: int = 7
            ) -> list[Sample]:
    """Branch ``samples`` decisions along episodes from ``starts``.

    Each episode walks the held-out trace with the ``continuation``
    heuristic (the regime the policy is trained to improve on) and branches
    every ``stride``-th decision with more than one candidate; an equal
    share of the samples comes from each start, so they spread over the
    held-out range.
    """
    out: list[Sample] = []
    starts = list(starts)
    per_episode = -(-samples // max(len(starts), 1))
    for start_s in starts:
        quota = min(samples, len(out) + per_episode)
        sim = env.warm_start(float(start_s))
        walker = policies_mod.make_policy(continuation)
        while len(out) < quota:
            vm = sim.pending()
            if vm < 0:
                break
            if np.count_nonzero(sim.fit) > 1:
                out.append(_sample(sim, vm, policy, horizon, continuation))
            # The walker places this decision and the next stride - 1.
            sim.play(walker, max_decisions=stride)
    return out


def _sample(sim, vm: int, policy: Policy, horizon: int, continuation: str
            ) -> Sample:
    """The policy's choice at the pending decision against Nova's."""
    d = env_mod.Decision(vm, *sim.candidate_features(vm, sim.fit))
    scores = policy.score(d.x)
    a = gate.assess(policy, d.x, scores, 'fresh')
    mine = int(d.candidates[a.best])
    theirs = d.nova_action
    if mine == theirs:
        return Sample(a.confidence, True, 0.0)
    costs = branching.branch_costs(sim, vm, (mine, theirs), continuation,
                                   horizon)
    return Sample(a.confidence, False, float(costs[0] - costs[1]))


def table(samples: list[Sample], tolerance: float = 1e-9) -> list[dict]:
    conf = np.array([s.confidence for s in samples])
    delta = np.array([s.delta for s in samples])
    rows = []
    for level in sorted(set(np.round(conf, 6)) | {1.0}):
        sel = conf >= level - 1e-9
        n = int(sel.sum())
        rows.append({
            'threshold': float(level),
            'acting_share': n / len(samples) if samples else 0.0,
            'at_least_as_good': float((delta[sel] <= tolerance).mean())
            if n else None,
            'mean_cost_delta': float(delta[sel].mean()) if n else None,
            'decisions': n,
        })
    return rows


#: What :func:`choose_threshold` returns when no confidence level
#: qualifies: the policy must never act.
NEVER = None


def choose_threshold(rows: list[dict], target: float = 0.9
                     ) -> float | None:
    """Lowest threshold meeting ``target`` (at least 10 decisions, at least
    as good as Nova's in ``target`` of them and on average), else
    :data:`NEVER`: no level at which the policy is at least as good as its
    fallback, so it must not act (not threshold 1.0, which would still let
    it act where it was measured no better)."""
    for row in rows:
        if row['threshold'] <= 0.0:
            continue    # zero confidence means unusable, never "act"
        good = row['at_least_as_good']
        if good is not None and row['decisions'] >= 10 and good >= target \
                and row['mean_cost_delta'] <= 0.0:
            return row['threshold']
    return NEVER


def manifest_fields(threshold: float | None) -> dict:
    """The manifest's ``calibration.act`` and ``confidence_threshold`` for
    what :func:`choose_threshold` returned."""
    if threshold is NEVER:
        return {'act': 'never', 'confidence_threshold': None}
    return {'act': 'gated', 'confidence_threshold': float(threshold)}
