"""Small traces and clusters for the trainer's tests."""

from __future__ import annotations

import math

import numpy as np

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import objectives
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation.traces import Trace

HEADER = ('vm_id,project_id,arrival_s,departure_s,vcpus,memory_mb,disk_gb,'
          'cpu_util_mean,cpu_util_p95\n')


def make_trace(rows, name='t', time_offset_s=0.0) -> Trace:
    """rows: (arrival, departure or None, vcpus, memory_mb[, disk_gb[,
    util[, project]]]) in arrival order; util None = modelled."""
    n = len(rows)
    cols = {k: np.zeros(n) for k in ('arrival_s', 'departure_s', 'vcpus',
                                     'memory_mb', 'disk_gb',
                                     'cpu_util_mean', 'cpu_util_p95')}
    projects: dict[str, int] = {}
    project = np.zeros(n, dtype=np.int32)
    for i, row in enumerate(rows):
        arrival, departure, vcpus, mem = row[:4]
        disk = row[4] if len(row) > 4 else 0.0
        util = row[5] if len(row) > 5 else 0.5
        proj = row[6] if len(row) > 6 else 'p'
        cols['arrival_s'][i] = arrival
        cols['departure_s'][i] = math.nan if departure is None else departure
        cols['vcpus'][i] = vcpus
        cols['memory_mb'][i] = mem
        cols['disk_gb'][i] = disk
        cols['cpu_util_mean'][i] = math.nan if util is None else util
        cols['cpu_util_p95'][i] = math.nan if util is None else util
        project[i] = projects.setdefault(proj, len(projects))
    return Trace(name=name, project_ids=tuple(projects), project=project,
                 batch=np.arange(n), time_offset_s=time_offset_s, **cols)


def run(trace, cluster, policy, objective='packing', seed=0, **config):
    from nova_rl_trainer.simulation import policies
    wl = simulator.Workload(trace, seed, simulator.SimConfig(**config))
    sim = simulator.Simulation(wl, cluster,
                               objectives.load_objective(objective))
    p = policies.make_policy(policy) if isinstance(policy, str) else policy
    return sim.run(p), sim


def small_cluster(hosts=2, **kw) -> ClusterSpec:
    base = dict(hosts=hosts, host_vcpus=4, host_ram_mb=4096,
                host_disk_gb=100, cpu_allocation_ratio=2.0,
                ram_allocation_ratio=1.0, idle_watts=100.0,
                peak_watts=200.0)
    base.update(kw)
    return ClusterSpec(**base)


def record_train_configs(monkeypatch) -> list:
    """Replace the trainer with one that records its ``TrainConfig`` and
    trains nothing: what ``nova-rl-trainer train`` made of its options.
    Returns the list the configs are appended to."""
    from nova_rl_trainer.learning import train
    seen = []

    class Trainer:
        def __init__(self, make_env, out, config, provenance, progress):
            seen.append(config)

        def run(self, resume=False):
            return {}
    monkeypatch.setattr(train, 'Trainer', Trainer)
    return seen
