"""The shield: a policy with ``shield.max_projected_cpu_peak`` prefers only
hosts whose projected CPU peak after the placement stays within it, in the
weigher's gate and in the simulator alike, and abstains with
``no_safe_host`` when no candidate is within it."""

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import metrics
from nova_rl_weigher import shield
from tests import fixtures as testing

from nova_rl_trainer.simulation import policies

COL = features.FEATURE_INDEX
LIMIT = 0.7
# Sampled 24 h peaks of four candidates; the request adds 0.1 of a host.
PEAKS = (0.2, 0.5, 0.65, 0.9)


def matrix(peaks=PEAKS, req=0.1, since=0.0):
    """Candidates with usage and 24 h peaks sampled."""
    x = np.zeros((len(peaks), features.NUM_FEATURES), dtype=np.float32)
    x[:, COL['usage_present']] = 1.0
    x[:, COL['peak_present']] = 1.0
    x[:, COL['cpu_util_peak_24h']] = peaks
    x[:, COL['cpu_util_p95']] = np.asarray(peaks) / 2
    x[:, COL['req_vcpu_frac']] = req
    x[:, COL['alloc_since_sample_vcpu_frac']] = since
    return x


def packer(path, shield_doc={shield.MAX_PROJECTED_CPU_PEAK: LIMIT}, **kw):
    """A policy that prefers the hottest host (the one a shield is for)."""
    return artifact.load_artifact(testing.make_linear_policy(
        str(path), {'cpu_util_peak_24h': 1.0}, shield=shield_doc, **kw))


# -- the projection --------------------------------------------------------

def test_projection_adds_recent_allocation_and_the_request():
    x = matrix(since=0.05)
    np.testing.assert_allclose(shield.projected_cpu_peak(x),
                               np.array(PEAKS) + 0.15, rtol=1e-6)


def test_projection_without_24h_peak_uses_recent_p95():
    x = matrix()
    x[1, COL['peak_present']] = 0.0
    got = shield.projected_cpu_peak(x)
    assert got[1] == pytest.approx(PEAKS[1] / 2 + 0.1, rel=1e-6)
    assert got[0] == pytest.approx(PEAKS[0] + 0.1, rel=1e-6)


def test_projection_without_usage_uses_the_allocation():
    x = matrix()
    x[:, COL['usage_present']] = 0.0
    x[:, COL['cpu_p95_after']] = (0.3, 0.9, 0.1, 0.5)
    np.testing.assert_allclose(shield.projected_cpu_peak(x),
                               (0.3, 0.9, 0.1, 0.5), rtol=1e-6)


def test_projection_refuses_v1_columns():
    with pytest.raises(ValueError, match='schema v2'):
        shield.projected_cpu_peak(np.zeros((2, features.SCHEMA_V1
                                            .num_features)))


def test_no_shield_lets_every_host():
    assert shield.safe_hosts(None, matrix()) is None


# -- the manifest ----------------------------------------------------------

def test_manifest_round_trip(tmp_path):
    policy = packer(tmp_path / 'p')
    assert policy.shield_limit == LIMIT
    assert policy.manifest['shield'] == {'max_projected_cpu_peak': LIMIT}
    plain = artifact.load_artifact(testing.make_linear_policy(
        str(tmp_path / 'q'), {'cpu_util_peak_24h': 1.0}))
    assert plain.shield_limit is None and 'shield' not in plain.manifest


@pytest.mark.parametrize('doc, why', [
    ([0.7], 'must be an object'),
    ({}, 'must be a number'),
    ({'max_projected_cpu_peak': 'high'}, 'must be a number'),
    ({'max_projected_cpu_peak': True}, 'must be a number'),
    ({'max_projected_cpu_peak': float('nan')}, 'finite'),
    ({'max_projected_cpu_peak': 0}, r'must be in \(0, 1\]'),
    ({'max_projected_cpu_peak': 1.5}, r'must be in \(0, 1\]'),
    ({'max_projected_cpu_peak': 10 ** 400}, 'finite'),
])
def test_manifest_refuses_a_bad_shield(tmp_path, doc, why):
    path = testing.make_linear_policy(str(tmp_path / 'p'),
                                      {'cpu_util_peak_24h': 1.0})
    testing.edit_manifest(path, shield=doc)
    with pytest.raises(artifact.ArtifactError, match=why):
        artifact.load_artifact(path)
    with pytest.raises(artifact.ArtifactError, match=why):
        packer(tmp_path / 'w', doc)


def test_shielded_manifest_is_format_version_2(tmp_path):
    # A weigher from before the shield ignores unknown fields and would run
    # the policy unshielded; it refuses format_version 2 instead.
    assert packer(tmp_path / 'p').manifest['format_version'] == 2
    plain = testing.make_linear_policy(str(tmp_path / 'q'),
                                       {'cpu_util_peak_24h': 1.0})
    assert artifact.load_artifact(plain).manifest['format_version'] == 1
    testing.edit_manifest(plain, format_version=2)
    with pytest.raises(artifact.ArtifactError, match='without a shield'):
        artifact.load_artifact(plain)
    path = str(tmp_path / 'p')
    testing.edit_manifest(path, format_version=1)
    with pytest.raises(artifact.ArtifactError, match='with a shield'):
        artifact.load_artifact(path)


def test_manifest_refuses_a_shield_on_a_v1_policy(tmp_path):
    with pytest.raises(artifact.ArtifactError, match='schema v2'):
        artifact.load_artifact(testing.make_linear_policy(
            str(tmp_path / 'p'), {'cpu_util_p95': 1.0},
            schema=features.SCHEMA_V1,
            shield={shield.MAX_PROJECTED_CPU_PEAK: LIMIT}))


# -- the gate --------------------------------------------------------------

def test_gate_prefers_the_best_safe_host(tmp_path):
    policy = packer(tmp_path / 'p')
    x = matrix()
    scores = policy.score(x)
    assert int(np.argmax(scores.mean(axis=0))) == 3     # unshielded choice
    d = gate.decide(policy, x, scores,
                    settings=gate.GateSettings(confidence_threshold=0.5))
    assert d.applied and d.best == 1
    # Safe hosts ranked by the policy within [0, 1], the others at 0.
    np.testing.assert_allclose(d.weights, (0.0, 1.0, 0.0, 0.0))
    chosen = int(np.argmax(gate.final_weights(x[:, COL['nova_weight']],
                                              d.weights, 10.0)))
    assert chosen == 1


def test_gate_abstains_when_no_host_is_safe(tmp_path):
    policy = packer(tmp_path / 'p')
    x = matrix(peaks=(0.65, 0.8, 0.9, 0.95))
    d = gate.decide(policy, x, policy.score(x),
                    settings=gate.GateSettings(confidence_threshold=0.0))
    assert d.verdict == gate.NO_SAFE_HOST and not d.applied
    assert d.weights is None and d.confidence == 0.0
    assert '0.7' in d.detail and '4 candidates' in d.detail


def test_gate_without_shield_is_unchanged(tmp_path):
    policy = packer(tmp_path / 'p', shield_doc=None)
    x = matrix()
    scores = policy.score(x)
    d = gate.decide(policy, x, scores,
                    settings=gate.GateSettings(confidence_threshold=0.5))
    assert d.applied and d.best == 3
    np.testing.assert_allclose(d.weights,
                               gate.normalised_weights(scores))


def test_single_safe_host_gets_the_top_weight(tmp_path):
    policy = packer(tmp_path / 'p')
    x = matrix(peaks=(0.9, 0.3, 0.8, 0.95))
    d = gate.decide(policy, x, policy.score(x),
                    settings=gate.GateSettings(confidence_threshold=0.5))
    assert d.applied and d.best == 1
    np.testing.assert_allclose(d.weights, (0.0, 1.0, 0.0, 0.0))


def test_reason_is_exported_as_a_metric():
    assert gate.NO_SAFE_HOST == 'no_safe_host'
    assert gate.NO_SAFE_HOST in metrics.ABSTAIN_REASONS


# -- the simulator -----------------------------------------------------------

def test_raw_artifact_policy_is_shielded(tmp_path):
    policy = policies.ArtifactPolicy(packer(tmp_path / 'p'), 'p', mode='raw')
    x = matrix()
    assert policy.pick(x, x[:, COL['nova_weight']]) == 1
    # No safe host: raw still acts, on its own best.
    hot = matrix(peaks=(0.65, 0.8, 0.9, 0.95))
    assert policy.pick(hot, hot[:, COL['nova_weight']]) == 3


def test_scoring_policy_takes_a_shield():
    shield_free = policies.ScoringPolicy(
        lambda x: x[:, COL['cpu_util_peak_24h']])
    x = matrix()
    assert shield_free.pick(x, x[:, 0]) == 3
    score = policies.ScoringPolicy(lambda x: x[:, COL['cpu_util_peak_24h']],
                                   shield_limit=LIMIT)
    assert score.pick(x, x[:, 0]) == 1
