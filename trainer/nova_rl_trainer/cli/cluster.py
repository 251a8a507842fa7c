"""``nova-rl-trainer cluster --from-placement``: the cloud's own cluster
file.

::

    nova-rl-trainer cluster --from-placement [auth] --out cluster.json

Reads every resource provider and its ``VCPU``, ``MEMORY_MB`` and
``DISK_GB`` inventories from the Placement API and writes the cluster file
``--cluster FILE`` takes (``simulate``, ``evaluate``, ``train``,
``publish``, ``snapshot``): hosts of one shape as one host group, its
``hosts`` the providers' names; sizes ``total - reserved``, ratios the
inventories' ``allocation_ratio`` (see
:mod:`nova_rl_trainer.telemetry.placement`). Authentication is
keystoneauth1's, as the ``openstack`` command line takes it (``--os-*``,
``OS_*``, ``--os-cloud``); a Placement without Keystone (``[api]
auth_strategy = noauth2``) takes ``--os-auth-type admin_token
--os-endpoint URL --os-token admin``.

Exit status 0 when the file is written (replaced atomically), 2 with one
line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from nova_rl_trainer.cli import output
from nova_rl_trainer.telemetry import placement
from nova_rl_trainer.telemetry import sources


class _ClusterParser(argparse.ArgumentParser):
    """Adds Placement's auth options for the plugin the user picked (which
    options exist depends on ``--os-auth-type``) before parsing."""

    _auth_registered = False

    def parse_known_args(self, args=None, namespace=None):
        argv = list(sys.argv[1:] if args is None else args)
        if not self._auth_registered:
            self._auth_registered = True
            try:
                placement.add_arguments(self, argv)
            except ValueError as e:
                self.error(str(e))
        return super().parse_known_args(argv, namespace)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'cluster', help='write the cluster file of a cloud from Placement',
        description="The cloud's compute hosts, from the Placement API's "
                    'resource providers and inventories, as a cluster file '
                    '(--cluster FILE) of host groups naming their hosts.')
    p.__class__ = _ClusterParser
    p.add_argument('--from-placement', action='store_true', required=True,
                   help='read the Placement API (the only source for now)')
    p.add_argument('--out', required=True, metavar='CLUSTER_JSON',
                   help='write the cluster file here')
    p.add_argument('--json', metavar='SUMMARY',
                   help="write Placement's counts here (providers, compute "
                        'hosts, skipped, ...)')
    p.add_argument('--quiet', action='store_true',
                   help='no warnings, no summary')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger('keystoneauth').setLevel(logging.ERROR)
    target = args.out
    try:
        cluster, found = placement.read_cluster(placement.connect(args))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)),
                    exist_ok=True)
        cluster.to_file(args.out)
        if args.json:
            target = args.json
            output.write_json(args.json, dict(found.summary, out=args.out,
                                              groups=len(cluster.groups)))
    except sources.SourceError as e:
        print(f'nova-rl-trainer: error: {e}', file=sys.stderr)
        return 2
    except OSError as e:
        print(f'nova-rl-trainer: error: cannot write {target}: '
              f'{e.strerror or e}', file=sys.stderr)
        return 2
    if not args.quiet:
        for w in found.warnings:
            print(f'nova-rl-trainer: warning: {w}', file=sys.stderr)
        print(cluster.summary())
        print(f'{cluster.hosts} compute hosts in {len(cluster.groups)} host '
              f'groups from Placement at {found.endpoint} -> {args.out}')
    return 0
