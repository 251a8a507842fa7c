"""Cost of RLWeigher next to Nova's own weighers, measured in one run.

For 1,000 and 10,000 ``FakeHostState`` objects (nova's unit-test fake of the
scheduler's host state), times one weighing pass of Nova's ``all_weighers``
through Nova's real ``HostWeightHandler`` and of RLWeigher alone (gated mode,
bundled policy, decision log off and on), and prints RLWeigher's cost as a
ratio of Nova's. Target: at most 0.10. Then measures the resident memory the
weigher adds to a process that has already imported nova and weighed with
its built-ins (target: at most 40 MB), in a fresh subprocess.

Run: ``python benchmarks/bench_weigher.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_RATIO = 0.10
TARGET_MB = 40.0


def _setup_nova():
    from nova import monkey_patch
    monkey_patch.patch()
    import nova.conf
    from nova import objects
    objects.register_all()
    nova.conf.CONF([], project='nova')
    return nova.conf.CONF


def make_hosts(n: int, seed: int = 0):
    from nova.tests.unit.scheduler import fakes
    import random
    rng = random.Random(seed)
    hosts = []
    for i in range(n):
        vcpus = rng.choice([16, 32, 48, 64])
        ram = vcpus * rng.choice([4096, 8192])
        used = rng.random()
        hosts.append(fakes.FakeHostState(f'host{i}', f'node{i}', {
            'vcpus_total': vcpus, 'vcpus_used': int(vcpus * used * 2),
            'cpu_allocation_ratio': 4.0, 'ram_allocation_ratio': 1.0,
            'disk_allocation_ratio': 1.0,
            'total_usable_ram_mb': ram,
            'free_ram_mb': int(ram * (1 - used)),
            'total_usable_disk_gb': 1000,
            'free_disk_mb': int(1000 * 1024 * (1 - used)),
            'num_instances': int(used * 20), 'num_io_ops': rng.randint(0, 3),
            'failed_builds': 0, 'aggregates': [], 'metrics': {},
            'hypervisor_version': 1}))
    return hosts


def make_spec():
    from nova import objects
    return objects.RequestSpec(
        flavor=objects.Flavor(vcpus=2, memory_mb=4096, root_gb=20,
                              ephemeral_gb=0, swap=0, name='m1.medium',
                              extra_specs={}),
        project_id='p1', instance_uuid='0bd1c8bb-0000-4000-8000-000000000001',
        image=objects.ImageMeta.from_dict({'properties': {}}),
        instance_group=None, is_bfv=False, scheduler_hints={})


def best_time(fn, repeat: int) -> float:
    """Median of ``repeat`` runs, in milliseconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def bench_speed(sizes, repeat: int) -> list[dict]:
    conf = _setup_nova()
    from nova.scheduler import weights
    from nova_rl_weigher import weigher as rl

    handler = weights.HostWeightHandler()
    nova_weighers = [cls() for cls in weights.all_weighers()]
    rl_weigher = rl.RLWeigher()
    spec = make_spec()
    log_dir = tempfile.mkdtemp(prefix='rl-bench-log-')
    conf.set_override('mode', 'gated', group='rl_weigher')
    conf.set_override('confidence_threshold', 0.0, group='rl_weigher')
    conf.set_override('latency_budget_ms', 10000.0, group='rl_weigher')
    results = []
    for n in sizes:
        hosts = make_hosts(n)
        nova_ms = best_time(lambda: handler.get_weighed_objects(
            nova_weighers, hosts, spec), repeat)
        weighed = handler.get_weighed_objects(nova_weighers, hosts, spec)
        row = {'hosts': n, 'nova_all_weighers_ms': nova_ms,
               'nova_weighers': len(nova_weighers)}
        for label, directory in (('rl', ''), ('rl_with_log', log_dir)):
            conf.set_override('decision_log_dir', directory,
                              group='rl_weigher')
            rl_weigher.weigh_objects(weighed, spec)          # warm: load

            def one_pass():
                rl_weigher.weigh_objects(weighed, spec)
                for w in weighed:       # what Nova does with the result
                    rl_weigher.weight_multiplier(w.obj)
            row[f'{label}_ms'] = best_time(one_pass, repeat)
            row[f'{label}_ratio'] = row[f'{label}_ms'] / nova_ms
            if directory:
                rl_weigher.flush_decision_log(60)
        row['rl_applied'] = rl_weigher.stats.get('applied', 0)
        results.append(row)
    return results


_MEMORY_PROBE = r'''
import json, os, sys
sys.path.insert(0, {root!r})
import benchmarks.bench_weigher as b
def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
conf = b._setup_nova()
from nova.scheduler import weights
handler = weights.HostWeightHandler()
hosts = b.make_hosts(1000)
spec = b.make_spec()
nova_weighers = [c() for c in weights.all_weighers()]
for _ in range(3):
    handler.get_weighed_objects(nova_weighers, hosts, spec)
before = rss_mb()
from nova_rl_weigher import weigher as rl
conf.set_override('mode', 'gated', group='rl_weigher')
conf.set_override('confidence_threshold', 0.0, group='rl_weigher')
w = rl.RLWeigher()
for _ in range(20):
    handler.get_weighed_objects(nova_weighers + [w], hosts, spec)
after = rss_mb()
print(json.dumps({{'rss_before_mb': before, 'rss_after_mb': after,
                  'added_mb': after - before,
                  'torch_loaded': 'torch' in sys.modules}}))
'''


def bench_memory() -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, '-c',
                          _MEMORY_PROBE.format(root=root)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='1000,10000')
    parser.add_argument('--repeat', type=int, default=15)
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    speed = bench_speed(sizes, args.repeat)
    print(f"{'hosts':>6} {'nova all_weighers':>18} {'RLWeigher':>10} "
          f"{'ratio':>6} {'with log':>9} {'ratio':>6}")
    for r in speed:
        print(f"{r['hosts']:>6} {r['nova_all_weighers_ms']:>15.2f} ms "
              f"{r['rl_ms']:>7.2f} ms {r['rl_ratio']:>6.3f} "
              f"{r['rl_with_log_ms']:>6.2f} ms {r['rl_with_log_ratio']:>6.3f}")
    print(f"({speed[0]['nova_weighers']} Nova weighers; target ratio "
          f"<= {TARGET_RATIO})")
    mem = bench_memory()
    print(f"resident memory added by RLWeigher: {mem['added_mb']:.1f} MB "
          f"(process with nova: {mem['rss_before_mb']:.0f} MB; target <= "
          f"{TARGET_MB} MB; torch loaded: {mem['torch_loaded']})")
    worst = max(r['rl_ratio'] for r in speed)
    print(f"verdict: speed {'OK' if worst <= TARGET_RATIO else 'OVER'} "
          f"(worst ratio {worst:.3f}), memory "
          f"{'OK' if mem['added_mb'] <= TARGET_MB else 'OVER'}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'speed': speed, 'memory': mem}, f, indent=2)


if __name__ == '__main__':
    main()
