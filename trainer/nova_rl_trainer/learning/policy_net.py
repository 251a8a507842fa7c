"""The policy network in torch, and its export to the weigher's artifact.

:class:`EnsembleScorer` implements exactly the equations of
:mod:`nova_rl_weigher.policy` (a Deep Sets scorer per member: per-host
embedding, mean over candidates as context, per-host score), for K members
at once, so :func:`export` can hand the weights to the numpy inference that
runs inside nova-scheduler. A test checks the two agree to 1e-5.

Inputs are raw feature matrices; the normalisation (mean, std) is a buffer
of the module and is written to the manifest, not folded into the weights,
so the out-of-range check in the weigher still sees raw feature values.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import policy as np_policy


class EnsembleScorer(nn.Module):
    """K permutation-equivariant host scorers evaluated in one batch."""

    def __init__(self, members: int = 5, hidden: int = 32,
                 num_features: int = features.NUM_FEATURES,
                 seed: int | None = None) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed) if seed is not None \
            else None
        k, f, h = members, num_features, hidden

        def init(*shape: int, fan_in: int) -> nn.Parameter:
            w = torch.randn(*shape, generator=gen) * (2.0 / fan_in) ** 0.5
            return nn.Parameter(w)
        self.W1 = init(k, f, h, fan_in=f)
        self.b1 = nn.Parameter(torch.zeros(k, h))
        self.W2 = init(k, h, h, fan_in=2 * h)
        self.U2 = init(k, h, h, fan_in=2 * h)
        self.b2 = nn.Parameter(torch.zeros(k, h))
        # A small last layer starts every member close to uniform choice.
        self.w3 = nn.Parameter(init(k, h, fan_in=h).detach() * 0.1)
        self.b3 = nn.Parameter(torch.zeros(k))
        self.register_buffer('mean', torch.zeros(f))
        self.register_buffer('std', torch.ones(f))

    @property
    def members(self) -> int:
        return int(self.b3.shape[0])

    def set_normalisation(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(std, 1e-3),
                                       dtype=torch.float32))

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-host embedding ``(K, B, N, H)`` and set context ``(K, B, H)``.

        ``x`` is ``(B, N, F)``; ``mask`` ``(B, N)`` marks real hosts in a
        padded batch (the context is the mean over real hosts only, as in
        the weigher, which never sees padding).
        """
        z = (x - self.mean) / self.std
        h1 = torch.relu(torch.einsum('bnf,kfh->kbnh', z, self.W1)
                        + self.b1[:, None, None, :])
        if mask is None:
            context = h1.mean(dim=2)
        else:
            m = mask[None, :, :, None].to(h1.dtype)
            context = (h1 * m).sum(dim=2) / m.sum(dim=2).clamp_min(1.0)
        return h1, context

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Scores ``(K, B, N)`` for a batch of candidate sets ``(B, N, F)``."""
        h1, context = self.embed(x, mask)
        pre2 = (torch.einsum('kbnh,khg->kbng', h1, self.W2)
                + torch.einsum('kbh,khg->kbg', context, self.U2)[:, :, None]
                + self.b2[:, None, None, :])
        h2 = torch.relu(pre2)
        return torch.einsum('kbng,kg->kbn', h2, self.w3) \
            + self.b3[:, None, None]

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).detach().cpu().numpy()
                .astype(np.float32)
                for name in ('W1', 'b1', 'W2', 'U2', 'b2', 'w3', 'b3')}

    def load_numpy_params(self, params: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad():
            for name, value in params.items():
                getattr(self, name).copy_(torch.as_tensor(value))


def numpy_policy(model: EnsembleScorer) -> np_policy.Policy:
    """The model as the weigher's numpy inference (no range checks)."""
    f = features.NUM_FEATURES
    return np_policy.Policy(
        params=model.numpy_params(), mean=model.mean.numpy().copy(),
        std=model.std.numpy().copy(), feature_min=np.full(f, -np.inf),
        feature_max=np.full(f, np.inf), range_tolerance=0.0, manifest={},
        version='training')


def widen(params: Mapping[str, np.ndarray], mean: np.ndarray,
          std: np.ndarray, width: int
          ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A policy of fewer features (an older schema, whose columns are the
    first of the current one) as one of ``width`` features that computes the
    same scores: zero input weights, mean 0 and std 1 for the new columns.
    Retraining then learns what the new columns are worth."""
    old = params['W1'].shape[1]
    if old > width:
        raise ValueError(f'a policy of {old} features cannot become one of '
                         f'{width}')
    out = dict(params)
    w1 = params['W1']
    out['W1'] = np.concatenate(
        [w1, np.zeros((w1.shape[0], width - old, w1.shape[2]), w1.dtype)],
        axis=1)
    mean = np.concatenate([np.asarray(mean, float), np.zeros(width - old)])
    std = np.concatenate([np.asarray(std, float), np.ones(width - old)])
    return out, mean, std


def pad(xs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad candidate sets into ``(B, Nmax, F)`` with a mask."""
    nmax = max(x.shape[0] for x in xs)
    batch = np.zeros((len(xs), nmax, xs[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(xs), nmax), dtype=bool)
    for i, x in enumerate(xs):
        batch[i, :x.shape[0]] = x
        mask[i, :x.shape[0]] = True
    return torch.from_numpy(batch), torch.from_numpy(mask)


def export(model: EnsembleScorer, path: str, *, feature_min: np.ndarray,
           feature_max: np.ndarray, objective: str,
           provenance: Mapping[str, Any], policy_version: str | None = None,
           calibration: Mapping[str, Any] | None = None,
           range_tolerance: float = 0.05,
           nova_weighers: Mapping[str, Any] | None = None,
           shield: Mapping[str, Any] | None = None) -> dict:
    """Write ``model`` as a weigher policy artifact; return the manifest.

    The manifest's feature schema is the one of the model's width: a model
    built with the default ``num_features`` (``features.NUM_FEATURES``)
    exports schema v2 (``features.SCHEMA``); one loaded from a v1 artifact
    (:func:`from_artifact`) exports v1 again.

    ``nova_weighers``: the Nova weigher configuration it was trained with
    (``policies.nova_weighers_record(SimConfig.nova_weighers)``), which the
    weigher compares with the running scheduler's; None leaves it out, as
    ``shield`` (``{"max_projected_cpu_peak": X}``, see
    ``nova_rl_weigher.shield``).
    """
    return artifact.write_artifact(
        path, model.numpy_params(),
        mean=model.mean.cpu().numpy(), std=model.std.cpu().numpy(),
        feature_min=feature_min, feature_max=feature_max,
        objective=objective, provenance=provenance,
        policy_version=policy_version, calibration=calibration,
        range_tolerance=range_tolerance, nova_weighers=nova_weighers,
        shield=shield)


def from_artifact(path: str) -> tuple[EnsembleScorer, dict]:
    """Load an artifact (verified by the weigher's loader) into torch."""
    policy = artifact.load_artifact(path)
    k, f, h = policy.params['W1'].shape
    model = EnsembleScorer(members=k, hidden=h, num_features=f)
    model.load_numpy_params(policy.params)
    model.set_normalisation(policy.mean, policy.std)
    return model, policy.manifest
