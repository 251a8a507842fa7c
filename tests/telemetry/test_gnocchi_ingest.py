"""``nova-rl-trainer ingest --source gnocchi`` against a real Gnocchi, on
measures written by Ceilometer's own Gnocchi publisher.

Each test writes its VMs into a day of its own, so the tests share one
Gnocchi without seeing each other's instances.
"""

from __future__ import annotations

import argparse
import datetime as dt
import zlib

import numpy as np
import pytest

from nova_rl_trainer.telemetry import gnocchi_source
from nova_rl_trainer.telemetry.ingest import TRACE_COLUMNS
from nova_rl_trainer.telemetry import sources
from tests.telemetry.ceilometer_shapes import iso
from tests.telemetry.ceilometer_shapes import samples_of
from tests.telemetry.ceilometer_shapes import Vm
from tests.telemetry.ceilometer_shapes import vm_uuid
from tests.telemetry.servers import http_json

G = 300.0
H = 3600.0
#: 2026-02-01T00:00:00Z; test n uses day n after it.
EPOCH = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc).timestamp()


def day(n: int) -> float:
    return EPOCH + n * 86400.0


def shares_for(seed: int, ticks: int, low=0.05, high=0.95) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, ticks)


def window_args(start: float, stop: float) -> list[str]:
    return ['--source', 'gnocchi', '--start', iso(start), '--stop',
            iso(stop)]


def by_id(rows):
    return {r['vm_id']: r for r in rows}


def check_row(row, vm: Vm, start: float, stop: float) -> None:
    """The row says what was written: lifetime within one granularity,
    sizes, host, project, mean CPU within 2%."""
    arrival = max(0.0, vm.launched_at - start)
    assert abs(float(row['arrival_s']) - arrival) <= G
    if vm.deleted_at is None or vm.deleted_at >= stop:
        assert row['departure_s'] == ''
    else:
        assert abs(float(row['departure_s']) - (vm.deleted_at - start)) <= G
    assert float(row['vcpus']) == vm.vcpus
    assert float(row['memory_mb']) == vm.memory_mb
    assert float(row['disk_gb']) == vm.root_gb + vm.ephemeral_gb
    assert row['host'] == vm.host
    assert row['project_id'] == vm.project_id
    expected = vm.expected_shares(start, stop)
    if expected.size == 0:
        assert row['cpu_util_mean'] == '' and row['cpu_util_p95'] == ''
        return
    mean = float(row['cpu_util_mean'])
    assert mean == pytest.approx(expected.mean(), rel=0.02), vm.id
    p95 = float(row['cpu_util_p95'])
    assert p95 >= mean
    assert p95 == pytest.approx(
        max(np.percentile(np.clip(expected, 0, 1), 95), mean), abs=0.02)


@pytest.fixture(scope='module')
def written(telemetry):
    """Day 0: VMs before, across, inside and after a 6-hour window."""
    w0 = day(0) + 6 * H
    t0 = w0 - 3 * H
    ticks = int(12 * H / G)

    def vm(name, vcpus, memory, launched, deleted, seed, **kw):
        return Vm(id=vm_uuid('day0-' + name), project_id=kw.pop(
            'project', 'project-a'), host=kw.pop('host', 'compute-1'),
            vcpus=vcpus, memory_mb=memory, launched_at=launched,
            deleted_at=deleted, t0=t0, shares=shares_for(seed, ticks), **kw)
    vms = {
        # Running since before the window, still running after it.
        'before': vm('before', 2, 4096, w0 - 1 * H + 17, w0 + 8 * H, 1,
                     host='compute-2'),
        # Launched and deleted inside the window.
        'inside': vm('inside', 4, 8192, w0 + 1 * H + 40, w0 + 3 * H + 125,
                     2, project='project-b', root_gb=40, ephemeral_gb=10),
        # Launched inside, deleted after the window.
        'across': vm('across', 1, 2048, w0 + 5 * H + 3, w0 + 7 * H, 3,
                     host='compute-3'),
        # Lived only a few minutes: no two polls, no rate.
        'brief': vm('brief', 8, 16384, w0 + 2 * H + 10, w0 + 2 * H + 200,
                    4, project='project-b'),
        # Launched before, deleted inside; reports its memory in use.
        'early': vm('early', 2, 4096, w0 - 600, w0 + 1800, 5,
                    memory_used=0.4),
        # Entirely before the window, entirely after it: not in it.
        'gone': vm('gone', 2, 4096, t0 + 100, w0 - 1800, 6),
        'later': vm('later', 2, 4096, w0 + 6 * H + 600, w0 + 8 * H, 7),
    }
    samples, events = samples_of(list(vms.values()))
    telemetry.publish(samples, events)
    return {'vms': vms, 'start': w0, 'stop': w0 + 6 * H}


def test_ingest_returns_what_ceilometer_wrote(written, basic_env, ingest):
    start, stop = written['start'], written['stop']
    run = ingest(*window_args(start, stop))
    assert run.rc == 0, run.err
    assert run.header == list(TRACE_COLUMNS)
    rows = by_id(run.rows)
    vms = written['vms']
    inside = {k: v for k, v in vms.items() if k not in ('gone', 'later')}
    assert set(rows) == {v.id for v in inside.values()}
    for vm in inside.values():
        check_row(rows[vm.id], vm, start, stop)
    s = run.summary
    assert (s['instances'], s['with_usage'], s['without_usage']) == (5, 4, 1)
    assert s['running_at_stop'] == 2
    assert s['cpu_counter_resets'] == 0
    # Rows in arrival order, as the trace reader sorts them.
    arrivals = [float(r['arrival_s']) for r in run.rows]
    assert arrivals == sorted(arrivals)


def test_pagination_and_chunking_change_nothing(written, basic_env, ingest):
    """Pages of 2 instances, one instance per aggregates request."""
    args = window_args(written['start'], written['stop'])
    whole = ingest(*args)
    paged = ingest(*args, '--page-size', '2', '--chunk', '1',
                   '--max-points', '10')
    assert whole.rc == paged.rc == 0, paged.err
    assert paged.rows == whole.rows


def test_flags_and_clouds_yaml_auth(written, telemetry, monkeypatch, ingest,
                                    tmp_path):
    """The plugin's command-line options, and a clouds.yaml cloud."""
    for key in ('OS_AUTH_TYPE', 'GNOCCHI_USER', 'GNOCCHI_ENDPOINT',
                'OS_CLOUD'):
        monkeypatch.delenv(key, raising=False)
    args = window_args(written['start'], written['stop'])
    flags = ingest(*args, '--os-auth-type', 'gnocchi-basic', '--user',
                   'admin', '--endpoint', telemetry.endpoint)
    assert flags.rc == 0, flags.err
    clouds = tmp_path / 'clouds.yaml'
    clouds.write_text(
        'clouds:\n  lab:\n    auth_type: gnocchi-basic\n    auth:\n'
        f'      user: admin\n      endpoint: {telemetry.endpoint}\n')
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', str(clouds))
    cloud = ingest(*args, '--os-cloud', 'lab')
    assert cloud.rc == 0, cloud.err
    assert cloud.rows == flags.rows
    assert len(flags.rows) == 5


def _source(telemetry, *extra: str) -> gnocchi_source.GnocchiSource:
    parser = argparse.ArgumentParser()
    argv = ['--os-auth-type', 'gnocchi-basic', '--user', 'admin',
            '--endpoint', telemetry.endpoint, *extra]
    gnocchi_source.GnocchiSource.add_arguments(parser, argv)
    return gnocchi_source.GnocchiSource.from_arguments(
        parser.parse_args(argv))


def test_what_ceilometer_created(written, telemetry):
    """The archive policies and metrics are Ceilometer's own: cpu in
    ceilometer-low-rate (5-minute mean and rate:mean), sizes in
    ceilometer-low."""
    code, policy = http_json(telemetry.endpoint
                             + '/v1/archive_policy/ceilometer-low-rate')
    assert code == 200
    assert set(policy['aggregation_methods']) == {'mean', 'rate:mean'}
    assert [d['granularity'] for d in policy['definition']] == ['0:05:00']
    vm = written['vms']['inside']
    code, resource = http_json(telemetry.endpoint
                               + f'/v1/resource/instance/{vm.id}')
    assert code == 200
    policies = {}
    for name, metric_id in resource['metrics'].items():
        code, metric = http_json(telemetry.endpoint
                                 + f'/v1/metric/{metric_id}')
        policies[name] = metric['archive_policy']['name']
    assert policies == {'cpu': 'ceilometer-low-rate',
                        'vcpus': 'ceilometer-low', 'memory': 'ceilometer-low',
                        'disk.root.size': 'ceilometer-low',
                        'disk.ephemeral.size': 'ceilometer-low'}
    assert (resource['host'], resource['flavor_id']) == (vm.host,
                                                         vm.flavor_id)


def test_source_interface_and_memory_usage(written, telemetry):
    vms = written['vms']
    start = dt.datetime.fromtimestamp(written['start'], dt.timezone.utc)
    stop = dt.datetime.fromtimestamp(written['stop'], dt.timezone.utc)
    with _source(telemetry) as src:
        found = {i.id: i for i in src.instances(start, stop)}
        early = found[vms['early'].id]
        assert early.host == 'compute-1'
        assert early.flavor_id == vms['early'].flavor_id
        assert early.launched_at.timestamp() == pytest.approx(
            vms['early'].launched_at)
        assert early.deleted_at.timestamp() == pytest.approx(
            vms['early'].deleted_at)
        # Gnocchi's own ended_at: set by the publisher on the delete event.
        assert early.ended_at is not None
        assert {'cpu', 'vcpus', 'memory', 'memory.usage'} <= early.metrics
        usage = src.memory_usage(list(found.values()), start, stop)
        assert set(usage) == {vms['early'].id}
        times, mib = usage[vms['early'].id]
        assert len(times) > 0
        assert np.allclose(mib, 0.4 * 4096)
        cpu = src.cpu_usage(list(found.values()), start, stop)
        assert vms['brief'].id not in cpu
        assert cpu[vms['inside'].id].points == len(
            vms['inside'].expected_shares(written['start'],
                                          written['stop']))


def test_cpu_counter_resets_and_gaps(telemetry, basic_env, ingest):
    """A reboot and a migration reset the counter: negative rates are
    dropped, not negative use. Lost polls: the next rate covers the gap."""
    w0 = day(1)
    t0 = w0 - H
    ticks = int(8 * H / G)
    reset = Vm(id=vm_uuid('day1-reset'), project_id='p', host='c1',
               vcpus=4, memory_mb=4096, launched_at=w0 - 1000,
               deleted_at=w0 + 7 * H, t0=t0, shares=shares_for(11, ticks),
               resets=(6, 20))
    gap = Vm(id=vm_uuid('day1-gap'), project_id='p', host='c2',
             vcpus=2, memory_mb=2048, launched_at=w0 + 100,
             deleted_at=w0 + 7 * H,
             t0=t0, shares=shares_for(12, ticks), missing=(8, 9, 10))
    telemetry.publish(*samples_of([reset, gap]))
    run = ingest(*window_args(w0, w0 + 6 * H))
    assert run.rc == 0, run.err
    rows = by_id(run.rows)
    check_row(rows[reset.id], reset, w0, w0 + 6 * H)
    check_row(rows[gap.id], gap, w0, w0 + 6 * H)
    s = run.summary
    assert s['cpu_counter_resets'] == 2
    assert s['cpu_gaps'] == 1
    # Without dropping them, the two resets alone would pull the mean of
    # the reset VM below zero use for those intervals.
    assert float(rows[reset.id]['cpu_util_mean']) > 0.2


def test_metric_missing_for_some_instances(telemetry, basic_env, ingest):
    """No cpu: kept, without usage. No sizes: taken from the flavor's
    other instances; with none to take from: left out, with a warning."""
    w0 = day(2)
    t0 = w0 - H
    ticks = int(8 * H / G)

    def vm(name, **kw):
        return Vm(id=vm_uuid('day2-' + name), project_id='p', host='c1',
                  vcpus=kw.pop('vcpus', 2), memory_mb=kw.pop('memory', 4096),
                  launched_at=w0 + 600, deleted_at=w0 + 5 * H, t0=t0,
                  shares=shares_for(zlib.crc32(name.encode()), ticks), **kw)
    full = vm('full')
    no_cpu = vm('no-cpu', without=('cpu',))
    # Same flavor as `full`, but no vcpus or memory gauges of its own.
    no_sizes = vm('no-sizes', without=('vcpus', 'memory'))
    # A flavor nobody else has, and no vcpus gauge.
    orphan = vm('orphan', vcpus=3, memory=3000, without=('vcpus',))
    telemetry.publish(*samples_of([full, no_cpu, no_sizes, orphan]))
    run = ingest(*window_args(w0, w0 + 4 * H))
    assert run.rc == 0, run.err
    rows = by_id(run.rows)
    assert set(rows) == {full.id, no_cpu.id, no_sizes.id}
    check_row(rows[full.id], full, w0, w0 + 4 * H)
    check_row(rows[no_sizes.id], no_sizes, w0, w0 + 4 * H)
    assert rows[no_cpu.id]['cpu_util_mean'] == ''
    s = run.summary
    assert (s['instances'], s['with_usage'], s['without_usage']) == (3, 2, 1)
    assert s['skipped_without_size'] == 1
    assert s['sizes_from_flavor'] == 2
    assert '1 instances left out' in run.err and orphan.id in run.err


def test_metric_missing_for_every_instance(telemetry, basic_env, ingest):
    """Telemetry without a required metric is an error, not a trace of
    instances without usage."""
    w0 = day(3)
    vms = [Vm(id=vm_uuid(f'day3-{i}'), project_id='p', host='c1', vcpus=2,
              memory_mb=2048, launched_at=w0 + 100 * i,
              deleted_at=w0 + 3 * H,
              t0=w0 - H, shares=shares_for(i, 40), without=('cpu',))
           for i in range(3)]
    telemetry.publish(*samples_of(vms))
    run = ingest(*window_args(w0, w0 + 2 * H))
    assert run.rc == 2
    assert run.error == (
        "nova-rl-trainer: error: missing metric 'cpu': none of the 3 "
        "instances in the window has a 'cpu' metric in gnocchi (is "
        "Ceilometer's compute agent polling 'cpu'?)")
    assert not run.out_path.exists()


def test_empty_window(telemetry, basic_env, ingest):
    run = ingest(*window_args(day(-200), day(-200) + H))
    assert run.rc == 0, run.err
    assert run.rows == []
    assert run.summary['instances'] == 0


def test_bad_window(telemetry, basic_env, ingest):
    run = ingest(*window_args(day(1), day(0)))
    assert run.rc == 2
    assert 'is not after --start' in run.error
    run = ingest('--source', 'gnocchi', '--start', 'yesterday', '--stop',
                 iso(day(1)))
    assert run.rc == 2
    assert "'yesterday' is not an ISO 8601 date-time" in run.err


def test_cpu_shares_arithmetic():
    """rate / (granularity x 1e9 x vcpus); negatives dropped; a gap's
    rate spread over the gap; clipped to [0, 1]."""
    times = np.array([0, 300, 600, 1500, 1800], dtype=float)
    rates = np.array([150e9, -5e12, 300e9, 900e9, 700e9])
    u = gnocchi_source.cpu_shares(times, rates, 300.0, 2)
    assert u.resets == 1 and u.gaps == 1
    assert np.allclose(u.shares, [0.25, 0.5, 0.5, 1.0])
    assert u.mean == pytest.approx(0.5625)
    assert sources.CpuUsage.from_shares(np.array([])) is None
