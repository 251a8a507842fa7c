"""The scoring core: features -> policy -> gate -> weights, without Nova.

:class:`Scorer` takes host and request views, runs the policy, decides with
the gate whether to apply or abstain, queues a decision record and returns
the weights. It never raises: any failure is logged (rate-limited), counted
and turned into an abstention, because an exception in a weigher puts the
instance in ERROR. The Nova adapter (:mod:`nova_rl_weigher.weigher`) only
converts Nova's objects into views.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
import weakref
from typing import Any, Sequence

import numpy as np
from oslo_log import log as logging

from nova_rl_weigher import conf
from nova_rl_weigher import decision_log
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import metrics
from nova_rl_weigher import policy_store
from nova_rl_weigher.ratelimit import RateLimitedLog
from nova_rl_weigher import snapshot

LOG = logging.getLogger(__name__)

ERROR_LOG_INTERVAL_S = 60.0
#: A policy that will not act for a standing reason (the running Nova is
#: not the one it was trained for, or its manifest says never) is logged
#: once, then at most once per interval per policy and reason, with the
#: number of calls in between; every call is in the decision log.
NOTICE_LOG_INTERVAL_S = 3600.0


@dataclasses.dataclass(slots=True)
class Settings:
    """The options one call uses, read once so a SIGHUP mid-call is harmless.

    The defaults are the option defaults of :mod:`nova_rl_weigher.conf`.
    """

    mode: str = conf.default('mode')
    policy_path: str = conf.default('policy_path')
    confidence_threshold: float | None = conf.default('confidence_threshold')
    usage_snapshot_path: str = conf.default('usage_snapshot_path')
    snapshot_max_age_s: float = conf.default('snapshot_max_age_s')
    latency_budget_ms: float = conf.default('latency_budget_ms')
    decision_log_dir: str = conf.default('decision_log_dir')
    canary_percent: float = conf.default('canary_percent')
    policy_check_interval_s: float = conf.default('policy_check_interval_s')
    decision_log_max_mb: int = conf.default('decision_log_max_mb')
    decision_log_file_mb: int = conf.default('decision_log_file_mb')
    decision_log_queue_size: int = conf.default('decision_log_queue_size')
    explain_top_k: int = conf.default('explain_top_k')
    metrics_file: str = conf.default('metrics_file')
    metrics_interval: float = conf.default('metrics_interval')

    @classmethod
    def from_conf(cls, group: Any) -> 'Settings':
        return cls(**{f.name: getattr(group, f.name)
                      for f in dataclasses.fields(cls)})


@dataclasses.dataclass(slots=True)
class Outcome:
    weights: list[float]
    applied: bool
    reason: str
    confidence: float = 0.0
    policy_version: str | None = None


class Scorer:
    """Thread-safe: one instance serves every scheduler thread of a process."""

    def __init__(self) -> None:
        self.policies = policy_store.PolicyStore()
        self.snapshots = snapshot.SnapshotCache()
        self.decisions = decision_log.DecisionLog(on_drop=self._count_drop)
        self.metrics = metrics.Metrics(self)
        self.errors = RateLimitedLog()
        self.notices = RateLimitedLog(interval_s=NOTICE_LOG_INTERVAL_S)
        self._stats_lock = threading.Lock()
        self._stats: collections.Counter = collections.Counter()
        # nova-scheduler creates its weighers, then forks workers. A lock
        # held by another thread at fork time would stay held forever in
        # the child, so every lock is replaced there.
        ref = weakref.ref(self)
        os.register_at_fork(
            after_in_child=lambda: ref() is not None and ref()._after_fork())

    def _after_fork(self) -> None:
        self._stats_lock = threading.Lock()
        self.errors._lock = threading.Lock()
        self.notices._lock = threading.Lock()
        self.policies._lock = threading.Lock()
        self.snapshots._lock = threading.Lock()
        self.decisions._lock = threading.Lock()

    # -- counters ---------------------------------------------------------
    def _count(self, *keys: str) -> None:
        with self._stats_lock:
            for key in keys:
                self._stats[key] += 1

    def _count_drop(self, reason: str) -> None:
        self._count('decision_log_dropped', f'decision_log_dropped.{reason}')

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start: calls, applied, abstained.<reason>, errors."""
        with self._stats_lock:
            return dict(self._stats)

    # -- the call ---------------------------------------------------------
    def weigh_views(self, hosts: Sequence[features.HostView],
                    request: features.RequestView,
                    settings: Settings,
                    nova_config: gate.NovaConfig | None = None) -> Outcome:
        """:meth:`weigh` for a list of host views. Never raises."""
        try:
            columns = features.HostColumns.from_views(hosts)
            names = [h.name for h in hosts]
        except Exception:  # noqa: BLE001
            return self._failed(len(hosts))
        return self.weigh(names, columns, request, settings, nova_config)

    def weigh(self, names: Sequence[str], columns: features.HostColumns,
              request: features.RequestView, settings: Settings,
              nova_config: gate.NovaConfig | None = None, *,
              remaining: features.RemainingReader | None = None
              ) -> Outcome:
        """Weights for the hosts (zeros when abstaining). Never raises.

        ``nova_config`` is the running Nova's weigher configuration, which
        the gate compares with the one the policy was trained for (None:
        not compared). ``remaining`` reads the hosts' remaining busy time
        (:data:`features.RemainingReader`), only for a policy whose feature
        schema uses it; None: unknown.
        """
        started = time.perf_counter()
        try:
            outcome = self._weigh(names, columns, request, settings,
                                  nova_config, remaining)
        except Exception:  # noqa: BLE001 - must never escape into Nova
            outcome = self._failed(len(names))
        self.metrics.observe(time.perf_counter() - started, outcome, settings)
        return outcome

    def _failed(self, n: int) -> Outcome:
        self._count('calls', 'errors', f'abstained.{gate.ERROR}')
        self.errors.error('weigh', 'rl_weigher: scoring failed, abstaining',
                          exc_info=True)
        return Outcome([0.0] * n, False, gate.ERROR)

    def _weigh(self, names: Sequence[str], columns: features.HostColumns,
               request: features.RequestView, settings: Settings,
               nova_config: gate.NovaConfig | None,
               remaining: features.RemainingReader | None = None
               ) -> Outcome:
        n = len(names)
        if len(columns) != n:
            raise ValueError(f'{n} names for {len(columns)} hosts')
        zeros = [0.0] * n
        if settings.mode == 'off':
            return Outcome(zeros, False, 'mode_off')
        started = time.perf_counter()
        wall = time.time()
        if n == 0:
            # Nothing to weigh (Nova can call with an empty list): a clean
            # abstention, not an error.
            policy = None
            snap_status, snap_detail = 'none', ''
            x = np.zeros((0, features.SCHEMA.num_features), dtype=np.float32)
        else:
            policy = self.policies.get(settings.policy_path,
                                       settings.policy_check_interval_s)
            usage, snap_status, snap_detail = self.snapshots.get(
                settings.usage_snapshot_path, settings.snapshot_max_age_s,
                wall)
            # The columns of the schema the policy declares (v1 policies:
            # v1's, without reading what v2 adds).
            x = features.usage_matrix(
                names, columns, request, usage,
                schema=features.SCHEMA if policy is None else policy.schema,
                remaining=remaining)
        scores = None
        error = ''
        standing, note = gate.standing_verdict(policy, settings,
                                               nova_config) \
            if policy is not None else ('', '')
        if policy is None:
            error = self.policies.error
        elif standing and settings.mode == 'gated':
            pass    # it will not act whatever the scores: do not score
        elif n:
            try:
                scores = policy.score(x)
            except Exception as e:  # noqa: BLE001
                self._count('errors')
                self.errors.error('policy', 'rl_weigher: policy %s failed: '
                                  '%s', policy.version, e, exc_info=True)
                error = str(e)
        elapsed_ms = (time.perf_counter() - started) * 1000.0

        # The verdict is what gated mode would do; shadow mode records it
        # so an operator can read what the policy would have changed.
        decision = gate.decide(
            policy, x, scores, settings=settings, snapshot_status=snap_status,
            snapshot_detail=snap_detail, elapsed_ms=elapsed_ms,
            instance_uuid=request.instance_uuid, error=error,
            nova_config=nova_config,
            standing=None if policy is None else (standing, note))
        verdict, detail = decision.verdict, decision.detail
        reason = verdict if settings.mode == 'gated' else gate.MODE_SHADOW
        applied = reason == gate.APPLIED
        if verdict in (gate.POLICY_UNAVAILABLE, gate.SNAPSHOT_UNAVAILABLE,
                       gate.SNAPSHOT_STALE, gate.OVER_LATENCY_BUDGET):
            self.errors.error(verdict, 'rl_weigher: policy not usable: %s: '
                              '%s', verdict, detail)
        elif policy is not None and (standing or note):
            self._notice(policy.version, standing,
                         detail if standing else note)
        weights = decision.weights.tolist() if applied else zeros
        self._count('calls', 'applied' if applied else f'abstained.{reason}')

        if settings.decision_log_dir:
            self._log(settings, names, columns, request, x, scores, policy,
                      weights,
                      decision, reason, verdict, detail, wall, elapsed_ms)
        return Outcome(weights, applied, reason, decision.confidence,
                       policy.version if policy else None)

    def _notice(self, version: str, reason: str, detail: str) -> None:
        """Log, once per policy and reason (then at most once every
        :data:`NOTICE_LOG_INTERVAL_S`), that the policy will not act for a
        standing reason, or acts although its manifest says never."""
        kind = f'{reason or "override"}:{version}:{detail}'
        if reason:
            self.notices.warning(kind, 'rl_weigher: policy %s will not act '
                                 '(%s): %s', version, reason, detail)
        else:
            self.notices.warning(kind, 'rl_weigher: policy %s: %s', version,
                                 detail)

    # -- the decision record ----------------------------------------------
    def _log(self, settings: Settings, names, columns, request, x, scores,
             policy, weights, decision, reason, verdict, detail, wall,
             elapsed_ms) -> None:
        nova_weights = columns.nova_weight.tolist()
        schema = features.schema_for_width(x.shape[1])
        top_k = settings.explain_top_k
        mode = settings.mode

        def make_record() -> dict:
            mean = scores.mean(axis=0) if scores is not None else None
            rows = [[v if np.isfinite(v) else None for v in row]
                    for row in x.tolist()]
            host_records = []
            for i, name in enumerate(names):
                host_records.append({
                    'host': name,
                    'features': rows[i],
                    'nova_weight': _finite_or_none(nova_weights[i]),
                    'score': _finite_or_none(mean[i]) if mean is not None
                    else None,
                    'weight': weights[i],
                })
            why = []
            if mean is not None and top_k and np.isfinite(mean).all():
                top = [int(i) for i in np.argsort(-mean)[:top_k]]
                for i, effects in zip(top, policy.explain(x, top)):
                    why.append({'host': names[i], 'features': [
                        {'feature': schema.names[j],
                         'value': rows[i][j], 'effect': effect}
                        for j, effect in effects]})
            return {
                'time': wall,
                'instance_uuid': request.instance_uuid,
                'project_id': request.project_id,
                'flavor': {'name': request.flavor_name,
                           'vcpus': request.vcpus,
                           'memory_mb': request.memory_mb,
                           'disk_gb': request.disk_gb},
                'mode': mode,
                'policy_version': policy.version if policy else None,
                'feature_schema': schema.hash,
                'feature_names': list(schema.names),
                'confidence': decision.confidence,
                'gate': {'outcome': 'applied' if reason == gate.APPLIED
                         else 'abstained', 'reason': reason,
                         'verdict': verdict, 'detail': detail},
                'latency_ms': elapsed_ms,
                'hosts': host_records,
                'why': why,
            }

        self.decisions.submit(
            make_record, settings.decision_log_dir,
            settings.decision_log_file_mb * 1024 * 1024,
            settings.decision_log_max_mb * 1024 * 1024,
            settings.decision_log_queue_size)

    def flush_decision_log(self, timeout: float = 10.0) -> bool:
        return self.decisions.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop the decision log thread (it restarts on use)."""
        self.decisions.close(timeout)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
