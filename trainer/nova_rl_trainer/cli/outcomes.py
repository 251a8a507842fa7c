"""``nova-rl-trainer outcomes``: the delayed reward of every logged decision.

::

    nova-rl-trainer outcomes --decisions /var/log/nova/rl-decisions \\
        --source gnocchi [auth] --cluster cluster.json \\
        --out outcomes.jsonl [--horizon-s 21600] [--since ISO8601] \\
        [--until ISO8601] [--json SUMMARY]

Each decision record of ``--decisions`` (the weigher's
``decision_log_dir``, rotated files included) joined with what followed on
the host the instance went to, over ``--horizon-s`` after the decision:
overload and hot minutes, the instance's used/allocated CPU, whether the
host emptied, and every objective's terms (see
:mod:`nova_rl_trainer.telemetry.outcomes`). Host capacities and power come
from ``--cluster`` (``nova-rl-trainer cluster --from-placement`` writes
it). ``retrain --outcomes`` reads the output.

Exit status 0 when the file is written, 2 with one line on stderr
otherwise; the output is replaced atomically. A ``--decisions`` with no
decision log file in it is a warning: the file is written, empty. With
nothing to join (no decision in the window names an instance and its
hosts) the source is not queried, and the summary line says so; its
options are still checked.
"""

from __future__ import annotations

import argparse
import datetime as dt

from nova_rl_trainer.cli import options
from nova_rl_trainer.cli.telemetry_common import add_source_option
from nova_rl_trainer.cli.telemetry_common import error
from nova_rl_trainer.cli.telemetry_common import Outputs
from nova_rl_trainer.cli.telemetry_common import warn
from nova_rl_trainer.simulation.cluster import ClusterFileError
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.simulator import SimConfig
from nova_rl_trainer.telemetry import outcomes as outcomes_mod
from nova_rl_trainer.telemetry import sources
from nova_rl_weigher import decision_records
from nova_rl_weigher.log_files import PREFIX
from nova_rl_weigher.log_files import SUFFIX


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'outcomes', help='join logged decisions with what followed, from '
                         'telemetry',
        description='Each decision-log record joined with what followed '
                    'on the chosen host and for the instance over '
                    '--horizon-s: the delayed reward of every real '
                    "decision. Give --source NAME first to see that "
                    "source's options (--source gnocchi --help).")
    add_source_option(p)
    p.add_argument('--decisions', required=True, metavar='DIR',
                   help="the weigher's decision log directory "
                        '([rl_weigher] decision_log_dir)')
    p.add_argument('--cluster', required=True, metavar='FILE',
                   help='host capacities and power model (a cluster file, '
                        'e.g. from cluster --from-placement)')
    p.add_argument('--out', required=True, metavar='OUTCOMES_JSONL',
                   help='write one JSON line per joined decision here')
    p.add_argument('--horizon-s', type=float,
                   default=outcomes_mod.DEFAULT_HORIZON_S, metavar='S',
                   help='how long after each decision to measure (default '
                        '%(default)g)')
    options.add_hot_threshold_option(p)
    p.add_argument('--since', type=sources.time_arg, metavar='ISO8601',
                   help='only decisions at or after this time')
    p.add_argument('--until', type=sources.time_arg, metavar='ISO8601',
                   help='only decisions before this time')
    p.add_argument('--json', metavar='SUMMARY',
                   help='write the counts here (decisions, joined, '
                        'complete, skipped_<reason>, ...)')
    p.add_argument('--quiet', action='store_true',
                   help='no warnings, no summary line')
    p.set_defaults(func=run)


def _in_window(t: float, since: dt.datetime | None,
               until: dt.datetime | None) -> bool:
    return ((since is None or t >= since.timestamp())
            and (until is None or t < until.timestamp()))


def _log_warnings(directory: str, stats: decision_records.ReadStats
                  ) -> list[str]:
    """What reading the decision log skipped; and a directory with no log
    file at all (a wrong --decisions, or the weigher's decision_log_dir
    unset), which otherwise passes for a quiet night: 0 of 0 joined."""
    if not stats.files and not stats.refused:
        return [f'--decisions {directory}: no decision log files '
                f'({PREFIX}*{SUFFIX}*) in it, nothing to join']
    if stats.skipped_lines or stats.refused:
        return [f'decision log: {stats.skipped_lines} lines skipped, '
                f'{len(stats.refused)} files refused']
    return []


def run(args: argparse.Namespace) -> int:
    stats = decision_records.ReadStats()
    try:
        records = [r for r in decision_records.iter_records(
            args.decisions, stats) if _in_window(r.time, args.since,
                                                 args.until)]
    except OSError as e:
        return error(f'--decisions {args.decisions}: {e.strerror or e}')
    with Outputs(args.out, ClusterFileError) as out:
        out.check(args.out, args.json)
        cluster = ClusterSpec.from_file(args.cluster)
        config = SimConfig(hot_threshold=args.hot_threshold)
        cls = sources.source_class(args.source)
        with cls.from_arguments(args) as source:
            result = outcomes_mod.join(records, source, cluster,
                                       horizon_s=args.horizon_s,
                                       config=config)
        outcomes_mod.write(result.rows, args.out)
        out.write_json(args.json, dict(result.summary, out=args.out,
                                       log=stats.as_dict()))
    if out.failed:
        return 2
    if not args.quiet:
        warn(_log_warnings(args.decisions, stats) + list(result.warnings))
        s = result.summary
        if result.queried:
            print(f"{s['joined']} of {s['decisions']} decisions joined "
                  f"({s['complete']} with the whole {args.horizon_s:g} s "
                  f"horizon) from {args.source} -> {args.out}")
        else:
            # "from gnocchi" would claim a read that did not happen.
            print(f"{s['joined']} of {s['decisions']} decisions joined: "
                  f'nothing to join, {args.source} not queried -> '
                  f'{args.out}')
    return 0
