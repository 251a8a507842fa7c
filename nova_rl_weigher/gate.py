"""Confidence of a policy's ranking and the decision to apply or abstain.

Confidence is the share of ensemble members that agree with the ensemble's
choice of best host. A member agrees when the chosen host scores within 1% of
that member's own score spread from its best host, so near-ties among
equivalent hosts do not count as disagreement. Confidence is zero when the
features are not finite, fall outside the ranges seen in training (with the
manifest's tolerance), or the usage snapshot is stale: the policy's scores
mean nothing there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nova_rl_weigher import features
from nova_rl_weigher.policy import Policy

# Reasons, as written to the decision log and counted in the stats.
APPLIED = 'applied'
MODE_SHADOW = 'mode_shadow'
POLICY_UNAVAILABLE = 'policy_unavailable'
SNAPSHOT_STALE = 'snapshot_stale'
SNAPSHOT_UNAVAILABLE = 'snapshot_unavailable'
NON_FINITE = 'non_finite'
OUT_OF_DISTRIBUTION = 'out_of_distribution'
LOW_CONFIDENCE = 'low_confidence'
OVER_LATENCY_BUDGET = 'over_latency_budget'
OUTSIDE_CANARY = 'outside_canary'
ERROR = 'error'

TIE_TOLERANCE = 0.01
DEFAULT_THRESHOLD = 0.8


@dataclasses.dataclass(slots=True)
class Assessment:
    confidence: float
    best: int
    reason: str = ''       # why confidence is zero, if it was forced to zero
    detail: str = ''


def threshold_for(policy: Policy | None, configured: float | None) -> float:
    """The operator's threshold if set, else the policy's calibrated one."""
    if configured is not None:
        return float(configured)
    if policy is not None:
        calibrated = (policy.manifest.get('calibration') or {}).get(
            'confidence_threshold')
        if isinstance(calibrated, (int, float)) and 0 <= calibrated <= 1:
            return float(calibrated)
    return DEFAULT_THRESHOLD


def out_of_range(policy: Policy, x: np.ndarray) -> str:
    """Name the first feature outside the training range, or ''."""
    span = policy.feature_max - policy.feature_min
    slack = policy.range_tolerance * np.where(span > 0, span, 1.0)
    low = policy.feature_min - slack
    high = policy.feature_max + slack
    bad = (x < low) | (x > high)
    if not bad.any():
        return ''
    row, col = np.argwhere(bad)[0]
    return (f'{features.FEATURE_NAMES[col]}={float(x[row, col]):.4g} '
            f'outside [{float(low[col]):.4g}, {float(high[col]):.4g}]')


def ensemble_agreement(scores: np.ndarray) -> tuple[float, int]:
    """Return ``(share of members agreeing, consensus best index)``."""
    mean = scores.mean(axis=0)
    best = int(np.argmax(mean))
    top = scores.max(axis=1)
    spread = top - scores.min(axis=1)
    agree = scores[:, best] >= top - (TIE_TOLERANCE * spread + 1e-6)
    return float(agree.mean()), best


def assess(policy: Policy, x: np.ndarray, scores: np.ndarray,
           snapshot_status: str, snapshot_detail: str = '') -> Assessment:
    """Confidence in ``scores`` (``(K, N)``) for feature matrix ``x``."""
    if not (np.isfinite(x).all() and np.isfinite(scores).all()):
        return Assessment(0.0, 0, NON_FINITE, 'features or scores not finite')
    confidence, best = ensemble_agreement(scores)
    if snapshot_status == 'stale':
        return Assessment(0.0, best, SNAPSHOT_STALE, snapshot_detail)
    if snapshot_status == 'unavailable':
        return Assessment(0.0, best, SNAPSHOT_UNAVAILABLE, snapshot_detail)
    why = out_of_range(policy, x)
    if why:
        return Assessment(0.0, best, OUT_OF_DISTRIBUTION, why)
    return Assessment(confidence, best)


def normalised_weights(scores: np.ndarray) -> list[float]:
    """Ensemble-mean scores scaled to [0, 1] within the candidate set.

    The weigher declares ``minval=0, maxval=1`` so Nova's normalisation keeps
    these values as they are, without per-call state on the shared weigher.
    """
    mean = scores.mean(axis=0).astype(np.float64)
    lo, hi = float(mean.min()), float(mean.max())
    if hi - lo <= 0:
        return [0.0] * mean.shape[0]
    return ((mean - lo) / (hi - lo)).tolist()
