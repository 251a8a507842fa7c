"""The trace-driven simulator of a Nova cluster.

Data flow: a trace (:mod:`traces`, :mod:`azure_v1`, loaded by
:mod:`trace_files`) and a cluster (:mod:`cluster`) make a workload with its
utilisation model (:mod:`utilisation`); a :class:`simulator.Simulation`
plays it, asking a policy (:mod:`policies`: the heuristics of
:mod:`baselines`, Nova's own weighers in :mod:`nova_weighers`, or a weigher
artifact) where each request goes, and accrues the terms that
:mod:`objectives` weigh and :mod:`metrics` reports. :mod:`setup` says what
makes runs comparable; :mod:`evaluation` runs several policies on one setup.
"""
