"""The decision log reader, on logs written by the real scorer and writer."""

import gzip
import json
import os
import socket

import pytest

from nova_rl_weigher import decision_records
from nova_rl_weigher import features
from nova_rl_weigher import gate
from nova_rl_weigher import scorer as scorer_mod
from tests import fixtures as testing

HOST = socket.gethostname()
#: Nova's weight favours h2, the largest.
HOSTS = testing.small_hosts(3)


def request(n):
    return features.RequestView(vcpus=1, memory_mb=512, disk_gb=1,
                                project_id='p1', instance_uuid=f'uuid-{n}',
                                flavor_name='m1.tiny')


@pytest.fixture
def logged(tmp_path):
    """A directory with three real records: applied, shadow, abstained."""
    policy = testing.make_linear_policy(str(tmp_path / 'policy'),
                                        {'log_vcpus_total': -1.0},
                                        policy_version='small-first')
    log_dir = str(tmp_path / 'log')
    s = scorer_mod.Scorer()
    common = dict(policy_path=policy, policy_check_interval_s=0.0,
                  latency_budget_ms=1000.0, decision_log_dir=log_dir)
    s.weigh_views(HOSTS, request(0), scorer_mod.Settings(mode='gated',
                                                         **common))
    s.weigh_views(HOSTS, request(1), scorer_mod.Settings(mode='shadow',
                                                         **common))
    s.weigh_views(HOSTS, request(2), scorer_mod.Settings(
        mode='gated', canary_percent=0.0, **common))
    assert s.flush_decision_log()
    s.close()
    return log_dir


def own_file(directory):
    return os.path.join(directory, f'decisions-{HOST}-{os.getpid()}.jsonl')


def test_reads_what_the_scorer_wrote(logged):
    stats = decision_records.ReadStats()
    records = list(decision_records.iter_records(logged, stats))
    assert [r.instance_uuid for r in records] == ['uuid-0', 'uuid-1',
                                                  'uuid-2']
    assert stats.files == 1 and stats.records == 3
    assert stats.skipped_lines == 0 and stats.refused == []
    applied, shadow, canary = records
    assert applied.applied and applied.reason == gate.APPLIED
    assert applied.mode == 'gated'
    assert applied.policy_version == 'small-first'
    assert applied.confidence == 1.0
    assert shadow.reason == gate.MODE_SHADOW and not shadow.applied
    assert shadow.verdict == gate.APPLIED
    assert canary.reason == gate.OUTSIDE_CANARY
    assert applied.feature_names == features.FEATURE_NAMES
    assert [h.host for h in applied.hosts] == ['h0', 'h1', 'h2']
    assert [h.nova_weight for h in applied.hosts] == pytest.approx(
        [0, 1 / 3, 2 / 3])
    assert len(applied.hosts[0].features) == features.NUM_FEATURES
    assert applied.hosts[0].weight == 1.0 and shadow.hosts[0].weight == 0.0
    # Nova prefers h2, the policy h0: they disagree.
    assert applied.nova_top == 2 and applied.policy_top == 0
    assert applied.agrees is False
    assert applied.latency_ms is not None and applied.latency_ms >= 0
    assert applied.why and applied.why[0]['host'] == 'h0'


def test_truncated_last_line_and_malformed_lines_are_counted(logged):
    path = own_file(logged)
    with open(path, 'ab') as f:
        f.write(b'not json\n[1, 2]\n{"no_time": 1}\n{"time": NaN}\n')
        f.write(b'{"time": 5, "gate": {"reas')      # mid-append
    stats = decision_records.ReadStats()
    records = decision_records.read_records(logged, stats)
    assert len(records) == 3
    assert stats.malformed == 4 and stats.truncated == 1
    assert stats.skipped_lines == 5


def test_every_process_and_rotated_file_in_time_order(logged, tmp_path):
    lines = [json.loads(x) for x in open(own_file(logged))]
    base = lines[0]['time']

    def write(name, times, opener=open):
        with opener(os.path.join(logged, name), 'wt') as f:
            for t in times:
                f.write(json.dumps(dict(lines[0], time=base + t)) + '\n')

    # Another process (rotated then current), another host, a gzip file.
    write('decisions-other-7.20260101T000000.jsonl', [-30, -20])
    write('decisions-other-7.20260101T000000-1.jsonl', [-15])
    write('decisions-other-7.20260101T000000-2.jsonl', [-14])
    write('decisions-other-7.20260101T000000-10.jsonl', [-12])
    write('decisions-other-7.jsonl', [-5, 10])
    write('decisions-elsewhere.example-9.jsonl', [-25, 20])
    write('decisions-old-3.20250101T000000.jsonl.gz', [-40], gzip.open)
    write('decisions-old-3.20250101T000000.jsonl.xz', [-50])
    write('unrelated.jsonl', [-60])
    stats = decision_records.ReadStats()
    times = [r.time - base for r in
             decision_records.iter_records(logged, stats)]
    assert times == sorted(times)
    assert len(times) == 3 + 2 + 3 + 2 + 2 + 1
    assert times[0] == -40
    assert stats.files == 8
    assert [os.path.basename(p) for p, _ in stats.refused] == [
        'decisions-old-3.20250101T000000.jsonl.xz']


def test_files_over_the_bound_and_symlinks_out_are_refused(logged,
                                                           tmp_path):
    outside = tmp_path / 'outside.jsonl'
    outside.write_text('{"time": 1}\n')
    os.symlink(outside, os.path.join(logged, 'decisions-x-1.jsonl'))
    # log_files() counts regular files only: the symlink is not listed.
    stats = decision_records.ReadStats()
    assert len(decision_records.read_records(logged, stats)) == 3
    stats = decision_records.ReadStats()
    assert decision_records.read_records(logged, stats,
                                         max_file_bytes=100) == []
    assert len(stats.refused) == 1
    assert 'more than the 100 bytes allowed' in stats.refused[0][1]


def test_gzip_bomb_is_refused(logged):
    with gzip.open(os.path.join(logged, 'decisions-z-1.jsonl.gz'),
                   'wb') as f:
        f.write(b'\n' * 10_000_000)
    stats = decision_records.ReadStats()
    decision_records.read_records(logged, stats, max_file_bytes=1_000_000)
    assert [r for _, r in stats.refused] == [
        f'{os.path.join(logged, "decisions-z-1.jsonl.gz")}: more than '
        '1000000 bytes uncompressed']


def test_not_a_directory_is_one_clear_error(tmp_path):
    with pytest.raises(NotADirectoryError, match='not a directory'):
        decision_records.iter_records(str(tmp_path / 'missing'))


def test_fields_of_the_wrong_type_read_as_empty():
    record = decision_records.Record.from_json(
        {'time': 3, 'gate': 'x', 'hosts': [{'host': 1, 'score': 'a',
                                            'nova_weight': True}, 7],
         'confidence': None, 'policy_version': 5})
    assert record.time == 3.0 and record.reason == ''
    assert record.policy_version is None and record.confidence is None
    assert len(record.hosts) == 1
    assert record.nova_top is None and record.policy_top is None
    assert record.agrees is None
    with pytest.raises(ValueError, match='not a list of 0 items'):
        decision_records.Record.from_json([])
