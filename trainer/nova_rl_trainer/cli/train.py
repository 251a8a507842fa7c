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
from nova_rl_trainer.cli import output
from nova_rl_trainer.simulation import family as family_mod
from nova_rl_trainer.simulation import fanout


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
    p.add_argument('--imitation-steps', type=int, default=200, metavar='N',
                   help='gradient steps (batches of 128 decisions) of the '
                        'warm start\'s imitation (default %(default)s: a '
                        'rough copy, enough for PPO to start from; a '
                        'heuristic that ranks by a formula of the features, '
                        'such as load-aware, takes about 2000 to copy '
                        'closely)')
    p.add_argument('--imitation-decisions', type=int, default=20000,
                   metavar='N',
                   help="the heuristic's decisions imitated, shared "
                        'equally among the family members (default '
                        '%(default)s)')
    p.add_argument('--imitation-clusters', choices=('warm-up', 'both'),
                   default='warm-up',
                   help="where the imitated decisions start: 'warm-up' "
                        "(default: the clusters the warm-up heuristic "
                        "built, where PPO's episodes start) or 'both' "
                        "(half of them from the clusters Nova's weighers "
                        'built, where the weigher acts: hotter states, '
                        'which the training ranges then cover; no change '
                        'when the warm-up heuristic is those weighers, as '
                        'for pareto)')
    p.add_argument('--members', type=int, default=5)
    p.add_argument('--hidden', type=int, default=32)
    p.add_argument('--rollout-decisions', type=int, default=1024)
    p.add_argument('--calibration-samples', type=int, default=200)
    p.add_argument('--calibration-method',
                   choices=('auto', 'branch', 'windows'), default='auto',
                   help="how the confidence threshold is calibrated: "
                        "'branch' compares single held-out decisions with "
                        "Nova's (--calibration-samples of them); 'windows' "
                        'plays the policy gated at each confidence level '
                        "against Nova's weighers for a day from held-out "
                        'starts, every term the objective checks bounded '
                        "(a constrained objective's benefit is collective: "
                        "one decision cannot show it); 'auto' (default): "
                        'windows for a constrained objective (pareto), '
                        'else branch')
    options.add_floor_option(p, '--calibration-floor',
                             "'windows' calibration: ")
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
    p.add_argument('--shield-max-cpu-peak', type=float, default=None,
                   metavar='SHARE',
                   help="write a shield into the policy: it prefers only "
                        "hosts whose projected CPU peak after the placement "
                        "(24 h peak plus what was allocated since the usage "
                        "sample plus the request, as a share of the host's "
                        "cores) stays within SHARE, in (0, 1]; validation "
                        "and calibration judge it so (default: none)")
    p.add_argument('--resume', action='store_true',
                   help='continue from OUT/checkpoint (an error if there '
                        'is none)')
    g = p.add_argument_group('a family of clusters')
    g.add_argument('--family', metavar='default|FILE',
                   help="train for a family of clusters and workloads "
                        "drawn from ranges ('default', or a JSON file of "
                        'ranges; keys in nova_rl_trainer.simulation.family) '
                        "over the trace of --scenario/--trace, instead of "
                        "the one cluster")
    g.add_argument('--family-members', type=int, default=8, metavar='K',
                   help='clusters drawn from the family (seeded by --seed), '
                        'each with its own episodes and held-out part '
                        '(default %(default)s)')
    g = p.add_argument_group('fan-out of the rollouts')
    g.add_argument('--rollout-members', type=int, default=1, metavar='R',
                   help="each PPO iteration's branched states come from R "
                        'members (shards with their own seeds; the weights '
                        'depend on R, not on --workers) (default '
                        '%(default)s)')
    g.add_argument('--workers', type=int, default=1, metavar='N',
                   help='collect the shards in N local worker processes, '
                        'each keeping the environments of the members it '
                        'was given (default %(default)s: in this process)')
    g.add_argument('--ray-address', metavar='HOST:PORT',
                   help='collect the shards as tasks on this Ray cluster '
                        'instead')

    def cmd(args: argparse.Namespace) -> int:
        from nova_rl_trainer.learning import env as env_mod
        from nova_rl_trainer.learning import ppo
        from nova_rl_trainer.learning import train
        options.check_training_options(args)
        output.check_writable(args.out, directory=True)
        if args.resume:
            check_resume(args.out)
        setup = options.setup_from_args(args)
        # One objective for every environment: a constrained objective's
        # multipliers, set by the trainer, then hold everywhere.
        objective = setup.make_objective()
        limit = args.shield_max_cpu_peak
        if limit is not None and not 0 < limit <= 1:
            raise options.CliError('--shield-max-cpu-peak must be in (0, 1], '
                                   f'not {limit:g}')
        if args.family is not None:
            family = family_mod.ClusterFamily.named(args.family)
            members = family.members(setup, args.family_members, args.seed)
            make_env = [env_mod.factory(m.trace, m.setup, objective)
                        for m in members]
        else:
            make_env = env_mod.factory(setup.load_trace(), setup, objective)
        config = train.TrainConfig(
            objective=args.objective, seed=args.seed, members=args.members,
            hidden=args.hidden, minutes=None if args.iterations else
            args.minutes, iterations=args.iterations,
            warm_start=None if args.warm_start == 'none' else
            args.warm_start, imitation_steps=args.imitation_steps,
            imitation_decisions=args.imitation_decisions,
            imitation_clusters=args.imitation_clusters,
            calibration_samples=args.calibration_samples,
            calibration_method=args.calibration_method,
            calibration_floor=args.calibration_floor,
            eval_every=args.eval_every,
            continuation=args.continuation,
            rollout_members=args.rollout_members, workers=args.workers,
            ray_address=args.ray_address,
            shield_max_cpu_peak=args.shield_max_cpu_peak,
            ppo=ppo.PPOConfig(rollout_decisions=args.rollout_decisions,
                              advantage=args.advantage,
                              vine_states=args.vine_states,
                              vine_horizon=args.vine_horizon))
        provenance = {'command': 'nova-rl-trainer ' + ' '.join(
            sys.argv[1:]) if sys.argv[0].endswith('nova-rl-trainer')
            else 'nova-rl-trainer train', 'scenario': setup.name,
            'trace': os.path.basename(setup.trace_path),
            'seed': args.seed, 'nova_weighers': args.nova_weighers}
        if args.family is not None:
            provenance['family'] = {
                'ranges': family.describe(),
                'members': [m.describe() for m in members]}
        trainer = train.Trainer(make_env, args.out, config, provenance,
                                progress=not args.quiet)
        try:
            summary = trainer.run(resume=args.resume)
        except fanout.FanoutError as e:
            raise options.CliError(str(e)) from None
        except train.NoCheckpoint as e:
            # The checkpoint went after check_resume() looked.
            raise options.CliError(f'--resume: {e}') from None
        print(json.dumps(summary, indent=2))
        return 0
    p.set_defaults(func=cmd)


def check_resume(out: str) -> None:
    """CliError unless ``out`` holds a checkpoint to resume from: the
    trainer's own check (:func:`train.check_resume`), made here before the
    trace is read so that the refusal comes before any work."""
    from nova_rl_trainer.learning import train
    try:
        train.check_resume(out)
    except train.NoCheckpoint as e:
        raise options.CliError(f'--resume: {e}') from None
