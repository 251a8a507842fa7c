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
import os

from nova_rl_trainer.cli.telemetry_common import add_placement_options
from nova_rl_trainer.cli.telemetry_common import Outputs
from nova_rl_trainer.cli.telemetry_common import warn
from nova_rl_trainer.telemetry import placement


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'cluster', help='write the cluster file of a cloud from Placement',
        description="The cloud's compute hosts, from the Placement API's "
                    'resource providers and inventories, as a cluster file '
                    '(--cluster FILE) of host groups naming their hosts.')
    add_placement_options(p)
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
    with Outputs(args.out) as out:
        out.check(args.out, args.json)
        cluster, found = placement.read_cluster(placement.connect(args))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)),
                    exist_ok=True)
        cluster.to_file(args.out)
        out.write_json(args.json, dict(found.summary, out=args.out,
                                       groups=len(cluster.groups)))
    if out.failed:
        return 2
    if not args.quiet:
        warn(found.warnings)
        print(cluster.summary())
        print(f'{cluster.hosts} compute hosts in {len(cluster.groups)} host '
              f'groups from Placement at {found.endpoint} -> {args.out}')
    return 0
