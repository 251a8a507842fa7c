"""Objectives: stevedore plugins, options, and their value on a run."""

import pytest
from stevedore import extension

from nova_rl_trainer.simulation import objectives
from nova_rl_trainer.simulation.objectives import ObjectiveError

from ._helpers import make_trace
from ._helpers import run
from ._helpers import small_cluster


def test_plugins_are_registered_with_stevedore():
    mgr = extension.ExtensionManager(namespace='nova_rl_trainer.objectives')
    assert {'packing', 'balance', 'headroom', 'mix', 'pareto'} <= set(
        mgr.names())
    assert objectives.available_objectives() == sorted(mgr.names())


def test_defaults_and_options():
    p = objectives.load_objective('packing')
    assert p.weights == {'active_host_hours': 1.0, 'energy_kwh': 1.0,
                         'rejected': objectives.REJECTION_COST}
    b = objectives.load_objective('balance', {'hot_host_hours': 0.5})
    assert b.weights['hot_host_hours'] == 0.5
    assert b.weights['overload_host_hours'] == 1.0
    h = objectives.load_objective('headroom', {'rejected': 0})
    assert h.weights == {'headroom_deficit_host_hours': 1.0}
    with pytest.raises(ObjectiveError, match="no option 'bogus'"):
        objectives.load_objective('packing', {'bogus': 1})
    with pytest.raises(ObjectiveError, match="unknown objective 'nope'.*"
                                             'packing'):
        objectives.load_objective('nope')


def test_mix_weighs_objectives_and_terms():
    m = objectives.load_objective('mix', {'packing': 1, 'balance': 5,
                                          'energy_kwh': 2})
    assert m.weights['active_host_hours'] == 1.0
    assert m.weights['energy_kwh'] == 3.0
    assert m.weights['overload_host_hours'] == 5.0
    assert m.weights['hot_host_hours'] == 0.5
    assert m.weights['rejected'] == 6 * objectives.REJECTION_COST
    with pytest.raises(ObjectiveError, match='needs options'):
        objectives.load_objective('mix')
    with pytest.raises(ObjectiveError, match='cannot contain itself'):
        objectives.load_objective('mix', {'mix': 1})


def test_parse_options():
    assert objectives.parse_options(['a=1,b=2', 'c=-0.5']) == {
        'a': 1.0, 'b': 2.0, 'c': -0.5}
    assert objectives.parse_options(None) == {}
    with pytest.raises(ObjectiveError, match='KEY=NUMBER'):
        objectives.parse_options(['a'])
    with pytest.raises(ObjectiveError, match='not a number'):
        objectives.parse_options(['a=x'])
    with pytest.raises(ObjectiveError, match='finite'):
        objectives.parse_options(['a=inf'])


@pytest.mark.parametrize('name', ['packing', 'balance', 'headroom'])
def test_objective_value_is_the_weighted_sum_of_accrued_terms(name):
    rows = [(0, 7200, 2, 2048, 0, 0.5), (0, 3600, 2, 2048, 0, 1.0),
            (1800, None, 4, 1024, 0, 1.0), (2000, 5000, 4, 1024, 0, 0.5),
            (2500, None, 1, 4096, 0, 0.5)]
    result, sim = run(make_trace(rows), small_cluster(), 'first-fit',
                      objective=name, usage_interval_s=3600,
                      usage_window_s=3600)
    m = result.metrics
    obj = objectives.load_objective(name)
    assert m['objective_value'] == pytest.approx(
        sum(w * m[t] for t, w in obj.weights.items()))
    assert sim.cost() == pytest.approx(m['objective_value'])
