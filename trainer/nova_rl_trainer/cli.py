"""The ``nova-rl-trainer`` command line.

::

    nova-rl-trainer simulate --trace PATH [--trace-format azure-v1|csv]
        --hosts N --host-vcpus V --host-ram-mb M [--host-disk-gb D]
        [--cpu-allocation-ratio R] [--ram-allocation-ratio R]
        --policy NAME_OR_PATH [--objective NAME] [--seed S] --json OUT
    nova-rl-trainer evaluate (same trace and cluster options)
        --policies A,B,... --json OUT --report DIR
    nova-rl-trainer scenarios            # the named presets
    nova-rl-trainer size-cluster ...     # hosts for a trace to peak at 90%

``--scenario NAME`` may replace ``--trace`` and the cluster options (which
then override the preset's). Run any command with ``--help`` for the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Sequence

from nova_rl_trainer import baselines
from nova_rl_trainer import nova_weighers
from nova_rl_trainer import objectives as objectives_mod
from nova_rl_trainer import policies as policies_mod
from nova_rl_trainer import runner
from nova_rl_trainer import scenarios as scenarios_mod
from nova_rl_trainer import simulator
from nova_rl_trainer import traces
from nova_rl_trainer.cluster import ClusterSpec

_CLUSTER_FIELDS = (
    ('hosts', int, 'number of compute hosts'),
    ('host_vcpus', float, 'physical vCPUs per host'),
    ('host_ram_mb', float, 'physical RAM per host, MiB'),
    ('host_disk_gb', float, 'local disk per host, GiB (default 2048)'),
    ('cpu_allocation_ratio', float, 'default 4.0, as Nova 34'),
    ('ram_allocation_ratio', float, 'default 1.0, as Nova 34'),
    ('disk_allocation_ratio', float, 'default 1.0, as Nova 34'),
    ('idle_watts', float, 'power of an active idle host (default 200)'),
    ('peak_watts', float, 'power of a fully busy host (default 500)'),
    ('empty_watts', float, 'power of a host with no VM (default 0: off)'),
)


class CliError(Exception):
    pass


def _window(text: str) -> tuple[float, float]:
    try:
        start, end = (float(x) for x in text.split(':'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not START_S:END_S') from None
    return start, end


def add_setup_options(p: argparse.ArgumentParser) -> None:
    """Trace, cluster, measurement, objective and seed options."""
    g = p.add_argument_group('trace')
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument('--trace', metavar='PATH',
                     help='trace file: an Azure V1 arrival file '
                          '(v1.*.txt[.gz]) or a CSV')
    src.add_argument('--scenario', metavar='NAME',
                     help='a named preset: ' + ', '.join(
                         scenarios_mod.SCENARIOS))
    g.add_argument('--trace-format', choices=traces.FORMATS,
                   help='default: from the file name')
    g.add_argument('--window', type=_window, metavar='START_S:END_S',
                   help='only the VMs arriving in this time window')
    g.add_argument('--sample', type=float, default=None, metavar='FRACTION',
                   help='keep this fraction of request batches')
    g = p.add_argument_group('cluster (identical hosts)')
    for name, typ, text in _CLUSTER_FIELDS:
        g.add_argument('--' + name.replace('_', '-'), type=typ, help=text)
    g = p.add_argument_group('measurement')
    d = simulator.SimConfig()
    g.add_argument('--usage-interval-s', type=float,
                   default=d.usage_interval_s,
                   help='seconds between CPU-use samples (default '
                        '%(default)s)')
    g.add_argument('--usage-window-s', type=float, default=d.usage_window_s,
                   help='span of the usage snapshot policies read '
                        '(default %(default)s)')
    g.add_argument('--hot-threshold', type=float, default=d.hot_threshold,
                   help='hot host: demand above this share of its cores '
                        '(default %(default)s)')
    g.add_argument('--headroom-reserve', type=float,
                   default=d.headroom_reserve,
                   help='capacity share each host keeps for failover '
                        '(default %(default)s)')
    g.add_argument('--no-usage-snapshot', action='store_true',
                   help='policies see no measured usage')
    g.add_argument('--nova-weighers', default=d.nova_weighers,
                   choices=tuple(nova_weighers.CONFIGURATIONS),
                   help="the Nova weigher configuration the cluster runs: "
                        "the nova_weight feature and Nova's choice when a "
                        "gated policy abstains (default %(default)s)")
    g = p.add_argument_group('objective and seed')
    g.add_argument('--objective', default='packing',
                   help='objective plugin (default %(default)s); one of: '
                        + ', '.join(_objective_names()))
    g.add_argument('--objective-option', action='append', default=[],
                   metavar='KEY=NUMBER',
                   help='term weight (or, for mix, objective weight); '
                        'repeatable or comma-separated')
    g.add_argument('--seed', type=int, default=0,
                   help='seed of the trace jitter, tenants and utilisation '
                        '(default %(default)s)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')


def _objective_names() -> list[str]:
    try:
        return objectives_mod.available_objectives()
    except Exception:  # noqa: BLE001 - only for the help text
        return ['packing', 'balance', 'headroom', 'mix']


def setup_from_args(args: argparse.Namespace) -> runner.Setup:
    given = {name: getattr(args, name) for name, _, _ in _CLUSTER_FIELDS
             if getattr(args, name) is not None}
    window, sample, sample_seed = args.window, args.sample, None
    fmt = args.trace_format
    if args.scenario:
        try:
            sc = scenarios_mod.get_scenario(args.scenario)
        except ValueError as e:
            raise CliError(str(e)) from None
        trace_path, fmt = sc.trace_path, fmt or sc.trace_format
        cluster = sc.cluster.replace(**given) if given else sc.cluster
        window = sc.window if window is None else window
        sample = sc.sample if sample is None else sample
        sample_seed = sc.sample_seed
        name = sc.name
    else:
        missing = [f"--{n.replace('_', '-')}" for n in
                   ('hosts', 'host_vcpus', 'host_ram_mb') if n not in given]
        if missing:
            raise CliError('with --trace, give the cluster: '
                           + ' '.join(missing))
        try:
            cluster = ClusterSpec(**given)
        except ValueError as e:
            raise CliError(str(e)) from None
        trace_path, name = args.trace, None
    try:
        config = simulator.SimConfig(
            usage_interval_s=args.usage_interval_s,
            usage_window_s=args.usage_window_s,
            hot_threshold=args.hot_threshold,
            headroom_reserve=args.headroom_reserve,
            usage_snapshot=not args.no_usage_snapshot,
            nova_weighers=args.nova_weighers)
        options = objectives_mod.parse_options(args.objective_option)
        setup = runner.Setup(
            trace_path=trace_path, trace_format=fmt, cluster=cluster,
            window=window, sample=1.0 if sample is None else sample,
            sample_seed=sample_seed, config=config,
            objective=args.objective,
            objective_options=tuple(options.items()), seed=args.seed,
            name=name)
        setup.make_objective()
    except ValueError as e:
        raise CliError(str(e)) from None
    return setup


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f'{type(o).__name__} is not JSON serialisable')


def _clean(value):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(path: str, doc) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(_clean(doc), f, indent=2, default=_json_default)
        f.write('\n')
    os.replace(tmp, path)


def cmd_simulate(args: argparse.Namespace) -> int:
    setup = setup_from_args(args)
    results = runner.evaluate(setup, [args.policy], jobs=1,
                              show_progress=not args.quiet)
    m = results[0].metrics
    write_json(args.json, m)
    print(f"{m['policy']}: {m['decisions']} decisions, {m['rejected']} "
          f"rejected, {m['active_host_hours']:,.0f} active host-h (lower "
          f"bound {m['lb_host_hours']:,.0f}), {m['overload_host_hours']:,.1f}"
          f" overload host-h, objective {m['objective']} = "
          f"{m['objective_value']:,.2f} -> {args.json}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nova_rl_trainer import report
    specs = [s.strip() for s in args.policies.split(',') if s.strip()]
    if not specs:
        raise CliError('--policies is empty')
    setup = setup_from_args(args)
    jobs = args.jobs if args.jobs else min(len(specs), os.cpu_count() or 1)
    results = runner.evaluate(setup, specs, jobs=jobs,
                              show_progress=not args.quiet)
    write_json(args.json, [r.metrics for r in results])
    files = report.write_report(
        results, args.report,
        title=f'Evaluation on {setup.name or setup.trace_path}')
    print(report.markdown_table(results))
    print(f'-> {args.json}, report in {args.report} ({len(files)} files)')
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    docs = [sc.describe() for sc in scenarios_mod.SCENARIOS.values()]
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    for sc in scenarios_mod.SCENARIOS.values():
        c = sc.cluster
        print(f'{sc.name}: {sc.description}')
        print(f'    {c.hosts} hosts x {c.host_vcpus:g} vCPUs, '
              f'{c.host_ram_mb / 1024:g} GiB RAM, {c.host_disk_gb:g} GiB '
              f'disk; ratios CPU {c.cpu_allocation_ratio:g}, RAM '
              f'{c.ram_allocation_ratio:g}')
    return 0


def cmd_size_cluster(args: argparse.Namespace) -> int:
    if args.scenario:
        sc = scenarios_mod.get_scenario(args.scenario)
        trace = sc.load_trace(args.seed)
        host = sc.cluster
    else:
        trace = traces.load_trace(args.trace, args.trace_format,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='nova-rl-trainer',
        description='Simulate, evaluate and (later) train host-weighing '
                    'policies for nova-rl-weigher.')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('simulate', help='run one policy on a trace')
    add_setup_options(p)
    p.add_argument('--policy', required=True, metavar='NAME_OR_PATH',
                   help='baseline (' + ', '.join(baselines.BASELINES)
                        + f'), {policies_mod.BUNDLED!r}, or a policy '
                        'artifact directory; options after a colon, e.g. '
                        'bundled:mode=raw')
    p.add_argument('--json', required=True, metavar='OUT',
                   help='write the metrics here')
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser('evaluate', help='compare policies on a trace')
    add_setup_options(p)
    p.add_argument('--policies', required=True, metavar='A,B,...',
                   help='comma-separated policy names or paths')
    p.add_argument('--json', required=True, metavar='OUT',
                   help='write a list of metrics, one per policy')
    p.add_argument('--report', required=True, metavar='DIR',
                   help='write report.md, metrics.csv and plots here')
    p.add_argument('--jobs', type=int, default=0,
                   help='parallel worker processes (default: one per '
                        'policy, at most the number of CPUs)')
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser('scenarios', help='list the named presets')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser('size-cluster',
                       help='hosts needed for a trace to peak at a target '
                            'allocation')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--trace')
    src.add_argument('--scenario')
    p.add_argument('--trace-format', choices=traces.FORMATS)
    p.add_argument('--window', type=_window)
    p.add_argument('--sample', type=float)
    p.add_argument('--host-vcpus', type=float, default=48)
    p.add_argument('--host-ram-mb', type=float, default=384 * 1024)
    p.add_argument('--host-disk-gb', type=float, default=2048)
    p.add_argument('--cpu-allocation-ratio', type=float, default=4.0)
    p.add_argument('--ram-allocation-ratio', type=float, default=1.0)
    p.add_argument('--target', type=float, default=0.9)
    p.add_argument('--seed', type=int, default=0)
    p.set_defaults(func=cmd_size_cluster)

    from nova_rl_trainer import publish   # publish, rollback
    publish.register(sub)
    from nova_rl_trainer import train_cli
    train_cli.register(sub, add_setup_options, setup_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CliError, traces.TraceError, policies_mod.PolicyError,
            objectives_mod.ObjectiveError, ValueError) as e:
        print(f'nova-rl-trainer: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
