"""``nova-rl-trainer train`` command line.

Kept apart from :mod:`nova_rl_trainer.learning.train` so that building the
CLI does not import torch: ``simulate`` and ``evaluate`` start without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from nova_rl_trainer.cli import options


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` to the trainer's CLI (torch is imported on use)."""
    p = sub.add_parser('train', help='learn a policy by reinforcement '
                                     'learning in the simulator')
    options.add_setup_options(p)
    p.add_argument('--out', required=True, metavar='DIR',
                   help='write policy/, train.json, curves.png and '
                        'checkpoint/ here')
    p.add_argument('--minutes', type=float, default=10.0,
                   help='time budget for RL (default %(default)s)')
    p.add_argument('--iterations', type=int, default=None,
                   help='stop after this many PPO iterations instead')
    p.add_argument('--warm-start', default='auto', metavar='HEURISTIC',
                   help="imitate this baseline first; 'auto' picks per "
                        "objective, 'none' starts from scratch")
    p.add_argument('--members', type=int, default=5)
    p.add_argument('--hidden', type=int, default=32)
    p.add_argument('--rollout-decisions', type=int, default=1024)
    p.add_argument('--calibration-samples', type=int, default=200)
    p.add_argument('--eval-every', type=int, default=5, metavar='N',
                   help='judge the greedy policy on the held-out '
                        'validation episode every N PPO iterations '
                        '(default %(default)s); each point of curves.png')
    p.add_argument('--advantage', choices=('vine', 'gae'), default='vine',
                   help="'vine': branch the simulation and compare tried "
                        "actions (default); 'gae': learned critic on "
                        "on-policy rewards")
    p.add_argument('--vine-states', type=int, default=32,
                   help='branched states per PPO iteration')
    p.add_argument('--vine-horizon', type=int, default=1000,
                   help='decisions each branch is continued for')
    p.add_argument('--continuation', default='auto', metavar='HEURISTIC',
                   help="baseline that continues the branches; 'auto': "
                        "the objective's warm-start heuristic")
    p.add_argument('--resume', action='store_true',
                   help='continue from OUT/checkpoint')

    def cmd(args: argparse.Namespace) -> int:
        from nova_rl_trainer.learning import env as env_mod
        from nova_rl_trainer.learning import ppo
        from nova_rl_trainer.learning import train
        setup = options.setup_from_args(args)
        objective = setup.make_objective()
        trace = setup.load_trace()

        def make_env():
            return env_mod.PlacementEnv(
                trace=trace, cluster=setup.cluster, objective=objective,
                config=setup.config, seed=setup.seed)
        config = train.TrainConfig(
            objective=args.objective, seed=args.seed, members=args.members,
            hidden=args.hidden, minutes=None if args.iterations else
            args.minutes, iterations=args.iterations,
            warm_start=None if args.warm_start == 'none' else
            args.warm_start, calibration_samples=args.calibration_samples,
            eval_every=args.eval_every,
            continuation=args.continuation,
            ppo=ppo.PPOConfig(rollout_decisions=args.rollout_decisions,
                              advantage=args.advantage,
                              vine_states=args.vine_states,
                              vine_horizon=args.vine_horizon))
        provenance = {'command': 'nova-rl-trainer ' + ' '.join(
            sys.argv[1:]) if sys.argv[0].endswith('nova-rl-trainer')
            else 'nova-rl-trainer train', 'scenario': setup.name,
            'trace': os.path.basename(setup.trace_path),
            'seed': args.seed, 'nova_weighers': args.nova_weighers}
        trainer = train.Trainer(make_env, args.out, config, provenance,
                                progress=not args.quiet)
        summary = trainer.run(resume=args.resume)
        print(json.dumps(summary, indent=2))
        return 0
    p.set_defaults(func=cmd)
