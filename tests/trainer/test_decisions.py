"""``nova-rl-trainer decisions`` on logs written by the real scorer."""

import json
import os
import time
import types

import pytest

from nova_rl_trainer import cli
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import scorer as scorer_mod
from tests import fixtures as testing

T0 = 1_800_000_000.0        # a fixed wall clock: buckets are predictable
#: Nova's weight favours h2, the largest.
HOSTS = testing.small_hosts(3)


@pytest.fixture
def log_dir(tmp_path, monkeypatch):
    """Calls of three policies, shadow and gated, a minute apart:

    - ``small-first`` (prefers h0, Nova h2): 4 shadow calls, then 3
      gated (applied), then 1 gated outside the canary;
    - ``large-first`` (prefers h2, as Nova): 2 gated, applied;
    - ``split`` (members disagree): 2 gated, low confidence.
    """
    small = testing.make_linear_policy(str(tmp_path / 'a'),
                                       {'log_vcpus_total': -1.0},
                                       policy_version='small-first')
    large = testing.make_linear_policy(str(tmp_path / 'b'),
                                       {'log_vcpus_total': 1.0},
                                       policy_version='large-first')
    split = testing.make_linear_policy(str(tmp_path / 'c'),
                                       {'log_vcpus_total': 1.0},
                                       ensemble_size=4, agreement=False,
                                       policy_version='split')
    directory = str(tmp_path / 'log')
    clock = types.SimpleNamespace(now=T0)
    monkeypatch.setattr(scorer_mod, 'time', types.SimpleNamespace(
        time=lambda: clock.now, perf_counter=time.perf_counter))
    s = scorer_mod.Scorer()
    calls = ([(small, 'shadow', {})] * 4 + [(small, 'gated', {})] * 3
             + [(small, 'gated', {'canary_percent': 0.0})]
             + [(large, 'gated', {})] * 2
             + [(split, 'gated', {'confidence_threshold': 1.0})] * 2)
    for n, (policy, mode, extra) in enumerate(calls):
        clock.now = T0 + 60 * n
        request = features.RequestView(
            vcpus=1, memory_mb=512, disk_gb=1, project_id='p',
            instance_uuid=f'uuid-{n}', flavor_name='m1.tiny')
        s.weigh_views(HOSTS, request, scorer_mod.Settings(
            mode=mode, policy_path=policy, policy_check_interval_s=0.0,
            latency_budget_ms=1000.0, decision_log_dir=directory, **extra))
    assert s.flush_decision_log()
    s.close()
    (path,) = [os.path.join(directory, n) for n in os.listdir(directory)]
    with open(path, 'ab') as f:
        f.write(b'garbage\n{"time": 1')     # a bad line, a writer mid-line
    return directory


def test_report_summary_and_plots(log_dir, tmp_path, capsys):
    out = tmp_path / 'report'
    assert cli.main(['decisions', '--log', log_dir, '--report',
                     str(out)]) == 0
    assert '12 decisions in 1 files (2 lines skipped' in \
        capsys.readouterr().out
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['source']['malformed'] == 1
    assert summary['source']['truncated'] == 1
    assert summary['first_time'] == T0
    assert summary['last_time'] == T0 + 60 * 11
    assert summary['bucket_s'] == 60

    overall = summary['overall']
    assert overall['calls'] == 12
    assert overall['modes'] == {'shadow': 4, 'gated': 8}
    assert overall['applied'] == 5
    assert overall['would_act'] == 9
    assert overall['reasons'][gate.MODE_SHADOW] == 4
    assert overall['verdicts'] == {gate.APPLIED: 9,
                                   gate.LOW_CONFIDENCE: 2,
                                   gate.OUTSIDE_CANARY: 1}

    small = summary['policies']['small-first']
    assert small['calls'] == 8
    assert small['applied'] == 3 and small['would_act'] == 7
    assert small['applied_share'] == pytest.approx(3 / 8)
    assert small['agreement']['compared'] == 8
    assert small['agreement']['share'] == 0.0
    assert small['agreement']['by_confidence'][-1] == 0.0
    assert small['confidence']['histogram'][-1] == 8
    # The policy's host is smaller than Nova's on every disagreement.
    top = small['features'][0]
    assert top['feature'] == 'log_vcpus_total'
    assert top['disagreements'] == 8
    assert top['mean_diff'] < 0 and top['mean_abs_diff'] > 0
    assert top['why_count'] > 0
    series = small['series']
    assert series['start'] == [T0 + 60 * n for n in range(8)]
    assert series['applied'] == [0, 0, 0, 0, 1, 1, 1, 0]
    assert series['would_act'] == [1] * 7 + [0]

    large = summary['policies']['large-first']
    assert large['applied'] == 2
    assert large['agreement'] == dict(large['agreement'], compared=2,
                                      agree=2, share=1.0)
    assert large['features'][0]['disagreements'] == 0

    split = summary['policies']['split']
    assert split['verdicts'] == {gate.LOW_CONFIDENCE: 2}
    assert split['confidence']['p50'] == 0.5

    report = (out / 'report.md').read_text()
    assert '| `small-first` | 8 | gated 4, shadow 4 | 37.5% | 87.5% | 0.0% |' \
        in report
    assert '| `low_confidence` | 2 (16.7%) |' in report
    for name in ('acting_share.png', 'abstain_reasons.png', 'confidence.png',
                 'features.png'):
        assert f'![{name}]({name})' in report
        assert (out / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_since_until_select_calls(log_dir, tmp_path):
    out = tmp_path / 'r'
    assert cli.main(['decisions', '--log', log_dir, '--report', str(out),
                     '--since', str(T0 + 60 * 8), '--until',
                     str(T0 + 60 * 10), '--quiet']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert list(summary['policies']) == ['large-first']
    assert summary['overall']['calls'] == 2


def test_empty_log_still_reports(tmp_path):
    (tmp_path / 'log').mkdir()
    out = tmp_path / 'r'
    assert cli.main(['decisions', '--log', str(tmp_path / 'log'),
                     '--report', str(out), '--quiet']) == 0
    assert '0 weighing calls' in (out / 'report.md').read_text()
    assert json.loads((out / 'summary.json').read_text())[
        'overall']['calls'] == 0


def test_missing_log_is_one_line(tmp_path, capsys):
    assert cli.main(['decisions', '--log', str(tmp_path / 'nope'),
                     '--report', str(tmp_path / 'r')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert 'nova-rl-trainer: error: --log' in err
    assert 'not a directory' in err
