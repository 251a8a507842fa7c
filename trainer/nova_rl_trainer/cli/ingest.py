"""``nova-rl-trainer ingest``: an operator's workload as a trace.

::

    nova-rl-trainer ingest --source gnocchi [auth] --start ISO8601 \\
        --stop ISO8601 --out trace.csv [--json SUMMARY]
    nova-rl-trainer ingest --source csv --trace PATH --start ... --stop ...

Every instance that lived in the window, read from a metrics source
(plugins of ``nova_rl_trainer.metrics_sources``), written as the trainer's
CSV trace plus a ``host`` column (see
:mod:`nova_rl_trainer.telemetry.ingest`); ``--json`` writes the counts.
The auth options are keystoneauth1's, as the ``gnocchi`` and ``openstack``
command lines take them; for a standalone Gnocchi,
``OS_AUTH_TYPE=gnocchi-basic GNOCCHI_USER=admin
GNOCCHI_ENDPOINT=http://gnocchi:8041``. Run ``nova-rl-trainer ingest
--source gnocchi --help`` for all of them.

Exit status 0 when the trace is written, 2 with one line on stderr when the
source cannot answer or the input is wrong; the output files are replaced
atomically, so a failure never leaves a half-written one.
"""

from __future__ import annotations

import argparse

from nova_rl_trainer.cli.telemetry_common import add_source_option
from nova_rl_trainer.cli.telemetry_common import Outputs
from nova_rl_trainer.cli.telemetry_common import warn
from nova_rl_trainer.telemetry import ingest as ingest_mod
from nova_rl_trainer.telemetry import sources


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'ingest', help="read a cloud's workload from its telemetry into a "
                       'trace',
        description='Every instance that lived in [--start, --stop) as '
                    "the trainer's CSV trace (plus a host column). Give "
                    '--source NAME first to see that source\'s options '
                    '(--source gnocchi --help).')
    add_source_option(p)
    p.add_argument('--start', required=True, type=sources.time_arg,
                   metavar='ISO8601', help='window start (UTC unless an '
                                           'offset is given)')
    p.add_argument('--stop', required=True, type=sources.time_arg,
                   metavar='ISO8601', help='window end (excluded)')
    p.add_argument('--out', required=True, metavar='TRACE_CSV',
                   help='write the trace here')
    p.add_argument('--json', metavar='SUMMARY',
                   help='write the counts here (instances, with_usage, '
                        'without_usage, ...)')
    p.add_argument('--quiet', action='store_true',
                   help='no warnings, no summary line')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with Outputs(args.out) as out:
        out.check(args.out, args.json)
        cls = sources.source_class(args.source)
        with cls.from_arguments(args) as source:
            result = ingest_mod.ingest(source, args.start, args.stop)
        ingest_mod.write_trace(result.rows, args.out)
        out.write_json(args.json, dict(result.summary, out=args.out))
    if out.failed:
        return 2
    if not args.quiet:
        warn(result.warnings)
        s = result.summary
        print(f"{s['instances']} instances ({s['with_usage']} with CPU "
              f"usage, {s['without_usage']} without, "
              f"{s['running_at_stop']} running at --stop) from "
              f"{args.source} -> {args.out}")
    return 0
