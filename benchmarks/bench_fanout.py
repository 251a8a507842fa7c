"""Fan-out speedup from 1 to 2 workers, measured in one run.

Two workloads the trainer fans out (:class:`Fanout`, local worker
processes):

* an evaluation of several policies (Nova's two configurations, three
  heuristics and the bundled policy gated) on the first ``--hours`` of
  ``azure-v1-test`` (``evaluation.evaluate``, one task per policy);
* calibration of the bundled policy on ``azure-v1-test`` (``--groups``
  held-out starts, ``--samples`` branched decisions in all, branches
  continued a day with ``nova-default``), one task per start.

Each runs with 1 worker (in this process) and with 2 worker processes;
it prints the wall times and their ratio. On a 2-core machine shared with
other work the ratio is a floor of what 2 free cores give.

Run: ``python benchmarks/bench_fanout.py`` (a few minutes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hours', type=float, default=24.0)
    parser.add_argument('--groups', type=int, default=10)
    parser.add_argument('--samples', type=int, default=20)
    parser.add_argument('--skip-evaluation', action='store_true')
    parser.add_argument('--skip-calibration', action='store_true')
    args = parser.parse_args()
    import threadpoolctl
    with threadpoolctl.threadpool_limits(limits=1, user_api='blas'):
        if not args.skip_evaluation:
            _evaluation(args.hours)
        if not args.skip_calibration:
            _calibration(args.groups, args.samples)
    return 0


def _report(name: str, one: float, two: float) -> None:
    print(f'{name}: 1 worker {one:.1f} s, 2 workers {two:.1f} s, '
          f'speedup {one / two:.2f}x')


def _evaluation(hours: float) -> None:
    from nova_rl_trainer.simulation import evaluation
    from nova_rl_trainer.simulation.setup import Setup
    setup = Setup.from_scenario('azure-v1-test',
                                window=(0.0, hours * 3600.0))
    specs = ['nova-default', 'nova-pack', 'best-fit', 'first-fit',
             'load-aware', 'bundled:mode=gated']
    times = []
    for jobs in (1, 2):
        started = time.perf_counter()
        results = evaluation.evaluate(setup, specs, jobs=jobs,
                                      show_progress=False)
        times.append(time.perf_counter() - started)
    decisions = sum(r.metrics['decisions'] for r in results)
    _report(f'evaluate {len(specs)} policies, azure-v1-test first '
            f'{hours:g} h ({decisions:,} decisions)', *times)


def _calibration(groups: int, samples: int) -> None:
    from nova_rl_trainer.learning import calibration
    from nova_rl_trainer.learning import env as env_mod
    from nova_rl_trainer.learning import rollouts
    from nova_rl_trainer.simulation.fanout import Fanout
    from nova_rl_trainer.simulation import policies
    from nova_rl_trainer.simulation import scenarios
    from nova_rl_weigher import artifact

    sc = scenarios.get_scenario('azure-v1-test')
    env = env_mod.PlacementEnv(trace=sc.load_trace(0), cluster=sc.cluster,
                               objective='packing', seed=0,
                               warmup_policy='nova-default')
    arrivals = env.workload(0).trace.arrival_s
    starts = np.linspace(arrivals.min(), arrivals.max(), groups + 2)[1:-1]
    env.prime_starts(starts)
    policy = artifact.load_artifact(policies.bundled_path())
    recipe = rollouts.EnvRecipe.of('bench-calibration', env, starts)
    times, out = [], []
    for workers in (1, 2):
        started = time.perf_counter()
        with Fanout(workers) as fan:
            out.append(calibration.collect(
                env, policy, samples, calibration.DEFAULT_HORIZON_S, starts,
                fan=fan, recipe=recipe))
        times.append(time.perf_counter() - started)
    assert [s.delta for s in out[0]] == [s.delta for s in out[1]]
    branched = sum(not s.same_as_nova for s in out[0])
    _report(f'calibration, {len(out[0])} decisions in {groups} groups '
            f'({branched} branched 24 h with nova-default)', *times)


if __name__ == '__main__':
    raise SystemExit(main())
