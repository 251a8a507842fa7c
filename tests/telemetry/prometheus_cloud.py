"""A simulated cloud as Prometheus sees it through Ceilometer's exporter.

Each compute host runs a polling cycle every ``poll_s`` (its own phase,
a second of jitter): the VMs alive at a cycle get a sample of every meter
(``cpu`` the cumulative ns of :meth:`Vm.used_ns`, restarted at its
``resets``, the sizes, ``memory.usage``), minus the ones a VM is
``without``. Prometheus scrapes each host every ``scrape_s`` (``lag_s``
after its cycles' phase); :mod:`tests.telemetry.prometheus_export` runs
Ceilometer's own exporter over these cycles and scrapes.

:class:`Truth` holds what ``ingest`` should find: each VM's cycles, the
first scrape that showed each of them, and the CPU shares between
consecutive cycles.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Sequence

import numpy as np

from tests.telemetry.ceilometer_shapes import Vm

METERS = (('cpu', 'cumulative', 'ns'), ('vcpus', 'gauge', 'vcpu'),
          ('memory', 'gauge', 'MiB'), ('disk.root.size', 'gauge', 'GiB'),
          ('disk.ephemeral.size', 'gauge', 'GiB'),
          ('memory.usage', 'gauge', 'MiB'))
POLLSTERS = [m for m, _, _ in METERS]
EXPORTER_PORT = 9101


def _unit(key: str) -> float:
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(h, 'little') / 2 ** 64


def poll_metadata(vm: Vm, index: int) -> dict:
    """The resource metadata of the compute agent's samples (Ceilometer's
    ``compute/pollsters/util.py``): ``host`` is Nova's hashed hostId,
    ``instance_host`` the host's name."""
    return {
        'display_name': f'vm-{vm.id[:8]}',
        'name': f'instance-{index:08x}',
        'instance_id': vm.id,
        'instance_type': vm.flavor_name,
        'host': hashlib.sha224((vm.project_id + vm.host).encode())
        .hexdigest(),
        'instance_host': vm.host,
        'flavor': {'id': vm.flavor_id, 'name': vm.flavor_name,
                   'vcpus': vm.vcpus, 'ram': vm.memory_mb,
                   'disk': vm.root_gb + vm.ephemeral_gb,
                   'ephemeral': vm.ephemeral_gb},
        'status': 'active', 'state': 'active',
        'user_metadata': {},
    }


@dataclasses.dataclass
class Truth:
    vm: Vm
    #: Cycle times at which the VM was polled.
    cycles: np.ndarray
    #: The first scrape at or after each cycle (when Prometheus saw it).
    seen: np.ndarray
    #: Cumulative CPU ns since launch at each cycle (no resets).
    used: np.ndarray
    #: Every scrape that showed the VM (its first and last sample).
    first_sample: float
    last_sample: float

    def shares(self, start: float, stop: float) -> np.ndarray:
        """The VM's CPU shares between consecutive cycles, for the pairs
        Prometheus saw in ``(start, stop]``."""
        if 'cpu' in self.vm.without or self.cycles.size < 2:
            return np.empty(0)
        d = np.diff(self.used) / (np.diff(self.cycles) * 1e9
                                  * self.vm.vcpus)
        seen = self.seen[1:]
        return d[(seen > start) & (seen <= stop)]


@dataclasses.dataclass
class Cloud:
    vms: list[Vm]
    truth: dict[str, Truth]
    spec: dict
    poll_s: float
    scrape_s: float
    lag_s: float


def build(vms: Sequence[Vm], begin: float, end: float, poll_s: float = 300.0,
          scrape_s: float = 300.0, lag_s: float = 3.0,
          job: str = 'ceilometer') -> Cloud:
    """Cycles and scrapes of ``vms``' hosts over ``[begin, end)``."""
    hosts = sorted({vm.host for vm in vms})
    spec_vms, targets = {}, []
    truth: dict[str, Truth] = {}
    for n, vm in enumerate(vms):
        spec_vms[vm.id] = {'project_id': vm.project_id,
                           'user_id': vm.user_id,
                           'metadata': poll_metadata(vm, n + 1)}
    for h, host in enumerate(hosts):
        phase = (17.0 + 41.0 * h) % poll_s
        k0 = 0
        cycles = []
        while True:
            c = begin + phase + k0 * poll_s + _unit(f'{host}:{k0}')
            if c >= end:
                break
            cycles.append(c)
            k0 += 1
        cycles = np.array(cycles)
        scrapes = np.arange(begin + phase + lag_s, end, scrape_s)
        samples: list[list] = [[] for _ in cycles]
        for vm in (v for v in vms if v.host == host):
            dep = vm.deleted_at if vm.deleted_at is not None else math.inf
            alive = np.flatnonzero((cycles > vm.launched_at)
                                   & (cycles < dep))
            times = cycles[alive]
            used = vm.used_ns(times) if times.size else np.empty(0)
            counter = used.copy()
            for r in sorted(vm.resets):
                if 0 < r < len(times):
                    counter[r:] = used[r:] - used[r - 1]
            for j, k in enumerate(alive):
                for meter, type_, unit in METERS:
                    if meter in vm.without:
                        continue
                    if meter == 'cpu':
                        value = float(counter[j])
                    elif meter == 'vcpus':
                        value = vm.vcpus
                    elif meter == 'memory':
                        value = vm.memory_mb
                    elif meter == 'disk.root.size':
                        value = vm.root_gb
                    elif meter == 'disk.ephemeral.size':
                        value = vm.ephemeral_gb
                    else:
                        if vm.memory_used is None:
                            continue
                        value = vm.memory_used * vm.memory_mb
                    samples[k].append([vm.id, meter, type_, unit, value])
            if times.size == 0:
                continue
            seen_idx = np.searchsorted(scrapes, times, side='left')
            seen = np.where(seen_idx < len(scrapes),
                            scrapes[np.minimum(seen_idx, len(scrapes) - 1)],
                            math.inf)
            # Shown from the first scrape after its first cycle until the
            # cycle after its last one purges it.
            nxt = np.searchsorted(cycles, times[-1], side='right')
            purge = cycles[nxt] if nxt < len(cycles) else math.inf
            shown = scrapes[(scrapes >= times[0]) & (scrapes < purge)]
            if shown.size == 0:
                continue
            truth[vm.id] = Truth(vm, times, seen, used,
                                 float(shown[0]), float(shown[-1]))
        targets.append({
            'labels': {'job': job,
                       'instance': f'{host}:{EXPORTER_PORT}',
                       'host': host},
            'pollsters': POLLSTERS,
            'cycles': [[float(c), s] for c, s in zip(cycles.tolist(),
                                                     samples)],
            'scrapes': scrapes.tolist(),
        })
    return Cloud(list(vms), truth, {'vms': spec_vms, 'targets': targets},
                 poll_s, scrape_s, lag_s)


def merge(*clouds: Cloud) -> dict:
    """One exporter input for several clouds (distinct VM ids and
    times)."""
    spec = {'vms': {}, 'targets': []}
    for c in clouds:
        spec['vms'].update(c.spec['vms'])
        spec['targets'].extend(c.spec['targets'])
    return spec


def smooth_shares(key: str, ticks: int, level: float) -> np.ndarray:
    """A deterministic, varying CPU share per tick around ``level``."""
    rng = np.random.default_rng(int(_unit(key) * 2 ** 32))
    k = np.arange(ticks)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * k / (ticks / 3 + 7)
                              + rng.uniform(0, 6.3))
    noise = rng.uniform(-0.1, 0.1, ticks)
    return np.clip(level * (0.4 + 1.2 * wave) + noise * level, 0.0, 1.0)
