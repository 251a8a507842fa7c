"""The usage snapshot built from a metrics source, without servers: a
source in memory with known series, and what ``build``/``build_v2`` and
``write`` make of it (the telemetry suite runs the same code against a
real Gnocchi)."""

import datetime as dt
import json

import numpy as np
import pytest

from nova_rl_trainer.telemetry import measured_lifetimes
from nova_rl_trainer.telemetry import snapshot
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import MetricsSource

STEP = 300.0
STOP = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc)


def ago(seconds: float) -> dt.datetime:
    return STOP - dt.timedelta(seconds=seconds)


class InMemory(MetricsSource):
    """Instances and their CPU shares per 300 s interval, given whole."""

    name = 'memory'

    def __init__(self, instances, shares):
        self._instances = instances
        self._shares = shares       # id -> {interval end: share}

    @classmethod
    def from_arguments(cls, args):      # pragma: no cover - not a plugin
        raise NotImplementedError

    def instances(self, start, stop):
        return [i for i in self._instances
                if i.arrival < stop
                and (i.departure is None or i.departure >= start)]

    def cpu_usage(self, instances, start, stop):
        out = {}
        for inst in instances:
            points = {t: v for t, v in self._shares.get(inst.id, {}).items()
                      if start.timestamp() < t <= stop.timestamp()}
            if points:
                times = np.array(sorted(points))
                out[inst.id] = CpuUsage.from_shares(
                    np.array([points[t] for t in times]), times, STEP)
        return out


def series(begin_s: float, values) -> dict[float, float]:
    """Shares of the intervals ending ``begin_s`` + 300, + 600, ..."""
    return {begin_s + STEP * (k + 1): v for k, v in enumerate(values)}


def vm(id, host, vcpus, launched, deleted=None, project='p', flavor='m1'):
    return Instance(id=id, project_id=project, host=host, flavor_name=flavor,
                    launched_at=launched, deleted_at=deleted, vcpus=vcpus,
                    memory_mb=1024.0,
                    metrics=frozenset({'cpu', 'vcpus', 'memory'}))


CAPACITIES = {'cmp-1': snapshot.Capacity(8.0, 16384.0),
              'cmp-2': snapshot.Capacity(8.0, 16384.0)}


def test_host_series_sum_their_instances_and_idle_hosts_are_zero():
    t0 = ago(3600).timestamp()
    source = InMemory(
        [vm('a', 'cmp-1', 4, ago(7200)), vm('b', 'cmp-1', 2, ago(7200)),
         vm('c', 'elsewhere', 2, ago(7200))],
        {'a': series(t0, [0.5] * 12), 'b': series(t0, [1.0] * 6 + [0.0] * 6),
         'c': series(t0, [0.5] * 12)})
    snap = snapshot.build(source, CAPACITIES, STOP, 3600)
    # a: 4 x 0.5 = 2 cores; b: 2 cores for half the hour; over 8 cores.
    assert snap.hosts['cmp-1']['cpu_util_mean'] == pytest.approx(0.375)
    assert snap.hosts['cmp-1']['cpu_util_p95'] == pytest.approx(0.5)
    assert snap.host_peaks['cmp-1'][0] == pytest.approx(0.5)
    # Flavor memory counted without memory.usage: 2 x 1 GiB of 16.
    assert snap.hosts['cmp-1']['mem_util_mean'] == pytest.approx(0.125)
    assert snap.hosts['cmp-2'] == {'cpu_util_mean': 0.0, 'cpu_util_p95': 0.0,
                                   'mem_util_mean': 0.0, 'mem_util_p95': 0.0}
    assert 'elsewhere' not in snap.hosts
    assert any('capacity is unknown' in w and 'elsewhere' in w
               for w in snap.warnings)
    assert snap.allocation == {'cmp-1': (6.0, 2048.0)}
    assert snap.summary['hosts_idle'] == 1
    assert snap.summary['intervals'] == 12


def test_an_instance_deleted_before_it_launched_is_no_sibling(tmp_path):
    """Nova's ``deleted_at`` before ``launched_at`` (services' clocks
    apart): its lifetime would be negative, which the weigher's writer
    refuses, losing the whole snapshot. It is left out of every
    lifetime."""
    t0 = ago(3600).timestamp()
    source = InMemory(
        [vm('a', 'cmp-1', 2, ago(600)),
         vm('b', 'cmp-1', 2, ago(500), deleted=ago(300)),
         vm('c', 'cmp-1', 2, ago(400), deleted=ago(410)),
         vm('d', 'cmp-1', 2, ago(350), deleted=ago(360))],
        {'a': series(t0, [0.1] * 12)})
    snap = snapshot.build_v2(source, CAPACITIES, STOP, 3600)
    project = snap.projects['p']
    assert project['lifetime'] == {'median_s': 200.0, 'p90_s': 200.0,
                                   'count': 1}
    # Siblings: b ended after 200 s, a still running at 600 s.
    recent = project['recent_lifetime']
    assert recent == {'median_s': 200.0, 'p90_s': 600.0, 'count': 2}
    path = tmp_path / 'usage.json'
    snapshot.write(snap, str(path))
    written = json.loads(path.read_text())
    assert written['projects']['p']['recent_lifetime'] == recent


def test_lifetimes_per_project_flavor_and_pair():
    flavors = measured_lifetimes.measure(
        [vm('a', 'h', 1, ago(5000), ago(4000), 'p', 'small'),
         vm('b', 'h', 1, ago(5000), ago(3000), 'p', 'big'),
         vm('c', 'h', 1, ago(5000), ago(2000), 'q', 'small'),
         vm('d', 'h', 1, ago(5000), None, 'q', 'small')],
        STOP, projects := {})
    assert flavors['small']['lifetime']['count'] == 2
    assert flavors['big']['lifetime']['median_s'] == 2000.0
    assert projects['p']['flavors']['small']['lifetime']['median_s'] == 1000.0
    assert projects['q']['lifetime']['count'] == 1
