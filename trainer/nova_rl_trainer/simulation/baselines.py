"""The heuristics a learned policy must beat, vectorised over all hosts.

Each baseline reads the simulator's host columns directly and picks among
the candidates (the hosts that passed placement's filters); ties go to the
lowest-numbered host (Nova's stable sort keeps its own host order, which is
fixed per scheduler process but not the simulator's; see trainer/README.md).

``nova-default``
    Nova 34's resource weighers with their default multipliers (RAM 1.0,
    CPU 1.0, disk 1.0, I/O ops -1.0, instances 0.0), normalised over the
    candidates and summed exactly as Nova does (:mod:`nova_weighers`):
    spreading.
``nova-pack``
    the same with the resource multipliers negated (RAM -1.0, CPU -1.0, disk
    -1.0), the usual packing configuration.
``first-fit``
    the lowest-numbered host that fits.
``best-fit``
    the host left with the least free capacity: the smallest sum over vCPU,
    RAM (and disk, if any) of free capacity after placing the request /
    the host's capacity.
``lifetime-fit``
    best-fit among the hosts already running VMs whose expected busy
    period the request extends least (so VMs that will leave together
    share hosts, which then empty together, as lifetime-aware schedulers
    such as Google's LAVA do), by the lifetimes schema v2 predicts for
    the policy (``nova_rl_weigher.lifetimes``, the simulator's history):
    the request's predicted median life (its siblings', else its
    project's and flavor's) against each host's expected remaining busy
    time. Without a prediction for the request, or with no active host
    among the candidates, plain best-fit.
``tetris``
    the largest dot product of the request and the host's free capacity,
    both as fractions of that host's capacity (Grandl et al., SIGCOMM
    2014).
``load-aware``
    target-utilisation packing on *actual* CPU use, as Kubernetes Trimaran's
    TargetLoadPacking: predicted use is the demand measured at the last
    usage sample, plus the vCPUs placed on the host since (not yet
    measured), plus the request's vCPUs, over the host's cores; hosts score
    ``(1 - T) U / T + T`` up to the target ``T`` (0.6 by default) and
    ``T (1 - U) / (1 - T)`` beyond it, 0 above 100%. It packs towards the
    target and avoids hot hosts.

Every capacity is the host's own (host groups of several sizes, see
:mod:`cluster`). On identical hosts best-fit and tetris drop the terms that
are the same on every host, as they always did; on mixed hosts they keep
them, since a request's share of a host depends on the host.

Options go after a colon: ``nova-default:num_instances=-1``,
``load-aware:target=0.5``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from nova_rl_trainer.simulation import nova_weighers


class Baseline:
    """A heuristic policy. Subclasses implement :meth:`choose`."""

    name = ''
    needs_usage = False
    options: dict[str, float] = {}

    def __init__(self, **options: float) -> None:
        unknown = set(options) - set(self.options)
        if unknown:
            allowed = ', '.join(sorted(self.options)) or 'none'
            raise ValueError(f'policy {self.name!r} has no option '
                             f"{', '.join(sorted(unknown))}; options: "
                             f'{allowed}')
        bad = sorted(k for k, v in options.items() if not math.isfinite(v))
        if bad:
            # A NaN weight or target ranks every host NaN: the lowest
            # index would win every decision, silently.
            raise ValueError(f'policy {self.name!r}: option {bad[0]} must '
                             'be a finite number')
        self.settings = {**self.options, **options}
        self.sim = None

    def bind(self, sim) -> None:
        self.sim = sim

    def choose(self, vm: int, fit: np.ndarray) -> int:  # pragma: no cover
        raise NotImplementedError


class FirstFit(Baseline):
    name = 'first-fit'

    def choose(self, vm: int, fit: np.ndarray) -> int:
        return int(fit.argmax())


class BestFit(Baseline):
    name = 'best-fit'

    def bind(self, sim) -> None:
        super().bind(sim)
        if sim.uniform:
            cap_v, cap_r, cap_d = _first(sim)
            self._inv_v = 1.0 / cap_v
            self._inv_r = 1.0 / cap_r
            self._inv_d = 1.0 / cap_d if cap_d > 0 else 0.0
            self._mixed = None
            return
        # Hosts of several sizes: the request's share and the offsets
        # differ from host to host and stay in the score.
        wl = sim.workload
        self._v, self._m, self._d = wl.vcpus_l, wl.memory_l, wl.disk_mb_l
        inv_v = 1.0 / sim.cap_vcpu
        inv_r = 1.0 / sim.cap_ram
        inv_d = _inverse(sim.cap_disk)
        self._inv_v, self._inv_r, self._inv_d = inv_v, inv_r, inv_d
        self._any_d = bool(inv_d.any())
        self._mixed = sim.ram_offset * inv_r + sim.disk_offset * inv_d

    def left(self, vm: int) -> np.ndarray:
        """Every host's score, lower is tighter (meaningless where the
        request does not fit)."""
        sim = self.sim
        if self._mixed is None:
            # Free capacity minus constants: the request's share and the
            # offsets are the same on every host and do not change the
            # order.
            left = sim.ram_free_mb * self._inv_r \
                - sim.vcpus_used * self._inv_v
            if self._inv_d:
                left += sim.disk_free_mb * self._inv_d
            return left
        # Sum over resources of (free after placing) / host capacity, the
        # vCPU term's constant 1 dropped.
        left = (sim.ram_free_mb - self._m[vm]) * self._inv_r \
            - (sim.vcpus_used + self._v[vm]) * self._inv_v + self._mixed
        if self._any_d:
            left += (sim.disk_free_mb - self._d[vm]) * self._inv_d
        return left

    def choose(self, vm: int, fit: np.ndarray) -> int:
        return int(np.where(fit, self.left(vm), np.inf).argmin())


class LifetimeFit(BestFit):
    """Best-fit among the active hosts whose busy period the request
    extends least, by schema v2's lifetime predictions."""

    name = 'lifetime-fit'
    needs_usage = True

    def choose(self, vm: int, fit: np.ndarray) -> int:
        sim = self.sim
        cand = np.flatnonzero(fit)
        # Candidates tightest first; stable, so ties keep host order.
        cand = cand[np.argsort(self.left(vm)[cand], kind='stable')]
        life = sim.request_signals(vm).life
        active = sim.num_instances[cand] > 0
        if life is None or not active.any():
            return int(cand[0])
        cand = cand[active]
        # Row 4 of the host signals: expected remaining busy time, NaN
        # where none of the host's VMs has a prediction (counted as
        # extended by the whole predicted life, as an empty host would be).
        remaining = sim.host_signals(cand)[4]
        extension = np.maximum(life.median_s - remaining, 0.0)
        np.copyto(extension, life.median_s, where=np.isnan(extension))
        return int(cand[extension.argmin()])


class Tetris(Baseline):
    name = 'tetris'

    def bind(self, sim) -> None:
        super().bind(sim)
        wl = sim.workload
        self._v = wl.vcpus_l
        self._m = wl.memory_l
        self._d = wl.disk_mb_l
        if sim.uniform:
            self._cap = _first(sim)
            self._sq = None
            return
        self._cap = None
        inv_d = _inverse(sim.cap_disk)
        # Per host: 1 / capacity^2, and allocatable free = free + offset.
        self._sq = (1.0 / sim.cap_vcpu ** 2, 1.0 / sim.cap_ram ** 2,
                    inv_d * inv_d)
        self._any_d = bool(inv_d.any())

    def choose(self, vm: int, fit: np.ndarray) -> int:
        sim = self.sim
        if self._sq is None:
            cap_v, cap_r, cap_d = self._cap
            a_v = self._v[vm] / cap_v
            a_r = self._m[vm] / cap_r
            # sum_r (request_r / cap_r) * (free_r / cap_r), dropping the
            # terms that are the same on every host.
            score = sim.ram_free_mb * (a_r / cap_r) \
                - sim.vcpus_used * (a_v / cap_v)
            d = self._d[vm]
            if d > 0 and cap_d > 0:
                score += sim.disk_free_mb * (d / cap_d / cap_d)
            return int(np.where(fit, score, -np.inf).argmax())
        # Hosts of several sizes: each host's own capacities, in full.
        sq_v, sq_r, sq_d = self._sq
        score = (sim.cap_vcpu - sim.vcpus_used) * (self._v[vm] * sq_v)
        score += (sim.ram_free_mb + sim.ram_offset) * (self._m[vm] * sq_r)
        d = self._d[vm]
        if d > 0 and self._any_d:
            score += (sim.disk_free_mb + sim.disk_offset) * (d * sq_d)
        return int(np.where(fit, score, -np.inf).argmax())


class NovaWeighers(Baseline):
    """Nova's normalise-and-sum over its resource weighers."""

    name = 'nova-default'
    defaults = nova_weighers.DEFAULT
    options = {'ram': defaults.ram, 'cpu': defaults.cpu,
               'disk': defaults.disk, 'io_ops': defaults.io_ops,
               'num_instances': defaults.num_instances}

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        self.multipliers = nova_weighers.NovaMultipliers(**self.settings)

    def choose(self, vm: int, fit: np.ndarray) -> int:
        return nova_weighers.best_index(
            self.sim.nova_weights(fit, self.multipliers), fit)


class NovaPack(NovaWeighers):
    name = 'nova-pack'
    defaults = nova_weighers.PACK
    options = {'ram': defaults.ram, 'cpu': defaults.cpu,
               'disk': defaults.disk, 'io_ops': defaults.io_ops,
               'num_instances': defaults.num_instances}


class LoadAware(Baseline):
    name = 'load-aware'
    options = {'target': 0.6}

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        target = self.settings['target']
        if not 0 < target < 1:
            raise ValueError(f'load-aware target {target} not in (0, 1)')
        self.target = float(target)

    def bind(self, sim) -> None:
        super().bind(sim)
        self._v = sim.workload.vcpus_l
        # Per host: utilisation is relative to the host's own cores.
        self._inv_cores = 1.0 / sim.cores

    def choose(self, vm: int, fit: np.ndarray) -> int:
        sim = self.sim
        t = self.target
        u = (sim.measured + sim.recent_vcpus + self._v[vm]) * self._inv_cores
        score = np.where(u <= t, (1.0 - t) * u / t + t,
                         t * (1.0 - u) / (1.0 - t))
        score[u > 1.0] = 0.0
        return int(np.where(fit, score, -np.inf).argmax())


def _first(sim) -> tuple[float, float, float]:
    """The capacities of identical hosts (the first host's)."""
    return (float(sim.cap_vcpu[0]), float(sim.cap_ram[0]),
            float(sim.cap_disk[0]))


def _inverse(cap: np.ndarray) -> np.ndarray:
    """1 / capacity, 0 where a host has none of the resource."""
    return np.divide(1.0, cap, out=np.zeros_like(cap), where=cap > 0)


BASELINES: dict[str, Callable[..., Baseline]] = {
    cls.name: cls for cls in (NovaWeighers, NovaPack, FirstFit, BestFit,
                              Tetris, LoadAware, LifetimeFit)}
