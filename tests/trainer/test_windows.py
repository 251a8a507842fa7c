"""Held-out windows (simulation.evaluation.split_windows/evaluate_windows):
each starts from the state the setup's Nova weighers built, so Nova's own
windows add up to its whole run; fanned out, the results are identical."""

import pytest

from nova_rl_trainer.simulation import evaluation
from nova_rl_trainer.simulation import objectives
from nova_rl_trainer.simulation.setup import Setup


def setup(**kw):
    return Setup.from_scenario('azure-v1-small', objective='balance',
                               cluster_changes={'hosts': 12}, **kw)


def test_windows_are_disjoint_and_cover_the_trace():
    cuts = evaluation.split_windows(setup(), 10)
    assert len(cuts) == 10 and cuts[-1].end_s is None
    for a, b in zip(cuts, cuts[1:]):
        assert a.end_s == pytest.approx(b.start_s)
    short = evaluation.split_windows(setup(), 10, window_days=0.1)
    assert all(w.end_s - w.start_s == pytest.approx(8640.0) for w in short)
    with pytest.raises(ValueError, match='overlapping'):
        evaluation.split_windows(setup(), 10, window_days=1.0)
    with pytest.raises(ValueError, match='at least 1'):
        evaluation.split_windows(setup(), 0)


def test_nova_windows_add_up_to_its_whole_run_and_fanout_is_identical():
    s = setup()
    cuts = evaluation.split_windows(s, 10)
    specs = ['nova-default', 'best-fit']
    inline = evaluation.evaluate_windows(cuts, specs, jobs=1,
                                         show_progress=False)
    fanned = evaluation.evaluate_windows(cuts, specs, jobs=2,
                                         show_progress=False)
    assert fanned == inline
    whole = evaluation.run_one(s, 'nova-default').metrics
    for term in objectives.TERMS:
        assert sum(w[0][term] for w in inline) == \
            pytest.approx(whole[term], rel=1e-9, abs=1e-9), term
    assert sum(w[0]['decisions'] for w in inline) == whole['decisions']
    # Another policy, same windows and starting states: different costs.
    assert [w[1]['active_host_hours'] for w in inline] != \
        [w[0]['active_host_hours'] for w in inline]


def test_progress_bar_without_a_total(capsys):
    """The windows' progress bar has no total (tqdm then refuses to be
    tested for truth): shown, as ``publish`` shows it without --quiet, it
    must count the decisions, not fail."""
    cuts = evaluation.split_windows(setup(), 2)
    shown = evaluation.evaluate_windows(cuts, ['nova-default'], jobs=1,
                                        show_progress=True)
    quiet = evaluation.evaluate_windows(cuts, ['nova-default'], jobs=1,
                                        show_progress=False)
    assert shown == quiet
    assert 'decision' in capsys.readouterr().err
