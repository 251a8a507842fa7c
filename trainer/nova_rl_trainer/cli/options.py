"""Command-line options shared by the trainer's commands, and the
:class:`~nova_rl_trainer.simulation.setup.Setup` they describe.

Every command that simulates (``simulate``, ``evaluate``, ``train``,
``publish``) describes its trace, cluster and measurement with the same
options, declared here once. The cluster is a file of host groups
(``--cluster FILE``, :meth:`ClusterSpec.from_file`) or identical hosts
(``--hosts``, ``--host-vcpus``, ...), not both; with ``--scenario`` either
replaces or changes the scenario's cluster.
"""

from __future__ import annotations

import argparse
import math
import os

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import nova_weighers
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation import scenarios as scenarios_mod
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation import trace_files

CLUSTER_FIELDS = (
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
    """Bad command-line input: printed as one line, exit status 2."""


def parse_window(text: str) -> tuple[float, float]:
    """``'START_S:END_S'`` -> ``(start, end)``, for ``--window``."""
    try:
        start, end = (float(x) for x in text.split(':'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not START_S:END_S') from None
    return start, end


def add_trace_file_options(g) -> None:
    """How to read a ``--trace``: format, window, sample."""
    g.add_argument('--trace-format', choices=trace_files.FORMATS,
                   help='default: from the file name')
    g.add_argument('--window', type=parse_window, metavar='START_S:END_S',
                   help='only the VMs arriving in this time window')
    g.add_argument('--sample', type=float, default=None, metavar='FRACTION',
                   help='keep this fraction of request batches')


def add_cluster_options(g) -> None:
    """``--cluster FILE`` (host groups), or identical hosts: ``--hosts``,
    ``--host-vcpus``, ..."""
    g.add_argument('--cluster', metavar='FILE',
                   help='cluster file of host groups (JSON: {"host_groups": '
                        '[{"name", "count", "vcpus", "ram_mb", ...}]}), '
                        'instead of the identical-host options below; '
                        "with --scenario it replaces the scenario's "
                        'cluster')
    for name, typ, text in CLUSTER_FIELDS:
        g.add_argument('--' + name.replace('_', '-'), type=typ, help=text)


def add_hot_threshold_option(g) -> None:
    """``--hot-threshold``: what a hot host is, for every command that
    counts hot host-hours (the simulating ones and ``outcomes``), so a
    measured outcome and a simulated one mean the same."""
    g.add_argument('--hot-threshold', type=float,
                   default=simulator.SimConfig.hot_threshold,
                   help='hot host: demand above this share of its cores '
                        '(default %(default)s, as in training)')


def add_measurement_options(g) -> None:
    """How the simulator measures (:class:`simulator.SimConfig`)."""
    d = simulator.SimConfig()
    g.add_argument('--usage-interval-s', type=float,
                   default=d.usage_interval_s,
                   help='seconds between CPU-use samples (default '
                        '%(default)s)')
    g.add_argument('--usage-window-s', type=float, default=d.usage_window_s,
                   help='span of the usage snapshot policies read '
                        '(default %(default)s)')
    add_hot_threshold_option(g)
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


def add_setup_options(p: argparse.ArgumentParser,
                      objective_default: str | None = 'packing') -> None:
    """Trace, cluster, measurement, objective and seed options
    (``--objective`` defaults to ``objective_default``; None: the policy
    manifest's, for commands that read one)."""
    g = p.add_argument_group('trace')
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument('--trace', metavar='PATH',
                     help='trace file: an Azure V1 arrival file '
                          '(v1.*.txt[.gz]) or a CSV')
    src.add_argument('--scenario', metavar='NAME',
                     help='a named preset: ' + ', '.join(
                         scenarios_mod.SCENARIOS))
    add_trace_file_options(g)
    add_cluster_options(p.add_argument_group(
        'cluster (a file of host groups, or identical hosts)'))
    add_measurement_options(p.add_argument_group('measurement'))
    g = p.add_argument_group('objective and seed')
    g.add_argument('--objective', default=objective_default,
                   help='objective plugin (default '
                        + (objective_default or "the policy manifest's")
                        + '); one of: ' + ', '.join(_objective_names()))
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


def config_from_args(args: argparse.Namespace) -> simulator.SimConfig:
    return simulator.SimConfig(
        usage_interval_s=args.usage_interval_s,
        usage_window_s=args.usage_window_s,
        hot_threshold=args.hot_threshold,
        headroom_reserve=args.headroom_reserve,
        usage_snapshot=not args.no_usage_snapshot,
        nova_weighers=args.nova_weighers)


def cluster_from_args(args: argparse.Namespace) -> ClusterSpec | None:
    """The cluster of ``--cluster FILE``, or None without it;
    :class:`CliError` if it is malformed or combined with the identical-host
    options."""
    path = getattr(args, 'cluster', None)
    if path is None:
        return None
    given = [f"--{name.replace('_', '-')}" for name, _, _ in CLUSTER_FIELDS
             if getattr(args, name, None) is not None]
    if given:
        raise CliError('--cluster FILE describes every host; it cannot be '
                       'combined with ' + ', '.join(given))
    try:
        return ClusterSpec.from_file(path)
    except ValueError as e:
        raise CliError(str(e)) from None


#: Seeds are at most this: torch's generator takes 64 bits, and the
#: trainer derives members' and workers' seeds by adding small offsets.
MAX_SEED = 2 ** 63 - 1


def check_seed(seed: int) -> None:
    """CliError for a negative or huge ``--seed``, for every command that
    takes one: numpy's generators refuse a negative one only once the trace
    is being read, with a bare 'expected non-negative integer', and a trace
    that is not jittered never seeds one (``size-cluster --trace`` printed
    a result); torch's ``manual_seed`` overflows past 64 bits only after
    the setup is built."""
    if seed < 0:
        raise CliError(f'--seed {seed}: must be an integer >= 0')
    if seed > MAX_SEED:
        raise CliError(f'--seed {seed}: must be at most {MAX_SEED} '
                       '(2**63 - 1)')


def setup_from_args(args: argparse.Namespace) -> Setup:
    """The setup the options describe; :class:`CliError` if they don't."""
    check_seed(args.seed)
    cluster = cluster_from_args(args)
    given = {name: getattr(args, name) for name, _, _ in CLUSTER_FIELDS
             if getattr(args, name) is not None}
    try:
        config = config_from_args(args)
        options = tuple(objectives_mod.parse_options(
            args.objective_option).items())
        common = dict(trace_format=args.trace_format, window=args.window,
                      sample=args.sample, config=config,
                      objective=args.objective, objective_options=options)
        if args.scenario:
            setup = Setup.from_scenario(args.scenario, seed=args.seed,
                                        cluster=cluster,
                                        cluster_changes=given, **common)
        else:
            if cluster is None:
                missing = [f"--{n.replace('_', '-')}" for n in
                           ('hosts', 'host_vcpus', 'host_ram_mb')
                           if n not in given]
                if missing:
                    raise CliError('with --trace, give the cluster: '
                                   + ' '.join(missing)
                                   + ' (or --cluster FILE)')
                cluster = ClusterSpec(**given)
            if common['sample'] is None:
                common['sample'] = 1.0
            setup = Setup(trace_path=args.trace, cluster=cluster,
                          seed=args.seed, **common)
        setup.make_objective()
    except ValueError as e:
        raise CliError(str(e)) from None
    return setup


def add_fanout_options(p, aliases: tuple[str, ...] = ()) -> None:
    """``--workers N`` and ``--ray-address ADDRESS``
    (:class:`~nova_rl_trainer.simulation.fanout.Fanout`); ``aliases`` keep
    a command's older spelling (``--jobs``)."""
    p.add_argument('--workers', *aliases, dest='workers', type=int,
                   default=0, metavar='N',
                   help='local worker processes for simulations (default: '
                        'one per CPU, at most one per task; 1: in this '
                        'process)')
    p.add_argument('--ray-address', metavar='ADDRESS',
                   help='fan out over an existing Ray cluster (HOST:PORT, '
                        'as `ray start --head` prints it) instead of local '
                        'processes; needs Ray installed')


def workers_from_args(args: argparse.Namespace, tasks: int) -> int:
    """``--workers``, or one per CPU and at most ``tasks``; CliError if
    it is below 0."""
    if args.workers < 0:
        raise CliError('--workers must be >= 1 (0: one per CPU)')
    return args.workers or max(1, min(tasks, os.cpu_count() or 1))


#: Training options that count something: below 1 no run can use them
#: (0 hidden units or members divide by zero, 0 for --eval-every too).
TRAINING_COUNTS = ('members', 'hidden', 'iterations', 'eval_every',
                   'rollout_decisions', 'vine_states', 'vine_horizon',
                   'calibration_samples', 'family_members',
                   'rollout_members', 'workers', 'bootstrap',
                   'imitation_steps', 'imitation_decisions')


def check_training_options(args: argparse.Namespace) -> None:
    """CliError for ``train``'s and ``retrain``'s options that no run can
    use, before the trace is read or OUT created: the counts of
    :data:`TRAINING_COUNTS` the command has, ``--minutes`` (unless
    ``--iterations`` replaces it) and the heuristics named by
    ``--warm-start`` and ``--continuation``, and ``--calibration-floor``."""
    for name in TRAINING_COUNTS:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise CliError(f"--{name.replace('_', '-')} must be at least 1")
    if args.iterations is None and not (math.isfinite(args.minutes)
                                        and args.minutes > 0):
        raise CliError(f'--minutes {args.minutes:g}: must be a number of '
                       'minutes > 0 (or give --iterations)')
    floor = getattr(args, 'calibration_floor', None)
    if floor is not None and not objectives_mod.valid_floor(floor):
        raise CliError(f'--calibration-floor {floor:g}: must be a number of '
                       'host-samples >= 0')
    for name in ('warm_start', 'continuation'):
        value = getattr(args, name, None)
        if value not in (None, 'auto', 'none'):
            try:
                policies_mod.make_policy(value)
            except policies_mod.PolicyError as e:
                raise CliError(f"--{name.replace('_', '-')}: {e}") from None


def add_floor_option(p, flag: str, scope: str = '') -> None:
    """``flag HOST_SAMPLES``: the floor of the sampled terms in a paired
    verdict (:func:`objectives.floor`), for ``publish`` and calibration;
    ``scope`` begins the help (what the option applies to)."""
    p.add_argument(flag, type=float,
                   default=objectives_mod.DEFAULT_FLOOR_HOST_SAMPLES,
                   metavar='HOST_SAMPLES',
                   help=(scope + 'overload and hot host-hours are also '
                         '"not worse" when the bound of their absolute '
                         'difference per window is at most this many hosts '
                         'for one usage sample (default %(default)g: 5 '
                         'minutes of one host, the finest step usage is '
                         'measured in; 0: the relative bound alone)'))


def add_window_options(p) -> None:
    """``--windows N`` and ``--window-days D``: the independent held-out
    windows a paired verdict rests on."""
    p.add_argument('--windows', type=int, default=10, metavar='N',
                   help='independent time windows per held-out scenario '
                        'and seed, the paired cases of the verdict (default '
                        '%(default)s; the verdict needs at least 10 cases '
                        'in all)')
    p.add_argument('--window-days', type=float, metavar='D',
                   help='length of each window in days (default: the '
                        'trace span divided by --windows)')
