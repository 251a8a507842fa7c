"""Helpers that build real policy artifacts for tests and experiments.

:func:`make_linear_policy` writes an artifact through the production writer
whose every ensemble member computes the same linear function of chosen
features, so it is fully confident; with ``agreement=False`` the members
disagree by design, so the gate's low-confidence path can be exercised.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from nova_rl_weigher import artifact
from nova_rl_weigher import features


def wide_ranges(width: float = 1e6) -> tuple[np.ndarray, np.ndarray]:
    f = features.NUM_FEATURES
    return (np.full(f, -width), np.full(f, width))


def linear_params(feature_weights: Mapping[str, float], ensemble_size: int,
                  agreement: bool = True) -> dict[str, np.ndarray]:
    """Deep Sets parameters that compute ``sum(w_f * x_f)`` exactly.

    Two hidden units per feature carry ``relu(x)`` and ``relu(-x)``, whose
    difference is ``x``; the context path is zero. Without ``agreement``,
    odd members score the negated function.
    """
    names = list(feature_weights)
    f, k = features.NUM_FEATURES, ensemble_size
    h = max(2 * len(names), 1)
    params = {
        'W1': np.zeros((k, f, h)), 'b1': np.zeros((k, h)),
        'W2': np.zeros((k, h, h)), 'U2': np.zeros((k, h, h)),
        'b2': np.zeros((k, h)), 'w3': np.zeros((k, h)), 'b3': np.zeros(k),
    }
    for m in range(k):
        sign = 1.0 if agreement or m % 2 == 0 else -1.0
        for i, name in enumerate(names):
            j = features.FEATURE_INDEX[name]
            params['W1'][m, j, 2 * i] = 1.0
            params['W1'][m, j, 2 * i + 1] = -1.0
            params['W2'][m, 2 * i, 2 * i] = 1.0
            params['W2'][m, 2 * i + 1, 2 * i + 1] = 1.0
            w = sign * float(feature_weights[name])
            params['w3'][m, 2 * i] = w
            params['w3'][m, 2 * i + 1] = -w
    return params


def make_linear_policy(path: str, feature_weights: Mapping[str, float],
                       ensemble_size: int = 5, agreement: bool = True,
                       feature_min: np.ndarray | None = None,
                       feature_max: np.ndarray | None = None,
                       objective: str = 'test',
                       policy_version: str | None = None) -> str:
    """Write a linear test policy to directory ``path`` and return ``path``.

    Feature ranges default to very wide, so the out-of-range check never
    fires unless the test passes its own ranges.
    """
    lo, hi = wide_ranges()
    f = features.NUM_FEATURES
    artifact.write_artifact(
        path, linear_params(feature_weights, ensemble_size, agreement),
        mean=np.zeros(f), std=np.ones(f),
        feature_min=lo if feature_min is None else feature_min,
        feature_max=hi if feature_max is None else feature_max,
        objective=objective,
        provenance={'method': 'linear test policy',
                    'feature_weights': dict(feature_weights)},
        policy_version=policy_version)
    return path
