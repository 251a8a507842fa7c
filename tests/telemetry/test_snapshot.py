"""``nova-rl-trainer snapshot`` against the real Gnocchi, on measures
written by Ceilometer's own Gnocchi publisher, with host capacities from a
cluster file or from a real Placement API; the written file read back by
the weigher's own reader.

Each test writes its VMs into a day of its own, from 2025-11-01, before
any other test's (from 2026-02-01), and deletes them after its window, so
the tests share one Gnocchi without seeing each other's instances (an
instance never deleted lives in every later window).
"""

from __future__ import annotations

import datetime as dt
import json
import os

import numpy as np
import pytest

from nova_rl_weigher import features
from nova_rl_weigher import snapshot as weigher_snapshot
from tests.telemetry.ceilometer_shapes import iso
from tests.telemetry.ceilometer_shapes import samples_of
from tests.telemetry.ceilometer_shapes import Vm
from tests.telemetry.ceilometer_shapes import vm_uuid
from tests.telemetry import cli_runner
from tests.telemetry.placement_server import clouds_yaml
from tests.telemetry.placement_server import inventory
from tests.telemetry.placement_server import placement  # noqa: F401
from tests.telemetry.servers import free_port
from tests.telemetry.servers import http_json

G = 300.0
H = 3600.0
EPOCH = dt.datetime(2025, 11, 1, tzinfo=dt.timezone.utc).timestamp()


def day(n: int) -> float:
    return EPOCH + n * 86400.0


#: The operator's cluster: Nova's host names in `hosts`.
CLUSTER = {'host_groups': [
    {'name': 'small', 'count': 1, 'vcpus': 16, 'ram_mb': 65536,
     'hosts': ['cmp-small']},
    {'name': 'big', 'count': 2, 'vcpus': 64, 'ram_mb': 262144,
     'hosts': ['cmp-big', 'cmp-idle']},
    {'name': 'tiny', 'count': 1, 'vcpus': 8, 'ram_mb': 16384,
     'hosts': ['cmp-nocpu']}]}


def snapshot(*args: str) -> cli_runner.Run:
    return cli_runner.run(['snapshot', '--source', 'gnocchi', *args])


def window(at: float, window_s: float = H) -> list[str]:
    return ['--at', iso(at), '--window-s', f'{window_s:g}']


@pytest.fixture
def cluster_file(tmp_path):
    path = tmp_path / 'cluster.json'
    path.write_text(json.dumps(CLUSTER))
    return str(path)


@pytest.fixture(scope='module')
def written(telemetry):
    """Day 0: a window of one hour, [w0, w0 + 1 h), on three hosts.

    The CPU counters are polled exactly 0.5 s after every 5-minute tick
    (no jitter), so the rate Gnocchi labels with interval B is the share
    of the tick before B (plus 0.5 s of B's own): hand arithmetic holds to
    about 1e-4.
    """
    w0 = day(0) + 12 * H
    t0 = w0 - 2 * H
    ticks = int(4 * H / G)              # to w0 + 2 h
    k = np.arange(ticks)
    half = t0 + k * G >= w0 + 0.5 * H   # ticks of the window's 2nd half

    def vm(name, host, project, vcpus, memory_mb, shares, **kw):
        return Vm(id=vm_uuid('snap0-' + name), project_id=project,
                  host=host, vcpus=vcpus, memory_mb=memory_mb,
                  launched_at=t0 + 100, deleted_at=w0 + H + 1800, t0=t0,
                  shares=np.broadcast_to(np.asarray(shares, dtype=float),
                                         (ticks,)).copy(),
                  jitter_s=0.0, **kw)
    vms = {
        # cmp-small, 16 cores, 64 GiB.
        'vm1': vm('vm1', 'cmp-small', 'pA', 4, 8192, 0.5, memory_used=0.5),
        'vm2': vm('vm2', 'cmp-small', 'pB', 8, 16384,
                  np.where(half, 0.75, 0.25), memory_used=0.25),
        # cmp-big, 64 cores, 256 GiB; vm3 sends no memory.usage.
        'vm3': vm('vm3', 'cmp-big', 'pA', 16, 32768, 0.8),
        'vm4': vm('vm4', 'cmp-big', 'pB', 2, 4096, 0.5, memory_used=1.0),
        # No cpu metric at all: counts for nothing.
        'vm6': vm('vm6', 'cmp-big', 'pA', 4, 4096, 0.9, without=('cpu',)),
        # A host the cluster does not have.
        'vm5': vm('vm5', 'cmp-ghost', 'pC', 1, 1024, 0.3, memory_used=0.5),
        # The only instance of cmp-nocpu has no cpu metric.
        'vm7': vm('vm7', 'cmp-nocpu', 'pD', 2, 2048, 0.5, without=('cpu',)),
    }
    telemetry.publish(*samples_of(list(vms.values())))
    return {'vms': vms, 'start': w0, 'stop': w0 + H}


# Hand arithmetic for `written` (the rate labelled B measures the tick
# before B). cmp-small: 7 intervals at (0.5 x 4 + 0.25 x 8) / 16 = 0.25,
# then 5 at (0.5 x 4 + 0.75 x 8) / 16 = 0.5.
SMALL_CPU_MEAN = (7 * 0.25 + 5 * 0.5) / 12          # 0.354167
SMALL_CPU_P95 = 0.5
SMALL_MEM = (0.5 * 8192 + 0.25 * 16384) / 65536     # 0.125
# cmp-big: (0.8 x 16 + 0.5 x 2) / 64, memory: vm3's flavor 32768 MiB (no
# memory.usage) + vm4's 4096 MiB in use, over 256 GiB.
BIG_CPU = (0.8 * 16 + 0.5 * 2) / 64                 # 0.215625
BIG_MEM = (32768 + 4096) / 262144                   # 0.140625
# Projects: used vCPU-seconds / allocated, over their measured intervals.
PROJECT_A = (0.5 * 4 * 12 + 0.8 * 16 * 12) / (4 * 12 + 16 * 12)   # 0.74
PROJECT_B = ((7 * 0.25 + 5 * 0.75) * 8 + 0.5 * 2 * 12) / (8 * 12 + 2 * 12)
PROJECT_C = 0.3


def gnocchi_host_series(vms, hosts_cores, start, stop):
    """Each host's CPU series as Gnocchi's arithmetic gives it, from the
    counters the VMs published: per pair of polls, the counter's increase
    / (300 s x 1e9 x vCPUs), labelled with the later poll's interval."""
    series = {}
    for vm in vms:
        if 'cpu' in vm.without or vm.host not in hosts_cores:
            continue
        times, values = vm.counter()
        shares = np.diff(values) / (G * 1e9 * vm.vcpus)
        label = np.floor(times[1:] / G) * G
        keep = (label >= start) & (label < stop)
        for b, s in zip(label[keep], shares[keep]):
            per = series.setdefault(vm.host, {})
            per[b] = per.get(b, 0.0) + s * vm.vcpus / hosts_cores[vm.host]
    return {h: np.minimum(np.array([v for _, v in sorted(d.items())]), 1.0)
            for h, d in series.items()}


def check_written_snapshot(path, written, warnings):
    """The file the weigher reads: hosts (Nova's names), fractions, the
    projects' ratios; read back with the weigher's own reader."""
    doc = json.loads(open(path, encoding='utf-8').read())
    assert doc['format_version'] == 2
    assert doc['generated_at'] == written['stop']
    hosts = doc['hosts']
    # Nova's host names (what Ceilometer put in Gnocchi's `host`): the
    # cluster's hosts with instances and the idle one; the unknown host and
    # the host whose instances have no CPU measures are left out.
    assert set(hosts) == {'cmp-small', 'cmp-big', 'cmp-idle'}
    small, big = hosts['cmp-small'], hosts['cmp-big']
    assert small['cpu_util_mean'] == pytest.approx(SMALL_CPU_MEAN, abs=2e-4)
    assert small['cpu_util_p95'] == pytest.approx(SMALL_CPU_P95, abs=2e-4)
    assert small['mem_util_mean'] == small['mem_util_p95'] == SMALL_MEM
    assert big['cpu_util_mean'] == pytest.approx(BIG_CPU, abs=2e-4)
    assert big['cpu_util_p95'] == pytest.approx(BIG_CPU, abs=2e-4)
    assert big['mem_util_mean'] == big['mem_util_p95'] == BIG_MEM
    assert hosts['cmp-idle'] == {'cpu_util_mean': 0.0, 'cpu_util_p95': 0.0,
                                 'mem_util_mean': 0.0, 'mem_util_p95': 0.0,
                                 'vcpus_allocated': 0.0,
                                 'ram_mb_allocated': 0.0,
                                 'cpu_util_peak_24h': 0.0,
                                 'mem_util_peak_24h': 0.0}
    # v2: the allocation at the window's end (every instance still
    # running, measured or not) and the highest interval over 24 h (the
    # test's whole data: vm2 at 0.25 before the window, 0.75 after).
    assert (small['vcpus_allocated'], small['ram_mb_allocated']) == (
        12.0, 24576.0)
    assert (big['vcpus_allocated'], big['ram_mb_allocated']) == (
        22.0, 40960.0)
    assert small['cpu_util_peak_24h'] == pytest.approx(SMALL_CPU_P95,
                                                       abs=2e-4)
    assert small['mem_util_peak_24h'] == SMALL_MEM
    assert big['cpu_util_peak_24h'] == pytest.approx(BIG_CPU, abs=2e-4)
    assert doc['projects']['pA']['cpu_ratio_peak_24h'] == pytest.approx(
        PROJECT_A, abs=2e-4)
    assert doc['projects']['pB']['cpu_ratio_peak_24h'] == pytest.approx(
        (0.75 * 8 + 0.5 * 2) / 10, abs=2e-4)
    # To the float: Gnocchi's arithmetic on the published counters.
    exact = gnocchi_host_series(written['vms'].values(),
                                {'cmp-small': 16, 'cmp-big': 64},
                                written['start'], written['stop'])
    for name, s in exact.items():
        assert len(s) == 12
        assert hosts[name]['cpu_util_mean'] == pytest.approx(s.mean(),
                                                             abs=2e-6)
        assert hosts[name]['cpu_util_p95'] == pytest.approx(
            np.percentile(s, 95), abs=2e-6)
    projects = {p: v['cpu_ratio'] for p, v in doc['projects'].items()
                if 'cpu_ratio' in v}
    assert set(projects) == {'pA', 'pB', 'pC'}
    assert projects['pA'] == pytest.approx(PROJECT_A, abs=2e-4)
    assert projects['pB'] == pytest.approx(PROJECT_B, abs=2e-4)
    assert projects['pC'] == pytest.approx(PROJECT_C, abs=2e-4)
    # The weigher's reader and cache take it as it is.
    generated_at, lookup = weigher_snapshot.load(str(path))
    assert generated_at == written['stop']
    assert lookup.hosts['cmp-small'] == features.HostUsage(
        small['cpu_util_mean'], small['cpu_util_p95'],
        small['mem_util_mean'], small['mem_util_p95'])
    assert set(lookup.hosts) == set(hosts)
    assert lookup.project_cpu_ratio == projects
    got, status, _ = weigher_snapshot.SnapshotCache().get(
        str(path), max_age_s=900, now=written['stop'] + 300)
    assert status == weigher_snapshot.FRESH
    assert got.hosts == lookup.hosts
    # What it had to work around, one line each (instances in the
    # source's order: by id).
    no_cpu = ', '.join(sorted(written['vms'][v].id for v in ('vm6', 'vm7')))
    assert sorted(warnings) == sorted([
        '1 hosts with instances left out: their capacity is unknown (not '
        'in the cluster; Nova and the cluster must name hosts alike): '
        'cmp-ghost',
        '1 hosts left out: none of their instances has CPU measures in the '
        'window: cmp-nocpu',
        f'2 instances without CPU measures in the window count for nothing '
        f'({no_cpu})',
        "1 instances without memory.usage measures: their flavor's memory "
        'counted (an upper bound)',
    ])


def test_snapshot_from_a_cluster_file(written, basic_env, cluster_file,
                                      tmp_path):
    out = tmp_path / 'rl-usage.json'
    summary = tmp_path / 'summary.json'
    run = snapshot(*window(written['stop']), '--cluster', cluster_file,
                   '--out', str(out), '--json', str(summary))
    assert run.rc == 0, run.err
    check_written_snapshot(out, written, run.warnings)
    assert len(run.warnings) == 4, run.err
    s = json.loads(summary.read_text())
    assert (s['hosts'], s['hosts_with_instances'], s['hosts_idle'],
            s['hosts_unknown_capacity'], s['hosts_without_cpu']) == (
        3, 2, 1, 1, 1)
    assert (s['instances'], s['with_cpu'], s['without_cpu'],
            s['without_memory_usage'], s['intervals'],
            s['granularity_s']) == (7, 5, 2, 1, 12, 300.0)
    assert s['cluster_hosts'] == 4 and s['projects'] == 3
    assert '3 hosts (2 with instances, 1 idle), 3 projects from 7 ' \
           'instances over 12 intervals of 300 s from gnocchi' in run.out
    # The host names are exactly Gnocchi's `host` attributes, which
    # Ceilometer took from Nova's instance_host.
    code, found = http_json(basic_env.endpoint
                            + '/v1/search/resource/instance', method='POST',
                            body={'in': {'id': [v.id for v in
                                                written['vms'].values()]}})
    assert code == 200
    nova_hosts = {r['host'] for r in found}
    doc = json.loads(out.read_text())
    assert set(doc['hosts']) - {'cmp-idle'} == nova_hosts - {
        'cmp-ghost', 'cmp-nocpu'}
    assert os.stat(out).st_mode & 0o777 == 0o644


def placement_hosts(placement):  # noqa: F811
    """The cluster in Placement: reserved CPUs and RAM, and the big host
    under the libvirt node's FQDN (Nova's `host` is the short name)."""
    placement.add_provider('cmp-small', {
        'VCPU': inventory(20, 4, 4.0), 'MEMORY_MB': inventory(69632, 4096),
        'DISK_GB': inventory(1000)})
    for name in ('cmp-big.example.org', 'cmp-idle'):
        placement.add_provider(name, {
            'VCPU': inventory(64, 0, 2.0),
            'MEMORY_MB': inventory(262144, 0, 1.0),
            'DISK_GB': inventory(2000)})
    placement.add_provider('cmp-nocpu', {
        'VCPU': inventory(8), 'MEMORY_MB': inventory(16384),
        'DISK_GB': inventory(100)})


def test_snapshot_from_placement(written, basic_env, placement,  # noqa: F811
                                 tmp_path, monkeypatch):
    """Capacities from Placement (a clouds.yaml cloud of its own beside the
    standalone Gnocchi): the same snapshot as from the cluster file; and
    `cluster --from-placement` writes a file that gives it too."""
    placement_hosts(placement)
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', str(clouds_yaml(
        tmp_path / 'clouds.yaml', {'placement': placement.endpoint})))
    out = tmp_path / 'rl-usage.json'
    summary = tmp_path / 'summary.json'
    run = snapshot(*window(written['stop']), '--from-placement',
                   '--placement-cloud', 'placement', '--out', str(out),
                   '--json', str(summary))
    assert run.rc == 0, run.err
    assert ('1 hosts matched a cluster host by their first DNS label: '
            'cmp-big as cmp-big.example.org') in run.warnings
    check_written_snapshot(out, written, [
        w for w in run.warnings if 'first DNS label' not in w])
    s = json.loads(summary.read_text())
    assert s['placement']['compute_hosts'] == 4
    assert s['hosts_matched_by_short_name'] == 1
    # The cluster file from Placement (the Gnocchi's OS_AUTH_TYPE is not
    # Placement's), then the snapshot from it.
    cluster = tmp_path / 'cluster.json'
    with monkeypatch.context() as m:
        m.delenv('OS_AUTH_TYPE')
        made = cli_runner.run(['cluster', '--from-placement', '--os-cloud',
                               'placement', '--out', str(cluster)])
    assert made.rc == 0, made.err
    again = tmp_path / 'again.json'
    run = snapshot(*window(written['stop']), '--cluster', str(cluster),
                   '--out', str(again))
    assert run.rc == 0, run.err
    assert json.loads(again.read_text()) == json.loads(out.read_text())


def test_gaps_resets_and_an_incomplete_last_interval(telemetry, basic_env,
                                                     cluster_file, tmp_path):
    """Lost polls (the rate after them covers the gap) and counter resets
    (the interval dropped) are filled from the next measured interval, not
    counted as idle; the latest interval, which one running instance has
    not reported yet, is left out."""
    w0 = day(1) + 12 * H
    t0 = w0 - 2 * H
    ticks = int(4 * H / G)                       # to w0 + 2 h

    def vm(name, host, vcpus, share, **kw):
        return Vm(id=vm_uuid('snap1-' + name), project_id='p', host=host,
                  vcpus=vcpus, memory_mb=2048, launched_at=t0 + 100,
                  deleted_at=w0 + H + 1800, t0=t0,
                  shares=np.full(ticks, share), jitter_s=0.0,
                  memory_used=0.5, **kw)
    # 4 vCPUs at 0.6 on 16 cores: 0.15; three polls lost in the window.
    gap = vm('gap', 'cmp-small', 4, 0.6, missing=(27, 28, 29))
    # 16 vCPUs at 0.8 on 64 cores: 0.2; reboots in the window.
    reset = vm('reset', 'cmp-big', 16, 0.8, resets=(26, 31))
    # Running at the window's end, but its poll of w0 + 55 min has not
    # arrived (poll k follows tick k + 1; w0 is tick 24): that interval is
    # incomplete.
    late = vm('late', 'cmp-idle', 8, 0.5, missing=(34,))
    telemetry.publish(*samples_of([gap, reset, late]))
    out = tmp_path / 'rl-usage.json'
    summary = tmp_path / 's.json'
    run = snapshot(*window(w0 + H), '--cluster', cluster_file, '--out',
                   str(out), '--json', str(summary))
    assert run.rc == 0, run.err
    hosts = json.loads(out.read_text())['hosts']
    assert json.loads(summary.read_text())['intervals'] == 11
    assert hosts['cmp-small']['cpu_util_mean'] == pytest.approx(0.15,
                                                                abs=2e-4)
    assert hosts['cmp-small']['cpu_util_p95'] == pytest.approx(0.15,
                                                               abs=2e-4)
    assert hosts['cmp-big']['cpu_util_mean'] == pytest.approx(0.2, abs=2e-4)
    assert hosts['cmp-idle']['cpu_util_mean'] == pytest.approx(
        0.5 * 8 / 64, abs=2e-4)
    assert hosts['cmp-idle']['mem_util_mean'] == round(1024 / 262144, 6)
    assert hosts['cmp-nocpu']['cpu_util_mean'] == 0.0     # idle: present
    assert json.loads(out.read_text())['projects']['p']['cpu_ratio'] == \
        pytest.approx((0.6 * 4 + 0.8 * 16 + 0.5 * 8) / 28, abs=2e-4)


def test_missing_cpu_everywhere_is_an_error(telemetry, basic_env,
                                            cluster_file, tmp_path):
    w0 = day(2) + 12 * H
    vms = [Vm(id=vm_uuid(f'snap2-{i}'), project_id='p', host='cmp-small',
              vcpus=2, memory_mb=2048, launched_at=w0 - 2 * H,
              deleted_at=w0 + 2 * H, t0=w0 - 2 * H, shares=np.full(48, 0.5),
              without=('cpu',)) for i in range(2)]
    telemetry.publish(*samples_of(vms))
    out = tmp_path / 'rl-usage.json'
    out.write_text('previous\n')
    run = snapshot(*window(w0 + H), '--cluster', cluster_file, '--out',
                   str(out))
    assert run.rc == 2
    assert run.error == (
        "nova-rl-trainer: error: missing metric 'cpu': none of the 2 "
        "instances of the last 3600 s has a 'cpu' metric in gnocchi (is "
        "Ceilometer's compute agent polling 'cpu'?)")
    assert run.err.count('\n') == 1
    assert out.read_text() == 'previous\n'


def test_an_empty_window_gives_idle_hosts(telemetry, basic_env,
                                          cluster_file, tmp_path):
    """Nothing ran: every host of the cluster at 0, no project."""
    out = tmp_path / 'rl-usage.json'
    run = snapshot(*window(day(-30)), '--cluster', cluster_file, '--out',
                   str(out))
    assert run.rc == 0, run.err
    doc = json.loads(out.read_text())
    assert set(doc['hosts']) == {'cmp-small', 'cmp-big', 'cmp-idle',
                                 'cmp-nocpu'}
    assert all(v == 0.0 for h in doc['hosts'].values() for v in h.values())
    assert doc['projects'] == {}


def test_faults_are_one_line(telemetry, basic_env, cluster_file, tmp_path,
                             monkeypatch):
    out = tmp_path / 'rl-usage.json'
    out.write_text('previous\n')
    at = window(day(-30))

    def check(run, expected):
        assert run.rc == 2, run.err
        assert run.error == 'nova-rl-trainer: error: ' + expected, run.err
        assert run.err.count('\n') == 1, run.err
        assert out.read_text() == 'previous\n'
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ['rl-usage.json', 'cluster.json', *extra])

    extra: list[str] = []
    # Gnocchi not there.
    nobody = f'http://127.0.0.1:{free_port()}'
    monkeypatch.setenv('GNOCCHI_ENDPOINT', nobody)
    check(snapshot(*at, '--cluster', cluster_file, '--out', str(out),
                   '--retries', '0'),
          f"cannot reach Gnocchi at {nobody} (the 'instance' resource "
          'type): connection refused, 1 attempt')
    monkeypatch.setenv('GNOCCHI_ENDPOINT', telemetry.endpoint)
    # A cluster file with an error.
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'host_groups': [{
        'name': 'g', 'count': 2, 'vcpus': 8, 'ram_mb': 1, 'hosts': ['a']}]}))
    extra.append('bad.json')
    check(snapshot(*at, '--cluster', str(bad), '--out', str(out)),
          f"cluster file {bad}: host group 'g' (host_groups[0]): key "
          "'hosts' must list exactly 'count' (2) host names, got 1")
    # Placement through a standalone Gnocchi's credentials: impossible.
    check(snapshot(*at, '--from-placement', '--out', str(out)),
          '--from-placement: the metrics source authenticates with '
          'gnocchi-basic, which gives no Keystone session for Placement; '
          'give --placement-cloud NAME (a clouds.yaml cloud for Placement) '
          'or --cluster FILE')
    # Placement not there.
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', str(clouds_yaml(
        tmp_path / 'clouds.yaml', {'gone': nobody})))
    extra.append('clouds.yaml')
    check(snapshot(*at, '--from-placement', '--placement-cloud', 'gone',
                   '--out', str(out), '--retries', '0'),
          f'cannot reach Placement at {nobody} (GET /resource_providers): '
          'connection refused, 1 attempt')
    # A source without series.
    trace = tmp_path / 'trace.csv'
    trace.write_text('vm_id,project_id,arrival_s,departure_s,vcpus,'
                     'memory_mb,disk_gb,cpu_util_mean,cpu_util_p95,host\n'
                     'a,p,0,,2,2048,0,0.5,0.7,cmp-small\n')
    extra.append('trace.csv')
    check(cli_runner.run(['snapshot', '--source', 'csv', '--trace',
                          str(trace), *at, '--cluster', cluster_file,
                          '--out', str(out)]),
          'source csv gives CPU use as a mean and 95th percentile per '
          "instance, without a value per interval: a host's use is a sum "
          'over its instances interval by interval, so the usage snapshot '
          'needs a source with series (gnocchi)')
    # Options.
    check(snapshot('--at', iso(day(-30)), '--window-s', '0', '--cluster',
                   cluster_file, '--out', str(out)),
          '--window-s 0: must be a positive number of seconds')
    check(snapshot(*at, '--cluster', cluster_file, '--placement-cloud', 'x',
                   '--out', str(out)),
          '--placement-cloud and --placement-endpoint go with '
          '--from-placement')
    run = snapshot(*at, '--out', str(out))
    assert run.rc == 2 and 'one of the arguments --cluster ' \
        '--from-placement is required' in run.err


def test_lifetimes_siblings_and_peaks_of_version_2(telemetry, basic_env,
                                                   cluster_file, tmp_path):
    """Format v2's lifetimes (Nova's launched_at to deleted_at of the
    instances that ended), a project's recent boots (siblings), the
    allocation at the end and the 24 h peaks, read back by the weigher."""
    stop = day(10) + 13 * H
    ended_at = stop - 11 * H
    lives = (3600.0, 7200.0, 10800.0, 14400.0, 36000.0)

    def vm(name, project, vcpus, launched, deleted, share, **kw):
        ticks = max(1, int(((deleted or stop + H) - launched) // G))
        return Vm(id=vm_uuid('snap10-' + name), project_id=project,
                  host='cmp-small', vcpus=vcpus, memory_mb=1024 * vcpus,
                  launched_at=launched, deleted_at=deleted, t0=launched,
                  shares=np.full(ticks, share), jitter_s=0.0,
                  memory_used=0.5, **kw)
    # Five of project pL ended 11 h ago after 1 to 10 h, all running
    # together at 0.9 of 4 vCPUs just before: cmp-small's 24 h peak is
    # its cores (capped).
    vms = [vm(f'l{i}', 'pL', 4, ended_at - life, ended_at, 0.9,
              flavor_name='m1.life') for i, life in enumerate(lives)]
    # The window's only load, and pS's boots of the last 10 minutes: two
    # ended after 120 s and 180 s, one running.
    vms += [vm('b', 'pB', 2, stop - 2 * H, stop + 1800, 0.5),
            vm('s1', 'pS', 1, stop - 500, stop - 380, 0.1),
            vm('s2', 'pS', 1, stop - 500, stop - 320, 0.1),
            vm('s3', 'pS', 1, stop - 300, stop + 1800, 0.1)]
    telemetry.publish(*samples_of(vms))
    out = tmp_path / 'rl-usage.json'
    run = snapshot(*window(stop), '--cluster', cluster_file, '--out',
                   str(out))
    assert run.rc == 0, run.err
    doc = json.loads(out.read_text())
    assert doc['format_version'] == 2
    small = doc['hosts']['cmp-small']
    # Running at the end: b and s3.
    assert (small['vcpus_allocated'], small['ram_mb_allocated']) == (
        3.0, 3072.0)
    assert small['cpu_util_peak_24h'] == 1.0
    assert small['cpu_util_mean'] < 0.1
    pl = doc['projects']['pL']
    assert pl['cpu_ratio_peak_24h'] == pytest.approx(0.9, abs=2e-4)
    want = {'median_s': 10800.0, 'p90_s': 36000.0, 'count': 5.0}
    assert pl['lifetime'] == want
    assert pl['flavors'] == {'m1.life': {'lifetime': want}}
    assert doc['flavors']['m1.life'] == {'lifetime': want}
    # Siblings: more than half ended, so the median is known; the p90
    # falls on the running one: its age, a lower bound.
    assert doc['projects']['pS']['recent_lifetime'] == {
        'median_s': 180.0, 'p90_s': 300.0, 'count': 3.0}
    assert 'recent_lifetime' not in pl
    _, lookup = weigher_snapshot.load(str(out))
    assert lookup.lifetimes.for_request('pL', 'm1.life') == \
        features.Lifetime(10800.0, 36000.0, 5.0)
    assert lookup.lifetimes.for_request('pS', 'x').median_s == 180.0
    assert lookup.host_alloc['cmp-small'] == (3.0, 3072.0)
    assert lookup.host_peaks['cmp-small'][0] == 1.0
