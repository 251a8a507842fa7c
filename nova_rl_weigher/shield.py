"""The shield: hosts a policy may not prefer, whatever it scores.

A learned packing policy saves host-hours by filling hosts, and the one
thing it must not do on the way is create hot spots: a constrained
objective only asks for that on average, over the clusters it trained on.
The shield makes it a rule at every decision, on clusters the policy never
saw too. A policy whose manifest has ``shield.max_projected_cpu_peak``
(a share of the host's physical cores) only ranks the candidates whose
:func:`projected_cpu_peak` after the placement stays within it; the others
get its lowest weight. When no candidate is within it, the weigher abstains
(``no_safe_host``) and Nova's weighers (which spread) decide.

The projection is deliberately pessimistic, as load-aware schedulers'
(Koordinator's estimated usage) are: the host's highest sampled CPU use of
the last 24 hours (its recent p95 without a 24 h peak), plus every vCPU
allocated since that sample and the request's vCPUs as if they ran flat
out. A host without usage data is judged on ``cpu_p95_after``, its
allocation. It reads only the policy's feature columns, so the weigher in
Nova and the trainer's simulator shield the same way.
"""

from __future__ import annotations

import numpy as np

from nova_rl_weigher import features

#: The manifest key of the limit, in the ``shield`` object.
MAX_PROJECTED_CPU_PEAK = 'max_projected_cpu_peak'

_I = features.FEATURE_INDEX
_USAGE_PRESENT = _I['usage_present']
_PEAK_PRESENT = _I['peak_present']
_PEAK = _I['cpu_util_peak_24h']
_P95 = _I['cpu_util_p95']
_SINCE = _I['alloc_since_sample_vcpu_frac']
_REQ = _I['req_vcpu_frac']
_AFTER = _I['cpu_p95_after']
#: The shield reads schema v2's columns (the 24 h peak, the allocation
#: since the usage sample): a v1 policy cannot carry one.
MIN_WIDTH = features.SCHEMA_V2.num_features


def projected_cpu_peak(x: np.ndarray) -> np.ndarray:
    """Per candidate (rows of the v2 feature matrix ``x``), the projected
    CPU peak after the placement as a share of physical cores (see the
    module)."""
    if x.shape[1] < MIN_WIDTH:
        raise ValueError(f'the shield needs schema v2 features '
                         f'({MIN_WIDTH} columns), not {x.shape[1]}')
    x = x.astype(np.float64)
    sampled = np.where(x[:, _PEAK_PRESENT] > 0, x[:, _PEAK], x[:, _P95])
    measured = sampled + x[:, _SINCE] + x[:, _REQ]
    return np.where(x[:, _USAGE_PRESENT] > 0, measured, x[:, _AFTER])


def limit_of(manifest: dict) -> float | None:
    """The manifest's shield limit, or None (no shield). The loader has
    checked it (:func:`nova_rl_weigher.manifest.check_shield`)."""
    shield = manifest.get('shield')
    if not isinstance(shield, dict):
        return None
    return float(shield[MAX_PROJECTED_CPU_PEAK])


def safe_hosts(limit: float | None, x: np.ndarray) -> np.ndarray | None:
    """Which candidates the policy may prefer under ``limit`` (None: no
    shield, every candidate)."""
    if limit is None:
        return None
    return projected_cpu_peak(x) <= limit


def best_within(limit: float | None, x: np.ndarray, scores: np.ndarray
                ) -> int:
    """The best-scoring candidate (``scores``: one per row of ``x``, first
    on ties) among those the shield lets the policy prefer; the best of all
    when there is no shield or it lets none (the policy run raw, without
    the gate that would abstain there)."""
    safe = safe_hosts(limit, x)
    if safe is not None and safe.any():
        scores = np.where(safe, scores, -np.inf)
    return int(np.argmax(scores))
