"""``nova-rl-trainer scenarios``: the named presets."""

from __future__ import annotations

import argparse
import json

from nova_rl_trainer.simulation import scenarios as scenarios_mod


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('scenarios', help='list the named presets')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([sc.describe()
                          for sc in scenarios_mod.SCENARIOS.values()],
                         indent=2))
        return 0
    for sc in scenarios_mod.SCENARIOS.values():
        c = sc.cluster
        print(f'{sc.name}: {sc.description}')
        print(f'    {c.hosts} hosts x {c.host_vcpus:g} vCPUs, '
              f'{c.host_ram_mb / 1024:g} GiB RAM, {c.host_disk_gb:g} GiB '
              f'disk; ratios CPU {c.cpu_allocation_ratio:g}, RAM '
              f'{c.ram_allocation_ratio:g}')
    return 0
