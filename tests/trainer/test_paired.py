"""The one-sided rule over paired windows (simulation.paired), and publish
refusing a candidate worse on one term in enough windows."""

import math

import numpy as np
import pytest

from nova_rl_trainer.publishing import judge
from nova_rl_trainer.simulation import objectives
from nova_rl_trainer.simulation import paired


def test_t_quantiles_match_the_tables():
    # Student's t, one-sided 95%: tabulated values and the expansion.
    assert paired.t95(1) == pytest.approx(6.3138, abs=1e-4)
    assert paired.t95(9) == pytest.approx(1.8331, abs=1e-4)
    assert paired.t95(40) == pytest.approx(1.6839, abs=1e-3)
    assert paired.t95(120) == pytest.approx(1.6577, abs=1e-3)
    assert paired.t95(10**6) == pytest.approx(1.6449, abs=1e-3)
    with pytest.raises(ValueError):
        paired.t95(0)


def test_bound_is_mean_plus_t_standard_error():
    d = [0.1, -0.2, 0.05, 0.0, -0.1, 0.2, -0.05, 0.1, -0.15, 0.05]
    b = paired.upper_bound(d)
    sd = np.std(d, ddof=1)
    assert b.n == 10 and b.mean == pytest.approx(np.mean(d))
    assert b.upper == pytest.approx(np.mean(d) + 1.8331 * sd / math.sqrt(10),
                                    abs=1e-6)
    with pytest.raises(ValueError):
        paired.upper_bound([1.0])


def test_rule_passes_and_refuses_constructed_samples():
    # Better by 1% in every window, with small noise: not worse, improves.
    rng = np.random.default_rng(0)
    better = -0.01 + 0.001 * rng.standard_normal(10)
    b = paired.upper_bound(better)
    assert b.not_worse() and b.improves()
    # Better on average, but 3 windows of 10 much worse: the bound is
    # above 0, so "must not be worse" refuses (and a 30% slack passes).
    mixed = [-0.1] * 7 + [0.15] * 3
    b = paired.upper_bound(mixed)
    assert b.mean < 0 and b.upper > 0
    assert not b.not_worse() and b.not_worse(tolerance=0.3)
    # Never worse in any window, one big gain: not worse (the bound is
    # capped at the worst window, 0), and improves.
    gain = paired.upper_bound([-1.0] + [0.0] * 9)
    assert gain.upper == 0.0 and gain.not_worse() and gain.improves()
    # Identical runs: passes "not worse", fails "improves".
    same = paired.upper_bound([0.0] * 10)
    assert same.not_worse() and not same.improves()


def test_relative_uses_the_reference_mean_or_absolute_for_zero():
    assert paired.relative([2, 4], [1, 3]).tolist() == [0.5, 0.5]
    assert paired.relative([1, 0], [0, 0]).tolist() == [1.0, 0.0]


def _cases(cand_term, ref_term, cand_obj, ref_obj):
    cases = []
    for k, (ct, rt, co, ro) in enumerate(zip(cand_term, ref_term, cand_obj,
                                             ref_obj)):
        def m(term, obj):
            return {**{t: 1.0 for t in objectives.TERMS},
                    'overload_host_hours': term, 'objective_value': obj}
        cases.append(judge.Case(f'w{k}', None, 0,
                                {judge.CANDIDATE: m(ct, co),
                                 judge.BASELINE: m(rt, ro)}))
    return cases


def test_judge_refuses_a_candidate_worse_on_one_term_in_enough_windows():
    ref = [10.0] * 10
    # Overload 20% worse in 4 windows of 10, objective better in all.
    worse = [12.0] * 4 + [10.0] * 6
    failures, judgements = judge._judge(
        _cases(worse, ref, [0.9] * 10, [1.0] * 10),
        ('overload_host_hours',), tolerance=0.0)
    assert [(f.reference, f.term) for f in failures] == \
        [('nova-default', 'overload_host_hours')]
    over = judgements[0]
    assert over.bound.n == 10 and over.bound.mean == pytest.approx(0.08)
    assert not over.passed and judgements[1].passed    # objective better
    assert '10 windows' in failures[0].message('balance', 0.0)
    # Worse in a single window by a hair is within a 1% tolerance.
    once = [10.01] + [10.0] * 9
    failures, _ = judge._judge(_cases(once, ref, [0.9] * 10, [1.0] * 10),
                               ('overload_host_hours',), tolerance=0.01)
    assert failures == []
    # Better in one window and equal elsewhere: the objective improves.
    failures, _ = judge._judge(
        _cases(ref, ref, [0.5] + [1.0] * 9, [1.0] * 10),
        ('overload_host_hours',), tolerance=0.0)
    assert failures == []


def test_compare_holds_the_absolute_bound_to_the_floor():
    # A reference that accrues seconds: +50% relative, 0.005 absolute.
    reference = [0.01, 0.0] * 5
    candidate = [0.015, 0.0] * 5
    strict = paired.compare(candidate, reference)
    assert strict.upper > 0.4 and strict.upper_abs is None
    assert not strict.not_worse() and not strict.within_floor()
    assert strict.as_dict() == {'n': 10, 'mean_diff': strict.mean,
                                'upper_95': strict.upper}
    floored = paired.compare(candidate, reference, floor=1 / 12)
    assert floored.upper == strict.upper         # still reported
    assert 0 < floored.upper_abs < 1 / 12
    assert floored.within_floor() and floored.not_worse()
    assert floored.as_dict()['floor'] == 1 / 12
    # Past the floor in its own units: worse, whatever the scale.
    assert not paired.compare([r + 0.1 for r in reference], reference,
                              floor=1 / 12).not_worse()
    with pytest.raises(ValueError, match='floor'):
        paired.compare(candidate, reference, floor=-1.0)


def test_judge_lets_seconds_of_overload_pass_the_floor_not_a_sample():
    """publish's case: Nova overloads for seconds in one window of ten;
    the candidate 20 s more there (+33%), better on its objective."""
    ref = [1 / 60] + [0.0] * 9
    seconds = [ref[0] + 20 / 3600] + [0.0] * 9
    floors = {'overload_host_hours': objectives.floor('overload_host_hours',
                                                      300.0)}
    better = ([0.9] * 10, [1.0] * 10)
    failures, _ = judge._judge(_cases(seconds, ref, *better),
                               ('overload_host_hours',), 0.0)
    assert [f.term for f in failures] == ['overload_host_hours']
    failures, judgements = judge._judge(_cases(seconds, ref, *better),
                                        ('overload_host_hours',), 0.0,
                                        floors)
    assert failures == [] and judgements[0].passed
    assert judgements[0].as_dict()['rule'] == \
        'upper_95 <= tolerance or upper_95_abs <= floor'
    result = judge.PublishResult(
        target='t', candidate='c', candidate_version='v', objective='balance',
        terms=('overload_host_hours',), tolerance=0.0, current_version=None,
        cases=_cases(seconds, ref, *better), failures=[], notes=[],
        judgements=judgements, floor_host_samples=1.0)
    assert '(within the floor: ' in result.table()
    assert result.summary()['floor_host_samples'] == 1.0
    # Ten minutes of one more overloaded host in every window is not noise.
    sample = [r + 10 / 60 for r in ref]
    failures, _ = judge._judge(_cases(sample, ref, *better),
                               ('overload_host_hours',), 0.0, floors)
    assert [f.term for f in failures] == ['overload_host_hours']
    message = failures[0].message('balance', 0.0)
    assert 'absolute bound +0.1667 per window > floor 0.08333' in message
