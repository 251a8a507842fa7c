"""A constrained objective's bookkeeping: what a validation says of a
policy against the reference, which policy is kept, and where the
multipliers live.

For ``pareto`` the Lagrangian cost is no yardstick (its multipliers move
during training), so a validation is judged on the primary terms and on
the constraints' excess over the reference played on the same episodes
(:func:`score`), and the policy kept is the best feasible one, else the
least infeasible (:func:`rank`). The multipliers are the objective's
constraint weights, held by every environment's objective: a dual-ascent
step (:func:`ppo.dual_ascent`) or a resumed checkpoint changes them in all
of them at once (:func:`set_multipliers`), so every member prices the
constraints alike. The same yardstick picks the warm start that already
meets the constraints (:func:`tune_load_aware`), so RL starts from a
feasible policy where a heuristic gives one. :mod:`train` decides when.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from nova_rl_trainer.learning.members import Member
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import policies as policies_mod

#: Targets of load-aware tried for the pareto warm start (``--warm-start
#: auto``): the one with the least primary cost among those meeting the
#: constraints on the validation episodes is imitated. Higher targets pack
#: more and run hotter.
PARETO_TARGETS = (0.6, 0.7, 0.8)


def set_multipliers(members: Sequence[Member],
                    multipliers: dict[str, float]) -> None:
    """The Lagrange multipliers, in every environment's objective (a
    cached warm start shares its environment's objective)."""
    for m in members:
        for e in (m.env, m.val_env):
            e.objective.set_multipliers(multipliers)


def score(objective: objectives_mod.Pareto, terms: list[dict],
          reference_terms: list[dict]) -> dict:
    """A validation of a constrained objective from the terms of each
    member's episodes (``terms``, paired with ``reference_terms``, the
    reference's on the same episodes): ``validation_cost``, the primary
    terms summed over the members; ``excess``, per constraint the mean over
    members of the relative excess over the reference; and ``feasible``.
    """
    excess = {t: float(np.mean([objective.excess(mine, ref)[t] for mine, ref
                                in zip(terms, reference_terms)]))
              for t in objective.constraints}
    return {'validation_cost': float(sum(objective.primary(t)
                                         for t in terms)),
            'excess': excess,
            'feasible': all(e <= 0 for e in excess.values())}


def rank(entry: dict) -> tuple[int, float]:
    """Lower is better: feasible first by cost, then least excess."""
    if entry.get('feasible', True):
        return 0, entry['validation_cost']
    return 1, sum(max(e, 0.0) for e in entry['excess'].values())


def tune_load_aware(validate: Callable[[Callable], dict]
                    ) -> tuple[str, list[dict]]:
    """The pareto warm start: load-aware at the target of
    :data:`PARETO_TARGETS` with the least primary cost among those that
    meet the constraints on the validation episodes (else the one with the
    least excess); and every target tried, with its validation.

    ``validate(make_policy)`` plays the validation episodes (the trainer's
    ``validate``).
    """
    tried = []
    for target in PARETO_TARGETS:
        spec = f'load-aware:target={target:g}'
        result = validate(lambda: policies_mod.make_policy(spec))
        tried.append({'warm_start': spec, **result})
    best = min(tried, key=rank)
    return best['warm_start'], tried
