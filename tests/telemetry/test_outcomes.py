"""``outcomes``: decision records joined with what followed, on a cloud
whose use is known interval by interval (an in-memory metrics source; the
Gnocchi path is checked end to end in test_end_to_end.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.telemetry import outcomes
from nova_rl_trainer.telemetry.sources import CpuUsage
from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_trainer.telemetry.sources import MetricsSource
from nova_rl_weigher.decision_records import Record
from tests.telemetry import cli_runner

UTC = dt.timezone.utc
T0 = 1_780_000_200.0     # a multiple of 300 s
G = 300.0


def at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, UTC)


class Known(MetricsSource):
    """Instances and per-interval CPU shares given by the test."""

    name = 'known'

    def __init__(self, vms: dict[str, tuple]) -> None:
        self.vms = vms

    @classmethod
    def from_arguments(cls, args):
        raise NotImplementedError

    def instances(self, start, stop):
        return [Instance(id=i, host=host, vcpus=vcpus, memory_mb=1024,
                         launched_at=at(a), deleted_at=None if d is None
                         else at(d))
                for i, (host, vcpus, a, d, _shares) in self.vms.items()]

    def cpu_usage(self, instances, start, stop):
        out = {}
        for inst in instances:
            host, vcpus, a, d, shares = self.vms[inst.id]
            shares = np.asarray(shares, dtype=float)
            # Interval k of the VM's life ends at a + (k + 1) * G.
            times = a + G * (np.arange(len(shares)) + 1)
            out[inst.id] = CpuUsage.from_shares(shares, times=times,
                                                interval_s=G)
        return out


CLUSTER = ClusterSpec.from_dict({'host_groups': [{
    'name': 'c', 'count': 2, 'vcpus': 4, 'ram_mb': 8192,
    'cpu_allocation_ratio': 4.0, 'idle_watts': 100, 'peak_watts': 300,
    'hosts': ['a', 'b']}]})


def record(t: float, uuid: str, hosts=('a', 'b')) -> Record:
    return Record.from_json({
        'time': t, 'instance_uuid': uuid, 'project_id': 'p', 'mode':
        'shadow', 'policy_version': 'v1', 'confidence': 0.5,
        'gate': {'outcome': 'abstained', 'reason': 'mode_shadow'},
        'feature_names': ['f0', 'f1'],
        'hosts': [{'host': h, 'features': [float(i), None],
                   'nova_weight': 1.0 - i, 'score': float(i), 'weight': 0}
                  for i, h in enumerate(hosts)]})


def cloud() -> Known:
    hour = 12
    return Known({
        # 4 vCPUs on a: fully busy for an hour, then half.
        'vm1': ('a', 4, T0, None, [1.0] * hour + [0.5] * hour),
        # 2 vCPUs on a, for the first hour only, half busy.
        'vm2': ('a', 2, T0, T0 + 3600, [0.5] * hour),
        # 1 vCPU on b for an hour and a half, then b is empty.
        'vm3': ('b', 1, T0, T0 + 5400, [0.25] * 18),
    })


def test_terms_over_the_horizon():
    result = outcomes.join(
        [record(T0, 'vm2'), record(T0, 'vm3'), record(T0, 'gone'),
         record(T0, '')], cloud(), CLUSTER, horizon_s=2 * 3600,
        now=at(T0 + 2 * 86400))
    s = result.summary
    assert (s['decisions'], s['joined'], s['complete']) == (4, 2, 2)
    assert s['skipped_not_in_telemetry'] == 1
    assert s['skipped_no_instance'] == 1
    vm2, vm3 = result.rows
    # a: 4 + 1 = 5 cores used of 4 in the first hour, then 2.
    assert vm2['host'] == 'a' and vm2['chosen_index'] == 0
    assert vm2['overload_minutes'] == pytest.approx(60)
    assert vm2['hot_minutes'] == pytest.approx(60)
    assert vm2['vm_used_over_allocated'] == pytest.approx(0.5)
    assert not vm2['host_emptied']
    t = vm2['terms']
    assert t['active_host_hours'] == pytest.approx(2.0)
    # 100 W + 200 W x util: an hour at 1.0, an hour at 0.5.
    assert t['energy_kwh'] == pytest.approx((300 + 200) / 1000)
    # Allocated: 6 of 16 vCPUs, then 4: below the 80% reserve line.
    assert t['headroom_deficit_host_hours'] == 0.0
    assert vm3['host'] == 'b' and vm3['chosen_index'] == 1
    assert vm3['overload_minutes'] == vm3['hot_minutes'] == 0
    assert vm3['host_emptied']
    assert vm3['terms']['active_host_hours'] == pytest.approx(1.5)
    assert vm3['candidates'][1]['features'] == [1.0, None]


def test_a_horizon_past_the_telemetry_is_incomplete():
    result = outcomes.join([record(T0 + 3600, 'vm1')], cloud(), CLUSTER,
                           horizon_s=6 * 3600, now=at(T0 + 7200))
    (row,) = result.rows
    assert not row['complete'] and row['covered_s'] == pytest.approx(3600)


def test_hosts_outside_the_cluster_or_the_candidates():
    small = ClusterSpec.from_dict({'host_groups': [{
        'name': 'c', 'count': 1, 'vcpus': 4, 'ram_mb': 8192,
        'hosts': ['a']}]})
    result = outcomes.join([record(T0, 'vm3'), record(T0, 'vm1', ('b',))],
                           cloud(), small, now=at(T0 + 86400))
    assert result.summary['skipped_host_not_in_cluster'] == 1
    (row,) = result.rows
    assert row['chosen_index'] is None
    assert any('cluster file does not list' in w for w in result.warnings)


class Unreachable(MetricsSource):
    """A source that fails the test if it is asked anything."""

    name = 'unreachable'

    @classmethod
    def from_arguments(cls, args):
        raise NotImplementedError

    def instances(self, start, stop):
        raise AssertionError('the source was queried')

    def cpu_usage(self, instances, start, stop):
        raise AssertionError('the source was queried')


def test_nothing_to_join_queries_nothing():
    """No decision, or none naming an instance and its hosts: the result
    says the source was not queried (and it was not)."""
    for records in ([], [record(T0, ''), record(T0, 'vm1', hosts=())]):
        result = outcomes.join(records, Unreachable(), CLUSTER,
                               now=at(T0 + 86400))
        assert result.queried is False
        assert result.rows == [] and result.warnings == []
        assert result.summary['decisions'] == len(records)
        assert result.summary['joined'] == 0
        assert 'instances' not in result.summary
    assert outcomes.join([record(T0, 'vm2')], cloud(), CLUSTER,
                         now=at(T0 + 86400)).queried is True


def test_written_atomically_and_read_back(tmp_path):
    result = outcomes.join([record(T0, 'vm2')], cloud(), CLUSTER,
                           now=at(T0 + 86400))
    path = tmp_path / 'outcomes.jsonl'
    outcomes.write(result.rows, str(path))
    assert outcomes.read(str(path)) == result.rows
    path.write_text('{"time": 1}\n')
    with pytest.raises(ValueError, match=r'outcomes.jsonl:1: not an '
                                         'outcome record'):
        outcomes.read(str(path))


def test_cli_errors_are_one_line(tmp_path):
    trace = tmp_path / 'trace.csv'
    trace.write_text('vm_id,project_id,arrival_s,departure_s,vcpus,'
                     'memory_mb,disk_gb,cpu_util_mean,cpu_util_p95\n')
    out = tmp_path / 'out.jsonl'
    run = cli_runner.run(['outcomes', '--source', 'csv', '--trace',
                          str(trace), '--decisions', str(tmp_path / 'no'),
                          '--cluster', str(tmp_path / 'c.json'), '--out',
                          str(out)])
    assert run.rc == 2
    assert run.error.startswith('nova-rl-trainer: error: --decisions ')
    (tmp_path / 'log').mkdir()
    run = cli_runner.run(['outcomes', '--source', 'csv', '--trace',
                          str(trace), '--decisions', str(tmp_path / 'log'),
                          '--cluster', str(tmp_path / 'c.json'), '--out',
                          str(out)])
    assert run.rc == 2 and 'c.json' in run.error, run.err
    assert not out.exists()
