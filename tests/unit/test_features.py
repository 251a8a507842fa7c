import math

import numpy as np
import pytest

from nova_rl_weigher import features
from nova_rl_weigher.features import FEATURE_INDEX as I


def host(name='h1', **kw):
    base = dict(name=name, vcpus_total=16, vcpus_used=8, ram_total_mb=32768,
                ram_free_mb=16384, disk_total_gb=100, disk_free_mb=51200,
                cpu_allocation_ratio=2.0, ram_allocation_ratio=1.5,
                disk_allocation_ratio=1.0, num_instances=3, num_io_ops=1,
                failed_builds=0, nova_weight=1.25)
    base.update(kw)
    return features.HostView(**base)


REQ = features.RequestView(vcpus=4, memory_mb=4096, disk_gb=20,
                           project_id='p1', instance_uuid='u1')


def test_schema_is_named_versioned_and_hashed():
    desc = features.schema_description()
    assert desc['name'] == 'nova-rl-host-features'
    assert desc['version'] == 1
    assert len(desc['hash']) == 64
    assert desc['features'] == list(features.FEATURE_NAMES)
    assert len(set(features.FEATURE_NAMES)) == features.NUM_FEATURES


def test_hand_computed_row():
    x = features.build_matrix([host()], REQ)
    assert x.dtype == np.float32 and x.shape == (1, features.NUM_FEATURES)
    row = x[0]
    ram_cap = 32768 * 1.5
    ram_free = ram_cap - (32768 - 16384)
    assert row[I['ram_free_frac']] == pytest.approx(ram_free / ram_cap)
    assert row[I['ram_free_after_frac']] == pytest.approx(
        (ram_free - 4096) / ram_cap)
    assert row[I['vcpu_free_frac']] == pytest.approx((32 - 8) / 32)
    assert row[I['vcpu_free_after_frac']] == pytest.approx((32 - 12) / 32)
    assert row[I['disk_free_frac']] == pytest.approx(0.5)
    assert row[I['disk_free_after_frac']] == pytest.approx(
        (51200 - 20480) / 102400)
    assert row[I['log_vcpus_total']] == pytest.approx(4.0)
    assert row[I['log_ram_total_gb']] == pytest.approx(5.0)
    assert row[I['log1p_instances']] == pytest.approx(math.log1p(3))
    assert row[I['nova_weight']] == pytest.approx(1.25)
    assert row[I['nova_weight_rel']] == 0.0
    assert row[I['req_vcpu_frac']] == pytest.approx(0.25)
    assert row[I['usage_present']] == 0.0
    assert row[I['project_ratio_present']] == 0.0
    assert row[I['project_cpu_ratio']] == 1.0
    # Without usage, allocated vCPUs are assumed fully busy.
    assert row[I['cpu_p95_after']] == pytest.approx(8 / 16 + 4 / 16)


def test_usage_and_project_ratio_are_read_and_missing_entries_are_absent():
    usage = features.UsageLookup(
        {'h1': features.HostUsage(0.2, 0.4, 0.5, 0.6)}, {'p1': 0.5})
    x = features.build_matrix([host('h1'), host('h2', nova_weight=2.0)],
                              REQ, usage)
    assert x[0, I['usage_present']] == 1.0
    assert x[0, I['cpu_util_p95']] == pytest.approx(0.4)
    assert x[0, I['mem_util_mean']] == pytest.approx(0.5)
    assert x[0, I['cpu_p95_after']] == pytest.approx(0.4 + 4 * 0.5 / 16)
    assert x[1, I['usage_present']] == 0.0
    assert x[1, I['cpu_util_mean']] == 0.0
    assert (x[:, I['project_ratio_present']] == 1.0).all()
    assert x[0, I['nova_weight_rel']] == pytest.approx(-0.75)


def test_empty_and_degenerate_hosts_do_not_raise():
    assert features.build_matrix([], REQ).shape == (0, features.NUM_FEATURES)
    x = features.build_matrix([host(vcpus_total=0, ram_total_mb=0,
                                    disk_total_gb=0)], REQ)
    assert np.isfinite(x).all()


def test_non_finite_input_is_passed_through_for_the_gate():
    x = features.build_matrix([host(nova_weight=float('nan'))], REQ)
    assert not np.isfinite(x).all()
