"""Simulator throughput at 500 hosts, measured in one run.

Plays the ``azure-v1-test`` scenario (500 hosts of 48 vCPUs / 384 GiB) with
every heuristic baseline and prints placement decisions per second (the
whole run: filtering, scoring, departures, usage samples and metrics),
against the target of 20,000 decisions/s for a heuristic policy on this
2-core machine. Then, on a shorter window, the paths that build the shared
feature matrix for every decision: an artifact policy (the bundled one,
gated, as in Nova) and the gymnasium environment's steps.

Run: ``python benchmarks/bench_simulator.py`` (about two minutes;
``--hours 24`` for a quicker look, ``--full`` for the whole 5.7 days).
"""

from __future__ import annotations

import argparse
import time

from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.learning import env as env_mod
from nova_rl_trainer.simulation import objectives
from nova_rl_trainer.simulation import policies
from nova_rl_trainer.simulation import scenarios
from nova_rl_trainer.simulation import simulator

TARGET = 20000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hours', type=float, default=48.0,
                        help='trace window for the heuristics (default 48)')
    parser.add_argument('--full', action='store_true',
                        help='the whole azure-v1-test trace')
    parser.add_argument('--feature-hours', type=float, default=3.0,
                        help='window for the feature-matrix paths')
    args = parser.parse_args()

    sc = scenarios.get_scenario('azure-v1-test')
    full = sc.load_trace(0)
    trace = full if args.full else full.window(0.0, args.hours * 3600.0)
    t0 = time.perf_counter()
    wl = simulator.Workload(trace, seed=0)
    build = time.perf_counter() - t0
    print(f'azure-v1-test, {sc.cluster.hosts} hosts, '
          f'{trace.horizon_s / 3600:.0f} h of trace, {len(trace):,} '
          f'requests (workload built in {build:.2f} s)')
    print(f"{'policy':<22}{'decisions/s':>14}{'x target':>10}"
          f"{'seconds':>10}")
    worst = None
    for name in baselines.BASELINES:
        sim = simulator.Simulation(wl, sc.cluster,
                                   objectives.load_objective('packing'))
        started = time.perf_counter()
        r = sim.run(policies.make_policy(name))
        wall = time.perf_counter() - started
        rate = r.metrics['decisions'] / wall
        worst = rate if worst is None else min(worst, rate)
        print(f'{name:<22}{rate:>14,.0f}{rate / TARGET:>10.2f}'
              f'{wall:>10.2f}')
    print(f'slowest heuristic: {worst:,.0f} decisions/s = '
          f'{worst / TARGET:.2f} x the {TARGET:,.0f}/s target')

    short = full.window(0.0, args.feature_hours * 3600.0)
    swl = simulator.Workload(short, seed=0)
    for name in ('bundled', 'bundled:mode=raw'):
        sim = simulator.Simulation(swl, sc.cluster,
                                   objectives.load_objective('packing'))
        started = time.perf_counter()
        r = sim.run(policies.make_policy(name))
        wall = time.perf_counter() - started
        print(f"{name:<22}{r.metrics['decisions'] / wall:>14,.0f}"
              f"{'':>10}{wall:>10.2f}   (features + ensemble inference)")

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
    print(f"{'env.step (500 hosts)':<22}{steps / wall:>14,.0f}{'':>10}"
          f'{wall:>10.2f}   (padded observation per step)')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
