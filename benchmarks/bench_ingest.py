"""``nova-rl-trainer ingest`` from a real Gnocchi: time and peak memory.

Starts the tests' real servers (PostgreSQL, Gnocchi 4.7 API under uWSGI
and metricd, Ceilometer 27's resource types: ``tests/telemetry/servers.py``),
then, not timed, loads ``--days`` of 5-minute telemetry for ``--instances``
instances: one sample per instance through Ceilometer's own publisher
first, so the archive policies (``ceilometer-low``,
``ceilometer-low-rate``) are Ceilometer's, then the instance resources and
their measures (``cpu`` cumulative ns every 5 minutes, ``vcpus``,
``memory``, ``disk.root.size``, ``disk.ephemeral.size``) with Gnocchi's
REST and batch measures APIs, and waits for metricd.

Timed, each in a fresh child process (peak RSS from ``getrusage``):

* ``ingest``: ``nova-rl-trainer ingest --source gnocchi`` over the window;
* baseline: the same CPU measures read with plain ``POST /v1/aggregates``
  requests (``rate:mean`` of ``cpu``, grouped by instance, 200 instances a
  request) and the sizes with one more, decoded and nothing more: the raw
  transfer ``ingest`` cannot do without.

Prints both, and ingest's ratio to the baseline. Run::

    python benchmarks/bench_ingest.py                    # 2,000 x 30 days
    python benchmarks/bench_ingest.py --instances 200 --days 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.telemetry.ceilometer_shapes import iso  # noqa: E402
from tests.telemetry.ceilometer_shapes import Vm  # noqa: E402
from tests.telemetry.ceilometer_shapes import vm_uuid  # noqa: E402
from tests.telemetry import servers  # noqa: E402

G = 300.0
#: 2026-06-01T00:00:00Z: the window's start.
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc).timestamp()
#: Instances per baseline request.
BASELINE_GROUP = 200
SIZES = {'vcpus': 'vcpu', 'memory': 'MiB', 'disk.root.size': 'GiB',
         'disk.ephemeral.size': 'GiB'}

#: Run in the child: a command, then its own wall time and peak RSS.
CHILD = r'''
import json, resource, sys, time
t = time.perf_counter()
if sys.argv[1] == 'ingest':
    from nova_rl_trainer import cli
    rc = cli.main(sys.argv[2:])
else:
    import urllib.request
    rc = 0
    for body in json.load(open(sys.argv[2])):
        req = urllib.request.Request(sys.argv[3], json.dumps(body).encode(),
            {'Content-Type': 'application/json',
             'Authorization': sys.argv[4]}, method='POST')
        with urllib.request.urlopen(req, timeout=3600) as r:
            json.loads(r.read())
print(json.dumps({'rc': rc, 'wall_s': time.perf_counter() - t,
    'max_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    / 1024}))
'''


def request(t: servers.Telemetry, method: str, path: str, body) -> object:
    data = json.dumps(body).encode()
    req = urllib.request.Request(
        t.endpoint + path, data, method=method,
        headers={'Content-Type': 'application/json',
                 'Authorization': servers.basic_auth('admin')})
    with urllib.request.urlopen(req, timeout=600) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def load(t: servers.Telemetry, n: int, days: float, chunk: int) -> dict:
    """Not timed: ``n`` instances, ``days`` of measures."""
    rng = np.random.default_rng(0)
    ticks = int(days * 86400 / G)
    started = time.monotonic()
    # Ceilometer's publisher creates its archive policies on first use.
    probe = Vm(id=vm_uuid('bench-probe'), project_id='p-probe',
               host='probe', vcpus=1, memory_mb=512, launched_at=T0 - 7200,
               deleted_at=T0 - 3600, t0=T0 - 7200,
               shares=np.full(30, 0.1))
    t.publish(probe.samples())
    measures = 0
    for first in range(0, n, chunk):
        batch = {}
        for i in range(first, min(n, first + chunk)):
            rid = vm_uuid(f'bench-{i}')
            vcpus = int(rng.choice([1, 2, 4, 8]))
            host = f'compute-{i % 100:03d}'
            request(t, 'POST', '/v1/resource/instance', {
                'id': rid, 'user_id': 'u-bench',
                'project_id': f'p-{i % 50}', 'host': host,
                'flavor_id': f'f{vcpus}', 'flavor_name': f'm1.c{vcpus}',
                'display_name': f'bench-{i}', 'launched_at': iso(T0 - 60),
                'created_at': iso(T0 - 80),
                'metrics': {'cpu': {'archive_policy_name':
                                    'ceilometer-low-rate'},
                            **{m: {'archive_policy_name': 'ceilometer-low'}
                               for m in SIZES}}})
            times = T0 + (np.arange(ticks) + 1) * G + 2.0
            share = np.clip(rng.beta(2, 5) + rng.normal(0, 0.05, ticks),
                            0, 1)
            cpu = np.cumsum(share * G * vcpus * 1e9)
            batch[rid] = {
                'cpu': [{'timestamp': float(a), 'value': float(b)}
                        for a, b in zip(times, cpu)],
                **{m: [{'timestamp': T0, 'value': v}] for m, v in (
                    ('vcpus', vcpus), ('memory', vcpus * 2048),
                    ('disk.root.size', 20), ('disk.ephemeral.size', 0))}}
            measures += ticks + len(SIZES)
        request(t, 'POST', '/v1/batch/resources/metrics/measures', batch)
        print(f'  loaded {min(n, first + chunk)} of {n} instances',
              file=sys.stderr, flush=True)
    loaded_s = time.monotonic() - started
    t.wait_processed(deadline_s=7200)
    return {'measures': measures, 'post_s': loaded_s,
            'load_s': time.monotonic() - started}


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, '-c', CHILD, *args],
                         stdout=subprocess.PIPE, check=True, cwd=ROOT)
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--instances', type=int, default=2000)
    parser.add_argument('--days', type=float, default=30.0)
    parser.add_argument('--chunk', type=int, default=25,
                        help='instances per batch measures request')
    args = parser.parse_args()
    t = servers.Telemetry()
    try:
        t.start()
        print(f'servers up in {t.timings["total_s"]:.1f} s',
              file=sys.stderr)
        loaded = load(t, args.instances, args.days, args.chunk)
        start, stop = iso(T0), iso(T0 + args.days * 86400)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update({'OS_AUTH_TYPE': 'gnocchi-basic',
                               'GNOCCHI_USER': 'admin',
                               'GNOCCHI_ENDPOINT': t.endpoint})
            out = os.path.join(tmp, 'trace.csv')
            ingest = child(['ingest', 'ingest', '--source', 'gnocchi',
                            '--start', start, '--stop', stop, '--out', out,
                            '--json', out + '.json', '--quiet'])
            with open(out + '.json', encoding='utf-8') as f:
                summary = json.load(f)
            # One plain request per metric and per group of instances
            # (all of them at once would hold every point in one answer).
            ids = [vm_uuid(f'bench-{i}') for i in range(args.instances)]
            bodies = [{'resource_type': 'instance',
                       'search': {'in': {'id': ids[i:i + BASELINE_GROUP]}},
                       'operations': ['metric', 'cpu', 'rate:mean']}
                      for i in range(0, len(ids), BASELINE_GROUP)]
            bodies.append({'resource_type': 'instance',
                           'search': {'in': {'id': ids}},
                           'operations': ['metric', *[
                               [m, 'mean'] for m in SIZES]]})
            url = (f'{t.endpoint}/v1/aggregates?groupby=id&start={start}'
                   f'&stop={stop}').replace('+', '%2B')
            with open(os.path.join(tmp, 'bodies.json'), 'w') as f:
                json.dump(bodies, f)
            baseline = child(['raw', f.name, url,
                              servers.basic_auth('admin')])
        assert ingest['rc'] == 0, ingest
        assert summary['instances'] == args.instances, summary
        ratio = ingest['wall_s'] / baseline['wall_s']
        print(json.dumps({
            'instances': args.instances, 'days': args.days,
            'granularity_s': G, **loaded,
            'ingest_s': round(ingest['wall_s'], 1),
            'ingest_max_rss_mib': round(ingest['max_rss_mib']),
            'baseline_raw_aggregates_s': round(baseline['wall_s'], 1),
            'baseline_max_rss_mib': round(baseline['max_rss_mib']),
            'ingest_over_baseline': round(ratio, 2),
            'cpu_points': summary['cpu_points']}, indent=1))
    finally:
        t.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
