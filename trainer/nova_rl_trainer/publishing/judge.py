"""Judging a candidate policy against the served one and Nova's default,
and installing it only when it wins.

::

    nova-rl-trainer publish --candidate DIR --target DIR
        [--objective NAME] [--objective-option KEY=NUMBER]
        [--scenario NAME]... [--trace PATH --hosts N ...] [--seed S]...
        [--tolerance REL] [--terms all|objective|T1,T2] [--keep N]
        [--threshold T] [--multiplier M] [--jobs N] [--dry-run]
        [--json OUT] [--quiet]
    nova-rl-trainer rollback --target DIR

``publish`` simulates the candidate, the policy currently at the target and
``nova-default`` on held-out scenarios (``azure-v1-test`` unless told
otherwise; every policy plays the same workload per scenario and seed). The
candidate and the current policy run *gated*, as the weigher runs them in
Nova: confidence threshold applied, Nova's default weighers deciding when
the policy abstains. The candidate is installed only if, against the
current policy and against ``nova-default``:

* no checked objective term is worse on any scenario, beyond a relative
  ``--tolerance`` (default 0). By default the checked terms are those the
  chosen objective weighs (for ``packing``: active host-hours, energy and
  rejections): the operator chose that objective, and a packing policy is
  by design hotter than Nova's spreading default. ``--terms all`` checks
  every term of :data:`objectives.TERMS`;
* the chosen objective (the candidate manifest's ``objective``, or
  ``--objective``), summed over the scenarios, is strictly better.

Otherwise it prints the table of terms and what failed, and changes
nothing. Installing is atomic and keeps previous versions
(:mod:`policy_versions`); ``rollback`` restores the previous one.

Exit codes: 0 installed (or, with ``--dry-run``, would be) / rolled back;
3 refused by the gate; 2 error (bad candidate, bad options, broken target).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from typing import Any, Sequence

from nova_rl_weigher import artifact as artifact_mod

from nova_rl_trainer.publishing import versions as pv
from nova_rl_trainer.simulation import evaluation
from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import policies as policies_mod
from nova_rl_trainer.simulation import traces
from nova_rl_trainer.simulation.setup import Setup

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_REFUSED = 3

DEFAULT_SCENARIOS = ('azure-v1-test',)
DEFAULT_KEEP = 5

CANDIDATE = 'candidate'
CURRENT = 'current'
BASELINE = 'nova-default'

# Two runs that make the same decisions accrue bit-identical floats, but a
# policy that differs only in harmless ways can land a few ulps away; this
# keeps such noise from deciding the gate either way.
_EPS = 1e-9


class PublishError(Exception):
    """Publishing or rolling back cannot proceed; nothing was changed."""


@dataclasses.dataclass
class Case:
    """One held-out evaluation: a setup and each column's metrics."""

    label: str
    scenario: str | None
    seed: int
    metrics: dict[str, dict[str, Any]]     # column -> run metrics


@dataclasses.dataclass
class Failure:
    reference: str          # CURRENT or BASELINE
    term: str               # a term, or 'objective'
    case: str | None        # None: summed over the cases
    candidate: float
    other: float

    def message(self, objective: str, tolerance: float) -> str:
        change = (f'{(self.candidate - self.other) / abs(self.other):+.2%}'
                  if self.other else 'from 0')
        if self.term == 'objective':
            where = '' if self.case is None else f' on {self.case}'
            return (f'objective {objective} is not better than '
                    f'{self.reference}{where}: '
                    f'candidate {self.candidate:.6g} vs {self.other:.6g} '
                    f'({change})')
        return (f'{self.term} is worse than {self.reference} on {self.case}: '
                f'candidate {self.candidate:.6g} vs {self.other:.6g} '
                f'({change}, tolerance {tolerance:.1%})')


@dataclasses.dataclass
class PublishResult:
    target: str
    candidate: str
    candidate_version: str
    objective: str
    terms: tuple[str, ...]
    tolerance: float
    current_version: str | None
    cases: list[Case]
    failures: list[Failure]
    notes: list[str]
    dry_run: bool = False
    installed: bool = False
    installed_as: str | None = None    # version directory now at target
    previous: str | None = None        # what rollback would restore
    pruned: list[str] = dataclasses.field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.accepted else EXIT_REFUSED

    @property
    def columns(self) -> list[str]:
        return [c for c in (CANDIDATE, CURRENT, BASELINE)
                if c in self.cases[0].metrics]

    def reasons(self) -> list[str]:
        return [f.message(self.objective, self.tolerance)
                for f in self.failures]

    def table(self) -> str:
        """The terms for each column and case, with what failed."""
        cols = self.columns
        width = len('headroom_deficit_host_hours') + 2

        def row(name: str, cells: list[str], check: str = '') -> str:
            return (f'{name:<{width}}' + ''.join(f'{c:>15}' for c in cells)
                    + (f'   {check}' if check else ''))

        def verdict(case: str | None, term: str) -> str:
            bad = [f.reference for f in self.failures
                   if (f.case, f.term) == (case, term)]
            if term == 'objective':
                return 'NOT BETTER than ' + ', '.join(bad) if bad \
                    else 'better'
            if term not in self.terms:
                return 'not checked'
            return 'WORSE than ' + ', '.join(bad) if bad else 'ok'

        lines = []
        for case in self.cases:
            m = case.metrics
            lines.append(f'{case.label}: objective {self.objective}, '
                         'policies gated as in Nova')
            lines.append(row('term', cols, 'check'))
            for term in objectives_mod.TERMS:
                lines.append(row(term, [_fmt(m[c].get(term), term)
                                        for c in cols],
                                 verdict(case.label, term)))
            lines.append(row(
                f'objective {self.objective}',
                [_fmt(m[c].get('objective_value'), '') for c in cols],
                verdict(case.label, 'objective')
                if len(self.cases) == 1 else ''))
            lines.append(row('applied (gated)',
                             [_fmt(m[c].get('applied_fraction'),
                                   'applied_fraction') for c in cols]))
            lines.append('')
        if len(self.cases) > 1:
            totals = [_fmt(sum(c.metrics[col]['objective_value']
                               for c in self.cases), '') for col in cols]
            lines.append(row(f'{self.objective}, all cases', totals,
                             verdict(None, 'objective')))
        return '\n'.join(lines).rstrip() + '\n'

    def summary(self) -> dict[str, Any]:
        """JSON-able record of the decision (also kept in the history)."""
        keep = (*self.terms, 'objective_value', 'applied_fraction',
                'policy_version')
        return {
            'candidate': self.candidate,
            'candidate_version': self.candidate_version,
            'current_version': self.current_version,
            'objective': self.objective,
            'terms': list(self.terms),
            'tolerance': self.tolerance,
            'accepted': self.accepted,
            'installed': self.installed,
            'installed_as': self.installed_as,
            'previous': self.previous,
            'reasons': self.reasons(),
            'notes': list(self.notes),
            'cases': [{'label': c.label, 'scenario': c.scenario,
                       'seed': c.seed,
                       'metrics': {col: {k: _json_number(m.get(k))
                                         for k in keep if k in m}
                                   for col, m in c.metrics.items()}}
                      for c in self.cases],
        }


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return '-'
    if key == 'applied_fraction':
        return f'{value:.1%}'
    if key == 'rejected':
        return f'{value:,.0f}'
    return f'{value:,.3f}'


def _json_number(value: Any) -> Any:
    if hasattr(value, 'item'):          # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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


def _judge(cases: list[Case], terms: tuple[str, ...], tolerance: float
           ) -> list[Failure]:
    failures = []
    for ref in (CURRENT, BASELINE):
        if ref not in cases[0].metrics:
            continue
        for case in cases:
            cand, other = case.metrics[CANDIDATE], case.metrics[ref]
            for term in terms:
                c, o = float(cand[term]), float(other[term])
                if c > o + tolerance * abs(o) + _EPS * max(1.0, abs(o)):
                    failures.append(Failure(ref, term, case.label, c, o))
        c = sum(float(case.metrics[CANDIDATE]['objective_value'])
                for case in cases)
        o = sum(float(case.metrics[ref]['objective_value']) for case in cases)
        if not c < o - _EPS * max(1.0, abs(o)):
            failures.append(Failure(ref, 'objective',
                                    cases[0].label if len(cases) == 1
                                    else None, c, o))
    return failures


def publish(candidate: str, target: str, *,
            objective: str | None = None,
            objective_options: dict[str, float] | None = None,
            scenarios: Sequence[str] = DEFAULT_SCENARIOS,
            seeds: Sequence[int] = (0,),
            setups: Sequence[Setup] | None = None,
            tolerance: float = 0.0,
            terms: str | Sequence[str] | None = None,
            keep: int = DEFAULT_KEEP,
            threshold: float | None = None,
            multiplier: float | None = None,
            jobs: int = 1,
            dry_run: bool = False,
            show_progress: bool = False) -> PublishResult:
    """Evaluate ``candidate`` and install it at ``target`` if it passes.

    ``setups`` (any trace and cluster) replaces ``scenarios`` x ``seeds``;
    their objective is replaced by the chosen one. Raises
    :class:`PublishError` when it cannot decide (nothing is changed then);
    a refusal is a result with ``failures``, not an exception.
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise PublishError('tolerance must be a finite number >= 0')
    if keep < 0:
        raise PublishError('keep must be >= 0')
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise PublishError('threshold must be in [0, 1], as '
                           '[rl_weigher] confidence_threshold')
    target = pv.normalise(target)
    try:
        state = pv.inspect(target)
    except pv.VersionError as e:
        raise PublishError(str(e)) from None
    if state.resolved and \
            os.path.realpath(candidate) == os.path.realpath(state.resolved):
        raise PublishError(f'the candidate {candidate} is the policy '
                           'already at the target')
    try:
        cand_copy, cand_fp = pv.snapshot(candidate)
    except artifact_mod.ArtifactError as e:
        raise PublishError(f'candidate refused, it is not a valid policy '
                           f'artifact: {e}') from None
    temps = [os.path.dirname(cand_copy)]
    try:
        cand_manifest = artifact_mod.read_manifest(cand_copy)
        chosen = objective or cand_manifest.get('objective')
        try:
            obj = objectives_mod.load_objective(chosen,
                                                objective_options or {})
        except objectives_mod.ObjectiveError as e:
            source = ('--objective' if objective else
                      "the candidate manifest's objective")
            raise PublishError(f'{source} {chosen!r}: {e}; choose one with '
                               '--objective') from None
        checked = resolve_terms(terms, obj)

        notes: list[str] = []
        cur_copy, cur_version = None, None
        if state.kind == 'dangling':
            notes.append(f'{target} is a dangling symlink ({state.link}): '
                         'no current policy, compared with nova-default only')
        elif state.kind in ('link', 'dir'):
            try:
                cur_copy, _ = pv.snapshot(state.resolved)
            except artifact_mod.ArtifactError as e:
                notes.append(f'the current policy at {target} is invalid '
                             f'({e}); compared with nova-default only')
            else:
                temps.append(os.path.dirname(cur_copy))
                cur_version = artifact_mod.read_manifest(cur_copy)[
                    'policy_version']
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
        cases = [_evaluate(dataclasses.replace(
            s, objective=obj.name,
            objective_options=tuple(obj.options.items())),
            columns, jobs, show_progress) for s in setups]

        result = PublishResult(
            target=target, candidate=os.path.abspath(candidate),
            candidate_version=cand_manifest['policy_version'],
            objective=obj.name, terms=checked, tolerance=tolerance,
            current_version=cur_version, cases=cases,
            failures=_judge(cases, checked, tolerance), notes=notes,
            dry_run=dry_run)
        if result.accepted and not dry_run:
            _install(result, state, cand_copy, cand_fp, keep)
        return result
    finally:
        for path in temps:
            shutil.rmtree(path, ignore_errors=True)


def _evaluate(setup: Setup, columns: dict[str, str], jobs: int,
              show_progress: bool) -> Case:
    try:
        results = evaluation.evaluate(setup, list(columns.values()),
                                      jobs=max(1, min(jobs, len(columns))),
                                      show_progress=show_progress)
    except (policies_mod.PolicyError, traces.TraceError,
            objectives_mod.ObjectiveError, ValueError, OSError) as e:
        raise PublishError(f'evaluation failed: {e}') from None
    name = setup.name or os.path.basename(setup.trace_path)
    return Case(label=f'{name} seed {setup.seed}', scenario=setup.name,
                seed=setup.seed,
                metrics={col: r.metrics for col, r in zip(columns, results)})


def _install(result: PublishResult, state: pv.TargetState, copy: str,
             fp: str, keep: int) -> None:
    record = {'evaluation': {k: v for k, v in result.summary().items()
                             if k in ('objective', 'terms', 'tolerance',
                                      'candidate', 'current_version',
                                      'notes', 'cases')}}
    try:
        outcome = pv.install(result.target, copy, fp,
                             result.candidate_version, state, keep, record)
        served = artifact_mod.load_artifact(result.target)
    except (pv.VersionError, artifact_mod.ArtifactError, OSError) as e:
        raise PublishError(f'install failed: {e}') from None
    if served.version != result.candidate_version:   # pragma: no cover
        raise PublishError(f'install failed: {result.target} serves '
                           f'{served.version}, not the candidate')
    result.installed = True
    result.installed_as = os.path.join(pv.versions_dir(result.target),
                                       outcome.name)
    result.previous = outcome.previous
    result.pruned = outcome.pruned


def rollback(target: str) -> pv.RollbackOutcome:
    """Point ``target`` back at the previous published version."""
    try:
        return pv.rollback(target)
    except (pv.VersionError, OSError) as e:
        raise PublishError(str(e)) from None
