"""``nova-rl-trainer simulate``: one policy on one trace."""

from __future__ import annotations

import argparse

from nova_rl_trainer.cli import options
from nova_rl_trainer.cli import output
from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.simulation import evaluation
from nova_rl_trainer.simulation import policies as policies_mod


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('simulate', help='run one policy on a trace')
    options.add_setup_options(p)
    p.add_argument('--policy', required=True, metavar='NAME_OR_PATH',
                   help='baseline (' + ', '.join(baselines.BASELINES)
                        + f'), {policies_mod.BUNDLED!r}, or a policy '
                        'artifact directory; options after a colon, e.g. '
                        'bundled:mode=raw')
    p.add_argument('--json', required=True, metavar='OUT',
                   help='write the metrics here')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output.check_writable(args.json)
    setup = options.setup_from_args(args)
    results = evaluation.evaluate(setup, [args.policy], jobs=1,
                                  show_progress=not args.quiet)
    m = results[0].metrics
    output.write_json(args.json, m)
    print(f"{m['policy']}: {m['decisions']} decisions, {m['rejected']} "
          f"rejected, {m['active_host_hours']:,.0f} active host-h (lower "
          f"bound {m['lb_host_hours']:,.0f}), {m['overload_host_hours']:,.1f}"
          f" overload host-h, objective {m['objective']} = "
          f"{m['objective_value']:,.2f} -> {args.json}")
    return 0
