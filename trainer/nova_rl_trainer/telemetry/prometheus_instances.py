"""The instances of a window, for the ``prometheus`` metrics source
(:mod:`nova_rl_trainer.telemetry.prometheus_source`).

Lifetimes: an instance arrives at its first sample in the window and
leaves at its last; one with a sample in the last step (or Prometheus's
5-minute lookback, whichever is longer) before ``--stop`` is still
running. The resolution is Ceilometer's polling interval (the exporter
updates its gauges once a cycle, 300 s by default, and keeps a deleted
instance's series until the next cycle) plus the scrape interval, and
``--step`` for the first/last-seen subquery.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import Callable

from nova_rl_trainer.telemetry.prometheus_promql import duration
from nova_rl_trainer.telemetry.prometheus_promql import METER_LABEL
from nova_rl_trainer.telemetry.prometheus_promql import METERS
from nova_rl_trainer.telemetry.prometheus_promql import PRESENCE_METERS
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import SourceError
from nova_rl_trainer.telemetry.sources import utc

#: Prometheus's default ``--query.lookback-delta``.
LOOKBACK_S = 300.0


@dataclasses.dataclass
class _Seen:
    first: float | None = None
    last: float | None = None
    last_labels: dict | None = None


class PrometheusInstances:
    """The instances query of the ``prometheus`` source, a base of its
    :class:`~nova_rl_trainer.telemetry.prometheus_source.PrometheusSource`
    (with its requests and selectors)."""

    def instances(self, start: dt.datetime,
                  stop: dt.datetime) -> list[Instance]:
        start, stop = utc(start), utc(stop)
        t0, t1 = start.timestamp(), stop.timestamp()
        lo = t0 - self.step_s       # one step before: running at start
        r = self.resource_label
        group = self._by(r, self.project_label, self.host_label,
                         'flavor_id', 'flavor_name')

        # Last value of every meter (sizes, and which meters it has).
        def last_values(a: float, b: float) -> list:
            expr = (f'max by ({r}, {METER_LABEL}) ('
                    + self._union(METERS, lambda s: f'last_over_time({s}'
                                  f'[{duration(b - a)}])') + ')')
            return self._query('the instances query (last values)', expr, b)

        def seen(fn: str, agg: str, by: str) -> Callable:
            def go(a: float, b: float) -> list:
                inner = self._union(
                    PRESENCE_METERS,
                    lambda s: f'{agg} by ({by}) (timestamp({s}))')
                expr = (f'{agg} by ({by}) ({fn}(({inner})'
                        f'[{duration(b - a)}:{duration(self.step_s)}]))')
                return self._query(f'the instances query ({fn})', expr, b)
            return go

        values: dict[str, dict[str, float]] = {}
        for part in self._split('the instances query', lo, t1, last_values):
            for labels, v in part:
                rid, meter = labels.get(r), labels.get(METER_LABEL)
                if rid and meter in METERS and math.isfinite(v):
                    values.setdefault(rid, {})[meter] = v
        if not values:
            self._check_empty(lo, t1)
            return []
        found: dict[str, _Seen] = {}
        for part in self._split('the instances query', lo, t1,
                                seen('min_over_time', 'min', r)):
            for labels, v in part:
                rid = labels.get(r)
                if rid and math.isfinite(v):
                    s = found.setdefault(rid, _Seen())
                    s.first = v if s.first is None else min(s.first, v)
        for part in self._split('the instances query', lo, t1,
                                seen('max_over_time', 'max', group)):
            for labels, v in part:
                rid = labels.get(r)
                if rid and math.isfinite(v):
                    s = found.setdefault(rid, _Seen())
                    if s.last is None or v >= s.last:
                        s.last, s.last_labels = v, labels
        current = t1 - max(self.step_s, LOOKBACK_S)
        out = []
        for rid, s in found.items():
            if s.first is None or s.last is None:
                continue
            labels = s.last_labels or {}
            got = values.get(rid, {})
            disk = None
            if 'disk.root.size' in got or 'disk.ephemeral.size' in got:
                disk = (got.get('disk.root.size', 0.0)
                        + got.get('disk.ephemeral.size', 0.0))
            running = s.last > current
            inst = Instance(
                id=rid,
                project_id=labels.get(self.project_label) or None,
                host=self._host(labels.get(self.host_label)),
                flavor_id=labels.get('flavor_id') or None,
                flavor_name=labels.get('flavor_name') or None,
                started_at=_datetime(s.first),
                ended_at=None if running else _datetime(s.last),
                vcpus=got.get('vcpus'), memory_mb=got.get('memory'),
                disk_gb=disk, metrics=frozenset(got))
            if inst.lived_in(start, stop):
                out.append(inst)
        if self.host_label == 'vm_instance':
            self._warnings.append(
                "--host-label vm_instance: Ceilometer's vm_instance is Nova's "
                'hashed hostId, not the host name Nova and the weigher use')
        elif out and not any(i.host for i in out):
            self._warnings.append(
                f"no series has the label {self.host_label!r}: the trace's "
                'host column is empty (add the compute host with a '
                'relabelling rule, or name the label with --host-label, '
                'e.g. instance)')
        out.sort(key=lambda i: (i.arrival or start, i.id))
        return out

    def _host(self, value: str | None) -> str | None:
        if not value:
            return None
        if self.host_label == 'instance':
            value = re.sub(r':\d+$', '', value)
        return value

    def _check_empty(self, lo: float, hi: float) -> None:
        """No instance in the window: an error when the metrics are not in
        this Prometheus at all or lack the resource label (a wrong
        Prometheus, prefix or label), else simply an empty window."""
        names = self._get('the metric names', 'api/v1/label/__name__/values',
                          [])
        if not isinstance(names, list):
            raise SourceError(self._malformed('the metric names',
                                              'data is not a list'))
        wanted = [self.metric(m) for m in PRESENCE_METERS]
        present = [n for n in wanted if n in set(names)]
        if not present:
            raise SourceError(
                f'missing metric: Prometheus at {self.where} has no '
                f'{", ".join(wanted[:-1])} or {wanted[-1]} series at all: '
                "is Ceilometer's Prometheus exporter ([polling] "
                'enable_prometheus_exporter) scraped by this Prometheus? '
                '(--metric-prefix for other names)')
        matcher = f'{present[0]}{{{self.match}}}' if self.match else \
            present[0]
        labels = self._get('the label names', 'api/v1/labels',
                           [('match[]', matcher)])
        if isinstance(labels, list) and labels and \
                self.resource_label not in labels:
            shown = ', '.join(sorted(x for x in labels
                                     if x != '__name__')[:12])
            raise SourceError(
                f'{present[0]} in Prometheus at {self.where} has no label '
                f'{self.resource_label!r} (it has: {shown}): give '
                '--resource-label (resource_id for the Pushgateway '
                'publisher)')


def _datetime(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc)
