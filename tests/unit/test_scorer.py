import glob
import json
import os
import time

import pytest

from nova_rl_weigher import artifact
from nova_rl_weigher import decision_log
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import policy as policy_mod
from nova_rl_weigher import scorer as scorer_mod
from nova_rl_weigher import snapshot
from tests import fixtures as testing


def hosts():
    # Small, medium, large; Nova's spread weighers favour the large one.
    out = []
    for i, (v, ram) in enumerate([(4, 8192), (8, 16384), (16, 32768)]):
        out.append(features.HostView(
            name=f'host{i}', vcpus_total=v, vcpus_used=1, ram_total_mb=ram,
            ram_free_mb=ram - 1024, disk_total_gb=100, disk_free_mb=90000,
            nova_weight=float(i)))
    return out


REQ = features.RequestView(vcpus=1, memory_mb=512, disk_gb=1,
                           project_id='p1', instance_uuid='uuid-1',
                           flavor_name='m1.tiny')


@pytest.fixture
def small_first(tmp_path):
    return testing.make_linear_policy(str(tmp_path / 'small'),
                                      {'log_vcpus_total': -1.0},
                                      policy_version='small-first')


def settings(policy_path, **kw):
    base = dict(mode='gated', policy_path=policy_path,
                policy_check_interval_s=0.0, latency_budget_ms=1000.0)
    base.update(kw)
    return scorer_mod.Settings(**base)


def test_gated_confident_policy_is_applied(small_first):
    s = scorer_mod.Scorer()
    out = s.weigh_views(hosts(), REQ, settings(small_first))
    assert out.applied and out.reason == gate.APPLIED
    assert out.confidence == 1.0
    assert out.weights == [1.0, pytest.approx(0.5), 0.0]
    assert s.stats['applied'] == 1


@pytest.mark.parametrize('kw, reason', [
    (dict(mode='shadow'), gate.MODE_SHADOW),
    (dict(confidence_threshold=1.0, policy_path='DISAGREE'),
     gate.LOW_CONFIDENCE),
    (dict(latency_budget_ms=0.0), gate.OVER_LATENCY_BUDGET),
    (dict(canary_percent=0.0), gate.OUTSIDE_CANARY),
    (dict(policy_path='/nonexistent'), gate.POLICY_UNAVAILABLE),
    (dict(usage_snapshot_path='/nonexistent.json'),
     gate.SNAPSHOT_UNAVAILABLE),
])
def test_abstains_with_zero_weights(small_first, tmp_path, kw, reason):
    if kw.get('policy_path') == 'DISAGREE':
        kw['policy_path'] = testing.make_linear_policy(
            str(tmp_path / 'd'), {'log_vcpus_total': 1.0}, ensemble_size=4,
            agreement=False)
    s = scorer_mod.Scorer()
    out = s.weigh_views(hosts(), REQ,
                        settings(kw.pop('policy_path', small_first), **kw))
    assert not out.applied
    assert out.reason == reason
    assert out.weights == [0.0, 0.0, 0.0]
    assert s.stats[f'abstained.{reason}'] == 1


def test_mode_off_does_nothing(small_first, tmp_path):
    s = scorer_mod.Scorer()
    out = s.weigh_views(hosts(), REQ, settings(
        small_first, mode='off', decision_log_dir=str(tmp_path / 'log')))
    assert out.weights == [0.0] * 3 and out.reason == 'mode_off'
    assert s.stats == {}
    assert not os.path.exists(tmp_path / 'log')


def test_canary_is_a_stable_share():
    picked = [gate.in_canary(f'uuid-{i}', 25.0) for i in range(4000)]
    assert 0.22 < sum(picked) / 4000 < 0.28
    assert picked == [gate.in_canary(f'uuid-{i}', 25.0)
                      for i in range(4000)]


def test_a_policy_that_raises_is_contained(small_first, monkeypatch):
    def boom(self, x):
        raise RuntimeError('kaboom')
    monkeypatch.setattr(policy_mod.Policy, 'score', boom)
    s = scorer_mod.Scorer()
    out = s.weigh_views(hosts(), REQ, settings(small_first))
    assert not out.applied and out.reason == gate.ERROR
    assert out.weights == [0.0] * 3
    assert s.stats['errors'] == 1


def test_nothing_escapes_even_for_garbage_input(small_first):
    s = scorer_mod.Scorer()
    out = s.weigh_views([object()], REQ, settings(small_first))
    assert out.weights == [0.0] and out.reason == gate.ERROR


def test_stale_and_fresh_snapshot(small_first, tmp_path):
    path = str(tmp_path / 'usage.json')
    snapshot.write(path, time.time() - 3600, {'host0': {
        'cpu_util_mean': 0.1, 'cpu_util_p95': 0.2, 'mem_util_mean': 0.3,
        'mem_util_p95': 0.4}}, {'p1': {'cpu_ratio': 0.5}})
    s = scorer_mod.Scorer()
    st = settings(small_first, usage_snapshot_path=path,
                  snapshot_max_age_s=600)
    assert s.weigh_views(hosts(), REQ, st).reason == gate.SNAPSHOT_STALE
    snapshot.write(path, time.time(), {}, {})
    assert s.weigh_views(hosts(), REQ, st).reason == gate.APPLIED


def test_hot_reload_swaps_valid_and_keeps_old_on_invalid(small_first,
                                                         tmp_path):
    s = scorer_mod.Scorer()
    st = settings(small_first)
    assert s.weigh_views(hosts(), REQ, st).weights[0] == 1.0
    # A new valid artifact in place: the large host now wins.
    testing.make_linear_policy(small_first, {'log_vcpus_total': 1.0},
                               policy_version='large-first')
    out = s.weigh_views(hosts(), REQ, st)
    assert out.weights[2] == 1.0
    assert s.policies.get(small_first, 0).version == 'large-first'
    # A broken replacement: the previous policy stays in service.
    with open(os.path.join(small_first, 'weights.npz'), 'wb') as f:
        f.write(b'garbage')
    out = s.weigh_views(hosts(), REQ, st)
    assert out.applied and out.weights[2] == 1.0
    assert 'sha256' in s.policies.error


def test_switching_policy_path_to_a_broken_one_abstains(small_first,
                                                        tmp_path):
    s = scorer_mod.Scorer()
    assert s.weigh_views(hosts(), REQ, settings(small_first)).applied
    out = s.weigh_views(hosts(), REQ, settings(str(tmp_path / 'missing')))
    assert out.reason == gate.POLICY_UNAVAILABLE


def test_check_interval_limits_stat_calls(small_first, monkeypatch):
    calls = []
    real = artifact.artifact_signature
    monkeypatch.setattr(artifact, 'artifact_signature',
                        lambda p: calls.append(p) or real(p))
    s = scorer_mod.Scorer()
    for _ in range(5):
        s.weigh_views(hosts(), REQ,
                      settings(small_first, policy_check_interval_s=3600))
    assert len(calls) == 1


def read_log(directory):
    lines = []
    pattern = os.path.join(directory, 'decisions-*.jsonl')
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            lines.extend(json.loads(line) for line in f)
    return lines


def test_decision_log_records_the_call(small_first, tmp_path):
    log_dir = str(tmp_path / 'log')
    s = scorer_mod.Scorer()
    s.weigh_views(hosts(), REQ, settings(small_first, mode='shadow',
                                         decision_log_dir=log_dir))
    assert s.flush_decision_log()
    (rec,) = read_log(log_dir)
    assert rec['instance_uuid'] == 'uuid-1' and rec['project_id'] == 'p1'
    assert rec['flavor']['name'] == 'm1.tiny'
    assert rec['mode'] == 'shadow'
    assert rec['gate'] == {'outcome': 'abstained', 'reason': 'mode_shadow',
                           'verdict': 'applied', 'detail': ''}
    assert rec['policy_version'] == 'small-first'
    assert rec['feature_schema'] == features.SCHEMA_HASH
    assert [h['host'] for h in rec['hosts']] == ['host0', 'host1', 'host2']
    assert [h['nova_weight'] for h in rec['hosts']] == [0.0, 1.0, 2.0]
    assert len(rec['hosts'][0]['features']) == features.NUM_FEATURES
    assert rec['hosts'][0]['score'] > rec['hosts'][2]['score']
    assert rec['why'][0]['host'] == 'host0'
    assert rec['why'][0]['features'][0]['feature'] == 'log_vcpus_total'


def test_decision_log_rotates_within_its_disk_budget(tmp_path):
    directory = str(tmp_path / 'log')
    log = decision_log.DecisionLog()
    record = {'pad': 'x' * 1000}
    for _ in range(200):
        # 4 KiB files, 20 KiB in all.
        assert log.submit(lambda: record, directory, 4096, 20480)
        log.flush()
    files = glob.glob(os.path.join(directory, 'decisions-*.jsonl'))
    total = sum(os.path.getsize(f) for f in files)
    assert total <= 20480 + 4096
    assert len(files) >= 3
    lines = sum(1 for f in files for _ in open(f))
    assert 10 <= lines < 200    # oldest pruned, newest kept


def test_decision_log_never_blocks_when_full(tmp_path):
    drops = []
    log = decision_log.DecisionLog(on_drop=drops.append)
    import threading
    gate_ = threading.Event()

    def slow():
        gate_.wait(10)
        return {}
    results = [log.submit(slow, str(tmp_path), 1 << 20, 1 << 30,
                          queue_size=2) for _ in range(6)]
    gate_.set()
    log.flush()
    assert results.count(False) >= 3 and drops.count('queue_full') >= 3


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs fork')
def test_works_in_a_forked_child(small_first, tmp_path):
    log_dir = str(tmp_path / 'log')
    s = scorer_mod.Scorer()
    st = settings(small_first, decision_log_dir=log_dir)
    s.weigh_views(hosts(), REQ, st)          # thread started in the parent
    s.flush_decision_log()
    pid = os.fork()
    if pid == 0:   # child: must log through its own new thread
        code = 1
        try:
            out = s.weigh_views(hosts(), REQ, st)
            code = 0 if out.applied and s.flush_decision_log(10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(glob.glob(os.path.join(log_dir, 'decisions-*.jsonl'))) == 2
    assert len(read_log(log_dir)) == 2


def test_concurrent_calls_during_reloads(small_first):
    import concurrent.futures
    s = scorer_mod.Scorer()
    # Reloads under 8 threads on a loaded machine may outlast the default
    # latency budget; this test is about whole policies, not latency.
    st = settings(small_first, latency_budget_ms=60000.0)
    # A policy in service first: from then on a reload that reads a torn
    # artifact keeps it, so no call may abstain (the first load alone may
    # time out on a loaded machine, which would make the count timing).
    assert s.weigh_views(hosts(), REQ, st).applied

    def work(i):
        if i % 10 == 0:
            testing.make_linear_policy(
                small_first, {'log_vcpus_total': -1.0 if i % 20 else 1.0},
                policy_version=f'v{i}')
        return s.weigh_views(hosts(), REQ, st)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(work, range(200)))
    # Every call got a whole policy: one host at 1.0, one at 0.0.
    for out in outs:
        if out.applied:
            assert sorted(out.weights) == [0.0, pytest.approx(0.5), 1.0]
    assert [o.reason for o in outs if not o.applied] == []
    assert s.stats.get('errors', 0) == 0


def test_snapshot_parsing_errors_and_partial_entries(tmp_path):
    with pytest.raises(snapshot.SnapshotError, match='generated_at'):
        snapshot.parse({'hosts': {}})
    with pytest.raises(snapshot.SnapshotError, match='cpu_ratio'):
        snapshot.parse({'generated_at': 1, 'projects': {'p': {
            'cpu_ratio': 'lots'}}})
    ts, lookup = snapshot.parse({
        'generated_at': '2026-01-01T00:00:00Z',
        'hosts': {'a': {'cpu_util_mean': 0.1}},   # partial: skipped
        'projects': {'p': {'cpu_ratio': 0.25}}})
    assert ts == 1767225600.0 and lookup.hosts == {}
    assert lookup.project_cpu_ratio == {'p': 0.25}
    bad = tmp_path / 'bad.json'
    bad.write_text('{not json')
    cache = snapshot.SnapshotCache()
    assert cache.get(str(bad), 60, time.time())[1] == snapshot.UNAVAILABLE


def test_close_writes_pending_records_and_stops_the_thread(
        small_first, tmp_path):
    log_dir = str(tmp_path / 'log')
    s = scorer_mod.Scorer()
    st = settings(small_first, decision_log_dir=log_dir)
    for _ in range(3):
        s.weigh_views(hosts(), REQ, st)
    thread = s.decisions._thread
    s.close()
    assert not thread.is_alive()
    assert len(read_log(log_dir)) == 3
    s.weigh_views(hosts(), REQ, st)      # logging resumes on use
    assert s.flush_decision_log() and len(read_log(log_dir)) == 4


def test_threshold_comes_from_the_manifest_unless_configured(tmp_path):
    from nova_rl_weigher import artifact as art
    path = testing.make_linear_policy(
        str(tmp_path / 'd'), {'log_vcpus_total': 1.0}, ensemble_size=4,
        agreement=False)           # confidence 0.5
    s = scorer_mod.Scorer()
    # No calibration in the manifest: 0.8.
    assert s.weigh_views(hosts(), REQ, settings(path)).reason == \
        gate.LOW_CONFIDENCE
    # A calibrated threshold of 0.5 in the manifest: applied.
    manifest_path = os.path.join(path, 'manifest.json')
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest['calibration'] = {'confidence_threshold': 0.5}
    with open(manifest_path, 'w') as f:
        json.dump(manifest, f)
    assert art.load_artifact(path).manifest['calibration']
    assert s.weigh_views(hosts(), REQ, settings(path)).applied
    # The operator's setting wins over the manifest.
    assert s.weigh_views(hosts(), REQ, settings(
        path, confidence_threshold=0.9)).reason == gate.LOW_CONFIDENCE
