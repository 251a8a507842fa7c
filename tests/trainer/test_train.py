"""Training: determinism under a seed, resumable checkpoints, the artifact."""

import json
import os
import re

import numpy as np
import pytest

pytest.importorskip('torch')

from nova_rl_weigher import artifact  # noqa: E402

from nova_rl_trainer.learning import checkpoint  # noqa: E402
from nova_rl_trainer.learning import env as env_mod  # noqa: E402
from nova_rl_trainer.learning import ppo  # noqa: E402
from nova_rl_trainer.learning import train  # noqa: E402
from nova_rl_trainer.simulation import scenarios  # noqa: E402

from ._helpers import record_train_configs  # noqa: E402


@pytest.fixture(scope='module')
def small():
    sc = scenarios.get_scenario('azure-v1-small')
    trace = sc.load_trace(0)

    def make_env():
        return env_mod.PlacementEnv(trace=trace, cluster=sc.cluster,
                                    objective='packing', seed=0)
    return make_env


def config(iterations, warm_start='best-fit'):
    return train.TrainConfig(
        minutes=None, iterations=iterations, warm_start=warm_start,
        imitation_decisions=600, imitation_steps=20, eval_every=2,
        eval_decisions=300, calibration_samples=12, calibration_horizon=40,
        checkpoint_every=2,
        ppo=ppo.PPOConfig(rollout_decisions=128, episode_decisions=128,
                          minibatch=64, epochs=2, vine_states=8,
                          vine_horizon=40, vine_stride=4))


def weights(out):
    return artifact.load_artifact(os.path.join(out, 'policy')).params


def test_same_seed_same_policy_and_a_verified_artifact(small, tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    summary = train.Trainer(small, a, config(2), {'test': True},
                            progress=False).run()
    train.Trainer(small, b, config(2), {'test': True}, progress=False).run()
    wa, wb = weights(a), weights(b)
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name])
    manifest = artifact.load_artifact(os.path.join(a, 'policy')).manifest
    assert manifest['objective'] == 'packing'
    assert 'PPO' in manifest['provenance']['method']
    # Calibration's verdict on a run this small may be either (its own
    # tests judge it); the manifest must say one consistently.
    calib = manifest['calibration']
    assert calib['table']
    if calib['act'] == 'never':
        assert calib['confidence_threshold'] is None
    else:
        assert 0.0 < calib['confidence_threshold'] <= 1.0
    ranges = manifest['feature_ranges']
    assert all(lo <= hi for lo, hi in zip(ranges['min'], ranges['max']))
    assert summary['iterations'] == 2
    with open(os.path.join(a, 'train.json')) as f:
        assert json.load(f)['summary']['policy_version'] == \
            manifest['policy_version']
    assert os.path.getsize(os.path.join(a, 'curves.png')) > 1000


def test_resume_continues_exactly(small, tmp_path):
    whole, split = str(tmp_path / 'whole'), str(tmp_path / 'split')
    train.Trainer(small, whole, config(4), {}, progress=False).run()
    train.Trainer(small, split, config(2), {}, progress=False).run()
    assert checkpoint.exists(os.path.join(split, 'checkpoint'))
    resumed = train.Trainer(small, split, config(4), {}, progress=False)
    resumed.run(resume=True)
    assert resumed.iteration == 4
    ww, ws = weights(whole), weights(split)
    for name in ww:
        np.testing.assert_array_equal(ww[name], ws[name])


@pytest.mark.parametrize('make', ['none', 'empty-checkpoint'])
def test_resume_without_a_checkpoint_is_refused(small, tmp_path, make):
    """The library call refuses as ``train --resume`` does, with nothing
    written: it started afresh, warm start and all, without a word."""
    out = tmp_path / 'out'
    if make == 'empty-checkpoint':
        (out / 'checkpoint').mkdir(parents=True)
    trainer = train.Trainer(small, str(out), config(2), {}, progress=False)
    wording = f'no checkpoint in {out}/checkpoint to resume from'
    with pytest.raises(FileNotFoundError, match=re.escape(wording)) as e:
        trainer.run(resume=True)
    assert isinstance(e.value, train.NoCheckpoint)
    assert str(e.value) == wording
    assert trainer.iteration == 0
    if make == 'none':
        assert not out.exists()
    else:
        assert os.listdir(out) == ['checkpoint']
        assert os.listdir(out / 'checkpoint') == []


def test_checkpoint_round_trip_without_pickle(tmp_path):
    import torch
    state = {'a': torch.arange(4.0), 'nested': {'b': [1, 2.5, 'x'],
             3: (np.ones(2), None)}, 'rng': np.random.default_rng(1)
             .bit_generator.state}
    path = str(tmp_path / 'ck')
    checkpoint.save(path, state)
    with np.load(os.path.join(path, 'tensors.npz'), allow_pickle=False) as z:
        assert z.files
    back = checkpoint.load(path)
    assert torch.equal(back['a'], state['a'])
    assert back['nested']['b'] == [1, 2.5, 'x']
    assert np.array_equal(back['nested'][3][0], np.ones(2))
    assert back['rng'] == state['rng']


def test_short_run_from_scratch_improves_on_its_initial_policy(small,
                                                               tmp_path):
    """RL alone (no imitation): the policy found beats the random initial
    network on the held-out validation episodes, by a clear margin."""
    cfg = config(12, warm_start=None)
    cfg.eval_decisions = 0            # the whole held-out part
    summary = train.Trainer(small, str(tmp_path / 'rl'), cfg, {},
                            progress=False).run()
    costs = summary['validation_cost']
    assert summary['best_iteration'] > 0
    assert costs['best'] < 0.95 * costs['initial'], costs
    with open(tmp_path / 'rl' / 'train.json') as f:
        history = json.load(f)['history']
    assert [h['iteration'] for h in history if 'validation_cost' in h] == \
        [0, 2, 4, 6, 8, 10, 12]


def test_shield_is_written_judged_and_verified(small, tmp_path):
    """--shield-max-cpu-peak: the exported policy carries the shield (format
    version 2), validation plays it shielded, and the artifact the weigher
    loads applies it."""
    from nova_rl_weigher import shield
    out = str(tmp_path / 'run')
    cfg = config(1)
    cfg.shield_max_cpu_peak = 0.5
    trainer = train.Trainer(small, out, cfg, {'test': True}, progress=False)
    assert trainer._model_policy().shield_limit == 0.5
    trainer.run()
    policy = artifact.load_artifact(os.path.join(out, 'policy'))
    assert policy.manifest['shield'] == {'max_projected_cpu_peak': 0.5}
    assert policy.manifest['format_version'] == 2
    assert policy.shield_limit == 0.5
    assert shield.limit_of(policy.manifest) == 0.5


def test_command_line_checks_the_shield(monkeypatch, tmp_path):
    from nova_rl_trainer import cli
    seen = record_train_configs(monkeypatch)
    base = ['train', '--scenario', 'azure-v1-small', '--iterations', '1',
            '--out', str(tmp_path), '--quiet']
    assert cli.main(base) == 0
    assert cli.main(base + ['--shield-max-cpu-peak', '0.7']) == 0
    assert [c.shield_max_cpu_peak for c in seen] == [None, 0.7]
    for bad in ('0', '1.5', 'nan'):
        assert cli.main(base + ['--shield-max-cpu-peak', bad]) == 2
    assert [c.shield_max_cpu_peak for c in seen] == [None, 0.7]


def test_command_line_passes_the_imitation_budget(monkeypatch, tmp_path,
                                                  capsys):
    from nova_rl_trainer import cli
    seen = record_train_configs(monkeypatch)
    base = ['train', '--scenario', 'azure-v1-small', '--iterations', '1',
            '--out', str(tmp_path), '--quiet']
    assert cli.main(base) == 0
    assert cli.main(base + ['--imitation-steps', '2000',
                            '--imitation-decisions', '5000']) == 0
    assert cli.main(base + ['--imitation-clusters', 'both']) == 0
    assert [(c.imitation_steps, c.imitation_decisions, c.imitation_clusters)
            for c in seen] == [(200, 20000, 'warm-up'),
                               (2000, 5000, 'warm-up'),
                               (200, 20000, 'both')]
    with pytest.raises(SystemExit) as e:      # argparse's choices
        cli.main(base + ['--imitation-clusters', 'nova'])
    assert e.value.code == 2
    assert "invalid choice: 'nova'" in capsys.readouterr().err
    for option in ('--imitation-steps', '--imitation-decisions'):
        assert cli.main(base + [option, '0']) == 2
        assert f'{option} must be at least 1' in capsys.readouterr().err
    assert len(seen) == 3


@pytest.mark.parametrize('clusters', ['warm-up', 'both'])
def test_imitation_from_the_clusters_nova_built_too(small, tmp_path,
                                                    monkeypatch, clusters):
    """'both': half of the demonstrations start from the clusters the Nova
    fallback built (best-fit's warm-up packs, Nova spreads), and the
    training ranges cover them."""
    from nova_rl_trainer.learning import imitation
    real = imitation.demonstrations
    seen = []

    def recording(env, heuristic, n, starts, episode_decisions):
        xs, choices = real(env, heuristic, n, starts, episode_decisions)
        seen.append((env.warmup_policy, heuristic, n, len(xs),
                     np.concatenate(xs)))
        return xs, choices
    monkeypatch.setattr(imitation, 'demonstrations', recording)
    c = config(1)
    c.imitation_clusters = clusters
    trainer = train.Trainer(small, str(tmp_path), c, {}, progress=False)
    trainer.warm_start()
    assert trainer.history[-1]['clusters'] == clusters
    if clusters == 'warm-up':
        assert [s[:4] for s in seen] == [
            ('best-fit', 'best-fit', 600, 600)]
        return
    assert [s[:4] for s in seen] == [('best-fit', 'best-fit', 300, 300),
                                     ('nova-default', 'best-fit', 300, 300)]
    # Nova's spread cluster has states best-fit's never reaches, and the
    # exported ranges include them.
    packed, spread = seen[0][4], seen[1][4]
    assert not np.array_equal(packed.max(axis=0), spread.max(axis=0))
    np.testing.assert_array_equal(
        trainer.feature_min, np.minimum(packed.min(axis=0),
                                        spread.min(axis=0)))
    np.testing.assert_array_equal(
        trainer.feature_max, np.maximum(packed.max(axis=0),
                                        spread.max(axis=0)))
    # The fallback's cluster at a training start is the one Nova built.
    member = trainer.members[0]
    start = float(member.start_grid[5])
    nova = small()
    nova.warmup_policy = 'nova-default'
    np.testing.assert_array_equal(
        member.fallback_env('nova-default', [start]).warm_start(
            start).host_of,
        nova.warm_start(start).host_of)


def test_imitation_clusters_must_be_known(small, tmp_path):
    c = config(1)
    c.imitation_clusters = 'nova'
    trainer = train.Trainer(small, str(tmp_path), c, {}, progress=False)
    with pytest.raises(ValueError, match="'warm-up' or 'both'"):
        trainer.warm_start()
