"""CPU and memory usage from the series, for the ``prometheus`` metrics
source (:mod:`nova_rl_trainer.telemetry.prometheus_source`).

CPU: the VM's share of its vCPUs in each step ``(t - step, t]`` is the
increase of ``ceilometer_cpu`` between the samples Prometheus selects at
``t - step`` and at ``t`` (``x - x offset step``), divided by the time
between those two samples (``timestamp()``), by 1e9 and by ``vcpus``. The
steps tile the window and the increases add up to the counter's whole
increase, whatever the phase of the polling cycle, the scrapes and the
steps; ``rate(x[step])`` would miss (or count twice) the jump of a
polling cycle that falls between two windows, because the exporter
repeats the same value between cycles. A counter that went back (reboot,
migration) is handled as Prometheus's ``rate()`` handles a reset: it
restarted from zero, so its new value is the increase. The trailing steps
of an instance that went away where the counter did not move are the
exporter repeating its last value until the next cycle, not use, and are
dropped. Use a ``--step`` that is a multiple of the polling interval
(300 s by default): a shorter one sees the counter move in one step of
each cycle and not in the others.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Sequence

import numpy as np

from nova_rl_trainer.telemetry.prometheus_promql import CPU_METER
from nova_rl_trainer.telemetry.prometheus_promql import duration
from nova_rl_trainer.telemetry.prometheus_promql import MEMORY_USAGE_METER
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import utc

#: Prometheus answers at most 11,000 points per series to a range query.
MAX_STEPS_PER_QUERY = 10_000


class PrometheusUsage:
    """CPU and memory usage of the ``prometheus`` source, a base of its
    :class:`~nova_rl_trainer.telemetry.prometheus_source.PrometheusSource`
    (with its requests and selectors)."""

    def cpu_usage(self, instances: Sequence[Instance], start: dt.datetime,
                  stop: dt.datetime) -> dict[str, CpuUsage]:
        start, stop = utc(start), utc(stop)
        t0, t1 = start.timestamp(), stop.timestamp()
        by_id = {i.id: i for i in instances}
        wanted = [i for i in instances if i.metrics is None
                  or CPU_METER in i.metrics]
        if not wanted:
            return {}
        step = self.step_s
        n_steps = math.floor((t1 - t0) / step + 1e-9)
        if n_steps < 1:
            self._warnings.append(
                f'the window is shorter than --step {step:g} s: no CPU '
                'usage')
            return {}
        r = self.resource_label
        x = self.selector(CPU_METER)
        off = f'offset {duration(step)}'
        delta = f'({x} - {x} {off})'
        expr = (f'max by ({r}) ((({delta} >= 0) or ({x} and ({delta} < 0)))'
                f' / ((timestamp({x}) - timestamp({x} {off})) > 0))')
        series = self._range_by_resource('the CPU query', expr, t0, n_steps,
                                         set(by_id), len(wanted))
        resets = self._resets(t0, t1)
        out = {}
        last_step = t0 + n_steps * step
        for rid, (times, rates) in series.items():
            inst = by_id[rid]
            if not inst.vcpus or not inst.vcpus > 0:
                continue
            order = np.argsort(times, kind='stable')
            times, rates = times[order], rates[order]
            if times.size and times[-1] < last_step - step / 2:
                # Gone before the end: the exporter's last value repeated.
                moving = np.flatnonzero(rates != 0)
                keep = moving[-1] + 1 if moving.size else 0
                times, rates = times[:keep], rates[:keep]
            if times.size == 0:
                continue
            gaps = 0
            if times.size > 1:
                gaps = int(np.sum(np.maximum(
                    0, np.round(np.diff(times) / step) - 1)))
            usage = CpuUsage.from_shares(
                rates / (1e9 * inst.vcpus), times=times, interval_s=step,
                resets=resets.get(rid, 0), gaps=gaps)
            if usage is not None:
                out[rid] = usage
        return out

    def _resets(self, t0: float, t1: float) -> dict[str, int]:
        """Counter resets of each instance's ``cpu`` in the window."""
        r = self.resource_label
        x = self.selector(CPU_METER)

        def run(a: float, b: float) -> list:
            return self._query('the CPU resets query',
                               f'sum by ({r}) (resets({x}'
                               f'[{duration(b - a)}]))', b)
        out: dict[str, int] = {}
        for part in self._split('the CPU resets query', t0, t1, run):
            for labels, v in part:
                rid = labels.get(r)
                if rid and math.isfinite(v):
                    out[rid] = out.get(rid, 0) + int(round(v))
        return out

    def memory_usage(self, instances: Sequence[Instance],
                     start: dt.datetime, stop: dt.datetime
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Guest memory in use (``memory.usage``, MiB) at each step, by
        instance id."""
        start, stop = utc(start), utc(stop)
        t0, t1 = start.timestamp(), stop.timestamp()
        ids = {i.id for i in instances}
        r = self.resource_label
        expr = f'max by ({r}) ({self.selector(MEMORY_USAGE_METER)})'
        n_steps = math.floor((t1 - t0) / self.step_s + 1e-9)
        return self._range_by_resource('the memory usage query', expr, t0,
                                       n_steps, ids, len(ids))

    def _range_by_resource(self, what: str, expr: str, t0: float,
                           n_steps: int, ids: set[str], n_series: int
                           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``expr`` at each step ``t0 + step .. t0 + n_steps * step``, by
        instance id (those in ``ids``): ``(times, values)``, finite values
        only. Asked in chunks of at most ``--max-points`` values for
        ``n_series`` series (and :data:`MAX_STEPS_PER_QUERY` steps), each
        split in time if Prometheus finds it too large."""
        step = self.step_s
        r = self.resource_label
        per_query = max(1, min(MAX_STEPS_PER_QUERY,
                               self.max_points // max(1, n_series)))
        got: dict[str, list] = {}
        k = 1
        while k <= n_steps:
            last = min(n_steps, k + per_query - 1)

            def run(a: float, b: float) -> list:
                # Steps a + step .. b: the intervals ending in (a, b].
                return self._query_range(what, expr, a + step, b, step)
            for part in self._split(what, t0 + (k - 1) * step,
                                    t0 + last * step, run):
                for labels, times, vals in part:
                    rid = labels.get(r)
                    if rid in ids:
                        got.setdefault(rid, []).append((times, vals))
            k = last + 1
        out = {}
        for rid, parts in got.items():
            times = np.concatenate([p[0] for p in parts])
            vals = np.concatenate([p[1] for p in parts])
            ok = np.isfinite(vals)
            out[rid] = (times[ok], vals[ok])
        return out
