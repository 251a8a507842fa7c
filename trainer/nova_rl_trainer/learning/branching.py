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


def continue_with(sim, policy_name: str, horizon: int | None = None, *,
                  seconds: float | None = None) -> float:
    """Schedule ``horizon`` more decisions of ``sim`` with a baseline (or,
    with ``seconds``, every request arriving in that much simulated time
    from now) and return the simulation's accrued objective cost (up to the
    last of them: the simulation is not advanced past it). Two branches of
    one state continued for the same ``seconds`` stop at the same instant,
    so their costs cover the same span."""
    policy = policies_mod.make_policy(policy_name)
    if seconds is not None:
        sim.play(policy, until_s=sim.now + seconds)
    else:
        sim.play(policy, max_decisions=horizon)
    return sim.cost()


def branch_costs(sim, vm: int, hosts: Sequence[int], continuation: str,
                 horizon: int | None = None, *, seconds: float | None = None
                 ) -> np.ndarray:
    """Cost after placing ``vm`` on each of ``hosts`` in a clone of ``sim``
    and continuing ``horizon`` decisions (or ``seconds`` of simulated time)
    with ``continuation``."""
    out = np.empty(len(hosts))
    for j, host in enumerate(hosts):
        branch = sim.clone()
        branch.place(vm, int(host))
        out[j] = continue_with(branch, continuation, horizon,
                               seconds=seconds)
    return out
