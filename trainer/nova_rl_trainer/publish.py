"""Publishing a trained policy to the path the weigher serves, behind a gate.

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

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
from typing import Any, Sequence

from nova_rl_weigher import artifact as artifact_mod

from nova_rl_trainer import objectives as objectives_mod
from nova_rl_trainer import policies as policies_mod
from nova_rl_trainer import policy_versions as pv
from nova_rl_trainer import runner
from nova_rl_trainer import scenarios as scenarios_mod
from nova_rl_trainer import traces

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


def scenario_setup(name: str, seed: int = 0) -> runner.Setup:
    """The held-out setup of a named scenario (objective set by publish)."""
    sc = scenarios_mod.get_scenario(name)
    return runner.Setup(trace_path=sc.trace_path, trace_format=sc.trace_format,
                        cluster=sc.cluster, window=sc.window, sample=sc.sample,
                        sample_seed=sc.sample_seed, seed=seed, name=sc.name)


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
            setups: Sequence[runner.Setup] | None = None,
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
                setups = [scenario_setup(name, seed) for name in scenarios
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


def _evaluate(setup: runner.Setup, columns: dict[str, str], jobs: int,
              show_progress: bool) -> Case:
    try:
        results = runner.evaluate(setup, list(columns.values()),
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


# -- command line -------------------------------------------------------------

def register(subparsers) -> None:
    """Add ``publish`` and ``rollback`` to the trainer CLI's subparsers."""
    p = subparsers.add_parser(
        'publish', help='install a policy at the weigher\'s path if it '
                        'beats the current one and nova-default',
        description='Evaluate the candidate, the policy at the target and '
                    'nova-default on held-out scenarios (gated, as in Nova) '
                    'and install the candidate atomically only if no '
                    'objective term is worse and the objective is better. '
                    'Exit 0 installed, 3 refused, 2 error.')
    p.add_argument('--candidate', required=True, metavar='DIR',
                   help='the policy artifact to publish')
    p.add_argument('--target', required=True, metavar='DIR',
                   help="the path in [rl_weigher] policy_path; becomes a "
                        'symlink into DIR.versions/')
    g = p.add_argument_group('gate')
    g.add_argument('--objective', metavar='NAME',
                   help="the objective to improve (default: the candidate "
                        "manifest's)")
    g.add_argument('--objective-option', action='append', default=[],
                   metavar='KEY=NUMBER',
                   help='term weight (or, for mix, objective weight)')
    g.add_argument('--terms', default='objective',
                   metavar='objective|all|T,...',
                   help="terms that must not get worse: 'objective' (the "
                        "chosen objective's terms, default), 'all' (" +
                        ', '.join(objectives_mod.TERMS) + ') or a list')
    g.add_argument('--tolerance', type=float, default=0.0, metavar='REL',
                   help='relative slack for "not worse", e.g. 0.01 '
                        '(default 0)')
    g.add_argument('--threshold', type=float, metavar='T',
                   help="gate confidence threshold as in nova.conf "
                        "(default: the manifest's calibrated one, else 0.8)")
    g.add_argument('--multiplier', type=float, metavar='M',
                   help='weight_multiplier as in nova.conf (default 10)')
    g = p.add_argument_group('held-out evaluation')
    g.add_argument('--scenario', action='append', metavar='NAME',
                   help='repeatable (default: ' + ', '.join(DEFAULT_SCENARIOS)
                        + ' unless --trace is given); presets: '
                        + ', '.join(scenarios_mod.SCENARIOS))
    g.add_argument('--seed', action='append', type=int, metavar='S',
                   help='repeatable (default 0)')
    g.add_argument('--jobs', type=int, default=0,
                   help='parallel simulations (default: one per policy, at '
                        'most the number of CPUs)')
    _add_trace_options(p)
    g = p.add_argument_group('install')
    g.add_argument('--keep', type=int, default=DEFAULT_KEEP, metavar='N',
                   help='previous versions kept for rollback (default '
                        '%(default)s)')
    g.add_argument('--dry-run', action='store_true',
                   help='evaluate and decide, install nothing')
    p.add_argument('--json', metavar='OUT',
                   help='also write the decision and the metrics here')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=cmd_publish)

    p = subparsers.add_parser(
        'rollback', help='restore the previously published policy')
    p.add_argument('--target', required=True, metavar='DIR')
    p.set_defaults(func=cmd_rollback)


def _add_trace_options(p: argparse.ArgumentParser) -> None:
    # The simulate/evaluate commands' trace, cluster and measurement
    # options, so a held-out trace is described the same way everywhere.
    from nova_rl_trainer import cli
    from nova_rl_trainer import nova_weighers
    from nova_rl_trainer import simulator
    g = p.add_argument_group('other held-out trace (optional)')
    g.add_argument('--trace', metavar='PATH')
    g.add_argument('--trace-format', choices=traces.FORMATS)
    g.add_argument('--window', type=cli._window, metavar='START_S:END_S')
    g.add_argument('--sample', type=float, metavar='FRACTION')
    for name, typ, text in cli._CLUSTER_FIELDS:
        g.add_argument('--' + name.replace('_', '-'), type=typ, help=text)
    d = simulator.SimConfig()
    g.add_argument('--usage-interval-s', type=float,
                   default=d.usage_interval_s)
    g.add_argument('--usage-window-s', type=float, default=d.usage_window_s)
    g.add_argument('--hot-threshold', type=float, default=d.hot_threshold)
    g.add_argument('--headroom-reserve', type=float,
                   default=d.headroom_reserve)
    g.add_argument('--no-usage-snapshot', action='store_true')
    g.add_argument('--nova-weighers', default=d.nova_weighers,
                   choices=tuple(nova_weighers.CONFIGURATIONS),
                   help="the Nova weigher configuration of the cluster the "
                        "policy is for (default %(default)s)")


def _setups_from_args(args: argparse.Namespace) -> list[runner.Setup]:
    from nova_rl_trainer import cli
    names = args.scenario or ([] if args.trace else list(DEFAULT_SCENARIOS))
    sources = [('scenario', n) for n in names]
    if args.trace:
        sources.append(('trace', args.trace))
    setups = []
    for seed in args.seed or [0]:
        for kind, value in sources:
            ns = argparse.Namespace(**vars(args))
            ns.scenario, ns.trace = ((value, None) if kind == 'scenario'
                                     else (None, value))
            # publish sets the objective; 'packing' only satisfies the
            # validation in setup_from_args.
            ns.objective, ns.objective_option, ns.seed = 'packing', [], seed
            try:
                setups.append(cli.setup_from_args(ns))
            except cli.CliError as e:
                raise PublishError(str(e)) from None
    return setups


def cmd_publish(args: argparse.Namespace) -> int:
    try:
        options = objectives_mod.parse_options(args.objective_option)
        setups = _setups_from_args(args)
        jobs = args.jobs or min(3, os.cpu_count() or 1)
        result = publish(
            args.candidate, args.target, objective=args.objective,
            objective_options=options, setups=setups,
            tolerance=args.tolerance, terms=args.terms, keep=args.keep,
            threshold=args.threshold, multiplier=args.multiplier,
            jobs=jobs, dry_run=args.dry_run, show_progress=not args.quiet)
    except (PublishError, objectives_mod.ObjectiveError) as e:
        print(f'nova-rl-trainer publish: error: {e}; nothing was changed',
              file=sys.stderr)
        return EXIT_ERROR
    print(result.table())
    for note in result.notes:
        print(f'note: {note}')
    if args.json:
        _write_json(args.json, result.summary())
    if not result.accepted:
        print(f'REFUSED: {result.candidate_version} was not installed; '
              f'{result.target} is unchanged. Failed:')
        for reason in result.reasons():
            print(f'  - {reason}')
    elif result.dry_run:
        print(f'ACCEPTED (dry run): {result.candidate_version} would be '
              f'installed at {result.target}')
    else:
        print(f'INSTALLED: {result.target} -> {result.installed_as}')
        if result.previous:
            print(f'previous version: {result.previous} (nova-rl-trainer '
                  f'rollback --target {result.target})')
        if result.pruned:
            print('pruned old versions: ' + ', '.join(result.pruned))
    return result.exit_code


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        outcome = rollback(args.target)
    except PublishError as e:
        print(f'nova-rl-trainer rollback: error: {e}; nothing was changed',
              file=sys.stderr)
        return EXIT_ERROR
    print(f'ROLLED BACK: {pv.normalise(args.target)} -> {outcome.restored} '
          f'(policy {outcome.policy_version}); {outcome.replaced} retired')
    return EXIT_OK


def _write_json(path: str, doc: dict[str, Any]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(doc, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nova_rl_trainer.publish publish|rollback ...``, the same
    commands before (or without) the trainer CLI's wiring."""
    parser = argparse.ArgumentParser(prog='nova-rl-trainer')
    register(parser.add_subparsers(dest='command', required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
