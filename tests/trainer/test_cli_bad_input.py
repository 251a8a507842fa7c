"""Mistaken input an operator can give the trainer's commands: one line
on stderr, exit status 2, before any work, and no output written (an
output path that cannot be written, option values no run can use)."""

from __future__ import annotations

import json
import os
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


def test_evaluate_policies_with_several_options(tmp_path, capsys, trace):
    """The options of one policy are comma-separated after its colon, in
    the comma-separated list of policies."""
    out = tmp_path / 'e.json'
    argv = ['evaluate', '--trace', trace, *CLUSTER, '--json', str(out),
            '--report', str(tmp_path / 'report'), '--jobs', '1', '--quiet',
            '--policies']
    assert cli.main(argv + ['first-fit,bundled:threshold=0.3,multiplier=2,'
                            'nova-default:ram=1,cpu=2']) == 0
    assert [m['policy'] for m in json.loads(out.read_text())] == [
        'first-fit', 'bundled:threshold=0.3,multiplier=2',
        'nova-default:ram=1,cpu=2']
    out.unlink()
    capsys.readouterr()
    assert cli.main(argv + ['multiplier=2,first-fit']) == 2
    one_line_error(capsys, "option 'multiplier=2' comes before any policy")
    assert not out.exists()


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


@pytest.mark.parametrize('value', ['nan', '-1', 'inf'])
@pytest.mark.parametrize('option, words', [
    ('--multiplier', 'multiplier must be a finite number >= 0, as '
                     '[rl_weigher] weight_multiplier'),
    ('--floor', 'floor must be a finite number of host-samples >= 0'),
])
def test_publish_numbers_no_verdict_can_use(tmp_path, capsys, trace, value,
                                            option, words):
    rc = cli.main(['publish', '--candidate', policies.bundled_path(),
                   '--target', str(tmp_path / 'target'), '--trace', trace,
                   *CLUSTER, option, value, '--quiet'])
    assert rc == 2
    one_line_error(capsys, words, 'nothing was changed')


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
    (['--calibration-floor', '-1'], '--calibration-floor -1: must be a '
                                    'number of host-samples >= 0'),
    (['--calibration-floor', 'nan'], '--calibration-floor nan'),
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


def _seed_commands(tmp_path, trace):
    out = str(tmp_path / 'out')
    return {
        'size-cluster --trace': ['size-cluster', '--trace', trace],
        'size-cluster --scenario': ['size-cluster', '--scenario',
                                    'azure-v1-small'],
        'simulate': ['simulate', '--trace', trace, *CLUSTER, '--policy',
                     'first-fit', '--json', out, '--quiet'],
        'evaluate': ['evaluate', '--trace', trace, *CLUSTER, '--policies',
                     'first-fit', '--json', out + '.json', '--report', out,
                     '--jobs', '1', '--quiet'],
        'train': ['train', '--trace', trace, *CLUSTER, '--out', out,
                  '--iterations', '1', '--quiet'],
        'retrain': ['retrain', '--trace', trace, *CLUSTER, '--out', out,
                    '--policy', policies.bundled_path(), '--iterations', '1',
                    '--quiet'],
        'publish': ['publish', '--candidate', policies.bundled_path(),
                    '--target', out, '--trace', trace, *CLUSTER,
                    '--seed', '0', '--workers', '1', '--quiet'],
    }


@pytest.mark.parametrize('command', ['size-cluster --trace',
                                     'size-cluster --scenario', 'simulate',
                                     'evaluate', 'train', 'retrain',
                                     'publish'])
def test_a_negative_seed(tmp_path, capsys, trace, command):
    """Every command that takes --seed refuses a negative one, before
    reading the trace (size-cluster --trace printed a result; the others
    ended in numpy's bare 'expected non-negative integer' once the trace
    was being read)."""
    argv = _seed_commands(tmp_path, trace)[command] + ['--seed', '-1']
    rc = cli.main(argv)
    assert rc == 2
    err = one_line_error(capsys, '--seed -1: must be an integer >= 0')
    if command == 'publish':
        assert 'nothing was changed' in err
    assert capsys.readouterr().out == ''
    assert not any(tmp_path.glob('out*'))


@pytest.mark.parametrize('command', ['train', 'retrain'])
def test_a_seed_past_64_bits(tmp_path, capsys, trace, command):
    """torch's manual_seed overflowed past 64 bits after the setup was
    built; the largest seed allowed still trains."""
    argv = _seed_commands(tmp_path, trace)[command]
    assert cli.main(argv + ['--seed', str(2 ** 64)]) == 2
    one_line_error(capsys, f'--seed {2 ** 64}: must be at most')
    assert not any(tmp_path.glob('out*'))
    assert cli.main(argv + ['--seed', str(2 ** 63 - 1)]) == 0


class _NoTraining:
    """Stands for the trainer: fails a test that reaches it, unless it is
    told it may (then it records how it was run)."""

    allowed = False
    resumed: list = []

    def __init__(self, *args, **kwargs) -> None:
        assert self.allowed, 'the training started'

    def run(self, resume: bool = False) -> dict:
        self.resumed.append(resume)
        return {}


@pytest.mark.parametrize('make', ['none', 'empty', 'empty-checkpoint'])
def test_train_resume_without_a_checkpoint(tmp_path, capsys, trace,
                                           monkeypatch, make):
    """One line before any training work: --resume started afresh,
    silently, when OUT held no checkpoint (a mistyped OUT, or a run that
    stopped before its first checkpoint)."""
    from nova_rl_trainer.learning import train
    monkeypatch.setattr(train, 'Trainer', _NoTraining)
    out = tmp_path / 'out'
    if make != 'none':
        out.mkdir()
    if make == 'empty-checkpoint':
        (out / 'checkpoint').mkdir()
    rc = cli.main(['train', '--trace', trace, *CLUSTER, '--out', str(out),
                   '--iterations', '1', '--quiet', '--resume'])
    assert rc == 2
    one_line_error(capsys, f'--resume: no checkpoint in {out}/checkpoint '
                           'to resume from')
    assert out.exists() == (make != 'none')


def test_train_resume_with_a_checkpoint_resumes(tmp_path, capsys, trace,
                                                monkeypatch):
    from nova_rl_trainer.learning import checkpoint
    from nova_rl_trainer.learning import train
    monkeypatch.setattr(train, 'Trainer', _NoTraining)
    monkeypatch.setattr(_NoTraining, 'allowed', True)
    monkeypatch.setattr(_NoTraining, 'resumed', [])
    out = tmp_path / 'out'
    checkpoint.save(str(out / 'checkpoint'), {'iteration': 3})
    assert cli.main(['train', '--trace', trace, *CLUSTER, '--out', str(out),
                     '--iterations', '1', '--quiet', '--resume']) == 0
    assert _NoTraining.resumed == [True]


def test_train_resume_checkpoint_gone_before_the_run(tmp_path, capsys,
                                                     trace, monkeypatch):
    """The trainer's own refusal (the checkpoint went after the command
    looked) is the command's: one line, exit status 2, no traceback."""
    from nova_rl_trainer.learning import checkpoint
    from nova_rl_trainer.learning import train
    out = tmp_path / 'out'
    checkpoint.save(str(out / 'checkpoint'), {'iteration': 3})

    class CheckpointGone:
        def __init__(self, make_env, out_dir, *args, **kwargs) -> None:
            self.out = out_dir
            shutil.rmtree(train.checkpoint_dir(out_dir))

        def run(self, resume: bool = False) -> dict:
            # What Trainer.run does first when asked to resume.
            train.check_resume(self.out)
            raise AssertionError('the training started')

    monkeypatch.setattr(train, 'Trainer', CheckpointGone)
    rc = cli.main(['train', '--trace', trace, *CLUSTER, '--out', str(out),
                   '--iterations', '1', '--quiet', '--resume'])
    assert rc == 2
    one_line_error(capsys, f'--resume: no checkpoint in {out}/checkpoint '
                           'to resume from')


def test_evaluate_replaces_metrics_csv_whole(tmp_path, capsys, trace):
    """A reader of the previous metrics.csv keeps the whole previous table
    while the next evaluation writes its own (the file was truncated and
    rewritten in place)."""
    report = tmp_path / 'report'

    def evaluate(policy: str) -> None:
        assert cli.main(['evaluate', '--trace', trace, *CLUSTER,
                         '--policies', policy, '--json',
                         str(tmp_path / 'e.json'), '--report', str(report),
                         '--jobs', '1', '--quiet']) == 0

    evaluate('first-fit')
    path = report / 'metrics.csv'
    before = path.read_bytes()
    # The format is unchanged: the csv module's default dialect.
    assert before.startswith(b'policy,decisions,placed,')
    assert before.count(b'\r\n') == 2
    with open(path, 'rb') as old:
        evaluate('best-fit')
        assert old.read() == before
    after = path.read_bytes()
    assert b'\r\nbest-fit,' in after and b'first-fit' not in after
    assert not [n for n in os.listdir(report) if n.startswith('.')]


@pytest.fixture
def outcomes_args(tmp_path, trace):
    cluster = tmp_path / 'cluster.json'
    cluster.write_text(json.dumps({'host_groups': [
        {'name': 'c', 'count': 2, 'vcpus': 4, 'ram_mb': 8192}]}))
    log = tmp_path / 'log'
    log.mkdir()
    (log / 'notes.txt').write_text('not a decision log\n')
    return log, ['outcomes', '--source', 'csv', '--trace', trace,
                 '--decisions', str(log), '--cluster', str(cluster),
                 '--out', str(tmp_path / 'outcomes.jsonl')]


def test_outcomes_without_decision_log_files(tmp_path, capsys,
                                             outcomes_args):
    """Said on stderr, exit status 0 as documented (the file is written):
    a wrong --decisions, or a weigher with no decision_log_dir, looked
    like a quiet night (0 of 0 decisions joined)."""
    log, argv = outcomes_args
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f'nova-rl-trainer: warning: --decisions {log}: no decision log '
        'files (decisions-*.jsonl*) in it, nothing to join\n')
    assert '0 of 0 decisions joined' in captured.out
    assert (tmp_path / 'outcomes.jsonl').read_text() == ''
    # --quiet: no warnings, as its help says.
    assert cli.main(argv + ['--quiet']) == 0
    assert capsys.readouterr() == ('', '')


def test_outcomes_with_nothing_to_join_queries_nothing(tmp_path, capsys,
                                                       outcomes_args,
                                                       monkeypatch):
    """No decision to join: the source is never asked, the summary line
    says so instead of naming it as what the outcomes came from, and the
    outputs are written as with decisions (empty JSON lines, the same
    summary keys)."""
    from nova_rl_trainer.telemetry import csv_source

    def unreachable(self, *args, **kwargs):
        raise AssertionError('the source was queried')

    monkeypatch.setattr(csv_source.CsvSource, 'instances', unreachable)
    monkeypatch.setattr(csv_source.CsvSource, 'cpu_usage', unreachable)
    log, argv = outcomes_args
    summary = tmp_path / 'summary.json'
    assert cli.main(argv + ['--json', str(summary)]) == 0
    captured = capsys.readouterr()
    out = tmp_path / 'outcomes.jsonl'
    assert captured.out == ('0 of 0 decisions joined: nothing to join, csv '
                            f'not queried -> {out}\n')
    assert 'no decision log files' in captured.err
    assert out.read_bytes() == b''
    written = json.loads(summary.read_text())
    assert written['decisions'] == written['joined'] == 0
    assert written['source'] == 'csv' and written['out'] == str(out)
    assert written['log']['files'] == 0


def test_outcomes_with_an_empty_decision_log_file(tmp_path, capsys,
                                                  outcomes_args):
    """A log file with no record yet is not that warning."""
    log, argv = outcomes_args
    (log / 'decisions-sched1-42.jsonl').write_text('')
    assert cli.main(argv) == 0
    assert capsys.readouterr().err == ''


def _publish_json(tmp_path, trace, json_path, *extra):
    return cli.main(['publish', '--candidate', policies.bundled_path(),
                     '--target', str(tmp_path / 'site' / 'policy'),
                     '--trace', trace, *CLUSTER, '--workers', '1',
                     '--quiet', '--json', str(json_path), *extra])


@pytest.mark.parametrize('won', [True, False])
def test_publish_json_that_fails_after_the_decision(tmp_path, capsys, trace,
                                                    monkeypatch, won):
    """--json was checked before the evaluation, then replaced by a
    directory meanwhile: the decision stands and the exit status says it
    (0 installed, 3 refused) with one error line, where it was 2, which
    says that nothing changed, after an install."""
    from nova_rl_trainer.publishing import judge
    from nova_rl_trainer.publishing import versions as pv

    from .test_publish_unprivileged import fake_evaluate
    json_path = tmp_path / 'p.json'

    def evaluate(*args):
        json_path.mkdir()
        cases = fake_evaluate(*args)
        if not won:
            for case in cases:
                case.metrics[judge.CANDIDATE]['objective_value'] = 2.0
        return cases

    monkeypatch.setattr(judge, '_evaluate', evaluate)
    (tmp_path / 'site').mkdir()
    target = str(tmp_path / 'site' / 'policy')
    rc = _publish_json(tmp_path, trace, json_path)
    out, err = capsys.readouterr()
    assert err.count('\n') == 1, err
    assert err.startswith(f'nova-rl-trainer publish: error: cannot write '
                          f'{json_path}: it is a directory; '), err
    assert 'nothing was changed' not in err
    if won:
        assert rc == 0
        assert f'INSTALLED: {target} -> ' in out
        installed = os.path.join(pv.versions_dir(target),
                                 os.path.basename(os.readlink(target)))
        assert err.endswith(f'; the policy was installed all the same: '
                            f'{target} -> {installed}\n'), err
        assert len(pv.read_history(target)['stack']) == 1
    else:
        assert rc == 3
        assert 'REFUSED' in out
        assert err.endswith(f'; the candidate was refused: {target} is '
                            'unchanged\n'), err
        assert not os.path.lexists(target)


@pytest.mark.parametrize('where', ['policy', 'policy/decision.json',
                                   'policy.versions/history.json',
                                   'policy.versions'])
def test_publish_json_where_the_install_goes(tmp_path, capsys, trace,
                                             monkeypatch, where):
    """A --json at or under the target or its versions directory passed the
    check, then, the candidate installed, failed (exit 2: the target is a
    symlink to a directory now, and so is the versions directory) or wrote
    into the installed version, or over history.json. Refused before the
    evaluation."""
    from nova_rl_trainer.publishing import judge

    from .test_publish_unprivileged import fake_evaluate
    evaluated = []

    def evaluate(*args):
        evaluated.append(args)
        return fake_evaluate(*args)

    monkeypatch.setattr(judge, '_evaluate', evaluate)
    (tmp_path / 'site').mkdir()
    rc = _publish_json(tmp_path, trace, tmp_path / 'site' / where)
    assert os.listdir(tmp_path / 'site') == []
    assert rc == 2
    one_line_error(capsys, f'--json {tmp_path}/site/{where} is at or under '
                           f'{tmp_path}/site/policy',
                   'which publish installs into', 'nothing was changed')
    assert not evaluated
