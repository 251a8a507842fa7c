"""``nova-rl-trainer size-cluster``: how many hosts a trace needs to peak
at a target allocation."""

from __future__ import annotations

import argparse
import json

from nova_rl_trainer.cli import options
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import scenarios as scenarios_mod
from nova_rl_trainer.simulation import trace_files


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('size-cluster',
                       help='hosts needed for a trace to peak at a target '
                            'allocation')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--trace')
    src.add_argument('--scenario')
    options.add_trace_file_options(p)
    p.add_argument('--host-vcpus', type=float, default=48)
    p.add_argument('--host-ram-mb', type=float, default=384 * 1024)
    p.add_argument('--host-disk-gb', type=float, default=2048)
    p.add_argument('--cpu-allocation-ratio', type=float, default=4.0)
    p.add_argument('--ram-allocation-ratio', type=float, default=1.0)
    p.add_argument('--target', type=float, default=0.9)
    p.add_argument('--seed', type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options.check_seed(args.seed)
    if args.scenario:
        sc = scenarios_mod.get_scenario(args.scenario)
        trace = sc.load_trace(args.seed)
        host = sc.cluster
    else:
        trace = trace_files.load_trace(args.trace, args.trace_format,
                                       seed=args.seed, window=args.window,
                                       sample=args.sample or 1.0)
        host = ClusterSpec(hosts=1, host_vcpus=args.host_vcpus,
                           host_ram_mb=args.host_ram_mb,
                           host_disk_gb=args.host_disk_gb,
                           cpu_allocation_ratio=args.cpu_allocation_ratio,
                           ram_allocation_ratio=args.ram_allocation_ratio)
    out = scenarios_mod.size_cluster(trace, host, args.target)
    out['trace'] = trace.name
    out['vms'] = len(trace)
    print(json.dumps(out, indent=2))
    return 0
