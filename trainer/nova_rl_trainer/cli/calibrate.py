"""``nova-rl-trainer calibrate``: a policy's gate calibrated on the
operator's own cloud (see
:mod:`nova_rl_trainer.publishing.cloud_calibration`)."""

from __future__ import annotations

import argparse

from nova_rl_trainer.cli import options
from nova_rl_trainer.cli import output
from nova_rl_trainer.learning import calibration
from nova_rl_trainer.publishing import cloud_calibration
from nova_rl_trainer.simulation import paired


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'calibrate',
        help="calibrate a policy's confidence gate on your own cloud",
        description="Play the policy gated at every confidence level "
                    "against the configured Nova weighers over windows of "
                    "your cloud's trace and cluster (from the states Nova "
                    "built there), as the trainer's windows calibration "
                    "does over its training clusters, and write a copy of "
                    "the policy whose manifest carries this calibration "
                    "(weights unchanged). Then publish the copy as any "
                    "candidate.")
    p.add_argument('--policy', required=True, metavar='DIR',
                   help="the policy artifact ('bundled' is not a path: give "
                        'its directory)')
    p.add_argument('--out', required=True, metavar='DIR',
                   help='new directory for the calibrated copy')
    options.add_setup_options(p, objective_default=None)
    g = p.add_argument_group('calibration')
    g.add_argument('--groups', type=int, default=paired.MIN_GROUPS,
                   metavar='N',
                   help='windows of the trace, the paired groups (default '
                        '%(default)s, the least the bound takes)')
    g.add_argument('--horizon-hours', type=float,
                   default=calibration.DEFAULT_HORIZON_S / 3600,
                   metavar='H',
                   help='simulated hours each window is played (default '
                        '%(default)g: a daily peak inside)')
    options.add_floor_option(g, '--floor')
    g.add_argument('--json', metavar='OUT',
                   help="also write the manifest's new calibration here")
    options.add_fanout_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output.check_writable(args.json)
    try:
        if args.objective is None:
            args.objective = cloud_calibration.manifest_objective(
                args.policy)
        setup = options.setup_from_args(args)
        calib = cloud_calibration.calibrate(
            args.policy, setup, args.out, groups=args.groups,
            horizon_s=args.horizon_hours * 3600.0,
            floor_host_samples=args.floor,
            workers=options.workers_from_args(args, args.groups),
            ray_address=args.ray_address)
    except cloud_calibration.CloudCalibrationError as e:
        raise options.CliError(str(e)) from None
    if args.json:
        output.write_json(args.json, calib)
    print(summary(calib))
    print(f'-> {args.out}')
    return 0


def summary(calib: dict) -> str:
    """One line per level, then the verdict."""
    lines = [f"calibration on {calib['cloud']['trace']} "
             f"({calib['cloud']['hosts']} hosts) against "
             f"{calib['continuation']}, {calib['groups']} windows of up to "
             f"{calib['horizon_s'] / 3600:g} h"
             + ('' if calib['cloud']['independent'] else
                ' (overlapping: the trace is shorter than (groups + 1) x '
                'horizon, so they are not independent)') + ':']
    for row in calib['table']:
        bound = row['upper_95']
        lines.append(
            f"  threshold {row['threshold']:g}: acts on "
            f"{row['acting_share']:.1%}, worst term {row['worst_term']} "
            f"(one-sided 95% bound "
            f"{'n/a' if bound is None else format(bound, '+.1%')})")
    if calib['act'] == 'never':
        lines.append('verdict: never act (no level is at least as good as '
                     'Nova on every checked term)')
    else:
        lines.append(f"verdict: act at threshold "
                     f"{calib['confidence_threshold']:g}")
    return '\n'.join(lines)
