"""Learning a policy in the simulator.

Data flow: :mod:`env` (a gymnasium environment over the simulation) ->
:mod:`imitation` (warm start from a heuristic) -> :mod:`ppo` (reinforcement
learning, with :mod:`branching` for vine advantages) -> :mod:`calibration`
(the gate's confidence threshold) -> :mod:`policy_net` (the torch network
and its export to the weigher's artifact). :mod:`train` runs the stages, over
the clusters of :mod:`members` and, for a constrained objective, with the
bookkeeping of :mod:`constraints`; :mod:`checkpoint` saves and resumes them
without pickle; :mod:`report` draws the curves and says what a run
achieved.
"""
