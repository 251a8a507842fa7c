"""Confidence of a policy's ranking and the decision to apply or abstain.

Confidence is the share of ensemble members that agree with the ensemble's
choice of best host. A member agrees when the chosen host scores within 1% of
that member's own score spread from its best host, so near-ties among
equivalent hosts do not count as disagreement. Confidence is zero when the
features are not finite, fall outside the ranges seen in training (with the
manifest's tolerance), or the usage snapshot is stale: the policy's scores
mean nothing there.

:func:`decide` is the whole apply/abstain chain, the one used by the weigher
inside nova-scheduler (:mod:`nova_rl_weigher.scorer`) and by the trainer's
simulator (``nova_rl_trainer.simulation.policies.ArtifactPolicy``), so what
``nova-rl-trainer publish`` accepts in simulation is what runs in Nova.
:func:`final_weights` is what Nova then ranks hosts by when the weigher acts.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Protocol

import numpy as np

from nova_rl_weigher import conf
from nova_rl_weigher import features
from nova_rl_weigher.policy import Policy

# Reasons, as written to the decision log and counted in the stats.
APPLIED = 'applied'
MODE_SHADOW = 'mode_shadow'
NO_HOSTS = 'no_hosts'
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
#: The threshold when neither the operator (``confidence_threshold``) nor
#: the policy's manifest (``calibration.confidence_threshold``) sets one.
DEFAULT_THRESHOLD = 0.8


class GateOptions(Protocol):
    """What :func:`decide` reads from the settings: the ``[rl_weigher]``
    options of those names (``scorer.Settings`` has them)."""

    confidence_threshold: float | None
    latency_budget_ms: float
    canary_percent: float


@dataclasses.dataclass(frozen=True, slots=True)
class GateSettings:
    """The gate's options on their own, with the option defaults of
    :mod:`nova_rl_weigher.conf` (for callers without ``Settings``, such as
    the simulator)."""

    confidence_threshold: float | None = conf.default('confidence_threshold')
    latency_budget_ms: float = conf.default('latency_budget_ms')
    canary_percent: float = conf.default('canary_percent')


DEFAULT_SETTINGS = GateSettings()


@dataclasses.dataclass(slots=True)
class Assessment:
    confidence: float
    best: int
    reason: str = ''       # why confidence is zero, if it was forced to zero
    detail: str = ''


@dataclasses.dataclass(slots=True)
class Decision:
    """The gate's verdict for one weighing call.

    ``verdict`` is :data:`APPLIED` or the reason to abstain; it is what
    ``gated`` mode does (``shadow`` mode records it). ``best`` is the
    candidate the ensemble prefers (index into the candidates), ``weights``
    the policy's normalised 0..1 weights when applied, else None.
    """

    verdict: str
    detail: str = ''
    confidence: float = 0.0
    best: int = 0
    threshold: float | None = None
    weights: np.ndarray | None = None

    @property
    def applied(self) -> bool:
        return self.verdict == APPLIED


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


def in_canary(instance_uuid: str, percent: float) -> bool:
    """Stable choice: the same instance is always in or out (retries too)."""
    if percent >= 100.0:
        return True
    if percent <= 0.0:
        return False
    bucket = zlib.crc32(instance_uuid.encode('utf-8')) % 10000
    return bucket < percent * 100.0


def out_of_range(policy: Policy, x: np.ndarray) -> str:
    """Name the first feature outside the training range, or ''."""
    low, high = policy.accepted_range
    bad = (x < low) | (x > high)
    if not bad.any():
        return ''
    row, col = np.argwhere(bad)[0]
    return (f'{features.FEATURE_NAMES[col]}={float(x[row, col]):.4g} '
            f'outside [{float(low[col]):.4g}, {float(high[col]):.4g}]')


def ensemble_agreement(scores: np.ndarray, mean: np.ndarray | None = None
                       ) -> tuple[float, int]:
    """Return ``(share of members agreeing, consensus best index)``
    (``mean``: ``scores.mean(axis=0)`` if at hand)."""
    if mean is None:
        mean = scores.mean(axis=0)
    best = int(np.argmax(mean))
    top = scores.max(axis=1)
    spread = top - scores.min(axis=1)
    agree = scores[:, best] >= top - (TIE_TOLERANCE * spread + 1e-6)
    return float(agree.mean()), best


def assess(policy: Policy, x: np.ndarray, scores: np.ndarray,
           snapshot_status: str, snapshot_detail: str = '',
           mean: np.ndarray | None = None) -> Assessment:
    """Confidence in ``scores`` (``(K, N)``) for feature matrix ``x``
    (``mean``: ``scores.mean(axis=0)`` if at hand)."""
    if not (np.isfinite(x).all() and np.isfinite(scores).all()):
        return Assessment(0.0, 0, NON_FINITE, 'features or scores not finite')
    confidence, best = ensemble_agreement(scores, mean)
    if snapshot_status == 'stale':
        return Assessment(0.0, best, SNAPSHOT_STALE, snapshot_detail)
    if snapshot_status == 'unavailable':
        return Assessment(0.0, best, SNAPSHOT_UNAVAILABLE, snapshot_detail)
    why = out_of_range(policy, x)
    if why:
        return Assessment(0.0, best, OUT_OF_DISTRIBUTION, why)
    return Assessment(confidence, best)


def decide(policy: Policy | None, x: np.ndarray, scores: np.ndarray | None,
           *, settings: GateOptions = DEFAULT_SETTINGS,
           snapshot_status: str = 'none', snapshot_detail: str = '',
           elapsed_ms: float = 0.0, instance_uuid: str = '',
           error: str = '') -> Decision:
    """Apply or abstain, and why: the gate, in the order it checks.

    ``x`` is the ``(N, F)`` feature matrix of the candidates and ``scores``
    the policy's ``(K, N)`` scores of it (None if ``policy`` is None or
    scoring failed, ``error`` then says why). In order: no candidate hosts
    (:data:`NO_HOSTS`), no policy, scoring failed, the assessment (non-finite
    input, stale or missing usage snapshot, features outside the training
    ranges), ``elapsed_ms`` over ``settings.latency_budget_ms``, confidence
    below the threshold (:func:`threshold_for`), ``instance_uuid`` outside
    ``settings.canary_percent``; else :data:`APPLIED` with the normalised
    weights.
    """
    if x.shape[0] == 0:
        return Decision(NO_HOSTS, 'no candidate hosts')
    if policy is None:
        return Decision(POLICY_UNAVAILABLE, error)
    if scores is None:
        return Decision(ERROR, error)
    mean = scores.mean(axis=0)
    a = assess(policy, x, scores, snapshot_status, snapshot_detail, mean)
    threshold = threshold_for(policy, settings.confidence_threshold)
    d = Decision(APPLIED, '', a.confidence, a.best, threshold)
    if a.reason:
        d.verdict, d.detail = a.reason, a.detail
    elif elapsed_ms > settings.latency_budget_ms:
        d.verdict = OVER_LATENCY_BUDGET
        d.detail = f'{elapsed_ms:.3f} ms > {settings.latency_budget_ms} ms'
    elif a.confidence < threshold:
        d.verdict = LOW_CONFIDENCE
        d.detail = f'{a.confidence:.2f} < {threshold}'
    elif not in_canary(instance_uuid, settings.canary_percent):
        d.verdict = OUTSIDE_CANARY
    else:
        d.weights = normalised_weights(scores, mean)
    return d


def normalised_weights(scores: np.ndarray, mean: np.ndarray | None = None
                       ) -> np.ndarray:
    """Ensemble-mean scores scaled to [0, 1] within the candidate set
    (float64; all 0 when every candidate scores the same; ``mean``:
    ``scores.mean(axis=0)`` if at hand).

    The weigher declares ``minval=0, maxval=1`` so Nova's normalisation keeps
    these values as they are, without per-call state on the shared weigher.
    """
    if mean is None:
        mean = scores.mean(axis=0)
    mean = mean.astype(np.float64)
    lo, hi = float(mean.min()), float(mean.max())
    if hi - lo <= 0:
        return np.zeros(mean.shape[0])
    return (mean - lo) / (hi - lo)


def final_weights(nova_weight: np.ndarray, weights: np.ndarray,
                  multiplier: float) -> np.ndarray:
    """What Nova ranks the candidates by when the weigher acts.

    ``nova_weight`` is the combined weight of Nova's other weighers (the
    ``nova_weight`` feature), ``weights`` this weigher's normalised weights
    (``Decision.weights``, kept as they are by Nova's normalisation since
    the weigher declares ``minval=0, maxval=1``) and ``multiplier`` its
    ``weight_multiplier``. Nova adds ``multiplier * weight`` to each host's
    total and takes the highest, the first on ties (a stable sort, with
    ``host_subset_size = 1``): ``int(np.argmax(final_weights(...)))``.
    """
    return nova_weight + multiplier * weights
