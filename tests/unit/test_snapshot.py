"""The usage snapshot reader never blocks, never stalls, never trusts.

Hangs are guarded by a thread join with a timeout (never by sleeping): a
call that does not return within ``GUARD_S`` fails the test.
"""

import json
import os
import threading
import time

import pytest

from nova_rl_weigher import features
from nova_rl_weigher import fileio
from nova_rl_weigher import gate
from nova_rl_weigher import scorer as scorer_mod
from nova_rl_weigher import snapshot
from tests import fixtures as testing

GUARD_S = 2.0
HOST = {'cpu_util_mean': 0.1, 'cpu_util_p95': 0.2, 'mem_util_mean': 0.3,
        'mem_util_p95': 0.4}


def call_with_guard(fn, *args, unblock=None):
    """``fn(*args)`` in a thread; fail if it has not returned in GUARD_S.

    ``unblock`` is called if it hangs, so a broken reader stuck on a FIFO
    is released and the test leaves no thread behind.
    """
    result, error = [], []

    def run():
        try:
            result.append(fn(*args))
        except BaseException as e:  # noqa: BLE001 - reported below
            error.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(GUARD_S)
    hung = t.is_alive()
    if hung and unblock is not None:
        unblock()
        t.join(GUARD_S)
    assert not hung, f'{fn} did not return within {GUARD_S} s'
    if error:
        raise error[0]
    return result[0]


def open_fifo_writer(path):
    """Release a reader blocked opening the FIFO at ``path``."""
    def unblock():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    return unblock


def settle(path):
    """Date the file 10 s back: a version written "just now" is re-read
    (racy, see fileio.is_racy); the parse-count tests need a settled one."""
    t = time.time() - 10
    os.utime(path, (t, t))


def write_text(path, text):
    with open(path, 'w') as f:
        f.write(text)
    settle(path)


@pytest.fixture
def count_parses(monkeypatch):
    calls = []
    real = json.loads

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(snapshot.json, 'loads', counting)
    return calls


# -- FIFO, device, directory: unavailable with a reason, never a hang -------

@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs mkfifo')
def test_fifo_at_snapshot_path_is_unavailable_without_blocking(tmp_path):
    path = str(tmp_path / 'usage.json')
    os.mkfifo(path)
    cache = snapshot.SnapshotCache()
    lookup, status, detail = call_with_guard(
        cache.get, path, 600, time.time(), unblock=open_fifo_writer(path))
    assert status == snapshot.UNAVAILABLE
    assert 'FIFO' in detail and path in detail
    assert lookup is features.NO_USAGE


@pytest.mark.skipif(not hasattr(os, 'mkfifo'), reason='needs mkfifo')
def test_scorer_abstains_on_a_fifo_snapshot_without_blocking(tmp_path):
    policy = testing.make_linear_policy(str(tmp_path / 'p'),
                                        {'log_vcpus_total': -1.0})
    path = str(tmp_path / 'usage.json')
    os.mkfifo(path)
    s = scorer_mod.Scorer()
    st = scorer_mod.Settings(mode='gated', policy_path=policy,
                             usage_snapshot_path=path,
                             latency_budget_ms=1000.0)
    hosts, request, _ = testing.random_candidates(
        __import__('numpy').random.default_rng(0), 4)
    out = call_with_guard(s.weigh_views, hosts, request, st,
                          unblock=open_fifo_writer(path))
    assert out.reason == gate.SNAPSHOT_UNAVAILABLE
    assert s.stats.get('errors', 0) == 0


@pytest.mark.parametrize('kind', ['directory', 'device', 'symlink_out'])
def test_non_files_are_unavailable_with_a_reason(tmp_path, kind):
    path = str(tmp_path / 'usage.json')
    if kind == 'directory':
        os.mkdir(path)
        expected = 'directory'
    elif kind == 'device':
        if not os.path.exists('/dev/zero'):
            pytest.skip('needs /dev/zero')
        os.symlink('/dev/zero', path)
        expected = 'outside'
    else:
        outside = tmp_path / 'elsewhere'
        outside.mkdir()
        snapshot.write(str(outside / 'real.json'), time.time(), {}, {})
        os.mkdir(tmp_path / 'conf')
        path = str(tmp_path / 'conf' / 'usage.json')
        os.symlink(str(outside / 'real.json'), path)
        expected = 'outside'
    cache = snapshot.SnapshotCache()
    _, status, detail = call_with_guard(cache.get, path, 600, time.time())
    assert status == snapshot.UNAVAILABLE and expected in detail


def test_device_refused_even_when_allowed_outside(tmp_path):
    if not os.path.exists('/dev/zero'):
        pytest.skip('needs /dev/zero')
    with pytest.raises(fileio.FileRefused, match='character device'):
        call_with_guard(lambda: fileio.read_bounded(
            '/dev/zero', 100, allow_outside=True))


def test_symlink_inside_the_directory_is_followed(tmp_path):
    real = str(tmp_path / 'usage-1.json')
    snapshot.write(real, time.time(), {'h': HOST}, {})
    path = str(tmp_path / 'usage.json')
    os.symlink('usage-1.json', path)
    lookup, status, _ = snapshot.SnapshotCache().get(path, 600, time.time())
    assert status == snapshot.FRESH and 'h' in lookup.hosts


# -- valid JSON, wrong shape: SnapshotError, parsed once per file version ---

BIG = '1' + '0' * 399        # a 400-digit integer

WRONG_SHAPES = {
    'hosts_string': '{"generated_at": 1, "hosts": "x"}',
    'hosts_list': '{"generated_at": 1, "hosts": [1, 2]}',
    'projects_list': '{"generated_at": 1, "projects": [1]}',
    'project_entry_list': '{"generated_at": 1, "projects": {"p": [1]}}',
    'host_entry_number': '{"generated_at": 1, "hosts": {"h": 3}}',
    'huge_int_value': '{"generated_at": 1, "projects": {"p": {"cpu_ratio": '
                      + BIG + '}}}',
    'huge_int_generated_at': '{"generated_at": ' + BIG + '}',
    'huge_float': '{"generated_at": 1e999}',
    'nan': '{"generated_at": NaN}',
    'deep_nesting': '{"generated_at": 1, "hosts": ' + '[' * 100000
                    + ']' * 100000 + '}',
    'deep_in_entry': '{"generated_at": 1, "hosts": {"h": {"cpu_util_mean": '
                     + '[' * 50 + ']' * 50 + ', "cpu_util_p95": 0, '
                     '"mem_util_mean": 0, "mem_util_p95": 0}}}',
    'format_version_true': '{"format_version": true, "generated_at": 1}',
    'long_timestamp': '{"generated_at": "' + '2' * 10000 + '"}',
    'top_level_list': '[1, 2, 3]',
    'not_utf8': b'{"generated_at": "\xff"}',
    'truncated': '{"generated_at": 1, "hosts": {',
    'digits_over_python_limit': '{"generated_at": ' + '9' * 5000 + '}',
}


@pytest.mark.parametrize('name', sorted(WRONG_SHAPES))
def test_wrong_shape_is_a_snapshot_error(tmp_path, name):
    body = WRONG_SHAPES[name]
    path = tmp_path / 'usage.json'
    path.write_bytes(body if isinstance(body, bytes) else body.encode())
    with pytest.raises(snapshot.SnapshotError):
        snapshot.load(str(path))


@pytest.mark.parametrize('name', sorted(WRONG_SHAPES))
def test_wrong_shape_is_parsed_once_per_file_version(tmp_path, count_parses,
                                                     name):
    body = WRONG_SHAPES[name]
    path = str(tmp_path / 'usage.json')
    with open(path, 'wb') as f:
        f.write(body if isinstance(body, bytes) else body.encode())
    settle(path)
    cache = snapshot.SnapshotCache()
    details = set()
    for _ in range(20):
        lookup, status, detail = cache.get(path, 600, time.time())
        assert status == snapshot.UNAVAILABLE
        assert lookup is features.NO_USAGE
        details.add(detail)
    # Parsed once (or refused before parsing), reported with its reason.
    assert len(count_parses) <= 1
    assert len(details) == 1
    (detail,) = details
    assert detail.startswith(path) and len(detail) < 400


def test_a_new_version_after_a_failure_is_read(tmp_path, count_parses):
    path = str(tmp_path / 'usage.json')
    write_text(path, '{"generated_at": 1, "hosts": "x"}')
    cache = snapshot.SnapshotCache()
    assert cache.get(path, 600, time.time())[1] == snapshot.UNAVAILABLE
    snapshot.write(path, time.time(), {'h': HOST}, {})
    settle(path)
    for _ in range(5):
        lookup, status, _ = cache.get(path, 600, time.time())
        assert status == snapshot.FRESH and 'h' in lookup.hosts
    assert len(count_parses) == 2


def test_racy_version_is_read_again(tmp_path):
    """A file rewritten in place within one timestamp tick keeps its
    (inode, size, mtime): a version that young is re-read, not trusted."""
    path = str(tmp_path / 'usage.json')
    a = json.dumps({'generated_at': time.time(), 'hosts': {'a': HOST}})
    b = a.replace('"a"', '"b"')
    with open(path, 'w') as f:
        f.write(a)
    st = os.stat(path)
    cache = snapshot.SnapshotCache()
    assert 'a' in cache.get(path, 600, time.time())[0].hosts
    with open(path, 'r+') as f:
        f.write(b)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fileio.version_of(path) == fileio.version_of_stat(st)
    assert 'b' in cache.get(path, 600, time.time())[0].hosts


# -- sizes --------------------------------------------------------------------

def test_cap_is_modest_and_oversize_is_refused_before_reading(
        tmp_path, count_parses):
    assert snapshot.MAX_SNAPSHOT_BYTES <= 64 * 1024 * 1024
    path = str(tmp_path / 'usage.json')
    with open(path, 'wb') as f:      # sparse: no data is written or read
        f.truncate(snapshot.MAX_SNAPSHOT_BYTES + 1)
    _, status, detail = snapshot.SnapshotCache().get(path, 600, time.time())
    assert status == snapshot.UNAVAILABLE
    assert f'more than the {snapshot.MAX_SNAPSHOT_BYTES} bytes' in detail
    assert count_parses == []


def test_ten_thousand_hosts_and_projects_fit_well_under_the_cap(tmp_path):
    path = str(tmp_path / 'usage.json')
    hosts = {f'compute-{i:05d}.example.org': HOST for i in range(10000)}
    projects = {f'{i:032x}': {'cpu_ratio': 0.123456} for i in range(10000)}
    snapshot.write(path, time.time(), hosts, projects)
    assert os.path.getsize(path) * 8 < snapshot.MAX_SNAPSHOT_BYTES
    lookup, status, _ = snapshot.SnapshotCache().get(path, 600, time.time())
    assert status == snapshot.FRESH and len(lookup.hosts) == 10000


# -- nobody waits for a parse ---------------------------------------------

def test_calls_during_a_parse_do_not_wait(tmp_path, monkeypatch):
    path = str(tmp_path / 'usage.json')
    snapshot.write(path, time.time(), {'old': HOST}, {})
    cache = snapshot.SnapshotCache()
    assert 'old' in cache.get(path, 600, time.time())[0].hosts
    snapshot.write(path, time.time(), {'new': HOST}, {})

    entered, release = threading.Event(), threading.Event()
    real = snapshot._load

    def slow_load(p):
        entered.set()
        assert release.wait(GUARD_S * 5)
        return real(p)
    monkeypatch.setattr(snapshot, '_load', slow_load)
    parser = threading.Thread(target=cache.get,
                              args=(path, 600, time.time()), daemon=True)
    parser.start()
    try:
        assert entered.wait(GUARD_S)
        # Another scheduling thread: previous result, immediately.
        lookup, status, _ = call_with_guard(cache.get, path, 600,
                                            time.time())
        assert status == snapshot.FRESH and 'old' in lookup.hosts
        # A cache with nothing yet: unavailable, immediately.
        empty = snapshot.SnapshotCache()
        empty._lock.acquire()
        try:
            _, status, detail = call_with_guard(empty.get, path, 600,
                                                time.time())
        finally:
            empty._lock.release()
        assert status == snapshot.UNAVAILABLE and 'being read' in detail
    finally:
        release.set()
        parser.join(GUARD_S)
    assert not parser.is_alive()
    assert 'new' in cache.get(path, 600, time.time())[0].hosts


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = str(tmp_path / 'usage.json')
    snapshot.write(path, time.time(), {'h': HOST}, {'p': {'cpu_ratio': 0.5}})
    snapshot.write(path, time.time(), {}, {})
    assert os.listdir(tmp_path) == ['usage.json']
    assert os.stat(path).st_mode & 0o044


# -- format version 2 ---------------------------------------------------

V2_DOC = {
    'format_version': 2, 'generated_at': 1764000000.0,
    'hosts': {
        'c1': {'cpu_util_mean': 0.1, 'cpu_util_p95': 0.2,
               'mem_util_mean': 0.3, 'mem_util_p95': 0.4,
               'vcpus_allocated': 24, 'ram_mb_allocated': 49152,
               'cpu_util_peak_24h': 0.8, 'mem_util_peak_24h': 0.7},
        # Partial v2 groups are absent, like a partial usage group.
        'c2': {'vcpus_allocated': 3, 'cpu_util_peak_24h': 0.5},
    },
    'projects': {
        'p1': {'cpu_ratio': 0.4, 'cpu_ratio_peak_24h': 0.9,
               'lifetime': {'median_s': 3600, 'p90_s': 86400, 'count': 12},
               'recent_lifetime': {'median_s': 60, 'p90_s': 90,
                                   'count': 4},
               'flavors': {'m1.small': {'lifetime': {
                   'median_s': 600, 'p90_s': 900, 'count': 3}}}},
    },
    'flavors': {'m1.small': {'lifetime': {'median_s': 100, 'p90_s': 200,
                                          'count': 50}}},
}


def test_version_2_fields_are_read():
    _, lookup = snapshot.parse(V2_DOC)
    assert lookup.host_alloc == {'c1': (24.0, 49152.0)}
    assert lookup.host_peaks == {'c1': (0.8, 0.7)}
    assert lookup.project_peak_ratio == {'p1': 0.9}
    lt = lookup.lifetimes
    assert lt.project['p1'] == features.Lifetime(3600, 86400, 12)
    assert lt.recent['p1'] == features.Lifetime(60, 90, 4)
    assert lt.project_flavor[('p1', 'm1.small')].median_s == 600
    assert lt.flavor['m1.small'].p90_s == 200
    assert lookup.request_signals(features.RequestView(
        1, 512, project_id='p1', flavor_name='m1.small')) == \
        features.RequestSignals(features.Lifetime(60, 90, 4), 0.9)


def test_version_1_still_reads_and_has_no_v2_signals():
    doc = {'format_version': 1, 'generated_at': 1.0,
           'hosts': {'c1': {'cpu_util_mean': 0.1, 'cpu_util_p95': 0.2,
                            'mem_util_mean': 0.3, 'mem_util_p95': 0.4}},
           'projects': {'p1': {'cpu_ratio': 0.5}}}
    _, lookup = snapshot.parse(doc)
    assert set(lookup.hosts) == {'c1'} and lookup.project_cpu_ratio == {
        'p1': 0.5}
    assert not lookup.host_alloc and not lookup.host_peaks
    assert lookup.lifetimes.for_request('p1', '') is None
    with pytest.raises(snapshot.SnapshotError, match='format_version 3'):
        snapshot.parse(dict(doc, format_version=3))


def _with(path, value):
    doc = json.loads(json.dumps(V2_DOC))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize('path,value,message', [
    (('hosts', 'c1', 'vcpus_allocated'), -1, 'vcpus_allocated'),
    (('hosts', 'c1', 'cpu_util_peak_24h'), 'x', 'cpu_util_peak_24h'),
    (('hosts', 'c1', 'mem_util_peak_24h'), 1e400, 'mem_util_peak_24h'),
    (('projects', 'p1', 'cpu_ratio_peak_24h'), True, 'cpu_ratio_peak_24h'),
    (('projects', 'p1', 'lifetime'), [1, 2], 'lifetime'),
    (('projects', 'p1', 'lifetime'), {'median_s': 1}, 'needs'),
    (('projects', 'p1', 'lifetime'), {'median_s': 9, 'p90_s': 1,
                                      'count': 1}, 'above'),
    (('projects', 'p1', 'recent_lifetime'), {'median_s': 1, 'p90_s': 1,
                                             'count': 0}, 'below 1'),
    (('projects', 'p1', 'lifetime', 'count'), float('nan'), 'count'),
    (('projects', 'p1', 'flavors'), 'x', 'flavors'),
    (('projects', 'p1', 'flavors', 'm1.small'), 7, 'm1.small'),
    (('flavors',), [1], 'flavors'),
    (('flavors', 'm1.small', 'lifetime', 'p90_s'), -5, 'p90_s'),
])
def test_hostile_version_2_fields_are_snapshot_errors(path, value, message):
    with pytest.raises(snapshot.SnapshotError, match=message):
        snapshot.parse(_with(path, value))


def test_write_version_2_round_trips(tmp_path):
    path = str(tmp_path / 'snap.json')
    snapshot.write(path, 5.0, V2_DOC['hosts'], V2_DOC['projects'],
                   V2_DOC['flavors'])
    with open(path) as f:
        doc = json.load(f)
    assert doc['format_version'] == 2 and doc['flavors'] == V2_DOC['flavors']
    _, lookup = snapshot.load(path)
    assert lookup.lifetimes.flavor['m1.small'].count == 50
