"""Off-policy estimates on logged decisions whose true value is known."""

from __future__ import annotations

import numpy as np
import pytest

from nova_rl_trainer.learning import off_policy
from nova_rl_trainer.simulation import objectives

OBJECTIVE = objectives.load_objective('packing')


def logged(n: int, seed: int = 0, propensity: bool = False,
           noise: float = 0.1) -> tuple[list[dict], float]:
    """Decisions among 4 candidates, one chosen uniformly at random; the
    cost that follows is ``2 * feature 0`` of the chosen host plus noise.
    Also the true mean cost of always choosing the smallest feature 0."""
    rng = np.random.default_rng(seed)
    rows, best = [], []
    for _ in range(n):
        x = rng.uniform(0, 1, size=(4, 3))
        chosen = int(rng.integers(4))
        c = [{'host': f'h{i}', 'features': x[i].tolist()} for i in range(4)]
        if propensity:
            for cand in c:
                cand['propensity'] = 0.25
        cost = 2 * x[chosen, 0] + rng.normal(0, noise)
        rows.append({'complete': True, 'chosen_index': chosen,
                     'candidates': c,
                     'terms': {'active_host_hours': cost}})
        best.append(2 * x[:, 0].min())
    return rows, float(np.mean(best))


def pick_smallest_first_feature(x: np.ndarray) -> np.ndarray:
    return -x[:, 0]


def test_direct_method_finds_the_better_policy():
    rows, truth = logged(400)
    e = off_policy.estimate(rows, pick_smallest_first_feature, OBJECTIVE,
                            bootstrap=100)
    assert e['method'].startswith('direct method')
    assert e['usable'] == 400
    lo, hi = e['interval']
    assert lo <= truth <= hi
    assert e['estimate'] == pytest.approx(truth, abs=0.05)
    # Choosing at random costs about 2 * 0.5: clearly worse, and said so.
    assert e['logged'] == pytest.approx(1.0, abs=0.1)
    assert e['difference_interval'][1] < 0
    assert e['same_choice'] == pytest.approx(0.25, abs=0.08)


def test_importance_sampling_with_logged_propensities():
    rows, truth = logged(2000, propensity=True)
    e = off_policy.estimate(rows, pick_smallest_first_feature, OBJECTIVE,
                            bootstrap=100)
    assert e['method'].startswith('importance sampling')
    lo, hi = e['interval']
    assert lo <= truth <= hi
    assert hi - lo < 0.2


def test_the_logged_policy_is_estimated_as_itself():
    rows, _ = logged(400, noise=0.0)

    def same(x: np.ndarray) -> np.ndarray:
        row = next(r for r in rows if np.allclose(
            [c['features'] for c in r['candidates']], x))
        return np.eye(len(x))[row['chosen_index']]
    e = off_policy.estimate(rows, same, OBJECTIVE, bootstrap=20)
    assert e['same_choice'] == 1.0
    assert e['estimate'] == pytest.approx(e['logged'], abs=1e-6)


def test_too_few_or_incomplete_decisions_give_no_estimate():
    rows, _ = logged(30)
    for r in rows[:25]:
        r['complete'] = False
    e = off_policy.estimate(rows, pick_smallest_first_feature, OBJECTIVE)
    assert e['method'] == 'none'
    assert e['usable'] == 5 and 'at least 10' in e['reason']


def test_cost_is_the_objectives_value_of_the_terms():
    row = {'terms': {'active_host_hours': 2.0, 'energy_kwh': 0.5,
                     'overload_host_hours': 7.0}}
    assert off_policy.decision_cost(row, OBJECTIVE) == pytest.approx(2.5)
    balance = objectives.load_objective('balance')
    assert off_policy.decision_cost(row, balance) == pytest.approx(7.0)
