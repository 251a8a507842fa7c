"""The ``pareto`` objective and Lagrangian PPO's multipliers."""

import pytest

from nova_rl_trainer.simulation import objectives
from nova_rl_trainer.simulation.objectives import ObjectiveError

TERMS = {'active_host_hours': 100.0, 'energy_kwh': 30.0,
         'overload_host_hours': 2.0, 'hot_host_hours': 10.0,
         'headroom_deficit_host_hours': 7.0, 'rejected': 1.0}


def test_pareto_terms_options_and_excess():
    p = objectives.load_objective('pareto')
    assert p.multipliers == {'overload_host_hours': 1.0,
                             'hot_host_hours': 0.1,
                             'rejected': objectives.REJECTION_COST}
    assert p.primary(TERMS) == 130.0
    # The Lagrangian: primary plus each constraint at its multiplier.
    assert p.value(TERMS) == pytest.approx(130 + 2 + 1 + 10)
    p.set_multipliers({'overload_host_hours': 3.0, 'rejected': 0.0})
    assert p.value(TERMS) == pytest.approx(130 + 6 + 1)
    ref = dict(TERMS, overload_host_hours=1.0, hot_host_hours=20.0,
               rejected=0.0)
    e = p.excess(TERMS, ref)
    assert e['overload_host_hours'] == pytest.approx(1.0)     # +100%
    assert e['hot_host_hours'] == pytest.approx(-0.5)
    # One rejection against none: relative to one request.
    assert e['rejected'] == pytest.approx(1.0)
    # No overload on the reference: relative to 1% of its active
    # host-hours, and clipped.
    e = p.excess(dict(TERMS, overload_host_hours=0.5),
                 dict(ref, overload_host_hours=0.0))
    assert e['overload_host_hours'] == pytest.approx(0.5)
    e = p.excess(dict(TERMS, overload_host_hours=50.0),
                 dict(ref, overload_host_hours=0.0))
    assert e['overload_host_hours'] == p.excess_clip[1]
    q = objectives.load_objective('pareto', {'hot_host_hours': 0,
                                             'dual_lr': 0.5})
    assert q.multipliers['hot_host_hours'] == 0.0
    assert q.prices['hot_host_hours'] == 0.1
    assert q.dual_lr == 0.5
    for options, words in (({'headroom_deficit_host_hours': 1},
                            'neither a primary term'),
                           ({'overload_host_hours': -1}, 'must not be '
                                                         'negative'),
                           ({'dual_lr': 0}, 'dual_lr must be positive'),
                           ({'bogus': 1}, "no option 'bogus'")):
        with pytest.raises(ObjectiveError, match=words):
            objectives.load_objective('pareto', options)
    with pytest.raises(ObjectiveError, match='multiplier'):
        p.set_multipliers({'overload_host_hours': -1.0})


def test_dual_ascent_rule():
    pytest.importorskip('torch')
    from nova_rl_trainer.learning import ppo
    prices = {'a': 1.0, 'b': 0.1}
    lam = ppo.dual_ascent({'a': 1.0, 'b': 0.1}, {'a': 1.0, 'b': 0.0},
                          prices, 1.0)
    # Violated by 100%: doubled; met exactly: down by DUAL_DECAY of its
    # price.
    assert lam['a'] == pytest.approx(2.0)
    assert lam['b'] == pytest.approx(0.1 * (1 - ppo.DUAL_DECAY))
    # Above its price the step scales with the multiplier itself.
    lam = ppo.dual_ascent({'a': 8.0, 'b': 0.01}, {'a': -0.5, 'b': -1.0},
                          prices, 1.0)
    assert lam == {'a': pytest.approx(4.0), 'b': 0.0}


def test_multipliers_rise_when_violated_and_fall_back_to_zero_when_met(
        tmp_path):
    """Through the trainer, on a small deterministic case: validation
    episodes played by nova-pack (more hot spots than the reference,
    nova-default) raise the violated constraints' multipliers; played by
    nova-default itself (no more of any), they all fall back to 0."""
    pytest.importorskip('torch')
    from nova_rl_trainer.learning import env as env_mod
    from nova_rl_trainer.learning import train
    from nova_rl_trainer.simulation import policies
    from nova_rl_trainer.simulation import scenarios
    from nova_rl_trainer.simulation import simulator

    sc = scenarios.get_scenario('azure-v1-small')
    trace = sc.load_trace(0)
    objective = objectives.load_objective('pareto')

    # Hot at 30% of the cores: the small cluster's hosts get that busy
    # when packed, not when spread.
    config = simulator.SimConfig(hot_threshold=0.3)

    def make_env():
        return env_mod.PlacementEnv(trace=trace, cluster=sc.cluster,
                                    objective=objective, seed=0,
                                    config=config)
    trainer = train.Trainer(make_env, str(tmp_path), train.TrainConfig(
        objective='pareto', eval_decisions=0), {}, progress=False)
    assert trainer.reference == 'nova-default'
    assert trainer.continuation == 'nova-default'
    trainer._baselines()
    policy = 'nova-pack'
    trainer._model_policy = lambda: policies.make_policy(policy)
    before = objective.multipliers
    entry = trainer.evaluate_now()
    violated = [t for t, e in entry['excess'].items() if e > 0]
    assert 'hot_host_hours' in violated, entry['excess']
    assert not entry['feasible']
    after = objective.multipliers
    for t in objective.constraints:
        # Raised where violated, lowered where met.
        assert (after[t] > before[t]) == (t in violated), (t, entry)
    # Every environment prices the constraints alike.
    assert trainer.val_env.objective.multipliers == after
    # The reference's own choices: every constraint met (exactly).
    policy = 'nova-default'
    seen = [after]
    for _ in range(40):
        entry = trainer.evaluate_now()
        assert entry['feasible']
        seen.append(objective.multipliers)
        if not any(seen[-1].values()):
            break
    assert seen[-1] == dict.fromkeys(seen[-1], 0.0), seen[-1]
    for a, b in zip(seen, seen[1:]):
        assert all(b[t] <= a[t] for t in a)
    # The kept policy is a feasible one: nova-pack's, kept first, was
    # replaced whatever its primary cost.
    assert trainer.best['feasible']
    assert trainer.best['validation_cost'] == entry['validation_cost']
    assert all(e == 0 for e in entry['excess'].values())
