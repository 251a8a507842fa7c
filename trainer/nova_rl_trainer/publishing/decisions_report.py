"""The decision log report: markdown and plots from a decisions summary.

``write_report(summary, directory)`` writes, from the dict
:func:`decisions_summary.summarise` returns:

* ``report.md``: per policy version the calls, acting share, agreement with
  Nova's choice, confidence and latency; the reasons for abstaining; the
  features that set the policy's choice apart from Nova's; the plots;
* ``acting_share.png``: share of calls acted on (and that the gate would
  act on) per time bucket, per policy version;
* ``abstain_reasons.png``: the gate's reasons to abstain;
* ``confidence.png``: the confidence distribution per policy version, and
  the agreement with Nova's choice per confidence bin;
* ``features.png``: the features that differ most between the policy's
  host and Nova's when they disagree.

Plots are saved like the evaluation report's (:mod:`report`).
"""

from __future__ import annotations

import datetime
import os
from typing import Sequence

import numpy as np

from nova_rl_trainer.publishing.report import _save
from nova_rl_weigher import fileio
from nova_rl_weigher import gate

#: Features listed in the report's table and plot.
TOP_FEATURES = 10


def _table(headers: Sequence[str], rows: Sequence[Sequence], left: int = 1
           ) -> list[str]:
    """A markdown table; the first ``left`` columns aligned left."""
    lines = ['| ' + ' | '.join(headers) + ' |',
             '| ' + ' | '.join('---' if i < left else '---:'
                               for i in range(len(headers))) + ' |']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return lines + ['']


def _pct(value: float | None) -> str:
    return '' if value is None else f'{value:.1%}'


def _num(value: float | None, fmt: str = '{:.3f}') -> str:
    return '' if value is None else fmt.format(value)


def _utc(t: float | None) -> str:
    if t is None:
        return '-'
    return datetime.datetime.fromtimestamp(
        t, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def _versions_table(summary: dict) -> list[str]:
    rows = []
    groups = list(summary['policies'].items())
    if len(groups) != 1:
        groups.append(('all', summary['overall']))
    for version, g in groups:
        a, c, lat = g['agreement'], g['confidence'], g['latency_ms']
        rows.append([
            f'`{version}`', f"{g['calls']:,}",
            ', '.join(f'{m} {n:,}' for m, n in sorted(g['modes'].items())),
            _pct(g['applied_share']), _pct(g['would_act_share']),
            _pct(a['share']), _pct(a['share_when_would_act']),
            _num(c['p50']), _num(lat['p95'], '{:.2f}')])
    return _table(['policy version', 'calls', 'modes', 'acted',
                   'gate would act', 'agrees with Nova',
                   'agrees when acting', 'median confidence',
                   'p95 latency ms'], rows, left=3)


def _reasons_table(summary: dict) -> list[str]:
    versions = list(summary['policies'])
    reasons = [r for r in summary['overall']['verdicts']]
    rows = []
    for reason in reasons:
        row = [f'`{reason}`']
        for g in [summary['overall']] + [summary['policies'][v]
                                         for v in versions]:
            n = g['verdicts'].get(reason, 0)
            row.append(f"{n:,} ({_pct(n / g['calls'])})" if g['calls']
                       else '')
        rows.append(row)
    return _table(['gate verdict', 'all'] + [f'`{v}`' for v in versions],
                  rows)


def _features_table(group: dict) -> list[str]:
    rows = [[f"`{f['feature']}`", f"{f['disagreements']:,}",
             _num(f['mean_diff'], '{:+.3f}'), _num(f['mean_abs_diff']),
             f"{f['why_count']:,}", _num(f['why_mean_abs_effect'])]
            for f in group['features'][:TOP_FEATURES]]
    # No '|' in a cell: it would end the cell.
    return _table(['feature', 'disagreements', 'policy - Nova (mean)',
                   'abs(policy - Nova) (mean)', 'in "why"',
                   'abs(effect) in "why" (mean)'], rows)


def markdown(summary: dict, plots: Sequence[str] = ()) -> str:
    """The report's text; ``plots`` are the image file names to embed."""
    src = summary['source']
    overall = summary['overall']
    skipped = src.get('malformed', 0) + src.get('truncated', 0)
    md = ['# Decision log report', '',
          f"`{src.get('directory', '')}`: {overall['calls']:,} weighing "
          f"calls from {_utc(summary['first_time'])} to "
          f"{_utc(summary['last_time'])}, in {src.get('files', 0)} files "
          f'({skipped} lines skipped, {len(src.get("refused", []))} files '
          'not read).', '',
          '"Acted": the weigher changed the weights (gated mode, confident, '
          'inside the canary). "Gate would act": the gate\'s verdict was '
          '`applied`, which in shadow mode is what gated mode would have '
          "done. Nova's choice is the host with the highest Nova weight "
          "before this weigher; the policy's the one with the highest "
          'score.', '',
          '## By policy version', '']
    md += _versions_table(summary)
    for refused in src.get('refused', []):
        md.append(f"- not read: {refused['reason']}")
    md += ['## Acting share over time', '',
           f"Per bucket of {summary['bucket_s']:,} s.", '']
    md += _embed(plots, 'acting_share.png')
    md += ['## Reasons for abstaining', '',
           "The gate's verdict per call (what gated mode does); "
           f'`{gate.APPLIED}` is acting.', '']
    md += _reasons_table(summary)
    md += _embed(plots, 'abstain_reasons.png')
    md += ["## Agreement with Nova's choice and confidence", '']
    a = overall['agreement']
    md += [f"Compared {a['compared']:,} calls (both choices known): the "
           f"policy picked Nova's host in {_pct(a['share']) or '-'}; in "
           f"{_pct(a['share_when_would_act']) or '-'} of the "
           f"{a['compared_when_would_act']:,} where the gate would act.", '']
    md += _embed(plots, 'confidence.png')
    md += ["## Features that set the policy's choice apart", '',
           "Over the calls where the policy's host is not Nova's: the "
           'feature of the policy\'s host minus that of Nova\'s, and how '
           'often the feature is among those the log names as moving a '
           'top host\'s score.', '']
    for version, g in summary['policies'].items():
        if g['features']:
            md += [f'### `{version}`', ''] + _features_table(g)
    md += _embed(plots, 'features.png')
    return '\n'.join(md)


def _embed(plots: Sequence[str], name: str) -> list[str]:
    return [f'![{name}]({name})', ''] if name in plots else []


def write_report(summary: dict, directory: str) -> list[str]:
    """Write ``report.md`` and the plots into ``directory``; return the
    paths written, ``report.md`` first."""
    os.makedirs(directory, exist_ok=True)
    plots = _plots(summary, directory) if summary['overall']['calls'] else []
    path = os.path.join(directory, 'report.md')
    fileio.atomic_write(path, markdown(
        summary, [os.path.basename(p) for p in plots]))
    return [path] + plots


def _plots(summary: dict, directory: str) -> list[str]:
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    groups = summary['policies']
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    out = []

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, (version, g) in enumerate(groups.items()):
        s = g['series']
        hours = (np.asarray(s['start'], dtype=np.float64)
                 - summary['first_time']) / 3600.0
        calls = np.maximum(np.asarray(s['calls'], dtype=np.float64), 1)
        colour = colours[i % len(colours)]
        ax.plot(hours, np.asarray(s['applied']) / calls, color=colour,
                marker='.', label=f'{version}: acted')
        ax.plot(hours, np.asarray(s['would_act']) / calls, color=colour,
                linestyle='--', label=f'{version}: gate would act')
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"hours since {_utc(summary['first_time'])} "
                  f"(buckets of {summary['bucket_s']} s)")
    ax.set_ylabel('share of weighing calls')
    ax.set_title('Acting share over time')
    ax.legend(fontsize='small')
    ax.grid(alpha=0.3)
    out.append(_save(fig, directory, 'acting_share.png'))

    verdicts = {k: v for k, v in summary['overall']['verdicts'].items()
                if k != gate.APPLIED}
    if verdicts:
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(verdicts) + 1.5))
        names = list(verdicts)[::-1]
        ax.barh(names, [verdicts[n] for n in names])
        ax.set_xlabel('weighing calls')
        ax.set_title("Gate's reasons to abstain")
        ax.grid(alpha=0.3, axis='x')
        out.append(_save(fig, directory, 'abstain_reasons.png'))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    edges = np.asarray(summary['confidence_bins'])
    centres = (edges[:-1] + edges[1:]) / 2
    for i, (version, g) in enumerate(groups.items()):
        colour = colours[i % len(colours)]
        hist = np.asarray(g['confidence']['histogram'], dtype=np.float64)
        if hist.sum():
            axes[0].stairs(hist / hist.sum(), edges, color=colour,
                           label=version)
        by_conf = g['agreement']['by_confidence']
        shown = [(c, v) for c, v in zip(centres, by_conf) if v is not None]
        if shown:
            axes[1].plot(*zip(*shown), marker='o', color=colour,
                         label=version)
    axes[0].set_xlabel('confidence')
    axes[0].set_ylabel('share of calls')
    axes[0].set_title('Confidence distribution')
    axes[1].set_xlabel('confidence')
    axes[1].set_ylabel("share choosing Nova's host")
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("Agreement with Nova's choice by confidence")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize='small')
    out.append(_save(fig, directory, 'confidence.png'))

    top = [f for f in summary['overall']['features']
           if f['mean_abs_diff'] is not None][:TOP_FEATURES]
    if top:
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(top) + 1.5))
        names = [f['feature'] for f in top][::-1]
        ax.barh(names, [f['mean_diff'] for f in top][::-1],
                label='mean (policy - Nova)')
        ax.scatter([f['mean_abs_diff'] for f in top][::-1], names,
                   color='black', marker='|', s=200, label='mean |diff|')
        ax.axvline(0, color='grey', linewidth=1)
        ax.set_xlabel("feature of the policy's host minus Nova's")
        ax.set_title('Features that set the choice apart (disagreements)')
        ax.legend(fontsize='small')
        ax.grid(alpha=0.3, axis='x')
        out.append(_save(fig, directory, 'features.png'))
    return out
