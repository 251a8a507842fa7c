"""Proximal policy optimisation of the host scorer on the simulator.

The policy is a softmax over the candidate hosts of the ensemble's mean score
(the weigher ranks by that same mean). Every member is also trained as a
policy on its own: the loss is the average over members of PPO's clipped
objective with that member's probabilities against the behaviour policy, so
each member is individually good and their disagreement stays meaningful for
the weigher's confidence gate. A separate permutation-invariant critic
estimates the value of a decision state from its candidate set.

Rollouts run the exported numpy inference of :mod:`nova_rl_weigher.policy`
(the code that runs in nova-scheduler), which is much faster than torch for
one small candidate set at a time; updates run in torch on padded batches.

The loop follows CleanRL's ``ppo.py``: collect ``rollout_decisions`` steps,
compute GAE advantages, then ``epochs`` passes of minibatch updates.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from nova_rl_weigher import features
from nova_rl_weigher import policy as np_policy

from nova_rl_trainer import env as env_mod
from nova_rl_trainer.policy_net import EnsembleScorer


@dataclasses.dataclass
class PPOConfig:
    lr: float = 3e-4
    critic_lr: float = 1e-3
    gamma: float = 0.995
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 3
    minibatch: int = 128
    rollout_decisions: int = 1024
    episode_decisions: int = 512
    entropy_coef: float = 0.003
    max_grad_norm: float = 0.5
    # Scale of the reward before advantage normalisation; only the critic
    # sees it, so it just keeps the value targets near unit size.
    reward_scale: float = 1.0


class ValueNet(nn.Module):
    """Value of a decision state from its candidate set (mean and max pool)."""

    def __init__(self, num_features: int = features.NUM_FEATURES,
                 hidden: int = 64) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(2 * hidden + 1, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``z``: normalised features ``(B, N, F)``; ``mask``: ``(B, N)``."""
        h = self.phi(z)
        m = mask[:, :, None].to(h.dtype)
        count = m.sum(dim=1).clamp_min(1.0)
        mean = (h * m).sum(dim=1) / count
        maxed = torch.where(m > 0, h, torch.full_like(h, -1e9)).max(dim=1)[0]
        return self.rho(torch.cat([mean, maxed, torch.log(count)], dim=1))[:, 0]


def numpy_policy(model: EnsembleScorer) -> np_policy.Policy:
    """The model as the weigher's numpy inference (no range checks)."""
    f = features.NUM_FEATURES
    return np_policy.Policy(
        params=model.numpy_params(), mean=model.mean.numpy().copy(),
        std=model.std.numpy().copy(), feature_min=np.full(f, -np.inf),
        feature_max=np.full(f, np.inf), range_tolerance=0.0, manifest={},
        version='training')


def log_softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max()
    return s - math.log(np.exp(s).sum())


@dataclasses.dataclass
class Rollout:
    xs: list[np.ndarray]          # candidate features per decision
    actions: np.ndarray           # index into the candidates
    logp: np.ndarray              # behaviour log-probability
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
        scores = pol.score(d.x).mean(axis=0).astype(np.float64)
        lp = log_softmax(scores)
        a = int(np.argmax(lp)) if greedy else int(
            rng.choice(len(lp), p=np.exp(lp)))
        _, reward, terminated, truncated, _ = env.step(int(d.candidates[a]))
        done = terminated or truncated or env.decision is None
        xs.append(d.x)
        actions.append(a)
        logps.append(lp[a])
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


def pad(xs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad candidate sets into ``(B, Nmax, F)`` with a mask."""
    nmax = max(x.shape[0] for x in xs)
    batch = np.zeros((len(xs), nmax, xs[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(xs), nmax), dtype=bool)
    for i, x in enumerate(xs):
        batch[i, :x.shape[0]] = x
        mask[i, :x.shape[0]] = True
    return torch.from_numpy(batch), torch.from_numpy(mask)


class PPO:
    """Holds the actor, the critic and their optimisers."""

    def __init__(self, model: EnsembleScorer, config: PPOConfig,
                 seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = model
        self.config = config
        self.critic = ValueNet()
        self.opt = torch.optim.Adam(model.parameters(), lr=config.lr,
                                    eps=1e-5)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(),
                                           lr=config.critic_lr, eps=1e-5)

    def values(self, xs: list[np.ndarray], chunk: int = 256) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(xs), chunk):
                x, mask = pad(xs[i:i + chunk])
                z = (x - self.model.mean) / self.model.std
                out.append(self.critic(z, mask).numpy())
        return np.concatenate(out).astype(np.float64)

    def advantages(self, ro: Rollout) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        v = self.values(ro.xs)
        boot_idx = [i for i, x in enumerate(ro.next_x) if x is not None]
        boot = np.zeros(len(ro.xs))
        if boot_idx:
            boot[boot_idx] = self.values([ro.next_x[i] for i in boot_idx])
        adv = np.zeros(len(ro.xs))
        last = 0.0
        for t in reversed(range(len(ro.xs))):
            if ro.dones[t]:
                next_v, last = boot[t], 0.0
            else:
                next_v = v[t + 1] if t + 1 < len(ro.xs) else v[t]
            delta = ro.rewards[t] + c.gamma * next_v - v[t]
            last = delta + c.gamma * c.gae_lambda * last
            adv[t] = last
        return adv, adv + v

    def update(self, ro: Rollout, rng: np.random.Generator) -> dict:
        c = self.config
        adv, returns = self.advantages(ro)
        n = len(ro.xs)
        stats = {'policy_loss': 0.0, 'value_loss': 0.0, 'entropy': 0.0,
                 'clip_frac': 0.0, 'approx_kl': 0.0}
        batches = 0
        for _ in range(c.epochs):
            order = rng.permutation(n)
            for start in range(0, n, c.minibatch):
                idx = order[start:start + c.minibatch]
                x, mask = pad([ro.xs[i] for i in idx])
                a = torch.as_tensor(ro.actions[idx])
                old_logp = torch.as_tensor(ro.logp[idx], dtype=torch.float32)
                mb_adv = torch.as_tensor(adv[idx], dtype=torch.float32)
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                scores = self.model(x, mask)                   # (K, B, N)
                scores = scores.masked_fill(~mask[None], -1e9)
                logp_all = torch.log_softmax(scores, dim=2)
                logp = logp_all.gather(
                    2, a[None, :, None].expand(scores.shape[0], -1, 1))[..., 0]
                ratio = torch.exp(logp - old_logp[None])       # (K, B)
                pg = -torch.min(ratio * mb_adv,
                                ratio.clamp(1 - c.clip, 1 + c.clip) * mb_adv)
                probs = logp_all.exp()
                entropy = -(probs * logp_all.masked_fill(~mask[None], 0.0)
                            ).sum(dim=2)
                loss = pg.mean() - c.entropy_coef * entropy.mean()
                self.opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.model.parameters(),
                                         c.max_grad_norm)
                self.opt.step()

                z = (x - self.model.mean) / self.model.std
                v = self.critic(z, mask)
                target = torch.as_tensor(returns[idx], dtype=torch.float32)
                v_loss = 0.5 * ((v - target) ** 2).mean()
                self.critic_opt.zero_grad()
                v_loss.backward()
                nn.utils.clip_grad_norm_(self.critic.parameters(),
                                         c.max_grad_norm)
                self.critic_opt.step()

                with torch.no_grad():
                    stats['policy_loss'] += float(pg.mean())
                    stats['value_loss'] += float(v_loss)
                    stats['entropy'] += float(entropy.mean())
                    stats['clip_frac'] += float(
                        ((ratio - 1).abs() > c.clip).float().mean())
                    stats['approx_kl'] += float(
                        ((ratio - 1) - torch.log(ratio)).mean())
                batches += 1
        return {k: v / max(batches, 1) for k, v in stats.items()}

    def state_dict(self) -> dict:
        return {'model': self.model.state_dict(),
                'critic': self.critic.state_dict(),
                'opt': self.opt.state_dict(),
                'critic_opt': self.critic_opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state['model'])
        self.critic.load_state_dict(state['critic'])
        self.opt.load_state_dict(state['opt'])
        self.critic_opt.load_state_dict(state['critic_opt'])


def now() -> float:
    return time.monotonic()
