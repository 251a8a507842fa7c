"""v1 artifacts still load and run; v2 artifacts export and load.

``data/bundled_v1_scores.json`` holds the bundled (v1) policy's feature
matrix and scores on fixed inputs, recorded with the code before feature
schema v2: the same inputs must give the same bits now.
"""

import json
import os

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher.manifest import ArtifactError
from nova_rl_weigher import scorer as scorer_mod
from tests import fixtures as testing

RECORDED = os.path.join(os.path.dirname(__file__), 'data',
                        'bundled_v1_scores.json')


@pytest.fixture(scope='module')
def recorded():
    with open(RECORDED) as f:
        doc = json.load(f)
    hosts = [features.HostView(**h) for h in doc['hosts']]
    request = features.RequestView(**doc['request'])
    usage = features.UsageLookup(
        {k: features.HostUsage(**v) for k, v in doc['usage']['hosts'].items()},
        doc['usage']['project_cpu_ratio'])
    return hosts, request, usage, doc


@pytest.fixture(scope='module')
def bundled():
    return artifact.load_artifact(testing.V1_POLICY_PATH)


def test_bundled_policy_is_v1_and_scores_as_before(bundled, recorded):
    hosts, request, usage, doc = recorded
    assert bundled.schema is features.SCHEMA_V1
    assert bundled.manifest['feature_schema']['hash'] == \
        features.SCHEMA_V1.hash
    x = features.build_matrix(hosts, request, usage,
                              schema=bundled.schema)
    want_x = np.array(doc['features_v1'], dtype=np.float32)
    np.testing.assert_array_equal(x, want_x)
    want = np.array(doc['scores'], dtype=np.float32)
    np.testing.assert_array_equal(bundled.score(x), want)
    # The first 24 columns of the v2 matrix are v1's: a v1 policy reads a
    # v2 matrix through them, to the same bits.
    x2 = features.build_matrix(hosts, request, usage)
    assert x2.shape[1] == features.SCHEMA_V2.num_features
    np.testing.assert_array_equal(x2[:, :24], want_x)
    np.testing.assert_array_equal(bundled.score(x2), want)


def _v1_copy(params):
    out = dict(params)
    out['W1'] = params['W1'][:, :features.SCHEMA_V1.num_features]
    return out


def _write(path, params, f):
    lo, hi = np.full(f, -1e6), np.full(f, 1e6)
    return artifact.write_artifact(
        path, params, mean=np.zeros(f), std=np.ones(f), feature_min=lo,
        feature_max=hi, objective='test', provenance={})


def test_v2_and_v1_artifacts_round_trip(tmp_path, recorded):
    hosts, request, usage, _ = recorded
    params = testing.linear_params({'ram_free_after_frac': 1.0,
                                    'life_extension_frac': -0.5}, 3)
    m2 = _write(str(tmp_path / 'v2'), params, 36)
    assert m2['feature_schema'] == features.SCHEMA_V2.description()
    p2 = artifact.load_artifact(str(tmp_path / 'v2'))
    assert p2.schema is features.SCHEMA_V2
    usage2 = features.UsageLookup(usage.hosts, usage.project_cpu_ratio,
                                  lifetimes=features.Lifetimes(
                                      flavor={'': features.Lifetime(
                                          100, 200, 3)}))
    x = features.build_matrix(hosts, request, usage2,
                              remaining_s=[50.0] * len(hosts))
    want = (x[:, features.FEATURE_INDEX['ram_free_after_frac']]
            - 0.5 * x[:, features.FEATURE_INDEX['life_extension_frac']])
    np.testing.assert_allclose(p2.score(x)[0], want, rtol=1e-5, atol=1e-6)
    m1 = _write(str(tmp_path / 'v1'), _v1_copy(
        testing.linear_params({'ram_free_after_frac': 1.0}, 3)), 24)
    assert m1['feature_schema'] == features.SCHEMA_V1.description()
    assert artifact.load_artifact(str(tmp_path / 'v1')).schema is \
        features.SCHEMA_V1
    with pytest.raises(ArtifactError, match='no feature schema has 30'):
        _write(str(tmp_path / 'bad'), dict(params, W1=params['W1'][:, :30]),
               30)


def test_loader_refuses_an_unknown_schema_and_a_mismatched_width(tmp_path):
    path = str(tmp_path / 'p')
    testing.make_linear_policy(path, {'ram_free_frac': 1.0})
    other = dict(features.SCHEMA_V2.description(), hash='0' * 64)
    testing.edit_manifest(path, feature_schema=other)
    with pytest.raises(ArtifactError, match='does not match this weigher'):
        artifact.load_artifact(path)
    # v1's hash on v2-wide weights: the shapes give it away.
    testing.edit_manifest(path,
                          feature_schema=features.SCHEMA_V1.description())
    with pytest.raises(ArtifactError):
        artifact.load_artifact(path)


def _settings(path):
    return scorer_mod.Settings(policy_path=path, mode='gated',
                               confidence_threshold=0.0,
                               canary_percent=100.0,
                               latency_budget_ms=1e9)


@pytest.mark.parametrize('version', [1, 2])
def test_scorer_computes_the_policys_schema(tmp_path, recorded, version):
    hosts, request, usage, _ = recorded
    params = testing.linear_params({'ram_free_after_frac': 1.0}, 3)
    f = 24 if version == 1 else 36
    path = str(tmp_path / f'v{version}')
    _write(path, params if version == 2 else _v1_copy(params), f)
    calls = []

    def remaining(lifetimes):
        calls.append(lifetimes)
        return [0.0] * len(hosts)

    s = scorer_mod.Scorer()
    try:
        out = s.weigh([h.name for h in hosts],
                      features.HostColumns.from_views(hosts), request,
                      _settings(path), remaining=remaining)
    finally:
        s.close()
    assert out.applied, out.reason
    # Only a v2 policy reads the hosts' remaining life.
    assert len(calls) == (version == 2)
    best = int(np.argmax(out.weights))
    x = features.build_matrix(hosts, request, features.NO_USAGE)
    assert best == int(np.argmax(
        x[:, features.FEATURE_INDEX['ram_free_after_frac']]))
