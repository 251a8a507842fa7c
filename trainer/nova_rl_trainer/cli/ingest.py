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
import logging
import sys
from typing import Sequence

from nova_rl_trainer.cli import output
from nova_rl_trainer.telemetry import ingest as ingest_mod
from nova_rl_trainer.telemetry import sources


def _source_name(argv: Sequence[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == '--source' and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith('--source='):
            return a.split('=', 1)[1]
    return None


class _IngestParser(argparse.ArgumentParser):
    """Adds the chosen source's options (and, for the auth plugin the
    user picked, that plugin's) before parsing: which options exist
    depends on other options, as in the ``openstack`` command line."""

    _source_registered = False

    def parse_known_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        name = _source_name(argv)
        if name is not None and not self._source_registered:
            self._source_registered = True
            try:
                cls = sources.source_class(name)
                cls.add_arguments(self, argv)
            except ValueError as e:
                self.error(str(e))
        return super().parse_known_args(argv, namespace)


def register(sub: argparse._SubParsersAction) -> None:
    names = _available()
    p = sub.add_parser(
        'ingest', help="read a cloud's workload from its telemetry into a "
                       'trace',
        description='Every instance that lived in [--start, --stop) as '
                    "the trainer's CSV trace (plus a host column). Give "
                    '--source NAME first to see that source\'s options '
                    '(--source gnocchi --help).')
    p.__class__ = _IngestParser
    p.add_argument('--source', required=True, metavar='NAME',
                   help='metrics source: ' + (', '.join(names) or 'none '
                                              'installed'))
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


def _available() -> list[str]:
    try:
        return sources.available_sources()
    except Exception:  # noqa: BLE001 - only for the help text
        return ['gnocchi', 'csv']


def run(args: argparse.Namespace) -> int:
    # keystoneauth1 logs every retry with the whole urllib3 error: the
    # one-line error at the end says what failed.
    logging.getLogger('keystoneauth').setLevel(logging.ERROR)
    try:
        cls = sources.source_class(args.source)
        with cls.from_arguments(args) as source:
            result = ingest_mod.ingest(source, args.start, args.stop)
        target = args.out
        ingest_mod.write_trace(result.rows, target)
        summary = dict(result.summary, out=args.out)
        if args.json:
            target = args.json
            output.write_json(args.json, summary)
    except sources.SourceError as e:
        print(f'nova-rl-trainer: error: {e}', file=sys.stderr)
        return 2
    except OSError as e:
        print(f'nova-rl-trainer: error: cannot write {target}: '
              f'{e.strerror or e}', file=sys.stderr)
        return 2
    if not args.quiet:
        for w in result.warnings:
            print(f'nova-rl-trainer: warning: {w}', file=sys.stderr)
        s = result.summary
        print(f"{s['instances']} instances ({s['with_usage']} with CPU "
              f"usage, {s['without_usage']} without, "
              f"{s['running_at_stop']} running at --stop) from "
              f"{args.source} -> {args.out}")
    return 0
