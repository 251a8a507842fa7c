import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import conf
from nova_rl_weigher import features
from nova_rl_weigher import gate
from tests import fixtures as testing


@pytest.fixture(scope='module')
def default_policy():
    return artifact.load_artifact(conf.DEFAULT_POLICY_PATH)


def candidate_matrix(seed, n):
    rng = np.random.default_rng(seed)
    hosts, request, usage = testing.random_candidates(rng, n)
    return features.build_matrix(hosts, request, usage)


def test_scores_are_permutation_equivariant(default_policy):
    x = candidate_matrix(1, 12)
    perm = np.random.default_rng(2).permutation(12)
    s = default_policy.score(x)
    sp = default_policy.score(x[perm])
    np.testing.assert_allclose(sp, s[:, perm], rtol=1e-5, atol=1e-5)


def test_any_number_of_hosts(default_policy):
    for n in (1, 2, 7, 300):
        assert default_policy.score(candidate_matrix(n, n)).shape == (5, n)


def dev_shaped_candidates(rng, n):
    """Candidates shaped like the hosts the bundled policy was trained on
    (azure-v1-dev: 48 vCPUs at 4:1, 384 GiB), at random fill levels."""
    request = features.RequestView(
        vcpus=int(rng.choice([1, 2, 4, 8])),
        memory_mb=float(rng.choice([2048, 4096, 8192, 16384])),
        disk_gb=0.0, project_id='p')
    hosts = []
    for i in range(n):
        fill = rng.uniform(0.0, 0.85)
        hosts.append(features.HostView(
            name=f'h{i}', vcpus_total=48,
            vcpus_used=float(np.floor(fill * 192 * rng.uniform(0.8, 1.0))),
            ram_total_mb=393216.0, ram_free_mb=393216.0 * (1 - fill),
            disk_total_gb=2048.0, disk_free_mb=2048 * 1024 * (1 - fill / 3),
            cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0,
            num_instances=float(int(fill * 40)), num_io_ops=0.0,
            failed_builds=0.0))
    i = features.FEATURE_INDEX
    for h, row in zip(hosts, features.build_matrix(hosts, request)):
        # Nova's default weighers: free RAM, vCPUs and disk, summed.
        h.nova_weight = float(row[i['ram_free_frac']]
                              + row[i['vcpu_free_frac']]
                              + row[i['disk_free_frac']])
    return hosts, request


def test_bundled_policy_packs(default_policy):
    """Its best host is one of the two fullest (it packs), where Nova's
    default weighers would pick the emptiest."""
    hits = 0
    for seed in range(60):
        hosts, request = dev_shaped_candidates(np.random.default_rng(seed), 6)
        x = features.build_matrix(hosts, request)
        best = int(np.argmax(default_policy.score(x).mean(axis=0)))
        fullest = np.argsort([h.ram_free_mb for h in hosts])[:2]
        hits += best in fullest
    assert hits >= 54


def test_agreement_counts_members_and_tolerates_ties():
    scores = np.array([[0.0, 1.0, 0.5],
                       [0.0, 1.0, 0.5],
                       [0.0, 0.2, 1.0]])
    conf_, best = gate.ensemble_agreement(scores)
    assert best == 1 and conf_ == pytest.approx(2 / 3)
    tied = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-9]])
    assert gate.ensemble_agreement(tied)[0] == 1.0


def test_disagreeing_ensemble_has_low_confidence(tmp_path):
    p = artifact.load_artifact(testing.make_linear_policy(
        str(tmp_path / 'p'), {'log_vcpus_total': 1.0}, ensemble_size=4,
        agreement=False))
    x = candidate_matrix(3, 5)
    a = gate.assess(p, x, p.score(x), 'none')
    assert a.confidence == 0.5 and a.reason == ''


def test_out_of_training_range_forces_zero_confidence(tmp_path):
    f = features.NUM_FEATURES
    lo, hi = np.full(f, -10.0), np.full(f, 10.0)
    hi[features.FEATURE_INDEX['nova_weight']] = 1.0
    p = artifact.load_artifact(testing.make_linear_policy(
        str(tmp_path / 'p'), {'log_vcpus_total': 1.0}, feature_min=lo,
        feature_max=hi))
    x = candidate_matrix(4, 5)
    x[:, features.FEATURE_INDEX['nova_weight']] = 0.5
    assert gate.assess(p, x, p.score(x), 'none').confidence == 1.0
    # Inside the 5% tolerance band above the max: still fine.
    x[2, features.FEATURE_INDEX['nova_weight']] = 1.5
    assert gate.assess(p, x, p.score(x), 'none').confidence == 1.0
    x[2, features.FEATURE_INDEX['nova_weight']] = 3.0
    a = gate.assess(p, x, p.score(x), 'none')
    assert a.confidence == 0.0 and a.reason == gate.OUT_OF_DISTRIBUTION
    assert 'nova_weight' in a.detail


@pytest.mark.parametrize('status, reason', [
    ('stale', gate.SNAPSHOT_STALE),
    ('unavailable', gate.SNAPSHOT_UNAVAILABLE),
])
def test_bad_snapshot_forces_zero_confidence(tmp_path, status, reason):
    p = artifact.load_artifact(testing.make_linear_policy(
        str(tmp_path / 'p'), {'log_vcpus_total': 1.0}))
    x = candidate_matrix(5, 4)
    a = gate.assess(p, x, p.score(x), status)
    assert a.confidence == 0.0 and a.reason == reason


def test_non_finite_features_force_zero_confidence(tmp_path):
    p = artifact.load_artifact(testing.make_linear_policy(
        str(tmp_path / 'p'), {'log_vcpus_total': 1.0}))
    x = candidate_matrix(6, 4)
    x[1, 0] = np.nan
    assert gate.assess(p, x, p.score(x), 'none').reason == gate.NON_FINITE


def test_normalised_weights_keep_order_in_unit_range():
    scores = np.array([[1.0, 3.0, 2.0], [1.0, 5.0, 2.0]])
    assert gate.normalised_weights(scores).tolist() == [
        0.0, 1.0, pytest.approx(1 / 3)]
    assert gate.normalised_weights(np.ones((2, 3))).tolist() == [0.0] * 3


def test_explain_names_the_feature_that_matters(tmp_path):
    p = artifact.load_artifact(testing.make_linear_policy(
        str(tmp_path / 'p'), {'ram_free_after_frac': -2.0}))
    x = candidate_matrix(7, 6)
    best = int(np.argmax(p.score(x).mean(axis=0)))
    (effects,) = p.explain(x, [best])
    j, effect = effects[0]
    assert features.FEATURE_NAMES[j] == 'ram_free_after_frac'
    assert effect > 0   # its low leftover RAM is why it won


def test_fast_explain_equals_brute_force_occlusion(default_policy):
    x = candidate_matrix(8, 9)
    base = default_policy.score(x).mean(axis=0)
    (fast,) = default_policy.explain(x, [4], top_n=features.NUM_FEATURES)
    col_mean = x.mean(axis=0)
    for j, effect in fast:
        xp = x.copy()
        xp[4, j] = col_mean[j]
        brute = base[4] - default_policy.score(xp).mean(axis=0)[4]
        assert effect == pytest.approx(brute, rel=1e-3, abs=1e-5)
    assert len(fast) > 5
