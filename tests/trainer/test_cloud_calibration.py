"""``nova-rl-trainer calibrate``: a policy's gate calibrated on one cloud
(its trace and cluster, against its configured Nova weighers), written to
a verified copy of the artifact with the weights unchanged."""

import json
import os

import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import gate
from tests import fixtures as testing

from nova_rl_trainer import cli
from nova_rl_trainer.publishing import cloud_calibration
from nova_rl_trainer.simulation import policies

#: 48 h of azure-v1-small on 17 hosts: 10 windows of 3 h after the first
#: 3 h, a few seconds in all.
ARGS = ['--scenario', 'azure-v1-small', '--objective', 'packing',
        '--horizon-hours', '3', '--workers', '1']
PACK = {'ram_free_after_frac': -1.0, 'vcpu_free_after_frac': -1.0}
SPREAD = {'ram_free_after_frac': 1.0, 'vcpu_free_after_frac': 1.0}


def calibrate(tmp_path, weights, *extra, name='policy'):
    policy = testing.make_linear_policy(str(tmp_path / name), weights,
                                        policy_version=f'{name}-v1')
    out = str(tmp_path / f'{name}-calibrated')
    rc = cli.main(['calibrate', '--policy', policy, '--out', out,
                   '--json', str(tmp_path / f'{name}.json'), *ARGS, *extra])
    return rc, policy, out


def test_starts_leave_nova_a_horizon_and_refuse_short_traces():
    starts = cloud_calibration.starts(48 * 3600.0, 3 * 3600.0, 10)
    assert len(starts) == 10
    assert starts[0] == 3 * 3600.0 and starts[-1] == 45 * 3600.0
    with pytest.raises(cloud_calibration.CloudCalibrationError,
                       match='two horizons'):
        cloud_calibration.starts(5 * 3600.0, 3 * 3600.0, 10)
    with pytest.raises(cloud_calibration.CloudCalibrationError,
                       match='at least 10'):
        cloud_calibration.starts(48 * 3600.0, 3 * 3600.0, 9)


def test_a_policy_worse_than_the_clouds_nova_must_never_act(tmp_path,
                                                            capsys):
    # Spreading, judged on packing against a Nova configured to pack:
    # more active hosts in every window.
    rc, policy, out = calibrate(tmp_path, SPREAD, '--nova-weighers',
                                'nova-pack')
    assert rc == 0
    text = capsys.readouterr().out
    assert 'against nova-pack, 10 windows' in text
    assert 'verdict: never act' in text
    copy = artifact.load_artifact(out)
    assert gate.never_acts(copy)
    calib = copy.manifest['calibration']
    assert calib['continuation'] == 'nova-pack'
    assert calib['groups'] == 10
    assert calib['cloud']['trace'] == 'azure-v1-small'
    assert calib['cloud']['hosts'] == 17
    assert calib['cloud']['independent'] is True
    worst = calib['table'][0]
    assert worst['worst_term'] == 'active_host_hours'
    assert worst['upper_95'] > 0
    with open(tmp_path / 'policy.json') as f:
        assert json.load(f) == calib
    # The original is untouched and still has no calibration.
    assert artifact.load_artifact(policy).manifest['calibration'] == {}


def test_the_copy_keeps_the_weights_and_acts_where_it_qualifies(tmp_path):
    rc, policy, out = calibrate(tmp_path, PACK)
    assert rc == 0
    old = artifact.read_manifest(policy)
    new = artifact.read_manifest(out)
    assert new['weights_sha256'] == old['weights_sha256']
    assert new['policy_version'] == old['policy_version'] == 'policy-v1'
    for key in ('feature_ranges', 'normalisation', 'feature_schema',
                'objective', 'provenance', 'ensemble_size'):
        assert new[key] == old[key], key
    calib = new['calibration']
    # Packing against Nova's default in 3 h windows: no worse on any
    # term, so the lowest level qualifies.
    assert calib['act'] == 'gated'
    assert calib['confidence_threshold'] == 0.2
    copy = artifact.load_artifact(out)
    assert gate.threshold_for(copy, None) == 0.2
    assert sorted(os.listdir(tmp_path)) == [
        'policy', 'policy-calibrated', 'policy.json']
    # Readable as any directory made here (not mkdtemp's 0700).
    os.mkdir(tmp_path / 'reference')
    assert os.stat(out).st_mode == os.stat(tmp_path / 'reference').st_mode


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    policy = testing.make_linear_policy(str(tmp_path / 'p'), PACK)
    out = str(tmp_path / 'out')
    cases = [
        (['--horizon-hours', '30'], 'two horizons'),
        (['--groups', '5'], 'at least 10'),
        (['--floor', '-1'], 'floor'),
    ]
    for extra, message in cases:
        rc = cli.main(['calibrate', '--policy', policy, '--out', out,
                       *ARGS, *extra])
        assert rc == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count('\n') == 1, err
        assert not os.path.exists(out)
    rc = cli.main(['calibrate', '--policy', str(tmp_path / 'missing'),
                   '--out', out, *ARGS])
    assert rc == 2
    assert 'not a valid policy artifact' in capsys.readouterr().err
    os.mkdir(out)
    rc = cli.main(['calibrate', '--policy', policy, '--out', out, *ARGS])
    assert rc == 2
    assert 'exists' in capsys.readouterr().err
    assert os.listdir(out) == []
    assert sorted(os.listdir(tmp_path)) == ['out', 'p']


def test_a_policy_for_another_nova_configuration_is_refused(
        tmp_path, capsys):
    policy = testing.make_linear_policy(str(tmp_path / 'p'), PACK)
    testing.edit_manifest(policy, nova_weighers=policies.
                          nova_weighers_record('nova-default'))
    out = str(tmp_path / 'out')
    rc = cli.main(['calibrate', '--policy', policy, '--out', out, *ARGS,
                   '--nova-weighers', 'nova-pack'])
    assert rc == 2
    err = capsys.readouterr().err
    assert "trained for Nova weighers 'nova-default'" in err
    assert 'nova_config_mismatch' in err
    assert not os.path.exists(out)
