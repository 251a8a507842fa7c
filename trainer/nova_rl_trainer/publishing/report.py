"""The evaluation report: a table and plots comparing policies on one setup.

``write_report(results, directory)`` writes

* ``report.md``: the metrics table (markdown) and the plots;
* ``metrics.csv``: the same table, machine-readable;
* ``active_hosts.png``: active hosts over time, each policy against the
  fluid lower bound;
* ``cpu_util.png``: the distribution of active hosts' CPU utilisation
  (demand / physical cores; right of 1.0 is overload);
* ``overload.png``: overloaded hosts over time.

Every file is replaced whole (:func:`nova_rl_weigher.fileio.atomic_write`):
a reader of the previous report, or a run that fails half-way, sees the
old file or the new one, never part of one.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Sequence

import numpy as np

from nova_rl_trainer.figures import save_figure
from nova_rl_trainer.simulation import metrics as metrics_mod
from nova_rl_trainer.simulation.metrics import RunResult
from nova_rl_weigher import fileio

#: Table columns: (metric key, header, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ('policy', 'policy', '{}'),
    ('decisions', 'decisions', '{:d}'),
    ('placed', 'placed', '{:d}'),
    ('rejected', 'rejected', '{:d}'),
    ('active_host_hours', 'active host-h', '{:,.0f}'),
    ('lb_host_hours', 'lower bound host-h', '{:,.0f}'),
    ('active_over_lb', 'active / LB', '{:.3f}'),
    ('energy_kwh', 'energy kWh', '{:,.0f}'),
    ('overload_host_hours', 'overload host-h', '{:,.1f}'),
    ('hot_host_hours', 'hot host-h', '{:,.0f}'),
    ('headroom_deficit_host_hours', 'headroom deficit host-h', '{:,.0f}'),
    ('p95_host_cpu_util', 'p95 host CPU', '{:.3f}'),
    ('empty_host_fraction', 'empty hosts', '{:.3f}'),
    ('peak_allocated_fraction', 'peak allocated', '{:.3f}'),
    ('objective_value', 'objective', '{:,.1f}'),
)


def _row(m: dict) -> dict:
    m = dict(m)
    lb = m.get('lb_host_hours') or 0.0
    m['active_over_lb'] = m['active_host_hours'] / lb if lb else float('nan')
    return m


def _fmt(fmt: str, value) -> str:
    if value is None:
        return ''
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(results: Sequence[RunResult] | Sequence[dict]) -> str:
    rows = [_row(r.metrics if isinstance(r, RunResult) else r)
            for r in results]
    lines = ['| ' + ' | '.join(h for _, h, _ in COLUMNS) + ' |',
             '| ' + ' | '.join('---' if k == 'policy' else '---:'
                               for k, _, _ in COLUMNS) + ' |']
    for m in rows:
        lines.append('| ' + ' | '.join(_fmt(f, m.get(k))
                                       for k, _, f in COLUMNS) + ' |')
    return '\n'.join(lines) + '\n'


def metrics_csv(results: Sequence[RunResult]) -> str:
    """The text of ``metrics.csv``: a header of metric keys, then one row
    per policy (the csv module's default dialect, CRLF line ends)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([k for k, _, _ in COLUMNS])
    for r in results:
        m = _row(r.metrics)
        w.writerow([m.get(k) for k, _, _ in COLUMNS])
    return buf.getvalue()


def write_report(results: Sequence[RunResult], directory: str,
                 title: str = 'Evaluation') -> list[str]:
    """Write the report files into ``directory``; return their paths."""
    os.makedirs(directory, exist_ok=True)
    written = []
    csv_path = os.path.join(directory, 'metrics.csv')
    # Replaced whole: a script reading the last evaluation's metrics.csv
    # while a new one runs sees the old table or the new, never a part.
    fileio.atomic_write(csv_path, metrics_csv(results))
    written.append(csv_path)
    plots = _plots(results, directory)
    written.extend(plots)
    first = results[0].metrics if results else {}
    md = [f'# {title}', '',
          f"Trace `{first.get('trace', '')}`, {first.get('hosts', '')} "
          f"hosts, seed {first.get('seed', '')}, objective "
          f"`{first.get('objective', '')}` "
          f"({_weights(first.get('objective_weights') or {})}).", '',
          markdown_table(results)]
    for path in plots:
        name = os.path.basename(path)
        md += [f'![{name}]({name})', '']
    md_path = os.path.join(directory, 'report.md')
    fileio.atomic_write(md_path, '\n'.join(md))
    written.insert(0, md_path)
    return written


def _weights(weights: dict) -> str:
    return ', '.join(f'{k} x {v:g}' for k, v in weights.items())


def _plots(results: Sequence[RunResult], directory: str) -> list[str]:
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    out = []
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']

    fig, ax = plt.subplots(figsize=(10, 5))
    lb_drawn = None
    for i, r in enumerate(results):
        s = r.series
        hours = s['time_s'] / 3600.0
        ax.plot(hours, s['active_hosts'], label=r.metrics['policy'],
                color=colours[i % len(colours)], linewidth=1)
        lb = s['lb_hosts']
        if lb_drawn is None or not np.array_equal(lb_drawn, lb):
            ax.plot(hours, lb, color='black', linestyle='--', linewidth=1,
                    label='lower bound' if lb_drawn is None else
                    f"lower bound ({r.metrics['policy']})")
            lb_drawn = lb
    ax.set_xlabel('hours')
    ax.set_ylabel('active hosts')
    ax.set_title('Active hosts over time against the fluid lower bound')
    ax.legend(fontsize='small')
    ax.grid(alpha=0.3)
    out.append(_save(fig, directory, 'active_hosts.png'))

    fig, ax = plt.subplots(figsize=(10, 5))
    edges = metrics_mod.UTIL_BINS
    centres = (edges[:-1] + edges[1:]) / 2
    for i, r in enumerate(results):
        hist = np.asarray(r.util_hist, dtype=np.float64)
        total = hist.sum()
        if total > 0:
            ax.plot(centres, np.cumsum(hist) / total,
                    label=r.metrics['policy'],
                    color=colours[i % len(colours)], linewidth=1.2)
    ax.axvline(1.0, color='red', linestyle=':', linewidth=1,
               label='physical cores')
    ax.set_xlabel('host CPU demand / physical cores')
    ax.set_ylabel('share of active host samples (CDF)')
    ax.set_title('Host CPU utilisation distribution')
    ax.set_xlim(0, 2)
    ax.legend(fontsize='small')
    ax.grid(alpha=0.3)
    out.append(_save(fig, directory, 'cpu_util.png'))

    fig, ax = plt.subplots(figsize=(10, 5))
    for i, r in enumerate(results):
        s = r.series
        ax.plot(s['time_s'] / 3600.0, s['overloaded_hosts'],
                label=r.metrics['policy'], color=colours[i % len(colours)],
                linewidth=1)
    ax.set_xlabel('hours')
    ax.set_ylabel('overloaded hosts')
    ax.set_title('Hosts whose CPU demand exceeds their cores')
    ax.legend(fontsize='small')
    ax.grid(alpha=0.3)
    out.append(_save(fig, directory, 'overload.png'))
    return out


def _save(fig, directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    fig.tight_layout()
    save_figure(fig, path)
    return path
