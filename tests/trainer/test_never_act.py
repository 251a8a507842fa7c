"""Issue 9 items 2 and 5 in the trainer: calibration can say never, the
exported manifest records it and the Nova weigher configuration trained
with, and ``publish`` refuses a candidate that must never act."""

import json
import os

import numpy as np
import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import features
from nova_rl_weigher import gate
from tests import fixtures as testing

from nova_rl_trainer import cli
from nova_rl_trainer.learning import calibration
from nova_rl_trainer.publishing import judge
from nova_rl_trainer.simulation import policies

SCENARIO = 'azure-v1-small'


def row(threshold, upper, n=20, groups=10):
    return {'threshold': threshold, 'acting_share': 1.0,
            'at_least_as_good': None, 'mean_cost_delta': None,
            'decisions': n, 'groups': groups, 'group_mean_delta': upper,
            'upper_95': upper}


def samples_in_groups(per_group):
    """``per_group``: for each group, its (confidence, delta) samples."""
    return [calibration.Sample(c, d == 0.0, d, f'g{g}')
            for g, pairs in enumerate(per_group) for c, d in pairs]


# -- calibration ------------------------------------------------------------

def test_choose_threshold_returns_never_when_no_level_qualifies():
    rows = [row(0.2, 1.0), row(0.6, 0.1), row(0.8, 1e-6),
            row(1.0, -0.1, n=9), row(1.0, -0.1, groups=9)]
    # 0.8: a bound just above 0; 1.0: too few decisions, then groups.
    assert calibration.choose_threshold(rows) is calibration.NEVER is None
    assert calibration.choose_threshold([]) is None
    # No cautious fallback to 1.0 any more.
    assert calibration.choose_threshold([row(1.0, 3.0)]) is None
    assert calibration.manifest_fields(None) == {
        'act': 'never', 'confidence_threshold': None}


def test_choose_threshold_picks_the_lowest_qualifying_level():
    rows = [row(0.0, -1.0), row(0.4, 0.2), row(0.6, 0.0), row(0.8, -0.5)]
    assert calibration.choose_threshold(rows) == 0.6
    assert calibration.manifest_fields(0.6) == {
        'act': 'gated', 'confidence_threshold': 0.6}


def test_table_bounds_the_gated_policy_over_groups():
    # 10 groups: the confident choices (0.9) always save 1, the unsure
    # ones (0.3) cost 3 in every other group. Gated at 0.9 the policy
    # leaves the unsure ones to Nova (difference 0).
    groups = [[(0.9, -1.0), (0.3, 3.0 if g % 2 else 0.0)]
              for g in range(10)] * 2
    rows = {r['threshold']: r for r in calibration.table(
        samples_in_groups(groups))}
    assert rows[0.3]['groups'] == 20 and rows[0.3]['decisions'] == 40
    assert rows[0.3]['group_mean_delta'] == pytest.approx(0.25)
    assert rows[0.3]['upper_95'] > 0
    assert rows[0.9]['group_mean_delta'] == pytest.approx(-0.5)
    assert rows[0.9]['upper_95'] == pytest.approx(-0.5)   # no spread
    assert calibration.choose_threshold(list(rows.values())) == 0.9


def test_calibration_table_with_no_qualifying_level_is_never():
    # Better on average at every level, but worse in enough groups that
    # the one-sided bound stays above 0; and too few groups elsewhere.
    noisy = [[(0.6, 5.0 if g % 5 == 0 else -3.0)] * 2 for g in range(10)]
    rows = calibration.table(samples_in_groups(noisy))
    assert all(r['group_mean_delta'] < 0 for r in rows if r['decisions'])
    assert calibration.choose_threshold(rows) is None
    few = [[(0.6, -1.0)] * 20 for _ in range(9)]
    assert calibration.choose_threshold(
        calibration.table(samples_in_groups(few))) is None


def test_calibration_continues_and_walks_with_the_nova_fallback(
        monkeypatch, tmp_path):
    """Branches continue with the cluster's configured Nova weighers (here
    nova-pack), for a day of simulated time, not with the objective's
    heuristic; one group per start."""
    from nova_rl_trainer.learning import branching
    from nova_rl_trainer.learning import env as env_mod
    from nova_rl_trainer.simulation import scenarios
    from nova_rl_trainer.simulation import simulator

    sc = scenarios.get_scenario(SCENARIO)
    env = env_mod.PlacementEnv(
        trace=sc.load_trace(0), cluster=sc.cluster, objective='packing',
        seed=0, config=simulator.SimConfig(nova_weighers='nova-pack'),
        warmup_policy='best-fit')
    assert calibration.fallback_of(env) == 'nova-pack'
    policy = artifact.load_artifact(testing.make_linear_policy(
        str(tmp_path / 'p'), {'ram_free_frac': 1.0}))
    starts = [20000.0, 60000.0]
    for t in starts:
        env.warm_start(t)   # the states before them, as the trainer's
    made, spans = [], []
    real_make, real_continue = policies.make_policy, branching.continue_with

    def make(spec):
        made.append(spec)
        return real_make(spec)

    def cont(sim, name, horizon=None, *, seconds=None):
        start = sim.now
        cost = real_continue(sim, name, horizon, seconds=seconds)
        spans.append((name, horizon, seconds, sim.now - start, sim.done))
        return cost

    monkeypatch.setattr(policies, 'make_policy', make)
    monkeypatch.setattr(branching, 'continue_with', cont)
    samples = calibration.collect(env, policy, 6, 86400.0, starts)
    assert len(samples) == 6
    assert {s.group for s in samples} == {'0', '1'}
    assert set(made) == {'nova-pack'}      # walker and continuations
    assert spans, 'the policy never differed from Nova: nothing branched'
    for name, horizon, seconds, elapsed, done in spans:
        assert (name, horizon, seconds) == ('nova-pack', None, 86400.0)
        # A day of simulated time (or the rest of the trace).
        assert elapsed >= 86400.0 or done


# -- export -------------------------------------------------------------------

def test_export_records_nova_weighers_and_never(tmp_path):
    pytest.importorskip('torch')
    from nova_rl_trainer.learning import policy_net
    model = policy_net.EnsembleScorer(members=2, hidden=4, seed=0)
    lo, hi = testing.wide_ranges()
    path = str(tmp_path / 'p')
    record = policies.nova_weighers_record('nova-pack')
    policy_net.export(model, path, feature_min=lo, feature_max=hi,
                      objective='packing', provenance={},
                      calibration={**calibration.manifest_fields(None),
                                   'table': []},
                      nova_weighers=record)
    m = artifact.load_artifact(path).manifest
    assert m['nova_weighers'] == record
    assert m['nova_weighers']['multipliers']['ram_weight_multiplier'] == -1.0
    assert m['calibration']['act'] == 'never'
    assert m['calibration']['confidence_threshold'] is None
    # Without it, nothing is written (a manifest as before).
    policy_net.export(model, str(tmp_path / 'q'), feature_min=lo,
                      feature_max=hi, objective='packing', provenance={})
    assert 'nova_weighers' not in artifact.load_artifact(
        str(tmp_path / 'q')).manifest


def test_training_writes_both_fields(tmp_path, monkeypatch):
    pytest.importorskip('torch')
    from nova_rl_trainer.learning import env as env_mod
    from nova_rl_trainer.learning import ppo
    from nova_rl_trainer.learning import train
    from nova_rl_trainer.simulation import scenarios
    from nova_rl_trainer.simulation import simulator

    sc = scenarios.get_scenario(SCENARIO)
    trace = sc.load_trace(0)

    def make_env():
        return env_mod.PlacementEnv(
            trace=trace, cluster=sc.cluster, objective='packing', seed=0,
            config=simulator.SimConfig(nova_weighers='nova-pack'))
    config = train.TrainConfig(
        minutes=None, iterations=1, warm_start='best-fit',
        imitation_decisions=300, imitation_steps=5, eval_every=1,
        eval_decisions=100, calibration_samples=6, calibration_horizon=20,
        checkpoint_every=5,
        ppo=ppo.PPOConfig(rollout_decisions=64, episode_decisions=64,
                          minibatch=32, epochs=1, vine_states=4,
                          vine_horizon=20, vine_stride=4))
    # No level qualifies (whatever this tiny run measured).
    monkeypatch.setattr(calibration, 'choose_threshold',
                        lambda rows: calibration.NEVER)
    out = str(tmp_path / 'out')
    summary = train.Trainer(make_env, out, config, {}, progress=False).run()
    m = artifact.load_artifact(os.path.join(out, 'policy')).manifest
    assert m['nova_weighers'] == policies.nova_weighers_record('nova-pack')
    assert m['calibration']['act'] == 'never'
    assert m['calibration']['confidence_threshold'] is None
    assert m['calibration']['table']
    assert summary['calibration']['act'] == 'never'
    with open(os.path.join(out, 'train.json')) as f:
        assert json.load(f)['calibration']['act'] == 'never'


# -- publish ------------------------------------------------------------------

def never_policy(path, act='never'):
    calib = calibration.manifest_fields(None if act == 'never' else 0.5)
    lo, hi = testing.wide_ranges()
    f = features.NUM_FEATURES
    artifact.write_artifact(
        str(path), testing.linear_params({'nova_weight': 1.0}, 5),
        mean=np.zeros(f), std=np.ones(f), feature_min=lo, feature_max=hi,
        objective='packing', provenance={}, calibration=calib,
        policy_version=f'{act}-policy')
    return str(path)


def test_publish_refuses_a_never_act_candidate(tmp_path, capsys,
                                               monkeypatch):
    cand = never_policy(tmp_path / 'cand')
    target = str(tmp_path / 'target')

    def no_simulation(*a, **kw):
        raise AssertionError('a never-act candidate must not be simulated')
    monkeypatch.setattr(judge, '_evaluate', no_simulation)
    result = judge.publish(cand, target, scenarios=(SCENARIO,), jobs=1)
    assert not result.accepted and not result.installed
    assert result.exit_code == judge.EXIT_REFUSED == 3
    assert result.reasons() == [judge.NEVER_ACT_REFUSAL]
    assert result.cases == [] and result.failures == []
    assert 'not evaluated' in result.table()
    assert result.summary()['reasons'] == [judge.NEVER_ACT_REFUSAL]
    # The record says which rule the refusal was under, as a verdict's.
    assert result.summary()['floor_host_samples'] == 1.0
    assert not os.path.lexists(target)

    for extra in ([], ['--threshold', '0.5'], ['--dry-run']):
        rc = cli.main(['publish', '--candidate', cand, '--target', target,
                       '--scenario', SCENARIO, '--jobs', '1', '--quiet',
                       '--json', str(tmp_path / 'out.json'), *extra])
        out = capsys.readouterr().out
        assert rc == 3, out
        assert 'REFUSED: never-policy was not installed' in out
        assert 'must never act (calibration.act never)' in out
        assert not os.path.lexists(target)
        with open(tmp_path / 'out.json') as f:
            saved = json.load(f)
        assert saved['accepted'] is False
        assert saved['reasons'] == [judge.NEVER_ACT_REFUSAL]


def test_publish_still_evaluates_a_gated_candidate(tmp_path, monkeypatch):
    cand = never_policy(tmp_path / 'cand', act='gated')
    seen = []
    real = judge._evaluate
    monkeypatch.setattr(judge, '_evaluate',
                        lambda *a, **kw: seen.append(a) or real(*a, **kw))
    result = judge.publish(cand, str(tmp_path / 'target'),
                           scenarios=(SCENARIO,), jobs=1, dry_run=True)
    assert seen and result.cases and not result.refusals
    # nova_weight alone decides as nova-default: not better, refused on
    # the objective, not for never acting.
    assert judge.NEVER_ACT_REFUSAL not in result.reasons()


def test_gate_and_publish_agree_on_never(tmp_path):
    p = artifact.load_artifact(never_policy(tmp_path / 'p'))
    assert gate.never_acts(p)
    assert not gate.never_acts(artifact.load_artifact(
        never_policy(tmp_path / 'q', act='gated')))


def test_publish_notes_a_nova_configuration_the_candidate_was_not_for(
        tmp_path):
    cand = never_policy(tmp_path / 'cand', act='gated')
    m_path = os.path.join(cand, 'manifest.json')
    with open(m_path) as f:
        m = json.load(f)
    m['nova_weighers'] = policies.nova_weighers_record('nova-pack')
    with open(m_path, 'w') as f:
        json.dump(m, f)
    result = judge.publish(cand, str(tmp_path / 'target'),
                           scenarios=(SCENARIO,), jobs=1, dry_run=True)
    (note,) = [n for n in result.notes if 'nova_config_mismatch' in n]
    assert "trained for Nova weighers 'nova-pack'" in note
    assert note.endswith('evaluate it with --nova-weighers nova-pack')
    metrics = result.cases[0].metrics['candidate']
    assert metrics['applied_fraction'] == 0.0
    assert set(metrics['abstained']) == {'nova_config_mismatch'}
    assert not result.accepted
