"""End to end: a simulated cloud's telemetry through Ceilometer into a real
Gnocchi, and back out with ``ingest`` as the same workload.

A share of the ``azure-v1-small`` scenario's VMs (two days of the Azure V1
trace) is placed by Nova's default weighers in the simulator; each placed
VM gets what Ceilometer would have written for it: notification gauges at
launch and deletion (sizes, host, launched_at, deleted_at) and the ``cpu``
counter polled every 5 minutes, integrating the simulator's own
utilisation model. The publisher writes them into Gnocchi, metricd
aggregates them, and ``ingest`` reads the two days back.

Checked: the same VMs (count exact), lifetimes within one granularity,
sizes and hosts exact, each VM's mean CPU within 2% of what its polls
measured, and, for the workload as a whole, the same peak demand and mean
utilisation as the simulator's.
"""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pytest

from nova_rl_trainer.simulation import csv_trace
from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation import traces
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.telemetry.ingest import TRACE_COLUMNS
from tests.telemetry.ceilometer_shapes import Vm, iso, samples_of, vm_uuid

G = 300.0
#: The simulated cloud's time 0: 2026-03-02T00:00:00Z (no other test
#: writes in March).
T0 = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc).timestamp()
#: Share of the scenario's request batches written (its 3,111 VMs take
#: Gnocchi minutes to create on 2 cores).
FRACTION = 0.2


def place(trace: traces.Trace, setup: Setup) -> dict[int, int]:
    """Host of each placed VM, Nova's default weighers deciding, with the
    simulator's stepping API."""
    workload = simulator.Workload(trace, setup.seed, setup.config)
    sim = simulator.Simulation(workload, setup.cluster)
    policy = policies.make_policy('nova-default')
    policy.bind(sim)
    hosts = {}
    while True:
        vm = sim.next_decision()
        if vm < 0:
            break
        host = int(policy.choose(vm, sim.fit))
        hosts[vm] = host
        sim.place(vm, host)
    return hosts, workload


@pytest.fixture(scope='module')
def cloud(telemetry):
    setup = Setup.from_scenario('azure-v1-small', seed=0)
    trace = setup.load_trace().sample(FRACTION, seed=7)
    hosts, workload = place(trace, setup)
    horizon = 2 * 86400.0
    ticks = int(math.ceil(horizon / G)) + 1
    k = np.arange(ticks)
    vms = {}
    for i, host in hosts.items():
        dep = float(trace.departure_s[i])
        vms[i] = Vm(
            id=vm_uuid('e2e-' + trace.vm_id(i)),
            project_id=trace.project_ids[trace.project[i]],
            host=f'compute-{host:03d}',
            vcpus=int(trace.vcpus[i]), memory_mb=int(trace.memory_mb[i]),
            root_gb=int(trace.disk_gb[i]), ephemeral_gb=0,
            launched_at=T0 + float(trace.arrival_s[i]),
            # Still running at the end of the trace: deleted an hour after
            # the window, so that no later window sees it.
            deleted_at=T0 + (horizon + 3600 if math.isnan(dep) else dep),
            t0=T0, shares=workload.usage.cpu_util(np.full(ticks, i), k))
    samples, _ = samples_of(list(vms.values()))
    t = time.monotonic()
    telemetry.publish(samples, chunk=20000, timeout=600)
    return {'trace': trace, 'vms': vms, 'start': T0, 'stop': T0 + horizon,
            'samples': len(samples), 'publish_s': time.monotonic() - t}


def test_ingest_returns_the_simulated_workload(cloud, basic_env, ingest,
                                               tmp_path):
    start, stop = cloud['start'], cloud['stop']
    trace, vms = cloud['trace'], cloud['vms']
    t = time.monotonic()
    run = ingest('--source', 'gnocchi', '--start', iso(start), '--stop',
                 iso(stop))
    ingest_s = time.monotonic() - t
    assert run.rc == 0, run.err
    assert run.header == list(TRACE_COLUMNS)
    rows = {r['vm_id']: r for r in run.rows}
    by_uuid = {vm.id: (i, vm) for i, vm in vms.items()}
    # Every VM the simulator placed, nothing else.
    assert len(rows) == len(vms)
    assert set(rows) == set(by_uuid)
    measured, checked = [], 0
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
        if expected.size == 0:
            assert row['cpu_util_mean'] == ''
            continue
        got = float(row['cpu_util_mean'])
        assert got == pytest.approx(expected.mean(), rel=0.02, abs=1e-4), \
            vm_id
        measured.append((got, vm))
        checked += 1
    s = run.summary
    assert s['instances'] == len(vms)
    assert s['with_usage'] == checked
    assert s['without_usage'] == len(vms) - checked
    # The workload as a whole: the simulator's mean utilisation of the
    # VMs with usage, over their measured intervals, within 2%.
    model = np.mean([np.mean(vm.shares[_ticks(vm, stop)])
                     for _, vm in measured])
    assert np.mean([g for g, _ in measured]) == pytest.approx(model,
                                                              rel=0.02)
    # The trainer reads the ingested trace, host column included, with the
    # same peak demand as the simulated workload and Nova's hosts.
    back = csv_trace.read_csv(str(run.out_path))
    assert len(back) == len(trace)
    assert sorted(back.hosts) == sorted(vm.host for vm in vms.values())
    placed = trace.select(np.isin(np.arange(len(trace)), list(vms)))
    for key, value in traces.peak_demand(placed).items():
        assert traces.peak_demand(back)[key] == pytest.approx(value)
    print(f"\nend to end: {len(vms)} VMs, {cloud['samples']} samples "
          f"published in {cloud['publish_s']:.1f} s, ingested in "
          f'{ingest_s:.1f} s')


def _ticks(vm: Vm, stop: float) -> np.ndarray:
    """Ticks whose use the VM's polls measured before ``stop`` (between
    its first poll and its last one in the window)."""
    polls = vm.polls()
    polls = polls[polls < stop]
    first = int(np.floor((polls[0] - vm.t0) / vm.interval_s))
    last = int(np.floor((polls[-1] - vm.t0) / vm.interval_s))
    return np.arange(first, last)
