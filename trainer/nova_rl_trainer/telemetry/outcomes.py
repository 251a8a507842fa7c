"""Outcomes of logged decisions: what followed each placement the weigher
saw, read from a metrics source.

Each decision record (:mod:`nova_rl_weigher.decision_records`) names the
instance being placed and the candidate hosts with their features. The
metrics source says where the instance went (its ``host``) and what every
instance used, so the host's life over ``horizon_s`` after the decision
is known, measured as the simulator measures it
(:mod:`nova_rl_trainer.simulation.objectives`):

* ``overload_minutes`` / ``hot_minutes``: the host's CPU demand (the sum
  of its instances' use) above its physical cores / above
  ``hot_threshold`` of them;
* ``vm_used_over_allocated``: the instance's mean CPU share of its vCPUs
  over the horizon;
* ``host_emptied``: whether the host held no instance at some point of
  the horizon;
* ``terms``: the objective terms accrued on that host over the horizon
  (``active_host_hours``, ``energy_kwh``, ``overload_host_hours``,
  ``hot_host_hours``, ``headroom_deficit_host_hours``, ``rejected``), so
  any objective's delayed reward of the decision is ``objective.value``.

One output line per decision joined, in time order, with the candidates
as logged (host, features, Nova's weight, the policy's score) and
``chosen_index``, the candidate that got the instance (None when the
instance went to a host the record does not list). A horizon that runs
past what the source has yet is ``complete: false`` (covered_s says how
much). Decisions that cannot be joined are counted by reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from typing import Iterable, Sequence

import numpy as np

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.simulator import SimConfig
from nova_rl_trainer.telemetry.ingest import fill_sizes
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import MetricsSource
from nova_rl_trainer.telemetry.sources import utc
from nova_rl_weigher import decision_records
from nova_rl_weigher import fileio

#: Default horizon: long enough for a placement's effect on its host to
#: show (the simulator's usage window is an hour), short enough to be
#: known by the next nightly run.
DEFAULT_HORIZON_S = 6 * 3600.0
#: Measurement interval when the source gives summaries only.
DEFAULT_GRANULARITY_S = 300.0
#: As the simulator compares demand with capacity.
_EPS = 1e-9

#: Reasons a decision is not joined (summary keys ``skipped_<reason>``).
SKIP_REASONS = ('no_instance', 'not_in_telemetry', 'host_unknown',
                'host_not_in_cluster', 'no_hosts')


@dataclasses.dataclass
class OutcomesResult:
    rows: list[dict]
    summary: dict
    warnings: list[str]
    #: Whether the source was asked anything: not when no decision names
    #: an instance and its candidate hosts (nothing to join).
    queried: bool = True


@dataclasses.dataclass
class HostSeries:
    """Per host and interval of the window: CPU demand (cores), instances
    alive, vCPUs and RAM allocated."""

    start: float
    granularity_s: float
    demand: np.ndarray
    alive: np.ndarray
    vcpus: np.ndarray
    ram_mb: np.ndarray

    def bin(self, t: float) -> int:
        return int(math.floor((t - self.start) / self.granularity_s))


def _posix(t: dt.datetime | None) -> float | None:
    return None if t is None else utc(t).timestamp()


def host_series(instances: Sequence[Instance],
                usage: dict[str, CpuUsage], hosts: Sequence[str],
                start: float, stop: float, granularity_s: float
                ) -> tuple[HostSeries, dict[str, tuple[np.ndarray, int]]]:
    """The hosts' series over ``[start, stop)`` and, per instance, its CPU
    shares by interval (NaN where unmeasured) and first interval.

    An interval the instance was alive without a measurement counts its
    mean use (a gap in telemetry is not an idle VM)."""
    n = max(1, int(math.ceil((stop - start) / granularity_s)))
    index = {h: i for i, h in enumerate(hosts)}
    shape = (len(hosts), n)
    series = HostSeries(start, granularity_s, np.zeros(shape),
                        np.zeros(shape, dtype=np.int32), np.zeros(shape),
                        np.zeros(shape))
    per_vm: dict[str, tuple[np.ndarray, int]] = {}
    for inst in instances:
        arrival = _posix(inst.arrival)
        departure = _posix(inst.departure)
        k0 = 0 if arrival is None else max(0, series.bin(arrival))
        k1 = n if departure is None else min(
            n, int(math.ceil((departure - start) / granularity_s)))
        if k1 <= k0:
            continue
        shares = np.full(k1 - k0, np.nan)
        u = usage.get(inst.id)
        if u is not None and u.shares is not None and u.times is not None:
            # A share is labelled with its interval's end.
            k = np.round((np.asarray(u.times, dtype=np.float64) - start)
                         / granularity_s).astype(np.int64) - 1 - k0
            ok = (k >= 0) & (k < k1 - k0)
            shares[k[ok]] = u.shares[ok]
        per_vm[inst.id] = (shares, k0)
        h = index.get(inst.host or '')
        if h is None:
            continue
        mean = u.mean if u is not None else 0.0
        filled = np.where(np.isnan(shares), mean, shares)
        vcpus = float(inst.vcpus or 0.0)
        series.demand[h, k0:k1] += filled * vcpus
        series.alive[h, k0:k1] += 1
        series.vcpus[h, k0:k1] += vcpus
        series.ram_mb[h, k0:k1] += float(inst.memory_mb or 0.0)
    return series, per_vm


def accrued_terms(series: HostSeries, cluster: ClusterSpec, h: int,
                  k0: int, k1: int, config: SimConfig) -> dict[str, float]:
    """The objective terms host ``h`` accrued in intervals ``[k0, k1)``,
    with the simulator's definitions and the cluster's power model."""
    a = cluster.per_host
    hours = series.granularity_s / 3600.0
    dem = series.demand[h, k0:k1]
    active = series.alive[h, k0:k1] > 0
    cores = float(a.vcpus[h])
    util = np.where(active, np.minimum(dem / cores, 1.0), 0.0)
    watts = np.where(active, a.idle_watts[h] + (a.peak_watts[h]
                                                - a.idle_watts[h]) * util,
                     a.empty_watts[h])
    alloc = np.maximum(series.vcpus[h, k0:k1] / a.vcpu_capacity[h],
                       series.ram_mb[h, k0:k1] / a.ram_capacity_mb[h])
    reserve = config.headroom_reserve
    deficit = np.where(active, np.maximum(alloc - (1.0 - reserve), 0.0)
                       / reserve, 0.0)
    over = active & (dem > cores + _EPS)
    hot = active & (dem > config.hot_threshold * cores + _EPS)
    return {
        'active_host_hours': float(active.sum() * hours),
        'energy_kwh': float(watts.sum() * hours / 1000.0),
        'overload_host_hours': float(over.sum() * hours),
        'hot_host_hours': float(hot.sum() * hours),
        'headroom_deficit_host_hours': float(deficit.sum() * hours),
        'rejected': 0.0,
    }


def _candidates(record: decision_records.Record) -> list[dict]:
    raw_hosts = record.raw.get('hosts') or []
    out = []
    for i, h in enumerate(record.hosts):
        c = {'host': h.host, 'features': list(h.features),
             'nova_weight': h.nova_weight, 'score': h.score,
             'weight': h.weight}
        raw = raw_hosts[i] if i < len(raw_hosts) else {}
        # A writer that logs the behaviour's propensities makes
        # importance sampling possible (see learning/off_policy.py).
        if isinstance(raw, dict) and 'propensity' in raw:
            c['propensity'] = raw['propensity']
        out.append(c)
    return out


def join(records: Iterable[decision_records.Record],
         source: MetricsSource, cluster: ClusterSpec, *,
         horizon_s: float = DEFAULT_HORIZON_S,
         config: SimConfig | None = None,
         now: dt.datetime | None = None) -> OutcomesResult:
    """Join ``records`` with what followed, read from ``source``.

    The source is queried only when some record names an instance and its
    candidate hosts (``queried`` in the result says whether it was).
    """
    if not (math.isfinite(horizon_s) and horizon_s > 0):
        raise ValueError(f'--horizon-s {horizon_s:g}: must be a positive '
                         'number of seconds')
    config = config or SimConfig()
    records = [r for r in records]
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    warnings: list[str] = []
    hosts = list(cluster.per_host.names)
    host_index = {h: i for i, h in enumerate(hosts)}
    summary = {'source': source.name, 'decisions': len(records),
               'joined': 0, 'complete': 0, 'horizon_s': horizon_s}
    usable = [r for r in records if r.instance_uuid and r.hosts]
    skipped['no_instance'] = sum(1 for r in records if not r.instance_uuid)
    skipped['no_hosts'] = sum(1 for r in records
                              if r.instance_uuid and not r.hosts)
    rows: list[dict] = []
    if usable:
        now_s = (_posix(now) if now is not None
                 else dt.datetime.now(dt.timezone.utc).timestamp())
        start = min(r.time for r in usable)
        stop = min(max(r.time for r in usable) + horizon_s, now_s)
        stop = max(stop, start + 1.0)
        t_start = dt.datetime.fromtimestamp(start, dt.timezone.utc)
        t_stop = dt.datetime.fromtimestamp(stop, dt.timezone.utc)
        # Sizes a source lacks (a gauge older than its archive's span)
        # come from the instance's flavor peers, as ingest takes them.
        complete, skipped_sizes, _ = fill_sizes(
            source.instances(t_start, t_stop))
        instances = complete + skipped_sizes
        usage = dict(source.cpu_usage(complete, t_start, t_stop)) \
            if complete else {}
        g = next((u.interval_s for u in usage.values() if u.interval_s),
                 DEFAULT_GRANULARITY_S)
        series, per_vm = host_series(instances, usage, hosts, start, stop, g)
        by_id = {i.id: i for i in instances}
        summary.update(start=t_start.isoformat(), stop=t_stop.isoformat(),
                       granularity_s=g, instances=len(instances))
        for r in usable:
            row, reason = _outcome(r, by_id.get(r.instance_uuid), series,
                                   per_vm, cluster, host_index, horizon_s,
                                   stop, config)
            if row is None:
                skipped[reason] += 1
                continue
            rows.append(row)
        warnings.extend(source.warnings())
    summary['joined'] = len(rows)
    summary['complete'] = sum(1 for r in rows if r['complete'])
    summary['chosen_among_candidates'] = sum(
        1 for r in rows if r['chosen_index'] is not None)
    summary.update({f'skipped_{k}': v for k, v in skipped.items()})
    if skipped['not_in_telemetry']:
        warnings.append(f"{skipped['not_in_telemetry']} decisions for "
                        'instances the source does not know (failed '
                        'builds, or telemetry not yet written)')
    if skipped['host_not_in_cluster']:
        warnings.append(f"{skipped['host_not_in_cluster']} decisions placed "
                        'on hosts the cluster file does not list (is it '
                        'current? nova-rl-trainer cluster --from-placement)')
    return OutcomesResult(rows, summary, warnings, queried=bool(usable))


def _outcome(record: decision_records.Record, inst: Instance | None,
             series: HostSeries, per_vm: dict, cluster: ClusterSpec,
             host_index: dict[str, int], horizon_s: float, stop: float,
             config: SimConfig) -> tuple[dict | None, str]:
    if inst is None:
        return None, 'not_in_telemetry'
    if not inst.host:
        return None, 'host_unknown'
    h = host_index.get(inst.host)
    if h is None:
        return None, 'host_not_in_cluster'
    g = series.granularity_s
    k0 = max(0, series.bin(record.time))
    end = min(record.time + horizon_s, stop)
    k1 = min(series.demand.shape[1], max(k0, int(math.ceil(
        (end - series.start) / g))))
    terms = accrued_terms(series, cluster, h, k0, k1, config)
    shares, first = per_vm.get(inst.id, (np.array([]), 0))
    mine = shares[max(0, k0 - first):max(0, k1 - first)]
    mine = mine[~np.isnan(mine)]
    names = [c.host for c in record.hosts]
    covered = (k1 - k0) * g
    return {
        'time': record.time,
        'instance_uuid': record.instance_uuid,
        'project_id': record.project_id,
        'mode': record.mode,
        'policy_version': record.policy_version,
        'outcome': record.outcome,
        'reason': record.reason,
        'confidence': record.confidence,
        'host': inst.host,
        'chosen_index': names.index(inst.host) if inst.host in names
        else None,
        'vcpus': inst.vcpus,
        'horizon_s': horizon_s,
        'covered_s': covered,
        'complete': covered + g > horizon_s,
        'overload_minutes': terms['overload_host_hours'] * 60.0,
        'hot_minutes': terms['hot_host_hours'] * 60.0,
        'vm_used_over_allocated': float(mine.mean()) if mine.size else None,
        'host_emptied': bool((series.alive[h, k0:k1] == 0).any()),
        'terms': terms,
        'feature_names': list(record.feature_names),
        'candidates': _candidates(record),
    }, ''


def outcomes_jsonl(rows: Sequence[dict]) -> str:
    return ''.join(json.dumps(r, separators=(',', ':'), allow_nan=False)
                   + '\n' for r in rows)


def write(rows: Sequence[dict], path: str) -> None:
    """Write the outcomes atomically (one JSON object per line)."""
    fileio.atomic_write(path, outcomes_jsonl(rows))


def read(path: str) -> list[dict]:
    """The rows of an outcomes file; ValueError naming the line if one is
    not an outcome."""
    rows = []
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f'{path}:{n}: not JSON: {e.msg}') from None
            if not (isinstance(row, dict) and isinstance(
                    row.get('terms'), dict) and isinstance(
                    row.get('candidates'), list)):
                raise ValueError(f'{path}:{n}: not an outcome record (no '
                                 "'terms' or 'candidates')")
            rows.append(row)
    return rows
