"""The decision log against hostile directories, files and record sizes.

No test sleeps: time is a fake clock handed to the log, a blocked writer is
an event the test sets.
"""

import errno
import glob
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from nova_rl_weigher import decision_log
from nova_rl_weigher import ratelimit

HOST = socket.gethostname()
DAY = 86400.0


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def make_file(directory, name, size, age_s=0.0):
    path = os.path.join(directory, name)
    with open(path, 'wb') as f:
        f.write(b'{}\n' * (size // 3))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def log_files(directory):
    return sorted(os.path.basename(p) for p in
                  glob.glob(os.path.join(directory, 'decisions-*')))


def total_size(directory):
    return sum(os.path.getsize(p) for p in
               glob.glob(os.path.join(directory, 'decisions-*')))


def own_file(directory):
    return os.path.join(directory, f'decisions-{HOST}-{os.getpid()}.jsonl')


@pytest.fixture
def errors_logged(caplog):
    caplog.set_level(logging.WARNING, logger='nova_rl_weigher.decision_log')
    return lambda: [r for r in caplog.records
                    if r.name == 'nova_rl_weigher.decision_log']


# -- a directory that cannot be written ------------------------------------

def test_unwritable_directory_one_error_per_interval_and_backoff(
        tmp_path, monkeypatch, errors_logged):
    # Root ignores permission bits, so the directory is made impossible:
    # its parent is a regular file.
    blocker = tmp_path / 'blocker'
    blocker.write_text('not a directory')
    directory = str(blocker / 'log')
    clock = Clock()
    drops = []
    built = []
    makedirs_calls = []
    real_makedirs = os.makedirs

    def counting_makedirs(path, *a, **kw):
        makedirs_calls.append(path)
        return real_makedirs(path, *a, **kw)
    monkeypatch.setattr(decision_log.os, 'makedirs', counting_makedirs)

    log = decision_log.DecisionLog(on_drop=drops.append, clock=clock,
                                   retry_interval_s=30.0,
                                   error_interval_s=60.0)

    def record():
        built.append(1)
        return {'a': 1}

    def burst(n=100):
        for _ in range(n):
            log.submit(record, directory, 1 << 20, 1 << 30)
        assert log.flush()

    burst()
    # One attempt: one directory creation, one record built, one error
    # logged without a traceback; the other 99 dropped without a syscall.
    assert len(makedirs_calls) == 1 and len(built) == 1
    assert drops.count('write_error') == 1
    assert drops.count('unavailable') == 99
    (first,) = errors_logged()
    assert first.levelno == logging.ERROR and not first.exc_info
    assert directory in first.getMessage()
    assert 'Not a directory' in first.getMessage() or \
        'File exists' in first.getMessage()

    clock.now += 10.0          # still backing off: not even tried
    burst()
    assert len(makedirs_calls) == 1 and drops.count('unavailable') == 199

    clock.now += 25.0          # past the retry interval: tried once more,
    burst()                    # its error suppressed (within 60 s)
    assert len(makedirs_calls) == 2 and drops.count('write_error') == 2
    assert len(errors_logged()) == 1

    clock.now += 35.0          # 70 s after the first error: logged again,
    burst()                    # with the count of the suppressed one
    assert len(makedirs_calls) == 3
    assert len(errors_logged()) == 2
    second = errors_logged()[1]
    assert not second.exc_info
    assert '(1 similar messages suppressed)' in second.getMessage()
    assert len(built) == 3


def test_directory_that_recovers_is_written_again(tmp_path):
    blocker = tmp_path / 'log'
    blocker.write_text('in the way')
    directory = str(blocker)
    clock = Clock()
    drops = []
    log = decision_log.DecisionLog(on_drop=drops.append, clock=clock)
    assert log.submit(lambda: {'n': 1}, directory, 1 << 20, 1 << 30)
    assert log.flush()
    assert drops == ['write_error']
    assert not log.submit(lambda: {'n': 2}, directory, 1 << 20, 1 << 30)
    blocker.unlink()           # the operator fixes it
    clock.now += decision_log.RETRY_INTERVAL_S
    assert log.submit(lambda: {'n': 3}, directory, 1 << 20, 1 << 30)
    assert log.flush()
    with open(own_file(directory)) as f:
        assert [json.loads(line)['n'] for line in f] == [3]
    log.close()


def test_symlink_or_fifo_under_our_name_is_refused(tmp_path):
    directory = tmp_path / 'log'
    directory.mkdir()
    victim = tmp_path / 'victim'
    victim.write_text('precious\n')
    os.symlink(victim, own_file(str(directory)))
    drops = []
    log = decision_log.DecisionLog(on_drop=drops.append, clock=Clock())
    log.submit(lambda: {'x': 1}, str(directory), 1 << 20, 1 << 30)
    assert log.flush()
    assert drops == ['write_error']
    assert victim.read_text() == 'precious\n'

    os.unlink(own_file(str(directory)))
    os.mkfifo(own_file(str(directory)))     # opening must not block
    log2 = decision_log.DecisionLog(on_drop=drops.append, clock=Clock())
    log2.submit(lambda: {'x': 1}, str(directory), 1 << 20, 1 << 30)
    assert log2.flush(10)
    assert drops == ['write_error', 'write_error']


def test_a_failed_write_leaves_only_whole_lines(tmp_path, monkeypatch):
    directory = str(tmp_path / 'log')
    log = decision_log.DecisionLog(clock=Clock())
    assert log.submit(lambda: {'n': 1}, directory, 1 << 20, 1 << 30)
    assert log.flush()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(decision_log.os, 'write', half_then_full)
    log.submit(lambda: {'n': 2, 'pad': 'y' * 100}, directory, 1 << 20,
               1 << 30)
    assert log.flush()
    monkeypatch.setattr(decision_log.os, 'write', real_write)
    with open(own_file(directory)) as f:
        assert [json.loads(line)['n'] for line in f] == [1]
    log.close()


def test_a_file_deleted_under_the_writer_is_recreated(tmp_path,
                                                      monkeypatch):
    monkeypatch.setattr(decision_log, 'PRUNE_INTERVAL_S', 0.0)
    directory = str(tmp_path)
    log = decision_log.DecisionLog(clock=Clock())
    assert log.submit(lambda: {'n': 1}, directory, 1 << 20, 1 << 30)
    assert log.flush()
    os.unlink(own_file(directory))
    assert log.submit(lambda: {'n': 2}, directory, 1 << 20, 1 << 30)
    assert log.submit(lambda: {'n': 3}, directory, 1 << 20, 1 << 30)
    assert log.flush()
    log.close()
    with open(own_file(directory)) as f:
        assert [json.loads(line)['n'] for line in f] == [2, 3]


# -- the disk budget over every file ----------------------------------------

def test_files_of_dead_processes_are_pruned_within_the_budget(tmp_path):
    directory = str(tmp_path / 'log')
    os.makedirs(directory)
    dead = dead_pid()
    live = os.getppid()        # a running process other than this one
    kib = 1024
    # 2.5 MiB left behind by a dead scheduler: its current file is the
    # oldest, then four rotated ones.
    dead_current = make_file(directory, f'decisions-{HOST}-{dead}.jsonl',
                             512 * kib, age_s=12 * 3600)
    dead_rotated = [make_file(directory,
                              f'decisions-{HOST}-{dead}.2026010{i}T000000'
                              '.jsonl', 512 * kib, age_s=(10 - i) * 3600)
                    for i in range(4)]
    # The current file of a running process is older than all of them.
    live_current = make_file(directory, f'decisions-{HOST}-{live}.jsonl',
                             300 * kib, age_s=20 * 3600)
    unrelated = make_file(directory, 'notes.txt', 100 * kib, age_s=99 * DAY)
    budget = 2048 * kib
    assert total_size(directory) > budget
    log = decision_log.DecisionLog(clock=Clock())
    for i in range(10):
        assert log.submit(lambda: {'i': i}, directory, 256 * kib, budget)
    assert log.flush()
    log.close()
    names = log_files(directory)
    # Oldest first, until the current file has room to grow to its
    # rotation size within the budget.
    assert names == sorted([os.path.basename(p) for p in (
        dead_rotated[2], dead_rotated[3], live_current, own_file(directory))])
    assert not os.path.exists(dead_current)
    assert total_size(directory) + 256 * kib <= budget
    assert os.path.exists(unrelated)

    # Writing on until several rotations: never above the budget.
    log = decision_log.DecisionLog(clock=Clock())
    pad = 'z' * 2000
    for i in range(1500):
        log.submit(lambda: {'i': i, 'pad': pad}, directory, 256 * kib,
                   budget)
        if i % 100 == 0:
            assert log.flush()
            assert total_size(directory) <= budget + 4096
    assert log.flush()
    log.close()
    assert total_size(directory) <= budget + 4096
    assert os.path.basename(live_current) in log_files(directory)


def test_prune_keeps_live_and_foreign_current_files(tmp_path):
    directory = str(tmp_path)
    dead = dead_pid()
    files = {
        'dead': make_file(directory, f'decisions-{HOST}-{dead}.jsonl', 3000,
                          age_s=50),
        'rotated_gz': make_file(directory,
                                f'decisions-{HOST}-{os.getpid()}'
                                '.20260101T000000.jsonl.gz', 3000, age_s=40),
        'live': make_file(directory, f'decisions-{HOST}-{os.getppid()}.jsonl',
                          3000, age_s=100),
        'foreign': make_file(directory, 'decisions-other.example.org-7.jsonl',
                             3000, age_s=100),
        'pid0': make_file(directory, f'decisions-{HOST}-0.jsonl', 3000,
                          age_s=30),
    }
    link = f'decisions-{HOST}-1.20260101T000000.jsonl'
    os.symlink(files['live'], os.path.join(directory, link))
    used = decision_log.prune(directory, 0)
    left = set(log_files(directory))
    assert {os.path.basename(files[k]) for k in ('live', 'foreign')} <= left
    assert not {os.path.basename(files[k])
                for k in ('dead', 'rotated_gz', 'pid0')} & left
    assert link in left       # not a file of ours: neither counted nor
    assert used == 6000       # deleted, nor followed


def test_files_older_than_the_age_limit_are_deleted(tmp_path):
    directory = str(tmp_path)
    old = make_file(directory, f'decisions-{HOST}-{os.getpid()}'
                    '.20250101T000000.jsonl', 300, age_s=40 * DAY)
    old_dead = make_file(directory, f'decisions-{HOST}-{dead_pid()}.jsonl',
                         300, age_s=31 * DAY)
    recent = make_file(directory, f'decisions-{HOST}-{os.getpid()}'
                       '.20260101T000000.jsonl', 300, age_s=29 * DAY)
    old_live = make_file(directory, f'decisions-{HOST}-{os.getppid()}.jsonl',
                         300, age_s=60 * DAY)
    # 0 disables the age limit.
    decision_log.prune(directory, 1 << 30, max_age_s=0)
    assert len(log_files(directory)) == 4
    decision_log.prune(directory, 1 << 30, max_age_s=30 * DAY)
    assert set(log_files(directory)) == {os.path.basename(recent),
                                         os.path.basename(old_live)}
    assert not os.path.exists(old) and not os.path.exists(old_dead)


def test_the_writer_applies_the_configured_age_limit(tmp_path):
    directory = str(tmp_path)
    old = make_file(directory, f'decisions-{HOST}-{dead_pid()}.jsonl', 300,
                    age_s=3 * DAY)
    log = decision_log.DecisionLog(clock=Clock())
    log.configure(max_age_s=2 * DAY)
    log.submit(lambda: {}, directory, 1 << 20, 1 << 30)
    assert log.flush()
    log.close()
    assert not os.path.exists(old)


# -- the queue's byte budget ------------------------------------------------

def blocked_log(**kw):
    """A log whose writer is stuck in a record until ``release`` is set."""
    release = threading.Event()
    started = threading.Event()

    def stuck():
        started.set()
        release.wait(30)
        return {'stuck': True}
    log = decision_log.DecisionLog(**kw)
    return log, stuck, started, release


def test_queue_is_bounded_in_bytes(tmp_path):
    drops = []
    log, stuck, started, release = blocked_log(
        on_drop=drops.append, queue_bytes=10_000, clock=Clock())
    directory = str(tmp_path)
    assert log.submit(stuck, directory, 1 << 20, 1 << 30, size_hint=0)
    assert started.wait(30)
    results = [log.submit(lambda: {'r': 1}, directory, 1 << 20, 1 << 30,
                          size_hint=4000) for _ in range(4)]
    assert results == [True, True, False, False]
    assert drops == ['queue_bytes', 'queue_bytes']
    assert log.queued_bytes() == 8000
    release.set()
    assert log.flush()
    assert log.queued_bytes() == 0
    assert log.submit(lambda: {'r': 2}, directory, 1 << 20, 1 << 30,
                      size_hint=4000)
    assert log.flush()
    log.close()
    with open(own_file(directory)) as f:
        assert len(f.readlines()) == 4       # stuck, two, and the last


def test_queue_size_still_bounds_the_count(tmp_path):
    drops = []
    log, stuck, started, release = blocked_log(on_drop=drops.append,
                                               clock=Clock())
    assert log.submit(stuck, str(tmp_path), 1 << 20, 1 << 30, queue_size=2)
    assert started.wait(30)
    results = [log.submit(lambda: {}, str(tmp_path), 1 << 20, 1 << 30,
                          queue_size=2) for _ in range(4)]
    release.set()
    assert log.flush()
    assert results == [True, True, False, False]
    assert drops == ['queue_full', 'queue_full']
    assert log.queued_bytes() == 0


def test_record_size_is_estimated_from_what_it_holds():
    n = 20_000
    x = np.zeros((n, 24))
    names = [f'compute-{i:05d}' for i in range(n)]
    weights = [0.0] * n

    def make_record():
        return {'x': x.tolist(), 'names': names, 'weights': weights}
    size = decision_log.estimate_bytes(make_record)
    assert size >= x.nbytes + n * 8 * 2
    assert size < 2 * (x.nbytes + n * 150)
    assert decision_log.estimate_bytes(lambda: {}) == \
        decision_log.RECORD_OVERHEAD_BYTES


def test_large_records_are_dropped_counted_and_reported_once(
        tmp_path, errors_logged):
    drops = []
    log = decision_log.DecisionLog(on_drop=drops.append, clock=Clock(),
                                   queue_bytes=1_000_000)
    x = np.zeros((10_000, 24))          # 1.9 MB held by the record

    def make_record():
        return {'n': len(x)}
    for _ in range(3):
        assert not log.submit(make_record, str(tmp_path), 1 << 20, 1 << 30)
    assert drops == ['queue_bytes'] * 3
    (warning,) = errors_logged()
    assert 'decision_log_queue_mb' in warning.getMessage()
    assert log_files(str(tmp_path)) == []


def test_scorer_counts_byte_budget_drops(tmp_path):
    from nova_rl_weigher import features
    from nova_rl_weigher import scorer as scorer_mod
    from tests import fixtures as testing
    policy = testing.make_linear_policy(str(tmp_path / 'p'),
                                        {'log_vcpus_total': -1.0})
    hosts = [features.HostView(
        name=f'h{i}', vcpus_total=8, vcpus_used=1, ram_total_mb=8192,
        ram_free_mb=4096, disk_total_gb=100, disk_free_mb=90000,
        nova_weight=float(i)) for i in range(50)]
    req = features.RequestView(vcpus=1, memory_mb=512, disk_gb=1,
                               project_id='p', instance_uuid='u',
                               flavor_name='f')
    s = scorer_mod.Scorer()
    s.decisions.configure(queue_bytes=decision_log.RECORD_OVERHEAD_BYTES)
    st = scorer_mod.Settings(mode='gated', policy_path=policy,
                             latency_budget_ms=1e6,
                             decision_log_dir=str(tmp_path / 'log'))
    out = s.weigh_views(hosts, req, st)
    assert out.applied       # dropping a record never changes the call
    assert s.stats['decision_log_dropped.queue_bytes'] == 1
    s.close()


# -- the rate limit itself --------------------------------------------------

class Recorder:
    def __init__(self):
        self.lines = []

    def log(self, level, msg, *args, exc_info=False):
        self.lines.append((level, msg % args if args else msg, exc_info))


def test_rate_limited_log_once_per_interval_per_kind():
    clock = Clock(0.0)
    rec = Recorder()
    rl = ratelimit.RateLimitedLog(60.0, logger=rec, clock=clock)
    assert rl.error('a', 'boom %s', 1)
    assert not rl.error('a', 'boom %s', 2)
    assert not rl.error('a', 'boom %s', 3)
    assert rl.warning('b', 'other')
    assert rl.suppressed('a') == 2
    clock.now = 61.0
    assert rl.error('a', 'boom %s', 4)
    assert rec.lines == [
        (logging.ERROR, 'boom 1', False),
        (logging.WARNING, 'other', False),
        (logging.ERROR, 'boom 4 (2 similar messages suppressed)', False)]


def test_rate_limited_log_bounds_the_kinds_it_remembers():
    clock = Clock(0.0)
    rec = Recorder()
    rl = ratelimit.RateLimitedLog(60.0, logger=rec, clock=clock, max_kinds=3)
    for i in range(10):
        rl.warning(f'k{i}', 'value %s', i)
    # Three kinds logged, then one shared entry for the rest.
    assert [line[1] for line in rec.lines] == [
        'value 0', 'value 1', 'value 2', 'value 3']
    assert len(rl._last) <= 4
    clock.now = 120.0       # old kinds are forgotten to make room
    assert rl.warning('new', 'fresh')
    assert rec.lines[-1][1] == 'fresh'


def test_scorer_uses_the_shared_rate_limited_log():
    from nova_rl_weigher import scorer as scorer_mod
    assert scorer_mod.RateLimitedLog is ratelimit.RateLimitedLog
    assert isinstance(scorer_mod.Scorer().errors, ratelimit.RateLimitedLog)
