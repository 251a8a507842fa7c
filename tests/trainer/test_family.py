"""Training for a family of clusters: seeded draws within the ranges,
clear errors for a malformed family file, and a tiny family training run
whose exported ranges cover every member and that acts on a cluster shape
no member had."""

import json
import math
import os

import numpy as np
import pytest

from nova_rl_trainer import cli
from nova_rl_trainer.simulation import family
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import traces

#: A family small enough for tests: few hosts, few requests.
SMALL = {'hosts': [10, 40], 'max_requests': 2500, 'window_days': [1, 1.5]}


@pytest.fixture(scope='module')
def base():
    return Setup.from_scenario('azure-v1-dev', objective='pareto')


@pytest.fixture(scope='module')
def members(base):
    return family.ClusterFamily.from_dict(SMALL).members(base, 3, seed=0)


def makers(members):
    """Environment factories of the members, sharing one objective."""
    from nova_rl_trainer.learning.env import factory
    objective = members[0].setup.make_objective()
    return [factory(m.trace, m.setup, objective) for m in members]


def tiny_config(**changes):
    from nova_rl_trainer.learning import ppo
    from nova_rl_trainer.learning import train
    fields = dict(
        objective='pareto', minutes=None, iterations=2,
        warm_start='load-aware', imitation_decisions=900,
        imitation_steps=30, eval_every=1, eval_decisions=300,
        calibration_samples=12, calibration_horizon=30, checkpoint_every=5,
        ppo=ppo.PPOConfig(episode_decisions=128, minibatch=64, epochs=2,
                          vine_states=6, vine_horizon=30, vine_stride=4))
    return train.TrainConfig(**{**fields, **changes})


def test_draws_are_seeded_and_within_the_ranges(base, members):
    fam = family.ClusterFamily.from_dict(SMALL)
    again = fam.members(base, 3, seed=0)
    assert [m.describe() for m in again] == [m.describe() for m in members]
    # Member i does not depend on how many are drawn.
    assert fam.members(base, 1, seed=0)[0].describe() == \
        members[0].describe()
    other = fam.members(base, 3, seed=1)
    assert [m.describe() for m in other] != [m.describe() for m in members]
    r = fam.ranges
    shapes = set()
    for m in members:
        groups = m.setup.cluster.groups
        assert 1 <= len(groups) <= 3
        assert r['hosts'][0] <= m.setup.cluster.hosts <= r['hosts'][1]
        for g in groups:
            shapes.add(g.shape)
            assert 8 <= g.vcpus <= 192
            # RAM is rounded to whole GiB.
            assert 2 - 0.5 / g.vcpus <= g.ram_mb / 1024 / g.vcpus \
                <= 16 + 0.5 / g.vcpus
            assert 1 <= g.cpu_allocation_ratio <= 16
            assert 1.0 <= g.ram_allocation_ratio <= 1.5
            assert g.peak_watts > g.idle_watts > 0
        # The peak allocation, recomputed from the trace and the hosts.
        peak = traces.peak_demand(m.trace)
        h = m.setup.cluster.per_host
        alloc = max(peak['peak_vcpus'] / h.vcpu_capacity.sum(),
                    peak['peak_memory_mb'] / h.ram_capacity_mb.sum(),
                    peak['peak_disk_gb'] * 1024 / h.disk_capacity_mb.sum())
        assert alloc == pytest.approx(m.peak_allocation)
        assert 0.5 <= alloc <= 0.98
        start, end = m.setup.window
        assert 86400 - 1 <= end - start <= 1.5 * 86400 + 1
        assert 0 < m.setup.sample <= 1
        assert len(m.trace) < 1.5 * SMALL['max_requests']
        # The setup describes the member: loading it gives the same trace.
        loaded = m.setup.load_trace()
        assert np.array_equal(loaded.arrival_s, m.trace.arrival_s)
        assert np.array_equal(loaded.vcpus, m.trace.vcpus)
    # Three different clusters, and more than one generation somewhere.
    assert len({m.setup.cluster for m in members}) == 3
    assert len(shapes) > 3


@pytest.mark.parametrize('content, words', [
    ({'host_vcpus': [8]}, "key 'host_vcpus' must be [low, high]"),
    ({'hosts': [10, 'many']}, "key 'hosts' must be a finite number"),
    ({'gib_per_vcpu': [16, 2]}, "key 'gib_per_vcpu' must have 0 < low <= "
                                'high'),
    ({'groups': [1, 2.5]}, "key 'groups' must be whole numbers"),
    ({'peak_allocation': [0.5, 1.2]}, "key 'peak_allocation' is a share"),
    ({'max_requests': 0}, "key 'max_requests' must be a positive integer"),
    ({'host_cpus': [8, 16]}, "unknown key 'host_cpus'; keys: groups, "),
    ([1, 2], 'expected a JSON object of ranges'),
])
def test_malformed_family_files_name_the_key(tmp_path, content, words):
    path = tmp_path / 'family.json'
    path.write_text(json.dumps(content))
    with pytest.raises(family.FamilyError) as e:
        family.ClusterFamily.from_file(str(path))
    assert str(e.value).startswith(f'family file {path}: ')
    assert words in str(e.value)


def test_family_file_errors_on_the_command_line(tmp_path, capsys):
    pytest.importorskip('torch')
    path = tmp_path / 'family.json'
    path.write_text('{"hosts": [10, 20], "ratio": [1, 2]}')
    rc = cli.main(['train', '--scenario', 'azure-v1-small', '--objective',
                   'pareto', '--family', str(path), '--iterations', '1',
                   '--out', str(tmp_path / 'out'), '--quiet'])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert "unknown key 'ratio'" in err
    path.write_text('{"hosts": [10, 20]')
    assert cli.main(['train', '--scenario', 'azure-v1-small', '--family',
                     str(path), '--out', str(tmp_path / 'out')]) == 2
    assert 'not JSON' in capsys.readouterr().err
    # Ranges no draw can meet (this trace's peak on 1,000 hosts or more).
    path.write_text('{"hosts": [1000, 1000], "max_requests": 100}')
    assert cli.main(['train', '--scenario', 'azure-v1-small', '--family',
                     str(path), '--out', str(tmp_path / 'out')]) == 2
    assert "ranges of 'hosts' and 'peak_allocation'" in \
        capsys.readouterr().err


def test_a_family_run_covers_every_member_and_acts_on_an_unseen_shape(
        members, monkeypatch, tmp_path):
    pytest.importorskip('torch')
    from nova_rl_trainer.learning import calibration
    from nova_rl_trainer.learning import train
    from nova_rl_trainer.simulation import evaluation
    from nova_rl_trainer.simulation import policies
    from nova_rl_weigher import artifact
    from nova_rl_weigher import features
    from nova_rl_weigher import gate

    config = tiny_config()
    # What this tiny run's calibration measures is not the point here: the
    # gate's threshold must not bind, so that what the policy acts on is
    # decided by the training ranges.
    monkeypatch.setattr(calibration, 'choose_threshold',
                        lambda rows, target=0.9: 0.0)
    out = str(tmp_path / 'out')
    summary = train.Trainer(makers(members), out, config, {},
                            progress=False).run()
    assert summary['clusters'] == 3
    assert set(summary['constraints']['multipliers_final']) == {
        'overload_host_hours', 'hot_host_hours', 'rejected'}
    loaded = artifact.load_artifact(os.path.join(out, 'policy'))
    fmin, fmax = loaded.feature_min, loaded.feature_max
    col = features.FEATURE_INDEX['log_vcpus_total']
    for m in members:
        # Strictly inside the ranges, tolerance aside: every member's
        # hosts were seen.
        for g in m.setup.cluster.groups:
            assert fmin[col] <= math.log2(g.vcpus) <= fmax[col], g
        # And the states of its training part (from its middle, as the
        # environment warms it up) pass the range check.
        env = makers([m])[0]()
        sim = env.warm_start(0.4 * env.horizon_s)
        inside = total = 0
        walker = policies.make_policy('nova-default')
        walker.bind(sim)
        while total < 400:
            vm = sim.pending()
            if vm < 0:
                break
            x = sim.candidate_features(vm, sim.fit)[1]
            inside += gate.out_of_range(loaded, x) == ''
            total += 1
            sim.place(vm, walker.choose(vm, sim.fit))
            sim.next_decision()
        assert inside >= 0.9 * total, (m.setup.name, inside, total)

    # A cluster no member had: azure-v1-small's 17 hosts of 32 vCPUs /
    # 128 GiB at CPU ratio 4.
    unseen = Setup.from_scenario('azure-v1-small', objective='pareto',
                                 window=(0.0, 86400.0))
    shapes = {g.shape for m in members for g in m.setup.cluster.groups}
    assert not {g.shape for g in unseen.cluster.groups} & shapes
    r = evaluation.run_one(unseen, os.path.join(out, 'policy'))
    # Measured: 56% (the rest out of range); trained on the first member
    # alone, the same run acts on 0% (every request out of range).
    assert r.metrics['applied_fraction'] >= 0.3, r.metrics['abstained']


def test_fanned_out_rollouts_do_not_depend_on_the_workers(members,
                                                          tmp_path):
    """Two shards per iteration, collected here or by two worker
    processes: the same weights and the same curve."""
    pytest.importorskip('torch')
    from nova_rl_trainer.learning import train
    from nova_rl_weigher import artifact

    runs = {}
    for workers in (1, 2):
        out = str(tmp_path / f'w{workers}')
        config = tiny_config(rollout_members=2, workers=workers,
                             warm_start=None, calibration_samples=4)
        summary = train.Trainer(makers(members[:2]), out, config, {},
                                progress=False).run()
        runs[workers] = (artifact.load_artifact(
            os.path.join(out, 'policy')).params, summary)
    (p1, s1), (p2, s2) = runs[1], runs[2]
    assert s1['decisions_trained'] == s2['decisions_trained'] > 0
    assert s1['validation_cost'] == s2['validation_cost']
    for name in p1:
        assert np.array_equal(p1[name], p2[name]), name
