"""Confidence of a policy's ranking and the decision to apply or abstain.

Confidence is the share of ensemble members that agree with the ensemble's
choice of best host. A member agrees when the chosen host scores within 1% of
that member's own score spread from its best host, so near-ties among
equivalent hosts do not count as disagreement. Confidence is zero when the
features are not finite, fall outside the ranges seen in training (with the
manifest's tolerance), or the usage snapshot is stale: the policy's scores
mean nothing there.

Two reasons hold for the policy as a whole, whatever the candidates:

- :data:`NOVA_CONFIG_MISMATCH`: the manifest's ``nova_weighers`` (the Nova
  weigher configuration the policy was trained with) does not match the
  running Nova's (:class:`~nova_rl_weigher.nova_config.NovaConfig`, passed
  in as plain data: the weigher
  reads ``[filter_scheduler]``, the simulator its ``SimConfig``): a
  recorded multiplier whose sign (negative, zero, positive) differs from
  the running one, or a recorded weigher not enabled. The policy reads
  Nova's combined weight as a feature and its abstentions go to Nova's
  ranking, so a policy trained over a packing Nova means something else
  over a spreading one. A manifest without the field, or no running
  configuration given, is not checked.
- :data:`NEVER_ACT`: the manifest's ``calibration.act`` is ``never``
  (calibration found no confidence level at which the policy is at least
  as good as its fallback). An operator's explicit ``confidence_threshold``
  overrides it (the decision's ``detail`` says so); the calibrated one
  cannot.

A policy with a shield (:mod:`nova_rl_weigher.shield`) prefers only the
candidates whose projected CPU peak stays within its limit; when there is
none, it abstains with :data:`NO_SAFE_HOST`.

:func:`decide` is the whole apply/abstain chain, the one used by the weigher
inside nova-scheduler (:mod:`nova_rl_weigher.scorer`) and by the trainer's
simulator (``nova_rl_trainer.simulation.policies.ArtifactPolicy``), so what
``nova-rl-trainer publish`` accepts in simulation is what runs in Nova.
:func:`final_weights` is what Nova then ranks hosts by when the weigher acts.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol
import zlib

import numpy as np

from nova_rl_weigher import conf
from nova_rl_weigher import features
# Re-exported: the weigher, scorer and simulator know them as gate.*.
from nova_rl_weigher.nova_config import config_mismatch
from nova_rl_weigher.nova_config import NovaConfig
from nova_rl_weigher.policy import Policy
from nova_rl_weigher import shield

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
NOVA_CONFIG_MISMATCH = 'nova_config_mismatch'
NEVER_ACT = 'never_act'
NO_SAFE_HOST = 'no_safe_host'
ERROR = 'error'
#: Reasons that hold for the policy as a whole (:func:`standing_verdict`):
#: no candidate's features can change them, so the weigher need not score.
STANDING_REASONS = (NOVA_CONFIG_MISMATCH, NEVER_ACT)

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
    # Which candidates the policy's shield lets it prefer (None: no shield).
    safe: np.ndarray | None = None


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


def _calibration(policy: Policy | None) -> dict:
    if policy is None:
        return {}
    calibration = policy.manifest.get('calibration')
    return calibration if isinstance(calibration, dict) else {}


def never_acts(policy: Policy | None) -> bool:
    """Whether the policy's manifest says it must not act
    (``calibration.act: never``)."""
    return _calibration(policy).get('act') == 'never'


def threshold_for(policy: Policy | None, configured: float | None
                  ) -> float | None:
    """The operator's threshold if set, else the policy's calibrated one
    (:data:`DEFAULT_THRESHOLD` if it has none); None when the policy must
    never act (:func:`never_acts`) and the operator set no threshold."""
    if configured is not None:
        return float(configured)
    if never_acts(policy):
        return None
    calibrated = _calibration(policy).get('confidence_threshold')
    if isinstance(calibrated, (int, float)) and 0 <= calibrated <= 1:
        return float(calibrated)
    return DEFAULT_THRESHOLD


def standing_verdict(policy: Policy | None, settings: GateOptions,
                     nova_config: NovaConfig | None = None
                     ) -> tuple[str, str]:
    """``(reason, detail)`` when the policy must not act whatever the
    candidates (:data:`STANDING_REASONS`), else ``('', note)``.

    In order: :data:`NOVA_CONFIG_MISMATCH`
    (:func:`~nova_rl_weigher.nova_config.config_mismatch`), then
    :data:`NEVER_ACT` unless ``settings.confidence_threshold`` is set. The
    note is non-empty when the operator's threshold overrides the
    manifest's "never".
    """
    mismatch = config_mismatch(policy, nova_config)
    if mismatch:
        return NOVA_CONFIG_MISMATCH, mismatch
    if never_acts(policy):
        if settings.confidence_threshold is None:
            return NEVER_ACT, ("the policy's calibration found no confidence "
                               'level at which it is at least as good as '
                               "Nova's weighers (calibration.act never)")
        return '', ('calibration.act never overridden by [rl_weigher] '
                    f'confidence_threshold={settings.confidence_threshold}')
    return '', ''


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
    x = policy.columns(x)
    # Usually none is: two tests cost half of building the mask of both.
    if not ((x < low).any() or (x > high).any()):
        return ''
    bad = (x < low) | (x > high)
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
    # The mean of the booleans, without np.mean's overhead (the same
    # float: an exact count over the size).
    return np.count_nonzero(agree) / agree.shape[0], best


def assess(policy: Policy, x: np.ndarray, scores: np.ndarray,
           snapshot_status: str, snapshot_detail: str = '',
           mean: np.ndarray | None = None) -> Assessment:
    """Confidence in ``scores`` (``(K, N)``) for feature matrix ``x``
    (``mean``: ``scores.mean(axis=0)`` if at hand).

    With a shield (:mod:`nova_rl_weigher.shield`) the best host and the
    members' agreement on it are among the candidates it lets the policy
    prefer; when it lets none, confidence is zero (:data:`NO_SAFE_HOST`).
    """
    if not (np.isfinite(x).all() and np.isfinite(scores).all()):
        return Assessment(0.0, 0, NON_FINITE, 'features or scores not finite')
    safe = shield.safe_hosts(policy.shield_limit, x)
    if safe is None or safe.all() or not safe.any():
        confidence, best = ensemble_agreement(scores, mean)
    else:
        idx = np.flatnonzero(safe)
        confidence, best = ensemble_agreement(
            scores[:, idx], None if mean is None else mean[idx])
        best = int(idx[best])
    if snapshot_status == 'stale':
        return Assessment(0.0, best, SNAPSHOT_STALE, snapshot_detail, safe)
    if snapshot_status == 'unavailable':
        return Assessment(0.0, best, SNAPSHOT_UNAVAILABLE, snapshot_detail,
                          safe)
    why = out_of_range(policy, x)
    if why:
        return Assessment(0.0, best, OUT_OF_DISTRIBUTION, why, safe)
    if safe is not None and not safe.any():
        return Assessment(0.0, best, NO_SAFE_HOST,
                          f'projected CPU peak above the shield\'s '
                          f'{policy.shield_limit:g} on all {len(safe)} '
                          'candidates', safe)
    return Assessment(confidence, best, safe=safe)


def decide(policy: Policy | None, x: np.ndarray, scores: np.ndarray | None,
           *, settings: GateOptions = DEFAULT_SETTINGS,
           snapshot_status: str = 'none', snapshot_detail: str = '',
           elapsed_ms: float = 0.0, instance_uuid: str = '',
           error: str = '', nova_config: NovaConfig | None = None,
           standing: tuple[str, str] | None = None) -> Decision:
    """Apply or abstain, and why: the gate, in the order it checks.

    ``x`` is the ``(N, F)`` feature matrix of the candidates and ``scores``
    the policy's ``(K, N)`` scores of it (None if ``policy`` is None or
    scoring failed, ``error`` then says why; or not scored because of a
    standing reason). ``nova_config`` is the running Nova's weigher
    configuration (None: not checked). In order: no candidate hosts
    (:data:`NO_HOSTS`), no policy, the standing reasons
    (:func:`standing_verdict`: :data:`NOVA_CONFIG_MISMATCH`,
    :data:`NEVER_ACT`), scoring failed, the assessment (non-finite input,
    stale or missing usage snapshot, features outside the training ranges),
    ``elapsed_ms`` over ``settings.latency_budget_ms``, confidence below
    the threshold (:func:`threshold_for`), ``instance_uuid`` outside
    ``settings.canary_percent``; else :data:`APPLIED` with the normalised
    weights. ``standing`` is :func:`standing_verdict` of the same policy,
    settings and ``nova_config`` when the caller has it already (it reads
    the manifest: a tenth of a simulated decision's gate).
    """
    if x.shape[0] == 0:
        return Decision(NO_HOSTS, 'no candidate hosts')
    if policy is None:
        return Decision(POLICY_UNAVAILABLE, error)
    threshold = threshold_for(policy, settings.confidence_threshold)
    if standing is None:
        standing = standing_verdict(policy, settings, nova_config)
    standing, note = standing
    if standing:
        d = Decision(standing, note, threshold=threshold)
        if scores is not None:
            # For the record (shadow mode): what the policy would say.
            a = assess(policy, x, scores, snapshot_status, snapshot_detail)
            d.confidence, d.best = a.confidence, a.best
        return d
    if scores is None:
        return Decision(ERROR, error)
    mean = scores.mean(axis=0)
    a = assess(policy, x, scores, snapshot_status, snapshot_detail, mean)
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
        d.weights = normalised_weights(scores, mean, a.safe)
    if note:
        d.detail = f'{d.detail}; {note}' if d.detail else note
    return d


def normalised_weights(scores: np.ndarray, mean: np.ndarray | None = None,
                       safe: np.ndarray | None = None) -> np.ndarray:
    """Ensemble-mean scores scaled to [0, 1] within the candidate set
    (float64; all 0 when every candidate scores the same; ``mean``:
    ``scores.mean(axis=0)`` if at hand).

    With ``safe`` (the shield's verdict, at least one candidate) the
    scaling is within the safe candidates (1 for all of them when they
    score the same) and the others get 0, the policy's lowest weight.

    The weigher declares ``minval=0, maxval=1`` so Nova's normalisation keeps
    these values as they are, without per-call state on the shared weigher.
    """
    if mean is None:
        mean = scores.mean(axis=0)
    mean = mean.astype(np.float64)
    if safe is not None and not safe.all():
        out = np.zeros(mean.shape[0])
        kept = mean[safe]
        lo, hi = float(kept.min()), float(kept.max())
        out[safe] = (kept - lo) / (hi - lo) if hi > lo else 1.0
        return out
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
