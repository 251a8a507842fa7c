"""Numpy inference for the policy network.

The network scores every candidate host from its own feature row and from a
summary of the whole candidate set, so it is permutation-equivariant and works
for any number of hosts (a Deep Sets scorer)::

    z  = (x - mean) / std                         # (N, F) per-feature scaling
    h1 = relu(z @ W1 + b1)                        # (N, H) per-host embedding
    c  = mean over hosts of h1                    # (H,)   candidate-set context
    h2 = relu(h1 @ W2 + c @ U2 + b2)              # (N, H)
    s  = h2 @ w3 + b3                             # (N,)   score, higher wins

An ensemble of K members with independent weights is evaluated in one batch;
their disagreement is what the gate reads as confidence. The trainer's torch
module implements the same equations and exports to :mod:`artifact`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ARCHITECTURE = 'deepsets-mlp-v1'

#: Parameter names and their shapes in terms of K (members), F (features)
#: and H (hidden units). The artifact loader checks every array against it.
PARAM_SHAPES: dict[str, tuple[str, ...]] = {
    'W1': ('K', 'F', 'H'),
    'b1': ('K', 'H'),
    'W2': ('K', 'H', 'H'),
    'U2': ('K', 'H', 'H'),
    'b2': ('K', 'H'),
    'w3': ('K', 'H'),
    'b3': ('K',),
}


def expected_shapes(k: int, f: int, h: int) -> dict[str, tuple[int, ...]]:
    dims = {'K': k, 'F': f, 'H': h}
    return {name: tuple(dims[d] for d in spec)
            for name, spec in PARAM_SHAPES.items()}


@dataclasses.dataclass(frozen=True)
class Policy:
    """A loaded, verified policy. Immutable, so threads share it freely."""

    params: dict[str, np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    feature_min: np.ndarray
    feature_max: np.ndarray
    range_tolerance: float
    manifest: dict
    version: str
    # W1 of all members side by side, (F, K*H): the first layer of the whole
    # ensemble as one matrix product instead of K broadcast ones.
    _w1_flat: np.ndarray = dataclasses.field(init=False, repr=False)
    _b1_flat: np.ndarray = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        k, f, h = self.params['W1'].shape
        object.__setattr__(self, '_w1_flat', np.ascontiguousarray(
            self.params['W1'].transpose(1, 0, 2).reshape(f, k * h)))
        object.__setattr__(self, '_b1_flat', self.params['b1'].reshape(-1))

    @property
    def ensemble_size(self) -> int:
        return int(self.params['b3'].shape[0])

    def score(self, x: np.ndarray) -> np.ndarray:
        """Return the ``(K, N)`` scores of every member for ``N`` hosts."""
        p = self.params
        k, _, h = p['W1'].shape
        z = (x - self.mean) / self.std
        h1 = np.maximum(z @ self._w1_flat + self._b1_flat, 0.0)
        h1 = h1.reshape(-1, k, h).transpose(1, 0, 2)              # (K, N, H)
        context = h1.mean(axis=1)
        pre2 = (np.matmul(h1, p['W2'])
                + (np.matmul(context[:, None, :], p['U2']) + p['b2'][:, None, :]))
        h2 = np.maximum(pre2, 0.0)
        return np.matmul(h2, p['w3'][:, :, None])[:, :, 0] + p['b3'][:, None]

    def explain(self, x: np.ndarray, rows: list[int],
                top_n: int = 3) -> list[list[tuple[int, float]]]:
        """Features that moved the mean score of each host in ``rows`` most.

        Occlusion: each feature of the host is replaced by its candidate-set
        mean, the others hosts unchanged, and the change in the ensemble's
        mean score for that host is recorded. Returns, per row,
        ``(feature index, effect)`` pairs sorted by absolute effect, where
        ``effect`` is how much the feature's actual value raised (positive)
        or lowered the score. Only the changed host's contribution to the
        candidate-set context is recomputed, so the cost does not grow with
        the number of hosts.
        """
        p = self.params
        n, f = x.shape
        z = (x - self.mean) / self.std
        h1 = np.maximum(np.matmul(z, p['W1']) + p['b1'][:, None, :], 0.0)
        context = h1.mean(axis=1)                                  # (K, H)
        col_mean = x.mean(axis=0)
        out = []
        for row in rows:
            variants = np.repeat(x[row][None, :], f + 1, axis=0)   # (F+1, F)
            variants[np.arange(f), np.arange(f)] = col_mean
            zv = (variants - self.mean) / self.std
            h1v = np.maximum(np.matmul(zv, p['W1'])
                             + p['b1'][:, None, :], 0.0)            # (K,F+1,H)
            ctx = context[:, None, :] + (h1v - h1[:, row:row + 1, :]) / n
            pre2 = (np.matmul(h1v, p['W2']) + np.matmul(ctx, p['U2'])
                    + p['b2'][:, None, :])
            s = (np.maximum(pre2, 0.0) * p['w3'][:, None, :]).sum(axis=2)
            s = s.mean(axis=0)                    # ensemble mean, (F+1,)
            effects = (s[f] - s[:f]).astype(np.float64)
            effects[x[row] == col_mean] = 0.0
            order = np.argsort(-np.abs(effects))[:top_n]
            out.append([(int(j), float(effects[j])) for j in order
                        if effects[j] != 0.0])
        return out
