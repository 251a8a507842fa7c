"""``ingest --source prometheus`` against a real Prometheus (Debian's
package) over what Ceilometer 27's Prometheus exporter exposes.

The data: a simulated cloud (a share of the ``azure-v1-small`` scenario's
first day, placed by Nova's default weighers in the simulator, its CPU from
the simulator's utilisation model) and two small ones, polled by a
compute agent every 5 minutes per host, run through Ceilometer's own
``prom_exporter`` (``prometheus_export.py``, in ``.venv-telemetry``),
scraped every 5 minutes (the main cloud) or every minute (``fine``),
written as OpenMetrics and backfilled with ``promtool tsdb
create-blocks-from openmetrics``; Prometheus serves the blocks on
127.0.0.1.

Checked: the same VMs (every VM the exporter showed), lifetimes within one
step (plus the seconds between a polling cycle and the scrape), sizes,
hosts and projects exact, each VM's mean CPU within 2% of what it used
between its polling cycles, with counter resets and a scrape interval
shorter than the polling interval; sizes borrowed from flavor peers and
VMs without ``cpu``; the same answer from chunked and split queries.
Faults: a stopped server, a wrong URL path (404), TLS and basic auth
(401), a missing metric, a bad selector (400), and, from a stand-in
server, overload (503, retried), errors (500) and malformed answers.

Skipped when ``/usr/bin/prometheus`` or ``/usr/bin/promtool`` is missing
(``tools/setup-prometheus.sh`` installs them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import json
import math
import os
from pathlib import Path
import threading
import time
import urllib.request

import numpy as np
import pytest

from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.telemetry.ingest import TRACE_COLUMNS
from tests.telemetry.ceilometer_shapes import iso
from tests.telemetry.ceilometer_shapes import Vm
from tests.telemetry.ceilometer_shapes import vm_uuid
from tests.telemetry.conftest import run_ingest
from tests.telemetry import prometheus_cloud as pc
from tests.telemetry import prometheus_server as ps
from tests.telemetry.servers import ServerError

pytestmark = pytest.mark.skipif(ps.missing_binaries() is not None,
                                reason=ps.missing_binaries() or '')

STEP = 300.0
POLL = 300.0
DAY = 86400.0
#: The main cloud's day: 2026-10-05 (UTC).
T0 = dt.datetime(2026, 10, 5, tzinfo=dt.timezone.utc).timestamp()
#: Six hours scraped every minute, two days later.
T_FINE = T0 + 2 * DAY
FINE_HOURS = 6
#: Two hours of VMs without a cpu metric at all, a day after that.
T_NOCPU = T0 + 3 * DAY
#: Share of the scenario's request batches (seed 3: 42 VMs in day one).
FRACTION, SEED = 0.03, 3
#: A polling cycle's jitter (< 1 s) and the scrape's lag after it.
MAIN_LAG = 3.0
FINE_LAG = 7.0


@dataclasses.dataclass
class Data:
    base: Path
    blocks: Path
    main: pc.Cloud
    fine: pc.Cloud
    nocpu: pc.Cloud
    #: VMs of the main day the exporter never showed (lived less than a
    #: polling cycle).
    unseen: int
    build_s: float


def place(trace, setup):
    """Host of each VM, Nova's default weighers deciding (the simulator's
    stepping API), and the workload with its utilisation model."""
    workload = simulator.Workload(trace, setup.seed, setup.config)
    sim = simulator.Simulation(workload, setup.cluster)
    policy = policies.make_policy('nova-default')
    policy.bind(sim)
    hosts = {}
    while True:
        vm = sim.next_decision()
        if vm < 0:
            break
        host = int(policy.choose(vm, sim.fit))
        hosts[vm] = host
        sim.place(vm, host)
    return hosts, workload


def main_cloud() -> tuple[pc.Cloud, int]:
    setup = Setup.from_scenario('azure-v1-small', seed=0)
    trace = setup.load_trace().sample(FRACTION, seed=SEED)
    hosts, workload = place(trace, setup)
    end = T0 + DAY + 3600
    ticks = int(math.ceil((end - T0) / POLL)) + 1
    k = np.arange(ticks)
    vms = []
    for i, host in sorted(hosts.items()):
        arrival = float(trace.arrival_s[i])
        if arrival >= DAY:
            continue
        dep = float(trace.departure_s[i])
        vms.append(Vm(
            id=vm_uuid('prom-' + trace.vm_id(i)),
            project_id=trace.project_ids[trace.project[i]],
            host=f'compute-{host:03d}', vcpus=int(trace.vcpus[i]),
            memory_mb=int(trace.memory_mb[i]),
            root_gb=int(trace.disk_gb[i]), ephemeral_gb=0,
            launched_at=T0 + arrival,
            deleted_at=None if math.isnan(dep) or T0 + dep >= end
            else T0 + dep,
            t0=T0, interval_s=POLL,
            shares=workload.usage.cpu_util(np.full(ticks, i), k),
            memory_used=0.5))
    long_lived = [v for v in vms if (v.deleted_at or end) - v.launched_at
                  > 3 * 3600]
    # Faults: two VMs without cpu, two without sizes (their flavor's
    # peers have them), three with counter resets (reboots).
    flavors: dict[str, list[Vm]] = {}
    for v in vms:
        flavors.setdefault(v.flavor_id, []).append(v)
    shared = [v for v in long_lived if len(flavors[v.flavor_id]) > 2]
    no_sizes = shared[:2]
    rest = [v for v in long_lived if v not in no_sizes]
    no_cpu, resets = rest[:2], rest[2:5]
    for v in no_sizes:
        v.without = ('vcpus', 'memory', 'disk.root.size',
                     'disk.ephemeral.size')
    for v in no_cpu:
        v.without = ('cpu',)
    for n, v in enumerate(resets):
        v.resets = (6 + 4 * n, 20 + 2 * n)
    cloud = pc.build(vms, T0 - 3600, end, poll_s=POLL, scrape_s=POLL,
                     lag_s=MAIN_LAG)
    assert len(no_sizes) == 2 and len(no_cpu) == 2 and len(resets) == 3
    return cloud, len(vms) - len(cloud.truth)


def fine_cloud() -> pc.Cloud:
    """Eight VMs on two hosts scraped every minute: one there before the
    window, one still running after it, one rebooted."""
    start, stop = T_FINE, T_FINE + FINE_HOURS * 3600
    begin, end = start - 2 * 3600, stop + 3600
    ticks = int((end - begin) / POLL) + 2
    specs = [  # (launch h, delete h or None, vcpus, level)
        (-1.5, 2.0, 2, 0.3), (0.3, 4.2, 1, 0.6), (0.9, 1.7, 4, 0.2),
        (1.1, None, 2, 0.45), (2.05, 5.5, 8, 0.1), (2.6, 3.9, 1, 0.8),
        (3.3, 5.6, 2, 0.35), (4.4, 5.2, 4, 0.5)]
    vms = []
    for n, (a, d, vcpus, level) in enumerate(specs):
        vms.append(Vm(
            id=vm_uuid(f'prom-fine-{n}'), project_id=f'project-{n % 3}',
            host=f'fine-{n % 2}', vcpus=vcpus, memory_mb=2048 * vcpus,
            root_gb=10 * vcpus, launched_at=start + a * 3600,
            deleted_at=None if d is None else start + d * 3600,
            t0=begin, interval_s=POLL,
            shares=pc.smooth_shares(f'fine-{n}', ticks, level),
            resets=(9,) if n == 3 else ()))
    return pc.build(vms, begin, end, poll_s=POLL, scrape_s=60.0,
                    lag_s=FINE_LAG, job='ceilometer-fine')


def nocpu_cloud() -> pc.Cloud:
    start = T_NOCPU
    vms = [Vm(id=vm_uuid(f'prom-nocpu-{n}'), project_id='project-x',
              host='plain-0', vcpus=2, memory_mb=4096,
              launched_at=start + 600 * n, deleted_at=None, t0=start,
              interval_s=POLL, shares=np.full(40, 0.5), without=('cpu',))
           for n in range(3)]
    return pc.build(vms, start, start + 3 * 3600, poll_s=POLL,
                    scrape_s=POLL, lag_s=MAIN_LAG, job='ceilometer-nocpu')


@pytest.fixture(scope='session')
def prom_data(tmp_path_factory):
    base = tmp_path_factory.mktemp('prometheus')
    t = time.monotonic()
    main, unseen = main_cloud()
    fine, nocpu = fine_cloud(), nocpu_cloud()
    spec = base / 'exporter.json'
    spec.write_text(json.dumps(pc.merge(main, fine, nocpu)))
    om = base / 'ceilometer.om'
    blocks = base / 'blocks'
    log = base / 'setup.log'
    try:
        ps.export_openmetrics(spec, om, log)
        ps.backfill(om, blocks, log)
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    return Data(base, blocks, main, fine, nocpu, unseen,
                time.monotonic() - t)


@pytest.fixture(scope='session')
def prometheus(prom_data):
    server = ps.Prometheus(prom_data.base, 'main', prom_data.blocks)
    try:
        server.start()
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith('PROMETHEUS_'):
            monkeypatch.delenv(key)
    return monkeypatch


def window(url: str, start: float, stop: float, *extra: str) -> list[str]:
    return ['--source', 'prometheus', '--url', url, '--start', iso(start),
            '--stop', iso(stop), *extra]


def expected_ids(cloud: pc.Cloud, start: float, stop: float) -> set[str]:
    """The VMs the exporter showed in the window, but those without
    sizes when no other VM of their flavor in the window has them."""
    shown = {vid: t.vm for vid, t in cloud.truth.items()
             if t.first_sample < stop and t.last_sample > start}
    sized = {vm.flavor_id for vm in shown.values()
             if 'vcpus' not in vm.without}
    return {vid for vid, vm in shown.items()
            if 'vcpus' not in vm.without or vm.flavor_id in sized}


def resets_seen(cloud: pc.Cloud, start: float, stop: float) -> int:
    """Counter resets Prometheus saw in the window."""
    n = 0
    for t in cloud.truth.values():
        for r in t.vm.resets:
            if 0 < r < len(t.seen) and start <= t.seen[r] <= stop:
                n += 1
    return n


def check_rows(rows: dict, cloud: pc.Cloud, start: float, stop: float,
               lifetime_tol: float) -> tuple[int, int]:
    """Lifetimes, sizes, hosts, projects and mean CPU of every row against
    the truth; returns (rows with usage, rows checked for it)."""
    with_usage = 0
    for vid, row in rows.items():
        truth = cloud.truth[vid]
        vm = truth.vm
        arrival = max(0.0, vm.launched_at - start)
        assert abs(float(row['arrival_s']) - arrival) <= lifetime_tol, vid
        dep = vm.deleted_at
        if dep is None or dep >= stop:
            assert row['departure_s'] == '', vid
        elif dep < stop - max(STEP, 300.0) - lifetime_tol:
            assert row['departure_s'] != '', vid
        if row['departure_s'] != '':
            assert dep is not None
            assert abs(float(row['departure_s']) - (dep - start)) \
                <= lifetime_tol, vid
        assert float(row['vcpus']) == vm.vcpus
        assert float(row['memory_mb']) == vm.memory_mb
        assert float(row['disk_gb']) == vm.root_gb + vm.ephemeral_gb
        assert row['host'] == vm.host
        assert row['project_id'] == vm.project_id
        expected = truth.shares(start, stop)
        if expected.size == 0:
            assert row['cpu_util_mean'] == '', vid
            continue
        with_usage += 1
        got = float(row['cpu_util_mean'])
        assert got == pytest.approx(expected.mean(), rel=0.02, abs=1e-4), \
            (vid, got, expected.mean())
        assert float(row['cpu_util_p95']) >= got
    return with_usage, len(rows)


def test_ingest_returns_the_simulated_workload(prometheus, prom_data,
                                               clean_env, tmp_path):
    cloud = prom_data.main
    start, stop = T0, T0 + DAY
    t = time.monotonic()
    run = run_ingest(window(prometheus.url, start, stop),
                     tmp_path / 'trace.csv', tmp_path / 'summary.json')
    ingest_s = time.monotonic() - t
    assert run.rc == 0, run.err
    assert run.header == list(TRACE_COLUMNS)
    rows = {r['vm_id']: r for r in run.rows}
    ids = expected_ids(cloud, start, stop)
    assert len(ids) >= 30
    assert set(rows) == ids
    with_usage, _ = check_rows(rows, cloud, start, stop, STEP + MAIN_LAG + 1)
    s = run.summary
    assert s['instances'] == len(ids)
    assert s['with_usage'] == with_usage
    assert s['without_usage'] == len(ids) - with_usage
    # The faults planted in the day.
    no_cpu = [v.id for v in cloud.vms if 'cpu' in v.without]
    no_sizes = [v.id for v in cloud.vms if 'vcpus' in v.without]
    rebooted = [v for v in cloud.vms if v.resets]
    assert all(rows[v]['cpu_util_mean'] == '' for v in no_cpu)
    assert all(rows[v]['vcpus'] != '' for v in no_sizes)
    assert s['sizes_from_flavor'] == 3 * len(no_sizes)
    assert s['cpu_counter_resets'] == resets_seen(cloud, start, stop) >= 3
    assert all(rows[v.id]['cpu_util_mean'] != '' for v in rebooted)
    assert ('6 sizes taken from other instances of the same flavor'
            in run.err)
    # The workload as a whole: the simulator's own utilisation of the
    # VMs with usage over the ticks their cycles measured, within 2%.
    measured, model = [], []
    for vid, row in rows.items():
        truth = cloud.truth[vid]
        if row['cpu_util_mean'] == '':
            continue
        k = np.floor((truth.cycles - T0) / POLL).astype(int)
        k = k[(truth.seen > start) & (truth.seen <= stop)]
        measured.append(float(row['cpu_util_mean']))
        model.append(truth.vm.shares[k.min():k.max()].mean()
                     if k.max() > k.min() else np.nan)
    ok = np.isfinite(model)
    assert np.mean(np.array(measured)[ok]) == pytest.approx(
        np.mean(np.array(model)[ok]), rel=0.02)
    print(f'\nprometheus: {len(ids)} VMs ({prom_data.unseen} of the day '
          'never polled), data built and backfilled in '
          f'{prom_data.build_s:.1f} s, ingested in {ingest_s:.2f} s')


def test_a_window_inside_the_day_clips_lifetimes(prometheus, prom_data,
                                                 clean_env, tmp_path):
    """VMs there before --start arrive at 0; those running at --stop have
    no departure; CPU only from the pairs of cycles inside."""
    cloud = prom_data.main
    start, stop = T0 + 6 * 3600, T0 + 18 * 3600
    run = run_ingest(window(prometheus.url, start, stop),
                     tmp_path / 'trace.csv')
    assert run.rc == 0, run.err
    rows = {r['vm_id']: r for r in run.rows}
    assert set(rows) == expected_ids(cloud, start, stop)
    assert any(r['arrival_s'] == '0' for r in rows.values())
    assert any(r['departure_s'] == '' for r in rows.values())
    check_rows(rows, cloud, start, stop, STEP + MAIN_LAG + 1)


def test_scrapes_every_minute(prometheus, prom_data, clean_env, tmp_path):
    """Scraped every minute, the exporter repeating each cycle's values
    until the next one (and a deleted VM's until the next cycle purges
    it): the same CPU within 2%, lifetimes within a polling cycle and a
    step. The host from the scrape target's `instance` label, without
    its port."""
    cloud = prom_data.fine
    start, stop = T_FINE, T_FINE + FINE_HOURS * 3600
    run = run_ingest(window(prometheus.url, start, stop,
                            '--match', 'job="ceilometer-fine"',
                            '--host-label', 'instance'),
                     tmp_path / 'trace.csv', tmp_path / 'summary.json')
    assert run.rc == 0, run.err
    rows = {r['vm_id']: r for r in run.rows}
    assert set(rows) == expected_ids(cloud, start, stop)
    assert len(rows) == 8
    with_usage, _ = check_rows(rows, cloud, start, stop,
                               POLL + STEP + FINE_LAG + 1)
    assert with_usage == 8
    assert run.summary['cpu_counter_resets'] == 1
    assert run.summary['running_at_stop'] == 1


def test_memory_usage(prometheus, prom_data):
    """``ceilometer_memory_usage`` at each step: half of each VM's
    memory in the main cloud."""
    from nova_rl_trainer.telemetry.prometheus_source import PrometheusSource
    start = dt.datetime.fromtimestamp(T0, dt.timezone.utc)
    stop = start + dt.timedelta(hours=12)
    with PrometheusSource(prometheus.url) as source:
        instances = source.instances(start, stop)
        got = source.memory_usage(instances, start, stop)
    assert instances and set(got) == {i.id for i in instances}
    for inst in instances:
        times, mib = got[inst.id]
        vm = prom_data.main.truth[inst.id].vm
        assert times.size >= 1
        assert np.all(mib == 0.5 * vm.memory_mb)


def test_chunked_and_split_queries_answer_the_same(prometheus, prom_data,
                                                   clean_env, tmp_path):
    """Range queries of at most 500 values, and a Prometheus refusing
    queries over 300 samples (split in time until they pass): the same
    trace."""
    start, stop = T0, T0 + DAY
    whole = run_ingest(window(prometheus.url, start, stop),
                       tmp_path / 'whole.csv')
    chunked = run_ingest(window(prometheus.url, start, stop,
                                '--max-points', '500'),
                         tmp_path / 'chunked.csv')
    assert whole.rc == 0 and chunked.rc == 0, chunked.err
    assert chunked.out_path.read_text() == whole.out_path.read_text()
    with ps.Prometheus(prom_data.base, 'small', prom_data.blocks,
                       flags=('--query.max-samples=300',)).start() as s:
        split = run_ingest(window(s.url, start, stop), tmp_path / 'split.csv')
        assert split.rc == 0, split.err
        assert split.out_path.read_text() == whole.out_path.read_text()
        tiny = run_ingest(window(s.url, start, stop, '--step', '86400'),
                          tmp_path / 'tiny.csv')
    assert tiny.rc == 2
    assert tiny.error.startswith(
        f'nova-rl-trainer: error: Prometheus at {s.url} refuses the '
        'instances query even for one step (HTTP 422 execution: query '
        'processing would load too many samples into memory in query '
        'execution): raise its --query.max-samples or --query.timeout, or '
        'give a smaller --step')


def test_missing_metrics(prometheus, prom_data, clean_env, tmp_path):
    start, stop = T_NOCPU, T_NOCPU + 2 * 3600
    # No instance of the window has cpu.
    run = run_ingest(window(prometheus.url, start, stop),
                     tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error == (
        "nova-rl-trainer: error: missing metric 'cpu': none of the 3 "
        "instances in the window has a 'cpu' metric in prometheus (is "
        "Ceilometer's compute agent polling 'cpu'?)")
    # No such metrics at all.
    run = run_ingest(window(prometheus.url, start, stop, '--metric-prefix',
                            'telemetry_'), tmp_path / 'trace.csv')
    assert run.error == (
        'nova-rl-trainer: error: missing metric: Prometheus at '
        f'{prometheus.url} has no telemetry_cpu, telemetry_vcpus or '
        "telemetry_memory series at all: is Ceilometer's Prometheus "
        'exporter ([polling] enable_prometheus_exporter) scraped by this '
        'Prometheus? (--metric-prefix for other names)')
    # The metrics, but not the label holding the instance id.
    run = run_ingest(window(prometheus.url, start, stop, '--resource-label',
                            'resource_id'), tmp_path / 'trace.csv')
    assert run.error.startswith(
        f'nova-rl-trainer: error: ceilometer_cpu in Prometheus at '
        f"{prometheus.url} has no label 'resource_id' (it has: counter, ")
    assert run.error.endswith(
        '): give --resource-label (resource_id for the Pushgateway '
        'publisher)')
    # A selector matching nothing: an empty window, not an error.
    run = run_ingest(window(prometheus.url, start, stop, '--match',
                            'job="elsewhere"'), tmp_path / 'trace.csv',
                     tmp_path / 'summary.json')
    assert run.rc == 0, run.err
    assert run.rows == [] and run.summary['instances'] == 0


def test_bad_selector_is_rejected(prometheus, clean_env, tmp_path):
    run = run_ingest(window(prometheus.url, T0, T0 + 3600, '--match',
                            'job=~"("'), tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error.startswith(
        f'nova-rl-trainer: error: Prometheus at {prometheus.url} rejected '
        'the instances query (last values): HTTP 400 bad_data: ')
    assert run.error.endswith('(check --match \'job=~"("\')')


def test_stopped_server(prom_data, clean_env, tmp_path):
    """Up: a trace. Stopped: 'cannot reach' after the retries (backoff
    0.5 + 1 + 2 s), the trace written before still whole."""
    start, stop = T_FINE, T_FINE + 3600
    server = ps.Prometheus(prom_data.base, 'stopped', prom_data.blocks)
    with server.start():
        out = tmp_path / 'trace.csv'
        ok = run_ingest(window(server.url, start, stop), out)
        assert ok.rc == 0, ok.err
        before = out.read_bytes()
    ps.wait_closed(server.port)
    t = time.monotonic()
    down = run_ingest(window(server.url, start, stop), out)
    elapsed = time.monotonic() - t
    assert down.rc == 2
    assert down.error == (
        f'nova-rl-trainer: error: cannot reach Prometheus at {server.url} '
        '(the instances query (last values)): connection refused, 4 '
        'attempts')
    assert 3.5 <= elapsed < 20.0
    quick = run_ingest(window(server.url, start, stop, '--retries', '0'),
                       out)
    assert quick.error.endswith('connection refused, 1 attempt')
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['trace.csv']


def test_wrong_url_path(prometheus, clean_env, tmp_path):
    url = prometheus.url + '/prometheus'
    run = run_ingest(window(url, T0, T0 + 3600), tmp_path / 'trace.csv')
    assert run.rc == 2
    assert run.error == (
        f'nova-rl-trainer: error: no Prometheus API at {url}: HTTP 404 on '
        'GET /prometheus/api/v1/query; check --url (the server\'s address, '
        'with its --web.route-prefix if it has one)')
    assert not (tmp_path / 'trace.csv').exists()


def test_tls_and_basic_auth(prom_data, clean_env, tmp_path):
    """A Prometheus with TLS and basic auth (its --web.config.file)."""
    start, stop = T_FINE, T_FINE + FINE_HOURS * 3600
    cert, key = ps.self_signed(prom_data.base, prom_data.base / 'tls.log')
    password = tmp_path / 'password'
    password.write_text(ps.BASIC_PASSWORD + '\n')
    server = ps.Prometheus(prom_data.base, 'tls', prom_data.blocks,
                           tls=(cert, key), basic_auth=True)
    url = server.url
    out = tmp_path / 'trace.csv'
    with server.start():
        anonymous = run_ingest(window(url, start, stop, '--cacert',
                                      str(cert)), out)
        clean_env.setenv('PROMETHEUS_USER', ps.BASIC_USER)
        clean_env.setenv('PROMETHEUS_PASSWORD', 'wrong')
        wrong = run_ingest(window(url, start, stop, '--cacert', str(cert)),
                           out)
        clean_env.delenv('PROMETHEUS_PASSWORD')
        auth = ['--basic-auth-password-file', str(password)]
        unverified = run_ingest(window(url, start, stop, *auth), out)
        ok = run_ingest(window(url, start, stop, *auth, '--cacert',
                               str(cert)), out)
        insecure = run_ingest(window(url, start, stop, *auth, '--insecure'),
                              tmp_path / 'insecure.csv')
        plain = run_ingest(window(url.replace('https:', 'http:'), start,
                                  stop, *auth), out)
    for run in (anonymous, wrong, unverified, plain):
        assert run.rc == 2
    assert anonymous.error == (
        f'nova-rl-trainer: error: Prometheus at {url} refused the '
        'credentials (no credentials): HTTP 401 on the instances query '
        '(last values); give --basic-auth-user with PROMETHEUS_PASSWORD or '
        '--basic-auth-password-file, or --bearer-token-file')
    assert wrong.error.startswith(
        f'nova-rl-trainer: error: Prometheus at {url} refused the '
        f'credentials (basic auth, user {ps.BASIC_USER}): HTTP 401')
    assert unverified.error == (
        f'nova-rl-trainer: error: TLS failed with Prometheus at {url}: '
        'certificate verify failed: self-signed certificate; give --cacert '
        'FILE with its CA, or --insecure')
    # Go's TLS server answers 400 and closes the connection.
    assert plain.error == (
        'nova-rl-trainer: error: Prometheus at '
        f"{url.replace('https:', 'http:')} broke off its answer to the "
        'instances query (last values): the server closed the connection; '
        'if it serves TLS, give an https:// --url')
    assert ok.rc == 0, ok.err
    assert insecure.rc == 0, insecure.err
    assert len(ok.rows) == 8
    assert insecure.out_path.read_text() == ok.out_path.read_text()


def test_help_lists_the_options(clean_env, capsys):
    from tests.telemetry.conftest import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args(['ingest', '--source', 'prometheus',
                                   '--help'])
    text = capsys.readouterr().out
    for option in ('--url', '--step', '--host-label', '--resource-label',
                   '--project-label', '--metric-prefix', '--match',
                   '--basic-auth-user', '--basic-auth-password-file',
                   '--bearer-token-file', '--insecure', '--cacert',
                   '--retries', '--max-points'):
        assert option in text


def test_option_errors(clean_env, tmp_path):
    base = ['--source', 'prometheus', '--start', iso(T0), '--stop',
            iso(T0 + 3600)]
    cases = [
        ([], 'no Prometheus: give --url (or PROMETHEUS_URL)'),
        (['--url', 'prometheus:9090'],
         "--url 'prometheus:9090': not an http:// or https:// URL (e.g. "
         'http://prometheus:9090)'),
        (['--url', 'http://127.0.0.1:9', '--host-label', 'host-name'],
         "--host-label 'host-name': not a Prometheus label name"),
        (['--url', 'http://127.0.0.1:9', '--step', '0'],
         '--step 0: must be a positive number of seconds'),
        (['--url', 'http://127.0.0.1:9', '--bearer-token-file',
          str(tmp_path / 'none')],
         f'cannot read --bearer-token-file {tmp_path / "none"}: No such '
         'file or directory'),
    ]
    for extra, message in cases:
        run = run_ingest([*base, *extra], tmp_path / 't.csv')
        assert run.rc == 2, extra
        assert run.error == f'nova-rl-trainer: error: {message}'
    clean_env.setenv('PROMETHEUS_PASSWORD', 'x')
    run = run_ingest([*base, '--url', 'http://127.0.0.1:9'],
                     tmp_path / 't.csv')
    assert run.error == ('nova-rl-trainer: error: a basic auth password '
                         'without a user: give --basic-auth-user (or '
                         'PROMETHEUS_USER)')


# -- a stand-in server for what Prometheus does not do on demand ---------

class _StandIn(http.server.BaseHTTPRequestHandler):
    """Answers ``fail`` (status, content type, body) to the first
    ``failures`` requests (all of them when None), then forwards to
    ``upstream``; records the requests' paths and Authorization."""

    fail: tuple = (503, 'text/plain', 'busy')
    failures: int | None = None
    upstream: str | None = None
    hits: list = []

    def do_GET(self):
        self.hits.append((self.path, self.headers.get('Authorization')))
        n = len(self.hits)
        if self.upstream and self.failures is not None and \
                n > self.failures:
            with urllib.request.urlopen(self.upstream + self.path,
                                        timeout=30) as resp:
                status, ctype = resp.status, resp.headers['Content-Type']
                data = resp.read()
        else:
            status, ctype, body = self.fail
            data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    handler = type('Handler', (_StandIn,), {'hits': []})
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_overload_is_retried_then_reported(stand_in, prometheus, clean_env,
                                           tmp_path):
    handler, url = stand_in
    start, stop = T_FINE, T_FINE + 3600
    # Two 503s, then the real Prometheus: the retries carry it through.
    handler.failures, handler.upstream = 2, prometheus.url
    run = run_ingest(window(url, start, stop), tmp_path / 'a.csv')
    assert run.rc == 0, run.err
    direct = run_ingest(window(prometheus.url, start, stop),
                        tmp_path / 'b.csv')
    assert run.out_path.read_text() == direct.out_path.read_text()
    # Always 502: reported after the retries, with backoff.
    handler.hits.clear()
    handler.failures = None
    handler.fail = (502, 'text/html', '<html><h1>Bad Gateway</h1></html>')
    t = time.monotonic()
    run = run_ingest(window(url, start, stop, '--retries', '2'),
                     tmp_path / 'c.csv')
    assert run.rc == 2
    assert run.error == (
        f'nova-rl-trainer: error: Prometheus at {url} failed on the '
        'instances query (last values): HTTP 502 after 2 retries: Bad '
        'Gateway')
    assert len(handler.hits) == 3
    assert time.monotonic() - t >= 1.5
    # A 500 is not retried.
    handler.hits.clear()
    handler.fail = (500, 'application/json', json.dumps(
        {'status': 'error', 'errorType': 'internal', 'error': 'disk full'}))
    run = run_ingest(window(url, start, stop), tmp_path / 'd.csv')
    assert run.error == (
        f'nova-rl-trainer: error: Prometheus at {url} failed on the '
        'instances query (last values): HTTP 500: disk full')
    assert len(handler.hits) == 1


def test_malformed_answers(stand_in, clean_env, tmp_path):
    handler, url = stand_in
    args = window(url, T0, T0 + 3600)
    out = tmp_path / 'trace.csv'
    cases = [
        ((200, 'text/html', '<html>welcome</html>'),
         "not JSON ('welcome')"),
        ((200, 'application/json', '[1, 2]'),
         "a JSON list, not an object ('[1, 2]')"),
        ((200, 'application/json', '{"status": "success"}'), 'no data'),
        ((200, 'application/json', '{"status": "pending", "data": {}}'),
         "status 'pending', not 'success'"),
        ((200, 'application/json',
          '{"status": "success", "data": {"resultType": "matrix", '
          '"result": []}}'),
         "expected a vector in data.result, got 'matrix'"),
        ((200, 'application/json',
          '{"status": "success", "data": {"resultType": "vector", '
          '"result": [{"metric": {"resource": "a"}, "value": [1, "x"]}]}}'),
         "value 'x' is not a number"),
    ]
    for answer, why in cases:
        handler.fail = answer
        run = run_ingest(args, out)
        assert run.rc == 2
        assert run.error == (
            f'nova-rl-trainer: error: Prometheus at {url} sent a malformed '
            f'answer to the instances query (last values): {why}')
    assert not out.exists()


def test_bearer_token_is_sent(stand_in, clean_env, tmp_path):
    handler, url = stand_in
    handler.fail = (401, 'text/plain', 'Unauthorized')
    token = tmp_path / 'token'
    token.write_text('s3cr3t-token\n')
    run = run_ingest(window(url, T0, T0 + 3600, '--bearer-token-file',
                            str(token)), tmp_path / 't.csv')
    assert run.error == (
        f'nova-rl-trainer: error: Prometheus at {url} refused the '
        'credentials (bearer token): HTTP 401 on the instances query (last '
        'values); give --basic-auth-user with PROMETHEUS_PASSWORD or '
        '--basic-auth-password-file, or --bearer-token-file')
    assert handler.hits[0][1] == 'Bearer s3cr3t-token'
    clean_env.setenv('PROMETHEUS_BEARER_TOKEN', 'from-env')
    run_ingest(window(url, T0, T0 + 3600), tmp_path / 't.csv')
    assert handler.hits[-1][1] == 'Bearer from-env'
