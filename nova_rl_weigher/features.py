"""The feature vector: one definition for the weigher, simulator and trainer.

A weighing call sees a request and the candidate hosts that passed the
filters. :func:`compute_matrix` (over :class:`HostColumns`, one array per
column) and :func:`build_matrix` (over :class:`HostView` objects) turn them
into a ``float32`` matrix with one row per host and the columns named in
:data:`FEATURES`. The same code runs in the weigher inside nova-scheduler
(:mod:`nova_rl_weigher.weigher` reads Nova's HostState into columns) and in
the trainer's simulator (whose cluster state is kept in those columns). The
schema's name and hash go into every policy artifact, so a
policy trained on another feature definition is refused rather than misread.

Features are scale-free where possible (fractions of capacity, log sizes) so a
policy trained on one cluster transfers to another of a different size.

Two schemas are known (:data:`SCHEMAS`): v1, the first 24 columns, and v2
(:data:`SCHEMA`, what new trainings export), v1's columns unchanged followed
by the signals a placement needs and Nova does not carry: the allocation
placed since the usage snapshot sampled the host, 24 h peaks, and lifetimes
(the request's predicted life, the host's expected remaining busy time and
how much the request would extend it; :mod:`lifetimes` predicts them). A v1
policy is fed the v1 matrix, which is exactly the first 24 columns of the v2
one. The v2 inputs are :class:`HostSignals` (per host, NaN where unknown)
and :class:`RequestSignals`; an unknown signal gives its "present" flag 0
and a neutral value, never a non-finite feature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import operator
from typing import Callable, Mapping, Sequence

import numpy as np

# The lifetime predictions (:mod:`lifetimes`), also re-exported: callers
# know them as features' names.
from nova_rl_weigher.lifetimes import expected_end_s  # noqa: F401
from nova_rl_weigher.lifetimes import host_remaining_s  # noqa: F401
from nova_rl_weigher.lifetimes import Lifetime
from nova_rl_weigher.lifetimes import lifetime_stats  # noqa: F401
from nova_rl_weigher.lifetimes import Lifetimes
from nova_rl_weigher.lifetimes import NO_LIFETIMES
from nova_rl_weigher.lifetimes import sibling_lifetime  # noqa: F401

SCHEMA_NAME = 'nova-rl-host-features'

#: Schema v1's columns, in order, with a one-line meaning. Never changed:
#: v1 artifacts are recognised by the hash of exactly this.
FEATURES_V1: tuple[tuple[str, str], ...] = (
    ('ram_free_frac', 'free RAM / RAM capacity (allocation ratio applied)'),
    ('ram_free_after_frac', 'free RAM after placing the request / capacity'),
    ('vcpu_free_frac',
     'free vCPUs / vCPU capacity (allocation ratio applied)'),
    ('vcpu_free_after_frac',
     'free vCPUs after placing the request / capacity'),
    ('disk_free_frac', 'free disk / disk capacity (allocation ratio applied)'),
    ('disk_free_after_frac', 'free disk after placing the request / capacity'),
    ('log_vcpus_total', 'log2 of the physical vCPUs of the host'),
    ('log_ram_total_gb', 'log2 of the physical RAM of the host in GiB'),
    ('log1p_instances', 'log(1 + instances on the host)'),
    ('log1p_io_ops', 'log(1 + I/O-heavy operations in progress)'),
    ('log1p_failed_builds', 'log(1 + recent failed builds on the host)'),
    ('nova_weight', "Nova's combined standard weight before this weigher"),
    ('nova_weight_rel', "Nova's weight minus the best candidate's"),
    ('req_vcpu_frac', 'requested vCPUs / physical vCPUs of the host'),
    ('req_ram_frac', 'requested RAM / physical RAM of the host'),
    ('req_disk_frac', 'requested disk / physical disk of the host'),
    ('usage_present', '1 if the usage snapshot has this host, else 0'),
    ('cpu_util_mean', 'recent mean CPU use / physical cores (0 if absent)'),
    ('cpu_util_p95', 'recent p95 CPU use / physical cores (0 if absent)'),
    ('mem_util_mean', 'recent mean memory use / physical RAM (0 if absent)'),
    ('mem_util_p95', 'recent p95 memory use / physical RAM (0 if absent)'),
    ('project_ratio_present', '1 if the snapshot has the project, else 0'),
    ('project_cpu_ratio', "project's used / allocated CPU (1 if absent)"),
    ('cpu_p95_after', 'p95 CPU use after placement, request scaled by the '
                      "project's ratio (allocation-based if usage absent)"),
)
#: Schema v2: v1's columns, then the placement signals Nova does not carry.
FEATURES_V2: tuple[tuple[str, str], ...] = FEATURES_V1 + (
    ('alloc_since_sample_vcpu_frac', 'vCPUs allocated now minus at the usage '
     'sample / physical vCPUs (0 without a sampled allocation)'),
    ('alloc_since_sample_ram_frac', 'RAM allocated now minus at the usage '
     'sample / physical RAM (0 without a sampled allocation)'),
    ('peak_present', "1 if the snapshot has the host's 24 h peaks, else 0"),
    ('cpu_util_peak_24h', 'highest sampled CPU use over 24 h / physical '
     'cores (0 if absent)'),
    ('mem_util_peak_24h', 'highest sampled memory use over 24 h / physical '
     'RAM (0 if absent)'),
    ('project_cpu_ratio_peak_24h', "project's highest used / allocated CPU "
     'over 24 h (1 if absent)'),
    ('req_life_present', "1 if the request's lifetime is predicted, else 0"),
    ('req_life_log_median', "log1p of the request's predicted median "
     'lifetime in seconds (0 if absent)'),
    ('req_life_log_p90', "log1p of the request's predicted p90 lifetime in "
     'seconds (0 if absent)'),
    ('host_life_present', "1 if the host's remaining busy time is known "
     '(an empty host: 0 s), else 0'),
    ('host_remaining_log_s', 'log1p of the expected remaining life in '
     "seconds of the host's longest-lived holding (0 if absent)"),
    ('life_extension_frac', "how far placing the request extends the host's "
     "busy period, over the request's predicted median life (0 if either "
     'is absent)'),
)


@dataclasses.dataclass(frozen=True)
class Schema:
    """One feature schema: its version and columns; :attr:`hash` goes into
    every artifact manifest."""

    version: int
    features: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.features)

    @property
    def num_features(self) -> int:
        return len(self.features)

    @property
    def hash(self) -> str:
        doc = json.dumps({'name': SCHEMA_NAME, 'version': self.version,
                          'features': self.features}, sort_keys=True)
        return hashlib.sha256(doc.encode('utf-8')).hexdigest()

    def description(self) -> dict:
        """The schema as recorded in a policy manifest."""
        return {'name': SCHEMA_NAME, 'version': self.version,
                'hash': self.hash, 'features': list(self.names)}


SCHEMA_V1 = Schema(1, FEATURES_V1)
SCHEMA_V2 = Schema(2, FEATURES_V2)
#: Every schema the loader accepts, by hash.
SCHEMAS: dict[str, Schema] = {s.hash: s for s in (SCHEMA_V1, SCHEMA_V2)}
#: The current schema: what the simulator computes and new trainings export.
SCHEMA = SCHEMA_V2
SCHEMA_VERSION = SCHEMA.version
FEATURES = SCHEMA.features
#: v1's hash as recorded in every v1 artifact (the bundled policy's).
assert SCHEMA_V1.hash == ('0ab6a5fd16a06de957f2273589b332639191903ebce4000'
                          '69e41cd2cdb94b263')
assert SCHEMA_V2.names[:SCHEMA_V1.num_features] == SCHEMA_V1.names


def schema_for_width(width: int) -> Schema:
    """The known schema with ``width`` columns; ValueError if none."""
    for schema in SCHEMAS.values():
        if schema.num_features == width:
            return schema
    raise ValueError(f'no feature schema has {width} columns')


FEATURE_NAMES: tuple[str, ...] = SCHEMA.names
FEATURE_INDEX: dict[str, int] = {n: i for i, n in enumerate(FEATURE_NAMES)}
NUM_FEATURES = SCHEMA.num_features
#: Goes into every manifest this version writes; the loader accepts the
#: hash of any schema in :data:`SCHEMAS`.
SCHEMA_HASH = SCHEMA.hash


@dataclasses.dataclass(slots=True)
class HostView:
    """What the features need to know about one candidate host.

    Quantities follow Nova's ``HostState``: ``*_total`` are physical, the
    ``*_allocation_ratio`` fields scale them to schedulable capacity, and
    ``ram_free_mb``/``disk_free_mb`` are physical totals minus what is
    allocated (so negative when over-committed).
    """

    name: str
    vcpus_total: float
    vcpus_used: float
    ram_total_mb: float
    ram_free_mb: float
    disk_total_gb: float
    disk_free_mb: float
    cpu_allocation_ratio: float = 1.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    num_instances: float = 0.0
    num_io_ops: float = 0.0
    failed_builds: float = 0.0
    nova_weight: float = 0.0


@dataclasses.dataclass(slots=True)
class RequestView:
    """The request being placed (one instance of Nova's ``RequestSpec``)."""

    vcpus: float
    memory_mb: float
    disk_gb: float = 0.0
    project_id: str = ''
    instance_uuid: str = ''
    flavor_name: str = ''


@dataclasses.dataclass(slots=True)
class HostUsage:
    """Recent actual use of one host, as fractions of its physical size."""

    cpu_util_mean: float
    cpu_util_p95: float
    mem_util_mean: float
    mem_util_p95: float


class UsageLookup:
    """Read-only access to usage data for feature building.

    The weigher fills it from the usage snapshot file
    (:mod:`nova_rl_weigher.snapshot`), the simulator from its own model.
    Missing hosts and projects are normal: the features say they are absent.
    Schema v2's inputs: ``host_alloc`` (host -> vCPUs and RAM MB allocated
    when the usage was sampled), ``host_peaks`` (host -> 24 h peak CPU and
    memory use as fractions), ``project_peak_ratio`` (project -> its
    highest used/allocated CPU over 24 h) and ``lifetimes``.
    """

    __slots__ = ('hosts', 'project_cpu_ratio', 'host_alloc', 'host_peaks',
                 'project_peak_ratio', 'lifetimes')

    def __init__(self, hosts: Mapping[str, HostUsage] | None = None,
                 project_cpu_ratio: Mapping[str, float] | None = None,
                 host_alloc: Mapping[str, tuple[float, float]] | None = None,
                 host_peaks: Mapping[str, tuple[float, float]] | None = None,
                 project_peak_ratio: Mapping[str, float] | None = None,
                 lifetimes: Lifetimes | None = None):
        self.hosts = hosts or {}
        self.project_cpu_ratio = project_cpu_ratio or {}
        self.host_alloc = host_alloc or {}
        self.host_peaks = host_peaks or {}
        self.project_peak_ratio = project_peak_ratio or {}
        self.lifetimes = lifetimes or NO_LIFETIMES

    def request_signals(self, request: 'RequestView') -> 'RequestSignals':
        """Schema v2's request inputs from this lookup."""
        return RequestSignals(
            self.lifetimes.for_request(request.project_id,
                                       request.flavor_name),
            self.project_peak_ratio.get(request.project_id))


NO_USAGE = UsageLookup()


#: Per-host input columns of :class:`HostColumns`, named as the fields of
#: :class:`HostView` they are read from.
HOST_COLUMNS: tuple[str, ...] = (
    'vcpus_total', 'vcpus_used', 'ram_total_mb', 'ram_free_mb',
    'disk_total_gb', 'disk_free_mb', 'cpu_allocation_ratio',
    'ram_allocation_ratio', 'disk_allocation_ratio', 'num_instances',
    'num_io_ops', 'failed_builds', 'nova_weight')
USAGE_COLUMNS: tuple[str, ...] = (
    'usage_present', 'cpu_util_mean', 'cpu_util_p95', 'mem_util_mean',
    'mem_util_p95')


@dataclasses.dataclass(slots=True)
class HostColumns:
    """Candidate hosts as float64 columns, one entry per host.

    The simulator keeps its cluster in this form and passes the rows of the
    candidates (``columns.take(idx)``); the weigher builds it from Nova's host
    states. Usage columns are 0 where no measurement exists, with
    ``usage_present`` saying which.
    """

    vcpus_total: np.ndarray
    vcpus_used: np.ndarray
    ram_total_mb: np.ndarray
    ram_free_mb: np.ndarray
    disk_total_gb: np.ndarray
    disk_free_mb: np.ndarray
    cpu_allocation_ratio: np.ndarray
    ram_allocation_ratio: np.ndarray
    disk_allocation_ratio: np.ndarray
    num_instances: np.ndarray
    num_io_ops: np.ndarray
    failed_builds: np.ndarray
    nova_weight: np.ndarray
    usage_present: np.ndarray
    cpu_util_mean: np.ndarray
    cpu_util_p95: np.ndarray
    mem_util_mean: np.ndarray
    mem_util_p95: np.ndarray

    def __len__(self) -> int:
        return int(self.vcpus_total.shape[0])

    def take(self, index: np.ndarray) -> 'HostColumns':
        return HostColumns(*(getattr(self, f)[index]
                             for f in HOST_COLUMNS + USAGE_COLUMNS))

    def stacked(self) -> np.ndarray:
        """The columns as one float64 array, a row per field in order
        (``(len(INPUT_COLUMNS), N)``, the input of
        :func:`matrix_from_inputs`)."""
        return np.array([getattr(self, f)
                         for f in HOST_COLUMNS + USAGE_COLUMNS],
                        dtype=np.float64).reshape(
                            len(HOST_COLUMNS) + len(USAGE_COLUMNS), len(self))

    @classmethod
    def from_arrays(cls, base: np.ndarray,
                    usage: np.ndarray | None = None) -> 'HostColumns':
        """From an ``(N, len(HOST_COLUMNS))`` array and optional usage
        ``(N, len(USAGE_COLUMNS))`` array (no usage when omitted)."""
        if usage is None:
            usage = np.zeros((base.shape[0], len(USAGE_COLUMNS)))
        return cls(*base.T, *usage.T)

    @classmethod
    def from_views(cls, hosts: Sequence[HostView]) -> 'HostColumns':
        row = operator.attrgetter(*HOST_COLUMNS)
        base = np.array([row(h) for h in hosts], dtype=np.float64)
        return cls.from_arrays(base.reshape(len(hosts), len(HOST_COLUMNS)))

    def with_usage(self, names: Sequence[str],
                   usage: 'UsageLookup') -> 'HostColumns':
        """A copy whose usage columns come from ``usage`` by host name."""
        if not usage.hosts:
            return self
        use = np.zeros((len(names), len(USAGE_COLUMNS)))
        get = usage.hosts.get
        for i, name in enumerate(names):
            hu = get(name)
            if hu is not None:
                use[i] = (1.0, hu.cpu_util_mean, hu.cpu_util_p95,
                          hu.mem_util_mean, hu.mem_util_p95)
        return dataclasses.replace(
            self, usage_present=use[:, 0], cpu_util_mean=use[:, 1],
            cpu_util_p95=use[:, 2], mem_util_mean=use[:, 3],
            mem_util_p95=use[:, 4])


#: Per-host inputs of schema v2 (:class:`HostSignals`), NaN where unknown.
SIGNAL_COLUMNS: tuple[str, ...] = (
    'vcpus_at_sample', 'ram_mb_at_sample', 'cpu_peak_24h', 'mem_peak_24h',
    'remaining_s')


@dataclasses.dataclass(slots=True)
class HostSignals:
    """Schema v2's per-host inputs as float64 columns, NaN where unknown:
    vCPUs and RAM MB allocated when the usage snapshot sampled the host,
    its 24 h peak CPU and memory use (fractions of its physical size), and
    the expected remaining life in seconds of its longest-lived holding
    (0 for an empty host)."""

    vcpus_at_sample: np.ndarray
    ram_mb_at_sample: np.ndarray
    cpu_peak_24h: np.ndarray
    mem_peak_24h: np.ndarray
    remaining_s: np.ndarray

    def stacked(self) -> np.ndarray:
        """``(len(SIGNAL_COLUMNS), N)`` float64, a row per field."""
        return np.array([getattr(self, f) for f in SIGNAL_COLUMNS],
                        dtype=np.float64).reshape(len(SIGNAL_COLUMNS), -1)

    @classmethod
    def from_usage(cls, names: Sequence[str], usage: UsageLookup,
                   remaining_s: Sequence[float] | None = None
                   ) -> 'HostSignals':
        """The snapshot's signals for hosts ``names`` (NaN where the
        snapshot lacks them) and the hosts' remaining life (NaN if None)."""
        sig = np.full((len(SIGNAL_COLUMNS), len(names)), np.nan)
        alloc = usage.host_alloc.get
        peaks = usage.host_peaks.get
        for i, name in enumerate(names):
            a = alloc(name)
            if a is not None:
                sig[0:2, i] = a
            p = peaks(name)
            if p is not None:
                sig[2:4, i] = p
        if remaining_s is not None:
            sig[4] = remaining_s
        return cls(*sig)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestSignals:
    """Schema v2's request inputs: its predicted lifetime and its
    project's 24 h peak used/allocated CPU, None where unknown."""

    life: Lifetime | None = None
    project_peak_ratio: float | None = None


NO_REQUEST_SIGNALS = RequestSignals()


# matrix_from_inputs fills a (feature, host) float64 array a few rows at a
# time; these rows sit next to each other in FEATURES, as it relies on.
_ROWS = {name: i for i, name in enumerate(FEATURE_NAMES)}
_NUM_V1 = SCHEMA_V1.num_features
assert [_ROWS[n] for n in (
    'ram_free_frac', 'ram_free_after_frac', 'vcpu_free_frac',
    'vcpu_free_after_frac', 'disk_free_frac', 'disk_free_after_frac',
    'log_vcpus_total', 'log_ram_total_gb', 'log1p_instances', 'log1p_io_ops',
    'log1p_failed_builds', 'nova_weight', 'nova_weight_rel', 'req_vcpu_frac',
    'req_ram_frac', 'req_disk_frac', 'usage_present', 'cpu_util_mean',
    'cpu_util_p95', 'mem_util_mean', 'mem_util_p95', 'project_ratio_present',
    'project_cpu_ratio', 'cpu_p95_after')] == list(range(_NUM_V1))

#: Rows of the ``inputs`` array of :func:`matrix_from_inputs`: the fields
#: of :class:`HostColumns`, in order.
INPUT_COLUMNS: tuple[str, ...] = HOST_COLUMNS + USAGE_COLUMNS
_IN = {name: i for i, name in enumerate(INPUT_COLUMNS)}


def _take(*names: str) -> np.ndarray:
    return np.array([_IN[n] for n in names], dtype=np.intp)


# RAM, vCPU, disk, in the order of the *_free_frac features.
_TOTALS = _take('ram_total_mb', 'vcpus_total', 'disk_total_gb')
_RATIOS = _take('ram_allocation_ratio', 'cpu_allocation_ratio',
                'disk_allocation_ratio')
# Physical free RAM and disk (the vCPU entry is replaced by vcpus_used).
_PHYS_FREE = _take('ram_free_mb', 'vcpus_used', 'disk_free_mb')
_COUNTS = _take('num_instances', 'num_io_ops', 'failed_builds')
_USAGE = _take(*USAGE_COLUMNS)
_VCPUS_TOTAL = _IN['vcpus_total']
_VCPUS_USED = _IN['vcpus_used']
_RAM_TOTAL = _IN['ram_total_mb']
_RAM_FREE = _IN['ram_free_mb']
_SIZES = _take('vcpus_total', 'ram_total_mb')
_NOVA_WEIGHT = _IN['nova_weight']
_USAGE_PRESENT = _IN['usage_present']
_CPU_P95 = _IN['cpu_util_p95']
_MB_PER_GB = np.array([[1.0], [1.0], [1024.0]])        # totals -> MB
_LOG_SCALE = np.array([[1.0], [1024.0]])               # vCPUs, RAM in GiB


def _zero_where_not(out: np.ndarray, ok: np.ndarray) -> None:
    # copyto rather than a boolean index: a third of the cost where many
    # are not (hosts without a remaining-life estimate).
    if np.count_nonzero(ok) != ok.size:
        np.copyto(out, 0.0, where=~ok)


def compute_matrix(c: HostColumns, request: RequestView,
                   project_cpu_ratio: float | None = None, *,
                   schema: Schema = SCHEMA,
                   signals: HostSignals | None = None,
                   request_signals: RequestSignals = NO_REQUEST_SIGNALS
                   ) -> np.ndarray:
    """The feature matrix for hosts given as columns (vectorised core).

    ``project_cpu_ratio`` is the requesting project's measured used/allocated
    CPU ratio, or None when unknown. ``schema`` says which columns: v1's
    are exactly the first 24 of v2's, which adds the ``signals`` (all
    unknown when None) and ``request_signals``. Non-finite inputs of v1's
    columns are passed through on purpose: the gate refuses a matrix that
    is not finite instead of guessing a value.
    """
    if len(c) == 0:
        return np.empty((0, schema.num_features), dtype=np.float32)
    return matrix_from_inputs(
        c.stacked(), request, project_cpu_ratio, schema=schema,
        signals=None if signals is None else signals.stacked(),
        request_signals=request_signals)


def matrix_from_inputs(inputs: np.ndarray, request: RequestView,
                       project_cpu_ratio: float | None = None, *,
                       schema: Schema = SCHEMA,
                       signals: np.ndarray | None = None,
                       request_signals: RequestSignals = NO_REQUEST_SIGNALS
                       ) -> np.ndarray:
    """:func:`compute_matrix` of hosts given as one float64 array
    ``(len(INPUT_COLUMNS), N)``, a row per :class:`HostColumns` field (the
    simulator keeps its cluster this way), and for schema v2 ``signals``
    ``(len(SIGNAL_COLUMNS), N)`` (None: all unknown).

    The definition of every feature: each is computed in float64 as written
    here and rounded once to float32.
    """
    a = inputs
    n = a.shape[1]
    width = schema.num_features
    if n == 0:
        return np.empty((0, width), dtype=np.float32)
    req_vcpus = float(request.vcpus)
    req_ram = float(request.memory_mb)
    req_disk_mb = float(request.disk_gb) * 1024.0
    project_present = 0.0 if project_cpu_ratio is None else 1.0
    ratio = 1.0 if project_cpu_ratio is None else float(project_cpu_ratio)
    t = np.empty((width, n))

    # Free capacity and free capacity after placement, over capacity, for
    # RAM, vCPUs and disk (rows 0-5). Capacity is the physical total times
    # the allocation ratio. Nova's free_ram_mb ignores the allocation
    # ratio; capacity minus what is allocated (total minus free) is the
    # headroom the RAM filter actually grants; likewise disk.
    totals = a.take(_TOTALS, axis=0)
    np.multiply(totals, _MB_PER_GB, out=totals)     # RAM MB, vCPUs, disk MB
    cap = totals * a.take(_RATIOS, axis=0)
    allocated = a.take(_PHYS_FREE, axis=0)
    np.subtract(totals, allocated, out=allocated)
    allocated[1] = a[_VCPUS_USED]
    free = t[0:6].reshape(3, 2, n)
    np.subtract(cap, allocated, out=free[:, 0])
    np.subtract(free[:, 0], [[req_ram], [req_vcpus], [req_disk_mb]],
                out=free[:, 1])
    ok = cap > 0
    np.divide(free, cap[:, None], out=free, where=ok[:, None])
    _zero_where_not(free, ok[:, None])
    # Sizes and counts (rows 6-10): log2 of vCPUs and of RAM in GiB (0 if
    # not positive), log(1 + count) of instances, I/O ops, failed builds.
    sizes = t[6:8]
    np.divide(totals[1::-1], _LOG_SCALE, out=sizes)
    ok = sizes > 0
    np.log2(sizes, out=sizes, where=ok)
    _zero_where_not(sizes, ok)
    counts = t[8:11]
    np.maximum(a.take(_COUNTS, axis=0), 0.0, out=counts)
    np.log1p(counts, out=counts)
    # Nova's weight, and relative to the best candidate's (rows 11-12).
    nova_weight = a[_NOVA_WEIGHT]
    t[11] = nova_weight
    np.subtract(nova_weight, nova_weight.max(), out=t[12])
    # The request over the host's physical size (rows 13-15).
    size = totals[[1, 0, 2]]                        # vCPUs, RAM MB, disk MB
    ok = size > 0
    np.divide([[req_vcpus], [req_ram], [req_disk_mb]], size, out=t[13:16],
              where=ok)
    _zero_where_not(t[13:16], ok)
    # Measured use and the project's ratio (rows 16-22).
    a.take(_USAGE, axis=0, out=t[16:21])
    t[21] = project_present
    t[22] = ratio
    # p95 CPU use after placement (row 23): measured p95, or without
    # measurements allocated vCPUs as if fully busy (the conservative
    # reading for hot-spot avoidance), plus the request's vCPUs scaled by
    # the project's ratio, over physical vCPUs.
    vcpus_total = a[_VCPUS_TOTAL]
    parts = np.empty((2, n))
    parts[0] = a[_VCPUS_USED]
    parts[1] = req_vcpus * ratio
    ok = vcpus_total > 0
    np.divide(parts, vcpus_total, out=parts, where=ok)
    _zero_where_not(parts, ok)
    np.copyto(parts[0], a[_CPU_P95], where=a[_USAGE_PRESENT] > 0)
    np.add(parts[0], parts[1], out=t[23])
    if width > _NUM_V1:
        _signal_rows(t[_NUM_V1:], a, signals, request_signals)

    out = np.empty((n, width), dtype=np.float32)
    out[...] = t.T
    return out


def _signal_rows(t: np.ndarray, a: np.ndarray, signals: np.ndarray | None,
                 req: RequestSignals) -> None:
    """Schema v2's rows (after v1's 24) into ``t``; every unknown input
    gives its neutral value, so these rows are always finite."""
    n = a.shape[1]
    if signals is None:
        signals = np.full((len(SIGNAL_COLUMNS), n), np.nan)
    # Allocation placed since the usage sample (rows 0-1): what the usage
    # does not show yet, signed (departures lower it), over physical size;
    # 0 where the sample or the size is unknown.
    since = t[0:2]
    np.subtract(a[_VCPUS_USED], signals[0], out=since[0])
    np.subtract(a[_RAM_TOTAL], a[_RAM_FREE], out=since[1])
    np.subtract(since[1], signals[1], out=since[1])
    size = a[_SIZES]
    ok = (size > 0) & np.isfinite(since)
    np.divide(since, size, out=since, where=ok)
    _zero_where_not(since, ok)
    # 24 h peaks (rows 2-4), present only when both are.
    peaks = t[3:5]
    np.copyto(peaks, signals[2:4])
    present = np.isfinite(peaks).all(axis=0)
    t[2] = present
    _zero_where_not(peaks, present)
    t[5] = 1.0 if req.project_peak_ratio is None \
        else float(req.project_peak_ratio)
    # The request's predicted life (rows 6-8).
    life = req.life
    median = 0.0
    if life is None:
        t[6:9] = 0.0
    else:
        median = float(life.median_s)
        t[6] = 1.0
        t[7] = math.log1p(max(median, 0.0))
        t[8] = math.log1p(max(float(life.p90_s), 0.0))
    # The host's remaining busy time (rows 9-10) and how far the request
    # extends it, over the request's median life (row 11).
    remaining = t[10]
    np.maximum(signals[4], 0.0, out=remaining)
    known = np.isfinite(remaining)
    t[9] = known
    _zero_where_not(remaining, known)
    if median > 0:
        np.subtract(median, remaining, out=t[11])
        np.maximum(t[11], 0.0, out=t[11])
        t[11] *= known / median
    else:
        t[11] = 0.0
    np.log1p(remaining, out=remaining)


#: A host's remaining-life reader: the lifetime statistics in, each
#: candidate's :func:`lifetimes.host_remaining_s` out (the weigher reads
#: Nova's ``HostState.instances``), called only for a schema that uses it.
RemainingReader = Callable[[Lifetimes], Sequence[float]]


def usage_matrix(names: Sequence[str], columns: HostColumns,
                 request: RequestView, usage: UsageLookup, *,
                 schema: Schema = SCHEMA,
                 remaining: RemainingReader | None = None) -> np.ndarray:
    """The feature matrix of ``schema`` for hosts ``names`` (``columns``
    without usage) with everything else read from ``usage``: the one path
    of the weigher and of :func:`build_matrix`. v1 reads nothing v2 adds."""
    columns = columns.with_usage(names, usage)
    ratio = usage.project_cpu_ratio.get(request.project_id)
    if schema.num_features <= _NUM_V1:
        return compute_matrix(columns, request, ratio, schema=schema)
    return compute_matrix(
        columns, request, ratio, schema=schema,
        signals=HostSignals.from_usage(
            names, usage,
            None if remaining is None else remaining(usage.lifetimes)),
        request_signals=usage.request_signals(request))


def build_matrix(hosts: Sequence[HostView], request: RequestView,
                 usage: UsageLookup = NO_USAGE, *, schema: Schema = SCHEMA,
                 remaining_s: Sequence[float] | None = None) -> np.ndarray:
    """Return the ``(len(hosts), schema.num_features)`` float32 feature
    matrix; ``remaining_s`` is each host's
    :func:`lifetimes.host_remaining_s` (unknown when None)."""
    if not hosts:
        return np.zeros((0, schema.num_features), dtype=np.float32)
    return usage_matrix(
        [h.name for h in hosts], HostColumns.from_views(hosts), request,
        usage, schema=schema,
        remaining=None if remaining_s is None else lambda _: remaining_s)


def schema_description(schema: Schema = SCHEMA) -> dict:
    """The schema as recorded in a policy manifest."""
    return schema.description()
