"""Warm start: imitate a heuristic's choices before reinforcement learning.

Runs the heuristic through the simulator, records every decision's candidate
features and the heuristic's choice, and fits each ensemble member to them by
cross-entropy on its own bootstrap sample (so members differ where the data
leaves the choice open). RL then improves on the heuristic from there.
"""

from __future__ import annotations

import numpy as np
import torch

from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.learning import policy_net
from nova_rl_trainer.learning.policy_net import EnsembleScorer


def demonstrations(env: env_mod.PlacementEnv, heuristic: str, n: int,
                   start_s_values: list[float], episode_decisions: int
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` decisions of ``heuristic``: candidate features and choices."""
    xs: list[np.ndarray] = []
    choices: list[int] = []
    for start_s in start_s_values:
        env.reset(options={'start_s': start_s,
                           'max_decisions': episode_decisions})
        policy = policies_mod.make_policy(heuristic)
        policy.bind(env.sim)
        while env.decision is not None and len(xs) < n:
            d = env.decision
            host = policy.choose(d.vm, env.sim.fit)
            xs.append(d.x)
            choices.append(int(np.flatnonzero(d.candidates == host)[0]))
            _, _, terminated, truncated, _ = env.step(host)
            if terminated or truncated:
                break
        if len(xs) >= n:
            break
    return xs, np.array(choices)


def fit(model: EnsembleScorer, xs: list[np.ndarray], choices: np.ndarray,
        steps: int, seed: int, batch: int = 128, lr: float = 3e-3
        ) -> list[float]:
    """Cross-entropy on the heuristic's choices; returns the loss curve.

    Each member weighs every sample by its own Poisson(1) draw, fixed for
    the whole fit: the online form of fitting each to a bootstrap sample.
    """
    rng = np.random.default_rng(seed)
    k = model.members
    n = len(xs)
    weights = torch.as_tensor(rng.poisson(1.0, size=(k, n)),
                              dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve = []
    for step in range(steps):
        idx = rng.integers(n, size=batch)
        x, mask = policy_net.pad([xs[i] for i in idx])
        a = torch.as_tensor(choices[idx])
        scores = model(x, mask).masked_fill(~mask[None], -1e9)
        logp = torch.log_softmax(scores, dim=2)               # (K, B, N)
        nll = -logp.gather(2, a[None, :, None].expand(k, -1, 1))[..., 0]
        w = weights[:, idx]
        loss = (nll * w).sum() / w.sum().clamp_min(1.0)
        for group in opt.param_groups:
            group['lr'] = lr * (0.1 ** (step / max(steps, 1)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
    return curve
