"""Off-policy estimates: what a new policy would have cost on the decisions
the weigher logged, from their measured outcomes.

The input is ``outcomes`` rows (:mod:`nova_rl_trainer.telemetry.outcomes`):
per decision, the candidates with their logged features, the one that got
the instance (``chosen_index``) and the objective terms that followed on
it. A decision's cost is the objective's value of those terms.

* **Importance sampling** when the log carries the behaviour's propensity
  of each chosen candidate (``candidates[i]['propensity']``): the new
  policy is a deterministic argmax, so a decision counts with weight
  ``1 / propensity`` when the new policy picks the logged host and 0
  otherwise; self-normalised (weights summing to 1), which keeps the
  estimate in the range of the costs.
* **Direct method** otherwise (the weigher's log: Nova's choice behind a
  gate is deterministic, so there is no propensity to use): a ridge
  regression of the cost on the chosen host's logged features, evaluated
  on the host the new policy picks among the same candidates.

Both come with a bootstrap interval over decisions (the regression refit
in each resample), next to the logged policy's own mean cost.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from nova_rl_trainer.simulation import objectives

#: Fewer usable decisions than this: no estimate (an interval from a
#: handful of decisions says nothing).
MIN_DECISIONS = 10
RIDGE = 1.0

#: ``score(x)``: the policy's scores of candidates ``x`` (N x F), one row
#: per ensemble member (K x N) or one per candidate (N).
ScoreFn = Callable[[np.ndarray], np.ndarray]


def decision_cost(row: Mapping, objective: objectives.Objective) -> float:
    """The delayed cost of a joined decision under ``objective``."""
    terms = row['terms']
    return objective.value({t: float(terms.get(t, 0.0))
                            for t in objectives.TERMS})


def _matrix(candidates: Sequence[Mapping]) -> np.ndarray:
    return np.array([[np.nan if v is None else float(v)
                      for v in c['features']] for c in candidates],
                    dtype=np.float64)


def _choice(score: ScoreFn, x: np.ndarray) -> int | None:
    s = np.asarray(score(np.nan_to_num(x).astype(np.float32)),
                   dtype=np.float64)
    if s.ndim == 2:
        s = s.mean(axis=0)
    if s.size == 0 or not np.isfinite(s).any():
        return None
    return int(np.nanargmax(np.where(np.isfinite(s), s, np.nan)))


def _propensity(row: Mapping) -> float | None:
    p = row['candidates'][row['chosen_index']].get('propensity')
    if isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0:
        return float(p)
    return None


class _Ridge:
    """Cost from standardised features, NaN features at their mean."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.mean = np.nanmean(x, axis=0)
        self.mean = np.where(np.isfinite(self.mean), self.mean, 0.0)
        z = self._z(x, fit=True)
        a = z.T @ z + RIDGE * np.eye(z.shape[1])
        self.w = np.linalg.solve(a, z.T @ (y - y.mean()))
        self.b = y.mean()

    def _z(self, x: np.ndarray, fit: bool = False) -> np.ndarray:
        x = np.where(np.isnan(x), self.mean, x)
        if fit:
            std = x.std(axis=0)
            self.std = np.where(std > 1e-12, std, 1.0)
        return (x - self.mean) / self.std

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._z(x) @ self.w + self.b


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)),
            float(np.percentile(values, 97.5))]


def estimate(rows: Sequence[Mapping], score: ScoreFn,
             objective: objectives.Objective, *, bootstrap: int = 200,
             seed: int = 0) -> dict:
    """The new policy's mean cost per decision on the logged decisions, the
    logged policy's, and 95% bootstrap intervals."""
    usable = [r for r in rows if r.get('complete')
              and r.get('chosen_index') is not None]
    report: dict = {'objective': objective.name, 'decisions': len(rows),
                    'usable': len(usable)}
    if len(usable) < MIN_DECISIONS:
        report.update(method='none', reason=(
            f'{len(usable)} decisions with a complete horizon and the '
            f'chosen host among the candidates; at least {MIN_DECISIONS} '
            'needed'))
        return report
    cost = np.array([decision_cost(r, objective) for r in usable])
    xs = [_matrix(r['candidates']) for r in usable]
    logged = np.array([r['chosen_index'] for r in usable])
    new = np.array([(_choice(score, x) if x.size else None) for x in xs],
                   dtype=object)
    new = np.array([lg if n is None else n for n, lg in zip(new, logged)])
    rng = np.random.default_rng(seed)
    samples = [rng.integers(len(usable), size=len(usable))
               for _ in range(bootstrap)]
    props = [_propensity(r) for r in usable]
    if all(p is not None for p in props):
        w = (new == logged) / np.array(props)
        method = 'importance sampling (self-normalised)'

        def value(idx: np.ndarray) -> float:
            total = w[idx].sum()
            return float((w[idx] * cost[idx]).sum() / total) if total > 0 \
                else float('nan')
    else:
        x_logged = np.stack([x[i] for x, i in zip(xs, logged)])
        x_new = np.stack([x[i] for x, i in zip(xs, new)])
        method = ('direct method: ridge regression of the cost on the '
                  "chosen host's logged features")

        def value(idx: np.ndarray) -> float:
            model = _Ridge(x_logged[idx], cost[idx])
            return float(model.predict(x_new[idx]).mean())
    everything = np.arange(len(usable))
    point = value(everything)
    boot = np.array([value(i) for i in samples])
    boot_logged = np.array([cost[i].mean() for i in samples])
    finite = np.isfinite(boot)
    report.update(
        method=method,
        estimate=point,
        interval=_interval(boot[finite]) if finite.any() else None,
        logged=float(cost.mean()),
        logged_interval=_interval(boot_logged),
        difference_interval=_interval(boot[finite] - boot_logged[finite])
        if finite.any() else None,
        same_choice=float((new == logged).mean()),
        bootstrap=bootstrap)
    return report
