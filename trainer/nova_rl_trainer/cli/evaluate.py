"""``nova-rl-trainer evaluate``: several policies on one trace, side by
side, with a report."""

from __future__ import annotations

import argparse

from nova_rl_trainer.cli import options
from nova_rl_trainer.cli import output
from nova_rl_trainer.simulation import evaluation
from nova_rl_trainer.simulation import policies as policies_mod


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('evaluate', help='compare policies on a trace')
    options.add_setup_options(p)
    p.add_argument('--policies', required=True, metavar='A,B,...',
                   help='comma-separated policy names or paths; the '
                        'options of one policy are comma-separated after '
                        'its colon (e.g. PATH:threshold=0.3,multiplier=2)')
    p.add_argument('--json', required=True, metavar='OUT',
                   help='write a list of metrics, one per policy')
    p.add_argument('--report', required=True, metavar='DIR',
                   help='write report.md, metrics.csv and plots here')
    options.add_fanout_options(p, aliases=('--jobs',))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nova_rl_trainer.publishing import report
    specs = policies_mod.split_specs(args.policies)
    if not specs:
        raise options.CliError('--policies is empty')
    output.check_writable(args.json)
    output.check_writable(args.report, directory=True)
    setup = options.setup_from_args(args)
    results = evaluation.evaluate(
        setup, specs, jobs=options.workers_from_args(args, len(specs)),
        show_progress=not args.quiet, ray_address=args.ray_address)
    output.write_json(args.json, [r.metrics for r in results])
    files = report.write_report(
        results, args.report,
        title=f'Evaluation on {setup.name or setup.trace_path}')
    print(report.markdown_table(results))
    print(f'-> {args.json}, report in {args.report} ({len(files)} files)')
    return 0
