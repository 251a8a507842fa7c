"""The simulator's feature schema v2 signals, from its own history, on a
hand-built trace."""

import math

import numpy as np
import pytest

from nova_rl_weigher import features
from nova_rl_weigher.features import FEATURE_INDEX as COL

from nova_rl_trainer.simulation import simulator

from ._helpers import make_trace
from ._helpers import small_cluster

# (arrival, departure, vCPUs, MB, disk, util, project). Project a's first
# three VMs end after 100, 200 and 300 s; b boots for 10 s at 650, again
# at 690; at t = 700 new requests of a and c.
ROWS = [
    (0, 100, 1, 512, 0, 0.5, 'a'),
    (0, 200, 1, 512, 0, 0.5, 'a'),
    (0, 300, 1, 512, 0, 0.5, 'a'),
    (400, None, 1, 512, 0, 0.5, 'a'),
    (650, 660, 1, 512, 0, 0.5, 'b'),
    (690, None, 1, 512, 0, 0.5, 'b'),
    (700, None, 1, 512, 0, 0.5, 'a'),
    (700, None, 1, 512, 0, 0.5, 'c'),
]
A = features.Lifetime(200.0, 300.0, 3.0)
B = features.Lifetime(10.0, 10.0, 1.0)


def play_to(sim, vm_stop, host=0):
    """Place every request before ``vm_stop`` on ``host``; return the
    next request (pending)."""
    while True:
        vm = sim.next_decision()
        if vm == vm_stop:
            return vm
        sim.place(vm, host)


def make_sim():
    wl = simulator.Workload(make_trace(ROWS), 0)
    sim = simulator.Simulation(wl, small_cluster(hosts=2))
    sim.enable_usage()
    sim.keep_signals()
    return sim


def test_lifetimes_siblings_and_host_remaining_life():
    sim = make_sim()
    vm = play_to(sim, 6)
    assert sim.now == 700
    lt = sim.lifetime_tables()
    assert lt.project == {'a': A, 'b': B}
    assert lt.project_flavor[('a', '1vcpu-512mb')] == A
    assert lt.flavor['1vcpu-512mb'].count == 4         # with b's 10 s
    # Siblings: a's boots of the last 600 s: only VM 3, still running.
    assert sim.siblings(vm) is None
    req = sim.request_signals(vm)
    assert req.life == A
    # Host 0 holds VM 3, started at 400 and predicted, when placed, from
    # a's three lifetimes: 300 s old, past its median (200), so its p90
    # (300 s) is past too: doubled, 600 s, ends at 1000; and VM 5 (b's,
    # 10 s old: 10 s left).
    held = {v: (start, life) for v, start, life in sim.holdings(0)}
    assert held == {3: (400.0, A), 5: (690.0, B)}
    cand, x, _ = sim.candidate_features(vm, sim.fit)
    assert cand.tolist() == [0, 1]
    assert x.shape == (2, features.SCHEMA_V2.num_features)
    assert x[0, COL['host_life_present']] == 1.0
    assert x[0, COL['host_remaining_log_s']] == pytest.approx(math.log1p(300))
    assert x[1, COL['host_remaining_log_s']] == 0.0       # empty: 0 s
    # The request's median life (200 s) fits in host 0's 300 s left, and
    # extends the empty host by all of it.
    assert x[:, COL['life_extension_frac']].tolist() == [0.0, 1.0]
    assert x[0, COL['req_life_log_median']] == pytest.approx(math.log1p(200))
    # The v1 columns are unchanged by v2.
    _, x1, _ = sim.candidate_features(vm, sim.fit, features.SCHEMA_V1)
    np.testing.assert_array_equal(x[:, :24], x1)


def test_siblings_need_half_of_them_ended():
    sim = make_sim()
    vm = play_to(sim, 5)                  # b's second request, at 690
    # b's boot of 650 ended after 10 s: its siblings' life.
    assert sim.siblings(vm) == B
    assert sim.request_signals(vm).life == B
    vm = play_to(sim, 7)                  # c's request at 700
    assert sim.siblings(vm) is None       # c has no earlier boot


def test_allocation_at_the_sample_and_peaks():
    sim = make_sim()
    vm = play_to(sim, 6)
    # Usage samples every 300 s: the last at 600, when host 0 held VM 3
    # (1 vCPU, 512 MB); at 700 it also holds VM 5, host 1 nothing.
    sig = sim.host_signals(np.array([0, 1]))
    assert sig[0].tolist() == [1.0, 0.0]
    assert sig[1].tolist() == [512.0, 0.0]
    assert np.isfinite(sig[2:4]).all()
    cand, x, _ = sim.candidate_features(vm, sim.fit)
    assert x[:, COL['alloc_since_sample_vcpu_frac']].tolist() == [0.25, 0.0]
    assert x[:, COL['alloc_since_sample_ram_frac']].tolist() == [0.125, 0.0]
    sim.place(vm, 0)
    vm = sim.next_decision()
    _, x, _ = sim.candidate_features(vm, sim.fit)
    # Two more vCPUs of 4 on host 0 since the sample.
    assert x[0, COL['alloc_since_sample_vcpu_frac']] == pytest.approx(0.5)
    assert x[0, COL['peak_present']] == 1.0
    assert x[0, COL['project_cpu_ratio_peak_24h']] == 1.0    # c: unknown


def test_busy_period_is_kept_exactly_and_clones_are_independent():
    """The kept busy end equals features.host_remaining_s of the VMs held,
    at every request, on a real trace window."""
    from nova_rl_trainer.simulation import policies
    from nova_rl_trainer.simulation import scenarios
    sc = scenarios.get_scenario('azure-v1-test')
    trace = sc.load_trace(0).window(0.0, 2 * 3600.0)
    wl = simulator.Workload(trace, 0)
    sim = simulator.Simulation(wl, sc.cluster)
    sim.enable_usage()
    sim.keep_signals()
    best_fit = policies.make_policy('best-fit')
    best_fit.bind(sim)
    checked = 0
    for step in range(3000):
        vm = sim.next_decision()
        if vm < 0:
            break
        if step % 97 == 0:
            cand = np.flatnonzero(sim.fit)
            got = sim.host_signals(cand)[4]
            want = [features.host_remaining_s(
                sim.now, [(s, life) for _, s, life in sim.holdings(h)])
                for h in cand.tolist()]
            np.testing.assert_array_equal(
                np.nan_to_num(got, nan=-1.0),
                np.nan_to_num(np.maximum(want, 0.0), nan=-1.0))
            checked += 1
        sim.place(vm, best_fit.choose(vm, sim.fit))
    assert checked > 20
    clone = sim.clone()
    vm = clone.next_decision()
    clone.place(vm, int(np.flatnonzero(clone.fit)[0]))
    assert sum(len(clone.holdings(h)) for h in range(sim.n_hosts)) == \
        sum(len(sim.holdings(h)) for h in range(sim.n_hosts)) + 1


def _remaining_of_every_host(sim):
    """host_signals' remaining life of every host, and what
    features.host_remaining_s makes of the VMs each holds."""
    hosts = np.arange(sim.n_hosts)
    got = sim.host_signals(hosts)[4]
    want = np.maximum([features.host_remaining_s(
        sim.now, [(s, life) for _, s, life in sim.holdings(h)])
        for h in hosts.tolist()], 0.0)
    return np.nan_to_num(got, nan=-1.0), np.nan_to_num(want, nan=-1.0)


def test_busy_ends_of_every_host_over_a_day_started_late():
    """Every host's busy end (kept per VM estimate, re-predicted only as
    each is outlived) equals features.host_remaining_s of what it holds,
    through departures of the VMs holding the extremes, hosts not read for
    hours, a clone, and signals started half a day into the run."""
    from nova_rl_trainer.simulation import policies
    from nova_rl_trainer.simulation import scenarios
    sc = scenarios.get_scenario('azure-v1-test')
    trace = sc.load_trace(0).window(0.0, 24 * 3600.0)
    sim = simulator.Simulation(simulator.Workload(trace, 0), sc.cluster)
    sim.enable_usage()
    policy = policies.make_policy('nova-pack')
    sim.play(policy, until_s=12 * 3600.0)
    sim.keep_signals()
    checked = 0
    for hour in range(13, 25):
        sim.play(policy, until_s=hour * 3600.0)
        got, want = _remaining_of_every_host(sim)
        np.testing.assert_array_equal(got, want)
        checked += int((want > 0).sum())
        if hour == 18:
            clone = sim.clone()
            clone.play(policy, until_s=20 * 3600.0)
            np.testing.assert_array_equal(*_remaining_of_every_host(clone))
    assert checked > 1000


def test_a_v1_only_run_keeps_no_signals():
    wl = simulator.Workload(make_trace(ROWS), 0)
    sim = simulator.Simulation(wl, small_cluster(hosts=2))
    sim.enable_usage()
    vm = sim.next_decision()
    sim.candidate_features(vm, sim.fit, features.SCHEMA_V1)
    assert not sim._life_on
    sim.candidate_features(vm, sim.fit)
    assert sim._life_on
