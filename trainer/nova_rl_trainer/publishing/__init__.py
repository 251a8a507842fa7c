"""From a trained artifact to the path the weigher serves.

:mod:`judge` evaluates a candidate against the served policy and Nova's
default and decides; :mod:`verdict` holds what it decided
(:class:`~verdict.PublishResult`, with its :class:`~verdict.Failure` list
and evaluation :class:`~verdict.Case` records), the exit codes and the table
of terms. :mod:`versions` installs, keeps history and rolls back atomically,
built on :mod:`layout` (the target's paths, its state, the errors),
:mod:`history` (``history.json`` and the lock), :mod:`artifacts` (reading,
verifying and copying artifact files), :mod:`store` (the version
directories: naming, storing, adopting, pruning) and :mod:`switch` (the
atomic switch, the checks before it, its undo). :mod:`report` writes
evaluation reports.
"""
