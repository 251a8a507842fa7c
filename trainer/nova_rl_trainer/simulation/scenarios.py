"""Named scenarios: a shipped trace and a cluster sized for it.

Every preset runs the bundled Azure V1 trace (``data/azure-v1/``) on
identical hosts of a common two-socket shape with Nova's default allocation
ratios (CPU 4.0, RAM 1.0). The number of hosts is chosen so the cluster is
85-95% allocated at the trace's peak, which is where placement matters:
larger, and any policy fits everything with room to spare; smaller, and
every policy rejects requests. :func:`size_cluster` does the arithmetic:
``hosts = ceil(max over resources of peak live demand / (target * host
capacity))`` with target 0.9 and seed 0, rounded up to a round number; the
README lists the resulting peak allocation of every baseline. Since the
peak demand does not depend on the policy, every policy that rejects nothing
peaks at the same allocation.

``azure-v1-dev`` is for training, ``azure-v1-test`` (a later, disjoint part
of the trace) for evaluation, ``azure-v1-small`` (2% of the tenants'
batches over the first two days of ``dev``, on smaller hosts) for tests
and quick experiments.
"""

from __future__ import annotations

import dataclasses
import math
import os

from nova_rl_trainer.simulation import azure_v1
from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import trace_files
from nova_rl_trainer.simulation import traces

GIB = 1024.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    trace_file: str                       # relative to the data directory
    cluster: ClusterSpec
    trace_format: str = 'azure-v1'
    window: tuple[float, float] | None = None
    sample: float = 1.0
    # The sampled subset is part of the scenario: fixed, whatever the seed.
    sample_seed: int | None = 0

    @property
    def trace_path(self) -> str:
        return os.path.join(azure_v1.data_dir(), self.trace_file)

    def load_trace(self, seed: int = 0) -> traces.Trace:
        trace = trace_files.load_trace(self.trace_path, self.trace_format,
                                       seed=seed, window=self.window,
                                       sample=self.sample,
                                       sample_seed=self.sample_seed)
        return dataclasses.replace(trace, name=self.name)

    def describe(self) -> dict:
        return {'name': self.name, 'description': self.description,
                'trace': self.trace_path, 'trace_format': self.trace_format,
                'window': list(self.window) if self.window else None,
                'sample': self.sample, 'cluster': self.cluster.as_dict()}


_LARGE_HOST = dict(host_vcpus=48, host_ram_mb=384 * GIB, host_disk_gb=2048)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name='azure-v1-dev',
        description='Azure V1 dev part (259,159 VMs over 3.5 days) on 330 '
                    'hosts of 48 vCPUs / 384 GiB: training',
        trace_file='v1.dev.txt.gz',
        cluster=ClusterSpec(hosts=330, **_LARGE_HOST)),
    Scenario(
        name='azure-v1-test',
        description='Azure V1 test part (410,276 VMs over 5.7 days) on 500 '
                    'hosts of 48 vCPUs / 384 GiB: held-out evaluation',
        trace_file='v1.test.txt.gz',
        cluster=ClusterSpec(hosts=500, **_LARGE_HOST)),
    Scenario(
        name='azure-v1-small',
        description='2% of the batches of the first 2 days of Azure V1 dev '
                    '(3,111 VMs) on 17 hosts of 32 vCPUs / 128 GiB: tests',
        trace_file='v1.dev.txt.gz',
        window=(0.0, 2 * 86400.0), sample=0.02,
        cluster=ClusterSpec(hosts=17, host_vcpus=32, host_ram_mb=128 * GIB,
                            host_disk_gb=1024)),
)}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f'unknown scenario {name!r}; presets: '
                         + ', '.join(SCENARIOS)) from None


def size_cluster(trace: traces.Trace, host: ClusterSpec,
                 target: float = 0.9) -> dict:
    """Hosts of shape ``host`` for ``trace`` to peak at ``target`` of the
    cluster's capacity, with the peak allocation that number gives."""
    if not 0 < target <= 1:
        raise ValueError('target must be in (0, 1]')
    peak = traces.peak_demand(trace)
    need = {
        'vcpus': peak['peak_vcpus'] / host.vcpu_capacity,
        'memory_mb': peak['peak_memory_mb'] / host.ram_capacity_mb,
        'disk': (peak['peak_disk_gb'] * 1024.0 / host.disk_capacity_mb
                 if host.disk_capacity_mb > 0 else 0.0),
    }
    binding = max(need, key=need.get)
    hosts = max(1, math.ceil(need[binding] / target - 1e-9))
    return {'hosts': hosts, 'binding_resource': binding,
            'peak_allocated_fraction': need[binding] / hosts,
            'peak_hosts_needed': need[binding], **peak}
