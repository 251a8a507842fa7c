"""Issue 9 item 5: the gate can say never.

A manifest whose calibration found no confidence level at which the policy
is at least as good as its fallback says ``calibration.act: "never"`` with
``confidence_threshold: null``; the gate then abstains with ``never_act``
unless the operator set ``[rl_weigher] confidence_threshold`` explicitly
(the operator wins, and the decision's detail says so).
"""

import json
import logging
import os

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import manifest as manifest_mod
from nova_rl_weigher import scorer as scorer_mod
from tests import fixtures as testing

from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator

NEVER = {'act': 'never', 'confidence_threshold': None, 'table': []}


def write(path, calibration=None, agreement=True):
    """A linear policy preferring small hosts, with ``calibration``."""
    lo, hi = testing.wide_ranges()
    f = features.NUM_FEATURES
    artifact.write_artifact(
        str(path), testing.linear_params({'log_vcpus_total': -1.0}, 5,
                                         agreement),
        mean=np.zeros(f), std=np.ones(f), feature_min=lo, feature_max=hi,
        objective='test', provenance={}, calibration=calibration)
    return str(path)


def set_calibration(path, calibration):
    return testing.edit_manifest(path, calibration=calibration)


hosts = testing.small_hosts
REQUEST = testing.SMALL_REQUEST


def matrix(policy):
    x = features.build_matrix(hosts(), REQUEST)
    return x, policy.score(x)


# -- the manifest ---------------------------------------------------------

@pytest.mark.parametrize('calibration', [
    NEVER,
    {'act': 'never'},
    {'act': 'gated', 'confidence_threshold': 0.6},
    {'confidence_threshold': 0.6},
    {'act': 'gated'},
])
def test_valid_calibration(tmp_path, calibration):
    path = write(tmp_path / 'p', calibration)
    p = artifact.load_artifact(path)
    assert artifact.check_manifest(p.manifest).act == \
        calibration.get('act', 'gated')
    assert gate.never_acts(p) == (calibration.get('act') == 'never')


@pytest.mark.parametrize('calibration, why', [
    ({'act': 'sometimes'}, 'calibration.act must be one of gated, never'),
    ({'act': None}, 'calibration.act'),
    ({'act': ['never']}, 'calibration.act'),
    ({'act': 1}, 'calibration.act'),
    ({'act': 'never', 'confidence_threshold': 0.9},
     'act is never: calibration.confidence_threshold must be null'),
    ({'act': 'never', 'confidence_threshold': 0}, 'must be null'),
    ({'confidence_threshold': None}, 'null only with calibration.act never'),
    ({'act': 'gated', 'confidence_threshold': None}, 'null only with'),
    ({'act': 'gated', 'confidence_threshold': 1.5}, 'from 0 to 1'),
])
def test_invalid_calibration_is_refused(tmp_path, calibration, why):
    path = set_calibration(write(tmp_path / 'p'), calibration)
    with pytest.raises(artifact.ArtifactError, match=why):
        artifact.load_artifact(path)
    # The writer refuses it too.
    with pytest.raises(artifact.ArtifactError, match=why):
        write(tmp_path / 'q', calibration)


def test_constants():
    assert manifest_mod.CALIBRATION_ACTS == ('gated', 'never')
    assert gate.NEVER_ACT == 'never_act'
    assert gate.STANDING_REASONS == ('nova_config_mismatch', 'never_act')


# -- the gate -------------------------------------------------------------

def test_never_abstains(tmp_path):
    policy = artifact.load_artifact(write(tmp_path / 'p', NEVER))
    assert gate.threshold_for(policy, None) is None
    x, scores = matrix(policy)
    d = gate.decide(policy, x, scores)
    assert d.verdict == gate.NEVER_ACT and not d.applied
    assert d.threshold is None and d.weights is None
    assert 'calibration.act never' in d.detail
    assert d.confidence == 1.0      # recorded for shadow mode
    assert gate.decide(policy, x, None).verdict == gate.NEVER_ACT


def test_operator_threshold_overrides_never_and_says_so(tmp_path):
    policy = artifact.load_artifact(write(tmp_path / 'p', NEVER))
    x, scores = matrix(policy)
    settings = gate.GateSettings(confidence_threshold=0.5)
    assert gate.threshold_for(policy, 0.5) == 0.5
    d = gate.decide(policy, x, scores, settings=settings)
    assert d.applied and d.threshold == 0.5
    assert d.detail == ('calibration.act never overridden by [rl_weigher] '
                        'confidence_threshold=0.5')
    # Overridden, the rest of the gate still holds, and says both.
    weak = artifact.load_artifact(write(tmp_path / 'weak', NEVER,
                                        agreement=False))
    x, scores = matrix(weak)
    d = gate.decide(weak, x, scores, settings=gate.GateSettings(
        confidence_threshold=0.9))
    assert d.verdict == gate.LOW_CONFIDENCE
    assert d.detail.startswith('0.60 < 0.9; calibration.act never '
                               'overridden')


def test_a_gated_calibration_is_unchanged(tmp_path):
    policy = artifact.load_artifact(write(
        tmp_path / 'p', {'act': 'gated', 'confidence_threshold': 0.7}))
    assert gate.threshold_for(policy, None) == 0.7
    x, scores = matrix(policy)
    d = gate.decide(policy, x, scores)
    assert d.applied and d.detail == '' and d.threshold == 0.7


def test_a_mismatch_is_not_overridden_by_a_threshold(tmp_path):
    path = write(tmp_path / 'p', NEVER)
    record = policies.nova_weighers_record('nova-pack')
    with open(os.path.join(path, 'manifest.json')) as f:
        m = json.load(f)
    m['nova_weighers'] = record
    with open(os.path.join(path, 'manifest.json'), 'w') as f:
        json.dump(m, f)
    policy = artifact.load_artifact(path)
    x, scores = matrix(policy)
    d = gate.decide(policy, x, scores, settings=gate.GateSettings(
        confidence_threshold=0.5),
        nova_config=policies.nova_config('nova-default'))
    assert d.verdict == gate.NOVA_CONFIG_MISMATCH
    d = gate.decide(policy, x, scores,
                    nova_config=policies.nova_config('nova-pack'))
    assert d.verdict == gate.NEVER_ACT


# -- the scorer -----------------------------------------------------------

@pytest.fixture
def warnings_logged(caplog):
    caplog.set_level(logging.WARNING)
    return lambda: [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING
                    and r.name.startswith('nova_rl_weigher')]


def test_scorer_never_acts_logs_once_and_does_not_score(
        tmp_path, warnings_logged, monkeypatch):
    path = write(tmp_path / 'p', NEVER)
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='gated', policy_path=path,
                             latency_budget_ms=1e6)
    policy = s.policies.get(path, 0.0)
    monkeypatch.setattr(type(policy), 'score', lambda self, x: 1 / 0)
    for _ in range(3):
        out = s.weigh_views(hosts(), REQUEST, st)
        assert out.reason == gate.NEVER_ACT and not out.applied
        assert out.weights == [0.0] * 4
    assert s.stats['abstained.never_act'] == 3
    (msg,) = warnings_logged()
    assert 'will not act (never_act)' in msg and policy.version in msg


def test_scorer_operator_override_is_in_the_decision_log(tmp_path,
                                                         warnings_logged):
    path = write(tmp_path / 'p', NEVER)
    logs = tmp_path / 'log'
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='gated', policy_path=path,
                             latency_budget_ms=1e6, confidence_threshold=0.5,
                             decision_log_dir=str(logs))
    for _ in range(2):
        out = s.weigh_views(hosts(), REQUEST, st)
        assert out.applied and out.weights[0] == 1.0
    assert s.flush_decision_log()
    s.close()
    (name,) = os.listdir(logs)
    with open(logs / name) as f:
        records = [json.loads(line) for line in f]
    assert [r['gate']['reason'] for r in records] == ['applied'] * 2
    assert all('overridden by [rl_weigher] confidence_threshold=0.5'
               in r['gate']['detail'] for r in records)
    (msg,) = warnings_logged()
    assert 'overridden' in msg


def test_scorer_shadow_records_never(tmp_path):
    path = write(tmp_path / 'p', NEVER)
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='shadow', policy_path=path,
                             latency_budget_ms=1e6)
    out = s.weigh_views(hosts(), REQUEST, st)
    assert out.reason == gate.MODE_SHADOW and out.confidence == 1.0


# -- the simulator --------------------------------------------------------

@pytest.fixture(scope='module')
def small():
    setup = Setup.from_scenario(scenarios.get_scenario('azure-v1-small').name)
    return setup, setup.workload()


def play(small, spec, decisions=300):
    setup, workload = small
    sim = simulator.Simulation(workload, setup.cluster)
    policy = policies.make_policy(spec)
    sim.play(policy, max_decisions=decisions)
    return policy


def test_simulator_never_act(small, tmp_path):
    path = write(tmp_path / 'p', NEVER)
    p = play(small, path)
    assert p.threshold is None
    assert p.applied == 0 and dict(p.abstained) == {'never_act': p.calls}
    # The operator's threshold (the spec's threshold=, publish --threshold)
    # overrides it, as in Nova.
    p = play(small, path + ':threshold=0.5')
    assert p.applied == p.calls > 0
