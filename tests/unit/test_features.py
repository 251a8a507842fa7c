import math

import numpy as np
import pytest

from nova_rl_weigher import features
from nova_rl_weigher.features import FEATURE_INDEX as COL


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
    assert desc['version'] == 2
    assert len(desc['hash']) == 64
    assert desc['features'] == list(features.FEATURE_NAMES)
    assert len(set(features.FEATURE_NAMES)) == features.NUM_FEATURES


def test_v1_is_the_first_24_columns_of_v2_and_keeps_its_hash():
    v1, v2 = features.SCHEMA_V1, features.SCHEMA_V2
    assert v1.num_features == 24 and v2.num_features == 36
    assert v2.names[:24] == v1.names
    # The hash every v1 artifact (the bundled policy's) records.
    assert v1.hash == ('0ab6a5fd16a06de957f2273589b332639191903ebce400069e4'
                       '1cd2cdb94b263')
    assert set(features.SCHEMAS) == {v1.hash, v2.hash}
    assert features.schema_for_width(24) is v1
    assert features.schema_for_width(36) is v2
    with pytest.raises(ValueError):
        features.schema_for_width(25)


def test_hand_computed_row():
    x = features.build_matrix([host()], REQ)
    assert x.dtype == np.float32 and x.shape == (1, features.NUM_FEATURES)
    row = x[0]
    ram_cap = 32768 * 1.5
    ram_free = ram_cap - (32768 - 16384)
    assert row[COL['ram_free_frac']] == pytest.approx(ram_free / ram_cap)
    assert row[COL['ram_free_after_frac']] == pytest.approx(
        (ram_free - 4096) / ram_cap)
    assert row[COL['vcpu_free_frac']] == pytest.approx((32 - 8) / 32)
    assert row[COL['vcpu_free_after_frac']] == pytest.approx((32 - 12) / 32)
    assert row[COL['disk_free_frac']] == pytest.approx(0.5)
    assert row[COL['disk_free_after_frac']] == pytest.approx(
        (51200 - 20480) / 102400)
    assert row[COL['log_vcpus_total']] == pytest.approx(4.0)
    assert row[COL['log_ram_total_gb']] == pytest.approx(5.0)
    assert row[COL['log1p_instances']] == pytest.approx(math.log1p(3))
    assert row[COL['nova_weight']] == pytest.approx(1.25)
    assert row[COL['nova_weight_rel']] == 0.0
    assert row[COL['req_vcpu_frac']] == pytest.approx(0.25)
    assert row[COL['usage_present']] == 0.0
    assert row[COL['project_ratio_present']] == 0.0
    assert row[COL['project_cpu_ratio']] == 1.0
    # Without usage, allocated vCPUs are assumed fully busy.
    assert row[COL['cpu_p95_after']] == pytest.approx(8 / 16 + 4 / 16)


def test_usage_and_project_ratio_are_read_and_missing_entries_are_absent():
    usage = features.UsageLookup(
        {'h1': features.HostUsage(0.2, 0.4, 0.5, 0.6)}, {'p1': 0.5})
    x = features.build_matrix([host('h1'), host('h2', nova_weight=2.0)],
                              REQ, usage)
    assert x[0, COL['usage_present']] == 1.0
    assert x[0, COL['cpu_util_p95']] == pytest.approx(0.4)
    assert x[0, COL['mem_util_mean']] == pytest.approx(0.5)
    assert x[0, COL['cpu_p95_after']] == pytest.approx(0.4 + 4 * 0.5 / 16)
    assert x[1, COL['usage_present']] == 0.0
    assert x[1, COL['cpu_util_mean']] == 0.0
    assert (x[:, COL['project_ratio_present']] == 1.0).all()
    assert x[0, COL['nova_weight_rel']] == pytest.approx(-0.75)


def test_empty_and_degenerate_hosts_do_not_raise():
    assert features.build_matrix([], REQ).shape == (0, features.NUM_FEATURES)
    x = features.build_matrix([host(vcpus_total=0, ram_total_mb=0,
                                    disk_total_gb=0)], REQ)
    assert np.isfinite(x).all()


def test_non_finite_input_is_passed_through_for_the_gate():
    x = features.build_matrix([host(nova_weight=float('nan'))], REQ)
    assert not np.isfinite(x).all()


# The feature code before it was rewritten to fill the matrix a few rows at
# a time (features.matrix_from_inputs): kept here, verbatim, as the
# reference every value must equal to the bit.

def _ref_div(num, den):
    ok = den > 0
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape),
                     where=ok)


def _ref_log2(x):
    return np.log2(x, out=np.zeros(x.shape), where=x > 0)


def reference_matrix(c, request, project_cpu_ratio=None):
    n = len(c)
    out = np.empty((n, features.SCHEMA_V1.num_features), dtype=np.float32)
    if n == 0:
        return out
    req_vcpus = float(request.vcpus)
    req_ram = float(request.memory_mb)
    req_disk_mb = float(request.disk_gb) * 1024.0
    project_present = 0.0 if project_cpu_ratio is None else 1.0
    ratio = 1.0 if project_cpu_ratio is None else float(project_cpu_ratio)
    disk_total_mb = c.disk_total_gb * 1024.0
    ram_cap = c.ram_total_mb * c.ram_allocation_ratio
    vcpu_cap = c.vcpus_total * c.cpu_allocation_ratio
    disk_cap = disk_total_mb * c.disk_allocation_ratio
    ram_free = ram_cap - (c.ram_total_mb - c.ram_free_mb)
    vcpu_free = vcpu_cap - c.vcpus_used
    disk_free = disk_cap - (disk_total_mb - c.disk_free_mb)
    base_p95 = np.where(c.usage_present > 0, c.cpu_util_p95,
                        _ref_div(c.vcpus_used, c.vcpus_total))
    out[:, COL['ram_free_frac']] = _ref_div(ram_free, ram_cap)
    out[:, COL['ram_free_after_frac']] = _ref_div(ram_free - req_ram, ram_cap)
    out[:, COL['vcpu_free_frac']] = _ref_div(vcpu_free, vcpu_cap)
    out[:, COL['vcpu_free_after_frac']] = _ref_div(vcpu_free - req_vcpus,
                                                   vcpu_cap)
    out[:, COL['disk_free_frac']] = _ref_div(disk_free, disk_cap)
    out[:, COL['disk_free_after_frac']] = _ref_div(disk_free - req_disk_mb,
                                                   disk_cap)
    out[:, COL['log_vcpus_total']] = _ref_log2(c.vcpus_total)
    out[:, COL['log_ram_total_gb']] = _ref_log2(c.ram_total_mb / 1024.0)
    out[:, COL['log1p_instances']] = np.log1p(np.maximum(c.num_instances, 0))
    out[:, COL['log1p_io_ops']] = np.log1p(np.maximum(c.num_io_ops, 0))
    out[:, COL['log1p_failed_builds']] = np.log1p(
        np.maximum(c.failed_builds, 0))
    out[:, COL['nova_weight']] = c.nova_weight
    out[:, COL['nova_weight_rel']] = c.nova_weight - c.nova_weight.max()
    out[:, COL['req_vcpu_frac']] = _ref_div(np.full(n, req_vcpus),
                                            c.vcpus_total)
    out[:, COL['req_ram_frac']] = _ref_div(np.full(n, req_ram), c.ram_total_mb)
    out[:, COL['req_disk_frac']] = _ref_div(np.full(n, req_disk_mb),
                                            disk_total_mb)
    out[:, COL['usage_present']] = c.usage_present
    out[:, COL['cpu_util_mean']] = c.cpu_util_mean
    out[:, COL['cpu_util_p95']] = c.cpu_util_p95
    out[:, COL['mem_util_mean']] = c.mem_util_mean
    out[:, COL['mem_util_p95']] = c.mem_util_p95
    out[:, COL['project_ratio_present']] = project_present
    out[:, COL['project_cpu_ratio']] = ratio
    out[:, COL['cpu_p95_after']] = base_p95 + _ref_div(
        np.full(n, req_vcpus * ratio), c.vcpus_total)
    return out


def random_columns(rng, n, degenerate):
    from tests import fixtures as testing
    hosts, request, usage = testing.random_candidates(rng, n)
    cols = features.HostColumns.from_views(hosts).with_usage(
        [h.name for h in hosts], usage)
    if degenerate:
        for name in features.INPUT_COLUMNS:
            a = getattr(cols, name).copy()
            bad = rng.random(n) < 0.15
            a[bad] = rng.choice([0.0, -1.0, np.nan, np.inf, -np.inf, 1e300],
                                size=int(bad.sum()))
            setattr(cols, name, a)
    ratio = usage.project_cpu_ratio.get(request.project_id)
    return cols, request, ratio


@pytest.mark.parametrize('degenerate', [False, True])
def test_matrix_equals_the_reference_to_the_bit(degenerate):
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 60)) if trial % 10 else 500
        cols, request, ratio = random_columns(rng, n, degenerate)
        for r in (ratio, None, 0.0, 2.5):
            with np.errstate(all='ignore'):
                want = reference_matrix(cols, request, r)
                got = features.compute_matrix(cols, request, r,
                                              schema=features.SCHEMA_V1)
                flat = features.matrix_from_inputs(
                    cols.stacked(), request, r, schema=features.SCHEMA_V1)
                v2 = features.compute_matrix(cols, request, r)
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(flat, want)
            # v1 is exactly the first columns of v2, and v2's signals are
            # finite whatever v1's inputs are.
            np.testing.assert_array_equal(v2[:, :want.shape[1]], want)
            assert np.isfinite(v2[:, want.shape[1]:]).all()


def test_stacked_columns_are_the_input_rows():
    cols = features.HostColumns.from_views([host('a'),
                                            host('b', vcpus_used=2)])
    a = cols.stacked()
    assert a.shape == (len(features.INPUT_COLUMNS), 2)
    for i, name in enumerate(features.INPUT_COLUMNS):
        np.testing.assert_array_equal(a[i], getattr(cols, name))
    empty = features.HostColumns.from_views([])
    assert features.compute_matrix(empty, REQ).shape == (
        0, features.NUM_FEATURES)
