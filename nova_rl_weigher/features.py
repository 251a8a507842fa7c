"""The feature vector: one definition for the weigher, simulator and trainer.

A weighing call sees a request and the candidate hosts that passed the
filters. :func:`build_matrix` turns them into a ``float32`` matrix with one row
per host and the columns named in :data:`FEATURES`. The same function is used
by the weigher inside nova-scheduler (through :mod:`nova_rl_weigher.nova_views`)
and by the simulator and trainer, which build :class:`HostView` objects from
their own hosts. The schema's name and hash go into every policy artifact, so a
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


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den <= 0 (a host reporting no capacity)."""
    ok = den > 0
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape),
                     where=ok)


def _log2(x: np.ndarray) -> np.ndarray:
    return np.log2(x, out=np.zeros(x.shape), where=x > 0)


def compute_matrix(c: HostColumns, request: RequestView,
                   project_cpu_ratio: float | None = None) -> np.ndarray:
    """The feature matrix for hosts given as columns (vectorised core).

    ``project_cpu_ratio`` is the requesting project's measured used/allocated
    CPU ratio, or None when unknown. Non-finite inputs are passed through on
    purpose: the gate refuses a matrix that is not finite instead of
    guessing a value.
    """
    n = len(c)
    out = np.empty((n, NUM_FEATURES), dtype=np.float32)
    if n == 0:
        return out
    req_vcpus = float(request.vcpus)
    req_ram = float(request.memory_mb)
    req_disk_mb = float(request.disk_gb) * 1024.0
    project_present = 0.0 if project_cpu_ratio is None else 1.0
    ratio = 1.0 if project_cpu_ratio is None else float(project_cpu_ratio)

    disk_total_mb = c.disk_total_gb * 1024.0
    ram_cap = c.ram_total_mb * c.ram_allocation_ratio
    vcpu_cap = c.vcpus_total * c.cpu_allocation_ratio
    disk_cap = disk_total_mb * c.disk_allocation_ratio
    # Nova's free_ram_mb ignores the allocation ratio; capacity minus what
    # is allocated is the headroom the RAM filter actually grants.
    ram_free = ram_cap - (c.ram_total_mb - c.ram_free_mb)
    vcpu_free = vcpu_cap - c.vcpus_used
    disk_free = disk_cap - (disk_total_mb - c.disk_free_mb)
    # Without measurements assume allocated vCPUs are fully busy: the
    # conservative reading for hot-spot avoidance.
    base_p95 = np.where(c.usage_present > 0, c.cpu_util_p95,
                        _div(c.vcpus_used, c.vcpus_total))
    i = FEATURE_INDEX
    out[:, i['ram_free_frac']] = _div(ram_free, ram_cap)
    out[:, i['ram_free_after_frac']] = _div(ram_free - req_ram, ram_cap)
    out[:, i['vcpu_free_frac']] = _div(vcpu_free, vcpu_cap)
    out[:, i['vcpu_free_after_frac']] = _div(vcpu_free - req_vcpus, vcpu_cap)
    out[:, i['disk_free_frac']] = _div(disk_free, disk_cap)
    out[:, i['disk_free_after_frac']] = _div(disk_free - req_disk_mb,
                                             disk_cap)
    out[:, i['log_vcpus_total']] = _log2(c.vcpus_total)
    out[:, i['log_ram_total_gb']] = _log2(c.ram_total_mb / 1024.0)
    out[:, i['log1p_instances']] = np.log1p(np.maximum(c.num_instances, 0))
    out[:, i['log1p_io_ops']] = np.log1p(np.maximum(c.num_io_ops, 0))
    out[:, i['log1p_failed_builds']] = np.log1p(
        np.maximum(c.failed_builds, 0))
    out[:, i['nova_weight']] = c.nova_weight
    out[:, i['nova_weight_rel']] = c.nova_weight - c.nova_weight.max()
    out[:, i['req_vcpu_frac']] = _div(np.full(n, req_vcpus), c.vcpus_total)
    out[:, i['req_ram_frac']] = _div(np.full(n, req_ram), c.ram_total_mb)
    out[:, i['req_disk_frac']] = _div(np.full(n, req_disk_mb), disk_total_mb)
    out[:, i['usage_present']] = c.usage_present
    out[:, i['cpu_util_mean']] = c.cpu_util_mean
    out[:, i['cpu_util_p95']] = c.cpu_util_p95
    out[:, i['mem_util_mean']] = c.mem_util_mean
    out[:, i['mem_util_p95']] = c.mem_util_p95
    out[:, i['project_ratio_present']] = project_present
    out[:, i['project_cpu_ratio']] = ratio
    out[:, i['cpu_p95_after']] = base_p95 + _div(
        np.full(n, req_vcpus * ratio), c.vcpus_total)
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
