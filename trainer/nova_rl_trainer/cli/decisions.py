"""``nova-rl-trainer decisions``: what the weigher's decision logs say.

::

    nova-rl-trainer decisions --log DIR --report OUT [--since T] [--until T]

Reads every decision log file in ``DIR`` (``[rl_weigher]
decision_log_dir``: all scheduler processes' files, rotated and current,
gzip-compressed too; see :mod:`nova_rl_weigher.decision_records`) and
writes into ``OUT`` ``report.md`` with its plots (acting share over time,
reasons for abstaining, agreement with Nova's choice, confidence, the
features that set the policy's choice apart; :mod:`publishing.
decisions_report`) and ``summary.json`` (:mod:`publishing.
decisions_summary`), per policy version: what an operator reads before
moving a policy from ``shadow`` to ``gated``.

Exit status 0 when the report is written (also for a log with no records:
the report says so), 2 with one line on stderr for a ``--log`` that is not a
readable directory.
"""

from __future__ import annotations

import argparse
import math
import os

from nova_rl_trainer.cli import options
from nova_rl_trainer.cli import output
from nova_rl_trainer.publishing import decisions_report
from nova_rl_trainer.publishing import decisions_summary
from nova_rl_weigher import decision_records

MIB = 1024 * 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'decisions', help='summarise the weigher\'s decision logs',
        description='Summarise the decision logs of nova-rl-weigher '
                    '(acting share, reasons for abstaining, agreement with '
                    "Nova's choice, confidence, features) as a markdown "
                    'report with plots and summary.json.')
    p.add_argument('--log', required=True, metavar='DIR',
                   help='the decision log directory ([rl_weigher] '
                        'decision_log_dir)')
    p.add_argument('--report', required=True, metavar='OUT',
                   help='write report.md, the plots and summary.json here')
    p.add_argument('--since', type=float, metavar='UNIX_TIME',
                   help='only calls at or after this time')
    p.add_argument('--until', type=float, metavar='UNIX_TIME',
                   help='only calls before this time')
    p.add_argument('--max-file-mb', type=int,
                   default=decision_records.DEFAULT_MAX_FILE_BYTES // MIB,
                   help='skip (and report) log files larger than this '
                        '(default %(default)s)')
    p.add_argument('--quiet', action='store_true',
                   help='print nothing but errors')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_file_mb < 1:
        raise options.CliError('--max-file-mb must be at least 1')
    for name in ('since', 'until'):
        value = getattr(args, name)
        # NaN compares false with every time: the report would silently
        # hold no call.
        if value is not None and not math.isfinite(value):
            raise options.CliError(f'--{name} {value:g}: must be a Unix '
                                   'time')
    output.check_writable(args.report, directory=True)
    stats = decision_records.ReadStats()
    try:
        records = decision_records.iter_records(
            args.log, stats, max_file_bytes=args.max_file_mb * MIB)
    except OSError as e:
        raise options.CliError(
            f'--log {args.log}: {e.strerror or e}') from None
    if args.since is not None or args.until is not None:
        since = float('-inf') if args.since is None else args.since
        until = float('inf') if args.until is None else args.until
        records = (r for r in records if since <= r.time < until)
    summary = decisions_summary.summarise(records, stats,
                                          source=os.path.abspath(args.log))
    files = decisions_report.write_report(summary, args.report)
    summary_path = os.path.join(args.report, 'summary.json')
    output.write_json(summary_path, summary)
    if not args.quiet:
        overall = summary['overall']
        print(f"{overall['calls']:,} decisions in {stats.files} files "
              f'({stats.malformed + stats.truncated} lines skipped, '
              f'{len(stats.refused)} files not read); report in '
              f'{args.report} ({len(files) + 1} files)')
    return 0
