"""What ``publish`` decided, and how it is shown: the exit codes, the
failures, the table of terms and the JSON record kept in the history.

:mod:`judge` builds a :class:`PublishResult`; the command line prints it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from nova_rl_trainer.simulation import objectives as objectives_mod
from nova_rl_trainer.simulation import paired

#: Exit codes of ``publish`` and ``rollback``.
EXIT_OK = 0          # installed (or would be, with --dry-run) / rolled back
EXIT_ERROR = 2       # error: the target serves what it served before
EXIT_REFUSED = 3     # refused by the gate: the target is unchanged
EXIT_SWITCHED = 4    # error after the switch could not be undone: the
#                      target changed, the message says what it serves

CANDIDATE = 'candidate'
CURRENT = 'current'
BASELINE = 'nova-default'


@dataclasses.dataclass
class Case:
    """One held-out evaluation: a setup and each column's metrics."""

    label: str
    scenario: str | None
    seed: int
    metrics: dict[str, dict[str, Any]]     # column -> run metrics


@dataclasses.dataclass
class Judgement:
    """One term against one reference, paired over the cases."""

    reference: str          # CURRENT or BASELINE
    term: str               # a term, or 'objective' (must improve)
    bound: paired.Bound     # of candidate - reference, share of reference
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {'reference': self.reference, 'term': self.term,
                'rule': ('mean < 0' if self.term == 'objective'
                         else 'upper_95 <= tolerance' if not self.bound.floor
                         else 'upper_95 <= tolerance or upper_95_abs <= '
                              'floor'),
                **{k: _json_number(v)
                   for k, v in self.bound.as_dict().items()},
                'passed': self.passed}


@dataclasses.dataclass
class Failure:
    reference: str          # CURRENT or BASELINE
    term: str               # a term, or 'objective'
    case: str | None        # None: paired over all the cases
    candidate: float        # mean over the cases
    other: float
    bound: paired.Bound | None = None

    def message(self, objective: str, tolerance: float) -> str:
        where = '' if self.case is None else f' on {self.case}'
        b = self.bound
        stats = '' if b is None else (
            f'mean difference {b.mean:+.2%} of {self.reference}\'s, '
            f'one-sided 95% upper bound {b.upper:+.2%}, {b.n} windows')
        if self.term == 'objective':
            return (f'objective {objective} is not better than '
                    f'{self.reference}{where}: candidate mean '
                    f'{self.candidate:.6g} vs {self.other:.6g} ({stats})')
        if b is not None and b.floor:
            stats += (f' > tolerance {tolerance:.1%}; absolute bound '
                      f'{b.upper_abs:+.4g} per window > floor {b.floor:.4g}')
        else:
            stats += f' > tolerance {tolerance:.1%}'
        return (f'{self.term} is worse than {self.reference}{where}: '
                f'candidate mean {self.candidate:.6g} vs {self.other:.6g} '
                f'({stats})')


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
    # Installed, but some tidying after the switch failed (an old version
    # not removed, a stray temporary symlink): what to clean by hand.
    warnings: list[str] = dataclasses.field(default_factory=list)
    # Refused before any evaluation (e.g. the candidate's manifest says it
    # must never act): the reasons; ``cases`` is then empty.
    refusals: list[str] = dataclasses.field(default_factory=list)
    # Every term against every reference, paired over the cases.
    judgements: list[Judgement] = dataclasses.field(default_factory=list)
    # The sampled terms' floor, in hosts x usage samples per case
    # (objectives.floor); 0: their relative bound alone.
    floor_host_samples: float = 0.0

    @property
    def accepted(self) -> bool:
        return not self.failures and not self.refusals

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.accepted else EXIT_REFUSED

    @property
    def columns(self) -> list[str]:
        if not self.cases:
            return []
        return [c for c in (CANDIDATE, CURRENT, BASELINE)
                if c in self.cases[0].metrics]

    def reasons(self) -> list[str]:
        return list(self.refusals) + [
            f.message(self.objective, self.tolerance) for f in self.failures]

    def table(self) -> str:
        """Each column's terms summed over the cases, then every term's
        paired verdict: mean difference, bound, n, pass/fail."""
        if not self.cases:
            return (f'{self.candidate_version}: not evaluated '
                    '(refused before simulation)\n')
        cols = self.columns
        width = len('headroom_deficit_host_hours') + 2

        def row(name: str, cells: list[str], check: str = '') -> str:
            return (f'{name:<{width}}' + ''.join(f'{c:>15}' for c in cells)
                    + (f'   {check}' if check else ''))

        def total(col: str, key: str) -> float | None:
            values = [c.metrics[col].get(key) for c in self.cases]
            return None if None in values else float(sum(values))

        first, last = self.cases[0].label, self.cases[-1].label
        lines = [f'{len(self.cases)} held-out cases ({first} ... {last}): '
                 f'objective {self.objective}, policies gated as in Nova, '
                 'totals over the cases',
                 row('term', cols, 'checked')]
        for term in objectives_mod.TERMS:
            lines.append(row(term, [_fmt(total(c, term), term) for c in cols],
                             'yes' if term in self.terms else ''))
        lines.append(row(f'objective {self.objective}',
                         [_fmt(total(c, 'objective_value'), '')
                          for c in cols], 'must improve'))
        applied = [_fmt(sum(c.metrics[col].get('applied_fraction') or 0.0
                            for c in self.cases) / len(self.cases),
                        'applied_fraction') for col in cols]
        lines.append(row('applied (gated, mean)', applied))
        lines.append('')
        lines.append('paired over the cases, candidate - reference as a '
                     "share of the reference's mean; a term passes when the "
                     'one-sided 95% upper bound (Student t) is <= tolerance '
                     f'{self.tolerance:.1%}' + (
                         '' if not self.floor_host_samples else
                         ' (or, for '
                         + ' and '.join(objectives_mod.SAMPLED_TERMS)
                         + ', when the bound of the absolute difference '
                         f'is <= {self.floor_host_samples:g} host x usage '
                         'sample per case)') + ', the objective when the '
                     'mean is < 0')
        lines.append(f'{"reference":<14}{"term":<{width}}{"mean diff":>11}'
                     f'{"upper 95%":>11}{"n":>5}   result')
        for j in self.judgements:
            floor = ''
            if j.passed and j.bound.within_floor() and \
                    j.bound.upper > self.tolerance + paired.EPS:
                floor = (f' (within the floor: {j.bound.upper_abs:+.3g} <= '
                         f'{j.bound.floor:.3g} per case)')
            lines.append(f'{j.reference:<14}{j.term:<{width}}'
                         f'{j.bound.mean:>+11.2%}{j.bound.upper:>+11.2%}'
                         f'{j.bound.n:>5}   {"pass" if j.passed else "FAIL"}'
                         f'{floor}')
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
            'floor_host_samples': self.floor_host_samples,
            'accepted': self.accepted,
            'installed': self.installed,
            'installed_as': self.installed_as,
            'previous': self.previous,
            'reasons': self.reasons(),
            'notes': list(self.notes),
            'warnings': list(self.warnings),
            'judgements': [j.as_dict() for j in self.judgements],
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
