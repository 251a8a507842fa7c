"""Measured VM lifetimes for the usage snapshot's format version 2.

:func:`~nova_rl_trainer.telemetry.snapshot.build_v2` adds them to what
:func:`~nova_rl_trainer.telemetry.snapshot.build` measured (the weigher's
feature schema v2 reads them):

* per project: ``lifetime`` (median, p90, count:
  ``lifetimes.lifetime_stats``) of its instances that ended (Nova's
  ``launched_at`` to ``deleted_at``) in the last ``lifetime_window_s``,
  ``flavors`` the same per flavor name, and ``recent_lifetime``: its boots
  of the last ``lifetimes.SIBLING_WINDOW_S`` (``lifetimes.sibling_lifetime``,
  written once more than half have ended);
* ``flavors``: the same lifetimes per flavor name over every project.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

from nova_rl_trainer.telemetry.sources import Instance
from nova_rl_weigher import lifetimes as lifetimes_mod

#: Default of :func:`~nova_rl_trainer.telemetry.snapshot.build_v2`: the
#: span of the measured lifetimes.
LIFETIME_WINDOW_S = 7 * 86400.0


def _life_doc(life: lifetimes_mod.Lifetime) -> dict:
    return {'median_s': round(life.median_s, 3),
            'p90_s': round(life.p90_s, 3), 'count': life.count}


def _life(values: list[float]) -> dict:
    return _life_doc(lifetimes_mod.lifetime_stats(sorted(values)))


def measure(instances: Sequence[Instance], stop: dt.datetime,
            projects: dict[str, dict]) -> dict[str, dict]:
    """Lifetimes of the instances that ended, per project (into
    ``projects``), per project and flavor, and per flavor (returned);
    the projects' recent boots (siblings)."""
    by_project: dict[str, list[float]] = {}
    by_pair: dict[tuple[str, str], list[float]] = {}
    by_flavor: dict[str, list[float]] = {}
    recent: dict[str, tuple[list[float], list[float]]] = {}
    since = stop - dt.timedelta(seconds=lifetimes_mod.SIBLING_WINDOW_S)
    for inst in instances:
        begin, end = inst.arrival, inst.departure
        # Deleted before it launched (clocks of different services): no
        # lifetime to learn from, and a negative one would make the
        # weigher refuse the whole snapshot.
        if begin is None or (end is not None and end < begin):
            continue
        pid, flavor = inst.project_id, inst.flavor_name
        if pid and since <= begin < stop:
            ended, ages = recent.setdefault(pid, ([], []))
            if end is not None and end <= stop:
                ended.append((end - begin).total_seconds())
            else:
                ages.append((stop - begin).total_seconds())
        if end is None or end > stop:
            continue
        life = (end - begin).total_seconds()
        if pid:
            by_project.setdefault(pid, []).append(life)
            if flavor:
                by_pair.setdefault((pid, flavor), []).append(life)
        if flavor:
            by_flavor.setdefault(flavor, []).append(life)
    for pid, values in by_project.items():
        projects.setdefault(pid, {})['lifetime'] = _life(values)
    for (pid, flavor), values in by_pair.items():
        projects[pid].setdefault('flavors', {})[flavor] = {
            'lifetime': _life(values)}
    for pid, (ended, ages) in recent.items():
        life = lifetimes_mod.sibling_lifetime(ended, ages)
        if life is not None:
            projects.setdefault(pid, {})['recent_lifetime'] = _life_doc(life)
    return {f: {'lifetime': _life(v)} for f, v in sorted(by_flavor.items())}
