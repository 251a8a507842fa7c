"""The simulated cluster: groups of compute hosts, sized like Nova sees them.

A :class:`ClusterSpec` is one or more :class:`HostGroup`: ``count`` hosts of
one shape each (a hardware generation). Quantities follow Nova: ``vcpus``
are a host's physical (logical) CPUs, ``ram_mb``/``disk_gb`` its physical
memory and local disk, and the allocation ratios scale them to what
placement lets the scheduler allocate (Nova 34's
``initial_*_allocation_ratio`` defaults: CPU 4.0, RAM 1.0, disk 1.0).
Nothing is reserved for the host itself (``reserved_host_*`` 0), so
capacity is ``physical * ratio``.

Power is linear in CPU use between ``idle_watts`` and ``peak_watts`` for a
host holding a VM; an empty host draws ``empty_watts`` (0: powered off,
which is what packing is for).

Two ways to build one:

* identical hosts, as the command line's ``--hosts``, ``--host-vcpus``, ...
  and the scenarios give them: ``ClusterSpec(hosts=500, host_vcpus=48,
  host_ram_mb=393216)`` (one group named ``group0``);
* host groups, from a cluster file (:meth:`ClusterSpec.from_file`, the
  command line's ``--cluster FILE``) or :meth:`ClusterSpec.from_dict`;
  :mod:`nova_rl_trainer.simulation.cluster_file` has the format. Hosts
  are named ``<name>-<i>``, i from 0, in file order (or as the group's
  ``hosts`` names them): the simulator's host index runs through the
  groups in that order.

What the simulator reads is :attr:`ClusterSpec.per_host` (one array entry
per host). The scalar accessors of the identical-host form
(``host_vcpus``, ``vcpu_capacity``, ...) answer when every group agrees on
that quantity and raise ValueError otherwise. A cluster is
:attr:`~ClusterSpec.uniform` when all its groups have the same shape; the
simulator then takes its identical-host path, whose floats are those of the
identical-host simulator before host groups existed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from nova_rl_trainer.simulation import cluster_file
from nova_rl_trainer.simulation.cluster_file import ClusterFileError
from nova_rl_trainer.simulation.host_group import _SHAPE
from nova_rl_trainer.simulation.host_group import HostArrays
from nova_rl_trainer.simulation.host_group import HostGroup

# The identical-host keywords of ClusterSpec and the group field of each.
_LEGACY = (('host_vcpus', 'vcpus'), ('host_ram_mb', 'ram_mb'),
           ('host_disk_gb', 'disk_gb'),
           ('cpu_allocation_ratio', 'cpu_allocation_ratio'),
           ('ram_allocation_ratio', 'ram_allocation_ratio'),
           ('disk_allocation_ratio', 'disk_allocation_ratio'),
           ('idle_watts', 'idle_watts'), ('peak_watts', 'peak_watts'),
           ('empty_watts', 'empty_watts'))
_LEGACY_FIELD = dict(_LEGACY)


class ClusterSpec:
    """The cluster: host groups (see the module docstring). Immutable,
    hashable, equal when the groups are.

    ``ClusterSpec(hosts, host_vcpus, host_ram_mb, host_disk_gb=2048.0,
    cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0,
    disk_allocation_ratio=1.0, idle_watts=200.0, peak_watts=500.0,
    empty_watts=0.0)`` is a cluster of identical hosts (one group,
    ``group0``); ``ClusterSpec(groups=[HostGroup(...), ...])`` one of host
    groups (unnamed groups are named ``group<k>``, k from 0). Invalid
    values raise ValueError (:class:`ClusterFileError`).
    """

    __slots__ = ('groups', '_arrays', '_uniform')

    def __init__(self, hosts: int | None = None,
                 host_vcpus: float | None = None,
                 host_ram_mb: float | None = None,
                 host_disk_gb: float | None = None,
                 cpu_allocation_ratio: float | None = None,
                 ram_allocation_ratio: float | None = None,
                 disk_allocation_ratio: float | None = None,
                 idle_watts: float | None = None,
                 peak_watts: float | None = None,
                 empty_watts: float | None = None, *,
                 groups=None) -> None:
        legacy = dict(hosts=hosts, host_vcpus=host_vcpus,
                      host_ram_mb=host_ram_mb, host_disk_gb=host_disk_gb,
                      cpu_allocation_ratio=cpu_allocation_ratio,
                      ram_allocation_ratio=ram_allocation_ratio,
                      disk_allocation_ratio=disk_allocation_ratio,
                      idle_watts=idle_watts, peak_watts=peak_watts,
                      empty_watts=empty_watts)
        given = {k: v for k, v in legacy.items() if v is not None}
        if groups is not None:
            if given:
                raise ValueError('give host groups or identical hosts ('
                                 + ', '.join(given) + '), not both')
            groups = tuple(groups)
        else:
            missing = [k for k in ('hosts', 'host_vcpus', 'host_ram_mb')
                       if k not in given]
            if missing:
                raise ValueError('identical hosts need '
                                 + ', '.join(missing))
            if isinstance(hosts, bool) or not isinstance(
                    hosts, (int, np.integer)) or hosts < 1:
                raise ValueError(f'hosts must be a positive integer, got '
                                 f'{hosts!r}')
            fields = {_LEGACY_FIELD[k]: v for k, v in given.items()
                      if k != 'hosts'}
            groups = (_legacy_group(int(hosts), fields),)
        if not groups:
            raise ClusterFileError('a cluster needs at least one host group')
        for g in groups:
            if not isinstance(g, HostGroup):
                raise TypeError(f'not a HostGroup: {g!r}')
        groups = tuple(g if g.name is not None
                       else dataclasses.replace(g, name=f'group{k}')
                       for k, g in enumerate(groups))
        seen: set[str] = set()
        for g in groups:
            if g.name in seen:
                raise ClusterFileError(
                    f'host group {g.name!r}: key \'name\' is used by two '
                    'groups; host group names must be unique')
            seen.add(g.name)
        if any(g.hosts is not None for g in groups):
            # Generated names never collide (group names are unique);
            # given ones may, with each other or with generated ones.
            owner: dict[str, HostGroup] = {}
            for g in groups:
                for host in g.host_names:
                    if host in owner:
                        # Blame the group that gave the name.
                        a, b = ((g, owner[host]) if g.hosts is not None
                                else (owner[host], g))
                        raise ClusterFileError(
                            f"host group {a.name!r}: key 'hosts': host "
                            f'{host!r} is also a host of group {b.name!r}; '
                            'host names must be unique')
                    owner[host] = g
        object.__setattr__(self, 'groups', groups)
        object.__setattr__(self, '_uniform',
                           len({g.shape for g in groups}) == 1)
        object.__setattr__(self, '_arrays', None)

    # -- immutability, equality, copies ---------------------------------------

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f'cannot assign to {name!r}')

    def __eq__(self, other) -> bool:
        if not isinstance(other, ClusterSpec):
            return NotImplemented
        return self.groups == other.groups

    def __hash__(self) -> int:
        return hash(self.groups)

    def __repr__(self) -> str:
        if len(self.groups) == 1:
            g = self.groups[0]
            return (f'ClusterSpec(hosts={g.count}, host_vcpus={g.vcpus:g}, '
                    f'host_ram_mb={g.ram_mb:g}, ...)')
        return f'ClusterSpec(groups={list(self.groups)!r})'

    def __copy__(self) -> 'ClusterSpec':
        return self

    def __deepcopy__(self, memo) -> 'ClusterSpec':
        return self    # immutable: simulations clone without copying it

    def __getstate__(self):
        return self.groups

    def __setstate__(self, groups) -> None:
        object.__setattr__(self, 'groups', tuple(groups))
        object.__setattr__(self, '_uniform',
                           len({g.shape for g in self.groups}) == 1)
        object.__setattr__(self, '_arrays', None)

    # -- the cluster ----------------------------------------------------------

    @property
    def hosts(self) -> int:
        """Number of hosts, all groups."""
        return sum(g.count for g in self.groups)

    @property
    def uniform(self) -> bool:
        """Whether every host has the same shape (the identical-host
        simulator path)."""
        return self._uniform

    @property
    def per_host(self) -> HostArrays:
        """Host by host: names and every quantity (read-only arrays)."""
        if self._arrays is None:
            counts = [g.count for g in self.groups]
            cols = {}
            for key in _SHAPE:
                a = np.repeat(np.array([getattr(g, key)
                                        for g in self.groups]), counts)
                a.flags.writeable = False
                cols[key] = a
            group = np.repeat(np.arange(len(self.groups)), counts)
            group.flags.writeable = False
            names = tuple(n for g in self.groups for n in g.host_names)
            object.__setattr__(self, '_arrays', HostArrays(
                names=names, group=group, **cols))
        return self._arrays

    @property
    def host_names(self) -> tuple[str, ...]:
        return self.per_host.names

    def _common(self, key: str, what: str) -> float:
        values = {getattr(g, key) for g in self.groups}
        if len(values) != 1:
            raise ValueError(
                f'{what} differs between host groups ('
                + ', '.join(f'{g.name}: {getattr(g, key):g}'
                            for g in self.groups)
                + '); read the cluster host by host (ClusterSpec.per_host)')
        return values.pop()

    # The identical-host view: the value every group shares.
    host_vcpus = property(lambda self: self._common('vcpus', 'host_vcpus'))
    host_ram_mb = property(lambda self: self._common('ram_mb',
                                                     'host_ram_mb'))
    host_disk_gb = property(lambda self: self._common('disk_gb',
                                                      'host_disk_gb'))
    cpu_allocation_ratio = property(lambda self: self._common(
        'cpu_allocation_ratio', 'cpu_allocation_ratio'))
    ram_allocation_ratio = property(lambda self: self._common(
        'ram_allocation_ratio', 'ram_allocation_ratio'))
    disk_allocation_ratio = property(lambda self: self._common(
        'disk_allocation_ratio', 'disk_allocation_ratio'))
    idle_watts = property(lambda self: self._common('idle_watts',
                                                    'idle_watts'))
    peak_watts = property(lambda self: self._common('peak_watts',
                                                    'peak_watts'))
    empty_watts = property(lambda self: self._common('empty_watts',
                                                     'empty_watts'))

    def _shape_group(self) -> HostGroup:
        if not self._uniform:
            raise ValueError(
                'host sizes differ between host groups ('
                + ', '.join(g.name for g in self.groups)
                + '); read the cluster host by host (ClusterSpec.per_host)')
        return self.groups[0]

    @property
    def vcpu_capacity(self) -> float:
        """vCPUs placement allows per host (identical hosts)."""
        g = self._shape_group()
        return g.vcpus * g.cpu_allocation_ratio

    @property
    def ram_capacity_mb(self) -> float:
        g = self._shape_group()
        return g.ram_mb * g.ram_allocation_ratio

    @property
    def disk_capacity_mb(self) -> float:
        g = self._shape_group()
        return g.disk_gb * 1024.0 * g.disk_allocation_ratio

    def totals(self) -> dict[str, float]:
        """Physical and schedulable totals over every host."""
        a = self.per_host
        return {'hosts': self.hosts, 'vcpus': float(a.vcpus.sum()),
                'ram_mb': float(a.ram_mb.sum()),
                'disk_gb': float(a.disk_gb.sum()),
                'vcpu_capacity': float(a.vcpu_capacity.sum()),
                'ram_capacity_mb': float(a.ram_capacity_mb.sum()),
                'disk_capacity_mb': float(a.disk_capacity_mb.sum())}

    def summary(self) -> str:
        """A line per group, for people."""
        lines = []
        for g in self.groups:
            lines.append(
                f'{g.name}: {g.count} hosts x {g.vcpus:g} vCPUs, '
                f'{g.ram_mb / 1024:g} GiB RAM, {g.disk_gb:g} GiB disk; '
                f'ratios CPU {g.cpu_allocation_ratio:g}, RAM '
                f'{g.ram_allocation_ratio:g}, disk '
                f'{g.disk_allocation_ratio:g}; {g.idle_watts:g}-'
                f'{g.peak_watts:g} W (empty {g.empty_watts:g} W)')
        t = self.totals()
        lines.append(f'total: {t["hosts"]} hosts, {t["vcpus"]:g} vCPUs '
                     f'({t["vcpu_capacity"]:g} allocatable), '
                     f'{t["ram_mb"] / 1024:g} GiB RAM '
                     f'({t["ram_capacity_mb"] / 1024:g} allocatable)')
        return '\n'.join(lines)

    def replace(self, **changes) -> 'ClusterSpec':
        """A copy with identical-host fields changed (``hosts``,
        ``host_vcpus``, ... as the constructor takes them) in every group;
        ``hosts`` only for a one-group cluster (host names the group gave
        are dropped when the count changes). ``groups=`` replaces the
        groups."""
        if 'groups' in changes:
            groups = changes.pop('groups')
            if changes:
                raise ValueError('groups= replaces everything; no other '
                                 'change with it')
            return ClusterSpec(groups=groups)
        unknown = set(changes) - set(_LEGACY_FIELD) - {'hosts'}
        if unknown:
            raise ValueError('unknown cluster field(s): '
                             + ', '.join(sorted(unknown)))
        hosts = changes.pop('hosts', None)
        if hosts is not None and len(self.groups) != 1:
            raise ValueError('hosts= on a cluster of several host groups: '
                             'give the groups instead')
        fields = {_LEGACY_FIELD[k]: v for k, v in changes.items()}
        groups = []
        for g in self.groups:
            if hosts is not None:
                if isinstance(hosts, bool) or not isinstance(
                        hosts, (int, np.integer)) or hosts < 1:
                    raise ValueError(f'hosts must be a positive integer, '
                                     f'got {hosts!r}')
                fields['count'] = int(hosts)
                if g.hosts is not None and int(hosts) != g.count:
                    fields['hosts'] = None
            groups.append(_group(dataclasses.replace, g, fields))
        return ClusterSpec(groups=groups)

    # -- the file format ------------------------------------------------------

    def as_dict(self) -> dict:
        """The cluster file's content (every key of every group)."""
        return {'host_groups': [g.as_dict() for g in self.groups]}

    @classmethod
    def from_dict(cls, obj: Any, source: str = 'cluster') -> 'ClusterSpec':
        """From a cluster file's content; :class:`ClusterFileError` naming
        the group and the key for anything malformed (``source`` starts
        the message)."""
        try:
            return cls._from_dict(obj)
        except ClusterFileError as e:
            raise ClusterFileError(f'{source}: {e}') from None

    @classmethod
    def _from_dict(cls, obj: Any) -> 'ClusterSpec':
        return cls(groups=cluster_file.host_groups(obj, HostGroup))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> 'ClusterSpec':
        """Read a cluster file (JSON); :class:`ClusterFileError` with the
        file name, and the line and column of a JSON syntax error."""
        path = os.fspath(path)
        obj = cluster_file.read(path)
        return cls.from_dict(obj, source=f'cluster file {path}')

    def to_file(self, path: str | os.PathLike) -> None:
        """Write the cluster file (atomically: a reader sees the old file
        or the new one)."""
        cluster_file.write(path, self.as_dict())


def _legacy_group(hosts: int, fields: dict) -> HostGroup:
    return _group(HostGroup, None, {'count': hosts, **fields})


def _group(make, base, fields: dict) -> HostGroup:
    """A HostGroup from identical-host keywords, its messages in their
    names (``host_vcpus`` rather than ``vcpus``)."""
    try:
        return make(base, **fields) if base is not None else make(**fields)
    except ClusterFileError as e:
        msg = str(e)
        for legacy, field in _LEGACY:
            msg = msg.replace(f"key '{field}'", legacy)
        msg = msg.replace("key 'count'", 'hosts')
        for head in ('host group: ', "host group 'group0': "):
            if msg.startswith(head):
                msg = msg[len(head):]
        raise ClusterFileError(msg) from None
