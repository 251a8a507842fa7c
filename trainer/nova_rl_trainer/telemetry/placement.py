"""The compute hosts as Placement knows them: the cluster file
(``nova-rl-trainer cluster --from-placement``) and the hosts' capacities
for the usage snapshot (``snapshot --from-placement``).

The requests and the client are in
:mod:`nova_rl_trainer.telemetry.placement_client`.

A **compute host** is a provider with ``VCPU`` and ``MEMORY_MB``
inventories (Nova's compute node provider, named after the node's
``hypervisor_hostname``); the others (nested providers such as vGPUs,
sharing providers such as shared storage) are skipped and counted. Each
inventory has ``total``, ``reserved`` and ``allocation_ratio``; Nova's
Placement capacity is ``(total - reserved) * allocation_ratio``. The
cluster file's sizes are physical, its ratios Nova's, so a host's
``vcpus``/``ram_mb``/``disk_gb`` are ``total - reserved`` and its ratios
the inventories' ``allocation_ratio``: the simulator's capacity
(``physical * ratio``) is Placement's, and what is reserved for the host
itself is outside the cluster. A host without ``DISK_GB`` (its disk on a
sharing provider) has ``disk_gb`` 0 and a warning; ``PCPU`` (dedicated
CPUs) is not modelled: a host with only ``PCPU`` is skipped with a warning.

Hosts of one shape (sizes and ratios) form one host group, its ``hosts``
the providers' names in name order; groups are named after the shape
(``64vcpu-512gib``, ``-2``, ``-3`` where two shapes would share a name)
and ordered by their first host's name. Power is not in Placement: the
groups get the cluster file's default watts (edit them to your hardware).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation.cluster_file import MAX_HOST_NAME
from nova_rl_trainer.simulation.host_group import HostGroup
from nova_rl_trainer.telemetry import auth
from nova_rl_trainer.telemetry.placement_client import _Malformed
from nova_rl_trainer.telemetry.placement_client import add_arguments
from nova_rl_trainer.telemetry.placement_client import cloud_connection
from nova_rl_trainer.telemetry.placement_client import connect
from nova_rl_trainer.telemetry.placement_client import PlacementClient
from nova_rl_trainer.telemetry.placement_client import shared_connection
from nova_rl_trainer.telemetry.sources import SourceError

# The options, connections and client (placement_client's) are part of
# this module's interface too: the commands reach Placement through it.
__all__ = ['RESOURCES', 'ComputeHost', 'PlacementHosts', 'read_hosts',
           'cluster_of', 'read_cluster', 'PlacementClient', 'add_arguments',
           'connect', 'cloud_connection', 'shared_connection']

#: Inventories read: resource class -> (field of ComputeHost, unit).
RESOURCES = (('VCPU', 'vcpus'), ('MEMORY_MB', 'ram_mb'),
             ('DISK_GB', 'disk_gb'))


@dataclasses.dataclass(frozen=True)
class ComputeHost:
    """One compute node provider: physical sizes (``total - reserved``)
    and Nova's allocation ratios."""

    name: str
    uuid: str
    vcpus: float
    ram_mb: float
    disk_gb: float
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float

    @property
    def shape(self) -> tuple[float, ...]:
        return (self.vcpus, self.ram_mb, self.disk_gb,
                self.cpu_allocation_ratio, self.ram_allocation_ratio,
                self.disk_allocation_ratio)


@dataclasses.dataclass
class PlacementHosts:
    """What Placement said: the compute hosts, warnings, counts."""

    endpoint: str
    hosts: list[ComputeHost]
    warnings: list[str]
    summary: dict


def _number(inv: dict, rc: str, key: str, default: float | None = None
            ) -> float:
    value = inv.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise _Malformed(f'{rc} {key} is {str(value)[:20]!r}, not a number')
    return float(value)


def _host(rp: dict, inv: dict[str, dict]) -> tuple[ComputeHost | None, str]:
    """The compute host of a provider, or None and why not."""
    name, uuid = rp['name'], rp['uuid']
    if 'VCPU' not in inv or 'MEMORY_MB' not in inv:
        if 'PCPU' in inv and 'MEMORY_MB' in inv:
            return None, 'pcpu'
        return None, 'not_compute'
    if (not name or len(name) > MAX_HOST_NAME
            or any(ch.isspace() or not ch.isprintable() for ch in name)):
        return None, 'bad_name'
    values: dict[str, float] = {}
    ratios: dict[str, float] = {}
    for rc, field in RESOURCES:
        entry = inv.get(rc)
        if entry is None:
            values[field], ratios[field] = 0.0, 1.0
            continue
        if not isinstance(entry, dict):
            raise _Malformed(f'{rc} is not an object')
        total = _number(entry, rc, 'total')
        reserved = _number(entry, rc, 'reserved', 0)
        ratio = _number(entry, rc, 'allocation_ratio', 1.0)
        if not ratio > 0:
            raise _Malformed(f'{rc} allocation_ratio {ratio:g} is not '
                             'positive')
        values[field] = max(0.0, total - reserved)
        ratios[field] = ratio
    if not (values['vcpus'] > 0 and values['ram_mb'] > 0):
        return None, 'all_reserved'
    return ComputeHost(
        name=name, uuid=uuid, vcpus=values['vcpus'],
        ram_mb=values['ram_mb'], disk_gb=values['disk_gb'],
        cpu_allocation_ratio=ratios['vcpus'],
        ram_allocation_ratio=ratios['ram_mb'],
        disk_allocation_ratio=ratios['disk_gb']), ''


def read_hosts(client: PlacementClient) -> PlacementHosts:
    """Every compute host Placement knows, with warnings and counts."""
    providers = client.providers()
    hosts: list[ComputeHost] = []
    why: dict[str, list[str]] = {}
    no_disk: list[str] = []
    for rp in providers:
        inv = client.inventories(rp['uuid'])
        host, reason = client._call(
            f"GET /resource_providers/{rp['uuid']}/inventories",
            lambda rp=rp, inv=inv: _host(rp, inv))
        if host is None:
            why.setdefault(reason, []).append(rp['name'])
            continue
        if 'DISK_GB' not in inv:
            no_disk.append(host.name)
        hosts.append(host)
    hosts.sort(key=lambda h: h.name)
    warnings = []

    def names(items: list[str]) -> str:
        more = f' and {len(items) - 5} more' if len(items) > 5 else ''
        return ', '.join(repr(n) for n in items[:5]) + more
    if why.get('pcpu'):
        warnings.append(
            f"{len(why['pcpu'])} providers with PCPU but no VCPU inventory "
            'left out (dedicated CPUs are not modelled): '
            + names(why['pcpu']))
    if why.get('all_reserved'):
        warnings.append(
            f"{len(why['all_reserved'])} providers left out: all their "
            f"VCPU or MEMORY_MB is reserved: {names(why['all_reserved'])}")
    if why.get('bad_name'):
        warnings.append(
            f"{len(why['bad_name'])} providers left out: their names are "
            f"not host names (empty, spaces, over {MAX_HOST_NAME} "
            f"characters): {names(why['bad_name'])}")
    if no_disk:
        warnings.append(
            f'{len(no_disk)} compute hosts without a DISK_GB inventory '
            f'(disk on a sharing provider?): disk_gb 0: {names(no_disk)}')
    summary = {
        'endpoint': client.endpoint,
        'providers': len(providers),
        'compute_hosts': len(hosts),
        'skipped_not_compute': len(why.get('not_compute', [])),
        'skipped_pcpu_only': len(why.get('pcpu', [])),
        'skipped_all_reserved': len(why.get('all_reserved', [])),
        'skipped_bad_name': len(why.get('bad_name', [])),
        'without_disk': len(no_disk),
        'requests': client.requests,
    }
    return PlacementHosts(client.endpoint, hosts, warnings, summary)


def _group_name(shape: tuple[float, ...]) -> str:
    vcpus, ram_mb = shape[0], shape[1]
    ram = (f'{ram_mb / 1024:g}gib' if ram_mb % 1024 == 0
           else f'{ram_mb:g}mib')
    return f'{vcpus:g}vcpu-{ram}'


def cluster_of(hosts: Sequence[ComputeHost]) -> ClusterSpec:
    """Hosts of one shape as one host group (see the module doc)."""
    if not hosts:
        raise SourceError('Placement has no compute hosts (no resource '
                          'provider with VCPU and MEMORY_MB inventories)')
    by_shape: dict[tuple, list[ComputeHost]] = {}
    for h in sorted(hosts, key=lambda h: h.name):
        by_shape.setdefault(h.shape, []).append(h)
    groups = []
    used: set[str] = set()
    for shape, members in sorted(by_shape.items(),
                                 key=lambda kv: kv[1][0].name):
        base = _group_name(shape)
        name, k = base, 1
        while name in used:
            k += 1
            name = f'{base}-{k}'
        used.add(name)
        h = members[0]
        groups.append(HostGroup(
            name=name, count=len(members), vcpus=h.vcpus, ram_mb=h.ram_mb,
            disk_gb=h.disk_gb, cpu_allocation_ratio=h.cpu_allocation_ratio,
            ram_allocation_ratio=h.ram_allocation_ratio,
            disk_allocation_ratio=h.disk_allocation_ratio,
            hosts=tuple(m.name for m in members)))
    return ClusterSpec(groups=groups)


def read_cluster(connection: auth.Connection
                 ) -> tuple[ClusterSpec, PlacementHosts]:
    """The cluster file's content from Placement, and what was read."""
    client = PlacementClient(connection)
    try:
        found = read_hosts(client)
    finally:
        client.close()
    return cluster_of(found.hosts), found
