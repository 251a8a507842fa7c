"""Issue 9 item 2: a policy knows which Nova it augments.

The manifest's ``nova_weighers`` records the Nova weigher configuration the
policy was trained with; the gate abstains with ``nova_config_mismatch``
when the running one differs in the sign of a recorded multiplier or lacks
a recorded weigher. Manifests without the field (format 1 as before, the
bundled policy) load and run with no check.
"""

import dataclasses
import json
import logging
import os

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import conf
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import scorer as scorer_mod
from tests import fixtures as testing

from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator

RAM = 'nova.scheduler.weights.ram.RAMWeigher'
WEIGHERS = [
    RAM, 'nova.scheduler.weights.cpu.CPUWeigher',
    'nova.scheduler.weights.disk.DiskWeigher',
    'nova.scheduler.weights.io_ops.IoOpsWeigher',
    'nova.scheduler.weights.num_instances.NumInstancesWeigher']
DEFAULT_MULTIPLIERS = {
    'ram_weight_multiplier': 1.0, 'cpu_weight_multiplier': 1.0,
    'disk_weight_multiplier': 1.0, 'io_ops_weight_multiplier': -1.0,
    'num_instances_weight_multiplier': 0.0}
PACK_MULTIPLIERS = {**DEFAULT_MULTIPLIERS, 'ram_weight_multiplier': -1.0,
                    'cpu_weight_multiplier': -1.0,
                    'disk_weight_multiplier': -1.0}
PACK = {'name': 'nova-pack', 'weighers': WEIGHERS,
        'multipliers': PACK_MULTIPLIERS}
DEFAULT = {'name': 'nova-default', 'weighers': WEIGHERS,
           'multipliers': DEFAULT_MULTIPLIERS}
# The running Nova, as the adapter hands it to the scorer: every
# multiplier of [filter_scheduler], the classes weight_classes enables.
NOVA_DEFAULT = gate.NovaConfig(
    {**DEFAULT_MULTIPLIERS, 'build_failure_weight_multiplier': 1e6,
     'soft_affinity_weight_multiplier': 1.0},
    frozenset(WEIGHERS + ['nova.scheduler.weights.pci.PCIWeigher']))
NOVA_PACK = gate.NovaConfig({**NOVA_DEFAULT.multipliers, **PACK_MULTIPLIERS},
                            NOVA_DEFAULT.weighers)


def write(path, nova_weighers=None, **kw):
    """A confident linear policy preferring small hosts, with
    ``nova_weighers`` written by the production writer."""
    lo, hi = testing.wide_ranges()
    f = features.NUM_FEATURES
    artifact.write_artifact(
        str(path), testing.linear_params({'log_vcpus_total': -1.0}, 5),
        mean=np.zeros(f), std=np.ones(f), feature_min=lo, feature_max=hi,
        objective='test', provenance={}, nova_weighers=nova_weighers, **kw)
    return str(path)


edit = testing.edit_manifest


hosts = testing.small_hosts
REQUEST = testing.SMALL_REQUEST


def matrix(policy):
    x = features.build_matrix(hosts(), REQUEST)
    return x, policy.score(x)


# -- the manifest field ---------------------------------------------------

def test_field_is_written_and_loaded(tmp_path):
    path = write(tmp_path / 'p', PACK)
    p = artifact.load_artifact(path)
    assert p.manifest['nova_weighers'] == PACK
    spec = artifact.check_manifest(p.manifest)
    assert spec.nova_weighers == PACK


def test_field_absent_is_a_v1_manifest(tmp_path):
    path = write(tmp_path / 'p')
    m = artifact.load_artifact(path).manifest
    assert 'nova_weighers' not in m
    assert m['format_version'] == 1
    assert artifact.check_manifest(m).nova_weighers is None
    # null is the same as absent
    edit(path, nova_weighers=None)
    artifact.load_artifact(path)


def test_trainer_record_is_the_simulated_configuration():
    for name, expected in (('nova-default', DEFAULT), ('nova-pack', PACK)):
        assert policies.nova_weighers_record(name) == expected
        running = policies.nova_config(name)
        assert dict(running.multipliers) == expected['multipliers']
    with pytest.raises(policies.PolicyError, match='nova-spread'):
        policies.nova_weighers_record('nova-spread')


@pytest.mark.parametrize('value, why', [
    ([], 'must be an object'),
    ('nova-pack', 'must be an object'),
    ({'weighers': WEIGHERS, 'multipliers': {}}, 'name'),
    ({**PACK, 'name': ''}, 'name'),
    ({**PACK, 'name': 3}, 'name'),
    ({**PACK, 'name': 'a\nb'}, 'name'),
    ({**PACK, 'name': 'x' * 300}, 'name'),
    ({'name': 'n', 'multipliers': {}}, 'weighers'),
    ({**PACK, 'weighers': RAM}, 'weighers'),
    ({**PACK, 'weighers': [RAM, 7]}, r'weighers\[1\]'),
    ({**PACK, 'weighers': ['']}, r'weighers\[0\]'),
    ({**PACK, 'weighers': ['w%d' % i for i in range(65)]}, 'at most 64'),
    ({'name': 'n', 'weighers': []}, 'multipliers'),
    ({**PACK, 'multipliers': [1.0]}, 'multipliers'),
    ({**PACK, 'multipliers': {'ram_weight_multiplier': '-1'}},
     'ram_weight_multiplier'),
    ({**PACK, 'multipliers': {'ram_weight_multiplier': True}},
     'ram_weight_multiplier'),
    ({**PACK, 'multipliers': {'ram_weight_multiplier': None}},
     'ram_weight_multiplier'),
    ({**PACK, 'multipliers': {'ram_weight_multiplier': float('nan')}},
     'finite'),
    ({**PACK, 'multipliers': {'ram_weight_multiplier': float('-inf')}},
     'finite'),
    ({**PACK, 'multipliers': {'ram_weight_multiplier': 10 ** 400}},
     'finite'),
    ({**PACK, 'multipliers': {'': 1.0}}, 'key'),
    ({**PACK, 'multipliers': {f'm{i}': 1.0 for i in range(65)}},
     'at most 64'),
])
def test_invalid_field_is_refused(tmp_path, value, why):
    path = edit(write(tmp_path / 'p'), nova_weighers=value)
    with pytest.raises(artifact.ArtifactError,
                       match=r'nova_weighers.*' + why):
        artifact.load_artifact(path)


def test_writer_refuses_what_the_loader_refuses(tmp_path):
    bad = {**PACK, 'multipliers': {'ram_weight_multiplier': float('inf')}}
    with pytest.raises(artifact.ArtifactError, match='finite'):
        write(tmp_path / 'p', bad)
    assert not os.path.exists(tmp_path / 'p' / 'manifest.json')


# -- the gate -------------------------------------------------------------

def test_mismatch_abstains_and_says_what_differs(tmp_path):
    policy = artifact.load_artifact(write(tmp_path / 'p', PACK))
    x, scores = matrix(policy)
    d = gate.decide(policy, x, scores, nova_config=NOVA_DEFAULT)
    assert d.verdict == gate.NOVA_CONFIG_MISMATCH == 'nova_config_mismatch'
    assert not d.applied and d.weights is None
    assert "'nova-pack'" in d.detail
    for name in ('ram', 'cpu', 'disk'):
        assert f'{name}_weight_multiplier is 1.0 here, -1.0 in training' \
            in d.detail
    assert 'io_ops' not in d.detail
    # The would-be decision is still recorded (shadow mode reads it).
    assert d.confidence == 1.0
    # Not scored (the weigher skips scoring when it cannot act): same verdict.
    assert gate.decide(policy, x, None, nova_config=NOVA_DEFAULT).verdict \
        == gate.NOVA_CONFIG_MISMATCH


def test_a_standing_verdict_passed_in_decides_as_computed(tmp_path):
    """The scorer and the simulator hand decide() the standing verdict they
    already hold: the same decision as decide() computing it."""
    policy = artifact.load_artifact(write(tmp_path / 'p', PACK))
    x, scores = matrix(policy)
    never = gate.GateSettings(confidence_threshold=None)
    for running in (None, NOVA_PACK, NOVA_DEFAULT):
        for settings in (gate.DEFAULT_SETTINGS, never,
                         gate.GateSettings(confidence_threshold=1.0)):
            for s in (scores, None):
                want = gate.decide(policy, x, s, settings=settings,
                                   nova_config=running)
                got = gate.decide(
                    policy, x, s, settings=settings, nova_config=running,
                    standing=gate.standing_verdict(policy, settings,
                                                   running))
                assert dataclasses.replace(got, weights=None) == \
                    dataclasses.replace(want, weights=None)
                if want.weights is None:
                    assert got.weights is None
                else:
                    np.testing.assert_array_equal(got.weights, want.weights)


def test_match_applies(tmp_path):
    for record, running in ((PACK, NOVA_PACK), (DEFAULT, NOVA_DEFAULT)):
        policy = artifact.load_artifact(write(tmp_path / record['name'],
                                              record))
        x, scores = matrix(policy)
        d = gate.decide(policy, x, scores, nova_config=running)
        assert d.applied, d
        assert d.detail == ''


def test_only_the_sign_counts(tmp_path):
    policy = artifact.load_artifact(write(tmp_path / 'p', PACK))
    x, scores = matrix(policy)
    scaled = gate.NovaConfig({**NOVA_PACK.multipliers,
                              'ram_weight_multiplier': -7.5,
                              'cpu_weight_multiplier': -0.01})
    assert gate.decide(policy, x, scores, nova_config=scaled).applied
    # Zero is a sign of its own: a weigher switched off is a different Nova.
    for name, value in (('num_instances_weight_multiplier', 1.0),
                        ('io_ops_weight_multiplier', 0.0)):
        running = gate.NovaConfig({**NOVA_PACK.multipliers, name: value})
        d = gate.decide(policy, x, scores, nova_config=running)
        assert d.verdict == gate.NOVA_CONFIG_MISMATCH
        assert name in d.detail


def test_unrecorded_and_unknown_multipliers_are_not_compared(tmp_path):
    policy = artifact.load_artifact(write(tmp_path / 'p', PACK))
    x, scores = matrix(policy)
    # A multiplier the policy did not record (build failures) may be
    # anything; one the running Nova lacks is not compared.
    running = gate.NovaConfig(
        {k: v for k, v in NOVA_PACK.multipliers.items()
         if k != 'ram_weight_multiplier'}
        | {'build_failure_weight_multiplier': -3.0})
    assert gate.decide(policy, x, scores, nova_config=running).applied


def test_recorded_weigher_not_enabled(tmp_path):
    policy = artifact.load_artifact(write(tmp_path / 'p', PACK))
    x, scores = matrix(policy)
    running = dataclasses.replace(NOVA_PACK,
                                  weighers=NOVA_PACK.weighers - {RAM})
    d = gate.decide(policy, x, scores, nova_config=running)
    assert d.verdict == gate.NOVA_CONFIG_MISMATCH
    assert d.detail.endswith(f'not enabled in weight_classes: {RAM}')
    # Enabled weighers unknown: only the multipliers are compared.
    unknown = dataclasses.replace(NOVA_PACK, weighers=None)
    assert gate.decide(policy, x, scores, nova_config=unknown).applied
    # A bare class name in the manifest matches the enabled class.
    short = artifact.load_artifact(write(
        tmp_path / 'short', {**PACK, 'weighers': ['RAMWeigher']}))
    assert gate.decide(short, x, scores, nova_config=NOVA_PACK).applied
    assert gate.decide(short, x, scores,
                       nova_config=running).verdict == \
        gate.NOVA_CONFIG_MISMATCH


def test_absent_field_or_no_running_config_is_not_checked(tmp_path):
    v1 = artifact.load_artifact(write(tmp_path / 'v1'))
    x, scores = matrix(v1)
    for running in (NOVA_DEFAULT, NOVA_PACK, gate.NovaConfig({}), None):
        assert gate.decide(v1, x, scores, nova_config=running).applied
    recorded = artifact.load_artifact(write(tmp_path / 'pack', PACK))
    assert gate.decide(recorded, x, scores, nova_config=None).applied
    assert gate.decide(recorded, x, scores).applied


def test_mismatch_comes_before_the_per_call_reasons(tmp_path):
    policy = artifact.load_artifact(write(tmp_path / 'p', PACK))
    x, scores = matrix(policy)
    x = x.copy()
    x[0, 0] = np.nan
    d = gate.decide(policy, x, scores, nova_config=NOVA_DEFAULT,
                    elapsed_ms=1e9, snapshot_status='stale',
                    instance_uuid='u', settings=gate.GateSettings(
                        canary_percent=0.0))
    assert d.verdict == gate.NOVA_CONFIG_MISMATCH
    # ... but after "nothing to weigh" and "no policy".
    empty = np.zeros((0, features.NUM_FEATURES), np.float32)
    assert gate.decide(policy, empty, None,
                       nova_config=NOVA_DEFAULT).verdict == gate.NO_HOSTS
    assert gate.decide(None, x, None, nova_config=NOVA_DEFAULT).verdict \
        == gate.POLICY_UNAVAILABLE


def test_bundled_policy_is_v1_and_runs_unchecked():
    bundled = artifact.load_artifact(conf.DEFAULT_POLICY_PATH)
    assert 'nova_weighers' not in bundled.manifest
    x, scores = matrix(bundled)
    for running in (NOVA_DEFAULT, NOVA_PACK):
        d = gate.decide(bundled, x, scores, nova_config=running)
        assert d.verdict not in gate.STANDING_REASONS
        assert d.verdict == gate.decide(bundled, x, scores).verdict


# -- the scorer -----------------------------------------------------------

@pytest.fixture
def notices(caplog):
    caplog.set_level(logging.WARNING)
    return lambda: [r.getMessage() for r in caplog.records
                    if 'will not act' in r.getMessage()]


def test_scorer_abstains_without_scoring_and_logs_once(tmp_path, notices,
                                                       monkeypatch):
    path = write(tmp_path / 'p', PACK)
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='gated', policy_path=path,
                             latency_budget_ms=1e6)
    policy = s.policies.get(path, 0.0)
    calls = []
    monkeypatch.setattr(type(policy), 'score',
                        lambda self, x: calls.append(x) or 1 / 0)
    for _ in range(5):
        out = s.weigh_views(hosts(), REQUEST, st, NOVA_DEFAULT)
        assert out.reason == gate.NOVA_CONFIG_MISMATCH
        assert out.weights == [0.0] * 4 and not out.applied
    assert calls == []
    assert s.stats['abstained.nova_config_mismatch'] == 5
    assert 'errors' not in s.stats
    (msg,) = notices()
    assert 'nova_config_mismatch' in msg and 'ram_weight_multiplier' in msg
    assert s.notices.suppressed(next(iter(s.notices._last))) == 4


def test_scorer_applies_when_nova_matches(tmp_path):
    path = write(tmp_path / 'p', PACK)
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='gated', policy_path=path,
                             latency_budget_ms=1e6)
    out = s.weigh_views(hosts(), REQUEST, st, NOVA_PACK)
    assert out.applied and out.weights[0] == 1.0
    # No running configuration given (the default): not compared.
    assert s.weigh_views(hosts(), REQUEST, st).applied


def test_shadow_records_the_mismatch_verdict(tmp_path):
    path = write(tmp_path / 'p', PACK)
    logs = tmp_path / 'log'
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='shadow', policy_path=path,
                             latency_budget_ms=1e6,
                             decision_log_dir=str(logs))
    out = s.weigh_views(hosts(), REQUEST, st, NOVA_DEFAULT)
    assert out.reason == gate.MODE_SHADOW and not out.applied
    assert s.flush_decision_log()
    s.close()
    (name,) = os.listdir(logs)
    with open(logs / name) as f:
        (record,) = [json.loads(line) for line in f]
    assert record['gate']['verdict'] == 'nova_config_mismatch'
    assert record['gate']['reason'] == 'mode_shadow'
    assert 'ram_weight_multiplier' in record['gate']['detail']
    # Shadow still scores, so the record says what the policy would do.
    assert record['confidence'] == 1.0
    assert all(h['score'] is not None for h in record['hosts'])


# -- the adapter: the scheduler's [filter_scheduler] as plain data ----------

def test_adapter_reads_the_scheduler_configuration():
    pytest.importorskip('nova')
    from nova.conf import scheduler as nova_scheduler_conf
    from nova_rl_weigher import weigher
    from oslo_config import cfg

    own = cfg.ConfigOpts()
    nova_scheduler_conf.register_opts(own)
    own([], default_config_files=[])
    running = weigher.nova_config(own.filter_scheduler)
    for name, value in DEFAULT_MULTIPLIERS.items():
        assert running.multipliers[name] == value
    assert 'build_failure_weight_multiplier' in running.multipliers
    # all_weighers, expanded by Nova's own loader.
    assert set(WEIGHERS) <= running.weighers
    assert 'nova.scheduler.weights.metrics.MetricsWeigher' in running.weighers

    for name, value in PACK_MULTIPLIERS.items():
        own.set_override(name, value, group='filter_scheduler')
    own.set_override('weight_classes', [
        'nova.scheduler.weights.cpu.CPUWeigher',
        'nova_rl_weigher.weigher.RLWeigher'], group='filter_scheduler')
    running = weigher.nova_config(own.filter_scheduler)
    assert {k: running.multipliers[k] for k in PACK_MULTIPLIERS} == \
        PACK_MULTIPLIERS
    assert running.weighers == {'nova.scheduler.weights.cpu.CPUWeigher',
                                'nova_rl_weigher.weigher.RLWeigher'}
    # A class Nova's loader cannot load: unknown, not an error.
    assert weigher.enabled_weighers(['no.such.Weigher']) is None


# -- the simulator --------------------------------------------------------

@pytest.fixture(scope='module')
def small():
    setup = Setup.from_scenario(scenarios.get_scenario('azure-v1-small').name)
    return setup, setup.workload()


def play(setup, workload, spec, nova_weighers, decisions=300):
    config = dataclasses.replace(setup.config, nova_weighers=nova_weighers)
    wl = simulator.Workload(workload.trace, workload.seed, config)
    sim = simulator.Simulation(wl, setup.cluster)
    policy = policies.make_policy(spec)
    sim.play(policy, max_decisions=decisions)
    return policy


def test_simulator_abstains_under_a_mismatching_configuration(small,
                                                              tmp_path):
    setup, workload = small
    # Confident, in range everywhere (wide ranges), canary 100%: only the
    # Nova configuration can stop it.
    path = write(tmp_path / 'p', PACK)
    mismatched = play(setup, workload, path, 'nova-default')
    assert mismatched.nova_config == policies.nova_config('nova-default')
    assert mismatched.applied == 0 and mismatched.calls > 0
    assert dict(mismatched.abstained) == {
        'nova_config_mismatch': mismatched.calls}
    matched = play(setup, workload, path, 'nova-pack')
    assert matched.applied == matched.calls > 0
    # Without the field (a v1 manifest): no check, it acts under both.
    v1 = write(tmp_path / 'v1')
    for nova in ('nova-default', 'nova-pack'):
        p = play(setup, workload, v1, nova)
        assert p.applied == p.calls > 0
