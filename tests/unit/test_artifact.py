import hashlib
import io
import json
import os

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import conf
from nova_rl_weigher import features
from tests import fixtures as testing


@pytest.fixture
def policy_dir(tmp_path):
    return testing.make_linear_policy(str(tmp_path / 'p'),
                                      {'log_vcpus_total': -1.0})


def _manifest(path):
    with open(os.path.join(path, 'manifest.json')) as f:
        return json.load(f)


def _write_manifest(path, manifest):
    with open(os.path.join(path, 'manifest.json'), 'w') as f:
        json.dump(manifest, f)


def _rewrite_weights(path, arrays):
    """Replace the weights and fix the checksum: only content checks bite."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    with open(os.path.join(path, 'weights.npz'), 'wb') as f:
        f.write(data)
    m = _manifest(path)
    m['weights_sha256'] = hashlib.sha256(data).hexdigest()
    _write_manifest(path, m)


def _arrays(path):
    with np.load(os.path.join(path, 'weights.npz')) as z:
        return {k: z[k] for k in z.files}


def test_round_trip_and_manifest_contents(policy_dir):
    p = artifact.load_artifact(policy_dir)
    m = p.manifest
    assert m['format'] == 'nova-rl-policy' and m['format_version'] == 1
    assert m['feature_schema']['hash'] == features.SCHEMA_HASH
    assert m['ensemble_size'] == 5 and p.ensemble_size == 5
    assert m['weights_sha256'] == artifact.sha256_file(
        os.path.join(policy_dir, 'weights.npz'))
    for key in ('normalisation', 'feature_ranges', 'objective', 'provenance'):
        assert key in m
    x = np.random.default_rng(0).normal(size=(7, features.NUM_FEATURES))
    scores = p.score(x.astype(np.float32))
    expected = -x[:, features.FEATURE_INDEX['log_vcpus_total']]
    np.testing.assert_allclose(scores, np.tile(expected, (5, 1)), rtol=1e-5,
                               atol=1e-5)


def test_bundled_default_policy_loads_and_says_what_it_is():
    p = artifact.load_artifact(conf.DEFAULT_POLICY_PATH)
    m = p.manifest
    prov = m['provenance']
    # Trained by tools/build-bundled-policy.sh: PPO on azure-v1-dev for the
    # packing objective, calibrated on held-out decisions.
    assert m['objective'] == 'packing'
    assert 'PPO' in prov['method']
    assert prov['scenario'] == 'azure-v1-dev'
    assert prov['training']['iterations'] == 40
    assert 0.0 < m['calibration']['confidence_threshold'] <= 1.0
    assert m['calibration']['table']
    w1 = p.params['W1']
    # Fitted members differ from each other (not copies, not zeros).
    assert np.abs(w1[0] - w1[1]).max() > 1e-3


@pytest.mark.parametrize('damage, message', [
    ('missing_dir', 'not found'),
    ('missing_weights', 'weights.npz'),
    ('truncated', 'sha256'),
    ('corrupt_manifest', 'unreadable'),
    ('schema_hash', 'feature schema'),
    ('sha256', 'sha256'),
    ('nan', 'NaN'),
    ('shape', 'shape'),
    ('extra_array', 'expected'),
    ('pickled_object_array', 'not a valid npz'),
    ('format_version', 'format_version'),
    ('std_zero', 'std'),
    ('weights_path_escape', 'plain file name'),
])
def test_damaged_artifacts_are_refused(policy_dir, tmp_path, damage, message):
    weights = os.path.join(policy_dir, 'weights.npz')
    if damage == 'missing_dir':
        policy_dir = str(tmp_path / 'nowhere')
    elif damage == 'missing_weights':
        os.unlink(weights)
    elif damage == 'truncated':
        data = open(weights, 'rb').read()
        open(weights, 'wb').write(data[:len(data) // 2])
    elif damage == 'corrupt_manifest':
        with open(os.path.join(policy_dir, 'manifest.json'), 'w') as f:
            f.write('{"format": "nova-rl-policy", ')
    elif damage == 'schema_hash':
        m = _manifest(policy_dir)
        m['feature_schema']['hash'] = '0' * 64
        _write_manifest(policy_dir, m)
    elif damage == 'sha256':
        m = _manifest(policy_dir)
        m['weights_sha256'] = 'f' * 64
        _write_manifest(policy_dir, m)
    elif damage == 'nan':
        a = _arrays(policy_dir)
        a['W2'][0, 0, 0] = np.nan
        _rewrite_weights(policy_dir, a)
    elif damage == 'shape':
        a = _arrays(policy_dir)
        a['b1'] = a['b1'][:, :-1]
        _rewrite_weights(policy_dir, a)
    elif damage == 'extra_array':
        a = _arrays(policy_dir)
        a['surprise'] = np.zeros(3)
        _rewrite_weights(policy_dir, a)
    elif damage == 'pickled_object_array':
        a = _arrays(policy_dir)
        a['W1'] = np.array([{'evil': 1}], dtype=object)
        buf = io.BytesIO()
        np.savez(buf, **a)   # stores W1 as a pickle
        data = buf.getvalue()
        open(weights, 'wb').write(data)
        m = _manifest(policy_dir)
        m['weights_sha256'] = hashlib.sha256(data).hexdigest()
        _write_manifest(policy_dir, m)
    elif damage == 'format_version':
        m = _manifest(policy_dir)
        m['format_version'] = 99
        _write_manifest(policy_dir, m)
    elif damage == 'std_zero':
        m = _manifest(policy_dir)
        m['normalisation']['std'][0] = 0.0
        _write_manifest(policy_dir, m)
    elif damage == 'weights_path_escape':
        m = _manifest(policy_dir)
        m['weights_file'] = '../../etc/passwd'
        _write_manifest(policy_dir, m)
    with pytest.raises(artifact.ArtifactError, match=message):
        artifact.load_artifact(policy_dir)


def test_writer_refuses_what_the_loader_would_refuse(tmp_path):
    params = testing.linear_params({'ram_free_frac': 1.0}, 3)
    params['W1'][0, 0, 0] = np.inf
    f = features.NUM_FEATURES
    with pytest.raises(artifact.ArtifactError, match='NaN or infinity'):
        artifact.write_artifact(
            str(tmp_path / 'bad'), params, mean=np.zeros(f), std=np.ones(f),
            feature_min=np.zeros(f), feature_max=np.ones(f),
            objective='packing', provenance={})
    assert not os.path.exists(tmp_path / 'bad' / 'manifest.json')


def test_files_are_readable_by_other_users(policy_dir):
    for name in ('manifest.json', 'weights.npz'):
        assert os.stat(os.path.join(policy_dir, name)).st_mode & 0o044


def test_rewriting_leaves_no_temporary_files(policy_dir):
    testing.make_linear_policy(policy_dir, {'log_vcpus_total': 1.0},
                               policy_version='again')
    assert sorted(os.listdir(policy_dir)) == ['manifest.json', 'weights.npz']
    assert artifact.load_artifact(policy_dir).version == 'again'


def test_read_manifest_resolves_a_symlinked_directory(policy_dir, tmp_path):
    link = str(tmp_path / 'current')
    os.symlink(policy_dir, link)
    assert artifact.read_manifest(link)['weights_file'] == 'weights.npz'
    assert artifact.artifact_signature(link)[0] == os.path.realpath(
        policy_dir)
