"""The CPU utilisation model."""

import numpy as np
import pytest

from nova_rl_trainer.simulation import utilisation

from ._helpers import make_trace


def model_trace(n=4000, projects=40):
    rows = [(float(i), None, 2, 1024, 0, None, f'tenant-{i % projects}')
            for i in range(n)]
    return make_trace(rows)


def test_seeded_and_a_pure_function_of_vm_and_sample():
    t = model_trace()
    a = utilisation.build_usage(t, seed=7, interval_s=300)
    b = utilisation.build_usage(t, seed=7, interval_s=300)
    vms = np.arange(len(t))
    np.testing.assert_array_equal(a.cpu_util(vms, 5), b.cpu_util(vms, 5))
    # Asking for a subset gives the same values: common random numbers
    # whatever else is placed.
    sub = vms[::7]
    np.testing.assert_array_equal(a.cpu_util(sub, 5),
                                  a.cpu_util(vms, 5)[::7])
    c = utilisation.build_usage(t, seed=8, interval_s=300)
    assert not np.array_equal(a.cpu_util(vms, 5), c.cpu_util(vms, 5))
    u = a.cpu_util(vms, 5)
    assert ((u >= 0) & (u <= 1)).all()


def test_tenants_differ_and_are_consistent():
    t = model_trace()
    m = utilisation.build_usage(t, seed=1, interval_s=300)
    vms = np.arange(len(t))
    # Mean use over a day of samples, per VM, then per tenant.
    per_vm = np.mean([m.cpu_util(vms, k) for k in range(0, 288, 4)], axis=0)
    tenant = t.project
    means = np.array([per_vm[tenant == p].mean() for p in range(40)])
    spread_within = np.mean([per_vm[tenant == p].std() for p in range(40)])
    assert means.std() > 2 * spread_within
    # Long tail: most tenants are light, some are busy.
    assert np.median(means) < 0.25 and means.max() > 0.4
    # The profile depends on the tenant's name, not on the trace: a tenant
    # has the same mean in another trace with the same seed.
    other = make_trace([(0.0, None, 2, 1024, 0, None, 'tenant-3')])
    m2 = utilisation.build_usage(other, seed=1, interval_s=300)
    assert m2.project_mean[0] == m.project_mean[3]


def test_diurnal_swing():
    t = model_trace(n=2000, projects=5)
    m = utilisation.build_usage(t, seed=2, interval_s=300)
    vms = np.arange(len(t))
    hourly = [m.cpu_util(vms, k).mean() for k in range(0, 288, 12)]
    assert max(hourly) > 1.1 * min(hourly)


def test_csv_utilisation_overrides_the_model():
    rows = [(0.0, None, 4, 1024, 0, 0.3), (0.0, None, 4, 1024, 0, None)]
    t = make_trace(rows)
    t.cpu_util_p95[0] = 0.5
    m = utilisation.build_usage(t, seed=0, interval_s=60)
    samples = np.array([m.cpu_util(np.array([0]), k)[0]
                        for k in range(20000)])
    assert samples.mean() == pytest.approx(0.3, abs=0.01)
    assert np.percentile(samples, 95) == pytest.approx(0.5, abs=0.01)
    # Mean only: steady.
    t2 = make_trace([(0.0, None, 4, 1024, 0, 0.42)])
    m2 = utilisation.build_usage(t2, seed=0, interval_s=60)
    assert m2.cpu_util(np.array([0]), 3)[0] == pytest.approx(0.42)


def test_noise_is_standard_normal():
    z = utilisation.normal_noise(123, np.arange(200000), 9)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
