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
from nova_rl_trainer.learning import policy_net
from nova_rl_trainer.learning.policy_net import EnsembleScorer
from nova_rl_trainer.simulation import policies as policies_mod


class _Recorder:
    """``policy``, recording each decision's candidate features and its
    choice (index into the candidates). The feature matrix is built once
    per decision: a feature policy that would build the same matrix
    (``FeaturePolicy.choose``) picks from the recorded one; others choose
    their own way."""

    def __init__(self, policy, xs: list[np.ndarray], choices: list[int]
                 ) -> None:
        self.policy = policy
        self.name = policy.name
        self.needs_usage = policy.needs_usage
        self.xs = xs
        self.choices = choices
        self.sim = None

    def bind(self, sim) -> None:
        self.sim = sim
        self.policy.bind(sim)

    def choose(self, vm: int, fit: np.ndarray) -> int:
        cand, x, nova_weight = self.sim.candidate_features(vm, fit)
        if type(self.policy).choose is policies_mod.FeaturePolicy.choose:
            i = self.policy.pick(x, nova_weight)
            host = int(cand[i])
        else:
            host = self.policy.choose(vm, fit)
            i = int(np.searchsorted(cand, host))
        self.xs.append(x)
        self.choices.append(i)
        return host


def demonstrations(env: env_mod.PlacementEnv, heuristic: str, n: int,
                   start_s_values: list[float], episode_decisions: int
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` decisions of ``heuristic``: candidate features and choices,
    along episodes of at most ``episode_decisions`` from each start in
    turn (warm-started by ``env``)."""
    xs: list[np.ndarray] = []
    choices: list[int] = []
    for start_s in start_s_values:
        if len(xs) >= n:
            break
        sim = env.warm_start(start_s)
        recorder = _Recorder(policies_mod.make_policy(heuristic), xs,
                             choices)
        sim.play(recorder, max_decisions=min(episode_decisions,
                                             n - len(xs)))
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
