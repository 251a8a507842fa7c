"""``nova-rl-trainer publish`` and ``rollback`` (see
:mod:`nova_rl_trainer.publishing.judge`)."""

from __future__ import annotations

import argparse
import os
import sys

from nova_rl_trainer.cli import options
from nova_rl_trainer.cli import output
from nova_rl_trainer.publishing import judge
from nova_rl_trainer.publishing import versions as pv
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import scenarios as scenarios_mod


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``publish`` and ``rollback`` to the trainer CLI's subparsers."""
    p = subparsers.add_parser(
        'publish', help='install a policy at the weigher\'s path if it '
                        'beats the current one and nova-default',
        description='Evaluate the candidate, the policy at the target and '
                    'nova-default on held-out scenarios (gated, as in Nova) '
                    'and install the candidate atomically only if no '
                    'objective term is worse and the objective is better. '
                    'Exit 0 installed, 3 refused, 2 error (the target '
                    'serves what it served before), 4 error after a switch '
                    'that could not be undone (the message says what the '
                    'target serves).')
    p.add_argument('--candidate', required=True, metavar='DIR',
                   help='the policy artifact to publish')
    p.add_argument('--target', required=True, metavar='DIR',
                   help="the path in [rl_weigher] policy_path; becomes a "
                        'symlink into DIR.versions/')
    g = p.add_argument_group('gate')
    g.add_argument('--objective', metavar='NAME',
                   help="the objective to improve (default: the candidate "
                        "manifest's)")
    g.add_argument('--objective-option', action='append', default=[],
                   metavar='KEY=NUMBER',
                   help='term weight (or, for mix, objective weight)')
    g.add_argument('--terms', default='objective',
                   metavar='objective|all|T,...',
                   help="terms that must not get worse: 'objective' (the "
                        "chosen objective's terms, default), 'all' (" +
                        ', '.join(objectives_mod.TERMS) + ') or a list')
    g.add_argument('--tolerance', type=float, default=0.0, metavar='REL',
                   help='relative slack for "not worse", e.g. 0.01 '
                        '(default 0)')
    options.add_floor_option(g, '--floor')
    g.add_argument('--threshold', type=float, metavar='T',
                   help="gate confidence threshold as in nova.conf "
                        "(default: the manifest's calibrated one)")
    g.add_argument('--multiplier', type=float, metavar='M',
                   help='weight_multiplier as in nova.conf (default: the '
                        "option's default)")
    g = p.add_argument_group('held-out evaluation')
    g.add_argument('--scenario', action='append', metavar='NAME',
                   help='repeatable (default: '
                        + ', '.join(judge.DEFAULT_SCENARIOS)
                        + ' unless --trace is given); presets: '
                        + ', '.join(scenarios_mod.SCENARIOS))
    g.add_argument('--seed', action='append', type=int, metavar='S',
                   help='repeatable (default 0)')
    options.add_window_options(g)
    options.add_fanout_options(g, aliases=('--jobs',))
    # The simulate/evaluate commands' trace, cluster and measurement
    # options, so a held-out trace is described the same way everywhere.
    g = p.add_argument_group('other held-out trace (optional)')
    g.add_argument('--trace', metavar='PATH')
    options.add_trace_file_options(g)
    options.add_cluster_options(g)
    options.add_measurement_options(g)
    g = p.add_argument_group('install')
    g.add_argument('--keep', type=int, default=judge.DEFAULT_KEEP,
                   metavar='N',
                   help='previous versions kept for rollback (default '
                        '%(default)s)')
    g.add_argument('--dry-run', action='store_true',
                   help='evaluate and decide, install nothing')
    p.add_argument('--json', metavar='OUT',
                   help='also write the decision and the metrics here')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=run_publish)

    p = subparsers.add_parser(
        'rollback', help='restore the previously published policy')
    p.add_argument('--target', required=True, metavar='DIR')
    p.set_defaults(func=run_rollback)


def _setups_from_args(args: argparse.Namespace) -> list:
    names = args.scenario or ([] if args.trace
                              else list(judge.DEFAULT_SCENARIOS))
    sources = [('scenario', n) for n in names]
    if args.trace:
        sources.append(('trace', args.trace))
    setups = []
    for seed in args.seed or [0]:
        for kind, value in sources:
            ns = argparse.Namespace(**vars(args))
            ns.scenario, ns.trace = ((value, None) if kind == 'scenario'
                                     else (None, value))
            # publish sets the objective; 'packing' only satisfies the
            # validation in setup_from_args.
            ns.objective, ns.objective_option, ns.seed = 'packing', [], seed
            try:
                setups.append(options.setup_from_args(ns))
            except options.CliError as e:
                raise judge.PublishError(str(e)) from None
    return setups


def run_publish(args: argparse.Namespace) -> int:
    try:
        objective_options = objectives_mod.parse_options(
            args.objective_option)
        setups = _setups_from_args(args)
        # Before the install: a --json that cannot be written afterwards
        # would end a successful install with an error.
        output.check_writable(args.json)
        _check_json_apart(args.json, args.target)
        jobs = options.workers_from_args(args, 3 * args.windows)
        result = judge.publish(
            args.candidate, args.target, objective=args.objective,
            objective_options=objective_options, setups=setups,
            tolerance=args.tolerance, floor=args.floor, terms=args.terms,
            keep=args.keep,
            threshold=args.threshold, multiplier=args.multiplier,
            jobs=jobs, dry_run=args.dry_run, show_progress=not args.quiet,
            windows=args.windows, window_days=args.window_days,
            ray_address=args.ray_address)
    except judge.PublishError as e:
        return _error('publish', e)
    except (objectives_mod.ObjectiveError, options.CliError) as e:
        return _error('publish', judge.PublishError(str(e)))
    print(result.table())
    for note in result.notes:
        print(f'note: {note}')
    json_error = _write_json(args.json, result)
    if not result.accepted:
        print(f'REFUSED: {result.candidate_version} was not installed; '
              f'{result.target} is unchanged. Failed:')
        for reason in result.reasons():
            print(f'  - {reason}')
    elif result.dry_run:
        print(f'ACCEPTED (dry run): {result.candidate_version} would be '
              f'installed at {result.target}')
    else:
        print(f'INSTALLED: {result.target} -> {result.installed_as}')
        if result.previous:
            print(f'previous version: {result.previous} (nova-rl-trainer '
                  f'rollback --target {result.target})')
        if result.pruned:
            print('pruned old versions: ' + ', '.join(result.pruned))
        for warning in result.warnings:
            print(f'warning: {warning}', file=sys.stderr)
    if json_error:
        print(f'nova-rl-trainer publish: error: {json_error}; '
              f'{_decided(result)}', file=sys.stderr)
    return result.exit_code


def _check_json_apart(path: str | None, target: str) -> None:
    """OutputError for a --json that the install itself takes over: the
    target, or a path under it or its versions directory (the target
    becomes a symlink into a new version directory, beside
    ``history.json``). Such a path passes the check before the install,
    then fails after it, or writes into the installed version or over the
    history."""
    if path is None:
        return
    bases = set()
    for t in (pv.normalise(target), _parents_resolved(target)):
        bases |= {t, pv.versions_dir(t)}
    for full in (os.path.abspath(path), _parents_resolved(path)):
        for base in sorted(bases):
            if full == base or full.startswith(base + os.sep):
                raise output.OutputError(
                    f'--json {path} is at or under {base}, which publish '
                    'installs into; give a path outside it')


def _parents_resolved(path: str) -> str:
    """``path`` with the symlinks of its parents resolved, not its own:
    what a write to it reaches (a file is written over its own symlink,
    and the target is a symlink that publish replaces)."""
    full = os.path.abspath(path)
    return os.path.join(os.path.realpath(os.path.dirname(full)),
                        os.path.basename(full))


def _write_json(path: str | None, result: judge.PublishResult) -> str | None:
    """Write the decision to --json (if given); the error, if it could not
    be. Checked before the evaluation, it can still fail afterwards (the
    path replaced meanwhile, a full disk), when the decision is made and
    possibly installed: the exit status stays the decision's (0 installed,
    3 refused), not 2, which says that nothing changed."""
    if not path:
        return None
    try:
        output.write_json(path, result.summary())
    except output.OutputError as e:
        return str(e)
    return None


def _decided(result: judge.PublishResult) -> str:
    """What the target serves after a decision, for an error that came
    after it."""
    if not result.accepted:
        return f'the candidate was refused: {result.target} is unchanged'
    if result.dry_run:
        return 'dry run: nothing was changed'
    return (f'the policy was installed all the same: {result.target} -> '
            f'{result.installed_as}')


def run_rollback(args: argparse.Namespace) -> int:
    try:
        outcome = judge.rollback(args.target)
    except judge.PublishError as e:
        return _error('rollback', e)
    print(f'ROLLED BACK: {pv.normalise(args.target)} -> {outcome.restored} '
          f'(policy {outcome.policy_version}); {outcome.replaced} retired')
    for warning in outcome.warnings:
        print(f'warning: {warning}', file=sys.stderr)
    return judge.EXIT_OK


def _error(command: str, e: judge.PublishError) -> int:
    """One line: the error, then what the target serves now."""
    print(f'nova-rl-trainer {command}: error: {e}; {e.outcome}',
          file=sys.stderr)
    return e.exit_code
