"""What ``publish`` decided, and how it is shown: the exit codes, the
failures, the table of terms and the JSON record kept in the history.

:mod:`judge` builds a :class:`PublishResult`; the command line prints it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from nova_rl_trainer.simulation import objectives as objectives_mod

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
    # Installed, but some tidying after the switch failed (an old version
    # not removed, a stray temporary symlink): what to clean by hand.
    warnings: list[str] = dataclasses.field(default_factory=list)
    # Refused before any evaluation (e.g. the candidate's manifest says it
    # must never act): the reasons; ``cases`` is then empty.
    refusals: list[str] = dataclasses.field(default_factory=list)

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
        """The terms for each column and case, with what failed."""
        if not self.cases:
            return (f'{self.candidate_version}: not evaluated '
                    '(refused before simulation)\n')
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
            'warnings': list(self.warnings),
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
