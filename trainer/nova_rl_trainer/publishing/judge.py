"""Judging a candidate policy against the served one and Nova's default,
and installing it only when it wins.

::

    nova-rl-trainer publish --candidate DIR --target DIR
        [--objective NAME] [--objective-option KEY=NUMBER]
        [--scenario NAME]... [--trace PATH --hosts N ...] [--seed S]...
        [--tolerance REL] [--floor HOST_SAMPLES]
        [--terms all|objective|T1,T2] [--keep N]
        [--threshold T] [--multiplier M] [--windows N] [--window-days D]
        [--workers N] [--ray-address ADDRESS] [--dry-run]
        [--json OUT] [--quiet]
    nova-rl-trainer rollback --target DIR

``publish`` simulates the candidate, the policy currently at the target and
``nova-default`` on held-out scenarios (``azure-v1-test`` unless told
otherwise; every policy plays the same workload per scenario and seed). The
candidate and the current policy run *gated*, as the weigher runs them in
Nova: confidence threshold applied, Nova's default weighers deciding when
the policy abstains. Each scenario and seed is cut into ``--windows``
(default 10) disjoint time windows, each played by every policy from the
state Nova's weighers built before it: independent cases on which every
policy plays the same workload from the same state, so the comparison is
paired over all of them (:mod:`~nova_rl_trainer.simulation.paired`). The
candidate is installed only if, against the current policy and against
``nova-default``:

* no checked objective term is worse: the one-sided 95% upper confidence
  bound (Student's t) of its mean paired difference, candidate minus
  reference as a share of the reference's mean, is at most ``--tolerance``
  (default 0), or, for overload and hot host-hours, the bound of the mean
  absolute difference per window is at most ``--floor`` hosts for one usage
  sample (default 1: 5 minutes of one host, the finest step usage is
  measured in; a relative bound on the seconds of overload Nova's weighers
  leave in a window is noise). By default the checked terms are those the
  chosen objective weighs (for ``packing``: active host-hours, energy and
  rejections): the operator chose that objective, and a packing policy is
  by design hotter than Nova's spreading default. ``--terms all`` checks
  every term of :data:`objectives.TERMS`;
* the chosen objective (the candidate manifest's ``objective``, or
  ``--objective``) improves: its mean paired difference is below zero.

A candidate whose manifest says it must never act (``calibration.act:
never``: its calibration found no confidence level at which it is at least
as good as Nova's weighers) is refused without evaluation, whatever
``--threshold`` says: the weigher would not let it act, and the
calibration says it should not.

Otherwise it prints the table of terms and what failed, and changes
nothing. Installing is atomic and transactional and keeps previous versions
(:mod:`versions`); ``rollback`` restores the previous one.

Exit codes (:mod:`verdict`): 0 installed (or, with ``--dry-run``, would
be) / rolled back; 3 refused by the gate; 2 error, the target serves what
it served before (bad candidate, bad options, broken target, an install
that failed before its switch or was switched back); 4 error after the
switch could not be undone, the message says what the target serves.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from typing import Sequence

import numpy as np

from nova_rl_weigher import artifact as artifact_mod
from nova_rl_weigher import conf
from nova_rl_weigher import gate

# The verdict's names are re-exported: callers import them from here.
from nova_rl_trainer.publishing.verdict import BASELINE  # noqa: F401
from nova_rl_trainer.publishing.verdict import CANDIDATE  # noqa: F401
from nova_rl_trainer.publishing.verdict import Case  # noqa: F401
from nova_rl_trainer.publishing.verdict import CURRENT  # noqa: F401
from nova_rl_trainer.publishing.verdict import EXIT_ERROR  # noqa: F401
from nova_rl_trainer.publishing.verdict import EXIT_OK  # noqa: F401
from nova_rl_trainer.publishing.verdict import EXIT_REFUSED  # noqa: F401
from nova_rl_trainer.publishing.verdict import EXIT_SWITCHED  # noqa: F401
from nova_rl_trainer.publishing.verdict import Failure  # noqa: F401
from nova_rl_trainer.publishing.verdict import Judgement  # noqa: F401
from nova_rl_trainer.publishing.verdict import PublishResult  # noqa: F401
from nova_rl_trainer.publishing import versions as pv
from nova_rl_trainer.simulation import evaluation
from nova_rl_trainer.simulation import nova_weighers
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import paired
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation.setup import Setup
from nova_rl_trainer.simulation import traces

DEFAULT_SCENARIOS = ('azure-v1-test',)
DEFAULT_KEEP = 5
#: Independent held-out windows per scenario and seed
#: (:func:`~nova_rl_trainer.simulation.evaluation.split_windows`).
DEFAULT_WINDOWS = paired.MIN_GROUPS

# Reading an untrusted artifact: whatever the loader lets through besides
# ArtifactError must still end as an error message, never a traceback.
_READ_ERRORS = (ValueError, RecursionError, OSError, TypeError, KeyError)

#: Why a candidate whose manifest says it must never act is refused.
NEVER_ACT_REFUSAL = (
    "the candidate's manifest says it must never act (calibration.act "
    'never): its calibration found no confidence level at which it is at '
    "least as good as Nova's weighers, so the weigher would abstain on every "
    'request (never_act); retrain it rather than publish it')


class PublishError(Exception):
    """Publishing or rolling back cannot proceed.

    ``state`` says what the target serves afterwards (``None``: it was not
    touched); ``changed`` is true when a switch happened and could not be
    undone, so the target no longer serves what it served before.
    """

    def __init__(self, message: str, state: str | None = None,
                 changed: bool = False) -> None:
        super().__init__(message)
        self.state = state
        self.changed = changed

    @property
    def exit_code(self) -> int:
        return EXIT_SWITCHED if self.changed else EXIT_ERROR

    @property
    def outcome(self) -> str:
        """What the operator needs to know besides the error itself."""
        return self.state or 'nothing was changed'

    @classmethod
    def from_version_error(cls, e: pv.VersionError,
                           prefix: str = '') -> 'PublishError':
        return cls(prefix + str(e), e.state,
                   changed=isinstance(e, pv.SwitchedError))


def resolve_terms(terms: str | Sequence[str] | None,
                  objective: objectives_mod.Objective) -> tuple[str, ...]:
    """``'all'``: every term; ``None``/``'objective'``: the ones the
    objective weighs; else the listed terms (a sequence or ``'a,b'``)."""
    if terms == 'all':
        return objectives_mod.TERMS
    if terms is None or terms == 'objective':
        return tuple(t for t in objectives_mod.TERMS
                     if objective.weights.get(t))
    if isinstance(terms, str):
        terms = [t.strip() for t in terms.split(',') if t.strip()]
    unknown = [t for t in terms if t not in objectives_mod.TERMS]
    if unknown or not terms:
        raise PublishError(
            f'unknown term(s) {", ".join(unknown) or "(none given)"}; terms: '
            'all, objective, or a list of ' + ', '.join(objectives_mod.TERMS))
    return tuple(t for t in objectives_mod.TERMS if t in terms)


def _gated_spec(path: str, threshold: float | None,
                multiplier: float | None) -> str:
    # Explicitly gated: that is how the weigher runs a policy in Nova, and
    # the spec's default could change under us.
    options = ['mode=gated']
    if threshold is not None:
        options.append(f'threshold={threshold!r}')
    if multiplier is not None:
        options.append(f'multiplier={multiplier!r}')
    return f'{path}:{",".join(options)}'


def _judge(cases: list[Case], terms: tuple[str, ...], tolerance: float,
           floors: dict[str, float] | None = None
           ) -> tuple[list[Failure], list[Judgement]]:
    """Paired over the cases (independent windows): each checked term must
    have a one-sided 95% upper bound of its mean relative difference
    within ``tolerance``, or of its absolute one within its floor
    (``floors``, per case); the objective needs a mean improvement
    (:mod:`~nova_rl_trainer.simulation.paired`)."""
    floors = floors or {}
    failures, judgements = [], []
    for ref in (CURRENT, BASELINE):
        if ref not in cases[0].metrics:
            continue
        for term in (*terms, 'objective'):
            key = 'objective_value' if term == 'objective' else term
            c = [float(case.metrics[CANDIDATE][key]) for case in cases]
            o = [float(case.metrics[ref][key]) for case in cases]
            bound = paired.compare(c, o, floors.get(term, 0.0))
            passed = (bound.improves() if term == 'objective'
                      else bound.not_worse(tolerance))
            j = Judgement(ref, term, bound, passed)
            judgements.append(j)
            if not passed:
                failures.append(Failure(ref, term, None, float(np.mean(c)),
                                        float(np.mean(o)), bound))
    return failures, judgements


def publish(candidate: str, target: str, *,
            objective: str | None = None,
            objective_options: dict[str, float] | None = None,
            scenarios: Sequence[str] = DEFAULT_SCENARIOS,
            seeds: Sequence[int] = (0,),
            setups: Sequence[Setup] | None = None,
            tolerance: float = 0.0,
            floor: float = objectives_mod.DEFAULT_FLOOR_HOST_SAMPLES,
            terms: str | Sequence[str] | None = None,
            keep: int = DEFAULT_KEEP,
            threshold: float | None = None,
            multiplier: float | None = None,
            jobs: int = 1,
            dry_run: bool = False,
            show_progress: bool = False,
            windows: int = DEFAULT_WINDOWS,
            window_days: float | None = None,
            ray_address: str | None = None) -> PublishResult:
    """Evaluate ``candidate`` and install it at ``target`` if it passes.

    ``setups`` (any trace and cluster) replaces ``scenarios`` x ``seeds``;
    their objective is replaced by the chosen one. Each is cut into
    ``windows`` independent time windows
    (:func:`~nova_rl_trainer.simulation.evaluation.split_windows`), the paired
    cases of the verdict; the simulations fan out over ``jobs`` local
    processes or the Ray cluster at ``ray_address``. Raises
    :class:`PublishError` when it cannot decide or install: its ``state``
    and ``exit_code`` say what the target serves then. A refusal is a
    result with ``failures``, not an exception.
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise PublishError('tolerance must be a finite number >= 0')
    if not objectives_mod.valid_floor(floor):
        raise PublishError('floor must be a finite number of host-samples '
                           '>= 0')
    if keep < 0:
        raise PublishError('keep must be >= 0')
    # Nova refuses such a threshold and ignores such a multiplier: the
    # verdict would be on a configuration that never runs.
    for key, value, name in (('threshold', threshold, 'confidence_threshold'),
                             ('multiplier', multiplier, 'weight_multiplier')):
        within = None if value is None else conf.out_of_bounds(name, value)
        if within:
            raise PublishError(f'{key} must be {within}, as [rl_weigher] '
                               f'{name}')
    target = pv.normalise(target)
    try:
        state = pv.inspect(target)
    except pv.VersionError as e:
        raise PublishError.from_version_error(e) from None
    except OSError as e:
        raise PublishError(f'cannot inspect the target {target}: {e}') \
            from None
    if state.resolved and \
            os.path.realpath(candidate) == os.path.realpath(state.resolved):
        raise PublishError(f'the candidate {candidate} is the policy '
                           'already at the target')
    try:
        cand = pv.snapshot(candidate)
    except (artifact_mod.ArtifactError, *_READ_ERRORS) as e:
        raise PublishError(f'candidate refused, it is not a valid policy '
                           f'artifact: {e}') from None
    cand_copy = cand.path
    temps = [os.path.dirname(cand_copy)]
    try:
        chosen = objective or cand.policy.manifest.get('objective')
        if not isinstance(chosen, str) or not chosen:
            raise PublishError("the candidate manifest's objective is not a "
                               'name; choose one with --objective')
        try:
            obj = objectives_mod.load_objective(chosen,
                                                objective_options or {})
        except objectives_mod.ObjectiveError as e:
            source = ('--objective' if objective else
                      "the candidate manifest's objective")
            raise PublishError(f'{source} {chosen!r}: {e}; choose one with '
                               '--objective') from None
        checked = resolve_terms(terms, obj)
        if gate.never_acts(cand.policy):
            # Nothing to simulate: gated, it is nova-default at best.
            return PublishResult(
                target=target, candidate=os.path.abspath(candidate),
                candidate_version=cand.policy.version, objective=obj.name,
                terms=checked, tolerance=tolerance, current_version=None,
                cases=[], failures=[], notes=[], dry_run=dry_run,
                refusals=[NEVER_ACT_REFUSAL], floor_host_samples=floor)

        notes: list[str] = []
        cur_copy, cur_version = None, None
        if state.kind == 'dangling':
            notes.append(f'{target} is a dangling symlink ({state.link}): '
                         'no current policy, compared with nova-default only')
        elif state.kind in ('link', 'dir'):
            try:
                cur = pv.snapshot(state.resolved)
            except (artifact_mod.ArtifactError, *_READ_ERRORS) as e:
                notes.append(f'the current policy at {target} is invalid '
                             f'({e}); compared with nova-default only')
            else:
                cur_copy, cur_version = cur.path, cur.policy.version
                temps.append(os.path.dirname(cur_copy))
        else:
            notes.append(f'nothing at {target} yet: first install, compared '
                         'with nova-default only')

        columns = {CANDIDATE: _gated_spec(cand_copy, threshold, multiplier)}
        if cur_copy:
            columns[CURRENT] = _gated_spec(cur_copy, threshold, multiplier)
        columns[BASELINE] = BASELINE
        if setups is None:
            try:
                setups = [Setup.from_scenario(name, seed=seed)
                          for name in scenarios
                          for seed in seeds]
            except ValueError as e:
                raise PublishError(str(e)) from None
        # A case given twice would count twice in the objective's sum.
        setups = list({repr(s): s for s in setups}.values())
        if not setups:
            raise PublishError('no held-out scenario to evaluate on')
        notes.extend(_nova_config_notes(cand.policy, setups))
        cases = _evaluate([dataclasses.replace(
            s, objective=obj.name,
            objective_options=tuple(obj.options.items())) for s in setups],
            windows, window_days, columns, jobs, ray_address, show_progress)
        if len(cases) < paired.MIN_GROUPS:
            raise PublishError(
                f'{len(cases)} held-out cases: the verdict needs at least '
                f'{paired.MIN_GROUPS} independent ones (--windows, or '
                'scenarios x seeds)')
        failures, judgements = _judge(
            cases, checked, tolerance, objectives_mod.floors(
                checked, (s.config.usage_interval_s for s in setups), floor))

        result = PublishResult(
            target=target, candidate=os.path.abspath(candidate),
            candidate_version=cand.policy.version,
            objective=obj.name, terms=checked, tolerance=tolerance,
            current_version=cur_version, cases=cases,
            failures=failures, notes=notes, dry_run=dry_run,
            judgements=judgements, floor_host_samples=floor)
        if result.accepted and not dry_run:
            _install(result, state, cand_copy, cand.fingerprint, keep)
        return result
    finally:
        for path in temps:
            shutil.rmtree(path, ignore_errors=True)


def _nova_config_notes(policy, setups: Sequence[Setup]) -> list[str]:
    """Say so when the held-out simulations run a Nova configuration the
    candidate was not trained for: it abstains there on every request
    (``nova_config_mismatch``), as it would in such a Nova."""
    notes = []
    for name in sorted({s.config.nova_weighers for s in setups}):
        if not gate.config_mismatch(policy, policies_mod.nova_config(name)):
            continue
        recorded = policy.manifest['nova_weighers'].get('name')
        note = (f'the candidate was trained for Nova weighers {recorded!r}; '
                f'the evaluation simulates {name!r}, where it abstains on '
                'every request (nova_config_mismatch)')
        if recorded in nova_weighers.CONFIGURATIONS:
            note += f'; evaluate it with --nova-weighers {recorded}'
        notes.append(note)
    return notes


def _evaluate(setups: Sequence[Setup], windows: int,
              window_days: float | None, columns: dict[str, str], jobs: int,
              ray_address: str | None, show_progress: bool) -> list[Case]:
    """Every column on every window of every setup: the paired cases."""
    try:
        cuts = [w for setup in setups
                for w in evaluation.split_windows(setup, windows,
                                                  window_days)]
        results = evaluation.evaluate_windows(
            cuts, list(columns.values()), jobs, show_progress, ray_address)
    except (policies_mod.PolicyError, traces.TraceError,
            objectives_mod.ObjectiveError, ValueError, OSError) as e:
        raise PublishError(f'evaluation failed: {e}') from None
    return [Case(label=w.label, scenario=w.setup.name, seed=w.setup.seed,
                 metrics=dict(zip(columns, row)))
            for w, row in zip(cuts, results)]


def _install(result: PublishResult, state: pv.TargetState, copy: str,
             fp: str, keep: int) -> None:
    record = {'evaluation': {k: v for k, v in result.summary().items()
                             if k in ('objective', 'terms', 'tolerance',
                                      'candidate', 'current_version',
                                      'notes', 'judgements', 'cases')}}
    try:
        outcome = pv.install(result.target, copy, fp,
                             result.candidate_version, state, keep, record)
    except pv.VersionError as e:
        raise PublishError.from_version_error(e, 'install failed: ') \
            from None
    result.installed = True
    result.installed_as = os.path.join(pv.versions_dir(result.target),
                                       outcome.name)
    result.previous = outcome.previous
    result.pruned = outcome.pruned
    result.warnings = outcome.warnings


def rollback(target: str) -> pv.RollbackOutcome:
    """Point ``target`` back at the previous published version."""
    try:
        return pv.rollback(target)
    except pv.VersionError as e:
        raise PublishError.from_version_error(e, 'rollback failed: ') \
            from None
