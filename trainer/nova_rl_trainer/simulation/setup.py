"""What makes simulation runs comparable: trace, cluster, measurement,
objective and seed.

A :class:`Setup` is built in one of two ways: from a named scenario
(:meth:`Setup.from_scenario`, whose cluster a cluster file may replace) or
from a trace file and a cluster (the command line's ``--trace`` and
``--cluster FILE`` or identical-host options, see
:mod:`nova_rl_trainer.cli.options`). The cluster is a
:class:`~nova_rl_trainer.simulation.cluster.ClusterSpec`: identical hosts or
host groups. Every run on one setup plays the same workload.
"""

from __future__ import annotations

import dataclasses

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import scenarios as scenarios_mod
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation import trace_files
from nova_rl_trainer.simulation import traces


@dataclasses.dataclass(frozen=True)
class Setup:
    trace_path: str
    cluster: ClusterSpec
    trace_format: str | None = None
    window: tuple[float, float] | None = None
    sample: float = 1.0
    sample_seed: int | None = None
    config: simulator.SimConfig = simulator.SimConfig()
    objective: str = 'packing'
    objective_options: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    name: str | None = None     # the scenario's name, if any

    def load_trace(self) -> traces.Trace:
        trace = trace_files.load_trace(self.trace_path, self.trace_format,
                                       seed=self.seed, window=self.window,
                                       sample=self.sample,
                                       sample_seed=self.sample_seed)
        if self.name:
            trace = dataclasses.replace(trace, name=self.name)
        return trace

    def workload(self) -> simulator.Workload:
        return simulator.Workload(self.load_trace(), self.seed, self.config)

    def make_objective(self) -> objectives_mod.Objective:
        return objectives_mod.load_objective(self.objective,
                                             dict(self.objective_options))

    @classmethod
    def from_scenario(cls, name: str, *, seed: int = 0,
                      cluster: ClusterSpec | None = None,
                      cluster_changes: dict | None = None,
                      **changes) -> 'Setup':
        """The setup of a named scenario (:mod:`scenarios`).

        ``cluster`` replaces the scenario's cluster (``--cluster FILE``);
        ``cluster_changes`` override fields of the (scenario's) cluster;
        ``changes`` override the setup's other fields (a ``window`` or
        ``sample`` of None keeps the scenario's). Raises ValueError for an
        unknown name.
        """
        sc = scenarios_mod.get_scenario(name)
        cluster = cluster if cluster is not None else sc.cluster
        if cluster_changes:
            cluster = cluster.replace(**cluster_changes)
        for key in ('window', 'sample', 'trace_format'):
            if changes.get(key, 0) is None:
                del changes[key]
        fields = dict(trace_path=sc.trace_path, trace_format=sc.trace_format,
                      cluster=cluster, window=sc.window, sample=sc.sample,
                      sample_seed=sc.sample_seed, seed=seed, name=sc.name)
        fields.update(changes)
        return cls(**fields)
