"""Nova's resource weighers, reproduced operation for operation.

Nova 34 (``nova/weights.py``, ``nova/scheduler/weights/``) weighs the hosts
that passed the filters with each enabled weigher, normalises each weigher's
raw values over that candidate set, multiplies by the weigher's multiplier
and sums, in weigher order, starting from ``0.0``. The host with the highest
sum wins; ``sorted(..., reverse=True)`` is stable, so among equal sums the
first candidate wins, and with ``host_subset_size = 1`` (the default) that is
the host chosen. With one candidate no weigher runs and its weight is 0.

The five resource weighers and their defaults (``[filter_scheduler]``):

* ``RAMWeigher``: ``free_ram_mb``; multiplier 1.0; minval 0.
* ``CPUWeigher``: ``vcpus_total * cpu_allocation_ratio - vcpus_used``;
  multiplier 1.0; minval 0.
* ``DiskWeigher``: ``free_disk_mb``; multiplier 1.0; minval 0.
* ``IoOpsWeigher``: ``num_io_ops``; multiplier -1.0; minval 0.
* ``NumInstancesWeigher``: ``num_instances``; multiplier 0.0; no minval.

Every value is the host's own (absolute free RAM, vCPUs, disk), so hosts of
different sizes compare as in Nova: a larger host with more free capacity
weighs more when spreading.

A weigher with ``minval`` clamps raw values below it and normalises with
``minval`` instead of the candidates' minimum: ``(x - minval) / (max -
minval)``, all 0 when that range is empty. The other weighers in
``all_weighers`` contribute nothing in a plain simulated cluster and are not
modelled: ``BuildFailureWeigher`` (no failed builds), ``PCIWeigher`` (no PCI
devices, equal weight everywhere), ``MetricsWeigher`` (no
``[metrics] weight_setting``), ``ServerGroupSoftAffinityWeigher``/
``SoftAntiAffinityWeigher`` (no server groups), ``CrossCellWeigher`` (not a
cross-cell move), ``HypervisorVersionWeigher`` (one hypervisor version) and
``ImagePropertiesWeigher`` (multiplier 0.0): their values are equal on
every host, which normalises to 0. (A weigher with ``minval`` 0 and equal
positive values normalises them to 1 on every host: a constant that changes
no ranking, kept here because it is part of Nova's weight.)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nova_rl_weigher import features


@dataclasses.dataclass(frozen=True)
class NovaMultipliers:
    """``[filter_scheduler] *_weight_multiplier`` of the five weighers."""

    ram: float = 1.0
    cpu: float = 1.0
    disk: float = 1.0
    io_ops: float = -1.0
    num_instances: float = 0.0


#: Nova 34's defaults: spread by free RAM, vCPUs and disk.
DEFAULT = NovaMultipliers()
#: The usual packing configuration: the resource weighers negated.
PACK = NovaMultipliers(ram=-1.0, cpu=-1.0, disk=-1.0)

#: Nova weigher configurations a simulated cluster can run, by the name of
#: the baseline that reproduces them.
CONFIGURATIONS: dict[str, NovaMultipliers] = {'nova-default': DEFAULT,
                                              'nova-pack': PACK}


_max = np.maximum.reduce
_min = np.minimum.reduce


def _normalised(values: np.ndarray, minval: float | None,
                mask: np.ndarray | None) -> np.ndarray | None:
    """nova.weights.normalize over the candidates, or None when all 0."""
    # ufunc.reduce rather than np.max: the simulator calls this for every
    # request and np.max's Python wrapper costs more than the reduction.
    if minval is not None:
        w = np.maximum(values, minval)
        lo = float(minval)
        hi = float(_max(w, where=mask, initial=lo) if mask is not None
                   else _max(w))
    else:
        w = values
        if mask is not None:
            lo = float(_min(w, where=mask, initial=np.inf))
            hi = float(_max(w, where=mask, initial=-np.inf))
        else:
            lo, hi = float(_min(w)), float(_max(w))
    if lo == hi:
        return None
    return (w - lo) / (hi - lo)


def combined_weights(free_ram_mb: np.ndarray, vcpus_free: np.ndarray,
                     free_disk_mb: np.ndarray,
                     num_io_ops: np.ndarray | None,
                     num_instances: np.ndarray,
                     multipliers: NovaMultipliers = DEFAULT,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """Nova's combined weight of each candidate host.

    Arrays are per host; ``num_io_ops`` None means 0 everywhere. With
    ``mask``, only the hosts where it is true are candidates: normalisation
    uses them alone and the other entries of the result are meaningless.
    The arithmetic follows Nova's order of operations, so the floats are the
    ones Nova computes.
    """
    n = int(np.count_nonzero(mask)) if mask is not None \
        else int(free_ram_mb.shape[0])
    total = None
    if n > 1:
        for values, minval, mult in (
                (free_ram_mb, 0.0, multipliers.ram),
                (vcpus_free, 0.0, multipliers.cpu),
                (free_disk_mb, 0.0, multipliers.disk),
                (num_io_ops, 0.0, multipliers.io_ops),
                (num_instances, None, multipliers.num_instances)):
            # A zero multiplier or equal values everywhere add 0.0 in Nova.
            if mult == 0.0 or values is None:
                continue
            w = _normalised(values, minval, mask)
            if w is None:
                continue
            term = w if mult == 1.0 else mult * w
            # Nova starts from 0.0; 0.0 + x == x.
            total = term if total is None else total + term
    if total is None:
        return np.zeros(free_ram_mb.shape[0])
    return total


def columns_weights(c: features.HostColumns,
                    multipliers: NovaMultipliers = DEFAULT) -> np.ndarray:
    """:func:`combined_weights` for candidate hosts given as columns."""
    return combined_weights(
        c.ram_free_mb, c.vcpus_total * c.cpu_allocation_ratio - c.vcpus_used,
        c.disk_free_mb, c.num_io_ops, c.num_instances, multipliers)


def best_index(weights: np.ndarray, mask: np.ndarray | None = None) -> int:
    """The host Nova picks: the first of the highest weights."""
    if mask is None:
        return int(np.argmax(weights))
    return int(np.argmax(np.where(mask, weights, -np.inf)))
