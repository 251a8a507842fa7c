"""``nova-rl-trainer snapshot``: the weigher's usage snapshot from
telemetry.

::

    nova-rl-trainer snapshot --source gnocchi [auth] --window-s 3600 \\
        --out /var/lib/nova/rl-usage.json \\
        (--cluster cluster.json | --from-placement [--placement-cloud NAME]
                                                   [--placement-endpoint URL])
        [--at ISO8601] [--json SUMMARY]

Per host (Nova's compute host names) CPU and memory use over the last
``--window-s`` seconds (mean, p95) as fractions of the host's physical
cores and RAM, per project the measured used/allocated CPU (see
:mod:`nova_rl_trainer.telemetry.snapshot`), written with the weigher's
own writer: checked as ``[rl_weigher] usage_snapshot_path`` will be read,
replaced atomically. Meant for a timer every few minutes
(``etc/systemd/nova-rl-snapshot.timer``).

Host capacities come from a cluster file (``--cluster``, e.g. written by
``nova-rl-trainer cluster --from-placement``) or from Placement at each
run (``--from-placement``): through the metrics source's own Keystone
session (the same ``--os-*`` options, ``OS_*`` variables or
``--os-cloud``; the catalog's ``placement`` endpoint unless
``--placement-endpoint``), or through a clouds.yaml cloud of its own
(``--placement-cloud NAME``), which a standalone Gnocchi
(``gnocchi-basic``) needs.

Exit status 0 when the snapshot is written, 2 with one line on stderr
otherwise; a failure leaves the previous snapshot in place (the weigher
abstains once it is older than ``snapshot_max_age_s``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math

from nova_rl_trainer.cli.telemetry_common import add_source_option
from nova_rl_trainer.cli.telemetry_common import error
from nova_rl_trainer.cli.telemetry_common import Outputs
from nova_rl_trainer.cli.telemetry_common import warn
from nova_rl_trainer.simulation.cluster import ClusterFileError
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.telemetry import auth
from nova_rl_trainer.telemetry import placement
from nova_rl_trainer.telemetry import snapshot as snapshot_mod
from nova_rl_trainer.telemetry import sources


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'snapshot', help="write the weigher's usage snapshot from "
                         'telemetry',
        description='Per host CPU and memory use (mean, p95) over the last '
                    '--window-s seconds as fractions of its physical '
                    'capacity, per project used/allocated CPU, written '
                    "atomically as the weigher's usage snapshot. Give "
                    "--source NAME first to see that source's options "
                    '(--source gnocchi --help).')
    add_source_option(p)
    p.add_argument('--window-s', required=True, type=float, metavar='S',
                   help='the last S seconds (the simulator, and so the '
                        "policy's training, uses 3600)")
    p.add_argument('--peak-window-s', type=float, metavar='S',
                   default=snapshot_mod.PEAK_WINDOW_S,
                   help='span of the daily peaks (format v2: '
                        'cpu_util_peak_24h, mem_util_peak_24h, '
                        'cpu_ratio_peak_24h; default %(default)g)')
    p.add_argument('--lifetime-window-s', type=float, metavar='S',
                   default=snapshot_mod.LIFETIME_WINDOW_S,
                   help='instances that ended in the last S seconds give '
                        'the lifetime statistics (format v2; default '
                        '%(default)g)')
    p.add_argument('--at', type=sources.time_arg, metavar='ISO8601',
                   help='end of the window instead of now (tests, replay)')
    p.add_argument('--out', required=True, metavar='PATH',
                   help="the snapshot file ([rl_weigher] "
                        'usage_snapshot_path)')
    hosts = p.add_mutually_exclusive_group(required=True)
    hosts.add_argument('--cluster', metavar='FILE',
                       help='host capacities from this cluster file (its '
                            "groups' hosts names, or <name>-<i>)")
    hosts.add_argument('--from-placement', action='store_true',
                       help='host capacities from the Placement API')
    g = p.add_argument_group('Placement (with --from-placement)')
    g.add_argument('--placement-cloud', metavar='NAME',
                   help="a clouds.yaml cloud for Placement (default: the "
                        "metrics source's Keystone session)")
    g.add_argument('--placement-endpoint', metavar='URL',
                   help="Placement's URL instead of the catalog's")
    p.add_argument('--json', metavar='SUMMARY',
                   help='write the counts here (hosts, instances, ...)')
    p.add_argument('--quiet', action='store_true',
                   help='no warnings, no summary line')
    p.set_defaults(func=run)


def _capacities(args: argparse.Namespace, source: sources.MetricsSource
                ) -> tuple[dict, dict | None, list[str]]:
    """Host capacities, Placement's counts (or None) and warnings."""
    if args.cluster:
        cluster = ClusterSpec.from_file(args.cluster)
        return snapshot_mod.capacities_from_cluster(cluster), None, []
    retries = getattr(args, 'retries', auth.DEFAULT_RETRIES)
    if args.placement_cloud:
        conn = placement.cloud_connection(args.placement_cloud, retries)
        if args.placement_endpoint:
            conn.adapter_options['endpoint_override'] = \
                args.placement_endpoint
    else:
        shared = getattr(source, 'connection', None)
        if shared is None:
            raise sources.SourceError(
                f'--from-placement: the metrics source {source.name} has '
                'no OpenStack session; give --placement-cloud NAME or '
                '--cluster FILE')
        conn = placement.shared_connection(shared, args.placement_endpoint)
    client = placement.PlacementClient(conn)
    found = placement.read_hosts(client)
    if not found.hosts:
        raise sources.SourceError(
            f'Placement at {found.endpoint} has no compute hosts (no '
            'resource provider with VCPU and MEMORY_MB inventories)')
    return (snapshot_mod.capacities_from_hosts(found.hosts), found.summary,
            found.warnings)


def run(args: argparse.Namespace) -> int:
    if args.placement_cloud or args.placement_endpoint:
        if not args.from_placement:
            return error('--placement-cloud and --placement-endpoint go '
                         'with --from-placement')
    for name, value in (('--window-s', args.window_s),
                        ('--peak-window-s', args.peak_window_s),
                        ('--lifetime-window-s', args.lifetime_window_s)):
        if not (math.isfinite(value) and value > 0):
            return error(f'{name} {value:g}: must be a positive number of '
                         'seconds')
    stop = args.at or dt.datetime.now(dt.timezone.utc)
    with Outputs(args.out, ClusterFileError) as out:
        out.check(args.out, args.json)
        cls = sources.source_class(args.source)
        with cls.from_arguments(args) as source:
            capacities, placement_summary, warnings = _capacities(
                args, source)
            snap = snapshot_mod.build_v2(
                source, capacities, stop, args.window_s,
                args.peak_window_s, args.lifetime_window_s)
        snapshot_mod.write(snap, args.out)
        summary = dict(snap.summary, out=args.out)
        if placement_summary is not None:
            summary['placement'] = placement_summary
        out.write_json(args.json, summary)
    if out.failed:
        return 2
    if not args.quiet:
        warn(warnings + snap.warnings)
        s = snap.summary
        print(f"{s['hosts']} hosts ({s['hosts_with_instances']} with "
              f"instances, {s['hosts_idle']} idle), {s['projects']} "
              f"projects from {s['instances']} instances over "
              f"{s['intervals']} intervals of {s['granularity_s']:g} s "
              f'from {args.source} -> {args.out}')
    return 0
