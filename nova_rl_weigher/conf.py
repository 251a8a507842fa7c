"""Configuration options of the learned weigher, group ``[rl_weigher]``.

The options live on oslo.config's global ``CONF``, which is the object
nova-scheduler parses ``nova.conf`` into, so operators configure the weigher
in the same file as the rest of the scheduler. Options marked mutable are
re-read on every weighing call, so ``SIGHUP`` (nova-scheduler calls
``CONF.mutate_config_files()``) takes effect without a restart.
"""

import math
import os

from oslo_config import cfg

GROUP = 'rl_weigher'

DEFAULT_POLICY_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), 'policies', 'default')

rl_weigher_group = cfg.OptGroup(
    GROUP,
    title='Learned host weigher options',
    help="""
Options for ``nova_rl_weigher.weigher.RLWeigher``, a host weigher that asks a
local learned policy to rank the hosts that passed the scheduler filters.
Enable it after Nova's own weighers::

    [filter_scheduler]
    weight_classes = nova.scheduler.weights.all_weighers,nova_rl_weigher.weigher.RLWeigher

The weigher abstains (Nova's standard weights decide) whenever it is not in
``gated`` mode, the policy is not confident, or anything goes wrong.
""")  # noqa: E501 - the weight_classes line is copied whole

rl_weigher_opts = [
    cfg.StrOpt(
        'mode',
        default='shadow',
        choices=[
            ('off', 'Do nothing: no inference, no decision log.'),
            ('shadow', 'Score every request and log the decision, but never '
                       'change the placement.'),
            ('gated', 'Apply the policy when it is confident; otherwise '
                      'abstain.'),
        ],
        mutable=True,
        help='How the learned policy takes part in host weighing.'),
    cfg.StrOpt(
        'policy_path',
        default=DEFAULT_POLICY_PATH,
        sample_default='<python site-packages>/nova_rl_weigher/policies/'
                       'default',
        mutable=True,
        help="""
Directory holding the policy artifact (``manifest.json`` and the weights
file). The artifact is verified before use and reloaded when it changes on
disk; an invalid new artifact leaves the previous one in service. The default
is the small policy bundled with the package.
"""),
    cfg.FloatOpt(
        'confidence_threshold',
        default=None,
        min=0.0,
        max=1.0,
        mutable=True,
        help="""
Minimum confidence (agreement of the ensemble members on the best host, 0 to
1) for the policy to take part in ``gated`` mode. Below it the weigher
abstains. Unset: the threshold calibrated by the trainer and recorded in the
policy's manifest (``calibration.confidence_threshold``), or 0.8 if the
manifest has none. A policy whose manifest says ``calibration.act = never``
does not act unless this option is set; set, it overrides the manifest.
"""),
    cfg.FloatOpt(
        'weight_multiplier',
        default=10.0,
        min=0.0,
        mutable=True,
        help="""
Multiplier for the policy's normalised score (0 to 1). Nova's own resource
weighers each contribute at most their multiplier (1.0 by default), so the
default of 10.0 lets a confident policy lead the ordinary weighers while
``build_failure_weight_multiplier`` (1000000.0) still dominates. 0 keeps the
policy from changing any ranking. Can be overridden per host aggregate with
the metadata key ``rl_weight_multiplier`` (the smallest value applies when a
host is in several such aggregates). A value that is not a finite number of
at least 0 (``nan``, ``inf``, text), in an aggregate or here, is ignored
with a warning: this option's value, or else 10.0, applies instead.
"""),
    cfg.StrOpt(
        'usage_snapshot_path',
        default='',
        mutable=True,
        help="""
JSON file with recent actual usage per host and per project (format in the
README; written by ``nova-rl-trainer snapshot``). Empty: no usage data, the
usage features are marked absent. If set but missing, unreadable or older than
``snapshot_max_age_s``, the policy's confidence is zero and the weigher
abstains.
"""),
    cfg.IntOpt(
        'snapshot_max_age_s',
        default=900,
        min=1,
        mutable=True,
        help='Age in seconds after which the usage snapshot is stale.'),
    cfg.FloatOpt(
        'latency_budget_ms',
        default=20.0,
        min=0.0,
        mutable=True,
        help="""
Budget in milliseconds for building features and running the policy for one
request. A result that took longer is discarded and the weigher abstains.
"""),
    cfg.StrOpt(
        'decision_log_dir',
        default='',
        mutable=True,
        help="""
Directory for the decision log: one JSON line per weighing call, written by a
background thread to rotating files with a bounded total size. Empty disables
the log. This is what an operator reads in ``shadow`` mode to see what the
policy would have changed.
"""),
    cfg.FloatOpt(
        'canary_percent',
        default=100.0,
        min=0.0,
        max=100.0,
        mutable=True,
        help="""
Share of requests, chosen by a stable hash of the instance UUID, for which
``gated`` mode may apply the policy. The others are scored and logged like
``shadow`` mode.
"""),
    cfg.FloatOpt(
        'policy_check_interval_s',
        default=5.0,
        min=0.0,
        mutable=True,
        help="""
How often, at most, to check the policy artifact on disk for changes. 0
checks on every request (a stat call).
"""),
    cfg.IntOpt(
        'decision_log_max_mb',
        default=512,
        min=1,
        mutable=True,
        help="""
Upper bound on the disk the decision log may use, in MiB, over all the files
named like decision log files (``decisions-<host>-<pid>*.jsonl*``) in
``decision_log_dir``, whichever process wrote them: the oldest are deleted
first, including those of scheduler processes that are no longer running.
The current file of a running process is never deleted (it counts towards
the total, and rotates at ``decision_log_file_mb``).
"""),
    cfg.IntOpt(
        'decision_log_file_mb',
        default=64,
        min=1,
        mutable=True,
        help="""
Size in MiB at which a decision log file is rotated (at half of
``decision_log_max_mb`` if that is smaller).
"""),
    cfg.IntOpt(
        'decision_log_max_age_days',
        default=30,
        min=0,
        mutable=True,
        help="""
Decision log files not modified for this many days are deleted, except the
current file of a running process. 0: no age limit, only
``decision_log_max_mb`` applies.
"""),
    cfg.IntOpt(
        'decision_log_queue_size',
        default=1000,
        min=1,
        help="""
Number of decisions waiting to be written before new ones are dropped (and
counted) rather than slowing scheduling down.
"""),
    cfg.IntOpt(
        'decision_log_queue_mb',
        default=64,
        min=1,
        mutable=True,
        help="""
Memory in MiB that decisions waiting to be written may hold (estimated from
what each holds: about 250 bytes per candidate host, so 5 MiB for a call
weighing 20,000 hosts). A decision that would exceed it is dropped and
counted (``decision_log_dropped.queue_bytes``) rather than queued; one larger
than the whole budget is never logged.
"""),
    cfg.IntOpt(
        'explain_top_k',
        default=3,
        min=0,
        mutable=True,
        help="""
Number of top-ranked hosts for which the decision log records the features
that moved the policy's score most (a short "why this host").
"""),
    cfg.StrOpt(
        'metrics_file',
        default='',
        mutable=True,
        help="""
File to which each scheduler process writes the weigher's counters (calls,
applied, abstained by reason, errors, decision log drops, a latency
histogram, the policy version) in the Prometheus text format, for
node_exporter's textfile collector, which reads only ``*.prom`` files in its
``--collector.textfile.directory``. Rewritten atomically at most every
``metrics_interval`` seconds by a background thread. ``{pid}`` is replaced
by the process id: with several scheduler workers, use it (e.g.
``/var/lib/node_exporter/textfile/nova_rl_weigher_{pid}.prom``) so that each
worker writes its own file (files of workers that have exited are deleted);
every sample has a ``pid`` label. Empty: no metrics file.
"""),
    cfg.FloatOpt(
        'metrics_interval',
        default=15.0,
        min=1.0,
        mutable=True,
        help="""
Seconds between two writes of ``metrics_file``, at least (the file is
written when a weighing call comes after the interval has passed).
"""),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[rl_weigher]`` options on ``conf`` (idempotent)."""
    conf.register_group(rl_weigher_group)
    conf.register_opts(rl_weigher_opts, group=rl_weigher_group)


def list_opts():
    """Options for ``oslo-config-generator``.

    Registered as its ``oslo.config.opts`` entry point.
    """
    return [(rl_weigher_group, rl_weigher_opts)]


def _opt(name: str) -> cfg.Opt:
    for opt in rl_weigher_opts:
        if opt.dest == name:
            return opt
    raise KeyError(f'no [{GROUP}] option {name!r}')


def default(name: str):
    """The default of option ``name``, read from its definition above.

    The one place each default lives: ``scorer.Settings``, the gate and the
    trainer's simulator read it from here rather than repeating it.
    """
    return _opt(name).default


def bounds(name: str) -> tuple[float | None, float | None]:
    """The ``(min, max)`` of numeric option ``name`` (None: unbounded),
    from its definition above, for the trainer to refuse what Nova would.
    """
    kind = _opt(name).type
    return kind.min, kind.max


def out_of_bounds(name: str, value: float) -> str | None:
    """None when ``value`` is a finite number within option ``name``'s
    :func:`bounds`, else what it must be (``'in [0, 1]'``, ``'a finite
    number >= 0'``), for the trainer's one-line errors."""
    low, high = bounds(name)
    low = -math.inf if low is None else low
    high = math.inf if high is None else high
    if math.isfinite(value) and low <= value <= high:
        return None
    if high == math.inf:
        return f'a finite number >= {low:g}'
    return f'in [{low:g}, {high:g}]'


CONF = cfg.CONF
register_opts(CONF)
