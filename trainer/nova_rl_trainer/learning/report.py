"""What a training run reports: the learning curves and, in plain words,
what it achieved against its warm start."""

from __future__ import annotations

from nova_rl_trainer.figures import save_figure


def outcome(summary: dict) -> str:
    """What the run achieved against its warm start, in one plain
    paragraph (printed by the main job, kept in train.json)."""
    v = summary['validation_cost']
    start = summary['warm_start'] or 'a random network'
    change = (v['best'] - v['initial']) / v['initial'] if v['initial'] \
        else 0.0
    refs = ', '.join(f'{name} {cost:,.1f}' for name, cost in v.items()
                     if name not in ('initial', 'best'))
    text = (f"{summary['iterations']} PPO iterations "
            f"({summary['decisions_trained']:,} trunk decisions, "
            f"{summary['minutes']:.1f} min in all) after imitating {start}. "
            f"Held-out validation cost ({summary['objective']}, lower is "
            f"better): warm start {v['initial']:,.2f}, best "
            f"{v['best']:,.2f} at iteration {summary['best_iteration']} "
            f"({change:+.2%}); for reference {refs}. ")
    text += constraints(summary)
    if summary['best_iteration'] == 0:
        return text + ('RL did not improve on the warm start within this '
                       'budget: the exported weights are the warm '
                       "start's.")
    return text + ('The exported weights are those of iteration '
                   f"{summary['best_iteration']}.")


def constraints(summary: dict) -> str:
    """For a constrained objective: the kept policy's constraint terms
    against the reference's, in words ('' otherwise)."""
    c = summary.get('constraints')
    if not c or not c.get('excess_at_best'):
        return ''
    parts = ', '.join(f"{term.replace('_', ' ')} {e:+.1%}"
                      for term, e in c['excess_at_best'].items())
    verdict = ('every constraint met' if c['feasible_at_best'] else
               'NOT every constraint met: no validated policy was feasible')
    return (f"Constraints against {c['reference']} on the same episodes "
            f'(mean relative excess over the {summary.get("clusters", 1)} '
            f'cluster(s)): {parts}; {verdict}. ')


def plot_curves(history: list[dict], baselines: dict[str, float],
                path: str) -> None:
    """Plot the validation cost and PPO's statistics into the PNG
    ``path``, replaced whole like the evaluation report's plots."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    evals = [h for h in history if 'validation_cost' in h]
    if not evals:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    costs = [h['validation_cost'] for h in evals]
    ax.plot([h['decisions'] for h in evals], costs, marker='o', ms=3,
            label='policy (greedy)')
    # The scale follows the policy: a baseline far off it (Nova's spreading
    # default against a packing policy) would flatten the curve to a line,
    # so it is named in the legend instead of drawn.
    lo, hi = min(costs), max(costs)
    pad = max(hi - lo, 1e-3 * max(abs(hi), 1.0))
    shown = (lo - 3 * pad, hi + 3 * pad)
    for name, cost in baselines.items():
        label = f'{name} {cost:,.2f}'
        if shown[0] <= cost <= shown[1]:
            ax.axhline(cost, ls='--', lw=1, label=label,
                       color='grey' if name == 'nova-default' else 'green')
        else:
            ax.plot([], [], ls='', label=label + ' (off the scale)')
    ax.set_ylim(*shown)
    ax.set_xlabel('training decisions')
    ax.set_ylabel('validation objective (lower is better)')
    ax.legend(fontsize='small')
    ax.set_title('held-out validation episodes')
    ax = axes[1]
    with_stats = [h for h in evals if 'entropy' in h]
    if with_stats:
        ax.plot([h['decisions'] for h in with_stats],
                [h['entropy'] for h in with_stats], label='entropy')
        ax.plot([h['decisions'] for h in with_stats],
                [h['approx_kl'] * 100 for h in with_stats],
                label='approx KL x100')
    with_lambda = [h for h in evals if 'multipliers' in h]
    for term in (with_lambda[0]['multipliers'] if with_lambda else ()):
        ax.plot([h['decisions'] for h in with_lambda],
                [h['multipliers'][term] for h in with_lambda], ls=':',
                label=f'lambda {term}')
    if with_stats or with_lambda:
        ax.legend(fontsize='small')
    ax.set_xlabel('training decisions')
    ax.set_title('PPO' + (' and Lagrange multipliers' if with_lambda
                          else ''))
    fig.tight_layout()
    save_figure(fig, path)
