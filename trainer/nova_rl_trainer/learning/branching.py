"""What one placement costs: branch the simulation and compare futures.

The simulation is deterministic for a given workload, so two clones that
differ in one placement and are then scheduled by the same heuristic differ
only through that placement (common random numbers). Both vine advantages
(:mod:`ppo`) and the confidence calibration (:mod:`calibration`) measure
choices this way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nova_rl_trainer.simulation import policies as policies_mod


def continue_with(sim, policy_name: str, horizon: int) -> float:
    """Schedule ``horizon`` more decisions of ``sim`` with a baseline and
    return the simulation's accrued objective cost (up to the last of them:
    the simulation is not advanced past it)."""
    sim.play(policies_mod.make_policy(policy_name), max_decisions=horizon)
    return sim.cost()


def branch_costs(sim, vm: int, hosts: Sequence[int], continuation: str,
                 horizon: int) -> np.ndarray:
    """Cost after placing ``vm`` on each of ``hosts`` in a clone of ``sim``
    and continuing ``horizon`` decisions with ``continuation``."""
    out = np.empty(len(hosts))
    for j, host in enumerate(hosts):
        branch = sim.clone()
        branch.place(vm, int(host))
        out[j] = continue_with(branch, continuation, horizon)
    return out
