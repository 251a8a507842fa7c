"""What the decision logs say about a policy, for the shadow-to-gated call.

:func:`summarise` folds the records of :func:`nova_rl_weigher.
decision_records.iter_records` into a plain dict (written as
``summary.json`` by ``nova-rl-trainer decisions``), overall and per policy
version:

``calls``, ``modes``
    weighing calls logged, and how many in each mode.
``applied``, ``applied_share``
    calls where the weigher acted (gated mode, confident, inside canary).
``would_act``, ``would_act_share``
    calls where the gate's verdict was ``applied``: what gated mode does;
    in shadow mode, what it would have done.
``verdicts``
    the gate's verdict per call (``applied`` or the reason to abstain,
    the :mod:`nova_rl_weigher.gate` reasons); ``reasons`` is what the
    weigher did (``mode_shadow`` for every shadow call).
``agreement``
    calls where both Nova's choice (highest ``nova_weight``) and the
    policy's (highest score) are known, how many are the same host, and
    the same among calls where the gate would act; ``by_confidence``: the
    agreement share per confidence bin (:data:`CONFIDENCE_BINS`).
``confidence``
    histogram over :data:`CONFIDENCE_BINS` and quantiles.
``latency_ms``
    quantiles of the time features and policy took.
``features``
    per feature, over the calls where the policy's choice differs from
    Nova's: the mean of (policy's host - Nova's host) and of its absolute
    value, and how often and how strongly (mean absolute effect) it was
    among the features the log's ``why`` names as moving a top host's
    score; sorted by ``mean_abs_diff``.
``series``
    per time bucket of ``bucket_s`` seconds: calls, applied, would act.
"""

from __future__ import annotations

import collections
import math
from typing import Iterable

import numpy as np

from nova_rl_weigher.decision_records import ReadStats
from nova_rl_weigher.decision_records import Record
from nova_rl_weigher import gate

#: Confidence histogram edges (the last bin includes 1.0).
CONFIDENCE_BINS = np.linspace(0.0, 1.0, 21)
#: Time bucket widths to choose from: the smallest giving at most
#: :data:`MAX_BUCKETS` buckets over the logged span.
BUCKET_WIDTHS_S = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 200
#: Label of calls logged without a policy (none could be loaded).
NO_POLICY = '(none)'


class _Group:
    """The running totals of one policy version (or of all of them)."""

    def __init__(self) -> None:
        self.modes: collections.Counter = collections.Counter()
        self.reasons: collections.Counter = collections.Counter()
        self.verdicts: collections.Counter = collections.Counter()
        self.applied = self.would_act = 0
        self.compared = self.agree = 0
        self.compared_acting = self.agree_acting = 0
        self.conf_hist = np.zeros(len(CONFIDENCE_BINS) - 1, dtype=np.int64)
        self.conf_agree = np.zeros_like(self.conf_hist)
        self.conf_compared = np.zeros_like(self.conf_hist)
        self.confidences: list[float] = []
        self.latencies: list[float] = []
        # feature -> [n, sum diff, sum |diff|]; feature -> [n, sum |effect|]
        self.diffs: dict[str, list[float]] = {}
        self.effects: dict[str, list[float]] = {}
        # minute -> [calls, applied, would act]
        self.minutes: dict[int, list[int]] = {}

    def add(self, r: Record) -> None:
        self.modes[r.mode] += 1
        self.reasons[r.reason] += 1
        self.verdicts[r.verdict] += 1
        would_act = r.verdict == gate.APPLIED
        self.applied += r.applied
        self.would_act += would_act
        row = self.minutes.setdefault(int(r.time // 60), [0, 0, 0])
        row[0] += 1
        row[1] += r.applied
        row[2] += would_act
        if r.latency_ms is not None:
            self.latencies.append(r.latency_ms)
        cbin = None
        if r.confidence is not None:
            self.confidences.append(r.confidence)
            cbin = _bin(r.confidence)
            self.conf_hist[cbin] += 1
        agrees = r.agrees
        if agrees is not None:
            self.compared += 1
            self.agree += agrees
            if would_act:
                self.compared_acting += 1
                self.agree_acting += agrees
            if cbin is not None:
                self.conf_compared[cbin] += 1
                self.conf_agree[cbin] += agrees
            if not agrees:
                self._add_diff(r)
        for top in r.why:
            for item in top.get('features', ()) if isinstance(top, dict) \
                    else ():
                effect = item.get('effect') if isinstance(item, dict) \
                    else None
                if isinstance(effect, (int, float)) and math.isfinite(effect):
                    acc = self.effects.setdefault(str(item.get('feature')),
                                                  [0, 0.0])
                    acc[0] += 1
                    acc[1] += abs(effect)

    def _add_diff(self, r: Record) -> None:
        chosen = r.hosts[r.policy_top].features
        nova = r.hosts[r.nova_top].features
        for name, a, b in zip(r.feature_names, chosen, nova):
            if a is not None and b is not None:
                acc = self.diffs.setdefault(name, [0, 0.0, 0.0])
                acc[0] += 1
                acc[1] += a - b
                acc[2] += abs(a - b)

    def to_dict(self, bucket_s: int) -> dict:
        calls = sum(self.modes.values())
        return {
            'calls': calls,
            'modes': dict(self.modes),
            'applied': self.applied,
            'applied_share': _share(self.applied, calls),
            'would_act': self.would_act,
            'would_act_share': _share(self.would_act, calls),
            'reasons': dict(self.reasons.most_common()),
            'verdicts': dict(self.verdicts.most_common()),
            'agreement': {
                'compared': self.compared, 'agree': self.agree,
                'share': _share(self.agree, self.compared),
                'compared_when_would_act': self.compared_acting,
                'share_when_would_act': _share(self.agree_acting,
                                               self.compared_acting),
                'by_confidence': [_share(int(a), int(n)) for a, n in
                                  zip(self.conf_agree, self.conf_compared)],
                'compared_by_confidence': self.conf_compared.tolist(),
            },
            'confidence': {
                'count': len(self.confidences),
                'histogram': self.conf_hist.tolist(),
                **_quantiles(self.confidences),
            },
            'latency_ms': _quantiles(self.latencies),
            'features': self._features(),
            'series': self._series(bucket_s),
        }

    def _features(self) -> list[dict]:
        rows = []
        for name in set(self.diffs) | set(self.effects):
            n, total, total_abs = self.diffs.get(name, (0, 0.0, 0.0))
            k, effect = self.effects.get(name, (0, 0.0))
            rows.append({
                'feature': name, 'disagreements': int(n),
                'mean_diff': total / n if n else None,
                'mean_abs_diff': total_abs / n if n else None,
                'why_count': int(k),
                'why_mean_abs_effect': effect / k if k else None})
        rows.sort(key=lambda row: (-(row['mean_abs_diff'] or 0.0),
                                   -(row['why_mean_abs_effect'] or 0.0),
                                   row['feature']))
        return rows

    def _series(self, bucket_s: int) -> dict:
        buckets: dict[int, list[int]] = {}
        for minute, counts in self.minutes.items():
            start = (minute * 60) // bucket_s * bucket_s
            row = buckets.setdefault(start, [0, 0, 0])
            for i, v in enumerate(counts):
                row[i] += v
        starts = sorted(buckets)
        return {'start': starts,
                'calls': [buckets[s][0] for s in starts],
                'applied': [buckets[s][1] for s in starts],
                'would_act': [buckets[s][2] for s in starts]}


def _bin(confidence: float) -> int:
    edges = CONFIDENCE_BINS
    i = int(np.searchsorted(edges, confidence, side='right')) - 1
    return min(max(i, 0), len(edges) - 2)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {'mean': None, 'p50': None, 'p90': None, 'p95': None,
                'max': None}
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p95 = np.percentile(a, [50, 90, 95])
    return {'mean': float(a.mean()), 'p50': float(p50), 'p90': float(p90),
            'p95': float(p95), 'max': float(a.max())}


def bucket_width(span_s: float) -> int:
    """The smallest of :data:`BUCKET_WIDTHS_S` that cuts ``span_s`` into at
    most :data:`MAX_BUCKETS` buckets."""
    for width in BUCKET_WIDTHS_S:
        if span_s / width <= MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS_S[-1]


def summarise(records: Iterable[Record], stats: ReadStats | None = None,
              source: str = '') -> dict:
    """The summary of ``records`` (see the module docstring). ``stats`` is
    the reader's, read after the records are consumed."""
    overall = _Group()
    groups: dict[str, _Group] = {}
    first = last = None
    for r in records:
        first = r.time if first is None else min(first, r.time)
        last = r.time if last is None else max(last, r.time)
        overall.add(r)
        groups.setdefault(r.policy_version or NO_POLICY, _Group()).add(r)
    bucket_s = bucket_width((last - first) if first is not None else 0.0)
    return {
        'source': {'directory': source,
                   **(stats.as_dict() if stats is not None else {})},
        'first_time': first,
        'last_time': last,
        'bucket_s': bucket_s,
        'confidence_bins': CONFIDENCE_BINS.tolist(),
        'overall': overall.to_dict(bucket_s),
        'policies': {version: g.to_dict(bucket_s)
                     for version, g in sorted(groups.items())},
    }
