"""End to end: a month of a simulated cloud's telemetry through Ceilometer
into a real Gnocchi, and the whole loop run on it.

The cloud (:mod:`tests.telemetry.month_cloud`): six compute hosts,
registered in a real Placement as Nova's compute service registers them,
and a month of 60 VMs placed by the simulator with Nova's default weighers
while the weigher's own :class:`~nova_rl_weigher.scorer.Scorer` scores
every request in shadow mode and writes its decision log on the simulated
clock. Each placed VM gets what Ceilometer would have written for it
(notification gauges at launch and deletion, the ``cpu`` counter polled
every 5 minutes integrating the simulator's own utilisation model), written
by Ceilometer's publisher into Gnocchi and aggregated by metricd.

Checked: ``ingest`` returns the same workload (VM count exact, lifetimes
within one granularity, sizes and hosts exact, each VM's mean CPU within 2%
of what its polls measured); then ``cluster --from-placement``,
``snapshot``, ``outcomes`` (every decision joined; its host's hot and
overload minutes checked against the simulated use), ``retrain`` (one PPO
iteration from the served policy, with its off-policy estimate) and
``publish`` run on what the previous steps wrote.
"""

from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import csv_trace
from nova_rl_trainer.simulation import traces
from nova_rl_trainer.telemetry.ingest import TRACE_COLUMNS
from tests.telemetry import cli_runner
from tests.telemetry import month_cloud
from tests.telemetry.month_cloud import CORES
from tests.telemetry.month_cloud import DAYS
from tests.telemetry.month_cloud import G
from tests.telemetry.month_cloud import HORIZON_S
from tests.telemetry.month_cloud import HOSTS
from tests.telemetry.month_cloud import STOP
from tests.telemetry.month_cloud import T0
from tests.telemetry.placement_server import placement  # noqa: F401


@pytest.fixture(scope='module')
def cloud(telemetry, placement, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp('month')
    built = month_cloud.build(base, telemetry)
    month_cloud.add_hosts(placement)
    steps = month_cloud.loop(base, built, telemetry.endpoint,
                             placement.endpoint)
    built['steps'] = {s.name: s for s in steps}
    built['order'] = [s.name for s in steps]
    built['runs'] = {}
    return built


def run_step(cloud: dict, name: str) -> cli_runner.Run:
    """Run the loop's step ``name`` once (every step before it first)."""
    for before in cloud['order'][:cloud['order'].index(name) + 1]:
        if before in cloud['runs']:
            continue
        step = cloud['steps'][before]
        started = time.monotonic()
        with month_cloud.environment(step.env):
            run = cli_runner.run(step.argv)
        run.seconds = time.monotonic() - started
        cloud['runs'][before] = run
        ok = (0, 3) if before == 'publish' else (0,)
        assert run.rc in ok, (before, run.err)
    return cloud['runs'][name]


def _rows(path) -> list[dict]:
    with open(path, newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


def test_ingest_returns_the_simulated_month(cloud):
    run = run_step(cloud, 'ingest')
    written = cloud['steps']['ingest'].writes
    start, stop = T0, STOP
    trace, vms = cloud['trace'], cloud['vms']
    with open(written['trace'], newline='', encoding='utf-8') as f:
        assert next(csv.reader(f)) == list(TRACE_COLUMNS)
    rows = {r['vm_id']: r for r in _rows(written['trace'])}
    by_uuid = {vm.id: (i, vm) for i, vm in vms.items()}
    # Every VM the simulator placed, nothing else.
    assert len(rows) == len(vms) == len(trace)
    assert set(rows) == set(by_uuid)
    for vm_id, row in rows.items():
        i, vm = by_uuid[vm_id]
        assert abs(float(row['arrival_s']) - trace.arrival_s[i]) <= G
        dep = trace.departure_s[i]
        if math.isnan(dep) or dep >= stop - start:
            assert row['departure_s'] == ''
        else:
            assert abs(float(row['departure_s']) - dep) <= G
        assert float(row['vcpus']) == trace.vcpus[i]
        assert float(row['memory_mb']) == int(trace.memory_mb[i])
        assert float(row['disk_gb']) == int(trace.disk_gb[i])
        assert row['host'] == vm.host
        assert row['project_id'] == vm.project_id
        expected = vm.expected_shares(start, stop)
        got = float(row['cpu_util_mean'])
        assert got == pytest.approx(expected.mean(), rel=0.02, abs=1e-4), \
            vm_id
    summary = json.loads(written['summary'].read_text())
    assert summary['instances'] == len(vms)
    assert summary['with_usage'] == len(vms)
    # The trainer reads it back with the simulated workload's peak demand.
    back = csv_trace.read_csv(str(written['trace']))
    assert len(back) == len(trace)
    for key, value in traces.peak_demand(trace).items():
        assert traces.peak_demand(back)[key] == pytest.approx(value)
    t = cloud['timings']
    print(f"\nend to end: {len(vms)} VMs over {DAYS} days placed in "
          f"{t['place_s']:.1f} s, {cloud['samples']} samples published in "
          f"{t['publish_s']:.1f} s, ingested in {run.seconds:.1f} s")


def expected_host_minutes(cloud: dict, host: str, t: float,
                          threshold: float) -> tuple[float, int]:
    """Minutes of ``[t, t + HORIZON_S)`` the simulated use of ``host``'s
    VMs was above ``threshold`` cores (the ground truth of what
    ``outcomes`` measures from Gnocchi), and how many of them arrived or
    left meanwhile (an interval they were up for part of is unmeasured:
    ``outcomes`` counts their mean there)."""
    k0 = int((t - T0) // G)
    k1 = min(int(math.ceil((t + HORIZON_S - T0) / G)), DAYS * 288)
    ks = np.arange(k0, k1)
    demand = np.zeros(k1 - k0)
    changes = 0
    for vm in cloud['vms'].values():
        if vm.host != host:
            continue
        changes += sum(1 for e in (vm.launched_at, vm.deleted_at)
                       if T0 + k0 * G <= e <= T0 + k1 * G)
        alive = ((T0 + (ks + 1) * G > vm.launched_at)
                 & (T0 + ks * G < vm.deleted_at))
        demand += np.where(alive, vm.shares[k0:k1] * vm.vcpus, 0.0)
    return float((demand > threshold).sum() * G / 60.0), changes


def test_cluster_and_snapshot(cloud):
    run_step(cloud, 'snapshot')
    spec = ClusterSpec.from_file(cloud['steps']['cluster'].writes['cluster'])
    assert set(spec.host_names) == set(HOSTS)
    assert spec.per_host.vcpus.tolist() == [CORES] * len(HOSTS)
    snap = json.loads(
        cloud['steps']['snapshot'].writes['snapshot'].read_text())
    live = {vm.host for vm in cloud['vms'].values()
            if vm.deleted_at > STOP - 1800}
    assert live and live <= set(snap['hosts'])


def test_outcomes_of_the_logged_decisions(cloud):
    run_step(cloud, 'outcomes')
    written = cloud['steps']['outcomes'].writes
    summary = json.loads(written['summary'].read_text())
    rows = [json.loads(line)
            for line in written['outcomes'].read_text().splitlines()]
    vms = {vm.id: vm for vm in cloud['vms'].values()}
    assert summary['decisions'] == len(vms)
    assert summary['joined'] == len(rows) == len(vms), summary
    late = sum(1 for vm in vms.values()
               if vm.launched_at + HORIZON_S > STOP)
    assert summary['complete'] == len(vms) - late
    hot_checked = 0
    for row in rows:
        vm = vms[row['instance_uuid']]
        assert row['host'] == vm.host
        # Nova chose among the candidates the weigher logged.
        assert row['candidates'][row['chosen_index']]['host'] == vm.host
        assert row['overload_minutes'] == pytest.approx(
            row['terms']['overload_host_hours'] * 60)
        if not row['complete']:
            continue
        # The host held this VM from its launch: active the whole horizon
        # unless the VM left.
        if vm.deleted_at >= row['time'] + HORIZON_S:
            assert row['terms']['active_host_hours'] == pytest.approx(
                HORIZON_S / 3600, abs=G / 3600)
            assert not row['host_emptied']
            assert row['vm_used_over_allocated'] == pytest.approx(
                vm.expected_shares(row['time'], row['time']
                                   + HORIZON_S).mean(), rel=0.05)
        for key, threshold in (('hot_minutes', 0.8 * CORES),
                               ('overload_minutes', CORES)):
            want, changes = expected_host_minutes(cloud, vm.host,
                                                  row['time'], threshold)
            # Measured and simulated use differ at the horizon's edges
            # and where a VM came or went: an interval of slack each.
            assert abs(row[key] - want) <= (2 + changes) * G / 60, \
                (key, row['time'], row[key], want)
            hot_checked += want > 0
    assert hot_checked > 0, 'no host ever ran hot: the check checks nothing'


def test_retrain_and_publish(cloud):
    run = run_step(cloud, 'retrain')
    written = cloud['steps']['retrain'].writes
    report = json.loads(written['report'].read_text())
    assert (written['policy'] / 'manifest.json').exists()
    assert set(report['simulated']) == {'served', 'new', 'served:raw',
                                        'new:raw', 'nova-default'}
    assert all(math.isfinite(v) for v in report['simulated'].values())
    outcomes = json.loads(
        cloud['steps']['outcomes'].writes['summary'].read_text())
    for name in ('served', 'new'):
        e = report['off_policy'][name]
        assert e['method'].startswith('direct method'), e
        assert e['usable'] == outcomes['complete']
        lo, hi = e['interval']
        assert lo <= e['estimate'] <= hi
        lo, hi = e['logged_interval']
        assert lo <= e['logged'] <= hi
    assert 'off-policy new:' in run.out

    # publish: judged on the cloud's own trace and cluster; installed, or
    # refused by its gate (exit 3), either way a decision.
    run = run_step(cloud, 'publish')
    written = cloud['steps']['publish'].writes
    assert json.loads(written['decision'].read_text())
    assert written['target'].exists() == (run.rc == 0)
    print('\nthe loop: ' + ', '.join(f'{k} {r.seconds:.1f} s'
                                     for k, r in cloud['runs'].items()))
