"""Simulator throughput at 500 hosts, measured in one run.

Plays the ``azure-v1-test`` scenario (500 hosts of 48 vCPUs / 384 GiB) with
every heuristic baseline and prints placement decisions per second (the
whole run: filtering, scoring, departures, usage samples and metrics),
against the target of 20,000 decisions/s for a heuristic policy on this
2-core machine. Then, on a shorter window, the paths that build the shared
feature matrix for every decision: an artifact policy (the bundled one,
gated as in Nova, and raw), next to best-fit on the same window (its rate
and the artifact policy's ratio to it: target at least 10,000 decisions/s
and at least 0.25 x best-fit), and the gymnasium environment's steps.

BLAS runs one thread per process unless ``--blas-threads`` says otherwise,
as ``nova-rl-trainer evaluate`` runs its workers (several BLAS threads per
simulation oversubscribe the cores and make the small matrix products of an
artifact policy several times slower and erratic on a shared machine).

Run: ``python benchmarks/bench_simulator.py`` (about two minutes;
``--hours 24`` for a quicker look, ``--full`` for the whole 5.7 days,
``--profile`` to print where the gated artifact policy's time goes).
The bundled policy reads feature schema v1; ``--artifact PATH`` adds a
policy artifact of one's own, gated, on the same window (a schema v2 one,
such as the main job's ``out/main/policy``, also pays for the v2 signals'
bookkeeping), and is the one ``--profile`` profiles.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

TARGET = 20000.0
ARTIFACT_TARGET = 10000.0
ARTIFACT_RATIO_TARGET = 0.25
_BLAS_THREADS = ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hours', type=float, default=48.0,
                        help='trace window for the heuristics (default 48)')
    parser.add_argument('--full', action='store_true',
                        help='the whole azure-v1-test trace')
    parser.add_argument('--feature-hours', type=float, default=3.0,
                        help='window for the feature-matrix paths')
    parser.add_argument('--blas-threads', type=int, default=1,
                        help='BLAS threads (default 1; 0: leave as is)')
    parser.add_argument('--artifact', metavar='PATH',
                        help='also a policy artifact of your own, gated')
    parser.add_argument('--profile', action='store_true',
                        help='profile the gated artifact policy run '
                        '(--artifact if given, else the bundled one)')
    args = parser.parse_args()
    if args.blas_threads > 0:
        # Read by numpy's BLAS when it loads: before the imports below.
        os.environ.update({k: str(args.blas_threads) for k in _BLAS_THREADS})

    from nova_rl_trainer.learning import env as env_mod
    from nova_rl_trainer.simulation import baselines
    from nova_rl_trainer.simulation import objectives
    from nova_rl_trainer.simulation import policies
    from nova_rl_trainer.simulation import scenarios
    from nova_rl_trainer.simulation import simulator

    def play(wl, cluster, spec, profiler=None):
        """(decisions/s by the wall clock, by this process's CPU time,
        wall seconds, metrics)"""
        sim = simulator.Simulation(wl, cluster,
                                   objectives.load_objective('packing'))
        policy = policies.make_policy(spec)
        started, cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        r = sim.run(policy)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        n = r.metrics['decisions']
        return n / wall, n / max(cpu, 1e-9), wall, r.metrics

    sc = scenarios.get_scenario('azure-v1-test')
    full = sc.load_trace(0)
    trace = full if args.full else full.window(0.0, args.hours * 3600.0)
    t0 = time.perf_counter()
    wl = simulator.Workload(trace, seed=0)
    build = time.perf_counter() - t0
    threads = os.environ.get('OPENBLAS_NUM_THREADS', 'default')
    print(f'azure-v1-test, {sc.cluster.hosts} hosts, '
          f'{trace.horizon_s / 3600:.0f} h of trace, {len(trace):,} '
          f'requests (workload built in {build:.2f} s); BLAS threads: '
          f'{threads}')
    print(f"{'policy':<22}{'decisions/s':>14}{'x target':>10}"
          f"{'seconds':>10}")
    worst = None
    for name in baselines.BASELINES:
        rate, _, wall, _ = play(wl, sc.cluster, name)
        worst = rate if worst is None else min(worst, rate)
        print(f'{name:<22}{rate:>14,.0f}{rate / TARGET:>10.2f}'
              f'{wall:>10.2f}')
    print(f'slowest heuristic: {worst:,.0f} decisions/s = '
          f'{worst / TARGET:.2f} x the {TARGET:,.0f}/s target')

    short = full.window(0.0, args.feature_hours * 3600.0)
    swl = simulator.Workload(short, seed=0)
    print(f'\nfeature-matrix paths, first {args.feature_hours:g} h '
          f'({len(short):,} requests), against best-fit on the same '
          'window (the median of 5 runs, before and after); decisions/s by '
          'the wall clock and by CPU time (steadier on a shared machine):')
    print(f"{'policy':<20}{'decisions/s':>12}{'x best-fit':>11}"
          f"{'cpu dec/s':>11}{'x best-fit':>11}{'seconds':>9}")
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
    ref = [play(swl, sc.cluster, 'best-fit') for _ in range(5)]
    rows = []
    names = ['bundled', 'bundled:mode=raw']
    if args.artifact:
        names.append(args.artifact)
    profiled = args.artifact or 'bundled'
    for name in names:
        rows.append((name, *play(swl, sc.cluster, name,
                                 profiler if name == profiled else None)))
    ref += [play(swl, sc.cluster, 'best-fit') for _ in range(5)]
    bf_wall = statistics.median(r[0] for r in ref)
    bf_cpu = statistics.median(r[1] for r in ref)
    print(f"{'best-fit':<20}{bf_wall:>12,.0f}{1.0:>11.2f}{bf_cpu:>11,.0f}"
          f"{1.0:>11.2f}{statistics.median(r[2] for r in ref):>9.2f}")
    for name, rate, cpu_rate, wall, m in rows:
        if name == args.artifact:
            print(f'{args.artifact} (gated):')
            name = ''
        print(f'{name:<20}{rate:>12,.0f}{rate / bf_wall:>11.3f}'
              f'{cpu_rate:>11,.0f}{cpu_rate / bf_cpu:>11.3f}{wall:>9.2f}'
              f"   acting on {m['applied_fraction']:.0%}")
    gated, gated_cpu = rows[0][1], rows[0][2]
    met = (gated >= ARTIFACT_TARGET
           and gated / bf_wall >= ARTIFACT_RATIO_TARGET)
    print(f'artifact policy (gated): {gated:,.0f} decisions/s = '
          f'{gated / bf_wall:.3f} x best-fit ({gated_cpu / bf_cpu:.3f} by '
          f'CPU time); target {ARTIFACT_TARGET:,.0f}/s and '
          f'{ARTIFACT_RATIO_TARGET} x best-fit: '
          + ('met' if met else 'not met'))

    env = env_mod.PlacementEnv(trace=short, cluster=sc.cluster,
                               objective='packing')
    obs, info = env.reset(seed=0)
    steps = 0
    started = time.perf_counter()
    while True:
        obs, reward, terminated, truncated, info = env.step(
            info['nova_action'])
        steps += 1
        if terminated or truncated:
            break
    wall = time.perf_counter() - started
    print(f"{'env.step (500 hosts)':<20}{steps / wall:>12,.0f}{'':>33}"
          f'{wall:>9.2f}   (padded observation per step)')

    if profiler is not None:
        import pstats
        print(f'\nprofile of the gated run of {profiled} (by own time):')
        pstats.Stats(profiler).sort_stats('tottime').print_stats(20)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
