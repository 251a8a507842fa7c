"""The Prometheus textfile: values after known calls, the format, the
interval, failures that never reach the weighing call, atomic replacement.

No test sleeps: the interval runs on a fake clock, the writer thread is
waited for with ``flush()``.
"""

import logging
import math
import os
import re
import subprocess
import sys

import pytest

from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import metrics
from nova_rl_weigher import scorer as scorer_mod
from tests import fixtures as testing

REQ = features.RequestView(vcpus=1, memory_mb=512, disk_gb=1,
                           project_id='p1', instance_uuid='uuid-1',
                           flavor_name='m1.tiny')
#: Nova's weight favours h2, the largest.
HOSTS = testing.small_hosts(3)

# -- a strict parser of the text exposition format (0.0.4) -----------------

_NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(
    rf'^(?P<name>{_NAME})(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)\}})? '
    r'(?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|Inf|NaN))$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
# Text format 0.0.4: a counter's TYPE names the sample (``x_total``).
_SUFFIXES = {'counter': ('',), 'gauge': ('',),
             'histogram': ('_bucket', '_sum', '_count')}


def _unescape(value):
    return re.sub(r'\\(.)', lambda m: {'n': '\n'}.get(m.group(1),
                                                      m.group(1)), value)


def parse(text):
    """{(name, frozenset(labels.items())): value}; AssertionError on
    anything the format does not allow."""
    assert text.endswith('\n')
    types, helps, samples = {}, set(), {}
    current = None
    for line in text[:-1].split('\n'):
        if line.startswith('# HELP '):
            name = line.split(' ')[2]
            assert re.fullmatch(_NAME, name) and name not in helps, line
            helps.add(name)
            continue
        if line.startswith('# TYPE '):
            _, _, name, kind = line.split(' ')
            assert kind in _SUFFIXES and name not in types, line
            assert name in helps, f'TYPE before HELP: {line}'
            types[name] = kind
            current = name
            continue
        assert not line.startswith('#') and line, repr(line)
        m = _SAMPLE.match(line)
        assert m, f'not a sample line: {line!r}'
        name = m.group('name')
        # Every sample belongs to the family of the TYPE line before it.
        assert current and any(name == current + suffix
                               for suffix in _SUFFIXES[types[current]]), line
        if types[current] == 'counter':
            assert name.endswith('_total'), line
        labels = dict((k, _unescape(v)) for k, v in
                      _LABEL_RE.findall(m.group('labels') or ''))
        key = (name, frozenset(labels.items()))
        assert key not in samples, f'duplicate sample {line}'
        samples[key] = float(m.group('value'))
    return samples


def value(samples, name, **labels):
    labels.setdefault('pid', str(os.getpid()))
    return samples[(name, frozenset(labels.items()))]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def policy(tmp_path):
    return testing.make_linear_policy(str(tmp_path / 'policy'),
                                      {'log_vcpus_total': -1.0},
                                      policy_version='v-"1"\\')


def make_scorer(clock=None):
    s = scorer_mod.Scorer()
    if clock is not None:
        s.metrics = metrics.Metrics(s, clock=clock)
    return s


def settings(policy, path, **kw):
    base = dict(mode='gated', policy_path=policy, policy_check_interval_s=0,
                latency_budget_ms=1000.0, metrics_file=path)
    base.update(kw)
    return scorer_mod.Settings(**base)


def test_values_after_known_calls(policy, tmp_path):
    path = str(tmp_path / 'rl.prom')
    s = make_scorer()
    s.weigh_views(HOSTS, REQ, settings(policy, path))
    s.weigh_views(HOSTS, REQ, settings(policy, path, mode='shadow'))
    s.weigh_views(HOSTS, REQ, settings(policy, path, canary_percent=0.0))
    s.weigh_views(HOSTS, REQ, settings(policy, path))
    s.weigh_views(HOSTS, REQ, settings(policy, path, mode='off'))
    s.weigh(['a'], None, REQ, settings(policy, path))     # fails: error
    s._count_drop('queue_full')
    # The file was written on the first call; write the rest now.
    assert s.metrics.flush() and s.metrics.writes == 1
    assert s.metrics.write(path)
    samples = parse(open(path).read())
    assert value(samples, 'nova_rl_weigher_calls_total') == 5
    assert value(samples, 'nova_rl_weigher_applied_total') == 2
    assert value(samples, 'nova_rl_weigher_errors_total') == 1
    for reason in metrics.ABSTAIN_REASONS:
        expected = {gate.MODE_SHADOW: 1, gate.OUTSIDE_CANARY: 1,
                    gate.ERROR: 1}.get(reason, 0)
        assert value(samples, 'nova_rl_weigher_abstained_total',
                     reason=reason) == expected, reason
    assert value(samples, 'nova_rl_weigher_decision_log_dropped_total',
                 reason='queue_full') == 1
    assert value(samples, 'nova_rl_weigher_decision_log_dropped_total',
                 reason='write_error') == 0
    assert value(samples, 'nova_rl_weigher_policy_info',
                 version='v-"1"\\', mode='gated') == 1
    # The histogram: every call but the one in mode off, cumulative.
    name = 'nova_rl_weigher_latency_seconds'
    bounds = [repr(b) for b in metrics.LATENCY_BUCKETS_S] + ['+Inf']
    counts = [value(samples, name + '_bucket', le=b) for b in bounds]
    assert counts == sorted(counts) and counts[-1] == 5
    assert value(samples, name + '_count') == 5
    assert 0 < value(samples, name + '_sum') < 5 * 1.0


def test_prometheus_client_parses_it(policy, tmp_path):
    parser = pytest.importorskip('prometheus_client.parser')
    s = make_scorer()
    s.weigh_views(HOSTS, REQ, settings(policy, ''))
    families = {f.name: f for f in
                parser.text_string_to_metric_families(s.metrics.text())}
    assert families['nova_rl_weigher_calls'].type == 'counter'
    assert families['nova_rl_weigher_latency_seconds'].type == 'histogram'
    info = families['nova_rl_weigher_policy_info'].samples[0]
    assert info.labels['version'] == 'v-"1"\\'


def test_written_at_most_once_per_interval(policy, tmp_path):
    path = str(tmp_path / 'rl.prom')
    clock = Clock()
    s = make_scorer(clock)
    for _ in range(20):
        s.weigh_views(HOSTS, REQ, settings(policy, path,
                                           metrics_interval=15.0))
    assert s.metrics.flush()
    assert s.metrics.writes == 1
    clock.now += 14.9
    s.weigh_views(HOSTS, REQ, settings(policy, path))
    assert s.metrics.flush() and s.metrics.writes == 1
    clock.now += 0.2
    s.weigh_views(HOSTS, REQ, settings(policy, path))
    assert s.metrics.flush() and s.metrics.writes == 2
    assert value(parse(open(path).read()),
                 'nova_rl_weigher_calls_total') == 22


def test_unwritable_file_never_reaches_weighing_and_logs_once(
        policy, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger='nova_rl_weigher.metrics')
    blocker = tmp_path / 'blocker'
    blocker.write_text('a file, so no directory can be made under it')
    path = str(blocker / 'rl.prom')
    clock = Clock()
    s = make_scorer(clock)
    for _ in range(3):
        out = s.weigh_views(HOSTS, REQ, settings(policy, path,
                                                 metrics_interval=1.0))
        assert out.applied and out.weights[0] == 1.0 and out.weights[2] == 0
        assert s.metrics.flush()
        clock.now += 20.0           # due again, within the error interval
    logged = [r for r in caplog.records if r.name == 'nova_rl_weigher.metrics']
    assert len(logged) == 1
    assert 'cannot write the metrics file' in logged[0].getMessage()
    assert s.metrics.writes == 0
    clock.now += 60.0
    s.weigh_views(HOSTS, REQ, settings(policy, path))
    assert s.metrics.flush()
    logged = [r for r in caplog.records if r.name == 'nova_rl_weigher.metrics']
    assert len(logged) == 2
    assert '(2 similar messages suppressed)' in logged[1].getMessage()


def test_replaced_atomically(policy, tmp_path):
    path = str(tmp_path / 'rl.prom')
    s = make_scorer()
    s.weigh_views(HOSTS, REQ, settings(policy, ''))
    assert s.metrics.write(path)
    with open(path) as old:
        first = os.fstat(old.fileno()).st_ino
        s.weigh_views(HOSTS, REQ, settings(policy, ''))
        assert s.metrics.write(path)
        # A reader of the old file still reads it whole.
        assert value(parse(old.read()), 'nova_rl_weigher_calls_total') == 1
    assert os.stat(path).st_ino != first
    assert value(parse(open(path).read()), 'nova_rl_weigher_calls_total') == 2
    assert oct(os.stat(path).st_mode & 0o777) == '0o644'
    assert os.listdir(tmp_path) == ['policy', 'rl.prom']     # no temp file


def test_pid_in_the_name_and_files_of_exited_workers_removed(policy,
                                                             tmp_path):
    template = str(tmp_path / 'rl_{pid}.prom')
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    dead = tmp_path / f'rl_{proc.pid}.prom'
    alive = tmp_path / f'rl_{os.getppid()}.prom'
    other = tmp_path / 'rl_x.prom'
    for p in (dead, alive, other):
        p.write_text('')
    s = make_scorer()
    s.weigh_views(HOSTS, REQ, settings(policy, template))
    assert s.metrics.flush() and s.metrics.writes == 1
    assert sorted(os.listdir(tmp_path)) == sorted(
        ['policy', alive.name, other.name, f'rl_{os.getpid()}.prom'])


def test_each_forked_worker_writes_its_own_file(policy, tmp_path):
    template = str(tmp_path / 'rl_{pid}.prom')
    s = make_scorer()
    s.weigh_views(HOSTS, REQ, settings(policy, template))
    assert s.metrics.flush()
    pid = os.fork()
    if pid == 0:        # the worker: one call, then its file
        code = 1
        try:
            s.weigh_views(HOSTS, REQ, settings(policy, template))
            code = 0 if s.metrics.flush() and s.metrics.writes else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    samples = parse(open(tmp_path / f'rl_{pid}.prom').read())
    # The worker's counters: the parent's call before the fork, its own.
    assert value(samples, 'nova_rl_weigher_calls_total',
                 pid=str(pid)) == 2
    assert math.isfinite(value(samples, 'nova_rl_weigher_latency_seconds_sum',
                               pid=str(pid)))


def test_escape_label():
    assert metrics.escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
