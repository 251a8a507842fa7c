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
import math
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


def _safe_div(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else 0.0


def build_matrix(hosts: Sequence[HostView], request: RequestView,
                 usage: UsageLookup = NO_USAGE) -> np.ndarray:
    """Return the ``(len(hosts), NUM_FEATURES)`` float32 feature matrix.

    Hot path inside nova-scheduler: one Python tuple per host, converted to
    numpy once. Non-finite inputs are passed through on purpose: the gate
    refuses a matrix that is not finite instead of guessing a value.
    """
    if not hosts:
        return np.zeros((0, NUM_FEATURES), dtype=np.float32)
    req_vcpus = float(request.vcpus)
    req_ram = float(request.memory_mb)
    req_disk_mb = float(request.disk_gb) * 1024.0
    ratio = usage.project_cpu_ratio.get(request.project_id)
    project_present = 1.0 if ratio is not None else 0.0
    project_ratio = float(ratio) if ratio is not None else 1.0
    best_nova = max(h.nova_weight for h in hosts)
    host_usage = usage.hosts
    log1p = math.log1p

    rows = []
    append = rows.append
    for h in hosts:
        vcpus_total = h.vcpus_total
        ram_total = h.ram_total_mb
        disk_total_mb = h.disk_total_gb * 1024.0
        ram_cap = ram_total * h.ram_allocation_ratio
        vcpu_cap = vcpus_total * h.cpu_allocation_ratio
        disk_cap = disk_total_mb * h.disk_allocation_ratio
        # Nova's free_ram_mb ignores the allocation ratio; capacity minus
        # allocated is the headroom the RAM filter actually grants.
        ram_free = ram_cap - (ram_total - h.ram_free_mb)
        vcpu_free = vcpu_cap - h.vcpus_used
        disk_free = disk_cap - (disk_total_mb - h.disk_free_mb)
        hu = host_usage.get(h.name)
        if hu is not None:
            present = 1.0
            cpu_mean, cpu_p95 = hu.cpu_util_mean, hu.cpu_util_p95
            mem_mean, mem_p95 = hu.mem_util_mean, hu.mem_util_p95
            base_p95 = cpu_p95
        else:
            present = cpu_mean = cpu_p95 = mem_mean = mem_p95 = 0.0
            # Without measurements assume allocated vCPUs are fully used:
            # the conservative reading for hot-spot avoidance.
            base_p95 = _safe_div(h.vcpus_used, vcpus_total)
        append((
            _safe_div(ram_free, ram_cap),
            _safe_div(ram_free - req_ram, ram_cap),
            _safe_div(vcpu_free, vcpu_cap),
            _safe_div(vcpu_free - req_vcpus, vcpu_cap),
            _safe_div(disk_free, disk_cap),
            _safe_div(disk_free - req_disk_mb, disk_cap),
            _log2(vcpus_total),
            _log2(ram_total / 1024.0),
            log1p(max(h.num_instances, 0.0)),
            log1p(max(h.num_io_ops, 0.0)),
            log1p(max(h.failed_builds, 0.0)),
            h.nova_weight,
            h.nova_weight - best_nova,
            _safe_div(req_vcpus, vcpus_total),
            _safe_div(req_ram, ram_total),
            _safe_div(req_disk_mb, disk_total_mb),
            present,
            cpu_mean,
            cpu_p95,
            mem_mean,
            mem_p95,
            project_present,
            project_ratio,
            base_p95 + _safe_div(req_vcpus * project_ratio, vcpus_total),
        ))
    return np.array(rows, dtype=np.float32)


def schema_description() -> dict:
    """The schema as recorded in a policy manifest."""
    return {'name': SCHEMA_NAME, 'version': SCHEMA_VERSION,
            'hash': SCHEMA_HASH, 'features': list(FEATURE_NAMES)}
