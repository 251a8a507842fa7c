"""Policies by name: baselines, policy artifacts and plain scoring functions.

A policy spec is one of

* a baseline name (:data:`baselines.BASELINES`), e.g. ``nova-default``;
* ``bundled``: the policy shipped in ``nova_rl_weigher``;
* a path to a policy artifact directory;

optionally followed by ``:key=value,...`` options. Artifact policies take
``mode=gated`` (default: as the weigher runs it in Nova's ``gated`` mode:
the policy acts only when the gate's confidence reaches the threshold, and
Nova's default weighers decide otherwise) or ``mode=raw`` (always the
ensemble mean's best host), ``threshold=`` (default: the manifest's
``calibration.confidence_threshold``, else ``gate.DEFAULT_THRESHOLD``),
``multiplier=`` (the weigher's ``weight_multiplier``) and ``canary=`` (its
``canary_percent``), both by default the option defaults of
``nova_rl_weigher.conf``. A gated artifact policy decides with
``nova_rl_weigher.gate.decide``, the function the weigher calls in Nova
(with no latency: the simulator does not time inference), and with the
simulated cluster's Nova weigher configuration (``SimConfig.nova_weighers``,
:func:`nova_config`) as the running one: a policy recorded for
``nova-pack`` abstains (``nova_config_mismatch``) in a simulation of
``nova-default``, as it does in Nova.

Policies that read features receive, for every decision, the candidate
feature matrix built by ``nova_rl_weigher.features.compute_matrix``: the
same code and inputs the weigher uses inside nova-scheduler, with
``nova_weight`` set to Nova's default weight over the candidate set and the
usage columns from the simulated usage snapshot.
"""

from __future__ import annotations

import collections
import os
from typing import Callable

import numpy as np

from nova_rl_weigher import artifact as artifact_mod
from nova_rl_weigher import conf
from nova_rl_weigher import gate
from nova_rl_weigher import shield

from nova_rl_trainer.simulation import baselines
from nova_rl_trainer.simulation import nova_weighers

BUNDLED = 'bundled'
#: Artifact policy options (``PATH:key=value``) other than ``mode``.
ARTIFACT_OPTIONS = ('threshold', 'multiplier', 'canary')


class PolicyError(ValueError):
    """Unknown policy or bad options."""


#: The Nova weighers the simulator models (:mod:`nova_weighers`): class
#: (as ``weight_classes`` names it), ``[filter_scheduler]`` multiplier
#: option, field of :class:`nova_weighers.NovaMultipliers`.
MODELLED_WEIGHERS = (
    ('nova.scheduler.weights.ram.RAMWeigher', 'ram_weight_multiplier',
     'ram'),
    ('nova.scheduler.weights.cpu.CPUWeigher', 'cpu_weight_multiplier',
     'cpu'),
    ('nova.scheduler.weights.disk.DiskWeigher', 'disk_weight_multiplier',
     'disk'),
    ('nova.scheduler.weights.io_ops.IoOpsWeigher',
     'io_ops_weight_multiplier', 'io_ops'),
    ('nova.scheduler.weights.num_instances.NumInstancesWeigher',
     'num_instances_weight_multiplier', 'num_instances'),
)


def _multipliers(name: str) -> dict[str, float]:
    try:
        m = nova_weighers.CONFIGURATIONS[name]
    except KeyError:
        raise PolicyError(f'Nova weighers {name!r}: one of '
                          + ', '.join(nova_weighers.CONFIGURATIONS)) from None
    return {option: float(getattr(m, field))
            for _, option, field in MODELLED_WEIGHERS}


def nova_weighers_record(name: str) -> dict:
    """The manifest's ``nova_weighers`` for a policy trained in a cluster
    whose Nova runs the configuration ``name`` (``SimConfig.nova_weighers``,
    e.g. ``nova-default``): the modelled weighers and their multipliers."""
    return {'name': name,
            'weighers': [cls for cls, _, _ in MODELLED_WEIGHERS],
            'multipliers': _multipliers(name)}


def nova_config(name: str) -> gate.NovaConfig:
    """The running Nova's configuration as the gate sees it, for a
    simulated cluster running ``name``: its multipliers; the weighers are
    all enabled (``all_weighers``)."""
    return gate.NovaConfig(_multipliers(name),
                           frozenset(cls for cls, _, _ in MODELLED_WEIGHERS))


def bundled_path() -> str:
    return conf.DEFAULT_POLICY_PATH


def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``'name:a=1,b=x'`` -> ``('name', {'a': '1', 'b': 'x'})``.

    A colon starts options only if what follows looks like options, so
    paths with colons still work.
    """
    if os.path.isdir(spec):
        return spec, {}
    head, sep, tail = spec.rpartition(':')
    if not sep or '=' not in tail:
        return spec, {}
    options = {}
    for part in tail.split(','):
        key, eq, value = part.partition('=')
        if not eq or not key.strip():
            raise PolicyError(f'policy {spec!r}: option {part!r} is not '
                              'KEY=VALUE')
        options[key.strip()] = value.strip()
    return head, options


def _is_option(piece: str) -> bool:
    """Whether a piece of a comma-separated list of specs is ``KEY=VALUE``
    (an option of the spec before it) rather than a spec of its own: it
    has ``=``, neither ``:`` nor ``/``, and is not a directory."""
    return ('=' in piece and ':' not in piece and '/' not in piece
            and not os.path.isdir(piece))


def split_specs(text: str) -> list[str]:
    """A comma-separated list of specs -> the specs.

    Options of one spec are comma-separated too, so a piece that is
    ``KEY=VALUE`` (:func:`_is_option`) continues the options of the spec
    before it: ``'nova-default,p:threshold=0.3,multiplier=2'`` ->
    ``['nova-default', 'p:threshold=0.3,multiplier=2']``. Empty pieces are
    skipped. PolicyError for such a piece with no spec before it, or after
    a spec that has no options.
    """
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(',')):
        if not piece:
            continue
        if not _is_option(piece):
            specs.append(piece)
            continue
        if not specs:
            raise PolicyError(f'option {piece!r} comes before any policy: '
                              'options follow a policy after its colon, '
                              'as NAME:KEY=VALUE,KEY=VALUE')
        if not split_spec(specs[-1])[1]:
            raise PolicyError(f'option {piece!r} follows policy '
                              f'{specs[-1]!r}, which has no options: '
                              f'write {specs[-1]}:{piece}')
        specs[-1] += ',' + piece
    return specs


def _floats(spec: str, options: dict[str, str]) -> dict[str, float]:
    out = {}
    for key, value in options.items():
        try:
            out[key] = float(value)
        except ValueError:
            raise PolicyError(f'policy {spec!r}: option {key}={value!r} is '
                              'not a number') from None
    return out


#: The ``[rl_weigher]`` option each artifact policy option stands for,
#: whose range (:func:`conf.bounds`) it must keep: Nova refuses a threshold
#: or canary share outside it at start and ignores such a multiplier, so
#: simulating one would judge a configuration that never runs.
_CONF_OPTION = {'threshold': 'confidence_threshold',
                'multiplier': 'weight_multiplier',
                'canary': 'canary_percent'}


def _check_ranges(spec: str, numbers: dict[str, float]) -> None:
    for key, value in numbers.items():
        conf_name = _CONF_OPTION[key]
        within = conf.out_of_bounds(conf_name, value)
        if within:
            raise PolicyError(f'policy {spec!r}: option {key}={value:g} '
                              f'must be {within}, as [rl_weigher] '
                              f'{conf_name}')


def make_policy(spec: str):
    """A fresh policy object for ``spec`` (one per simulation)."""
    name, options = split_spec(spec)
    if name in baselines.BASELINES:
        numbers = _floats(spec, options)   # its own error, named once
        try:
            return baselines.BASELINES[name](**numbers)
        except (TypeError, ValueError) as e:
            raise PolicyError(f'policy {spec!r}: {e}') from None
    if name == BUNDLED:
        path = bundled_path()
    elif os.path.isdir(name):
        path = name
    else:
        raise PolicyError(
            f'unknown policy {name!r}: not a baseline ('
            + ', '.join(baselines.BASELINES) + f'), {BUNDLED!r} or a '
            'policy artifact directory')
    mode = options.pop('mode', 'gated')
    if mode not in ('gated', 'raw'):
        raise PolicyError(f'policy {spec!r}: mode must be gated or raw')
    numbers = _floats(spec, options)
    unknown = set(numbers) - set(ARTIFACT_OPTIONS)
    if unknown:
        raise PolicyError(f'policy {spec!r}: unknown option(s) '
                          + ', '.join(sorted(unknown))
                          + '; options: mode, ' + ', '.join(ARTIFACT_OPTIONS))
    _check_ranges(spec, numbers)
    try:
        loaded = artifact_mod.load_artifact(path)
    except artifact_mod.ArtifactError as e:
        raise PolicyError(f'policy {spec!r}: {e}') from None
    return ArtifactPolicy(loaded, name=spec, mode=mode, **numbers)


class FeaturePolicy:
    """Base of policies that read the candidate feature matrix."""

    name = 'features'
    needs_usage = True

    def __init__(self) -> None:
        self.sim = None

    def bind(self, sim) -> None:
        self.sim = sim

    def choose(self, vm: int, fit: np.ndarray) -> int:
        cand, x, nova_weight = self.sim.candidate_features(vm, fit)
        return int(cand[self.pick(x, nova_weight)])

    def pick(self, x: np.ndarray, nova_weight: np.ndarray) -> int:
        raise NotImplementedError  # pragma: no cover


class ScoringPolicy(FeaturePolicy):
    """Any function from the ``(N, F)`` feature matrix to scores, ``(N,)``
    or an ensemble's ``(K, N)``; the best mean score wins (first on ties),
    within ``shield_limit`` when given (:mod:`nova_rl_weigher.shield`, as
    a raw :class:`ArtifactPolicy` with that shield). This is how a
    trainer's network plugs into the simulator."""

    def __init__(self, score: Callable[[np.ndarray], np.ndarray],
                 name: str = 'scoring',
                 shield_limit: float | None = None) -> None:
        super().__init__()
        self.score = score
        self.name = name
        self.shield_limit = shield_limit

    def pick(self, x: np.ndarray, nova_weight: np.ndarray) -> int:
        s = np.asarray(self.score(x), dtype=np.float64)
        if s.ndim == 2:
            s = s.mean(axis=0)
        if s.shape != (x.shape[0],):
            raise ValueError(f'policy {self.name}: {s.shape} scores for '
                             f'{x.shape[0]} hosts')
        return shield.best_within(self.shield_limit, x, s)


class ArtifactPolicy(FeaturePolicy):
    """A verified ``nova_rl_weigher`` policy artifact, gated or raw.

    Gated, it decides as the weigher does in Nova's ``gated`` mode:
    :func:`nova_rl_weigher.gate.decide` on the candidates' features and
    scores, with the usage snapshot fresh when the simulation keeps one, no
    latency, the request's instance UUID for the canary and the
    simulation's Nova weigher configuration (:func:`nova_config` of its
    ``config.nova_weighers``; not compared when the simulation has none);
    when it applies, the host with the highest
    :func:`nova_rl_weigher.gate.final_weights` wins, else Nova's own choice.
    A policy that will not act whatever the candidates (a configuration
    mismatch, a manifest that says never) is not scored.
    """

    def __init__(self, policy, name: str, mode: str = 'gated',
                 threshold: float | None = None,
                 multiplier: float | None = None,
                 canary: float | None = None) -> None:
        super().__init__()
        self.policy = policy
        # A v1 policy reads only v1's columns: the simulator then skips the
        # v2 signals' bookkeeping.
        self.feature_schema = policy.schema
        self.name = name
        self.mode = mode
        self.gate_settings = gate.GateSettings(
            confidence_threshold=(gate.DEFAULT_SETTINGS.confidence_threshold
                                  if threshold is None else float(threshold)),
            canary_percent=(gate.DEFAULT_SETTINGS.canary_percent
                            if canary is None else float(canary)))
        self.threshold = gate.threshold_for(
            policy, self.gate_settings.confidence_threshold)
        self.multiplier = float(conf.default('weight_multiplier')
                                if multiplier is None else multiplier)
        self.calls = 0
        self.applied = 0
        self.abstained: collections.Counter[str] = collections.Counter()
        self._vm = -1
        self.nova_config: gate.NovaConfig | None = None
        # gate.standing_verdict for the bound simulation (set by bind):
        # it holds for the whole run.
        self._standing: tuple[str, str] = ('', '')

    def bind(self, sim) -> None:
        super().bind(sim)
        name = getattr(getattr(sim, 'config', None), 'nova_weighers', None)
        self.nova_config = nova_config(name) if name is not None else None
        self._standing = gate.standing_verdict(
            self.policy, self.gate_settings, self.nova_config)

    def choose(self, vm: int, fit: np.ndarray) -> int:
        self._vm = vm
        return super().choose(vm, fit)

    def instance_uuid(self) -> str:
        """The pending request's instance UUID (for the canary)."""
        if self.sim is None or self._vm < 0:
            return ''
        return self.sim.workload.trace.vm_id(self._vm)

    def pick(self, x: np.ndarray, nova_weight: np.ndarray) -> int:
        self.calls += 1
        if self.mode == 'raw':
            # Raw: the policy's own choice, always; within its shield when
            # it has one (the shield is part of the policy, not the gate).
            self.applied += 1
            return shield.best_within(self.policy.shield_limit, x,
                                      self.policy.score(x).mean(axis=0))
        # Not scored when it will not act anyway (decide says why).
        scores = None if self._standing[0] else self.policy.score(x)
        d = gate.decide(
            self.policy, x, scores, settings=self.gate_settings,
            snapshot_status='fresh' if self.sim.needs_usage else 'none',
            instance_uuid=self.instance_uuid(), nova_config=self.nova_config,
            standing=self._standing)
        if not d.applied:
            self.abstained[d.verdict] += 1
            return int(np.argmax(nova_weight))
        self.applied += 1
        return int(np.argmax(gate.final_weights(nova_weight, d.weights,
                                                self.multiplier)))

    def run_metrics(self) -> dict:
        return {'applied_fraction': (self.applied / self.calls
                                     if self.calls else 0.0),
                'policy_version': self.policy.version,
                'policy_mode': self.mode,
                'abstained': dict(self.abstained)}
