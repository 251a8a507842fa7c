"""PPO behind the shield: the vine estimator samples and branches only the
hosts the shield lets the policy prefer, Nova places where it lets none,
and the update's softmax is over the allowed hosts alone."""

import numpy as np
import pytest

pytest.importorskip('torch')

import torch  # noqa: E402

from nova_rl_weigher import shield  # noqa: E402

from nova_rl_trainer.learning import env as env_mod  # noqa: E402
from nova_rl_trainer.learning import policy_net  # noqa: E402
from nova_rl_trainer.learning import ppo  # noqa: E402
from nova_rl_trainer.learning import rollouts  # noqa: E402
from nova_rl_trainer.simulation import scenarios  # noqa: E402

SETTINGS = ppo.PPOConfig(episode_decisions=200, minibatch=16, epochs=1,
                         vine_states=12, vine_horizon=20, vine_stride=2)


@pytest.fixture(scope='module')
def env():
    sc = scenarios.get_scenario('azure-v1-small')
    return env_mod.PlacementEnv(trace=sc.load_trace(0), cluster=sc.cluster,
                                objective='packing', seed=0)


def collect(env, limit, seed=0):
    torch.manual_seed(seed)
    model = policy_net.EnsembleScorer()
    rng = np.random.default_rng(seed)
    batch = rollouts.collect_vine(
        env, policy_net.numpy_policy(model), SETTINGS, rng,
        lambda: float(env.horizon_s * 0.5), 'nova-default',
        shield_limit=limit)
    return model, batch


def test_branches_only_what_the_shield_allows(env):
    # A limit between the candidates' projections: some hosts are out.
    model, batch = collect(env, 0.3)
    assert len(batch.xs) == SETTINGS.vine_states
    shielded = 0
    for x, tried, logp, allowed in zip(batch.xs, batch.actions, batch.logp,
                                       batch.allowed):
        expected = shield.safe_hosts(0.3, x)
        if allowed is None:
            assert expected.all()
            continue
        shielded += 1
        np.testing.assert_array_equal(allowed, expected)
        assert allowed[tried].all()
        assert np.isfinite(logp).all()
        # Recorded log-probabilities are those of the masked softmax.
        probs = np.exp(rollouts.log_softmax(
            policy_net.numpy_policy(model).score(x).astype(np.float64),
            allowed))
        assert probs[:, ~allowed].sum() == 0.0
        np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert shielded, 'the limit should have taken some hosts away'

    agent = ppo.PPO(model, SETTINGS)
    stats = agent.update_vine(batch, np.random.default_rng(0))
    assert np.isfinite(list(stats.values())).all()
    # After the update the network still puts no weight outside the shield.
    i = next(k for k, a in enumerate(batch.allowed) if a is not None)
    x, mask = policy_net.pad([batch.xs[i]])
    choice = ppo.shield_mask([batch.allowed[i]], mask)
    with torch.no_grad():
        p = agent._log_probs(x, mask, choice).exp()[:, 0].numpy()
    assert p[:, ~batch.allowed[i]].max() < 1e-6


def test_without_a_shield_nothing_is_masked(env):
    _, batch = collect(env, None)
    assert len(batch.xs) == SETTINGS.vine_states
    assert all(a is None for a in batch.allowed)


def test_a_shield_that_allows_nothing_leaves_nova_to_place(env):
    # No host is ever within a negative limit: the gate would step aside
    # every time, so there is nothing to branch and the batch ends empty
    # (the loop is bounded), and the update is a no-op.
    model, batch = collect(env, -1.0)
    assert batch.xs == [] and batch.trunk_xs
    before = [p.detach().clone() for p in model.parameters()]
    stats = ppo.PPO(model, SETTINGS).update_vine(
        batch, np.random.default_rng(0))
    assert stats['mean_abs_advantage'] == 0.0
    for a, b in zip(before, model.parameters()):
        assert torch.equal(a, b)
