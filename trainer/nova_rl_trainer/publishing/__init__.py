"""From a trained artifact to the path the weigher serves.

:mod:`judge` evaluates a candidate against the served policy and Nova's
default and decides; :mod:`versions` installs, keeps history and rolls back
atomically; :mod:`report` writes evaluation reports.
"""
