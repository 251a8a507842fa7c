"""Feature schema v2: the placement signals Nova does not carry, on
hand-built states, and their neutral values when a signal is absent."""

import math

import numpy as np
import pytest

from nova_rl_weigher import features
from nova_rl_weigher.features import FEATURE_INDEX as COL
from nova_rl_weigher.features import Lifetime

V2 = features.SCHEMA_V2


def host(name='h1', **kw):
    base = dict(name=name, vcpus_total=16, vcpus_used=8, ram_total_mb=32768,
                ram_free_mb=16384, disk_total_gb=100, disk_free_mb=51200,
                cpu_allocation_ratio=2.0, ram_allocation_ratio=1.0,
                disk_allocation_ratio=1.0, num_instances=3, nova_weight=1.0)
    base.update(kw)
    return features.HostView(**base)


REQ = features.RequestView(vcpus=4, memory_mb=4096, disk_gb=20,
                           project_id='p1', instance_uuid='u1',
                           flavor_name='m1.medium')
SIGNALS = features.SCHEMA_V2.names[features.SCHEMA_V1.num_features:]


def test_absent_signals_are_neutral():
    x = features.build_matrix([host(), host('h2')], REQ)
    assert x.shape == (2, V2.num_features) and np.isfinite(x).all()
    neutral = {n: 0.0 for n in SIGNALS}
    neutral['project_cpu_ratio_peak_24h'] = 1.0
    for name, value in neutral.items():
        assert (x[:, COL[name]] == value).all(), name


def test_allocation_since_the_sample_and_peaks():
    usage = features.UsageLookup(
        host_alloc={'h1': (4.0, 8192.0), 'h2': (12.0, 20480.0)},
        host_peaks={'h1': (0.9, 0.6)},
        project_peak_ratio={'p1': 0.75})
    x = features.build_matrix([host('h1'), host('h2'), host('h3')], REQ,
                              usage)
    # h1: 8 vCPUs used now, 4 at the sample; 16 GiB allocated now, 8 then.
    assert x[0, COL['alloc_since_sample_vcpu_frac']] == pytest.approx(4 / 16)
    assert x[0, COL['alloc_since_sample_ram_frac']] == pytest.approx(
        8192 / 32768)
    # h2: VMs left since the sample: negative.
    assert x[1, COL['alloc_since_sample_vcpu_frac']] == pytest.approx(-4 / 16)
    assert x[1, COL['alloc_since_sample_ram_frac']] == pytest.approx(
        -4096 / 32768)
    # h3: no sampled allocation.
    assert x[2, COL['alloc_since_sample_vcpu_frac']] == 0.0
    assert x[0, COL['peak_present']] == 1.0
    assert x[0, COL['cpu_util_peak_24h']] == pytest.approx(0.9)
    assert x[0, COL['mem_util_peak_24h']] == pytest.approx(0.6)
    assert x[1, COL['peak_present']] == 0.0
    assert x[1, COL['cpu_util_peak_24h']] == 0.0
    assert (x[:, COL['project_cpu_ratio_peak_24h']] == np.float32(0.75)).all()


def test_request_life_order_siblings_pair_project_flavor():
    sib, pair, proj, flav = (Lifetime(m, 2 * m, 5)
                             for m in (60, 600, 3600, 7200))
    full = features.Lifetimes(recent={'p1': sib},
                              project_flavor={('p1', 'm1.medium'): pair},
                              project={'p1': proj},
                              flavor={'m1.medium': flav})
    assert full.for_request('p1', 'm1.medium') is sib
    assert full.for_instance('p1', 'm1.medium') is pair
    no_pair = features.Lifetimes(project={'p1': proj},
                                 flavor={'m1.medium': flav})
    assert no_pair.for_request('p1', 'm1.medium') is proj
    assert no_pair.for_request('p2', 'm1.medium') is flav
    assert no_pair.for_request('p2', 'other') is None
    usage = features.UsageLookup(lifetimes=full)
    x = features.build_matrix([host()], REQ, usage)
    assert x[0, COL['req_life_present']] == 1.0
    assert x[0, COL['req_life_log_median']] == pytest.approx(math.log1p(60))
    assert x[0, COL['req_life_log_p90']] == pytest.approx(math.log1p(120))


def test_host_remaining_life_and_extension():
    life = Lifetime(1000.0, 5000.0, 10)
    req_life = features.Lifetimes(flavor={'m1.medium': life})
    usage = features.UsageLookup(lifetimes=req_life)
    now = 10_000.0
    # h1 holds a VM started 400 s ago (600 s left of its median), h2 one
    # that outlived its median (p90: 5000 - 2000 = 3000 s left), h3 is
    # empty, h4 holds only VMs without a prediction.
    remaining = [
        features.host_remaining_s(now, [(now - 400, life)]),
        features.host_remaining_s(now, [(now - 2000, life),
                                        (now - 100, None)]),
        features.host_remaining_s(now, []),
        features.host_remaining_s(now, [(now - 10, None)])]
    assert remaining[:3] == [600.0, 3000.0, 0.0]
    assert math.isnan(remaining[3])
    x = features.build_matrix([host(n) for n in 'abcd'], REQ, usage,
                              remaining_s=remaining)
    assert x[:, COL['host_life_present']].tolist() == [1, 1, 1, 0]
    assert x[0, COL['host_remaining_log_s']] == pytest.approx(math.log1p(600))
    assert x[2, COL['host_remaining_log_s']] == 0.0
    assert x[3, COL['host_remaining_log_s']] == 0.0
    # The request lives 1000 s: it extends h1's 600 s by 400 s, not h2's
    # 3000 s at all, and an empty host by its whole life; unknown: 0.
    assert x[:, COL['life_extension_frac']].tolist() == pytest.approx(
        [0.4, 0.0, 1.0, 0.0])


def test_expected_end_is_re_predicted_as_a_vm_outlives_it():
    life = Lifetime(100.0, 400.0, 3)
    assert features.expected_end_s(0.0, 50.0, life) == 100.0
    assert features.expected_end_s(0.0, 100.0, life) == 400.0
    assert features.expected_end_s(0.0, 399.0, life) == 400.0
    # Past its p90: the p90 doubled as often as it is outlived.
    assert features.expected_end_s(0.0, 400.0, life) == 800.0
    assert features.expected_end_s(0.0, 1000.0, life) == 1600.0
    # Always in the future, and constant between re-predictions.
    for now in np.linspace(0, 5000, 101):
        assert features.expected_end_s(0.0, float(now), life) > now


def test_lifetime_stats_and_siblings():
    assert features.lifetime_stats([]) is None
    life = features.lifetime_stats(list(range(1, 11)))
    assert (life.median_s, life.p90_s, life.count) == (5.0, 9.0, 10.0)
    # Siblings: the median is known once more than half have ended.
    assert features.sibling_lifetime([10.0], [50.0, 60.0]) is None
    sib = features.sibling_lifetime([10.0, 20.0], [50.0])
    assert (sib.median_s, sib.p90_s, sib.count) == (20.0, 50.0, 3.0)
    sib = features.sibling_lifetime([30.0, 10.0, 20.0], [])
    assert (sib.median_s, sib.p90_s) == (20.0, 30.0)
    assert features.sibling_lifetime([], []) is None
    # Arrays (the simulator's) as any iterable, generators too.
    for ended, ages in (([10.0, 20.0], [50.0]), ([30.0, 10.0, 20.0], []),
                        ([10.0], [50.0, 60.0]), ([], [])):
        want = features.sibling_lifetime(ended, ages)
        assert features.sibling_lifetime(np.array(ended),
                                         np.array(ages)) == want
        assert features.sibling_lifetime(iter(ended), iter(ages)) == want


def test_matrix_of_each_schema():
    usage = features.UsageLookup(
        {'h1': features.HostUsage(0.2, 0.4, 0.5, 0.6)}, {'p1': 0.5},
        host_alloc={'h1': (2.0, 1024.0)})
    hosts = [host('h1'), host('h2')]
    v1 = features.build_matrix(hosts, REQ, usage, schema=features.SCHEMA_V1)
    v2 = features.build_matrix(hosts, REQ, usage)
    assert v1.shape == (2, 24) and v2.shape == (2, 36)
    np.testing.assert_array_equal(v2[:, :24], v1)
    cols = features.HostColumns.from_views(hosts)
    got = features.usage_matrix(['h1', 'h2'], cols, REQ, usage,
                                schema=features.SCHEMA_V1)
    np.testing.assert_array_equal(got, v1)

    # v1 never asks for the hosts' remaining life.
    def remaining(_):
        raise AssertionError('read for a v1 matrix')
    features.usage_matrix(['h1', 'h2'], cols, REQ, usage,
                          schema=features.SCHEMA_V1, remaining=remaining)
