"""Experience for PPO: on-policy rollouts and branched (vine) states.

Both play the exported numpy inference of :mod:`nova_rl_weigher.policy`
(the code that runs in nova-scheduler; ``policy_net.numpy_policy`` of the
model), which is much faster than torch for one small candidate set at a
time; :mod:`ppo` updates the network from what they collect. This module
does not import torch, so worker processes that collect need none.

**Shards** (:class:`Shard`, :func:`collect_shard`): an iteration's vine
batch may be split into pieces, each from one member of a family of
clusters with its own RNG seed, collected in this process or fanned out
(:mod:`nova_rl_trainer.simulation.fanout`) to workers that build the
member's environment from its :class:`EnvRecipe` once and keep it. A shard
gives the same states whoever collects it, so the batch does not depend on
the number of workers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import numpy as np

from nova_rl_weigher import policy as np_policy

from nova_rl_trainer.learning import branching
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation.traces import Trace


def log_softmax(s: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis (candidates)."""
    s = s - s.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


@dataclasses.dataclass
class Rollout:
    xs: list[np.ndarray]          # candidate features per decision
    actions: np.ndarray           # index into the candidates
    logp: np.ndarray              # (T, K) each member's log-probability
    rewards: np.ndarray
    dones: np.ndarray             # episode ended after this step
    next_x: list[np.ndarray | None]   # state after a truncation, to bootstrap
    episode_costs: list[float]


def collect(env: env_mod.PlacementEnv, pol: np_policy.Policy, n: int,
            rng: np.random.Generator, start_s: Callable[[], float],
            episode_decisions: int, reward_scale: float,
            greedy: bool = False) -> Rollout:
    """Play ``n`` decisions with the current policy ``pol`` (sampling its
    softmax)."""
    xs, actions, logps, rewards, dones, next_x, costs = \
        [], [], [], [], [], [], []
    done = True
    episode_cost = 0.0
    while len(xs) < n:
        if done:
            env.reset(options={'start_s': start_s(),
                               'max_decisions': episode_decisions})
            episode_cost = 0.0
            if env.decision is None:
                continue
        d = env.decision
        member_scores = pol.score(d.x).astype(np.float64)
        lp = log_softmax(member_scores.mean(axis=0))
        a = int(np.argmax(lp)) if greedy else int(
            rng.choice(len(lp), p=np.exp(lp)))
        _, reward, terminated, truncated, _ = env.step(int(d.candidates[a]))
        done = terminated or truncated or env.decision is None
        xs.append(d.x)
        actions.append(a)
        logps.append(log_softmax(member_scores)[:, a])
        rewards.append(reward * reward_scale)
        episode_cost -= reward
        dones.append(done)
        # Truncated episodes are bootstrapped from the critic's value of
        # the state the episode stopped in.
        next_x.append(env.sim.candidate_features(env.sim.current_vm,
                                                 env.sim.fit)[1]
                      if truncated and env.sim.current_vm >= 0 else None)
        if done:
            costs.append(episode_cost)
    return Rollout(xs, np.array(actions), np.array(logps),
                   np.array(rewards, dtype=np.float64), np.array(dones),
                   next_x, costs)


@dataclasses.dataclass
class VineBatch:
    """Branched decision states and the advantages measured at each."""
    xs: list[np.ndarray]          # candidate features per branched state
    actions: list[np.ndarray]     # candidate indices tried at that state
    logp: list[np.ndarray]        # (K, tried) each member's log-prob
    advantages: list[np.ndarray]  # minus (branch cost - mean over branches)
    trunk_xs: list[np.ndarray]    # every trunk state, for feature ranges
    episode_costs: list[float]


class VineSettings(Protocol):
    """What :func:`collect_vine` reads (``ppo.PPOConfig`` has it)."""

    vine_states: int
    vine_actions: int
    vine_horizon: int
    vine_stride: int
    episode_decisions: int


def collect_vine(env: env_mod.PlacementEnv, pol: np_policy.Policy,
                 config: VineSettings, rng: np.random.Generator,
                 start_s: Callable[[], float], continuation: str
                 ) -> VineBatch:
    """Advantages by branching the simulation (TRPO's "vine" estimator).

    A trunk episode samples the current policy. Every ``vine_stride``
    decisions, the state is branched: the simulation is cloned once per
    tried action (the sampled one, the policy's best, Nova's default's and
    random others), the action is applied and the clone runs
    ``vine_horizon`` more decisions with the ``continuation`` heuristic.
    Every branch replays the same workload, so the difference between two
    branches' costs is the effect of that one placement alone (common random
    numbers): a low-variance advantage, where on-policy rewards drown one
    placement's effect in everything else that happens on the cluster.
    """
    xs, actions, logps, advs, trunk, costs = [], [], [], [], [], []
    done, steps, episode_cost = True, 0, 0.0
    while len(xs) < config.vine_states:
        if done:
            env.reset(options={'start_s': start_s(),
                               'max_decisions': config.episode_decisions})
            steps, episode_cost = 0, 0.0
            if env.decision is None:
                continue
        d = env.decision
        trunk.append(d.x)
        member_scores = pol.score(d.x).astype(np.float64)
        lp = log_softmax(member_scores.mean(axis=0))
        a = int(rng.choice(len(lp), p=np.exp(lp)))
        n = d.candidates.shape[0]
        if steps % config.vine_stride == 0 and n > 1:
            nova = int(np.argmax(d.nova_weight))
            tried = list(dict.fromkeys([a, int(np.argmax(lp)), nova]))
            others = [i for i in rng.permutation(n) if i not in tried]
            tried = np.array((tried + others)[:config.vine_actions])
            branch_cost = branching.branch_costs(
                env.sim, d.vm, d.candidates[tried], continuation,
                config.vine_horizon)
            xs.append(d.x)
            actions.append(tried)
            logps.append(log_softmax(member_scores)[:, tried])
            advs.append(-(branch_cost - branch_cost.mean()))
        _, reward, terminated, truncated, _ = env.step(int(d.candidates[a]))
        steps += 1
        episode_cost -= reward
        done = terminated or truncated or env.decision is None
        if done:
            costs.append(episode_cost)
    return VineBatch(xs, actions, logps, advs, trunk, costs)


# -- shards: pieces of a vine batch, here or in worker processes --------------

@dataclasses.dataclass(frozen=True)
class EnvRecipe:
    """What builds a member's training environment in another process
    (picklable): the same trace, cluster, measurement, objective, workload
    seed and warm-up policy, primed at the same start instants, gives the
    same states as the trainer's own environment."""

    key: str
    trace: Trace
    cluster: ClusterSpec
    config: simulator.SimConfig
    objective: objectives_mod.Objective
    seed: int
    warmup_policy: str
    starts: tuple[float, ...]

    @classmethod
    def of(cls, key: str, env: env_mod.PlacementEnv, starts) -> 'EnvRecipe':
        return cls(key, env.workload(env.workload_seed).trace, env.cluster,
                   env.config, env.objective, env.workload_seed,
                   env.warmup_policy, tuple(float(t) for t in starts))

    def build(self) -> env_mod.PlacementEnv:
        env = env_mod.PlacementEnv(
            trace=self.trace, cluster=self.cluster, objective=self.objective,
            config=self.config, seed=self.seed,
            warmup_policy=self.warmup_policy)
        env.prime_starts(self.starts)
        return env


@dataclasses.dataclass(frozen=True)
class Shard:
    """``config.vine_states`` branched states from one member: its recipe,
    the policy to sample, the objective's Lagrange multipliers (None: not
    constrained), the branches' continuation and an RNG seed."""

    recipe: EnvRecipe
    policy: np_policy.Policy
    multipliers: dict[str, float] | None
    config: VineSettings
    continuation: str
    seed: int


def run_shard(env: env_mod.PlacementEnv, shard: Shard) -> VineBatch:
    """Collect ``shard`` on ``env`` (the member's environment)."""
    if shard.multipliers is not None:
        env.objective.set_multipliers(shard.multipliers)
    rng = np.random.default_rng(shard.seed)
    starts = shard.recipe.starts

    def start_s() -> float:
        return starts[int(rng.integers(len(starts)))]
    return collect_vine(env, shard.policy, shard.config, rng, start_s,
                        shard.continuation)


#: A worker's environments, by recipe key: built once, kept for the
#: worker's life (the fan-out keeps its workers for the whole run).
_WORKER_ENVS: dict[str, env_mod.PlacementEnv] = {}


def collect_shard(shard: Shard) -> VineBatch:
    """Worker side of a fanned-out shard (top-level, so it pickles)."""
    env = _WORKER_ENVS.get(shard.recipe.key)
    if env is None:
        env = _WORKER_ENVS[shard.recipe.key] = shard.recipe.build()
    return run_shard(env, shard)


def merge(batches: list[VineBatch]) -> VineBatch:
    """One batch of several shards', in order."""
    return VineBatch(*(sum((getattr(b, f.name) for b in batches), [])
                       for f in dataclasses.fields(VineBatch)))
