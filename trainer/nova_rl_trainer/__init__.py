"""nova-rl-trainer: the training side of nova-rl-weigher.

A trace-driven simulator of a Nova cluster (:mod:`simulator`), Nova-faithful
baseline policies (:mod:`baselines`), operator-chosen objectives
(:mod:`objectives`), a gymnasium environment (:mod:`env`) and the
``nova-rl-trainer`` command line (:mod:`cli`). It uses the feature code and
policy artifact format of ``nova_rl_weigher`` and never imports nova.
"""
