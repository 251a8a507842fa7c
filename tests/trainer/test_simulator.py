"""The simulator's metrics on tiny traces computed by hand."""

import dataclasses
import math

import numpy as np
import pytest

from nova_rl_weigher import features

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.cluster import HostGroup
from nova_rl_trainer.simulation.cluster_state import COLUMN
from nova_rl_trainer.simulation.metrics import CONTRACT_KEYS
from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation import workload

from ._helpers import make_trace
from ._helpers import run
from ._helpers import small_cluster

HOUR = 3600.0

# Two hosts of 4 cores / 4096 MB, CPU ratio 2 (8 vCPUs of capacity), RAM
# ratio 1; 100 W idle, 200 W busy. CPU use is constant (given in the trace).
#   vm  arrive depart  vcpus  MB    use   demand (cores)
#   a   0      7200    2      2048  0.5   1
#   b   0      3600    2      2048  1.0   2
#   c   1800   -       4      1024  1.0   4     (runs to the horizon)
#   d   2000   5000    4      1024  0.5   2
#   e   2500   -       1      4096  0.5   -     (rejected: no RAM left)
ROWS = [(0, 7200, 2, 2048, 0, 0.5), (0, 3600, 2, 2048, 0, 1.0),
        (1800, None, 4, 1024, 0, 1.0), (2000, 5000, 4, 1024, 0, 0.5),
        (2500, None, 1, 4096, 0, 0.5)]


def hand_run(policy='first-fit'):
    return run(make_trace(ROWS), small_cluster(), policy,
               usage_interval_s=HOUR, usage_window_s=HOUR)


def test_metrics_by_hand():
    result, sim = hand_run()
    m = result.metrics
    # first-fit: a, b -> host 0 (its RAM is then full); c, d -> host 1;
    # e fits nowhere.
    assert sim.host_of.tolist()[:4] == [-1, -1, 1, -1]  # only c still there
    assert (m['decisions'], m['placed'], m['rejected']) == (5, 4, 1)
    # The horizon is the last departure (7200 s); c runs until then.
    assert m['horizon_hours'] == pytest.approx(2.0)
    # host 0 active 0-7200 (a), host 1 active 1800-7200 (c).
    assert m['active_host_hours'] == pytest.approx(2.0 + 1.5)
    # Live demand (vCPUs / 8, RAM / 4096), hosts needed, per interval:
    # 0-1800 a+b: 4, 4096 -> 1; 1800-2000 +c: 8, 5120 -> 2;
    # 2000-3600 +d: 12, 6144 -> 2; 3600-5000 -b: 10, 4096 -> 2;
    # 5000-7200 a+c: 6, 3072 -> 1.
    lb_s = 1800 * 1 + 200 * 2 + 1600 * 2 + 1400 * 2 + 2200 * 1
    assert m['lb_host_hours'] == pytest.approx(lb_s / HOUR)
    # Host 1 holds c+d = 6 cores of demand on 4 cores from 2000 to 5000.
    assert m['overload_host_hours'] == pytest.approx(3000 / HOUR)
    # Hot (> 0.8 * 4 = 3.2 cores): host 1 from 1800 to 7200; host 0 peaks
    # at 3 cores.
    assert m['hot_host_hours'] == pytest.approx(5400 / HOUR)
    # Power: host 0 at 3/4 busy for 1 h (175 W) then 1/4 for 1 h (125 W);
    # host 1 fully busy (capped at 100%) for 5400 s (200 W).
    energy_wh = 175 + 125 + 200 * 5400 / HOUR
    assert m['energy_kwh'] == pytest.approx(energy_wh / 1000)
    # Samples at 0 s (host 0: 3/4) and 3600 s (host 0: 1/4, host 1: 6/4).
    assert m['p95_host_cpu_util'] == pytest.approx(
        np.percentile([0.75, 0.25, 1.5], 95))
    assert m['mean_host_cpu_util'] == pytest.approx((0.75 + 0.25 + 1.5) / 3)
    assert m['empty_host_fraction'] == pytest.approx(1 - 3.5 / (2 * 2))
    # Headroom (reserve 20%): host 0 fully allocated (RAM) 0-3600, host 1
    # fully allocated (vCPUs) 2000-5000: deficit 1 each time.
    assert m['headroom_deficit_host_hours'] == pytest.approx(
        (3600 + 3000) / HOUR)
    # packing = active host-hours + energy + 10 per rejection.
    assert m['objective_value'] == pytest.approx(3.5 + energy_wh / 1000
                                                 + 10)
    assert m['peak_allocated_fraction'] == pytest.approx(6144 / 8192)
    assert m['peak_active_hosts'] == 2
    for key in CONTRACT_KEYS:
        assert key in m


def test_series_sampled_at_usage_interval():
    result, _ = hand_run()
    s = result.series
    assert s['time_s'].tolist() == [0.0, 3600.0]
    assert s['active_hosts'].tolist() == [1, 2]
    assert s['overloaded_hosts'].tolist() == [0, 1]
    assert s['lb_hosts'].tolist() == [1, 2]
    assert result.util_hist.sum() == 3


def test_first_fit_takes_lowest_numbered_host_that_fits():
    # Host 0 is full after the first VM; the second goes to host 1, the
    # third (small) still to host 1 since host 0 is full, the fourth to
    # host 0 once it has emptied.
    rows = [(0, 100, 4, 4096), (1, None, 4, 1024), (2, None, 2, 512),
            (200, None, 1, 512)]
    result, sim = run(make_trace(rows), small_cluster(hosts=3),
                      'first-fit')
    assert sim.host_of.tolist() == [-1, 1, 1, 0]
    assert result.metrics['rejected'] == 0


def test_departure_frees_capacity_for_arrival_at_the_same_instant():
    rows = [(0, 100, 4, 4096), (100, None, 4, 4096)]
    result, sim = run(make_trace(rows), small_cluster(hosts=1), 'first-fit')
    assert result.metrics['rejected'] == 0
    assert sim.host_of.tolist() == [-1, 0]
    # One host active throughout; the bound is 1 host all along.
    assert result.metrics['active_host_hours'] == pytest.approx(100 / HOUR)
    assert result.metrics['lb_host_hours'] == pytest.approx(100 / HOUR)


def test_vm_leaving_the_instant_it_arrives():
    rows = [(0, 0, 4, 4096), (0, 50, 4, 4096), (50, None, 1, 100)]
    result, sim = run(make_trace(rows), small_cluster(hosts=1), 'first-fit')
    m = result.metrics
    # The zero-length VM took the host, so the second one is rejected.
    assert (m['placed'], m['rejected']) == (2, 1)
    assert sim.host_of.tolist() == [-1, -1, 0]
    assert m['active_host_hours'] == 0.0
    # A rejected one is one decision, and its departure is a no-op.
    rows = [(0, None, 4, 4000), (0, 0, 4, 4096), (10, None, 1, 50)]
    result, sim = run(make_trace(rows), small_cluster(hosts=1), 'first-fit')
    m = result.metrics
    assert (m['decisions'], m['placed'], m['rejected']) == (3, 2, 1)


def test_no_departure_runs_to_horizon_and_oversized_is_rejected():
    rows = [(0, None, 2, 1024), (10, 40, 1, 1024), (20, None, 5, 1024)]
    # 5 vCPUs > 4 physical: placement's max_unit rejects it even though
    # the allocation ratio would leave room.
    result, sim = run(make_trace(rows), small_cluster(hosts=1), 'best-fit')
    m = result.metrics
    assert m['rejected'] == 1
    assert m['horizon_hours'] == pytest.approx(40 / HOUR)
    assert m['active_host_hours'] == pytest.approx(40 / HOUR)
    assert sim.host_of[0] == 0


def test_stepping_api_and_invalid_placement():
    wl = simulator.Workload(make_trace(ROWS), 0)
    sim = simulator.Simulation(wl, small_cluster())
    vm = sim.next_decision()
    assert vm == 0 and sim.fit.tolist() == [True, True]
    with pytest.raises(ValueError, match='not the pending request'):
        sim.place(1, 0)
    sim.place(0, 1)
    vm = sim.next_decision()
    with pytest.raises(ValueError, match='not a candidate'):
        sim.place(vm, 5)
    sim.place(vm, 1)
    assert sim.num_instances.tolist() == [0, 2]
    # The feature matrix of the candidates reads the same state.
    vm = sim.next_decision()
    cand, x, nova_w = sim.candidate_features(vm, sim.fit)
    assert cand.tolist() == [0]       # host 1's RAM is full
    assert x.shape == (1, features.NUM_FEATURES) and nova_w.tolist() == [0.0]
    clone = sim.clone()
    clone.place(vm, 0)
    assert sim.num_instances.tolist() == [0, 2]
    assert clone.num_instances.tolist() == [1, 2]
    # The named rows stay views of the columns in the copy.
    assert clone.cols[COLUMN['num_instances']].tolist() == [1, 2]
    assert clone.num_instances.base is clone.cols


def test_simulator_module_names():
    # The simulator is split by concern; its names stay where they were.
    assert simulator.Workload is workload.Workload
    assert simulator.SimConfig is workload.SimConfig
    sim = simulator.Simulation(simulator.Workload(make_trace(ROWS), 0),
                               small_cluster())
    # What the baselines read is on the simulation itself.
    for name in ('vcpus_used', 'ram_free_mb', 'disk_free_mb',
                 'num_instances', 'cols', 'cap_vcpu', 'cap_ram', 'cap_disk',
                 'cores', 'demand', 'measured', 'recent_vcpus', 'fit',
                 'workload', 'needs_usage'):
        assert hasattr(sim, name), name


def test_config_validation():
    with pytest.raises(ValueError):
        simulator.SimConfig(usage_interval_s=0)
    with pytest.raises(ValueError):
        simulator.SimConfig(usage_interval_s=600, usage_window_s=300)
    with pytest.raises(ValueError):
        simulator.SimConfig(headroom_reserve=0)
    with pytest.raises(ValueError):
        small_cluster(hosts=0)
    with pytest.raises(ValueError):
        small_cluster(idle_watts=300, peak_watts=200)


def test_modelled_utilisation_drives_overload():
    # Same VMs, modelled use: the metrics are finite and consistent.
    rows = [(i * 60.0, i * 60.0 + 7200, 2, 512, 0, None, f'p{i % 3}')
            for i in range(40)]
    result, _ = run(make_trace(rows), small_cluster(hosts=4), 'nova-pack',
                    usage_interval_s=300)
    m = result.metrics
    assert m['placed'] == 40 - m['rejected']
    assert 0 < m['mean_host_cpu_util'] and math.isfinite(m['energy_kwh'])
    assert m['lb_host_hours'] <= m['active_host_hours'] + 1e-9


# -- host groups of several sizes ---------------------------------------------

def two_sizes(**large):
    """Hosts 0, 1: 4 cores / 4096 MB, CPU ratio 2 (8 vCPUs of capacity),
    100-200 W, 5 W empty; host 2: 8 cores / 8192 MB, ratio 2 (16 vCPUs),
    150-350 W, 20 W empty."""
    big = dict(name='large', count=1, vcpus=8, ram_mb=8192, disk_gb=100,
               cpu_allocation_ratio=2.0, idle_watts=150, peak_watts=350,
               empty_watts=20)
    big.update(large)
    return ClusterSpec(groups=[
        HostGroup(name='small', count=2, vcpus=4, ram_mb=4096, disk_gb=100,
                  cpu_allocation_ratio=2.0, idle_watts=100, peak_watts=200,
                  empty_watts=5),
        HostGroup(**big)])


#   vm  arrive depart  vcpus  MB    use   where (first-fit)
#   a   0      3600    6      1024  1.0   large only (6 > 4 cores: max_unit)
#   b   0      3600    2      6000  1.0   large only (6000 > 4096 MB)
#   c   0      3600    3      1024  1.0   small 0
#   d   0      3600    3      512   0.5   small 0 (6 of 8 vCPUs)
#   e   10     3600    9      512   -     rejected: larger than every host
#   f   10     3600    1      9000  -     rejected: larger than every host
MIXED_ROWS = [(0, 3600, 6, 1024, 0, 1.0), (0, 3600, 2, 6000, 0, 1.0),
              (0, 3600, 3, 1024, 0, 1.0), (0, 3600, 3, 512, 0, 0.5),
              (10, 3600, 9, 512, 0, 0.5), (10, 3600, 1, 9000, 0, 0.5)]


def test_mixed_sizes_by_hand():
    result, sim = run(make_trace(MIXED_ROWS), two_sizes(), 'first-fit',
                      usage_interval_s=HOUR, usage_window_s=HOUR)
    m = result.metrics
    assert sim.host_of.tolist() == [-1] * 6     # all gone at the horizon
    assert (m['decisions'], m['placed'], m['rejected']) == (6, 4, 2)
    assert sim.cap_vcpu.tolist() == [8, 8, 16]
    assert sim.cores.tolist() == [4, 4, 8]
    # Hosts 0 and 2 active for the hour, host 1 empty.
    assert m['active_host_hours'] == pytest.approx(2.0)
    # Host 0 holds 3 + 1.5 = 4.5 cores on its 4: overloaded (the same
    # demand would not overload the large host). Host 2 holds 6 + 2 = 8
    # cores on its 8: busy, not overloaded.
    assert m['overload_host_hours'] == pytest.approx(1.0)
    # Hot above 0.8 of each host's own cores: 4.5 > 3.2 and 8 > 6.4.
    assert m['hot_host_hours'] == pytest.approx(2.0)
    # Each group's watts: host 0 fully busy at 200 W, host 2 at 350 W,
    # host 1 empty at 5 W; the large host's 20 W empty never counts.
    assert m['energy_kwh'] == pytest.approx((200 + 350 + 5) / 1000)
    # Utilisation against each host's own cores.
    assert m['p95_host_cpu_util'] == pytest.approx(
        np.percentile([4.5 / 4, 8 / 8], 95))
    # Lower bound: RAM 8560 MB live needs the 8192 MB host and a 4096 MB
    # one (largest first); vCPUs 14 fit the 16 of the large host.
    assert m['lb_host_hours'] == pytest.approx(2.0)
    # Peak allocation: of the total capacity, 8560 / 16384 MB of RAM.
    assert m['peak_allocated_fraction'] == pytest.approx(8560 / 16384)


def test_mixed_sizes_placement_and_columns():
    wl = simulator.Workload(make_trace(MIXED_ROWS), 0)
    sim = simulator.Simulation(wl, two_sizes())
    # Host columns are each host's own, in HostColumns layout.
    assert sim.cols[COLUMN['vcpus_total']].tolist() == [4, 4, 8]
    assert sim.cols[COLUMN['ram_total_mb']].tolist() == [4096, 4096, 8192]
    assert sim.cols[COLUMN['ram_free_mb']].tolist() == [4096, 4096, 8192]
    assert sim.cols[COLUMN['disk_free_mb']].tolist() == [102400] * 3
    # a: 6 vCPUs fit the small hosts' capacity (8) but not their 4 cores.
    vm = sim.next_decision()
    assert vm == 0 and sim.fit.tolist() == [False, False, True]
    # The features see each candidate's own size.
    cand, cols = sim.candidate_columns(sim.fit)
    assert cand.tolist() == [2] and cols.vcpus_total.tolist() == [8]
    sim.place(vm, 2)
    vm = sim.next_decision()                    # b: 6000 MB
    assert sim.fit.tolist() == [False, False, True]
    sim.place(vm, 2)
    vm = sim.next_decision()                    # c: 3 vCPUs, anywhere
    assert sim.fit.tolist() == [True, True, True]
    cand, cols = sim.candidate_columns(sim.fit)
    assert cols.vcpus_total.tolist() == [4, 4, 8]
    assert cols.ram_free_mb.tolist() == [4096, 4096, 8192 - 7024]
    sim.place(vm, 0)
    vm = sim.next_decision()                    # d
    sim.place(vm, 0)
    # e and f are larger than every host: rejected without a decision.
    assert sim.next_decision() == -1
    assert sim.rejected == 2


def test_mixed_sizes_usage_snapshot_is_per_host():
    rows = [(0, 3600, 6, 4096, 0, 0.5), (0, 3600, 2, 2048, 0, 0.5)]
    wl = simulator.Workload(make_trace(rows), 0, simulator.SimConfig(
        usage_interval_s=HOUR, usage_window_s=HOUR))
    sim = simulator.Simulation(wl, two_sizes())
    sim.enable_usage()
    sim.run(policies.make_policy('first-fit'))
    # 3 cores of the large host's 8, 1 core of a small host's 4.
    c = sim.cols
    assert c[COLUMN['cpu_util_mean']].tolist() == pytest.approx(
        [1 / 4, 0, 3 / 8])
    assert c[COLUMN['mem_util_mean']].tolist() == pytest.approx(
        [wl.mem_use[1] / 4096, 0, wl.mem_use[0] / 8192])


def test_groups_differing_in_power_only_place_as_identical_hosts():
    """The mixed path (per-host arrays, largest-first bound) on hosts of
    one size places as the identical-host path does; only energy moves."""
    sc = scenarios.get_scenario('azure-v1-small')
    base = sc.cluster
    g = base.groups[0]
    mixed = ClusterSpec(groups=[
        dataclasses.replace(g, name='a', count=9),
        dataclasses.replace(g, name='b', count=8, idle_watts=150.0,
                            peak_watts=400.0)])
    assert base.uniform and not mixed.uniform
    wl = simulator.Workload(sc.load_trace(0), 0)
    for policy in ('first-fit', 'nova-default', 'load-aware'):
        s1 = simulator.Simulation(wl, base)
        r1 = s1.run(policies.make_policy(policy)).metrics
        s2 = simulator.Simulation(wl, mixed)
        r2 = s2.run(policies.make_policy(policy)).metrics
        for key in ('active_host_hours', 'overload_host_hours',
                    'hot_host_hours', 'p95_host_cpu_util',
                    'peak_allocated_fraction', 'rejected'):
            assert r1[key] == r2[key], (policy, key)
        assert r2['lb_host_hours'] == pytest.approx(r1['lb_host_hours'])
        assert r2['energy_kwh'] < r1['energy_kwh']
