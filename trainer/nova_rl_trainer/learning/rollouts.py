"""Experience for PPO: on-policy rollouts and branched (vine) states.

Both play the exported numpy inference of :mod:`nova_rl_weigher.policy`
(the code that runs in nova-scheduler), which is much faster than torch for
one small candidate set at a time; :mod:`ppo` updates the network from what
they collect.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import numpy as np

from nova_rl_trainer.learning import branching
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.learning.policy_net import EnsembleScorer, numpy_policy


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


def collect(env: env_mod.PlacementEnv, model: EnsembleScorer, n: int,
            rng: np.random.Generator, start_s: Callable[[], float],
            episode_decisions: int, reward_scale: float,
            greedy: bool = False) -> Rollout:
    """Play ``n`` decisions with the current policy (sampling its softmax)."""
    pol = numpy_policy(model)
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


def collect_vine(env: env_mod.PlacementEnv, model: EnsembleScorer,
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
    pol = numpy_policy(model)
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
