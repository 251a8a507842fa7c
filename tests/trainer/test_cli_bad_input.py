"""Mistaken input an operator can give the trainer's commands: one line
on stderr, exit status 2, before any work, and no output written (an
output path that cannot be written, option values no run can use)."""

from __future__ import annotations

import json
import shutil

import pytest

from nova_rl_trainer import cli
from nova_rl_trainer.simulation import policies

from ._helpers import HEADER

ROWS = ('a,p1,0,3600,2,2048,10,0.5,0.7\n'
        'b,p2,60,,4,1024,0,,\n'
        'c,p1,120,7200,1,512,0,0.2,\n')
CLUSTER = ['--hosts', '3', '--host-vcpus', '8', '--host-ram-mb', '8192']


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / 'trace.csv'
    path.write_text(HEADER + ROWS)
    return str(path)


@pytest.fixture
def afile(tmp_path):
    """A plain file where a directory is expected."""
    path = tmp_path / 'afile'
    path.write_text('x')
    return path


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert 'Traceback' not in err, err
    assert err.count('\n') == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.mark.parametrize('out, words', [
    ('afile/m.json', ['cannot write', 'afile is not a directory']),
    ('.', ['cannot write .: it is a directory']),
])
def test_simulate_json_that_cannot_be_written(tmp_path, capsys, trace,
                                              afile, monkeypatch, out,
                                              words):
    monkeypatch.chdir(tmp_path)
    rc = cli.main(['simulate', '--trace', trace, *CLUSTER, '--policy',
                   'first-fit', '--json', out, '--quiet'])
    assert rc == 2
    one_line_error(capsys, *words)


@pytest.mark.parametrize('which', ['json', 'report'])
def test_evaluate_writes_nothing_when_an_output_cannot_be(
        tmp_path, capsys, trace, afile, which):
    """Checked before the simulations: the JSON is not written when the
    report cannot be, nor the report when the JSON cannot be."""
    paths = {'json': str(tmp_path / 'e.json'),
             'report': str(tmp_path / 'report')}
    paths[which] = str(afile / 'x')
    rc = cli.main(['evaluate', '--trace', trace, *CLUSTER, '--policies',
                   'first-fit', '--json', paths['json'], '--report',
                   paths['report'], '--jobs', '1', '--quiet'])
    assert rc == 2
    one_line_error(capsys, f'cannot write {afile}/x', 'is not a directory')
    assert not (tmp_path / 'e.json').exists()
    assert not (tmp_path / 'report').exists()


def test_decisions_report_and_times(tmp_path, capsys, afile):
    log = tmp_path / 'log'
    log.mkdir()
    assert cli.main(['decisions', '--log', str(log), '--report',
                     str(afile), '--quiet']) == 2
    one_line_error(capsys, f'cannot write {afile}: it is not a directory')
    # NaN compares false with every time: the report held no call.
    report = tmp_path / 'report'
    assert cli.main(['decisions', '--log', str(log), '--report',
                     str(report), '--since', 'nan', '--quiet']) == 2
    one_line_error(capsys, '--since nan: must be a Unix time')
    assert not report.exists()


def test_ingest_writes_no_trace_when_its_summary_cannot_be(
        tmp_path, capsys, trace, afile):
    out = tmp_path / 'ingested.csv'
    rc = cli.main(['ingest', '--source', 'csv', '--trace', trace,
                   '--start', '2026-01-01T00:00:00Z', '--stop',
                   '2026-01-02T00:00:00Z', '--out', str(out), '--json',
                   str(afile / 'summary.json'), '--quiet'])
    assert rc == 2
    one_line_error(capsys, 'cannot write', 'is not a directory')
    assert not out.exists()


def test_publish_json_checked_before_the_evaluation(tmp_path, capsys,
                                                    trace, afile):
    """A --json that cannot be written ended a decided (or installed)
    publish with a traceback and exit 1."""
    target = tmp_path / 'target'
    rc = cli.main(['publish', '--candidate', policies.bundled_path(),
                   '--target', str(target), '--trace', trace, *CLUSTER,
                   '--windows', '10', '--workers', '1', '--quiet',
                   '--json', str(afile / 'p.json')])
    assert rc == 2
    one_line_error(capsys, 'cannot write', 'is not a directory',
                   'nothing was changed')
    assert not target.exists()


@pytest.mark.parametrize('multiplier', ['nan', '-1', 'inf'])
def test_publish_multiplier_as_nova_takes_it(tmp_path, capsys, trace,
                                             multiplier):
    rc = cli.main(['publish', '--candidate', policies.bundled_path(),
                   '--target', str(tmp_path / 'target'), '--trace', trace,
                   *CLUSTER, '--multiplier', multiplier, '--quiet'])
    assert rc == 2
    one_line_error(capsys, 'multiplier must be a finite number >= 0, as '
                           '[rl_weigher] weight_multiplier')


@pytest.mark.parametrize('spec, words', [
    ('bundled:threshold=nan', 'option threshold=nan must be in [0, 1], as '
                              '[rl_weigher] confidence_threshold'),
    ('bundled:threshold=5', 'option threshold=5 must be in [0, 1]'),
    ('bundled:canary=-5', 'option canary=-5 must be in [0, 100], as '
                          '[rl_weigher] canary_percent'),
    ('bundled:multiplier=inf', 'option multiplier=inf must be a finite '
                               'number >= 0'),
    ('nova-default:ram=nan', "policy 'nova-default': option ram must be a "
                             'finite number'),
    # Named once, not twice.
    ('nova-default:ram=x', "error: policy 'nova-default:ram=x': option "
                           "ram='x' is not a number\n"),
])
def test_policy_options_out_of_range(tmp_path, capsys, trace, spec, words):
    out = tmp_path / 'm.json'
    rc = cli.main(['simulate', '--trace', trace, *CLUSTER, '--policy', spec,
                   '--json', str(out), '--quiet'])
    assert rc == 2
    one_line_error(capsys, words)
    assert not out.exists()


def test_a_candidate_that_is_a_file(tmp_path, capsys, afile):
    rc = cli.main(['publish', '--candidate', str(afile), '--target',
                   str(tmp_path / 'target'), '--scenario', 'azure-v1-small'])
    assert rc == 2
    one_line_error(capsys, f'{afile}: not a directory')


@pytest.mark.parametrize('extra, words', [
    (['--members', '0'], '--members must be at least 1'),
    (['--hidden', '0'], '--hidden must be at least 1'),
    (['--eval-every', '0'], '--eval-every must be at least 1'),
    (['--vine-states', '0'], '--vine-states must be at least 1'),
    (['--iterations', '0'], '--iterations must be at least 1'),
    (['--minutes', '-1'], '--minutes -1: must be a number of minutes > 0'),
    (['--minutes', 'nan'], '--minutes nan: must be a number'),
    (['--warm-start', 'worst-fit'], "--warm-start: unknown policy "
                                    "'worst-fit'"),
    (['--continuation', 'load-aware:target=2'], '--continuation: policy'),
])
def test_train_options_no_run_can_use(tmp_path, capsys, trace, extra,
                                      words):
    """Refused before the trace is read and OUT created (--members 0 ended
    after the warm start with 'Probabilities contain NaN', --hidden 0 and
    --eval-every 0 in a ZeroDivisionError, --minutes -1 and --iterations 0
    trained anyway)."""
    out = tmp_path / 'out'
    rc = cli.main(['train', '--trace', trace, *CLUSTER, '--out', str(out),
                   '--quiet', *extra])
    assert rc == 2
    one_line_error(capsys, words)
    assert not out.exists()


@pytest.mark.parametrize('command', ['train', 'retrain'])
def test_training_out_that_cannot_be_written(tmp_path, capsys, trace, afile,
                                             command):
    extra = (['--policy', policies.bundled_path()]
             if command == 'retrain' else [])
    rc = cli.main([command, '--trace', trace, *CLUSTER, '--out',
                   str(afile / 'run'), '--iterations', '1', '--quiet',
                   *extra])
    assert rc == 2
    one_line_error(capsys, 'cannot write', 'is not a directory')


def test_retrain_bootstrap(tmp_path, capsys, trace):
    rc = cli.main(['retrain', '--trace', trace, *CLUSTER, '--out',
                   str(tmp_path / 'out'), '--policy',
                   policies.bundled_path(), '--bootstrap', '0'])
    assert rc == 2
    one_line_error(capsys, '--bootstrap must be at least 1')


def test_the_checks_pass_what_works(tmp_path, capsys, trace):
    """A path whose parents are still to be created is writable."""
    out = tmp_path / 'new' / 'dir' / 'm.json'
    assert cli.main(['simulate', '--trace', trace, *CLUSTER, '--policy',
                     'first-fit', '--json', str(out), '--quiet']) == 0
    assert json.loads(out.read_text())['policy'] == 'first-fit'
    shutil.rmtree(tmp_path / 'new')
