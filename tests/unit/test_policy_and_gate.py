import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import conf
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import testing
from nova_rl_weigher.policies import build_default


@pytest.fixture(scope='module')
def default_policy():
    return artifact.load_artifact(conf.DEFAULT_POLICY_PATH)


def candidate_matrix(seed, n):
    rng = np.random.default_rng(seed)
    hosts, request, usage = build_default.random_candidates(rng, n)
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


def test_default_policy_prefers_tighter_fit(default_policy):
    """The imitation mostly picks a host the best-fit heuristic also likes."""
    hits = 0
    for seed in range(60):
        x = candidate_matrix(100 + seed, 6)
        best = int(np.argmax(default_policy.score(x).mean(axis=0)))
        h = build_default.heuristic_scores(x)
        hits += h[best] >= np.sort(h)[-2] - 1e-6   # in the heuristic's top 2
    assert hits >= 48


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
    assert gate.normalised_weights(scores) == [0.0, 1.0, pytest.approx(1 / 3)]
    assert gate.normalised_weights(np.ones((2, 3))) == [0.0, 0.0, 0.0]


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
