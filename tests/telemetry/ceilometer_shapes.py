"""Samples shaped as Ceilometer 27 makes them, for VMs the tests describe.

For each VM:

* at launch, what ``compute.instance.create.end`` gives through
  Ceilometer's notification meters (``meters.yaml``): gauges ``vcpus``,
  ``memory`` (MiB), ``disk.root.size``, ``disk.ephemeral.size`` (GiB) with
  the metadata ``host`` (the compute host), ``instance_flavor_id``,
  ``instance_type`` (flavor name), ``display_name``, ``launched_at``,
  ``created_at``;
* every polling interval, what the compute agent's ``cpu`` pollster gives:
  the cumulative CPU time in ns since the guest booted, with the polling
  metadata (``instance_host`` the compute host, ``host`` a hash of it as
  Nova's ``hostId``, ``flavor``, ``instance_type``, ...); optionally
  ``memory.usage`` (MiB);
* at deletion, ``compute.instance.delete.end``'s gauges again with
  ``deleted_at``, and the ``compute.instance.delete.start`` event that
  makes the publisher set Gnocchi's ``ended_at``.

The CPU counter integrates a piecewise-constant use (one share of the VM's
vCPUs per ``interval_s`` tick of absolute time), polled a few seconds
after each tick; a reset (reboot, migration) restarts it from 0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from typing import Sequence
import uuid

import numpy as np

UTC = dt.timezone.utc


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, UTC).isoformat()


def vm_uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'nova-rl-test:' + name))


@dataclasses.dataclass
class Vm:
    """A VM and what it used: ``shares[k]`` is its CPU share during tick
    ``k`` of absolute time ``[t0 + k * interval_s, t0 + (k + 1) *
    interval_s)``."""

    id: str
    project_id: str
    host: str
    vcpus: int
    memory_mb: int
    launched_at: float
    deleted_at: float | None
    t0: float
    shares: np.ndarray
    interval_s: float = 300.0
    root_gb: int = 20
    ephemeral_gb: int = 0
    flavor_id: str | None = None
    flavor_name: str | None = None
    user_id: str = 'u-test'
    #: Poll indices (into :meth:`polls`) at which the counter restarts.
    resets: Sequence[int] = ()
    #: Leave these metrics out (a "missing metric" fault).
    without: Sequence[str] = ()
    #: Poll indices whose sample is lost (an agent down): the next rate
    #: covers the gap.
    missing: Sequence[int] = ()
    #: Fraction of memory in use, for ``memory.usage`` (None: not sent).
    memory_used: float | None = None
    jitter_s: float = 2.0

    def __post_init__(self) -> None:
        self.flavor_id = self.flavor_id or (
            f'flavor-{self.vcpus}-{self.memory_mb}-{self.root_gb}')
        self.flavor_name = self.flavor_name or (
            f'm1.c{self.vcpus}r{self.memory_mb}')

    @property
    def end(self) -> float:
        return (self.deleted_at if self.deleted_at is not None
                else self.t0 + len(self.shares) * self.interval_s)

    def polls(self) -> np.ndarray:
        """Poll times: a jittered instant after each tick the VM was up."""
        dt_ = self.interval_s
        first = math.floor((self.launched_at - self.t0) / dt_) + 1
        last = math.floor((self.end - self.t0) / dt_)
        ticks = np.arange(first, last + 1)
        jitter = np.array([_jitter(self.id, k, self.jitter_s)
                           for k in ticks])
        times = self.t0 + ticks * dt_ + jitter
        times = times[(times > self.launched_at) & (times < self.end)]
        if self.missing:
            keep = np.ones(times.shape, dtype=bool)
            keep[[m for m in self.missing if 0 <= m < len(times)]] = False
            times = times[keep]
        return times

    def used_ns(self, t: np.ndarray) -> np.ndarray:
        """CPU time used since launch, ns, at times ``t``."""
        dt_ = self.interval_s
        per_tick = np.asarray(self.shares, dtype=np.float64) * dt_
        cum = np.concatenate([[0.0], np.cumsum(per_tick)])   # at ticks

        def at(x: np.ndarray) -> np.ndarray:
            k = np.clip(np.floor((x - self.t0) / dt_).astype(np.int64), 0,
                        len(self.shares) - 1)
            return cum[k] + self.shares[k] * (x - (self.t0 + k * dt_))
        t = np.asarray(t, dtype=np.float64)
        return (at(t) - at(np.array([self.launched_at]))) * self.vcpus * 1e9

    def counter(self) -> tuple[np.ndarray, np.ndarray]:
        """(poll times, cumulative ns) with the resets applied."""
        times = self.polls()
        used = self.used_ns(times)
        values = used.copy()
        for r in sorted(self.resets):
            if 0 < r < len(times):
                # Restarted just after the previous poll.
                values[r:] = used[r:] - used[r - 1]
        return times, values

    def expected_shares(self, start: float | None = None,
                        stop: float | None = None) -> np.ndarray:
        """The shares Gnocchi's rates measure: one per pair of polls,
        labelled with the later poll's interval, those inside ``[start,
        stop)`` (seconds), the intervals ending at a reset left out."""
        times = self.polls()
        used = self.used_ns(times)
        d = np.diff(used) / (np.diff(times) * 1e9 * self.vcpus)
        keep = np.ones(d.shape, dtype=bool)
        for r in self.resets:
            if 0 < r < len(times):
                keep[r - 1] = False
        bucket = np.floor(times[1:] / self.interval_s) * self.interval_s
        if start is not None:
            keep &= bucket >= start
        if stop is not None:
            keep &= bucket < stop
        return d[keep]

    def samples(self) -> list[dict]:
        meta_notif = {
            'host': self.host,
            'instance_flavor_id': self.flavor_id,
            'instance_type': self.flavor_name,
            'display_name': f'vm-{self.id[:8]}',
            'launched_at': iso(self.launched_at),
            'created_at': iso(self.launched_at - 20.0),
            'deleted_at': None,
            'image_ref': None,
        }
        meta_poll = {
            'display_name': f'vm-{self.id[:8]}',
            'instance_id': self.id,
            'instance_type': self.flavor_name,
            'host': hashlib.sha224(
                (self.project_id + self.host).encode()).hexdigest(),
            'instance_host': self.host,
            'flavor': {'id': self.flavor_id, 'name': self.flavor_name,
                       'vcpus': self.vcpus, 'ram': self.memory_mb,
                       'disk': self.root_gb + self.ephemeral_gb,
                       'ephemeral': self.ephemeral_gb},
            'status': 'active', 'state': 'active',
        }
        out = []

        def add(name, type_, unit, volume, t, meta):
            if name in self.without:
                return
            out.append({'name': name, 'type': type_, 'unit': unit,
                        'volume': volume, 'user_id': self.user_id,
                        'project_id': self.project_id,
                        'resource_id': self.id, 'timestamp': iso(t),
                        'resource_metadata': meta})

        def sizes(t, meta):
            add('vcpus', 'gauge', 'vcpu', self.vcpus, t, meta)
            add('memory', 'gauge', 'MiB', self.memory_mb, t, meta)
            add('disk.root.size', 'gauge', 'GiB', self.root_gb, t, meta)
            add('disk.ephemeral.size', 'gauge', 'GiB', self.ephemeral_gb, t,
                meta)
        sizes(self.launched_at, meta_notif)
        times, values = self.counter()
        for t, v in zip(times.tolist(), values.tolist()):
            add('cpu', 'cumulative', 'ns', v, t, meta_poll)
            if self.memory_used is not None:
                add('memory.usage', 'gauge', 'MiB',
                    self.memory_used * self.memory_mb, t, meta_poll)
        if self.deleted_at is not None:
            sizes(self.deleted_at, dict(meta_notif,
                                        deleted_at=iso(self.deleted_at)))
        return out

    def events(self) -> list[dict]:
        if self.deleted_at is None:
            return []
        return [{'event_type': 'compute.instance.delete.start',
                 'traits': {'instance_id': self.id, 'host': self.host,
                            'project_id': self.project_id}}]


def _jitter(vm_id: str, k: int, max_s: float) -> float:
    h = hashlib.blake2b(f'{vm_id}:{k}'.encode(), digest_size=8).digest()
    return 0.5 + (int.from_bytes(h, 'little') / 2 ** 64) * max(0.0, max_s)


def samples_of(vms: Sequence[Vm]) -> tuple[list[dict], list[dict]]:
    samples, events = [], []
    for vm in vms:
        samples.extend(vm.samples())
        events.extend(vm.events())
    return samples, events
