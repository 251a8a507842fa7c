"""The feature vector: one definition for the weigher, simulator and trainer.

A weighing call sees a request and the candidate hosts that passed the
filters. :func:`compute_matrix` (over :class:`HostColumns`, one array per
column) and :func:`build_matrix` (over :class:`HostView` objects) turn them
into a ``float32`` matrix with one row per host and the columns named in
:data:`FEATURES`. The same code runs in the weigher inside nova-scheduler
(:mod:`nova_rl_weigher.weigher` reads Nova's HostState into columns) and in
the trainer's simulator (whose cluster state is kept in those columns). The schema's name and hash go into every policy artifact, so a
policy trained on another feature definition is refused rather than misread.

Features are scale-free where possible (fractions of capacity, log sizes) so a
policy trained on one cluster transfers to another of a different size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from typing import Mapping, Sequence

import numpy as np

SCHEMA_NAME = 'nova-rl-host-features'
SCHEMA_VERSION = 1

#: Column names, in order, with a one-line meaning. Changing anything here
#: changes :data:`SCHEMA_HASH` and invalidates every trained policy.
FEATURES: tuple[tuple[str, str], ...] = (
    ('ram_free_frac', 'free RAM / RAM capacity (allocation ratio applied)'),
    ('ram_free_after_frac', 'free RAM after placing the request / capacity'),
    ('vcpu_free_frac', 'free vCPUs / vCPU capacity (allocation ratio applied)'),
    ('vcpu_free_after_frac', 'free vCPUs after placing the request / capacity'),
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
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
FEATURE_INDEX: dict[str, int] = {n: i for i, n in enumerate(FEATURE_NAMES)}
NUM_FEATURES = len(FEATURE_NAMES)


def _schema_hash() -> str:
    doc = json.dumps({'name': SCHEMA_NAME, 'version': SCHEMA_VERSION,
                      'features': FEATURES}, sort_keys=True)
    return hashlib.sha256(doc.encode('utf-8')).hexdigest()


#: Goes into every policy manifest; the loader refuses any other value.
SCHEMA_HASH = _schema_hash()


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
    """

    __slots__ = ('hosts', 'project_cpu_ratio')

    def __init__(self, hosts: Mapping[str, HostUsage] | None = None,
                 project_cpu_ratio: Mapping[str, float] | None = None):
        self.hosts = hosts or {}
        self.project_cpu_ratio = project_cpu_ratio or {}


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


# matrix_from_inputs fills a (feature, host) float64 array a few rows at a
# time; these rows sit next to each other in FEATURES, as it relies on.
_ROWS = {name: i for i, name in enumerate(FEATURE_NAMES)}
assert [_ROWS[n] for n in (
    'ram_free_frac', 'ram_free_after_frac', 'vcpu_free_frac',
    'vcpu_free_after_frac', 'disk_free_frac', 'disk_free_after_frac',
    'log_vcpus_total', 'log_ram_total_gb', 'log1p_instances', 'log1p_io_ops',
    'log1p_failed_builds', 'nova_weight', 'nova_weight_rel', 'req_vcpu_frac',
    'req_ram_frac', 'req_disk_frac', 'usage_present', 'cpu_util_mean',
    'cpu_util_p95', 'mem_util_mean', 'mem_util_p95', 'project_ratio_present',
    'project_cpu_ratio', 'cpu_p95_after')] == list(range(NUM_FEATURES))

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
_NOVA_WEIGHT = _IN['nova_weight']
_USAGE_PRESENT = _IN['usage_present']
_CPU_P95 = _IN['cpu_util_p95']
_MB_PER_GB = np.array([[1.0], [1.0], [1024.0]])        # totals -> MB
_LOG_SCALE = np.array([[1.0], [1024.0]])               # vCPUs, RAM in GiB


def _zero_where_not(out: np.ndarray, ok: np.ndarray) -> None:
    if np.count_nonzero(ok) != ok.size:
        out[~np.broadcast_to(ok, out.shape)] = 0.0


def compute_matrix(c: HostColumns, request: RequestView,
                   project_cpu_ratio: float | None = None) -> np.ndarray:
    """The feature matrix for hosts given as columns (vectorised core).

    ``project_cpu_ratio`` is the requesting project's measured used/allocated
    CPU ratio, or None when unknown. Non-finite inputs are passed through on
    purpose: the gate refuses a matrix that is not finite instead of
    guessing a value.
    """
    if len(c) == 0:
        return np.empty((0, NUM_FEATURES), dtype=np.float32)
    return matrix_from_inputs(c.stacked(), request, project_cpu_ratio)


def matrix_from_inputs(inputs: np.ndarray, request: RequestView,
                       project_cpu_ratio: float | None = None) -> np.ndarray:
    """:func:`compute_matrix` of hosts given as one float64 array
    ``(len(INPUT_COLUMNS), N)``, a row per :class:`HostColumns` field (the
    simulator keeps its cluster this way).

    The definition of every feature: each is computed in float64 as written
    here and rounded once to float32.
    """
    a = inputs
    n = a.shape[1]
    if n == 0:
        return np.empty((0, NUM_FEATURES), dtype=np.float32)
    req_vcpus = float(request.vcpus)
    req_ram = float(request.memory_mb)
    req_disk_mb = float(request.disk_gb) * 1024.0
    project_present = 0.0 if project_cpu_ratio is None else 1.0
    ratio = 1.0 if project_cpu_ratio is None else float(project_cpu_ratio)
    t = np.empty((NUM_FEATURES, n))

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

    out = np.empty((n, NUM_FEATURES), dtype=np.float32)
    out[...] = t.T
    return out


def build_matrix(hosts: Sequence[HostView], request: RequestView,
                 usage: UsageLookup = NO_USAGE) -> np.ndarray:
    """Return the ``(len(hosts), NUM_FEATURES)`` float32 feature matrix."""
    if not hosts:
        return np.zeros((0, NUM_FEATURES), dtype=np.float32)
    columns = HostColumns.from_views(hosts).with_usage(
        [h.name for h in hosts], usage)
    return compute_matrix(columns, request,
                          usage.project_cpu_ratio.get(request.project_id))


def schema_description() -> dict:
    """The schema as recorded in a policy manifest."""
    return {'name': SCHEMA_NAME, 'version': SCHEMA_VERSION,
            'hash': SCHEMA_HASH, 'features': list(FEATURE_NAMES)}
