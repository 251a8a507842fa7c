"""A gymnasium environment over the simulator: one step per placement.

* **Observation**: ``{'features': (hosts, F) float32, 'mask': (hosts,)
  int8}``. Row ``h`` holds host ``h``'s feature vector (the shared
  ``nova_rl_weigher.features`` code, exactly what the weigher computes in
  Nova, with ``nova_weight`` the default weighers' score over this
  candidate set) when ``mask[h]`` is 1, i.e. when the host passed the
  filters; other rows are zero.
* **Action**: a host index with ``mask`` 1 (:meth:`PlacementEnv.action_masks`
  gives the mask, as MaskablePPO expects). Any other action raises
  ``ValueError``.
* **Reward**: minus the objective's cost accrued from this decision to the
  next (or to the end of the trace): active hosts, overload, energy... keep
  accruing for as long as the VMs placed live, so each placement pays for
  its whole life over the following steps. Rejections on the way are
  charged too. The undiscounted return of an episode is minus the
  objective accrued over it.
* **Episode**: from ``start_s`` (the cluster brought there by
  ``warmup_policy``, cached so repeated resets are cheap) to the end of the
  trace, or truncated after ``max_decisions`` decisions.

``reset(seed=s)`` builds the workload for seed ``s`` (trace jitter, tenants
and utilisation; cached); ``reset()`` replays the current one. For a
trainer that wants the candidate rows without padding, :attr:`decision`
holds ``(vm, candidate host indices, feature matrix, nova weights)`` of the
pending decision. Loops that let a policy drive the simulation rather than
step it (imitation, calibration, validation) take the warm-started
simulation itself from :meth:`PlacementEnv.warm_start` and
:meth:`~nova_rl_trainer.simulation.simulator.Simulation.play` it.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np

from nova_rl_weigher import features

from nova_rl_trainer.simulation.cluster import ClusterSpec
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import simulator
from nova_rl_trainer.simulation.traces import Trace

#: Warm-started simulations kept for reuse (each holds a cluster's state).
WARM_CACHE = 8


class Decision(NamedTuple):
    vm: int
    candidates: np.ndarray     # host indices
    x: np.ndarray              # (len(candidates), F) features
    nova_weight: np.ndarray    # Nova's default weight per candidate

    @property
    def nova_action(self) -> int:
        """The host Nova's default weighers would pick."""
        return int(self.candidates[int(np.argmax(self.nova_weight))])


class PlacementEnv(gym.Env):
    metadata = {'render_modes': []}

    def __init__(self, scenario: str | None = None, *,
                 trace: Trace | Callable[[int], Trace] | None = None,
                 cluster: ClusterSpec | None = None,
                 objective: str | objectives_mod.Objective = 'packing',
                 objective_options: dict[str, float] | None = None,
                 config: simulator.SimConfig | None = None,
                 seed: int = 0, start_s: float = 0.0,
                 max_decisions: int | None = None,
                 warmup_policy: str = 'nova-default',
                 reward_scale: float = 1.0) -> None:
        super().__init__()
        if scenario is not None:
            setup = Setup.from_scenario(scenario)
            self._trace_for: Callable[[int], Trace] = (
                lambda s: dataclasses.replace(setup, seed=s).load_trace())
            cluster = cluster or setup.cluster
        elif trace is not None:
            self._trace_for = trace if callable(trace) else (lambda s: trace)
        else:
            raise ValueError('give a scenario or a trace')
        if cluster is None:
            raise ValueError('give the cluster for a trace')
        self.cluster = cluster
        self.objective = (objective if isinstance(
            objective, objectives_mod.Objective) else
            objectives_mod.load_objective(objective, objective_options))
        self.config = config or simulator.SimConfig()
        self.start_s = float(start_s)
        self.max_decisions = max_decisions
        self.warmup_policy = warmup_policy
        self.reward_scale = float(reward_scale)
        self.workload_seed = int(seed)
        h, f = cluster.hosts, features.NUM_FEATURES
        self.observation_space = gym.spaces.Dict({
            'features': gym.spaces.Box(-np.inf, np.inf, (h, f), np.float32),
            'mask': gym.spaces.Box(0, 1, (h,), np.int8),
        })
        self.action_space = gym.spaces.Discrete(h)
        self._workloads: collections.OrderedDict[int, simulator.Workload] \
            = collections.OrderedDict()
        self._warm: dict[tuple[int, float], simulator.Simulation] = {}
        # Starts prepared by prime_starts stay cached; others are evicted
        # oldest first beyond WARM_CACHE.
        self._pinned: set[tuple[int, float]] = set()
        self.sim: simulator.Simulation | None = None
        self.decision: Decision | None = None
        self._cost = 0.0
        self._steps = 0

    # -- workloads and warm starts ------------------------------------------

    def workload(self, seed: int) -> simulator.Workload:
        wl = self._workloads.get(seed)
        if wl is None:
            wl = simulator.Workload(self._trace_for(seed), seed, self.config)
            self._workloads[seed] = wl
            while len(self._workloads) > 2:
                old, _ = self._workloads.popitem(last=False)
                for key in [k for k in self._warm if k[0] == old]:
                    del self._warm[key]
                    self._pinned.discard(key)
        return wl

    @property
    def horizon_s(self) -> float:
        return self.workload(self.workload_seed).horizon_s

    def warm_start(self, start_s: float, seed: int | None = None
                   ) -> simulator.Simulation:
        """A fresh copy of the simulation warm-started at ``start_s``: the
        requests arriving before it placed by ``warmup_policy``, the first
        arriving at or after it pending (``sim.current_vm``; -1 if the
        trace is over). Workload ``seed`` (default: the current one)."""
        seed = self.workload_seed if seed is None else int(seed)
        key = (seed, float(start_s))
        warm = self._warm.get(key)
        if warm is None:
            warm = self._new_sim(seed)
            warm.play(policies_mod.make_policy(self.warmup_policy),
                      until_s=key[1])
            self._warm[key] = warm
            loose = [k for k in self._warm if k not in self._pinned]
            for old in loose[:max(0, len(loose) - WARM_CACHE)]:
                del self._warm[old]
        return warm.clone()

    def _new_sim(self, seed: int) -> simulator.Simulation:
        sim = simulator.Simulation(self.workload(seed), self.cluster,
                                   self.objective)
        sim.enable_usage()
        return sim

    def prime_starts(self, start_times, seed: int | None = None) -> None:
        """Warm-start states for many instants in one pass over the trace.

        Equivalent to resetting at each instant once (same warm-up policy,
        same states), but replays the trace once instead of once per
        instant.
        """
        seed = self.workload_seed if seed is None else int(seed)
        keys = {(seed, float(t)) for t in start_times}
        self._pinned |= keys
        todo = sorted(t for _, t in keys if (seed, t) not in self._warm)
        if not todo:
            return
        sim = self._new_sim(seed)
        policy = policies_mod.make_policy(self.warmup_policy)
        for start_s in todo:
            # Each instant goes on from the previous one (whose pending
            # request is placed first).
            sim.play(policy, until_s=start_s)
            self._warm[(seed, start_s)] = sim.clone()

    def share_starts(self, other: 'PlacementEnv') -> None:
        """Reuse ``other``'s workloads and warm starts (same trace, cluster,
        objective and warm-up policy): two environments, one replay."""
        self._workloads = other._workloads
        self._warm = other._warm
        self._pinned = other._pinned

    # -- gymnasium API ------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.workload_seed = int(seed)
        options = options or {}
        start_s = float(options.get('start_s', self.start_s))
        self.max_decisions = options.get('max_decisions', self.max_decisions)
        self.sim = self.warm_start(start_s)
        self._steps = 0
        self._cost = self.sim.cost()
        return self._observe(), self._info()

    def step(self, action):
        sim = self.sim
        if sim is None or self.decision is None:
            raise RuntimeError('call reset() first; the episode is over')
        host = int(action)
        if not (0 <= host < self.cluster.hosts) or not sim.fit[host]:
            raise ValueError(f'action {host} is not a candidate host (see '
                             'the mask)')
        sim.place(self.decision.vm, host)
        self._steps += 1
        sim.next_decision()
        cost = sim.cost()
        reward = -(cost - self._cost) * self.reward_scale
        self._cost = cost
        terminated = sim.current_vm < 0
        truncated = (not terminated and self.max_decisions is not None
                     and self._steps >= self.max_decisions)
        obs = self._observe()
        if truncated:
            self.decision = None
        return obs, float(reward), terminated, truncated, self._info()

    def action_masks(self) -> np.ndarray:
        """Valid actions of the pending decision (bool, one per host)."""
        if self.sim is None or self.sim.current_vm < 0:
            return np.zeros(self.cluster.hosts, dtype=bool)
        return self.sim.fit.copy()

    def _observe(self) -> dict[str, np.ndarray]:
        h, f = self.cluster.hosts, features.NUM_FEATURES
        feats = np.zeros((h, f), dtype=np.float32)
        mask = np.zeros(h, dtype=np.int8)
        sim = self.sim
        vm = sim.current_vm
        if vm < 0:
            self.decision = None
            return {'features': feats, 'mask': mask}
        cand, x, nova_w = sim.candidate_features(vm, sim.fit)
        self.decision = Decision(vm, cand, x, nova_w)
        feats[cand] = x
        mask[cand] = 1
        return {'features': feats, 'mask': mask}

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        info = {'time_s': sim.now, 'cost': self._cost,
                'decisions': sim.decisions, 'rejected': sim.rejected}
        if self.decision is not None:
            info['vm'] = self.decision.vm
            info['nova_action'] = self.decision.nova_action
            info['n_candidates'] = int(self.decision.candidates.shape[0])
        return info

    def metrics(self) -> dict:
        """The simulator's metrics for the episode so far."""
        return self.sim.result().metrics


def factory(trace, setup, objective) -> Callable[[], PlacementEnv]:
    """A factory of environments for one trace on ``setup``'s cluster, as
    the trainer takes them (one per member, several envs each)."""
    def make_env() -> PlacementEnv:
        return PlacementEnv(trace=trace, cluster=setup.cluster,
                            objective=objective, config=setup.config,
                            seed=setup.seed)
    return make_env
