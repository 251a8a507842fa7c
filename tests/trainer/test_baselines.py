"""Baseline choices on hand-made cluster states, and Nova fidelity."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.cluster import HostGroup
from nova_rl_trainer.simulation import nova_weighers
from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation import simulator

from ._helpers import make_trace
from ._helpers import small_cluster


def state(used_vcpus, free_ram, request=(1, 256), hosts=None, **cluster):
    """A simulation paused at a request, hosts in the given state."""
    n = len(used_vcpus)
    cl = small_cluster(hosts=n, host_vcpus=8, host_ram_mb=8192, **cluster)
    wl = simulator.Workload(make_trace([(0, None) + tuple(request)]), 0)
    sim = simulator.Simulation(wl, cl)
    sim.vcpus_used[:] = used_vcpus
    sim.ram_free_mb[:] = free_ram
    sim.num_instances[:] = [1 if u else 0 for u in used_vcpus]
    vm = sim.next_decision()
    return sim, vm


def choose(name, sim, vm):
    p = policies.make_policy(name)
    p.bind(sim)
    return p.choose(vm, sim.fit)


def test_nova_default_spreads_and_matches_hand_arithmetic():
    # Capacity 16 vCPUs (8 x 2.0); free vCPUs 16, 12, 4; free RAM
    # 2048, 8192, 6144. RAM weights (minval 0): x / 8192; CPU: x / 16.
    sim, vm = state([0, 4, 12], [2048, 8192, 6144])
    w = sim.nova_weights(sim.fit)
    # Free disk is equal on every host: minval 0 normalises it to 1.
    expected = (np.array([2048, 8192, 6144]) / 8192
                + np.array([16, 12, 4]) / 16 + 1.0)
    np.testing.assert_allclose(w, expected)
    assert choose('nova-default', sim, vm) == 1
    assert choose('nova-pack', sim, vm) == 2


def test_nova_weights_ignore_non_candidates():
    # Host 1 is too full for the request: the maxima come from 0 and 2.
    sim, vm = state([0, 15, 8], [4096, 8192, 2048], request=(2, 256))
    assert sim.fit.tolist() == [True, False, True]
    w = sim.nova_weights(sim.fit)
    assert w[0] == pytest.approx(1.0 + 1.0 + 1.0)
    assert w[2] == pytest.approx(0.5 + 0.5 + 1.0)
    assert choose('nova-default', sim, vm) == 0


def test_ties_go_to_the_lowest_host():
    sim, vm = state([0, 0, 0], [8192, 8192, 8192])
    for name in baselines.BASELINES:
        assert choose(name, sim, vm) == 0, name


def test_best_fit_first_fit_and_tetris():
    # Free after placing (vCPU frac + RAM frac): host 0 is tightest.
    sim, vm = state([12, 2, 10], [1024, 7168, 4096], request=(2, 512))
    assert choose('best-fit', sim, vm) == 0
    assert choose('first-fit', sim, vm) == 0
    # A CPU-heavy request aligns with the host with the most free vCPUs.
    sim, vm = state([0, 10, 4], [1024, 8192, 2048], request=(4, 256))
    assert choose('tetris', sim, vm) == 0
    # A RAM-heavy one with the host with the most free RAM.
    sim, vm = state([0, 10, 4], [1024, 8192, 2048], request=(1, 1024))
    assert choose('tetris', sim, vm) == 1


def test_load_aware_packs_towards_the_target_on_measured_use():
    sim, vm = state([4, 4, 4, 4], [8192] * 4, request=(1, 256))
    # Measured cores on 8-core hosts at the last sample, plus vCPUs placed
    # since (host 3), plus the request's 1 vCPU, predict 1.5/8,
    # 4.6/8 = 0.575, 8/8 and 5/8 = 0.625.
    sim.measured[:] = [0.5, 3.6, 7.0, 2.0]
    sim.recent_vcpus[:] = [0, 0, 0, 2]
    # 0.575 is the closest below the 0.6 target: the highest score.
    assert choose('load-aware', sim, vm) == 1
    # With a 0.9 target, 0.625 is closest below; 1.0 is past it.
    assert choose('load-aware:target=0.9', sim, vm) == 3
    # Above 100% a host scores 0, below any host under it.
    sim.measured[:] = [7.5, 7.5, 7.5, 0.0]
    sim.recent_vcpus[:] = 0
    assert choose('load-aware:target=0.9', sim, vm) == 3


def lifetimes_state(project, request=(1, 256)):
    """Three hosts at t = 2000: host 0 runs a 4-vCPU VM of project
    'short' (lifetimes 100 s: expected to end at 2050), host 1 a 1-vCPU VM
    of 'long' (1000 s: at 2950), host 2 is empty; a request of
    ``project`` is pending."""
    rows = []
    for name, life in (('short', 100), ('long', 1000), ('tiny', 10)):
        rows += [(0, life, 1, 256, 0, 0.5, name)] * 3
    rows += [(1950, None, 4, 1024, 0, 0.5, 'short'),
             (1950, None, 1, 256, 0, 0.5, 'long'),
             (2000, None, *request, 0, 0.5, project)]
    wl = simulator.Workload(make_trace(rows), 0)
    sim = simulator.Simulation(
        wl, small_cluster(hosts=3, host_vcpus=8, host_ram_mb=8192))
    sim.enable_usage()
    sim.keep_signals()
    for host in [2] * 9 + [0, 1]:
        sim.place(sim.next_decision(), host)
    vm = sim.next_decision()
    assert sim.now == 2000
    return sim, vm


def test_lifetime_fit_extends_busy_periods_least():
    # best-fit takes the fullest host, 0, whatever the request's life.
    sim, vm = lifetimes_state('long')
    assert choose('best-fit', sim, vm) == 0
    # A 1000 s request would keep host 0 busy 950 s longer, host 1 50 s.
    assert choose('lifetime-fit', sim, vm) == 1
    # A 10 s request extends neither: best-fit among them.
    sim, vm = lifetimes_state('tiny')
    assert choose('lifetime-fit', sim, vm) == 0
    # No prediction (a new project, a flavor never seen): best-fit.
    sim, vm = lifetimes_state('new', request=(2, 512))
    assert sim.request_signals(vm).life is None
    assert choose('lifetime-fit', sim, vm) == 0


def test_lifetime_fit_opens_an_empty_host_only_when_it_must():
    # Hosts 0 and 1 full: the empty host 2 is the only candidate.
    sim, vm = lifetimes_state('long')
    sim.fit[:2] = False
    assert choose('lifetime-fit', sim, vm) == 2


def test_baseline_options_and_errors():
    p = policies.make_policy('nova-default:num_instances=-1,ram=2')
    assert p.multipliers == nova_weighers.NovaMultipliers(
        ram=2.0, num_instances=-1.0)
    assert policies.make_policy('nova-pack').multipliers == \
        nova_weighers.PACK
    with pytest.raises(policies.PolicyError, match='no option'):
        policies.make_policy('first-fit:x=1')
    with pytest.raises(policies.PolicyError, match='target'):
        policies.make_policy('load-aware:target=2')
    with pytest.raises(policies.PolicyError, match='not a number'):
        policies.make_policy('load-aware:target=abc')
    with pytest.raises(policies.PolicyError, match='unknown policy'):
        policies.make_policy('worst-fit')


def test_simulator_nova_weight_paths_agree():
    """The masked fast path and the candidate-columns path (the feature
    ``nova_weight``) compute the same floats."""
    sc = scenarios.get_scenario('azure-v1-small')
    wl = simulator.Workload(sc.load_trace(0), 0)
    sim = simulator.Simulation(wl, sc.cluster)
    p = policies.make_policy('best-fit')
    p.bind(sim)
    checked = 0
    while True:
        vm = sim.next_decision()
        if vm < 0:
            break
        if vm % 97 == 0:
            cand, cols = sim.candidate_columns(sim.fit)
            fast = sim.nova_weights(sim.fit)[cand]
            np.testing.assert_array_equal(fast, cols.nova_weight)
            np.testing.assert_array_equal(
                nova_weighers.columns_weights(cols), cols.nova_weight)
            checked += 1
        sim.place(vm, p.choose(vm, sim.fit))
    assert checked > 10


# -- fidelity against nova's own weigher classes ------------------------------

ORACLE = os.path.join(os.path.dirname(__file__), 'nova_weigher_oracle.py')


def random_hosts(rng, n, ties=False):
    hosts = []
    for _ in range(n):
        vcpus = int(rng.choice([8, 16, 32, 48, 64]))
        ratio = float(rng.choice([1.0, 2.0, 4.0, 16.0]))
        hosts.append({
            # Occasionally over-committed RAM: negative free, clamped at 0.
            'free_ram_mb': int(rng.integers(-4096, 262144)) if not ties
            else 65536,
            'vcpus_total': vcpus, 'cpu_allocation_ratio': ratio,
            'vcpus_used': int(rng.integers(0, vcpus * ratio + 1)),
            'free_disk_mb': int(rng.integers(0, 2048 * 1024)) if not ties
            else 1024,
            'num_io_ops': int(rng.integers(0, 4)),
            'num_instances': int(rng.integers(0, 40))})
    return hosts


def our_weights(hosts, m):
    a = {k: np.array([h[k] for h in hosts], dtype=np.float64)
         for k in hosts[0]}
    return nova_weighers.combined_weights(
        a['free_ram_mb'], a['vcpus_total'] * a['cpu_allocation_ratio']
        - a['vcpus_used'], a['free_disk_mb'], a['num_io_ops'],
        a['num_instances'], m)


@pytest.mark.skipif(importlib.util.find_spec('nova') is None,
                    reason='nova is not installed')
def test_nova_default_matches_novas_weighers():
    rng = np.random.default_rng(1234)
    configs = [nova_weighers.DEFAULT, nova_weighers.PACK,
               nova_weighers.NovaMultipliers(ram=2.0, cpu=-0.5, disk=0.0,
                                             io_ops=-3.0,
                                             num_instances=-1.0)]
    cases = []
    for m in configs:
        for n in (1, 2, 7, 40, 200):
            for all_weighers in (False, True):
                cases.append({'multipliers': {
                    'ram': m.ram, 'cpu': m.cpu, 'disk': m.disk,
                    'io_ops': m.io_ops, 'num_instances': m.num_instances},
                    'all_weighers': all_weighers,
                    'hosts': random_hosts(rng, n, ties=(n == 7))})
    proc = subprocess.run([sys.executable, ORACLE],
                          input=json.dumps({'cases': cases}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)['results']
    assert len(results) == len(cases)
    for case, res, in zip(cases, results):
        m = nova_weighers.NovaMultipliers(**case['multipliers'])
        ours = our_weights(case['hosts'], m)
        theirs = np.array(res['weights'], dtype=np.float64)
        if not case['all_weighers']:
            # Same weighers in the same order: the very same floats.
            np.testing.assert_array_equal(ours, theirs)
        else:
            # The other weighers add 0.0, in another order.
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
        # Nova's ranking (stable sort, descending) and its choice.
        order = sorted(range(len(ours)), key=lambda i: -ours[i])
        if not case['all_weighers']:
            assert order == res['order']
        assert nova_weighers.best_index(ours) == res['order'][0]


# -- host groups of several sizes ---------------------------------------------

def mixed_state(used_vcpus, free_ram, request=(1, 256)):
    """Host 0: 4 cores x 2.0 = 8 vCPUs, 4096 MB; host 1: 16 x 2.0 = 32
    vCPUs, 16384 MB; both 100 GB of disk, empty."""
    cl = ClusterSpec(groups=[
        HostGroup(name='small', count=1, vcpus=4, ram_mb=4096, disk_gb=100,
                  cpu_allocation_ratio=2.0),
        HostGroup(name='large', count=1, vcpus=16, ram_mb=16384,
                  disk_gb=100, cpu_allocation_ratio=2.0)])
    wl = simulator.Workload(make_trace([(0, None) + tuple(request)]), 0)
    sim = simulator.Simulation(wl, cl)
    sim.vcpus_used[:] = used_vcpus
    sim.ram_free_mb[:] = free_ram
    sim.num_instances[:] = [1 if u else 0 for u in used_vcpus]
    vm = sim.next_decision()
    return sim, vm


def test_best_fit_on_mixed_sizes_is_relative_to_each_host():
    # Free after placing 2 vCPUs / 1024 MB, as fractions of each host:
    # small (8 - 2 - 2) / 8 + (3072 - 1024) / 4096 = 1.0;
    # large (32 - 28 - 2) / 32 + (4096 - 1024) / 16384 = 0.25: tighter,
    # although it has more RAM left in MB.
    sim, vm = mixed_state([2, 28], [3072, 4096], request=(2, 1024))
    assert choose('best-fit', sim, vm) == 1
    # small (8 - 6 - 2) / 8 + (2048 - 1024) / 4096 = 0.25; large
    # (32 - 20 - 2) / 32 + (2048 - 1024) / 16384 = 0.375: the small one.
    sim, vm = mixed_state([6, 20], [2048, 2048], request=(2, 1024))
    assert choose('best-fit', sim, vm) == 0


def test_tetris_and_nova_on_mixed_sizes():
    # Both empty; request 2 vCPUs / 1024 MB. Tetris: small (2/8)(8/8) +
    # (1024/4096)(4096/4096) = 0.5, large 2/32 + 1024/16384 = 0.125.
    sim, vm = mixed_state([0, 0], [4096, 16384], request=(2, 1024))
    assert choose('tetris', sim, vm) == 0
    # Nova weighs absolute free RAM and vCPUs: spreading takes the large
    # host, packing the small one.
    w = sim.nova_weights(sim.fit)
    np.testing.assert_allclose(w, [4096 / 16384 + 8 / 32 + 1, 1 + 1 + 1])
    assert choose('nova-default', sim, vm) == 1
    assert choose('nova-pack', sim, vm) == 0
    # first-fit: the lowest index.
    assert choose('first-fit', sim, vm) == 0


def test_load_aware_on_mixed_sizes_uses_each_hosts_cores():
    sim, vm = mixed_state([4, 8], [4096, 16384], request=(1, 256))
    # 2 + 1 cores of the small host's 4: 0.75, past the 0.6 target; 6 + 1
    # of the large host's 16: 0.4375, below it.
    sim.measured[:] = [2.0, 6.0]
    assert choose('load-aware', sim, vm) == 1
    # The same 7 cores on the small host would overload it: score 0.
    sim.measured[:] = [6.0, 6.0]
    assert choose('load-aware', sim, vm) == 1


class CheckingPolicy:
    """Wraps a policy; before each choice checks that no host is over its
    capacity and that every placed VM is within its host's size."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.needs_usage = inner.needs_usage
        self.sim = None
        self.checked = 0

    def bind(self, sim):
        self.sim = sim
        self.inner.bind(sim)

    def check(self):
        sim = self.sim
        eps = 1e-6
        assert (sim.vcpus_used <= sim.cap_vcpu + eps).all()
        assert (sim.host_ram_mb - sim.ram_free_mb <= sim.cap_ram + eps).all()
        assert (sim.host_disk_mb - sim.disk_free_mb
                <= sim.cap_disk + eps).all()
        placed = np.flatnonzero(sim.host_of >= 0)
        hosts = sim.host_of[placed]
        wl = sim.workload
        assert (wl.vcpus[placed] <= sim.cores[hosts]).all()
        assert (wl.memory_mb[placed] <= sim.host_ram_mb[hosts]).all()
        self.checked += 1

    def choose(self, vm, fit):
        self.check()
        host = self.inner.choose(vm, fit)
        assert fit[host]
        return host


@pytest.mark.parametrize('spec', list(baselines.BASELINES)
                         + ['bundled', 'bundled:mode=raw'])
def test_every_policy_respects_each_hosts_capacity(spec):
    # azure-v1-small (peak 959 vCPUs, 1.8 TiB; VMs up to 8 vCPUs and 56
    # GiB) on three generations with their own CPU ratios, about 83% of
    # the vCPUs and the RAM at the peak: hosts fill up, and the largest
    # VMs fit only the two larger generations.
    cluster = ClusterSpec(groups=[
        HostGroup(name='old', count=20, vcpus=6, ram_mb=32768,
                  idle_watts=120, peak_watts=250),
        HostGroup(name='mid', count=6, vcpus=32, ram_mb=131072,
                  cpu_allocation_ratio=2.0),
        HostGroup(name='new', count=3, vcpus=64, ram_mb=262144,
                  cpu_allocation_ratio=1.5, idle_watts=260, peak_watts=700)])
    sc = scenarios.get_scenario('azure-v1-small')
    wl = simulator.Workload(sc.load_trace(0), 0)
    big = np.flatnonzero((wl.vcpus > 6) | (wl.memory_mb > 32768))
    assert big.size > 50
    sim = simulator.Simulation(wl, cluster)
    policy = CheckingPolicy(policies.make_policy(spec))
    m = sim.run(policy).metrics
    policy.check()
    assert policy.checked > 3000
    assert m['placed'] > 0.98 * m['decisions']
    assert m['lb_host_hours'] <= m['active_host_hours']
    assert m['peak_allocated_fraction'] > 0.7
