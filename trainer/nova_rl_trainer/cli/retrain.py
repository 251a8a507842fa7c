"""``nova-rl-trainer retrain``: the served policy, trained further on the
operator's own workload and cluster.

::

    nova-rl-trainer retrain --policy /var/lib/nova/rl-policy/current \\
        --trace ingested.csv --cluster cluster.json \\
        [--outcomes outcomes.jsonl] --objective packing --out DIR \\
        [--iterations N | --minutes M]

Starts from ``--policy`` (its weights, normalisation and feature ranges;
no warm start), replays the ingested trace in the simulator on the
cluster file's hosts with PPO, calibrates and exports ``DIR/policy`` as
``train`` does. Then it reports, in ``DIR/retrain.json`` and on stdout:

* **simulated**: the objective of the served policy and the new one, gated
  as in Nova and raw (``:raw``, the network's own choices), and of Nova's
  default weighers, replaying the same trace on the same cluster;
* **off-policy** (with ``--outcomes``): the mean delayed cost per logged
  decision of the logged behaviour, and estimates for the served and the
  new policy with 95% bootstrap intervals
  (:mod:`nova_rl_trainer.learning.off_policy`).

The new policy goes through ``nova-rl-trainer publish`` like any other.
Torch is imported on use, as for ``train``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from nova_rl_trainer.cli import options
from nova_rl_trainer.cli import output
from nova_rl_trainer.cli.telemetry_common import error
from nova_rl_weigher import fileio


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'retrain', help='train the served policy further on the cloud\'s '
                        'own trace and cluster, with an off-policy check',
        description='Start from --policy, replay --trace on --cluster in '
                    'the simulator (PPO), export OUT/policy and compare it '
                    'with the served policy in simulation and, with '
                    '--outcomes, on the logged decisions.')
    options.add_setup_options(p)
    p.add_argument('--policy', required=True, metavar='DIR',
                   help='the policy artifact to start from (the served '
                        'one: [rl_weigher] policy_path)')
    p.add_argument('--outcomes', metavar='OUTCOMES_JSONL',
                   help='logged decisions with their outcomes '
                        '(nova-rl-trainer outcomes) for the off-policy '
                        'estimate')
    p.add_argument('--out', required=True, metavar='DIR',
                   help='write policy/, train.json, retrain.json here')
    p.add_argument('--iterations', type=int, default=None,
                   help='PPO iterations (default: --minutes)')
    p.add_argument('--minutes', type=float, default=10.0,
                   help='time budget for RL (default %(default)s)')
    p.add_argument('--rollout-decisions', type=int, default=1024)
    p.add_argument('--vine-states', type=int, default=32,
                   help='branched states per PPO iteration')
    p.add_argument('--vine-horizon', type=int, default=1000,
                   help='decisions each branch is continued for')
    p.add_argument('--calibration-samples', type=int, default=200)
    p.add_argument('--eval-every', type=int, default=5, metavar='N')
    p.add_argument('--bootstrap', type=int, default=200,
                   help='bootstrap resamples of the off-policy interval')
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    options.check_training_options(args)
    if not os.path.isdir(args.policy):
        raise options.CliError(f'--policy {args.policy}: not a directory')
    if args.outcomes and not os.path.isfile(args.outcomes):
        raise options.CliError(f'--outcomes {args.outcomes}: no such file')
    output.check_writable(args.out, directory=True)


def run(args: argparse.Namespace) -> int:
    from nova_rl_trainer.learning import env as env_mod
    from nova_rl_trainer.learning import off_policy
    from nova_rl_trainer.learning import ppo
    from nova_rl_trainer.learning import train
    from nova_rl_trainer.simulation import evaluation
    from nova_rl_trainer.telemetry import outcomes as outcomes_mod
    from nova_rl_weigher import artifact

    _check(args)
    try:
        served = artifact.load_artifact(args.policy)
    except artifact.ArtifactError as e:
        return error(f'--policy {args.policy}: {e}')
    rows = outcomes_mod.read(args.outcomes) if args.outcomes else None
    setup = options.setup_from_args(args)
    objective = setup.make_objective()
    trace = setup.load_trace()
    make_env = env_mod.factory(trace, setup, objective)
    members, _features, hidden = served.params['W1'].shape
    config = train.TrainConfig(
        objective=args.objective, seed=args.seed, members=members,
        hidden=hidden, minutes=None if args.iterations else args.minutes,
        iterations=args.iterations, warm_start=None,
        initial_policy=args.policy,
        calibration_samples=args.calibration_samples,
        eval_every=args.eval_every,
        ppo=ppo.PPOConfig(rollout_decisions=args.rollout_decisions,
                          vine_states=args.vine_states,
                          vine_horizon=args.vine_horizon))
    provenance = {'command': 'nova-rl-trainer retrain',
                  'retrained_from': served.version,
                  'trace': os.path.basename(setup.trace_path or ''),
                  'seed': args.seed, 'nova_weighers': args.nova_weighers}
    trainer = train.Trainer(make_env, args.out, config, provenance,
                            progress=not args.quiet)
    summary = trainer.run()
    new_path = os.path.join(args.out, 'policy')

    # Gated as in Nova, and raw: a policy whose gate abstains plays
    # Nova's choices, so only the raw runs compare the networks.
    specs = {'served': args.policy, 'new': new_path,
             'served:raw': args.policy + ':mode=raw',
             'new:raw': new_path + ':mode=raw',
             'nova-default': 'nova-default'}
    results = evaluation.evaluate(setup, list(specs.values()),
                                  show_progress=False)
    simulated = {name: r.metrics['objective_value']
                 for name, r in zip(specs, results)}
    report = {'served_version': served.version,
              'new_version': summary['policy_version'],
              'objective': objective.describe(),
              'training': summary, 'simulated': simulated}
    if rows is not None:
        new = artifact.load_artifact(new_path)
        report['off_policy'] = {
            name: off_policy.estimate(rows, p.score, objective,
                                      bootstrap=args.bootstrap,
                                      seed=args.seed)
            for name, p in (('served', served), ('new', new))}
    fileio.atomic_write(os.path.join(args.out, 'retrain.json'),
                        json.dumps(report, indent=2))
    _print(report, args.out, sys.stdout)
    return 0


def _print(report: dict, out: str, stream) -> None:
    sim = report['simulated']
    print(f"retrained {report['served_version']} -> "
          f"{report['new_version']} ({report['objective']['name']}) -> "
          f'{out}/policy', file=stream)
    print('simulated objective: ' + ', '.join(
        f'{k} {v:.4g}' for k, v in sim.items()), file=stream)
    for name, e in report.get('off_policy', {}).items():
        if e['method'] == 'none':
            print(f"off-policy {name}: no estimate ({e['reason']})",
                  file=stream)
            continue
        lo, hi = e['interval'] or (float('nan'), float('nan'))
        print(f"off-policy {name}: {e['estimate']:.4g} per decision "
              f"[{lo:.4g}, {hi:.4g}] vs logged {e['logged']:.4g} "
              f"({e['usable']} decisions, same host {e['same_choice']:.0%};"
              f" {e['method'].split(':')[0]})", file=stream)
