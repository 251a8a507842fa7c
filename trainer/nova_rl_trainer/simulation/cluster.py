"""The simulated cluster: identical compute hosts, sized like Nova sees them.

Quantities follow Nova: ``host_vcpus`` are the host's physical (logical)
CPUs, ``host_ram_mb``/``host_disk_gb`` its physical memory and local disk,
and the allocation ratios scale them to what placement lets the scheduler
allocate (Nova 34's ``initial_*_allocation_ratio`` defaults: CPU 4.0, RAM
1.0, disk 1.0). Nothing is reserved for the host itself
(``reserved_host_*`` 0), so capacity is ``physical * ratio``.

Power is linear in CPU use between ``idle_watts`` and ``peak_watts`` for a
host holding a VM; an empty host draws ``empty_watts`` (0: powered off,
which is what packing is for).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    hosts: int
    host_vcpus: float
    host_ram_mb: float
    host_disk_gb: float = 2048.0
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    idle_watts: float = 200.0
    peak_watts: float = 500.0
    empty_watts: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.hosts, int) or self.hosts < 1:
            raise ValueError(f'hosts must be a positive integer, got '
                             f'{self.hosts!r}')
        for name in ('host_vcpus', 'host_ram_mb', 'cpu_allocation_ratio',
                     'ram_allocation_ratio', 'disk_allocation_ratio'):
            if not getattr(self, name) > 0:
                raise ValueError(f'{name} must be positive, got '
                                 f'{getattr(self, name)!r}')
        if self.host_disk_gb < 0:
            raise ValueError('host_disk_gb must not be negative')
        if not (self.empty_watts >= 0
                and 0 <= self.idle_watts <= self.peak_watts):
            raise ValueError('need 0 <= idle_watts <= peak_watts and '
                             'empty_watts >= 0')

    @property
    def vcpu_capacity(self) -> float:
        return self.host_vcpus * self.cpu_allocation_ratio

    @property
    def ram_capacity_mb(self) -> float:
        return self.host_ram_mb * self.ram_allocation_ratio

    @property
    def disk_capacity_mb(self) -> float:
        return self.host_disk_gb * 1024.0 * self.disk_allocation_ratio

    def replace(self, **changes) -> 'ClusterSpec':
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
