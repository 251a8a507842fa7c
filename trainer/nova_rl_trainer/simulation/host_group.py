"""A host group: ``count`` identical compute hosts (one hardware
generation), and the cluster host by host (:class:`HostArrays`).

The quantities, their defaults and the power model are those of
:mod:`nova_rl_trainer.simulation.cluster`; a group's keys are those of the
cluster file (:mod:`nova_rl_trainer.simulation.cluster_file`), and an
invalid value raises its :class:`ClusterFileError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from nova_rl_trainer.simulation.cluster_file import ClusterFileError
from nova_rl_trainer.simulation.cluster_file import GROUP_KEYS
from nova_rl_trainer.simulation.cluster_file import MAX_GROUP_HOSTS
from nova_rl_trainer.simulation.cluster_file import MAX_HOST_NAME

# Fields of a group that make its shape (all but count, name and hosts).
_SHAPE = tuple(k for k in GROUP_KEYS if k not in ('name', 'count', 'hosts'))


@dataclasses.dataclass(frozen=True)
class HostGroup:
    """``count`` identical hosts. Numbers are stored as floats (``count``
    as int); invalid values raise :class:`ClusterFileError`."""

    count: int
    vcpus: float
    ram_mb: float
    disk_gb: float = 2048.0
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    idle_watts: float = 200.0
    peak_watts: float = 500.0
    empty_watts: float = 0.0
    #: None: ``group<k>``, k its place in the cluster (from 0).
    name: str | None = None
    #: The hosts' names, exactly ``count`` unique ones; None:
    #: ``<name>-<i>``.
    hosts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        where = ('host group' if self.name is None
                 else f'host group {self.name!r}')
        if self.name is not None and (
                not isinstance(self.name, str) or not self.name or any(
                    ch.isspace() or not ch.isprintable()
                    for ch in self.name)):
            raise ClusterFileError(
                f'host group name {self.name!r}: key \'name\' must be a '
                'non-empty string without spaces')
        if isinstance(self.count, bool) or not isinstance(
                self.count, (int, np.integer)):
            raise ClusterFileError(f"{where}: key 'count' must be an "
                                   f'integer, got {self.count!r}')
        if not 1 <= self.count <= MAX_GROUP_HOSTS:
            raise ClusterFileError(
                f"{where}: key 'count' must be between 1 and "
                f'{MAX_GROUP_HOSTS:,} hosts, got {self.count}')
        object.__setattr__(self, 'count', int(self.count))
        for key in _SHAPE:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(
                    value, (int, float, np.integer, np.floating)):
                raise ClusterFileError(f'{where}: key {key!r} must be a '
                                       f'number, got {value!r}')
            value = float(value)
            if not math.isfinite(value):
                raise ClusterFileError(f'{where}: key {key!r} must be '
                                       f'finite, got {value!r}')
            object.__setattr__(self, key, value)
        for key in ('vcpus', 'ram_mb', 'cpu_allocation_ratio',
                    'ram_allocation_ratio', 'disk_allocation_ratio'):
            if not getattr(self, key) > 0:
                raise ClusterFileError(f'{where}: key {key!r} must be '
                                       f'positive, got {getattr(self, key)!r}')
        for key in ('disk_gb', 'idle_watts', 'empty_watts'):
            if getattr(self, key) < 0:
                raise ClusterFileError(f'{where}: key {key!r} must not be '
                                       f'negative, got {getattr(self, key)!r}')
        if self.peak_watts < self.idle_watts:
            raise ClusterFileError(
                f"{where}: key 'peak_watts' ({self.peak_watts:g}) must not "
                f"be below 'idle_watts' ({self.idle_watts:g})")
        if self.hosts is not None:
            object.__setattr__(self, 'hosts', _host_names(
                self.hosts, self.count, where))

    @property
    def shape(self) -> tuple[float, ...]:
        """Everything but count and name: groups of one shape are alike."""
        return tuple(getattr(self, k) for k in _SHAPE)

    def as_dict(self) -> dict:
        """The group as a cluster file has it (every key; ``hosts`` only
        when the group names its hosts)."""
        out = {k: _plain(getattr(self, k)) for k in GROUP_KEYS
               if k != 'hosts'}
        if self.hosts is not None:
            out['hosts'] = list(self.hosts)
        return out

    @property
    def host_names(self) -> tuple[str, ...]:
        """``hosts``, or ``<name>-<i>`` for i from 0."""
        if self.hosts is not None:
            return self.hosts
        return tuple(f'{self.name}-{i}' for i in range(self.count))


def _host_names(value: Any, count: int, where: str) -> tuple[str, ...]:
    """The ``hosts`` key checked: a list of ``count`` unique names."""
    if isinstance(value, (str, bytes)) or not isinstance(value,
                                                         (list, tuple)):
        raise ClusterFileError(f"{where}: key 'hosts' must be a list of "
                               f'host names, got {type(value).__name__}')
    if len(value) != count:
        raise ClusterFileError(
            f"{where}: key 'hosts' must list exactly 'count' ({count}) host "
            f'names, got {len(value)}')
    seen: set[str] = set()
    for i, name in enumerate(value):
        if (not isinstance(name, str) or not name
                or len(name) > MAX_HOST_NAME or any(
                    ch.isspace() or not ch.isprintable() for ch in name)):
            raise ClusterFileError(
                f"{where}: key 'hosts' item {i} must be a host name (a "
                f'non-empty string of at most {MAX_HOST_NAME} characters '
                f'without spaces), got {repr(name)[:80]}')
        if name in seen:
            raise ClusterFileError(f"{where}: key 'hosts' names host "
                                   f'{name!r} twice')
        seen.add(name)
    return tuple(value)


def _plain(value: Any) -> Any:
    """Integral floats as ints, so a written file reads as it was typed."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@dataclasses.dataclass(frozen=True)
class HostArrays:
    """The cluster host by host: one entry per host, in host index order
    (read-only arrays)."""

    names: tuple[str, ...]
    group: np.ndarray                  # index of each host's group
    vcpus: np.ndarray
    ram_mb: np.ndarray
    disk_gb: np.ndarray
    cpu_allocation_ratio: np.ndarray
    ram_allocation_ratio: np.ndarray
    disk_allocation_ratio: np.ndarray
    idle_watts: np.ndarray
    peak_watts: np.ndarray
    empty_watts: np.ndarray

    @property
    def vcpu_capacity(self) -> np.ndarray:
        return self.vcpus * self.cpu_allocation_ratio

    @property
    def ram_capacity_mb(self) -> np.ndarray:
        return self.ram_mb * self.ram_allocation_ratio

    @property
    def disk_mb(self) -> np.ndarray:
        return self.disk_gb * 1024.0

    @property
    def disk_capacity_mb(self) -> np.ndarray:
        return self.disk_gb * 1024.0 * self.disk_allocation_ratio
