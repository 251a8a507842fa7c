"""Proximal policy optimisation of the host scorer on the simulator.

The policy is a softmax over the candidate hosts of the ensemble's mean score
(the weigher ranks by that same mean). Every member is also trained as a
policy on its own: the loss is the average over members of PPO's clipped
objective, each member's ratio taken against its own probabilities at
collection time (so every ratio starts at 1; actions are sampled from the
ensemble mean's softmax), so each member is individually good and their
disagreement stays meaningful for the weigher's confidence gate.

Advantages come from one of two estimators: ``vine`` (default, see
:func:`rollouts.collect_vine`) branches the simulation at sampled states and
compares
the tried actions under a common future; ``gae`` uses a separate
permutation-invariant critic of the candidate set and on-policy rewards.

Rollouts (:mod:`rollouts`) run the exported numpy inference; updates run in
torch on padded batches.

The loop follows CleanRL's ``ppo.py``: collect ``rollout_decisions`` steps,
compute GAE advantages, then ``epochs`` passes of minibatch updates.

**Lagrangian PPO** (objective ``pareto``, constraints held to a reference
policy's level): the reward is ``-(primary + sum_i lambda_i * c_i)``, the
multipliers ``lambda_i`` being the objective's constraint weights, and
:func:`dual_ascent` moves them between PPO iterations by projected dual
ascent on the measured excess ``e_i`` (policy's term minus the reference's
on the same episodes, relative, see ``Pareto.excess``)::

    lambda_i <- max(0, lambda_i + dual_lr * max(price_i, lambda_i) * e'_i)
    e'_i = e_i if e_i > 0 else min(e_i, -DUAL_DECAY)

Why: a fixed weighted sum fixes the exchange rate between packing and hot
spots once and for all, and the policy may buy active host-hours with
overload at that rate; the constraint "no worse than the reference" has no
such rate. Ascent on the dual raises a term's price while the policy
violates it and lowers it, down to 0, while the policy is within it, so
the primary terms decide wherever the constraints allow (Altman's
constrained MDPs; Tessler et al., "Reward Constrained Policy Optimization",
ICLR 2019). ``price_i`` (the initial multiplier) puts the step in each
term's units; ``e_i`` is relative and clipped, so one step moves a
multiplier by at most a few times its size. Scaling by the multiplier
itself once it is above its price makes the steps multiplicative: a
multiplier that had to grow large comes back down in a few validations
once the constraint holds. A constraint met exactly (often both sides 0:
no overload on either) still counts as met by at least ``DUAL_DECAY``, so
its multiplier falls back to 0 rather than staying wherever it was.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from nova_rl_weigher import features

from nova_rl_trainer.learning.policy_net import EnsembleScorer
from nova_rl_trainer.learning.policy_net import pad
from nova_rl_trainer.learning.rollouts import Rollout
from nova_rl_trainer.learning.rollouts import VineBatch


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
    # How advantages are estimated: 'vine' (branch rollouts, see
    # collect_vine) or 'gae' (the critic, from on-policy rewards).
    advantage: str = 'vine'
    vine_states: int = 32          # branched states per iteration
    vine_actions: int = 4          # actions tried at each branched state
    vine_horizon: int = 1000       # decisions each branch is continued for
    vine_stride: int = 16          # trunk decisions between branched states


#: Least relative step down of a met constraint's multiplier.
DUAL_DECAY = 0.1


def dual_ascent(multipliers: dict[str, float], excess: dict[str, float],
                prices: dict[str, float], lr: float) -> dict[str, float]:
    """One projected dual-ascent step (see the module docstring): the
    multipliers after measuring ``excess`` (> 0: constraint violated)."""
    out = {}
    for t, lam in multipliers.items():
        e = float(excess[t])
        step = e if e > 0 else min(e, -DUAL_DECAY)
        out[t] = max(0.0, float(lam) + lr * max(prices[t], lam) * step)
    return out


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
        scores = self.rho(torch.cat([mean, maxed, torch.log(count)], dim=1))
        return scores[:, 0]


def _entropy(logp_all: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy ``(K, B)`` of each member's choice over the real candidates."""
    return -(logp_all.exp() * logp_all.masked_fill(~mask[None], 0.0)
             ).sum(dim=2)


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

    # -- pieces shared by both updates ---------------------------------------

    def _log_probs(self, x: torch.Tensor, mask: torch.Tensor
                   ) -> torch.Tensor:
        """Each member's log-probabilities over the real candidates."""
        scores = self.model(x, mask).masked_fill(~mask[None], -1e9)
        return torch.log_softmax(scores, dim=2)

    def _clipped_loss(self, ratio: torch.Tensor, adv: torch.Tensor
                      ) -> torch.Tensor:
        """PPO's clipped surrogate, negated (a loss), element-wise."""
        clip = self.config.clip
        return -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)

    def _step(self, opt: torch.optim.Optimizer, module: nn.Module,
              loss: torch.Tensor) -> None:
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(),
                                 self.config.max_grad_norm)
        opt.step()

    def _add_ratio_stats(self, stats: dict, ratio: torch.Tensor) -> None:
        stats['clip_frac'] += float(
            ((ratio - 1).abs() > self.config.clip).float().mean())
        stats['approx_kl'] += float(((ratio - 1) - torch.log(ratio)).mean())

    # -- updates -------------------------------------------------------------

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
                old_logp = torch.as_tensor(ro.logp[idx].T,
                                           dtype=torch.float32)  # (K, B)
                mb_adv = torch.as_tensor(adv[idx], dtype=torch.float32)
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                logp_all = self._log_probs(x, mask)            # (K, B, N)
                logp = logp_all.gather(
                    2, a[None, :, None].expand(logp_all.shape[0], -1, 1)
                    )[..., 0]
                ratio = torch.exp(logp - old_logp)             # (K, B)
                pg = self._clipped_loss(ratio, mb_adv)
                entropy = _entropy(logp_all, mask)
                self._step(self.opt, self.model,
                           pg.mean() - c.entropy_coef * entropy.mean())

                z = (x - self.model.mean) / self.model.std
                v = self.critic(z, mask)
                target = torch.as_tensor(returns[idx], dtype=torch.float32)
                v_loss = 0.5 * ((v - target) ** 2).mean()
                self._step(self.critic_opt, self.critic, v_loss)

                with torch.no_grad():
                    stats['policy_loss'] += float(pg.mean())
                    stats['value_loss'] += float(v_loss)
                    stats['entropy'] += float(entropy.mean())
                    self._add_ratio_stats(stats, ratio)
                batches += 1
        return {k: v / max(batches, 1) for k, v in stats.items()}

    def update_vine(self, batch: VineBatch, rng: np.random.Generator
                    ) -> dict:
        """PPO's clipped surrogate on the branched actions.

        Every tried action counts once (not weighted by its behaviour
        probability): the gradient on each candidate's logit is then
        proportional to its measured advantage, so a better host the policy
        gave little probability to still gains ground; the clip bounds how
        far one iteration moves each probability, as in PPO.
        """
        c = self.config
        n = len(batch.xs)
        scale = np.concatenate(batch.advantages).std() + 1e-8
        stats = {'policy_loss': 0.0, 'entropy': 0.0, 'clip_frac': 0.0,
                 'approx_kl': 0.0}
        batches = 0
        width = max(len(a) for a in batch.actions)
        for _ in range(c.epochs):
            order = rng.permutation(n)
            for start in range(0, n, c.minibatch):
                idx = order[start:start + c.minibatch]
                x, mask = pad([batch.xs[i] for i in idx])
                acts = np.zeros((len(idx), width), dtype=np.int64)
                k = self.model.members
                old = np.zeros((k, len(idx), width), dtype=np.float32)
                adv = np.zeros((len(idx), width), dtype=np.float32)
                tried = np.zeros((len(idx), width), dtype=bool)
                for r, i in enumerate(idx):
                    m = len(batch.actions[i])
                    acts[r, :m] = batch.actions[i]
                    old[:, r, :m] = batch.logp[i]
                    adv[r, :m] = batch.advantages[i] / scale
                    tried[r, :m] = True
                acts_t = torch.from_numpy(acts)
                tried_t = torch.from_numpy(tried)
                logp_all = self._log_probs(x, mask)               # (K, B, N)
                logp = logp_all.gather(
                    2, acts_t[None].expand(k, -1, -1))            # (K, B, A)
                ratio = torch.exp(logp - torch.from_numpy(old))
                pg = self._clipped_loss(ratio, torch.from_numpy(adv)[None])
                pg = (pg * tried_t[None]).sum() / (tried_t.sum() * k)
                entropy = _entropy(logp_all, mask).mean()
                self._step(self.opt, self.model,
                           pg - c.entropy_coef * entropy)
                with torch.no_grad():
                    stats['policy_loss'] += float(pg)
                    stats['entropy'] += float(entropy)
                    self._add_ratio_stats(
                        stats, ratio[tried_t[None].expand_as(ratio)])
                batches += 1
        out = {k: v / max(batches, 1) for k, v in stats.items()}
        out['mean_abs_advantage'] = float(np.mean(
            [np.abs(a).mean() for a in batch.advantages]))
        return out

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
