"""What training knows of each cluster it trains on, and how a policy is
judged on one.

A family (``--family``) trains on several clusters and workloads at once,
and a single setup is a family of one: so that the trainer treats both
alike, everything it keeps per cluster (its environments, the split of its
trace into training and held-out time, the instants episodes start from)
is one :class:`Member`. :func:`held_out` is the one way a policy is played
on a member's held-out episodes (validation, the baselines, the pareto
warm start's tuning), so the costs and terms they compare come from the
same episodes played the same way.
"""

from __future__ import annotations

import numpy as np

from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.learning import rollouts
from nova_rl_trainer.simulation import objectives as objectives_mod


def held_out(val_env: env_mod.PlacementEnv, starts, limit: int | None,
             make_policy) -> tuple[float, dict[str, float]]:
    """Objective cost and terms accrued by ``make_policy()`` over the
    episodes of ``val_env`` from ``starts``, each at most ``limit``
    decisions (None: to the end of the trace).

    The environment provides the warm start; the episode itself runs on
    the simulation, so the policy builds each feature matrix once (the
    environment's observation is not needed). An episode's cost runs to
    its next decision, as a truncated episode of the environment.
    """
    cost = 0.0
    terms = dict.fromkeys(objectives_mod.TERMS, 0.0)
    for start in starts:
        sim = val_env.warm_start(start)
        cost0, terms0 = sim.cost(), sim.terms()
        sim.play(make_policy(), max_decisions=limit)
        sim.pending()
        cost += sim.cost() - cost0
        for k, v in sim.terms().items():
            terms[k] += v - terms0[k]
    return cost, terms


class Member:
    """One cluster and workload trained on (a family member, or the one
    setup): its environments and where its episodes start.

    Its trace is split in time: training episodes start in the first
    ``train_fraction``, validation and calibration use the rest.
    """

    def __init__(self, make_env, train_fraction: float) -> None:
        self.make_env = make_env
        self.env: env_mod.PlacementEnv = make_env()
        self.val_env: env_mod.PlacementEnv = make_env()
        horizon = self.env.horizon_s
        self.train_range = (0.0, train_fraction * horizon)
        self.held_out = (train_fraction * horizon, horizon)
        # Episodes start at one of a fixed grid of instants: the
        # environment caches the cluster state reached at each, instead of
        # replaying the trace up to a new instant for every episode.
        self.start_grid = np.linspace(*self.train_range, num=24,
                                      endpoint=False)
        # Validation plays the whole held-out part, so placements are
        # judged over (most of) the lives of the VMs they place.
        self.val_starts = [self.held_out[0]]
        # Calibration branches decisions along episodes from these.
        self.calibration_starts = np.linspace(*self.held_out, num=10,
                                              endpoint=False)
        #: How a worker process builds this member's environment.
        self.recipe: rollouts.EnvRecipe | None = None

    def prime(self, warmup_policy: str) -> None:
        """Warm-start every start instant, with episodes starting from the
        cluster ``warmup_policy`` has built: the regime the policy acts in
        (a packing policy in a cluster spread by Nova's default would learn
        about the wrong states)."""
        for e in (self.env, self.val_env):
            e.warmup_policy = warmup_policy
        self.env.prime_starts([*self.start_grid, *self.val_starts,
                               *self.calibration_starts])
        self.val_env.share_starts(self.env)

    def fallback_env(self, fallback: str, starts) -> env_mod.PlacementEnv:
        """A new environment of this member whose ``starts`` hold the
        cluster ``fallback`` built there, instead of the warm-up
        policy's."""
        env = self.make_env()
        env.warmup_policy = fallback
        env.prime_starts([float(t) for t in starts])
        return env


class FallbackHeldOut:
    """A member's calibration starts, from the cluster its Nova fallback
    built there rather than its warm-up policy (window calibration's
    :class:`~nova_rl_trainer.learning.window_calibration.HeldOut`).

    The weigher starts on a cluster Nova's weighers built, and gated it
    leaves most decisions to them: a policy trained from another
    heuristic's clusters (load-aware for ``balance``) is judged where it
    will act. Measured: a ``balance`` policy whose calibration from
    load-aware's clusters said never qualified at 0.2 from Nova's (Nova's
    clusters run hotter, where spreading the load pays)."""

    def __init__(self, member: Member, fallback: str) -> None:
        if member.val_env.warmup_policy == fallback:
            self.val_env = member.val_env
        else:
            self.val_env = member.fallback_env(fallback,
                                               member.calibration_starts)
        self.calibration_starts = member.calibration_starts
