"""A family of clusters and workloads to train one policy for (``--family``).

An operator's cloud is not the one cluster a scenario describes: a policy
trained on one cluster shape sees feature values on another that it never
saw, and the weigher's out-of-range check makes it abstain there. Training
for a *family* draws clusters and workloads from the ranges an operator's
cloud falls in, so the exported feature ranges cover the whole family.

A :class:`ClusterFamily` holds the ranges; :meth:`ClusterFamily.draw` turns a
seeded RNG and a base :class:`~nova_rl_trainer.simulation.setup.Setup` (its
trace file, measurement and objective) into a :class:`Member`: a cluster of
1-3 host groups (hardware generations) and a window of the base trace,
thinned, with the host count chosen so the peak allocation lands in range.

Keys of a family file (JSON object, every key optional; a range is
``[low, high]``, a draw is uniform in it, log-uniform for the sizes)::

    groups                 [1, 3]       host groups (generations) per cluster
    host_vcpus             [8, 192]     physical vCPUs of a group's hosts
    gib_per_vcpu           [2, 16]      RAM per vCPU, GiB
    cpu_allocation_ratio   [1, 16]
    ram_allocation_ratio   [1.0, 1.5]
    hosts                  [10, 1000]   hosts in the cluster
    peak_allocation        [0.5, 0.98]  allocated share of the binding
                                        resource at the workload's peak
    window_days            [1.0, 3.0]   length of the trace window
    arrival_scale          [0.05, 1.0]  share of the window's request batches
                                        kept (thinning: lower arrival rates)
    max_requests           40000        requests per member, about (a
                                        number, not a range; the thinning
                                        keeps whole batches): bounds the
                                        replay time of warm-ups

Host power scales with size: ``idle_watts = 50 + 3.125 * vcpus`` (200 W for
48 vCPUs, the scenarios' default) and ``peak_watts = 2.5 * idle_watts``;
local disk is 40 GiB per vCPU. The number of hosts follows from the drawn
host count, thinning and peak allocation: the thinning is lowered (never
raised past the drawn ``arrival_scale``, nor past ``max_requests``) to
reach the drawn host count, then the cluster is sized as ``size-cluster``
sizes it (:func:`scenarios.size_cluster`, on the group mix's mean host),
and a draw whose host count or peak allocation falls outside the ranges is
drawn again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

import numpy as np

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.host_group import HostGroup
from nova_rl_trainer.simulation import scenarios as scenarios_mod
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import trace_files
from nova_rl_trainer.simulation import traces as traces_mod

GIB = 1024.0
DAY = 86400.0

#: Range keys and their defaults (the issue's ranges).
RANGES: dict[str, tuple[float, float]] = {
    'groups': (1, 3),
    'host_vcpus': (8, 192),
    'gib_per_vcpu': (2, 16),
    'cpu_allocation_ratio': (1, 16),
    'ram_allocation_ratio': (1.0, 1.5),
    'hosts': (10, 1000),
    'peak_allocation': (0.5, 0.98),
    'window_days': (1.0, 3.0),
    'arrival_scale': (0.05, 1.0),
}
#: Number keys and their defaults.
NUMBERS: dict[str, float] = {'max_requests': 40000}
#: Keys whose values must be whole numbers.
_INTEGRAL = ('groups', 'hosts', 'max_requests')
#: Keys bounded above by 1 (shares).
_SHARES = ('peak_allocation', 'arrival_scale')
#: Draws tried before giving up on a family whose ranges cannot be met.
MAX_TRIES = 50


class FamilyError(ValueError):
    """A malformed family description; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One drawn cluster and workload: the setup and the trace it loads
    (kept, so members of one base trace read the file once)."""

    setup: Setup
    trace: traces_mod.Trace
    peak_allocation: float

    def describe(self) -> dict:
        s = self.setup
        return {'name': s.name, 'window_s': list(s.window),
                'arrival_scale': s.sample, 'requests': len(self.trace),
                'peak_allocation': round(self.peak_allocation, 4),
                'cluster': s.cluster.as_dict()}


@dataclasses.dataclass(frozen=True)
class ClusterFamily:
    """Ranges of clusters and workloads (see the module docstring)."""

    ranges: Mapping[str, tuple[float, float]] = dataclasses.field(
        default_factory=lambda: dict(RANGES))
    max_requests: int = int(NUMBERS['max_requests'])

    @classmethod
    def from_dict(cls, obj: Any, where: str = 'family') -> 'ClusterFamily':
        """The family of a family file's content; :class:`FamilyError`
        naming the key for anything malformed."""
        if not isinstance(obj, Mapping):
            raise FamilyError(f'{where}: expected a JSON object of ranges, '
                              f'got {type(obj).__name__}')
        ranges = dict(RANGES)
        max_requests = NUMBERS['max_requests']
        for key, value in obj.items():
            if key in NUMBERS:
                max_requests = _number(where, key, value)
                if max_requests < 1 or not float(max_requests).is_integer():
                    raise FamilyError(f'{where}: key {key!r} must be a '
                                      f'positive integer, got {value!r}')
            elif key in RANGES:
                ranges[key] = _range(where, key, value)
            else:
                raise FamilyError(
                    f'{where}: unknown key {key!r}; keys: '
                    + ', '.join([*RANGES, *NUMBERS]))
        return cls(ranges=ranges, max_requests=int(max_requests))

    @classmethod
    def from_file(cls, path: str) -> 'ClusterFamily':
        try:
            with open(path, encoding='utf-8') as f:
                obj = json.load(f)
        except OSError as e:
            raise FamilyError(f'family file {path}: {e.strerror}') from None
        except ValueError as e:
            raise FamilyError(f'family file {path}: not JSON ({e})') from None
        return cls.from_dict(obj, where=f'family file {path}')

    @classmethod
    def named(cls, spec: str) -> 'ClusterFamily':
        """``'default'`` (the ranges above) or a family file's path."""
        return cls() if spec == 'default' else cls.from_file(spec)

    def describe(self) -> dict:
        return {**{k: list(v) for k, v in self.ranges.items()},
                'max_requests': self.max_requests}

    # -- drawing ------------------------------------------------------------

    def members(self, base: Setup, count: int, seed: int) -> list[Member]:
        """``count`` members drawn for ``base``'s trace file; member ``i``
        depends only on ``seed`` and ``i`` (not on ``count``)."""
        full = trace_files.load_trace(base.trace_path, base.trace_format,
                                      seed=base.seed)
        return [self.draw(base, np.random.default_rng([seed, i, 0xFA]),
                          full, index=i) for i in range(count)]

    def draw(self, base: Setup, rng: np.random.Generator,
             full: traces_mod.Trace | None = None, index: int = 0
             ) -> Member:
        """One member: a cluster and a workload from ``rng``."""
        if full is None:
            full = trace_files.load_trace(base.trace_path, base.trace_format,
                                          seed=base.seed)
        last_arrival = float(full.arrival_s.max())
        for _ in range(MAX_TRIES):
            member = self._try(base, rng, full, last_arrival, index)
            if member is not None:
                return member
        raise FamilyError(
            f'family: no cluster in {MAX_TRIES} draws meets the ranges of '
            "'hosts' and 'peak_allocation' for this trace; widen them (or "
            "'window_days', 'arrival_scale', 'max_requests')")

    def _try(self, base: Setup, rng: np.random.Generator,
             full: traces_mod.Trace, last_arrival: float, index: int
             ) -> Member | None:
        r = self.ranges
        groups = [self._group(rng) for _ in range(
            int(rng.integers(r['groups'][0], r['groups'][1] + 1)))]
        share = rng.dirichlet(np.ones(len(groups)))
        days = _uniform(rng, r['window_days'])
        length = min(days * DAY, last_arrival)
        start = float(rng.uniform(0.0, max(last_arrival - length, 0.0)))
        start, end = round(start), round(start + length)
        window = full.window(start, end)
        peak_target = _uniform(rng, r['peak_allocation'])
        hosts_target = _log_uniform(rng, r['hosts'])
        mean_host = _mean_host(groups, share)
        full_hosts = scenarios_mod.size_cluster(
            window, mean_host, peak_target)['peak_hosts_needed'] / peak_target
        scale = min(_uniform(rng, r['arrival_scale']),
                    hosts_target / max(full_hosts, 1e-9),
                    self.max_requests / max(len(window), 1))
        sample_seed = int(rng.integers(2**31))
        trace = window.sample(scale, sample_seed) if scale < 1 else window
        if len(trace) == 0:
            return None
        hosts = scenarios_mod.size_cluster(trace, mean_host,
                                           peak_target)['hosts']
        if not r['hosts'][0] <= hosts <= r['hosts'][1] \
                or hosts < len(groups):
            return None
        counts = _split(hosts, share)
        cluster = ClusterSpec(groups=[
            dataclasses.replace(g, count=n, name=f'gen{k}')
            for k, (g, n) in enumerate(zip(groups, counts))])
        peak = _peak_allocation(trace, cluster)
        if not r['peak_allocation'][0] <= peak <= r['peak_allocation'][1]:
            return None
        name = f"{base.name or 'trace'}-family{index}"
        setup = dataclasses.replace(
            base, cluster=cluster, window=(float(start), float(end)),
            sample=float(scale), sample_seed=sample_seed, name=name)
        return Member(setup, dataclasses.replace(trace, name=name), peak)

    def _group(self, rng: np.random.Generator) -> HostGroup:
        r = self.ranges
        vcpus = float(min(max(2 * round(_log_uniform(
            rng, r['host_vcpus']) / 2), r['host_vcpus'][0]),
            r['host_vcpus'][1]))
        ram_gib = round(vcpus * _log_uniform(rng, r['gib_per_vcpu']))
        idle = 50.0 + 3.125 * vcpus
        return HostGroup(
            count=1, vcpus=vcpus, ram_mb=ram_gib * GIB, disk_gb=40.0 * vcpus,
            cpu_allocation_ratio=round(_log_uniform(
                rng, r['cpu_allocation_ratio']), 2),
            ram_allocation_ratio=round(_uniform(
                rng, r['ram_allocation_ratio']), 2),
            idle_watts=idle, peak_watts=2.5 * idle)


# -- helpers ------------------------------------------------------------------

def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise FamilyError(f'{where}: key {key!r} must be a finite number, '
                          f'got {value!r}')
    return float(value)


def _range(where: str, key: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise FamilyError(f'{where}: key {key!r} must be [low, high], got '
                          f'{value!r}')
    low, high = (_number(where, key, v) for v in value)
    if not 0 < low <= high:
        raise FamilyError(f'{where}: key {key!r} must have 0 < low <= high, '
                          f'got {value!r}')
    if key in _INTEGRAL and not (low.is_integer() and high.is_integer()):
        raise FamilyError(f'{where}: key {key!r} must be whole numbers, got '
                          f'{value!r}')
    if key in _SHARES and high > 1:
        raise FamilyError(f'{where}: key {key!r} is a share: high must be at '
                          f'most 1, got {value!r}')
    return low, high


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def _log_uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(r[0]), math.log(r[1]))))


def _mean_host(groups: list[HostGroup], share: np.ndarray) -> ClusterSpec:
    """One host of the mix's mean capacities (ratios folded in), for
    :func:`scenarios.size_cluster`."""
    def mean(f) -> float:
        return float(sum(s * f(g) for g, s in zip(groups, share)))
    return ClusterSpec(
        hosts=1, host_vcpus=mean(lambda g: g.vcpus * g.cpu_allocation_ratio),
        host_ram_mb=mean(lambda g: g.ram_mb * g.ram_allocation_ratio),
        host_disk_gb=mean(lambda g: g.disk_gb * g.disk_allocation_ratio),
        cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0)


def _split(hosts: int, share: np.ndarray) -> list[int]:
    """``hosts`` split by ``share``, at least one per group (largest
    remainders)."""
    spare = hosts - len(share)
    raw = share * spare
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[:spare - counts.sum()]:
        counts[i] += 1
    return [int(c) + 1 for c in counts]


def _peak_allocation(trace: traces_mod.Trace, cluster: ClusterSpec) -> float:
    """Peak allocated share of the binding resource (every VM placed)."""
    peak = traces_mod.peak_demand(trace)
    h = cluster.per_host
    shares = [peak['peak_vcpus'] / float(h.vcpu_capacity.sum()),
              peak['peak_memory_mb'] / float(h.ram_capacity_mb.sum())]
    disk = float(h.disk_capacity_mb.sum())
    if disk > 0:
        shares.append(peak['peak_disk_gb'] * 1024.0 / disk)
    return max(shares)
