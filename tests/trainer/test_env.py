"""The gymnasium environment over the simulator."""

import warnings

from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest

from nova_rl_weigher import features

from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.simulation import evaluation as runner
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation.setup import Setup

SMALL = 'azure-v1-small'


def play(env, pick, seed=0, **reset):
    obs, info = env.reset(seed=seed, **reset)
    total, steps = 0.0, 0
    while True:
        action = pick(env, obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        steps += 1
        if terminated or truncated:
            return total, steps, terminated, info


def nova(env, obs, info):
    return info['nova_action']


def test_passes_gymnasiums_checker():
    env = env_mod.PlacementEnv(SMALL, start_s=86400.0, max_decisions=40)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # unbounded Box: by design
        check_env(env, skip_render_check=True)


def test_observation_is_the_shared_feature_matrix():
    env = env_mod.PlacementEnv(SMALL)
    obs, info = env.reset(seed=0)
    sc = scenarios.get_scenario(SMALL)
    assert obs['features'].shape == (sc.cluster.hosts, features.NUM_FEATURES)
    assert obs['features'].dtype == np.float32
    mask = obs['mask'].astype(bool)
    np.testing.assert_array_equal(mask, env.action_masks())
    d = env.decision
    np.testing.assert_array_equal(np.flatnonzero(mask), d.candidates)
    np.testing.assert_array_equal(obs['features'][d.candidates], d.x)
    assert (obs['features'][~mask] == 0).all()
    assert info['nova_action'] == d.nova_action
    nw = features.FEATURE_INDEX['nova_weight']
    np.testing.assert_allclose(d.x[:, nw], d.nova_weight, rtol=1e-6)


def test_return_is_minus_the_objective_and_matches_the_simulator():
    env = env_mod.PlacementEnv(SMALL, objective='balance')
    total, steps, terminated, _ = play(env, nova)
    assert terminated
    m = env.metrics()
    assert total == pytest.approx(-m['objective_value'], rel=1e-9)
    # Following Nova's choice in the env is running nova-default.
    sc = scenarios.get_scenario(SMALL)
    setup = Setup.from_scenario(sc.name, objective='balance')
    ref = runner.run_one(setup, 'nova-default').metrics
    assert steps == ref['placed']
    assert m['objective_value'] == pytest.approx(ref['objective_value'])
    assert m['active_host_hours'] == pytest.approx(ref['active_host_hours'])


def test_rewards_charge_placements_over_their_life():
    # Packing spread thin costs more than packing tight, step by step.
    env = env_mod.PlacementEnv(SMALL, objective='packing')

    def tight(env, obs, info):
        free = env.decision.x[:, features.FEATURE_INDEX[
            'ram_free_after_frac']]
        return int(env.decision.candidates[int(np.argmin(free))])

    spread_return = play(env, nova)[0]
    tight_return = play(env, tight)[0]
    assert tight_return > spread_return


def test_invalid_action_and_truncation_and_warm_start():
    env = env_mod.PlacementEnv(SMALL, start_s=86400.0, max_decisions=25)
    obs, info = env.reset(seed=0)
    assert info['time_s'] >= 86400.0
    assert info['decisions'] > 1           # the warm-up placed the rest
    bad = int(np.flatnonzero(obs['mask'] == 0)[0]) if (
        obs['mask'] == 0).any() else env.cluster.hosts
    with pytest.raises(ValueError, match='not a candidate'):
        env.step(bad)
    total, steps, terminated, info = play(env, nova)
    assert steps == 25 and not terminated
    # The warm start is cached: the same episode again, bit for bit.
    again = play(env, nova)
    assert again[0] == total
    with pytest.raises(RuntimeError, match='reset'):
        env.step(0)


def test_seeds_select_the_workload():
    env = env_mod.PlacementEnv(SMALL, max_decisions=200)
    a = play(env, nova, seed=0)[0]
    b = play(env, nova, seed=1)[0]
    c = play(env, nova, seed=0)[0]
    assert a == c and a != b


def test_primed_starts_equal_one_reset_per_instant():
    from nova_rl_trainer.learning import env as env_mod
    from nova_rl_trainer.simulation import scenarios
    sc = scenarios.get_scenario('azure-v1-small')
    trace = sc.load_trace(0)
    starts = [20000.0, 60000.0, 90000.0]
    primed = env_mod.PlacementEnv(trace=trace, cluster=sc.cluster)
    primed.prime_starts(starts)
    for start in starts:
        plain = env_mod.PlacementEnv(trace=trace, cluster=sc.cluster)
        a = plain.reset(options={'start_s': start})[0]
        b = primed.reset(options={'start_s': start})[0]
        np.testing.assert_array_equal(a['features'], b['features'])
        np.testing.assert_array_equal(a['mask'], b['mask'])
        assert plain.sim.cost() == primed.sim.cost()
        assert plain.decision.vm == primed.decision.vm
