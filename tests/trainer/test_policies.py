"""Artifact policies in the simulator: raw, gated and the bundled one."""

import numpy as np
import pytest

from nova_rl_weigher import features
from tests.fixtures import make_linear_policy

from nova_rl_trainer.simulation import evaluation as runner
from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator


@pytest.fixture(scope='module')
def setup():
    sc = scenarios.get_scenario('azure-v1-small')
    return Setup.from_scenario(sc.name)


@pytest.fixture(scope='module')
def workload(setup):
    return setup.workload()


def metrics(setup, workload, spec):
    return runner.run_one(setup, spec, workload).metrics


def test_raw_linear_policy_acts_like_its_heuristic(setup, workload,
                                                   tmp_path):
    # Scoring -(free RAM after placement) is best-fit on RAM, the binding
    # resource here: the same placements as best-fit on RAM alone.
    path = make_linear_policy(str(tmp_path / 'p'),
                              {'ram_free_after_frac': -1.0})
    m = metrics(setup, workload, f'{path}:mode=raw')
    assert m['applied_fraction'] == 1.0
    assert m['policy_mode'] == 'raw'
    ref = metrics(setup, workload, 'nova-default')
    assert m['active_host_hours'] < 0.6 * ref['active_host_hours']


def test_gated_policy_that_never_agrees_is_nova_default(setup, workload,
                                                        tmp_path):
    path = make_linear_policy(str(tmp_path / 'p'),
                              {'ram_free_after_frac': -1.0},
                              agreement=False)
    m = metrics(setup, workload, path)
    # Members agree only when every candidate scores the same (a single
    # candidate, or identical empty hosts), where acting changes nothing.
    assert m['applied_fraction'] < 0.05
    assert set(m['abstained']) == {'low_confidence'}
    ref = metrics(setup, workload, 'nova-default')
    for key in ('active_host_hours', 'energy_kwh', 'overload_host_hours',
                'objective_value'):
        assert m[key] == ref[key], key


def test_abstaining_falls_back_to_the_configured_nova_weighers(
        setup, workload, tmp_path):
    """With Nova configured to pack, an abstaining policy gets nova-pack's
    placements, and the nova_weight feature is nova-pack's weight."""
    import dataclasses
    packed = dataclasses.replace(
        setup, config=simulator.SimConfig(nova_weighers='nova-pack'))
    wl = packed.workload()
    path = make_linear_policy(str(tmp_path / 'p'),
                              {'ram_free_after_frac': -1.0},
                              agreement=False)
    m = metrics(packed, wl, path)
    ref = metrics(packed, wl, 'nova-pack')
    assert m['applied_fraction'] < 0.05
    for key in ('active_host_hours', 'energy_kwh', 'overload_host_hours'):
        assert m[key] == ref[key], key
    assert m['active_host_hours'] < 0.7 * metrics(
        setup, workload, 'nova-default')['active_host_hours']
    with pytest.raises(ValueError, match='nova_weighers'):
        simulator.SimConfig(nova_weighers='nova-spread')


def test_gated_confident_policy_acts_through_novas_sum(setup, workload,
                                                       tmp_path):
    path = make_linear_policy(str(tmp_path / 'p'),
                              {'ram_free_after_frac': -1.0})
    gated = metrics(setup, workload, path)
    assert gated['applied_fraction'] == 1.0
    # With a zero multiplier the policy adds nothing to Nova's weights.
    zero = metrics(setup, workload, f'{path}:multiplier=0')
    ref = metrics(setup, workload, 'nova-default')
    assert zero['active_host_hours'] == ref['active_host_hours']
    assert gated['active_host_hours'] < ref['active_host_hours']
    # No request in the canary: it never applies.
    never = metrics(setup, workload, f'{path}:canary=0')
    assert never['applied_fraction'] == 0.0
    # A threshold above 1 would never apply either, but Nova refuses it
    # ([rl_weigher] confidence_threshold is in [0, 1]): so does the spec.
    with pytest.raises(policies.PolicyError, match='must be in'):
        policies.make_policy(f'{path}:threshold=1.01')


def test_out_of_range_features_abstain(setup, workload, tmp_path):
    lo = np.zeros(features.NUM_FEATURES)
    hi = np.zeros(features.NUM_FEATURES)
    path = make_linear_policy(str(tmp_path / 'p'),
                              {'ram_free_after_frac': -1.0},
                              feature_min=lo, feature_max=hi)
    m = metrics(setup, workload, path)
    assert m['applied_fraction'] == 0.0
    assert set(m['abstained']) == {'out_of_distribution'}


def test_bundled_policy_runs(setup, workload):
    m = metrics(setup, workload, 'bundled')
    assert m['placed'] + m['rejected'] == m['decisions']
    assert 0.0 <= m['applied_fraction'] <= 1.0
    raw = metrics(setup, workload, 'bundled:mode=raw')
    assert raw['applied_fraction'] == 1.0


def test_scoring_policy_gets_the_shared_feature_matrix(workload, setup):
    seen = []

    def score(x):
        seen.append(x)
        return -x[:, features.FEATURE_INDEX['ram_free_after_frac']]

    sim = simulator.Simulation(workload, setup.cluster)
    policy = policies.ScoringPolicy(score, name='fn')
    result = sim.run(policy)
    assert result.metrics['decisions'] == len(seen)
    x = seen[-1]
    assert x.dtype == np.float32 and x.shape[1] == features.NUM_FEATURES
    # The usage snapshot is on: measured use is present.
    assert (x[:, features.FEATURE_INDEX['usage_present']] == 1).all()
    assert (x[:, features.FEATURE_INDEX['project_ratio_present']] == 1).any()


def test_bad_artifact_specs(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(policies.PolicyError, match='manifest.json'):
        policies.make_policy(str(tmp_path / 'empty'))
    path = make_linear_policy(str(tmp_path / 'p'), {'nova_weight': 1.0})
    with pytest.raises(policies.PolicyError, match='gated or raw'):
        policies.make_policy(f'{path}:mode=sometimes')
    with pytest.raises(policies.PolicyError, match='unknown option'):
        policies.make_policy(f'{path}:colour=3')


def test_split_specs_two_options_on_one_spec(tmp_path):
    path = str(tmp_path / 'p' / 'policy')
    assert policies.split_specs(
        f'nova-default,{path}:threshold=0.3,multiplier=2') == [
            'nova-default', f'{path}:threshold=0.3,multiplier=2']
    # Each joined spec splits into its name and all its options.
    assert policies.split_spec(f'{path}:threshold=0.3,multiplier=2') == (
        path, {'threshold': '0.3', 'multiplier': '2'})


def test_split_specs_several_specs_each_with_options():
    assert policies.split_specs(
        'bundled:threshold=0.3,multiplier=2, bundled:mode=raw,canary=5,'
        'nova-default:ram=1,cpu=2,first-fit') == [
            'bundled:threshold=0.3,multiplier=2', 'bundled:mode=raw,canary=5',
            'nova-default:ram=1,cpu=2', 'first-fit']


def test_split_specs_plain_list(tmp_path, monkeypatch):
    assert policies.split_specs(' nova-default,,best-fit ,out/p/policy,') == [
        'nova-default', 'best-fit', 'out/p/policy']
    assert policies.split_specs('') == []
    # A directory named like an option is a spec of its own.
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'a=b').mkdir()
    assert policies.split_specs('bundled:mode=raw,a=b') == [
        'bundled:mode=raw', 'a=b']


@pytest.mark.parametrize('text, words', [
    ('threshold=0.3,bundled', 'comes before any policy'),
    (' ,multiplier=2', 'comes before any policy'),
    ('nova-default,ram=2', 'write nova-default:ram=2'),
])
def test_split_specs_option_without_its_policy(text, words):
    with pytest.raises(policies.PolicyError, match=words):
        policies.split_specs(text)
